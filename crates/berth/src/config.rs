//! Configuration: defaults, then the TOML file, then `BERTH_*` environment variables, then flags.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the keys of one OIDC issuer come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderKeys {
    /// The issuer URL (`https://...`), as tokens name it in `iss`.
    pub url: String,
    /// A JWK Set (`{"keys":[...]}`) file.
    pub jwks_file: PathBuf,
}

/// `[replication]` settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationSettings {
    /// Peer deployments replication may send to: `[[replication.peers]]` with `region`,
    /// `endpoint`, `access_key_id`, `secret_access_key` and optionally `ca_file`. A replication
    /// destination naming a peer's region goes to that peer. Secrets are not printed by
    /// `berth config`.
    pub peers: Vec<berth_registry::replication::PeerConfig>,
}

/// Effective configuration. Every key can be set in the file, or as `BERTH_<KEY>` in the
/// environment (upper case).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listen address.
    pub listen: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` overrides.
    pub log: String,
    /// Idle upload sessions are removed after this many seconds.
    pub upload_ttl_secs: u64,
    /// On SIGTERM/SIGINT, in-flight requests get this many seconds to finish.
    pub shutdown_timeout_secs: u64,
    /// Account id of the default account, created on first start (random when unset).
    pub account_id: Option<String>,
    /// Regions this deployment hosts; the first is the data plane's (`BERTH_REGIONS=a,b`).
    pub regions: Vec<String>,
    /// Server key (hex, at least 32 bytes): seals stored secrets and signs registry tokens.
    /// Every node of a deployment needs the same one. Unset: generated once into
    /// `<data_dir>/server.key`. Not printed by `berth config`.
    #[serde(skip_serializing)]
    pub server_key: Option<String>,
    /// Pushes to a repository that does not exist create it (like an ECR repository creation
    /// template applied for CREATE_ON_PUSH). Off: such pushes fail with NAME_UNKNOWN.
    pub create_on_push: bool,
    /// Registry domain: hosts `<account>.dkr.ecr.<region>.<domain>` address each account's
    /// registry per region on the data plane, and repository URIs use them.
    pub registry_domain: Option<String>,
    /// Behind a proxy that sets `X-Forwarded-For` / `X-Forwarded-Proto` (and overwrites what
    /// clients send): policies see the forwarded client address and scheme (`aws:SourceIp`,
    /// `aws:SecureTransport`). Off: the TCP peer, and `aws:SecureTransport` false.
    pub trust_forwarded: bool,
    /// Metadata database: unset for SQLite in the data dir, or a `postgres://` URL (several
    /// stateless nodes can share it). Not printed by `berth config` (it may hold a password).
    #[serde(skip_serializing)]
    pub metadata: Option<String>,
    /// This node's id for background-job leases; must differ between the nodes sharing a
    /// metadata database. Random at each start when unset.
    pub node_id: Option<String>,
    /// A claimed background job belongs to its node this long unless renewed; a node that dies
    /// holding one delays it by at most this.
    pub job_lease_ms: u64,
    /// How often a node renews the lease of a job it runs (less than `job_lease_ms`).
    pub job_renew_ms: u64,
    /// How often an idle node looks for due jobs.
    pub job_poll_ms: u64,
    /// Background jobs one node runs at once.
    pub job_workers: u64,
    /// Done jobs are deleted after this many days (failed ones are kept).
    pub job_retention_days: u64,
    /// Image replications one node runs at once (a runner of their own, so that a large copy
    /// never waits behind other background jobs or blocks them).
    pub replication_workers: u64,
    /// Replication settings: `[[replication.peers]]`.
    pub replication: ReplicationSettings,
    /// Blob storage: unset (or a directory path) for the filesystem store under `data_dir`, or
    /// `s3://bucket/prefix` for an S3-compatible bucket shared by every node.
    pub storage: Option<String>,
    /// Archive storage: where the bytes of archived images go (ECR's archive storage class),
    /// `s3://bucket/prefix` (same endpoint and credentials as `storage`) or a directory. Unset:
    /// archived images keep their bytes in `storage` (archiving then only stops their pulls).
    pub archive_storage: Option<String>,
    /// With an S3 `archive_storage`, the S3 storage class its objects are written with
    /// (default `GLACIER_IR`; only classes readable without a restore request).
    pub archive_s3_storage_class: Option<String>,
    /// Endpoint URL of an S3-compatible server (path-style addressing); unset for AWS S3.
    pub s3_endpoint: Option<String>,
    /// Region to sign S3 requests for (default: `AWS_REGION`, else `us-east-1`).
    pub s3_region: Option<String>,
    /// S3 access key id; unset: the standard AWS credential chain (environment, profile, IMDS).
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key. Not printed by `berth config`.
    #[serde(skip_serializing)]
    pub s3_secret_access_key: Option<String>,
    /// With S3 storage, blob `GET`s redirect (307) to a presigned bucket URL instead of
    /// streaming through Berth; clients must reach the S3 endpoint.
    pub s3_redirect: bool,
    /// Once the first byte of a request head arrived, the head must arrive within this many
    /// seconds, or the connection is closed.
    pub header_timeout_secs: u64,
    /// A keep-alive connection with no request in flight is closed after this many seconds
    /// without a byte (longer than Go clients' 90 s, so that they close first).
    pub idle_timeout_secs: u64,
    /// A request body that pauses for this many seconds between two chunks fails.
    pub body_timeout_secs: u64,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: u64,
    /// `/readyz` answers 503 when the filesystem storage has less free space than this (MiB).
    pub min_free_mb: u64,
    /// Events older than this many days are deleted from the event log once every consumer
    /// has handled them (finished webhook deliveries too).
    pub event_retention_days: u64,
    /// Attempts per webhook delivery before it is dead-lettered.
    pub webhook_max_attempts: u64,
    /// Retry delay after a webhook delivery's first failed attempt (doubles per attempt, up to
    /// 10 minutes).
    pub webhook_backoff_ms: u64,
    /// Timeout of one webhook delivery attempt (connect and answer).
    pub webhook_timeout_secs: u64,
    /// Log lines as `text` (human-readable) or `json` (one object per line).
    pub log_format: String,
    /// A second listener (`HOST:PORT`) for `/metrics`, `/healthz` and `/readyz`; when set, the
    /// main listener no longer serves them. Unset: the main listener does.
    pub admin_listen: Option<String>,
    /// Distinct repositories that get their own push/pull count series in `/metrics`; the
    /// rest are counted under `repository="_other"` (bounds the label cardinality).
    pub metrics_repository_labels: u64,
    /// Audit records older than this many days are deleted (hourly).
    pub audit_retention_days: u64,
    /// Also append every audit record's CloudTrail JSON as one line to this file (created
    /// owner-only); unset: the database only.
    pub audit_log_file: Option<PathBuf>,
    /// Record data-plane reads (pulls: manifest and blob GET/HEAD, listings) in the audit
    /// trail, as ECR records pulls. Off: data-plane writes and every control-plane call only
    /// (for pull rates above what the trail can write; see BENCHMARKS.md).
    pub audit_data_plane_reads: bool,
    /// How often every repository's lifecycle policy is applied (seconds; once per period
    /// across all nodes). ECR applies policies within 24 hours.
    pub lifecycle_interval_secs: u64,
    /// How often garbage collection runs (seconds; one pass per period across all nodes).
    pub gc_interval_secs: u64,
    /// Garbage collection's grace period (seconds): a repository link must be this old, and a
    /// blob must have been found unlinked this long ago, before its bytes are deleted.
    pub gc_grace_secs: u64,
    /// Garbage collection's deletion lease (seconds): a pass deletes a blob's bytes only within
    /// this long of taking it; a deletion left for twice this long (its process died) is
    /// finished by the next pass or by an upload of the same digest.
    pub gc_lease_secs: u64,
    /// How often a garbage collection pass also lists the whole store for bytes that no
    /// metadata knows (seconds; once per period across all nodes).
    pub gc_sweep_interval_secs: u64,
    /// StartImageScan scans one image at most once per this many seconds (ECR: once per 24 h).
    pub scan_interval_secs: u64,
    /// Each completed scan also pushes a CycloneDX SBOM of the image as an OCI referrer artifact
    /// into its repository (off by default: the artifact then shows in the repository's image
    /// listings, which ECR's own scanning never adds).
    pub scan_sbom_referrers: bool,
    /// OIDC identity providers whose keys (JWKS) Berth reads from a file instead of fetching
    /// them from the issuer's discovery document over HTTPS (offline deployments, tests):
    /// `[[oidc_providers]]` with `url = "https://token.actions.githubusercontent.com"` and
    /// `jwks_file = "..."`; `BERTH_OIDC_JWKS_FILES="<url>=<file>,..."`. The providers themselves
    /// are registered through IAM (CreateOpenIDConnectProvider).
    pub oidc_providers: Vec<OidcProviderKeys>,
    /// Extra PEM certificates trusted when fetching OIDC discovery documents and JWKS over HTTPS
    /// (an issuer behind a private CA).
    pub oidc_ca_file: Option<PathBuf>,
    /// Serve TLS with this PEM certificate chain (and `tls_key`); the files are re-read when
    /// they change, so a renewal needs no restart.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Serve TLS with a certificate of a CA Berth makes in `<data_dir>/tls/` (kept across
    /// restarts), for localhost, 127.0.0.1, the listen address and the registry domain's hosts.
    pub tls_self_signed: bool,
    /// Ask clients for a certificate that chains to these PEM CA certificates (mutual TLS);
    /// clients without one cannot connect.
    pub tls_client_ca: Option<PathBuf>,
    /// The master key (64 hex digits) sealing every KMS key and the data keys of encrypted
    /// blobs. Unset: `<data_dir>/master.key`, generated (owner-only) on the first start. A
    /// missing or different key never replaces the one the metadata database was set up with:
    /// the server refuses to start.
    pub master_key_file: Option<PathBuf>,
    /// Encrypt blobs at rest (the default). `false` only to measure what encryption costs: a
    /// data dir is never switched between the two (the server refuses to start).
    pub encrypt_at_rest: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:5000".into(),
            data_dir: PathBuf::from("./berth-data"),
            log: "info".into(),
            upload_ttl_secs: 24 * 3600,
            shutdown_timeout_secs: 30,
            account_id: None,
            regions: vec!["us-east-1".into()],
            server_key: None,
            create_on_push: false,
            registry_domain: None,
            trust_forwarded: false,
            metadata: None,
            node_id: None,
            job_lease_ms: 30_000,
            job_renew_ms: 10_000,
            job_poll_ms: 1_000,
            job_workers: 1,
            job_retention_days: 7,
            replication_workers: 4,
            replication: ReplicationSettings::default(),
            storage: None,
            archive_storage: None,
            archive_s3_storage_class: None,
            s3_endpoint: None,
            s3_region: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_redirect: false,
            header_timeout_secs: 30,
            idle_timeout_secs: 95,
            body_timeout_secs: 300,
            max_connections: 8192,
            min_free_mb: 64,
            event_retention_days: 7,
            webhook_max_attempts: 10,
            webhook_backoff_ms: 1_000,
            webhook_timeout_secs: 10,
            log_format: "text".into(),
            admin_listen: None,
            metrics_repository_labels: 1000,
            audit_retention_days: 90,
            audit_log_file: None,
            audit_data_plane_reads: true,
            lifecycle_interval_secs: 3600,
            gc_interval_secs: 3600,
            gc_grace_secs: 3600,
            gc_lease_secs: 120,
            gc_sweep_interval_secs: 86_400,
            scan_interval_secs: 86_400,
            scan_sbom_referrers: false,
            oidc_providers: Vec::new(),
            oidc_ca_file: None,
            tls_cert: None,
            tls_key: None,
            tls_self_signed: false,
            tls_client_ca: None,
            master_key_file: None,
            encrypt_at_rest: true,
        }
    }
}

impl Config {
    /// The archive location is a bucket or a directory other than the blob store's, and a
    /// storage class is only given for an S3 archive (and is one Berth can read back at once).
    pub fn check_archive_storage(&self) -> anyhow::Result<()> {
        let Some(archive) = self.archive_storage.as_deref() else {
            anyhow::ensure!(
                self.archive_s3_storage_class.is_none(),
                "archive_s3_storage_class (BERTH_ARCHIVE_S3_STORAGE_CLASS) needs an S3 archive_storage"
            );
            return Ok(());
        };
        let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
        let storage = self.storage.clone().unwrap_or_else(|| self.data_dir.display().to_string());
        anyhow::ensure!(
            !same(archive, &storage),
            "archive_storage (BERTH_ARCHIVE_STORAGE) must be another location than storage, got '{archive}' for both"
        );
        if archive.starts_with("s3://") {
            berth_storage::s3::S3Config::from_url(archive)
                .map_err(|e| anyhow::anyhow!("archive_storage (BERTH_ARCHIVE_STORAGE): {e}"))?;
            if let Some(c) = &self.archive_s3_storage_class {
                anyhow::ensure!(
                    berth_storage::s3::READABLE_CLASSES.contains(&c.as_str()),
                    "archive_s3_storage_class (BERTH_ARCHIVE_S3_STORAGE_CLASS) must be one of {} (objects Berth can \
                     read back without a restore request), got '{c}'",
                    berth_storage::s3::READABLE_CLASSES.join(", ")
                );
            }
        } else {
            anyhow::ensure!(
                !archive.contains("://"),
                "archive_storage (BERTH_ARCHIVE_STORAGE) must be s3://bucket/prefix or a directory, got '{archive}'"
            );
            anyhow::ensure!(
                self.archive_s3_storage_class.is_none(),
                "archive_s3_storage_class (BERTH_ARCHIVE_S3_STORAGE_CLASS) needs an S3 archive_storage, not a directory"
            );
        }
        Ok(())
    }

    /// How webhooks are delivered.
    pub fn webhook_settings(&self) -> berth_events::webhooks::Settings {
        use std::time::Duration;
        berth_events::webhooks::Settings {
            max_attempts: self.webhook_max_attempts as u32,
            backoff_base: Duration::from_millis(self.webhook_backoff_ms),
            timeout: Duration::from_secs(self.webhook_timeout_secs),
            // A node that dies holding a webhook hands it over as it hands over its jobs.
            lease: Duration::from_millis(self.job_lease_ms),
            ..Default::default()
        }
    }

    /// How the audit sink batches, and its optional JSON-lines copy.
    pub fn audit_settings(&self) -> berth_events::audit::SinkSettings {
        berth_events::audit::SinkSettings { log_file: self.audit_log_file.clone(), ..Default::default() }
    }

    /// The HTTP connection limits.
    pub fn conn_limits(&self) -> berth_server::ConnLimits {
        use std::time::Duration;
        berth_server::ConnLimits {
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            body_timeout: Duration::from_secs(self.body_timeout_secs),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            ..Default::default()
        }
    }

    /// `listen` must be `HOST:PORT`.
    pub fn check_listen(&self) -> anyhow::Result<()> {
        match self.listen.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
            _ => anyhow::bail!("BERTH_LISTEN (listen, serve --listen): expected HOST:PORT, got '{}'", self.listen),
        }
    }

    /// `admin_listen`, when set, must be `HOST:PORT` and differ from `listen`.
    pub fn check_admin_listen(&self) -> anyhow::Result<()> {
        let Some(a) = &self.admin_listen else { return Ok(()) };
        match a.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => {
                anyhow::bail!("BERTH_ADMIN_LISTEN (admin_listen, serve --admin-listen): expected HOST:PORT, got '{a}'")
            }
        }
        anyhow::ensure!(
            *a != self.listen || a.ends_with(":0"),
            "admin_listen must differ from listen (both are '{a}')"
        );
        Ok(())
    }

    /// Defaults, overridden by `file` (if any), overridden by the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut cfg = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("reading config {}", p.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing config {}", p.display()))?
            }
            None => Config::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        let num = |k: &str, v: String| v.parse::<u64>().with_context(|| format!("{k} must be a number, got '{v}'"));
        if let Some(v) = get("BERTH_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = get("BERTH_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = get("BERTH_LOG") {
            self.log = v;
        }
        if let Some(v) = get("BERTH_UPLOAD_TTL_SECS") {
            self.upload_ttl_secs = num("BERTH_UPLOAD_TTL_SECS", v)?;
        }
        if let Some(v) = get("BERTH_SHUTDOWN_TIMEOUT_SECS") {
            self.shutdown_timeout_secs = num("BERTH_SHUTDOWN_TIMEOUT_SECS", v)?;
        }
        if let Some(v) = get("BERTH_ACCOUNT_ID") {
            self.account_id = Some(v);
        }
        if let Some(v) = get("BERTH_REGIONS") {
            self.regions = v.split(',').map(|r| r.trim().to_string()).filter(|r| !r.is_empty()).collect();
        }
        if let Some(v) = get("BERTH_CREATE_ON_PUSH") {
            self.create_on_push = parse_bool("BERTH_CREATE_ON_PUSH", &v)?;
        }
        if let Some(v) = get("BERTH_TRUST_FORWARDED") {
            self.trust_forwarded = match v.as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" | "" => false,
                _ => anyhow::bail!("BERTH_TRUST_FORWARDED must be true or false, got '{v}'"),
            };
        }
        if let Some(v) = get("BERTH_REGISTRY_DOMAIN") {
            self.registry_domain = Some(v).filter(|d| !d.is_empty());
        }
        if let Some(v) = get("BERTH_METADATA") {
            self.metadata = Some(v).filter(|m| !m.is_empty());
        }
        let opt = |v: String| Some(v).filter(|v| !v.is_empty());
        if let Some(v) = get("BERTH_STORAGE") {
            self.storage = opt(v);
        }
        if let Some(v) = get("BERTH_ARCHIVE_STORAGE") {
            self.archive_storage = opt(v);
        }
        if let Some(v) = get("BERTH_ARCHIVE_S3_STORAGE_CLASS") {
            self.archive_s3_storage_class = opt(v);
        }
        if let Some(v) = get("BERTH_S3_ENDPOINT") {
            self.s3_endpoint = opt(v);
        }
        if let Some(v) = get("BERTH_S3_REGION") {
            self.s3_region = opt(v);
        }
        if let Some(v) = get("BERTH_S3_ACCESS_KEY_ID") {
            self.s3_access_key_id = opt(v);
        }
        if let Some(v) = get("BERTH_S3_SECRET_ACCESS_KEY") {
            self.s3_secret_access_key = opt(v);
        }
        if let Some(v) = get("BERTH_S3_REDIRECT") {
            self.s3_redirect = parse_bool("BERTH_S3_REDIRECT", &v)?;
        }
        if let Some(v) = get("BERTH_SERVER_KEY") {
            self.server_key = Some(v);
        }
        if let Some(v) = get("BERTH_LOG_FORMAT") {
            self.log_format = v;
        }
        if let Some(v) = get("BERTH_ADMIN_LISTEN") {
            self.admin_listen = opt(v);
        }
        if let Some(v) = get("BERTH_SCAN_SBOM_REFERRERS") {
            self.scan_sbom_referrers = parse_bool("BERTH_SCAN_SBOM_REFERRERS", &v)?;
        }
        if let Some(v) = get("BERTH_AUDIT_DATA_PLANE_READS") {
            self.audit_data_plane_reads = parse_bool("BERTH_AUDIT_DATA_PLANE_READS", &v)?;
        }
        if let Some(v) = get("BERTH_AUDIT_LOG_FILE") {
            self.audit_log_file = opt(v).map(PathBuf::from);
        }
        if let Some(v) = get("BERTH_OIDC_JWKS_FILES") {
            self.oidc_providers = parse_jwks_files(&v)?;
        }
        for (key, field) in [
            ("BERTH_TLS_CERT", &mut self.tls_cert),
            ("BERTH_TLS_KEY", &mut self.tls_key),
            ("BERTH_TLS_CLIENT_CA", &mut self.tls_client_ca),
            ("BERTH_MASTER_KEY_FILE", &mut self.master_key_file),
        ] {
            if let Some(v) = get(key) {
                *field = opt(v).map(PathBuf::from);
            }
        }
        if let Some(v) = get("BERTH_ENCRYPT_AT_REST") {
            self.encrypt_at_rest = parse_bool("BERTH_ENCRYPT_AT_REST", &v)?;
        }
        if let Some(v) = get("BERTH_TLS_SELF_SIGNED") {
            self.tls_self_signed = parse_bool("BERTH_TLS_SELF_SIGNED", &v)?;
        }
        if let Some(v) = get("BERTH_OIDC_CA_FILE") {
            self.oidc_ca_file = opt(v).map(PathBuf::from);
        }
        for p in &self.oidc_providers {
            anyhow::ensure!(
                p.url.starts_with("https://"),
                "oidc_providers: the url must start with https:// (an OIDC issuer), got '{}'",
                p.url
            );
        }
        if let Some(v) = get("BERTH_NODE_ID") {
            self.node_id = Some(v).filter(|n| !n.is_empty());
        }
        for (key, field) in [
            ("BERTH_JOB_LEASE_MS", &mut self.job_lease_ms),
            ("BERTH_JOB_RENEW_MS", &mut self.job_renew_ms),
            ("BERTH_JOB_POLL_MS", &mut self.job_poll_ms),
            ("BERTH_JOB_WORKERS", &mut self.job_workers),
            ("BERTH_JOB_RETENTION_DAYS", &mut self.job_retention_days),
            ("BERTH_REPLICATION_WORKERS", &mut self.replication_workers),
            ("BERTH_HEADER_TIMEOUT_SECS", &mut self.header_timeout_secs),
            ("BERTH_IDLE_TIMEOUT_SECS", &mut self.idle_timeout_secs),
            ("BERTH_BODY_TIMEOUT_SECS", &mut self.body_timeout_secs),
            ("BERTH_MAX_CONNECTIONS", &mut self.max_connections),
            ("BERTH_MIN_FREE_MB", &mut self.min_free_mb),
            ("BERTH_EVENT_RETENTION_DAYS", &mut self.event_retention_days),
            ("BERTH_WEBHOOK_MAX_ATTEMPTS", &mut self.webhook_max_attempts),
            ("BERTH_WEBHOOK_BACKOFF_MS", &mut self.webhook_backoff_ms),
            ("BERTH_WEBHOOK_TIMEOUT_SECS", &mut self.webhook_timeout_secs),
            ("BERTH_METRICS_REPOSITORY_LABELS", &mut self.metrics_repository_labels),
            ("BERTH_AUDIT_RETENTION_DAYS", &mut self.audit_retention_days),
            ("BERTH_LIFECYCLE_INTERVAL_SECS", &mut self.lifecycle_interval_secs),
            ("BERTH_GC_INTERVAL_SECS", &mut self.gc_interval_secs),
            ("BERTH_GC_GRACE_SECS", &mut self.gc_grace_secs),
            ("BERTH_GC_LEASE_SECS", &mut self.gc_lease_secs),
            ("BERTH_GC_SWEEP_INTERVAL_SECS", &mut self.gc_sweep_interval_secs),
            ("BERTH_SCAN_INTERVAL_SECS", &mut self.scan_interval_secs),
        ] {
            if let Some(v) = get(key) {
                *field = num(key, v)?;
            }
        }
        if self.job_renew_ms == 0 || self.job_renew_ms >= self.job_lease_ms {
            anyhow::bail!("job_renew_ms must be more than 0 and less than job_lease_ms");
        }
        for (key, v) in [
            ("header_timeout_secs", self.header_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
            ("max_connections", self.max_connections),
            ("event_retention_days", self.event_retention_days),
            ("webhook_max_attempts", self.webhook_max_attempts),
            ("webhook_backoff_ms", self.webhook_backoff_ms),
            ("webhook_timeout_secs", self.webhook_timeout_secs),
            ("audit_retention_days", self.audit_retention_days),
            ("lifecycle_interval_secs", self.lifecycle_interval_secs),
            ("gc_interval_secs", self.gc_interval_secs),
            ("gc_lease_secs", self.gc_lease_secs),
            ("gc_sweep_interval_secs", self.gc_sweep_interval_secs),
        ] {
            if v == 0 {
                anyhow::bail!("{key} (BERTH_{}) must be more than 0", key.to_uppercase());
            }
        }
        anyhow::ensure!(
            self.webhook_max_attempts <= 100,
            "webhook_max_attempts (BERTH_WEBHOOK_MAX_ATTEMPTS) must be at most 100"
        );
        anyhow::ensure!(
            self.webhook_timeout_secs <= 300,
            "webhook_timeout_secs (BERTH_WEBHOOK_TIMEOUT_SECS) must be at most 300"
        );
        anyhow::ensure!(
            self.gc_interval_secs <= 7 * 86_400,
            "gc_interval_secs (BERTH_GC_INTERVAL_SECS) must be at most 604800 (a week)"
        );
        anyhow::ensure!(
            self.gc_grace_secs <= 30 * 86_400,
            "gc_grace_secs (BERTH_GC_GRACE_SECS) must be at most 2592000 (30 days)"
        );
        anyhow::ensure!(
            self.gc_lease_secs <= 3600,
            "gc_lease_secs (BERTH_GC_LEASE_SECS) must be at most 3600 (an hour)"
        );
        anyhow::ensure!(
            self.gc_sweep_interval_secs <= 30 * 86_400,
            "gc_sweep_interval_secs (BERTH_GC_SWEEP_INTERVAL_SECS) must be at most 2592000 (30 days)"
        );
        anyhow::ensure!(
            self.lifecycle_interval_secs <= 7 * 86_400,
            "lifecycle_interval_secs (BERTH_LIFECYCLE_INTERVAL_SECS) must be at most 604800 (a week)"
        );
        anyhow::ensure!(
            self.audit_retention_days <= 36_500,
            "audit_retention_days (BERTH_AUDIT_RETENTION_DAYS) must be at most 36500"
        );
        self.check_archive_storage()?;
        if self.audit_log_file.as_ref().is_some_and(|p| p.as_os_str().is_empty() || p.is_dir()) {
            anyhow::bail!("audit_log_file (BERTH_AUDIT_LOG_FILE) must name a file");
        }
        self.check_listen()?;
        self.check_admin_listen()?;
        anyhow::ensure!(
            self.metrics_repository_labels <= 100_000,
            "metrics_repository_labels (BERTH_METRICS_REPOSITORY_LABELS) must be at most 100000"
        );
        anyhow::ensure!(
            matches!(self.log_format.as_str(), "text" | "json"),
            "log_format (BERTH_LOG_FORMAT) must be \"text\" or \"json\", got '{}'",
            self.log_format
        );
        if let Some(k) = &self.server_key {
            parse_server_key(k)?;
        }
        anyhow::ensure!(
            !(self.s3_redirect && self.encrypt_at_rest),
            "s3_redirect (BERTH_S3_REDIRECT) serves blobs straight from the bucket, which cannot decrypt them: it \
             needs encrypt_at_rest = false (BERTH_ENCRYPT_AT_REST=false), with the bucket's own encryption instead"
        );
        if let Some(id) = &self.account_id {
            anyhow::ensure!(
                berth_registry::valid_account_id(id),
                "BERTH_ACCOUNT_ID (account_id): expected 12 digits, got '{id}'"
            );
        }
        let root_key = |k: &str| get(k).filter(|v| !v.is_empty()).is_some();
        match (root_key("BERTH_ROOT_ACCESS_KEY_ID"), root_key("BERTH_ROOT_SECRET_ACCESS_KEY")) {
            (true, false) => anyhow::bail!("BERTH_ROOT_ACCESS_KEY_ID is set without BERTH_ROOT_SECRET_ACCESS_KEY"),
            (false, true) => anyhow::bail!("BERTH_ROOT_SECRET_ACCESS_KEY is set without BERTH_ROOT_ACCESS_KEY_ID"),
            _ => {}
        }
        if self.regions.is_empty() {
            anyhow::bail!("at least one region must be configured (regions / BERTH_REGIONS)");
        }
        Ok(())
    }
}

/// A configured server key: hex, at least 32 bytes.
pub fn parse_server_key(hex: &str) -> anyhow::Result<Vec<u8>> {
    let key =
        hex::decode(hex.trim()).map_err(|_| anyhow::anyhow!("BERTH_SERVER_KEY (server_key): expected hex digits"))?;
    anyhow::ensure!(key.len() >= 32, "BERTH_SERVER_KEY (server_key): expected at least 32 bytes (64 hex digits)");
    Ok(key)
}

fn parse_bool(key: &str, v: &str) -> anyhow::Result<bool> {
    Ok(match v {
        "1" | "true" | "yes" | "on" => true,
        "0" | "false" | "no" | "off" | "" => false,
        _ => anyhow::bail!("{key} must be true or false, got '{v}'"),
    })
}

/// `BERTH_OIDC_JWKS_FILES`: `<url>=<file>,<url>=<file>`.
fn parse_jwks_files(v: &str) -> anyhow::Result<Vec<OidcProviderKeys>> {
    v.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (url, file) = e
                .split_once('=')
                .with_context(|| format!("BERTH_OIDC_JWKS_FILES: expected <url>=<file>, got '{e}'"))?;
            Ok(OidcProviderKeys { url: url.trim().to_string(), jwks_file: PathBuf::from(file.trim()) })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_settings_are_layered_and_checked() {
        let c: Config = toml::from_str("audit_retention_days = 30\naudit_log_file = \"/tmp/a.jsonl\"").unwrap();
        assert_eq!((c.audit_retention_days, c.audit_log_file.as_deref()), (30, Some(Path::new("/tmp/a.jsonl"))));
        assert_eq!(Config::default().audit_retention_days, 90);
        let mut c = Config::default();
        c.apply_env(|k| (k == "BERTH_AUDIT_RETENTION_DAYS").then(|| "7".to_string())).unwrap();
        assert_eq!(c.audit_retention_days, 7);
        let err = Config::default().apply_env(|k| (k == "BERTH_AUDIT_RETENTION_DAYS").then(|| "0".to_string()));
        assert!(err.unwrap_err().to_string().contains("audit_retention_days (BERTH_AUDIT_RETENTION_DAYS)"));
        let err = Config::default().apply_env(|k| (k == "BERTH_AUDIT_LOG_FILE").then(|| "/".to_string()));
        assert!(err.unwrap_err().to_string().contains("audit_log_file"));
        let mut c = Config::default();
        c.apply_env(|k| (k == "BERTH_AUDIT_LOG_FILE").then(|| "/tmp/x.jsonl".to_string())).unwrap();
        assert_eq!(c.audit_settings().log_file.as_deref(), Some(Path::new("/tmp/x.jsonl")));
    }

    #[test]
    fn layering_and_unknown_keys() {
        let c: Config = toml::from_str("listen = \"0.0.0.0:1\"\nupload_ttl_secs = 5").unwrap();
        assert_eq!(c.listen, "0.0.0.0:1");
        assert_eq!(c.data_dir, PathBuf::from("./berth-data"));
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
        let mut c = Config::default();
        c.apply_env(|k| (k == "BERTH_UPLOAD_TTL_SECS").then(|| "7".to_string())).unwrap();
        assert_eq!(c.upload_ttl_secs, 7);
        assert!(c.apply_env(|k| (k == "BERTH_UPLOAD_TTL_SECS").then(|| "x".to_string())).is_err());
        let mut c: Config = toml::from_str("storage = \"s3://b/p\"\ns3_region = \"eu-west-1\"").unwrap();
        c.apply_env(|k| (k == "BERTH_S3_ENDPOINT").then(|| "http://127.0.0.1:9".to_string())).unwrap();
        assert_eq!(c.storage.as_deref(), Some("s3://b/p"));
        assert_eq!(c.s3_region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.s3_endpoint.as_deref(), Some("http://127.0.0.1:9"));
        c.s3_secret_access_key = Some("hunter2".into());
        assert!(!toml::to_string(&c).unwrap().contains("hunter2"));
    }

    proptest::proptest! {
        /// No configuration text, and no environment value, panics the loader: it is either a
        /// configuration or an error naming what is wrong.
        #[test]
        fn any_toml_or_env_is_a_config_or_an_error(
            text in "\\PC{0,200}",
            key in proptest::sample::select(vec![
                "listen", "upload_ttl_secs", "regions", "account_id", "server_key", "storage", "archive_storage",
                "header_timeout_secs", "max_connections", "registry_domain", "job_lease_ms",
            ]),
            value in "[ -~]{0,40}",
        ) {
            let _ = toml::from_str::<Config>(&text);
            let _ = toml::from_str::<Config>(&format!("{key} = {value}"));
            let mut c = Config::default();
            let env_key = format!("BERTH_{}", key.to_uppercase());
            let _ = c.apply_env(|k| (k == env_key).then(|| value.clone()));
        }
    }

    #[test]
    fn jwks_files_from_the_environment() {
        let v = parse_jwks_files("https://a.example.com=/x/a.json, https://b.example.com/oidc=/y/b.json").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!((v[1].url.as_str(), v[1].jwks_file.to_str().unwrap()), ("https://b.example.com/oidc", "/y/b.json"));
        assert!(parse_jwks_files("https://a.example.com").is_err());
    }
}
