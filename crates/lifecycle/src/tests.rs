//! The documented examples of the ECR user guide ("Examples of lifecycle policies"), the four
//! classic policies, and the validation of the grammar.

use super::*;

const NOW: i64 = 1_800_000_000_000;
const HOUR: i64 = 3_600_000;

/// An image pushed `age_ms` before [`NOW`]. Digests follow the letters, so ties order as named.
fn img(name: &str, tags: &[&str], age_ms: i64) -> Image {
    Image {
        digest: format!("sha256:{name}"),
        pushed_at: NOW - age_ms,
        last_pulled_at: None,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        dependent: false,
        storage_class: Some(StorageClass::Standard),
        transitioned_at: None,
    }
}

/// An image archived `archived_ms` before [`NOW`].
fn archived(name: &str, tags: &[&str], age_ms: i64, archived_ms: i64) -> Image {
    Image {
        storage_class: Some(StorageClass::Archive),
        transitioned_at: Some(NOW - archived_ms),
        ..img(name, tags, age_ms)
    }
}

fn days(n: i64) -> i64 {
    n * DAY_MS
}

/// A rule as JSON: `select` is the selection object's members after tagStatus.
fn rule(priority: u32, status: &str, list: Option<(&str, &[&str])>, count: &str) -> String {
    let list = list.map(|(k, v)| format!(r#""{k}": {},"#, serde_json::to_string(v).unwrap())).unwrap_or_default();
    format!(
        r#"{{"rulePriority": {priority}, "description": "rule {priority}", "selection": {{"tagStatus": "{status}", {list} {count}}}, "action": {{"type": "expire"}}}}"#
    )
}

fn count_more_than(n: u64) -> String {
    format!(r#""countType": "imageCountMoreThan", "countNumber": {n}"#)
}

fn since_pushed(days: u64) -> String {
    format!(r#""countType": "sinceImagePushed", "countUnit": "days", "countNumber": {days}"#)
}

fn policy(rules: &[String]) -> Policy {
    let text = format!(r#"{{"rules": [{}]}}"#, rules.join(","));
    parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The names of the images a run expires, with the rule that expires each.
fn run(p: &Policy, images: &[Image]) -> Vec<(String, u32)> {
    evaluate(p, images, NOW)
        .into_iter()
        .map(|d| {
            assert_eq!(d.action, Action::Expire);
            (images[d.image].digest.trim_start_matches("sha256:").to_string(), d.rule_priority)
        })
        .collect()
}

fn expect(p: &Policy, images: &[Image], want: &[(&str, u32)]) {
    let want: Vec<(String, u32)> = want.iter().map(|(n, r)| (n.to_string(), *r)).collect();
    assert_eq!(run(p, images), want);
}

/// Every documented example runs with `tagPatternList` (today's guide) and with
/// `tagPrefixList` (the guide before patterns existed): the results are the same.
fn lists<'a>(patterns: &'a [&'a str], prefixes: &'a [&'a str]) -> [(&'static str, &'a [&'a str]); 2] {
    [("tagPatternList", patterns), ("tagPrefixList", prefixes)]
}

#[test]
fn multiple_rules_example_a() {
    let images = [
        img("a", &["beta-1", "prod-1"], days(10)),
        img("b", &["beta-2", "prod-2"], days(9)),
        img("c", &["beta-3"], days(8)),
    ];
    for ((k1, prod), (k2, beta)) in lists(&["prod*"], &["prod"]).into_iter().zip(lists(&["beta*"], &["beta"])) {
        let p = policy(&[
            rule(1, "tagged", Some((k1, prod)), &count_more_than(1)),
            rule(2, "tagged", Some((k2, beta)), &count_more_than(1)),
        ]);
        // Rule 2 marks A and B, but B matches rule 1's tags, which keeps it.
        expect(&p, &images, &[("a", 1)]);
    }
}

#[test]
fn multiple_rules_example_b() {
    let images = [
        img("a", &["beta-1", "prod-1"], days(10)),
        img("b", &["beta-2", "prod-2"], days(9)),
        img("c", &["beta-3", "prod-3"], days(8)),
    ];
    for ((k1, beta), (k2, prod)) in lists(&["beta*"], &["beta"]).into_iter().zip(lists(&["prod*"], &["prod"])) {
        let p = policy(&[
            rule(1, "tagged", Some((k1, beta)), &count_more_than(1)),
            rule(2, "tagged", Some((k2, prod)), &count_more_than(1)),
        ]);
        expect(&p, &images, &[("a", 1), ("b", 1)]);
    }
}

#[test]
fn multiple_tags_in_one_rule_example_a() {
    let images = [
        img("a", &["alpha-1"], days(12)),
        img("b", &["beta-1"], days(11)),
        img("c", &["alpha-2", "beta-2"], days(10)),
        img("d", &["alpha-3"], days(4)),
        img("e", &["beta-3"], days(3)),
        img("f", &["alpha-4", "beta-4"], days(2)),
    ];
    for (k, list) in lists(&["alpha*", "beta*"], &["alpha", "beta"]) {
        // Only C and F carry both; of those, C is older than five days.
        let p = policy(&[rule(1, "tagged", Some((k, list)), &since_pushed(5))]);
        expect(&p, &images, &[("c", 1)]);
    }
}

#[test]
fn multiple_tags_in_one_rule_example_b() {
    let images = [
        img("a", &["alpha-1", "beta-1", "gamma-1"], days(10)),
        img("b", &["alpha-2", "beta-2"], days(9)),
        img("c", &["alpha-3", "beta-3", "gamma-2"], days(8)),
    ];
    for (k, list) in lists(&["alpha*", "beta*"], &["alpha", "beta"]) {
        let p = policy(&[rule(1, "tagged", Some((k, list)), &count_more_than(1))]);
        expect(&p, &images, &[("a", 1), ("b", 1)]);
    }
}

#[test]
fn all_images_example_a() {
    let images = [
        img("a", &["alpha-1"], days(4)),
        img("b", &["beta-1"], days(3)),
        img("c", &[], days(2)),
        img("d", &["alpha-2"], days(1)),
    ];
    let p = policy(&[rule(1, "any", None, &count_more_than(1))]);
    expect(&p, &images, &[("a", 1), ("b", 1), ("c", 1)]);
}

#[test]
fn all_images_example_b() {
    // E is the newest, a little under a day old; D was pushed just before it.
    let images = [
        img("a", &["alpha-1", "beta-1"], days(4)),
        img("b", &[], days(3)),
        img("c", &["alpha-2"], days(2)),
        img("d", &["git-hash"], days(1) - HOUR),
        img("e", &[], days(1) - 2 * HOUR),
    ];
    for (k, list) in lists(&["alpha*"], &["alpha"]) {
        let p = policy(&[
            rule(1, "tagged", Some((k, list)), &count_more_than(1)),
            rule(2, "untagged", None, &since_pushed(1)),
            rule(3, "any", None, &count_more_than(1)),
        ]);
        // Rule 3 identifies all five and would mark A-D; A, B, C are claimed by rules 1 and 2.
        expect(&p, &images, &[("a", 1), ("b", 2), ("d", 3)]);
    }
}

#[test]
fn classic_keep_the_five_most_recent() {
    let images: Vec<Image> = (0..8).map(|i| img(&format!("i{i}"), &[&format!("v{i}")], days(8 - i))).collect();
    let p = policy(&[rule(1, "any", None, &count_more_than(5))]);
    expect(&p, &images, &[("i0", 1), ("i1", 1), ("i2", 1)]);
}

#[test]
fn classic_expire_dev_images_older_than_14_days() {
    let images = [
        img("old-dev", &["dev-1"], days(15)),
        img("young-dev", &["dev-2"], days(13)),
        img("old-prod", &["prod-1"], days(30)),
        img("old-untagged", &[], days(30)),
        img("exactly-14", &["dev-3"], days(14)),
    ];
    let p = policy(&[rule(1, "tagged", Some(("tagPatternList", &["dev-*"])), &since_pushed(14))]);
    expect(&p, &images, &[("old-dev", 1)]);
}

#[test]
fn classic_expire_images_older_than_360_days() {
    let images = [img("a", &["x"], days(400)), img("b", &[], days(361)), img("c", &["y"], days(359))];
    let p = policy(&[rule(1, "any", None, &since_pushed(360))]);
    expect(&p, &images, &[("a", 1), ("b", 1)]);
}

#[test]
fn classic_keep_at_most_100_images() {
    let images: Vec<Image> = (0..130).map(|i| img(&format!("{i:03}"), &[], (130 - i) * HOUR)).collect();
    let p = policy(&[rule(1, "any", None, &count_more_than(100))]);
    let expired = run(&p, &images);
    assert_eq!(expired.len(), 30);
    assert_eq!(expired.first().unwrap().0, "000");
    assert_eq!(expired.last().unwrap().0, "029");
}

#[test]
fn dependents_are_neither_counted_nor_acted_on() {
    // The two oldest are children of an index: the count of 2 keeps the two youngest others.
    let mut images = vec![img("child1", &[], days(9)), img("child2", &[], days(9))];
    for i in &mut images {
        i.dependent = true;
    }
    images.extend([img("a", &[], days(5)), img("b", &["x"], days(4)), img("c", &["y"], days(3))]);
    let p = policy(&[rule(1, "any", None, &count_more_than(2))]);
    expect(&p, &images, &[("a", 1)]);
}

#[test]
fn untagged_rule_and_tagged_rule_together() {
    let images =
        [img("u1", &[], days(3)), img("u2", &[], days(2)), img("t1", &["v1"], days(3)), img("t2", &["v2"], days(1))];
    let p = policy(&[
        rule(1, "untagged", None, &count_more_than(1)),
        rule(2, "tagged", Some(("tagPrefixList", &["v"])), &since_pushed(2)),
    ]);
    expect(&p, &images, &[("t1", 2), ("u1", 1)]);
}

#[test]
fn patterns_take_wildcards_anywhere() {
    assert!(glob("prod*", "prod"));
    assert!(glob("prod*", "production-team1"));
    assert!(glob("*prod*", "repo-production"));
    assert!(!glob("*prod*", "pro-d"));
    assert!(glob("latest", "latest"));
    assert!(!glob("latest", "latest2"));
    assert!(glob("*test*1*2*3", "my-test-x1y2z3"));
    assert!(!glob("a*a", "a"));
    assert!(glob("a*a", "aa"));
    assert!(glob("*", ""));
    assert!(!glob("v*-rc", "v1-rc2"));
}

fn refused(text: &str) -> String {
    match parse(text) {
        Ok(p) => panic!("accepted: {text} as {p:?}"),
        Err(e) => e.0,
    }
}

#[test]
fn invalid_policies_get_ecr_messages() {
    let ok_sel = r#""tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1"#;
    let r = |sel: &str, action: &str| {
        format!(r#"{{"rules": [{{"rulePriority": 1, "selection": {{{sel}}}, "action": {action}}}]}}"#)
    };
    let expire = r#"{"type": "expire"}"#;
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "Could not map policyString into LifecyclePolicy."),
        ("[]".into(), "Could not map policyString into LifecyclePolicy."),
        ("{}".into(), r#"object has missing required properties (["rules"])"#),
        (
            r#"{"rules": [], "x": 1}"#.into(),
            r#"object instance has properties which are not allowed by the schema: (["x"])"#,
        ),
        (r#"{"rules": []}"#.into(), "array is too short: must have at least 1 elements but instance has 0 elements"),
        (
            r#"{"rules": {}}"#.into(),
            r#"instance type (object) does not match any allowed primitive type (allowed: ["array"])"#,
        ),
        (
            r#"{"rules": [{"rulePriority": 1}]}"#.into(),
            r#"object has missing required properties (["action","selection"])"#,
        ),
        (
            r(&ok_sel.replace("any", "all"), expire),
            r#"instance value ("all") not found in enum :(possible values: ["any","tagged","untagged"])"#,
        ),
        (
            r(&ok_sel.replace("\"countNumber\": 1", "\"countNumber\": 0"), expire),
            "numeric instance is lower than the required minimum (minimum: 1, found: 0)",
        ),
        (
            r(&ok_sel.replace("\"countNumber\": 1", "\"countNumber\": 1.5"), expire),
            r#"instance type (number) does not match any allowed primitive type (allowed: ["integer"])"#,
        ),
        (
            r(ok_sel, r#"{"type": "expire", "targetStorageClass": null}"#),
            "instance failed to match exactly one schema (matched 0 out of 2)",
        ),
        (
            r(&format!(r#"{ok_sel}, "countUnit": "days""#), expire),
            "instance failed to match exactly one schema (matched 0 out of 2)",
        ),
        (
            r(r#""tagStatus": "any", "countType": "sinceImagePushed", "countNumber": 1"#, expire),
            "instance failed to match exactly one schema (matched 0 out of 2)",
        ),
        (
            r(r#""tagStatus": "any", "countType": "sinceImagePushed", "countUnit": "hours", "countNumber": 1"#, expire),
            r#"instance value ("hours") not found in enum :(possible values: ["days"])"#,
        ),
        (
            r(&format!(r#"{ok_sel}, "tagPatternList": null"#), expire),
            r#"instance type (null) does not match any allowed primitive type (allowed: ["array"])"#,
        ),
        (
            r(&ok_sel.replace("any", "tagged"), expire),
            "Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED.",
        ),
        (
            r(&format!(r#"{ok_sel}, "tagPrefixList": ["a"]"#), expire),
            "tagPrefixList and tagPatternList may only be used when tagStatus=TAGGED.",
        ),
        (
            r(
                &format!(r#"{}, "tagPrefixList": ["a"], "tagPatternList": ["b*"]"#, ok_sel.replace("any", "tagged")),
                expire,
            ),
            "A rule may specify either tagPrefixList or tagPatternList, but not both.",
        ),
        (
            r(&format!(r#"{}, "tagPatternList": ["test*1*2*3*4*5*6"]"#, ok_sel.replace("any", "tagged")), expire),
            "The tag pattern 'test*1*2*3*4*5*6' has more than 4 wildcards (*); at most 4 are allowed per pattern.",
        ),
        (
            r(ok_sel, r#"{"type": "delete"}"#),
            r#"instance value ("delete") not found in enum :(possible values: ["expire","transition"])"#,
        ),
        (
            r(r#""tagStatus": "any", "countType": "sinceImagePulled", "countUnit": "days", "countNumber": 3"#, expire),
            "The sinceImagePulled count type must be used with the transition action. It cannot be used with the expire action.",
        ),
        (
            r(
                r#""tagStatus": "any", "storageClass": "archive", "countType": "sinceImageTransitioned", "countUnit": "days", "countNumber": 30"#,
                expire,
            ),
            "Images must be in archive storage for a minimum of 90 days before deletion: countNumber must be at least 90.",
        ),
        (
            format!(
                r#"{{"rules": [{}, {}]}}"#,
                rule(1, "untagged", None, &count_more_than(1)),
                rule(2, "untagged", None, &count_more_than(2))
            ),
            "Only one rule can select Untagged images per storage class.",
        ),
        (
            format!(
                r#"{{"rules": [{}, {}]}}"#,
                rule(1, "any", None, &count_more_than(1)),
                rule(2, "untagged", None, &count_more_than(2))
            ),
            "Rule for tagStatus=ANY must have the lowest priority per storage class",
        ),
        (
            format!(
                r#"{{"rules": [{}, {}]}}"#,
                rule(3, "untagged", None, &count_more_than(1)),
                rule(3, "tagged", Some(("tagPrefixList", &["a"])), &count_more_than(2))
            ),
            "The rulePriority 3 is used by more than one rule; priorities must be unique.",
        ),
        (
            format!(
                r#"{{"rules": [{}, {}]}}"#,
                rule(1, "tagged", Some(("tagPrefixList", &["a", "b"])), &count_more_than(1)),
                rule(2, "tagged", Some(("tagPrefixList", &["b", "a"])), &since_pushed(2))
            ),
            "The set of all rules selecting a specific storage class must contain a unique set of prefixes.",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(refused(&text), want, "for {text}");
    }
    let many: Vec<String> = (1..=51)
        .map(|i| rule(i, "tagged", Some(("tagPrefixList", &[&format!("p{i}")])), &count_more_than(1)))
        .collect();
    assert_eq!(
        refused(&format!(r#"{{"rules": [{}]}}"#, many.join(","))),
        "array is too long: must have at most 50 elements but instance has 51 elements"
    );
}

#[test]
fn the_documented_archive_policies_transition_and_expire_by_storage_class() {
    let not_pulled = parse(r#"{"rules":[{"rulePriority":1,"description":"Archive images not pulled in 90 days","selection":{"tagStatus":"any","countType":"sinceImagePulled","countUnit":"days","countNumber":90},"action":{"type":"transition","targetStorageClass":"archive"}}]}"#).unwrap();
    let mut pulled = img("b", &["v2"], days(200));
    pulled.last_pulled_at = Some(NOW - days(10));
    let mut restoring = img("d", &[], days(300));
    restoring.storage_class = None;
    let images = [
        img("a", &["v1"], days(200)),
        pulled,
        img("c", &[], days(30)),
        restoring,
        archived("e", &[], days(400), days(100)),
    ];
    let got = evaluate(&not_pulled, &images, NOW);
    assert_eq!(
        got,
        vec![Decision { image: 0, rule_priority: 1, action: Action::Transition }],
        "never pulled for 200 days: archived; pulled 10 days ago, young, restoring or archived already: not"
    );
    let expire_archived = parse(r#"{"rules":[{"rulePriority":1,"description":"Expire images archived for more than 365 days","selection":{"tagStatus":"any","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":365},"action":{"type":"expire"}}]}"#).unwrap();
    let images =
        [archived("a", &[], days(900), days(400)), archived("b", &[], days(900), days(100)), img("c", &[], days(900))];
    assert_eq!(
        evaluate(&expire_archived, &images, NOW),
        vec![Decision { image: 0, rule_priority: 1, action: Action::Expire }]
    );
    // Both together: each rule acts on its own storage class.
    let both = parse(r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":30},"action":{"type":"transition","targetStorageClass":"archive"}},{"rulePriority":2,"selection":{"tagStatus":"any","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":365},"action":{"type":"expire"}}]}"#).unwrap();
    let images = [img("a", &[], days(40)), img("b", &[], days(20)), archived("c", &[], days(900), days(366))];
    assert_eq!(
        evaluate(&both, &images, NOW),
        vec![
            Decision { image: 2, rule_priority: 2, action: Action::Expire },
            Decision { image: 0, rule_priority: 1, action: Action::Transition },
        ],
        "oldest push first"
    );
}

#[test]
fn rules_are_applied_by_priority_whatever_their_order_in_the_text() {
    let images = [img("a", &["prod-1"], days(3)), img("b", &["prod-2"], days(2)), img("c", &[], days(1))];
    let p = policy(&[
        rule(9, "any", None, &count_more_than(1)),
        rule(2, "tagged", Some(("tagPrefixList", &["prod"])), &count_more_than(5)),
    ]);
    assert_eq!(p.rules.iter().map(|r| r.priority).collect::<Vec<_>>(), vec![2, 9]);
    // Rule 2 keeps both prod images; rule 9 may act only on the untagged one, which is youngest.
    expect(&p, &images, &[]);
}
