//! Registry domain: `<account>.dkr.ecr.<region>.<domain>` hosts address each account's registry
//! in each region (BERTH_REGISTRY_DOMAIN), as ECR's hosts do.

mod common;

use common::{Berth, basic_auth, sha256};
use serde_json::Value;

const DOMAIN: &str = "registry.test";

async fn send(
    c: &reqwest::Client,
    m: reqwest::Method,
    url: &str,
    host: &str,
    auth: &str,
    body: Vec<u8>,
) -> (u16, String) {
    let r = c
        .request(m, url)
        .header("host", host)
        .header("authorization", auth)
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

#[tokio::test]
async fn hosts_under_the_registry_domain_address_accounts_and_regions() {
    let b = Berth::start_with_env(&[
        ("BERTH_REGISTRY_DOMAIN", DOMAIN),
        ("BERTH_REGIONS", "us-east-1,eu-west-1"),
        ("BERTH_CREATE_ON_PUSH", "true"),
    ]);
    b.admin_ok(&["create-account", "--account-id", "222222222222"]);
    let pw2 = b.login_password(Some("222222222222"));
    let auth2 = basic_auth("AWS", &pw2);
    let auth1 = basic_auth("AWS", &b.password);
    let port = b.addr.rsplit_once(':').unwrap().1.to_string();
    let host2 = format!("222222222222.dkr.ecr.eu-west-1.{DOMAIN}:{port}");
    let c = reqwest::Client::new();

    // Push a config blob and a manifest into account 222's eu-west-1 registry.
    let cfg = b"{}".to_vec();
    let d = sha256(&cfg);
    let (st, body) =
        send(&c, reqwest::Method::POST, &format!("{}/v2/app/blobs/uploads/?digest={d}", b.url), &host2, &auth2, cfg)
            .await;
    assert_eq!(st, 201, "{body}");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{d}","size":2}},"layers":[]}}"#
    );
    let (st, body) = send(
        &c,
        reqwest::Method::PUT,
        &format!("{}/v2/app/manifests/v1", b.url),
        &host2,
        &auth2,
        manifest.into_bytes(),
    )
    .await;
    assert_eq!(st, 201, "{body}");

    // Visible through that host only.
    let (st, body) = send(&c, reqwest::Method::GET, &format!("{}/v2/_catalog", b.url), &host2, &auth2, vec![]).await;
    assert_eq!(st, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["repositories"], serde_json::json!(["app"]));
    // The default registry (plain host) is account 111's and does not hold it.
    let (st, body) = send(&c, reqwest::Method::GET, &format!("{}/v2/_catalog", b.url), &b.addr, &auth1, vec![]).await;
    assert_eq!(st, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["repositories"], serde_json::json!([]));
    // Nor does account 222's us-east-1 registry.
    let host2_use1 = format!("222222222222.dkr.ecr.us-east-1.{DOMAIN}:{port}");
    let (st, _) =
        send(&c, reqwest::Method::GET, &format!("{}/v2/app/manifests/v1", b.url), &host2_use1, &auth2, vec![]).await;
    assert_eq!(st, 404);

    // Account 111's token is refused on account 222's registry, naming the action and ARN.
    let (st, body) =
        send(&c, reqwest::Method::GET, &format!("{}/v2/app/manifests/v1", b.url), &host2, &auth1, vec![]).await;
    assert_eq!(st, 403, "{body}");
    let e: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["errors"][0]["code"], "DENIED");
    assert_eq!(
        e["errors"][0]["message"],
        "User: arn:aws:iam::111111111111:root is not authorized to perform: ecr:BatchGetImage on resource: \
         arn:aws:ecr:eu-west-1:222222222222:repository/app because no resource-based policy allows the \
         ecr:BatchGetImage action"
    );

    // A host under the domain naming a region that is not hosted is unknown (404).
    let bad = format!("222222222222.dkr.ecr.ap-south-1.{DOMAIN}:{port}");
    let (st, _) = send(&c, reqwest::Method::GET, &format!("{}/v2/", b.url), &bad, &auth2, vec![]).await;
    assert_eq!(st, 404);
}
