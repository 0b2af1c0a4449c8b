//! Blobs of a repository: size, reads (with ranges and redirects), unlinking and mounts.

use crate::{BlobRead, Error, Registry, Result, storage_err};
use berth_meta::Namespace;
use berth_oci::{Digest, RepoName};
use berth_storage::StorageError;

impl Registry {
    /// Size of a blob linked to the repository.
    /// A repository whose KMS key cannot be used serves nothing (ECR's KmsException).
    pub async fn blob_size(&self, ns: &Namespace, name: &RepoName, digest: &Digest) -> Result<u64> {
        let repo = self.existing_repo(ns, name).await?;
        self.check_repo_key(repo).await?;
        self.meta.blob_in_repo(repo, digest.as_str()).await?.ok_or(Error::BlobUnknown(digest.to_string()))
    }

    /// Stream a blob, honouring an HTTP `Range` header.
    pub async fn blob_read(
        &self,
        ns: &Namespace,
        name: &RepoName,
        digest: &Digest,
        range: Option<&str>,
    ) -> Result<BlobRead> {
        use berth_oci::range::{RangeRequest, parse_range};
        let size = self.blob_size(ns, name, digest).await?;
        let (start, len, range) = match parse_range(range, size) {
            RangeRequest::Full => (0, size, None),
            RangeRequest::Partial(r) => (r.start, r.len(), Some(r)),
            RangeRequest::Unsatisfiable => return Err(Error::RangeNotSatisfiable { size }),
        };
        let body = self.read_bytes(digest, start, len).await.map_err(|e| match e {
            StorageError::NotFound => Error::Internal(format!("blob {digest} is in metadata but not in storage")),
            other => storage_err(other),
        })?;
        Ok(BlobRead { size, range, body })
    }

    /// Stream `len` bytes of a committed blob from `start`, from whichever store holds it: bytes
    /// a move put in the archive store are read from there (a move deletes the old copy only
    /// once the new one is in place), and the blob store is looked at again when a restore
    /// moved them back between the two reads.
    pub(crate) async fn read_bytes(
        &self,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> std::result::Result<berth_storage::ByteStream, StorageError> {
        let read = self.blobs.read(digest, start, len).await;
        let Some(archive) = &self.archive else { return read };
        if !matches!(read, Err(StorageError::NotFound)) {
            return read;
        }
        match archive.read(digest, start, len).await {
            // A restore moved them back (and deleted the archive copy) between the two reads.
            Err(StorageError::NotFound) => self.blobs.read(digest, start, len).await,
            r => r,
        }
    }

    /// Where a client may fetch a blob of the repository directly (a presigned storage URL),
    /// when blob redirects are configured and the storage offers one; `None`: stream it.
    pub async fn blob_redirect(&self, ns: &Namespace, name: &RepoName, digest: &Digest) -> Result<Option<String>> {
        let Some(ttl) = self.settings.blob_redirect_ttl else {
            return Ok(None);
        };
        self.blob_size(ns, name, digest).await?;
        // A blob in the archive store streams through the registry.
        if self.archive.is_some() && self.blobs.stat(digest).await.map_err(storage_err)?.is_none() {
            return Ok(None);
        }
        self.blobs.presign_get(digest, ttl).await.map_err(storage_err)
    }

    /// Unlink a blob from the repository (its bytes go when garbage collection finds them unused).
    pub async fn blob_delete(&self, ns: &Namespace, name: &RepoName, digest: &Digest) -> Result<()> {
        let repo = self.existing_repo(ns, name).await?;
        if self.meta.unlink_blob(repo, digest.as_str()).await? {
            Ok(())
        } else {
            Err(Error::BlobUnknown(digest.to_string()))
        }
    }

    /// Link a blob of repository `from` into `name` (cross-repository mount).
    /// `Ok(None)` when `from` does not hold it (the caller then opens a normal session).
    pub async fn blob_mount(
        &self,
        ns: &Namespace,
        name: &RepoName,
        digest: &Digest,
        from: &RepoName,
    ) -> Result<Option<u64>> {
        let Some(src) = self.repo_id(ns, from).await? else {
            return Ok(None);
        };
        if self.meta.blob_in_repo(src, digest.as_str()).await?.is_none() {
            return Ok(None);
        }
        let repo = self.repo_for_push(ns, name).await?;
        // As ECR: a mount needs the same encryption key on both sides; otherwise the client
        // uploads the bytes (which are then wrapped by this repository's key).
        if self.repo_key(src).await? != self.repo_key(repo.id).await? {
            return Ok(None);
        }
        self.check_repo_key(repo.id).await?;
        self.meta
            .mount_blob(repo.id, digest.as_str(), self.now())
            .await
            .map_err(|e| Error::from(e).gone_as_not_found(name.as_str(), &ns.account_id))
    }
}
