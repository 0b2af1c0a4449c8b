//! [`Encrypted`] beyond the contract suite (which `contract.rs` runs over it): the size and
//! offset arithmetic, no plaintext in the inner store, reads around segment boundaries,
//! tampering, keys, legacy plaintext blobs.

use super::*;
use crate::fs::FsStore;
use berth_oci::Algorithm;
use proptest::prelude::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

const SEG: u64 = SEGMENT_SIZE;

fn sha256(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, s.as_bytes()).as_ref());
    out
}

/// Keys derived from the upload id (`SHA-256("id:" + id)` for the id, `SHA-256("key:" + id)`
/// for the key); the keys handed out are remembered by key id for [`Keyring::blob_key`].
pub(crate) struct TestKeyring {
    keys: Mutex<HashMap<KeyId, [u8; 32]>>,
}

impl TestKeyring {
    pub(crate) fn new() -> Arc<TestKeyring> {
        Arc::new(TestKeyring { keys: Mutex::new(HashMap::new()) })
    }
}

#[async_trait]
impl Keyring for TestKeyring {
    fn upload_key(&self, id: &str) -> (KeyId, DataKey) {
        let mut key_id = KeyId::default();
        key_id.copy_from_slice(&sha256(&format!("id:{id}"))[..16]);
        let key = sha256(&format!("key:{id}"));
        self.keys.lock().unwrap().insert(key_id, key);
        (key_id, DataKey::new(key))
    }

    async fn blob_key(&self, _digest: &Digest, key_id: &KeyId) -> Result<DataKey> {
        let keys = self.keys.lock().unwrap();
        let key =
            keys.get(key_id).ok_or_else(|| StorageError::Key(format!("unknown key id {}", hex::encode(key_id))))?;
        Ok(DataKey::new(*key))
    }
}

/// Upload keys as [`TestKeyring`], but every blob key is wrong.
struct WrongBlobKeys(Arc<TestKeyring>);

#[async_trait]
impl Keyring for WrongBlobKeys {
    fn upload_key(&self, id: &str) -> (KeyId, DataKey) {
        self.0.upload_key(id)
    }

    async fn blob_key(&self, _digest: &Digest, _key_id: &KeyId) -> Result<DataKey> {
        Ok(DataKey::new(sha256("not the key")))
    }
}

/// Deterministic pseudo-random bytes.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn digest_of(bytes: &[u8]) -> Digest {
    Digest::from_raw(Algorithm::Sha256, ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// A body delivering `bytes` in pieces of `piece` bytes.
fn body(bytes: &[u8], piece: usize) -> ByteStream {
    let chunks: Vec<io::Result<Bytes>> = bytes.chunks(piece.max(1)).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    Box::pin(futures::stream::iter(chunks))
}

/// The bytes of a read, or its first error (of the call or of the stream).
async fn read_all(r: Result<ByteStream>) -> std::result::Result<Vec<u8>, String> {
    let mut s = r.map_err(|e| format!("call: {e}"))?;
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.extend_from_slice(&b.map_err(|e| format!("stream: {e}"))?);
    }
    Ok(out)
}

fn fs_store(root: &Path) -> Encrypted<FsStore> {
    Encrypted::new(FsStore::open(root).unwrap(), TestKeyring::new())
}

fn blob_file(root: &Path, d: &Digest) -> PathBuf {
    let hex = d.hex();
    root.join("blobs").join(d.algorithm().as_str()).join(&hex[..2]).join(hex)
}

/// Upload `bytes` as area `id` in one append of `piece`-byte chunks and commit it.
async fn put(store: &dyn BlobStore, id: &str, bytes: &[u8], piece: usize) -> Digest {
    store.upload_create(id).await.unwrap();
    let a = store.upload_append(id, "", 0, body(bytes, piece)).await.unwrap();
    assert_eq!(a.written, bytes.len() as u64);
    let d = digest_of(bytes);
    store.upload_commit(id, &a.state, &d, bytes.len() as u64).await.unwrap();
    d
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

const WINDOW: usize = 48;

/// No `WINDOW`-byte run of any of `plain` is in any file under `root`.
fn assert_no_plaintext(root: &Path, plain: &[Vec<u8>]) {
    let windows: HashSet<&[u8]> = plain.iter().flat_map(|p| p.windows(WINDOW)).collect();
    let all = files(root);
    assert!(!all.is_empty());
    for f in all {
        let bytes = std::fs::read(&f).unwrap();
        if let Some(at) = bytes.windows(WINDOW).position(|w| windows.contains(w)) {
            panic!("{} holds plaintext at byte {at}", f.display());
        }
    }
}

#[test]
fn sizes_of_small_objects() {
    assert_eq!(encrypted_size(0), 64);
    assert_eq!(encrypted_size(1), 64 + 1 + 28);
    assert_eq!(encrypted_size(SEG - 1), 64 + SEG - 1 + 28);
    assert_eq!(encrypted_size(SEG), 64 + SEG + 28);
    assert_eq!(encrypted_size(SEG + 1), 64 + SEG + 28 + 29);
    assert_eq!(encrypted_size(3 * SEG), 64 + 3 * SEGMENT_STORED);
    assert_eq!(segment_offset(0), 64);
    assert_eq!(segment_offset(2), 64 + 2 * SEGMENT_STORED);
    // Every plaintext size up to four segments and a bit round-trips, sizes grow strictly,
    // and every stored size in between is either one of them or no encrypted size at all.
    let top = 4 * SEG + 100;
    let mut prev = None;
    let mut valid = 0u64;
    for p in 0..=top {
        let c = encrypted_size(p);
        assert_eq!(plaintext_size(c), Some(p), "plaintext_size(encrypted_size({p}))");
        assert!(prev.is_none_or(|q| q < c));
        prev = Some(c);
    }
    for c in 0..=encrypted_size(top) {
        if let Some(p) = plaintext_size(c) {
            assert_eq!(encrypted_size(p), c, "plaintext_size({c}) = {p}");
            valid += 1;
        }
    }
    assert_eq!(valid, top + 1, "exactly one stored size per plaintext size");
    assert_eq!(plaintext_size(63), None);
    assert_eq!(plaintext_size(64 + 28), None, "a last segment of 0 plaintext bytes is not stored");
    assert_eq!(plaintext_size(64 + SEGMENT_STORED + 5), None);
}

#[test]
fn stored_ranges_cover_whole_segments() {
    let size = 3 * SEG + 100;
    assert_eq!(stored_range(size, 0, 1), (0, 64, SEGMENT_STORED));
    assert_eq!(stored_range(size, SEG - 1, 1), (0, 64, SEGMENT_STORED));
    assert_eq!(stored_range(size, SEG - 1, 2), (0, 64, 2 * SEGMENT_STORED));
    assert_eq!(stored_range(size, SEG, 1), (1, 64 + SEGMENT_STORED, SEGMENT_STORED));
    assert_eq!(stored_range(size, size - 1, 1), (3, segment_offset(3), 128));
    assert_eq!(stored_range(size, 0, size), (0, 64, encrypted_size(size) - 64));
    assert_eq!(stored_range(10, 3, 4), (0, 64, 10 + 28));
}

proptest! {
    #[test]
    fn sizes_round_trip(p in 0u64..(1 << 56)) {
        let c = encrypted_size(p);
        prop_assert_eq!(plaintext_size(c), Some(p));
        prop_assert!(c > p && c - p == 64 + p.div_ceil(SEG) * 28);
        prop_assert_eq!(plaintext_size(c + 1).map(encrypted_size).unwrap_or(c + 1), c + 1);
    }

    #[test]
    fn stored_range_is_the_covering_segments(size in 1u64..(1 << 40), a in any::<u64>(), b in any::<u64>()) {
        let start = a % size;
        let len = 1 + b % (size - start);
        let (first, from, n) = stored_range(size, start, len);
        let last = (start + len - 1) / SEG;
        prop_assert_eq!(first, start / SEG);
        prop_assert_eq!(from, segment_offset(first));
        let want: u64 = (first..=last).map(|i| segment_len(i, size) + SEGMENT_OVERHEAD).sum();
        prop_assert_eq!(n, want);
        prop_assert!(from + n <= encrypted_size(size));
        prop_assert!(first * SEG <= start && start + len <= (last + 1) * SEG);
    }
}

#[test]
fn headers() {
    let id = [7u8; 16];
    let h = header(&id);
    assert_eq!(&h[..8], b"BERTHENC");
    assert_eq!((h[8], h[9]), (1, 16));
    assert!(h[10..16].iter().chain(&h[32..]).all(|&b| b == 0));
    assert_eq!(parse_header(&h).unwrap(), Some(id));
    assert_eq!(parse_header(b"plain bytes of a legacy blob, long enough to be a header or more..").unwrap(), None);
    for at in [8, 9, 12, 40, 63] {
        let mut bad = h;
        bad[at] ^= 1;
        assert!(matches!(parse_header(&bad), Err(StorageError::Integrity(_))), "byte {at} changed");
    }
}

#[test]
fn data_keys_are_not_printed() {
    let k = DataKey::new([0xab; 32]);
    let shown = format!("{k:?}");
    assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
    assert_eq!(k.expose(), &[0xab; 32]);
}

#[test]
fn area_states() {
    assert_eq!(parse_state("").unwrap(), (0, ""));
    assert_eq!(parse_state("12:abc").unwrap(), (12, "abc"));
    assert_eq!(parse_state("12:a:b").unwrap(), (12, "a:b"));
    for bad in ["abc", "12:", ":abc", "-1:abc", "x:abc", "99999999999999999999999:abc"] {
        assert!(matches!(parse_state(bad), Err(StorageError::Inconsistent(_))), "{bad}");
    }
    assert_eq!(render_state(0, ""), "");
    assert_eq!(render_state(5, "n"), "5:n");
}

/// Appends at unaligned offsets (1, 65535, 65537 and 3 bytes, then a rewind replacing the tail,
/// then uneven chunks), reads through each state, a commit; the inner store never holds a
/// 48-byte run of the plaintext.
#[tokio::test]
async fn no_plaintext_reaches_the_inner_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = fs_store(dir.path());
    store.upload_create("u").await.unwrap();
    let mut model: Vec<u8> = Vec::new();
    let mut written: Vec<Vec<u8>> = Vec::new();
    let mut state = String::new();
    let steps: Vec<(usize, Vec<u8>, usize)> = vec![
        (0, data(1, 1), 1),
        (1, data(65535, 2), 1000),
        (65536, data(65537, 3), 65536),
        (131073, data(3, 4), 2),
        // A rewind into the second segment: the tail is replaced.
        (100_000, data(50_000, 5), 7777),
        (150_000, data(3 * SEG as usize + 11, 6), 4096 * 3 + 1),
    ];
    for (offset, bytes, piece) in steps {
        let a = store.upload_append("u", &state, offset as u64, body(&bytes, piece)).await.unwrap();
        assert_eq!(a.written, bytes.len() as u64, "append at {offset}");
        state = a.state;
        model.truncate(offset);
        model.extend_from_slice(&bytes);
        written.push(bytes);
        let got = read_all(store.upload_read("u", &state, 0, model.len() as u64).await).await.unwrap();
        assert!(got == model, "area after an append at {offset}");
        assert_no_plaintext(dir.path(), &written);
    }
    let mid = read_all(store.upload_read("u", &state, SEG - 5, 10).await).await.unwrap();
    assert_eq!(mid, &model[SEG as usize - 5..SEG as usize + 5]);
    let d = digest_of(&model);
    store.upload_commit("u", &state, &d, model.len() as u64).await.unwrap();
    assert_eq!(store.stat(&d).await.unwrap(), Some(model.len() as u64));
    let stored = std::fs::metadata(blob_file(dir.path(), &d)).unwrap().len();
    assert_eq!(stored, encrypted_size(model.len() as u64));
    assert!(read_all(store.read(&d, 0, model.len() as u64).await).await.unwrap() == model);
    assert_no_plaintext(dir.path(), &written);
}

/// Full and ranged reads at and around segment boundaries return exact bytes, for a blob
/// ending inside a segment, one ending on a boundary, and the empty blob.
#[tokio::test]
async fn reads_around_segment_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let store = fs_store(dir.path());
    for (i, size) in [3 * SEG + 100, 2 * SEG, 1, SEG - 1, SEG + 1].into_iter().enumerate() {
        let bytes = data(size as usize, 100 + i as u64);
        let d = put(&store, &format!("r{i}"), &bytes, 10_000).await;
        assert_eq!(store.stat(&d).await.unwrap(), Some(size));
        let mut ranges = vec![(0, size), (0, 0), (size, 0), (size - 1, 1), (0, 1)];
        for at in [SEG - 1, SEG, SEG + 1, 2 * SEG - 1, 2 * SEG, 2 * SEG + 1, 3 * SEG] {
            for len in [1, 2, 5, SEG, SEG + 2] {
                if at + len <= size {
                    ranges.push((at, len));
                }
            }
            if at <= size {
                ranges.push((at, size - at));
            }
        }
        for (start, len) in ranges {
            let got = read_all(store.read(&d, start, len).await)
                .await
                .unwrap_or_else(|e| panic!("read({start}, {len}) of {size}: {e}"));
            assert!(got == bytes[start as usize..(start + len) as usize], "read({start}, {len}) of {size}");
        }
        for (start, len) in [(size, 1), (size - 1, 2), (0, size + 1)] {
            assert!(read_all(store.read(&d, start, len).await).await.is_err(), "read({start}, {len}) of {size}");
        }
    }
    // The empty blob: the header alone.
    store.upload_create("empty").await.unwrap();
    let d = digest_of(b"");
    store.upload_commit("empty", "", &d, 0).await.unwrap();
    assert_eq!(std::fs::metadata(blob_file(dir.path(), &d)).unwrap().len(), HEADER_LEN);
    assert_eq!(store.stat(&d).await.unwrap(), Some(0));
    assert_eq!(read_all(store.read(&d, 0, 0).await).await.unwrap(), b"");
    assert!(read_all(store.read(&d, 0, 1).await).await.is_err());
    assert_eq!(store.key_id(&d).await.unwrap(), Some(TestKeyring::new().upload_key("empty").0));
}

/// A commit of fewer bytes than the area holds, ending inside a segment, re-seals that segment.
#[tokio::test]
async fn commits_of_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = fs_store(dir.path());
    let bytes = data(3 * SEG as usize, 7);
    for (i, size) in [SEG + 10, 2 * SEG, 5, 0].into_iter().enumerate() {
        let id = format!("p{i}");
        store.upload_create(&id).await.unwrap();
        let a = store.upload_append(&id, "", 0, body(&bytes, 50_000)).await.unwrap();
        let blob = &bytes[..size as usize];
        let d = digest_of(blob);
        store.upload_commit(&id, &a.state, &d, size).await.unwrap();
        assert_eq!(std::fs::metadata(blob_file(dir.path(), &d)).unwrap().len(), encrypted_size(size));
        assert_eq!(store.stat(&d).await.unwrap(), Some(size));
        assert!(read_all(store.read(&d, 0, size).await).await.unwrap() == blob, "blob of {size}");
    }
}

/// A changed byte anywhere in a segment fails the read (never returns wrong bytes): at the
/// call when it is in the first segment read, in the stream otherwise.
#[tokio::test]
async fn tampering_fails_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = fs_store(dir.path());
    let size = 3 * SEG + 100;
    let bytes = data(size as usize, 8);
    let d = put(&store, "t", &bytes, 65536).await;
    let path = blob_file(dir.path(), &d);
    let original = std::fs::read(&path).unwrap();
    let flip = |at: u64| {
        let mut b = original.clone();
        b[at as usize] ^= 0x20;
        std::fs::write(&path, &b).unwrap();
    };
    // A byte of segment 0's ciphertext, nonce, tag; of the last segment.
    for at in [segment_offset(0) + 100, segment_offset(0), segment_offset(1) - 1, segment_offset(3) + 40] {
        flip(at);
        let fresh = Encrypted::new(FsStore::open(dir.path()).unwrap(), store.keys.clone());
        for s in [&store, &fresh] {
            let r = read_all(s.read(&d, 0, size).await).await;
            assert!(r.is_err(), "a flipped byte at {at} must fail the read");
        }
        let seg = (at - HEADER_LEN) / SEGMENT_STORED;
        let e = match store.read(&d, seg * SEG, 1).await {
            Err(e) => e,
            Ok(_) => panic!("reading segment {seg} with a flipped byte at {at}"),
        };
        assert!(matches!(e, StorageError::Integrity(_)), "{e}");
        if seg > 0 {
            // Segments before it still read.
            let r = read_all(store.read(&d, 0, SEG).await).await.unwrap();
            assert!(r == bytes[..SEG as usize]);
            let e = read_all(store.read(&d, 0, size).await).await.unwrap_err();
            assert!(e.starts_with("stream:") && e.contains("authentication"), "{e}");
        }
    }
    // A changed key id: no such key (or a wrong one), never bytes.
    flip(20);
    let fresh = Encrypted::new(FsStore::open(dir.path()).unwrap(), store.keys.clone());
    assert!(read_all(fresh.read(&d, 0, size).await).await.is_err());
    // Segments swapped: their indexes are authenticated.
    let mut swapped = original.clone();
    let (s0, s1) = (segment_offset(0) as usize, segment_offset(1) as usize);
    let seg0 = original[s0..s1].to_vec();
    swapped.copy_within(s1..s1 + (s1 - s0), s0);
    swapped[s1..s1 + (s1 - s0)].copy_from_slice(&seg0);
    std::fs::write(&path, &swapped).unwrap();
    assert!(read_all(store.read(&d, 0, size).await).await.is_err());
    std::fs::write(&path, &original).unwrap();
    assert!(read_all(store.read(&d, 0, size).await).await.unwrap() == bytes);
}

#[tokio::test]
async fn key_ids_and_wrong_keys() {
    let dir = tempfile::tempdir().unwrap();
    let keys = TestKeyring::new();
    let store = Encrypted::new(FsStore::open(dir.path()).unwrap(), keys.clone());
    let bytes = data(100_000, 9);
    let d = put(&store, "k", &bytes, 30_000).await;
    let (want, _) = keys.upload_key("k");
    assert_eq!(store.key_id(&d).await.unwrap(), Some(want));
    assert_eq!(&std::fs::read(blob_file(dir.path(), &d)).unwrap()[16..32], &want);
    assert_eq!(store.key_id(&digest_of(b"absent")).await.unwrap(), None);
    assert_eq!(store.inner().key_id(&d).await.unwrap(), None, "the default: not encrypted");
    // A keyring giving a wrong key: the read fails.
    let wrong = Encrypted::new(FsStore::open(dir.path()).unwrap(), Arc::new(WrongBlobKeys(keys.clone())));
    for _ in 0..2 {
        let e = match wrong.read(&d, 0, 10).await {
            Err(e) => e,
            Ok(_) => panic!("a read with the wrong key"),
        };
        assert!(matches!(e, StorageError::Integrity(_)), "{e}");
    }
    // A keyring without the key: `Key`.
    let none = Encrypted::new(FsStore::open(dir.path()).unwrap(), TestKeyring::new());
    let e = match none.read(&d, 0, 10).await {
        Err(e) => e,
        Ok(_) => panic!("a read without the key"),
    };
    assert!(matches!(e, StorageError::Key(_)), "{e}");
    // Upload areas of another id are under another key.
    assert_ne!(keys.upload_key("k2").0, want);
}

/// Blobs stored before encryption (written to the inner store directly) read as they are,
/// unless plaintext is refused.
#[tokio::test]
async fn legacy_plaintext_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let inner = FsStore::open(dir.path()).unwrap();
    let long = data(200_000, 10);
    let dl = put(&inner, "legacy", &long, 65536).await;
    let ds = put(&inner, "short", b"short legacy blob", 5).await;
    let keys = TestKeyring::new();
    let store = Encrypted::new(FsStore::open(dir.path()).unwrap(), keys.clone());
    assert_eq!(store.stat(&dl).await.unwrap(), Some(long.len() as u64));
    assert_eq!(store.stat(&ds).await.unwrap(), Some(17));
    assert!(read_all(store.read(&dl, 0, long.len() as u64).await).await.unwrap() == long);
    assert!(read_all(store.read(&dl, SEG - 3, 10).await).await.unwrap() == long[SEG as usize - 3..SEG as usize + 7]);
    assert_eq!(read_all(store.read(&ds, 6, 6).await).await.unwrap(), b"legacy");
    assert_eq!(store.key_id(&dl).await.unwrap(), None);
    // Encrypted blobs next to them.
    let enc = data(1000, 11);
    let de = put(&store, "new", &enc, 100).await;
    assert!(read_all(store.read(&de, 0, 1000).await).await.unwrap() == enc);
    let strict = Encrypted::new(FsStore::open(dir.path()).unwrap(), keys).with_plaintext(false);
    assert!(matches!(strict.stat(&dl).await, Err(StorageError::Integrity(_))));
    assert!(matches!(strict.read(&ds, 0, 1).await.err(), Some(StorageError::Integrity(_))));
    assert!(read_all(strict.read(&de, 0, 1000).await).await.unwrap() == enc);
    let listed = store.list_blobs(None, 10).await.unwrap();
    let size_of = |d: &Digest| listed.iter().find(|b| &b.digest == d).unwrap().size;
    assert_eq!(size_of(&dl), long.len() as u64);
    assert_eq!(size_of(&de), encrypted_size(1000), "listed sizes are stored sizes");
    assert_eq!(store.presign_get(&de, Duration::from_secs(60)).await.unwrap(), None);
}

/// Another node deletes a blob and commits it again from another upload (so under another
/// key): a node that cached its header still reads it.
#[tokio::test]
async fn stale_cached_headers_are_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let keys = TestKeyring::new();
    let a = Encrypted::new(FsStore::open(dir.path()).unwrap(), keys.clone());
    let b = Encrypted::new(FsStore::open(dir.path()).unwrap(), keys.clone());
    let bytes = data(70_000, 12);
    let d = put(&a, "first", &bytes, 9000).await;
    assert!(read_all(a.read(&d, 0, 70_000).await).await.unwrap() == bytes);
    assert_eq!(a.key_id(&d).await.unwrap(), Some(keys.upload_key("first").0));
    b.delete(&d).await.unwrap();
    assert_eq!(a.stat(&d).await.unwrap(), None);
    assert!(matches!(a.read(&d, 0, 1).await.err(), Some(StorageError::NotFound)));
    put(&b, "second", &bytes, 9000).await;
    assert!(read_all(a.read(&d, 0, 70_000).await).await.unwrap() == bytes);
    assert_eq!(a.key_id(&d).await.unwrap(), Some(keys.upload_key("second").0));
}

/// Writers racing from one state at an offset inside a segment (each reads the segment back
/// while the others may claim the area): each gets its bytes or `NotFound`, never another error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_unaligned_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(fs_store(dir.path()));
    let prefix = data(3 * SEG as usize + 5, 16);
    let at = prefix.len() as u64 - 2;
    for round in 0..30 {
        let id = format!("race-{round}");
        store.upload_create(&id).await.unwrap();
        let base = store.upload_append(&id, "", 0, body(&prefix, 50_000)).await.unwrap().state;
        let writers: Vec<_> = (0..3u64)
            .map(|w| {
                let (store, id, base) = (store.clone(), id.clone(), base.clone());
                tokio::spawn(async move {
                    let bytes = data(100_000, 100 * round + w);
                    let r = store.upload_append(&id, &base, at, body(&bytes, 30_000)).await;
                    (r, bytes)
                })
            })
            .collect();
        let mut won = 0;
        for w in writers {
            let (r, bytes) = w.await.unwrap();
            match r {
                Ok(a) => {
                    won += 1;
                    let mut want = prefix[..prefix.len() - 2].to_vec();
                    want.extend_from_slice(&bytes);
                    let got = read_all(store.upload_read(&id, &a.state, 0, want.len() as u64).await).await.unwrap();
                    assert!(got == want, "round {round}: a winner's bytes");
                }
                Err(StorageError::NotFound) => {}
                Err(e) => panic!("round {round}: a racing writer: {e}"),
            }
        }
        assert!(won >= 1, "round {round}");
        store.upload_abort(&id).await.unwrap();
    }
}

/// A failing body: the inner store's `Body` error, and the recorded state still reads.
#[tokio::test]
async fn failing_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let store = fs_store(dir.path());
    store.upload_create("f").await.unwrap();
    let first = data(70_000, 13);
    let a = store.upload_append("f", "", 0, body(&first, 4000)).await.unwrap();
    let mut chunks: Vec<io::Result<Bytes>> = vec![Ok(Bytes::from(data(100_000, 14)))];
    chunks.push(Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone")));
    let e = store.upload_append("f", &a.state, 70_000, Box::pin(futures::stream::iter(chunks))).await.unwrap_err();
    assert!(matches!(&e, StorageError::Body(e) if e.kind() == io::ErrorKind::ConnectionReset), "{e}");
    assert!(read_all(store.upload_read("f", &a.state, 0, 70_000).await).await.unwrap() == first);
}

/// Encrypt and decrypt 256 MiB in memory (segments straight from the sealer to the opener) and
/// print the throughput: `cargo test -p berth-storage --release -- --ignored --nocapture seal_open`.
#[tokio::test]
#[ignore]
async fn seal_open_throughput() {
    const TOTAL: usize = 256 * 1024 * 1024;
    const CHUNK: usize = 1024 * 1024;
    let keys = TestKeyring::new();
    let (key_id, key) = keys.upload_key("bench");
    let cipher = Arc::new(SegmentCipher::new(&key, &key_id));
    let chunk = Bytes::from(data(CHUNK, 15));
    let chunks = futures::stream::iter((0..TOTAL / CHUNK).map(move |_| Ok(chunk.clone())));
    let rng = SystemRandom::new();
    let sealer = Sealer {
        cipher: cipher.clone(),
        rng: rng.clone(),
        body: Box::pin(chunks),
        header: None,
        seg: 0,
        buf: new_segment(&rng).unwrap(),
        chunk: Bytes::new(),
        taken: Arc::new(AtomicU64::new(0)),
        done: false,
    };
    let started = std::time::Instant::now();
    let mut plain = Opener::new(cipher, sealer.stream(), 0, TOTAL as u64, 0, TOTAL as u64).stream();
    let mut n = 0;
    while let Some(c) = plain.next().await {
        n += c.unwrap().len();
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(n, TOTAL);
    println!("seal + open of {} MiB: {:.2} s, {:.0} MB/s", TOTAL >> 20, secs, TOTAL as f64 / secs / 1e6);
}
