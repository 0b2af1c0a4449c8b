//! Minimal query-string parsing (`a=1&b=2`, percent-decoded; `+` is kept literally, since
//! media types contain it).

/// Decoded `(key, value)` pairs of a query string, in order.
pub fn pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = query else { return Vec::new() };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// The first value of `key`.
pub fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// All values of `key`.
pub fn all<'a>(pairs: &'a [(String, String)], key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    pairs.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Percent-decode; invalid escapes are kept as they are.
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encode a query value (RFC 3986 unreserved characters pass through).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parse() {
        let p = pairs(Some("n=2&last=a%2Fb&tag=x&tag=y&artifactType=a%2Bb+c&bad=%zz&end=%4"));
        assert_eq!(get(&p, "n"), Some("2"));
        assert_eq!(get(&p, "last"), Some("a/b"));
        assert_eq!(all(&p, "tag").collect::<Vec<_>>(), vec!["x", "y"]);
        assert_eq!(get(&p, "artifactType"), Some("a+b+c"));
        assert_eq!(get(&p, "bad"), Some("%zz"));
        assert_eq!(get(&p, "end"), Some("%4"));
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }
}
