//! `berth migrate`, and `berth serve --no-migrate` refusing a schema that is not current (on
//! PostgreSQL metadata with `BERTH_TEST_BACKEND=postgres`).

mod common;

use common::berth_bin;
use std::process::{Command, Output, Stdio};

fn berth(data_dir: &std::path::Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut c = Command::new(berth_bin());
    c.arg("--data-dir").arg(data_dir).args(args);
    c.env_remove("BERTH_CONFIG").env_remove("BERTH_METADATA").env("RUST_BACKTRACE", "0").stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run berth")
}

#[test]
fn migrate_applies_once_and_no_migrate_refuses_a_stale_schema() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env: Vec<(&str, String)> =
        common::postgres_database().map(|url| vec![("BERTH_METADATA", url)]).unwrap_or_default();
    // Unmigrated: serve --no-migrate (flag or environment) refuses to start, saying what to do.
    for (args, extra) in [
        (vec!["serve", "--listen", "127.0.0.1:0", "--no-migrate"], None),
        (vec!["serve", "--listen", "127.0.0.1:0"], Some(("BERTH_NO_MIGRATE", "1".to_string()))),
    ] {
        let mut env = env.clone();
        env.extend(extra);
        let out = berth(&data, &args, &env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "must refuse: {err}");
        assert!(err.contains("not current") && err.contains("0004_jobs") && err.contains("berth migrate"), "{err}");
    }
    // migrate applies every migration once and says so.
    let out = berth(&data, &["migrate"], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for m in ["applied 0001_core", "applied 0004_jobs", "applied 0005_iam", "applied 0006_data_epoch"] {
        assert!(stdout.contains(m), "{stdout}");
    }
    let out = berth(&data, &["migrate"], &env);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "schema is current; nothing to apply");
    // Now serve --no-migrate starts.
    let mut env = env.clone();
    env.push(("BERTH_ACCOUNT_ID", common::ACCOUNT_ID.to_string()));
    let mut c = Command::new(berth_bin());
    c.arg("--data-dir").arg(&data).args(["serve", "--listen", "127.0.0.1:0", "--no-migrate"]);
    c.env_remove("BERTH_CONFIG").env_remove("BERTH_METADATA").stdin(Stdio::null()).stdout(Stdio::piped());
    for (k, v) in &env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.starts_with("berth listening on http://"), "{line:?}");
}
