//! The registry domain: repositories, blobs, uploads, manifests, tags and referrers.
//!
//! [`Registry`] calls the metadata store (the source of truth) and the blob store (bytes only).
//! It knows nothing of HTTP: the server maps [`Error`] to OCI (and later ECR) error shapes.

mod accounts;
pub mod archive;
mod authz;
mod blobs;
mod cache;
mod encryption;
mod error;
pub mod gc;
mod hash;
pub mod iam;
mod images;
pub mod jobs;
pub mod kms;
pub mod lifecycle;
mod manifests;
pub mod oidc;
pub mod replication;
mod repos;
pub mod roles;
pub mod scan;
pub mod sts;
pub mod templates;
mod uploads;

pub use accounts::{AuthorizationToken, Credentials, Identity, Keys, random_account_id, valid_account_id};
pub use authz::{Caller, EPOCH_CHECK_MS, Target, iso8601, repository_arn};
pub use encryption::AES256_KEY;
pub use error::Error;
pub use images::{ImageFailure, ImageId, ImageIdCursor, image_key_from_token, image_key_token};
pub use kms::UsableKey;
pub use manifests::{CATALOG_EXAMINE_MAX, CatalogPage};
pub use repos::{MAX_RESOURCE_TAGS, RepoSettings, TagFilter, exclusions_of};

use berth_meta::{MetadataStore, Namespace};
use berth_oci::{Digest, RepoName, Tag};
use berth_storage::{BlobStore, ByteStream, StorageError};
use bytes::Bytes;
use cache::{ManifestCache, RepoCache, RepoEntry};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
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
    /// `/readyz` reports the storage not ready when it has less free space than this (bytes).
    pub min_free_bytes: u64,
    /// Garbage collection's deletion lease: a pass deletes a blob's bytes only within this long
    /// of taking it, and a deletion untouched for twice this long is taken to have died with
    /// its process (docs/gc.md).
    pub gc_lease: Duration,
    /// StartImageScan scans an image at most once per this long (ECR: 24 hours).
    pub scan_interval: Duration,
    /// Completed scans push an SBOM referrer artifact of the image into its repository.
    pub scan_sbom_referrers: bool,
    /// Blobs are encrypted at rest ([`encryption`]). `false` only to measure what encryption
    /// costs: blobs are then stored in plaintext (a data dir is never switched between the two).
    pub encrypt_at_rest: bool,
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
    /// Where archived images' bytes go (`archive_storage`), when configured.
    archive: Option<Arc<dyn BlobStore>>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    keys: Keys,
    auth_cache: accounts::AuthCache,
    authz: authz::Authz,
    /// Repositories by namespace and name (read cache; writes check the store).
    repos: RepoCache,
    cache: ManifestCache,
    /// In-memory hash state of uploads, so chunked uploads need not re-read their data.
    hashes: Mutex<HashMap<String, uploads::TaggedHash>>,
    /// Serializes requests on the same upload session within this node; an entry lives only
    /// while a request holds or waits for it (ids are checked first).
    upload_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Pull gates by repository id, with the data epoch they were read at.
    gates: std::sync::RwLock<HashMap<i64, scan::CachedGate>>,
    /// OIDC identity providers' keys (AssumeRoleWithWebIdentity).
    oidc: oidc::Oidc,
    /// Verified STS sessions (signature keys of temporary credentials).
    sessions: sts::SessionCache,
    /// The data keys of the encrypted blob stores ([`encryption`]).
    keyring: Arc<encryption::BlobKeyring>,
    /// Peer deployments replication sends to ([`replication::Peer`]).
    peers: Vec<Arc<replication::Peer>>,
    /// The key protecting each repository's blobs, by repository id (fixed at creation).
    repo_keys: std::sync::RwLock<HashMap<i64, Arc<str>>>,
}

fn storage_err(e: StorageError) -> Error {
    match e {
        StorageError::Body(e) => Error::BodyFailed(e.to_string()),
        e if e.is_full() => {
            tracing::warn!(error = %e, "the blob storage is full");
            Error::StorageFull("the registry's storage is full; retry once space is freed".into())
        }
        e if e.is_unavailable() => {
            tracing::warn!(error = %e, "the blob storage is unavailable");
            Error::Unavailable("the blob storage is unavailable; retry later".into())
        }
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
        let keyring = Arc::new(encryption::BlobKeyring::new(
            meta.clone(),
            keys.master_arc(),
            Arc::new(encryption::MetaKeyMaterials::new(meta.clone(), keys.master_arc())),
        ));
        let blobs = encryption::encrypted(blobs, &keyring, settings.encrypt_at_rest);
        Registry {
            meta,
            blobs,
            archive: None,
            clock,
            settings,
            keys,
            auth_cache: Default::default(),
            authz: Default::default(),
            repos: RepoCache::default(),
            cache: ManifestCache::default(),
            hashes: Mutex::default(),
            upload_locks: Mutex::default(),
            gates: std::sync::RwLock::default(),
            oidc: oidc::Oidc::default(),
            sessions: Default::default(),
            keyring,
            peers: Vec::new(),
            repo_keys: Default::default(),
        }
    }

    /// Where OIDC identity providers' keys come from ([`oidc::Oidc`]); without it (no JWKS
    /// files and no discovery) web identity tokens cannot be verified.
    pub fn with_oidc(mut self, oidc: oidc::Oidc) -> Registry {
        self.oidc = oidc;
        self
    }

    /// Give the registry an archive store: the bytes of archived images move there
    /// ([`archive`]); `None` keeps them in the blob store.
    pub fn with_archive(mut self, archive: Option<Arc<dyn BlobStore>>) -> Registry {
        self.archive = archive.map(|a| encryption::encrypted(a, &self.keyring, self.settings.encrypt_at_rest));
        self
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

    /// How stale (ms) a node's read caches of a repository may be with respect to other nodes'
    /// writes to it.
    const DATA_EPOCH_CHECK_MS: i64 = 500;

    /// A repository's id (cached), its read caches brought up to date: at most every
    /// [`Self::DATA_EPOCH_CHECK_MS`] per repository, its data epoch is compared with the store's;
    /// when another node wrote to the repository since, its cached manifests are dropped, and
    /// when it was deleted (or deleted and created again) its cached id is. Writes to other
    /// repositories invalidate nothing here.
    async fn repo_entry_in(&self, ns: &Namespace, name: &str) -> Result<Option<Arc<RepoEntry>>> {
        let now = self.now();
        if let Some(e) = self.repos.get(ns, name) {
            if now - e.checked_at.load(Ordering::Acquire) < Self::DATA_EPOCH_CHECK_MS {
                return Ok(Some(e));
            }
            match self.meta.repository_epoch(e.id).await? {
                Some(epoch) => {
                    if e.epoch.swap(epoch, Ordering::AcqRel) != epoch {
                        self.cache.invalidate(e.id);
                    }
                    e.checked_at.store(now, Ordering::Release);
                    return Ok(Some(e));
                }
                None => {
                    self.repos.remove(ns, name);
                    self.cache.invalidate(e.id);
                }
            }
        }
        let generation = self.repos.generation();
        let Some((id, epoch)) = self.meta.repository_version(ns, name).await? else {
            return Ok(None);
        };
        let entry = Arc::new(RepoEntry { id, epoch: AtomicI64::new(epoch), checked_at: AtomicI64::new(now) });
        // Manifests cached under an earlier look at this id may predate `epoch`.
        self.cache.invalidate(id);
        self.repos.insert(generation, ns, name, entry.clone());
        Ok(Some(entry))
    }

    async fn repo_id(&self, ns: &Namespace, name: &RepoName) -> Result<Option<i64>> {
        Ok(self.repo_entry(ns, name).await?.map(|e| e.id))
    }

    /// Forget a repository this node found deleted or deleted itself.
    fn forget_repo(&self, ns: &Namespace, name: &str, id: i64) {
        self.repos.remove(ns, name);
        self.cache.invalidate(id);
    }

    async fn existing_repo(&self, ns: &Namespace, name: &RepoName) -> Result<i64> {
        self.repo_id(ns, name)
            .await?
            .ok_or_else(|| Error::RepositoryNotFound { name: name.to_string(), registry: ns.account_id.clone() })
    }

    /// Whether a push to `name` would create the repository (it is missing, and a
    /// CREATE_ON_PUSH creation template applies or create-on-push is on): the pusher then also
    /// needs `ecr:CreateRepository`, as with ECR's creation templates.
    pub async fn push_creates_repository(&self, ns: &Namespace, name: &str) -> Result<bool> {
        Ok(self.repo_entry_in(ns, name).await?.is_none() && self.creates_on_push(ns, name).await?)
    }

    /// The repository a push goes to. It must exist, unless a CREATE_ON_PUSH creation template
    /// applies or `create_on_push` is set: then it is created from it ([`templates`]).
    async fn repo_for_push(&self, ns: &Namespace, name: &RepoName) -> Result<Arc<RepoEntry>> {
        if let Some(e) = self.repo_entry(ns, name).await? {
            return Ok(e);
        }
        if self.create_on_push(ns, name.as_str()).await?.is_none() {
            return Err(Error::RepositoryNotFound { name: name.to_string(), registry: ns.account_id.clone() });
        }
        self.repo_entry(ns, name).await?.ok_or_else(|| Error::Internal(format!("repository {name} vanished")))
    }
}
