//! What identity policies could possibly allow, decided from the policies alone: which resources
//! under an ARN prefix an action might be allowed on, as prefixes of the rest of the ARN. Used to
//! narrow a listing (e.g. the catalog) to the resources worth authorizing one by one.

use crate::parse::Effect;
use crate::{Policy, wildcard};

/// The resources under an ARN prefix that identity policies could allow an action on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// No statement can allow the action on any resource under the prefix.
    Nothing,
    /// Only resources whose ARN is the prefix followed by a text starting with one of these.
    /// Sorted, non-empty, none a prefix of another.
    Prefixes(Vec<String>),
    /// Any resource under the prefix may be allowed.
    Everything,
}

impl Reach {
    /// Whether the resource `arn_prefix` + `rest` is within reach.
    pub fn covers(&self, rest: &str) -> bool {
        match self {
            Reach::Nothing => false,
            Reach::Prefixes(p) => p.iter().any(|p| rest.starts_with(p.as_str())),
            Reach::Everything => true,
        }
    }
}

/// Which resources `arn_prefix` + `rest` (with `rest` non-empty) an `Allow` statement of
/// `policies` (identity policies) could apply to for `action`, whatever the request context.
///
/// Sound, not exact: whenever [`crate::evaluate`] finds an identity-policy `Allow` for `action`
/// on such a resource, [`Reach::covers`] holds for its `rest`. Conditions are ignored (they might
/// hold), `Deny` statements are ignored (they only take away), and a `NotResource`, a wildcard or
/// a policy variable before the end of `arn_prefix` widens the answer to [`Reach::Everything`].
pub fn reach(policies: &[&Policy], action: &str, arn_prefix: &str) -> Reach {
    let mut prefixes: Vec<String> = Vec::new();
    for st in policies.iter().flat_map(|p| p.statements()) {
        if st.effect() != Effect::Allow {
            continue;
        }
        let listed = st.actions.patterns.iter().any(|p| wildcard::matches(p, action, true));
        if listed == st.actions.negated {
            continue;
        }
        let Some(resources) = &st.resources else { return Reach::Everything };
        if resources.negated {
            return Reach::Everything;
        }
        for t in &resources.patterns {
            let (lit, complete) = t.literal_prefix();
            if let Some(rest) = lit.strip_prefix(arn_prefix) {
                match (rest.is_empty(), complete) {
                    (true, true) => {} // exactly the prefix: no resource under it
                    (true, false) => return Reach::Everything,
                    (false, _) => prefixes.push(rest.to_string()),
                }
            } else if !complete && arn_prefix.starts_with(lit.as_str()) {
                return Reach::Everything;
            }
        }
    }
    if prefixes.is_empty() {
        return Reach::Nothing;
    }
    prefixes.sort();
    let mut out: Vec<String> = Vec::with_capacity(prefixes.len());
    for p in prefixes {
        // Sorted: a prefix of `p` already kept is the last one kept.
        if !out.last().is_some_and(|q| p.starts_with(q.as_str())) {
            out.push(p);
        }
    }
    Reach::Prefixes(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Context, Decision, PolicyKind, Principal, Request, evaluate};

    const PREFIX: &str = "arn:aws:ecr:us-east-1:123456789012:repository/";

    fn policy(statements: &str) -> Policy {
        Policy::parse(&format!(r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#), PolicyKind::Identity)
            .unwrap()
    }

    fn allow(action: &str, resource: &str) -> String {
        format!(r#"{{"Effect":"Allow","Action":"{action}","Resource":"{resource}"}}"#)
    }

    fn reach_of(statements: &str) -> Reach {
        reach(&[&policy(statements)], "ecr:DescribeRepositories", PREFIX)
    }

    #[test]
    fn nothing_everything_and_prefixes() {
        assert_eq!(reach(&[], "ecr:DescribeRepositories", PREFIX), Reach::Nothing);
        assert_eq!(reach_of(&allow("ecr:BatchGetImage", "*")), Reach::Nothing);
        assert_eq!(reach_of(&allow("ecr:*", "arn:aws:ecr:eu-west-1:123456789012:repository/*")), Reach::Nothing);
        assert_eq!(reach_of(&allow("ecr:*", "arn:aws:ecr:us-east-1:999999999999:repository/*")), Reach::Nothing);
        assert_eq!(reach_of(&allow("ecr:*", "arn:aws:ecr:us-east-1:123456789012:repository/")), Reach::Nothing);
        assert_eq!(reach_of(&allow("*", "*")), Reach::Everything);
        assert_eq!(reach_of(&allow("ecr:Describe*", "arn:aws:ecr:*:123456789012:repository/a*")), Reach::Everything);
        assert_eq!(reach_of(&allow("ECR:describerepositories", &format!("{PREFIX}*"))), Reach::Everything);
        assert_eq!(
            reach_of(&format!(
                "{},{},{},{}",
                allow("ecr:DescribeRepositories", &format!("{PREFIX}team/*")),
                allow("ecr:DescribeRepositories", &format!("{PREFIX}team/app")),
                allow("ecr:DescribeRepositories", &format!("{PREFIX}b?")),
                allow("ecr:DescribeRepositories", &format!("{PREFIX}c/${{aws:username}}")),
            )),
            Reach::Prefixes(vec!["b".into(), "c/".into(), "team/".into()])
        );
        // A variable right after the prefix could be anything.
        assert_eq!(
            reach_of(&allow("ecr:DescribeRepositories", &format!("{PREFIX}${{aws:username}}/*"))),
            Reach::Everything
        );
        // A variable before the name, NotResource and NotAction.
        assert_eq!(reach_of(&allow("ecr:*", "arn:aws:ecr:us-east-1:${aws:PrincipalAccount}:*")), Reach::Everything);
        assert_eq!(
            reach_of(r#"{"Effect":"Allow","Action":"ecr:*","NotResource":"arn:aws:ecr:*:*:repository/x"}"#),
            Reach::Everything
        );
        assert_eq!(
            reach_of(r#"{"Effect":"Allow","NotAction":"ecr:DescribeRepositories","Resource":"*"}"#),
            Reach::Nothing
        );
        assert_eq!(reach_of(r#"{"Effect":"Allow","NotAction":"ecr:BatchGetImage","Resource":"*"}"#), Reach::Everything);
        // Deny statements never widen.
        assert_eq!(reach_of(r#"{"Effect":"Deny","Action":"*","Resource":"*"}"#), Reach::Nothing);
    }

    /// Soundness against the evaluator: every identity allow is covered.
    #[test]
    fn every_allowed_resource_is_covered() {
        let user = Principal::User {
            account_id: "123456789012".into(),
            name: "ci".into(),
            arn: "arn:aws:iam::123456789012:user/ci".into(),
        };
        let mut ctx = Context::new();
        ctx.insert("aws:username", "ci").insert("aws:PrincipalAccount", "123456789012");
        let resources = [
            "*",
            "arn:aws:ecr:*",
            "arn:aws:ecr:us-east-1:123456789012:*",
            "arn:aws:ecr:us-east-1:123456789012:repository/a*",
            "arn:aws:ecr:us-east-1:123456789012:repository/a?c",
            "arn:aws:ecr:us-east-1:123456789012:repository/team/app",
            "arn:aws:ecr:us-east-1:123456789012:repository/${aws:username}/*",
            "arn:aws:ecr:us-east-1:${aws:PrincipalAccount}:repository/b*",
            "arn:aws:ecr:us-*-1:123456789012:repository/c",
            "arn:aws:ecr:eu-west-1:123456789012:repository/*",
            "arn:aws:ecr:us-east-1:123456789012:repository/",
        ];
        let names = ["a", "abc", "b", "ba", "c", "ci/x", "team/app", "team/other", "z", "zz/ci/x"];
        for r in resources {
            let p = policy(&allow("ecr:DescribeRepositories", r));
            let got = reach(&[&p], "ecr:DescribeRepositories", PREFIX);
            for name in names {
                let arn = format!("{PREFIX}{name}");
                let req = Request {
                    principal: &user,
                    action: "ecr:DescribeRepositories",
                    resource: &arn,
                    resource_account: Some("123456789012"),
                    context: &ctx,
                };
                if evaluate(&req, &[&p], None) == Decision::Allow {
                    assert!(got.covers(name), "{r}: allows {name} but reach is {got:?}");
                }
            }
        }
    }
}
