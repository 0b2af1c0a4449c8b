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
    let b = Berth::start_with_env(&[("BERTH_S3_REDIRECT", "1"), ("BERTH_ENCRYPT_AT_REST", "false")]);
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

/// Push through node A, pull through node B; then begin an upload on A, kill A (SIGKILL) in the
/// middle of it, and finish the upload, the push and the pull through B and a fresh node C.
#[tokio::test]
async fn push_on_one_node_pull_on_another_and_survive_a_killed_node() {
    if common::s3_storage().is_none() || std::env::var("BERTH_TEST_BACKEND").ok().as_deref() != Some("postgres") {
        eprintln!("NOTICE: needs BERTH_TEST_STORAGE=s3 and BERTH_TEST_BACKEND=postgres; skipping");
        return;
    }
    let mut a = Berth::start();
    let b = a.separate_node();
    let (ca, cb) = (a.client(), b.client());
    const MT: &str = "application/vnd.oci.image.manifest.v1+json";
    async fn monolithic(c: &reqwest::Client, base: &str, repo: &str, data: &[u8]) -> String {
        let d = sha256(data);
        let r = c.post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}")).body(data.to_vec()).send().await.unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        d
    }
    fn manifest(config: &str, config_len: usize, layer: &str, layer_len: usize) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": MT,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_len},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_len}],
        }))
        .unwrap()
    }

    // 1. A whole image pushed through A is pulled, byte for byte, through B.
    let (cfg, layer) = (b"{\"os\":\"linux\"}".to_vec(), vec![7u8; 300_000]);
    let (cd, ld) = (monolithic(&ca, &a.url, "app", &cfg).await, monolithic(&ca, &a.url, "app", &layer).await);
    let m = manifest(&cd, cfg.len(), &ld, layer.len());
    let r = ca.put(format!("{}/v2/app/manifests/v1", a.url)).header("content-type", MT).body(m.clone()).send().await;
    assert_eq!(r.unwrap().status(), 201);
    let r = cb.get(format!("{}/v2/app/manifests/v1", b.url)).header("accept", MT).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), m);
    for (d, bytes) in [(&cd, &cfg), (&ld, &layer)] {
        let r = cb.get(format!("{}/v2/app/blobs/{d}", b.url)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.bytes().await.unwrap() == *bytes);
    }

    // 2. An upload begun on A, which dies after its first chunk, is finished through B.
    let big: Vec<u8> = (0..(9usize << 20)).map(|i| (i.wrapping_mul(131) >> 3) as u8).collect();
    let cut = 6 << 20;
    let r = ca.post(format!("{}/v2/app/blobs/uploads/", a.url)).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let path = if location.starts_with('/') {
        location
    } else {
        location.split_once("/v2/").map(|(_, p)| format!("/v2/{p}")).unwrap()
    };
    let r = ca
        .patch(format!("{}{path}", a.url))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("0-{}", cut - 1))
        .body(big[..cut].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    a.kill9();
    // B reports the progress A made durable, takes the rest, and completes.
    let r = cb.get(format!("{}{path}", b.url)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], format!("0-{}", cut - 1).as_str());
    let r = cb
        .patch(format!("{}{path}", b.url))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("{cut}-{}", big.len() - 1))
        .body(big[cut..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
    let big_d = sha256(&big);
    let sep = if path.contains('?') { '&' } else { '?' };
    let r = cb.put(format!("{}{path}{sep}digest={big_d}", b.url)).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let m2 = manifest(&cd, cfg.len(), &big_d, big.len());
    let r = cb.put(format!("{}/v2/app/manifests/v2", b.url)).header("content-type", MT).body(m2.clone()).send().await;
    assert_eq!(r.unwrap().status(), 201);

    // 3. A fresh node serves all of it.
    let c_node = b.separate_node();
    let cc = c_node.client();
    let r = cc.get(format!("{}/v2/app/manifests/v2", c_node.url)).header("accept", MT).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap(), m2);
    let r = cc.get(format!("{}/v2/app/blobs/{big_d}", c_node.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap() == big, "the blob finished on B after A died");
    let r = cc.get(format!("{}/v2/app/tags/list", c_node.url)).send().await.unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["tags"], serde_json::json!(["v1", "v2"]));
}

/// A node's read caches follow other nodes' writes: a tag moved, or deleted, through node A is
/// seen through node B (which had the old manifest cached) within about a second.
#[tokio::test]
async fn tag_moves_on_one_node_are_seen_by_another() {
    if common::s3_storage().is_none() || std::env::var("BERTH_TEST_BACKEND").ok().as_deref() != Some("postgres") {
        eprintln!("NOTICE: needs BERTH_TEST_STORAGE=s3 and BERTH_TEST_BACKEND=postgres; skipping");
        return;
    }
    const MT: &str = "application/vnd.oci.image.manifest.v1+json";
    let a = Berth::start();
    let b = a.separate_node();
    let (ca, cb) = (a.client(), b.client());
    let cfg = b"{}".to_vec();
    let cd = sha256(&cfg);
    let r = ca.post(format!("{}/v2/app/blobs/uploads/?digest={cd}", a.url)).body(cfg).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let manifest = |n: u32| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": MT,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cd, "size": 2},
            "layers": [], "annotations": {"n": n.to_string()},
        }))
        .unwrap()
    };
    let put = |m: Vec<u8>| ca.put(format!("{}/v2/app/manifests/latest", a.url)).header("content-type", MT).body(m);
    let get = || cb.get(format!("{}/v2/app/manifests/latest", b.url)).header("accept", MT);
    assert_eq!(put(manifest(1)).send().await.unwrap().status(), 201);
    for _ in 0..3 {
        // B serves (and caches) the first manifest.
        let r = get().send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap(), manifest(1));
    }
    assert_eq!(put(manifest(2)).send().await.unwrap().status(), 201);
    let mut seen = false;
    for _ in 0..40 {
        if get().send().await.unwrap().bytes().await.unwrap() == manifest(2) {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen, "node B still serves the old manifest of a tag moved on node A after 4 s");
    let r = ca.delete(format!("{}/v2/app/manifests/{}", a.url, sha256(&manifest(2)))).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let mut gone = false;
    for _ in 0..40 {
        if get().send().await.unwrap().status() == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "node B still serves a manifest deleted on node A after 4 s");
}
