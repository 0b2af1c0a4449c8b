//! HTTP glue: one listener serves the OCI distribution API under `/v2/`, the ECR control plane
//! (`POST /`, AWS JSON), KMS and CloudTrail's LookupEvents (AWS JSON, by `X-Amz-Target`) and the IAM and STS Query APIs (`POST /`, form-encoded). Requests are parsed into a typed route by
//! [`berth_oci::path::parse`] before anything else happens.

mod body;
mod cloudtrail;
mod conn;
mod ecr;
mod error;
mod iam;
mod kms;
mod obs;
mod oci;
mod query;
pub mod tls;

pub use conn::{ConnLimits, serve};
pub use error::ApiError;
pub use obs::{DURATION_BUCKETS, Observability};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use berth_registry::Registry;
use http::{HeaderValue, StatusCode};
use std::sync::Arc;

/// Shared state of all handlers.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    /// Take the client's address and scheme from `X-Forwarded-For` / `X-Forwarded-Proto` (set
    /// only behind a proxy that overwrites them): the last address of `X-Forwarded-For` is the
    /// one the proxy saw.
    pub trust_forwarded: bool,
    /// Metrics, the repository label cap and the audit recorder.
    pub obs: Arc<Observability>,
    /// `/metrics`, `/healthz` and `/readyz` are served by [`admin_router`] on a listener of their
    /// own (`admin_listen`), not by [`router`].
    pub admin_separate: bool,
    /// The audit trail: where API calls are recorded, and what CloudTrail's LookupEvents reads
    /// (`None`: no trail; LookupEvents answers `UnsupportedOperationException`).
    pub audit: Option<berth_events::audit::AuditSink>,
    /// Audit data-plane reads too (manifest and blob GET/HEAD, tag and catalog listings), as ECR
    /// records pulls; off, only data-plane writes and the control planes are recorded.
    pub audit_data_plane_reads: bool,
}

/// Where a request came from, as policies see it (`aws:SourceIp`, `aws:SecureTransport`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Origin {
    pub ip: Option<std::net::IpAddr>,
    pub secure: bool,
}

/// The request's origin: the TCP peer, or what a trusted proxy forwarded.
pub(crate) fn origin(trust_forwarded: bool, parts: &http::request::Parts) -> Origin {
    let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let tls = parts.extensions.get::<conn::SecureConn>().is_some();
    if !trust_forwarded {
        return Origin { ip: peer, secure: tls };
    }
    let last = |name: &str| {
        parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|v| !v.is_empty())
            .map(str::to_string)
    };
    let ip = last("x-forwarded-for").and_then(|v| v.parse().ok()).or(peer);
    let secure = tls || last("x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("https"));
    Origin { ip, secure }
}

/// Whether `s` holds a control character other than tab, line feed and carriage return.
pub(crate) fn has_control_chars(s: &str) -> bool {
    s.chars().any(is_forbidden_char)
}

/// A character no API input may hold and XML cannot carry: a control character other than tab,
/// line feed and carriage return, or a noncharacter U+FFFE/U+FFFF.
pub(crate) fn is_forbidden_char(c: char) -> bool {
    (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{fffe}' | '\u{ffff}')
}

/// Header every response carries.
pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

/// The operator's endpoints alone (`/metrics`, `/healthz`, `/readyz`), for the `admin_listen`
/// listener; everything else is 404.
pub fn admin_router(state: AppState) -> Router {
    Router::new().fallback(admin_dispatch).with_state(state)
}

async fn admin_dispatch(State(state): State<AppState>, req: Request<Body>) -> Response {
    let (o, req) = obs::begin(&state, req);
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let resp = match o.run(operator_endpoint(&state, &method, &path)).await {
        Some(r) => r,
        None => probe(StatusCode::NOT_FOUND, "404 page not found\n"),
    };
    o.finish(&state, resp)
}

async fn dispatch(State(state): State<AppState>, req: Request<Body>) -> Response {
    let (o, req) = obs::begin(&state, req);
    let resp = o.run(route(&state, req)).await;
    o.finish(&state, resp)
}

/// `/metrics`, `/healthz` and `/readyz` (GET), or `None` for any other request.
async fn operator_endpoint(state: &AppState, method: &http::Method, path: &str) -> Option<Response> {
    if method != http::Method::GET {
        return None;
    }
    match path {
        "/metrics" => {
            obs::note(|f| f.api = "metrics");
            Some(match state.obs.render(state).await {
                Some(text) => {
                    let mut r = Response::new(Body::from(text));
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    r
                }
                None => probe(StatusCode::NOT_FOUND, "metrics are off\n"),
            })
        }
        "/healthz" => {
            obs::note(|f| f.api = "probe");
            Some(probe(StatusCode::OK, "ok\n"))
        }
        "/readyz" => {
            obs::note(|f| f.api = "probe");
            Some(readiness(state).await)
        }
        _ => None,
    }
}

async fn readiness(state: &AppState) -> Response {
    // Answer at once: a backend that does not answer within a second is not ready.
    let ready = tokio::time::timeout(std::time::Duration::from_secs(1), state.registry.ready())
        .await
        .unwrap_or_else(|_| Err(berth_registry::Error::Unavailable("a backend did not answer in 1 s".into())));
    match ready {
        Ok(()) => probe(StatusCode::OK, "ready\n"),
        Err(berth_registry::Error::StorageFull(why)) => {
            tracing::warn!(why, "readiness check failed");
            probe(StatusCode::SERVICE_UNAVAILABLE, "not ready: the storage is full\n")
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            probe(StatusCode::SERVICE_UNAVAILABLE, "not ready: a backend is unreachable\n")
        }
    }
}

async fn route(state: &AppState, req: Request<Body>) -> Response {
    let state = state.clone();
    // POST / with an X-Amz-Target is the ECR control plane; everything else the data plane.
    if req.uri().path() == "/" && req.method() == http::Method::POST {
        let (parts, body) = req.into_parts();
        // IAM and STS speak the Query protocol (form-encoded); ECR speaks AWS JSON.
        let form = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if form {
            return iam::handle(&state, parts, body).await;
        }
        if cloudtrail::is_target(&parts) {
            return cloudtrail::handle(&state, parts, body).await;
        }
        if kms::is_target(&parts) {
            return kms::handle(&state, parts, body).await;
        }
        return ecr::handle(&state, parts, body).await;
    }
    // Probes for load balancers and orchestrators, and metrics (unless on their own listener).
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    if !state.admin_separate
        && let Some(r) = operator_endpoint(&state, &method, &path).await
    {
        return r;
    }
    // A handler that panics, for tests of the panic guard (only with BERTH_TEST_HOOKS=1).
    if req.method() == http::Method::GET && req.uri().path() == "/__berth/test/panic" && test_hooks() {
        panic!("test panic requested");
    }
    let mut resp = oci::handle(&state, req).await;
    resp.headers_mut().insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    resp
}

/// Test-only endpoints are served (`BERTH_TEST_HOOKS=1`); never set it in production.
fn test_hooks() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("BERTH_TEST_HOOKS").is_ok_and(|v| v == "1"))
}

fn probe(status: StatusCode, text: &'static str) -> Response {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().uri("/v2/");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (mut p, _) = b.body(()).unwrap().into_parts();
        p.extensions.insert(axum::extract::ConnectInfo(std::net::SocketAddr::from(([192, 0, 2, 1], 5000))));
        p
    }

    #[test]
    fn origin_is_the_peer_unless_forwarding_is_trusted() {
        let fwd = [("x-forwarded-for", "203.0.113.9, 10.1.2.3"), ("x-forwarded-proto", "https")];
        let o = origin(false, &parts(&fwd));
        assert_eq!((o.ip, o.secure), (Some("192.0.2.1".parse().unwrap()), false));
        let o = origin(true, &parts(&fwd));
        assert_eq!((o.ip, o.secure), (Some("10.1.2.3".parse().unwrap()), true), "the address the proxy saw");
        let o = origin(true, &parts(&[("x-forwarded-for", "not-an-ip"), ("x-forwarded-proto", "http")]));
        assert_eq!((o.ip, o.secure), (Some("192.0.2.1".parse().unwrap()), false));
    }
}
