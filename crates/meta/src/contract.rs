//! One contract test body for every metadata backend: SQLite always; PostgreSQL when
//! `BERTH_TEST_POSTGRES_URL` names a server (`scripts/test` starts one; with
//! `BERTH_REQUIRE_POSTGRES=1` a missing server fails the test instead of skipping it).

use crate::*;

async fn contract(s: &dyn MetadataStore) {
    let ns = Namespace { account_id: "1".into(), region: "r".into() };
    let repo = s.ensure_repository(&ns, "a/b", 1).await.unwrap();
    assert_eq!(s.ensure_repository(&ns, "a/b", 2).await.unwrap(), repo);
    assert_eq!(s.list_repositories(&ns, None, 10).await.unwrap(), vec!["a/b".to_string()]);
    let m = NewManifest {
        repo_id: repo,
        digest: "sha256:m",
        media_type: "x",
        artifact_type: None,
        subject: Some("sha256:s"),
        annotations: None,
        content: b"{}",
        blobs: &["sha256:b"],
        children: &[],
        immutable_tags: &[],
        config_media_type: None,
        image_size: Some(5),
    };
    assert_eq!(s.put_manifest(&m, &["t"], 3).await.unwrap(), PutManifest::MissingBlobs(vec!["sha256:b".into()]));
    s.link_blob(repo, "sha256:b", 5, 3).await.unwrap();
    assert_eq!(s.put_manifest(&m, &["t", "u"], 4).await.unwrap(), PutManifest::Stored);
    assert_eq!(s.resolve_tag(repo, "t").await.unwrap().as_deref(), Some("sha256:m"));
    assert_eq!(s.list_tags(repo, Some("t"), 10).await.unwrap(), vec!["u".to_string()]);
    assert_eq!(s.referrers(repo, "sha256:s", None).await.unwrap().len(), 1);
    assert_eq!(s.referrers(repo, "sha256:s", Some("y")).await.unwrap().len(), 0);
    assert!(s.delete_tag(repo, "t").await.unwrap());
    assert!(s.manifest(repo, "sha256:m").await.unwrap().is_some());
    assert!(s.delete_manifest(repo, "sha256:m").await.unwrap());
    assert!(s.list_tags(repo, None, 10).await.unwrap().is_empty());
    s.create_upload("u", repo, 1).await.unwrap();
    assert!(s.set_upload_size("u", 0, 10, 2).await.unwrap());
    assert!(!s.set_upload_size("u", 0, 20, 2).await.unwrap());
    assert_eq!(s.stale_uploads(3, 10).await.unwrap(), vec!["u".to_string()]);
    s.complete_upload("u", repo, "sha256:c", 10, 5).await.unwrap();
    assert!(s.upload("u").await.unwrap().is_none());
    assert_eq!(s.blob_in_repo(repo, "sha256:c").await.unwrap(), Some(10));
    // Repositories with settings, resource tags, images and deletion.
    let ns2 = Namespace { account_id: "222222222222".into(), region: "eu-west-1".into() };
    let tags = vec![("team".to_string(), "a".to_string())];
    let new = NewRepository {
        ns: &ns2,
        name: "z/app",
        image_tag_mutability: "IMMUTABLE",
        mutability_exclusions: None,
        scan_on_push: true,
        encryption_type: "AES256",
        kms_key: None,
        tags: &tags,
    };
    let info = s.create_repository(&new, 10).await.unwrap().expect("created");
    assert!(s.create_repository(&new, 11).await.unwrap().is_none(), "second create is refused");
    assert_eq!(s.repository_info(&ns2, "z/app").await.unwrap().as_ref(), Some(&info));
    assert!(info.scan_on_push);
    assert_eq!(s.resource_tags(info.id).await.unwrap(), tags);
    assert!(!s.tag_repository(info.id, &[("k".into(), "v".into())], 1).await.unwrap(), "over the limit");
    assert_eq!(s.resource_tags(info.id).await.unwrap(), tags, "refused tagging changes nothing");
    assert!(s.tag_repository(info.id, &[("k".into(), "v".into())], 50).await.unwrap());
    s.untag_repository(info.id, &["team".into()]).await.unwrap();
    assert_eq!(s.resource_tags(info.id).await.unwrap(), vec![("k".to_string(), "v".to_string())]);
    s.set_tag_mutability(info.id, "MUTABLE", None).await.unwrap();
    assert_eq!(s.repository_info(&ns2, "z/app").await.unwrap().unwrap().image_tag_mutability, "MUTABLE");
    // Bytewise name order for pagination.
    for n in ["B", "a", "_"] {
        let r = NewRepository { name: n, tags: &[], ..new.clone() };
        s.create_repository(&r, 12).await.unwrap();
    }
    let names: Vec<String> =
        s.list_repository_infos(&ns2, None, 10).await.unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["B", "_", "a", "z/app"]);
    assert_eq!(s.list_repositories(&ns2, Some("_"), 1).await.unwrap(), ["a"]);
    // An immutable tag cannot move; images list tags.
    s.link_blob(info.id, "sha256:b", 5, 13).await.unwrap();
    let m2 = NewManifest { repo_id: info.id, digest: "sha256:n", subject: None, immutable_tags: &["v1"], ..m.clone() };
    assert_eq!(s.put_manifest(&m2, &["v1"], 14).await.unwrap(), PutManifest::Stored);
    let m3 = NewManifest { digest: "sha256:o", ..m2.clone() };
    assert_eq!(s.put_manifest(&m3, &["v1"], 15).await.unwrap(), PutManifest::TagExists("v1".into()));
    let images = s.images(info.id).await.unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(
        (images[0].digest.as_str(), images[0].tags.clone(), images[0].image_size),
        ("sha256:n", vec!["v1".to_string()], 5)
    );
    s.record_pull(info.id, "sha256:n", 99).await.unwrap();
    assert_eq!(s.images(info.id).await.unwrap()[0].last_pulled_at, Some(99));
    assert!(!s.referenced_by_index(info.id, "sha256:n").await.unwrap());
    assert_eq!(s.delete_repository(info.id, false).await.unwrap(), DeleteRepository::NotEmpty);
    assert_eq!(s.delete_repository(info.id, true).await.unwrap(), DeleteRepository::Deleted);
    assert!(s.repository_info(&ns2, "z/app").await.unwrap().is_none());
    // Accounts, keys, settings.
    assert!(s.create_account("222222222222", 1).await.unwrap());
    assert!(!s.create_account("222222222222", 2).await.unwrap());
    assert!(s.account_exists("222222222222").await.unwrap());
    let key = AccessKey {
        access_key_id: "AKIA1".into(),
        account_id: "222222222222".into(),
        user_name: None,
        secret_enc: "sealed".into(),
        status: "Active".into(),
        created_at: 3,
    };
    s.put_access_key(&key).await.unwrap();
    assert_eq!(s.access_key("AKIA1").await.unwrap(), Some(key));
    assert_eq!(s.init_setting("k", "first").await.unwrap(), "first");
    assert_eq!(s.init_setting("k", "second").await.unwrap(), "first");
    assert_eq!(s.setting("k").await.unwrap().as_deref(), Some("first"));
}

#[tokio::test]
async fn sqlite_contract() {
    let dir = tempfile::tempdir().unwrap();
    let s = sqlite::SqliteStore::open(&dir.path().join("m.db")).await.unwrap();
    contract(&s).await;
    s.close().await;
}

#[tokio::test]
async fn postgres_contract() {
    let Ok(url) = std::env::var("BERTH_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("BERTH_REQUIRE_POSTGRES").map(|v| v != "1").unwrap_or(true),
            "BERTH_REQUIRE_POSTGRES=1 but BERTH_TEST_POSTGRES_URL is not set"
        );
        eprintln!("SKIP postgres_contract: BERTH_TEST_POSTGRES_URL is not set");
        return;
    };
    // A fresh database per run.
    use sqlx::Connection;
    let db = format!(
        "berth_contract_{}_{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    );
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&mut admin).await.unwrap();
    let base = url.rsplit_once('/').map(|(b, _)| b).unwrap();
    let s = postgres::PgStore::open(&format!("{base}/{db}")).await.unwrap();
    contract(&s).await;
    s.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {db}"))).execute(&mut admin).await.unwrap();
}
