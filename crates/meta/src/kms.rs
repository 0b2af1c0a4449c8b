//! KMS keys: symmetric keys per account and region, the versions of their key material (sealed
//! under the operator's master key by the caller; this layer never sees material in the clear),
//! aliases and tags.
//!
//! A key is identified by its id (a UUID, unique across accounts and regions). Aliases are unique
//! per account and region and go with their key when it is deleted, as do its material and tags.
//! Every write moves the authorization epoch in its own transaction ([`crate::IamStore::auth_epoch`]):
//! key state and key policies decide requests, and nodes drop their cached keys when it moves.

use crate::Result;
use async_trait::async_trait;

/// `Enabled`: usable for cryptographic operations.
pub const KEY_ENABLED: &str = "Enabled";
/// `Disabled`: not usable until enabled again.
pub const KEY_DISABLED: &str = "Disabled";
/// `PendingDeletion`: not usable; deleted at its deletion date unless the deletion is cancelled.
pub const KEY_PENDING_DELETION: &str = "PendingDeletion";

/// A KMS key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsKey {
    /// A UUID (lower-case, hyphenated).
    pub key_id: String,
    pub account_id: String,
    pub region: String,
    pub description: String,
    /// `CUSTOMER` or `AWS` (an AWS managed key such as `aws/ecr`).
    pub key_manager: String,
    /// [`KEY_ENABLED`], [`KEY_DISABLED`] or [`KEY_PENDING_DELETION`].
    pub state: String,
    /// The key policy (JSON, as given).
    pub policy: String,
    /// Epoch milliseconds.
    pub created_at: i64,
    /// While pending deletion: when the key is deleted (epoch ms) and the waiting period (days).
    pub deletion_date: Option<i64>,
    pub pending_window_days: Option<i64>,
    /// While automatic rotation is on: its period (days) and when it next rotates (epoch ms).
    pub rotation_period_days: Option<i64>,
    pub next_rotation_at: Option<i64>,
    /// The version of the material that encrypts (the newest; 1 for a new key).
    pub current_version: i64,
}

impl KmsKey {
    /// `arn:aws:kms:<region>:<account>:key/<key id>`.
    pub fn arn(&self) -> String {
        format!("arn:aws:kms:{}:{}:key/{}", self.region, self.account_id, self.key_id)
    }
}

/// One version of a key's material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsMaterial {
    /// 1 for the key's first material, one more for each rotation.
    pub version: i64,
    /// The material sealed under the master key (base64); opaque here.
    pub sealed: String,
    pub created_at: i64,
    /// `None` for the first version; `AUTOMATIC` or `ON_DEMAND` for rotations.
    pub rotation_type: Option<String>,
}

/// An alias of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsAlias {
    pub account_id: String,
    pub region: String,
    /// `alias/...`.
    pub name: String,
    pub target_key_id: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl KmsAlias {
    /// `arn:aws:kms:<region>:<account>:alias/<name>`.
    pub fn arn(&self) -> String {
        format!("arn:aws:kms:{}:{}:{}", self.region, self.account_id, self.name)
    }
}

/// Storage of KMS keys, their material, aliases and tags.
#[async_trait]
pub trait KmsStore: Send + Sync + 'static {
    /// Create a key with its first material and its tags, in one transaction. With `alias`,
    /// also that alias of the key (in its account and region): `false` (nothing is written) when
    /// the alias exists. The key's account must exist.
    async fn create_kms_key(
        &self,
        key: &KmsKey,
        material: &KmsMaterial,
        tags: &[(String, String)],
        alias: Option<&str>,
    ) -> Result<bool>;
    /// A key by id.
    async fn kms_key(&self, key_id: &str) -> Result<Option<KmsKey>>;
    /// Keys of an account in a region with an id greater than `after` (`""`: from the start), by
    /// id, at most `limit`.
    async fn list_kms_keys(&self, account_id: &str, region: &str, after: &str, limit: u32) -> Result<Vec<KmsKey>>;
    /// Replace a key's description, state, policy, deletion date and window, and rotation
    /// settings, only while its stored state is `expect_state` (a compare-and-set): `false`
    /// (nothing changed) when it is not, or the key is gone.
    async fn update_kms_key(&self, key: &KmsKey, expect_state: &str) -> Result<bool>;
    /// Add material version `m.version` and make it current, only while the key's current
    /// version is `m.version - 1` (`false` otherwise: another rotation won); sets the key's
    /// `next_rotation_at` to `next_rotation_at` in the same transaction.
    async fn add_kms_material(&self, key_id: &str, m: &KmsMaterial, next_rotation_at: Option<i64>) -> Result<bool>;
    /// One material version of a key.
    async fn kms_material(&self, key_id: &str, version: i64) -> Result<Option<KmsMaterial>>;
    /// Every material version of a key, oldest first.
    async fn kms_materials(&self, key_id: &str) -> Result<Vec<KmsMaterial>>;
    /// Delete a key pending deletion whose deletion date is at or before `now`, with its
    /// material, aliases and tags: `false` (nothing changed) when it is not (or no longer) due.
    async fn delete_kms_key(&self, key_id: &str, now: i64) -> Result<bool>;
    /// Ids of keys pending deletion whose deletion date is at or before `now`, at most `limit`.
    async fn kms_keys_due_for_deletion(&self, now: i64, limit: u32) -> Result<Vec<String>>;
    /// Ids of enabled keys whose automatic rotation is due at `now`, at most `limit`.
    async fn kms_keys_due_for_rotation(&self, now: i64, limit: u32) -> Result<Vec<String>>;

    /// Create an alias; `false` when the account has it in that region already.
    async fn create_kms_alias(&self, a: &KmsAlias) -> Result<bool>;
    /// An alias by name.
    async fn kms_alias(&self, account_id: &str, region: &str, name: &str) -> Result<Option<KmsAlias>>;
    /// Aliases of an account in a region (only those of key `target` when given) with a name
    /// greater than `after`, by name, at most `limit`.
    async fn list_kms_aliases(
        &self,
        account_id: &str,
        region: &str,
        target: Option<&str>,
        after: &str,
        limit: u32,
    ) -> Result<Vec<KmsAlias>>;
    /// Point an alias at another key; `false` when the alias does not exist.
    async fn update_kms_alias(
        &self,
        account_id: &str,
        region: &str,
        name: &str,
        target: &str,
        now: i64,
    ) -> Result<bool>;
    /// Delete an alias; `false` when absent.
    async fn delete_kms_alias(&self, account_id: &str, region: &str, name: &str) -> Result<bool>;

    /// A key's tags, by key.
    async fn kms_key_tags(&self, key_id: &str) -> Result<Vec<(String, String)>>;
    /// Add or overwrite tags of a key; `false` (nothing changed) when it would have more than
    /// `max`.
    async fn tag_kms_key(&self, key_id: &str, tags: &[(String, String)], max: usize) -> Result<bool>;
    /// Remove tags of a key by key (absent ones are ignored).
    async fn untag_kms_key(&self, key_id: &str, keys: &[String]) -> Result<()>;
}

/// Implement [`KmsStore`] for `$store` on database `$db` with row type `$row` (portable SQL).
/// Invoke it after `portable_iam!`: its `bump` and `write_bumping!` move the authorization epoch
/// in the transaction of each change.
macro_rules! portable_kms {
    ($store:ty, $db:ty, $row:ty) => {
        const KMS_KEY_COLUMNS: &str = "key_id, account_id, region, description, key_manager, key_state, policy, \
                                       created_at, deletion_date, pending_window_days, rotation_period_days, \
                                       next_rotation_at, current_version";

        fn kms_key_row(r: $row) -> crate::kms::KmsKey {
            crate::kms::KmsKey {
                key_id: r.get(0),
                account_id: r.get(1),
                region: r.get(2),
                description: r.get(3),
                key_manager: r.get(4),
                state: r.get(5),
                policy: r.get(6),
                created_at: r.get(7),
                deletion_date: r.get(8),
                pending_window_days: r.get(9),
                rotation_period_days: r.get(10),
                next_rotation_at: r.get(11),
                current_version: r.get(12),
            }
        }

        fn kms_material_row(r: $row) -> crate::kms::KmsMaterial {
            crate::kms::KmsMaterial { version: r.get(0), sealed: r.get(1), created_at: r.get(2), rotation_type: r.get(3) }
        }

        fn kms_alias_row(r: $row) -> crate::kms::KmsAlias {
            crate::kms::KmsAlias {
                account_id: r.get(0),
                region: r.get(1),
                name: r.get(2),
                target_key_id: r.get(3),
                created_at: r.get(4),
                updated_at: r.get(5),
            }
        }

        #[async_trait]
        impl crate::kms::KmsStore for $store {
            async fn create_kms_key(
                &self,
                key: &crate::kms::KmsKey,
                material: &crate::kms::KmsMaterial,
                tags: &[(String, String)],
                alias: Option<&str>,
            ) -> Result<bool> {
                let mut tx = self.begin().await?;
                sqlx::query(
                    "INSERT INTO kms_keys (key_id, account_id, region, description, key_manager, key_state, policy, \
                     created_at, deletion_date, pending_window_days, rotation_period_days, next_rotation_at, \
                     current_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(&key.key_id)
                .bind(&key.account_id)
                .bind(&key.region)
                .bind(&key.description)
                .bind(&key.key_manager)
                .bind(&key.state)
                .bind(&key.policy)
                .bind(key.created_at)
                .bind(key.deletion_date)
                .bind(key.pending_window_days)
                .bind(key.rotation_period_days)
                .bind(key.next_rotation_at)
                .bind(key.current_version)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO kms_key_material (key_id, version, sealed, created_at, rotation_type) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&key.key_id)
                .bind(material.version)
                .bind(&material.sealed)
                .bind(material.created_at)
                .bind(&material.rotation_type)
                .execute(&mut *tx)
                .await?;
                for (k, v) in tags {
                    sqlx::query(
                        "INSERT INTO kms_key_tags (key_id, tag_key, tag_value) VALUES ($1, $2, $3) \
                         ON CONFLICT (key_id, tag_key) DO UPDATE SET tag_value = excluded.tag_value",
                    )
                    .bind(&key.key_id)
                    .bind(k)
                    .bind(v)
                    .execute(&mut *tx)
                    .await?;
                }
                if let Some(name) = alias {
                    let n = sqlx::query(
                        "INSERT INTO kms_aliases (account_id, region, alias_name, target_key_id, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT DO NOTHING",
                    )
                    .bind(&key.account_id)
                    .bind(&key.region)
                    .bind(name)
                    .bind(&key.key_id)
                    .bind(key.created_at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if n == 0 {
                        // Dropping the transaction rolls the key back.
                        return Ok(false);
                    }
                }
                bump(&mut tx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn kms_key(&self, key_id: &str) -> Result<Option<crate::kms::KmsKey>> {
                let q = format!("SELECT {KMS_KEY_COLUMNS} FROM kms_keys WHERE key_id = $1");
                let r = sqlx::query(sqlx::AssertSqlSafe(q)).bind(key_id).fetch_optional(&self.read).await?;
                Ok(r.map(kms_key_row))
            }

            async fn list_kms_keys(
                &self,
                account_id: &str,
                region: &str,
                after: &str,
                limit: u32,
            ) -> Result<Vec<crate::kms::KmsKey>> {
                let q = format!(
                    "SELECT {KMS_KEY_COLUMNS} FROM kms_keys WHERE account_id = $1 AND region = $2 AND key_id > $3 \
                     ORDER BY key_id LIMIT $4"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(q))
                    .bind(account_id)
                    .bind(region)
                    .bind(after)
                    .bind(limit as i64)
                    .fetch_all(&self.read)
                    .await?;
                Ok(rows.into_iter().map(kms_key_row).collect())
            }

            async fn update_kms_key(&self, key: &crate::kms::KmsKey, expect_state: &str) -> Result<bool> {
                let n = write_bumping!(
                    self,
                    sqlx::query(
                        "UPDATE kms_keys SET description = $2, key_state = $3, policy = $4, deletion_date = $5, \
                         pending_window_days = $6, rotation_period_days = $7, next_rotation_at = $8 \
                         WHERE key_id = $1 AND key_state = $9",
                    )
                    .bind(&key.key_id)
                    .bind(&key.description)
                    .bind(&key.state)
                    .bind(&key.policy)
                    .bind(key.deletion_date)
                    .bind(key.pending_window_days)
                    .bind(key.rotation_period_days)
                    .bind(key.next_rotation_at)
                    .bind(expect_state)
                );
                Ok(n > 0)
            }

            async fn add_kms_material(
                &self,
                key_id: &str,
                m: &crate::kms::KmsMaterial,
                next_rotation_at: Option<i64>,
            ) -> Result<bool> {
                let mut tx = self.begin().await?;
                let n = sqlx::query(
                    "UPDATE kms_keys SET current_version = $2, next_rotation_at = $3 \
                     WHERE key_id = $1 AND current_version = $4",
                )
                .bind(key_id)
                .bind(m.version)
                .bind(next_rotation_at)
                .bind(m.version - 1)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO kms_key_material (key_id, version, sealed, created_at, rotation_type) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(key_id)
                .bind(m.version)
                .bind(&m.sealed)
                .bind(m.created_at)
                .bind(&m.rotation_type)
                .execute(&mut *tx)
                .await?;
                bump(&mut tx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn kms_material(&self, key_id: &str, version: i64) -> Result<Option<crate::kms::KmsMaterial>> {
                let r = sqlx::query(
                    "SELECT version, sealed, created_at, rotation_type FROM kms_key_material \
                     WHERE key_id = $1 AND version = $2",
                )
                .bind(key_id)
                .bind(version)
                .fetch_optional(&self.read)
                .await?;
                Ok(r.map(kms_material_row))
            }

            async fn kms_materials(&self, key_id: &str) -> Result<Vec<crate::kms::KmsMaterial>> {
                let rows = sqlx::query(
                    "SELECT version, sealed, created_at, rotation_type FROM kms_key_material \
                     WHERE key_id = $1 ORDER BY version",
                )
                .bind(key_id)
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(kms_material_row).collect())
            }

            async fn delete_kms_key(&self, key_id: &str, now: i64) -> Result<bool> {
                let n = write_bumping!(
                    self,
                    sqlx::query(
                        "DELETE FROM kms_keys WHERE key_id = $1 AND key_state = 'PendingDeletion' \
                         AND deletion_date <= $2",
                    )
                    .bind(key_id)
                    .bind(now)
                );
                Ok(n > 0)
            }

            async fn kms_keys_due_for_deletion(&self, now: i64, limit: u32) -> Result<Vec<String>> {
                let rows = sqlx::query(
                    "SELECT key_id FROM kms_keys WHERE deletion_date IS NOT NULL AND deletion_date <= $1 \
                     AND key_state = 'PendingDeletion' ORDER BY deletion_date LIMIT $2",
                )
                .bind(now)
                .bind(limit as i64)
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(|r| r.get(0)).collect())
            }

            async fn kms_keys_due_for_rotation(&self, now: i64, limit: u32) -> Result<Vec<String>> {
                let rows = sqlx::query(
                    "SELECT key_id FROM kms_keys WHERE next_rotation_at IS NOT NULL AND next_rotation_at <= $1 \
                     AND key_state = 'Enabled' ORDER BY next_rotation_at LIMIT $2",
                )
                .bind(now)
                .bind(limit as i64)
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(|r| r.get(0)).collect())
            }

            async fn create_kms_alias(&self, a: &crate::kms::KmsAlias) -> Result<bool> {
                let n = write_bumping!(
                    self,
                    sqlx::query(
                        "INSERT INTO kms_aliases (account_id, region, alias_name, target_key_id, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    )
                    .bind(&a.account_id)
                    .bind(&a.region)
                    .bind(&a.name)
                    .bind(&a.target_key_id)
                    .bind(a.created_at)
                    .bind(a.updated_at)
                );
                Ok(n > 0)
            }

            async fn kms_alias(
                &self,
                account_id: &str,
                region: &str,
                name: &str,
            ) -> Result<Option<crate::kms::KmsAlias>> {
                let r = sqlx::query(
                    "SELECT account_id, region, alias_name, target_key_id, created_at, updated_at FROM kms_aliases \
                     WHERE account_id = $1 AND region = $2 AND alias_name = $3",
                )
                .bind(account_id)
                .bind(region)
                .bind(name)
                .fetch_optional(&self.read)
                .await?;
                Ok(r.map(kms_alias_row))
            }

            async fn list_kms_aliases(
                &self,
                account_id: &str,
                region: &str,
                target: Option<&str>,
                after: &str,
                limit: u32,
            ) -> Result<Vec<crate::kms::KmsAlias>> {
                let rows = sqlx::query(
                    "SELECT account_id, region, alias_name, target_key_id, created_at, updated_at FROM kms_aliases \
                     WHERE account_id = $1 AND region = $2 AND alias_name > $3 \
                     AND ($4 = '' OR target_key_id = $4) ORDER BY alias_name LIMIT $5",
                )
                .bind(account_id)
                .bind(region)
                .bind(after)
                .bind(target.unwrap_or(""))
                .bind(limit as i64)
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(kms_alias_row).collect())
            }

            async fn update_kms_alias(
                &self,
                account_id: &str,
                region: &str,
                name: &str,
                target: &str,
                now: i64,
            ) -> Result<bool> {
                let n = write_bumping!(
                    self,
                    sqlx::query(
                        "UPDATE kms_aliases SET target_key_id = $4, updated_at = $5 \
                         WHERE account_id = $1 AND region = $2 AND alias_name = $3",
                    )
                    .bind(account_id)
                    .bind(region)
                    .bind(name)
                    .bind(target)
                    .bind(now)
                );
                Ok(n > 0)
            }

            async fn delete_kms_alias(&self, account_id: &str, region: &str, name: &str) -> Result<bool> {
                let n = write_bumping!(
                    self,
                    sqlx::query("DELETE FROM kms_aliases WHERE account_id = $1 AND region = $2 AND alias_name = $3")
                        .bind(account_id)
                        .bind(region)
                        .bind(name)
                );
                Ok(n > 0)
            }

            async fn kms_key_tags(&self, key_id: &str) -> Result<Vec<(String, String)>> {
                let rows = sqlx::query("SELECT tag_key, tag_value FROM kms_key_tags WHERE key_id = $1 ORDER BY tag_key")
                    .bind(key_id)
                    .fetch_all(&self.read)
                    .await?;
                Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
            }

            async fn tag_kms_key(&self, key_id: &str, tags: &[(String, String)], max: usize) -> Result<bool> {
                let mut tx = self.begin().await?;
                for (k, v) in tags {
                    sqlx::query(
                        "INSERT INTO kms_key_tags (key_id, tag_key, tag_value) VALUES ($1, $2, $3) \
                         ON CONFLICT (key_id, tag_key) DO UPDATE SET tag_value = excluded.tag_value",
                    )
                    .bind(key_id)
                    .bind(k)
                    .bind(v)
                    .execute(&mut *tx)
                    .await?;
                }
                let n: i64 = sqlx::query("SELECT COUNT(*) FROM kms_key_tags WHERE key_id = $1")
                    .bind(key_id)
                    .fetch_one(&mut *tx)
                    .await?
                    .get(0);
                if n as usize > max {
                    return Ok(false);
                }
                bump(&mut tx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn untag_kms_key(&self, key_id: &str, keys: &[String]) -> Result<()> {
                let mut tx = self.begin().await?;
                let mut n = 0;
                for k in keys {
                    n += sqlx::query("DELETE FROM kms_key_tags WHERE key_id = $1 AND tag_key = $2")
                        .bind(key_id)
                        .bind(k)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                if n > 0 {
                    bump(&mut tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }
        }
    };
}
pub(crate) use portable_kms;
