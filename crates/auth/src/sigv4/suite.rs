//! AWS's published SigV4 test vectors, checked in both the header and the presigned form, and
//! reproduced by [`sign`] where the vector signs every header it sends.

use std::time::SystemTime;

use http::{HeaderMap, HeaderName, HeaderValue};
use ring::digest;

use super::canonical::{QueryParam, canonical_query, canonical_request, parse_query};
use super::{Request, SecretKey, SigV4Error, Sign, SignatureLocation, parse, sign, time, verify};

pub(super) struct Vector {
    name: &'static str,
    access_key_id: &'static str,
    secret: &'static str,
    token: Option<&'static str>,
    timestamp: &'static str,
    region: &'static str,
    service: &'static str,
    header_signed_request: &'static str,
    header_canonical_request: &'static str,
    query_signed_request: Option<&'static str>,
    query_canonical_request: Option<&'static str>,
}

include!("suite_vectors.rs");

/// A request parsed from the suite's `*.txt` form.
struct Parsed {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body_sha256: String,
}

fn parse_request(text: &str) -> Parsed {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let request_line = lines.next().unwrap();
    let mut parts = request_line.splitn(2, ' ');
    let method = parts.next().unwrap().to_owned();
    let target = parts.next().unwrap();
    let target = target.strip_suffix(" HTTP/1.1").unwrap_or(target);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        headers.append(
            HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes()).unwrap(),
            // An HTTP parser strips optional whitespace around the value, as hyper does.
            HeaderValue::from_str(value.trim_matches([' ', '\t'])).unwrap(),
        );
    }
    Parsed {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body_sha256: hex::encode(digest::digest(&digest::SHA256, body.as_bytes())),
    }
}

fn timestamp(v: &Vector) -> SystemTime {
    // "2015-08-30T12:36:00Z" -> "20150830T123600Z"
    let compact: String = v.timestamp.chars().filter(|c| *c != '-' && *c != ':').collect();
    time::from_epoch_seconds(time::parse_amz_date(&compact).unwrap())
}

fn request(p: &Parsed) -> Request<'_> {
    Request { method: &p.method, path: &p.path, query: &p.query, headers: &p.headers, body_sha256: &p.body_sha256 }
}

fn check(v: &Vector, signed: &str, canonical: &str, location: SignatureLocation) {
    let p = parse_request(signed);
    let req = request(&p);
    let now = timestamp(v);
    let regions = [v.region.to_owned()];
    let lookup = |akid: &str| (akid == v.access_key_id).then(|| SecretKey::new(v.secret));

    // Our canonical request equals AWS's.
    let parsed = parse(&req, v.service, &regions, now).unwrap_or_else(|e| panic!("{}: {e}", v.name));
    assert_eq!(parsed.location(), location);
    let params = parse_query(&p.query);
    let not_sig = |q: &&QueryParam| q.name != b"X-Amz-Signature";
    let query = canonical_query(params.iter().filter(not_sig));
    let without_token = canonical_query(params.iter().filter(not_sig).filter(|q| q.name != b"X-Amz-Security-Token"));
    let build = |q: &str| {
        let creq =
            canonical_request(&p.method, &p.path, q, &p.headers, &parsed.signed_headers, &p.body_sha256).unwrap();
        String::from_utf8(creq).unwrap()
    };
    let ours = build(&query);
    let ours_without_token = build(&without_token);
    assert!(
        ours == canonical || ours_without_token == canonical,
        "{} ({location:?}) canonical request differs:\nours:\n{ours}\nAWS:\n{canonical}",
        v.name
    );

    // And the signature verifies.
    let verified =
        verify(&req, v.service, &regions, now, lookup).unwrap_or_else(|e| panic!("{} ({location:?}): {e}", v.name));
    assert_eq!(verified.access_key_id, v.access_key_id);
    assert_eq!(verified.region, v.region);
    assert_eq!(verified.service, v.service);
    assert_eq!(verified.location, location);
    assert_eq!(verified.session_token.as_deref(), v.token);

    // With the wrong secret it does not.
    let wrong =
        verify(&req, v.service, &regions, now, |_| Some(SecretKey::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEz")));
    assert_eq!(wrong, Err(SigV4Error::SignatureDoesNotMatch), "{}", v.name);
}

#[test]
fn aws_test_suite_header_form() {
    assert!(VECTORS.len() >= 25);
    for v in VECTORS {
        check(v, v.header_signed_request, v.header_canonical_request, SignatureLocation::Header);
    }
}

#[test]
fn aws_test_suite_query_form() {
    let mut n = 0;
    for v in VECTORS {
        if let (Some(signed), Some(canonical)) = (v.query_signed_request, v.query_canonical_request) {
            check(v, signed, canonical, SignatureLocation::Query);
            n += 1;
        }
    }
    assert!(n >= 25);
}

/// [`sign`] signs every header it is given: for each vector whose `SignedHeaders` are exactly the
/// headers it sends, signing the request without its `Authorization` reproduces AWS's header.
#[test]
fn sign_reproduces_aws_test_suite() {
    let mut n = 0;
    for v in VECTORS {
        let p = parse_request(v.header_signed_request);
        let auth = p.headers["authorization"].to_str().unwrap().to_owned();
        let signed: Vec<&str> =
            auth.split("SignedHeaders=").nth(1).unwrap().split(',').next().unwrap().split(';').collect();
        let mut sent: Vec<&str> = p.headers.keys().map(|k| k.as_str()).filter(|k| *k != "authorization").collect();
        sent.sort_unstable();
        if sent != signed || !signed.contains(&"x-amz-date") {
            continue;
        }
        let mut headers = p.headers.clone();
        for name in ["authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"] {
            headers.remove(name);
        }
        let content_sha = p.headers.get("x-amz-content-sha256").map(|h| h.to_str().unwrap().to_owned());
        let secret = SecretKey::new(v.secret);
        let s = Sign {
            method: &p.method,
            path: &p.path,
            query: &p.query,
            body_sha256: content_sha.as_deref().unwrap_or(&p.body_sha256),
            access_key_id: v.access_key_id,
            secret: &secret,
            session_token: v.token,
            region: v.region,
            service: v.service,
            now: timestamp(v),
            content_sha256_header: content_sha.is_some(),
        };
        sign(&s, &mut headers).unwrap();
        let ours = headers["authorization"].to_str().unwrap();
        // AWS's header has ", " between components; so does ours.
        assert_eq!(ours, auth, "{}", v.name);
        n += 1;
    }
    // get-vanilla, get-vanilla-with-session-token, post-sts-header-before,
    // post-x-www-form-urlencoded, ... (most of the suite signs everything it sends).
    assert!(n >= 20, "only {n} vectors fit");
}
