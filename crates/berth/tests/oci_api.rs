//! HTTP-level integration tests of the OCI Distribution Spec v1.1 API, as the spec
//! (opencontainers/distribution-spec `spec.md`) and its conformance suite define it.
//!
//! Every check of the conformance suite (v1.1 `conformance/0{1..4}_*_test.go` and the
//! redesigned `conformance/run.go` + `api.go`) is mirrored here, plus Berth specifics:
//! no auth, repositories appear on first push, every response carries
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
const EMPTY_JSON_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

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
    format!(
        "sha512:{}",
        hex::encode(ring::digest::digest(&ring::digest::SHA512, data))
    )
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
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
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
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    }

    #[track_caller]
    fn must_header(&self, name: &str) -> &str {
        match self.header(name) {
            Some(v) => v,
            None => panic!(
                "{}: missing header {name:?}; status {}, headers {:?}",
                self.what, self.status, self.headers
            ),
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
    fn expect_one_of(&self, statuses: &[u16]) -> &Self {
        assert!(
            statuses.contains(&self.status.as_u16()),
            "{}: expected status in {statuses:?}, got {}; body {:?}",
            self.what,
            self.status,
            self.text()
        );
        self
    }

    #[track_caller]
    fn expect_header(&self, name: &str, value: &str) -> &Self {
        assert_eq!(
            self.header(name),
            Some(value),
            "{}: header {name:?} (all headers {:?})",
            self.what,
            self.headers
        );
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
        assert!(
            self.body.is_empty(),
            "{}: expected an empty body, got {:?}",
            self.what,
            self.text()
        );
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
                assert!(
                    e.get("detail").is_some(),
                    "{}: error lacks a detail field: {e}",
                    self.what
                );
                code.to_string()
            })
            .collect()
    }

    /// Status, and an error body containing `code`.
    #[track_caller]
    fn expect_error(&self, status: u16, code: &str) -> &Self {
        self.expect(status);
        let codes = self.error_codes();
        assert!(
            codes.iter().any(|c| c == code),
            "{}: expected error code {code}, got {codes:?}",
            self.what
        );
        self
    }

    /// One of `statuses`, and an error body containing `code`.
    #[track_caller]
    fn expect_error_in(&self, statuses: &[u16], code: &str) -> &Self {
        self.expect_one_of(statuses);
        let codes = self.error_codes();
        assert!(
            codes.iter().any(|c| c == code),
            "{}: expected error code {code}, got {codes:?}",
            self.what
        );
        self
    }

    /// The URL of a `Link: <url>; rel="next"` header, if any (format checked).
    #[track_caller]
    fn next_link(&self) -> Option<String> {
        let v = self.header("link")?;
        let v = v.trim();
        assert!(
            v.starts_with('<'),
            "{}: malformed Link header {v:?}",
            self.what
        );
        let end = v
            .find('>')
            .unwrap_or_else(|| panic!("{}: malformed Link header {v:?}", self.what));
        let params = &v[end + 1..];
        assert!(
            params
                .split(';')
                .any(|p| p.trim() == "rel=\"next\"" || p.trim() == "rel=next"),
            "{}: Link header without rel=\"next\": {v:?}",
            self.what
        );
        Some(v[1..end].to_string())
    }

    /// The `Range: 0-<end>` header value's end (`-1` for an empty upload written `0--1`).
    #[track_caller]
    fn upload_range_end(&self) -> i64 {
        let r = self.must_header("range");
        let end = r
            .strip_prefix("0-")
            .unwrap_or_else(|| panic!("{}: Range header {r:?} does not start with 0-", self.what));
        end.parse()
            .unwrap_or_else(|_| panic!("{}: unparsable Range header {r:?}", self.what))
    }
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
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn error_codes(&self) -> Vec<String> {
        let v: Value = serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{}: body is not JSON ({e}): {:?}",
                self.what,
                String::from_utf8_lossy(&self.body)
            )
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
            assert!(
                codes.iter().any(|c| c == "NAME_INVALID"),
                "{}: expected NAME_INVALID, got {codes:?}",
                self.what
            );
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
        let size =
            usize::from_str_radix(size_str.split(';').next().unwrap().trim(), 16).unwrap_or(0);
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
        let client = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest client");
        let base = Url::parse(&berth.url).expect("base url");
        Reg {
            berth,
            client,
            base,
        }
    }

    /// Resolve a path or a (relative or absolute) Location against the registry.
    fn url(&self, p: &str) -> Url {
        self.base
            .join(p)
            .unwrap_or_else(|e| panic!("bad url {p:?}: {e}"))
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
        let r = self
            .client
            .execute(req)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.bytes().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            headers
                .get("docker-distribution-api-version")
                .and_then(|v| v.to_str().ok()),
            Some("registry/2.0"),
            "{what} ({status}): every response must carry Docker-Distribution-API-Version: registry/2.0"
        );
        Resp {
            what,
            status,
            headers,
            body,
        }
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
    async fn raw(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResp {
        let what = format!("{method} {target} (raw)");
        let mut s = tokio::net::TcpStream::connect(&self.berth.addr)
            .await
            .unwrap_or_else(|e| panic!("{what}: connect: {e}"));
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.berth.addr,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let pos = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| {
                panic!(
                    "{what}: no header terminator in {:?}",
                    String::from_utf8_lossy(&buf)
                )
            });
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
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
        {
            body = decode_chunked(&body);
        }
        RawResp {
            what,
            status,
            headers,
            body,
        }
    }

    // ----- uploads -----

    /// `POST /v2/<name>/blobs/uploads/` with `Content-Length: 0`: 202 and the session URL.
    async fn start_upload_resp(&self, name: &str) -> (Url, Resp) {
        let r = self
            .send(
                self.req(Method::POST, &format!("/v2/{name}/blobs/uploads/"))
                    .header(CONTENT_LENGTH, "0"),
            )
            .await;
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
                .header(
                    CONTENT_RANGE,
                    format!("{}-{}", start, start + chunk.len() - 1),
                )
                .header(CONTENT_LENGTH, chunk.len().to_string())
                .body(chunk.to_vec()),
        )
        .await
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

    async fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Resp {
        self.send(
            self.req(Method::PUT, &format!("/v2/{name}/manifests/{reference}"))
                .header(CONTENT_TYPE, media_type)
                .body(body.to_vec()),
        )
        .await
    }

    /// Push a manifest, asserting 201, Location and Docker-Content-Digest; returns the digest.
    async fn push_manifest(
        &self,
        name: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
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
        Image {
            digest: sha256(&manifest),
            manifest,
            config,
            layers,
        }
    }

    /// Push an image's blobs and its manifest under `reference` (tag or digest).
    async fn push_image(&self, name: &str, seed: u64, reference: Option<&str>) -> Image {
        let img = self.image(name, seed, 2).await;
        let reference = reference
            .map(str::to_string)
            .unwrap_or_else(|| img.digest.clone());
        self.push_manifest(name, &reference, OCI_MANIFEST, &img.manifest)
            .await;
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
    async fn check_manifest(
        &self,
        name: &str,
        reference: &str,
        body: &[u8],
        media_type: &str,
        digest: &str,
    ) {
        let path = format!("/v2/{name}/manifests/{reference}");
        let g = self
            .send(self.req(Method::GET, &path).header(ACCEPT, ACCEPT_ALL))
            .await;
        g.expect(200)
            .expect_header("content-type", media_type)
            .expect_header("content-length", &body.len().to_string())
            .expect_header("docker-content-digest", digest)
            .expect_body(body);
        let h = self
            .send(self.req(Method::HEAD, &path).header(ACCEPT, ACCEPT_ALL))
            .await;
        h.expect(200)
            .expect_header("content-type", media_type)
            .expect_header("content-length", &body.len().to_string())
            .expect_header("docker-content-digest", digest)
            .expect_empty_body();
    }

    /// GET (MANIFEST_UNKNOWN) and HEAD of a manifest reference both 404.
    async fn check_no_manifest(&self, name: &str, reference: &str) {
        let path = format!("/v2/{name}/manifests/{reference}");
        self.send(self.req(Method::HEAD, &path).header(ACCEPT, ACCEPT_ALL))
            .await
            .expect(404)
            .expect_empty_body();
        self.send(self.req(Method::GET, &path).header(ACCEPT, ACCEPT_ALL))
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
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
        Value::Array(a) => a
            .iter()
            .map(|t| t.as_str().expect("tag is a string").to_string())
            .collect(),
        other => panic!("{}: tags is not an array: {other}", r.what),
    }
}

/// The `repositories` array of a catalog response.
#[track_caller]
fn repos_of(r: &Resp) -> Vec<String> {
    let v = r.json();
    match &v["repositories"] {
        Value::Null => Vec::new(),
        Value::Array(a) => a
            .iter()
            .map(|t| t.as_str().expect("repository is a string").to_string())
            .collect(),
        other => panic!("{}: repositories is not an array: {other}", r.what),
    }
}

/// The `manifests` array of a referrers response, after checking it is an OCI index.
#[track_caller]
fn referrers_of(r: &Resp) -> Vec<Value> {
    r.expect(200).expect_header("content-type", OCI_INDEX);
    let v = r.json();
    assert_eq!(
        v["schemaVersion"],
        json!(2),
        "{}: schemaVersion in {v}",
        r.what
    );
    assert_eq!(
        v["mediaType"],
        json!(OCI_INDEX),
        "{}: mediaType in {v}",
        r.what
    );
    v["manifests"]
        .as_array()
        .unwrap_or_else(|| {
            panic!(
                "{}: manifests must be an array (empty when none): {v}",
                r.what
            )
        })
        .clone()
}

// =============================================================================================
// Determining support: GET /v2/ (end-1); unknown paths
// =============================================================================================

#[tokio::test]
async fn base_endpoint_returns_200_with_api_version_header() {
    let reg = Reg::start();
    let r = reg.get("/v2/").await;
    r.expect(200)
        .expect_header("docker-distribution-api-version", "registry/2.0");
    // The header is also on error responses (checked by `send` on every response).
    reg.get("/v2/nope/tags/list").await.expect(404);
    reg.head(
        "/v2/nope/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
    )
    .await
    .expect(404);
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
    assert!(
        r.status.is_client_error(),
        "{}: expected a 4xx, got {}",
        r.what,
        r.status
    );
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
    reg.send(reg.req_url(Method::GET, loc))
        .await
        .expect(200)
        .expect_body(&data);
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
    assert_eq!(
        d0,
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    reg.check_blob("repo", &d0, b"").await;
    reg.delete(&format!("/v2/repo/blobs/{d0}"))
        .await
        .expect(202);
    reg.check_no_blob("repo", &d0).await;
}

#[tokio::test]
async fn blob_range_requests() {
    let reg = Reg::start();
    let data = random_bytes(2048, 2);
    let d = reg.push_blob("repo", &data).await;
    let path = format!("/v2/repo/blobs/{d}");
    let ranged =
        |range: &str| reg.send(reg.req(Method::GET, &path).header(RANGE, range.to_string()));

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
    for range in [
        "bytes=5000-10000",
        "bytes=500-0",
        "bytes=2048-",
        "bytes=2048-4000",
    ] {
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
    assert!(
        codes
            .iter()
            .any(|c| c == "BLOB_UNKNOWN" || c == "NAME_UNKNOWN"),
        "{}: {codes:?}",
        r.what
    );
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
    reg.delete(&format!("/v2/repo/blobs/{}", sha256(b"never")))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
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
