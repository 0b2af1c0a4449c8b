//! Test harness: starts the real `berth` binary on an ephemeral 127.0.0.1 port with a temp
//! data dir, and helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `berth serve` process. Killed (SIGKILL) on drop.
pub struct Berth {
    pub child: Option<Child>,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub extra_env: Vec<(String, String)>,
}

/// Path of the `berth` binary under test.
pub fn berth_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}

impl Berth {
    /// Start a server on a fresh temp data dir.
    pub fn start() -> Berth {
        Self::start_with_env(&[])
    }

    /// Start a server on a fresh temp data dir with extra environment variables.
    pub fn start_with_env(env: &[(&str, &str)]) -> Berth {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        let mut b = Berth {
            child: None,
            addr: String::new(),
            url: String::new(),
            data_dir,
            _tmp: Some(tmp),
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        b.spawn(None);
        b
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
            .env(
                "RUST_LOG",
                std::env::var("BERTH_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
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
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
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
    format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
    )
}
