//! Garbage collection from the binary: the periodic job every server schedules (one pass per
//! period across nodes) and `berth gc`.

use berth_registry::Registry;
use berth_registry::gc::{GcOutcome, GcReport};
use berth_registry::jobs::JobRunner;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

/// Job kind of the periodic pass.
pub const JOB: &str = "gc";
/// Job kind of the periodic pass that also sweeps the whole store.
pub const SWEEP_JOB: &str = "gc-sweep";

/// Schedule a pass with grace period `grace` every `every` on `runner`.
/// And a pass that also sweeps the store every `sweep_every`. `node` names this server as the
/// passes' owner.
pub fn register(
    runner: &mut JobRunner,
    reg: Arc<Registry>,
    node: &str,
    every: Duration,
    sweep_every: Duration,
    grace: Duration,
) {
    for (kind, sweep, period) in [(JOB, false, every), (SWEEP_JOB, true, sweep_every)] {
        register_pass(runner, reg.clone(), node, kind, sweep, grace);
        runner.every(kind, period, 3);
    }
}

fn register_pass(runner: &mut JobRunner, reg: Arc<Registry>, node: &str, kind: &str, sweep: bool, grace: Duration) {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let (node, kind_name) = (node.to_string(), kind.to_string());
    runner.handle(kind, move |job| {
        // Unique per run: the periodic pass and the sweep of one node must not share a lease.
        let owner = format!("node {node} {kind_name} job {}", job.id);
        let reg = reg.clone();
        async move {
            let r = match reg.gc_pass(&owner, grace_ms, sweep, |_| {}).await.map_err(|e| e.to_string())? {
                GcOutcome::Done(r) => r,
                GcOutcome::Busy { owner, .. } => {
                    tracing::info!(%owner, "garbage collection pass skipped: another one is running");
                    return Ok(());
                }
            };
            if r.blobs_deleted + r.links_removed + r.resumed + r.orphans_deleted + r.referrers_deleted > 0 {
                tracing::info!(
                    links_removed = r.links_removed,
                    marked = r.marked,
                    blobs_deleted = r.blobs_deleted,
                    bytes_deleted = r.bytes_deleted,
                    resumed = r.resumed,
                    referrers_deleted = r.referrers_deleted,
                    swept = r.swept,
                    orphans_deleted = r.orphans_deleted,
                    "garbage collection pass"
                );
            }
            Ok(())
        }
    });
}

/// A duration as `berth gc --grace-period` takes it: a number with `s`, `m`, `h` or `d` (seconds
/// without a unit), e.g. `90s`, `30m`, `24h`, `0`.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| anyhow::anyhow!("invalid duration '{s}': expected e.g. 90s, 30m, 24h, 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => anyhow::bail!("invalid duration '{s}': the unit must be s, m, h or d"),
    };
    Ok(Duration::from_secs(secs))
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// `berth gc`: one pass now (or, with `dry_run`, what it would do), with progress on a terminal
/// and a summary.
/// With `sweep`, the pass also lists the whole store for bytes no metadata knows.
pub async fn run(reg: &Registry, grace: Duration, dry_run: bool, sweep: bool, output: &str) -> anyhow::Result<()> {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let err = |e: berth_registry::Error| anyhow::anyhow!("{e}");
    if dry_run {
        let (links, blobs, bytes) = reg.gc_preview(grace_ms).await.map_err(err)?;
        let orphans = if sweep { Some(reg.gc_sweep_preview(grace_ms).await.map_err(err)?) } else { None };
        if output == "json" {
            let mut v = serde_json::json!({"dryRun": true, "linksToRemove": links, "blobsToDelete": blobs, "bytesToDelete": bytes});
            if let Some((swept, n, b)) = orphans {
                v["swept"] = swept.into();
                v["orphansToDelete"] = n.into();
                v["orphanBytesToDelete"] = b.into();
            }
            println!("{v}");
        } else {
            println!(
                "gc (dry run): would remove {links} repository link(s); {blobs} blob(s) ({}) would be unlinked and \
                 unreferenced, and deleted once found so for the grace period",
                human_bytes(bytes)
            );
            if let Some((swept, n, b)) = orphans {
                println!(
                    "gc (dry run): of {swept} blob(s) in storage, {n} ({}) are known to no metadata and would be deleted",
                    human_bytes(b)
                );
            }
        }
        return Ok(());
    }
    let tty = std::io::stderr().is_terminal();
    let owner = format!("berth gc (pid {})", std::process::id());
    let mut waiting = false;
    let report = loop {
        let outcome = reg
            .gc_pass(&owner, grace_ms, sweep, |r: &GcReport| {
                if tty {
                    eprint!(
                        "\rgc: {} link(s) removed, {} blob(s) deleted ({})   ",
                        r.links_removed,
                        r.blobs_deleted,
                        human_bytes(r.bytes_deleted)
                    );
                }
            })
            .await
            .map_err(err)?;
        match outcome {
            GcOutcome::Done(r) => break r,
            // One pass at a time across the cluster: wait for the running one (it ends, or its
            // owner dies and its lease expires).
            GcOutcome::Busy { owner, .. } => {
                if !waiting {
                    eprintln!("gc: waiting for the pass that is running ({owner}) to end");
                    waiting = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    if tty {
        eprintln!();
    }
    if output == "json" {
        println!(
            "{}",
            serde_json::json!({
                "dryRun": false,
                "linksRemoved": report.links_removed,
                "marked": report.marked,
                "blobsDeleted": report.blobs_deleted,
                "bytesDeleted": report.bytes_deleted,
                "resumed": report.resumed,
                "referrersDeleted": report.referrers_deleted,
                "swept": report.swept,
                "orphansDeleted": report.orphans_deleted,
                "orphanBytesDeleted": report.orphan_bytes_deleted,
                "copiesDeleted": report.copies_deleted,
            })
        );
    } else {
        println!(
            "gc: {} repository link(s) removed, {} blob(s) newly found unlinked (deleted after the grace period), \
             {} blob(s) deleted ({}){}",
            report.links_removed,
            report.marked,
            report.blobs_deleted,
            human_bytes(report.bytes_deleted),
            if report.resumed > 0 {
                format!(", {} interrupted deletion(s) finished", report.resumed)
            } else {
                String::new()
            }
        );
        if report.referrers_deleted > 0 {
            println!("gc: {} referrer(s) whose subject was gone deleted", report.referrers_deleted);
        }
        if sweep {
            println!(
                "gc: swept {} blob(s) in storage, deleted {} ({}) that no metadata knew",
                report.swept,
                report.orphans_deleted,
                human_bytes(report.orphan_bytes_deleted)
            );
            if report.copies_deleted > 0 {
                println!(
                    "gc: deleted {} redundant copy(ies) of blobs in the store their location does not name",
                    report.copies_deleted
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
