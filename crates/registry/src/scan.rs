//! Vulnerability scanning of images (ECR's basic scanning, on Berth's own data): a scan reads an
//! image's layers from the blob store in a job ([`SCAN_JOB`]), inventories the final filesystem
//! (crate `berth-scanner`), and matches every package against the imported OSV advisories
//! (crate `berth-vulndb`; indexed by package, so a scan reads only the advisories that name its
//! packages). An index is scanned platform by platform and reports their union. The last scan
//! of each image is kept with it: status, findings, counts by severity.

use crate::{Error, ImageId, Registry, Result, storage_err};
use berth_meta::Namespace;
use berth_meta::scan::{ImageScan, NewAdvisory, ScanRequest};
use futures::TryStreamExt;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Job kind of a scan.
pub const SCAN_JOB: &str = "image-scan";

/// ECR's scan statuses that Berth uses.
pub mod status {
    pub const IN_PROGRESS: &str = "IN_PROGRESS";
    pub const COMPLETE: &str = "COMPLETE";
    pub const FAILED: &str = "FAILED";
    pub const UNSUPPORTED_IMAGE: &str = "UNSUPPORTED_IMAGE";
}

/// The severities ECR reports, most severe first.
pub const SEVERITIES: &[&str] = &["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED"];

/// Whether scanning on push scans a manifest: images (by their config's media type) and
/// indexes; other artifacts (signatures, SBOMs, attestations) are not.
fn scannable(manifest_media_type: &str, config_media_type: Option<&str>) -> bool {
    manifest_media_type.ends_with("image.index.v1+json")
        || manifest_media_type.ends_with("manifest.list.v2+json")
        || matches!(
            config_media_type,
            Some("application/vnd.oci.image.config.v1+json" | "application/vnd.docker.container.image.v1+json")
        )
}

/// A repository's pull gate as a node caches it: the data epoch it was read at, and the gate.
pub(crate) type CachedGate = (i64, Option<Arc<PullGate>>);

/// The IAM action that lets a caller pull an image a repository's pull gate refuses.
pub const BYPASS_PULL_GATE: &str = "berth:BypassPullGate";

/// A repository's pull gate (Berth's own, off by default): pulls of images whose last scan has
/// findings at or above `severity`, or that were not scanned (unless `allow_unscanned`), are
/// refused (403 `DENIED`), except for callers allowed [`BYPASS_PULL_GATE`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PullGate {
    /// One of [`SEVERITIES`]: findings of this severity or a more severe one refuse the pull
    /// (in [`SEVERITIES`]' order, so `UNDEFINED` refuses on any finding).
    pub severity: String,
    #[serde(default)]
    pub allow_unscanned: bool,
}

/// Artifact type of the SBOMs scans publish.
pub const SBOM_ARTIFACT_TYPE: &str = "application/vnd.cyclonedx+json";

/// The package URL of a package, when its ecosystem has a purl type.
fn purl(p: &berth_scanner::Package) -> Option<String> {
    let base = berth_vulndb::base_ecosystem(&p.ecosystem);
    let release = p.ecosystem.split_once(':').map(|(_, r)| r);
    let enc = |s: &str| s.replace('%', "%25").replace('@', "%40").replace('?', "%3F").replace('#', "%23");
    Some(match base {
        "PyPI" => format!("pkg:pypi/{}@{}", enc(&p.name), enc(&p.version)),
        "npm" => format!("pkg:npm/{}@{}", p.name.split('/').map(enc).collect::<Vec<_>>().join("/"), enc(&p.version)),
        "crates.io" => format!("pkg:cargo/{}@{}", enc(&p.name), enc(&p.version)),
        "Go" => format!("pkg:golang/{}@{}", p.name.split('/').map(enc).collect::<Vec<_>>().join("/"), enc(&p.version)),
        "Debian" | "Ubuntu" => {
            let ns = base.to_lowercase();
            let distro = release.map(|r| format!("?distro={ns}-{r}")).unwrap_or_default();
            format!("pkg:deb/{ns}/{}@{}{distro}", enc(&p.name), enc(&p.version))
        }
        "Alpine" => {
            let distro = release.map(|r| format!("?distro=alpine-{}", r.trim_start_matches('v'))).unwrap_or_default();
            format!("pkg:apk/alpine/{}@{}{distro}", enc(&p.name), enc(&p.version))
        }
        _ => return None,
    })
}

/// How long after a push into a repository that scans on push the image's scan counts as
/// pending (`IN_PROGRESS`) before the scan-on-push consumer records it.
pub const SCAN_PENDING_WINDOW: Duration = Duration::from_secs(120);

/// Platform manifests of an index scanned at most (the rest are left out of the union).
const MAX_PLATFORMS: usize = 16;

/// Why a scan cannot start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanRefused {
    /// The image id named no image (the failure's reason).
    NotFound,
    /// The image is archived.
    Archived(String),
    /// Scanned less than the minimum interval ago.
    TooSoon(String),
    /// The image id was malformed (the reason).
    Invalid(String),
}

/// A scan that was started (or refused).
pub type ScanStart = std::result::Result<String, ScanRefused>;

/// A finished scan: the image's repository (namespace and name, when the job knew them) and
/// the scan as recorded.
#[derive(Debug, Clone)]
pub struct ScanOutcome {
    pub target: Option<(Namespace, String)>,
    pub scan: ImageScan,
}

/// Rejected records an import names (it counts them all).
const MAX_REJECTIONS_REPORTED: usize = 20;

/// What an import of advisories read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Advisories imported (withdrawn ones included).
    pub records: u64,
    pub withdrawn: u64,
    /// Records that could not be read (not JSON, not OSV, over a size cap), skipped.
    pub rejected: u64,
    /// Why, for the first few of them (each names its file or zip entry).
    pub rejections: Vec<String>,
    /// Scans queued for repositories that scan continuously.
    pub rescans: u64,
}

impl Registry {
    /// StartImageScan: record a scan of the image as `IN_PROGRESS` and queue it, unless the
    /// image was scanned (or asked to be) less than the settings' `scan_interval` ago (ECR:
    /// once per 24 hours). Returns the digest.
    pub async fn start_image_scan(&self, ns: &Namespace, name: &str, id: &ImageId) -> Result<ScanStart> {
        let min_interval: Duration = self.settings.scan_interval;
        let repo = self.repo_in(ns, name).await?;
        let img = match self.image_in(repo.id, id).await? {
            Ok(i) => i,
            Err(f) if f.code == "ImageNotFound" => return Ok(Err(ScanRefused::NotFound)),
            Err(f) => return Ok(Err(ScanRefused::Invalid(f.reason))),
        };
        if img.status != berth_meta::ImageStatus::Active {
            return Ok(Err(ScanRefused::Archived(format!(
                "The image with digest '{}' is archived and cannot be scanned.",
                img.digest
            ))));
        }
        let now = self.now();
        let not_since = now.saturating_sub(min_interval.as_millis() as i64);
        match self.request_scan(ns, name, repo.id, &img.digest, not_since).await? {
            ScanRequest::Started => Ok(Ok(img.digest)),
            ScanRequest::NoImage => Ok(Err(ScanRefused::NotFound)),
            ScanRequest::TooSoon => Ok(Err(ScanRefused::TooSoon(format!(
                "The scan quota per image has been exceeded. Wait and try again. (image {})",
                img.digest
            )))),
        }
    }

    /// Record a scan of `digest` as requested and queue it (`not_since`: see
    /// [`berth_meta::scan::ScanStore::scan_request`]).
    pub(crate) async fn request_scan(
        &self,
        ns: &Namespace,
        name: &str,
        repo_id: i64,
        digest: &str,
        not_since: i64,
    ) -> Result<ScanRequest> {
        let now = self.now();
        let r = self.meta.scan_request(repo_id, digest, not_since, now).await?;
        if r == ScanRequest::Started {
            let key = format!("{repo_id}:{digest}");
            let payload = json!({"repo": repo_id, "digest": digest, "requestedAt": now,
                "account": ns.account_id, "region": ns.region, "name": name})
            .to_string();
            let job = berth_meta::NewJob {
                kind: SCAN_JOB,
                key: &key,
                payload: &payload,
                run_after: now,
                max_attempts: 3,
                once: false,
            };
            self.meta.enqueue_job(&job, now).await?;
        }
        Ok(r)
    }

    /// Scan `digest` of repository `repo_id` now if it was pushed with scanning on push in
    /// effect (the scan-on-push consumer of the event log calls this).
    pub async fn scan_pushed(&self, ns: &Namespace, name: &str, digest: &str) -> Result<bool> {
        let Some(repo) = self.repo_id(ns, &Self::parse_name(name)?).await? else { return Ok(false) };
        Ok(self.request_scan(ns, name, repo, digest, i64::MAX).await? == ScanRequest::Started)
    }

    /// The image an image id names and its last scan. An image pushed less than
    /// [`SCAN_PENDING_WINDOW`] ago into a repository that scans on push, whose push the
    /// scan-on-push consumer has not reached yet, has a pending scan: `IN_PROGRESS`, as ECR
    /// reports a scan on push right after the push.
    pub async fn image_scan(
        &self,
        ns: &Namespace,
        name: &str,
        id: &ImageId,
    ) -> Result<std::result::Result<(String, Option<ImageScan>), crate::ImageFailure>> {
        let repo = self.repo_in(ns, name).await?;
        let img = match self.image_in(repo.id, id).await? {
            Ok(i) => i,
            Err(f) => return Ok(Err(f)),
        };
        let mut scan = self.meta.scans(repo.id, std::slice::from_ref(&img.digest)).await?.pop();
        let now = self.now();
        if scan.is_none()
            && img.pushed_at > now - SCAN_PENDING_WINDOW.as_millis() as i64
            && scannable(&img.media_type, img.config_media_type.as_deref())
        {
            let flag = self.meta.repository_info(ns, name).await?.is_some_and(|i| i.scan_on_push);
            if self.repository_scanning(ns, name, flag).await?.scan_on_push {
                scan = Some(ImageScan {
                    digest: img.digest.clone(),
                    status: status::IN_PROGRESS.into(),
                    description: None,
                    requested_at: img.pushed_at,
                    completed_at: None,
                    source_updated_at: None,
                    counts: None,
                    findings: None,
                });
            }
        }
        Ok(Ok((img.digest, scan)))
    }

    /// The last scans of the repository's images among `digests`, by digest.
    pub async fn image_scans(
        &self,
        ns: &Namespace,
        name: &str,
        digests: &[String],
    ) -> Result<HashMap<String, ImageScan>> {
        let repo = self.repo_in(ns, name).await?;
        Ok(self.meta.scans(repo.id, digests).await?.into_iter().map(|s| (s.digest.clone(), s)).collect())
    }

    /// The scan job (payload `{"repo", "digest", "requestedAt", "account", "region", "name"}`):
    /// the recorded scan, `None` when a newer request replaced this one meanwhile.
    pub async fn run_scan(&self, payload: &str) -> Result<Option<ScanOutcome>> {
        let v: Value = serde_json::from_str(payload).map_err(|e| Error::Internal(format!("scan job payload: {e}")))?;
        let (Some(repo), Some(digest), Some(requested_at)) =
            (v["repo"].as_i64(), v["digest"].as_str(), v["requestedAt"].as_i64())
        else {
            return Err(Error::Internal(format!("scan job payload without repo, digest and requestedAt: {payload}")));
        };
        let outcome = self.scan_image(repo, digest).await;
        let target = match (v["account"].as_str(), v["region"].as_str(), v["name"].as_str()) {
            (Some(a), Some(r), Some(n)) => Some((Namespace { account_id: a.into(), region: r.into() }, n.to_string())),
            _ => None,
        };
        let now = self.now();
        let mut scan = ImageScan {
            digest: digest.to_string(),
            status: status::COMPLETE.into(),
            description: Some("The scan was completed successfully.".into()),
            requested_at,
            completed_at: Some(now),
            source_updated_at: self.meta.vuln_updated_at().await?,
            counts: None,
            findings: None,
        };
        match outcome {
            Ok(Some((findings, packages))) => {
                // The SBOM goes next to the image as a referrer; a failure there does not fail
                // the scan (it is logged).
                if let Some((ns, name)) = target.as_ref().filter(|_| self.settings.scan_sbom_referrers)
                    && let Err(e) = self.publish_sbom(ns, name, repo, digest, &packages).await
                {
                    tracing::warn!(error = %e, %digest, "could not publish the scan's SBOM");
                }
                let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
                for f in &findings {
                    let sev = f["severity"].as_str().unwrap_or("UNDEFINED");
                    let sev = SEVERITIES.iter().find(|s| **s == sev).copied().unwrap_or("UNDEFINED");
                    *counts.entry(sev).or_default() += 1;
                }
                scan.counts = Some(json!(counts).to_string());
                scan.findings = Some(Value::Array(findings).to_string());
            }
            Ok(None) => {
                scan.status = status::UNSUPPORTED_IMAGE.into();
                scan.description = Some("The image has no layers Berth can scan (not a container image).".into());
            }
            Err(e) => {
                tracing::warn!(error = %e, %digest, "image scan failed");
                scan.status = status::FAILED.into();
                scan.description = Some(format!("The scan failed: {e}").chars().take(1000).collect());
            }
        }
        if !self.meta.scan_finish(repo, requested_at, &scan).await? {
            return Ok(None);
        }
        metrics::counter!("berth_scans_total", "status" => scan.status.clone()).increment(1);
        Ok(Some(ScanOutcome { target, scan }))
    }

    /// Scan one image (an index: each platform's image, their union): its findings and
    /// packages. `None`: nothing to scan.
    async fn scan_image(&self, repo: i64, digest: &str) -> Result<Option<(Vec<Value>, Vec<berth_scanner::Package>)>> {
        let Some(m) = self.meta.manifest(repo, digest).await? else {
            return Err(Error::Internal(format!("the manifest {digest} is gone")));
        };
        let doc: Value = serde_json::from_slice(&m.content).unwrap_or(Value::Null);
        let images: Vec<(String, Value)> = match doc.get("manifests").and_then(Value::as_array) {
            Some(children) => {
                let mut out = Vec::new();
                for c in children.iter().take(MAX_PLATFORMS) {
                    // Attestation manifests of BuildKit carry `unknown/unknown` platforms.
                    if c["platform"]["os"] == "unknown" {
                        continue;
                    }
                    let Some(d) = c["digest"].as_str() else { continue };
                    if let Some(cm) = self.meta.manifest(repo, d).await? {
                        out.push((d.to_string(), serde_json::from_slice(&cm.content).unwrap_or(Value::Null)));
                    }
                }
                out
            }
            None => vec![(digest.to_string(), doc)],
        };
        let mut packages = Vec::new();
        let mut scanned = false;
        for (_, image) in &images {
            if let Some(inv) = self.inventory(image).await? {
                scanned = true;
                packages.extend(inv.packages);
            }
        }
        if !scanned {
            return Ok(None);
        }
        packages.sort();
        packages.dedup();
        let findings = self.match_packages(&packages).await?;
        Ok(Some((findings, packages)))
    }

    /// Push a CycloneDX SBOM of `packages` as an OCI 1.1 referrer artifact of manifest `digest`
    /// (artifact type `application/vnd.cyclonedx+json`), so the referrers API and
    /// `oras discover` show it.
    async fn publish_sbom(
        &self,
        ns: &Namespace,
        name: &str,
        repo: i64,
        digest: &str,
        packages: &[berth_scanner::Package],
    ) -> Result<()> {
        let Some(subject) = self.meta.manifest(repo, digest).await? else { return Ok(()) };
        let repo_name = Self::parse_name(name)?;
        let now = self.now();
        let components: Vec<Value> = packages
            .iter()
            .map(|p| {
                let mut c = json!({"type": "library", "name": p.name, "version": p.version,
                    "properties": [{"name": "berth:ecosystem", "value": p.ecosystem}, {"name": "berth:path", "value": p.path}]});
                if let Some(purl) = purl(p) {
                    c["purl"] = json!(purl);
                    c["bom-ref"] = json!(purl);
                }
                c
            })
            .collect();
        let bom = json!({
            "bomFormat": "CycloneDX",
            "specVersion": "1.5",
            "serialNumber": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            "version": 1,
            "metadata": {
                "timestamp": crate::iso8601(now),
                "tools": {"components": [{"type": "application", "name": "berth", "version": env!("CARGO_PKG_VERSION")}]},
                "component": {"type": "container", "name": name, "version": digest},
            },
            "components": components,
        });
        let bom = bytes::Bytes::from(serde_json::to_vec(&bom).map_err(|e| Error::Internal(e.to_string()))?);
        let empty = bytes::Bytes::from_static(b"{}");
        let mut descs = Vec::new();
        for data in [&empty, &bom] {
            let d = crate::hash::sha256_digest(data);
            let body: berth_storage::ByteStream = Box::pin(futures::stream::once({
                let data = data.clone();
                async move { Ok(data) }
            }));
            self.upload_monolithic(ns, &repo_name, &d, body).await?;
            descs.push((d, data.len()));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": SBOM_ARTIFACT_TYPE,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": descs[0].0.to_string(), "size": 2},
            "layers": [{"mediaType": SBOM_ARTIFACT_TYPE, "digest": descs[1].0.to_string(), "size": descs[1].1}],
            "subject": {"mediaType": subject.media_type, "digest": digest, "size": subject.content.len()},
            "annotations": {"org.opencontainers.image.created": crate::iso8601(now), "dev.berth.sbom": "scan"},
        });
        let bytes = bytes::Bytes::from(serde_json::to_vec(&manifest).map_err(|e| Error::Internal(e.to_string()))?);
        let new_digest = crate::hash::sha256_digest(&bytes);
        let reference = berth_oci::Reference::Digest(new_digest.clone());
        self.manifest_put(ns, &repo_name, &reference, Some("application/vnd.oci.image.manifest.v1+json"), bytes, &[])
            .await?;
        // The new SBOM replaces the ones earlier scans of this image published (the scanner's,
        // by their annotation; SBOMs others pushed stay).
        let subject = Self::parse_digest(digest)?;
        for r in self.referrers(ns, &repo_name, &subject, Some(SBOM_ARTIFACT_TYPE)).await? {
            let ours = r
                .annotations
                .as_deref()
                .and_then(|a| serde_json::from_str::<Value>(a).ok())
                .is_some_and(|a| a["dev.berth.sbom"] == "scan");
            if ours && r.digest != new_digest.as_str() {
                let id = crate::ImageId { image_digest: Some(r.digest.clone()), image_tag: None };
                if let Ok(Err(f)) = self.delete_image(ns, name, &id).await {
                    tracing::warn!(digest = %r.digest, failure = ?f, "an earlier scan's SBOM could not be replaced");
                }
            }
        }
        Ok(())
    }

    /// The inventory of an image manifest's layers, `None` when it has no layer to read.
    async fn inventory(&self, manifest: &Value) -> Result<Option<berth_scanner::Inventory>> {
        let Some(layers) = manifest.get("layers").and_then(Value::as_array) else { return Ok(None) };
        let mut plan = Vec::new();
        for l in layers {
            let (Some(mt), Some(d), Some(size)) = (l["mediaType"].as_str(), l["digest"].as_str(), l["size"].as_u64())
            else {
                continue;
            };
            let Some(compression) = berth_scanner::Compression::from_media_type(mt) else { continue };
            // The manifest's sizes are the stored sizes (checked when it was put).
            plan.push((compression, Self::parse_digest(d)?, size));
        }
        if plan.is_empty() {
            return Ok(None);
        }
        let mut scanner = berth_scanner::Scanner::new(berth_scanner::Limits::default());
        for (compression, d, size) in plan {
            let stream = self.read_bytes(&d, 0, size).await.map_err(storage_err)?;
            let reader = tokio_util::io::StreamReader::new(stream.map_err(std::io::Error::other));
            let bridge = tokio_util::io::SyncIoBridge::new(reader);
            scanner = tokio::task::spawn_blocking(move || {
                let mut s = scanner;
                s.add_layer(compression, bridge).map(|()| s)
            })
            .await
            .map_err(|e| Error::Internal(format!("scan task: {e}")))?
            .map_err(|e| Error::Internal(format!("layer {d}: {e}")))?;
        }
        Ok(Some(scanner.finish()))
    }

    /// Findings (ECR's `ImageScanFinding` JSON) for `packages`, sorted by severity, then name.
    async fn match_packages(&self, packages: &[berth_scanner::Package]) -> Result<Vec<Value>> {
        let mut cache: HashMap<(String, String), Vec<berth_vulndb::Advisory>> = HashMap::new();
        let mut found: BTreeMap<(usize, String, String, String), Value> = BTreeMap::new();
        for p in packages {
            let base = berth_vulndb::base_ecosystem(&p.ecosystem).to_string();
            // OS advisories name source packages; a binary package is checked under both.
            let mut names = vec![p.name.clone()];
            if let Some(src) = p.source_name.as_ref().filter(|s| **s != p.name) {
                names.push(src.clone());
            }
            for name in names {
                let key = (base.clone(), berth_vulndb::normalize_name(&p.ecosystem, &name));
                if !cache.contains_key(&key) {
                    let mut advisories = Vec::new();
                    for (id, body) in self.meta.vuln_for_package(&key.0, &key.1).await? {
                        match serde_json::from_str::<berth_vulndb::Advisory>(&body) {
                            Ok(a) => advisories.push(a),
                            Err(e) => tracing::warn!(advisory = %id, error = %e, "stored advisory does not parse"),
                        }
                    }
                    cache.insert(key.clone(), advisories);
                }
                let version = if name == p.name { &p.version } else { p.source_version.as_ref().unwrap_or(&p.version) };
                for a in &cache[&key] {
                    if !a.affects(&p.ecosystem, &name, version) {
                        continue;
                    }
                    let finding = finding_json(a, p);
                    let sev = SEVERITIES.iter().position(|s| *s == a.severity.as_str()).unwrap_or(SEVERITIES.len());
                    let title = finding["name"].as_str().unwrap_or_default().to_string();
                    found.insert((sev, title, p.name.clone(), p.version.clone()), finding);
                }
            }
        }
        Ok(found.into_values().collect())
    }

    /// Import OSV advisories (files, directories, `all.zip`s) from `paths`, in batches;
    /// `progress` sees the running count. Returns what was read.
    pub async fn import_advisories(
        &self,
        paths: &[std::path::PathBuf],
        mut progress: impl FnMut(u64),
    ) -> Result<ImportReport> {
        const BATCH: usize = 500;
        let source = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        let import = self.meta.vuln_import_begin(&source, self.now()).await?;
        let mut report = ImportReport::default();
        for path in paths {
            // (advisory, withdrawn) or why a record could not be read.
            let (tx, mut rx) =
                tokio::sync::mpsc::channel::<std::result::Result<(NewAdvisory, bool), String>>(BATCH * 2);
            let path = path.clone();
            let reader = tokio::task::spawn_blocking(move || {
                for r in berth_vulndb::read_sources(&path) {
                    let item = r.map_err(|e| e.to_string()).and_then(|a| Ok((new_advisory(&a)?, a.withdrawn)));
                    if tx.blocking_send(item).is_err() {
                        break;
                    }
                }
            });
            let mut batch = Vec::with_capacity(BATCH);
            while let Some(item) = rx.recv().await {
                // A record that cannot be read is reported and skipped: the rest still imports.
                let (a, withdrawn) = match item {
                    Ok(x) => x,
                    Err(e) => {
                        report.rejected += 1;
                        if report.rejections.len() < MAX_REJECTIONS_REPORTED {
                            report.rejections.push(e);
                        }
                        continue;
                    }
                };
                report.records += 1;
                report.withdrawn += u64::from(withdrawn);
                batch.push(a);
                if batch.len() == BATCH {
                    self.meta.vuln_put(import, &batch).await?;
                    batch.clear();
                    progress(report.records);
                }
            }
            self.meta.vuln_put(import, &batch).await?;
            progress(report.records);
            reader.await.map_err(|e| Error::Internal(format!("advisory reader: {e}")))?;
        }
        self.meta.vuln_import_end(import, report.records as i64, report.withdrawn as i64, self.now()).await?;
        report.rescans = self.rescan_continuous().await?;
        Ok(report)
    }

    /// Queue a scan of every active image of the repositories that a `CONTINUOUS_SCAN` rule
    /// covers (after an import: the advisories changed). Returns how many were queued.
    pub async fn rescan_continuous(&self) -> Result<u64> {
        let mut queued = 0;
        for (account_id, region, text) in self.meta.registry_scannings().await? {
            let Ok(cfg) = serde_json::from_str::<ScanningConfiguration>(&text) else { continue };
            if !cfg.rules.iter().any(|r| r.scan_frequency == "CONTINUOUS_SCAN") {
                continue;
            }
            let ns = Namespace { account_id, region };
            let mut last: Option<String> = None;
            loop {
                let (repos, more) = self.list_repository_infos(&ns, last.as_deref(), 100).await?;
                for info in &repos {
                    if effective(&cfg, &info.name).scan_frequency != "CONTINUOUS_SCAN" {
                        continue;
                    }
                    let mut after: Option<berth_meta::ImageKey> = None;
                    loop {
                        let (images, next) = self
                            .images_page(
                                &ns,
                                &info.name,
                                berth_meta::TagStatus::Any,
                                Some(berth_meta::ImageStatus::Active),
                                after.as_ref(),
                                500,
                            )
                            .await?;
                        let Some(repo) = self.repo_id(&ns, &Self::parse_name(&info.name)?).await? else { break };
                        for img in images.iter().filter(|i| scannable(&i.media_type, i.config_media_type.as_deref())) {
                            if self.request_scan(&ns, &info.name, repo, &img.digest, i64::MAX).await?
                                == ScanRequest::Started
                            {
                                queued += 1;
                            }
                        }
                        match next {
                            Some(k) => after = Some(k),
                            None => break,
                        }
                    }
                }
                last = repos.last().map(|r| r.name.clone());
                if !more {
                    break;
                }
            }
        }
        Ok(queued)
    }

    /// What is loaded: the last imports, and the advisory and package counts.
    pub async fn advisory_status(&self) -> Result<(Vec<berth_meta::scan::VulnImport>, i64, i64)> {
        Ok(self.meta.vuln_status(20).await?)
    }
}

/// The row of an advisory (its parsed form as JSON, read back at match time without parsing the
/// OSV record again): withdrawn ones name no package (they affect nothing).
fn new_advisory(a: &berth_vulndb::Advisory) -> std::result::Result<NewAdvisory, String> {
    let body = serde_json::to_string(a).map_err(|e| format!("advisory {}: {e}", a.id))?;
    let mut packages: Vec<(String, String)> = if a.withdrawn {
        Vec::new()
    } else {
        a.affected
            .iter()
            .map(|x| {
                (
                    berth_vulndb::base_ecosystem(&x.ecosystem).to_string(),
                    berth_vulndb::normalize_name(&x.ecosystem, &x.name),
                )
            })
            .collect()
    };
    packages.sort();
    packages.dedup();
    Ok(NewAdvisory { id: a.id.clone(), modified: a.modified.clone(), body, packages })
}

/// ECR's `ImageScanFinding` for advisory `a` affecting package `p`: the CVE id as the name when
/// the advisory has one (every id stays visible in the `aliases` attribute).
fn finding_json(a: &berth_vulndb::Advisory, p: &berth_scanner::Package) -> Value {
    let name = a.cve.clone().unwrap_or_else(|| a.id.clone());
    let mut attrs =
        vec![json!({"key": "package_name", "value": p.name}), json!({"key": "package_version", "value": p.version})];
    if let Some(c) = &a.cvss3 {
        attrs.push(json!({"key": "CVSS3_SCORE", "value": format!("{:.1}", c.base_score)}));
        attrs.push(json!({"key": "CVSS3_VECTOR", "value": c.vector}));
    }
    let mut ids: Vec<&str> = std::iter::once(a.id.as_str()).chain(a.aliases.iter().map(String::as_str)).collect();
    ids.retain(|i| *i != name);
    if !ids.is_empty() {
        attrs.push(json!({"key": "aliases", "value": ids.join(",").chars().take(256).collect::<String>()}));
    }
    attrs.push(json!({"key": "package_path", "value": p.path.chars().take(256).collect::<String>()}));
    let description = a.summary.clone().or_else(|| a.details.clone()).unwrap_or_default();
    let mut f = json!({
        "name": name,
        "description": description.chars().take(4096).collect::<String>(),
        "severity": a.severity.as_str(),
        "attributes": attrs,
    });
    if let Some(u) = &a.url {
        f["uri"] = json!(u);
    }
    f
}

/// A registry's scanning configuration (ECR's `RegistryScanningConfiguration`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanningConfiguration {
    pub scan_type: String,
    pub rules: Vec<ScanningRule>,
}

impl Default for ScanningConfiguration {
    fn default() -> Self {
        ScanningConfiguration { scan_type: "BASIC".into(), rules: Vec::new() }
    }
}

/// One rule: repositories whose name matches a filter are scanned at `scan_frequency`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanningRule {
    pub scan_frequency: String,
    pub repository_filters: Vec<ScanningFilter>,
}

/// A repository name filter (`WILDCARD`: `*` matches any run of characters).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanningFilter {
    pub filter: String,
    pub filter_type: String,
}

/// How a repository is scanned (ECR's `RepositoryScanningConfiguration`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryScanning {
    pub scan_on_push: bool,
    /// `SCAN_ON_PUSH`, `CONTINUOUS_SCAN` (on push, and again after each advisory import) or
    /// `MANUAL`.
    pub scan_frequency: &'static str,
    pub applied_filters: Vec<ScanningFilter>,
}

/// Event-log consumer name of scanning on push.
pub const SCAN_ON_PUSH_CONSUMER: &str = "scan-on-push";

impl Registry {
    /// A registry's scanning configuration: what was put, or `None` (then each repository's
    /// `scanOnPush` decides).
    pub async fn registry_scanning(&self, ns: &Namespace) -> Result<Option<ScanningConfiguration>> {
        let Some(text) = self.meta.registry_scanning(&ns.account_id, &ns.region).await? else { return Ok(None) };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Internal(format!("stored scanning configuration: {e}")))
    }

    /// Set a registry's scanning configuration (validated by the caller).
    pub async fn put_registry_scanning(&self, ns: &Namespace, cfg: &ScanningConfiguration) -> Result<()> {
        let text = serde_json::to_string(cfg).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(self.meta.put_registry_scanning(&ns.account_id, &ns.region, &text).await?)
    }

    /// Set a repository's `scanOnPush` (PutImageScanningConfiguration).
    pub async fn set_scan_on_push(&self, ns: &Namespace, name: &str, on: bool) -> Result<()> {
        let repo = self.repo_in(ns, name).await?;
        if !self.meta.set_scan_on_push(repo.id, on).await? {
            return Err(Error::RepositoryNotFound { name: name.to_string(), registry: ns.account_id.clone() });
        }
        Ok(())
    }

    /// How repository `name` is scanned: by the registry's rules when its configuration has
    /// any (the first rule with a matching filter; scan on push only for `SCAN_ON_PUSH`), else
    /// by the repository's own `scanOnPush`.
    pub async fn repository_scanning(&self, ns: &Namespace, name: &str, repo_flag: bool) -> Result<RepositoryScanning> {
        Ok(match self.registry_scanning(ns).await?.filter(|c| !c.rules.is_empty()) {
            None => RepositoryScanning {
                scan_on_push: repo_flag,
                scan_frequency: if repo_flag { "SCAN_ON_PUSH" } else { "MANUAL" },
                applied_filters: Vec::new(),
            },
            Some(cfg) => effective(&cfg, name),
        })
    }

    /// One round of scanning on push: the image pushes after the consumer's cursor whose
    /// repository scans on push are queued for scanning, and the cursor moves past them.
    /// Returns the events read (0 when none, or another node moved the cursor first).
    pub async fn scan_on_push_step(&self) -> Result<usize> {
        use berth_meta::events::kind;
        let from = self.meta.event_cursor(SCAN_ON_PUSH_CONSUMER).await?;
        let events = self.meta.events_after(from, 200).await?;
        let Some(last) = events.last() else { return Ok(0) };
        let to = last.cursor();
        let mut configs: HashMap<(String, String), Option<ScanningConfiguration>> = HashMap::new();
        for e in &events {
            if e.kind != kind::IMAGE_PUSH {
                continue;
            }
            let (Some(repo), Ok(detail)) = (&e.repository, serde_json::from_str::<Value>(&e.detail)) else { continue };
            let Some(digest) = detail["image-digest"].as_str() else { continue };
            let manifest_type = detail["manifest-media-type"].as_str().unwrap_or_default();
            if !scannable(manifest_type, detail["artifact-media-type"].as_str()) {
                continue;
            }
            let ns = Namespace { account_id: e.account_id.clone(), region: e.region.clone() };
            let key = (ns.account_id.clone(), ns.region.clone());
            if !configs.contains_key(&key) {
                configs.insert(key.clone(), self.registry_scanning(&ns).await?.filter(|c| !c.rules.is_empty()));
            }
            let on = match &configs[&key] {
                Some(cfg) => effective(cfg, repo).scan_on_push,
                None => match self.meta.repository_info(&ns, repo).await? {
                    Some(info) => info.scan_on_push,
                    None => false,
                },
            };
            if on {
                self.scan_pushed(&ns, repo, digest).await?;
            }
        }
        if !self.meta.advance_event_cursor(SCAN_ON_PUSH_CONSUMER, from, to, &[], self.now()).await? {
            return Ok(0);
        }
        Ok(events.len())
    }
}

/// How a registry configuration scans repository `name`.
fn effective(cfg: &ScanningConfiguration, name: &str) -> RepositoryScanning {
    for rule in &cfg.rules {
        let applied: Vec<ScanningFilter> = rule
            .repository_filters
            .iter()
            .filter(|f| berth_meta::mutability::wildcard_match(&f.filter, name))
            .cloned()
            .collect();
        if !applied.is_empty() {
            let frequency = match rule.scan_frequency.as_str() {
                "SCAN_ON_PUSH" => "SCAN_ON_PUSH",
                "CONTINUOUS_SCAN" => "CONTINUOUS_SCAN",
                _ => "MANUAL",
            };
            return RepositoryScanning {
                scan_on_push: frequency != "MANUAL",
                scan_frequency: frequency,
                applied_filters: applied,
            };
        }
    }
    RepositoryScanning { scan_on_push: false, scan_frequency: "MANUAL", applied_filters: Vec::new() }
}

impl Registry {
    /// Set (or, `None`, remove) repository `name`'s pull gate.
    pub async fn set_pull_gate(&self, ns: &Namespace, name: &str, gate: Option<&PullGate>) -> Result<()> {
        if let Some(g) = gate
            && !SEVERITIES.contains(&g.severity.as_str())
        {
            return Err(Error::InvalidParameter(format!(
                "the pull gate's severity must be one of {}, got '{}'",
                SEVERITIES.join(", "),
                g.severity
            )));
        }
        let repo = self.repo_in(ns, name).await?;
        let text = gate.map(|g| serde_json::to_string(g).unwrap_or_default());
        if !self.meta.set_pull_gate(repo.id, text.as_deref()).await? {
            return Err(Error::RepositoryNotFound { name: name.to_string(), registry: ns.account_id.clone() });
        }
        self.cache.invalidate(repo.id);
        self.gates.write().unwrap_or_else(|p| p.into_inner()).remove(&repo.id);
        Ok(())
    }

    /// Repository `name`'s pull gate.
    pub async fn pull_gate(&self, ns: &Namespace, name: &str) -> Result<Option<PullGate>> {
        let repo = self.repo_in(ns, name).await?;
        self.gate_of(repo.id).await
    }

    async fn gate_of(&self, repo: i64) -> Result<Option<PullGate>> {
        Ok(self.meta.pull_gate(repo).await?.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Refuse a pull of `m` from repository `entry` when its pull gate says so. The gate is
    /// read once per data epoch of the repository (a gate change moves the epoch); a repository
    /// without a gate costs a map lookup.
    /// Why repository `name`'s pull gate refuses manifest `digest` (its media type and bytes),
    /// `None` when it lets it through (BatchGetImage's per-image check).
    pub async fn pull_gate_refusal(
        &self,
        ns: &Namespace,
        name: &str,
        digest: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Option<String>> {
        let Some(entry) = self.repo_entry_in(ns, name).await? else { return Ok(None) };
        match self.check_gate(&entry, digest, media_type, bytes).await {
            Ok(()) => Ok(None),
            Err(Error::PullGated(why)) => Ok(Some(why)),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn check_pull_gate(&self, entry: &crate::cache::RepoEntry, m: &crate::ManifestData) -> Result<()> {
        self.check_gate(entry, m.digest.as_str(), &m.media_type, &m.bytes).await
    }

    async fn check_gate(
        &self,
        entry: &crate::cache::RepoEntry,
        digest: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<()> {
        let epoch = entry.epoch.load(std::sync::atomic::Ordering::Acquire);
        // A read lock and an Arc clone per pull (no allocation, no writer unless a gate changed).
        let cached = self.gates.read().unwrap_or_else(|p| p.into_inner()).get(&entry.id).cloned();
        let gate = match cached {
            Some((at, g)) if at == epoch => g,
            _ => {
                let g = self.gate_of(entry.id).await?.map(Arc::new);
                self.gates.write().unwrap_or_else(|p| p.into_inner()).insert(entry.id, (epoch, g.clone()));
                g
            }
        };
        let Some(gate) = gate else { return Ok(()) };
        // Artifacts that are not images (signatures, SBOMs) are not scanned: not gated.
        if !media_type.contains("image.index") && !media_type.contains("manifest.list") {
            let config: Option<String> = serde_json::from_slice::<Value>(bytes)
                .ok()
                .and_then(|v| v["config"]["mediaType"].as_str().map(str::to_string));
            if !scannable(media_type, config.as_deref()) {
                return Ok(());
            }
        }
        // The last completed scan decides (a rescan in progress, or one that failed, keeps its
        // counts): a rescan neither lifts nor imposes the gate while it runs.
        let scan = self.meta.scans(entry.id, &[digest.to_string()]).await?.pop();
        let Some(counts) = scan.and_then(|s| s.counts) else {
            if gate.allow_unscanned {
                return Ok(());
            }
            return Err(Error::PullGated(format!(
                "image {digest} has not been scanned, and the repository's pull gate refuses unscanned images \
                 (scan it with StartImageScan; {BYPASS_PULL_GATE} pulls it anyway)"
            )));
        };
        let Ok(counts) = serde_json::from_str::<BTreeMap<String, u64>>(&counts) else {
            return Err(Error::Internal(format!("the scan counts of {digest} do not parse")));
        };
        let limit = SEVERITIES.iter().position(|s| *s == gate.severity).unwrap_or(SEVERITIES.len());
        let blocking: Vec<String> = SEVERITIES[..=limit.min(SEVERITIES.len() - 1)]
            .iter()
            .filter_map(|s| counts.get(*s).filter(|n| **n > 0).map(|n| format!("{s}: {n}")))
            .collect();
        if blocking.is_empty() {
            return Ok(());
        }
        Err(Error::PullGated(format!(
            "image {digest} has findings at or above {} ({}), and the repository's pull gate refuses it \
             ({BYPASS_PULL_GATE} pulls it anyway)",
            gate.severity,
            blocking.join(", ")
        )))
    }
}
