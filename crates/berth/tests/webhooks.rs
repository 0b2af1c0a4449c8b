//! Webhooks end to end: real `berth serve` processes deliver the event log to a receiver this
//! test runs on 127.0.0.1 (a minimal HTTP/1.1 server that can answer any status, or be down,
//! i.e. refuse connections). The receiver checks signatures independently of Berth's code:
//! `berth-signature: t=<secs>,v1=<hex HMAC-SHA256(secret, "<secs>." + body)>`.

mod common;

use common::{ACCOUNT_ID, Berth, REGION, push_small_image};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The status it was answered with.
    status: u16,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A webhook receiver on 127.0.0.1: answers every POST with `status`, one connection at a time
/// and `Connection: close`, so that stopping it leaves nothing listening.
struct Receiver {
    port: u16,
    status: Arc<AtomicU16>,
    got: Arc<Mutex<Vec<Got>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    fn start(rt: &tokio::runtime::Runtime) -> Receiver {
        let mut r = Receiver { port: 0, status: Arc::new(AtomicU16::new(200)), got: Arc::default(), task: None };
        r.listen(rt);
        r
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// (Re)start listening on the same port (a fresh one the first time).
    fn listen(&mut self, rt: &tokio::runtime::Runtime) {
        let listener = rt.block_on(async {
            for _ in 0..100 {
                match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                    Ok(l) => return l,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            panic!("cannot bind the receiver's port {}", self.port)
        });
        self.port = listener.local_addr().unwrap().port();
        let (status, got) = (self.status.clone(), self.got.clone());
        self.task = Some(rt.spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let Ok(Ok((headers, body))) =
                    tokio::time::timeout(Duration::from_secs(10), read_request(&mut sock)).await
                else {
                    continue;
                };
                let code = status.load(Ordering::SeqCst);
                got.lock().unwrap().push(Got { headers, body, status: code });
                let answer = format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = sock.write_all(answer.as_bytes()).await;
                let _ = sock.shutdown().await;
            }
        }));
    }

    /// Stop listening: connections are refused until [`Receiver::listen`].
    fn stop(&mut self, rt: &tokio::runtime::Runtime) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = rt.block_on(t);
        }
    }

    fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// The event ids of the deliveries answered 2xx, in the order they arrived, once each.
    fn delivered_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for g in self.got().iter().filter(|g| (200..300).contains(&g.status)) {
            let id = g.json()["id"].as_str().unwrap().to_string();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> std::io::Result<(Vec<(String, String)>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = buf[end..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((headers, body))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Poll `check` every 50 ms until it holds; panics with `what` after `limit`.
fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Environment of a node: fast retries and job handover.
fn fast(node: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("BERTH_NODE_ID", node),
        ("BERTH_WEBHOOK_BACKOFF_MS", "100"),
        ("BERTH_JOB_LEASE_MS", "1500"),
        ("BERTH_JOB_RENEW_MS", "300"),
        ("BERTH_JOB_POLL_MS", "50"),
    ]
}

/// `create-webhook` on `b`; returns (webhook id, secret) after checking what it printed.
fn create_webhook(b: &Berth, url: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec!["create-webhook", "--url", url];
    args.extend_from_slice(extra);
    let out: Value = serde_json::from_str(&b.admin_ok(&args)).expect("create-webhook prints JSON");
    let id = out["WebhookId"].as_str().expect("WebhookId").to_string();
    let secret = out["Secret"].as_str().expect("Secret").to_string();
    assert!(id.starts_with("wh-"), "{out}");
    assert!(secret.starts_with("whsec_") && secret.len() == 6 + 64, "{out}");
    assert_eq!(out["Url"], url);
    assert_eq!(
        (out["Pending"].as_u64(), out["Delivered"].as_u64(), out["DeadLettered"].as_u64()),
        (Some(0), Some(0), Some(0))
    );
    (id, secret)
}

fn list_webhooks(b: &Berth) -> Vec<Value> {
    let out: Value = serde_json::from_str(&b.admin_ok(&["list-webhooks"])).expect("list-webhooks prints JSON");
    out.as_array().expect("an array").clone()
}

fn webhook(b: &Berth, id: &str) -> Value {
    list_webhooks(b).into_iter().find(|w| w["WebhookId"] == id).unwrap_or_else(|| panic!("webhook {id} listed"))
}

/// The receiver's own check of a delivery's signature (not Berth's code): well-formed, within
/// five minutes, and the HMAC over "<t>." + body.
fn assert_signed(g: &Got, secret: &str) {
    let h = g.header("berth-signature").expect("berth-signature header");
    let (t, v1) = h.split_once(',').expect("t=..,v1=..");
    let t: i64 = t.strip_prefix("t=").expect("t=").parse().expect("numeric t");
    let v1 = v1.strip_prefix("v1=").expect("v1=");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((now - t).abs() < 300, "timestamp {t} is not now ({now})");
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(&g.body);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    assert_eq!(v1, hex::encode(ring::hmac::sign(&key, &signed).as_ref()), "signature over the body");
    let wrong = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"whsec_not-the-secret");
    assert_ne!(v1, hex::encode(ring::hmac::sign(&wrong, &signed).as_ref()));
}

/// An "ECR Image Action" envelope as ECR publishes it to EventBridge.
fn assert_image_action(e: &Value, action: &str, repo: &str, digest: &str, tag: &str) {
    assert_eq!(e["version"], "0", "{e}");
    assert_eq!(e["source"], "aws.ecr", "{e}");
    assert_eq!(e["detail-type"], "ECR Image Action", "{e}");
    assert_eq!(e["account"], ACCOUNT_ID, "{e}");
    assert_eq!(e["region"], REGION, "{e}");
    assert_eq!(e["resources"], json!([]), "{e}");
    let time = e["time"].as_str().expect("time");
    assert!(
        time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "time {time} is ISO 8601 to the second"
    );
    assert!(uuid_like(e["id"].as_str().expect("id")), "{e}");
    let d = &e["detail"];
    assert_eq!(d["result"], "SUCCESS", "{e}");
    assert_eq!(d["action-type"], action, "{e}");
    assert_eq!(d["repository-name"], repo, "{e}");
    assert_eq!(d["image-digest"], digest, "{e}");
    assert_eq!(d["image-tag"], tag, "{e}");
    if action == "PUSH" {
        assert_eq!(d["manifest-media-type"], "application/vnd.oci.image.manifest.v1+json", "{e}");
    }
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

#[test]
fn pushes_and_deletes_reach_a_webhook_signed_in_order_and_filters_apply() {
    let rt = runtime();
    let b = Berth::start_with_env(&fast("n1"));
    let all = Receiver::start(&rt);
    let filtered = Receiver::start(&rt);
    let (all_id, all_secret) = create_webhook(&b, &all.url(), &[]);
    let (f_id, f_secret) =
        create_webhook(&b, &filtered.url(), &["--events", "ECR Image Action", "--repository-filter", "team-b/"]);
    let w = webhook(&b, &f_id);
    assert_eq!((w["Events"].clone(), w["RepositoryFilter"].clone()), (json!(["ECR Image Action"]), json!("team-b/")));
    assert_eq!(webhook(&b, &all_id)["Events"], json!(["all"]));

    let c = b.client();
    let d1 = rt.block_on(push_small_image(&c, &b.url, "team-a/app", "v1", "one"));
    let d1b = rt.block_on(push_small_image(&c, &b.url, "team-a/app", "latest", "one"));
    assert_eq!(d1, d1b);
    // Re-pushing a tag where it already is changes nothing and publishes nothing.
    rt.block_on(push_small_image(&c, &b.url, "team-a/app", "v1", "one"));
    let d2 = rt.block_on(push_small_image(&c, &b.url, "team-b/api", "v1", "two"));
    let r = rt.block_on(c.delete(format!("{}/v2/team-a/app/manifests/{d1}", b.url)).send()).unwrap();
    assert_eq!(r.status().as_u16(), 202);

    wait_until(Duration::from_secs(30), "five deliveries", || all.delivered_ids().len() >= 5);
    std::thread::sleep(Duration::from_millis(500));
    let got = all.got();
    assert_eq!(got.len(), 5, "one delivery per event, none for the no-op re-push: {got:#?}");
    for g in &got {
        assert_eq!(g.status, 200);
        assert_signed(g, &all_secret);
        assert_eq!(g.header("content-type"), Some("application/json"));
        assert_eq!(g.header("berth-webhook-id"), Some(all_id.as_str()));
        assert_eq!(g.header("berth-event-id"), g.json()["id"].as_str());
        assert_eq!(g.header("berth-delivery-attempt"), Some("1"));
        assert!(g.header("user-agent").unwrap_or_default().starts_with("Berth-Webhook/"));
    }
    let events: Vec<Value> = got.iter().map(Got::json).collect();
    assert_image_action(&events[0], "PUSH", "team-a/app", &d1, "v1");
    assert_image_action(&events[1], "PUSH", "team-a/app", &d1, "latest");
    assert_image_action(&events[2], "PUSH", "team-b/api", &d2, "v1");
    // Deleting a manifest deletes both its tags: one DELETE per tag.
    let mut deleted: Vec<&str> = events[3..].iter().map(|e| e["detail"]["image-tag"].as_str().unwrap()).collect();
    deleted.sort();
    assert_eq!(deleted, ["latest", "v1"]);
    for e in &events[3..] {
        let tag = e["detail"]["image-tag"].as_str().unwrap();
        assert_image_action(e, "DELETE", "team-a/app", &d1, tag);
    }

    // The filtered webhook got only team-b's push.
    wait_until(Duration::from_secs(10), "the filtered delivery", || filtered.delivered_ids().len() == 1);
    let fg = filtered.got();
    assert_eq!(fg.len(), 1, "{fg:#?}");
    assert_signed(&fg[0], &f_secret);
    assert_image_action(&fg[0].json(), "PUSH", "team-b/api", &d2, "v1");
    assert_eq!(fg[0].json()["id"], events[2]["id"], "one event, one id for every webhook");

    let w = webhook(&b, &all_id);
    assert_eq!(
        (w["Pending"].as_u64(), w["Delivered"].as_u64(), w["DeadLettered"].as_u64()),
        (Some(0), Some(5), Some(0)),
        "{w}"
    );
    assert_eq!(w["LastError"], Value::Null);

    // Deleting a webhook stops its deliveries; deleting it again names it.
    b.admin_ok(&["delete-webhook", "--webhook-id", &all_id]);
    assert!(list_webhooks(&b).iter().all(|w| w["WebhookId"] != all_id.as_str()));
    let out = b.admin(&["delete-webhook", "--webhook-id", &all_id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("no webhook '{all_id}'")), "{out:?}");
    rt.block_on(push_small_image(&c, &b.url, "team-b/api", "v2", "three"));
    wait_until(Duration::from_secs(10), "the filtered webhook's second delivery", || {
        filtered.delivered_ids().len() == 2
    });
    assert_eq!(all.got().len(), 5, "a deleted webhook gets nothing more");
}

/// Images a lifecycle policy expires are published as "ECR Lifecycle Policy Action" (naming the
/// rule) after their "ECR Image Action" DELETEs; a webhook subscribed to the lifecycle type alone
/// gets only those.
#[test]
fn lifecycle_expiries_are_published() {
    let rt = runtime();
    let b = Berth::start_with_env(&fast("n1"));
    let lifecycle_only = Receiver::start(&rt);
    let (_, secret) = create_webhook(&b, &lifecycle_only.url(), &["--events", "ECR Lifecycle Policy Action"]);
    let c = b.client();
    let old = rt.block_on(push_small_image(&c, &b.url, "lc/app", "old", "one"));
    std::thread::sleep(Duration::from_millis(5));
    let new = rt.block_on(push_small_image(&c, &b.url, "lc/app", "new", "two"));
    let policy = json!({"rules": [{"rulePriority": 4, "description": "keep one",
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
        "action": {"type": "expire"}}]});
    let (status, body) = rt.block_on(common::ecr_call(
        &b,
        common::ACCESS_KEY_ID,
        common::SECRET_ACCESS_KEY,
        "PutLifecyclePolicy",
        &json!({"repositoryName": "lc/app", "lifecyclePolicyText": policy.to_string()}),
    ));
    assert_eq!(status, 200, "{body}");
    let out = b.cli(&["lifecycle", "run"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 image(s) expired"), "{out:?}");
    wait_until(Duration::from_secs(30), "the lifecycle delivery", || lifecycle_only.delivered_ids().len() == 1);
    std::thread::sleep(Duration::from_millis(300));
    let got = lifecycle_only.got();
    assert_eq!(got.len(), 1, "only the lifecycle event: {got:#?}");
    assert_signed(&got[0], &secret);
    let e = got[0].json();
    assert_eq!(
        (e["detail-type"].as_str(), e["source"].as_str()),
        (Some("ECR Lifecycle Policy Action"), Some("aws.ecr"))
    );
    assert_eq!(
        e["detail"],
        json!({"action-type": "EXPIRE", "result": "SUCCESS", "repository-name": "lc/app",
               "image-digest": old, "image-tags": ["old"], "rule-priority": 4})
    );
    // The image that stays still resolves; the expired one does not.
    let r = rt.block_on(c.get(format!("{}/v2/lc/app/manifests/{new}", b.url)).send()).unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = rt.block_on(c.get(format!("{}/v2/lc/app/manifests/{old}", b.url)).send()).unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

#[test]
fn create_webhook_refuses_what_it_cannot_honour() {
    let b = Berth::start_with_env(&[]);
    for (args, says) in [
        (vec!["--url", "ftp://example.com/x"], "must be http:// or https://"),
        (vec!["--url", "not a url"], "invalid --url"),
        (vec!["--url", "http://127.0.0.1:9/x", "--events", "ECR Replication Action"], "ECR Replication Action"),
        (vec!["--url", "http://127.0.0.1:9/x", "--events", ""], "--events"),
        (vec!["--url", "http://127.0.0.1:9/x", "--repository-filter", ""], "--repository-filter"),
        (vec!["--url", "http://127.0.0.1:9/x", "--account-id", "999999999999"], "no account '999999999999'"),
    ] {
        let mut all = vec!["create-webhook"];
        all.extend(args.iter().copied());
        let out = b.admin(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{all:?} must fail");
        assert!(err.contains(says), "{all:?}: error {err:?} must say {says:?}");
    }
    assert_eq!(list_webhooks(&b), Vec::<Value>::new(), "nothing was stored");
}

#[test]
fn nothing_is_lost_while_the_receiver_is_down_or_berth_is_killed() {
    let rt = runtime();
    let mut b = Berth::start_with_env(&fast("n1"));
    let mut rx = Receiver::start(&rt);
    let (id, secret) = create_webhook(&b, &rx.url(), &[]);
    let c = b.client();

    // The receiver fails: the head delivery is retried with backoff, the others wait behind it.
    rx.answer(503);
    let mut tags = Vec::new();
    for t in ["t1", "t2", "t3"] {
        rt.block_on(push_small_image(&c, &b.url, "app", t, t));
        tags.push(t);
    }
    wait_until(Duration::from_secs(20), "three failed attempts", || rx.got().len() >= 3);
    let first = rx.got();
    let head = first[0].json()["detail"]["image-tag"].clone();
    assert_eq!(head, "t1");
    assert!(first.iter().all(|g| g.json()["detail"]["image-tag"] == "t1"), "only the head is attempted: {first:#?}");
    let attempts: Vec<&str> = first.iter().filter_map(|g| g.header("berth-delivery-attempt")).collect();
    assert_eq!(&attempts[..3], ["1", "2", "3"]);
    let w = webhook(&b, &id);
    assert_eq!(w["Pending"].as_u64(), Some(3), "{w}");
    assert_eq!(w["LastError"], "HTTP 503", "{w}");

    // Now it is down altogether (connections refused), and Berth is killed with work pending.
    rx.stop(&rt);
    rt.block_on(push_small_image(&c, &b.url, "app", "t4", "t4"));
    tags.push("t4");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(webhook(&b, &id)["LastError"], "could not connect");
    b.restart_after_kill9();
    let c = b.client();
    rt.block_on(push_small_image(&c, &b.url, "app", "t5", "t5"));
    tags.push("t5");
    rx.answer(200);
    rx.listen(&rt);
    wait_until(Duration::from_secs(30), "every event delivered after the outage", || rx.delivered_ids().len() >= 5);

    // A push, then kill -9 at once: the event was committed with the push, so it is delivered
    // after the restart.
    rt.block_on(push_small_image(&c, &b.url, "app", "t6", "t6"));
    tags.push("t6");
    b.restart_after_kill9();
    wait_until(Duration::from_secs(30), "the event of the push before the kill", || rx.delivered_ids().len() >= 6);

    let ok: Vec<Got> = rx.got().into_iter().filter(|g| g.status == 200).collect();
    for g in &ok {
        assert_signed(g, &secret);
    }
    // In order, each event at least once; a repeat (at least once) is the same event, same body.
    let delivered_tags: Vec<String> = rx
        .delivered_ids()
        .iter()
        .map(|id| {
            let copies: Vec<&Got> = ok.iter().filter(|g| g.json()["id"] == id.as_str()).collect();
            assert!(copies.iter().all(|g| g.body == copies[0].body), "repeats carry the same body");
            copies[0].json()["detail"]["image-tag"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(delivered_tags, tags);
    let w = webhook(&b, &id);
    assert_eq!(
        (w["Pending"].as_u64(), w["Delivered"].as_u64(), w["DeadLettered"].as_u64()),
        (Some(0), Some(6), Some(0)),
        "{w}"
    );
}

#[test]
fn failed_deliveries_are_dead_lettered_visibly_and_can_be_redriven() {
    let rt = runtime();
    let mut env = fast("n1");
    env.push(("BERTH_WEBHOOK_MAX_ATTEMPTS", "2"));
    let b = Berth::start_with_env(&env);
    let rx = Receiver::start(&rt);
    rx.answer(500);
    let (id, _secret) = create_webhook(&b, &rx.url(), &[]);
    let c = b.client();
    rt.block_on(push_small_image(&c, &b.url, "app", "a", "a"));
    rt.block_on(push_small_image(&c, &b.url, "app", "b", "b"));
    wait_until(Duration::from_secs(20), "two dead letters", || webhook(&b, &id)["DeadLettered"].as_u64() == Some(2));
    let w = webhook(&b, &id);
    assert_eq!((w["Pending"].as_u64(), w["Delivered"].as_u64()), (Some(0), Some(0)), "{w}");
    assert_eq!(w["LastError"], "HTTP 500");
    let got = rx.got();
    assert_eq!(got.len(), 4, "two attempts per delivery: {got:#?}");
    let tags: Vec<Value> = got.iter().map(|g| g.json()["detail"]["image-tag"].clone()).collect();
    assert_eq!(tags, [json!("a"), json!("a"), json!("b"), json!("b")]);

    // Later events still go (a dead letter does not block the endpoint), and a redrive replays
    // the dead ones.
    rx.answer(200);
    rt.block_on(push_small_image(&c, &b.url, "app", "c", "c"));
    wait_until(Duration::from_secs(20), "the next event", || rx.delivered_ids().len() == 1);
    let out: Value = serde_json::from_str(&b.admin_ok(&["redrive-webhook", "--webhook-id", &id])).unwrap();
    assert_eq!(out, json!({"Redriven": 2}));
    wait_until(Duration::from_secs(20), "the redriven deliveries", || rx.delivered_ids().len() == 3);
    let order: Vec<Value> =
        rx.got().iter().filter(|g| g.status == 200).map(|g| g.json()["detail"]["image-tag"].clone()).collect();
    assert_eq!(order, [json!("c"), json!("a"), json!("b")]);
    let w = webhook(&b, &id);
    assert_eq!(
        (w["Pending"].as_u64(), w["Delivered"].as_u64(), w["DeadLettered"].as_u64()),
        (Some(0), Some(3), Some(0)),
        "{w}"
    );
    let out = b.admin(&["redrive-webhook", "--webhook-id", "wh-nope"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no webhook 'wh-nope'"));
}

/// Two nodes share the metadata (PostgreSQL with `BERTH_TEST_BACKEND=postgres`, else one SQLite
/// file): each event is delivered once, whichever node took the push, and when the node that
/// consumes dies the other takes over.
#[test]
fn two_nodes_deliver_each_event_once() {
    let rt = runtime();
    let n1 = Berth::start_with_env(&fast("n1"));
    let mut n2 = n1.another_node(&[("BERTH_NODE_ID", "n2")]);
    let rx = Receiver::start(&rt);
    let (id, _) = create_webhook(&n1, &rx.url(), &[]);
    let (c1, c2) = (n1.client(), n2.client());
    let mut tags = Vec::new();
    for i in 0..10 {
        let tag = format!("n{i}");
        let (c, url) = if i % 2 == 0 { (&c1, &n1.url) } else { (&c2, &n2.url) };
        rt.block_on(push_small_image(c, url, "shared", &tag, &tag));
        tags.push(tag);
    }
    wait_until(Duration::from_secs(30), "ten deliveries", || rx.delivered_ids().len() >= 10);
    std::thread::sleep(Duration::from_secs(1));
    let got = rx.got();
    assert_eq!(got.len(), 10, "each event exactly once while both nodes are healthy: {got:#?}");
    let order: Vec<String> =
        got.iter().map(|g| g.json()["detail"]["image-tag"].as_str().unwrap().to_string()).collect();
    assert_eq!(order, tags);

    // Node 2 dies; node 1 delivers what is pushed next (taking over the consumer if node 2 held it).
    n2.kill9();
    for i in 10..13 {
        let tag = format!("n{i}");
        rt.block_on(push_small_image(&c1, &n1.url, "shared", &tag, &tag));
        tags.push(tag);
    }
    wait_until(Duration::from_secs(30), "deliveries after a node died", || rx.delivered_ids().len() >= 13);
    let w = webhook(&n1, &id);
    assert_eq!((w["Pending"].as_u64(), w["Delivered"].as_u64()), (Some(0), Some(13)), "{w}");
}
