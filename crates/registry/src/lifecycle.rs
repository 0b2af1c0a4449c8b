//! Lifecycle policies of repositories: put/get/delete, previews, and runs that expire images.
//!
//! A run reads the repository's images, evaluates the policy on them ([`berth_lifecycle::evaluate`],
//! a pure function), then expires each chosen image with a conditional delete
//! ([`berth_meta::MetadataStore::expire_manifest`]): an image whose tags changed, or that an index
//! took in, since the evaluation is kept, so a run never acts on a state it did not see. A preview
//! is the same evaluation without the deletes, so it lists exactly what a run at that moment would
//! do.

use crate::{Error, Registry, Result};
use berth_lifecycle::{Action, Policy, StorageClass};
use berth_meta::lifecycle::{LifecyclePreview, PolicyRepository, StoredLifecyclePolicy, preview_status};
use berth_meta::{ImageStatus, ImagesFrom, Namespace, RepositoryInfo, TagStatus};
use serde_json::{Value, json};
use std::collections::HashSet;

/// Shortest and longest policy text ECR accepts.
pub const POLICY_TEXT_LEN: std::ops::RangeInclusive<usize> = 100..=30_720;

/// A preview still in progress after this long died with its node and may be replaced.
const PREVIEW_STALE_MS: i64 = 10 * 60 * 1000;

/// Images read per database round trip while a run or preview loads a repository.
const LOAD_PAGE: u32 = 1000;

/// One action of a run or preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleAction {
    pub digest: String,
    pub tags: Vec<String>,
    pub pushed_at: i64,
    pub rule_priority: u32,
    pub action: Action,
    /// The image's storage class when the action was decided.
    pub storage_class: StorageClass,
}

impl LifecycleAction {
    /// ECR's `LifecyclePolicyPreviewResult`.
    pub fn preview_json(&self) -> Value {
        json!({
            "imageTags": self.tags,
            "imageDigest": self.digest,
            "imagePushedAt": self.pushed_at as f64 / 1000.0,
            "action": match self.action {
                Action::Transition => json!({"type": "TRANSITION", "targetStorageClass": "ARCHIVE"}),
                Action::Expire => json!({"type": "EXPIRE"}),
            },
            "appliedRulePriority": self.rule_priority,
            "storageClass": storage_class_name(self.storage_class),
        })
    }

    fn from_preview_json(v: &Value) -> Option<LifecycleAction> {
        Some(LifecycleAction {
            digest: v["imageDigest"].as_str()?.to_string(),
            tags: v["imageTags"].as_array()?.iter().filter_map(|t| t.as_str().map(str::to_string)).collect(),
            pushed_at: (v["imagePushedAt"].as_f64()? * 1000.0).round() as i64,
            rule_priority: u32::try_from(v["appliedRulePriority"].as_u64()?).ok()?,
            action: match v["action"]["type"].as_str()? {
                "TRANSITION" => Action::Transition,
                _ => Action::Expire,
            },
            storage_class: match v["storageClass"].as_str() {
                Some("ARCHIVE") => StorageClass::Archive,
                _ => StorageClass::Standard,
            },
        })
    }
}

/// The API's name of a storage class (`LifecyclePolicyStorageClass`).
fn storage_class_name(c: StorageClass) -> &'static str {
    match c {
        StorageClass::Standard => "STANDARD",
        StorageClass::Archive => "ARCHIVE",
    }
}

/// What one run did to one repository.
#[derive(Debug, Clone)]
pub struct LifecycleRun {
    pub repository: PolicyRepository,
    /// The policy that was applied.
    pub policy_text: String,
    /// When the policy was evaluated (epoch ms).
    pub evaluated_at: i64,
    /// The actions taken (with `dry_run`: that would have been taken).
    pub actions: Vec<LifecycleAction>,
    /// Actions not taken because the image changed (tagged, untagged, put in an index, deleted)
    /// between the evaluation and its deletion; the next run sees the new state.
    pub skipped: usize,
}

/// The last preview of a repository's policy, with its results when complete.
#[derive(Debug, Clone)]
pub struct Preview {
    pub policy_text: String,
    /// `IN_PROGRESS`, `COMPLETE` or `FAILED`.
    pub status: String,
    /// Identifies this preview (its start time), e.g. for page tokens.
    pub started_at: i64,
    pub results: Vec<LifecycleAction>,
}

/// Parse a policy text as PutLifecyclePolicy and StartLifecyclePolicyPreview do: ECR's length
/// limits and grammar, then what Berth can carry out.
pub fn parse_policy(text: &str) -> Result<Policy> {
    let n = text.chars().count();
    if n < *POLICY_TEXT_LEN.start() {
        return Err(Error::InvalidParameter(format!(
            "Invalid parameter at 'lifecyclePolicyText' failed to satisfy constraint: 'Member must have length greater than or equal to {}'",
            POLICY_TEXT_LEN.start()
        )));
    }
    if n > *POLICY_TEXT_LEN.end() {
        return Err(Error::InvalidParameter(format!(
            "Invalid parameter at 'lifecyclePolicyText' failed to satisfy constraint: 'Member must have length less than or equal to {}'",
            POLICY_TEXT_LEN.end()
        )));
    }
    let invalid = |e: berth_lifecycle::PolicyError| {
        Error::InvalidParameter(format!(
            "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: {e}'"
        ))
    };
    berth_lifecycle::parse(text).map_err(invalid)
}

impl Registry {
    fn lifecycle_not_found(ns: &Namespace, name: &str) -> Error {
        Error::LifecyclePolicyNotFound { name: name.to_string(), registry: ns.account_id.clone() }
    }

    /// Put a repository's lifecycle policy (kept as sent). Refuses an invalid policy, and one
    /// Berth cannot carry out, with ECR's `InvalidParameterException`.
    pub async fn put_lifecycle_policy(&self, ns: &Namespace, name: &str, text: &str) -> Result<RepositoryInfo> {
        let info = self.describe_repository(ns, name).await?;
        parse_policy(text)?;
        self.meta.set_lifecycle_policy(info.id, Some(text), self.now()).await?;
        Ok(info)
    }

    /// A repository's lifecycle policy.
    pub async fn lifecycle_policy(
        &self,
        ns: &Namespace,
        name: &str,
    ) -> Result<(RepositoryInfo, StoredLifecyclePolicy)> {
        let info = self.describe_repository(ns, name).await?;
        match self.meta.lifecycle_policy(info.id).await? {
            Some(p) => Ok((info, p)),
            None => Err(Self::lifecycle_not_found(ns, name)),
        }
    }

    /// Delete a repository's lifecycle policy, returning it as it was.
    pub async fn delete_lifecycle_policy(
        &self,
        ns: &Namespace,
        name: &str,
    ) -> Result<(RepositoryInfo, StoredLifecyclePolicy)> {
        let (info, p) = self.lifecycle_policy(ns, name).await?;
        if !self.meta.set_lifecycle_policy(info.id, None, self.now()).await? {
            return Err(Self::lifecycle_not_found(ns, name));
        }
        Ok((info, p))
    }

    /// Preview `text` (the repository's policy when `None`): evaluates it now on the
    /// repository's images and keeps the result for [`Registry::lifecycle_preview`]. Refused
    /// while another preview of the repository is in progress.
    pub async fn start_lifecycle_preview(
        &self,
        ns: &Namespace,
        name: &str,
        text: Option<&str>,
    ) -> Result<(RepositoryInfo, Preview)> {
        let info = self.describe_repository(ns, name).await?;
        let text = match text {
            Some(t) => t.to_string(),
            None => self.meta.lifecycle_policy(info.id).await?.ok_or_else(|| Self::lifecycle_not_found(ns, name))?.text,
        };
        let policy = parse_policy(&text)?;
        let started = self.now();
        if !self.meta.begin_lifecycle_preview(info.id, &text, started, started - PREVIEW_STALE_MS).await? {
            return Err(Error::LifecyclePreviewInProgress);
        }
        let (status, results, stored) = match self.lifecycle_plan(info.id, &policy, started).await {
            Ok(actions) => {
                let json: Vec<Value> = actions.iter().map(LifecycleAction::preview_json).collect();
                (preview_status::COMPLETE, actions, Value::Array(json).to_string())
            }
            Err(e) => {
                tracing::error!(error = %e, repository = name, "lifecycle policy preview failed");
                (preview_status::FAILED, Vec::new(), json!({"error": e.to_string()}).to_string())
            }
        };
        self.meta.end_lifecycle_preview(info.id, started, status, &stored).await?;
        Ok((info, Preview { policy_text: text, status: status.to_string(), started_at: started, results }))
    }

    /// The last preview of a repository's policy.
    pub async fn lifecycle_preview(&self, ns: &Namespace, name: &str) -> Result<(RepositoryInfo, Preview)> {
        let info = self.describe_repository(ns, name).await?;
        let p: LifecyclePreview = self.meta.lifecycle_preview(info.id).await?.ok_or_else(|| {
            Error::LifecyclePreviewNotFound { name: name.to_string(), registry: ns.account_id.clone() }
        })?;
        let results = match (p.status.as_str(), p.result.as_deref()) {
            (preview_status::COMPLETE, Some(r)) => serde_json::from_str::<Vec<Value>>(r)
                .map_err(|e| Error::Internal(format!("stored lifecycle preview: {e}")))?
                .iter()
                .filter_map(LifecycleAction::from_preview_json)
                .collect(),
            _ => Vec::new(),
        };
        Ok((info, Preview { policy_text: p.policy_text, status: p.status, started_at: p.started_at, results }))
    }

    /// What `policy` does to repository `repo_id` at `now`, oldest image first.
    async fn lifecycle_plan(&self, repo_id: i64, policy: &Policy, now: i64) -> Result<Vec<LifecycleAction>> {
        let mut images = Vec::new();
        let mut after = None;
        loop {
            let from = after.as_ref().map_or(ImagesFrom::Start, ImagesFrom::After);
            let page = self.meta.images_page(repo_id, TagStatus::Any, None, from, LOAD_PAGE).await?;
            let full = page.len() == LOAD_PAGE as usize;
            after = page.last().map(|i| i.key());
            images.extend(page);
            if !full {
                break;
            }
        }
        // Index children and referrers of a present subject go with that image.
        let mut dependent: HashSet<String> =
            self.meta.index_children(repo_id).await?.into_iter().map(|(_, child)| child).collect();
        let present: HashSet<&str> = images.iter().map(|i| i.digest.as_str()).collect();
        let referrers: Vec<String> = images
            .iter()
            .filter(|i| i.subject.as_deref().is_some_and(|s| present.contains(s)))
            .map(|i| i.digest.clone())
            .collect();
        dependent.extend(referrers);
        let candidates: Vec<berth_lifecycle::Image> = images
            .into_iter()
            .map(|i| berth_lifecycle::Image {
                dependent: dependent.contains(&i.digest),
                digest: i.digest,
                pushed_at: i.pushed_at,
                last_pulled_at: i.last_pulled_at,
                tags: i.tags,
                storage_class: match i.status {
                    ImageStatus::Active => Some(StorageClass::Standard),
                    ImageStatus::Archived => Some(StorageClass::Archive),
                    ImageStatus::Activating => None,
                },
                transitioned_at: i.last_archived_at,
            })
            .collect();
        Ok(berth_lifecycle::evaluate(policy, &candidates, now)
            .into_iter()
            .map(|d| {
                let img = &candidates[d.image];
                LifecycleAction {
                    digest: img.digest.clone(),
                    tags: img.tags.clone(),
                    pushed_at: img.pushed_at,
                    rule_priority: d.rule_priority,
                    action: d.action,
                    storage_class: img.storage_class.unwrap_or(StorageClass::Standard),
                }
            })
            .collect())
    }

    /// Repositories with a lifecycle policy after repository id `after`, at most `limit`.
    pub async fn lifecycle_repositories(&self, after: i64, limit: u32) -> Result<Vec<PolicyRepository>> {
        Ok(self.meta.lifecycle_repositories(after, limit).await?)
    }

    /// Find a repository with a lifecycle policy by name.
    pub async fn lifecycle_repository(&self, ns: &Namespace, name: &str) -> Result<PolicyRepository> {
        let (info, _) = self.lifecycle_policy(ns, name).await?;
        Ok(PolicyRepository { repo_id: info.id, account_id: info.account_id, region: info.region, name: info.name })
    }

    /// Apply a repository's lifecycle policy now (with `dry_run`, only evaluate it). `None` when
    /// the repository no longer has a policy.
    pub async fn run_lifecycle(&self, repo: &PolicyRepository, dry_run: bool) -> Result<Option<LifecycleRun>> {
        let Some(stored) = self.meta.lifecycle_policy(repo.repo_id).await? else {
            return Ok(None);
        };
        let policy = match parse_policy(&stored.text) {
            Ok(p) => p,
            Err(e) => {
                // Stored by a version that accepted it: leave it for the operator, act on nothing.
                tracing::error!(repository = %repo.name, error = %e, "stored lifecycle policy is not valid; skipped");
                return Ok(None);
            }
        };
        let now = self.now();
        let planned = self.lifecycle_plan(repo.repo_id, &policy, now).await?;
        let mut run = LifecycleRun {
            repository: repo.clone(),
            policy_text: stored.text.clone(),
            evaluated_at: now,
            actions: Vec::with_capacity(planned.len()),
            skipped: 0,
        };
        if dry_run {
            run.actions = planned;
            return Ok(Some(run));
        }
        for a in planned {
            let detail = json!({
                "action-type": a.action.api_name(),
                "result": "SUCCESS",
                "repository-name": repo.name,
                "image-digest": a.digest,
                "image-tags": a.tags,
                "rule-priority": a.rule_priority,
            });
            let done = match a.action {
                Action::Expire => {
                    self.meta.expire_manifest(repo.repo_id, &a.digest, &a.tags, &detail, self.now()).await?
                }
                Action::Transition => {
                    let done =
                        self.meta.transition_manifest(repo.repo_id, &a.digest, &a.tags, &detail, self.now()).await?;
                    if done {
                        self.enqueue_archive(repo.repo_id, &a.digest).await?;
                    }
                    done
                }
            };
            if done {
                run.actions.push(a);
            } else {
                run.skipped += 1;
            }
        }
        if !run.actions.is_empty() {
            self.cache.invalidate(repo.repo_id);
        }
        self.meta.lifecycle_evaluated(repo.repo_id, stored.updated_at, now).await?;
        Ok(Some(run))
    }
}
