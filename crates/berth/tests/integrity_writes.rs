//! Rules a manifest write must obey hold whatever another node's caches say: tag mutability
//! flipped on node A binds a push through node B at once, a push into a repository deleted on A
//! fails on B, and the sizes a manifest declares must be the stored ones.
//!
//! Two nodes: `another_node` (same metadata and storage; on the embedded backend two processes
//! on one SQLite file and one directory, with `BERTH_TEST_BACKEND=postgres` and
//! `BERTH_TEST_STORAGE=s3` the distributed configuration).

mod common;

use common::{ACCESS_KEY_ID, Berth, SECRET_ACCESS_KEY, sha256};
use serde_json::{Value, json};

const MT: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_MT: &str = "application/vnd.oci.image.index.v1+json";

/// One ECR operation on node `b`, SigV4-signed with the root key; returns status and JSON body.
async fn ecr(b: &Berth, op: &str, body: &Value) -> (u16, Value) {
    common::ecr_call(b, ACCESS_KEY_ID, SECRET_ACCESS_KEY, op, body).await
}

/// `ecr` that must answer 200.
async fn ecr_ok(b: &Berth, op: &str, body: Value) -> Value {
    let (status, v) = ecr(b, op, &body).await;
    assert_eq!(status, 200, "{op} {body}: {v}");
    v
}

/// Upload `data` as a blob of `repo` through node `b`; returns its digest.
async fn blob(b: &Berth, repo: &str, data: &[u8]) -> String {
    let d = sha256(data);
    let r = b.client().post(format!("{}/v2/{repo}/blobs/uploads/?digest={d}", b.url)).body(data.to_vec()).send().await;
    let r = r.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    d
}

/// An image manifest with one config and one layer, as declared (sizes as given).
fn image(config: (&str, u64), layer: (&str, u64), n: u32) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MT,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.0, "size": layer.1}],
        "annotations": {"n": n.to_string()},
    }))
    .unwrap()
}

/// PUT a manifest through node `b`; returns status and body.
async fn put(b: &Berth, repo: &str, reference: &str, mt: &str, m: &[u8]) -> (u16, Value) {
    let r = b
        .client()
        .put(format!("{}/v2/{repo}/manifests/{reference}", b.url))
        .header("content-type", mt)
        .body(m.to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The digest `tag` resolves to through node `b`.
async fn resolve(b: &Berth, repo: &str, tag: &str) -> String {
    let r = b.client().head(format!("{}/v2/{repo}/manifests/{tag}", b.url)).header("accept", MT).send().await.unwrap();
    assert_eq!(r.status(), 200, "HEAD {repo}:{tag}");
    r.headers()["docker-content-digest"].to_str().unwrap().to_string()
}

/// Node A flips the repository to a mode that forbids moving a tag; an overwrite of that tag
/// pushed through node B right after the flip committed is refused, every time, in every mode.
/// B served the repository (and so had its settings fresh in cache) just before each flip.
#[tokio::test]
async fn a_mutability_flip_on_one_node_binds_an_overwrite_through_another_at_once() {
    let a = Berth::start();
    let b = a.another_node(&[]);
    let repo = "flip";
    ecr_ok(&a, "CreateRepository", json!({"repositoryName": repo})).await;
    let cfg = blob(&b, repo, b"{\"os\":\"linux\"}").await;
    let layer = blob(&b, repo, b"layer bytes").await;
    let m = |n: u32| image((&cfg, 14), (&layer, 11), n);
    let modes: [(&str, Value, &str, &str); 3] = [
        ("IMMUTABLE", json!([]), "v", "v"),
        ("IMMUTABLE_WITH_EXCLUSION", json!([{"filterType": "WILDCARD", "filter": "dev-*"}]), "release-1", "dev-1"),
        ("MUTABLE_WITH_EXCLUSION", json!([{"filterType": "WILDCARD", "filter": "release-*"}]), "release-1", "v"),
    ];
    let mut n = 0;
    for round in 0..15 {
        let (mode, filters, protected, free) = &modes[round % modes.len()];
        // Mutable: B takes overwrites of both tags (and caches the repository).
        ecr_ok(&a, "PutImageTagMutability", json!({"repositoryName": repo, "imageTagMutability": "MUTABLE"})).await;
        for tag in [protected, free] {
            n += 1;
            let (status, body) = put(&b, repo, tag, MT, &m(n)).await;
            assert_eq!(status, 201, "round {round}: MUTABLE overwrite of {tag} through B: {body}");
        }
        let before = resolve(&b, repo, protected).await;
        // A flips; once A answered, B must refuse to move the protected tag.
        let mut req = json!({"repositoryName": repo, "imageTagMutability": mode});
        if !filters.as_array().unwrap().is_empty() {
            req["imageTagMutabilityExclusionFilters"] = filters.clone();
        }
        ecr_ok(&a, "PutImageTagMutability", req).await;
        n += 1;
        let (status, body) = put(&b, repo, protected, MT, &m(n)).await;
        assert_eq!(status, 400, "round {round}: {mode}: overwrite of {protected} through B was accepted: {body}");
        assert_eq!(body["errors"][0]["code"], "TAG_INVALID", "{body}");
        assert_eq!(common::without_request_id(&body)["errors"][0]["detail"], json!({"tag": protected}), "{body}");
        assert_eq!(resolve(&b, repo, protected).await, before, "round {round}: the refused push changed nothing");
        // A tag the mode leaves mutable still moves.
        if protected != free {
            n += 1;
            let (status, body) = put(&b, repo, free, MT, &m(n)).await;
            assert_eq!(status, 201, "round {round}: {mode}: {free} stays mutable: {body}");
            assert_eq!(resolve(&b, repo, free).await, sha256(&m(n)));
        }
    }
}

/// A repository deleted through node A takes no push through node B, which served it just
/// before: B answers NAME_UNKNOWN and writes nothing for the dead repository.
#[tokio::test]
async fn a_push_into_a_repository_deleted_on_another_node_fails() {
    let a = Berth::start_strict();
    let b = a.another_node(&[]);
    for round in 0..5 {
        let repo = format!("doomed-{round}");
        ecr_ok(&a, "CreateRepository", json!({"repositoryName": repo})).await;
        let cfg = blob(&b, &repo, b"{\"os\":\"linux\"}").await;
        let layer = blob(&b, &repo, b"layer bytes").await;
        let (status, body) = put(&b, &repo, "v1", MT, &image((&cfg, 14), (&layer, 11), 1)).await;
        assert_eq!(status, 201, "{body}");
        ecr_ok(&a, "DeleteRepository", json!({"repositoryName": repo, "force": true})).await;
        let (status, body) = put(&b, &repo, "v2", MT, &image((&cfg, 14), (&layer, 11), 2)).await;
        assert_eq!(status, 404, "round {round}: push into the deleted repository: {body}");
        assert_eq!(body["errors"][0]["code"], "NAME_UNKNOWN", "{body}");
        assert_eq!(common::without_request_id(&body)["errors"][0]["detail"], json!({"name": repo}), "{body}");
        let (status, v) = ecr(&a, "DescribeImages", &json!({"repositoryName": repo})).await;
        assert_eq!((status, v["__type"].as_str()), (400, Some("RepositoryNotFoundException")), "{v}");
        // Created again, the repository is empty: nothing of the refused push survived.
        ecr_ok(&a, "CreateRepository", json!({"repositoryName": repo})).await;
        let v = ecr_ok(&a, "DescribeImages", json!({"repositoryName": repo})).await;
        assert_eq!(v["imageDetails"], json!([]), "{v}");
    }
}

/// Blobs linked into a repository deleted on another node meanwhile (a monolithic upload, a
/// cross-repository mount) are refused with NAME_UNKNOWN, never a 500 from a foreign key.
#[tokio::test]
async fn blobs_into_a_repository_deleted_on_another_node_are_name_unknown() {
    let a = Berth::start_strict();
    let b = a.another_node(&[]);
    ecr_ok(&a, "CreateRepository", json!({"repositoryName": "source"})).await;
    let kept = blob(&b, "source", b"kept in the source").await;
    for round in 0..3 {
        let repo = format!("vanishing-{round}");
        ecr_ok(&a, "CreateRepository", json!({"repositoryName": repo})).await;
        blob(&b, &repo, format!("warm {round}").as_bytes()).await; // B knows the repository now
        ecr_ok(&a, "DeleteRepository", json!({"repositoryName": repo, "force": true})).await;
        let data = format!("late {round}");
        let d = sha256(data.as_bytes());
        let r =
            b.client().post(format!("{}/v2/{repo}/blobs/uploads/?digest={d}", b.url)).body(data).send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_eq!((status, body["errors"][0]["code"].as_str()), (404, Some("NAME_UNKNOWN")), "round {round}: {body}");
        let r = b
            .client()
            .post(format!("{}/v2/{repo}/blobs/uploads/?mount={kept}&from=source", b.url))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_eq!((status, body["errors"][0]["code"].as_str()), (404, Some("NAME_UNKNOWN")), "round {round}: {body}");
    }
}

/// A manifest's descriptors must declare the stored sizes: a 5-byte blob declared as 5 GB is
/// refused with MANIFEST_INVALID naming the digest and both sizes, so is an index whose child
/// descriptor lies about the child manifest's length; DescribeImages reports stored sizes.
#[tokio::test]
async fn declared_sizes_must_be_the_stored_sizes() {
    let a = Berth::start();
    let repo = "sizes";
    let cfg = blob(&a, repo, b"{\"os\":\"linux\"}").await;
    let layer = blob(&a, repo, b"12345").await;
    let lying = image((&cfg, 14), (&layer, 5_000_000_000), 1);
    let (status, body) = put(&a, repo, "big", MT, &lying).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        common::without_request_id(&body),
        json!({"errors": [{
            "code": "MANIFEST_INVALID",
            "message": format!("manifest invalid: the descriptor of {layer} declares 5000000000 bytes but 5 bytes are stored"),
            "detail": {"digest": layer, "declaredSize": 5_000_000_000u64, "storedSize": 5},
        }]})
    );
    let r = a.client().get(format!("{}/v2/{repo}/manifests/big", a.url)).header("accept", MT).send().await.unwrap();
    assert_eq!(r.status(), 404, "nothing was tagged");
    // Smaller than stored is refused as well, the config too.
    let (status, body) = put(&a, repo, "small", MT, &image((&cfg, 14), (&layer, 4), 1)).await;
    assert_eq!((status, &body["errors"][0]["detail"]["declaredSize"]), (400, &json!(4)), "{body}");
    let (status, body) = put(&a, repo, "cfg", MT, &image((&cfg, 15), (&layer, 5), 1)).await;
    assert_eq!((status, &body["errors"][0]["detail"]["digest"]), (400, &json!(cfg)), "{body}");
    // The truth is accepted.
    let good = image((&cfg, 14), (&layer, 5), 1);
    let (status, body) = put(&a, repo, "good", MT, &good).await;
    assert_eq!(status, 201, "{body}");
    // An index: the child descriptor must declare the child manifest's byte length.
    let index = |size: usize| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": INDEX_MT,
            "manifests": [{"mediaType": MT, "digest": sha256(&good), "size": size}],
        }))
        .unwrap()
    };
    let (status, body) = put(&a, repo, "multi", INDEX_MT, &index(good.len() + 1000)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["code"], "MANIFEST_INVALID", "{body}");
    assert_eq!(
        common::without_request_id(&body)["errors"][0]["detail"],
        json!({"digest": sha256(&good), "declaredSize": good.len() + 1000, "storedSize": good.len()})
    );
    let (status, body) = put(&a, repo, "multi", INDEX_MT, &index(good.len())).await;
    assert_eq!(status, 201, "{body}");
    // DescribeImages: config + layer as stored (14 + 5); the index its largest child's.
    let v = ecr_ok(&a, "DescribeImages", json!({"repositoryName": repo})).await;
    let mut sizes: Vec<(String, u64)> = v["imageDetails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["imageTags"][0].as_str().unwrap().to_string(), d["imageSizeInBytes"].as_u64().unwrap()))
        .collect();
    sizes.sort();
    assert_eq!(sizes, [("good".to_string(), 19), ("multi".to_string(), 19)]);
}
