//! AWS IAM JSON policy documents for Berth: strict parsing ([`Policy::parse`]) and evaluation
//! ([`evaluate`]) of identity policies (user inline and managed policies) and resource policies
//! (ECR repository and registry policies), following AWS's documented evaluation logic.
//!
//! Matching rules:
//! - Actions (`service:Name`, `*` and `?` wildcards) match case-insensitively.
//! - `Resource` patterns match the whole resource ARN case-sensitively; `*` may span `:`.
//!   `ArnLike`/`ArnEquals` condition values match each of the six ARN components separately.
//! - Policy variables (`${aws:username}`, `${*}`, `${?}`, `${$}`, `${key, 'default'}`) are
//!   substituted only for Version 2012-10-17, in resources and string/ARN condition values; the
//!   substituted text is literal (never a wildcard). A variable whose key has no single value (and
//!   no default) makes that resource entry not match and that condition false.
//! - Wildcard matching is the greedy two-pointer algorithm: no exponential backtracking, and no
//!   allocation unless a pattern holds policy variables.
//!
//! ```
//! use berth_policy::{evaluate, Context, Decision, Policy, PolicyKind, Principal, Request};
//!
//! let policy = Policy::parse(
//!     r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ecr:BatchGetImage","Resource":"*"}}"#,
//!     PolicyKind::Identity,
//! )
//! .unwrap();
//! let user = Principal::User {
//!     account_id: "123456789012".into(),
//!     name: "ci".into(),
//!     arn: "arn:aws:iam::123456789012:user/ci".into(),
//! };
//! let ctx = Context::new();
//! let req = Request {
//!     principal: &user,
//!     action: "ecr:BatchGetImage",
//!     resource: "arn:aws:ecr:us-east-1:123456789012:repository/app",
//!     resource_account: Some("123456789012"),
//!     context: &ctx,
//! };
//! assert_eq!(evaluate(&req, &[&policy], None), Decision::Allow);
//! ```

mod condition;
mod eval;
mod parse;
mod reach;
mod vars;
mod wildcard;

use std::fmt;

pub use eval::{evaluate, evaluate_with_session, resource_policy_allows};
pub use parse::{Effect, Policy, Statement, Version};
pub use reach::{Reach, reach};
pub use wildcard::wildcard_match;

/// Largest policy document [`Policy::parse`] accepts, in bytes; larger ones are rejected unparsed.
pub const MAX_POLICY_BYTES: usize = 64 * 1024;

/// Which kind of policy a document is; decides which elements are required or forbidden.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// Attached to an identity (user inline or managed policy): `Principal` is forbidden and
    /// `Resource`/`NotResource` is required.
    Identity,
    /// Attached to a resource (ECR repository or registry policy): `Principal`/`NotPrincipal` is
    /// required and `Resource`/`NotResource` is optional (absent means the attached resource).
    Resource,
}

/// A policy document was rejected. `message` is AWS-like and stable; it is meant to be returned
/// verbatim in `MalformedPolicyDocument` / `InvalidParameterException` responses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    /// Human-readable reason, safe to show to the client.
    pub message: String,
}

impl PolicyError {
    pub(crate) fn new(message: impl Into<String>) -> PolicyError {
        PolicyError { message: message.into() }
    }

    /// The reason, safe to show to the client.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Principal {
    /// An unauthenticated caller; only resource policies with `"Principal": "*"` can allow it.
    Anonymous,
    /// An account's root user, `arn:aws:iam::<account_id>:root`.
    Root {
        /// The 12-digit account id.
        account_id: String,
    },
    /// An IAM user, `arn:aws:iam::<account_id>:user/<path><name>`.
    User {
        /// The 12-digit account id.
        account_id: String,
        /// The user name without path.
        name: String,
        /// The full user ARN, compared exactly against user ARNs in `Principal` elements.
        arn: String,
    },
    /// A session of an IAM role, `arn:aws:sts::<account_id>:assumed-role/<role>/<session>`.
    /// Resource-policy `Principal` elements match it by its role ARN or its session ARN.
    AssumedRole {
        /// The 12-digit account id of the role.
        account_id: String,
        /// The role ARN with its path, `arn:aws:iam::<account_id>:role/<path><name>`.
        role_arn: String,
        /// The session ARN, `arn:aws:sts::<account_id>:assumed-role/<name>/<session>`.
        session_arn: String,
    },
    /// A federated identity (the caller of `sts:AssumeRoleWithWebIdentity`): matched only by
    /// `{"Federated": "<provider>"}` principals, e.g. an OIDC provider's ARN
    /// `arn:aws:iam::<account>:oidc-provider/<host>`. It has no identity policies.
    Federated {
        /// The provider as trust policies name it.
        provider: String,
    },
}

impl Principal {
    /// The caller's account, `None` for [`Principal::Anonymous`].
    pub fn account_id(&self) -> Option<&str> {
        match self {
            Principal::Anonymous | Principal::Federated { .. } => None,
            Principal::Root { account_id }
            | Principal::User { account_id, .. }
            | Principal::AssumedRole { account_id, .. } => Some(account_id),
        }
    }
}

impl fmt::Display for Principal {
    /// The principal as AWS names it in messages: its ARN, or `anonymous`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Anonymous => f.write_str("anonymous"),
            Principal::Root { account_id } => write!(f, "arn:aws:iam::{account_id}:root"),
            Principal::User { arn, .. } => f.write_str(arn),
            Principal::AssumedRole { session_arn, .. } => f.write_str(session_arn),
            Principal::Federated { provider } => f.write_str(provider),
        }
    }
}

/// One authorization question: may `principal` perform `action` on `resource`?
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Who is calling.
    pub principal: &'a Principal,
    /// The action, e.g. `ecr:BatchGetImage` (matched case-insensitively).
    pub action: &'a str,
    /// The resource ARN, e.g. `arn:aws:ecr:us-east-1:123456789012:repository/team/app`, or `*` for
    /// actions without a resource (matched case-sensitively).
    pub resource: &'a str,
    /// The account owning the resource; `None` (for `*` resources) means the caller's own account.
    pub resource_account: Option<&'a str>,
    /// Condition keys and policy-variable values.
    pub context: &'a Context,
}

/// Condition keys for a request: names are case-insensitive, each key holds a list of values.
///
/// A key with an empty value list is treated exactly like an absent key (so `ForAllValues:` holds,
/// `ForAnyValue:` does not, and `Null` with `true` holds). A policy variable resolves only from a
/// key with exactly one value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    entries: Vec<(String, Vec<String>)>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Context {
        Context::default()
    }

    /// Adds `value` to `key`'s values (creating the key). Returns `self` for chaining.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Context {
        self.entry(key.into()).push(value.into());
        self
    }

    /// Adds every value to `key` (creating it even when `values` is empty, i.e. an empty set).
    pub fn insert_many<I, V>(&mut self, key: impl Into<String>, values: I) -> &mut Context
    where
        I: IntoIterator<Item = V>,
        V: Into<String>,
    {
        self.entry(key.into()).extend(values.into_iter().map(Into::into));
        self
    }

    /// Removes `key` (any case) and its values.
    pub fn remove(&mut self, key: &str) -> &mut Context {
        self.entries.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
        self
    }

    /// The values of `key`, compared ASCII case-insensitively; `None` when the key is absent.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.entries.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_slice())
    }

    fn entry(&mut self, key: String) -> &mut Vec<String> {
        let i = match self.entries.iter().position(|(k, _)| k.eq_ignore_ascii_case(&key)) {
            Some(i) => i,
            None => {
                self.entries.push((key, Vec::new()));
                self.entries.len() - 1
            }
        };
        &mut self.entries[i].1
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Context {
    /// Builds a context from `(key, value)` pairs; repeated keys accumulate values.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Context {
        let mut ctx = Context::new();
        for (k, v) in pairs {
            ctx.insert(k, v);
        }
        ctx
    }
}

/// The outcome of [`evaluate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// The request is allowed.
    Allow,
    /// Explicitly denied; `in_resource_policy` says which kind of policy denied.
    ExplicitDeny {
        /// True when a resource policy's `Deny` applied, false for an identity policy's.
        in_resource_policy: bool,
    },
    /// Explicitly denied by a session policy (one passed to AssumeRole).
    ExplicitDenyInSessionPolicy,
    /// Nothing allowed it; `missing` says which side lacked an allow.
    ImplicitDeny {
        /// The kind of policy whose allow was missing.
        missing: Missing,
    },
}

impl Decision {
    /// Whether the request is allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

/// Which kind of policy lacked an allow in an [`Decision::ImplicitDeny`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Missing {
    /// No identity-based policy allowed the action.
    IdentityPolicy,
    /// No resource-based policy allowed the action.
    ResourcePolicy,
    /// The session's policies did not allow the action.
    SessionPolicy,
}

/// AWS's `AccessDenied` message for `decision`, e.g. `User: arn:aws:iam::123456789012:user/ci is
/// not authorized to perform: ecr:BatchDeleteImage on resource: arn:aws:ecr:us-east-1:123456789012:
/// repository/app because no identity-based policy allows the ecr:BatchDeleteImage action`.
///
/// The anonymous principal shows as `User: anonymous`. For [`Decision::Allow`] the text says the
/// principal is authorized (it is not meant to be sent to anyone).
pub fn denial_message(req: &Request, decision: &Decision) -> String {
    let head = format!("User: {} is", req.principal);
    let tail = format!("to perform: {} on resource: {}", req.action, req.resource);
    match decision {
        Decision::Allow => format!("{head} authorized {tail}"),
        Decision::ExplicitDeny { in_resource_policy } => {
            let kind = if *in_resource_policy { "a resource-based" } else { "an identity-based" };
            format!("{head} not authorized {tail} with an explicit deny in {kind} policy")
        }
        Decision::ExplicitDenyInSessionPolicy => {
            format!("{head} not authorized {tail} with an explicit deny in a session policy")
        }
        Decision::ImplicitDeny { missing } => {
            let kind = match missing {
                Missing::IdentityPolicy => "identity-based",
                Missing::ResourcePolicy => "resource-based",
                Missing::SessionPolicy => "session",
            };
            format!("{head} not authorized {tail} because no {kind} policy allows the {} action", req.action)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_is_case_insensitive_and_multi_valued() {
        let mut c = Context::new();
        c.insert("aws:TagKeys", "a").insert("AWS:tagkeys", "b").insert_many("aws:username", ["ci"]);
        assert_eq!(c.get("aws:tagkeys").unwrap(), ["a", "b"]);
        assert_eq!(c.get("AWS:USERNAME").unwrap(), ["ci"]);
        assert_eq!(c.get("aws:userid"), None);
        c.insert_many("empty", Vec::<String>::new());
        assert_eq!(c.get("EMPTY").unwrap(), [] as [String; 0]);
        c.remove("Aws:TagKeys");
        assert_eq!(c.get("aws:TagKeys"), None);
        let c: Context = [("k:a", "1"), ("K:A", "2"), ("k:b", "3")].into_iter().collect();
        assert_eq!(c.get("k:a").unwrap(), ["1", "2"]);
        assert_eq!(c.get("k:b").unwrap(), ["3"]);
    }

    fn msg(principal: &Principal, decision: Decision) -> String {
        let ctx = Context::new();
        let req = Request {
            principal,
            action: "ecr:BatchDeleteImage",
            resource: "arn:aws:ecr:us-east-1:123456789012:repository/app",
            resource_account: Some("123456789012"),
            context: &ctx,
        };
        denial_message(&req, &decision)
    }

    #[test]
    fn denial_messages() {
        let user = Principal::User {
            account_id: "123456789012".into(),
            name: "ci".into(),
            arn: "arn:aws:iam::123456789012:user/ci".into(),
        };
        let prefix = "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ecr:BatchDeleteImage \
                      on resource: arn:aws:ecr:us-east-1:123456789012:repository/app";
        assert_eq!(
            msg(&user, Decision::ImplicitDeny { missing: Missing::IdentityPolicy }),
            format!("{prefix} because no identity-based policy allows the ecr:BatchDeleteImage action")
        );
        assert_eq!(
            msg(&user, Decision::ImplicitDeny { missing: Missing::ResourcePolicy }),
            format!("{prefix} because no resource-based policy allows the ecr:BatchDeleteImage action")
        );
        assert_eq!(
            msg(&user, Decision::ExplicitDeny { in_resource_policy: false }),
            format!("{prefix} with an explicit deny in an identity-based policy")
        );
        assert_eq!(
            msg(&user, Decision::ExplicitDeny { in_resource_policy: true }),
            format!("{prefix} with an explicit deny in a resource-based policy")
        );
        assert!(
            msg(&Principal::Anonymous, Decision::ImplicitDeny { missing: Missing::ResourcePolicy })
                .starts_with("User: anonymous is not authorized to perform: ecr:BatchDeleteImage")
        );
        assert!(
            msg(&Principal::Root { account_id: "123456789012".into() }, Decision::Allow)
                .starts_with("User: arn:aws:iam::123456789012:root is authorized")
        );
    }
}
