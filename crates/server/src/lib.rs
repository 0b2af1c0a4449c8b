//! HTTP glue: one listener serves the OCI distribution API under `/v2/` (and, in later
//! issues, the ECR control plane at `POST /`). Requests are parsed into a typed route by
//! [`berth_oci::path::parse`] before anything else happens.

mod ecr;
mod error;
mod oci;
mod query;

pub use error::ApiError;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use berth_registry::Registry;
use http::HeaderValue;
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
        return ecr::handle(&state, parts, body).await;
    }
    let mut resp = oci::handle(&state, req).await;
    resp.headers_mut().insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    resp
}
