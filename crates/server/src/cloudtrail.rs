//! CloudTrail's `LookupEvents` over the audit trail: `POST /` with `X-Amz-Target:
//! com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents`, AWS JSON 1.1,
//! SigV4-signed for service `cloudtrail`, authorized by IAM as `cloudtrail:LookupEvents` (on
//! `*`, as the ECR account-level actions). A caller sees its own account's records only.
//! Errors are AWS JSON errors (`{"__type", "message"}`), mapped once: the signature's and the
//! registry's as ECR maps them (`AccessDeniedException`, ...), the lookup's with CloudTrail's
//! names (`InvalidLookupAttributesException`, `InvalidTimeRangeException`, ...).

use crate::AppState;
use crate::ecr::{self, EcrError};
use axum::body::Body;
use axum::response::Response;
use berth_events::audit::{LookupError, lookup_events};
use berth_registry::{Caller, Clock, SystemClock, Target};
use http::StatusCode;
use http::request::Parts;
use serde_json::Value;

/// Prefix of every CloudTrail `X-Amz-Target`.
pub const TARGET_PREFIX: &str = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.";

/// Largest request body (a LookupEvents request is small: one attribute of at most 2,000
/// characters and a token).
const BODY_LIMIT: u64 = 64 * 1024;

/// Whether the request is for CloudTrail (by its `X-Amz-Target`).
pub(crate) fn is_target(parts: &Parts) -> bool {
    parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with(TARGET_PREFIX))
}

/// Serve one CloudTrail request.
pub async fn handle(state: &AppState, mut parts: Parts, mut body: Body) -> Response {
    let request_id = crate::obs::request_id().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    crate::obs::note(|f| f.api = "cloudtrail");
    match serve(state, &mut parts, &mut body).await {
        Ok(v) => {
            let mut r = Response::new(Body::from(v.to_string()));
            ecr::set_headers(&mut r, &request_id);
            r
        }
        Err(e) => {
            crate::obs::note_error(e.kind, &e.message);
            e.into_response(&request_id)
        }
    }
}

/// The one mapping of lookup failures to the wire.
impl From<LookupError> for EcrError {
    fn from(e: LookupError) -> EcrError {
        match e {
            LookupError::Meta(m) if m.is_unavailable() => EcrError {
                kind: "ServerException",
                message: "The metadata database is unavailable; try again.".into(),
                status: StatusCode::SERVICE_UNAVAILABLE,
                kms_error: None,
            },
            LookupError::Meta(m) => {
                tracing::error!(error = %m, "audit lookup failed");
                EcrError {
                    kind: "ServerException",
                    message: "An internal error occurred.".into(),
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    kms_error: None,
                }
            }
            other => EcrError::new(other.aws_code(), other.to_string()),
        }
    }
}

/// The signature's header part, then the bounded body, then the signature, then the operation.
async fn serve(state: &AppState, parts: &mut Parts, body: &mut Body) -> Result<Value, EcrError> {
    let reg = &*state.registry;
    let auth = ecr::authenticate_headers(reg, parts, "cloudtrail", reg.regions()).await?;
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    let op = target.strip_prefix(TARGET_PREFIX).unwrap_or("").to_string();
    let too_large = || {
        EcrError::new(
            "SerializationException",
            format!("The request body is larger than the {BODY_LIMIT} bytes allowed."),
        )
    };
    // Kept whole: it holds the body's share of the in-flight budget until the answer.
    let req = ecr::read_json(auth, parts, body, BODY_LIMIT, too_large).await?;
    let (identity, input) = (&req.identity, &req.input);
    crate::obs::note(|f| {
        f.operation = Some(op.chars().filter(|c| !c.is_control()).take(64).collect());
        f.known_operation = op == "LookupEvents";
        f.request_parameters = crate::obs::scrub(input);
    });
    match op.as_str() {
        "LookupEvents" => {
            let origin = crate::origin(state.trust_forwarded, parts);
            let caller = Caller { identity: Some(identity), source_ip: origin.ip, secure_transport: origin.secure };
            reg.authorize(&caller, "cloudtrail:LookupEvents", Target::Account).await?;
            let Some(sink) = &state.audit else {
                return Err(EcrError::new("UnsupportedOperationException", "This server keeps no audit trail."));
            };
            Ok(lookup_events(sink.store().as_ref(), &identity.account_id, input, SystemClock.now_ms()).await?)
        }
        other => Err(EcrError::new(
            "UnknownOperationException",
            format!(
                "Berth does not implement cloudtrail:{}",
                other.chars().filter(|c| !c.is_control()).take(200).collect::<String>()
            ),
        )),
    }
}
