//! Background jobs: a runner on every node that takes work from the durable queue in the
//! metadata database ([`MetadataStore::claim_job`] and friends).
//!
//! Each node runs a [`JobRunner`] with its own node id. A worker claims one due job of a kind
//! it has a handler for, runs the handler while renewing the lease every `renew_every`, then
//! completes the job, or fails it with exponential backoff (the job goes back to pending until
//! its `max_attempts` are used up). A node that dies leaves its job running with a lease that
//! stops being renewed; once the lease expires another node claims it.
//!
//! **Exactly once**, in the sense this runner gives it: each job's effects are committed once,
//! because completion is conditional on still holding the lease and handlers are idempotent
//! (re-running one after a crash or a lost lease changes nothing that the first run did). The
//! handler itself may run more than once: after a crash, or when a node stalls past its lease.
//! A node that notices it lost the lease stops its handler and does not complete the job.
//!
//! Periodic work ([`JobRunner::every`]) is scheduled by every node: each enqueues the job keyed
//! by the current time bucket with [`NewJob::once`], so however many nodes schedule it, it runs
//! once per period.
//!
//! Shutdown: once the stop signal is raised, workers claim nothing more; a running handler gets
//! the grace period to finish, after which it is stopped and its job released (pending again,
//! the attempt not counted) for another node.

use crate::{Clock, Registry};
use berth_meta::{Job, MetadataStore, NewJob};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// What a handler returns: `Err` carries the message recorded as the job's `last_error`.
pub type JobResult = std::result::Result<(), String>;

type Handler = Arc<dyn Fn(Job) -> BoxFuture<'static, JobResult> + Send + Sync>;

/// How a node runs jobs.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// This node's id, recorded as the lease owner. Must differ between live nodes.
    pub node_id: String,
    /// A claimed job belongs to this node for this long unless renewed.
    pub lease: Duration,
    /// How often a running job's lease is renewed (well under `lease`).
    pub renew_every: Duration,
    /// How often an idle worker looks for due jobs.
    pub poll_every: Duration,
    /// Jobs run at once on this node.
    pub workers: usize,
    /// Retry delay after the first failed attempt; doubles with each further attempt.
    pub backoff_base: Duration,
    /// Upper bound of the retry delay.
    pub backoff_max: Duration,
}

impl RunnerConfig {
    /// Defaults (lease 30 s renewed every 10 s, poll every second, one worker, backoff from 1 s
    /// to 10 min) for `node_id`.
    pub fn new(node_id: impl Into<String>) -> RunnerConfig {
        RunnerConfig {
            node_id: node_id.into(),
            lease: Duration::from_secs(30),
            renew_every: Duration::from_secs(10),
            poll_every: Duration::from_secs(1),
            workers: 1,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(600),
        }
    }

    /// Delay before retrying a job whose attempt number `attempts` (1-based) failed.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(20);
        self.backoff_base.saturating_mul(factor).min(self.backoff_max)
    }
}

/// Periodic work every node schedules.
#[derive(Debug, Clone)]
struct Periodic {
    kind: String,
    every: Duration,
    max_attempts: u32,
}

/// Claims and runs jobs of the kinds it has handlers for. See the module documentation.
pub struct JobRunner {
    meta: Arc<dyn MetadataStore>,
    clock: Arc<dyn Clock>,
    cfg: RunnerConfig,
    handlers: HashMap<String, Handler>,
    periodic: Vec<Periodic>,
}

impl JobRunner {
    /// A runner with no handlers yet.
    pub fn new(meta: Arc<dyn MetadataStore>, clock: Arc<dyn Clock>, cfg: RunnerConfig) -> JobRunner {
        JobRunner { meta, clock, cfg, handlers: HashMap::new(), periodic: Vec::new() }
    }

    /// This runner's configuration.
    pub fn config(&self) -> &RunnerConfig {
        &self.cfg
    }

    /// Run jobs of `kind` with `handler`, which gets the job (its key and JSON payload) and must
    /// be idempotent. Replaces an earlier handler of the same kind.
    pub fn handle<F, Fut>(&mut self, kind: &str, handler: F)
    where
        F: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JobResult> + Send + 'static,
    {
        self.handlers.insert(kind.to_string(), Arc::new(move |job| Box::pin(handler(job))));
    }

    /// Schedule `kind` (which needs a handler) once per `every`, keyed by the start of the
    /// current period as `YYYY-MM-DDTHH:MM:SSZ` (UTC), with an empty JSON object as payload.
    pub fn every(&mut self, kind: &str, every: Duration, max_attempts: u32) {
        let every = every.max(Duration::from_millis(1));
        self.periodic.push(Periodic { kind: kind.to_string(), every, max_attempts });
    }

    /// The kinds this runner has handlers for, sorted.
    pub fn kinds(&self) -> Vec<&str> {
        let mut k: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        k.sort();
        k
    }

    /// Enqueue the current period's job of each periodic kind (a no-op when some node did
    /// already); returns how many this call enqueued.
    pub async fn schedule(&self) -> berth_meta::Result<usize> {
        let now = self.clock.now_ms();
        let mut n = 0;
        for p in &self.periodic {
            let period = p.every.as_millis().max(1) as i64;
            let start = now - now.rem_euclid(period);
            let key = bucket_key(start);
            let job = NewJob {
                kind: &p.kind,
                key: &key,
                payload: "{}",
                run_after: start,
                max_attempts: p.max_attempts,
                once: true,
            };
            if self.meta.enqueue_job(&job, now).await?.is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Claim one due job and run it to its end (completed, failed, lease lost, or released
    /// because `stop` was raised and the grace period passed). `Ok(false)`: nothing was due.
    pub async fn run_one(&self, stop: &mut watch::Receiver<bool>, grace: Duration) -> berth_meta::Result<bool> {
        let kinds = self.kinds();
        let lease_ms = self.cfg.lease.as_millis() as i64;
        let Some(job) = self.meta.claim_job(&self.cfg.node_id, &kinds, self.clock.now_ms(), lease_ms).await? else {
            return Ok(false);
        };
        self.execute(job, stop, grace).await;
        Ok(true)
    }

    async fn execute(&self, job: Job, stop: &mut watch::Receiver<bool>, grace: Duration) {
        let node = self.cfg.node_id.as_str();
        let lease_ms = self.cfg.lease.as_millis() as i64;
        let (id, kind, attempts, max_attempts) = (job.id, job.kind.clone(), job.attempts, job.max_attempts);
        let Some(handler) = self.handlers.get(&job.kind).cloned() else { return };
        tracing::debug!(id, kind, key = job.key, attempts, "job started");
        let started = Instant::now();
        let mut task = tokio::spawn(handler(job));
        let mut renew = tokio::time::interval_at(Instant::now() + self.cfg.renew_every, self.cfg.renew_every);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut deadline: Option<Instant> = None;
        let outcome = loop {
            tokio::select! {
                r = &mut task => break r,
                _ = renew.tick() => match self.meta.renew_lease(id, node, self.clock.now_ms(), lease_ms).await {
                    Ok(true) => {}
                    Ok(false) => {
                        task.abort();
                        tracing::warn!(id, kind, "job lease lost to another node; stopped the handler");
                        return;
                    }
                    // Retried at the next tick; if the database stays away the lease expires and
                    // another node runs the job again (handlers are idempotent).
                    Err(e) => tracing::warn!(id, kind, error = %e, "renewing the job lease failed"),
                },
                _ = stopped(stop), if deadline.is_none() => deadline = Some(Instant::now() + grace),
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    task.abort();
                    let released = self.meta.release_job(id, node, self.clock.now_ms()).await;
                    tracing::warn!(id, kind, ?released, "shutting down: job did not finish in time, released it");
                    return;
                }
            }
        };
        let now = self.clock.now_ms();
        let error = match outcome {
            Ok(Ok(())) => {
                metrics::counter!("berth_jobs_total", "kind" => kind.to_string(), "outcome" => "done").increment(1);
                match self.meta.complete_job(id, node, now).await {
                    Ok(true) => tracing::info!(id, kind, elapsed = ?started.elapsed(), "job done"),
                    Ok(false) => tracing::warn!(id, kind, "job finished after its lease was lost; it may run again"),
                    Err(e) => tracing::warn!(id, kind, error = %e, "recording job completion failed; it may run again"),
                }
                return;
            }
            Ok(Err(e)) => e,
            Err(e) => format!("handler panicked: {e}"),
        };
        let outcome = if attempts >= max_attempts { "failed" } else { "retry" };
        metrics::counter!("berth_jobs_total", "kind" => kind.to_string(), "outcome" => outcome).increment(1);
        let retry_at = now + self.cfg.backoff(attempts).as_millis() as i64;
        match self.meta.fail_job(id, node, &error, retry_at, now).await {
            Ok(true) => tracing::warn!(id, kind, attempts, error, "job attempt failed"),
            Ok(false) => tracing::warn!(id, kind, error, "job failed after its lease was lost"),
            Err(e) => tracing::warn!(id, kind, error = %e, "recording job failure failed"),
        }
    }

    /// Start the scheduler and the workers. They stop when `stop` turns `true` (or its sender
    /// is dropped): workers claim nothing more, and a running job gets `grace` to finish before
    /// it is released. The returned task ends when all have stopped.
    pub fn start(self: Arc<Self>, stop: watch::Receiver<bool>, grace: Duration) -> tokio::task::JoinHandle<()> {
        let mut tasks = Vec::new();
        // Raised when the scheduler enqueued a job, so idle workers claim it at once instead of
        // at their next poll (a periodic job that keeps working for its whole period, like the
        // event consumer, is then handed over at the period's boundary without a gap).
        let enqueued = Arc::new(tokio::sync::Notify::new());
        if !self.periodic.is_empty() {
            let this = self.clone();
            let mut stop = stop.clone();
            let enqueued = enqueued.clone();
            tasks.push(tokio::spawn(async move {
                while !*stop.borrow() {
                    let wait = match this.schedule().await {
                        Ok(n) => {
                            if n > 0 {
                                enqueued.notify_waiters();
                            }
                            this.until_next_period()
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "scheduling periodic jobs failed");
                            this.until_next_period().min(Duration::from_secs(1))
                        }
                    };
                    tokio::select! {
                        _ = stopped(&mut stop) => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }));
        }
        for _ in 0..self.cfg.workers.max(1) {
            let this = self.clone();
            let mut stop = stop.clone();
            let enqueued = enqueued.clone();
            tasks.push(tokio::spawn(async move {
                while !*stop.borrow() {
                    // Registered before looking, so an enqueue during the look is not missed.
                    let woken = enqueued.notified();
                    tokio::pin!(woken);
                    woken.as_mut().enable();
                    match this.run_one(&mut stop, grace).await {
                        Ok(true) => continue,
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "claiming a job failed"),
                    }
                    tokio::select! {
                        _ = stopped(&mut stop) => {}
                        _ = woken => {}
                        _ = tokio::time::sleep(this.cfg.poll_every) => {}
                    }
                }
            }));
        }
        tokio::spawn(async move {
            for t in tasks {
                let _ = t.await;
            }
        })
    }

    /// Time until the earliest next period of the periodic kinds starts (a few milliseconds
    /// past it, so the clock is surely in the new period), at most a minute: the scheduler
    /// enqueues each period's job as the period begins.
    fn until_next_period(&self) -> Duration {
        let now = self.clock.now_ms();
        let next = self
            .periodic
            .iter()
            .map(|p| {
                let period = p.every.as_millis().max(1) as i64;
                period - now.rem_euclid(period)
            })
            .min()
            .unwrap_or(60_000);
        Duration::from_millis((next + 5).clamp(5, 60_000) as u64)
    }
}

/// Resolves once `stop` is raised (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Kind of the periodic job that removes expired upload sessions ([`Registry::expire_uploads`]).
pub const EXPIRE_UPLOADS: &str = "expire-uploads";
/// Kind of the periodic job that deletes old done jobs.
pub const PURGE_JOBS: &str = "purge-jobs";
/// How often KMS keys past their deletion date are deleted and due rotations made (a key is
/// also deleted when looked at after its date).
pub const KMS_SWEEP_EVERY: Duration = Duration::from_secs(600);

impl JobRunner {
    /// Register the jobs every node runs: [`EXPIRE_UPLOADS`] every `expire_every`,
    /// [`PURGE_JOBS`] hourly, deleting done jobs older than `retention`, and the KMS sweep
    /// ([`crate::kms::KMS_SWEEP_JOB`]) every [`KMS_SWEEP_EVERY`]. All are idempotent.
    pub fn with_builtin_jobs(&mut self, registry: Arc<Registry>, expire_every: Duration, retention: Duration) {
        let kms = registry.clone();
        self.handle(crate::kms::KMS_SWEEP_JOB, move |_job| {
            let registry = kms.clone();
            async move {
                let (deleted, rotated) = registry.kms_sweep().await.map_err(|e| e.to_string())?;
                if deleted + rotated > 0 {
                    tracing::info!(
                        deleted,
                        rotated,
                        "KMS keys deleted at the end of their waiting period, and rotated"
                    );
                }
                Ok(())
            }
        });
        self.every(crate::kms::KMS_SWEEP_JOB, KMS_SWEEP_EVERY, 3);
        self.handle(EXPIRE_UPLOADS, move |_job| {
            let registry = registry.clone();
            async move {
                match registry.expire_uploads().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "expired upload sessions"),
                    Err(e) => return Err(e.to_string()),
                }
                Ok(())
            }
        });
        self.every(EXPIRE_UPLOADS, expire_every, 3);
        self.purge_hourly(PURGE_JOBS, "done jobs", retention, |meta, before| async move {
            meta.purge_done_jobs(before).await
        });
    }

    /// Register `kind` as an hourly job that deletes what is older than `retention`:
    /// `purge(store, before)` deletes what was last touched before `before` (epoch ms) and says
    /// how many; the count is logged as `what`.
    pub fn purge_hourly<F, Fut>(&mut self, kind: &str, what: &'static str, retention: Duration, purge: F)
    where
        F: Fn(Arc<dyn MetadataStore>, i64) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = berth_meta::Result<u64>> + Send + 'static,
    {
        let (meta, clock, purge) = (self.meta.clone(), self.clock.clone(), Arc::new(purge));
        self.handle(kind, move |_job| {
            let (meta, clock, purge) = (meta.clone(), clock.clone(), purge.clone());
            async move {
                let before = clock.now_ms() - retention.as_millis() as i64;
                let n = purge(meta, before).await.map_err(|e| e.to_string())?;
                if n > 0 {
                    tracing::info!(deleted = n, what, "purged old records");
                }
                Ok(())
            }
        });
        self.every(kind, Duration::from_secs(3600), 3);
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC) of an epoch-milliseconds time.
pub fn bucket_key(ms: i64) -> String {
    crate::authz::iso8601(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_keys_are_utc_times() {
        assert_eq!(bucket_key(0), "1970-01-01T00:00:00Z");
        assert_eq!(bucket_key(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(bucket_key(1_795_633_200_000), "2026-11-25T19:00:00Z");
        assert_eq!(bucket_key(1_795_633_259_999), "2026-11-25T19:00:59Z");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut c = RunnerConfig::new("n");
        c.backoff_base = Duration::from_millis(100);
        c.backoff_max = Duration::from_millis(1000);
        let b: Vec<u128> = (1..=6).map(|a| c.backoff(a).as_millis()).collect();
        assert_eq!(b, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(c.backoff(u32::MAX), Duration::from_millis(1000));
    }

    /// Each period's job starts as its period begins, not at the next poll of an idle worker:
    /// with workers that poll once a minute, a job every second still runs every second, each
    /// within its own period (the event consumer, which works through its whole period, relies
    /// on this to leave no gap at the boundary).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn periodic_jobs_start_at_their_period_without_waiting_for_a_poll() {
        let dir = tempfile::tempdir().unwrap();
        let meta = berth_meta::sqlite::SqliteStore::open(&dir.path().join("meta.db")).await.unwrap();
        let mut cfg = RunnerConfig::new("n1");
        cfg.poll_every = Duration::from_secs(60);
        let mut runner = JobRunner::new(Arc::new(meta), Arc::new(crate::SystemClock), cfg);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        runner.handle("tick", move |job| {
            let tx = tx.clone();
            async move { tx.send((job.key, crate::SystemClock.now_ms())).map_err(|e| e.to_string()) }
        });
        runner.every("tick", Duration::from_secs(1), 1);
        let (stop_tx, stop) = watch::channel(false);
        let done = Arc::new(runner).start(stop, Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(3_500)).await;
        stop_tx.send(true).unwrap();
        done.await.unwrap();
        let mut runs = Vec::new();
        while let Ok(r) = rx.try_recv() {
            runs.push(r);
        }
        assert!(runs.len() >= 3, "one run per second: {runs:?}");
        for (key, at) in &runs {
            let started = at - at.rem_euclid(1000);
            assert_eq!(key, &bucket_key(started), "each run starts within its own period: {runs:?}");
        }
    }
}
