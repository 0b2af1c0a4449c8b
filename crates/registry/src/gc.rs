//! Online garbage collection of blobs (protocol and safety argument: docs/gc.md).
//!
//! A pass, while the registry keeps serving:
//! 1. finishes deletions a crash interrupted (tombstones a lease past their deadline: claim them,
//!    delete the bytes, drop the tombstones), and moves between the blob and archive stores
//!    (stale move holds: delete the copy the blob's location does not name);
//! 2. deletes untagged referrers pushed before the grace period whose subject is gone (and
//!    then their own referrers), then removes repository links older than the grace period that no manifest of their repository
//!    references (each repository's in its write order, with its manifest writes);
//! 3. marks the blobs no repository links as candidates (the review queue);
//! 4. deletes the candidates marked at least a grace period ago that are still unlinked,
//!    unreferenced and not held by an upload: rows and tombstone in one transaction per batch,
//!    then the bytes (within the lease), then the tombstones;
//! 5. with `sweep`, lists the whole store (and the archive store) and deletes bytes older than the grace period that no
//!    metadata knows (no blob row, no upload hold, no deletion in flight): crash leftovers;
//! 6. expires holds left by uploads that died between their hold and their link.

use crate::{Registry, Result};
use berth_meta::gc::{Location, MoveGoal, TakenBlob};
use berth_storage::StorageError;
use futures::StreamExt;
use std::time::{Duration, Instant};

/// Candidates taken per transaction.
const BATCH: u32 = 2000;
/// Blob deletions in flight at once.
const DELETES_IN_FLIGHT: usize = 64;
/// An upload's hold older than this is taken to have died with its node (an upload holds a
/// digest for the time it takes to commit its bytes and link them: well under a minute).
pub const HOLD_EXPIRY_MS: i64 = 3_600_000;
/// How long an upload waits for a deletion of its digest in flight before it answers 503.
const UPLOAD_WAIT: Duration = Duration::from_secs(30);

/// Blobs taken (or claimed) for deletion together: their tombstones were set at `since`, and
/// their bytes may be deleted until `deadline` (the lease, counted from before the take).
struct Batch {
    taken: Vec<TakenBlob>,
    since: i64,
    deadline: Instant,
}

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
    /// Untagged referrers whose subject was gone, deleted.
    pub referrers_deleted: u64,
    /// With a sweep: blobs the store listed.
    pub swept: u64,
    /// With a sweep: bytes in storage that no metadata knew, deleted (count, bytes).
    pub orphans_deleted: u64,
    pub orphan_bytes_deleted: u64,
    /// With a sweep: copies of blobs in the store their location does not name (the archive
    /// copy of a blob an upload wrote again, a crashed move's leftover), deleted.
    pub copies_deleted: u64,
}

/// How a pass went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcOutcome {
    /// It ran.
    Done(GcReport),
    /// Another pass holds the cluster's lease: `owner`, since `started_at` (epoch ms).
    Busy { owner: String, started_at: i64 },
}

impl Registry {
    /// One garbage collection pass with grace period `grace_ms` (see the module documentation),
    /// if no other pass runs anywhere: `owner` (a node, or `berth gc`) takes the cluster's lease
    /// for the pass, renews it while it works and drops it at the end; a pass that cannot renew
    /// it stops (the next one goes on). `progress` sees the running totals after every batch.
    pub async fn gc_pass(
        &self,
        owner: &str,
        grace_ms: i64,
        sweep: bool,
        progress: impl FnMut(&GcReport),
    ) -> Result<GcOutcome> {
        let lease_ms = self.lease_ms();
        let now = self.now();
        if let Some((owner, started_at)) = self.meta.gc_pass_acquire(owner, now, now + lease_ms).await? {
            return Ok(GcOutcome::Busy { owner, started_at });
        }
        let renew = async {
            loop {
                tokio::time::sleep(self.settings.gc_lease / 4).await;
                if !self.meta.gc_pass_renew(owner, self.now() + lease_ms).await? {
                    break;
                }
            }
            Err::<GcReport, _>(crate::Error::Unavailable(
                "garbage collection: this pass lost the cluster's lease (it stalled for longer than the lease); \
                 the next pass goes on"
                    .into(),
            ))
        };
        let result = tokio::select! {
            r = self.gc_pass_leased(grace_ms, sweep, progress) => r,
            r = renew => r,
        };
        // Best effort: a lease left behind expires.
        if let Err(e) = self.meta.gc_pass_release(owner).await {
            tracing::warn!(error = %e, "could not release the garbage collection lease; it expires");
        }
        result.map(GcOutcome::Done)
    }

    async fn gc_pass_leased(
        &self,
        grace_ms: i64,
        sweep: bool,
        mut progress: impl FnMut(&GcReport),
    ) -> Result<GcReport> {
        let mut report = GcReport::default();
        let started = std::time::Instant::now();
        let mut phases: Vec<(&str, std::time::Duration)> = Vec::new();
        let mut lap = std::time::Instant::now();
        let mut phase = |name: &'static str| {
            phases.push((name, lap.elapsed()));
            lap = std::time::Instant::now();
        };
        // 1. Deletions whose process died (tombstones a lease past their deadline).
        loop {
            let (deadline, now) = (Instant::now() + self.settings.gc_lease, self.now());
            let claimed = self.meta.gc_claim_stale(now - self.lease_ms(), now + self.lease_ms(), BATCH).await?;
            if claimed.digests.is_empty() {
                break;
            }
            self.delete_bytes(claimed.digests.iter().map(String::as_str), deadline).await?;
            self.meta.gc_release(&claimed.digests, claimed.since).await?;
            report.resumed += claimed.digests.len() as u64;
        }
        // ... and moves between the stores whose process died (their holds keep the blobs).
        report.resumed += self.finish_stale_moves().await?;
        phase("resume");
        let now = self.now();
        // "Older than the grace period" includes everything before now when it is 0.
        let cut = now - grace_ms.max(0) + 1;
        // 2. Referrers whose subject is gone (a referrer deleted here can leave its own
        // referrers dangling: the next round finds them).
        loop {
            let dangling = self.meta.gc_dangling_referrers(cut, 500).await?;
            let mut deleted = 0;
            for (repo, digest) in &dangling {
                if self.meta.delete_dangling_referrer(*repo, digest, self.now()).await? {
                    self.cache.invalidate(*repo);
                    deleted += 1;
                }
            }
            report.referrers_deleted += deleted;
            if deleted == 0 {
                break;
            }
            progress(&report);
        }
        phase("referrers");
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
        let mut pending: Option<Batch> = None;
        loop {
            let due = self.meta.gc_due(cut, BATCH).await?;
            let take = async {
                // The tombstones carry this deadline (see `tombstone_deadline`).
                let (t, deadline, since) =
                    (Instant::now(), Instant::now() + self.settings.gc_lease, self.now() + self.lease_ms());
                let taken = if due.is_empty() {
                    Vec::new()
                } else {
                    self.meta.gc_take(&due, cut, now - HOLD_EXPIRY_MS, since).await?
                };
                Ok::<_, crate::Error>((Batch { taken, since, deadline }, t.elapsed()))
            };
            let finish = self.finish_deletions(pending.as_ref());
            let (taken, finished) = tokio::join!(take, finish);
            let (bytes_e, release_e) = finished?;
            bytes_t += bytes_e;
            release_t += release_e;
            if let Some(done) = pending.as_ref().filter(|b| !b.taken.is_empty()) {
                report.blobs_deleted += done.taken.len() as u64;
                report.bytes_deleted += done.taken.iter().map(|t| t.size).sum::<u64>();
                progress(&report);
            }
            let (taken, take_e) = taken?;
            take_t += take_e;
            pending = Some(taken);
            if due.is_empty() {
                break;
            }
        }
        phase("delete");
        // 5. Bytes no metadata knows.
        if sweep {
            for (store, location) in self.stores().into_iter().zip([Location::Standard, Location::Archive]) {
                self.sweep(store.as_ref(), location, cut, true, &mut report, &mut progress).await?;
            }
            phase("sweep");
        }
        // 6. Holds of dead uploads.
        self.meta.gc_expire_holds(self.now() - HOLD_EXPIRY_MS).await?;
        phase("expire-holds");
        tracing::debug!(
            total = ?started.elapsed(), ?phases, take = ?take_t, bytes = ?bytes_t, release = ?release_t,
            "garbage collection pass timings"
        );
        if report.blobs_deleted + report.orphans_deleted > 0 {
            metrics::counter!("berth_gc_blobs_deleted_total").increment(report.blobs_deleted + report.orphans_deleted);
            metrics::counter!("berth_gc_bytes_deleted_total")
                .increment(report.bytes_deleted + report.orphan_bytes_deleted);
        }
        Ok(report)
    }

    /// What a pass with grace period `grace_ms` would do now, changing nothing: (links it would
    /// remove, blobs left unlinked and unreferenced, their bytes).
    pub async fn gc_preview(&self, grace_ms: i64) -> Result<(u64, u64, u64)> {
        Ok(self.meta.gc_preview(self.now() - grace_ms.max(0) + 1).await?)
    }

    /// What a sweep with grace period `grace_ms` would delete now, changing nothing: (blobs
    /// listed, orphans, their bytes).
    pub async fn gc_sweep_preview(&self, grace_ms: i64) -> Result<(u64, u64, u64)> {
        let mut report = GcReport::default();
        let cut = self.now() - grace_ms.max(0) + 1;
        for (store, location) in self.stores().into_iter().zip([Location::Standard, Location::Archive]) {
            self.sweep(store.as_ref(), location, cut, false, &mut report, &mut |_: &GcReport| {}).await?;
        }
        Ok((report.swept, report.orphans_deleted, report.orphan_bytes_deleted))
    }

    /// List `store` (the one for blobs at `location`) page by page; delete (or, without
    /// `delete`, only count) the blobs written before `cut` that no metadata knows, and (with
    /// `delete`) the copies of blobs whose location is the other store. Each page's orphans are taken under their mutexes
    /// (tombstones) before their bytes go, as a pass takes candidates.
    async fn sweep(
        &self,
        store: &dyn berth_storage::BlobStore,
        location: Location,
        cut: i64,
        delete: bool,
        report: &mut GcReport,
        progress: &mut impl FnMut(&GcReport),
    ) -> Result<()> {
        const PAGE: usize = 1000;
        let mut after: Option<berth_oci::Digest> = None;
        loop {
            let page = store.list_blobs(after.as_ref(), PAGE).await.map_err(crate::storage_err)?;
            let Some(last) = page.last() else { break };
            after = Some(last.digest.clone());
            let sizes: std::collections::HashMap<String, u64> =
                page.iter().filter(|b| b.modified_ms < cut).map(|b| (b.digest.to_string(), b.size)).collect();
            let old: Vec<String> = sizes.keys().cloned().collect();
            let holds_after = self.now() - HOLD_EXPIRY_MS;
            let orphans = self.meta.gc_orphans(&old, holds_after).await?;
            report.swept += page.len() as u64;
            let gone = if orphans.is_empty() || !delete {
                orphans
            } else {
                let (deadline, until) = (Instant::now() + self.settings.gc_lease, self.now() + self.lease_ms());
                let taken = self.meta.gc_take_orphans(&orphans, holds_after, until).await?;
                self.delete_bytes(taken.iter().map(String::as_str), deadline).await?;
                self.meta.gc_release(&taken, until).await?;
                taken
            };
            report.orphans_deleted += gone.len() as u64;
            report.orphan_bytes_deleted += gone.iter().map(|d| sizes.get(d).copied().unwrap_or(0)).sum::<u64>();
            // Copies of known blobs in the store their location does not name (with an archive
            // store only): each removed under the blob's move hold, unless a move, an upload or
            // a deletion of it is in flight.
            if self.archive.is_some() && delete {
                for (d, at) in self.meta.blob_locations(&old).await? {
                    if at == location {
                        continue;
                    }
                    match self.move_blob(&d, MoveGoal::Tidy).await {
                        Ok(true) => report.copies_deleted += 1,
                        // A blob another party is busy with is left to the next sweep.
                        Ok(false) | Err(crate::Error::Unavailable(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            progress(report);
            if page.len() < PAGE {
                break;
            }
        }
        Ok(())
    }

    /// The rest of a deletion whose rows are taken: the bytes, then the tombstones. Returns the
    /// time each took.
    async fn finish_deletions(&self, batch: Option<&Batch>) -> Result<(Duration, Duration)> {
        let Some(batch) = batch.filter(|b| !b.taken.is_empty()) else {
            return Ok(Default::default());
        };
        let t = Instant::now();
        self.delete_bytes(batch.taken.iter().map(|t| t.digest.as_str()), batch.deadline).await?;
        let bytes = t.elapsed();
        let t = Instant::now();
        let digests: Vec<String> = batch.taken.iter().map(|t| t.digest.clone()).collect();
        self.meta.gc_release(&digests, batch.since).await?;
        Ok((bytes, t.elapsed()))
    }

    /// Tombstones record their owner's deadline (when its deletions are cut off, by its own
    /// lease), not when they were set: a party claims one only a lease (its own) after that
    /// deadline, so owners and claimers with different `gc_lease_secs` stay apart.
    pub(crate) fn lease_ms(&self) -> i64 {
        self.settings.gc_lease.as_millis() as i64
    }

    /// Hold `digest` for the upload `holder` before its bytes are written (docs/gc.md). A
    /// deletion of the digest in flight is waited for (a live one ends within its lease) or,
    /// when its process died, finished here; 503 if neither happens within [`UPLOAD_WAIT`].
    pub(crate) async fn hold_for_upload(&self, digest: &berth_oci::Digest, holder: &str) -> Result<()> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            if self.meta.hold_blob(digest.as_str(), holder, self.now()).await? {
                return Ok(());
            }
            let (deadline, now) = (Instant::now() + self.settings.gc_lease, self.now());
            let until = now + self.lease_ms();
            if self.meta.gc_claim_stale_one(digest.as_str(), now - self.lease_ms(), until).await? {
                self.delete_bytes(std::iter::once(digest.as_str()), deadline).await?;
                self.meta.gc_release(&[digest.to_string()], until).await?;
                continue;
            }
            if let Some(location) =
                self.meta.move_claim_stale_one(digest.as_str(), now - self.lease_ms(), until).await?
            {
                self.finish_move(digest.as_str(), location, until).await?;
                continue;
            }
            if started.elapsed() >= UPLOAD_WAIT {
                return Err(crate::Error::Unavailable(format!(
                    "blob {digest} is being garbage-collected; retry the upload"
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// The blob store, and the archive store when there is one.
    fn stores(&self) -> Vec<std::sync::Arc<dyn berth_storage::BlobStore>> {
        std::iter::once(self.blobs.clone()).chain(self.archive.clone()).collect()
    }

    /// Delete the bytes of `digests` from every store (absent ones are fine: a resumed
    /// deletion, or a blob in the other store), each only before `deadline` (the lease of their
    /// tombstones): past it, the deletion stops with an error and leaves the rest to whoever
    /// claims the tombstones once they are stale.
    async fn delete_bytes<'a>(&self, digests: impl Iterator<Item = &'a str>, deadline: Instant) -> Result<()> {
        // (digest, in the archive store)
        let mut parsed: Vec<(berth_oci::Digest, bool)> = Vec::new();
        for d in digests.filter_map(|d| d.parse::<berth_oci::Digest>().ok()) {
            if self.archive.is_some() {
                parsed.push((d.clone(), true));
            }
            parsed.push((d, false));
        }
        let results: Vec<std::result::Result<String, String>> = futures::stream::iter(parsed)
            .map(|(d, archived)| async move {
                let store = match &self.archive {
                    Some(a) if archived => a,
                    _ => &self.blobs,
                };
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(format!("the deletion of {d} outlived its lease"));
                }
                match tokio::time::timeout(left, store.delete(&d)).await {
                    Ok(Ok(()) | Err(StorageError::NotFound)) => Ok(d.to_string()),
                    Ok(Err(e)) => Err(format!("deleting {d}: {e}")),
                    Err(_) => Err(format!("the deletion of {d} outlived its lease")),
                }
            })
            .buffer_unordered(DELETES_IN_FLIGHT)
            .collect()
            .await;
        // The wrappings of their data keys go with the bytes, while the tombstones still keep
        // uploads of the same digests waiting: an upload wraps its data key only once it holds
        // the digest (`finish_in`), so no wrapping of a live copy is removed here.
        let deleted: Vec<String> = results.iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
        if !deleted.is_empty()
            && let Err(e) = self.meta.delete_blob_keys_of(&deleted).await
        {
            tracing::warn!(error = %e, "forgetting deleted blobs' data keys failed");
        }
        if let Some(e) = results.into_iter().find_map(|r| r.err()) {
            return Err(crate::Error::Unavailable(format!(
                "garbage collection: {e}; a later pass finishes what is left"
            )));
        }
        Ok(())
    }
}
