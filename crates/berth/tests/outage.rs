//! The distributed configuration's database failing: with PostgreSQL stopped, `/readyz` answers
//! 503 at once and requests that need the database fail fast with 503 and `Retry-After` (never
//! hang for the outage); once it is back, everything works again without a restart and nothing
//! is lost. The test runs its own PostgreSQL (scripts/postgres.sh), so stopping it disturbs no
//! other test.

mod common;

use common::{ACCESS_KEY_ID, ACCOUNT_ID, SECRET_ACCESS_KEY, basic_auth, sha256};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn pg(cmd: &str, dir: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres.sh");
    let out = Command::new("bash").arg(script).arg(cmd).arg(dir).output().expect("run postgres.sh");
    assert!(out.status.success(), "postgres.sh {cmd}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

struct Pg(std::path::PathBuf);

impl Drop for Pg {
    fn drop(&mut self) {
        pg("stop", &self.0);
    }
}

#[tokio::test]
async fn a_database_outage_fails_fast_and_recovers() {
    if std::env::var("BERTH_TEST_POSTGRES_URL").is_err() {
        assert_ne!(std::env::var("BERTH_REQUIRE_POSTGRES").as_deref(), Ok("1"), "PostgreSQL is required");
        eprintln!("SKIP: no PostgreSQL (BERTH_TEST_POSTGRES_URL)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let pgdir = tmp.path().join("pg");
    let url = pg("start", &pgdir);
    let _pg = Pg(pgdir.clone());
    let data = tmp.path().join("data");
    let env = [
        ("BERTH_METADATA", url.as_str()),
        ("BERTH_ACCOUNT_ID", ACCOUNT_ID),
        ("BERTH_ROOT_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("BERTH_ROOT_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ("BERTH_CREATE_ON_PUSH", "true"),
    ];
    let (mut child, base) = common::spawn_plain(&data, &env);
    let auth = basic_auth("AWS", &common::plain_login_password(&data, &env));
    let c = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();

    let push = |tag: &'static str, cfg: Vec<u8>| {
        let (c, base, auth) = (c.clone(), base.clone(), auth.clone());
        async move {
            let d = sha256(&cfg);
            let r = c
                .post(format!("{base}/v2/outage/app/blobs/uploads/?digest={d}"))
                .header("authorization", &auth)
                .body(cfg.clone())
                .send()
                .await
                .unwrap();
            if r.status() != 201 {
                return r;
            }
            let manifest = format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{d}","size":{}}},"layers":[]}}"#,
                cfg.len()
            );
            c.put(format!("{base}/v2/outage/app/manifests/{tag}"))
                .header("authorization", &auth)
                .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                .body(manifest)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(push("before", b"{\"n\":1}".to_vec()).await.status(), 201);
    assert_eq!(c.get(format!("{base}/readyz")).send().await.unwrap().status(), 200);

    // The outage.
    pg("stop", &pgdir);
    let t = Instant::now();
    let r = c.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(t.elapsed() < Duration::from_secs(10), "readyz took {:?} during the outage", t.elapsed());
    let t = Instant::now();
    let r = push("during", b"{\"n\":2}".to_vec()).await;
    assert!(t.elapsed() < Duration::from_secs(20), "a push hung for {:?} during the outage", t.elapsed());
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("5"));
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["errors"][0]["code"], "UNAVAILABLE", "{e}");

    // Back: ready again without a restart, the data intact, pushes work.
    pg("resume", &pgdir);
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.get(format!("{base}/readyz")).send().await.unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "not ready again after the database came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = c
        .get(format!("{base}/v2/outage/app/manifests/before"))
        .header("authorization", &auth)
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(push("after", b"{\"n\":3}".to_vec()).await.status(), 201);
    let _ = child.kill();
    let _ = child.wait();
}
