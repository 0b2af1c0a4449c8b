//! Connections: keep-alive after answers sent before the body was read, header, idle and body
//! timeouts, and the connection limit. A small HTTP/1.1 client over one TCP stream shows what
//! a connection-reusing client (Go's net/http: docker, containerd, crane, oras) sees.

mod common;

use common::{Berth, sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// An answer read off the stream.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn closes(&self) -> bool {
        self.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    fn error_code(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        v["errors"][0]["code"].as_str().unwrap_or_default().to_string()
    }
}

/// One HTTP/1.1 connection.
struct Conn {
    r: BufReader<TcpStream>,
    host: String,
    auth: String,
}

impl Conn {
    fn open(b: &Berth) -> Conn {
        let s = TcpStream::connect(&b.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Conn { r: BufReader::new(s), host: b.addr.clone(), auth: b.basic_auth_header() }
    }

    /// Send a request whose body is `body`, announced with `Content-Length: declared` (the body
    /// sent may be shorter: the rest then never comes).
    fn send_partial(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8], declared: usize) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {declared}\r\n", self.host);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization")) {
            req.push_str(&format!("Authorization: {}\r\n", self.auth));
        }
        for (k, v) in headers {
            if !v.is_empty() {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        req.push_str("\r\n");
        let s = self.r.get_mut();
        s.write_all(req.as_bytes()).unwrap();
        // The server may answer early and stop reading: what matters is the answer it sends.
        let _ = s.write_all(body);
    }

    fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        self.send_partial(method, path, headers, body, body.len());
    }

    /// Read one answer (`None`: the server closed the connection).
    fn read(&mut self, head_request: bool) -> Option<Answer> {
        let mut line = String::new();
        match self.r.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let mut l = String::new();
            self.r.read_line(&mut l).unwrap();
            let l = l.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let mut a = Answer { status, headers, body: Vec::new() };
        if head_request {
            return Some(a);
        }
        if let Some(n) = a.header("content-length") {
            let mut body = vec![0; n.parse().unwrap()];
            self.r.read_exact(&mut body).unwrap();
            a.body = body;
        } else if a.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut size = String::new();
                self.r.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                self.r.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                a.body.extend_from_slice(&chunk[..n]);
            }
        }
        Some(a)
    }

    fn call(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        self.send(method, path, headers, body);
        self.read(method == "HEAD").unwrap_or_else(|| panic!("{method} {path}: connection closed without an answer"))
    }

    /// Whether the server closed the connection (EOF) within `within`.
    fn closed_within(&mut self, within: Duration) -> bool {
        self.r.get_mut().set_read_timeout(Some(within)).unwrap();
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0))
            || matches!(self.r.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
    }
}

fn path_of(location: &str) -> String {
    match location.find("/v2/") {
        Some(i) => location[i..].to_string(),
        None => location.to_string(),
    }
}

/// A connection-reusing client goes through every error path of the upload and manifest APIs
/// on ONE connection, each answer keeping it usable, then pushes an image on the same one.
#[test]
fn one_connection_through_every_error_path_then_a_push() {
    let b = Berth::start();
    let mut c = Conn::open(&b);
    let repo = "keep/alive";
    // Open an upload, then send a chunk at the wrong offset: 416.
    let a = c.call("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
    assert_eq!(a.status, 202);
    let up = path_of(a.header("location").unwrap());
    let mut answers = Vec::new();
    let a = c.call("PATCH", &up, &[("Content-Range", "5-9"), ("Content-Type", "application/octet-stream")], b"01234");
    assert_eq!((a.status, a.error_code().as_str()), (416, "BLOB_UPLOAD_INVALID"), "{a:?}");
    answers.push(a);
    // The reproduction from the issue: the next POST on the same connection.
    let a = c.call("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
    assert_eq!(a.status, 202, "POST after an early 416: {a:?}");
    answers.push(a);
    // No credentials, with a body: 401 before anything reads it.
    let a = c.call("PATCH", &up, &[("Authorization", "Basic QVdTOm5vcGU=")], b"some bytes");
    assert_eq!(a.status, 401, "{a:?}");
    answers.push(a);
    // An upload id that does not exist: 404 with the body unread.
    let a =
        c.call("PATCH", &format!("/v2/{repo}/blobs/uploads/0f0f0f0f-aaaa-bbbb-cccc-000000000000"), &[], &[7u8; 3000]);
    assert_eq!((a.status, a.error_code().as_str()), (404, "BLOB_UPLOAD_UNKNOWN"), "{a:?}");
    answers.push(a);
    // A finishing PUT whose digest does not match: 400 DIGEST_INVALID.
    let a = c.call("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
    let up2 = path_of(a.header("location").unwrap());
    let wrong = sha256(b"something else");
    let a = c.call("PUT", &format!("{up2}?digest={wrong}"), &[], b"payload");
    assert_eq!((a.status, a.error_code().as_str()), (400, "DIGEST_INVALID"), "{a:?}");
    answers.push(a);
    // A digest that does not parse, with a body: 400.
    let a = c.call("POST", &format!("/v2/{repo}/blobs/uploads/?digest=sha256:zz"), &[], b"payload");
    assert_eq!((a.status, a.error_code().as_str()), (400, "DIGEST_INVALID"), "{a:?}");
    answers.push(a);
    // Manifests: not JSON, a missing blob, a bad reference, a name that does not parse.
    let oci = ("Content-Type", "application/vnd.oci.image.manifest.v1+json");
    let a = c.call("PUT", &format!("/v2/{repo}/manifests/v1"), &[oci], b"{not json");
    assert_eq!((a.status, a.error_code().as_str()), (400, "MANIFEST_INVALID"), "{a:?}");
    answers.push(a);
    let missing = sha256(b"not pushed");
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": missing, "size": 10},
        "layers": []
    })
    .to_string();
    let a = c.call("PUT", &format!("/v2/{repo}/manifests/v1"), &[oci], manifest.as_bytes());
    assert_eq!((a.status, a.error_code().as_str()), (400, "MANIFEST_BLOB_UNKNOWN"), "{a:?}");
    answers.push(a);
    let a = c.call("PUT", &format!("/v2/{repo}/manifests/bad:tag!"), &[oci], manifest.as_bytes());
    assert_eq!(a.status, 400, "{a:?}");
    answers.push(a);
    let a = c.call("PUT", "/v2/Bad_Name/manifests/v1", &[oci], manifest.as_bytes());
    assert_eq!(a.status, 400, "{a:?}");
    answers.push(a);
    // A manifest PUT by digest that does not match its bytes.
    let a = c.call("PUT", &format!("/v2/{repo}/manifests/{missing}"), &[oci], manifest.as_bytes());
    assert_eq!((a.status, a.error_code().as_str()), (400, "DIGEST_INVALID"), "{a:?}");
    answers.push(a);
    // The control plane: a request without a signature, with a JSON body.
    let a = c.call(
        "POST",
        "/",
        &[
            ("Authorization", "nope"),
            ("X-Amz-Target", "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories"),
            ("Content-Type", "application/x-amz-json-1.1"),
        ],
        b"{}",
    );
    assert!(a.status >= 400 && a.status < 500, "{a:?}");
    answers.push(a);
    for a in &answers {
        assert!(!a.closes(), "a small early answer must keep the connection: {a:?}");
    }

    // A whole push, then a pull, on the same connection.
    let layer = b"layer bytes, pushed in two chunks".to_vec();
    let ld = sha256(&layer);
    let a = c.call("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
    assert_eq!(a.status, 202);
    let up = path_of(a.header("location").unwrap());
    let a = c.call("PATCH", &up, &[("Content-Range", "0-9")], &layer[..10]);
    assert_eq!(a.status, 202, "{a:?}");
    let up = path_of(a.header("location").unwrap());
    let a = c.call("PUT", &format!("{up}?digest={ld}"), &[], &layer[10..]);
    assert_eq!(a.status, 201, "{a:?}");
    let config = b"{}".to_vec();
    let cd = sha256(&config);
    let a = c.call("POST", &format!("/v2/{repo}/blobs/uploads/?digest={cd}"), &[], &config);
    assert_eq!(a.status, 201, "{a:?}");
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}]
    })
    .to_string();
    let a = c.call("PUT", &format!("/v2/{repo}/manifests/v1"), &[oci], manifest.as_bytes());
    assert_eq!(a.status, 201, "{a:?}");
    let a = c.call("GET", &format!("/v2/{repo}/manifests/v1"), &[("Accept", oci.1)], b"");
    assert_eq!((a.status, a.body.as_slice()), (200, manifest.as_bytes()));
    let a = c.call("GET", &format!("/v2/{repo}/blobs/{ld}"), &[], b"");
    assert_eq!((a.status, a.body), (200, layer));
}

/// An early answer to a request whose body is too large to drain says `Connection: close`,
/// and the connection then closes.
#[test]
fn early_answer_to_a_large_body_announces_close() {
    let b = Berth::start();
    let mut c = Conn::open(&b);
    let big = vec![1u8; 6 << 20];
    let a = c.call("PATCH", "/v2/big/body/blobs/uploads/0f0f0f0f-aaaa-bbbb-cccc-000000000000", &[], &big);
    assert_eq!(a.status, 404, "{a:?}");
    assert!(a.closes(), "a 6 MiB body left unread needs Connection: close: {a:?}");
    assert!(c.closed_within(Duration::from_secs(10)), "the connection must close after the answer");
}

/// Half a request head, then nothing: closed after the header timeout; 200 such connections do
/// not keep the server from answering others.
#[test]
fn slow_headers_are_closed_while_others_are_served() {
    let b = Berth::start_with_env(&[("BERTH_HEADER_TIMEOUT_SECS", "2")]);
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(&b.addr).unwrap();
        s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthor").unwrap();
        slow.push(s);
    }
    // Others keep being answered meanwhile (each request must finish; the bound is liveness).
    let client = b.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let mut served = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let r = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), client.get(format!("{}/v2/", b.url)).send()).await
        });
        assert_eq!(r.expect("a normal request stalled behind slow clients").unwrap().status(), 200);
        served += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(served >= 5);
    // Every slow connection is closed by the server (EOF or reset), none answered.
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("slow connection not closed by the header timeout: {other:?}"),
        }
    }
}

/// An idle keep-alive connection survives a pause longer than the header timeout but is closed
/// after the idle timeout.
#[test]
fn idle_connections_close_after_the_idle_timeout() {
    let b = Berth::start_with_env(&[("BERTH_HEADER_TIMEOUT_SECS", "1"), ("BERTH_IDLE_TIMEOUT_SECS", "4")]);
    let mut c = Conn::open(&b);
    assert_eq!(c.call("GET", "/v2/", &[], b"").status, 200);
    std::thread::sleep(Duration::from_millis(2000));
    let a = c.call("GET", "/v2/", &[], b"");
    assert_eq!(a.status, 200, "an idle pause under the idle timeout keeps the connection");
    assert!(c.closed_within(Duration::from_secs(15)), "an idle connection must close after the idle timeout");
}

/// A body that stops arriving fails after the body timeout; the answer closes the connection.
#[test]
fn stalled_bodies_time_out() {
    let b = Berth::start_with_env(&[("BERTH_BODY_TIMEOUT_SECS", "2")]);
    let mut c = Conn::open(&b);
    let a = c.call("POST", "/v2/stall/body/blobs/uploads/", &[], b"");
    assert_eq!(a.status, 202);
    let up = path_of(a.header("location").unwrap());
    c.send_partial("PATCH", &up, &[], &[1u8; 10], 100);
    c.r.get_mut().set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let a = c.read(false).expect("a stalled body gets an answer");
    assert_eq!((a.status, a.error_code().as_str()), (400, "BLOB_UPLOAD_INVALID"), "{a:?}");
    assert!(a.closes(), "{a:?}");
    // The session lost nothing it had recorded: it is still at 0 bytes, and usable.
    let mut c = Conn::open(&b);
    let a = c.call("GET", &up, &[], b"");
    assert_eq!((a.status, a.header("range")), (204, Some("0-0")), "{a:?}");
}

/// With the connection limit reached, a new connection waits until one closes.
#[test]
fn connection_limit_holds_new_connections_until_one_closes() {
    let b = Berth::start_with_env(&[("BERTH_MAX_CONNECTIONS", "4")]);
    let mut held: Vec<Conn> = (0..4).map(|_| Conn::open(&b)).collect();
    for c in &mut held {
        assert_eq!(c.call("GET", "/v2/", &[], b"").status, 200);
    }
    let mut extra = Conn::open(&b);
    extra.send("GET", "/v2/", &[], b"");
    extra.r.get_mut().set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    let mut buf = [0u8; 1];
    assert!(extra.r.get_mut().peek(&mut buf).is_err(), "a fifth connection must not be served while four are open");
    drop(held.pop());
    extra.r.get_mut().set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let a = extra.read(false).expect("served once a connection closed");
    assert_eq!(a.status, 200);
}

/// A handler that panics answers 500 with a request id; the server goes on serving.
#[test]
fn a_panicking_handler_answers_500_and_the_server_goes_on() {
    let b = Berth::start_with_env(&[("BERTH_TEST_HOOKS", "1")]);
    for _ in 0..3 {
        let mut c = Conn::open(&b);
        let a = c.call("GET", "/__berth/test/panic", &[], b"");
        assert_eq!((a.status, a.error_code().as_str()), (500, "UNKNOWN"), "{a:?}");
        let id = a.header("x-request-id").expect("a request id").to_string();
        let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["errors"][0]["detail"]["requestId"], id);
        let mut c = Conn::open(&b);
        assert_eq!(c.call("GET", "/v2/", &[], b"").status, 200);
    }
}
