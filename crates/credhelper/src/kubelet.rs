//! The kubelet image credential provider protocol (`credentialprovider.kubelet.k8s.io/v1`).
//!
//! The kubelet runs the provider for images its `CredentialProviderConfig` matches, writes a
//! `CredentialProviderRequest` to stdin:
//!
//! ```json
//! {"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"<host>/<repo>:<tag>"}
//! ```
//!
//! and reads a `CredentialProviderResponse` from stdout:
//!
//! ```json
//! {"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse",
//!  "cacheKeyType":"Registry","cacheDuration":"11h55m0s",
//!  "auth":{"<host>":{"username":"AWS","password":"..."}}}
//! ```
//!
//! `cacheDuration` is the token's remaining lifetime less [`crate::cache::REFRESH_MARGIN`], so
//! the kubelet asks again before the token expires. Errors go to stderr (the kubelet logs
//! them), exit code 1.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::json;

use crate::env::Env;
use crate::{RegistryCredentials, cache, registry_credentials};

/// The protocol version spoken.
pub const API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";
/// The most read from stdin.
const MAX_INPUT: u64 = 64 * 1024;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    api_version: Option<String>,
    kind: Option<String>,
    image: Option<String>,
}

/// The image of a `CredentialProviderRequest`, after checking its version and kind.
pub fn parse_request(input: &str) -> Result<String, String> {
    let req: Request =
        serde_json::from_str(input).map_err(|e| format!("the CredentialProviderRequest on stdin is not JSON: {e}"))?;
    match req.api_version.as_deref() {
        Some(API_VERSION) => {}
        other => {
            return Err(format!(
                "unsupported apiVersion {}: this provider speaks {API_VERSION} (set apiVersion: {API_VERSION} for it \
                 in the kubelet's CredentialProviderConfig)",
                other.map_or_else(|| "(none)".to_owned(), |v| format!("'{v}'"))
            ));
        }
    }
    if req.kind.as_deref() != Some("CredentialProviderRequest") {
        return Err(format!("expected kind CredentialProviderRequest, got {:?}", req.kind.unwrap_or_default()));
    }
    req.image.filter(|i| !i.trim().is_empty()).ok_or_else(|| "the request names no image".to_owned())
}

/// The registry host of an image reference (`host[:port]/repo[:tag][@digest]`), by docker's
/// rule: the first component, when it has a `.` or a `:` or is `localhost`.
pub fn image_host(image: &str) -> Result<&str, String> {
    let image = image.trim();
    match image.split_once('/') {
        Some((first, rest))
            if !rest.is_empty() && (first.contains('.') || first.contains(':') || first == "localhost") =>
        {
            Ok(first)
        }
        _ => Err(format!("image '{image}' names no registry host")),
    }
}

/// `d` as Go's `time.Duration.String()` prints whole seconds: `11h55m0s`, `5m0s`, `30s`, `0s`.
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// How long the kubelet may keep a token expiring at `expires_at`: until
/// [`cache::REFRESH_MARGIN`] before that, in whole seconds, never negative.
pub fn cache_duration(expires_at: f64, now: SystemTime) -> Duration {
    let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let left = (expires_at - now - cache::REFRESH_MARGIN.as_secs_f64()).round();
    Duration::from_secs(if left > 0.0 { left as u64 } else { 0 })
}

/// The `CredentialProviderResponse` for `login`, keyed by `host` as the image names it.
pub fn response(host: &str, login: &RegistryCredentials, now: SystemTime) -> serde_json::Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "CredentialProviderResponse",
        "cacheKeyType": "Registry",
        "cacheDuration": go_duration(cache_duration(login.expires_at, now)),
        "auth": {host: {"username": login.username, "password": login.password}},
    })
}

/// Answers one request: `Ok(stdout)` or `Err(message for stderr)`.
pub async fn handle(input: &str, env: &Env, now: SystemTime) -> Result<String, String> {
    let image = parse_request(input)?;
    let host = image_host(&image)?;
    let login = registry_credentials(env, host, now).await.map_err(|e| e.to_string())?;
    Ok(format!("{}\n", response(host, &login, now)))
}

/// `berth kubelet-credential-provider`.
pub fn main() -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().take(MAX_INPUT).read_to_string(&mut input) {
        eprintln!("berth kubelet-credential-provider: cannot read standard input: {e}");
        return ExitCode::FAILURE;
    }
    let env = Env::from_process();
    let answer = match crate::block_on(handle(&input, &env, SystemTime::now())) {
        Ok(a) => a,
        Err(e) => Err(format!("cannot start: {e}")),
    };
    match answer {
        Ok(text) => {
            let mut stdout = std::io::stdout().lock();
            if stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("berth kubelet-credential-provider: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        for (secs, want) in [
            (0, "0s"),
            (1, "1s"),
            (59, "59s"),
            (60, "1m0s"),
            (301, "5m1s"),
            (3600, "1h0m0s"),
            (42_900, "11h55m0s"),
            (90_061, "25h1m1s"),
        ] {
            assert_eq!(go_duration(Duration::from_secs(secs)), want, "{secs}");
        }
    }

    #[test]
    fn cache_duration_is_the_lifetime_less_the_margin() {
        let now = UNIX_EPOCH + Duration::from_millis(1_000_000_000_400);
        assert_eq!(go_duration(cache_duration(1_000_000_000.0 + 43_200.0, now)), "11h55m0s");
        assert_eq!(cache_duration(1_000_000_000.0 + 100.0, now), Duration::ZERO);
        assert_eq!(cache_duration(0.0, now), Duration::ZERO);
    }

    #[test]
    fn requests() {
        let ok = r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"127.0.0.1:5000/app:1"}"#;
        assert_eq!(parse_request(ok).unwrap(), "127.0.0.1:5000/app:1");
        // Newer kubelets add fields (serviceAccountToken, ...): ignored.
        let extra = r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"h.example/a","serviceAccountToken":"x"}"#;
        assert!(parse_request(extra).is_ok());
        for (bad, why) in [
            (
                r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1beta1","kind":"CredentialProviderRequest","image":"h.example/a"}"#,
                "unsupported apiVersion 'credentialprovider.kubelet.k8s.io/v1beta1'",
            ),
            (r#"{"kind":"CredentialProviderRequest","image":"h.example/a"}"#, "unsupported apiVersion (none)"),
            (
                r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"Other","image":"h.example/a"}"#,
                "expected kind CredentialProviderRequest",
            ),
            (
                r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest"}"#,
                "names no image",
            ),
            ("not json", "not JSON"),
        ] {
            let e = parse_request(bad).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn image_hosts() {
        for (image, want) in [
            (
                "123456789012.dkr.ecr.us-east-1.localhost:5000/team/app:1.0",
                Some("123456789012.dkr.ecr.us-east-1.localhost:5000"),
            ),
            ("127.0.0.1:5000/app@sha256:abcd", Some("127.0.0.1:5000")),
            ("localhost/app", Some("localhost")),
            ("registry.example/a/b/c", Some("registry.example")),
            ("library/nginx:1", None),
            ("nginx", None),
            ("registry.example/", None),
        ] {
            assert_eq!(image_host(image).ok(), want, "{image}");
        }
    }

    #[test]
    fn response_shape() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let login = RegistryCredentials {
            host: "127.0.0.1:5000".into(),
            username: "AWS".into(),
            password: "pw".into(),
            expires_at: 1_000_043_200.0,
            cached: false,
        };
        let r = response("127.0.0.1:5000", &login, now);
        assert_eq!(
            r.to_string(),
            r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Registry","cacheDuration":"11h55m0s","auth":{"127.0.0.1:5000":{"username":"AWS","password":"pw"}}}"#
        );
    }
}
