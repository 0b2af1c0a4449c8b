//! AWS Signature Version 4 verification (and presigning), for the ECR control plane and for
//! presigned layer URLs; and signing in the header form ([`sign`]), for Berth's own clients
//! (the credential helpers).
//!
//! # Forms accepted
//! - **Header**: `Authorization: AWS4-HMAC-SHA256 Credential=AKID/yyyymmdd/region/service/aws4_request,
//!   SignedHeaders=a;b;c, Signature=<hex>` with the request time in `X-Amz-Date` (or, failing
//!   that, an IMF-fixdate `Date` header). `X-Amz-Security-Token` may be signed or not.
//! - **Query (presigned)**: `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
//!   `X-Amz-SignedHeaders`, `X-Amz-Signature`, optional `X-Amz-Expires` (1..=604800 s) and
//!   `X-Amz-Security-Token`.
//!
//! # Canonicalization
//! As AWS specifies for services other than S3 (see `canonical.rs`): the raw path is normalized
//! and URI-encoded once more, the query is decoded, re-encoded and sorted, signed header values
//! are trimmed with inner runs of spaces collapsed and repeats joined with `,`.
//!
//! # Payload hash
//! The caller hashes the body and passes the lowercase hex SHA-256. If the request carries
//! `x-amz-content-sha256`, that value goes into the canonical request: `UNSIGNED-PAYLOAD` leaves
//! the body unauthenticated (the signer's choice), a hex digest must equal the caller's hash.
//! For the query form without that header, a signature over either the body hash or
//! `UNSIGNED-PAYLOAD` (the S3 presigning convention) is accepted.
//!
//! # Time
//! Header form: the request time must be within 15 minutes of `now` either way. Query form with
//! `X-Amz-Expires`: `now` must not be past `X-Amz-Date + X-Amz-Expires`, and the request time not
//! more than 15 minutes ahead of `now`; without `X-Amz-Expires`, as the header form.
//!
//! # Order of checks (and so which error wins)
//! form detection ([`SigV4Error::MissingAuthenticationToken`]) → syntax
//! ([`SigV4Error::IncompleteSignature`]) → credential scope
//! ([`SigV4Error::InvalidCredentialScope`]) → time → secret lookup
//! ([`SigV4Error::UnrecognizedClient`]) → signature ([`SigV4Error::SignatureDoesNotMatch`]) →
//! body hash ([`SigV4Error::ContentSha256Mismatch`]).
//!
//! # Using it
//! [`verify`] does everything with a synchronous secret lookup. When the lookup is async (a DB
//! query), call [`parse`] first, look up [`ParsedSignature::access_key_id`], then
//! [`ParsedSignature::verify`]. Session tokens are not validated here: the caller checks
//! [`ParsedSignature::session_token`] / [`Verified::session_token`] against the credential and
//! answers [`SigV4Error::UnrecognizedClient`] if it is wrong.
//!
//! HTTP/2 requests carry `:authority` instead of `Host`; the caller must put it into the header
//! map as `host` before verifying.

mod canonical;
mod error;
mod time;

#[cfg(test)]
mod suite;

use std::fmt;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use ring::{digest, hmac};
use zeroize::Zeroizing;

pub use error::SigV4Error;

use canonical::{QueryParam, canonical_query, canonical_request, parse_query, uri_encode};

/// The only signing algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The `x-amz-content-sha256` value that leaves the body out of the signature.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Hex SHA-256 of the empty body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// How far the request time may be from the server clock (either way).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// The longest `X-Amz-Expires` accepted (7 days), as AWS.
pub const MAX_PRESIGN_EXPIRES: Duration = Duration::from_secs(604_800);

const TERMINATOR: &str = "aws4_request";
const SKEW_SECS: i64 = MAX_CLOCK_SKEW.as_secs() as i64;

/// A secret access key. Zeroed on drop; `Debug` never prints it.
#[derive(Clone)]
pub struct SecretKey(Zeroizing<String>);

impl SecretKey {
    /// Wraps a secret access key.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(Zeroizing::new(secret.into()))
    }

    /// The secret itself, for signing or for sealing it at rest. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// The parts of an HTTP request that SigV4 covers, as received. `Debug` shows the method, path
/// and header names only (the query and headers may carry a session token).
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// The method, as sent (`GET`, `POST`, ...).
    pub method: &'a str,
    /// The path exactly as received, still percent-encoded (`http::Uri::path()`).
    pub path: &'a str,
    /// The raw query string without `?`, still percent-encoded; `""` when there is none.
    pub query: &'a str,
    /// All request headers; must include `host` (for HTTP/2, copy `:authority` into it).
    pub headers: &'a HeaderMap,
    /// Lowercase hex SHA-256 of the body as received ([`EMPTY_SHA256`] for no body).
    pub body_sha256: &'a str,
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_sha256", &self.body_sha256)
            .finish_non_exhaustive()
    }
}

/// Where the signature was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureLocation {
    /// The `Authorization` header.
    Header,
    /// Presigned query parameters.
    Query,
}

/// A request whose signature checked out. `Debug` redacts the session token.
#[derive(Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key id from the credential scope.
    pub access_key_id: String,
    /// The region from the credential scope (one of the hosted regions).
    pub region: String,
    /// The service from the credential scope (the expected service).
    pub service: String,
    /// The date from the credential scope, `YYYYMMDD`.
    pub date: String,
    /// The request time (`X-Amz-Date`).
    pub signed_at: SystemTime,
    /// `X-Amz-Security-Token` (header or query), signed or not; the caller must validate it.
    pub session_token: Option<String>,
    /// Header or presigned query.
    pub location: SignatureLocation,
    /// True when the signature does not cover the body (`UNSIGNED-PAYLOAD`).
    pub unsigned_payload: bool,
}

fn redacted(token: &Option<String>) -> Option<&'static str> {
    token.as_ref().map(|_| "<redacted>")
}

impl fmt::Debug for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .field("service", &self.service)
            .field("date", &self.date)
            .field("signed_at", &self.signed_at)
            .field("session_token", &redacted(&self.session_token))
            .field("location", &self.location)
            .field("unsigned_payload", &self.unsigned_payload)
            .finish()
    }
}

/// A syntactically valid, in-scope, in-time signature whose secret has not been checked yet.
/// Made by [`parse`]; finish with [`ParsedSignature::verify`] on the same request. `Debug`
/// redacts the session token.
#[derive(Clone)]
pub struct ParsedSignature {
    location: SignatureLocation,
    access_key_id: String,
    date: String,
    region: String,
    service: String,
    amz_date: String,
    signed_at: i64,
    signed_headers: String,
    signature: String,
    session_token: Option<String>,
}

impl fmt::Debug for ParsedSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedSignature")
            .field("location", &self.location)
            .field("access_key_id", &self.access_key_id)
            .field("date", &self.date)
            .field("region", &self.region)
            .field("service", &self.service)
            .field("amz_date", &self.amz_date)
            .field("signed_headers", &self.signed_headers)
            .field("session_token", &redacted(&self.session_token))
            .finish_non_exhaustive()
    }
}

impl ParsedSignature {
    /// The access key id to look the secret up by.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The region of the credential scope.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Whether `name` (lowercase) is one of the signed headers.
    pub fn signs_header(&self, name: &str) -> bool {
        self.signed_headers.split(';').any(|h| h.eq_ignore_ascii_case(name))
    }

    /// `X-Amz-Security-Token`, if the request has one.
    pub fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref()
    }

    /// Header or query form.
    pub fn location(&self) -> SignatureLocation {
        self.location
    }

    /// Checks the signature of `req` (the same request given to [`parse`]) with `secret`, the
    /// secret access key of [`ParsedSignature::access_key_id`]. Constant-time comparison.
    ///
    /// Errors: [`SigV4Error::SignatureDoesNotMatch`] (also when a signed header is absent),
    /// [`SigV4Error::ContentSha256Mismatch`].
    pub fn verify(self, req: &Request<'_>, secret: &SecretKey) -> Result<Verified, SigV4Error> {
        let content_sha =
            req.headers.get("x-amz-content-sha256").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        // The payload hashes to try, and whether the one that matched must equal the body hash.
        let mut payloads: Vec<(&str, bool)> = Vec::with_capacity(2);
        match content_sha.as_deref() {
            Some(UNSIGNED_PAYLOAD) => payloads.push((UNSIGNED_PAYLOAD, false)),
            Some(v) => payloads.push((v, true)),
            None => {
                payloads.push((req.body_sha256, false));
                if self.location == SignatureLocation::Query {
                    payloads.push((UNSIGNED_PAYLOAD, false));
                }
            }
        }

        let params = parse_query(req.query);
        let mut queries = Vec::with_capacity(2);
        match self.location {
            SignatureLocation::Header => queries.push(canonical_query(params.iter())),
            SignatureLocation::Query => {
                let not_sig = |p: &&QueryParam| p.name != b"X-Amz-Signature";
                queries.push(canonical_query(params.iter().filter(not_sig)));
                // Some signers add the session token after signing (SessionTokenMode::Exclude).
                // The token is validated by the caller, so leaving it out is safe.
                if params.iter().any(|p| p.name == b"X-Amz-Security-Token") {
                    queries.push(canonical_query(
                        params.iter().filter(not_sig).filter(|p| p.name != b"X-Amz-Security-Token"),
                    ));
                }
            }
        }

        let key = signing_key(secret, &self.date, &self.region, &self.service);
        let scope = self.scope();
        let mut matched = None;
        for query in &queries {
            for &(payload, must_match_body) in &payloads {
                let creq = canonical_request(req.method, req.path, query, req.headers, &self.signed_headers, payload)
                    .map_err(|_| SigV4Error::SignatureDoesNotMatch)?;
                let sts = string_to_sign(&self.amz_date, &scope, &creq);
                let computed = hex::encode(hmac::sign(&key, &sts).as_ref());
                let equal = crate::constant_time_eq(computed.as_bytes(), self.signature.as_bytes());
                if equal && matched.is_none() {
                    matched = Some((payload, must_match_body));
                }
            }
        }
        let Some((payload, must_match_body)) = matched else {
            return Err(SigV4Error::SignatureDoesNotMatch);
        };
        if must_match_body && !payload.eq_ignore_ascii_case(req.body_sha256) {
            return Err(SigV4Error::ContentSha256Mismatch);
        }
        Ok(Verified {
            unsigned_payload: payload == UNSIGNED_PAYLOAD,
            access_key_id: self.access_key_id,
            region: self.region,
            service: self.service,
            date: self.date,
            signed_at: time::from_epoch_seconds(self.signed_at),
            session_token: self.session_token,
            location: self.location,
        })
    }

    fn scope(&self) -> String {
        format!("{}/{}/{}/{TERMINATOR}", self.date, self.region, self.service)
    }
}

/// Verifies the SigV4 signature of `req` in one step.
///
/// `service` is the signing name the request must be scoped to (e.g. `"ecr"`), `regions` the
/// regions this deployment hosts, `now` the server clock, `lookup` returns the secret access
/// key for an access key id (`None` if unknown → [`SigV4Error::UnrecognizedClient`]). `lookup`
/// is called at most once, after syntax, scope and time checks pass.
pub fn verify<F>(
    req: &Request<'_>,
    service: &str,
    regions: &[String],
    now: SystemTime,
    lookup: F,
) -> Result<Verified, SigV4Error>
where
    F: FnOnce(&str) -> Option<SecretKey>,
{
    let parsed = parse(req, service, regions, now)?;
    let secret = lookup(parsed.access_key_id()).ok_or(SigV4Error::UnrecognizedClient)?;
    parsed.verify(req, &secret)
}

/// Parses and checks everything that needs no secret: form, syntax, credential scope (service
/// must equal `service`, region must be in `regions`) and time against `now`.
///
/// Errors: every [`SigV4Error`] variant except `UnrecognizedClient`, `SignatureDoesNotMatch` and
/// `ContentSha256Mismatch`.
///
/// Does not look at [`Request::body_sha256`]: a server can refuse a request without valid
/// credentials before it reads the body (pass any value, e.g. [`EMPTY_SHA256`], then give
/// [`ParsedSignature::verify`] the real hash).
pub fn parse(
    req: &Request<'_>,
    service: &str,
    regions: &[String],
    now: SystemTime,
) -> Result<ParsedSignature, SigV4Error> {
    let now = time::epoch_seconds(now);
    if let Some(auth) = req.headers.get(http::header::AUTHORIZATION) {
        let auth = String::from_utf8_lossy(auth.as_bytes());
        return parse_header_form(&auth, req, service, regions, now);
    }
    let params = parse_query(req.query);
    let is_presigned = params
        .iter()
        .any(|p| matches!(p.name.as_slice(), b"X-Amz-Algorithm" | b"X-Amz-Credential" | b"X-Amz-Signature"));
    if is_presigned {
        parse_query_form(&params, service, regions, now)
    } else {
        Err(SigV4Error::MissingAuthenticationToken)
    }
}

fn incomplete(msg: impl Into<String>) -> SigV4Error {
    SigV4Error::IncompleteSignature(msg.into())
}

fn unsupported_algorithm() -> SigV4Error {
    incomplete(
        "The authorization mechanism you have provided is not supported. Please use \
         AWS4-HMAC-SHA256.",
    )
}

fn bad_iso_date(value: &str) -> SigV4Error {
    incomplete(format!(
        "Date must be in ISO-8601 'basic format'. Got '{value}'. See http://en.wikipedia.org/wiki/ISO_8601"
    ))
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn parse_header_form(
    auth: &str,
    req: &Request<'_>,
    service: &str,
    regions: &[String],
    now: i64,
) -> Result<ParsedSignature, SigV4Error> {
    let (algorithm, rest) = auth.trim().split_once(|c: char| c.is_ascii_whitespace()).unwrap_or((auth.trim(), ""));
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for token in rest.split(|c: char| c == ',' || c.is_ascii_whitespace()).filter(|t| !t.is_empty()) {
        let Some((key, value)) = token.split_once('=') else {
            return Err(incomplete(format!(
                "'{token}' not a valid key=value pair (missing equal-sign) in Authorization header: '{auth}'."
            )));
        };
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => continue,
        };
        slot.get_or_insert(value);
    }
    let amz_date = header_str(req.headers, "x-amz-date");
    let http_date = header_str(req.headers, "date");

    let mut missing = String::new();
    for (name, present) in [
        ("Credential", credential.is_some()),
        ("Signature", signature.is_some()),
        ("SignedHeaders", signed_headers.is_some()),
    ] {
        if !present {
            missing.push_str(&format!("Authorization header requires '{name}' parameter. "));
        }
    }
    if amz_date.is_none() && http_date.is_none() {
        missing.push_str("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ");
    }
    if !missing.is_empty() {
        return Err(incomplete(format!("{missing}Authorization={auth}")));
    }
    if algorithm != ALGORITHM {
        return Err(unsupported_algorithm());
    }
    let signed_at = match (&amz_date, &http_date) {
        (Some(d), _) => time::parse_amz_date(d).ok_or_else(|| bad_iso_date(d))?,
        (None, Some(d)) => time::parse_http_date(d).ok_or_else(|| bad_iso_date(d))?,
        (None, None) => unreachable!("checked above"),
    };
    let fields = Fields {
        location: SignatureLocation::Header,
        credential: credential.unwrap_or_default(),
        signed_headers: signed_headers.unwrap_or_default(),
        signature: signature.unwrap_or_default(),
        signed_at,
        expires: None,
        session_token: header_str(req.headers, "x-amz-security-token"),
    };
    finish_parse(fields, service, regions, now)
}

fn parse_query_form(
    params: &[QueryParam],
    service: &str,
    regions: &[String],
    now: i64,
) -> Result<ParsedSignature, SigV4Error> {
    let get = |name: &str| {
        params.iter().find(|p| p.name == name.as_bytes()).map(|p| String::from_utf8_lossy(&p.value).into_owned())
    };
    let (Some(algorithm), Some(credential), Some(signature), Some(date), Some(signed_headers)) = (
        get("X-Amz-Algorithm"),
        get("X-Amz-Credential"),
        get("X-Amz-Signature"),
        get("X-Amz-Date"),
        get("X-Amz-SignedHeaders"),
    ) else {
        return Err(incomplete(
            "AWS query-string parameters must include 'X-Amz-Algorithm', 'X-Amz-Credential', \
             'X-Amz-Signature', 'X-Amz-Date', 'X-Amz-SignedHeaders'. Re-examine the query-string \
             parameters.",
        ));
    };
    if algorithm != ALGORITHM {
        return Err(unsupported_algorithm());
    }
    let signed_at = time::parse_amz_date(&date).ok_or_else(|| bad_iso_date(&date))?;
    let expires = match get("X-Amz-Expires") {
        None => None,
        Some(e) => Some(parse_expires(&e)?),
    };
    let fields = Fields {
        location: SignatureLocation::Query,
        credential: &credential,
        signed_headers: &signed_headers,
        signature: &signature,
        signed_at,
        expires,
        session_token: get("X-Amz-Security-Token"),
    };
    finish_parse(fields, service, regions, now)
}

fn parse_expires(value: &str) -> Result<i64, SigV4Error> {
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(neg) = value.strip_prefix('-')
        && all_digits(neg)
    {
        return Err(incomplete("X-Amz-Expires must be non-negative"));
    }
    if !all_digits(value) {
        return Err(incomplete("X-Amz-Expires should be a number"));
    }
    match value.parse::<u64>() {
        Ok(n) if n <= MAX_PRESIGN_EXPIRES.as_secs() => Ok(n as i64),
        _ => Err(incomplete("X-Amz-Expires must be less than a week (in seconds) that is 604800")),
    }
}

struct Fields<'a> {
    location: SignatureLocation,
    credential: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
    signed_at: i64,
    expires: Option<i64>,
    session_token: Option<String>,
}

fn finish_parse(f: Fields<'_>, service: &str, regions: &[String], now: i64) -> Result<ParsedSignature, SigV4Error> {
    let parts: Vec<&str> = f.credential.split('/').collect();
    let [access_key_id, date, region, scope_service, terminator] = parts[..] else {
        return Err(incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{}'",
            f.credential
        )));
    };
    if !f.signed_headers.split(';').any(|h| h.eq_ignore_ascii_case("host")) {
        return Err(incomplete("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."));
    }

    let amz_date = time::format_amz_date(f.signed_at);
    if terminator != TERMINATOR {
        return Err(SigV4Error::InvalidCredentialScope(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{terminator}'. "
        )));
    }
    if date != &amz_date[..8] {
        return Err(SigV4Error::InvalidCredentialScope(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{date}' != '{}', from '{amz_date}'.",
            &amz_date[..8]
        )));
    }
    if !regions.iter().any(|r| r == region) {
        return Err(SigV4Error::InvalidCredentialScope(format!(
            "Credential should be scoped to a valid region, not '{region}'. "
        )));
    }
    if scope_service != service {
        return Err(SigV4Error::InvalidCredentialScope(format!(
            "Credential should be scoped to correct service: '{service}'. "
        )));
    }

    if f.signed_at > now + SKEW_SECS {
        return Err(SigV4Error::SignatureNotYetCurrent {
            request_time: amz_date,
            latest: time::format_amz_date(now + SKEW_SECS),
            now: time::format_amz_date(now),
        });
    }
    match f.expires {
        Some(expires) => {
            if now > f.signed_at + expires {
                return Err(SigV4Error::PresignedUrlExpired {
                    expired_at: time::format_amz_date(f.signed_at + expires),
                });
            }
        }
        None => {
            if f.signed_at < now - SKEW_SECS {
                return Err(SigV4Error::SignatureExpired {
                    request_time: amz_date,
                    earliest: time::format_amz_date(now - SKEW_SECS),
                    now: time::format_amz_date(now),
                });
            }
        }
    }

    Ok(ParsedSignature {
        location: f.location,
        access_key_id: access_key_id.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: scope_service.to_owned(),
        amz_date,
        signed_at: f.signed_at,
        signed_headers: f.signed_headers.to_owned(),
        signature: f.signature.to_owned(),
        session_token: f.session_token,
    })
}

/// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
fn signing_key(secret: &SecretKey, date: &str, region: &str, service: &str) -> hmac::Key {
    let mut k_secret = Zeroizing::new(Vec::with_capacity(4 + secret.expose().len()));
    k_secret.extend_from_slice(b"AWS4");
    k_secret.extend_from_slice(secret.expose().as_bytes());
    let mut key = hmac::Key::new(hmac::HMAC_SHA256, &k_secret);
    for part in [date, region, service, TERMINATOR] {
        let tag = hmac::sign(&key, part.as_bytes());
        key = hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref());
    }
    key
}

fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &[u8]) -> Vec<u8> {
    let hash = hex::encode(digest::digest(&digest::SHA256, canonical_request));
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{hash}").into_bytes()
}

/// What to presign. See [`presign`]. `Debug` redacts the secret and the session token.
#[derive(Clone, Copy)]
pub struct Presign<'a> {
    /// The method the URL is for.
    pub method: &'a str,
    /// The `Host` the request will carry (with `:port` when not the scheme's default); must be
    /// a valid header value, or the URL will not verify.
    pub host: &'a str,
    /// The path as it will be sent (percent-encoded).
    pub path: &'a str,
    /// Existing raw query (without `?`), kept as is; `""` for none.
    pub query: &'a str,
    /// The access key id to sign as.
    pub access_key_id: &'a str,
    /// Its secret.
    pub secret: &'a SecretKey,
    /// Session token to include (signed) as `X-Amz-Security-Token`.
    pub session_token: Option<&'a str>,
    /// Region of the credential scope.
    pub region: &'a str,
    /// Service of the credential scope.
    pub service: &'a str,
    /// Signing time.
    pub now: SystemTime,
    /// Validity; clamped to 1 s ..= [`MAX_PRESIGN_EXPIRES`].
    pub expires_in: Duration,
}

impl fmt::Debug for Presign<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presign")
            .field("method", &self.method)
            .field("host", &self.host)
            .field("path", &self.path)
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .field("service", &self.service)
            .field("now", &self.now)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Presigns a URL: returns the full query string (without `?`) to send with `p.path` — the
/// original query followed by the `X-Amz-*` parameters. Signs `host` only, with
/// `UNSIGNED-PAYLOAD`, so [`verify`] accepts the request with any body until `now + expires_in`.
pub fn presign(p: &Presign<'_>) -> String {
    let now = time::epoch_seconds(p.now);
    let amz_date = time::format_amz_date(now);
    let date = &amz_date[..8];
    let expires = p.expires_in.as_secs().clamp(1, MAX_PRESIGN_EXPIRES.as_secs());
    let credential = format!("{}/{date}/{}/{}/{TERMINATOR}", p.access_key_id, p.region, p.service);
    let mut added: Vec<(&str, String)> = vec![
        ("X-Amz-Algorithm", ALGORITHM.to_owned()),
        ("X-Amz-Credential", credential),
        ("X-Amz-Date", amz_date.clone()),
        ("X-Amz-Expires", expires.to_string()),
        ("X-Amz-SignedHeaders", "host".to_owned()),
    ];
    if let Some(token) = p.session_token {
        added.push(("X-Amz-Security-Token", token.to_owned()));
    }
    let mut params = parse_query(p.query);
    params.extend(added.iter().map(|(n, v)| QueryParam { name: n.as_bytes().to_vec(), value: v.as_bytes().to_vec() }));
    let mut headers = HeaderMap::new();
    let host = http::HeaderValue::from_str(p.host).unwrap_or_else(|_| http::HeaderValue::from_static(""));
    headers.insert(http::header::HOST, host);
    let creq = canonical_request(p.method, p.path, &canonical_query(params.iter()), &headers, "host", UNSIGNED_PAYLOAD)
        .expect("host is present");
    let scope = format!("{date}/{}/{}/{TERMINATOR}", p.region, p.service);
    let key = signing_key(p.secret, date, p.region, p.service);
    let signature = hex::encode(hmac::sign(&key, &string_to_sign(&amz_date, &scope, &creq)).as_ref());

    let mut out = p.query.to_owned();
    for (name, value) in added.iter().map(|(n, v)| (*n, v.as_str())).chain([("X-Amz-Signature", signature.as_str())]) {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(&uri_encode(value.as_bytes(), true));
    }
    out
}

/// What to sign in the header form. See [`sign`]. `Debug` redacts the secret and the session
/// token.
#[derive(Clone, Copy)]
pub struct Sign<'a> {
    /// The method, as it will be sent.
    pub method: &'a str,
    /// The path as it will be sent (percent-encoded).
    pub path: &'a str,
    /// The raw query as it will be sent (without `?`); `""` for none.
    pub query: &'a str,
    /// Lowercase hex SHA-256 of the body ([`EMPTY_SHA256`] for none).
    pub body_sha256: &'a str,
    /// The access key id to sign as.
    pub access_key_id: &'a str,
    /// Its secret.
    pub secret: &'a SecretKey,
    /// Session token of temporary credentials, sent (and signed) as `X-Amz-Security-Token`.
    pub session_token: Option<&'a str>,
    /// Region of the credential scope.
    pub region: &'a str,
    /// Service of the credential scope.
    pub service: &'a str,
    /// Signing time.
    pub now: SystemTime,
    /// Also send (and sign) `x-amz-content-sha256: <body_sha256>`.
    pub content_sha256_header: bool,
}

impl fmt::Debug for Sign<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sign")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .field("service", &self.service)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// Why [`sign`] could not sign a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The headers to sign have no `host` (SigV4 requires it signed).
    #[error("the request to sign has no Host header")]
    MissingHost,
    /// A value to send (the session token, the body hash, or the access key id, region or
    /// service of the credential scope) is not a valid HTTP header value; names which.
    #[error("the {0} is not a valid HTTP header value")]
    InvalidHeaderValue(&'static str),
}

/// Signs a request in the header form, as the AWS SDKs do: sets `X-Amz-Date`,
/// `X-Amz-Security-Token` (with a session token), `x-amz-content-sha256` (when asked) and
/// `Authorization` in `headers`, signing every header `headers` then holds (so put in exactly
/// the headers to sign, `host` included, and send all of them). The request then passes
/// [`verify`] until [`MAX_CLOCK_SKEW`] after `s.now`.
pub fn sign(s: &Sign<'_>, headers: &mut HeaderMap) -> Result<(), SignError> {
    use http::header::{AUTHORIZATION, HOST, HeaderValue};
    if !headers.contains_key(HOST) {
        return Err(SignError::MissingHost);
    }
    headers.remove(AUTHORIZATION);
    let now = time::epoch_seconds(s.now);
    let amz_date = time::format_amz_date(now);
    let date = &amz_date[..8];
    headers.insert("x-amz-date", HeaderValue::from_str(&amz_date).expect("digits and letters"));
    match s.session_token {
        Some(token) => {
            let value = HeaderValue::from_str(token).map_err(|_| SignError::InvalidHeaderValue("session token"))?;
            headers.insert("x-amz-security-token", value);
        }
        None => {
            headers.remove("x-amz-security-token");
        }
    }
    if s.content_sha256_header {
        let value = HeaderValue::from_str(s.body_sha256).map_err(|_| SignError::InvalidHeaderValue("body hash"))?;
        headers.insert("x-amz-content-sha256", value);
    } else {
        headers.remove("x-amz-content-sha256");
    }
    let mut names: Vec<&str> = headers.keys().map(http::HeaderName::as_str).collect();
    names.sort_unstable();
    let signed_headers = names.join(";");
    let query = canonical_query(parse_query(s.query).iter());
    let creq = canonical_request(s.method, s.path, &query, headers, &signed_headers, s.body_sha256)
        .expect("every signed header is in the map");
    let scope = format!("{date}/{}/{}/{TERMINATOR}", s.region, s.service);
    let key = signing_key(s.secret, date, s.region, s.service);
    let signature = hex::encode(hmac::sign(&key, &string_to_sign(&amz_date, &scope, &creq)).as_ref());
    let auth = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        s.access_key_id
    );
    let auth = HeaderValue::from_str(&auth).map_err(|_| SignError::InvalidHeaderValue("credential scope"))?;
    headers.insert(AUTHORIZATION, auth);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const T: i64 = 1_440_938_160; // 20150830T123600Z

    /// Signs a header-form request by hand (aws-sigv4 never uses the `Date` header).
    fn sign_with_date_header(date_header: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.amazonaws.com".parse().unwrap());
        headers.insert("date", date_header.parse().unwrap());
        let creq = canonical_request("GET", "/", "", &headers, "date;host", EMPTY_SHA256).unwrap();
        let scope = "20150830/us-east-1/ecr/aws4_request";
        let sts = string_to_sign("20150830T123600Z", scope, &creq);
        let key = signing_key(&SecretKey::new(SECRET), "20150830", "us-east-1", "ecr");
        let sig = hex::encode(hmac::sign(&key, &sts).as_ref());
        let auth = format!("AWS4-HMAC-SHA256 Credential=AKID/{scope}, SignedHeaders=date;host, Signature={sig}");
        headers.insert("authorization", auth.parse().unwrap());
        headers
    }

    fn run(headers: &HeaderMap) -> Result<Verified, SigV4Error> {
        let req = Request { method: "GET", path: "/", query: "", headers, body_sha256: EMPTY_SHA256 };
        verify(&req, "ecr", &["us-east-1".to_owned()], time::from_epoch_seconds(T), |_| Some(SecretKey::new(SECRET)))
    }

    #[test]
    fn date_header_instead_of_x_amz_date() {
        let headers = sign_with_date_header("Sun, 30 Aug 2015 12:36:00 GMT");
        let v = run(&headers).unwrap();
        assert_eq!(v.signed_at, time::from_epoch_seconds(T));
        let headers = sign_with_date_header("yesterday");
        assert!(matches!(
            run(&headers),
            Err(SigV4Error::IncompleteSignature(m)) if m.contains("Got 'yesterday'")
        ));
    }

    fn sign_request(token: Option<&str>, content_sha: bool, body: &[u8]) -> (HeaderMap, String) {
        let secret = SecretKey::new(SECRET);
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:5000".parse().unwrap());
        headers.insert("content-type", "application/x-amz-json-1.1".parse().unwrap());
        headers.insert("x-amz-target", "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken".parse().unwrap());
        let body_sha256 = hex::encode(digest::digest(&digest::SHA256, body));
        let s = Sign {
            method: "POST",
            path: "/",
            query: "a=b c&x=%2F",
            body_sha256: &body_sha256,
            access_key_id: "AKID",
            secret: &secret,
            session_token: token,
            region: "us-east-1",
            service: "ecr",
            now: time::from_epoch_seconds(T),
            content_sha256_header: content_sha,
        };
        sign(&s, &mut headers).unwrap();
        (headers, body_sha256)
    }

    fn verify_signed(headers: &HeaderMap, body_sha256: &str, now: i64, secret: &str) -> Result<Verified, SigV4Error> {
        let req = Request { method: "POST", path: "/", query: "a=b c&x=%2F", headers, body_sha256 };
        verify(&req, "ecr", &["us-east-1".to_owned()], time::from_epoch_seconds(now), |k| {
            (k == "AKID").then(|| SecretKey::new(secret))
        })
    }

    #[test]
    fn sign_then_verify_round_trips() {
        for (token, content_sha) in [(None, false), (Some("session/token+=="), false), (Some("t"), true), (None, true)]
        {
            let (headers, body_sha256) = sign_request(token, content_sha, b"{}");
            assert_eq!(headers["x-amz-date"], "20150830T123600Z");
            assert_eq!(headers.get("x-amz-security-token").map(|v| v.to_str().unwrap()), token);
            assert_eq!(headers.contains_key("x-amz-content-sha256"), content_sha);
            let auth = headers["authorization"].to_str().unwrap();
            assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/ecr/aws4_request, "));
            assert!(auth.contains("SignedHeaders=content-type;host;x-amz-"), "{auth}");
            let v = verify_signed(&headers, &body_sha256, T + 60, SECRET).unwrap();
            assert_eq!(v.access_key_id, "AKID");
            assert_eq!(v.session_token.as_deref(), token);
            assert!(!v.unsigned_payload);
            // Another body, another secret, or too late: refused.
            let other = hex::encode(digest::digest(&digest::SHA256, b"{ }"));
            let want = if content_sha { SigV4Error::ContentSha256Mismatch } else { SigV4Error::SignatureDoesNotMatch };
            assert_eq!(verify_signed(&headers, &other, T, SECRET), Err(want));
            assert_eq!(verify_signed(&headers, &body_sha256, T, "wrong"), Err(SigV4Error::SignatureDoesNotMatch));
            assert!(matches!(
                verify_signed(&headers, &body_sha256, T + SKEW_SECS + 1, SECRET),
                Err(SigV4Error::SignatureExpired { .. })
            ));
        }
    }

    #[test]
    fn sign_replaces_stale_headers_and_needs_host() {
        let (mut headers, body_sha256) = sign_request(Some("old"), true, b"");
        // Signing again without a token or content hash drops the old ones.
        let secret = SecretKey::new(SECRET);
        let s = Sign {
            method: "POST",
            path: "/",
            query: "a=b c&x=%2F",
            body_sha256: &body_sha256,
            access_key_id: "AKID",
            secret: &secret,
            session_token: None,
            region: "us-east-1",
            service: "ecr",
            now: time::from_epoch_seconds(T),
            content_sha256_header: false,
        };
        sign(&s, &mut headers).unwrap();
        assert!(!headers.contains_key("x-amz-security-token") && !headers.contains_key("x-amz-content-sha256"));
        assert!(verify_signed(&headers, &body_sha256, T, SECRET).is_ok());
        let mut no_host = HeaderMap::new();
        assert_eq!(sign(&s, &mut no_host), Err(SignError::MissingHost));
        let bad = Sign { session_token: Some("a\nb"), ..s };
        assert_eq!(sign(&bad, &mut headers), Err(SignError::InvalidHeaderValue("session token")));
        assert!(!format!("{s:?}").contains("wJalr"));
    }

    #[test]
    fn debug_output_redacts_tokens() {
        let v = Verified {
            access_key_id: "AKID".into(),
            region: "us-east-1".into(),
            service: "ecr".into(),
            date: "20150830".into(),
            signed_at: time::from_epoch_seconds(T),
            session_token: Some("very-secret-token".into()),
            location: SignatureLocation::Header,
            unsigned_payload: false,
        };
        assert!(!format!("{v:?}").contains("very-secret-token"));
        let secret = SecretKey::new(SECRET);
        let p = Presign {
            method: "GET",
            host: "h",
            path: "/",
            query: "",
            access_key_id: "AKID",
            secret: &secret,
            session_token: Some("very-secret-token"),
            region: "us-east-1",
            service: "ecr",
            now: time::from_epoch_seconds(T),
            expires_in: Duration::from_secs(60),
        };
        let dbg = format!("{p:?}");
        assert!(!dbg.contains("very-secret-token") && !dbg.contains("wJalr"));
    }
}
