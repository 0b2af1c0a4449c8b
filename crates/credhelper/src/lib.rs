//! The client side of Berth's short-lived registry credentials.
//!
//! Registry clients authenticate to `/v2/` with `Basic AWS:<password>`, the password a
//! 12-hour token from ECR `GetAuthorizationToken`. This crate gets that token the way
//! `amazon-ecr-credential-helper` does, for two kinds of clients:
//!
//! - [`docker`]: the docker credential helper protocol (`docker-credential-berth get`), for
//!   docker, podman, buildah, skopeo and containerd's CRI plugin;
//! - [`kubelet`]: the kubelet image credential provider protocol
//!   (`CredentialProviderRequest` → `CredentialProviderResponse`).
//!
//! Both go through [`registry_credentials`]: resolve the endpoints and region
//! ([`resolve`]), find credentials with the AWS chain ([`credentials`], [`profile`],
//! [`sts`]), look in the token cache ([`cache`]), else call ECR ([`ecr`]) with a SigV4-signed
//! request and cache the answer.
//!
//! Nothing here logs or prints a secret: `Debug` of every type holding one redacts it, error
//! messages name keys and files, never their contents.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cache;
pub mod credentials;
pub mod docker;
pub mod ecr;
pub mod env;
pub mod ini;
pub mod kubelet;
pub mod net;
pub mod profile;
pub mod resolve;
pub mod sts;

use std::time::SystemTime;

use env::Env;

/// Why no password could be had.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No source of credentials at all (the docker protocol calls this "not found").
    #[error(
        "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_WEB_IDENTITY_TOKEN_FILE and \
         AWS_ROLE_ARN, or configure a profile (looked in: {0})"
    )]
    NoCredentials(String),
    /// The configuration (environment, shared files) is unusable.
    #[error("{0}")]
    Config(String),
    /// The input (server URL, image reference, request) is unusable.
    #[error("{0}")]
    Input(String),
    /// The endpoint could not be reached (refused, timed out, TLS).
    #[error("cannot reach {url}: {message}")]
    Transport {
        /// The endpoint.
        url: String,
        /// Why, with its causes.
        message: String,
    },
    /// The service answered with an error.
    #[error("{operation} at {url} failed: {code}: {message}")]
    Service {
        /// `GetAuthorizationToken`, `AssumeRole`, ...
        operation: &'static str,
        /// The endpoint.
        url: String,
        /// The error code (`UnrecognizedClientException`, `AccessDenied`, `HTTP 404 Not Found`).
        code: String,
        /// The service's message.
        message: String,
    },
    /// The service answered, but not with what was expected.
    #[error("{operation} at {url}: unexpected answer: {message}")]
    Response {
        /// The operation.
        operation: &'static str,
        /// The endpoint.
        url: String,
        /// What was wrong.
        message: String,
    },
}

/// A registry login. `Debug` redacts the password.
#[derive(Clone)]
pub struct RegistryCredentials {
    /// The registry host (`host[:port]`).
    pub host: String,
    /// `AWS`.
    pub username: String,
    /// The password (the registry token).
    pub password: String,
    /// When the password expires, seconds since the epoch.
    pub expires_at: f64,
    /// Whether it came from the cache.
    pub cached: bool,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("host", &self.host)
            .field("username", &self.username)
            .field("expires_at", &self.expires_at)
            .field("cached", &self.cached)
            .finish_non_exhaustive()
    }
}

/// The login for the registry at `server` (a host, `host:port` or URL), as of `now`.
pub async fn registry_credentials(env: &Env, server: &str, now: SystemTime) -> Result<RegistryCredentials, Error> {
    let host = resolve::registry_host(server)?;
    let profiles = profile::Profiles::load(env)?;
    let target = resolve::target(env, &profiles, &host)?;
    let source = credentials::discover(env, &profiles, now)?;
    let cache = cache::Cache::from_env(env);
    let key =
        cache::Key { endpoint: target.endpoint.to_string(), host: host.clone(), identity: source.cache_identity() };
    let login = |token: &ecr::AuthorizationToken, cached: bool| -> Result<RegistryCredentials, Error> {
        let (username, password) = token.decode().map_err(|message| Error::Response {
            operation: "GetAuthorizationToken",
            url: target.endpoint.to_string(),
            message,
        })?;
        Ok(RegistryCredentials { host: host.clone(), username, password, expires_at: token.expires_at, cached })
    };
    if let Some(token) = cache.as_ref().and_then(|c| c.load(&key, now)) {
        return login(&token, true);
    }
    let client = net::client(env)?;
    let ctx = sts::Context { http: &client, endpoint: &target.sts_endpoint, region: &target.region, now };
    let creds = source.credentials(&ctx).await?;
    let token = ecr::get_authorization_token(&client, &target.endpoint, &target.region, &creds, now).await?;
    if let Some(c) = &cache
        && let Err(e) = c.store(&key, &token)
    {
        // Not fatal: the next call asks again.
        eprintln!("berth credential helper: warning: cannot cache the token in {}: {e}", c.dir().display());
    }
    login(&token, false)
}

/// Runs `f` on a single-threaded runtime (a helper makes one or two calls and exits).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> std::io::Result<F::Output> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(f))
}

/// When the program was started as `docker-credential-berth` (a symlink to `berth`), runs the
/// docker protocol with the action in the first argument and returns the exit code; `None`
/// otherwise.
pub fn dispatch_argv0() -> Option<std::process::ExitCode> {
    let mut args = std::env::args_os();
    let argv0 = args.next()?;
    let name = std::path::Path::new(&argv0).file_name()?.to_str()?;
    if name != docker::PROGRAM {
        return None;
    }
    let action = args.next().and_then(|a| a.into_string().ok()).unwrap_or_default();
    Some(docker::main(&action))
}
