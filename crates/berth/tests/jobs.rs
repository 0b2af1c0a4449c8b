//! Background jobs across processes: two real `berth serve` nodes share one metadata database
//! (PostgreSQL with `BERTH_TEST_BACKEND=postgres`, else the SQLite file of a shared data dir,
//! which several processes may open: writes take `BEGIN IMMEDIATE` and wait on the busy
//! timeout). The test-only job kinds (`BERTH_TEST_JOBS=1`) append `<event> <kind> <key> <node>
//! <attempt>` lines to a log file outside the database, the witness of what ran where.

mod common;

use berth_meta::{JobState, MetadataStore, NewJob};
use common::Berth;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A node's environment for these tests: test job kinds on, fast polling, short leases.
fn node_env<'a>(node: &'a str, log: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("BERTH_NODE_ID", node),
        ("BERTH_TEST_JOBS", "1"),
        ("BERTH_TEST_JOBS_LOG", log),
        ("BERTH_JOB_LEASE_MS", "1500"),
        ("BERTH_JOB_RENEW_MS", "300"),
        ("BERTH_JOB_POLL_MS", "50"),
        ("BERTH_JOB_WORKERS", "2"),
    ];
    env.extend_from_slice(extra);
    env
}

/// The metadata store the nodes share, opened by the test process.
fn store(rt: &tokio::runtime::Runtime, node: &Berth) -> Arc<dyn MetadataStore> {
    let pg = node.extra_env.iter().find(|(k, _)| k == "BERTH_METADATA").map(|(_, v)| v.clone());
    rt.block_on(async {
        match pg {
            Some(url) => Arc::new(berth_meta::postgres::PgStore::open(&url).await.unwrap()) as Arc<dyn MetadataStore>,
            None => Arc::new(berth_meta::sqlite::SqliteStore::open(&node.data_dir.join("berth.db")).await.unwrap()),
        }
    })
}

fn enqueue(rt: &tokio::runtime::Runtime, s: &dyn MetadataStore, kind: &str, key: &str, payload: &str) -> i64 {
    let job = NewJob { kind, key, payload, run_after: 0, max_attempts: 3, once: false };
    rt.block_on(s.enqueue_job(&job, 1)).unwrap().expect("enqueued")
}

/// Poll `check` every 50 ms until it holds; panics with `what` after `limit`.
fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect()
}

fn log_file(dir: &tempfile::TempDir) -> (PathBuf, String) {
    let p = dir.path().join("jobs.log");
    let s = p.to_str().unwrap().to_string();
    (p, s)
}

#[test]
fn two_nodes_run_every_job_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (log, log_s) = log_file(&dir);
    let n1 = Berth::start_with_env(&node_env("n1", &log_s, &[]));
    let n2 = n1.another_node(&node_env("n2", &log_s, &[]));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = store(&rt, &n1);
    let ids: Vec<i64> = (0..60).map(|i| enqueue(&rt, s.as_ref(), "noop", &format!("k{i}"), "{}")).collect();
    wait_until(Duration::from_secs(60), "all noop jobs done", || {
        let jobs = rt.block_on(s.jobs(Some("noop"), 1000)).unwrap();
        jobs.len() == ids.len() && jobs.iter().all(|j| j.state == JobState::Done)
    });
    let lines = log_lines(&log);
    for i in 0..ids.len() {
        let ran: Vec<&String> = lines.iter().filter(|l| l.starts_with(&format!("ran noop k{i} "))).collect();
        assert_eq!(ran.len(), 1, "job k{i} must run exactly once: {ran:?}");
    }
    let jobs = rt.block_on(s.jobs(Some("noop"), 1000)).unwrap();
    let by = |n: &str| jobs.iter().filter(|j| j.lease_owner.as_deref() == Some(n)).count();
    assert_eq!(by("n1") + by("n2"), ids.len(), "every job was run by one of the nodes");
    assert!(by("n1") > 0 && by("n2") > 0, "both nodes took part: n1 {} n2 {}", by("n1"), by("n2"));
    assert!(jobs.iter().all(|j| j.attempts == 1));
    // `berth admin jobs` lists them as JSON.
    let listed: serde_json::Value =
        serde_json::from_str(&n2.admin_ok(&["jobs", "--kind", "noop", "--limit", "5"])).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 5);
    assert!(listed.iter().all(|j| j["state"] == "done" && j["kind"] == "noop"), "{listed:?}");
    // Enqueueing through the admin command is idempotent per kind and key while pending.
    let out = n2.admin(&["enqueue-job", "--kind", "no-such-kind", "--key", "x"]);
    assert!(!out.status.success(), "unknown kinds are refused");
    drop(n2);
}

#[test]
fn a_killed_nodes_job_is_finished_by_the_other_after_its_lease_expires() {
    let dir = tempfile::tempdir().unwrap();
    let (log, log_s) = log_file(&dir);
    let mut n1 = Berth::start_with_env(&node_env("n1", &log_s, &[]));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = store(&rt, &n1);
    let id = enqueue(&rt, s.as_ref(), "sleep", "handover", r#"{"ms": 2000}"#);
    wait_until(Duration::from_secs(20), "n1 to start the job", || {
        log_lines(&log).iter().any(|l| l == "start sleep handover n1 1")
    });
    let n2 = n1.another_node(&node_env("n2", &log_s, &[]));
    n1.kill9();
    let killed_at = Instant::now();
    let job = rt.block_on(s.jobs(Some("sleep"), 1)).unwrap().remove(0);
    assert_eq!((job.id, job.state, job.lease_owner.as_deref()), (id, JobState::Running, Some("n1")));
    wait_until(Duration::from_secs(30), "n2 to finish the job", || {
        rt.block_on(s.jobs(Some("sleep"), 1)).unwrap()[0].state == JobState::Done
    });
    let job = rt.block_on(s.jobs(Some("sleep"), 1)).unwrap().remove(0);
    assert_eq!((job.lease_owner.as_deref(), job.attempts), (Some("n2"), 2), "{job:?}");
    let lines = log_lines(&log);
    assert!(lines.contains(&"start sleep handover n2 2".to_string()), "{lines:?}");
    assert!(lines.contains(&"end sleep handover n2 2".to_string()), "{lines:?}");
    assert!(!lines.iter().any(|l| l.starts_with("end sleep handover n1")), "n1 died before finishing: {lines:?}");
    // n2 could only take it once n1's lease (1.5 s) had run out, then slept 2 s.
    assert!(killed_at.elapsed() >= Duration::from_millis(2000), "{:?}", killed_at.elapsed());
    drop(n2);
}

#[test]
fn graceful_shutdown_releases_an_unfinished_job_to_the_other_node() {
    let dir = tempfile::tempdir().unwrap();
    let (log, log_s) = log_file(&dir);
    let mut n1 = Berth::start_with_env(&node_env("n1", &log_s, &[("BERTH_SHUTDOWN_TIMEOUT_SECS", "1")]));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = store(&rt, &n1);
    enqueue(&rt, s.as_ref(), "sleep", "long", r#"{"ms": 4000}"#);
    wait_until(Duration::from_secs(20), "n1 to start the job", || {
        log_lines(&log).iter().any(|l| l == "start sleep long n1 1")
    });
    let status = n1.terminate().expect("n1 was running");
    assert!(status.success(), "clean exit: {status:?}");
    let job = rt.block_on(s.jobs(Some("sleep"), 1)).unwrap().remove(0);
    assert_eq!((job.state, job.attempts), (JobState::Pending, 0), "released, attempt not counted: {job:?}");
    let n2 = n1.another_node(&node_env("n2", &log_s, &[]));
    wait_until(Duration::from_secs(30), "n2 to finish the job", || {
        rt.block_on(s.jobs(Some("sleep"), 1)).unwrap()[0].state == JobState::Done
    });
    let job = rt.block_on(s.jobs(Some("sleep"), 1)).unwrap().remove(0);
    assert_eq!((job.lease_owner.as_deref(), job.attempts), (Some("n2"), 1));
    drop(n2);
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_uploads_are_expired_by_the_periodic_job_once_per_period() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, log_s) = log_file(&dir);
    let env = node_env("n1", &log_s, &[("BERTH_UPLOAD_TTL_SECS", "1")]);
    let n1 = tokio::task::block_in_place(|| Berth::start_with_env(&env));
    let env2 = node_env("n2", &log_s, &[("BERTH_UPLOAD_TTL_SECS", "1")]);
    let n2 = tokio::task::block_in_place(|| n1.another_node(&env2));
    let client = n1.client();
    let r = client.post(format!("{}/v2/stale/blobs/uploads/", n1.url)).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let loc = if loc.starts_with('/') { format!("{}{loc}", n2.url) } else { loc };
    let start = Instant::now();
    loop {
        let st = client.get(&loc).send().await.unwrap().status();
        if st == 404 {
            break;
        }
        assert_eq!(st, 204, "upload status while it lives");
        assert!(start.elapsed() < Duration::from_secs(20), "the stale upload was not expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s: Arc<dyn MetadataStore> = match n1.extra_env.iter().find(|(k, _)| k == "BERTH_METADATA") {
        Some((_, url)) => Arc::new(berth_meta::postgres::PgStore::open(url).await.unwrap()),
        None => Arc::new(berth_meta::sqlite::SqliteStore::open(&n1.data_dir.join("berth.db")).await.unwrap()),
    };
    let jobs = s.jobs(Some("expire-uploads"), 1000).await.unwrap();
    assert!(jobs.iter().any(|j| j.state == JobState::Done), "{jobs:?}");
    let mut keys: Vec<&str> = jobs.iter().map(|j| j.key.as_str()).collect();
    keys.sort();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "one expire-uploads job per period, however many nodes schedule it");
    for j in &jobs {
        assert!(matches!(j.lease_owner.as_deref(), None | Some("n1") | Some("n2")), "{j:?}");
    }
    drop(n2);
}
