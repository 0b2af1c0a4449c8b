//! Registry metadata: repositories, blob links, manifests, tags, referrers and upload sessions.
//!
//! [`MetadataStore`] is the source of truth. Each method is one transaction, so a crash leaves
//! either all of an operation or none of it. Times are epoch milliseconds. Digests are passed as
//! their validated string form.

#[macro_use]
mod portable;
pub mod audit;
pub mod blobkeys;
#[cfg(test)]
mod contract;
pub mod events;
pub mod gc;
pub mod iam;
pub mod kms;
pub mod lifecycle;
mod listing;
pub mod mutability;
pub mod postgres;
pub mod replication;
pub mod roles;
pub mod scan;
pub mod sqlite;
pub mod templates;

use async_trait::async_trait;
pub use audit::AuditStore;
pub use blobkeys::{BlobKey, BlobKeyStore};
pub use events::EventStore;
pub use gc::GcStore;
pub use iam::{IamEntity, IamStore, IdentityPolicy, ManagedPolicy, Owner};
pub use kms::{KmsAlias, KmsKey, KmsMaterial, KmsStore};
pub use lifecycle::LifecycleStore;
pub use replication::{ReplicationStatus, ReplicationStore};
pub use roles::{OidcProvider, Role, RoleStore, StsSession};
pub use templates::{StoredTemplate, TemplateStore};

/// Metadata failures.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Schema migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The repository a write names was deleted (by another node, meanwhile): nothing was written.
    #[error("the repository no longer exists")]
    RepositoryGone,
    /// The blob is being deleted by garbage collection (or was just deleted): a link to it or
    /// an upload of it must be retried once the deletion is over.
    #[error("blob {0} is being garbage-collected; retry")]
    BlobBeingDeleted(String),
    /// A caller passed what a method's contract excludes (a bug of the caller, not of the data).
    #[error("invalid call: {0}")]
    Invalid(String),
    /// The store was opened with [`SchemaMode::Check`] and its schema is not the one this build
    /// expects: migrations are pending, or the database has migrations this build does not know
    /// (it was migrated by a newer version).
    #[error(
        "the metadata schema is not current: {} pending migration(s){}{}; run `berth migrate` (with this version)",
        pending.len(),
        if pending.is_empty() { String::new() } else { format!(" ({})", pending.join(", ")) },
        if unknown.is_empty() { String::new() } else { format!(", unknown applied version(s) {unknown:?}") }
    )]
    SchemaNotCurrent {
        /// `<version>_<description>` of each migration not applied yet.
        pending: Vec<String>,
        /// Versions applied in the database that this build does not know.
        unknown: Vec<i64>,
    },
}

impl MetaError {
    /// Whether a write failed because its repository was deleted meanwhile (checked, or caught
    /// by a foreign key: PostgreSQL `23503`, SQLite `787`).
    pub fn is_repository_gone(&self) -> bool {
        match self {
            MetaError::RepositoryGone => true,
            MetaError::Db(sqlx::Error::Database(d)) => d.code().is_some_and(|c| matches!(c.as_ref(), "23503" | "787")),
            _ => false,
        }
    }

    /// Whether the database is out of space (SQLite `SQLITE_FULL`, PostgreSQL `53100`).
    pub fn is_full(&self) -> bool {
        let MetaError::Db(sqlx::Error::Database(d)) = self else { return false };
        d.code().is_some_and(|c| matches!(c.as_ref(), "13" | "53100"))
    }

    /// Whether the database could not be reached (down, restarting, no connection within the
    /// pool's bounded wait) rather than refusing the operation: worth retrying later.
    pub fn is_unavailable(&self) -> bool {
        let MetaError::Db(e) = self else { return false };
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => {
                true
            }
            sqlx::Error::Database(d) => d.code().is_some_and(|c| {
                // PostgreSQL: connection exceptions (08xxx), admin/crash shutdown, cannot connect now.
                c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
            }),
            _ => false,
        }
    }
}

/// Result alias for metadata operations.
pub type Result<T> = std::result::Result<T, MetaError>;

/// What opening a store does about schema migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaMode {
    /// Apply pending migrations (serialized across processes).
    Migrate,
    /// Apply nothing; fail with [`MetaError::SchemaNotCurrent`] unless every migration this build
    /// knows is applied and no unknown one is.
    Check,
}

/// A schema migration that opening a store applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: i64,
    pub description: String,
}

/// Compare the migrations recorded in the database with those of `migrator`; with `apply`, run
/// the pending ones. Returns the migrations that were pending (applied now when `apply`).
async fn migrate_conn<C>(migrator: &sqlx::migrate::Migrator, conn: &mut C, apply: bool) -> Result<Vec<AppliedMigration>>
where
    C: sqlx::migrate::Migrate,
{
    if apply {
        // Held while listing and applying, so that what is reported as applied is what this
        // call applied (PostgreSQL advisory locks nest with the one `run_direct` takes).
        conn.lock().await?;
        let r = migrate_locked(migrator, conn, true).await;
        let unlocked = conn.unlock().await;
        let applied = r?;
        unlocked?;
        return Ok(applied);
    }
    migrate_locked(migrator, conn, false).await
}

async fn migrate_locked<C>(
    migrator: &sqlx::migrate::Migrator,
    conn: &mut C,
    apply: bool,
) -> Result<Vec<AppliedMigration>>
where
    C: sqlx::migrate::Migrate,
{
    conn.ensure_migrations_table("_sqlx_migrations").await?;
    let applied = conn.list_applied_migrations("_sqlx_migrations").await?;
    let pending: Vec<AppliedMigration> = migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration() && !applied.iter().any(|a| a.version == m.version))
        .map(|m| AppliedMigration { version: m.version, description: m.description.to_string() })
        .collect();
    let unknown: Vec<i64> =
        applied.iter().map(|a| a.version).filter(|v| !migrator.iter().any(|m| m.version == *v)).collect();
    if apply {
        migrator.run_direct(None, conn, false).await?;
    } else if !pending.is_empty() || !unknown.is_empty() {
        return Err(MetaError::SchemaNotCurrent {
            pending: pending.iter().map(|m| format!("{:04}_{}", m.version, m.description.replace(' ', "_"))).collect(),
            unknown,
        });
    }
    Ok(pending)
}

/// State of a background job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Waiting to be claimed once `run_after` has passed.
    Pending,
    /// Claimed by `lease_owner` until `lease_expires_at`; after that any node may claim it again.
    Running,
    /// Completed by its lease owner. Final.
    Done,
    /// Failed on its last allowed attempt. Final.
    Failed,
}

impl JobState {
    /// The stored (and printed) name: `pending`, `running`, `done` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> JobState {
        match s {
            "pending" => JobState::Pending,
            "running" => JobState::Running,
            "done" => JobState::Done,
            _ => JobState::Failed,
        }
    }
}

/// A background job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    /// What to run (the handler's name), e.g. `expire-uploads`.
    pub kind: String,
    /// Identity of the work within its kind (a time bucket, a repository id ...).
    pub key: String,
    /// Handler input, JSON text.
    pub payload: String,
    pub state: JobState,
    /// Claims so far (a lease taken over from a dead node counts as an attempt).
    pub attempts: u32,
    pub max_attempts: u32,
    /// Not claimed before this time (epoch ms).
    pub run_after: i64,
    /// The node holding (or that last held) the lease.
    pub lease_owner: Option<String>,
    /// While running: when the lease ends unless renewed.
    pub lease_expires_at: Option<i64>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    pub kind: &'a str,
    pub key: &'a str,
    /// JSON text handed to the handler.
    pub payload: &'a str,
    /// Not claimed before this time (epoch ms).
    pub run_after: i64,
    /// Claims allowed before the job is marked failed (at least 1).
    pub max_attempts: u32,
    /// Also refuse when a job of this kind and key exists in any state, finished ones included:
    /// periodic work keyed by a time bucket then runs once per bucket however many nodes
    /// schedule it.
    pub once: bool,
}

/// The account and region a repository lives in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace {
    pub account_id: String,
    pub region: String,
}

/// An upload session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    pub repo_id: i64,
    /// Bytes durably stored so far.
    pub size: u64,
    /// The blob store's state of the upload area holding them (`berth_storage` area state).
    pub state: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A manifest being pushed.
#[derive(Debug, Clone)]
pub struct NewManifest<'a> {
    pub repo_id: i64,
    pub digest: &'a str,
    pub media_type: &'a str,
    pub artifact_type: Option<&'a str>,
    pub subject: Option<&'a str>,
    /// Annotations as a JSON object string.
    pub annotations: Option<&'a str>,
    pub content: &'a [u8],
    /// Blobs that must be linked to the repository, each with the size its descriptor
    /// declares (which must be the stored blob's size).
    pub blobs: &'a [(&'a str, u64)],
    /// Manifests that must exist in the repository, each with the size its descriptor declares
    /// (which must be the stored manifest's byte length).
    pub children: &'a [(&'a str, u64)],
    /// Config media type (image manifests).
    pub config_media_type: Option<&'a str>,
    /// An index: its image size is the largest of its children's; otherwise the sum of the
    /// stored sizes of its blobs.
    pub index: bool,
    /// Written by replication (its push events say so, and are not replicated again: as in
    /// ECR, an image is replicated once per push, never onward from a destination).
    pub replicated: bool,
}

/// Result of [`MetadataStore::put_manifest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutManifest {
    /// Stored (or already present) and tags updated.
    Stored,
    /// The repository does not exist (any more); nothing changed.
    RepositoryGone,
    /// These blobs are not linked to the repository; nothing changed.
    MissingBlobs(Vec<String>),
    /// These child manifests are not in the repository; nothing changed.
    MissingManifests(Vec<String>),
    /// A descriptor declares a size other than the stored blob's (or child manifest's); nothing
    /// changed.
    SizeMismatch { digest: String, declared: u64, stored: u64 },
    /// This tag exists and the repository's mutability settings, as committed when the write
    /// ran, forbid moving it; nothing changed.
    TagExists(String),
}

/// A stored manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: String,
    pub media_type: String,
    pub content: Vec<u8>,
    /// Only an `Active` image can be pulled.
    pub status: ImageStatus,
}

/// ECR's `imageStatus`: where an image's storage class stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageStatus {
    /// Standard storage: it can be pulled.
    #[default]
    Active,
    /// In the archive: it cannot be pulled until it is restored.
    Archived,
    /// Being restored from the archive.
    Activating,
}

impl ImageStatus {
    /// The API's (and the database's) name.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageStatus::Active => "ACTIVE",
            ImageStatus::Archived => "ARCHIVED",
            ImageStatus::Activating => "ACTIVATING",
        }
    }

    /// From the API's name.
    pub fn parse(s: &str) -> Option<ImageStatus> {
        match s {
            "ACTIVE" => Some(ImageStatus::Active),
            "ARCHIVED" => Some(ImageStatus::Archived),
            "ACTIVATING" => Some(ImageStatus::Activating),
            _ => None,
        }
    }
}

/// A manifest whose `subject` is some digest, as the referrers API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    /// JSON object string.
    pub annotations: Option<String>,
    /// When it was pushed (with the digest, its place in the order referrers are listed in).
    pub pushed_at: i64,
    pub status: ImageStatus,
}

/// An access key. The secret is stored sealed under the server key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub access_key_id: String,
    pub account_id: String,
    /// `None` for the account's root.
    pub user_name: Option<String>,
    pub secret_enc: String,
    /// `Active` or `Inactive`.
    pub status: String,
    pub created_at: i64,
}

/// A repository and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryInfo {
    pub id: i64,
    pub account_id: String,
    pub region: String,
    pub name: String,
    pub created_at: i64,
    /// `MUTABLE`, `IMMUTABLE`, `IMMUTABLE_WITH_EXCLUSION` or `MUTABLE_WITH_EXCLUSION`.
    pub image_tag_mutability: String,
    /// JSON array of exclusion filters.
    pub mutability_exclusions: Option<String>,
    pub scan_on_push: bool,
    pub encryption_type: String,
    pub kms_key: Option<String>,
}

/// Settings of a repository being created.
#[derive(Debug, Clone)]
pub struct NewRepository<'a> {
    pub ns: &'a Namespace,
    pub name: &'a str,
    pub image_tag_mutability: &'a str,
    pub mutability_exclusions: Option<&'a str>,
    pub scan_on_push: bool,
    pub encryption_type: &'a str,
    pub kms_key: Option<&'a str>,
    pub tags: &'a [(String, String)],
}

/// A manifest of a repository with what DescribeImages reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub digest: String,
    pub media_type: String,
    pub config_media_type: Option<String>,
    pub artifact_type: Option<String>,
    pub subject: Option<String>,
    pub image_size: u64,
    pub pushed_at: i64,
    pub last_pulled_at: Option<i64>,
    pub status: ImageStatus,
    /// When it last went to the archive, and was last restored from it (epoch ms).
    pub last_archived_at: Option<i64>,
    pub last_activated_at: Option<i64>,
    /// Tags pointing at it, sorted.
    pub tags: Vec<String>,
}

impl Image {
    /// Its position in the repository's listing order.
    pub fn key(&self) -> ImageKey {
        ImageKey { pushed_at: self.pushed_at, digest: self.digest.clone() }
    }
}

/// Where an image sits in its repository's listing order: oldest push first, then by digest.
/// A push never changes an image's key (re-pushing a manifest keeps its first push time), so a
/// listing that continues after a key neither repeats nor skips an image that stayed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImageKey {
    pub pushed_at: i64,
    pub digest: String,
}

/// ECR's `tagStatus` filter of image listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TagStatus {
    #[default]
    Any,
    Tagged,
    Untagged,
}

/// Where a page of images starts: at the beginning, at an image (inclusive) or after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImagesFrom<'a> {
    Start,
    At(&'a ImageKey),
    After(&'a ImageKey),
}

/// Outcome of [`MetadataStore::delete_repository`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteRepository {
    Deleted,
    /// It holds images and `force` was not given; nothing changed.
    NotEmpty,
}

/// Which repositories [`MetadataStore::list_repositories_where`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoFilter<'a> {
    /// Names starting with this text.
    Prefix(&'a str),
    /// Repositories that have a repository policy.
    WithPolicy,
}

/// The metadata backend.
#[async_trait]
pub trait MetadataStore:
    IamStore
    + RoleStore
    + blobkeys::BlobKeyStore
    + replication::ReplicationStore
    + KmsStore
    + EventStore
    + AuditStore
    + LifecycleStore
    + GcStore
    + scan::ScanStore
    + TemplateStore
    + Send
    + Sync
    + 'static
{
    /// The id of repository `name`, if it exists.
    async fn repository(&self, ns: &Namespace, name: &str) -> Result<Option<i64>>;
    /// The id of repository `name`, creating it if needed.
    async fn ensure_repository(&self, ns: &Namespace, name: &str, now: i64) -> Result<i64>;
    /// Repository names after `last` in lexical order, at most `limit`.
    async fn list_repositories(&self, ns: &Namespace, last: Option<&str>, limit: u32) -> Result<Vec<String>>;
    /// Like [`MetadataStore::list_repositories`], only the names that pass `filter`; the
    /// database reads only those (an index range for a prefix).
    async fn list_repositories_where(
        &self,
        ns: &Namespace,
        filter: RepoFilter<'_>,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>>;

    /// Size of `digest` when it is linked to the repository.
    async fn blob_in_repo(&self, repo_id: i64, digest: &str) -> Result<Option<u64>>;
    /// Link an existing blob into a repository (a cross-repository mount), serialized with its
    /// garbage collection (docs/gc.md): its size, or `None` (nothing linked) when the blob does
    /// not exist or is being deleted.
    async fn mount_blob(&self, repo_id: i64, digest: &str, now: i64) -> Result<Option<u64>>;
    /// Record the blob (if new) and link it to the repository (a link that exists is made
    /// young again). For blobs whose bytes the caller just stored, under a hold (docs/gc.md).
    async fn link_blob(&self, repo_id: i64, digest: &str, size: u64, now: i64) -> Result<()>;
    /// Unlink a blob from a repository; `false` when it was not linked.
    async fn unlink_blob(&self, repo_id: i64, digest: &str) -> Result<bool>;

    /// Record a new, empty upload session.
    async fn create_upload(&self, id: &str, repo_id: i64, now: i64) -> Result<()>;
    /// An upload session by id.
    async fn upload(&self, id: &str) -> Result<Option<Upload>>;
    /// Move an upload's `(size, area state)` from `old` to `new` in one compare-and-set; `false`
    /// when it was not exactly `old` (another writer won, or the session is gone).
    async fn advance_upload(&self, id: &str, old: (u64, &str), new: (u64, &str), now: i64) -> Result<bool>;
    /// Finish an upload, in one transaction: remove the session and its hold on `digest` (taken with
    /// [`crate::gc::GcStore::hold_blob`] as `upload:<id>` before its bytes were stored) and link
    /// the blob; [`MetaError::BlobBeingDeleted`] (nothing changes) when a deletion of the digest
    /// is in flight.
    async fn complete_upload(&self, id: &str, repo_id: i64, digest: &str, size: u64, now: i64) -> Result<()>;
    /// Remove a session; `false` when it did not exist.
    async fn delete_upload(&self, id: &str) -> Result<bool>;
    /// Sessions not updated since `before`, at most `limit`.
    async fn stale_uploads(&self, before: i64, limit: u32) -> Result<Vec<String>>;

    /// Store a manifest (idempotent) and point `tags` at it. In the same transaction, and
    /// serialized with every other write to the repository (and its deletion and mutability
    /// changes), it checks that the repository exists, that every tag may move under the
    /// repository's mutability settings ([`mutability::tag_is_immutable`]), that every blob and
    /// child manifest is present with the size its descriptor declares; the image size is
    /// computed from the stored sizes. On any failed check nothing changes.
    async fn put_manifest(&self, m: &NewManifest<'_>, tags: &[&str], now: i64) -> Result<PutManifest>;
    /// A manifest of the repository by digest.
    async fn manifest(&self, repo_id: i64, digest: &str) -> Result<Option<Manifest>>;
    /// The digest a tag points to.
    async fn resolve_tag(&self, repo_id: i64, tag: &str) -> Result<Option<String>>;
    /// Delete a manifest and every tag pointing to it; `false` when absent.
    async fn delete_manifest(&self, repo_id: i64, digest: &str, now: i64) -> Result<bool>;
    /// Expire a manifest for a lifecycle rule: delete it and its tags as
    /// [`MetadataStore::delete_manifest`] does, and append a lifecycle action event with `detail`,
    /// only when its tags are still exactly `expect_tags` (sorted) and no image index of the
    /// repository lists it; `false` (nothing changes) otherwise or when it is absent. Serialized
    /// with every other write to the repository, so an image tagged, moved or put in an index
    /// since the evaluation is kept.
    async fn expire_manifest(
        &self,
        repo_id: i64,
        digest: &str,
        expect_tags: &[String],
        detail: &serde_json::Value,
        now: i64,
    ) -> Result<bool>;
    /// Delete one tag; `false` when absent.
    async fn delete_tag(&self, repo_id: i64, tag: &str, now: i64) -> Result<bool>;
    /// The id of repository `name` and its data epoch, read together (see
    /// [`MetadataStore::repository_epoch`]).
    async fn repository_version(&self, ns: &Namespace, name: &str) -> Result<Option<(i64, i64)>>;
    /// A repository's data epoch, `None` when the repository no longer exists. It moves with
    /// every committed write that changes what the repository's tags and manifests resolve to
    /// or its tag mutability (manifest put, manifest and tag delete, mutability change), and
    /// only with writes to that repository, so a node can tell that its read caches of that
    /// repository may hold a stale view, and writes to different repositories never contend.
    async fn repository_epoch(&self, repo_id: i64) -> Result<Option<i64>>;
    /// Tags after `last` in lexical order, at most `limit`.
    async fn list_tags(&self, repo_id: i64, last: Option<&str>, limit: u32) -> Result<Vec<String>>;
    /// Manifests whose subject is `subject` that can be pulled (`ACTIVE`: archived ones are
    /// left out), optionally only those of `artifact_type`.
    async fn referrers(&self, repo_id: i64, subject: &str, artifact_type: Option<&str>) -> Result<Vec<Referrer>>;
    /// One page of the manifests whose subject is `subject`, oldest push first: at most `limit`
    /// after `after`, only those of one of `artifact_types` (at most five) when any are given,
    /// and of `status` when given.
    async fn referrers_page(
        &self,
        repo_id: i64,
        subject: &str,
        artifact_types: &[&str],
        status: Option<ImageStatus>,
        after: Option<&ImageKey>,
        limit: u32,
    ) -> Result<Vec<Referrer>>;
    /// One page of a repository's images in listing order ([`ImageKey`]), with their tags: at
    /// most `limit` from `from` that match `status`. Reads only the page (an index range), so
    /// its cost does not depend on the repository's size.
    async fn images_page(
        &self,
        repo_id: i64,
        status: TagStatus,
        image_status: Option<ImageStatus>,
        from: ImagesFrom<'_>,
        limit: u32,
    ) -> Result<Vec<Image>>;
    /// Move image `digest` from status `from` to `to` at `now` (recording when it was archived
    /// or restored): `false` when it is not (or no longer) in `from`, or, to the archive, when an
    /// index of the repository lists it. Serialized with the repository's writes.
    async fn set_image_status(
        &self,
        repo_id: i64,
        digest: &str,
        from: ImageStatus,
        to: ImageStatus,
        now: i64,
    ) -> Result<bool>;
    /// Archive an image for a lifecycle rule, appending `detail` as its lifecycle action event,
    /// only if it is still active with exactly `expect_tags` and no index lists it (what the
    /// evaluation saw): `false` otherwise.
    async fn transition_manifest(
        &self,
        repo_id: i64,
        digest: &str,
        expect_tags: &[String],
        detail: &serde_json::Value,
        now: i64,
    ) -> Result<bool>;
    /// One image of a repository by digest, with its tags.
    async fn image(&self, repo_id: i64, digest: &str) -> Result<Option<Image>>;
    /// Record that a manifest was pulled at `now`.
    async fn record_pull(&self, repo_id: i64, digest: &str, now: i64) -> Result<()>;
    /// Whether an index of the repository lists `digest` as a child.
    async fn referenced_by_index(&self, repo_id: i64, digest: &str) -> Result<bool>;
    /// A deployment-wide setting.
    async fn setting(&self, key: &str) -> Result<Option<String>>;
    /// Set a deployment-wide setting unless it is set already (the first writer wins, also
    /// across processes); returns the stored value.
    async fn init_setting(&self, key: &str, value: &str) -> Result<String>;
    /// Record an account; `false` when it already exists.
    async fn create_account(&self, account_id: &str, now: i64) -> Result<bool>;
    /// Whether an account exists.
    async fn account_exists(&self, account_id: &str) -> Result<bool>;
    /// Store a new access key.
    async fn put_access_key(&self, key: &AccessKey) -> Result<()>;
    /// An access key by id.
    async fn access_key(&self, access_key_id: &str) -> Result<Option<AccessKey>>;

    /// Create a repository with its settings and resource tags; `None` when it already exists.
    async fn create_repository(&self, r: &NewRepository<'_>, now: i64) -> Result<Option<RepositoryInfo>>;
    /// A repository and its settings.
    async fn repository_info(&self, ns: &Namespace, name: &str) -> Result<Option<RepositoryInfo>>;
    /// Repositories after `last` in name order, at most `limit`.
    async fn list_repository_infos(
        &self,
        ns: &Namespace,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RepositoryInfo>>;
    /// Delete a repository (and, with `force`, everything in it).
    async fn delete_repository(&self, repo_id: i64, force: bool, now: i64) -> Result<DeleteRepository>;
    /// Change tag mutability and its exclusion filters (moves the repository's data epoch;
    /// serialized with the repository's manifest writes, so every push that commits after this
    /// obeys the new settings).
    async fn set_tag_mutability(
        &self,
        repo_id: i64,
        mutability: &str,
        exclusions: Option<&str>,
        now: i64,
    ) -> Result<()>;
    /// Resource tags of a repository, by key.
    async fn resource_tags(&self, repo_id: i64) -> Result<Vec<(String, String)>>;
    /// Add or overwrite resource tags; `false` (nothing changed) when the result would exceed `max`.
    async fn tag_repository(&self, repo_id: i64, tags: &[(String, String)], max: usize) -> Result<bool>;
    /// Remove resource tags by key.
    async fn untag_repository(&self, repo_id: i64, keys: &[String]) -> Result<()>;

    // ---- background jobs ------------------------------------------------------------------
    //
    // Delivery is at least once; effects are committed once when handlers are idempotent:
    // `complete_job` succeeds only for the node holding the lease, and a node that lost its
    // lease (it stalled past `lease_expires_at` and another node claimed the job) learns so
    // from `renew_lease`/`complete_job` returning `false` and must treat its work as possibly
    // duplicated.

    /// Enqueue a pending job; `None` (nothing changed) when a job of the same kind and key is
    /// already pending or running (or, with [`NewJob::once`], exists in any state).
    async fn enqueue_job(&self, job: &NewJob<'_>, now: i64) -> Result<Option<i64>>;
    /// Atomically claim one due job of one of `kinds` for `node_id`: a pending job whose
    /// `run_after` has passed, or a running job whose lease expired (its node died or
    /// stalled). The job becomes running, leased to `node_id` until `now + lease_ms`, with one
    /// more attempt. Oldest due first. A running job whose lease expired on its last allowed
    /// attempt is marked failed instead. Concurrent claimers (threads, processes, nodes) never
    /// get the same job while its lease holds.
    async fn claim_job(&self, node_id: &str, kinds: &[&str], now: i64, lease_ms: i64) -> Result<Option<Job>>;
    /// Extend the lease of a running job to `now + lease_ms`; `false` when `node_id` no longer
    /// holds it (another node claimed it after it expired, or it is no longer running).
    async fn renew_lease(&self, id: i64, node_id: &str, now: i64, lease_ms: i64) -> Result<bool>;
    /// Mark a running job done; `false` (nothing changed) when `node_id` does not hold its lease.
    async fn complete_job(&self, id: i64, node_id: &str, now: i64) -> Result<bool>;
    /// Record a failed attempt: back to pending with `run_after = retry_at` when attempts are
    /// left, else failed. `false` (nothing changed) when `node_id` does not hold the lease.
    async fn fail_job(&self, id: i64, node_id: &str, error: &str, retry_at: i64, now: i64) -> Result<bool>;
    /// Give a running job back unfinished (graceful shutdown): pending again, due now, and the
    /// attempt does not count. `false` when `node_id` does not hold the lease.
    async fn release_job(&self, id: i64, node_id: &str, now: i64) -> Result<bool>;
    /// Jobs (of `kind` when given), newest first, at most `limit`.
    async fn jobs(&self, kind: Option<&str>, limit: u32) -> Result<Vec<Job>>;
    /// Delete done jobs last updated before `before`; returns how many. Failed jobs are kept
    /// for inspection.
    async fn purge_done_jobs(&self, before: i64) -> Result<u64>;

    /// What the gauges of `/metrics` show: stored blobs, open uploads, jobs by kind and state.
    /// Counts over whole tables: call it at most every few seconds (the server caches it).
    async fn stats(&self) -> Result<Stats>;
}

/// Sizes of the registry for the metrics gauges ([`MetadataStore::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Distinct committed blobs, and their bytes.
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Upload sessions not completed, cancelled or expired yet.
    pub uploads_open: u64,
    /// `(kind, state, count)` of the jobs table (pending, running, failed; done ones are not
    /// counted).
    pub jobs: Vec<(String, String, u64)>,
}
