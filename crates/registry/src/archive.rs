//! ECR's archive storage class (`UpdateImageStorageClass`, lifecycle `transition` actions): an
//! archived image stays listed (with its `imageStatus`) but cannot be pulled until it is restored
//! or pushed again; a restore runs as a background job (`ACTIVATING`, then `ACTIVE`).
//!
//! With an archive store (`archive_storage`), the bytes move: once an image is archived, the
//! [`ARCHIVE_JOB`] moves each of its blobs that only archived images reference to the archive
//! store (a blob shared with a standard image stays in standard storage); a restore moves them
//! back before the image is `ACTIVE`, and a push that references an archived blob moves it back
//! too. A move is copy (verified against the digest), switch the blob's location, delete the
//! old copy, all under the blob's move hold (docs/gc.md has the protocol). Reads of a blob find
//! its bytes in either store, so a move never interrupts a pull. Without an archive store,
//! archiving changes what may be pulled, not where the bytes live.

use crate::{Error, ImageFailure, Registry, Result, storage_err};
use berth_meta::gc::{Location, MoveGoal};
use berth_meta::{ImageStatus, Namespace, NewJob};
use berth_storage::{BlobStore, EMPTY_AREA, StorageError};
use futures::StreamExt;
use serde_json::json;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// Job kind of a restore.
pub const RESTORE_JOB: &str = "image-restore";

/// Job kind of moving an archived image's bytes to the archive store.
pub const ARCHIVE_JOB: &str = "image-archive";

/// Blobs of one image moved at once.
const MOVES_IN_FLIGHT: usize = 4;

/// Upload area id of the copy of `digest` that a move writes (one move per digest at a time).
pub(crate) fn move_area(digest: &str) -> String {
    format!("move-{}", digest.replace(':', "-"))
}

/// Whether an upload area belongs to a move (not to an upload session).
pub(crate) fn is_move_area(id: &str) -> bool {
    id.starts_with("move-")
}

/// `targetStorageClass` of `UpdateImageStorageClass`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetStorageClass {
    Standard,
    Archive,
}

/// What `UpdateImageStorageClass` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageClassUpdate {
    /// The image (its digest) and its status after the call.
    Done { digest: String, status: ImageStatus },
    /// The image id did not name an image.
    Failed(ImageFailure),
    /// The transition is not one Berth (or ECR) makes, and why.
    NotSupported(String),
}

impl Registry {
    /// Move an image between the storage classes. To the archive: at once (pulls of it fail
    /// from then on). Back to standard: the image is `ACTIVATING` until the restore job runs.
    pub async fn update_image_storage_class(
        &self,
        ns: &Namespace,
        name: &str,
        id: &crate::ImageId,
        target: TargetStorageClass,
    ) -> Result<StorageClassUpdate> {
        let repo = self.repo_in(ns, name).await?;
        let img = match self.image_in(repo.id, id).await? {
            Ok(i) => i,
            Err(f) => return Ok(StorageClassUpdate::Failed(f)),
        };
        let digest = img.digest.clone();
        let done = |status| Ok(StorageClassUpdate::Done { digest: digest.clone(), status });
        match (target, img.status) {
            (TargetStorageClass::Archive, ImageStatus::Archived)
            | (TargetStorageClass::Standard, ImageStatus::Active) => done(img.status),
            // A restore whose job was lost (or gave up) is started again; a pending one is kept.
            (TargetStorageClass::Standard, ImageStatus::Activating) => {
                self.enqueue_restore(repo.id, &digest).await?;
                done(self.status_of(repo.id, &digest).await?)
            }
            (TargetStorageClass::Archive, ImageStatus::Activating) => Ok(StorageClassUpdate::NotSupported(format!(
                "The image '{digest}' is being restored from the archive storage class and cannot be archived until the restore completes."
            ))),
            (TargetStorageClass::Archive, ImageStatus::Active) => {
                // The move itself refuses a manifest an index lists (checked in its transaction).
                if self.set_status(repo.id, &digest, ImageStatus::Active, ImageStatus::Archived).await? {
                    self.enqueue_archive(repo.id, &digest).await?;
                } else if self.meta.referenced_by_index(repo.id, &digest).await? {
                    return Ok(StorageClassUpdate::NotSupported(format!(
                        "The image '{digest}' is referenced by an image index in the repository; archive the index instead."
                    )));
                }
                done(self.status_of(repo.id, &digest).await?)
            }
            (TargetStorageClass::Standard, ImageStatus::Archived) => {
                if self.set_status(repo.id, &digest, ImageStatus::Archived, ImageStatus::Activating).await? {
                    self.enqueue_restore(repo.id, &digest).await?;
                }
                done(self.status_of(repo.id, &digest).await?)
            }
        }
    }

    /// Queue the restore of an image (one pending job per image: a job of the same key that has
    /// not finished makes this a no-op). Also what moves the archived blobs of a pushed (active)
    /// manifest back to standard storage.
    pub(crate) async fn enqueue_restore(&self, repo: i64, digest: &str) -> Result<()> {
        self.enqueue_image_job(RESTORE_JOB, repo, digest).await
    }

    /// Queue the move of an archived image's bytes to the archive store (when there is one).
    pub(crate) async fn enqueue_archive(&self, repo: i64, digest: &str) -> Result<()> {
        if self.archive.is_none() {
            return Ok(());
        }
        self.enqueue_image_job(ARCHIVE_JOB, repo, digest).await
    }

    async fn enqueue_image_job(&self, kind: &str, repo: i64, digest: &str) -> Result<()> {
        let now = self.now();
        let key = format!("{repo}:{digest}");
        let payload = json!({"repo": repo, "digest": digest}).to_string();
        let job = NewJob { kind, key: &key, payload: &payload, run_after: now, max_attempts: 10, once: false };
        self.meta.enqueue_job(&job, now).await?;
        Ok(())
    }

    /// After a push of manifest `digest`: blobs of it that are in the archive store (shared
    /// with archived images) go back to standard storage, through a restore job.
    pub(crate) async fn unarchive_pushed(&self, repo: i64, digest: &str) -> Result<()> {
        if self.archive.is_none() {
            return Ok(());
        }
        let blobs = self.meta.manifest_blob_locations(repo, digest).await?;
        if blobs.iter().any(|(_, l)| *l == Location::Archive) {
            self.enqueue_restore(repo, digest).await?;
        }
        Ok(())
    }

    /// The restore job (payload `{"repo", "digest"}`): the image's blobs come back from the
    /// archive store, then the image becomes `ACTIVE` again. A pushed-again or deleted image is
    /// left as it is (the blobs of a pushed-again one still come back). Fails (and is retried)
    /// while a blob cannot be moved yet (another move or a deletion of it is in flight).
    pub async fn restore_image(&self, payload: &str) -> Result<()> {
        let (repo, digest) = image_job(payload)?;
        if self.archive.is_some() {
            let left = self.move_image_blobs(repo, &digest, Location::Standard).await?;
            if left > 0 {
                return Err(Error::Unavailable(format!(
                    "{left} blob(s) of {digest} are still in the archive store (a move or deletion of them is in \
                     flight); the restore is retried"
                )));
            }
        }
        self.set_status(repo, &digest, ImageStatus::Activating, ImageStatus::Active).await?;
        Ok(())
    }

    /// The archive job (payload `{"repo", "digest"}`): the blobs of the archived image that only
    /// archived images reference move to the archive store. Nothing happens once the image is
    /// no longer archived.
    pub async fn archive_image(&self, payload: &str) -> Result<()> {
        let (repo, digest) = image_job(payload)?;
        if self.archive.is_none() || self.status_of(repo, &digest).await? != ImageStatus::Archived {
            return Ok(());
        }
        self.move_image_blobs(repo, &digest, Location::Archive).await?;
        Ok(())
    }

    /// Move the blobs of manifest `digest` that are not at `to` there (those that qualify);
    /// returns how many are still not at `to` afterwards.
    async fn move_image_blobs(&self, repo: i64, digest: &str, to: Location) -> Result<usize> {
        let blobs = self.meta.manifest_blob_locations(repo, digest).await?;
        let results: Vec<Result<()>> = futures::stream::iter(blobs.into_iter().filter(|(_, l)| *l != to))
            .map(|(d, _)| async move { self.move_blob(&d, MoveGoal::To(to)).await.map(|_| ()) })
            .buffer_unordered(MOVES_IN_FLIGHT)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
        let after = self.meta.manifest_blob_locations(repo, digest).await?;
        Ok(after.iter().filter(|(_, l)| *l != to).count())
    }

    /// One move of a blob's bytes between the stores (or, [`MoveGoal::Tidy`], the removal of the
    /// copy its location does not name), under its move hold: `false` when there is nothing to
    /// do; `Unavailable` when another party is busy with the blob (nothing changed: retry).
    pub(crate) async fn move_blob(&self, digest: &str, goal: MoveGoal) -> Result<bool> {
        let Some(archive) = self.archive.clone() else { return Ok(false) };
        let d = Self::parse_digest(digest)?;
        let deadline = Instant::now() + self.settings.gc_lease;
        let (now, lease) = (self.now(), self.lease_ms());
        let holds_after = now - crate::gc::HOLD_EXPIRY_MS;
        let mut start = self.meta.move_hold(digest, goal, holds_after, now + lease, now).await?;
        if start == berth_meta::gc::MoveStart::Busy {
            // A move whose process died is finished here rather than left for the next GC
            // pass; then the hold is asked for again.
            if let Some(location) = self.meta.move_claim_stale_one(digest, now - lease, now + lease).await? {
                self.finish_move(digest, location, now + lease).await?;
                let now = self.now();
                start = self.meta.move_hold(digest, goal, holds_after, now + lease, now).await?;
            }
        }
        let hold = match start {
            berth_meta::gc::MoveStart::Held(h) => h,
            berth_meta::gc::MoveStart::NotNeeded => return Ok(false),
            berth_meta::gc::MoveStart::Busy => {
                return Err(Error::Unavailable(format!(
                    "blob {digest} is being moved, deleted or uploaded; the move is retried"
                )));
            }
        };
        let since = AtomicI64::new(hold.since);
        let store = |l: Location| if l == Location::Archive { archive.clone() } else { self.blobs.clone() };
        let moved = async {
            if let MoveGoal::To(to) = goal {
                let (src, dst) = (store(hold.location), store(to));
                if let Err(e) = self.copy_blob(src.as_ref(), dst.as_ref(), &d, hold.size).await {
                    // Nothing changed but a copy in the store the location does not name (at
                    // worst a complete, redundant one): the hold can go.
                    let _ = dst.upload_abort(&move_area(digest)).await;
                    self.meta.move_release(digest, since.load(Ordering::Acquire)).await?;
                    return Err(e);
                }
                if !self.meta.move_commit(digest, to, since.load(Ordering::Acquire), self.now()).await? {
                    // Referenced by a standard image meanwhile, or the hold was lost (a slow
                    // renewal let another party claim it as stale): the copy goes again and the
                    // move is retried (a blob that no longer qualifies then needs nothing).
                    self.delete_in(dst.as_ref(), digest).await?;
                    self.meta.move_release(digest, since.load(Ordering::Acquire)).await?;
                    return Err(Error::Unavailable(format!(
                        "the move of {digest} could not switch its location; the move is retried"
                    )));
                }
                self.delete_in(src.as_ref(), digest).await?;
            } else {
                self.delete_in(store(hold.location.other()).as_ref(), digest).await?;
            }
            Ok(true)
        };
        let r = self.under_move_hold(digest, &since, deadline, moved).await;
        // A hold whose bytes could not all be dealt with stays: it goes stale and whoever claims
        // it finishes (docs/gc.md).
        if r.is_ok() {
            self.meta.move_release(digest, since.load(Ordering::Acquire)).await?;
        }
        if matches!(r, Ok(true)) {
            metrics::counter!("berth_archive_blob_moves_total", "to" => match goal {
                MoveGoal::To(l) => l.as_str(),
                MoveGoal::Tidy => "tidy",
            })
            .increment(1);
        }
        r
    }

    /// Run `work` while renewing the move hold of `digest` (its token in `since`) every quarter
    /// lease; `work` is cut off when a renewal fails or the hold's deadline passes unrenewed.
    async fn under_move_hold<T>(
        &self,
        digest: &str,
        since: &AtomicI64,
        deadline: Instant,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let renew = async {
            let mut deadline = deadline;
            loop {
                let pause = self.settings.gc_lease / 4;
                if deadline.saturating_duration_since(Instant::now()) <= pause {
                    break;
                }
                tokio::time::sleep(pause).await;
                let (started, until) = (Instant::now(), self.now() + self.lease_ms());
                let renewed = tokio::time::timeout(
                    deadline.saturating_duration_since(started),
                    self.meta.move_renew(digest, since.load(Ordering::Acquire), until),
                )
                .await;
                match renewed {
                    Ok(Ok(true)) => {
                        since.store(until, Ordering::Release);
                        deadline = started + self.settings.gc_lease;
                    }
                    _ => break,
                }
            }
            Err(Error::Unavailable(format!("the move of {digest} lost its hold; a later pass finishes it")))
        };
        tokio::select! {
            r = work => r,
            r = renew => r,
        }
    }

    /// Delete the committed copy of `digest` in `store` and a move's area there (absent is fine).
    async fn delete_in(&self, store: &dyn BlobStore, digest: &str) -> Result<()> {
        let d = Self::parse_digest(digest)?;
        match store.delete(&d).await {
            Ok(()) | Err(StorageError::NotFound) => {}
            Err(e) => return Err(storage_err(e)),
        }
        store.upload_abort(&move_area(digest)).await.map_err(storage_err)
    }

    /// Finish moves whose process died (move holds a lease past their deadline): remove the
    /// copy in the store the blob's location does not name. Returns how many were finished.
    pub(crate) async fn finish_stale_moves(&self) -> Result<u64> {
        let mut n = 0;
        loop {
            let (now, lease) = (self.now(), self.lease_ms());
            let claimed = self.meta.move_claim_stale(now - lease, now + lease, 500).await?;
            if claimed.is_empty() {
                return Ok(n);
            }
            for (digest, location) in claimed {
                self.finish_move(&digest, location, now + lease).await?;
                n += 1;
            }
        }
    }

    /// The rest of a move whose hold was claimed at `since` (the blob is at `location`).
    pub(crate) async fn finish_move(&self, digest: &str, location: Location, since: i64) -> Result<()> {
        if let Some(archive) = &self.archive {
            let other = if location == Location::Archive { self.blobs.as_ref() } else { archive.as_ref() };
            let left = Duration::from_millis((since - self.now()).max(0) as u64);
            match tokio::time::timeout(left, self.delete_in(other, digest)).await {
                Ok(r) => r?,
                Err(_) => return Err(Error::Unavailable(format!("finishing the move of {digest} outlived its lease"))),
            }
        }
        self.meta.move_release(digest, since).await?;
        Ok(())
    }

    async fn set_status(&self, repo: i64, digest: &str, from: ImageStatus, to: ImageStatus) -> Result<bool> {
        let changed = self.meta.set_image_status(repo, digest, from, to, self.now()).await?;
        if changed {
            self.cache.invalidate(repo);
        }
        Ok(changed)
    }

    async fn status_of(&self, repo: i64, digest: &str) -> Result<ImageStatus> {
        Ok(self.meta.image(repo, digest).await?.map(|i| i.status).unwrap_or_default())
    }
}

/// `(repo, digest)` of an image job's payload.
fn image_job(payload: &str) -> Result<(i64, String)> {
    let v: serde_json::Value =
        serde_json::from_str(payload).map_err(|e| Error::Internal(format!("image job payload: {e}")))?;
    match (v["repo"].as_i64(), v["digest"].as_str()) {
        (Some(repo), Some(digest)) => Ok((repo, digest.to_string())),
        _ => Err(Error::Internal(format!("image job payload without repo and digest: {payload}"))),
    }
}

impl Registry {
    /// Copy committed blob `d` (`size` bytes) from `src` to `dst` through an upload area of `dst`,
    /// checking the bytes against the digest before they are published there. The copy is
    /// encrypted under another data key (the area's): it gets the same wrappings as the original
    /// before it is published.
    async fn copy_blob(
        &self,
        src: &dyn BlobStore,
        dst: &dyn BlobStore,
        d: &berth_oci::Digest,
        size: u64,
    ) -> Result<()> {
        let id = move_area(d.as_str());
        if self.settings.encrypt_at_rest {
            let from = src.key_id(d).await.map_err(storage_err)?;
            self.copy_wrappings(d, from.as_ref(), &id).await?;
        }
        // A crashed move of the same digest may have left its area.
        dst.upload_abort(&id).await.map_err(storage_err)?;
        dst.upload_create(&id).await.map_err(storage_err)?;
        let body = src.read(d, 0, size).await.map_err(storage_err)?;
        let hash = std::sync::Arc::new(std::sync::Mutex::new(crate::hash::HashState::with_algorithm(d.algorithm())));
        let h = hash.clone();
        let body = body.inspect(move |chunk| {
            if let Ok(b) = chunk {
                h.lock().unwrap_or_else(|p| p.into_inner()).update(b);
            }
        });
        let appended = dst.upload_append(&id, EMPTY_AREA, 0, Box::pin(body)).await.map_err(storage_err)?;
        let actual = {
            let mut h = hash.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *h, crate::hash::HashState::with_algorithm(d.algorithm())).finish()
        };
        if appended.written != size || &actual != d {
            return Err(Error::Internal(format!(
                "the copy of {d} read {} bytes with digest {actual}: the stored blob does not match its digest",
                appended.written
            )));
        }
        dst.upload_commit(&id, &appended.state, d, size).await.map_err(storage_err)
    }
}
