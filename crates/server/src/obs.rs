//! What every request leaves behind: a request id (in the `x-amzn-RequestId` header, in OCI
//! error bodies and in every log line of the request, as the span `request{id=...}`), one
//! access-log line, Prometheus metrics, and an audit record.
//!
//! [`begin`] wraps a request; handlers add what only they know (the operation, the caller, the
//! error) with [`note`] while they run (a task-local, so nothing is threaded through their
//! signatures); [`Observation::finish`] turns it into the log line, the metrics and the audit
//! record once the response head is ready. Durations are to the response head (a blob's
//! streamed body is not waited for); bytes are the response's `Content-Length`.

use crate::AppState;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use berth_registry::Identity;
use http::{HeaderValue, Method};
use http_body_util::BodyExt;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument;

tokio::task_local! {
    static CURRENT: Arc<Observed>;
}

/// What the handlers learned about the request in flight.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    /// `oci`, `ecr`, `iam`, `sts`, `cloudtrail`, `kms`, `probe`, `metrics` (empty: nothing matched).
    pub api: &'static str,
    /// The operation as ECR / IAM / STS name it (`PutImage`, `CreateUser`); data-plane calls as
    /// ECR records them (`BatchGetImage` for a manifest pull, ...).
    pub operation: Option<String>,
    /// Whether `operation` is one the API knows (unknown names never become metric labels).
    pub known_operation: bool,
    pub identity: Option<Identity>,
    /// The account whose resources the call is about (the caller's when not known).
    pub account_id: Option<String>,
    pub region: Option<String>,
    pub repository: Option<String>,
    /// `(code, message)` of a refused or failed call.
    pub error: Option<(String, String)>,
    pub request_parameters: Option<Value>,
    pub response_elements: Option<Value>,
}

/// The request in flight, shared by [`begin`], the handlers ([`note`]) and `finish`.
#[derive(Debug)]
pub(crate) struct Observed {
    id: String,
    facts: Mutex<Facts>,
}

/// The id of the request this task serves (`None` outside a request).
pub(crate) fn request_id() -> Option<String> {
    CURRENT.try_with(|o| o.id.clone()).ok()
}

/// Record what a handler knows about the request it serves (a no-op outside a request).
pub(crate) fn note(f: impl FnOnce(&mut Facts)) {
    let _ = CURRENT.try_with(|o| f(&mut o.facts.lock().unwrap_or_else(|p| p.into_inner())));
}

/// Record a failed call's error code and message.
pub(crate) fn note_error(code: &str, message: &str) {
    note(|f| f.error = Some((code.to_string(), message.to_string())));
}

/// Process-wide observability settings and state, shared by every request.
pub struct Observability {
    /// Renders the Prometheus exposition (`None`: `/metrics` answers 404).
    prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Distinct `(account, repository)` label pairs so far, and the cap.
    repo_labels: Mutex<HashSet<(String, String)>>,
    repo_label_cap: usize,
    /// When the gauges read from the database were last refreshed.
    stats_at: tokio::sync::Mutex<Option<Instant>>,
    jobs_seen: Mutex<HashSet<(String, String)>>,
}

impl std::fmt::Debug for Observability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observability").field("repo_label_cap", &self.repo_label_cap).finish_non_exhaustive()
    }
}

/// Histogram buckets of request durations (seconds).
pub const DURATION_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

impl Observability {
    /// Install the process's Prometheus recorder (once per process; a second call finds it
    /// installed and leaves `/metrics` off) and describe every metric. `repo_label_cap` bounds the distinct repositories that get their
    /// own push/pull series; the rest share `repository="_other"`.
    pub fn install(repo_label_cap: usize) -> Observability {
        let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets_for_metric(metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)
            .and_then(|b| b.install_recorder())
            .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed; /metrics is off"))
            .ok();
        if prometheus.is_some() {
            describe();
        }
        Observability::with(prometheus, repo_label_cap)
    }

    /// Without metrics (and without touching the global recorder).
    pub fn without_metrics() -> Observability {
        Observability::with(None, 0)
    }

    fn with(prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>, repo_label_cap: usize) -> Observability {
        Observability {
            prometheus,
            repo_labels: Mutex::default(),
            repo_label_cap,
            stats_at: tokio::sync::Mutex::new(None),
            jobs_seen: Mutex::default(),
        }
    }

    /// The repository label for a series: the name while under the cap, else `_other`.
    fn repo_label(&self, account: &str, repo: &str) -> (String, String) {
        let key = (account.to_string(), repo.to_string());
        let mut seen = self.repo_labels.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(&key) || (seen.len() < self.repo_label_cap && seen.insert(key.clone())) {
            key
        } else {
            (account.to_string(), "_other".into())
        }
    }

    /// The exposition, with the database-backed gauges refreshed when older than a second.
    pub(crate) async fn render(&self, state: &AppState) -> Option<String> {
        let handle = self.prometheus.as_ref()?;
        {
            let mut at = self.stats_at.lock().await;
            if at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                match state.registry.stats().await {
                    Ok(s) => {
                        metrics::gauge!("berth_storage_blobs").set(s.blobs as f64);
                        metrics::gauge!("berth_storage_bytes").set(s.blob_bytes as f64);
                        metrics::gauge!("berth_upload_sessions_open").set(s.uploads_open as f64);
                        let mut seen = self.jobs_seen.lock().unwrap_or_else(|p| p.into_inner());
                        for (kind, st) in seen.iter() {
                            metrics::gauge!("berth_jobs", "kind" => kind.clone(), "state" => st.clone()).set(0.0);
                        }
                        for (kind, st, n) in s.jobs {
                            metrics::gauge!("berth_jobs", "kind" => kind.clone(), "state" => st.clone()).set(n as f64);
                            seen.insert((kind, st));
                        }
                        *at = Some(Instant::now());
                    }
                    Err(e) => tracing::warn!(error = %e, "reading the registry's sizes for /metrics failed"),
                }
            }
        }
        Some(handle.render())
    }
}

/// HELP text of every metric Berth exports (those of other crates too), so that the
/// exposition passes `promtool check metrics`.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("berth_http_requests_total", "Requests answered, by API, operation and HTTP status.");
    describe_histogram!(
        "berth_http_request_duration_seconds",
        Unit::Seconds,
        "Time to the response head, by API and operation."
    );
    describe_counter!("berth_pushed_bytes_total", Unit::Bytes, "Blob bytes received by uploads on the OCI API.");
    describe_counter!("berth_pulled_bytes_total", Unit::Bytes, "Blob and manifest bytes served on the OCI API.");
    describe_counter!(
        "berth_repository_push_count_total",
        "Image pushes (manifests stored) per repository (ECR's RepositoryPushCount)."
    );
    describe_counter!(
        "berth_repository_pull_count_total",
        "Image pulls (manifests served) per repository (ECR's RepositoryPullCount)."
    );
    describe_counter!("berth_authz_denials_total", "Requests refused by IAM authorization, by action.");
    describe_gauge!("berth_upload_sessions_open", "Upload sessions in progress.");
    describe_gauge!("berth_storage_blobs", "Distinct blobs stored.");
    describe_gauge!("berth_storage_bytes", Unit::Bytes, "Bytes of the distinct blobs stored.");
    describe_gauge!("berth_jobs", "Jobs in the durable queue, by kind and state (done ones excluded).");
    describe_counter!("berth_jobs_total", "Job runs finished, by kind and outcome (done, retry, failed).");
    describe_gauge!("berth_event_log_lag_events", "Events not yet handled by a consumer of the event log.");
    describe_counter!(
        "berth_webhook_deliveries_total",
        "Webhook delivery attempts, by outcome (delivered, retry, dead)."
    );
    berth_events::audit::describe_metrics();
}

/// A request being observed.
pub(crate) struct Observation {
    observed: Arc<Observed>,
    started: Instant,
    started_ms: i64,
    method: Method,
    path: String,
    user_agent: Option<String>,
    source_ip: Option<String>,
    received: Arc<AtomicU64>,
    span: tracing::Span,
}

/// Start observing `req`: a fresh request id, a counter of the body bytes received.
pub(crate) fn begin(state: &AppState, req: Request<Body>) -> (Observation, Request<Body>) {
    let id = uuid::Uuid::new_v4().to_string();
    let (parts, body) = req.into_parts();
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let body = Body::new(body.map_frame(move |f| {
        if let Some(d) = f.data_ref() {
            counter.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        f
    }));
    let origin = crate::origin(state.trust_forwarded, &parts);
    let ua = parts
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect());
    let span = tracing::info_span!("request", id = %id);
    let o = Observation {
        observed: Arc::new(Observed { id, facts: Mutex::default() }),
        started: Instant::now(),
        started_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        method: parts.method.clone(),
        path: parts.uri.path().chars().take(512).collect(),
        user_agent: ua,
        source_ip: origin.ip.map(|i| i.to_string()),
        received,
        span,
    };
    (o, Request::from_parts(parts, body))
}

impl Observation {
    /// Run the handler with this request's id in scope (task-local and tracing span).
    pub(crate) async fn run<T, F: std::future::Future<Output = T>>(&self, f: F) -> T {
        CURRENT.scope(self.observed.clone(), f.instrument(self.span.clone())).await
    }

    /// The request id header, the access-log line, the metrics and the audit record.
    pub(crate) fn finish(self, state: &AppState, mut resp: Response) -> Response {
        let id = self.observed.id.clone();
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().entry("x-amzn-requestid").or_insert(v);
        }
        let facts = std::mem::take(&mut *self.observed.facts.lock().unwrap_or_else(|p| p.into_inner()));
        let status = resp.status().as_u16();
        let elapsed = self.started.elapsed();
        let sent: u64 = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let api = if facts.api.is_empty() { "none" } else { facts.api };
        let op_label = match (&facts.operation, facts.known_operation) {
            (Some(op), true) => op.clone(),
            (Some(_), false) => "unknown".into(),
            (None, _) => "none".into(),
        };
        let principal = facts.identity.as_ref().map(|i| i.principal_arn.as_str()).unwrap_or("-");
        let account = facts
            .account_id
            .as_deref()
            .or(facts.identity.as_ref().map(|i| i.account_id.as_str()))
            .unwrap_or("-")
            .to_string();
        let _enter = self.span.enter();
        let quiet = matches!(api, "probe" | "metrics");
        macro_rules! access {
            ($lvl:ident) => {
                tracing::$lvl!(
                    target: "berth::access",
                    method = %self.method,
                    path = %self.path,
                    api,
                    operation = facts.operation.as_deref().unwrap_or("-"),
                    status,
                    bytes_in = self.received.load(Ordering::Relaxed),
                    bytes_out = sent,
                    duration_ms = elapsed.as_secs_f64() * 1000.0,
                    principal,
                    account = %account,
                    error = facts.error.as_ref().map(|e| e.0.as_str()).unwrap_or("-"),
                    "request"
                )
            };
        }
        if quiet {
            access!(debug);
        } else {
            access!(info);
        }
        drop(_enter);

        if state.obs.prometheus.is_some() {
            self.measure(state, &facts, api, &op_label, status, elapsed, sent, &account);
        }
        if let Some(sink) = &state.audit
            && let Some(call) = self.audit_call(state, &facts, status)
        {
            sink.record(call);
        }
        resp
    }

    #[allow(clippy::too_many_arguments)]
    fn measure(
        &self,
        state: &AppState,
        facts: &Facts,
        api: &'static str,
        op: &str,
        status: u16,
        elapsed: Duration,
        sent: u64,
        account: &str,
    ) {
        metrics::counter!("berth_http_requests_total", "api" => api, "operation" => op.to_string(), "status" => status.to_string())
            .increment(1);
        metrics::histogram!("berth_http_request_duration_seconds", "api" => api, "operation" => op.to_string())
            .record(elapsed.as_secs_f64());
        let ok = (200..300).contains(&status);
        if api == "oci" && ok {
            match (op, &self.method) {
                ("InitiateLayerUpload" | "UploadLayerPart" | "CompleteLayerUpload", _) => {
                    metrics::counter!("berth_pushed_bytes_total").increment(self.received.load(Ordering::Relaxed));
                }
                ("GetDownloadUrlForLayer" | "BatchGetImage", &Method::GET) => {
                    metrics::counter!("berth_pulled_bytes_total").increment(sent);
                }
                _ => {}
            }
            if let Some(repo) = &facts.repository {
                let is_manifest = self.path.contains("/manifests/");
                let series = match (op, &self.method) {
                    ("BatchGetImage", &Method::GET) if is_manifest => Some("berth_repository_pull_count_total"),
                    ("PutImage", &Method::PUT) => Some("berth_repository_push_count_total"),
                    _ => None,
                };
                if let Some(name) = series {
                    let (acct, repo) = state.obs.repo_label(account, repo);
                    metrics::counter!(name, "account" => acct, "repository" => repo).increment(1);
                }
            }
        }
        if let Some((code, _)) = &facts.error
            && matches!(code.as_str(), "DENIED" | "AccessDeniedException" | "AccessDenied")
            && facts.known_operation
        {
            let prefix = match api {
                "oci" | "ecr" => "ecr",
                other => other,
            };
            metrics::counter!("berth_authz_denials_total", "action" => format!("{prefix}:{op}")).increment(1);
        }
    }

    /// The audit record of an API call (`None` for probes, metrics and requests that named no
    /// known operation).
    fn audit_call(&self, state: &AppState, facts: &Facts, status: u16) -> Option<berth_events::audit::ApiCall> {
        if !facts.known_operation || matches!(facts.api, "probe" | "metrics" | "") {
            return None;
        }
        let op = facts.operation.clone()?;
        if facts.api == "oci" && !state.audit_data_plane_reads && read_only(&op) {
            return None;
        }
        let source = match facts.api {
            "oci" | "ecr" => "ecr.amazonaws.com",
            "iam" => "iam.amazonaws.com",
            "sts" => "sts.amazonaws.com",
            "cloudtrail" => "cloudtrail.amazonaws.com",
            "kms" => "kms.amazonaws.com",
            _ => return None,
        };
        let region = facts.region.clone().unwrap_or_else(|| state.registry.regions()[0].clone());
        let identity = facts.identity.as_ref().map(caller_identity);
        let recipient = facts
            .account_id
            .clone()
            .or_else(|| facts.identity.as_ref().map(|i| i.account_id.clone()))
            .unwrap_or_else(|| state.registry.default_account().to_string());
        let mut resources = Vec::new();
        if let Some(repo) = &facts.repository
            && source == "ecr.amazonaws.com"
        {
            resources.push((
                "AWS::ECR::Repository".to_string(),
                format!("arn:aws:ecr:{region}:{recipient}:repository/{repo}"),
            ));
        }
        let failed = facts.error.is_some() || status >= 400;
        let (error_code, error_message) = match &facts.error {
            Some((c, m)) => (Some(c.clone()), Some(m.clone())),
            None if status >= 400 => (Some(format!("HTTP{status}")), None),
            None => (None, None),
        };
        Some(berth_events::audit::ApiCall {
            event_time: self.started_ms,
            event_source: source.into(),
            event_name: op.clone(),
            aws_region: region,
            source_ip: self.source_ip.clone(),
            user_agent: self.user_agent.clone(),
            identity,
            request_parameters: facts.request_parameters.clone().unwrap_or(Value::Null),
            response_elements: if failed {
                Value::Null
            } else {
                facts.response_elements.clone().unwrap_or(Value::Null)
            },
            error_code,
            error_message,
            request_id: self.observed.id.clone(),
            read_only: read_only(&op),
            resources,
            recipient_account_id: recipient,
            event_type: "AwsApiCall".into(),
            ..berth_events::audit::ApiCall::default()
        })
    }
}

/// Whether an operation only reads (CloudTrail's `readOnly`).
pub(crate) fn read_only(op: &str) -> bool {
    ["Describe", "Get", "List", "BatchGet", "BatchCheck", "Lookup"].iter().any(|p| op.starts_with(p))
        && op != "GetAuthorizationToken"
}

/// CloudTrail's `userIdentity` of a caller.
fn caller_identity(i: &Identity) -> berth_events::audit::CallerIdentity {
    let resource = i.principal_arn.rsplit_once(':').map(|(_, r)| r).unwrap_or("");
    let (kind, user_name) = match resource.strip_prefix("user/") {
        Some(path) => ("IAMUser", Some(path.rsplit('/').next().unwrap_or(path).to_string())),
        None if resource.starts_with("assumed-role/") => ("AssumedRole", None),
        None => ("Root", None),
    };
    berth_events::audit::CallerIdentity {
        kind: kind.into(),
        principal_id: i.account_id.clone(),
        arn: i.principal_arn.clone(),
        account_id: i.account_id.clone(),
        access_key_id: i.access_key_id.clone(),
        user_name,
    }
}

/// Keys whose values never go into an audit record or a log line.
const SECRET_KEYS: &[&str] = &[
    "authorizationToken",
    "password",
    "secretAccessKey",
    "SecretAccessKey",
    "sessionToken",
    "SessionToken",
    "layerPartBlob",
    "Password",
    "NewPassword",
    "OldPassword",
    "WebIdentityToken",
    "webIdentityToken",
    // KMS: plaintexts, data keys and ciphertexts.
    "Plaintext",
    "CiphertextBlob",
    "CiphertextForRecipient",
];

/// `v` without secret-bearing members (at any depth); `None` when it is larger than 16 KiB
/// once serialized (CloudTrail also omits oversized parameters).
pub(crate) fn scrub(v: &Value) -> Option<Value> {
    fn walk(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, _)| !SECRET_KEYS.contains(&k.as_str()))
                    .map(|(k, x)| (k.clone(), walk(x)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(walk).collect()),
            other => other.clone(),
        }
    }
    let out = walk(v);
    (out.to_string().len() <= 16 * 1024).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scrub_removes_secrets_at_any_depth_and_drops_oversized_values() {
        let v = json!({"repositoryName": "a", "authorizationData": [{"authorizationToken": "QVdT", "proxyEndpoint": "x"}],
                       "layerPartBlob": "AAAA"});
        assert_eq!(scrub(&v), Some(json!({"repositoryName": "a", "authorizationData": [{"proxyEndpoint": "x"}]})));
        assert_eq!(scrub(&json!({"big": "x".repeat(17 * 1024)})), None);
    }

    #[test]
    fn read_only_operations_are_the_readers() {
        for op in
            ["DescribeImages", "BatchGetImage", "GetRepositoryPolicy", "ListImages", "BatchCheckLayerAvailability"]
        {
            assert!(read_only(op), "{op}");
        }
        for op in ["PutImage", "GetAuthorizationToken", "CreateRepository", "BatchDeleteImage", "UploadLayerPart"] {
            assert!(!read_only(op), "{op}");
        }
    }

    #[test]
    fn caller_identity_tells_root_from_users() {
        let root = Identity {
            account_id: "1".into(),
            principal_arn: "arn:aws:iam::1:root".into(),
            access_key_id: "AK".into(),
            expires_at: None,
        };
        let c = caller_identity(&root);
        assert_eq!((c.kind.as_str(), c.user_name), ("Root", None));
        let user = Identity {
            account_id: "1".into(),
            principal_arn: "arn:aws:iam::1:user/ci/bob".into(),
            access_key_id: "AK".into(),
            expires_at: None,
        };
        let c = caller_identity(&user);
        assert_eq!((c.kind.as_str(), c.user_name.as_deref()), ("IAMUser", Some("bob")));
    }
}
