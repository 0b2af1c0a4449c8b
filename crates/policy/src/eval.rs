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
    /// Matched the caller itself: `*`, its user ARN, its account for the root, or `NotPrincipal`.
    Direct,
}

/// Evaluates `req` against the caller's identity policies and the resource's policy, following
/// AWS's evaluation logic:
///
/// 1. A statement applies when its `Action`/`NotAction`, `Resource`/`NotResource` (absent in a
///    resource policy: any resource), `Principal`/`NotPrincipal` (resource policy only) and every
///    condition match.
/// 2. An applicable `Deny` wins: identity policies are checked first
///    (`ExplicitDeny { in_resource_policy: false }`), then the resource policy (`true`).
/// 3. Anonymous callers have no identity policies: only a resource-policy `Allow` naming `*` (or a
///    `NotPrincipal`) allows them; otherwise `ImplicitDeny { missing: ResourcePolicy }`.
/// 4. Same account (`resource_account` equal to the caller's, or `None`): the root is allowed; a
///    user is allowed by an identity-policy `Allow` or a resource-policy `Allow` naming the user
///    or `*` (one naming only the account does not suffice), else `missing: IdentityPolicy`.
/// 5. Cross account: a resource-policy `Allow` must match the caller (the account entry matches
///    all its principals), else `missing: ResourcePolicy`; then the root is allowed and a user
///    also needs an identity-policy `Allow`, else `missing: IdentityPolicy`.
///
/// Identity policies are evaluated without regard to any `Principal` element they might carry;
/// resource-policy statements without one never apply.
pub fn evaluate(req: &Request, identity_policies: &[&Policy], resource_policy: Option<&Policy>) -> Decision {
    let anonymous = matches!(req.principal, Principal::Anonymous);

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
    match req.principal {
        Principal::Anonymous if resource_allows != PrincipalMatch::No => Decision::Allow,
        Principal::Anonymous => implicit(Missing::ResourcePolicy),
        Principal::Root { .. } if same_account => Decision::Allow,
        Principal::User { .. } if same_account => {
            if identity_allows || resource_allows == PrincipalMatch::Direct {
                Decision::Allow
            } else {
                implicit(Missing::IdentityPolicy)
            }
        }
        _ if resource_allows == PrincipalMatch::No => implicit(Missing::ResourcePolicy),
        Principal::Root { .. } => Decision::Allow,
        Principal::User { .. } if identity_allows => Decision::Allow,
        Principal::User { .. } => implicit(Missing::IdentityPolicy),
    }
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
        _ => PrincipalMatch::No,
    }
}
