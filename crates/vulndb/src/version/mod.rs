//! Version ordering per ecosystem.

use std::cmp::Ordering;

mod apk;
mod dpkg;
mod generic;
mod pep440;
mod semver;

/// The version scheme used for one (base) ecosystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Dpkg,
    Apk,
    Pep440,
    SemVer,
    Go,
    Generic,
}

impl Scheme {
    pub(crate) fn for_ecosystem(ecosystem: &str) -> Scheme {
        match crate::base_ecosystem(ecosystem) {
            "Debian" | "Ubuntu" => Scheme::Dpkg,
            "Alpine" => Scheme::Apk,
            "PyPI" => Scheme::Pep440,
            "npm" | "crates.io" => Scheme::SemVer,
            "Go" => Scheme::Go,
            _ => Scheme::Generic,
        }
    }

    /// Whether `v` is a valid version of this scheme.
    pub(crate) fn is_valid(self, v: &str) -> bool {
        match self {
            Scheme::Dpkg => dpkg::Version::parse(v).is_some(),
            Scheme::Apk => apk::parse(v).is_some(),
            Scheme::Pep440 => pep440::Version::parse(v).is_some(),
            Scheme::SemVer => semver::Version::parse(v, semver::Flavor::Strict).is_some(),
            Scheme::Go => semver::Version::parse(v, semver::Flavor::Go).is_some(),
            Scheme::Generic => generic::parse(v).is_some(),
        }
    }

    pub(crate) fn compare(self, a: &str, b: &str) -> Option<Ordering> {
        match self {
            Scheme::Dpkg => Some(dpkg::Version::parse(a)?.cmp(&dpkg::Version::parse(b)?)),
            Scheme::Apk => Some(apk::compare(&apk::parse(a)?, &apk::parse(b)?)),
            Scheme::Pep440 => Some(pep440::Version::parse(a)?.cmp(&pep440::Version::parse(b)?)),
            Scheme::SemVer => {
                let f = semver::Flavor::Strict;
                Some(semver::Version::parse(a, f)?.cmp(&semver::Version::parse(b, f)?))
            }
            Scheme::Go => {
                let f = semver::Flavor::Go;
                Some(semver::Version::parse(a, f)?.cmp(&semver::Version::parse(b, f)?))
            }
            Scheme::Generic => Some(generic::compare(&generic::parse(a)?, &generic::parse(b)?)),
        }
    }
}

/// Compares two strings of ASCII digits as unbounded non-negative integers.
pub(crate) fn cmp_digits(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}
