//! Alpine (apk-tools) version order.
//!
//! Grammar: `N(.N)*[a-z](_suffix[N])*[~hash][-rN]`, suffixes `alpha beta pre rc`
//! (before the release) and `cvs svn git hg p` (after it). Tokens are compared in
//! turn; when one version runs out or the token kinds differ, a pre-release suffix
//! is lower, otherwise the version whose next token kind ranks lower (digit <
//! letter < suffix < hash < revision < end) is the greater one. So
//! `1.2.3_rc1 < 1.2.3 < 1.2.3-r1 < 1.2.3_p1 < 1.2.3.1`: the `-r` package revision is a
//! smaller step than any upstream component or post-release suffix.

use std::cmp::Ordering;

const PRE: [&str; 4] = ["alpha", "beta", "pre", "rc"];
const POST: [&str; 5] = ["cvs", "svn", "git", "hg", "p"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token<'a> {
    Digit(&'a str),
    Letter(u8),
    /// Negative for pre-release suffixes, positive for post-release ones.
    Suffix(i32),
    SuffixNo(&'a str),
    Hash(&'a str),
    Revision(&'a str),
    End,
}

impl Token<'_> {
    fn rank(&self) -> u8 {
        match self {
            Token::Digit(_) => 0,
            Token::Letter(_) => 1,
            Token::Suffix(_) => 2,
            Token::SuffixNo(_) => 3,
            Token::Hash(_) => 4,
            Token::Revision(_) => 5,
            Token::End => 6,
        }
    }
}

fn digits(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_digit).count()
}

/// Splits a version into tokens, or `None` when it does not follow the grammar.
pub(super) fn parse(v: &str) -> Option<Vec<Token<'_>>> {
    let mut out = Vec::new();
    let mut rest = v;
    // N(.N)*
    loop {
        let n = digits(rest);
        if n == 0 {
            return None;
        }
        out.push(Token::Digit(&rest[..n]));
        rest = &rest[n..];
        match rest.strip_prefix('.') {
            Some(r) => rest = r,
            None => break,
        }
    }
    // [a-z]
    if let Some(c) = rest.bytes().next().filter(u8::is_ascii_lowercase) {
        out.push(Token::Letter(c));
        rest = &rest[1..];
    }
    // (_suffix[N])*
    while let Some(r) = rest.strip_prefix('_') {
        let name_len = r.bytes().take_while(u8::is_ascii_lowercase).count();
        let name = &r[..name_len];
        let value = if let Some(i) = PRE.iter().position(|s| *s == name) {
            i as i32 - PRE.len() as i32
        } else if let Some(i) = POST.iter().position(|s| *s == name) {
            i as i32 + 1
        } else {
            return None;
        };
        out.push(Token::Suffix(value));
        rest = &r[name_len..];
        let n = digits(rest);
        if n > 0 {
            out.push(Token::SuffixNo(&rest[..n]));
            rest = &rest[n..];
        }
    }
    // ~hash
    if let Some(r) = rest.strip_prefix('~') {
        let n = r.bytes().take_while(u8::is_ascii_hexdigit).count();
        if n == 0 {
            return None;
        }
        out.push(Token::Hash(&r[..n]));
        rest = &r[n..];
    }
    // -rN
    if let Some(r) = rest.strip_prefix("-r") {
        let n = digits(r);
        if n == 0 {
            return None;
        }
        out.push(Token::Revision(&r[..n]));
        rest = &r[n..];
    }
    rest.is_empty().then_some(out)
}

pub(super) fn compare(a: &[Token<'_>], b: &[Token<'_>]) -> Ordering {
    let mut i = 0;
    loop {
        let ta = a.get(i).unwrap_or(&Token::End);
        let tb = b.get(i).unwrap_or(&Token::End);
        let o = match (ta, tb) {
            (Token::End, Token::End) => return Ordering::Equal,
            (Token::Digit(x), Token::Digit(y))
            | (Token::SuffixNo(x), Token::SuffixNo(y))
            | (Token::Revision(x), Token::Revision(y)) => super::cmp_digits(x, y),
            (Token::Letter(x), Token::Letter(y)) => x.cmp(y),
            (Token::Suffix(x), Token::Suffix(y)) => x.cmp(y),
            (Token::Hash(x), Token::Hash(y)) => x.cmp(y),
            _ => break,
        };
        if o != Ordering::Equal {
            return o;
        }
        i += 1;
    }
    let ta = a.get(i).unwrap_or(&Token::End);
    let tb = b.get(i).unwrap_or(&Token::End);
    if matches!(ta, Token::Suffix(x) if *x < 0) {
        return Ordering::Less;
    }
    if matches!(tb, Token::Suffix(x) if *x < 0) {
        return Ordering::Greater;
    }
    // The kinds differ: the version that goes on with a lower-ranked token is greater.
    tb.rank().cmp(&ta.rank())
}
