//! Policy evaluation: AWS's logic for identity and resource policies as ECR uses it.

use crate::parse::{Effect, PrincipalEntry, Principals, Statement};
use crate::{Decision, Missing, Policy, Principal, Request, wildcard};

/// How a resource-policy statement's `Principal`/`NotPrincipal` matched the caller. Ordered from
/// weakest to strongest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PrincipalMatch {
    No,
    /// Matched only through the caller's account (account id or `:root` ARN naming a user's
    /// account): in the same account this delegates to identity policies.
    Account,
    /// Matched the caller itself: `*`, its user or role ARN, its account for the root, or
    /// `NotPrincipal`.
    Direct,
    /// Matched a role session by its session ARN: not limited by session policies.
    Session,
}

/// Evaluates `req` against the caller's identity policies and the resource's policy, following
/// AWS's evaluation logic:
///
/// 1. A statement applies when its `Action`/`NotAction`, `Resource`/`NotResource` (absent in a
///    resource policy: any resource), `Principal`/`NotPrincipal` (resource policy only) and every
///    condition match.
/// 2. An applicable `Deny` wins: identity policies are checked first
///    (`ExplicitDeny { in_resource_policy: false }`), then the resource policy (`true`).
/// 3. Anonymous and federated callers have no identity policies: only a resource-policy `Allow`
///    naming `*`, a `NotPrincipal`, or (federated) their provider allows them; otherwise
///    `ImplicitDeny { missing: ResourcePolicy }`.
/// 4. Same account (`resource_account` equal to the caller's, or `None`): the root is allowed; a
///    user or role session is allowed by an identity-policy `Allow` or a resource-policy `Allow` naming the user
///    (role) or `*` (one naming only the account does not suffice), else `missing: IdentityPolicy`.
/// 5. Cross account: a resource-policy `Allow` must match the caller (the account entry matches
///    all its principals), else `missing: ResourcePolicy`; then the root is allowed and a user or
///    role session also needs an identity-policy `Allow`, else `missing: IdentityPolicy`.
///
/// Identity policies are evaluated without regard to any `Principal` element they might carry;
/// resource-policy statements without one never apply.
pub fn evaluate(req: &Request, identity_policies: &[&Policy], resource_policy: Option<&Policy>) -> Decision {
    evaluate_with_session(req, identity_policies, None, resource_policy)
}

/// [`evaluate`] for a caller holding temporary credentials whose session was given session
/// policies (`Policy`/`PolicyArns` of AssumeRole): `session_policies` `Some` limits the session
/// to what both its identity policies and a session policy allow, as AWS does:
///
/// - a session-policy `Deny` that applies is an explicit deny
///   ([`Decision::ExplicitDenyInSessionPolicy`]);
/// - an allow from identity policies, or from a resource policy naming the role (or the account
///   or `*`), counts only when a session policy allows the action too, else
///   `ImplicitDeny { missing: SessionPolicy }`;
/// - a resource-policy `Allow` naming the session's own ARN is not limited by session policies.
///
/// `None` (no session policies) is exactly [`evaluate`].
pub fn evaluate_with_session(
    req: &Request,
    identity_policies: &[&Policy],
    session_policies: Option<&[&Policy]>,
    resource_policy: Option<&Policy>,
) -> Decision {
    let anonymous = matches!(req.principal, Principal::Anonymous | Principal::Federated { .. });

    let mut identity_allows = false;
    if !anonymous {
        for statement in identity_policies.iter().flat_map(|p| p.statements()) {
            if statement.effect() == Effect::Allow && identity_allows {
                continue; // Already allowed; only denies can change the outcome.
            }
            if applies(statement, req) {
                match statement.effect() {
                    Effect::Deny => return Decision::ExplicitDeny { in_resource_policy: false },
                    Effect::Allow => identity_allows = true,
                }
            }
        }
    }

    let mut session_allows = true;
    if let Some(session) = session_policies
        && !anonymous
    {
        session_allows = false;
        for statement in session.iter().flat_map(|p| p.statements()) {
            if statement.effect() == Effect::Allow && session_allows {
                continue;
            }
            if applies(statement, req) {
                match statement.effect() {
                    Effect::Deny => return Decision::ExplicitDenyInSessionPolicy,
                    Effect::Allow => session_allows = true,
                }
            }
        }
    }

    let mut resource_allows = PrincipalMatch::No;
    for statement in resource_policy.iter().flat_map(|p| p.statements()) {
        let Some(principals) = &statement.principals else { continue };
        let matched = principal_match(principals, req.principal);
        if matched == PrincipalMatch::No || (statement.effect() == Effect::Allow && matched <= resource_allows) {
            continue;
        }
        if applies(statement, req) {
            match statement.effect() {
                Effect::Deny => return Decision::ExplicitDeny { in_resource_policy: true },
                Effect::Allow => resource_allows = matched,
            }
        }
    }

    let same_account = match (req.principal.account_id(), req.resource_account) {
        (Some(caller), Some(owner)) => caller == owner,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let implicit = |missing| Decision::ImplicitDeny { missing };
    // What the session's policies leave of an allow that is not the session's own.
    let limited = |allowed: bool, missing| match (allowed, session_allows) {
        (true, true) => Decision::Allow,
        (true, false) => implicit(Missing::SessionPolicy),
        (false, _) => implicit(missing),
    };
    match req.principal {
        Principal::Anonymous | Principal::Federated { .. } if resource_allows != PrincipalMatch::No => Decision::Allow,
        Principal::Anonymous | Principal::Federated { .. } => implicit(Missing::ResourcePolicy),
        Principal::Root { .. } if same_account => Decision::Allow,
        _ if same_account && resource_allows == PrincipalMatch::Session => Decision::Allow,
        Principal::User { .. } | Principal::AssumedRole { .. } if same_account => {
            limited(identity_allows || resource_allows == PrincipalMatch::Direct, Missing::IdentityPolicy)
        }
        _ if resource_allows == PrincipalMatch::No => implicit(Missing::ResourcePolicy),
        Principal::Root { .. } => Decision::Allow,
        Principal::User { .. } | Principal::AssumedRole { .. } => limited(identity_allows, Missing::IdentityPolicy),
    }
}

/// Whether `resource_policy` has an `Allow` statement that names the caller (directly, through
/// its account, or as everyone) and applies to the request. Some resources must always allow the
/// caller themselves, whatever the identity policies say: a role's trust policy for
/// `sts:AssumeRole*`.
pub fn resource_policy_allows(req: &Request, resource_policy: &Policy) -> bool {
    resource_policy.statements().iter().any(|s| {
        s.effect() == Effect::Allow
            && s.principals.as_ref().is_some_and(|p| principal_match(p, req.principal) != PrincipalMatch::No)
            && applies(s, req)
    })
}

/// Whether the statement's action, resource and conditions match (principals aside). Cheapest
/// checks first.
fn applies(statement: &Statement, req: &Request) -> bool {
    let actions = &statement.actions;
    let action_listed = actions.patterns.iter().any(|p| wildcard::matches(p, req.action, true));
    if action_listed == actions.negated {
        return false;
    }
    if let Some(resources) = &statement.resources {
        // An entry whose policy variable cannot be resolved does not match.
        let listed = resources.patterns.iter().any(|t| t.glob_match(req.context, req.resource));
        if listed == resources.negated {
            return false;
        }
    }
    statement.conditions.iter().all(|c| c.holds(req.context))
}

fn principal_match(principals: &Principals, caller: &Principal) -> PrincipalMatch {
    let listed = principals.entries.iter().map(|e| entry_match(e, caller)).max().unwrap_or(PrincipalMatch::No);
    match (principals.negated, listed) {
        (false, listed) => listed,
        (true, PrincipalMatch::No) => PrincipalMatch::Direct,
        (true, _) => PrincipalMatch::No,
    }
}

fn entry_match(entry: &PrincipalEntry, caller: &Principal) -> PrincipalMatch {
    match (entry, caller) {
        (PrincipalEntry::Everyone, _) => PrincipalMatch::Direct,
        (PrincipalEntry::Account(a), Principal::Root { account_id }) if a == account_id => PrincipalMatch::Direct,
        (PrincipalEntry::Account(a), Principal::User { account_id, .. }) if a == account_id => PrincipalMatch::Account,
        (PrincipalEntry::User(listed), Principal::User { arn, .. }) if listed == arn => PrincipalMatch::Direct,
        (PrincipalEntry::Account(a), Principal::AssumedRole { account_id, .. }) if a == account_id => {
            PrincipalMatch::Account
        }
        (PrincipalEntry::Role(listed), Principal::AssumedRole { role_arn, .. }) if listed == role_arn => {
            PrincipalMatch::Direct
        }
        (PrincipalEntry::Session(listed), Principal::AssumedRole { session_arn, .. }) if listed == session_arn => {
            PrincipalMatch::Session
        }
        (PrincipalEntry::Federated(listed), Principal::Federated { provider }) if listed == provider => {
            PrincipalMatch::Direct
        }
        _ => PrincipalMatch::No,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Context, PolicyKind};

    const ACCT: &str = "123456789012";
    const OTHER: &str = "210987654321";
    const REPO: &str = "arn:aws:ecr:us-east-1:123456789012:repository/app";

    fn session(account: &str) -> Principal {
        Principal::AssumedRole {
            account_id: account.into(),
            role_arn: format!("arn:aws:iam::{account}:role/ci/deploy"),
            session_arn: format!("arn:aws:sts::{account}:assumed-role/deploy/run-1"),
        }
    }

    fn id(doc: &str) -> Policy {
        Policy::parse(doc, PolicyKind::Identity).unwrap()
    }

    fn res(doc: &str) -> Policy {
        Policy::parse(doc, PolicyKind::Resource).unwrap()
    }

    fn decide(p: &Principal, action: &str, idp: &[&Policy], sp: Option<&[&Policy]>, rp: Option<&Policy>) -> Decision {
        let ctx = Context::new();
        let req = Request { principal: p, action, resource: REPO, resource_account: Some(ACCT), context: &ctx };
        evaluate_with_session(&req, idp, sp, rp)
    }

    fn allow_id(action: &str) -> Policy {
        id(&format!(
            r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Action":"{action}","Resource":"*"}}}}"#
        ))
    }

    fn allow_res(principal: &str, action: &str) -> Policy {
        res(&format!(
            r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Principal":{{"AWS":"{principal}"}},"Action":"{action}"}}}}"#
        ))
    }

    #[test]
    fn session_policies_intersect_identity_policies() {
        let s = session(ACCT);
        let pull = allow_id("ecr:BatchGetImage");
        let all = allow_id("ecr:*");
        assert_eq!(decide(&s, "ecr:PutImage", &[&all], None, None), Decision::Allow);
        assert_eq!(decide(&s, "ecr:BatchGetImage", &[&all], Some(&[&pull]), None), Decision::Allow);
        assert_eq!(
            decide(&s, "ecr:PutImage", &[&all], Some(&[&pull]), None),
            Decision::ImplicitDeny { missing: Missing::SessionPolicy }
        );
        // A session policy grants nothing the identity policies do not.
        assert_eq!(
            decide(&s, "ecr:PutImage", &[&pull], Some(&[&all]), None),
            Decision::ImplicitDeny { missing: Missing::IdentityPolicy }
        );
        let deny =
            id(r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"ecr:PutImage","Resource":"*"}}"#);
        assert_eq!(
            decide(&s, "ecr:PutImage", &[&all], Some(&[&all, &deny]), None),
            Decision::ExplicitDenyInSessionPolicy
        );
    }

    #[test]
    fn resource_policies_match_roles_and_sessions() {
        let s = session(ACCT);
        let by_role = allow_res("arn:aws:iam::123456789012:role/ci/deploy", "ecr:PutImage");
        let by_session = allow_res("arn:aws:sts::123456789012:assumed-role/deploy/run-1", "ecr:PutImage");
        let by_account = allow_res("arn:aws:iam::123456789012:root", "ecr:PutImage");
        let other_role = allow_res("arn:aws:iam::123456789012:role/other", "ecr:PutImage");
        let pull = allow_id("ecr:BatchGetImage");
        assert_eq!(decide(&s, "ecr:PutImage", &[], None, Some(&by_role)), Decision::Allow);
        assert_eq!(decide(&s, "ecr:PutImage", &[], None, Some(&by_session)), Decision::Allow);
        assert_eq!(
            decide(&s, "ecr:PutImage", &[], None, Some(&by_account)),
            Decision::ImplicitDeny { missing: Missing::IdentityPolicy }
        );
        assert_eq!(
            decide(&s, "ecr:PutImage", &[], None, Some(&other_role)),
            Decision::ImplicitDeny { missing: Missing::IdentityPolicy }
        );
        // The role's grant is limited by the session policy; the session's own is not.
        assert_eq!(
            decide(&s, "ecr:PutImage", &[], Some(&[&pull]), Some(&by_role)),
            Decision::ImplicitDeny { missing: Missing::SessionPolicy }
        );
        assert_eq!(decide(&s, "ecr:PutImage", &[], Some(&[&pull]), Some(&by_session)), Decision::Allow);
    }

    #[test]
    fn cross_account_sessions_need_both_sides() {
        let s = session(OTHER);
        let all = allow_id("ecr:*");
        let by_account = allow_res(OTHER, "ecr:PutImage");
        assert_eq!(
            decide(&s, "ecr:PutImage", &[&all], None, None),
            Decision::ImplicitDeny { missing: Missing::ResourcePolicy }
        );
        assert_eq!(
            decide(&s, "ecr:PutImage", &[], None, Some(&by_account)),
            Decision::ImplicitDeny { missing: Missing::IdentityPolicy }
        );
        assert_eq!(decide(&s, "ecr:PutImage", &[&all], None, Some(&by_account)), Decision::Allow);
        let by_session = allow_res("arn:aws:sts::210987654321:assumed-role/deploy/run-1", "ecr:PutImage");
        assert_eq!(
            decide(&s, "ecr:PutImage", &[], None, Some(&by_session)),
            Decision::ImplicitDeny { missing: Missing::IdentityPolicy }
        );
    }

    #[test]
    fn federated_callers_need_their_provider_named() {
        let provider = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com";
        let f = Principal::Federated { provider: provider.into() };
        let trust = res(&format!(
            r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Principal":{{"Federated":"{provider}"}},"Action":"sts:AssumeRoleWithWebIdentity"}}}}"#
        ));
        let all = allow_id("*");
        assert_eq!(decide(&f, "sts:AssumeRoleWithWebIdentity", &[], None, Some(&trust)), Decision::Allow);
        assert_eq!(
            decide(&f, "sts:AssumeRole", &[], None, Some(&trust)),
            Decision::ImplicitDeny { missing: Missing::ResourcePolicy }
        );
        let other = Principal::Federated { provider: "arn:aws:iam::123456789012:oidc-provider/gitlab.com".into() };
        assert_eq!(
            decide(&other, "sts:AssumeRoleWithWebIdentity", &[&all], None, Some(&trust)),
            Decision::ImplicitDeny { missing: Missing::ResourcePolicy }
        );
        // Neither a user nor a session matches a Federated principal.
        assert_eq!(
            decide(&session(ACCT), "sts:AssumeRoleWithWebIdentity", &[], None, Some(&trust)),
            Decision::ImplicitDeny { missing: Missing::IdentityPolicy }
        );
    }
}
