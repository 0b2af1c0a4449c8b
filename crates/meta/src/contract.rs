//! One contract test body for every metadata backend: SQLite always; PostgreSQL when
//! `BERTH_TEST_POSTGRES_URL` names a server (`scripts/test` starts one; with
//! `BERTH_REQUIRE_POSTGRES=1` a missing server fails the test instead of skipping it).

use crate::*;
use std::sync::Arc;

/// A small image manifest of `repo` with one 5-byte blob, `sha256:b`.
fn manifest(repo: i64, digest: &'static str) -> NewManifest<'static> {
    NewManifest {
        replicated: false,
        repo_id: repo,
        digest,
        media_type: "x",
        artifact_type: None,
        subject: None,
        annotations: None,
        content: b"{}",
        blobs: &[("sha256:b", 5)],
        children: &[],
        config_media_type: None,
        index: false,
    }
}

async fn contract(s: &dyn MetadataStore) {
    let ns = Namespace { account_id: "1".into(), region: "r".into() };
    assert_eq!(s.stats().await.unwrap(), Stats::default(), "an empty store");
    let repo = s.ensure_repository(&ns, "a/b", 1).await.unwrap();
    assert_eq!(s.ensure_repository(&ns, "a/b", 2).await.unwrap(), repo);
    assert_eq!(s.list_repositories(&ns, None, 10).await.unwrap(), vec!["a/b".to_string()]);
    let m = NewManifest { subject: Some("sha256:s"), ..manifest(repo, "sha256:m") };
    assert_eq!(s.put_manifest(&m, &["t"], 3).await.unwrap(), PutManifest::MissingBlobs(vec!["sha256:b".into()]));
    s.link_blob(repo, "sha256:b", 5, 3).await.unwrap();
    assert_eq!(s.put_manifest(&m, &["t", "u"], 4).await.unwrap(), PutManifest::Stored);
    assert_eq!(s.resolve_tag(repo, "t").await.unwrap().as_deref(), Some("sha256:m"));
    assert_eq!(s.list_tags(repo, Some("t"), 10).await.unwrap(), vec!["u".to_string()]);
    assert_eq!(s.referrers(repo, "sha256:s", None).await.unwrap().len(), 1);
    assert_eq!(s.referrers(repo, "sha256:s", Some("y")).await.unwrap().len(), 0);
    assert!(s.delete_tag(repo, "t", 0).await.unwrap());
    assert!(s.manifest(repo, "sha256:m").await.unwrap().is_some());
    assert!(s.delete_manifest(repo, "sha256:m", 0).await.unwrap());
    assert!(s.list_tags(repo, None, 10).await.unwrap().is_empty());
    s.create_upload("u", repo, 1).await.unwrap();
    let st = s.stats().await.unwrap();
    assert_eq!((st.blobs, st.blob_bytes, st.uploads_open), (1, 5, 1), "{st:?}");
    assert_eq!(s.upload("u").await.unwrap().unwrap().state, "");
    assert!(s.advance_upload("u", (0, ""), (10, "s1"), 2).await.unwrap());
    assert!(!s.advance_upload("u", (0, ""), (20, "s2"), 2).await.unwrap(), "the size moved");
    assert!(!s.advance_upload("u", (10, "s0"), (20, "s2"), 2).await.unwrap(), "same size, another state");
    let up = s.upload("u").await.unwrap().unwrap();
    assert_eq!((up.size, up.state.as_str()), (10, "s1"));
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
    s.set_tag_mutability(info.id, "MUTABLE", None, 0).await.unwrap();
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
    // Filtered listings: by name prefix, and the repositories with a policy.
    for n in ["ab", "ab/c", "abc", "b"] {
        let r = NewRepository { name: n, tags: &[], ..new.clone() };
        s.create_repository(&r, 12).await.unwrap();
    }
    let ns2_ = &ns2;
    let prefixed = |p: &'static str, last: Option<&'static str>, limit| async move {
        s.list_repositories_where(ns2_, RepoFilter::Prefix(p), last, limit).await.unwrap()
    };
    assert_eq!(prefixed("ab", None, 10).await, ["ab", "ab/c", "abc"]);
    assert_eq!(prefixed("ab", Some("ab"), 1).await, ["ab/c"]);
    assert_eq!(prefixed("ab", Some("ab/c"), 10).await, ["abc"]);
    assert_eq!(prefixed("ab/", Some("_"), 10).await, ["ab/c"]);
    assert_eq!(prefixed("ab", Some("abc"), 10).await, Vec::<String>::new());
    assert_eq!(prefixed("c", None, 10).await, Vec::<String>::new());
    assert_eq!(prefixed("", Some("b"), 10).await, ["z/app"]);
    let with_policy = |last: Option<&'static str>| async move {
        s.list_repositories_where(ns2_, RepoFilter::WithPolicy, last, 10).await.unwrap()
    };
    assert_eq!(with_policy(None).await, Vec::<String>::new());
    for n in ["abc", "_"] {
        let id = s.repository_info(&ns2, n).await.unwrap().unwrap().id;
        s.set_repository_policy(id, Some("{}"), 0).await.unwrap();
    }
    assert_eq!(with_policy(None).await, ["_", "abc"]);
    assert_eq!(with_policy(Some("_")).await, ["abc"]);
    assert_eq!(s.list_repositories_where(&ns, RepoFilter::WithPolicy, None, 10).await.unwrap(), Vec::<String>::new());
    // An immutable tag cannot move; images list tags.
    s.link_blob(info.id, "sha256:b", 5, 13).await.unwrap();
    let m2 = NewManifest { repo_id: info.id, digest: "sha256:n", subject: None, ..m.clone() };
    s.set_tag_mutability(info.id, "IMMUTABLE", None, 0).await.unwrap();
    assert_eq!(s.put_manifest(&m2, &["v1"], 14).await.unwrap(), PutManifest::Stored);
    let m3 = NewManifest { digest: "sha256:o", ..m2.clone() };
    assert_eq!(s.put_manifest(&m3, &["v1"], 15).await.unwrap(), PutManifest::TagExists("v1".into()));
    let images = all_images(s, info.id).await;
    assert_eq!(images.len(), 1);
    assert_eq!(
        (images[0].digest.as_str(), images[0].tags.clone(), images[0].image_size),
        ("sha256:n", vec!["v1".to_string()], 5)
    );
    writes_check_rules_in_the_transaction(s, &m, info.id).await;
    s.record_pull(info.id, "sha256:n", 99).await.unwrap();
    assert_eq!(all_images(s, info.id).await[0].last_pulled_at, Some(99));
    assert!(!s.referenced_by_index(info.id, "sha256:n").await.unwrap());
    assert_eq!(s.delete_repository(info.id, false, 0).await.unwrap(), DeleteRepository::NotEmpty);
    assert_eq!(s.delete_repository(info.id, true, 0).await.unwrap(), DeleteRepository::Deleted);
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

/// Every image of a repository, read a page of two at a time.
async fn all_images(s: &dyn MetadataStore, repo: i64) -> Vec<Image> {
    let mut out: Vec<Image> = Vec::new();
    loop {
        let key = out.last().map(Image::key);
        let from = key.as_ref().map_or(ImagesFrom::Start, ImagesFrom::After);
        let page = s.images_page(repo, TagStatus::Any, None, from, 2).await.unwrap();
        let done = page.len() < 2;
        out.extend(page);
        if done {
            return out;
        }
    }
}

/// Image listings: keyset pages in (push time, digest) order from a cursor, inclusive or not;
/// `tagStatus` filters follow every tag write; one image by digest; referrers by page and type.
async fn listing_contract(s: &dyn MetadataStore) {
    let ns = Namespace { account_id: "444444444444".into(), region: "r".into() };
    let repo = s.ensure_repository(&ns, "list", 1).await.unwrap();
    s.link_blob(repo, "sha256:b", 5, 1).await.unwrap();
    let m = |digest: &'static str, subject: Option<&'static str>, artifact_type: Option<&'static str>| NewManifest {
        replicated: false,
        subject,
        artifact_type,
        ..manifest(repo, digest)
    };
    // a (t=1, tags x y), b (t=2, untagged), c (t=2, tag z), d (t=3, untagged): b and c tie on
    // time and go by digest.
    for (d, tags, t) in
        [("sha256:a", &["y", "x"][..], 1), ("sha256:c", &["z"], 2), ("sha256:b", &[], 2), ("sha256:d", &[], 3)]
    {
        assert_eq!(s.put_manifest(&m(d, None, None), tags, t).await.unwrap(), PutManifest::Stored);
    }
    let page = |status: TagStatus, from: Option<(&'static str, i64, bool)>, limit: u32| async move {
        let key = from.map(|(d, t, _)| ImageKey { pushed_at: t, digest: d.to_string() });
        let from = match (&key, from) {
            (Some(k), Some((_, _, true))) => ImagesFrom::At(k),
            (Some(k), _) => ImagesFrom::After(k),
            _ => ImagesFrom::Start,
        };
        let imgs = s.images_page(repo, status, None, from, limit).await.unwrap();
        imgs.into_iter().map(|i| format!("{}{:?}", &i.digest[7..], i.tags)).collect::<Vec<_>>()
    };
    assert_eq!(page(TagStatus::Any, None, 2).await, ["a[\"x\", \"y\"]", "b[]"]);
    assert_eq!(page(TagStatus::Any, Some(("sha256:b", 2, false)), 5).await, ["c[\"z\"]", "d[]"]);
    assert_eq!(page(TagStatus::Any, Some(("sha256:c", 2, true)), 5).await, ["c[\"z\"]", "d[]"]);
    assert_eq!(page(TagStatus::Any, Some(("sha256:bb", 2, true)), 1).await, ["c[\"z\"]"], "a cursor between images");
    assert_eq!(page(TagStatus::Any, Some(("sha256:d", 3, false)), 5).await, Vec::<String>::new());
    assert_eq!(page(TagStatus::Tagged, None, 5).await, ["a[\"x\", \"y\"]", "c[\"z\"]"]);
    assert_eq!(page(TagStatus::Untagged, None, 5).await, ["b[]", "d[]"]);
    assert_eq!(page(TagStatus::Tagged, Some(("sha256:a", 1, false)), 5).await, ["c[\"z\"]"]);
    // Moving z from c to d untags c and tags d; pushing where a tag already is changes nothing.
    assert_eq!(s.put_manifest(&m("sha256:d", None, None), &["z"], 4).await.unwrap(), PutManifest::Stored);
    assert_eq!(s.put_manifest(&m("sha256:d", None, None), &["z"], 5).await.unwrap(), PutManifest::Stored);
    assert_eq!(page(TagStatus::Tagged, None, 5).await, ["a[\"x\", \"y\"]", "d[\"z\"]"]);
    assert_eq!(page(TagStatus::Untagged, None, 5).await, ["b[]", "c[]"]);
    // Removing one of two tags keeps the image tagged; removing the last untags it.
    assert!(s.delete_tag(repo, "x", 6).await.unwrap());
    assert_eq!(page(TagStatus::Tagged, None, 1).await, ["a[\"y\"]"]);
    assert!(s.delete_tag(repo, "y", 7).await.unwrap());
    assert_eq!(page(TagStatus::Untagged, None, 5).await, ["a[]", "b[]", "c[]"]);
    assert!(s.delete_manifest(repo, "sha256:d", 8).await.unwrap());
    assert_eq!(page(TagStatus::Tagged, None, 5).await, Vec::<String>::new());
    // One image by digest, with its tags.
    assert_eq!(s.put_manifest(&m("sha256:b", None, None), &["q", "p"], 9).await.unwrap(), PutManifest::Stored);
    let b = s.image(repo, "sha256:b").await.unwrap().unwrap();
    assert_eq!((b.pushed_at, b.tags.clone(), b.image_size), (2, vec!["p".to_string(), "q".to_string()], 5));
    assert_eq!(s.image(repo, "sha256:nope").await.unwrap(), None);
    // Referrers of a subject: pages in push order, filtered by artifact type.
    for (d, t, at) in [("sha256:r1", 10, "s"), ("sha256:r2", 11, "t"), ("sha256:r3", 12, "s")] {
        assert_eq!(s.put_manifest(&m(d, Some("sha256:b"), Some(at)), &[], t).await.unwrap(), PutManifest::Stored);
    }
    let refs = |types: &'static [&'static str], after: Option<(&'static str, i64)>, limit: u32| async move {
        let key = after.map(|(d, t)| ImageKey { pushed_at: t, digest: d.to_string() });
        let got = s.referrers_page(repo, "sha256:b", types, None, key.as_ref(), limit).await.unwrap();
        got.into_iter().map(|r| r.digest[7..].to_string()).collect::<Vec<_>>()
    };
    assert_eq!(refs(&[], None, 2).await, ["r1", "r2"]);
    assert_eq!(refs(&[], Some(("sha256:r2", 11)), 2).await, ["r3"]);
    assert_eq!(refs(&["s"], None, 5).await, ["r1", "r3"]);
    assert_eq!(refs(&["t", "u", "v", "w", "x"], None, 5).await, ["r2"]);
    let six = ["a", "b", "c", "d", "e", "f"];
    assert!(matches!(s.referrers_page(repo, "sha256:b", &six, None, None, 5).await, Err(MetaError::Invalid(_))));
    assert_eq!(s.referrers(repo, "sha256:b", Some("s")).await.unwrap().len(), 2);
}

/// The rules a manifest write obeys are read inside its transaction: the repository's committed
/// mutability settings (every mode, with wildcard exclusions), its existence, and the stored
/// sizes of what the manifest references; each write moves only its repository's epoch.
/// The archive storage class: status moves only from the expected status, listings filter on
/// it, pulls see it, and a push of the same manifest makes it active again.
async fn archive_contract(s: &dyn MetadataStore) {
    use crate::ImageStatus::{Activating, Active, Archived};
    let ns = Namespace { account_id: "666666666666".into(), region: "r".into() };
    let repo = s.ensure_repository(&ns, "arch", 1).await.unwrap();
    s.link_blob(repo, "sha256:b", 5, 1).await.unwrap();
    for d in ["sha256:a1", "sha256:a2"] {
        assert_eq!(s.put_manifest(&manifest(repo, d), &[], 2).await.unwrap(), PutManifest::Stored);
    }
    let sub = NewManifest { subject: Some("sha256:a2"), ..manifest(repo, "sha256:r1") };
    assert_eq!(s.put_manifest(&sub, &[], 3).await.unwrap(), PutManifest::Stored);
    assert!(!s.set_image_status(repo, "sha256:a1", Archived, Active, 4).await.unwrap(), "not archived");
    assert!(s.set_image_status(repo, "sha256:a1", Active, Archived, 5).await.unwrap());
    assert!(!s.set_image_status(repo, "sha256:a1", Active, Archived, 6).await.unwrap(), "once");
    assert!(s.set_image_status(repo, "sha256:r1", Active, Archived, 6).await.unwrap());
    assert_eq!(s.manifest(repo, "sha256:a1").await.unwrap().unwrap().status, Archived);
    let page = |st| async move {
        let imgs = s.images_page(repo, TagStatus::Any, st, crate::ImagesFrom::Start, 10).await.unwrap();
        imgs.into_iter().map(|i| (i.digest, i.status, i.last_archived_at, i.last_activated_at)).collect::<Vec<_>>()
    };
    assert_eq!(page(Some(Active)).await, [("sha256:a2".to_string(), Active, None, None)]);
    assert_eq!(
        page(Some(Archived)).await,
        [("sha256:a1".to_string(), Archived, Some(5), None), ("sha256:r1".to_string(), Archived, Some(6), None)]
    );
    assert_eq!(page(None).await.len(), 3);
    let refs = |st| async move {
        s.referrers_page(repo, "sha256:a2", &[], st, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.status)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        (refs(Some(Active)).await, refs(Some(Archived)).await, refs(None).await),
        (vec![], vec![Archived], vec![Archived])
    );
    // Restore: activating, then active with the time.
    assert!(s.set_image_status(repo, "sha256:a1", Archived, Activating, 7).await.unwrap());
    assert!(s.set_image_status(repo, "sha256:a1", Activating, Active, 8).await.unwrap());
    let i = s.image(repo, "sha256:a1").await.unwrap().unwrap();
    assert_eq!((i.status, i.last_archived_at, i.last_activated_at), (Active, Some(5), Some(8)));
    // A push of an archived manifest makes it active.
    assert_eq!(s.put_manifest(&sub, &["t"], 9).await.unwrap(), PutManifest::Stored);
    let i = s.image(repo, "sha256:r1").await.unwrap().unwrap();
    assert_eq!((i.status, i.last_activated_at), (Active, Some(9)));
    assert!(!s.set_image_status(repo, "sha256:none", Active, Archived, 10).await.unwrap());
    // An index's child is not archived on its own; a lifecycle transition re-checks the tags.
    let idx = NewManifest { children: &[("sha256:a2", 2)], index: true, ..manifest(repo, "sha256:ix") };
    assert_eq!(s.put_manifest(&idx, &[], 11).await.unwrap(), PutManifest::Stored);
    assert!(!s.set_image_status(repo, "sha256:a2", Active, Archived, 12).await.unwrap(), "listed by an index");
    let detail = serde_json::json!({"action-type": "TRANSITION"});
    assert!(!s.transition_manifest(repo, "sha256:a1", &["x".to_string()], &detail, 13).await.unwrap(), "tags differ");
    assert!(s.transition_manifest(repo, "sha256:a1", &[], &detail, 14).await.unwrap());
    assert_eq!(s.image(repo, "sha256:a1").await.unwrap().unwrap().status, Archived);
}

async fn lifecycle_contract(s: &dyn MetadataStore) {
    use lifecycle::preview_status::{COMPLETE, IN_PROGRESS};
    let ns = Namespace { account_id: "555555555555".into(), region: "r".into() };
    let repo = s.ensure_repository(&ns, "lc", 1).await.unwrap();
    let other = s.ensure_repository(&ns, "lc2", 1).await.unwrap();
    // Policies: put, replace (resets the evaluation time), evaluated only for the policy run.
    assert!(s.lifecycle_policy(repo).await.unwrap().is_none());
    assert!(!s.set_lifecycle_policy(repo, None, 1).await.unwrap(), "deleting an absent policy");
    assert!(s.set_lifecycle_policy(repo, Some("{p1}"), 10).await.unwrap());
    s.lifecycle_evaluated(repo, 10, 11).await.unwrap();
    let p = s.lifecycle_policy(repo).await.unwrap().unwrap();
    assert_eq!((p.text.as_str(), p.updated_at, p.last_evaluated_at), ("{p1}", 10, Some(11)));
    assert!(s.set_lifecycle_policy(repo, Some("{p2}"), 20).await.unwrap());
    s.lifecycle_evaluated(repo, 10, 21).await.unwrap();
    let p = s.lifecycle_policy(repo).await.unwrap().unwrap();
    assert_eq!((p.text.as_str(), p.last_evaluated_at), ("{p2}", None), "a run of the replaced policy");
    s.set_lifecycle_policy(other, Some("{o}"), 20).await.unwrap();
    let listed = s.lifecycle_repositories(0, 10).await.unwrap();
    assert!(listed.iter().any(|r| r.repo_id == repo && r.name == "lc" && r.account_id == ns.account_id));
    let after: Vec<i64> = s.lifecycle_repositories(repo, 10).await.unwrap().iter().map(|r| r.repo_id).collect();
    assert!(after.contains(&other) && !after.contains(&repo));
    assert!(s.set_lifecycle_policy(other, None, 30).await.unwrap());
    assert!(s.lifecycle_policy(other).await.unwrap().is_none());

    // Previews: one in progress at a time, unless it is stale; only its own start finishes it.
    assert!(s.lifecycle_preview(repo).await.unwrap().is_none());
    assert!(s.begin_lifecycle_preview(repo, "{a}", 100, 0).await.unwrap());
    assert!(!s.begin_lifecycle_preview(repo, "{b}", 101, 50).await.unwrap(), "one in progress");
    s.end_lifecycle_preview(repo, 99, COMPLETE, "[]").await.unwrap();
    let p = s.lifecycle_preview(repo).await.unwrap().unwrap();
    assert_eq!((p.policy_text.as_str(), p.status.as_str(), p.result), ("{a}", IN_PROGRESS, None));
    assert!(s.begin_lifecycle_preview(repo, "{c}", 200, 150).await.unwrap(), "a stale preview is replaced");
    s.end_lifecycle_preview(repo, 200, COMPLETE, "[1]").await.unwrap();
    let p = s.lifecycle_preview(repo).await.unwrap().unwrap();
    assert_eq!((p.policy_text.as_str(), p.status.as_str(), p.result.as_deref()), ("{c}", COMPLETE, Some("[1]")));
    assert!(s.begin_lifecycle_preview(repo, "{d}", 300, 0).await.unwrap(), "after a complete one");

    // Expiry is conditional on the tags the evaluation saw and on no index listing the image.
    s.link_blob(repo, "sha256:b", 5, 1).await.unwrap();
    let m = |d: &'static str| manifest(repo, d);
    s.put_manifest(&m("sha256:e1"), &["x", "a"], 2).await.unwrap();
    s.put_manifest(&m("sha256:e2"), &[], 2).await.unwrap();
    let children = [("sha256:e2", 2u64)];
    let index = NewManifest { children: &children, blobs: &[], index: true, ..m("sha256:i") };
    assert_eq!(s.put_manifest(&index, &["multi"], 3).await.unwrap(), PutManifest::Stored);
    assert_eq!(s.index_children(repo).await.unwrap(), vec![("sha256:i".to_string(), "sha256:e2".to_string())]);
    let (_, start) = drain(s, events::Cursor::default()).await;
    let detail = serde_json::json!({"rule-priority": 1});
    let tags = |t: &[&str]| t.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert!(!s.expire_manifest(repo, "sha256:e1", &tags(&["a"]), &detail, 5).await.unwrap(), "tags changed");
    assert!(!s.expire_manifest(repo, "sha256:e2", &[], &detail, 5).await.unwrap(), "listed by an index");
    assert!(!s.expire_manifest(repo, "sha256:none", &[], &detail, 5).await.unwrap(), "absent");
    assert!(s.manifest(repo, "sha256:e1").await.unwrap().is_some());
    assert!(s.expire_manifest(repo, "sha256:e1", &tags(&["a", "x"]), &detail, 5).await.unwrap());
    assert!(s.manifest(repo, "sha256:e1").await.unwrap().is_none());
    assert!(s.resolve_tag(repo, "x").await.unwrap().is_none());
    let (evs, _) = drain(s, start).await;
    let kinds: Vec<&str> = evs.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, [events::kind::IMAGE_DELETE, events::kind::IMAGE_DELETE, events::kind::LIFECYCLE_ACTION]);
    assert_eq!(evs[2].detail, detail.to_string());
    // Once the index goes, its child may expire.
    assert!(s.delete_manifest(repo, "sha256:i", 6).await.unwrap());
    assert!(s.expire_manifest(repo, "sha256:e2", &[], &detail, 7).await.unwrap());
    // Both go with their repository.
    assert_eq!(s.delete_repository(repo, true, 8).await.unwrap(), DeleteRepository::Deleted);
    assert!(s.lifecycle_policy(repo).await.unwrap().is_none());
    assert!(s.lifecycle_preview(repo).await.unwrap().is_none());
}

/// Replication configurations (the first put's time kept) and statuses (one per destination).
async fn replication_contract(s: &dyn MetadataStore) {
    use crate::{Namespace, ReplicationStatus};
    let ns = Namespace { account_id: "818181818181".into(), region: "us-east-1".into() };
    assert_eq!(s.replication_config(&ns).await.unwrap(), None);
    s.put_replication_config(&ns, "{\"rules\":[]}", 10).await.unwrap();
    s.put_replication_config(&ns, "{\"rules\":[{}]}", 20).await.unwrap();
    assert_eq!(s.replication_config(&ns).await.unwrap(), Some(("{\"rules\":[{}]}".into(), 10)));
    let other = Namespace { account_id: "818181818181".into(), region: "eu-west-1".into() };
    assert_eq!(s.replication_config(&other).await.unwrap(), None);
    let st = |region: &str, status: &str, code: Option<&str>, at: i64| ReplicationStatus {
        dest_region: region.into(),
        dest_registry: "828282828282".into(),
        status: status.into(),
        failure_code: code.map(str::to_string),
        pushed_at: 5,
        updated_at: at,
    };
    s.set_replication_status(&ns, "app", "sha256:a", &st("eu-west-1", "IN_PROGRESS", None, 6)).await.unwrap();
    s.set_replication_status(&ns, "app", "sha256:a", &st("ap-east-1", "IN_PROGRESS", None, 6)).await.unwrap();
    s.set_replication_status(&ns, "app", "sha256:a", &st("eu-west-1", "FAILED", Some("ACCESS_DENIED"), 7))
        .await
        .unwrap();
    assert_eq!(
        s.replication_statuses(&ns, "app", "sha256:a").await.unwrap(),
        vec![st("ap-east-1", "IN_PROGRESS", None, 6), st("eu-west-1", "FAILED", Some("ACCESS_DENIED"), 7)]
    );
    assert!(s.replication_statuses(&ns, "app", "sha256:b").await.unwrap().is_empty());
    assert!(s.replication_statuses(&other, "app", "sha256:a").await.unwrap().is_empty());
}

/// Roles, OIDC providers and STS sessions.
async fn blob_keys_contract(s: &dyn MetadataStore) {
    use crate::BlobKey;
    let k = |d: &str, id: &str, arn: &str, w: &[u8]| BlobKey {
        digest: d.into(),
        dek_id: id.into(),
        key_arn: arn.into(),
        wrapped: w.to_vec(),
    };
    assert!(s.blob_keys("sha256:a", "01").await.unwrap().is_empty());
    s.put_blob_key(&k("sha256:a", "01", "berth:aes256", b"w1"), 1).await.unwrap();
    // An existing wrapping is kept.
    s.put_blob_key(&k("sha256:a", "01", "berth:aes256", b"other"), 2).await.unwrap();
    s.put_blob_key(&k("sha256:a", "01", "arn:k2", b"w2"), 2).await.unwrap();
    s.put_blob_key(&k("sha256:a", "02", "arn:k2", b"w3"), 2).await.unwrap();
    s.put_blob_key(&k("sha256:b", "01", "arn:k2", b"w4"), 2).await.unwrap();
    assert_eq!(
        s.blob_keys("sha256:a", "01").await.unwrap(),
        vec![k("sha256:a", "01", "arn:k2", b"w2"), k("sha256:a", "01", "berth:aes256", b"w1")]
    );
    // Pages of the wrappings under one key, in (digest, dek_id) order.
    let p1 = s.blob_keys_under("arn:k2", None, 2).await.unwrap();
    assert_eq!(p1, vec![k("sha256:a", "01", "arn:k2", b"w2"), k("sha256:a", "02", "arn:k2", b"w3")]);
    let p2 = s.blob_keys_under("arn:k2", Some(("sha256:a", "02")), 2).await.unwrap();
    assert_eq!(p2, vec![k("sha256:b", "01", "arn:k2", b"w4")]);
    // Re-wrapping is a compare-and-set.
    assert!(s.rewrap_blob_key(&k("sha256:a", "01", "arn:k2", b"new"), b"w2").await.unwrap());
    assert!(!s.rewrap_blob_key(&k("sha256:a", "01", "arn:k2", b"newer"), b"w2").await.unwrap());
    assert_eq!(s.blob_keys("sha256:a", "01").await.unwrap()[0].wrapped, b"new");
    s.put_blob_key(&k("sha256:c", "01", "arn:k2", b"w5"), 2).await.unwrap();
    s.delete_blob_keys_of(&["sha256:a".into(), "sha256:b".into()]).await.unwrap();
    assert!(s.blob_keys("sha256:a", "01").await.unwrap().is_empty());
    assert!(s.blob_keys("sha256:a", "02").await.unwrap().is_empty());
    assert!(s.blob_keys("sha256:b", "01").await.unwrap().is_empty());
    assert_eq!(s.blob_keys("sha256:c", "01").await.unwrap().len(), 1);
}

/// Repository creation templates, and repositories created with their policies.
async fn templates_contract(s: &dyn MetadataStore) {
    use templates::{CreateTemplate, StoredTemplate};
    let ns = Namespace { account_id: "333333333333".into(), region: "r".into() };
    let other = Namespace { account_id: "333333333333".into(), region: "r2".into() };
    let t = |prefix: &str| StoredTemplate {
        prefix: prefix.into(),
        description: Some("d".into()),
        encryption_type: "AES256".into(),
        kms_key: None,
        resource_tags: vec![("b".into(), "1".into()), ("a".into(), "2".into())],
        image_tag_mutability: "IMMUTABLE_WITH_EXCLUSION".into(),
        mutability_exclusions: Some(r#"[{"filterType":"WILDCARD","filter":"dev-*"}]"#.into()),
        repository_policy: None,
        lifecycle_policy: Some("lc".into()),
        applied_for: vec!["CREATE_ON_PUSH".into(), "REPLICATION".into()],
        custom_role_arn: None,
        created_at: 5,
        updated_at: 5,
        version: 0,
    };
    assert!(s.templates(&ns, None, 10).await.unwrap().is_empty());
    for p in ["prod/", "ROOT", "a-b", "a/b"] {
        assert_eq!(s.create_template(&ns, &t(p), 4).await.unwrap(), CreateTemplate::Created, "{p}");
    }
    // `prod` and `prod/` are one template; the registry's count is capped; regions are apart.
    assert_eq!(s.create_template(&ns, &t("prod"), 10).await.unwrap(), CreateTemplate::Exists);
    assert_eq!(s.create_template(&ns, &t("zz"), 4).await.unwrap(), CreateTemplate::LimitReached);
    assert_eq!(s.create_template(&other, &t("prod"), 1).await.unwrap(), CreateTemplate::Created);
    assert_eq!(s.template(&ns, "prod").await.unwrap(), Some(t("prod/")), "stored as spelled, found by key");
    assert!(s.template(&ns, "pro").await.unwrap().is_none());
    // Listed by key, bytewise ("R" < "a", "-" < "/"), in pages.
    let keys = |v: Vec<StoredTemplate>| v.into_iter().map(|t| t.prefix).collect::<Vec<_>>();
    assert_eq!(keys(s.templates(&ns, None, 10).await.unwrap()), ["ROOT", "a-b", "a/b", "prod/"].map(String::from));
    assert_eq!(keys(s.templates(&ns, None, 2).await.unwrap()), ["ROOT", "a-b"]);
    assert_eq!(keys(s.templates(&ns, Some("a-b"), 2).await.unwrap()), ["a/b", "prod/"]);
    assert_eq!(keys(s.templates(&other, None, 10).await.unwrap()), ["prod"]);
    // Updates are a compare-and-set on the version.
    let mut u = s.template(&ns, "ROOT").await.unwrap().unwrap();
    u.description = None;
    u.resource_tags.clear();
    u.applied_for = vec!["PULL_THROUGH_CACHE".into()];
    u.updated_at = 9;
    assert!(s.update_template(&ns, &u).await.unwrap());
    assert!(!s.update_template(&ns, &u).await.unwrap(), "a stale version changes nothing");
    let got = s.template(&ns, "ROOT").await.unwrap().unwrap();
    assert_eq!(got, StoredTemplate { version: 1, ..u.clone() });
    assert_eq!(got.created_at, 5);
    assert!(!s.update_template(&ns, &StoredTemplate { prefix: "nope".into(), ..u }).await.unwrap());
    // Deletion returns what was stored.
    assert_eq!(s.delete_template(&ns, "a/b").await.unwrap(), Some(t("a/b")));
    assert!(s.delete_template(&ns, "a/b").await.unwrap().is_none());
    assert_eq!(s.create_template(&ns, &t("a/b"), 4).await.unwrap(), CreateTemplate::Created, "room again");

    // A repository created with its policies, in one transaction.
    let (_, start) = drain(s, events::Cursor::default()).await;
    let epoch = s.auth_epoch().await.unwrap();
    let tags = vec![("k".to_string(), "v".to_string())];
    let new = NewRepository {
        ns: &ns,
        name: "prod/app",
        image_tag_mutability: "IMMUTABLE",
        mutability_exclusions: None,
        scan_on_push: false,
        encryption_type: "AES256",
        kms_key: None,
        tags: &tags,
    };
    let info = s.create_templated_repository(&new, Some("{}"), Some("lc"), "push", 20).await.unwrap().unwrap();
    assert_eq!(s.repository_info(&ns, "prod/app").await.unwrap().as_ref(), Some(&info));
    assert_eq!(info.image_tag_mutability, "IMMUTABLE");
    assert_eq!(s.resource_tags(info.id).await.unwrap(), tags);
    assert_eq!(s.repository_policy(info.id).await.unwrap().as_deref(), Some("{}"));
    let lc = s.lifecycle_policy(info.id).await.unwrap().unwrap();
    assert_eq!((lc.text.as_str(), lc.updated_at, lc.last_evaluated_at), ("lc", 20, None));
    assert!(s.auth_epoch().await.unwrap() > epoch, "a repository policy moves the authorization epoch");
    let (evs, _) = drain(s, start).await;
    let kinds: Vec<&str> = evs.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, [events::kind::REPOSITORY_CREATE, events::kind::REPOSITORY_POLICY]);
    let detail: serde_json::Value = serde_json::from_str(&evs[0].detail).unwrap();
    assert_eq!(detail["created-by"], "push");
    assert_eq!(detail["image-tag-mutability"], "IMMUTABLE");
    // An existing repository is left as it is.
    let again = NewRepository { image_tag_mutability: "MUTABLE", ..new.clone() };
    assert!(s.create_templated_repository(&again, None, None, "push", 21).await.unwrap().is_none());
    assert_eq!(s.repository_info(&ns, "prod/app").await.unwrap().as_ref(), Some(&info));
    // Without policies, none are stored.
    let plain = NewRepository { name: "prod/plain", tags: &[], ..new.clone() };
    let p = s.create_templated_repository(&plain, None, None, "replication", 22).await.unwrap().unwrap();
    assert!(s.repository_policy(p.id).await.unwrap().is_none());
    assert!(s.lifecycle_policy(p.id).await.unwrap().is_none());
}

async fn roles_contract(s: &dyn MetadataStore) {
    let acct = "555566667777";
    s.create_account(acct, 1).await.unwrap();
    let epoch = s.auth_epoch().await.unwrap();
    let role = Role {
        account_id: acct.into(),
        name: "Deploy".into(),
        id: "AROAEXAMPLE0000000001".into(),
        path: "/ci/".into(),
        trust_policy: "{}".into(),
        description: Some("d".into()),
        max_session_duration: 3600,
        tags: vec![("team".into(), "a".into()), ("env".into(), "prod".into())],
        created_at: 5,
    };
    assert!(s.create_role(&role).await.unwrap());
    assert!(s.auth_epoch().await.unwrap() > epoch, "a role change moves the authorization epoch");
    let mut dup = role.clone();
    dup.name = "DEPLOY".into();
    dup.id = "AROAEXAMPLE0000000002".into();
    assert!(!s.create_role(&dup).await.unwrap(), "names are unique without regard to case");
    assert_eq!(s.role(acct, "deploy").await.unwrap(), Some(role.clone()));
    assert_eq!(role.arn(), "arn:aws:iam::555566667777:role/ci/Deploy");
    assert_eq!(s.list_roles(acct, "/ci/", "", 10).await.unwrap(), vec![role.clone()]);
    assert!(s.list_roles(acct, "/other/", "", 10).await.unwrap().is_empty());
    assert!(s.list_roles(acct, "/", "deploy", 10).await.unwrap().is_empty(), "after the marker");
    let mut changed = role.clone();
    changed.trust_policy = "{\"x\":1}".into();
    changed.max_session_duration = 7200;
    changed.description = None;
    changed.tags.clear();
    assert!(s.update_role(&changed).await.unwrap());
    assert_eq!(s.role(acct, "Deploy").await.unwrap(), Some(changed.clone()));

    s.put_inline_policy(acct, Owner::Role("deploy"), "inline", "{\"a\":1}").await.unwrap();
    s.attach_policy(acct, Owner::Role("Deploy"), "arn:aws:iam::aws:policy/IAMReadOnlyAccess").await.unwrap();
    // A user of the same name does not share the role's policies.
    let mut got = s.role_policies(acct, "DEPLOY").await.unwrap();
    got.sort_by(|a, b| a.arn.cmp(&b.arn));
    assert_eq!(
        got,
        vec![
            IdentityPolicy { document: Some("{\"a\":1}".into()), arn: None },
            IdentityPolicy { document: None, arn: Some("arn:aws:iam::aws:policy/IAMReadOnlyAccess".into()) },
        ]
    );
    assert!(s.identity_policies(acct, "deploy").await.unwrap().is_empty());
    assert!(s.delete_role(acct, "deploy").await.unwrap());
    assert!(!s.delete_role(acct, "deploy").await.unwrap());
    assert_eq!(s.role(acct, "Deploy").await.unwrap(), None);

    let p = OidcProvider {
        account_id: acct.into(),
        url: "https://token.actions.githubusercontent.com".into(),
        arn: "arn:aws:iam::555566667777:oidc-provider/token.actions.githubusercontent.com".into(),
        client_ids: vec!["sts.amazonaws.com".into()],
        thumbprints: vec!["a".repeat(40)],
        tags: vec![],
        created_at: 9,
    };
    assert!(s.create_oidc_provider(&p).await.unwrap());
    let mut again = p.clone();
    again.url = "https://TOKEN.actions.githubusercontent.com/".into();
    assert!(!s.create_oidc_provider(&again).await.unwrap(), "one provider per URL");
    assert_eq!(s.oidc_provider(&p.arn).await.unwrap(), Some(p.clone()));
    let mut updated = p.clone();
    updated.client_ids.push("other".into());
    assert!(s.update_oidc_provider(&updated).await.unwrap());
    assert_eq!(s.list_oidc_providers(acct).await.unwrap(), vec![updated.clone()]);
    assert!(s.delete_oidc_provider(&p.arn).await.unwrap());
    assert!(s.list_oidc_providers(acct).await.unwrap().is_empty());

    let session = |id: &str, expires_at| StsSession {
        access_key_id: id.into(),
        account_id: acct.into(),
        kind: "role".into(),
        principal_name: Some("Deploy".into()),
        principal_id: Some("AROAEXAMPLE0000000001".into()),
        session_name: "run".into(),
        secret_enc: "sealed".into(),
        token_sha256: "ab".into(),
        policy: None,
        tags: "[]".into(),
        source_identity: None,
        created_at: 1,
        expires_at,
    };
    s.put_session(&session("ASIAOLD", 100), 0).await.unwrap();
    assert_eq!(s.session("ASIAOLD").await.unwrap(), Some(session("ASIAOLD", 100)));
    s.put_session(&session("ASIANEW", 10_000), 500).await.unwrap();
    assert_eq!(s.session("ASIAOLD").await.unwrap(), None, "expired sessions are purged");
    assert_eq!(s.session("ASIANEW").await.unwrap().map(|x| x.expires_at), Some(10_000));
}

async fn kms_contract(s: &dyn MetadataStore) {
    use crate::kms::{KEY_DISABLED, KEY_ENABLED, KEY_PENDING_DELETION};
    let (acct, region) = ("666677778888", "us-east-1");
    s.create_account(acct, 1).await.unwrap();
    let key = |id: &str| KmsKey {
        key_id: id.into(),
        account_id: acct.into(),
        region: region.into(),
        description: "d".into(),
        key_manager: "CUSTOMER".into(),
        state: KEY_ENABLED.into(),
        policy: "{}".into(),
        created_at: 10,
        deletion_date: None,
        pending_window_days: None,
        rotation_period_days: None,
        next_rotation_at: None,
        current_version: 1,
    };
    let material = |version: i64, rotation: Option<&str>| KmsMaterial {
        version,
        sealed: format!("sealed-{version}"),
        created_at: 10 + version,
        rotation_type: rotation.map(str::to_string),
    };
    let epoch = s.auth_epoch().await.unwrap();
    let a = key("00000000-0000-4000-8000-00000000000a");
    let tags = vec![("team".to_string(), "x".to_string()), ("env".to_string(), "prod".to_string())];
    assert!(s.create_kms_key(&a, &material(1, None), &tags, None).await.unwrap());
    assert!(s.auth_epoch().await.unwrap() > epoch, "a key change moves the authorization epoch");
    assert_eq!(s.kms_key(&a.key_id).await.unwrap(), Some(a.clone()));
    assert_eq!(a.arn(), "arn:aws:kms:us-east-1:666677778888:key/00000000-0000-4000-8000-00000000000a");
    assert_eq!(s.kms_key_tags(&a.key_id).await.unwrap(), vec![tags[1].clone(), tags[0].clone()], "by key");
    assert_eq!(s.kms_materials(&a.key_id).await.unwrap(), vec![material(1, None)]);

    // A key created with an alias: a taken alias writes nothing.
    let aws = KmsKey { key_manager: "AWS".into(), ..key("00000000-0000-4000-8000-00000000000b") };
    assert!(s.create_kms_key(&aws, &material(1, None), &[], Some("alias/aws/ecr")).await.unwrap());
    let other = key("00000000-0000-4000-8000-00000000000c");
    assert!(!s.create_kms_key(&other, &material(1, None), &tags, Some("alias/aws/ecr")).await.unwrap());
    assert_eq!(s.kms_key(&other.key_id).await.unwrap(), None, "rolled back");
    assert!(s.kms_key_tags(&other.key_id).await.unwrap().is_empty());
    let alias = s.kms_alias(acct, region, "alias/aws/ecr").await.unwrap().unwrap();
    assert_eq!((alias.target_key_id.as_str(), alias.created_at), (aws.key_id.as_str(), 10));
    assert_eq!(alias.arn(), "arn:aws:kms:us-east-1:666677778888:alias/aws/ecr");

    // Listing by id, from a marker; other regions are apart.
    let ids = |v: Vec<KmsKey>| v.into_iter().map(|k| k.key_id).collect::<Vec<_>>();
    assert_eq!(ids(s.list_kms_keys(acct, region, "", 10).await.unwrap()), vec![a.key_id.clone(), aws.key_id.clone()]);
    assert_eq!(ids(s.list_kms_keys(acct, region, "", 1).await.unwrap()), vec![a.key_id.clone()]);
    assert_eq!(ids(s.list_kms_keys(acct, region, &a.key_id, 10).await.unwrap()), vec![aws.key_id.clone()]);
    assert!(s.list_kms_keys(acct, "eu-west-1", "", 10).await.unwrap().is_empty());

    // State changes are compare-and-set on the stored state.
    let disabled = KmsKey { state: KEY_DISABLED.into(), description: "new".into(), ..a.clone() };
    assert!(!s.update_kms_key(&disabled, KEY_DISABLED).await.unwrap(), "the stored state is Enabled");
    assert!(s.update_kms_key(&disabled, KEY_ENABLED).await.unwrap());
    assert_eq!(s.kms_key(&a.key_id).await.unwrap(), Some(disabled.clone()));

    // Rotation: a new version becomes current only on top of the current one.
    let rotating = KmsKey { rotation_period_days: Some(90), next_rotation_at: Some(50), ..disabled.clone() };
    assert!(s.update_kms_key(&rotating, KEY_DISABLED).await.unwrap(), "same state: a plain update");
    assert!(s.kms_keys_due_for_rotation(100, 10).await.unwrap().is_empty(), "only enabled keys rotate");
    let enabled = KmsKey { state: KEY_ENABLED.into(), ..rotating.clone() };
    assert!(s.update_kms_key(&enabled, KEY_DISABLED).await.unwrap());
    assert!(s.kms_keys_due_for_rotation(49, 10).await.unwrap().is_empty());
    assert_eq!(s.kms_keys_due_for_rotation(50, 10).await.unwrap(), vec![a.key_id.clone()]);
    assert!(s.add_kms_material(&a.key_id, &material(2, Some("AUTOMATIC")), Some(500)).await.unwrap());
    assert!(!s.add_kms_material(&a.key_id, &material(2, Some("ON_DEMAND")), None).await.unwrap(), "raced");
    let k = s.kms_key(&a.key_id).await.unwrap().unwrap();
    assert_eq!((k.current_version, k.next_rotation_at), (2, Some(500)));
    assert_eq!(s.kms_material(&a.key_id, 2).await.unwrap(), Some(material(2, Some("AUTOMATIC"))));
    assert_eq!(s.kms_material(&a.key_id, 3).await.unwrap(), None);
    assert_eq!(s.kms_materials(&a.key_id).await.unwrap().len(), 2);

    // Aliases: unique per account and region, listed by name, filtered by key.
    let al = |name: &str, target: &str| KmsAlias {
        account_id: acct.into(),
        region: region.into(),
        name: name.into(),
        target_key_id: target.into(),
        created_at: 20,
        updated_at: 20,
    };
    assert!(s.create_kms_alias(&al("alias/b", &a.key_id)).await.unwrap());
    assert!(s.create_kms_alias(&al("alias/a", &a.key_id)).await.unwrap());
    assert!(!s.create_kms_alias(&al("alias/a", &aws.key_id)).await.unwrap(), "taken");
    let names = |v: Vec<KmsAlias>| v.into_iter().map(|a| a.name).collect::<Vec<_>>();
    assert_eq!(
        names(s.list_kms_aliases(acct, region, None, "", 10).await.unwrap()),
        ["alias/a", "alias/aws/ecr", "alias/b"]
    );
    assert_eq!(names(s.list_kms_aliases(acct, region, Some(&a.key_id), "", 10).await.unwrap()), ["alias/a", "alias/b"]);
    assert_eq!(names(s.list_kms_aliases(acct, region, None, "alias/a", 1).await.unwrap()), ["alias/aws/ecr"]);
    assert!(s.update_kms_alias(acct, region, "alias/b", &aws.key_id, 30).await.unwrap());
    assert!(!s.update_kms_alias(acct, region, "alias/none", &aws.key_id, 30).await.unwrap());
    let b = s.kms_alias(acct, region, "alias/b").await.unwrap().unwrap();
    assert_eq!((b.target_key_id.as_str(), b.created_at, b.updated_at), (aws.key_id.as_str(), 20, 30));
    assert!(s.delete_kms_alias(acct, region, "alias/b").await.unwrap());
    assert!(!s.delete_kms_alias(acct, region, "alias/b").await.unwrap());

    // Tags: overwrite by key, bounded, removed by key.
    assert!(!s.tag_kms_key(&a.key_id, &[("k".into(), "v".into())], 2).await.unwrap(), "over the limit");
    assert_eq!(s.kms_key_tags(&a.key_id).await.unwrap().len(), 2, "a refused tagging changes nothing");
    assert!(s.tag_kms_key(&a.key_id, &[("team".into(), "y".into()), ("k".into(), "v".into())], 50).await.unwrap());
    s.untag_kms_key(&a.key_id, &["env".into(), "absent".into()]).await.unwrap();
    assert_eq!(
        s.kms_key_tags(&a.key_id).await.unwrap(),
        vec![("k".to_string(), "v".to_string()), ("team".to_string(), "y".to_string())]
    );

    // Deletion: only a key pending deletion whose date has come; material, aliases and tags go.
    let enabled_now = s.kms_key(&a.key_id).await.unwrap().unwrap();
    assert!(!s.delete_kms_key(&a.key_id, 1_000).await.unwrap(), "not pending deletion");
    let pending = KmsKey {
        state: KEY_PENDING_DELETION.into(),
        deletion_date: Some(100),
        pending_window_days: Some(7),
        ..enabled_now.clone()
    };
    assert!(s.update_kms_key(&pending, KEY_ENABLED).await.unwrap());
    assert!(s.kms_keys_due_for_deletion(99, 10).await.unwrap().is_empty());
    assert_eq!(s.kms_keys_due_for_deletion(100, 10).await.unwrap(), vec![a.key_id.clone()]);
    assert!(s.kms_keys_due_for_rotation(1_000, 10).await.unwrap().is_empty(), "a key pending deletion does not rotate");
    assert!(!s.delete_kms_key(&a.key_id, 99).await.unwrap(), "not due yet");
    let epoch = s.auth_epoch().await.unwrap();
    assert!(s.delete_kms_key(&a.key_id, 100).await.unwrap());
    assert!(s.auth_epoch().await.unwrap() > epoch);
    assert_eq!(s.kms_key(&a.key_id).await.unwrap(), None);
    assert!(s.kms_materials(&a.key_id).await.unwrap().is_empty());
    assert!(s.kms_key_tags(&a.key_id).await.unwrap().is_empty());
    assert_eq!(names(s.list_kms_aliases(acct, region, None, "", 10).await.unwrap()), ["alias/aws/ecr"]);
}

async fn move_contract(s: &dyn MetadataStore) {
    use crate::ImageStatus::{Active, Archived};
    use gc::{Location::*, MoveGoal, MoveHold, MoveStart::*};
    let ns = Namespace { account_id: "666666666666".into(), region: "r".into() };
    let (r1, r2) =
        (s.ensure_repository(&ns, "mv1", 1).await.unwrap(), s.ensure_repository(&ns, "mv2", 1).await.unwrap());
    let (own, shared, loose) = ("sha256:mown", "sha256:mshared", "sha256:mloose");
    for (repo, d) in [(r1, own), (r1, shared), (r2, shared), (r1, loose)] {
        s.link_blob(repo, d, 7, 1).await.unwrap();
    }
    let (b1, b2) = ([(own, 7u64), (shared, 7)], [(shared, 7u64)]);
    assert_eq!(
        s.put_manifest(&NewManifest { blobs: &b1, ..manifest(r1, "sha256:m1") }, &[], 2).await.unwrap(),
        PutManifest::Stored
    );
    assert_eq!(
        s.put_manifest(&NewManifest { blobs: &b2, ..manifest(r2, "sha256:m2") }, &[], 2).await.unwrap(),
        PutManifest::Stored
    );
    let to_archive = MoveGoal::To(Archive);
    // Only blobs that archived images alone reference move to the archive.
    assert_eq!(s.move_hold(own, to_archive, 0, 100, 3).await.unwrap(), NotNeeded, "m1 is active");
    assert!(s.set_image_status(r1, "sha256:m1", Active, Archived, 4).await.unwrap());
    assert_eq!(s.move_hold(shared, to_archive, 0, 100, 5).await.unwrap(), NotNeeded, "m2 (active) shares it");
    assert_eq!(s.move_hold(loose, to_archive, 0, 100, 5).await.unwrap(), NotNeeded, "referenced by nothing");
    assert_eq!(s.move_hold(own, MoveGoal::To(Standard), 0, 100, 5).await.unwrap(), NotNeeded, "already there");
    assert_eq!(
        s.move_hold(own, to_archive, 0, 100, 5).await.unwrap(),
        Held(MoveHold { size: 7, location: Standard, since: 100 })
    );
    // While it moves: no second move, no upload hold, no deletion; mounts still link it.
    assert_eq!(s.move_hold(own, MoveGoal::Tidy, 0, 200, 6).await.unwrap(), Busy);
    assert!(!s.hold_blob(own, "upload:mu", 6).await.unwrap());
    assert!(s.unlink_blob(r1, own).await.unwrap());
    s.gc_mark(7).await.unwrap();
    assert!(s.gc_take(&[own.to_string()], 8, 0, 9).await.unwrap().is_empty(), "a move hold keeps it");
    assert_eq!(s.mount_blob(r1, own, 9).await.unwrap(), Some(7));
    // The commit needs the caller's token; renewing moves the token.
    assert!(!s.move_commit(own, Archive, 99, 10).await.unwrap());
    assert!(s.move_renew(own, 100, 150).await.unwrap());
    assert!(!s.move_renew(own, 100, 160).await.unwrap(), "the old token");
    assert!(s.move_commit(own, Archive, 150, 11).await.unwrap());
    assert_eq!(
        s.manifest_blob_locations(r1, "sha256:m1").await.unwrap(),
        vec![(own.into(), Archive), (shared.into(), Standard)]
    );
    assert!(s.any_archived_blob().await.unwrap());
    // A hold is claimed only once its deadline is a lease past, with the blob's location.
    assert!(s.move_claim_stale(150, 300, 10).await.unwrap().is_empty());
    assert_eq!(s.move_claim_stale_one(own, 150, 300).await.unwrap(), None);
    assert_eq!(s.move_claim_stale(151, 300, 10).await.unwrap(), vec![(own.to_string(), Archive)]);
    s.move_release(own, 150).await.unwrap();
    assert!(!s.hold_blob(own, "upload:mu", 301).await.unwrap(), "the claimer's hold stands");
    s.move_release(own, 300).await.unwrap();
    // Holds of dead uploads expire; move holds do not (they are claimed and finished).
    assert!(matches!(s.move_hold(own, MoveGoal::Tidy, 0, 400, 302).await.unwrap(), Held(h) if h.location == Archive));
    s.gc_expire_holds(i64::MAX).await.unwrap();
    assert_eq!(s.move_claim_stale_one(own, 401, 500).await.unwrap(), Some(Archive));
    s.move_release(own, 500).await.unwrap();
    // An image referencing it again stops a commit to the archive; an upload of it makes it
    // standard (its bytes were written to the blob store).
    assert_eq!(s.move_hold(shared, MoveGoal::To(Standard), 0, 600, 501).await.unwrap(), NotNeeded, "already standard");
    assert!(s.hold_blob(own, "upload:mv", 502).await.unwrap());
    s.create_upload("mv", r2, 502).await.unwrap();
    s.complete_upload("mv", r2, own, 7, 503).await.unwrap();
    assert_eq!(s.manifest_blob_locations(r1, "sha256:m1").await.unwrap()[0], (own.into(), Standard));
    assert!(matches!(s.move_hold(own, to_archive, 0, 700, 504).await.unwrap(), Held(_)));
    assert!(s.set_image_status(r1, "sha256:m1", Archived, Active, 505).await.unwrap());
    assert!(!s.move_commit(own, Archive, 700, 506).await.unwrap(), "m1 is active again");
    s.move_release(own, 700).await.unwrap();
    assert_eq!(s.manifest_blob_locations(r1, "sha256:m1").await.unwrap()[0], (own.into(), Standard));
}

fn done_scan() -> crate::scan::ImageScan {
    crate::scan::ImageScan {
        digest: "sha256:s1".into(),
        status: "COMPLETE".into(),
        description: None,
        requested_at: 0,
        completed_at: Some(30),
        source_updated_at: Some(11),
        counts: Some("{}".into()),
        findings: Some("[]".into()),
    }
}

async fn scan_contract(s: &dyn MetadataStore) {
    use crate::scan::{ImageScan, NewAdvisory, ScanRequest};
    let ns = Namespace { account_id: "777777777777".into(), region: "r".into() };
    let repo = s.ensure_repository(&ns, "scan", 1).await.unwrap();
    s.link_blob(repo, "sha256:b", 5, 1).await.unwrap();
    assert_eq!(s.put_manifest(&manifest(repo, "sha256:s1"), &[], 2).await.unwrap(), PutManifest::Stored);
    // Advisories: indexed by package; an import again replaces what an advisory named.
    assert_eq!(s.vuln_updated_at().await.unwrap(), None);
    let import = s.vuln_import_begin("fixtures", 10).await.unwrap();
    let adv = |id: &str, pkgs: &[(&str, &str)]| NewAdvisory {
        id: id.into(),
        modified: Some("2026-01-01T00:00:00Z".into()),
        body: format!("{{\"id\":\"{id}\"}}"),
        packages: pkgs.iter().map(|(e, n)| (e.to_string(), n.to_string())).collect(),
    };
    s.vuln_put(
        import,
        &[adv("A-1", &[("PyPI", "jinja2")]), adv("A-2", &[("PyPI", "jinja2"), ("crates.io", "smallvec")])],
    )
    .await
    .unwrap();
    assert_eq!(s.vuln_updated_at().await.unwrap(), None, "an unfinished import is not a source time");
    s.vuln_import_end(import, 2, 0, 11).await.unwrap();
    assert_eq!(s.vuln_updated_at().await.unwrap(), Some(11));
    let ids = |v: Vec<(String, String)>| v.into_iter().map(|(i, _)| i).collect::<Vec<_>>();
    assert_eq!(ids(s.vuln_for_package("PyPI", "jinja2").await.unwrap()), ["A-1", "A-2"]);
    assert_eq!(ids(s.vuln_for_package("crates.io", "smallvec").await.unwrap()), ["A-2"]);
    s.vuln_put(import, &[adv("A-2", &[("crates.io", "smallvec")])]).await.unwrap();
    assert_eq!(ids(s.vuln_for_package("PyPI", "jinja2").await.unwrap()), ["A-1"]);
    let (imports, advisories, packages) = s.vuln_status(10).await.unwrap();
    assert_eq!((imports.len(), advisories, packages), (1, 2, 2));
    // Scans: one request per interval; a finish for an older request loses to a newer one.
    assert_eq!(s.scan_request(repo, "sha256:none", i64::MIN, 20).await.unwrap(), ScanRequest::NoImage);
    assert_eq!(s.scan_request(repo, "sha256:s1", i64::MIN, 20).await.unwrap(), ScanRequest::Started);
    assert_eq!(s.scan_request(repo, "sha256:s1", 19, 21).await.unwrap(), ScanRequest::TooSoon);
    assert_eq!(s.scan_request(repo, "sha256:s1", i64::MAX, 21).await.unwrap(), ScanRequest::TooSoon, "in progress");
    let stale = 20 + crate::scan::STALE_SCAN_MS + 2;
    assert_eq!(s.scan_request(repo, "sha256:s1", 20, stale).await.unwrap(), ScanRequest::Started, "a lost scan");
    assert!(!s.scan_finish(repo, 20, &ImageScan { requested_at: 20, ..done_scan() }).await.unwrap(), "fenced out");
    let done = ImageScan { requested_at: stale, ..done_scan() };
    assert!(s.scan_finish(repo, stale, &done).await.unwrap());
    let got = s.scans(repo, &["sha256:s1".to_string(), "sha256:none".to_string()]).await.unwrap();
    assert_eq!(got, vec![done.clone()]);
    // A rescan (in progress, then failed) keeps the last completed scan's counts and findings.
    let again = stale + crate::scan::STALE_SCAN_MS + 1;
    assert_eq!(s.scan_request(repo, "sha256:s1", i64::MAX, again).await.unwrap(), ScanRequest::Started);
    let now = s.scans(repo, &["sha256:s1".to_string()]).await.unwrap().pop().unwrap();
    assert_eq!((now.status.as_str(), now.counts.as_deref()), ("IN_PROGRESS", Some("{}")));
    let failed =
        ImageScan { status: "FAILED".into(), requested_at: again, counts: None, findings: None, ..done.clone() };
    assert!(s.scan_finish(repo, again, &failed).await.unwrap());
    let now = s.scans(repo, &["sha256:s1".to_string()]).await.unwrap().pop().unwrap();
    assert_eq!(
        (now.status.as_str(), now.counts.as_deref(), now.findings.as_deref()),
        ("FAILED", Some("{}"), Some("[]"))
    );
    // Scans go with their image.
    assert!(s.delete_manifest(repo, "sha256:s1", 40).await.unwrap());
    assert!(s.scans(repo, &["sha256:s1".to_string()]).await.unwrap().is_empty());
    // Configuration.
    assert_eq!(s.registry_scanning("777777777777", "r").await.unwrap(), None);
    s.put_registry_scanning("777777777777", "r", "{\"scanType\":\"BASIC\"}").await.unwrap();
    assert_eq!(s.registry_scanning("777777777777", "r").await.unwrap().as_deref(), Some("{\"scanType\":\"BASIC\"}"));
    assert!(s.set_scan_on_push(repo, true).await.unwrap());
    assert!(s.repository_info(&ns, "scan").await.unwrap().unwrap().scan_on_push);
}

async fn gc_contract(s: &dyn MetadataStore) {
    let ns = Namespace { account_id: "666666666666".into(), region: "r".into() };
    let repo = s.ensure_repository(&ns, "gc", 1).await.unwrap();
    let (x, y, z) = ("sha256:gx", "sha256:gy", "sha256:gz");
    // The store holds the other contracts' data too: counts are compared with what was there.
    let before = s.gc_preview(50).await.unwrap();
    s.link_blob(repo, x, 3, 10).await.unwrap();
    s.link_blob(repo, y, 4, 10).await.unwrap();
    s.link_blob(repo, z, 5, 100).await.unwrap();
    let blobs = [(x, 3u64)];
    let m = NewManifest { blobs: &blobs, ..manifest(repo, "sha256:gm") };
    assert_eq!(s.put_manifest(&m, &["t"], 20).await.unwrap(), PutManifest::Stored);
    // Before 50: y's link is stale and unreferenced; x's is referenced, z's is young.
    let after = s.gc_preview(50).await.unwrap();
    assert_eq!((after.0 - before.0, after.1 - before.1, after.2 - before.2), (1, 1, 4));
    assert!(s.gc_repositories_with_stale_links(50, 0, 1000).await.unwrap().contains(&repo));
    assert_eq!(s.gc_unlink_stale(repo, 50).await.unwrap(), 1);
    assert_eq!(s.blob_in_repo(repo, y).await.unwrap(), None);
    assert_eq!((s.blob_in_repo(repo, x).await.unwrap(), s.blob_in_repo(repo, z).await.unwrap()), (Some(3), Some(5)));
    assert!(!s.gc_repositories_with_stale_links(50, 0, 1000).await.unwrap().contains(&repo));
    // The review queue: y is found, once; it is due only once marked before the cut.
    assert!(s.gc_mark(60).await.unwrap() >= 1);
    assert_eq!(s.gc_mark(61).await.unwrap(), 0);
    assert!(!s.gc_due(60, 1000).await.unwrap().contains(&y.to_string()));
    assert!(s.gc_due(61, 1000).await.unwrap().contains(&y.to_string()));
    // An upload's hold keeps it (and drops it from the queue: it is found again if unlinked).
    assert!(s.hold_blob(y, "upload:u1", 62).await.unwrap());
    assert!(s.gc_take(&[y.to_string()], 61, 0, 63).await.unwrap().is_empty());
    assert!(!s.gc_due(1000, 1000).await.unwrap().contains(&y.to_string()));
    s.release_hold(y, "upload:u1").await.unwrap();
    assert_eq!(s.gc_mark(64).await.unwrap(), 1);
    // A hold older than `holds_after` (a dead upload) does not keep it.
    assert!(s.hold_blob(y, "upload:dead", 64).await.unwrap());
    let taken = s.gc_take(&[y.to_string()], 65, 64, 66).await.unwrap();
    assert_eq!(taken, vec![gc::TakenBlob { digest: y.to_string(), size: 4 }]);
    // While its tombstone stands, no upload holds it and no mount links it.
    assert!(!s.hold_blob(y, "upload:u2", 67).await.unwrap());
    assert_eq!(s.mount_blob(repo, y, 67).await.unwrap(), None);
    // The tombstone (set at 66) is its owner's until it is stale; then anyone may claim it,
    // and the old owner's release no longer drops it.
    assert!(s.gc_claim_stale(66, 67, 10).await.unwrap().digests.is_empty());
    assert!(!s.gc_claim_stale_one(y, 66, 67).await.unwrap());
    let claimed = s.gc_claim_stale(67, 68, 10).await.unwrap();
    assert_eq!(claimed, gc::Claimed { digests: vec![y.to_string()], since: 68 });
    s.gc_release(&[y.to_string()], 66).await.unwrap();
    assert!(!s.hold_blob(y, "upload:u2", 68).await.unwrap(), "the claimer's tombstone stands");
    s.gc_release(&[y.to_string()], 68).await.unwrap();
    assert!(s.gc_claim_stale(i64::MAX, 68, 10).await.unwrap().digests.is_empty());
    assert_eq!(s.mount_blob(repo, y, 68).await.unwrap(), None, "the blob is gone");
    // An upload of it again: hold, then complete (hold gone, linked).
    assert!(s.hold_blob(y, "upload:u3", 69).await.unwrap());
    s.create_upload("u3", repo, 69).await.unwrap();
    s.complete_upload("u3", repo, y, 4, 70).await.unwrap();
    assert_eq!(s.blob_in_repo(repo, y).await.unwrap(), Some(4));
    assert_eq!(s.mount_blob(repo, y, 71).await.unwrap(), Some(4));
    // A blob that a manifest references is never taken, even with its link gone.
    assert!(s.unlink_blob(repo, x).await.unwrap());
    assert_eq!(s.gc_mark(72).await.unwrap(), 1);
    assert!(s.gc_take(&[x.to_string()], 73, 0, 74).await.unwrap().is_empty());
    assert!(s.manifest(repo, "sha256:gm").await.unwrap().is_some());
    // A completed upload during a deletion is refused, and leaves nothing.
    s.unlink_blob(repo, y).await.unwrap();
    s.gc_mark(75).await.unwrap();
    assert_eq!(s.gc_take(&[y.to_string()], 76, 70, 77).await.unwrap().len(), 1);
    s.create_upload("u4", repo, 78).await.unwrap();
    let err = s.complete_upload("u4", repo, y, 4, 78).await.unwrap_err();
    assert!(matches!(err, MetaError::BlobBeingDeleted(_)), "{err}");
    assert_eq!(s.blob_in_repo(repo, y).await.unwrap(), None);
    assert!(s.gc_claim_stale_one(y, 78, 79).await.unwrap(), "a stale tombstone is claimed");
    assert!(!s.gc_claim_stale_one(y, 79, 80).await.unwrap(), "once");
    s.gc_release(&[y.to_string()], 79).await.unwrap();
    assert!(s.hold_blob(y, "upload:u5", 80).await.unwrap());
    s.release_hold(y, "upload:u5").await.unwrap();
    // Holds of dead uploads expire; a tombstone does not.
    assert!(s.hold_blob("sha256:gq", "upload:dead2", 80).await.unwrap());
    assert!(s.gc_expire_holds(81).await.unwrap() >= 2, "the hold and its mutex row");
    assert!(s.hold_blob("sha256:gq", "upload:again", 82).await.unwrap());
    // Orphans: bytes with no blob row, no tombstone and no live hold.
    let (o1, o2, o3) = ("sha256:orphan1", "sha256:orphan2", "sha256:orphan3");
    assert!(s.hold_blob(o2, "upload:live", 90).await.unwrap());
    let known = vec![x.to_string(), o1.to_string(), o2.to_string(), o3.to_string()];
    assert_eq!(s.gc_orphans(&known, 85).await.unwrap(), vec![o1.to_string(), o3.to_string()]);
    assert_eq!(
        s.gc_orphans(&known, 95).await.unwrap(),
        vec![o1.to_string(), o2.to_string(), o3.to_string()],
        "an old hold"
    );
    assert!(s.hold_blob(o3, "upload:late", 91).await.unwrap(), "an upload of o3 starts after the listing");
    let taken = s.gc_take_orphans(&[o1.to_string(), o3.to_string()], 85, 92).await.unwrap();
    assert_eq!(taken, vec![o1.to_string()], "the take re-checks under the mutex");
    assert!(!s.hold_blob(o1, "upload:u6", 93).await.unwrap(), "its tombstone stands");
    assert!(s.gc_orphans(&known, 85).await.unwrap().is_empty());
    s.gc_release(&taken, 92).await.unwrap();
    assert!(s.hold_blob(o1, "upload:u6", 94).await.unwrap());
    for (d, h) in [(o1, "upload:u6"), (o2, "upload:live"), (o3, "upload:late")] {
        s.release_hold(d, h).await.unwrap();
    }
    // One pass at a time: the lease is its holder's until it expires or is released.
    assert_eq!(s.gc_pass_acquire("a", 100, 200).await.unwrap(), None);
    assert_eq!(s.gc_pass_acquire("a", 110, 210).await.unwrap(), None, "its holder takes it again");
    assert_eq!(s.gc_pass_acquire("b", 150, 250).await.unwrap(), Some(("a".to_string(), 110)));
    assert!(s.gc_pass_renew("a", 300).await.unwrap());
    assert!(!s.gc_pass_renew("b", 300).await.unwrap());
    assert_eq!(s.gc_pass_acquire("b", 300, 400).await.unwrap(), Some(("a".to_string(), 110)));
    assert_eq!(s.gc_pass_acquire("b", 301, 400).await.unwrap(), None, "an expired lease is taken over");
    assert!(!s.gc_pass_renew("a", 500).await.unwrap());
    s.gc_pass_release("a").await.unwrap();
    assert_eq!(s.gc_pass_acquire("c", 302, 400).await.unwrap(), Some(("b".to_string(), 301)));
    s.gc_pass_release("b").await.unwrap();
    assert_eq!(s.gc_pass_acquire("c", 303, 400).await.unwrap(), None);
    s.gc_pass_release("c").await.unwrap();
}

async fn writes_check_rules_in_the_transaction(s: &dyn MetadataStore, base: &NewManifest<'_>, repo: i64) {
    let ns = Namespace { account_id: "333333333333".into(), region: "r".into() };
    let other = s.ensure_repository(&ns, "other", 1).await.unwrap();
    let e_other = s.repository_epoch(other).await.unwrap().unwrap();
    let m = |digest: &'static str| NewManifest { repo_id: repo, digest, subject: None, ..base.clone() };
    // IMMUTABLE (set just before by the caller): "v1" exists and cannot move, even to its digest.
    assert_eq!(s.put_manifest(&m("sha256:n"), &["v1"], 20).await.unwrap(), PutManifest::TagExists("v1".into()));
    let e0 = s.repository_epoch(repo).await.unwrap().unwrap();
    s.set_tag_mutability(repo, "MUTABLE", None, 0).await.unwrap();
    let e1 = s.repository_epoch(repo).await.unwrap().unwrap();
    assert!(e1 > e0, "a mutability change moves the epoch");
    assert_eq!(s.put_manifest(&m("sha256:p"), &["v1", "dev-1", "latest"], 21).await.unwrap(), PutManifest::Stored);
    assert!(s.repository_epoch(repo).await.unwrap().unwrap() > e1, "a manifest write moves the epoch");
    assert_eq!(s.repository_epoch(other).await.unwrap(), Some(e_other), "writes elsewhere do not move it");
    let filters = r#"[{"filterType":"WILDCARD","filter":"dev-*"},{"filterType":"WILDCARD","filter":"latest"}]"#;
    s.set_tag_mutability(repo, "IMMUTABLE_WITH_EXCLUSION", Some(filters), 0).await.unwrap();
    assert_eq!(s.put_manifest(&m("sha256:q"), &["dev-1", "latest"], 22).await.unwrap(), PutManifest::Stored);
    assert_eq!(
        s.put_manifest(&m("sha256:q"), &["latest", "v1"], 23).await.unwrap(),
        PutManifest::TagExists("v1".into())
    );
    assert_eq!(s.resolve_tag(repo, "latest").await.unwrap().as_deref(), Some("sha256:q"), "nothing changed");
    s.set_tag_mutability(repo, "MUTABLE_WITH_EXCLUSION", Some(filters), 0).await.unwrap();
    assert_eq!(s.put_manifest(&m("sha256:p"), &["v1", "new"], 24).await.unwrap(), PutManifest::Stored);
    assert_eq!(s.put_manifest(&m("sha256:p"), &["dev-1"], 25).await.unwrap(), PutManifest::TagExists("dev-1".into()));
    assert_eq!(s.put_manifest(&m("sha256:p"), &["latest"], 25).await.unwrap(), PutManifest::TagExists("latest".into()));
    assert_eq!(s.put_manifest(&m("sha256:p"), &["dev"], 25).await.unwrap(), PutManifest::Stored);
    // Declared sizes must be the stored ones; the image size is what is stored.
    let big = [("sha256:b", 5_000_000_000u64)];
    let lying = NewManifest { blobs: &big, ..m("sha256:r") };
    assert_eq!(
        s.put_manifest(&lying, &["x"], 26).await.unwrap(),
        PutManifest::SizeMismatch { digest: "sha256:b".into(), declared: 5_000_000_000, stored: 5 }
    );
    assert!(s.manifest(repo, "sha256:r").await.unwrap().is_none());
    assert_eq!(s.resolve_tag(repo, "x").await.unwrap(), None);
    let img = all_images(s, repo).await.into_iter().find(|i| i.digest == "sha256:p").unwrap();
    assert_eq!(img.image_size, 5);
    // An index's children: declared size = stored manifest bytes (`{}`: 2).
    let kids = [("sha256:p", 3u64)];
    let index = NewManifest { blobs: &[], children: &kids, index: true, ..m("sha256:i") };
    assert_eq!(
        s.put_manifest(&index, &[], 27).await.unwrap(),
        PutManifest::SizeMismatch { digest: "sha256:p".into(), declared: 3, stored: 2 }
    );
    let kids = [("sha256:p", 2u64)];
    let index = NewManifest { blobs: &[], children: &kids, index: true, ..m("sha256:i") };
    assert_eq!(s.put_manifest(&index, &[], 28).await.unwrap(), PutManifest::Stored);
    let img = all_images(s, repo).await.into_iter().find(|i| i.digest == "sha256:i").unwrap();
    assert_eq!(img.image_size, 5, "an index's size is its largest child's");
    // A deleted repository takes no writes, and has no epoch.
    assert_eq!(s.delete_repository(other, true, 0).await.unwrap(), DeleteRepository::Deleted);
    assert_eq!(s.repository_epoch(other).await.unwrap(), None);
    assert_eq!(s.repository_version(&ns, "other").await.unwrap(), None);
    let dead = NewManifest { repo_id: other, blobs: &[], ..m("sha256:z") };
    assert_eq!(s.put_manifest(&dead, &["t"], 29).await.unwrap(), PutManifest::RepositoryGone);
    assert!(!s.delete_tag(other, "t", 0).await.unwrap());
    assert!(!s.delete_manifest(other, "sha256:z", 0).await.unwrap());
    assert!(s.manifest(other, "sha256:z").await.unwrap().is_none());
    // Back to the caller's state: "v1" on sha256:n only.
    s.set_tag_mutability(repo, "MUTABLE", None, 0).await.unwrap();
    for d in ["sha256:i", "sha256:p", "sha256:q"] {
        assert!(s.delete_manifest(repo, d, 0).await.unwrap());
    }
    assert_eq!(s.put_manifest(&m("sha256:n"), &["v1"], 30).await.unwrap(), PutManifest::Stored);
}

/// IAM entities, policies and the authorization epoch.
async fn iam_contract(s: &dyn MetadataStore) {
    let a = "123456789012";
    assert!(s.create_account(a, 1).await.unwrap());
    let e0 = s.auth_epoch().await.unwrap();
    let user = |name: &str, id: &str| IamEntity {
        account_id: a.into(),
        name: name.into(),
        id: id.into(),
        path: "/".into(),
        created_at: 5,
    };
    assert!(s.create_user(&user("CI", "AIDA1")).await.unwrap());
    assert!(!s.create_user(&user("ci", "AIDA2")).await.unwrap(), "names are unique without regard to case");
    assert!(s.auth_epoch().await.unwrap() > e0, "a change moves the epoch");
    let u = s.user(a, "ci").await.unwrap().unwrap();
    assert_eq!((u.name.as_str(), u.id.as_str()), ("CI", "AIDA1"));
    assert!(s.user("999999999999", "ci").await.unwrap().is_none());
    assert!(s.create_user(&IamEntity { path: "/eng/".into(), ..user("bob", "AIDA3") }).await.unwrap());
    let names = |v: Vec<IamEntity>| v.into_iter().map(|u| u.name).collect::<Vec<_>>();
    assert_eq!(names(s.list_users(a, "/", "", 10).await.unwrap()), ["bob", "CI"]);
    assert_eq!(names(s.list_users(a, "/eng/", "", 10).await.unwrap()), ["bob"]);
    assert_eq!(names(s.list_users(a, "/", "bob", 10).await.unwrap()), ["CI"]);

    // Groups and policies; identity_policies gathers the user's and its groups'.
    assert!(s.create_group(&IamEntity { id: "AGPA1".into(), ..user("devs", "") }).await.unwrap());
    s.add_group_member(a, "DEVS", "ci").await.unwrap();
    s.add_group_member(a, "devs", "ci").await.unwrap();
    assert_eq!(names(s.groups_of_user(a, "CI").await.unwrap()), ["devs"]);
    assert_eq!(names(s.group_members(a, "devs").await.unwrap()), ["CI"]);
    s.put_inline_policy(a, Owner::User("CI"), "p1", "{1}").await.unwrap();
    s.put_inline_policy(a, Owner::User("ci"), "p1", "{1b}").await.unwrap();
    s.put_inline_policy(a, Owner::Group("devs"), "g1", "{2}").await.unwrap();
    assert_eq!(s.inline_policy(a, Owner::User("ci"), "p1").await.unwrap().as_deref(), Some("{1b}"));
    assert_eq!(s.inline_policy_names(a, Owner::User("ci")).await.unwrap(), ["p1"]);
    let mp = ManagedPolicy {
        account_id: a.into(),
        name: "Pull".into(),
        id: "ANPA1".into(),
        path: "/".into(),
        arn: format!("arn:aws:iam::{a}:policy/Pull"),
        document: "{3}".into(),
        description: None,
        created_at: 1,
        updated_at: 1,
    };
    assert!(s.create_managed_policy(&mp).await.unwrap());
    assert!(!s.create_managed_policy(&ManagedPolicy { id: "ANPA2".into(), ..mp.clone() }).await.unwrap());
    assert_eq!(s.managed_policy(&mp.arn).await.unwrap().unwrap(), mp);
    assert_eq!(s.list_managed_policies(a, "/", "", 10).await.unwrap(), vec![mp.clone()]);
    s.attach_policy(a, Owner::Group("devs"), &mp.arn).await.unwrap();
    s.attach_policy(a, Owner::User("ci"), "arn:aws:iam::aws:policy/X").await.unwrap();
    assert_eq!(s.policy_attachment_count(&mp.arn).await.unwrap(), 1);
    let mut got = s.identity_policies(a, "ci").await.unwrap();
    got.sort_by(|x, y| (&x.document, &x.arn).cmp(&(&y.document, &y.arn)));
    let want = vec![
        IdentityPolicy { document: None, arn: Some("arn:aws:iam::aws:policy/X".into()) },
        IdentityPolicy { document: Some("{1b}".into()), arn: None },
        IdentityPolicy { document: Some("{2}".into()), arn: None },
        IdentityPolicy { document: Some("{3}".into()), arn: Some(mp.arn.clone()) },
    ];
    assert_eq!(got, want);
    assert!(s.identity_policies(a, "bob").await.unwrap().is_empty());
    assert!(s.detach_policy(a, Owner::Group("devs"), &mp.arn).await.unwrap());
    assert!(!s.detach_policy(a, Owner::Group("devs"), &mp.arn).await.unwrap());
    assert!(s.remove_group_member(a, "devs", "CI").await.unwrap());
    assert_eq!(s.identity_policies(a, "ci").await.unwrap().len(), 2);
    assert!(s.delete_inline_policy(a, Owner::User("ci"), "p1").await.unwrap());
    assert!(!s.delete_inline_policy(a, Owner::User("ci"), "p1").await.unwrap());
    assert!(s.delete_managed_policy(&mp.arn).await.unwrap());
    assert!(s.delete_group(a, "devs").await.unwrap());
    assert!(s.delete_user(a, "ci").await.unwrap());
    assert!(!s.delete_user(a, "ci").await.unwrap());

    // Access keys of root and users; status and deletion move the epoch.
    let key = |id: &str, user: Option<&str>| AccessKey {
        access_key_id: id.into(),
        account_id: a.into(),
        user_name: user.map(str::to_string),
        secret_enc: "x".into(),
        status: "Active".into(),
        created_at: 1,
    };
    s.put_access_key(&key("AKIAROOTIAM", None)).await.unwrap();
    s.put_access_key(&key("AKIABOBIAM", Some("Bob"))).await.unwrap();
    assert_eq!(s.access_keys_of(a, None).await.unwrap(), vec![key("AKIAROOTIAM", None)]);
    assert_eq!(s.access_keys_of(a, Some("bob")).await.unwrap(), vec![key("AKIABOBIAM", Some("Bob"))]);
    let e1 = s.auth_epoch().await.unwrap();
    assert!(s.set_access_key_status("AKIABOBIAM", "Inactive").await.unwrap());
    assert_eq!(s.access_key("AKIABOBIAM").await.unwrap().unwrap().status, "Inactive");
    assert!(s.auth_epoch().await.unwrap() > e1);
    assert!(s.delete_access_key("AKIABOBIAM").await.unwrap());
    assert!(!s.delete_access_key("AKIABOBIAM").await.unwrap());

    // Resource policies: repository (gone with its repository) and registry.
    let ns = Namespace { account_id: a.into(), region: "r".into() };
    let repo = s.ensure_repository(&ns, "pol", 1).await.unwrap();
    assert!(s.set_repository_policy(repo, Some("{r1}"), 0).await.unwrap());
    assert!(s.set_repository_policy(repo, Some("{r2}"), 0).await.unwrap());
    assert_eq!(s.repository_policy(repo).await.unwrap().as_deref(), Some("{r2}"));
    assert!(s.set_repository_policy(repo, None, 0).await.unwrap());
    assert!(!s.set_repository_policy(repo, None, 0).await.unwrap());
    s.set_repository_policy(repo, Some("{r3}"), 0).await.unwrap();
    assert_eq!(s.delete_repository(repo, true, 0).await.unwrap(), DeleteRepository::Deleted);
    assert!(s.repository_policy(repo).await.unwrap().is_none());
    assert!(s.registry_policy(&ns).await.unwrap().is_none());
    assert!(s.set_registry_policy(&ns, Some("{g}"), 0).await.unwrap());
    assert_eq!(s.registry_policy(&ns).await.unwrap().as_deref(), Some("{g}"));
    assert!(s.set_registry_policy(&ns, None, 0).await.unwrap());
    let e2 = s.auth_epoch().await.unwrap();
    s.bump_auth_epoch().await.unwrap();
    assert_eq!(s.auth_epoch().await.unwrap(), e2 + 1);
}

fn job<'a>(kind: &'a str, key: &'a str, max_attempts: u32) -> NewJob<'a> {
    NewJob { kind, key, payload: "{}", run_after: 0, max_attempts, once: false }
}

/// The job queue: idempotent enqueue, exclusive claims, leases, retries.
async fn jobs_contract(s: Arc<dyn MetadataStore>) {
    // Enqueue is idempotent per (kind, key) while pending or running.
    let a = s.enqueue_job(&job("e", "k1", 3), 1).await.unwrap().expect("enqueued");
    assert_eq!(s.enqueue_job(&job("e", "k1", 3), 2).await.unwrap(), None, "same kind+key pending");
    assert!(s.enqueue_job(&job("e", "k2", 3), 2).await.unwrap().is_some(), "other key");
    assert!(s.enqueue_job(&job("e2", "k1", 3), 2).await.unwrap().is_some(), "other kind");
    let jobs = s.stats().await.unwrap().jobs;
    assert_eq!(jobs, [("e".into(), "pending".into(), 2), ("e2".into(), "pending".into(), 1)]);
    let j = s.claim_job("n1", &["e"], 10, 1000).await.unwrap().expect("claimed");
    assert_eq!((j.id, j.state, j.attempts, j.lease_owner.as_deref()), (a, JobState::Running, 1, Some("n1")));
    assert_eq!(j.lease_expires_at, Some(1010));
    assert_eq!(s.enqueue_job(&job("e", "k1", 3), 11).await.unwrap(), None, "same kind+key running");
    assert!(s.complete_job(a, "n1", 12).await.unwrap());
    // Finished: a new run may be enqueued, unless `once` asks for one job per key ever.
    assert_eq!(s.enqueue_job(&NewJob { once: true, ..job("e", "k1", 3) }, 13).await.unwrap(), None);
    let b = s.enqueue_job(&job("e", "k1", 3), 13).await.unwrap().expect("re-enqueued after done");
    assert_ne!(a, b);
    assert!(s.enqueue_job(&NewJob { once: true, ..job("e", "k3", 3) }, 13).await.unwrap().is_some());
    assert_eq!(s.enqueue_job(&NewJob { once: true, ..job("e", "k3", 3) }, 14).await.unwrap(), None);

    // Only due jobs of the asked kinds are claimed.
    s.enqueue_job(&NewJob { run_after: 500, ..job("later", "x", 3) }, 1).await.unwrap().unwrap();
    assert!(s.claim_job("n1", &["nothing"], 1000, 100).await.unwrap().is_none());
    assert!(s.claim_job("n1", &[], 1000, 100).await.unwrap().is_none());
    assert!(s.claim_job("n1", &["later"], 499, 100).await.unwrap().is_none(), "not due yet");
    let l = s.claim_job("n1", &["nothing", "later"], 500, 100).await.unwrap().expect("due");
    assert_eq!(l.kind, "later");

    // Lease expiry hands a running job to another node; the old owner can no longer act on it.
    let id = s.enqueue_job(&job("lease", "x", 3), 1).await.unwrap().unwrap();
    let j = s.claim_job("dead", &["lease"], 1000, 100).await.unwrap().unwrap();
    assert_eq!(j.id, id);
    assert!(s.claim_job("live", &["lease"], 1099, 100).await.unwrap().is_none(), "lease still held");
    assert!(s.renew_lease(id, "dead", 1050, 100).await.unwrap(), "owner renews");
    assert!(s.claim_job("live", &["lease"], 1149, 100).await.unwrap().is_none(), "renewed lease holds");
    assert!(!s.renew_lease(id, "live", 1100, 100).await.unwrap(), "non-owner cannot renew");
    assert!(!s.complete_job(id, "live", 1100).await.unwrap(), "non-owner cannot complete");
    assert!(!s.fail_job(id, "live", "x", 0, 1100).await.unwrap(), "non-owner cannot fail");
    assert!(!s.release_job(id, "live", 1100).await.unwrap(), "non-owner cannot release");
    let j = s.claim_job("live", &["lease"], 1150, 100).await.unwrap().expect("expired lease taken over");
    assert_eq!((j.id, j.attempts, j.lease_owner.as_deref()), (id, 2, Some("live")));
    assert!(!s.renew_lease(id, "dead", 1160, 100).await.unwrap(), "lease lost");
    assert!(!s.complete_job(id, "dead", 1160).await.unwrap(), "lease lost");
    assert!(s.renew_lease(id, "live", 1160, 100).await.unwrap());
    assert!(s.complete_job(id, "live", 1170).await.unwrap());
    assert!(!s.complete_job(id, "live", 1171).await.unwrap(), "completes once");
    let done = s.jobs(Some("lease"), 10).await.unwrap();
    assert_eq!((done.len(), done[0].state, done[0].lease_expires_at), (1, JobState::Done, None));

    // Failures retry after `retry_at` until max_attempts, then the job is failed.
    let id = s.enqueue_job(&job("flaky", "x", 2), 1).await.unwrap().unwrap();
    s.claim_job("n1", &["flaky"], 2000, 100).await.unwrap().unwrap();
    assert!(s.fail_job(id, "n1", "boom 1", 2500, 2001).await.unwrap());
    let j = &s.jobs(Some("flaky"), 1).await.unwrap()[0];
    assert_eq!((j.state, j.run_after, j.last_error.as_deref()), (JobState::Pending, 2500, Some("boom 1")));
    assert!(s.claim_job("n1", &["flaky"], 2499, 100).await.unwrap().is_none(), "backing off");
    let j = s.claim_job("n2", &["flaky"], 2500, 100).await.unwrap().unwrap();
    assert_eq!(j.attempts, 2);
    assert!(s.fail_job(id, "n2", "boom 2", 3000, 2501).await.unwrap());
    let j = &s.jobs(Some("flaky"), 1).await.unwrap()[0];
    assert_eq!((j.state, j.attempts, j.last_error.as_deref()), (JobState::Failed, 2, Some("boom 2")));
    assert!(s.claim_job("n1", &["flaky"], 9999, 100).await.unwrap().is_none(), "failed is final");
    assert!(s.enqueue_job(&job("flaky", "x", 2), 1).await.unwrap().is_some(), "a failed job frees its key");

    // A lease that expires on the last attempt fails the job instead of running it again.
    let id = s.enqueue_job(&job("once", "x", 1), 1).await.unwrap().unwrap();
    s.claim_job("dead", &["once"], 3000, 100).await.unwrap().unwrap();
    assert!(s.claim_job("live", &["once"], 3100, 100).await.unwrap().is_none());
    let j = &s.jobs(Some("once"), 1).await.unwrap()[0];
    assert_eq!((j.id, j.state), (id, JobState::Failed));

    // Release (graceful shutdown) gives the job back without counting the attempt.
    let id = s.enqueue_job(&job("rel", "x", 1), 1).await.unwrap().unwrap();
    s.claim_job("n1", &["rel"], 4000, 100).await.unwrap().unwrap();
    assert!(s.release_job(id, "n1", 4001).await.unwrap());
    let j = s.claim_job("n2", &["rel"], 4001, 100).await.unwrap().expect("released job is due");
    assert_eq!((j.id, j.attempts), (id, 1));

    // Concurrent claimers never get the same job: 8 workers drain 50 jobs, each claimed once.
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(s.enqueue_job(&job("race", &i.to_string(), 1), 1).await.unwrap().unwrap());
    }
    let mut workers = Vec::new();
    for w in 0..8 {
        let s = s.clone();
        workers.push(tokio::spawn(async move {
            let node = format!("w{w}");
            let mut got = Vec::new();
            for _ in 0..100 {
                let Some(j) = s.claim_job(&node, &["race"], 5000, 60_000).await.unwrap() else { break };
                assert!(s.complete_job(j.id, &node, 5001).await.unwrap());
                got.push(j.id);
                tokio::task::yield_now().await;
            }
            got
        }));
    }
    let mut claimed = Vec::new();
    for w in workers {
        claimed.extend(w.await.unwrap());
    }
    claimed.sort();
    ids.sort();
    assert_eq!(claimed, ids, "every job claimed exactly once");

    // Listing and purging finished jobs.
    assert_eq!(s.jobs(Some("race"), 10).await.unwrap().len(), 10);
    assert!(s.jobs(None, 1000).await.unwrap().len() > 50);
    let failed_before = s.jobs(None, 1000).await.unwrap().iter().filter(|j| j.state == JobState::Failed).count();
    assert_eq!(s.purge_done_jobs(5001).await.unwrap(), 2, "done before 5001 purged");
    assert_eq!(s.jobs(Some("race"), 100).await.unwrap().len(), 50, "done at 5001 kept");
    assert_eq!(s.purge_done_jobs(5002).await.unwrap(), 50);
    let left = s.jobs(None, 1000).await.unwrap();
    assert!(left.iter().all(|j| j.state != JobState::Done));
    assert_eq!(left.iter().filter(|j| j.state == JobState::Failed).count(), failed_before, "failed jobs kept");
}

/// Every event after `c`, and the cursor after the last.
async fn drain(s: &dyn MetadataStore, c: events::Cursor) -> (Vec<events::Event>, events::Cursor) {
    let evs = s.events_after(c, 1000).await.unwrap();
    let end = evs.last().map(|e| e.cursor()).unwrap_or(c);
    (evs, end)
}

async fn events_contract(s: &dyn MetadataStore) {
    use events::{Cursor, DeliveryOutcome, NewDelivery, NewWebhook, kind};
    let (_, start) = drain(s, Cursor::default()).await;
    let ns = Namespace { account_id: "ev".into(), region: "r".into() };
    let repo = s
        .create_repository(
            &NewRepository {
                ns: &ns,
                name: "app",
                image_tag_mutability: "MUTABLE",
                mutability_exclusions: None,
                scan_on_push: false,
                encryption_type: "AES256",
                kms_key: None,
                tags: &[],
            },
            10,
        )
        .await
        .unwrap()
        .unwrap()
        .id;
    s.link_blob(repo, "sha256:cfg", 2, 10).await.unwrap();
    let m = |digest: &'static str| NewManifest {
        replicated: false,
        repo_id: repo,
        digest,
        media_type: "application/vnd.oci.image.manifest.v1+json",
        artifact_type: None,
        subject: None,
        annotations: None,
        content: digest.as_bytes(),
        blobs: &[("sha256:cfg", 2)],
        children: &[],
        config_media_type: Some("application/vnd.oci.image.config.v1+json"),
        index: false,
    };
    assert_eq!(s.put_manifest(&m("sha256:one"), &["v1"], 11).await.unwrap(), PutManifest::Stored);
    // The same push again changes nothing and appends nothing.
    assert_eq!(s.put_manifest(&m("sha256:one"), &["v1"], 12).await.unwrap(), PutManifest::Stored);
    assert_eq!(s.put_manifest(&m("sha256:two"), &[], 13).await.unwrap(), PutManifest::Stored);
    assert_eq!(s.put_manifest(&m("sha256:two"), &["v1", "latest"], 14).await.unwrap(), PutManifest::Stored);
    // A failed write appends nothing.
    let bad = NewManifest { blobs: &[("sha256:missing", 1)], ..m("sha256:bad") };
    assert!(matches!(s.put_manifest(&bad, &["x"], 15).await.unwrap(), PutManifest::MissingBlobs(_)));
    assert!(s.delete_tag(repo, "latest", 16).await.unwrap());
    assert!(!s.delete_tag(repo, "latest", 16).await.unwrap());
    assert!(s.delete_manifest(repo, "sha256:two", 17).await.unwrap());
    assert!(s.delete_manifest(repo, "sha256:one", 18).await.unwrap());
    s.set_tag_mutability(repo, "IMMUTABLE", None, 19).await.unwrap();
    s.set_repository_policy(repo, Some("{}"), 20).await.unwrap();
    s.set_registry_policy(&ns, Some("{}"), 21).await.unwrap();
    assert_eq!(s.delete_repository(repo, true, 22).await.unwrap(), DeleteRepository::Deleted);

    let (evs, end) = drain(s, start).await;
    type Row<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>, i64);
    let got: Vec<Row> = evs
        .iter()
        .map(|e| {
            let d: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
            assert_eq!((e.account_id.as_str(), e.region.as_str()), ("ev", "r"));
            let leak = |k: &str| d.get(k).and_then(|v| v.as_str()).map(|v| &*v.to_string().leak());
            (e.kind.as_str(), leak("action-type"), leak("image-digest"), leak("image-tag"), e.created_at)
        })
        .collect();
    let push = Some("PUSH");
    let del = Some("DELETE");
    assert_eq!(
        got,
        vec![
            (kind::REPOSITORY_CREATE, None, None, None, 10),
            (kind::IMAGE_PUSH, push, Some("sha256:one"), Some("v1"), 11),
            (kind::IMAGE_PUSH, push, Some("sha256:two"), None, 13),
            (kind::IMAGE_PUSH, push, Some("sha256:two"), Some("v1"), 14),
            (kind::IMAGE_PUSH, push, Some("sha256:two"), Some("latest"), 14),
            (kind::IMAGE_DELETE, del, Some("sha256:two"), Some("latest"), 16),
            (kind::IMAGE_DELETE, del, Some("sha256:two"), Some("v1"), 17),
            (kind::IMAGE_DELETE, del, Some("sha256:one"), None, 18),
            (kind::REPOSITORY_MUTABILITY, None, None, None, 19),
            (kind::REPOSITORY_POLICY, None, None, None, 20),
            (kind::REGISTRY_POLICY, None, None, None, 21),
            (kind::REPOSITORY_DELETE, None, None, None, 22),
        ]
    );
    let first: serde_json::Value = serde_json::from_str(&evs[1].detail).unwrap();
    assert_eq!(
        first,
        serde_json::json!({"result": "SUCCESS", "repository-name": "app", "image-digest": "sha256:one",
            "action-type": "PUSH", "image-tag": "v1",
            "manifest-media-type": "application/vnd.oci.image.manifest.v1+json",
            "artifact-media-type": "application/vnd.oci.image.config.v1+json"})
    );
    assert!(evs.windows(2).all(|w| w[0].cursor() < w[1].cursor()), "log order");
    assert!(s.events_after(end, 10).await.unwrap().is_empty());
    assert_eq!(s.events_pending(start, 5).await.unwrap(), 5, "counted up to the cap");
    assert_eq!(s.events_pending(start, 100).await.unwrap(), 12);
    // Paging by cursor returns the same events.
    let (page, mid) = (s.events_after(start, 5).await.unwrap(), evs[4].cursor());
    assert_eq!(page, evs[..5]);
    assert_eq!(s.events_after(mid, 100).await.unwrap(), evs[5..]);

    // Cursors: compare-and-set, with the consumer's deliveries in the same transaction.
    assert_eq!(s.event_cursor("hooks").await.unwrap(), Cursor::default());
    let wh = |id: &'static str| NewWebhook {
        id,
        account_id: "ev",
        url: "http://127.0.0.1:1/",
        events: "[\"all\"]",
        repository_filter: None,
        secret_enc: "sealed",
    };
    s.create_webhook(&wh("wh-1"), 30).await.unwrap();
    s.create_webhook(&wh("wh-2"), 31).await.unwrap();
    let d = |w: &'static str, e: &'static str| NewDelivery { webhook_id: w, event_id: e, body: e };
    assert!(
        s.advance_event_cursor("hooks", Cursor::default(), mid, &[d("wh-1", "e1"), d("wh-1", "e2")], 40).await.unwrap()
    );
    assert_eq!(s.event_cursor("hooks").await.unwrap(), mid);
    // A racing node that read the old cursor loses and records nothing.
    assert!(!s.advance_event_cursor("hooks", Cursor::default(), end, &[d("wh-1", "e9")], 41).await.unwrap());
    // The same event again (a retried consumer) is not delivered twice; unknown webhooks are skipped.
    assert!(
        s.advance_event_cursor("hooks", mid, end, &[d("wh-1", "e2"), d("wh-1", "e3"), d("gone", "e3")], 42)
            .await
            .unwrap()
    );
    let counts = |w: &events::Webhook| (w.pending, w.delivered, w.dead);
    let hooks = s.webhooks(Some("ev")).await.unwrap();
    assert_eq!(
        hooks.iter().map(|w| (w.id.as_str(), counts(w))).collect::<Vec<_>>(),
        [("wh-1", (3, 0, 0)), ("wh-2", (0, 0, 0))]
    );
    assert!(s.webhooks(Some("other")).await.unwrap().is_empty());
    let subs = s.webhook_subscriptions().await.unwrap();
    assert_eq!(
        subs.iter().map(|w| (w.id.as_str(), counts(w), w.url.as_str())).collect::<Vec<_>>(),
        hooks.iter().map(|w| (w.id.as_str(), (0, 0, 0), w.url.as_str())).collect::<Vec<_>>(),
        "every webhook, its deliveries not read"
    );

    // Per-endpoint order: the oldest pending delivery is the only one attempted.
    assert_eq!(s.webhooks_due(50).await.unwrap(), ["wh-1"]);
    let head = s.next_deliveries("wh-1", 1).await.unwrap().remove(0);
    assert_eq!((head.event_id.as_str(), head.attempts), ("e1", 0));
    s.record_delivery(head.id, DeliveryOutcome::Retry { at: 100, status: Some(503), error: "HTTP 503" }, 51)
        .await
        .unwrap();
    assert!(s.webhooks_due(99).await.unwrap().is_empty(), "the head is not due, so nothing is");
    assert_eq!(s.next_deliveries("wh-1", 1).await.unwrap().remove(0).event_id, "e1");
    assert_eq!(s.webhooks_due(100).await.unwrap(), ["wh-1"]);
    s.record_delivery(head.id, DeliveryOutcome::Dead { status: None, error: "connection refused" }, 101).await.unwrap();
    let next = s.next_deliveries("wh-1", 1).await.unwrap().remove(0);
    assert_eq!(next.event_id, "e2");
    s.record_delivery(next.id, DeliveryOutcome::Delivered { status: 204 }, 102).await.unwrap();
    // Recording twice (a node that lost its lease) changes nothing.
    s.record_delivery(next.id, DeliveryOutcome::Dead { status: None, error: "late" }, 103).await.unwrap();
    let w = &s.webhooks(Some("ev")).await.unwrap()[0];
    assert_eq!((counts(w), w.last_error.as_deref()), ((1, 1, 1), Some("connection refused")));
    assert_eq!(s.redrive_webhook("other", "wh-1", 104).await.unwrap(), 0, "another account's webhook");
    assert_eq!(s.redrive_webhook("ev", "wh-1", 104).await.unwrap(), 1);
    let again = s.next_deliveries("wh-1", 1).await.unwrap().remove(0);
    assert_eq!((again.event_id.as_str(), again.attempts, again.next_attempt_at), ("e1", 0, 104), "back at the head");
    // A run of deliveries in order, recorded delivered in one go.
    let run = s.next_deliveries("wh-1", 10).await.unwrap();
    assert_eq!(run.iter().map(|d| d.event_id.as_str()).collect::<Vec<_>>(), ["e1", "e3"]);
    s.record_delivered(&[(run[0].id, 200), (run[1].id, 202)], 105).await.unwrap();
    s.record_delivered(&[(run[0].id, 200)], 106).await.unwrap();
    let w = &s.webhooks(Some("ev")).await.unwrap()[0];
    assert_eq!(counts(w), (0, 3, 0));
    assert!(s.next_deliveries("wh-1", 10).await.unwrap().is_empty());

    // Delivery leases.
    assert!(s.lease_webhook("wh-1", "n1", 200, 1000).await.unwrap());
    assert!(!s.lease_webhook("wh-1", "n2", 500, 1000).await.unwrap());
    assert!(s.lease_webhook("wh-1", "n1", 500, 1000).await.unwrap(), "renewed by its holder");
    assert!(s.lease_webhook("wh-1", "n2", 1501, 1000).await.unwrap(), "taken over after expiry");
    s.release_webhook("wh-1", "n1").await.unwrap();
    assert!(!s.lease_webhook("wh-1", "n1", 1600, 1000).await.unwrap(), "only the holder releases");
    s.release_webhook("wh-1", "n2").await.unwrap();
    assert!(s.lease_webhook("wh-1", "n1", 1600, 1000).await.unwrap());

    // Retention: only events every consumer has passed go; finished deliveries go.
    assert!(s.advance_event_cursor("slow", Cursor::default(), mid, &[], 300).await.unwrap());
    let purged = s.purge_events(i64::MAX).await.unwrap();
    assert!(purged >= 5, "{purged}");
    assert_eq!(s.events_after(mid, 100).await.unwrap(), evs[5..], "events a consumer still needs are kept");
    assert_eq!(s.webhooks(Some("ev")).await.unwrap()[0].delivered, 0, "delivered rows purged");
    assert!(s.delete_webhook("ev", "wh-1").await.unwrap());
    assert!(!s.delete_webhook("ev", "wh-1").await.unwrap());
    assert!(s.next_deliveries("wh-1", 10).await.unwrap().is_empty(), "its deliveries went with it");
}

fn audit_record(chain: &str, seq: i64, account: &str, name: &str, time: i64) -> audit::AuditRecord {
    audit::AuditRecord {
        id: 0,
        chain: chain.into(),
        seq,
        event_id: format!("{chain}-{seq}"),
        event_time: time,
        account: account.into(),
        event_name: name.into(),
        event_source: "ecr.amazonaws.com".into(),
        read_only: name.starts_with("Describe"),
        username: Some(if seq % 2 == 0 { "root".into() } else { "ci".into() }),
        access_key_id: Some("AKIA1".into()),
        resource_type: Some("AWS::ECR::Repository".into()),
        resource_name: Some(format!("arn:aws:ecr:r:{account}:repository/app{}", seq % 3)),
        event_json: format!("{{\"eventID\":\"{chain}-{seq}\"}}"),
        prev_hash: format!("p{seq}"),
        hash: format!("h{seq}"),
    }
}

async fn audit_contract(s: &dyn MetadataStore) {
    use audit::{AuditQuery, ChainHead, LookupKey};
    assert!(s.audit_chain_head("n1").await.unwrap().is_none());
    // Two chains; n1 writes 1..=6 in two batches, n2 one batch, another account's record too.
    let n1: Vec<_> = (1..=6)
        .map(|i| audit_record("n1", i, "111", if i % 2 == 0 { "PutImage" } else { "DescribeImages" }, 100 * i))
        .collect();
    s.append_audit(&n1[..4]).await.unwrap();
    s.append_audit(&n1[4..]).await.unwrap();
    s.append_audit(&[]).await.unwrap();
    s.append_audit(&[audit_record("n2", 1, "111", "PutImage", 250), audit_record("n2", 2, "222", "PutImage", 250)])
        .await
        .unwrap();
    assert_eq!(s.audit_chain_head("n1").await.unwrap(), Some(ChainHead { seq: 6, hash: "h6".into() }));
    // A batch with a (chain, seq) that exists is refused whole.
    let dup = [audit_record("n1", 7, "111", "PutImage", 700), audit_record("n1", 6, "111", "PutImage", 700)];
    assert!(s.append_audit(&dup).await.is_err());
    assert_eq!(s.audit_chain_head("n1").await.unwrap().unwrap().seq, 6, "nothing of the refused batch");

    // Lookups: newest first, by time then id; one account; one attribute; keyset pages.
    let q = |attribute, before, limit| AuditQuery { account: "111", attribute, start: 0, end: i64::MAX, before, limit };
    let ids = |v: Vec<audit::AuditRecord>| v.into_iter().map(|r| r.event_id).collect::<Vec<_>>();
    let all = s.lookup_audit(&q(None, None, 50)).await.unwrap();
    assert_eq!(ids(all.clone()), ["n1-6", "n1-5", "n1-4", "n1-3", "n2-1", "n1-2", "n1-1"]);
    assert_eq!(all[0], audit::AuditRecord { id: all[0].id, ..n1[5].clone() }, "stored as given");
    let page1 = s.lookup_audit(&q(None, None, 3)).await.unwrap();
    let last = page1.last().unwrap();
    let page2 = s.lookup_audit(&q(None, Some((last.event_time, last.id)), 3)).await.unwrap();
    assert_eq!(ids(page2), ["n1-3", "n2-1", "n1-2"]);
    for (key, value, want) in [
        (LookupKey::EventName, "PutImage", vec!["n1-6", "n1-4", "n2-1", "n1-2"]),
        (LookupKey::ReadOnly, "true", vec!["n1-5", "n1-3", "n1-1"]),
        (LookupKey::Username, "root", vec!["n1-6", "n1-4", "n1-2"]),
        (LookupKey::EventId, "n1-3", vec!["n1-3"]),
        (LookupKey::ResourceName, "arn:aws:ecr:r:111:repository/app0", vec!["n1-6", "n1-3"]),
        (LookupKey::ResourceType, "AWS::ECR::Repository", vec!["n1-6", "n1-5", "n1-4", "n1-3", "n2-1", "n1-2", "n1-1"]),
        (LookupKey::EventSource, "iam.amazonaws.com", vec![]),
        (LookupKey::AccessKeyId, "AKIA1", vec!["n1-6", "n1-5", "n1-4", "n1-3", "n2-1", "n1-2", "n1-1"]),
    ] {
        assert_eq!(ids(s.lookup_audit(&q(Some((key, value)), None, 50)).await.unwrap()), want, "{key:?}");
    }
    let ranged = AuditQuery { start: 200, end: 400, ..q(None, None, 50) };
    assert_eq!(ids(s.lookup_audit(&ranged).await.unwrap()), ["n1-4", "n1-3", "n2-1", "n1-2"], "both ends included");
    let other = AuditQuery { account: "222", ..q(None, None, 50) };
    assert_eq!(ids(s.lookup_audit(&other).await.unwrap()), ["n2-2"]);

    // Chains for verification, in seq order.
    assert_eq!(s.audit_chains().await.unwrap(), [("n1".to_string(), None), ("n2".to_string(), None)]);
    let walk = s.audit_chain_records("n1", 2, 3).await.unwrap();
    assert_eq!(walk.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 4, 5]);

    // Retention deletes a prefix of each chain and anchors it; an old record after a newer one
    // stays until the newer one goes.
    let mut late = audit_record("n1", 7, "111", "PutImage", 150);
    late.prev_hash = "h6".into();
    s.append_audit(&[late]).await.unwrap();
    assert_eq!(s.purge_audit(350).await.unwrap(), 5, "n1 1..=3, and all of n2");
    let left = s.audit_chain_records("n1", 0, 50).await.unwrap();
    assert_eq!(left.iter().map(|r| r.seq).collect::<Vec<_>>(), [4, 5, 6, 7]);
    let chains = s.audit_chains().await.unwrap();
    assert_eq!(
        chains,
        [
            ("n1".to_string(), Some(ChainHead { seq: 3, hash: "h3".into() })),
            ("n2".to_string(), Some(ChainHead { seq: 2, hash: "h2".into() }))
        ]
    );
    assert_eq!(s.audit_chain_head("n2").await.unwrap(), Some(ChainHead { seq: 2, hash: "h2".into() }), "the anchor");
    assert_eq!(s.purge_audit(i64::MAX).await.unwrap(), 4);
    assert_eq!(s.audit_chain_head("n1").await.unwrap(), Some(ChainHead { seq: 7, hash: "h7".into() }));
    assert!(s.audit_chain_records("n1", 0, 50).await.unwrap().is_empty());
}

/// Bind the parameters of a plan check.
macro_rules! bind_params {
    ($q:expr, $params:expr) => {{
        let mut q = $q;
        for p in $params {
            q = match p {
                listing::Param::I(i) => q.bind(*i),
                listing::Param::T(t) => q.bind(*t),
                listing::Param::N => q.bind(None::<&str>),
            };
        }
        q
    }};
}

/// The hot listing and lookup queries search their index on SQLite: no scan of a table.
async fn sqlite_plans(s: &sqlite::SqliteStore) {
    use sqlx::Row;
    let mut queries = listing::hot_queries();
    let events = vec![listing::Param::I(0), listing::Param::I(7), listing::Param::I(100)];
    let same_tx = "events_order (txid=? AND seq>?)";
    queries.push(("events after a cursor".into(), sqlite::SqliteStore::EVENTS_AFTER_SQL, same_tx, "", events.clone()));
    queries.push(("events pending".into(), sqlite::SqliteStore::EVENTS_PENDING_SQL, same_tx, "", events));
    for (name, sql, index, _, params) in queries {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let q = bind_params!(sqlx::query(sqlx::AssertSqlSafe(explain)), &params);
        let plan: Vec<String> = q.fetch_all(&s.read).await.unwrap().iter().map(|r| r.get::<String, _>(3)).collect();
        let scans: Vec<&String> = plan
            .iter()
            .filter(|l| ["manifests", "tags", "repositories"].iter().any(|t| l.starts_with(&format!("SCAN {t}"))))
            .collect();
        assert!(scans.is_empty(), "{name}: a table scan in {plan:#?}");
        assert!(
            plan.iter().any(|l| l.contains(&format!("INDEX {index}"))),
            "{name}: {index} not searched in {plan:#?}"
        );
    }
}

/// The hot listing and lookup queries search an index on PostgreSQL by their key conditions
/// (with sequential scans priced out, so that a plan of a small test table shows what a large
/// one would use; which index is left to the planner's statistics).
async fn postgres_plans(s: &postgres::PgStore) {
    use sqlx::Row;
    let mut conn = s.read.acquire().await.unwrap();
    sqlx::raw_sql("SET enable_seqscan = off").execute(&mut *conn).await.unwrap();
    let mut queries = listing::hot_queries();
    let events = vec![listing::Param::I(0), listing::Param::I(7), listing::Param::I(100)];
    let same_tx = "(txid = '0'::bigint) AND (seq > '7'::bigint)";
    queries.push(("events after a cursor".into(), postgres::PgStore::EVENTS_AFTER_SQL, "", same_tx, events.clone()));
    queries.push(("events pending".into(), postgres::PgStore::EVENTS_PENDING_SQL, "", same_tx, events));
    for (name, sql, _, cond, params) in queries {
        let explain = format!("EXPLAIN {sql}");
        let q = bind_params!(sqlx::query(sqlx::AssertSqlSafe(explain)), &params);
        let plan: Vec<String> = q.fetch_all(&mut *conn).await.unwrap().iter().map(|r| r.get::<String, _>(0)).collect();
        assert!(!plan.iter().any(|l| l.contains("Seq Scan")), "{name}: a table scan in {plan:#?}");
        let searched = plan.iter().any(|l| l.trim_start().starts_with("Index Cond:") && l.contains(cond));
        assert!(searched, "{name}: no index search on {cond} in {plan:#?}");
    }
    sqlx::raw_sql("RESET enable_seqscan").execute(&mut *conn).await.unwrap();
}

#[tokio::test]
async fn sqlite_contract() {
    let dir = tempfile::tempdir().unwrap();
    let (s, applied) = sqlite::SqliteStore::open_with(&dir.path().join("m.db"), SchemaMode::Migrate).await.unwrap();
    assert_eq!(applied.iter().map(|m| m.version).collect::<Vec<_>>(), (1..=22).collect::<Vec<_>>());
    contract(&s).await;
    listing_contract(&s).await;
    lifecycle_contract(&s).await;
    archive_contract(&s).await;
    gc_contract(&s).await;
    move_contract(&s).await;
    roles_contract(&s).await;
    blob_keys_contract(&s).await;
    replication_contract(&s).await;
    templates_contract(&s).await;
    kms_contract(&s).await;
    scan_contract(&s).await;
    sqlite_plans(&s).await;
    iam_contract(&s).await;
    jobs_contract(Arc::new(s.clone())).await;
    events_contract(&s).await;
    audit_contract(&s).await;
    s.close().await;
    // Reopening applies nothing; a check passes on a current schema.
    let (s, applied) = sqlite::SqliteStore::open_with(&dir.path().join("m.db"), SchemaMode::Check).await.unwrap();
    assert!(applied.is_empty());
    s.close().await;
    // A check on an unmigrated database refuses it.
    let err = sqlite::SqliteStore::open_with(&dir.path().join("new.db"), SchemaMode::Check).await.unwrap_err();
    assert!(matches!(&err, MetaError::SchemaNotCurrent { pending, .. } if pending.len() == 22), "{err}");
    assert!(err.to_string().contains("berth migrate"), "{err}");
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
    let url = format!("{base}/{db}");
    let err = postgres::PgStore::open_with(&url, SchemaMode::Check).await.unwrap_err();
    assert!(matches!(&err, MetaError::SchemaNotCurrent { pending, .. } if pending.len() == 22), "{err}");
    let (s, applied) = postgres::PgStore::open_with(&url, SchemaMode::Migrate).await.unwrap();
    assert_eq!(applied.iter().map(|m| m.version).collect::<Vec<_>>(), (1..=22).collect::<Vec<_>>());
    contract(&s).await;
    listing_contract(&s).await;
    lifecycle_contract(&s).await;
    archive_contract(&s).await;
    gc_contract(&s).await;
    move_contract(&s).await;
    roles_contract(&s).await;
    blob_keys_contract(&s).await;
    replication_contract(&s).await;
    templates_contract(&s).await;
    kms_contract(&s).await;
    scan_contract(&s).await;
    postgres_plans(&s).await;
    iam_contract(&s).await;
    jobs_contract(Arc::new(s.clone())).await;
    events_contract(&s).await;
    audit_contract(&s).await;
    // An event whose transaction is still open holds back every event committed after it
    // started: a consumer never passes a position behind which an event can still appear.
    {
        let (_, start) = drain(&s, events::Cursor::default()).await;
        let mut slow = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql("BEGIN").execute(&mut slow).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO events (event_id, account_id, region, kind, detail, created_at) \
             VALUES ('slow', 'a', 'r', 'test', '{}', 1)",
        )
        .execute(&mut slow)
        .await
        .unwrap();
        let ns = Namespace { account_id: "a".into(), region: "r".into() };
        s.ensure_repository(&ns, "later", 2).await.unwrap();
        assert!(s.events_after(start, 10).await.unwrap().is_empty(), "held back by the open transaction");
        sqlx::raw_sql("COMMIT").execute(&mut slow).await.unwrap();
        let (evs, _) = drain(&s, start).await;
        assert_eq!(evs.iter().map(|e| e.id.as_str()).next(), Some("slow"), "the older transaction's event first");
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[1].repository.as_deref(), Some("later"));
    }
    s.close().await;
    let (s, applied) = postgres::PgStore::open_with(&url, SchemaMode::Check).await.unwrap();
    assert!(applied.is_empty());
    s.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {db}"))).execute(&mut admin).await.unwrap();
}
