//! Every SigV4 failure: its AWS exception name and exact message.

mod common;

use std::time::Duration;

use berth_auth::sigv4::{self, Presign, Request, SecretKey, SigV4Error, SignatureLocation, presign, verify};
use common::{AKID, Payload, Received, SECRET, Spec, at, sha256_hex, sign_with_aws};
use http::{HeaderMap, HeaderValue};

const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
/// 2017-01-11T20:40:52Z, the request time in ECR's captured clock-skew error.
const T: u64 = 1_484_167_252;

fn signed(spec: &Spec) -> Received {
    sign_with_aws(spec).expect("aws-sigv4 signs it")
}

fn base() -> Received {
    signed(&Spec::new(at(T)))
}

fn check(err: Result<sigv4::Verified, SigV4Error>, aws_type: &str, message: &str) {
    let err = err.expect_err("must fail");
    assert_eq!(err.aws_type(), aws_type, "{err:?}");
    assert_eq!(err.message(), message, "{err:?}");
    assert_eq!(err.to_string(), message);
}

/// A request with these headers (plus `host`), no query, empty body.
fn raw(headers: &[(&str, &str)], query: &str) -> Received {
    let mut map = HeaderMap::new();
    map.insert("host", HeaderValue::from_static("api.ecr.us-east-1.example.com"));
    for (k, v) in headers {
        map.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    Received { method: "POST".into(), path: "/".into(), query: query.into(), headers: map, body: Vec::new() }
}

#[test]
fn valid_botocore_style_request_verifies() {
    let r = base();
    let auth = r.headers["authorization"].to_str().unwrap();
    assert!(auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-target"), "{auth}");
    let v = r.verify(&REGIONS, at(T)).unwrap();
    assert_eq!(v.access_key_id, AKID);
    assert_eq!(v.region, "us-east-1");
    assert_eq!(v.service, "ecr");
    assert_eq!(v.date, "20170111");
    assert_eq!(v.signed_at, at(T));
    assert_eq!(v.location, SignatureLocation::Header);
    assert_eq!(v.session_token, None);
    assert!(!v.unsigned_payload);
}

#[test]
fn session_token_signed_or_not() {
    for exclude in [false, true] {
        let mut spec = Spec::new(at(T));
        spec.token = Some("FQoGZXIvYXdzEXAMPLE//token==".into());
        spec.exclude_token = exclude;
        let r = signed(&spec);
        assert!(r.headers.contains_key("x-amz-security-token"));
        let v = r.verify(&REGIONS, at(T)).unwrap();
        assert_eq!(v.session_token.as_deref(), Some("FQoGZXIvYXdzEXAMPLE//token=="));
    }
}

#[test]
fn missing_authentication_token() {
    check(
        raw(&[("x-amz-date", "20170111T204052Z")], "Action=List&X-Amz-Date=20170111T204052Z").verify(&REGIONS, at(T)),
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    );
    assert_eq!(SigV4Error::MissingAuthenticationToken.http_status(), 400);
}

#[test]
fn incomplete_signature_missing_parameters() {
    // Shapes captured from AWS (SES, API Gateway).
    check(
        raw(&[("authorization", "AWS4-HMAC-SHA256 Credential=ABCDEF"), ("x-amz-date", "20170111T204052Z")], "")
            .verify(&REGIONS, at(T)),
        "IncompleteSignatureException",
        "Authorization header requires 'Signature' parameter. Authorization header requires \
         'SignedHeaders' parameter. Authorization=AWS4-HMAC-SHA256 Credential=ABCDEF",
    );
    check(
        raw(&[("authorization", "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.e30.sig")], "").verify(&REGIONS, at(T)),
        "IncompleteSignatureException",
        "Authorization header requires 'Credential' parameter. Authorization header requires \
         'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. \
         Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. \
         Authorization=eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.e30.sig",
    );
    // A signed request that lost its X-Amz-Date.
    let mut r = base();
    r.headers.remove("x-amz-date");
    let err = r.verify(&REGIONS, at(T)).unwrap_err();
    assert_eq!(err.aws_type(), "IncompleteSignatureException");
    assert!(err.message().starts_with(
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. \
         Authorization=AWS4-HMAC-SHA256 Credential="
    ));
}

#[test]
fn incomplete_signature_bad_pair() {
    let auth = "AWS4-HMAC-SHA256 Credential= myaccesskey/20181128/eu-central-1/cloud9/aws4_request, \
                SignedHeaders=content-length;content-type;host;x-amz-date;x-amz-target, Signature=mysecret";
    check(
        raw(&[("authorization", auth), ("x-amz-date", "20170111T204052Z")], "").verify(&REGIONS, at(T)),
        "IncompleteSignatureException",
        &format!(
            "'myaccesskey/20181128/eu-central-1/cloud9/aws4_request' not a valid key=value pair \
             (missing equal-sign) in Authorization header: '{auth}'."
        ),
    );
}

#[test]
fn incomplete_signature_credential_shape() {
    let auth = "AWS4-HMAC-SHA256 Credential=XXX/XXX/20170111/us-east-1/ecr/aws4_request, \
                SignedHeaders=host;x-amz-date, Signature=00";
    check(
        raw(&[("authorization", auth), ("x-amz-date", "20170111T204052Z")], "").verify(&REGIONS, at(T)),
        "IncompleteSignatureException",
        "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, \
         got 'XXX/XXX/20170111/us-east-1/ecr/aws4_request'",
    );
}

#[test]
fn incomplete_signature_host_not_signed() {
    let auth = "AWS4-HMAC-SHA256 Credential=AKID/20170111/us-east-1/ecr/aws4_request, \
                SignedHeaders=x-amz-date, Signature=00";
    check(
        raw(&[("authorization", auth), ("x-amz-date", "20170111T204052Z")], "").verify(&REGIONS, at(T)),
        "IncompleteSignatureException",
        "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
    );
}

#[test]
fn incomplete_signature_bad_date_and_algorithm() {
    let auth = "AWS4-HMAC-SHA256 Credential=AKID/20170111/us-east-1/ecr/aws4_request, \
                SignedHeaders=host;x-amz-date, Signature=00";
    check(
        raw(&[("authorization", auth), ("x-amz-date", "2017-01-11T20:40:52Z")], "").verify(&REGIONS, at(T)),
        "IncompleteSignatureException",
        "Date must be in ISO-8601 'basic format'. Got '2017-01-11T20:40:52Z'. See \
         http://en.wikipedia.org/wiki/ISO_8601",
    );
    let auth = auth.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1");
    check(
        raw(&[("authorization", &auth), ("x-amz-date", "20170111T204052Z")], "").verify(&REGIONS, at(T)),
        "IncompleteSignatureException",
        "The authorization mechanism you have provided is not supported. Please use \
         AWS4-HMAC-SHA256.",
    );
}

#[test]
fn incomplete_signature_query_form() {
    check(
        raw(&[], "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a").verify(&REGIONS, at(T)),
        "IncompleteSignatureException",
        "AWS query-string parameters must include 'X-Amz-Algorithm', 'X-Amz-Credential', \
         'X-Amz-Signature', 'X-Amz-Date', 'X-Amz-SignedHeaders'. Re-examine the query-string \
         parameters.",
    );
    let q = |expires: &str| {
        format!(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20170111%2Fus-east-1%2Fecr%2Faws4_request\
             &X-Amz-Date=20170111T204052Z&X-Amz-SignedHeaders=host&X-Amz-Signature=00&X-Amz-Expires={expires}"
        )
    };
    for (expires, message) in [
        ("abc", "X-Amz-Expires should be a number"),
        ("-5", "X-Amz-Expires must be non-negative"),
        ("604801", "X-Amz-Expires must be less than a week (in seconds) that is 604800"),
    ] {
        check(raw(&[], &q(expires)).verify(&REGIONS, at(T)), "IncompleteSignatureException", message);
    }
}

#[test]
fn unrecognized_client() {
    let mut spec = Spec::new(at(T));
    spec.access_key_id = "AKIAUNKNOWN".into();
    check(
        signed(&spec).verify(&REGIONS, at(T)),
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    );
}

#[test]
fn invalid_signature() {
    check(
        base().verify_as("ecr", &REGIONS, at(T), "not-the-secret"),
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. Check your \
         AWS Secret Access Key and signing method. Consult the service documentation for details.",
    );
    // A signed header the request does not carry.
    let mut r = base();
    r.headers.remove("x-amz-target");
    assert_eq!(r.verify(&REGIONS, at(T)), Err(SigV4Error::SignatureDoesNotMatch));
}

#[test]
fn clock_skew() {
    // ECR's captured message (upmc-enterprises/registry-creds#24).
    let now = at(T + 2 * 3600 + 28 * 60 + 57); // 20170111T230949Z
    check(
        base().verify(&REGIONS, now),
        "InvalidSignatureException",
        "Signature expired: 20170111T204052Z is now earlier than 20170111T225449Z \
         (20170111T230949Z - 15 min.)",
    );
    check(
        base().verify(&REGIONS, at(T - 901)),
        "InvalidSignatureException",
        "Signature not yet current: 20170111T204052Z is still later than 20170111T204051Z \
         (20170111T202551Z + 15 min.)",
    );
    // Exactly 15 minutes either way is still fine.
    assert!(base().verify(&REGIONS, at(T + 900)).is_ok());
    assert!(base().verify(&REGIONS, at(T - 900)).is_ok());
    assert!(base().verify(&REGIONS, at(T + 901)).is_err());
}

#[test]
fn credential_scope() {
    let mut spec = Spec::new(at(T));
    spec.region = "us-west-2".into();
    check(
        signed(&spec).verify(&REGIONS, at(T)),
        "InvalidSignatureException",
        "Credential should be scoped to a valid region, not 'us-west-2'. ",
    );
    let mut spec = Spec::new(at(T));
    spec.service = "ecr-public".into();
    check(
        signed(&spec).verify(&REGIONS, at(T)),
        "InvalidSignatureException",
        "Credential should be scoped to correct service: 'ecr'. ",
    );
    let auth = "AWS4-HMAC-SHA256 Credential=AKID/20170110/us-east-1/ecr/aws4_request, \
                SignedHeaders=host;x-amz-date, Signature=00";
    check(
        raw(&[("authorization", auth), ("x-amz-date", "20170111T204052Z")], "").verify(&REGIONS, at(T)),
        "InvalidSignatureException",
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: \
         '20170110' != '20170111', from '20170111T204052Z'.",
    );
    let auth = "AWS4-HMAC-SHA256 Credential=AKID/20170111/us-east-1/ecr/aws4_reques, \
                SignedHeaders=host;x-amz-date, Signature=00";
    check(
        raw(&[("authorization", auth), ("x-amz-date", "20170111T204052Z")], "").verify(&REGIONS, at(T)),
        "InvalidSignatureException",
        "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws4_reques'. ",
    );
}

#[test]
fn content_sha256() {
    // Signed with x-amz-content-sha256 of the body, but a different body arrives: the signature
    // (over the header value) matches, the body does not.
    let mut spec = Spec::new(at(T));
    spec.payload = Payload::HashHeader;
    let mut r = signed(&spec);
    assert_eq!(r.headers["x-amz-content-sha256"], sha256_hex(b"{}").as_str());
    assert!(r.verify(&REGIONS, at(T)).is_ok());
    r.body = b"{\"x\":1}".to_vec();
    check(
        r.verify(&REGIONS, at(T)),
        "InvalidSignatureException",
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
    );
    // UNSIGNED-PAYLOAD: any body.
    let mut spec = Spec::new(at(T));
    spec.payload = Payload::Unsigned;
    let mut r = signed(&spec);
    assert_eq!(r.headers["x-amz-content-sha256"], "UNSIGNED-PAYLOAD");
    r.body = b"anything".to_vec();
    assert!(r.verify(&REGIONS, at(T)).unwrap().unsigned_payload);
}

#[test]
fn presigned_expiry() {
    let mut spec = Spec::new(at(T));
    spec.method = "GET".into();
    spec.path_and_query = "/v2/repo/blobs/sha256:abc?foo=bar".into();
    spec.query_form = true;
    spec.expires = Duration::from_secs(3600);
    spec.body = Vec::new();
    let r = signed(&spec);
    assert!(r.headers.get("authorization").is_none());
    let v = r.verify(&REGIONS, at(T + 3600)).unwrap();
    assert_eq!(v.location, SignatureLocation::Query);
    // Valid long after the 15-minute window, until X-Amz-Expires.
    assert!(r.verify(&REGIONS, at(T + 1800)).is_ok());
    let err = r.verify(&REGIONS, at(T + 3601)).unwrap_err();
    assert_eq!(err, SigV4Error::PresignedUrlExpired { expired_at: "20170111T214052Z".into() });
    assert_eq!(err.aws_type(), "AccessDenied");
    assert_eq!(err.message(), "Request has expired");
    assert_eq!(err.http_status(), 403);
    // Not yet current applies as for headers.
    assert!(matches!(r.verify(&REGIONS, at(T - 901)), Err(SigV4Error::SignatureNotYetCurrent { .. })));
}

fn presign_params<'a>(secret: &'a SecretKey, query: &'a str) -> Presign<'a> {
    Presign {
        method: "GET",
        host: "123456789012.dkr.ecr.us-east-1.example.com",
        path: "/v2/my%2Drepo/blobs/sha256:0123",
        query,
        access_key_id: AKID,
        secret,
        session_token: Some("tok/en+=="),
        region: "us-east-1",
        service: "ecr",
        now: at(T),
        expires_in: Duration::from_secs(600),
    }
}

#[test]
fn presign_round_trips() {
    let secret = SecretKey::new(SECRET);
    let p = presign_params(&secret, "a=1&b=x%20y");
    let query = presign(&p);
    assert!(query.starts_with("a=1&b=x%20y&X-Amz-Algorithm=AWS4-HMAC-SHA256&"), "{query}");
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("123456789012.dkr.ecr.us-east-1.example.com"));
    let body_sha256 = sha256_hex(b"whatever");
    let req = Request { method: "GET", path: p.path, query: &query, headers: &headers, body_sha256: &body_sha256 };
    let regions = ["us-east-1".to_owned()];
    let lookup = |akid: &str| (akid == AKID).then(|| SecretKey::new(SECRET));
    let v = verify(&req, "ecr", &regions, at(T + 600), lookup).unwrap();
    assert!(v.unsigned_payload);
    assert_eq!(v.session_token.as_deref(), Some("tok/en+=="));
    assert!(matches!(verify(&req, "ecr", &regions, at(T + 601), lookup), Err(SigV4Error::PresignedUrlExpired { .. })));
    let other_path = Request { path: "/v2/my%2Drepo/blobs/sha256:0124", ..req };
    assert_eq!(verify(&other_path, "ecr", &regions, at(T), lookup), Err(SigV4Error::SignatureDoesNotMatch));
}

#[test]
fn presign_matches_aws_sigv4() {
    // aws-sigv4 presigning the same request yields the same signature.
    let secret = SecretKey::new(SECRET);
    let p = presign_params(&secret, "");
    let ours = presign(&p);
    let mut spec = Spec::new(at(T));
    spec.method = "GET".into();
    spec.authority = p.host.into();
    spec.path_and_query = p.path.into();
    spec.headers = Vec::new();
    spec.body = Vec::new();
    spec.token = Some("tok/en+==".into());
    spec.query_form = true;
    spec.expires = Duration::from_secs(600);
    spec.payload = Payload::Unsigned;
    let theirs = signed(&spec);
    let sig = |q: &str| q.split('&').find_map(|kv| kv.strip_prefix("X-Amz-Signature=")).unwrap().to_owned();
    assert_eq!(sig(&ours), sig(&theirs.query));
}

#[test]
fn secret_key_debug_is_redacted() {
    let s = SecretKey::new(SECRET);
    assert!(!format!("{s:?}").contains("wJalr"));
    assert_eq!(s.expose(), SECRET);
}

#[test]
fn two_step_parse_then_verify() {
    let r = base();
    let body_sha256 = r.body_sha256();
    let req =
        Request { method: &r.method, path: &r.path, query: &r.query, headers: &r.headers, body_sha256: &body_sha256 };
    let regions = ["us-east-1".to_owned()];
    let parsed = sigv4::parse(&req, "ecr", &regions, at(T)).unwrap();
    assert_eq!(parsed.access_key_id(), AKID);
    assert_eq!(parsed.region(), "us-east-1");
    assert_eq!(parsed.session_token(), None);
    assert_eq!(parsed.location(), SignatureLocation::Header);
    assert!(parsed.verify(&req, &SecretKey::new(SECRET)).is_ok());
}
