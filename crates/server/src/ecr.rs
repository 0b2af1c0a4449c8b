//! The ECR control plane: `POST /` with `X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.<Op>`,
//! AWS JSON 1.1 bodies, SigV4-signed (service `ecr`, region from the credential scope).
//! Errors are `{"__type": "<Exception>", "message": "..."}` with HTTP 400, as ECR sends them.

use crate::AppState;
use axum::body::Body;
use axum::response::Response;
use berth_auth::sigv4;
use berth_meta::{Namespace, RepositoryInfo};
use berth_registry::{Error, Identity, Registry, RepoSettings, TagFilter, exclusions_of};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::time::SystemTime;

/// Prefix of every ECR `X-Amz-Target`.
pub const TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921.";
/// Largest control-plane request body accepted (UploadLayerPart carries layer parts).
const MAX_BODY: usize = 32 * 1024 * 1024;

/// An ECR error response.
#[derive(Debug)]
pub struct EcrError {
    pub kind: &'static str,
    pub message: String,
    pub status: StatusCode,
}

impl EcrError {
    fn new(kind: &'static str, message: impl Into<String>) -> EcrError {
        EcrError {
            kind,
            message: message.into(),
            status: StatusCode::BAD_REQUEST,
        }
    }

    fn invalid(message: impl Into<String>) -> EcrError {
        EcrError::new("InvalidParameterException", message)
    }

    fn into_response(self, request_id: &str) -> Response {
        let body = json!({"__type": self.kind, "message": self.message}).to_string();
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = self.status;
        set_headers(&mut r, request_id);
        r
    }
}

/// The one mapping of registry errors to ECR exceptions.
impl From<Error> for EcrError {
    fn from(e: Error) -> EcrError {
        let msg = e.to_string();
        match e {
            Error::InvalidParameter(_) => EcrError::invalid(msg),
            Error::RepositoryNotFound { .. } => EcrError::new("RepositoryNotFoundException", msg),
            Error::RepositoryAlreadyExists { .. } => {
                EcrError::new("RepositoryAlreadyExistsException", msg)
            }
            Error::RepositoryNotEmpty { .. } => EcrError::new("RepositoryNotEmptyException", msg),
            Error::TooManyTags(_) => EcrError::new("TooManyTagsException", msg),
            Error::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                EcrError {
                    kind: "ServerException",
                    message: "An internal error occurred.".into(),
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                }
            }
            other => {
                tracing::error!(error = %other, "unexpected registry error on the control plane");
                EcrError {
                    kind: "ServerException",
                    message: "An internal error occurred.".into(),
                    status: StatusCode::INTERNAL_SERVER_ERROR,
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
        }
    }
}

fn set_headers(r: &mut Response, request_id: &str) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
}

/// What a control-plane operation knows about its caller.
struct Ctx<'a> {
    reg: &'a Registry,
    identity: Identity,
    region: String,
    /// `host[:port]` the client addressed.
    host: String,
}

impl Ctx<'_> {
    fn ns(&self) -> Namespace {
        self.reg.namespace(&self.identity.account_id, &self.region)
    }

    /// The namespace for an optional `registryId`: only the caller's own account for now.
    fn registry_ns(
        &self,
        registry_id: Option<&str>,
        action: &str,
        name: Option<&str>,
    ) -> Result<Namespace, EcrError> {
        match registry_id {
            None => Ok(self.ns()),
            Some(id) if !berth_registry::valid_account_id(id) => Err(EcrError::invalid(
                "Invalid parameter at 'registryId' failed to satisfy constraint: 'must satisfy regular expression '[0-9]{12}''",
            )),
            Some(id) if id == self.identity.account_id => Ok(self.ns()),
            Some(id) => {
                let resource = match name {
                    Some(n) => format!("arn:aws:ecr:{}:{id}:repository/{n}", self.region),
                    None => "*".to_string(),
                };
                Err(EcrError::new(
                    "AccessDeniedException",
                    format!(
                        "User: {} is not authorized to perform: ecr:{action} on resource: {resource} because no resource-based policy allows the ecr:{action} action",
                        self.identity.principal_arn
                    ),
                ))
            }
        }
    }

    fn repo_json(&self, info: &RepositoryInfo) -> Value {
        let mut v = json!({
            "repositoryArn": format!("arn:aws:ecr:{}:{}:repository/{}", info.region, info.account_id, info.name),
            "registryId": info.account_id,
            "repositoryName": info.name,
            "repositoryUri": format!("{}/{}", self.host, info.name),
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

/// Serve one control-plane request.
pub async fn handle(state: &AppState, mut parts: Parts, body: Body) -> Response {
    let request_id = uuid_like();
    match serve(state, &mut parts, body).await {
        Ok(v) => {
            let mut r = Response::new(Body::from(v.to_string()));
            set_headers(&mut r, &request_id);
            r
        }
        Err(e) => e.into_response(&request_id),
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let x = format!("{:032x}", t ^ ((n as u128) << 64));
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

async fn serve(state: &AppState, parts: &mut Parts, body: Body) -> Result<Value, EcrError> {
    let reg = &*state.registry;
    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        EcrError::new(
            "SerializationException",
            "The request body could not be read or is too large.",
        )
    })?;
    // HTTP/2 carries the host as :authority; SigV4 signs it as `host`.
    if !parts.headers.contains_key(header::HOST)
        && let Some(a) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        parts.headers.insert(header::HOST, a);
    }
    let body_sha = hex_sha256(&body);
    let sreq = sigv4::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body_sha256: &body_sha,
    };
    let parsed = sigv4::parse(&sreq, "ecr", reg.regions(), SystemTime::now())?;
    let (identity, secret) = reg
        .access_key_secret(parsed.access_key_id())
        .await?
        .ok_or(sigv4::SigV4Error::UnrecognizedClient)?;
    if parsed.session_token().is_some() {
        // Berth issues no session credentials: a session token is never valid.
        return Err(sigv4::SigV4Error::UnrecognizedClient.into());
    }
    let verified = parsed.verify(&sreq, &secret)?;
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let op = target.strip_prefix(TARGET_PREFIX).unwrap_or("");
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let ctx = Ctx {
        reg,
        identity,
        region: verified.region,
        host,
    };
    let input: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|_| {
            EcrError::new(
                "SerializationException",
                "Start of structure or map found where not expected.",
            )
        })?
    };
    if !input.is_object() {
        return Err(EcrError::new(
            "SerializationException",
            "Start of structure or map found where not expected.",
        ));
    }
    match op {
        "GetAuthorizationToken" => get_authorization_token(&ctx, parse(input)?),
        "CreateRepository" => create_repository(&ctx, parse(input)?).await,
        "DescribeRepositories" => describe_repositories(&ctx, parse(input)?).await,
        "DeleteRepository" => delete_repository(&ctx, parse(input)?).await,
        "PutImageTagMutability" => put_image_tag_mutability(&ctx, parse(input)?).await,
        "TagResource" => tag_resource(&ctx, parse(input)?).await,
        "UntagResource" => untag_resource(&ctx, parse(input)?).await,
        "ListTagsForResource" => list_tags_for_resource(&ctx, parse(input)?).await,
        "DescribeRegistry" => Ok(json!({
            "registryId": ctx.identity.account_id,
            "replicationConfiguration": {"rules": []},
        })),
        _ => Err(EcrError::new("UnknownOperationException", "")),
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
    tags.unwrap_or_default()
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect()
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
        Some(t) => hex::decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(Some)
            .ok_or_else(|| EcrError::invalid("Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid token'")),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetAuthorizationTokenIn {
    registry_ids: Option<Vec<String>>,
}

fn get_authorization_token(
    ctx: &Ctx<'_>,
    input: GetAuthorizationTokenIn,
) -> Result<Value, EcrError> {
    let ids = input
        .registry_ids
        .unwrap_or_else(|| vec![ctx.identity.account_id.clone()]);
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
                "proxyEndpoint": format!("http://{}", ctx.host),
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
    let ns = ctx.registry_ns(
        input.registry_id.as_deref(),
        "CreateRepository",
        Some(&name),
    )?;
    let enc = input.encryption_configuration;
    let settings = RepoSettings {
        image_tag_mutability: input
            .image_tag_mutability
            .unwrap_or_else(|| "MUTABLE".into()),
        exclusions: input
            .image_tag_mutability_exclusion_filters
            .unwrap_or_default(),
        scan_on_push: input
            .image_scanning_configuration
            .map(|s| s.scan_on_push)
            .unwrap_or(false),
        encryption_type: enc
            .as_ref()
            .map(|e| e.encryption_type.clone())
            .unwrap_or_else(|| "AES256".into()),
        kms_key: enc.and_then(|e| e.kms_key),
    };
    let info = ctx
        .reg
        .create_repository(&ns, &name, &settings, &tag_pairs(input.tags))
        .await?;
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

async fn describe_repositories(
    ctx: &Ctx<'_>,
    input: DescribeRepositoriesIn,
) -> Result<Value, EcrError> {
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "DescribeRepositories", None)?;
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
            out.push(ctx.repo_json(&ctx.reg.describe_repository(&ns, &n).await?));
        }
        return Ok(json!({"repositories": out}));
    }
    let limit = max_results(input.max_results, 1000, 100)?;
    let last = decode_token(input.next_token.as_deref())?;
    let (items, more) = ctx
        .reg
        .list_repository_infos(&ns, last.as_deref(), limit)
        .await?;
    let mut v = json!({"repositories": items.iter().map(|i| ctx.repo_json(i)).collect::<Vec<_>>()});
    if more && let Some(l) = items.last() {
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
    let ns = ctx.registry_ns(
        input.registry_id.as_deref(),
        "DeleteRepository",
        Some(&name),
    )?;
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

async fn put_image_tag_mutability(
    ctx: &Ctx<'_>,
    input: PutImageTagMutabilityIn,
) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(
        input.registry_id.as_deref(),
        "PutImageTagMutability",
        Some(&name),
    )?;
    let filters = input
        .image_tag_mutability_exclusion_filters
        .unwrap_or_default();
    let info = ctx
        .reg
        .set_tag_mutability(&ns, &name, &input.image_tag_mutability, &filters)
        .await?;
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
fn arn_repo(ctx: &Ctx<'_>, arn: &str, action: &str) -> Result<(Namespace, String), EcrError> {
    let bad = || {
        EcrError::invalid(
            "Invalid parameter at 'resourceArn' failed to satisfy constraint: 'Invalid ARN'",
        )
    };
    let rest = arn.strip_prefix("arn:aws:ecr:").ok_or_else(bad)?;
    let mut it = rest.splitn(3, ':');
    let (region, account, res) = (
        it.next().ok_or_else(bad)?,
        it.next().ok_or_else(bad)?,
        it.next().ok_or_else(bad)?,
    );
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
    let ns = ctx.registry_ns(Some(account), action, Some(&name))?;
    Ok((ns, name))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagResourceIn {
    resource_arn: String,
    tags: Vec<ResourceTag>,
}

async fn tag_resource(ctx: &Ctx<'_>, input: TagResourceIn) -> Result<Value, EcrError> {
    let (ns, name) = arn_repo(ctx, &input.resource_arn, "TagResource")?;
    ctx.reg
        .tag_repository(&ns, &name, &tag_pairs(Some(input.tags)))
        .await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UntagResourceIn {
    resource_arn: String,
    tag_keys: Vec<String>,
}

async fn untag_resource(ctx: &Ctx<'_>, input: UntagResourceIn) -> Result<Value, EcrError> {
    let (ns, name) = arn_repo(ctx, &input.resource_arn, "UntagResource")?;
    ctx.reg
        .untag_repository(&ns, &name, &input.tag_keys)
        .await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListTagsForResourceIn {
    resource_arn: String,
}

async fn list_tags_for_resource(
    ctx: &Ctx<'_>,
    input: ListTagsForResourceIn,
) -> Result<Value, EcrError> {
    let (ns, name) = arn_repo(ctx, &input.resource_arn, "ListTagsForResource")?;
    let tags = ctx.reg.resource_tags(&ns, &name).await?;
    Ok(
        json!({"tags": tags.into_iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>()}),
    )
}
