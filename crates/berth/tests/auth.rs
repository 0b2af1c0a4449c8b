//! ECR-style data-plane authentication and repository policy, end to end against the real
//! `berth` binary.
//!
//! The contract (as ECR behaves):
//! - every `/v2/...` request needs `Authorization: Basic base64("AWS:" + password)`, the
//!   password coming from `get-login-password`; missing or invalid credentials get 401
//!   `UNAUTHORIZED` "Not Authorized" with the challenge
//!   `WWW-Authenticate: Basic realm="http://<host>/",service="ecr.amazonaws.com"`;
//! - an expired token gets 403 `DENIED` "Your authorization token has expired. Reauthenticate
//!   and try again."; a token of another account than the registry's gets 403 `DENIED`;
//! - without create-on-push, pushing to a repository that does not exist is 404 `NAME_UNKNOWN`
//!   "The repository with name '<name>' does not exist in the registry with id '<account>'";
//! - in an `IMMUTABLE` repository an existing tag cannot be pushed again (400 `TAG_INVALID`),
//!   even with the same digest; pushes by digest are unaffected.
//!
//! Every response, errors included, carries `Docker-Distribution-API-Version: registry/2.0`.

mod common;

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{ACCESS_KEY_ID, ACCOUNT_ID, Berth, REGION, SECRET_ACCESS_KEY, have, sha256};
use reqwest::header::HeaderMap;
use reqwest::{Client, Method};
use serde_json::{Value, json};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";
const ZERO_DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
const EXPIRED_MESSAGE: &str = "Your authorization token has expired. Reauthenticate and try again.";

/// Upper bound for any one external command.
const CMD_TIMEOUT: Duration = Duration::from_secs(240);

// ---------------------------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------------------------

/// A client that sends no credentials of its own (and follows no redirects).
fn anonymous() -> Client {
    Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(Duration::from_secs(60)).build().unwrap()
}

/// A client that authenticates with `Authorization: <auth>`.
fn authed(auth: &str) -> Client {
    common::auth_client_builder(auth)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

struct Resp {
    what: String,
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
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{}: response is not JSON ({e}): {}", self.what, self.text()))
    }

    #[track_caller]
    fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "{}: expected {status}, got {} {}", self.what, self.status, self.text());
        self
    }

    /// `status` with exactly one error of `code` (and `message`, when given).
    #[track_caller]
    fn expect_error(&self, status: u16, code: &str, message: Option<&str>) -> &Self {
        self.expect(status);
        if self.what.starts_with("HEAD ") {
            assert!(self.body.is_empty(), "{}: HEAD must not carry a body", self.what);
            return self;
        }
        let v = self.json();
        let errors = v["errors"].as_array().unwrap_or_else(|| panic!("{}: no errors array in {v}", self.what));
        assert_eq!(errors.len(), 1, "{}: {v}", self.what);
        assert_eq!(errors[0]["code"], code, "{}: {v}", self.what);
        if let Some(m) = message {
            assert_eq!(errors[0]["message"], m, "{}: {v}", self.what);
        }
        self
    }

    /// The exact 401 ECR answers for missing or invalid credentials.
    #[track_caller]
    fn expect_unauthorized(&self, addr: &str) {
        self.expect(401);
        assert_eq!(
            self.header("www-authenticate"),
            Some(format!("Basic realm=\"http://{addr}/\",service=\"ecr.amazonaws.com\"")),
            "{}: WWW-Authenticate challenge",
            self.what
        );
        if self.what.starts_with("HEAD ") {
            assert!(self.body.is_empty(), "{}: HEAD must not carry a body", self.what);
        } else {
            assert_eq!(
                common::without_request_id(&self.json()),
                json!({"errors":[{"code":"UNAUTHORIZED","message":"Not Authorized","detail":null}]}),
                "{}: 401 body",
                self.what
            );
        }
    }
}

/// Sends; checks the header every response carries.
async fn send(rb: reqwest::RequestBuilder) -> Resp {
    let (client, req) = rb.build_split();
    let req = req.expect("request");
    let what = format!("{} {}", req.method(), req.url());
    let r = client.execute(req).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(
        headers.get("docker-distribution-api-version").and_then(|v| v.to_str().ok()),
        Some("registry/2.0"),
        "{what} ({status}): every response must carry Docker-Distribution-API-Version: registry/2.0"
    );
    Resp { what, status, headers, body }
}

/// Absolute URL of a response's `Location`.
fn location(base: &str, r: &Resp) -> String {
    let loc = r.header("location").unwrap_or_else(|| panic!("{}: no Location header: {}", r.what, r.text()));
    if loc.starts_with("http://") || loc.starts_with("https://") { loc } else { format!("{base}{loc}") }
}

fn with_query(url: &str, kv: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{kv}")
}

/// POST + PUT of a whole blob, asserting 201; returns its digest.
async fn push_blob(c: &Client, base: &str, name: &str, data: &[u8]) -> String {
    let digest = sha256(data);
    let r = send(c.post(format!("{base}/v2/{name}/blobs/uploads/"))).await;
    r.expect(202);
    let loc = location(base, &r);
    let r = send(
        c.put(with_query(&loc, &format!("digest={digest}")))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec()),
    )
    .await;
    r.expect(201);
    assert_eq!(r.header("docker-content-digest"), Some(digest.clone()));
    digest
}

async fn put_manifest(c: &Client, base: &str, name: &str, reference: &str, body: &[u8]) -> Resp {
    send(
        c.put(format!("{base}/v2/{name}/manifests/{reference}"))
            .header("content-type", OCI_MANIFEST)
            .body(body.to_vec()),
    )
    .await
}

async fn get_manifest(c: &Client, base: &str, name: &str, reference: &str) -> Resp {
    send(c.get(format!("{base}/v2/{name}/manifests/{reference}")).header("accept", ACCEPT_MANIFESTS)).await
}

/// An image (config + one layer) whose blobs are pushed to `name`; returns the manifest bytes.
async fn push_image_blobs(c: &Client, base: &str, name: &str, seed: u64) -> Vec<u8> {
    let layer = pattern(seed, 1000 + seed as usize);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": [format!("SEED={seed}")]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
    }))
    .unwrap();
    push_blob(c, base, name, &layer).await;
    push_blob(c, base, name, &config).await;
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha256(&layer), "size": layer.len()}],
    }))
    .unwrap()
}

/// The registry serves exactly `bytes` for `name:reference`.
async fn assert_manifest(c: &Client, base: &str, name: &str, reference: &str, bytes: &[u8]) {
    let g = get_manifest(c, base, name, reference).await;
    g.expect(200);
    assert_eq!(g.header("docker-content-digest"), Some(sha256(bytes)), "{}: digest", g.what);
    assert_eq!(&g.body[..], bytes, "{}: manifest bytes", g.what);
}

async fn tags(c: &Client, base: &str, name: &str) -> Vec<String> {
    let r = send(c.get(format!("{base}/v2/{name}/tags/list"))).await;
    r.expect(200);
    match &r.json()["tags"] {
        Value::Null => vec![],
        Value::Array(a) => a.iter().map(|t| t.as_str().unwrap().to_string()).collect(),
        other => panic!("{}: tags {other}", r.what),
    }
}

async fn catalog(c: &Client, base: &str) -> Vec<String> {
    let r = send(c.get(format!("{base}/v2/_catalog"))).await;
    r.expect(200);
    match &r.json()["repositories"] {
        Value::Null => vec![],
        Value::Array(a) => a.iter().map(|t| t.as_str().unwrap().to_string()).collect(),
        other => panic!("{}: repositories {other}", r.what),
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

fn name_unknown_message(name: &str) -> String {
    format!("The repository with name '{name}' does not exist in the registry with id '{ACCOUNT_ID}'")
}

fn tag_immutable_message(tag: &str, repo: &str) -> String {
    format!(
        "The image tag '{tag}' already exists in the '{repo}' repository and cannot be overwritten because the repository is immutable."
    )
}

/// The password with the character at `i` replaced by another base64 character.
fn with_char_changed(password: &str, i: usize) -> String {
    let mut b = password.as_bytes().to_vec();
    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

/// The `repository` object `berth admin create-repository` prints (ECR's CreateRepository
/// answer `{"repository": {...}}`, or the bare object).
fn repository_of(v: &Value) -> &Value {
    if v.get("repository").is_some() { &v["repository"] } else { v }
}

// ---------------------------------------------------------------------------------------------
// External commands
// ---------------------------------------------------------------------------------------------

/// `true` when every tool is on PATH; otherwise SKIP (or panic under BERTH_REQUIRE_CLIENTS).
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

/// Runs a command (killed after CMD_TIMEOUT), optionally feeding `stdin`; returns its output.
async fn run_raw(prog: &str, args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let what = format!("{prog} {}", args.join(" "));
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        // An empty value removes the variable.
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn `{what}`: {e}"));
    if let Some(input) = stdin {
        let mut w = child.stdin.take().unwrap();
        w.write_all(input).await.unwrap_or_else(|e| panic!("`{what}`: writing stdin: {e}"));
        drop(w);
    }
    tokio::time::timeout(CMD_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`{what}` did not finish within {CMD_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("wait `{what}`: {e}"))
}

#[track_caller]
fn assert_success(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "`{what}` failed with {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn run(prog: &str, args: &[&str]) -> Vec<u8> {
    let out = run_raw(prog, args, &[], None).await;
    assert_success(&format!("{prog} {}", args.join(" ")), &out);
    out.stdout
}

/// An OCI image layout under `work` holding `tag`, built offline with umoci; returns
/// (`oci:<layout>:<tag>`, manifest bytes).
async fn umoci_image(work: &std::path::Path, tag: &str, content: &str) -> (String, Vec<u8>) {
    let layout = work.join("layout");
    let bundle = work.join("bundle");
    let (l, b) = (layout.to_str().unwrap(), bundle.to_str().unwrap());
    let image = format!("{l}:{tag}");
    run("umoci", &["init", "--layout", l]).await;
    run("umoci", &["new", "--image", &image]).await;
    run("umoci", &["unpack", "--rootless", "--image", &image, b]).await;
    std::fs::write(bundle.join("rootfs").join("content.txt"), content).unwrap();
    run("umoci", &["repack", "--image", &image, b]).await;
    run("umoci", &["config", "--image", &image, "--os", "linux", "--architecture", "amd64"]).await;
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let hex = digest.strip_prefix("sha256:").unwrap();
    let bytes = std::fs::read(layout.join("blobs").join("sha256").join(hex)).unwrap();
    (format!("oci:{image}"), bytes)
}

// ---------------------------------------------------------------------------------------------
// Registry tokens made by the test (for expiry)
// ---------------------------------------------------------------------------------------------

/// Mints a registry password the way the server does (`berth-auth` `token::mint`: a base64
/// JSON envelope `{"payload","datakey","version":"2","type":"DATA_KEY","expiration"}` whose
/// datakey carries an HMAC-SHA256 under a key derived from the server key), for `claims`
/// (a JSON object with `expires_at`).
fn mint_password(server_key: &[u8], claims: &Value) -> String {
    let derive = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, server_key);
    let token_key = ring::hmac::sign(&derive, b"berth registry token key v1");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token_key.as_ref());
    let key_id = "k1";
    let payload = common::base64_encode(&serde_json::to_vec(claims).unwrap());
    let expiration = claims["expires_at"].as_u64().expect("expires_at");
    let mut mac_input = b"berth-registry-token\0".to_vec();
    for part in ["2", "DATA_KEY", key_id, payload.as_str()] {
        mac_input.extend_from_slice(part.as_bytes());
        mac_input.push(0);
    }
    mac_input.extend_from_slice(expiration.to_string().as_bytes());
    let tag = ring::hmac::sign(&key, &mac_input);
    let mut datakey = vec![1u8, key_id.len() as u8];
    datakey.extend_from_slice(key_id.as_bytes());
    datakey.extend_from_slice(tag.as_ref());
    let envelope = format!(
        "{{\"payload\":\"{payload}\",\"datakey\":\"{}\",\"version\":\"2\",\"type\":\"DATA_KEY\",\"expiration\":{expiration}}}",
        common::base64_encode(&datakey)
    );
    common::base64_encode(envelope.as_bytes())
}

/// The claims inside a password.
fn claims_of(password: &str) -> Value {
    let envelope: Value = serde_json::from_slice(&common::base64_decode(password).expect("password is base64"))
        .expect("password is a JSON envelope");
    serde_json::from_slice(
        &common::base64_decode(envelope["payload"].as_str().expect("payload")).expect("payload is base64"),
    )
    .expect("payload is JSON")
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

// =============================================================================================
// 401: missing and invalid credentials
// =============================================================================================

#[tokio::test]
async fn missing_credentials_are_401_with_the_ecr_challenge_on_every_endpoint() {
    let berth = Berth::start();
    let base = berth.url.as_str();
    let c = berth.client();
    // Something to address: an image, and an open upload session.
    let manifest = push_image_blobs(&c, base, "app", 1).await;
    put_manifest(&c, base, "app", "v1", &manifest).await.expect(201);
    let blob = manifest_first_blob(&manifest);
    let r = send(c.post(format!("{base}/v2/app/blobs/uploads/"))).await;
    r.expect(202);
    let session = location(base, &r);
    let before = catalog(&c, base).await;

    let a = anonymous();
    let other = sha256(b"other manifest");
    let requests: Vec<(Method, String)> = vec![
        (Method::GET, "/v2/".into()),
        (Method::HEAD, "/v2/".into()),
        (Method::GET, "/v2/_catalog".into()),
        (Method::GET, "/v2/app/tags/list".into()),
        (Method::GET, "/v2/nonexistent/tags/list".into()),
        (Method::GET, format!("/v2/app/blobs/{blob}")),
        (Method::HEAD, format!("/v2/app/blobs/{blob}")),
        (Method::GET, format!("/v2/app/blobs/{ZERO_DIGEST}")),
        (Method::DELETE, format!("/v2/app/blobs/{blob}")),
        (Method::GET, "/v2/app/manifests/v1".into()),
        (Method::HEAD, "/v2/app/manifests/v1".into()),
        (Method::GET, "/v2/nonexistent/manifests/v1".into()),
        (Method::DELETE, "/v2/app/manifests/v1".into()),
        (Method::GET, format!("/v2/app/referrers/{}", sha256(&manifest))),
        (Method::POST, "/v2/app/blobs/uploads/".into()),
        (Method::POST, "/v2/brand-new/blobs/uploads/".into()),
        (Method::POST, format!("/v2/other/blobs/uploads/?mount={blob}&from=app")),
    ];
    for (m, path) in requests {
        let r = send(a.request(m, format!("{base}{path}"))).await;
        r.expect_unauthorized(&berth.addr);
    }
    // Writes with bodies, and the upload session's URL.
    let r =
        send(a.put(format!("{base}/v2/app/manifests/v2")).header("content-type", OCI_MANIFEST).body(manifest.clone()))
            .await;
    r.expect_unauthorized(&berth.addr);
    let r = send(
        a.put(format!("{base}/v2/app/manifests/{other}")).header("content-type", OCI_MANIFEST).body(manifest.clone()),
    )
    .await;
    r.expect_unauthorized(&berth.addr);
    let r = send(
        a.post(format!("{base}/v2/app/blobs/uploads/?digest={}", sha256(b"x")))
            .header("content-type", "application/octet-stream")
            .body("x"),
    )
    .await;
    r.expect_unauthorized(&berth.addr);
    for m in [Method::GET, Method::DELETE] {
        let r = send(a.request(m, &session)).await;
        r.expect_unauthorized(&berth.addr);
    }
    let r = send(a.patch(&session).header("content-type", "application/octet-stream").body("abc")).await;
    r.expect_unauthorized(&berth.addr);
    let r = send(
        a.put(with_query(&session, &format!("digest={}", sha256(b"abc"))))
            .header("content-type", "application/octet-stream")
            .body("abc"),
    )
    .await;
    r.expect_unauthorized(&berth.addr);

    // None of it changed anything.
    assert_eq!(catalog(&c, base).await, before);
    assert_eq!(tags(&c, base, "app").await, vec!["v1"]);
    assert_manifest(&c, base, "app", "v1", &manifest).await;
    let st = send(c.get(&session)).await;
    st.expect(204);
    assert!(
        matches!(st.header("range").as_deref(), None | Some("0-0")),
        "session untouched by the unauthenticated PATCH/PUT: Range {:?}",
        st.header("range")
    );
    let h = send(c.head(format!("{base}/v2/app/blobs/{blob}"))).await;
    h.expect(200);
}

fn manifest_first_blob(manifest: &[u8]) -> String {
    let v: Value = serde_json::from_slice(manifest).unwrap();
    v["layers"][0]["digest"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn invalid_credentials_are_401() {
    let berth = Berth::start();
    // A token minted by another deployment (another server key) for the same account and key.
    let elsewhere = Berth::start();
    let base = berth.url.as_str();
    let c = berth.client();
    let manifest = push_image_blobs(&c, base, "app", 2).await;
    put_manifest(&c, base, "app", "v1", &manifest).await.expect(201);
    let blob = manifest_first_blob(&manifest);
    let pw = berth.password.clone();
    assert_ne!(pw, elsewhere.password);
    let b64 = common::base64_encode;
    let variants: Vec<(&str, String)> = vec![
        ("garbage", "Basic !!!not base64!!!".into()),
        ("empty Basic", "Basic ".into()),
        ("garbage password", common::basic_auth("AWS", "garbage")),
        ("empty password", common::basic_auth("AWS", "")),
        ("no user", format!("Basic {}", b64(pw.as_bytes()))),
        ("wrong user", common::basic_auth("admin", &pw)),
        ("lowercase user", common::basic_auth("aws", &pw)),
        ("forged (one byte changed in the middle)", common::basic_auth("AWS", &with_char_changed(&pw, pw.len() / 2))),
        ("forged (one byte changed near the start)", common::basic_auth("AWS", &with_char_changed(&pw, 10))),
        (
            "forged (one byte changed near the end)",
            common::basic_auth("AWS", &with_char_changed(&pw, pw.trim_end_matches('=').len() - 2)),
        ),
        ("truncated", common::basic_auth("AWS", &pw[..pw.len() - 4])),
        ("another deployment's token", common::basic_auth("AWS", &elsewhere.password)),
        ("Bearer instead of Basic", format!("Bearer {pw}")),
        ("the access key secret as password", common::basic_auth("AWS", SECRET_ACCESS_KEY)),
    ];
    for (label, auth) in &variants {
        let bad = authed(auth);
        for (m, path) in [
            (Method::GET, "/v2/".to_string()),
            (Method::GET, format!("/v2/app/blobs/{blob}")),
            (Method::HEAD, "/v2/app/manifests/v1".to_string()),
        ] {
            let r = send(bad.request(m, format!("{base}{path}"))).await;
            assert_eq!(r.status, 401, "{label}: {} got {}", r.what, r.status);
            r.expect_unauthorized(&berth.addr);
        }
        let r = put_manifest(&bad, base, "app", "forged", &manifest).await;
        assert_eq!(r.status, 401, "{label}: {} got {}", r.what, r.status);
        r.expect_unauthorized(&berth.addr);
    }
    // Nothing was pushed, and the real password still works.
    assert_eq!(tags(&c, base, "app").await, vec!["v1"]);
    send(c.get(format!("{base}/v2/"))).await.expect(200);
}

#[tokio::test]
async fn docker_login_style_challenge_then_basic_auth() {
    let mut berth = Berth::start();
    let base = berth.url.as_str();
    // 1. Probe without credentials: 401 and a Basic challenge.
    let r = send(anonymous().get(format!("{base}/v2/"))).await;
    r.expect_unauthorized(&berth.addr);
    let challenge = r.header("www-authenticate").unwrap();
    let (scheme, params) = challenge.split_once(' ').unwrap();
    assert_eq!(scheme, "Basic");
    let params: Vec<(&str, &str)> = params
        .split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.trim(), v.trim().trim_matches('"'))
        })
        .collect();
    assert_eq!(params, vec![("realm", format!("http://{}/", berth.addr).as_str()), ("service", "ecr.amazonaws.com")]);
    // 2. Retry with Basic AWS:<password>: 200.
    let r = send(anonymous().get(format!("{base}/v2/")).basic_auth("AWS", Some(&berth.password))).await;
    r.expect(200);
    // The same credentials work for everything else, e.g. a push and pull.
    let c = berth.client();
    let manifest = push_image_blobs(&c, base, "login/flow", 3).await;
    put_manifest(&c, base, "login/flow", "v1", &manifest).await.expect(201);
    assert_manifest(&c, base, "login/flow", "v1", &manifest).await;
    // The password is stable across a restart of the server (same data dir).
    berth.restart_after_kill9();
    let r = send(berth.client().get(format!("{}/v2/", berth.url))).await;
    r.expect(200);
    // A fresh password works too.
    let again = berth.login_password(None);
    let r = send(authed(&common::basic_auth("AWS", &again)).get(format!("{}/v2/", berth.url))).await;
    r.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_login_with_the_password_works_and_a_wrong_one_is_refused() {
    if !tools_present("skopeo_login_with_the_password_works_and_a_wrong_one_is_refused", &["skopeo"]) {
        return;
    }
    let berth = Berth::start();
    let c = berth.client();
    let manifest = push_image_blobs(&c, &berth.url, "login/skopeo", 4).await;
    put_manifest(&c, &berth.url, "login/skopeo", "v1", &manifest).await.expect(201);
    let tmp = tempfile::tempdir().unwrap();
    let authfile = tmp.path().join("auth.json");
    let af = authfile.to_str().unwrap();
    let remote = format!("docker://{}/login/skopeo:v1", berth.addr);

    let wrong = with_char_changed(&berth.password, berth.password.len() / 2);
    let out = run_raw(
        "skopeo",
        &["login", "--tls-verify=false", "--authfile", af, "-u", "AWS", "--password-stdin", &berth.addr],
        &[],
        Some(wrong.as_bytes()),
    )
    .await;
    assert!(!out.status.success(), "skopeo login with a forged password succeeded");
    // Without credentials skopeo cannot read the image.
    let out = run_raw("skopeo", &["inspect", "--raw", "--tls-verify=false", "--no-creds", &remote], &[], None).await;
    assert!(!out.status.success(), "anonymous skopeo inspect succeeded");
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("unauthorized") || err.contains("authentication required"), "anonymous skopeo inspect: {err}");

    let out = run_raw(
        "skopeo",
        &["login", "--tls-verify=false", "--authfile", af, "-u", "AWS", "--password-stdin", &berth.addr],
        &[],
        Some(berth.password.as_bytes()),
    )
    .await;
    assert_success("skopeo login", &out);
    let raw = run("skopeo", &["inspect", "--raw", "--tls-verify=false", "--authfile", af, &remote]).await;
    assert_eq!(raw, manifest);
    run("skopeo", &["logout", "--authfile", af, &berth.addr]).await;
}

#[tokio::test]
async fn aws_cli_get_login_password_works_against_the_data_plane() {
    if !tools_present("aws_cli_get_login_password_works_against_the_data_plane", &["aws"]) {
        return;
    }
    let berth = Berth::start();
    let out = run_raw(
        "aws",
        &["ecr", "get-login-password", "--endpoint-url", &berth.url, "--region", REGION],
        &[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
            ("AWS_SESSION_TOKEN", ""),
            ("AWS_PROFILE", ""),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
        None,
    )
    .await;
    assert_success("aws ecr get-login-password", &out);
    let pw = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(!pw.is_empty());
    let claims = claims_of(&pw);
    assert_eq!(claims["account_id"], ACCOUNT_ID, "claims {claims}");
    let c = authed(&common::basic_auth("AWS", &pw));
    send(c.get(format!("{}/v2/", berth.url))).await.expect(200);
    let manifest = push_image_blobs(&c, &berth.url, "aws/cli", 5).await;
    put_manifest(&c, &berth.url, "aws/cli", "v1", &manifest).await.expect(201);
    assert_manifest(&berth.client(), &berth.url, "aws/cli", "v1", &manifest).await;
}

// =============================================================================================
// 403: other accounts, expired tokens
// =============================================================================================

#[tokio::test]
async fn token_of_another_account_is_403_denied() {
    // Another account's registry is addressed by its per-account host (the plain address serves
    // each caller its own account's registry).
    let berth = Berth::start_with_env(&[("BERTH_REGISTRY_DOMAIN", "registry.test")]);
    let base = berth.url.as_str();
    let c = berth.client();
    let manifest = push_image_blobs(&c, base, "app", 6).await;
    put_manifest(&c, base, "app", "v1", &manifest).await.expect(201);
    let blob = manifest_first_blob(&manifest);

    let out = berth.admin_ok(&["create-account", "--account-id", "222222222222"]);
    let creds: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("create-account printed no JSON ({e}): {out}"));
    assert_eq!(creds["AccountId"], "222222222222", "{creds}");
    assert!(creds["AccessKeyId"].as_str().is_some_and(|k| !k.is_empty()), "{creds}");
    assert!(creds["SecretAccessKey"].as_str().is_some_and(|k| !k.is_empty()), "{creds}");
    let pw2 = berth.login_password(Some("222222222222"));
    assert_ne!(pw2, berth.password);
    assert_eq!(claims_of(&pw2)["account_id"], "222222222222");

    let port = berth.addr.rsplit_once(':').unwrap().1;
    let a_host = format!("{}.dkr.ecr.us-east-1.registry.test:{port}", common::ACCOUNT_ID);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::HOST, a_host.parse().unwrap());
    headers.insert(reqwest::header::AUTHORIZATION, common::basic_auth("AWS", &pw2).parse().unwrap());
    let other = reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    // A valid token logs in anywhere (as with ECR: `docker login` only checks the token);
    // access is then decided per repository.
    let login = send(other.request(Method::GET, format!("{base}/v2/"))).await;
    assert_eq!(login.status, 200, "{}", login.text());
    // The catalog lists only what the caller may see: nothing of this registry.
    let cat = send(other.request(Method::GET, format!("{base}/v2/_catalog"))).await;
    assert_eq!(cat.status, 200, "{}", cat.text());
    assert_eq!(serde_json::from_slice::<Value>(&cat.body).unwrap(), serde_json::json!({"repositories": []}));
    let mut results = Vec::new();
    for (m, path) in [
        (Method::GET, "/v2/app/tags/list".to_string()),
        (Method::GET, format!("/v2/app/blobs/{blob}")),
        (Method::HEAD, format!("/v2/app/blobs/{blob}")),
        (Method::GET, "/v2/app/manifests/v1".to_string()),
        (Method::HEAD, "/v2/app/manifests/v1".to_string()),
        (Method::DELETE, "/v2/app/manifests/v1".to_string()),
        (Method::POST, "/v2/app/blobs/uploads/".to_string()),
    ] {
        let r = send(other.request(m, format!("{base}{path}"))).await;
        results.push(r);
    }
    results.push(put_manifest(&other, base, "app", "v2", &manifest).await);
    // Every request is refused: 403 with one DENIED error (HEAD: no body). Collected first so a
    // failure lists every request that deviates.
    let deviations: Vec<String> = results
        .iter()
        .filter(|r| {
            let body_ok = if r.what.starts_with("HEAD ") {
                r.body.is_empty()
            } else {
                serde_json::from_slice::<Value>(&r.body)
                    .is_ok_and(|v| v["errors"].as_array().is_some_and(|e| e.len() == 1 && e[0]["code"] == "DENIED"))
            };
            r.status != 403 || !body_ok
        })
        .map(|r| format!("{}: expected 403 DENIED, got {} {}", r.what, r.status, r.text()))
        .collect();
    assert!(deviations.is_empty(), "another account's token:\n{}", deviations.join("\n"));
    // Nothing changed.
    assert_eq!(tags(&c, base, "app").await, vec!["v1"]);
    assert_manifest(&c, base, "app", "v1", &manifest).await;
}

/// Expiry needs a token minted 12 hours ago. The server offers no clock control, so the test
/// mints one itself, as the operator could: with the deployment's server key
/// (`<data_dir>/server.key`) and the token format of `berth-auth` (`token.rs`). It first checks
/// that it reproduces the server's own password byte for byte, so a format change shows up as
/// that check failing, not as a wrong verdict on expiry.
#[tokio::test]
async fn expired_token_is_403_denied() {
    let berth = Berth::start();
    let base = berth.url.as_str();
    let key_hex =
        std::fs::read_to_string(berth.data_dir().join("server.key")).expect("<data_dir>/server.key (the server key)");
    let server_key = hex::decode(key_hex.trim()).expect("server.key is hex");
    let claims = claims_of(&berth.password);
    assert_eq!(
        mint_password(&server_key, &claims),
        berth.password,
        "the test's token minting no longer matches the server's (claims {claims})"
    );
    let now = now_secs();
    let mint_at = |issued: u64, expires: u64| {
        let mut cl = claims.clone();
        cl["issued_at"] = json!(issued);
        cl["expires_at"] = json!(expires);
        mint_password(&server_key, &cl)
    };
    // Control: a self-minted token that is still valid is accepted.
    let fresh = mint_at(now - 60, now - 60 + 12 * 3600);
    let r = send(authed(&common::basic_auth("AWS", &fresh)).get(format!("{base}/v2/"))).await;
    r.expect(200);

    for (label, pw) in [
        ("expired an hour ago", mint_at(now - 13 * 3600, now - 3600)),
        ("expired a second ago", mint_at(now - 12 * 3600 - 2, now - 2)),
    ] {
        let c = authed(&common::basic_auth("AWS", &pw));
        for (m, path) in [
            (Method::GET, "/v2/".to_string()),
            (Method::GET, "/v2/app/tags/list".to_string()),
            (Method::HEAD, "/v2/app/manifests/v1".to_string()),
            (Method::POST, "/v2/app/blobs/uploads/".to_string()),
        ] {
            let r = send(c.request(m, format!("{base}{path}"))).await;
            assert_eq!(r.status, 403, "{label}: {} got {} {}", r.what, r.status, r.text());
            r.expect_error(403, "DENIED", Some(EXPIRED_MESSAGE));
        }
    }
    // A forged expiry (a valid token with its expiration moved, MAC not redone) is still
    // unauthenticated, not "expired".
    let envelope: Value = serde_json::from_slice(&common::base64_decode(&berth.password).unwrap()).unwrap();
    let moved = format!(
        r#"{{"payload":{},"datakey":{},"version":"2","type":"DATA_KEY","expiration":{}}}"#,
        envelope["payload"],
        envelope["datakey"],
        now - 3600
    );
    let forged = common::base64_encode(moved.as_bytes());
    let r = send(authed(&common::basic_auth("AWS", &forged)).get(format!("{base}/v2/"))).await;
    r.expect_unauthorized(&berth.addr);
}

// =============================================================================================
// Repositories must exist (unless create-on-push)
// =============================================================================================

#[tokio::test]
async fn push_to_a_missing_repository_is_name_unknown_without_create_on_push() {
    let berth = Berth::start_strict();
    let base = berth.url.as_str();
    let c = berth.client();

    // A source repository to mount from (made through the admin CLI).
    let created = berth.create_repo("src", "MUTABLE");
    let repo = repository_of(&created);
    assert_eq!(repo["repositoryName"], "src", "{created}");
    assert_eq!(repo["registryId"], ACCOUNT_ID, "{created}");
    assert_eq!(repo["imageTagMutability"], "MUTABLE", "{created}");
    let layer = pattern(7, 2048);
    let layer_digest = push_blob(&c, base, "src", &layer).await;

    for name in ["app", "team/app"] {
        let msg = name_unknown_message(name);
        let r = send(c.post(format!("{base}/v2/{name}/blobs/uploads/"))).await;
        r.expect_error(404, "NAME_UNKNOWN", Some(&msg));
        let r = send(
            c.post(format!("{base}/v2/{name}/blobs/uploads/?digest={}", sha256(&layer)))
                .header("content-type", "application/octet-stream")
                .body(layer.clone()),
        )
        .await;
        r.expect_error(404, "NAME_UNKNOWN", Some(&msg));
        let r = send(c.post(format!("{base}/v2/{name}/blobs/uploads/?mount={layer_digest}&from=src"))).await;
        r.expect_error(404, "NAME_UNKNOWN", Some(&msg));
        let m = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                "digest": sha256(b"{}"), "size": 2},
            "layers": [],
        }))
        .unwrap();
        let r = put_manifest(&c, base, name, "v1", &m).await;
        r.expect_error(404, "NAME_UNKNOWN", Some(&msg));
        let r = put_manifest(&c, base, name, &sha256(&m), &m).await;
        r.expect_error(404, "NAME_UNKNOWN", Some(&msg));
    }
    // Nothing appeared.
    assert_eq!(catalog(&c, base).await, vec!["src"]);

    // Once created, the same pushes work.
    for name in ["app", "team/app"] {
        let created = berth.create_repo(name, "MUTABLE");
        assert_eq!(repository_of(&created)["repositoryName"], name, "{created}");
        let r = send(c.post(format!("{base}/v2/{name}/blobs/uploads/?mount={layer_digest}&from=src"))).await;
        // The caller may read `src`, which holds the blob: mounted (201), not a session (202).
        r.expect(201);
        assert_eq!(r.header("location"), Some(format!("/v2/{name}/blobs/{layer_digest}")), "{}", r.what);
        let manifest = push_image_blobs(&c, base, name, 8).await;
        put_manifest(&c, base, name, "v1", &manifest).await.expect(201);
        assert_manifest(&c, base, name, "v1", &manifest).await;
        assert_eq!(tags(&c, base, name).await, vec!["v1"]);
    }
    assert_eq!(catalog(&c, base).await, vec!["app", "src", "team/app"]);
}

#[tokio::test]
async fn create_on_push_creates_missing_repositories() {
    let berth = Berth::start_with_env(&[("BERTH_CREATE_ON_PUSH", "true")]);
    let base = berth.url.as_str();
    let c = berth.client();
    let manifest = push_image_blobs(&c, base, "auto/made", 9).await;
    put_manifest(&c, base, "auto/made", "v1", &manifest).await.expect(201);
    assert_eq!(catalog(&c, base).await, vec!["auto/made"]);
    assert_manifest(&c, base, "auto/made", "v1", &manifest).await;
}

// =============================================================================================
// Tag immutability
// =============================================================================================

#[tokio::test]
async fn immutable_repository_refuses_to_move_or_repush_a_tag() {
    let berth = Berth::start_strict();
    let base = berth.url.as_str();
    let c = berth.client();
    let created = berth.create_repo("frozen", "IMMUTABLE");
    assert_eq!(repository_of(&created)["imageTagMutability"], "IMMUTABLE", "{created}");
    let a = push_image_blobs(&c, base, "frozen", 10).await;
    let b = push_image_blobs(&c, base, "frozen", 11).await;
    let msg = tag_immutable_message("v1", "frozen");

    put_manifest(&c, base, "frozen", "v1", &a).await.expect(201);
    // The same manifest again under the same tag: refused, like ECR.
    let r = put_manifest(&c, base, "frozen", "v1", &a).await;
    r.expect_error(400, "TAG_INVALID", Some(&msg));
    // Another manifest under the tag: refused.
    let r = put_manifest(&c, base, "frozen", "v1", &b).await;
    r.expect_error(400, "TAG_INVALID", Some(&msg));
    assert_manifest(&c, base, "frozen", "v1", &a).await;
    let g = get_manifest(&c, base, "frozen", &sha256(&b)).await;
    g.expect(404);

    // By digest: unaffected (new and repeated).
    let r = put_manifest(&c, base, "frozen", &sha256(&b), &b).await;
    r.expect(201);
    let r = put_manifest(&c, base, "frozen", &sha256(&b), &b).await;
    r.expect(201);
    let r = put_manifest(&c, base, "frozen", &sha256(&a), &a).await;
    r.expect(201);
    assert_manifest(&c, base, "frozen", &sha256(&b), &b).await;
    // A new tag is fine, once.
    put_manifest(&c, base, "frozen", "v2", &b).await.expect(201);
    let r = put_manifest(&c, base, "frozen", "v2", &a).await;
    r.expect_error(400, "TAG_INVALID", Some(&tag_immutable_message("v2", "frozen")));
    assert_eq!(tags(&c, base, "frozen").await, vec!["v1", "v2"]);
    assert_manifest(&c, base, "frozen", "v1", &a).await;
    assert_manifest(&c, base, "frozen", "v2", &b).await;

    // Nested names appear in the message as they are.
    berth.create_repo("team/frozen", "IMMUTABLE");
    let a2 = push_image_blobs(&c, base, "team/frozen", 12).await;
    put_manifest(&c, base, "team/frozen", "latest", &a2).await.expect(201);
    let r = put_manifest(&c, base, "team/frozen", "latest", &a2).await;
    r.expect_error(400, "TAG_INVALID", Some(&tag_immutable_message("latest", "team/frozen")));
}

/// OCI 1.1 `PUT /manifests/<digest>?tag=...` tags too; in an immutable repository an existing
/// tag cannot be moved that way either.
#[tokio::test]
async fn immutable_repository_refuses_existing_tags_in_tag_parameters() {
    let berth = Berth::start_strict();
    let base = berth.url.as_str();
    let c = berth.client();
    berth.create_repo("frozen", "IMMUTABLE");
    let a = push_image_blobs(&c, base, "frozen", 13).await;
    let b = push_image_blobs(&c, base, "frozen", 14).await;
    put_manifest(&c, base, "frozen", "v1", &a).await.expect(201);
    let r = put_manifest(&c, base, "frozen", &format!("{}?tag=v1", sha256(&b)), &b).await;
    r.expect_error(400, "TAG_INVALID", Some(&tag_immutable_message("v1", "frozen")));
    assert_manifest(&c, base, "frozen", "v1", &a).await;
    // A new tag by parameter works.
    let r = put_manifest(&c, base, "frozen", &format!("{}?tag=v2", sha256(&b)), &b).await;
    r.expect(201);
    assert_manifest(&c, base, "frozen", "v2", &b).await;
}

/// `*_WITH_EXCLUSION` settings with wildcard filters (made with `berth admin
/// create-repository --exclusion-filter`), and the settings survive a restart.
#[tokio::test]
async fn tag_mutability_exclusion_filters() {
    let mut berth = Berth::start_strict();
    let out = berth.admin_ok(&[
        "create-repository",
        "--repository-name",
        "mostly-frozen",
        "--image-tag-mutability",
        "IMMUTABLE_WITH_EXCLUSION",
        "--exclusion-filter",
        "latest",
        "--exclusion-filter",
        "dev-*",
    ]);
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(repository_of(&created)["imageTagMutability"], "IMMUTABLE_WITH_EXCLUSION", "{created}");
    let out = berth.admin_ok(&[
        "create-repository",
        "--repository-name",
        "mostly-fluid",
        "--image-tag-mutability",
        "MUTABLE_WITH_EXCLUSION",
        "--exclusion-filter",
        "release-*",
    ]);
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(repository_of(&created)["imageTagMutability"], "MUTABLE_WITH_EXCLUSION", "{created}");

    for round in 0..2 {
        if round == 1 {
            berth.restart_after_kill9();
        }
        let base = berth.url.clone();
        let c = berth.client();
        let seed = 100 + round * 10;
        // (repo, tag, may move)
        let cases = [
            ("mostly-frozen", format!("v{round}"), false),
            ("mostly-frozen", format!("dev-{round}"), true),
            // Pushed in both rounds: the second round moves it again.
            ("mostly-frozen", "latest".to_string(), true),
            ("mostly-frozen", format!("latest-{round}"), false),
            ("mostly-frozen", format!("xdev-{round}"), false),
            ("mostly-fluid", format!("release-{round}"), false),
            ("mostly-fluid", format!("v{round}"), true),
            ("mostly-fluid", format!("prerelease-{round}"), true),
        ];
        for (i, (repo, tag, may_move)) in cases.iter().enumerate() {
            let a = push_image_blobs(&c, &base, repo, seed + 2 * i as u64).await;
            let b = push_image_blobs(&c, &base, repo, seed + 2 * i as u64 + 1).await;
            put_manifest(&c, &base, repo, tag, &a).await.expect(201);
            let r = put_manifest(&c, &base, repo, tag, &b).await;
            if *may_move {
                r.expect(201);
                assert_manifest(&c, &base, repo, tag, &b).await;
            } else {
                r.expect_error(400, "TAG_INVALID", Some(&tag_immutable_message(tag, repo)));
                assert_manifest(&c, &base, repo, tag, &a).await;
            }
        }
    }
}

#[tokio::test]
async fn mutable_repository_moves_tags() {
    let berth = Berth::start_strict();
    let base = berth.url.as_str();
    let c = berth.client();
    let created = berth.create_repo("fluid", "MUTABLE");
    assert_eq!(repository_of(&created)["imageTagMutability"], "MUTABLE", "{created}");
    let a = push_image_blobs(&c, base, "fluid", 15).await;
    let b = push_image_blobs(&c, base, "fluid", 16).await;
    put_manifest(&c, base, "fluid", "v1", &a).await.expect(201);
    put_manifest(&c, base, "fluid", "v1", &a).await.expect(201);
    assert_manifest(&c, base, "fluid", "v1", &a).await;
    put_manifest(&c, base, "fluid", "v1", &b).await.expect(201);
    assert_manifest(&c, base, "fluid", "v1", &b).await;
    assert_eq!(tags(&c, base, "fluid").await, vec!["v1"]);
    // The create-on-push default for repositories made by a push is mutable as well.
    let berth2 = Berth::start();
    let c2 = berth2.client();
    let a = push_image_blobs(&c2, &berth2.url, "auto", 17).await;
    let b = push_image_blobs(&c2, &berth2.url, "auto", 18).await;
    put_manifest(&c2, &berth2.url, "auto", "v1", &a).await.expect(201);
    put_manifest(&c2, &berth2.url, "auto", "v1", &b).await.expect(201);
    assert_manifest(&c2, &berth2.url, "auto", "v1", &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_cannot_overwrite_a_tag_in_an_immutable_repository() {
    if !tools_present("skopeo_cannot_overwrite_a_tag_in_an_immutable_repository", &["umoci", "skopeo"]) {
        return;
    }
    let berth = Berth::start();
    berth.create_repo("team/frozen", "IMMUTABLE");
    let tmp = tempfile::tempdir().unwrap();
    let (w1, w2) = (tmp.path().join("one"), tmp.path().join("two"));
    std::fs::create_dir_all(&w1).unwrap();
    std::fs::create_dir_all(&w2).unwrap();
    let (src1, bytes1) = umoci_image(
        &w1,
        "v1",
        "first image
",
    )
    .await;
    let (src2, bytes2) = umoci_image(
        &w2,
        "v1",
        "second image
",
    )
    .await;
    assert_ne!(bytes1, bytes2);
    let creds = format!("AWS:{}", berth.password);
    let dest = |tag: &str| format!("docker://{}/team/frozen:{tag}", berth.addr);
    let copy = |src: String, dst: String| {
        let creds = creds.clone();
        async move {
            run_raw(
                "skopeo",
                &["copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", &creds, &src, &dst],
                &[],
                None,
            )
            .await
        }
    };

    let out = copy(src1.clone(), dest("v1")).await;
    assert_success("skopeo copy first image to :v1", &out);
    let c = berth.client();
    assert_manifest(&c, &berth.url, "team/frozen", "v1", &bytes1).await;

    let msg = tag_immutable_message("v1", "team/frozen");
    for (label, src) in [("another image", src2.clone()), ("the same image", src1.clone())] {
        let out = copy(src, dest("v1")).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "skopeo copy of {label} over an immutable tag succeeded:\n{err}");
        assert!(
            err.contains(&format!("tag invalid: {msg}")),
            "skopeo copy of {label} over an immutable tag: expected \"tag invalid: {msg}\" in:\n{err}"
        );
    }
    assert_manifest(&c, &berth.url, "team/frozen", "v1", &bytes1).await;

    // A new tag takes the second image.
    let out = copy(src2, dest("v2")).await;
    assert_success("skopeo copy second image to :v2", &out);
    assert_manifest(&c, &berth.url, "team/frozen", "v2", &bytes2).await;
    assert_eq!(tags(&c, &berth.url, "team/frozen").await, vec!["v1", "v2"]);
}
