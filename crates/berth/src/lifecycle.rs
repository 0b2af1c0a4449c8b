//! Applying lifecycle policies: the periodic job every server schedules (once per period across
//! nodes) and `berth lifecycle run`. Each run that expires images writes `PolicyExecutionEvent`
//! audit records naming the rule per image; the metadata store appends the events (image
//! deletions and `ECR Lifecycle Policy Action`) in the transaction of each expiry.

use berth_events::audit::{self, AuditSink};
use berth_meta::lifecycle::PolicyRepository;
use berth_registry::Registry;
use berth_registry::jobs::JobRunner;
use berth_registry::lifecycle::LifecycleRun;
use std::sync::Arc;
use std::time::Duration;

/// Job kind of the periodic lifecycle run.
pub const JOB: &str = "lifecycle";

/// Repositories read per page while a run walks them.
const PAGE: u32 = 100;

/// What a pass over repositories did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    /// Repositories whose policy was evaluated.
    pub repositories: u64,
    /// Images expired (with `dry_run`: that would have been).
    pub expired: u64,
    /// Images left alone because they changed between evaluation and expiry.
    pub skipped: u64,
}

/// Apply the lifecycle policy of `only` (else of every repository that has one), recording the
/// audit records of runs that acted in `sink`; `each` sees every repository's run.
pub async fn apply(
    reg: &Registry,
    sink: Option<&AuditSink>,
    only: Option<PolicyRepository>,
    dry_run: bool,
    mut each: impl FnMut(&LifecycleRun),
) -> berth_registry::Result<Summary> {
    let mut summary = Summary::default();
    let mut after = 0;
    loop {
        let repos = match &only {
            Some(r) if after == 0 => vec![r.clone()],
            Some(_) => Vec::new(),
            None => reg.lifecycle_repositories(after, PAGE).await?,
        };
        let Some(last) = repos.last() else { break };
        after = last.repo_id;
        for repo in &repos {
            let Some(run) = reg.run_lifecycle(repo, dry_run).await? else { continue };
            summary.repositories += 1;
            summary.expired += run.actions.len() as u64;
            summary.skipped += run.skipped as u64;
            if !dry_run && let Some(sink) = sink {
                for call in audit::lifecycle_execution(&run) {
                    sink.record(call);
                }
            }
            if !run.actions.is_empty() {
                tracing::info!(
                    repository = %repo.name, account = %repo.account_id, region = %repo.region,
                    expired = run.actions.len(), skipped = run.skipped, dry_run, "lifecycle policy applied"
                );
            }
            each(&run);
        }
        if only.is_some() {
            break;
        }
    }
    Ok(summary)
}

/// Schedule the lifecycle run every `every` on `runner` (once per period across nodes).
pub fn register(runner: &mut JobRunner, reg: Arc<Registry>, sink: AuditSink, every: Duration) {
    runner.handle(JOB, move |_job| {
        let (reg, sink) = (reg.clone(), sink.clone());
        async move {
            let s = apply(&reg, Some(&sink), None, false, |_| {}).await.map_err(|e| e.to_string())?;
            tracing::debug!(repositories = s.repositories, expired = s.expired, "lifecycle pass done");
            Ok(())
        }
    });
    runner.every(JOB, every, 3);
}
