//! `Range` (blob GET) and `Content-Range` (chunked upload) parsing.

/// An inclusive byte range `[start, end]` resolved against a known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes in the range.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }
    /// Never empty (inclusive range); provided for clippy's sake.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Outcome of resolving a `Range` request header against a blob of `total` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: serve the whole blob (absent, malformed or multi-range headers).
    Full,
    /// Serve this part with 206.
    Partial(ByteRange),
    /// 416 with `Content-Range: bytes */total`.
    Unsatisfiable,
}

/// Resolve an HTTP `Range` header (`bytes=a-b`, `bytes=a-`, `bytes=-n`) against `total`.
pub fn parse_range(header: Option<&str>, total: u64) -> RangeRequest {
    let Some(h) = header else {
        return RangeRequest::Full;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) { None } else { s.parse().ok() }
    };
    if a.is_empty() {
        let Some(n) = num(b) else {
            return RangeRequest::Full;
        };
        if n == 0 || total == 0 {
            return RangeRequest::Unsatisfiable;
        }
        let n = n.min(total);
        return RangeRequest::Partial(ByteRange { start: total - n, end: total - 1 });
    }
    let Some(start) = num(a) else {
        return RangeRequest::Full;
    };
    let end = if b.is_empty() {
        total.saturating_sub(1)
    } else {
        match num(b) {
            Some(e) if e >= start => e.min(total.saturating_sub(1)),
            // `last < first`: the distribution-spec conformance suite wants 416, not the full blob.
            Some(_) => return RangeRequest::Unsatisfiable,
            None => return RangeRequest::Full,
        }
    };
    if start >= total {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial(ByteRange { start, end })
}

/// Parse an upload chunk's `Content-Range` (`start-end`, also tolerating a `bytes ` or `bytes=` prefix
/// and a `/total` suffix). `None` when malformed.
pub fn parse_content_range(h: &str) -> Option<(u64, u64)> {
    let s = h.trim();
    let s = s.strip_prefix("bytes=").or_else(|| s.strip_prefix("bytes ")).unwrap_or(s);
    let s = s.split('/').next()?;
    let (a, b) = s.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() || b.is_empty() || !a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    (b >= a).then_some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn ranges() {
        use RangeRequest::*;
        let p = |s, e| Partial(ByteRange { start: s, end: e });
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), p(0, 4));
        assert_eq!(parse_range(Some("bytes=5-"), 10), p(5, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), p(7, 9));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), p(5, 9));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=4-2"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Full);
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes 5-9/10"), Some((5, 9)));
        assert_eq!(parse_content_range("9-5"), None);
        assert_eq!(parse_content_range("x"), None);
    }
}
