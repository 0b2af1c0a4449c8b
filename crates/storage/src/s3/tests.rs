//! [`S3Store`] against a real S3 server: `s3s-fs` (crates.io, `cargo install s3s-fs@0.14.1
//! --locked --features binary`), started per test on 127.0.0.1 with a temp dir. Found on PATH,
//! in `~/.cargo/bin`, or at `S3S_FS_BIN`. Without it the tests fail when `CI` is set and are
//! skipped (with a notice) otherwise.

use super::*;
use berth_oci::Algorithm;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

const MIB: usize = 1024 * 1024;
const ACCESS_KEY: &str = "berth-test";
const SECRET_KEY: &str = "berth-test-secret";

/// A running s3s-fs, killed on drop.
pub(crate) struct S3Server {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3s_fs_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("S3S_FS_BIN") {
        return Some(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join("s3s-fs")).find(|p| p.is_file())
}

/// Start s3s-fs; `None` (skip) when it is missing and `CI` is unset, panics when `CI` is set.
pub(crate) fn start_server() -> Option<S3Server> {
    let Some(bin) = s3s_fs_bin() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "s3s-fs not found (PATH, ~/.cargo/bin or S3S_FS_BIN): install it with \
             `cargo install s3s-fs@0.14.1 --locked --features binary` (scripts/install-test-deps.sh does)"
        );
        eprintln!("NOTICE: s3s-fs not found; skipping the S3 store test (install: scripts/install-test-deps.sh)");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(&bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", ACCESS_KEY])
        .args(["--secret-key", SECRET_KEY])
        .arg(dir.path())
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    let server = S3Server { child, endpoint: format!("http://127.0.0.1:{port}"), _dir: dir };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(server);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("s3s-fs did not listen on port {port}");
}

/// A store on bucket `berth-test` under `prefix` (created when missing).
pub(crate) async fn store(server: &S3Server, prefix: &str) -> S3Store {
    let cfg = S3Config {
        region: Some("us-east-1".into()),
        access_key_id: Some(ACCESS_KEY.into()),
        secret_access_key: Some(SECRET_KEY.into()),
        ..S3Config::from_url(&format!("s3://berth-test/{prefix}")).unwrap()
    }
    .with_endpoint(Some(server.endpoint.clone()));
    let s = S3Store::connect(&cfg).await.unwrap();
    s.ensure_bucket().await.unwrap();
    s
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

/// A body delivering `bytes` in pieces of `piece` bytes.
fn body(bytes: &[u8], piece: usize) -> ByteStream {
    let chunks: Vec<io::Result<Bytes>> = bytes.chunks(piece.max(1)).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    Box::pin(futures::stream::iter(chunks))
}

async fn collect(s: ByteStream) -> Vec<u8> {
    let mut s = s;
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.extend_from_slice(&b.unwrap());
    }
    out
}

fn digest_of(bytes: &[u8]) -> Digest {
    Digest::from_raw(Algorithm::Sha256, ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Every segment but the last covers at least MIN_PART bytes and at most the segment maximum.
fn check_invariant(s: &S3Store, state: &str, len: u64) {
    let area = Area::parse(state).unwrap();
    assert_eq!(area.end, len, "state {state}");
    for w in area.segs.windows(2) {
        let extent = w[1].start - w[0].start;
        assert!(extent >= MIN_PART, "segment at {} covers {extent} bytes: {state}", w[0].start);
        assert!(extent <= s.segment_max, "segment at {} covers {extent} bytes: {state}", w[0].start);
    }
    area.pieces(0, len).unwrap();
}

fn segments(state: &str) -> usize {
    Area::parse(state).unwrap().segs.len()
}

/// Append `chunks` in order (each one a request), checking the area after each. Returns the
/// bytes and the area's state.
async fn append_all(s: &S3Store, id: &str, chunks: &[&[u8]], piece: usize) -> (Vec<u8>, String) {
    let mut all = Vec::new();
    let mut state = String::new();
    for c in chunks {
        let a = s.upload_append(id, &state, all.len() as u64, body(c, piece)).await.unwrap();
        assert_eq!(a.written, c.len() as u64);
        state = a.state;
        all.extend_from_slice(c);
        check_invariant(s, &state, all.len() as u64);
    }
    (all, state)
}

async fn commit_and_verify(s: &S3Store, id: &str, state: &str, all: &[u8]) -> Digest {
    let d = digest_of(all);
    s.upload_commit(id, state, &d, all.len() as u64).await.unwrap();
    assert_eq!(s.stat(&d).await.unwrap(), Some(all.len() as u64));
    let got = collect(s.read(&d, 0, all.len() as u64).await.unwrap()).await;
    assert!(got == all, "committed blob differs from what was appended");
    assert!(!s.upload_list().await.unwrap().contains(&id.to_string()), "area removed after commit");
    d
}

macro_rules! server_or_skip {
    () => {
        match start_server() {
            Some(s) => s,
            None => return,
        }
    };
}

#[tokio::test]
async fn tiny_chunks() {
    let server = server_or_skip!();
    let s = store(&server, "tiny").await;
    s.upload_create("u1").await.unwrap();
    assert!(s.upload_list().await.unwrap().is_empty(), "upload_create writes nothing");
    let one: Vec<Vec<u8>> = (0..20).map(|i| vec![i as u8]).collect();
    let hundred: Vec<Vec<u8>> = (0..10).map(|i| data(100, i)).collect();
    let chunks: Vec<&[u8]> = one.iter().chain(hundred.iter()).map(Vec::as_slice).collect();
    let (all, state) = append_all(&s, "u1", &chunks, 7).await;
    assert_eq!(segments(&state), 1, "small appends fold into one segment");
    assert_eq!(collect(s.upload_read("u1", &state, 5, 30).await.unwrap()).await, &all[5..35]);
    commit_and_verify(&s, "u1", &state, &all).await;
}

#[tokio::test]
async fn chunks_around_part_boundaries() {
    let server = server_or_skip!();
    let s = store(&server, "bounds").await;
    s.upload_create("u").await.unwrap();
    let m = MIN_PART as usize;
    let parts = [data(m - 1, 1), data(1, 2), data(1, 3), data(m + 1, 4), data(PART_SIZE, 5), data(3, 6)];
    let chunks: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let (all, state) = append_all(&s, "u", &chunks, 64 * 1024).await;
    assert!(segments(&state) >= 2);
    // Reads across segment boundaries.
    for (start, len) in [(0, 10), (m as u64 - 2, 5), (m as u64 + 1, 2 * m as u64), (all.len() as u64 - 4, 4)] {
        let got = collect(s.upload_read("u", &state, start, len).await.unwrap()).await;
        assert!(got == all[start as usize..(start + len) as usize], "upload_read({start}, {len})");
    }
    let d = commit_and_verify(&s, "u", &state, &all).await;
    // Ranged reads of the committed blob.
    let got = collect(s.read(&d, m as u64 - 3, 7).await.unwrap()).await;
    assert_eq!(got, &all[m - 3..m + 4]);
    assert!(collect(s.read(&d, 5, 0).await.unwrap()).await.is_empty());
}

#[tokio::test]
async fn twenty_mib_in_uneven_chunks_with_segment_rollover() {
    let server = server_or_skip!();
    // 12 MiB segments: a 9 MiB request after 3 MiB rolls over into a second segment.
    let s = store(&server, "big").await.with_segment_max(12 * MIB as u64);
    s.upload_create("big").await.unwrap();
    let all = data(20 * MIB, 9);
    let cuts = [0, 3 * MIB, 3 * MIB + 7, 12 * MIB + 5, 12 * MIB + 1000, 20 * MIB];
    let chunks: Vec<&[u8]> = cuts.windows(2).map(|w| &all[w[0]..w[1]]).collect();
    let (got, state) = append_all(&s, "big", &chunks, 65_536 + 13).await;
    assert!(got == all);
    assert!(segments(&state) >= 2);
    let d = commit_and_verify(&s, "big", &state, &all).await;
    assert!(s.part_copy.load(std::sync::atomic::Ordering::Relaxed), "assembled with UploadPartCopy");
    let got = collect(s.read(&d, 11 * MIB as u64, 3 * MIB as u64).await.unwrap()).await;
    assert!(got == all[11 * MIB..14 * MIB]);
}

#[tokio::test]
async fn append_at_an_earlier_offset_discards_what_follows() {
    let server = server_or_skip!();
    let s = store(&server, "trunc").await;
    s.upload_create("t").await.unwrap();
    // Small: 100 bytes stored, the caller only keeps 50.
    let a = data(100, 1);
    let st = s.upload_append("t", "", 0, body(&a, 30)).await.unwrap().state;
    let b = data(20, 2);
    let ap = s.upload_append("t", &st, 50, body(&b, 30)).await.unwrap();
    assert_eq!(ap.written, 20);
    let mut want = a[..50].to_vec();
    want.extend_from_slice(&b);
    assert_eq!(collect(s.upload_read("t", &ap.state, 0, 70).await.unwrap()).await, want);
    // The earlier state still names its own bytes: appends never rewrite an object.
    assert_eq!(collect(s.upload_read("t", &st, 0, 100).await.unwrap()).await, a);

    // Large: a 7 MiB segment, then more past 6 MiB in it and in a later segment.
    s.upload_abort("t").await.unwrap();
    s.upload_create("t").await.unwrap();
    let big = data(7 * MIB, 3);
    let st = s.upload_append("t", "", 0, body(&big, MIB)).await.unwrap().state;
    let st = s.upload_append("t", &st, 7 * MIB as u64, body(&data(6 * MIB, 4), MIB)).await.unwrap().state;
    let tail = data(MIB + 17, 5);
    let st = s.upload_append("t", &st, 6 * MIB as u64, body(&tail, 4096)).await.unwrap().state;
    let mut want = big[..6 * MIB].to_vec();
    want.extend_from_slice(&tail);
    check_invariant(&s, &st, want.len() as u64);
    assert!(collect(s.upload_read("t", &st, 0, want.len() as u64).await.unwrap()).await == want);
    // Only the first `size` bytes are published, even with more stored.
    let d = digest_of(&want[..6 * MIB + 5]);
    s.upload_commit("t", &st, &d, 6 * MIB as u64 + 5).await.unwrap();
    assert!(collect(s.read(&d, 0, 6 * MIB as u64 + 5).await.unwrap()).await == want[..6 * MIB + 5]);

    // The area must hold the offset asked for.
    s.upload_create("short").await.unwrap();
    let st = s.upload_append("short", "", 0, body(b"abc", 1)).await.unwrap().state;
    assert!(matches!(s.upload_append("short", &st, 10, body(b"x", 1)).await, Err(StorageError::Inconsistent(_))));
    assert!(matches!(s.upload_commit("short", &st, &d, 10).await, Err(StorageError::Inconsistent(_))));
}

#[tokio::test]
async fn a_failing_body_leaves_the_recorded_bytes_intact() {
    let server = server_or_skip!();
    let s = store(&server, "fail").await;
    s.upload_create("f").await.unwrap();
    let a = data(1000, 1);
    let st = s.upload_append("f", "", 0, body(&a, 100)).await.unwrap().state;
    for size in [10, 9 * MIB] {
        let bad: ByteStream = Box::pin(futures::stream::iter(vec![
            Ok(Bytes::from(data(size, 2))),
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "client went away")),
        ]));
        assert!(matches!(s.upload_append("f", &st, 1000, bad).await, Err(StorageError::Body(_))));
        assert_eq!(collect(s.upload_read("f", &st, 0, 1000).await.unwrap()).await, a);
    }
    commit_and_verify(&s, "f", &st, &a).await;
}

#[tokio::test]
async fn commit_is_put_if_absent_and_handles_empty_blobs() {
    let server = server_or_skip!();
    let s = store(&server, "commit").await;
    let content = data(5000, 1);
    s.upload_create("a").await.unwrap();
    let st = s.upload_append("a", "", 0, body(&content, 999)).await.unwrap().state;
    let d = commit_and_verify(&s, "a", &st, &content).await;
    // Same digest again: the blob is kept, the area removed.
    s.upload_create("b").await.unwrap();
    let st = s.upload_append("b", "", 0, body(&content, 5000)).await.unwrap().state;
    s.upload_commit("b", &st, &d, 5000).await.unwrap();
    assert!(s.upload_list().await.unwrap().is_empty());
    assert_eq!(collect(s.read(&d, 0, 5000).await.unwrap()).await, content);
    // Empty blob.
    s.upload_create("e").await.unwrap();
    let ap = s.upload_append("e", "", 0, body(&[], 1)).await.unwrap();
    assert_eq!((ap.written, ap.state.as_str()), (0, ""));
    commit_and_verify(&s, "e", "", &[]).await;
    // Commit of an area whose segment is gone.
    s.delete(&d).await.unwrap();
    assert!(matches!(s.upload_commit("b", &st, &d, 1).await, Err(StorageError::NotFound)));
    // Delete.
    s.delete(&d).await.unwrap();
    assert_eq!(s.stat(&d).await.unwrap(), None);
    assert!(matches!(s.read(&d, 0, 10).await, Err(StorageError::NotFound)));
}

#[tokio::test]
async fn multi_segment_commit_streams_when_part_copy_is_unavailable() {
    let server = server_or_skip!();
    let s = store(&server, "stream").await;
    s.part_copy.store(false, std::sync::atomic::Ordering::Relaxed);
    s.upload_create("s").await.unwrap();
    let parts = [data(6 * MIB, 1), data(100, 2), data(6 * MIB, 3)];
    let chunks: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let (all, state) = append_all(&s, "s", &chunks, MIB).await;
    assert!(segments(&state) >= 2);
    commit_and_verify(&s, "s", &state, &all).await;
}

#[tokio::test]
async fn prefixes_needing_url_encoding_work() {
    let server = server_or_skip!();
    let s = store(&server, "odd prefix+=/é").await;
    s.upload_create("o").await.unwrap();
    let parts = [data(6 * MIB, 1), data(10, 2)];
    let chunks: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let (all, state) = append_all(&s, "o", &chunks, MIB).await;
    assert_eq!(segments(&state), 2);
    commit_and_verify(&s, "o", &state, &all).await;
    // Single segment: CopyObject.
    s.upload_create("q").await.unwrap();
    let (all, state) = append_all(&s, "q", &[b"short"], 2).await;
    commit_and_verify(&s, "q", &state, &all).await;
}

#[tokio::test]
async fn abort_list_and_unknown_areas() {
    let server = server_or_skip!();
    let s = store(&server, "list").await;
    let other = store(&server, "list-other").await;
    other.upload_create("elsewhere").await.unwrap();
    other.upload_append("elsewhere", "", 0, body(b"x", 1)).await.unwrap();
    assert!(s.upload_list().await.unwrap().is_empty());
    s.upload_create("a-1").await.unwrap();
    s.upload_append("a-1", "", 0, body(b"a", 1)).await.unwrap();
    s.upload_create("b-2").await.unwrap();
    let st = s.upload_append("b-2", "", 0, body(&data(6 * MIB, 1), MIB)).await.unwrap().state;
    let st = s.upload_append("b-2", &st, 6 * MIB as u64, body(b"tail", 2)).await.unwrap().state;
    let mut ids = s.upload_list().await.unwrap();
    ids.sort();
    assert_eq!(ids, ["a-1", "b-2"]);
    s.upload_abort("b-2").await.unwrap();
    s.upload_abort("b-2").await.unwrap();
    s.upload_abort("never").await.unwrap();
    assert_eq!(s.upload_list().await.unwrap(), ["a-1"]);
    let e = match s.upload_read("b-2", &st, 0, 1).await {
        Ok(r) => collect_err(r).await,
        Err(e) => e.to_string(),
    };
    assert!(e.contains("not found"), "{e}");
    assert!(s.upload_create("../x").await.is_err());
    assert!(matches!(s.upload_append("b-2", "garbage", 0, body(b"x", 1)).await, Err(StorageError::Inconsistent(_))));
    assert_eq!(other.upload_list().await.unwrap(), ["elsewhere"]);
    // s3s-fs does not list multipart uploads: nothing to do, and no error.
    assert_eq!(s.cleanup_stale(Duration::from_secs(0)).await.unwrap(), 0);
}

async fn collect_err(mut s: ByteStream) -> String {
    while let Some(b) = s.next().await {
        if let Err(e) = b {
            return e.to_string();
        }
    }
    "no error".into()
}

#[tokio::test]
async fn an_upload_continues_on_another_node() {
    let server = server_or_skip!();
    let a = store(&server, "shared").await;
    let b = store(&server, "shared").await;
    a.upload_create("x").await.unwrap();
    let parts = [data(3 * MIB, 1), data(3 * MIB, 2), data(10, 3), data(6 * MIB, 4)];
    let mut all = Vec::new();
    let mut state = String::new();
    for (i, p) in parts.iter().enumerate() {
        let node = if i % 2 == 0 { &a } else { &b };
        state = node.upload_append("x", &state, all.len() as u64, body(p, 100_000)).await.unwrap().state;
        all.extend_from_slice(p);
    }
    assert!(collect(a.upload_read("x", &state, 0, all.len() as u64).await.unwrap()).await == all);
    let d = commit_and_verify(&b, "x", &state, &all).await;
    assert_eq!(a.stat(&d).await.unwrap(), Some(all.len() as u64));
}

#[test]
fn area_states_parse_strictly() {
    let n = "0123456789abcdef0123456789abcdef";
    let ok = format!("100/0.{n},60.{n}");
    assert_eq!(Area::parse(&ok).unwrap().render(), ok);
    assert_eq!(Area::parse("").unwrap(), Area::default());
    for bad in [
        format!("100/5.{n}"),
        format!("100/0.{n},0.{n}"),
        format!("100/0.{n},100.{n}"),
        format!("x/0.{n}"),
        "100/0.xyz".to_string(),
        format!("100/0.{n},"),
        "100".to_string(),
    ] {
        assert!(matches!(Area::parse(&bad), Err(StorageError::Inconsistent(_))), "{bad}");
    }
    let a = Area::parse(&ok).unwrap();
    assert_eq!(a.cut(60).render(), format!("60/0.{n}"));
    assert_eq!(a.cut(0).render(), "");
    assert_eq!(a.pieces(50, 70).unwrap(), vec![(0, 50, 10), (1, 0, 10)]);
    assert!(a.pieces(0, 101).is_err());
}

#[test]
fn config_from_url() {
    let c = S3Config::from_url("s3://my-bucket/a/b/").unwrap();
    assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("my-bucket", "a/b"));
    assert!(!c.force_path_style);
    let c = S3Config::from_url("s3://my-bucket").unwrap().with_endpoint(Some("http://x".into()));
    assert_eq!(c.prefix, "");
    assert!(c.force_path_style);
    assert!(S3Config::from_url("http://b/p").is_err());
    assert!(S3Config::from_url("s3://B/p").is_err());
    assert!(S3Config::from_url("s3://bucket/a//b").is_err());
    let c = S3Config { secret_access_key: Some("hunter2".into()), ..Default::default() };
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[tokio::test]
async fn presigned_get_urls_serve_the_blob() {
    let server = server_or_skip!();
    let s = store(&server, "presign").await;
    s.upload_create("p").await.unwrap();
    let content = data(3000, 7);
    let st = s.upload_append("p", "", 0, body(&content, 1000)).await.unwrap().state;
    let d = commit_and_verify(&s, "p", &st, &content).await;
    let url = s.presign_get(&d, Duration::from_secs(300)).await.unwrap().expect("S3 presigns");
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 200, "GET {url}");
    assert!(r.bytes().await.unwrap() == content);
}

/// Blob objects are written with the configured storage class: s3s-fs refuses every class but
/// STANDARD and REDUCED_REDUNDANCY on `PutObject` (how an empty blob is written), which shows
/// the class is sent. Classes whose objects cannot be read back at once are refused up front.
#[tokio::test]
async fn blobs_are_written_with_the_storage_class() {
    let server = server_or_skip!();
    let with_class = |class: &str| {
        let mut cfg = S3Config {
            region: Some("us-east-1".into()),
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
            ..S3Config::from_url("s3://berth-test/classes").unwrap()
        }
        .with_endpoint(Some(server.endpoint.clone()));
        cfg.storage_class = Some(class.to_string());
        cfg
    };
    let empty: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse().unwrap();
    let rr = S3Store::connect(&with_class("REDUCED_REDUNDANCY")).await.unwrap();
    rr.ensure_bucket().await.unwrap();
    rr.upload_create("c1").await.unwrap();
    rr.upload_commit("c1", crate::EMPTY_AREA, &empty, 0).await.unwrap();
    assert_eq!(rr.stat(&empty).await.unwrap(), Some(0));
    rr.delete(&empty).await.unwrap();
    let ir = S3Store::connect(&with_class("GLACIER_IR")).await.unwrap();
    ir.upload_create("c2").await.unwrap();
    let err = ir.upload_commit("c2", crate::EMPTY_AREA, &empty, 0).await.unwrap_err();
    assert!(err.to_string().contains("InvalidStorageClass"), "{err}");
    for class in ["GLACIER", "DEEP_ARCHIVE", "glacier_ir"] {
        let err = S3Store::connect(&with_class(class)).await.unwrap_err();
        assert!(err.to_string().contains("is not supported"), "{class}: {err}");
    }
}
