//! Property test with the official `aws-sigv4` signer as the oracle: whatever it signs for
//! service `ecr` verifies, and changing any one signed part of the request makes verification
//! fail.

mod common;

use std::time::Duration;

use berth_auth::sigv4::SignatureLocation;
use common::{AKID, Payload, Received, Spec, at, sign_with_aws};
use http::HeaderValue;
use proptest::prelude::*;
use proptest::sample::Index;

const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-south-2"];

fn pct(bytes: Vec<u8>) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9._~-]{1,8}",
        2 => "[A-Za-z0-9!$&'()*+,;=:@]{1,6}",
        2 => prop::collection::vec(any::<u8>(), 1..4).prop_map(pct),
        1 => Just(String::new()),
        1 => Just(".".to_owned()),
        1 => Just("..".to_owned()),
    ]
}

fn path() -> impl Strategy<Value = String> {
    (prop::collection::vec(segment(), 0..5), any::<bool>()).prop_map(|(segs, trailing)| {
        let mut p = format!("/{}", segs.join("/"));
        if trailing && !p.ends_with('/') {
            p.push('/');
        }
        p
    })
}

fn query_part() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9._~-]{1,6}",
        1 => "[a-z]{1,3}\\+[a-z]{1,3}",
        2 => prop::collection::vec(any::<u8>(), 1..4).prop_map(pct),
        1 => Just(String::new()),
    ]
}

fn query() -> impl Strategy<Value = String> {
    prop::collection::vec((query_part(), query_part(), any::<bool>()), 0..4).prop_map(|ps| {
        ps.into_iter()
            .filter(|(k, _, _)| !k.is_empty())
            .map(|(k, v, eq)| if eq || !v.is_empty() { format!("{k}={v}") } else { k })
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((0..3u8, "[ -~\t]{0,12}"), 0..4)
        .prop_map(|hs| hs.into_iter().map(|(i, v)| (format!("x-test-{i}"), v)).collect())
}

#[derive(Debug, Clone)]
struct Input {
    spec: Spec,
    now_offset: i64,
    picks: Vec<Index>,
}

fn input() -> impl Strategy<Value = Input> {
    (
        (
            prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"]),
            prop::sample::select(vec!["ecr.example.com", "localhost:5000", "10.1.2.3:8443"]),
            path(),
            query(),
            headers(),
            prop::collection::vec(any::<u8>(), 0..64),
        ),
        (
            prop::option::of("[A-Za-z0-9/+=]{8,40}"),
            any::<bool>(),
            prop::sample::select(REGIONS.to_vec()),
            1_000_000_000u64..2_000_000_000,
            any::<bool>(),
            60u64..7200,
            prop::sample::select(vec![Payload::Hash, Payload::HashHeader, Payload::Unsigned]),
            any::<Index>(),
            prop::collection::vec(any::<Index>(), 8),
        ),
    )
        .prop_map(
            |(
                (method, authority, path, query, headers, body),
                (token, exclude_token, region, time, query_form, expires, payload, off, picks),
            )| {
                let path_and_query = if query.is_empty() { path } else { format!("{path}?{query}") };
                let mut spec = Spec::new(at(time));
                spec.method = method.to_owned();
                spec.authority = authority.to_owned();
                spec.path_and_query = path_and_query;
                spec.headers = headers;
                spec.body = body;
                spec.token = token;
                spec.exclude_token = exclude_token;
                spec.region = region.to_owned();
                spec.query_form = query_form;
                spec.expires = Duration::from_secs(expires);
                spec.payload = payload;
                // Header form: within 15 minutes either way. Query form: up to 15 minutes early,
                // or any time until expiry.
                let span = if query_form { 900 + expires } else { 1800 };
                let now_offset = off.index(span as usize + 1) as i64 - 900;
                Input { spec, now_offset, picks }
            },
        )
}

/// Replaces the byte at `i` of `s` with a letter that is not a hex digit and differs from it.
fn replace_byte(s: &str, i: usize) -> String {
    let mut b = s.as_bytes().to_vec();
    b[i] = if b[i] == b'g' { b'z' } else { b'g' };
    String::from_utf8(b).unwrap()
}

/// The signed header names of a received request.
fn signed_headers(r: &Received) -> Vec<String> {
    if let Some(auth) = r.headers.get("authorization") {
        let auth = auth.to_str().unwrap();
        let sh = auth.split("SignedHeaders=").nth(1).unwrap();
        let sh = sh.split(',').next().unwrap();
        sh.split(';').map(str::to_owned).collect()
    } else {
        let sh = r.query.split('&').find_map(|p| p.strip_prefix("X-Amz-SignedHeaders=")).unwrap();
        sh.replace("%3B", ";").split(';').map(str::to_owned).collect()
    }
}

/// Byte range of the value of query parameter `name` in the raw query.
fn param_range(query: &str, name: &str) -> Option<std::ops::Range<usize>> {
    let mut start = 0;
    for piece in query.split('&') {
        if let Some(v) = piece.strip_prefix(&format!("{name}=")) {
            let s = start + name.len() + 1;
            return Some(s..s + v.len());
        }
        start += piece.len() + 1;
    }
    None
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|s| s == "." || s == "..")
}

/// 400 cases by default; `PROPTEST_CASES` overrides.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn aws_signed_requests_verify_and_any_change_fails(input in input()) {
        let spec = &input.spec;
        let signed = sign_with_aws(spec);
        prop_assume!(signed.is_some());
        let r = signed.unwrap();
        let now = if input.now_offset >= 0 {
            spec.time + Duration::from_secs(input.now_offset as u64)
        } else {
            spec.time - Duration::from_secs(input.now_offset.unsigned_abs())
        };

        // It verifies.
        let v = r.verify(&REGIONS, now);
        prop_assert!(v.is_ok(), "{v:?}\n{r:#?}");
        let v = v.unwrap();
        prop_assert_eq!(&v.access_key_id, AKID);
        prop_assert_eq!(&v.region, &spec.region);
        prop_assert_eq!(&v.service, "ecr");
        prop_assert_eq!(&v.session_token, &spec.token);
        let want_location = if spec.query_form { SignatureLocation::Query } else { SignatureLocation::Header };
        prop_assert_eq!(v.location, want_location);
        prop_assert_eq!(v.unsigned_payload, spec.payload == Payload::Unsigned);

        // Wrong secret, unknown region, other service.
        prop_assert!(r.verify_as("ecr", &REGIONS, now, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEz").is_err());
        prop_assert!(r.verify(&["us-west-2"], now).is_err());
        prop_assert!(r.verify_as("s3", &REGIONS, now, common::SECRET).is_err());

        let p = &input.picks;
        let must_fail = |m: &Received, what: &str| -> Result<(), TestCaseError> {
            let res = m.verify(&REGIONS, now);
            prop_assert!(res.is_err(), "{what} still verifies: {m:#?}");
            Ok(())
        };

        // Method.
        let mut m = r.clone();
        m.method = if r.method == "GET" { "PUT".into() } else { "GET".into() };
        must_fail(&m, "method")?;

        // One byte of the path (dot segments may legitimately swallow a change).
        if !has_dot_segment(&r.path) {
            let positions: Vec<usize> = r.path.bytes().enumerate().filter(|(_, b)| *b != b'/').map(|(i, _)| i).collect();
            if !positions.is_empty() {
                let mut m = r.clone();
                m.path = replace_byte(&r.path, positions[p[0].index(positions.len())]);
                must_fail(&m, "path")?;
            }
        }

        // One byte of the query (not an unsigned session token).
        if !r.query.is_empty() {
            let token_range = if spec.exclude_token && spec.query_form {
                param_range(&r.query, "X-Amz-Security-Token")
            } else {
                None
            };
            let positions: Vec<usize> = (0..r.query.len())
                .filter(|i| token_range.as_ref().is_none_or(|t| !t.contains(i)))
                .collect();
            if !positions.is_empty() {
                let mut m = r.clone();
                m.query = replace_byte(&r.query, positions[p[1].index(positions.len())]);
                must_fail(&m, "query")?;
            }
        }

        // One byte of a signed header value (or an empty one made non-empty).
        let names = signed_headers(&r);
        let name = &names[p[2].index(names.len())];
        let values: Vec<HeaderValue> = r.headers.get_all(name.as_str()).iter().cloned().collect();
        prop_assert!(!values.is_empty(), "signed header {name} missing");
        let which = p[3].index(values.len());
        let old = values[which].to_str().unwrap().to_owned();
        let new = if old.is_empty() { "g".to_owned() } else { replace_byte(&old, p[4].index(old.len())) };
        let mut m = r.clone();
        m.headers.remove(name.as_str());
        for (i, v) in values.iter().enumerate() {
            let v = if i == which { HeaderValue::from_str(&new).unwrap() } else { v.clone() };
            m.headers.append(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), v);
        }
        must_fail(&m, &format!("header {name}"))?;

        // The body (unless the signer left it unsigned).
        if spec.payload != Payload::Unsigned {
            let mut m = r.clone();
            if m.body.is_empty() {
                m.body.push(0);
            } else {
                let i = p[5].index(m.body.len());
                m.body[i] ^= 0x01;
            }
            must_fail(&m, "body")?;
        }

        // The signature.
        let mut m = r.clone();
        if let Some(auth) = r.headers.get("authorization") {
            let auth = auth.to_str().unwrap();
            let start = auth.find("Signature=").unwrap() + "Signature=".len();
            let i = start + p[6].index(auth.len() - start);
            let mut b = auth.as_bytes().to_vec();
            b[i] = if b[i] == b'0' { b'1' } else { b'0' };
            m.headers.insert("authorization", HeaderValue::from_bytes(&b).unwrap());
        } else {
            let range = param_range(&r.query, "X-Amz-Signature").unwrap();
            let i = range.start + p[6].index(range.len());
            let mut b = r.query.as_bytes().to_vec();
            b[i] = if b[i] == b'0' { b'1' } else { b'0' };
            m.query = String::from_utf8(b).unwrap();
        }
        must_fail(&m, "signature")?;

        // The date, by one second.
        let bump = |d: &str| {
            let mut b = d.as_bytes().to_vec();
            let i = b.len() - 2; // last seconds digit, before 'Z'
            b[i] = if b[i] == b'9' { b'8' } else { b[i] + 1 };
            String::from_utf8(b).unwrap()
        };
        let mut m = r.clone();
        if let Some(d) = r.headers.get("x-amz-date") {
            let d = bump(d.to_str().unwrap());
            m.headers.insert("x-amz-date", HeaderValue::from_str(&d).unwrap());
        } else {
            let range = param_range(&r.query, "X-Amz-Date").unwrap();
            m.query = format!("{}{}{}", &r.query[..range.start], bump(&r.query[range.clone()]), &r.query[range.end..]);
        }
        must_fail(&m, "date")?;
    }
}
