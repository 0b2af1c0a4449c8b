//! The registry domain: repositories, blobs, uploads, manifests, tags and referrers.
//!
//! [`Registry`] calls the metadata store (the source of truth) and the blob store (bytes only).
//! It knows nothing of HTTP: the server maps [`Error`] to OCI (and later ECR) error shapes.

mod accounts;
mod authz;
mod cache;
mod error;
mod hash;
pub mod iam;
mod images;
pub mod jobs;
mod repos;

pub use accounts::{AuthorizationToken, Credentials, Identity, Keys, random_account_id, valid_account_id};
pub use authz::{Caller, EPOCH_CHECK_MS, Target, iso8601, repository_arn};
pub use error::Error;
pub use images::{ImageFailure, ImageId};
pub use repos::{MAX_RESOURCE_TAGS, RepoSettings, TagFilter, exclusions_of};

use berth_meta::{MetadataStore, Namespace, PutManifest, Referrer};
use berth_oci::manifest::{self, Kind};
use berth_oci::{Algorithm, Digest, Reference, RepoName, Tag};
use berth_storage::{BlobStore, ByteStream, StorageError};
use bytes::Bytes;
use cache::ManifestCache;
use futures::StreamExt;
use hash::{HashState, Hasher};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Result alias of registry operations.
pub type Result<T> = std::result::Result<T, Error>;

/// A source of time (epoch milliseconds), injectable for tests.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}

/// Registry settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The namespace (account, region) of the data plane.
    pub namespace: Namespace,
    /// Upload sessions idle for longer than this are removed.
    pub upload_ttl: Duration,
    /// Regions this deployment hosts (the first is the data plane's).
    pub regions: Vec<String>,
    /// Pushes to a missing repository create it (ECR's CREATE_ON_PUSH template behaviour).
    pub create_on_push: bool,
    /// With a registry domain, `<account>.dkr.ecr.<region>.<domain>` hosts address each
    /// account's registry in each region.
    pub registry_domain: Option<String>,
    /// Blob `GET`s answer with a redirect to a storage URL valid this long, where the storage
    /// has such URLs ([`BlobStore::presign_get`]); `None`: blobs stream through the registry.
    pub blob_redirect_ttl: Option<Duration>,
}

/// Cached facts about a data-plane repository.
#[derive(Debug)]
struct RepoEntry {
    id: i64,
    mutability: String,
    exclusions: Vec<TagFilter>,
}

impl RepoEntry {
    /// Whether an existing `tag` may not be moved.
    fn tag_is_immutable(&self, tag: &str) -> bool {
        let matched = self.exclusions.iter().any(|f| repos::wildcard_match(&f.filter, tag));
        match self.mutability.as_str() {
            "IMMUTABLE" => true,
            "IMMUTABLE_WITH_EXCLUSION" => !matched,
            "MUTABLE_WITH_EXCLUSION" => matched,
            _ => false,
        }
    }
}

/// A stored manifest, ready to serve.
#[derive(Debug)]
pub struct ManifestData {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
    /// When a pull of this manifest was last recorded (epoch ms; 0 = never by this node).
    pull_recorded_at: AtomicI64,
}

/// An upload session's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    pub id: String,
    /// Bytes received so far.
    pub size: u64,
}

/// A blob (or part of one) to stream to a client.
pub struct BlobRead {
    /// Full size of the blob.
    pub size: u64,
    /// The served range when partial.
    pub range: Option<berth_oci::range::ByteRange>,
    pub body: ByteStream,
}

/// Outcome of a manifest push.
#[derive(Debug, Clone)]
pub struct PushedManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
    /// Every tag now pointing at the manifest (the reference's and the `?tag=` ones).
    pub tags: Vec<Tag>,
    /// The manifest's effective media type.
    pub media_type: String,
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<String>,
    /// `true` when more items follow the last one.
    pub more: bool,
}

/// The registry.
pub struct Registry {
    meta: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    keys: Keys,
    auth_cache: accounts::AuthCache,
    authz: authz::Authz,
    /// Repositories by namespace and name: id and tag-mutability settings.
    repo_ids: RwLock<HashMap<Namespace, HashMap<String, Arc<RepoEntry>>>>,
    cache: ManifestCache,
    /// The data epoch last read from the metadata store, and when (ms): other nodes' writes.
    data_epoch: AtomicI64,
    data_checked_at: AtomicI64,
    /// In-memory hash state of uploads, so chunked uploads need not re-read their data.
    hashes: Mutex<HashMap<String, HashState>>,
    /// Serializes requests on the same upload session within this node.
    upload_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn storage_err(e: StorageError) -> Error {
    match e {
        StorageError::Body(e) => Error::BodyFailed(e.to_string()),
        other => Error::Internal(other.to_string()),
    }
}

impl Registry {
    /// Build a registry over a metadata store and a blob store.
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        blobs: Arc<dyn BlobStore>,
        clock: Arc<dyn Clock>,
        settings: Settings,
        keys: Keys,
    ) -> Registry {
        Registry {
            meta,
            blobs,
            clock,
            settings,
            keys,
            auth_cache: Default::default(),
            authz: Default::default(),
            repo_ids: RwLock::default(),
            cache: ManifestCache::default(),
            data_epoch: AtomicI64::new(i64::MIN),
            data_checked_at: AtomicI64::new(0),
            hashes: Mutex::default(),
            upload_locks: Mutex::default(),
        }
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Validate a repository name.
    pub fn parse_name(name: &str) -> Result<RepoName> {
        name.parse().map_err(|_| Error::NameInvalid(name.chars().take(300).collect()))
    }

    /// Validate a digest.
    pub fn parse_digest(d: &str) -> Result<Digest> {
        d.parse()
            .map_err(|_| Error::DigestInvalid(format!("invalid digest '{}'", d.chars().take(200).collect::<String>())))
    }

    async fn repo_entry(&self, ns: &Namespace, name: &RepoName) -> Result<Option<Arc<RepoEntry>>> {
        self.repo_entry_in(ns, name.as_str()).await
    }

    /// How stale (ms) a node's read caches may be with respect to other nodes' writes.
    const DATA_EPOCH_CHECK_MS: i64 = 500;

    /// Drop the read caches (repository ids and settings, manifests by reference) when another
    /// node wrote since the last look; looks at most every [`Self::DATA_EPOCH_CHECK_MS`].
    async fn sync_data_epoch(&self) -> Result<()> {
        let now = self.now();
        if now - self.data_checked_at.load(Ordering::Relaxed) < Self::DATA_EPOCH_CHECK_MS {
            return Ok(());
        }
        let epoch = self.meta.data_epoch().await?;
        let before = self.data_epoch.swap(epoch, Ordering::SeqCst);
        if before != epoch && before != i64::MIN {
            self.repo_ids.write().unwrap().clear();
            self.cache.clear();
        }
        self.data_checked_at.store(now, Ordering::SeqCst);
        Ok(())
    }

    /// A repository's id and mutability settings (cached).
    async fn repo_entry_in(&self, ns: &Namespace, name: &str) -> Result<Option<Arc<RepoEntry>>> {
        self.sync_data_epoch().await?;
        if let Some(e) = self.repo_ids.read().unwrap().get(ns).and_then(|m| m.get(name)) {
            return Ok(Some(e.clone()));
        }
        let Some(info) = self.meta.repository_info(ns, name).await? else {
            return Ok(None);
        };
        let entry = Arc::new(RepoEntry {
            id: info.id,
            exclusions: repos::exclusions_of(&info),
            mutability: info.image_tag_mutability,
        });
        self.repo_ids.write().unwrap().entry(ns.clone()).or_default().insert(name.to_string(), entry.clone());
        Ok(Some(entry))
    }

    async fn repo_id(&self, ns: &Namespace, name: &RepoName) -> Result<Option<i64>> {
        Ok(self.repo_entry(ns, name).await?.map(|e| e.id))
    }

    /// Forget cached settings of a data-plane repository after they changed.
    fn forget_repo(&self, ns: &Namespace, name: &str) {
        if let Some(m) = self.repo_ids.write().unwrap().get_mut(ns) {
            m.remove(name);
        }
    }

    async fn existing_repo(&self, ns: &Namespace, name: &RepoName) -> Result<i64> {
        self.repo_id(ns, name)
            .await?
            .ok_or_else(|| Error::RepositoryNotFound { name: name.to_string(), registry: ns.account_id.clone() })
    }

    /// Whether a push to `name` would create the repository (it is missing and create-on-push is
    /// on): the pusher then also needs `ecr:CreateRepository`, as with ECR's creation templates.
    pub async fn push_creates_repository(&self, ns: &Namespace, name: &str) -> Result<bool> {
        Ok(self.settings.create_on_push && self.repo_entry_in(ns, name).await?.is_none())
    }

    /// The repository a push goes to. It must exist, unless `create_on_push` is set (as with
    /// ECR's CREATE_ON_PUSH repository creation templates).
    async fn repo_for_push(&self, ns: &Namespace, name: &RepoName) -> Result<Arc<RepoEntry>> {
        if let Some(e) = self.repo_entry(ns, name).await? {
            return Ok(e);
        }
        if !self.settings.create_on_push {
            return Err(Error::RepositoryNotFound { name: name.to_string(), registry: ns.account_id.clone() });
        }
        self.meta.ensure_repository(ns, name.as_str(), self.now()).await?;
        self.repo_entry(ns, name).await?.ok_or_else(|| Error::Internal(format!("repository {name} vanished")))
    }

    // ---- blobs ----------------------------------------------------------------------------

    /// Size of a blob linked to the repository.
    pub async fn blob_size(&self, ns: &Namespace, name: &RepoName, digest: &Digest) -> Result<u64> {
        let repo = self.existing_repo(ns, name).await?;
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
        let body = self.blobs.read(digest, start, len).await.map_err(|e| match e {
            StorageError::NotFound => Error::Internal(format!("blob {digest} is in metadata but not in storage")),
            other => storage_err(other),
        })?;
        Ok(BlobRead { size, range, body })
    }

    /// Where a client may fetch a blob of the repository directly (a presigned storage URL),
    /// when blob redirects are configured and the storage offers one; `None`: stream it.
    pub async fn blob_redirect(&self, ns: &Namespace, name: &RepoName, digest: &Digest) -> Result<Option<String>> {
        let Some(ttl) = self.settings.blob_redirect_ttl else {
            return Ok(None);
        };
        self.blob_size(ns, name, digest).await?;
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
        let Some(size) = self.meta.blob_in_repo(src, digest.as_str()).await? else {
            return Ok(None);
        };
        let repo = self.repo_for_push(ns, name).await?;
        self.meta.link_blob(repo.id, digest.as_str(), size, self.now()).await?;
        Ok(Some(size))
    }

    // ---- uploads --------------------------------------------------------------------------

    /// Open an upload session.
    pub async fn upload_start(&self, ns: &Namespace, name: &RepoName) -> Result<UploadStatus> {
        let repo = self.repo_for_push(ns, name).await?;
        self.start_upload_in(repo.id).await
    }

    async fn start_upload_in(&self, repo_id: i64) -> Result<UploadStatus> {
        let id = uuid::Uuid::new_v4().to_string();
        self.meta.create_upload(&id, repo_id, self.now()).await?;
        self.blobs.upload_create(&id).await.map_err(storage_err)?;
        self.hashes.lock().unwrap().insert(id.clone(), HashState::new());
        Ok(UploadStatus { id, size: 0 })
    }

    fn upload_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.upload_locks.lock().unwrap().entry(id.to_string()).or_default().clone()
    }

    fn forget_upload(&self, id: &str) {
        self.hashes.lock().unwrap().remove(id);
        self.upload_locks.lock().unwrap().remove(id);
    }

    async fn session(&self, ns: &Namespace, name: &RepoName, id: &str) -> Result<berth_meta::Upload> {
        let repo = self.repo_id(ns, name).await?;
        self.session_in(repo, id).await
    }

    /// The upload session `id`, which must belong to repository `repo`.
    async fn session_in(&self, repo: Option<i64>, id: &str) -> Result<berth_meta::Upload> {
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

    async fn patch_in(
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
    async fn append(
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

    async fn finish_in(
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

    async fn rehash(&self, id: &str, size: u64, alg: Algorithm) -> Result<Digest> {
        let mut h = HashState::with_algorithm(alg);
        let mut s = self.blobs.upload_read(id, 0, size).await.map_err(storage_err)?;
        while let Some(chunk) = s.next().await {
            h.update(&chunk.map_err(|e| Error::Internal(e.to_string()))?);
        }
        Ok(h.finish())
    }

    async fn discard_upload(&self, id: &str) -> Result<()> {
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

    // ---- manifests ------------------------------------------------------------------------

    /// Fetch a manifest by tag or digest.
    pub async fn manifest_get(
        &self,
        ns: &Namespace,
        name: &RepoName,
        reference: &Reference,
    ) -> Result<Arc<ManifestData>> {
        let repo = self.existing_repo(ns, name).await?;
        let key = reference.to_string();
        if let Some(m) = self.cache.get(repo, &key) {
            self.note_pull(repo, &m);
            return Ok(m);
        }
        let generation = self.cache.generation(repo);
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => {
                let d = self
                    .meta
                    .resolve_tag(repo, t.as_str())
                    .await?
                    .ok_or_else(|| Error::ManifestUnknown(key.clone()))?;
                Self::parse_digest(&d)?
            }
        };
        let m = self.meta.manifest(repo, digest.as_str()).await?.ok_or_else(|| Error::ManifestUnknown(key.clone()))?;
        let data = Arc::new(ManifestData {
            digest,
            media_type: m.media_type,
            bytes: Bytes::from(m.content),
            pull_recorded_at: AtomicI64::new(0),
        });
        self.cache.insert(repo, generation, key, data.clone());
        self.note_pull(repo, &data);
        Ok(data)
    }

    /// Record a pull (for `lastRecordedPullTime`) at most once an hour per cached manifest,
    /// off the request path.
    fn note_pull(&self, repo: i64, m: &ManifestData) {
        const EVERY_MS: i64 = 3_600_000;
        let now = self.now();
        let last = m.pull_recorded_at.load(Ordering::Relaxed);
        if now - last < EVERY_MS
            || m.pull_recorded_at.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        let meta = self.meta.clone();
        let digest = m.digest.to_string();
        tokio::spawn(async move {
            if let Err(e) = meta.record_pull(repo, &digest, now).await {
                tracing::warn!(error = %e, "recording a pull failed");
            }
        });
    }

    /// Push a manifest under `reference`, plus any `extra_tags` (`?tag=`).
    pub async fn manifest_put(
        &self,
        ns: &Namespace,
        name: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
        extra_tags: &[String],
    ) -> Result<PushedManifest> {
        let repo = self.repo_for_push(ns, name).await?;
        self.put_manifest_in(&repo, name.as_str(), reference, content_type, bytes, extra_tags).await
    }

    /// Push a manifest into a resolved repository (data plane and ECR PutImage).
    async fn put_manifest_in(
        &self,
        repo: &RepoEntry,
        name: &str,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
        extra_tags: &[String],
    ) -> Result<PushedManifest> {
        if bytes.len() > berth_oci::MAX_MANIFEST_BYTES {
            return Err(Error::ManifestTooLarge);
        }
        let parsed = manifest::parse(content_type, &bytes).map_err(|e| Error::ManifestInvalid(e.to_string()))?;
        let algorithm = match reference {
            Reference::Digest(d) => d.algorithm(),
            Reference::Tag(_) => Algorithm::Sha256,
        };
        let mut h = HashState::with_algorithm(algorithm);
        h.update(&bytes);
        let digest = h.finish();
        let mut tags: Vec<Tag> = Vec::new();
        match reference {
            Reference::Digest(d) if d != &digest => {
                return Err(Error::DigestInvalid(format!("manifest digest {digest} does not match reference {d}")));
            }
            Reference::Digest(_) => {}
            Reference::Tag(t) => tags.push(t.clone()),
        }
        for t in extra_tags {
            let t: Tag = t.parse().map_err(|_| Error::TagInvalid(t.chars().take(200).collect()))?;
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        let blob_refs: Vec<String> = parsed.blobs.iter().map(|(d, _)| d.to_string()).collect();
        let child_refs: Vec<String> = parsed.children.iter().map(|d| d.to_string()).collect();
        let blob_refs: Vec<&str> = blob_refs.iter().map(String::as_str).collect();
        let child_refs: Vec<&str> = child_refs.iter().map(String::as_str).collect();
        let annotations = parsed.annotations.as_ref().map(|a| serde_json::to_string(a).unwrap_or_default());
        let subject = parsed.subject.as_ref().map(|d| d.to_string());
        let tag_refs: Vec<&str> = tags.iter().map(Tag::as_str).collect();
        let immutable: Vec<&str> = tag_refs.iter().copied().filter(|t| repo.tag_is_immutable(t)).collect();
        let new = berth_meta::NewManifest {
            repo_id: repo.id,
            immutable_tags: &immutable,
            config_media_type: parsed.config_media_type.as_deref(),
            image_size: match parsed.kind {
                Kind::Image => Some(parsed.blobs.iter().map(|(_, s)| *s as u64).sum()),
                Kind::Index => None,
            },
            digest: digest.as_str(),
            media_type: &parsed.media_type,
            artifact_type: parsed.artifact_type.as_deref(),
            subject: subject.as_deref(),
            annotations: annotations.as_deref(),
            content: &bytes,
            blobs: &blob_refs,
            children: if parsed.kind == Kind::Index { &child_refs } else { &[] },
        };
        let outcome = self.meta.put_manifest(&new, &tag_refs, self.now()).await?;
        self.cache.invalidate(repo.id);
        match outcome {
            PutManifest::TagExists(tag) => Err(Error::TagImmutable { tag, repo: name.to_string() }),
            PutManifest::Stored => {
                Ok(PushedManifest { digest, subject: parsed.subject, tags, media_type: parsed.media_type })
            }
            PutManifest::MissingBlobs(b) => Err(Error::ManifestBlobUnknown(b)),
            PutManifest::MissingManifests(m) => Err(Error::ManifestChildUnknown(m)),
        }
    }

    /// Delete a manifest by digest (with its tags), or only a tag.
    pub async fn manifest_delete(&self, ns: &Namespace, name: &RepoName, reference: &Reference) -> Result<()> {
        let repo = self.existing_repo(ns, name).await?;
        let found = match reference {
            Reference::Digest(d) => self.meta.delete_manifest(repo, d.as_str()).await?,
            Reference::Tag(t) => self.meta.delete_tag(repo, t.as_str()).await?,
        };
        self.cache.invalidate(repo);
        if found { Ok(()) } else { Err(Error::ManifestUnknown(reference.to_string())) }
    }

    /// One page of a repository's tags.
    pub async fn tags(&self, ns: &Namespace, name: &RepoName, last: Option<&str>, n: Option<u32>) -> Result<Page> {
        let repo = self.existing_repo(ns, name).await?;
        let limit = n.unwrap_or(u32::MAX - 1).min(100_000);
        let mut items = if limit == 0 { Vec::new() } else { self.meta.list_tags(repo, last, limit + 1).await? };
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        Ok(Page { items, more })
    }

    /// Readiness: the metadata store answers and the blob store answers (a stat of a digest that
    /// does not exist).
    pub async fn ready(&self) -> Result<()> {
        self.meta.auth_epoch().await?;
        let probe: Digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
            .parse()
            .map_err(|_| Error::Internal("probe digest".into()))?;
        self.blobs.stat(&probe).await.map_err(storage_err)?;
        Ok(())
    }

    /// One page of the repositories `caller` may see (ecr:DescribeRepositories on each).
    pub async fn catalog_for(
        &self,
        caller: &Caller<'_>,
        ns: &Namespace,
        last: Option<&str>,
        n: Option<u32>,
    ) -> Result<Page> {
        let limit = n.unwrap_or(u32::MAX - 1).min(100_000) as usize;
        let mut items = Vec::new();
        let mut cursor = last.map(str::to_string);
        let batch = (limit + 1).clamp(1, 1000) as u32;
        while limit > 0 && items.len() <= limit {
            let names = self.meta.list_repositories(ns, cursor.as_deref(), batch).await?;
            let Some(end) = names.last().cloned() else { break };
            for name in names {
                let target = Target::Repository { ns, name: &name };
                match self.authorize(caller, "ecr:DescribeRepositories", target).await {
                    Ok(()) => items.push(name),
                    Err(Error::Denied(_)) => {}
                    Err(e) => return Err(e),
                }
                if items.len() > limit {
                    break;
                }
            }
            cursor = Some(end);
        }
        let more = items.len() > limit;
        items.truncate(limit);
        Ok(Page { items, more })
    }

    /// Manifests whose subject is `subject`.
    pub async fn referrers(
        &self,
        ns: &Namespace,
        name: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        // The spec forbids a 404 here: an unknown repository simply has no referrers.
        let Some(repo) = self.repo_id(ns, name).await? else {
            return Ok(Vec::new());
        };
        Ok(self.meta.referrers(repo, subject.as_str(), artifact_type).await?)
    }
}
