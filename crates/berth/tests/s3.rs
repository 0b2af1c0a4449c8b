//! Behaviour specific to S3 storage. Runs when `BERTH_TEST_STORAGE=s3` (the distributed run of
//! `scripts/test`), and is skipped with a notice otherwise.

mod common;

use common::{Berth, sha256};

#[tokio::test]
async fn blob_gets_redirect_to_presigned_urls_when_configured() {
    if common::s3_storage().is_none() {
        eprintln!("NOTICE: BERTH_TEST_STORAGE is not s3; skipping");
        return;
    }
    let b = Berth::start_with_env(&[("BERTH_S3_REDIRECT", "1")]);
    let c = b.client_builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let blob = b"bytes served by the bucket".to_vec();
    let d = sha256(&blob);
    let r = c.post(format!("{}/v2/app/blobs/uploads/?digest={d}", b.url)).body(blob.clone()).send().await.unwrap();
    assert_eq!(r.status(), 201);

    // GET: 307 to a presigned URL that serves the bytes without the registry's credentials.
    let r = c.get(format!("{}/v2/app/blobs/{d}", b.url)).send().await.unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let direct = reqwest::get(&location).await.unwrap();
    assert_eq!(direct.status(), 200, "GET {location}");
    assert_eq!(direct.bytes().await.unwrap(), blob);

    // A client that follows redirects gets the blob.
    let r = b.client().get(format!("{}/v2/app/blobs/{d}", b.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), blob);

    // HEAD and ranged GETs are answered by the registry itself.
    let r = c.head(format!("{}/v2/app/blobs/{d}", b.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], blob.len().to_string().as_str());
    let r = c.get(format!("{}/v2/app/blobs/{d}", b.url)).header("range", "bytes=0-4").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), &blob[..5]);

    // Blobs the repository does not hold are not redirected.
    let r = c.get(format!("{}/v2/app/blobs/{}", b.url, sha256(b"absent"))).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = c.get(format!("{}/v2/other/blobs/{d}", b.url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

/// Two nodes sharing PostgreSQL and the bucket, nothing else: an upload begun on one continues
/// on the other, chunk by chunk, and the blob committed on one is served by the other.
#[tokio::test]
async fn an_upload_moves_between_nodes() {
    if common::s3_storage().is_none() || std::env::var("BERTH_TEST_BACKEND").ok().as_deref() != Some("postgres") {
        eprintln!("NOTICE: needs BERTH_TEST_STORAGE=s3 and BERTH_TEST_BACKEND=postgres; skipping");
        return;
    }
    let a = Berth::start();
    let b = a.separate_node();
    let (ca, cb) = (a.client(), b.client());
    // Chunks that straddle S3's 5 MiB part minimum, and tiny ones.
    let mut blob = Vec::new();
    for (i, n) in [3 << 20, 1, 3 << 20, 100, 6 << 20, 7].into_iter().enumerate() {
        blob.extend((0..n).map(|j: usize| (j.wrapping_mul(31) ^ i) as u8));
    }
    let d = sha256(&blob);
    let r = ca.post(format!("{}/v2/app/blobs/uploads/", a.url)).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let mut location = r.headers()["location"].to_str().unwrap().to_string();
    let cuts = [0, 3 << 20, (3 << 20) + 1, (6 << 20) + 1, (6 << 20) + 101, (12 << 20) + 101, blob.len()];
    for (i, w) in cuts.windows(2).enumerate() {
        let (node, c) = if i % 2 == 0 { (&b, &cb) } else { (&a, &ca) };
        let url = if location.starts_with('/') { format!("{}{location}", node.url) } else { location.clone() };
        let r = c
            .patch(url)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{}-{}", w[0], w[1] - 1))
            .body(blob[w[0]..w[1]].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "PATCH {i} on {}: {}", node.url, r.text().await.unwrap_or_default());
        assert_eq!(r.headers()["range"], format!("0-{}", w[1] - 1).as_str());
        location = r.headers()["location"].to_str().unwrap().to_string();
        if !location.starts_with('/') {
            location = location.split_once("/v2/").map(|(_, p)| format!("/v2/{p}")).unwrap();
        }
    }
    // Completed on the node that did not receive the last chunk (so it re-reads the area to hash).
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = cb.put(format!("{}{location}{sep}digest={d}", b.url)).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    for (node, c) in [(&a, &ca), (&b, &cb)] {
        let r = c.get(format!("{}/v2/app/blobs/{d}", node.url)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.bytes().await.unwrap() == blob, "blob served by {}", node.url);
    }
}
