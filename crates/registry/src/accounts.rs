//! Accounts, access keys and registry tokens.

use crate::{Error, Registry, Result};
use berth_auth::secret_box::SecretBox;
use berth_auth::sigv4::SecretKey;
use berth_auth::token::{self, Claims, TokenKey};
use berth_kms::MasterKey;
use berth_meta::{AccessKey, Namespace};
use ring::rand::{SecureRandom, SystemRandom};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// Server secrets derived from one server key: the sealing key for stored secrets and the
/// token-signing key. Every node of a deployment must use the same server key.
pub struct Keys {
    pub(crate) secrets: SecretBox,
    token: TokenKey,
    /// Signs layer download URLs (GetDownloadUrlForLayer).
    pub(crate) urls: ring::hmac::Key,
    /// Seals webhook signing secrets.
    webhooks: SecretBox,
    /// Seals KMS key material and derives the data keys of encryption at rest.
    master: Arc<MasterKey>,
}

impl Keys {
    /// Derive the keys from the server key (at least 32 bytes).
    pub fn from_server_key(server_key: &[u8]) -> Keys {
        let derive = |label: &[u8]| {
            let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, server_key);
            let tag = ring::hmac::sign(&k, label);
            let mut out = [0u8; 32];
            out.copy_from_slice(tag.as_ref());
            out
        };
        let token = TokenKey::new("k1", &derive(b"berth registry token key v1")).expect("valid token key");
        Keys {
            secrets: SecretBox::new(&derive(b"berth secret sealing key v1")),
            token,
            urls: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &derive(b"berth layer url key v1")),
            webhooks: SecretBox::new(&derive(b"berth webhook secret key v1")),
            // A stand-in until [`Keys::with_master_key`] sets the operator's (`berth serve` always
            // does): registries built in tests share it through the server key.
            master: Arc::new(MasterKey::from_bytes(derive(b"berth test master key v1"))),
        }
    }

    /// The same keys with the operator's master key (it seals KMS key material).
    pub fn with_master_key(mut self, master: MasterKey) -> Keys {
        self.master = Arc::new(master);
        self
    }

    /// The master key.
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// The box that seals webhook signing secrets at rest.
    pub fn webhook_secrets(&self) -> &SecretBox {
        &self.webhooks
    }
}

/// Verified Authorization headers remembered at most (the cache is cleared when full).
const AUTH_CACHE_ENTRIES: usize = 10_000;

/// Verified data-plane credentials: header value -> (identity, token expiry in epoch seconds).
/// Keyed by the whole header (kilobytes): hashed with foldhash (seeded per process), not SipHash.
pub(crate) type AuthCache =
    std::sync::RwLock<std::collections::HashMap<String, (Arc<Identity>, u64), foldhash::fast::RandomState>>;

/// Credentials as `berth admin` prints them.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Credentials {
    pub account_id: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// An authenticated principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub account_id: String,
    /// `arn:aws:iam::<account>:root`, `arn:aws:iam::<account>:user/<name>`, or for a role
    /// session `arn:aws:sts::<account>:assumed-role/<role>/<session>`.
    pub principal_arn: String,
    /// `AKIA...` for long-term keys, `ASIA...` for STS credentials, empty for an admin token.
    pub access_key_id: String,
    /// When temporary credentials expire (epoch seconds); `None` for long-term ones. Registry
    /// tokens minted with them expire no later.
    pub expires_at: Option<u64>,
}

/// A registry token ready to hand out.
#[derive(Debug, Clone)]
pub struct AuthorizationToken {
    /// base64(`AWS:<password>`).
    pub authorization_token: String,
    /// Epoch seconds.
    pub expires_at: u64,
}

pub(crate) fn random_chars(alphabet: &[u8], n: usize) -> String {
    let rng = SystemRandom::new();
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 1];
    while out.len() < n {
        rng.fill(&mut buf).expect("system randomness");
        // Rejection sampling keeps the distribution uniform.
        let limit = 256 - (256 % alphabet.len());
        if (buf[0] as usize) < limit {
            out.push(alphabet[buf[0] as usize % alphabet.len()] as char);
        }
    }
    out
}

/// A new random 12-digit account id (not starting with 0).
pub fn random_account_id() -> String {
    let first = random_chars(b"123456789", 1);
    first + &random_chars(b"0123456789", 11)
}

/// `true` for a 12-digit account id.
pub fn valid_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn principal_arn(account: &str, user: Option<&str>) -> String {
    match user {
        None => format!("arn:aws:iam::{account}:root"),
        Some(u) => format!("arn:aws:iam::{account}:user/{u}"),
    }
}

impl Registry {
    fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Create an account and its root access key. `Error::InvalidParameter` for a malformed id,
    /// `Error::AccountExists` when it exists.
    pub async fn create_account(&self, account_id: Option<&str>) -> Result<Credentials> {
        let id = account_id.map(str::to_string).unwrap_or_else(random_account_id);
        if !valid_account_id(&id) {
            return Err(Error::InvalidParameter(format!("account id '{id}' must be 12 digits")));
        }
        if !self.meta.create_account(&id, self.now()).await? {
            return Err(Error::AccountExists(id));
        }
        self.create_access_key(&id, None, None).await
    }

    /// Add an access key to an account (`user` `None` = the root). `fixed` provisions a given
    /// key id and secret (bootstrap from the environment) instead of generating them.
    pub async fn create_access_key(
        &self,
        account_id: &str,
        user: Option<&str>,
        fixed: Option<(&str, &str)>,
    ) -> Result<Credentials> {
        if !self.meta.account_exists(account_id).await? {
            return Err(Error::AccountUnknown(account_id.to_string()));
        }
        let (akid, secret) = match fixed {
            Some((a, s)) => (a.to_string(), s.to_string()),
            None => (
                format!("AKIA{}", random_chars(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)),
                random_chars(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 40),
            ),
        };
        let sealed = self
            .keys()
            .secrets
            .seal(secret.as_bytes(), akid.as_bytes())
            .map_err(|e| Error::Internal(format!("sealing secret: {e:?}")))?;
        self.meta
            .put_access_key(&AccessKey {
                access_key_id: akid.clone(),
                account_id: account_id.to_string(),
                user_name: user.map(str::to_string),
                secret_enc: sealed,
                status: "Active".into(),
                created_at: self.now(),
            })
            .await?;
        Ok(Credentials { account_id: account_id.to_string(), access_key_id: akid, secret_access_key: secret })
    }

    /// Whether an access key id exists.
    pub async fn access_key_exists(&self, access_key_id: &str) -> Result<bool> {
        Ok(self.meta.access_key(access_key_id).await?.is_some())
    }

    /// The identity and secret of an active access key, for signature verification.
    pub async fn access_key_secret(&self, access_key_id: &str) -> Result<Option<(Identity, SecretKey)>> {
        let Some(k) = self.meta.access_key(access_key_id).await? else {
            return Ok(None);
        };
        if k.status != "Active" {
            return Ok(None);
        }
        let secret = self.keys().secrets.open(&k.secret_enc, k.access_key_id.as_bytes()).map_err(|_| {
            Error::Internal(format!("access key {} cannot be unsealed with this server key", k.access_key_id))
        })?;
        let secret = String::from_utf8(secret).map_err(|_| Error::Internal("sealed secret is not UTF-8".into()))?;
        let identity = Identity {
            principal_arn: principal_arn(&k.account_id, k.user_name.as_deref()),
            account_id: k.account_id,
            access_key_id: k.access_key_id,
            expires_at: None,
        };
        Ok(Some((identity, SecretKey::new(secret))))
    }

    /// Mint a 12-hour registry token for `identity` (expiring with its temporary credentials when
    /// they expire sooner).
    pub fn mint_token(&self, identity: &Identity) -> AuthorizationToken {
        let now = UNIX_EPOCH + Duration::from_millis(self.now().max(0) as u64);
        let mut claims = Claims::new(&identity.account_id, &identity.principal_arn, &identity.access_key_id, now);
        if let Some(limit) = identity.expires_at {
            claims.expires_at = claims.expires_at.min(limit);
        }
        let password = token::mint(&claims, &self.keys().token);
        AuthorizationToken { authorization_token: token::authorization_token(&password), expires_at: claims.expires_at }
    }

    /// Authenticate a data-plane `Authorization` header (`Basic base64(AWS:<password>)`).
    /// Stateless: verifies the token's signature and expiry, no database lookup.
    ///
    /// Verified credentials are remembered (keyed by the exact header value, until the token
    /// expires) so that repeated requests skip decoding and the MAC: a hit is one hash lookup.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Arc<Identity>> {
        let header = authorization.ok_or(Error::Unauthenticated)?;
        let now_s = (self.now().max(0) / 1000) as u64;
        if let Some((identity, expires_at)) = self.auth_cache.read().unwrap().get(header) {
            if now_s < *expires_at {
                return Ok(identity.clone());
            }
            return Err(Error::TokenExpired);
        }
        let cred =
            header.strip_prefix("Basic ").or_else(|| header.strip_prefix("basic ")).ok_or(Error::Unauthenticated)?;
        let password = token::password_from_basic(cred.trim()).map_err(|_| Error::Unauthenticated)?;
        let (identity, expires_at) = self.verify_password(&password)?;
        let identity = Arc::new(identity);
        let mut cache = self.auth_cache.write().unwrap();
        if cache.len() >= AUTH_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(header.to_string(), (identity.clone(), expires_at));
        Ok(identity)
    }

    fn verify_password(&self, password: &str) -> Result<(Identity, u64)> {
        let now = UNIX_EPOCH + Duration::from_millis(self.now().max(0) as u64);
        match token::verify(password, now, &self.keys().token) {
            Ok(c) => Ok((
                Identity {
                    account_id: c.account_id,
                    principal_arn: c.principal_arn,
                    access_key_id: c.access_key_id,
                    expires_at: None,
                },
                c.expires_at,
            )),
            Err(token::TokenError::Expired) => Err(Error::TokenExpired),
            Err(_) => Err(Error::Unauthenticated),
        }
    }

    /// The password (`aws ecr get-login-password`) of a fresh token for an account's root.
    pub async fn login_password(&self, account_id: &str) -> Result<String> {
        if !self.meta.account_exists(account_id).await? {
            return Err(Error::AccountUnknown(account_id.to_string()));
        }
        let identity = Identity {
            account_id: account_id.to_string(),
            principal_arn: principal_arn(account_id, None),
            access_key_id: String::new(),
            expires_at: None,
        };
        let token = self.mint_token(&identity);
        token::password_from_basic(&token.authorization_token)
            .map_err(|_| Error::Internal("a minted token does not decode".into()))
    }

    /// The namespace a data-plane request addresses: `<account>.dkr.ecr.<region>.<domain>` when a
    /// registry domain is configured and the Host matches it, else the default account and first
    /// region. `None` for a Host under the domain that names no hosted region or no valid account.
    pub fn data_plane_namespace(&self, host: &str) -> Option<Namespace> {
        self.data_plane_host(host).map(|(ns, _)| ns)
    }

    /// The namespace a data-plane `Host` addresses, and whether the host names it: a per-account
    /// host `<account>.dkr.ecr.<region>.<domain>` does (`true`); any other host is the plain
    /// address (`false`), which serves the account of the credentials presented and, for
    /// anonymous callers, the default account returned here. `None` for a per-account host of
    /// a region this deployment does not host.
    pub fn data_plane_host(&self, host: &str) -> Option<(Namespace, bool)> {
        let plain = Some((self.settings.namespace.clone(), false));
        let Some(domain) = &self.settings.registry_domain else {
            return plain;
        };
        let domain = strip_port(domain);
        let bare = strip_port(host);
        let Some(prefix) = bare.strip_suffix(domain).and_then(|p| p.strip_suffix('.')) else {
            return plain;
        };
        let (account, region) = prefix.split_once(".dkr.ecr.")?;
        (valid_account_id(account) && self.settings.regions.iter().any(|r| r == region))
            .then(|| (Namespace { account_id: account.to_string(), region: region.to_string() }, true))
    }

    /// The registry host of a namespace: `<account>.dkr.ecr.<region>.<domain>` with a registry
    /// domain (taken verbatim: a port the public address needs is part of the domain, never the
    /// one Berth listens on), else `fallback` (the host the client addressed).
    pub fn registry_host(&self, ns: &Namespace, fallback: &str) -> String {
        match &self.settings.registry_domain {
            None => fallback.to_string(),
            Some(d) => format!("{}.dkr.ecr.{}.{d}", ns.account_id, ns.region),
        }
    }

    /// The deployment's default account (the data plane's registry when no registry domain is
    /// configured).
    pub fn default_account(&self) -> &str {
        &self.settings.namespace.account_id
    }
}

/// `host` without a trailing `:port`.
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}
