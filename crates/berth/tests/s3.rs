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
