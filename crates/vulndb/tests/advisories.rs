//! Parsing, severity (CVSS v3 base score) and affected evaluation on hand-written records.

use berth_vulndb::{Cvss3, Event, Severity, base_ecosystem, normalize_name, parse};
use serde_json::json;

fn score(v: &str) -> f64 {
    Cvss3::parse(v).unwrap_or_else(|| panic!("{v} should parse")).base_score
}

#[test]
fn cvss3_base_scores() {
    let cases = [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5),
        ("CVSS:3.0/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N", 3.1),
        // Scope changed with PR:L (PR weight 0.68 instead of 0.62).
        ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 9.9),
        ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
        ("CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:C/C:H/I:H/A:H", 9.1),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:L/A:N", 5.3),
        ("CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 1.8),
        ("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 1.6),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:N/I:N/A:N", 0.0),
        ("CVSS:3.1/AV:A/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 8.8),
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 8.8),
        // Temporal and environmental metrics do not change the base score; order is free.
        ("CVSS:3.1/A:H/I:H/C:H/S:U/UI:N/PR:N/AC:L/AV:N/E:U/RL:O/RC:C/CR:H", 9.8),
    ];
    for (v, expected) in cases {
        assert_eq!(score(v), expected, "{v}");
    }
}

#[test]
fn cvss3_rejects_other_vectors() {
    for v in [
        "AV:N/AC:L/Au:N/C:P/I:P/A:P",
        "CVSS:2.0/AV:N/AC:L/Au:N/C:P/I:P/A:P",
        "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:X",
        "CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/garbage",
        "",
    ] {
        assert_eq!(Cvss3::parse(v), None, "{v}");
    }
}

fn advisory(v: serde_json::Value) -> berth_vulndb::Advisory {
    parse(v.to_string().as_bytes()).expect("valid record")
}

#[test]
fn severity_from_scores_and_words() {
    assert_eq!(Severity::from_score(9.0), Severity::Critical);
    assert_eq!(Severity::from_score(8.9), Severity::High);
    assert_eq!(Severity::from_score(7.0), Severity::High);
    assert_eq!(Severity::from_score(6.9), Severity::Medium);
    assert_eq!(Severity::from_score(4.0), Severity::Medium);
    assert_eq!(Severity::from_score(3.9), Severity::Low);
    assert_eq!(Severity::from_score(0.1), Severity::Low);
    assert_eq!(Severity::from_score(0.0), Severity::Informational);
    let names: Vec<&str> = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Informational,
        Severity::Undefined,
    ]
    .iter()
    .map(|s| s.as_str())
    .collect();
    assert_eq!(names, ["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED"]);

    // v3 vector of the record wins; v2/v4 are ignored.
    let a = advisory(json!({"id": "X-1", "severity": [
        {"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:P/I:P/A:P"},
        {"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"},
        {"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N"}],
        "database_specific": {"severity": "CRITICAL"}}));
    assert_eq!(a.severity, Severity::Medium);
    assert_eq!(a.cvss3.as_ref().map(|c| c.base_score), Some(5.5));

    // Only v2/v4: no cvss3, word from database_specific.
    let a = advisory(json!({"id": "X-2", "severity": [
        {"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}],
        "database_specific": {"severity": "moderate"}}));
    assert_eq!(a.cvss3, None);
    assert_eq!(a.severity, Severity::Medium);

    // A v3 vector in an affected entry counts.
    let a = advisory(json!({"id": "X-3", "affected": [{"package": {"ecosystem": "npm", "name": "x"},
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]}]}));
    assert_eq!(a.severity, Severity::Critical);

    // Words from affected entries (ecosystem_specific before database_specific).
    let a = advisory(json!({"id": "X-4", "affected": [{"package": {"ecosystem": "Alpine:v3.19", "name": "x"},
        "ecosystem_specific": {"severity": "High"}, "database_specific": {"severity": "LOW"}}]}));
    assert_eq!(a.severity, Severity::High);
    assert_eq!(a.affected[0].severity, Some(Severity::High));
    let a = advisory(json!({"id": "X-5", "affected": [{"package": {"ecosystem": "Debian", "name": "x"},
        "database_specific": {"severity": "low"}}]}));
    assert_eq!(a.severity, Severity::Low);

    let a = advisory(json!({"id": "X-6", "database_specific": {"severity": "whatever"}}));
    assert_eq!(a.severity, Severity::Undefined);
}

#[test]
fn fields_cve_url_and_nulls() {
    let a = advisory(json!({
        "id": "GHSA-aaaa-bbbb-cccc", "aliases": ["PYSEC-1", "CVE-2024-1", "CVE-2024-2"],
        "summary": "s", "details": null, "modified": "2024-01-01T00:00:00Z",
        "references": [{"type": "PACKAGE", "url": "p"}, {"type": "WEB", "url": "w"}, {"type": "ADVISORY", "url": "a"}],
        "affected": [{"package": {"ecosystem": "PyPI", "name": "Foo"}, "ranges": null, "versions": null},
                     {"ranges": [{"type": "GIT", "repo": "r", "events": [{"introduced": "0"}]}]}]
    }));
    assert_eq!(a.cve.as_deref(), Some("CVE-2024-1"));
    assert_eq!(a.url.as_deref(), Some("a"));
    assert_eq!(a.details, None);
    assert!(!a.withdrawn);
    assert_eq!(a.affected.len(), 1, "entries without a package are dropped");
    let a = advisory(
        json!({"id": "CVE-2020-1", "references": [{"type": "PACKAGE", "url": "p"}, {"type": "WEB", "url": "w"}]}),
    );
    assert_eq!(a.cve.as_deref(), Some("CVE-2020-1"));
    assert_eq!(a.url.as_deref(), Some("w"));
    let a = advisory(json!({"id": "X", "references": [{"type": "PACKAGE", "url": "p"}]}));
    assert_eq!(a.url.as_deref(), Some("p"));
    assert!(parse(b"{}").is_err());
    assert!(parse(b"not json").is_err());
    assert!(parse(br#"{"id": ""}"#).is_err());
    assert!(parse(br#"{"id": 5}"#).is_err());
}

#[test]
fn names_and_ecosystems() {
    assert_eq!(normalize_name("PyPI", "Foo.Bar__baz-"), "foo-bar-baz-");
    assert_eq!(normalize_name("PyPI", "zope.interface"), "zope-interface");
    assert_eq!(normalize_name("PyPI", "Django"), "django");
    assert_eq!(normalize_name("npm", "Foo_Bar"), "Foo_Bar");
    assert_eq!(normalize_name("Go", "github.com/Foo/bar"), "github.com/Foo/bar");
    assert_eq!(base_ecosystem("Debian:12"), "Debian");
    assert_eq!(base_ecosystem("Alpine:v3.19"), "Alpine");
    assert_eq!(base_ecosystem("Ubuntu:22.04:LTS"), "Ubuntu");
    assert_eq!(base_ecosystem("crates.io"), "crates.io");
    assert_eq!(base_ecosystem(""), "");
}

fn ranged(eco: &str, name: &str, events: serde_json::Value) -> berth_vulndb::Advisory {
    advisory(json!({"id": "T-1", "affected": [{"package": {"ecosystem": eco, "name": name},
        "ranges": [{"type": "ECOSYSTEM", "events": events}]}]}))
}

#[test]
fn introduced_fixed() {
    let a = ranged("PyPI", "flask", json!([{"introduced": "0"}, {"fixed": "2.2.5"}]));
    assert!(a.affects("PyPI", "flask", "0.1"));
    assert!(a.affects("PyPI", "flask", "2.2.4"));
    assert!(a.affects("PyPI", "flask", "2.2.5rc1"));
    assert!(!a.affects("PyPI", "flask", "2.2.5"));
    assert!(!a.affects("PyPI", "flask", "2.2.5.0"));
    assert!(!a.affects("PyPI", "flask", "3.0"));
    assert!(!a.affects("PyPI", "other", "1.0"));
    assert!(!a.affects("npm", "flask", "1.0.0"));
    assert_eq!(a.affected[0].ranges[0].events[1], Event::Fixed("2.2.5".into()));
}

#[test]
fn multiple_pairs_in_any_order() {
    // Events out of order in the record are sorted by version.
    let a = ranged(
        "PyPI",
        "Flask",
        json!([{"introduced": "2.3.0"}, {"fixed": "2.3.2"}, {"introduced": "0"}, {"fixed": "2.2.5"}]),
    );
    for (v, want) in [
        ("1.0", true),
        ("2.2.5", false),
        ("2.2.9", false),
        ("2.3.0", true),
        ("2.3.1", true),
        ("2.3.2", false),
        ("3", false),
    ] {
        assert_eq!(a.affects("PyPI", "flask", v), want, "{v}");
    }
}

#[test]
fn last_affected_is_inclusive() {
    let a = ranged("npm", "x", json!([{"introduced": "1.0.0"}, {"last_affected": "1.4.2"}]));
    for (v, want) in [
        ("0.9.9", false),
        ("1.0.0-rc.1", false),
        ("1.0.0", true),
        ("1.4.2", true),
        ("1.4.2+build", true),
        ("1.4.3-0", false),
        ("1.4.3", false),
    ] {
        assert_eq!(a.affects("npm", "x", v), want, "{v}");
    }
}

#[test]
fn introduced_without_end_affects_all_later() {
    let a = ranged("crates.io", "x", json!([{"introduced": "0.3.0"}]));
    assert!(!a.affects("crates.io", "x", "0.2.9"));
    assert!(a.affects("crates.io", "x", "0.3.0"));
    assert!(a.affects("crates.io", "x", "99.0.0"));
}

#[test]
fn limit_bounds_the_range() {
    let a = ranged("Go", "example.com/m", json!([{"introduced": "0"}, {"limit": "1.5.0"}]));
    assert!(a.affects("Go", "example.com/m", "v1.4.9"));
    assert!(!a.affects("Go", "example.com/m", "v1.5.0"));
    assert!(!a.affects("Go", "example.com/m", "v1.6.0"));
    let a = ranged("Go", "m", json!([{"introduced": "0"}, {"limit": "*"}]));
    assert!(a.affects("Go", "m", "v9.0.0"));
    // With a fixed event too: the limit only cuts further.
    let a = ranged("Go", "m", json!([{"introduced": "1.0.0"}, {"fixed": "2.0.0"}, {"limit": "1.5.0"}]));
    assert!(a.affects("Go", "m", "1.4.0"));
    assert!(!a.affects("Go", "m", "1.6.0"));
}

#[test]
fn versions_list_and_unparseable_versions() {
    let a = advisory(json!({"id": "T-2", "affected": [{"package": {"ecosystem": "PyPI", "name": "x"},
        "versions": ["1.0", "weird-build", "2.0"],
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "3.0"}, {"fixed": "3.5"}]},
                   {"type": "GIT", "repo": "https://example.com/r", "events": [{"introduced": "0"}, {"fixed": "abcdef"}]}]}]}));
    assert!(a.affects("PyPI", "x", "1.0"));
    assert!(a.affects("PyPI", "x", "1.0.0"), "PEP 440 equality");
    assert!(a.affects("PyPI", "x", "weird-build"), "exact string match of an unparseable version");
    assert!(!a.affects("PyPI", "x", "1.5"));
    assert!(a.affects("PyPI", "x", "3.1"));
    assert!(!a.affects("PyPI", "x", "not a version"));
    assert!(!a.affects("PyPI", "x", "abcdef"), "GIT ranges are ignored");
    // Unparseable versions are never in a range, even an open one.
    let b = ranged("npm", "x", json!([{"introduced": "0"}]));
    assert!(b.affects("npm", "x", "1.0.0"));
    assert!(!b.affects("npm", "x", "1.0"));
    assert!(!b.affects("npm", "x", ""));
    // An unparseable event version is dropped (here a fixed: the range stays open).
    let c = ranged("npm", "x", json!([{"introduced": "1.0.0"}, {"fixed": "garbage"}]));
    assert!(c.affects("npm", "x", "5.0.0"));
}

#[test]
fn semver_range_type_and_go_v_prefix() {
    let a = advisory(json!({"id": "GO-T", "affected": [{"package": {"ecosystem": "Go", "name": "stdlib"},
        "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.19.6"}, {"introduced": "1.20.0-0"}, {"fixed": "1.20.1"}]}]}]}));
    for (v, want) in [
        ("v1.19.5", true),
        ("1.19.5", true),
        ("v1.19.6", false),
        ("v1.20.0-rc.1", true),
        ("v1.20.0", true),
        ("v1.20.1", false),
        ("v1.21.0", false),
    ] {
        assert_eq!(a.affects("Go", "stdlib", v), want, "{v}");
    }
}

#[test]
fn withdrawn_affects_nothing() {
    let a = advisory(json!({"id": "W-1", "withdrawn": "2024-01-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "npm", "name": "x"}, "versions": ["1.0.0"],
        "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}]}]}]}));
    assert!(a.withdrawn);
    assert!(!a.affects("npm", "x", "1.0.0"));
}

#[test]
fn distro_release_matching() {
    let entry = |eco: &str| {
        advisory(json!({"id": "D-1", "affected": [{"package": {"ecosystem": eco, "name": "openssl"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}]}]}]}))
    };
    let a = entry("Debian:12");
    assert!(a.affects("Debian:12", "openssl", "3.0.11-1~deb12u1"));
    assert!(!a.affects("Debian:12", "openssl", "3.0.11-1~deb12u2"));
    assert!(!a.affects("Debian:11", "openssl", "3.0.11-1~deb12u1"));
    assert!(!a.affects("Debian", "openssl", "3.0.11-1~deb12u1"));
    assert!(!a.affects("Ubuntu:22.04", "openssl", "3.0.11-1~deb12u1"));
    let a = entry("Debian");
    assert!(a.affects("Debian:12", "openssl", "1.0"));
    assert!(a.affects("Debian:11", "openssl", "1.0"));
    assert!(a.affects("Debian", "openssl", "1.0"));
    let a = entry("Ubuntu:22.04:LTS");
    assert!(a.affects("Ubuntu:22.04", "openssl", "1.0"));
    assert!(a.affects("Ubuntu:22.04:LTS", "openssl", "1.0"));
    assert!(!a.affects("Ubuntu:20.04", "openssl", "1.0"));
    assert!(!a.affects("Ubuntu:Pro:22.04:LTS", "openssl", "1.0"));
    let a = entry("Alpine:v3.19");
    assert!(a.affects("Alpine:v3.19", "openssl", "3.1.4-r0"));
    assert!(a.affects("Alpine:3.19", "openssl", "3.1.4-r0"));
    assert!(!a.affects("Alpine:v3.18", "openssl", "3.1.4-r0"));
    assert!(!a.affects("Alpine:v3.19", "openssl", "3.0.11-1~deb12u1"), "not an apk version");
}

#[test]
fn pypi_names_are_normalized() {
    let a = ranged("PyPI", "Zope.Interface", json!([{"introduced": "0"}]));
    assert!(a.affects("PyPI", "zope-interface", "1.0"));
    assert!(a.affects("PyPI", "ZOPE__interface", "1.0"));
    let b = ranged("npm", "Foo", json!([{"introduced": "0"}]));
    assert!(!b.affects("npm", "foo", "1.0.0"));
}

#[test]
fn a_record_must_be_a_json_object() {
    // serde would fill the record from an array positionally; OSV records are objects.
    for text in [r#"["GHSA-xxxx"]"#, r#""GHSA-xxxx""#, "42", "null"] {
        let err = berth_vulndb::parse(text.as_bytes()).unwrap_err();
        assert!(!err.to_string().is_empty(), "{text}");
    }
    assert!(berth_vulndb::parse(br#"{"id": "GHSA-xxxx"}"#).is_ok());
}
