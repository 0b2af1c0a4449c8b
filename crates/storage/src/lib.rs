//! Content-addressed blob storage: [`fs::FsStore`] on a local directory, [`s3::S3Store`] on an
//! S3-compatible bucket.
//!
//! [`BlobStore`] holds bytes only: committed blobs addressed by digest, and upload areas
//! addressed by an upload id. Which blob belongs to which repository is metadata, not storage.
//! Every implementation must make [`BlobStore::upload_commit`] atomic: a blob is either wholly
//! visible under its digest or not at all, whatever crashes.

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
}

/// Result alias for storage operations.
pub type Result<T> = std::result::Result<T, StorageError>;

/// Blob storage backend. Upload ids are validated by the caller (`[A-Za-z0-9-]+`).
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Size of a committed blob, `None` when absent.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>>;
    /// Stream `len` bytes of a committed blob starting at `start`.
    async fn read(&self, digest: &Digest, start: u64, len: u64) -> Result<ByteStream>;
    /// Remove a committed blob (no error when absent).
    async fn delete(&self, digest: &Digest) -> Result<()>;
    /// Create an empty upload area.
    async fn upload_create(&self, id: &str) -> Result<()>;
    /// Write `body` into the upload at `offset`, discarding anything stored past `offset`
    /// (left over from a request that failed before its size was recorded). Durable when it returns.
    /// Returns the number of bytes written.
    async fn upload_append(&self, id: &str, offset: u64, body: ByteStream) -> Result<u64>;
    /// Stream `len` bytes of an upload area from `start` (used to re-hash a resumed upload).
    async fn upload_read(&self, id: &str, start: u64, len: u64) -> Result<ByteStream>;
    /// Atomically publish the first `size` bytes of the upload as blob `digest` (put-if-absent:
    /// an existing blob is kept) and remove the upload area. The caller verified the digest.
    async fn upload_commit(&self, id: &str, digest: &Digest, size: u64) -> Result<()>;
    /// Remove an upload area (no error when absent).
    async fn upload_abort(&self, id: &str) -> Result<()>;
    /// Ids of all upload areas (for cleaning up areas whose metadata is gone).
    async fn upload_list(&self) -> Result<Vec<String>>;
    /// A URL from which a client may `GET` the committed blob directly for the next `ttl`
    /// (for HTTP redirects), or `None` when the backend has no such URL (the default). Only for
    /// stores whose bytes need no transformation on the way out (no server-side decryption).
    async fn presign_get(&self, digest: &Digest, ttl: Duration) -> Result<Option<String>> {
        let _ = (digest, ttl);
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
