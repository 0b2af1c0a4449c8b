//! Debian version order (deb-version(7), Debian Policy §5.6.12), as dpkg implements it.

use std::cmp::Ordering;

/// `[epoch:]upstream[-revision]`.
#[derive(Debug)]
pub(super) struct Version<'a> {
    epoch: &'a str,
    upstream: &'a str,
    revision: &'a str,
}

impl<'a> Version<'a> {
    pub(super) fn parse(v: &'a str) -> Option<Self> {
        let v = v.trim();
        let (epoch, rest) = match v.split_once(':') {
            Some((e, rest)) => {
                if e.is_empty() || !e.bytes().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                (e, rest)
            }
            None => ("0", v),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => {
                if r.is_empty() {
                    return None;
                }
                (u, r)
            }
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return None;
        }
        // dpkg only warns about an upstream not starting with a digit; accept it.
        let ok_up = upstream.bytes().all(|c| c.is_ascii_alphanumeric() || b".+~-:".contains(&c));
        let ok_rev = revision.bytes().all(|c| c.is_ascii_alphanumeric() || b".+~".contains(&c));
        if !ok_up || !ok_rev {
            return None;
        }
        Some(Version { epoch, upstream, revision })
    }
}

impl Ord for Version<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        super::cmp_digits(self.epoch, other.epoch)
            .then_with(|| verrevcmp(self.upstream, other.upstream))
            .then_with(|| verrevcmp(self.revision, other.revision))
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

/// Weight of a character in the non-digit parts: `~` before the end of the part,
/// the end before letters, letters before everything else.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(b'~') => -1,
        Some(c) => c as i32 + 256,
    }
}

/// Alternating non-digit (lexical, by `order`) and digit (numeric) parts.
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(|c| c.is_ascii_digit());
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}
