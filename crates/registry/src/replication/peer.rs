//! Replication to a region hosted by another Berth (or ECR-compatible) deployment, through its
//! public APIs only: STS `GetCallerIdentity` (whose registry the credentials reach), ECR
//! `DescribeRepositories`/`CreateRepository` and `GetAuthorizationToken` (SigV4), then the OCI
//! distribution API with the registry token: each blob is looked at first (`HEAD`) and sent
//! only when missing, streamed from storage in one `PUT`; manifests go last, children before
//! their index, with the replication header so the peer does not replicate them onward.

use super::{Failure, ReplicationJob, failure};
use crate::{Error, Registry};
use berth_credhelper::credentials::Credentials;
use berth_credhelper::{ecr, net};
use berth_meta::Namespace;
use berth_oci::manifest;
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

/// The request header a replication's manifest `PUT` carries: the peer records the push as
/// replicated (not replicated onward) when the caller is allowed `ecr:ReplicateImage`.
pub const REPLICATION_HEADER: &str = "x-berth-replication";

/// How long one HTTP exchange with a peer may take before it counts as failed (a blob's upload
/// is limited by its inactivity instead: see [`Peer::new`]).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A peer deployment (config `[[replication.peers]]`). `Debug` omits the secret.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The region the peer hosts (a destination naming it goes to this peer).
    pub region: String,
    /// The peer's base URL (`https://berth-eu.example.com`), ECR and OCI APIs alike.
    pub endpoint: String,
    /// Credentials of an IAM identity of the peer in the destination account.
    pub access_key_id: String,
    #[serde(skip_serializing)]
    pub secret_access_key: String,
    /// A PEM bundle of extra CA certificates to trust for the peer (a private CA).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConfig")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// A peer deployment and a client for it.
pub struct Peer {
    region: String,
    endpoint: Url,
    creds: Credentials,
    client: reqwest::Client,
    /// The account the credentials belong to, once asked.
    account: tokio::sync::OnceCell<String>,
    /// `Authorization` value for the OCI API, and when to fetch a new one (ms).
    token: tokio::sync::Mutex<Option<(String, i64)>>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("region", &self.region).field("endpoint", &self.endpoint.as_str()).finish()
    }
}

impl Peer {
    /// A peer from its settings: the endpoint must be an http(s) URL without a path beyond `/`.
    pub fn new(cfg: &PeerConfig) -> std::result::Result<Peer, String> {
        let endpoint =
            Url::parse(&cfg.endpoint).map_err(|e| format!("replication peer endpoint {:?}: {e}", cfg.endpoint))?;
        if !matches!(endpoint.scheme(), "http" | "https") || endpoint.host_str().is_none() || endpoint.path() != "/" {
            return Err(format!("replication peer endpoint {:?} must be http(s)://host[:port]", cfg.endpoint));
        }
        let region_ok = (2..=25).contains(&cfg.region.len())
            && cfg.region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(format!("replication peer region {:?} is not a region name", cfg.region));
        }
        if cfg.access_key_id.is_empty() || cfg.secret_access_key.is_empty() {
            return Err(format!("replication peer {}: access_key_id and secret_access_key are required", cfg.region));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(300))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("berth-replication/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path).map_err(|e| format!("replication peer ca_file {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("replication peer ca_file {}: not a PEM bundle: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("replication peer ca_file {}: no certificate", path.display()));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder.build().map_err(|e| format!("replication peer {}: {e}", cfg.region))?;
        Ok(Peer {
            region: cfg.region.clone(),
            endpoint,
            creds: Credentials::new(cfg.access_key_id.clone(), cfg.secret_access_key.clone(), None),
            client,
            account: tokio::sync::OnceCell::new(),
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The region the peer hosts.
    pub fn region(&self) -> &str {
        &self.region
    }

    fn url(&self, path: &str) -> std::result::Result<Url, Failure> {
        self.endpoint.join(path).map_err(|e| Failure::Retry(Error::Internal(format!("peer URL: {e}"))))
    }

    /// A signed JSON 1.1 call of the peer's ECR API: the status and the answer's JSON.
    async fn ecr(&self, op: &str, body: Value, replication: bool) -> std::result::Result<(u16, Value), Failure> {
        let target = format!("AmazonEC2ContainerRegistry_V20150921.{op}");
        let mut headers: Vec<(&'static str, &str)> =
            vec![("content-type", "application/x-amz-json-1.1"), ("x-amz-target", &target)];
        if replication {
            headers.push((REPLICATION_HEADER, "true"));
        }
        let signing = net::Signing { creds: &self.creds, region: &self.region, service: "ecr", now: SystemTime::now() };
        let call = net::post(&self.client, &self.endpoint, &headers, body.to_string(), Some(&signing));
        let (status, answer) = tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| unavailable(format!("the peer's {op} timed out")))?
            .map_err(|e| unavailable(format!("the peer's {op}: {e}")))?;
        Ok((status, serde_json::from_slice(&answer).unwrap_or(Value::Null)))
    }

    /// The account the peer credentials belong to (STS `GetCallerIdentity`), asked once.
    async fn account(&self) -> std::result::Result<&str, Failure> {
        self.account
            .get_or_try_init(|| async {
                let body = net::form(&[("Action", "GetCallerIdentity"), ("Version", "2011-06-15")]);
                let headers = [("content-type", "application/x-www-form-urlencoded; charset=utf-8")];
                let signing =
                    net::Signing { creds: &self.creds, region: &self.region, service: "sts", now: SystemTime::now() };
                let call = net::post(&self.client, &self.endpoint, &headers, body, Some(&signing));
                let (status, xml) = tokio::time::timeout(CALL_TIMEOUT, call)
                    .await
                    .map_err(|_| unavailable("the peer's GetCallerIdentity timed out".into()))?
                    .map_err(|e| unavailable(format!("the peer's GetCallerIdentity: {e}")))?;
                let xml = String::from_utf8_lossy(&xml);
                match status {
                    200 => xml_field(&xml, "Account")
                        .map(str::to_string)
                        .ok_or_else(|| unavailable("the peer's GetCallerIdentity answer names no account".into())),
                    401 | 403 => Err(Failure::Final(
                        failure::ACCESS_DENIED,
                        format!(
                            "the peer refused the replication credentials: {}",
                            xml.chars().take(300).collect::<String>()
                        ),
                    )),
                    s => Err(unavailable(format!("the peer's GetCallerIdentity answered {s}"))),
                }
            })
            .await
            .map(String::as_str)
    }

    /// The OCI API's `Authorization` value (a registry token, refreshed before it expires).
    async fn authorization(&self, fresh: bool) -> std::result::Result<String, Failure> {
        let mut slot = self.token.lock().await;
        let now_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
        if !fresh
            && let Some((value, until)) = slot.as_ref()
            && *until > now_ms
        {
            return Ok(value.clone());
        }
        let call =
            ecr::get_authorization_token(&self.client, &self.endpoint, &self.region, &self.creds, SystemTime::now());
        let token = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Err(_) => return Err(unavailable("the peer's GetAuthorizationToken timed out".into())),
            Ok(Err(berth_credhelper::Error::Service { code, message, .. })) if code.contains("AccessDenied") => {
                return Err(Failure::Final(failure::ACCESS_DENIED, message));
            }
            Ok(Err(e)) => return Err(unavailable(format!("the peer's GetAuthorizationToken: {e}"))),
            Ok(Ok(t)) => t,
        };
        let value = format!("Basic {}", token.authorization_token.trim());
        // Refreshed five minutes before it expires (or at once when it lives less).
        let until = ((token.expires_at * 1000.0) as i64 - 300_000).max(now_ms);
        *slot = Some((value.clone(), until));
        Ok(value)
    }

    /// One OCI request with the registry token, retried once with a new token on 401.
    async fn oci(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> std::result::Result<reqwest::Response, Failure> {
        let mut fresh = false;
        loop {
            let auth = self.authorization(fresh).await?;
            let resp = build(&self.client)
                .header(reqwest::header::AUTHORIZATION, auth)
                .send()
                .await
                .map_err(|e| unavailable(format!("the peer: {}", net::chain(&e))))?;
            if resp.status() == StatusCode::UNAUTHORIZED && !fresh {
                fresh = true;
                continue;
            }
            return Ok(resp);
        }
    }

    /// Replicate `job`'s image from `reg` to this peer.
    pub(crate) async fn replicate(
        &self,
        reg: &Registry,
        src: &Namespace,
        job: &ReplicationJob,
    ) -> std::result::Result<(), Failure> {
        let account = self.account().await?;
        if account != job.dest_registry {
            return Err(Failure::Final(
                failure::ACCESS_DENIED,
                format!(
                    "the credentials of peer {} reach registry {account}, not the destination registry {}",
                    self.region, job.dest_registry
                ),
            ));
        }
        let Some(src_repo) = reg.repo_entry_in(src, &job.repository).await.map_err(Failure::from)? else {
            return Err(Failure::Final(failure::IMAGE_NOT_FOUND, "the source repository is gone".into()));
        };
        if reg.meta.manifest(src_repo.id, &job.digest).await.map_err(Failure::from)?.is_none() {
            return Err(Failure::Final(failure::IMAGE_NOT_FOUND, "the image is gone from the source".into()));
        }
        self.ensure_repository(reg, src, &job.repository).await?;
        let tag = match &job.tag {
            Some(t) => match reg.meta.resolve_tag(src_repo.id, t).await.map_err(Failure::from)? {
                Some(d) if d == job.digest => Some(t.clone()),
                _ => None,
            },
            None => None,
        };
        self.copy(reg, src_repo.id, &job.repository, &job.digest, tag.as_deref(), 0).await
    }

    /// Make sure the destination repository exists on the peer: created with the source's
    /// settings when missing (the peer applies its REPLICATION creation template first when
    /// one matches: the call carries the replication header).
    async fn ensure_repository(&self, reg: &Registry, src: &Namespace, name: &str) -> std::result::Result<(), Failure> {
        let (status, answer) = self.ecr("DescribeRepositories", json!({"repositoryNames": [name]}), false).await?;
        if status == 200 {
            return Ok(());
        }
        match error_type(&answer) {
            "RepositoryNotFoundException" => {}
            "AccessDeniedException" => return Err(Failure::Final(failure::ACCESS_DENIED, error_message(&answer))),
            _ => return Err(unavailable(format!("the peer's DescribeRepositories answered {status}"))),
        }
        let info = reg.describe_repository(src, name).await.map_err(Failure::from)?;
        let tags: Vec<Value> = reg
            .meta
            .resource_tags(info.id)
            .await
            .map_err(Failure::from)?
            .into_iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect();
        let mut body = json!({
            "repositoryName": name,
            "imageTagMutability": info.image_tag_mutability,
            "imageScanningConfiguration": {"scanOnPush": info.scan_on_push},
            "encryptionConfiguration": {"encryptionType": if info.encryption_type == "AES256" { "AES256" } else { "KMS" }},
        });
        if let Some(ex) = info.mutability_exclusions.as_deref().and_then(|e| serde_json::from_str::<Value>(e).ok()) {
            body["imageTagMutabilityExclusionFilters"] = ex;
        }
        if !tags.is_empty() {
            body["tags"] = Value::Array(tags);
        }
        let (status, answer) = self.ecr("CreateRepository", body, true).await?;
        match (status, error_type(&answer)) {
            (200, _) | (_, "RepositoryAlreadyExistsException") => Ok(()),
            (_, "AccessDeniedException") => Err(Failure::Final(failure::REPOSITORY_NOT_FOUND, error_message(&answer))),
            (_, "KmsException") => Err(Failure::Final(failure::KMS_ERROR, error_message(&answer))),
            (s, t) => {
                Err(unavailable(format!("the peer's CreateRepository answered {s} {t}: {}", error_message(&answer))))
            }
        }
    }

    /// Send manifest `digest` of the source repository (children, then blobs, then itself).
    async fn copy(
        &self,
        reg: &Registry,
        src_repo: i64,
        name: &str,
        digest: &str,
        tag: Option<&str>,
        depth: u32,
    ) -> std::result::Result<(), Failure> {
        if depth > 2 {
            return Err(Failure::Final(failure::IMAGE_NOT_FOUND, "indexes nest too deep".into()));
        }
        let Some(m) = reg.meta.manifest(src_repo, digest).await.map_err(Failure::from)? else {
            return Err(Failure::Final(failure::IMAGE_NOT_FOUND, format!("manifest {digest} is gone from the source")));
        };
        let parsed = manifest::parse(Some(&m.media_type), &m.content)
            .map_err(|e| Failure::Final(failure::IMAGE_NOT_FOUND, format!("stored manifest unreadable: {e}")))?;
        for (child, _) in &parsed.children {
            Box::pin(self.copy(reg, src_repo, name, child.as_str(), None, depth + 1)).await?;
        }
        for (blob, _) in &parsed.blobs {
            self.send_blob(reg, src_repo, name, blob).await?;
        }
        let reference = tag.unwrap_or(digest);
        let url = self.url(&format!("/v2/{name}/manifests/{reference}"))?;
        let content = bytes::Bytes::from(m.content);
        let resp = self
            .oci(|c| {
                c.put(url.clone())
                    .timeout(CALL_TIMEOUT)
                    .header(reqwest::header::CONTENT_TYPE, &m.media_type)
                    .header(REPLICATION_HEADER, "true")
                    .body(content.clone())
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(()),
            s => Err(oci_failure("manifest PUT", s, resp).await),
        }
    }

    /// Send one blob unless the peer's repository has it already.
    async fn send_blob(
        &self,
        reg: &Registry,
        src_repo: i64,
        name: &str,
        digest: &berth_oci::Digest,
    ) -> std::result::Result<(), Failure> {
        let head = self.url(&format!("/v2/{name}/blobs/{digest}"))?;
        let resp = self.oci(|c| c.head(head.clone()).timeout(CALL_TIMEOUT)).await?;
        match resp.status() {
            StatusCode::OK => return Ok(()),
            StatusCode::NOT_FOUND => {}
            s => return Err(oci_failure("blob HEAD", s, resp).await),
        }
        let size = reg.meta.blob_in_repo(src_repo, digest.as_str()).await.map_err(Failure::from)?.ok_or_else(|| {
            Failure::Final(failure::IMAGE_NOT_FOUND, format!("blob {digest} is gone from the source"))
        })?;
        let start = self.url(&format!("/v2/{name}/blobs/uploads/"))?;
        let resp = self.oci(|c| c.post(start.clone()).timeout(CALL_TIMEOUT).header("content-length", "0")).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(oci_failure("upload POST", resp.status(), resp).await);
        }
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unavailable("the peer's upload answer has no Location".into()))?;
        let mut put = self.endpoint.join(location).map_err(|e| unavailable(format!("the peer's Location: {e}")))?;
        put.query_pairs_mut().append_pair("digest", digest.as_str());
        // The token is fetched before the body is opened: a 401 here would need the body twice.
        let auth = self.authorization(false).await?;
        let body = reg.read_bytes(digest, 0, size).await.map_err(|e| Failure::Retry(crate::storage_err(e)))?;
        let resp = self
            .client
            .put(put)
            .header(reqwest::header::AUTHORIZATION, auth)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .map_err(|e| unavailable(format!("the peer: {}", net::chain(&e))))?;
        match resp.status() {
            StatusCode::CREATED => Ok(()),
            s => Err(oci_failure("blob PUT", s, resp).await),
        }
    }
}

fn unavailable(message: String) -> Failure {
    Failure::Retry(Error::Unavailable(message))
}

/// `__type` of an ECR JSON error answer, without its namespace.
fn error_type(answer: &Value) -> &str {
    let t = answer["__type"].as_str().unwrap_or_default();
    t.rsplit('#').next().unwrap_or(t)
}

fn error_message(answer: &Value) -> String {
    answer["message"].as_str().unwrap_or_default().chars().take(500).collect()
}

/// The text of the first `<name>` element of an XML answer.
fn xml_field<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..start + end].trim())
}

/// What an OCI error answer of the peer means for the replication: refusals for good
/// (denied, repository gone, immutable tag, KMS key) end it; anything else is retried.
async fn oci_failure(what: &str, status: StatusCode, resp: reqwest::Response) -> Failure {
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let first = &body["errors"][0];
    let code = first["code"].as_str().unwrap_or_default();
    let message = first["message"].as_str().unwrap_or_default().chars().take(300).collect::<String>();
    let why = format!("the peer's {what} answered {} {code}: {message}", status.as_u16());
    match (status.as_u16(), code) {
        (403, _) if !first["detail"]["kmsError"].is_null() => Failure::Final(failure::KMS_ERROR, why),
        (401 | 403, _) => Failure::Final(failure::ACCESS_DENIED, why),
        (404, "NAME_UNKNOWN") => Failure::Final(failure::REPOSITORY_NOT_FOUND, why),
        (_, "TAG_INVALID") if message.contains("immutable") || message.contains("already exists") => {
            Failure::Final(failure::TAG_IMMUTABLE, why)
        }
        _ => unavailable(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_identity_account_is_read_from_the_xml() {
        let xml = "<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/r</Arn>\
                   <Account>123456789012</Account></GetCallerIdentityResult></GetCallerIdentityResponse>";
        assert_eq!(xml_field(xml, "Account"), Some("123456789012"));
        assert_eq!(xml_field(xml, "UserId"), None);
    }

    #[test]
    fn bad_peer_settings_are_refused() {
        let cfg = |endpoint: &str, region: &str| PeerConfig {
            region: region.into(),
            endpoint: endpoint.into(),
            access_key_id: "AKIA".into(),
            secret_access_key: "s".into(),
            ca_file: None,
        };
        assert!(Peer::new(&cfg("https://berth-eu.example.com", "eu-central-1")).is_ok());
        assert!(Peer::new(&cfg("ftp://x", "eu-central-1")).is_err());
        assert!(Peer::new(&cfg("https://x/sub", "eu-central-1")).is_err());
        assert!(Peer::new(&cfg("https://x", "EU")).is_err());
        let dbg = format!("{:?}", cfg("https://x", "eu-central-1"));
        assert!(!dbg.contains("secret_access_key"), "{dbg}");
    }
}
