//! STS: temporary credentials. AssumeRole (the caller's identity and the role's trust policy
//! decide), AssumeRoleWithWebIdentity (an OIDC ID token verified against its provider's keys,
//! the trust policy deciding on its claims), GetSessionToken, and the lookup that verifies
//! requests signed with temporary credentials.
//!
//! Sessions are stored (`sts_sessions`): the secret sealed under the server key, the session
//! token only as its SHA-256. A session is valid until it expires, while its role still exists
//! as the role it was issued for (a deleted or re-created role ends its sessions); its
//! permissions are the role's policies at the time of each request, limited by its session
//! policies.

use crate::accounts::{Identity, random_chars};
use crate::authz::Caller;
use crate::iam::aws_managed_document;
use crate::roles::parse_trust_policy;
use crate::{Error, Registry, Result};
use base64::Engine;
use berth_auth::sigv4::SecretKey;
use berth_meta::{Role, StsSession};
use berth_policy::{Policy, PolicyKind};
use serde_json::json;
use std::sync::Arc;

/// Shortest session (seconds).
pub const MIN_DURATION: i64 = 900;
/// Default AssumeRole session (seconds).
pub const DEFAULT_ROLE_DURATION: i64 = 3600;
/// Longest session of a role assumed with role credentials (role chaining).
pub const CHAINED_MAX_DURATION: i64 = 3600;
/// GetSessionToken: default, and longest for users and for the root.
pub const DEFAULT_SESSION_TOKEN_DURATION: i64 = 43200;
const MAX_USER_SESSION_TOKEN_DURATION: i64 = 129_600;
const MAX_ROOT_SESSION_TOKEN_DURATION: i64 = 3600;
/// Plain text of inline and managed session policies together, at most.
pub const MAX_SESSION_POLICY: usize = 2048;
/// Managed session policies at most.
pub const MAX_POLICY_ARNS: usize = 10;
/// Session tags at most.
pub const MAX_SESSION_TAGS: usize = 50;
/// Web identity tokens longer than this are refused unread (STS's model: 20000).
pub const MAX_WEB_IDENTITY_TOKEN: usize = 20_000;
/// Expired sessions are kept this long (for a clear "expired" answer), then purged.
const PURGE_AFTER_MS: i64 = 24 * 3600 * 1000;

const KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Whether an access key id is one of STS's temporary ones (`ASIA...`).
pub fn is_session_key(access_key_id: &str) -> bool {
    access_key_id.starts_with("ASIA")
}

/// `arn:aws:sts::<account>:assumed-role/<role>/<session>`.
pub fn session_arn(account: &str, role: &str, session: &str) -> String {
    format!("arn:aws:sts::{account}:assumed-role/{role}/{session}")
}

/// A session's tags from their stored form.
pub(crate) fn session_tags(stored: &str) -> Vec<(String, String)> {
    stored_tags(stored).into_iter().map(|(k, v, _)| (k, v)).collect()
}

/// (key, value, transitive) from the stored form.
fn stored_tags(stored: &str) -> Vec<(String, String, bool)> {
    serde_json::from_str::<Vec<serde_json::Value>>(stored)
        .unwrap_or_default()
        .iter()
        .filter(|t| t["Internal"].as_bool() != Some(true))
        .filter_map(|t| {
            Some((
                t["Key"].as_str()?.to_string(),
                t["Value"].as_str()?.to_string(),
                t["Transitive"].as_bool().unwrap_or(false),
            ))
        })
        .collect()
}

/// The provider of a web identity session (`aws:FederatedProvider`), kept as an internal
/// entry of its stored tags.
pub(crate) fn federated_provider(s: &StsSession) -> Option<String> {
    serde_json::from_str::<Vec<serde_json::Value>>(&s.tags)
        .ok()?
        .iter()
        .find(|t| t["Internal"].as_bool() == Some(true) && t["Key"] == PROVIDER_TAG)
        .and_then(|t| t["Value"].as_str().map(str::to_string))
}

/// The internal stored tag naming a web identity session's provider.
const PROVIDER_TAG: &str = "berth:FederatedProvider";

/// Temporary credentials.
#[derive(Clone)]
pub struct TempCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// Epoch milliseconds.
    pub expiration: i64,
}

impl std::fmt::Debug for TempCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

/// What AssumeRole and AssumeRoleWithWebIdentity return.
#[derive(Debug, Clone)]
pub struct AssumedRole {
    pub credentials: TempCredentials,
    /// `<role id>:<session name>`.
    pub assumed_role_id: String,
    /// The session ARN.
    pub arn: String,
    /// How full the session policies and tags are, in percent (when any were given).
    pub packed_policy_size: Option<u32>,
    pub source_identity: Option<String>,
}

/// AssumeRole's parameters.
#[derive(Debug, Clone, Default)]
pub struct AssumeRoleParams<'a> {
    pub role_arn: &'a str,
    pub session_name: &'a str,
    pub duration: Option<i64>,
    pub external_id: Option<&'a str>,
    pub policy: Option<&'a str>,
    pub policy_arns: Vec<String>,
    pub tags: Vec<(String, String)>,
    pub transitive_tag_keys: Vec<String>,
    pub source_identity: Option<&'a str>,
}

/// AssumeRoleWithWebIdentity's parameters.
#[derive(Debug, Clone, Default)]
pub struct WebIdentityParams<'a> {
    pub role_arn: &'a str,
    pub session_name: &'a str,
    pub token: &'a str,
    pub duration: Option<i64>,
    pub policy: Option<&'a str>,
    pub policy_arns: Vec<String>,
    pub provider_id: Option<&'a str>,
}

/// What AssumeRoleWithWebIdentity adds to [`AssumedRole`].
#[derive(Debug, Clone)]
pub struct WebIdentity {
    pub role: AssumedRole,
    /// The token's `sub`.
    pub subject: String,
    /// The token's `aud` (the client id that matched).
    pub audience: String,
    /// The token's `iss`.
    pub provider: String,
}

/// Verified sessions remembered per node at most (expired ones are dropped first when full).
const SESSION_CACHE_ENTRIES: usize = 10_000;

/// A session as signature verification needs it.
pub(crate) struct CachedSession {
    expires_at: i64,
    identity: Identity,
    secret: SecretKey,
    token_sha256: String,
}

/// Sessions by access key id.
pub(crate) type SessionCache = std::sync::RwLock<std::collections::HashMap<String, Arc<CachedSession>>>;

/// The key that verifies a SigV4 signature: an access key's identity and secret, and for
/// temporary credentials the SHA-256 of their session token, which the request must carry.
pub struct SigningKey {
    pub identity: Identity,
    pub secret: SecretKey,
    /// Hex SHA-256 of the session token (temporary credentials only).
    pub session_token_sha256: Option<String>,
}

fn validation(field: &str, value: impl std::fmt::Display, constraint: &str) -> Error {
    Error::Validation(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
    ))
}

fn check_session_name(name: &str) -> Result<()> {
    let n = name.chars().count();
    if n < 2 {
        return Err(validation("roleSessionName", name, "Member must have length greater than or equal to 2"));
    }
    if n > 64 {
        return Err(validation("roleSessionName", name, "Member must have length less than or equal to 64"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)) {
        return Err(validation(
            "roleSessionName",
            name,
            "Member must satisfy regular expression pattern: [\\w+=,.@-]*",
        ));
    }
    Ok(())
}

fn check_duration(d: i64, max_model: i64) -> Result<()> {
    if d < MIN_DURATION {
        return Err(validation(
            "durationSeconds",
            d,
            &format!("Member must have value greater than or equal to {MIN_DURATION}"),
        ));
    }
    if d > max_model {
        return Err(validation(
            "durationSeconds",
            d,
            &format!("Member must have value less than or equal to {max_model}"),
        ));
    }
    Ok(())
}

fn check_external_id(e: &str) -> Result<()> {
    let n = e.chars().count();
    if !(2..=1224).contains(&n) || !e.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c)) {
        return Err(validation("externalId", e, "Member must satisfy regular expression pattern: [\\w+=,.@:\\/-]*"));
    }
    Ok(())
}

fn check_source_identity(s: &str) -> Result<()> {
    let n = s.chars().count();
    if !(2..=64).contains(&n) || !s.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)) {
        return Err(validation("sourceIdentity", s, "Member must satisfy regular expression pattern: [\\w+=,.@-]*"));
    }
    if s.to_ascii_lowercase().starts_with("aws:") {
        return Err(Error::Validation("SourceIdentity cannot begin with 'aws:'".into()));
    }
    Ok(())
}

/// (account, role path+name) of a role ARN, or a validation error.
fn parse_role_arn(arn: &str) -> Result<(&str, &str)> {
    let bad = || Error::Validation(format!("{arn} is invalid"));
    if arn.len() < 20 {
        return Err(validation("roleArn", arn, "Member must have length greater than or equal to 20"));
    }
    let rest = arn.strip_prefix("arn:aws:iam::").ok_or_else(bad)?;
    let (account, resource) = rest.split_once(':').ok_or_else(bad)?;
    let path_name = resource.strip_prefix("role/").ok_or_else(bad)?;
    if !crate::accounts::valid_account_id(account) || path_name.is_empty() {
        return Err(bad());
    }
    Ok((account, path_name))
}

/// Parse a JWT's payload without verifying it, for its `iss` only (to find the provider whose
/// keys then verify it).
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["iss"].as_str().map(str::to_string)
}

/// Session policies as given: the inline document and the managed ARNs, validated, with their
/// packed size in percent.
struct SessionPolicies {
    stored: Option<String>,
    packed_percent: Option<u32>,
}

impl Registry {
    /// Validate session policies and tags; their stored form.
    async fn session_policies_of(
        &self,
        role_account: &str,
        policy: Option<&str>,
        arns: &[String],
        tags: &[(String, String)],
    ) -> Result<SessionPolicies> {
        if let Some(p) = policy {
            if p.is_empty() || p.chars().count() > MAX_SESSION_POLICY {
                return Err(validation(
                    "policy",
                    "",
                    &format!("Member must have length less than or equal to {MAX_SESSION_POLICY}"),
                ));
            }
            Policy::parse(p, PolicyKind::Identity).map_err(|e| Error::MalformedPolicyDocument(e.to_string()))?;
        }
        if arns.len() > MAX_POLICY_ARNS {
            return Err(validation(
                "policyArns",
                arns.len(),
                &format!("Member must have length less than or equal to {MAX_POLICY_ARNS}"),
            ));
        }
        let mut managed_chars = 0;
        for arn in arns {
            let doc = match aws_managed_document(arn) {
                Some(d) => d.to_string(),
                None => match self.meta.managed_policy(arn).await? {
                    Some(p) if p.account_id == role_account => p.document,
                    _ => {
                        return Err(Error::InvalidParameter(format!(
                            "Policy {arn} does not exist or is not attachable."
                        )));
                    }
                },
            };
            managed_chars += arn.len() + crate::iam::policy_size(&doc) / 8;
        }
        // Berth's packing: the plain text of the inline policy, the ARNs and the tags against
        // STS's 2,048-character allowance.
        let tag_chars: usize = tags.iter().map(|(k, v)| k.len() + v.len()).sum();
        let used = policy.map(crate::iam::policy_size).unwrap_or(0) + managed_chars + tag_chars;
        let percent = (used * 100).div_ceil(MAX_SESSION_POLICY) as u32;
        if percent > 100 {
            return Err(Error::PackedPolicyTooLarge(format!(
                "Packed policy consumes {percent}% of allotted space, please use smaller policy."
            )));
        }
        let any = policy.is_some() || !arns.is_empty();
        let stored =
            any.then(|| json!({"documents": policy.into_iter().collect::<Vec<_>>(), "arns": arns}).to_string());
        let packed_percent = (any || !tags.is_empty()).then_some(percent);
        Ok(SessionPolicies { stored, packed_percent })
    }

    /// Issue and store a session.
    #[allow(clippy::too_many_arguments)]
    async fn issue(
        &self,
        account: &str,
        kind: &str,
        principal: Option<(&str, &str)>,
        session_name: &str,
        duration_secs: i64,
        policy: Option<String>,
        tags: String,
        source_identity: Option<&str>,
    ) -> Result<TempCredentials> {
        let access_key_id = format!("ASIA{}", random_chars(KEY_ALPHABET, 16));
        let secret = random_chars(SECRET_ALPHABET, 40);
        let mut raw = [0u8; 96];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
            .map_err(|_| Error::Internal("system randomness failed".into()))?;
        let session_token = base64::engine::general_purpose::STANDARD.encode(raw);
        let sealed = self
            .keys
            .secrets
            .seal(secret.as_bytes(), access_key_id.as_bytes())
            .map_err(|e| Error::Internal(format!("sealing secret: {e:?}")))?;
        let now = self.now();
        let expiration = now + duration_secs * 1000;
        self.meta
            .put_session(
                &StsSession {
                    access_key_id: access_key_id.clone(),
                    account_id: account.to_string(),
                    kind: kind.to_string(),
                    principal_name: principal.map(|(n, _)| n.to_string()),
                    principal_id: principal.map(|(_, i)| i.to_string()),
                    session_name: session_name.to_string(),
                    secret_enc: sealed,
                    token_sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, session_token.as_bytes())),
                    policy,
                    tags,
                    source_identity: source_identity.map(str::to_string),
                    created_at: now,
                    expires_at: expiration,
                },
                now - PURGE_AFTER_MS,
            )
            .await?;
        Ok(TempCredentials { access_key_id, secret_access_key: secret, session_token, expiration })
    }

    /// Issue and store a session of `role`.
    async fn issue_role_session(
        &self,
        role: &Role,
        session_name: &str,
        duration: i64,
        policies: SessionPolicies,
        tags: String,
        source_identity: Option<String>,
    ) -> Result<AssumedRole> {
        let credentials = self
            .issue(
                &role.account_id,
                "role",
                Some((&role.name, &role.id)),
                session_name,
                duration,
                policies.stored,
                tags,
                source_identity.as_deref(),
            )
            .await?;
        Ok(AssumedRole {
            credentials,
            assumed_role_id: format!("{}:{}", role.id, session_name),
            arn: session_arn(&role.account_id, &role.name, session_name),
            packed_policy_size: policies.packed_percent,
            source_identity,
        })
    }

    /// The role a role ARN names, or AccessDenied naming the caller (AWS does not tell a missing
    /// role from a refused one).
    async fn role_for(&self, arn: &str, denied: impl Fn() -> Error) -> Result<Role> {
        let (account, path_name) = parse_role_arn(arn)?;
        let name = path_name.rsplit('/').next().unwrap_or(path_name);
        match self.meta.role(account, name).await? {
            Some(r) if r.arn() == arn => Ok(r),
            _ => Err(denied()),
        }
    }

    /// AssumeRole: `caller` asks for a session of the role `p.role_arn`. The role's trust policy
    /// and, for a user or role session, the caller's identity policies decide (as AWS: a trust
    /// policy naming the caller suffices in its own account; across accounts both sides must
    /// allow). Session tags also need `sts:TagSession`.
    pub async fn assume_role(&self, caller: &Caller<'_>, p: AssumeRoleParams<'_>) -> Result<AssumedRole> {
        let identity = caller.identity.ok_or(Error::Unauthenticated)?;
        check_session_name(p.session_name)?;
        parse_role_arn(p.role_arn)?;
        if let Some(e) = p.external_id {
            check_external_id(e)?;
        }
        if let Some(s) = p.source_identity {
            check_source_identity(s)?;
        }
        let duration = p.duration.unwrap_or(DEFAULT_ROLE_DURATION);
        check_duration(duration, 43200)?;
        crate::roles::check_tags(&p.tags).map_err(|e| match e {
            Error::LimitExceeded(_) => validation(
                "tags",
                p.tags.len(),
                &format!("Member must have length less than or equal to {MAX_SESSION_TAGS}"),
            ),
            other => other,
        })?;
        for k in &p.transitive_tag_keys {
            if !p.tags.iter().any(|(t, _)| t.eq_ignore_ascii_case(k)) {
                return Err(Error::InvalidParameter(format!(
                    "The specified transitive tag key must be included in the requested tags: {k}"
                )));
            }
        }
        let denied = || {
            Error::Denied(format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {}",
                identity.principal_arn, p.role_arn
            ))
        };
        let role = self.role_for(p.role_arn, denied).await?;
        // Role chaining: at most an hour; transitive tags and the source identity carry over.
        let caller_session = if is_session_key(&identity.access_key_id) {
            self.meta.session(&identity.access_key_id).await?
        } else {
            None
        };
        let chained = caller_session.as_ref().is_some_and(|s| s.kind == "role");
        if chained && duration > CHAINED_MAX_DURATION {
            return Err(Error::Validation(
                "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining."
                    .into(),
            ));
        }
        if duration > role.max_session_duration {
            return Err(Error::Validation(
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.".into(),
            ));
        }
        let inherited: Vec<(String, String, bool)> = caller_session
            .as_ref()
            .filter(|_| chained)
            .map(|s| stored_tags(&s.tags).into_iter().filter(|(_, _, t)| *t).collect())
            .unwrap_or_default();
        for (k, _, _) in &inherited {
            if p.tags.iter().any(|(t, _)| t.eq_ignore_ascii_case(k)) {
                return Err(Error::InvalidParameter(format!(
                    "One or more of the specified tag keys conflict with the transitive tag keys of the calling session: {k}"
                )));
            }
        }
        let inherited_source = caller_session.as_ref().and_then(|s| s.source_identity.clone());
        if let (Some(old), Some(new)) = (&inherited_source, p.source_identity)
            && old != new
        {
            return Err(Error::Denied("The source identity of a session cannot be changed by role chaining.".into()));
        }
        let source_identity = inherited_source.or(p.source_identity.map(str::to_string));

        let trust = parse_trust_policy(&role.trust_policy).map_err(|_| denied())?;
        let mut extra: Vec<(String, Vec<String>)> = vec![("sts:RoleSessionName".into(), vec![p.session_name.into()])];
        if let Some(e) = p.external_id {
            extra.push(("sts:ExternalId".into(), vec![e.into()]));
        }
        if let Some(s) = &source_identity {
            extra.push(("sts:SourceIdentity".into(), vec![s.clone()]));
        }
        for (k, v) in &p.tags {
            extra.push((format!("aws:RequestTag/{k}"), vec![v.clone()]));
        }
        if !p.tags.is_empty() {
            extra.push(("aws:TagKeys".into(), p.tags.iter().map(|(k, _)| k.clone()).collect()));
            extra.push(("sts:TransitiveTagKeys".into(), p.transitive_tag_keys.clone()));
        }
        self.authorize_on_role(caller, None, "sts:AssumeRole", &role, &trust, &extra).await?;
        if !p.tags.is_empty() || !inherited.is_empty() {
            self.authorize_on_role(caller, None, "sts:TagSession", &role, &trust, &extra).await?;
        }
        if p.source_identity.is_some() {
            self.authorize_on_role(caller, None, "sts:SetSourceIdentity", &role, &trust, &extra).await?;
        }
        let policies = self.session_policies_of(&role.account_id, p.policy, &p.policy_arns, &p.tags).await?;
        let mut tags: Vec<serde_json::Value> =
            inherited.iter().map(|(k, v, _)| json!({"Key": k, "Value": v, "Transitive": true})).collect();
        for (k, v) in &p.tags {
            let transitive = p.transitive_tag_keys.iter().any(|t| t.eq_ignore_ascii_case(k));
            tags.push(json!({"Key": k, "Value": v, "Transitive": transitive}));
        }
        let tags = serde_json::Value::Array(tags).to_string();
        self.issue_role_session(&role, p.session_name, duration, policies, tags, source_identity).await
    }

    /// AssumeRoleWithWebIdentity: no AWS credentials; the OIDC ID token `p.token` is verified
    /// against the keys of the provider registered for its issuer in the role's account, and the
    /// role's trust policy decides with the provider as principal and the token's claims as
    /// `<provider>:sub`, `:aud`, `:amr` condition keys.
    pub async fn assume_role_with_web_identity(
        &self,
        caller: &Caller<'_>,
        p: WebIdentityParams<'_>,
    ) -> Result<WebIdentity> {
        check_session_name(p.session_name)?;
        parse_role_arn(p.role_arn)?;
        if p.token.len() < 4 {
            return Err(validation("webIdentityToken", "***", "Member must have length greater than or equal to 4"));
        }
        if p.token.len() > MAX_WEB_IDENTITY_TOKEN {
            return Err(validation(
                "webIdentityToken",
                "***",
                &format!("Member must have length less than or equal to {MAX_WEB_IDENTITY_TOKEN}"),
            ));
        }
        if p.provider_id.is_some() {
            return Err(Error::InvalidParameter(
                "ProviderId is only for OAuth 2.0 access tokens of Login with Amazon and Facebook, which Berth does not support; OpenID Connect ID tokens take no ProviderId."
                    .into(),
            ));
        }
        let duration = p.duration.unwrap_or(DEFAULT_ROLE_DURATION);
        check_duration(duration, 43200)?;
        let denied = || Error::Denied("Not authorized to perform sts:AssumeRoleWithWebIdentity".into());
        let role = self.role_for(p.role_arn, denied).await?;
        if duration > role.max_session_duration {
            return Err(Error::Validation(
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.".into(),
            ));
        }
        let issuer = unverified_issuer(p.token)
            .ok_or_else(|| Error::InvalidIdentityToken("The ID Token provided is not a valid JWT.".into()))?;
        let provider_key = berth_meta::OidcProvider::url_key(&issuer);
        let provider_arn = format!("arn:aws:iam::{}:oidc-provider/{provider_key}", role.account_id);
        let provider = match self.meta.oidc_provider(&provider_arn).await? {
            Some(pr) => pr,
            None => {
                return Err(Error::InvalidIdentityToken(format!(
                    "No OpenIDConnect provider found in your account for {issuer}"
                )));
            }
        };
        let claims = self.oidc.verify(p.token, &provider, self.now()).await?;
        let subject = claims.subject().to_string();
        let audience = claims.audience_matched(&provider.client_ids).unwrap_or_default();
        let extra: Vec<(String, Vec<String>)> = claims.condition_values(&provider_key);
        let trust = parse_trust_policy(&role.trust_policy).map_err(|_| denied())?;
        self.authorize_on_role(caller, Some(&provider.arn), "sts:AssumeRoleWithWebIdentity", &role, &trust, &extra)
            .await
            .map_err(|e| match e {
                Error::Denied(_) => denied(),
                other => other,
            })?;
        let policies = self.session_policies_of(&role.account_id, p.policy, &p.policy_arns, &[]).await?;
        let tags = json!([{"Key": PROVIDER_TAG, "Value": provider.arn, "Transitive": false, "Internal": true}]);
        let role = self.issue_role_session(&role, p.session_name, duration, policies, tags.to_string(), None).await?;
        Ok(WebIdentity { role, subject, audience, provider: issuer })
    }

    /// GetSessionToken: temporary credentials with the caller's own permissions (a user's or the
    /// root's), for long-term credentials only.
    pub async fn get_session_token(&self, identity: &Identity, duration: Option<i64>) -> Result<TempCredentials> {
        if is_session_key(&identity.access_key_id) || identity.access_key_id.is_empty() {
            return Err(Error::Denied("Cannot call GetSessionToken with session credentials".into()));
        }
        let key = self.meta.access_key(&identity.access_key_id).await?.ok_or(Error::Unauthenticated)?;
        let max =
            if key.user_name.is_none() { MAX_ROOT_SESSION_TOKEN_DURATION } else { MAX_USER_SESSION_TOKEN_DURATION };
        let duration = duration.unwrap_or(DEFAULT_SESSION_TOKEN_DURATION.min(max));
        check_duration(duration, MAX_USER_SESSION_TOKEN_DURATION)?;
        let duration = duration.min(max);
        let principal = match &key.user_name {
            Some(u) => {
                let user = self.get_user(&key.account_id, u).await?;
                Some((user.name, user.id))
            }
            None => None,
        };
        let session_name = principal.as_ref().map(|(n, _)| n.clone()).unwrap_or_else(|| "root".into());
        self.issue(
            &key.account_id,
            "user",
            principal.as_ref().map(|(n, i)| (n.as_str(), i.as_str())),
            &session_name,
            duration,
            None,
            "[]".into(),
            None,
        )
        .await
    }

    /// The key that verifies a request signed with `access_key_id`: an active access key, or
    /// live temporary credentials. `None` for an unknown or inactive key;
    /// `Error::CredentialsExpired` for expired temporary credentials.
    pub async fn signing_key(&self, access_key_id: &str) -> Result<Option<SigningKey>> {
        if !is_session_key(access_key_id) {
            return Ok(self.access_key_secret(access_key_id).await?.map(|(identity, secret)| SigningKey {
                identity,
                secret,
                session_token_sha256: None,
            }));
        }
        if let Some(k) = self.sessions.read().unwrap().get(access_key_id).cloned() {
            return self.live(k);
        }
        let Some(s) = self.meta.session(access_key_id).await? else { return Ok(None) };
        let secret = self.keys.secrets.open(&s.secret_enc, s.access_key_id.as_bytes()).map_err(|_| {
            Error::Internal(format!("session {} cannot be unsealed with this server key", s.access_key_id))
        })?;
        let secret = String::from_utf8(secret).map_err(|_| Error::Internal("sealed secret is not UTF-8".into()))?;
        let principal_arn = match (s.kind.as_str(), &s.principal_name) {
            ("role", Some(role)) => session_arn(&s.account_id, role, &s.session_name),
            (_, Some(user)) => match self.meta.user(&s.account_id, user).await? {
                Some(u) => format!("arn:aws:iam::{}:user{}{}", u.account_id, u.path, u.name),
                None => return Ok(None),
            },
            _ => format!("arn:aws:iam::{}:root", s.account_id),
        };
        let key = Arc::new(CachedSession {
            expires_at: s.expires_at,
            identity: Identity {
                account_id: s.account_id,
                principal_arn,
                access_key_id: s.access_key_id.clone(),
                expires_at: Some((s.expires_at / 1000) as u64),
            },
            secret: SecretKey::new(secret),
            token_sha256: s.token_sha256,
        });
        // A session never changes once issued: it is remembered until it expires. (Whether its
        // role still stands is decided per request by authorization, from the epoch-checked
        // principal cache.)
        let mut cache = self.sessions.write().unwrap();
        if cache.len() >= SESSION_CACHE_ENTRIES {
            let now = self.now();
            cache.retain(|_, v| v.expires_at > now);
            if cache.len() >= SESSION_CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(s.access_key_id, key.clone());
        drop(cache);
        self.live(key)
    }

    fn live(&self, k: Arc<CachedSession>) -> Result<Option<SigningKey>> {
        if self.now() >= k.expires_at {
            return Err(Error::CredentialsExpired);
        }
        Ok(Some(SigningKey {
            identity: k.identity.clone(),
            secret: k.secret.clone(),
            session_token_sha256: Some(k.token_sha256.clone()),
        }))
    }

    /// GetCallerIdentity of a caller: its `UserId` (the account for the root, the user id for a
    /// user, `<role id>:<session>` for a role session) and its ARN (a user's with its path).
    pub async fn caller_identity(&self, identity: &Identity) -> Result<(String, String)> {
        if is_session_key(&identity.access_key_id)
            && let Some(s) = self.meta.session(&identity.access_key_id).await?
            && s.kind == "role"
        {
            let id = s.principal_id.unwrap_or_default();
            return Ok((format!("{id}:{}", s.session_name), identity.principal_arn.clone()));
        }
        match crate::authz::user_name_of(&identity.principal_arn) {
            Some(u) => {
                let user = self.get_user(&identity.account_id, u).await?;
                let arn = format!("arn:aws:iam::{}:user{}{}", user.account_id, user.path, user.name);
                Ok((user.id, arn))
            }
            None => Ok((identity.account_id.clone(), identity.principal_arn.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_parse() {
        assert_eq!(parse_role_arn("arn:aws:iam::123456789012:role/ci/deploy").unwrap(), ("123456789012", "ci/deploy"));
        assert!(parse_role_arn("arn:aws:iam::123456789012:user/deploy").is_err());
        assert!(parse_role_arn("arn:aws:iam::12345:role/deploy-role-x").is_err());
        assert!(parse_role_arn("short").is_err());
    }

    #[test]
    fn session_names_follow_the_model() {
        assert!(check_session_name("run-1").is_ok());
        assert!(check_session_name("a").is_err());
        assert!(check_session_name(&"a".repeat(65)).is_err());
        assert!(check_session_name("has space").is_err());
    }

    #[test]
    fn stored_tags_round_trip() {
        let s = r#"[{"Key":"team","Value":"a","Transitive":true},{"Key":"x","Value":"y"}]"#;
        assert_eq!(stored_tags(s), vec![("team".into(), "a".into(), true), ("x".into(), "y".into(), false)]);
        assert_eq!(session_tags(s), vec![("team".into(), "a".into()), ("x".into(), "y".into())]);
    }
}
