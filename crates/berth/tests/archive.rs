//! The archive store end to end (`archive_storage`): archiving an image moves the bytes only
//! archived images reference to the archive store (shared ones stay), pulls keep being refused,
//! a restore brings the bytes back before the image is ACTIVE and the image pulls with the same
//! digests; a push that shares an archived blob brings it back; garbage collection deletes from
//! both stores. Blob files are checked on the filesystem (the S3 variant checks what the API
//! serves), and the settings are refused when Berth could not honour them.

mod common;

use common::{Berth, pull_intact, push, stored_blobs};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn sha(data: &[u8]) -> String {
    common::sha256(data)
}

/// A server with an archive store: a directory, or with `BERTH_TEST_STORAGE=s3` another bucket
/// (written with a storage class s3s-fs accepts). Returns the server, the archive location and
/// the directory to keep.
fn start_with_archive() -> (Berth, std::path::PathBuf, Option<tempfile::TempDir>) {
    let dir = tempfile::tempdir().unwrap();
    let (location, class) = match common::s3_storage() {
        Some(url) => (url, "REDUCED_REDUNDANCY"),
        None => (dir.path().display().to_string(), ""),
    };
    let mut env = vec![("BERTH_JOB_POLL_MS", "50"), ("BERTH_ARCHIVE_STORAGE", location.as_str())];
    if !class.is_empty() {
        env.push(("BERTH_ARCHIVE_S3_STORAGE_CLASS", class));
    }
    (Berth::start_with_env(&env), location.into(), Some(dir))
}

fn ecr(rt: &tokio::runtime::Runtime, b: &Berth, op: &str, body: Value) -> Value {
    let (status, v) = rt.block_on(common::ecr_call(b, common::ACCESS_KEY_ID, common::SECRET_ACCESS_KEY, op, &body));
    assert_eq!(status, 200, "{op}: {v}");
    v
}

fn storage_class(rt: &tokio::runtime::Runtime, b: &Berth, repo: &str, digest: &str, target: &str) -> Value {
    ecr(
        rt,
        b,
        "UpdateImageStorageClass",
        json!({"repositoryName": repo, "imageId": {"imageDigest": digest}, "targetStorageClass": target}),
    )
}

fn image_status(rt: &tokio::runtime::Runtime, b: &Berth, repo: &str, digest: &str) -> String {
    let v = ecr(
        rt,
        b,
        "DescribeImages",
        json!({"repositoryName": repo, "imageIds": [{"imageDigest": digest}], "filter": {"imageStatus": "ANY"}}),
    );
    v["imageDetails"][0]["imageStatus"].as_str().unwrap().to_string()
}

/// Wait (bounded) until `check` holds.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "still not true after 30 s: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn set(items: &[&[u8]]) -> BTreeSet<String> {
    items.iter().map(|x| sha(x)).collect()
}

fn gc(b: &Berth, extra: &[&str]) -> Value {
    let mut args = vec!["gc", "--output", "json", "--grace-period", "0"];
    args.extend_from_slice(extra);
    let out = b.cli(&args);
    assert!(out.status.success(), "berth gc: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn archived_bytes_move_to_the_archive_store_and_back_and_shared_ones_stay() {
    let rt = runtime();
    let (b, archive, _dir) = start_with_archive();
    let archived = || stored_blobs(&archive);
    let standard = || stored_blobs(&b.storage());
    // Where the bytes are can be seen on the filesystem, and on s3s-fs through its data dir.
    let observable = archived().is_some() && standard().is_some();
    let c = b.client();
    let base = vec![1u8; 4000];
    let (ua, ub) = (vec![2u8; 3000], vec![3u8; 2000]);
    let (ca, cb) = (br#"{"img":"a"}"#.to_vec(), br#"{"img":"b"}"#.to_vec());
    let da = rt.block_on(push(&c, &b.url, "arc/app", "a", &ca, &[&base, &ua])).unwrap();
    let db = rt.block_on(push(&c, &b.url, "arc/app", "b", &cb, &[&base, &ub])).unwrap();

    let v = storage_class(&rt, &b, "arc/app", &da, "ARCHIVE");
    assert_eq!(v["imageStatus"], "ARCHIVED", "{v}");
    if observable {
        // Only what image a alone references moves; the shared base layer stays.
        // (The move copies, switches the location, then deletes the standard copy.)
        eventually("a's own blobs are in the archive store, and only there", || {
            archived() == Some(set(&[&ca, &ua])) && standard() == Some(set(&[&base, &cb, &ub]))
        });
    } else {
        std::thread::sleep(Duration::from_secs(2));
    }
    // Still refused as a pull; its blobs (which other manifests could list) read from the archive.
    let r = rt.block_on(c.get(format!("{}/v2/arc/app/manifests/a", b.url)).send()).unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = rt.block_on(c.get(format!("{}/v2/arc/app/blobs/{}", b.url, sha(&ua))).send()).unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(sha(&rt.block_on(r.bytes()).unwrap()), sha(&ua));
    rt.block_on(pull_intact(&c, &b.url, "arc/app", &db));

    // Restore: the bytes come back before the image is ACTIVE, and it pulls with its digests.
    let v = storage_class(&rt, &b, "arc/app", &da, "STANDARD");
    assert_eq!(v["imageStatus"], "ACTIVATING", "{v}");
    eventually("a is ACTIVE again", || image_status(&rt, &b, "arc/app", &da) == "ACTIVE");
    if observable {
        assert_eq!(archived(), Some(BTreeSet::new()), "the archive copies go once the bytes are back");
        assert_eq!(standard(), Some(set(&[&base, &ca, &ua, &cb, &ub])));
    }
    let got = rt.block_on(pull_intact(&c, &b.url, "arc/app", "a"));
    assert_eq!(got, vec![sha(&ca), sha(&base), sha(&ua)]);

    // Archived again, then another repository pushes an image with a's layer: the upload puts
    // the layer back in standard storage at once (and its push then pulls).
    storage_class(&rt, &b, "arc/app", &da, "ARCHIVE");
    if observable {
        eventually("a's own blobs are archived again", || {
            archived() == Some(set(&[&ca, &ua])) && standard() == Some(set(&[&base, &cb, &ub]))
        });
    }
    let dc = rt.block_on(push(&c, &b.url, "arc/other", "c", br#"{"img":"c"}"#, &[&ua])).unwrap();
    rt.block_on(pull_intact(&c, &b.url, "arc/other", &dc));
    if let Some(s) = standard() {
        assert!(s.contains(&sha(&ua)), "{s:?}");
    }
    // A push that only references the archived blob (mounted, not uploaded) brings it back too.
    let dd = rt.block_on(push(&c, &b.url, "arc/app", "d", br#"{"img":"d"}"#, &[&base])).unwrap();
    let r = rt
        .block_on(c.post(format!("{}/v2/arc/app2/blobs/uploads/?mount={}&from=arc/app", b.url, sha(&ca))).send())
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "mount of an archived blob");
    let de = rt.block_on(push(&c, &b.url, "arc/app2", "e", br#"{"img":"e"}"#, &[&ca])).unwrap();
    if observable {
        eventually("the blob that a standard image now references is back", || {
            standard().is_some_and(|s| s.contains(&sha(&ca))) && archived().is_some_and(|a| !a.contains(&sha(&ca)))
        });
    }
    rt.block_on(pull_intact(&c, &b.url, "arc/app2", &de));
    rt.block_on(pull_intact(&c, &b.url, "arc/app", &dd));
    // ua's archive copy is redundant since the upload wrote it again: the sweep removes it.
    let out = gc(&b, &["--sweep"]);
    assert_eq!(out["blobsDeleted"].as_u64(), Some(0), "{out}");
    if observable {
        assert_eq!(out["copiesDeleted"].as_u64(), Some(1), "{out}");
        assert_eq!(archived(), Some(BTreeSet::new()));
    }

    // Deleting the archived image and collecting garbage empties both stores of what only it
    // (and the deleted repositories) held: ua (also still in the archive store, a redundant
    // copy since the upload), ca, and the configs of c and e.
    ecr(&rt, &b, "BatchDeleteImage", json!({"repositoryName": "arc/app", "imageIds": [{"imageDigest": da}]}));
    ecr(&rt, &b, "DeleteRepository", json!({"repositoryName": "arc/other", "force": true}));
    ecr(&rt, &b, "DeleteRepository", json!({"repositoryName": "arc/app2", "force": true}));
    let out = gc(&b, &[]);
    assert_eq!(out["blobsDeleted"].as_u64(), Some(4), "{out}");
    if observable {
        assert_eq!(archived(), Some(BTreeSet::new()));
        assert_eq!(standard(), Some(set(&[&base, &cb, &ub, br#"{"img":"d"}"#])));
    }
    rt.block_on(pull_intact(&c, &b.url, "arc/app", &db));
}

#[test]
fn lifecycle_transitions_move_bytes_and_a_restart_without_the_archive_store_is_refused() {
    if common::s3_storage().is_some() {
        return; // the filesystem variant covers the start-up check
    }
    let rt = runtime();
    let (mut b, archive, _dir) = start_with_archive();
    let c = b.client();
    let (old, young) = (vec![7u8; 1500], vec![8u8; 1600]);
    rt.block_on(push(&c, &b.url, "arc/lc", "old", br#"{"n":1}"#, &[&old])).unwrap();
    rt.block_on(push(&c, &b.url, "arc/lc", "young", br#"{"n":2}"#, &[&young])).unwrap();
    let policy = json!({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
        "countNumber": 1}, "action": {"type": "transition", "targetStorageClass": "archive"}}]});
    ecr(&rt, &b, "PutLifecyclePolicy", json!({"repositoryName": "arc/lc", "lifecyclePolicyText": policy.to_string()}));
    let out = b.cli(&["lifecycle", "run", "--repository", "arc/lc"]);
    assert!(out.status.success(), "{out:?}");
    eventually("the older image's bytes are archived", || stored_blobs(&archive) == Some(set(&[br#"{"n":1}"#, &old])));

    // The bytes of archived images are in the archive store: starting without it is refused.
    b.terminate();
    b.extra_env.retain(|(k, _)| k != "BERTH_ARCHIVE_STORAGE");
    let err = refused(b.cli_command(&["serve", "--listen", "127.0.0.1:0"]));
    assert!(err.contains("archive_storage (BERTH_ARCHIVE_STORAGE) is not set"), "{err}");
}

/// Run a `berth serve` that must refuse to start (bounded: a server that starts is killed and
/// fails the test); its stderr.
fn refused(mut cmd: std::process::Command) -> String {
    let mut child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("berth serve started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn archive_settings_berth_cannot_honour_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.display().to_string();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("BERTH_ARCHIVE_STORAGE", "s3://arch/p"), ("BERTH_ARCHIVE_S3_STORAGE_CLASS", "GLACIER")],
            "archive_s3_storage_class (BERTH_ARCHIVE_S3_STORAGE_CLASS) must be one of",
        ),
        (&[("BERTH_ARCHIVE_STORAGE", "/tmp/x"), ("BERTH_ARCHIVE_S3_STORAGE_CLASS", "GLACIER_IR")], "not a directory"),
        (&[("BERTH_ARCHIVE_S3_STORAGE_CLASS", "GLACIER_IR")], "needs an S3 archive_storage"),
        (&[("BERTH_ARCHIVE_STORAGE", data_s.as_str())], "must be another location than storage"),
        (&[("BERTH_ARCHIVE_STORAGE", "ftp://host/x")], "must be s3://bucket/prefix or a directory"),
    ];
    for (env, want) in cases {
        let mut cmd = std::process::Command::new(common::berth_bin());
        cmd.args(["serve", "--data-dir", &data_s, "--listen", "127.0.0.1:0"])
            .env_remove("BERTH_STORAGE")
            .env_remove("BERTH_CONFIG")
            .envs(env.iter().copied());
        let err = refused(cmd);
        assert!(err.contains(want), "{env:?}: {err}");
    }
}

/// Pushes of images sharing base layers, through two nodes, race with archiving and restoring
/// (bytes moving between the stores, through both nodes' jobs), deletions, and garbage
/// collection passes without a grace period (with sweeps, which also remove redundant copies).
/// Afterwards, once every archived image is restored, every image pulls intact with its digests
/// verified, and a pass leaves exactly the blobs of the images left, all in standard storage.
#[test]
fn moves_racing_pushes_deletions_and_gc_lose_nothing() {
    if common::s3_storage().is_some() {
        return; // the filesystem variant checks the bytes in both stores
    }
    let rt = runtime();
    let archive_dir = tempfile::tempdir().unwrap();
    let archive = archive_dir.path().display().to_string();
    let b = Berth::start_with_env(&[
        ("BERTH_ARCHIVE_STORAGE", archive.as_str()),
        ("BERTH_GC_INTERVAL_SECS", "1"),
        ("BERTH_GC_GRACE_SECS", "2"),
        ("BERTH_JOB_POLL_MS", "50"),
    ]);
    let b2 = std::sync::Arc::new(b.another_node(&[]));
    let b = std::sync::Arc::new(b);
    let bases: std::sync::Arc<Vec<Vec<u8>>> = std::sync::Arc::new((0..3u8).map(|i| vec![50 + i; 2500]).collect());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gc_loop = {
        let stop = stop.clone();
        let mut cmd = b.cli_command(&["gc", "--grace-period", "0", "--sweep", "--output", "json"]);
        let archive_root = archive_dir.path().to_path_buf();
        std::thread::spawn(move || {
            let (mut passes, mut most_archived) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let out = cmd.output().unwrap();
                assert!(out.status.success(), "{out:?}");
                passes += 1;
                most_archived = most_archived.max(stored_blobs(&archive_root).unwrap().len());
                std::thread::sleep(Duration::from_millis(300));
            }
            (passes, most_archived)
        })
    };
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let node = if w % 2 == 0 { b.clone() } else { b2.clone() };
            let bases = bases.clone();
            rt.spawn(async move {
                let c = node.client();
                let repo = format!("mrace/r{}", w % 2);
                let call = |op: &'static str, body: Value| {
                    let node = node.clone();
                    async move {
                        common::ecr_call(&node, common::ACCESS_KEY_ID, common::SECRET_ACCESS_KEY, op, &body).await
                    }
                };
                let mut pushed: Vec<String> = Vec::new();
                for i in 0..20usize {
                    let unique = format!("m{w}-{i}").into_bytes().repeat(50);
                    let config = format!(r#"{{"m":{w},"i":{i}}}"#).into_bytes();
                    let base_layer = &bases[(w + i) % bases.len()];
                    let mut result = Err(String::new());
                    for attempt in 0..20u64 {
                        result = push(&c, &node.url, &repo, &format!("m{w}-{i}"), &config, &[base_layer, &unique]).await;
                        if result.is_ok() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis((100 * (attempt + 1)).min(1000))).await;
                    }
                    pushed.push(result.unwrap_or_else(|e| panic!("push {repo} m{w}-{i} failed 20 times: {e}")));
                    // Archive most images, restore some of them, delete some.
                    let target = |d: &str, t: &str| {
                        json!({"repositoryName": repo, "imageId": {"imageDigest": d}, "targetStorageClass": t})
                    };
                    if i % 4 != 3 {
                        let (s, v) = call("UpdateImageStorageClass", target(&pushed[i / 2], "ARCHIVE")).await;
                        assert!(s == 200 || v["__type"] == "ImageNotFoundException", "{s} {v}");
                    }
                    if i % 3 == 2 {
                        let (s, v) = call("UpdateImageStorageClass", target(&pushed[i - 1], "STANDARD")).await;
                        assert!(s == 200 || v["__type"] == "ImageNotFoundException", "{s} {v}");
                    }
                    if i % 5 == 4 {
                        let d = pushed[i - 2].clone();
                        let body = json!({"repositoryName": repo, "imageIds": [{"imageDigest": d}]});
                        let (s, v) = call("BatchDeleteImage", body).await;
                        assert_eq!(s, 200, "{v}");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                repo
            })
        })
        .collect();
    let mut repos = BTreeSet::new();
    for w in workers {
        repos.insert(rt.block_on(w).unwrap());
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (passes, most_archived) = gc_loop.join().unwrap();
    assert!(passes >= 2, "the gc loop ran {passes} passes");
    assert!(most_archived > 0, "bytes were in the archive store while the pushes ran");
    eprintln!("gc passes: {passes}, most blobs in the archive store at once: {most_archived}");
    // Restore everything archived, then every image pulls intact.
    let mut images: Vec<(String, String)> = Vec::new();
    for repo in &repos {
        let v = ecr(&rt, &b, "DescribeImages", json!({"repositoryName": repo, "filter": {"imageStatus": "ANY"}}));
        for img in v["imageDetails"].as_array().unwrap() {
            let d = img["imageDigest"].as_str().unwrap().to_string();
            if img["imageStatus"] == "ARCHIVED" {
                storage_class(&rt, &b, repo, &d, "STANDARD");
            }
            images.push((repo.clone(), d));
        }
    }
    assert!(images.len() > 40, "{} images left", images.len());
    for (repo, d) in &images {
        eventually("every image is ACTIVE", || image_status(&rt, &b, repo, d) == "ACTIVE");
    }
    let c = b.client();
    let mut referenced = BTreeSet::new();
    for (repo, d) in &images {
        referenced.extend(rt.block_on(pull_intact(&c, &b2.url, repo, d)));
    }
    gc(&b, &["--sweep"]);
    assert_eq!(stored_blobs(&b.storage()), Some(referenced), "no unreferenced blob survives, none referenced is lost");
    assert_eq!(stored_blobs(archive_dir.path()), Some(BTreeSet::new()), "nothing is left in the archive store");
    for (repo, d) in &images {
        rt.block_on(pull_intact(&c, &b.url, repo, d));
    }
}

/// kill -9 while archive moves run (copies half written, locations switched, old copies half
/// deleted): after a restart the moves' jobs run again, the next GC pass finishes the moves
/// whose holds went stale and the sweep removes leftover copies; every image then restores and
/// pulls intact, and the stores hold exactly the referenced blobs, all in standard storage.
#[test]
fn kill_9_during_archive_moves_leaves_a_state_that_is_finished() {
    if common::s3_storage().is_some() {
        return; // the filesystem variant checks the bytes in both stores
    }
    let rt = runtime();
    let archive_dir = tempfile::tempdir().unwrap();
    let archive = archive_dir.path().display().to_string();
    let mut b = Berth::start_with_env(&[
        ("BERTH_ARCHIVE_STORAGE", archive.as_str()),
        ("BERTH_GC_LEASE_SECS", "1"),
        ("BERTH_JOB_POLL_MS", "50"),
        ("BERTH_JOB_LEASE_MS", "1500"),
        ("BERTH_JOB_RENEW_MS", "500"),
    ]);
    let c = b.client();
    let base = vec![9u8; 8192];
    let (mut images, mut own) = (Vec::new(), BTreeSet::new());
    for i in 0..24u32 {
        let unique: Vec<u8> = i.to_le_bytes().iter().copied().cycle().take(1 << 20).collect();
        let config = format!(r#"{{"k":{i}}}"#).into_bytes();
        images.push(rt.block_on(push(&c, &b.url, "arc/kill", &format!("v{i}"), &config, &[&base, &unique])).unwrap());
        own.extend([sha(&unique), sha(&config)]);
    }
    for d in &images {
        storage_class(&rt, &b, "arc/kill", d, "ARCHIVE");
    }
    // Let some moves start, then kill the server in the middle of them.
    std::thread::sleep(Duration::from_millis(60));
    b.kill9();
    let archived_then = stored_blobs(archive_dir.path()).unwrap().len();
    b.restart_after_kill9();
    // The interrupted jobs run again once their leases expire; holds go stale after two leases.
    std::thread::sleep(Duration::from_secs(3));
    let out = gc(&b, &["--sweep"]);
    assert_eq!(out["blobsDeleted"].as_u64(), Some(0), "nothing is garbage: {out}");
    // (The shared base layer moves too once every image is archived, depending on which job
    // sees that last.)
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let archived = stored_blobs(archive_dir.path()).unwrap();
        if archived.is_superset(&own) {
            break;
        }
        let missing: Vec<&String> = own.difference(&archived).collect();
        assert!(Instant::now() < deadline, "after 60 s, not in the archive store: {missing:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    for d in &images {
        storage_class(&rt, &b, "arc/kill", d, "STANDARD");
    }
    for d in &images {
        eventually("every image is ACTIVE again", || image_status(&rt, &b, "arc/kill", d) == "ACTIVE");
    }
    let mut referenced = BTreeSet::new();
    for d in &images {
        referenced.extend(rt.block_on(pull_intact(&c, &b.url, "arc/kill", d)));
    }
    gc(&b, &["--sweep"]);
    assert_eq!(stored_blobs(&b.storage()), Some(referenced));
    assert_eq!(stored_blobs(archive_dir.path()), Some(BTreeSet::new()));
    eprintln!("blobs in the archive store when the server was killed: {archived_then}");
}
