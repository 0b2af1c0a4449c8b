//! The evaluation matrix: root, same-account users, cross-account callers, anonymous callers,
//! explicit denies, NotAction/NotResource/NotPrincipal, policy variables and conditions.

use berth_policy::{Context, Decision, Missing, Policy, PolicyKind, Principal, Request, evaluate};

const ACCT: &str = "123456789012";
const OTHER: &str = "210987654321";
const REPO: &str = "arn:aws:ecr:us-east-1:123456789012:repository/app";
const OTHER_REPO: &str = "arn:aws:ecr:us-east-1:123456789012:repository/other";

const ALLOW: Decision = Decision::Allow;
const NO_IDENTITY: Decision = Decision::ImplicitDeny { missing: Missing::IdentityPolicy };
const NO_RESOURCE: Decision = Decision::ImplicitDeny { missing: Missing::ResourcePolicy };
const DENY_IDENTITY: Decision = Decision::ExplicitDeny { in_resource_policy: false };
const DENY_RESOURCE: Decision = Decision::ExplicitDeny { in_resource_policy: true };

fn identity(doc: &str) -> Policy {
    Policy::parse(doc, PolicyKind::Identity).unwrap()
}

fn resource(doc: &str) -> Policy {
    Policy::parse(doc, PolicyKind::Resource).unwrap()
}

fn user(account: &str, name: &str) -> Principal {
    Principal::User {
        account_id: account.into(),
        name: name.into(),
        arn: format!("arn:aws:iam::{account}:user/{name}"),
    }
}

fn root(account: &str) -> Principal {
    Principal::Root { account_id: account.into() }
}

/// Evaluates `action` on `REPO` (owned by `ACCT`).
fn decide(p: &Principal, action: &str, ids: &[&Policy], res: Option<&Policy>) -> Decision {
    decide_on(p, action, REPO, ids, res, &Context::new())
}

fn decide_on(
    p: &Principal,
    action: &str,
    resource: &str,
    ids: &[&Policy],
    res: Option<&Policy>,
    ctx: &Context,
) -> Decision {
    let account = resource.split(':').nth(4).filter(|a| !a.is_empty());
    let req = Request { principal: p, action, resource, resource_account: account, context: ctx };
    evaluate(&req, ids, res)
}

const PUSH_PULL: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:BatchGetImage","ecr:BatchCheckLayerAvailability","ecr:CompleteLayerUpload","ecr:GetDownloadUrlForLayer","ecr:InitiateLayerUpload","ecr:PutImage","ecr:UploadLayerPart"],"Resource":"arn:aws:ecr:us-east-1:123456789012:repository/app"}]}"#;

const PUSH_PULL_ACTIONS: [&str; 7] = [
    "ecr:BatchGetImage",
    "ecr:BatchCheckLayerAvailability",
    "ecr:CompleteLayerUpload",
    "ecr:GetDownloadUrlForLayer",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
];

const OTHER_ACTIONS: [&str; 12] = [
    "ecr:BatchDeleteImage",
    "ecr:DeleteRepository",
    "ecr:SetRepositoryPolicy",
    "ecr:GetRepositoryPolicy",
    "ecr:DescribeImages",
    "ecr:ListImages",
    "ecr:DescribeRepositories",
    "ecr:CreateRepository",
    "ecr:GetAuthorizationToken",
    "ecr:PutLifecyclePolicy",
    "ecr:TagResource",
    "iam:CreateUser",
];

#[test]
fn seeds_push_pull_policy_grants_exactly_push_and_pull_on_its_repository() {
    let policy = identity(PUSH_PULL);
    let ci = user(ACCT, "ci");
    for action in PUSH_PULL_ACTIONS {
        assert_eq!(decide(&ci, action, &[&policy], None), ALLOW, "{action}");
        // Action names are case-insensitive.
        assert_eq!(decide(&ci, &action.to_uppercase(), &[&policy], None), ALLOW, "{action}");
        let other = decide_on(&ci, action, OTHER_REPO, &[&policy], None, &Context::new());
        assert_eq!(other, NO_IDENTITY, "{action} on another repository");
        let prefixed = "arn:aws:ecr:us-east-1:123456789012:repository/app/sub";
        assert_eq!(decide_on(&ci, action, prefixed, &[&policy], None, &Context::new()), NO_IDENTITY);
        assert_eq!(decide_on(&ci, action, "*", &[&policy], None, &Context::new()), NO_IDENTITY);
    }
    for action in OTHER_ACTIONS {
        assert_eq!(decide(&ci, action, &[&policy], None), NO_IDENTITY, "{action}");
    }
    // Resource ARNs are case-sensitive.
    let upper = "arn:aws:ecr:us-east-1:123456789012:repository/APP";
    assert_eq!(decide_on(&ci, "ecr:BatchGetImage", upper, &[&policy], None, &Context::new()), NO_IDENTITY);
}

#[test]
fn root_of_the_owning_account_is_allowed_unless_denied() {
    let r = root(ACCT);
    assert_eq!(decide(&r, "ecr:DeleteRepository", &[], None), ALLOW);
    let deny =
        identity(r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"ecr:Delete*","Resource":"*"}}"#);
    assert_eq!(decide(&r, "ecr:DeleteRepository", &[&deny], None), DENY_IDENTITY);
    assert_eq!(decide(&r, "ecr:BatchGetImage", &[&deny], None), ALLOW);
    let res_deny = resource(r#"{"Statement":{"Effect":"Deny","Principal":"*","Action":"ecr:*"}}"#);
    assert_eq!(decide(&r, "ecr:BatchGetImage", &[], Some(&res_deny)), DENY_RESOURCE);
    // `*` resources (GetAuthorizationToken) count as the caller's own account.
    let ctx = Context::new();
    let req = Request {
        principal: &r,
        action: "ecr:GetAuthorizationToken",
        resource: "*",
        resource_account: None,
        context: &ctx,
    };
    assert_eq!(evaluate(&req, &[], None), ALLOW);
}

#[test]
fn same_account_user_needs_identity_allow_or_a_resource_policy_naming_it() {
    let ci = user(ACCT, "ci");
    assert_eq!(decide(&ci, "ecr:BatchGetImage", &[], None), NO_IDENTITY);
    let allow_all = identity(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#);
    assert_eq!(decide(&ci, "ecr:BatchGetImage", &[&allow_all], None), ALLOW);

    let names_user = resource(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/ci"},"Action":"ecr:BatchGetImage"}}"#,
    );
    assert_eq!(decide(&ci, "ecr:BatchGetImage", &[], Some(&names_user)), ALLOW);
    assert_eq!(decide(&ci, "ecr:PutImage", &[], Some(&names_user)), NO_IDENTITY);
    assert_eq!(decide(&user(ACCT, "other"), "ecr:BatchGetImage", &[], Some(&names_user)), NO_IDENTITY);

    let names_everyone =
        resource(r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"ecr:BatchGetImage"}}"#);
    assert_eq!(decide(&ci, "ecr:BatchGetImage", &[], Some(&names_everyone)), ALLOW);

    // Naming the account (id or root ARN) delegates to identity policies.
    for principal in [r#""123456789012""#, r#""arn:aws:iam::123456789012:root""#] {
        let names_account = resource(&format!(
            r#"{{"Statement":{{"Effect":"Allow","Principal":{{"AWS":{principal}}},"Action":"ecr:*"}}}}"#
        ));
        assert_eq!(decide(&ci, "ecr:BatchGetImage", &[], Some(&names_account)), NO_IDENTITY);
        assert_eq!(decide(&ci, "ecr:BatchGetImage", &[&allow_all], Some(&names_account)), ALLOW);
        assert_eq!(decide(&root(ACCT), "ecr:BatchGetImage", &[], Some(&names_account)), ALLOW);
    }
}

#[test]
fn deny_always_wins() {
    let ci = user(ACCT, "ci");
    let allow_all = identity(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#);
    let deny_delete = identity(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"ecr:BatchDeleteImage","Resource":"arn:aws:ecr:*:*:repository/*"}}"#,
    );
    assert_eq!(decide(&ci, "ecr:BatchDeleteImage", &[&allow_all, &deny_delete], None), DENY_IDENTITY);
    assert_eq!(decide(&ci, "ecr:BatchDeleteImage", &[&deny_delete, &allow_all], None), DENY_IDENTITY);
    assert_eq!(decide(&ci, "ecr:BatchGetImage", &[&deny_delete, &allow_all], None), ALLOW);
    // Deny in the same policy as the allow.
    let mixed = identity(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"},{"Effect":"Deny","Action":"ecr:Put*","Resource":"*"}]}"#,
    );
    assert_eq!(decide(&ci, "ecr:PutImage", &[&mixed], None), DENY_IDENTITY);
    assert_eq!(decide(&ci, "ecr:GetDownloadUrlForLayer", &[&mixed], None), ALLOW);

    let res_allow_deny = resource(
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:*"},{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::123456789012:user/ci"},"Action":"ecr:PutImage"}]}"#,
    );
    assert_eq!(decide(&ci, "ecr:PutImage", &[&allow_all], Some(&res_allow_deny)), DENY_RESOURCE);
    assert_eq!(decide(&user(ACCT, "x"), "ecr:PutImage", &[], Some(&res_allow_deny)), ALLOW);
    // A resource-policy deny naming the account applies to its users.
    let res_deny_account =
        resource(r#"{"Statement":{"Effect":"Deny","Principal":{"AWS":"123456789012"},"Action":"ecr:*"}}"#);
    assert_eq!(decide(&ci, "ecr:BatchGetImage", &[&allow_all], Some(&res_deny_account)), DENY_RESOURCE);
    assert_eq!(decide(&root(ACCT), "ecr:BatchGetImage", &[], Some(&res_deny_account)), DENY_RESOURCE);
    // Identity deny is reported when both deny.
    assert_eq!(decide(&ci, "ecr:BatchDeleteImage", &[&deny_delete], Some(&res_deny_account)), DENY_IDENTITY);
    // A deny for another principal does not apply.
    let res_deny_other =
        resource(r#"{"Statement":{"Effect":"Deny","Principal":{"AWS":"210987654321"},"Action":"ecr:*"}}"#);
    assert_eq!(decide(&ci, "ecr:BatchGetImage", &[&allow_all], Some(&res_deny_other)), ALLOW);
}

#[test]
fn cross_account_needs_both_sides() {
    let outsider = user(OTHER, "ci");
    let outsider_allow =
        identity(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ecr:*","Resource":"*"}}"#);
    // No resource policy: identity allow is not enough.
    assert_eq!(decide(&outsider, "ecr:BatchGetImage", &[&outsider_allow], None), NO_RESOURCE);
    assert_eq!(decide(&root(OTHER), "ecr:BatchGetImage", &[], None), NO_RESOURCE);

    let trust_account =
        resource(r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"210987654321"},"Action":"ecr:BatchGetImage"}}"#);
    assert_eq!(decide(&outsider, "ecr:BatchGetImage", &[&outsider_allow], Some(&trust_account)), ALLOW);
    assert_eq!(decide(&outsider, "ecr:BatchGetImage", &[], Some(&trust_account)), NO_IDENTITY);
    assert_eq!(decide(&root(OTHER), "ecr:BatchGetImage", &[], Some(&trust_account)), ALLOW);
    assert_eq!(decide(&outsider, "ecr:PutImage", &[&outsider_allow], Some(&trust_account)), NO_RESOURCE);

    let trust_root = resource(
        r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::210987654321:root"},"Action":"ecr:BatchGetImage"}}"#,
    );
    assert_eq!(decide(&outsider, "ecr:BatchGetImage", &[&outsider_allow], Some(&trust_root)), ALLOW);

    let trust_user = resource(
        r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::210987654321:user/ci"},"Action":"ecr:BatchGetImage"}}"#,
    );
    assert_eq!(decide(&outsider, "ecr:BatchGetImage", &[&outsider_allow], Some(&trust_user)), ALLOW);
    assert_eq!(decide(&outsider, "ecr:BatchGetImage", &[], Some(&trust_user)), NO_IDENTITY);
    assert_eq!(decide(&user(OTHER, "x"), "ecr:BatchGetImage", &[&outsider_allow], Some(&trust_user)), NO_RESOURCE);
    assert_eq!(decide(&root(OTHER), "ecr:BatchGetImage", &[], Some(&trust_user)), NO_RESOURCE);

    let trust_everyone = resource(r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage"}}"#);
    assert_eq!(decide(&outsider, "ecr:BatchGetImage", &[&outsider_allow], Some(&trust_everyone)), ALLOW);
    assert_eq!(decide(&outsider, "ecr:BatchGetImage", &[], Some(&trust_everyone)), NO_IDENTITY);
    assert_eq!(decide(&root(OTHER), "ecr:BatchGetImage", &[], Some(&trust_everyone)), ALLOW);

    // The owning account's trust of a third account does not help.
    let trust_third =
        resource(r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"111111111111"},"Action":"ecr:*"}}"#);
    assert_eq!(decide(&outsider, "ecr:BatchGetImage", &[&outsider_allow], Some(&trust_third)), NO_RESOURCE);
    // An identity deny on the caller's side still wins.
    let outsider_deny =
        identity(r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"ecr:*","Resource":"*"}}"#);
    assert_eq!(decide(&outsider, "ecr:BatchGetImage", &[&outsider_deny], Some(&trust_everyone)), DENY_IDENTITY);
}

#[test]
fn anonymous_needs_a_public_resource_policy() {
    let anon = Principal::Anonymous;
    let allow_all = identity(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#);
    assert_eq!(decide(&anon, "ecr:BatchGetImage", &[], None), NO_RESOURCE);
    // Identity policies never apply to anonymous callers.
    assert_eq!(decide(&anon, "ecr:BatchGetImage", &[&allow_all], None), NO_RESOURCE);
    let deny_all = identity(r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"*","Resource":"*"}}"#);
    let public = resource(
        r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}}"#,
    );
    assert_eq!(decide(&anon, "ecr:BatchGetImage", &[&deny_all], Some(&public)), ALLOW);
    assert_eq!(decide(&anon, "ecr:PutImage", &[], Some(&public)), NO_RESOURCE);
    let public_aws =
        resource(r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"ecr:BatchGetImage"}}"#);
    assert_eq!(decide(&anon, "ecr:BatchGetImage", &[], Some(&public_aws)), ALLOW);
    let account_only =
        resource(r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"ecr:*"}}"#);
    assert_eq!(decide(&anon, "ecr:BatchGetImage", &[], Some(&account_only)), NO_RESOURCE);
    let public_then_deny = resource(
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:*"},{"Effect":"Deny","Principal":"*","Action":"ecr:Put*"}]}"#,
    );
    assert_eq!(decide(&anon, "ecr:PutImage", &[], Some(&public_then_deny)), DENY_RESOURCE);
    let service = resource(
        r#"{"Statement":{"Effect":"Allow","Principal":{"Service":"codebuild.amazonaws.com"},"Action":"ecr:*"}}"#,
    );
    assert_eq!(decide(&anon, "ecr:BatchGetImage", &[], Some(&service)), NO_RESOURCE);
    assert_eq!(decide(&user(OTHER, "ci"), "ecr:BatchGetImage", &[&allow_all], Some(&service)), NO_RESOURCE);
}

#[test]
fn not_action_and_not_resource() {
    let ci = user(ACCT, "ci");
    let not_action = identity(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","NotAction":["ecr:Delete*","ecr:BatchDeleteImage"],"Resource":"*"}}"#,
    );
    assert_eq!(decide(&ci, "ecr:BatchGetImage", &[&not_action], None), ALLOW);
    assert_eq!(decide(&ci, "ecr:deleterepository", &[&not_action], None), NO_IDENTITY);
    assert_eq!(decide(&ci, "ecr:BatchDeleteImage", &[&not_action], None), NO_IDENTITY);

    let not_resource = identity(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ecr:*","NotResource":"arn:aws:ecr:*:*:repository/prod/*"}}"#,
    );
    assert_eq!(decide(&ci, "ecr:PutImage", &[&not_resource], None), ALLOW);
    let prod = "arn:aws:ecr:us-east-1:123456789012:repository/prod/app";
    assert_eq!(decide_on(&ci, "ecr:PutImage", prod, &[&not_resource], None, &Context::new()), NO_IDENTITY);

    let deny_outside_team = identity(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"},
            {"Effect":"Deny","Action":"ecr:*","NotResource":"arn:aws:ecr:*:*:repository/team/*"}]}"#,
    );
    let team = "arn:aws:ecr:us-east-1:123456789012:repository/team/app";
    assert_eq!(decide_on(&ci, "ecr:PutImage", team, &[&deny_outside_team], None, &Context::new()), ALLOW);
    assert_eq!(decide(&ci, "ecr:PutImage", &[&deny_outside_team], None), DENY_IDENTITY);
}

#[test]
fn not_principal() {
    let ci = user(ACCT, "ci");
    let allow_all = identity(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#);
    let deny_all_but_ci = resource(
        r#"{"Statement":{"Effect":"Deny","NotPrincipal":{"AWS":["arn:aws:iam::123456789012:user/ci"]},"Action":"ecr:PutImage"}}"#,
    );
    assert_eq!(decide(&ci, "ecr:PutImage", &[&allow_all], Some(&deny_all_but_ci)), ALLOW);
    assert_eq!(decide(&user(ACCT, "x"), "ecr:PutImage", &[&allow_all], Some(&deny_all_but_ci)), DENY_RESOURCE);
    assert_eq!(decide(&Principal::Anonymous, "ecr:PutImage", &[], Some(&deny_all_but_ci)), DENY_RESOURCE);
    assert_eq!(decide(&root(ACCT), "ecr:PutImage", &[], Some(&deny_all_but_ci)), DENY_RESOURCE);

    let deny_other_accounts =
        resource(r#"{"Statement":{"Effect":"Deny","NotPrincipal":{"AWS":"123456789012"},"Action":"ecr:*"}}"#);
    assert_eq!(decide(&ci, "ecr:PutImage", &[&allow_all], Some(&deny_other_accounts)), ALLOW);
    assert_eq!(decide(&root(ACCT), "ecr:PutImage", &[], Some(&deny_other_accounts)), ALLOW);
    assert_eq!(decide(&user(OTHER, "ci"), "ecr:PutImage", &[&allow_all], Some(&deny_other_accounts)), DENY_RESOURCE);

    let allow_not_other = resource(
        r#"{"Statement":{"Effect":"Allow","NotPrincipal":{"AWS":"210987654321"},"Action":"ecr:BatchGetImage"}}"#,
    );
    assert_eq!(decide(&Principal::Anonymous, "ecr:BatchGetImage", &[], Some(&allow_not_other)), ALLOW);
    assert_eq!(decide(&user(OTHER, "ci"), "ecr:BatchGetImage", &[&allow_all], Some(&allow_not_other)), NO_RESOURCE);
}

#[test]
fn resource_policy_resource_element() {
    let outsider = user(OTHER, "ci");
    let allow_all = identity(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#);
    // Registry policy scoping to some repositories.
    let registry = resource(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"210987654321"},"Action":"ecr:*",
            "Resource":"arn:aws:ecr:us-east-1:123456789012:repository/shared/*"}}"#,
    );
    let shared = "arn:aws:ecr:us-east-1:123456789012:repository/shared/base";
    assert_eq!(
        decide_on(&outsider, "ecr:BatchGetImage", shared, &[&allow_all], Some(&registry), &Context::new()),
        ALLOW
    );
    assert_eq!(decide(&outsider, "ecr:BatchGetImage", &[&allow_all], Some(&registry)), NO_RESOURCE);
}

#[test]
fn policy_variables_in_resources() {
    let doc = |version: &str| {
        format!(
            r#"{{{version}"Statement":{{"Effect":"Allow","Action":"ecr:*","Resource":"arn:aws:ecr:*:${{aws:PrincipalAccount}}:repository/${{aws:username}}/*"}}}}"#
        )
    };
    let modern = identity(&doc(r#""Version":"2012-10-17","#));
    let legacy = identity(&doc(""));
    let ci = user(ACCT, "ci");
    let mut ctx = Context::new();
    ctx.insert("aws:username", "ci").insert("aws:PrincipalAccount", ACCT);
    let own = "arn:aws:ecr:us-east-1:123456789012:repository/ci/app";
    let foreign = "arn:aws:ecr:us-east-1:123456789012:repository/bob/app";
    assert_eq!(decide_on(&ci, "ecr:PutImage", own, &[&modern], None, &ctx), ALLOW);
    assert_eq!(decide_on(&ci, "ecr:PutImage", foreign, &[&modern], None, &ctx), NO_IDENTITY);
    // 2008-10-17 does not substitute.
    assert_eq!(decide_on(&ci, "ecr:PutImage", own, &[&legacy], None, &ctx), NO_IDENTITY);
    // Unresolvable variable: that entry does not match.
    assert_eq!(decide_on(&ci, "ecr:PutImage", own, &[&modern], None, &Context::new()), NO_IDENTITY);
}

#[test]
fn conditions_gate_statements() {
    let ci = user(ACCT, "ci");
    let policy = identity(
        r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"ecr:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}},
            {"Effect":"Deny","Action":"ecr:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}"#,
    );
    let mut ctx = Context::new();
    ctx.insert("aws:SourceIp", "10.1.2.3").insert("aws:SecureTransport", "true");
    assert_eq!(decide_on(&ci, "ecr:PutImage", REPO, &[&policy], None, &ctx), ALLOW);
    let mut insecure = ctx.clone();
    insecure.remove("aws:SecureTransport").insert("aws:SecureTransport", "false");
    assert_eq!(decide_on(&ci, "ecr:PutImage", REPO, &[&policy], None, &insecure), DENY_IDENTITY);
    let mut elsewhere = Context::new();
    elsewhere.insert("aws:SourceIp", "192.0.2.1");
    assert_eq!(decide_on(&ci, "ecr:PutImage", REPO, &[&policy], None, &elsewhere), NO_IDENTITY);

    // Resource tag condition in a repository policy.
    let tagged = resource(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage",
            "Condition":{"StringEquals":{"ecr:ResourceTag/public":"yes"}}}}"#,
    );
    let mut tags = Context::new();
    tags.insert("ecr:ResourceTag/public", "yes");
    let anon = Principal::Anonymous;
    assert_eq!(decide_on(&anon, "ecr:BatchGetImage", REPO, &[], Some(&tagged), &tags), ALLOW);
    assert_eq!(decide_on(&anon, "ecr:BatchGetImage", REPO, &[], Some(&tagged), &Context::new()), NO_RESOURCE);
}

#[test]
fn action_wildcards() {
    let ci = user(ACCT, "ci");
    let policy = identity(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":["ecr:Get*","ECR:batch?etImage","*:ListImages"],"Resource":"*"}}"#,
    );
    for ok in ["ecr:GetDownloadUrlForLayer", "ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:ListImages"] {
        assert_eq!(decide(&ci, ok, &[&policy], None), ALLOW, "{ok}");
    }
    for no in ["ecr:BatchCheckLayerAvailability", "ecr:PutImage", "ecr:DescribeImages", "ecrx:GetX"] {
        assert_eq!(decide(&ci, no, &[&policy], None), NO_IDENTITY, "{no}");
    }
}
