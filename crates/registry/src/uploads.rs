//! Upload sessions: start, chunked and streamed appends, finish (digest check and commit),
//! cancel and expiry.

use crate::hash::{HashState, Hasher};
use crate::{Error, Registry, Result, UploadStatus, storage_err};
use berth_meta::Namespace;
use berth_oci::range::ChunkRange;
use berth_oci::{Algorithm, Digest, RepoName};
use berth_storage::{ByteStream, EMPTY_AREA, StorageError};
use futures::StreamExt;
use std::sync::Arc;

/// The in-memory hash of an upload on this node, valid only while the session's row still
/// records exactly the area state it was computed over (and its size is `hash.offset`).
pub(crate) struct TaggedHash {
    /// The area state the hash covers.
    state: String,
    hash: HashState,
    /// When it was last stored (ms): entries of sessions that ended elsewhere (another node
    /// finished or expired them) are dropped after the upload TTL.
    touched: i64,
}

/// Holds the per-node lock of one upload session; the map entry goes away with the last holder
/// or waiter, so the map only ever holds the sessions that have a request in flight.
pub(crate) struct UploadGuard<'a> {
    reg: &'a Registry,
    id: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for UploadGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut map = self.reg.upload_locks.lock().unwrap();
        // Ours and the map's: nobody else holds or waits for it (clones are made under the map lock).
        if Arc::strong_count(&self.lock) == 2 {
            map.remove(&self.id);
        }
    }
}

/// An upload id as this registry makes them (a UUID), checked before anything is looked up,
/// locked or stored. Anything else is an unknown upload.
fn checked_id(id: &str) -> Result<&str> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(Error::BlobUploadUnknown(id.chars().take(100).collect()));
    }
    Ok(id)
}

/// Storage errors of an upload area whose bytes are gone or were superseded (the session was
/// finished, cancelled or expired, or another writer won): the upload is unknown.
fn area_err(id: &str) -> impl Fn(StorageError) -> Error + '_ {
    move |e| match e {
        StorageError::NotFound | StorageError::Inconsistent(_) => Error::BlobUploadUnknown(id.to_string()),
        other => storage_err(other),
    }
}

impl Registry {
    /// Open an upload session.
    pub async fn upload_start(&self, ns: &Namespace, name: &RepoName) -> Result<UploadStatus> {
        let repo = self.repo_for_push(ns, name).await?;
        self.start_upload_in(repo.id).await
    }

    pub(crate) async fn start_upload_in(&self, repo_id: i64) -> Result<UploadStatus> {
        // A repository whose KMS key cannot be used takes no pushes (ECR's KmsException).
        self.check_repo_key(repo_id).await?;
        let id = uuid::Uuid::new_v4().to_string();
        self.meta.create_upload(&id, repo_id, self.now()).await?;
        self.blobs.upload_create(&id).await.map_err(storage_err)?;
        self.keep_hash(&id, EMPTY_AREA, HashState::new());
        Ok(UploadStatus { id, size: 0 })
    }

    /// Serialize requests on upload `id` within this node. The id is checked first, so no
    /// request with an id this registry cannot have made leaves anything behind.
    pub(crate) async fn lock_upload(&self, id: &str) -> Result<UploadGuard<'_>> {
        let id = checked_id(id)?;
        let lock = self.upload_locks.lock().unwrap().entry(id.to_string()).or_default().clone();
        let mut g = UploadGuard { reg: self, id: id.to_string(), lock, guard: None };
        g.guard = Some(g.lock.clone().lock_owned().await);
        Ok(g)
    }

    /// Remember the hash of an upload's bytes as area `state` names them.
    fn keep_hash(&self, id: &str, state: &str, hash: HashState) {
        let now = self.now();
        let ttl = self.settings.upload_ttl.as_millis() as i64;
        let mut map = self.hashes.lock().unwrap();
        map.retain(|_, t| now - t.touched <= ttl);
        map.insert(id.to_string(), TaggedHash { state: state.to_string(), hash, touched: now });
    }

    /// Take the in-memory hash of upload `id` when it covers exactly the area the session
    /// records (`state`, `size` bytes); a hash of any other state is dropped.
    fn take_hash(&self, id: &str, state: &str, size: u64) -> Option<HashState> {
        let t = self.hashes.lock().unwrap().remove(id)?;
        (t.state == state && t.hash.offset == size).then_some(t.hash)
    }

    pub(crate) fn forget_upload(&self, id: &str) {
        self.hashes.lock().unwrap().remove(id);
    }

    /// Sessions with an in-memory hash, and sessions with a lock entry, on this node.
    #[cfg(test)]
    pub(crate) fn upload_maps_len(&self) -> (usize, usize) {
        (self.hashes.lock().unwrap().len(), self.upload_locks.lock().unwrap().len())
    }

    pub(crate) async fn session(&self, ns: &Namespace, name: &RepoName, id: &str) -> Result<berth_meta::Upload> {
        let repo = self.repo_id(ns, name).await?;
        self.session_in(repo, id).await
    }

    /// The upload session `id`, which must belong to repository `repo`.
    pub(crate) async fn session_in(&self, repo: Option<i64>, id: &str) -> Result<berth_meta::Upload> {
        let id = checked_id(id)?;
        let unknown = || Error::BlobUploadUnknown(id.to_string());
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
        content_range: Option<ChunkRange>,
        body: ByteStream,
    ) -> Result<UploadStatus> {
        let repo = self.repo_id(ns, name).await?;
        self.patch_in(repo, id, content_range, body).await
    }

    pub(crate) async fn patch_in(
        &self,
        repo: Option<i64>,
        id: &str,
        content_range: Option<ChunkRange>,
        body: ByteStream,
    ) -> Result<UploadStatus> {
        let _guard = self.lock_upload(id).await?;
        let up = self.session_in(repo, id).await?;
        let (size, _) = self.append(&up, content_range, body).await?;
        Ok(UploadStatus { id: up.id, size })
    }

    /// Append `body` to the session (checking `content_range`), record the new size and area
    /// state in one compare-and-set, return them. When another writer moved the session
    /// meanwhile (a request on another node), the append is lost and the upload unknown.
    pub(crate) async fn append(
        &self,
        up: &berth_meta::Upload,
        content_range: Option<ChunkRange>,
        body: ByteStream,
    ) -> Result<(u64, String)> {
        if let Some(r) = content_range
            && r.start() != up.size
        {
            return Err(Error::RangeNotSatisfiable { size: up.size });
        }
        // The in-memory hash, when it covers exactly what the session records.
        let (body, hasher) = match self.take_hash(&up.id, &up.state, up.size) {
            Some(s) => {
                let (b, h) = Hasher::tap(s, body);
                (b, Some(h))
            }
            None => (body, None),
        };
        let appended = self.blobs.upload_append(&up.id, &up.state, up.size, body).await.map_err(area_err(&up.id))?;
        let hash = match hasher {
            Some(h) => Some(h.finish().await),
            None => None,
        };
        if let Some(r) = content_range
            && appended.written != r.len()
        {
            return Err(Error::BlobUploadInvalid(format!(
                "Content-Range {r} announced {} bytes, body had {}",
                r.len(),
                appended.written
            )));
        }
        let new = up
            .size
            .checked_add(appended.written)
            .filter(|n| *n <= berth_oci::range::MAX_UPLOAD_END)
            .ok_or_else(|| Error::BlobUploadInvalid("the upload is too large".into()))?;
        if appended.state != up.state
            && !self
                .meta
                .advance_upload(&up.id, (up.size, up.state.as_str()), (new, appended.state.as_str()), self.now())
                .await?
        {
            return Err(Error::BlobUploadUnknown(up.id.clone()));
        }
        if let Some(h) = hash {
            self.keep_hash(&up.id, &appended.state, h);
        }
        Ok((new, appended.state))
    }

    /// Finish an upload (optionally with a last chunk) as blob `digest`.
    pub async fn upload_finish(
        &self,
        ns: &Namespace,
        name: &RepoName,
        id: &str,
        digest: &Digest,
        content_range: Option<ChunkRange>,
        body: Option<ByteStream>,
    ) -> Result<u64> {
        let repo = self.repo_id(ns, name).await?;
        self.finish_in(repo, id, digest, content_range, body)
            .await
            .map_err(|e| e.gone_as_not_found(name.as_str(), &ns.account_id))
    }

    pub(crate) async fn finish_in(
        &self,
        repo: Option<i64>,
        id: &str,
        digest: &Digest,
        content_range: Option<ChunkRange>,
        body: Option<ByteStream>,
    ) -> Result<u64> {
        let _guard = self.lock_upload(id).await?;
        let up = self.session_in(repo, id).await?;
        let (size, state) = match body {
            Some(b) => self.append(&up, content_range, b).await?,
            None => (up.size, up.state.clone()),
        };
        // The digest is checked over the bytes the recorded state names: those, and only
        // those, are what the commit publishes.
        let actual = match self.take_hash(id, &state, size) {
            Some(s) if digest.algorithm() == Algorithm::Sha256 => s.finish(),
            _ => self.rehash(id, &state, size, digest.algorithm()).await?,
        };
        if &actual != digest {
            self.discard_upload(id).await?;
            return Err(Error::DigestInvalid(format!(
                "provided digest {digest} does not match uploaded content {actual}"
            )));
        }
        // Hold the digest before its bytes are written, so that garbage collection cannot
        // delete them between the write and the link (docs/gc.md).
        let holder = format!("upload:{id}");
        let key = if self.settings.encrypt_at_rest { Some(self.repo_wrapping_key(up.repo_id).await?) } else { None };
        self.hold_for_upload(digest, &holder).await?;
        // The data key is wrapped by the repository's key before the bytes are published, so
        // that no published blob lacks its key (a crash between the two leaves a wrapping of a
        // data key no blob uses), and once the digest is held, so that a garbage collection
        // deleting an earlier copy (and its wrappings) is over.
        let wrapped = match key {
            Some(key) => match self.wrap_upload_key(id, digest, &key).await {
                Ok(ours) => Some((key, ours)),
                Err(e) => {
                    let _ = self.meta.release_hold(digest.as_str(), &holder).await;
                    return Err(e);
                }
            },
            None => None,
        };
        if let Err(e) = self.blobs.upload_commit(id, &state, digest, size).await {
            let _ = self.meta.release_hold(digest.as_str(), &holder).await;
            return Err(area_err(id)(e));
        }
        if let Some((key, ours)) = &wrapped
            && let Err(e) = self.wrap_existing(digest, ours, key).await
        {
            let _ = self.meta.release_hold(digest.as_str(), &holder).await;
            return Err(e);
        }
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

    pub(crate) async fn rehash(&self, id: &str, state: &str, size: u64, alg: Algorithm) -> Result<Digest> {
        let mut h = HashState::with_algorithm(alg);
        let mut s = self.blobs.upload_read(id, state, 0, size).await.map_err(area_err(id))?;
        while let Some(chunk) = s.next().await {
            h.update(&chunk.map_err(|e| Error::Internal(e.to_string()))?);
        }
        Ok(h.finish())
    }

    /// Remove a session: its bytes first (so that cleanup frees space and works on a full disk),
    /// then its row. A row left by a failed delete names an area that is gone: later requests
    /// find the session unknown, and expiry removes the row.
    pub(crate) async fn discard_upload(&self, id: &str) -> Result<()> {
        self.blobs.upload_abort(id).await.map_err(storage_err)?;
        self.forget_upload(id);
        self.meta.delete_upload(id).await?;
        Ok(())
    }

    /// Cancel an upload session.
    pub async fn upload_cancel(&self, ns: &Namespace, name: &RepoName, id: &str) -> Result<()> {
        let _guard = self.lock_upload(id).await?;
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
            // A move's area is its move hold's (finished by whoever claims a stale hold).
            if !crate::archive::is_move_area(&id) && self.meta.upload(&id).await?.is_none() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Keys, Settings, SystemClock};
    use bytes::Bytes;
    use std::time::Duration;

    async fn registry(dir: &std::path::Path, ttl: Duration) -> Registry {
        let meta = berth_meta::sqlite::SqliteStore::open(&dir.join("meta.db")).await.unwrap();
        let blobs = berth_storage::fs::FsStore::open(dir.join("blobs")).unwrap();
        let settings = Settings {
            namespace: Namespace { account_id: "111111111111".into(), region: "us-east-1".into() },
            upload_ttl: ttl,
            regions: vec!["us-east-1".into()],
            create_on_push: true,
            registry_domain: None,
            blob_redirect_ttl: None,
            min_free_bytes: 0,
            gc_lease: Duration::from_secs(120),
            scan_interval: Duration::from_secs(86_400),
            scan_sbom_referrers: false,
            encrypt_at_rest: true,
        };
        Registry::new(Arc::new(meta), Arc::new(blobs), Arc::new(SystemClock), settings, Keys::from_server_key(&[7; 32]))
    }

    fn body(b: &'static [u8]) -> ByteStream {
        Box::pin(futures::stream::once(async move { Ok(Bytes::from_static(b)) }))
    }

    fn sha256(b: &[u8]) -> Digest {
        crate::hash::sha256_digest(b)
    }

    /// Requests on upload ids that do not exist (bogus or well-formed) leave nothing in the
    /// per-upload maps, and every way a session ends removes its entries.
    #[tokio::test]
    async fn upload_maps_hold_only_live_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let reg = registry(dir.path(), Duration::from_secs(3600)).await;
        let ns = reg.settings.namespace.clone();
        let name = Registry::parse_name("app").unwrap();
        let d = sha256(b"x");
        // A session exists, so the repository does too.
        let live = reg.upload_start(&ns, &name).await.unwrap();
        assert_eq!(reg.upload_maps_len(), (1, 0));
        let long = "a".repeat(40 * 1024);
        for i in 0..50 {
            for id in [format!("{long}{i}"), uuid::Uuid::new_v4().to_string(), format!("bad/id{i}")] {
                let e = reg.upload_patch(&ns, &name, &id, None, body(b"x")).await.unwrap_err();
                assert!(matches!(e, Error::BlobUploadUnknown(_)), "PATCH {}: {e}", &id[..20.min(id.len())]);
                let e = reg.upload_finish(&ns, &name, &id, &d, None, Some(body(b"x"))).await.unwrap_err();
                assert!(matches!(e, Error::BlobUploadUnknown(_)), "PUT: {e}");
                let e = reg.upload_cancel(&ns, &name, &id).await.unwrap_err();
                assert!(matches!(e, Error::BlobUploadUnknown(_)), "DELETE: {e}");
            }
        }
        assert_eq!(reg.upload_maps_len(), (1, 0), "requests on unknown uploads leave nothing behind");
        // A chunk: the session keeps its hash, no lock entry outlives the request.
        reg.upload_patch(&ns, &name, &live.id, None, body(b"hello")).await.unwrap();
        assert_eq!(reg.upload_maps_len(), (1, 0));
        // Errors end nothing but leave no lock entry either.
        let r = ChunkRange::new(99, 99).unwrap();
        let e = reg.upload_patch(&ns, &name, &live.id, Some(r), body(b"x")).await.unwrap_err();
        assert!(matches!(e, Error::RangeNotSatisfiable { size: 5 }), "{e}");
        assert_eq!(reg.upload_maps_len().1, 0);
        // Finish.
        reg.upload_finish(&ns, &name, &live.id, &sha256(b"hello"), None, None).await.unwrap();
        assert_eq!(reg.upload_maps_len(), (0, 0), "finish");
        // Cancel.
        let c = reg.upload_start(&ns, &name).await.unwrap();
        reg.upload_cancel(&ns, &name, &c.id).await.unwrap();
        assert_eq!(reg.upload_maps_len(), (0, 0), "cancel");
        // A wrong digest ends the session.
        let w = reg.upload_start(&ns, &name).await.unwrap();
        let e = reg.upload_finish(&ns, &name, &w.id, &d, None, Some(body(b"y"))).await.unwrap_err();
        assert!(matches!(e, Error::DigestInvalid(_)), "{e}");
        assert_eq!(reg.upload_maps_len(), (0, 0), "digest mismatch");
        // Monolithic upload.
        reg.upload_monolithic(&ns, &name, &d, body(b"x")).await.unwrap();
        assert_eq!(reg.upload_maps_len(), (0, 0), "monolithic");
    }

    /// Expiry removes the sessions' entries; entries of sessions that ended on another node
    /// (their row is gone, this node never hears of it) go after the upload TTL.
    #[tokio::test]
    async fn expired_sessions_leave_no_entries() {
        let dir = tempfile::tempdir().unwrap();
        let reg = registry(dir.path(), Duration::from_millis(1)).await;
        let ns = reg.settings.namespace.clone();
        let name = Registry::parse_name("app").unwrap();
        for _ in 0..3 {
            let u = reg.upload_start(&ns, &name).await.unwrap();
            reg.upload_patch(&ns, &name, &u.id, None, body(b"abc")).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(reg.expire_uploads().await.unwrap(), 3);
        assert_eq!(reg.upload_maps_len(), (0, 0), "expiry");
        // Another node removed these sessions: their hashes go once older than the TTL.
        for _ in 0..3 {
            let u = reg.upload_start(&ns, &name).await.unwrap();
            reg.meta.delete_upload(&u.id).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        reg.upload_start(&ns, &name).await.unwrap();
        assert_eq!(reg.upload_maps_len(), (1, 0), "stale hashes dropped");
    }
}
