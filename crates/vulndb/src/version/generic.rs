//! Fallback for ecosystems without a dedicated scheme: dotted numbers only.

use std::cmp::Ordering;

/// Parses `[v]N(.N)*`; anything else is not understood.
pub(super) fn parse(v: &str) -> Option<Vec<&str>> {
    let v = v.strip_prefix('v').unwrap_or(v);
    let parts: Vec<&str> = v.split('.').collect();
    if parts.iter().all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit())) { Some(parts) } else { None }
}

/// Compares part by part; missing parts count as zero (`1.0` == `1.0.0`).
pub(super) fn compare(a: &[&str], b: &[&str]) -> Ordering {
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or("0");
        let y = b.get(i).copied().unwrap_or("0");
        let o = super::cmp_digits(x, y);
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}
