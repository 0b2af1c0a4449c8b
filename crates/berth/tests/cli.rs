//! The `berth` binary itself: flags, configuration layering, shutdown.

mod common;

use common::{Berth, berth_bin};
use std::process::Command;

fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(berth_bin());
    c.args(args).env_remove("BERTH_CONFIG").env_remove("BERTH_DATA_DIR").env_remove("BERTH_LISTEN");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run berth")
}

#[test]
fn version_and_help() {
    let out = run(&["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("berth {}", env!("CARGO_PKG_VERSION")));
    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["serve", "--data-dir", "--config"] {
        assert!(help.contains(word), "help lacks {word}: {help}");
    }
    let out = run(&["serve", "--help"], &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--listen"));
}

#[test]
fn config_layering_file_env_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("berth.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:7000\"\ndata_dir = \"/from/file\"\nupload_ttl_secs = 60\n").unwrap();
    let f = file.to_str().unwrap();
    // File over defaults.
    let out = run(&["--config", f, "config"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cfg: toml::Value = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(cfg["listen"].as_str(), Some("127.0.0.1:7000"));
    assert_eq!(cfg["data_dir"].as_str(), Some("/from/file"));
    assert_eq!(cfg["upload_ttl_secs"].as_integer(), Some(60));
    assert_eq!(cfg["shutdown_timeout_secs"].as_integer(), Some(30));
    // Environment over file, flag over environment.
    let out = run(
        &["--config", f, "--data-dir", "/from/flag", "config"],
        &[("BERTH_DATA_DIR", "/from/env"), ("BERTH_UPLOAD_TTL_SECS", "90")],
    );
    let cfg: toml::Value = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(cfg["data_dir"].as_str(), Some("/from/flag"));
    assert_eq!(cfg["upload_ttl_secs"].as_integer(), Some(90));
    // BERTH_CONFIG names the file.
    let out = run(&["config"], &[("BERTH_CONFIG", f)]);
    let cfg: toml::Value = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(cfg["listen"].as_str(), Some("127.0.0.1:7000"));
}

#[test]
fn create_on_push_is_off_by_default_and_configurable() {
    let out = run(&["config"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cfg: toml::Value = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(cfg["create_on_push"].as_bool(), Some(false));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("berth.toml");
    std::fs::write(&file, "create_on_push = true\n").unwrap();
    let f = file.to_str().unwrap();
    let out = run(&["--config", f, "config"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cfg: toml::Value = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(cfg["create_on_push"].as_bool(), Some(true));
    let out = run(&["config"], &[("BERTH_CREATE_ON_PUSH", "true")]);
    let cfg: toml::Value = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(cfg["create_on_push"].as_bool(), Some(true));
    // Environment over file.
    let out = run(&["--config", f, "config"], &[("BERTH_CREATE_ON_PUSH", "false")]);
    let cfg: toml::Value = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(cfg["create_on_push"].as_bool(), Some(false));
}

#[test]
fn admin_commands_are_listed() {
    let out = run(&["admin", "--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["get-login-password", "create-repository", "create-account"] {
        assert!(help.contains(word), "admin help lacks {word}: {help}");
    }
}

#[test]
fn unknown_config_keys_and_bad_values_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("berth.toml");
    std::fs::write(&file, "listn = \"127.0.0.1:7000\"\n").unwrap();
    let out = run(&["--config", file.to_str().unwrap(), "config"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field") && err.contains("listn"), "{err}");
    let out = run(&["config"], &[("BERTH_UPLOAD_TTL_SECS", "soon")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("BERTH_UPLOAD_TTL_SECS must be a number"));
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_cleanly() {
    let mut b = Berth::start();
    let client = b.client();
    // Start a slow streamed upload, then SIGTERM while it is in flight.
    let loc = client.post(format!("{}/v2/slow/blobs/uploads/", b.url)).send().await.unwrap();
    assert_eq!(loc.status(), 202);
    let loc = loc.headers()["location"].to_str().unwrap().to_string();
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
        (0..20).map(|_| Ok(bytes::Bytes::from(vec![1u8; 1024]))).collect();
    let body = futures::stream::iter(chunks).then(|c| async move {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        c
    });
    let url = format!("{}{}", b.url, loc);
    let patcher = b.client();
    let req = tokio::spawn(async move { patcher.patch(url).body(reqwest::Body::wrap_stream(body)).send().await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let pid = b.child.as_ref().unwrap().id();
    let status = tokio::task::spawn_blocking(move || {
        Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
        // Wait for the process through the harness after the request completes.
    });
    status.await.unwrap();
    let resp = req.await.unwrap().expect("in-flight request completes");
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["range"], "0-20479");
    let st = b.terminate().expect("exited");
    assert!(st.success(), "exit status {st:?}");
    // The data survives a clean restart: the session still has its bytes.
    b.spawn(None);
    let st = client.get(format!("{}{}", b.url, loc)).send().await.unwrap();
    assert_eq!(st.status(), 204);
    assert_eq!(st.headers()["range"], "0-20479");
}

use futures::StreamExt;

/// A server and an admin command started together on fresh data agree on the generated default
/// account and server key: the admin's password works on the server.
#[tokio::test]
async fn first_start_races_agree_on_account_and_key() {
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let data_s = data.to_str().unwrap().to_string();
        let mut server = Command::new(berth_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", &data_s])
            .env_remove("BERTH_ACCOUNT_ID")
            .env_remove("BERTH_ROOT_ACCESS_KEY_ID")
            .env_remove("BERTH_ROOT_SECRET_ACCESS_KEY")
            .env_remove("BERTH_CONFIG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let admin = run(&["admin", "get-login-password", "--data-dir", &data_s], &[]);
        assert!(admin.status.success(), "{}", String::from_utf8_lossy(&admin.stderr));
        let password = String::from_utf8(admin.stdout).unwrap().trim().to_string();
        let mut out = std::io::BufReader::new(server.stdout.take().unwrap());
        let mut line = String::new();
        let url = loop {
            line.clear();
            assert!(std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0, "server exited");
            if let Some(u) = line.trim().strip_prefix("berth listening on ") {
                break u.to_string();
            }
        };
        let r = reqwest::Client::new()
            .get(format!("{url}/v2/_catalog"))
            .header("authorization", common::basic_auth("AWS", &password))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        // Exactly one root credentials file, private to the owner.
        let meta = std::fs::metadata(data.join("root-credentials.json")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let creds: serde_json::Value =
            serde_json::from_slice(&std::fs::read(data.join("root-credentials.json")).unwrap()).unwrap();
        assert_eq!(creds["AccountId"].as_str().unwrap().len(), 12);
        let _ = server.kill();
        let _ = server.wait();
    }
}

/// Everything in the data dir is its owner's only, whatever umask the server started with
/// (the test process's umask, usually 022, is what the server inherits).
#[tokio::test]
async fn data_dir_and_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let b = Berth::start();
    let client = b.client();
    let blob = b"owner-only bytes".to_vec();
    let digest = common::sha256(&blob);
    let r =
        client.post(format!("{}/v2/modes/repo/blobs/uploads/?digest={digest}", b.url)).body(blob).send().await.unwrap();
    assert_eq!(r.status(), 201);
    // An upload left open, so that the uploads area holds something too.
    let r = client.post(format!("{}/v2/modes/repo/blobs/uploads/", b.url)).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let mut seen = 0;
    let mut stack = vec![b.data_dir().to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::metadata(&p).unwrap();
        let mode = m.permissions().mode() & 0o777;
        if m.is_dir() {
            assert_eq!(mode, 0o700, "directory {} has mode {mode:o}", p.display());
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(mode & 0o077, 0, "file {} has mode {mode:o}", p.display());
        }
        seen += 1;
    }
    assert!(seen >= 2, "only {seen} entries in the data dir");
    if common::postgres_database().is_none() && common::s3_storage().is_none() {
        // The embedded store: the database and its WAL, blobs/ with the blob, uploads/.
        assert!(seen >= 7, "only {seen} entries in the data dir");
    }
}
