//! `berth-scanner`: the inventory half of Berth's vulnerability scanner.
//!
//! A [`Scanner`] reads an OCI/Docker image's layers bottom first, applies them
//! to a virtual filesystem (whiteouts, opaque directories, replacements) and,
//! from the final filesystem, reports the operating system ([`OsInfo`]) and the
//! packages it contains ([`Package`]): dpkg and apk databases, Python
//! distributions, npm packages and lockfiles, `Cargo.lock` files,
//! cargo-auditable binaries and Go binaries.
//!
//! The API is synchronous and does no I/O beyond the readers it is given. Memory
//! stays bounded whatever the layer size: only the files the inventory needs are
//! read into memory (each capped by [`Limits::max_file_read`], executables by
//! [`Limits::max_binary_size`], one at a time); everything else is streamed
//! through and dropped. Hostile input yields a [`ScanError`], never a panic.
//!
//! Tar paths are normalized (leading `/` and `./` stripped, `.` collapsed,
//! `a/../b` folded); a path whose `..` would climb above the root makes the
//! layer fail with [`ScanError::Corrupt`], a path longer than
//! [`Limits::max_path_len`] with [`ScanError::LimitExceeded`]. A layer that
//! fails leaves the scanner as it was before that layer.
//!
//! # Filesystem semantics
//!
//! Entries apply in order; a later entry replaces an earlier one at the same
//! path, and a non-directory replaces everything below its path. OCI
//! whiteouts (`dir/.wh.name`) and opaque markers (`dir/.wh..wh..opq`) hide
//! content of the lower layers only, never what the same layer adds. Only the
//! interesting paths are tracked. Symlinks are kept only at the OS
//! identification paths and resolved at the end inside the image (an absolute
//! target starts at the image root, `..` stops at the root, at most
//! [`Limits::max_link_hops`] hops); a hard link to a kept file is a copy of
//! it. Links to files the scanner did not keep resolve to nothing, and
//! symlinked directories on the way to a package database are not followed.
//!
//! # What is reported
//!
//! - dpkg: `var/lib/dpkg/status` stanzas whose `Status` is `<want> ok installed`;
//!   `var/lib/dpkg/status.d/*` (distroless, `*.md5sums` skipped) stanzas with
//!   such a `Status` or none. `Source: name (version)` gives the source fields.
//! - apk: `lib/apk/db/installed` (`P:`, `V:`, `o:` as source name).
//! - PyPI: `site-packages`/`dist-packages` `*.dist-info/METADATA` and
//!   `*.egg-info` files, and `*.egg-info/PKG-INFO` anywhere; PEP 503 names.
//! - npm: `node_modules/[@scope/]name/package.json` with both `name` and
//!   `version`; `package-lock.json` outside `node_modules` (v2/v3 `packages`,
//!   else v1 `dependencies`), skipping the root, workspace folders, links and
//!   non-registry versions (URLs, `file:`, git).
//! - crates.io: `Cargo.lock` packages whose `source` is a registry (path and
//!   git sources, and so the workspace's own crates, are skipped); executable
//!   ELF files with a cargo-auditable `.dep-v0` section (sources `crates.io`
//!   and `registry`).
//! - Go: executable ELF files with Go 1.18+ build info (main module unless
//!   `(devel)`, deps with `=>` replacements by module versions applied, and
//!   `stdlib` at the Go version). Older pointer-based build info is not read.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod binary;
mod layer;
mod parsers;
mod paths;
mod stream;
mod tar;

use std::collections::BTreeMap;
use std::io::Read;

use crate::layer::Node;

/// Caps that bound the work and memory of a scan. Each cap, when hit, makes
/// [`Scanner::add_layer`] return [`ScanError::LimitExceeded`] naming it, except
/// [`Limits::max_binary_size`] (larger executables are skipped, not an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum number of tar headers (entries, including PAX and GNU
    /// long-name headers) over all the layers of one scan.
    pub max_entries: u64,
    /// Maximum size of one tar entry's data, as declared by its header.
    pub max_entry_size: u64,
    /// Maximum uncompressed bytes (tar stream bytes) over all the layers of one scan.
    pub max_total_size: u64,
    /// Maximum ratio of uncompressed to compressed bytes of one layer; checked
    /// only once the layer has produced more than [`Limits::ratio_grace`] bytes.
    pub max_ratio: u64,
    /// Uncompressed bytes of a layer below which the ratio is not checked.
    pub ratio_grace: u64,
    /// Maximum size of one file kept in memory for parsing (package databases,
    /// os-release, METADATA, package.json, lockfiles), and of a decompressed
    /// cargo-auditable section. A larger interesting file fails the layer.
    pub max_file_read: u64,
    /// ELF executables up to this size are buffered (one at a time) to look
    /// for cargo-auditable and Go build information; larger ones are skipped.
    pub max_binary_size: u64,
    /// Maximum size of a PAX extended header or GNU long name/link header.
    pub max_header_size: u64,
    /// Maximum length in bytes of an entry path or link target.
    pub max_path_len: usize,
    /// Maximum symlink hops when resolving os-release and friends.
    pub max_link_hops: u32,
}

impl Default for Limits {
    /// 1,000,000 entries, 8 GiB per entry, 32 GiB in total, ratio 1000 checked
    /// past 8 MiB, 64 MiB per parsed file, 128 MiB per buffered executable,
    /// 1 MiB per extended header, 4096-byte paths, 40 link hops.
    fn default() -> Self {
        const MIB: u64 = 1 << 20;
        const GIB: u64 = 1 << 30;
        Limits {
            max_entries: 1_000_000,
            max_entry_size: 8 * GIB,
            max_total_size: 32 * GIB,
            max_ratio: 1000,
            ratio_grace: 8 * MIB,
            max_file_read: 64 * MIB,
            max_binary_size: 128 * MIB,
            max_header_size: MIB,
            max_path_len: 4096,
            max_link_hops: 40,
        }
    }
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip (possibly multi-member).
    Gzip,
    /// zstd (possibly multi-frame); window size capped at 128 MiB.
    Zstd,
    /// A plain tar stream.
    None,
    /// Sniff the first bytes of the stream (see [`Compression::sniff`]).
    Detect,
}

impl Compression {
    /// Maps a layer media type to its compression: the OCI
    /// `application/vnd.oci.image.layer.v1.tar[+gzip|+zstd]` (and the
    /// non-distributable variants) and Docker's
    /// `application/vnd.docker.image.rootfs[.foreign].diff.tar[.gzip|.zstd]`.
    /// Parameters (`;...`) and case are ignored. Returns `None` for anything
    /// else (configs, artifacts, unknown layer types).
    pub fn from_media_type(mt: &str) -> Option<Compression> {
        let mt = mt.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let oci = ["application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.nondistributable.v1.tar"];
        for base in oci {
            if let Some(rest) = mt.strip_prefix(base) {
                return match rest {
                    "" => Some(Compression::None),
                    "+gzip" => Some(Compression::Gzip),
                    "+zstd" => Some(Compression::Zstd),
                    _ => None,
                };
            }
        }
        let docker =
            ["application/vnd.docker.image.rootfs.diff.tar", "application/vnd.docker.image.rootfs.foreign.diff.tar"];
        for base in docker {
            if let Some(rest) = mt.strip_prefix(base) {
                return match rest {
                    "" => Some(Compression::None),
                    ".gzip" => Some(Compression::Gzip),
                    ".zstd" => Some(Compression::Zstd),
                    _ => None,
                };
            }
        }
        None
    }

    /// Guesses the compression from the first bytes of a blob: gzip magic
    /// `1f 8b`, zstd magic `28 b5 2f fd`, anything else is taken as a plain tar.
    /// Never returns [`Compression::Detect`].
    pub fn sniff(prefix: &[u8]) -> Compression {
        if prefix.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Why a layer could not be scanned. After an error the scanner holds the
/// state it had before that layer; the caller should normally give up on the
/// image, as its inventory can no longer be trusted to be complete.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The reader given to [`Scanner::add_layer`] failed.
    #[error("reading layer: {0}")]
    Io(#[source] std::io::Error),
    /// The layer is not a valid (compressed) tar stream, is truncated, or
    /// holds a path that escapes the root.
    #[error("corrupt layer: {0}")]
    Corrupt(String),
    /// A cap of [`Limits`] was hit; the message names it.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
}

/// The operating system of the image, from `etc/os-release` (or, failing
/// that, `usr/lib/os-release`), with fallbacks to `etc/debian_version` and
/// `etc/alpine-release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsInfo {
    /// `ID` (e.g. `debian`, `ubuntu`, `alpine`), quotes stripped.
    pub id: String,
    /// `VERSION_ID` (e.g. `12`, `22.04`, `3.19.1`); for Debian without one, the
    /// content of `etc/debian_version` when it starts with a digit (`12.4`).
    pub version_id: Option<String>,
    /// `PRETTY_NAME`, quotes stripped.
    pub pretty_name: Option<String>,
}

/// One package found in the final filesystem.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Package {
    /// OSV ecosystem: `Debian:12`, `Ubuntu:22.04`, `Alpine:v3.19` (or `Debian` /
    /// `Alpine` when the release is unknown), `PyPI`, `npm`, `crates.io`, `Go`.
    pub ecosystem: String,
    /// Package name, trimmed (PEP 503-normalized for PyPI).
    pub name: String,
    /// Version as recorded, trimmed (Go: `v1.2.3`; Go stdlib: `1.21.4`).
    pub version: String,
    /// dpkg `Source:` name, apk `o:` origin; `None` when not recorded.
    pub source_name: Option<String>,
    /// dpkg `Source: name (version)` version; `None` when not recorded.
    pub source_version: Option<String>,
    /// Path (relative to the image root, no leading `/`) of the file the
    /// package was found in: the database, lockfile, metadata file or binary.
    pub path: String,
}

/// What the final filesystem contains.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inventory {
    /// The operating system, if an os-release (or fallback) file was found.
    pub os: Option<OsInfo>,
    /// Packages sorted by (ecosystem, name, version, path) and deduplicated on
    /// those four fields.
    pub packages: Vec<Package>,
}

/// Accumulates the image's filesystem state across layers.
#[derive(Debug)]
pub struct Scanner {
    limits: Limits,
    tree: BTreeMap<String, Node>,
    entries: u64,
    total: u64,
}

impl Scanner {
    /// A scanner for one image, enforcing `limits`.
    pub fn new(limits: Limits) -> Scanner {
        Scanner { limits, tree: BTreeMap::new(), entries: 0, total: 0 }
    }

    /// Reads one layer (a tar stream compressed as `compression`) to its end of
    /// archive and applies it over the layers added before. Call once per layer,
    /// bottom layer first. On error the layer is not applied at all.
    pub fn add_layer(&mut self, compression: Compression, reader: impl Read) -> Result<(), ScanError> {
        let upper =
            layer::read_layer(&self.limits, &self.tree, &mut self.entries, &mut self.total, compression, reader)?;
        upper.apply(&mut self.tree);
        Ok(())
    }

    /// The inventory of the filesystem built by the layers added so far.
    pub fn finish(self) -> Inventory {
        layer::inventory(&self.limits, self.tree)
    }
}
