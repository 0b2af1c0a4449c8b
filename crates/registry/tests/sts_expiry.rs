//! Temporary credentials expire on time: the registry over a real SQLite store and filesystem
//! blob store, with a clock the test moves.

use berth_meta::sqlite::SqliteStore;
use berth_registry::roles::NewRole;
use berth_registry::sts::AssumeRoleParams;
use berth_registry::{Caller, Clock, Error, Keys, Registry, Settings, Target};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

const ACCOUNT: &str = "123456789012";

async fn registry(dir: &std::path::Path, clock: Arc<TestClock>) -> Registry {
    let meta = SqliteStore::open(&dir.join("meta.db")).await.unwrap();
    let blobs = berth_storage::fs::FsStore::open(dir.join("blobs")).unwrap();
    let settings = Settings {
        namespace: berth_meta::Namespace { account_id: ACCOUNT.into(), region: "us-east-1".into() },
        upload_ttl: Duration::from_secs(3600),
        regions: vec!["us-east-1".into()],
        create_on_push: false,
        registry_domain: None,
        blob_redirect_ttl: None,
        min_free_bytes: 0,
        gc_lease: Duration::from_secs(60),
        scan_interval: Duration::from_secs(86400),
        scan_sbom_referrers: false,
        encrypt_at_rest: true,
    };
    Registry::new(Arc::new(meta), Arc::new(blobs), clock, settings, Keys::from_server_key(&[7u8; 32]))
}

#[tokio::test]
async fn session_credentials_and_their_tokens_expire_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let start = 1_800_000_000_000;
    let clock = Arc::new(TestClock(AtomicI64::new(start)));
    let reg = registry(dir.path(), clock.clone()).await;
    let root = reg.create_account(Some(ACCOUNT)).await.unwrap();
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"sts:AssumeRole"}]}"#;
    reg.create_role(ACCOUNT, NewRole { name: "ci", trust_policy: trust, ..Default::default() }).await.unwrap();
    let allow = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"}]}"#;
    reg.put_inline_policy(ACCOUNT, berth_meta::Owner::Role("ci"), "all", allow).await.unwrap();

    let root_key = reg.signing_key(&root.access_key_id).await.unwrap().unwrap();
    let caller = Caller { identity: Some(&root_key.identity), ..Default::default() };
    let params = AssumeRoleParams {
        role_arn: "arn:aws:iam::123456789012:role/ci",
        session_name: "run-1",
        duration: Some(900),
        ..Default::default()
    };
    let out = reg.assume_role(&caller, params).await.unwrap();
    assert_eq!(out.credentials.expiration, start + 900_000);

    let key = reg.signing_key(&out.credentials.access_key_id).await.unwrap().expect("a live session");
    assert_eq!(key.identity.principal_arn, "arn:aws:sts::123456789012:assumed-role/ci/run-1");
    assert_eq!(key.identity.expires_at, Some(((start + 900_000) / 1000) as u64));
    let session = Caller { identity: Some(&key.identity), ..Default::default() };
    reg.authorize(&session, "ecr:CreateRepository", Target::Account).await.unwrap();

    // A registry token minted with the session expires with it, not 12 hours later.
    let token = reg.mint_token(&key.identity);
    assert_eq!(token.expires_at, ((start + 900_000) / 1000) as u64);
    let header = format!("Basic {}", token.authorization_token);
    reg.authenticate(Some(&header)).unwrap();

    // One millisecond before the end it works; at the end, neither the signature key, the
    // authorization of an already verified caller, nor the registry token does.
    clock.0.store(start + 899_999, Ordering::SeqCst);
    assert!(reg.signing_key(&out.credentials.access_key_id).await.unwrap().is_some());
    clock.0.store(start + 900_000, Ordering::SeqCst);
    assert!(matches!(reg.signing_key(&out.credentials.access_key_id).await, Err(Error::CredentialsExpired)));
    assert!(matches!(reg.authorize(&session, "ecr:CreateRepository", Target::Account).await, Err(Error::TokenExpired)));
    assert!(matches!(reg.authenticate(Some(&header)), Err(Error::TokenExpired)));
}

#[tokio::test]
async fn durations_are_bounded_by_the_role_and_by_chaining() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TestClock(AtomicI64::new(1_800_000_000_000)));
    let reg = registry(dir.path(), clock).await;
    let root = reg.create_account(Some(ACCOUNT)).await.unwrap();
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"sts:AssumeRole"}]}"#;
    let new = NewRole { name: "long", trust_policy: trust, max_session_duration: Some(43200), ..Default::default() };
    reg.create_role(ACCOUNT, new).await.unwrap();
    let allow = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"}]}"#;
    reg.put_inline_policy(ACCOUNT, berth_meta::Owner::Role("long"), "chain", allow).await.unwrap();
    let root_key = reg.signing_key(&root.access_key_id).await.unwrap().unwrap();
    let caller = Caller { identity: Some(&root_key.identity), ..Default::default() };
    let arn = "arn:aws:iam::123456789012:role/long";
    let p = |d| AssumeRoleParams { role_arn: arn, session_name: "s1", duration: Some(d), ..Default::default() };
    let out = reg.assume_role(&caller, p(43200)).await.unwrap();
    match reg.assume_role(&caller, p(43201)).await {
        Err(Error::Validation(m)) => assert!(m.contains("less than or equal to 43200"), "{m}"),
        other => panic!("{other:?}"),
    }
    match reg.assume_role(&caller, p(899)).await {
        Err(Error::Validation(m)) => assert!(m.contains("greater than or equal to 900"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Role chaining: a role session may assume a role for an hour at most.
    let key = reg.signing_key(&out.credentials.access_key_id).await.unwrap().unwrap();
    let chained = Caller { identity: Some(&key.identity), ..Default::default() };
    match reg.assume_role(&chained, p(3601)).await {
        Err(Error::Validation(m)) => assert!(m.contains("1 hour session limit"), "{m}"),
        other => panic!("{other:?}"),
    }
    reg.assume_role(&chained, p(3600)).await.unwrap();
}
