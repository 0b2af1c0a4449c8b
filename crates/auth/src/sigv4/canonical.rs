//! Canonical request construction, exactly as SigV4 specifies it for services other than S3.
//!
//! - Canonical URI: the path as received (still percent-encoded), with `.`/`..` and empty segments
//!   removed (RFC 3986 §5.2.4, as the AWS SDKs normalize), then URI-encoded once more (each byte
//!   other than an unreserved character or `/` becomes `%XX`, so `%` becomes `%25`). This is the
//!   "double encoding" every AWS SDK applies for non-S3 services.
//! - Canonical query: every `name=value` pair is decoded (`%XX`, and `+` as space, as
//!   `application/x-www-form-urlencoded` and the AWS SDKs do; invalid UTF-8 becomes U+FFFD),
//!   re-encoded with only unreserved
//!   characters left bare, and sorted by encoded name, then encoded value.
//! - Canonical headers: the signed headers in the order of `SignedHeaders`, each value trimmed of
//!   spaces with runs of spaces collapsed to one, repeated headers joined with `,`.

use std::borrow::Cow;

use http::HeaderMap;

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Appends `input` URI-encoded per SigV4: unreserved bytes as is, `/` as is unless
/// `encode_slash`, everything else as `%XX` with upper-case hex.
pub(crate) fn uri_encode_into(input: &[u8], encode_slash: bool, out: &mut String) {
    for &b in input {
        if is_unreserved(b) || (b == b'/' && !encode_slash) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(b & 0x0f)]));
        }
    }
}

/// [`uri_encode_into`] into a new string.
pub(crate) fn uri_encode(input: &[u8], encode_slash: bool) -> String {
    let mut out = String::with_capacity(input.len() * 3);
    uri_encode_into(input, encode_slash, &mut out);
    out
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` sequences (and `+` as a space when `plus_as_space`); a `%` that does not start
/// a valid escape is kept literally, as `application/x-www-form-urlencoded` parsers do.
pub(crate) fn percent_decode(input: &str, plus_as_space: bool) -> Vec<u8> {
    let b = input.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_as_space => out.push(b' '),
            other => out.push(other),
        }
        i += 1;
    }
    out
}

/// Removes `.`, `..` and empty segments from an absolute path, keeping a trailing slash; the
/// same algorithm as the AWS SDKs' URI path normalization.
pub(crate) fn normalize_path(path: &str) -> Cow<'_, str> {
    if path.is_empty() {
        return Cow::Borrowed("/");
    }
    let path: Cow<'_, str> = if path.starts_with('/') { Cow::Borrowed(path) } else { Cow::Owned(format!("/{path}")) };
    if !path.contains('.') && !path.contains("//") {
        return path;
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    out.push('/');
    out.push_str(&segments.join("/"));
    let ends_with_slash = ["/", "/.", "/./", "/..", "/../"].iter().any(|s| path.ends_with(s));
    if ends_with_slash && !out.ends_with('/') {
        out.push('/');
    }
    Cow::Owned(out)
}

/// The canonical URI for a raw (as received, percent-encoded) request path.
pub(crate) fn canonical_uri(raw_path: &str) -> String {
    uri_encode(normalize_path(raw_path).as_bytes(), false)
}

/// One decoded query parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueryParam {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

/// Decodes a query component to UTF-8, replacing invalid sequences with U+FFFD as the AWS SDKs'
/// `application/x-www-form-urlencoded` parsers do (so `%80` canonicalizes as `%EF%BF%BD`).
fn decode_component(s: &str) -> Vec<u8> {
    let bytes = percent_decode(s, true);
    match String::from_utf8(bytes) {
        Ok(s) => s.into_bytes(),
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned().into_bytes(),
    }
}

/// Splits a raw query string into decoded parameters, in order; empty pieces are skipped and a
/// piece without `=` is a name with an empty value.
pub(crate) fn parse_query(raw: &str) -> Vec<QueryParam> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|piece| {
            let (n, v) = piece.split_once('=').unwrap_or((piece, ""));
            QueryParam { name: decode_component(n), value: decode_component(v) }
        })
        .collect()
}

/// The canonical query string for the given decoded parameters.
pub(crate) fn canonical_query<'a>(params: impl Iterator<Item = &'a QueryParam>) -> String {
    let mut encoded: Vec<(String, String)> =
        params.map(|p| (uri_encode(&p.name, true), uri_encode(&p.value, true))).collect();
    encoded.sort();
    let mut out = String::new();
    for (i, (n, v)) in encoded.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(n);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// Trims spaces at both ends and collapses each run of spaces to one (other whitespace is kept,
/// as AWS does).
fn trim_all_into(value: &[u8], out: &mut Vec<u8>) {
    let start = value.iter().position(|&b| b != b' ');
    let Some(start) = start else { return };
    let end = value.iter().rposition(|&b| b != b' ').unwrap_or(start);
    let mut prev_space = false;
    for &b in &value[start..=end] {
        if b == b' ' {
            if !prev_space {
                out.push(b);
            }
            prev_space = true;
        } else {
            out.push(b);
            prev_space = false;
        }
    }
}

/// A signed header that the request does not carry.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct MissingSignedHeader(pub String);

/// Builds the canonical request. `signed_headers` is the `SignedHeaders` value exactly as the
/// client sent it; `canonical_query` is already canonical.
pub(crate) fn canonical_request(
    method: &str,
    raw_path: &str,
    canonical_query: &str,
    headers: &HeaderMap,
    signed_headers: &str,
    payload_hash: &str,
) -> Result<Vec<u8>, MissingSignedHeader> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(method.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_uri(raw_path).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_query.as_bytes());
    out.push(b'\n');
    for name in signed_headers.split(';') {
        let mut values = headers.get_all(name).iter().peekable();
        if values.peek().is_none() {
            return Err(MissingSignedHeader(name.to_owned()));
        }
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        for (i, v) in values.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            trim_all_into(v.as_bytes(), &mut out);
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed_headers.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload_hash.as_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_aws() {
        assert_eq!(uri_encode(b"a-b_c.d~e", true), "a-b_c.d~e");
        assert_eq!(uri_encode(b"a b/c", true), "a%20b%2Fc");
        assert_eq!(uri_encode(b"a b/c", false), "a%20b/c");
        assert_eq!(uri_encode("ሴ".as_bytes(), true), "%E1%88%B4");
        assert_eq!(uri_encode(b"%3A", false), "%253A");
    }

    #[test]
    fn decodes_leniently() {
        assert_eq!(percent_decode("a%20b+c", true), b"a b c");
        assert_eq!(percent_decode("a%20b+c", false), b"a b+c");
        assert_eq!(percent_decode("%", true), b"%");
        assert_eq!(percent_decode("%4", true), b"%4");
        assert_eq!(percent_decode("%zz%41", true), b"%zzA");
        assert_eq!(percent_decode("%e1%88%b4", true), "ሴ".as_bytes());
    }

    #[test]
    fn normalizes_paths_like_the_sdks() {
        for (input, want) in [
            ("", "/"),
            ("/", "/"),
            ("foo", "/foo"),
            ("/foo/bar/", "/foo/bar/"),
            ("//example//", "/example/"),
            ("/./", "/"),
            ("/./example", "/example"),
            ("/example/..", "/"),
            ("/example1/example2/../..", "/"),
            ("/foo/bar/.", "/foo/bar/"),
            ("/../foo", "/foo"),
            ("/a/b/../c/./d", "/a/c/d"),
            ("/a.b/c..d", "/a.b/c..d"),
        ] {
            assert_eq!(normalize_path(input), want, "{input:?}");
        }
    }

    #[test]
    fn canonical_uri_double_encodes() {
        assert_eq!(canonical_uri("/test/@connections/JBDvjfGEIAMCERw%3D"), "/test/%40connections/JBDvjfGEIAMCERw%253D");
    }

    #[test]
    fn canonical_query_sorts_encoded_pairs() {
        let q = parse_query("Param-3=Value3&Param=Value2&%E1%88%B4=Value1");
        assert_eq!(canonical_query(q.iter()), "%E1%88%B4=Value1&Param=Value2&Param-3=Value3");
        let q = parse_query("b=2&a&&a=1&c=x+y&d=%7e");
        assert_eq!(canonical_query(q.iter()), "a=&a=1&b=2&c=x%20y&d=~");
        let q = parse_query("k=%80");
        assert_eq!(canonical_query(q.iter()), "k=%EF%BF%BD");
    }

    #[test]
    fn trims_header_values() {
        for (input, want) in
            [("  a   b  c ", "a b c"), ("\"a   b   c\"", "\"a b c\""), ("", ""), ("   ", ""), ("a\tb", "a\tb")]
        {
            let mut out = Vec::new();
            trim_all_into(input.as_bytes(), &mut out);
            assert_eq!(out, want.as_bytes(), "{input:?}");
        }
    }
}
