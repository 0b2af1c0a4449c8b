//! OSV "Evaluation": is a package version affected?

use std::cmp::Ordering;

use crate::version::Scheme;
use crate::{Advisory, Affected, Event, Range, base_ecosystem, normalize_name};

/// The release key of an ecosystem: its `:`-parts up to and including the first one
/// that is a version (digits, optionally after `v`), which drops suffixes such as
/// `:LTS` (`Ubuntu:22.04:LTS` → `Ubuntu`,`22.04`). `v3.19` and `3.19` are the same.
fn release_key(ecosystem: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for part in ecosystem.split(':') {
        let p = part.strip_prefix('v').unwrap_or(part);
        let is_version = p.bytes().next().is_some_and(|c| c.is_ascii_digit());
        out.push(if is_version { p } else { part });
        if is_version {
            break;
        }
    }
    out
}

/// Whether an advisory entry's ecosystem covers a package's ecosystem: same base, and
/// either the entry names no release or both name the same release.
pub(crate) fn ecosystem_matches(entry: &str, package: &str) -> bool {
    if entry == package {
        return true;
    }
    if base_ecosystem(entry) != base_ecosystem(package) {
        return false;
    }
    if !entry.contains(':') {
        return true;
    }
    release_key(entry) == release_key(package)
}

impl Advisory {
    /// Whether `version` of package `name` in `ecosystem` is affected.
    ///
    /// False for a withdrawn advisory. Otherwise true when an `affected[]` entry whose
    /// ecosystem matches (an entry without release such as `Debian` matches every
    /// release; `Debian:12` only `Debian:12`; Ubuntu's `22.04:LTS` style compares up
    /// to the version) and whose name matches after [`normalize_name`] lists the
    /// version in `versions` (same string, or equal per [`compare`](crate::compare)),
    /// or has a `SEMVER`/`ECOSYSTEM` range that includes it. `GIT` and unknown ranges
    /// are ignored. A version this crate cannot parse is never in a range.
    pub fn affects(&self, ecosystem: &str, name: &str, version: &str) -> bool {
        if self.withdrawn {
            return false;
        }
        let name = normalize_name(ecosystem, name);
        self.affected.iter().any(|a| {
            ecosystem_matches(&a.ecosystem, ecosystem)
                && normalize_name(&a.ecosystem, &a.name) == name
                && a.includes(ecosystem, version)
        })
    }
}

impl Affected {
    fn includes(&self, ecosystem: &str, version: &str) -> bool {
        let scheme = Scheme::for_ecosystem(ecosystem);
        if self.versions.iter().any(|v| v == version || scheme.compare(v, version) == Some(Ordering::Equal)) {
            return true;
        }
        if !scheme.is_valid(version) {
            return false;
        }
        self.ranges
            .iter()
            .filter(|r| r.kind == "SEMVER" || r.kind == "ECOSYSTEM")
            .any(|r| range_includes(scheme, r, version))
    }
}

/// Orders event versions, `"0"` first (callers drop unparseable versions beforehand).
fn cmp_event(scheme: Scheme, a: &str, b: &str) -> Ordering {
    match (a == "0", b == "0") {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => scheme.compare(a, b).unwrap_or(Ordering::Equal),
    }
}

fn range_includes(scheme: Scheme, range: &Range, v: &str) -> bool {
    let lt = |limit: &str| scheme.compare(v, limit) == Some(Ordering::Less);
    let limits: Vec<&str> = range
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Limit(l) => Some(l.as_str()),
            _ => None,
        })
        .collect();
    if !limits.is_empty() && !limits.iter().any(|l| *l == "*" || lt(l)) {
        return false;
    }
    // Events whose version cannot be parsed are dropped (an introduced "0" is kept).
    let mut events: Vec<(&Event, &str)> = range
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Introduced(x) if x == "0" => Some((e, x.as_str())),
            Event::Introduced(x) | Event::Fixed(x) | Event::LastAffected(x) => {
                scheme.is_valid(x).then_some((e, x.as_str()))
            }
            Event::Limit(_) => None,
        })
        .collect();
    events.sort_by(|a, b| cmp_event(scheme, a.1, b.1));
    let mut affected = false;
    for (e, x) in events {
        let o = if x == "0" {
            Ordering::Greater
        } else {
            match scheme.compare(v, x) {
                Some(o) => o,
                None => return false,
            }
        };
        match e {
            Event::Introduced(_) if o != Ordering::Less => affected = true,
            Event::Fixed(_) if o != Ordering::Less => affected = false,
            Event::LastAffected(_) if o == Ordering::Greater => affected = false,
            _ => {}
        }
    }
    affected
}
