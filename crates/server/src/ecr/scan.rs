//! ECR's image scanning operations: StartImageScan, DescribeImageScanFindings,
//! PutImageScanningConfiguration, PutRegistryScanningConfiguration,
//! GetRegistryScanningConfiguration, BatchGetRepositoryScanningConfiguration; and the scan
//! fields of DescribeImages.

use super::{Ctx, EcrError, image_ids, image_not_found, max_results, repo_name};
use berth_meta::scan::ImageScan;
use berth_registry::ImageId;
use berth_registry::scan::{ScanRefused, ScanningConfiguration, ScanningFilter, ScanningRule};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StartIn {
    registry_id: Option<String>,
    repository_name: String,
    image_id: ImageId,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct FindingsIn {
    registry_id: Option<String>,
    repository_name: String,
    image_id: ImageId,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutRepoIn {
    registry_id: Option<String>,
    repository_name: String,
    image_scanning_configuration: RepoScanningIn,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RepoScanningIn {
    #[serde(default)]
    scan_on_push: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutRegistryIn {
    scan_type: Option<String>,
    rules: Option<Vec<ScanningRule>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BatchGetIn {
    repository_names: Vec<String>,
}

fn image_id_json(digest: &str, id: &ImageId) -> Value {
    let mut v = json!({"imageDigest": digest});
    if let Some(t) = &id.image_tag {
        v["imageTag"] = json!(t);
    }
    v
}

/// `imageScanStatus` of a scan.
pub(super) fn status_json(s: &ImageScan) -> Value {
    let mut v = json!({"status": s.status});
    if let Some(d) = &s.description {
        v["description"] = json!(d);
    }
    v
}

/// `imageScanFindingsSummary` of a completed scan (DescribeImages).
pub(super) fn summary_json(s: &ImageScan) -> Option<Value> {
    let completed = s.completed_at?;
    if s.status != berth_registry::scan::status::COMPLETE {
        return None;
    }
    let mut v = json!({
        "imageScanCompletedAt": completed as f64 / 1000.0,
        "findingSeverityCounts": counts(s),
    });
    if let Some(t) = s.source_updated_at {
        v["vulnerabilitySourceUpdatedAt"] = json!(t as f64 / 1000.0);
    }
    Some(v)
}

fn counts(s: &ImageScan) -> Value {
    s.counts.as_deref().and_then(|c| serde_json::from_str(c).ok()).unwrap_or_else(|| json!({}))
}

pub(super) async fn start(ctx: &Ctx<'_>, input: StartIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "StartImageScan", Some(&name)).await?;
    image_ids(std::slice::from_ref(&input.image_id))?;
    match ctx.reg.start_image_scan(&ns, &name, &input.image_id).await? {
        Ok(digest) => Ok(json!({
            "registryId": ns.account_id,
            "repositoryName": name,
            "imageId": image_id_json(&digest, &input.image_id),
            "imageScanStatus": {"status": "IN_PROGRESS"},
        })),
        Err(ScanRefused::NotFound) => Err(image_not_found(&ns, &name, &input.image_id)),
        Err(ScanRefused::Archived(m)) => Err(EcrError::new("ImageArchivedException", m)),
        Err(ScanRefused::TooSoon(m)) => Err(EcrError::new("LimitExceededException", m)),
        Err(ScanRefused::Invalid(m)) => Err(EcrError::invalid(m)),
    }
}

/// Findings pages: the token is the offset of the next finding.
fn page_token(offset: usize) -> String {
    format!("findings.{offset}")
}

pub(super) async fn findings(ctx: &Ctx<'_>, input: FindingsIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "DescribeImageScanFindings", Some(&name)).await?;
    image_ids(std::slice::from_ref(&input.image_id))?;
    let limit = max_results(input.max_results, 1000, 100)? as usize;
    let offset = match input.next_token.as_deref() {
        None => 0,
        Some(t) => {
            t.strip_prefix("findings.").and_then(|n| n.parse::<usize>().ok()).ok_or_else(super::invalid_token)?
        }
    };
    let (digest, scan) = match ctx.reg.image_scan(&ns, &name, &input.image_id).await? {
        Ok(x) => x,
        Err(f) if f.code == "ImageNotFound" => return Err(image_not_found(&ns, &name, &input.image_id)),
        Err(f) => return Err(EcrError::invalid(f.reason)),
    };
    let Some(scan) = scan else {
        return Err(EcrError::new(
            "ScanNotFoundException",
            format!(
                "Image scan does not exist for the image with '{{imageDigest:{digest}, imageTag:{}}}' in the repository with name '{name}' in the registry with id '{}'",
                input.image_id.image_tag.as_deref().unwrap_or("null"),
                ns.account_id
            ),
        ));
    };
    let mut v = json!({
        "registryId": ns.account_id,
        "repositoryName": name,
        "imageId": image_id_json(&digest, &input.image_id),
        "imageScanStatus": status_json(&scan),
    });
    if scan.status == berth_registry::scan::status::COMPLETE {
        let all: Vec<Value> = scan.findings.as_deref().and_then(|f| serde_json::from_str(f).ok()).unwrap_or_default();
        if offset > all.len() {
            return Err(super::invalid_token());
        }
        let end = (offset + limit).min(all.len());
        let mut f = json!({
            "findings": &all[offset..end],
            "findingSeverityCounts": counts(&scan),
        });
        if let Some(t) = scan.completed_at {
            f["imageScanCompletedAt"] = json!(t as f64 / 1000.0);
        }
        if let Some(t) = scan.source_updated_at {
            f["vulnerabilitySourceUpdatedAt"] = json!(t as f64 / 1000.0);
        }
        v["imageScanFindings"] = f;
        if end < all.len() {
            v["nextToken"] = json!(page_token(end));
        }
    }
    Ok(v)
}

pub(super) async fn put_repository(ctx: &Ctx<'_>, input: PutRepoIn) -> Result<Value, EcrError> {
    let name = repo_name("repositoryName", &input.repository_name)?;
    let ns = ctx.registry_ns(input.registry_id.as_deref(), "PutImageScanningConfiguration", Some(&name)).await?;
    let on = input.image_scanning_configuration.scan_on_push;
    ctx.reg.set_scan_on_push(&ns, &name, on).await?;
    Ok(json!({
        "registryId": ns.account_id,
        "repositoryName": name,
        "imageScanningConfiguration": {"scanOnPush": on},
    }))
}

/// ECR's constraint on a scanning filter value.
fn valid_filter(f: &str) -> bool {
    let b = f.as_bytes();
    (1..=255).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit() || b[0] == b'*')
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"*._-/".contains(c))
}

pub(super) async fn put_registry(ctx: &Ctx<'_>, input: PutRegistryIn) -> Result<Value, EcrError> {
    ctx.authorize_account("PutRegistryScanningConfiguration").await?;
    let ns = ctx.reg.namespace(&ctx.identity.account_id, &ctx.region);
    let scan_type = input.scan_type.unwrap_or_else(|| "BASIC".into());
    match scan_type.as_str() {
        "BASIC" => {}
        "ENHANCED" => {
            return Err(EcrError::invalid(
                "Invalid parameter at 'scanType' failed to satisfy constraint: 'ENHANCED scanning (Amazon Inspector) is not \
                 available in Berth; use BASIC'",
            ));
        }
        _ => {
            return Err(EcrError::new(
                "ValidationException",
                "1 validation error detected: Value at 'scanType' failed to satisfy constraint: Member must satisfy enum value set: [BASIC, ENHANCED]",
            ));
        }
    }
    let rules = input.rules.unwrap_or_default();
    if rules.len() > 2 {
        return Err(EcrError::new(
            "ValidationException",
            "1 validation error detected: Value at 'rules' failed to satisfy constraint: Member must have length less than or equal to 2",
        ));
    }
    for r in &rules {
        match r.scan_frequency.as_str() {
            // CONTINUOUS_SCAN (ECR: with ENHANCED only) is Berth's basic scanning on push plus
            // a rescan after every advisory import.
            "SCAN_ON_PUSH" | "MANUAL" | "CONTINUOUS_SCAN" => {}
            _ => {
                return Err(EcrError::new(
                    "ValidationException",
                    "1 validation error detected: Value at 'rules.member.scanFrequency' failed to satisfy constraint: Member must satisfy enum value set: [SCAN_ON_PUSH, CONTINUOUS_SCAN, MANUAL]",
                ));
            }
        }
        if r.repository_filters.is_empty() || r.repository_filters.len() > 100 {
            return Err(EcrError::new(
                "ValidationException",
                "1 validation error detected: Value at 'rules.member.repositoryFilters' failed to satisfy constraint: Member must have length between 1 and 100",
            ));
        }
        for f in &r.repository_filters {
            if f.filter_type != "WILDCARD" {
                return Err(EcrError::new(
                    "ValidationException",
                    "1 validation error detected: Value at 'rules.member.repositoryFilters.member.filterType' failed to satisfy constraint: Member must satisfy enum value set: [WILDCARD]",
                ));
            }
            if !valid_filter(&f.filter) {
                return Err(EcrError::new(
                    "ValidationException",
                    format!(
                        "1 validation error detected: Value '{}' at 'rules.member.repositoryFilters.member.filter' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-z0-9*](?:[._\\-/a-z0-9*]?[a-z0-9*]+)*$",
                        f.filter.chars().take(255).collect::<String>()
                    ),
                ));
            }
        }
    }
    let cfg = ScanningConfiguration { scan_type, rules };
    ctx.reg.put_registry_scanning(&ns, &cfg).await?;
    Ok(json!({"registryScanningConfiguration": cfg}))
}

pub(super) async fn get_registry(ctx: &Ctx<'_>) -> Result<Value, EcrError> {
    ctx.authorize_account("GetRegistryScanningConfiguration").await?;
    let ns = ctx.reg.namespace(&ctx.identity.account_id, &ctx.region);
    let cfg = ctx.reg.registry_scanning(&ns).await?.unwrap_or_default();
    Ok(json!({"registryId": ns.account_id, "scanningConfiguration": cfg}))
}

pub(super) async fn batch_get_repository(ctx: &Ctx<'_>, input: BatchGetIn) -> Result<Value, EcrError> {
    if input.repository_names.is_empty() || input.repository_names.len() > 25 {
        return Err(EcrError::new(
            "ValidationException",
            "1 validation error detected: Value at 'repositoryNames' failed to satisfy constraint: Member must have length between 1 and 25",
        ));
    }
    let (mut found, mut failures) = (Vec::new(), Vec::new());
    for raw in &input.repository_names {
        let name = repo_name("repositoryNames", raw)?;
        let ns = ctx.registry_ns(None, "BatchGetRepositoryScanningConfiguration", Some(&name)).await?;
        match ctx.reg.describe_repository(&ns, &name).await {
            Ok(info) => {
                let s = ctx.reg.repository_scanning(&ns, &name, info.scan_on_push).await?;
                found.push(json!({
                    "repositoryArn": format!("arn:aws:ecr:{}:{}:repository/{}", info.region, info.account_id, info.name),
                    "repositoryName": info.name,
                    "scanOnPush": s.scan_on_push,
                    "scanFrequency": s.scan_frequency,
                    "appliedScanFilters": s.applied_filters.iter().map(|f: &ScanningFilter| json!(f)).collect::<Vec<_>>(),
                }));
            }
            Err(berth_registry::Error::RepositoryNotFound { .. }) => failures.push(json!({
                "repositoryName": name,
                "failureCode": "REPOSITORY_NOT_FOUND",
                "failureReason": "REPOSITORY_NOT_FOUND",
            })),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(json!({"scanningConfigurations": found, "failures": failures}))
}
