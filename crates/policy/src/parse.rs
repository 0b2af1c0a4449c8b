//! Strict parsing of policy documents into [`Policy`], validating the grammar the way IAM does.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::condition::{self, Condition};
use crate::vars::Template;
use crate::wildcard::{self, Tok};
use crate::{MAX_POLICY_BYTES, PolicyError, PolicyKind};

const SYNTAX: &str = "Syntax errors in policy.";
const VENDOR: &str = "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.";
const INVALID_PRINCIPAL: &str = "Invalid principal in policy";
const NO_PRINCIPAL: &str = "Policy document should not specify a principal.";

fn syntax() -> PolicyError {
    PolicyError::new(SYNTAX)
}

/// The policy language version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// `2012-10-17`: policy variables are substituted.
    V2012_10_17,
    /// `2008-10-17`, also assumed when `Version` is absent: `${...}` is literal text.
    V2008_10_17,
}

/// A statement's `Effect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Effect {
    /// The statement grants access.
    Allow,
    /// The statement denies access; a matching deny always wins.
    Deny,
}

/// A parsed, validated policy document, ready for [`crate::evaluate`].
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    kind: PolicyKind,
    version: Version,
    id: Option<String>,
    statements: Vec<Statement>,
}

/// One parsed statement of a [`Policy`].
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    sid: Option<String>,
    effect: Effect,
    pub(crate) actions: Actions,
    /// `None` when a resource policy omits `Resource`/`NotResource` (the attached resource).
    pub(crate) resources: Option<Resources>,
    /// `None` for identity policies.
    pub(crate) principals: Option<Principals>,
    pub(crate) conditions: Vec<Condition>,
}

/// `Action` or `NotAction`: patterns compiled case-insensitively.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Actions {
    pub(crate) negated: bool,
    pub(crate) patterns: Vec<Vec<Tok>>,
}

/// `Resource` or `NotResource`: `*` or ARN patterns, possibly with policy variables.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Resources {
    pub(crate) negated: bool,
    pub(crate) patterns: Vec<Template>,
}

/// `Principal` or `NotPrincipal`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Principals {
    pub(crate) negated: bool,
    pub(crate) entries: Vec<PrincipalEntry>,
}

/// One principal named in a resource policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PrincipalEntry {
    /// `"*"` or `{"AWS": "*"}`: everyone, including anonymous callers.
    Everyone,
    /// An account id or `arn:aws:iam::<account>:root`: every principal of that account.
    Account(String),
    /// `arn:aws:iam::<account>:user/...`: that user exactly.
    User(String),
    /// `arn:aws:iam::<account>:role/...`: every session of that role.
    Role(String),
    /// `arn:aws:sts::<account>:assumed-role/<role>/<session>`: that session exactly.
    Session(String),
    /// `{"Federated": "..."}`: callers federated through that provider (web identity).
    Federated(String),
    /// A valid principal Berth has no callers for (services, canonical users): matches nothing.
    Unmatched,
}

impl Policy {
    /// Parses and validates `doc` as a policy of `kind`.
    ///
    /// Documents over [`MAX_POLICY_BYTES`] are rejected before parsing. Errors carry AWS-like
    /// messages (e.g. `Syntax errors in policy.`, `Missing required field Effect`), stable enough to
    /// return verbatim to clients.
    pub fn parse(doc: &str, kind: PolicyKind) -> Result<Policy, PolicyError> {
        if doc.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::new(format!("Cannot exceed quota for PolicySize: {MAX_POLICY_BYTES}")));
        }
        let value: Value = serde_json::from_str(doc).map_err(|_| syntax())?;
        let Value::Object(top) = value else { return Err(syntax()) };
        if top.keys().any(|k| !matches!(k.as_str(), "Version" | "Id" | "Statement")) {
            return Err(syntax());
        }
        let version = match top.get("Version") {
            None => Version::V2008_10_17,
            Some(Value::String(v)) if v == "2012-10-17" => Version::V2012_10_17,
            Some(Value::String(v)) if v == "2008-10-17" => Version::V2008_10_17,
            Some(_) => return Err(PolicyError::new("The policy failed legacy parsing")),
        };
        let id = match top.get("Id") {
            None => None,
            Some(Value::String(id)) => Some(id.clone()),
            Some(_) => return Err(syntax()),
        };
        let raw_statements: Vec<&Value> = match top.get("Statement") {
            None => return Err(PolicyError::new("Missing required field Statement")),
            Some(Value::Array(items)) if items.is_empty() => return Err(syntax()),
            Some(Value::Array(items)) => items.iter().collect(),
            Some(one) => vec![one],
        };
        let substitute = version == Version::V2012_10_17;
        let mut sids = HashSet::new();
        let mut statements = Vec::with_capacity(raw_statements.len());
        for raw in raw_statements {
            let Value::Object(obj) = raw else { return Err(syntax()) };
            let statement = Statement::parse(obj, kind, substitute)?;
            // IAM identity policies need unique Sids; resource policies (ECR repository and
            // registry policies) accept duplicates, as ECR does.
            if let Some(sid) = &statement.sid
                && kind == PolicyKind::Identity
                && !sids.insert(sid.clone())
            {
                return Err(PolicyError::new("Statement IDs (SID) in a single policy must be unique."));
            }
            statements.push(statement);
        }
        Ok(Policy { kind, version, id, statements })
    }

    /// The kind the policy was parsed as.
    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    /// The language version (`V2008_10_17` when the document had none).
    pub fn version(&self) -> Version {
        self.version
    }

    /// The optional `Id`.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The statements, in document order.
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }
}

impl Statement {
    /// The optional `Sid` (unique within its policy).
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    /// `Allow` or `Deny`.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    fn parse(obj: &Map<String, Value>, kind: PolicyKind, substitute: bool) -> Result<Statement, PolicyError> {
        const KEYS: [&str; 9] = [
            "Sid",
            "Effect",
            "Action",
            "NotAction",
            "Resource",
            "NotResource",
            "Principal",
            "NotPrincipal",
            "Condition",
        ];
        if obj.keys().any(|k| !KEYS.contains(&k.as_str())) {
            return Err(syntax());
        }
        let sid = match obj.get("Sid") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(syntax()),
        };
        let effect = match obj.get("Effect") {
            None => return Err(PolicyError::new("Missing required field Effect")),
            Some(Value::String(e)) if e == "Allow" => Effect::Allow,
            Some(Value::String(e)) if e == "Deny" => Effect::Deny,
            Some(Value::String(e)) => return Err(PolicyError::new(format!("Invalid effect: {e}"))),
            Some(_) => return Err(syntax()),
        };
        let principal = one_of(obj, "Principal", "NotPrincipal")?;
        if kind == PolicyKind::Identity && principal.is_some() {
            return Err(PolicyError::new(NO_PRINCIPAL));
        }
        let actions = match one_of(obj, "Action", "NotAction")? {
            None => return Err(PolicyError::new("Missing required field Action")),
            Some((negated, value)) => Actions { negated, patterns: parse_actions(value)? },
        };
        let resources = match one_of(obj, "Resource", "NotResource")? {
            None if kind == PolicyKind::Identity => return Err(PolicyError::new("Missing required field Resource")),
            None => None,
            Some((negated, value)) => Some(Resources { negated, patterns: parse_resources(value, substitute)? }),
        };
        let principals = match principal {
            None if kind == PolicyKind::Resource => return Err(PolicyError::new("Missing required field Principal")),
            None => None,
            Some((negated, value)) => Some(Principals { negated, entries: parse_principals(value)? }),
        };
        let conditions = match obj.get("Condition") {
            None => Vec::new(),
            Some(block) => condition::parse_block(block, substitute)?,
        };
        Ok(Statement { sid, effect, actions, resources, principals, conditions })
    }
}

/// The value of exactly one of `positive`/`negative` (`true` = the negative one), or `None`.
fn one_of<'a>(
    obj: &'a Map<String, Value>,
    positive: &str,
    negative: &str,
) -> Result<Option<(bool, &'a Value)>, PolicyError> {
    match (obj.get(positive), obj.get(negative)) {
        (Some(_), Some(_)) => Err(syntax()),
        (Some(v), None) => Ok(Some((false, v))),
        (None, Some(v)) => Ok(Some((true, v))),
        (None, None) => Ok(None),
    }
}

/// A string or an array of strings; `empty` is the error for an empty array.
fn strings<'a>(value: &'a Value, empty: &str) -> Result<Vec<&'a str>, PolicyError> {
    match value {
        Value::String(s) => Ok(vec![s]),
        Value::Array(items) if items.is_empty() => Err(PolicyError::new(empty)),
        Value::Array(items) => items.iter().map(|v| v.as_str().ok_or_else(syntax)).collect(),
        _ => Err(syntax()),
    }
}

fn parse_actions(value: &Value) -> Result<Vec<Vec<Tok>>, PolicyError> {
    strings(value, "Policy statement must contain actions.")?
        .into_iter()
        .map(|a| {
            let valid = a == "*" || matches!(a.split_once(':'), Some((vendor, _)) if !vendor.is_empty());
            if valid { Ok(wildcard::compile(a, true)) } else { Err(PolicyError::new(VENDOR)) }
        })
        .collect()
}

fn parse_resources(value: &Value, substitute: bool) -> Result<Vec<Template>, PolicyError> {
    strings(value, "Policy statement must contain resources.")?
        .into_iter()
        .map(|r| {
            if r == "*" || r.starts_with("arn:") {
                Ok(Template::new(r, substitute, false))
            } else {
                Err(PolicyError::new(format!("Resource {r} must be in ARN format or \"*\".")))
            }
        })
        .collect()
}

fn parse_principals(value: &Value) -> Result<Vec<PrincipalEntry>, PolicyError> {
    let invalid = || PolicyError::new(INVALID_PRINCIPAL);
    let map = match value {
        Value::String(s) if s == "*" => return Ok(vec![PrincipalEntry::Everyone]),
        Value::Object(map) if !map.is_empty() => map,
        _ => return Err(invalid()),
    };
    let mut entries = Vec::new();
    for (kind, names) in map {
        let names = strings(names, INVALID_PRINCIPAL).map_err(|_| invalid())?;
        for name in names {
            entries.push(match kind.as_str() {
                "AWS" => parse_aws_principal(name).ok_or_else(invalid)?,
                "Federated" if !name.is_empty() => PrincipalEntry::Federated(name.to_owned()),
                "Service" | "CanonicalUser" if !name.is_empty() => PrincipalEntry::Unmatched,
                _ => return Err(invalid()),
            });
        }
    }
    Ok(entries)
}

/// `*`, an account id, or an IAM root/user/role ARN or STS assumed-role ARN (no wildcards).
fn parse_aws_principal(name: &str) -> Option<PrincipalEntry> {
    let is_account = |s: &str| s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit());
    if name == "*" {
        return Some(PrincipalEntry::Everyone);
    }
    if is_account(name) {
        return Some(PrincipalEntry::Account(name.to_owned()));
    }
    if name.contains(['*', '?']) {
        return None;
    }
    let (service, rest) = if let Some(rest) = name.strip_prefix("arn:aws:iam::") {
        ("iam", rest)
    } else {
        ("sts", name.strip_prefix("arn:aws:sts::")?)
    };
    let (account, resource) = rest.split_once(':')?;
    if !is_account(account) {
        return None;
    }
    let under = |prefix: &str| resource.strip_prefix(prefix).is_some_and(valid_path_name);
    match service {
        "iam" if resource == "root" => Some(PrincipalEntry::Account(account.to_owned())),
        "iam" if under("user/") => Some(PrincipalEntry::User(name.to_owned())),
        "iam" if under("role/") => Some(PrincipalEntry::Role(name.to_owned())),
        "sts" if under("assumed-role/") => Some(PrincipalEntry::Session(name.to_owned())),
        _ => None,
    }
}

/// `path/name` with a non-empty final name and IAM's name characters.
fn valid_path_name(s: &str) -> bool {
    let name = s.rsplit('/').next().unwrap_or("");
    !name.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(doc: &str, kind: PolicyKind) -> String {
        Policy::parse(doc, kind).unwrap_err().message
    }

    fn id_err(stmt: &str) -> String {
        err(&format!(r#"{{"Version":"2012-10-17","Statement":{stmt}}}"#), PolicyKind::Identity)
    }

    fn res_err(stmt: &str) -> String {
        err(&format!(r#"{{"Version":"2012-10-17","Statement":{stmt}}}"#), PolicyKind::Resource)
    }

    #[test]
    fn parses_minimal_and_full_documents() {
        let p = Policy::parse(
            r#"{"Version":"2012-10-17","Id":"x","Statement":[{"Sid":"A","Effect":"Allow","Action":"ecr:*","Resource":"*"},
               {"Sid":"B","Effect":"Deny","NotAction":["ecr:Get*","s3:?ut"],"NotResource":"arn:aws:ecr:*:*:repository/x",
                "Condition":{"Bool":{"aws:SecureTransport":false}}}]}"#,
            PolicyKind::Identity,
        )
        .unwrap();
        assert_eq!(p.version(), Version::V2012_10_17);
        assert_eq!(p.kind(), PolicyKind::Identity);
        assert_eq!(p.id(), Some("x"));
        assert_eq!(p.statements().len(), 2);
        assert_eq!(p.statements()[0].sid(), Some("A"));
        assert_eq!(p.statements()[1].effect(), Effect::Deny);
        let p = Policy::parse(r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#, PolicyKind::Identity)
            .unwrap();
        assert_eq!(p.version(), Version::V2008_10_17);
        let p = Policy::parse(
            r#"{"Version":"2008-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["123456789012",
               "arn:aws:iam::123456789012:root","arn:aws:iam::123456789012:user/team/ci",
               "arn:aws:iam::123456789012:role/r","arn:aws:sts::123456789012:assumed-role/r/s"],
               "Service":"codebuild.amazonaws.com"},"Action":"ecr:BatchGetImage"},
               {"Effect":"Deny","NotPrincipal":"*","Action":"ecr:*"}]}"#,
            PolicyKind::Resource,
        )
        .unwrap();
        assert_eq!(p.statements().len(), 2);
    }

    #[test]
    fn document_errors() {
        let k = PolicyKind::Identity;
        assert_eq!(err("", k), SYNTAX);
        assert_eq!(err("not json", k), SYNTAX);
        assert_eq!(err("[]", k), SYNTAX);
        assert_eq!(err("\"x\"", k), SYNTAX);
        assert_eq!(err("{} x", k), SYNTAX);
        assert_eq!(err(r#"{"Version":"2012-10-17"}"#, k), "Missing required field Statement");
        assert_eq!(err(r#"{"Version":"2012-10-17","Statement":[]}"#, k), SYNTAX);
        assert_eq!(err(r#"{"Version":"2012-10-17","Statement":["x"]}"#, k), SYNTAX);
        assert_eq!(err(r#"{"Version":"2012-10-17","Statement":[],"Extra":1}"#, k), SYNTAX);
        assert_eq!(err(r#"{"version":"2012-10-17","Statement":[]}"#, k), SYNTAX);
        assert_eq!(err(r#"{"Version":"2020-01-01","Statement":[]}"#, k), "The policy failed legacy parsing");
        assert_eq!(err(r#"{"Version":2012,"Statement":[]}"#, k), "The policy failed legacy parsing");
        assert_eq!(err(r#"{"Id":1,"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#, k), SYNTAX);
        let big = format!(r#"{{"Id":"{}","Statement":[]}}"#, "x".repeat(MAX_POLICY_BYTES));
        assert_eq!(err(&big, k), "Cannot exceed quota for PolicySize: 65536");
    }

    #[test]
    fn statement_errors() {
        assert_eq!(id_err(r#"{"Action":"*","Resource":"*"}"#), "Missing required field Effect");
        assert_eq!(id_err(r#"{"Effect":"allow","Action":"*","Resource":"*"}"#), "Invalid effect: allow");
        assert_eq!(id_err(r#"{"Effect":true,"Action":"*","Resource":"*"}"#), SYNTAX);
        assert_eq!(id_err(r#"{"Effect":"Allow","Resource":"*"}"#), "Missing required field Action");
        assert_eq!(id_err(r#"{"Effect":"Allow","Action":"*"}"#), "Missing required field Resource");
        assert_eq!(id_err(r#"{"Effect":"Allow","Action":"*","NotAction":"*","Resource":"*"}"#), SYNTAX);
        assert_eq!(id_err(r#"{"Effect":"Allow","Action":"*","Resource":"*","NotResource":"*"}"#), SYNTAX);
        assert_eq!(id_err(r#"{"Effect":"Allow","Action":"*","Resource":"*","Bogus":1}"#), SYNTAX);
        assert_eq!(id_err(r#"{"Effect":"Allow","Action":"*","Resource":"*","Sid":1}"#), SYNTAX);
        assert_eq!(id_err(r#"{"Effect":"Allow","Action":"BatchGetImage","Resource":"*"}"#), VENDOR);
        assert_eq!(id_err(r#"{"Effect":"Allow","Action":":x","Resource":"*"}"#), VENDOR);
        assert_eq!(
            id_err(r#"{"Effect":"Allow","Action":[],"Resource":"*"}"#),
            "Policy statement must contain actions."
        );
        assert_eq!(id_err(r#"{"Effect":"Allow","Action":[1],"Resource":"*"}"#), SYNTAX);
        assert_eq!(id_err(r#"{"Effect":"Allow","Action":{"a":"b"},"Resource":"*"}"#), SYNTAX);
        assert_eq!(
            id_err(r#"{"Effect":"Allow","Action":"*","Resource":[]}"#),
            "Policy statement must contain resources."
        );
        assert_eq!(
            id_err(r#"{"Effect":"Allow","Action":"*","Resource":"repository/app"}"#),
            "Resource repository/app must be in ARN format or \"*\"."
        );
        assert_eq!(id_err(r#"{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}"#), NO_PRINCIPAL);
        assert_eq!(id_err(r#"{"Effect":"Allow","NotPrincipal":"*","Action":"*","Resource":"*"}"#), NO_PRINCIPAL);
        assert_eq!(
            id_err(
                r#"[{"Sid":"a","Effect":"Allow","Action":"*","Resource":"*"},{"Sid":"a","Effect":"Deny","Action":"*","Resource":"*"}]"#
            ),
            "Statement IDs (SID) in a single policy must be unique."
        );
        assert_eq!(
            id_err(r#"{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"Foo":{"a:b":"c"}}}"#),
            "Invalid Condition type : Foo."
        );
        assert_eq!(
            id_err(r#"{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEquals":{"b":"c"}}}"#),
            "Policy has an invalid condition key"
        );
    }

    #[test]
    fn resource_policy_errors() {
        assert_eq!(res_err(r#"{"Effect":"Allow","Action":"*"}"#), "Missing required field Principal");
        assert_eq!(res_err(r#"{"Effect":"Allow","Principal":"*","NotPrincipal":"*","Action":"*"}"#), SYNTAX);
        for bad in [
            r#""123456789012""#,
            r#"{}"#,
            r#"[]"#,
            r#"{"AWS":[]}"#,
            r#"{"AWS":"12345"}"#,
            r#"{"AWS":"arn:aws:iam::123456789012:user/*"}"#,
            r#"{"AWS":"arn:aws:iam::*:root"}"#,
            r#"{"AWS":"arn:aws:iam::12345:root"}"#,
            r#"{"AWS":"arn:aws:iam::123456789012:group/g"}"#,
            r#"{"AWS":"arn:aws:iam::123456789012:user/"}"#,
            r#"{"AWS":"arn:aws:s3:::bucket"}"#,
            r#"{"AWS":"ci"}"#,
            r#"{"AWS":1}"#,
            r#"{"Bogus":"x"}"#,
            r#"{"Service":""}"#,
        ] {
            assert_eq!(
                res_err(&format!(r#"{{"Effect":"Allow","Principal":{bad},"Action":"*"}}"#)),
                INVALID_PRINCIPAL,
                "{bad}"
            );
        }
    }
}
