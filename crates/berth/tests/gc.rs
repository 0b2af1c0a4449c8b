//! Online garbage collection end to end: real `berth serve` processes, `berth gc` run next to
//! them, images pushed and pulled through the OCI API. Blob files are checked on the filesystem
//! store (the S3 variant checks what the API serves).

mod common;

use common::{Berth, pull_intact, push, stored_blobs, upload};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap()
}

fn sha(data: &[u8]) -> String {
    common::sha256(data)
}

fn gc(b: &Berth, args: &[&str]) -> Value {
    let mut all = vec!["gc", "--output", "json"];
    all.extend_from_slice(args);
    let out = b.cli(&all);
    assert!(out.status.success(), "berth gc {args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("gc prints JSON ({e}): {out:?}"))
}

#[test]
fn deleted_images_give_their_blobs_back_and_shared_blobs_stay() {
    let rt = runtime();
    let b = Berth::start();
    let c = b.client();
    let base_layer = vec![1u8; 3000];
    let (u1, u2) = (vec![2u8; 1000], vec![3u8; 1100]);
    let (c1, c2, c3) = (br#"{"n":1}"#.to_vec(), br#"{"n":2}"#.to_vec(), br#"{"n":3}"#.to_vec());
    let d1 = rt.block_on(push(&c, &b.url, "gc/a", "v1", &c1, &[&base_layer, &u1])).unwrap();
    let d2 = rt.block_on(push(&c, &b.url, "gc/a", "v2", &c2, &[&base_layer, &u2])).unwrap();
    let d3 = rt.block_on(push(&c, &b.url, "gc/b", "v1", &c3, &[&base_layer])).unwrap();
    let r = rt.block_on(c.delete(format!("{}/v2/gc/a/manifests/{d1}", b.url)).send()).unwrap();
    assert_eq!(r.status().as_u16(), 202);

    // Under the default grace period (an hour) nothing is young enough to go.
    let out = gc(&b, &[]);
    assert_eq!((out["linksRemoved"].as_u64(), out["blobsDeleted"].as_u64()), (Some(0), Some(0)), "{out}");
    let dry = gc(&b, &["--dry-run", "--grace-period", "0"]);
    assert_eq!(
        dry,
        json!({"dryRun": true, "linksToRemove": 2, "blobsToDelete": 2, "bytesToDelete": c1.len() + u1.len()})
    );
    let out = gc(&b, &["--grace-period", "0"]);
    assert_eq!(
        (out["linksRemoved"].as_u64(), out["blobsDeleted"].as_u64(), out["bytesDeleted"].as_u64()),
        (Some(2), Some(2), Some((c1.len() + u1.len()) as u64)),
        "{out}"
    );
    if let Some(stored) = stored_blobs(&b.storage()) {
        let want: BTreeSet<String> = [&base_layer, &u2, &c2, &c3].iter().map(|x| sha(x)).collect();
        assert_eq!(stored, want, "exactly the blobs of the images left");
    }
    let r = rt.block_on(c.get(format!("{}/v2/gc/a/blobs/{}", b.url, sha(&u1))).send()).unwrap();
    assert_eq!(r.status().as_u16(), 404);
    rt.block_on(pull_intact(&c, &b.url, "gc/a", &d2));
    rt.block_on(pull_intact(&c, &b.url, "gc/b", &d3));
    // A second pass has nothing to do; the deleted image can be pushed again.
    let out = gc(&b, &["--grace-period", "0"]);
    assert_eq!((out["linksRemoved"].as_u64(), out["blobsDeleted"].as_u64()), (Some(0), Some(0)), "{out}");
    let again = rt.block_on(push(&c, &b.url, "gc/a", "v1", &c1, &[&base_layer, &u1])).unwrap();
    assert_eq!(again, d1);
    rt.block_on(pull_intact(&c, &b.url, "gc/a", "v1"));
    let out = b.cli(&["gc", "--grace-period", "1w"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the unit must be s, m, h or d"), "{out:?}");
    // A repository deleted with `force` gives back what only it held; BatchDeleteImage too.
    let ecr = |op: &str, body: Value| {
        let (status, v) =
            rt.block_on(common::ecr_call(&b, common::ACCESS_KEY_ID, common::SECRET_ACCESS_KEY, op, &body));
        assert_eq!(status, 200, "{op}: {v}");
    };
    ecr("DeleteRepository", json!({"repositoryName": "gc/a", "force": true}));
    let out = gc(&b, &["--grace-period", "0"]);
    assert_eq!(out["blobsDeleted"].as_u64(), Some(4), "c1, u1, c2, u2: {out}");
    rt.block_on(pull_intact(&c, &b.url, "gc/b", &d3));
    ecr("BatchDeleteImage", json!({"repositoryName": "gc/b", "imageIds": [{"imageTag": "v1"}]}));
    let out = gc(&b, &["--grace-period", "0"]);
    assert_eq!(out["blobsDeleted"].as_u64(), Some(2), "c3 and the base layer: {out}");
    if let Some(stored) = stored_blobs(&b.storage()) {
        assert!(stored.is_empty(), "{stored:?}");
    }
}

/// Pushes of images that share base layers, through two nodes, race with deletions, with
/// lifecycle runs (race/r1 keeps its 8 youngest images), with the nodes' periodic GC (every
/// second, grace 2 s) and with `berth gc` passes run next to them without any grace period (so
/// they also remove links that pushes in flight just made: such a push fails cleanly and is
/// retried, as a client would). Afterwards every image left pulls intact with its digests
/// verified, and once things are quiet a pass leaves exactly the blobs of the images left.
#[test]
fn pushes_racing_deletions_lifecycle_and_gc_lose_nothing() {
    let rt = runtime();
    let b = Berth::start_with_env(&[
        ("BERTH_GC_INTERVAL_SECS", "1"),
        ("BERTH_GC_GRACE_SECS", "2"),
        ("BERTH_LIFECYCLE_INTERVAL_SECS", "1"),
        ("BERTH_JOB_POLL_MS", "50"),
    ]);
    let b2 = b.another_node(&[]);
    let keep = 8;
    b.create_repo("race/r1", "MUTABLE");
    let policy = json!({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep}, "action": {"type": "expire"}}]});
    let (status, body) = rt.block_on(common::ecr_call(
        &b,
        common::ACCESS_KEY_ID,
        common::SECRET_ACCESS_KEY,
        "PutLifecyclePolicy",
        &json!({"repositoryName": "race/r1", "lifecyclePolicyText": policy.to_string()}),
    ));
    assert_eq!(status, 200, "{body}");
    let bases: Arc<Vec<Vec<u8>>> = Arc::new((0..3u8).map(|i| vec![100 + i; 2048]).collect());
    let failures = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // `berth gc` passes next to the servers' own (one at a time: each waits for the running
    // one), until the pushers are done.
    let gc_loop = {
        let stop = stop.clone();
        let mut cmd = b.cli_command(&["gc", "--grace-period", "0", "--output", "json"]);
        std::thread::spawn(move || {
            let (mut passes, mut deleted) = (0, 0);
            while !stop.load(Ordering::SeqCst) {
                let out = cmd.output().unwrap();
                assert!(out.status.success(), "{out:?}");
                let v: Value = serde_json::from_slice(&out.stdout).unwrap();
                deleted += v["blobsDeleted"].as_u64().unwrap();
                passes += 1;
                // A push fails when a pass without grace lands between its uploads and its
                // manifest: leave pushes room to get through between passes.
                std::thread::sleep(Duration::from_millis(300));
            }
            (passes, deleted)
        })
    };
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let base = if w < 2 { b.url.clone() } else { b2.url.clone() };
            let (c, bases, failures) = (b.client(), bases.clone(), failures.clone());
            rt.spawn(async move {
                let repo = format!("race/r{}", w % 2);
                let mut pushed: Vec<String> = Vec::new();
                for i in 0..25 {
                    let unique = format!("w{w}-i{i}").into_bytes().repeat(40);
                    let config = format!(r#"{{"w":{w},"i":{i}}}"#).into_bytes();
                    let base_layer = &bases[(w + i) % bases.len()];
                    let tag = format!("w{w}-{i}");
                    let mut result = Err(String::new());
                    for attempt in 0..20 {
                        result = push(&c, &base, &repo, &tag, &config, &[base_layer, &unique]).await;
                        if result.is_ok() {
                            break;
                        }
                        failures.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis((100 * (attempt as u64 + 1)).min(1000))).await;
                    }
                    let digest = result.unwrap_or_else(|e| panic!("push {repo}:{tag} failed 20 times: {e}"));
                    pushed.push(digest);
                    // Delete an older image half of the time (in race/r1, lifecycle may have
                    // expired it already).
                    if i % 2 == 1 {
                        let old = pushed.remove(0);
                        let r = c.delete(format!("{base}/v2/{repo}/manifests/{old}")).send().await.unwrap();
                        let s = r.status().as_u16();
                        assert!(s == 202 || (s == 404 && repo == "race/r1"), "DELETE {repo}@{old}: {s}");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (repo, pushed)
            })
        })
        .collect();
    let mut left: Vec<(String, String)> = Vec::new();
    for w in workers {
        let (repo, pushed) = rt.block_on(w).unwrap();
        left.extend(pushed.into_iter().map(|d| (repo.clone(), d)));
    }
    stop.store(true, Ordering::SeqCst);
    let (passes, deleted) = gc_loop.join().unwrap();
    assert!(passes >= 2, "the gc loop ran {passes} passes");
    assert!(deleted > 0, "the gc loop deleted blobs while pushes ran");
    // Quiet now: a lifecycle run leaves race/r1 its youngest images, then a pass with no grace
    // leaves exactly the blobs of the images left.
    let out = b.cli(&["lifecycle", "run"]);
    assert!(out.status.success(), "{out:?}");
    let c = b.client();
    let mut kept = Vec::new();
    let mut expired = 0;
    for (repo, d) in &left {
        let r = rt.block_on(c.head(format!("{}/v2/{repo}/manifests/{d}", b.url)).send()).unwrap();
        match r.status().as_u16() {
            200 => kept.push((repo.clone(), d.clone())),
            404 if repo == "race/r1" => expired += 1,
            s => panic!("HEAD {repo}@{d}: {s}"),
        }
    }
    let kept_r1 = kept.iter().filter(|(r, _)| r == "race/r1").count();
    assert_eq!(kept_r1, keep.min(left.iter().filter(|(r, _)| r == "race/r1").count()), "race/r1 keeps {keep}");
    assert!(expired > 0, "lifecycle expired images of race/r1");
    let mut referenced = BTreeSet::new();
    for (repo, d) in &kept {
        referenced.extend(rt.block_on(pull_intact(&c, &b2.url, repo, d)));
    }
    gc(&b, &["--grace-period", "0"]);
    if let Some(stored) = stored_blobs(&b.storage()) {
        assert_eq!(stored, referenced, "no unreferenced blob survives, none referenced is lost");
    }
    for (repo, d) in &kept {
        rt.block_on(pull_intact(&c, &b.url, repo, d));
    }
    eprintln!(
        "gc passes next to the servers: {passes}, blobs they deleted: {deleted}, pushes retried: {}, \
         expired by lifecycle: {expired}",
        failures.load(Ordering::SeqCst)
    );
}

/// Write `data` into the store as blob bytes that no metadata knows (what a crash between an
/// upload's write and its link leaves), as `hours_old` hours old where the store allows it (the
/// filesystem; S3 objects are always new). Returns the digest.
fn plant(b: &Berth, data: &[u8], hours_old: u32) -> String {
    let digest = sha(data);
    let hex = &digest["sha256:".len()..];
    let rel = format!("blobs/sha256/{}/{hex}", &hex[..2]);
    if let Some((_, url)) = b.extra_env.iter().find(|(k, _)| k == "BERTH_STORAGE") {
        // s3://bucket/prefix
        let (bucket, prefix) = url["s3://".len()..].split_once('/').unwrap();
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), data).unwrap();
        let env = |k: &str| std::env::var(k).unwrap();
        let out = std::process::Command::new("aws")
            .args(["s3api", "put-object", "--endpoint-url", &env("BERTH_S3_ENDPOINT"), "--bucket", bucket])
            .args(["--key", &format!("{prefix}/{rel}"), "--body"])
            .arg(tmp.path())
            .env("AWS_ACCESS_KEY_ID", env("BERTH_S3_ACCESS_KEY_ID"))
            .env("AWS_SECRET_ACCESS_KEY", env("BERTH_S3_SECRET_ACCESS_KEY"))
            .env("AWS_DEFAULT_REGION", env("BERTH_S3_REGION"))
            .output()
            .unwrap();
        assert!(out.status.success(), "aws s3api put-object: {out:?}");
    } else {
        let path = b.data_dir().join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        if hours_old > 0 {
            let out = std::process::Command::new("touch")
                .args(["-d", &format!("{hours_old} hours ago")])
                .arg(&path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
    }
    digest
}

/// A pass with `--sweep` lists the store and deletes bytes that no metadata knows once they are
/// older than the grace period; a pass without it, a dry run and younger bytes are left alone;
/// everything an image references stays.
#[test]
fn the_sweep_deletes_bytes_no_metadata_knows_after_the_grace_period() {
    let rt = runtime();
    let b = Berth::start();
    let c = b.client();
    let kept = rt.block_on(push(&c, &b.url, "sweep/k", "v1", br#"{"s":1}"#, &[&[9u8; 3000]])).unwrap();
    let on_fs = common::s3_storage().is_none();
    let old = plant(&b, b"crash leftover, two hours old", 2);
    let young = plant(&b, b"crash leftover, just written", 0);
    let out = gc(&b, &[]);
    assert_eq!((out["swept"].as_u64(), out["orphansDeleted"].as_u64()), (Some(0), Some(0)), "no sweep: {out}");
    let dry = gc(&b, &["--sweep", "--dry-run"]);
    assert_eq!(dry["swept"].as_u64(), Some(4), "config, layer and the two planted: {dry}");
    assert_eq!(dry["orphansToDelete"].as_u64(), Some(if on_fs { 1 } else { 0 }), "{dry}");
    let out = gc(&b, &["--sweep"]);
    assert_eq!(out["orphansDeleted"].as_u64(), Some(if on_fs { 1 } else { 0 }), "{out}");
    if let Some(stored) = stored_blobs(&b.storage()) {
        // (On S3 the planted bytes cannot be made old: both are young there.)
        assert!(stored.contains(&old) != on_fs && stored.contains(&young), "{stored:?}");
    }
    let out = gc(&b, &["--sweep", "--grace-period", "0"]);
    assert_eq!(out["orphansDeleted"].as_u64(), Some(if on_fs { 1 } else { 2 }), "{out}");
    let referenced: BTreeSet<String> = rt.block_on(pull_intact(&c, &b.url, "sweep/k", &kept)).into_iter().collect();
    if let Some(stored) = stored_blobs(&b.storage()) {
        assert_eq!(stored, referenced);
    }
    let dry = gc(&b, &["--sweep", "--dry-run", "--grace-period", "0"]);
    assert_eq!((dry["swept"].as_u64(), dry["orphansToDelete"].as_u64()), (Some(2), Some(0)), "{dry}");
}

/// Push an artifact (one layer, `payload`) whose subject is `subject` (a manifest digest, which
/// need not exist), by digest or under `tag`: its digest.
async fn push_referrer(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    subject: &str,
    payload: &[u8],
    tag: Option<&str>,
) -> String {
    let empty = upload(c, base, repo, b"{}").await.unwrap();
    let layer = upload(c, base, repo, payload).await.unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/vnd.example.signature", "digest": layer, "size": payload.len()}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": 100},
    }))
    .unwrap();
    let digest = sha(&manifest);
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/{}", tag.unwrap_or(&digest)))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap_or_default());
    digest
}

/// A pass deletes the untagged referrers whose subject is gone (and then the referrers of those),
/// once they were pushed a grace period ago, and then their blobs; a tagged referrer, one whose
/// subject is there, and a young one whose subject was never pushed stay.
#[test]
fn referrers_whose_subject_is_gone_are_deleted_with_their_blobs() {
    let rt = runtime();
    let b = Berth::start();
    let c = b.client();
    let base = &b.url;
    let repo = "gc/refs";
    let subject = rt.block_on(push(&c, base, repo, "v1", br#"{"subject":1}"#, &[&[1u8; 1000]])).unwrap();
    let kept = rt.block_on(push(&c, base, repo, "v2", br#"{"subject":2}"#, &[&[2u8; 1000]])).unwrap();
    let sig = rt.block_on(push_referrer(&c, base, repo, &subject, b"signature of v1", None));
    let sig_of_sig = rt.block_on(push_referrer(&c, base, repo, &sig, b"signature of the signature", None));
    let tagged = rt.block_on(push_referrer(&c, base, repo, &subject, b"tagged sbom of v1", Some("sbom")));
    let of_kept = rt.block_on(push_referrer(&c, base, repo, &kept, b"signature of v2", None));
    let r = rt.block_on(c.delete(format!("{base}/v2/{repo}/manifests/{subject}")).send()).unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let early = rt.block_on(push_referrer(&c, base, repo, &sha(b"not pushed yet"), b"pushed before its subject", None));
    // With the default grace (an hour), nothing is old enough.
    let out = gc(&b, &[]);
    assert_eq!(out["referrersDeleted"].as_u64(), Some(0), "{out}");
    // A grace shorter than the referrers' age: the two dangling ones go, in one pass.
    std::thread::sleep(Duration::from_millis(1500));
    let young = rt.block_on(push_referrer(&c, base, repo, &sha(b"not pushed either"), b"young", None));
    let out = gc(&b, &["--grace-period", "1s"]);
    assert_eq!(out["referrersDeleted"].as_u64(), Some(3), "sig, sig_of_sig and early: {out}");
    let status =
        |d: &str| rt.block_on(c.head(format!("{base}/v2/{repo}/manifests/{d}")).send()).unwrap().status().as_u16();
    for (what, d, want) in [
        ("sig", &sig, 404),
        ("sig of sig", &sig_of_sig, 404),
        ("early", &early, 404),
        ("tagged", &tagged, 200),
        ("of kept", &of_kept, 200),
        ("young", &young, 200),
        ("kept", &kept, 200),
    ] {
        assert_eq!(status(d), want, "{what}");
    }
    let r: Value = rt
        .block_on(rt.block_on(c.get(format!("{base}/v2/{repo}/referrers/{subject}")).send()).unwrap().json())
        .unwrap();
    let listed: Vec<&str> = r["manifests"].as_array().unwrap().iter().map(|m| m["digest"].as_str().unwrap()).collect();
    assert_eq!(listed, [tagged.as_str()], "{r}");
    // Their blobs go with the next pass without grace; what is left pulls.
    gc(&b, &["--grace-period", "0"]);
    let r = rt.block_on(c.get(format!("{base}/v2/{repo}/blobs/{}", sha(b"signature of v1"))).send()).unwrap();
    assert_eq!(r.status().as_u16(), 404);
    rt.block_on(pull_intact(&c, base, repo, &kept));
}

/// An upload of a digest whose deletion is in flight waits for it and then succeeds; one whose
/// deletion's process died (a tombstone older than twice the lease) finishes that deletion and
/// goes on at once. Tombstones are staged in the database, as a pass leaves them.
#[test]
fn uploads_wait_for_a_deletion_in_flight_and_finish_a_dead_ones() {
    let rt = runtime();
    let b = Berth::start_with_env(&[("BERTH_GC_LEASE_SECS", "3")]);
    let c = b.client();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let (live, dead) = (b"deleted by a live pass".to_vec(), b"deleted by a pass that died".to_vec());
    rt.block_on(common::raw_sql(
        &b,
        &format!(
            "INSERT INTO blob_holds (digest, holder, created_at) VALUES ('{}', 'gc', {now}), ('{}', 'gc', {})",
            sha(&live),
            sha(&dead),
            now - 60_000
        ),
    ));
    // The dead pass's deletion is finished by the upload: no wait.
    let t = std::time::Instant::now();
    assert_eq!(rt.block_on(upload(&c, &b.url, "gc/w", &dead)), Ok(sha(&dead)));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // The live one is waited for until its tombstone goes.
    let task = {
        let (c, base, data) = (c.clone(), b.url.clone(), live.clone());
        rt.spawn(async move {
            let t = std::time::Instant::now();
            (upload(&c, &base, "gc/w", &data).await, t.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(800));
    assert!(!task.is_finished(), "the upload waits while the tombstone stands");
    rt.block_on(common::raw_sql(&b, &format!("DELETE FROM blob_holds WHERE digest = '{}'", sha(&live))));
    let (result, took) = rt.block_on(task).unwrap();
    assert_eq!(result, Ok(sha(&live)));
    assert!(took >= Duration::from_millis(800), "{took:?}");
    for data in [&live, &dead] {
        let r = rt.block_on(c.get(format!("{}/v2/gc/w/blobs/{}", b.url, sha(data))).send()).unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(&rt.block_on(r.bytes()).unwrap()[..], &data[..]);
    }
}

/// One pass at a time across the cluster: `berth gc` waits (saying so) while another pass holds
/// the lease, and runs once it is released.
#[test]
fn berth_gc_waits_for_the_pass_that_holds_the_lease() {
    let b = Berth::start();
    let far =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 + 3_600_000;
    let rt = runtime();
    rt.block_on(common::raw_sql(
        &b,
        &format!(
            "INSERT INTO gc_pass (id, owner, started_at, expires_at) VALUES (1, 'node other', 1, {far}) \
             ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at"
        ),
    ));
    let mut child = b
        .cli_command(&["gc", "--grace-period", "0", "--output", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.try_wait().unwrap().is_none(), "berth gc waits while another pass holds the lease");
    rt.block_on(common::raw_sql(&b, "DELETE FROM gc_pass"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("gc: waiting for the pass that is running (node other) to end"), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dryRun"], json!(false), "{v}");
}

/// Upload `n` distinct unreferenced blobs into `repo` (monolithic POSTs, 8 at a time).
fn seed_unreferenced(rt: &tokio::runtime::Runtime, b: &Berth, repo: &str, n: usize) {
    use futures::StreamExt;
    let c = b.client();
    rt.block_on(async {
        let posts = futures::stream::iter(0..n).map(|i| {
            let (c, base) = (c.clone(), b.url.clone());
            async move {
                let data = format!("unreferenced-{i}").into_bytes().repeat(8);
                let r = c
                    .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={}", sha(&data)))
                    .header("content-type", "application/octet-stream")
                    .body(data)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 201);
            }
        });
        posts.buffer_unordered(8).collect::<Vec<()>>().await;
    });
}

/// `berth gc` killed with SIGKILL in the middle of a pass leaves a state the next pass
/// finishes once the dead pass's lease has run out twice: what it deleted is gone, what it did
/// not is deleted then, kept images pull intact.
#[test]
fn kill_9_during_gc_leaves_a_state_the_next_pass_finishes() {
    let rt = runtime();
    let b = Berth::start_with_env(&[("BERTH_GC_LEASE_SECS", "3")]);
    let c = b.client();
    let kept = rt.block_on(push(&c, &b.url, "gc/k", "v1", br#"{"k":1}"#, &[&[7u8; 4096]])).unwrap();
    // More than a deletion batch on the filesystem; on s3s-fs, whose uploads are slower,
    // enough for a pass that the kills land in.
    seed_unreferenced(&rt, &b, "gc/k", if common::s3_storage().is_some() { 600 } else { 3000 });
    for delay_ms in [30u64, 120, 400] {
        // A killed pass keeps the cluster's lease until it expires: the next one starts then.
        std::thread::sleep(Duration::from_millis(3200));
        let mut child = b.cli_command(&["gc", "--grace-period", "0"]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // Whatever the pass had done, the kept image is whole.
        rt.block_on(pull_intact(&c, &b.url, "gc/k", &kept));
    }
    // The last killed pass's tombstones are stale after twice the lease.
    std::thread::sleep(Duration::from_millis(6200));
    let out = gc(&b, &["--grace-period", "0"]);
    let out2 = gc(&b, &["--grace-period", "0"]);
    assert_eq!(out2["blobsDeleted"].as_u64(), Some(0), "the first full pass finished everything: {out} {out2}");
    let referenced: BTreeSet<String> = rt.block_on(pull_intact(&c, &b.url, "gc/k", &kept)).into_iter().collect();
    if let Some(stored) = stored_blobs(&b.storage()) {
        assert_eq!(stored, referenced);
    }
}

/// `berth lifecycle run` killed with SIGKILL mid-way leaves every image either expired or kept,
/// and the next run finishes: exactly the youngest images stay, each whole.
#[test]
fn kill_9_during_a_lifecycle_run_leaves_a_state_the_next_run_finishes() {
    let rt = runtime();
    let b = Berth::start();
    let c = b.client();
    let mut digests = Vec::new();
    for i in 0..300 {
        let d = rt
            .block_on(push(&c, &b.url, "lc/k", &format!("t{i}"), format!(r#"{{"i":{i}}}"#).as_bytes(), &[] as &[&[u8]]))
            .unwrap();
        digests.push(d);
    }
    let policy = json!({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 10}, "action": {"type": "expire"}}]});
    let (status, body) = rt.block_on(common::ecr_call(
        &b,
        common::ACCESS_KEY_ID,
        common::SECRET_ACCESS_KEY,
        "PutLifecyclePolicy",
        &json!({"repositoryName": "lc/k", "lifecyclePolicyText": policy.to_string()}),
    ));
    assert_eq!(status, 200, "{body}");
    let mut child = b.cli_command(&["lifecycle", "run"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let _ = child.kill();
    let _ = child.wait();
    let out = b.cli(&["lifecycle", "run"]);
    assert!(out.status.success(), "{out:?}");
    for (i, d) in digests.iter().enumerate() {
        let r = rt.block_on(c.get(format!("{}/v2/lc/k/manifests/{d}", b.url)).send()).unwrap();
        let want = if i >= 290 { 200 } else { 404 };
        assert_eq!(r.status().as_u16(), want, "image {i}");
    }
    for d in &digests[290..] {
        rt.block_on(pull_intact(&c, &b.url, "lc/k", d));
    }
}
