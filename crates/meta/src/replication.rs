//! Replication (ECR's PutReplicationConfiguration / DescribeImageReplicationStatus): each
//! registry's replication configuration, and the status of each image's replication to each
//! destination.

use crate::{Namespace, Result};
use async_trait::async_trait;

/// The replication of one image to one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationStatus {
    pub dest_region: String,
    pub dest_registry: String,
    /// `IN_PROGRESS`, `COMPLETE` or `FAILED`.
    pub status: String,
    pub failure_code: Option<String>,
    /// When the push that started it happened (ms).
    pub pushed_at: i64,
    pub updated_at: i64,
}

/// Replication configurations and statuses.
#[async_trait]
pub trait ReplicationStore: Send + Sync + 'static {
    /// The registry's replication configuration (ECR's JSON) and when the first one was put,
    /// if one was.
    async fn replication_config(&self, ns: &Namespace) -> Result<Option<(String, i64)>>;
    /// Replace the registry's replication configuration (keeping when the first one was put).
    async fn put_replication_config(&self, ns: &Namespace, config: &str, now: i64) -> Result<()>;
    /// Record the status of the replication of `digest` of repository `repo` to a destination
    /// (replacing the one recorded before).
    async fn set_replication_status(
        &self,
        ns: &Namespace,
        repo: &str,
        digest: &str,
        s: &ReplicationStatus,
    ) -> Result<()>;
    /// The recorded replication statuses of an image, by destination.
    async fn replication_statuses(&self, ns: &Namespace, repo: &str, digest: &str) -> Result<Vec<ReplicationStatus>>;
}

/// Implement [`ReplicationStore`] for `$store` (portable SQL).
macro_rules! portable_replication {
    ($store:ty) => {
        #[async_trait]
        impl crate::replication::ReplicationStore for $store {
            async fn replication_config(&self, ns: &crate::Namespace) -> Result<Option<(String, i64)>> {
                Ok(sqlx::query("SELECT config, created_at FROM replication_configs WHERE account_id = $1 AND region = $2")
                    .bind(&ns.account_id)
                    .bind(&ns.region)
                    .fetch_optional(&self.read)
                    .await?
                    .map(|r| (r.get(0), r.get(1))))
            }

            async fn put_replication_config(&self, ns: &crate::Namespace, config: &str, now: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO replication_configs (account_id, region, config, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
                     ON CONFLICT (account_id, region) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
                )
                .bind(&ns.account_id)
                .bind(&ns.region)
                .bind(config)
                .bind(now)
                .execute(&self.write)
                .await?;
                Ok(())
            }

            async fn set_replication_status(
                &self,
                ns: &crate::Namespace,
                repo: &str,
                digest: &str,
                s: &crate::replication::ReplicationStatus,
            ) -> Result<()> {
                sqlx::query(
                    "INSERT INTO replication_status (account_id, region, repository, digest, dest_region, dest_registry, \
                     status, failure_code, pushed_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (account_id, region, repository, digest, dest_region, dest_registry) DO UPDATE SET \
                     status = excluded.status, failure_code = excluded.failure_code, pushed_at = excluded.pushed_at, \
                     updated_at = excluded.updated_at",
                )
                .bind(&ns.account_id)
                .bind(&ns.region)
                .bind(repo)
                .bind(digest)
                .bind(&s.dest_region)
                .bind(&s.dest_registry)
                .bind(&s.status)
                .bind(s.failure_code.as_deref())
                .bind(s.pushed_at)
                .bind(s.updated_at)
                .execute(&self.write)
                .await?;
                Ok(())
            }

            async fn replication_statuses(
                &self,
                ns: &crate::Namespace,
                repo: &str,
                digest: &str,
            ) -> Result<Vec<crate::replication::ReplicationStatus>> {
                let rows = sqlx::query(
                    "SELECT dest_region, dest_registry, status, failure_code, pushed_at, updated_at FROM replication_status \
                     WHERE account_id = $1 AND region = $2 AND repository = $3 AND digest = $4 \
                     ORDER BY dest_registry, dest_region",
                )
                .bind(&ns.account_id)
                .bind(&ns.region)
                .bind(repo)
                .bind(digest)
                .fetch_all(&self.read)
                .await?;
                Ok(rows
                    .iter()
                    .map(|r| crate::replication::ReplicationStatus {
                        dest_region: r.get(0),
                        dest_registry: r.get(1),
                        status: r.get(2),
                        failure_code: r.get(3),
                        pushed_at: r.get(4),
                        updated_at: r.get(5),
                    })
                    .collect())
            }
        }
    };
}
pub(crate) use portable_replication;
