//! OSV advisories (<https://ossf.github.io/osv-schema/>) for Berth's vulnerability scanner.
//!
//! Pure logic plus file reading: [`parse`] turns one OSV JSON record into an
//! [`Advisory`]; [`Advisory::affects`] decides whether a package version is affected
//! (OSV "Evaluation" rules, with [`compare`] ordering versions per ecosystem);
//! [`read_sources`] streams records from a file, a directory or an osv.dev `all.zip`.
//! Nothing here touches a database or the network.
//!
//! Version rules per (base) ecosystem, see [`compare`]:
//! - `Debian`, `Ubuntu`: dpkg (epoch, upstream, revision; `~` sorts first, letters
//!   before other characters, digit runs numerically).
//! - `Alpine`: apk-tools (`N(.N)*[a-z](_suffix[N])*[~hash][-rN]`;
//!   `1.0_rc1 < 1.0 < 1.0-r1 < 1.0_p1 < 1.0a < 1.0.1`). Known gap: components with
//!   leading zeros compare numerically (apk treats `1.01` specially).
//! - `PyPI`: PEP 440 with its normalisations. Legacy (non-PEP 440) versions are not
//!   parsed; they still match `versions[]` by exact string.
//! - `npm`, `crates.io`: SemVer 2.0.0, strict (no leading zeros, three components;
//!   a leading `v` is accepted); build metadata ignored. npm range syntax (`^1.2`) is
//!   not a version and is not parsed.
//! - `Go`: SemVer with an optional `v`, `+incompatible` ignored, `v1`/`v1.2` shorthands.
//! - others (Maven, RubyGems, NuGet, RPM-based distributions, ...): dotted numbers only
//!   (`1.2.10`); anything else (`1.0-SNAPSHOT`, `1.0.el8`) is `None`.

mod affected;
mod cvss;
mod osv;
mod sources;
mod version;

use std::cmp::Ordering;

pub use cvss::Cvss3;
pub use osv::parse;
pub use sources::{Limits, read_sources, read_sources_with_limits};

/// One OSV advisory, reduced to what the scanner needs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Advisory {
    /// The OSV `id` (e.g. `RUSTSEC-2021-0001`, `GO-2022-0001`, `PYSEC-2021-1`).
    pub id: String,
    /// The OSV `aliases` (other ids of the same vulnerability), in record order.
    pub aliases: Vec<String>,
    /// The one-line `summary`, if any.
    pub summary: Option<String>,
    /// The `details` text (CommonMark), if any.
    pub details: Option<String>,
    /// The `modified` timestamp as written in the record (RFC 3339), if any.
    pub modified: Option<String>,
    /// The `published` timestamp as written in the record (RFC 3339), if any.
    pub published: Option<String>,
    /// Whether the record has a `withdrawn` timestamp; a withdrawn advisory affects nothing.
    pub withdrawn: bool,
    /// The first `CVE-` id among `id` and `aliases`, if any.
    pub cve: Option<String>,
    /// The overall severity, see [`Severity`] for the rule.
    pub severity: Severity,
    /// The first valid CVSS v3.x vector of the record's `severity[]`, else of any
    /// affected entry's `severity[]` (type `CVSS_V3`), with its computed base score.
    pub cvss3: Option<Cvss3>,
    /// The first reference of type `ADVISORY`, else of type `WEB`, else the first one.
    pub url: Option<String>,
    /// The `affected[]` entries that name a package, in record order.
    pub affected: Vec<Affected>,
}

/// One `affected[]` entry of an advisory.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Affected {
    /// The package's ecosystem as written, possibly with a release (`Debian:12`).
    pub ecosystem: String,
    /// The package name as written (not normalized; see [`normalize_name`]).
    pub name: String,
    /// The entry's ranges, in record order.
    pub ranges: Vec<Range>,
    /// The entry's explicit list of affected versions.
    pub versions: Vec<String>,
    /// The severity stated by the entry's `ecosystem_specific.severity` or
    /// `database_specific.severity` (a word such as `HIGH` or `MODERATE`), if any.
    pub severity: Option<Severity>,
}

/// One `ranges[]` element of an affected entry.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Range {
    /// The range `type`: `SEMVER`, `ECOSYSTEM`, `GIT`, or another string.
    pub kind: String,
    /// The `repo` of a `GIT` range, if any.
    pub repo: Option<String>,
    /// The events in record order (evaluation sorts them by version).
    pub events: Vec<Event>,
}

/// One event of a range.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Affected from this version on (`"0"`: from the start).
    Introduced(String),
    /// Not affected from this version on.
    Fixed(String),
    /// Affected up to and including this version.
    LastAffected(String),
    /// No version at or past this one is affected by the range (`"*"`: no limit).
    Limit(String),
}

/// Severity levels with the names Amazon ECR reports.
///
/// Rule: from the base score of the CVSS v3.x vector ([`Advisory::cvss3`]):
/// CRITICAL ≥ 9.0, HIGH ≥ 7.0, MEDIUM ≥ 4.0, LOW > 0, INFORMATIONAL = 0. Without a v3
/// vector: the record's `database_specific.severity`, else the first affected entry's
/// severity ([`Affected::severity`]), as a case-insensitive word (`MODERATE` is
/// MEDIUM), else UNDEFINED. CVSS v2 and v4 vectors are not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    /// Base score 9.0 to 10.0.
    Critical,
    /// Base score 7.0 to 8.9.
    High,
    /// Base score 4.0 to 6.9.
    Medium,
    /// Base score 0.1 to 3.9.
    Low,
    /// Base score 0.0.
    Informational,
    /// No score and no stated severity.
    Undefined,
}

impl Severity {
    /// The ECR name: `CRITICAL`, `HIGH`, `MEDIUM`, `LOW`, `INFORMATIONAL` or `UNDEFINED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "CRITICAL",
            Severity::High => "HIGH",
            Severity::Medium => "MEDIUM",
            Severity::Low => "LOW",
            Severity::Informational => "INFORMATIONAL",
            Severity::Undefined => "UNDEFINED",
        }
    }

    /// The severity of a CVSS v3 base score (see the rule on [`Severity`]).
    pub fn from_score(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else if score > 0.0 {
            Severity::Low
        } else {
            Severity::Informational
        }
    }

    /// Reads a severity word, case-insensitively: `CRITICAL`, `HIGH`, `MODERATE` or
    /// `MEDIUM`, `LOW`, `INFORMATIONAL`/`INFO`/`NONE`. Other words give `None`.
    pub fn from_word(word: &str) -> Option<Severity> {
        match word.trim().to_ascii_uppercase().as_str() {
            "CRITICAL" => Some(Severity::Critical),
            "HIGH" | "IMPORTANT" => Some(Severity::High),
            "MODERATE" | "MEDIUM" => Some(Severity::Medium),
            "LOW" => Some(Severity::Low),
            "INFORMATIONAL" | "INFO" | "NONE" | "NEGLIGIBLE" => Some(Severity::Informational),
            _ => None,
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of parsing and reading advisories. Errors of reading name the file or
/// zip entry (`archive.zip!ID.json`) they concern.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not a JSON OSV record (or lack a required field such as `id`).
    #[error("invalid OSV record: {0}")]
    Json(#[from] serde_json::Error),
    /// The record is JSON but breaks the schema in a way this crate cannot accept.
    #[error("invalid OSV record: {0}")]
    Invalid(String),
    /// A record inside a named file or zip entry could not be parsed.
    #[error("{name}: {source}")]
    Record {
        /// The file path, or `archive!entry` for a zip entry.
        name: String,
        /// What went wrong.
        source: Box<Error>,
    },
    /// Reading a file or directory failed.
    #[error("{name}: {source}")]
    Io {
        /// The file path, or `archive!entry` for a zip entry.
        name: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A zip archive is malformed or uses an unsupported feature.
    #[error("{name}: invalid zip archive: {message}")]
    Zip {
        /// The archive path, or `archive!entry`.
        name: String,
        /// The zip reader's message.
        message: String,
    },
    /// A record or an archive exceeds a size or count limit ([`Limits`]).
    #[error("{name}: {message}")]
    TooLarge {
        /// The file path, or `archive!entry`.
        name: String,
        /// Which limit was exceeded.
        message: String,
    },
}

/// Normalizes a package name the way its ecosystem compares names: PyPI per PEP 503
/// (lowercase, runs of `-`, `_`, `.` become one `-`); other ecosystems unchanged.
/// Index advisories by `(base_ecosystem, normalize_name)` to find them again.
pub fn normalize_name(ecosystem: &str, name: &str) -> String {
    if base_ecosystem(ecosystem) != "PyPI" {
        return name.to_string();
    }
    let mut out = String::with_capacity(name.len());
    let mut in_sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_sep {
                out.push('-');
            }
            in_sep = true;
        } else {
            out.extend(c.to_lowercase());
            in_sep = false;
        }
    }
    out
}

/// The ecosystem without its release: the part before the first `:`
/// (`Debian:12` → `Debian`, `Alpine:v3.19` → `Alpine`, `Ubuntu:22.04:LTS` → `Ubuntu`).
pub fn base_ecosystem(ecosystem: &str) -> &str {
    ecosystem.split(':').next().unwrap_or(ecosystem)
}

/// Compares two versions by the rules of `ecosystem` (its base decides):
/// dpkg for Debian/Ubuntu, apk for Alpine, PEP 440 for PyPI, SemVer 2.0 for npm and
/// crates.io, Go module versions (with or without `v`) for Go, dotted numbers for
/// everything else. `None` when either version cannot be parsed by those rules.
/// Equal means equivalent (`1.0` and `1.0.0` in PyPI, build metadata in SemVer).
pub fn compare(ecosystem: &str, a: &str, b: &str) -> Option<Ordering> {
    version::Scheme::for_ecosystem(ecosystem).compare(a, b)
}
