//! Version-order vectors per ecosystem, mostly from each scheme's own documentation.

use std::cmp::Ordering::{self, *};

use berth_vulndb::compare;

/// Every earlier element is strictly lower than every later one.
fn chain(eco: &str, versions: &[&str]) {
    for (i, a) in versions.iter().enumerate() {
        assert_eq!(compare(eco, a, a), Some(Equal), "{eco}: {a} == {a}");
        for b in &versions[i + 1..] {
            assert_eq!(compare(eco, a, b), Some(Less), "{eco}: {a} < {b}");
            assert_eq!(compare(eco, b, a), Some(Greater), "{eco}: {b} > {a}");
        }
    }
}

fn equal(eco: &str, versions: &[&str]) {
    for a in versions {
        for b in versions {
            assert_eq!(compare(eco, a, b), Some(Equal), "{eco}: {a} == {b}");
        }
    }
}

fn pairs(eco: &str, cases: &[(&str, Ordering, &str)]) {
    for (a, o, b) in cases {
        assert_eq!(compare(eco, a, b), Some(*o), "{eco}: {a} {o:?} {b}");
        assert_eq!(compare(eco, b, a), Some(o.reverse()), "{eco}: {b} vs {a}");
    }
}

fn invalid(eco: &str, versions: &[&str]) {
    for v in versions {
        assert_eq!(compare(eco, v, v), None, "{eco}: {v:?} should not parse");
        assert_eq!(compare(eco, v, "1"), None);
    }
}

#[test]
fn debian_policy_tilde_example() {
    // Policy §5.6.12: "~~" < "~~a" < "~" < "" < "a".
    chain("Debian", &["1.0~~", "1.0~~a", "1.0~", "1.0", "1.0a"]);
}

#[test]
fn debian_and_ubuntu_classic_cases() {
    for eco in ["Debian", "Debian:12", "Ubuntu", "Ubuntu:22.04:LTS"] {
        pairs(
            eco,
            &[
                ("1.0~rc1", Less, "1.0"),
                ("1:0.1", Greater, "2.0"),
                ("1.0-1", Less, "1.0-1ubuntu1"),
                ("1.0-1", Less, "1.0-2"),
                ("1.2.3", Less, "1.2.10"),
                ("1.0", Less, "1.0.0"),
                ("1.0", Less, "1.0a"),
                ("1.0a", Less, "1.0+"),
                ("1.0a", Less, "1.0."),
                ("1.0+dfsg-1", Greater, "1.0-1"),
                ("2.36-9", Less, "2.36-9+deb12u4"),
                ("7.88.1-10+deb12u5", Less, "7.88.1-10+deb12u6"),
                ("1.0-1~bpo11+1", Less, "1.0-1"),
                ("2:1.0", Greater, "1:9.9"),
                ("10:1", Greater, "9:100"),
                ("1.0-10", Greater, "1.0-9"),
                ("1.2-3ubuntu0.1", Less, "1.2-3ubuntu0.2"),
                ("1.2-3ubuntu0.22.04.1", Greater, "1.2-3ubuntu0.20.04.1"),
                ("3.0.2-0ubuntu1.10", Greater, "3.0.2-0ubuntu1.9"),
                ("1.1.1n-0+deb11u5", Less, "1.1.1w-0+deb11u1"),
                ("0.9.8~beta1-1", Less, "0.9.8-1"),
                ("1:2.3", Greater, "2.3"),
                ("a1.0", Greater, "9.0"),
                ("1.0-a", Greater, "1.0-1"),
                ("99999999999999999999999", Less, "100000000000000000000000"),
            ],
        );
        equal(eco, &["1.0", "0:1.0", "1.0-0", "00:1.0", "1.00"]);
        equal(eco, &["1.01-1", "1.1-1", "1.1-01"]);
        invalid(eco, &["", "a:1.0", "1.0-", "1:", ":1.0", "1.0 2", "1.0_1", "-1"]);
    }
}

#[test]
fn alpine_suffixes_and_revisions() {
    for eco in ["Alpine", "Alpine:v3.19"] {
        chain(
            eco,
            &[
                "1.0_alpha",
                "1.0_alpha1",
                "1.0_alpha2",
                "1.0_beta",
                "1.0_beta3",
                "1.0_pre1",
                "1.0_rc1",
                "1.0_rc1-r1",
                "1.0_rc2",
                "1.0",
                "1.0-r1",
                "1.0-r2",
                "1.0-r10",
                "1.0_cvs",
                "1.0_svn",
                "1.0_git20200101",
                "1.0_hg",
                "1.0_p1",
                "1.0_p1-r3",
                "1.0_p2",
                "1.0a",
                "1.0a_p1",
                "1.0b",
                "1.0.1",
                "1.0.2_rc1",
                "1.0.2",
                "1.1",
                "1.10",
                "2",
                "10.0",
            ],
        );
        pairs(
            eco,
            &[
                ("1.2.3_rc1", Less, "1.2.3"),
                ("1.2.3", Less, "1.2.3-r0"),
                ("1.2.3-r1", Less, "1.2.3_p1"),
                ("3.0.8-r0", Less, "3.0.8-r1"),
                ("3.0.12-r0", Greater, "3.0.8-r4"),
                ("1.36.1-r15", Less, "1.36.1-r16"),
                ("2.4.0_alpha1_p2", Greater, "2.4.0_alpha1"),
                ("2.4.0_alpha1_p2", Less, "2.4.0_alpha2"),
                ("1.0~abc", Greater, "1.0"),
                ("1.0~abc-r1", Greater, "1.0~abc"),
            ],
        );
        equal(eco, &["1.0-r1", "1.0-r01"]);
        invalid(eco, &["", "a1", "1.0_foo", "1.0-r", "1..0", "1.0-1", "1.0A", "v1.0", "1.0_"]);
    }
}

#[test]
fn pypi_pep440_ordering_example() {
    // The ordering example of PEP 440 ("Summary of permitted suffixes and relative ordering").
    chain(
        "PyPI",
        &[
            "1.dev0",
            "1.0.dev456",
            "1.0a1",
            "1.0a2.dev456",
            "1.0a12.dev456",
            "1.0a12",
            "1.0b1.dev456",
            "1.0b2",
            "1.0b2.post345.dev456",
            "1.0b2.post345",
            "1.0rc1.dev456",
            "1.0rc1",
            "1.0",
            "1.0+abc.5",
            "1.0+abc.7",
            "1.0+5",
            "1.0.post456.dev34",
            "1.0.post456",
            "1.0.15",
            "1.1.dev1",
        ],
    );
}

#[test]
fn pypi_epochs_and_release_segments() {
    pairs(
        "PyPI",
        &[
            ("2013.10", Less, "1!1.0"),
            ("1!1.0", Less, "1!1.1"),
            ("1!0.1", Greater, "9999"),
            ("1.2", Less, "1.10"),
            ("1.0", Less, "1.0.1"),
            ("0.9.9", Less, "1"),
            ("2.2.5", Less, "2.3.0"),
            ("1.0a1", Less, "1.0b1"),
            ("1.0b1", Less, "1.0rc1"),
            ("1.0.post1", Less, "1.0.post2"),
            ("1.0.dev1", Less, "1.0a1"),
            ("1.0+local", Greater, "1.0"),
            ("1.0+a", Less, "1.0+a.1"),
            ("1.0+1", Greater, "1.0+z"),
            ("1.0.post1+local", Greater, "1.0.post1"),
            ("2.0.0", Greater, "2.0rc1"),
        ],
    );
}

#[test]
fn pypi_normalisation() {
    equal("PyPI", &["1.0", "1.0.0", "1.0.0.0", "v1.0", "V1.0", " 1.0 ", "01.00"]);
    equal(
        "PyPI",
        &["1.0rc1", "1.0RC1", "1.0-rc.1", "1.0c1", "1.0.rc1", "1.0_rc1", "1.0pre1", "1.0preview1", "1.0-rc-1"],
    );
    equal("PyPI", &["1.0a1", "1.0alpha1", "1.0.a.1", "1.0-ALPHA-1"]);
    equal("PyPI", &["1.0b0", "1.0b", "1.0beta", "1.0-b"]);
    equal("PyPI", &["1.0.post1", "1.0-post1", "1.0post1", "1.0-1", "1.0.r1", "1.0rev1", "1.0_post_1"]);
    equal("PyPI", &["1.0.post0", "1.0.post", "1.0-post"]);
    equal("PyPI", &["1.0.dev0", "1.0-dev", "1.0dev", "1.0.dev"]);
    equal("PyPI", &["1.0+ubuntu-1", "1.0+ubuntu.1", "1.0+UBUNTU_1"]);
    equal("PyPI", &["1!1.0", "1!1.0.0"]);
    invalid(
        "PyPI",
        &["", "foo", "1.0+", "1.0 beta", "1.0..0", "1.0-", "1.0+abc!", "!1.0", "1.0a1a2", "1.0.post1.post2"],
    );
}

#[test]
fn semver_spec_precedence() {
    for eco in ["npm", "crates.io"] {
        // SemVer 2.0.0 §11.
        chain(
            eco,
            &[
                "1.0.0-alpha",
                "1.0.0-alpha.1",
                "1.0.0-alpha.beta",
                "1.0.0-beta",
                "1.0.0-beta.2",
                "1.0.0-beta.11",
                "1.0.0-rc.1",
                "1.0.0",
                "1.0.1",
                "1.1.0",
                "2.0.0",
                "2.1.0",
                "2.1.1",
                "10.0.0",
            ],
        );
        pairs(
            eco,
            &[
                ("0.0.0-0", Less, "0.0.0"),
                ("0.0.0-0", Less, "0.14.10"),
                ("1.0.0-1", Less, "1.0.0-a"),
                ("1.0.0-2", Less, "1.0.0-10"),
                ("1.0.0-Z", Less, "1.0.0-a"),
                ("1.0.0-x-y", Greater, "1.0.0-x"),
                ("1.2.3", Less, "1.2.4-0"),
            ],
        );
        equal(eco, &["1.0.0", "1.0.0+build", "1.0.0+20130313144700", "v1.0.0"]);
        equal(eco, &["1.0.0-alpha+001", "1.0.0-alpha"]);
        invalid(
            eco,
            &[
                "",
                "1.0",
                "1",
                "01.0.0",
                "1.0.0-01",
                "1.0.0-",
                "1.0.0+",
                "a.b.c",
                "1.0.0-alpha..1",
                "1.0.0-é",
                "1.0.0.0",
                " 1.0.0",
            ],
        );
    }
}

#[test]
fn go_module_versions() {
    chain(
        "Go",
        &[
            "v0.0.0-20190101000000-000000000000",
            "v0.0.0-20210101000000-abcdef123456",
            "0.0.0-20220906165146-f3363e06e74c",
            "v0.0.1",
            "v0.7.0",
            "v1.2.3",
            "v1.2.4-0.20210101000000-abcdef123456",
            "v1.2.4-pre",
            "v1.2.4",
            "1.19.6",
            "1.20.0-0",
            "1.20.0-rc.1",
            "1.20.0",
            "1.20.1",
            "v2.0.0+incompatible",
            "v2.1.0",
        ],
    );
    equal("Go", &["v1.2.3", "1.2.3"]);
    equal("Go", &["v2.0.0+incompatible", "v2.0.0", "2.0.0"]);
    equal("Go", &["v1.2", "v1.2.0"]);
    equal("Go", &["v1", "v1.0.0"]);
    invalid("Go", &["", "vv1.2.3", "1.2.3.4", "v1.02.3", "latest", "go1.20"]);
}

#[test]
fn generic_fallback() {
    for eco in ["Maven", "RubyGems", "Packagist", "SomethingNew"] {
        chain(eco, &["0.9", "1", "1.0.1", "1.2", "1.10", "2.0.0.1"]);
        equal(eco, &["1", "1.0", "1.0.0", "v1.0"]);
        invalid(eco, &["", "1.0-SNAPSHOT", "1.0.0.RELEASE", "abc", "1..2"]);
    }
}
