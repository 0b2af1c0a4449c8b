//! ECR's repository creation template operations: CreateRepositoryCreationTemplate,
//! DescribeRepositoryCreationTemplates, UpdateRepositoryCreationTemplate,
//! DeleteRepositoryCreationTemplate. Templates belong to the caller's own registry (account and
//! region); each operation is authorized as `ecr:<Operation>` on `*`.

use super::{Ctx, EcrError, ResourceTag, decode_token, max_results, tag_pairs};
use berth_registry::TagFilter;
use berth_registry::templates::{CreationTemplate, TemplateFields};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EncryptionIn {
    encryption_type: String,
    kms_key: Option<String>,
}

/// The body of CreateRepositoryCreationTemplate and UpdateRepositoryCreationTemplate.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TemplateIn {
    prefix: String,
    description: Option<String>,
    encryption_configuration: Option<EncryptionIn>,
    resource_tags: Option<Vec<ResourceTag>>,
    image_tag_mutability: Option<String>,
    image_tag_mutability_exclusion_filters: Option<Vec<TagFilter>>,
    repository_policy: Option<String>,
    lifecycle_policy: Option<String>,
    applied_for: Option<Vec<String>>,
    custom_role_arn: Option<String>,
}

impl TemplateIn {
    fn split(self) -> (String, TemplateFields) {
        let fields = TemplateFields {
            description: self.description,
            encryption: self.encryption_configuration.map(|e| (e.encryption_type, e.kms_key)),
            resource_tags: self.resource_tags.map(|t| tag_pairs(Some(t))),
            image_tag_mutability: self.image_tag_mutability,
            exclusions: self.image_tag_mutability_exclusion_filters,
            repository_policy: self.repository_policy,
            lifecycle_policy: self.lifecycle_policy,
            applied_for: self.applied_for,
            custom_role_arn: self.custom_role_arn,
        };
        (self.prefix, fields)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PrefixIn {
    prefix: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeIn {
    prefixes: Option<Vec<String>>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

/// ECR's `RepositoryCreationTemplate`.
fn template_json(t: &CreationTemplate) -> Value {
    let mut enc = json!({"encryptionType": t.encryption_type});
    if let Some(k) = &t.kms_key {
        enc["kmsKey"] = json!(k);
    }
    let mut v = json!({
        "prefix": t.prefix,
        "encryptionConfiguration": enc,
        "resourceTags": t.resource_tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>(),
        "imageTagMutability": t.image_tag_mutability,
        "appliedFor": t.applied_for.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        "createdAt": t.created_at as f64 / 1000.0,
        "updatedAt": t.updated_at as f64 / 1000.0,
    });
    if !t.exclusions.is_empty() {
        v["imageTagMutabilityExclusionFilters"] = json!(t.exclusions);
    }
    for (field, value) in [
        ("description", &t.description),
        ("repositoryPolicy", &t.repository_policy),
        ("lifecyclePolicy", &t.lifecycle_policy),
        ("customRoleArn", &t.custom_role_arn),
    ] {
        if let Some(x) = value {
            v[field] = json!(x);
        }
    }
    v
}

fn answer(ctx: &Ctx<'_>, t: &CreationTemplate) -> Value {
    json!({"registryId": ctx.identity.account_id, "repositoryCreationTemplate": template_json(t)})
}

pub(super) async fn create(ctx: &Ctx<'_>, input: TemplateIn) -> Result<Value, EcrError> {
    ctx.authorize_account("CreateRepositoryCreationTemplate").await?;
    let (prefix, fields) = input.split();
    let t = ctx.reg.create_creation_template(&ctx.ns(), &prefix, fields).await?;
    Ok(answer(ctx, &t))
}

pub(super) async fn update(ctx: &Ctx<'_>, input: TemplateIn) -> Result<Value, EcrError> {
    ctx.authorize_account("UpdateRepositoryCreationTemplate").await?;
    let (prefix, fields) = input.split();
    let t = ctx.reg.update_creation_template(&ctx.ns(), &prefix, fields).await?;
    Ok(answer(ctx, &t))
}

pub(super) async fn delete(ctx: &Ctx<'_>, input: PrefixIn) -> Result<Value, EcrError> {
    ctx.authorize_account("DeleteRepositoryCreationTemplate").await?;
    let t = ctx.reg.delete_creation_template(&ctx.ns(), &input.prefix).await?;
    Ok(answer(ctx, &t))
}

pub(super) async fn describe(ctx: &Ctx<'_>, input: DescribeIn) -> Result<Value, EcrError> {
    ctx.authorize_account("DescribeRepositoryCreationTemplates").await?;
    let limit = max_results(input.max_results, 1000, 100)?;
    let after = decode_token(input.next_token.as_deref())?;
    let (items, more) =
        ctx.reg.describe_creation_templates(&ctx.ns(), input.prefixes.as_deref(), after.as_deref(), limit).await?;
    let mut v = json!({
        "registryId": ctx.identity.account_id,
        "repositoryCreationTemplates": items.iter().map(template_json).collect::<Vec<_>>(),
    });
    if more && let Some(last) = items.last() {
        v["nextToken"] = json!(hex::encode(berth_meta::templates::prefix_key(&last.prefix)));
    }
    Ok(v)
}
