//! Why a SigV4 verification failed, with AWS's exception name and message for each case.

/// A SigV4 verification failure.
///
/// [`SigV4Error::aws_type`] is the exception name AWS puts in `__type` (JSON protocols) or
/// `Code`; `Display` (and [`SigV4Error::message`]) is the exact message text. Control-plane
/// callers answer HTTP 400 with `{"__type": aws_type(), "message": message()}` for every
/// variant (ECR answers 400 for all of them); [`SigV4Error::http_status`] gives the status for
/// the presigned-URL case too.
///
/// Messages may echo what the client sent (its `Authorization` header, credential scope, dates),
/// never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigV4Error {
    /// No `Authorization` header and no `X-Amz-Algorithm`/`X-Amz-Credential`/`X-Amz-Signature`
    /// query parameter. `MissingAuthenticationTokenException`.
    #[error("Missing Authentication Token")]
    MissingAuthenticationToken,

    /// The `Authorization` header or the presigned query parameters are malformed: a missing
    /// component, a bad `Credential`, an unparsable date, an unsigned `host`, an unsupported
    /// algorithm. `IncompleteSignatureException`; the message says which, in AWS's words.
    #[error("{0}")]
    IncompleteSignature(String),

    /// The access key id is unknown (or the caller rejected the session token).
    /// `UnrecognizedClientException`.
    #[error("The security token included in the request is invalid.")]
    UnrecognizedClient,

    /// The signature does not match the request. `InvalidSignatureException`.
    #[error(
        "The request signature we calculated does not match the signature you provided. Check \
         your AWS Secret Access Key and signing method. Consult the service documentation for \
         details."
    )]
    SignatureDoesNotMatch,

    /// The request time is more than 15 minutes before `now`. `InvalidSignatureException`.
    /// The fields are `YYYYMMDDTHHMMSSZ` timestamps.
    #[error("Signature expired: {request_time} is now earlier than {earliest} ({now} - 15 min.)")]
    SignatureExpired {
        /// The request's `X-Amz-Date`.
        request_time: String,
        /// `now` minus 15 minutes.
        earliest: String,
        /// The server's clock.
        now: String,
    },

    /// The request time is more than 15 minutes after `now`. `InvalidSignatureException`.
    #[error("Signature not yet current: {request_time} is still later than {latest} ({now} + 15 min.)")]
    SignatureNotYetCurrent {
        /// The request's `X-Amz-Date`.
        request_time: String,
        /// `now` plus 15 minutes.
        latest: String,
        /// The server's clock.
        now: String,
    },

    /// The credential scope is wrong: terminator, date, region or service.
    /// `InvalidSignatureException`; the message says which, in AWS's words.
    #[error("{0}")]
    InvalidCredentialScope(String),

    /// A presigned URL used after `X-Amz-Date + X-Amz-Expires`. Reported as S3 reports it
    /// (`AccessDenied`, "Request has expired", HTTP 403), since presigned URLs stand in for the
    /// S3 layer URLs that ECR hands out.
    #[error("Request has expired")]
    PresignedUrlExpired {
        /// When the URL stopped being valid, `YYYYMMDDTHHMMSSZ`.
        expired_at: String,
    },

    /// `x-amz-content-sha256` is neither `UNSIGNED-PAYLOAD` nor the SHA-256 of the body the
    /// caller received. `InvalidSignatureException` (S3's wording; S3 names it
    /// `XAmzContentSHA256Mismatch`).
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    ContentSha256Mismatch,
}

impl SigV4Error {
    /// The AWS exception name, for `__type` in a JSON 1.1 error body.
    pub fn aws_type(&self) -> &'static str {
        match self {
            Self::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            Self::IncompleteSignature(_) => "IncompleteSignatureException",
            Self::UnrecognizedClient => "UnrecognizedClientException",
            Self::SignatureDoesNotMatch
            | Self::SignatureExpired { .. }
            | Self::SignatureNotYetCurrent { .. }
            | Self::InvalidCredentialScope(_)
            | Self::ContentSha256Mismatch => "InvalidSignatureException",
            Self::PresignedUrlExpired { .. } => "AccessDenied",
        }
    }

    /// The exact message AWS sends (same as `to_string()`).
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// The HTTP status to answer with: 400 for everything ECR's control plane reports, 403 for
    /// an expired presigned URL.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::PresignedUrlExpired { .. } => 403,
            _ => 400,
        }
    }
}
