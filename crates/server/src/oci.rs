//! OCI distribution-spec v1.1 handlers. Each handler quotes the spec request it serves.

use crate::error::ApiError;
use crate::{AppState, query};
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use berth_meta::Namespace;
use berth_oci::path::Route;
use berth_oci::range::ChunkRange;
use berth_oci::{ErrorCode, Reference, RepoName, media};
use berth_registry::{Caller, Error, Identity, Registry, Target};
use berth_storage::ByteStream;
use futures::TryStreamExt;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::json;

type Result<T> = std::result::Result<T, ApiError>;

/// Route and serve one data-plane request.
pub async fn handle(state: &AppState, req: Request<Body>) -> Response {
    let path = req.uri().path().to_string();
    let Some(route) = berth_oci::path::parse(&path) else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from("404 page not found\n"))
            .expect("valid response");
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("localhost")
        .to_string();
    let Some((mut ns, explicit)) = state.registry.data_plane_host(&host) else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from("404 page not found\n"))
            .expect("valid response");
    };
    let (parts, body) = req.into_parts();
    note_route(&route, &parts.method);
    let caller = match authorize(state, &mut ns, explicit, &route, &parts).await {
        Ok(c) => c,
        Err(e) => {
            let unauthenticated = matches!(e, Error::Unauthenticated);
            let mut r = ApiError::from(e).into_response();
            if unauthenticated {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    hv(&format!("Basic realm=\"http://{host}/\",service=\"ecr.amazonaws.com\"")),
                );
            }
            return r;
        }
    };
    crate::obs::note(|f| {
        f.identity = caller.identity.as_deref().cloned();
        f.account_id = Some(ns.account_id.clone());
        f.region = Some(ns.region.clone());
    });
    match serve(state, &ns, &caller, route, Request::from_parts(parts, body)).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Tell the observer what a data-plane request is, as ECR's CloudTrail records name it (the
/// `/v2/` ping is no API call).
fn note_route(route: &Route<'_>, method: &Method) {
    crate::obs::note(|f| f.api = "oci");
    if matches!(route, Route::Base) {
        return;
    }
    let op = action(route, method).trim_start_matches("ecr:");
    let mut params = serde_json::Map::new();
    let repo = match route {
        Route::Base | Route::Catalog => None,
        Route::Tags { name } | Route::UploadStart { name } => Some(*name),
        Route::Manifest { name, reference } => {
            let key = if reference.contains(':') { "imageDigest" } else { "imageTag" };
            params.insert("imageIds".into(), json!([{ key: reference }]));
            Some(*name)
        }
        Route::Blob { name, digest } => {
            params.insert("layerDigest".into(), json!(digest));
            Some(*name)
        }
        Route::Upload { name, id } => {
            params.insert("uploadId".into(), json!(id));
            Some(*name)
        }
        Route::Referrers { name, digest } => {
            params.insert("subjectDigest".into(), json!(digest));
            Some(*name)
        }
    };
    if let Some(r) = repo {
        params.insert("repositoryName".into(), json!(r));
    }
    crate::obs::note(|f| {
        f.operation = Some(op.to_string());
        f.known_operation = true;
        f.repository = repo.map(str::to_string);
        f.request_parameters = Some(serde_json::Value::Object(params));
    });
}

/// The ECR action a data-plane request performs (what IAM will authorize), e.g. `ecr:PutImage`.
fn action(route: &Route<'_>, method: &Method) -> &'static str {
    match (route, method) {
        (Route::Base, _) => "ecr:GetAuthorizationToken",
        (Route::Catalog, _) => "ecr:DescribeRepositories",
        (Route::Tags { .. }, _) => "ecr:ListImages",
        (Route::Manifest { .. }, &Method::PUT) => "ecr:PutImage",
        (Route::Manifest { .. }, &Method::DELETE) | (Route::Blob { .. }, &Method::DELETE) => "ecr:BatchDeleteImage",
        (Route::Manifest { .. }, _) | (Route::Referrers { .. }, _) => "ecr:BatchGetImage",
        (Route::Blob { .. }, &Method::HEAD) => "ecr:BatchCheckLayerAvailability",
        (Route::Blob { .. }, _) => "ecr:GetDownloadUrlForLayer",
        (Route::UploadStart { .. }, _) => "ecr:InitiateLayerUpload",
        (Route::Upload { .. }, &Method::PUT) => "ecr:CompleteLayerUpload",
        (Route::Upload { .. }, _) => "ecr:UploadLayerPart",
    }
}

/// Who made a data-plane request: `None` identity for an anonymous caller (and for a signed
/// layer URL, which authorizes itself).
pub(crate) struct DataCaller {
    identity: Option<std::sync::Arc<Identity>>,
    origin: crate::Origin,
}

impl DataCaller {
    fn caller(&self) -> Caller<'_> {
        Caller { identity: self.identity.as_deref(), source_ip: self.origin.ip, secure_transport: self.origin.secure }
    }
}

/// Authenticate the caller (a registry token, or nobody) and authorize the request's ECR action
/// on its repository through IAM policy evaluation. An anonymous caller that no policy allows
/// gets 401 (so clients log in), an authenticated one 403 DENIED naming the action.
///
/// On the plain address (`explicit` false: not a per-account host) the registry is the one of
/// the account whose credentials are presented (a registry token names its account), so every
/// account's repository URIs without a registry domain work for its callers; anonymous callers
/// get the default account's, and `ns` is updated to the account served.
async fn authorize(
    state: &AppState,
    ns: &mut Namespace,
    explicit: bool,
    route: &Route<'_>,
    req: &Parts,
) -> std::result::Result<DataCaller, Error> {
    let reg = &*state.registry;
    let origin = crate::origin(state.trust_forwarded, req);
    // Empty Basic credentials are no credentials: containers/image clients (skopeo, podman) send
    // `Basic Og==` after a Basic challenge when they have none, e.g. to pull a public repository.
    let h = req.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).filter(|h| !empty_basic(h));
    // Layer URLs from GetDownloadUrlForLayer are signed for one blob instead of carrying a token.
    if let (None, Route::Blob { name, digest }, &Method::GET | &Method::HEAD) = (h, route, &req.method) {
        let q = query::pairs(req.uri.query());
        if let (Some(exp), Some(sig)) = (query::get(&q, "X-Berth-Expires"), query::get(&q, "X-Berth-Signature")) {
            // A URL for another account's blob on the plain address names the account (signed).
            if let (false, Some(acct)) = (explicit, query::get(&q, "X-Berth-Account")) {
                ns.account_id = acct.to_string();
            }
            reg.verify_download_url(ns, name, digest, exp, sig)?;
            return Ok(DataCaller { identity: None, origin });
        }
    }
    let identity = match h {
        None => None,
        Some(_) => Some(reg.authenticate(h)?),
    };
    if let (false, Some(id)) = (explicit, &identity) {
        ns.account_id.clone_from(&id.account_id);
    }
    let ns = &*ns;
    let dc = DataCaller { identity, origin };
    let caller = dc.caller();
    let act = action(route, &req.method);
    let name = match route {
        Route::Tags { name }
        | Route::Manifest { name, .. }
        | Route::Blob { name, .. }
        | Route::UploadStart { name }
        | Route::Upload { name, .. }
        | Route::Referrers { name, .. } => *name,
        // The base endpoint checks credentials only; the catalog is filtered per repository.
        Route::Base | Route::Catalog => {
            let Some(id) = &dc.identity else { return Err(Error::Unauthenticated) };
            reg.authorize(&caller, "ecr:GetAuthorizationToken", Target::Account).await.or_else(|e| match e {
                Error::Denied(_) => Ok(()),
                e => Err(e),
            })?;
            let _ = id;
            return Ok(dc);
        }
    };
    // A monolithic upload (POST with `?digest=`, no mount) initiates, uploads and completes the
    // layer in one request: it needs all three push actions.
    let monolithic: &[&str] = match (route, &req.method) {
        (Route::UploadStart { .. }, &Method::POST) => {
            let q = query::pairs(req.uri.query());
            if query::get(&q, "mount").is_none() && query::get(&q, "digest").is_some() {
                &["ecr:UploadLayerPart", "ecr:CompleteLayerUpload"]
            } else {
                &[]
            }
        }
        _ => &[],
    };
    let target = Target::Repository { ns, name };
    let mut result = reg.authorize(&caller, act, target).await;
    // A push that creates the repository (create-on-push) also needs ecr:CreateRepository.
    let pushes =
        matches!(act, "ecr:InitiateLayerUpload" | "ecr:UploadLayerPart" | "ecr:CompleteLayerUpload" | "ecr:PutImage");
    let creates: &[&str] = if pushes && result.is_ok() && reg.push_creates_repository(ns, name).await? {
        &["ecr:CreateRepository"]
    } else {
        &[]
    };
    for extra in monolithic.iter().chain(creates) {
        if result.is_err() {
            break;
        }
        result = reg.authorize(&caller, extra, target).await;
    }
    match result {
        Ok(()) => Ok(dc),
        // Nothing about a repository leaks to anonymous callers: they are asked to log in.
        Err(Error::Denied(_)) if dc.identity.is_none() => Err(Error::Unauthenticated),
        Err(e) => Err(e),
    }
}

/// `Basic` credentials with an empty user name and password (or none at all).
fn empty_basic(h: &str) -> bool {
    use base64::Engine;
    let Some(cred) = h.strip_prefix("Basic ").or_else(|| h.strip_prefix("basic ")).map(str::trim) else {
        return false;
    };
    // Only a short value can encode ":" (a registry token is kilobytes: not worth decoding).
    cred.is_empty()
        || (cred.len() <= 8 && base64::engine::general_purpose::STANDARD.decode(cred).is_ok_and(|d| d == b":"))
}

/// Whether the caller may read layers of repository `from` (a cross-repository mount source);
/// a mount the caller may not read from falls back to a regular upload session.
async fn may_read_layers(reg: &Registry, ns: &Namespace, caller: &DataCaller, from: &RepoName) -> Result<bool> {
    let target = Target::Repository { ns, name: from.as_str() };
    match reg.authorize(&caller.caller(), "ecr:GetDownloadUrlForLayer", target).await {
        Ok(()) => Ok(true),
        Err(Error::Denied(_) | Error::Unauthenticated) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn unsupported(method: &Method) -> ApiError {
    ApiError::new(ErrorCode::Unsupported, format!("method {method} is not supported on this endpoint"), json!(null))
}

fn name(n: &str) -> Result<RepoName> {
    Registry::parse_name(n).map_err(ApiError::from)
}

async fn serve(
    state: &AppState,
    ns: &Namespace,
    caller: &DataCaller,
    route: Route<'_>,
    req: Request<Body>,
) -> Result<Response> {
    let reg = &*state.registry;
    let (req, body) = req.into_parts();
    let method = req.method.clone();
    match route {
        // GET /v2/
        Route::Base => match method {
            Method::GET | Method::HEAD => Ok(json_response(StatusCode::OK, "{}".into(), None)),
            m => Err(unsupported(&m)),
        },
        // GET /v2/_catalog?n=&last=
        Route::Catalog => match method {
            Method::GET => catalog(reg, ns, &caller.caller(), &req).await,
            m => Err(unsupported(&m)),
        },
        // GET /v2/<name>/tags/list?n=&last=
        Route::Tags { name: n } => match method {
            Method::GET => tags(reg, ns, &name(n)?, &req).await,
            m => Err(unsupported(&m)),
        },
        Route::Manifest { name: n, reference } => {
            let name = name(n)?;
            let reference = match (parse_reference(reference), &method) {
                (Ok(r), _) => r,
                // Pulls and deletes of a reference that cannot exist are plain misses (404), as the
                // conformance suite expects; a push with a bad tag is a client error (400).
                (Err(_), m) if *m != Method::PUT && !reference.contains(':') => {
                    return Err(Error::ManifestUnknown(reference.chars().take(200).collect()).into());
                }
                (Err(e), _) => return Err(e),
            };
            match method {
                Method::GET | Method::HEAD => {
                    manifest_get(reg, ns, caller, &name, &reference, &req, method == Method::HEAD).await
                }
                Method::PUT => manifest_put(reg, ns, caller, &name, &reference, &req, body).await,
                Method::DELETE => {
                    reg.manifest_delete(ns, &name, &reference).await?;
                    Ok(empty(StatusCode::ACCEPTED))
                }
                m => Err(unsupported(&m)),
            }
        }
        Route::Blob { name: n, digest } => {
            let name = name(n)?;
            let digest = Registry::parse_digest(digest)?;
            match method {
                Method::GET | Method::HEAD => blob_get(reg, ns, &name, &digest, &req, method == Method::HEAD).await,
                Method::DELETE => {
                    reg.blob_delete(ns, &name, &digest).await?;
                    Ok(empty(StatusCode::ACCEPTED))
                }
                m => Err(unsupported(&m)),
            }
        }
        Route::UploadStart { name: n } => match method {
            Method::POST => upload_start(reg, ns, caller, &name(n)?, &req, body).await,
            m => Err(unsupported(&m)),
        },
        Route::Upload { name: n, id } => {
            let name = name(n)?;
            match method {
                Method::GET => {
                    let st = reg.upload_status(ns, &name, id).await?;
                    Ok(upload_progress(StatusCode::NO_CONTENT, &name, &st.id, st.size))
                }
                Method::PATCH => upload_patch(reg, ns, &name, id, &req, body).await,
                Method::PUT => upload_put(reg, ns, &name, id, &req, body).await,
                Method::DELETE => {
                    reg.upload_cancel(ns, &name, id).await?;
                    Ok(empty(StatusCode::NO_CONTENT))
                }
                m => Err(unsupported(&m)),
            }
        }
        // GET /v2/<name>/referrers/<digest>?artifactType=
        Route::Referrers { name: n, digest } => match method {
            Method::GET => referrers(reg, ns, &name(n)?, digest, &req).await,
            m => Err(unsupported(&m)),
        },
    }
}

fn parse_reference(r: &str) -> Result<Reference> {
    r.parse().map_err(|e| match e {
        berth_oci::ParseError::Digest(d) => ApiError::from(Error::DigestInvalid(format!("invalid digest '{d}'"))),
        _ => ApiError::from(Error::TagInvalid(r.chars().take(200).collect())),
    })
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

fn json_response(status: StatusCode, body: String, content_type: Option<&str>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, hv(content_type.unwrap_or("application/json")));
    r
}

fn header_str(h: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Query pairs and the `n` page size.
type PageParams = (Vec<(String, String)>, Option<u32>);

fn page_params(req: &Parts) -> Result<PageParams> {
    let q = query::pairs(req.uri.query());
    let n = match query::get(&q, "n") {
        None | Some("") => None,
        Some(v) => Some(v.parse::<u32>().map_err(|_| {
            ApiError::new(ErrorCode::Unsupported, "invalid page size", json!({"n": v}))
                .with_status(StatusCode::BAD_REQUEST)
        })?),
    };
    // No tag or repository name holds control characters, and some stores cannot compare with
    // them (PostgreSQL text): refuse them instead of answering 500.
    if let Some(last) = query::get(&q, "last")
        && crate::has_control_chars(last)
    {
        return Err(ApiError::new(ErrorCode::Unsupported, "invalid 'last': control characters", json!({"last": last}))
            .with_status(StatusCode::BAD_REQUEST));
    }
    Ok((q, n))
}

fn link_header(r: &mut Response, base: &str, n: Option<u32>, last: &str) {
    let mut url = format!("{base}?");
    if let Some(n) = n {
        url.push_str(&format!("n={n}&"));
    }
    url.push_str(&format!("last={}", query::encode(last)));
    r.headers_mut().insert(header::LINK, hv(&format!("<{url}>; rel=\"next\"")));
}

async fn catalog(reg: &Registry, ns: &Namespace, caller: &Caller<'_>, req: &Parts) -> Result<Response> {
    let (q, n) = page_params(req)?;
    let page = reg.catalog_for(caller, ns, query::get(&q, "last"), n).await?;
    let mut r = json_response(StatusCode::OK, json!({"repositories": page.items}).to_string(), None);
    if let Some(next) = &page.next {
        link_header(&mut r, "/v2/_catalog", n, next);
    }
    Ok(r)
}

async fn tags(reg: &Registry, ns: &Namespace, name: &RepoName, req: &Parts) -> Result<Response> {
    let (q, n) = page_params(req)?;
    let page = reg.tags(ns, name, query::get(&q, "last"), n).await?;
    let mut r = json_response(StatusCode::OK, json!({"name": name.as_str(), "tags": page.items}).to_string(), None);
    if page.more
        && let Some(last) = page.items.last()
    {
        link_header(&mut r, &format!("/v2/{name}/tags/list"), n, last);
    }
    Ok(r)
}

/// `true` unless `Accept` names manifest media types and none of them (nor a wildcard) is `mt`.
fn acceptable(headers: &HeaderMap, mt: &str) -> bool {
    let mut names_manifest_type = false;
    for v in headers.get_all(header::ACCEPT) {
        let Ok(v) = v.to_str() else { continue };
        for item in v.split(',') {
            let t = berth_oci::manifest::base_media_type(item);
            if t == mt || t == "*/*" || t == "application/*" {
                return true;
            }
            if berth_oci::manifest::is_manifest_type(t)
                || t == media::DOCKER_SCHEMA1
                || t == media::DOCKER_SCHEMA1_SIGNED
            {
                names_manifest_type = true;
            }
        }
    }
    !names_manifest_type
}

// GET|HEAD /v2/<name>/manifests/<reference>   Accept: <media types>
async fn manifest_get(
    reg: &Registry,
    ns: &Namespace,
    caller: &DataCaller,
    name: &RepoName,
    reference: &Reference,
    req: &Parts,
    head: bool,
) -> Result<Response> {
    let m = match reg.manifest_get(ns, name, reference).await {
        // The repository's pull gate refused it: callers allowed the bypass action pull anyway.
        Err(berth_registry::Error::PullGated(why)) => {
            let target = Target::Repository { ns, name: name.as_str() };
            if reg.authorize(&caller.caller(), berth_registry::scan::BYPASS_PULL_GATE, target).await.is_err() {
                return Err(berth_registry::Error::PullGated(why).into());
            }
            reg.manifest_get_gated(ns, name, reference, false).await?
        }
        r => r?,
    };
    if matches!(reference, Reference::Tag(_)) && !acceptable(&req.headers, &m.media_type) {
        return Err(ApiError::new(
            ErrorCode::ManifestUnknown,
            format!("manifest media type {} is not in the Accept header", m.media_type),
            json!({"reference": reference.to_string()}),
        ));
    }
    let mut r = if head { Response::new(Body::empty()) } else { Response::new(Body::from(m.bytes.clone())) };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, hv(&m.media_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(m.bytes.len()));
    h.insert("docker-content-digest", hv(m.digest.as_str()));
    h.insert(header::ETAG, hv(&format!("\"{}\"", m.digest)));
    Ok(r)
}

// PUT /v2/<name>/manifests/<reference>[?tag=<tag>...]   Content-Type: <media type>
async fn manifest_put(
    reg: &Registry,
    ns: &Namespace,
    caller: &DataCaller,
    name: &RepoName,
    reference: &Reference,
    req: &Parts,
    body: Body,
) -> Result<Response> {
    let q = query::pairs(req.uri.query());
    let extra_tags: Vec<String> = query::all(&q, "tag").map(str::to_string).collect();
    let content_type = header_str(&req.headers, header::CONTENT_TYPE).map(str::to_string);
    if header_str(&req.headers, header::CONTENT_LENGTH)
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > DRAIN_LIMIT as u64)
    {
        let mut r = ApiError::from(Error::ManifestTooLarge).into_response();
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(r);
    }
    let bytes = match read_limited(body, berth_oci::MAX_MANIFEST_BYTES).await {
        Ok(b) => b,
        Err(Some(resp)) => return Ok(resp),
        Err(None) => return Err(Error::BodyFailed("manifest body could not be read".into()).into()),
    };
    // A peer deployment's replication marks its pushes so that they are not replicated onward;
    // the mark counts only from a caller allowed `ecr:ReplicateImage` on the repository.
    let replicated = header_str(&req.headers, berth_registry::replication::peer::REPLICATION_HEADER) == Some("true")
        && extra_tags.is_empty()
        && reg
            .authorize(&caller.caller(), "ecr:ReplicateImage", Target::Repository { ns, name: name.as_str() })
            .await
            .is_ok();
    let pushed = if replicated {
        reg.manifest_put_replicated(ns, name, reference, content_type.as_deref(), bytes).await?
    } else {
        reg.manifest_put(ns, name, reference, content_type.as_deref(), bytes, &extra_tags).await?
    };
    let mut r = empty(StatusCode::CREATED);
    let h = r.headers_mut();
    h.insert(header::LOCATION, hv(&format!("/v2/{name}/manifests/{}", pushed.digest)));
    h.insert("docker-content-digest", hv(pushed.digest.as_str()));
    for t in &pushed.tags {
        h.append("oci-tag", hv(t.as_str()));
    }
    if let Some(s) = pushed.subject {
        h.insert("oci-subject", hv(s.as_str()));
    }
    Ok(r)
}

/// Bytes a too-large body is read and discarded for, so that the client (still sending) gets
/// the 413 instead of a reset connection; past this the connection is closed.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Read a whole body of at most `limit` bytes. `Err(Some(413 response))` when it is larger
/// (the excess drained up to [`DRAIN_LIMIT`]), `Err(None)` when the body fails.
async fn read_limited(body: Body, limit: usize) -> std::result::Result<bytes::Bytes, Option<Response>> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| None)?;
        seen += chunk.len();
        if seen <= limit {
            buf.extend_from_slice(&chunk);
        } else if seen > DRAIN_LIMIT {
            let mut r = ApiError::from(Error::ManifestTooLarge).into_response();
            r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Err(Some(r));
        }
    }
    if seen > limit {
        return Err(Some(ApiError::from(Error::ManifestTooLarge).into_response()));
    }
    Ok(buf.freeze())
}

// GET|HEAD /v2/<name>/blobs/<digest>   [Range: bytes=<start>-<end>]
// With blob redirects on, a GET without Range answers 307 Temporary Redirect, Location: <storage URL>.
async fn blob_get(
    reg: &Registry,
    ns: &Namespace,
    name: &RepoName,
    digest: &berth_oci::Digest,
    req: &Parts,
    head: bool,
) -> Result<Response> {
    let redirect = match (head, header_str(&req.headers, header::RANGE)) {
        (false, None) => reg.blob_redirect(ns, name, digest).await?,
        _ => None,
    };
    let mut r = if let Some(url) = redirect {
        // Blob redirects (s3_redirect): the client fetches the bytes from the storage.
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
        r.headers_mut().insert(header::LOCATION, hv(&url));
        r
    } else if head {
        let size = reg.blob_size(ns, name, digest).await?;
        let mut r = Response::new(Body::empty());
        r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        r
    } else {
        let read = match reg.blob_read(ns, name, digest, header_str(&req.headers, header::RANGE)).await {
            Err(Error::RangeNotSatisfiable { size }) => {
                let mut e =
                    ApiError::new(ErrorCode::SizeInvalid, "requested range not satisfiable", json!({"size": size}))
                        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                        .into_response();
                e.headers_mut().insert(header::CONTENT_RANGE, hv(&format!("bytes */{size}")));
                return Ok(e);
            }
            other => other?,
        };
        let len = read.range.map(|r| r.len()).unwrap_or(read.size);
        let mut r = Response::new(Body::from_stream(read.body));
        r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if let Some(range) = read.range {
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            r.headers_mut()
                .insert(header::CONTENT_RANGE, hv(&format!("bytes {}-{}/{}", range.start, range.end, read.size)));
        }
        r
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media::OCTET_STREAM));
    h.insert("docker-content-digest", hv(digest.as_str()));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, hv(&format!("\"{digest}\"")));
    Ok(r)
}

fn body_stream(body: Body) -> ByteStream {
    Box::pin(body.into_data_stream().map_err(std::io::Error::other))
}

/// `Some(body)` when the request carries a body (non-zero Content-Length, or chunked).
fn optional_body(req: &Parts, body: Body) -> Option<ByteStream> {
    let h = &req.headers;
    let has = match header_str(h, header::CONTENT_LENGTH) {
        Some(n) => n.trim() != "0",
        None => h.contains_key(header::TRANSFER_ENCODING),
    };
    has.then(|| body_stream(body))
}

fn range_value(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn upload_progress(status: StatusCode, name: &RepoName, id: &str, size: u64) -> Response {
    let mut r = empty(status);
    let h = r.headers_mut();
    h.insert(header::LOCATION, hv(&format!("/v2/{name}/blobs/uploads/{id}")));
    h.insert(header::RANGE, hv(&range_value(size)));
    h.insert("docker-upload-uuid", hv(id));
    r
}

fn blob_created(name: &RepoName, digest: &berth_oci::Digest) -> Response {
    let mut r = empty(StatusCode::CREATED);
    let h = r.headers_mut();
    h.insert(header::LOCATION, hv(&format!("/v2/{name}/blobs/{digest}")));
    h.insert("docker-content-digest", hv(digest.as_str()));
    r
}

fn range_error(name: &RepoName, id: &str, size: u64) -> Response {
    let mut r = ApiError::from(Error::RangeNotSatisfiable { size }).into_response();
    let h = r.headers_mut();
    h.insert(header::LOCATION, hv(&format!("/v2/{name}/blobs/uploads/{id}")));
    h.insert(header::RANGE, hv(&range_value(size)));
    h.insert("docker-upload-uuid", hv(id));
    r
}

/// The chunk's `Content-Range`, checked (`start <= end`, no overflow): anything else is
/// `416 BLOB_UPLOAD_INVALID`, as for a chunk that does not fit the upload.
fn content_range(req: &Parts) -> Result<Option<ChunkRange>> {
    match header_str(&req.headers, header::CONTENT_RANGE) {
        None => Ok(None),
        Some(v) => berth_oci::range::parse_content_range(v).map(Some).map_err(|e| {
            let shown: String = v.chars().take(100).collect();
            ApiError::new(
                ErrorCode::BlobUploadInvalid,
                format!("invalid Content-Range: {e}"),
                json!({"Content-Range": shown}),
            )
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
        }),
    }
}

// POST /v2/<name>/blobs/uploads/                       -> 202 session
// POST /v2/<name>/blobs/uploads/?digest=<digest>       -> 201 monolithic
// POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<other>  -> 201 mounted | 202 session
async fn upload_start(
    reg: &Registry,
    ns: &Namespace,
    caller: &DataCaller,
    name: &RepoName,
    req: &Parts,
    body: Body,
) -> Result<Response> {
    let q = query::pairs(req.uri.query());
    if let Some(m) = query::get(&q, "mount") {
        let digest = Registry::parse_digest(m)?;
        if let Some(from) = query::get(&q, "from").and_then(|f| f.parse::<RepoName>().ok())
            && may_read_layers(reg, ns, caller, &from).await?
            && reg.blob_mount(ns, name, &digest, &from).await?.is_some()
        {
            return Ok(blob_created(name, &digest));
        }
    } else if let Some(d) = query::get(&q, "digest") {
        let digest = Registry::parse_digest(d)?;
        let body = optional_body(req, body).unwrap_or_else(|| Box::pin(futures::stream::empty()));
        reg.upload_monolithic(ns, name, &digest, body).await?;
        return Ok(blob_created(name, &digest));
    }
    let st = reg.upload_start(ns, name).await?;
    Ok(upload_progress(StatusCode::ACCEPTED, name, &st.id, st.size))
}

// PATCH /v2/<name>/blobs/uploads/<id>   [Content-Range: <start>-<end>]  body: chunk
async fn upload_patch(
    reg: &Registry,
    ns: &Namespace,
    name: &RepoName,
    id: &str,
    req: &Parts,
    body: Body,
) -> Result<Response> {
    let range = content_range(req)?;
    if let (Some(r), Some(len)) =
        (range, header_str(&req.headers, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok()))
        && len != r.len()
    {
        return Err(ApiError::new(
            ErrorCode::BlobUploadInvalid,
            "Content-Length does not match Content-Range",
            json!({"Content-Length": len, "Content-Range": r.to_string()}),
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE));
    }
    let body = body_stream(body);
    match reg.upload_patch(ns, name, id, range, body).await {
        Ok(st) => Ok(upload_progress(StatusCode::ACCEPTED, name, &st.id, st.size)),
        Err(Error::RangeNotSatisfiable { size }) => Ok(range_error(name, id, size)),
        Err(e) => Err(e.into()),
    }
}

// PUT /v2/<name>/blobs/uploads/<id>?digest=<digest>   [Content-Range]  [body: last chunk]
async fn upload_put(
    reg: &Registry,
    ns: &Namespace,
    name: &RepoName,
    id: &str,
    req: &Parts,
    body: Body,
) -> Result<Response> {
    let q = query::pairs(req.uri.query());
    let Some(d) = query::get(&q, "digest") else {
        return Err(Error::DigestInvalid("the digest query parameter is required".into()).into());
    };
    let digest = Registry::parse_digest(d)?;
    let range = content_range(req)?;
    let body = optional_body(req, body);
    match reg.upload_finish(ns, name, id, &digest, range, body).await {
        Ok(_) => Ok(blob_created(name, &digest)),
        Err(Error::RangeNotSatisfiable { size }) => Ok(range_error(name, id, size)),
        Err(e) => Err(e.into()),
    }
}

// GET /v2/<name>/referrers/<digest>[?artifactType=<type>]
async fn referrers(reg: &Registry, ns: &Namespace, name: &RepoName, digest: &str, req: &Parts) -> Result<Response> {
    let digest = Registry::parse_digest(digest)?;
    let q = query::pairs(req.uri.query());
    let filter = query::get(&q, "artifactType").filter(|s| !s.is_empty());
    // A media type never holds control characters: such a filter matches nothing.
    let list = match filter {
        Some(f) if crate::has_control_chars(f) => Vec::new(),
        _ => reg.referrers(ns, name, &digest, filter).await?,
    };
    let manifests: Vec<serde_json::Value> = list
        .into_iter()
        .map(|r| {
            let mut d = json!({"mediaType": r.media_type, "digest": r.digest, "size": r.size});
            if let Some(a) = r.artifact_type {
                d["artifactType"] = json!(a);
            }
            if let Some(a) = r.annotations.and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok()) {
                d["annotations"] = a;
            }
            d
        })
        .collect();
    let body = json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": manifests});
    let mut r = json_response(StatusCode::OK, body.to_string(), Some(media::OCI_INDEX));
    if filter.is_some() {
        r.headers_mut().insert("oci-filters-applied", HeaderValue::from_static("artifactType"));
    }
    Ok(r)
}
