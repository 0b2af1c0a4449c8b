//! Replication across regions and accounts (ECR's PutReplicationConfiguration, DescribeRegistry,
//! DescribeImageReplicationStatus), push-based and asynchronous.
//!
//! A registry's configuration names destinations (a region and an account). A consumer of the
//! event log ([`REPLICATION_CONSUMER`]) turns each image push (a manifest stored, or a tag moved)
//! of a repository that a rule matches into one durable [`REPLICATE_JOB`] per destination and
//! records the replication as `IN_PROGRESS`; the job copies the image, idempotently and with
//! retries, and records `COMPLETE` or `FAILED` with a failure code ([`failure`]).
//!
//! A destination region this deployment hosts is written directly: the blobs are linked into
//! the destination repository (storage holds each blob once; its data key gets a wrapping under
//! the destination repository's key) and the manifests are stored there. A region hosted by a
//! peer deployment ([`Peer`]) is reached through its public APIs only ([`peer`]).
//!
//! As in ECR: only pushes made after the configuration replicate; an image replicates once per
//! push and never onward from a destination (pushes that replication makes are marked in the
//! event log, and a peer marks them when told so by a caller allowed `ecr:ReplicateImage`);
//! deletions and lifecycle expirations do not replicate; a cross-account destination needs its
//! registry policy to allow the source account `ecr:ReplicateImage` (and `ecr:CreateRepository`
//! when the repository is missing).

pub mod peer;

use crate::{Error, Registry, Result};
use berth_meta::events::{REPLICATED, kind};
use berth_meta::{Namespace, NewJob, ReplicationStatus};
use berth_oci::{Reference, manifest};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

pub use peer::{Peer, PeerConfig};

/// Name of the event-log consumer that turns pushes into replication jobs.
pub const REPLICATION_CONSUMER: &str = "replication";
/// Job kind of one image's replication to one destination.
pub const REPLICATE_JOB: &str = "image-replicate";
/// Attempts of a replication job before its status is `FAILED` (about half an hour of retries
/// with [`RETRY_MAX`]).
pub const MAX_ATTEMPTS: u32 = 36;
/// The longest pause between two attempts of a replication (the job queue's backoff doubles
/// from one second up to this).
pub const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(60);
/// ECR's limits: rules per configuration, unique destinations across rules, filters per rule.
pub const MAX_RULES: usize = 10;
pub const MAX_DESTINATIONS: usize = 25;
pub const MAX_FILTERS: usize = 100;

/// `failureCode` of a `FAILED` replication (ECR documents the field, not its values; these are
/// Berth's, stable, and listed in the README).
pub mod failure {
    /// The destination registry's policy does not allow the source account `ecr:ReplicateImage`
    /// (or a peer refused the credentials it was given).
    pub const ACCESS_DENIED: &str = "ACCESS_DENIED";
    /// The destination repository is missing and may not be created (no
    /// `ecr:CreateRepository` for the source account in the destination's registry policy).
    pub const REPOSITORY_NOT_FOUND: &str = "REPOSITORY_NOT_FOUND";
    /// The image was deleted from the source before it was copied.
    pub const IMAGE_NOT_FOUND: &str = "IMAGE_NOT_FOUND";
    /// The destination repository's KMS key cannot be used.
    pub const KMS_ERROR: &str = "KMS_ERROR";
    /// The tag exists in the immutable destination repository on another image.
    pub const TAG_IMMUTABLE: &str = "TAG_IMMUTABLE";
    /// The destination kept failing (unreachable peer, storage errors) through every retry.
    pub const DESTINATION_UNAVAILABLE: &str = "DESTINATION_UNAVAILABLE";
}

/// `status` values.
pub const IN_PROGRESS: &str = "IN_PROGRESS";
pub const COMPLETE: &str = "COMPLETE";
pub const FAILED: &str = "FAILED";

/// ECR's `ReplicationConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationConfiguration {
    pub rules: Vec<ReplicationRule>,
}

/// ECR's `ReplicationRule`: where the images of the repositories its filters match go (every
/// repository without filters).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationRule {
    pub destinations: Vec<ReplicationDestination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_filters: Option<Vec<RepositoryFilter>>,
}

/// ECR's `ReplicationDestination`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationDestination {
    pub region: String,
    pub registry_id: String,
}

/// ECR's `RepositoryFilter` (`filterType` is `PREFIX_MATCH`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryFilter {
    pub filter: String,
    pub filter_type: String,
}

impl ReplicationConfiguration {
    /// The unique destinations of the rules that match repository `name`, in a stable order.
    pub fn destinations_for(&self, name: &str) -> Vec<ReplicationDestination> {
        let mut out: Vec<ReplicationDestination> = self
            .rules
            .iter()
            .filter(|r| match &r.repository_filters {
                None => true,
                Some(f) if f.is_empty() => true,
                Some(f) => f.iter().any(|f| name.starts_with(&f.filter)),
            })
            .flat_map(|r| r.destinations.iter().cloned())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

fn constraint(field: &str, value: &str, rule: &str) -> Error {
    Error::Validation(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {rule}"
    ))
}

/// ECR's filter pattern `^(?:[a-z0-9]+(?:[._-][a-z0-9]*)*/)*[a-z0-9]*(?:[._-][a-z0-9]*)*$`:
/// segments before the last start with a letter or digit; every character is one of
/// `[a-z0-9._-]` or a `/` between segments.
fn valid_filter(f: &str) -> bool {
    let allowed = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-');
    let segments: Vec<&str> = f.split('/').collect();
    let Some((last, init)) = segments.split_last() else { return false };
    init.iter().all(|s| {
        s.as_bytes().first().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) && s.bytes().all(allowed)
    }) && last.bytes().all(allowed)
}

impl Registry {
    /// The regions a replication destination may name: those this deployment hosts and those
    /// of its peers.
    fn replication_region_known(&self, region: &str) -> bool {
        self.settings.regions.iter().any(|r| r == region) || self.peer(region).is_some()
    }

    /// The peer deployment hosting `region`, if one is configured (a region this deployment
    /// hosts is never a peer's).
    pub(crate) fn peer(&self, region: &str) -> Option<&Arc<Peer>> {
        if self.settings.regions.iter().any(|r| r == region) {
            return None;
        }
        self.peers.iter().find(|p| p.region() == region)
    }

    /// Set the peer deployments replication may send to (config `[[replication.peers]]`).
    pub fn with_replication_peers(mut self, peers: Vec<Arc<Peer>>) -> Registry {
        self.peers = peers;
        self
    }

    /// Check a configuration as ECR does (limits, patterns, known regions, no destination equal
    /// to the source registry).
    pub fn validate_replication(&self, ns: &Namespace, cfg: &ReplicationConfiguration) -> Result<()> {
        if cfg.rules.len() > MAX_RULES {
            return Err(constraint(
                "replicationConfiguration.rules",
                &format!("{} rules", cfg.rules.len()),
                &format!("Member must have length less than or equal to {MAX_RULES}"),
            ));
        }
        let mut unique = std::collections::BTreeSet::new();
        for (i, rule) in cfg.rules.iter().enumerate() {
            if rule.destinations.is_empty() {
                return Err(Error::InvalidParameter(format!(
                    "Invalid parameter at 'replicationConfiguration.rules.{}.destinations' failed to satisfy constraint: \
                     'Member must have length greater than or equal to 1'",
                    i + 1
                )));
            }
            for d in &rule.destinations {
                let region_ok = (2..=25).contains(&d.region.len())
                    && d.region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if !region_ok {
                    return Err(constraint(
                        &format!("replicationConfiguration.rules.{}.member.destinations.member.region", i + 1),
                        &d.region,
                        "Member must satisfy regular expression pattern: [0-9a-z-]{2,25}",
                    ));
                }
                if d.registry_id.len() != 12 || !d.registry_id.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(constraint(
                        &format!("replicationConfiguration.rules.{}.member.destinations.member.registryId", i + 1),
                        &d.registry_id,
                        "Member must satisfy regular expression pattern: [0-9]{12}",
                    ));
                }
                if d.region == ns.region && d.registry_id == ns.account_id {
                    return Err(Error::InvalidParameter(format!(
                        "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: 'Replication \
                         destination (region '{}', registry '{}') cannot be the source registry'",
                        d.region, d.registry_id
                    )));
                }
                if !self.replication_region_known(&d.region) {
                    return Err(Error::InvalidParameter(format!(
                        "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: 'Region '{}' \
                         is not hosted by this registry or by a configured replication peer'",
                        d.region
                    )));
                }
                unique.insert(d.clone());
            }
            if let Some(filters) = &rule.repository_filters {
                if filters.is_empty() || filters.len() > MAX_FILTERS {
                    return Err(constraint(
                        &format!("replicationConfiguration.rules.{}.member.repositoryFilters", i + 1),
                        &format!("{} filters", filters.len()),
                        &format!(
                            "Member must have length less than or equal to {MAX_FILTERS} and greater than or equal to 1"
                        ),
                    ));
                }
                for f in filters {
                    if f.filter_type != "PREFIX_MATCH" {
                        return Err(constraint(
                            &format!(
                                "replicationConfiguration.rules.{}.member.repositoryFilters.member.filterType",
                                i + 1
                            ),
                            &f.filter_type,
                            "Member must satisfy enum value set: [PREFIX_MATCH]",
                        ));
                    }
                    if !(2..=256).contains(&f.filter.len()) || !valid_filter(&f.filter) {
                        return Err(constraint(
                            &format!("replicationConfiguration.rules.{}.member.repositoryFilters.member.filter", i + 1),
                            &f.filter,
                            "Member must satisfy regular expression pattern: \
                             ^(?:[a-z0-9]+(?:[._-][a-z0-9]*)*/)*[a-z0-9]*(?:[._-][a-z0-9]*)*$",
                        ));
                    }
                }
            }
        }
        if unique.len() > MAX_DESTINATIONS {
            return Err(Error::InvalidParameter(format!(
                "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: 'The replication \
                 configuration can contain at most {MAX_DESTINATIONS} unique destinations'"
            )));
        }
        Ok(())
    }

    /// Replace the registry's replication configuration (an empty rule list turns replication
    /// off). Returns it as stored.
    pub async fn put_replication_configuration(
        &self,
        ns: &Namespace,
        cfg: &ReplicationConfiguration,
    ) -> Result<ReplicationConfiguration> {
        self.validate_replication(ns, cfg)?;
        let text = serde_json::to_string(cfg).map_err(|e| Error::Internal(e.to_string()))?;
        self.meta.put_replication_config(ns, &text, self.now()).await?;
        Ok(cfg.clone())
    }

    /// The registry's replication configuration (no rules when none was put).
    pub async fn replication_configuration(&self, ns: &Namespace) -> Result<ReplicationConfiguration> {
        Ok(self.replication_configuration_since(ns).await?.0)
    }

    /// The registry's replication configuration and since when the registry has had one (ms;
    /// pushes before then are not replicated, as in ECR).
    async fn replication_configuration_since(&self, ns: &Namespace) -> Result<(ReplicationConfiguration, i64)> {
        match self.meta.replication_config(ns).await? {
            None => Ok((ReplicationConfiguration::default(), i64::MAX)),
            Some((t, since)) => Ok((
                serde_json::from_str(&t)
                    .map_err(|e| Error::Internal(format!("stored replication configuration is unreadable: {e}")))?,
                since,
            )),
        }
    }

    /// The replication statuses of image `id` of repository `name` (DescribeImageReplicationStatus):
    /// the image's digest and its statuses by destination.
    pub async fn image_replication_status(
        &self,
        ns: &Namespace,
        name: &str,
        id: &crate::ImageId,
    ) -> Result<std::result::Result<(String, Vec<ReplicationStatus>), crate::ImageFailure>> {
        let repo = self.repo_in(ns, name).await?;
        let img = match self.image_in(repo.id, id).await? {
            Ok(i) => i,
            Err(f) => return Ok(Err(f)),
        };
        let statuses = self.meta.replication_statuses(ns, name, &img.digest).await?;
        Ok(Ok((img.digest, statuses)))
    }

    /// One round of the replication consumer: the image pushes after its cursor of repositories
    /// that a rule of their registry's configuration matches become replication jobs (recorded
    /// `IN_PROGRESS`), and the cursor moves past them. Pushes made by replication are skipped.
    /// Returns the events read (0 when none, or another node moved the cursor first).
    pub async fn replication_step(&self) -> Result<usize> {
        let from = self.meta.event_cursor(REPLICATION_CONSUMER).await?;
        let events = self.meta.events_after(from, 200).await?;
        let Some(last) = events.last() else { return Ok(0) };
        let to = last.cursor();
        let mut configs: HashMap<(String, String), (ReplicationConfiguration, i64)> = HashMap::new();
        for e in &events {
            if e.kind != kind::IMAGE_PUSH {
                continue;
            }
            let (Some(repo), Ok(detail)) = (&e.repository, serde_json::from_str::<serde_json::Value>(&e.detail)) else {
                continue;
            };
            if detail[REPLICATED] == true {
                continue;
            }
            let Some(digest) = detail["image-digest"].as_str() else { continue };
            let tag = detail["image-tag"].as_str();
            let ns = Namespace { account_id: e.account_id.clone(), region: e.region.clone() };
            let key = (ns.account_id.clone(), ns.region.clone());
            if !configs.contains_key(&key) {
                configs.insert(key.clone(), self.replication_configuration_since(&ns).await?);
            }
            let (cfg, since) = &configs[&key];
            if e.created_at < *since {
                continue;
            }
            for dest in cfg.destinations_for(repo) {
                let status = ReplicationStatus {
                    dest_region: dest.region.clone(),
                    dest_registry: dest.registry_id.clone(),
                    status: IN_PROGRESS.into(),
                    failure_code: None,
                    pushed_at: e.created_at,
                    updated_at: self.now(),
                };
                self.meta.set_replication_status(&ns, repo, digest, &status).await?;
                let payload = json!({
                    "account": ns.account_id, "region": ns.region, "repository": repo, "digest": digest,
                    "tag": tag, "destRegion": dest.region, "destRegistry": dest.registry_id, "pushedAt": e.created_at,
                })
                .to_string();
                let key = format!(
                    "{}/{}/{repo}@{digest}:{}->{}/{}",
                    ns.account_id,
                    ns.region,
                    tag.unwrap_or(""),
                    dest.registry_id,
                    dest.region
                );
                let now = self.now();
                let job = NewJob {
                    kind: REPLICATE_JOB,
                    key: &key,
                    payload: &payload,
                    run_after: now,
                    max_attempts: MAX_ATTEMPTS,
                    once: false,
                };
                self.meta.enqueue_job(&job, now).await?;
            }
        }
        if !self.meta.advance_event_cursor(REPLICATION_CONSUMER, from, to, &[], self.now()).await? {
            return Ok(0);
        }
        Ok(events.len())
    }

    /// The replication job (payload from [`Registry::replication_step`]), on its `attempt` of
    /// `max_attempts`: copies the image and records `COMPLETE`; records `FAILED` at once when the
    /// destination refuses for good (policy, missing repository, KMS key, immutable tag, image
    /// gone), or on the last attempt of a failure that retries (returned as `Err`).
    pub async fn replicate(&self, payload: &str, attempt: u32, max_attempts: u32) -> Result<()> {
        let job: ReplicationJob =
            serde_json::from_str(payload).map_err(|e| Error::Internal(format!("bad replication job: {e}")))?;
        let src = Namespace { account_id: job.account.clone(), region: job.region.clone() };
        let started = std::time::Instant::now();
        let outcome = match self.peer(&job.dest_region) {
            Some(peer) => peer.replicate(self, &src, &job).await,
            None => self.replicate_here(&src, &job).await,
        };
        let record = |status: &str, code: Option<&str>| ReplicationStatus {
            dest_region: job.dest_region.clone(),
            dest_registry: job.dest_registry.clone(),
            status: status.into(),
            failure_code: code.map(str::to_string),
            pushed_at: job.pushed_at,
            updated_at: self.now(),
        };
        let dest_kind = if self.peer(&job.dest_region).is_some() { "peer" } else { "local" };
        match outcome {
            Ok(()) => {
                self.meta.set_replication_status(&src, &job.repository, &job.digest, &record(COMPLETE, None)).await?;
                let lag = (self.now() - job.pushed_at).max(0) as f64 / 1000.0;
                metrics::histogram!("berth_replication_lag_seconds", "destination" => dest_kind).record(lag);
                metrics::histogram!("berth_replication_duration_seconds", "destination" => dest_kind)
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!("berth_replications_total", "destination" => dest_kind, "result" => "complete")
                    .increment(1);
                Ok(())
            }
            Err(Failure::Final(code, why)) => {
                tracing::warn!(repository = %job.repository, digest = %job.digest, dest_region = %job.dest_region,
                    dest_registry = %job.dest_registry, code, reason = %why, "replication failed");
                self.meta
                    .set_replication_status(&src, &job.repository, &job.digest, &record(FAILED, Some(code)))
                    .await?;
                metrics::counter!("berth_replications_total", "destination" => dest_kind, "result" => "failed")
                    .increment(1);
                Ok(())
            }
            Err(Failure::Retry(e)) => {
                if attempt >= max_attempts {
                    let code = failure::DESTINATION_UNAVAILABLE;
                    self.meta
                        .set_replication_status(&src, &job.repository, &job.digest, &record(FAILED, Some(code)))
                        .await?;
                    metrics::counter!("berth_replications_total", "destination" => dest_kind, "result" => "failed")
                        .increment(1);
                }
                metrics::counter!("berth_replication_retries_total", "destination" => dest_kind).increment(1);
                Err(e)
            }
        }
    }

    /// Replicate into a region (and account) this deployment hosts.
    async fn replicate_here(&self, src: &Namespace, job: &ReplicationJob) -> std::result::Result<(), Failure> {
        let dest = Namespace { account_id: job.dest_registry.clone(), region: job.dest_region.clone() };
        let Some(src_repo) = self.repo_entry_in(src, &job.repository).await.map_err(Failure::from)? else {
            return Err(Failure::Final(failure::IMAGE_NOT_FOUND, "the source repository is gone".into()));
        };
        if self.meta.manifest(src_repo.id, &job.digest).await.map_err(Failure::from)?.is_none() {
            return Err(Failure::Final(failure::IMAGE_NOT_FOUND, "the image is gone from the source".into()));
        }
        let cross_account = dest.account_id != src.account_id;
        let policy_allows = |action: &'static str, policy: &Option<berth_policy::Policy>| {
            let Some(p) = policy else { return false };
            let principal = berth_policy::Principal::Root { account_id: src.account_id.clone() };
            let resource = crate::authz::repository_arn(&dest, &job.repository);
            let ctx = berth_policy::Context::new();
            let req = berth_policy::Request {
                principal: &principal,
                action,
                resource: &resource,
                resource_account: Some(&dest.account_id),
                context: &ctx,
            };
            // Allowed by a statement naming the source account, and denied by none.
            berth_policy::resource_policy_allows(&req, p)
                && !matches!(berth_policy::evaluate(&req, &[], Some(p)), berth_policy::Decision::ExplicitDeny { .. })
        };
        let policy = if cross_account {
            match self.meta.registry_policy(&dest).await.map_err(Failure::from)? {
                Some(text) => berth_policy::Policy::parse(&text, berth_policy::PolicyKind::Resource).ok(),
                None => None,
            }
        } else {
            None
        };
        if cross_account && !policy_allows("ecr:ReplicateImage", &policy) {
            return Err(Failure::Final(
                failure::ACCESS_DENIED,
                format!(
                    "the registry policy of {} in {} does not allow account {} ecr:ReplicateImage",
                    dest.account_id, dest.region, src.account_id
                ),
            ));
        }
        let dest_repo = match self.repo_entry_in(&dest, &job.repository).await.map_err(Failure::from)? {
            Some(r) => r,
            None => {
                if cross_account && !policy_allows("ecr:CreateRepository", &policy) {
                    return Err(Failure::Final(
                        failure::REPOSITORY_NOT_FOUND,
                        "the destination repository is missing and the source account may not create it".into(),
                    ));
                }
                self.create_replica_repository(src, &dest, &job.repository).await?;
                self.repo_in(&dest, &job.repository).await.map_err(Failure::from)?
            }
        };
        // A tag that moved on in the source since this push is left to the push that moved it
        // (jobs may run out of order): the image itself still replicates.
        let tag = match &job.tag {
            Some(t) => match self.meta.resolve_tag(src_repo.id, t).await.map_err(Failure::from)? {
                Some(d) if d == job.digest => Some(t.clone()),
                _ => None,
            },
            None => None,
        };
        self.copy_image_here(src_repo.id, &dest, &dest_repo, &job.repository, &job.digest, tag.as_deref(), 0).await
    }

    /// Create the destination repository of a replication: from the destination registry's
    /// REPLICATION creation template when one applies, else with the source repository's
    /// settings and resource tags (a KMS-encrypted source gets the destination's AWS managed
    /// key: KMS keys do not cross regions or accounts).
    async fn create_replica_repository(
        &self,
        src: &Namespace,
        dest: &Namespace,
        name: &str,
    ) -> std::result::Result<(), Failure> {
        let info = self.describe_repository(src, name).await.map_err(Failure::from)?;
        let tags = self.meta.resource_tags(info.id).await.map_err(Failure::from)?;
        let settings = crate::repos::RepoSettings {
            exclusions: crate::repos::exclusions_of(&info),
            image_tag_mutability: info.image_tag_mutability.clone(),
            scan_on_push: info.scan_on_push,
            encryption_type: info.encryption_type.clone(),
            kms_key: None,
        };
        let applied = crate::templates::AppliedFor::Replication;
        match self.create_repository_from_template(dest, name, applied, Some((&settings, &tags))).await {
            Ok(_) | Err(Error::RepositoryAlreadyExists { .. }) => Ok(()),
            Err(e) => Err(Failure::from(e)),
        }
    }

    /// Copy manifest `digest` (an index's children first, then the blobs, then the manifest
    /// itself under `tag`) from repository `src_repo` into `dest_repo` of this deployment.
    #[allow(clippy::too_many_arguments)]
    async fn copy_image_here(
        &self,
        src_repo: i64,
        dest: &Namespace,
        dest_repo: &crate::cache::RepoEntry,
        name: &str,
        digest: &str,
        tag: Option<&str>,
        depth: u32,
    ) -> std::result::Result<(), Failure> {
        if depth > 2 {
            return Err(Failure::Final(failure::IMAGE_NOT_FOUND, "indexes nest too deep".into()));
        }
        let Some(m) = self.meta.manifest(src_repo, digest).await.map_err(Failure::from)? else {
            return Err(Failure::Final(failure::IMAGE_NOT_FOUND, format!("manifest {digest} is gone from the source")));
        };
        let parsed = manifest::parse(Some(&m.media_type), &m.content)
            .map_err(|e| Failure::Final(failure::IMAGE_NOT_FOUND, format!("stored manifest unreadable: {e}")))?;
        for (child, _) in &parsed.children {
            Box::pin(self.copy_image_here(src_repo, dest, dest_repo, name, child.as_str(), None, depth + 1)).await?;
        }
        if !parsed.blobs.is_empty() {
            let key = self.repo_wrapping_key(dest_repo.id).await.map_err(Failure::from)?;
            for (blob, _) in &parsed.blobs {
                if self.meta.blob_in_repo(dest_repo.id, blob.as_str()).await.map_err(Failure::from)?.is_some() {
                    continue;
                }
                // The data key gets its wrapping under the destination's key before the blob is
                // linked there, so the destination can read what it links.
                self.wrap_existing(blob, &[0u8; 16], &key).await.map_err(Failure::from)?;
                if self.meta.mount_blob(dest_repo.id, blob.as_str(), self.now()).await.map_err(Failure::from)?.is_none()
                {
                    return Err(Failure::Retry(Error::Unavailable(format!(
                        "blob {blob} is being deleted; the replication is retried"
                    ))));
                }
            }
        }
        let reference = match tag {
            Some(t) => {
                Reference::Tag(t.parse().map_err(|_| Failure::Final(failure::IMAGE_NOT_FOUND, "bad tag".into()))?)
            }
            None => Reference::Digest(Self::parse_digest(digest).map_err(Failure::from)?),
        };
        let pushed = self
            .put_manifest_replicated(dest, dest_repo, name, &reference, &m.media_type, Bytes::from(m.content))
            .await
            .map_err(Failure::from)?;
        if pushed.digest.as_str() != digest {
            return Err(Failure::Final(
                failure::IMAGE_NOT_FOUND,
                "the stored manifest does not hash to its digest".into(),
            ));
        }
        Ok(())
    }
}

/// A replication job's payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationJob {
    pub account: String,
    pub region: String,
    pub repository: String,
    pub digest: String,
    pub tag: Option<String>,
    pub dest_region: String,
    pub dest_registry: String,
    pub pushed_at: i64,
}

/// How one replication attempt failed.
#[derive(Debug)]
pub enum Failure {
    /// For good: the status becomes `FAILED` with this code (and why, for the log).
    Final(&'static str, String),
    /// Worth retrying.
    Retry(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        match e {
            Error::Kms { message, .. } => Failure::Final(failure::KMS_ERROR, message),
            Error::TagImmutable { tag, repo } => {
                Failure::Final(failure::TAG_IMMUTABLE, format!("tag {tag} is immutable in {repo}"))
            }
            Error::Denied(m) => Failure::Final(failure::ACCESS_DENIED, m),
            Error::RepositoryNotFound { name, .. } => {
                Failure::Final(failure::REPOSITORY_NOT_FOUND, format!("repository {name} is missing"))
            }
            e => Failure::Retry(e),
        }
    }
}

impl From<berth_meta::MetaError> for Failure {
    fn from(e: berth_meta::MetaError) -> Failure {
        Failure::Retry(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_follow_ecrs_pattern() {
        for ok in ["prod", "team/app", "a.b-c_d", "team/", "ab", "team/a-", "-a"] {
            assert!(valid_filter(ok), "{ok}");
        }
        for bad in ["Prod", "/a", "a//b", "a b", "a*", "-a/b"] {
            assert!(!valid_filter(bad), "{bad}");
        }
    }

    #[test]
    fn destinations_are_those_of_matching_rules_once_each() {
        let d = |r: &str| ReplicationDestination { region: r.into(), registry_id: "111111111111".into() };
        let f = |p: &str| RepositoryFilter { filter: p.into(), filter_type: "PREFIX_MATCH".into() };
        let cfg = ReplicationConfiguration {
            rules: vec![
                ReplicationRule { destinations: vec![d("eu-west-1")], repository_filters: Some(vec![f("prod")]) },
                ReplicationRule { destinations: vec![d("eu-west-1"), d("us-west-2")], repository_filters: None },
            ],
        };
        assert_eq!(cfg.destinations_for("prod/app"), vec![d("eu-west-1"), d("us-west-2")]);
        let only = ReplicationConfiguration { rules: vec![cfg.rules[0].clone()] };
        assert_eq!(only.destinations_for("prod-x"), vec![d("eu-west-1")]);
        assert!(only.destinations_for("dev/app").is_empty());
    }
}
