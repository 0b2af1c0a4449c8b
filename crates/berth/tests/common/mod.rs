//! Test harness: starts the real `berth` binary on an ephemeral 127.0.0.1 port with a temp
//! data dir, and helpers shared by the integration tests.
//!
//! The data plane needs ECR-style authentication (`Authorization: Basic base64("AWS:" +
//! password)`). Every server the harness starts has a fixed default account and root access
//! key ([`ACCOUNT_ID`], [`ACCESS_KEY_ID`], [`SECRET_ACCESS_KEY`]); once it listens, the
//! harness asks `berth admin get-login-password` for a password, and [`Berth::client`] sends
//! it on every request. [`Berth::start`] also turns on create-on-push (so pushes to new
//! repositories work as before); [`Berth::start_strict`] does not.
//!
//! Backends: `BERTH_TEST_BACKEND=postgres` puts each server's metadata in a fresh PostgreSQL
//! database ([`postgres_database`]); `BERTH_TEST_STORAGE=s3` puts its blobs under a fresh prefix
//! of an S3-compatible bucket ([`s3_storage`]; `scripts/s3.sh` starts one).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The default account of every test server.
pub const ACCOUNT_ID: &str = "111111111111";
/// Its root access key (the AWS documentation's example key).
pub const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
pub const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
/// The region of the data plane (the server's default).
pub const REGION: &str = "us-east-1";

/// The environment every test server (and every `berth admin` run against its data) gets.
fn base_env() -> Vec<(String, String)> {
    [
        ("BERTH_ACCOUNT_ID", ACCOUNT_ID),
        ("BERTH_ROOT_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("BERTH_ROOT_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A running `berth serve` process. Killed (SIGKILL) on drop.
pub struct Berth {
    pub child: Option<Child>,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// Environment of the server process (and of `berth admin` runs on its data).
    pub extra_env: Vec<(String, String)>,
    /// Registry password of the default account's root (`berth admin get-login-password`).
    pub password: String,
    /// `http://127.0.0.1:PORT` of the admin listener, when `BERTH_ADMIN_LISTEN` is set.
    pub admin_url: Option<String>,
}

/// Path of the `berth` binary under test.
pub fn berth_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}

impl Berth {
    /// Start a server on a fresh temp data dir, with create-on-push on (pushes to a repository
    /// that does not exist create it).
    pub fn start() -> Berth {
        Self::start_with_env(&[])
    }

    /// Start a server without create-on-push: pushes need a repository made first
    /// ([`Berth::create_repo`]).
    pub fn start_strict() -> Berth {
        Self::start_env(base_env())
    }

    /// Start a server (create-on-push on) with extra environment variables, which override
    /// the defaults.
    pub fn start_with_env(env: &[(&str, &str)]) -> Berth {
        let mut all = base_env();
        all.push(("BERTH_CREATE_ON_PUSH".into(), "true".into()));
        for (k, v) in env {
            all.retain(|(key, _)| key != k);
            all.push((k.to_string(), v.to_string()));
        }
        Self::start_env(all)
    }

    fn start_env(mut env: Vec<(String, String)>) -> Berth {
        if let Some(url) = postgres_database() {
            env.retain(|(k, _)| k != "BERTH_METADATA");
            env.push(("BERTH_METADATA".into(), url));
        }
        if let Some(url) = s3_storage() {
            env.retain(|(k, _)| k != "BERTH_STORAGE");
            env.push(("BERTH_STORAGE".into(), url));
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        let mut b = Berth {
            child: None,
            addr: String::new(),
            url: String::new(),
            data_dir,
            _tmp: Some(tmp),
            extra_env: env,
            password: String::new(),
            admin_url: None,
        };
        b.spawn(None);
        b.password = b.login_password(None);
        b
    }

    /// Start another `berth serve` process on the same data dir and metadata database (a
    /// second node), with the same environment except for `env`, which overrides it.
    pub fn another_node(&self, env: &[(&str, &str)]) -> Berth {
        let mut extra_env = self.extra_env.clone();
        for (k, v) in env {
            extra_env.retain(|(key, _)| key != k);
            extra_env.push((k.to_string(), v.to_string()));
        }
        let mut b = Berth {
            child: None,
            addr: String::new(),
            url: String::new(),
            data_dir: self.data_dir.clone(),
            _tmp: None,
            extra_env,
            password: self.password.clone(),
            admin_url: None,
        };
        b.spawn(None);
        b
    }

    /// Another node of the same deployment: a second `berth serve` with its own (empty) data
    /// dir but the same environment (so the same metadata database and blob storage) and the
    /// same server and master keys. Only a deployment with shared metadata and storage (PostgreSQL and S3)
    /// makes it see the first node's data.
    pub fn separate_node(&self) -> Berth {
        let key = match self.extra_env.iter().find(|(k, _)| k == "BERTH_SERVER_KEY") {
            Some((_, v)) => v.clone(),
            None => std::fs::read_to_string(self.data_dir.join("server.key")).expect("<data_dir>/server.key"),
        };
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut env = self.extra_env.clone();
        env.retain(|(k, _)| k != "BERTH_SERVER_KEY");
        env.push(("BERTH_SERVER_KEY".into(), key.trim().to_string()));
        // And the same master key (it seals the KMS keys and data keys they share).
        if !env.iter().any(|(k, _)| k == "BERTH_MASTER_KEY_FILE") {
            let master = self.data_dir.join("master.key");
            env.push(("BERTH_MASTER_KEY_FILE".into(), master.display().to_string()));
        }
        let mut b = Berth {
            child: None,
            addr: String::new(),
            url: String::new(),
            data_dir: tmp.path().join("data"),
            _tmp: Some(tmp),
            extra_env: env,
            password: self.password.clone(),
            admin_url: None,
        };
        b.spawn(None);
        b
    }

    /// Runs `berth admin ARGS --data-dir <data dir>` with the server's environment.
    pub fn admin(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["admin"];
        all.extend_from_slice(args);
        self.cli(&all)
    }

    /// Runs `berth ARGS --data-dir <data dir>` with the server's environment.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.cli_command(args).output().expect("run berth")
    }

    /// `berth ARGS --data-dir <data dir>` with the server's environment, to run (repeatedly).
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(berth_bin());
        cmd.args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env_remove("BERTH_CONFIG")
            .env_remove("BERTH_DATA_DIR")
            .env_remove("BERTH_LISTEN")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `berth admin ARGS`, asserts success, returns its stdout.
    pub fn admin_ok(&self, args: &[&str]) -> String {
        let out = self.admin(args);
        assert!(
            out.status.success(),
            "`berth admin {}` failed with {}\n--- stdout\n{}\n--- stderr\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// A registry password (`berth admin get-login-password`) for the root of `account_id`
    /// (the default account when `None`).
    pub fn login_password(&self, account_id: Option<&str>) -> String {
        let mut args = vec!["get-login-password"];
        if let Some(a) = account_id {
            args.extend(["--account-id", a]);
        }
        let out = self.admin_ok(&args);
        let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "get-login-password must print exactly one line: {out:?}");
        lines[0].trim().to_string()
    }

    /// Creates a repository in the default account (`berth admin create-repository`) with the
    /// given tag mutability (`MUTABLE`, `IMMUTABLE`, ...); returns the printed JSON.
    pub fn create_repo(&self, name: &str, mutability: &str) -> serde_json::Value {
        let out =
            self.admin_ok(&["create-repository", "--repository-name", name, "--image-tag-mutability", mutability]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("create-repository printed no JSON ({e}): {out}"))
    }

    /// `Basic base64("AWS:" + password)`.
    pub fn basic_auth_header(&self) -> String {
        basic_auth("AWS", &self.password)
    }

    /// A reqwest client builder sending [`Berth::basic_auth_header`] on every request.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        auth_client_builder(&self.basic_auth_header())
    }

    /// A reqwest client (default redirect policy) that authenticates every request.
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().expect("reqwest client")
    }

    /// Start (or restart) the process on the same data dir. `addr` pins the listen address.
    pub fn spawn(&mut self, addr: Option<&str>) {
        let listen = addr.unwrap_or("127.0.0.1:0");
        let mut cmd = Command::new(berth_bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env_remove("BERTH_CONFIG")
            .env_remove("BERTH_CREATE_ON_PUSH")
            .env("RUST_LOG", std::env::var("BERTH_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // `BERTH_TEST_STDERR=<file>`: the server's log goes to that file (appended) instead.
        if let Some((_, f)) = self.extra_env.iter().find(|(k, _)| k == "BERTH_TEST_STDERR") {
            let file = std::fs::OpenOptions::new().create(true).append(true).open(f).expect("open the stderr file");
            cmd.stderr(Stdio::from(file));
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn berth");
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let addr = loop {
            line.clear();
            let n = reader.read_line(&mut line).expect("read berth stdout");
            assert!(n > 0, "berth exited before listening");
            if let Some(rest) = line.trim().strip_prefix("berth admin endpoints on ") {
                self.admin_url = Some(rest.to_string());
            }
            if let Some(rest) = line.trim().strip_prefix("berth listening on http://") {
                break rest.to_string();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        self.url = format!("http://{addr}");
        self.addr = addr;
        self.child = Some(child);
    }

    /// SIGKILL the process and wait for it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM the process and wait (bounded) for a clean exit; returns its exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        unsafe_kill(c.id() as i32, 15);
        for _ in 0..200 {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    /// Kill and start again on the same data dir and the same address.
    pub fn restart_after_kill9(&mut self) {
        self.kill9();
        let addr = self.addr.clone();
        self.spawn(Some(&addr));
    }

    /// Where the server's blobs are: its `BERTH_STORAGE` (an `s3://` URL with
    /// `BERTH_TEST_STORAGE=s3`), else its data dir.
    pub fn storage(&self) -> PathBuf {
        match self.extra_env.iter().find(|(k, _)| k == "BERTH_STORAGE") {
            Some((_, v)) if !v.is_empty() => PathBuf::from(v),
            _ => self.data_dir.clone(),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn unsafe_kill(pid: i32, sig: i32) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// `true` when an external command exists on PATH.
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd} >/dev/null 2>&1"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// sha256 digest string (`sha256:<hex>`) of bytes.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(ring::digest::digest(&ring::digest::SHA256, data)))
}

/// `Basic base64("<user>:<password>")`.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", base64_encode(format!("{user}:{password}").as_bytes()))
}

/// A reqwest client builder sending `Authorization: <auth>` on every request.
pub fn auth_client_builder(auth: &str) -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(auth).expect("header value");
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder().default_headers(headers)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 (padding required); `None` when malformed.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for (ci, chunk) in s.chunks(4).enumerate() {
        let last = ci == s.len() / 4 - 1;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            let v = B64.iter().position(|&x| x == c)? as u32;
            n = (n << 6) | v;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

/// With `BERTH_TEST_BACKEND=postgres`, a fresh database on the server `BERTH_TEST_POSTGRES_URL`
/// names (created with `psql`), so that every test server runs on PostgreSQL metadata.
pub fn postgres_database() -> Option<String> {
    if std::env::var("BERTH_TEST_BACKEND").ok().as_deref() != Some("postgres") {
        return None;
    }
    let url =
        std::env::var("BERTH_TEST_POSTGRES_URL").expect("BERTH_TEST_BACKEND=postgres needs BERTH_TEST_POSTGRES_URL");
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let db = format!(
        "berth_it_{}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let out = Command::new("psql")
        .args([url.as_str(), "-v", "ON_ERROR_STOP=1", "-q", "-c", &format!("CREATE DATABASE {db}")])
        .output()
        .expect("run psql");
    assert!(out.status.success(), "CREATE DATABASE failed: {}", String::from_utf8_lossy(&out.stderr));
    let base = url.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
    Some(format!("{base}/{db}"))
}

/// With `BERTH_TEST_STORAGE=s3`, `s3://<fresh bucket>/p` for one test server, so that its blobs
/// live in the S3-compatible server that `BERTH_S3_ENDPOINT` (with `BERTH_S3_ACCESS_KEY_ID`,
/// `BERTH_S3_SECRET_ACCESS_KEY`, passed on to the server) names. The server creates the bucket.
///
/// A bucket per server rather than a prefix per server in one bucket: s3s-fs answers every
/// listing by walking the whole bucket, so a shared bucket makes each upload slower as the suite
/// fills it. The key prefix is kept so that prefixed keys are exercised all the same; it is short
/// because s3s-fs keeps each object's metadata in a file named after the base64 of bucket and
/// key, and keys past ~160 bytes fail there (`blobs/sha512/xx/<128 hex>` already takes 144).
pub fn s3_storage() -> Option<String> {
    if std::env::var("BERTH_TEST_STORAGE").ok().as_deref() != Some("s3") {
        return None;
    }
    assert!(
        std::env::var("BERTH_S3_ENDPOINT").is_ok_and(|e| !e.is_empty()),
        "BERTH_TEST_STORAGE=s3 needs BERTH_S3_ENDPOINT (and credentials): see scripts/s3.sh"
    );
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let unique = (nanos ^ (u64::from(std::process::id()) << 24)) & 0xff_ffff_ffff;
    Some(format!("s3://it-{unique:010x}-{}/p", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)))
}

// ---- SigV4 signing primitives (the tests sign ECR requests themselves) ----------------------

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), data.as_bytes()).as_ref().to_vec()
}

/// Lowercase hex SHA-256 of `data`.
pub fn hex_sha256(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

/// `YYYYMMDDTHHMMSSZ` of epoch seconds (UTC).
pub fn amz_date(secs: u64) -> String {
    let secs = secs as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

// ---- A server outside the harness ------------------------------------------------------------

/// `berth serve` on `data_dir` with exactly `env` (no inherited `BERTH_*` setting, so never the
/// harness's PostgreSQL or S3), on a free port; returns the process and its base URL once it
/// listens. For tests that control the server's surroundings (its own database, a small disk).
pub fn spawn_plain(data_dir: &Path, env: &[(&str, &str)]) -> (std::process::Child, String) {
    let mut cmd = Command::new(berth_bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data_dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("BERTH_") {
            cmd.env_remove(&k);
        }
    }
    cmd.envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(if std::env::var("BERTH_TEST_PLAIN_STDERR").is_ok() { Stdio::inherit() } else { Stdio::null() });
    let mut child = cmd.spawn().expect("start berth");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let base = line.trim().strip_prefix("berth listening on ").expect("berth listening").to_string();
    (child, base)
}

/// `berth admin get-login-password` for a server started by [`spawn_plain`] with `env`.
pub fn plain_login_password(data_dir: &Path, env: &[(&str, &str)]) -> String {
    let mut admin = Command::new(berth_bin());
    admin.args(["admin", "get-login-password", "--data-dir"]).arg(data_dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("BERTH_") {
            admin.env_remove(&k);
        }
    }
    let out = admin.envs(env.iter().copied()).output().expect("berth admin");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// One ECR operation on `b`, SigV4-signed (service `ecr`, region `us-east-1`) with the access key
/// `key_id`/`secret`; returns the HTTP status and the JSON body.
pub async fn ecr_call(
    b: &Berth,
    key_id: &str,
    secret: &str,
    op: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    aws_json_call(b, key_id, secret, "ecr", &format!("AmazonEC2ContainerRegistry_V20150921.{op}"), body).await
}

/// One AWS JSON 1.1 call (`X-Amz-Target: target`) on `b`, SigV4-signed for `service` in
/// `us-east-1` with the access key `key_id`/`secret`; the HTTP status and the JSON body (the
/// answer must be `application/x-amz-json-1.1`).
pub async fn aws_json_call(
    b: &Berth,
    key_id: &str,
    secret: &str,
    service: &str,
    target: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    aws_json_call_in(b, "us-east-1", key_id, secret, service, target, body).await
}

/// [`aws_json_call`] signed for `region`.
pub async fn aws_json_call_in(
    b: &Berth,
    region: &str,
    key_id: &str,
    secret: &str,
    service: &str,
    target: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let body = body.to_string();
    let stamp = amz_date(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
    let day = &stamp[..8];
    let scope = format!("{day}/{region}/{service}/aws4_request");
    let signed = "content-type;host;x-amz-date;x-amz-target";
    let canonical = format!(
        "POST\n/\n\ncontent-type:application/x-amz-json-1.1\nhost:{}\nx-amz-date:{stamp}\nx-amz-target:{target}\n\n{signed}\n{}",
        b.addr,
        hex_sha256(body.as_bytes())
    );
    let to_sign = format!("AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}", hex_sha256(canonical.as_bytes()));
    let mut k = format!("AWS4{secret}").into_bytes();
    for part in [day, region, service, "aws4_request"] {
        k = hmac(&k, part);
    }
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={signed}, Signature={}",
        hex::encode(hmac(&k, &to_sign))
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/", b.url))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-date", &stamp)
        .header("x-amz-target", target)
        .header("authorization", auth)
        .body(body)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{target}: {e}"));
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["content-type"], "application/x-amz-json-1.1", "{target}");
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{target}: response is not JSON ({e}): {text}")))
}

/// Push a small OCI image (a config blob whose content depends on `seed`, no layers) to
/// `repo:tag` on `base` through the OCI API with client `c`, asserting each step; returns the
/// manifest's digest.
pub async fn push_small_image(c: &reqwest::Client, base: &str, repo: &str, tag: &str, seed: &str) -> String {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Env": [format!("SEED={seed}")]},
        "rootfs": {"type": "layers", "diff_ids": []},
    }))
    .unwrap();
    push(c, base, repo, tag, &config, &[]).await.unwrap_or_else(|e| panic!("{e}"))
}

/// An OCI error body with the request id taken out of each error's `detail` (asserting it is
/// there: a 36-character id), and a `detail` left empty by that turned back into `null`, so
/// tests can compare the rest exactly.
pub fn without_request_id(body: &serde_json::Value) -> serde_json::Value {
    let mut v = body.clone();
    for e in v["errors"].as_array_mut().unwrap_or_else(|| panic!("an OCI error body: {body}")) {
        let detail = e["detail"].as_object_mut().unwrap_or_else(|| panic!("detail is an object: {body}"));
        let id = detail.remove("requestId").unwrap_or_else(|| panic!("detail.requestId: {body}"));
        assert_eq!(id.as_str().map(str::len), Some(36), "a request id: {body}");
        if detail.is_empty() {
            e["detail"] = serde_json::Value::Null;
        }
    }
    v
}

/// Run `sql` directly on the server's metadata database (PostgreSQL when the server uses it,
/// else its SQLite file): for tests that stage states no API call makes.
#[allow(dead_code)]
pub async fn raw_sql(b: &Berth, sql: &str) {
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    match b.extra_env.iter().find(|(k, _)| k == "BERTH_METADATA").map(|(_, v)| v.clone()) {
        Some(url) => {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
        None => {
            let url = format!("sqlite://{}", b.data_dir.join("berth.db").display());
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

// ---- Pushing and pulling images made of given bytes ----------------------------------------

/// Upload `data` into `repo` (POST, then PUT with the digest); the status of the PUT.
pub async fn upload(c: &reqwest::Client, base: &str, repo: &str, data: &[u8]) -> Result<String, String> {
    let digest = sha256(data);
    let r = c.post(format!("{base}/v2/{repo}/blobs/uploads/")).send().await.map_err(|e| e.to_string())?;
    if r.status().as_u16() != 202 {
        return Err(format!("POST upload: {}", r.status()));
    }
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let loc = if loc.starts_with('/') { format!("{base}{loc}") } else { loc };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c.put(format!("{loc}{sep}digest={digest}")).body(data.to_vec()).send().await.map_err(|e| e.to_string())?;
    match r.status().as_u16() {
        201 => Ok(digest),
        s => Err(format!("PUT blob {digest}: {s} {}", r.text().await.unwrap_or_default())),
    }
}

/// Push an image whose layers are `layers` (each uploaded unless the repository has it, as
/// clients do after a HEAD) under `tag`; its manifest digest, or why the push failed.
pub async fn push(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    tag: &str,
    config: &[u8],
    layers: &[&[u8]],
) -> Result<String, String> {
    let cfg = upload(c, base, repo, config).await?;
    let mut descs = Vec::new();
    for l in layers {
        let d = sha256(l);
        let head = c.head(format!("{base}/v2/{repo}/blobs/{d}")).send().await.map_err(|e| e.to_string())?;
        if head.status().as_u16() != 200 {
            upload(c, base, repo, l).await?;
        }
        descs.push(
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": l.len()}),
        );
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    match r.status().as_u16() {
        201 => Ok(sha256(&manifest)),
        s => Err(format!("PUT manifest {repo}:{tag}: {s} {}", r.text().await.unwrap_or_default())),
    }
}

/// Pull `repo@reference` whole: the manifest, then every blob, each checked against its digest.
/// Returns the blob digests.
pub async fn pull_intact(c: &reqwest::Client, base: &str, repo: &str, reference: &str) -> Vec<String> {
    let r = c
        .get(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "GET {repo}:{reference}");
    let m: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let mut digests = vec![m["config"]["digest"].as_str().unwrap().to_string()];
    digests.extend(m["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()));
    for d in &digests {
        let r = c.get(format!("{base}/v2/{repo}/blobs/{d}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "GET blob {d} of {repo}:{reference}");
        assert_eq!(&sha256(&r.bytes().await.unwrap()), d, "blob {d} of {repo}:{reference} is intact");
    }
    digests
}

/// The digests whose bytes the blob store at `location` holds: a directory, or
/// `s3://bucket/prefix` on the s3s-fs whose data directory `BERTH_TEST_S3_DATA` names
/// (`scripts/s3.sh` exports it; `None` without it).
pub fn stored_blobs(location: &Path) -> Option<std::collections::BTreeSet<String>> {
    let root = match location.to_str().and_then(|l| l.strip_prefix("s3://")) {
        Some(bucket_and_prefix) => PathBuf::from(std::env::var_os("BERTH_TEST_S3_DATA")?).join(bucket_and_prefix),
        None => location.to_path_buf(),
    };
    let mut out = std::collections::BTreeSet::new();
    for dir in std::fs::read_dir(root.join("blobs").join("sha256")).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(dir.path()).into_iter().flatten().flatten() {
            out.insert(format!("sha256:{}", f.file_name().to_string_lossy()));
        }
    }
    Some(out)
}
