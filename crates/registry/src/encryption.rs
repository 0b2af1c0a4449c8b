//! Encryption at rest (issue 13): which key protects a repository, the keyring of the encrypted
//! blob stores, and the wrapping of data keys.
//!
//! Every blob store of the registry is an [`Encrypted`] store: each blob is AES-256-GCM
//! encrypted in 64 KiB segments under its own data key, named by id in the blob's storage
//! header. The data key of an upload area is derived from the master key and the upload id
//! ([`berth_kms::MasterKey::upload_key`]); when the upload is committed, that data key is wrapped
//! by the key of the repository receiving the blob (the Berth-managed key of `AES256`
//! repositories, [`AES256_KEY`], or the repository's KMS key) and the wrapping is stored in
//! metadata (`blob_keys`) before the bytes are published. Reading a blob unwraps any of its
//! wrappings (the registry checks the reading repository's own key first, see
//! [`Registry::check_repo_key`]).
//!
//! Storage deduplicates by digest, so one ciphertext serves every repository holding the blob;
//! each key protecting such a repository holds its own wrapping of the data key (a repository
//! gets one only by uploading every byte of the blob, or by a mount from a repository under the
//! same key). Disabling a key stops its repositories; deleting it destroys its wrappings, and the
//! bytes stay readable only through repositories under other keys that hold them.

use crate::{Error, Registry, Result};
use async_trait::async_trait;
use berth_kms::{MasterKey, Material};
use berth_meta::{BlobKey, MetadataStore};
use berth_oci::Digest;
use berth_storage::encrypted::{DataKey, Encrypted, KeyId, Keyring};
use berth_storage::{BlobStore, StorageError};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// The key of `AES256` repositories in `blob_keys`: Berth-managed, derived from the master key
/// (ECR's SSE-S3 equivalent).
pub const AES256_KEY: &str = "berth:aes256";

/// Unwrapped data keys kept at most (the cache is cleared when full).
const DATA_KEY_CACHE: usize = 4096;

/// A key able to wrap data keys now: its `blob_keys` name, KMS uuid and material version, and
/// material.
pub(crate) struct WrappingKey {
    pub arn: Arc<str>,
    pub uuid: [u8; 16],
    pub version: u32,
    pub material: Material,
}

/// Where the material of a KMS key version comes from (the KMS domain), whatever the key's
/// state: unwrapping for a read is checked against the reading repository's key, not this one.
#[async_trait]
pub(crate) trait KeyMaterials: Send + Sync + 'static {
    /// The material of version `version` of KMS key `arn`; an error when it no longer exists.
    async fn material(&self, arn: &str, version: u32) -> Result<Material>;
}

/// KMS key material straight from the metadata store, opened with the master key.
pub(crate) struct MetaKeyMaterials {
    meta: Arc<dyn MetadataStore>,
    master: Arc<MasterKey>,
}

impl MetaKeyMaterials {
    pub(crate) fn new(meta: Arc<dyn MetadataStore>, master: Arc<MasterKey>) -> MetaKeyMaterials {
        MetaKeyMaterials { meta, master }
    }
}

#[async_trait]
impl KeyMaterials for MetaKeyMaterials {
    async fn material(&self, arn: &str, version: u32) -> Result<Material> {
        let gone = || Error::Internal(format!("the material of KMS key {arn} version {version} no longer exists"));
        let key_id = arn.rsplit_once(":key/").map(|(_, id)| id).ok_or_else(gone)?;
        let row = self.meta.kms_material(key_id, i64::from(version)).await?.ok_or_else(gone)?;
        crate::kms::open_material(&self.master, arn, i64::from(version), &row.sealed)
    }
}

/// Unwrapped data keys by (digest, data key id); zeroized when dropped.
type DataKeyCache = Mutex<HashMap<(String, KeyId), Material>>;

/// The keyring of the registry's encrypted stores.
pub struct BlobKeyring {
    meta: Arc<dyn MetadataStore>,
    master: Arc<MasterKey>,
    materials: Arc<dyn KeyMaterials>,
    cache: DataKeyCache,
}

/// The encryption context binding a wrapped data key to its blob.
fn context(digest: &str, dek_id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("berth:blob".to_string(), digest.to_string()), ("berth:dek".to_string(), dek_id.to_string())])
}

impl BlobKeyring {
    pub(crate) fn new(
        meta: Arc<dyn MetadataStore>,
        master: Arc<MasterKey>,
        materials: Arc<dyn KeyMaterials>,
    ) -> BlobKeyring {
        BlobKeyring { meta, master, materials, cache: Mutex::default() }
    }

    /// The data key of upload area `id` and its id.
    pub(crate) fn upload_data_key(&self, id: &str) -> (KeyId, Material) {
        self.master.upload_key(id)
    }

    /// The Berth-managed key of `AES256` repositories.
    pub(crate) fn aes256_key(&self) -> WrappingKey {
        WrappingKey { arn: Arc::from(AES256_KEY), uuid: [0; 16], version: 0, material: self.master.aes256_material() }
    }

    /// Store the wrapping of data key `dek_id` (`dek`) of blob `digest` under `key`.
    pub(crate) async fn record(
        &self,
        digest: &str,
        dek_id: &KeyId,
        dek: &[u8; 32],
        key: &WrappingKey,
        now: i64,
    ) -> Result<()> {
        let id = hex::encode(dek_id);
        let wrapped = berth_kms::encrypt(key.uuid, key.version, &key.material, dek, &context(digest, &id))
            .map_err(|e| Error::Internal(format!("wrapping a data key: {e}")))?;
        let row = BlobKey { digest: digest.to_string(), dek_id: id, key_arn: key.arn.to_string(), wrapped };
        self.meta.put_blob_key(&row, now).await?;
        Ok(())
    }

    /// Unwrap one stored wrapping.
    async fn unwrap(&self, row: &BlobKey) -> Result<Material> {
        let (_, version) =
            berth_kms::blob_key(&row.wrapped).map_err(|e| Error::Internal(format!("wrapped data key: {e}")))?;
        let material = if row.key_arn == AES256_KEY {
            self.master.aes256_material()
        } else {
            self.materials.material(&row.key_arn, version).await?
        };
        let plain = berth_kms::decrypt(&material, &row.wrapped, &context(&row.digest, &row.dek_id)).map_err(|e| {
            Error::Internal(format!("unwrapping the data key of {} under {}: {e}", row.digest, row.key_arn))
        })?;
        let key: [u8; 32] =
            plain.as_slice().try_into().map_err(|_| Error::Internal("a wrapped data key is not 32 bytes".into()))?;
        Ok(zeroize::Zeroizing::new(key))
    }

    /// The data key `dek_id` of blob `digest`, from any of its wrappings.
    pub(crate) async fn data_key(&self, digest: &str, dek_id: &KeyId) -> Result<Material> {
        let cache_key = (digest.to_string(), *dek_id);
        if let Some(k) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&cache_key) {
            return Ok(k.clone());
        }
        let mut rows = self.meta.blob_keys(digest, &hex::encode(dek_id)).await?;
        // The Berth-managed key first: it needs no KMS lookup.
        rows.sort_by_key(|r| r.key_arn != AES256_KEY);
        let mut last = None;
        for row in &rows {
            match self.unwrap(row).await {
                Ok(k) => {
                    let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                    if cache.len() >= DATA_KEY_CACHE {
                        cache.clear();
                    }
                    cache.insert(cache_key, k.clone());
                    return Ok(k);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            Error::Internal(format!("blob {digest} has no stored data key {}", hex::encode(dek_id)))
        }))
    }
}

#[async_trait]
impl Keyring for BlobKeyring {
    fn upload_key(&self, id: &str) -> (KeyId, DataKey) {
        let (kid, key) = self.master.upload_key(id);
        (kid, DataKey::new(*key))
    }

    async fn blob_key(&self, digest: &Digest, key_id: &KeyId) -> berth_storage::Result<DataKey> {
        match self.data_key(digest.as_str(), key_id).await {
            Ok(k) => Ok(DataKey::new(*k)),
            Err(e) => Err(StorageError::Key(e.to_string())),
        }
    }
}

/// `store` as the registry uses it: encrypted under `keyring`, or as is when `encrypt` is off
/// (measurements only; `berth serve` refuses to switch a data dir between the two).
pub(crate) fn encrypted(store: Arc<dyn BlobStore>, keyring: &Arc<BlobKeyring>, encrypt: bool) -> Arc<dyn BlobStore> {
    if encrypt { Arc::new(Encrypted::new(store, keyring.clone())) } else { store }
}

impl Registry {
    /// The key protecting repository `repo_id`'s blobs: [`AES256_KEY`] or its KMS key's ARN
    /// (fixed at creation, so cached for the repository's life).
    pub(crate) async fn repo_key(&self, repo_id: i64) -> Result<Arc<str>> {
        if let Some(k) = self.repo_keys.read().unwrap_or_else(|p| p.into_inner()).get(&repo_id) {
            return Ok(k.clone());
        }
        let Some((kind, kms_key)) = self.meta.repository_key(repo_id).await? else {
            return Err(Error::RepositoryGone);
        };
        let key: Arc<str> = match (kind.as_str(), kms_key) {
            ("KMS" | "KMS_DSSE", Some(arn)) => Arc::from(arn.as_str()),
            _ => Arc::from(AES256_KEY),
        };
        let mut keys = self.repo_keys.write().unwrap_or_else(|p| p.into_inner());
        if keys.len() >= 65_536 {
            keys.clear();
        }
        keys.insert(repo_id, key.clone());
        Ok(key)
    }

    /// The key wrapping new data keys of repository `repo_id`, when it may be used now: the
    /// KMS key must be enabled (else ECR's `KmsException`).
    pub(crate) async fn repo_wrapping_key(&self, repo_id: i64) -> Result<WrappingKey> {
        let key = self.repo_key(repo_id).await?;
        if &*key == AES256_KEY {
            return Ok(self.keyring.aes256_key());
        }
        let k = self.kms_key_for_encrypt(&key).await?;
        Ok(WrappingKey { arn: key, uuid: k.uuid, version: k.version, material: k.material })
    }

    /// Refuse to serve or accept blobs of a repository whose KMS key cannot be used (disabled,
    /// pending deletion, deleted): ECR's `KmsException`.
    pub(crate) async fn check_repo_key(&self, repo_id: i64) -> Result<()> {
        let key = self.repo_key(repo_id).await?;
        if &*key != AES256_KEY {
            self.kms_key_for_encrypt(&key).await?;
        }
        Ok(())
    }

    /// Refuse with ECR's `KmsException` (as [`Error::Kms`]) when repository `name`'s KMS key
    /// cannot be used now (disabled, pending deletion, gone).
    pub async fn check_repository_key(&self, ns: &berth_meta::Namespace, name: &str) -> Result<()> {
        let repo = self.repo_in(ns, name).await?;
        self.check_repo_key(repo.id).await
    }

    /// Record the wrapping of upload `id`'s data key as blob `digest`'s under `key`, before the
    /// upload is published.
    pub(crate) async fn wrap_upload_key(&self, id: &str, digest: &Digest, key: &WrappingKey) -> Result<KeyId> {
        let (kid, dek) = self.keyring.upload_data_key(id);
        self.keyring.record(digest.as_str(), &kid, &dek, key, self.now()).await?;
        Ok(kid)
    }

    /// After a commit that kept an existing copy of blob `digest` (its data key is not the
    /// upload's `ours`), wrap that copy's data key under `key` too. The uploader sent every
    /// byte of the blob, so it learns nothing it did not have.
    pub(crate) async fn wrap_existing(&self, digest: &Digest, ours: &KeyId, key: &WrappingKey) -> Result<()> {
        let stored = self.blobs.key_id(digest).await.map_err(crate::storage_err)?;
        let Some(stored) = stored.filter(|s| s != ours) else {
            return Ok(());
        };
        let dek = self.keyring.data_key(digest.as_str(), &stored).await?;
        self.keyring.record(digest.as_str(), &stored, &dek, key, self.now()).await
    }

    /// Re-wrap every data key wrapped by an earlier version of KMS key `arn` under its version
    /// `version` (`material`), page by page; a wrapping changed meanwhile is left to the writer
    /// that changed it. Returns how many were re-wrapped.
    pub(crate) async fn rewrap_blob_keys(&self, arn: &str, version: u32, material: &Material) -> Result<usize> {
        let Some((_, uuid_hex)) = arn.rsplit_once(":key/") else { return Ok(0) };
        let uuid = uuid::Uuid::parse_str(uuid_hex).map_err(|_| Error::Internal(format!("key ARN {arn}")))?;
        let mut after: Option<(String, String)> = None;
        let mut n = 0;
        loop {
            let page =
                self.meta.blob_keys_under(arn, after.as_ref().map(|(d, k)| (d.as_str(), k.as_str())), 500).await?;
            let Some(last) = page.last() else { return Ok(n) };
            after = Some((last.digest.clone(), last.dek_id.clone()));
            for row in &page {
                let (_, v) = berth_kms::blob_key(&row.wrapped).map_err(|e| Error::Internal(e.to_string()))?;
                if v >= version {
                    continue;
                }
                let old = self.keyring.materials.material(arn, v).await?;
                let ctx = context(&row.digest, &row.dek_id);
                let dek = berth_kms::decrypt(&old, &row.wrapped, &ctx).map_err(|e| Error::Internal(e.to_string()))?;
                let wrapped = berth_kms::encrypt(*uuid.as_bytes(), version, material, &dek, &ctx)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                if self.meta.rewrap_blob_key(&BlobKey { wrapped, ..row.clone() }, &row.wrapped).await? {
                    n += 1;
                }
            }
        }
    }

    /// Give the data key of upload area `to_area` the wrappings of blob `digest`'s data key
    /// `from` (the bytes are copied to another store through that area: an archive move), or,
    /// for a blob stored in plaintext (`None`), a wrapping under the Berth-managed key.
    pub(crate) async fn copy_wrappings(&self, digest: &Digest, from: Option<&KeyId>, to_area: &str) -> Result<()> {
        let (to, dek) = self.keyring.upload_data_key(to_area);
        let Some(from) = from else {
            return self.keyring.record(digest.as_str(), &to, &dek, &self.keyring.aes256_key(), self.now()).await;
        };
        for row in self.meta.blob_keys(digest.as_str(), &hex::encode(from)).await? {
            let key = if row.key_arn == AES256_KEY {
                self.keyring.aes256_key()
            } else {
                let (uuid, version) =
                    berth_kms::blob_key(&row.wrapped).map_err(|e| Error::Internal(format!("wrapped data key: {e}")))?;
                let material = self.keyring.materials.material(&row.key_arn, version).await?;
                WrappingKey { arn: Arc::from(row.key_arn.as_str()), uuid, version, material }
            };
            self.keyring.record(digest.as_str(), &to, &dek, &key, self.now()).await?;
        }
        Ok(())
    }
}
