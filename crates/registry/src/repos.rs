//! Repository management for the control plane (ECR CreateRepository, DescribeRepositories,
//! DeleteRepository, PutImageTagMutability, resource tags).

use crate::{Error, Registry, Result};
use berth_meta::{DeleteRepository, Namespace, NewRepository, RepositoryInfo};
use serde::{Deserialize, Serialize};

/// Maximum resource tags per repository (ECR's limit).
pub const MAX_RESOURCE_TAGS: usize = 50;

/// A tag-mutability exclusion filter (`{"filterType":"WILDCARD","filter":"dev-*"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagFilter {
    pub filter_type: String,
    pub filter: String,
}

/// Settings of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSettings {
    pub image_tag_mutability: String,
    pub exclusions: Vec<TagFilter>,
    pub scan_on_push: bool,
    pub encryption_type: String,
    pub kms_key: Option<String>,
}

impl Default for RepoSettings {
    fn default() -> Self {
        RepoSettings {
            image_tag_mutability: "MUTABLE".into(),
            exclusions: Vec::new(),
            scan_on_push: false,
            encryption_type: "AES256".into(),
            kms_key: None,
        }
    }
}

fn invalid(field: &str, rule: &str) -> Error {
    Error::InvalidParameter(format!("Invalid parameter at '{field}' failed to satisfy constraint: '{rule}'"))
}

/// Check a mutability setting and its exclusion filters.
pub fn validate_mutability(mutability: &str, exclusions: &[TagFilter]) -> Result<()> {
    const VALUES: [&str; 4] = ["MUTABLE", "IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION"];
    if !VALUES.contains(&mutability) {
        return Err(invalid(
            "imageTagMutability",
            "Member must satisfy enum value set: [MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION]",
        ));
    }
    let with_exclusion = mutability.ends_with("_WITH_EXCLUSION");
    if with_exclusion && exclusions.is_empty() {
        return Err(Error::InvalidParameter(format!(
            "Invalid parameter at 'imageTagMutabilityExclusionFilters' failed to satisfy constraint: 'must be specified when imageTagMutability is {mutability}'"
        )));
    }
    if !with_exclusion && !exclusions.is_empty() {
        return Err(Error::InvalidParameter(format!(
            "Invalid parameter at 'imageTagMutabilityExclusionFilters' failed to satisfy constraint: 'cannot be specified when imageTagMutability is {mutability}'"
        )));
    }
    if exclusions.len() > 5 {
        return Err(invalid("imageTagMutabilityExclusionFilters", "Member must have length less than or equal to 5"));
    }
    for f in exclusions {
        if f.filter_type != "WILDCARD" {
            return Err(invalid(
                "imageTagMutabilityExclusionFilters.member.filterType",
                "Member must satisfy enum value set: [WILDCARD]",
            ));
        }
        let ok = (1..=128).contains(&f.filter.len())
            && f.filter.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'*' | b'-'));
        if !ok {
            return Err(invalid(
                "imageTagMutabilityExclusionFilters.member.filter",
                "Member must satisfy regular expression pattern: ^[0-9a-zA-Z._*-]{1,128}$",
            ));
        }
    }
    Ok(())
}

/// Check resource tags (keys 1–128 characters, values up to 256).
pub fn validate_tags(tags: &[(String, String)]) -> Result<()> {
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(Error::InvalidTagParameter("Tag keys must be between 1 and 128 characters long".into()));
        }
        if v.chars().count() > 256 {
            return Err(Error::InvalidTagParameter("Tag values must be at most 256 characters long".into()));
        }
    }
    Ok(())
}

impl RepoSettings {
    pub(crate) fn validate(&self) -> Result<()> {
        validate_mutability(&self.image_tag_mutability, &self.exclusions)?;
        match self.encryption_type.as_str() {
            "AES256" if self.kms_key.is_some() => Err(Error::InvalidParameter(
                "Invalid parameter at 'encryptionConfiguration' failed to satisfy constraint: 'kmsKey can only be specified with KMS or KMS_DSSE encryption'".into(),
            )),
            "AES256" | "KMS" => Ok(()),
            // Dual-layer encryption exists only in AWS GovCloud (US) regions; Berth has one
            // layer, so it refuses rather than claim a second.
            "KMS_DSSE" => Err(Error::InvalidParameter(
                "Invalid parameter at 'encryptionConfiguration' failed to satisfy constraint: 'encryptionType KMS_DSSE (dual-layer encryption) is not supported by this registry; use KMS or AES256'".into(),
            )),
            _ => Err(invalid("encryptionConfiguration.encryptionType", "Member must satisfy enum value set: [AES256, KMS, KMS_DSSE]")),
        }
    }
}

pub(crate) fn exclusions_json(f: &[TagFilter]) -> Option<String> {
    (!f.is_empty()).then(|| serde_json::to_string(f).expect("filters serialize"))
}

/// The exclusion filters stored with a repository.
pub fn exclusions_of(info: &RepositoryInfo) -> Vec<TagFilter> {
    info.mutability_exclusions.as_deref().and_then(|j| serde_json::from_str(j).ok()).unwrap_or_default()
}

#[cfg(test)]
use berth_meta::mutability::wildcard_match;

impl Registry {
    /// The namespace of `account` in `region`.
    pub fn namespace(&self, account: &str, region: &str) -> Namespace {
        Namespace { account_id: account.to_string(), region: region.to_string() }
    }

    /// Regions this deployment hosts.
    pub fn regions(&self) -> &[String] {
        &self.settings.regions
    }

    fn not_found(ns: &Namespace, name: &str) -> Error {
        Error::RepositoryNotFound { name: name.to_string(), registry: ns.account_id.clone() }
    }

    /// Create a repository.
    pub async fn create_repository(
        &self,
        ns: &Namespace,
        name: &str,
        settings: &RepoSettings,
        tags: &[(String, String)],
    ) -> Result<RepositoryInfo> {
        settings.validate()?;
        validate_tags(tags)?;
        if tags.len() > MAX_RESOURCE_TAGS {
            return Err(Error::TooManyTags(format!("Tag limit of {MAX_RESOURCE_TAGS} exceeded for the repository")));
        }
        let exclusions = exclusions_json(&settings.exclusions);
        // A KMS repository stores its key's ARN: the given key (id, ARN or alias) or the AWS
        // managed key `aws/ecr`, which must exist and be enabled (else KmsException).
        let kms_key = if settings.encryption_type == "KMS" {
            Some(self.kms_key_for_repository(&ns.account_id, &ns.region, settings.kms_key.as_deref()).await?)
        } else {
            None
        };
        let new = NewRepository {
            ns,
            name,
            image_tag_mutability: &settings.image_tag_mutability,
            mutability_exclusions: exclusions.as_deref(),
            scan_on_push: settings.scan_on_push,
            encryption_type: &settings.encryption_type,
            kms_key: kms_key.as_deref(),
            tags,
        };
        self.meta
            .create_repository(&new, self.now())
            .await?
            .ok_or_else(|| Error::RepositoryAlreadyExists { name: name.to_string(), registry: ns.account_id.clone() })
    }

    /// A repository's settings.
    pub async fn describe_repository(&self, ns: &Namespace, name: &str) -> Result<RepositoryInfo> {
        self.meta.repository_info(ns, name).await?.ok_or_else(|| Self::not_found(ns, name))
    }

    /// One page of repositories after `last`; `true` when more follow.
    pub async fn list_repository_infos(
        &self,
        ns: &Namespace,
        last: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<RepositoryInfo>, bool)> {
        let mut items = self.meta.list_repository_infos(ns, last, limit + 1).await?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        Ok((items, more))
    }

    /// Delete a repository; without `force` only when it holds no images.
    pub async fn delete_repository(&self, ns: &Namespace, name: &str, force: bool) -> Result<RepositoryInfo> {
        let info = self.describe_repository(ns, name).await?;
        match self.meta.delete_repository(info.id, force, self.now()).await? {
            DeleteRepository::NotEmpty => {
                return Err(Error::RepositoryNotEmpty { name: name.to_string(), registry: ns.account_id.clone() });
            }
            DeleteRepository::Deleted => {}
        }
        self.forget_repo(ns, name, info.id);
        Ok(info)
    }

    /// Change a repository's tag mutability.
    pub async fn set_tag_mutability(
        &self,
        ns: &Namespace,
        name: &str,
        mutability: &str,
        exclusions: &[TagFilter],
    ) -> Result<RepositoryInfo> {
        validate_mutability(mutability, exclusions)?;
        let info = self.describe_repository(ns, name).await?;
        let json = exclusions_json(exclusions);
        // Pushes read the settings in their own transaction: nothing cached to update.
        self.meta.set_tag_mutability(info.id, mutability, json.as_deref(), self.now()).await?;
        Ok(RepositoryInfo { image_tag_mutability: mutability.to_string(), mutability_exclusions: json, ..info })
    }

    /// A repository's resource tags.
    pub async fn resource_tags(&self, ns: &Namespace, name: &str) -> Result<Vec<(String, String)>> {
        let info = self.describe_repository(ns, name).await?;
        Ok(self.meta.resource_tags(info.id).await?)
    }

    /// Add or overwrite resource tags.
    pub async fn tag_repository(&self, ns: &Namespace, name: &str, tags: &[(String, String)]) -> Result<()> {
        validate_tags(tags)?;
        let info = self.describe_repository(ns, name).await?;
        if !self.meta.tag_repository(info.id, tags, MAX_RESOURCE_TAGS).await? {
            return Err(Error::TooManyTags(format!("Tag limit of {MAX_RESOURCE_TAGS} exceeded for the repository")));
        }
        // Resource tags are condition keys (aws:ResourceTag/...).
        self.auth_inputs_changed().await
    }

    /// Remove resource tags.
    pub async fn untag_repository(&self, ns: &Namespace, name: &str, keys: &[String]) -> Result<()> {
        let info = self.describe_repository(ns, name).await?;
        self.meta.untag_repository(info.id, keys).await?;
        self.auth_inputs_changed().await
    }

    /// Set a repository's policy. Without `force`, a policy that would lock the caller out of
    /// managing it is refused (ECR's check); Berth's check is that the document is valid. The
    /// policy is stored (and returned by Set/Get/DeleteRepositoryPolicy) in ECR's normalized
    /// form, see [`normalized_policy_text`].
    pub async fn set_repository_policy(&self, ns: &Namespace, name: &str, text: &str) -> Result<RepositoryInfo> {
        let info = self.describe_repository(ns, name).await?;
        parse_resource_policy(text, PolicyScope::Repository)?;
        let stored = normalized_policy_text(text);
        self.meta.set_repository_policy(info.id, Some(&stored), self.now()).await?;
        // Other nodes learn of the change through the authorization epoch.
        self.auth_inputs_changed().await?;
        Ok(info)
    }

    /// A repository's policy text.
    pub async fn repository_policy(&self, ns: &Namespace, name: &str) -> Result<(RepositoryInfo, String)> {
        let info = self.describe_repository(ns, name).await?;
        match self.meta.repository_policy(info.id).await? {
            Some(t) => Ok((info, t)),
            None => Err(Error::RepositoryPolicyNotFound { name: name.to_string(), registry: ns.account_id.clone() }),
        }
    }

    /// Delete a repository's policy, returning the text it had.
    pub async fn delete_repository_policy(&self, ns: &Namespace, name: &str) -> Result<(RepositoryInfo, String)> {
        let (info, text) = self.repository_policy(ns, name).await?;
        self.meta.set_repository_policy(info.id, None, self.now()).await?;
        self.auth_inputs_changed().await?;
        Ok((info, text))
    }

    /// Set the registry policy of a namespace.
    pub async fn put_registry_policy(&self, ns: &Namespace, text: &str) -> Result<()> {
        parse_resource_policy(text, PolicyScope::Registry)?;
        self.meta.set_registry_policy(ns, Some(text), self.now()).await?;
        self.auth_inputs_changed().await
    }

    /// The registry policy of a namespace.
    pub async fn registry_policy(&self, ns: &Namespace) -> Result<String> {
        self.meta.registry_policy(ns).await?.ok_or_else(|| Error::RegistryPolicyNotFound(ns.account_id.clone()))
    }

    /// Delete the registry policy, returning the text it had.
    pub async fn delete_registry_policy(&self, ns: &Namespace) -> Result<String> {
        let text = self.registry_policy(ns).await?;
        self.meta.set_registry_policy(ns, None, self.now()).await?;
        self.auth_inputs_changed().await?;
        Ok(text)
    }
}

/// Largest repository or registry policy ECR accepts (characters).
pub const MAX_RESOURCE_POLICY: usize = 10_240;

/// Which resource policy is being validated (the error texts differ).
#[derive(Clone, Copy)]
pub(crate) enum PolicyScope {
    Repository,
    Registry,
}

/// Validate a repository or registry policy as ECR does. ECR's message does not say what is
/// wrong (`… 'Invalid repository policy provided'`); the reason is logged.
pub(crate) fn parse_resource_policy(text: &str, scope: PolicyScope) -> Result<berth_policy::Policy> {
    if text.chars().count() > MAX_RESOURCE_POLICY {
        return Err(Error::InvalidParameter(format!(
            "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Member must have length less than or equal to {MAX_RESOURCE_POLICY}'"
        )));
    }
    if let PolicyScope::Registry = scope
        && let Some(why) = registry_policy_actions_refused(text)
    {
        tracing::info!(reason = why, "registry policy refused");
        return Err(Error::InvalidParameter(
            "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid registry policy provided'".into(),
        ));
    }
    berth_policy::Policy::parse(text, berth_policy::PolicyKind::Resource).map_err(|e| {
        let kind = match scope {
            PolicyScope::Repository => "repository",
            PolicyScope::Registry => "registry",
        };
        tracing::info!(error = %e.message(), "{kind} policy refused");
        Error::InvalidParameter(format!(
            "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid {kind} policy provided'"
        ))
    })
}

/// The actions a registry policy can grant: replication and pull through cache (ECR's registry
/// permissions). Anything else, `NotAction` or a wildcard, makes the policy invalid.
const REGISTRY_POLICY_ACTIONS: [&str; 3] =
    ["ecr:ReplicateImage", "ecr:CreateRepository", "ecr:BatchImportUpstreamImage"];

/// Why a registry policy's actions are refused (`None`: they are all grantable there).
fn registry_policy_actions_refused(text: &str) -> Option<&'static str> {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(text) else { return None };
    let statements = match doc.get("Statement") {
        Some(serde_json::Value::Array(a)) => a.clone(),
        Some(one) => vec![one.clone()],
        None => return None,
    };
    for st in &statements {
        if st.get("NotAction").is_some() {
            return Some("NotAction in a registry policy");
        }
        let actions = match st.get("Action") {
            Some(serde_json::Value::String(a)) => vec![a.as_str()],
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
            _ => continue,
        };
        if actions.iter().any(|a| !REGISTRY_POLICY_ACTIONS.iter().any(|ok| ok.eq_ignore_ascii_case(a))) {
            return Some("an action a registry policy cannot grant");
        }
    }
    None
}

/// A policy document as ECR stores and returns repository policies: re-serialized by Jackson's
/// default pretty printer (`"Key" : value`, two-space indentation, arrays on one line as
/// `[ a, b ]`, empty containers `{ }` / `[ ]`), keys in document order. Text that is not JSON is
/// kept as it is.
pub(crate) fn normalized_policy_text(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => {
            let mut out = String::with_capacity(text.len() + text.len() / 4);
            jackson_pretty(&v, 0, &mut out);
            out
        }
        Err(_) => text.to_string(),
    }
}

fn jackson_pretty(v: &serde_json::Value, depth: usize, out: &mut String) {
    use serde_json::Value;
    let indent = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', depth * 2));
    };
    match v {
        Value::Object(m) if m.is_empty() => out.push_str("{ }"),
        Value::Object(m) => {
            out.push('{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, depth + 1);
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(" : ");
                jackson_pretty(v, depth + 1, out);
            }
            indent(out, depth);
            out.push('}');
        }
        Value::Array(a) if a.is_empty() => out.push_str("[ ]"),
        Value::Array(a) => {
            out.push_str("[ ");
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                // Arrays do not indent (Jackson's inline array indenter): nested objects keep
                // the enclosing object's depth.
                jackson_pretty(x, depth, out);
            }
            out.push_str(" ]");
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn wildcards() {
        use super::wildcard_match as m;
        assert!(m("dev-*", "dev-1"));
        assert!(m("dev-*", "dev-"));
        assert!(!m("dev-*", "prod-1"));
        assert!(m("latest", "latest"));
        assert!(!m("latest", "latest2"));
        assert!(m("*-rc*", "1.0-rc2"));
        assert!(m("*", ""));
        assert!(!m("a*b", "ab-"));
    }

    #[test]
    fn policies_are_normalized_like_ecr() {
        // The example of `aws ecr set-repository-policy` (awscli examples/ecr).
        let input = r#"{
            "Version" : "2008-10-17",
            "Statement" : [
                {
                    "Sid" : "allow public pull",
                    "Effect" : "Allow",
                    "Principal" : "*",
                    "Action" : [
                        "ecr:BatchCheckLayerAvailability",
                        "ecr:BatchGetImage",
                        "ecr:GetDownloadUrlForLayer"
                    ]
                }
            ]
        }"#;
        let want = "{\n  \"Version\" : \"2008-10-17\",\n  \"Statement\" : [ {\n    \"Sid\" : \"allow public pull\",\n    \"Effect\" : \"Allow\",\n    \"Principal\" : \"*\",\n    \"Action\" : [ \"ecr:BatchCheckLayerAvailability\", \"ecr:BatchGetImage\", \"ecr:GetDownloadUrlForLayer\" ]\n  } ]\n}";
        assert_eq!(super::normalized_policy_text(input), want);
        assert_eq!(super::normalized_policy_text(want), want);
        assert_eq!(
            super::normalized_policy_text(r#"{"a":{},"b":[],"c":{"d":[1,true,null]}}"#),
            "{\n  \"a\" : { },\n  \"b\" : [ ],\n  \"c\" : {\n    \"d\" : [ 1, true, null ]\n  }\n}"
        );
    }
}
