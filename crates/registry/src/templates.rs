//! Repository creation templates (ECR's Create/Describe/Update/DeleteRepositoryCreationTemplate)
//! and the repositories Berth creates from them on the caller's behalf: on a push to a missing
//! repository (`CREATE_ON_PUSH`), and for replication and pull through cache.
//!
//! A template belongs to a registry (account and region) and is named by a prefix: `ROOT` (every
//! repository no other template matches) or a repository-name prefix, which, as ECR documents,
//! has an implied `/` at its end: `prod` applies to `prod/app` and `prod/team/app`, not to
//! `prod` nor `production`. The template that applies to a name for a scenario is the one with
//! the longest matching prefix among the templates listing that scenario in `appliedFor`, else
//! the `ROOT` one listing it.
//!
//! A repository created from a template gets, in one transaction, the template's tag
//! mutability (and exclusion filters), encryption (a KMS key is resolved when the repository is
//! created, not when the template is), resource tags, repository policy and lifecycle policy.
//! The `create_on_push` setting is a built-in `ROOT` template for `CREATE_ON_PUSH` with default
//! settings in every registry, used only when no stored template applies.

use crate::repos::{PolicyScope, exclusions_json, normalized_policy_text, parse_resource_policy, validate_mutability};
use crate::{Error, MAX_RESOURCE_TAGS, Registry, RepoSettings, Result, TagFilter};
use berth_meta::templates::{CreateTemplate, StoredTemplate, prefix_key};
use berth_meta::{Namespace, NewRepository, RepositoryInfo};

/// Most templates a registry holds (`LimitExceededException` beyond). Berth's limit: ECR's
/// quota is not documented.
pub const MAX_TEMPLATES: usize = 100;

/// The prefix of the registry-wide template.
pub const ROOT: &str = "ROOT";

/// Longest template `description`, `prefix`; longest `customRoleArn` and `kmsKey` (ECR's model).
const MAX_DESCRIPTION: usize = 256;
const MAX_PREFIX: usize = 256;
const MAX_ARN: usize = 2048;

/// A repository creation scenario a template applies to (ECR's `RCTAppliedFor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppliedFor {
    Replication,
    CreateOnPush,
    PullThroughCache,
}

impl AppliedFor {
    /// The API's name: `REPLICATION`, `CREATE_ON_PUSH`, `PULL_THROUGH_CACHE`.
    pub fn as_str(self) -> &'static str {
        match self {
            AppliedFor::Replication => "REPLICATION",
            AppliedFor::CreateOnPush => "CREATE_ON_PUSH",
            AppliedFor::PullThroughCache => "PULL_THROUGH_CACHE",
        }
    }

    /// From the API's name.
    pub fn parse(s: &str) -> Option<AppliedFor> {
        match s {
            "REPLICATION" => Some(AppliedFor::Replication),
            "CREATE_ON_PUSH" => Some(AppliedFor::CreateOnPush),
            "PULL_THROUGH_CACHE" => Some(AppliedFor::PullThroughCache),
            _ => None,
        }
    }

    /// What created a repository in this scenario (`created-by` of its creation event).
    fn created_by(self) -> &'static str {
        match self {
            AppliedFor::Replication => "replication",
            AppliedFor::CreateOnPush => "push",
            AppliedFor::PullThroughCache => "pull-through-cache",
        }
    }
}

/// A repository creation template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreationTemplate {
    /// `ROOT` or a repository-name prefix, as it was created (a trailing `/` kept).
    pub prefix: String,
    pub description: Option<String>,
    /// `AES256` or `KMS`.
    pub encryption_type: String,
    /// The KMS key ARN (`None` with `KMS`: the AWS managed key `aws/ecr`).
    pub kms_key: Option<String>,
    pub resource_tags: Vec<(String, String)>,
    pub image_tag_mutability: String,
    pub exclusions: Vec<TagFilter>,
    /// As given (repositories created from the template store it normalized, as
    /// SetRepositoryPolicy does).
    pub repository_policy: Option<String>,
    pub lifecycle_policy: Option<String>,
    /// Never empty.
    pub applied_for: Vec<AppliedFor>,
    pub custom_role_arn: Option<String>,
    /// Epoch milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

impl CreationTemplate {
    /// The settings of repositories created from this template (scan on push off: scanning is
    /// the registry's scanning configuration).
    pub fn settings(&self) -> RepoSettings {
        RepoSettings {
            image_tag_mutability: self.image_tag_mutability.clone(),
            exclusions: self.exclusions.clone(),
            scan_on_push: false,
            encryption_type: self.encryption_type.clone(),
            kms_key: self.kms_key.clone(),
        }
    }

    /// Whether the template applies to repository `name`; how specifically (the longer the
    /// matching prefix, the more; `ROOT` least).
    fn specificity(&self, name: &str) -> Option<usize> {
        let key = prefix_key(&self.prefix);
        if key == ROOT {
            return Some(0);
        }
        let rest = name.strip_prefix(key)?;
        rest.starts_with('/').then_some(key.len() + 1)
    }

    fn from_stored(t: StoredTemplate) -> CreationTemplate {
        CreationTemplate {
            exclusions: t
                .mutability_exclusions
                .as_deref()
                .and_then(|j| serde_json::from_str(j).ok())
                .unwrap_or_default(),
            applied_for: t.applied_for.iter().filter_map(|a| AppliedFor::parse(a)).collect(),
            prefix: t.prefix,
            description: t.description,
            encryption_type: t.encryption_type,
            kms_key: t.kms_key,
            resource_tags: t.resource_tags,
            image_tag_mutability: t.image_tag_mutability,
            repository_policy: t.repository_policy,
            lifecycle_policy: t.lifecycle_policy,
            custom_role_arn: t.custom_role_arn,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }

    fn to_stored(&self, version: i64) -> StoredTemplate {
        StoredTemplate {
            prefix: self.prefix.clone(),
            description: self.description.clone(),
            encryption_type: self.encryption_type.clone(),
            kms_key: self.kms_key.clone(),
            resource_tags: self.resource_tags.clone(),
            image_tag_mutability: self.image_tag_mutability.clone(),
            mutability_exclusions: exclusions_json(&self.exclusions),
            repository_policy: self.repository_policy.clone(),
            lifecycle_policy: self.lifecycle_policy.clone(),
            applied_for: self.applied_for.iter().map(|a| a.as_str().to_string()).collect(),
            custom_role_arn: self.custom_role_arn.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            version,
        }
    }
}

/// The fields of a Create- or UpdateRepositoryCreationTemplate request; `None`: not given. On
/// creation a field not given takes ECR's default (`MUTABLE`, `AES256`, nothing); on update it
/// keeps its value. An empty `description`, `repositoryPolicy`, `lifecyclePolicy` or
/// `customRoleArn` (and an empty `kmsKey`) means none.
#[derive(Debug, Clone, Default)]
pub struct TemplateFields {
    pub description: Option<String>,
    /// `encryptionType` and `kmsKey`.
    pub encryption: Option<(String, Option<String>)>,
    pub resource_tags: Option<Vec<(String, String)>>,
    pub image_tag_mutability: Option<String>,
    pub exclusions: Option<Vec<TagFilter>>,
    pub repository_policy: Option<String>,
    pub lifecycle_policy: Option<String>,
    /// The API's names; validated (and deduplicated) here.
    pub applied_for: Option<Vec<String>>,
    pub custom_role_arn: Option<String>,
}

fn invalid(field: &str, rule: &str) -> Error {
    Error::InvalidParameter(format!("Invalid parameter at '{field}' failed to satisfy constraint: '{rule}'"))
}

const PREFIX_PATTERN: &str = r"^([a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*\/?|ROOT)$";

/// Check a template prefix as ECR's model does (`field` names it in the message): `ROOT`, or a
/// repository-name prefix of 1–256 characters, optionally ending with `/`.
pub fn validate_prefix(field: &str, prefix: &str) -> Result<()> {
    let n = prefix.chars().count();
    if n < 1 {
        return Err(invalid(field, "Member must have length greater than or equal to 1"));
    }
    if n > MAX_PREFIX {
        return Err(invalid(field, &format!("Member must have length less than or equal to {MAX_PREFIX}")));
    }
    if prefix != ROOT && prefix_key(prefix).parse::<berth_oci::RepoName>().is_err() {
        return Err(invalid(field, &format!("Member must satisfy regular expression pattern: {PREFIX_PATTERN}")));
    }
    Ok(())
}

/// An empty string as none.
fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Rename the field an error message names (`'PolicyText'` to `'repositoryPolicy'`).
fn renamed(e: Error, from: &[&str], to: &str) -> Error {
    match e {
        Error::InvalidParameter(m) => {
            let m = from.iter().fold(m, |m, f| m.replace(&format!("at '{f}'"), &format!("at '{to}'")));
            Error::InvalidParameter(m)
        }
        other => other,
    }
}

/// A KMS key ARN as the template's `kmsKey` pattern has it:
/// `arn:aws[a-z0-9-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[a-z0-9-]+`.
fn kms_key_arn_ok(arn: &str) -> bool {
    let lower_dash = |s: &str| s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let mut it = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("kms"), Some(region), Some(account), Some(resource)) =
        (it.next(), it.next(), it.next(), it.next(), it.next(), it.next())
    else {
        return false;
    };
    let key = resource.strip_prefix("key/").unwrap_or("");
    partition.strip_prefix("aws").is_some_and(lower_dash)
        && !region.is_empty()
        && lower_dash(region)
        && crate::valid_account_id(account)
        && !key.is_empty()
        && lower_dash(key)
}

/// Check a `customRoleArn`: an IAM role ARN of the registry's own account.
fn validate_role_arn(ns: &Namespace, arn: &str) -> Result<()> {
    if arn.chars().count() > MAX_ARN {
        return Err(invalid("customRoleArn", &format!("Member must have length less than or equal to {MAX_ARN}")));
    }
    let mut it = arn.splitn(6, ':');
    let parts = (it.next(), it.next(), it.next(), it.next(), it.next(), it.next());
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = parts else {
        return Err(invalid(
            "customRoleArn",
            "Invalid ARN: must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)",
        ));
    };
    let role = resource.strip_prefix("role/").unwrap_or("");
    if !partition.starts_with("aws") || !crate::valid_account_id(account) || role.is_empty() || role.ends_with('/') {
        return Err(invalid(
            "customRoleArn",
            "Invalid ARN: must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)",
        ));
    }
    if account != ns.account_id {
        return Err(invalid(
            "customRoleArn",
            &format!("The role must be in the same account as the registry ({})", ns.account_id),
        ));
    }
    Ok(())
}

/// Check a template's resource tags (at most 50; keys 1–128, values up to 256 characters).
fn validate_template_tags(tags: &[(String, String)]) -> Result<()> {
    if tags.len() > MAX_RESOURCE_TAGS {
        return Err(invalid(
            "resourceTags",
            &format!("Member must have length less than or equal to {MAX_RESOURCE_TAGS}"),
        ));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(invalid("resourceTags.member.Key", "Tag keys must be between 1 and 128 characters long"));
        }
        if v.chars().count() > 256 {
            return Err(invalid("resourceTags.member.Value", "Tag values must be at most 256 characters long"));
        }
    }
    Ok(())
}

/// Parse `appliedFor`: at least one scenario, each one of ECR's; duplicates dropped.
fn parse_applied_for(v: &[String]) -> Result<Vec<AppliedFor>> {
    if v.is_empty() {
        return Err(invalid("appliedFor", "Member must have length greater than or equal to 1"));
    }
    let mut out = Vec::new();
    for s in v {
        let a = AppliedFor::parse(s).ok_or_else(|| {
            invalid(
                "appliedFor",
                "Member must satisfy constraint: [Member must satisfy enum value set: [REPLICATION, PULL_THROUGH_CACHE, CREATE_ON_PUSH]]",
            )
        })?;
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(out)
}

impl TemplateFields {
    /// Apply these fields to `t` (a template with ECR's defaults on creation, the stored one on
    /// update), validating each given field and then the result as a whole.
    fn apply(self, ns: &Namespace, mut t: CreationTemplate) -> Result<CreationTemplate> {
        if let Some(d) = self.description {
            if d.chars().count() > MAX_DESCRIPTION {
                return Err(invalid(
                    "description",
                    &format!("Member must have length less than or equal to {MAX_DESCRIPTION}"),
                ));
            }
            t.description = non_empty(d);
        }
        if let Some((kind, key)) = self.encryption {
            let key = key.and_then(non_empty);
            if let Some(k) = &key {
                if k.chars().count() > MAX_ARN {
                    return Err(invalid(
                        "encryptionConfiguration.kmsKey",
                        &format!("Member must have length less than or equal to {MAX_ARN}"),
                    ));
                }
                if kind == "KMS" && !kms_key_arn_ok(k) {
                    return Err(invalid(
                        "encryptionConfiguration.kmsKey",
                        r"Member must satisfy regular expression pattern: ^$|arn:aws[a-z0-9-]*:kms:[a-z0-9-]+:[0-9]{12}:key\/[a-z0-9-]+",
                    ));
                }
            }
            t.encryption_type = kind;
            t.kms_key = key;
        }
        if let Some(tags) = self.resource_tags {
            validate_template_tags(&tags)?;
            t.resource_tags = tags;
        }
        match (self.image_tag_mutability, self.exclusions) {
            (Some(m), Some(f)) => (t.image_tag_mutability, t.exclusions) = (m, f),
            // A new mutability without filters keeps the filters only where it takes them.
            (Some(m), None) => {
                if !m.ends_with("_WITH_EXCLUSION") {
                    t.exclusions.clear();
                }
                t.image_tag_mutability = m;
            }
            (None, Some(f)) => t.exclusions = f,
            (None, None) => {}
        }
        if let Some(p) = self.repository_policy {
            if !p.is_empty() {
                parse_resource_policy(&p, PolicyScope::Repository)
                    .map_err(|e| renamed(e, &["PolicyText"], "repositoryPolicy"))?;
            }
            t.repository_policy = non_empty(p);
        }
        if let Some(p) = self.lifecycle_policy {
            if !p.is_empty() {
                crate::lifecycle::parse_policy(&p)
                    .map_err(|e| renamed(e, &["lifecyclePolicyText", "LifecyclePolicyText"], "lifecyclePolicy"))?;
            }
            t.lifecycle_policy = non_empty(p);
        }
        if let Some(a) = self.applied_for {
            t.applied_for = parse_applied_for(&a)?;
        }
        if let Some(arn) = self.custom_role_arn {
            if !arn.is_empty() {
                validate_role_arn(ns, &arn)?;
            }
            t.custom_role_arn = non_empty(arn);
        }
        // The whole: mutability with its filters, and the encryption as CreateRepository has it
        // (KMS_DSSE refused, no kmsKey with AES256).
        validate_mutability(&t.image_tag_mutability, &t.exclusions)?;
        t.settings().validate()?;
        Ok(t)
    }
}

impl Registry {
    fn template_not_found(ns: &Namespace, prefix: &str) -> Error {
        Error::TemplateNotFound { prefix: prefix.to_string(), registry: ns.account_id.clone() }
    }

    /// Every template of a registry, by prefix key.
    async fn all_templates(&self, ns: &Namespace) -> Result<Vec<CreationTemplate>> {
        const PAGE: u32 = 1000;
        let mut out: Vec<CreationTemplate> = Vec::new();
        loop {
            let after = out.last().map(|t| prefix_key(&t.prefix).to_string());
            let page = self.meta.templates(ns, after.as_deref(), PAGE).await?;
            let full = page.len() == PAGE as usize;
            out.extend(page.into_iter().map(CreationTemplate::from_stored));
            if !full {
                return Ok(out);
            }
        }
    }

    /// Create a repository creation template (CreateRepositoryCreationTemplate): `prefix` is
    /// validated ([`validate_prefix`]), `appliedFor` must be given, every field is validated as
    /// ECR does (`InvalidParameter`). [`Error::TemplateAlreadyExists`] when the registry has a
    /// template for the prefix (`prod` and `prod/` are one), [`Error::LimitExceeded`] when it
    /// holds [`MAX_TEMPLATES`].
    pub async fn create_creation_template(
        &self,
        ns: &Namespace,
        prefix: &str,
        fields: TemplateFields,
    ) -> Result<CreationTemplate> {
        validate_prefix("prefix", prefix)?;
        if fields.applied_for.is_none() {
            return Err(invalid("appliedFor", "Member must not be null"));
        }
        let now = self.now();
        let defaults = CreationTemplate {
            prefix: prefix.to_string(),
            description: None,
            encryption_type: "AES256".into(),
            kms_key: None,
            resource_tags: Vec::new(),
            image_tag_mutability: "MUTABLE".into(),
            exclusions: Vec::new(),
            repository_policy: None,
            lifecycle_policy: None,
            applied_for: Vec::new(),
            custom_role_arn: None,
            created_at: now,
            updated_at: now,
        };
        let t = fields.apply(ns, defaults)?;
        match self.meta.create_template(ns, &t.to_stored(0), MAX_TEMPLATES).await? {
            CreateTemplate::Created => Ok(t),
            CreateTemplate::Exists => {
                Err(Error::TemplateAlreadyExists { prefix: prefix.to_string(), registry: ns.account_id.clone() })
            }
            CreateTemplate::LimitReached => Err(Error::LimitExceeded(format!(
                "The maximum number of repository creation templates ({MAX_TEMPLATES}) in the registry with id '{}' has been reached",
                ns.account_id
            ))),
        }
    }

    /// Update a template (UpdateRepositoryCreationTemplate): the fields given replace the
    /// stored ones, the others stay; the result is validated as a whole. An update racing
    /// another is retried on the newer state. [`Error::TemplateNotFound`] when there is none.
    pub async fn update_creation_template(
        &self,
        ns: &Namespace,
        prefix: &str,
        fields: TemplateFields,
    ) -> Result<CreationTemplate> {
        validate_prefix("prefix", prefix)?;
        for _ in 0..8 {
            let Some(stored) = self.meta.template(ns, prefix).await? else {
                return Err(Self::template_not_found(ns, prefix));
            };
            let version = stored.version;
            let mut t = fields.clone().apply(ns, CreationTemplate::from_stored(stored))?;
            t.updated_at = self.now().max(t.created_at);
            if self.meta.update_template(ns, &t.to_stored(version)).await? {
                return Ok(t);
            }
        }
        Err(Error::Unavailable("the repository creation template is being updated concurrently; retry".into()))
    }

    /// Delete a template (DeleteRepositoryCreationTemplate), returning it;
    /// [`Error::TemplateNotFound`] when there is none.
    pub async fn delete_creation_template(&self, ns: &Namespace, prefix: &str) -> Result<CreationTemplate> {
        validate_prefix("prefix", prefix)?;
        match self.meta.delete_template(ns, prefix).await? {
            Some(t) => Ok(CreationTemplate::from_stored(t)),
            None => Err(Self::template_not_found(ns, prefix)),
        }
    }

    /// One page of a registry's templates (DescribeRepositoryCreationTemplates), by prefix
    /// (bytewise, a trailing `/` ignored), after the template whose prefix key is `after`: all of
    /// them, or those of `prefixes` (validated; prefixes without a template are left out). `true`
    /// when more follow.
    pub async fn describe_creation_templates(
        &self,
        ns: &Namespace,
        prefixes: Option<&[String]>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<CreationTemplate>, bool)> {
        let limit = limit as usize;
        let mut items = match prefixes {
            None => {
                let page = self.meta.templates(ns, after, limit as u32 + 1).await?;
                page.into_iter().map(CreationTemplate::from_stored).collect::<Vec<_>>()
            }
            Some(wanted) => {
                for p in wanted {
                    validate_prefix("prefixes", p)?;
                }
                let keys: std::collections::HashSet<&str> = wanted.iter().map(|p| prefix_key(p)).collect();
                self.all_templates(ns)
                    .await?
                    .into_iter()
                    .filter(|t| keys.contains(prefix_key(&t.prefix)))
                    .filter(|t| after.is_none_or(|a| prefix_key(&t.prefix) > a))
                    .take(limit + 1)
                    .collect()
            }
        };
        let more = items.len() > limit;
        items.truncate(limit);
        Ok((items, more))
    }

    /// The template that applies to repository `name` for `applied_for`: among the registry's
    /// templates listing `applied_for`, the one whose prefix (with its implied trailing `/`)
    /// `name` starts with, the longest such, else the `ROOT` one; `None` when none applies.
    pub async fn creation_template_for(
        &self,
        ns: &Namespace,
        name: &str,
        applied_for: AppliedFor,
    ) -> Result<Option<CreationTemplate>> {
        Ok(self
            .all_templates(ns)
            .await?
            .into_iter()
            .filter(|t| t.applied_for.contains(&applied_for))
            .filter_map(|t| t.specificity(name).map(|s| (s, t)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, t)| t))
    }

    /// Create repository `name` for `applied_for` from the template that applies
    /// ([`Registry::creation_template_for`]): its mutability and exclusion filters, encryption
    /// (a KMS key resolved now, in `ns`: `Error::Kms` when it is missing or unusable), resource
    /// tags, repository policy and lifecycle policy, all in one transaction. When no template
    /// applies, from `fallback` (settings and resource tags, validated as CreateRepository
    /// does) if given; `Ok(None)` when neither. A repository that already exists (created
    /// meanwhile by a concurrent caller) is returned as it is. Not authorized here.
    pub async fn create_repository_from_template(
        &self,
        ns: &Namespace,
        name: &str,
        applied_for: AppliedFor,
        fallback: Option<(&RepoSettings, &[(String, String)])>,
    ) -> Result<Option<RepositoryInfo>> {
        let name = Self::parse_name(name)?;
        let name = name.as_str();
        for _ in 0..3 {
            if let Some(info) = self.meta.repository_info(ns, name).await? {
                return Ok(Some(info));
            }
            let (settings, tags, policy, lifecycle) = match self.creation_template_for(ns, name, applied_for).await? {
                Some(t) => (
                    t.settings(),
                    t.resource_tags,
                    t.repository_policy.as_deref().map(normalized_policy_text),
                    t.lifecycle_policy,
                ),
                None => match fallback {
                    Some((settings, tags)) => (settings.clone(), tags.to_vec(), None, None),
                    None => return Ok(None),
                },
            };
            settings.validate()?;
            crate::repos::validate_tags(&tags)?;
            if tags.len() > MAX_RESOURCE_TAGS {
                return Err(Error::TooManyTags(format!(
                    "Tag limit of {MAX_RESOURCE_TAGS} exceeded for the repository"
                )));
            }
            let kms_key = if settings.encryption_type == "KMS" {
                Some(self.kms_key_for_repository(&ns.account_id, &ns.region, settings.kms_key.as_deref()).await?)
            } else {
                None
            };
            let exclusions = exclusions_json(&settings.exclusions);
            let new = NewRepository {
                ns,
                name,
                image_tag_mutability: &settings.image_tag_mutability,
                mutability_exclusions: exclusions.as_deref(),
                scan_on_push: settings.scan_on_push,
                encryption_type: &settings.encryption_type,
                kms_key: kms_key.as_deref(),
                tags: &tags,
            };
            let created = self
                .meta
                .create_templated_repository(
                    &new,
                    policy.as_deref(),
                    lifecycle.as_deref(),
                    applied_for.created_by(),
                    self.now(),
                )
                .await?;
            if let Some(info) = created {
                if policy.is_some() {
                    // The store moved the authorization epoch; this node's decisions go now.
                    self.authz.invalidate();
                }
                return Ok(Some(info));
            }
            // Created concurrently: read it (again, should it have been deleted as fast).
        }
        Err(Error::Unavailable(format!("repository {name} is being created and deleted concurrently; retry")))
    }

    /// Whether a push to missing repository `name` creates it: a `CREATE_ON_PUSH` template
    /// applies, or `create_on_push` is set.
    pub(crate) async fn creates_on_push(&self, ns: &Namespace, name: &str) -> Result<bool> {
        Ok(self.settings.create_on_push
            || self.creation_template_for(ns, name, AppliedFor::CreateOnPush).await?.is_some())
    }

    /// Create missing repository `name` for a push: from the `CREATE_ON_PUSH` template that
    /// applies, else (with `create_on_push`) with default settings; `None` when neither.
    pub(crate) async fn create_on_push(&self, ns: &Namespace, name: &str) -> Result<Option<RepositoryInfo>> {
        let builtin = RepoSettings::default();
        let fallback = self.settings.create_on_push.then_some((&builtin, &[][..]));
        self.create_repository_from_template(ns, name, AppliedFor::CreateOnPush, fallback).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(prefix: &str, applied_for: &[AppliedFor]) -> CreationTemplate {
        CreationTemplate {
            prefix: prefix.into(),
            description: None,
            encryption_type: "AES256".into(),
            kms_key: None,
            resource_tags: vec![],
            image_tag_mutability: "MUTABLE".into(),
            exclusions: vec![],
            repository_policy: None,
            lifecycle_policy: None,
            applied_for: applied_for.to_vec(),
            custom_role_arn: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn prefixes_match_whole_path_segments() {
        let t = template("prod", &[]);
        assert_eq!(t.specificity("prod/app"), Some(5));
        assert_eq!(t.specificity("prod/team/app"), Some(5));
        assert_eq!(t.specificity("prod"), None, "the implied '/' is part of the prefix");
        assert_eq!(t.specificity("production/app"), None);
        assert_eq!(template("prod/", &[]).specificity("prod/app"), Some(5), "a trailing '/' changes nothing");
        assert_eq!(template("prod/team", &[]).specificity("prod/team/x"), Some(10));
        assert_eq!(template("ROOT", &[]).specificity("anything"), Some(0));
        assert_eq!(template("root", &[]).specificity("anything"), None, "only ROOT is the root");
    }

    #[test]
    fn prefixes_are_validated_as_ecr_model_has_them() {
        for ok in ["ROOT", "prod", "prod/", "a/b-c/d__e", "a.b", "x--y", "0"] {
            assert!(validate_prefix("prefix", ok).is_ok(), "{ok}");
        }
        for bad in ["", "/", "Prod", "prod//", "-a", "a-", "a..b", "a___b", "ROOT/", "root/ ", "a b"] {
            assert!(validate_prefix("prefix", bad).is_err(), "{bad}");
        }
        assert!(validate_prefix("prefix", &"a".repeat(256)).is_ok());
        let e = validate_prefix("prefix", &"a".repeat(257)).unwrap_err().to_string();
        assert_eq!(
            e,
            "Invalid parameter at 'prefix' failed to satisfy constraint: 'Member must have length less than or equal to 256'"
        );
    }

    #[test]
    fn kms_key_and_role_arns() {
        assert!(kms_key_arn_ok("arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab"));
        assert!(kms_key_arn_ok("arn:aws-us-gov:kms:us-gov-west-1:111111111111:key/k"));
        assert!(!kms_key_arn_ok("alias/aws/ecr"));
        assert!(!kms_key_arn_ok("arn:aws:kms:us-east-1:111111111111:alias/x"));
        assert!(!kms_key_arn_ok("arn:aws:kms:us-east-1:1111:key/k"));
        assert!(!kms_key_arn_ok("arn:aws:kms:us-east-1:111111111111:key/K"));
        let ns = Namespace { account_id: "111111111111".into(), region: "us-east-1".into() };
        assert!(validate_role_arn(&ns, "arn:aws:iam::111111111111:role/ecr-templates").is_ok());
        assert!(validate_role_arn(&ns, "arn:aws:iam::111111111111:role/path/name").is_ok());
        assert!(validate_role_arn(&ns, "arn:aws:iam::222222222222:role/x").is_err(), "another account");
        assert!(validate_role_arn(&ns, "arn:aws:iam::111111111111:user/x").is_err());
        assert!(validate_role_arn(&ns, "arn:aws:iam:us-east-1:111111111111:role/x").is_err());
        assert!(validate_role_arn(&ns, "not an arn").is_err());
    }

    #[test]
    fn applied_for_is_a_non_empty_set_of_scenarios() {
        assert!(parse_applied_for(&[]).is_err());
        assert!(parse_applied_for(&["PUSH".into()]).is_err());
        let v = parse_applied_for(&["CREATE_ON_PUSH".into(), "REPLICATION".into(), "CREATE_ON_PUSH".into()]).unwrap();
        assert_eq!(v, [AppliedFor::CreateOnPush, AppliedFor::Replication]);
        for a in [AppliedFor::Replication, AppliedFor::CreateOnPush, AppliedFor::PullThroughCache] {
            assert_eq!(AppliedFor::parse(a.as_str()), Some(a));
        }
    }

    #[test]
    fn updates_merge_mutability_with_the_stored_filters() {
        let ns = Namespace { account_id: "111111111111".into(), region: "r".into() };
        let f = vec![TagFilter { filter_type: "WILDCARD".into(), filter: "dev-*".into() }];
        let stored = CreationTemplate {
            image_tag_mutability: "IMMUTABLE_WITH_EXCLUSION".into(),
            exclusions: f.clone(),
            ..template("p", &[AppliedFor::CreateOnPush])
        };
        let only_mutability = |m: &str| TemplateFields { image_tag_mutability: Some(m.into()), ..Default::default() };
        let t = only_mutability("MUTABLE").apply(&ns, stored.clone()).unwrap();
        assert!(t.exclusions.is_empty(), "filters go with a mutability that takes none");
        let t = only_mutability("MUTABLE_WITH_EXCLUSION").apply(&ns, stored.clone()).unwrap();
        assert_eq!(t.exclusions, f, "and stay with one that takes them");
        let t = TemplateFields { description: Some(String::new()), ..Default::default() };
        let t = t.apply(&ns, CreationTemplate { description: Some("x".into()), ..stored.clone() }).unwrap();
        assert_eq!(t.description, None, "an empty description clears it");
        let dsse = TemplateFields { encryption: Some(("KMS_DSSE".into(), None)), ..Default::default() };
        assert!(dsse.apply(&ns, stored.clone()).is_err());
        let aes_key = TemplateFields {
            encryption: Some(("AES256".into(), Some("arn:aws:kms:r:111111111111:key/k".into()))),
            ..Default::default()
        };
        assert!(aes_key.apply(&ns, stored).is_err());
    }
}
