//! One contract suite for every [`BlobStore`] (DESIGN.md): [`contract`] asserts what the trait's
//! documentation promises, nothing a single backend happens to do, and runs against
//! [`FsStore`](crate::fs::FsStore) in a temp dir and [`S3Store`](crate::s3::S3Store) on s3s-fs
//! (skipped or failing like the other S3 tests when s3s-fs is missing), each also under
//! [`Encrypted`](crate::encrypted::Encrypted).
//!
//! Sizes are chosen so that S3 also takes its multi-segment paths (appends past
//! [`MIN_PART`](crate::s3::MIN_PART), a rewind into a long segment, a commit assembled from
//! several segments, a failing body past [`PART_SIZE`](crate::s3::PART_SIZE)).

use crate::encrypted::tests::TestKeyring;
use crate::encrypted::{Encrypted, encrypted_size};
use crate::{BlobStore, ByteStream, EMPTY_AREA, Result, StorageError};
use berth_oci::{Algorithm, Digest};
use bytes::Bytes;
use futures::StreamExt;
use std::io;

const MIB: usize = 1024 * 1024;

fn digest_of(bytes: &[u8]) -> Digest {
    Digest::from_raw(Algorithm::Sha256, ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
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

/// A body delivering each of `parts` as one chunk (empty chunks included).
fn body(parts: &[&[u8]]) -> ByteStream {
    let chunks: Vec<io::Result<Bytes>> = parts.iter().map(|p| Ok(Bytes::copy_from_slice(p))).collect();
    Box::pin(futures::stream::iter(chunks))
}

/// A body delivering `parts`, then failing as a client that went away.
fn failing_body(parts: &[&[u8]]) -> ByteStream {
    let mut chunks: Vec<io::Result<Bytes>> = parts.iter().map(|p| Ok(Bytes::copy_from_slice(p))).collect();
    chunks.push(Err(io::Error::new(io::ErrorKind::ConnectionReset, "client went away")));
    Box::pin(futures::stream::iter(chunks))
}

/// The bytes of a read, or its first error, whether the call or the stream reports it.
async fn read_all(r: Result<ByteStream>) -> std::result::Result<Vec<u8>, String> {
    let mut s = r.map_err(|e| format!("call: {e}"))?;
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.extend_from_slice(&b.map_err(|e| format!("stream: {e}"))?);
    }
    Ok(out)
}

/// The error of a call returning a stream (the stream is not `Debug`).
fn err_of(r: Result<ByteStream>, what: &str) -> StorageError {
    match r {
        Ok(_) => panic!("{what}: expected an error, got a stream"),
        Err(e) => e,
    }
}

/// `got == want`, reporting lengths and the first difference rather than megabytes of bytes.
fn same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
        panic!("{what}: got {} bytes, want {}; first difference at byte {at}", got.len(), want.len());
    }
}

async fn sorted_list(store: &dyn BlobStore) -> Vec<String> {
    let mut ids = store.upload_list().await.unwrap();
    ids.sort();
    ids
}

/// An upload area as the caller records it: its id, its state and (the model) its bytes.
struct Rec {
    id: &'static str,
    state: String,
    model: Vec<u8>,
}

impl Rec {
    async fn create(store: &dyn BlobStore, id: &'static str) -> Rec {
        store.upload_create(id).await.unwrap_or_else(|e| panic!("upload_create({id}): {e}"));
        Rec { id, state: EMPTY_AREA.to_string(), model: Vec::new() }
    }

    /// Append `parts` as one body at `offset`: checks the count returned, and updates the
    /// record as the trait says: the new state, everything past `offset` gone, then the body.
    async fn append(&mut self, store: &dyn BlobStore, offset: usize, parts: &[&[u8]]) {
        let (id, n) = (self.id, parts.iter().map(|p| p.len()).sum::<usize>());
        let a = store
            .upload_append(id, &self.state, offset as u64, body(parts))
            .await
            .unwrap_or_else(|e| panic!("upload_append({id}, {offset}, {n} bytes): {e}"));
        assert_eq!(a.written, n as u64, "upload_append({id}, {offset}) returns the bytes written");
        self.state = a.state;
        self.model.truncate(offset);
        self.model.extend(parts.iter().flat_map(|p| p.iter().copied()));
    }

    /// Append at the end.
    async fn push(&mut self, store: &dyn BlobStore, parts: &[&[u8]]) {
        let off = self.model.len();
        self.append(store, off, parts).await;
    }

    fn len(&self) -> usize {
        self.model.len()
    }
}

/// The area holds exactly the record's bytes through its state: the whole, sub-ranges with
/// exact bytes, and nothing past its end.
async fn check_area(store: &dyn BlobStore, r: &Rec) {
    check_state(store, r.id, &r.state, &r.model).await
}

async fn check_state(store: &dyn BlobStore, id: &str, state: &str, model: &[u8]) {
    let len = model.len() as u64;
    let mut ranges = vec![(0, len), (0, 0), (len, 0)];
    if len > 0 {
        ranges.extend([(len - 1, 1), (len / 3, len / 3), (1, len - 1)]);
    }
    for (start, n) in ranges {
        let got = read_all(store.upload_read(id, state, start, n).await)
            .await
            .unwrap_or_else(|e| panic!("upload_read({id}, {start}, {n}) of a {len}-byte area: {e}"));
        same(&got, &model[start as usize..(start + n) as usize], &format!("upload_read({id}, {start}, {n})"));
    }
    for (start, n) in [(0, len + 1), (len, 1)] {
        let r = read_all(store.upload_read(id, state, start, n).await).await;
        assert!(r.is_err(), "upload_read({id}, {start}, {n}) of a {len}-byte area must fail, not yield bytes");
    }
}

/// Writers racing from one recorded state: whichever of them the caller records, reads and
/// commits through that state yield exactly that writer's bytes, never a loser's; a store may
/// refuse a writer whose state was superseded (`NotFound`).
async fn racing_writers(store: &dyn BlobStore) {
    for (round, (prefix_len, body_len)) in [(0, 100), (40, 60), (6 * MIB, 3000), (100, 6 * MIB)].into_iter().enumerate()
    {
        let id = ["race-0", "race-1", "race-2", "race-3"][round];
        let mut r = Rec::create(store, id).await;
        if prefix_len > 0 {
            r.push(store, &[&data(prefix_len, 20 + round as u64)]).await;
        }
        let base = r.state.clone();
        let off = r.len();
        let (x, y) = (data(body_len, 30 + round as u64), data(body_len, 40 + round as u64));
        // Sequential: X, then Y from the same (now superseded) state.
        let ax = store.upload_append(id, &base, off as u64, body(&[&x])).await.expect("first writer");
        let mut want_x = r.model.clone();
        want_x.extend_from_slice(&x);
        let mut want_y = r.model.clone();
        want_y.extend_from_slice(&y);
        match store.upload_append(id, &base, off as u64, body(&[&y])).await {
            Ok(ay) => {
                assert_ne!(ax.state, ay.state, "two appends never share a state");
                check_state(store, id, &ay.state, &want_y).await;
            }
            Err(StorageError::NotFound) => {}
            Err(e) => panic!("a writer from a superseded state: {e}"),
        }
        check_state(store, id, &ax.state, &want_x).await;
        // Concurrent: both from X's state, at its end.
        let (p, q) = (data(body_len, 50 + round as u64), data(body_len, 60 + round as u64));
        let end = want_x.len() as u64;
        let (rp, rq) = tokio::join!(
            store.upload_append(id, &ax.state, end, body(&[&p])),
            store.upload_append(id, &ax.state, end, body(&[&q]))
        );
        let mut winners = Vec::new();
        for (res, bytes) in [(rp, &p), (rq, &q)] {
            match res {
                Ok(a) => {
                    let mut want = want_x.clone();
                    want.extend_from_slice(bytes);
                    check_state(store, id, &a.state, &want).await;
                    winners.push((a.state, want));
                }
                Err(StorageError::NotFound) => {}
                Err(e) => panic!("a racing writer: {e}"),
            }
        }
        assert!(!winners.is_empty(), "one of two racing writers succeeds");
        // The caller records one of them (the last, say); its commit publishes its bytes.
        let (state, want) = winners.pop().unwrap();
        let d = digest_of(&want);
        store.upload_commit(id, &state, &d, want.len() as u64).await.unwrap();
        same(&read_all(store.read(&d, 0, want.len() as u64).await).await.unwrap(), &want, "the recorded writer's blob");
        store.delete(&d).await.unwrap();
        assert!(!sorted_list(store).await.contains(&id.to_string()), "commit removes losers' bytes too");
    }
}

/// The trait's contract, on an empty store. `stored_size` maps a blob's size (as `stat` says)
/// to the size `list_blobs` reports for it: what the store keeps for it.
pub(crate) async fn contract(store: &dyn BlobStore, stored_size: fn(u64) -> u64) {
    // Absent blobs and areas.
    let absent = digest_of(b"never stored");
    assert_eq!(store.stat(&absent).await.unwrap(), None, "stat of an absent blob");
    assert!(matches!(err_of(store.read(&absent, 0, 1).await, "read absent"), StorageError::NotFound));
    store.delete(&absent).await.expect("delete of an absent blob is Ok");
    store.upload_abort("never-created").await.expect("upload_abort of an absent area is Ok");
    assert!(sorted_list(store).await.is_empty(), "a new store lists no upload areas");

    // Area "a": appends of several chunks, ranged reads, a rewind, a commit of a prefix.
    let mut a = Rec::create(store, "a").await;
    check_area(store, &a).await;
    a.append(store, 0, &[b"hello", b"", b", ", &data(1000, 1)]).await;
    check_area(store, &a).await;
    assert_eq!(sorted_list(store).await, ["a"]);
    let big = data(6 * MIB, 2);
    let big_parts: Vec<&[u8]> = big.chunks(MIB).collect();
    a.push(store, &big_parts).await;
    a.push(store, &[&data(3000, 3)]).await;
    check_area(store, &a).await;
    // Back to an earlier offset: what was stored past it is gone (check_area reads one byte past).
    a.append(store, 5 * MIB + 17, &[&data(1500, 4), &data(500, 5)]).await;
    check_area(store, &a).await;
    // An empty body at an earlier offset writes nothing and still discards what follows.
    a.append(store, 5 * MIB + 10, &[]).await;
    check_area(store, &a).await;
    a.push(store, &[&data(2000, 16)]).await;
    check_area(store, &a).await;
    // An offset past what the area holds.
    let e = store.upload_append("a", &a.state, a.len() as u64 + 1, body(&[b"x"])).await.unwrap_err();
    assert!(matches!(e, StorageError::Inconsistent(_)), "upload_append past the area's end: {e}");
    check_area(store, &a).await;
    let e = store.upload_commit("a", &a.state, &absent, a.len() as u64 + 1).await.unwrap_err();
    assert!(matches!(e, StorageError::Inconsistent(_)), "upload_commit of more than the area holds: {e}");
    check_area(store, &a).await;
    let e = store.upload_append("a", "not a state", 0, body(&[b"x"])).await.unwrap_err();
    assert!(matches!(e, StorageError::Inconsistent(_)), "upload_append with a malformed state: {e}");
    check_area(store, &a).await;

    // Commit publishes exactly the first `size` bytes (fewer than the area holds).
    let size = a.len() - 7;
    let blob = &a.model[..size];
    let da = digest_of(blob);
    assert_eq!(store.stat(&da).await.unwrap(), None);
    store.upload_commit("a", &a.state, &da, size as u64).await.unwrap();
    assert_eq!(store.stat(&da).await.unwrap(), Some(size as u64), "stat after commit");
    let e = read_all(store.upload_read("a", &a.state, 0, 1).await).await.unwrap_err();
    assert!(e.contains("not found"), "the area is removed by commit: {e}");
    assert!(sorted_list(store).await.is_empty(), "a committed area is no longer listed");

    // Ranged reads of the blob, including a zero-length read at the end and the last byte.
    let n = size as u64;
    for (start, len) in [(0, n), (0, 0), (0, 1), (1, 10), (n - 1, 1), (n, 0), (MIB as u64 - 3, 2 * MIB as u64 + 5)] {
        let got = read_all(store.read(&da, start, len).await)
            .await
            .unwrap_or_else(|e| panic!("read({start}, {len}) of a {n}-byte blob: {e}"));
        same(&got, &blob[start as usize..(start + len) as usize], &format!("read({start}, {len})"));
    }
    for (start, len) in [(n - 1, 2), (n, 1)] {
        let r = read_all(store.read(&da, start, len).await).await;
        assert!(r.is_err(), "read({start}, {len}) of a {n}-byte blob must fail, not yield bytes");
    }

    // Area "b": small rewinds, an empty body, then put-if-absent.
    let mut b = Rec::create(store, "b").await;
    b.append(store, 0, &[&data(100, 6)]).await;
    b.append(store, 100, &[&data(50, 7)]).await;
    b.append(store, 30, &[&data(10, 8), &data(5, 9)]).await;
    check_area(store, &b).await;
    // An empty body writes nothing, and still discards what is stored past its offset.
    b.append(store, 45, &[]).await;
    check_area(store, &b).await;
    b.append(store, 20, &[b""]).await;
    check_area(store, &b).await;
    b.push(store, &[&data(80, 10)]).await;
    check_area(store, &b).await;
    let db = digest_of(&b.model);
    store.upload_commit("b", &b.state, &db, b.len() as u64).await.unwrap();
    assert_eq!(store.stat(&db).await.unwrap(), Some(b.len() as u64));
    // The same digest again (the caller verified it: same bytes, here with more stored past
    // `size`): the existing blob is kept and the area removed.
    let mut b2 = Rec::create(store, "b2").await;
    b2.push(store, &[&b.model, b"trailing bytes past size"]).await;
    assert_eq!(sorted_list(store).await, ["b2"]);
    store.upload_commit("b2", &b2.state, &db, b.len() as u64).await.unwrap();
    assert_eq!(store.stat(&db).await.unwrap(), Some(b.len() as u64), "the existing blob is kept");
    same(&read_all(store.read(&db, 0, b.len() as u64).await).await.unwrap(), &b.model, "the existing blob is kept");
    let e = read_all(store.upload_read("b2", &b2.state, 0, 1).await).await.unwrap_err();
    assert!(e.contains("not found"), "the area is removed by a put-if-absent commit: {e}");
    assert!(sorted_list(store).await.is_empty());

    // An empty blob.
    let e_area = Rec::create(store, "e").await;
    let de = digest_of(b"");
    store.upload_commit("e", &e_area.state, &de, 0).await.unwrap();
    assert_eq!(store.stat(&de).await.unwrap(), Some(0));
    assert_eq!(read_all(store.read(&de, 0, 0).await).await.unwrap(), b"");

    // upload_list lists the areas holding bytes (and may list empty ones); upload_abort
    // removes one (absent: Ok).
    let mut l = Vec::new();
    for id in ["l-1", "l-2", "l-3"] {
        let mut r = Rec::create(store, id).await;
        r.push(store, &[&data(300, 11)]).await;
        l.push(r);
    }
    assert_eq!(sorted_list(store).await, ["l-1", "l-2", "l-3"]);
    store.upload_abort("l-2").await.unwrap();
    assert_eq!(sorted_list(store).await, ["l-1", "l-3"]);
    store.upload_abort("l-2").await.expect("upload_abort of an aborted area is Ok");
    let e = read_all(store.upload_read("l-2", &l[1].state, 0, 1).await).await.unwrap_err();
    assert!(e.contains("not found"), "upload_read of an aborted area: {e}");
    let e = store.upload_commit("l-2", &l[1].state, &digest_of(&l[1].model), 300).await.unwrap_err();
    assert!(matches!(e, StorageError::NotFound), "upload_commit of an aborted area: {e}");
    store.upload_abort("l-1").await.unwrap();
    store.upload_abort("l-3").await.unwrap();
    assert!(sorted_list(store).await.is_empty());

    // A body failing midway: `Body`, and the area still holds the bytes recorded before that
    // append, through the recorded state (whatever the failed append stored is not named by it).
    let mut f = Rec::create(store, "f").await;
    f.push(store, &[&data(500, 12), &data(500, 13)]).await;
    let recorded = f.len();
    let junk = data(9 * MIB, 14);
    for parts in [vec![], vec![&junk[..10]], vec![&junk[..3 * MIB], &junk[3 * MIB..]]] {
        let e = store.upload_append("f", &f.state, recorded as u64, failing_body(&parts)).await.unwrap_err();
        assert!(matches!(e, StorageError::Body(_)), "a failing body after {} bytes: {e}", parts.concat().len());
        check_area(store, &f).await;
    }
    // The same at offsets below the recorded end (rewinds): the recorded bytes past the offset
    // are still there too.
    for at in [recorded - 1, recorded - 300, 0] {
        let e = store.upload_append("f", &f.state, at as u64, failing_body(&[&junk[..10]])).await.unwrap_err();
        assert!(matches!(e, StorageError::Body(_)), "a failing body at {at} of {recorded}: {e}");
        check_area(store, &f).await;
    }
    f.push(store, &[&data(70, 15)]).await;
    check_area(store, &f).await;
    let df = digest_of(&f.model);
    store.upload_commit("f", &f.state, &df, f.len() as u64).await.unwrap();
    same(&read_all(store.read(&df, 0, f.len() as u64).await).await.unwrap(), &f.model, "blob f");

    racing_writers(store).await;

    // delete: the blob is gone; deleting it again is Ok; other blobs stay.
    store.delete(&da).await.unwrap();
    assert_eq!(store.stat(&da).await.unwrap(), None, "stat after delete");
    assert!(matches!(err_of(store.read(&da, 0, 1).await, "read deleted"), StorageError::NotFound));
    store.delete(&da).await.expect("delete of a deleted blob is Ok");
    assert_eq!(store.stat(&db).await.unwrap(), Some(b.len() as u64), "delete removes only its blob");
    let _ = &e_area;
    assert!(sorted_list(store).await.is_empty());

    // list_blobs: every committed blob once, in digest order, with its size and a recent
    // modification time; pages continue after the last digest; deleted blobs are gone.
    let all = store.list_blobs(None, 1000).await.unwrap();
    let names: Vec<String> = all.iter().map(|b| b.digest.to_string()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "in order, once each");
    assert!(names.contains(&db.to_string()) && names.contains(&df.to_string()) && !names.contains(&da.to_string()));
    assert!(all.len() >= 3, "{names:?}");
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    for b in &all {
        let size = store.stat(&b.digest).await.unwrap().unwrap_or_else(|| panic!("{} is listed", b.digest));
        assert_eq!(stored_size(size), b.size, "stored size of {}", b.digest);
        assert!((now_ms - b.modified_ms).abs() < 3_600_000, "modified {} ms ago", now_ms - b.modified_ms);
    }
    let mut paged = Vec::new();
    let mut after: Option<Digest> = None;
    loop {
        let page = store.list_blobs(after.as_ref(), 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.digest.clone());
        paged.extend(page);
    }
    assert_eq!(paged, all, "pages of two add up to the whole listing");
}

#[tokio::test]
async fn fs_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::fs::FsStore::open(dir.path()).unwrap();
    contract(&store, |n| n).await;
}

#[tokio::test]
async fn s3_contract() {
    let Some(server) = crate::s3::tests::start_server() else { return };
    let store = crate::s3::tests::store(&server, "contract").await;
    contract(&store, |n| n).await;
}

#[tokio::test]
async fn encrypted_fs_contract() {
    let dir = tempfile::tempdir().unwrap();
    let inner = crate::fs::FsStore::open(dir.path()).unwrap();
    let store = Encrypted::new(inner, TestKeyring::new());
    contract(&store, encrypted_size).await;
}

#[tokio::test]
async fn encrypted_s3_contract() {
    let Some(server) = crate::s3::tests::start_server() else { return };
    let inner = crate::s3::tests::store(&server, "contract-encrypted").await;
    let store = Encrypted::new(inner, TestKeyring::new());
    contract(&store, encrypted_size).await;
}
