//! Encryption at rest: the wrapped data keys of encrypted blobs (`blob_keys`). Storage holds
//! the ciphertext and names its data key by id; this table holds that data key wrapped by each
//! key (KMS key ARN, or the Berth-managed AES256 key) protecting a repository that holds the blob.

use crate::Result;
use async_trait::async_trait;

/// One wrapping of a blob's data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobKey {
    pub digest: String,
    /// Hex of the 16-byte data key id in the blob's storage header.
    pub dek_id: String,
    pub key_arn: String,
    /// A KMS ciphertext blob (berth-kms) of the data key.
    pub wrapped: Vec<u8>,
}

/// Wrapped data keys.
#[async_trait]
pub trait BlobKeyStore: Send + Sync + 'static {
    /// Record a wrapping (an existing one for the same digest, data key and key is kept).
    async fn put_blob_key(&self, key: &BlobKey, now: i64) -> Result<()>;
    /// The wrappings of data key `dek_id` of blob `digest`.
    async fn blob_keys(&self, digest: &str, dek_id: &str) -> Result<Vec<BlobKey>>;
    /// Forget every wrapping of every data key of `digests` (their bytes are gone), in one
    /// transaction.
    async fn delete_blob_keys_of(&self, digests: &[String]) -> Result<()>;
    /// Wrappings under key `key_arn` after (digest, dek_id) `after`, in that order, at most
    /// `limit` (for re-wrapping after a rotation).
    async fn blob_keys_under(&self, key_arn: &str, after: Option<(&str, &str)>, limit: u32) -> Result<Vec<BlobKey>>;
    /// Replace a wrapping (re-wrapped under a newer version of the same key) if it is still
    /// `old`: `false` when it changed or went meanwhile.
    async fn rewrap_blob_key(&self, key: &BlobKey, old: &[u8]) -> Result<bool>;
    /// A repository's `encryptionType` and KMS key (fixed at creation), if it exists.
    async fn repository_key(&self, repo_id: i64) -> Result<Option<(String, Option<String>)>>;
}

/// Implement [`BlobKeyStore`] for `$store` on database `$db` (portable SQL).
macro_rules! portable_blob_keys {
    ($store:ty, $db:ty) => {
        fn blob_key_from_row(r: &<$db as sqlx::Database>::Row) -> crate::blobkeys::BlobKey {
            crate::blobkeys::BlobKey { digest: r.get(0), dek_id: r.get(1), key_arn: r.get(2), wrapped: r.get(3) }
        }

        #[async_trait]
        impl crate::blobkeys::BlobKeyStore for $store {
            async fn put_blob_key(&self, key: &crate::blobkeys::BlobKey, now: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO blob_keys (digest, dek_id, key_arn, wrapped, created_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (digest, dek_id, key_arn) DO NOTHING",
                )
                .bind(&key.digest)
                .bind(&key.dek_id)
                .bind(&key.key_arn)
                .bind(&key.wrapped)
                .bind(now)
                .execute(&self.write)
                .await?;
                Ok(())
            }

            async fn blob_keys(&self, digest: &str, dek_id: &str) -> Result<Vec<crate::blobkeys::BlobKey>> {
                let rows = sqlx::query(
                    "SELECT digest, dek_id, key_arn, wrapped FROM blob_keys WHERE digest = $1 AND dek_id = $2 \
                     ORDER BY key_arn",
                )
                .bind(digest)
                .bind(dek_id)
                .fetch_all(&self.read)
                .await?;
                Ok(rows.iter().map(blob_key_from_row).collect())
            }

            async fn delete_blob_keys_of(&self, digests: &[String]) -> Result<()> {
                let mut tx = self.begin().await?;
                for digest in digests {
                    sqlx::query("DELETE FROM blob_keys WHERE digest = $1").bind(digest).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn blob_keys_under(
                &self,
                key_arn: &str,
                after: Option<(&str, &str)>,
                limit: u32,
            ) -> Result<Vec<crate::blobkeys::BlobKey>> {
                let (d, k) = after.unwrap_or(("", ""));
                let rows = sqlx::query(
                    "SELECT digest, dek_id, key_arn, wrapped FROM blob_keys WHERE key_arn = $1 \
                     AND (digest > $2 OR (digest = $2 AND dek_id > $3)) ORDER BY digest, dek_id LIMIT $4",
                )
                .bind(key_arn)
                .bind(d)
                .bind(k)
                .bind(i64::from(limit))
                .fetch_all(&self.read)
                .await?;
                Ok(rows.iter().map(blob_key_from_row).collect())
            }

            async fn rewrap_blob_key(&self, key: &crate::blobkeys::BlobKey, old: &[u8]) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE blob_keys SET wrapped = $1 WHERE digest = $2 AND dek_id = $3 AND key_arn = $4 AND wrapped = $5",
                )
                .bind(&key.wrapped)
                .bind(&key.digest)
                .bind(&key.dek_id)
                .bind(&key.key_arn)
                .bind(old)
                .execute(&self.write)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn repository_key(&self, repo_id: i64) -> Result<Option<(String, Option<String>)>> {
                Ok(sqlx::query("SELECT encryption_type, kms_key FROM repositories WHERE id = $1")
                    .bind(repo_id)
                    .fetch_optional(&self.read)
                    .await?
                    .map(|r| (r.get(0), r.get(1))))
            }
        }
    };
}
pub(crate) use portable_blob_keys;
