//! Signs requests with the official `aws-sigv4` crate, to test our verifier against it.

#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SessionTokenMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use berth_auth::sigv4::{Request, SecretKey, SigV4Error, Verified, verify};
use http::{HeaderMap, HeaderValue};
use ring::digest;

pub const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
pub const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// How the body is covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// Body hash in the canonical request, no header (botocore's way).
    Hash,
    /// Body hash, also sent as `x-amz-content-sha256`.
    HashHeader,
    /// `UNSIGNED-PAYLOAD` (as a header in the header form).
    Unsigned,
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub method: String,
    /// `host` or `host:port`.
    pub authority: String,
    /// Raw path and query, e.g. `/a%20b?x=1`.
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub access_key_id: String,
    pub secret: String,
    pub token: Option<String>,
    pub exclude_token: bool,
    pub region: String,
    pub service: String,
    pub time: SystemTime,
    pub query_form: bool,
    pub expires: Duration,
    pub payload: Payload,
}

impl Spec {
    pub fn new(time: SystemTime) -> Self {
        Spec {
            method: "POST".into(),
            authority: "api.ecr.us-east-1.example.com".into(),
            path_and_query: "/".into(),
            headers: vec![
                ("content-type".into(), "application/x-amz-json-1.1".into()),
                ("x-amz-target".into(), "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories".into()),
            ],
            body: b"{}".to_vec(),
            access_key_id: AKID.into(),
            secret: SECRET.into(),
            token: None,
            exclude_token: false,
            region: "us-east-1".into(),
            service: "ecr".into(),
            time,
            query_form: false,
            expires: Duration::from_secs(900),
            payload: Payload::Hash,
        }
    }
}

/// A signed request as the server receives it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Received {
    pub fn body_sha256(&self) -> String {
        sha256_hex(&self.body)
    }

    /// Verifies with service `ecr`, the given hosted regions, and a lookup that knows only
    /// `AKID`/`SECRET`.
    pub fn verify(&self, regions: &[&str], now: SystemTime) -> Result<Verified, SigV4Error> {
        self.verify_as("ecr", regions, now, SECRET)
    }

    pub fn verify_as(
        &self,
        service: &str,
        regions: &[&str],
        now: SystemTime,
        secret: &str,
    ) -> Result<Verified, SigV4Error> {
        let body_sha256 = self.body_sha256();
        let req = Request {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            body_sha256: &body_sha256,
        };
        let regions: Vec<String> = regions.iter().map(|r| r.to_string()).collect();
        verify(&req, service, &regions, now, |akid| (akid == AKID).then(|| SecretKey::new(secret)))
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

pub fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Signs `spec` with aws-sigv4 and returns the request as a server would see it (with `host`).
/// `None` if aws-sigv4 refuses the request (e.g. a URI it cannot parse).
pub fn sign_with_aws(spec: &Spec) -> Option<Received> {
    let uri = format!("https://{}{}", spec.authority, spec.path_and_query);
    let identity: Identity =
        Credentials::new(&spec.access_key_id, &spec.secret, spec.token.clone(), None, "test").into();
    let mut settings = SigningSettings::default();
    settings.signature_location =
        if spec.query_form { SignatureLocation::QueryParams } else { SignatureLocation::Headers };
    settings.expires_in = Some(spec.expires);
    settings.payload_checksum_kind = match spec.payload {
        Payload::Hash => PayloadChecksumKind::NoHeader,
        Payload::HashHeader | Payload::Unsigned => PayloadChecksumKind::XAmzSha256,
    };
    settings.session_token_mode =
        if spec.exclude_token { SessionTokenMode::Exclude } else { SessionTokenMode::Include };
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&spec.region)
        .name(&spec.service)
        .time(spec.time)
        .settings(settings)
        .build()
        .ok()?
        .into();
    let body = match spec.payload {
        Payload::Unsigned => SignableBody::UnsignedPayload,
        _ => SignableBody::Bytes(&spec.body),
    };
    let signable = SignableRequest::new(
        &spec.method,
        uri.clone(),
        spec.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        body,
    )
    .ok()?;
    let (instructions, _) = sign(signable, &params).ok()?.into_parts();
    let mut req = http::Request::builder().method(spec.method.as_str()).uri(&uri).body(()).ok()?;
    for (k, v) in &spec.headers {
        req.headers_mut().append(http::HeaderName::from_bytes(k.as_bytes()).ok()?, HeaderValue::from_str(v).ok()?);
    }
    instructions.apply_to_request_http1x(&mut req);
    req.headers_mut().insert(http::header::HOST, HeaderValue::from_str(&spec.authority).ok()?);
    Some(Received {
        method: spec.method.clone(),
        path: req.uri().path().to_owned(),
        query: req.uri().query().unwrap_or("").to_owned(),
        headers: req.headers().clone(),
        body: spec.body.clone(),
    })
}
