//! HTTP-level integration tests of the OCI Distribution Spec v1.1 API, as the spec
//! (opencontainers/distribution-spec `spec.md`) and its conformance suite define it.
//!
//! Every check of the conformance suite (v1.1 `conformance/0{1..4}_*_test.go` and the
//! redesigned `conformance/run.go` + `api.go`) is mirrored here, plus Berth specifics:
//! every request authenticates with an ECR-style registry token (`Authorization: Basic`, see
//! `auth.rs` for the authentication tests), the server runs with create-on-push so
//! repositories appear on first push, every response carries
//! `Docker-Distribution-API-Version: registry/2.0`, errors are
//! `{"errors":[{"code","message","detail"}]}` with the spec's codes.
//!
//! Where CNCF Distribution deviates from the spec, these tests assert the spec.

mod common;

use bytes::Bytes;
use common::{Berth, sha256};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, RANGE};
use reqwest::{Client, Method, RequestBuilder, StatusCode, Url};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------------
// Media types and well-known values
// ---------------------------------------------------------------------------------------------

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const OCI_LAYER_GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCTET: &str = "application/octet-stream";
const EXAMPLE_TYPE_1: &str = "application/vnd.example.oci.conformance.v1";
const EXAMPLE_TYPE_2: &str = "application/vnd.example.oci.conformance.v2";

/// The digest of the two-byte empty JSON blob `{}` (checked by the conformance suite).
const EMPTY_JSON_DIGEST: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// Accept header listing every manifest type the tests push.
const ACCEPT_ALL: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// Error codes a registry may return: the spec's table (code-1 .. code-14) plus the legacy
/// Docker codes the spec says clients MAY encounter.
const SPEC_ERROR_CODES: &[&str] = &[
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
    // legacy (spec: "Legacy Docker support error codes")
    "TAG_INVALID",
    "MANIFEST_UNVERIFIED",
];

const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Small pure helpers
// ---------------------------------------------------------------------------------------------

fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(ring::digest::digest(&ring::digest::SHA512, data)))
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// A descriptor `{mediaType, digest, size}` of `data` (sha256).
fn desc(media_type: &str, data: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256(data), "size": data.len()})
}

/// A descriptor with an explicit digest (e.g. sha512).
fn desc_with(media_type: &str, digest: &str, size: usize) -> Value {
    json!({"mediaType": media_type, "digest": digest, "size": size})
}

/// An image config blob, unique per seed (as the conformance suite's random author).
fn config_bytes(seed: u64) -> Vec<u8> {
    serde_json::to_vec_pretty(&json!({
        "author": format!("author-{seed}"),
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
    }))
    .unwrap()
}

fn pretty(v: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap()
}

/// Is `list` sorted in lexical (case-insensitive) or ASCIIbetical order, as the spec allows?
fn is_spec_sorted(list: &[String]) -> bool {
    let mut ascii = list.to_vec();
    ascii.sort();
    let mut lexical = list.to_vec();
    lexical.sort_by_key(|s| s.to_lowercase());
    list == ascii.as_slice() || list == lexical.as_slice()
}

/// A 36-character hyphenated UUID.
fn looks_like_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts.iter().zip([8, 4, 4, 4, 12]).all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// A fully read response, with the request it answers (for failure messages).
struct Resp {
    what: String,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn header_values(&self, name: &str) -> Vec<String> {
        self.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect()
    }

    #[track_caller]
    fn must_header(&self, name: &str) -> &str {
        match self.header(name) {
            Some(v) => v,
            None => {
                panic!("{}: missing header {name:?}; status {}, headers {:?}", self.what, self.status, self.headers)
            }
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body[..self.body.len().min(2000)]).into_owned()
    }

    #[track_caller]
    fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{}: expected status {status}, got {}; headers {:?}; body {:?}",
            self.what,
            self.status,
            self.headers,
            self.text()
        );
        self
    }

    #[track_caller]
    fn expect_header(&self, name: &str, value: &str) -> &Self {
        assert_eq!(self.header(name), Some(value), "{}: header {name:?} (all headers {:?})", self.what, self.headers);
        self
    }

    #[track_caller]
    fn expect_body(&self, body: &[u8]) -> &Self {
        assert!(
            self.body[..] == body[..],
            "{}: body differs: got {} bytes {:?}, expected {} bytes {:?}",
            self.what,
            self.body.len(),
            self.text(),
            body.len(),
            String::from_utf8_lossy(&body[..body.len().min(2000)])
        );
        self
    }

    #[track_caller]
    fn expect_empty_body(&self) -> &Self {
        assert!(self.body.is_empty(), "{}: expected an empty body, got {:?}", self.what, self.text());
        self
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {:?}", self.what, self.text()))
    }

    /// Validate the error body shape (`{"errors":[{"code","message","detail"}]}`, codes from the
    /// spec's table) and return its codes.
    #[track_caller]
    fn error_codes(&self) -> Vec<String> {
        let v = self.json();
        let errors = v
            .get("errors")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("{}: error body lacks an errors array: {v}", self.what));
        assert!(!errors.is_empty(), "{}: empty errors array", self.what);
        errors
            .iter()
            .map(|e| {
                let code = e
                    .get("code")
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("{}: error without a string code: {e}", self.what));
                assert!(
                    !code.is_empty() && code.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                    "{}: code {code:?} must contain only uppercase letters and underscores",
                    self.what
                );
                assert!(
                    SPEC_ERROR_CODES.contains(&code),
                    "{}: code {code:?} is not one of the spec's error codes (body {v})",
                    self.what
                );
                assert!(
                    e.get("message").is_some_and(Value::is_string),
                    "{}: error lacks a string message: {e}",
                    self.what
                );
                assert!(e.get("detail").is_some(), "{}: error lacks a detail field: {e}", self.what);
                code.to_string()
            })
            .collect()
    }

    /// Status, and an error body containing `code`.
    #[track_caller]
    fn expect_error(&self, status: u16, code: &str) -> &Self {
        self.expect(status);
        let codes = self.error_codes();
        assert!(codes.iter().any(|c| c == code), "{}: expected error code {code}, got {codes:?}", self.what);
        self
    }

    /// The URL of a `Link: <url>; rel="next"` header, if any (format checked).
    #[track_caller]
    fn next_link(&self) -> Option<String> {
        let v = self.header("link")?;
        let v = v.trim();
        assert!(v.starts_with('<'), "{}: malformed Link header {v:?}", self.what);
        let end = v.find('>').unwrap_or_else(|| panic!("{}: malformed Link header {v:?}", self.what));
        let params = &v[end + 1..];
        assert!(
            params.split(';').any(|p| p.trim() == "rel=\"next\"" || p.trim() == "rel=next"),
            "{}: Link header without rel=\"next\": {v:?}",
            self.what
        );
        Some(v[1..end].to_string())
    }

    /// The `Range: 0-<end>` header value's end (`-1` for an empty upload written `0--1`).
    #[track_caller]
    fn upload_range_end(&self) -> i64 {
        let r = self.must_header("range");
        let end =
            r.strip_prefix("0-").unwrap_or_else(|| panic!("{}: Range header {r:?} does not start with 0-", self.what));
        end.parse().unwrap_or_else(|_| panic!("{}: unparsable Range header {r:?}", self.what))
    }
}

/// How a raw request sends its body.
#[derive(Clone, Copy)]
enum RawBody {
    /// `Content-Length`, body sent right away.
    Sized,
    /// `Content-Length` and `Expect: 100-continue`.
    ExpectContinue,
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A response read off a raw TCP connection (for request targets reqwest would normalize).
struct RawResp {
    what: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn error_codes(&self) -> Vec<String> {
        let v: Value = serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("{}: body is not JSON ({e}): {:?}", self.what, String::from_utf8_lossy(&self.body))
        });
        v["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no errors array in {v}", self.what))
            .iter()
            .map(|e| e["code"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// 400 NAME_INVALID, or (when `allow_404`, for paths that cannot parse) 404.
    #[track_caller]
    fn expect_name_rejected(&self, allow_404: bool) {
        assert_eq!(
            self.header("docker-distribution-api-version"),
            Some("registry/2.0"),
            "{}: missing Docker-Distribution-API-Version",
            self.what
        );
        if allow_404 && self.status == 404 {
            return;
        }
        assert_eq!(
            self.status,
            400,
            "{}: expected 400 NAME_INVALID{}, got {} {:?}",
            self.what,
            if allow_404 { " (or 404)" } else { "" },
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        if !self.what.starts_with("HEAD") {
            let codes = self.error_codes();
            assert!(codes.iter().any(|c| c == "NAME_INVALID"), "{}: expected NAME_INVALID, got {codes:?}", self.what);
        }
    }
}

fn decode_chunked(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_str = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_str.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        b = &b[eol + 2..];
        if size == 0 || b.len() < size {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[(size + 2).min(b.len())..];
    }
}

// ---------------------------------------------------------------------------------------------
// The registry under test
// ---------------------------------------------------------------------------------------------

/// An image pushed (blobs) or about to be pushed (manifest).
struct Image {
    manifest: Vec<u8>,
    digest: String,
    config: Vec<u8>,
    layers: Vec<Vec<u8>>,
}

struct Reg {
    berth: Berth,
    client: Client,
    base: Url,
}

impl Reg {
    fn start() -> Reg {
        let berth = Berth::start();
        let client =
            berth.client_builder().redirect(reqwest::redirect::Policy::none()).build().expect("reqwest client");
        let base = Url::parse(&berth.url).expect("base url");
        Reg { berth, client, base }
    }

    /// Resolve a path or a (relative or absolute) Location against the registry.
    fn url(&self, p: &str) -> Url {
        self.base.join(p).unwrap_or_else(|e| panic!("bad url {p:?}: {e}"))
    }

    fn req(&self, m: Method, p: &str) -> RequestBuilder {
        self.client.request(m, self.url(p))
    }

    fn req_url(&self, m: Method, u: Url) -> RequestBuilder {
        self.client.request(m, u)
    }

    /// Send; check the header every Berth response carries.
    async fn send(&self, rb: RequestBuilder) -> Resp {
        let req = rb.build().expect("request");
        let what = format!("{} {}", req.method(), req.url());
        let r = self.client.execute(req).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.bytes().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            headers.get("docker-distribution-api-version").and_then(|v| v.to_str().ok()),
            Some("registry/2.0"),
            "{what} ({status}): every response must carry Docker-Distribution-API-Version: registry/2.0"
        );
        Resp { what, status, headers, body }
    }

    async fn get(&self, p: &str) -> Resp {
        self.send(self.req(Method::GET, p)).await
    }

    async fn head(&self, p: &str) -> Resp {
        self.send(self.req(Method::HEAD, p)).await
    }

    async fn delete(&self, p: &str) -> Resp {
        self.send(self.req(Method::DELETE, p)).await
    }

    /// A request written byte for byte on a fresh connection (no URL normalization).
    async fn raw(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> RawResp {
        self.raw_full(method, target, headers, body, RawBody::Sized).await
    }

    /// A raw request. The body is written concurrently with reading the response, and write
    /// errors are ignored, so an early answer (e.g. 413) is always observed.
    /// `RawBody::ExpectContinue` sends `Expect: 100-continue` and only sends the body after a
    /// `100 Continue`; `RawBody::Chunked` uses chunked transfer encoding (no Content-Length).
    async fn raw_full(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        mode: RawBody,
    ) -> RawResp {
        let what = format!("{method} {target} (raw)");
        let s =
            tokio::net::TcpStream::connect(&self.berth.addr).await.unwrap_or_else(|e| panic!("{what}: connect: {e}"));
        let (mut rd, mut wr) = s.into_split();
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.berth.addr);
        match mode {
            RawBody::Chunked => head.push_str("Transfer-Encoding: chunked\r\n"),
            _ => head.push_str(&format!("Content-Length: {}\r\n", body.len())),
        }
        if matches!(mode, RawBody::ExpectContinue) {
            head.push_str("Expect: 100-continue\r\n");
        }
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization")) {
            head.push_str(&format!("Authorization: {}\r\n", self.berth.basic_auth_header()));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        wr.write_all(head.as_bytes()).await.unwrap_or_else(|e| panic!("{what}: writing the request head: {e}"));
        let mut buf = Vec::new();
        let mut send_body = true;
        if matches!(mode, RawBody::ExpectContinue) {
            // Wait for the interim 100 or the final response.
            loop {
                if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    if buf.starts_with(b"HTTP/1.1 100") {
                        buf.drain(..pos + 4);
                    } else {
                        send_body = false;
                    }
                    break;
                }
                let mut chunk = [0u8; 4096];
                let n = rd.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
        let body = body.to_vec();
        let chunked = matches!(mode, RawBody::Chunked);
        // The task hands the write half back so it stays open (no FIN) until the response is read.
        let writer = tokio::spawn(async move {
            if !send_body {
                return Some(wr);
            }
            if chunked {
                for c in body.chunks(64 * 1024) {
                    let framed = [format!("{:x}\r\n", c.len()).into_bytes(), c.to_vec(), b"\r\n".to_vec()].concat();
                    if wr.write_all(&framed).await.is_err() {
                        return None;
                    }
                }
                wr.write_all(b"0\r\n\r\n").await.ok()?;
            } else {
                wr.write_all(&body).await.ok()?;
            }
            Some(wr)
        });
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if !buf.is_empty() => {
                    let _ = e;
                    break;
                }
                Err(e) => panic!("{what}: reading the response: {e}"),
            }
        }
        drop(writer);
        let pos = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("{what}: no header terminator in {:?}", String::from_utf8_lossy(&buf)));
        let head = String::from_utf8_lossy(&buf[..pos]).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{what}: bad status line in {head:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = buf[pos + 4..].to_vec();
        if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked")) {
            body = decode_chunked(&body);
        }
        RawResp { what, status, headers, body }
    }

    // ----- uploads -----

    /// `POST /v2/<name>/blobs/uploads/` with `Content-Length: 0`: 202 and the session URL.
    async fn start_upload_resp(&self, name: &str) -> (Url, Resp) {
        let r =
            self.send(self.req(Method::POST, &format!("/v2/{name}/blobs/uploads/")).header(CONTENT_LENGTH, "0")).await;
        r.expect(202);
        let loc = self.url(r.must_header("location"));
        (loc, r)
    }

    async fn start_upload(&self, name: &str) -> Url {
        self.start_upload_resp(name).await.0
    }

    /// The session URL with `digest=<digest>` appended to its query.
    fn with_digest(u: &Url, digest: &str) -> Url {
        let mut u = u.clone();
        u.query_pairs_mut().append_pair("digest", digest);
        u
    }

    /// `PATCH <location>` with `Content-Range: <start>-<end>` and the chunk.
    async fn patch_chunk(&self, loc: &Url, start: usize, chunk: &[u8]) -> Resp {
        self.send(
            self.req_url(Method::PATCH, loc.clone())
                .header(CONTENT_TYPE, OCTET)
                .header(CONTENT_RANGE, format!("{}-{}", start, start + chunk.len() - 1))
                .header(CONTENT_LENGTH, chunk.len().to_string())
                .body(chunk.to_vec()),
        )
        .await
    }

    /// The session at `loc` holds exactly `size` bytes: its status says `Range: 0-<size-1>`
    /// (`0-0` when empty, which alone cannot tell 0 bytes from 1), and a chunk starting one byte
    /// after `size` (or, when `size > 0`, one byte before it) is refused with 416 and the same
    /// Range, leaving the session as it was.
    async fn expect_session_size(&self, loc: &Url, size: usize) {
        let range = format!("0-{}", size.saturating_sub(1));
        let st = self.send(self.req_url(Method::GET, loc.clone())).await;
        st.expect(204).expect_header("range", &range);
        let mut starts = vec![size + 1];
        if size > 0 {
            starts.push(size - 1);
        }
        for start in starts {
            let r = self.patch_chunk(loc, start, b"x").await;
            r.expect(416).expect_header("range", &range);
        }
    }

    /// Closing `PUT <location>?digest=` without a body.
    async fn put_close(&self, loc: &Url, digest: &str) -> Resp {
        self.send(
            self.req_url(Method::PUT, Self::with_digest(loc, digest))
                .header(CONTENT_TYPE, OCTET)
                .header(CONTENT_LENGTH, "0"),
        )
        .await
    }

    /// POST then PUT with the whole body.
    async fn post_put(&self, name: &str, data: &[u8], digest: &str) -> Resp {
        let loc = self.start_upload(name).await;
        self.send(
            self.req_url(Method::PUT, Self::with_digest(&loc, digest))
                .header(CONTENT_TYPE, OCTET)
                .header(CONTENT_LENGTH, data.len().to_string())
                .body(data.to_vec()),
        )
        .await
    }

    /// Push a blob (POST + PUT), asserting 201; returns its sha256 digest.
    async fn push_blob(&self, name: &str, data: &[u8]) -> String {
        let d = sha256(data);
        self.post_put(name, data, &d).await.expect(201);
        d
    }

    // ----- manifests -----

    async fn put_manifest(&self, name: &str, reference: &str, media_type: &str, body: &[u8]) -> Resp {
        self.send(
            self.req(Method::PUT, &format!("/v2/{name}/manifests/{reference}"))
                .header(CONTENT_TYPE, media_type)
                .body(body.to_vec()),
        )
        .await
    }

    /// Push a manifest, asserting 201, Location and Docker-Content-Digest; returns the digest.
    async fn push_manifest(&self, name: &str, reference: &str, media_type: &str, body: &[u8]) -> String {
        let r = self.put_manifest(name, reference, media_type, body).await;
        r.expect(201);
        let d = sha256(body);
        r.expect_header("docker-content-digest", &d);
        assert!(!r.must_header("location").is_empty());
        d
    }

    /// Push config + `nlayers` layers and build (not push) an OCI image manifest.
    async fn image(&self, name: &str, seed: u64, nlayers: usize) -> Image {
        let config = config_bytes(seed);
        self.push_blob(name, &config).await;
        let mut layers = Vec::new();
        for i in 0..nlayers {
            let l = random_bytes(300 + i * 17, seed * 1000 + i as u64);
            self.push_blob(name, &l).await;
            layers.push(l);
        }
        let manifest = pretty(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": desc(OCI_CONFIG, &config),
            "layers": layers.iter().map(|l| desc(OCI_LAYER_GZ, l)).collect::<Vec<_>>(),
        }));
        Image { digest: sha256(&manifest), manifest, config, layers }
    }

    /// Push an image's blobs and its manifest under `reference` (tag or digest).
    async fn push_image(&self, name: &str, seed: u64, reference: Option<&str>) -> Image {
        let img = self.image(name, seed, 2).await;
        let reference = reference.map(str::to_string).unwrap_or_else(|| img.digest.clone());
        self.push_manifest(name, &reference, OCI_MANIFEST, &img.manifest).await;
        img
    }

    // ----- checks -----

    /// HEAD and GET of a blob: 200, Content-Length, Docker-Content-Digest, body.
    async fn check_blob(&self, name: &str, digest: &str, data: &[u8]) {
        let path = format!("/v2/{name}/blobs/{digest}");
        let h = self.head(&path).await;
        h.expect(200)
            .expect_header("content-length", &data.len().to_string())
            .expect_header("docker-content-digest", digest)
            .expect_empty_body();
        let g = self.get(&path).await;
        g.expect(200)
            .expect_header("content-length", &data.len().to_string())
            .expect_header("docker-content-digest", digest)
            .expect_body(data);
    }

    /// HEAD and GET of a blob both 404 (GET: BLOB_UNKNOWN).
    async fn check_no_blob(&self, name: &str, digest: &str) {
        let path = format!("/v2/{name}/blobs/{digest}");
        self.head(&path).await.expect(404).expect_empty_body();
        self.get(&path).await.expect_error(404, "BLOB_UNKNOWN");
    }

    /// GET and HEAD of a manifest: 200, exact bytes, Content-Type, Content-Length, digest.
    async fn check_manifest(&self, name: &str, reference: &str, body: &[u8], media_type: &str, digest: &str) {
        let path = format!("/v2/{name}/manifests/{reference}");
        let g = self.send(self.req(Method::GET, &path).header(ACCEPT, ACCEPT_ALL)).await;
        g.expect(200)
            .expect_header("content-type", media_type)
            .expect_header("content-length", &body.len().to_string())
            .expect_header("docker-content-digest", digest)
            .expect_body(body);
        let h = self.send(self.req(Method::HEAD, &path).header(ACCEPT, ACCEPT_ALL)).await;
        h.expect(200)
            .expect_header("content-type", media_type)
            .expect_header("content-length", &body.len().to_string())
            .expect_header("docker-content-digest", digest)
            .expect_empty_body();
    }

    /// GET (MANIFEST_UNKNOWN) and HEAD of a manifest reference both 404.
    async fn check_no_manifest(&self, name: &str, reference: &str) {
        let path = format!("/v2/{name}/manifests/{reference}");
        self.send(self.req(Method::HEAD, &path).header(ACCEPT, ACCEPT_ALL)).await.expect(404).expect_empty_body();
        self.send(self.req(Method::GET, &path).header(ACCEPT, ACCEPT_ALL)).await.expect_error(404, "MANIFEST_UNKNOWN");
    }

    /// `GET /v2/<name>/tags/list` → 200 and its tags (checks `name`).
    async fn tags(&self, name: &str) -> Vec<String> {
        let r = self.get(&format!("/v2/{name}/tags/list")).await;
        r.expect(200);
        let v = r.json();
        assert_eq!(v["name"], json!(name), "{}: name field", r.what);
        tags_of(&r)
    }

    /// Observable state of the registry: catalog and each name's tag list (status + body).
    async fn snapshot(&self, names: &[&str]) -> String {
        let mut out = String::new();
        let c = self.get("/v2/_catalog").await;
        out.push_str(&format!("catalog {} {}\n", c.status, c.text()));
        for n in names {
            let t = self.get(&format!("/v2/{n}/tags/list")).await;
            out.push_str(&format!("tags {n} {} {}\n", t.status, t.text()));
        }
        out
    }
}

/// The `tags` array of a tag list response (`null` counts as empty).
#[track_caller]
fn tags_of(r: &Resp) -> Vec<String> {
    let v = r.json();
    match &v["tags"] {
        Value::Null => Vec::new(),
        Value::Array(a) => a.iter().map(|t| t.as_str().expect("tag is a string").to_string()).collect(),
        other => panic!("{}: tags is not an array: {other}", r.what),
    }
}

/// The `repositories` array of a catalog response.
#[track_caller]
fn repos_of(r: &Resp) -> Vec<String> {
    let v = r.json();
    match &v["repositories"] {
        Value::Null => Vec::new(),
        Value::Array(a) => a.iter().map(|t| t.as_str().expect("repository is a string").to_string()).collect(),
        other => panic!("{}: repositories is not an array: {other}", r.what),
    }
}

/// The `manifests` array of a referrers response, after checking it is an OCI index.
#[track_caller]
fn referrers_of(r: &Resp) -> Vec<Value> {
    r.expect(200).expect_header("content-type", OCI_INDEX);
    let v = r.json();
    assert_eq!(v["schemaVersion"], json!(2), "{}: schemaVersion in {v}", r.what);
    assert_eq!(v["mediaType"], json!(OCI_INDEX), "{}: mediaType in {v}", r.what);
    v["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: manifests must be an array (empty when none): {v}", r.what))
        .clone()
}

// =============================================================================================
// Determining support: GET /v2/ (end-1); unknown paths
// =============================================================================================

#[tokio::test]
async fn base_endpoint_returns_200_with_api_version_header() {
    let reg = Reg::start();
    let r = reg.get("/v2/").await;
    r.expect(200).expect_header("docker-distribution-api-version", "registry/2.0");
    // The header is also on error responses (checked by `send` on every response).
    reg.get("/v2/nope/tags/list").await.expect(404);
    reg.head("/v2/nope/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000")
        .await
        .expect(404);
}

#[tokio::test]
async fn health_and_readiness_probes_answer_without_credentials() {
    let berth = Berth::start();
    let c = Client::new();
    for (path, body) in [("/healthz", "ok\n"), ("/readyz", "ready\n")] {
        let r = c.get(format!("{}{path}", berth.url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()[CONTENT_TYPE], "text/plain; charset=utf-8", "{path}");
        assert_eq!(r.text().await.unwrap(), body, "{path}");
    }
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let reg = Reg::start();
    for p in [
        "/",
        "/v1/",
        "/v3/",
        "/v2x/",
        "/v2/_catalogx",
        "/v2/foo/unknown/bar",
        "/v2/foo/manifests/",
        "/v2/foo/blobs/",
        "/v2/foo/referrers/",
        "/v2/foo/tags",
        "/v2/foo/tags/lists",
        "/v2/manifests/latest",
        "/favicon.ico",
    ] {
        let r = reg.get(p).await;
        r.expect(404);
    }
    // A method the endpoint does not define is not a success.
    let r = reg.send(reg.req(Method::POST, "/v2/foo/tags/list")).await;
    assert!(r.status.is_client_error(), "{}: expected a 4xx, got {}", r.what, r.status);
}

// =============================================================================================
// Pulling blobs (end-2), range requests, blob delete (end-10)
// =============================================================================================

#[tokio::test]
async fn blob_head_and_get_return_size_digest_and_exact_bytes() {
    let reg = Reg::start();
    let data = random_bytes(2048, 1);
    let d = sha256(&data);
    let put = reg.post_put("repo", &data, &d).await;
    put.expect(201).expect_header("docker-content-digest", &d);
    reg.check_blob("repo", &d, &data).await;
    // The Location of the 201 is a pullable blob URL.
    let loc = reg.url(put.must_header("location"));
    assert_eq!(loc.path(), format!("/v2/repo/blobs/{d}"));
    reg.send(reg.req_url(Method::GET, loc)).await.expect(200).expect_body(&data);
    // Conformance: Accept-Ranges advertised is optional, but ranges must work (next test).
}

#[tokio::test]
async fn blob_well_known_contents_empty_and_empty_json() {
    let reg = Reg::start();
    // The empty JSON blob `{}` has the well-known digest.
    let d = reg.push_blob("repo", b"{}").await;
    assert_eq!(d, EMPTY_JSON_DIGEST);
    reg.check_blob("repo", &d, b"{}").await;
    // The zero-byte blob.
    let d0 = reg.push_blob("repo", b"").await;
    assert_eq!(d0, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    reg.check_blob("repo", &d0, b"").await;
    reg.delete(&format!("/v2/repo/blobs/{d0}")).await.expect(202);
    reg.check_no_blob("repo", &d0).await;
}

#[tokio::test]
async fn blob_range_requests() {
    let reg = Reg::start();
    let data = random_bytes(2048, 2);
    let d = reg.push_blob("repo", &data).await;
    let path = format!("/v2/repo/blobs/{d}");
    let ranged = |range: &str| reg.send(reg.req(Method::GET, &path).header(RANGE, range.to_string()));

    // (Range header, first byte, last byte)
    for (range, a, b) in [
        ("bytes=500-1499", 500usize, 1499usize),
        ("bytes=500-", 500, 2047),
        ("bytes=-500", 1548, 2047),
        ("bytes=2000-5000", 2000, 2047), // end past the end is clamped
        ("bytes=0-0", 0, 0),
        ("bytes=2047-2047", 2047, 2047),
        ("bytes=0-2047", 0, 2047),
        ("bytes=-5000", 0, 2047), // suffix longer than the blob: the whole blob
    ] {
        let r = ranged(range).await;
        r.expect(206)
            .expect_header("content-range", &format!("bytes {a}-{b}/2048"))
            .expect_header("content-length", &(b - a + 1).to_string())
            .expect_header("docker-content-digest", &d)
            .expect_body(&data[a..=b]);
    }

    // Unsatisfiable ranges: 416 (RFC 9110 §14, as the conformance suite checks).
    let mut errors = Vec::new();
    for range in ["bytes=5000-10000", "bytes=500-0", "bytes=2048-", "bytes=2048-4000"] {
        let r = ranged(range).await;
        r.expect(416);
        // RFC 9110 §15.5.17: SHOULD send `Content-Range: bytes */<length>`.
        r.expect_header("content-range", "bytes */2048");
        errors.push(r);
    }
    // The blob is untouched and still served whole without a Range header.
    reg.check_blob("repo", &d, &data).await;
    // 4xx JSON bodies must use the spec's format and codes.
    for r in errors {
        if !r.body.is_empty() {
            r.error_codes();
        }
    }
}

#[tokio::test]
async fn blob_unknown_is_404_blob_unknown() {
    let reg = Reg::start();
    reg.push_blob("repo", b"something").await;
    let missing = sha256(b"hello world");
    reg.check_no_blob("repo", &missing).await;
    // A repository that does not exist: 404 as well.
    let path = format!("/v2/nothere/blobs/{missing}");
    reg.head(&path).await.expect(404).expect_empty_body();
    let r = reg.get(&path).await;
    r.expect(404);
    let codes = r.error_codes();
    assert!(codes.iter().any(|c| c == "BLOB_UNKNOWN" || c == "NAME_UNKNOWN"), "{}: {codes:?}", r.what);
    // sha512 digest that is not stored.
    reg.check_no_blob("repo", &sha512(b"hello world")).await;
}

#[tokio::test]
async fn blob_invalid_digest_is_400_digest_invalid() {
    let reg = Reg::start();
    reg.push_blob("repo", b"x").await;
    let before = reg.snapshot(&["repo"]).await;
    for bad in [
        "sha256:abc".to_string(),
        format!("sha256:{}", "a".repeat(63)),
        format!("sha256:{}", "a".repeat(65)),
        format!("sha256:{}", "A".repeat(64)),
        format!("sha256:{}", "g".repeat(64)),
        format!("sha512:{}", "a".repeat(64)),
        "sha256:".to_string(),
        "notadigest".to_string(),
        format!("md5:{}", "a".repeat(32)),
    ] {
        let path = format!("/v2/repo/blobs/{bad}");
        reg.get(&path).await.expect_error(400, "DIGEST_INVALID");
        reg.head(&path).await.expect(400).expect_empty_body();
        reg.delete(&path).await.expect_error(400, "DIGEST_INVALID");
    }
    assert_eq!(reg.snapshot(&["repo"]).await, before);
}

#[tokio::test]
async fn blob_delete_then_404() {
    let reg = Reg::start();
    let data = random_bytes(512, 3);
    let d = reg.push_blob("repo", &data).await;
    let path = format!("/v2/repo/blobs/{d}");
    reg.delete(&path).await.expect(202);
    reg.check_no_blob("repo", &d).await;
    // Deleting again: not found.
    reg.delete(&path).await.expect_error(404, "BLOB_UNKNOWN");
    // Deleting a blob that never existed.
    reg.delete(&format!("/v2/repo/blobs/{}", sha256(b"never"))).await.expect_error(404, "BLOB_UNKNOWN");
    // It can be pushed again afterwards.
    reg.push_blob("repo", &data).await;
    reg.check_blob("repo", &d, &data).await;
}

#[tokio::test]
async fn blobs_are_scoped_to_their_repository() {
    let reg = Reg::start();
    let data = random_bytes(700, 4);
    let d = reg.push_blob("one", &data).await;
    reg.push_blob("two", b"other content").await;
    // The blob is in `one` only.
    reg.check_no_blob("two", &d).await;
    // Push it to `two` as well, then delete it from `one`: `two` still serves it.
    reg.push_blob("two", &data).await;
    reg.delete(&format!("/v2/one/blobs/{d}")).await.expect(202);
    reg.check_no_blob("one", &d).await;
    reg.check_blob("two", &d, &data).await;
}

// =============================================================================================
// Pushing blobs: sessions (end-4a), monolithic (end-4b, end-6), chunked/streamed (end-5,
// end-6), status (end-13), cancel (end-14)
// =============================================================================================

#[tokio::test]
async fn upload_post_returns_202_location_and_uuid() {
    let reg = Reg::start();
    let (loc, r) = reg.start_upload_resp("repo").await;
    let uuid = r.must_header("docker-upload-uuid").to_string();
    assert!(looks_like_uuid(&uuid), "{}: Docker-Upload-UUID {uuid:?} is not a UUID", r.what);
    // The <blob-push-location> MUST contain a UUID representing the session.
    assert!(loc.as_str().contains(&uuid), "Location {loc} does not contain the session UUID {uuid}");
    assert!(loc.path().starts_with("/v2/repo/blobs/uploads/"), "Location {loc} is not under /v2/repo/blobs/uploads/");
    // Each POST opens a distinct session.
    let (loc2, r2) = reg.start_upload_resp("repo").await;
    assert_ne!(loc, loc2);
    assert_ne!(r2.must_header("docker-upload-uuid"), uuid);
    // Without Content-Length: 0 (conformance "post+put" sends a bare POST).
    let r3 = reg.send(reg.req(Method::POST, "/v2/repo/blobs/uploads/")).await;
    r3.expect(202);
    assert!(!r3.must_header("location").is_empty());
    // A fresh session reports nothing uploaded yet.
    let st = reg.send(reg.req_url(Method::GET, loc.clone())).await;
    st.expect(204).expect_header("range", "0-0");
    assert_eq!(st.must_header("location"), loc.path());
    reg.expect_session_size(&loc, 0).await;
}

#[tokio::test]
async fn upload_monolithic_single_post_with_digest() {
    let reg = Reg::start();
    let data = random_bytes(1500, 5);
    let d = sha256(&data);
    let r = reg
        .send(
            reg.req(Method::POST, &format!("/v2/repo/blobs/uploads/?digest={d}"))
                .header(CONTENT_TYPE, OCTET)
                .header(CONTENT_LENGTH, data.len().to_string())
                .body(data.clone()),
        )
        .await;
    r.expect(201).expect_header("docker-content-digest", &d);
    let loc = reg.url(r.must_header("location"));
    assert_eq!(loc.path(), format!("/v2/repo/blobs/{d}"));
    reg.send(reg.req_url(Method::GET, loc)).await.expect(200).expect_body(&data);
    reg.check_blob("repo", &d, &data).await;
    // The repository now exists (repositories appear on first push).
    let c = reg.get("/v2/_catalog").await;
    c.expect(200);
    assert!(repos_of(&c).contains(&"repo".to_string()));
}

#[tokio::test]
async fn upload_post_then_put() {
    let reg = Reg::start();
    let data = random_bytes(4000, 6);
    let d = sha256(&data);
    let loc = reg.start_upload("repo").await;
    let r = reg
        .send(
            reg.req_url(Method::PUT, Reg::with_digest(&loc, &d))
                .header(CONTENT_TYPE, OCTET)
                .header(CONTENT_LENGTH, data.len().to_string())
                .body(data.clone()),
        )
        .await;
    r.expect(201).expect_header("docker-content-digest", &d);
    let blob_loc = reg.url(r.must_header("location"));
    assert_eq!(blob_loc.path(), format!("/v2/repo/blobs/{d}"));
    reg.send(reg.req_url(Method::GET, blob_loc)).await.expect(200).expect_body(&data);
    reg.check_blob("repo", &d, &data).await;
    // The session is closed: it is now unknown.
    reg.send(reg.req_url(Method::GET, loc.clone())).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.put_close(&loc, &d).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn upload_same_blob_twice_is_idempotent() {
    let reg = Reg::start();
    let data = random_bytes(999, 7);
    let d = reg.push_blob("repo", &data).await;
    let d2 = reg.push_blob("repo", &data).await;
    assert_eq!(d, d2);
    reg.check_blob("repo", &d, &data).await;
}

#[tokio::test]
async fn upload_cross_repo_mount_of_existing_blob() {
    let reg = Reg::start();
    let data = random_bytes(512, 8);
    let d = reg.push_blob("src/repo", &data).await;
    let r = reg.send(reg.req(Method::POST, &format!("/v2/dst/repo/blobs/uploads/?mount={d}&from=src/repo"))).await;
    r.expect(201).expect_header("docker-content-digest", &d);
    let loc = reg.url(r.must_header("location"));
    assert_eq!(loc.path(), format!("/v2/dst/repo/blobs/{d}"));
    reg.send(reg.req_url(Method::GET, loc)).await.expect(200).expect_body(&data);
    reg.check_blob("dst/repo", &d, &data).await;
    // Both repositories hold it independently.
    reg.delete(&format!("/v2/src/repo/blobs/{d}")).await.expect(202);
    reg.check_blob("dst/repo", &d, &data).await;
    reg.check_no_blob("src/repo", &d).await;
    // `from` percent-encoded works the same.
    let r = reg
        .send(
            reg.req(Method::POST, &format!("/v2/third/blobs/uploads/?mount={}&from=dst%2Frepo", d.replace(':', "%3A"))),
        )
        .await;
    r.expect(201);
    reg.check_blob("third", &d, &data).await;
}

#[tokio::test]
async fn upload_cross_repo_mount_of_missing_blob_opens_a_session() {
    let reg = Reg::start();
    reg.push_blob("src", b"unrelated").await;
    let data = random_bytes(512, 9);
    let d = sha256(&data);
    let before = reg.snapshot(&["src"]).await;
    // Not in `from`: 202 and an upload session in the target repository.
    for q in [
        format!("?mount={d}&from=src"),
        format!("?mount={d}&from=doesnotexist"),
        format!("?mount={d}"), // no `from` (conformance: "should yield session id")
    ] {
        let r = reg.send(reg.req(Method::POST, &format!("/v2/dst/blobs/uploads/{q}"))).await;
        r.expect(202);
        let loc = reg.url(r.must_header("location"));
        assert!(loc.path().starts_with("/v2/dst/blobs/uploads/"), "{}: Location {loc}", r.what);
        // The session is usable.
        reg.send(reg.req_url(Method::GET, loc.clone())).await.expect(204);
        reg.send(reg.req_url(Method::DELETE, loc)).await.expect(204);
    }
    reg.check_no_blob("dst", &d).await;
    // The source repository is untouched. (Whether an upload session alone makes `dst` appear
    // in the catalog is not specified, so it is not asserted.)
    let after = reg.snapshot(&["src"]).await;
    assert_eq!(after.lines().nth(1), before.lines().nth(1));
    // The fallback session completes a normal push.
    let r = reg.send(reg.req(Method::POST, &format!("/v2/dst/blobs/uploads/?mount={d}&from=src"))).await;
    r.expect(202);
    let loc = reg.url(r.must_header("location"));
    reg.send(reg.req_url(Method::PUT, Reg::with_digest(&loc, &d)).header(CONTENT_TYPE, OCTET).body(data.clone()))
        .await
        .expect(201);
    reg.check_blob("dst", &d, &data).await;
}

#[tokio::test]
async fn upload_cross_repo_mount_anonymous() {
    // The spec lets a registry treat `from` as optional (201, mounted) or not (202, a session).
    // Berth does not: a mount without `from` could read any repository without a permission
    // check on it, so it is a plain upload session (202, empty) and the blob stays out of `dst`.
    let reg = Reg::start();
    let data = random_bytes(512, 10);
    let d = reg.push_blob("src", &data).await;
    let r = reg.send(reg.req(Method::POST, &format!("/v2/dst/blobs/uploads/?mount={d}"))).await;
    r.expect(202).expect_header("range", "0-0");
    let loc = reg.url(r.must_header("location"));
    assert!(loc.path().starts_with("/v2/dst/blobs/uploads/"), "{loc}");
    reg.check_no_blob("dst", &d).await;
    reg.expect_session_size(&loc, 0).await;
    // The session works as any other.
    reg.send(reg.req_url(Method::PUT, Reg::with_digest(&loc, &d)).header(CONTENT_TYPE, OCTET).body(data.clone()))
        .await
        .expect(201);
    reg.check_blob("dst", &d, &data).await;
}

#[tokio::test]
async fn upload_cross_repo_mount_invalid_digest_is_400() {
    let reg = Reg::start();
    reg.push_blob("src", b"abc").await;
    let before = reg.snapshot(&["src", "dst"]).await;
    let r = reg.send(reg.req(Method::POST, "/v2/dst/blobs/uploads/?mount=sha256:nothex&from=src")).await;
    r.expect_error(400, "DIGEST_INVALID");
    // The source repository is untouched. (Whether an upload session alone makes `dst` appear
    // in the catalog is not specified, so it is not asserted.)
    let after = reg.snapshot(&["src"]).await;
    assert_eq!(after.lines().nth(1), before.lines().nth(1));
}

/// The conformance "Blob Upload Chunked" flow, step by step.
#[tokio::test]
async fn upload_chunked_in_order_with_retry_status_and_close() {
    let reg = Reg::start();
    let (loc, post) = reg.start_upload_resp("repo").await;
    // Respect OCI-Chunk-Min-Length if advertised.
    let min: usize = post
        .header("oci-chunk-min-length")
        .map(|v| v.parse().expect("OCI-Chunk-Min-Length is an integer"))
        .unwrap_or(0);
    let chunk = min.max(1024);
    let data = random_bytes(chunk * 2 + 100, 11);
    let d = sha256(&data);
    let (c1, rest) = data.split_at(chunk);
    let (c2, c3) = rest.split_at(chunk);

    // First chunk: 202, Location, Range 0-<end>.
    let r1 = reg.patch_chunk(&loc, 0, c1).await;
    r1.expect(202).expect_header("range", &format!("0-{}", chunk - 1));
    let loc1 = reg.url(r1.must_header("location"));

    // Retrying the same chunk (stale location): 416 with the current Range.
    let retry = reg.patch_chunk(&loc, 0, c1).await;
    retry.expect(416).expect_header("range", &format!("0-{}", chunk - 1));

    // Status: 204, Location, Range 0-<end>.
    let st = reg.send(reg.req_url(Method::GET, loc.clone())).await;
    st.expect(204).expect_header("range", &format!("0-{}", chunk - 1)).expect_empty_body();
    let loc_st = reg.url(st.must_header("location"));
    assert_eq!(loc_st.path(), loc1.path());

    // A chunk that overlaps what was uploaded: 416.
    reg.patch_chunk(&loc_st, chunk - 10, &data[chunk - 10..chunk + 10])
        .await
        .expect(416)
        .expect_header("range", &format!("0-{}", chunk - 1));

    // Second chunk at the location returned by the status request.
    let r2 = reg.patch_chunk(&loc_st, chunk, c2).await;
    r2.expect(202).expect_header("range", &format!("0-{}", 2 * chunk - 1));
    let loc2 = reg.url(r2.must_header("location"));
    assert!(loc2.path().starts_with("/v2/repo/blobs/uploads/"));

    // Third (last) chunk via PATCH too.
    let r3 = reg.patch_chunk(&loc2, 2 * chunk, c3).await;
    r3.expect(202).expect_header("range", &format!("0-{}", data.len() - 1));
    let loc3 = reg.url(r3.must_header("location"));

    // Nothing is visible before the session is closed.
    reg.check_no_blob("repo", &d).await;

    // Close with the digest of the whole blob and no body.
    let done = reg.put_close(&loc3, &d).await;
    done.expect(201).expect_header("docker-content-digest", &d);
    let blob_loc = reg.url(done.must_header("location"));
    assert_eq!(blob_loc.path(), format!("/v2/repo/blobs/{d}"));
    reg.send(reg.req_url(Method::GET, blob_loc)).await.expect(200).expect_body(&data);
    reg.check_blob("repo", &d, &data).await;
}

/// Conformance "chunked multi and put chunk": the final chunk travels in the closing PUT.
#[tokio::test]
async fn upload_chunked_with_final_chunk_in_put() {
    let reg = Reg::start();
    let data = random_bytes(3 * 1024 - 5, 12);
    let d = sha256(&data);
    let loc = reg.start_upload("repo").await;
    let r1 = reg.patch_chunk(&loc, 0, &data[..1024]).await;
    r1.expect(202).expect_header("range", "0-1023");
    let loc = reg.url(r1.must_header("location"));
    let r2 = reg.patch_chunk(&loc, 1024, &data[1024..2048]).await;
    r2.expect(202).expect_header("range", "0-2047");
    let loc = reg.url(r2.must_header("location"));
    let last = &data[2048..];
    let done = reg
        .send(
            reg.req_url(Method::PUT, Reg::with_digest(&loc, &d))
                .header(CONTENT_TYPE, OCTET)
                .header(CONTENT_RANGE, format!("2048-{}", data.len() - 1))
                .header(CONTENT_LENGTH, last.len().to_string())
                .body(last.to_vec()),
        )
        .await;
    done.expect(201).expect_header("docker-content-digest", &d);
    assert_eq!(reg.url(done.must_header("location")).path(), format!("/v2/repo/blobs/{d}"));
    reg.check_blob("repo", &d, &data).await;
}

/// Conformance "chunked single": one PATCH chunk carrying the whole blob.
#[tokio::test]
async fn upload_chunked_single_chunk() {
    let reg = Reg::start();
    let data = random_bytes(512, 13);
    let d = sha256(&data);
    let loc = reg.start_upload("repo").await;
    let r = reg.patch_chunk(&loc, 0, &data).await;
    r.expect(202).expect_header("range", "0-511");
    let loc = reg.url(r.must_header("location"));
    reg.put_close(&loc, &d).await.expect(201);
    reg.check_blob("repo", &d, &data).await;
}

/// Conformance "chunked out-of-order" (and "... and put chunk"): before every chunk an
/// out-of-order one is sent (416), the status is recovered with GET (204 + Range), then the
/// right chunk goes through.
async fn chunked_out_of_order(put_last_chunk: bool, seed: u64) {
    let reg = Reg::start();
    let chunk = 1024usize;
    let data = random_bytes(chunk * 3 - 5, seed);
    let d = sha256(&data);
    let mut loc = reg.start_upload("repo").await;
    let mut last_byte: i64 = -1;
    while last_byte < data.len() as i64 - 1 {
        // Out-of-order chunk: skip ahead one chunk, or back to the beginning.
        let mut bad_start = (last_byte + 1) as usize + chunk;
        if bad_start >= data.len() {
            bad_start = 0;
        }
        let bad_end = (bad_start + chunk - 1).min(data.len() - 1);
        let bad_is_last = bad_end == data.len() - 1;
        let bad = if put_last_chunk && bad_is_last {
            reg.send(
                reg.req_url(Method::PUT, Reg::with_digest(&loc, &d))
                    .header(CONTENT_TYPE, OCTET)
                    .header(CONTENT_RANGE, format!("{bad_start}-{bad_end}"))
                    .header(CONTENT_LENGTH, (bad_end - bad_start + 1).to_string())
                    .body(data[bad_start..=bad_end].to_vec()),
            )
            .await
        } else {
            reg.patch_chunk(&loc, bad_start, &data[bad_start..=bad_end]).await
        };
        bad.expect(416);
        // 416 carries the current Range.
        let end = bad.upload_range_end();
        assert_eq!(end, last_byte.max(0), "{}: Range after 416", bad.what);
        // Recover with GET: 204, Location, Range 0-<last byte>.
        let st = reg.send(reg.req_url(Method::GET, loc.clone())).await;
        st.expect(204);
        let end = st.upload_range_end();
        assert_eq!(end, last_byte.max(0), "{}: Range after recovery", st.what);
        loc = reg.url(st.must_header("location"));
        // `0-0` is also the answer for one byte: the session size is checked directly.
        reg.expect_session_size(&loc, (last_byte + 1) as usize).await;

        // The correct chunk.
        let start = (last_byte + 1) as usize;
        let end = (start + chunk - 1).min(data.len() - 1);
        let is_last = end == data.len() - 1;
        if put_last_chunk && is_last {
            let r = reg
                .send(
                    reg.req_url(Method::PUT, Reg::with_digest(&loc, &d))
                        .header(CONTENT_TYPE, OCTET)
                        .header(CONTENT_RANGE, format!("{start}-{end}"))
                        .header(CONTENT_LENGTH, (end - start + 1).to_string())
                        .body(data[start..=end].to_vec()),
                )
                .await;
            r.expect(201).expect_header("docker-content-digest", &d);
            loc = reg.url(r.must_header("location"));
        } else {
            let r = reg.patch_chunk(&loc, start, &data[start..=end]).await;
            r.expect(202).expect_header("range", &format!("0-{end}"));
            loc = reg.url(r.must_header("location"));
        }
        last_byte = end as i64;
    }
    if !put_last_chunk {
        let r = reg.put_close(&loc, &d).await;
        r.expect(201).expect_header("docker-content-digest", &d);
        loc = reg.url(r.must_header("location"));
    }
    assert_eq!(loc.path(), format!("/v2/repo/blobs/{d}"));
    reg.check_blob("repo", &d, &data).await;
}

#[tokio::test]
async fn upload_chunked_out_of_order_chunks_get_416() {
    chunked_out_of_order(false, 14).await;
}

#[tokio::test]
async fn upload_chunked_out_of_order_final_put_chunk_gets_416() {
    chunked_out_of_order(true, 15).await;
}

#[tokio::test]
async fn upload_first_chunk_not_starting_at_zero_is_416() {
    let reg = Reg::start();
    let data = random_bytes(100, 16);
    let loc = reg.start_upload("repo").await;
    let r = reg.patch_chunk(&loc, 10, &data[10..]).await;
    r.expect_error(416, "BLOB_UPLOAD_INVALID").expect_header("range", "0-0");
    reg.expect_session_size(&loc, 0).await;
    // The session is intact: the proper first chunk is accepted.
    let r = reg.patch_chunk(&loc, 0, &data).await;
    r.expect(202).expect_header("range", "0-99");
}

/// Conformance "Blob Upload Streamed": PATCH without Content-Range (chunked transfer encoding,
/// as Go sends it), then PUT ?digest= without a body.
#[tokio::test]
async fn upload_streamed_patch_without_content_range() {
    let reg = Reg::start();
    let data = random_bytes(10_000, 17);
    let d = sha256(&data);
    let loc = reg.start_upload("repo").await;
    let parts: Vec<Result<Bytes, std::io::Error>> = data.chunks(3000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let r = reg
        .send(
            reg.req_url(Method::PATCH, loc.clone())
                .header(CONTENT_TYPE, OCTET)
                .body(reqwest::Body::wrap_stream(futures::stream::iter(parts))),
        )
        .await;
    r.expect(202).expect_header("range", &format!("0-{}", data.len() - 1));
    let loc = reg.url(r.must_header("location"));
    let done = reg.put_close(&loc, &d).await;
    done.expect(201).expect_header("docker-content-digest", &d);
    let blob_loc = reg.url(done.must_header("location"));
    reg.send(reg.req_url(Method::GET, blob_loc)).await.expect(200).expect_body(&data);
    reg.check_blob("repo", &d, &data).await;
}

/// Streamed PATCHes (with Content-Length, no Content-Range) append to the session.
#[tokio::test]
async fn upload_streamed_patches_append() {
    let reg = Reg::start();
    let data = random_bytes(5000, 18);
    let d = sha256(&data);
    let mut loc = reg.start_upload("repo").await;
    let mut total = 0;
    for part in data.chunks(1700) {
        let r = reg.send(reg.req_url(Method::PATCH, loc.clone()).header(CONTENT_TYPE, OCTET).body(part.to_vec())).await;
        total += part.len();
        r.expect(202).expect_header("range", &format!("0-{}", total - 1));
        loc = reg.url(r.must_header("location"));
        let st = reg.send(reg.req_url(Method::GET, loc.clone())).await;
        st.expect(204).expect_header("range", &format!("0-{}", total - 1));
    }
    reg.put_close(&loc, &d).await.expect(201);
    reg.check_blob("repo", &d, &data).await;
}

/// POST then a PUT carrying the whole body streamed (no Content-Length).
#[tokio::test]
async fn upload_put_with_streamed_body() {
    let reg = Reg::start();
    let data = random_bytes(70_000, 19);
    let d = sha256(&data);
    let loc = reg.start_upload("repo").await;
    let parts: Vec<Result<Bytes, std::io::Error>> = data.chunks(8192).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    reg.send(
        reg.req_url(Method::PUT, Reg::with_digest(&loc, &d))
            .header(CONTENT_TYPE, OCTET)
            .body(reqwest::Body::wrap_stream(futures::stream::iter(parts))),
    )
    .await
    .expect(201)
    .expect_header("docker-content-digest", &d);
    reg.check_blob("repo", &d, &data).await;
}

#[tokio::test]
async fn upload_cancel_then_every_use_is_404() {
    let reg = Reg::start();
    let data = random_bytes(600, 20);
    let d = sha256(&data);
    let loc = reg.start_upload("repo").await;
    reg.patch_chunk(&loc, 0, &data[..300]).await.expect(202);
    let r = reg.send(reg.req_url(Method::DELETE, loc.clone()).header(CONTENT_LENGTH, "0")).await;
    r.expect(204);
    reg.send(reg.req_url(Method::GET, loc.clone())).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.patch_chunk(&loc, 300, &data[300..]).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.send(reg.req_url(Method::PUT, Reg::with_digest(&loc, &d)).header(CONTENT_TYPE, OCTET).body(data.clone()))
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.send(reg.req_url(Method::DELETE, loc.clone())).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.check_no_blob("repo", &d).await;
}

#[tokio::test]
async fn upload_unknown_session_is_404_blob_upload_unknown() {
    let reg = Reg::start();
    reg.push_blob("repo", b"exists").await;
    let d = sha256(b"data");
    for id in ["2b0c6f3e-5a5e-4d4a-9f43-3b1f8f0e6f11", "not-a-session", "x"] {
        let path = format!("/v2/repo/blobs/uploads/{id}");
        reg.get(&path).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
        reg.send(reg.req(Method::PATCH, &path).header(CONTENT_TYPE, OCTET).body(b"data".to_vec()))
            .await
            .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
        reg.send(
            reg.req(Method::PUT, &format!("{path}?digest={d}")).header(CONTENT_TYPE, OCTET).body(b"data".to_vec()),
        )
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
        reg.delete(&path).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    }
    reg.check_no_blob("repo", &d).await;
    // A session belongs to the repository it was opened in.
    let loc = reg.start_upload("repo").await;
    let id = loc.path().rsplit('/').next().unwrap().to_string();
    reg.push_blob("other", b"x").await;
    reg.get(&format!("/v2/other/blobs/uploads/{id}")).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.send(reg.req_url(Method::GET, loc)).await.expect(204);
}

/// Conformance "bad digest ..." variants: the digest does not match the content. 400
/// DIGEST_INVALID and neither digest is stored.
#[tokio::test]
async fn upload_digest_mismatch_is_400_and_stores_nothing() {
    let reg = Reg::start();
    reg.push_blob("repo", b"keep").await;
    let before = reg.snapshot(&["repo"]).await;
    let good = random_bytes(3 * 1024 - 5, 21);
    let claimed = sha256(&good);
    let mut sent = good.clone();
    sent.extend_from_slice(b"oh no");
    let actual = sha256(&sent);

    // post only
    let r = reg
        .send(
            reg.req(Method::POST, &format!("/v2/repo/blobs/uploads/?digest={claimed}"))
                .header(CONTENT_TYPE, OCTET)
                .body(sent.clone()),
        )
        .await;
    r.expect_error(400, "DIGEST_INVALID");

    // post + put
    reg.post_put("repo", &sent, &claimed).await.expect_error(400, "DIGEST_INVALID");

    // chunked, closing PUT without body
    let loc = reg.start_upload("repo").await;
    let r1 = reg.patch_chunk(&loc, 0, &sent[..2000]).await;
    r1.expect(202);
    let loc = reg.url(r1.must_header("location"));
    let r2 = reg.patch_chunk(&loc, 2000, &sent[2000..]).await;
    r2.expect(202);
    let loc = reg.url(r2.must_header("location"));
    reg.put_close(&loc, &claimed).await.expect_error(400, "DIGEST_INVALID");

    // chunked, final chunk in the PUT
    let loc = reg.start_upload("repo").await;
    let r1 = reg.patch_chunk(&loc, 0, &sent[..2000]).await;
    r1.expect(202);
    let loc = reg.url(r1.must_header("location"));
    reg.send(
        reg.req_url(Method::PUT, Reg::with_digest(&loc, &claimed))
            .header(CONTENT_TYPE, OCTET)
            .header(CONTENT_RANGE, format!("2000-{}", sent.len() - 1))
            .header(CONTENT_LENGTH, (sent.len() - 2000).to_string())
            .body(sent[2000..].to_vec()),
    )
    .await
    .expect_error(400, "DIGEST_INVALID");

    // stream
    let loc = reg.start_upload("repo").await;
    let r = reg.send(reg.req_url(Method::PATCH, loc).header(CONTENT_TYPE, OCTET).body(sent.clone())).await;
    r.expect(202);
    let loc = reg.url(r.must_header("location"));
    reg.put_close(&loc, &claimed).await.expect_error(400, "DIGEST_INVALID");

    // sha512 claimed, different content
    reg.post_put("repo", &sent, &sha512(&good)).await.expect_error(400, "DIGEST_INVALID");

    reg.check_no_blob("repo", &claimed).await;
    reg.check_no_blob("repo", &actual).await;
    reg.check_no_blob("repo", &sha512(&good)).await;
    reg.check_no_blob("repo", &sha512(&sent)).await;
    assert_eq!(reg.snapshot(&["repo"]).await, before);
}

#[tokio::test]
async fn upload_put_without_or_with_malformed_digest_is_400() {
    let reg = Reg::start();
    reg.push_blob("repo", b"keep").await;
    let before = reg.snapshot(&["repo"]).await;
    let data = b"some data".to_vec();
    // No digest parameter at all.
    let loc = reg.start_upload("repo").await;
    reg.send(reg.req_url(Method::PUT, loc.clone()).header(CONTENT_TYPE, OCTET).body(data.clone()))
        .await
        .expect_error(400, "DIGEST_INVALID");
    // Malformed or unsupported digests.
    for bad in [
        "garbage".to_string(),
        "sha256:short".to_string(),
        format!("sha256:{}", "Z".repeat(64)),
        format!("md5:{}", "a".repeat(32)),
        String::new(),
    ] {
        let loc = reg.start_upload("repo").await;
        reg.send(reg.req_url(Method::PUT, Reg::with_digest(&loc, &bad)).header(CONTENT_TYPE, OCTET).body(data.clone()))
            .await
            .expect_error(400, "DIGEST_INVALID");
        // Single POST with a malformed digest.
        reg.send(
            reg.req(Method::POST, &format!("/v2/repo/blobs/uploads/?digest={}", urlencode(&bad)))
                .header(CONTENT_TYPE, OCTET)
                .body(data.clone()),
        )
        .await
        .expect_error(400, "DIGEST_INVALID");
    }
    reg.check_no_blob("repo", &sha256(&data)).await;
    assert_eq!(reg.snapshot(&["repo"]).await, before);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn upload_size_mismatch_between_content_range_and_body_is_rejected() {
    let reg = Reg::start();
    let data = random_bytes(100, 22);
    let loc = reg.start_upload("repo").await;
    // Content-Range announces 50 bytes, the body has 100.
    let r = reg
        .send(
            reg.req_url(Method::PATCH, loc.clone())
                .header(CONTENT_TYPE, OCTET)
                .header(CONTENT_RANGE, "0-49")
                .body(data.clone()),
        )
        .await;
    r.expect_error(416, "BLOB_UPLOAD_INVALID");
    // The session took nothing, not even part of the chunk.
    reg.expect_session_size(&loc, 0).await;
    reg.patch_chunk(&loc, 0, &data).await.expect(202).expect_header("range", "0-99");
}

/// Content-Range numbers are checked, never computed with: ranges whose length overflows, that
/// reach past the largest upload, or that end before they start get `416 BLOB_UPLOAD_INVALID`
/// (the answer for a chunk that does not fit the upload), on PATCH and on the closing PUT, and
/// leave the session intact.
#[tokio::test]
async fn upload_overflowing_and_reversed_content_ranges_are_416() {
    let reg = Reg::start();
    let data = random_bytes(100, 24);
    let d = sha256(&data);
    let loc = reg.start_upload("repo").await;
    reg.patch_chunk(&loc, 0, &data[..40]).await.expect(202).expect_header("range", "0-39");
    let cases = [
        "0-18446744073709551615",
        "40-18446744073709551615",
        "18446744073709551615-18446744073709551615",
        "40-9223372036854775807",
        "0-18446744073709551616",
        "40-39",
        "59-40",
    ];
    for range in cases {
        for method in [Method::PATCH, Method::PUT] {
            let url = if method == Method::PUT { Reg::with_digest(&loc, &d) } else { loc.clone() };
            let r = reg
                .send(
                    reg.req_url(method.clone(), url)
                        .header(CONTENT_TYPE, OCTET)
                        .header(CONTENT_RANGE, range)
                        .header(CONTENT_LENGTH, "20")
                        .body(data[40..60].to_vec()),
                )
                .await;
            r.expect_error(416, "BLOB_UPLOAD_INVALID");
        }
    }
    // Nothing was taken: the session continues where it was.
    let st = reg.send(reg.req_url(Method::GET, loc.clone())).await;
    st.expect(204).expect_header("range", "0-39");
    let r = reg.patch_chunk(&loc, 40, &data[40..]).await;
    r.expect(202).expect_header("range", "0-99");
    let loc = reg.url(r.must_header("location"));
    reg.put_close(&loc, &d).await.expect(201).expect_header("docker-content-digest", &d);
    reg.check_blob("repo", &d, &data).await;
}

#[tokio::test]
async fn upload_sha512_digests() {
    let reg = Reg::start();
    // POST + PUT.
    let data = random_bytes(2000, 23);
    let d = sha512(&data);
    let r = reg.post_put("repo", &data, &d).await;
    r.expect(201).expect_header("docker-content-digest", &d);
    assert_eq!(reg.url(r.must_header("location")).path(), format!("/v2/repo/blobs/{d}"));
    reg.check_blob("repo", &d, &data).await;
    // Single POST.
    let data2 = random_bytes(1000, 24);
    let d2 = sha512(&data2);
    reg.send(
        reg.req(Method::POST, &format!("/v2/repo/blobs/uploads/?digest={d2}"))
            .header(CONTENT_TYPE, OCTET)
            .body(data2.clone()),
    )
    .await
    .expect(201)
    .expect_header("docker-content-digest", &d2);
    reg.check_blob("repo", &d2, &data2).await;
    // Chunked, announcing the algorithm with ?digest-algorithm= (end-4c).
    let data3 = random_bytes(3000, 25);
    let d3 = sha512(&data3);
    let r = reg
        .send(reg.req(Method::POST, "/v2/repo/blobs/uploads/?digest-algorithm=sha512").header(CONTENT_LENGTH, "0"))
        .await;
    r.expect(202);
    let loc = reg.url(r.must_header("location"));
    let r = reg.patch_chunk(&loc, 0, &data3[..1500]).await;
    r.expect(202).expect_header("range", "0-1499");
    let loc = reg.url(r.must_header("location"));
    let r = reg.patch_chunk(&loc, 1500, &data3[1500..]).await;
    r.expect(202).expect_header("range", "0-2999");
    let loc = reg.url(r.must_header("location"));
    reg.put_close(&loc, &d3).await.expect(201).expect_header("docker-content-digest", &d3);
    reg.check_blob("repo", &d3, &data3).await;
    // The same bytes under sha256 are a different digest, not stored yet.
    reg.check_no_blob("repo", &sha256(&data3)).await;
    // Range requests and delete work for sha512 blobs.
    reg.send(reg.req(Method::GET, &format!("/v2/repo/blobs/{d}")).header(RANGE, "bytes=10-19"))
        .await
        .expect(206)
        .expect_header("content-range", "bytes 10-19/2000")
        .expect_body(&data[10..20]);
    reg.delete(&format!("/v2/repo/blobs/{d}")).await.expect(202);
    reg.check_no_blob("repo", &d).await;
    // Mount of a sha512 blob.
    let r = reg.send(reg.req(Method::POST, &format!("/v2/other/blobs/uploads/?mount={d2}&from=repo"))).await;
    r.expect(201).expect_header("docker-content-digest", &d2);
    reg.check_blob("other", &d2, &data2).await;
}

// =============================================================================================
// Manifests: push (end-7a/7b), pull (end-3), delete (end-9)
// =============================================================================================

/// Conformance pull/push setup: an OCI image whose config descriptor carries the `data`
/// field and a field unknown to the image-spec (registries must store and serve it as is).
#[tokio::test]
async fn manifest_put_oci_image_by_tag_then_pull_by_tag_and_digest() {
    let reg = Reg::start();
    let config = config_bytes(100);
    reg.push_blob("repo", &config).await;
    let layer = random_bytes(333, 101);
    reg.push_blob("repo", &layer).await;
    let b64 = |b: &[u8]| {
        // minimal base64 (standard alphabet, padded)
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in b.chunks(3) {
            let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                if i <= c.len() {
                    s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    };
    let manifest = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": sha256(&config),
            "size": config.len(),
            "data": b64(&config),
            "newUnspecifiedField": b64(b"hello world"),
        },
        "layers": [desc(OCI_LAYER_GZ, &layer)],
    }));
    let d = sha256(&manifest);
    let r = reg.put_manifest("repo", "tagtest0", OCI_MANIFEST, &manifest).await;
    r.expect(201).expect_header("docker-content-digest", &d);
    // Location is a pullable manifest URL.
    let loc = reg.url(r.must_header("location"));
    assert!(loc.path().starts_with("/v2/repo/manifests/"), "Location {loc}");
    reg.send(reg.req_url(Method::GET, loc).header(ACCEPT, ACCEPT_ALL))
        .await
        .expect(200)
        .expect_header("content-type", OCI_MANIFEST)
        .expect_header("content-length", &manifest.len().to_string())
        .expect_body(&manifest);
    reg.check_manifest("repo", "tagtest0", &manifest, OCI_MANIFEST, &d).await;
    reg.check_manifest("repo", &d, &manifest, OCI_MANIFEST, &d).await;
    // Without an Accept header, by digest.
    reg.get(&format!("/v2/repo/manifests/{d}"))
        .await
        .expect(200)
        .expect_header("content-type", OCI_MANIFEST)
        .expect_body(&manifest);
    // Conformance push: the same manifest accepted under several tags.
    for i in 0..4 {
        let t = format!("test{i}");
        let r = reg.put_manifest("repo", &t, OCI_MANIFEST, &manifest).await;
        r.expect(201).expect_header("docker-content-digest", &d);
        assert!(!r.must_header("location").is_empty());
        reg.check_manifest("repo", &t, &manifest, OCI_MANIFEST, &d).await;
    }
    assert_eq!(reg.tags("repo").await, vec!["tagtest0", "test0", "test1", "test2", "test3"]);
    // Re-pushing an identical manifest under the same tag is fine.
    reg.push_manifest("repo", "tagtest0", OCI_MANIFEST, &manifest).await;
}

#[tokio::test]
async fn manifest_put_oci_index_and_nested_index() {
    let reg = Reg::start();
    let mut children = Vec::new();
    for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
        let img = reg.image("repo", 200 + i as u64, 1).await;
        reg.push_manifest("repo", &img.digest, OCI_MANIFEST, &img.manifest).await;
        let mut dsc = desc(OCI_MANIFEST, &img.manifest);
        dsc["platform"] = json!({"architecture": arch, "os": "linux"});
        children.push((dsc, img));
    }
    let index = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(),
        "annotations": {"org.example.kind": "multi-platform"},
    }));
    let d = reg.push_manifest("repo", "index", OCI_INDEX, &index).await;
    reg.check_manifest("repo", "index", &index, OCI_INDEX, &d).await;
    reg.check_manifest("repo", &d, &index, OCI_INDEX, &d).await;
    for (_, img) in &children {
        reg.check_manifest("repo", &img.digest, &img.manifest, OCI_MANIFEST, &img.digest).await;
    }
    // An index of indexes.
    let other = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [children[0].0.clone()],
    }));
    let d_other = reg.push_manifest("repo", &sha256(&other), OCI_INDEX, &other).await;
    let top = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [desc(OCI_INDEX, &index), desc(OCI_INDEX, &other)],
    }));
    let d_top = reg.push_manifest("repo", "index-of-index", OCI_INDEX, &top).await;
    reg.check_manifest("repo", "index-of-index", &top, OCI_INDEX, &d_top).await;
    reg.check_manifest("repo", &d_other, &other, OCI_INDEX, &d_other).await;
    // An empty index.
    let empty = pretty(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}));
    let d_empty = reg.push_manifest("repo", "empty-index", OCI_INDEX, &empty).await;
    reg.check_manifest("repo", "empty-index", &empty, OCI_INDEX, &d_empty).await;
}

#[tokio::test]
async fn manifest_put_docker_v2s2_and_manifest_list() {
    let reg = Reg::start();
    let mut entries = Vec::new();
    for (i, arch) in ["amd64", "arm64", "s390x"].iter().enumerate() {
        let config = config_bytes(300 + i as u64);
        reg.push_blob("docker/img", &config).await;
        let layer = random_bytes(400, 301 + i as u64);
        reg.push_blob("docker/img", &layer).await;
        let m = pretty(&json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": desc(DOCKER_CONFIG, &config),
            "layers": [desc(DOCKER_LAYER, &layer)],
        }));
        let tag = format!("v2s2-{arch}");
        let d = reg.push_manifest("docker/img", &tag, DOCKER_MANIFEST, &m).await;
        reg.check_manifest("docker/img", &tag, &m, DOCKER_MANIFEST, &d).await;
        reg.check_manifest("docker/img", &d, &m, DOCKER_MANIFEST, &d).await;
        let mut e = desc(DOCKER_MANIFEST, &m);
        e["platform"] = json!({"architecture": arch, "os": "linux"});
        entries.push(e);
    }
    let list = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": entries,
    }));
    let d = reg.push_manifest("docker/img", "list", DOCKER_LIST, &list).await;
    reg.check_manifest("docker/img", "list", &list, DOCKER_LIST, &d).await;
    reg.check_manifest("docker/img", &d, &list, DOCKER_LIST, &d).await;
    // Pulled with exactly the Accept header docker sends for a list.
    reg.send(
        reg.req(Method::GET, "/v2/docker/img/manifests/list")
            .header(ACCEPT, format!("{DOCKER_LIST}, {DOCKER_MANIFEST}")),
    )
    .await
    .expect(200)
    .expect_header("content-type", DOCKER_LIST)
    .expect_body(&list);
}

/// Conformance push: "Registry should accept a manifest upload with no layers"; that manifest
/// also has no `mediaType` field, so the pushed Content-Type is what is served back.
#[tokio::test]
async fn manifest_without_media_type_field_and_without_layers() {
    let reg = Reg::start();
    let config = config_bytes(400);
    reg.push_blob("repo", &config).await;
    let m = pretty(&json!({
        "schemaVersion": 2,
        "config": desc(OCI_CONFIG, &config),
        "layers": [],
    }));
    let d = reg.push_manifest("repo", "emptylayer", OCI_MANIFEST, &m).await;
    reg.check_manifest("repo", "emptylayer", &m, OCI_MANIFEST, &d).await;
    // Index without mediaType field, pushed with the index Content-Type.
    let idx = pretty(&json!({"schemaVersion": 2, "manifests": [desc(OCI_MANIFEST, &m)]}));
    let di = reg.push_manifest("repo", "bare-index", OCI_INDEX, &idx).await;
    reg.check_manifest("repo", "bare-index", &idx, OCI_INDEX, &di).await;
}

/// "The registry MUST store the manifest in the exact byte representation provided by the
/// client"; the digest is computed over those bytes.
#[tokio::test]
async fn manifest_bytes_are_served_exactly_as_pushed() {
    let reg = Reg::start();
    let config = config_bytes(500);
    let cd = reg.push_blob("repo", &config).await;
    let layer = random_bytes(100, 501);
    let ld = reg.push_blob("repo", &layer).await;
    // Odd whitespace (tabs, CRLF, spaces before colons), unusual key order, escaped and raw
    // non-ASCII, escaped slashes, a trailing newline.
    let weird = format!(
        "  {{\r\n\t\"layers\" :[ {{ \"size\":{} ,\"digest\" : \"{ld}\",\n\"mediaType\":\"{OCI_LAYER_GZ}\"}}\t]   ,\n\n\
         \"annotations\":{{\"z\":\"\\u00e9t\\u00e9 \\/ snow \\u2603\",\"a\":\"caf\u{e9} \u{2603}\"}},\
         \"config\":{{\"digest\":\"{cd}\",\"size\":{},\"mediaType\":\"{OCI_CONFIG}\"}},\
         \"mediaType\" : \"{OCI_MANIFEST}\" , \"schemaVersion\":2 }}\n\n",
        layer.len(),
        config.len()
    )
    .into_bytes();
    let d = sha256(&weird);
    let r = reg.put_manifest("repo", "weird", OCI_MANIFEST, &weird).await;
    r.expect(201).expect_header("docker-content-digest", &d);
    reg.check_manifest("repo", "weird", &weird, OCI_MANIFEST, &d).await;
    reg.check_manifest("repo", &d, &weird, OCI_MANIFEST, &d).await;
    // The same document compacted is a different manifest with a different digest.
    let v: Value = serde_json::from_slice(&weird).unwrap();
    let compact = serde_json::to_vec(&v).unwrap();
    assert_ne!(compact, weird);
    let dc = reg.push_manifest("repo", "compact", OCI_MANIFEST, &compact).await;
    assert_ne!(dc, d);
    reg.check_manifest("repo", &dc, &compact, OCI_MANIFEST, &dc).await;
    reg.check_manifest("repo", &d, &weird, OCI_MANIFEST, &d).await;
    // Pushed by digest as well.
    let by_digest = {
        let mut b = weird.clone();
        b.extend_from_slice(b"\t \r\n");
        b
    };
    let dd = sha256(&by_digest);
    reg.push_manifest("repo", &dd, OCI_MANIFEST, &by_digest).await;
    reg.check_manifest("repo", &dd, &by_digest, OCI_MANIFEST, &dd).await;
}

#[tokio::test]
async fn manifest_put_by_digest() {
    let reg = Reg::start();
    let img = reg.image("repo", 600, 2).await;
    let r = reg.put_manifest("repo", &img.digest, OCI_MANIFEST, &img.manifest).await;
    r.expect(201).expect_header("docker-content-digest", &img.digest);
    let loc = reg.url(r.must_header("location"));
    assert_eq!(loc.path(), format!("/v2/repo/manifests/{}", img.digest));
    reg.send(reg.req_url(Method::GET, loc).header(ACCEPT, ACCEPT_ALL)).await.expect(200).expect_body(&img.manifest);
    reg.check_manifest("repo", &img.digest, &img.manifest, OCI_MANIFEST, &img.digest).await;
    // No tag was created.
    assert!(reg.tags("repo").await.is_empty());
}

/// Conformance "bad-digest-image" and "invalid-digest-format": a digest that does not match
/// the body (or is malformed) is 400 DIGEST_INVALID, and nothing is stored.
#[tokio::test]
async fn manifest_put_by_mismatched_or_malformed_digest_is_400() {
    let reg = Reg::start();
    let img = reg.image("repo", 700, 1).await;
    reg.push_manifest("repo", "keep", OCI_MANIFEST, &img.manifest).await;
    let before = reg.snapshot(&["repo"]).await;

    let other = reg.image("repo", 701, 1).await;
    // The body is the manifest plus whitespace; the digest is of the original.
    let mut padded = other.manifest.clone();
    padded.extend_from_slice(b"  ");
    let r = reg.put_manifest("repo", &other.digest, OCI_MANIFEST, &padded).await;
    r.expect_error(400, "DIGEST_INVALID");
    // A different manifest's digest.
    reg.put_manifest("repo", &img.digest, OCI_MANIFEST, &other.manifest).await.expect_error(400, "DIGEST_INVALID");
    // sha512 of something else.
    reg.put_manifest("repo", &sha512(b"nope"), OCI_MANIFEST, &other.manifest).await.expect_error(400, "DIGEST_INVALID");
    // Malformed digest.
    reg.put_manifest("repo", "sha256:baddigeststring", OCI_MANIFEST, &other.manifest)
        .await
        .expect_error(400, "DIGEST_INVALID");
    // Pulling the malformed digest: the conformance suite accepts 400 or 404; Berth says the
    // reference is not a valid digest (400 DIGEST_INVALID).
    let g =
        reg.send(reg.req(Method::GET, "/v2/repo/manifests/sha256:baddigeststring").header(ACCEPT, ACCEPT_ALL)).await;
    g.expect_error(400, "DIGEST_INVALID");

    reg.check_no_manifest("repo", &other.digest).await;
    reg.check_no_manifest("repo", &sha256(&padded)).await;
    reg.check_manifest("repo", &img.digest, &img.manifest, OCI_MANIFEST, &img.digest).await;
    assert_eq!(reg.snapshot(&["repo"]).await, before);
}

/// end-7b: `PUT /v2/<name>/manifests/<digest>?tag=a&tag=b` creates every tag and answers with
/// `OCI-Tag` header(s) listing them.
#[tokio::test]
async fn manifest_put_by_digest_with_tag_parameters() {
    let reg = Reg::start();
    let img = reg.image("repo", 800, 1).await;
    let tags = ["1.2.3", "1.2", "1", "latest"];
    let q: Vec<String> = tags.iter().map(|t| format!("tag={t}")).collect();
    let r = reg
        .send(
            reg.req(Method::PUT, &format!("/v2/repo/manifests/{}?{}", img.digest, q.join("&")))
                .header(CONTENT_TYPE, OCI_MANIFEST)
                .body(img.manifest.clone()),
        )
        .await;
    r.expect(201).expect_header("docker-content-digest", &img.digest);
    for t in tags {
        reg.check_manifest("repo", t, &img.manifest, OCI_MANIFEST, &img.digest).await;
    }
    let mut expected: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    expected.sort();
    let mut listed = reg.tags("repo").await;
    listed.sort();
    assert_eq!(listed, expected);
    // Spec: MUST include an OCI-Tag response header for each accepted tag.
    let announced: Vec<String> = r
        .header_values("oci-tag")
        .iter()
        .flat_map(|v| v.split(',').map(|s| s.trim().to_string()).collect::<Vec<_>>())
        .collect();
    for t in tags {
        assert!(announced.iter().any(|a| a == t), "{}: OCI-Tag headers {announced:?} do not list tag {t:?}", r.what);
    }
}

#[tokio::test]
async fn manifest_put_by_digest_with_invalid_tag_parameter_changes_nothing() {
    let reg = Reg::start();
    let img = reg.image("repo", 810, 1).await;
    reg.push_manifest("repo", "keep", OCI_MANIFEST, &img.manifest).await;
    let other = reg.image("repo", 811, 1).await;
    let before = reg.snapshot(&["repo"]).await;
    let r = reg
        .send(
            reg.req(Method::PUT, &format!("/v2/repo/manifests/{}?tag=good&tag=-bad", other.digest))
                .header(CONTENT_TYPE, OCI_MANIFEST)
                .body(other.manifest.clone()),
        )
        .await;
    r.expect(400);
    r.error_codes();
    assert_eq!(reg.snapshot(&["repo"]).await, before);
    reg.check_no_manifest("repo", "good").await;
}

/// A manifest whose blobs are not in the repository: MANIFEST_BLOB_UNKNOWN (spec: "When a
/// manifest is rejected for this reason, it MUST result in one or more MANIFEST_BLOB_UNKNOWN
/// errors"; status 400 as in Distribution, 404 tolerated as the endpoint table's failure).
#[tokio::test]
async fn manifest_with_missing_blobs_is_manifest_blob_unknown() {
    let reg = Reg::start();
    let keep = reg.push_image("repo", 900, Some("keep")).await;
    let elsewhere = random_bytes(64, 904);
    reg.push_blob("elsewhere", &elsewhere).await;
    let before = reg.snapshot(&["repo"]).await;
    let config = config_bytes(901);
    let layer = random_bytes(256, 902);
    // Layer missing (config present).
    reg.push_blob("repo", &config).await;
    let before_config = reg.snapshot(&["repo"]).await;
    assert_eq!(before, before_config);
    let m = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, &config),
        "layers": [desc(OCI_LAYER_GZ, &layer)],
    }));
    reg.put_manifest("repo", "missing-layer", OCI_MANIFEST, &m).await.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    reg.put_manifest("repo", &sha256(&m), OCI_MANIFEST, &m).await.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    reg.check_no_manifest("repo", "missing-layer").await;
    reg.check_no_manifest("repo", &sha256(&m)).await;
    // Config missing (layer present).
    reg.push_blob("repo", &layer).await;
    let config2 = config_bytes(903);
    let m2 = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, &config2),
        "layers": [desc(OCI_LAYER_GZ, &layer)],
    }));
    reg.put_manifest("repo", "missing-config", OCI_MANIFEST, &m2).await.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    reg.check_no_manifest("repo", "missing-config").await;
    // A blob that exists only in another repository does not count.
    let m3 = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, &config),
        "layers": [desc(OCI_LAYER_GZ, &elsewhere)],
    }));
    reg.put_manifest("repo", "cross-repo", OCI_MANIFEST, &m3).await.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    reg.check_no_manifest("repo", "cross-repo").await;
    // Docker v2s2 with a missing layer.
    let m4 = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": desc(DOCKER_CONFIG, &config),
        "layers": [desc(DOCKER_LAYER, &random_bytes(10, 905))],
    }));
    reg.put_manifest("repo", "docker-missing", DOCKER_MANIFEST, &m4).await.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(reg.snapshot(&["repo"]).await, before);
    reg.check_manifest("repo", "keep", &keep.manifest, OCI_MANIFEST, &keep.digest).await;
    // Once the layer is pushed the very same manifest is accepted.
    reg.push_blob("repo", &layer).await;
    reg.push_manifest("repo", "missing-layer", OCI_MANIFEST, &m).await;
}

/// An index referencing a child manifest that does not exist: the spec's code for "manifest
/// references a manifest or blob unknown to registry" is MANIFEST_BLOB_UNKNOWN.
#[tokio::test]
async fn manifest_index_with_missing_child_is_rejected() {
    let reg = Reg::start();
    let present = reg.push_image("repo", 1000, None).await;
    reg.push_manifest("repo", "keep", OCI_MANIFEST, &present.manifest).await;
    let before = reg.snapshot(&["repo"]).await;
    let ghost = pretty(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "ghost": true}));
    let index = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [desc(OCI_MANIFEST, &present.manifest), desc(OCI_MANIFEST, &ghost)],
    }));
    let r = reg.put_manifest("repo", "broken-index", OCI_INDEX, &index).await;
    r.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    reg.put_manifest("repo", &sha256(&index), OCI_INDEX, &index).await.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    // Docker manifest list, same rule.
    let list = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [desc(DOCKER_MANIFEST, &ghost)],
    }));
    reg.put_manifest("repo", "broken-list", DOCKER_LIST, &list).await.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    reg.check_no_manifest("repo", "broken-index").await;
    reg.check_no_manifest("repo", &sha256(&index)).await;
    reg.check_no_manifest("repo", "broken-list").await;
    assert_eq!(reg.snapshot(&["repo"]).await, before);
}

/// "A registry MUST initially accept an otherwise valid manifest with a subject field that
/// references a manifest that does not exist in the repository."
#[tokio::test]
async fn manifest_with_missing_subject_is_accepted() {
    let reg = Reg::start();
    reg.push_blob("repo", b"{}").await;
    let layer = random_bytes(50, 1100);
    reg.push_blob("repo", &layer).await;
    let subject = json!({
        "mediaType": OCI_MANIFEST,
        "size": 123,
        "digest": sha256(b"missing content"),
    });
    let m = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": EXAMPLE_TYPE_1,
        "config": desc(OCI_EMPTY, b"{}"),
        "layers": [desc(EXAMPLE_TYPE_1, &layer)],
        "subject": subject,
        "annotations": {"org.opencontainers.conformance": "hello conformance test"},
    }));
    let r = reg.put_manifest("repo", "tagged-artifact", OCI_MANIFEST, &m).await;
    r.expect(201)
        .expect_header("docker-content-digest", &sha256(&m))
        .expect_header("oci-subject", &sha256(b"missing content"));
    reg.check_manifest("repo", "tagged-artifact", &m, OCI_MANIFEST, &sha256(&m)).await;
}

#[tokio::test]
async fn manifest_malformed_is_400_manifest_invalid() {
    let reg = Reg::start();
    let keep = reg.push_image("repo", 1200, Some("keep")).await;
    let config = config_bytes(1201);
    reg.push_blob("repo", &config).await;
    let before = reg.snapshot(&["repo"]).await;
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("not json", OCI_MANIFEST, b"blablabla".to_vec()),
        ("truncated", OCI_MANIFEST, b"{\"schemaVersion\": 2, \"config\": {".to_vec()),
        ("empty body", OCI_MANIFEST, Vec::new()),
        ("array", OCI_MANIFEST, b"[]".to_vec()),
        ("string", OCI_MANIFEST, b"\"manifest\"".to_vec()),
        ("empty object", OCI_MANIFEST, b"{}".to_vec()),
        (
            "schemaVersion 1",
            OCI_MANIFEST,
            pretty(&json!({"schemaVersion": 1, "mediaType": OCI_MANIFEST,
                "config": desc(OCI_CONFIG, &config), "layers": []})),
        ),
        ("no config", OCI_MANIFEST, pretty(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}))),
        (
            "layers not an array",
            OCI_MANIFEST,
            pretty(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": desc(OCI_CONFIG, &config), "layers": "nope"})),
        ),
        (
            "config not an object",
            OCI_MANIFEST,
            pretty(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": "nope", "layers": []})),
        ),
        (
            "size not a number",
            OCI_MANIFEST,
            pretty(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": sha256(&config), "size": "big"},
                "layers": []})),
        ),
        (
            "index manifests not an array",
            OCI_INDEX,
            pretty(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": {}})),
        ),
        (
            "docker manifest without config",
            DOCKER_MANIFEST,
            pretty(&json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "layers": []})),
        ),
        ("trailing garbage", OCI_MANIFEST, {
            let mut b = keep.manifest.clone();
            b.extend_from_slice(b"}garbage");
            b
        }),
    ];
    for (what, mt, body) in &cases {
        let r = reg.put_manifest("repo", "bad", mt, body).await;
        assert_eq!(r.status, 400, "{what}: {}: got {} {:?}", r.what, r.status, r.text());
        let codes = r.error_codes();
        assert!(codes.iter().any(|c| c == "MANIFEST_INVALID"), "{what}: expected MANIFEST_INVALID, got {codes:?}");
        // By digest too.
        let r = reg.put_manifest("repo", &sha256(body), mt, body).await;
        r.expect_error(400, "MANIFEST_INVALID");
        reg.check_no_manifest("repo", &sha256(body)).await;
    }
    // A descriptor with a malformed digest.
    let bad_desc = pretty(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": "sha256:xyz", "size": 3},
        "layers": []}));
    let r = reg.put_manifest("repo", "bad", OCI_MANIFEST, &bad_desc).await;
    r.expect(400);
    let codes = r.error_codes();
    assert!(codes.iter().any(|c| c == "MANIFEST_INVALID" || c == "DIGEST_INVALID"), "{}: {codes:?}", r.what);
    reg.check_no_manifest("repo", "bad").await;
    assert_eq!(reg.snapshot(&["repo"]).await, before);
    reg.check_manifest("repo", "keep", &keep.manifest, OCI_MANIFEST, &keep.digest).await;
}

/// A manifest of exactly `target` bytes referencing `config`.
fn manifest_of_size(config: &[u8], target: usize) -> Vec<u8> {
    let build = |pad: usize| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": desc(OCI_CONFIG, config),
            "layers": [],
            "annotations": {"pad": "x".repeat(pad)},
        }))
        .unwrap()
    };
    let base = build(0).len();
    let m = build(target - base);
    assert_eq!(m.len(), target);
    m
}

/// Spec: registries SHOULD accept manifests of at least 4 megabytes and SHOULD answer 413
/// above their limit (Berth: 4 MiB). Nothing is stored on rejection.
#[tokio::test]
async fn manifest_size_limit() {
    let reg = Reg::start();
    let config = config_bytes(1300);
    reg.push_blob("repo", &config).await;
    // Conformance "large-manifest": 390 annotations of 10000 characters (~3.9 MB).
    let mut ann = serde_json::Map::new();
    for i in 0..390 {
        ann.insert(format!("large-annotation-{i}"), json!("A".repeat(10000)));
    }
    let large = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, &config),
        "layers": [],
        "annotations": ann,
    }));
    assert!(large.len() > 3_900_000 && large.len() < 4 * MIB);
    let d = reg.push_manifest("repo", "large-manifest", OCI_MANIFEST, &large).await;
    reg.check_manifest("repo", "large-manifest", &large, OCI_MANIFEST, &d).await;
    // Exactly 4 MiB is accepted.
    let at_limit = manifest_of_size(&config, 4 * MIB);
    let d4 = reg.push_manifest("repo", "at-limit", OCI_MANIFEST, &at_limit).await;
    reg.check_manifest("repo", &d4, &at_limit, OCI_MANIFEST, &d4).await;

    let before = reg.snapshot(&["repo"]).await;
    // One byte over: 413. Sent raw so the answer is observed whatever the server does with the
    // unread body (see `manifest_oversized_push_gets_a_readable_413` for that part).
    let over = manifest_of_size(&config, 4 * MIB + 1);
    for (reference, mode) in [
        ("too-big".to_string(), RawBody::ExpectContinue),
        (sha256(&over), RawBody::ExpectContinue),
        ("too-big".to_string(), RawBody::Sized),
        (sha256(&over), RawBody::Sized),
    ] {
        let r = reg
            .raw_full("PUT", &format!("/v2/repo/manifests/{reference}"), &[("Content-Type", OCI_MANIFEST)], &over, mode)
            .await;
        assert_eq!(r.status, 413, "{}: expected 413, got {} {:?}", r.what, r.status, String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("docker-distribution-api-version"), Some("registry/2.0"));
        if !r.body.is_empty() {
            let codes = r.error_codes();
            assert!(codes.iter().all(|c| SPEC_ERROR_CODES.contains(&c.as_str())), "{}: {codes:?}", r.what);
        }
    }
    // Well over, streamed without Content-Length (chunked).
    let huge = manifest_of_size(&config, 5 * MIB);
    let r = reg
        .raw_full(
            "PUT",
            "/v2/repo/manifests/too-big-streamed",
            &[("Content-Type", OCI_MANIFEST)],
            &huge,
            RawBody::Chunked,
        )
        .await;
    assert_eq!(r.status, 413, "{}: got {}", r.what, r.status);
    reg.check_no_manifest("repo", "too-big").await;
    reg.check_no_manifest("repo", "too-big-streamed").await;
    reg.check_no_manifest("repo", &sha256(&over)).await;
    reg.check_no_manifest("repo", &sha256(&huge)).await;
    assert_eq!(reg.snapshot(&["repo"]).await, before);
}

/// A client that sends an oversized manifest the ordinary way (whole body, no
/// `Expect: 100-continue`) must be able to read the 413: the server may not reset the
/// connection under the client while it is still writing the body (RFC 9112 §9.6).
#[tokio::test]
async fn manifest_oversized_push_gets_a_readable_413() {
    let reg = Reg::start();
    let config = config_bytes(1310);
    reg.push_blob("repo", &config).await;
    let over = manifest_of_size(&config, 4 * MIB + 1);
    let mut failures = Vec::new();
    for i in 0..8 {
        // A fresh client each time: no connection reuse involved.
        let client = reg.berth.client_builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let url = reg.url(&format!("/v2/repo/manifests/too-big-{i}"));
        match client.put(url.clone()).header(CONTENT_TYPE, OCI_MANIFEST).body(over.clone()).send().await {
            Ok(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {}
            Ok(r) => failures.push(format!("attempt {i}: status {}", r.status())),
            Err(e) => failures.push(format!("attempt {i}: transport error {e:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "PUT of a 4 MiB + 1 manifest: the client did not receive the 413 in {} of 8 attempts: {failures:#?}",
        failures.len()
    );
    // A request on a new connection afterwards works.
    reg.get("/v2/").await.expect(200);
}

#[tokio::test]
async fn manifest_unknown_is_404_manifest_unknown() {
    let reg = Reg::start();
    let img = reg.push_image("repo", 1400, Some("present")).await;
    // Unknown tag, unknown digest (sha256 and sha512).
    reg.check_no_manifest("repo", "missing-tag").await;
    reg.check_no_manifest("repo", &sha256(&random_bytes(1024, 1401))).await;
    reg.check_no_manifest("repo", &sha512(b"nothing")).await;
    // A blob digest is not a manifest.
    reg.check_no_manifest("repo", &sha256(&img.config)).await;
    // Unknown repository: 404.
    for reference in ["latest".to_string(), img.digest.clone()] {
        let path = format!("/v2/nothere/manifests/{reference}");
        reg.head(&path).await.expect(404);
        let r = reg.get(&path).await;
        r.expect(404);
        let codes = r.error_codes();
        assert!(codes.iter().any(|c| c == "MANIFEST_UNKNOWN" || c == "NAME_UNKNOWN"), "{}: {codes:?}", r.what);
    }
    // Conformance (v1.1 01_pull / 02_push): a reference that cannot exist, such as
    // ".INVALID_MANIFEST_NAME", is a nonexistent manifest: 404.
    let path = "/v2/repo/manifests/.INVALID_MANIFEST_NAME";
    reg.send(reg.req(Method::HEAD, path).header(ACCEPT, OCI_MANIFEST)).await.expect(404);
    reg.send(reg.req(Method::GET, path).header(ACCEPT, OCI_MANIFEST)).await.expect(404);
    // Conformance "400 response body should contain OCI-conforming JSON message".
    let r = reg
        .send(
            reg.req(Method::GET, "/v2/repo/manifests/sha256:totallywrong")
                .header(CONTENT_TYPE, OCI_MANIFEST)
                .body("blablabla"),
        )
        .await;
    r.expect_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn manifest_delete_by_digest_removes_manifest_and_its_tags() {
    let reg = Reg::start();
    let a = reg.push_image("repo", 1500, Some("a")).await;
    reg.push_manifest("repo", "a2", OCI_MANIFEST, &a.manifest).await;
    let b = reg.push_image("repo", 1501, Some("b")).await;
    let r = reg.delete(&format!("/v2/repo/manifests/{}", a.digest)).await;
    r.expect(202);
    reg.check_no_manifest("repo", &a.digest).await;
    // "any tag pointing to that digest will return a 404"
    reg.check_no_manifest("repo", "a").await;
    reg.check_no_manifest("repo", "a2").await;
    assert_eq!(reg.tags("repo").await, vec!["b"]);
    // Other manifests are untouched; blobs stay.
    reg.check_manifest("repo", "b", &b.manifest, OCI_MANIFEST, &b.digest).await;
    reg.check_blob("repo", &sha256(&a.config), &a.config).await;
    // Deleting again: 404.
    reg.delete(&format!("/v2/repo/manifests/{}", a.digest)).await.expect_error(404, "MANIFEST_UNKNOWN");
    // It can be pushed again.
    reg.push_manifest("repo", "a", OCI_MANIFEST, &a.manifest).await;
    reg.check_manifest("repo", &a.digest, &a.manifest, OCI_MANIFEST, &a.digest).await;
}

#[tokio::test]
async fn manifest_delete_by_tag_removes_only_the_tag() {
    let reg = Reg::start();
    let img = reg.push_image("repo", 1600, Some("t1")).await;
    reg.push_manifest("repo", "t2", OCI_MANIFEST, &img.manifest).await;
    // Conformance 04: tags before delete.
    let before = reg.tags("repo").await;
    assert_eq!(before, vec!["t1", "t2"]);
    reg.delete("/v2/repo/manifests/t1").await.expect(202);
    reg.check_no_manifest("repo", "t1").await;
    reg.check_manifest("repo", "t2", &img.manifest, OCI_MANIFEST, &img.digest).await;
    reg.check_manifest("repo", &img.digest, &img.manifest, OCI_MANIFEST, &img.digest).await;
    assert_eq!(reg.tags("repo").await, vec!["t2"]);
    // Deleting the tag again / an unknown tag: 404.
    reg.delete("/v2/repo/manifests/t1").await.expect_error(404, "MANIFEST_UNKNOWN");
    reg.delete("/v2/repo/manifests/never").await.expect_error(404, "MANIFEST_UNKNOWN");
    // Deleting the last tag leaves the manifest, and an empty (or absent) tag list.
    reg.delete("/v2/repo/manifests/t2").await.expect(202);
    reg.check_manifest("repo", &img.digest, &img.manifest, OCI_MANIFEST, &img.digest).await;
    let r = reg.get("/v2/repo/tags/list").await;
    r.expect(200);
    assert_eq!(r.json(), json!({"name": "repo", "tags": []}), "{}", r.what);
    // Unknown repository.
    let r = reg.delete("/v2/nothere/manifests/latest").await;
    r.expect(404);
    r.error_codes();
}

#[tokio::test]
async fn manifest_tag_overwrite_moves_the_tag() {
    let reg = Reg::start();
    let a = reg.push_image("repo", 1700, Some("latest")).await;
    let b = reg.push_image("repo", 1701, Some("latest")).await;
    reg.check_manifest("repo", "latest", &b.manifest, OCI_MANIFEST, &b.digest).await;
    // The old manifest is still there by digest.
    reg.check_manifest("repo", &a.digest, &a.manifest, OCI_MANIFEST, &a.digest).await;
    assert_eq!(reg.tags("repo").await, vec!["latest"]);
    // Moving a tag across media types.
    let idx = pretty(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [desc(OCI_MANIFEST, &a.manifest)]}));
    let di = reg.push_manifest("repo", "latest", OCI_INDEX, &idx).await;
    reg.check_manifest("repo", "latest", &idx, OCI_INDEX, &di).await;
}

#[tokio::test]
async fn manifests_are_scoped_to_their_repository() {
    let reg = Reg::start();
    let img = reg.push_image("one", 1800, Some("v1")).await;
    reg.push_blob("two", b"x").await;
    reg.check_no_manifest("two", &img.digest).await;
    reg.check_no_manifest("two", "v1").await;
}

/// Conformance data sets: artifacts, artifact index, artifact without layers, data field,
/// custom fields, uncompressed layers, no layers.
#[tokio::test]
async fn manifest_artifact_shapes_are_accepted() {
    let reg = Reg::start();
    reg.push_blob("repo", b"{}").await;
    let payload = random_bytes(128, 1900);
    reg.push_blob("repo", &payload).await;
    // Artifact: artifactType, empty config, one layer.
    let artifact = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": EXAMPLE_TYPE_1,
        "config": desc(OCI_EMPTY, b"{}"),
        "layers": [desc(EXAMPLE_TYPE_1, &payload)],
    }));
    let da = reg.push_manifest("repo", "artifact", OCI_MANIFEST, &artifact).await;
    reg.check_manifest("repo", "artifact", &artifact, OCI_MANIFEST, &da).await;
    // Artifact "without layers": its single layer is the empty JSON blob.
    let no_layers = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": EXAMPLE_TYPE_2,
        "config": desc(OCI_EMPTY, b"{}"),
        "layers": [desc(OCI_EMPTY, b"{}")],
    }));
    let dn = reg.push_manifest("repo", "artifact-without-layers", OCI_MANIFEST, &no_layers).await;
    reg.check_manifest("repo", &dn, &no_layers, OCI_MANIFEST, &dn).await;
    // Artifact index.
    let aidx = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": EXAMPLE_TYPE_1,
        "manifests": [desc(OCI_MANIFEST, &artifact), desc(OCI_MANIFEST, &no_layers)],
    }));
    let dai = reg.push_manifest("repo", "artifact-index", OCI_INDEX, &aidx).await;
    reg.check_manifest("repo", "artifact-index", &aidx, OCI_INDEX, &dai).await;
    // Custom fields everywhere.
    let custom = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_EMPTY, "digest": EMPTY_JSON_DIGEST, "size": 2,
                   "x-custom": {"nested": [1, 2, 3]}},
        "layers": [],
        "x-top-level": "value",
    }));
    let dc = reg.push_manifest("repo", "custom-fields", OCI_MANIFEST, &custom).await;
    reg.check_manifest("repo", "custom-fields", &custom, OCI_MANIFEST, &dc).await;
    // Uncompressed layer media type.
    let uncompressed = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc(OCI_EMPTY, b"{}"),
        "layers": [desc(OCI_LAYER, &payload)],
    }));
    let du = reg.push_manifest("repo", "image-uncompressed", OCI_MANIFEST, &uncompressed).await;
    reg.check_manifest("repo", &du, &uncompressed, OCI_MANIFEST, &du).await;
}

#[tokio::test]
async fn manifest_sha512_digest_references() {
    let reg = Reg::start();
    let config = config_bytes(2000);
    let layer = random_bytes(777, 2001);
    let cd = sha512(&config);
    let ld = sha512(&layer);
    reg.post_put("repo", &config, &cd).await.expect(201);
    reg.post_put("repo", &layer, &ld).await.expect(201);
    let m = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc_with(OCI_CONFIG, &cd, config.len()),
        "layers": [desc_with(OCI_LAYER_GZ, &ld, layer.len())],
    }));
    let md = sha512(&m);
    // Pushed by sha512 digest: Docker-Content-Digest equals the client-provided digest.
    let r = reg.put_manifest("repo", &md, OCI_MANIFEST, &m).await;
    r.expect(201).expect_header("docker-content-digest", &md);
    let loc = reg.url(r.must_header("location"));
    reg.send(reg.req_url(Method::GET, loc).header(ACCEPT, ACCEPT_ALL)).await.expect(200).expect_body(&m);
    reg.check_manifest("repo", &md, &m, OCI_MANIFEST, &md).await;
    // An index of it, with sha512 digests, pushed by digest with a tag parameter.
    let idx = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [desc_with(OCI_MANIFEST, &md, m.len())],
    }));
    let id = sha512(&idx);
    reg.send(
        reg.req(Method::PUT, &format!("/v2/repo/manifests/{id}?tag=tag-param-sha512"))
            .header(CONTENT_TYPE, OCI_INDEX)
            .body(idx.clone()),
    )
    .await
    .expect(201)
    .expect_header("docker-content-digest", &id);
    reg.check_manifest("repo", &id, &idx, OCI_INDEX, &id).await;
    let g = reg.send(reg.req(Method::GET, "/v2/repo/manifests/tag-param-sha512").header(ACCEPT, ACCEPT_ALL)).await;
    g.expect(200).expect_header("content-type", OCI_INDEX).expect_body(&idx);
    let dcd = g.must_header("docker-content-digest");
    assert!(
        dcd == id || dcd == sha256(&idx),
        "{}: Docker-Content-Digest {dcd} matches neither digest of the body",
        g.what
    );
    // Delete by sha512 digest.
    reg.delete(&format!("/v2/repo/manifests/{md}")).await.expect(202);
    reg.check_no_manifest("repo", &md).await;
}

#[tokio::test]
async fn manifest_tag_grammar() {
    let reg = Reg::start();
    let img = reg.image("repo", 2100, 1).await;
    reg.push_manifest("repo", "keep", OCI_MANIFEST, &img.manifest).await;
    // Valid edge cases: 128 characters, leading underscore, dots, dashes, mixed case.
    let long = format!("a{}", "b".repeat(127));
    for t in [long.as_str(), "_underscore", "v1.2.3-rc.1_build", "MiXeD", "0"] {
        reg.push_manifest("repo", t, OCI_MANIFEST, &img.manifest).await;
        reg.check_manifest("repo", t, &img.manifest, OCI_MANIFEST, &img.digest).await;
    }
    let before = reg.snapshot(&["repo"]).await;
    // Invalid tags: 129 characters, leading dash or dot, characters outside the grammar.
    let too_long = "a".repeat(129);
    for t in [too_long.as_str(), "-dash", ".dot", "has+plus", "has%21bang", "a~b"] {
        let r = reg.put_manifest("repo", t, OCI_MANIFEST, &img.manifest).await;
        r.expect_error(400, "TAG_INVALID");
    }
    assert_eq!(reg.snapshot(&["repo"]).await, before);
}

// =============================================================================================
// Artifacts & referrers (end-12a/12b), OCI-Subject
// =============================================================================================

const REF_TYPE_A: &str = "application/vnd.nhl.peanut.butter.bagel";
const REF_TYPE_B: &str = "application/vnd.nba.strawberry.jam.croissant";
const REF_TYPE_INDEX: &str = "application/vnd.food.stand";
const ANN_KEY: &str = "org.opencontainers.conformance.test";

/// What a referrers entry must look like.
struct Expected {
    digest: String,
    media_type: &'static str,
    size: usize,
    artifact_type: Option<&'static str>,
    annotations: BTreeMap<String, String>,
}

fn expected(
    media_type: &'static str,
    body: &[u8],
    artifact_type: Option<&'static str>,
    ann: &[(&str, &str)],
) -> Expected {
    Expected {
        digest: sha256(body),
        media_type,
        size: body.len(),
        artifact_type,
        annotations: ann.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

/// `entries` are exactly `want` (in any order), field by field.
#[track_caller]
fn assert_referrers(what: &str, entries: &[Value], want: &[&Expected]) {
    let got: Vec<&str> = entries.iter().map(|e| e["digest"].as_str().unwrap_or("<no digest>")).collect();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    let mut want_sorted: Vec<&str> = want.iter().map(|w| w.digest.as_str()).collect();
    want_sorted.sort();
    assert_eq!(got_sorted, want_sorted, "{what}: referrer digests");
    for w in want {
        let e = entries.iter().find(|e| e["digest"] == json!(w.digest)).unwrap();
        assert_eq!(e["mediaType"], json!(w.media_type), "{what}: mediaType of {e}");
        assert_eq!(e["size"], json!(w.size), "{what}: size of {e}");
        match w.artifact_type {
            Some(t) => assert_eq!(e["artifactType"], json!(t), "{what}: artifactType of {e}"),
            None => assert!(
                e.get("artifactType").is_none_or(|v| v.is_null() || v == ""),
                "{what}: artifactType must be omitted for {e}"
            ),
        }
        for (k, v) in &w.annotations {
            assert_eq!(e["annotations"][k], json!(v), "{what}: annotation {k} of {e}");
        }
    }
}

/// The conformance "References setup" (v1.1 03_discovery) followed by its referrers checks,
/// plus the redesigned suite's per-artifactType filter checks.
#[tokio::test]
async fn referrers_list_filters_and_subject_header() {
    let reg = Reg::start();
    let name = "refs";
    // Empty JSON blob and reference blob A, before the subject exists.
    assert_eq!(reg.push_blob(name, b"{}").await, EMPTY_JSON_DIGEST);
    let blob_a = b"NHL Peanut Butter on my NHL bagel".to_vec();
    reg.push_blob(name, &blob_a).await;
    // The subject image (pushed after some of its referrers).
    let subject = reg.image(name, 3000, 1).await;
    let subject_desc = desc(OCI_MANIFEST, &subject.manifest);
    let subject_digest = subject.digest.clone();

    let config_artifact = |t: &str, blob: &[u8], note: &str| {
        pretty(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": desc(t, blob),
            "subject": subject_desc,
            "layers": [desc(OCI_EMPTY, b"{}")],
            "annotations": {ANN_KEY: note},
        }))
    };
    let layer_artifact = |t: &str, blob: &[u8], note: Option<&str>, subj: &Value| {
        let mut m = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": t,
            "config": desc(OCI_EMPTY, b"{}"),
            "subject": subj,
            "layers": [desc(t, blob)],
        });
        if let Some(n) = note {
            m["annotations"] = json!({ANN_KEY: n});
        }
        pretty(&m)
    };

    // artifactType taken from config.mediaType
    let a_config = config_artifact(REF_TYPE_A, &blob_a, "test config a");
    // explicit artifactType, empty config
    let a_layer = layer_artifact(REF_TYPE_A, &blob_a, Some("test layer a"), &subject_desc);
    let index = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": REF_TYPE_INDEX,
        "manifests": [desc(OCI_MANIFEST, &a_config), desc(OCI_MANIFEST, &a_layer)],
        "subject": subject_desc,
        "annotations": {ANN_KEY: "test index"},
    }));
    for (body, mt) in [(&a_config, OCI_MANIFEST), (&a_layer, OCI_MANIFEST), (&index, OCI_INDEX)] {
        let r = reg.put_manifest(name, &sha256(body), mt, body).await;
        r.expect(201)
            .expect_header("docker-content-digest", &sha256(body))
            .expect_header("oci-subject", &subject_digest);
    }
    // Now the subject, by tag (no subject field: no OCI-Subject expected to matter).
    reg.push_manifest(name, "tagtest0", OCI_MANIFEST, &subject.manifest).await;
    // Reference blob B, then the B referrers, by tag this time.
    let blob_b = b"NBA Strawberry Jam on my NBA croissant".to_vec();
    reg.push_blob(name, &blob_b).await;
    let b_config = config_artifact(REF_TYPE_B, &blob_b, "test config b");
    let b_layer = layer_artifact(REF_TYPE_B, &blob_b, Some("test layer b"), &subject_desc);
    for (tag, body) in [("b-config", &b_config), ("b-layer", &b_layer)] {
        let r = reg.put_manifest(name, tag, OCI_MANIFEST, body).await;
        r.expect(201).expect_header("oci-subject", &subject_digest);
    }
    // C: a referrer of a subject that was never pushed.
    let missing_subject = pretty(&json!({"schemaVersion": 2, "never": "pushed"}));
    let missing_desc = desc(OCI_MANIFEST, &missing_subject);
    let c_layer = layer_artifact(REF_TYPE_B, &blob_b, None, &missing_desc);
    let r = reg.put_manifest(name, &sha256(&c_layer), OCI_MANIFEST, &c_layer).await;
    r.expect(201).expect_header("oci-subject", &sha256(&missing_subject));
    // E: a plain image with a subject: artifactType = config.mediaType.
    let e_img = reg.image(name, 3001, 1).await;
    let mut e_val: Value = serde_json::from_slice(&e_img.manifest).unwrap();
    e_val["subject"] = subject_desc.clone();
    let e_manifest = pretty(&e_val);
    let r = reg.put_manifest(name, &sha256(&e_manifest), OCI_MANIFEST, &e_manifest).await;
    r.expect(201).expect_header("oci-subject", &subject_digest);

    let exp_a_config = expected(OCI_MANIFEST, &a_config, Some(REF_TYPE_A), &[(ANN_KEY, "test config a")]);
    let exp_a_layer = expected(OCI_MANIFEST, &a_layer, Some(REF_TYPE_A), &[(ANN_KEY, "test layer a")]);
    let exp_index = expected(OCI_INDEX, &index, Some(REF_TYPE_INDEX), &[(ANN_KEY, "test index")]);
    let exp_b_config = expected(OCI_MANIFEST, &b_config, Some(REF_TYPE_B), &[(ANN_KEY, "test config b")]);
    let exp_b_layer = expected(OCI_MANIFEST, &b_layer, Some(REF_TYPE_B), &[(ANN_KEY, "test layer b")]);
    let exp_c = expected(OCI_MANIFEST, &c_layer, Some(REF_TYPE_B), &[]);
    let exp_e = expected(OCI_MANIFEST, &e_manifest, Some(OCI_CONFIG), &[]);

    let path = format!("/v2/{name}/referrers/{subject_digest}");
    // All referrers.
    let r = reg.get(&path).await;
    let all = referrers_of(&r);
    assert!(r.header("oci-filters-applied").is_none_or(|v| v.is_empty()), "{}: no filter was requested", r.what);
    assert_referrers(&r.what, &all, &[&exp_a_config, &exp_a_layer, &exp_index, &exp_b_config, &exp_b_layer, &exp_e]);
    // Annotations exactly as in the manifests.
    for e in &all {
        if e["digest"] == json!(exp_e.digest) {
            continue;
        }
        assert_eq!(e["annotations"].as_object().map(|o| o.len()), Some(1), "{e}");
    }

    // Filtered by each artifactType.
    for (t, want) in [
        (REF_TYPE_A, vec![&exp_a_config, &exp_a_layer]),
        (REF_TYPE_B, vec![&exp_b_config, &exp_b_layer]),
        (REF_TYPE_INDEX, vec![&exp_index]),
        (OCI_CONFIG, vec![&exp_e]),
        ("application/vnd.nothing.matches", vec![]),
    ] {
        let r = reg.send(reg.req(Method::GET, &path).query(&[("artifactType", t)])).await;
        let entries = referrers_of(&r);
        let applied = r.header("oci-filters-applied").unwrap_or("");
        assert!(
            applied.split(',').any(|f| f.trim() == "artifactType"),
            "{}: OCI-Filters-Applied must name artifactType, got {applied:?}",
            r.what
        );
        assert_referrers(&r.what, &entries, &want);
    }

    // The never-pushed subject has C.
    let r = reg.get(&format!("/v2/{name}/referrers/{}", sha256(&missing_subject))).await;
    assert_referrers(&r.what, &referrers_of(&r), &[&exp_c]);

    // An unknown digest: 200 with an empty list.
    let r = reg.get(&format!("/v2/{name}/referrers/{}", sha256(b"hello world"))).await;
    assert!(referrers_of(&r).is_empty());

    // Deleting a referrer removes it from the list; deleting by tag does not.
    reg.delete(&format!("/v2/{name}/manifests/{}", exp_a_layer.digest)).await.expect(202);
    reg.delete(&format!("/v2/{name}/manifests/b-config")).await.expect(202);
    let r = reg.get(&path).await;
    assert_referrers(&r.what, &referrers_of(&r), &[&exp_a_config, &exp_index, &exp_b_config, &exp_b_layer, &exp_e]);
    // Referrers are listed per repository.
    reg.push_blob("other", b"{}").await;
    let r = reg.get(&format!("/v2/other/referrers/{subject_digest}")).await;
    assert!(referrers_of(&r).is_empty(), "{}: referrers leaked across repositories", r.what);
}

/// An index with a subject but no artifactType: the entry has no artifactType. A manifest
/// with an empty artifactType falls back to config.mediaType.
#[tokio::test]
async fn referrers_artifact_type_rules_for_index_and_empty_values() {
    let reg = Reg::start();
    let subject = reg.push_image("repo", 3100, Some("image")).await;
    let subject_desc = desc(OCI_MANIFEST, &subject.manifest);
    let child = reg.push_image("repo", 3101, None).await;
    let idx = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [desc(OCI_MANIFEST, &child.manifest)],
        "subject": subject_desc,
        "annotations": {"org.example": "index without artifactType"},
    }));
    let r = reg.put_manifest("repo", "idx", OCI_INDEX, &idx).await;
    r.expect(201).expect_header("oci-subject", &subject.digest);
    reg.push_blob("repo", b"{}").await;
    let empty_at = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "",
        "config": desc(EXAMPLE_TYPE_2, b"{}"),
        "layers": [],
        "subject": subject_desc,
    }));
    let r = reg.put_manifest("repo", &sha256(&empty_at), OCI_MANIFEST, &empty_at).await;
    r.expect(201).expect_header("oci-subject", &subject.digest);
    let r = reg.get(&format!("/v2/repo/referrers/{}", subject.digest)).await;
    let entries = referrers_of(&r);
    assert_referrers(
        &r.what,
        &entries,
        &[
            &expected(OCI_INDEX, &idx, None, &[("org.example", "index without artifactType")]),
            &expected(OCI_MANIFEST, &empty_at, Some(EXAMPLE_TYPE_2), &[]),
        ],
    );
}

#[tokio::test]
async fn referrers_of_unknown_repository_or_digest_is_an_empty_index() {
    let reg = Reg::start();
    // Conformance "empty" runs before anything is pushed: 200 and an empty index.
    let r = reg.get(&format!("/v2/nothere/referrers/{}", sha256(b"x"))).await;
    assert!(referrers_of(&r).is_empty());
    reg.push_blob("repo", b"x").await;
    let r = reg.get(&format!("/v2/repo/referrers/{}", sha512(b"x"))).await;
    assert!(referrers_of(&r).is_empty());
    // With a filter: still an empty index.
    let r = reg
        .send(
            reg.req(Method::GET, &format!("/v2/repo/referrers/{}", sha256(b"y")))
                .query(&[("artifactType", EXAMPLE_TYPE_1)]),
        )
        .await;
    assert!(referrers_of(&r).is_empty());
}

#[tokio::test]
async fn referrers_with_invalid_digest_is_400() {
    let reg = Reg::start();
    reg.push_blob("repo", b"x").await;
    for bad in ["sha256:abc", "latest", "sha256:ZZZ"] {
        reg.get(&format!("/v2/repo/referrers/{bad}")).await.expect_error(400, "DIGEST_INVALID");
    }
}

/// A manifest with a subject pushed by tag; subject is an index.
#[tokio::test]
async fn referrers_of_an_index_subject() {
    let reg = Reg::start();
    let child = reg.push_image("repo", 3200, None).await;
    let idx = pretty(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [desc(OCI_MANIFEST, &child.manifest)]}));
    let idx_digest = reg.push_manifest("repo", "index", OCI_INDEX, &idx).await;
    reg.push_blob("repo", b"{}").await;
    let sig = random_bytes(64, 3201);
    reg.push_blob("repo", &sig).await;
    let art = pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": EXAMPLE_TYPE_1,
        "config": desc(OCI_EMPTY, b"{}"),
        "layers": [desc(OCI_OCTET_LAYER, &sig)],
        "subject": desc(OCI_INDEX, &idx),
        "annotations": {"org.opencontainers.conformance": "hello conformance test"},
    }));
    let r = reg.put_manifest("repo", "tagged-artifact", OCI_MANIFEST, &art).await;
    r.expect(201).expect_header("oci-subject", &idx_digest);
    let r = reg.get(&format!("/v2/repo/referrers/{idx_digest}")).await;
    assert_referrers(
        &r.what,
        &referrers_of(&r),
        &[&expected(
            OCI_MANIFEST,
            &art,
            Some(EXAMPLE_TYPE_1),
            &[("org.opencontainers.conformance", "hello conformance test")],
        )],
    );
}

const OCI_OCTET_LAYER: &str = "application/octet-stream";

// =============================================================================================
// Content discovery: tags (end-8a/8b), catalog
// =============================================================================================

/// Follow `Link: <...>; rel="next"` headers from `first`, checking every page; returns the
/// concatenation of the pages' items.
async fn follow_pages(
    reg: &Reg,
    first: &str,
    n: usize,
    path_prefix: &str,
    items: fn(&Resp) -> Vec<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut next = Some(first.to_string());
    let mut pages = 0;
    while let Some(p) = next {
        pages += 1;
        assert!(pages < 100, "pagination does not terminate");
        let r = reg.get(&p).await;
        r.expect(200);
        let page = items(&r);
        next = r.next_link();
        if let Some(link) = &next {
            // A page with a next link is full.
            assert_eq!(page.len(), n, "{}: a page followed by a Link must hold n items", r.what);
            let u = reg.url(link);
            assert_eq!(u.path(), path_prefix, "{}: Link {link}", r.what);
            let q: BTreeMap<String, String> = u.query_pairs().into_owned().collect();
            assert_eq!(q.get("n").map(String::as_str), Some(n.to_string().as_str()), "{}: Link {link}", r.what);
            assert_eq!(q.get("last"), page.last(), "{}: Link {link}", r.what);
        } else {
            assert!(page.len() <= n, "{}: page larger than n", r.what);
        }
        out.extend(page);
    }
    out
}

#[tokio::test]
async fn tags_list_sorted_with_n_last_and_link_pagination() {
    let reg = Reg::start();
    let img = reg.image("repo", 4000, 1).await;
    // Conformance content discovery: test0..3 and TEST0..3, plus more shapes.
    let mut pushed = Vec::new();
    for i in 0..4 {
        for t in [format!("test{i}"), format!("TEST{i}")] {
            reg.push_manifest("repo", &t, OCI_MANIFEST, &img.manifest).await;
            pushed.push(t);
        }
    }
    for t in ["latest", "v1.0", "v1.10", "v1.9", "_first", "a-b", "a.b", "a_b", "Zulu", "0"] {
        reg.push_manifest("repo", t, OCI_MANIFEST, &img.manifest).await;
        pushed.push(t.to_string());
    }
    let r = reg.get("/v2/repo/tags/list").await;
    r.expect(200).expect_header("content-type", "application/json");
    assert_eq!(r.json()["name"], json!("repo"));
    let all = tags_of(&r);
    assert!(r.next_link().is_none(), "{}: no Link without n", r.what);
    let mut want = pushed.clone();
    want.sort();
    let mut got_sorted = all.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, want, "every pushed tag is listed exactly once");
    assert!(is_spec_sorted(&all), "tags not in lexical or ASCIIbetical order: {all:?}");
    let total = all.len();

    // n limits the count (conformance: numTags/2).
    let half = total / 2;
    let r = reg.get(&format!("/v2/repo/tags/list?n={half}")).await;
    r.expect(200);
    assert_eq!(tags_of(&r), all[..half].to_vec());
    assert!(r.next_link().is_some(), "{}: more tags remain, a Link is expected", r.what);

    // last: strictly after the given tag (conformance: last = tagList[numResults-1]).
    let last = &all[half - 1];
    let r = reg.get(&format!("/v2/repo/tags/list?n={half}&last={last}")).await;
    r.expect(200);
    let page = tags_of(&r);
    assert!(!page.contains(last));
    assert_eq!(page, all[half..(2 * half).min(total)].to_vec());
    // last without n: everything after it (redesigned conformance TestList).
    let r = reg.get(&format!("/v2/repo/tags/list?last={last}")).await;
    r.expect(200);
    assert_eq!(tags_of(&r), all[half..].to_vec());
    // last = the final tag: empty, no Link.
    let r = reg.get(&format!("/v2/repo/tags/list?last={}", all[total - 1])).await;
    r.expect(200);
    assert!(tags_of(&r).is_empty());
    assert!(r.next_link().is_none());
    // last that is not a tag but sorts between tags.
    let r = reg.get("/v2/repo/tags/list?last=test0a").await;
    r.expect(200);
    let want: Vec<String> = all
        .iter()
        .filter(|t| {
            let ascii = t.as_str() > "test0a";
            let lexical = t.to_lowercase().as_str() > "test0a";
            ascii || lexical
        })
        .cloned()
        .collect();
    let page = tags_of(&r);
    assert!(page.iter().all(|t| want.contains(t)), "{}: {page:?}", r.what);

    // n = 0: empty list and no Link (MUST).
    let r = reg.get("/v2/repo/tags/list?n=0").await;
    r.expect(200);
    assert!(tags_of(&r).is_empty(), "{}: n=0 must give an empty list", r.what);
    assert!(r.header("link").is_none(), "{}: n=0 must not carry a Link", r.what);
    // n larger than the count: everything, no Link.
    let r = reg.get(&format!("/v2/repo/tags/list?n={}", total + 5)).await;
    r.expect(200);
    assert_eq!(tags_of(&r), all);
    assert!(r.next_link().is_none());
    // n equal to the count: everything (a trailing Link is tolerated only if it leads to an
    // empty page).
    let r = reg.get(&format!("/v2/repo/tags/list?n={total}")).await;
    r.expect(200);
    assert_eq!(tags_of(&r), all);
    if let Some(l) = r.next_link() {
        let r2 = reg.get(&l).await;
        r2.expect(200);
        assert!(tags_of(&r2).is_empty());
    }

    // Following Link headers visits every tag once, in order.
    for n in [1, 3, 7] {
        let paged = follow_pages(&reg, &format!("/v2/repo/tags/list?n={n}"), n, "/v2/repo/tags/list", tags_of).await;
        assert_eq!(paged, all, "pagination with n={n}");
    }
}

#[tokio::test]
async fn tags_list_for_nested_name_and_link_format() {
    let reg = Reg::start();
    let img = reg.image("team/app/api", 4100, 1).await;
    for t in ["a", "b", "c"] {
        reg.push_manifest("team/app/api", t, OCI_MANIFEST, &img.manifest).await;
    }
    let r = reg.get("/v2/team/app/api/tags/list?n=2").await;
    r.expect(200);
    assert_eq!(r.json()["name"], json!("team/app/api"));
    assert_eq!(tags_of(&r), vec!["a", "b"]);
    // Link: </v2/<name>/tags/list?n=2&last=b>; rel="next"
    let link = r.next_link().expect("Link header");
    let u = reg.url(&link);
    assert_eq!(u.path(), "/v2/team/app/api/tags/list");
    let q: BTreeMap<String, String> = u.query_pairs().into_owned().collect();
    assert_eq!(q.get("n").map(String::as_str), Some("2"));
    assert_eq!(q.get("last").map(String::as_str), Some("b"));
    let r = reg.get(&link).await;
    r.expect(200);
    assert_eq!(tags_of(&r), vec!["c"]);
    assert!(r.next_link().is_none());
}

#[tokio::test]
async fn tags_list_of_unknown_repository_is_404_name_unknown() {
    let reg = Reg::start();
    reg.get("/v2/nothere/tags/list").await.expect_error(404, "NAME_UNKNOWN");
    reg.get("/v2/a/b/c/tags/list?n=10").await.expect_error(404, "NAME_UNKNOWN");
    // A repository holding only blobs exists (repositories appear on first push) and has no tags.
    reg.push_blob("blobsonly", b"x").await;
    let r = reg.get("/v2/blobsonly/tags/list").await;
    r.expect(200);
    assert!(tags_of(&r).is_empty());
    assert_eq!(r.json()["name"], json!("blobsonly"));
}

#[tokio::test]
async fn catalog_lists_repositories_with_pagination() {
    let reg = Reg::start();
    // Empty registry.
    let r = reg.get("/v2/_catalog").await;
    r.expect(200);
    assert!(repos_of(&r).is_empty(), "{}: {}", r.what, r.text());
    let names = ["zeta", "alpha", "beta/one", "beta/two", "a/b/c/d", "gamma-ray", "delta.x", "b_c"];
    for (i, n) in names.iter().enumerate() {
        if i % 2 == 0 {
            reg.push_image(n, 5000 + i as u64, Some("latest")).await;
        } else {
            reg.push_blob(n, format!("blob {i}").as_bytes()).await;
        }
    }
    let r = reg.get("/v2/_catalog").await;
    r.expect(200).expect_header("content-type", "application/json");
    let all = repos_of(&r);
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(all, want, "catalog lists every repository, sorted");
    assert!(r.next_link().is_none());
    // n and Link.
    let r = reg.get("/v2/_catalog?n=3").await;
    r.expect(200);
    assert_eq!(repos_of(&r), all[..3].to_vec());
    let link = r.next_link().expect("Link on a partial catalog page");
    let u = reg.url(&link);
    assert_eq!(u.path(), "/v2/_catalog");
    let q: BTreeMap<String, String> = u.query_pairs().into_owned().collect();
    assert_eq!(q.get("n").map(String::as_str), Some("3"));
    assert_eq!(q.get("last"), Some(&all[2]));
    // last.
    let r = reg.get(&format!("/v2/_catalog?n=2&last={}", all[2])).await;
    r.expect(200);
    assert_eq!(repos_of(&r), all[3..5].to_vec());
    let r = reg.get(&format!("/v2/_catalog?last={}", all[5])).await;
    r.expect(200);
    assert_eq!(repos_of(&r), all[6..].to_vec());
    // n = 0.
    let r = reg.get("/v2/_catalog?n=0").await;
    r.expect(200);
    assert!(repos_of(&r).is_empty());
    assert!(r.header("link").is_none());
    for n in [1, 2, 5] {
        let paged = follow_pages(&reg, &format!("/v2/_catalog?n={n}"), n, "/v2/_catalog", repos_of).await;
        assert_eq!(paged, all, "catalog pagination with n={n}");
    }
}

// =============================================================================================
// Repository names
// =============================================================================================

#[tokio::test]
async fn invalid_repository_names_are_rejected() {
    let reg = Reg::start();
    reg.push_image("ok", 6000, Some("latest")).await;
    let before = reg.snapshot(&["ok"]).await;
    let d = sha256(b"x");
    let too_long = "a".repeat(257);
    // (name, may 404 because the path cannot be parsed)
    let cases: Vec<(String, bool)> = vec![
        ("../x".into(), true),
        ("a/../b".into(), true),
        ("./a".into(), true),
        ("Foo/bar".into(), false),
        ("UPPER".into(), false),
        ("a//b".into(), true),
        ("a/".into(), true),
        ("/a".into(), true),
        (too_long.clone(), false),
        (format!("{}/{}", "a".repeat(200), "b".repeat(56)), false), // 257 with the slash
        ("a..b".into(), false),
        ("-a".into(), false),
        ("a-".into(), false),
        (".a".into(), false),
        ("a_".into(), false),
        ("a___b".into(), false),
        ("a.-b".into(), false),
        ("a/-b".into(), false),
        ("a:b".into(), false),
        ("a%20b".into(), false),
        ("a@b".into(), false),
    ];
    for (n, may_404) in &cases {
        for (method, target) in [
            ("GET", format!("/v2/{n}/tags/list")),
            ("GET", format!("/v2/{n}/manifests/latest")),
            ("HEAD", format!("/v2/{n}/manifests/latest")),
            ("GET", format!("/v2/{n}/blobs/{d}")),
            ("POST", format!("/v2/{n}/blobs/uploads/")),
            ("GET", format!("/v2/{n}/referrers/{d}")),
        ] {
            reg.raw(method, &target, &[], b"").await.expect_name_rejected(*may_404);
        }
        // Writes: single-POST upload and manifest PUT.
        reg.raw("POST", &format!("/v2/{n}/blobs/uploads/?digest={d}"), &[("Content-Type", OCTET)], b"x")
            .await
            .expect_name_rejected(*may_404);
        let img_body = pretty(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": desc(OCI_EMPTY, b"{}"), "layers": []}));
        reg.raw("PUT", &format!("/v2/{n}/manifests/latest"), &[("Content-Type", OCI_MANIFEST)], &img_body)
            .await
            .expect_name_rejected(*may_404);
    }
    // Nothing was created.
    assert_eq!(reg.snapshot(&["ok"]).await, before);
}

#[tokio::test]
async fn nested_and_edge_case_names_work() {
    let reg = Reg::start();
    let max = format!("{}/{}", "a".repeat(200), "b".repeat(55)); // 256 characters
    assert_eq!(max.len(), 256);
    let names = [
        "a/b/c/d",
        "library/ubuntu",
        "a__b",
        "a--b",
        "a---b",
        "a.b",
        "a_b",
        "0",
        "9lives/x0",
        // names containing the API's own path words
        "a/blobs/x",
        "x/manifests/y",
        "tags/list/z",
        "uploads",
        "blobs",
        "referrers/r",
        max.as_str(),
    ];
    for (i, n) in names.iter().enumerate() {
        let img = reg.push_image(n, 7000 + i as u64, Some("v1")).await;
        reg.check_manifest(n, "v1", &img.manifest, OCI_MANIFEST, &img.digest).await;
        reg.check_blob(n, &sha256(&img.config), &img.config).await;
        assert_eq!(reg.tags(n).await, vec!["v1"]);
        let r = reg.get(&format!("/v2/{n}/referrers/{}", img.digest)).await;
        assert!(referrers_of(&r).is_empty());
        // A chunked upload under the nested name.
        let data = random_bytes(100, 7100 + i as u64);
        let loc = reg.start_upload(n).await;
        assert!(loc.path().starts_with(&format!("/v2/{n}/blobs/uploads/")));
        let r = reg.patch_chunk(&loc, 0, &data).await;
        r.expect(202);
        let loc = reg.url(r.must_header("location"));
        reg.put_close(&loc, &sha256(&data)).await.expect(201);
        reg.check_blob(n, &sha256(&data), &data).await;
    }
    let r = reg.get("/v2/_catalog").await;
    r.expect(200);
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(repos_of(&r), want);
    // Names are distinct from their prefixes.
    reg.get("/v2/a/b/tags/list").await.expect_error(404, "NAME_UNKNOWN");
    reg.get("/v2/a/tags/list").await.expect_error(404, "NAME_UNKNOWN");
}

// =============================================================================================
// Whole-flow checks
// =============================================================================================

/// Pull/push/discovery/management as the conformance workflow runs them, against one
/// registry, ending with state verified after every step.
#[tokio::test]
async fn full_workflow_push_pull_discover_delete() {
    let reg = Reg::start();
    let name = "conformance/workflow";
    let img = reg.push_image(name, 8000, Some("tagtest0")).await;
    let second = reg.push_image(name, 8001, None).await;
    // Pull.
    reg.check_manifest(name, "tagtest0", &img.manifest, OCI_MANIFEST, &img.digest).await;
    reg.check_manifest(name, &second.digest, &second.manifest, OCI_MANIFEST, &second.digest).await;
    reg.check_blob(name, &sha256(&img.config), &img.config).await;
    for l in &img.layers {
        reg.check_blob(name, &sha256(l), l).await;
    }
    // Discovery.
    assert_eq!(reg.tags(name).await, vec!["tagtest0"]);
    // Management: delete tag, then manifest, then blobs.
    reg.delete(&format!("/v2/{name}/manifests/tagtest0")).await.expect(202);
    reg.check_no_manifest(name, "tagtest0").await;
    reg.check_manifest(name, &img.digest, &img.manifest, OCI_MANIFEST, &img.digest).await;
    reg.delete(&format!("/v2/{name}/manifests/{}", img.digest)).await.expect(202);
    reg.check_no_manifest(name, &img.digest).await;
    let r = reg.get(&format!("/v2/{name}/tags/list")).await;
    r.expect(200);
    assert_eq!(r.json(), json!({"name": name, "tags": []}), "{}", r.what);
    for b in std::iter::once(&img.config).chain(img.layers.iter()) {
        let d = sha256(b);
        reg.delete(&format!("/v2/{name}/blobs/{d}")).await.expect(202);
        reg.check_no_blob(name, &d).await;
    }
    // The second manifest is intact.
    reg.check_manifest(name, &second.digest, &second.manifest, OCI_MANIFEST, &second.digest).await;
}
