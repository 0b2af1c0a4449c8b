//! The HTTP client: rustls with the system's roots plus `AWS_CA_BUNDLE`, a 5 s connect timeout
//! and a 30 s timeout on every request, no redirects (a signed POST is not replayed elsewhere).

use std::time::{Duration, SystemTime};

use berth_auth::sigv4;
use http::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;

use crate::Error;
use crate::credentials::Credentials;
use crate::env::Env;

/// Connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of a whole request (connect, send, read the answer).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read (ECR and STS answers are a few KiB).
pub const MAX_RESPONSE: usize = 1 << 20;

/// Builds the client. `AWS_CA_BUNDLE` names a PEM file of extra trusted roots, as the SDKs read
/// it (added to the system's, not replacing them).
pub fn client(env: &Env) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("berth-credhelper/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = env.get("AWS_CA_BUNDLE") {
        let path = env.expand_home(path);
        let pem = std::fs::read(&path)
            .map_err(|e| Error::Config(format!("AWS_CA_BUNDLE: cannot read {}: {e}", path.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::Config(format!("AWS_CA_BUNDLE: {} is not a PEM bundle: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(Error::Config(format!("AWS_CA_BUNDLE: no certificate in {}", path.display())));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| Error::Config(format!("cannot set up the HTTP client: {}", chain(&e))))
}

/// The `Host` header a request to `url` carries (`host`, or `host:port` for a port that is not
/// the scheme's default), which is what SigV4 signs.
pub fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// An error and its causes on one line (`a: b: c`), as reqwest nests the reason.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Reads at most [`MAX_RESPONSE`] bytes of an answer.
pub async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_RESPONSE.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_RESPONSE {
            break;
        }
    }
    Ok(body)
}

/// How to sign a request (SigV4, header form).
#[derive(Clone, Copy)]
pub struct Signing<'a> {
    /// The credentials to sign with.
    pub creds: &'a Credentials,
    /// Region of the credential scope.
    pub region: &'a str,
    /// Service of the credential scope (`ecr`, `sts`).
    pub service: &'a str,
    /// The signing time.
    pub now: SystemTime,
}

/// POSTs `body` to `url` with `headers` (lowercase names), signed when `signing` is given;
/// returns the status and at most [`MAX_RESPONSE`] bytes of the answer. The `Host` header is
/// set here, so that the one signed is the one sent.
pub async fn post(
    client: &reqwest::Client,
    url: &Url,
    headers: &[(&'static str, &str)],
    body: String,
    signing: Option<&Signing<'_>>,
) -> Result<(u16, Vec<u8>), Error> {
    let bad_header = |name: &str| Error::Config(format!("cannot send the {name} header"));
    let mut map = HeaderMap::new();
    let host = host_header(url);
    map.insert(http::header::HOST, HeaderValue::from_str(&host).map_err(|_| bad_header("host"))?);
    for (name, value) in headers {
        map.insert(HeaderName::from_static(name), HeaderValue::from_str(value).map_err(|_| bad_header(name))?);
    }
    if let Some(s) = signing {
        let body_sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, body.as_bytes()));
        let sign = sigv4::Sign {
            method: "POST",
            path: url.path(),
            query: url.query().unwrap_or(""),
            body_sha256: &body_sha256,
            access_key_id: &s.creds.access_key_id,
            secret: &s.creds.secret,
            session_token: s.creds.session_token.as_deref(),
            region: s.region,
            service: s.service,
            now: s.now,
            content_sha256_header: false,
        };
        sigv4::sign(&sign, &mut map).map_err(|e| Error::Config(format!("cannot sign the request: {e}")))?;
    }
    for name in ["authorization", "x-amz-security-token"] {
        if let Some(v) = map.get_mut(name) {
            v.set_sensitive(true);
        }
    }
    let transport = |e: reqwest::Error| {
        // reqwest's own line repeats the URL the message already names; its causes say why.
        let message = chain(&e);
        let message = match message.split_once("): ") {
            Some((head, why)) if head.starts_with("error sending request for url (") => why.to_owned(),
            _ => message,
        };
        Error::Transport { url: url.to_string(), message }
    };
    let resp = client.post(url.clone()).headers(map).body(body).send().await.map_err(transport)?;
    let status = resp.status().as_u16();
    let body = read_body(resp).await.map_err(transport)?;
    Ok((status, body))
}

/// Code and message for an error answer in no format we know: the status, and the start of
/// the body on one line.
pub fn unparsed_error(status: u16, body: &str) -> (String, String) {
    let reason = http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    let snippet: String = body.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(200).collect();
    (format!("HTTP {status} {reason}").trim_end().to_owned(), snippet)
}

/// `application/x-www-form-urlencoded` body of `pairs` (every byte but the unreserved ones
/// percent-encoded).
pub fn form(pairs: &[(&str, &str)]) -> String {
    fn enc(s: &str, out: &mut String) {
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        enc(k, &mut out);
        out.push('=');
        enc(v, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_omits_default_ports() {
        for (url, want) in [
            ("http://127.0.0.1:5000/", "127.0.0.1:5000"),
            ("https://registry.example:443", "registry.example"),
            ("http://registry.example:80/x", "registry.example"),
            ("https://registry.example:8443", "registry.example:8443"),
            ("http://[::1]:5000", "[::1]:5000"),
        ] {
            assert_eq!(host_header(&Url::parse(url).unwrap()), want, "{url}");
        }
    }

    #[test]
    fn form_encodes_everything_reserved() {
        assert_eq!(
            form(&[("Action", "AssumeRole"), ("RoleArn", "arn:aws:iam::1:role/a b+c")]),
            "Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fa%20b%2Bc"
        );
    }

    #[test]
    fn ca_bundle_must_be_readable_pem() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.pem");
        let env = Env::from_pairs([("AWS_CA_BUNDLE", missing.to_str().unwrap())]);
        assert!(client(&env).unwrap_err().to_string().contains("AWS_CA_BUNDLE: cannot read"));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem").unwrap();
        let env = Env::from_pairs([("AWS_CA_BUNDLE", empty.to_str().unwrap())]);
        assert!(client(&env).unwrap_err().to_string().contains("AWS_CA_BUNDLE"));
        assert!(client(&Env::default()).is_ok());
    }
}
