//! Filesystem blob store.
//!
//! ```text
//! <root>/
//!   blobs/<algorithm>/<first two hex>/<hex>   committed blobs, immutable
//!   uploads/<id>                              upload areas (appended, then renamed into blobs/)
//! ```
//! Commits are `fsync(file)` + `rename` + `fsync(dir)`: a blob path either holds the complete,
//! durable blob or does not exist. Reads and writes run on blocking threads and stream through
//! bounded channels, so memory stays flat whatever the blob size.

use crate::{BlobStore, ByteStream, Result, StorageError};
use async_trait::async_trait;
use berth_oci::Digest;
use bytes::Bytes;
use futures::StreamExt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// Size of each read from disk when streaming a blob out.
const READ_CHUNK: usize = 1024 * 1024;
/// Chunks buffered between the network and the disk thread, each way.
const CHANNEL_DEPTH: usize = 8;

/// A [`BlobStore`] on a local directory.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    /// Open (creating directories as needed) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<FsStore> {
        let root = root.into();
        std::fs::create_dir_all(root.join("blobs"))?;
        std::fs::create_dir_all(root.join("uploads"))?;
        Ok(FsStore { root })
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.root.join("blobs").join(d.algorithm().as_str()).join(&hex[..2]).join(hex)
    }

    fn upload_path(&self, id: &str) -> io::Result<PathBuf> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "invalid upload id"));
        }
        Ok(self.root.join("uploads").join(id))
    }
}

fn not_found_as_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn map_nf(e: io::Error) -> StorageError {
    if e.kind() == io::ErrorKind::NotFound { StorageError::NotFound } else { StorageError::Io(e) }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(io::Error::other)?
}

/// Stream `len` bytes of `path` from `start`.
///
/// Each chunk is its own small memory mapping of the file, handed to the socket as a `Bytes`:
/// the only copy is the kernel's, from the page cache into the socket, and a chunk's mapping is
/// dropped as soon as it is sent, so resident memory stays at a few chunks whatever the blob size.
/// Committed blobs are immutable (never truncated; an unlink keeps mappings valid), so a mapping
/// cannot fault past the file's end. Upcoming data is announced with `POSIX_FADV_WILLNEED` so cold
/// blobs are read ahead rather than faulted in one page at a time.
async fn stream_file(path: PathBuf, start: u64, len: u64) -> Result<ByteStream> {
    let file = blocking(move || {
        let file = File::open(path)?;
        let flen = file.metadata()?.len();
        if start.checked_add(len).is_none_or(|end| end > flen) {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "range past the end of the file"));
        }
        Ok(file)
    })
    .await
    .map_err(map_nf)?;
    let end = start + len;
    Ok(Box::pin(futures::stream::unfold((file, start), move |(file, pos)| async move {
        if pos >= end {
            return None;
        }
        let n = (end - pos).min(READ_CHUNK as u64);
        let ahead = (end - pos - n).min(4 * READ_CHUNK as u64);
        let chunk = map_chunk(&file, pos, n as usize, ahead);
        let next = if chunk.is_ok() { pos + n } else { end };
        Some((chunk, (file, next)))
    })))
}

fn map_chunk(file: &File, pos: u64, len: usize, ahead: u64) -> io::Result<Bytes> {
    use std::os::fd::AsRawFd;
    if ahead > 0 {
        // SAFETY: advisory syscall on an open descriptor.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), (pos + len as u64) as i64, ahead as i64, libc::POSIX_FADV_WILLNEED)
        };
    }
    // mmap offsets must be page aligned: map from the page boundary and slice.
    let page = 4096u64;
    let base = pos - pos % page;
    let skip = (pos - base) as usize;
    // SAFETY: the mapped file is not truncated while mapped (see `stream_file`).
    let map = unsafe { memmap2::MmapOptions::new().offset(base).len(skip + len).map(file)? };
    Ok(Bytes::from_owner(MapSlice { map, from: skip, to: skip + len }))
}

/// A slice of a mapping, owned by a `Bytes`; unmapped when the last reference goes.
struct MapSlice {
    map: memmap2::Mmap,
    from: usize,
    to: usize,
}

impl AsRef<[u8]> for MapSlice {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.from..self.to]
    }
}

/// Streams written data to disk while the upload is still arriving, so that the `fsync` that
/// makes the upload durable finds little left to flush (the push then costs about the disk's
/// write time instead of receive time + disk time), and dirty pages stay bounded.
/// Each window is started with `SYNC_FILE_RANGE_WRITE` as soon as it is written; the window
/// before it is waited for, which throttles the receiver to the disk's pace.
struct Writeback {
    /// Start of the window not yet handed to the kernel.
    kicked: u64,
    /// Start of the window handed to the kernel but not yet waited for.
    pending: Option<(u64, u64)>,
}

/// Size of a writeback window.
const WRITEBACK_WINDOW: u64 = 8 * 1024 * 1024;

impl Writeback {
    fn new(offset: u64) -> Writeback {
        Writeback { kicked: offset, pending: None }
    }

    fn wrote(&mut self, file: &File, pos: u64) {
        use std::os::fd::AsRawFd;
        if pos - self.kicked < WRITEBACK_WINDOW {
            return;
        }
        let fd = file.as_raw_fd();
        // Errors here only lose the optimisation: the final fsync reports real failures.
        // SAFETY: plain syscalls on an open descriptor with in-range offsets.
        unsafe {
            libc::sync_file_range(fd, self.kicked as i64, (pos - self.kicked) as i64, libc::SYNC_FILE_RANGE_WRITE);
            if let Some((start, len)) = self.pending {
                libc::sync_file_range(
                    fd,
                    start as i64,
                    len as i64,
                    libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                );
            }
        }
        self.pending = Some((self.kicked, pos - self.kicked));
        self.kicked = pos;
    }
}

/// Bytes written, at most, per turn on a blocking thread before it is given back.
const WRITE_RUN: u64 = 64 * 1024 * 1024;

/// Write every chunk `rx` yields to `file` from `offset` on, then `fsync`; the bytes written.
/// Chunks are awaited here, and each one is written, with the chunks queued behind it (up to
/// [`WRITE_RUN`]), in one short turn on a blocking thread: a slow client never holds a thread.
async fn write_from(file: File, offset: u64, mut rx: mpsc::Receiver<Bytes>) -> io::Result<u64> {
    let mut sink = (file, Writeback::new(offset), offset);
    while let Some(first) = rx.recv().await {
        (sink, rx) = blocking(move || {
            let (file, mut writeback, mut pos) = sink;
            let mut next = Some(first);
            let mut run = 0;
            while let Some(chunk) = next.take() {
                file.write_all_at(&chunk, pos)?;
                pos += chunk.len() as u64;
                run += chunk.len() as u64;
                writeback.wrote(&file, pos);
                if run < WRITE_RUN {
                    next = rx.try_recv().ok();
                }
            }
            Ok(((file, writeback, pos), rx))
        })
        .await?;
    }
    let (file, _, pos) = sink;
    blocking(move || file.sync_data()).await?;
    Ok(pos - offset)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[async_trait]
impl BlobStore for FsStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        let p = self.blob_path(digest);
        Ok(not_found_as_none(tokio::fs::metadata(p).await)?.map(|m| m.len()))
    }

    async fn read(&self, digest: &Digest, start: u64, len: u64) -> Result<ByteStream> {
        stream_file(self.blob_path(digest), start, len).await
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        not_found_as_none(tokio::fs::remove_file(self.blob_path(digest)).await)?;
        Ok(())
    }

    async fn upload_create(&self, id: &str) -> Result<()> {
        let p = self.upload_path(id)?;
        blocking(move || OpenOptions::new().write(true).create_new(true).open(p).map(|_| ())).await?;
        Ok(())
    }

    async fn upload_append(&self, id: &str, offset: u64, mut body: ByteStream) -> Result<u64> {
        let p = self.upload_path(id)?;
        let file = blocking(move || {
            let f = OpenOptions::new().write(true).open(p)?;
            let len = f.metadata()?.len();
            if len < offset {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("upload area has {len} bytes, metadata says {offset}"),
                ));
            }
            if len > offset {
                f.set_len(offset)?;
            }
            Ok(f)
        })
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StorageError::NotFound,
            io::ErrorKind::UnexpectedEof => StorageError::Inconsistent(e.to_string()),
            _ => StorageError::Io(e),
        })?;
        let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
        let writer = tokio::spawn(write_from(file, offset, rx));
        let mut body_err = None;
        while let Some(item) = body.next().await {
            match item {
                Ok(chunk) if chunk.is_empty() => {}
                Ok(chunk) => {
                    if tx.send(chunk).await.is_err() {
                        break; // writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    body_err = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let written = writer.await.map_err(io::Error::other)??;
        if let Some(e) = body_err {
            return Err(StorageError::Body(e));
        }
        Ok(written)
    }

    async fn upload_read(&self, id: &str, start: u64, len: u64) -> Result<ByteStream> {
        stream_file(self.upload_path(id)?, start, len).await
    }

    async fn upload_commit(&self, id: &str, digest: &Digest, size: u64) -> Result<()> {
        let src = self.upload_path(id)?;
        let dst = self.blob_path(digest);
        blocking(move || {
            let f = OpenOptions::new().write(true).open(&src)?;
            let len = f.metadata()?.len();
            if len < size {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "upload shorter than committed size"));
            }
            if len > size {
                f.set_len(size)?;
            }
            f.sync_all()?;
            drop(f);
            if dst.exists() {
                // Put-if-absent: the same content is already durable.
                std::fs::remove_file(&src)?;
                return Ok(());
            }
            let dir = dst.parent().expect("blob path has a parent");
            std::fs::create_dir_all(dir)?;
            std::fs::rename(&src, &dst)?;
            sync_dir(dir)?;
            if let Some(up) = src.parent() {
                sync_dir(up)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StorageError::NotFound,
            io::ErrorKind::UnexpectedEof => StorageError::Inconsistent(e.to_string()),
            _ => StorageError::Io(e),
        })
    }

    async fn upload_abort(&self, id: &str) -> Result<()> {
        let p = self.upload_path(id)?;
        not_found_as_none(tokio::fs::remove_file(p).await)?;
        Ok(())
    }

    async fn upload_list(&self) -> Result<Vec<String>> {
        let dir = self.root.join("uploads");
        let names = blocking(move || {
            let mut out = Vec::new();
            for e in std::fs::read_dir(dir)? {
                if let Some(n) = e?.file_name().to_str() {
                    out.push(n.to_string());
                }
            }
            Ok(out)
        })
        .await?;
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_oci::Algorithm;

    async fn collect(s: ByteStream) -> Vec<u8> {
        let mut out = Vec::new();
        let mut s = s;
        while let Some(b) = s.next().await {
            out.extend_from_slice(&b.unwrap());
        }
        out
    }

    fn body(parts: Vec<&'static [u8]>) -> ByteStream {
        Box::pin(futures::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p)))))
    }

    #[tokio::test]
    async fn upload_append_commit_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::open(dir.path()).unwrap();
        s.upload_create("u1").await.unwrap();
        assert_eq!(s.upload_append("u1", 0, body(vec![b"hello ", b"wor"])).await.unwrap(), 9);
        // A failed request left junk past the recorded offset: it is discarded.
        assert_eq!(s.upload_append("u1", 9, body(vec![b"JUNK"])).await.unwrap(), 4);
        assert_eq!(s.upload_append("u1", 9, body(vec![b"ld"])).await.unwrap(), 2);
        assert!(matches!(s.upload_append("u1", 100, body(vec![b"x"])).await, Err(StorageError::Inconsistent(_))));
        let d = Digest::from_raw(Algorithm::Sha256, &[7; 32]);
        s.upload_commit("u1", &d, 11).await.unwrap();
        assert_eq!(s.stat(&d).await.unwrap(), Some(11));
        assert_eq!(collect(s.read(&d, 0, 11).await.unwrap()).await, b"hello world");
        assert_eq!(collect(s.read(&d, 6, 5).await.unwrap()).await, b"world");
        assert!(s.upload_list().await.unwrap().is_empty());
        assert!(matches!(s.upload_create("../x").await, Err(StorageError::Io(_))));
        s.delete(&d).await.unwrap();
        assert_eq!(s.stat(&d).await.unwrap(), None);
    }
}
