//! Registry metadata: repositories, blob links, manifests, tags, referrers and upload sessions.
//!
//! [`MetadataStore`] is the source of truth. Each method is one transaction, so a crash leaves
//! either all of an operation or none of it. Times are epoch milliseconds. Digests are passed as
//! their validated string form.

#[macro_use]
mod portable;
#[cfg(test)]
mod contract;
pub mod iam;
pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
pub use iam::{IamEntity, IamStore, IdentityPolicy, ManagedPolicy, Owner};

/// Metadata failures.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Schema migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Result alias for metadata operations.
pub type Result<T> = std::result::Result<T, MetaError>;

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
    /// Blobs that must be linked to the repository.
    pub blobs: &'a [&'a str],
    /// Manifests that must exist in the repository.
    pub children: &'a [&'a str],
    /// Tags (among those being set) that must not exist yet (immutable tags).
    pub immutable_tags: &'a [&'a str],
    /// Config media type (image manifests).
    pub config_media_type: Option<&'a str>,
    /// Bytes of the blobs an image manifest references; `None` for an index, whose size is the
    /// largest of its children's.
    pub image_size: Option<u64>,
}

/// Result of [`MetadataStore::put_manifest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutManifest {
    /// Stored (or already present) and tags updated.
    Stored,
    /// These blobs are not linked to the repository; nothing changed.
    MissingBlobs(Vec<String>),
    /// These child manifests are not in the repository; nothing changed.
    MissingManifests(Vec<String>),
    /// This immutable tag already exists; nothing changed.
    TagExists(String),
}

/// A stored manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: String,
    pub media_type: String,
    pub content: Vec<u8>,
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
    /// Tags pointing at it, sorted.
    pub tags: Vec<String>,
}

/// Outcome of [`MetadataStore::delete_repository`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteRepository {
    Deleted,
    /// It holds images and `force` was not given; nothing changed.
    NotEmpty,
}

/// The metadata backend.
#[async_trait]
pub trait MetadataStore: IamStore + Send + Sync + 'static {
    /// The id of repository `name`, if it exists.
    async fn repository(&self, ns: &Namespace, name: &str) -> Result<Option<i64>>;
    /// The id of repository `name`, creating it if needed.
    async fn ensure_repository(&self, ns: &Namespace, name: &str, now: i64) -> Result<i64>;
    /// Repository names after `last` in lexical order, at most `limit`.
    async fn list_repositories(&self, ns: &Namespace, last: Option<&str>, limit: u32) -> Result<Vec<String>>;

    /// Size of `digest` when it is linked to the repository.
    async fn blob_in_repo(&self, repo_id: i64, digest: &str) -> Result<Option<u64>>;
    /// Record the blob (if new) and link it to the repository.
    async fn link_blob(&self, repo_id: i64, digest: &str, size: u64, now: i64) -> Result<()>;
    /// Unlink a blob from a repository; `false` when it was not linked.
    async fn unlink_blob(&self, repo_id: i64, digest: &str) -> Result<bool>;

    /// Record a new, empty upload session.
    async fn create_upload(&self, id: &str, repo_id: i64, now: i64) -> Result<()>;
    /// An upload session by id.
    async fn upload(&self, id: &str) -> Result<Option<Upload>>;
    /// Move an upload's size from `old` to `new`; `false` when its size was not `old` (or it is gone).
    async fn set_upload_size(&self, id: &str, old: u64, new: u64, now: i64) -> Result<bool>;
    /// Remove the session and link the committed blob, in one transaction.
    async fn complete_upload(&self, id: &str, repo_id: i64, digest: &str, size: u64, now: i64) -> Result<()>;
    /// Remove a session; `false` when it did not exist.
    async fn delete_upload(&self, id: &str) -> Result<bool>;
    /// Sessions not updated since `before`, at most `limit`.
    async fn stale_uploads(&self, before: i64, limit: u32) -> Result<Vec<String>>;

    /// Store a manifest (idempotent) and point `tags` at it, after checking its references.
    async fn put_manifest(&self, m: &NewManifest<'_>, tags: &[&str], now: i64) -> Result<PutManifest>;
    /// A manifest of the repository by digest.
    async fn manifest(&self, repo_id: i64, digest: &str) -> Result<Option<Manifest>>;
    /// The digest a tag points to.
    async fn resolve_tag(&self, repo_id: i64, tag: &str) -> Result<Option<String>>;
    /// Delete a manifest and every tag pointing to it; `false` when absent.
    async fn delete_manifest(&self, repo_id: i64, digest: &str) -> Result<bool>;
    /// Delete one tag; `false` when absent.
    async fn delete_tag(&self, repo_id: i64, tag: &str) -> Result<bool>;
    /// Tags after `last` in lexical order, at most `limit`.
    async fn list_tags(&self, repo_id: i64, last: Option<&str>, limit: u32) -> Result<Vec<String>>;
    /// Manifests whose subject is `subject`, optionally only those of `artifact_type`.
    async fn referrers(&self, repo_id: i64, subject: &str, artifact_type: Option<&str>) -> Result<Vec<Referrer>>;
    /// Every manifest of a repository with its tags, oldest push first.
    async fn images(&self, repo_id: i64) -> Result<Vec<Image>>;
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
    async fn delete_repository(&self, repo_id: i64, force: bool) -> Result<DeleteRepository>;
    /// Change tag mutability and its exclusion filters.
    async fn set_tag_mutability(&self, repo_id: i64, mutability: &str, exclusions: Option<&str>) -> Result<()>;
    /// Resource tags of a repository, by key.
    async fn resource_tags(&self, repo_id: i64) -> Result<Vec<(String, String)>>;
    /// Add or overwrite resource tags; `false` (nothing changed) when the result would exceed `max`.
    async fn tag_repository(&self, repo_id: i64, tags: &[(String, String)], max: usize) -> Result<bool>;
    /// Remove resource tags by key.
    async fn untag_repository(&self, repo_id: i64, keys: &[String]) -> Result<()>;
}
