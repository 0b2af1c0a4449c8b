//! Property test: SigV4 parsing (header and presigned-query forms) never panics on hostile
//! input and refuses what it cannot read. Longer run: `PROPTEST_CASES=100000 cargo test -p
//! berth-auth --test sigv4_never_panics`.

use berth_auth::sigv4;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use std::time::{Duration, SystemTime};

fn auth_like() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        Just("AWS4-HMAC-SHA256".to_string()),
        Just("Credential=AKIAIOSFODNN7EXAMPLE/20240101/us-east-1/ecr/aws4_request".to_string()),
        Just("SignedHeaders=host;x-amz-date;x-amz-target".to_string()),
        Just("Signature=".to_string()),
        "Credential=[ -~]{0,60}",
        "SignedHeaders=[ -~]{0,40}",
        "Signature=[0-9a-f]{0,70}",
        "[ -~]{0,30}",
    ];
    (prop::collection::vec(part, 0..6), prop_oneof![Just(", "), Just(","), Just(" ")])
        .prop_map(|(parts, sep)| parts.join(sep))
}

fn check(auth: Option<&str>, date: &str, query: &str) {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("127.0.0.1:5000"));
    if let Some(a) = auth.and_then(|a| HeaderValue::from_str(a).ok()) {
        headers.insert("authorization", a);
    }
    if let Ok(d) = HeaderValue::from_str(date) {
        headers.insert("x-amz-date", d);
    }
    let req = sigv4::Request { method: "POST", path: "/", query, headers: &headers, body_sha256: sigv4::EMPTY_SHA256 };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200);
    let _ = sigv4::parse(&req, "ecr", &["us-east-1".to_string()], now);
}

proptest! {
    #[test]
    fn header_form_never_panics(auth in auth_like(), date in prop_oneof![Just("20240101T000000Z".to_string()), "[ -~]{0,20}"]) {
        check(Some(&auth), &date, "");
    }

    #[test]
    fn query_form_never_panics(q in "[ -~]{0,200}") {
        check(None, "20240101T000000Z", &q);
        let presigned = format!("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={q}&X-Amz-Date=20240101T000000Z&X-Amz-SignedHeaders=host&X-Amz-Signature=00");
        check(None, "", &presigned);
    }
}
