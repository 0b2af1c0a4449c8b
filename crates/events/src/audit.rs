//! The audit trail: one CloudTrail-shaped record per API call (control plane and data plane,
//! allowed or denied) and per action Berth takes itself.
//!
//! The HTTP layer describes each call as an [`ApiCall`] and hands it to an [`AuditSink`]
//! (never blocking the request); the sink batches records off the request path into the
//! metadata store, hash-chained per node, and a clean shutdown flushes it.
//!
//! **Records.** [`ApiCall::to_cloudtrail`] renders CloudTrail's record (`eventVersion` 1.08);
//! the store keeps it with the LookupEvents attributes in columns ([`AuditRecord`]).
//!
//! **Hash chains.** Each node writes its own chain (chain id = node id): record `n` carries
//! `seq = n`, `prev_hash` = the hash of record `n - 1` ([`GENESIS_HASH`] for the first) and
//! `hash` = hex SHA-256 over `prev_hash` and the record's canonical content ([`chain_hash`]).
//! [`verify`] walks every chain and names the first record that was altered, removed from the
//! middle or moved. Removing a chain's *last* records leaves a shorter chain that is still
//! consistent: that is detectable only against a head saved earlier, which is why `berth audit
//! verify` prints every chain's head (seq and hash) for operators to keep. Retention deletes
//! chain prefixes and keeps an anchor (the last deleted record's seq and hash), so what is left
//! still verifies.
//!
//! **Durability.** A record is durable once its batch commits, at most
//! [`SinkSettings::batch_interval`] (50 ms by default) after the call, or longer while the
//! database is unreachable (the sink retries with backoff, in order). A `kill -9` (or power
//! loss) therefore loses at most the records of the last batch interval, plus whatever was
//! queued while the database was failing; a clean shutdown ([`AuditSink::flush`]) loses
//! nothing.

use berth_meta::MetadataStore;
use berth_meta::audit::{AuditQuery, AuditRecord, AuditStore, ChainHead, LookupKey};
use berth_registry::Clock;
use berth_registry::jobs::JobRunner;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub use berth_meta::audit::GENESIS_HASH;

use serde_json::Value;

/// Who made a call, as CloudTrail's `userIdentity` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerIdentity {
    /// `Root` or `IAMUser` (later `AssumedRole`).
    pub kind: String,
    /// The principal's id (`AIDA...` for a user, the account id for root).
    pub principal_id: String,
    pub arn: String,
    pub account_id: String,
    pub access_key_id: String,
    /// The user's name (`None` for root).
    pub user_name: Option<String>,
}

/// One API call, as the HTTP layer saw it. Never holds a secret or a token.
#[derive(Debug, Clone, Default)]
pub struct ApiCall {
    /// Epoch milliseconds at which the request arrived.
    pub event_time: i64,
    /// `ecr.amazonaws.com`, `iam.amazonaws.com`, `sts.amazonaws.com`, ...
    pub event_source: String,
    /// The operation: `PutImage`, `CreateUser`, data-plane calls as ECR names them
    /// (`BatchGetImage`, `GetDownloadUrlForLayer`, `InitiateLayerUpload`, `UploadLayerPart`,
    /// `CompleteLayerUpload`, `PutImage`, `BatchCheckLayerAvailability`, `BatchDeleteImage`).
    pub event_name: String,
    pub aws_region: String,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    /// `None` for an anonymous caller (or a request whose credentials were refused).
    pub identity: Option<CallerIdentity>,
    /// The request's parameters (`null` when none), secrets removed.
    pub request_parameters: Value,
    /// What the call returned that CloudTrail shows (`null` for reads and failures).
    pub response_elements: Value,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The id every response and log line of the request carries.
    pub request_id: String,
    pub read_only: bool,
    /// `(type, ARN)`, e.g. `("AWS::ECR::Repository", "arn:aws:ecr:us-east-1:1111:repository/app")`.
    pub resources: Vec<(String, String)>,
    /// The account whose resources the call touched (the caller's when none).
    pub recipient_account_id: String,
    /// `AwsApiCall` for API calls, `AwsServiceEvent` for actions Berth takes itself.
    pub event_type: String,
    /// Who took an action Berth takes itself (`AWS Internal`, as CloudTrail names the service),
    /// shown as `userIdentity.invokedBy` when there is no caller.
    pub invoked_by: Option<String>,
    /// `serviceEventDetails` of an `AwsServiceEvent`.
    pub service_event_details: Option<Value>,
}

/// CloudTrail's `userIdentity` of an unauthenticated caller (as it records anonymous requests).
const ANONYMOUS_PRINCIPAL: &str = "ANONYMOUS_PRINCIPAL";

impl ApiCall {
    /// The record exactly as CloudTrail writes it, with `eventID` = `event_id`: `eventVersion`
    /// "1.08", `userIdentity` (`type`, `principalId`, `arn`, `accountId`, `accessKeyId` when a
    /// key signed the call, `userName` for IAM users; an anonymous caller is CloudTrail's
    /// `{"type": "AWSAccount", "principalId": "", "accountId": "ANONYMOUS_PRINCIPAL"}`),
    /// `eventTime` (`YYYY-MM-DDTHH:MM:SSZ`), `eventSource`, `eventName`, `awsRegion`,
    /// `sourceIPAddress` and `userAgent` (the event source when unknown, as CloudTrail shows
    /// calls made by a service), `errorCode`/`errorMessage` only for failed calls,
    /// `requestParameters`, `responseElements`, `requestID`, `eventID`, `readOnly`,
    /// `resources` (`ARN`, `accountId`, `type`; absent when none), `eventType` (`AwsApiCall`
    /// unless set), `managementEvent` true, `recipientAccountId`, `eventCategory` "Management".
    pub fn to_cloudtrail(&self, event_id: &str) -> serde_json::Value {
        let identity = match &self.identity {
            Some(id) => {
                let mut v = json!({
                    "type": id.kind,
                    "principalId": id.principal_id,
                    "arn": id.arn,
                    "accountId": id.account_id,
                });
                if !id.access_key_id.is_empty() {
                    v["accessKeyId"] = json!(id.access_key_id);
                }
                if id.kind == "IAMUser"
                    && let Some(n) = &id.user_name
                {
                    v["userName"] = json!(n);
                }
                v
            }
            None => match &self.invoked_by {
                Some(by) => json!({"accountId": self.recipient_account_id, "invokedBy": by}),
                None => json!({"type": "AWSAccount", "principalId": "", "accountId": ANONYMOUS_PRINCIPAL}),
            },
        };
        let origin = self.invoked_by.as_deref().unwrap_or(&self.event_source);
        let mut r = json!({
            "eventVersion": "1.08",
            "userIdentity": identity,
            "eventTime": berth_registry::iso8601(self.event_time),
            "eventSource": self.event_source,
            "eventName": self.event_name,
            "awsRegion": self.aws_region,
            "sourceIPAddress": self.source_ip.as_deref().unwrap_or(origin),
            "userAgent": self.user_agent.as_deref().unwrap_or(origin),
        });
        if let Some(code) = &self.error_code {
            r["errorCode"] = json!(code);
            r["errorMessage"] = json!(self.error_message.as_deref().unwrap_or(""));
        }
        r["requestParameters"] = self.request_parameters.clone();
        r["responseElements"] = self.response_elements.clone();
        r["requestID"] = json!(self.request_id);
        r["eventID"] = json!(event_id);
        r["readOnly"] = json!(self.read_only);
        if !self.resources.is_empty() {
            r["resources"] = self
                .resources
                .iter()
                .map(|(kind, arn)| {
                    let account = arn.split(':').nth(4).filter(|a| !a.is_empty()).unwrap_or(&self.recipient_account_id);
                    json!({"ARN": arn, "accountId": account, "type": kind})
                })
                .collect();
        }
        r["eventType"] = json!(if self.event_type.is_empty() { "AwsApiCall" } else { &self.event_type });
        if let Some(d) = &self.service_event_details {
            r["serviceEventDetails"] = d.clone();
        }
        r["managementEvent"] = json!(true);
        r["recipientAccountId"] = json!(self.recipient_account_id);
        r["eventCategory"] = json!("Management");
        r
    }

    /// `Username` as LookupEvents shows it: the IAM user's name, `root` for an account's root,
    /// none for an anonymous caller.
    pub fn username(&self) -> Option<String> {
        let id = self.identity.as_ref()?;
        match (id.kind.as_str(), &id.user_name) {
            ("Root", _) => Some("root".into()),
            (_, Some(n)) => Some(n.clone()),
            _ => None,
        }
    }

    /// The stored record of this call as record `seq` of `chain` after `prev_hash`.
    pub fn to_record(&self, event_id: &str, chain: &str, seq: i64, prev_hash: &str) -> AuditRecord {
        let first = self.resources.first();
        let mut r = AuditRecord {
            id: 0,
            chain: chain.to_string(),
            seq,
            event_id: event_id.to_string(),
            event_time: self.event_time,
            account: self.recipient_account_id.clone(),
            event_name: self.event_name.clone(),
            event_source: self.event_source.clone(),
            read_only: self.read_only,
            username: self.username(),
            access_key_id: self.identity.as_ref().map(|i| i.access_key_id.clone()).filter(|k| !k.is_empty()),
            resource_type: first.map(|(t, _)| t.clone()),
            resource_name: first.map(|(_, a)| a.clone()),
            event_json: self.to_cloudtrail(event_id).to_string(),
            prev_hash: prev_hash.to_string(),
            hash: String::new(),
        };
        r.hash = chain_hash(&r);
        r
    }
}

/// The hash a record must carry: hex SHA-256 over `prev_hash`, a newline, and the canonical
/// content: `chain`, `seq`, `event_id`, `event_time`, `account`, `event_name`, `event_source`,
/// `read_only`, `username`, `access_key_id`, `resource_type`, `resource_name`, `event_json`,
/// each as `s<byte length>:<bytes>` (`n` for an absent value), so no two different records
/// encode alike. `id` (a storage detail) and `hash` itself are not covered.
pub fn chain_hash(r: &AuditRecord) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(r.prev_hash.as_bytes());
    ctx.update(b"\n");
    let mut field = |v: Option<&str>| match v {
        Some(s) => {
            ctx.update(format!("s{}:", s.len()).as_bytes());
            ctx.update(s.as_bytes());
        }
        None => ctx.update(b"n"),
    };
    let (seq, time) = (r.seq.to_string(), r.event_time.to_string());
    field(Some(&r.chain));
    field(Some(&seq));
    field(Some(&r.event_id));
    field(Some(&time));
    field(Some(&r.account));
    field(Some(&r.event_name));
    field(Some(&r.event_source));
    field(Some(if r.read_only { "true" } else { "false" }));
    field(r.username.as_deref());
    field(r.access_key_id.as_deref());
    field(r.resource_type.as_deref());
    field(r.resource_name.as_deref());
    field(Some(&r.event_json));
    hex::encode(ctx.finish().as_ref())
}

/// Give `records` (in order) the seqs and hashes that continue the chain after `head`.
fn rechain(records: &mut [AuditRecord], head: Option<&ChainHead>) {
    let (mut seq, mut prev) = head.map_or((0, GENESIS_HASH.to_string()), |h| (h.seq, h.hash.clone()));
    for r in records {
        seq += 1;
        r.seq = seq;
        r.prev_hash = prev;
        r.hash = chain_hash(r);
        prev = r.hash.clone();
    }
}

/// Audit trail failures.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("metadata: {0}")]
    Meta(#[from] berth_meta::MetaError),
    #[error("audit log file {path}: {source}")]
    LogFile { path: String, source: std::io::Error },
}

/// How the sink batches and where it also writes.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    /// Records queued at most; beyond, [`AuditSink::record`] drops and counts
    /// (`berth_audit_dropped_total`).
    pub capacity: usize,
    /// Records per transaction at most.
    pub batch_max: usize,
    /// A batch is written at most this long after its first record arrived.
    pub batch_interval: Duration,
    /// Longest wait between two attempts at a batch that failed to commit.
    pub retry_max: Duration,
    /// Also append each committed record's CloudTrail JSON as one line to this file (created
    /// owner-only, 0600).
    pub log_file: Option<PathBuf>,
}

impl Default for SinkSettings {
    fn default() -> Self {
        SinkSettings {
            capacity: 65_536,
            batch_max: 500,
            batch_interval: Duration::from_millis(50),
            retry_max: Duration::from_secs(5),
            log_file: None,
        }
    }
}

enum Msg {
    Call(Box<ApiCall>),
    Flush(oneshot::Sender<()>),
}

struct Inner {
    tx: mpsc::Sender<Msg>,
    store: Arc<dyn MetadataStore>,
    chain: String,
}

/// Where the HTTP layer hands its [`ApiCall`]s. Cheap to clone (all clones feed one writer).
///
/// [`AuditSink::record`] never blocks or awaits: it queues the call for a writer task, which
/// writes batches (every [`SinkSettings::batch_interval`] or [`SinkSettings::batch_max`]
/// records) in one transaction each, hash-chained on this node's chain. A batch that fails to
/// commit is retried with backoff (up to [`SinkSettings::retry_max`] apart) until it commits;
/// later records wait behind it, so the chain keeps the order of arrival. While the database
/// is down the queue fills; once [`SinkSettings::capacity`] records wait, further records are
/// **dropped and counted** (`berth_audit_dropped_total`, and an error in the log at most once
/// a second) rather than holding requests or memory without bound. See the module
/// documentation for what a crash can lose.
#[derive(Clone)]
pub struct AuditSink {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink").field("chain", &self.inner.chain).finish_non_exhaustive()
    }
}

/// Describe the audit metrics to the recorder (idempotent).
pub fn describe_metrics() {
    metrics::describe_counter!("berth_audit_records_total", "Audit records committed to the metadata database.");
    metrics::describe_counter!(
        "berth_audit_write_failures_total",
        "Failed attempts to commit a batch of audit records (each is retried)."
    );
    metrics::describe_counter!(
        "berth_audit_dropped_total",
        "Audit records dropped because the queue to the database was full."
    );
}

/// When the last "dropping audit records" error was logged (epoch ms).
static LAST_DROP_LOG: AtomicI64 = AtomicI64::new(0);

impl AuditSink {
    /// Start the sink of chain `chain` (this node's id): its head is loaded from `store`, the
    /// log file (if any) opened, and the writer task spawned. The writer ends once every clone
    /// of the sink is dropped and everything queued is written.
    pub async fn start(
        store: Arc<dyn MetadataStore>,
        chain: String,
        settings: SinkSettings,
    ) -> Result<AuditSink, AuditError> {
        describe_metrics();
        let head = store.audit_chain_head(&chain).await?;
        let file = match &settings.log_file {
            Some(path) => Some(open_log_file(path).await?),
            None => None,
        };
        let (tx, rx) = mpsc::channel(settings.capacity.max(1));
        let writer = Writer { store: store.clone(), chain: chain.clone(), head, settings, file };
        tokio::spawn(writer.run(rx));
        Ok(AuditSink { inner: Arc::new(Inner { tx, store, chain }) })
    }

    /// Queue one call's record. Never blocks; when the queue is full the record is dropped and
    /// counted (see [`AuditSink`]).
    pub fn record(&self, call: ApiCall) {
        if let Err(mpsc::error::TrySendError::Full(_) | mpsc::error::TrySendError::Closed(_)) =
            self.inner.tx.try_send(Msg::Call(Box::new(call)))
        {
            metrics::counter!("berth_audit_dropped_total").increment(1);
            let now = berth_registry::SystemClock.now_ms();
            let last = LAST_DROP_LOG.load(Ordering::Relaxed);
            if now - last >= 1000
                && LAST_DROP_LOG.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            {
                tracing::error!(chain = %self.inner.chain, "audit queue full: dropping audit records (berth_audit_dropped_total)");
            }
        }
    }

    /// Wait until everything recorded before this call is committed (and in the log file).
    /// While the database is unreachable this waits for it: bound it with a timeout.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// The store the sink writes to (LookupEvents reads it).
    pub fn store(&self) -> &Arc<dyn MetadataStore> {
        &self.inner.store
    }

    /// This sink's chain id.
    pub fn chain(&self) -> &str {
        &self.inner.chain
    }
}

async fn open_log_file(path: &std::path::Path) -> Result<tokio::fs::File, AuditError> {
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .await
        .map_err(|source| AuditError::LogFile { path: path.display().to_string(), source })
}

/// The single writer of one chain.
struct Writer {
    store: Arc<dyn MetadataStore>,
    chain: String,
    head: Option<ChainHead>,
    settings: SinkSettings,
    file: Option<tokio::fs::File>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut calls: Vec<ApiCall> = Vec::new();
        let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
        while let Some(first) = rx.recv().await {
            let deadline = tokio::time::Instant::now() + self.settings.batch_interval;
            let take = |m: Msg, calls: &mut Vec<ApiCall>, flushes: &mut Vec<oneshot::Sender<()>>| match m {
                Msg::Call(c) => calls.push(*c),
                Msg::Flush(f) => flushes.push(f),
            };
            take(first, &mut calls, &mut flushes);
            while calls.len() < self.settings.batch_max {
                // A flush waits for nothing more than what is queued already.
                let next = if flushes.is_empty() {
                    tokio::time::timeout_at(deadline, rx.recv()).await.ok().flatten()
                } else {
                    rx.try_recv().ok()
                };
                match next {
                    Some(m) => take(m, &mut calls, &mut flushes),
                    None => break,
                }
            }
            if !calls.is_empty() {
                self.write(std::mem::take(&mut calls)).await;
            }
            for f in flushes.drain(..) {
                let _ = f.send(());
            }
        }
    }

    /// Chain and commit one batch, retrying until it commits.
    async fn write(&mut self, calls: Vec<ApiCall>) {
        let mut records: Vec<AuditRecord> = calls
            .iter()
            .map(|c| c.to_record(&uuid::Uuid::new_v4().to_string(), &self.chain, 0, GENESIS_HASH))
            .collect();
        rechain(&mut records, self.head.as_ref());
        let mut delay = Duration::from_millis(100);
        loop {
            let err = match self.store.append_audit(&records).await {
                Ok(()) => break,
                Err(e) => e,
            };
            metrics::counter!("berth_audit_write_failures_total").increment(1);
            tracing::warn!(error = %err, chain = %self.chain, records = records.len(), "writing audit records failed; retrying");
            // The commit may have happened with its answer lost, or another process may write
            // this chain (two nodes with one node id): decide from the stored head.
            if let Ok(head) = self.store.audit_chain_head(&self.chain).await {
                let last = records.last().expect("a batch is never empty");
                if head.as_ref().is_some_and(|h| h.seq == last.seq && h.hash == last.hash) {
                    break;
                }
                if head != self.head {
                    tracing::error!(
                        chain = %self.chain,
                        "another process appends to this audit chain: every node needs its own node_id"
                    );
                    self.head = head;
                    rechain(&mut records, self.head.as_ref());
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.settings.retry_max);
        }
        let last = records.last().expect("a batch is never empty");
        self.head = Some(ChainHead { seq: last.seq, hash: last.hash.clone() });
        metrics::counter!("berth_audit_records_total").increment(records.len() as u64);
        if let Some(f) = &mut self.file {
            use tokio::io::AsyncWriteExt;
            let mut lines = String::new();
            for r in &records {
                lines.push_str(&r.event_json);
                lines.push('\n');
            }
            if let Err(e) = async {
                f.write_all(lines.as_bytes()).await?;
                f.flush().await
            }
            .await
            {
                tracing::warn!(error = %e, "appending to the audit log file failed");
            }
        }
    }
}

/// The job kind that deletes audit records past retention.
pub const PURGE_JOB: &str = "purge-audit";

/// Image actions per `PolicyExecutionEvent` record (a run that expires more writes several).
pub const LIFECYCLE_ACTIONS_PER_RECORD: usize = 100;

/// The audit records of a lifecycle run that acted on images, as CloudTrail records ECR's:
/// `PolicyExecutionEvent`, an `AwsServiceEvent` invoked by `AWS Internal`, whose
/// `serviceEventDetails` name the repository, the policy's rules and, per image, the rule that
/// acted (`rulePriority`) and the image (`digest`, `tagStatus`, `imageTags`, `pushedAt`); at most
/// [`LIFECYCLE_ACTIONS_PER_RECORD`] images per record. None when the run did nothing.
pub fn lifecycle_execution(run: &berth_registry::lifecycle::LifecycleRun) -> Vec<ApiCall> {
    let repo = &run.repository;
    let ns = berth_meta::Namespace { account_id: repo.account_id.clone(), region: repo.region.clone() };
    let rules = serde_json::from_str::<Value>(&run.policy_text).ok().and_then(|v| v.get("rules").cloned());
    run.actions
        .chunks(LIFECYCLE_ACTIONS_PER_RECORD)
        .map(|chunk| {
            let images: Vec<Value> = chunk
                .iter()
                .map(|a| {
                    json!({
                        "lifecycleEventImage": {
                            "digest": a.digest,
                            "tagStatus": if a.tags.is_empty() { "Untagged" } else { "Tagged" },
                            "repositoryName": repo.name,
                            "imageTags": a.tags,
                            "pushedAt": a.pushed_at,
                        },
                        "rulePriority": a.rule_priority,
                        "actionType": a.action.api_name(),
                    })
                })
                .collect();
            ApiCall {
                event_time: run.evaluated_at,
                event_source: "ecr.amazonaws.com".into(),
                event_name: "PolicyExecutionEvent".into(),
                aws_region: repo.region.clone(),
                request_id: uuid::Uuid::new_v4().to_string(),
                read_only: false,
                resources: vec![("AWS::ECR::Repository".into(), berth_registry::repository_arn(&ns, &repo.name))],
                recipient_account_id: repo.account_id.clone(),
                event_type: "AwsServiceEvent".into(),
                invoked_by: Some("AWS Internal".into()),
                service_event_details: Some(json!({
                    "repositoryName": repo.name,
                    "lifecycleEventPolicy": {
                        "lifecycleEventRules": rules.clone().unwrap_or(Value::Array(Vec::new())),
                        "lastEvaluatedAt": run.evaluated_at,
                    },
                    "lifecycleEventImageActions": images,
                })),
                ..ApiCall::default()
            }
        })
        .collect()
}

/// The audit record of a finished image scan: `ImageScanCompleted`, an `AwsServiceEvent` invoked
/// by `AWS Internal`, whose `serviceEventDetails` name the repository, the image, the scan's
/// status and its counts by severity. `None` when the scan's repository is unknown.
pub fn scan_completed(o: &berth_registry::scan::ScanOutcome) -> Option<ApiCall> {
    let (ns, name) = o.target.as_ref()?;
    let counts: Value =
        o.scan.counts.as_deref().and_then(|c| serde_json::from_str(c).ok()).unwrap_or_else(|| json!({}));
    Some(ApiCall {
        event_time: o.scan.completed_at.unwrap_or(o.scan.requested_at),
        event_source: "ecr.amazonaws.com".into(),
        event_name: "ImageScanCompleted".into(),
        aws_region: ns.region.clone(),
        request_id: uuid::Uuid::new_v4().to_string(),
        read_only: false,
        resources: vec![("AWS::ECR::Repository".into(), berth_registry::repository_arn(ns, name))],
        recipient_account_id: ns.account_id.clone(),
        event_type: "AwsServiceEvent".into(),
        invoked_by: Some("AWS Internal".into()),
        service_event_details: Some(json!({
            "repositoryName": name,
            "imageDigest": o.scan.digest,
            "scanStatus": o.scan.status,
            "findingSeverityCounts": counts,
        })),
        ..ApiCall::default()
    })
}

/// Register the hourly retention job: records older than `retention` go (chain prefixes, see
/// [`AuditStore::purge_audit`]).
pub fn register_retention(runner: &mut JobRunner, retention: Duration) {
    runner.purge_hourly(
        PURGE_JOB,
        "audit records",
        retention,
        |meta, before| async move { meta.purge_audit(before).await },
    );
}

/// One chain as verification found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub chain: String,
    /// Records checked.
    pub records: u64,
    /// Where retention cut the chain (verification started after it), if it did.
    pub anchor: Option<ChainHead>,
    /// The last record's seq and hash (or the anchor's): keep it to detect later removal of
    /// the chain's tail.
    pub head: Option<ChainHead>,
}

/// The first record of a chain that does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub chain: String,
    pub seq: i64,
    pub event_id: String,
    pub reason: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub chains: Vec<ChainReport>,
    /// The first broken record of each broken chain; empty when every chain verifies.
    pub broken: Vec<Broken>,
}

/// Walk every chain in seq order and check seq continuity (from 1, or from the retention
/// anchor), each `prev_hash` against the previous record's hash and each `hash` against the
/// recomputed one. Names the first broken record of each chain.
pub async fn verify(store: &dyn AuditStore) -> Result<VerifyReport, berth_meta::MetaError> {
    const PAGE: u32 = 1000;
    let mut report = VerifyReport::default();
    for (chain, anchor) in store.audit_chains().await? {
        let (mut seq, mut prev) = anchor.as_ref().map_or((0, GENESIS_HASH.to_string()), |a| (a.seq, a.hash.clone()));
        let mut records = 0u64;
        let mut broken = None;
        'walk: loop {
            let page = store.audit_chain_records(&chain, seq, PAGE).await?;
            let Some(last) = page.last() else { break };
            let next_after = last.seq;
            for r in page {
                let why = if r.seq != seq + 1 {
                    Some(format!("expected seq {} after {seq}: records were removed or moved", seq + 1))
                } else if r.prev_hash != prev {
                    Some("its prev_hash is not the previous record's hash: records were removed or moved".to_string())
                } else if chain_hash(&r) != r.hash {
                    Some("its content does not match its hash: the record was altered".to_string())
                } else {
                    None
                };
                if let Some(reason) = why {
                    broken = Some(Broken { chain: chain.clone(), seq: r.seq, event_id: r.event_id, reason });
                    break 'walk;
                }
                records += 1;
                seq = r.seq;
                prev = r.hash;
            }
            if next_after < seq {
                break;
            }
        }
        let head = (seq > 0).then_some(ChainHead { seq, hash: prev });
        report.chains.push(ChainReport { chain, records, anchor, head });
        report.broken.extend(broken);
    }
    Ok(report)
}

/// Why a LookupEvents request was refused (CloudTrail's exceptions, [`LookupError::aws_code`]).
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("{0}")]
    InvalidLookupAttributes(String),
    #[error("{0}")]
    InvalidTimeRange(String),
    #[error("{0}")]
    InvalidMaxResults(String),
    #[error("{0}")]
    InvalidNextToken(String),
    #[error("{0}")]
    InvalidEventCategory(String),
    /// The request is not the shape LookupEvents takes.
    #[error("{0}")]
    Serialization(String),
    #[error("metadata: {0}")]
    Meta(#[from] berth_meta::MetaError),
}

impl LookupError {
    /// CloudTrail's exception name (`Meta` maps to the server's own unavailable/internal error).
    pub fn aws_code(&self) -> &'static str {
        match self {
            LookupError::InvalidLookupAttributes(_) => "InvalidLookupAttributesException",
            LookupError::InvalidTimeRange(_) => "InvalidTimeRangeException",
            LookupError::InvalidMaxResults(_) => "InvalidMaxResultsException",
            LookupError::InvalidNextToken(_) => "InvalidNextTokenException",
            LookupError::InvalidEventCategory(_) => "InvalidEventCategoryException",
            LookupError::Serialization(_) => "SerializationException",
            LookupError::Meta(_) => "InternalServerException",
        }
    }
}

/// Largest `AttributeValue`, as CloudTrail's.
const MAX_ATTRIBUTE_VALUE: usize = 2000;

/// CloudTrail `LookupEvents` over `account`'s records: `input` is the request body (AWS JSON:
/// `LookupAttributes` (at most one `{AttributeKey, AttributeValue}`), `StartTime`/`EndTime`
/// (epoch seconds, fractional allowed; both ends included; default: everything up to `now_ms`),
/// `EventCategory` (only `insight`, of which Berth has none), `MaxResults` (1 to 50, default
/// 50), `NextToken`). Answers `{"Events": [...], "NextToken"?}`, newest first; each event has
/// `EventId`, `EventName`, `ReadOnly` ("true"/"false"), `AccessKeyId`, `EventTime` (epoch
/// seconds), `EventSource`, `Username`, `Resources` (`ResourceType`, `ResourceName` = ARN) and
/// `CloudTrailEvent` (the record's JSON text). A `NextToken` is valid only with the same
/// lookup attribute and time range it came with.
pub async fn lookup_events(
    store: &dyn AuditStore,
    account: &str,
    input: &serde_json::Value,
    now_ms: i64,
) -> Result<serde_json::Value, LookupError> {
    let obj = input.as_object().ok_or_else(|| LookupError::Serialization("Expected a JSON object.".into()))?;
    let attribute = match obj.get("LookupAttributes") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Array(list)) => match list.as_slice() {
            [] => None,
            [one] => {
                let key = one.get("AttributeKey").and_then(|v| v.as_str()).ok_or_else(|| {
                    LookupError::InvalidLookupAttributes("A lookup attribute needs an AttributeKey.".into())
                })?;
                let key = LookupKey::parse(key).ok_or_else(|| {
                    LookupError::InvalidLookupAttributes(format!(
                        "Invalid AttributeKey '{}': expected one of {}.",
                        key.chars().filter(|c| !c.is_control()).take(100).collect::<String>(),
                        LookupKey::ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                    ))
                })?;
                let value = one.get("AttributeValue").and_then(|v| v.as_str()).ok_or_else(|| {
                    LookupError::InvalidLookupAttributes("A lookup attribute needs an AttributeValue.".into())
                })?;
                if value.is_empty() || value.chars().count() > MAX_ATTRIBUTE_VALUE {
                    return Err(LookupError::InvalidLookupAttributes(format!(
                        "AttributeValue must be 1 to {MAX_ATTRIBUTE_VALUE} characters long."
                    )));
                }
                Some((key, value))
            }
            _ => {
                return Err(LookupError::InvalidLookupAttributes("You can specify only one lookup attribute.".into()));
            }
        },
        Some(_) => return Err(LookupError::Serialization("LookupAttributes must be a list.".into())),
    };
    let time = |name: &str| -> Result<Option<i64>, LookupError> {
        match obj.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => match v.as_f64() {
                Some(secs) if secs.is_finite() && secs.abs() < 1e13 => Ok(Some((secs * 1000.0).floor() as i64)),
                _ => Err(LookupError::InvalidTimeRange(format!("{name} is not a valid time."))),
            },
        }
    };
    let (start, end) = (time("StartTime")?, time("EndTime")?);
    let (from, to) = (start.unwrap_or(0), end.unwrap_or(now_ms));
    if from > to {
        return Err(LookupError::InvalidTimeRange("Start time must not be after end time.".into()));
    }
    let limit = match obj.get("MaxResults") {
        None | Some(serde_json::Value::Null) => 50,
        Some(v) => match v.as_i64() {
            Some(n) if (1..=50).contains(&n) => n as u32,
            _ => {
                return Err(LookupError::InvalidMaxResults("MaxResults must be an integer from 1 to 50.".into()));
            }
        },
    };
    let insight = match obj.get("EventCategory") {
        None | Some(serde_json::Value::Null) => false,
        Some(v) if v.as_str() == Some("insight") => true,
        Some(_) => {
            return Err(LookupError::InvalidEventCategory("The only EventCategory is 'insight'.".into()));
        }
    };
    // The token is bound to the query it continues.
    let fingerprint = {
        let q = json!([attribute.map(|(k, v)| (format!("{k:?}"), v)), start, end, insight]).to_string();
        hex::encode(&ring::digest::digest(&ring::digest::SHA256, q.as_bytes()).as_ref()[..8])
    };
    let before = match obj.get("NextToken") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => {
            let bad = || LookupError::InvalidNextToken("Invalid NextToken.".into());
            let token = v.as_str().ok_or_else(bad)?;
            let text = hex::decode(token).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(bad)?;
            let mut parts = text.split('.');
            let (t, id, fp) = (parts.next(), parts.next(), parts.next());
            if parts.next().is_some() || fp != Some(fingerprint.as_str()) {
                return Err(bad());
            }
            let t = t.and_then(|t| t.parse::<i64>().ok()).ok_or_else(bad)?;
            let id = id.and_then(|t| t.parse::<i64>().ok()).ok_or_else(bad)?;
            Some((t, id))
        }
    };
    if insight {
        return Ok(json!({"Events": []}));
    }
    let q = AuditQuery { account, attribute, start: from, end: to, before, limit: limit + 1 };
    let mut rows = store.lookup_audit(&q).await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let mut out = json!({"Events": rows.iter().map(lookup_event).collect::<Vec<_>>()});
    if more && let Some(last) = rows.last() {
        out["NextToken"] = json!(hex::encode(format!("{}.{}.{fingerprint}", last.event_time, last.id)));
    }
    Ok(out)
}

/// One record as LookupEvents lists it.
fn lookup_event(r: &AuditRecord) -> serde_json::Value {
    let mut e = json!({
        "EventId": r.event_id,
        "EventName": r.event_name,
        "ReadOnly": if r.read_only { "true" } else { "false" },
    });
    if let Some(k) = &r.access_key_id {
        e["AccessKeyId"] = json!(k);
    }
    e["EventTime"] = json!(r.event_time as f64 / 1000.0);
    e["EventSource"] = json!(r.event_source);
    if let Some(u) = &r.username {
        e["Username"] = json!(u);
    }
    let record: serde_json::Value = serde_json::from_str(&r.event_json).unwrap_or_default();
    let resources: Vec<serde_json::Value> = record
        .get("resources")
        .and_then(|v| v.as_array())
        .map(|list| list.iter().map(|x| json!({"ResourceType": x["type"], "ResourceName": x["ARN"]})).collect())
        .unwrap_or_default();
    e["Resources"] = json!(resources);
    e["CloudTrailEvent"] = json!(r.event_json);
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_meta::sqlite::SqliteStore;

    fn user() -> CallerIdentity {
        CallerIdentity {
            kind: "IAMUser".into(),
            principal_id: "AIDAEXAMPLE".into(),
            arn: "arn:aws:iam::111111111111:user/ci".into(),
            account_id: "111111111111".into(),
            access_key_id: "AKIAEXAMPLE".into(),
            user_name: Some("ci".into()),
        }
    }

    fn put_image(time: i64) -> ApiCall {
        ApiCall {
            event_time: time,
            event_source: "ecr.amazonaws.com".into(),
            event_name: "PutImage".into(),
            aws_region: "us-east-1".into(),
            source_ip: Some("192.0.2.1".into()),
            user_agent: Some("aws-cli/1.45".into()),
            identity: Some(user()),
            request_parameters: json!({"repositoryName": "app", "imageTag": "v1"}),
            response_elements: json!({"image": {"repositoryName": "app"}}),
            error_code: None,
            error_message: None,
            request_id: "req-1".into(),
            read_only: false,
            resources: vec![(
                "AWS::ECR::Repository".into(),
                "arn:aws:ecr:us-east-1:111111111111:repository/app".into(),
            )],
            recipient_account_id: "111111111111".into(),
            event_type: "AwsApiCall".into(),
            ..ApiCall::default()
        }
    }

    #[test]
    fn cloudtrail_record_has_exactly_cloudtrails_fields() {
        let v = put_image(1_700_000_000_123).to_cloudtrail("ev-1");
        assert_eq!(
            v,
            json!({
                "eventVersion": "1.08",
                "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE",
                    "arn": "arn:aws:iam::111111111111:user/ci", "accountId": "111111111111",
                    "accessKeyId": "AKIAEXAMPLE", "userName": "ci"},
                "eventTime": "2023-11-14T22:13:20Z",
                "eventSource": "ecr.amazonaws.com",
                "eventName": "PutImage",
                "awsRegion": "us-east-1",
                "sourceIPAddress": "192.0.2.1",
                "userAgent": "aws-cli/1.45",
                "requestParameters": {"repositoryName": "app", "imageTag": "v1"},
                "responseElements": {"image": {"repositoryName": "app"}},
                "requestID": "req-1",
                "eventID": "ev-1",
                "readOnly": false,
                "resources": [{"ARN": "arn:aws:ecr:us-east-1:111111111111:repository/app",
                    "accountId": "111111111111", "type": "AWS::ECR::Repository"}],
                "eventType": "AwsApiCall",
                "managementEvent": true,
                "recipientAccountId": "111111111111",
                "eventCategory": "Management"
            })
        );
        // The key order is CloudTrail's.
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys[..4], ["eventVersion", "userIdentity", "eventTime", "eventSource"]);
    }

    #[test]
    fn failed_root_and_anonymous_calls() {
        let mut c = put_image(0);
        c.identity = Some(CallerIdentity {
            kind: "Root".into(),
            principal_id: "111111111111".into(),
            arn: "arn:aws:iam::111111111111:root".into(),
            account_id: "111111111111".into(),
            access_key_id: "AKIAROOT".into(),
            user_name: None,
        });
        c.error_code = Some("RepositoryNotFoundException".into());
        c.error_message = Some("The repository does not exist".into());
        c.response_elements = serde_json::Value::Null;
        c.resources.clear();
        let v = c.to_cloudtrail("e");
        assert_eq!(
            v["userIdentity"],
            json!({"type": "Root", "principalId": "111111111111", "arn": "arn:aws:iam::111111111111:root",
                "accountId": "111111111111", "accessKeyId": "AKIAROOT"})
        );
        assert_eq!(
            (v["errorCode"].as_str(), v["errorMessage"].as_str()),
            (Some("RepositoryNotFoundException"), Some("The repository does not exist"))
        );
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys[8..10], ["errorCode", "errorMessage"], "after userAgent, as CloudTrail");
        assert!(v["responseElements"].is_null() && v.get("resources").is_none());
        assert_eq!(c.username().as_deref(), Some("root"));

        let mut a = put_image(0);
        a.identity = None;
        a.source_ip = None;
        a.user_agent = None;
        let v = a.to_cloudtrail("e");
        assert_eq!(
            v["userIdentity"],
            json!({"type": "AWSAccount", "principalId": "", "accountId": "ANONYMOUS_PRINCIPAL"})
        );
        assert_eq!(v["sourceIPAddress"], "ecr.amazonaws.com");
        assert!(v.get("errorCode").is_none() && v.get("errorMessage").is_none());
        assert_eq!(a.username(), None);
        let r = a.to_record("e", "n", 1, GENESIS_HASH);
        assert_eq!((r.username, r.access_key_id), (None, None));
    }

    #[test]
    fn hashes_cover_every_field_and_the_predecessor() {
        let base = put_image(5).to_record("e1", "n1", 1, GENESIS_HASH);
        assert_eq!(base.hash, chain_hash(&base));
        assert_eq!(base.hash.len(), 64);
        let changed: Vec<AuditRecord> = vec![
            AuditRecord { chain: "n2".into(), ..base.clone() },
            AuditRecord { seq: 2, ..base.clone() },
            AuditRecord { event_id: "e2".into(), ..base.clone() },
            AuditRecord { event_time: 6, ..base.clone() },
            AuditRecord { account: "2".into(), ..base.clone() },
            AuditRecord { event_name: "X".into(), ..base.clone() },
            AuditRecord { event_source: "x".into(), ..base.clone() },
            AuditRecord { read_only: true, ..base.clone() },
            AuditRecord { username: None, ..base.clone() },
            AuditRecord { access_key_id: Some(String::new()), ..base.clone() },
            AuditRecord { resource_type: None, ..base.clone() },
            AuditRecord { resource_name: Some("x".into()), ..base.clone() },
            AuditRecord { event_json: base.event_json.replace("v1", "v2"), ..base.clone() },
            AuditRecord { prev_hash: "1".repeat(64), ..base.clone() },
        ];
        for c in changed {
            assert_ne!(chain_hash(&c), base.hash, "{c:?}");
        }
        // The storage id is not content.
        assert_eq!(chain_hash(&AuditRecord { id: 9, ..base.clone() }), base.hash);
    }

    async fn store(dir: &tempfile::TempDir, name: &str) -> Arc<dyn MetadataStore> {
        Arc::new(SqliteStore::open(&dir.path().join(name)).await.unwrap())
    }

    fn chained(n: i64) -> Vec<AuditRecord> {
        let mut records: Vec<AuditRecord> =
            (1..=n).map(|i| put_image(i * 1000).to_record(&format!("e{i}"), "n1", 0, GENESIS_HASH)).collect();
        rechain(&mut records, None);
        records
    }

    #[tokio::test]
    async fn verify_names_the_first_altered_removed_or_moved_record() {
        let dir = tempfile::tempdir().unwrap();
        let good = store(&dir, "good.db").await;
        good.append_audit(&chained(5)).await.unwrap();
        let r = verify(good.as_ref()).await.unwrap();
        assert!(r.broken.is_empty(), "{r:?}");
        let last = chained(5).pop().unwrap();
        assert_eq!(
            r.chains,
            [ChainReport {
                chain: "n1".into(),
                records: 5,
                anchor: None,
                head: Some(ChainHead { seq: 5, hash: last.hash })
            }]
        );

        // Altered: content changed, hash kept.
        let mut altered = chained(5);
        altered[2].event_json = altered[2].event_json.replace("PutImage", "GetImage");
        let s = store(&dir, "altered.db").await;
        s.append_audit(&altered).await.unwrap();
        let b = &verify(s.as_ref()).await.unwrap().broken[0];
        assert_eq!((b.chain.as_str(), b.seq, b.event_id.as_str()), ("n1", 3, "e3"));
        assert!(b.reason.contains("altered"), "{}", b.reason);

        // Removed from the middle.
        let mut removed = chained(5);
        removed.remove(2);
        let s = store(&dir, "removed.db").await;
        s.append_audit(&removed).await.unwrap();
        let b = &verify(s.as_ref()).await.unwrap().broken[0];
        assert_eq!((b.seq, b.event_id.as_str()), (4, "e4"));
        assert!(b.reason.contains("expected seq 3"), "{}", b.reason);

        // Moved: two records swap places (their seqs).
        let mut moved = chained(5);
        moved[1].seq = 4;
        moved[3].seq = 2;
        let s = store(&dir, "moved.db").await;
        s.append_audit(&moved).await.unwrap();
        let b = &verify(s.as_ref()).await.unwrap().broken[0];
        assert_eq!((b.seq, b.event_id.as_str()), (2, "e4"));

        // Renumbered after a removal (seqs made continuous again): the hash links break.
        let mut renumbered = chained(5);
        renumbered.remove(1);
        for (i, r) in renumbered.iter_mut().enumerate() {
            r.seq = i as i64 + 1;
        }
        let s = store(&dir, "renumbered.db").await;
        s.append_audit(&renumbered).await.unwrap();
        let b = &verify(s.as_ref()).await.unwrap().broken[0];
        assert_eq!((b.seq, b.event_id.as_str()), (2, "e3"));

        // Retention keeps what is left verifiable from its anchor.
        good.purge_audit(2500).await.unwrap();
        let r = verify(good.as_ref()).await.unwrap();
        assert!(r.broken.is_empty(), "{r:?}");
        assert_eq!((r.chains[0].records, r.chains[0].anchor.as_ref().map(|a| a.seq)), (3, Some(2)));
    }

    #[tokio::test]
    async fn the_sink_batches_chains_flushes_and_continues_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir, "sink.db").await;
        let log = dir.path().join("audit.jsonl");
        let settings = SinkSettings { log_file: Some(log.clone()), batch_max: 7, ..Default::default() };
        let sink = AuditSink::start(s.clone(), "node-a".into(), settings.clone()).await.unwrap();
        for i in 0..40 {
            sink.clone().record(put_image(1000 + i));
        }
        sink.flush().await;
        assert_eq!(s.audit_chain_head("node-a").await.unwrap().unwrap().seq, 40);
        drop(sink);
        // A new sink on the same chain continues it.
        let sink = AuditSink::start(s.clone(), "node-a".into(), settings).await.unwrap();
        sink.record(put_image(5000));
        sink.flush().await;
        let r = verify(s.as_ref()).await.unwrap();
        assert!(r.broken.is_empty(), "{r:?}");
        assert_eq!(r.chains[0].records, 41);
        // In order of arrival, every record in the log file too, owner-only.
        let walk = s.audit_chain_records("node-a", 0, 100).await.unwrap();
        assert!(walk.windows(2).all(|w| w[0].event_time < w[1].event_time));
        let lines: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(str::to_string).collect();
        assert_eq!(lines, walk.iter().map(|r| r.event_json.clone()).collect::<Vec<_>>());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[tokio::test]
    async fn a_failed_append_is_retried_in_order_after_the_stored_head() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir, "retry.db").await;
        let sink = AuditSink::start(s.clone(), "c".into(), SinkSettings::default()).await.unwrap();
        // Another writer takes seq 1 behind the sink's back: the sink's first append fails on
        // the (chain, seq) constraint, and it re-chains after the stored head and retries.
        s.append_audit(
            &chained(1)
                .into_iter()
                .map(|r| AuditRecord { chain: "c".into(), ..r })
                .map(|mut r| {
                    r.hash = chain_hash(&r);
                    r
                })
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
        sink.record(put_image(7));
        sink.record(put_image(8));
        sink.flush().await;
        let walk = s.audit_chain_records("c", 0, 10).await.unwrap();
        assert_eq!(walk.iter().map(|r| (r.seq, r.event_time)).collect::<Vec<_>>(), [(1, 1000), (2, 7), (3, 8)]);
        assert!(verify(s.as_ref()).await.unwrap().broken.is_empty());
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir, "full.db").await;
        let settings = SinkSettings {
            capacity: 2,
            batch_interval: Duration::from_secs(3600),
            batch_max: 1000,
            ..Default::default()
        };
        let sink = AuditSink::start(s.clone(), "n".into(), settings).await.unwrap();
        // The writer holds the first record while it waits for its batch to fill; the queue
        // takes two more; the rest are dropped at once.
        let started = std::time::Instant::now();
        for i in 0..100 {
            sink.record(put_image(i));
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        sink.flush().await;
        let n = s.audit_chain_head("n").await.unwrap().unwrap().seq;
        assert!((1..=3).contains(&n), "{n}");
    }

    #[tokio::test]
    async fn lookup_events_validates_pages_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir, "lookup.db").await;
        let mut records: Vec<AuditRecord> = (1..=5)
            .map(|i| {
                let mut c = put_image(i * 1000);
                if i % 2 == 1 {
                    c.event_name = "DescribeImages".into();
                    c.read_only = true;
                }
                c.to_record(&format!("e{i}"), "n1", 0, GENESIS_HASH)
            })
            .collect();
        rechain(&mut records, None);
        s.append_audit(&records).await.unwrap();
        let look = |input: serde_json::Value| {
            let s = s.clone();
            async move { lookup_events(s.as_ref(), "111111111111", &input, 10_000).await }
        };
        let all = look(json!({})).await.unwrap();
        let ids: Vec<&str> = all["Events"].as_array().unwrap().iter().map(|e| e["EventId"].as_str().unwrap()).collect();
        assert_eq!(ids, ["e5", "e4", "e3", "e2", "e1"]);
        assert!(all.get("NextToken").is_none());
        let e = &all["Events"][1];
        assert_eq!(
            *e,
            json!({"EventId": "e4", "EventName": "PutImage", "ReadOnly": "false", "AccessKeyId": "AKIAEXAMPLE",
                "EventTime": 4.0, "EventSource": "ecr.amazonaws.com", "Username": "ci",
                "Resources": [{"ResourceType": "AWS::ECR::Repository",
                    "ResourceName": "arn:aws:ecr:us-east-1:111111111111:repository/app"}],
                "CloudTrailEvent": records[3].event_json})
        );
        // Pages of two with the token; the token is bound to its query.
        let q = json!({"LookupAttributes": [{"AttributeKey": "ReadOnly", "AttributeValue": "true"}], "MaxResults": 2});
        let p1 = look(q.clone()).await.unwrap();
        let token = p1["NextToken"].as_str().unwrap().to_string();
        let mut q2 = q.clone();
        q2["NextToken"] = json!(token);
        let p2 = look(q2).await.unwrap();
        assert_eq!(
            p2["Events"].as_array().unwrap().iter().map(|e| e["EventId"].as_str().unwrap()).collect::<Vec<_>>(),
            ["e1"]
        );
        assert!(p2.get("NextToken").is_none());
        let other = look(json!({"NextToken": token})).await.unwrap_err();
        assert_eq!(other.aws_code(), "InvalidNextTokenException");
        assert_eq!(look(json!({"NextToken": "zz"})).await.unwrap_err().aws_code(), "InvalidNextTokenException");
        // Time range, both ends included; fractional seconds as the CLI sends them.
        let r = look(json!({"StartTime": 2.0, "EndTime": 3.9995})).await.unwrap();
        assert_eq!(r["Events"].as_array().unwrap().len(), 2);
        for (input, code) in [
            (json!({"StartTime": 5, "EndTime": 4}), "InvalidTimeRangeException"),
            (json!({"StartTime": "yesterday"}), "InvalidTimeRangeException"),
            (json!({"MaxResults": 0}), "InvalidMaxResultsException"),
            (json!({"MaxResults": 51}), "InvalidMaxResultsException"),
            (
                json!({"LookupAttributes": [{"AttributeKey": "Nope", "AttributeValue": "x"}]}),
                "InvalidLookupAttributesException",
            ),
            (
                json!({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": ""}]}),
                "InvalidLookupAttributesException",
            ),
            (
                json!({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "a"}, {"AttributeKey": "EventName", "AttributeValue": "b"}]}),
                "InvalidLookupAttributesException",
            ),
            (json!({"EventCategory": "data"}), "InvalidEventCategoryException"),
            (json!({"LookupAttributes": "x"}), "SerializationException"),
        ] {
            assert_eq!(look(input.clone()).await.unwrap_err().aws_code(), code, "{input}");
        }
        assert_eq!(look(json!({"EventCategory": "insight"})).await.unwrap(), json!({"Events": []}));
        let other_account = lookup_events(s.as_ref(), "222222222222", &json!({}), 10_000).await.unwrap();
        assert_eq!(other_account, json!({"Events": []}));
    }
}
