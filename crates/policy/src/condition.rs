//! The `Condition` element: operators, typed values parsed at policy-parse time, and evaluation
//! against a [`Context`] with AWS's single-valued, `ForAnyValue:`, `ForAllValues:`, `...IfExists`
//! and `Null` semantics.

use std::net::IpAddr;

use base64::Engine as _;
use serde_json::Value;

use crate::vars::Template;
use crate::wildcard::{self, Tok};
use crate::{Context, PolicyError};

/// How the request's (possibly multiple) values of a key are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SetOp {
    /// No prefix: the key must be present; any context value matching any policy value counts.
    Single,
    /// `ForAnyValue:`: some context value matches (false when the key is absent).
    AnyValue,
    /// `ForAllValues:`: every context value matches (true when the key is absent or empty).
    AllValues,
}

/// Numeric and date comparisons: the request value on the left, the policy value on the right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn holds<T: PartialOrd>(self, request: T, policy: T) -> bool {
        match self {
            Cmp::Eq => request == policy,
            Cmp::Lt => request < policy,
            Cmp::Le => request <= policy,
            Cmp::Gt => request > policy,
            Cmp::Ge => request >= policy,
        }
    }
}

/// String comparison flavours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StrMode {
    Exact,
    IgnoreCase,
    Like,
}

/// The operator's family with the policy values, parsed into the type the operator compares.
#[derive(Clone, Debug, PartialEq)]
enum Test {
    Str(StrMode, Vec<Template>),
    Num(Cmp, Vec<f64>),
    /// Epoch milliseconds.
    Date(Cmp, Vec<i64>),
    Bool(Vec<bool>),
    Binary(Vec<Vec<u8>>),
    Ip(Vec<Cidr>),
    Arn(Vec<Template>),
    /// `true` means "the key is absent".
    Null(Vec<bool>),
}

/// One operator applied to one key, e.g. `"StringLike": {"aws:username": ["a*", "b*"]}`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Condition {
    key: String,
    set: SetOp,
    if_exists: bool,
    negated: bool,
    test: Test,
    has_vars: bool,
}

/// The operator families, by base name (without set prefix or `IfExists`): kind and negation.
#[derive(Clone, Copy)]
enum Family {
    Str(StrMode),
    Num(Cmp),
    Date(Cmp),
    Bool,
    Binary,
    Ip,
    Arn,
    Null,
}

fn family(base: &str) -> Option<(Family, bool)> {
    use Family::*;
    Some(match base {
        "StringEquals" => (Str(StrMode::Exact), false),
        "StringNotEquals" => (Str(StrMode::Exact), true),
        "StringEqualsIgnoreCase" => (Str(StrMode::IgnoreCase), false),
        "StringNotEqualsIgnoreCase" => (Str(StrMode::IgnoreCase), true),
        "StringLike" => (Str(StrMode::Like), false),
        "StringNotLike" => (Str(StrMode::Like), true),
        "NumericEquals" => (Num(Cmp::Eq), false),
        "NumericNotEquals" => (Num(Cmp::Eq), true),
        "NumericLessThan" => (Num(Cmp::Lt), false),
        "NumericLessThanEquals" => (Num(Cmp::Le), false),
        "NumericGreaterThan" => (Num(Cmp::Gt), false),
        "NumericGreaterThanEquals" => (Num(Cmp::Ge), false),
        "DateEquals" => (Date(Cmp::Eq), false),
        "DateNotEquals" => (Date(Cmp::Eq), true),
        "DateLessThan" => (Date(Cmp::Lt), false),
        "DateLessThanEquals" => (Date(Cmp::Le), false),
        "DateGreaterThan" => (Date(Cmp::Gt), false),
        "DateGreaterThanEquals" => (Date(Cmp::Ge), false),
        "Bool" => (Bool, false),
        "BinaryEquals" => (Binary, false),
        "IpAddress" => (Ip, false),
        "NotIpAddress" => (Ip, true),
        "ArnEquals" | "ArnLike" => (Arn, false),
        "ArnNotEquals" | "ArnNotLike" => (Arn, true),
        "Null" => (Null, false),
        _ => return None,
    })
}

/// Parses a whole `Condition` element (`{operator: {key: value(s)}}`) into its conditions.
/// `substitute` enables policy variables in string and ARN values (Version 2012-10-17).
pub(crate) fn parse_block(block: &Value, substitute: bool) -> Result<Vec<Condition>, PolicyError> {
    let Value::Object(ops) = block else { return Err(PolicyError::new("Syntax errors in policy.")) };
    let mut out = Vec::new();
    for (operator, keys) in ops {
        let Value::Object(keys) = keys else { return Err(PolicyError::new("Syntax errors in policy.")) };
        for (key, values) in keys {
            out.push(Condition::parse(operator, key, values, substitute)?);
        }
    }
    Ok(out)
}

impl Condition {
    fn parse(operator: &str, key: &str, values: &Value, substitute: bool) -> Result<Condition, PolicyError> {
        let unknown = || PolicyError::new(format!("Invalid Condition type : {operator}."));
        let (set, rest) = if let Some(rest) = operator.strip_prefix("ForAnyValue:") {
            (SetOp::AnyValue, rest)
        } else if let Some(rest) = operator.strip_prefix("ForAllValues:") {
            (SetOp::AllValues, rest)
        } else {
            (SetOp::Single, operator)
        };
        let (if_exists, base) = match rest.strip_suffix("IfExists") {
            Some(base) => (true, base),
            None => (false, rest),
        };
        let (family, negated) = family(base).ok_or_else(unknown)?;
        if matches!(family, Family::Null) && (if_exists || set != SetOp::Single) {
            return Err(unknown());
        }
        if !valid_key(key) {
            return Err(PolicyError::new("Policy has an invalid condition key"));
        }
        let raw = scalar_strings(values)?;
        let bad = |v: &str| PolicyError::new(format!("Invalid value \"{v}\" for condition operator {operator}."));
        let test = match family {
            Family::Str(mode) => {
                let ic = mode == StrMode::IgnoreCase;
                Test::Str(mode, raw.iter().map(|v| Template::new(v, substitute, ic)).collect())
            }
            Family::Arn => Test::Arn(raw.iter().map(|v| Template::new(v, substitute, false)).collect()),
            Family::Num(cmp) => Test::Num(cmp, typed(&raw, parse_number, bad)?),
            Family::Date(cmp) => Test::Date(cmp, typed(&raw, parse_date, bad)?),
            Family::Bool => Test::Bool(typed(&raw, parse_bool, bad)?),
            Family::Null => Test::Null(typed(&raw, parse_bool, bad)?),
            Family::Binary => {
                Test::Binary(typed(&raw, |v| base64::engine::general_purpose::STANDARD.decode(v).ok(), bad)?)
            }
            Family::Ip => Test::Ip(typed(&raw, Cidr::parse, bad)?),
        };
        let has_vars = match &test {
            Test::Str(_, ts) | Test::Arn(ts) => ts.iter().any(Template::has_vars),
            _ => false,
        };
        Ok(Condition { key: key.to_owned(), set, if_exists, negated, test, has_vars })
    }

    /// Whether the condition holds for `ctx`.
    pub(crate) fn holds(&self, ctx: &Context) -> bool {
        // An empty value list is the same as an absent key.
        let present = ctx.get(&self.key).filter(|v| !v.is_empty());
        if let Test::Null(expect_absent) = &self.test {
            return expect_absent.iter().any(|&absent| absent == present.is_none());
        }
        let Some(values) = present else {
            return self.if_exists
                || match self.set {
                    SetOp::Single => self.negated,
                    SetOp::AnyValue => false,
                    SetOp::AllValues => true,
                };
        };
        // A policy variable that cannot be resolved makes the condition false.
        if self.has_vars && !self.resolvable(ctx) {
            return false;
        }
        match self.set {
            SetOp::Single => values.iter().any(|v| self.matches_any(v, ctx)) != self.negated,
            SetOp::AnyValue => values.iter().any(|v| self.matches_any(v, ctx) != self.negated),
            SetOp::AllValues => values.iter().all(|v| self.matches_any(v, ctx) != self.negated),
        }
    }

    fn resolvable(&self, ctx: &Context) -> bool {
        match &self.test {
            Test::Str(_, ts) | Test::Arn(ts) => ts.iter().all(|t| t.text(ctx).is_some()),
            _ => true,
        }
    }

    /// Whether one request value matches any policy value under the positive form of the operator.
    fn matches_any(&self, value: &str, ctx: &Context) -> bool {
        match &self.test {
            Test::Str(StrMode::Exact, ts) => ts.iter().any(|t| t.text(ctx).is_some_and(|p| p == value)),
            Test::Str(StrMode::IgnoreCase, ts) => {
                ts.iter().any(|t| t.text(ctx).is_some_and(|p| eq_ignore_case(&p, value)))
            }
            Test::Str(StrMode::Like, ts) => ts.iter().any(|t| t.glob_match(ctx, value)),
            Test::Arn(ts) => ts.iter().any(|t| t.toks(ctx).is_some_and(|p| arn_match(&p, value))),
            Test::Num(cmp, ps) => parse_number(value).is_some_and(|x| ps.iter().any(|&p| cmp.holds(x, p))),
            Test::Date(cmp, ps) => parse_date(value).is_some_and(|x| ps.iter().any(|&p| cmp.holds(x, p))),
            Test::Bool(ps) => parse_bool(value).is_some_and(|x| ps.contains(&x)),
            Test::Binary(ps) => {
                let decoded = base64::engine::general_purpose::STANDARD.decode(value);
                let bytes = decoded.as_deref().unwrap_or(value.as_bytes());
                ps.iter().any(|p| p == bytes)
            }
            Test::Ip(ps) => value.trim().parse::<IpAddr>().is_ok_and(|ip| ps.iter().any(|c| c.contains(ip))),
            Test::Null(_) => unreachable!("Null is handled in holds"),
        }
    }
}

/// A condition key must look like `vendor:name`.
fn valid_key(key: &str) -> bool {
    matches!(key.split_once(':'), Some((vendor, name)) if !vendor.is_empty() && !name.is_empty())
}

/// The condition values as strings: a string, boolean or number, or a non-empty array of them.
fn scalar_strings(values: &Value) -> Result<Vec<String>, PolicyError> {
    fn one(v: &Value) -> Result<String, PolicyError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(PolicyError::new("Syntax errors in policy.")),
        }
    }
    match values {
        Value::Array(items) if items.is_empty() => Err(PolicyError::new("Syntax errors in policy.")),
        Value::Array(items) => items.iter().map(one).collect(),
        v => Ok(vec![one(v)?]),
    }
}

fn typed<T>(
    raw: &[String],
    parse: impl Fn(&str) -> Option<T>,
    bad: impl Fn(&str) -> PolicyError,
) -> Result<Vec<T>, PolicyError> {
    raw.iter().map(|v| parse(v).ok_or_else(|| bad(v))).collect()
}

fn eq_ignore_case(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.eq_ignore_ascii_case(b) || a.chars().map(wildcard::fold).eq(b.chars().map(wildcard::fold))
}

/// ARN matching as `ArnLike`: each of the six colon-separated components is matched separately
/// (the last one may contain colons). A pattern or value with fewer components is matched whole.
fn arn_match(pattern: &[Tok], value: &str) -> bool {
    let colon = |t: &Tok| *t == Tok::Lit(':');
    if pattern.iter().filter(|t| colon(t)).count() < 5 || value.bytes().filter(|&b| b == b':').count() < 5 {
        return wildcard::matches(pattern, value, false);
    }
    pattern.splitn(6, colon).zip(value.splitn(6, ':')).all(|(p, v)| wildcard::matches(p, v, false))
}

fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E')) {
        return None;
    }
    s.parse::<f64>().ok().filter(|x| x.is_finite())
}

fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Parses epoch seconds (`1767225600`) or ISO 8601 (`2026-01-01`, `2026-01-01T00:00:00Z`,
/// `2026-01-01T00:00:00.123+02:00`; no zone means UTC) into epoch milliseconds.
pub(crate) fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().ok()?.checked_mul(1000);
    }
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !(1..=12).contains(&month) {
        return None;
    }
    if day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut ms = days_from_civil(year, month, day) * 86_400_000;
    let mut i = 10;
    if i < b.len() {
        if b[i] != b'T' && b[i] != b't' {
            return None;
        }
        let (hour, minute) = (num(11, 2)?, num(14, 2)?);
        if b.get(13) != Some(&b':') || hour > 23 || minute > 59 {
            return None;
        }
        ms += (hour * 3600 + minute * 60) * 1000;
        i = 16;
        if b.get(i) == Some(&b':') {
            let second = num(17, 2)?;
            if second > 60 {
                return None;
            }
            ms += second * 1000;
            i = 19;
            if b.get(i) == Some(&b'.') {
                let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                if digits == 0 {
                    return None;
                }
                let frac = &b[i + 1..i + 1 + digits.min(3)];
                let mut millis = frac.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
                for _ in frac.len()..3 {
                    millis *= 10;
                }
                ms += millis;
                i += 1 + digits;
            }
        }
        match b.get(i) {
            None => {}
            Some(b'Z' | b'z') if i + 1 == b.len() => {}
            Some(&sign @ (b'+' | b'-')) => {
                let oh = num(i + 1, 2)?;
                let om = match b.len() - (i + 3) {
                    0 => 0,
                    3 if b[i + 3] == b':' => num(i + 4, 2)?,
                    2 => num(i + 3, 2)?,
                    _ => return None,
                };
                if oh > 23 || om > 59 {
                    return None;
                }
                let offset = (oh * 3600 + om * 60) * 1000;
                ms += if sign == b'+' { -offset } else { offset };
            }
            _ => return None,
        }
    }
    Some(ms)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An IPv4 or IPv6 network (a plain address is a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(s: &str) -> Option<Cidr> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (a, Some(p.parse::<u8>().ok()?)),
            Some(_) => return None,
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return None;
        }
        Some(Cidr { network: mask(addr, prefix), prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & m).into())
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & m).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cond(block: Value) -> Vec<Condition> {
        parse_block(&block, true).unwrap()
    }

    fn holds(block: Value, ctx: &Context) -> bool {
        cond(block).iter().all(|c| c.holds(ctx))
    }

    fn ctx(pairs: &[(&str, &[&str])]) -> Context {
        let mut c = Context::new();
        for (k, vs) in pairs {
            c.insert_many(*k, vs.iter().copied());
        }
        c
    }

    #[test]
    fn string_operators() {
        let c = ctx(&[("aws:username", &["Alice"])]);
        assert!(holds(json!({"StringEquals": {"aws:username": "Alice"}}), &c));
        assert!(!holds(json!({"StringEquals": {"aws:username": "alice"}}), &c));
        assert!(holds(json!({"StringEquals": {"aws:username": ["bob", "Alice"]}}), &c));
        assert!(holds(json!({"StringNotEquals": {"aws:username": ["bob", "carol"]}}), &c));
        assert!(!holds(json!({"StringNotEquals": {"aws:username": ["bob", "Alice"]}}), &c));
        assert!(holds(json!({"StringEqualsIgnoreCase": {"aws:username": "aLICE"}}), &c));
        assert!(!holds(json!({"StringEqualsIgnoreCase": {"aws:username": "alic"}}), &c));
        assert!(holds(json!({"StringNotEqualsIgnoreCase": {"aws:username": "bob"}}), &c));
        assert!(!holds(json!({"StringNotEqualsIgnoreCase": {"aws:username": "ALICE"}}), &c));
        assert!(holds(json!({"StringLike": {"aws:username": "A*e"}}), &c));
        assert!(holds(json!({"StringLike": {"aws:username": "Al?ce"}}), &c));
        assert!(!holds(json!({"StringLike": {"aws:username": "a*"}}), &c));
        assert!(holds(json!({"StringNotLike": {"aws:username": "b*"}}), &c));
        assert!(!holds(json!({"StringNotLike": {"aws:username": ["b*", "A*"]}}), &c));
    }

    #[test]
    fn key_names_are_case_insensitive() {
        let c = ctx(&[("aws:UserName", &["alice"])]);
        assert!(holds(json!({"StringEquals": {"AWS:USERNAME": "alice"}}), &c));
    }

    #[test]
    fn absent_key_positive_false_negated_true() {
        let c = Context::new();
        for op in ["StringEquals", "StringEqualsIgnoreCase", "StringLike", "ArnLike", "ArnEquals"] {
            assert!(!holds(json!({op: {"aws:username": "x"}}), &c), "{op}");
        }
        for op in ["StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotLike", "ArnNotEquals"] {
            assert!(holds(json!({op: {"aws:username": "x"}}), &c), "{op}");
        }
        assert!(!holds(json!({"NumericEquals": {"k:n": "1"}}), &c));
        assert!(holds(json!({"NumericNotEquals": {"k:n": "1"}}), &c));
        assert!(!holds(json!({"NumericLessThan": {"k:n": "1"}}), &c));
        assert!(!holds(json!({"DateEquals": {"k:d": "2026-01-01"}}), &c));
        assert!(holds(json!({"DateNotEquals": {"k:d": "2026-01-01"}}), &c));
        assert!(!holds(json!({"DateGreaterThan": {"k:d": "2026-01-01"}}), &c));
        assert!(!holds(json!({"Bool": {"aws:SecureTransport": "true"}}), &c));
        assert!(!holds(json!({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}), &c));
        assert!(holds(json!({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}), &c));
        assert!(!holds(json!({"BinaryEquals": {"k:b": "QUJD"}}), &c));
        // An empty value list is absent too.
        let empty = ctx(&[("aws:username", &[])]);
        assert!(!holds(json!({"StringEquals": {"aws:username": "x"}}), &empty));
        assert!(holds(json!({"StringNotEquals": {"aws:username": "x"}}), &empty));
    }

    #[test]
    fn if_exists() {
        let absent = Context::new();
        let present = ctx(&[("aws:username", &["alice"])]);
        for op in ["StringEqualsIfExists", "StringNotEqualsIfExists", "NumericLessThanIfExists", "DateEqualsIfExists"] {
            assert!(holds(json!({op: {"aws:username": "1"}}), &absent), "{op}");
        }
        assert!(holds(json!({"BoolIfExists": {"aws:SecureTransport": "true"}}), &absent));
        assert!(holds(json!({"ArnLikeIfExists": {"aws:SourceArn": "arn:*"}}), &absent));
        assert!(!holds(json!({"NumericLessThanIfExists": {"k:n": "1"}}), &ctx(&[("k:n", &["5"])])));
        assert!(holds(json!({"StringEqualsIfExists": {"aws:username": "alice"}}), &present));
        assert!(!holds(json!({"StringEqualsIfExists": {"aws:username": "bob"}}), &present));
        assert!(holds(json!({"ForAnyValue:StringEqualsIfExists": {"aws:TagKeys": "x"}}), &absent));
        assert!(holds(json!({"IpAddressIfExists": {"aws:SourceIp": "10.0.0.0/8"}}), &absent));
    }

    #[test]
    fn null_operator() {
        let absent = Context::new();
        let present = ctx(&[("aws:username", &["alice"])]);
        assert!(holds(json!({"Null": {"aws:username": "true"}}), &absent));
        assert!(!holds(json!({"Null": {"aws:username": "true"}}), &present));
        assert!(!holds(json!({"Null": {"aws:username": "false"}}), &absent));
        assert!(holds(json!({"Null": {"aws:username": false}}), &present));
        assert!(holds(json!({"Null": {"aws:username": ["true", "false"]}}), &present));
        assert!(holds(json!({"Null": {"aws:username": "true"}}), &ctx(&[("aws:username", &[])])));
    }

    #[test]
    fn set_operators() {
        let tags = ctx(&[("aws:TagKeys", &["env", "team"])]);
        let absent = Context::new();
        let empty = ctx(&[("aws:TagKeys", &[])]);
        let any = |v: Value| json!({"ForAnyValue:StringEquals": {"aws:TagKeys": v}});
        let all = |v: Value| json!({"ForAllValues:StringEquals": {"aws:TagKeys": v}});
        assert!(holds(any(json!("env")), &tags));
        assert!(!holds(any(json!(["cost", "owner"])), &tags));
        assert!(!holds(any(json!("env")), &absent));
        assert!(!holds(any(json!("env")), &empty));
        assert!(holds(all(json!(["env", "team", "cost"])), &tags));
        assert!(!holds(all(json!("env")), &tags));
        assert!(holds(all(json!("env")), &absent));
        assert!(holds(all(json!("env")), &empty));
        // Negated: ForAnyValue is true when some context value equals none of the policy values.
        let any_not = |v: Value| json!({"ForAnyValue:StringNotEquals": {"aws:TagKeys": v}});
        assert!(holds(any_not(json!("env")), &tags));
        assert!(!holds(any_not(json!(["env", "team"])), &tags));
        assert!(!holds(any_not(json!("env")), &absent));
        // ForAllValues negated: every context value equals none of the policy values.
        let all_not = |v: Value| json!({"ForAllValues:StringNotEquals": {"aws:TagKeys": v}});
        assert!(holds(all_not(json!(["cost", "owner"])), &tags));
        assert!(!holds(all_not(json!("env")), &tags));
        assert!(holds(all_not(json!("env")), &absent));
        assert!(holds(json!({"ForAnyValue:StringLike": {"aws:TagKeys": "te*"}}), &tags));
        assert!(!holds(json!({"ForAllValues:StringLike": {"aws:TagKeys": "te*"}}), &tags));
        // Without a prefix, a multi-valued key matches when any value matches.
        assert!(holds(json!({"StringEquals": {"aws:TagKeys": "team"}}), &tags));
        assert!(!holds(json!({"StringNotEquals": {"aws:TagKeys": "team"}}), &tags));
    }

    #[test]
    fn block_semantics_and_across_operators_and_keys() {
        let c = ctx(&[("aws:username", &["alice"]), ("aws:PrincipalAccount", &["123456789012"])]);
        let both = json!({"StringEquals": {"aws:username": "alice", "aws:PrincipalAccount": "123456789012"}});
        assert!(holds(both, &c));
        let one_wrong = json!({"StringEquals": {"aws:username": "alice", "aws:PrincipalAccount": "999999999999"}});
        assert!(!holds(one_wrong, &c));
        let ops = json!({"StringEquals": {"aws:username": "alice"}, "StringLike": {"aws:PrincipalAccount": "9*"}});
        assert!(!holds(ops, &c));
    }

    #[test]
    fn numeric_operators() {
        let c = ctx(&[("k:n", &["10"])]);
        let t = |op: &str, v: &str| holds(json!({op: {"k:n": v}}), &c);
        assert!(t("NumericEquals", "10"));
        assert!(t("NumericEquals", "10.0"));
        assert!(!t("NumericEquals", "11"));
        assert!(t("NumericNotEquals", "11"));
        assert!(!t("NumericNotEquals", "10"));
        assert!(t("NumericLessThan", "11"));
        assert!(!t("NumericLessThan", "10"));
        assert!(t("NumericLessThanEquals", "10"));
        assert!(!t("NumericLessThanEquals", "9"));
        assert!(t("NumericGreaterThan", "9.5"));
        assert!(!t("NumericGreaterThan", "10"));
        assert!(t("NumericGreaterThanEquals", "10"));
        assert!(!t("NumericGreaterThanEquals", "11"));
        assert!(holds(json!({"NumericEquals": {"k:n": 10}}), &c));
        assert!(!holds(json!({"NumericEquals": {"k:n": "10"}}), &ctx(&[("k:n", &["ten"])])));
    }

    #[test]
    fn date_operators() {
        let c = ctx(&[("aws:CurrentTime", &["2026-03-01T12:00:00Z"])]);
        let t = |op: &str, v: &str| holds(json!({op: {"aws:CurrentTime": v}}), &c);
        assert!(t("DateEquals", "2026-03-01T12:00:00Z"));
        assert!(t("DateEquals", "2026-03-01T14:00:00+02:00"));
        assert!(t("DateEquals", "1772366400"));
        assert!(!t("DateEquals", "2026-03-01"));
        assert!(t("DateNotEquals", "2026-03-01"));
        assert!(t("DateLessThan", "2026-03-02"));
        assert!(!t("DateLessThan", "2026-03-01T12:00:00Z"));
        assert!(t("DateLessThanEquals", "2026-03-01T12:00:00Z"));
        assert!(t("DateGreaterThan", "2026-01-01T00:00:00Z"));
        assert!(!t("DateGreaterThan", "2027-01-01T00:00:00Z"));
        assert!(t("DateGreaterThanEquals", "2026-03-01T12:00:00.000Z"));
        let epoch = ctx(&[("aws:EpochTime", &["1772366400"])]);
        assert!(holds(json!({"DateEquals": {"aws:EpochTime": "2026-03-01T12:00:00Z"}}), &epoch));
    }

    #[test]
    fn date_parsing() {
        assert_eq!(parse_date("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("0"), Some(0));
        assert_eq!(parse_date("2000-02-29T00:00:01.5Z"), Some(951_782_401_500));
        assert_eq!(parse_date("1970-01-01T01:00:00+0100"), Some(0));
        assert_eq!(parse_date("1970-01-01T00:00-01:00"), Some(3_600_000));
        for bad in
            ["", "2026-1-01", "2026-13-01", "2026-02-30", "2026-01-01X", "2026-01-01T25:00:00Z", "2026-01-01T00:00Zx"]
        {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn bool_and_binary() {
        let c = ctx(&[("aws:SecureTransport", &["true"])]);
        assert!(holds(json!({"Bool": {"aws:SecureTransport": "true"}}), &c));
        assert!(holds(json!({"Bool": {"aws:SecureTransport": true}}), &c));
        assert!(!holds(json!({"Bool": {"aws:SecureTransport": "false"}}), &c));
        assert!(holds(json!({"Bool": {"aws:SecureTransport": "false"}}), &ctx(&[("aws:SecureTransport", &["FALSE"])])));
        let b = ctx(&[("k:b", &["QUJD"])]);
        assert!(holds(json!({"BinaryEquals": {"k:b": "QUJD"}}), &b));
        assert!(!holds(json!({"BinaryEquals": {"k:b": "QUJE"}}), &b));
        assert!(holds(json!({"BinaryEqualsIfExists": {"k:b": "QUJD"}}), &Context::new()));
    }

    #[test]
    fn ip_operators() {
        let v4 = ctx(&[("aws:SourceIp", &["203.0.113.7"])]);
        let v6 = ctx(&[("aws:SourceIp", &["2001:db8::1"])]);
        let mapped = ctx(&[("aws:SourceIp", &["::ffff:203.0.113.7"])]);
        let ip = |v: Value, c: &Context| holds(json!({"IpAddress": {"aws:SourceIp": v}}), c);
        assert!(ip(json!("203.0.113.0/24"), &v4));
        assert!(ip(json!("203.0.113.7"), &v4));
        assert!(ip(json!("0.0.0.0/0"), &v4));
        assert!(!ip(json!("203.0.114.0/24"), &v4));
        assert!(!ip(json!("2001:db8::/32"), &v4));
        assert!(ip(json!(["10.0.0.0/8", "2001:db8::/32"]), &v6));
        assert!(!ip(json!("2001:db9::/32"), &v6));
        assert!(ip(json!("2001:db8::1/128"), &v6));
        assert!(ip(json!("203.0.113.0/24"), &mapped));
        assert!(holds(json!({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}), &v4));
        assert!(!holds(json!({"NotIpAddress": {"aws:SourceIp": "203.0.0.0/8"}}), &v4));
        assert!(!ip(json!("10.0.0.0/8"), &ctx(&[("aws:SourceIp", &["not-an-ip"])])));
    }

    #[test]
    fn arn_operators() {
        let c = ctx(&[("aws:PrincipalArn", &["arn:aws:iam::123456789012:user/team/ci"])]);
        let t = |op: &str, v: &str| holds(json!({op: {"aws:PrincipalArn": v}}), &c);
        assert!(t("ArnEquals", "arn:aws:iam::123456789012:user/team/ci"));
        assert!(t("ArnLike", "arn:aws:iam::*:user/team/*"));
        assert!(t("ArnLike", "arn:aws:iam::123456789012:user/*"));
        assert!(t("ArnLike", "*"));
        assert!(!t("ArnLike", "arn:aws:iam::*:user/other/*"));
        // Wildcards do not cross component boundaries.
        let extra = ctx(&[("aws:SourceArn", &["arn:aws:ecr:extra:us-east-1:123:repository/x"])]);
        assert!(!holds(json!({"ArnLike": {"aws:SourceArn": "arn:aws:*:us-east-1:123:repository/x"}}), &extra));
        // With fewer than six components the pattern is matched whole.
        assert!(holds(json!({"ArnLike": {"aws:SourceArn": "arn:aws:*:repository/x"}}), &extra));
        assert!(!t("ArnLike", "arn:aws:iam::1234*:root"));
        assert!(t("ArnNotLike", "arn:aws:iam::*:root"));
        assert!(!t("ArnNotEquals", "arn:aws:iam::123456789012:user/team/ci"));
        // Case-sensitive.
        assert!(!t("ArnEquals", "arn:aws:iam::123456789012:user/TEAM/ci"));
    }

    #[test]
    fn policy_variables_in_values() {
        let c = ctx(&[("aws:username", &["alice"]), ("aws:PrincipalTag/owner", &["alice"])]);
        assert!(holds(json!({"StringEquals": {"aws:PrincipalTag/owner": "${aws:username}"}}), &c));
        assert!(holds(json!({"StringLike": {"aws:PrincipalTag/owner": "${aws:username}*"}}), &c));
        // Unresolvable variable: false, even for negated operators.
        assert!(!holds(json!({"StringEquals": {"aws:PrincipalTag/owner": "${aws:userid}"}}), &c));
        assert!(!holds(json!({"StringNotEquals": {"aws:PrincipalTag/owner": "${aws:userid}"}}), &c));
        // Version 2008: literal.
        let legacy = parse_block(&json!({"StringEquals": {"aws:PrincipalTag/owner": "${aws:username}"}}), false);
        assert!(!legacy.unwrap()[0].holds(&c));
    }

    #[test]
    fn parse_errors() {
        let err = |block: Value| parse_block(&block, true).unwrap_err().message;
        assert_eq!(err(json!({"StringEqual": {"a:b": "x"}})), "Invalid Condition type : StringEqual.");
        assert_eq!(err(json!({"stringequals": {"a:b": "x"}})), "Invalid Condition type : stringequals.");
        assert_eq!(err(json!({"NullIfExists": {"a:b": "true"}})), "Invalid Condition type : NullIfExists.");
        assert_eq!(err(json!({"ForAnyValue:Null": {"a:b": "true"}})), "Invalid Condition type : ForAnyValue:Null.");
        assert_eq!(err(json!({"StringEquals": {"nocolon": "x"}})), "Policy has an invalid condition key");
        assert_eq!(err(json!({"StringEquals": {":x": "x"}})), "Policy has an invalid condition key");
        assert_eq!(err(json!({"StringEquals": "x"})), "Syntax errors in policy.");
        assert_eq!(err(json!({"StringEquals": {"a:b": {"x": 1}}})), "Syntax errors in policy.");
        assert_eq!(err(json!({"StringEquals": {"a:b": []}})), "Syntax errors in policy.");
        assert_eq!(err(json!({"StringEquals": {"a:b": null}})), "Syntax errors in policy.");
        assert_eq!(err(json!(["x"])), "Syntax errors in policy.");
        assert_eq!(
            err(json!({"NumericLessThan": {"a:b": "ten"}})),
            "Invalid value \"ten\" for condition operator NumericLessThan."
        );
        assert!(err(json!({"DateLessThan": {"a:b": "yesterday"}})).starts_with("Invalid value"));
        assert!(err(json!({"Bool": {"a:b": "yes"}})).starts_with("Invalid value"));
        assert!(err(json!({"Null": {"a:b": "maybe"}})).starts_with("Invalid value"));
        assert!(err(json!({"IpAddress": {"a:b": "10.0.0.0/33"}})).starts_with("Invalid value"));
        assert!(err(json!({"IpAddress": {"a:b": "10.0.0/8"}})).starts_with("Invalid value"));
        assert!(err(json!({"BinaryEquals": {"a:b": "!!"}})).starts_with("Invalid value"));
        assert!(parse_block(&json!({}), true).unwrap().is_empty());
    }
}
