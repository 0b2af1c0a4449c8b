//! The STS legs of the credential chain (web identity, `AssumeRole`, role chains) against a
//! FAKE endpoint.
//!
//! ============================================================================================
//! FAKE STS + FAKE ECR. Berth's server has no STS yet (AssumeRole and
//! AssumeRoleWithWebIdentity are being built), and it refuses every session token, so these
//! tests cannot run against a real server today. The fake below is deliberately minimal: it
//! answers `AssumeRoleWithWebIdentity` (must be unsigned, checks the token), `AssumeRole`
//! (checks the SigV4 signature with `berth_auth::sigv4::verify`, service `sts`) and
//! `GetAuthorizationToken` (checks the signature and the session token of what it issued). It
//! does not model IAM. Once STS lands, crates/berth/tests/credhelper.rs gets the real
//! end-to-end version of these tests and this file may go.
//! ============================================================================================

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use berth_auth::sigv4::{self, SecretKey};
use berth_credhelper::env::Env;
use berth_credhelper::{Error, registry_credentials};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SOURCE_KEY: &str = "AKIDSOURCEEXAMPLE";
const SOURCE_SECRET: &str = "source/secret+key";
const WEB_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.jwt-of-the-pod.sig";

#[derive(Default)]
struct State {
    /// What was called, in order: `<operation> <role> by <signer>`.
    log: Vec<String>,
    /// Issued temporary keys: access key id → (secret, session token).
    issued: HashMap<String, (String, String)>,
}

struct Fake {
    url: String,
    state: Arc<Mutex<State>>,
}

impl Fake {
    async fn start() -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut conn).await else { return };
                    let (status, ctype, body) = answer(&s, &req);
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(head.as_bytes()).await;
                    let _ = conn.write_all(body.as_bytes()).await;
                });
            }
        });
        Fake { url, state }
    }

    fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }
}

struct Req {
    method: String,
    path: String,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<Req> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, path) = (request_line.next()?.to_owned(), request_line.next()?.to_owned());
    let mut headers = http::HeaderMap::new();
    for line in lines {
        let (k, v) = line.split_once(':')?;
        headers.append(http::HeaderName::from_bytes(k.trim().as_bytes()).ok()?, v.trim().parse().ok()?);
    }
    let len: usize = headers.get("content-length").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Req { method, path, headers, body })
}

fn form(body: &[u8]) -> HashMap<String, String> {
    fn dec(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(if b[i] == b'+' { b' ' } else { b[i] });
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }
    String::from_utf8_lossy(body).split('&').filter_map(|p| p.split_once('=')).map(|(k, v)| (dec(k), dec(v))).collect()
}

fn xml_error(status: u16, code: &str, message: &str) -> (u16, &'static str, String) {
    let body = format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>\
         <RequestId>r</RequestId></ErrorResponse>"
    );
    (status, "text/xml", body)
}

/// Checks the SigV4 signature for `service` against the source key and the issued keys;
/// returns the signer's access key id.
fn check_signature(state: &State, req: &Req, service: &str) -> Result<String, String> {
    let body_sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, &req.body));
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    let sreq = sigv4::Request { method: &req.method, path, query, headers: &req.headers, body_sha256: &body_sha256 };
    let v = sigv4::verify(&sreq, service, &["us-east-1".to_owned()], SystemTime::now(), |akid| {
        if akid == SOURCE_KEY {
            return Some(SecretKey::new(SOURCE_SECRET));
        }
        state.issued.get(akid).map(|(secret, _)| SecretKey::new(secret.clone()))
    })
    .map_err(|e| e.to_string())?;
    let want_token = state.issued.get(&v.access_key_id).map(|(_, t)| t.clone());
    if v.session_token != want_token {
        return Err("wrong session token".into());
    }
    Ok(v.access_key_id)
}

fn issue(state: &mut State) -> String {
    let n = state.issued.len() + 1;
    let (akid, secret, token) = (format!("ASIATEMP{n}"), format!("temp/secret{n}"), format!("session&token{n}"));
    state.issued.insert(akid.clone(), (secret.clone(), token.clone()));
    let token = token.replace('&', "&amp;");
    format!(
        "<R><Result><Credentials><AccessKeyId>{akid}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>\
         <SessionToken>{token}</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></Result></R>"
    )
}

fn answer(state: &Mutex<State>, req: &Req) -> (u16, &'static str, String) {
    let mut state = state.lock().unwrap();
    if let Some(target) = req.headers.get("x-amz-target") {
        assert_eq!(target, "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken");
        assert_eq!(req.headers["content-type"], "application/x-amz-json-1.1");
        assert_eq!(req.body, b"{}");
        let akid = match check_signature(&state, req, "ecr") {
            Ok(a) => a,
            Err(e) => {
                return (
                    400,
                    "application/x-amz-json-1.1",
                    format!(r#"{{"__type":"UnrecognizedClientException","message":"{e}"}}"#),
                );
            }
        };
        state.log.push(format!("GetAuthorizationToken by {akid}"));
        let token = base64::engine::general_purpose::STANDARD.encode(format!("AWS:pw-{akid}"));
        let expires = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 43_200;
        let body = format!(r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":{expires}}}]}}"#);
        return (200, "application/x-amz-json-1.1", body);
    }
    let f = form(&req.body);
    assert_eq!(f["Version"], "2011-06-15");
    let role = f["RoleArn"].clone();
    match f["Action"].as_str() {
        "AssumeRoleWithWebIdentity" => {
            // Unsigned, as in AWS.
            assert!(!req.headers.contains_key("authorization"));
            if f["WebIdentityToken"] != WEB_TOKEN {
                return xml_error(400, "InvalidIdentityToken", "The web identity token is not valid");
            }
            assert!(!f["RoleSessionName"].is_empty());
            state.log.push(format!("AssumeRoleWithWebIdentity {role} as {}", f["RoleSessionName"]));
            (200, "text/xml", issue(&mut state))
        }
        "AssumeRole" => {
            let signer = match check_signature(&state, req, "sts") {
                Ok(a) => a,
                Err(e) => return xml_error(403, "SignatureDoesNotMatch", &e),
            };
            if role.contains("denied") {
                return xml_error(403, "AccessDenied", "Not authorized to perform sts:AssumeRole");
            }
            let ext = f.get("ExternalId").map(|e| format!(" ext {e}")).unwrap_or_default();
            state.log.push(format!("AssumeRole {role}{ext} by {signer}"));
            (200, "text/xml", issue(&mut state))
        }
        other => xml_error(400, "InvalidAction", other),
    }
}

/// A home with `.aws/config`, `.aws/credentials` and the web identity token file.
fn home(config: &str, credentials: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".aws")).unwrap();
    std::fs::write(dir.path().join(".aws/config"), config).unwrap();
    std::fs::write(dir.path().join(".aws/credentials"), credentials).unwrap();
    std::fs::write(dir.path().join("token"), format!("{WEB_TOKEN}\n")).unwrap();
    dir
}

fn env(home: &Path, fake: &Fake, extra: &[(&str, &str)]) -> Env {
    let mut pairs =
        vec![("HOME".to_owned(), home.to_str().unwrap().to_owned()), ("AWS_ENDPOINT_URL".to_owned(), fake.url.clone())];
    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Env::from_pairs(pairs)
}

const HOST: &str = "123456789012.dkr.ecr.us-east-1.localhost:5000";

#[tokio::test]
async fn web_identity_from_the_environment_then_cached() {
    let fake = Fake::start().await;
    let h = home("", "");
    let token_file = h.path().join("token");
    let e = env(
        h.path(),
        &fake,
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/web"),
            ("AWS_ROLE_SESSION_NAME", "pod-a"),
        ],
    );
    let login = registry_credentials(&e, HOST, SystemTime::now()).await.unwrap();
    assert_eq!((login.username.as_str(), login.password.as_str()), ("AWS", "pw-ASIATEMP1"));
    assert!(!login.cached);
    assert_eq!(
        fake.log(),
        ["AssumeRoleWithWebIdentity arn:aws:iam::123456789012:role/web as pod-a", "GetAuthorizationToken by ASIATEMP1"]
    );
    // The token is cached by role (the STS key id changes on every call): no call the second time.
    let again = registry_credentials(&e, HOST, SystemTime::now()).await.unwrap();
    assert!(again.cached);
    assert_eq!(again.password, "pw-ASIATEMP1");
    assert_eq!(fake.log().len(), 2);
    // Until 5 minutes before it expires...
    let nearly = SystemTime::now() + Duration::from_secs(43_200 - 400);
    assert!(registry_credentials(&e, HOST, nearly).await.unwrap().cached);
    assert_eq!(fake.log().len(), 2);
    // ...then it asks again. (The fake checks signatures against its own clock, so the ECR call
    // signed 12 hours ahead fails; the new STS call is proof enough that the cache was not used.)
    let late = SystemTime::now() + Duration::from_secs(43_200 - 200);
    let err = registry_credentials(&e, HOST, late).await.unwrap_err();
    assert!(err.to_string().contains("GetAuthorizationToken"), "{err}");
    let log = fake.log();
    assert_eq!(log.len(), 3);
    assert!(log[2].starts_with("AssumeRoleWithWebIdentity"));
}

#[tokio::test]
async fn env_keys_beat_web_identity() {
    let fake = Fake::start().await;
    let h = home("", "");
    let token_file = h.path().join("token");
    let e = env(
        h.path(),
        &fake,
        &[
            ("AWS_ACCESS_KEY_ID", SOURCE_KEY),
            ("AWS_SECRET_ACCESS_KEY", SOURCE_SECRET),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/web"),
        ],
    );
    let login = registry_credentials(&e, HOST, SystemTime::now()).await.unwrap();
    assert_eq!(login.password, format!("pw-{SOURCE_KEY}"));
    assert_eq!(fake.log(), [format!("GetAuthorizationToken by {SOURCE_KEY}")]);
}

#[tokio::test]
async fn profile_role_chain_with_source_profile() {
    let fake = Fake::start().await;
    let config = "\
[profile app]
role_arn = arn:aws:iam::123456789012:role/app
source_profile = hop
external_id = ext-42
[profile hop]
role_arn = arn:aws:iam::123456789012:role/hop
source_profile = base
";
    let credentials = format!("[base]\naws_access_key_id = {SOURCE_KEY}\naws_secret_access_key = {SOURCE_SECRET}\n");
    let h = home(config, &credentials);
    let e = env(h.path(), &fake, &[("AWS_PROFILE", "app")]);
    let login = registry_credentials(&e, HOST, SystemTime::now()).await.unwrap();
    assert_eq!(login.password, "pw-ASIATEMP2");
    assert_eq!(
        fake.log(),
        [
            format!("AssumeRole arn:aws:iam::123456789012:role/hop by {SOURCE_KEY}"),
            "AssumeRole arn:aws:iam::123456789012:role/app ext ext-42 by ASIATEMP1".to_owned(),
            "GetAuthorizationToken by ASIATEMP2".to_owned(),
        ]
    );
}

#[tokio::test]
async fn profile_role_with_web_identity_token_file() {
    let fake = Fake::start().await;
    let h = home(
        "[default]\nrole_arn = arn:aws:iam::123456789012:role/ci\nweb_identity_token_file = ~/token\n\
         role_session_name = ci-job\n",
        "",
    );
    let e = env(h.path(), &fake, &[]);
    let login = registry_credentials(&e, HOST, SystemTime::now()).await.unwrap();
    assert_eq!(login.password, "pw-ASIATEMP1");
    assert_eq!(fake.log()[0], "AssumeRoleWithWebIdentity arn:aws:iam::123456789012:role/ci as ci-job");
}

#[tokio::test]
async fn sts_refusals_are_reported_and_nothing_is_cached() {
    let fake = Fake::start().await;
    let config = "[profile app]\nrole_arn = arn:aws:iam::123456789012:role/denied\nsource_profile = base\n";
    let credentials = format!("[base]\naws_access_key_id = {SOURCE_KEY}\naws_secret_access_key = {SOURCE_SECRET}\n");
    let h = home(config, &credentials);
    let e = env(h.path(), &fake, &[("AWS_PROFILE", "app")]);
    let err = registry_credentials(&e, HOST, SystemTime::now()).await.unwrap_err();
    assert!(matches!(err, Error::Service { operation: "AssumeRole", .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("AssumeRole at http://") && msg.contains("AccessDenied: Not authorized"), "{msg}");
    assert!(!msg.contains(SOURCE_SECRET));

    // A wrong web identity token.
    std::fs::write(h.path().join("token"), "not-the-token").unwrap();
    let e = env(
        h.path(),
        &fake,
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", h.path().join("token").to_str().unwrap()),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/web"),
        ],
    );
    let msg = registry_credentials(&e, HOST, SystemTime::now()).await.unwrap_err().to_string();
    assert!(msg.contains("AssumeRoleWithWebIdentity") && msg.contains("InvalidIdentityToken"), "{msg}");
    assert!(fake.log().is_empty());
    assert!(!h.path().join(".cache").exists(), "an error must leave no cache");
}
