//! Replication to a peer deployment (issue 14): two `berth serve` deployments on 127.0.0.1,
//! each with its own data dir, database, region and account; the source names the other in
//! `[[replication.peers]]`. Images pushed with skopeo arrive at the peer under the same digest
//! and pull there with skopeo; a peer that is down catches up when it is back; a source killed
//! with SIGKILL mid-replication finishes after its restart; deployments replicating to each
//! other do not loop.

mod common;

use common::{ACCESS_KEY_ID, ACCOUNT_ID, Berth, SECRET_ACCESS_KEY, aws_json_call_in, ecr_call, have, sha256};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const PEER_REGION: &str = "eu-central-1";
const PEER_ACCOUNT: &str = "222222222222";
const PEER_KEY: &str = "AKIAPEERPEERPEER0001";
const PEER_SECRET: &str = "peer/secret/key/for/replication/tests0001";

fn tools_present(test: &str) -> bool {
    if have("skopeo") {
        return true;
    }
    let msg = format!("SKIP {test}: skopeo missing (install it with scripts/install-test-deps.sh)");
    if std::env::var_os("BERTH_REQUIRE_CLIENTS").is_some_and(|v| v != "0") {
        panic!("{msg}");
    }
    eprintln!("{msg}");
    false
}

/// A peer deployment (region eu-central-1, account 222222222222) reading `config`, and a source
/// (us-east-1, 111111111111) whose config names the peer and which replicates every repository
/// there.
struct Pair {
    source: Berth,
    peer: Berth,
    _dir: tempfile::TempDir,
    peer_config: std::path::PathBuf,
}

fn pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let peer_config = dir.path().join("peer.toml");
    std::fs::write(&peer_config, "# replication peers are added by the test\n").unwrap();
    let peer = Berth::start_with_env(&[
        ("BERTH_REGIONS", PEER_REGION),
        ("BERTH_ACCOUNT_ID", PEER_ACCOUNT),
        ("BERTH_ROOT_ACCESS_KEY_ID", PEER_KEY),
        ("BERTH_ROOT_SECRET_ACCESS_KEY", PEER_SECRET),
        ("BERTH_CONFIG", peer_config.to_str().unwrap()),
    ]);
    let source_config = dir.path().join("source.toml");
    std::fs::write(
        &source_config,
        format!(
            "[[replication.peers]]\nregion = \"{PEER_REGION}\"\nendpoint = \"{}\"\naccess_key_id = \"{PEER_KEY}\"\n\
             secret_access_key = \"{PEER_SECRET}\"\n",
            peer.url
        ),
    )
    .unwrap();
    let source = Berth::start_with_env(&[
        ("BERTH_CONFIG", source_config.to_str().unwrap()),
        ("BERTH_JOB_POLL_MS", "100"),
        ("BERTH_JOB_LEASE_MS", "3000"),
        ("BERTH_JOB_RENEW_MS", "1000"),
    ]);
    let rt = rt();
    let (s, v) = rt.block_on(ecr_call(
        &source,
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        "PutReplicationConfiguration",
        &json!({"replicationConfiguration": {"rules": [
            {"destinations": [{"region": PEER_REGION, "registryId": PEER_ACCOUNT}]}
        ]}}),
    ));
    assert_eq!(s, 200, "{v}");
    Pair { source, peer, _dir: dir, peer_config }
}

/// An ECR call on the peer, as its root, signed for its region.
async fn peer_ecr(peer: &Berth, op: &str, body: &Value) -> (u16, Value) {
    let target = format!("AmazonEC2ContainerRegistry_V20150921.{op}");
    aws_json_call_in(peer, PEER_REGION, PEER_KEY, PEER_SECRET, "ecr", &target, body).await
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

/// An OCI image layout in `dir` holding one image (a config and `layers`); its manifest digest.
fn oci_layout(dir: &Path, seed: &str, layers: &[Vec<u8>]) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = sha256(data);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), data).unwrap();
        d
    };
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "config": {"Env": [format!("SEED={seed}")]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| sha256(l)).collect::<Vec<_>>()},
    }))
    .unwrap();
    let config_digest = put(&config);
    // Gzipped layers: skopeo sends them as they are (it would compress plain tar layers for a
    // registry, changing the manifest).
    let descs: Vec<Value> = layers
        .iter()
        .map(|l| {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(l).unwrap();
            let gz = gz.finish().unwrap();
            json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(&gz), "size": gz.len()})
        })
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let digest = put(&manifest);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "latest"}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    digest
}

/// A layer of `len` bytes that differs per `seed` (incompressible enough to move real bytes).
fn layer(seed: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut block = sha256(seed.as_bytes()).into_bytes();
    while out.len() < len {
        block = sha256(&block).into_bytes();
        out.extend_from_slice(&block);
    }
    out.truncate(len);
    out
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo").args(args).output().expect("run skopeo");
    assert!(out.status.success(), "skopeo {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// skopeo pushes the layout in `dir` to `b` as `repo:tag`.
fn skopeo_push(b: &Berth, dir: &Path, repo: &str, tag: &str) {
    let creds = format!("AWS:{}", b.password);
    let src = format!("oci:{}:latest", dir.display());
    let dst = format!("docker://{}/{repo}:{tag}", b.addr);
    skopeo(&["copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", &creds, &src, &dst]);
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", "--creds", &creds, &dst]);
    let local = std::fs::read(dir.join("index.json")).unwrap();
    let index: Value = serde_json::from_slice(&local).unwrap();
    assert_eq!(sha256(raw.as_bytes()), index["manifests"][0]["digest"], "skopeo pushed the manifest unchanged");
}

/// What skopeo reads of `repo:tag` on `b`: the raw manifest's digest, after copying the whole
/// image out (every blob checked by skopeo against its digest).
fn skopeo_pull(b: &Berth, repo: &str, tag: &str) -> String {
    let creds = format!("AWS:{}", b.password);
    let out = tempfile::tempdir().unwrap();
    let src = format!("docker://{}/{repo}:{tag}", b.addr);
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &src,
        &format!("oci:{}:x", out.path().display()),
    ]);
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", "--creds", &creds, &src]);
    sha256(raw.as_bytes())
}

async fn statuses(b: &Berth, repo: &str, digest: &str) -> Vec<Value> {
    let (s, v) = ecr_call(
        b,
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        "DescribeImageReplicationStatus",
        &json!({"repositoryName": repo, "imageId": {"imageDigest": digest}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["replicationStatuses"].as_array().unwrap().clone()
}

/// Wait (bounded) until the image's replication to the peer is no longer IN_PROGRESS.
fn wait_done(rt: &tokio::runtime::Runtime, b: &Berth, repo: &str, digest: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let st = rt.block_on(statuses(b, repo, digest));
        if let [one] = st.as_slice()
            && one["status"] != "IN_PROGRESS"
        {
            return one.clone();
        }
        assert!(Instant::now() < deadline, "replication of {repo}@{digest} not done after {limit:?}: {st:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn complete() -> Value {
    json!({"region": PEER_REGION, "registryId": PEER_ACCOUNT, "status": "COMPLETE"})
}

#[test]
fn images_pushed_with_skopeo_arrive_at_the_peer_and_pull_there() {
    if !tools_present("images_pushed_with_skopeo_arrive_at_the_peer_and_pull_there") {
        return;
    }
    let p = pair();
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let digest = oci_layout(dir.path(), "one", &[layer("a", 300_000), layer("b", 70_000)]);
    skopeo_push(&p.source, dir.path(), "team/app", "v1");
    assert_eq!(wait_done(&rt, &p.source, "team/app", &digest, Duration::from_secs(60)), complete());
    assert_eq!(skopeo_pull(&p.peer, "team/app", "v1"), digest);
    // The peer created the repository with the source's settings and recorded the push as a
    // replication (it has no replication of its own to report).
    let (s, v) = rt.block_on(peer_ecr(&p.peer, "DescribeRepositories", &json!({"repositoryNames": ["team/app"]})));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["repositories"][0]["imageTagMutability"], "MUTABLE");
    // A second image sharing a layer: only what the peer lacks is sent, and a tag move follows.
    let dir2 = tempfile::tempdir().unwrap();
    let second = oci_layout(dir2.path(), "two", &[layer("a", 300_000), layer("c", 5_000)]);
    skopeo_push(&p.source, dir2.path(), "team/app", "v1");
    assert_eq!(wait_done(&rt, &p.source, "team/app", &second, Duration::from_secs(60)), complete());
    assert_eq!(skopeo_pull(&p.peer, "team/app", "v1"), second);
}

#[test]
fn a_peer_that_was_down_catches_up_and_nothing_is_lost() {
    if !tools_present("a_peer_that_was_down_catches_up_and_nothing_is_lost") {
        return;
    }
    let mut p = pair();
    let rt = rt();
    p.peer.kill9();
    let mut pushed = Vec::new();
    for i in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let d = oci_layout(dir.path(), &format!("down{i}"), &[layer(&format!("down{i}"), 50_000)]);
        skopeo_push(&p.source, dir.path(), "down/app", &format!("v{i}"));
        pushed.push(d);
    }
    // While the peer is away the replications stay IN_PROGRESS (retried, never FAILED early).
    std::thread::sleep(Duration::from_secs(3));
    for d in &pushed {
        let st = rt.block_on(statuses(&p.source, "down/app", d));
        assert_eq!(st.len(), 1, "{st:?}");
        assert_eq!(st[0]["status"], "IN_PROGRESS", "{st:?}");
    }
    let addr = p.peer.addr.clone();
    p.peer.spawn(Some(&addr));
    for (i, d) in pushed.iter().enumerate() {
        assert_eq!(wait_done(&rt, &p.source, "down/app", d, Duration::from_secs(90)), complete());
        assert_eq!(skopeo_pull(&p.peer, "down/app", &format!("v{i}")), *d);
    }
}

#[test]
fn a_source_killed_mid_replication_finishes_after_its_restart() {
    if !tools_present("a_source_killed_mid_replication_finishes_after_its_restart") {
        return;
    }
    let mut p = pair();
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let digest = oci_layout(dir.path(), "big", &[layer("big-1", 24 << 20), layer("big-2", 8 << 20)]);
    skopeo_push(&p.source, dir.path(), "big/app", "v1");
    // Kill it while the copy to the peer is under way (or queued: either way it must finish).
    std::thread::sleep(Duration::from_millis(300));
    p.source.restart_after_kill9();
    assert_eq!(wait_done(&rt, &p.source, "big/app", &digest, Duration::from_secs(120)), complete());
    assert_eq!(skopeo_pull(&p.peer, "big/app", "v1"), digest);
}

#[test]
fn deployments_replicating_to_each_other_do_not_loop() {
    if !tools_present("deployments_replicating_to_each_other_do_not_loop") {
        return;
    }
    let mut p = pair();
    let rt = rt();
    // The peer replicates back to the source's region and account.
    std::fs::write(
        &p.peer_config,
        format!(
            "[[replication.peers]]\nregion = \"us-east-1\"\nendpoint = \"{}\"\naccess_key_id = \"{ACCESS_KEY_ID}\"\n\
             secret_access_key = \"{SECRET_ACCESS_KEY}\"\n",
            p.source.url
        ),
    )
    .unwrap();
    p.peer.restart_after_kill9();
    let (s, v) = rt.block_on(peer_ecr(
        &p.peer,
        "PutReplicationConfiguration",
        &json!({"replicationConfiguration": {"rules": [
            {"destinations": [{"region": "us-east-1", "registryId": ACCOUNT_ID}]}
        ]}}),
    ));
    assert_eq!(s, 200, "{v}");
    // Pushed at the source: replicated to the peer once, and not back.
    let dir = tempfile::tempdir().unwrap();
    let digest = oci_layout(dir.path(), "loop", &[layer("loop", 10_000)]);
    skopeo_push(&p.source, dir.path(), "loop/app", "v1");
    assert_eq!(wait_done(&rt, &p.source, "loop/app", &digest, Duration::from_secs(60)), complete());
    std::thread::sleep(Duration::from_secs(2));
    let (s, v) = rt.block_on(peer_ecr(
        &p.peer,
        "DescribeImageReplicationStatus",
        &json!({"repositoryName": "loop/app", "imageId": {"imageDigest": digest}}),
    ));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["replicationStatuses"], json!([]), "the peer did not replicate a replicated push");
    // Pushed at the peer: replicated to the source, and not back either.
    let dir = tempfile::tempdir().unwrap();
    let back = oci_layout(dir.path(), "back", &[layer("back", 10_000)]);
    skopeo_push(&p.peer, dir.path(), "loop/app", "from-peer");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, v) = rt.block_on(peer_ecr(
            &p.peer,
            "DescribeImageReplicationStatus",
            &json!({"repositoryName": "loop/app", "imageId": {"imageDigest": back}}),
        ));
        assert_eq!(s, 200, "{v}");
        if v["replicationStatuses"][0]["status"] == "COMPLETE" {
            assert_eq!(
                v["replicationStatuses"],
                json!([{"region": "us-east-1", "registryId": ACCOUNT_ID, "status": "COMPLETE"}])
            );
            break;
        }
        assert!(Instant::now() < deadline, "peer -> source replication did not complete: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(skopeo_pull(&p.source, "loop/app", "from-peer"), back);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rt.block_on(statuses(&p.source, "loop/app", &back)), Vec::<Value>::new());
}
