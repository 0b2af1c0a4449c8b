//! HTTP glue: one listener serves the OCI distribution API under `/v2/`, the ECR control plane
//! (`POST /`, AWS JSON) and the IAM and STS Query APIs (`POST /`, form-encoded). Requests are parsed into a typed route by
//! [`berth_oci::path::parse`] before anything else happens.

mod ecr;
mod error;
mod iam;
mod oci;
mod query;

pub use error::ApiError;

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
}

/// Header every response carries.
pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

async fn dispatch(State(state): State<AppState>, req: Request<Body>) -> Response {
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
        return ecr::handle(&state, parts, body).await;
    }
    // Probes for load balancers and orchestrators.
    if req.method() == http::Method::GET {
        match req.uri().path() {
            "/healthz" => return probe(StatusCode::OK, "ok\n"),
            "/readyz" => {
                return match state.registry.ready().await {
                    Ok(()) => probe(StatusCode::OK, "ready\n"),
                    Err(e) => {
                        tracing::warn!(error = %e, "readiness check failed");
                        probe(StatusCode::SERVICE_UNAVAILABLE, "not ready: a backend is unreachable\n")
                    }
                };
            }
            _ => {}
        }
    }
    let mut resp = oci::handle(&state, req).await;
    resp.headers_mut().insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    resp
}

fn probe(status: StatusCode, text: &'static str) -> Response {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}
