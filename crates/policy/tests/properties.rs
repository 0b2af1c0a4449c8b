//! Property tests: parsing never panics, wildcard matching agrees with a naive reference, and
//! evaluation agrees with an independent reference evaluator on random small policies.

use berth_policy::{Context, Decision, Missing, Policy, PolicyKind, Principal, Request, evaluate, wildcard_match};
use proptest::prelude::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// (a) Parsing never panics.

/// JSON values shaped like policy documents, with plenty of wrong types and odd keys mixed in.
fn policy_like_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop::sample::select(vec![
            "*",
            "Allow",
            "Deny",
            "2012-10-17",
            "2008-10-17",
            "ecr:*",
            "ecr:BatchGetImage",
            "BatchGetImage",
            "arn:aws:ecr:us-east-1:123456789012:repository/${aws:username}",
            "arn:aws:iam::123456789012:root",
            "arn:aws:iam::123456789012:user/ci",
            "123456789012",
            "10.0.0.0/8",
            "2026-01-01T00:00:00Z",
            "true",
            "QUJD",
            "${",
            "",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        "[a-zA-Z0-9:*?${}/ .-]{0,12}".prop_map(Value::String),
    ];
    let keys = prop::sample::select(vec![
        "Version",
        "Id",
        "Statement",
        "Sid",
        "Effect",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Principal",
        "NotPrincipal",
        "Condition",
        "AWS",
        "Service",
        "StringEquals",
        "StringLike",
        "ForAnyValue:StringEquals",
        "ForAllValues:StringNotEqualsIfExists",
        "NumericLessThan",
        "DateGreaterThan",
        "Bool",
        "BinaryEquals",
        "IpAddress",
        "ArnLike",
        "Null",
        "aws:username",
        "aws:SourceIp",
        "bogus",
    ]);
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..6)
                .prop_map(|entries| { Value::Object(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()) }),
        ]
    })
}

proptest! {
    #[test]
    fn parse_never_panics_on_strings(doc in any::<String>()) {
        let _ = Policy::parse(&doc, PolicyKind::Identity);
        let _ = Policy::parse(&doc, PolicyKind::Resource);
    }

    #[test]
    fn parse_never_panics_on_json(body in policy_like_json(), wrap in any::<bool>()) {
        let doc = if wrap { json!({"Version": "2012-10-17", "Statement": body}) } else { body };
        let text = doc.to_string();
        for kind in [PolicyKind::Identity, PolicyKind::Resource] {
            if let Ok(policy) = Policy::parse(&text, kind) {
                // Whatever parses must also evaluate without panicking.
                let ctx = Context::new();
                let principal = Principal::Root { account_id: "123456789012".into() };
                let req = Request {
                    principal: &principal,
                    action: "ecr:BatchGetImage",
                    resource: "arn:aws:ecr:us-east-1:123456789012:repository/app",
                    resource_account: Some("123456789012"),
                    context: &ctx,
                };
                let _ = evaluate(&req, &[&policy], Some(&policy));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (b) Wildcard matching agrees with a naive recursive matcher.

fn reference_glob(pattern: &[char], text: &[char], ignore_case: bool) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|skip| reference_glob(rest, &text[skip..], ignore_case)),
        Some(('?', rest)) => !text.is_empty() && reference_glob(rest, &text[1..], ignore_case),
        Some((&c, rest)) => match text.split_first() {
            Some((&t, text_rest)) => {
                let same = if ignore_case { c.to_lowercase().eq(t.to_lowercase()) } else { c == t };
                same && reference_glob(rest, text_rest, ignore_case)
            }
            None => false,
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn wildcard_agrees_with_reference(pattern in "[abA*?:é]{0,10}", text in "[abAB:é]{0,12}", ignore_case in any::<bool>()) {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        prop_assert_eq!(wildcard_match(&pattern, &text, ignore_case), reference_glob(&p, &t, ignore_case));
    }
}

// ---------------------------------------------------------------------------------------------
// (c) Evaluation agrees with an independent reference evaluator.

const A: &str = "111111111111";
const B: &str = "222222222222";
const ACTIONS: [&str; 3] = ["ecr:Pull", "ecr:Push", "ecr:Delete"];
const ACTION_PATTERNS: [&str; 6] = ["ecr:Pull", "ecr:Push", "ecr:P*", "*", "ecr:delete", "ecr:?ull"];
const RESOURCES: [&str; 3] = [
    "arn:aws:ecr:us-east-1:111111111111:repository/a",
    "arn:aws:ecr:us-east-1:111111111111:repository/b",
    "arn:aws:ecr:us-east-1:222222222222:repository/a",
];
const RESOURCE_PATTERNS: [&str; 5] = [
    "arn:aws:ecr:us-east-1:111111111111:repository/a",
    "arn:aws:ecr:us-east-1:111111111111:repository/b",
    "arn:aws:ecr:*:*:repository/a",
    "arn:aws:ecr:us-east-1:111111111111:*",
    "*",
];

/// A principal entry of the model.
#[derive(Clone, Debug)]
enum MPrincipal {
    Star,
    AwsStar,
    AccountId(&'static str),
    RootArn(&'static str),
    User(&'static str, &'static str),
}

/// A statement of the model, rendered to JSON for the real parser.
#[derive(Clone, Debug)]
struct MStatement {
    deny: bool,
    not_action: bool,
    actions: Vec<&'static str>,
    /// `None`: omitted (resource policies only).
    resources: Option<(bool, Vec<&'static str>)>,
    principals: Option<(bool, Vec<MPrincipal>)>,
    /// `StringEquals`/`StringNotEquals` (the bool) on `test:k`.
    condition: Option<(bool, Vec<&'static str>)>,
}

impl MStatement {
    fn to_json(&self) -> Value {
        let mut s = serde_json::Map::new();
        s.insert("Effect".into(), json!(if self.deny { "Deny" } else { "Allow" }));
        s.insert(if self.not_action { "NotAction" } else { "Action" }.into(), json!(self.actions));
        if let Some((negated, resources)) = &self.resources {
            s.insert(if *negated { "NotResource" } else { "Resource" }.into(), json!(resources));
        }
        if let Some((negated, principals)) = &self.principals {
            let key = if *negated { "NotPrincipal" } else { "Principal" };
            let value = if matches!(principals.as_slice(), [MPrincipal::Star]) {
                json!("*")
            } else {
                let aws: Vec<String> = principals
                    .iter()
                    .map(|p| match p {
                        MPrincipal::Star | MPrincipal::AwsStar => "*".to_owned(),
                        MPrincipal::AccountId(a) => (*a).to_owned(),
                        MPrincipal::RootArn(a) => format!("arn:aws:iam::{a}:root"),
                        MPrincipal::User(a, n) => format!("arn:aws:iam::{a}:user/{n}"),
                    })
                    .collect();
                json!({ "AWS": aws })
            };
            s.insert(key.into(), value);
        }
        if let Some((negated, values)) = &self.condition {
            let op = if *negated { "StringNotEquals" } else { "StringEquals" };
            s.insert("Condition".into(), json!({ op: { "test:k": values } }));
        }
        Value::Object(s)
    }
}

fn policy_json(statements: &[MStatement]) -> String {
    let items: Vec<Value> = statements.iter().map(MStatement::to_json).collect();
    json!({"Version": "2012-10-17", "Statement": items}).to_string()
}

fn subset<T: Clone + std::fmt::Debug + 'static>(items: Vec<T>) -> impl Strategy<Value = Vec<T>> {
    prop::sample::subsequence(items.clone(), 1..=items.len().min(3))
}

fn m_principal() -> impl Strategy<Value = MPrincipal> {
    prop_oneof![
        Just(MPrincipal::AwsStar),
        Just(MPrincipal::AccountId(A)),
        Just(MPrincipal::AccountId(B)),
        Just(MPrincipal::RootArn(A)),
        Just(MPrincipal::RootArn(B)),
        Just(MPrincipal::User(A, "u1")),
        Just(MPrincipal::User(A, "u2")),
        Just(MPrincipal::User(B, "u1")),
    ]
}

fn m_statement(resource_policy: bool) -> impl Strategy<Value = MStatement> {
    let resources = if resource_policy {
        prop::option::of((any::<bool>(), subset(RESOURCE_PATTERNS.to_vec()))).boxed()
    } else {
        (any::<bool>(), subset(RESOURCE_PATTERNS.to_vec())).prop_map(Some).boxed()
    };
    let principals = if resource_policy {
        prop_oneof![
            1 => Just(Some((false, vec![MPrincipal::Star]))),
            6 => (prop::bool::weighted(0.2), prop::collection::vec(m_principal(), 1..3)).prop_map(Some),
        ]
        .boxed()
    } else {
        Just(None).boxed()
    };
    let condition = prop::option::weighted(0.3, (any::<bool>(), subset(vec!["x", "y"])));
    (
        prop::bool::weighted(0.25),
        prop::bool::weighted(0.15),
        subset(ACTION_PATTERNS.to_vec()),
        resources,
        principals,
        condition,
    )
        .prop_map(|(deny, not_action, actions, resources, principals, condition)| MStatement {
            deny,
            not_action,
            actions,
            resources,
            principals,
            condition,
        })
}

fn m_caller() -> impl Strategy<Value = Principal> {
    let user = |a: &str, n: &str| Principal::User {
        account_id: a.into(),
        name: n.into(),
        arn: format!("arn:aws:iam::{a}:user/{n}"),
    };
    prop::sample::select(vec![
        Principal::Anonymous,
        Principal::Root { account_id: A.into() },
        Principal::Root { account_id: B.into() },
        user(A, "u1"),
        user(A, "u2"),
        user(B, "u1"),
    ])
}

// The reference evaluator, written from the specification rather than from the implementation.

fn ref_action(pattern: &str, action: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = action.to_lowercase().chars().collect();
    reference_glob(&p, &t, false)
}

fn ref_resource(pattern: &str, resource: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = resource.chars().collect();
    reference_glob(&p, &t, false)
}

/// Strength with which a principal entry names the caller: 0 not at all, 1 through its account
/// (a user of that account), 2 the caller itself or everyone.
fn ref_principal_strength(entry: &MPrincipal, caller: &Principal) -> u8 {
    match (entry, caller) {
        (MPrincipal::Star | MPrincipal::AwsStar, _) => 2,
        (_, Principal::Anonymous) => 0,
        (MPrincipal::AccountId(a) | MPrincipal::RootArn(a), Principal::Root { account_id }) => {
            if a == account_id {
                2
            } else {
                0
            }
        }
        (MPrincipal::AccountId(a) | MPrincipal::RootArn(a), Principal::User { account_id, .. }) => {
            if a == account_id {
                1
            } else {
                0
            }
        }
        (MPrincipal::User(a, n), Principal::User { account_id, name, .. }) => {
            if a == account_id && n == name {
                2
            } else {
                0
            }
        }
        (MPrincipal::User(..), Principal::Root { .. }) => 0,
        // The model generates no role sessions or federated callers (see the unit tests in eval.rs).
        (_, Principal::AssumedRole { .. } | Principal::Federated { .. }) => 0,
    }
}

fn ref_statement_matches(s: &MStatement, action: &str, resource: &str, k: Option<&str>) -> bool {
    let listed = s.actions.iter().any(|p| ref_action(p, action));
    if listed == s.not_action {
        return false;
    }
    if let Some((negated, patterns)) = &s.resources {
        let listed = patterns.iter().any(|p| ref_resource(p, resource));
        if listed == *negated {
            return false;
        }
    }
    match (&s.condition, k) {
        (None, _) => true,
        (Some((false, _)), None) => false,
        (Some((true, _)), None) => true,
        (Some((negated, values)), Some(k)) => values.contains(&k) != *negated,
    }
}

fn reference_evaluate(
    caller: &Principal,
    action: &str,
    resource: &str,
    k: Option<&str>,
    identity: &[Vec<MStatement>],
    resource_policy: Option<&Vec<MStatement>>,
) -> Decision {
    let owner = resource.split(':').nth(4).unwrap();
    let anonymous = matches!(caller, Principal::Anonymous);
    let identity_statements: Vec<&MStatement> =
        if anonymous { Vec::new() } else { identity.iter().flatten().collect() };
    let applicable: Vec<&&MStatement> =
        identity_statements.iter().filter(|s| ref_statement_matches(s, action, resource, k)).collect();
    if applicable.iter().any(|s| s.deny) {
        return Decision::ExplicitDeny { in_resource_policy: false };
    }
    let identity_allow = applicable.iter().any(|s| !s.deny);

    let mut resource_strength = 0;
    for s in resource_policy.into_iter().flatten() {
        let (negated, entries) = s.principals.as_ref().unwrap();
        let listed = entries.iter().map(|e| ref_principal_strength(e, caller)).max().unwrap_or(0);
        let strength = if *negated { if listed == 0 { 2 } else { 0 } } else { listed };
        if strength == 0 || !ref_statement_matches(s, action, resource, k) {
            continue;
        }
        if s.deny {
            return Decision::ExplicitDeny { in_resource_policy: true };
        }
        resource_strength = resource_strength.max(strength);
    }

    let no_identity = Decision::ImplicitDeny { missing: Missing::IdentityPolicy };
    let no_resource = Decision::ImplicitDeny { missing: Missing::ResourcePolicy };
    match caller {
        Principal::Anonymous => {
            if resource_strength == 2 {
                Decision::Allow
            } else {
                no_resource
            }
        }
        Principal::Root { account_id } if account_id == owner => Decision::Allow,
        Principal::User { account_id, .. } if account_id == owner => {
            if identity_allow || resource_strength == 2 {
                Decision::Allow
            } else {
                no_identity
            }
        }
        Principal::Root { .. } => {
            if resource_strength > 0 {
                Decision::Allow
            } else {
                no_resource
            }
        }
        Principal::User { .. } => {
            if resource_strength == 0 {
                no_resource
            } else if identity_allow {
                Decision::Allow
            } else {
                no_identity
            }
        }
        Principal::AssumedRole { .. } | Principal::Federated { .. } => unreachable!("not generated"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn evaluation_agrees_with_reference(
        identity in prop::collection::vec(prop::collection::vec(m_statement(false), 1..4), 0..3),
        resource_policy in prop::option::of(prop::collection::vec(m_statement(true), 1..4)),
        caller in m_caller(),
        action in prop::sample::select(ACTIONS.to_vec()),
        resource in prop::sample::select(RESOURCES.to_vec()),
        k in prop::option::of(prop::sample::select(vec!["x", "y", "z"])),
    ) {
        let identity_parsed: Vec<Policy> = identity
            .iter()
            .map(|p| Policy::parse(&policy_json(p), PolicyKind::Identity).expect("model identity policy parses"))
            .collect();
        let identity_refs: Vec<&Policy> = identity_parsed.iter().collect();
        let resource_parsed = resource_policy
            .as_ref()
            .map(|p| Policy::parse(&policy_json(p), PolicyKind::Resource).expect("model resource policy parses"));
        let mut ctx = Context::new();
        if let Some(k) = k {
            ctx.insert("TEST:K", k);
        }
        let owner = resource.split(':').nth(4).unwrap();
        let req = Request { principal: &caller, action, resource, resource_account: Some(owner), context: &ctx };
        let actual = evaluate(&req, &identity_refs, resource_parsed.as_ref());
        let expected = reference_evaluate(&caller, action, resource, k, &identity, resource_policy.as_ref());
        prop_assert_eq!(actual, expected);
    }
}
