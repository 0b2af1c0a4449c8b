//! Properties of `compare`: a total order on valid versions of each ecosystem, and no
//! panics on arbitrary input.

use std::cmp::Ordering::{self, *};

use berth_vulndb::compare;
use proptest::prelude::*;

/// (ecosystem, generator of valid versions)
fn schemes() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Debian", "([0-9]:)?[0-9][0-9a-z.+~]{0,6}(-[0-9a-z.+~]{1,4})?"),
        ("Ubuntu:22.04", "[0-9]{1,2}(\\.[0-9]{1,2}){0,2}(~[a-z0-9]{1,3})?(-[0-9]ubuntu[0-9](\\.[0-9]){0,2})?"),
        (
            "Alpine",
            "[0-9]{1,2}(\\.[0-9]{1,2}){0,2}[a-c]?(_(alpha|beta|pre|rc|cvs|svn|git|hg|p)[0-9]{0,2}){0,2}(~[0-9a-f]{1,3})?(-r[0-9]{1,2})?",
        ),
        (
            "PyPI",
            "(v|[0-9]!)?[0-9]{1,2}(\\.[0-9]{1,2}){0,2}([-._]?(a|b|c|rc|alpha|beta|pre)[0-9]{0,2})?([-._]?(post|r)[0-9]{0,2}|-[0-9])?([-._]?dev[0-9]{0,2})?(\\+[a-z0-9]{1,3}([-._][a-z0-9]{1,3})?)?",
        ),
        (
            "npm",
            "v?(0|[1-9][0-9]?)\\.(0|[1-9])\\.(0|[1-9])(-(0|[1-9]|[a-z]{1,3}|x-y)(\\.(0|[1-9]|[a-zA-Z]{1,2})){0,2})?(\\+[a-z0-9]{1,3})?",
        ),
        ("crates.io", "(0|[1-9])\\.(0|[1-9])\\.(0|[1-9])(-(0|[1-9]|[a-z]{1,3})(\\.(0|[1-9]|[a-z]{1,2})){0,2})?"),
        (
            "Go",
            "v?(0|[1-9])(\\.(0|[1-9])\\.(0|[1-9])(-(0|[a-z]{1,3}|20[0-9]{2}-[a-f]{2})(\\.(0|[1-9])){0,1})?(\\+incompatible)?)?",
        ),
        ("Maven", "v?[0-9]{1,2}(\\.[0-9]{1,2}){0,3}"),
    ]
}

fn le(o: Ordering) -> bool {
    o != Greater
}

fn check_order(eco: &str, a: &str, b: &str, c: &str) -> Result<(), TestCaseError> {
    let ab = compare(eco, a, b).ok_or_else(|| TestCaseError::fail(format!("{eco}: {a} / {b} unparsed")))?;
    let bc = compare(eco, b, c).ok_or_else(|| TestCaseError::fail(format!("{eco}: {b} / {c} unparsed")))?;
    let ac = compare(eco, a, c).ok_or_else(|| TestCaseError::fail(format!("{eco}: {a} / {c} unparsed")))?;
    prop_assert_eq!(compare(eco, a, a), Some(Equal), "{}: reflexive {}", eco, a);
    prop_assert_eq!(compare(eco, b, a), Some(ab.reverse()), "{}: antisymmetric {} {}", eco, a, b);
    if le(ab) && le(bc) {
        prop_assert!(le(ac), "{}: {} <= {} <= {} but {:?}", eco, a, b, c, ac);
        if ab == Less || bc == Less {
            prop_assert_eq!(ac, Less, "{}: {} {:?} {} {:?} {}", eco, a, ab, b, bc, c);
        } else {
            prop_assert_eq!(ac, Equal);
        }
    }
    if ab == Equal {
        prop_assert_eq!(Some(bc), compare(eco, a, c), "{}: {} == {} must compare alike to {}", eco, a, b, c);
    }
    Ok(())
}

fn triple(re: &'static str) -> impl Strategy<Value = (String, String, String)> {
    (re, re, re)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn total_order_debian((a, b, c) in triple(schemes()[0].1)) { check_order("Debian", &a, &b, &c)?; }
    #[test]
    fn total_order_ubuntu((a, b, c) in triple(schemes()[1].1)) { check_order("Ubuntu:22.04", &a, &b, &c)?; }
    #[test]
    fn total_order_alpine((a, b, c) in triple(schemes()[2].1)) { check_order("Alpine", &a, &b, &c)?; }
    #[test]
    fn total_order_pypi((a, b, c) in triple(schemes()[3].1)) { check_order("PyPI", &a, &b, &c)?; }
    #[test]
    fn total_order_npm((a, b, c) in triple(schemes()[4].1)) { check_order("npm", &a, &b, &c)?; }
    #[test]
    fn total_order_crates((a, b, c) in triple(schemes()[5].1)) { check_order("crates.io", &a, &b, &c)?; }
    #[test]
    fn total_order_go((a, b, c) in triple(schemes()[6].1)) { check_order("Go", &a, &b, &c)?; }
    #[test]
    fn total_order_generic((a, b, c) in triple(schemes()[7].1)) { check_order("Maven", &a, &b, &c)?; }

    /// Near-miss strings built from each scheme's alphabet, and arbitrary Unicode:
    /// never a panic, and a parsed answer is consistent both ways.
    #[test]
    fn never_panics(a in "[0-9a-zA-Z.:~+_!-]{0,14}", b in "[0-9a-zA-Z.:~+_!-]{0,14}", u in any::<String>()) {
        for (eco, _) in schemes() {
            for (x, y) in [(&a, &b), (&a, &u), (&u, &u)] {
                let o = compare(eco, x, y);
                prop_assert_eq!(o.map(Ordering::reverse), compare(eco, y, x));
            }
        }
        let adv = berth_vulndb::parse(br#"{"id": "P", "affected": [{"package": {"ecosystem": "PyPI", "name": "x"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0"}]}]}]}"#).unwrap();
        let _ = adv.affects("PyPI", "x", &a);
        let _ = adv.affects(&u, &u, &u);
        let _ = berth_vulndb::parse(u.as_bytes());
    }
}
