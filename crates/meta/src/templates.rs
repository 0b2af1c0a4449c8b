//! Repository creation templates (ECR's CreateRepositoryCreationTemplate): the settings, resource
//! tags and policies a repository gets when Berth creates it on the caller's behalf (a push to a
//! missing repository, replication, pull through cache). Templates belong to a registry (account
//! and region) and are keyed by their prefix without a trailing `/` ([`prefix_key`]). Which
//! template applies to a name is the registry's decision; this module stores them, and creates
//! a repository with its policies in one transaction
//! ([`TemplateStore::create_templated_repository`]).

use crate::{Namespace, NewRepository, RepositoryInfo, Result};
use async_trait::async_trait;

/// A stored repository creation template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTemplate {
    /// The prefix as the caller spelled it: `ROOT`, or a repository-name prefix, possibly with
    /// a trailing `/`.
    pub prefix: String,
    pub description: Option<String>,
    /// `AES256` or `KMS`.
    pub encryption_type: String,
    /// The KMS key ARN given (`None`: the AWS managed key, for `KMS`).
    pub kms_key: Option<String>,
    /// Resource tags, in the order given.
    pub resource_tags: Vec<(String, String)>,
    pub image_tag_mutability: String,
    /// JSON array of exclusion filters, as [`RepositoryInfo::mutability_exclusions`].
    pub mutability_exclusions: Option<String>,
    pub repository_policy: Option<String>,
    pub lifecycle_policy: Option<String>,
    /// `REPLICATION`, `PULL_THROUGH_CACHE`, `CREATE_ON_PUSH`.
    pub applied_for: Vec<String>,
    pub custom_role_arn: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Moves on every update (see [`TemplateStore::update_template`]).
    pub version: i64,
}

/// The key a template is stored (and found) under: the prefix without one trailing `/`.
pub fn prefix_key(prefix: &str) -> &str {
    prefix.strip_suffix('/').unwrap_or(prefix)
}

/// Outcome of [`TemplateStore::create_template`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateTemplate {
    Created,
    /// A template with the same key exists; nothing changed.
    Exists,
    /// The registry already has the maximum number of templates; nothing changed.
    LimitReached,
}

/// Storage of repository creation templates.
#[async_trait]
pub trait TemplateStore: Send + Sync + 'static {
    /// Store a new template (its `version` is stored as 0) unless one with the same
    /// [`prefix_key`] exists or the registry holds `max` templates already. The count is checked
    /// in the inserting transaction (on PostgreSQL, concurrent creations in one registry can
    /// each see the count below `max`).
    async fn create_template(&self, ns: &Namespace, t: &StoredTemplate, max: usize) -> Result<CreateTemplate>;
    /// The template stored under `prefix`'s key.
    async fn template(&self, ns: &Namespace, prefix: &str) -> Result<Option<StoredTemplate>>;
    /// Templates of the registry whose key sorts after `after` (bytewise), by key, at most
    /// `limit`.
    async fn templates(&self, ns: &Namespace, after: Option<&str>, limit: u32) -> Result<Vec<StoredTemplate>>;
    /// Replace the template stored under `t.prefix`'s key (all fields but `prefix` and
    /// `created_at`) if its version is still `t.version`, moving the version on: `false` (nothing
    /// changed) when it was updated or deleted meanwhile.
    async fn update_template(&self, ns: &Namespace, t: &StoredTemplate) -> Result<bool>;
    /// Delete the template stored under `prefix`'s key, returning it.
    async fn delete_template(&self, ns: &Namespace, prefix: &str) -> Result<Option<StoredTemplate>>;
    /// In one transaction: create a repository as [`crate::MetadataStore::create_repository`]
    /// does (its creation event's detail gains `"created-by": created_by`), and give it
    /// `repository_policy` (stored as given; the authorization epoch moves and a policy event
    /// is appended, as `set_repository_policy` does) and `lifecycle_policy`. `None` (nothing
    /// changed) when the repository exists.
    async fn create_templated_repository(
        &self,
        r: &NewRepository<'_>,
        repository_policy: Option<&str>,
        lifecycle_policy: Option<&str>,
        created_by: &str,
        now: i64,
    ) -> Result<Option<RepositoryInfo>>;
}

/// The stored form of resource tags: a JSON array of `[key, value]` pairs.
pub(crate) fn tags_json(tags: &[(String, String)]) -> String {
    serde_json::Value::Array(tags.iter().map(|(k, v)| serde_json::json!([k, v])).collect()).to_string()
}

/// Resource tags from their stored form (a malformed value reads as none).
pub(crate) fn tags_from_json(s: &str) -> Vec<(String, String)> {
    serde_json::from_str::<Vec<(String, String)>>(s).unwrap_or_default()
}

/// The stored form of `applied_for`: a JSON array of strings.
pub(crate) fn strings_json(v: &[String]) -> String {
    serde_json::Value::from(v.to_vec()).to_string()
}

/// `applied_for` from its stored form (a malformed value reads as none).
pub(crate) fn strings_from_json(s: &str) -> Vec<String> {
    serde_json::from_str::<Vec<String>>(s).unwrap_or_default()
}

/// The columns [`portable_templates!`]'s row reader takes, in order.
macro_rules! template_columns {
    () => {
        "prefix, description, encryption_type, kms_key, resource_tags, image_tag_mutability, \
         mutability_exclusions, repository_policy, lifecycle_policy, applied_for, custom_role_arn, \
         created_at, updated_at, version"
    };
}
pub(crate) use template_columns;

/// Implement [`TemplateStore`] for `$store` on database `$db` (portable SQL). Expanded in a
/// backend module after `portable_store!` and `portable_iam!`, whose `insert_repository`,
/// `append_event` and `bump` it calls inside its transactions.
macro_rules! portable_templates {
    ($store:ty, $db:ty) => {
        fn template_from_row(r: &<$db as sqlx::Database>::Row) -> crate::templates::StoredTemplate {
            crate::templates::StoredTemplate {
                prefix: r.get(0),
                description: r.get(1),
                encryption_type: r.get(2),
                kms_key: r.get(3),
                resource_tags: crate::templates::tags_from_json(&r.get::<String, _>(4)),
                image_tag_mutability: r.get(5),
                mutability_exclusions: r.get(6),
                repository_policy: r.get(7),
                lifecycle_policy: r.get(8),
                applied_for: crate::templates::strings_from_json(&r.get::<String, _>(9)),
                custom_role_arn: r.get(10),
                created_at: r.get(11),
                updated_at: r.get(12),
                version: r.get(13),
            }
        }

        #[async_trait]
        impl crate::templates::TemplateStore for $store {
            async fn create_template(
                &self,
                ns: &Namespace,
                t: &crate::templates::StoredTemplate,
                max: usize,
            ) -> Result<crate::templates::CreateTemplate> {
                use crate::templates::CreateTemplate;
                let key = crate::templates::prefix_key(&t.prefix);
                let mut tx = self.begin().await?;
                let exists = sqlx::query(
                    "SELECT 1 FROM creation_templates WHERE account_id = $1 AND region = $2 AND prefix_key = $3",
                )
                .bind(&ns.account_id)
                .bind(&ns.region)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
                if exists {
                    return Ok(CreateTemplate::Exists);
                }
                let count: i64 =
                    sqlx::query("SELECT COUNT(*) FROM creation_templates WHERE account_id = $1 AND region = $2")
                        .bind(&ns.account_id)
                        .bind(&ns.region)
                        .fetch_one(&mut *tx)
                        .await?
                        .get(0);
                if count >= max as i64 {
                    return Ok(CreateTemplate::LimitReached);
                }
                let n = sqlx::query(
                    "INSERT INTO creation_templates (account_id, region, prefix_key, prefix, description, \
                     encryption_type, kms_key, resource_tags, image_tag_mutability, mutability_exclusions, \
                     repository_policy, lifecycle_policy, applied_for, custom_role_arn, created_at, updated_at, \
                     version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, 0) \
                     ON CONFLICT (account_id, region, prefix_key) DO NOTHING",
                )
                .bind(&ns.account_id)
                .bind(&ns.region)
                .bind(key)
                .bind(&t.prefix)
                .bind(&t.description)
                .bind(&t.encryption_type)
                .bind(&t.kms_key)
                .bind(crate::templates::tags_json(&t.resource_tags))
                .bind(&t.image_tag_mutability)
                .bind(&t.mutability_exclusions)
                .bind(&t.repository_policy)
                .bind(&t.lifecycle_policy)
                .bind(crate::templates::strings_json(&t.applied_for))
                .bind(&t.custom_role_arn)
                .bind(t.created_at)
                .bind(t.updated_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    // Created by a concurrent transaction (PostgreSQL) since the check.
                    return Ok(CreateTemplate::Exists);
                }
                tx.commit().await?;
                Ok(CreateTemplate::Created)
            }

            async fn template(
                &self,
                ns: &Namespace,
                prefix: &str,
            ) -> Result<Option<crate::templates::StoredTemplate>> {
                let r = sqlx::query(concat!(
                    "SELECT ",
                    crate::templates::template_columns!(),
                    " FROM creation_templates WHERE account_id = $1 AND region = $2 AND prefix_key = $3"
                ))
                .bind(&ns.account_id)
                .bind(&ns.region)
                .bind(crate::templates::prefix_key(prefix))
                .fetch_optional(&self.read)
                .await?;
                Ok(r.as_ref().map(template_from_row))
            }

            async fn templates(
                &self,
                ns: &Namespace,
                after: Option<&str>,
                limit: u32,
            ) -> Result<Vec<crate::templates::StoredTemplate>> {
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    crate::templates::template_columns!(),
                    " FROM creation_templates WHERE account_id = $1 AND region = $2 AND prefix_key > $3 \
                     ORDER BY prefix_key LIMIT $4"
                ))
                .bind(&ns.account_id)
                .bind(&ns.region)
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(&self.read)
                .await?;
                Ok(rows.iter().map(template_from_row).collect())
            }

            async fn update_template(&self, ns: &Namespace, t: &crate::templates::StoredTemplate) -> Result<bool> {
                let n = sqlx::query(
                    "UPDATE creation_templates SET description = $4, encryption_type = $5, kms_key = $6, \
                     resource_tags = $7, image_tag_mutability = $8, mutability_exclusions = $9, \
                     repository_policy = $10, lifecycle_policy = $11, applied_for = $12, custom_role_arn = $13, \
                     updated_at = $14, version = version + 1 \
                     WHERE account_id = $1 AND region = $2 AND prefix_key = $3 AND version = $15",
                )
                .bind(&ns.account_id)
                .bind(&ns.region)
                .bind(crate::templates::prefix_key(&t.prefix))
                .bind(&t.description)
                .bind(&t.encryption_type)
                .bind(&t.kms_key)
                .bind(crate::templates::tags_json(&t.resource_tags))
                .bind(&t.image_tag_mutability)
                .bind(&t.mutability_exclusions)
                .bind(&t.repository_policy)
                .bind(&t.lifecycle_policy)
                .bind(crate::templates::strings_json(&t.applied_for))
                .bind(&t.custom_role_arn)
                .bind(t.updated_at)
                .bind(t.version)
                .execute(&self.write)
                .await?
                .rows_affected();
                Ok(n == 1)
            }

            async fn delete_template(
                &self,
                ns: &Namespace,
                prefix: &str,
            ) -> Result<Option<crate::templates::StoredTemplate>> {
                let r = sqlx::query(concat!(
                    "DELETE FROM creation_templates WHERE account_id = $1 AND region = $2 AND prefix_key = $3 \
                     RETURNING ",
                    crate::templates::template_columns!()
                ))
                .bind(&ns.account_id)
                .bind(&ns.region)
                .bind(crate::templates::prefix_key(prefix))
                .fetch_optional(&self.write)
                .await?;
                Ok(r.as_ref().map(template_from_row))
            }

            async fn create_templated_repository(
                &self,
                r: &NewRepository<'_>,
                repository_policy: Option<&str>,
                lifecycle_policy: Option<&str>,
                created_by: &str,
                now: i64,
            ) -> Result<Option<RepositoryInfo>> {
                let mut tx = self.begin().await?;
                let Some(info) = insert_repository(&mut tx, r, Some(created_by), now).await? else {
                    return Ok(None);
                };
                if let Some(doc) = repository_policy {
                    sqlx::query("INSERT INTO repository_policies (repo_id, document) VALUES ($1, $2)")
                        .bind(info.id)
                        .bind(doc)
                        .execute(&mut *tx)
                        .await?;
                    bump(&mut tx).await?;
                    let detail = serde_json::json!({"repository-name": r.name, "action": "SET"});
                    append_event(
                        &mut tx,
                        &r.ns.account_id,
                        &r.ns.region,
                        crate::events::kind::REPOSITORY_POLICY,
                        Some(r.name),
                        &detail,
                        now,
                    )
                    .await?;
                }
                if let Some(text) = lifecycle_policy {
                    sqlx::query(
                        "INSERT INTO lifecycle_policies (repo_id, policy_text, updated_at, last_evaluated_at) \
                         VALUES ($1, $2, $3, NULL)",
                    )
                    .bind(info.id)
                    .bind(text)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(Some(info))
            }
        }
    };
}
pub(crate) use portable_templates;
