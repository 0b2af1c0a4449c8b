//! The inventory half of Berth's vulnerability scanner: read an image's layers in order and list
//! the packages of the final filesystem. Matching them against advisories is `berth-vulndb`'s.
//!
//! Synchronous and I/O-free beyond the readers it is given (the registry runs it in
//! `spawn_blocking` over its blob store). Layers are untrusted input: every entry count, entry
//! size, total size, decompression ratio and extension header is capped ([`Limits`]); a path
//! that would escape the root fails the layer; links are resolved only inside the image's own
//! tree, with a bounded number of hops; memory holds only the files the inventory reads (each
//! capped) and one executable at a time (capped), never a whole layer.
//!
//! Filesystem semantics follow the OCI image specification: layers apply bottom first, a later
//! entry replaces an earlier one at the same path, `dir/.wh.name` removes `dir/name` (and what
//! is under it) from the layers below, and `dir/.wh..wh..opq` removes everything under `dir` that
//! the layers below put there.

mod inventory;

use std::collections::BTreeMap;
use std::io::Read;

pub use inventory::{Inventory, OsInfo, Package};

/// Caps on what a layer may make the scanner do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Tar entries per layer.
    pub max_entries: u64,
    /// Bytes of one entry.
    pub max_entry_size: u64,
    /// Uncompressed bytes of one layer.
    pub max_total_size: u64,
    /// Uncompressed / compressed bytes, checked once a layer has produced more than
    /// [`RATIO_FLOOR`] bytes.
    pub max_ratio: u64,
    /// Bytes kept of one file the inventory reads (package databases, lock files, metadata);
    /// a bigger one is skipped.
    pub max_file_read: u64,
    /// Bytes of an executable read to find embedded build information (Go, cargo-auditable);
    /// a bigger one is skipped.
    pub max_binary: u64,
    /// Bytes of a path.
    pub max_path_len: usize,
    /// Bytes of a PAX or GNU long-name extension entry.
    pub max_extension: u64,
}

/// Decompressed bytes a layer may produce before the ratio cap applies.
pub const RATIO_FLOOR: u64 = 16 << 20;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 1_000_000,
            max_entry_size: 8 << 30,
            max_total_size: 32 << 30,
            max_ratio: 1000,
            max_file_read: 64 << 20,
            max_binary: 128 << 20,
            max_path_len: 4096,
            max_extension: 1 << 20,
        }
    }
}

/// How a layer is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    /// The compression of a layer media type (OCI and Docker), `None` for media types that are
    /// not filesystem layers.
    pub fn from_media_type(mt: &str) -> Option<Compression> {
        match mt {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The compression the first bytes of a layer show (gzip and zstd magic), else none.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Why a layer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The reader failed.
    #[error("reading the layer: {0}")]
    Io(#[from] std::io::Error),
    /// The layer is not what its media type says (not a tar, bad compression, a path that
    /// escapes the root).
    #[error("corrupt layer: {0}")]
    Corrupt(String),
    /// A cap of [`Limits`] was hit.
    #[error("layer exceeds a limit: {0}")]
    LimitExceeded(String),
}

/// What the final filesystem holds at a path the inventory cares about.
#[derive(Debug, Clone)]
enum Node {
    /// A file's bytes.
    Data(Vec<u8>),
    /// A symbolic or hard link (the target as written).
    Link { target: String, hard: bool },
    /// The packages found in an executable.
    Binary(Vec<Package>),
}

/// Accumulates layers, bottom first; [`Scanner::finish`] gives the inventory.
#[derive(Debug)]
pub struct Scanner {
    limits: Limits,
    /// path -> (node, layer that put it there)
    files: BTreeMap<String, (Node, usize)>,
    layer: usize,
}

/// A reader counting the bytes read through it.
struct Counting<R> {
    inner: R,
    count: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Normalize a tar path: no leading `/` or `./`, no `.` or empty components; `None` when a
/// `..` would leave the root.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

impl Scanner {
    /// A scanner with `limits`.
    pub fn new(limits: Limits) -> Scanner {
        Scanner { limits, files: BTreeMap::new(), layer: 0 }
    }

    /// Apply the next layer (bottom first). On an error the layer may be partly applied; the
    /// caller should give up on the image.
    pub fn add_layer(&mut self, compression: Compression, reader: impl Read) -> Result<(), ScanError> {
        self.layer += 1;
        let compressed = std::rc::Rc::new(std::cell::Cell::new(0u64));
        let counting = Counting { inner: reader, count: compressed.clone() };
        let decoded: Box<dyn Read + '_> = match compression {
            Compression::None => Box::new(counting),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(counting)),
            Compression::Zstd => Box::new(
                ruzstd::decoding::StreamingDecoder::new(counting)
                    .map_err(|e| ScanError::Corrupt(format!("zstd: {e}")))?,
            ),
        };
        let limited = Capped {
            inner: decoded,
            total: std::rc::Rc::new(std::cell::Cell::new(0u64)),
            compressed,
            limits: self.limits,
            plain: compression == Compression::None,
        };
        let mut archive = tar::Archive::new(limited);
        let entries = archive.entries().map_err(|e| corrupt_or_io(e, "reading the tar"))?.raw(true);
        let mut count = 0u64;
        let mut long_name: Option<String> = None;
        let mut long_link: Option<String> = None;
        let mut pax_path: Option<String> = None;
        let mut pax_link: Option<String> = None;
        for entry in entries {
            let mut entry = entry.map_err(|e| corrupt_or_io(e, "reading a tar entry"))?;
            count += 1;
            if count > self.limits.max_entries {
                return Err(ScanError::LimitExceeded(format!("more than {} entries", self.limits.max_entries)));
            }
            let header = entry.header().clone();
            let size = header.entry_size().map_err(|e| ScanError::Corrupt(format!("entry size: {e}")))?;
            if size > self.limits.max_entry_size {
                return Err(ScanError::LimitExceeded(format!(
                    "an entry of {size} bytes (at most {})",
                    self.limits.max_entry_size
                )));
            }
            let kind = header.entry_type();
            // Extension entries describe the next entry; read them ourselves, capped.
            if kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions() {
                if size > self.limits.max_extension {
                    return Err(ScanError::LimitExceeded(format!(
                        "an extension header of {size} bytes (at most {})",
                        self.limits.max_extension
                    )));
                }
                let mut data = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut data).map_err(|e| corrupt_or_io(e, "reading an extension header"))?;
                if kind.is_gnu_longname() {
                    long_name = Some(c_string(&data));
                } else if kind.is_gnu_longlink() {
                    long_link = Some(c_string(&data));
                } else {
                    for (k, v) in pax_records(&data) {
                        match k.as_str() {
                            "path" => pax_path = Some(v),
                            "linkpath" => pax_link = Some(v),
                            _ => {}
                        }
                    }
                }
                continue;
            }
            if kind.is_pax_global_extensions() {
                continue;
            }
            let raw_path = pax_path
                .take()
                .or(long_name.take())
                .unwrap_or_else(|| String::from_utf8_lossy(&header.path_bytes()).into_owned());
            let raw_link = pax_link
                .take()
                .or(long_link.take())
                .or_else(|| header.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()));
            if raw_path.len() > self.limits.max_path_len {
                return Err(ScanError::LimitExceeded(format!("a path of {} bytes", raw_path.len())));
            }
            let path = normalize(&raw_path)
                .ok_or_else(|| ScanError::Corrupt(format!("the path '{}' escapes the root", clip(&raw_path))))?;
            if path.is_empty() {
                continue;
            }
            let (dir, base) = path.rsplit_once('/').unwrap_or(("", &path));
            if let Some(hidden) = base.strip_prefix(".wh.") {
                if hidden == ".wh..opq" {
                    self.remove_under(dir, Some(self.layer));
                } else {
                    let target = if dir.is_empty() { hidden.to_string() } else { format!("{dir}/{hidden}") };
                    self.files.remove(&target);
                    self.remove_under(&target, None);
                }
                continue;
            }
            // Whatever was at this path (or under it, when a file replaces a directory) goes.
            self.files.remove(&path);
            if kind.is_dir() {
                continue;
            }
            self.remove_under(&path, None);
            if kind.is_symlink() || kind.is_hard_link() {
                if let (Some(target), true) = (raw_link, inventory::interesting(&path)) {
                    let hard = kind.is_hard_link();
                    self.files.insert(path, (Node::Link { target, hard }, self.layer));
                }
                continue;
            }
            if !(kind.is_file() || kind == tar::EntryType::Continuous) {
                continue;
            }
            if inventory::interesting(&path) {
                if size <= self.limits.max_file_read {
                    let mut data = Vec::with_capacity(size as usize);
                    entry.read_to_end(&mut data).map_err(|e| corrupt_or_io(e, "reading a file"))?;
                    self.files.insert(path, (Node::Data(data), self.layer));
                }
                continue;
            }
            let mode = header.mode().unwrap_or(0);
            if mode & 0o111 != 0 && size >= 64 && size <= self.limits.max_binary {
                let mut magic = [0u8; 4];
                entry.read_exact(&mut magic).map_err(|e| corrupt_or_io(e, "reading an executable"))?;
                if magic == *b"\x7fELF" {
                    let mut data = Vec::with_capacity(size as usize);
                    data.extend_from_slice(&magic);
                    entry.read_to_end(&mut data).map_err(|e| corrupt_or_io(e, "reading an executable"))?;
                    let found = inventory::binary_packages(&path, &data);
                    if !found.is_empty() {
                        self.files.insert(path, (Node::Binary(found), self.layer));
                    }
                }
            }
            // The rest of the entry is skipped by the tar reader (read through, not kept).
        }
        Ok(())
    }

    /// Remove what is under directory `dir` (all of it, or only what layers below `below` put
    /// there).
    fn remove_under(&mut self, dir: &str, below: Option<usize>) {
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        let doomed: Vec<String> = self
            .files
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, (_, layer))| below.is_none_or(|b| *layer < b))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.files.remove(&k);
        }
    }

    /// The inventory of the final filesystem.
    pub fn finish(self) -> Inventory {
        let resolve = |path: &str| -> Option<&[u8]> {
            let mut p = path.to_string();
            for _ in 0..8 {
                match self.files.get(&p).map(|(n, _)| n) {
                    Some(Node::Data(d)) => return Some(d),
                    Some(Node::Link { target, hard }) => {
                        let base = if *hard || target.starts_with('/') {
                            String::new()
                        } else {
                            p.rsplit_once('/').map(|(d, _)| d.to_string()).unwrap_or_default()
                        };
                        p = normalize(&format!("{base}/{target}"))?;
                    }
                    _ => return None,
                }
            }
            None
        };
        let mut files: Vec<(String, &[u8])> = Vec::new();
        let mut binaries: Vec<Package> = Vec::new();
        for (path, (node, _)) in &self.files {
            match node {
                Node::Binary(p) => binaries.extend(p.iter().cloned()),
                _ => {
                    if let Some(d) = resolve(path) {
                        files.push((path.clone(), d));
                    }
                }
            }
        }
        inventory::build(&files, binaries)
    }
}

/// Decompressed bytes, with the total, size and ratio caps applied as they are read.
struct Capped<R> {
    inner: R,
    total: std::rc::Rc<std::cell::Cell<u64>>,
    compressed: std::rc::Rc<std::cell::Cell<u64>>,
    limits: Limits,
    plain: bool,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.total.get() + n as u64;
        self.total.set(total);
        let limit = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, LimitHit(m));
        if total > self.limits.max_total_size {
            return Err(limit(format!("more than {} uncompressed bytes", self.limits.max_total_size)));
        }
        if !self.plain && total > RATIO_FLOOR && total / self.compressed.get().max(1) > self.limits.max_ratio {
            return Err(limit(format!("a decompression ratio above {}", self.limits.max_ratio)));
        }
        Ok(n)
    }
}

/// A cap hit inside the reader chain (carried through `io::Error`).
#[derive(Debug)]
struct LimitHit(String);

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LimitHit {}

fn corrupt_or_io(e: std::io::Error, what: &str) -> ScanError {
    if let Some(hit) = e.get_ref().and_then(|i| i.downcast_ref::<LimitHit>()) {
        return ScanError::LimitExceeded(hit.0.clone());
    }
    match e.kind() {
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput | std::io::ErrorKind::UnexpectedEof => {
            ScanError::Corrupt(format!("{what}: {e}"))
        }
        _ => ScanError::Io(e),
    }
}

/// A NUL-terminated name.
fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// PAX records `"<len> <key>=<value>\n"`.
fn pax_records(mut b: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let Some(sp) = b.iter().position(|c| *c == b' ') else { break };
        let Some(len) = std::str::from_utf8(&b[..sp]).ok().and_then(|s| s.parse::<usize>().ok()) else { break };
        if len <= sp + 1 || len > b.len() {
            break;
        }
        let rec = &b[sp + 1..len];
        let rec = rec.strip_suffix(b"\n").unwrap_or(rec);
        if let Some(eq) = rec.iter().position(|c| *c == b'=') {
            out.push((
                String::from_utf8_lossy(&rec[..eq]).into_owned(),
                String::from_utf8_lossy(&rec[eq + 1..]).into_owned(),
            ));
        }
        b = &b[len..];
    }
    out
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests;
