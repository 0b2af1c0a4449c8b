//! Bounded resources before authentication and under slow clients (issue 17).
//!
//! - The control plane refuses a request without valid credentials, or with a body over what
//!   its operation may carry, before it reads any of the body: the refusal comes without a
//!   `100 Continue`, and many unauthenticated large bodies leave the server's peak memory where
//!   it was.
//! - Slow uploads hold no shared capacity: hundreds of PATCHes trickling bytes do not stall pulls.
//!
//! Every wait is bounded; no timing decides a pass except as a generous liveness bound.

mod common;

use common::{amz_date, hex_sha256, hmac};

use common::{ACCESS_KEY_ID, Berth, REGION, SECRET_ACCESS_KEY};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921.";
const JSON_CT: &str = "application/x-amz-json-1.1";
const MIB: usize = 1024 * 1024;
/// Liveness bound for one exchange that must not wait for anything slow.
const LIVENESS: Duration = Duration::from_secs(10);

/// Request headers, in order.
type Headers = Vec<(String, String)>;

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// How a test request is signed.
#[derive(Clone)]
struct Signer {
    key_id: String,
    secret: String,
    region: String,
    service: String,
    /// Seconds since the epoch the request claims to be signed at.
    at: u64,
}

impl Signer {
    fn root() -> Signer {
        Signer {
            key_id: ACCESS_KEY_ID.into(),
            secret: SECRET_ACCESS_KEY.into(),
            region: REGION.into(),
            service: "ecr".into(),
            at: now_secs(),
        }
    }

    /// The headers of an ECR call `op` with body hash `body_sha`, signed over content-type,
    /// host, x-amz-date and x-amz-target (as botocore does).
    fn ecr_headers(&self, host: &str, op: &str, body_sha: &str) -> Vec<(String, String)> {
        let target = format!("{TARGET_PREFIX}{op}");
        let stamp = amz_date(self.at);
        let day = &stamp[..8];
        let scope = format!("{day}/{}/{}/aws4_request", self.region, self.service);
        let signed = "content-type;host;x-amz-date;x-amz-target";
        let canonical = format!(
            "POST\n/\n\ncontent-type:{JSON_CT}\nhost:{host}\nx-amz-date:{stamp}\nx-amz-target:{target}\n\n{signed}\n{body_sha}"
        );
        let to_sign = format!("AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}", hex_sha256(canonical.as_bytes()));
        let mut k = format!("AWS4{}", self.secret).into_bytes();
        for part in [day, self.region.as_str(), self.service.as_str(), "aws4_request"] {
            k = hmac(&k, part);
        }
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={}",
            self.key_id,
            hex::encode(hmac(&k, &to_sign))
        );
        vec![
            ("Content-Type".into(), JSON_CT.into()),
            ("X-Amz-Date".into(), stamp),
            ("X-Amz-Target".into(), target),
            ("Authorization".into(), auth),
        ]
    }
}

/// One signed ECR call through reqwest; the status and JSON body.
async fn ecr_call(b: &Berth, op: &str, body: &[u8]) -> (u16, Value) {
    let mut req =
        reqwest::Client::new().post(format!("{}/", b.url)).body(body.to_vec()).timeout(Duration::from_secs(120));
    for (k, v) in Signer::root().ecr_headers(&b.addr, op, &hex_sha256(body)) {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{op}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{op}: not JSON ({e}): {text}")))
}

/// The answer to a raw request.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The server asked for the body (`100 Continue`).
    continued: bool,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} {}", self, String::from_utf8_lossy(&self.body)))
    }
}

/// `POST /` with `headers`, declaring a body of `len` bytes and `Expect: 100-continue`: the body
/// (`len` bytes of `fill`) is sent only if the server asks for it. Bounded by [`LIVENESS`] per
/// read.
async fn post_expecting(b: &Berth, headers: &[(String, String)], len: usize, fill: &[u8]) -> Raw {
    let s = tokio::net::TcpStream::connect(&b.addr).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    let mut head = format!("POST / HTTP/1.1\r\nHost: {}\r\nContent-Length: {len}\r\nExpect: 100-continue\r\n", b.addr);
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    wr.write_all(head.as_bytes()).await.expect("write head");
    let mut buf = Vec::new();
    let mut continued = false;
    // The write half stays open (no FIN) until the answer is read.
    let writer = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if buf.starts_with(b"HTTP/1.1 100") {
                buf.drain(..pos + 4);
                continued = true;
                let body: Vec<u8> = fill.iter().copied().cycle().take(len).collect();
                let mut wr = wr;
                break tokio::spawn(async move {
                    let _ = wr.write_all(&body).await;
                    wr
                });
            }
            break tokio::spawn(async move { wr });
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(LIVENESS, rd.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("no answer within {LIVENESS:?} to a request declaring {len} body bytes"))
            .unwrap_or(0);
        assert!(n > 0, "connection closed without an answer");
        buf.extend_from_slice(&chunk[..n]);
    };
    let raw = read_response(&mut rd, buf, continued).await;
    drop(writer);
    raw
}

/// Read one HTTP/1.1 response (Content-Length framed) from `rd`, `buf` holding what was read.
async fn read_response(rd: &mut tokio::net::tcp::OwnedReadHalf, mut buf: Vec<u8>, continued: bool) -> Raw {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos]).to_string();
            let mut lines = head.split("\r\n");
            let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            while buf.len() < pos + 4 + len {
                let n =
                    tokio::time::timeout_at(deadline, rd.read(&mut chunk)).await.expect("response body").unwrap_or(0);
                assert!(n > 0, "connection closed in the response body");
                buf.extend_from_slice(&chunk[..n]);
            }
            return Raw { status, headers, body: buf[pos + 4..pos + 4 + len].to_vec(), continued };
        }
        let n = tokio::time::timeout_at(deadline, rd.read(&mut chunk)).await.expect("response head").unwrap_or(0);
        assert!(n > 0, "connection closed without a response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Peak resident memory of process `pid` (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

fn assert_refused_unread(r: &Raw, what: &str, status: u16, kind: &str) {
    assert!(!r.continued, "{what}: the server asked for the body (100 Continue) before refusing: {r:?}");
    assert_eq!(r.status, status, "{what}: {r:?} {}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["__type"], kind, "{what}");
    assert_eq!(r.header("connection"), Some("close"), "{what}: the unread body makes the connection unusable");
}

/// Requests without valid credentials are refused from their headers alone, whatever body they
/// declare; and 24 concurrent unauthenticated 30 MiB bodies, sent in full, leave the server's
/// peak memory (VmHWM) within a bounded distance of where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unauthenticated_bodies_are_refused_before_they_are_read() {
    let b = Berth::start();
    let declared = 30 * MIB;
    let body = json!({"repositoryName": "never"}).to_string();
    let sha = hex_sha256(body.as_bytes());
    let host = b.addr.clone();
    let unsigned = vec![
        ("Content-Type".to_string(), JSON_CT.to_string()),
        ("X-Amz-Target".to_string(), format!("{TARGET_PREFIX}CreateRepository")),
    ];
    let with = |f: &dyn Fn(&mut Signer)| {
        let mut s = Signer::root();
        f(&mut s);
        s.ecr_headers(&host, "CreateRepository", &sha)
    };
    let cases: Vec<(&str, Headers, &str, &str)> = vec![
        ("no signature", unsigned.clone(), "MissingAuthenticationTokenException", "Missing Authentication Token"),
        (
            "unknown access key",
            with(&|s| s.key_id = "AKIAUNKNOWNKEY000000".into()),
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ),
        ("wrong service", with(&|s| s.service = "s3".into()), "InvalidSignatureException", ""),
        ("unknown region", with(&|s| s.region = "xx-nowhere-9".into()), "InvalidSignatureException", ""),
        ("expired", with(&|s| s.at -= 3600), "InvalidSignatureException", ""),
    ];
    // Whole bodies, sent at once by many clients that do not wait to be asked.
    let pid = b.child.as_ref().unwrap().id();
    let before = peak_rss(pid);
    let clients = 24;
    let chunk = vec![b' '; MIB];
    let mut tasks = Vec::new();
    for i in 0..clients {
        let addr = b.addr.clone();
        let headers = if i % 2 == 0 { unsigned.clone() } else { cases[1].1.clone() };
        let chunk = chunk.clone();
        tasks.push(tokio::spawn(async move {
            let s = tokio::net::TcpStream::connect(&addr).await.expect("connect");
            let (mut rd, mut wr) = s.into_split();
            let mut head = format!("POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {declared}\r\n");
            for (k, v) in &headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let writer = tokio::spawn(async move {
                wr.write_all(head.as_bytes()).await.ok()?;
                for _ in 0..declared / MIB {
                    wr.write_all(&chunk).await.ok()?;
                }
                Some(wr)
            });
            // Whatever comes back (an answer, or a reset once the server stops reading).
            let mut sink = vec![0u8; 64 * 1024];
            let _ = tokio::time::timeout(Duration::from_secs(60), async {
                while let Ok(n) = rd.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
            let _ = tokio::time::timeout(Duration::from_secs(60), writer).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let after = peak_rss(pid);
    let grown = after.saturating_sub(before);
    assert!(
        grown < 96 * MIB as u64,
        "peak RSS grew by {} MiB ({} -> {} MiB) for {clients} unauthenticated {} MiB bodies",
        grown / MIB as u64,
        before / MIB as u64,
        after / MIB as u64,
        declared / MIB
    );
    for (what, headers, kind, message) in &cases {
        let r = post_expecting(&b, headers, declared, b" ").await;
        assert_refused_unread(&r, what, 400, kind);
        if !message.is_empty() {
            assert_eq!(r.json()["message"], *message, "{what}");
        }
    }
    // The IAM/STS Query API too.
    let iam = vec![("Content-Type".to_string(), "application/x-www-form-urlencoded".to_string())];
    let r = post_expecting(&b, &iam, declared, b"a").await;
    assert!(!r.continued, "IAM: the server asked for the body before refusing: {r:?}");
    assert_eq!(r.status, 403, "{r:?}");
    assert!(String::from_utf8_lossy(&r.body).contains("<Code>MissingAuthenticationToken</Code>"), "{r:?}");

    // The server still serves signed requests.
    let (status, v) = ecr_call(&b, "DescribeRegistry", b"{}").await;
    assert_eq!(status, 200, "{v}");
}

/// A signed request whose declared body is more than its operation may carry is refused with
/// ECR's InvalidParameterException before the body is read; the operation did not happen.
#[tokio::test]
async fn authenticated_oversized_bodies_are_refused_by_operation() {
    let b = Berth::start();
    // CreateRepository: small (1 MiB). The body is valid JSON padded with spaces.
    let name = "bounds/oversized";
    let len = 2 * MIB;
    let mut body = json!({"repositoryName": name}).to_string().into_bytes();
    body.pop();
    body.resize(len - 1, b' ');
    body.push(b'}');
    let headers = Signer::root().ecr_headers(&b.addr, "CreateRepository", &hex_sha256(&body));
    let r = post_expecting(&b, &headers, len, &body).await;
    if r.continued {
        // The body was asked for: fail with what the server then did with it.
        panic!("a {len}-byte CreateRepository body was read: {r:?} {}", String::from_utf8_lossy(&r.body));
    }
    assert_refused_unread(&r, "CreateRepository", 400, "InvalidParameterException");
    assert_eq!(r.json()["message"], "The request body is larger than the 1048576 bytes allowed for this operation.");
    let (status, v) =
        ecr_call(&b, "DescribeRepositories", json!({"repositoryNames": [name]}).to_string().as_bytes()).await;
    assert_eq!((status, v["__type"].as_str()), (400, Some("RepositoryNotFoundException")), "{v}");

    // PutImage: the manifest may be 4 MiB, escaped; 13 MiB is more than that can be.
    let len = 13 * MIB;
    let headers = Signer::root().ecr_headers(&b.addr, "PutImage", &hex_sha256(b"unused"));
    let r = post_expecting(&b, &headers, len, b" ").await;
    assert_refused_unread(&r, "PutImage", 400, "InvalidParameterException");
    assert_eq!(
        r.json()["message"],
        "Invalid parameter at 'imageManifest' failed to satisfy constraint: 'Member must have length less than or equal to 4194304'"
    );
}

/// UploadLayerPart still carries ECR's largest part (20 MiB, base64 in JSON); one byte more is
/// refused before the body is read.
#[tokio::test]
async fn upload_layer_part_carries_the_largest_part() {
    let b = Berth::start();
    let repo = "bounds/parts";
    let (status, v) = ecr_call(&b, "CreateRepository", json!({"repositoryName": repo}).to_string().as_bytes()).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = ecr_call(&b, "InitiateLayerUpload", json!({"repositoryName": repo}).to_string().as_bytes()).await;
    assert_eq!(status, 200, "{v}");
    let upload_id = v["uploadId"].as_str().unwrap().to_string();
    let part: Vec<u8> = (0..20 * MIB).map(|i| (i % 251) as u8).collect();
    let req = json!({
        "repositoryName": repo,
        "uploadId": upload_id,
        "partFirstByte": 0,
        "partLastByte": part.len() - 1,
        "layerPartBlob": common::base64_encode(&part),
    })
    .to_string();
    let (status, v) = ecr_call(&b, "UploadLayerPart", req.as_bytes()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["lastByteReceived"], part.len() - 1);
    let digest = format!("sha256:{}", hex_sha256(&part));
    let done = json!({"repositoryName": repo, "uploadId": upload_id, "layerDigests": [digest]}).to_string();
    let (status, v) = ecr_call(&b, "CompleteLayerUpload", done.as_bytes()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["layerDigest"], digest);

    // One byte over the largest part: refused, nothing appended.
    let (_, v) = ecr_call(&b, "InitiateLayerUpload", json!({"repositoryName": repo}).to_string().as_bytes()).await;
    let upload_id = v["uploadId"].as_str().unwrap().to_string();
    let too_big: Vec<u8> = (0..20 * MIB + 1).map(|i| (i % 251) as u8).collect();
    let req = json!({
        "repositoryName": repo,
        "uploadId": upload_id,
        "partFirstByte": 0,
        "partLastByte": too_big.len() - 1,
        "layerPartBlob": common::base64_encode(&too_big),
    })
    .to_string();
    let (status, v) = ecr_call(&b, "UploadLayerPart", req.as_bytes()).await;
    let limit_message = "Invalid parameter at 'layerPartBlob' failed to satisfy constraint: 'Member must have length less than or equal to 20971520'";
    assert_eq!(
        (status, v["__type"].as_str(), v["message"].as_str()),
        (400, Some("InvalidParameterException"), Some(limit_message)),
        "{v}"
    );
    let done = json!({"repositoryName": repo, "uploadId": upload_id, "layerDigests": [digest]}).to_string();
    let (status, v) = ecr_call(&b, "CompleteLayerUpload", done.as_bytes()).await;
    assert_eq!((status, v["__type"].as_str()), (400, Some("EmptyUploadException")), "{v}");

    // A body larger than any part can make (32 MiB) is refused before it is read.
    let headers = Signer::root().ecr_headers(&b.addr, "UploadLayerPart", &hex_sha256(upload_id.as_bytes()));
    let r = post_expecting(&b, &headers, 32 * MIB, b"A").await;
    assert_refused_unread(&r, "UploadLayerPart", 400, "InvalidParameterException");
    assert_eq!(r.json()["message"], limit_message);
}

/// 300 uploads trickling their PATCH bodies a byte a second hold no blocking threads: pulls of
/// an existing blob and manifest keep being answered; once the uploads finish their bodies,
/// every PATCH is acknowledged and the server is healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_uploads_do_not_starve_pulls() {
    let b = Berth::start();
    let c = b.client();
    let repo = "bounds/slow";
    // Something to pull.
    let blob = b"layer bytes for the pull".to_vec();
    let blob_digest = format!("sha256:{}", hex_sha256(&blob));
    let r = c
        .post(format!("{}/v2/{repo}/blobs/uploads/?digest={blob_digest}", b.url))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let config = b"{}".to_vec();
    let config_digest = format!("sha256:{}", hex_sha256(&config));
    let r = c
        .post(format!("{}/v2/{repo}/blobs/uploads/?digest={config_digest}", b.url))
        .body(config.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": blob_digest, "size": blob.len()}],
    })
    .to_string();
    let r = c
        .put(format!("{}/v2/{repo}/manifests/v1", b.url))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // 300 uploads, each a PATCH of 30 bytes sent a byte a second: they outlast the pulls below
    // (each bounded by LIVENESS) unless ended early.
    let uploads = 300;
    let body_len = 30usize;
    let mut locations = Vec::new();
    for _ in 0..uploads {
        let r = c.post(format!("{}/v2/{repo}/blobs/uploads/", b.url)).send().await.unwrap();
        assert_eq!(r.status(), 202);
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        assert!(loc.starts_with("/v2/"), "{loc}");
        locations.push(loc);
    }
    let (go_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut patches = Vec::new();
    for loc in &locations {
        let path = loc.clone();
        let addr = b.addr.clone();
        let auth = b.basic_auth_header();
        let mut go = go_tx.subscribe();
        patches.push(tokio::spawn(async move {
            let s = tokio::net::TcpStream::connect(&addr).await.expect("connect");
            let (mut rd, mut wr) = s.into_split();
            let head = format!(
                "PATCH {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nContent-Type: application/octet-stream\r\nContent-Length: {body_len}\r\n\r\n"
            );
            wr.write_all(head.as_bytes()).await.expect("head");
            // A byte a second until told to finish (bounded: at most the whole body).
            let mut sent = 0;
            while sent < body_len - 1 {
                wr.write_all(b"x").await.expect("trickle");
                sent += 1;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = go.recv() => break,
                }
            }
            wr.write_all(&vec![b'x'; body_len - sent]).await.expect("rest of the body");
            let raw = read_response(&mut rd, Vec::new(), false).await;
            drop(wr);
            raw
        }));
    }
    // Every upload is now receiving its body; pulls must keep being answered.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for round in 0..3 {
        let r = tokio::time::timeout(LIVENESS, async {
            let r = c.get(format!("{}/v2/{repo}/blobs/{blob_digest}", b.url)).send().await.unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
        })
        .await
        .unwrap_or_else(|_| {
            panic!("round {round}: blob pull not answered within {LIVENESS:?} during {uploads} slow uploads")
        });
        assert_eq!(r, (200, blob.clone()), "round {round}");
        let r = tokio::time::timeout(LIVENESS, async {
            let r = c
                .get(format!("{}/v2/{repo}/manifests/v1", b.url))
                .header("accept", "application/vnd.oci.image.manifest.v1+json")
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
        .await
        .unwrap_or_else(|_| {
            panic!("round {round}: manifest pull not answered within {LIVENESS:?} during {uploads} slow uploads")
        });
        assert_eq!(r, (200, manifest.clone()), "round {round}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // End the trickles: every PATCH is acknowledged with all its bytes.
    let _ = go_tx.send(());
    for (i, p) in patches.into_iter().enumerate() {
        let r = tokio::time::timeout(Duration::from_secs(60), p).await.expect("PATCH answered").unwrap();
        assert_eq!(r.status, 202, "upload {i}: {r:?}");
        assert_eq!(r.header("range"), Some(&*format!("0-{}", body_len - 1)), "upload {i}");
    }
    // Healthy: a fresh push of one of them completes, and pulls still work.
    let expected = vec![b'x'; body_len];
    let digest = format!("sha256:{}", hex_sha256(&expected));
    let r = c.put(format!("{}{}?digest={digest}", b.url, locations[0])).send().await.unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let r = c.get(format!("{}/v2/{repo}/blobs/{digest}", b.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), expected);
}
