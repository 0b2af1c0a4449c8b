//! Berth driven by real clients: skopeo, podman, buildah, umoci, the docker CLI, plus raw
//! OCI protocol clients (reqwest) for referrers, crash safety and concurrency.
//!
//! Every image is built offline inside the test (umoci / buildah into temp dirs); nothing is
//! pulled from the internet. podman and buildah run with the vfs driver on a temp root/runroot.
//! A test whose client programs are missing prints `SKIP ...` and returns, unless
//! `BERTH_REQUIRE_CLIENTS=1` is set, in which case it fails. The docker test skips when
//! `docker info` fails.
//!
//! The registry needs ECR-style credentials: skopeo/podman/buildah get `--creds AWS:<password>`
//! (`--src-creds`/`--dest-creds`), docker logs in with `docker login -u AWS --password-stdin`
//! (and out again at the end), and the raw HTTP clients send `Authorization: Basic`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Berth, have, sha256};
use futures::StreamExt;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_DIGEST: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// Upper bound for any one external command.
const CMD_TIMEOUT: Duration = Duration::from_secs(240);

// ---------------------------------------------------------------------------------------------
// External commands
// ---------------------------------------------------------------------------------------------

/// `true` when every tool is on PATH. Otherwise prints a SKIP line and returns `false`, or
/// panics when `BERTH_REQUIRE_CLIENTS` is set (CI wants the clients, not silent skips).
fn tools_present(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("SKIP {test}: missing {missing:?} (install them with scripts/install-test-deps.sh)");
    if std::env::var_os("BERTH_REQUIRE_CLIENTS").is_some_and(|v| v != "0") {
        panic!("{msg}");
    }
    eprintln!("{msg}");
    false
}

fn sv(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// Runs a command (bounded by CMD_TIMEOUT, killed on timeout) and returns its output.
async fn run_raw(prog: &str, args: &[String]) -> std::process::Output {
    run_raw_within(prog, args, CMD_TIMEOUT)
        .await
        .unwrap_or_else(|| panic!("`{prog} {}` did not finish within {CMD_TIMEOUT:?}", args.join(" ")))
}

/// Runs a command, killing it after `limit`; `None` when it timed out.
async fn run_raw_within(prog: &str, args: &[String], limit: Duration) -> Option<std::process::Output> {
    let what = format!("{prog} {}", args.join(" "));
    let child = tokio::process::Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn `{what}`: {e}"));
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => Some(out.unwrap_or_else(|e| panic!("wait `{what}`: {e}"))),
        Err(_) => None,
    }
}

/// Runs a command with `input` on its standard input (bounded by CMD_TIMEOUT), asserts it
/// succeeded, returns stdout.
async fn run_with_stdin(prog: &str, args: Vec<String>, input: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncWriteExt;
    let what = format!("{prog} {}", args.join(" "));
    let mut child = tokio::process::Command::new(prog)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn `{what}`: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).await.unwrap_or_else(|e| panic!("`{what}`: writing stdin: {e}"));
    drop(stdin);
    let out = tokio::time::timeout(CMD_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`{what}` did not finish within {CMD_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("wait `{what}`: {e}"));
    assert!(
        out.status.success(),
        "`{what}` failed with {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs a command, asserts it succeeded, returns stdout.
async fn run(prog: &str, args: Vec<String>) -> Vec<u8> {
    let out = run_raw(prog, &args).await;
    assert!(
        out.status.success(),
        "`{prog} {}` failed with {}\n--- stdout\n{}\n--- stderr\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

async fn run_text(prog: &str, args: Vec<String>) -> String {
    String::from_utf8(run(prog, args).await).expect("utf-8 output")
}

/// Last non-empty line of a command's stdout (image IDs printed by `-q`).
fn last_line(s: &str) -> String {
    s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
}

/// A string that differs on every call, so images built by concurrent or repeated runs never
/// collide in shared client state (docker's image store, containers' blob-info cache).
fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{}-{}-{}", std::process::id(), nanos, N.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------------------
// Offline image building and local image layouts
// ---------------------------------------------------------------------------------------------

/// Builds an OCI image layout `<work>/layout` holding `tag` with umoci: a fresh image, unpacked,
/// `files` added to its rootfs, repacked into one layer, then its config set.
async fn umoci_image(work: &Path, tag: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let layout = work.join("layout");
    let bundle = work.join("bundle");
    let image = format!("{}:{tag}", p(&layout));
    run("umoci", sv(&["init", "--layout", p(&layout)])).await;
    run("umoci", sv(&["new", "--image", &image])).await;
    run("umoci", sv(&["unpack", "--rootless", "--image", &image, p(&bundle)])).await;
    for (path, data) in files {
        let dest = bundle.join("rootfs").join(path);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(&dest, data).unwrap();
    }
    run("umoci", sv(&["repack", "--image", &image, p(&bundle)])).await;
    run(
        "umoci",
        sv(&[
            "config",
            "--image",
            &image,
            "--os",
            "linux",
            "--architecture",
            "amd64",
            "--config.cmd",
            "/hello.txt",
            "--config.env",
            "BERTH_TEST=1",
            "--config.label",
            "org.example.built-by=berth-tests",
        ]),
    )
    .await;
    layout
}

/// (digest, exact bytes) of the manifest tagged `tag` in an OCI image layout.
fn oci_layout_manifest(layout: &Path, tag: &str) -> (String, Vec<u8>) {
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("tag {tag} not in {}: {index}", layout.display()));
    let digest = desc["digest"].as_str().unwrap().to_string();
    let bytes = std::fs::read(blob_path(layout, &digest)).unwrap();
    assert_eq!(sha256(&bytes), digest, "layout blob content does not match its name");
    assert_eq!(desc["size"].as_u64().unwrap(), bytes.len() as u64);
    (digest, bytes)
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').unwrap();
    layout.join("blobs").join(alg).join(hex)
}

/// (digest, size) of the config and every layer of an image manifest.
fn manifest_blobs(manifest: &[u8]) -> Vec<(String, u64)> {
    let m: Value = serde_json::from_slice(manifest).unwrap();
    let mut out = vec![];
    for d in std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap().iter()) {
        out.push((d["digest"].as_str().unwrap().to_string(), d["size"].as_u64().unwrap()));
    }
    out
}

/// An OCI layout written by a pull holds `tag` with exactly these manifest bytes, and every
/// blob it references with the right content and size.
fn check_oci_layout(layout: &Path, tag: &str, want_digest: &str, want_bytes: &[u8]) {
    let (digest, bytes) = oci_layout_manifest(layout, tag);
    assert_eq!(digest, want_digest, "pulled manifest digest");
    assert_eq!(bytes, want_bytes, "pulled manifest bytes");
    for (d, size) in manifest_blobs(&bytes) {
        let data = std::fs::read(blob_path(layout, &d)).unwrap();
        assert_eq!(sha256(&data), d, "blob {d} in {}", layout.display());
        assert_eq!(data.len() as u64, size, "blob {d} size");
    }
}

/// A `dir:` copy holds exactly these manifest bytes and every referenced blob intact.
fn check_dir_copy(dir: &Path, want_bytes: &[u8]) {
    let bytes = std::fs::read(dir.join("manifest.json")).unwrap();
    assert_eq!(bytes, want_bytes, "dir: manifest.json bytes");
    for (d, size) in manifest_blobs(&bytes) {
        let data = std::fs::read(dir.join(d.split_once(':').unwrap().1)).unwrap();
        assert_eq!(sha256(&data), d, "blob {d} in {}", dir.display());
        assert_eq!(data.len() as u64, size, "blob {d} size");
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers (the OCI distribution protocol, spoken directly)
// ---------------------------------------------------------------------------------------------

/// A client sending `Authorization: <auth>` (see [`Berth::basic_auth_header`]) on every request.
fn client(auth: &str) -> reqwest::Client {
    common::auth_client_builder(auth)
        .timeout(Duration::from_secs(120))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_string())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text()))
    }
}

async fn send(rb: reqwest::RequestBuilder) -> Resp {
    let r = rb.send().await.expect("request failed");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().await.expect("read body");
    Resp { status, headers, body }
}

/// Absolute URL of a `Location` header (the spec allows relative ones).
fn location(base: &str, r: &Resp) -> String {
    let loc = r.header("location").unwrap_or_else(|| panic!("no Location header: {}", r.text()));
    if loc.starts_with("http://") || loc.starts_with("https://") { loc } else { format!("{base}{loc}") }
}

fn with_query(url: &str, kv: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{kv}")
}

async fn start_upload(c: &reqwest::Client, base: &str, name: &str) -> String {
    let r = send(c.post(format!("{base}/v2/{name}/blobs/uploads/"))).await;
    assert_eq!(r.status, 202, "POST /v2/{name}/blobs/uploads/: {}", r.text());
    location(base, &r)
}

/// Closes an upload with `PUT ?digest=` (optionally carrying the last bytes) and checks the 201.
async fn finish_upload(c: &reqwest::Client, base: &str, loc: &str, digest: &str, body: Bytes) {
    let r = send(
        c.put(with_query(loc, &format!("digest={digest}")))
            .header("content-type", "application/octet-stream")
            .body(body),
    )
    .await;
    assert_eq!(r.status, 201, "PUT {loc} digest={digest}: {}", r.text());
    assert_eq!(r.header("docker-content-digest").as_deref(), Some(digest));
    let blob_loc = location(base, &r);
    assert!(blob_loc.contains(digest), "blob Location {blob_loc} should name {digest}");
}

/// POST + one PUT carrying the whole blob. Returns the digest.
async fn push_blob(c: &reqwest::Client, base: &str, name: &str, data: &Bytes) -> String {
    let digest = sha256(data);
    let loc = start_upload(c, base, name).await;
    finish_upload(c, base, &loc, &digest, data.clone()).await;
    digest
}

/// POST, then PATCHes of `chunk` bytes with Content-Range, then an empty PUT.
async fn push_blob_chunked(c: &reqwest::Client, base: &str, name: &str, data: &Bytes, chunk: usize) -> String {
    let digest = sha256(data);
    let mut loc = start_upload(c, base, name).await;
    let mut off = 0;
    while off < data.len() {
        let end = (off + chunk).min(data.len());
        let r = send(
            c.patch(&loc)
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("{}-{}", off, end - 1))
                .body(data.slice(off..end)),
        )
        .await;
        assert_eq!(r.status, 202, "PATCH {off}-{}: {}", end - 1, r.text());
        assert_eq!(r.header("range"), Some(format!("0-{}", end - 1)), "Range after PATCH");
        loc = location(base, &r);
        off = end;
    }
    finish_upload(c, base, &loc, &digest, Bytes::new()).await;
    digest
}

/// POST, one streamed PATCH without Content-Range (the body is a stream of small pieces), then
/// an empty PUT.
async fn push_blob_streamed(c: &reqwest::Client, base: &str, name: &str, data: &Bytes) -> String {
    let digest = sha256(data);
    let loc = start_upload(c, base, name).await;
    let pieces: Vec<Result<Bytes, std::io::Error>> =
        data.chunks(16 * 1024).map(|ch| Ok(Bytes::copy_from_slice(ch))).collect();
    let r = send(
        c.patch(&loc)
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces))),
    )
    .await;
    assert_eq!(r.status, 202, "streamed PATCH: {}", r.text());
    assert_eq!(r.header("range"), Some(format!("0-{}", data.len() - 1)));
    let loc = location(base, &r);
    finish_upload(c, base, &loc, &digest, Bytes::new()).await;
    digest
}

/// PUT a manifest and check the 201 and its digest header. Returns the response.
async fn push_manifest(
    c: &reqwest::Client,
    base: &str,
    name: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
) -> Resp {
    let r = send(
        c.put(format!("{base}/v2/{name}/manifests/{reference}"))
            .header("content-type", media_type)
            .body(bytes.to_vec()),
    )
    .await;
    assert_eq!(r.status, 201, "PUT manifest {name}:{reference}: {}", r.text());
    assert_eq!(r.header("docker-content-digest"), Some(sha256(bytes)), "manifest digest header");
    r
}

async fn get_manifest(c: &reqwest::Client, base: &str, name: &str, reference: &str) -> Resp {
    send(c.get(format!("{base}/v2/{name}/manifests/{reference}")).header("accept", ACCEPT_MANIFESTS)).await
}

async fn head_manifest(c: &reqwest::Client, base: &str, name: &str, reference: &str) -> Resp {
    send(c.head(format!("{base}/v2/{name}/manifests/{reference}")).header("accept", ACCEPT_MANIFESTS)).await
}

/// The registry serves `reference` in `name` as exactly `bytes` (GET by reference and by
/// digest, HEAD), with the digest and media type in the headers.
async fn assert_manifest_served(
    c: &reqwest::Client,
    base: &str,
    name: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
) {
    let digest = sha256(bytes);
    let h = head_manifest(c, base, name, reference).await;
    assert_eq!(h.status, 200, "HEAD manifest {name}:{reference}");
    assert_eq!(h.header("docker-content-digest").as_deref(), Some(digest.as_str()));
    assert_eq!(h.header("content-type").as_deref(), Some(media_type), "HEAD content-type");
    assert_eq!(h.header("content-length"), Some(bytes.len().to_string()), "HEAD length");
    assert!(h.body.is_empty(), "HEAD must not carry a body");
    for r in [reference, digest.as_str()] {
        let g = get_manifest(c, base, name, r).await;
        assert_eq!(g.status, 200, "GET manifest {name}:{r}: {}", g.text());
        assert_eq!(g.header("docker-content-digest").as_deref(), Some(digest.as_str()));
        assert_eq!(g.header("content-type").as_deref(), Some(media_type));
        assert_eq!(&g.body[..], bytes, "manifest bytes of {name}:{r}");
    }
}

/// Every blob of the manifest can be fetched from `name` with the right bytes.
async fn assert_blobs_served(c: &reqwest::Client, base: &str, name: &str, manifest: &[u8]) {
    for (d, size) in manifest_blobs(manifest) {
        let r = send(c.get(format!("{base}/v2/{name}/blobs/{d}"))).await;
        assert_eq!(r.status, 200, "GET blob {name}@{d}: {}", r.text());
        assert_eq!(r.body.len() as u64, size, "blob {d} length");
        assert_eq!(sha256(&r.body), d, "blob {d} content");
        assert_eq!(r.header("docker-content-digest").as_deref(), Some(d.as_str()));
    }
}

/// Deterministic pseudo-random bytes.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A small image config + manifest (bytes) over the given layers.
fn image_manifest(layers: &[&Bytes], config: &Bytes) -> Vec<u8> {
    let layers: Vec<Value> =
        layers.iter().map(|l| json!({"mediaType": OCI_LAYER, "digest": sha256(l), "size": l.len()})).collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": config.len()},
        "layers": layers,
    }))
    .unwrap()
}

fn image_config(layers: &[&Bytes], note: &str) -> Bytes {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    Bytes::from(
        serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": [format!("NOTE={note}")]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap(),
    )
}

// ---------------------------------------------------------------------------------------------
// 1-2. skopeo with umoci / buildah built images, OCI and Docker v2s2
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_round_trips_an_umoci_oci_image_unchanged() {
    if !tools_present("skopeo_round_trips_an_umoci_oci_image_unchanged", &["umoci", "skopeo"]) {
        return;
    }
    let berth = Berth::start();
    let tmp = tempfile::tempdir().unwrap();
    let id = unique();
    let layout = umoci_image(
        tmp.path(),
        "v1",
        &[("hello.txt", b"hello from berth\n"), ("etc/motd", b"built offline by umoci\n"), ("id", id.as_bytes())],
    )
    .await;
    let (digest, bytes) = oci_layout_manifest(&layout, "v1");
    let src = format!("oci:{}:v1", p(&layout));
    let remote = format!("docker://{}/test/oci:v1", berth.addr);
    let creds = format!("AWS:{}", berth.password);

    run("skopeo", sv(&["copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", &creds, &src, &remote])).await;

    // The registry holds the manifest byte for byte, under the tag and its digest.
    let c = client(&berth.basic_auth_header());
    assert_manifest_served(&c, &berth.url, "test/oci", "v1", OCI_MANIFEST, &bytes).await;
    assert_blobs_served(&c, &berth.url, "test/oci", &bytes).await;
    let tags = send(c.get(format!("{}/v2/test/oci/tags/list", berth.url))).await;
    assert_eq!(tags.status, 200);
    assert_eq!(tags.json(), json!({"name": "test/oci", "tags": ["v1"]}));

    // skopeo sees the same bytes.
    let raw = run("skopeo", sv(&["inspect", "--raw", "--tls-verify=false", "--creds", &creds, &remote])).await;
    assert_eq!(raw, bytes, "skopeo inspect --raw");
    let info: Value = serde_json::from_slice(
        &run("skopeo", sv(&["inspect", "--tls-verify=false", "--creds", &creds, &remote])).await,
    )
    .unwrap();
    assert_eq!(info["Digest"], digest.as_str());
    let m: Value = serde_json::from_slice(&bytes).unwrap();
    let layer_digests: Vec<Value> = m["layers"].as_array().unwrap().iter().map(|l| l["digest"].clone()).collect();
    assert_eq!(info["Layers"], Value::Array(layer_digests));
    assert_eq!(info["Labels"]["org.example.built-by"], "berth-tests");

    // Copy back out: to an OCI layout, to a dir:, and by digest.
    let out_oci = tmp.path().join("out-oci");
    let dst = format!("oci:{}:v1", p(&out_oci));
    run("skopeo", sv(&["copy", "--quiet", "--src-tls-verify=false", "--src-creds", &creds, &remote, &dst])).await;
    check_oci_layout(&out_oci, "v1", &digest, &bytes);
    let raw = run("skopeo", sv(&["inspect", "--raw", &dst])).await;
    assert_eq!(sha256(&raw), digest);

    let out_dir = tmp.path().join("out-dir");
    let dst = format!("dir:{}", p(&out_dir));
    run("skopeo", sv(&["copy", "--quiet", "--src-tls-verify=false", "--src-creds", &creds, &remote, &dst])).await;
    check_dir_copy(&out_dir, &bytes);

    let by_digest = format!("docker://{}/test/oci@{digest}", berth.addr);
    let out_dig = tmp.path().join("out-digest");
    let dst = format!("dir:{}", p(&out_dig));
    run("skopeo", sv(&["copy", "--quiet", "--src-tls-verify=false", "--src-creds", &creds, &by_digest, &dst])).await;
    check_dir_copy(&out_dig, &bytes);

    // Registry to registry (another repository, same registry: blobs mounted or re-uploaded).
    let remote2 = format!("docker://{}/test/oci-copy:v2", berth.addr);
    run(
        "skopeo",
        sv(&[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--src-creds",
            &creds,
            "--dest-creds",
            &creds,
            &remote,
            &remote2,
        ]),
    )
    .await;
    assert_manifest_served(&c, &berth.url, "test/oci-copy", "v2", OCI_MANIFEST, &bytes).await;
    assert_blobs_served(&c, &berth.url, "test/oci-copy", &bytes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_round_trips_a_docker_v2s2_image() {
    if !tools_present("skopeo_round_trips_a_docker_v2s2_image", &["umoci", "skopeo"]) {
        return;
    }
    let berth = Berth::start();
    let tmp = tempfile::tempdir().unwrap();
    let id = unique();
    let layout = umoci_image(tmp.path(), "v1", &[("hello.txt", b"docker flavoured\n"), ("id", id.as_bytes())]).await;
    let (_, oci_bytes) = oci_layout_manifest(&layout, "v1");
    let oci_config = manifest_blobs(&oci_bytes)[0].0.clone();
    let src = format!("oci:{}:v1", p(&layout));
    let c = client(&berth.basic_auth_header());
    let creds = format!("AWS:{}", berth.password);

    // 1. Converted to Docker v2s2 on the way in.
    let remote = format!("docker://{}/test/docker:v1", berth.addr);
    run(
        "skopeo",
        sv(&["copy", "--quiet", "--format", "v2s2", "--dest-tls-verify=false", "--dest-creds", &creds, &src, &remote]),
    )
    .await;
    let g = get_manifest(&c, &berth.url, "test/docker", "v1").await;
    assert_eq!(g.status, 200, "{}", g.text());
    assert_eq!(g.header("content-type").as_deref(), Some(DOCKER_MANIFEST));
    let bytes = g.body.to_vec();
    let m: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(m["mediaType"], DOCKER_MANIFEST);
    assert_eq!(m["config"]["mediaType"], "application/vnd.docker.container.image.v1+json");
    assert_eq!(m["config"]["digest"], oci_config.as_str(), "config bytes unchanged by conversion");
    for l in m["layers"].as_array().unwrap() {
        assert_eq!(l["mediaType"], "application/vnd.docker.image.rootfs.diff.tar.gzip");
    }
    assert_manifest_served(&c, &berth.url, "test/docker", "v1", DOCKER_MANIFEST, &bytes).await;
    assert_blobs_served(&c, &berth.url, "test/docker", &bytes).await;
    let raw = run("skopeo", sv(&["inspect", "--raw", "--tls-verify=false", "--creds", &creds, &remote])).await;
    assert_eq!(raw, bytes);

    // Pulls back identical.
    let out_dir = tmp.path().join("out-dir");
    let dst = format!("dir:{}", p(&out_dir));
    run("skopeo", sv(&["copy", "--quiet", "--src-tls-verify=false", "--src-creds", &creds, &remote, &dst])).await;
    check_dir_copy(&out_dir, &bytes);

    // 2. Through a docker-archive tarball and back in.
    let tar = tmp.path().join("image.tar");
    let archive = format!("docker-archive:{}:test/darchive:v1", p(&tar));
    run("skopeo", sv(&["copy", "--quiet", &src, &archive])).await;
    let remote2 = format!("docker://{}/test/darchive:v1", berth.addr);
    let archive_src = format!("docker-archive:{}", p(&tar));
    run("skopeo", sv(&["copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", &creds, &archive_src, &remote2]))
        .await;
    let g = get_manifest(&c, &berth.url, "test/darchive", "v1").await;
    assert_eq!(g.status, 200, "{}", g.text());
    assert_eq!(g.header("content-type").as_deref(), Some(DOCKER_MANIFEST));
    let bytes2 = g.body.to_vec();
    let m2: Value = serde_json::from_slice(&bytes2).unwrap();
    assert_eq!(m2["mediaType"], DOCKER_MANIFEST);
    assert_eq!(m2["config"]["digest"], oci_config.as_str());
    assert_manifest_served(&c, &berth.url, "test/darchive", "v1", DOCKER_MANIFEST, &bytes2).await;
    assert_blobs_served(&c, &berth.url, "test/darchive", &bytes2).await;
    let out_dir2 = tmp.path().join("out-dir2");
    let dst = format!("dir:{}", p(&out_dir2));
    run("skopeo", sv(&["copy", "--quiet", "--src-tls-verify=false", "--src-creds", &creds, &remote2, &dst])).await;
    check_dir_copy(&out_dir2, &bytes2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buildah_builds_from_scratch_pushes_and_pulls() {
    if !tools_present("buildah_builds_from_scratch_pushes_and_pulls", &["buildah", "skopeo"]) {
        return;
    }
    let berth = Berth::start();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let runroot = tmp.path().join("runroot");
    let base = sv(&["--root", p(&root), "--runroot", p(&runroot), "--storage-driver", "vfs"]);
    let b = |extra: &[&str]| -> Vec<String> {
        let mut v = base.clone();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("a.txt"), format!("from buildah {}\n", unique())).unwrap();
    std::fs::write(ctx.join("b.txt"), b"second file\n").unwrap();

    let ctr = last_line(&run_text("buildah", b(&["from", "scratch"])).await);
    run("buildah", b(&["copy", &ctr, p(&ctx.join("a.txt")), "/a.txt"])).await;
    run("buildah", b(&["copy", &ctr, p(&ctx.join("b.txt")), "/data/b.txt"])).await;
    run("buildah", b(&["config", "--cmd", "/a.txt", "--env", "X=1", "--os", "linux", "--arch", "amd64", &ctr])).await;
    let local = "localhost/berth-test/buildah:v1";
    let image_id = last_line(&run_text("buildah", b(&["commit", "-q", &ctr, local])).await);
    assert_eq!(image_id.len(), 64, "image id: {image_id}");
    // Also commit straight into an OCI layout and copy that with skopeo.
    let layout = tmp.path().join("layout");
    let layout_ref = format!("oci:{}:v1", p(&layout));
    // (compressed, so that skopeo pushes its layers unchanged)
    run("buildah", b(&["commit", "-q", "--disable-compression=false", &ctr, &layout_ref])).await;

    let remote = format!("docker://{}/test/buildah:v1", berth.addr);
    let creds = format!("AWS:{}", berth.password);
    let digestfile = tmp.path().join("digest");
    run(
        "buildah",
        b(&["push", "-q", "--tls-verify=false", "--creds", &creds, "--digestfile", p(&digestfile), local, &remote]),
    )
    .await;
    let pushed = std::fs::read_to_string(&digestfile).unwrap().trim().to_string();
    let c = client(&berth.basic_auth_header());
    let g = get_manifest(&c, &berth.url, "test/buildah", "v1").await;
    assert_eq!(g.status, 200, "{}", g.text());
    assert_eq!(g.header("docker-content-digest").as_deref(), Some(pushed.as_str()));
    let bytes = g.body.to_vec();
    assert_eq!(sha256(&bytes), pushed);
    let ct = g.header("content-type").unwrap();
    assert_manifest_served(&c, &berth.url, "test/buildah", "v1", &ct, &bytes).await;
    assert_blobs_served(&c, &berth.url, "test/buildah", &bytes).await;
    assert_eq!(manifest_blobs(&bytes)[0].0, format!("sha256:{image_id}"), "config = image id");

    // Remove everything locally, pull it back.
    run("buildah", b(&["rm", &ctr])).await;
    run("buildah", b(&["rmi", "-a", "-f"])).await;
    let left = run_text("buildah", b(&["images", "-q"])).await;
    assert_eq!(left.trim(), "", "local storage should be empty");
    let pull_ref = format!("{}/test/buildah:v1", berth.addr);
    let pulled =
        last_line(&run_text("buildah", b(&["pull", "-q", "--tls-verify=false", "--creds", &creds, &pull_ref])).await);
    assert_eq!(pulled, image_id, "pulled image id");
    let fmt = "{{.FromImageDigest}} {{.FromImageID}}";
    let inspect = run_text("buildah", b(&["inspect", "--type", "image", "--format", fmt, &pull_ref])).await;
    assert_eq!(inspect.trim(), format!("{pushed} {image_id}"));

    // The OCI layout commit through skopeo.
    let (ldigest, lbytes) = oci_layout_manifest(&layout, "v1");
    let remote2 = format!("docker://{}/test/buildah-oci:v1", berth.addr);
    run("skopeo", sv(&["copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", &creds, &layout_ref, &remote2]))
        .await;
    assert_manifest_served(&c, &berth.url, "test/buildah-oci", "v1", OCI_MANIFEST, &lbytes).await;
    let out = tmp.path().join("out");
    let dst = format!("oci:{}:v1", p(&out));
    run("skopeo", sv(&["copy", "--quiet", "--src-tls-verify=false", "--src-creds", &creds, &remote2, &dst])).await;
    check_oci_layout(&out, "v1", &ldigest, &lbytes);
}

// ---------------------------------------------------------------------------------------------
// 3. podman
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_pushes_and_pulls() {
    if !tools_present("podman_pushes_and_pulls", &["umoci", "podman"]) {
        return;
    }
    let berth = Berth::start();
    let id = unique();
    // podman names an image pulled from `oci:PATH` after PATH, which must be lowercase, and
    // wants a runroot of at most 50 characters: a short lowercase temp dir.
    let short = &hex::encode(ring::digest::digest(&ring::digest::SHA256, id.as_bytes()))[..12];
    let tmp = tempfile::Builder::new().prefix(&format!("berth-pm-{short}")).rand_bytes(0).tempdir().unwrap();
    let layout = umoci_image(tmp.path(), "v1", &[("hello.txt", b"hello podman\n"), ("id", id.as_bytes())]).await;
    let (_, oci_bytes) = oci_layout_manifest(&layout, "v1");
    let config_digest = manifest_blobs(&oci_bytes)[0].0.clone();
    let image_id = config_digest.strip_prefix("sha256:").unwrap().to_string();

    let (root, runroot, ptmp) = (tmp.path().join("root"), tmp.path().join("runroot"), tmp.path().join("tmp"));
    std::fs::create_dir_all(&ptmp).unwrap();
    let base = sv(&[
        "--root",
        p(&root),
        "--runroot",
        p(&runroot),
        "--tmpdir",
        p(&ptmp),
        "--storage-driver",
        "vfs",
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "file",
    ]);
    let pm = |extra: &[&str]| -> Vec<String> {
        let mut v = base.clone();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };

    let src = format!("oci:{}:v1", p(&layout));
    let loaded = last_line(&run_text("podman", pm(&["pull", "-q", &src])).await);
    assert_eq!(loaded, image_id, "podman image id of the OCI layout");
    run("podman", pm(&["tag", &image_id, "localhost/berth-test/podman:v1"])).await;

    let c = client(&berth.basic_auth_header());
    let creds = format!("AWS:{}", berth.password);
    let mut pushed = BTreeMap::new();
    for (tag, format, media_type) in [("v1", "oci", OCI_MANIFEST), ("v2s2", "v2s2", DOCKER_MANIFEST)] {
        let dest = format!("docker://{}/test/podman:{tag}", berth.addr);
        let digestfile = tmp.path().join(format!("digest-{tag}"));
        run(
            "podman",
            pm(&[
                "push",
                "-q",
                "--tls-verify=false",
                "--creds",
                &creds,
                "--format",
                format,
                "--digestfile",
                p(&digestfile),
                "localhost/berth-test/podman:v1",
                &dest,
            ]),
        )
        .await;
        let digest = std::fs::read_to_string(&digestfile).unwrap().trim().to_string();
        let h = head_manifest(&c, &berth.url, "test/podman", tag).await;
        assert_eq!(h.status, 200);
        assert_eq!(h.header("docker-content-digest").as_deref(), Some(digest.as_str()));
        assert_eq!(h.header("content-type").as_deref(), Some(media_type), "{format} push");
        let g = get_manifest(&c, &berth.url, "test/podman", tag).await;
        assert_eq!(sha256(&g.body), digest);
        assert_manifest_served(&c, &berth.url, "test/podman", tag, media_type, &g.body).await;
        assert_blobs_served(&c, &berth.url, "test/podman", &g.body).await;
        assert_eq!(manifest_blobs(&g.body)[0].0, config_digest);
        pushed.insert(tag, digest);
    }

    // Empty the local store, then pull both back.
    run("podman", pm(&["rmi", "-a", "-f"])).await;
    assert_eq!(run_text("podman", pm(&["images", "-q"])).await.trim(), "");
    for (tag, digest) in &pushed {
        let r = format!("{}/test/podman:{tag}", berth.addr);
        let got =
            last_line(&run_text("podman", pm(&["pull", "-q", "--tls-verify=false", "--creds", &creds, &r])).await);
        assert_eq!(got, image_id, "pulled {tag}");
        let inspect =
            run_text("podman", pm(&["image", "inspect", "--format", "{{.Id}} {{json .RepoDigests}}", &r])).await;
        let (got_id, repo_digests) = inspect.trim().split_once(' ').unwrap();
        assert_eq!(got_id, image_id, "podman image inspect {tag}");
        let repo_digests: Vec<String> = serde_json::from_str(repo_digests).unwrap();
        let want = format!("{}/test/podman@{digest}", berth.addr);
        assert!(repo_digests.contains(&want), "{want} not in RepoDigests {repo_digests:?}");
    }
    // Pull by digest.
    let by_digest = format!("{}/test/podman@{}", berth.addr, pushed["v1"]);
    let got =
        last_line(&run_text("podman", pm(&["pull", "-q", "--tls-verify=false", "--creds", &creds, &by_digest])).await);
    assert_eq!(got, image_id);
}

// ---------------------------------------------------------------------------------------------
// 4. Referrers (OCI v1.1 artifacts with a subject)
// ---------------------------------------------------------------------------------------------

async fn get_referrers(c: &reqwest::Client, base: &str, name: &str, digest: &str, artifact_type: Option<&str>) -> Resp {
    let mut rb = c.get(format!("{base}/v2/{name}/referrers/{digest}"));
    if let Some(t) = artifact_type {
        rb = rb.query(&[("artifactType", t)]);
    }
    let r = send(rb).await;
    assert_eq!(r.status, 200, "GET referrers {digest} ({artifact_type:?}): {}", r.text());
    assert_eq!(r.header("content-type").as_deref(), Some(OCI_INDEX), "referrers content-type");
    let v = r.json();
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], OCI_INDEX);
    assert!(v["manifests"].is_array(), "manifests must be an array: {v}");
    match artifact_type {
        Some(_) => assert_eq!(r.header("oci-filters-applied").as_deref(), Some("artifactType")),
        None => assert_eq!(r.header("oci-filters-applied"), None),
    }
    r
}

/// The referrers' descriptors, sorted by digest, with empty annotations normalised away.
fn referrer_list(r: &Resp) -> Vec<Value> {
    let mut v: Vec<Value> = r.json()["manifests"].as_array().unwrap().clone();
    for d in &mut v {
        let obj = d.as_object_mut().unwrap();
        if obj.get("annotations").is_some_and(|a| a.as_object().is_some_and(|m| m.is_empty())) {
            obj.remove("annotations");
        }
    }
    v.sort_by(|a, b| a["digest"].as_str().cmp(&b["digest"].as_str()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_with_subject_is_listed_by_referrers() {
    let berth = Berth::start();
    let c = client(&berth.basic_auth_header());
    let base = berth.url.as_str();
    let name = "test/artifacts";

    // The subject: a plain image.
    let layer = Bytes::from(pattern(1, 4096));
    let config = image_config(&[&layer], "subject");
    push_blob(&c, base, name, &layer).await;
    push_blob(&c, base, name, &config).await;
    let img = image_manifest(&[&layer], &config);
    let img_digest = sha256(&img);
    let r = push_manifest(&c, base, name, "v1", OCI_MANIFEST, &img).await;
    assert_eq!(r.header("oci-subject"), None, "no subject, no OCI-Subject");
    let subject = json!({"mediaType": OCI_MANIFEST, "digest": img_digest, "size": img.len()});

    // No referrers yet: an empty index.
    let r = get_referrers(&c, base, name, &img_digest, None).await;
    assert_eq!(referrer_list(&r), Vec::<Value>::new());

    // The artifact: empty config, one layer, artifactType, subject.
    assert_eq!(sha256(b"{}"), EMPTY_DIGEST);
    let empty = Bytes::from_static(b"{}");
    assert_eq!(push_blob(&c, base, name, &empty).await, EMPTY_DIGEST);
    let sbom = Bytes::from_static(br#"{"spdxVersion":"SPDX-2.3","name":"berth-test"}"#);
    let sbom_digest = push_blob(&c, base, name, &sbom).await;
    let sbom_type = "application/vnd.example.sbom";
    let annotations = json!({
        "org.opencontainers.image.created": "2024-05-01T00:00:00Z",
        "org.example.kind": "sbom",
    });
    let art = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": sbom_type,
        "config": {"mediaType": EMPTY_TYPE, "digest": EMPTY_DIGEST, "size": 2},
        "layers": [{"mediaType": "application/spdx+json", "digest": sbom_digest, "size": sbom.len()}],
        "subject": subject,
        "annotations": annotations,
    }))
    .unwrap();
    let art_digest = sha256(&art);
    let r = push_manifest(&c, base, name, &art_digest, OCI_MANIFEST, &art).await;
    assert_eq!(r.header("oci-subject").as_deref(), Some(img_digest.as_str()), "OCI-Subject");
    assert_manifest_served(&c, base, name, &art_digest, OCI_MANIFEST, &art).await;

    let sbom_desc = json!({
        "mediaType": OCI_MANIFEST,
        "digest": art_digest,
        "size": art.len(),
        "artifactType": sbom_type,
        "annotations": annotations,
    });
    let r = get_referrers(&c, base, name, &img_digest, None).await;
    assert_eq!(referrer_list(&r), vec![sbom_desc.clone()], "referrers: {}", r.text());

    // A second referrer without artifactType: its config media type stands in for it.
    let sig_type = "application/vnd.example.signature.config.v1+json";
    let sig_config = Bytes::from_static(br#"{"signed":true}"#);
    let sig_config_digest = push_blob(&c, base, name, &sig_config).await;
    let sig_layer = Bytes::from(pattern(2, 100));
    let sig_layer_digest = push_blob(&c, base, name, &sig_layer).await;
    let sig = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": sig_type, "digest": sig_config_digest, "size": sig_config.len()},
        "layers": [{"mediaType": "application/octet-stream", "digest": sig_layer_digest, "size": sig_layer.len()}],
        "subject": subject,
    }))
    .unwrap();
    let sig_digest = sha256(&sig);
    // Pushed under a tag this time.
    let r = push_manifest(&c, base, name, "sig", OCI_MANIFEST, &sig).await;
    assert_eq!(r.header("oci-subject").as_deref(), Some(img_digest.as_str()));
    let sig_desc = json!({
        "mediaType": OCI_MANIFEST,
        "digest": sig_digest,
        "size": sig.len(),
        "artifactType": sig_type,
    });

    let mut both = vec![sbom_desc.clone(), sig_desc.clone()];
    both.sort_by(|a, b| a["digest"].as_str().cmp(&b["digest"].as_str()));
    let r = get_referrers(&c, base, name, &img_digest, None).await;
    assert_eq!(referrer_list(&r), both);

    // Filtering.
    let r = get_referrers(&c, base, name, &img_digest, Some(sbom_type)).await;
    assert_eq!(referrer_list(&r), vec![sbom_desc.clone()]);
    let r = get_referrers(&c, base, name, &img_digest, Some(sig_type)).await;
    assert_eq!(referrer_list(&r), vec![sig_desc.clone()]);
    let r = get_referrers(&c, base, name, &img_digest, Some("application/vnd.example.none")).await;
    assert_eq!(referrer_list(&r), Vec::<Value>::new());

    // The artifacts themselves have no referrers; the subject's referrers are per repository.
    let r = get_referrers(&c, base, name, &art_digest, None).await;
    assert_eq!(referrer_list(&r), Vec::<Value>::new());

    // Deleting a referrer removes it from the list.
    let d = send(c.delete(format!("{base}/v2/{name}/manifests/{art_digest}"))).await;
    assert_eq!(d.status, 202, "DELETE artifact: {}", d.text());
    let g = get_manifest(&c, base, name, &art_digest).await;
    assert_eq!(g.status, 404);
    let r = get_referrers(&c, base, name, &img_digest, None).await;
    assert_eq!(referrer_list(&r), vec![sig_desc.clone()]);
    let r = get_referrers(&c, base, name, &img_digest, Some(sbom_type)).await;
    assert_eq!(referrer_list(&r), Vec::<Value>::new());
}

// ---------------------------------------------------------------------------------------------
// 5. docker CLI
// ---------------------------------------------------------------------------------------------

/// `docker logout <registry>` when dropped (also on panic), so no credentials stay behind in
/// the docker client's configuration.
struct DockerLogout(String);

impl Drop for DockerLogout {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .arg("logout")
            .arg(&self.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Removes the listed docker image references when dropped (also on panic).
struct DockerCleanup(Vec<String>);

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let _ = std::process::Command::new("docker")
                .arg("rmi")
                .arg("-f")
                .args(&self.0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_cli_pushes_and_pulls() {
    if !tools_present("docker_cli_pushes_and_pulls", &["umoci", "skopeo"]) {
        return;
    }
    let info =
        if have("docker") { run_raw_within("docker", &sv(&["info"]), Duration::from_secs(30)).await } else { None };
    if !info.is_some_and(|o| o.status.success()) {
        eprintln!("SKIP docker_cli_pushes_and_pulls: `docker info` fails (no docker engine)");
        return;
    }
    let berth = Berth::start();
    let tmp = tempfile::tempdir().unwrap();
    let id = unique();
    let layout = umoci_image(tmp.path(), "v1", &[("hello.txt", b"hello docker\n"), ("id", id.as_bytes())]).await;
    let (_, oci_bytes) = oci_layout_manifest(&layout, "v1");
    let image_id = manifest_blobs(&oci_bytes)[0].0.clone();

    let port = berth.addr.rsplit(':').next().unwrap().to_string();
    let local = format!("berth-test/img-{port}-{}:v1", std::process::id());
    let remote = format!("{}/x/y:tag", berth.addr);
    let remote2 = format!("{}/x/z:other", berth.addr);
    let _cleanup = DockerCleanup(vec![local.clone(), remote.clone(), remote2.clone(), image_id.clone()]);

    let tar = tmp.path().join("image.tar");
    let archive = format!("docker-archive:{}:{local}", p(&tar));
    run("skopeo", sv(&["copy", "--quiet", &format!("oci:{}:v1", p(&layout)), &archive])).await;
    let loaded = run_text("docker", sv(&["load", "-i", p(&tar)])).await;
    assert!(loaded.contains(&format!("Loaded image: {local}")), "docker load: {loaded}");
    let inspect_id = |r: &str| sv(&["image", "inspect", "--format", "{{.Id}}", r]);
    assert_eq!(run_text("docker", inspect_id(&local)).await.trim(), image_id);

    // Log in the way `aws ecr get-login-password | docker login` does.
    let logged_in = run_with_stdin(
        "docker",
        sv(&["login", "-u", "AWS", "--password-stdin", &berth.addr]),
        berth.password.as_bytes(),
    )
    .await;
    let _logout = DockerLogout(berth.addr.clone());
    assert!(
        String::from_utf8_lossy(&logged_in).contains("Login Succeeded"),
        "docker login: {}",
        String::from_utf8_lossy(&logged_in)
    );

    run("docker", sv(&["tag", &local, &remote])).await;
    let out = run_text("docker", sv(&["push", &remote])).await;
    let digest = out
        .lines()
        .find_map(|l| l.strip_prefix("tag: digest: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in docker push output:\n{out}"))
        .to_string();
    let size: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("tag: digest: "))
        .and_then(|l| l.rsplit("size: ").next())
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let c = client(&berth.basic_auth_header());
    let g = get_manifest(&c, &berth.url, "x/y", "tag").await;
    assert_eq!(g.status, 200, "{}", g.text());
    assert_eq!(g.header("content-type").as_deref(), Some(DOCKER_MANIFEST));
    assert_eq!(g.header("docker-content-digest").as_deref(), Some(digest.as_str()));
    assert_eq!(g.body.len(), size);
    assert_manifest_served(&c, &berth.url, "x/y", "tag", DOCKER_MANIFEST, &g.body).await;
    assert_blobs_served(&c, &berth.url, "x/y", &g.body).await;
    assert_eq!(manifest_blobs(&g.body)[0].0, image_id, "config digest = image id");

    // A second repository on the same registry: docker mounts the layers across.
    run("docker", sv(&["tag", &local, &remote2])).await;
    let out2 = run_text("docker", sv(&["push", &remote2])).await;
    assert!(out2.contains("Mounted from x/y"), "expected a cross-repository mount:\n{out2}");
    assert!(out2.contains(&format!("other: digest: {digest} size: {size}")), "{out2}");
    assert_manifest_served(&c, &berth.url, "x/z", "other", DOCKER_MANIFEST, &g.body).await;
    assert_blobs_served(&c, &berth.url, "x/z", &g.body).await;

    // Remove the image locally, pull it back.
    run("docker", sv(&["rmi", &local, &remote, &remote2])).await;
    let gone = run_raw("docker", &inspect_id(&image_id)).await;
    assert!(!gone.status.success(), "image {image_id} should be gone after rmi");
    let out = run_text("docker", sv(&["pull", &remote])).await;
    assert!(out.contains(&format!("Digest: {digest}")), "docker pull:\n{out}");
    assert_eq!(run_text("docker", inspect_id(&remote)).await.trim(), image_id, "pulled image id");
    let repo_digests =
        run_text("docker", sv(&["image", "inspect", "--format", "{{json .RepoDigests}}", &remote])).await;
    let repo_digests: Vec<String> = serde_json::from_str(repo_digests.trim()).unwrap();
    assert!(repo_digests.contains(&format!("{}/x/y@{digest}", berth.addr)), "RepoDigests {repo_digests:?}");
    // By digest too.
    let by_digest = format!("{}/x/z@{digest}", berth.addr);
    let out = run_text("docker", sv(&["pull", &by_digest])).await;
    assert!(out.contains(&format!("Digest: {digest}")), "docker pull by digest:\n{out}");
    assert_eq!(run_text("docker", inspect_id(&by_digest)).await.trim(), image_id);

    // Logged out, the registry refuses the docker client.
    drop(_logout);
    let denied = run_raw("docker", &sv(&["pull", &remote])).await;
    assert!(
        !denied.status.success(),
        "docker pull without credentials succeeded:\n{}",
        String::from_utf8_lossy(&denied.stdout)
    );
    let err = String::from_utf8_lossy(&denied.stderr).to_lowercase();
    assert!(
        err.contains("no basic auth credentials") || err.contains("unauthorized"),
        "docker pull without credentials: {err}"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Crash safety (kill -9)
// ---------------------------------------------------------------------------------------------

/// (tag, manifest bytes)
type TaggedManifest = (String, Vec<u8>);

const BIG_CHUNK: usize = 1 << 20;
const BIG_CHUNKS: u64 = 200; // 200 MiB

/// Chunk `i` of the 200 MiB test blob (one shared random MiB, stamped with the chunk index).
fn big_chunk(base: &Bytes, i: u64) -> Bytes {
    let mut v = base.to_vec();
    v[..8].copy_from_slice(&i.to_le_bytes());
    Bytes::from(v)
}

fn big_digest(base: &Bytes) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for i in 0..BIG_CHUNKS {
        ctx.update(&big_chunk(base, i));
    }
    format!("sha256:{}", hex::encode(ctx.finish()))
}

/// A body streaming the big blob from chunk `from`. After `pause_after` chunks it signals and
/// then slows down (so the body is still being sent when the test kills the server).
fn big_body(base: Bytes, from: u64, sent: Arc<AtomicU64>, pause_after: Option<u64>) -> reqwest::Body {
    let s = futures::stream::iter(from..BIG_CHUNKS).then(move |i| {
        let base = base.clone();
        let sent = sent.clone();
        async move {
            if pause_after.is_some_and(|n| i >= from + n) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let chunk = big_chunk(&base, i);
            sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            Ok::<Bytes, std::io::Error>(chunk)
        }
    });
    reqwest::Body::wrap_stream(s)
}

async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// After the crash: an upload session either is gone (404) or reports a Range no longer than
/// what the client sent; in the latter case finishing it must produce exactly the right blob.
async fn check_interrupted_session(
    c: &reqwest::Client,
    base: &str,
    loc: &str,
    big: &Bytes,
    digest: &str,
    sent: u64,
) -> bool {
    let r = send(c.get(loc)).await;
    match r.status {
        404 => {
            let code = r.json()["errors"][0]["code"].clone();
            assert_eq!(code, "BLOB_UPLOAD_UNKNOWN", "{}", r.text());
            false
        }
        204 => {
            let range = r.header("range").expect("Range on upload status");
            let end: u64 = range.strip_prefix("0-").unwrap().parse().unwrap();
            assert!(end < sent, "session claims {range} but only {sent} bytes were sent");
            // `0-0` is what registries report for an empty session too (CNCF Distribution
            // does); treat it as empty. Otherwise the next byte is end + 1: send the rest.
            let off = if end == 0 { 0 } else { end + 1 };
            eprintln!("interrupted session {loc}: Range {range}, resuming at {off} of {sent} sent");
            let mut rest = Vec::new();
            let mut i = off / BIG_CHUNK as u64;
            let skip = (off % BIG_CHUNK as u64) as usize;
            rest.extend_from_slice(&big_chunk(big, i)[skip..]);
            i += 1;
            while i < BIG_CHUNKS {
                rest.extend_from_slice(&big_chunk(big, i));
                i += 1;
            }
            let total = BIG_CHUNK as u64 * BIG_CHUNKS;
            let p = send(
                c.patch(location(base, &r))
                    .header("content-type", "application/octet-stream")
                    .header("content-range", format!("{off}-{}", total - 1))
                    .body(rest),
            )
            .await;
            assert_eq!(p.status, 202, "resume PATCH: {}", p.text());
            finish_upload(c, base, &location(base, &p), digest, Bytes::new()).await;
            true
        }
        s => panic!("upload status after crash: {s} {}", r.text()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_during_uploads_and_manifest_pushes_loses_nothing_committed() {
    let mut berth = Berth::start();
    let base = berth.url.clone();
    let auth = berth.basic_auth_header();
    let c = client(&auth);

    // Committed before any crash: an image and a 5 MiB blob.
    let layers: Vec<Bytes> = (0..3).map(|i| Bytes::from(pattern(100 + i, 64 * 1024))).collect();
    let config = image_config(&layers.iter().collect::<Vec<_>>(), "before-crash");
    for l in &layers {
        push_blob(&c, &base, "crash/app", l).await;
    }
    push_blob(&c, &base, "crash/app", &config).await;
    let img = image_manifest(&layers.iter().collect::<Vec<_>>(), &config);
    push_manifest(&c, &base, "crash/app", "v1", OCI_MANIFEST, &img).await;
    let medium = Bytes::from(pattern(7, 5 << 20));
    let medium_digest = push_blob_chunked(&c, &base, "crash/app", &medium, 1 << 20).await;

    // --- Crash 1: in the middle of two 200 MiB uploads (a streamed PATCH, and a monolithic
    // PUT ?digest= whose body is cut off).
    let big_base = Bytes::from(pattern(42, BIG_CHUNK));
    let big_dig = big_digest(&big_base);
    let loc_patch = start_upload(&c, &base, "crash/big").await;
    let loc_put = start_upload(&c, &base, "crash/big").await;
    let sent_patch = Arc::new(AtomicU64::new(0));
    let sent_put = Arc::new(AtomicU64::new(0));
    let patch_task = {
        let c = c.clone();
        let body = big_body(big_base.clone(), 0, sent_patch.clone(), Some(32));
        let loc = loc_patch.clone();
        tokio::spawn(
            async move { c.patch(&loc).header("content-type", "application/octet-stream").body(body).send().await },
        )
    };
    let put_task = {
        let c = c.clone();
        let body = big_body(big_base.clone(), 0, sent_put.clone(), Some(24));
        let url = with_query(&loc_put, &format!("digest={big_dig}"));
        tokio::spawn(async move {
            c.put(&url)
                .header("content-type", "application/octet-stream")
                .header("content-length", (BIG_CHUNK as u64 * BIG_CHUNKS).to_string())
                .body(body)
                .send()
                .await
        })
    };
    let (sp, su) = (sent_patch.clone(), sent_put.clone());
    wait_until("32 MiB of the PATCH and 24 MiB of the PUT sent", Duration::from_secs(60), || {
        sp.load(Ordering::SeqCst) >= 34 << 20 && su.load(Ordering::SeqCst) >= 26 << 20
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    berth.kill9();
    for (what, t) in [("PATCH", patch_task), ("PUT", put_task)] {
        let res = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .unwrap_or_else(|_| panic!("{what} did not end after the kill"))
            .unwrap();
        match res {
            Err(_) => {}
            Ok(r) => panic!("{what} cut off by kill -9 got a response: {}", r.status()),
        }
    }
    let sent_patch = sent_patch.load(Ordering::SeqCst);
    let sent_put = sent_put.load(Ordering::SeqCst);
    assert!(sent_patch < BIG_CHUNK as u64 * BIG_CHUNKS, "PATCH body finished before the kill");
    assert!(sent_put < BIG_CHUNK as u64 * BIG_CHUNKS, "PUT body finished before the kill");
    berth.restart_after_kill9();
    let base = berth.url.clone();

    // Everything committed before is intact; the partial blob is nowhere.
    assert_manifest_served(&c, &base, "crash/app", "v1", OCI_MANIFEST, &img).await;
    assert_blobs_served(&c, &base, "crash/app", &img).await;
    let r = send(c.get(format!("{base}/v2/crash/app/blobs/{medium_digest}"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(sha256(&r.body), medium_digest);
    for repo in ["crash/big", "crash/app"] {
        let h = send(c.head(format!("{base}/v2/{repo}/blobs/{big_dig}"))).await;
        assert_eq!(h.status, 404, "partial blob visible in {repo} after the crash");
    }
    // The interrupted sessions: gone, or resumable to exactly the right blob.
    let resumed_put = check_interrupted_session(&c, &base, &loc_put, &big_base, &big_dig, sent_put).await;
    if !resumed_put {
        let h = send(c.head(format!("{base}/v2/crash/big/blobs/{big_dig}"))).await;
        assert_eq!(h.status, 404);
    }
    let resumed_patch = check_interrupted_session(&c, &base, &loc_patch, &big_base, &big_dig, sent_patch).await;
    eprintln!("after crash 1: PUT session resumed={resumed_put}, PATCH session resumed={resumed_patch}");

    // The registry keeps working: the whole 200 MiB blob uploads (one streamed PATCH) into
    // another repository, and reads back from both.
    {
        let loc = start_upload(&c, &base, "crash/big-again").await;
        let r = send(c.patch(&loc).header("content-type", "application/octet-stream").body(big_body(
            big_base.clone(),
            0,
            Arc::new(AtomicU64::new(0)),
            None,
        )))
        .await;
        assert_eq!(r.status, 202, "{}", r.text());
        assert_eq!(r.header("range"), Some(format!("0-{}", BIG_CHUNK as u64 * BIG_CHUNKS - 1)));
        finish_upload(&c, &base, &location(&base, &r), &big_dig, Bytes::new()).await;
    }
    let mut repos = vec!["crash/big-again"];
    if resumed_put || resumed_patch {
        repos.push("crash/big");
    } else {
        let h = send(c.head(format!("{base}/v2/crash/big/blobs/{big_dig}"))).await;
        assert_eq!(h.status, 404, "blob never completed in crash/big");
    }
    for repo in repos {
        let h = send(c.head(format!("{base}/v2/{repo}/blobs/{big_dig}"))).await;
        assert_eq!(h.status, 200, "HEAD big blob in {repo}");
        let total = BIG_CHUNK as u64 * BIG_CHUNKS;
        assert_eq!(h.header("content-length"), Some(total.to_string()));
        let resp = c.get(format!("{base}/v2/{repo}/blobs/{big_dig}")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut n = 0u64;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            n += chunk.len() as u64;
            ctx.update(&chunk);
        }
        assert_eq!(n, total, "big blob length in {repo}");
        assert_eq!(format!("sha256:{}", hex::encode(ctx.finish())), big_dig);
    }

    // --- Crash 2: just after a blob and a manifest were acknowledged.
    let late = Bytes::from(pattern(8, 300 * 1024));
    let late_config = image_config(&[&late], "acked-then-killed");
    push_blob(&c, &base, "crash/late", &late).await;
    push_blob(&c, &base, "crash/late", &late_config).await;
    let late_img = image_manifest(&[&late], &late_config);
    push_manifest(&c, &base, "crash/late", "v1", OCI_MANIFEST, &late_img).await;
    berth.restart_after_kill9();
    let base = berth.url.clone();
    assert_manifest_served(&c, &base, "crash/late", "v1", OCI_MANIFEST, &late_img).await;
    assert_blobs_served(&c, &base, "crash/late", &late_img).await;

    // --- Crash 3: during a stream of manifest pushes from 4 concurrent clients.
    let acked: Arc<Mutex<Vec<TaggedManifest>>> = Arc::default();
    let attempted: Arc<Mutex<Vec<TaggedManifest>>> = Arc::default();
    let mut pushers = vec![];
    for w in 0..4 {
        let (c, base) = (client(&auth), base.clone());
        let (acked, attempted) = (acked.clone(), attempted.clone());
        let layers = layers.clone();
        let config = config.clone();
        pushers.push(tokio::spawn(async move {
            for i in 0..500 {
                let tag = format!("w{w}-{i:03}");
                let m = serde_json::to_vec(&json!({
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": sha256(&config), "size": config.len()},
                    "layers": layers.iter().map(|l| json!({"mediaType": OCI_LAYER, "digest": sha256(l), "size": l.len()})).collect::<Vec<_>>(),
                    "annotations": {"org.example.tag": tag},
                }))
                .unwrap();
                attempted.lock().unwrap().push((tag.clone(), m.clone()));
                let r = c
                    .put(format!("{base}/v2/crash/app/manifests/{tag}"))
                    .header("content-type", OCI_MANIFEST)
                    .body(m.clone())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().as_u16() == 201 => acked.lock().unwrap().push((tag, m)),
                    Ok(r) => panic!("manifest push {tag}: {}", r.status()),
                    Err(_) => return, // the server died
                }
            }
        }));
    }
    let a = acked.clone();
    wait_until("40 acknowledged manifest pushes", Duration::from_secs(60), || a.lock().unwrap().len() >= 40).await;
    berth.kill9();
    for t in pushers {
        tokio::time::timeout(Duration::from_secs(30), t).await.expect("pusher ended").unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let attempted = attempted.lock().unwrap().clone();
    berth.restart_after_kill9();
    let base = berth.url.clone();

    let acked_tags: BTreeSet<String> = acked.iter().map(|(t, _)| t.clone()).collect();
    for (tag, m) in &acked {
        assert_manifest_served(&c, &base, "crash/app", tag, OCI_MANIFEST, m).await;
    }
    // Pushes in flight at the kill are either wholly there or wholly absent.
    for (tag, m) in attempted.iter().filter(|(t, _)| !acked_tags.contains(t)) {
        let g = get_manifest(&c, &base, "crash/app", tag).await;
        match g.status {
            404 => {
                let by_digest = get_manifest(&c, &base, "crash/app", &sha256(m)).await;
                assert_eq!(by_digest.status, 404, "manifest of untagged in-flight push {tag}");
            }
            200 => assert_manifest_served(&c, &base, "crash/app", tag, OCI_MANIFEST, m).await,
            s => panic!("in-flight manifest {tag}: {s} {}", g.text()),
        }
    }
    let tags = send(c.get(format!("{base}/v2/crash/app/tags/list?n=10000"))).await;
    assert_eq!(tags.status, 200);
    let listed: BTreeSet<String> =
        tags.json()["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    let attempted_tags: BTreeSet<String> = attempted.iter().map(|(t, _)| t.clone()).chain(["v1".to_string()]).collect();
    assert!(listed.contains("v1"));
    assert!(acked_tags.is_subset(&listed), "acknowledged tags missing after the crash");
    assert!(listed.is_subset(&attempted_tags), "unknown tags after the crash: {listed:?}");

    // And still working: a new image pushes and pulls back.
    let fresh = Bytes::from(pattern(9, 2 << 20));
    let fresh_config = image_config(&[&fresh], "after-crash");
    push_blob_streamed(&c, &base, "crash/fresh", &fresh).await;
    push_blob(&c, &base, "crash/fresh", &fresh_config).await;
    let fresh_img = image_manifest(&[&fresh], &fresh_config);
    push_manifest(&c, &base, "crash/fresh", "v1", OCI_MANIFEST, &fresh_img).await;
    assert_manifest_served(&c, &base, "crash/fresh", "v1", OCI_MANIFEST, &fresh_img).await;
    assert_blobs_served(&c, &base, "crash/fresh", &fresh_img).await;
}

// ---------------------------------------------------------------------------------------------
// 7. 50 concurrent clients sharing layers
// ---------------------------------------------------------------------------------------------

struct Pushed {
    repo: String,
    tag: String,
    manifest: Vec<u8>,
}

async fn push_one_client(base: String, auth: String, i: usize, shared: Arc<Vec<Bytes>>) -> Pushed {
    let c = client(&auth); // each client its own connection pool
    let (repo, tag) = if i.is_multiple_of(5) {
        ("conc/shared".to_string(), format!("c{i:02}"))
    } else {
        (format!("conc/c{i:02}"), "v1".to_string())
    };
    let unique_layer = Bytes::from(pattern(1000 + i as u64, 32 * 1024 + i));
    let mut layers: Vec<&Bytes> = shared.iter().collect();
    layers.push(&unique_layer);
    let config = image_config(&layers, &format!("client-{i}"));

    for (k, blob) in layers.iter().copied().chain(std::iter::once(&config)).enumerate() {
        let digest = sha256(blob);
        let is_shared = k < shared.len();
        // Some clients look first (like docker/skopeo) and skip blobs that already exist.
        if i.is_multiple_of(4) {
            let h = send(c.head(format!("{base}/v2/{repo}/blobs/{digest}"))).await;
            match h.status {
                200 => {
                    assert_eq!(h.header("content-length"), Some(blob.len().to_string()));
                    continue;
                }
                404 => {}
                s => panic!("HEAD blob: {s}"),
            }
        }
        // Some try a cross-repository mount of the shared layers first.
        if is_shared && i % 5 == 1 {
            let r = send(c.post(format!("{base}/v2/{repo}/blobs/uploads/?mount={digest}&from=conc/shared"))).await;
            match r.status {
                201 => {
                    assert_eq!(r.header("docker-content-digest").as_deref(), Some(digest.as_str()));
                    continue;
                }
                202 => {
                    // Not mountable (yet): upload through the session it opened.
                    let loc = location(&base, &r);
                    finish_upload(&c, &base, &loc, &digest, (*blob).clone()).await;
                    continue;
                }
                s => panic!("mount: {s} {}", r.text()),
            }
        }
        match (i + k) % 3 {
            0 => push_blob(&c, &base, &repo, blob).await,
            1 => push_blob_chunked(&c, &base, &repo, blob, 20 * 1024).await,
            _ => push_blob_streamed(&c, &base, &repo, blob).await,
        };
    }
    let manifest = image_manifest(&layers, &config);
    push_manifest(&c, &base, &repo, &tag, OCI_MANIFEST, &manifest).await;
    Pushed { repo, tag, manifest }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_clients_with_shared_layers() {
    let berth = Berth::start();
    let base = berth.url.clone();
    let auth = berth.basic_auth_header();
    let shared = Arc::new(vec![
        Bytes::from(pattern(1, 1 << 20)),
        Bytes::from(pattern(2, 256 * 1024 + 3)),
        Bytes::from(pattern(3, 64 * 1024 + 1)),
    ]);
    let work = async {
        let tasks: Vec<_> =
            (0..50).map(|i| tokio::spawn(push_one_client(base.clone(), auth.clone(), i, shared.clone()))).collect();
        let mut pushed = vec![];
        for t in tasks {
            pushed.push(t.await.expect("client task panicked"));
        }
        pushed
    };
    let pushed = tokio::time::timeout(Duration::from_secs(180), work)
        .await
        .expect("50 concurrent pushes did not finish in 180 s");

    // Everything pulls back intact, in parallel too.
    let checks: Vec<_> = pushed
        .into_iter()
        .map(|p| {
            let (base, auth) = (base.clone(), auth.clone());
            tokio::spawn(async move {
                let c = client(&auth);
                assert_manifest_served(&c, &base, &p.repo, &p.tag, OCI_MANIFEST, &p.manifest).await;
                assert_blobs_served(&c, &base, &p.repo, &p.manifest).await;
                (p.repo, p.tag)
            })
        })
        .collect();
    let mut repos = BTreeSet::new();
    let mut shared_tags = vec![];
    let verify = async {
        for t in checks {
            let (repo, tag) = t.await.expect("verification task panicked");
            if repo == "conc/shared" {
                shared_tags.push(tag);
            }
            repos.insert(repo);
        }
    };
    tokio::time::timeout(Duration::from_secs(180), verify).await.expect("verification timed out");

    let c = client(&auth);
    shared_tags.sort();
    assert_eq!(shared_tags.len(), 10);
    let r = send(c.get(format!("{base}/v2/conc/shared/tags/list"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"name": "conc/shared", "tags": shared_tags}));
    assert_eq!(repos.len(), 41);
    let r = send(c.get(format!("{base}/v2/_catalog?n=1000"))).await;
    assert_eq!(r.status, 200);
    let want: Vec<String> = repos.into_iter().collect();
    assert_eq!(r.json(), json!({"repositories": want}));
}
