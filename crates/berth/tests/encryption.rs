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
        let bucket = Path::new(&root).join(rest.split('/').next().unwrap());
        assert!(bucket.is_dir(), "the bucket's directory {} exists", bucket.display());
        dirs.push(bucket);
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

async fn kms(b: &Berth, op: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    common::aws_json_call(
        b,
        common::ACCESS_KEY_ID,
        common::SECRET_ACCESS_KEY,
        "kms",
        &format!("TrentService.{op}"),
        &body,
    )
    .await
}

async fn ecr(b: &Berth, op: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    common::ecr_call(b, common::ACCESS_KEY_ID, common::SECRET_ACCESS_KEY, op, &body).await
}

/// Status of a manifest GET, a blob GET and an upload start on `repo`.
async fn serves(c: &reqwest::Client, base: &str, repo: &str, blob: &str) -> (u16, u16, u16) {
    let m = c
        .get(format!("{base}/v2/{repo}/manifests/v1"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    let g = c.get(format!("{base}/v2/{repo}/blobs/{blob}")).send().await.unwrap();
    let p = c.post(format!("{base}/v2/{repo}/blobs/uploads/")).send().await.unwrap();
    (m.status().as_u16(), g.status().as_u16(), p.status().as_u16())
}

/// Repositories under KMS keys: a customer key (by alias) and the AWS managed key `aws/ecr`
/// (made on first use). Their layers are encrypted at rest; a disabled key, or one pending
/// deletion, stops the repository (pulls and pushes refused with the key's KMS error), and
/// enabling it again restores it; a mount between repositories under different keys is refused
/// (the client uploads instead).
#[tokio::test]
async fn kms_repositories_follow_their_key() {
    let b = Berth::start();
    let c = b.client();
    let (s, key) = kms(&b, "CreateKey", serde_json::json!({"Description": "images"})).await;
    assert_eq!(s, 200, "{key}");
    let arn = key["KeyMetadata"]["Arn"].as_str().unwrap().to_string();
    let key_id = key["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
    let (s, v) = kms(&b, "CreateAlias", serde_json::json!({"AliasName": "alias/images", "TargetKeyId": key_id})).await;
    assert_eq!(s, 200, "{v}");
    // A repository names its key by alias; it stores (and shows) the key's ARN.
    let (s, v) = ecr(
        &b,
        "CreateRepository",
        serde_json::json!({"repositoryName": "enc/kms",
            "encryptionConfiguration": {"encryptionType": "KMS", "kmsKey": "alias/images"}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["repository"]["encryptionConfiguration"], serde_json::json!({"encryptionType": "KMS", "kmsKey": arn}));
    // Without a key: the AWS managed key aws/ecr, made now.
    let (s, v) = ecr(
        &b,
        "CreateRepository",
        serde_json::json!({"repositoryName": "enc/managed", "encryptionConfiguration": {"encryptionType": "KMS"}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let managed = v["repository"]["encryptionConfiguration"]["kmsKey"].as_str().unwrap().to_string();
    assert!(managed.starts_with("arn:aws:kms:us-east-1:"), "{managed}");
    let (_, aliases) = kms(&b, "ListAliases", serde_json::json!({})).await;
    let ecr_alias = aliases["Aliases"].as_array().unwrap().iter().find(|a| a["AliasName"] == "alias/aws/ecr").cloned();
    assert_eq!(
        ecr_alias.map(|a| a["TargetKeyId"].clone()),
        Some(serde_json::json!(managed.rsplit('/').next().unwrap()))
    );
    // A key that does not exist: KmsException, and no repository.
    let (s, v) = ecr(
        &b,
        "CreateRepository",
        serde_json::json!({"repositoryName": "enc/none",
            "encryptionConfiguration": {"encryptionType": "KMS", "kmsKey": "alias/nope"}}),
    )
    .await;
    assert_eq!(
        (s, v["__type"].as_str(), v["kmsError"].as_str()),
        (400, Some("KmsException"), Some("NotFoundException"))
    );
    // KMS_DSSE (dual-layer) is refused rather than claimed.
    let (s, v) = ecr(
        &b,
        "CreateRepository",
        serde_json::json!({"repositoryName": "enc/dsse", "encryptionConfiguration": {"encryptionType": "KMS_DSSE"}}),
    )
    .await;
    assert_eq!((s, v["__type"].as_str()), (400, Some("InvalidParameterException")), "{v}");

    let layer = data(2 * SEG + 99, 11);
    let config = data(300, 12);
    let d = sha256(&layer);
    for repo in ["enc/kms", "enc/managed"] {
        common::push(&c, &b.url, repo, "v1", &config, &[&layer]).await.unwrap();
        assert_eq!(get_range(&c, &b.url, repo, &d, None).await, layer);
        assert_eq!(get_range(&c, &b.url, repo, &d, Some((SEG - 3, SEG + 3))).await, &layer[SEG - 3..=SEG + 3]);
    }
    if let Some((f, at)) = leaked(&stored_dirs(&b), &[&layer, &config]) {
        panic!("{} holds plaintext at byte {at}", f.display());
    }
    // A mount from a repository under another key is refused: the client uploads.
    b.create_repo("enc/aes", "MUTABLE");
    let r = c.post(format!("{}/v2/enc/aes/blobs/uploads/?mount={d}&from=enc/kms", b.url)).send().await.unwrap();
    assert_eq!(r.status(), 202);
    common::upload(&c, &b.url, "enc/aes", &layer).await.unwrap();

    // Disabled key: the repository serves nothing and takes no pushes; the others are unaffected.
    assert_eq!(serves(&c, &b.url, "enc/kms", &d).await, (200, 200, 202));
    let (s, _) = kms(&b, "DisableKey", serde_json::json!({"KeyId": key_id})).await;
    assert_eq!(s, 200);
    assert_eq!(serves(&c, &b.url, "enc/kms", &d).await, (403, 403, 403));
    let r = c.get(format!("{}/v2/enc/kms/blobs/{d}", b.url)).send().await.unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");
    assert_eq!(body["errors"][0]["detail"]["kmsError"], "DisabledException", "{body}");
    assert_eq!(serves(&c, &b.url, "enc/managed", &d).await, (200, 200, 202));
    assert_eq!(get_range(&c, &b.url, "enc/aes", &d, None).await, layer);
    let (s, v) = ecr(&b, "InitiateLayerUpload", serde_json::json!({"repositoryName": "enc/kms"})).await;
    assert_eq!(
        (s, v["__type"].as_str(), v["kmsError"].as_str()),
        (400, Some("KmsException"), Some("DisabledException"))
    );
    let (s, v) =
        ecr(&b, "BatchGetImage", serde_json::json!({"repositoryName": "enc/kms", "imageIds": [{"imageTag": "v1"}]}))
            .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["images"], serde_json::json!([]), "{v}");
    assert_eq!(v["failures"][0]["failureCode"], "KmsError", "{v}");
    // Enabled again: served again.
    let (s, _) = kms(&b, "EnableKey", serde_json::json!({"KeyId": key_id})).await;
    assert_eq!(s, 200);
    assert_eq!(serves(&c, &b.url, "enc/kms", &d).await, (200, 200, 202));
    assert_eq!(get_range(&c, &b.url, "enc/kms", &d, None).await, layer);

    // Pending deletion stops it too (KMSInvalidStateException); cancelling leaves the key
    // disabled, as KMS does, until it is enabled.
    let (s, v) = kms(&b, "ScheduleKeyDeletion", serde_json::json!({"KeyId": key_id, "PendingWindowInDays": 7})).await;
    assert_eq!(s, 200, "{v}");
    let r = c.get(format!("{}/v2/enc/kms/blobs/{d}", b.url)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["detail"]["kmsError"], "KMSInvalidStateException", "{body}");
    kms(&b, "CancelKeyDeletion", serde_json::json!({"KeyId": key_id})).await;
    assert_eq!(serves(&c, &b.url, "enc/kms", &d).await.1, 403);
    kms(&b, "EnableKey", serde_json::json!({"KeyId": key_id})).await;
    assert_eq!(get_range(&c, &b.url, "enc/kms", &d, None).await, layer);

    // Rotation re-wraps the data keys under the new material: with the first material gone
    // (and the server restarted, so nothing is cached), the images still read back.
    let (s, v) = kms(&b, "RotateKeyOnDemand", serde_json::json!({"KeyId": key_id})).await;
    assert_eq!(s, 200, "{v}");
    common::raw_sql(&b, &format!("DELETE FROM kms_key_material WHERE key_id = '{key_id}' AND version = 1")).await;
    let mut b = b;
    b.restart_after_kill9();
    let c = b.client();
    assert_eq!(get_range(&c, &b.url, "enc/kms", &d, None).await, layer);
    assert_eq!(get_range(&c, &b.url, "enc/kms", &sha256(&config), None).await, config);
}
