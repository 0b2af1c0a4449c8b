//! A full disk: a push that hits ENOSPC fails with 507 (OCI error body, `Retry-After`) and its
//! partial bytes are released at once; `/readyz` reports the full storage; pulls and cleanup keep
//! working; once space is freed, pushes succeed again without a restart. The data dir lives on a
//! small tmpfs mounted for the test (needs root, as CI runs).

mod common;

use common::{ACCESS_KEY_ID, ACCOUNT_ID, SECRET_ACCESS_KEY, basic_auth, sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_bytes(p: &Path) -> u64 {
    let out = Command::new("df").args(["--output=avail", "-B1"]).arg(p).output().unwrap();
    String::from_utf8(out.stdout).unwrap().lines().nth(1).unwrap().trim().parse().unwrap()
}

#[tokio::test]
async fn a_full_disk_is_reported_cleaned_up_and_survived() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=32m", "tmpfs"]).arg(&mnt).status();
    if !mounted.is_ok_and(|s| s.success()) {
        // SAFETY: getuid has no preconditions.
        assert_ne!(unsafe { libc::getuid() }, 0, "as root, mounting a tmpfs for the disk-full test must work");
        eprintln!("SKIP: mounting a tmpfs needs root");
        return;
    }
    let _mount = Mount(mnt.clone());
    let data = mnt.join("data");
    let env = [
        ("BERTH_ACCOUNT_ID", ACCOUNT_ID),
        ("BERTH_ROOT_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("BERTH_ROOT_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ("BERTH_CREATE_ON_PUSH", "true"),
        ("BERTH_MIN_FREE_MB", "2"),
    ];
    let (child, base) = common::spawn_plain(&data, &env);
    let _server = Server(child);
    let auth = basic_auth("AWS", &common::plain_login_password(&data, &env));
    let c = reqwest::Client::new();
    let repo = format!("{base}/v2/full/app");

    // An image that is there before the disk fills.
    let cfg = b"{\"before\":true}".to_vec();
    let d = sha256(&cfg);
    let r = c
        .post(format!("{repo}/blobs/uploads/?digest={d}"))
        .header("authorization", &auth)
        .body(cfg.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{d}","size":{}}},"layers":[]}}"#,
        cfg.len()
    );
    let r = c
        .put(format!("{repo}/manifests/v1"))
        .header("authorization", &auth)
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // A chunk larger than the disk: 507, the OCI body, Retry-After; its partial bytes released.
    let free_before = free_bytes(&mnt);
    let r = c.post(format!("{repo}/blobs/uploads/")).header("authorization", &auth).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let big_session = r.headers()["location"].to_str().unwrap().to_string();
    let url = |loc: &str| if loc.starts_with('/') { format!("{base}{loc}") } else { loc.to_string() };
    let r = c.patch(url(&big_session)).header("authorization", &auth).body(vec![7u8; 40 << 20]).send().await.unwrap();
    assert_eq!(r.status(), 507);
    assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("5"));
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["errors"][0]["code"], "UNAVAILABLE", "{e}");
    assert!(e["errors"][0]["message"].as_str().unwrap().contains("storage is full"), "{e}");
    let free_after = free_bytes(&mnt);
    assert!(free_after + (1 << 20) >= free_before, "partial bytes kept: {free_before} free before, {free_after} after");

    // A session with some bytes, then the disk fills up completely.
    let r = c.post(format!("{repo}/blobs/uploads/")).header("authorization", &auth).send().await.unwrap();
    let held = r.headers()["location"].to_str().unwrap().to_string();
    let r = c.patch(url(&held)).header("authorization", &auth).body(vec![1u8; 2 << 20]).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let filler = mnt.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 1 << 20];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.write_all(&chunk[..4096]);
    }
    let r = c.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await.unwrap(), "not ready: the storage is full\n");
    // Pulls keep working.
    let r = c
        .get(format!("{repo}/manifests/v1"))
        .header("authorization", &auth)
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (200, manifest.clone()));
    let r = c.get(format!("{repo}/blobs/{d}")).header("authorization", &auth).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.bytes().await.unwrap().to_vec()), (200, cfg.clone()));
    // A push fails cleanly.
    let blob = vec![3u8; 1 << 20];
    let r = c
        .post(format!("{repo}/blobs/uploads/?digest={}", sha256(&blob)))
        .header("authorization", &auth)
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 507, "{:?}", r.text().await);
    // Cleanup works on the full disk: the held session goes, its bytes with it.
    let r = c.delete(url(&held)).header("authorization", &auth).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = c.get(url(&held)).header("authorization", &auth).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // Space comes back: pushes work again, no restart.
    std::fs::remove_file(&filler).unwrap();
    let r = c.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{repo}/blobs/uploads/?digest={}", sha256(&blob)))
        .header("authorization", &auth)
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c.get(format!("{repo}/blobs/{}", sha256(&blob))).header("authorization", &auth).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().to_vec(), blob);
}
