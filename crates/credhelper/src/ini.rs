//! The INI dialect of the AWS shared configuration files (`~/.aws/config`,
//! `~/.aws/credentials`), as the AWS SDKs read it:
//!
//! - `[section]` headers; whitespace inside the brackets is trimmed;
//! - `key = value` properties (the value is trimmed; keys are case-insensitive, kept lowercase);
//! - `#` and `;` start a comment at the start of a line, after a section header, and inside a
//!   property value when whitespace precedes them (`key = a#b` keeps `a#b`);
//! - an indented line after a property continues it (sub-properties such as `s3 =` then
//!   `  max_concurrent_requests = 10`); these are kept as the property's raw value and not used.
//!
//! Repeated sections merge, and a repeated key takes the last value.

use std::collections::BTreeMap;

/// Sections by name, each a map of lowercase keys to values.
pub type Sections = BTreeMap<String, BTreeMap<String, String>>;

/// A line that is neither a section, a property, a comment nor a continuation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong (never the line's text: it may hold a secret).
    pub message: &'static str,
}

/// Cuts a comment that starts with `#` or `;` preceded by whitespace (or at the start).
fn strip_comment(s: &str) -> &str {
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if (c == b'#' || c == b';') && (i == 0 || b[i - 1].is_ascii_whitespace()) {
            return &s[..i];
        }
    }
    s
}

/// Parses one file.
pub fn parse(text: &str) -> Result<Sections, ParseError> {
    let mut sections = Sections::new();
    let mut current: Option<String> = None;
    let mut last_key: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            // A continuation of the previous property.
            let (Some(section), Some(key)) = (&current, &last_key) else {
                return Err(ParseError { line, message: "indented line without a property to continue" });
            };
            let value = sections.entry(section.clone()).or_default().entry(key.clone()).or_default();
            value.push('\n');
            value.push_str(strip_comment(trimmed).trim());
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            let Some(end) = rest.find(']') else {
                return Err(ParseError { line, message: "section header without a closing ']'" });
            };
            if !strip_comment(&rest[end + 1..]).trim().is_empty() {
                return Err(ParseError { line, message: "text after a section header" });
            }
            let name = rest[..end].trim().to_owned();
            sections.entry(name.clone()).or_default();
            current = Some(name);
            last_key = None;
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            return Err(ParseError { line, message: "expected 'key = value'" });
        };
        let Some(section) = &current else {
            return Err(ParseError { line, message: "property before any section header" });
        };
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() {
            return Err(ParseError { line, message: "property without a name" });
        }
        let value = strip_comment(value).trim().to_owned();
        sections.entry(section.clone()).or_default().insert(key.clone(), value);
        last_key = Some(key);
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_aws_dialect() {
        let text = "\
# a comment
; another
[default]
aws_access_key_id = AKIDEXAMPLE
aws_secret_access_key=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY   # trailing comment
region = us-west-2;not a comment

[ profile  dev ] ; comment after a header
Role_Arn = arn:aws:iam::123456789012:role/dev
s3 =
  max_concurrent_requests = 10
source_profile = default
[default]
region = eu-west-1
";
        let s = parse(text).unwrap();
        let d = &s["default"];
        assert_eq!(d["aws_access_key_id"], "AKIDEXAMPLE");
        assert_eq!(d["aws_secret_access_key"], "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        // The repeated section merged; the later value won.
        assert_eq!(d["region"], "eu-west-1");
        let dev = &s["profile  dev"];
        assert_eq!(dev["role_arn"], "arn:aws:iam::123456789012:role/dev");
        assert_eq!(dev["source_profile"], "default");
        assert_eq!(dev["s3"], "\nmax_concurrent_requests = 10");
    }

    #[test]
    fn values_keep_unspaced_comment_characters() {
        let s = parse("[p]\nk = a#b;c\nempty =\n").unwrap();
        assert_eq!(s["p"]["k"], "a#b;c");
        assert_eq!(s["p"]["empty"], "");
    }

    #[test]
    fn reports_broken_lines_without_their_text() {
        for (text, line) in [
            ("key = value\n", 1),
            ("[p]\nthis is not a property\n", 2),
            ("[p\n", 1),
            ("[p] x\n", 1),
            ("  indented = first\n", 1),
            ("[p]\n = v\n", 2),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}");
        }
        let e = parse("[p]\nSECRETVALUE\n").unwrap_err();
        assert!(!e.to_string().contains("SECRETVALUE"));
    }
}
