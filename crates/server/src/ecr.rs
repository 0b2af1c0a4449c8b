//! The ECR control plane: `POST /` with `X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.<Op>`,
//! AWS JSON 1.1 bodies, SigV4-signed (service `ecr`, region from the credential scope).
//! Errors are `{"__type": "<Exception>", "message": "..."}` with HTTP 400, as ECR sends them.

use crate::AppState;
use axum::body::Body;
use axum::response::Response;
use berth_auth::sigv4;
use berth_meta::{ImageStatus, Namespace, RepositoryInfo, TagStatus};
use berth_registry::{
    Caller, Error, Identity, ImageFailure, ImageId, ImageIdCursor, Registry, RepoSettings, TagFilter, Target,
    exclusions_of,
};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::time::SystemTime;

mod lifecycle;
mod replication;
mod scan;
mod templates;

/// Prefix of every ECR `X-Amz-Target`.
pub const TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921.";

/// An ECR error response.
#[derive(Debug)]
pub struct EcrError {
    pub kind: &'static str,
    pub message: String,
    pub status: StatusCode,
    /// `KmsException`'s `kmsError`: the KMS exception behind it.
    pub kms_error: Option<&'static str>,
}

impl EcrError {
    pub(crate) fn new(kind: &'static str, message: impl Into<String>) -> EcrError {
        EcrError { kind, message: message.into(), status: StatusCode::BAD_REQUEST, kms_error: None }
    }

    fn invalid(message: impl Into<String>) -> EcrError {
        EcrError::new("InvalidParameterException", message)
    }

    pub(crate) fn into_response(self, request_id: &str) -> Response {
        // AWS omits `message` when it has none (e.g. UnknownOperationException).
        let mut body = if self.message.is_empty() {
            json!({"__type": self.kind})
        } else {
            json!({"__type": self.kind, "message": self.message})
        };
        if let Some(k) = self.kms_error {
            body["kmsError"] = json!(k);
        }
        let body = body.to_string();
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = self.status;
        set_headers(&mut r, request_id);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(crate::error::RETRY_AFTER_SECS));
        }
        r
    }
}

/// The one mapping of registry errors to ECR exceptions.
impl From<Error> for EcrError {
    fn from(e: Error) -> EcrError {
        let msg = e.to_string();
        match e {
            Error::InvalidParameter(_) => EcrError::invalid(msg),
            Error::Validation(_) => EcrError::new("ValidationException", msg),
            Error::RepositoryNotFound { .. } | Error::RepositoryGone => {
                EcrError::new("RepositoryNotFoundException", msg)
            }
            Error::RepositoryAlreadyExists { .. } => EcrError::new("RepositoryAlreadyExistsException", msg),
            Error::RepositoryNotEmpty { .. } => EcrError::new("RepositoryNotEmptyException", msg),
            Error::TooManyTags(_) => EcrError::new("TooManyTagsException", msg),
            Error::InvalidTagParameter(_) => EcrError::new("InvalidTagParameterException", msg),
            Error::Denied(_) => EcrError::new("AccessDeniedException", msg),
            // The repository's KMS key cannot be used (disabled, pending deletion, missing).
            Error::Kms { code, .. } => EcrError { kms_error: Some(code), ..EcrError::new("KmsException", msg) },
            Error::Unauthenticated | Error::TokenExpired => EcrError {
                kind: "UnrecognizedClientException",
                message: "The security token included in the request is invalid.".into(),
                status: StatusCode::FORBIDDEN,
                kms_error: None,
            },
            Error::CredentialsExpired => EcrError::new("ExpiredTokenException", msg),
            Error::RepositoryPolicyNotFound { .. } => EcrError::new("RepositoryPolicyNotFoundException", msg),
            Error::RegistryPolicyNotFound(_) => EcrError::new("RegistryPolicyNotFoundException", msg),
            Error::LifecyclePolicyNotFound { .. } => EcrError::new("LifecyclePolicyNotFoundException", msg),
            Error::LifecyclePreviewNotFound { .. } => EcrError::new("LifecyclePolicyPreviewNotFoundException", msg),
            Error::LifecyclePreviewInProgress => EcrError::new("LifecyclePolicyPreviewInProgressException", msg),
            Error::TemplateAlreadyExists { .. } => EcrError::new("TemplateAlreadyExistsException", msg),
            Error::TemplateNotFound { .. } => EcrError::new("TemplateNotFoundException", msg),
            Error::LimitExceeded(_) => EcrError::new("LimitExceededException", msg),
            Error::Unavailable(_) | Error::StorageFull(_) => EcrError {
                kind: "ServerException",
                message: msg,
                status: StatusCode::SERVICE_UNAVAILABLE,
                kms_error: None,
            },
            Error::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                EcrError {
                    kind: "ServerException",
                    message: "An internal error occurred.".into(),
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    kms_error: None,
                }
            }
            other => {
                tracing::error!(error = %other, "unexpected registry error on the control plane");
                EcrError {
                    kind: "ServerException",
                    message: "An internal error occurred.".into(),
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    kms_error: None,
                }
            }
        }
    }
}

impl From<sigv4::SigV4Error> for EcrError {
    fn from(e: sigv4::SigV4Error) -> EcrError {
        EcrError {
            kind: e.aws_type(),
            message: e.message(),
            status: StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
            kms_error: None,
        }
    }
}

pub(crate) fn set_headers(r: &mut Response, request_id: &str) {
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-amz-json-1.1"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
}

/// What a control-plane operation knows about its caller.
struct Ctx<'a> {
    reg: &'a Registry,
    identity: Identity,
    origin: crate::Origin,
    region: String,
    /// `host[:port]` the client addressed.
    host: String,
    /// The request carries the replication header (a peer deployment's replication).
    replication: bool,
}

impl Ctx<'_> {
    fn ns(&self) -> Namespace {
        self.reg.namespace(&self.identity.account_id, &self.region)
    }

    fn caller(&self) -> Caller<'_> {
        Caller { identity: Some(&self.identity), source_ip: self.origin.ip, secure_transport: self.origin.secure }
    }

    /// The namespace of an optional `registryId` (the caller's own account by default), without
    /// authorizing anything.
    fn ns_of(&self, registry_id: Option<&str>) -> Result<Namespace, EcrError> {
        match registry_id {
            None => Ok(self.ns()),
            Some(id) if !berth_registry::valid_account_id(id) => Err(EcrError::invalid(
                "Invalid parameter at 'registryId' failed to satisfy constraint: 'must satisfy regular expression [0-9]{12}'",
            )),
            Some(id) => Ok(self.reg.namespace(id, &self.region)),
        }
    }

    /// The namespace of an optional `registryId`, after authorizing `ecr:<action>` on repository
    /// `name` there (or on all its repositories when `name` is `None`). Another account's
    /// repository is reachable when its repository policy allows the caller.
    async fn registry_ns(
        &self,
        registry_id: Option<&str>,
        action: &str,
        name: Option<&str>,
    ) -> Result<Namespace, EcrError> {
        let ns = self.ns_of(registry_id)?;
        let target = match name {
            Some(name) => Target::Repository { ns: &ns, name },
            None => Target::AllRepositories(&ns),
        };
        self.reg.authorize(&self.caller(), &format!("ecr:{action}"), target).await?;
        Ok(ns)
    }

    /// Authorize an action that has no resource (`*`) in the caller's own account.
    async fn authorize_account(&self, action: &str) -> Result<(), EcrError> {
        Ok(self.reg.authorize(&self.caller(), &format!("ecr:{action}"), Target::Account).await?)
    }

    fn repo_json(&self, info: &RepositoryInfo) -> Value {
        let mut v = json!({
            "repositoryArn": format!("arn:aws:ecr:{}:{}:repository/{}", info.region, info.account_id, info.name),
            "registryId": info.account_id,
            "repositoryName": info.name,
            "repositoryUri": format!(
                "{}/{}",
                self.reg.registry_host(&self.reg.namespace(&info.account_id, &info.region), &self.host),
                info.name
            ),
            "createdAt": info.created_at as f64 / 1000.0,
            "imageTagMutability": info.image_tag_mutability,
            "imageScanningConfiguration": {"scanOnPush": info.scan_on_push},
            "encryptionConfiguration": {"encryptionType": info.encryption_type},
        });
        let filters = exclusions_of(info);
        if !filters.is_empty() {
            v["imageTagMutabilityExclusionFilters"] = json!(filters);
        }
        if let Some(k) = &info.kms_key {
            v["encryptionConfiguration"]["kmsKey"] = json!(k);
        }
        v
    }
}

/// Why a SigV4-signed request was refused.
pub(crate) enum SignedError {
    Sig(sigv4::SigV4Error),
    Registry(Error),
}

/// A request whose SigV4 header part checked out (form, syntax, credential scope, time, an
/// active access key or live temporary credentials with their session token); the signature itself, which covers the body, is
/// checked by [`HeaderAuth::verify`] once the body is read.
pub(crate) struct HeaderAuth {
    identity: Identity,
    parsed: sigv4::ParsedSignature,
    secret: sigv4::SecretKey,
}

/// Check everything of a SigV4-signed request for `service` (credential scope region among
/// `regions`) that does not need its body, so that a request without valid credentials is
/// refused before any body byte is read. Errors as [`sigv4::parse`], then
/// [`sigv4::SigV4Error::UnrecognizedClient`] for an unknown or inactive access key, or a session
/// token that is missing, wrong, or given with a long-term key; `Error::CredentialsExpired` for
/// expired temporary credentials.
pub(crate) async fn authenticate_headers(
    reg: &Registry,
    parts: &mut Parts,
    service: &str,
    regions: &[String],
) -> Result<HeaderAuth, SignedError> {
    // HTTP/2 carries the host as :authority; SigV4 signs it as `host`.
    if !parts.headers.contains_key(header::HOST)
        && let Some(a) = parts.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        parts.headers.insert(header::HOST, a);
    }
    // `parse` does not look at the body hash.
    let sreq = signed_request(parts, sigv4::EMPTY_SHA256);
    let parsed = sigv4::parse(&sreq, service, regions, SystemTime::now()).map_err(SignedError::Sig)?;
    require_signed(parts, &parsed)?;
    let key = reg
        .signing_key(parsed.access_key_id())
        .await
        .map_err(SignedError::Registry)?
        .ok_or(SignedError::Sig(sigv4::SigV4Error::UnrecognizedClient))?;
    // Temporary credentials need their session token; long-term keys take none.
    let token_ok = match (&key.session_token_sha256, parsed.session_token()) {
        (None, None) => true,
        (Some(want), Some(given)) => {
            berth_auth::constant_time_eq(want.as_bytes(), hex_sha256(given.as_bytes()).as_bytes())
        }
        _ => false,
    };
    if !token_ok {
        return Err(SignedError::Sig(sigv4::SigV4Error::UnrecognizedClient));
    }
    let (identity, secret) = (key.identity, key.secret);
    Ok(HeaderAuth { identity, parsed, secret })
}

impl HeaderAuth {
    /// Check the signature over the request and its whole `body`; the caller's identity with
    /// what the signature established.
    pub(crate) fn verify(self, parts: &Parts, body: &[u8]) -> Result<(Identity, sigv4::Verified), SignedError> {
        let body_sha = hex_sha256(body);
        let verified = self.parsed.verify(&signed_request(parts, &body_sha), &self.secret).map_err(SignedError::Sig)?;
        Ok((self.identity, verified))
    }
}

fn signed_request<'a>(parts: &'a Parts, body_sha256: &'a str) -> sigv4::Request<'a> {
    sigv4::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body_sha256,
    }
}

impl From<SignedError> for EcrError {
    fn from(e: SignedError) -> EcrError {
        match e {
            SignedError::Sig(e) => EcrError::from(e),
            SignedError::Registry(e) => EcrError::from(e),
        }
    }
}

/// Largest `layerPartBlob` (decoded), as ECR's API model.
const MAX_PART_BLOB: u64 = 20 * 1024 * 1024;
/// Room for the JSON around the one large member of a request.
const JSON_SLACK: u64 = 64 * 1024;
/// Largest body of an operation without a large member.
const SMALL_BODY: u64 = 1024 * 1024;

/// The largest request body `op` may carry: an UploadLayerPart carries a base64 part of up to
/// [`MAX_PART_BLOB`], a PutImage a manifest of up to 4 MiB that JSON escaping may triple
/// (`\u00e9` for a two-byte character); everything else is small.
fn body_limit(op: &str) -> u64 {
    match op {
        "UploadLayerPart" => MAX_PART_BLOB.div_ceil(3) * 4 + JSON_SLACK,
        "PutImage" => 3 * berth_oci::MAX_MANIFEST_BYTES as u64 + JSON_SLACK,
        _ => SMALL_BODY,
    }
}

/// The refusal of a body over [`body_limit`].
fn too_large(op: &str, limit: u64) -> EcrError {
    match op {
        "UploadLayerPart" => EcrError::invalid(format!(
            "Invalid parameter at 'layerPartBlob' failed to satisfy constraint: 'Member must have length less than or equal to {MAX_PART_BLOB}'"
        )),
        "PutImage" => EcrError::invalid(format!(
            "Invalid parameter at 'imageManifest' failed to satisfy constraint: 'Member must have length less than or equal to {}'",
            berth_oci::MAX_MANIFEST_BYTES
        )),
        _ => {
            EcrError::invalid(format!("The request body is larger than the {limit} bytes allowed for this operation."))
        }
    }
}

/// The headers that choose the operation (`X-Amz-Target`) and the protocol (`Content-Type`:
/// ECR's JSON or the IAM/STS Query API) must be signed when present; otherwise a captured
/// request could be replayed as another operation within the signing window.
fn require_signed(parts: &Parts, parsed: &sigv4::ParsedSignature) -> Result<(), SignedError> {
    for (name, shown) in [("x-amz-target", "X-Amz-Target"), ("content-type", "Content-Type")] {
        if parts.headers.contains_key(name) && !parsed.signs_header(name) {
            return Err(SignedError::Sig(sigv4::SigV4Error::IncompleteSignature(format!(
                "'{shown}' must be a 'SignedHeader' in the AWS Authorization."
            ))));
        }
    }
    Ok(())
}

/// The first string in `v` (at any depth) that holds a control character other than tab, line
/// feed and carriage return, as the path of its field (`tags[0].value`). No AWS API accepts
/// them (their patterns exclude them), and some stores cannot keep them (PostgreSQL text).
pub(crate) fn control_char_field(v: &Value, path: &str) -> Option<String> {
    match v {
        Value::String(s) => crate::has_control_chars(s).then(|| path.to_string()),
        Value::Array(a) => a.iter().enumerate().find_map(|(i, x)| control_char_field(x, &format!("{path}[{i}]"))),
        Value::Object(m) => m.iter().find_map(|(k, x)| {
            if crate::has_control_chars(k) {
                return Some(path.to_string());
            }
            control_char_field(x, &if path.is_empty() { k.clone() } else { format!("{path}.{k}") })
        }),
        _ => None,
    }
}

/// Serve one control-plane request.
pub async fn handle(state: &AppState, mut parts: Parts, mut body: Body) -> Response {
    let request_id = crate::obs::request_id().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    crate::obs::note(|f| f.api = "ecr");
    match serve(state, &mut parts, &mut body).await {
        Ok(v) => {
            crate::obs::note(|f| {
                if !f.operation.as_deref().is_some_and(crate::obs::read_only) {
                    f.response_elements = crate::obs::scrub(&v);
                }
            });
            let mut r = Response::new(Body::from(v.to_string()));
            set_headers(&mut r, &request_id);
            r
        }
        Err(e) => {
            crate::obs::note_error(e.kind, &e.message);
            e.into_response(&request_id)
        }
    }
}

/// A signed AWS JSON 1.1 request, read whole and verified.
pub(crate) struct JsonRequest {
    pub identity: Identity,
    pub verified: sigv4::Verified,
    /// The body: a JSON object (`{}` for an empty body).
    pub input: Value,
    /// Holds the body's share of the in-flight budget while the request is served.
    _reservation: crate::body::Reservation,
}

/// After [`authenticate_headers`]: read the body (at most `limit` bytes, else `too_large()`;
/// within the shared budget, see [`crate::body`]), check the signature over it, tell the
/// observer who called, and parse the body as a JSON object (`SerializationException` if not).
pub(crate) async fn read_json(
    auth: HeaderAuth,
    parts: &Parts,
    body: &mut Body,
    limit: u64,
    too_large: impl Fn() -> EcrError,
) -> Result<JsonRequest, EcrError> {
    let declared = crate::body::declared_len(&parts.headers);
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let reservation = crate::body::reserve(declared.unwrap_or(limit))
        .await
        .ok_or_else(|| EcrError::new("ThrottlingException", "Rate exceeded"))?;
    let body = crate::body::read(body, limit, declared.unwrap_or(0)).await.map_err(|e| match e {
        crate::body::ReadError::TooLarge => too_large(),
        crate::body::ReadError::Failed => {
            EcrError::new("SerializationException", "The request body could not be read.")
        }
    })?;
    let (identity, verified) = auth.verify(parts, &body)?;
    crate::obs::note(|f| {
        f.identity = Some(identity.clone());
        f.region = Some(verified.region.clone());
    });
    let not_an_object =
        || EcrError::new("SerializationException", "Start of structure or map found where not expected.");
    let input: Value =
        if body.is_empty() { json!({}) } else { serde_json::from_slice(&body).map_err(|_| not_an_object())? };
    if !input.is_object() {
        return Err(not_an_object());
    }
    Ok(JsonRequest { identity, verified, input, _reservation: reservation })
}

/// Serve one request: the signature's header part first, then the body (bounded by the
/// operation's limit and the shared body budget, see [`crate::body`]), then the signature.
async fn serve(state: &AppState, parts: &mut Parts, body: &mut Body) -> Result<Value, EcrError> {
    let reg = &*state.registry;
    let auth = authenticate_headers(reg, parts, "ecr", reg.regions()).await?;
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    let op = target.strip_prefix(TARGET_PREFIX).unwrap_or("").to_string();
    let op = op.as_str();
    crate::obs::note(|f| f.operation = Some(op.chars().filter(|c| !c.is_control()).take(64).collect()));
    let limit = body_limit(op);
    let req = read_json(auth, parts, body, limit, || too_large(op, limit)).await?;
    let host = parts.headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost").to_string();
    let origin = crate::origin(state.trust_forwarded, parts);
    let replication = parts
        .headers
        .get(berth_registry::replication::peer::REPLICATION_HEADER)
        .is_some_and(|v| v.as_bytes() == b"true");
    let ctx = Ctx { reg, identity: req.identity, origin, region: req.verified.region, host, replication };
    let input = req.input;
    if let Some(field) = control_char_field(&input, "") {
        return Err(EcrError::invalid(format!(
            "Invalid parameter at '{field}' failed to satisfy constraint: 'must not contain control characters'"
        )));
    }
    crate::obs::note(|f| {
        f.request_parameters = crate::obs::scrub(&input);
        f.repository = input.get("repositoryName").and_then(Value::as_str).map(|r| r.chars().take(256).collect());
        if let Some(acct) = input.get("registryId").and_then(Value::as_str) {
            f.account_id = Some(acct.chars().take(12).collect());
        }
    });
    let out = dispatch(ctx, op, target, input).await;
    // Only operations the API knows (whatever their outcome) become metric labels and records.
    if !matches!(&out, Err(e) if e.kind == "UnknownOperationException") {
        crate::obs::note(|f| f.known_operation = true);
    }
    out
}

/// Run the operation `op` (the `target` without ECR's prefix).
async fn dispatch(ctx: Ctx<'_>, op: &str, target: &str, input: Value) -> Result<Value, EcrError> {
    match op {
        "GetAuthorizationToken" => {
            ctx.authorize_account("GetAuthorizationToken").await?;
            get_authorization_token(&ctx, parse(input)?)
        }
        "SetRepositoryPolicy" => set_repository_policy(&ctx, parse(input)?).await,
        "GetRepositoryPolicy" => get_repository_policy(&ctx, parse(input)?).await,
        "DeleteRepositoryPolicy" => delete_repository_policy(&ctx, parse(input)?).await,
        "PutRegistryPolicy" => put_registry_policy(&ctx, parse(input)?).await,
        "GetRegistryPolicy" => get_registry_policy(&ctx).await,
        "DeleteRegistryPolicy" => delete_registry_policy(&ctx).await,
        "CreateRepository" => create_repository(&ctx, parse(input)?).await,
        "DescribeRepositories" => describe_repositories(&ctx, parse(input)?).await,
        "DeleteRepository" => delete_repository(&ctx, parse(input)?).await,
        "PutImageTagMutability" => put_image_tag_mutability(&ctx, parse(input)?).await,
        "TagResource" => tag_resource(&ctx, parse(input)?).await,
        "UntagResource" => untag_resource(&ctx, parse(input)?).await,
        "ListTagsForResource" => list_tags_for_resource(&ctx, parse(input)?).await,
        "PutImage" => put_image(&ctx, parse(input)?).await,
        "BatchGetImage" => batch_get_image(&ctx, parse(input)?).await,
        "BatchDeleteImage" => batch_delete_image(&ctx, parse(input)?).await,
        "DescribeImages" => describe_images(&ctx, parse(input)?).await,
        "ListImages" => list_images(&ctx, parse(input)?).await,
        "ListImageReferrers" => list_image_referrers(&ctx, parse(input)?).await,
        "BatchCheckLayerAvailability" => batch_check_layer_availability(&ctx, parse(input)?).await,
        "InitiateLayerUpload" => initiate_layer_upload(&ctx, parse(input)?).await,
        "UploadLayerPart" => upload_layer_part(&ctx, parse(input)?).await,
        "CompleteLayerUpload" => complete_layer_upload(&ctx, parse(input)?).await,
        "GetDownloadUrlForLayer" => get_download_url_for_layer(&ctx, parse(input)?).await,
        "PutLifecyclePolicy" => lifecycle::put(&ctx, parse(input)?).await,
        "GetLifecyclePolicy" => lifecycle::get(&ctx, parse(input)?).await,
        "DeleteLifecyclePolicy" => lifecycle::delete(&ctx, parse(input)?).await,
        "StartLifecyclePolicyPreview" => lifecycle::start_preview(&ctx, parse(input)?).await,
        "GetLifecyclePolicyPreview" => lifecycle::get_preview(&ctx, parse(input)?).await,
        "UpdateImageStorageClass" => update_image_storage_class(&ctx, parse(input)?).await,
        "StartImageScan" => scan::start(&ctx, parse(input)?).await,
        "PutReplicationConfiguration" => replication::put(&ctx, parse(input)?).await,
        "DescribeRegistry" => replication::describe_registry(&ctx).await,
        "DescribeImageReplicationStatus" => replication::status(&ctx, parse(input)?).await,
        "DescribeImageScanFindings" => scan::findings(&ctx, parse(input)?).await,
        "PutImageScanningConfiguration" => scan::put_repository(&ctx, parse(input)?).await,
        "PutRegistryScanningConfiguration" => scan::put_registry(&ctx, parse(input)?).await,
        "GetRegistryScanningConfiguration" => scan::get_registry(&ctx).await,
        "BatchGetRepositoryScanningConfiguration" => scan::batch_get_repository(&ctx, parse(input)?).await,
        "CreateRepositoryCreationTemplate" => templates::create(&ctx, parse(input)?).await,
        "DescribeRepositoryCreationTemplates" => templates::describe(&ctx, parse(input)?).await,
        "UpdateRepositoryCreationTemplate" => templates::update(&ctx, parse(input)?).await,
        "DeleteRepositoryCreationTemplate" => templates::delete(&ctx, parse(input)?).await,
        "" if !target.starts_with(TARGET_PREFIX) => Err(EcrError::new(
            "UnknownOperationException",
            format!(
                "Berth does not serve the target '{}': ECR operations are '{TARGET_PREFIX}<Operation>'",
                target.chars().filter(|c| !c.is_control()).take(200).collect::<String>()
            ),
        )),
        other => Err(EcrError::new(
            "UnknownOperationException",
            format!(
                "Berth does not implement ecr:{}",
                other.chars().filter(|c| !c.is_control()).take(200).collect::<String>()
            ),
        )),
    }
}

fn hex_sha256(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b))
}

fn parse<T: DeserializeOwned>(v: Value) -> Result<T, EcrError> {
    serde_json::from_value(v).map_err(|e| EcrError::new("SerializationException", format!("{e}")))
}

/// Validate a repository name as ECR does.
fn repo_name(field: &str, name: &str) -> Result<String, EcrError> {
    if name.chars().count() < 2 {
        return Err(EcrError::invalid(format!(
            "Invalid parameter at '{field}' failed to satisfy constraint: 'must have length greater than or equal to 2'"
        )));
    }
    if name.chars().count() > 256 {
        return Err(EcrError::invalid(format!(
            "Invalid parameter at '{field}' failed to satisfy constraint: 'must have length less than or equal to 256'"
        )));
    }
    if name.parse::<berth_oci::RepoName>().is_err() {
        return Err(EcrError::invalid(format!(
            "Invalid parameter at '{field}' failed to satisfy constraint: 'must satisfy regular expression '(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*''"
        )));
    }
    Ok(name.to_string())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ResourceTag {
    key: String,
    #[serde(default)]
    value: String,
}

fn tag_pairs(tags: Option<Vec<ResourceTag>>) -> Vec<(String, String)> {
    tags.unwrap_or_default().into_iter().map(|t| (t.key, t.value)).collect()
}

fn max_results(v: Option<i64>, max: i64, default: i64) -> Result<u32, EcrError> {
    match v {
        None => Ok(default as u32),
        Some(n) if n < 1 => Err(EcrError::invalid(
            "Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have value greater than or equal to 1'",
        )),
        Some(n) if n > max => Err(EcrError::invalid(format!(
            "Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have value less than or equal to {max}'"
        ))),
        Some(n) => Ok(n as u32),
    }
}

/// `nextToken`s are opaque to clients: the hex of the last item's key.
fn decode_token(t: Option<&str>) -> Result<Option<String>, EcrError> {
    match t {
        None => Ok(None),
        Some(t) => hex::decode(t).ok().and_then(|b| String::from_utf8(b).ok()).map(Some).ok_or_else(invalid_token),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetAuthorizationTokenIn {
    registry_ids: Option<Vec<String>>,
}

fn get_authorization_token(ctx: &Ctx<'_>, input: GetAuthorizationTokenIn) -> Result<Value, EcrError> {
    let ids = input.registry_ids.unwrap_or_else(|| vec![ctx.identity.account_id.clone()]);
    if ids.is_empty() || ids.len() > 10 {
        return Err(EcrError::invalid(
            "Invalid parameter at 'registryIds' failed to satisfy constraint: 'Member must have length between 1 and 10'",
        ));
    }
    if ids.iter().any(|i| !berth_registry::valid_account_id(i)) {
        return Err(EcrError::invalid(
            "Invalid parameter at 'registryIds' failed to satisfy constraint: 'Member must satisfy constraint: [Member must satisfy regular expression pattern: [0-9]{12}]'",
        ));
    }
    let token = ctx.reg.mint_token(&ctx.identity);
    let data: Vec<Value> = ids
        .iter()
        .map(|_| {
            json!({
                "authorizationToken": token.authorization_token,
                "expiresAt": token.expires_at as f64,
                "proxyEndpoint": format!("http://{}", ctx.reg.registry_host(&ctx.ns(), &ctx.host)),
            })
        })
        .collect();
    Ok(json!({"authorizationData": data}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScanningConfig {
    #[serde(default)]
    scan_on_push: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EncryptionConfig {
    encryption_type: String,
    kms_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRepositoryIn {
    registry_id: Option<String>,
    repository_name: String,
    tags: Option<Vec<ResourceTag>>,
    image_tag_mutability: Option<String>,
    image_tag_mutability_exclusion_filters: Option<Vec<TagFilter>>,
    image_scanning_configuration: Option<ScanningConfig>,
    encryption_configuration: Option<EncryptionConfig>,
}

async fn create_repository(ctx: &Ctx<'_>, input: CreateRepositoryIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "CreateRepository", Some(&name)).await?;
    let enc = input.encryption_configuration;
    let settings = RepoSettings {
        image_tag_mutability: input.image_tag_mutability.unwrap_or_else(|| "MUTABLE".into()),
        exclusions: input.image_tag_mutability_exclusion_filters.unwrap_or_default(),
        scan_on_push: input.image_scanning_configuration.map(|s| s.scan_on_push).unwrap_or(false),
        encryption_type: enc.as_ref().map(|e| e.encryption_type.clone()).unwrap_or_else(|| "AES256".into()),
        kms_key: enc.and_then(|e| e.kms_key),
    };
    let tags = tag_pairs(input.tags);
    // A peer deployment's replication creating the destination repository: this registry's
    // REPLICATION creation template applies first (the caller's settings are the fallback), as
    // in ECR; it needs ecr:ReplicateImage as well.
    if ctx.replication
        && ctx
            .reg
            .authorize(&ctx.caller(), "ecr:ReplicateImage", Target::Repository { ns: &ns, name: &name })
            .await
            .is_ok()
    {
        let applied = berth_registry::templates::AppliedFor::Replication;
        if let Some(info) =
            ctx.reg.create_repository_from_template(&ns, &name, applied, Some((&settings, &tags))).await?
        {
            return Ok(json!({"repository": ctx.repo_json(&info)}));
        }
    }
    let info = ctx.reg.create_repository(&ns, &name, &settings, &tags).await?;
    Ok(json!({"repository": ctx.repo_json(&info)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRepositoriesIn {
    registry_id: Option<String>,
    repository_names: Option<Vec<String>>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

async fn describe_repositories(ctx: &Ctx<'_>, input: DescribeRepositoriesIn) -> Result<Value, EcrError> {
    let ns = ctx.ns_of(input.registry_id.as_deref())?;
    if let Some(names) = input.repository_names {
        if input.max_results.is_some() || input.next_token.is_some() {
            return Err(EcrError::invalid(
                "Invalid parameter at 'maxResults' failed to satisfy constraint: 'maxResults and nextToken cannot be used with repositoryNames'",
            ));
        }
        if names.is_empty() || names.len() > 100 {
            return Err(EcrError::invalid(
                "Invalid parameter at 'repositoryNames' failed to satisfy constraint: 'Member must have length between 1 and 100'",
            ));
        }
        let mut out = Vec::new();
        for n in &names {
            let n = repo_name("repositoryNames", n)?;
            ctx.reg
                .authorize(&ctx.caller(), "ecr:DescribeRepositories", Target::Repository { ns: &ns, name: &n })
                .await?;
            out.push(ctx.repo_json(&ctx.reg.describe_repository(&ns, &n).await?));
        }
        return Ok(json!({"repositories": out}));
    }
    let limit = max_results(input.max_results, 1000, 100)?;
    let last = decode_token(input.next_token.as_deref())?;
    // As in ECR, listing is one request on `repository/*`: allowed or AccessDeniedException.
    ctx.reg.authorize(&ctx.caller(), "ecr:DescribeRepositories", Target::AllRepositories(&ns)).await?;
    let (visible, more) = ctx.reg.list_repository_infos(&ns, last.as_deref(), limit).await?;
    let mut v = json!({"repositories": visible.iter().map(|i| ctx.repo_json(i)).collect::<Vec<_>>()});
    if more && let Some(l) = visible.last() {
        v["nextToken"] = json!(hex::encode(&l.name));
    }
    Ok(v)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteRepositoryIn {
    registry_id: Option<String>,
    repository_name: String,
    #[serde(default)]
    force: bool,
}

async fn delete_repository(ctx: &Ctx<'_>, input: DeleteRepositoryIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "DeleteRepository", Some(&name)).await?;
    let info = ctx.reg.delete_repository(&ns, &name, input.force).await?;
    Ok(json!({"repository": ctx.repo_json(&info)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutImageTagMutabilityIn {
    registry_id: Option<String>,
    repository_name: String,
    image_tag_mutability: String,
    image_tag_mutability_exclusion_filters: Option<Vec<TagFilter>>,
}

async fn put_image_tag_mutability(ctx: &Ctx<'_>, input: PutImageTagMutabilityIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "PutImageTagMutability", Some(&name)).await?;
    let filters = input.image_tag_mutability_exclusion_filters.unwrap_or_default();
    let info = ctx.reg.set_tag_mutability(&ns, &name, &input.image_tag_mutability, &filters).await?;
    let mut v = json!({
        "registryId": info.account_id,
        "repositoryName": info.name,
        "imageTagMutability": info.image_tag_mutability,
    });
    if !filters.is_empty() {
        v["imageTagMutabilityExclusionFilters"] = json!(filters);
    }
    Ok(v)
}

/// Resolve a repository ARN of the caller's account and region to a name.
async fn arn_repo(ctx: &Ctx<'_>, arn: &str, action: &str) -> Result<(Namespace, String), EcrError> {
    let bad = || EcrError::invalid("Invalid parameter at 'resourceArn' failed to satisfy constraint: 'Invalid ARN'");
    let rest = arn.strip_prefix("arn:aws:ecr:").ok_or_else(bad)?;
    let mut it = rest.splitn(3, ':');
    let (region, account, res) = (it.next().ok_or_else(bad)?, it.next().ok_or_else(bad)?, it.next().ok_or_else(bad)?);
    let name = res.strip_prefix("repository/").ok_or_else(bad)?;
    let name = repo_name("resourceArn", name)?;
    if !berth_registry::valid_account_id(account) || region.is_empty() {
        return Err(bad());
    }
    if region != ctx.region {
        return Err(EcrError::invalid(format!(
            "Invalid parameter at 'resourceArn' failed to satisfy constraint: 'ARN region {region} does not match the request region {}'",
            ctx.region
        )));
    }
    let ns = ctx.registry_ns(Some(account), action, Some(&name)).await?;
    Ok((ns, name))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagResourceIn {
    resource_arn: String,
    tags: Vec<ResourceTag>,
}

async fn tag_resource(ctx: &Ctx<'_>, input: TagResourceIn) -> Result<Value, EcrError> {
    let (ns, name) = arn_repo(ctx, &input.resource_arn, "TagResource").await?;
    ctx.reg.tag_repository(&ns, &name, &tag_pairs(Some(input.tags))).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UntagResourceIn {
    resource_arn: String,
    tag_keys: Vec<String>,
}

async fn untag_resource(ctx: &Ctx<'_>, input: UntagResourceIn) -> Result<Value, EcrError> {
    let (ns, name) = arn_repo(ctx, &input.resource_arn, "UntagResource").await?;
    ctx.reg.untag_repository(&ns, &name, &input.tag_keys).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListTagsForResourceIn {
    resource_arn: String,
}

async fn list_tags_for_resource(ctx: &Ctx<'_>, input: ListTagsForResourceIn) -> Result<Value, EcrError> {
    let (ns, name) = arn_repo(ctx, &input.resource_arn, "ListTagsForResource").await?;
    let tags = ctx.reg.resource_tags(&ns, &name).await?;
    Ok(json!({"tags": tags.into_iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>()}))
}

// ---- images -------------------------------------------------------------------------------

fn layers_not_found(ctx: &Ctx<'_>, ns: &Namespace, name: &str, digests: &[String]) -> EcrError {
    let _ = ctx;
    EcrError::new(
        "LayersNotFoundException",
        format!(
            "Layers with digests '[{}]' required for pushing image into repository with name '{name}' in the registry with id '{}' do not exist",
            digests.join(", "),
            ns.account_id
        ),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutImageIn {
    registry_id: Option<String>,
    repository_name: String,
    image_manifest: String,
    image_manifest_media_type: Option<String>,
    image_tag: Option<String>,
    image_digest: Option<String>,
}

async fn put_image(ctx: &Ctx<'_>, input: PutImageIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "PutImage", Some(&name)).await?;
    if input.image_manifest.len() > berth_oci::MAX_MANIFEST_BYTES {
        return Err(EcrError::invalid(
            "Invalid parameter at 'imageManifest' failed to satisfy constraint: 'Member must have length less than or equal to 4194304'",
        ));
    }
    if let Some(t) = &input.image_tag
        && (t.is_empty() || t.len() > 300 || t.parse::<berth_oci::Tag>().is_err())
    {
        return Err(EcrError::invalid(
            "Invalid parameter at 'imageTag' failed to satisfy constraint: 'must satisfy regular expression '[a-zA-Z0-9-_.]+''",
        ));
    }
    let digest = match &input.image_digest {
        None => None,
        Some(d) => Some(d.parse::<berth_oci::Digest>().map_err(|_| {
            EcrError::invalid("Invalid parameter at 'imageDigest' failed to satisfy constraint: 'must satisfy regular expression '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+''")
        })?),
    };
    // ECR needs a media type: the manifest's own `mediaType`, or `imageManifestMediaType`.
    if input.image_manifest_media_type.is_none()
        && serde_json::from_str::<Value>(&input.image_manifest)
            .map(|m| !m.get("mediaType").is_some_and(Value::is_string))
            .unwrap_or(true)
    {
        return Err(EcrError::invalid(
            "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Invalid JSON syntax'",
        ));
    }
    let bytes = bytes::Bytes::from(input.image_manifest.clone().into_bytes());
    // The digest of the bytes as pushed (sha256 unless the caller named another algorithm).
    let actual = {
        let alg = digest.as_ref().map(|d| d.algorithm()).unwrap_or(berth_oci::Algorithm::Sha256);
        let raw = match alg {
            berth_oci::Algorithm::Sha256 => ring::digest::digest(&ring::digest::SHA256, &bytes),
            berth_oci::Algorithm::Sha512 => ring::digest::digest(&ring::digest::SHA512, &bytes),
        };
        berth_oci::Digest::from_raw(alg, raw.as_ref())
    };
    if let Some(d) = &digest
        && *d != actual
    {
        return Err(EcrError::new(
            "ImageDigestDoesNotMatchException",
            format!("Provided image digest '{d}' does not match the digest of the image manifest '{actual}'"),
        ));
    }
    // Identical manifest under the same tag (or untagged and already present): ECR refuses.
    let (exists, tagged) = ctx.reg.image_state(&ns, &name, actual.as_str(), input.image_tag.as_deref()).await?;
    if (input.image_tag.is_some() && tagged) || (input.image_tag.is_none() && exists) {
        let tag_part = input.image_tag.as_deref().map(|t| format!(" and tag '{t}'")).unwrap_or_default();
        return Err(EcrError::new(
            "ImageAlreadyExistsException",
            format!(
                "Image with digest '{actual}'{tag_part} already exists in the repository with name '{name}' in registry with id '{}'",
                ns.account_id
            ),
        ));
    }
    let pushed = ctx
        .reg
        .put_image(&ns, &name, bytes, input.image_manifest_media_type.as_deref(), input.image_tag.as_deref(), digest.as_ref())
        .await
        .map_err(|e| match e {
            Error::ManifestBlobUnknown(ds) => layers_not_found(ctx, &ns, &name, &ds),
            Error::ManifestChildUnknown(ds) => EcrError::new(
                "ReferencedImagesNotFoundException",
                format!(
                    "Images with digests '[{}]' referenced by the manifest do not exist in the repository with name '{name}' in the registry with id '{}'",
                    ds.join(", "),
                    ns.account_id
                ),
            ),
            Error::TagImmutable { .. } => EcrError::new("ImageTagAlreadyExistsException", e.to_string()),
            // ECR documents no exception of its own for a descriptor whose size is not the
            // stored layer's; PutImage's manifest checks answer InvalidParameterException.
            Error::ManifestSizeMismatch { digest, declared, stored } => EcrError::invalid(format!(
                "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'The size {declared} declared for {digest} does not match the stored size {stored}'"
            )),
            Error::ManifestInvalid(_) | Error::DigestInvalid(_) | Error::TagInvalid(_) | Error::ManifestTooLarge => {
                EcrError::invalid(format!("Invalid parameter at 'ImageManifest' failed to satisfy constraint: '{e}'"))
            }
            other => other.into(),
        })?;
    let media_type = pushed.media_type.clone();
    let mut image_id = json!({"imageDigest": pushed.digest.as_str()});
    if let Some(t) = &input.image_tag {
        image_id["imageTag"] = json!(t);
    }
    Ok(json!({"image": {
        "registryId": ns.account_id,
        "repositoryName": name,
        "imageId": image_id,
        "imageManifest": input.image_manifest,
        "imageManifestMediaType": media_type,
    }}))
}

fn image_ids(ids: &[ImageId]) -> Result<(), EcrError> {
    if ids.is_empty() || ids.len() > 100 {
        return Err(EcrError::invalid(
            "Invalid parameter at 'imageIds' failed to satisfy constraint: 'Member must have length between 1 and 100'",
        ));
    }
    Ok(())
}

fn failure_json(id: &ImageId, f: &ImageFailure) -> Value {
    json!({"imageId": id, "failureCode": f.code, "failureReason": f.reason})
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchGetImageIn {
    registry_id: Option<String>,
    repository_name: String,
    image_ids: Vec<ImageId>,
    accepted_media_types: Option<Vec<String>>,
}

async fn batch_get_image(ctx: &Ctx<'_>, input: BatchGetImageIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "BatchGetImage", Some(&name)).await?;
    image_ids(&input.image_ids)?;
    let (mut out, mut failures) = (Vec::new(), Vec::new());
    // A repository whose KMS key cannot be used serves no image: each fails with `KmsError`.
    match ctx.reg.check_repository_key(&ns, &name).await {
        Err(berth_registry::Error::Kms { message, .. }) => {
            let f = ImageFailure { code: "KmsError", reason: message };
            let failures: Vec<Value> = input.image_ids.iter().map(|id| failure_json(id, &f)).collect();
            return Ok(json!({"images": [], "failures": failures}));
        }
        r => r?,
    }
    let mut bypass: Option<bool> = None;
    for id in &input.image_ids {
        let img = match ctx.reg.image_by_id(&ns, &name, id).await? {
            Ok(i) => i,
            Err(f) => {
                failures.push(failure_json(id, &f));
                continue;
            }
        };
        if img.status != ImageStatus::Active {
            failures.push(failure_json(
                id,
                &ImageFailure {
                    code: "ImageNotFound",
                    reason: "Requested image is archived and cannot be pulled until it is restored".into(),
                },
            ));
            continue;
        }
        if let Some(acc) = &input.accepted_media_types
            && !acc.iter().any(|a| a == &img.media_type)
        {
            failures.push(failure_json(
                id,
                &ImageFailure { code: "ImageNotFound", reason: "Requested image not found".into() },
            ));
            continue;
        }
        let Some((mt, bytes)) = ctx.reg.manifest_bytes(&ns, &name, &img.digest).await? else { continue };
        // The repository's pull gate, unless the caller may bypass it (asked once, when needed).
        if let Some(why) = ctx.reg.pull_gate_refusal(&ns, &name, &img.digest, &mt, &bytes).await? {
            if bypass.is_none() {
                let target = Target::Repository { ns: &ns, name: &name };
                let allowed = ctx.reg.authorize(&ctx.caller(), berth_registry::scan::BYPASS_PULL_GATE, target).await;
                bypass = Some(allowed.is_ok());
            }
            if bypass == Some(false) {
                failures.push(failure_json(id, &ImageFailure { code: "ImageInaccessible", reason: why }));
                continue;
            }
        }
        let mut image_id = json!({"imageDigest": img.digest});
        if let Some(t) = id.image_tag.as_ref() {
            image_id["imageTag"] = json!(t);
        }
        out.push(json!({
            "registryId": ns.account_id,
            "repositoryName": name,
            "imageId": image_id,
            "imageManifest": String::from_utf8_lossy(&bytes),
            "imageManifestMediaType": mt,
        }));
    }
    Ok(json!({"images": out, "failures": failures}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateImageStorageClassIn {
    registry_id: Option<String>,
    repository_name: String,
    image_id: ImageId,
    target_storage_class: String,
}

/// ECR's ImageNotFoundException for image id `id` of repository `name`.
fn image_not_found(ns: &Namespace, name: &str, id: &ImageId) -> EcrError {
    let fmt = |o: &Option<String>| o.as_deref().map(|s| format!("'{s}'")).unwrap_or_else(|| "'null'".into());
    EcrError::new(
        "ImageNotFoundException",
        format!(
            "The image with imageId {{imageDigest:{}, imageTag:{}}} does not exist within the repository with name '{name}' in the registry with id '{}'",
            fmt(&id.image_digest),
            fmt(&id.image_tag),
            ns.account_id
        ),
    )
}

async fn update_image_storage_class(ctx: &Ctx<'_>, input: UpdateImageStorageClassIn) -> Result<Value, EcrError> {
    use berth_registry::archive::{StorageClassUpdate, TargetStorageClass};
    let name = repo_name("repositoryName", &input.repository_name)?;
    let target = match input.target_storage_class.as_str() {
        "STANDARD" => TargetStorageClass::Standard,
        "ARCHIVE" => TargetStorageClass::Archive,
        _ => {
            return Err(EcrError::invalid(
                "Invalid parameter at 'targetStorageClass' failed to satisfy constraint: 'Member must satisfy enum value set: [STANDARD, ARCHIVE]'",
            ));
        }
    };
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "UpdateImageStorageClass", Some(&name)).await?;
    image_ids(std::slice::from_ref(&input.image_id))?;
    match ctx.reg.update_image_storage_class(&ns, &name, &input.image_id, target).await? {
        StorageClassUpdate::Done { digest, status } => {
            let mut image_id = json!({"imageDigest": digest});
            if let Some(t) = &input.image_id.image_tag {
                image_id["imageTag"] = json!(t);
            }
            Ok(json!({
                "registryId": ns.account_id,
                "repositoryName": name,
                "imageId": image_id,
                "imageStatus": status.as_str(),
            }))
        }
        StorageClassUpdate::Failed(f) if f.code == "ImageNotFound" => Err(image_not_found(&ns, &name, &input.image_id)),
        StorageClassUpdate::Failed(f) => Err(EcrError::invalid(f.reason)),
        StorageClassUpdate::NotSupported(m) => Err(EcrError::new("ImageStorageClassUpdateNotSupportedException", m)),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchDeleteImageIn {
    registry_id: Option<String>,
    repository_name: String,
    image_ids: Vec<ImageId>,
}

async fn batch_delete_image(ctx: &Ctx<'_>, input: BatchDeleteImageIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "BatchDeleteImage", Some(&name)).await?;
    image_ids(&input.image_ids)?;
    let (mut deleted, mut failures) = (Vec::new(), Vec::new());
    for id in &input.image_ids {
        // Each id is resolved after the deletions before it (which may have removed its tag
        // or image).
        match ctx.reg.delete_image(&ns, &name, id).await? {
            Ok(d) => deleted.push(json!(d)),
            Err(f) => failures.push(failure_json(id, &f)),
        }
    }
    Ok(json!({"imageIds": deleted, "failures": failures}))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ImagesFilter {
    tag_status: Option<String>,
    image_status: Option<String>,
}

/// `filter.imageStatus`: only active images when absent (as ECR), `None` for `ANY`.
fn image_status(filter: &Option<ImagesFilter>) -> Result<Option<ImageStatus>, EcrError> {
    match filter.as_ref().and_then(|f| f.image_status.as_deref()) {
        None => Ok(Some(ImageStatus::Active)),
        Some("ANY") => Ok(None),
        Some(s) => ImageStatus::parse(s).map(Some).ok_or_else(|| {
            EcrError::invalid(
                "Invalid parameter at 'filter.imageStatus' failed to satisfy constraint: 'Member must satisfy enum value set: [ACTIVE, ARCHIVED, ACTIVATING, ANY]'",
            )
        }),
    }
}

fn tag_status(filter: &Option<ImagesFilter>) -> Result<TagStatus, EcrError> {
    match filter.as_ref().and_then(|f| f.tag_status.as_deref()) {
        None | Some("ANY") => Ok(TagStatus::Any),
        Some("TAGGED") => Ok(TagStatus::Tagged),
        Some("UNTAGGED") => Ok(TagStatus::Untagged),
        Some(_) => Err(EcrError::invalid(
            "Invalid parameter at 'filter.tagStatus' failed to satisfy constraint: 'Member must satisfy enum value set: [TAGGED, UNTAGGED, ANY]'",
        )),
    }
}

fn invalid_token() -> EcrError {
    EcrError::invalid("Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid token'")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeImagesIn {
    registry_id: Option<String>,
    repository_name: String,
    image_ids: Option<Vec<ImageId>>,
    next_token: Option<String>,
    max_results: Option<i64>,
    filter: Option<ImagesFilter>,
}

fn image_detail(ns: &Namespace, name: &str, i: &berth_meta::Image) -> Value {
    let mut v = json!({
        "registryId": ns.account_id,
        "repositoryName": name,
        "imageDigest": i.digest,
        "imageSizeInBytes": i.image_size,
        "imagePushedAt": i.pushed_at as f64 / 1000.0,
        "imageManifestMediaType": i.media_type,
        "imageStatus": i.status.as_str(),
    });
    if let Some(t) = i.last_archived_at {
        v["lastArchivedAt"] = json!(t as f64 / 1000.0);
    }
    if let Some(t) = i.last_activated_at {
        v["lastActivatedAt"] = json!(t as f64 / 1000.0);
    }
    if !i.tags.is_empty() {
        v["imageTags"] = json!(i.tags);
    }
    if let Some(c) = &i.config_media_type {
        v["artifactMediaType"] = json!(c);
    }
    if let Some(p) = i.last_pulled_at {
        v["lastRecordedPullTime"] = json!(p as f64 / 1000.0);
    }
    if let Some(s) = &i.subject {
        v["subjectManifestDigest"] = json!(s);
    }
    v
}

/// DescribeImages' details of `images`, with their last scans' status and summary.
async fn image_details(
    ctx: &Ctx<'_>,
    ns: &Namespace,
    name: &str,
    images: &[berth_meta::Image],
) -> Result<Vec<Value>, EcrError> {
    let digests: Vec<String> = images.iter().map(|i| i.digest.clone()).collect();
    let scans = ctx.reg.image_scans(ns, name, &digests).await?;
    Ok(images
        .iter()
        .map(|i| {
            let mut v = image_detail(ns, name, i);
            if let Some(s) = scans.get(&i.digest) {
                v["imageScanStatus"] = scan::status_json(s);
                if let Some(sum) = scan::summary_json(s) {
                    v["imageScanFindingsSummary"] = sum;
                }
            }
            v
        })
        .collect())
}

async fn describe_images(ctx: &Ctx<'_>, input: DescribeImagesIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "DescribeImages", Some(&name)).await?;
    if let Some(ids) = &input.image_ids {
        if input.max_results.is_some() || input.next_token.is_some() {
            return Err(EcrError::invalid(
                "Invalid parameter at 'maxResults' failed to satisfy constraint: 'maxResults and nextToken cannot be used with imageIds'",
            ));
        }
        image_ids(ids)?;
        let mut images = Vec::new();
        for id in ids {
            match ctx.reg.image_by_id(&ns, &name, id).await? {
                Ok(i) => images.push(i),
                Err(f) if f.code == "ImageNotFound" => return Err(image_not_found(&ns, &name, id)),
                Err(f) => return Err(EcrError::invalid(f.reason)),
            }
        }
        return Ok(json!({"imageDetails": image_details(ctx, &ns, &name, &images).await?}));
    }
    let limit = max_results(input.max_results, 1000, 100)?;
    let status = tag_status(&input.filter)?;
    let image_status = image_status(&input.filter)?;
    let after = match input.next_token.as_deref() {
        None => None,
        Some(t) => Some(berth_registry::image_key_from_token(t).ok_or_else(invalid_token)?),
    };
    let (items, next) = ctx.reg.images_page(&ns, &name, status, image_status, after.as_ref(), limit).await?;
    let mut v = json!({"imageDetails": image_details(ctx, &ns, &name, &items).await?});
    if let Some(k) = next {
        v["nextToken"] = json!(berth_registry::image_key_token(&k));
    }
    Ok(v)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListImagesIn {
    registry_id: Option<String>,
    repository_name: String,
    next_token: Option<String>,
    max_results: Option<i64>,
    filter: Option<ImagesFilter>,
}

async fn list_images(ctx: &Ctx<'_>, input: ListImagesIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "ListImages", Some(&name)).await?;
    let limit = max_results(input.max_results, 1000, 100)?;
    let status = tag_status(&input.filter)?;
    let image_status = image_status(&input.filter)?;
    let after = match input.next_token.as_deref() {
        None => None,
        Some(t) => Some(ImageIdCursor::from_token(t).ok_or_else(invalid_token)?),
    };
    let (items, next) = ctx.reg.image_ids_page(&ns, &name, status, image_status, after.as_ref(), limit).await?;
    let mut v = json!({"imageIds": items});
    if let Some(c) = next {
        v["nextToken"] = json!(c.to_token());
    }
    Ok(v)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubjectId {
    image_digest: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[derive(Default)]
struct ReferrersFilter {
    artifact_types: Option<Vec<String>>,
    artifact_status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListImageReferrersIn {
    registry_id: Option<String>,
    repository_name: String,
    subject_id: SubjectId,
    filter: Option<ReferrersFilter>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

async fn list_image_referrers(ctx: &Ctx<'_>, input: ListImageReferrersIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "ListImageReferrers", Some(&name)).await?;
    let subject = input.subject_id.image_digest.parse::<berth_oci::Digest>().map_err(|_| {
        EcrError::invalid("Invalid parameter at 'subjectId.imageDigest' failed to satisfy constraint: 'must satisfy regular expression '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+''")
    })?;
    let limit = max_results(input.max_results, 50, 20)?;
    let filter = input.filter.unwrap_or_default();
    let types = filter.artifact_types.unwrap_or_default();
    if types.len() > 5 {
        return Err(EcrError::invalid(
            "Invalid parameter at 'filter.artifactTypes' failed to satisfy constraint: 'Member must have length less than or equal to 5'",
        ));
    }
    // Only active artifacts unless asked otherwise, as ECR.
    let status = match filter.artifact_status.as_deref() {
        None => Some(ImageStatus::Active),
        Some("ANY") => None,
        Some(s) => Some(ImageStatus::parse(s).ok_or_else(|| {
            EcrError::invalid(
                "Invalid parameter at 'filter.artifactStatus' failed to satisfy constraint: 'Member must satisfy enum value set: [ACTIVE, ARCHIVED, ACTIVATING, ANY]'",
            )
        })?),
    };
    let after = match input.next_token.as_deref() {
        None => None,
        Some(t) => Some(berth_registry::image_key_from_token(t).ok_or_else(invalid_token)?),
    };
    let types: Vec<&str> = types.iter().map(String::as_str).collect();
    let (items, next) = ctx.reg.referrers_page(&ns, &name, &subject, &types, status, after.as_ref(), limit).await?;
    let refs: Vec<Value> = items
        .iter()
        .map(|r| {
            let mut v =
                json!({"digest": r.digest, "mediaType": r.media_type, "size": r.size, "artifactStatus": r.status.as_str()});
            if let Some(a) = &r.artifact_type {
                v["artifactType"] = json!(a);
            }
            if let Some(a) = r.annotations.as_deref().and_then(|a| serde_json::from_str::<Value>(a).ok()) {
                v["annotations"] = a;
            }
            v
        })
        .collect();
    let mut v = json!({"referrers": refs});
    if let Some(k) = next {
        v["nextToken"] = json!(berth_registry::image_key_token(&k));
    }
    Ok(v)
}

// ---- layers -------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchCheckLayerAvailabilityIn {
    registry_id: Option<String>,
    repository_name: String,
    layer_digests: Vec<String>,
}

async fn batch_check_layer_availability(
    ctx: &Ctx<'_>,
    input: BatchCheckLayerAvailabilityIn,
) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "BatchCheckLayerAvailability", Some(&name)).await?;
    if input.layer_digests.is_empty() || input.layer_digests.len() > 100 {
        return Err(EcrError::invalid(
            "Invalid parameter at 'layerDigests' failed to satisfy constraint: 'Member must have length between 1 and 100'",
        ));
    }
    let (mut layers, mut failures) = (Vec::new(), Vec::new());
    for d in &input.layer_digests {
        if d.parse::<berth_oci::Digest>().is_err() {
            failures.push(
                json!({"layerDigest": d, "failureCode": "InvalidLayerDigest", "failureReason": "Invalid layer digest"}),
            );
            continue;
        }
        match ctx.reg.layer_size(&ns, &name, d).await? {
            Some(size) => layers.push(json!({
                "layerDigest": d,
                "layerAvailability": "AVAILABLE",
                "layerSize": size,
                "mediaType": "application/vnd.docker.container.image.rootfs.diff+x-gtar",
            })),
            None => failures.push(json!({"layerDigest": d, "failureCode": "MissingLayerDigest", "failureReason": "Requested layer not found"})),
        }
    }
    Ok(json!({"layers": layers, "failures": failures}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InitiateLayerUploadIn {
    registry_id: Option<String>,
    repository_name: String,
}

/// Part size InitiateLayerUpload advertises (ECR: parts of 5–10 MiB except the last).
const PART_SIZE: u64 = 10 * 1024 * 1024;

async fn initiate_layer_upload(ctx: &Ctx<'_>, input: InitiateLayerUploadIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "InitiateLayerUpload", Some(&name)).await?;
    let st = ctx.reg.initiate_layer_upload(&ns, &name).await?;
    Ok(json!({"uploadId": st.id, "partSize": PART_SIZE}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadLayerPartIn {
    registry_id: Option<String>,
    repository_name: String,
    upload_id: String,
    part_first_byte: i64,
    part_last_byte: i64,
    layer_part_blob: String,
}

fn upload_not_found(id: &str, name: &str, ns: &Namespace) -> EcrError {
    EcrError::new(
        "UploadNotFoundException",
        format!(
            "The upload with id '{id}' does not exist in the repository with name '{name}' in registry with id '{}'",
            ns.account_id
        ),
    )
}

async fn upload_layer_part(ctx: &Ctx<'_>, input: UploadLayerPartIn) -> Result<Value, EcrError> {
    use base64::Engine;
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "UploadLayerPart", Some(&name)).await?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(input.layer_part_blob.as_bytes())
        .map_err(|_| EcrError::new("SerializationException", "layerPartBlob is not valid base64"))?;
    if blob.len() as u64 > MAX_PART_BLOB {
        return Err(too_large("UploadLayerPart", body_limit("UploadLayerPart")));
    }
    let (first, last) = (input.part_first_byte, input.part_last_byte);
    let range = berth_oci::range::ChunkRange::from_signed(first, last).ok().filter(|r| r.len() == blob.len() as u64);
    let Some(range) = range else {
        return Err(EcrError::new(
            "InvalidLayerPartException",
            format!(
                "The layer part size is not valid, or the first byte specified is not consecutive to the last byte of a previous layer part upload. partFirstByte={first}, partLastByte={last}, blob length={}",
                blob.len()
            ),
        ));
    };
    match ctx.reg.upload_layer_part(&ns, &name, &input.upload_id, range, blob.into()).await {
        Ok(size) => Ok(json!({
            "registryId": ns.account_id,
            "repositoryName": name,
            "uploadId": input.upload_id,
            "lastByteReceived": size.saturating_sub(1),
        })),
        Err(Error::BlobUploadUnknown(_)) => Err(upload_not_found(&input.upload_id, &name, &ns)),
        Err(Error::RangeNotSatisfiable { size }) => Err(EcrError::new(
            "InvalidLayerPartException",
            format!(
                "The layer part size is not valid, or the first byte specified is not consecutive to the last byte of a previous layer part upload. lastValidByteReceived={}",
                size as i64 - 1
            ),
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompleteLayerUploadIn {
    registry_id: Option<String>,
    repository_name: String,
    upload_id: String,
    layer_digests: Vec<String>,
}

async fn complete_layer_upload(ctx: &Ctx<'_>, input: CompleteLayerUploadIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "CompleteLayerUpload", Some(&name)).await?;
    let [d] = input.layer_digests.as_slice() else {
        return Err(EcrError::invalid(
            "Invalid parameter at 'layerDigests' failed to satisfy constraint: 'Member must have length equal to 1'",
        ));
    };
    let digest = d.parse::<berth_oci::Digest>().map_err(|_| {
        EcrError::invalid("Invalid parameter at 'layerDigests' failed to satisfy constraint: 'must satisfy regular expression '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+''")
    })?;
    match ctx.reg.complete_layer_upload(&ns, &name, &input.upload_id, &digest).await {
        Ok(_) => Ok(json!({
            "registryId": ns.account_id,
            "repositoryName": name,
            "uploadId": input.upload_id,
            "layerDigest": digest.as_str(),
        })),
        Err(Error::BlobUploadUnknown(_)) => Err(upload_not_found(&input.upload_id, &name, &ns)),
        Err(Error::EmptyUpload(_)) => Err(EcrError::new(
            "EmptyUploadException",
            format!(
                "The upload with id '{}' in the repository with name '{name}' in registry with id '{}' cannot be completed because it does not have any parts.",
                input.upload_id, ns.account_id
            ),
        )),
        Err(Error::LayerAlreadyExists(_)) => Err(EcrError::new(
            "LayerAlreadyExistsException",
            format!(
                "The layer with digest '{digest}' already exists in the repository with name '{name}' in registry with id '{}'",
                ns.account_id
            ),
        )),
        Err(Error::DigestInvalid(m)) => Err(EcrError::new("InvalidLayerException", m)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetDownloadUrlForLayerIn {
    registry_id: Option<String>,
    repository_name: String,
    layer_digest: String,
}

async fn get_download_url_for_layer(ctx: &Ctx<'_>, input: GetDownloadUrlForLayerIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "GetDownloadUrlForLayer", Some(&name)).await?;
    // ECR's own text lacks the closing quote after the repository name; clients match on it.
    let missing = || {
        EcrError::new(
            "LayersNotFoundException",
            format!(
                "The layer with digest {} does not exist within the repository with name '{name} in the registry with id '{}'",
                input.layer_digest, ns.account_id
            ),
        )
    };
    if input.layer_digest.parse::<berth_oci::Digest>().is_err() {
        return Err(EcrError::invalid(
            "Invalid parameter at 'layerDigest' failed to satisfy constraint: 'must satisfy regular expression '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+''",
        ));
    }
    ctx.reg.layer_size(&ns, &name, &input.layer_digest).await?.ok_or_else(missing)?;
    ctx.reg.check_repository_key(&ns, &name).await?;
    let url = ctx.reg.download_url(
        &format!("http://{}", ctx.reg.registry_host(&ns, &ctx.host)),
        &ns,
        &name,
        &input.layer_digest,
    );
    Ok(json!({"downloadUrl": url, "layerDigest": input.layer_digest}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetRepositoryPolicyIn {
    registry_id: Option<String>,
    repository_name: String,
    policy_text: String,
    #[serde(default)]
    force: bool,
}

async fn set_repository_policy(ctx: &Ctx<'_>, input: SetRepositoryPolicyIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "SetRepositoryPolicy", Some(&name)).await?;
    let _ = input.force; // Berth does not refuse policies that lock the caller out; `force` is accepted.
    ctx.reg.set_repository_policy(&ns, &name, &input.policy_text).await?;
    // ECR answers with the policy as it stored it (normalized), not as sent.
    let (info, text) = ctx.reg.repository_policy(&ns, &name).await?;
    Ok(json!({"registryId": info.account_id, "repositoryName": info.name, "policyText": text}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RepositoryPolicyIn {
    registry_id: Option<String>,
    repository_name: String,
}

async fn get_repository_policy(ctx: &Ctx<'_>, input: RepositoryPolicyIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "GetRepositoryPolicy", Some(&name)).await?;
    let (info, text) = ctx.reg.repository_policy(&ns, &name).await?;
    Ok(json!({"registryId": info.account_id, "repositoryName": info.name, "policyText": text}))
}

async fn delete_repository_policy(ctx: &Ctx<'_>, input: RepositoryPolicyIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "DeleteRepositoryPolicy", Some(&name)).await?;
    let (info, text) = ctx.reg.delete_repository_policy(&ns, &name).await?;
    Ok(json!({"registryId": info.account_id, "repositoryName": info.name, "policyText": text}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutRegistryPolicyIn {
    policy_text: String,
}

async fn put_registry_policy(ctx: &Ctx<'_>, input: PutRegistryPolicyIn) -> Result<Value, EcrError> {
    ctx.authorize_account("PutRegistryPolicy").await?;
    ctx.reg.put_registry_policy(&ctx.ns(), &input.policy_text).await?;
    Ok(json!({"registryId": ctx.identity.account_id, "policyText": input.policy_text}))
}

async fn get_registry_policy(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    ctx.authorize_account("GetRegistryPolicy").await?;
    let text = ctx.reg.registry_policy(&ctx.ns()).await?;
    Ok(json!({"registryId": ctx.identity.account_id, "policyText": text}))
}

async fn delete_registry_policy(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    ctx.authorize_account("DeleteRegistryPolicy").await?;
    let text = ctx.reg.delete_registry_policy(&ctx.ns()).await?;
    Ok(json!({"registryId": ctx.identity.account_id, "policyText": text}))
}
