//! The `/v2/...` path grammar. Names may contain `/`, so routes are matched from the end.
//! Components are returned raw; callers validate them (to answer NAME_INVALID, DIGEST_INVALID...).

/// A data-plane route, before validation of its components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags { name: &'a str },
    /// `/v2/<name>/manifests/<reference>`
    Manifest { name: &'a str, reference: &'a str },
    /// `/v2/<name>/blobs/<digest>`
    Blob { name: &'a str, digest: &'a str },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart { name: &'a str },
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload { name: &'a str, id: &'a str },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { name: &'a str, digest: &'a str },
}

/// Parse a request path (no query string). `None` for paths outside the API (404).
pub fn parse(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    // name = everything before the matched suffix; must be non-empty.
    let split = |suffix_start: usize| -> Option<&str> {
        if suffix_start == 0 {
            return None;
        }
        Some(&rest[..suffix_start - 1]).filter(|n| !n.is_empty())
    };
    if let Some(n) = rest.strip_suffix("/tags/list") {
        return (!n.is_empty()).then_some(Route::Tags { name: n });
    }
    if let Some(n) = rest.strip_suffix("/blobs/uploads/").or_else(|| rest.strip_suffix("/blobs/uploads")) {
        return (!n.is_empty()).then_some(Route::UploadStart { name: n });
    }
    let (head, last) = rest.rsplit_once('/')?;
    if last.is_empty() {
        return None;
    }
    let (head2, kind) = head.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Route::Manifest { name: split(head2.len() + 1)?, reference: last }),
        "referrers" => Some(Route::Referrers { name: split(head2.len() + 1)?, digest: last }),
        "blobs" => Some(Route::Blob { name: split(head2.len() + 1)?, digest: last }),
        "uploads" => {
            let (name, blobs) = head2.rsplit_once('/')?;
            (blobs == "blobs" && !name.is_empty()).then_some(Route::Upload { name, id: last })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn routes() {
        assert_eq!(parse("/v2/"), Some(Route::Base));
        assert_eq!(parse("/v2"), Some(Route::Base));
        assert_eq!(parse("/v2/_catalog"), Some(Route::Catalog));
        assert_eq!(parse("/v2/a/b/tags/list"), Some(Route::Tags { name: "a/b" }));
        assert_eq!(parse("/v2/a/manifests/latest"), Some(Route::Manifest { name: "a", reference: "latest" }));
        assert_eq!(parse("/v2/a/blobs/x/manifests/v1"), Some(Route::Manifest { name: "a/blobs/x", reference: "v1" }));
        assert_eq!(parse("/v2/a/blobs/sha256:1"), Some(Route::Blob { name: "a", digest: "sha256:1" }));
        assert_eq!(parse("/v2/a/b/blobs/uploads/"), Some(Route::UploadStart { name: "a/b" }));
        assert_eq!(parse("/v2/a/blobs/uploads/u1"), Some(Route::Upload { name: "a", id: "u1" }));
        assert_eq!(parse("/v2/a/referrers/sha256:1"), Some(Route::Referrers { name: "a", digest: "sha256:1" }));
        assert_eq!(parse("/v2/manifests/x"), None);
        assert_eq!(parse("/v3/a/manifests/x"), None);
        assert_eq!(parse("/v2/a/unknown/x"), None);
        assert_eq!(parse("/v2/a/manifests/"), None);
        assert_eq!(parse("/v2//manifests/x"), None);
    }
}
