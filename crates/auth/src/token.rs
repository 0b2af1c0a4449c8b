//! The data-plane registry token that `GetAuthorizationToken` returns.
//!
//! Stateless: any node holding the server's [`TokenKey`] verifies a token without a database
//! lookup. Bound to the principal that asked for it (account, principal ARN, access key id).
//! Valid for 12 hours ([`TOKEN_LIFETIME`]), like ECR's.
//!
//! # Shape (what clients see)
//! The *password* (`aws ecr get-login-password`) is standard base64 of the JSON
//! `{"payload":"<b64>","datakey":"<b64>","version":"2","type":"DATA_KEY","expiration":<unix-s>}`,
//! the same envelope ECR uses. The `authorizationToken` is base64 of `AWS:<password>`, usable
//! verbatim as a Basic credential. Clients treat both as opaque.
//!
//! # Our contents (the design)
//! - `payload`: standard base64 of the JSON [`Claims`] (signed, not encrypted: it names the
//!   account, principal and access key id, which the holder knows anyway; never a secret).
//! - `datakey`: standard base64 of `0x01 || len(key_id) (1 byte) || key_id || tag`, where
//!   `tag` is the 32-byte HMAC-SHA256, under the key named `key_id`, of
//!   `"berth-registry-token\0" || version || "\0" || type || "\0" || key_id || "\0" || payload
//!   || "\0" || expiration` (payload as its base64 string, expiration in decimal). The key id lets
//!   a deployment rotate keys: [`key_id`] reads it before verification to pick the key.
//! - `expiration` must equal the claims' `expires_at`.
//!
//! Verification is strict: canonical base64 only, the envelope JSON byte for byte as minted, so
//! changing any byte of the password makes [`verify`] fail. The MAC is checked in constant
//! time (`ring::hmac::verify`) before expiry is looked at.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use serde::{Deserialize, Serialize};

/// How long a token is valid after it is minted.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// The Basic-auth user name ECR tokens use.
pub const TOKEN_USER: &str = "AWS";

const VERSION: &str = "2";
const TYPE: &str = "DATA_KEY";
const DATAKEY_FORMAT: u8 = 1;
const MAC_DOMAIN: &[u8] = b"berth-registry-token\0";
const TAG_LEN: usize = 32;
const MIN_KEY_LEN: usize = 32;
const MAX_KEY_ID_LEN: usize = 64;

/// Why a token was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a token of this format (bad base64, JSON, version, type or layout).
    #[error("malformed registry token")]
    Malformed,
    /// The MAC does not verify, or the token names a key we do not have.
    #[error("registry token signature is invalid")]
    BadSignature,
    /// Authentic but past `expires_at`. ECR answers `DENIED` "Your authorization token has
    /// expired. Reauthenticate and try again." for this.
    #[error("registry token has expired")]
    Expired,
}

/// Why a [`TokenKey`] could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenKeyError {
    /// The key id is empty, longer than 64 bytes, or has bytes other than `[A-Za-z0-9._-]`.
    #[error("token key id must be 1-64 characters of [A-Za-z0-9._-]")]
    BadId,
    /// The key is shorter than 32 bytes.
    #[error("token key must be at least 32 bytes")]
    TooShort,
}

/// A named HMAC-SHA256 key for minting and verifying tokens. `Debug` shows only the id.
#[derive(Clone)]
pub struct TokenKey {
    id: String,
    key: hmac::Key,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl TokenKey {
    /// A key named `id` (1–64 of `[A-Za-z0-9._-]`) from `secret` (at least 32 random bytes,
    /// the same on every node).
    pub fn new(id: impl Into<String>, secret: &[u8]) -> Result<Self, TokenKeyError> {
        let id = id.into();
        let id_ok = !id.is_empty()
            && id.len() <= MAX_KEY_ID_LEN
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !id_ok {
            return Err(TokenKeyError::BadId);
        }
        if secret.len() < MIN_KEY_LEN {
            return Err(TokenKeyError::TooShort);
        }
        Ok(Self { id, key: hmac::Key::new(hmac::HMAC_SHA256, secret) })
    }

    /// The key's id, as written into tokens.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// What a token asserts. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The 12-digit account the principal belongs to.
    pub account_id: String,
    /// The IAM principal ARN that called `GetAuthorizationToken`.
    pub principal_arn: String,
    /// The access key id the call was signed with (so revoking the key revokes its tokens).
    pub access_key_id: String,
    /// When the token was minted.
    pub issued_at: u64,
    /// When it stops being valid: `issued_at + 12 h`.
    pub expires_at: u64,
}

impl Claims {
    /// Claims for a token minted at `now`, expiring [`TOKEN_LIFETIME`] later.
    pub fn new(
        account_id: impl Into<String>,
        principal_arn: impl Into<String>,
        access_key_id: impl Into<String>,
        now: SystemTime,
    ) -> Self {
        let issued_at = unix_seconds(now);
        Self {
            account_id: account_id.into(),
            principal_arn: principal_arn.into(),
            access_key_id: access_key_id.into(),
            issued_at,
            expires_at: issued_at + TOKEN_LIFETIME.as_secs(),
        }
    }

    /// `expires_at` as a `SystemTime` (for `expiresAt` in the API response).
    pub fn expires_at_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.expires_at)
    }
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    payload: String,
    datakey: String,
    version: String,
    #[serde(rename = "type")]
    kind: String,
    expiration: u64,
}

fn mac_input(key_id: &str, payload: &str, expiration: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(MAC_DOMAIN.len() + payload.len() + 64);
    m.extend_from_slice(MAC_DOMAIN);
    for part in [VERSION, TYPE, key_id, payload] {
        m.extend_from_slice(part.as_bytes());
        m.push(0);
    }
    m.extend_from_slice(expiration.to_string().as_bytes());
    m
}

/// Mints the password (what `get-login-password` prints) for `claims`, signed with `key`.
pub fn mint(claims: &Claims, key: &TokenKey) -> String {
    let payload = STANDARD.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let tag = hmac::sign(&key.key, &mac_input(&key.id, &payload, claims.expires_at));
    let mut datakey = Vec::with_capacity(2 + key.id.len() + TAG_LEN);
    datakey.push(DATAKEY_FORMAT);
    datakey.push(key.id.len() as u8);
    datakey.extend_from_slice(key.id.as_bytes());
    datakey.extend_from_slice(tag.as_ref());
    let envelope = Envelope {
        payload,
        datakey: STANDARD.encode(datakey),
        version: VERSION.to_owned(),
        kind: TYPE.to_owned(),
        expiration: claims.expires_at,
    };
    STANDARD.encode(serde_json::to_vec(&envelope).expect("envelope serializes"))
}

/// The `authorizationToken` for a password: base64 of `AWS:<password>`.
pub fn authorization_token(password: &str) -> String {
    STANDARD.encode(format!("{TOKEN_USER}:{password}"))
}

/// The password inside a Basic credential (the part after `Basic `): base64-decodes it, splits
/// at the first `:`, and requires the user to be `AWS`.
pub fn password_from_basic(credential: &str) -> Result<String, TokenError> {
    let decoded = STANDARD.decode(credential.trim()).map_err(|_| TokenError::Malformed)?;
    let decoded = String::from_utf8(decoded).map_err(|_| TokenError::Malformed)?;
    match decoded.split_once(':') {
        Some((TOKEN_USER, password)) => Ok(password.to_owned()),
        _ => Err(TokenError::Malformed),
    }
}

struct Opened {
    envelope: Envelope,
    key_id: String,
    tag: Vec<u8>,
}

fn open(password: &str) -> Result<Opened, TokenError> {
    let json = STANDARD.decode(password).map_err(|_| TokenError::Malformed)?;
    let envelope: Envelope = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
    // Only the exact bytes `mint` writes are accepted (no extra whitespace, escapes, ...).
    let canonical = serde_json::to_vec(&envelope).map_err(|_| TokenError::Malformed)?;
    if canonical != json || envelope.version != VERSION || envelope.kind != TYPE {
        return Err(TokenError::Malformed);
    }
    let datakey = STANDARD.decode(&envelope.datakey).map_err(|_| TokenError::Malformed)?;
    let [DATAKEY_FORMAT, id_len, rest @ ..] = datakey.as_slice() else {
        return Err(TokenError::Malformed);
    };
    let id_len = usize::from(*id_len);
    if rest.len() != id_len + TAG_LEN {
        return Err(TokenError::Malformed);
    }
    let key_id = std::str::from_utf8(&rest[..id_len]).map_err(|_| TokenError::Malformed)?.to_owned();
    Ok(Opened { tag: rest[id_len..].to_vec(), envelope, key_id })
}

/// The id of the key a password claims to be signed with (unauthenticated; use it only to pick
/// the key to [`verify`] with).
pub fn key_id(password: &str) -> Result<String, TokenError> {
    open(password).map(|o| o.key_id)
}

/// Verifies a password minted by [`mint`] with `key`, at time `now`.
///
/// Errors, in this order: [`TokenError::Malformed`] (not this format),
/// [`TokenError::BadSignature`] (other key id, or MAC mismatch), [`TokenError::Expired`]
/// (`now >= expires_at`).
pub fn verify(password: &str, now: SystemTime, key: &TokenKey) -> Result<Claims, TokenError> {
    let opened = open(password)?;
    if opened.key_id != key.id {
        return Err(TokenError::BadSignature);
    }
    let env = &opened.envelope;
    hmac::verify(&key.key, &mac_input(&opened.key_id, &env.payload, env.expiration), &opened.tag)
        .map_err(|_| TokenError::BadSignature)?;
    let claims_json = STANDARD.decode(&env.payload).map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&claims_json).map_err(|_| TokenError::Malformed)?;
    if claims.expires_at != env.expiration || claims.issued_at > claims.expires_at {
        return Err(TokenError::Malformed);
    }
    if unix_seconds(now) >= claims.expires_at {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::new("k1", &[42u8; 32]).unwrap()
    }

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn claims() -> Claims {
        Claims::new("123456789012", "arn:aws:iam::123456789012:user/alice", "AKIAEXAMPLE", t(1_700_000_000))
    }

    #[test]
    fn mint_and_verify() {
        let c = claims();
        assert_eq!(c.expires_at, 1_700_000_000 + 12 * 3600);
        let pw = mint(&c, &key());
        assert_eq!(verify(&pw, t(1_700_000_000), &key()), Ok(c.clone()));
        assert_eq!(verify(&pw, t(c.expires_at - 1), &key()), Ok(c.clone()));
        assert_eq!(key_id(&pw).unwrap(), "k1");
        assert_eq!(c.expires_at_time(), t(c.expires_at));
    }

    #[test]
    fn looks_like_ecr() {
        let c = claims();
        let pw = mint(&c, &key());
        let json: serde_json::Value = serde_json::from_slice(&STANDARD.decode(&pw).unwrap()).unwrap();
        let obj = json.as_object().unwrap();
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(keys, ["payload", "datakey", "version", "type", "expiration"]);
        assert_eq!(obj["version"], "2");
        assert_eq!(obj["type"], "DATA_KEY");
        assert_eq!(obj["expiration"], c.expires_at);
        let token = authorization_token(&pw);
        let decoded = String::from_utf8(STANDARD.decode(&token).unwrap()).unwrap();
        assert_eq!(decoded, format!("AWS:{pw}"));
        assert_eq!(password_from_basic(&token).unwrap(), pw);
    }

    #[test]
    fn expired() {
        let c = claims();
        let pw = mint(&c, &key());
        assert_eq!(verify(&pw, t(c.expires_at), &key()), Err(TokenError::Expired));
        assert_eq!(verify(&pw, t(c.expires_at + 86_400), &key()), Err(TokenError::Expired));
    }

    #[test]
    fn other_key_fails() {
        let pw = mint(&claims(), &key());
        let same_id_other_secret = TokenKey::new("k1", &[43u8; 32]).unwrap();
        let other_id_same_secret = TokenKey::new("k2", &[42u8; 32]).unwrap();
        let now = t(1_700_000_000);
        assert_eq!(verify(&pw, now, &same_id_other_secret), Err(TokenError::BadSignature));
        assert_eq!(verify(&pw, now, &other_id_same_secret), Err(TokenError::BadSignature));
    }

    #[test]
    fn every_single_byte_change_fails() {
        let pw = mint(&claims(), &key());
        let now = t(1_700_000_000);
        let bytes = pw.as_bytes();
        for i in 0..bytes.len() {
            for r in [b'A', b'B', b'Q', b'g', b'w', b'0', b'9', b'+', b'/', b'='] {
                if bytes[i] == r {
                    continue;
                }
                let mut m = bytes.to_vec();
                m[i] = r;
                let m = String::from_utf8(m).unwrap();
                assert!(verify(&m, now, &key()).is_err(), "byte {i} -> {}", r as char);
            }
        }
        assert!(verify(&pw[..pw.len() - 4], now, &key()).is_err());
        assert!(verify(&format!("{pw}AAAA"), now, &key()).is_err());
        assert!(verify(&format!("{pw}\n"), now, &key()).is_err());
    }

    #[test]
    fn tampering_inside_the_envelope_fails() {
        let c = claims();
        let k = key();
        let now = t(1_700_000_000);
        let pw = mint(&c, &k);
        let mut env: serde_json::Value = serde_json::from_slice(&STANDARD.decode(&pw).unwrap()).unwrap();
        let reencode = |v: &serde_json::Value| STANDARD.encode(serde_json::to_vec(v).unwrap());

        // Extend the expiration in the envelope only.
        let mut e = env.clone();
        e["expiration"] = (c.expires_at + 3600).into();
        assert_eq!(verify(&reencode(&e), now, &k), Err(TokenError::BadSignature));

        // Swap in claims for another principal, keeping the old MAC.
        let mut other = c.clone();
        other.principal_arn = "arn:aws:iam::123456789012:root".into();
        let mut e = env.clone();
        e["payload"] = STANDARD.encode(serde_json::to_vec(&other).unwrap()).into();
        assert_eq!(verify(&reencode(&e), now, &k), Err(TokenError::BadSignature));

        // Unknown fields, other version or type.
        let mut e = env.clone();
        e["extra"] = 1.into();
        assert_eq!(verify(&reencode(&e), now, &k), Err(TokenError::Malformed));
        let mut e = env.clone();
        e["version"] = "3".into();
        assert_eq!(verify(&reencode(&e), now, &k), Err(TokenError::Malformed));
        env["type"] = "OTHER".into();
        assert_eq!(verify(&reencode(&env), now, &k), Err(TokenError::Malformed));
    }

    #[test]
    fn malformed_inputs() {
        let now = t(1_700_000_000);
        for bad in ["", "!!!", "e30=", "bnVsbA==", &STANDARD.encode("{\"payload\":1}")] {
            assert_eq!(verify(bad, now, &key()), Err(TokenError::Malformed), "{bad}");
        }
        assert_eq!(password_from_basic("!!!"), Err(TokenError::Malformed));
        assert_eq!(password_from_basic(&STANDARD.encode("bob:pw")), Err(TokenError::Malformed));
        assert_eq!(password_from_basic(&STANDARD.encode("AWS:a:b")).unwrap(), "a:b");
    }

    #[test]
    fn key_validation() {
        assert_eq!(TokenKey::new("", &[0; 32]).unwrap_err(), TokenKeyError::BadId);
        assert_eq!(TokenKey::new("a b", &[0; 32]).unwrap_err(), TokenKeyError::BadId);
        assert_eq!(TokenKey::new("x".repeat(65), &[0; 32]).unwrap_err(), TokenKeyError::BadId);
        assert_eq!(TokenKey::new("k", &[0; 31]).unwrap_err(), TokenKeyError::TooShort);
        assert!(!format!("{:?}", key()).contains("42"));
    }
}
