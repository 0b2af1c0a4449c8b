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

/// The largest offset a chunk may end at (exclusive): sizes are stored as signed 64-bit numbers
/// (the metadata database, ECR's `Long`), so no upload grows past `i64::MAX` bytes.
pub const MAX_UPLOAD_END: u64 = i64::MAX as u64;

/// Where an uploaded chunk goes: the inclusive byte range `[start, end]` of a `Content-Range`
/// or of ECR's `partFirstByte`/`partLastByte`. Built only through [`ChunkRange::new`], so
/// `start <= end`, the exclusive end `end + 1` is at most [`MAX_UPLOAD_END`] and
/// [`ChunkRange::len`] never overflows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    start: u64,
    end: u64,
}

/// Why a chunk range was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkRangeError {
    /// Not `start-end` with decimal numbers.
    #[error("malformed range")]
    Malformed,
    /// `end < start` (or a negative number).
    #[error("range ends before it starts")]
    Reversed,
    /// The range reaches past the largest upload size.
    #[error("range exceeds the largest upload size")]
    TooLarge,
}

impl ChunkRange {
    /// The range `[start, end]` (inclusive), checked.
    pub fn new(start: u64, end: u64) -> Result<ChunkRange, ChunkRangeError> {
        if end < start {
            return Err(ChunkRangeError::Reversed);
        }
        match end.checked_add(1) {
            Some(exclusive) if exclusive <= MAX_UPLOAD_END => Ok(ChunkRange { start, end }),
            _ => Err(ChunkRangeError::TooLarge),
        }
    }

    /// From signed numbers as ECR's API carries them (`partFirstByte`, `partLastByte`).
    pub fn from_signed(first: i64, last: i64) -> Result<ChunkRange, ChunkRangeError> {
        match (u64::try_from(first), u64::try_from(last)) {
            (Ok(a), Ok(b)) => ChunkRange::new(a, b),
            _ => Err(ChunkRangeError::Reversed),
        }
    }

    /// First byte.
    pub fn start(&self) -> u64 {
        self.start
    }
    /// Last byte (inclusive).
    pub fn end(&self) -> u64 {
        self.end
    }
    /// Number of bytes (at least 1).
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }
    /// Never empty (inclusive range); provided for clippy's sake.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl std::fmt::Display for ChunkRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// Parse an upload chunk's `Content-Range` (`start-end`, also tolerating a `bytes ` or `bytes=`
/// prefix and a `/total` suffix) into a checked [`ChunkRange`].
pub fn parse_content_range(h: &str) -> Result<ChunkRange, ChunkRangeError> {
    use ChunkRangeError::Malformed;
    let s = h.trim();
    let s = s.strip_prefix("bytes=").or_else(|| s.strip_prefix("bytes ")).unwrap_or(s);
    let s = s.split('/').next().ok_or(Malformed)?;
    let (a, b) = s.split_once('-').ok_or(Malformed)?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() || b.is_empty() || !a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()) {
        return Err(Malformed);
    }
    // Digits only: a parse failure is a number past u64.
    let (a, b): (u64, u64) = match (a.parse(), b.parse()) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return Err(ChunkRangeError::TooLarge),
    };
    ChunkRange::new(a, b)
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
        let r = |a, b| ChunkRange::new(a, b).unwrap();
        assert_eq!(parse_content_range("0-99"), Ok(r(0, 99)));
        assert_eq!(parse_content_range("0-99").unwrap().len(), 100);
        assert_eq!(parse_content_range("bytes 5-9/10"), Ok(r(5, 9)));
        assert_eq!(parse_content_range("9-5"), Err(ChunkRangeError::Reversed));
        assert_eq!(parse_content_range("x"), Err(ChunkRangeError::Malformed));
        assert_eq!(parse_content_range("-5"), Err(ChunkRangeError::Malformed));
    }

    #[test]
    fn chunk_ranges_reject_overflow() {
        use ChunkRangeError::*;
        assert_eq!(parse_content_range("0-18446744073709551615"), Err(TooLarge));
        assert_eq!(parse_content_range("0-18446744073709551616"), Err(TooLarge));
        assert_eq!(parse_content_range("18446744073709551615-18446744073709551615"), Err(TooLarge));
        assert_eq!(parse_content_range("0-9223372036854775807"), Err(TooLarge));
        let last = parse_content_range("0-9223372036854775806").unwrap();
        assert_eq!(last.len(), i64::MAX as u64);
        assert_eq!(ChunkRange::from_signed(0, i64::MAX), Err(TooLarge));
        assert_eq!(ChunkRange::from_signed(-1, 5), Err(Reversed));
        assert_eq!(ChunkRange::from_signed(5, 4), Err(Reversed));
        assert_eq!(ChunkRange::from_signed(i64::MIN, i64::MAX), Err(Reversed));
        assert_eq!(ChunkRange::from_signed(3, 3).unwrap().len(), 1);
    }

    proptest::proptest! {
        #[test]
        fn content_range_parsing_never_panics(h in "\\PC{0,40}") {
            if let Ok(r) = parse_content_range(&h) {
                proptest::prop_assert!(r.start() <= r.end());
                proptest::prop_assert_eq!(r.len() - 1, r.end() - r.start());
                proptest::prop_assert!(r.end() < MAX_UPLOAD_END);
            }
        }

        #[test]
        fn digit_soup_never_panics(h in "(bytes[ =])? ?[0-9]{0,22} ?- ?[0-9]{0,22}(/[0-9*]{0,5})?") {
            if let Ok(r) = parse_content_range(&h) {
                proptest::prop_assert!(r.start() <= r.end() && r.end() < MAX_UPLOAD_END);
            }
        }

        #[test]
        fn numeric_content_ranges_never_panic(a: u64, b: u64, sep in "(bytes |bytes=)?") {
            let h = format!("{sep}{a}-{b}");
            match parse_content_range(&h) {
                Ok(r) => {
                    proptest::prop_assert_eq!((r.start(), r.end()), (a, b));
                    proptest::prop_assert_eq!(r.len(), b - a + 1);
                }
                Err(ChunkRangeError::Reversed) => proptest::prop_assert!(b < a),
                Err(ChunkRangeError::TooLarge) => proptest::prop_assert!(b >= a && b >= MAX_UPLOAD_END - 1),
                Err(e) => proptest::prop_assert!(false, "{h}: {e}"),
            }
        }

        #[test]
        fn signed_ranges_never_panic(a: i64, b: i64) {
            if let Ok(r) = ChunkRange::from_signed(a, b) {
                proptest::prop_assert_eq!(r.len() as i128, b as i128 - a as i128 + 1);
            }
        }
    }
}
