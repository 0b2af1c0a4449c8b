//! ECR's replication operations: PutReplicationConfiguration, DescribeRegistry,
//! DescribeImageReplicationStatus.

use super::{Ctx, EcrError, image_ids, image_not_found, repo_name};
use berth_registry::ImageId;
use berth_registry::replication::ReplicationConfiguration;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutIn {
    replication_configuration: ReplicationConfiguration,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StatusIn {
    registry_id: Option<String>,
    repository_name: String,
    image_id: ImageId,
}

pub(super) async fn put(ctx: &Ctx<'_>, input: PutIn) -> Result<Value, EcrError> {
    ctx.authorize_account("PutReplicationConfiguration").await?;
    let ns = ctx.reg.namespace(&ctx.identity.account_id, &ctx.region);
    let cfg = ctx.reg.put_replication_configuration(&ns, &input.replication_configuration).await?;
    Ok(json!({"replicationConfiguration": cfg}))
}

pub(super) async fn describe_registry(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    ctx.authorize_account("DescribeRegistry").await?;
    let ns = ctx.reg.namespace(&ctx.identity.account_id, &ctx.region);
    let cfg = ctx.reg.replication_configuration(&ns).await?;
    Ok(json!({"registryId": ns.account_id, "replicationConfiguration": cfg}))
}

pub(super) async fn status(ctx: &Ctx<'_>, input: StatusIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "DescribeImageReplicationStatus", Some(&name)).await?;
    image_ids(std::slice::from_ref(&input.image_id))?;
    let (digest, statuses) = match ctx.reg.image_replication_status(&ns, &name, &input.image_id).await? {
        Ok(x) => x,
        Err(f) if f.code == "ImageNotFound" => return Err(image_not_found(&ns, &name, &input.image_id)),
        Err(f) => return Err(EcrError::invalid(f.reason)),
    };
    let mut id = json!({"imageDigest": digest});
    if let Some(t) = &input.image_id.image_tag {
        id["imageTag"] = json!(t);
    }
    let statuses: Vec<Value> = statuses
        .iter()
        .map(|s| {
            let mut v = json!({"region": s.dest_region, "registryId": s.dest_registry, "status": s.status});
            if let Some(c) = &s.failure_code {
                v["failureCode"] = json!(c);
            }
            v
        })
        .collect();
    Ok(json!({"repositoryName": name, "imageId": id, "replicationStatuses": statuses}))
}
