//! What reacts to the event log (see [`berth_meta::events`]): events in EventBridge's envelope
//! with ECR's detail types, webhook subscriptions whose deliveries are signed, at least once, in
//! order per endpoint, and the log's retention.
//!
//! The log itself is written by the metadata store, in the transaction of each change; this
//! crate only reads it, through durable cursors, from jobs of the durable job queue (so with
//! many nodes one node consumes at a time and a crash only delays delivery).

pub mod audit;
pub mod webhooks;

use berth_meta::events::{Event, kind};
use serde_json::{Value, json};

/// `source` of every published event, as ECR's.
pub const SOURCE: &str = "aws.ecr";
/// ECR's detail type of image pushes and deletions.
pub const IMAGE_ACTION: &str = "ECR Image Action";
/// Detail type of the images a lifecycle policy rule expired (one event per image; the image's
/// `ECR Image Action` DELETE events come with it). Detail: `action-type` (`EXPIRE`), `result`,
/// `repository-name`, `image-digest`, `image-tags`, `rule-priority`.
pub const LIFECYCLE_ACTION: &str = "ECR Lifecycle Policy Action";
/// Detail type of a finished image scan. Detail: `scan-status`, `repository-name`,
/// `finding-severity-counts`, `image-digest`, `image-tags`.
pub const IMAGE_SCAN: &str = "ECR Image Scan";
/// The detail types Berth publishes today (replication actions come with that feature).
pub const DETAIL_TYPES: &[&str] = &[IMAGE_ACTION, LIFECYCLE_ACTION, IMAGE_SCAN];

/// The detail type an event of `kind` is published as; `None` for events that stay internal
/// (repository and policy changes: EventBridge carries those only as CloudTrail API calls).
pub fn detail_type(kind: &str) -> Option<&'static str> {
    match kind {
        kind::IMAGE_PUSH | kind::IMAGE_DELETE => Some(IMAGE_ACTION),
        kind::LIFECYCLE_ACTION => Some(LIFECYCLE_ACTION),
        kind::IMAGE_SCAN => Some(IMAGE_SCAN),
        _ => None,
    }
}

/// The event in EventBridge's envelope (`version`, `id`, `detail-type`, `source`, `account`,
/// `time`, `region`, `resources`, `detail`), or `None` when its kind is not published. `id` is
/// the event's id, so every delivery of one event carries the same id.
pub fn envelope(e: &Event) -> Option<Value> {
    let detail_type = detail_type(&e.kind)?;
    let mut detail: Value = serde_json::from_str(&e.detail).unwrap_or_else(|_| json!({}));
    if let Some(d) = detail.as_object_mut() {
        d.remove(berth_meta::events::REPLICATED);
    }
    Some(json!({
        "version": "0",
        "id": e.id,
        "detail-type": detail_type,
        "source": SOURCE,
        "account": e.account_id,
        "time": berth_registry::iso8601(e.created_at),
        "region": e.region,
        "resources": [],
        "detail": detail,
    }))
}

/// The request header that carries a webhook body's signature.
pub const SIGNATURE_HEADER: &str = "berth-signature";

/// The signature header value for `body` sent at `timestamp` (epoch seconds):
/// `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`. The timestamp is signed
/// with the body, so a receiver that rejects old timestamps also rejects replays.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("t={timestamp},v1={}", hex::encode(ctx.sign().as_ref()))
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signature's timestamp is outside the tolerance (a replay, or a wrong clock)")]
    Stale,
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Check a signature header as a receiver should: well-formed, timestamp within `tolerance_secs`
/// of `now_secs`, and a `v1` HMAC that matches (compared in constant time).
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", v)) => v1.push(v),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if v1.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now_secs - t).abs() > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    let expected = sign(secret, t, body);
    let expected = expected.rsplit_once("v1=").map(|(_, h)| h).unwrap_or_default();
    if v1.iter().any(|got| berth_auth::secret_box::constant_time_eq(got.as_bytes(), expected.as_bytes())) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Which events a webhook receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Detail types; empty means all published ones.
    pub detail_types: Vec<String>,
    /// Only events of repositories whose name starts with this.
    pub repository_filter: Option<String>,
}

impl Subscription {
    /// Parse `--events`: `all`, or a comma-separated list of published detail types.
    pub fn parse_events(spec: &str) -> Result<Vec<String>, String> {
        let spec = spec.trim();
        if spec.eq_ignore_ascii_case("all") {
            return Ok(Vec::new());
        }
        let mut out: Vec<String> = Vec::new();
        for t in spec.split(',').map(str::trim) {
            if !DETAIL_TYPES.contains(&t) {
                return Err(format!(
                    "unknown event type '{t}' in --events: use 'all' or a comma-separated list of: {}",
                    DETAIL_TYPES.join(", ")
                ));
            }
            if !out.iter().any(|x| x == t) {
                out.push(t.to_string());
            }
        }
        Ok(out)
    }

    /// The stored form of the detail types: a JSON array, `["all"]` for all.
    pub fn events_json(&self) -> String {
        if self.detail_types.is_empty() { json!(["all"]) } else { json!(self.detail_types) }.to_string()
    }

    /// From the stored form.
    pub fn from_stored(events_json: &str, repository_filter: Option<&str>) -> Subscription {
        let list: Vec<String> = serde_json::from_str(events_json).unwrap_or_default();
        let detail_types = if list.iter().any(|t| t == "all") { Vec::new() } else { list };
        Subscription { detail_types, repository_filter: repository_filter.map(str::to_string) }
    }

    /// Whether the webhook receives `e`.
    pub fn matches(&self, e: &Event) -> bool {
        let Some(t) = detail_type(&e.kind) else { return false };
        if !self.detail_types.is_empty() && !self.detail_types.iter().any(|x| x == t) {
            return false;
        }
        match &self.repository_filter {
            None => true,
            Some(prefix) => e.repository.as_deref().is_some_and(|r| r.starts_with(prefix.as_str())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, repo: &str) -> Event {
        Event {
            seq: 1,
            txid: 0,
            id: "e-1".into(),
            account_id: "123456789012".into(),
            region: "us-west-2".into(),
            kind: kind.into(),
            repository: Some(repo.into()),
            detail: r#"{"result":"SUCCESS","repository-name":"app","image-digest":"sha256:ab","action-type":"PUSH","image-tag":"latest"}"#.into(),
            created_at: 1_573_869_274_000,
        }
    }

    #[test]
    fn envelope_is_eventbridge_shaped() {
        let e = envelope(&event(kind::IMAGE_PUSH, "app")).unwrap();
        assert_eq!(
            e,
            json!({"version": "0", "id": "e-1", "detail-type": "ECR Image Action", "source": "aws.ecr",
                "account": "123456789012", "time": "2019-11-16T01:54:34Z", "region": "us-west-2", "resources": [],
                "detail": {"result": "SUCCESS", "repository-name": "app", "image-digest": "sha256:ab",
                    "action-type": "PUSH", "image-tag": "latest"}})
        );
        assert!(envelope(&event(kind::REPOSITORY_CREATE, "app")).is_none());
    }

    #[test]
    fn signatures_verify_and_refuse_tampering_and_replay() {
        let h = sign(b"s3cret", 1000, b"{}");
        assert_eq!(verify(b"s3cret", &h, b"{}", 1100, 300), Ok(()));
        assert_eq!(verify(b"s3cret", &h, b"{ }", 1100, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"other", &h, b"{}", 1100, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"s3cret", &h, b"{}", 1301, 300), Err(SignatureError::Stale));
        assert_eq!(verify(b"s3cret", "v1=00", b"{}", 1000, 300), Err(SignatureError::Malformed));
        // The timestamp is signed: moving it forward breaks the signature.
        let moved = h.replace("t=1000", "t=1200");
        assert_eq!(verify(b"s3cret", &moved, b"{}", 1200, 300), Err(SignatureError::Mismatch));
    }

    #[test]
    fn subscriptions_filter_by_type_and_repository_prefix() {
        assert_eq!(Subscription::parse_events("all"), Ok(vec![]));
        assert_eq!(Subscription::parse_events("ECR Image Action"), Ok(vec![IMAGE_ACTION.to_string()]));
        assert_eq!(Subscription::parse_events("ECR Image Scan"), Ok(vec![IMAGE_SCAN.to_string()]));
        assert!(Subscription::parse_events("ECR Replication Action").unwrap_err().contains("unknown event type"));
        let all = Subscription::from_stored(r#"["all"]"#, None);
        assert!(all.matches(&event(kind::IMAGE_DELETE, "x")));
        assert!(!all.matches(&event(kind::REPOSITORY_DELETE, "x")));
        let prod = Subscription::from_stored(r#"["ECR Image Action"]"#, Some("prod/"));
        assert!(prod.matches(&event(kind::IMAGE_PUSH, "prod/api")));
        assert!(!prod.matches(&event(kind::IMAGE_PUSH, "dev/api")));
        assert_eq!(Subscription { detail_types: vec![], repository_filter: None }.events_json(), r#"["all"]"#);
    }
}
