//! Encryption at rest (issue 13): after pushes, no file under the data dir (and no object in the
//! bucket, with `BERTH_TEST_STORAGE=s3`) holds any 48-byte slice of a pushed layer, and pulls
//! return the layers byte for byte, `Range` reads at segment boundaries included.

mod common;

use common::{Berth, sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Plaintext segment size of the encrypted format.
const SEG: usize = 64 * 1024;

/// Deterministic pseudo-random bytes (incompressible, never repeating a 24-byte window).
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Where the server's bytes are: its data dir, and the bucket's directory in s3s-fs.
fn stored_dirs(b: &Berth) -> Vec<PathBuf> {
    let mut dirs = vec![b.data_dir().to_path_buf()];
    let storage = b.storage();
    if let Some(rest) = storage.to_str().and_then(|s| s.strip_prefix("s3://")) {
        let root = std::env::var("BERTH_TEST_S3_DATA").expect("BERTH_TEST_S3_DATA names s3s-fs's data dir");
        dirs.push(Path::new(&root).join(rest.split('/').next().unwrap()));
    }
    dirs
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The first file holding a 48-byte slice of any of `secrets`, if one does. Any 48-byte slice
/// contains a whole 24-byte window starting at a multiple of 24, so looking for those finds it.
fn leaked(dirs: &[PathBuf], secrets: &[&[u8]]) -> Option<(PathBuf, usize)> {
    let windows: HashSet<&[u8]> = secrets.iter().flat_map(|s| s.chunks_exact(24)).collect();
    let mut all = Vec::new();
    for d in dirs {
        files(d, &mut all);
    }
    assert!(!all.is_empty());
    for f in all {
        let Ok(bytes) = std::fs::read(&f) else { continue };
        if let Some(at) = bytes.windows(24).position(|w| windows.contains(w)) {
            return Some((f, at));
        }
    }
    None
}

/// Upload `parts` as one chunked upload (PATCH each), then commit.
async fn chunked(c: &reqwest::Client, base: &str, repo: &str, parts: &[&[u8]]) -> String {
    let whole: Vec<u8> = parts.concat();
    let digest = sha256(&whole);
    let r = c.post(format!("{base}/v2/{repo}/blobs/uploads/")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let mut loc = r.headers()["location"].to_str().unwrap().to_string();
    let mut at = 0;
    for p in parts {
        let url = if loc.starts_with('/') { format!("{base}{loc}") } else { loc.clone() };
        let r = c
            .patch(url)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{}-{}", at, at + p.len() - 1))
            .body(p.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        loc = r.headers()["location"].to_str().unwrap().to_string();
        at += p.len();
    }
    let url = if loc.starts_with('/') { format!("{base}{loc}") } else { loc };
    let sep = if url.contains('?') { '&' } else { '?' };
    let r = c.put(format!("{url}{sep}digest={digest}")).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    digest
}

async fn get_range(c: &reqwest::Client, base: &str, repo: &str, d: &str, range: Option<(usize, usize)>) -> Vec<u8> {
    let mut req = c.get(format!("{base}/v2/{repo}/blobs/{d}"));
    if let Some((a, z)) = range {
        req = req.header("range", format!("bytes={a}-{z}"));
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), if range.is_some() { 206 } else { 200 });
    r.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn layers_are_encrypted_at_rest_and_read_back_exactly() {
    let b = Berth::start();
    b.create_repo("enc/aes", "MUTABLE");
    let c = b.client();
    // A monolithic layer of a few segments, and a chunked one whose chunks end mid-segment.
    let mono = data(3 * SEG + 1234, 1);
    let parts = [data(1, 2), data(SEG - 1, 3), data(SEG + 1, 4), data(3, 5), data(2 * SEG + 77, 6)];
    let chunked_bytes: Vec<u8> = parts.concat();
    let config = data(500, 7);
    common::push(&c, &b.url, "enc/aes", "v1", &config, &[&mono]).await.unwrap();
    let part_refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    let d2 = chunked(&c, &b.url, "enc/aes", &part_refs).await;
    assert_eq!(d2, sha256(&chunked_bytes));

    // Pulls: whole, and ranges at and around the segment boundaries.
    let d1 = sha256(&mono);
    assert_eq!(get_range(&c, &b.url, "enc/aes", &d1, None).await, mono);
    assert_eq!(get_range(&c, &b.url, "enc/aes", &d2, None).await, chunked_bytes);
    for (a, z) in [
        (0, 0),
        (0, SEG - 1),
        (SEG - 1, SEG),
        (SEG, SEG),
        (SEG + 1, 2 * SEG + 1),
        (2 * SEG - 5, 3 * SEG + 5),
        (mono.len() - 1, mono.len() - 1),
    ] {
        assert_eq!(get_range(&c, &b.url, "enc/aes", &d1, Some((a, z))).await, &mono[a..=z], "range {a}-{z}");
        assert_eq!(get_range(&c, &b.url, "enc/aes", &d2, Some((a, z))).await, &chunked_bytes[a..=z], "range {a}-{z}");
    }
    // HEAD reports the plaintext size.
    let r = c.head(format!("{}/v2/enc/aes/blobs/{d1}", b.url)).send().await.unwrap();
    assert_eq!(r.headers()["content-length"], mono.len().to_string().as_str());

    // The same layer pushed to a second repository (a full upload, then a mount) reads back too.
    b.create_repo("enc/other", "MUTABLE");
    common::upload(&c, &b.url, "enc/other", &mono).await.unwrap();
    assert_eq!(get_range(&c, &b.url, "enc/other", &d1, None).await, mono);
    b.create_repo("enc/third", "MUTABLE");
    let r = c.post(format!("{}/v2/enc/third/blobs/uploads/?mount={d2}&from=enc/aes", b.url)).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(get_range(&c, &b.url, "enc/third", &d2, None).await, chunked_bytes);

    // Nothing stored holds a 48-byte slice of the layers or the config.
    if let Some((f, at)) = leaked(&stored_dirs(&b), &[&mono, &chunked_bytes, &config]) {
        panic!("{} holds plaintext at byte {at}", f.display());
    }
}
