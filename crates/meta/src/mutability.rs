//! ECR's tag-mutability rules, evaluated by the store inside the transaction that moves a tag
//! (never from a cached copy of the settings).

/// Whether an existing `tag` may not be moved, under a repository's `mutability`
/// (`MUTABLE`, `IMMUTABLE`, `IMMUTABLE_WITH_EXCLUSION`, `MUTABLE_WITH_EXCLUSION`) and its
/// exclusion filters (the stored JSON array of `{"filterType":"WILDCARD","filter":"dev-*"}`).
/// `IMMUTABLE_WITH_EXCLUSION`: every tag is immutable except those a filter matches;
/// `MUTABLE_WITH_EXCLUSION`: every tag is mutable except those a filter matches. Unknown modes
/// are mutable; unreadable filters match nothing.
pub fn tag_is_immutable(mutability: &str, exclusions: Option<&str>, tag: &str) -> bool {
    let matched = || {
        exclusions
            .and_then(|j| serde_json::from_str::<Vec<serde_json::Value>>(j).ok())
            .unwrap_or_default()
            .iter()
            .filter_map(|f| f.get("filter").and_then(|v| v.as_str()))
            .any(|f| wildcard_match(f, tag))
    };
    match mutability {
        "IMMUTABLE" => true,
        "IMMUTABLE_WITH_EXCLUSION" => !matched(),
        "MUTABLE_WITH_EXCLUSION" => matched(),
        _ => false,
    }
}

/// ECR's WILDCARD filter: `*` matches any run of characters, everything else itself.
pub fn wildcard_match(pattern: &str, s: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), s.as_bytes());
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_and_filter() {
        let f = Some(r#"[{"filterType":"WILDCARD","filter":"dev-*"},{"filterType":"WILDCARD","filter":"latest"}]"#);
        assert!(tag_is_immutable("IMMUTABLE", None, "v1"));
        assert!(!tag_is_immutable("MUTABLE", None, "v1"));
        assert!(tag_is_immutable("IMMUTABLE_WITH_EXCLUSION", f, "v1"));
        assert!(!tag_is_immutable("IMMUTABLE_WITH_EXCLUSION", f, "dev-3"));
        assert!(!tag_is_immutable("IMMUTABLE_WITH_EXCLUSION", f, "latest"));
        assert!(!tag_is_immutable("MUTABLE_WITH_EXCLUSION", f, "v1"));
        assert!(tag_is_immutable("MUTABLE_WITH_EXCLUSION", f, "dev-"));
        assert!(tag_is_immutable("MUTABLE_WITH_EXCLUSION", f, "latest"));
        assert!(!tag_is_immutable("MUTABLE_WITH_EXCLUSION", f, "latest2"));
    }
}
