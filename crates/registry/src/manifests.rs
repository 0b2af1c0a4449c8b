//! Manifests, tags, referrers and the catalog.

use crate::authz::Reach;
use crate::hash::HashState;
use crate::{Caller, Error, ManifestData, Page, PushedManifest, Registry, RepoEntry, Result, Target, storage_err};
use berth_meta::{Namespace, PutManifest, Referrer, RepoFilter};
use berth_oci::manifest::{self, Kind};
use berth_oci::{Algorithm, Digest, Reference, RepoName, Tag};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Repositories one catalog request authorizes at most (see [`Registry::catalog_for`]).
pub const CATALOG_EXAMINE_MAX: usize = 1000;

/// Identity policies allowing more name prefixes than this are not worth one query per prefix:
/// the catalog then walks every repository (still within [`CATALOG_EXAMINE_MAX`] per request).
const MAX_PREFIX_QUERIES: usize = 16;

/// One page of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogPage {
    /// The repositories the caller may see, in name order.
    pub items: Vec<String>,
    /// When more may follow: the `last` value that continues the walk.
    pub next: Option<String>,
}

impl Registry {
    /// Fetch a manifest by tag or digest.
    pub async fn manifest_get(
        &self,
        ns: &Namespace,
        name: &RepoName,
        reference: &Reference,
    ) -> Result<Arc<ManifestData>> {
        self.manifest_get_gated(ns, name, reference, true).await
    }

    /// [`Registry::manifest_get`], with the repository's pull gate checked (`gated`) or not
    /// (a caller allowed to bypass it).
    pub async fn manifest_get_gated(
        &self,
        ns: &Namespace,
        name: &RepoName,
        reference: &Reference,
        gated: bool,
    ) -> Result<Arc<ManifestData>> {
        let entry = self
            .repo_entry(ns, name)
            .await?
            .ok_or_else(|| Error::RepositoryNotFound { name: name.to_string(), registry: ns.account_id.clone() })?;
        let repo = entry.id;
        // A repository whose KMS key cannot be used serves nothing (ECR's KmsException).
        self.check_repo_key(repo).await?;
        let key = reference.to_string();
        if let Some(m) = self.cache.get(repo, &key) {
            if gated {
                self.check_pull_gate(&entry, &m).await?;
            }
            self.note_pull(repo, &m);
            return Ok(m);
        }
        let generation = self.cache.generation(repo);
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => {
                let d = self
                    .meta
                    .resolve_tag(repo, t.as_str())
                    .await?
                    .ok_or_else(|| Error::ManifestUnknown(key.clone()))?;
                Self::parse_digest(&d)?
            }
        };
        let m = self.meta.manifest(repo, digest.as_str()).await?.ok_or_else(|| Error::ManifestUnknown(key.clone()))?;
        if m.status != berth_meta::ImageStatus::Active {
            return Err(Error::ImageArchived(key));
        }
        let data = Arc::new(ManifestData {
            digest,
            media_type: m.media_type,
            bytes: Bytes::from(m.content),
            pull_recorded_at: AtomicI64::new(0),
        });
        self.cache.insert(repo, generation, key, data.clone());
        if gated {
            self.check_pull_gate(&entry, &data).await?;
        }
        self.note_pull(repo, &data);
        Ok(data)
    }

    /// Record a pull (for `lastRecordedPullTime`) at most once an hour per cached manifest,
    /// off the request path.
    pub(crate) fn note_pull(&self, repo: i64, m: &ManifestData) {
        const EVERY_MS: i64 = 3_600_000;
        let now = self.now();
        let last = m.pull_recorded_at.load(Ordering::Relaxed);
        if now - last < EVERY_MS
            || m.pull_recorded_at.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        let meta = self.meta.clone();
        let digest = m.digest.to_string();
        tokio::spawn(async move {
            if let Err(e) = meta.record_pull(repo, &digest, now).await {
                tracing::warn!(error = %e, "recording a pull failed");
            }
        });
    }

    /// Push a manifest under `reference`, plus any `extra_tags` (`?tag=`).
    pub async fn manifest_put(
        &self,
        ns: &Namespace,
        name: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
        extra_tags: &[String],
    ) -> Result<PushedManifest> {
        let repo = self.repo_for_push(ns, name).await?;
        self.put_manifest_in(ns, &repo, name.as_str(), reference, content_type, bytes, extra_tags, false).await
    }

    /// Store a manifest that replication copies (its push events are marked replicated, so
    /// they are not replicated onward).
    pub(crate) async fn put_manifest_replicated(
        &self,
        ns: &Namespace,
        repo: &RepoEntry,
        name: &str,
        reference: &Reference,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<PushedManifest> {
        self.put_manifest_in(ns, repo, name, reference, Some(media_type), bytes, &[], true).await
    }

    /// [`Registry::manifest_put`] of a push a peer deployment's replication makes (the OCI
    /// API's replication header, honoured for callers allowed `ecr:ReplicateImage`).
    pub async fn manifest_put_replicated(
        &self,
        ns: &Namespace,
        name: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<PushedManifest> {
        let repo = self.repo_for_push(ns, name).await?;
        self.put_manifest_in(ns, &repo, name.as_str(), reference, content_type, bytes, &[], true).await
    }

    /// Push a manifest into a resolved repository (data plane and ECR PutImage).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn put_manifest_in(
        &self,
        ns: &Namespace,
        repo: &RepoEntry,
        name: &str,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
        extra_tags: &[String],
        replicated: bool,
    ) -> Result<PushedManifest> {
        if bytes.len() > berth_oci::MAX_MANIFEST_BYTES {
            return Err(Error::ManifestTooLarge);
        }
        // A repository whose KMS key cannot be used takes no pushes (ECR's KmsException).
        self.check_repo_key(repo.id).await?;
        let parsed = manifest::parse(content_type, &bytes).map_err(|e| Error::ManifestInvalid(e.to_string()))?;
        let algorithm = match reference {
            Reference::Digest(d) => d.algorithm(),
            Reference::Tag(_) => Algorithm::Sha256,
        };
        let mut h = HashState::with_algorithm(algorithm);
        h.update(&bytes);
        let digest = h.finish();
        let mut tags: Vec<Tag> = Vec::new();
        match reference {
            Reference::Digest(d) if d != &digest => {
                return Err(Error::DigestInvalid(format!("manifest digest {digest} does not match reference {d}")));
            }
            Reference::Digest(_) => {}
            Reference::Tag(t) => tags.push(t.clone()),
        }
        for t in extra_tags {
            let t: Tag = t.parse().map_err(|_| Error::TagInvalid(t.chars().take(200).collect()))?;
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        let blob_refs: Vec<String> = parsed.blobs.iter().map(|(d, _)| d.to_string()).collect();
        let child_refs: Vec<String> = parsed.children.iter().map(|(d, _)| d.to_string()).collect();
        let blob_refs: Vec<(&str, u64)> =
            blob_refs.iter().zip(&parsed.blobs).map(|(d, (_, size))| (d.as_str(), *size as u64)).collect();
        let child_refs: Vec<(&str, u64)> =
            child_refs.iter().zip(&parsed.children).map(|(d, (_, size))| (d.as_str(), *size as u64)).collect();
        let annotations = parsed.annotations.as_ref().map(|a| serde_json::to_string(a).unwrap_or_default());
        let subject = parsed.subject.as_ref().map(|d| d.to_string());
        let tag_refs: Vec<&str> = tags.iter().map(Tag::as_str).collect();
        let index = parsed.kind == Kind::Index;
        let new = berth_meta::NewManifest {
            replicated,
            repo_id: repo.id,
            config_media_type: parsed.config_media_type.as_deref(),
            index,
            digest: digest.as_str(),
            media_type: &parsed.media_type,
            artifact_type: parsed.artifact_type.as_deref(),
            subject: subject.as_deref(),
            annotations: annotations.as_deref(),
            content: &bytes,
            blobs: &blob_refs,
            children: if index { &child_refs } else { &[] },
        };
        // Mutability, existence and sizes are checked by the store in the write's transaction.
        let outcome = self.meta.put_manifest(&new, &tag_refs, self.now()).await?;
        self.cache.invalidate(repo.id);
        match outcome {
            PutManifest::Stored => {
                // A standard image's blobs belong in standard storage: those it shares with
                // archived images come back (the push itself is done: a failure here is logged).
                if let Err(e) = self.unarchive_pushed(repo.id, digest.as_str()).await {
                    tracing::warn!(error = %e, %digest, "could not queue the restore of archived blobs of a push");
                }
                Ok(PushedManifest { digest, subject: parsed.subject, tags, media_type: parsed.media_type })
            }
            PutManifest::TagExists(tag) => Err(Error::TagImmutable { tag, repo: name.to_string() }),
            PutManifest::RepositoryGone => {
                self.forget_repo(ns, name, repo.id);
                Err(Error::RepositoryNotFound { name: name.to_string(), registry: ns.account_id.clone() })
            }
            PutManifest::MissingBlobs(b) => Err(Error::ManifestBlobUnknown(b)),
            PutManifest::MissingManifests(m) => Err(Error::ManifestChildUnknown(m)),
            PutManifest::SizeMismatch { digest, declared, stored } => {
                Err(Error::ManifestSizeMismatch { digest, declared, stored })
            }
        }
    }

    /// Delete a manifest by digest (with its tags), or only a tag.
    pub async fn manifest_delete(&self, ns: &Namespace, name: &RepoName, reference: &Reference) -> Result<()> {
        let repo = self.existing_repo(ns, name).await?;
        let found = match reference {
            Reference::Digest(d) => self.meta.delete_manifest(repo, d.as_str(), self.now()).await?,
            Reference::Tag(t) => self.meta.delete_tag(repo, t.as_str(), self.now()).await?,
        };
        self.cache.invalidate(repo);
        if found { Ok(()) } else { Err(Error::ManifestUnknown(reference.to_string())) }
    }

    /// One page of a repository's tags.
    pub async fn tags(&self, ns: &Namespace, name: &RepoName, last: Option<&str>, n: Option<u32>) -> Result<Page> {
        let repo = self.existing_repo(ns, name).await?;
        let limit = n.unwrap_or(u32::MAX - 1).min(100_000);
        let mut items = if limit == 0 { Vec::new() } else { self.meta.list_tags(repo, last, limit + 1).await? };
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        Ok(Page { items, more })
    }

    /// The registry's sizes for the metrics gauges (counts over whole tables: cache them).
    pub async fn stats(&self) -> Result<berth_meta::Stats> {
        Ok(self.meta.stats().await?)
    }

    /// Readiness: the metadata store answers and the blob store answers (a stat of a digest that
    /// does not exist).
    pub async fn ready(&self) -> Result<()> {
        self.meta.auth_epoch().await?;
        let probe: Digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
            .parse()
            .map_err(|_| Error::Internal("probe digest".into()))?;
        self.blobs.stat(&probe).await.map_err(storage_err)?;
        if let Some(free) = self.blobs.free_space().await.map_err(storage_err)?
            && free < self.settings.min_free_bytes
        {
            return Err(Error::StorageFull(format!(
                "the storage has {free} bytes free, less than min_free_mb ({} bytes)",
                self.settings.min_free_bytes
            )));
        }
        Ok(())
    }

    /// One page of the repositories `caller` may see (ecr:DescribeRepositories on each), after
    /// `last` (a repository name, or a [`CatalogPage::next`] cursor), at most `n`.
    ///
    /// Only repositories the caller could possibly see are read and authorized: those the
    /// caller's identity policies could allow (by name prefix, see [`berth_policy::reach`]) and
    /// those with a repository policy. At most [`CATALOG_EXAMINE_MAX`] are authorized per call, so
    /// the cost of a call does not grow with the registry: when the budget runs out first the
    /// page holds fewer than `n` names (possibly none) and `next` continues the walk. `next` is
    /// a repository name only when the page ends on one the caller sees; otherwise it is sealed
    /// with the server key, so that a cursor never reveals a repository the caller cannot see.
    pub async fn catalog_for(
        &self,
        caller: &Caller<'_>,
        ns: &Namespace,
        last: Option<&str>,
        n: Option<u32>,
    ) -> Result<CatalogPage> {
        let limit = n.unwrap_or(u32::MAX - 1).min(100_000) as usize;
        if limit == 0 {
            return Ok(CatalogPage { items: Vec::new(), next: None });
        }
        let reach = self.reach(caller, "ecr:DescribeRepositories", ns).await?;
        let mut after = last.map(|l| self.open_catalog_cursor(ns, l));
        let mut items = Vec::new();
        let mut examined = 0;
        let mut last_examined: Option<String> = None;
        // Read the candidates in rounds, each list twice the page first and doubling
        // after, so that a page costs about its own length whatever the registry's size, while
        // a walk past many names the caller may not see still reads few rounds. The rounds
        // examine the names in the same order, within the same budget, as one read would.
        let mut batch = ((limit + 1) * 2).clamp(16, CATALOG_EXAMINE_MAX);
        loop {
            let batch_now = batch.min(CATALOG_EXAMINE_MAX - examined) as u32;
            let from = after.as_deref();
            let mut lists = Vec::new();
            match &reach {
                Reach::PrefixesOrPolicy(prefixes) if prefixes.len() <= MAX_PREFIX_QUERIES => {
                    for p in prefixes {
                        lists
                            .push(self.meta.list_repositories_where(ns, RepoFilter::Prefix(p), from, batch_now).await?);
                    }
                    lists.push(self.meta.list_repositories_where(ns, RepoFilter::WithPolicy, from, batch_now).await?);
                }
                _ => lists.push(self.meta.list_repositories(ns, from, batch_now).await?),
            }
            // Every candidate up to the horizon was listed: a full list may continue past its end.
            let horizon =
                lists.iter().filter(|l| l.len() == batch_now as usize).filter_map(|l| l.last()).min().cloned();
            let mut candidates: Vec<String> =
                lists.into_iter().flatten().filter(|name| horizon.as_ref().is_none_or(|h| name <= h)).collect();
            candidates.sort_unstable();
            candidates.dedup();
            let mut all_examined = true;
            for name in &candidates {
                if items.len() > limit || examined == CATALOG_EXAMINE_MAX {
                    all_examined = false;
                    break;
                }
                examined += 1;
                last_examined = Some(name.clone());
                let target = Target::Repository { ns, name };
                match self.authorize(caller, "ecr:DescribeRepositories", target).await {
                    Ok(()) => items.push(name.clone()),
                    Err(Error::Denied(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            tracing::debug!(examined, candidates = candidates.len(), listed = items.len(), "catalog round");
            if items.len() > limit {
                items.truncate(limit);
                let next = items.last().cloned();
                return Ok(CatalogPage { items, next });
            }
            if all_examined && horizon.is_none() {
                return Ok(CatalogPage { items, next: None });
            }
            if examined == CATALOG_EXAMINE_MAX || !all_examined {
                break;
            }
            // Everything up to the horizon was examined and the page is not full: read on.
            after = horizon;
            batch = (batch * 2).min(CATALOG_EXAMINE_MAX);
        }
        // The budget ran out: continue after the last one examined.
        let Some(end) = last_examined else {
            return Ok(CatalogPage { items, next: None });
        };
        let next = if items.last() == Some(&end) { end } else { self.seal_catalog_cursor(ns, &end)? };
        Ok(CatalogPage { items, next: Some(next) })
    }

    fn catalog_cursor_context(ns: &Namespace) -> Vec<u8> {
        format!("berth catalog cursor {}/{}", ns.account_id, ns.region).into_bytes()
    }

    fn seal_catalog_cursor(&self, ns: &Namespace, name: &str) -> Result<String> {
        self.keys
            .secrets
            .seal(name.as_bytes(), &Self::catalog_cursor_context(ns))
            .map_err(|e| Error::Internal(format!("sealing a catalog cursor: {e}")))
    }

    /// The repository name a `last` parameter continues after: a sealed cursor's name, else
    /// `last` itself (names never look like sealed cursors: they hold no `:`).
    fn open_catalog_cursor(&self, ns: &Namespace, last: &str) -> String {
        self.keys
            .secrets
            .open(last, &Self::catalog_cursor_context(ns))
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_else(|| last.to_string())
    }

    /// Manifests whose subject is `subject`.
    pub async fn referrers(
        &self,
        ns: &Namespace,
        name: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        // The spec forbids a 404 here: an unknown repository simply has no referrers.
        let Some(repo) = self.repo_id(ns, name).await? else {
            return Ok(Vec::new());
        };
        Ok(self.meta.referrers(repo, subject.as_str(), artifact_type).await?)
    }
}
