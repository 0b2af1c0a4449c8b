//! ECR's archive storage class (`UpdateImageStorageClass`, lifecycle `transition` actions): an
//! archived image stays listed (with its `imageStatus`) but cannot be pulled until it is restored
//! or pushed again; a restore runs as a background job (`ACTIVATING`, then `ACTIVE`).
//!
//! The bytes of an archived image stay where they are: a separate (cheaper) archive location is
//! not built yet, so archiving changes what may be pulled, not where the bytes live.

use crate::{Error, ImageFailure, Registry, Result};
use berth_meta::{ImageStatus, Namespace, NewJob};
use serde_json::json;

/// Job kind of a restore.
pub const RESTORE_JOB: &str = "image-restore";

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
                if !self.set_status(repo.id, &digest, ImageStatus::Active, ImageStatus::Archived).await?
                    && self.meta.referenced_by_index(repo.id, &digest).await?
                {
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
    /// not finished makes this a no-op).
    async fn enqueue_restore(&self, repo: i64, digest: &str) -> Result<()> {
        let now = self.now();
        let key = format!("{repo}:{digest}");
        let payload = json!({"repo": repo, "digest": digest}).to_string();
        let job =
            NewJob { kind: RESTORE_JOB, key: &key, payload: &payload, run_after: now, max_attempts: 10, once: false };
        self.meta.enqueue_job(&job, now).await?;
        Ok(())
    }

    /// The restore job: the image (payload `{"repo", "digest"}`) becomes `ACTIVE` again.
    pub async fn restore_image(&self, payload: &str) -> Result<()> {
        let v: serde_json::Value =
            serde_json::from_str(payload).map_err(|e| Error::Internal(format!("restore job payload: {e}")))?;
        let (Some(repo), Some(digest)) = (v["repo"].as_i64(), v["digest"].as_str()) else {
            return Err(Error::Internal(format!("restore job payload without repo and digest: {payload}")));
        };
        // Nothing to copy back while archived bytes stay in place; a pushed-again or deleted
        // image is left as it is.
        self.set_status(repo, digest, ImageStatus::Activating, ImageStatus::Active).await?;
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
