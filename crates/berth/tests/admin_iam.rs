//! `berth admin` IAM and repository-policy subcommands, end to end: what they print (the AWS
//! CLI's field names), how they fail (exit code 1, `Error: <IAM's message>` on stderr), and that
//! what they set up takes effect on a running server: a user's access key signs ECR control-plane
//! requests (SigV4), its registry token pushes and pulls exactly where its policies allow.

mod common;

use common::{ACCESS_KEY_ID, ACCOUNT_ID, Berth, REGION, SECRET_ACCESS_KEY, have, sha256};
use reqwest::Client;
use serde_json::{Value, json};
use std::time::Duration;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Upper bound for any one HTTP request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// Policy changes reach a running server's caches within a second (`EPOCH_CHECK_MS`); polls for
/// them give up after this many 100 ms rounds.
const POLL_ROUNDS: usize = 100;

fn app_arn(repo: &str) -> String {
    format!("arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/{repo}")
}

/// Push and pull on one repository, and GetAuthorizationToken.
fn push_pull_policy(repo: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Login", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {
                "Sid": "PushPull",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage",
                    "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage"
                ],
                "Resource": app_arn(repo)
            }
        ]
    })
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// berth admin
// ---------------------------------------------------------------------------------------------

/// `berth admin ARGS` printing JSON.
#[track_caller]
fn admin_json(b: &Berth, args: &[&str]) -> Value {
    let out = b.admin_ok(args);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("`berth admin {}` printed no JSON ({e}): {out}", args.join(" ")))
}

/// `berth admin ARGS` succeeding and printing nothing (as the AWS CLI does for these commands).
#[track_caller]
fn admin_silent(b: &Berth, args: &[&str]) {
    let out = b.admin_ok(args);
    assert_eq!(out, "", "`berth admin {}` printed something", args.join(" "));
}

/// `berth admin ARGS` failing: exit code 1, nothing on stdout, and `Error: <message>` as the
/// last line of stderr. Returns the message.
#[track_caller]
fn admin_err(b: &Berth, args: &[&str]) -> String {
    let out = b.admin(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "`berth admin {}` should fail; stderr:\n{stderr}", args.join(" "));
    assert!(out.stdout.is_empty(), "stdout of a failure: {}", String::from_utf8_lossy(&out.stdout));
    let last = stderr.lines().last().unwrap_or_default();
    last.strip_prefix("Error: ").unwrap_or_else(|| panic!("last stderr line is not `Error: ...`: {stderr}")).to_string()
}

/// A file holding `text` in `dir`, as `file://<path>`.
fn file_arg(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    format!("file://{}", p.display())
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
#[track_caller]
fn assert_iam_date(v: &Value) {
    let s = v.as_str().unwrap_or_else(|| panic!("not a date string: {v}"));
    let shape: String = s.chars().map(|c| if c.is_ascii_digit() { 'd' } else { c }).collect();
    assert_eq!(shape, "dddd-dd-ddTdd:dd:ddZ", "date {s}");
    assert!(s >= "2024", "date {s}");
}

/// Checks `{"User": ...}` and returns the user id.
#[track_caller]
fn assert_user(v: &Value, name: &str, path: &str, account: &str) -> String {
    let u = &v["User"];
    assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
    assert_eq!(u["UserName"], name);
    assert_eq!(u["Path"], path);
    assert_eq!(u["Arn"], format!("arn:aws:iam::{account}:user{path}{name}"));
    let id = u["UserId"].as_str().unwrap();
    assert!(id.starts_with("AIDA") && id.len() == 21, "UserId {id}");
    assert_iam_date(&u["CreateDate"]);
    let keys: Vec<&str> = u.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["Path", "UserName", "UserId", "Arn", "CreateDate"]);
    id.to_string()
}

/// An access key made by `berth admin create-access-key --user-name`.
struct Key {
    id: String,
    secret: String,
}

/// `create-access-key --user-name NAME`, its output checked.
#[track_caller]
fn create_key(b: &Berth, user: &str) -> Key {
    let v = admin_json(b, &["create-access-key", "--user-name", user]);
    let k = &v["AccessKey"];
    let keys: Vec<&str> = k.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["UserName", "AccessKeyId", "Status", "SecretAccessKey", "CreateDate"], "{v}");
    assert_eq!(k["UserName"], user);
    assert_eq!(k["Status"], "Active");
    assert_iam_date(&k["CreateDate"]);
    let id = k["AccessKeyId"].as_str().unwrap().to_string();
    let secret = k["SecretAccessKey"].as_str().unwrap().to_string();
    assert!(id.starts_with("AKIA") && id.len() == 20, "AccessKeyId {id}");
    assert_eq!(secret.len(), 40, "SecretAccessKey {secret}");
    Key { id, secret }
}

// ---------------------------------------------------------------------------------------------
// The ECR control plane, SigV4-signed
// ---------------------------------------------------------------------------------------------

/// One ECR operation signed with SigV4 (service `ecr`, region [`REGION`]) by `key`; returns the
/// HTTP status and the JSON body.
async fn ecr(b: &Berth, key: &Key, op: &str, body: &Value) -> (u16, Value) {
    common::ecr_call(b, &key.id, &key.secret, op, body).await
}

/// GetAuthorizationToken with `key`, checked to succeed; returns the registry password.
async fn login(b: &Berth, key: &Key) -> String {
    let (status, v) = ecr(b, key, "GetAuthorizationToken", &json!({})).await;
    assert_eq!(status, 200, "GetAuthorizationToken: {v}");
    let data = v["authorizationData"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{v}");
    assert_eq!(data[0]["proxyEndpoint"], format!("http://{}", b.addr));
    let token = common::base64_decode(data[0]["authorizationToken"].as_str().unwrap()).unwrap();
    let token = String::from_utf8(token).unwrap();
    token.strip_prefix("AWS:").unwrap_or_else(|| panic!("token {token}")).to_string()
}

/// [`login`] once the server has caught up with a change that allows it (its caches follow
/// policy and key changes within a second).
async fn login_when_allowed(b: &Berth, key: &Key) -> String {
    for _ in 0..POLL_ROUNDS {
        let (status, _) = ecr(b, key, "GetAuthorizationToken", &json!({})).await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    login(b, key).await
}

// ---------------------------------------------------------------------------------------------
// The data plane
// ---------------------------------------------------------------------------------------------

fn registry_client(password: &str) -> Client {
    common::auth_client_builder(&common::basic_auth("AWS", password)).timeout(HTTP_TIMEOUT).build().unwrap()
}

fn anonymous() -> Client {
    Client::builder().timeout(HTTP_TIMEOUT).build().unwrap()
}

/// Monolithic blob upload; returns the status and body.
async fn put_blob(c: &Client, url: &str, repo: &str, data: &[u8]) -> (u16, String) {
    let r = c
        .post(format!("{url}/v2/{repo}/blobs/uploads/?digest={}", sha256(data)))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Push a one-layer image as `repo:tag`, every step checked to succeed; returns the manifest.
async fn push_image(c: &Client, url: &str, repo: &str, tag: &str, seed: &str) -> Vec<u8> {
    let config = format!("{{\"seed\":\"{seed}\"}}").into_bytes();
    let layer = format!("layer of {seed}").into_bytes();
    for blob in [&config, &layer] {
        let (status, body) = put_blob(c, url, repo, blob).await;
        assert_eq!(status, 201, "blob upload to {repo}: {body}");
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(&layer), "size": layer.len()}]
    })
    .to_string()
    .into_bytes();
    let r = c
        .put(format!("{url}/v2/{repo}/manifests/{tag}"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(status, 201, "manifest push to {repo}:{tag}: {}", r.text().await.unwrap());
    manifest
}

/// GET a manifest; returns the status and body.
async fn get_manifest(c: &Client, url: &str, repo: &str, tag: &str) -> (u16, Vec<u8>) {
    let r = c.get(format!("{url}/v2/{repo}/manifests/{tag}")).header("accept", OCI_MANIFEST).send().await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

/// The OCI error code of an error body.
fn oci_code(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {}", String::from_utf8_lossy(body)));
    v["errors"][0]["code"].as_str().unwrap_or_default().to_string()
}

/// Poll `GET manifest` until it answers `status` (policy changes reach the server's caches within
/// a second); returns the body.
async fn manifest_until(c: &Client, url: &str, repo: &str, tag: &str, status: u16) -> Vec<u8> {
    let mut last = (0, Vec::new());
    for _ in 0..POLL_ROUNDS {
        last = get_manifest(c, url, repo, tag).await;
        if last.0 == status {
            return last.1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("GET {repo}:{tag} never answered {status}; last {}: {}", last.0, String::from_utf8_lossy(&last.1));
}

// =============================================================================================
// Tests
// =============================================================================================

/// The walkthrough: a user, its key, an inline push/pull policy for `app`; the key works on the
/// control plane, its token pushes and pulls `app` and nothing else; deactivating the key stops
/// it; cleaning up in IAM's order lets the user be deleted.
#[tokio::test]
async fn user_key_and_inline_policy_work_through_the_server() {
    let b = Berth::start_strict();
    b.create_repo("app", "MUTABLE");
    b.create_repo("other", "MUTABLE");
    let tmp = tempfile::tempdir().unwrap();

    let v = admin_json(&b, &["create-user", "--user-name", "ci"]);
    let user_id = assert_user(&v, "ci", "/", ACCOUNT_ID);
    let key = create_key(&b, "ci");

    // Listings: the user, its key (no secret), no policies yet.
    let v = admin_json(&b, &["list-users"]);
    assert_eq!(v["Users"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["Users"][0]["UserId"], user_id.as_str());
    let v = admin_json(&b, &["list-access-keys", "--user-name", "ci"]);
    let meta = v["AccessKeyMetadata"].as_array().unwrap();
    assert_eq!(meta.len(), 1, "{v}");
    let keys: Vec<&str> = meta[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["UserName", "AccessKeyId", "Status", "CreateDate"]);
    assert_eq!(meta[0]["UserName"], "ci");
    assert_eq!(meta[0]["AccessKeyId"], key.id.as_str());
    assert_eq!(meta[0]["Status"], "Active");
    assert_eq!(admin_json(&b, &["list-user-policies", "--user-name", "ci"]), json!({"PolicyNames": []}));

    // The policy, from a file as the AWS CLI takes it.
    let policy = push_pull_policy("app");
    let doc = file_arg(tmp.path(), "policy.json", &policy);
    admin_silent(
        &b,
        &["put-user-policy", "--user-name", "ci", "--policy-name", "push-pull-app", "--policy-document", &doc],
    );
    assert_eq!(admin_json(&b, &["list-user-policies", "--user-name", "ci"]), json!({"PolicyNames": ["push-pull-app"]}));
    assert_eq!(
        admin_json(&b, &["get-user-policy", "--user-name", "ci", "--policy-name", "push-pull-app"]),
        json!({"UserName": "ci", "PolicyName": "push-pull-app", "PolicyDocument": serde_json::from_str::<Value>(&policy).unwrap()})
    );

    // The control plane accepts the key; the token pushes and pulls `app`.
    let password = login(&b, &key).await;
    let c = registry_client(&password);
    let manifest = push_image(&c, &b.url, "app", "v1", "ci").await;
    let (status, body) = get_manifest(&c, &b.url, "app", "v1").await;
    assert_eq!((status, body), (200, manifest.clone()));

    // ... and nothing else: pushing or pulling `other` is denied, naming the user and the action.
    let (status, body) = put_blob(&c, &b.url, "other", b"x").await;
    assert_eq!(status, 403, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["errors"][0]["code"], "DENIED");
    assert_eq!(
        v["errors"][0]["message"],
        format!(
            "User: arn:aws:iam::{ACCOUNT_ID}:user/ci is not authorized to perform: ecr:InitiateLayerUpload on resource: {} because no identity-based policy allows the ecr:InitiateLayerUpload action",
            app_arn("other")
        )
    );
    push_image(&b.client(), &b.url, "other", "v1", "root").await;
    let (status, body) = get_manifest(&c, &b.url, "other", "v1").await;
    assert_eq!((status, oci_code(&body).as_str()), (403, "DENIED"));
    // Control-plane operations the policy does not grant are denied too.
    let (status, v) = ecr(&b, &key, "DescribeRepositories", &json!({"repositoryNames": ["app"]})).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["__type"], "AccessDeniedException");

    // An inactive key no longer signs, and its token stops working; reactivated, it works again.
    admin_silent(&b, &["update-access-key", "--user-name", "ci", "--access-key-id", &key.id, "--status", "Inactive"]);
    let v = admin_json(&b, &["list-access-keys", "--user-name", "ci"]);
    assert_eq!(v["AccessKeyMetadata"][0]["Status"], "Inactive");
    let (status, v) = ecr(&b, &key, "GetAuthorizationToken", &json!({})).await;
    assert_eq!((status, v["__type"].as_str()), (400, Some("UnrecognizedClientException")), "{v}");
    let body = manifest_until(&c, &b.url, "app", "v1", 401).await;
    assert_eq!(oci_code(&body), "UNAUTHORIZED");
    admin_silent(&b, &["update-access-key", "--user-name", "ci", "--access-key-id", &key.id, "--status", "Active"]);
    let password = login_when_allowed(&b, &key).await;
    assert_eq!(manifest_until(&registry_client(&password), &b.url, "app", "v1", 200).await, manifest);

    // A user without policies has a working key but may do nothing.
    admin_json(&b, &["create-user", "--user-name", "nobody"]);
    let nobody = create_key(&b, "nobody");
    let (status, v) = ecr(&b, &nobody, "GetAuthorizationToken", &json!({})).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["__type"], "AccessDeniedException");
    assert_eq!(
        v["message"],
        format!(
            "User: arn:aws:iam::{ACCOUNT_ID}:user/nobody is not authorized to perform: ecr:GetAuthorizationToken on resource: * because no identity-based policy allows the ecr:GetAuthorizationToken action"
        )
    );

    // Deleting the user: keys first, then policies (IAM's order).
    assert_eq!(
        admin_err(&b, &["delete-user", "--user-name", "ci"]),
        "Cannot delete entity, must delete access keys first."
    );
    admin_silent(&b, &["delete-access-key", "--user-name", "ci", "--access-key-id", &key.id]);
    assert_eq!(admin_json(&b, &["list-access-keys", "--user-name", "ci"]), json!({"AccessKeyMetadata": []}));
    assert_eq!(
        admin_err(&b, &["delete-user", "--user-name", "ci"]),
        "Cannot delete entity, must delete policies first."
    );
    admin_silent(&b, &["delete-user-policy", "--user-name", "ci", "--policy-name", "push-pull-app"]);
    admin_silent(&b, &["delete-user", "--user-name", "ci"]);
    let (status, v) = ecr(&b, &key, "GetAuthorizationToken", &json!({})).await;
    assert_eq!((status, v["__type"].as_str()), (400, Some("UnrecognizedClientException")), "{v}");
    let v = admin_json(&b, &["list-users"]);
    let names: Vec<&str> = v["Users"].as_array().unwrap().iter().map(|u| u["UserName"].as_str().unwrap()).collect();
    assert_eq!(names, ["nobody"]);
    assert_eq!(admin_err(&b, &["get-user", "--user-name", "ci"]), "The user with name ci cannot be found.");
}

/// The AWS CLI itself, with a user's key made by `berth admin`.
#[tokio::test]
async fn aws_cli_get_authorization_token_with_a_user_key() {
    if !have("aws") {
        let msg = "SKIP aws_cli_get_authorization_token_with_a_user_key: no aws CLI";
        // CI (scripts/test) sets BERTH_REQUIRE_CLIENTS: a missing client fails there.
        if std::env::var_os("BERTH_REQUIRE_CLIENTS").is_some_and(|v| v != "0") {
            panic!("{msg}");
        }
        eprintln!("{msg}");
        return;
    }
    let b = Berth::start_strict();
    admin_json(&b, &["create-user", "--user-name", "builder"]);
    let key = create_key(&b, "builder");
    admin_silent(
        &b,
        &[
            "put-user-policy",
            "--user-name",
            "builder",
            "--policy-name",
            "p",
            "--policy-document",
            &push_pull_policy("app"),
        ],
    );
    let mut cmd = tokio::process::Command::new("aws");
    cmd.args(["ecr", "get-authorization-token", "--endpoint-url", &b.url, "--region", REGION, "--output", "json"])
        .env("AWS_ACCESS_KEY_ID", &key.id)
        .env("AWS_SECRET_ACCESS_KEY", &key.secret)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(240), cmd.output()).await.expect("aws timed out").unwrap();
    assert!(out.status.success(), "aws failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = common::base64_decode(v["authorizationData"][0]["authorizationToken"].as_str().unwrap()).unwrap();
    let password = String::from_utf8(token).unwrap().strip_prefix("AWS:").unwrap().to_string();
    b.create_repo("app", "MUTABLE");
    let c = registry_client(&password);
    let manifest = push_image(&c, &b.url, "app", "v1", "aws").await;
    assert_eq!(get_manifest(&c, &b.url, "app", "v1").await, (200, manifest));
}

/// Failures exit with 1 and print IAM's (or ECR's) message.
#[tokio::test]
async fn errors_exit_nonzero_with_the_message() {
    let b = Berth::start_strict();
    let tmp = tempfile::tempdir().unwrap();
    admin_json(&b, &["create-user", "--user-name", "ci"]);

    // Names are unique without regard to case, as in IAM.
    assert_eq!(admin_err(&b, &["create-user", "--user-name", "ci"]), "User with name ci already exists.");
    assert_eq!(admin_err(&b, &["create-user", "--user-name", "CI"]), "User with name CI already exists.");
    assert_eq!(
        admin_err(&b, &["create-user", "--user-name", "bad name"]),
        "1 validation error detected: Value 'bad name' at 'userName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+"
    );
    assert_eq!(admin_err(&b, &["delete-user", "--user-name", "ghost"]), "The user with name ghost cannot be found.");
    assert_eq!(
        admin_err(&b, &["create-access-key", "--user-name", "ghost"]),
        "The user with name ghost cannot be found."
    );

    // Keys: two at most; a key is found only under its own user; statuses are IAM's.
    let key = create_key(&b, "ci");
    create_key(&b, "ci");
    assert_eq!(
        admin_err(&b, &["create-access-key", "--user-name", "ci"]),
        "Cannot exceed quota for AccessKeysPerUser: 2"
    );
    assert_eq!(
        admin_err(&b, &["delete-user", "--user-name", "ci"]),
        "Cannot delete entity, must delete access keys first."
    );
    assert_eq!(
        admin_err(&b, &["update-access-key", "--user-name", "ci", "--access-key-id", &key.id, "--status", "Disabled"]),
        "1 validation error detected: Value 'Disabled' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]"
    );
    assert_eq!(
        admin_err(&b, &["delete-access-key", "--access-key-id", &key.id]),
        format!("The Access Key with id {} cannot be found.", key.id)
    );

    // Malformed policies: the parser's message, whether inline or from a file.
    let no_resource = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*"}]}"#;
    let put = |doc: &str| {
        admin_err(&b, &["put-user-policy", "--user-name", "ci", "--policy-name", "p", "--policy-document", doc])
    };
    assert_eq!(put(no_resource), "Missing required field Resource");
    assert_eq!(put(&file_arg(tmp.path(), "bad.json", "{not json")), "Syntax errors in policy.");
    assert_eq!(
        put(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Maybe","Action":"ecr:*","Resource":"*"}]}"#),
        "Invalid effect: Maybe"
    );
    let missing = tmp.path().join("missing.json");
    assert_eq!(
        put(&format!("file://{}", missing.display())),
        format!("reading file://{}: No such file or directory (os error 2)", missing.display())
    );
    assert_eq!(admin_json(&b, &["list-user-policies", "--user-name", "ci"]), json!({"PolicyNames": []}));
    assert_eq!(
        admin_err(&b, &["create-policy", "--policy-name", "P", "--policy-document", no_resource]),
        "Missing required field Resource"
    );
    assert_eq!(
        admin_err(&b, &["put-user-policy", "--user-name", "ghost", "--policy-name", "p", "--policy-document", "{}"]),
        "The user with name ghost cannot be found."
    );
    assert_eq!(
        admin_err(&b, &["delete-user-policy", "--user-name", "ci", "--policy-name", "nope"]),
        "The user policy with name nope cannot be found."
    );

    // Accounts must exist.
    assert_eq!(admin_err(&b, &["list-users", "--account-id", "999999999999"]), "account 999999999999 does not exist");
}

/// `--account-id` picks the account; the root's keys are managed without `--user-name`, and
/// `create-access-key` without `--user-name` still prints root credentials.
#[tokio::test]
async fn account_id_and_root_keys() {
    let b = Berth::start_strict();
    let creds = admin_json(&b, &["create-account", "--account-id", "222222222222"]);
    let v = admin_json(&b, &["create-user", "--account-id", "222222222222", "--user-name", "ci", "--path", "/build/"]);
    assert_user(&v, "ci", "/build/", "222222222222");
    assert_eq!(admin_json(&b, &["list-users"]), json!({"Users": []}));
    let v = admin_json(&b, &["list-users", "--account-id", "222222222222"]);
    assert_eq!(v["Users"][0]["Arn"], "arn:aws:iam::222222222222:user/build/ci");
    assert_eq!(admin_err(&b, &["get-user", "--user-name", "ci"]), "The user with name ci cannot be found.");

    // Root keys: listed without UserName; the default account's is the environment's.
    let v = admin_json(&b, &["list-access-keys"]);
    let keys = v["AccessKeyMetadata"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{v}");
    assert_eq!(keys[0]["AccessKeyId"], ACCESS_KEY_ID);
    assert_eq!(keys[0].get("UserName"), None);
    let v = admin_json(&b, &["list-access-keys", "--account-id", "222222222222"]);
    assert_eq!(v["AccessKeyMetadata"][0]["AccessKeyId"], creds["AccessKeyId"]);

    // create-access-key as before: root credentials (now the default account by default).
    let v = admin_json(&b, &["create-access-key"]);
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["AccountId", "AccessKeyId", "SecretAccessKey"]);
    assert_eq!(v["AccountId"], ACCOUNT_ID);
    let root2 =
        Key { id: v["AccessKeyId"].as_str().unwrap().into(), secret: v["SecretAccessKey"].as_str().unwrap().into() };
    login(&b, &root2).await;
    let v = admin_json(&b, &["create-access-key", "--account-id", "222222222222"]);
    assert_eq!(v["AccountId"], "222222222222");

    // Deactivating a root key by id (no --user-name) stops it; the environment's key still works.
    admin_silent(&b, &["update-access-key", "--access-key-id", &root2.id, "--status", "Inactive"]);
    let (status, v) = ecr(&b, &root2, "GetAuthorizationToken", &json!({})).await;
    assert_eq!((status, v["__type"].as_str()), (400, Some("UnrecognizedClientException")), "{v}");
    login(&b, &Key { id: ACCESS_KEY_ID.into(), secret: SECRET_ACCESS_KEY.into() }).await;
    admin_silent(&b, &["delete-access-key", "--access-key-id", &root2.id]);
    assert_eq!(admin_json(&b, &["list-access-keys"])["AccessKeyMetadata"].as_array().unwrap().len(), 1);
}

/// Managed policies and groups: a group's inline and attached policies apply to its members;
/// AWS managed policies attach by ARN; deletions go in IAM's order.
#[tokio::test]
async fn managed_policies_and_groups() {
    let b = Berth::start_strict();
    b.create_repo("app", "MUTABLE");
    let manifest = push_image(&b.client(), &b.url, "app", "v1", "root").await;

    let pull = json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], "Resource": app_arn("app")}]
    })
    .to_string();
    let v = admin_json(
        &b,
        &["create-policy", "--policy-name", "PullApp", "--policy-document", &pull, "--description", "pull app"],
    );
    let p = &v["Policy"];
    let arn = format!("arn:aws:iam::{ACCOUNT_ID}:policy/PullApp");
    assert_eq!(p["PolicyName"], "PullApp");
    assert_eq!(p["Arn"], arn.as_str());
    assert_eq!(p["Path"], "/");
    assert_eq!(p["DefaultVersionId"], "v1");
    assert_eq!(p["AttachmentCount"], 0);
    assert_eq!(p["IsAttachable"], true);
    assert_eq!(p["Description"], "pull app");
    assert!(p["PolicyId"].as_str().unwrap().starts_with("ANPA"), "{v}");
    assert_iam_date(&p["CreateDate"]);
    assert_eq!(
        admin_err(&b, &["create-policy", "--policy-name", "pullapp", "--policy-document", &pull]),
        "A policy called pullapp already exists. Duplicate names are not allowed."
    );

    let v = admin_json(&b, &["create-group", "--group-name", "dev"]);
    let g = &v["Group"];
    assert_eq!(g["GroupName"], "dev");
    assert_eq!(g["Path"], "/");
    assert_eq!(g["Arn"], format!("arn:aws:iam::{ACCOUNT_ID}:group/dev"));
    assert!(g["GroupId"].as_str().unwrap().starts_with("AGPA"), "{v}");
    assert_iam_date(&g["CreateDate"]);
    assert_eq!(admin_err(&b, &["create-group", "--group-name", "dev"]), "Group with name dev already exists.");

    admin_json(&b, &["create-user", "--user-name", "bob"]);
    let key = create_key(&b, "bob");
    admin_silent(&b, &["add-user-to-group", "--group-name", "dev", "--user-name", "bob"]);
    let login_only = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:GetAuthorizationToken","Resource":"*"}]}"#;
    admin_silent(
        &b,
        &["put-group-policy", "--group-name", "dev", "--policy-name", "login", "--policy-document", login_only],
    );
    admin_silent(&b, &["attach-group-policy", "--group-name", "dev", "--policy-arn", &arn]);
    let v = admin_json(&b, &["get-group", "--group-name", "dev"]);
    assert_eq!(v["Users"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["Users"][0]["UserName"], "bob");
    assert_eq!(admin_json(&b, &["get-policy", "--policy-arn", &arn])["Policy"]["AttachmentCount"], 1);

    // bob logs in (the group's inline policy) and pulls `app` (the group's managed policy), but
    // may not push.
    let password = login(&b, &key).await;
    let c = registry_client(&password);
    assert_eq!(get_manifest(&c, &b.url, "app", "v1").await, (200, manifest));
    let (status, body) = put_blob(&c, &b.url, "app", b"x").await;
    assert_eq!(status, 403, "{body}");

    // AWS managed policies attach to users by ARN.
    let ro = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly";
    admin_silent(&b, &["attach-user-policy", "--user-name", "bob", "--policy-arn", ro]);
    assert_eq!(
        admin_json(&b, &["list-attached-user-policies", "--user-name", "bob"]),
        json!({"AttachedPolicies": [{"PolicyName": "AmazonEC2ContainerRegistryReadOnly", "PolicyArn": ro}]})
    );
    let v = admin_json(&b, &["list-policies", "--only-attached"]);
    let mut arns: Vec<&str> = v["Policies"].as_array().unwrap().iter().map(|p| p["Arn"].as_str().unwrap()).collect();
    arns.sort();
    assert_eq!(arns, [arn.as_str(), ro]);
    let v = admin_json(&b, &["list-policies", "--scope", "Local"]);
    assert_eq!(v["Policies"].as_array().unwrap().len(), 1, "{v}");
    admin_silent(&b, &["detach-user-policy", "--user-name", "bob", "--policy-arn", ro]);
    assert_eq!(admin_json(&b, &["list-attached-user-policies", "--user-name", "bob"]), json!({"AttachedPolicies": []}));
    assert_eq!(
        admin_err(&b, &["detach-user-policy", "--user-name", "bob", "--policy-arn", ro]),
        format!("Policy {ro} was not found.")
    );
    assert_eq!(
        admin_err(&b, &["attach-user-policy", "--user-name", "bob", "--policy-arn", "arn:aws:iam::aws:policy/Nope"]),
        "Policy arn:aws:iam::aws:policy/Nope does not exist or is not attachable."
    );

    // Deletions in IAM's order.
    assert_eq!(admin_err(&b, &["delete-policy", "--policy-arn", &arn]), "Cannot delete a policy attached to entities.");
    admin_silent(&b, &["delete-access-key", "--user-name", "bob", "--access-key-id", &key.id]);
    assert_eq!(
        admin_err(&b, &["delete-user", "--user-name", "bob"]),
        "Cannot delete entity, must remove users from group first."
    );
    assert_eq!(
        admin_err(&b, &["delete-group", "--group-name", "dev"]),
        "Cannot delete entity, must remove users from group first."
    );
    admin_silent(&b, &["remove-user-from-group", "--group-name", "dev", "--user-name", "bob"]);
    admin_silent(&b, &["delete-user", "--user-name", "bob"]);
    assert_eq!(
        admin_err(&b, &["delete-group", "--group-name", "dev"]),
        "Cannot delete entity, must delete policies first."
    );
    admin_silent(&b, &["delete-group-policy", "--group-name", "dev", "--policy-name", "login"]);
    admin_silent(&b, &["detach-group-policy", "--group-name", "dev", "--policy-arn", &arn]);
    admin_silent(&b, &["delete-group", "--group-name", "dev"]);
    assert_eq!(admin_json(&b, &["list-groups"]), json!({"Groups": []}));
    admin_silent(&b, &["delete-policy", "--policy-arn", &arn]);
    assert_eq!(admin_json(&b, &["list-policies", "--scope", "Local"]), json!({"Policies": []}));
}

/// Repository policies: set (from a file), get, delete, with ECR's output; an anonymous-pull
/// policy takes effect on the running server and stops when deleted.
#[tokio::test]
async fn repository_policy_set_get_delete() {
    let b = Berth::start_strict();
    b.create_repo("app", "MUTABLE");
    let manifest = push_image(&b.client(), &b.url, "app", "v1", "root").await;
    let tmp = tempfile::tempdir().unwrap();
    let not_found = format!(
        "Repository policy does not exist for the repository with name 'app' in the registry with id '{ACCOUNT_ID}'"
    );
    assert_eq!(admin_err(&b, &["get-repository-policy", "--repository-name", "app"]), not_found);
    assert_eq!(get_manifest(&anonymous(), &b.url, "app", "v1").await.0, 401);

    let text = json!({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "AnonymousPull", "Effect": "Allow", "Principal": "*", "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]}]
    })
    .to_string();
    let arg = file_arg(tmp.path(), "repo-policy.json", &text);
    // ECR's fields; the text as stored (ECR normalizes its layout), the same document.
    let set = admin_json(&b, &["set-repository-policy", "--repository-name", "app", "--policy-text", &arg]);
    let keys: Vec<&str> = set.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["registryId", "repositoryName", "policyText"]);
    assert_eq!(set["registryId"], ACCOUNT_ID);
    assert_eq!(set["repositoryName"], "app");
    let stored: Value = serde_json::from_str(set["policyText"].as_str().unwrap()).unwrap();
    assert_eq!(stored, serde_json::from_str::<Value>(&text).unwrap());
    assert_eq!(admin_json(&b, &["get-repository-policy", "--repository-name", "app", "--region", REGION]), set);
    assert_eq!(manifest_until(&anonymous(), &b.url, "app", "v1", 200).await, manifest);

    assert_eq!(admin_json(&b, &["delete-repository-policy", "--repository-name", "app"]), set);
    manifest_until(&anonymous(), &b.url, "app", "v1", 401).await;
    assert_eq!(admin_err(&b, &["get-repository-policy", "--repository-name", "app"]), not_found);
    assert_eq!(admin_err(&b, &["delete-repository-policy", "--repository-name", "app"]), not_found);

    // Errors: ECR's validation message, unknown repositories and regions.
    let no_principal = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:BatchGetImage"}]}"#;
    let msg = admin_err(&b, &["set-repository-policy", "--repository-name", "app", "--policy-text", no_principal]);
    assert!(
        msg.starts_with(
            "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided"
        ),
        "{msg}"
    );
    assert_eq!(admin_err(&b, &["get-repository-policy", "--repository-name", "app"]), not_found);
    assert_eq!(
        admin_err(&b, &["set-repository-policy", "--repository-name", "nope", "--policy-text", &text]),
        format!("The repository with name 'nope' does not exist in the registry with id '{ACCOUNT_ID}'")
    );
    assert_eq!(
        admin_err(&b, &["get-repository-policy", "--repository-name", "app", "--region", "eu-west-1"]),
        format!("region 'eu-west-1' is not hosted by this deployment (regions: {REGION})")
    );
}

/// With create-on-push, a push that would create the repository also needs
/// `ecr:CreateRepository` on it (as ECR's repository creation templates require); pushes to an
/// existing repository do not.
#[tokio::test]
async fn create_on_push_needs_create_repository() {
    let b = Berth::start(); // create-on-push on
    let tmp = tempfile::tempdir().unwrap();
    admin_json(&b, &["create-user", "--user-name", "pusher"]);
    let key = create_key(&b, "pusher");
    let doc = file_arg(tmp.path(), "p.json", &push_pull_policy("fresh"));
    admin_silent(&b, &["put-user-policy", "--user-name", "pusher", "--policy-name", "pp", "--policy-document", &doc]);
    let c = registry_client(&login_when_allowed(&b, &key).await);

    let (status, body) = put_blob(&c, &b.url, "fresh", b"first layer").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(oci_code(body.as_bytes()), "DENIED", "{body}");
    let want = format!(
        "User: arn:aws:iam::{ACCOUNT_ID}:user/pusher is not authorized to perform: ecr:CreateRepository on resource: {} because no identity-based policy allows the ecr:CreateRepository action",
        app_arn("fresh")
    );
    assert!(body.contains(&want), "{body}");
    let (status, _) = ecr(&b, &key_root(), "DescribeRepositories", &json!({"repositoryNames": ["fresh"]})).await;
    assert_eq!(status, 400, "nothing was created");

    // With CreateRepository on that repository the same push creates it.
    let create = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecr:CreateRepository", "Resource": app_arn("fresh")}]})
    .to_string();
    let doc = file_arg(tmp.path(), "c.json", &create);
    admin_silent(
        &b,
        &["put-user-policy", "--user-name", "pusher", "--policy-name", "create", "--policy-document", &doc],
    );
    let mut status = 0;
    for _ in 0..POLL_ROUNDS {
        status = put_blob(&c, &b.url, "fresh", b"first layer").await.0;
        if status == 201 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 201);
    push_image(&c, &b.url, "fresh", "v1", "fresh").await;

    // Once it exists, pushing needs only the push actions.
    admin_silent(&b, &["delete-user-policy", "--user-name", "pusher", "--policy-name", "create"]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    push_image(&c, &b.url, "fresh", "v2", "again").await;
}

fn key_root() -> Key {
    Key { id: ACCESS_KEY_ID.to_string(), secret: SECRET_ACCESS_KEY.to_string() }
}
