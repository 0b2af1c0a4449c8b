//! OIDC web identity token verification, for STS `AssumeRoleWithWebIdentity`.
//!
//! [`verify`] checks an OIDC ID token (a JWS in compact serialization, `header.payload.signature`)
//! against the identity provider's JWK Set ([`Jwks`]) and returns its [`Claims`]. Pure: the caller
//! fetches (and caches) the JWKS and passes the current time; nothing here does I/O or reads a
//! clock.
//!
//! # What is accepted
//! - Algorithms `RS256` (RSASSA-PKCS1-v1_5 with SHA-256, 2048 to 8192-bit keys) and `ES256`
//!   (ECDSA P-256 with SHA-256, the fixed 64-byte `r || s` signature). The header's `alg` must be
//!   exactly one of these; everything else (`none`, `HS256`, `RS384`, `PS256`, a missing `alg`...)
//!   is refused and never falls back to another algorithm, so the classic confusions (`alg: none`,
//!   an RSA public key used as an HMAC secret) cannot happen.
//! - The key comes only from the JWKS the caller passes: header parameters that name or carry keys
//!   (`jku`, `jwk`, `x5u`, `x5c`) are ignored, `typ` is ignored, and a `crit` header is refused
//!   (we understand no extensions). The header's `kid` picks the keys with that `kid`; with no `kid`
//!   every key of the algorithm's type is tried. A key whose JWK names an `alg` is used only for
//!   that algorithm.
//! - Claims, checked after the signature, in this order: `iss` equals the expected issuer (one
//!   trailing `/` of difference allowed); `aud` (a string or an array) contains one of the expected
//!   audiences; `exp` is present and `now < exp + skew`; `nbf`, if present, `nbf <= now + skew`;
//!   `iat`, if present, `iat <= now + skew`; optionally `exp - iat` (or `exp - now` without `iat`)
//!   is at most a maximum lifetime; `sub` is present and a string. `azp` and `amr`, when present,
//!   must be a string and a string or array of strings.
//!
//! # Why hand-written on `ring`
//! The well-kept crate, `jsonwebtoken`, no longer has a `ring` backend (version 10 on offers
//! `aws_lc_rs` or `rust_crypto`). `aws-lc-rs` is in our `Cargo.lock` only through rustls in the
//! HTTP clients; making this crate depend on it would add the `aws-lc-sys` C/CMake build to every
//! build and test of `berth-auth`, and `rust_crypto` brings the `rsa` crate and its open timing
//! advisory (RUSTSEC-2023-0071). The verification itself is small (two `ring` calls; JSON through
//! `serde_json`), and writing it lets us fix the order of checks and give each failure the
//! distinct [`JwtError`] that STS needs.

use std::fmt;

use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use ring::signature::{ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

/// The longest token accepted, in bytes: STS's `WebIdentityToken` limit (20000 characters).
pub const MAX_TOKEN_LEN: usize = 20_000;

/// The largest JWKS document [`Jwks::parse`] accepts, in bytes (1 MiB).
pub const MAX_JWKS_LEN: usize = 1 << 20;

/// The most keys a JWKS document may list (usable or not).
pub const MAX_JWKS_KEYS: usize = 100;

/// A sensible default for [`Expectations::max_skew_secs`]: five minutes.
pub const DEFAULT_MAX_SKEW_SECS: u32 = 300;

const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;
const P256_COORDINATE_LEN: usize = 32;

/// JWK member values are base64url without padding (RFC 7518); tolerate padding there, since some
/// providers emit it and it changes nothing. Token parts are decoded strictly ([`URL_SAFE_NO_PAD`]).
const JWK_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_encode_padding(false).with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a token (or a JWKS) was refused.
///
/// Messages are safe to return to clients: they name the failed check, never the token or a
/// claim's value. [`JwtError::sts_code`] gives the STS error code for each variant:
///
/// | variant | STS error code |
/// | --- | --- |
/// | [`Expired`](JwtError::Expired) | `ExpiredTokenException` |
/// | [`TooLarge`](JwtError::TooLarge) | `ValidationError` (AWS refuses a `WebIdentityToken` over 20000 characters as a parameter constraint, before looking at it) |
/// | every other variant | `InvalidIdentityToken` |
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// The token is longer than [`MAX_TOKEN_LEN`].
    #[error("the web identity token is longer than 20000 characters")]
    TooLarge,
    /// Not a compact JWS: not three base64url parts, a header or payload that is not a JSON
    /// object, a `kid` that is not a string, or a `crit` header. The text says which.
    #[error("the web identity token is malformed: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is missing or is not `RS256` or `ES256`.
    #[error("the web identity token's signing algorithm is not supported (only RS256 and ES256 are)")]
    UnsupportedAlgorithm,
    /// No key of the JWKS has the header's `kid` and fits its `alg`.
    #[error("no key in the identity provider's JWKS matches the web identity token's kid and alg")]
    UnknownKey,
    /// The signature does not verify under any fitting key.
    #[error("the web identity token's signature is invalid")]
    BadSignature,
    /// A required claim (`iss`, `aud`, `exp`, `sub`) is missing, or a claim has the wrong type.
    /// The text names the claim.
    #[error("the web identity token's {0} claim is missing or invalid")]
    InvalidClaim(&'static str),
    /// `iss` is not the provider's issuer.
    #[error("the web identity token's issuer (iss) does not match the identity provider")]
    IssuerMismatch,
    /// `aud` contains none of the provider's client ids.
    #[error("the web identity token's audience (aud) is not a client id of the identity provider")]
    AudienceMismatch,
    /// `now >= exp + skew`.
    #[error("the web identity token has expired")]
    Expired,
    /// `nbf > now + skew`.
    #[error("the web identity token is not valid yet (nbf is in the future)")]
    NotYetValid,
    /// `iat > now + skew`.
    #[error("the web identity token was issued in the future (iat)")]
    IssuedInFuture,
    /// `exp - iat` exceeds [`Expectations::max_lifetime_secs`].
    #[error("the web identity token's lifetime (exp - iat) is longer than allowed")]
    LifetimeTooLong,
    /// From [`Jwks::parse`]: the JWKS document is unusable. The text says why.
    #[error("the identity provider's JWKS is unusable: {0}")]
    InvalidJwks(&'static str),
}

impl JwtError {
    /// The STS error code to answer with (see the table on [`JwtError`]).
    pub fn sts_code(&self) -> &'static str {
        match self {
            JwtError::Expired => "ExpiredTokenException",
            JwtError::TooLarge => "ValidationError",
            _ => "InvalidIdentityToken",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Rs256,
    Es256,
}

impl Alg {
    fn from_name(name: &str) -> Option<Alg> {
        match name {
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
        }
    }
}

#[derive(Clone)]
enum KeyMaterial {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The uncompressed point `0x04 || x || y`.
    EcP256 { point: Vec<u8> },
}

#[derive(Clone)]
struct Jwk {
    kid: Option<String>,
    alg: Option<Alg>,
    material: KeyMaterial,
}

impl Jwk {
    /// Whether this key may verify a token whose header says `alg`.
    fn fits(&self, alg: Alg) -> bool {
        let kty_fits = matches!(
            (&self.material, alg),
            (KeyMaterial::Rsa { .. }, Alg::Rs256) | (KeyMaterial::EcP256 { .. }, Alg::Es256)
        );
        kty_fits && self.alg.is_none_or(|a| a == alg)
    }

    fn verifies(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            KeyMaterial::Rsa { n, e } => {
                RsaPublicKeyComponents { n, e }.verify(&RSA_PKCS1_2048_8192_SHA256, signing_input, signature).is_ok()
            }
            KeyMaterial::EcP256 { point } => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(signing_input, signature).is_ok()
            }
        }
    }

    /// `Ok(None)` for a key we skip: another `kty` or curve, a `use` other than `sig`, or an `alg`
    /// other than RS256/ES256.
    fn parse(value: &Value) -> Result<Option<Jwk>, JwtError> {
        let obj = value.as_object().ok_or(JwtError::InvalidJwks("a key is not a JSON object"))?;
        let text = |name: &'static str, what: &'static str| match obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(JwtError::InvalidJwks(what)),
        };
        let kty = text("kty", "a key's kty is not a string")?.ok_or(JwtError::InvalidJwks("a key has no kty"))?;
        let kid = text("kid", "a key's kid is not a string")?;
        if obj.contains_key("d") {
            return Err(JwtError::InvalidJwks("a key contains private key material"));
        }
        if text("use", "a key's use is not a string")?.is_some_and(|u| u != "sig") {
            return Ok(None);
        }
        let alg = match text("alg", "a key's alg is not a string")? {
            None => None,
            Some(name) => match Alg::from_name(name) {
                Some(alg) => Some(alg),
                None => return Ok(None),
            },
        };
        let bytes = |name: &'static str, missing: &'static str, bad: &'static str| {
            let s = text(name, bad)?.ok_or(JwtError::InvalidJwks(missing))?;
            JWK_BASE64.decode(s).map_err(|_| JwtError::InvalidJwks(bad))
        };
        let material = match kty {
            "RSA" => {
                let n = bytes("n", "an RSA key has no n", "an RSA key's n is not base64url")?;
                let e = bytes("e", "an RSA key has no e", "an RSA key's e is not base64url")?;
                let n = strip_leading_zeros(n);
                let e = strip_leading_zeros(e);
                let bits = n.first().map_or(0, |top| n.len() * 8 - top.leading_zeros() as usize);
                if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                    return Err(JwtError::InvalidJwks("an RSA key's modulus is not 2048 to 8192 bits"));
                }
                // What ring accepts: odd, at least 3, below 2^33.
                let e_value = (e.len() <= 5).then(|| e.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b)));
                if !e_value.is_some_and(|e| e >= 3 && e % 2 == 1 && e < 1 << 33) {
                    return Err(JwtError::InvalidJwks("an RSA key's exponent is not supported"));
                }
                KeyMaterial::Rsa { n, e }
            }
            "EC" => {
                if text("crv", "an EC key's crv is not a string")? != Some("P-256") {
                    return Ok(None);
                }
                let x = bytes("x", "an EC key has no x", "an EC key's x is not base64url")?;
                let y = bytes("y", "an EC key has no y", "an EC key's y is not base64url")?;
                if x.len() != P256_COORDINATE_LEN || y.len() != P256_COORDINATE_LEN {
                    return Err(JwtError::InvalidJwks("a P-256 key's x and y must be 32 bytes each"));
                }
                let mut point = Vec::with_capacity(1 + 2 * P256_COORDINATE_LEN);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                KeyMaterial::EcP256 { point }
            }
            _ => return Ok(None),
        };
        Ok(Some(Jwk { kid: kid.map(str::to_owned), alg, material }))
    }
}

fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

/// The usable signing keys of an identity provider's JWK Set.
///
/// `Debug` lists each key's `kid`, type and `alg`, not the key bytes.
#[derive(Clone)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

impl Jwks {
    /// Parses a JWK Set document (`{"keys":[...]}`, RFC 7517).
    ///
    /// Keeps RSA keys (`kty: RSA`, `n` and `e`) and P-256 keys (`kty: EC`, `crv: P-256`, `x` and
    /// `y`), each with its `kid` and `alg`. Skips, without error, keys of another `kty` or curve,
    /// keys whose `use` is not `sig`, and keys whose `alg` is neither `RS256` nor `ES256`; so the
    /// result may hold no key at all (then every token fails with [`JwtError::UnknownKey`]).
    ///
    /// Fails with [`JwtError::InvalidJwks`] if the document is over [`MAX_JWKS_LEN`] bytes, is not a
    /// JSON object with a `keys` array, lists more than [`MAX_JWKS_KEYS`] keys, or has a key of a
    /// kept type that is broken: a member missing or not base64url, an RSA modulus outside 2048 to
    /// 8192 bits or an exponent `ring` refuses, P-256 coordinates that are not 32 bytes, or any
    /// key carrying private material (`d`).
    pub fn parse(json: &[u8]) -> Result<Jwks, JwtError> {
        if json.len() > MAX_JWKS_LEN {
            return Err(JwtError::InvalidJwks("the document is larger than 1 MiB"));
        }
        let doc: Value = serde_json::from_slice(json).map_err(|_| JwtError::InvalidJwks("the document is not JSON"))?;
        let keys = doc
            .as_object()
            .and_then(|o| o.get("keys"))
            .and_then(Value::as_array)
            .ok_or(JwtError::InvalidJwks("the document has no \"keys\" array"))?;
        if keys.len() > MAX_JWKS_KEYS {
            return Err(JwtError::InvalidJwks("the document lists more than 100 keys"));
        }
        let mut kept = Vec::new();
        for key in keys {
            if let Some(jwk) = Jwk::parse(key)? {
                kept.push(jwk);
            }
        }
        Ok(Jwks { keys: kept })
    }

    /// How many usable keys were kept.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no usable key was kept.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Key<'a>(&'a Jwk);
        impl fmt::Debug for Key<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let kty = match self.0.material {
                    KeyMaterial::Rsa { .. } => "RSA",
                    KeyMaterial::EcP256 { .. } => "EC P-256",
                };
                f.debug_struct("Jwk")
                    .field("kid", &self.0.kid)
                    .field("kty", &kty)
                    .field("alg", &self.0.alg.map(Alg::name))
                    .finish()
            }
        }
        f.debug_list().entries(self.keys.iter().map(Key)).finish()
    }
}

/// What [`verify`] requires of a token's claims: the identity provider's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectations {
    /// The provider's issuer URL, e.g. `https://token.actions.githubusercontent.com`. The token's
    /// `iss` must equal it, or differ only by one trailing `/`.
    pub issuer: String,
    /// The provider's client ids. The token's `aud` must contain at least one; with none listed,
    /// every token fails with [`JwtError::AudienceMismatch`].
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub max_skew_secs: u32,
    /// If set, the longest `exp - iat` accepted (`exp - now` when the token has no `iat`).
    pub max_lifetime_secs: Option<u32>,
}

impl Expectations {
    /// Expectations with [`DEFAULT_MAX_SKEW_SECS`] and no lifetime limit.
    pub fn new(issuer: impl Into<String>, audiences: impl IntoIterator<Item = impl Into<String>>) -> Expectations {
        Expectations {
            issuer: issuer.into(),
            audiences: audiences.into_iter().map(Into::into).collect(),
            max_skew_secs: DEFAULT_MAX_SKEW_SECS,
            max_lifetime_secs: None,
        }
    }
}

/// The claims of a verified token: the raw JSON object, plus typed views of the registered
/// claims STS uses. Only [`verify`] makes one, so the typed views always agree with the checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    raw: Map<String, Value>,
    iss: String,
    sub: String,
    aud: Vec<String>,
    exp: i64,
    iat: Option<i64>,
    nbf: Option<i64>,
    azp: Option<String>,
    amr: Option<Vec<String>>,
}

impl Claims {
    /// The whole claims object, as the token carried it.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }

    /// The whole claims object, as the token carried it.
    pub fn into_raw(self) -> Map<String, Value> {
        self.raw
    }

    /// `iss`: the issuer, as the token spells it.
    pub fn iss(&self) -> &str {
        &self.iss
    }

    /// `sub`: the subject.
    pub fn sub(&self) -> &str {
        &self.sub
    }

    /// `aud`: the audiences (a single string becomes one element).
    pub fn aud(&self) -> &[String] {
        &self.aud
    }

    /// `exp`: expiry, in seconds since the Unix epoch (a fractional value is rounded down).
    pub fn exp(&self) -> i64 {
        self.exp
    }

    /// `iat`: issue time, in seconds since the Unix epoch, if present.
    pub fn iat(&self) -> Option<i64> {
        self.iat
    }

    /// `nbf`: not-before time, in seconds since the Unix epoch, if present.
    pub fn nbf(&self) -> Option<i64> {
        self.nbf
    }

    /// `azp`: the authorized party, if present.
    pub fn azp(&self) -> Option<&str> {
        self.azp.as_deref()
    }

    /// `amr`: the authentication methods (a single string becomes one element; empty if absent).
    pub fn amr(&self) -> &[String] {
        self.amr.as_deref().unwrap_or_default()
    }

    /// The IAM condition keys AWS sets from an OIDC token, with their values, in this order:
    /// `<host>:aud` (the `azp` claim if present, else the `aud` values), `<host>:sub`, and
    /// `<host>:amr` (only if the token has `amr`).
    ///
    /// `provider` is the provider's host as condition keys spell it, e.g.
    /// `token.actions.githubusercontent.com` or `example.com/oidc`; an issuer URL is accepted too
    /// and reduced with [`provider_host`].
    pub fn condition_values(&self, provider: &str) -> Vec<(String, Vec<String>)> {
        let host = provider_host(provider);
        let aud = match &self.azp {
            Some(azp) => vec![azp.clone()],
            None => self.aud.clone(),
        };
        let mut values = vec![(format!("{host}:aud"), aud), (format!("{host}:sub"), vec![self.sub.clone()])];
        if let Some(amr) = &self.amr {
            values.push((format!("{host}:amr"), amr.clone()));
        }
        values
    }
}

/// The provider host that prefixes IAM condition keys: the issuer URL without `https://` (any
/// letter case) and without trailing `/`, path kept. `https://example.com/oidc/` gives
/// `example.com/oidc`; a string without the scheme is only stripped of trailing slashes.
pub fn provider_host(issuer: &str) -> &str {
    const SCHEME: &str = "https://";
    let rest = match issuer.get(..SCHEME.len()) {
        Some(scheme) if scheme.eq_ignore_ascii_case(SCHEME) => &issuer[SCHEME.len()..],
        _ => issuer,
    };
    rest.trim_end_matches('/')
}

/// Verifies an OIDC ID token and returns its claims.
///
/// `now_secs` is the current time in seconds since the Unix epoch. The checks, in order (the
/// first failure is returned): the size cap ([`MAX_TOKEN_LEN`]); three base64url parts; the header
/// a JSON object whose `alg` is `RS256` or `ES256`; a key of `jwks` selected by `kid` and `alg`;
/// the signature; the payload a JSON object; then the claims as the [module docs](self) list them.
/// The error says which check failed and never contains the token.
pub fn verify(token: &str, jwks: &Jwks, expect: &Expectations, now_secs: i64) -> Result<Claims, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("not three dot-separated parts"));
    };
    let decode = |part: &str, what: &'static str| URL_SAFE_NO_PAD.decode(part).map_err(|_| JwtError::Malformed(what));
    let header = decode(header_b64, "the header is not base64url")?;
    let payload = decode(payload_b64, "the payload is not base64url")?;
    let signature = decode(signature_b64, "the signature is not base64url")?;

    let header = json_object(&header).ok_or(JwtError::Malformed("the header is not a JSON object"))?;
    let alg = match header.get("alg") {
        Some(Value::String(name)) => Alg::from_name(name).ok_or(JwtError::UnsupportedAlgorithm)?,
        _ => return Err(JwtError::UnsupportedAlgorithm),
    };
    if header.contains_key("crit") {
        return Err(JwtError::Malformed("critical header parameters (crit) are not supported"));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return Err(JwtError::Malformed("the header's kid is not a string")),
    };

    let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
    let mut candidates = jwks
        .keys
        .iter()
        .filter(|key| kid.is_none_or(|kid| key.kid.as_deref() == Some(kid)) && key.fits(alg))
        .peekable();
    if candidates.peek().is_none() {
        return Err(JwtError::UnknownKey);
    }
    if !candidates.any(|key| key.verifies(signing_input, &signature)) {
        return Err(JwtError::BadSignature);
    }

    let raw = json_object(&payload).ok_or(JwtError::Malformed("the payload is not a JSON object"))?;
    check_claims(raw, expect, now_secs)
}

fn json_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

fn check_claims(raw: Map<String, Value>, expect: &Expectations, now: i64) -> Result<Claims, JwtError> {
    let skew = i64::from(expect.max_skew_secs);

    let iss = match raw.get("iss") {
        Some(Value::String(iss)) => iss.clone(),
        _ => return Err(JwtError::InvalidClaim("iss")),
    };
    if !issuer_matches(&iss, &expect.issuer) {
        return Err(JwtError::IssuerMismatch);
    }

    let aud = match raw.get("aud") {
        Some(value) => strings(value).ok_or(JwtError::InvalidClaim("aud"))?,
        None => return Err(JwtError::InvalidClaim("aud")),
    };
    if !aud.iter().any(|a| expect.audiences.contains(a)) {
        return Err(JwtError::AudienceMismatch);
    }

    let date = |name: &'static str| match raw.get(name) {
        None => Ok(None),
        Some(value) => numeric_date(value).map(Some).ok_or(JwtError::InvalidClaim(name)),
    };
    let exp = date("exp")?.ok_or(JwtError::InvalidClaim("exp"))?;
    let nbf = date("nbf")?;
    let iat = date("iat")?;
    if now >= exp.saturating_add(skew) {
        return Err(JwtError::Expired);
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(skew)) {
        return Err(JwtError::NotYetValid);
    }
    if iat.is_some_and(|iat| iat > now.saturating_add(skew)) {
        return Err(JwtError::IssuedInFuture);
    }
    if let Some(max) = expect.max_lifetime_secs
        && exp.saturating_sub(iat.unwrap_or(now)) > i64::from(max)
    {
        return Err(JwtError::LifetimeTooLong);
    }

    let sub = match raw.get("sub") {
        Some(Value::String(sub)) => sub.clone(),
        _ => return Err(JwtError::InvalidClaim("sub")),
    };
    let azp = match raw.get("azp") {
        None => None,
        Some(Value::String(azp)) => Some(azp.clone()),
        Some(_) => return Err(JwtError::InvalidClaim("azp")),
    };
    let amr = match raw.get("amr") {
        None => None,
        Some(value) => Some(strings(value).ok_or(JwtError::InvalidClaim("amr"))?),
    };

    Ok(Claims { raw, iss, sub, aud, exp, iat, nbf, azp, amr })
}

/// Equal, or equal but for one trailing `/` on either side.
fn issuer_matches(iss: &str, expected: &str) -> bool {
    iss == expected || iss.strip_suffix('/') == Some(expected) || expected.strip_suffix('/') == Some(iss)
}

/// A string, or an array of strings.
fn strings(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items.iter().map(|item| item.as_str().map(str::to_owned)).collect(),
        _ => None,
    }
}

/// A JSON number of seconds since the epoch (RFC 7519 `NumericDate`); fractions are rounded down.
fn numeric_date(value: &Value) -> Option<i64> {
    if let Some(secs) = value.as_i64() {
        return Some(secs);
    }
    let secs = value.as_f64()?;
    // i64::MAX as f64 rounds up to 2^63, so `<` keeps the cast in range.
    (secs.is_finite() && secs >= i64::MIN as f64 && secs < i64::MAX as f64).then(|| secs.floor() as i64)
}
