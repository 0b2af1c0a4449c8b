//! SemVer 2.0.0 (npm, crates.io) and Go module versions.

use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flavor {
    /// `MAJOR.MINOR.PATCH[-pre][+build]`, no leading zeros; a leading `v` is accepted.
    Strict,
    /// Go: as strict, with an optional leading `v`, `vMAJOR` / `vMAJOR.MINOR`
    /// shorthands (as golang.org/x/mod/semver), and `+incompatible` (build metadata).
    Go,
}

#[derive(Debug)]
pub(super) struct Version<'a> {
    core: [&'a str; 3],
    pre: Vec<&'a str>,
}

fn numeric(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

fn ident(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

impl<'a> Version<'a> {
    pub(super) fn parse(v: &'a str, flavor: Flavor) -> Option<Self> {
        let v = v.strip_prefix('v').unwrap_or(v);
        let (v, build) = match v.split_once('+') {
            Some((v, b)) => (v, Some(b)),
            None => (v, None),
        };
        if let Some(b) = build
            && !b.split('.').all(ident)
        {
            return None;
        }
        let (core, pre) = match v.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (v, None),
        };
        let parts: Vec<&str> = core.split('.').collect();
        if !parts.iter().all(|p| numeric(p)) {
            return None;
        }
        let core = match (parts.as_slice(), flavor) {
            ([a, b, c], _) => [*a, *b, *c],
            ([a, b], Flavor::Go) if pre.is_none() && build.is_none() => [*a, *b, "0"],
            ([a], Flavor::Go) if pre.is_none() && build.is_none() => [*a, "0", "0"],
            _ => return None,
        };
        let pre = match pre {
            Some(p) => {
                let ids: Vec<&str> = p.split('.').collect();
                let ok = ids.iter().all(|i| ident(i) && (!i.bytes().all(|c| c.is_ascii_digit()) || numeric(i)));
                if !ok {
                    return None;
                }
                ids
            }
            None => Vec::new(),
        };
        Some(Version { core, pre })
    }
}

fn cmp_ident(a: &str, b: &str) -> Ordering {
    let an = a.bytes().all(|c| c.is_ascii_digit());
    let bn = b.bytes().all(|c| c.is_ascii_digit());
    match (an, bn) {
        (true, true) => super::cmp_digits(a, b),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.cmp(b),
    }
}

impl Ord for Version<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        for k in 0..3 {
            let o = super::cmp_digits(self.core[k], other.core[k]);
            if o != Ordering::Equal {
                return o;
            }
        }
        match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            _ => {}
        }
        for (a, b) in self.pre.iter().zip(&other.pre) {
            let o = cmp_ident(a, b);
            if o != Ordering::Equal {
                return o;
            }
        }
        self.pre.len().cmp(&other.pre.len())
    }
}
impl PartialOrd for Version<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Version<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Version<'_> {}
