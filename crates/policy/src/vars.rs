//! Policy variables (`${aws:username}`, `${*}`, `${?}`, `${$}`, `${key, 'default'}`) in resource
//! patterns and string/ARN condition values.
//!
//! Only Version 2012-10-17 substitutes variables; older documents keep the text literally.

use std::borrow::Cow;

use crate::Context;
use crate::wildcard::{self, Tok};

/// A piece of a [`Template`].
#[derive(Clone, Debug, PartialEq)]
enum Part {
    /// Text as written (may hold `*`/`?` wildcards, meaningful when used as a pattern).
    Text(String),
    /// A literal string that never acts as a wildcard (`${*}` is `*`, `${?}` is `?`, `${$}` is `$`).
    Literal(String),
    /// A context key looked up at evaluation time, with an optional default.
    Var { key: String, default: Option<String> },
}

/// A string from a policy, possibly holding policy variables, compiled once at parse time.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Template {
    /// Whether any [`Part::Var`] occurs; if not, `text` and `toks` are the full answer.
    has_vars: bool,
    parts: Vec<Part>,
    /// The text with `${*}`-style escapes resolved (only meaningful when `!has_vars`).
    text: String,
    /// The compiled glob (only meaningful when `!has_vars`).
    toks: Vec<Tok>,
    ignore_case: bool,
}

impl Template {
    /// Compiles `source`. With `substitute` false (Version 2008-10-17), `${...}` is literal text.
    /// `ignore_case` folds literals for case-insensitive globbing.
    pub(crate) fn new(source: &str, substitute: bool, ignore_case: bool) -> Template {
        let parts = if substitute { split(source) } else { vec![Part::Text(source.to_owned())] };
        let has_vars = parts.iter().any(|p| matches!(p, Part::Var { .. }));
        let mut text = String::new();
        let mut toks = Vec::new();
        if !has_vars {
            for part in &parts {
                match part {
                    Part::Text(s) => {
                        text.push_str(s);
                        wildcard::compile_into(s, ignore_case, &mut toks);
                    }
                    Part::Literal(s) => {
                        text.push_str(s);
                        wildcard::push_literal(s, ignore_case, &mut toks);
                    }
                    Part::Var { .. } => unreachable!(),
                }
            }
        }
        Template { has_vars, parts, text, toks, ignore_case }
    }

    /// Whether the template needs the context to resolve.
    pub(crate) fn has_vars(&self) -> bool {
        self.has_vars
    }

    /// The resolved string (substituted values inserted verbatim); `None` when a variable has no
    /// single value in `ctx` and no default.
    pub(crate) fn text<'a>(&'a self, ctx: &Context) -> Option<Cow<'a, str>> {
        if !self.has_vars {
            return Some(Cow::Borrowed(&self.text));
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(s) | Part::Literal(s) => out.push_str(s),
                Part::Var { key, default } => out.push_str(lookup(ctx, key, default.as_deref())?),
            }
        }
        Some(Cow::Owned(out))
    }

    /// The resolved glob: text parts keep their wildcards, substituted values are literal.
    pub(crate) fn toks<'a>(&'a self, ctx: &Context) -> Option<Cow<'a, [Tok]>> {
        if !self.has_vars {
            return Some(Cow::Borrowed(&self.toks));
        }
        let mut out = Vec::new();
        for part in &self.parts {
            match part {
                Part::Text(s) => wildcard::compile_into(s, self.ignore_case, &mut out),
                Part::Literal(s) => wildcard::push_literal(s, self.ignore_case, &mut out),
                Part::Var { key, default } => {
                    wildcard::push_literal(lookup(ctx, key, default.as_deref())?, self.ignore_case, &mut out)
                }
            }
        }
        Some(Cow::Owned(out))
    }

    /// The literal text every match starts with: the characters before the first wildcard or
    /// variable, and whether that is the whole template (it then matches exactly that text).
    pub(crate) fn literal_prefix(&self) -> (String, bool) {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(s) => {
                    for c in s.chars() {
                        if c == '*' || c == '?' {
                            return (out, false);
                        }
                        out.push(c);
                    }
                }
                Part::Literal(s) => out.push_str(s),
                Part::Var { .. } => return (out, false),
            }
        }
        (out, true)
    }

    /// Whether `text` matches this template as a glob; false when a variable cannot be resolved.
    pub(crate) fn glob_match(&self, ctx: &Context, text: &str) -> bool {
        match self.toks(ctx) {
            Some(toks) => wildcard::matches(&toks, text, self.ignore_case),
            None => false,
        }
    }
}

/// A variable's value: the key's only value, else the default.
fn lookup<'a>(ctx: &'a Context, key: &str, default: Option<&'a str>) -> Option<&'a str> {
    match ctx.get(key) {
        Some([one]) => Some(one.as_str()),
        _ => default,
    }
}

/// Splits `source` into text and `${...}` variables. An unterminated `${` is literal text.
fn split(source: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = source;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else { break };
        text.push_str(&rest[..start]);
        let inner = &rest[start + 2..start + 2 + len];
        rest = &rest[start + 2 + len + 1..];
        let part = match inner.trim() {
            "*" => Part::Literal("*".into()),
            "?" => Part::Literal("?".into()),
            "$" => Part::Literal("$".into()),
            inner => parse_var(inner),
        };
        if !text.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut text)));
        }
        parts.push(part);
    }
    text.push_str(rest);
    if !text.is_empty() || parts.is_empty() {
        parts.push(Part::Text(text));
    }
    parts
}

/// Parses `key` or `key, 'default'`.
fn parse_var(inner: &str) -> Part {
    if let Some((key, default)) = inner.split_once(',') {
        let default = default.trim();
        if let Some(d) = default.strip_prefix('\'').and_then(|d| d.strip_suffix('\'')) {
            return Part::Var { key: key.trim().to_owned(), default: Some(d.to_owned()) };
        }
    }
    Part::Var { key: inner.to_owned(), default: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        let mut c = Context::new();
        c.insert("aws:username", "ci").insert("aws:PrincipalAccount", "123456789012");
        c
    }

    #[test]
    fn substitutes_variables() {
        let t = Template::new("arn:aws:ecr:*:${aws:PrincipalAccount}:repository/${aws:username}/*", true, false);
        assert!(t.has_vars());
        assert_eq!(t.text(&ctx()).unwrap(), "arn:aws:ecr:*:123456789012:repository/ci/*");
        assert!(t.glob_match(&ctx(), "arn:aws:ecr:us-east-1:123456789012:repository/ci/app"));
        assert!(!t.glob_match(&ctx(), "arn:aws:ecr:us-east-1:123456789012:repository/other/app"));
    }

    #[test]
    fn variable_key_is_case_insensitive() {
        let t = Template::new("${AWS:UserName}", true, false);
        assert_eq!(t.text(&ctx()).unwrap(), "ci");
    }

    #[test]
    fn special_characters_are_literal() {
        let t = Template::new("a${*}b${?}c${$}", true, false);
        assert!(!t.has_vars());
        assert_eq!(t.text(&ctx()).unwrap(), "a*b?c$");
        assert!(t.glob_match(&ctx(), "a*b?c$"));
        assert!(!t.glob_match(&ctx(), "aXbYc$"));
    }

    #[test]
    fn unresolvable_and_defaults() {
        let t = Template::new("repo/${aws:userid}", true, false);
        assert_eq!(t.text(&ctx()), None);
        assert!(!t.glob_match(&ctx(), "repo/x"));
        let t = Template::new("repo/${aws:userid, 'nobody'}", true, false);
        assert_eq!(t.text(&ctx()).unwrap(), "repo/nobody");
        let mut multi = Context::new();
        multi.insert_many("aws:username", ["a", "b"]);
        assert_eq!(Template::new("${aws:username}", true, false).text(&multi), None);
    }

    #[test]
    fn substituted_values_are_not_wildcards() {
        let mut c = Context::new();
        c.insert("aws:username", "*");
        let t = Template::new("repo/${aws:username}", true, false);
        assert!(t.glob_match(&c, "repo/*"));
        assert!(!t.glob_match(&c, "repo/anything"));
    }

    #[test]
    fn legacy_version_keeps_text() {
        let t = Template::new("repo/${aws:username}", false, false);
        assert!(!t.has_vars());
        assert_eq!(t.text(&ctx()).unwrap(), "repo/${aws:username}");
        let t = Template::new("unterminated ${aws:username", true, false);
        assert_eq!(t.text(&ctx()).unwrap(), "unterminated ${aws:username");
    }
}
