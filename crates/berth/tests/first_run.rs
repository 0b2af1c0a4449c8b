//! A new user's first runs: what the first start prints, the default account fixed at the first
//! start, configuration errors that name their setting, and the plain address serving the
//! account of the credentials presented.

mod common;

use common::{Berth, basic_auth, berth_bin, sha256};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `berth serve` on `data` with exactly `env` (plus a free port), no inherited BERTH_* settings.
fn serve(data: &Path, env: &[(&str, &str)]) -> Child {
    let mut c = Command::new(berth_bin());
    c.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data);
    for (k, _) in std::env::vars() {
        if k.starts_with("BERTH_") {
            c.env_remove(&k);
        }
    }
    c.env("RUST_BACKTRACE", "1").env("RUST_LOG", "info");
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start berth")
}

/// Wait for the server to listen; returns its address.
fn listening(child: &mut Child) -> String {
    let out = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).unwrap();
    line.trim().strip_prefix("berth listening on http://").unwrap_or_else(|| panic!("unexpected: {line}")).to_string()
}

/// Stop the server; returns what it wrote to stderr.
fn stop(mut child: Child) -> String {
    unsafe_kill_term(child.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "berth did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    err
}

fn unsafe_kill_term(pid: u32) {
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
}

/// Run to completion (for starts that must fail); returns (exit code, stderr).
fn exits(mut child: Child) -> (i32, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("berth kept running where it had to refuse to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (status.code().unwrap_or(-1), err)
}

/// The README's sequence: a first start without settings, then the quick start's exports on the
/// same data, then a restart without them. The default account is fixed at the first start: a
/// different BERTH_ACCOUNT_ID is refused, saying how to add an account, never added silently.
#[test]
fn the_default_account_is_fixed_at_the_first_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut first = serve(&data, &[]);
    let addr = listening(&mut first);
    let err = stop(first);
    // What the first start prints: the absolute data dir, the credentials as exports, the login pipe.
    let abs = std::fs::canonicalize(&data).unwrap();
    assert!(err.contains(&format!("data in {}", abs.display())), "{err}");
    assert!(err.contains("export AWS_ACCESS_KEY_ID=AKIA"), "{err}");
    assert!(err.contains(" AWS_SECRET_ACCESS_KEY="), "{err}");
    assert!(err.contains(" AWS_DEFAULT_REGION=us-east-1"), "{err}");
    assert!(
        err.contains(&format!(
            "aws ecr get-login-password --endpoint-url http://{addr} | docker login --username AWS --password-stdin {addr}"
        )),
        "{err}"
    );
    assert!(!err.contains('\u{1b}'), "no ANSI colour codes when stderr is not a terminal: {err}");
    let creds: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("root-credentials.json")).unwrap()).unwrap();
    let account = creds["AccountId"].as_str().unwrap().to_string();
    assert!(err.contains(&format!("created account {account}")), "{err}");

    // `berth config` shows the effective default account.
    let out = Command::new(berth_bin())
        .args(["config", "--data-dir"])
        .arg(&data)
        .env_remove("BERTH_ACCOUNT_ID")
        .output()
        .unwrap();
    let cfg = String::from_utf8(out.stdout).unwrap();
    assert!(cfg.contains(&format!("account_id = \"{account}\"")), "{cfg}");

    // The quick start's exports on the same data: refused, naming the setting and the way out.
    let other = if account == "111111111111" { "222222222222" } else { "111111111111" };
    let (code, err) = exits(serve(
        &data,
        &[
            ("BERTH_ACCOUNT_ID", other),
            ("BERTH_ROOT_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
            ("BERTH_ROOT_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        ],
    ));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("BERTH_ACCOUNT_ID (account_id) is {other}")), "{err}");
    assert!(err.contains(&format!("default account of this data is {account}")), "{err}");
    assert!(err.contains(&format!("berth admin create-account --account-id {other}")), "{err}");
    assert!(!err.contains("backtrace") && !err.contains("Stack"), "no backtrace for a user error: {err}");
    // The account it named was not created.
    let out = Command::new(berth_bin())
        .args(["admin", "get-login-password", "--account-id", other, "--data-dir"])
        .arg(&data)
        .env_remove("BERTH_ACCOUNT_ID")
        .output()
        .unwrap();
    assert!(!out.status.success(), "account {other} must not exist");

    // A restart without the exports serves the same account, and its credentials work.
    let mut again = serve(&data, &[]);
    let addr = listening(&mut again);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        let pw = String::from_utf8(
            Command::new(berth_bin())
                .args(["admin", "get-login-password", "--data-dir"])
                .arg(&data)
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        reqwest::Client::new()
            .get(format!("http://{addr}/v2/"))
            .header("authorization", basic_auth("AWS", pw.trim()))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
    let err = stop(again);
    assert!(!err.contains("created account"), "{err}");
}

/// Configuration errors name the setting, print one line without a backtrace, and touch nothing.
#[test]
fn configuration_errors_name_the_setting_and_touch_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for (env, expect) in [
        (vec![("BERTH_LISTEN", "garbage")], "BERTH_LISTEN (listen, serve --listen): expected HOST:PORT, got 'garbage'"),
        (vec![("BERTH_ACCOUNT_ID", "12345")], "BERTH_ACCOUNT_ID (account_id): expected 12 digits, got '12345'"),
        (
            vec![("BERTH_ROOT_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")],
            "BERTH_ROOT_ACCESS_KEY_ID is set without BERTH_ROOT_SECRET_ACCESS_KEY",
        ),
        (
            vec![("BERTH_ROOT_SECRET_ACCESS_KEY", "secret")],
            "BERTH_ROOT_SECRET_ACCESS_KEY is set without BERTH_ROOT_ACCESS_KEY_ID",
        ),
        (vec![("BERTH_UPLOAD_TTL_SECS", "soon")], "BERTH_UPLOAD_TTL_SECS"),
    ] {
        let mut c = Command::new(berth_bin());
        c.args(["serve", "--data-dir"]).arg(&data).env("RUST_BACKTRACE", "1");
        for (k, _) in std::env::vars() {
            if k.starts_with("BERTH_") {
                c.env_remove(&k);
            }
        }
        for (k, v) in &env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{env:?}: {err}");
        assert!(err.starts_with("Error: ") && err.contains(expect), "{env:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line, no backtrace: {err}");
        if !env[0].0.starts_with("BERTH_ACCOUNT") {
            assert!(!data.exists(), "{env:?}: the data dir must not be touched");
        }
    }
}

/// The plain address serves the account of the credentials presented: another account's
/// repository URI without a registry domain (`host:port/name`) works for that account's callers.
#[tokio::test]
async fn the_plain_address_serves_the_account_of_the_credentials() {
    let b = Berth::start();
    b.admin_ok(&["create-account", "--account-id", "222222222222"]);
    let auth2 = basic_auth("AWS", &b.login_password(Some("222222222222")));
    let auth1 = basic_auth("AWS", &b.password);
    let c = reqwest::Client::new();
    let cfg = b"{\"account\":\"222\"}".to_vec();
    let d = sha256(&cfg);
    let r = c
        .post(format!("{}/v2/team/app/blobs/uploads/?digest={d}", b.url))
        .header("authorization", &auth2)
        .body(cfg.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{d}","size":{}}},"layers":[]}}"#,
        cfg.len()
    );
    let r = c
        .put(format!("{}/v2/team/app/manifests/v1", b.url))
        .header("authorization", &auth2)
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    // Account 222 pulls it back through the plain address.
    let r = c.get(format!("{}/v2/team/app/manifests/v1", b.url)).header("authorization", &auth2).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), manifest);
    let r = c.get(format!("{}/v2/team/app/blobs/{d}", b.url)).header("authorization", &auth2).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.bytes().await.unwrap().to_vec()), (200, cfg));
    // It is account 222's repository: account 111 has no such repository on the same address.
    let r = c.get(format!("{}/v2/team/app/manifests/v1", b.url)).header("authorization", &auth1).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["errors"][0]["code"], "NAME_UNKNOWN");
    // Each account's catalog on the plain address is its own.
    let r = c.get(format!("{}/v2/_catalog", b.url)).header("authorization", &auth2).send().await.unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["repositories"], serde_json::json!(["team/app"]));
    let r = c.get(format!("{}/v2/_catalog", b.url)).header("authorization", &auth1).send().await.unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["repositories"], serde_json::json!([]));
    // Anonymous callers reach the default account, which asks them to log in.
    let r = c.get(format!("{}/v2/team/app/manifests/v1", b.url)).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

/// A node whose server key differs from the one the metadata database was set up with refuses
/// to start, naming the setting (it would silently reject the other nodes' registry tokens).
#[test]
fn a_node_with_another_server_key_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut first = serve(&data, &[]);
    listening(&mut first);
    // A second node on the same data with another key, while the first runs.
    let other = "ab".repeat(32);
    let (code, err) = exits(serve(&data, &[("BERTH_SERVER_KEY", &other)]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("BERTH_SERVER_KEY (server_key) differs from the key this metadata database"), "{err}");
    assert!(!err.contains(&other), "the key is never printed: {err}");
    // The database's own key (server.key) works for a second node.
    let key = std::fs::read_to_string(data.join("server.key")).unwrap();
    let mut second = serve(&data, &[("BERTH_SERVER_KEY", key.trim())]);
    listening(&mut second);
    stop(second);
    stop(first);
    // A malformed key is a configuration error, before anything is touched.
    let (code, err) = exits(serve(&tmp.path().join("fresh"), &[("BERTH_SERVER_KEY", "xyz")]));
    assert_eq!((code, err.trim()), (1, "Error: BERTH_SERVER_KEY (server_key): expected hex digits"));
    assert!(!tmp.path().join("fresh").exists());
}

/// The master key (issue 13) is generated owner-only on the first start and said so; a node
/// with another master key, or without the one the metadata database was set up with, refuses
/// to start and never makes a new key over existing data.
#[test]
fn the_master_key_is_made_once_and_never_replaced() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let first = {
        let mut c = serve(&data, &[]);
        listening(&mut c);
        stop(c)
    };
    assert!(first.contains("generated a new master key"), "{first}");
    let key_file = data.join("master.key");
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(key.trim().len(), 64);
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!first.contains(key.trim()), "the key is never printed");
    // Another key file: refused, naming it; the key is not printed.
    let other = tmp.path().join("other.key");
    std::fs::write(&other, "cd".repeat(32)).unwrap();
    let (code, err) = exits(serve(&data, &[("BERTH_MASTER_KEY_FILE", other.to_str().unwrap())]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not the one this metadata database was set up with"), "{err}");
    assert!(!err.contains(&"cd".repeat(32)), "{err}");
    // The data dir's key gone: refused, and no new key is left behind.
    std::fs::rename(&key_file, tmp.path().join("saved.key")).unwrap();
    let (code, err) = exits(serve(&data, &[]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the master key is missing"), "{err}");
    assert!(!key_file.exists());
    // The saved key, given as master_key_file, works.
    let saved = tmp.path().join("saved.key");
    let mut c = serve(&data, &[("BERTH_MASTER_KEY_FILE", saved.to_str().unwrap())]);
    listening(&mut c);
    stop(c);
    // A malformed key file is refused.
    std::fs::write(&other, "not hex").unwrap();
    let (code, err) = exits(serve(&tmp.path().join("fresh"), &[("BERTH_MASTER_KEY_FILE", other.to_str().unwrap())]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the master key must be 64 hex digits"), "{err}");
}
