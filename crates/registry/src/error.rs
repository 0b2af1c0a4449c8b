//! The registry's one error enum. The server maps it to OCI error bodies (and ECR exceptions).

impl Error {
    /// [`Error::RepositoryGone`] as [`Error::RepositoryNotFound`] naming `name` in `registry`.
    pub fn gone_as_not_found(self, name: &str, registry: &str) -> Error {
        match self {
            Error::RepositoryGone => {
                Error::RepositoryNotFound { name: name.to_string(), registry: registry.to_string() }
            }
            other => other,
        }
    }
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid repository name")]
    NameInvalid(String),
    #[error("blob unknown to registry")]
    BlobUnknown(String),
    #[error("blob upload unknown to registry")]
    BlobUploadUnknown(String),
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    /// A chunk does not start where the upload ends, or a `Range` is past the end.
    #[error("requested range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error("{0}")]
    DigestInvalid(String),
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    /// A descriptor of the manifest declares a size other than the stored blob's (or child
    /// manifest's) size.
    #[error("manifest invalid: the descriptor of {digest} declares {declared} bytes but {stored} bytes are stored")]
    ManifestSizeMismatch { digest: String, declared: u64, stored: u64 },
    #[error("manifest too large")]
    ManifestTooLarge,
    /// Blobs the manifest references are not in the repository.
    #[error("blob unknown to registry")]
    ManifestBlobUnknown(Vec<String>),
    #[error("manifest unknown")]
    ManifestUnknown(String),
    /// The manifest is that of an archived image (or one being restored): it cannot be pulled.
    #[error(
        "manifest unknown: the image is archived and cannot be pulled until it is restored (UpdateImageStorageClass to STANDARD) or pushed again"
    )]
    ImageArchived(String),
    #[error("invalid tag")]
    TagInvalid(String),
    /// The tag exists and the repository's mutability settings forbid moving it.
    #[error(
        "The image tag '{tag}' already exists in the '{repo}' repository and cannot be overwritten because the repository is immutable."
    )]
    TagImmutable { tag: String, repo: String },
    /// Data-plane credentials are missing or invalid (401).
    #[error("Not Authorized")]
    Unauthenticated,
    /// The registry token has expired (403).
    #[error("Your authorization token has expired. Reauthenticate and try again.")]
    TokenExpired,
    /// The caller may not do this (403).
    #[error("{0}")]
    Denied(String),
    /// The repository's pull gate refuses the image (403 DENIED); the caller may still pull it
    /// with the bypass action ([`crate::scan::BYPASS_PULL_GATE`]).
    #[error("{0}")]
    PullGated(String),
    #[error("request body failed: {0}")]
    BodyFailed(String),
    /// A backend (metadata database, blob storage) cannot be reached for now: retry later
    /// (503 with `Retry-After`). Nothing was changed.
    #[error("{0}")]
    Unavailable(String),
    /// The repository was deleted while the operation ran (callers that know its name answer
    /// [`Error::RepositoryNotFound`]).
    #[error("the repository no longer exists")]
    RepositoryGone,
    /// The storage (or the metadata database's disk) is full: the write was refused and its
    /// partial bytes released; retry once space is freed (507 with `Retry-After`).
    #[error("{0}")]
    StorageFull(String),
    /// A control-plane parameter is invalid (ECR `InvalidParameterException`).
    #[error("{0}")]
    InvalidParameter(String),
    #[error("account {0} already exists")]
    AccountExists(String),
    #[error("account {0} does not exist")]
    AccountUnknown(String),
    #[error("The repository with name '{name}' does not exist in the registry with id '{registry}'")]
    RepositoryNotFound { name: String, registry: String },
    #[error("The repository with name '{name}' already exists in the registry with id '{registry}'")]
    RepositoryAlreadyExists { name: String, registry: String },
    #[error(
        "The repository with name '{name}' in registry with id '{registry}' cannot be deleted because it still contains images"
    )]
    RepositoryNotEmpty { name: String, registry: String },
    /// CompleteLayerUpload of an upload without parts.
    #[error("The upload with id '{0}' cannot be completed because it does not have any parts.")]
    EmptyUpload(String),
    /// CompleteLayerUpload of a layer the repository already has.
    #[error("The layer '{0}' already exists in the repository.")]
    LayerAlreadyExists(String),
    /// Child manifests an index references are not in the repository.
    #[error("manifest unknown")]
    ManifestChildUnknown(Vec<String>),
    /// A resource tag key or value breaks the length rules.
    #[error("{0}")]
    InvalidTagParameter(String),
    /// More resource tags than a repository may have.
    #[error("{0}")]
    TooManyTags(String),
    /// An IAM entity (user, group, policy, access key) does not exist (IAM `NoSuchEntity`).
    #[error("{0}")]
    NoSuchEntity(String),
    /// An IAM entity with this name exists (IAM `EntityAlreadyExists`).
    #[error("{0}")]
    EntityAlreadyExists(String),
    /// The entity still owns things that must go first (IAM `DeleteConflict`).
    #[error("{0}")]
    DeleteConflict(String),
    /// A policy document is invalid (IAM `MalformedPolicyDocument`; ECR maps it to
    /// `InvalidParameterException`).
    #[error("{0}")]
    MalformedPolicyDocument(String),
    /// A quota would be exceeded (IAM `LimitExceeded`).
    #[error("{0}")]
    LimitExceeded(String),
    /// A request parameter breaks IAM's rules (IAM `ValidationError`).
    #[error("{0}")]
    Validation(String),
    /// Temporary (STS) credentials are past their expiry (`ExpiredToken` /
    /// `ExpiredTokenException`).
    #[error("The security token included in the request is expired")]
    CredentialsExpired,
    /// A web identity token is malformed, badly signed, or not for this provider or audience
    /// (STS `InvalidIdentityToken`).
    #[error("{0}")]
    InvalidIdentityToken(String),
    /// A web identity token has expired (STS `ExpiredTokenException`).
    #[error("{0}")]
    IdentityTokenExpired(String),
    /// The identity provider's keys could not be obtained (STS `IDPCommunicationError`).
    #[error("{0}")]
    IdpCommunication(String),
    /// Session policies and tags are too large together (STS `PackedPolicyTooLarge`).
    #[error("{0}")]
    PackedPolicyTooLarge(String),
    #[error(
        "Repository policy does not exist for the repository with name '{name}' in the registry with id '{registry}'"
    )]
    RepositoryPolicyNotFound { name: String, registry: String },
    #[error("Registry policy does not exist in the registry with id '{0}'")]
    RegistryPolicyNotFound(String),
    #[error(
        "Lifecycle policy does not exist for the repository with name '{name}' in the registry with id '{registry}'"
    )]
    LifecyclePolicyNotFound { name: String, registry: String },
    #[error(
        "Lifecycle policy preview does not exist for the repository with name '{name}' in the registry with id '{registry}'"
    )]
    LifecyclePreviewNotFound { name: String, registry: String },
    #[error("The previous lifecycle policy preview request has not completed. Wait and try again.")]
    LifecyclePreviewInProgress,
    /// A repository creation template exists for the prefix (ECR `TemplateAlreadyExistsException`).
    #[error(
        "The repository creation template with prefix '{prefix}' already exists in the registry with id '{registry}'"
    )]
    TemplateAlreadyExists { prefix: String, registry: String },
    /// No repository creation template has the prefix (ECR `TemplateNotFoundException`).
    #[error(
        "The repository creation template with prefix '{prefix}' does not exist in the registry with id '{registry}'"
    )]
    TemplateNotFound { prefix: String, registry: String },
    /// A KMS request failed as KMS fails it: `code` is KMS's exception name
    /// (`NotFoundException`, `DisabledException`, `KMSInvalidStateException`,
    /// `InvalidCiphertextException`, `ValidationException`, ...) and `message` its text. The KMS
    /// API answers with that exception; ECR answers `KmsException` with `kmsError` = `code`.
    #[error("{message}")]
    Kms { code: &'static str, message: String },
    /// A backend failed; details are for logs only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<berth_meta::MetaError> for Error {
    fn from(e: berth_meta::MetaError) -> Self {
        if e.is_repository_gone() {
            return Error::RepositoryGone;
        }
        if let berth_meta::MetaError::BlobBeingDeleted(d) = &e {
            return Error::Unavailable(format!("blob {d} is being garbage-collected; retry the upload"));
        }
        if e.is_full() {
            tracing::warn!(error = %e, "the metadata database is out of space");
            return Error::StorageFull("the registry's storage is full; retry once space is freed".into());
        }
        if e.is_unavailable() {
            tracing::warn!(error = %e, "the metadata database is unavailable");
            return Error::Unavailable("the metadata database is unavailable; retry later".into());
        }
        Error::Internal(e.to_string())
    }
}
