//! The audit trail: one CloudTrail-shaped record per API call (control plane and data plane,
//! allowed or denied) and per action Berth takes itself.
//!
//! The HTTP layer describes each call as an [`ApiCall`] and hands it to an [`AuditSink`]
//! (never blocking the request); the sink batches records off the request path into the
//! metadata store, hash-chained per node, and a clean shutdown flushes it.

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
}

/// Where the HTTP layer hands its [`ApiCall`]s: must return at once (the request waits).
pub trait Recorder: Send + Sync {
    /// Take one record.
    fn record(&self, call: ApiCall);
}
