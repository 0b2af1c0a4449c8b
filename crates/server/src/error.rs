//! The one mapping of [`berth_registry::Error`] to OCI error responses
//! (`{"errors":[{"code","message","detail"}]}` with the spec's statuses).

use axum::body::Body;
use axum::response::Response;
use berth_oci::ErrorCode;
use berth_registry::Error;
use http::{StatusCode, header};
use serde_json::{Value, json};

/// Seconds a client is asked to wait (`Retry-After`) when a backend is unavailable.
pub const RETRY_AFTER_SECS: &str = "5";

/// An OCI error response about to be sent.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub detail: Value,
}

impl ApiError {
    /// An error with the code's default status.
    pub fn new(code: ErrorCode, message: impl Into<String>, detail: Value) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(code.status()).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            message: message.into(),
            detail,
        }
    }

    /// Override the HTTP status.
    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    /// The HTTP response (503s say when to retry).
    pub fn into_response(self) -> Response {
        crate::obs::note_error(self.code.as_str(), &self.message);
        // The request id goes into the detail (an object; other details move to `reason`).
        let detail = match (crate::obs::request_id(), self.detail) {
            (None, d) => d,
            (Some(id), Value::Null) => json!({ "requestId": id }),
            (Some(id), Value::Object(mut m)) => {
                m.insert("requestId".into(), json!(id));
                Value::Object(m)
            }
            (Some(id), other) => json!({ "reason": other, "requestId": id }),
        };
        let body = json!({"errors": [{"code": self.code.as_str(), "message": self.message, "detail": detail}]});
        let mut b = Response::builder().status(self.status).header(header::CONTENT_TYPE, "application/json");
        if matches!(self.status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::INSUFFICIENT_STORAGE) {
            b = b.header(header::RETRY_AFTER, RETRY_AFTER_SECS);
        }
        b.body(Body::from(body.to_string())).expect("valid response")
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        use ErrorCode as C;
        let msg = e.to_string();
        match e {
            Error::NameInvalid(n) => ApiError::new(C::NameInvalid, msg, json!({"name": n})),
            Error::TagImmutable { tag, .. } => ApiError::new(C::TagInvalid, msg, json!({"tag": tag})),
            Error::Unauthenticated => ApiError::new(C::Unauthorized, msg, Value::Null),
            Error::TokenExpired | Error::CredentialsExpired | Error::Denied(_) | Error::PullGated(_) => {
                ApiError::new(C::Denied, msg, Value::Null)
            }
            Error::BlobUnknown(d) => ApiError::new(C::BlobUnknown, msg, json!({"digest": d})),
            Error::BlobUploadUnknown(id) => ApiError::new(C::BlobUploadUnknown, msg, json!({"uuid": id})),
            Error::BlobUploadInvalid(m) => ApiError::new(C::BlobUploadInvalid, m, Value::Null),
            Error::RangeNotSatisfiable { size } => ApiError::new(C::BlobUploadInvalid, msg, json!({"size": size}))
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE),
            Error::DigestInvalid(m) => {
                ApiError::new(C::DigestInvalid, "provided digest did not match uploaded content", json!(m))
            }
            Error::ManifestInvalid(m) => ApiError::new(C::ManifestInvalid, "manifest invalid", json!(m)),
            Error::ManifestSizeMismatch { ref digest, declared, stored } => ApiError::new(
                C::ManifestInvalid,
                msg.clone(),
                json!({"digest": digest, "declaredSize": declared, "storedSize": stored}),
            )
            .with_status(StatusCode::BAD_REQUEST),
            Error::ManifestTooLarge => ApiError::new(
                C::SizeInvalid,
                format!("manifest exceeds the {} byte limit", berth_oci::MAX_MANIFEST_BYTES),
                Value::Null,
            )
            .with_status(StatusCode::PAYLOAD_TOO_LARGE),
            Error::ManifestBlobUnknown(ds) => {
                ApiError::new(C::ManifestBlobUnknown, "blob unknown to registry", json!({"digests": ds}))
                    .with_status(StatusCode::BAD_REQUEST)
            }
            Error::ManifestChildUnknown(ds) => ApiError::new(
                C::ManifestBlobUnknown,
                "manifest references manifests unknown to the repository",
                json!({"digests": ds}),
            )
            .with_status(StatusCode::BAD_REQUEST),
            Error::EmptyUpload(_) | Error::LayerAlreadyExists(_) => {
                ApiError::new(C::BlobUploadInvalid, msg, Value::Null)
            }
            Error::ManifestUnknown(r) => ApiError::new(C::ManifestUnknown, msg, json!({"reference": r})),
            Error::ImageArchived(r) => ApiError::new(C::ManifestUnknown, msg, json!({"reference": r})),
            Error::TagInvalid(t) => ApiError::new(C::TagInvalid, msg, json!({"tag": t})),
            Error::BodyFailed(m) => ApiError::new(C::BlobUploadInvalid, "request body could not be read", json!(m)),
            Error::Unavailable(m) => ApiError::new(C::Unavailable, m, Value::Null),
            Error::StorageFull(m) => {
                ApiError::new(C::Unavailable, m, Value::Null).with_status(StatusCode::INSUFFICIENT_STORAGE)
            }
            Error::RepositoryNotFound { name, .. } => ApiError::new(C::NameUnknown, msg, json!({"name": name})),
            Error::RepositoryGone => ApiError::new(C::NameUnknown, msg, Value::Null),
            // The repository's KMS key refuses (disabled, pending deletion, gone).
            Error::Kms { code, .. } => ApiError::new(C::Denied, msg, json!({"kmsError": code})),
            Error::InvalidParameter(_)
            | Error::RepositoryAlreadyExists { .. }
            | Error::RepositoryNotEmpty { .. }
            | Error::TooManyTags(_)
            | Error::InvalidTagParameter(_)
            | Error::AccountExists(_)
            | Error::AccountUnknown(_)
            | Error::NoSuchEntity(_)
            | Error::EntityAlreadyExists(_)
            | Error::DeleteConflict(_)
            | Error::MalformedPolicyDocument(_)
            | Error::LimitExceeded(_)
            | Error::Validation(_)
            | Error::RepositoryPolicyNotFound { .. }
            | Error::RegistryPolicyNotFound(_)
            | Error::LifecyclePolicyNotFound { .. }
            | Error::LifecyclePreviewNotFound { .. }
            | Error::LifecyclePreviewInProgress
            | Error::TemplateAlreadyExists { .. }
            | Error::TemplateNotFound { .. }
            | Error::InvalidIdentityToken(_)
            | Error::IdentityTokenExpired(_)
            | Error::IdpCommunication(_)
            | Error::PackedPolicyTooLarge(_) => {
                ApiError::new(C::Unsupported, msg, Value::Null).with_status(StatusCode::BAD_REQUEST)
            }
            Error::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                ApiError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    code: C::Unknown,
                    message: "internal server error".into(),
                    detail: Value::Null,
                }
            }
        }
    }
}
