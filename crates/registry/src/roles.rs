//! IAM roles and OIDC identity providers, with IAM's names, limits and errors. A role's inline
//! and attached policies go through the same operations as users' and groups'
//! ([`berth_meta::Owner::Role`]); sessions of a role are issued by [`crate::sts`].

use crate::iam::{Page, check_name, check_path, decode_marker, max_items, paginate, policy_size};
use crate::{Error, Registry, Result};
use berth_meta::{OidcProvider, Owner, Role};
use berth_policy::{Policy, PolicyKind};

/// Default and bounds of a role's `MaxSessionDuration` (seconds).
pub const DEFAULT_MAX_SESSION: i64 = 3600;
const MIN_MAX_SESSION: i64 = 3600;
const MAX_MAX_SESSION: i64 = 43200;
/// Largest trust policy (characters, whitespace not counted), IAM's default quota.
pub const MAX_TRUST_POLICY: usize = 2048;
/// Tags per role or provider at most.
pub const MAX_TAGS: usize = 50;
/// Client ids per OIDC provider at most.
pub const MAX_CLIENT_IDS: usize = 100;
/// Thumbprints per OIDC provider at most.
pub const MAX_THUMBPRINTS: usize = 5;

/// What CreateRole is given.
#[derive(Debug, Clone, Default)]
pub struct NewRole<'a> {
    pub name: &'a str,
    pub path: Option<&'a str>,
    pub trust_policy: &'a str,
    pub description: Option<&'a str>,
    pub max_session_duration: Option<i64>,
    pub tags: Vec<(String, String)>,
}

fn validation(field: &str, value: impl std::fmt::Display, constraint: &str) -> Error {
    Error::Validation(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
    ))
}

fn check_max_session(v: i64) -> Result<()> {
    if v < MIN_MAX_SESSION {
        return Err(validation(
            "maxSessionDuration",
            v,
            &format!("Member must have value greater than or equal to {MIN_MAX_SESSION}"),
        ));
    }
    if v > MAX_MAX_SESSION {
        return Err(validation(
            "maxSessionDuration",
            v,
            &format!("Member must have value less than or equal to {MAX_MAX_SESSION}"),
        ));
    }
    Ok(())
}

fn check_description(d: Option<&str>) -> Result<()> {
    match d {
        Some(d) if d.chars().count() > 1000 => {
            Err(validation("description", d, "Member must have length less than or equal to 1000"))
        }
        _ => Ok(()),
    }
}

/// Validate tags as IAM does (key 1..=128, value 0..=256, at most 50, keys unique regardless of
/// case).
pub(crate) fn check_tags(tags: &[(String, String)]) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::LimitExceeded(format!("The number of tags has reached the maximum limit of {MAX_TAGS}.")));
    }
    let ok_char = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c);
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || !k.chars().all(ok_char) {
            return Err(validation(
                "tags.member.key",
                k,
                "Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+",
            ));
        }
        if v.chars().count() > 256 || !v.chars().all(ok_char) {
            return Err(validation(
                "tags.member.value",
                v,
                "Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*",
            ));
        }
    }
    let mut keys: Vec<String> = tags.iter().map(|(k, _)| k.to_lowercase()).collect();
    keys.sort();
    if keys.windows(2).any(|w| w[0] == w[1]) {
        return Err(Error::InvalidParameter(
            "Duplicate tag keys found. Please note that Tag keys are case insensitive.".into(),
        ));
    }
    Ok(())
}

/// Parse a trust policy (`AssumeRolePolicyDocument`) as IAM validates it.
pub fn parse_trust_policy(document: &str) -> Result<Policy> {
    if policy_size(document) > MAX_TRUST_POLICY {
        return Err(Error::LimitExceeded(format!("Cannot exceed quota for ACLSizePerRole: {MAX_TRUST_POLICY}")));
    }
    let policy =
        Policy::parse(document, PolicyKind::Resource).map_err(|e| Error::MalformedPolicyDocument(e.to_string()))?;
    // A trust policy names what may assume the role: only STS actions, and no resource.
    let v: serde_json::Value = serde_json::from_str(document).unwrap_or_default();
    let statements = match &v["Statement"] {
        serde_json::Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    for s in &statements {
        if s.get("Resource").is_some() || s.get("NotResource").is_some() {
            return Err(Error::MalformedPolicyDocument("Has prohibited field Resource".into()));
        }
        let actions = match &s["Action"] {
            serde_json::Value::String(a) => vec![a.clone()],
            serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
            _ => Vec::new(),
        };
        for a in actions {
            let service = a.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
            if a != "*" && service.as_deref() != Some("sts") {
                return Err(Error::MalformedPolicyDocument(
                    "AssumeRole policy may only specify STS AssumeRole actions.".into(),
                ));
            }
        }
    }
    Ok(policy)
}

/// Parse an OIDC provider URL as IAM accepts it: `https://host[:port][/path]`, no query,
/// fragment or user info, at most 255 characters.
fn check_provider_url(url: &str) -> Result<()> {
    let rest = url.strip_prefix("https://");
    let ok = url.len() <= 255
        && rest.is_some_and(|r| {
            let authority = r.split('/').next().unwrap_or("");
            let (host, port) = match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            !host.is_empty()
                && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-".contains(c))
                && port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
                && !r.contains(['?', '#', '@', ' '])
        });
    if ok { Ok(()) } else { Err(Error::Validation("Invalid Openid Connect Provider URL".into())) }
}

fn check_thumbprints(t: &[String]) -> Result<()> {
    if t.len() > MAX_THUMBPRINTS {
        return Err(Error::LimitExceeded(format!("Thumbprint list must contain at most {MAX_THUMBPRINTS} entries.")));
    }
    for p in t {
        if p.len() != 40 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(validation(
                "thumbprintList.member",
                p,
                "Member must have length greater than or equal to 40 and less than or equal to 40",
            ));
        }
    }
    Ok(())
}

fn check_client_ids(ids: &[String]) -> Result<()> {
    if ids.len() > MAX_CLIENT_IDS {
        return Err(Error::LimitExceeded(format!("Client ID list must contain at most {MAX_CLIENT_IDS} entries.")));
    }
    for c in ids {
        if c.is_empty() || c.chars().count() > 255 {
            return Err(validation(
                "clientIDList.member",
                c,
                "Member must have length greater than or equal to 1 and less than or equal to 255",
            ));
        }
    }
    Ok(())
}

impl Registry {
    /// Create a role.
    pub async fn create_role(&self, account: &str, r: NewRole<'_>) -> Result<Role> {
        check_name("roleName", r.name, 64)?;
        let path = r.path.unwrap_or("/");
        check_path(path)?;
        check_description(r.description)?;
        let max = r.max_session_duration.unwrap_or(DEFAULT_MAX_SESSION);
        check_max_session(max)?;
        check_tags(&r.tags)?;
        parse_trust_policy(r.trust_policy)?;
        let role = Role {
            account_id: account.to_string(),
            name: r.name.to_string(),
            id: Self::new_id("AROA"),
            path: path.to_string(),
            trust_policy: r.trust_policy.to_string(),
            description: r.description.map(str::to_string),
            max_session_duration: max,
            tags: r.tags,
            created_at: self.now(),
        };
        if !self.meta.create_role(&role).await? {
            return Err(Error::EntityAlreadyExists(format!("Role with name {} already exists.", r.name)));
        }
        self.authz.invalidate();
        Ok(role)
    }

    /// A role, or `NoSuchEntity`.
    pub async fn get_role(&self, account: &str, name: &str) -> Result<Role> {
        self.meta
            .role(account, name)
            .await?
            .ok_or_else(|| Error::NoSuchEntity(format!("The role with name {name} cannot be found.")))
    }

    /// Roles by name.
    pub async fn list_roles(
        &self,
        account: &str,
        path_prefix: Option<&str>,
        marker: Option<&str>,
        max: Option<u32>,
    ) -> Result<Page<Role>> {
        let limit = max_items(max)?;
        let after = decode_marker(marker)?;
        let items = self.meta.list_roles(account, path_prefix.unwrap_or("/"), &after, limit + 1).await?;
        Ok(paginate(items, limit, |r| r.name.to_lowercase()))
    }

    /// Delete a role without policies. Its sessions stop working at once.
    pub async fn delete_role(&self, account: &str, name: &str) -> Result<()> {
        let r = self.get_role(account, name).await?;
        let owner = Owner::Role(&r.name);
        if !self.meta.inline_policy_names(account, owner).await?.is_empty() {
            return Err(Error::DeleteConflict("Cannot delete entity, must delete policies first.".into()));
        }
        if !self.meta.attached_policies(account, owner).await?.is_empty() {
            return Err(Error::DeleteConflict("Cannot delete entity, must detach all policies first.".into()));
        }
        self.meta.delete_role(account, &r.name).await?;
        self.authz.invalidate();
        Ok(())
    }

    /// Replace a role's trust policy.
    pub async fn update_assume_role_policy(&self, account: &str, name: &str, document: &str) -> Result<()> {
        let mut r = self.get_role(account, name).await?;
        parse_trust_policy(document)?;
        r.trust_policy = document.to_string();
        self.meta.update_role(&r).await?;
        self.authz.invalidate();
        Ok(())
    }

    /// Change a role's description and/or maximum session duration.
    pub async fn update_role(
        &self,
        account: &str,
        name: &str,
        description: Option<&str>,
        max_session_duration: Option<i64>,
    ) -> Result<()> {
        let mut r = self.get_role(account, name).await?;
        check_description(description)?;
        if let Some(m) = max_session_duration {
            check_max_session(m)?;
            r.max_session_duration = m;
        }
        if let Some(d) = description {
            r.description = Some(d.to_string());
        }
        self.meta.update_role(&r).await?;
        self.authz.invalidate();
        Ok(())
    }

    /// Add tags to a role (a key already there gets the new value; keys compare without case).
    pub async fn tag_role(&self, account: &str, name: &str, tags: Vec<(String, String)>) -> Result<()> {
        let mut r = self.get_role(account, name).await?;
        check_tags(&tags)?;
        for (k, v) in tags {
            match r.tags.iter_mut().find(|(t, _)| t.eq_ignore_ascii_case(&k)) {
                Some(slot) => slot.1 = v,
                None => r.tags.push((k, v)),
            }
        }
        check_tags(&r.tags)?;
        self.meta.update_role(&r).await?;
        self.authz.invalidate();
        Ok(())
    }

    /// Remove tags from a role by key (keys that are not there are ignored, as IAM does).
    pub async fn untag_role(&self, account: &str, name: &str, keys: &[String]) -> Result<()> {
        let mut r = self.get_role(account, name).await?;
        r.tags.retain(|(t, _)| !keys.iter().any(|k| k.eq_ignore_ascii_case(t)));
        self.meta.update_role(&r).await?;
        self.authz.invalidate();
        Ok(())
    }

    /// Register an OIDC identity provider.
    pub async fn create_oidc_provider(
        &self,
        account: &str,
        url: &str,
        client_ids: Vec<String>,
        thumbprints: Vec<String>,
        tags: Vec<(String, String)>,
    ) -> Result<OidcProvider> {
        check_provider_url(url)?;
        check_client_ids(&client_ids)?;
        check_thumbprints(&thumbprints)?;
        check_tags(&tags)?;
        let p = OidcProvider {
            account_id: account.to_string(),
            url: url.trim_end_matches('/').to_string(),
            arn: format!("arn:aws:iam::{account}:oidc-provider/{}", OidcProvider::url_key(url)),
            client_ids,
            thumbprints,
            tags,
            created_at: self.now(),
        };
        if !self.meta.create_oidc_provider(&p).await? {
            return Err(Error::EntityAlreadyExists(format!("Provider with url {url} already exists.")));
        }
        self.authz.invalidate();
        Ok(p)
    }

    /// A provider of `account` by ARN, or `NoSuchEntity`.
    pub async fn get_oidc_provider(&self, account: &str, arn: &str) -> Result<OidcProvider> {
        self.meta
            .oidc_provider(arn)
            .await?
            .filter(|p| p.account_id == account)
            .ok_or_else(|| Error::NoSuchEntity(format!("OpenIDConnect Provider not found for arn {arn}")))
    }

    /// The providers of an account.
    pub async fn list_oidc_providers(&self, account: &str) -> Result<Vec<OidcProvider>> {
        Ok(self.meta.list_oidc_providers(account).await?)
    }

    /// Delete a provider.
    pub async fn delete_oidc_provider(&self, account: &str, arn: &str) -> Result<()> {
        let p = self.get_oidc_provider(account, arn).await?;
        self.meta.delete_oidc_provider(&p.arn).await?;
        self.authz.invalidate();
        Ok(())
    }

    /// Add (`add` true) or remove a client id of a provider.
    pub async fn change_oidc_client_id(&self, account: &str, arn: &str, client_id: &str, add: bool) -> Result<()> {
        let mut p = self.get_oidc_provider(account, arn).await?;
        if add {
            if !p.client_ids.iter().any(|c| c == client_id) {
                p.client_ids.push(client_id.to_string());
            }
        } else {
            p.client_ids.retain(|c| c != client_id);
        }
        check_client_ids(&p.client_ids)?;
        self.meta.update_oidc_provider(&p).await?;
        self.authz.invalidate();
        Ok(())
    }

    /// Replace a provider's thumbprints.
    pub async fn update_oidc_thumbprints(&self, account: &str, arn: &str, thumbprints: Vec<String>) -> Result<()> {
        let mut p = self.get_oidc_provider(account, arn).await?;
        check_thumbprints(&thumbprints)?;
        p.thumbprints = thumbprints;
        self.meta.update_oidc_provider(&p).await?;
        self.authz.invalidate();
        Ok(())
    }
}
