//! Lifecycle policies and their previews: one policy per repository, kept as the caller sent it,
//! the time a run last evaluated it, and the last preview of each repository's policy. The
//! evaluation itself is pure (crate `berth-lifecycle`); expiring an image is
//! [`crate::MetadataStore::expire_manifest`], a conditional delete in the repository's write order.

use crate::Result;
use async_trait::async_trait;

/// A repository's lifecycle policy as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLifecyclePolicy {
    pub text: String,
    /// When it was last put (epoch ms).
    pub updated_at: i64,
    /// When a run last evaluated it (epoch ms).
    pub last_evaluated_at: Option<i64>,
}

/// Status of a lifecycle policy preview, as ECR names them.
pub mod preview_status {
    pub const IN_PROGRESS: &str = "IN_PROGRESS";
    pub const COMPLETE: &str = "COMPLETE";
    pub const FAILED: &str = "FAILED";
}

/// The last preview of a repository's lifecycle policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecyclePreview {
    /// The policy the preview evaluated.
    pub policy_text: String,
    /// One of [`preview_status`].
    pub status: String,
    pub started_at: i64,
    /// `COMPLETE`: the JSON of what a run would have done; `FAILED`: why it failed.
    pub result: Option<String>,
}

/// A repository that has a lifecycle policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRepository {
    pub repo_id: i64,
    pub account_id: String,
    pub region: String,
    pub name: String,
}

/// Storage of lifecycle policies and previews.
#[async_trait]
pub trait LifecycleStore: Send + Sync + 'static {
    /// A repository's lifecycle policy.
    async fn lifecycle_policy(&self, repo_id: i64) -> Result<Option<StoredLifecyclePolicy>>;
    /// Put (`Some`) or delete (`None`) a repository's lifecycle policy; `false` when deleting an
    /// absent one. Putting resets `last_evaluated_at`.
    async fn set_lifecycle_policy(&self, repo_id: i64, text: Option<&str>, now: i64) -> Result<bool>;
    /// Record that a run evaluated the policy put at `updated_at` at time `at`; nothing happens
    /// when the policy was replaced or deleted since.
    async fn lifecycle_evaluated(&self, repo_id: i64, updated_at: i64, at: i64) -> Result<()>;
    /// Repositories with a lifecycle policy and an id above `after`, by id, at most `limit`.
    async fn lifecycle_repositories(&self, after: i64, limit: u32) -> Result<Vec<PolicyRepository>>;
    /// Start a preview of `policy_text` at `now`: `false` (nothing changes) when a preview of the
    /// repository is in progress and started after `stale_before` (an older one is taken to have
    /// died with its node). Atomic across nodes.
    async fn begin_lifecycle_preview(
        &self,
        repo_id: i64,
        policy_text: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<bool>;
    /// Finish the preview started at `started_at` with `status` and `result`; nothing happens
    /// when another preview has replaced it.
    async fn end_lifecycle_preview(&self, repo_id: i64, started_at: i64, status: &str, result: &str) -> Result<()>;
    /// The last preview of a repository's policy.
    async fn lifecycle_preview(&self, repo_id: i64) -> Result<Option<LifecyclePreview>>;
    /// The child manifests of every image index of the repository, as `(index, child)` pairs.
    async fn index_children(&self, repo_id: i64) -> Result<Vec<(String, String)>>;
}

/// Implement [`LifecycleStore`] for `$store` (portable SQL).
macro_rules! portable_lifecycle {
    ($store:ty) => {
        #[async_trait]
        impl crate::lifecycle::LifecycleStore for $store {
            async fn lifecycle_policy(&self, repo_id: i64) -> Result<Option<crate::lifecycle::StoredLifecyclePolicy>> {
                let r = sqlx::query(
                    "SELECT policy_text, updated_at, last_evaluated_at FROM lifecycle_policies WHERE repo_id = $1",
                )
                .bind(repo_id)
                .fetch_optional(&self.read)
                .await?;
                Ok(r.map(|r| crate::lifecycle::StoredLifecyclePolicy {
                    text: r.get(0),
                    updated_at: r.get(1),
                    last_evaluated_at: r.get(2),
                }))
            }

            async fn set_lifecycle_policy(&self, repo_id: i64, text: Option<&str>, now: i64) -> Result<bool> {
                let q = match text {
                    Some(t) => sqlx::query(
                        "INSERT INTO lifecycle_policies (repo_id, policy_text, updated_at, last_evaluated_at) \
                         VALUES ($1, $2, $3, NULL) ON CONFLICT (repo_id) DO UPDATE SET \
                         policy_text = excluded.policy_text, updated_at = excluded.updated_at, last_evaluated_at = NULL",
                    )
                    .bind(repo_id)
                    .bind(t)
                    .bind(now),
                    None => sqlx::query("DELETE FROM lifecycle_policies WHERE repo_id = $1").bind(repo_id),
                };
                Ok(q.execute(&self.write).await?.rows_affected() > 0)
            }

            async fn lifecycle_evaluated(&self, repo_id: i64, updated_at: i64, at: i64) -> Result<()> {
                sqlx::query("UPDATE lifecycle_policies SET last_evaluated_at = $3 WHERE repo_id = $1 AND updated_at = $2")
                    .bind(repo_id)
                    .bind(updated_at)
                    .bind(at)
                    .execute(&self.write)
                    .await?;
                Ok(())
            }

            async fn lifecycle_repositories(
                &self,
                after: i64,
                limit: u32,
            ) -> Result<Vec<crate::lifecycle::PolicyRepository>> {
                let rows = sqlx::query(
                    "SELECT r.id, r.account_id, r.region, r.name FROM lifecycle_policies p \
                     JOIN repositories r ON r.id = p.repo_id WHERE p.repo_id > $1 ORDER BY p.repo_id LIMIT $2",
                )
                .bind(after)
                .bind(limit as i64)
                .fetch_all(&self.read)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| crate::lifecycle::PolicyRepository {
                        repo_id: r.get(0),
                        account_id: r.get(1),
                        region: r.get(2),
                        name: r.get(3),
                    })
                    .collect())
            }

            async fn begin_lifecycle_preview(
                &self,
                repo_id: i64,
                policy_text: &str,
                now: i64,
                stale_before: i64,
            ) -> Result<bool> {
                let n = sqlx::query(
                    "INSERT INTO lifecycle_previews (repo_id, policy_text, status, started_at, result) \
                     VALUES ($1, $2, 'IN_PROGRESS', $3, NULL) ON CONFLICT (repo_id) DO UPDATE SET \
                     policy_text = excluded.policy_text, status = excluded.status, \
                     started_at = excluded.started_at, result = NULL \
                     WHERE lifecycle_previews.status <> 'IN_PROGRESS' OR lifecycle_previews.started_at < $4",
                )
                .bind(repo_id)
                .bind(policy_text)
                .bind(now)
                .bind(stale_before)
                .execute(&self.write)
                .await?
                .rows_affected();
                Ok(n > 0)
            }

            async fn end_lifecycle_preview(
                &self,
                repo_id: i64,
                started_at: i64,
                status: &str,
                result: &str,
            ) -> Result<()> {
                sqlx::query(
                    "UPDATE lifecycle_previews SET status = $3, result = $4 \
                     WHERE repo_id = $1 AND started_at = $2 AND status = 'IN_PROGRESS'",
                )
                .bind(repo_id)
                .bind(started_at)
                .bind(status)
                .bind(result)
                .execute(&self.write)
                .await?;
                Ok(())
            }

            async fn lifecycle_preview(&self, repo_id: i64) -> Result<Option<crate::lifecycle::LifecyclePreview>> {
                let r = sqlx::query(
                    "SELECT policy_text, status, started_at, result FROM lifecycle_previews WHERE repo_id = $1",
                )
                .bind(repo_id)
                .fetch_optional(&self.read)
                .await?;
                Ok(r.map(|r| crate::lifecycle::LifecyclePreview {
                    policy_text: r.get(0),
                    status: r.get(1),
                    started_at: r.get(2),
                    result: r.get(3),
                }))
            }

            async fn index_children(&self, repo_id: i64) -> Result<Vec<(String, String)>> {
                let rows = sqlx::query(
                    "SELECT manifest_digest, ref_digest FROM manifest_refs WHERE repo_id = $1 AND kind = 'm'",
                )
                .bind(repo_id)
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
            }
        }
    };
}
pub(crate) use portable_lifecycle;
