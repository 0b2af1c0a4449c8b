//! Online garbage collection of blobs (protocol and safety argument: docs/gc.md).
//!
//! A pass, while the registry keeps serving:
//! 1. finishes deletions a crash interrupted (tombstones: delete the bytes, drop the tombstone);
//! 2. removes repository links older than the grace period that no manifest of their repository
//!    references (each repository's in its write order, with its manifest writes);
//! 3. marks the blobs no repository links as candidates (the review queue);
//! 4. deletes the candidates marked at least a grace period ago that are still unlinked,
//!    unreferenced and not held by an upload: rows and tombstone in one transaction per batch,
//!    then the bytes, then the tombstones;
//! 5. expires holds left by uploads that died between their hold and their link.

use crate::{Registry, Result, storage_err};
use berth_meta::gc::TakenBlob;
use berth_storage::StorageError;
use futures::StreamExt;

/// Candidates taken per transaction.
const BATCH: u32 = 2000;
/// Blob deletions in flight at once.
const DELETES_IN_FLIGHT: usize = 64;
/// An upload's hold older than this is taken to have died with its node (an upload holds a
/// digest for the time it takes to commit its bytes and link them: well under a minute).
pub const HOLD_EXPIRY_MS: i64 = 3_600_000;

/// What a pass did (or, dry, would do).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcReport {
    /// Repository links removed.
    pub links_removed: u64,
    /// Blobs newly marked as candidates.
    pub marked: u64,
    /// Blobs deleted (rows and bytes).
    pub blobs_deleted: u64,
    /// Their bytes.
    pub bytes_deleted: u64,
    /// Deletions an earlier, interrupted pass left and this one finished.
    pub resumed: u64,
}

impl Registry {
    /// One garbage collection pass with grace period `grace_ms` (see the module documentation);
    /// `progress` sees the running totals after every batch.
    pub async fn gc_pass(&self, grace_ms: i64, mut progress: impl FnMut(&GcReport)) -> Result<GcReport> {
        let mut report = GcReport::default();
        let started = std::time::Instant::now();
        let mut phases: Vec<(&str, std::time::Duration)> = Vec::new();
        let mut lap = std::time::Instant::now();
        let mut phase = |name: &'static str| {
            phases.push((name, lap.elapsed()));
            lap = std::time::Instant::now();
        };
        // 1. Deletions a crash interrupted.
        loop {
            let stones = self.meta.gc_tombstones(BATCH).await?;
            if stones.is_empty() {
                break;
            }
            self.delete_bytes(stones.iter().map(String::as_str)).await?;
            self.meta.gc_release(&stones).await?;
            report.resumed += stones.len() as u64;
        }
        phase("resume");
        let now = self.now();
        // "Older than the grace period" includes everything before now when it is 0.
        let cut = now - grace_ms.max(0) + 1;
        // 2. Stale links.
        let mut after = 0;
        loop {
            let repos = self.meta.gc_repositories_with_stale_links(cut, after, 100).await?;
            let Some(&last) = repos.last() else { break };
            for r in repos {
                report.links_removed += self.meta.gc_unlink_stale(r, cut).await?;
                self.cache.invalidate(r);
            }
            after = last;
            progress(&report);
        }
        phase("unlink");
        // 3. The review queue.
        report.marked = self.meta.gc_mark(now).await?;
        progress(&report);
        phase("mark");
        let (mut take_t, mut bytes_t, mut release_t) =
            (std::time::Duration::ZERO, std::time::Duration::ZERO, std::time::Duration::ZERO);
        // 4. Deletions, pipelined: a batch's bytes are deleted (and its tombstones dropped)
        // while the next batch is taken.
        let mut pending: Vec<TakenBlob> = Vec::new();
        loop {
            let due = self.meta.gc_due(cut, BATCH).await?;
            let take = async {
                let t = std::time::Instant::now();
                let taken = if due.is_empty() {
                    Vec::new()
                } else {
                    self.meta.gc_take(&due, cut, now - HOLD_EXPIRY_MS, self.now()).await?
                };
                Ok::<_, crate::Error>((taken, t.elapsed()))
            };
            let finish = self.finish_deletions(&pending);
            let (taken, finished) = tokio::join!(take, finish);
            let (bytes_e, release_e) = finished?;
            bytes_t += bytes_e;
            release_t += release_e;
            report.blobs_deleted += pending.len() as u64;
            report.bytes_deleted += pending.iter().map(|t| t.size).sum::<u64>();
            let (taken, take_e) = taken?;
            take_t += take_e;
            if !pending.is_empty() {
                progress(&report);
            }
            pending = taken;
            if due.is_empty() {
                break;
            }
        }
        phase("delete");
        // 5. Holds of dead uploads.
        self.meta.gc_expire_holds(self.now() - HOLD_EXPIRY_MS).await?;
        phase("expire-holds");
        tracing::debug!(
            total = ?started.elapsed(), ?phases, take = ?take_t, bytes = ?bytes_t, release = ?release_t,
            "garbage collection pass timings"
        );
        if report.blobs_deleted > 0 {
            metrics::counter!("berth_gc_blobs_deleted_total").increment(report.blobs_deleted);
            metrics::counter!("berth_gc_bytes_deleted_total").increment(report.bytes_deleted);
        }
        Ok(report)
    }

    /// What a pass with grace period `grace_ms` would do now, changing nothing: (links it would
    /// remove, blobs left unlinked and unreferenced, their bytes).
    pub async fn gc_preview(&self, grace_ms: i64) -> Result<(u64, u64, u64)> {
        Ok(self.meta.gc_preview(self.now() - grace_ms.max(0) + 1).await?)
    }

    /// The rest of a deletion whose rows are taken: the bytes, then the tombstones. Returns the
    /// time each took.
    async fn finish_deletions(&self, taken: &[TakenBlob]) -> Result<(std::time::Duration, std::time::Duration)> {
        if taken.is_empty() {
            return Ok(Default::default());
        }
        let t = std::time::Instant::now();
        self.delete_bytes(taken.iter().map(|t| t.digest.as_str())).await?;
        let bytes = t.elapsed();
        let t = std::time::Instant::now();
        let digests: Vec<String> = taken.iter().map(|t| t.digest.clone()).collect();
        self.meta.gc_release(&digests).await?;
        Ok((bytes, t.elapsed()))
    }

    /// Delete the bytes of `digests` (absent ones are fine: a resumed deletion).
    async fn delete_bytes<'a>(&self, digests: impl Iterator<Item = &'a str>) -> Result<()> {
        let parsed: Vec<berth_oci::Digest> = digests.filter_map(|d| d.parse().ok()).collect();
        let results: Vec<std::result::Result<(), StorageError>> = futures::stream::iter(parsed)
            .map(|d| async move {
                match self.blobs.delete(&d).await {
                    Ok(()) | Err(StorageError::NotFound) => Ok(()),
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(DELETES_IN_FLIGHT)
            .collect()
            .await;
        results.into_iter().collect::<std::result::Result<Vec<()>, _>>().map_err(storage_err)?;
        Ok(())
    }
}
