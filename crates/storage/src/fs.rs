//! Filesystem blob store.
//!
//! ```text
//! <root>/
//!   blobs/<algorithm>/<first two hex>/<hex>   committed blobs, immutable
//!   uploads/<id>/<nonce>                      upload areas (appended, then renamed into blobs/)
//! ```
//! An upload area is a directory holding the area's data file, named by a fresh random nonce
//! that is the area's state (the empty area, state `""`, has no data file yet). Every writer
//! first *claims* the file by renaming it to a new nonce, and only then changes it (append,
//! truncate, commit); a rename succeeds for one claimant only, so of several writers starting
//! from the same state (nodes sharing the directory, racing on one session) one proceeds and
//! the others get `NotFound` before writing a byte. The bytes a state names thus never change
//! while that state is current, and a losing writer's bytes cannot be read or committed through
//! the winner's state. An append whose body fails gives the file back to its state as it was,
//! bytes past the append's offset included (an append at an offset below the file's end keeps
//! them aside until it succeeds). A crash between a claim and the caller recording the new state loses the
//! session (the caller's state names a file that is gone), never its integrity.
//! Commits are `fsync(file)` + `rename` + `fsync(dir)`: a blob path either holds the complete,
//! durable blob or does not exist. Reads and writes run on blocking threads and stream through
//! bounded channels, so memory stays flat whatever the blob size.

use crate::{Appended, BlobStore, ByteStream, Result, StorageError};
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

    /// The data file of area `id` in `state` (`None` for the empty state).
    fn state_path(&self, id: &str, state: &str) -> Result<(PathBuf, Option<PathBuf>)> {
        let dir = self.upload_path(id)?;
        if state.is_empty() {
            return Ok((dir, None));
        }
        if !valid_nonce(state) {
            return Err(StorageError::Inconsistent(format!(
                "invalid upload area state '{}'",
                state.chars().take(80).collect::<String>()
            )));
        }
        let file = dir.join(state);
        Ok((dir, Some(file)))
    }
}

/// Nonces (area states) are 32 lowercase hex digits.
fn valid_nonce(n: &str) -> bool {
    n.len() == 32 && n.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn new_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Claim the data file of an area: rename `from` (the current state's file; `None`: the empty
/// state, which has no file) to a fresh name in `dir` and open it. `NotFound` when the area or
/// the state's file is gone (another writer claimed it, or the area was removed).
fn claim(dir: &Path, from: Option<&Path>) -> io::Result<(String, PathBuf, File)> {
    let nonce = new_nonce();
    let to = dir.join(&nonce);
    match from {
        Some(from) => std::fs::rename(from, &to)?,
        None => {
            if !dir.is_dir() {
                return Err(io::Error::new(io::ErrorKind::NotFound, "no upload area"));
            }
            drop(OpenOptions::new().write(true).create_new(true).mode_owner_only().open(&to)?);
        }
    }
    let f = OpenOptions::new().read(true).write(true).open(&to)?;
    Ok((nonce, to, f))
}

/// Owner-only creation mode for files of the store.
trait OwnerOnly {
    fn mode_owner_only(&mut self) -> &mut Self;
}

impl OwnerOnly for OpenOptions {
    fn mode_owner_only(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
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

/// Stream `len` bytes of committed blob file `path` from `start`.
///
/// Each chunk is its own small memory mapping of the file, handed to the socket as a `Bytes`:
/// the only copy is the kernel's, from the page cache into the socket, and a chunk's mapping is
/// dropped as soon as it is sent, so resident memory stays at a few chunks whatever the blob size.
/// Committed blobs are immutable (never truncated; an unlink keeps mappings valid), so a mapping
/// cannot fault past the file's end. Upcoming data is announced with `POSIX_FADV_WILLNEED` so cold
/// blobs are read ahead rather than faulted in one page at a time.
async fn stream_file(path: PathBuf, start: u64, len: u64) -> Result<ByteStream> {
    let file = open_range(path, start, len).await?;
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

/// Stream `len` bytes of upload area file `path` from `start`, with plain reads: unlike a
/// committed blob, an area file may be cut by a writer claiming it meanwhile (a racing append),
/// where a mapping would fault (`SIGBUS`); a read that comes up short fails instead.
async fn stream_area_file(path: PathBuf, start: u64, len: u64) -> Result<ByteStream> {
    let file = std::sync::Arc::new(open_range(path, start, len).await?);
    let end = start + len;
    Ok(Box::pin(futures::stream::unfold((file, start), move |(file, pos)| async move {
        if pos >= end {
            return None;
        }
        let n = (end - pos).min(READ_CHUNK as u64) as usize;
        let f = file.clone();
        let chunk = blocking(move || {
            let mut buf = vec![0; n];
            f.read_exact_at(&mut buf, pos)?;
            Ok(Bytes::from(buf))
        })
        .await;
        let next = if chunk.is_ok() { pos + n as u64 } else { end };
        Some((chunk, (file, next)))
    })))
}

/// Open `path`, which must hold `len` bytes from `start`.
async fn open_range(path: PathBuf, start: u64, len: u64) -> Result<File> {
    blocking(move || {
        let file = File::open(path)?;
        let flen = file.metadata()?.len();
        if start.checked_add(len).is_none_or(|end| end > flen) {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "range past the end of the file"));
        }
        Ok(file)
    })
    .await
    .map_err(map_nf)
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

/// Largest tail (see [`Tail`]) kept in memory; longer ones are copied to a side file.
const TAIL_IN_MEMORY: u64 = 8 * 1024 * 1024;

/// The bytes a claimed data file held past the offset of an append (a rewind: the caller's state
/// may still name them), kept until the append succeeds so that a failed append (`Body`) leaves
/// the recorded state's bytes as they were. Short tails (such as the partial segment that
/// [`Encrypted`](crate::encrypted::Encrypted) rewrites at every unaligned append) stay in
/// memory; longer ones are copied to `<nonce>.tail` next to the data file, which no state
/// names and which goes with the area.
enum Tail {
    Empty,
    Memory(Vec<u8>),
    File(PathBuf),
}

impl Tail {
    fn save(f: &File, dir: &Path, nonce: &str, offset: u64, len: u64) -> io::Result<Tail> {
        use std::io::{Read, Seek, SeekFrom};
        let n = len.saturating_sub(offset);
        if n == 0 {
            return Ok(Tail::Empty);
        }
        if n <= TAIL_IN_MEMORY {
            let mut buf = vec![0; n as usize];
            f.read_exact_at(&mut buf, offset)?;
            return Ok(Tail::Memory(buf));
        }
        let path = dir.join(format!("{nonce}.tail"));
        let mut out = OpenOptions::new().write(true).create_new(true).mode_owner_only().open(&path)?;
        let mut src = f.try_clone()?;
        src.seek(SeekFrom::Start(offset))?;
        let copied = io::copy(&mut src.take(n), &mut out)?;
        if copied != n {
            let _ = std::fs::remove_file(&path);
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "upload area changed while claimed"));
        }
        Ok(Tail::File(path))
    }

    /// Write the tail back at `offset` of `f` (cut at `offset`).
    fn restore(self, f: &File, offset: u64) -> io::Result<()> {
        use std::io::{Seek, SeekFrom};
        match self {
            Tail::Empty => Ok(()),
            Tail::Memory(buf) => f.write_all_at(&buf, offset),
            Tail::File(path) => {
                let mut dst = f.try_clone()?;
                dst.seek(SeekFrom::Start(offset))?;
                io::copy(&mut File::open(&path)?, &mut dst)?;
                std::fs::remove_file(&path)
            }
        }
    }

    /// The append succeeded: the tail is no longer needed.
    fn discard(self) {
        if let Tail::File(path) = self
            && let Err(e) = std::fs::remove_file(&path)
        {
            tracing::warn!(path = %path.display(), error = %e, "removing a saved upload area tail failed");
        }
    }
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

    async fn list_blobs(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<crate::ListedBlob>> {
        let root = self.root.join("blobs");
        let after = after.map(|d| d.to_string());
        Ok(blocking(move || list_blobs_under(&root, after.as_deref(), limit)).await?)
    }

    async fn upload_create(&self, id: &str) -> Result<()> {
        let p = self.upload_path(id)?;
        blocking(move || {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().mode(0o700).create(p)
        })
        .await?;
        Ok(())
    }

    async fn upload_append(&self, id: &str, state: &str, offset: u64, mut body: ByteStream) -> Result<Appended> {
        let (dir, from) = self.state_path(id, state)?;
        let claimed = blocking(move || {
            if from.is_none() && offset > 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("empty upload area, offset {offset}"),
                ));
            }
            let (nonce, path, f) = claim(&dir, from.as_deref())?;
            let len = f.metadata()?.len();
            if len < offset {
                // Give the file back to its state: nothing was changed.
                if let Some(from) = &from {
                    std::fs::rename(&path, from)?;
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("upload area has {len} bytes, metadata says {offset}"),
                ));
            }
            // The bytes past `offset` may be named by the caller's state: kept aside until
            // the append succeeds, so that a failed one gives them back.
            let tail = match Tail::save(&f, &dir, &nonce, offset, len) {
                Ok(t) => t,
                Err(e) => {
                    if let Some(from) = &from {
                        std::fs::rename(&path, from)?;
                    }
                    return Err(e);
                }
            };
            if len > offset {
                f.set_len(offset)?;
            }
            Ok((nonce, path, f, dir, from, tail))
        })
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StorageError::NotFound,
            io::ErrorKind::UnexpectedEof => StorageError::Inconsistent(e.to_string()),
            _ => StorageError::Io(e),
        })?;
        let (nonce, path, file, dir, from, tail) = claimed;
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
        let r = writer.await.map_err(io::Error::other).and_then(|r| r);
        let failure = match (r, body_err) {
            (Ok(written), None) => {
                let d = dir.clone();
                blocking(move || {
                    tail.discard();
                    sync_dir(&d)
                })
                .await?;
                return Ok(Appended { written, state: nonce });
            }
            (_, Some(e)) => StorageError::Body(e),
            (Err(e), None) => StorageError::Io(e),
        };
        // Give the area back to the state the caller still records: its first `offset` bytes
        // are unchanged, and the bytes it held past them are put back.
        let restore = blocking(move || {
            let f = OpenOptions::new().write(true).open(&path)?;
            f.set_len(offset)?;
            tail.restore(&f, offset)?;
            f.sync_data()?;
            match from {
                Some(from) => std::fs::rename(&path, from)?,
                None => std::fs::remove_file(&path)?,
            }
            sync_dir(&dir)
        })
        .await;
        if let Err(e) = restore {
            tracing::warn!(error = %e, "restoring an upload area after a failed append failed");
        }
        Err(failure)
    }

    async fn upload_read(&self, id: &str, state: &str, start: u64, len: u64) -> Result<ByteStream> {
        let (dir, file) = self.state_path(id, state)?;
        match file {
            Some(file) => stream_area_file(file, start, len).await,
            None if start == 0 && len == 0 => {
                if tokio::fs::metadata(&dir).await.map_err(map_nf)?.is_dir() {
                    Ok(Box::pin(futures::stream::empty()))
                } else {
                    Err(StorageError::NotFound)
                }
            }
            None => Err(StorageError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "the upload area is empty"))),
        }
    }

    async fn upload_commit(&self, id: &str, state: &str, digest: &Digest, size: u64) -> Result<()> {
        let (dir, from) = self.state_path(id, state)?;
        let dst = self.blob_path(digest);
        blocking(move || {
            if from.is_none() && size > 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the upload area is empty"));
            }
            // Claim the file first: no other writer can change it from here on.
            let (_, src, f) = claim(&dir, from.as_deref())?;
            let len = f.metadata()?.len();
            if len < size {
                if let Some(from) = &from {
                    std::fs::rename(&src, from)?;
                }
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "upload shorter than committed size"));
            }
            if len > size {
                f.set_len(size)?;
            }
            f.sync_all()?;
            drop(f);
            if !dst.exists() {
                let blob_dir = dst.parent().expect("blob path has a parent");
                std::fs::create_dir_all(blob_dir)?;
                std::fs::rename(&src, &dst)?;
                sync_dir(blob_dir)?;
            }
            // Put-if-absent: an existing blob is the same content, already durable.
            std::fs::remove_dir_all(&dir)?;
            if let Some(up) = dir.parent() {
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
        blocking(move || {
            // A directory, or the single file of areas from before area states.
            let r = match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
                Ok(_) => std::fs::remove_file(&p),
                Err(e) => Err(e),
            };
            not_found_as_none(r).map(|_| ())
        })
        .await?;
        Ok(())
    }

    async fn free_space(&self) -> Result<Option<u64>> {
        let root = self.root.clone();
        let free = blocking(move || {
            use std::os::unix::ffi::OsStrExt;
            let path = std::ffi::CString::new(root.as_os_str().as_bytes()).map_err(io::Error::other)?;
            let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
            // SAFETY: `path` is a valid NUL-terminated string and `st` a writable statvfs.
            if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
        })
        .await?;
        Ok(Some(free))
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

/// Sorted names of the entries of `dir` (none when it is absent).
fn sorted_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                if let Some(n) = e?.file_name().to_str() {
                    out.push(n.to_string());
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort();
    Ok(out)
}

/// [`BlobStore::list_blobs`] over `<root>/<algorithm>/<first two hex>/<hex>`: only the
/// directories at or after `after`'s are read.
fn list_blobs_under(root: &Path, after: Option<&str>, limit: usize) -> io::Result<Vec<crate::ListedBlob>> {
    let mut out = Vec::new();
    let start: Option<Digest> = after.and_then(|a| a.parse().ok());
    for alg in sorted_names(root)? {
        if start.as_ref().is_some_and(|s| alg.as_str() < s.algorithm().as_str()) {
            continue;
        }
        for prefix in sorted_names(&root.join(&alg))? {
            let before_start =
                start.as_ref().is_some_and(|s| s.algorithm().as_str() == alg && prefix.as_str() < &s.hex()[..2]);
            if before_start {
                continue;
            }
            let dir = root.join(&alg).join(&prefix);
            for name in sorted_names(&dir)? {
                let Ok(digest) = format!("{alg}:{name}").parse::<Digest>() else { continue };
                if !name.starts_with(&prefix) || after.is_some_and(|a| digest.to_string().as_str() <= a) {
                    continue;
                }
                let Ok(meta) = std::fs::metadata(dir.join(&name)) else { continue };
                if !meta.is_file() {
                    continue;
                }
                let modified_ms = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_millis() as i64);
                out.push(crate::ListedBlob { digest, size: meta.len(), modified_ms });
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
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

    /// A rewinding append whose body fails leaves the recorded state's bytes as they were, the
    /// ones past its offset included, whether they were kept in memory or in a side file.
    #[tokio::test]
    async fn failed_rewinds_keep_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::open(dir.path()).unwrap();
        s.upload_create("t").await.unwrap();
        let len = TAIL_IN_MEMORY as usize + 4096;
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let one: ByteStream = Box::pin(futures::stream::iter([Ok(Bytes::from(bytes.clone()))]));
        let a = s.upload_append("t", "", 0, one).await.unwrap();
        for offset in [len as u64 - 100, 5] {
            let failing: ByteStream = Box::pin(futures::stream::iter([
                Ok(Bytes::from_static(b"new bytes")),
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone")),
            ]));
            let e = s.upload_append("t", &a.state, offset, failing).await.unwrap_err();
            assert!(matches!(e, StorageError::Body(_)), "{e}");
            assert!(collect(s.upload_read("t", &a.state, 0, len as u64).await.unwrap()).await == bytes);
            let names = sorted_names(&dir.path().join("uploads/t")).unwrap();
            assert_eq!(names, std::slice::from_ref(&a.state), "no side file is left");
        }
        // A successful rewind leaves no side file either.
        let b = s.upload_append("t", &a.state, 5, body(vec![b"xyz"])).await.unwrap();
        assert_eq!(sorted_names(&dir.path().join("uploads/t")).unwrap(), std::slice::from_ref(&b.state));
        assert_eq!(collect(s.upload_read("t", &b.state, 0, 8).await.unwrap()).await, [0, 1, 2, 3, 4, b'x', b'y', b'z']);
    }

    /// A read of an area whose file a racing writer claims and cuts meanwhile fails; it does
    /// not fault (a mapping of the cut file would, with `SIGBUS`).
    #[tokio::test]
    async fn area_reads_survive_a_racing_claim() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::open(dir.path()).unwrap();
        s.upload_create("r").await.unwrap();
        let big: ByteStream = Box::pin(futures::stream::iter([Ok(Bytes::from(vec![7u8; 3 * READ_CHUNK]))]));
        let a = s.upload_append("r", "", 0, big).await.unwrap();
        let mut reading = s.upload_read("r", &a.state, 0, 3 * READ_CHUNK as u64).await.unwrap();
        s.upload_append("r", &a.state, 0, body(vec![b"short"])).await.unwrap();
        let mut failed = false;
        while let Some(item) = reading.next().await {
            match item {
                // Touch every byte: a mapping past the file's end would fault here.
                Ok(chunk) => assert!(chunk.iter().all(|&b| b == 7), "no byte of the writer"),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "the read of the cut file fails");
    }

    #[tokio::test]
    async fn upload_append_commit_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::open(dir.path()).unwrap();
        s.upload_create("u1").await.unwrap();
        let a = s.upload_append("u1", "", 0, body(vec![b"hello ", b"wor"])).await.unwrap();
        assert_eq!(a.written, 9);
        // Junk written past the recorded offset (its state never recorded) is discarded.
        let junk = s.upload_append("u1", &a.state, 9, body(vec![b"JUNK"])).await.unwrap();
        assert_eq!(junk.written, 4);
        let b = s.upload_append("u1", &junk.state, 9, body(vec![b"ld"])).await.unwrap();
        assert_eq!(b.written, 2);
        // The state the junk append started from was claimed by it: gone.
        assert!(matches!(s.upload_append("u1", &a.state, 9, body(vec![b"x"])).await, Err(StorageError::NotFound)));
        assert!(matches!(
            s.upload_append("u1", &b.state, 100, body(vec![b"x"])).await,
            Err(StorageError::Inconsistent(_))
        ));
        let d = Digest::from_raw(Algorithm::Sha256, &[7; 32]);
        s.upload_commit("u1", &b.state, &d, 11).await.unwrap();
        assert_eq!(s.stat(&d).await.unwrap(), Some(11));
        assert_eq!(collect(s.read(&d, 0, 11).await.unwrap()).await, b"hello world");
        assert_eq!(collect(s.read(&d, 6, 5).await.unwrap()).await, b"world");
        assert!(s.upload_list().await.unwrap().is_empty());
        assert!(matches!(s.upload_create("../x").await, Err(StorageError::Io(_))));
        s.delete(&d).await.unwrap();
        assert_eq!(s.stat(&d).await.unwrap(), None);
    }
}
