//! Vulnerability scanning's metadata: imported advisories (OSV records, indexed by the packages
//! they name), the imports themselves, the last scan of each image, and each registry's scanning
//! configuration. Matching and the scan itself are elsewhere (crates `berth-vulndb`,
//! `berth-scanner`, and the registry's scan job).

use crate::Result;
use async_trait::async_trait;

/// One advisory to import: its id, `modified` time, JSON body, and the (base ecosystem,
/// normalized package name) pairs it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAdvisory {
    pub id: String,
    pub modified: Option<String>,
    pub body: String,
    pub packages: Vec<(String, String)>,
}

/// A finished import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VulnImport {
    pub id: i64,
    pub source: String,
    pub records: i64,
    pub withdrawn: i64,
    pub imported_at: i64,
}

/// The last scan of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageScan {
    pub digest: String,
    /// ECR's `ScanStatus`: `IN_PROGRESS`, `COMPLETE`, `FAILED`, `UNSUPPORTED_IMAGE`, ...
    pub status: String,
    pub description: Option<String>,
    pub requested_at: i64,
    pub completed_at: Option<i64>,
    /// The time of the advisory import the scan used.
    pub source_updated_at: Option<i64>,
    /// JSON object: severity → count.
    pub counts: Option<String>,
    /// JSON array of findings.
    pub findings: Option<String>,
}

/// A scan still `IN_PROGRESS` this long after it was requested is taken to be lost (its job
/// gave up): a new request replaces it.
pub const STALE_SCAN_MS: i64 = 3_600_000;

/// What [`ScanStore::scan_request`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanRequest {
    /// The scan is recorded `IN_PROGRESS` (queue it).
    Started,
    /// The image was scanned (or asked to be) less than the minimum interval ago.
    TooSoon,
    /// The image does not exist (any more).
    NoImage,
}

/// Vulnerability scanning metadata.
#[async_trait]
pub trait ScanStore: Send + Sync + 'static {
    /// Store `advisories` (replacing earlier versions of the same ids and what they named) as
    /// part of import `import_id`, in one transaction.
    async fn vuln_put(&self, import_id: i64, advisories: &[NewAdvisory]) -> Result<()>;
    /// Start an import of `source`: its id.
    async fn vuln_import_begin(&self, source: &str, now: i64) -> Result<i64>;
    /// Record what import `id` read; it becomes the source time of later scans.
    async fn vuln_import_end(&self, id: i64, records: i64, withdrawn: i64, now: i64) -> Result<()>;
    /// The finished imports, latest first, at most `limit`; and the advisory and package counts.
    async fn vuln_status(&self, limit: u32) -> Result<(Vec<VulnImport>, i64, i64)>;
    /// The time of the last finished import.
    async fn vuln_updated_at(&self) -> Result<Option<i64>>;
    /// Advisories naming package `name` of base ecosystem `ecosystem`: (id, body).
    async fn vuln_for_package(&self, ecosystem: &str, name: &str) -> Result<Vec<(String, String)>>;
    /// Record a scan of image `digest` as requested now (`IN_PROGRESS`), unless one was
    /// requested after `not_since`, or one is in progress (requested less than
    /// [`STALE_SCAN_MS`] ago): then [`ScanRequest::TooSoon`].
    async fn scan_request(&self, repo_id: i64, digest: &str, not_since: i64, now: i64) -> Result<ScanRequest>;
    /// Record the outcome of a scan requested at `requested_at` (a later request wins: `false`)
    /// and append its "ECR Image Scan" event, in one transaction. A scan without findings
    /// (failed, unsupported) keeps the last completed scan's counts and findings, which the
    /// pull gate goes by.
    async fn scan_finish(&self, repo_id: i64, requested_at: i64, scan: &ImageScan) -> Result<bool>;
    /// The last scans of the repository's images among `digests`.
    async fn scans(&self, repo_id: i64, digests: &[String]) -> Result<Vec<ImageScan>>;
    /// A registry's scanning configuration (JSON), if set.
    async fn registry_scanning(&self, account_id: &str, region: &str) -> Result<Option<String>>;
    /// Set a registry's scanning configuration.
    async fn put_registry_scanning(&self, account_id: &str, region: &str, config: &str) -> Result<()>;
    /// Every registry scanning configuration: (account, region, JSON).
    async fn registry_scannings(&self) -> Result<Vec<(String, String, String)>>;
    /// A repository's pull gate (JSON), if set.
    async fn pull_gate(&self, repo_id: i64) -> Result<Option<String>>;
    /// Set (or, `None`, remove) a repository's pull gate, serialized with its writes (its data
    /// epoch moves, so every node's caches see the change): `false` when it does not exist.
    async fn set_pull_gate(&self, repo_id: i64, gate: Option<&str>) -> Result<bool>;
    /// Set a repository's `scanOnPush`: `false` when the repository does not exist.
    async fn set_scan_on_push(&self, repo_id: i64, on: bool) -> Result<bool>;
}

/// Implement [`ScanStore`] for `$store` on database `$db` (portable SQL).
macro_rules! portable_scan {
    ($store:ty, $db:ty) => {
        fn scan_from_row(r: &<$db as sqlx::Database>::Row) -> crate::scan::ImageScan {
            crate::scan::ImageScan {
                digest: r.get(0),
                status: r.get(1),
                description: r.get(2),
                requested_at: r.get(3),
                completed_at: r.get(4),
                source_updated_at: r.get(5),
                counts: r.get(6),
                findings: r.get(7),
            }
        }

        #[async_trait]
        impl crate::scan::ScanStore for $store {
            async fn vuln_put(&self, import_id: i64, advisories: &[crate::scan::NewAdvisory]) -> Result<()> {
                let mut tx = self.begin().await?;
                for a in advisories {
                    sqlx::query(
                        "INSERT INTO vuln_advisories (id, modified, body, import_id) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (id) DO UPDATE SET modified = excluded.modified, body = excluded.body, \
                         import_id = excluded.import_id",
                    )
                    .bind(&a.id)
                    .bind(&a.modified)
                    .bind(&a.body)
                    .bind(import_id)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("DELETE FROM vuln_affected WHERE advisory_id = $1").bind(&a.id).execute(&mut *tx).await?;
                    for (eco, name) in &a.packages {
                        sqlx::query(
                            "INSERT INTO vuln_affected (ecosystem, name, advisory_id) VALUES ($1, $2, $3) \
                             ON CONFLICT DO NOTHING",
                        )
                        .bind(eco)
                        .bind(name)
                        .bind(&a.id)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn vuln_import_begin(&self, source: &str, now: i64) -> Result<i64> {
                let r = sqlx::query(
                    "INSERT INTO vuln_imports (source, records, withdrawn, imported_at) VALUES ($1, -1, 0, $2) RETURNING id",
                )
                .bind(source)
                .bind(now)
                .fetch_one(&self.write)
                .await?;
                Ok(r.get(0))
            }

            async fn vuln_import_end(&self, id: i64, records: i64, withdrawn: i64, now: i64) -> Result<()> {
                sqlx::query("UPDATE vuln_imports SET records = $1, withdrawn = $2, imported_at = $3 WHERE id = $4")
                    .bind(records)
                    .bind(withdrawn)
                    .bind(now)
                    .bind(id)
                    .execute(&self.write)
                    .await?;
                Ok(())
            }

            async fn vuln_status(&self, limit: u32) -> Result<(Vec<crate::scan::VulnImport>, i64, i64)> {
                let rows = sqlx::query(
                    "SELECT id, source, records, withdrawn, imported_at FROM vuln_imports WHERE records >= 0 \
                     ORDER BY id DESC LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.read)
                .await?;
                let imports = rows
                    .iter()
                    .map(|r| crate::scan::VulnImport {
                        id: r.get(0),
                        source: r.get(1),
                        records: r.get(2),
                        withdrawn: r.get(3),
                        imported_at: r.get(4),
                    })
                    .collect();
                let advisories: i64 =
                    sqlx::query("SELECT COUNT(*) FROM vuln_advisories").fetch_one(&self.read).await?.get(0);
                let packages: i64 = sqlx::query("SELECT COUNT(*) FROM (SELECT DISTINCT ecosystem, name FROM vuln_affected) p")
                    .fetch_one(&self.read)
                    .await?
                    .get(0);
                Ok((imports, advisories, packages))
            }

            async fn vuln_updated_at(&self) -> Result<Option<i64>> {
                Ok(sqlx::query("SELECT MAX(imported_at) FROM vuln_imports WHERE records >= 0")
                    .fetch_one(&self.read)
                    .await?
                    .get(0))
            }

            async fn vuln_for_package(&self, ecosystem: &str, name: &str) -> Result<Vec<(String, String)>> {
                let rows = sqlx::query(
                    "SELECT a.id, a.body FROM vuln_affected p JOIN vuln_advisories a ON a.id = p.advisory_id \
                     WHERE p.ecosystem = $1 AND p.name = $2 ORDER BY a.id",
                )
                .bind(ecosystem)
                .bind(name)
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
            }

            async fn scan_request(
                &self,
                repo_id: i64,
                digest: &str,
                not_since: i64,
                now: i64,
            ) -> Result<crate::scan::ScanRequest> {
                let mut tx = self.begin().await?;
                if lock_repo(&mut tx, repo_id).await?.is_none() {
                    return Ok(crate::scan::ScanRequest::NoImage);
                }
                let exists = sqlx::query("SELECT 1 FROM manifests WHERE repo_id = $1 AND digest = $2")
                    .bind(repo_id)
                    .bind(digest)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                if !exists {
                    return Ok(crate::scan::ScanRequest::NoImage);
                }
                let n = sqlx::query(
                    "INSERT INTO image_scans (repo_id, digest, status, requested_at) VALUES ($1, $2, 'IN_PROGRESS', $3) \
                     ON CONFLICT (repo_id, digest) DO UPDATE SET status = 'IN_PROGRESS', description = NULL, \
                     requested_at = excluded.requested_at WHERE image_scans.requested_at <= $4 \
                     AND (image_scans.status <> 'IN_PROGRESS' OR image_scans.requested_at < $5)",
                )
                .bind(repo_id)
                .bind(digest)
                .bind(now)
                .bind(not_since)
                .bind(now - crate::scan::STALE_SCAN_MS)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    return Ok(crate::scan::ScanRequest::TooSoon);
                }
                tx.commit().await?;
                Ok(crate::scan::ScanRequest::Started)
            }

            async fn scan_finish(&self, repo_id: i64, requested_at: i64, s: &crate::scan::ImageScan) -> Result<bool> {
                let mut tx = self.begin().await?;
                let Some(repo) = lock_repo(&mut tx, repo_id).await? else {
                    return Ok(false);
                };
                let n = sqlx::query(
                    "UPDATE image_scans SET status = $1, description = $2, completed_at = $3, source_updated_at = $4, \
                     counts = COALESCE($5, counts), findings = COALESCE($6, findings) \
                     WHERE repo_id = $7 AND digest = $8 AND requested_at = $9",
                )
                .bind(&s.status)
                .bind(&s.description)
                .bind(s.completed_at)
                .bind(s.source_updated_at)
                .bind(&s.counts)
                .bind(&s.findings)
                .bind(repo_id)
                .bind(&s.digest)
                .bind(requested_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n != 1 {
                    return Ok(false);
                }
                // ECR's "ECR Image Scan" event, in the same transaction.
                let counts: serde_json::Value =
                    s.counts.as_deref().and_then(|c| serde_json::from_str(c).ok()).unwrap_or_else(|| serde_json::json!({}));
                let detail = serde_json::json!({
                    "scan-status": s.status,
                    "repository-name": repo.name,
                    "finding-severity-counts": counts,
                    "image-digest": s.digest,
                    "image-tags": manifest_tags(&mut tx, repo_id, &s.digest).await?,
                });
                repo_event(&mut tx, &repo, crate::events::kind::IMAGE_SCAN, &detail, s.completed_at.unwrap_or(requested_at))
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn scans(&self, repo_id: i64, digests: &[String]) -> Result<Vec<crate::scan::ImageScan>> {
                if digests.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT digest, status, description, requested_at, completed_at, source_updated_at, counts, findings \
                     FROM image_scans WHERE repo_id = ",
                );
                q.push_bind(repo_id).push(" AND digest IN (");
                let mut list = q.separated(", ");
                for d in digests {
                    list.push_bind(d.as_str());
                }
                q.push(")");
                let rows = q.build().fetch_all(&self.read).await?;
                Ok(rows.iter().map(scan_from_row).collect())
            }

            async fn registry_scanning(&self, account_id: &str, region: &str) -> Result<Option<String>> {
                Ok(sqlx::query("SELECT config FROM registry_scanning WHERE account_id = $1 AND region = $2")
                    .bind(account_id)
                    .bind(region)
                    .fetch_optional(&self.read)
                    .await?
                    .map(|r| r.get(0)))
            }

            async fn registry_scannings(&self) -> Result<Vec<(String, String, String)>> {
                let rows = sqlx::query("SELECT account_id, region, config FROM registry_scanning ORDER BY account_id, region")
                    .fetch_all(&self.read)
                    .await?;
                Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
            }

            async fn pull_gate(&self, repo_id: i64) -> Result<Option<String>> {
                Ok(sqlx::query("SELECT pull_gate FROM repositories WHERE id = $1")
                    .bind(repo_id)
                    .fetch_optional(&self.read)
                    .await?
                    .and_then(|r| r.get(0)))
            }

            async fn set_pull_gate(&self, repo_id: i64, gate: Option<&str>) -> Result<bool> {
                let mut tx = self.begin().await?;
                if touch_repo(&mut tx, repo_id).await?.is_none() {
                    return Ok(false);
                }
                sqlx::query("UPDATE repositories SET pull_gate = $1 WHERE id = $2")
                    .bind(gate)
                    .bind(repo_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn set_scan_on_push(&self, repo_id: i64, on: bool) -> Result<bool> {
                let n = sqlx::query("UPDATE repositories SET scan_on_push = $1 WHERE id = $2")
                    .bind(on)
                    .bind(repo_id)
                    .execute(&self.write)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn put_registry_scanning(&self, account_id: &str, region: &str, config: &str) -> Result<()> {
                sqlx::query(
                    "INSERT INTO registry_scanning (account_id, region, config) VALUES ($1, $2, $3) \
                     ON CONFLICT (account_id, region) DO UPDATE SET config = excluded.config",
                )
                .bind(account_id)
                .bind(region)
                .bind(config)
                .execute(&self.write)
                .await?;
                Ok(())
            }
        }
    };
}
pub(crate) use portable_scan;
