//! Upload sessions: start, chunked and streamed appends, finish (digest check and commit),
//! cancel and expiry.

use crate::hash::{HashState, Hasher};
use crate::{Error, Registry, Result, UploadStatus, storage_err};
use berth_meta::Namespace;
use berth_oci::{Algorithm, Digest, RepoName};
use berth_storage::{ByteStream, StorageError};
use futures::StreamExt;
use std::sync::Arc;

impl Registry {
    /// Open an upload session.
    pub async fn upload_start(&self, ns: &Namespace, name: &RepoName) -> Result<UploadStatus> {
        let repo = self.repo_for_push(ns, name).await?;
        self.start_upload_in(repo.id).await
    }

    pub(crate) async fn start_upload_in(&self, repo_id: i64) -> Result<UploadStatus> {
        let id = uuid::Uuid::new_v4().to_string();
        self.meta.create_upload(&id, repo_id, self.now()).await?;
        self.blobs.upload_create(&id).await.map_err(storage_err)?;
        self.hashes.lock().unwrap().insert(id.clone(), HashState::new());
        Ok(UploadStatus { id, size: 0 })
    }

    pub(crate) fn upload_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.upload_locks.lock().unwrap().entry(id.to_string()).or_default().clone()
    }

    pub(crate) fn forget_upload(&self, id: &str) {
        self.hashes.lock().unwrap().remove(id);
        self.upload_locks.lock().unwrap().remove(id);
    }

    pub(crate) async fn session(&self, ns: &Namespace, name: &RepoName, id: &str) -> Result<berth_meta::Upload> {
        let repo = self.repo_id(ns, name).await?;
        self.session_in(repo, id).await
    }

    /// The upload session `id`, which must belong to repository `repo`.
    pub(crate) async fn session_in(&self, repo: Option<i64>, id: &str) -> Result<berth_meta::Upload> {
        let unknown = || Error::BlobUploadUnknown(id.chars().take(100).collect());
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(unknown());
        }
        let up = self.meta.upload(id).await?.ok_or_else(unknown)?;
        match repo {
            Some(repo) if repo == up.repo_id => Ok(up),
            _ => Err(unknown()),
        }
    }

    /// Progress of an upload session.
    pub async fn upload_status(&self, ns: &Namespace, name: &RepoName, id: &str) -> Result<UploadStatus> {
        let up = self.session(ns, name, id).await?;
        Ok(UploadStatus { id: up.id, size: up.size })
    }

    /// Append a chunk. `content_range` (inclusive) must start at the current size.
    pub async fn upload_patch(
        &self,
        ns: &Namespace,
        name: &RepoName,
        id: &str,
        content_range: Option<(u64, u64)>,
        body: ByteStream,
    ) -> Result<UploadStatus> {
        let repo = self.repo_id(ns, name).await?;
        self.patch_in(repo, id, content_range, body).await
    }

    pub(crate) async fn patch_in(
        &self,
        repo: Option<i64>,
        id: &str,
        content_range: Option<(u64, u64)>,
        body: ByteStream,
    ) -> Result<UploadStatus> {
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        let up = self.session_in(repo, id).await?;
        let size = self.append(&up, content_range, body).await?;
        Ok(UploadStatus { id: up.id, size })
    }

    /// Append `body` to the session (checking `content_range`), record the new size, return it.
    pub(crate) async fn append(
        &self,
        up: &berth_meta::Upload,
        content_range: Option<(u64, u64)>,
        body: ByteStream,
    ) -> Result<u64> {
        if let Some((start, _)) = content_range
            && start != up.size
        {
            return Err(Error::RangeNotSatisfiable { size: up.size });
        }
        // Take the in-memory hash state when it covers exactly what is stored.
        let state = self.hashes.lock().unwrap().remove(&up.id).filter(|s| s.offset == up.size);
        let (body, hasher) = match state {
            Some(s) => {
                let (b, h) = Hasher::tap(s, body);
                (b, Some(h))
            }
            None => (body, None),
        };
        let written = self.blobs.upload_append(&up.id, up.size, body).await.map_err(|e| match e {
            StorageError::NotFound | StorageError::Inconsistent(_) => Error::BlobUploadUnknown(up.id.clone()),
            other => storage_err(other),
        })?;
        let state = match hasher {
            Some(h) => Some(h.finish().await),
            None => None,
        };
        if let Some((start, end)) = content_range
            && written != end - start + 1
        {
            return Err(Error::BlobUploadInvalid(format!(
                "Content-Range {start}-{end} announced {} bytes, body had {written}",
                end - start + 1
            )));
        }
        let new = up.size + written;
        if written > 0 && !self.meta.set_upload_size(&up.id, up.size, new, self.now()).await? {
            return Err(Error::BlobUploadUnknown(up.id.clone()));
        }
        if let Some(s) = state {
            self.hashes.lock().unwrap().insert(up.id.clone(), s);
        }
        Ok(new)
    }

    /// Finish an upload (optionally with a last chunk) as blob `digest`.
    pub async fn upload_finish(
        &self,
        ns: &Namespace,
        name: &RepoName,
        id: &str,
        digest: &Digest,
        content_range: Option<(u64, u64)>,
        body: Option<ByteStream>,
    ) -> Result<u64> {
        let repo = self.repo_id(ns, name).await?;
        self.finish_in(repo, id, digest, content_range, body).await
    }

    pub(crate) async fn finish_in(
        &self,
        repo: Option<i64>,
        id: &str,
        digest: &Digest,
        content_range: Option<(u64, u64)>,
        body: Option<ByteStream>,
    ) -> Result<u64> {
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        let up = self.session_in(repo, id).await?;
        let size = match body {
            Some(b) => self.append(&up, content_range, b).await?,
            None => up.size,
        };
        let state = self.hashes.lock().unwrap().remove(id).filter(|s| s.offset == size);
        let actual = match state {
            Some(s) if digest.algorithm() == Algorithm::Sha256 => s.finish(),
            _ => self.rehash(id, size, digest.algorithm()).await?,
        };
        if &actual != digest {
            self.discard_upload(id).await?;
            return Err(Error::DigestInvalid(format!(
                "provided digest {digest} does not match uploaded content {actual}"
            )));
        }
        self.blobs.upload_commit(id, digest, size).await.map_err(storage_err)?;
        self.meta.complete_upload(id, up.repo_id, digest.as_str(), size, self.now()).await?;
        self.forget_upload(id);
        Ok(size)
    }

    /// Monolithic upload (`POST ?digest=` with a body).
    pub async fn upload_monolithic(
        &self,
        ns: &Namespace,
        name: &RepoName,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<u64> {
        let up = self.upload_start(ns, name).await?;
        let r = self.upload_finish(ns, name, &up.id, digest, None, Some(body)).await;
        if r.is_err() {
            let _ = self.discard_upload(&up.id).await;
        }
        r
    }

    pub(crate) async fn rehash(&self, id: &str, size: u64, alg: Algorithm) -> Result<Digest> {
        let mut h = HashState::with_algorithm(alg);
        let mut s = self.blobs.upload_read(id, 0, size).await.map_err(storage_err)?;
        while let Some(chunk) = s.next().await {
            h.update(&chunk.map_err(|e| Error::Internal(e.to_string()))?);
        }
        Ok(h.finish())
    }

    pub(crate) async fn discard_upload(&self, id: &str) -> Result<()> {
        self.meta.delete_upload(id).await?;
        self.blobs.upload_abort(id).await.map_err(storage_err)?;
        self.forget_upload(id);
        Ok(())
    }

    /// Cancel an upload session.
    pub async fn upload_cancel(&self, ns: &Namespace, name: &RepoName, id: &str) -> Result<()> {
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        self.session(ns, name, id).await?;
        self.discard_upload(id).await
    }

    /// Remove sessions idle for longer than the upload TTL, and upload areas without a session
    /// (left by a crash); release the storage's stale partial writes. Returns how many sessions
    /// and areas were removed.
    pub async fn expire_uploads(&self) -> Result<usize> {
        let before = self.now() - self.settings.upload_ttl.as_millis() as i64;
        let mut n = 0;
        loop {
            let ids = self.meta.stale_uploads(before, 100).await?;
            if ids.is_empty() {
                break;
            }
            for id in ids {
                self.discard_upload(&id).await?;
                n += 1;
            }
        }
        for id in self.blobs.upload_list().await.map_err(storage_err)? {
            if self.meta.upload(&id).await?.is_none() {
                self.blobs.upload_abort(&id).await.map_err(storage_err)?;
                n += 1;
            }
        }
        // Backend leftovers of writes that crashed (S3: incomplete multipart uploads), past the
        // same TTL so that no write still in progress is cut off.
        match self.blobs.cleanup_stale(self.settings.upload_ttl).await {
            Ok(0) => {}
            Ok(k) => tracing::info!(released = k, "released stale storage writes"),
            Err(e) => tracing::warn!(error = %e, "releasing stale storage writes failed"),
        }
        Ok(n)
    }
}
