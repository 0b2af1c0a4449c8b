//! The keys of OIDC identity providers, for AssumeRoleWithWebIdentity: a JWKS per issuer, read
//! from a file the configuration maps to the issuer (offline deployments, tests), else fetched
//! over HTTPS from the issuer's discovery document (`<issuer>/.well-known/openid-configuration`
//! → `jwks_uri`). Keys are cached for [`JWKS_TTL_MS`]; a token signed by a key the cached set
//! does not have makes one early refresh (key rotation), at most every [`REFRESH_MIN_MS`].

use crate::{Error, Result};
use berth_auth::jwt::{self, Expectations, Jwks, JwtError};
use berth_meta::OidcProvider;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How long fetched or read keys are used before they are read again.
pub const JWKS_TTL_MS: i64 = 3_600_000;
/// Early refreshes (for an unknown `kid`) at most this often per issuer.
pub const REFRESH_MIN_MS: i64 = 60_000;
/// Largest discovery document or JWKS fetched.
const MAX_FETCH_BYTES: usize = 1 << 20;

/// A token's claims, verified against its provider.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    claims: jwt::Claims,
}

impl VerifiedToken {
    /// `sub`.
    pub fn subject(&self) -> &str {
        self.claims.sub()
    }

    /// The first of `client_ids` the token's `aud` names.
    pub fn audience_matched(&self, client_ids: &[String]) -> Option<String> {
        self.claims.aud().iter().find(|a| client_ids.contains(a)).cloned()
    }

    /// The condition keys of the claims for a provider (`<host>:sub`, `:aud`, `:amr`, ...).
    pub fn condition_values(&self, provider_key: &str) -> Vec<(String, Vec<String>)> {
        self.claims.condition_values(provider_key)
    }
}

#[derive(Debug)]
struct Cached {
    jwks: Arc<Jwks>,
    read_at: i64,
}

/// Where each issuer's keys come from, and the keys read so far.
#[derive(Debug, Default)]
pub struct Oidc {
    /// Issuer URL without scheme or trailing slash (lower-cased host) → JWKS file.
    files: HashMap<String, PathBuf>,
    cache: RwLock<HashMap<String, Cached>>,
    /// The HTTPS client of discovery (with the extra PEM roots, if any); `None`: discovery off.
    http: Option<reqwest::Client>,
}

fn issuer_key(url: &str) -> String {
    OidcProvider::url_key(url).to_lowercase()
}

fn jwt_error(e: JwtError) -> Error {
    match e {
        JwtError::Expired => Error::IdentityTokenExpired("Token is expired".into()),
        JwtError::TooLarge => Error::Validation(
            "1 validation error detected: Value at 'webIdentityToken' failed to satisfy constraint: Member must have length less than or equal to 20000".into(),
        ),
        other => Error::InvalidIdentityToken(other.to_string()),
    }
}

impl Oidc {
    /// Keys from files for the given issuers (`https://host[/path]` → JWKS file); other
    /// issuers' keys are fetched over HTTPS (trusting the system's roots and, when given, the
    /// PEM certificates of `extra_roots`).
    pub fn new(files: Vec<(String, PathBuf)>, extra_roots: Option<&[u8]>) -> Result<Oidc> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::limited(3))
            .https_only(true);
        if let Some(pem) = extra_roots {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::InvalidParameter(format!("the OIDC CA bundle is not PEM: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| Error::Internal(format!("HTTPS client: {e}")))?;
        Ok(Oidc {
            files: files.into_iter().map(|(u, p)| (issuer_key(&u), p)).collect(),
            cache: RwLock::default(),
            http: Some(http),
        })
    }

    /// Verify `token` as an ID token of `provider` (issuer = the provider's URL, audience = one
    /// of its client ids) at `now_ms`.
    pub(crate) async fn verify(&self, token: &str, provider: &OidcProvider, now_ms: i64) -> Result<VerifiedToken> {
        let expect = Expectations::new(provider.url.clone(), provider.client_ids.iter().cloned());
        let now_s = now_ms.div_euclid(1000);
        let jwks = self.jwks(&provider.url, now_ms, false).await?;
        match jwt::verify(token, &jwks, &expect, now_s) {
            Ok(claims) => Ok(VerifiedToken { claims }),
            Err(JwtError::UnknownKey) => {
                // The provider may have rotated its keys.
                let jwks = self.jwks(&provider.url, now_ms, true).await?;
                jwt::verify(token, &jwks, &expect, now_s).map(|claims| VerifiedToken { claims }).map_err(jwt_error)
            }
            Err(e) => Err(jwt_error(e)),
        }
    }

    async fn jwks(&self, issuer: &str, now_ms: i64, refresh: bool) -> Result<Arc<Jwks>> {
        let key = issuer_key(issuer);
        if let Some(c) = self.cache.read().unwrap().get(&key) {
            let age = now_ms - c.read_at;
            if (!refresh && age < JWKS_TTL_MS) || (refresh && age < REFRESH_MIN_MS) {
                return Ok(c.jwks.clone());
            }
        }
        let bytes = match self.files.get(&key) {
            Some(path) => tokio::fs::read(path).await.map_err(|e| {
                Error::IdpCommunication(format!("The JWKS file configured for {issuer} cannot be read: {e}"))
            })?,
            None => self.discover(issuer).await?,
        };
        let jwks = Arc::new(Jwks::parse(&bytes).map_err(|e| {
            Error::IdpCommunication(format!("The identity provider's keys for {issuer} are unusable: {e}"))
        })?);
        let mut cache = self.cache.write().unwrap();
        if cache.len() >= 1000 {
            cache.clear();
        }
        cache.insert(key, Cached { jwks: jwks.clone(), read_at: now_ms });
        Ok(jwks)
    }

    /// Fetch an issuer's JWKS through its discovery document.
    async fn discover(&self, issuer: &str) -> Result<Vec<u8>> {
        let http = self.http.as_ref().ok_or_else(|| {
            Error::IdpCommunication(format!("No JWKS is configured for {issuer} and discovery is off"))
        })?;
        let fail = |what: &str, e: String| {
            Error::IdpCommunication(format!(
                "Couldn't retrieve verification key from your identity provider, {what}: {e}"
            ))
        };
        let doc_url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let doc = fetch(http, &doc_url).await.map_err(|e| fail("discovery document", e))?;
        let doc: serde_json::Value =
            serde_json::from_slice(&doc).map_err(|e| fail("discovery document", e.to_string()))?;
        let jwks_uri = doc["jwks_uri"]
            .as_str()
            .filter(|u| u.starts_with("https://"))
            .ok_or_else(|| fail("discovery document", "no https jwks_uri".into()))?;
        fetch(http, jwks_uri).await.map_err(|e| fail("JWKS", e))
    }
}

/// GET `url`, at most [`MAX_FETCH_BYTES`].
async fn fetch(http: &reqwest::Client, url: &str) -> std::result::Result<Vec<u8>, String> {
    let mut resp = http.get(url).send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if out.len() + chunk.len() > MAX_FETCH_BYTES {
            return Err("the document is too large".into());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
