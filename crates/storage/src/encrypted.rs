//! Envelope encryption over any [`BlobStore`]: [`Encrypted`] encrypts every byte of committed
//! blobs and upload areas with AES-256-GCM before it reaches the inner store, so everything
//! above it (registry, GC, archive moves, scanner reads) works unchanged on plaintext while the
//! inner store (a directory, a bucket) only ever holds ciphertext.
//!
//! # Stored format
//!
//! An encrypted object (blob or upload area) in the inner store is a 64-byte header followed by
//! segments:
//!
//! ```text
//! header   magic "BERTHENC" (8) | version 1 (1) | segment size log2 = 16 (1) | 6 zero bytes
//!          | key id (16) | 32 zero bytes
//! segment  nonce (12 random bytes) | AES-256-GCM ciphertext | tag (16)
//! ```
//!
//! Segment `i` holds the plaintext bytes `[i * SEGMENT_SIZE, min((i + 1) * SEGMENT_SIZE, size))`
//! ([`SEGMENT_SIZE`] = 64 KiB) at stored offset [`segment_offset`]`(i)`, authenticated with the
//! additional data `header || i as u64 big-endian`: a segment cannot be moved to another index
//! or another object (under another header), and any changed byte fails the read. A zero-length
//! blob is the header alone. [`encrypted_size`] and [`plaintext_size`] convert sizes.
//!
//! The key id names the data key ([`Keyring`]): an upload area is encrypted with the key of its
//! upload id ([`Keyring::upload_key`], the same on every node), and a committed blob keeps the
//! header (and so the key) of the area it was committed from ([`Keyring::blob_key`]).
//!
//! # Upload areas
//!
//! The area state that [`Encrypted`] returns is `<plaintext end>:<inner state>` (`""` for the
//! empty area): the plaintext end says how long the last stored segment is, which an append at
//! an offset inside a segment needs. Such an append reads back and authenticates the segment's
//! first bytes, then re-encrypts them (under fresh nonces) together with the new body at the
//! segment's stored offset, where the inner store replaces the tail. A commit of fewer bytes
//! than the area holds, ending inside a segment, first re-seals that segment the same way (an
//! append of an empty body at `size`), so the blob's last segment holds exactly its bytes; the
//! caller's state is then superseded, so if the commit itself fails the upload is lost (the
//! registry commits whole areas, which never need this).
//! Bodies are encrypted while they stream: memory per request is about one segment plus one
//! incoming chunk, whatever the size.
//!
//! # Committed blobs
//!
//! The header of a committed blob is read once and kept in a small bounded cache (blobs are
//! immutable; [`BlobStore::delete`] and commits evict, and a read that fails authentication
//! through a cached header re-reads the header once, in case another node deleted and
//! re-committed the blob under another key). An object without the magic is a *legacy
//! plaintext* blob (stored before encryption was turned on): it is read as is, unless
//! [`Encrypted::with_plaintext`]`(false)` refuses it. Legacy blobs are not cached, so each
//! read of one costs a `stat` and a 64-byte header read more.
//!
//! [`BlobStore::list_blobs`] reports stored sizes (the encrypted size, [`encrypted_size`] of
//! what [`BlobStore::stat`] says), and [`BlobStore::presign_get`] is always `None`: the bytes
//! must be decrypted on the way out.
//!
//! Limits of the format: segments do not mark the last one, so an object cut at a segment
//! boundary reads as a shorter blob (the caller's recorded size then makes its reads fail), and
//! the header of an empty blob is not authenticated (there is no segment to authenticate it).

use crate::{Appended, BlobStore, ByteStream, ListedBlob, Result, StorageError};
use async_trait::async_trait;
use berth_oci::Digest;
use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zeroize::Zeroize;

/// First bytes of every encrypted object.
pub const MAGIC: &[u8; 8] = b"BERTHENC";
/// Version of the format this module writes and reads.
pub const VERSION: u8 = 1;
/// log2 of [`SEGMENT_SIZE`], as stored in the header.
pub const SEGMENT_LOG2: u8 = 16;
/// Bytes of the header that starts every encrypted object.
pub const HEADER_LEN: u64 = 64;
/// Plaintext bytes per segment (64 KiB).
pub const SEGMENT_SIZE: u64 = 1 << SEGMENT_LOG2;
/// Bytes a segment stores on top of its plaintext: the nonce (12) and the tag (16).
pub const SEGMENT_OVERHEAD: u64 = (NONCE_LEN + TAG_LEN) as u64;
/// Stored bytes of a full segment.
pub const SEGMENT_STORED: u64 = SEGMENT_SIZE + SEGMENT_OVERHEAD;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Committed blobs whose header is cached, at most.
const CACHE_CAPACITY: usize = 16 * 1024;

/// Stored bytes of an encrypted object of `plain` plaintext bytes (below 2^63):
/// `64 + full * (SEGMENT_SIZE + 28) + (rem > 0 ? rem + 28 : 0)`.
pub fn encrypted_size(plain: u64) -> u64 {
    let (full, rem) = (plain / SEGMENT_SIZE, plain % SEGMENT_SIZE);
    HEADER_LEN + full * SEGMENT_STORED + if rem > 0 { rem + SEGMENT_OVERHEAD } else { 0 }
}

/// Plaintext bytes of an encrypted object of `stored` bytes; `None` when no plaintext size
/// encrypts to `stored` (shorter than the header, or a last segment of at most 28 bytes).
pub fn plaintext_size(stored: u64) -> Option<u64> {
    let body = stored.checked_sub(HEADER_LEN)?;
    let (full, rem) = (body / SEGMENT_STORED, body % SEGMENT_STORED);
    match rem {
        0 => Some(full * SEGMENT_SIZE),
        r if r > SEGMENT_OVERHEAD => Some(full * SEGMENT_SIZE + r - SEGMENT_OVERHEAD),
        _ => None,
    }
}

/// Stored offset of segment `i`.
pub fn segment_offset(i: u64) -> u64 {
    HEADER_LEN + i * SEGMENT_STORED
}

/// Plaintext bytes of segment `i` of an object of `plain` bytes (`i` is one of its segments).
fn segment_len(i: u64, plain: u64) -> u64 {
    (plain - i * SEGMENT_SIZE).min(SEGMENT_SIZE)
}

/// The stored bytes covering plaintext `[start, start + len)` of an object of `plain` bytes
/// (`len > 0`, the range inside the object): `(first segment, stored offset, stored length)`,
/// whole segments from the one holding `start` to the one holding the range's last byte.
pub fn stored_range(plain: u64, start: u64, len: u64) -> (u64, u64, u64) {
    debug_assert!(len > 0 && start + len <= plain);
    let first = start / SEGMENT_SIZE;
    let last = (start + len - 1) / SEGMENT_SIZE;
    let from = segment_offset(first);
    let to = encrypted_size(plain.min((last + 1) * SEGMENT_SIZE));
    (first, from, to - from)
}

/// Identifies a data key (stored in the header of every encrypted object).
pub type KeyId = [u8; 16];

/// A 32-byte AES-256 data key. Its bytes are zeroized on drop and never printed by `Debug`.
/// (The AES key schedule that encryption derives from it lives in `ring`, which does not zeroize.)
pub struct DataKey([u8; 32]);

impl DataKey {
    /// A key of these bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        DataKey(bytes)
    }

    /// The key's bytes.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// Where [`Encrypted`] gets its data keys. Implementations decide how keys are made and kept
/// (derived from a master key, wrapped by a KMS, ...); [`Encrypted`] only asks, per operation,
/// and does not keep the keys it is given.
#[async_trait]
pub trait Keyring: Send + Sync + 'static {
    /// The data key of upload area `id`: deterministic (every node derives the same pair from
    /// the id), since any node may continue an upload.
    fn upload_key(&self, id: &str) -> (KeyId, DataKey);
    /// The data key of committed blob `digest` whose header names `key_id` (the key id that
    /// [`Keyring::upload_key`] gave for the area it was committed from). `StorageError::Key`
    /// when it is unavailable.
    async fn blob_key(&self, digest: &Digest, key_id: &KeyId) -> Result<DataKey>;
}

/// The header of objects encrypted under `key_id`.
fn header(key_id: &KeyId) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8] = VERSION;
    h[9] = SEGMENT_LOG2;
    h[16..32].copy_from_slice(key_id);
    h
}

/// The key id of a stored header; `None` when `h` does not start with the magic (a plaintext
/// object), `Integrity` when it does but is not a header of this version.
fn parse_header(h: &[u8]) -> Result<Option<KeyId>> {
    if h.len() < MAGIC.len() || &h[..MAGIC.len()] != MAGIC {
        return Ok(None);
    }
    let mut key_id = KeyId::default();
    key_id.copy_from_slice(h.get(16..32).ok_or_else(|| integrity("short header"))?);
    if h.len() != HEADER_LEN as usize || h != header(&key_id) {
        return Err(integrity(&format!(
            "unsupported encryption header (version {}, segment log2 {})",
            h.get(8).copied().unwrap_or(0),
            h.get(9).copied().unwrap_or(0)
        )));
    }
    Ok(Some(key_id))
}

fn integrity(msg: &str) -> StorageError {
    StorageError::Integrity(msg.to_string())
}

/// The error a decrypting stream yields for a segment that fails authentication (an
/// `InvalidData` I/O error carrying this).
#[derive(Debug)]
struct AuthFailed(String);

impl std::fmt::Display for AuthFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuthFailed {}

fn auth_failed(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, AuthFailed(msg))
}

fn is_auth_failure(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|x| x.is::<AuthFailed>())
}

/// A storage error for an error a stream yielded.
fn stream_err(e: io::Error) -> StorageError {
    if is_auth_failure(&e) {
        StorageError::Integrity(e.to_string())
    } else if e.kind() == io::ErrorKind::NotFound {
        StorageError::NotFound
    } else {
        StorageError::Io(e)
    }
}

/// Seals and opens the segments of one object (one key, one header).
struct SegmentCipher {
    key: LessSafeKey,
    header: [u8; HEADER_LEN as usize],
}

impl SegmentCipher {
    fn new(key: &DataKey, key_id: &KeyId) -> SegmentCipher {
        let unbound = UnboundKey::new(&AES_256_GCM, key.expose()).expect("AES-256 takes a 32-byte key");
        SegmentCipher { key: LessSafeKey::new(unbound), header: header(key_id) }
    }

    fn aad(&self, i: u64) -> Aad<[u8; HEADER_LEN as usize + 8]> {
        let mut a = [0u8; HEADER_LEN as usize + 8];
        a[..HEADER_LEN as usize].copy_from_slice(&self.header);
        a[HEADER_LEN as usize..].copy_from_slice(&i.to_be_bytes());
        Aad::from(a)
    }

    /// Encrypt segment `i` in place: `buf` is `nonce || plaintext`, and becomes
    /// `nonce || ciphertext || tag`.
    fn seal(&self, i: u64, buf: &mut BytesMut) -> io::Result<()> {
        let nonce = Nonce::try_assume_unique_for_key(&buf[..NONCE_LEN]).map_err(|_| io::Error::other("bad nonce"))?;
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, self.aad(i), &mut buf[NONCE_LEN..])
            .map_err(|_| io::Error::other("segment encryption failed"))?;
        buf.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Decrypt stored segment `i` (`nonce || ciphertext || tag`): its plaintext, or an
    /// [`AuthFailed`] error.
    fn open(&self, i: u64, mut buf: BytesMut) -> io::Result<Bytes> {
        if buf.len() < SEGMENT_OVERHEAD as usize {
            return Err(auth_failed(format!("segment {i} is truncated")));
        }
        let nonce = Nonce::try_assume_unique_for_key(&buf[..NONCE_LEN]).map_err(|_| io::Error::other("bad nonce"))?;
        let n = self
            .key
            .open_in_place(nonce, self.aad(i), &mut buf[NONCE_LEN..])
            .map_err(|_| auth_failed(format!("segment {i} failed authentication")))?
            .len();
        Ok(buf.freeze().slice(NONCE_LEN..NONCE_LEN + n))
    }
}

/// A fresh segment buffer: a random nonce, room for a full segment.
fn new_segment(rng: &SystemRandom) -> io::Result<BytesMut> {
    let mut buf = BytesMut::with_capacity(SEGMENT_STORED as usize);
    buf.resize(NONCE_LEN, 0);
    rng.fill(&mut buf[..NONCE_LEN]).map_err(|_| io::Error::other("the system random generator failed"))?;
    Ok(buf)
}

/// Encrypts a body into stored segments while it streams: the header first (when given), then
/// segment after segment from index `seg`, the first one starting with `prefix` (plaintext
/// already stored at the start of that segment, re-sealed here). Body errors are passed on as
/// they come. Holds at most one segment and one body chunk.
struct Sealer {
    cipher: Arc<SegmentCipher>,
    rng: SystemRandom,
    body: ByteStream,
    header: Option<Bytes>,
    /// Index of the segment being filled.
    seg: u64,
    /// `nonce || plaintext` of the segment being filled.
    buf: BytesMut,
    /// What is left of the body's current chunk.
    chunk: Bytes,
    /// Body bytes taken so far.
    taken: Arc<AtomicU64>,
    done: bool,
}

impl Sealer {
    fn stream(self) -> ByteStream {
        Box::pin(futures::stream::unfold(self, |mut s| async move {
            let item = s.next().await?;
            Some((item, s))
        }))
    }

    /// Seal the segment being filled and start the next one.
    fn seal(&mut self) -> io::Result<Bytes> {
        let mut buf = std::mem::replace(&mut self.buf, new_segment(&self.rng)?);
        self.cipher.seal(self.seg, &mut buf)?;
        self.seg += 1;
        Ok(buf.freeze())
    }

    async fn next(&mut self) -> Option<io::Result<Bytes>> {
        if self.done {
            return None;
        }
        if let Some(h) = self.header.take() {
            return Some(Ok(h));
        }
        loop {
            if !self.chunk.is_empty() {
                let room = SEGMENT_SIZE as usize + NONCE_LEN - self.buf.len();
                let n = room.min(self.chunk.len());
                self.buf.extend_from_slice(&self.chunk[..n]);
                self.chunk.advance(n);
                self.taken.fetch_add(n as u64, Ordering::Relaxed);
                if n == room {
                    return Some(self.seal());
                }
                continue;
            }
            match self.body.next().await {
                Some(Ok(c)) => self.chunk = c,
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                None => {
                    self.done = true;
                    return (self.buf.len() > NONCE_LEN).then(|| self.seal());
                }
            }
        }
    }
}

/// Decrypts stored segments while they stream: `inner` yields whole segments from index `seg`
/// on, of an object of `plain` plaintext bytes; yields the plaintext `[start, end)`. Fails
/// (an [`AuthFailed`] error) rather than yield a byte of a segment that does not authenticate.
struct Opener {
    cipher: Arc<SegmentCipher>,
    inner: ByteStream,
    /// Index of the next segment.
    seg: u64,
    plain: u64,
    start: u64,
    end: u64,
    /// Stored bytes of the next segment received so far.
    buf: BytesMut,
    chunk: Bytes,
    done: bool,
}

impl Opener {
    fn new(cipher: Arc<SegmentCipher>, inner: ByteStream, seg: u64, plain: u64, start: u64, end: u64) -> Opener {
        Opener { cipher, inner, seg, plain, start, end, buf: BytesMut::new(), chunk: Bytes::new(), done: false }
    }

    fn stream(self) -> ByteStream {
        Box::pin(futures::stream::unfold(self, |mut s| async move {
            let item = s.next().await?;
            Some((item, s))
        }))
    }

    async fn next(&mut self) -> Option<io::Result<Bytes>> {
        let seg_start = self.seg * SEGMENT_SIZE;
        if self.done || seg_start >= self.end {
            return None;
        }
        let want = (segment_len(self.seg, self.plain) + SEGMENT_OVERHEAD) as usize;
        if self.buf.capacity() < want {
            self.buf.reserve(want - self.buf.len());
        }
        loop {
            if self.buf.len() == want {
                let stored = std::mem::take(&mut self.buf);
                let i = self.seg;
                self.seg += 1;
                return Some(match self.cipher.open(i, stored) {
                    Ok(plain) => {
                        let from = self.start.saturating_sub(seg_start) as usize;
                        let to = (self.end - seg_start).min(plain.len() as u64) as usize;
                        Ok(plain.slice(from..to))
                    }
                    Err(e) => {
                        self.done = true;
                        Err(e)
                    }
                });
            }
            if !self.chunk.is_empty() {
                let n = (want - self.buf.len()).min(self.chunk.len());
                self.buf.extend_from_slice(&self.chunk[..n]);
                self.chunk.advance(n);
                continue;
            }
            match self.inner.next().await {
                Some(Ok(c)) => self.chunk = c,
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                None => {
                    self.done = true;
                    return Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the stored object ends inside segment {}", self.seg),
                    )));
                }
            }
        }
    }
}

/// Wait for the first item of `s`: a segment failing authentication there is reported by the
/// call (`Integrity`) rather than by the stream.
async fn primed(mut s: ByteStream) -> Result<ByteStream> {
    match s.next().await {
        None => Ok(Box::pin(futures::stream::empty())),
        Some(Err(e)) if is_auth_failure(&e) => Err(StorageError::Integrity(e.to_string())),
        Some(first) => Ok(Box::pin(futures::stream::iter([first]).chain(s))),
    }
}

/// All the bytes of `s`.
async fn collect(mut s: ByteStream) -> Result<Bytes> {
    let mut out = BytesMut::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.map_err(stream_err)?);
    }
    Ok(out.freeze())
}

/// An encrypted area state: `(plaintext end, inner state)`.
fn parse_state(state: &str) -> Result<(u64, &str)> {
    if state.is_empty() {
        return Ok((0, ""));
    }
    let bad = || {
        StorageError::Inconsistent(format!(
            "invalid upload area state '{}'",
            state.chars().take(80).collect::<String>()
        ))
    };
    let (end, inner) = state.split_once(':').ok_or_else(bad)?;
    if inner.is_empty() || end.is_empty() || !end.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    Ok((end.parse().map_err(|_| bad())?, inner))
}

fn render_state(end: u64, inner: &str) -> String {
    if inner.is_empty() && end == 0 { String::new() } else { format!("{end}:{inner}") }
}

/// How a committed blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Without the magic: a legacy plaintext blob, read as is.
    Plain,
    /// Encrypted under `key_id`, of `plain` plaintext bytes.
    Encrypted { key_id: KeyId, plain: u64 },
}

/// A [`BlobStore`] that encrypts everything it stores in `S` (see the module documentation for
/// the format). Every method keeps the [`BlobStore`] contract on plaintext, with two
/// differences that the trait allows: [`BlobStore::list_blobs`] reports stored (encrypted)
/// sizes, and [`BlobStore::presign_get`] is always `None`.
pub struct Encrypted<S: BlobStore> {
    inner: S,
    keys: Arc<dyn Keyring>,
    rng: SystemRandom,
    /// Layouts of encrypted committed blobs (legacy plaintext ones are not cached).
    cache: Mutex<HashMap<Digest, Layout>>,
    /// Whether objects without the magic are read as legacy plaintext.
    plaintext: bool,
}

impl<S: BlobStore + std::fmt::Debug> std::fmt::Debug for Encrypted<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encrypted").field("inner", &self.inner).field("plaintext", &self.plaintext).finish()
    }
}

impl<S: BlobStore> Encrypted<S> {
    /// Encrypt everything stored in `inner` with keys from `keys`. Legacy plaintext blobs
    /// already in `inner` are read as is (see [`Encrypted::with_plaintext`]).
    pub fn new(inner: S, keys: Arc<dyn Keyring>) -> Encrypted<S> {
        Encrypted { inner, keys, rng: SystemRandom::new(), cache: Mutex::new(HashMap::new()), plaintext: true }
    }

    /// Whether committed blobs stored without encryption (no magic) are read as is (`true`,
    /// the default, for stores holding blobs from before encryption was turned on), or refused
    /// (`false`: `stat`, `read` and `key_id` fail with `Integrity`), so that nothing unencrypted
    /// (and so unauthenticated) is ever served.
    pub fn with_plaintext(mut self, allow: bool) -> Encrypted<S> {
        self.plaintext = allow;
        self
    }

    /// The store holding the ciphertext.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn cached(&self, digest: &Digest) -> Option<Layout> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(digest).copied()
    }

    fn evict(&self, digest: &Digest) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).remove(digest);
    }

    fn remember(&self, digest: &Digest, layout: Layout) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_CAPACITY
            && !cache.contains_key(digest)
            && let Some(victim) = cache.keys().next().cloned()
        {
            cache.remove(&victim);
        }
        cache.insert(digest.clone(), layout);
    }

    /// Read the header of committed blob `digest` of `stored` bytes: its layout, `None` when
    /// it is gone.
    async fn load_layout(&self, digest: &Digest, stored: u64) -> Result<Option<Layout>> {
        let key_id = if stored < HEADER_LEN {
            None
        } else {
            let h = match self.inner.read(digest, 0, HEADER_LEN).await {
                Ok(s) => collect(s).await,
                Err(e) => Err(e),
            };
            let h = match h {
                Ok(h) => h,
                Err(StorageError::NotFound) => return Ok(None),
                Err(e) => return Err(e),
            };
            parse_header(&h)?
        };
        let layout = match key_id {
            None if self.plaintext => return Ok(Some(Layout::Plain)),
            None => return Err(integrity(&format!("blob {digest} is not encrypted"))),
            Some(key_id) => {
                let plain = plaintext_size(stored)
                    .ok_or_else(|| integrity(&format!("blob {digest}: {stored} bytes is not an encrypted size")))?;
                Layout::Encrypted { key_id, plain }
            }
        };
        self.remember(digest, layout);
        Ok(Some(layout))
    }

    /// The layout of committed blob `digest` (`None`: absent) and whether it came from the
    /// cache (`fresh`: never).
    async fn layout(&self, digest: &Digest, fresh: bool) -> Result<Option<(Layout, bool)>> {
        if !fresh && let Some(l) = self.cached(digest) {
            return Ok(Some((l, true)));
        }
        let Some(stored) = self.inner.stat(digest).await? else {
            self.evict(digest);
            return Ok(None);
        };
        Ok(self.load_layout(digest, stored).await?.map(|l| (l, false)))
    }

    async fn read_layout(&self, digest: &Digest, layout: Layout, start: u64, len: u64) -> Result<ByteStream> {
        let Layout::Encrypted { key_id, plain } = layout else {
            return self.inner.read(digest, start, len).await;
        };
        if start.checked_add(len).is_none_or(|end| end > plain) {
            return Err(StorageError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("range {start}+{len} past the end of a {plain}-byte blob"),
            )));
        }
        if len == 0 {
            // Nothing to decrypt; the inner store still says whether the blob exists.
            return self.inner.read(digest, 0, 0).await;
        }
        let key = self.keys.blob_key(digest, &key_id).await?;
        let cipher = Arc::new(SegmentCipher::new(&key, &key_id));
        drop(key);
        let (first, from, n) = stored_range(plain, start, len);
        let stored = self.inner.read(digest, from, n).await?;
        primed(Opener::new(cipher, stored, first, plain, start, start + len).stream()).await
    }

    /// The cipher of upload area `id`.
    fn area_cipher(&self, id: &str) -> Arc<SegmentCipher> {
        let (key_id, key) = self.keys.upload_key(id);
        Arc::new(SegmentCipher::new(&key, &key_id))
    }

    /// Decrypt plaintext `[start, start + len)` of the area `inner` names, of `end` bytes.
    async fn area_stream(
        &self,
        id: &str,
        inner: &str,
        end: u64,
        cipher: Arc<SegmentCipher>,
        start: u64,
        len: u64,
    ) -> Result<ByteStream> {
        let (first, from, n) = stored_range(end, start, len);
        let stored = self.inner.upload_read(id, inner, from, n).await?;
        primed(Opener::new(cipher, stored, first, end, start, start + len).stream()).await
    }
}

#[async_trait]
impl<S: BlobStore> BlobStore for Encrypted<S> {
    /// The plaintext size: the stored size of a legacy plaintext blob, else the size that the
    /// stored size encrypts (`Integrity` when it encrypts none).
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        let Some(stored) = self.inner.stat(digest).await? else {
            self.evict(digest);
            return Ok(None);
        };
        let layout = match self.cached(digest) {
            Some(l @ Layout::Encrypted { plain, .. }) if encrypted_size(plain) == stored => l,
            _ => match self.load_layout(digest, stored).await? {
                Some(l) => l,
                None => return Ok(None),
            },
        };
        Ok(Some(match layout {
            Layout::Plain => stored,
            Layout::Encrypted { plain, .. } => plain,
        }))
    }

    /// Decrypts exactly the covering segments. A segment failing authentication: `Integrity`
    /// when it is the first one, else the stream yields an `InvalidData` error; never its bytes.
    async fn read(&self, digest: &Digest, start: u64, len: u64) -> Result<ByteStream> {
        let Some((layout, cached)) = self.layout(digest, false).await? else { return Err(StorageError::NotFound) };
        match self.read_layout(digest, layout, start, len).await {
            Err(StorageError::Integrity(_) | StorageError::Key(_)) if cached => {
                // The blob may have been deleted and committed again under another key (by
                // another node): read its header again, once.
                self.evict(digest);
                let Some((layout, _)) = self.layout(digest, true).await? else { return Err(StorageError::NotFound) };
                self.read_layout(digest, layout, start, len).await
            }
            r => r,
        }
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        self.evict(digest);
        let r = self.inner.delete(digest).await;
        self.evict(digest);
        r
    }

    /// Delegated: sizes are stored (encrypted) sizes, see [`encrypted_size`].
    async fn list_blobs(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<ListedBlob>> {
        self.inner.list_blobs(after, limit).await
    }

    async fn upload_create(&self, id: &str) -> Result<()> {
        self.inner.upload_create(id).await
    }

    /// Encrypts `body` as it streams (see the module documentation); `written` counts the
    /// body's plaintext bytes.
    async fn upload_append(&self, id: &str, state: &str, offset: u64, body: ByteStream) -> Result<Appended> {
        let (end, inner) = parse_state(state)?;
        if offset > end {
            return Err(StorageError::Inconsistent(format!("upload area holds {end} bytes, offset is {offset}")));
        }
        let cipher = self.area_cipher(id);
        let (seg, kept) = (offset / SEGMENT_SIZE, offset % SEGMENT_SIZE);
        let mut buf = new_segment(&self.rng)?;
        if kept > 0 {
            // The segment holding `offset` keeps its first `kept` bytes: read them back. A
            // racing writer that claims the state meanwhile may change the bytes under the
            // read (failing it); it claims first, so a second read finds the state gone
            // (`NotFound`, as for a writer losing the race) or, if it gave it back, intact.
            let from = seg * SEGMENT_SIZE;
            let read = async || collect(self.area_stream(id, inner, end, cipher.clone(), from, kept).await?).await;
            let prefix = match read().await {
                Err(StorageError::Integrity(_) | StorageError::Io(_)) => read().await,
                r => r,
            };
            buf.extend_from_slice(&prefix?);
            if buf.len() != NONCE_LEN + kept as usize {
                return Err(StorageError::Inconsistent(format!("segment {seg} of the upload area is short")));
            }
        }
        let (at, header) = match offset {
            0 => (0, Some(Bytes::copy_from_slice(&cipher.header))),
            _ => (segment_offset(seg), None),
        };
        let taken = Arc::new(AtomicU64::new(0));
        let sealer = Sealer {
            cipher,
            rng: self.rng.clone(),
            body,
            header,
            seg,
            buf,
            chunk: Bytes::new(),
            taken: taken.clone(),
            done: false,
        };
        let a = self.inner.upload_append(id, inner, at, sealer.stream()).await?;
        let written = taken.load(Ordering::Relaxed);
        let new_end = offset + written;
        if at + a.written != encrypted_size(new_end) {
            return Err(StorageError::Io(io::Error::other(format!(
                "the inner store wrote {} bytes at {at}, {} expected",
                a.written,
                encrypted_size(new_end) - at
            ))));
        }
        Ok(Appended { written, state: render_state(new_end, &a.state) })
    }

    async fn upload_read(&self, id: &str, state: &str, start: u64, len: u64) -> Result<ByteStream> {
        let (end, inner) = parse_state(state)?;
        if start.checked_add(len).is_none_or(|e| e > end) {
            return Err(StorageError::Inconsistent(format!("upload area holds {end} bytes, {start}+{len} asked")));
        }
        if len == 0 {
            // Nothing to decrypt; the inner store still says whether the area exists.
            return self.inner.upload_read(id, inner, 0, 0).await;
        }
        self.area_stream(id, inner, end, self.area_cipher(id), start, len).await
    }

    /// Commits the ciphertext of the first `size` bytes. When they end inside a segment that
    /// holds more, that segment is first re-sealed at `size` (an append of nothing there), and
    /// an empty area is given its header first.
    async fn upload_commit(&self, id: &str, state: &str, digest: &Digest, size: u64) -> Result<()> {
        let (end, inner) = parse_state(state)?;
        if size > end {
            return Err(StorageError::Inconsistent(format!("upload area holds {end} bytes, {size} committed")));
        }
        let resealed;
        let inner = if (size == 0 && inner.is_empty()) || (!size.is_multiple_of(SEGMENT_SIZE) && size < end) {
            let empty: ByteStream = Box::pin(futures::stream::empty());
            resealed = self.upload_append(id, state, size, empty).await?.state;
            parse_state(&resealed)?.1
        } else {
            inner
        };
        self.evict(digest);
        self.inner.upload_commit(id, inner, digest, encrypted_size(size)).await
    }

    async fn upload_abort(&self, id: &str) -> Result<()> {
        self.inner.upload_abort(id).await
    }

    async fn upload_list(&self) -> Result<Vec<String>> {
        self.inner.upload_list().await
    }

    /// Always `None`: the stored bytes must be decrypted on the way out.
    async fn presign_get(&self, digest: &Digest, ttl: Duration) -> Result<Option<String>> {
        let _ = (digest, ttl);
        Ok(None)
    }

    async fn key_id(&self, digest: &Digest) -> Result<Option<KeyId>> {
        Ok(match self.layout(digest, false).await? {
            Some((Layout::Encrypted { key_id, .. }, _)) => Some(key_id),
            _ => None,
        })
    }

    async fn free_space(&self) -> Result<Option<u64>> {
        self.inner.free_space().await
    }

    async fn cleanup_stale(&self, older_than: Duration) -> Result<usize> {
        self.inner.cleanup_stale(older_than).await
    }
}

#[cfg(test)]
pub(crate) mod tests;
