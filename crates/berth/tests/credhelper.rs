//! The client-side credential helpers against a real server: `berth credential-helper` (and the
//! same binary as `docker-credential-berth`) and `berth kubelet-credential-provider` get a
//! registry password from `GetAuthorizationToken` that the data plane accepts, cache it, and
//! fail clearly (caching nothing) with wrong credentials.
//!
//! Every helper run gets a clean environment (only what the test sets, plus a temp `HOME`), so
//! the developer's own AWS settings never leak in. The STS legs of the chain run against the
//! server's own STS: AssumeRole here (profiles with `source_profile`, one and two hops), web
//! identity in the Jenkins recipe (tests/ecr/test_ci_recipes.py).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{ACCESS_KEY_ID, Berth, SECRET_ACCESS_KEY, basic_auth, berth_bin, have};
use serde_json::Value;

/// A temp `HOME` (the token cache goes to `$HOME/.cache/berth`).
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cache_dir(&self) -> PathBuf {
        self.path().join(".cache/berth")
    }

    /// The files in the cache directory (none when it does not exist).
    fn cache_files(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.cache_dir()) {
            Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// `<home>/bin/docker-credential-berth`, a symlink to the binary under test.
    fn docker_credential_berth(&self) -> PathBuf {
        let bin = self.path().join("bin");
        let link = bin.join("docker-credential-berth");
        if !link.exists() {
            std::fs::create_dir_all(&bin).unwrap();
            std::os::unix::fs::symlink(berth_bin(), &link).unwrap();
        }
        link
    }
}

/// Runs `program args` with stdin `input` in a clean environment: `HOME` and `env` only.
fn run(program: &Path, args: &[&str], input: &str, home: &Home, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("HOME", home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run the helper");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn helper(action: &str, input: &str, home: &Home, env: &[(&str, &str)]) -> Output {
    run(&berth_bin(), &["credential-helper", action], input, home, env)
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The environment that points the helper at `b` with the root's keys.
fn root_env(b: &Berth) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_owned()),
        ("AWS_ENDPOINT_URL", b.url.clone()),
    ]
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// `get` for `server`; asserts success and the answer's shape, returns the password.
fn get_password(program: &Path, args: &[&str], server: &str, home: &Home, env: &[(&str, &str)]) -> String {
    let out = run(program, args, server, home, env);
    let text = stdout(&out);
    assert!(out.status.success(), "get failed: stdout {text:?} stderr {:?}", stderr(&out));
    // The protocol's field names, in its order, on one line.
    assert!(text.starts_with(r#"{"ServerURL":"#) && text.trim_end().lines().count() == 1, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let fields: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(fields, ["ServerURL", "Username", "Secret"]);
    assert_eq!(v["ServerURL"], server.trim());
    assert_eq!(v["Username"], "AWS");
    v["Secret"].as_str().unwrap().to_owned()
}

/// GET `/v2/` with `Basic AWS:<password>` (and `host` as the Host header); the status.
async fn v2_status(b: &Berth, password: &str, host: Option<&str>) -> u16 {
    let mut req =
        reqwest::Client::new().get(format!("{}/v2/", b.url)).header("authorization", basic_auth("AWS", password));
    if let Some(h) = host {
        req = req.header("host", h);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn docker_helper_with_env_credentials_gets_a_working_cached_password() {
    let mut b = Berth::start();
    let home = Home::new();
    let env = root_env(&b);
    let env = as_refs(&env);

    assert!(home.cache_files().is_empty());
    let password = get_password(&berth_bin(), &["credential-helper", "get"], &b.addr, &home, &env);
    assert_eq!(v2_status(&b, &password, None).await, 200);
    assert_eq!(v2_status(&b, "not-a-token", None).await, 401);

    // Cached: one owner-only file in an owner-only directory, holding no key.
    let files = home.cache_files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(std::fs::metadata(home.cache_dir()).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777, 0o600);
    let cached = std::fs::read_to_string(&files[0]).unwrap();
    assert!(!cached.contains(SECRET_ACCESS_KEY));

    // The same program as `docker-credential-berth`, with an `https://` server URL: the same
    // registry host, so the same cached token.
    let link = home.docker_credential_berth();
    let url = format!("https://{}\n", b.addr);
    let again = get_password(&link, &["get"], &url, &home, &env);
    assert_eq!(again, password);

    // Proof that it came from the cache: with the server gone, `get` still answers, the same.
    b.terminate();
    assert_eq!(get_password(&link, &["get"], &b.addr, &home, &env), password);
    assert_eq!(home.cache_files().len(), 1);

    // The other actions: nothing to store or erase, nothing to list.
    let out = run(&link, &["store"], r#"{"ServerURL":"x","Username":"AWS","Secret":"s"}"#, &home, &env);
    assert!(out.status.success() && out.stdout.is_empty());
    let out = run(&link, &["erase"], &b.addr, &home, &env);
    assert!(out.status.success() && out.stdout.is_empty());
    let out = run(&link, &["list"], "", &home, &env);
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), "{}");
    let out = run(&link, &["bogus"], "", &home, &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).starts_with("Usage: docker-credential-berth"));
}

#[tokio::test]
async fn concurrent_helpers_share_one_cache_file() {
    let b = Berth::start();
    let home = Home::new();
    let env = root_env(&b);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (addr, env, home_path) = (b.addr.clone(), env.clone(), home.path().to_owned());
            std::thread::spawn(move || {
                let home = Home { dir: tempfile::TempDir::new_in(&home_path).unwrap() };
                // Same cache for all: XDG_CACHE_HOME points at the shared one.
                let cache = home_path.join(".cache");
                let mut env = as_refs(&env);
                env.push(("XDG_CACHE_HOME", cache.to_str().unwrap()));
                let pw = get_password(&berth_bin(), &["credential-helper", "get"], &addr, &home, &env);
                drop(home);
                pw
            })
        })
        .collect();
    for t in threads {
        let pw = t.join().unwrap();
        assert_eq!(v2_status(&b, &pw, None).await, 200);
    }
    let files = home.cache_files();
    assert_eq!(files.len(), 1, "one entry, no temporary leftovers: {files:?}");
}

#[tokio::test]
async fn kubelet_provider_answers_with_a_working_password() {
    let b = Berth::start();
    let digest = common::push_small_image(&b.client(), &b.url, "team/app", "1.0", "kubelet").await;
    let home = Home::new();
    let env = root_env(&b);
    let env = as_refs(&env);
    let request = format!(
        r#"{{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"{}/team/app:1.0"}}"#,
        b.addr
    );
    let out = run(&berth_bin(), &["kubelet-credential-provider"], &request, &home, &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["apiVersion"], "credentialprovider.kubelet.k8s.io/v1");
    assert_eq!(v["kind"], "CredentialProviderResponse");
    assert_eq!(v["cacheKeyType"], "Registry");
    // A 12-hour token less the 5-minute margin (less the seconds this test took).
    let d = v["cacheDuration"].as_str().unwrap();
    let secs = parse_go_duration(d);
    assert!((11 * 3600 + 50 * 60..=11 * 3600 + 55 * 60).contains(&secs), "{d}");
    let auth = v["auth"].as_object().unwrap();
    assert_eq!(auth.keys().collect::<Vec<_>>(), [&b.addr]);
    assert_eq!(auth[&b.addr]["username"], "AWS");
    let password = auth[&b.addr]["password"].as_str().unwrap();

    // The password pulls the image.
    assert_eq!(v2_status(&b, password, None).await, 200);
    let r = reqwest::Client::new()
        .get(format!("{}/v2/team/app/manifests/1.0", b.url))
        .header("authorization", basic_auth("AWS", password))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    // As the kubelet's runtime would use it: skopeo pulls with the answer's credentials.
    if have("skopeo") {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("skopeo")
            .args(["copy", "--src-tls-verify=false", "--src-creds"])
            .arg(format!("AWS:{password}"))
            .arg(format!("docker://{}/team/app:1.0", b.addr))
            .arg(format!("oci:{}:pulled", dir.path().display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo with the provider's answer: {}", stderr(&out));
    }

    // Another apiVersion is refused on stderr.
    let old = request.replace("/v1\"", "/v1alpha1\"");
    let out = run(&berth_bin(), &["kubelet-credential-provider"], &old, &home, &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("unsupported apiVersion 'credentialprovider.kubelet.k8s.io/v1alpha1'"),
        "{}",
        stderr(&out)
    );
}

/// `11h54m58s` → seconds.
fn parse_go_duration(d: &str) -> u64 {
    let (h, rest) = d.split_once('h').unwrap();
    let (m, rest) = rest.split_once('m').unwrap();
    let s = rest.strip_suffix('s').unwrap();
    h.parse::<u64>().unwrap() * 3600 + m.parse::<u64>().unwrap() * 60 + s.parse::<u64>().unwrap()
}

#[tokio::test]
async fn wrong_credentials_fail_clearly_and_cache_nothing() {
    let b = Berth::start();
    let home = Home::new();
    let wrong_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYWRONGKEYX";
    let cases = [
        (ACCESS_KEY_ID, wrong_secret, "InvalidSignatureException"),
        ("AKIAUNKNOWNKEY000000", wrong_secret, "UnrecognizedClientException"),
    ];
    for (key, secret, code) in cases {
        let env = [("AWS_ACCESS_KEY_ID", key), ("AWS_SECRET_ACCESS_KEY", secret), ("AWS_ENDPOINT_URL", &b.url)];
        let out = helper("get", &b.addr, &home, &env);
        assert_eq!(out.status.code(), Some(1));
        let text = stdout(&out);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.starts_with(&format!("GetAuthorizationToken at {}/ failed: {code}: ", b.url)), "{text}");
        assert!(!text.contains(secret) && !stderr(&out).contains(secret));

        let request = format!(
            r#"{{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"{}/a:1"}}"#,
            b.addr
        );
        let out = run(&berth_bin(), &["kubelet-credential-provider"], &request, &home, &env);
        assert_eq!(out.status.code(), Some(1));
        assert!(out.stdout.is_empty());
        assert!(stderr(&out).contains(code), "{}", stderr(&out));
    }
    assert!(!home.cache_dir().exists(), "{:?}", home.cache_files());

    // No credentials at all: docker's "not found", so that it goes on anonymously.
    let out = helper("get", &b.addr, &home, &[("AWS_ENDPOINT_URL", &b.url)]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "credentials not found in native keychain\n");
    // Nothing listening: says so.
    let out = helper(
        "get",
        &b.addr,
        &home,
        &[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).starts_with("cannot reach http://127.0.0.1:1/: "), "{}", stdout(&out));
    assert!(!home.cache_dir().exists());
}

#[tokio::test]
async fn profile_credentials_and_the_region_of_a_registry_domain_host() {
    let b =
        Berth::start_with_env(&[("BERTH_REGISTRY_DOMAIN", "registry.test"), ("BERTH_REGIONS", "us-east-1,eu-west-1")]);
    let home = Home::new();
    std::fs::create_dir(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/credentials"),
        format!("[ci]\naws_access_key_id = {ACCESS_KEY_ID}\naws_secret_access_key = {SECRET_ACCESS_KEY}\n"),
    )
    .unwrap();
    std::fs::write(home.path().join(".aws/config"), "[profile ci]\noutput = json\n").unwrap();
    let port = b.addr.rsplit_once(':').unwrap().1;
    let host = format!("111111111111.dkr.ecr.eu-west-1.registry.test:{port}");
    // No region anywhere but in the host: the request is signed for eu-west-1 (a region the
    // server hosts; us-east-1 would work too, ap-south-1 would not).
    let env = [("AWS_PROFILE", "ci"), ("AWS_ENDPOINT_URL_ECR", b.url.as_str())];
    let password = get_password(&berth_bin(), &["credential-helper", "get"], &host, &home, &env);
    assert_eq!(v2_status(&b, &password, Some(&host)).await, 200);

    // A region the server does not host, from the environment (which wins over the host).
    let env = [("AWS_PROFILE", "ci"), ("AWS_ENDPOINT_URL_ECR", b.url.as_str()), ("AWS_REGION", "ap-south-1")];
    let out = helper("get", &format!("111111111111.dkr.ecr.us-east-1.registry.test:{port}"), &home, &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("region"), "{}", stdout(&out));

    // A profile AWS_PROFILE names must exist.
    let env = [("AWS_PROFILE", "nope"), ("AWS_ENDPOINT_URL_ECR", b.url.as_str())];
    let out = helper("get", &host, &home, &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).starts_with("profile 'nope' not found in "), "{}", stdout(&out));
}

/// skopeo (containers/image) runs `docker-credential-berth get` itself when its auth file says
/// `credHelpers: {"<host>": "berth"}`.
#[tokio::test]
async fn skopeo_pulls_through_cred_helpers() {
    if !have("skopeo") {
        eprintln!("skopeo_pulls_through_cred_helpers: skopeo not installed; skipped");
        return;
    }
    let b = Berth::start();
    common::push_small_image(&b.client(), &b.url, "helped", "v1", "skopeo").await;
    let home = Home::new();
    let link = home.docker_credential_berth();
    let path = format!("{}:{}", link.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let with_helper = home.path().join("auth.json");
    std::fs::write(&with_helper, serde_json::json!({"credHelpers": {b.addr.clone(): "berth"}}).to_string()).unwrap();
    let without = home.path().join("empty.json");
    std::fs::write(&without, "{}").unwrap();
    let inspect = |authfile: &Path| {
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false", "--authfile"])
            .arg(authfile)
            .arg(format!("docker://{}/helped:v1", b.addr))
            .env("PATH", &path)
            .env("HOME", home.path())
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env("AWS_ENDPOINT_URL", &b.url)
            .env_remove("AWS_PROFILE")
            .env_remove("REGISTRY_AUTH_FILE")
            .output()
            .unwrap()
    };
    let out = inspect(&without);
    assert!(!out.status.success(), "anonymous pulls must fail for this test to mean anything");
    let out = inspect(&with_helper);
    assert!(out.status.success(), "skopeo with the helper: {}", stderr(&out));
    let manifest: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(home.cache_files().len(), 1);
}

/// A profile that assumes a role (`role_arn` + `source_profile`, with `external_id`), against
/// Berth's own STS: the helper's password belongs to the role session, whose permissions (pull
/// only) the registry enforces.
#[tokio::test]
async fn profile_role_assumption_through_the_real_sts() {
    let b = Berth::start();
    common::push_small_image(&b.client(), &b.url, "assumed/app", "v1", "assume").await;
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"111111111111"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:ExternalId":"ext-42"}}}]}"#;
    b.admin_ok(&["create-role", "--role-name", "puller", "--assume-role-policy-document", trust]);
    b.admin_ok(&[
        "attach-role-policy",
        "--role-name",
        "puller",
        "--policy-arn",
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    ]);
    let home = Home::new();
    std::fs::create_dir(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/credentials"),
        format!("[base]\naws_access_key_id = {ACCESS_KEY_ID}\naws_secret_access_key = {SECRET_ACCESS_KEY}\n"),
    )
    .unwrap();
    // A second hop: `chained` assumes `hop` with the base key, then `puller` with hop's session.
    let hop_trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"111111111111"},"Action":"sts:AssumeRole"}]}"#;
    b.admin_ok(&["create-role", "--role-name", "hop", "--assume-role-policy-document", hop_trust]);
    let assume =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"}]}"#;
    b.admin_ok(&["put-role-policy", "--role-name", "hop", "--policy-name", "assume", "--policy-document", assume]);
    let config = "[profile ci]\nrole_arn = arn:aws:iam::111111111111:role/puller\nsource_profile = base\n\
                  external_id = ext-42\nrole_session_name = helper-test\n\n[profile wrong]\n\
                  role_arn = arn:aws:iam::111111111111:role/puller\nsource_profile = base\nexternal_id = nope-1\n\n\
                  [profile hop]\nrole_arn = arn:aws:iam::111111111111:role/hop\nsource_profile = base\n\n\
                  [profile chained]\nrole_arn = arn:aws:iam::111111111111:role/puller\nsource_profile = hop\n\
                  external_id = ext-42\nrole_session_name = chained-test\n";
    std::fs::write(home.path().join(".aws/config"), config).unwrap();
    let env = [("AWS_PROFILE", "ci"), ("AWS_ENDPOINT_URL", b.url.as_str()), ("AWS_REGION", "us-east-1")];
    let password = get_password(&berth_bin(), &["credential-helper", "get"], &b.addr, &home, &env);
    // The token names the role session and pulls, but does not push.
    let r = reqwest::Client::new()
        .get(format!("{}/v2/assumed/app/manifests/v1", b.url))
        .header("authorization", basic_auth("AWS", &password))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::Client::new()
        .post(format!("{}/v2/assumed/app/blobs/uploads/", b.url))
        .header("authorization", basic_auth("AWS", &password))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body = r.text().await.unwrap();
    assert!(body.contains("arn:aws:sts::111111111111:assumed-role/puller/helper-test"), "{body}");

    // Two hops through the real STS: base key -> hop session -> puller session.
    let env = [("AWS_PROFILE", "chained"), ("AWS_ENDPOINT_URL", b.url.as_str()), ("AWS_REGION", "us-east-1")];
    let password = get_password(&berth_bin(), &["credential-helper", "get"], &b.addr, &home, &env);
    let r = reqwest::Client::new()
        .post(format!("{}/v2/assumed/app/blobs/uploads/", b.url))
        .header("authorization", basic_auth("AWS", &password))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body = r.text().await.unwrap();
    assert!(body.contains("assumed-role/puller/chained-test"), "{body}");

    // The trust policy's ExternalId condition refuses the other profile.
    let env = [("AWS_PROFILE", "wrong"), ("AWS_ENDPOINT_URL", b.url.as_str()), ("AWS_REGION", "us-east-1")];
    let out = helper("get", &b.addr, &home, &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("AccessDenied"), "{}", stdout(&out));
}
