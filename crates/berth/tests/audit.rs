//! The audit trail end to end: CloudTrail's LookupEvents on the real server (validation, errors,
//! authorization, paging over records the test writes into the server's store), and `berth
//! audit verify` on a trail that was tampered with in the database.
//!
//! Calls made over HTTP are recorded by the dispatch (`crates/server/src/obs.rs`) and read
//! back here through LookupEvents.

mod common;

use berth_events::audit::{ApiCall, AuditSink, CallerIdentity, SinkSettings};
use berth_meta::MetadataStore;
use common::{ACCESS_KEY_ID, ACCOUNT_ID, Berth, SECRET_ACCESS_KEY};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const TARGET: &str = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101";

/// One CloudTrail operation, SigV4-signed for service `cloudtrail` in `us-east-1`; the HTTP
/// status and the JSON body.
async fn cloudtrail(b: &Berth, key_id: &str, secret: &str, op: &str, body: &Value) -> (u16, Value) {
    common::aws_json_call(b, key_id, secret, "cloudtrail", &format!("{TARGET}.{op}"), body).await
}

async fn lookup(b: &Berth, body: Value) -> (u16, Value) {
    cloudtrail(b, ACCESS_KEY_ID, SECRET_ACCESS_KEY, "LookupEvents", &body).await
}

/// The server's metadata store, opened by the test process.
async fn store(b: &Berth) -> Arc<dyn MetadataStore> {
    match b.extra_env.iter().find(|(k, _)| k == "BERTH_METADATA").map(|(_, v)| v.clone()) {
        Some(url) => Arc::new(berth_meta::postgres::PgStore::open(&url).await.unwrap()),
        None => Arc::new(berth_meta::sqlite::SqliteStore::open(&b.data_dir.join("berth.db")).await.unwrap()),
    }
}

/// Run SQL on the server's metadata database (to tamper with it).
fn call(account: &str, name: &str, repo: &str, time_ms: i64) -> ApiCall {
    ApiCall {
        event_time: time_ms,
        event_source: "ecr.amazonaws.com".into(),
        event_name: name.into(),
        aws_region: "us-east-1".into(),
        source_ip: Some("127.0.0.1".into()),
        user_agent: Some("test".into()),
        identity: Some(CallerIdentity {
            kind: "Root".into(),
            principal_id: account.into(),
            arn: format!("arn:aws:iam::{account}:root"),
            account_id: account.into(),
            access_key_id: ACCESS_KEY_ID.into(),
            user_name: None,
        }),
        request_parameters: json!({"repositoryName": repo}),
        response_elements: Value::Null,
        error_code: None,
        error_message: None,
        request_id: format!("req-{time_ms}"),
        read_only: name.starts_with("Describe"),
        resources: vec![("AWS::ECR::Repository".into(), format!("arn:aws:ecr:us-east-1:{account}:repository/{repo}"))],
        recipient_account_id: account.into(),
        event_type: "AwsApiCall".into(),
        ..ApiCall::default()
    }
}

/// Write `calls` to the server's store through a sink of chain `chain`.
async fn write(b: &Berth, chain: &str, calls: Vec<ApiCall>) {
    let s = store(b).await;
    let sink = AuditSink::start(s, chain.into(), SinkSettings::default()).await.unwrap();
    for c in calls {
        sink.record(c);
    }
    sink.flush().await;
}

fn event_ids(v: &Value) -> Vec<String> {
    v["Events"].as_array().unwrap().iter().map(|e| e["EventName"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn lookup_events_validates_its_input_with_cloudtrails_errors() {
    let b = Berth::start();
    let (status, v) = lookup(&b, json!({})).await;
    assert_eq!((status, v), (200, json!({"Events": []})));
    for (body, kind, message) in [
        (json!({"MaxResults": 0}), "InvalidMaxResultsException", "MaxResults must be an integer from 1 to 50."),
        (json!({"MaxResults": 51}), "InvalidMaxResultsException", "MaxResults must be an integer from 1 to 50."),
        (
            json!({"StartTime": 20, "EndTime": 10}),
            "InvalidTimeRangeException",
            "Start time must not be after end time.",
        ),
        (
            json!({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "A"},
                {"AttributeKey": "EventName", "AttributeValue": "B"}]}),
            "InvalidLookupAttributesException",
            "You can specify only one lookup attribute.",
        ),
        (
            json!({"LookupAttributes": [{"AttributeKey": "Region", "AttributeValue": "A"}]}),
            "InvalidLookupAttributesException",
            "Invalid AttributeKey 'Region': expected one of EventId, EventName, ReadOnly, Username, ResourceType, ResourceName, EventSource, AccessKeyId.",
        ),
        (json!({"NextToken": "00"}), "InvalidNextTokenException", "Invalid NextToken."),
        (json!({"EventCategory": "data"}), "InvalidEventCategoryException", "The only EventCategory is 'insight'."),
    ] {
        let (status, v) = lookup(&b, body.clone()).await;
        assert_eq!((status, v), (400, json!({"__type": kind, "message": message})), "{body}");
    }
    let (status, v) = cloudtrail(&b, ACCESS_KEY_ID, SECRET_ACCESS_KEY, "CreateTrail", &json!({})).await;
    assert_eq!(
        (status, v),
        (
            400,
            json!({"__type": "UnknownOperationException", "message": "Berth does not implement cloudtrail:CreateTrail"})
        )
    );
    // An unknown key is refused before anything else.
    let (status, v) = cloudtrail(&b, "AKIANOTAKEYATALL0000", "x", "LookupEvents", &json!({})).await;
    assert_eq!((status, v["__type"].as_str()), (400, Some("UnrecognizedClientException")), "{v}");
}

#[tokio::test]
async fn lookup_events_needs_cloudtrail_lookup_events() {
    let b = Berth::start();
    b.admin_ok(&["create-user", "--user-name", "auditor"]);
    let k: Value = serde_json::from_str(&b.admin_ok(&["create-access-key", "--user-name", "auditor"])).unwrap();
    let (id, secret) =
        (k["AccessKey"]["AccessKeyId"].as_str().unwrap(), k["AccessKey"]["SecretAccessKey"].as_str().unwrap());
    let (status, v) = cloudtrail(&b, id, secret, "LookupEvents", &json!({})).await;
    assert_eq!(
        (status, v),
        (
            400,
            json!({"__type": "AccessDeniedException", "message": format!(
                "User: arn:aws:iam::{ACCOUNT_ID}:user/auditor is not authorized to perform: cloudtrail:LookupEvents on resource: * because no identity-based policy allows the cloudtrail:LookupEvents action"
            )})
        )
    );
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"cloudtrail:LookupEvents","Resource":"*"}]}"#;
    b.admin_ok(&["put-user-policy", "--user-name", "auditor", "--policy-name", "audit", "--policy-document", doc]);
    // A policy change made by another process reaches the server within a second.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, v) = cloudtrail(&b, id, secret, "LookupEvents", &json!({})).await;
        if status == 200 || std::time::Instant::now() > deadline {
            assert_eq!(status, 200, "{v}");
            // What it finds are its own refused attempts, recorded.
            let events = v["Events"].as_array().unwrap();
            assert!(!events.is_empty(), "{v}");
            for e in events {
                assert_eq!(
                    (e["EventName"].as_str(), e["Username"].as_str()),
                    (Some("LookupEvents"), Some("auditor")),
                    "{e}"
                );
                let r: Value = serde_json::from_str(e["CloudTrailEvent"].as_str().unwrap()).unwrap();
                assert_eq!(r["errorCode"], "AccessDeniedException", "{r}");
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn lookup_events_pages_newest_first_within_the_callers_account() {
    let b = Berth::start();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut calls: Vec<ApiCall> = (0..7)
        .map(|i| call(ACCOUNT_ID, if i % 2 == 0 { "PutImage" } else { "DescribeImages" }, "app", now - 7000 + i * 1000))
        .collect();
    calls.push(call("222222222222", "PutImage", "theirs", now));
    write(&b, "test-chain", calls).await;

    let (status, all) = lookup(&b, json!({})).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(event_ids(&all).len(), 7, "only the caller's account: {all}");
    let times: Vec<f64> = all["Events"].as_array().unwrap().iter().map(|e| e["EventTime"].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]), "newest first: {times:?}");
    let first = &all["Events"][0];
    assert_eq!(first["EventName"], "PutImage");
    assert_eq!(first["ReadOnly"], "false");
    assert_eq!(first["Username"], "root");
    assert_eq!(first["AccessKeyId"], ACCESS_KEY_ID);
    assert_eq!(
        first["Resources"],
        json!([{"ResourceType": "AWS::ECR::Repository", "ResourceName": format!("arn:aws:ecr:us-east-1:{ACCOUNT_ID}:repository/app")}])
    );
    let record: Value = serde_json::from_str(first["CloudTrailEvent"].as_str().unwrap()).unwrap();
    assert_eq!(record["eventID"], first["EventId"]);
    assert_eq!(record["recipientAccountId"], ACCOUNT_ID);

    // By attribute, in pages of 2 until no NextToken.
    let q = json!({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "PutImage"}], "MaxResults": 2});
    let (mut seen, mut body) = (Vec::new(), q.clone());
    loop {
        let (status, page) = lookup(&b, body.clone()).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(event_ids(&page));
        match page.get("NextToken") {
            Some(t) => body["NextToken"] = t.clone(),
            None => break,
        }
    }
    assert_eq!(seen, ["PutImage"; 4]);
    // A time range (epoch seconds, fractional as the CLI sends them).
    let (_, ranged) =
        lookup(&b, json!({"StartTime": (now - 2500) as f64 / 1000.0, "EndTime": now as f64 / 1000.0})).await;
    assert_eq!(event_ids(&ranged), ["PutImage", "DescribeImages"]);
}

#[test]
fn verify_passes_then_names_the_first_tampered_record() {
    let b = Berth::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Recent times: records older than the retention period may be pruned by the server's
    // retention job at any moment, which would make the chain start later.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    rt.block_on(write(&b, "node-t", (0..5).map(|i| call(ACCOUNT_ID, "PutImage", "app", now + i)).collect()));
    let verify = |b: &Berth| {
        std::process::Command::new(common::berth_bin())
            .args(["audit", "verify", "--data-dir"])
            .arg(&b.data_dir)
            .envs(b.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = verify(&b);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("chain node-t: 5 record(s) verified from seq 1; head seq 5 hash "), "{stdout}");

    // Altered in place: the record's JSON changed, its hash kept.
    rt.block_on(common::raw_sql(
        &b,
        "UPDATE audit_records SET event_json = replace(event_json, 'PutImage', 'DeleteImage') WHERE chain = 'node-t' AND seq = 3",
    ));
    let event_id: String =
        rt.block_on(async { store(&b).await.audit_chain_records("node-t", 2, 1).await.unwrap()[0].event_id.clone() });
    let out = verify(&b);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("chain node-t seq 3 (eventID {event_id}): its content does not match its hash")),
        "{stderr}"
    );

    // Deleted from the middle (another chain): the gap is named.
    rt.block_on(write(&b, "node-u", (0..4).map(|i| call(ACCOUNT_ID, "PutImage", "app", now + 10 + i)).collect()));
    rt.block_on(common::raw_sql(&b, "DELETE FROM audit_records WHERE chain = 'node-u' AND seq = 2"));
    let out = verify(&b);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("chain node-u seq 3 (eventID "), "{stderr}");
    assert!(stderr.contains("expected seq 2 after 1"), "{stderr}");
}

/// Every lookup result: all pages of `query` (at most 2 per page), checked for NextToken
/// continuity and no repeats.
async fn lookup_all(b: &Berth, query: Value) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..200 {
        let mut q = query.clone();
        q["MaxResults"] = json!(2);
        if let Some(t) = &token {
            q["NextToken"] = json!(t);
        }
        let (status, v) = lookup(b, q).await;
        assert_eq!(status, 200, "{v}");
        let page = v["Events"].as_array().unwrap();
        assert!(page.len() <= 2, "{v}");
        for e in page {
            assert!(!out.iter().any(|o| o["EventId"] == e["EventId"]), "an event on two pages: {e}");
            out.push(e.clone());
        }
        match v["NextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => return out,
        }
    }
    panic!("more than 200 pages")
}

fn record(e: &Value) -> Value {
    serde_json::from_str(e["CloudTrailEvent"].as_str().expect("CloudTrailEvent is a JSON string")).unwrap()
}

/// API calls over HTTP, both planes, allowed and denied, are recorded with CloudTrail's exact
/// fields and read back with LookupEvents (attribute filters, time ranges, pages).
#[tokio::test(flavor = "multi_thread")]
async fn api_calls_on_both_planes_are_recorded_and_looked_up() {
    let b = Berth::start();
    let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() - 1.0;
    let (status, v) =
        common::ecr_call(&b, ACCESS_KEY_ID, SECRET_ACCESS_KEY, "CreateRepository", &json!({"repositoryName": "app"}))
            .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = common::ecr_call(
        &b,
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        "DescribeRepositories",
        &json!({"repositoryNames": ["nope"]}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    b.admin_ok(&["create-user", "--user-name", "nobody"]);
    let key: Value = serde_json::from_str(&b.admin_ok(&["create-access-key", "--user-name", "nobody"])).unwrap();
    let (uid, usecret) =
        (key["AccessKey"]["AccessKeyId"].as_str().unwrap(), key["AccessKey"]["SecretAccessKey"].as_str().unwrap());
    let (status, v) = common::ecr_call(&b, uid, usecret, "DescribeImages", &json!({"repositoryName": "app"})).await;
    assert_eq!((status, v["__type"].as_str()), (400, Some("AccessDeniedException")), "{v}");
    // The data plane: a push (blob upload + manifest) and a pull; an anonymous pull is refused.
    let c = b.client();
    let digest = common::push_small_image(&c, &b.url, "app", "v1", "one").await;
    let r = c.get(format!("{}/v2/app/manifests/v1", b.url)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let pull_id = r.headers()["x-amzn-requestid"].to_str().unwrap().to_string();
    let r = reqwest::get(format!("{}/v2/app/manifests/v1", b.url)).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    tokio::time::sleep(Duration::from_millis(600)).await;

    let by = |k: &str, v: &str| json!({"LookupAttributes": [{"AttributeKey": k, "AttributeValue": v}]});
    // CreateRepository: allowed, control plane, by root.
    let events = lookup_all(&b, by("EventName", "CreateRepository")).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["EventSource"], "ecr.amazonaws.com");
    assert_eq!(
        (e["ReadOnly"].as_str(), e["Username"].as_str(), e["AccessKeyId"].as_str()),
        (Some("false"), Some("root"), Some(ACCESS_KEY_ID))
    );
    assert_eq!(
        e["Resources"],
        json!([{"ResourceType": "AWS::ECR::Repository", "ResourceName": format!("arn:aws:ecr:us-east-1:{ACCOUNT_ID}:repository/app")}])
    );
    let r = record(e);
    assert_eq!(r["eventVersion"], "1.08");
    assert_eq!(r["eventID"], e["EventId"]);
    assert_eq!(r["eventName"], "CreateRepository");
    assert_eq!(r["awsRegion"], "us-east-1");
    assert_eq!(r["sourceIPAddress"], "127.0.0.1");
    assert_eq!(
        r["userIdentity"],
        json!({"type": "Root", "principalId": ACCOUNT_ID, "arn": format!("arn:aws:iam::{ACCOUNT_ID}:root"), "accountId": ACCOUNT_ID, "accessKeyId": ACCESS_KEY_ID})
    );
    assert_eq!(r["requestParameters"], json!({"repositoryName": "app"}));
    assert_eq!(r["responseElements"]["repository"]["repositoryName"], "app");
    assert_eq!((r["readOnly"].as_bool(), r["managementEvent"].as_bool()), (Some(false), Some(true)));
    assert_eq!((r["eventType"].as_str(), r["eventCategory"].as_str()), (Some("AwsApiCall"), Some("Management")));
    assert_eq!(r["recipientAccountId"], ACCOUNT_ID);
    assert!(r.get("errorCode").is_none(), "{r}");
    assert_eq!(r["requestID"].as_str().map(str::len), Some(36));

    // A failed call carries the error, and nothing it would have returned.
    let events = lookup_all(&b, by("EventName", "DescribeRepositories")).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let r = record(&events[0]);
    assert_eq!((r["errorCode"].as_str(), r["readOnly"].as_bool()), (Some("RepositoryNotFoundException"), Some(true)));
    assert!(r["errorMessage"].as_str().unwrap().contains("nope"), "{r}");
    assert_eq!(r["responseElements"], Value::Null);

    // A denied call, by an IAM user.
    let events = lookup_all(&b, by("Username", "nobody")).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let r = record(&events[0]);
    assert_eq!(
        (r["eventName"].as_str(), r["errorCode"].as_str()),
        (Some("DescribeImages"), Some("AccessDeniedException"))
    );
    assert_eq!(r["userIdentity"]["type"], "IAMUser");
    assert_eq!(r["userIdentity"]["userName"], "nobody");
    assert_eq!(r["userIdentity"]["arn"], format!("arn:aws:iam::{ACCOUNT_ID}:user/nobody"));
    assert_eq!(r["userIdentity"]["accessKeyId"], uid);

    // The push: InitiateLayerUpload, CompleteLayerUpload, PutImage, as ECR records them.
    for op in ["InitiateLayerUpload", "CompleteLayerUpload", "PutImage"] {
        let events = lookup_all(&b, by("EventName", op)).await;
        assert_eq!(events.len(), 1, "{op}: {events:?}");
        let r = record(&events[0]);
        assert_eq!(
            (r["eventSource"].as_str(), r["readOnly"].as_bool()),
            (Some("ecr.amazonaws.com"), Some(false)),
            "{r}"
        );
        assert_eq!(r["requestParameters"]["repositoryName"], "app", "{r}");
        assert_eq!(r["userIdentity"]["type"], "Root", "{r}");
    }
    let r = record(&lookup_all(&b, by("EventName", "PutImage")).await[0]);
    assert_eq!(r["requestParameters"]["imageIds"], json!([{"imageTag": "v1"}]));
    // The pulls: one by root (its request id is the response's), one anonymous and refused.
    let pulls = lookup_all(&b, by("EventName", "BatchGetImage")).await;
    assert_eq!(pulls.len(), 2, "{pulls:?}");
    let anonymous = record(&pulls[0]);
    assert_eq!(
        anonymous["userIdentity"],
        json!({"type": "AWSAccount", "principalId": "", "accountId": "ANONYMOUS_PRINCIPAL"})
    );
    assert_eq!(anonymous["errorCode"], "UNAUTHORIZED");
    let pulled = record(&pulls[1]);
    assert_eq!(pulled["requestID"], pull_id.as_str());
    assert_eq!((pulled["readOnly"].as_bool(), pulled.get("errorCode")), (Some(true), None));
    let _ = digest;

    // Time ranges: everything is after `start`, nothing after now + 1 h.
    let all = lookup_all(&b, json!({"StartTime": start})).await;
    assert!(all.len() >= 9, "{}", all.len());
    let times: Vec<f64> = all.iter().map(|e| e["EventTime"].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    let later = lookup_all(&b, json!({"StartTime": start + 7200.0, "EndTime": start + 7300.0})).await;
    assert!(later.is_empty(), "{later:?}");
    let (status, v) = lookup(&b, json!({"StartTime": start + 10.0, "EndTime": start})).await;
    assert_eq!((status, v["__type"].as_str()), (400, Some("InvalidTimeRangeException")), "{v}");
    // `berth audit verify` holds for what the server wrote.
    let out = std::process::Command::new(common::berth_bin())
        .args(["audit", "verify", "--data-dir"])
        .arg(&b.data_dir)
        .envs(b.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("record(s) verified from seq 1"), "{stdout}");
}

/// `audit_data_plane_reads = false`: pulls leave no record, pushes and control-plane calls do.
#[tokio::test(flavor = "multi_thread")]
async fn data_plane_reads_can_be_left_out_of_the_trail() {
    let b = Berth::start_with_env(&[("BERTH_AUDIT_DATA_PLANE_READS", "false")]);
    let c = b.client();
    common::push_small_image(&c, &b.url, "quiet", "v1", "q").await;
    for _ in 0..3 {
        let r = c.get(format!("{}/v2/quiet/manifests/v1", b.url)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let (status, _) =
        common::ecr_call(&b, ACCESS_KEY_ID, SECRET_ACCESS_KEY, "DescribeImages", &json!({"repositoryName": "quiet"}))
            .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let by = |v: &str| json!({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": v}]});
    assert_eq!(lookup_all(&b, by("BatchGetImage")).await.len(), 0, "no pull recorded");
    assert_eq!(lookup_all(&b, by("PutImage")).await.len(), 1, "the push is");
    assert_eq!(lookup_all(&b, by("DescribeImages")).await.len(), 1, "control-plane reads are");
}
