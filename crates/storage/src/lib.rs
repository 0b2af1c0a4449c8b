//! Content-addressed blob storage: [`fs::FsStore`] on a local directory, [`s3::S3Store`] on an
//! S3-compatible bucket, and [`encrypted::Encrypted`], envelope encryption over either.
//!
//! [`BlobStore`] holds bytes only: committed blobs addressed by digest, and upload areas
//! addressed by an upload id. Which blob belongs to which repository is metadata, not storage.
//! Every implementation must make [`BlobStore::upload_commit`] atomic: a blob is either wholly
//! visible under its digest or not at all, whatever crashes.

pub mod encrypted;
pub mod fs;
pub mod s3;

#[cfg(test)]
mod contract;

use async_trait::async_trait;
use berth_oci::Digest;
use bytes::Bytes;
use futures::Stream;
use std::io;
use std::pin::Pin;
use std::time::Duration;

/// A stream of body bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The blob or upload does not exist.
    #[error("not found")]
    NotFound,
    /// The incoming body failed (client disconnected, bad framing). Nothing was committed.
    #[error("request body: {0}")]
    Body(io::Error),
    /// The upload area holds fewer bytes than the metadata says; the upload cannot continue.
    #[error("upload area is inconsistent: {0}")]
    Inconsistent(String),
    /// An I/O failure of the backend.
    #[error("storage i/o: {0}")]
    Io(#[from] io::Error),
    /// The data key that encrypts the bytes is unavailable (the keyring could not provide it).
    #[error("the data key is unavailable: {0}")]
    Key(String),
    /// Stored bytes failed authentication or are malformed (tampered with, corrupted, or read
    /// with the wrong key): nothing of them is returned.
    #[error("integrity check failed: {0}")]
    Integrity(String),
}

/// The state of a freshly created upload area: no bytes.
pub const EMPTY_AREA: &str = "";

/// What [`BlobStore::upload_append`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Bytes of the body written.
    pub written: u64,
    /// The area's new state: opaque, at most a few bytes per segment of the area.
    pub state: String,
}

impl StorageError {
    /// Whether the backend is out of space (ENOSPC, EDQUOT, a quota): retry once space is freed.
    pub fn is_full(&self) -> bool {
        let StorageError::Io(e) = self else { return false };
        matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
            || matches!(e.raw_os_error(), Some(28 | 122))
    }

    /// Whether the backend could not be reached or asked to slow down: retry later.
    pub fn is_unavailable(&self) -> bool {
        let StorageError::Io(e) = self else { return false };
        matches!(
            e.kind(),
            io::ErrorKind::ConnectionRefused
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::NotConnected
                | io::ErrorKind::TimedOut
                | io::ErrorKind::HostUnreachable
                | io::ErrorKind::NetworkUnreachable
        )
    }
}

/// Result alias for storage operations.
pub type Result<T> = std::result::Result<T, StorageError>;

/// A committed blob found by [`BlobStore::list_blobs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedBlob {
    pub digest: Digest,
    /// Bytes stored for the blob (the encrypted size under [`encrypted::Encrypted`]).
    pub size: u64,
    /// When its bytes were last written (epoch ms).
    pub modified_ms: i64,
}

/// Blob storage backend. Upload ids are validated by the caller (`[A-Za-z0-9-]+`).
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Size of a committed blob, `None` when absent.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>>;
    /// Stream `len` bytes of a committed blob starting at `start`.
    async fn read(&self, digest: &Digest, start: u64, len: u64) -> Result<ByteStream>;
    /// Remove a committed blob (no error when absent).
    async fn delete(&self, digest: &Digest) -> Result<()>;
    /// Committed blobs whose digest (as a string) sorts after `after`, in that order, at most
    /// `limit` (fewer only at the end). Whatever else the blob area holds is skipped.
    /// [`ListedBlob::size`] is the size of the stored object: for a store that transforms
    /// bytes (such as [`encrypted::Encrypted`]) it differs from what [`BlobStore::stat`] says.
    async fn list_blobs(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<ListedBlob>>;
    /// Create an empty upload area. Its state (see [`BlobStore::upload_append`]) is
    /// [`EMPTY_AREA`]. Cheap: a store may write nothing until the first append.
    async fn upload_create(&self, id: &str) -> Result<()>;
    /// Write `body` into the area at `offset`, on top of the first `offset` bytes of the area as
    /// described by `state` (what the caller recorded from [`BlobStore::upload_create`] or an
    /// earlier append; anything `state` names past `offset` is left out of the new state).
    /// Returns the bytes written and the area's new state, which the caller records (together
    /// with the size) in one compare-and-set; durable when it returns.
    ///
    /// States are claims, not locations: an append never changes the bytes that another state
    /// names below its end, and bytes written by an append are reachable only through the state
    /// it returned. So when several writers append from the same state concurrently (nodes
    /// racing on one session), the caller's compare-and-set picks one winner and no byte of a
    /// loser can ever be read or committed through the winner's state. A store may refuse an
    /// append whose `state` was already superseded (`NotFound`). An append does not check that
    /// the area was created: the caller's metadata decides that (a write to an aborted area
    /// leaves an orphan that [`BlobStore::upload_list`] finds).
    ///
    /// Errors: `Inconsistent` when `state` holds fewer than `offset` bytes or cannot be parsed;
    /// `NotFound` when the bytes `state` names are gone (aborted, committed or superseded);
    /// `Body` when the body failed (nothing the caller recorded is changed).
    async fn upload_append(&self, id: &str, state: &str, offset: u64, body: ByteStream) -> Result<Appended>;
    /// Stream `len` bytes of the area as described by `state`, from `start` (used to re-hash a
    /// resumed upload). Fails (`Inconsistent`, or `NotFound` when the bytes are gone, possibly
    /// only while streaming) rather than yield anything else than those bytes.
    async fn upload_read(&self, id: &str, state: &str, start: u64, len: u64) -> Result<ByteStream>;
    /// Atomically publish the first `size` bytes of the area as described by `state` as blob
    /// `digest` (put-if-absent: an existing blob is kept) and remove the upload area. The
    /// caller verified the digest over exactly those bytes (read through the same `state`,
    /// which the store guarantees to be the bytes it publishes).
    async fn upload_commit(&self, id: &str, state: &str, digest: &Digest, size: u64) -> Result<()>;
    /// Remove an upload area (no error when absent).
    async fn upload_abort(&self, id: &str) -> Result<()>;
    /// Ids of the upload areas that store anything (for cleaning up areas whose metadata is
    /// gone); an area that was created but never written to may be left out.
    async fn upload_list(&self) -> Result<Vec<String>>;
    /// A URL from which a client may `GET` the committed blob directly for the next `ttl`
    /// (for HTTP redirects), or `None` when the backend has no such URL (the default). Only for
    /// stores whose bytes need no transformation on the way out (no server-side decryption).
    async fn presign_get(&self, digest: &Digest, ttl: Duration) -> Result<Option<String>> {
        let _ = (digest, ttl);
        Ok(None)
    }
    /// The id of the data key that encrypts committed blob `digest` (`None`: stored in
    /// plaintext, or absent). The default: `None` (a store that does not encrypt).
    async fn key_id(&self, digest: &Digest) -> Result<Option<[u8; 16]>> {
        let _ = digest;
        Ok(None)
    }
    /// Bytes free for new data where the store writes (`None`: unknown or unbounded, e.g. S3).
    async fn free_space(&self) -> Result<Option<u64>> {
        Ok(None)
    }
    /// Release backend resources that crashed writes left behind and that are older than
    /// `older_than` (for S3: incomplete multipart uploads under the store's prefix). Upload
    /// areas are not touched. Returns how many were released; the default does nothing.
    async fn cleanup_stale(&self, older_than: Duration) -> Result<usize> {
        let _ = older_than;
        Ok(0)
    }
}

/// A shared store is a store (so decorators such as [`encrypted::Encrypted`] can wrap an
/// `Arc<dyn BlobStore>`): every method forwards.
#[async_trait]
impl<T: BlobStore + ?Sized> BlobStore for std::sync::Arc<T> {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        (**self).stat(digest).await
    }
    async fn read(&self, digest: &Digest, start: u64, len: u64) -> Result<ByteStream> {
        (**self).read(digest, start, len).await
    }
    async fn delete(&self, digest: &Digest) -> Result<()> {
        (**self).delete(digest).await
    }
    async fn list_blobs(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<ListedBlob>> {
        (**self).list_blobs(after, limit).await
    }
    async fn upload_create(&self, id: &str) -> Result<()> {
        (**self).upload_create(id).await
    }
    async fn upload_append(&self, id: &str, state: &str, offset: u64, body: ByteStream) -> Result<Appended> {
        (**self).upload_append(id, state, offset, body).await
    }
    async fn upload_read(&self, id: &str, state: &str, start: u64, len: u64) -> Result<ByteStream> {
        (**self).upload_read(id, state, start, len).await
    }
    async fn upload_commit(&self, id: &str, state: &str, digest: &Digest, size: u64) -> Result<()> {
        (**self).upload_commit(id, state, digest, size).await
    }
    async fn upload_abort(&self, id: &str) -> Result<()> {
        (**self).upload_abort(id).await
    }
    async fn upload_list(&self) -> Result<Vec<String>> {
        (**self).upload_list().await
    }
    async fn presign_get(&self, digest: &Digest, ttl: Duration) -> Result<Option<String>> {
        (**self).presign_get(digest, ttl).await
    }
    async fn key_id(&self, digest: &Digest) -> Result<Option<[u8; 16]>> {
        (**self).key_id(digest).await
    }
    async fn free_space(&self) -> Result<Option<u64>> {
        (**self).free_space().await
    }
    async fn cleanup_stale(&self, older_than: Duration) -> Result<usize> {
        (**self).cleanup_stale(older_than).await
    }
}
