//! One contract suite for every [`BlobStore`] (DESIGN.md): [`contract`] asserts what the trait's
//! documentation promises, nothing a single backend happens to do, and runs against
//! [`FsStore`](crate::fs::FsStore) in a temp dir and [`S3Store`](crate::s3::S3Store) on s3s-fs
//! (skipped or failing like the other S3 tests when s3s-fs is missing).
//!
//! Sizes are chosen so that S3 also takes its multi-segment paths (appends past
//! [`MIN_PART`](crate::s3::MIN_PART), a rewind into a long segment, a commit assembled from
//! several segments, a failing body past [`PART_SIZE`](crate::s3::PART_SIZE)).

use crate::{BlobStore, ByteStream, Result, StorageError};
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

/// Append `parts` as one body at `offset`: checks the count returned, and updates `model` (the
/// area's bytes) as the trait says: everything past `offset` is discarded, then the body follows.
async fn append(store: &dyn BlobStore, id: &str, model: &mut Vec<u8>, offset: usize, parts: &[&[u8]]) {
    let n: usize = parts.iter().map(|p| p.len()).sum();
    let written = store
        .upload_append(id, offset as u64, body(parts))
        .await
        .unwrap_or_else(|e| panic!("upload_append({id}, {offset}, {n} bytes): {e}"));
    assert_eq!(written, n as u64, "upload_append({id}, {offset}) returns the bytes written");
    model.truncate(offset);
    model.extend(parts.iter().flat_map(|p| p.iter().copied()));
}

/// The area holds exactly `model`: the whole, sub-ranges with exact bytes, and nothing past its end.
async fn check_area(store: &dyn BlobStore, id: &str, model: &[u8]) {
    let len = model.len() as u64;
    let mut ranges = vec![(0, len), (0, 0), (len, 0)];
    if len > 0 {
        ranges.extend([(len - 1, 1), (len / 3, len / 3), (1, len - 1)]);
    }
    for (start, n) in ranges {
        let got = read_all(store.upload_read(id, start, n).await)
            .await
            .unwrap_or_else(|e| panic!("upload_read({id}, {start}, {n}) of a {len}-byte area: {e}"));
        same(&got, &model[start as usize..(start + n) as usize], &format!("upload_read({id}, {start}, {n})"));
    }
    for (start, n) in [(0, len + 1), (len, 1)] {
        let r = read_all(store.upload_read(id, start, n).await).await;
        assert!(r.is_err(), "upload_read({id}, {start}, {n}) of a {len}-byte area must fail, not yield bytes");
    }
}

/// The trait's contract, on an empty store.
pub(crate) async fn contract(store: &dyn BlobStore) {
    // Absent blobs and areas.
    let absent = digest_of(b"never stored");
    assert_eq!(store.stat(&absent).await.unwrap(), None, "stat of an absent blob");
    assert!(matches!(err_of(store.read(&absent, 0, 1).await, "read absent"), StorageError::NotFound));
    store.delete(&absent).await.expect("delete of an absent blob is Ok");
    store.upload_abort("never-created").await.expect("upload_abort of an absent area is Ok");
    assert!(sorted_list(store).await.is_empty(), "a new store lists no upload areas");
    let e = err_of(store.upload_read("never-created", 0, 0).await, "upload_read absent");
    assert!(matches!(e, StorageError::NotFound), "upload_read of an absent area: {e}");
    let e = store.upload_append("never-created", 0, body(&[b"x"])).await.unwrap_err();
    assert!(matches!(e, StorageError::NotFound), "upload_append to an absent area: {e}");
    let e = store.upload_commit("never-created", &absent, 0).await.unwrap_err();
    assert!(matches!(e, StorageError::NotFound), "upload_commit of an absent area: {e}");

    // Area "a": appends of several chunks, ranged reads, a rewind, a commit of a prefix.
    store.upload_create("a").await.unwrap();
    assert_eq!(sorted_list(store).await, ["a"]);
    let mut a = Vec::new();
    check_area(store, "a", &a).await;
    append(store, "a", &mut a, 0, &[b"hello", b"", b", ", &data(1000, 1)]).await;
    check_area(store, "a", &a).await;
    let big = data(6 * MIB, 2);
    let big_parts: Vec<&[u8]> = big.chunks(MIB).collect();
    let off = a.len();
    append(store, "a", &mut a, off, &big_parts).await;
    let off = a.len();
    append(store, "a", &mut a, off, &[&data(3000, 3)]).await;
    check_area(store, "a", &a).await;
    // Back to an earlier offset: what was stored past it is gone (check_area reads one byte past).
    append(store, "a", &mut a, 5 * MIB + 17, &[&data(1500, 4), &data(500, 5)]).await;
    check_area(store, "a", &a).await;
    // An empty body at an earlier offset writes nothing and still discards what follows.
    append(store, "a", &mut a, 5 * MIB + 10, &[]).await;
    check_area(store, "a", &a).await;
    let off = a.len();
    append(store, "a", &mut a, off, &[&data(2000, 16)]).await;
    check_area(store, "a", &a).await;
    // An offset past what the area holds.
    let e = store.upload_append("a", a.len() as u64 + 1, body(&[b"x"])).await.unwrap_err();
    assert!(matches!(e, StorageError::Inconsistent(_)), "upload_append past the area's end: {e}");
    check_area(store, "a", &a).await;
    let e = store.upload_commit("a", &absent, a.len() as u64 + 1).await.unwrap_err();
    assert!(matches!(e, StorageError::Inconsistent(_)), "upload_commit of more than the area holds: {e}");
    check_area(store, "a", &a).await;

    // Commit publishes exactly the first `size` bytes (fewer than the area holds).
    let size = a.len() - 7;
    let blob = &a[..size];
    let da = digest_of(blob);
    assert_eq!(store.stat(&da).await.unwrap(), None);
    store.upload_commit("a", &da, size as u64).await.unwrap();
    assert_eq!(store.stat(&da).await.unwrap(), Some(size as u64), "stat after commit");
    let e = err_of(store.upload_read("a", 0, 0).await, "upload_read after commit");
    assert!(matches!(e, StorageError::NotFound), "the area is removed by commit: {e}");
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
    store.upload_create("b").await.unwrap();
    let mut b = Vec::new();
    append(store, "b", &mut b, 0, &[&data(100, 6)]).await;
    append(store, "b", &mut b, 100, &[&data(50, 7)]).await;
    append(store, "b", &mut b, 30, &[&data(10, 8), &data(5, 9)]).await;
    check_area(store, "b", &b).await;
    // An empty body writes nothing, and still discards what is stored past its offset.
    append(store, "b", &mut b, 45, &[]).await;
    check_area(store, "b", &b).await;
    append(store, "b", &mut b, 20, &[b""]).await;
    check_area(store, "b", &b).await;
    let off = b.len();
    append(store, "b", &mut b, off, &[&data(80, 10)]).await;
    check_area(store, "b", &b).await;
    let db = digest_of(&b);
    store.upload_commit("b", &db, b.len() as u64).await.unwrap();
    assert_eq!(store.stat(&db).await.unwrap(), Some(b.len() as u64));
    // The same digest again (the caller verified it: same bytes, here with more stored past
    // `size`): the existing blob is kept and the area removed.
    store.upload_create("b2").await.unwrap();
    let mut b2 = Vec::new();
    append(store, "b2", &mut b2, 0, &[&b, b"trailing bytes past size"]).await;
    assert_eq!(sorted_list(store).await, ["b2"]);
    store.upload_commit("b2", &db, b.len() as u64).await.unwrap();
    assert_eq!(store.stat(&db).await.unwrap(), Some(b.len() as u64), "the existing blob is kept");
    same(&read_all(store.read(&db, 0, b.len() as u64).await).await.unwrap(), &b, "the existing blob is kept");
    let e = err_of(store.upload_read("b2", 0, 0).await, "upload_read after put-if-absent commit");
    assert!(matches!(e, StorageError::NotFound), "the area is removed by a put-if-absent commit: {e}");
    assert!(sorted_list(store).await.is_empty());

    // An empty blob.
    store.upload_create("e").await.unwrap();
    let de = digest_of(b"");
    store.upload_commit("e", &de, 0).await.unwrap();
    assert_eq!(store.stat(&de).await.unwrap(), Some(0));
    assert_eq!(read_all(store.read(&de, 0, 0).await).await.unwrap(), b"");

    // upload_list lists exactly the live areas; upload_abort removes one (absent: Ok).
    for id in ["l-1", "l-2", "l-3"] {
        store.upload_create(id).await.unwrap();
    }
    let mut l2 = Vec::new();
    append(store, "l-2", &mut l2, 0, &[&data(300, 11)]).await;
    assert_eq!(sorted_list(store).await, ["l-1", "l-2", "l-3"]);
    store.upload_abort("l-2").await.unwrap();
    assert_eq!(sorted_list(store).await, ["l-1", "l-3"]);
    store.upload_abort("l-2").await.expect("upload_abort of an aborted area is Ok");
    let e = err_of(store.upload_read("l-2", 0, 0).await, "upload_read after abort");
    assert!(matches!(e, StorageError::NotFound), "upload_read of an aborted area: {e}");
    let e = store.upload_append("l-2", 0, body(&[b"x"])).await.unwrap_err();
    assert!(matches!(e, StorageError::NotFound), "upload_append to an aborted area: {e}");
    store.upload_abort("l-1").await.unwrap();
    store.upload_abort("l-3").await.unwrap();
    assert!(sorted_list(store).await.is_empty());

    // A body failing midway: `Body`, and the area still holds the bytes recorded before that
    // append (only those are read: whatever the failed append stored past them is not counted).
    store.upload_create("f").await.unwrap();
    let mut f = Vec::new();
    append(store, "f", &mut f, 0, &[&data(500, 12), &data(500, 13)]).await;
    let recorded = f.len();
    let junk = data(9 * MIB, 14);
    for parts in [vec![], vec![&junk[..10]], vec![&junk[..3 * MIB], &junk[3 * MIB..]]] {
        let e = store.upload_append("f", recorded as u64, failing_body(&parts)).await.unwrap_err();
        assert!(matches!(e, StorageError::Body(_)), "a failing body after {} bytes: {e}", parts.concat().len());
        let got = read_all(store.upload_read("f", 0, recorded as u64).await).await.unwrap();
        same(&got, &f, "the recorded bytes after a failing body");
    }
    // The next append at the recorded offset discards whatever the failed ones stored.
    append(store, "f", &mut f, recorded, &[&data(70, 15)]).await;
    check_area(store, "f", &f).await;
    let df = digest_of(&f);
    store.upload_commit("f", &df, f.len() as u64).await.unwrap();
    same(&read_all(store.read(&df, 0, f.len() as u64).await).await.unwrap(), &f, "blob f");

    // delete: the blob is gone; deleting it again is Ok; other blobs stay.
    store.delete(&da).await.unwrap();
    assert_eq!(store.stat(&da).await.unwrap(), None, "stat after delete");
    assert!(matches!(err_of(store.read(&da, 0, 1).await, "read deleted"), StorageError::NotFound));
    store.delete(&da).await.expect("delete of a deleted blob is Ok");
    assert_eq!(store.stat(&db).await.unwrap(), Some(b.len() as u64), "delete removes only its blob");
    assert!(sorted_list(store).await.is_empty());
}

#[tokio::test]
async fn fs_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::fs::FsStore::open(dir.path()).unwrap();
    contract(&store).await;
}

#[tokio::test]
async fn s3_contract() {
    let Some(server) = crate::s3::tests::start_server() else { return };
    let store = crate::s3::tests::store(&server, "contract").await;
    contract(&store).await;
}
