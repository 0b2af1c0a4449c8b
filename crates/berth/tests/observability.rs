//! Metrics, request ids and access logs of a real `berth serve`: `/metrics` values move exactly
//! as pushes, pulls and denials happen, the exposition passes `promtool check metrics`, every
//! response carries a request id that the access log line of that request also carries, and
//! `admin_listen` moves the operator endpoints to a listener of their own.

mod common;

use common::{ACCESS_KEY_ID, Berth, SECRET_ACCESS_KEY, ecr_call, push_small_image};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// One sample of the exposition: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let mut labels = BTreeMap::new();
                // Label values here never hold `",`.
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").expect("k=\"v\"");
                    labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                }
                (name.to_string(), labels)
            }
        };
        out.push((name, labels, value));
    }
    out
}

async fn metrics_text(url: &str) -> String {
    let r = reqwest::get(format!("{url}/metrics")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    r.text().await.unwrap()
}

/// The value of the series `name` with exactly these labels among its own (others ignored);
/// 0 when absent.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, _, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_exactly_with_pushes_pulls_and_denials() {
    let b = Berth::start_with_env(&[("BERTH_METRICS_REPOSITORY_LABELS", "2")]);
    let c = b.client();
    let before = parse_exposition(&metrics_text(&b.url).await);
    assert_eq!(value(&before, "berth_http_requests_total", &[("operation", "PutImage")]), 0.0);

    let digest = push_small_image(&c, &b.url, "obs/app", "v1", "one").await;
    for _ in 0..3 {
        let r = c
            .get(format!("{}/v2/obs/app/manifests/v1", b.url))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    }
    let r = c.get(format!("{}/v2/obs/app/manifests/nope", b.url)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // Two more repositories: the label cap (2) sends the third to `_other`.
    push_small_image(&c, &b.url, "obs/two", "v1", "two").await;
    push_small_image(&c, &b.url, "obs/three", "v1", "three").await;

    // An IAM user without permissions is denied by IAM, twice.
    b.admin_ok(&["create-user", "--user-name", "nobody"]);
    let key: Value = serde_json::from_str(&b.admin_ok(&["create-access-key", "--user-name", "nobody"])).unwrap();
    let (id, secret) =
        (key["AccessKey"]["AccessKeyId"].as_str().unwrap(), key["AccessKey"]["SecretAccessKey"].as_str().unwrap());
    for _ in 0..2 {
        let (status, body) = ecr_call(&b, id, secret, "DescribeRepositories", &json!({})).await;
        assert_eq!((status, body["__type"].as_str()), (400, Some("AccessDeniedException")), "{body}");
    }
    let (status, _) = ecr_call(&b, ACCESS_KEY_ID, SECRET_ACCESS_KEY, "DescribeRepositories", &json!({})).await;
    assert_eq!(status, 200);

    // The gauges read from the database are refreshed at most once a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = parse_exposition(&metrics_text(&b.url).await);
    let req = |api: &str, op: &str, status: &str| {
        value(&after, "berth_http_requests_total", &[("api", api), ("operation", op), ("status", status)])
            - value(&before, "berth_http_requests_total", &[("api", api), ("operation", op), ("status", status)])
    };
    assert_eq!(req("oci", "PutImage", "201"), 3.0);
    assert_eq!(req("oci", "BatchGetImage", "200"), 3.0);
    assert_eq!(req("oci", "BatchGetImage", "404"), 1.0);
    assert_eq!(req("oci", "InitiateLayerUpload", "202"), 3.0);
    assert_eq!(req("oci", "CompleteLayerUpload", "201"), 3.0);
    assert_eq!(req("ecr", "DescribeRepositories", "400"), 2.0);
    assert_eq!(req("ecr", "DescribeRepositories", "200"), 1.0);
    assert_eq!(value(&after, "berth_authz_denials_total", &[("action", "ecr:DescribeRepositories")]), 2.0);
    let pulls = |repo: &str| value(&after, "berth_repository_pull_count_total", &[("repository", repo)]);
    let pushes = |repo: &str| value(&after, "berth_repository_push_count_total", &[("repository", repo)]);
    assert_eq!((pulls("obs/app"), pushes("obs/app")), (3.0, 1.0));
    assert_eq!((pushes("obs/two"), pushes("_other"), pushes("obs/three")), (1.0, 1.0, 0.0), "the cap of 2 labels");
    // Three config blobs pushed; three manifests pulled.
    let config_bytes: f64 = value(&after, "berth_pushed_bytes_total", &[]);
    assert!(config_bytes > 3.0 * 100.0 && config_bytes < 3.0 * 200.0, "pushed bytes {config_bytes}");
    assert!(value(&after, "berth_pulled_bytes_total", &[]) > 0.0);
    // Durations: one observation per request in the histogram's count.
    assert_eq!(
        value(&after, "berth_http_request_duration_seconds_count", &[("api", "oci"), ("operation", "PutImage")]),
        3.0
    );
    // Gauges read from the database.
    assert_eq!(value(&after, "berth_storage_blobs", &[]), 3.0);
    assert_eq!(value(&after, "berth_storage_bytes", &[]), config_bytes, "the blobs are the configs pushed");
    assert_eq!(value(&after, "berth_upload_sessions_open", &[]), 0.0);
    // An unknown operation never becomes a label.
    let (status, _) = ecr_call(&b, ACCESS_KEY_ID, SECRET_ACCESS_KEY, "NoSuchOperation", &json!({})).await;
    assert_eq!(status, 400);
    let text = metrics_text(&b.url).await;
    assert!(!text.contains("NoSuchOperation"), "an unknown operation is labelled `unknown`");
    assert_eq!(
        value(&parse_exposition(&text), "berth_http_requests_total", &[("api", "ecr"), ("operation", "unknown")]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_exposition_passes_promtool() {
    if !common::have("promtool") {
        assert!(
            std::env::var("BERTH_REQUIRE_CLIENTS").map(|v| v != "1").unwrap_or(true),
            "promtool is required (BERTH_REQUIRE_CLIENTS=1): apt-get install prometheus"
        );
        eprintln!("SKIP: promtool is not installed");
        return;
    }
    let b = Berth::start();
    let c = b.client();
    push_small_image(&c, &b.url, "lint/app", "v1", "x").await;
    let _ = c.get(format!("{}/v2/lint/app/manifests/v1", b.url)).send().await.unwrap();
    let _ = c.get(format!("{}/v2/lint/app/manifests/none", b.url)).send().await.unwrap();
    let text = metrics_text(&b.url).await;
    for family in ["berth_http_requests_total", "berth_http_request_duration_seconds_bucket", "berth_storage_bytes"] {
        assert!(text.contains(family), "{family} is exported:\n{text}");
    }
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every response carries a request id; OCI error bodies carry it in `detail`; the access log
/// line of the request (text and JSON formats) names it with the method, path, status,
/// operation and principal, and never a credential.
#[tokio::test(flavor = "multi_thread")]
async fn request_ids_tie_responses_to_access_log_lines() {
    for format in ["text", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        let log_s = log.to_str().unwrap().to_string();
        let b = Berth::start_with_env(&[
            ("BERTH_TEST_STDERR", log_s.as_str()),
            ("RUST_LOG", "info"),
            ("BERTH_LOG_FORMAT", format),
        ]);
        let c = b.client();
        let r = c.get(format!("{}/v2/nothing/here/manifests/v1", b.url)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404);
        let oci_id = r.headers()["x-amzn-requestid"].to_str().unwrap().to_string();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "NAME_UNKNOWN");
        assert_eq!(body["errors"][0]["detail"]["requestId"], oci_id.as_str(), "{body}");
        assert_eq!(body["errors"][0]["detail"]["name"], "nothing/here", "the detail keeps what it had");

        let r = reqwest::get(format!("{}/v2/", b.url)).await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
        assert_eq!(r.headers()["x-amzn-requestid"].len(), 36);
        let (status, _) = ecr_call(&b, ACCESS_KEY_ID, SECRET_ACCESS_KEY, "GetAuthorizationToken", &json!({})).await;
        assert_eq!(status, 200);

        // The access log is written as the response goes; give it a moment to reach the file.
        let mut text = String::new();
        for _ in 0..100 {
            text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("GetAuthorizationToken") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!text.contains(&b.password), "no registry password in the log");
        assert!(!text.contains(SECRET_ACCESS_KEY), "no secret key in the log");
        let line =
            text.lines().find(|l| l.contains(&oci_id)).unwrap_or_else(|| panic!("a line with {oci_id}:\n{text}"));
        if format == "json" {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("JSON line ({e}): {line}"));
            let f = &v["fields"];
            assert_eq!(v["target"], "berth::access", "{v}");
            assert_eq!(v["level"], "INFO", "{v}");
            assert_eq!((f["method"].as_str(), f["status"].as_u64()), (Some("GET"), Some(404)), "{v}");
            assert_eq!(f["path"], "/v2/nothing/here/manifests/v1", "{v}");
            assert_eq!(f["operation"], "BatchGetImage", "{v}");
            assert_eq!(f["error"], "NAME_UNKNOWN", "{v}");
            assert_eq!(f["principal"], format!("arn:aws:iam::{}:root", common::ACCOUNT_ID), "{v}");
            assert_eq!(v["spans"][0]["id"], oci_id.as_str(), "{v}");
            for l in text.lines().filter(|l| l.starts_with('{')) {
                serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("every line is JSON ({e}): {l}"));
            }
        } else {
            for want in
                ["GET", "/v2/nothing/here/manifests/v1", "status=404", "operation=\"BatchGetImage\"", "NAME_UNKNOWN"]
            {
                assert!(line.contains(want), "{want:?} in {line}");
            }
        }
        assert!(
            text.lines().any(|l| l.contains("GetAuthorizationToken") && l.contains("status") && l.contains("200")),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_listen_moves_metrics_and_probes_to_their_own_listener() {
    let b = Berth::start_with_env(&[("BERTH_ADMIN_LISTEN", "127.0.0.1:0")]);
    let admin = b.admin_url.clone().expect("the server announces its admin listener");
    assert_ne!(admin, b.url);
    for (path, status) in [("/metrics", 200), ("/healthz", 200), ("/readyz", 200), ("/v2/", 404), ("/", 404)] {
        let r = reqwest::get(format!("{admin}{path}")).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "admin {path}");
    }
    // The main listener no longer answers them (they fall to the registry's routes).
    for path in ["/metrics", "/healthz", "/readyz"] {
        let r = reqwest::get(format!("{}{path}", b.url)).await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "main {path}");
    }
    let r = reqwest::get(format!("{}/v2/", b.url)).await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "the registry still answers on the main listener");

    // A bad admin_listen stops the server with a clear error.
    let out = std::process::Command::new(common::berth_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "nowhere"])
        .env("BERTH_DATA_DIR", b.data_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected HOST:PORT, got 'nowhere'"), "{out:?}");
    let out = std::process::Command::new(common::berth_bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("BERTH_DATA_DIR", b.data_dir())
        .env("BERTH_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be \"text\" or \"json\", got 'xml'"), "{out:?}");
}

/// The Grafana dashboard in the repository charts only metrics Berth exports (by their
/// families' HELP lines), and each of its queries names one.
#[tokio::test(flavor = "multi_thread")]
async fn the_grafana_dashboard_uses_exported_metrics() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/grafana/berth-dashboard.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let b = Berth::start_with_env(&[("BERTH_JOB_POLL_MS", "50")]);
    // Something in every family that only appears once used.
    let c = b.client();
    b.admin_ok(&["create-webhook", "--url", "http://127.0.0.1:9/hook"]);
    push_small_image(&c, &b.url, "dash/app", "v1", "x").await;
    let _ = c.get(format!("{}/v2/dash/app/manifests/v1", b.url)).send().await.unwrap();
    b.admin_ok(&["create-user", "--user-name", "nobody"]);
    let key: Value = serde_json::from_str(&b.admin_ok(&["create-access-key", "--user-name", "nobody"])).unwrap();
    let (id, secret) =
        (key["AccessKey"]["AccessKeyId"].as_str().unwrap(), key["AccessKey"]["SecretAccessKey"].as_str().unwrap());
    let (status, _) = ecr_call(&b, id, secret, "DescribeRepositories", &json!({})).await;
    assert_eq!(status, 400);
    // Until a job has finished (the start's periodic jobs) and the webhook was attempted.
    let mut text = String::new();
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = metrics_text(&b.url).await;
        if text.contains("berth_jobs_total{") && text.contains("berth_webhook_deliveries_total{") {
            break;
        }
    }
    let families: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# HELP ")).filter_map(|l| l.split(' ').next()).collect();
    let mut exprs = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            exprs += 1;
            let names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("berth_"))
                .collect();
            assert!(!names.is_empty(), "{expr} charts no Berth metric");
            for n in names {
                let family = n.strip_suffix("_bucket").unwrap_or(n);
                assert!(
                    families.contains(&family),
                    "{} charts {n}, which Berth does not export: {families:?}",
                    panel["title"]
                );
            }
        }
    }
    assert!(exprs >= 15, "{exprs} queries");
}
