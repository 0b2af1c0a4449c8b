//! Hostile input on the data plane: control characters where the protocol has none are refused
//! with the OCI error, on SQLite and PostgreSQL alike (PostgreSQL cannot store NUL in text: such
//! input used to answer 500 there and be stored on SQLite).

mod common;

use common::{Berth, sha256};
use serde_json::{Value, json};

async fn put(c: &reqwest::Client, b: &Berth, repo: &str, reference: &str, manifest: &Value) -> (u16, Value) {
    let r = c
        .put(format!("{}/v2/{repo}/manifests/{reference}", b.url))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn control_characters_in_manifest_media_types_are_manifest_invalid() {
    let b = Berth::start();
    let c = b.client();
    let cfg = b"{}".to_vec();
    let d = sha256(&cfg);
    let r = c.post(format!("{}/v2/ctl/app/blobs/uploads/?digest={d}", b.url)).body(cfg).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let good = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d, "size": 2},
        "layers": []
    });
    for (field, bad) in [
        ("artifactType", json!("application/x\u{0}y")),
        ("config", json!({"mediaType": "application/vnd\u{0}.config", "digest": d, "size": 2})),
        ("layers", json!([{"mediaType": "a/b\u{1b}", "digest": d, "size": 2}])),
    ] {
        let mut m = good.clone();
        m[field] = bad;
        let (status, body) = put(&c, &b, "ctl/app", "bad", &m).await;
        assert_eq!(status, 400, "{field}: {body}");
        assert_eq!(body["errors"][0]["code"], "MANIFEST_INVALID", "{field}: {body}");
    }
    // Nothing was stored; a good manifest still goes in, and annotations may hold any text.
    let r = c.get(format!("{}/v2/ctl/app/manifests/bad", b.url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let mut m = good.clone();
    m["annotations"] = json!({"note": "tab\tand\u{0}nul are data here"});
    let (status, body) = put(&c, &b, "ctl/app", "good", &m).await;
    assert_eq!(status, 201, "{body}");
    let r = c
        .get(format!("{}/v2/ctl/app/manifests/good", b.url))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), m.to_string());
}
