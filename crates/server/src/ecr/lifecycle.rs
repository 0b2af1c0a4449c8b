//! ECR's lifecycle policy operations: PutLifecyclePolicy, GetLifecyclePolicy,
//! DeleteLifecyclePolicy, StartLifecyclePolicyPreview, GetLifecyclePolicyPreview.

use super::{Ctx, EcrError, ImagesFilter, invalid_token, max_results, repo_name, tag_status};
use berth_meta::TagStatus;
use berth_meta::lifecycle::StoredLifecyclePolicy;
use berth_registry::ImageId;
use berth_registry::lifecycle::LifecycleAction;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutIn {
    registry_id: Option<String>,
    repository_name: String,
    lifecycle_policy_text: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RepositoryIn {
    registry_id: Option<String>,
    repository_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StartPreviewIn {
    registry_id: Option<String>,
    repository_name: String,
    lifecycle_policy_text: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GetPreviewIn {
    registry_id: Option<String>,
    repository_name: String,
    image_ids: Option<Vec<ImageId>>,
    next_token: Option<String>,
    max_results: Option<i64>,
    filter: Option<ImagesFilter>,
}

fn policy_json(account: &str, name: &str, p: &StoredLifecyclePolicy) -> Value {
    let mut v = json!({"registryId": account, "repositoryName": name, "lifecyclePolicyText": p.text});
    if let Some(at) = p.last_evaluated_at {
        v["lastEvaluatedAt"] = json!(at as f64 / 1000.0);
    }
    v
}

pub(super) async fn put(ctx: &Ctx<'_>, input: PutIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "PutLifecyclePolicy", Some(&name)).await?;
    let info = ctx.reg.put_lifecycle_policy(&ns, &name, &input.lifecycle_policy_text).await?;
    Ok(json!({
        "registryId": info.account_id,
        "repositoryName": info.name,
        "lifecyclePolicyText": input.lifecycle_policy_text,
    }))
}

pub(super) async fn get(ctx: &Ctx<'_>, input: RepositoryIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "GetLifecyclePolicy", Some(&name)).await?;
    let (info, p) = ctx.reg.lifecycle_policy(&ns, &name).await?;
    Ok(policy_json(&info.account_id, &info.name, &p))
}

pub(super) async fn delete(ctx: &Ctx<'_>, input: RepositoryIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "DeleteLifecyclePolicy", Some(&name)).await?;
    let (info, p) = ctx.reg.delete_lifecycle_policy(&ns, &name).await?;
    Ok(policy_json(&info.account_id, &info.name, &p))
}

pub(super) async fn start_preview(ctx: &Ctx<'_>, input: StartPreviewIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "StartLifecyclePolicyPreview", Some(&name)).await?;
    let (info, preview) = ctx.reg.start_lifecycle_preview(&ns, &name, input.lifecycle_policy_text.as_deref()).await?;
    Ok(json!({
        "registryId": info.account_id,
        "repositoryName": info.name,
        "lifecyclePolicyText": preview.policy_text,
        "status": preview.status,
    }))
}

/// Whether a preview result is named by one of `ids` (a digest, a tag, or both of one image).
fn named_by(r: &LifecycleAction, ids: &[ImageId]) -> bool {
    ids.iter().any(|id| {
        id.image_digest.as_deref().is_none_or(|d| d == r.digest)
            && id.image_tag.as_deref().is_none_or(|t| r.tags.iter().any(|x| x == t))
            && (id.image_digest.is_some() || id.image_tag.is_some())
    })
}

pub(super) async fn get_preview(ctx: &Ctx<'_>, input: GetPreviewIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "GetLifecyclePolicyPreview", Some(&name)).await?;
    if input.image_ids.is_some() && (input.max_results.is_some() || input.next_token.is_some()) {
        return Err(EcrError::invalid(
            "Invalid parameter at 'maxResults' failed to satisfy constraint: 'maxResults and nextToken cannot be used with imageIds'",
        ));
    }
    if let Some(ids) = &input.image_ids {
        super::image_ids(ids)?;
    }
    let limit = max_results(input.max_results, 100, 100)? as usize;
    let status = tag_status(&input.filter)?;
    let (info, preview) = ctx.reg.lifecycle_preview(&ns, &name).await?;
    // Tokens name the preview they page through and the position in it.
    let start = match input.next_token.as_deref() {
        None => 0,
        Some(t) => {
            let raw = hex::decode(t).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(invalid_token)?;
            let (started, offset) = raw.split_once('|').ok_or_else(invalid_token)?;
            if started.parse::<i64>().ok() != Some(preview.started_at) {
                return Err(invalid_token());
            }
            offset.parse::<usize>().map_err(|_| invalid_token())?
        }
    };
    let expiring = preview.results.iter().filter(|r| r.action == berth_lifecycle::Action::Expire).count();
    let selected: Vec<&LifecycleAction> = preview
        .results
        .iter()
        .filter(|r| match status {
            TagStatus::Any => true,
            TagStatus::Tagged => !r.tags.is_empty(),
            TagStatus::Untagged => r.tags.is_empty(),
        })
        .filter(|r| input.image_ids.as_deref().is_none_or(|ids| named_by(r, ids)))
        .collect();
    let page: Vec<Value> = selected.iter().skip(start).take(limit).map(|r| r.preview_json()).collect();
    let mut v = json!({
        "registryId": info.account_id,
        "repositoryName": info.name,
        "lifecyclePolicyText": preview.policy_text,
        "status": preview.status,
        "previewResults": page,
        "summary": {"expiringImageTotalCount": expiring},
    });
    let transitioning = preview.results.iter().filter(|r| r.action == berth_lifecycle::Action::Transition).count();
    if transitioning > 0 {
        v["summary"]["transitioningImageTotalCounts"] =
            json!([{"targetStorageClass": "ARCHIVE", "imageTotalCount": transitioning}]);
    }
    if input.image_ids.is_none() && start + limit < selected.len() {
        v["nextToken"] = json!(hex::encode(format!("{}|{}", preview.started_at, start + limit)));
    }
    Ok(v)
}
