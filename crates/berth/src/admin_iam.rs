//! `berth admin` IAM and repository-policy subcommands: the registry's IAM operations for
//! scripting without the AWS CLI. Each works on one account (`--account-id`, the default account
//! when omitted) and prints what the AWS CLI prints: IAM's PascalCase fields (`{"User": {...}}`),
//! ECR's camelCase ones for repository policies. Commands IAM answers with nothing print nothing.

use anyhow::Context;
use berth_meta::{AccessKey, IamEntity, MetadataStore, Owner};
use berth_registry::Registry;
use berth_registry::iam::PolicyInfo;
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Subcommand, Debug)]
pub enum IamCommand {
    /// Create an IAM user; prints {"User": ...}.
    CreateUser {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        user_name: String,
        /// IAM path (`/` by default), e.g. `/ci/`.
        #[arg(long)]
        path: Option<String>,
    },
    /// Print a user as {"User": ...}.
    GetUser {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        user_name: String,
    },
    /// List the users of an account as {"Users": [...]}.
    ListUsers {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        path_prefix: Option<String>,
    },
    /// Delete a user (its access keys, policies and group memberships must go first).
    DeleteUser {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        user_name: String,
    },
    /// Set an access key of a user (the root when --user-name is omitted) Active or Inactive.
    UpdateAccessKey {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        user_name: Option<String>,
        #[arg(long)]
        access_key_id: String,
        /// `Active` or `Inactive`.
        #[arg(long)]
        status: String,
    },
    /// Delete an access key of a user (the root when --user-name is omitted).
    DeleteAccessKey {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        user_name: Option<String>,
        #[arg(long)]
        access_key_id: String,
    },
    /// List the access keys of a user (the root when --user-name is omitted), without secrets,
    /// as {"AccessKeyMetadata": [...]}.
    ListAccessKeys {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        user_name: Option<String>,
    },
    /// Create or replace an inline policy of a user.
    PutUserPolicy {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        user_name: String,
        #[arg(long)]
        policy_name: String,
        /// The policy JSON, or `file://PATH` to read it from a file.
        #[arg(long)]
        policy_document: String,
    },
    /// Print an inline policy of a user.
    GetUserPolicy {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        user_name: String,
        #[arg(long)]
        policy_name: String,
    },
    /// List the inline policy names of a user as {"PolicyNames": [...]}.
    ListUserPolicies {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        user_name: String,
    },
    /// Delete an inline policy of a user.
    DeleteUserPolicy {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        user_name: String,
        #[arg(long)]
        policy_name: String,
    },
    /// Create a customer managed policy; prints {"Policy": ...}.
    CreatePolicy {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        policy_name: String,
        /// The policy JSON, or `file://PATH` to read it from a file.
        #[arg(long)]
        policy_document: String,
        #[arg(long)]
        path: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Print a managed policy (customer or AWS managed) by ARN as {"Policy": ...}.
    GetPolicy {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        policy_arn: String,
    },
    /// List managed policies as {"Policies": [...]}.
    ListPolicies {
        #[arg(long)]
        account_id: Option<String>,
        /// `All` (default), `AWS` or `Local`.
        #[arg(long)]
        scope: Option<String>,
        /// Only policies attached to a user or group.
        #[arg(long)]
        only_attached: bool,
    },
    /// Delete a customer managed policy that is attached to nothing.
    DeletePolicy {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        policy_arn: String,
    },
    /// Attach a managed policy to a user.
    AttachUserPolicy {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        user_name: String,
        #[arg(long)]
        policy_arn: String,
    },
    /// Detach a managed policy from a user.
    DetachUserPolicy {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        user_name: String,
        #[arg(long)]
        policy_arn: String,
    },
    /// List the managed policies attached to a user as {"AttachedPolicies": [...]}.
    ListAttachedUserPolicies {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        user_name: String,
    },
    /// Create a group; prints {"Group": ...}.
    CreateGroup {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        group_name: String,
        #[arg(long)]
        path: Option<String>,
    },
    /// Print a group and its users as {"Group": ..., "Users": [...]}.
    GetGroup {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        group_name: String,
    },
    /// List the groups of an account as {"Groups": [...]}.
    ListGroups {
        #[arg(long)]
        account_id: Option<String>,
    },
    /// Delete a group without members or policies.
    DeleteGroup {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        group_name: String,
    },
    /// Add a user to a group.
    AddUserToGroup {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        group_name: String,
        #[arg(long)]
        user_name: String,
    },
    /// Remove a user from a group.
    RemoveUserFromGroup {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        group_name: String,
        #[arg(long)]
        user_name: String,
    },
    /// Create or replace an inline policy of a group.
    PutGroupPolicy {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        group_name: String,
        #[arg(long)]
        policy_name: String,
        /// The policy JSON, or `file://PATH` to read it from a file.
        #[arg(long)]
        policy_document: String,
    },
    /// Delete an inline policy of a group.
    DeleteGroupPolicy {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        group_name: String,
        #[arg(long)]
        policy_name: String,
    },
    /// Attach a managed policy to a group.
    AttachGroupPolicy {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        group_name: String,
        #[arg(long)]
        policy_arn: String,
    },
    /// Detach a managed policy from a group.
    DetachGroupPolicy {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        group_name: String,
        #[arg(long)]
        policy_arn: String,
    },
    /// Create a role; prints {"Role": ...}. The trust policy is the JSON or `file://PATH`.
    CreateRole {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        role_name: String,
        #[arg(long)]
        assume_role_policy_document: String,
        #[arg(long)]
        path: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Longest session in seconds (3600..=43200, default 3600).
        #[arg(long)]
        max_session_duration: Option<i64>,
    },
    /// Print a role as {"Role": ...}.
    GetRole {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        role_name: String,
    },
    /// List the roles of an account as {"Roles": [...]}.
    ListRoles {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        path_prefix: Option<String>,
    },
    /// Delete a role (its policies must go first); its sessions stop working.
    DeleteRole {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        role_name: String,
    },
    /// Replace a role's trust policy.
    UpdateAssumeRolePolicy {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        role_name: String,
        #[arg(long)]
        policy_document: String,
    },
    /// Change a role's description and/or maximum session duration.
    UpdateRole {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        role_name: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        max_session_duration: Option<i64>,
    },
    /// Create or replace an inline policy of a role.
    PutRolePolicy {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        role_name: String,
        #[arg(long)]
        policy_name: String,
        #[arg(long)]
        policy_document: String,
    },
    /// Print an inline policy of a role.
    GetRolePolicy {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        role_name: String,
        #[arg(long)]
        policy_name: String,
    },
    /// List the inline policies of a role as {"PolicyNames": [...]}.
    ListRolePolicies {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        role_name: String,
    },
    /// Delete an inline policy of a role.
    DeleteRolePolicy {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        role_name: String,
        #[arg(long)]
        policy_name: String,
    },
    /// Attach a managed policy to a role.
    AttachRolePolicy {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        role_name: String,
        #[arg(long)]
        policy_arn: String,
    },
    /// Detach a managed policy from a role.
    DetachRolePolicy {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        role_name: String,
        #[arg(long)]
        policy_arn: String,
    },
    /// List the managed policies attached to a role as {"AttachedPolicies": [...]}.
    ListAttachedRolePolicies {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        role_name: String,
    },
    /// Register an OIDC identity provider; prints {"OpenIDConnectProviderArn": ...}.
    CreateOpenIdConnectProvider {
        #[arg(long)]
        account_id: Option<String>,
        /// The issuer, `https://host[/path]`.
        #[arg(long)]
        url: String,
        /// Audiences (client ids) tokens must name; repeat or separate with commas.
        #[arg(long = "client-id-list", value_delimiter = ',')]
        client_ids: Vec<String>,
        /// SHA-1 thumbprints (40 hex digits) of the issuer's certificates (stored, as IAM).
        #[arg(long = "thumbprint-list", value_delimiter = ',')]
        thumbprints: Vec<String>,
    },
    /// Print a provider.
    GetOpenIdConnectProvider {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        open_id_connect_provider_arn: String,
    },
    /// List the providers of an account.
    ListOpenIdConnectProviders {
        #[arg(long)]
        account_id: Option<String>,
    },
    /// Delete a provider.
    DeleteOpenIdConnectProvider {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        open_id_connect_provider_arn: String,
    },
    /// Set a repository's policy; prints {"registryId", "repositoryName", "policyText"}.
    SetRepositoryPolicy {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        repository_name: String,
        /// Region of the repository (the deployment's first region by default).
        #[arg(long)]
        region: Option<String>,
        /// The policy JSON, or `file://PATH` to read it from a file.
        #[arg(long)]
        policy_text: String,
    },
    /// Print a repository's policy as {"registryId", "repositoryName", "policyText"}.
    GetRepositoryPolicy {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        repository_name: String,
        #[arg(long)]
        region: Option<String>,
    },
    /// Delete a repository's policy; prints the policy it had.
    DeleteRepositoryPolicy {
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        repository_name: String,
        #[arg(long)]
        region: Option<String>,
    },
}

/// Pages read at most by a listing (of up to 1000 items each).
const MAX_PAGES: usize = 10_000;

/// Every item of a paginated listing, as JSON: `page(marker)` fetches one page.
async fn all_pages<T, F, Fut>(mut page: F, to_json: fn(&T) -> Value) -> anyhow::Result<Vec<Value>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = berth_registry::Result<berth_registry::iam::Page<T>>>,
{
    let mut out = Vec::new();
    let mut marker = None;
    for _ in 0..MAX_PAGES {
        let p = page(marker).await.map_err(reg_err)?;
        out.extend(p.items.iter().map(to_json));
        marker = p.marker;
        if marker.is_none() {
            break;
        }
    }
    Ok(out)
}

fn reg_err(e: berth_registry::Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// The account a command works on: the given one, or the deployment's default; it must exist.
async fn account(reg: &Registry, meta: &dyn MetadataStore, id: Option<String>) -> anyhow::Result<String> {
    let id = id.unwrap_or_else(|| reg.default_account().to_string());
    anyhow::ensure!(meta.account_exists(&id).await?, "account {id} does not exist");
    Ok(id)
}

/// A policy argument: the JSON itself, or `file://PATH` (as the AWS CLI reads it).
fn document(arg: &str) -> anyhow::Result<String> {
    match arg.strip_prefix("file://") {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {arg}")),
        None => Ok(arg.to_string()),
    }
}

/// A region this deployment hosts (its first one by default).
fn region(reg: &Registry, region: Option<String>) -> anyhow::Result<String> {
    let regions = reg.regions();
    match region {
        None => Ok(regions[0].clone()),
        Some(r) if regions.contains(&r) => Ok(r),
        Some(r) => anyhow::bail!("region '{r}' is not hosted by this deployment (regions: {})", regions.join(", ")),
    }
}

/// IAM's timestamp format, `YYYY-MM-DDTHH:MM:SSZ` (UTC).
fn date(ms: i64) -> String {
    berth_registry::jobs::bucket_key(ms)
}

fn user_json(u: &IamEntity) -> Value {
    json!({
        "Path": u.path,
        "UserName": u.name,
        "UserId": u.id,
        "Arn": format!("arn:aws:iam::{}:user{}{}", u.account_id, u.path, u.name),
        "CreateDate": date(u.created_at),
    })
}

fn group_json(g: &IamEntity) -> Value {
    json!({
        "Path": g.path,
        "GroupName": g.name,
        "GroupId": g.id,
        "Arn": format!("arn:aws:iam::{}:group{}{}", g.account_id, g.path, g.name),
        "CreateDate": date(g.created_at),
    })
}

fn role_json(r: &berth_meta::Role) -> Value {
    let mut v = json!({
        "Path": r.path,
        "RoleName": r.name,
        "RoleId": r.id,
        "Arn": r.arn(),
        "CreateDate": date(r.created_at),
        "AssumeRolePolicyDocument": document_json(&r.trust_policy),
        "MaxSessionDuration": r.max_session_duration,
    });
    if let Some(d) = &r.description {
        v["Description"] = json!(d);
    }
    if !r.tags.is_empty() {
        v["Tags"] = Value::Array(r.tags.iter().map(|(k, x)| json!({"Key": k, "Value": x})).collect());
    }
    v
}

fn policy_json(p: &PolicyInfo) -> Value {
    let mut v = json!({
        "PolicyName": p.name,
        "PolicyId": p.id,
        "Arn": p.arn,
        "Path": p.path,
        "DefaultVersionId": "v1",
        "AttachmentCount": p.attachment_count,
        "PermissionsBoundaryUsageCount": 0,
        "IsAttachable": true,
        "CreateDate": date(p.created_at),
        "UpdateDate": date(p.updated_at),
    });
    if let Some(d) = &p.description {
        v["Description"] = json!(d);
    }
    v
}

/// An access key's metadata (no secret); no `UserName` for a root key.
fn key_metadata_json(k: &AccessKey) -> Value {
    let mut v = serde_json::Map::new();
    if let Some(u) = &k.user_name {
        v.insert("UserName".into(), json!(u));
    }
    v.insert("AccessKeyId".into(), json!(k.access_key_id));
    v.insert("Status".into(), json!(k.status));
    v.insert("CreateDate".into(), json!(date(k.created_at)));
    Value::Object(v)
}

/// A policy document as the AWS CLI shows it: parsed JSON (the text when it does not parse).
fn document_json(doc: &str) -> Value {
    serde_json::from_str(doc).unwrap_or_else(|_| json!(doc))
}

fn repository_policy_json(account: &str, name: &str, text: &str) -> Value {
    json!({"registryId": account, "repositoryName": name, "policyText": text})
}

/// `create-access-key --user-name N`: a new key of a user, printed as {"AccessKey": ...} with
/// its secret (shown only here).
pub async fn create_access_key(
    reg: &Registry,
    meta: &dyn MetadataStore,
    account_id: Option<String>,
    user: &str,
) -> anyhow::Result<Value> {
    let acct = account(reg, meta, account_id).await?;
    let (creds, key) = reg.create_user_access_key(&acct, Some(user)).await.map_err(reg_err)?;
    Ok(json!({"AccessKey": {
        "UserName": key.user_name,
        "AccessKeyId": creds.access_key_id,
        "Status": key.status,
        "SecretAccessKey": creds.secret_access_key,
        "CreateDate": date(key.created_at),
    }}))
}

/// Run an IAM subcommand; `None` when it prints nothing.
pub async fn run(reg: &Registry, meta: &dyn MetadataStore, command: IamCommand) -> anyhow::Result<Option<Value>> {
    use IamCommand as C;
    Ok(match command {
        C::CreateUser { account_id, user_name, path } => {
            let acct = account(reg, meta, account_id).await?;
            let u = reg.create_user(&acct, &user_name, path.as_deref()).await.map_err(reg_err)?;
            Some(json!({"User": user_json(&u)}))
        }
        C::GetUser { account_id, user_name } => {
            let acct = account(reg, meta, account_id).await?;
            Some(json!({"User": user_json(&reg.get_user(&acct, &user_name).await.map_err(reg_err)?)}))
        }
        C::ListUsers { account_id, path_prefix } => {
            let acct = account(reg, meta, account_id).await?;
            let (acct, prefix) = (acct.as_str(), path_prefix.as_deref());
            let users =
                all_pages(|m| async move { reg.list_users(acct, prefix, m.as_deref(), Some(1000)).await }, user_json)
                    .await?;
            Some(json!({"Users": users}))
        }
        C::DeleteUser { account_id, user_name } => {
            let acct = account(reg, meta, account_id).await?;
            reg.delete_user(&acct, &user_name).await.map_err(reg_err)?;
            None
        }
        C::UpdateAccessKey { account_id, user_name, access_key_id, status } => {
            let acct = account(reg, meta, account_id).await?;
            reg.update_access_key(&acct, user_name.as_deref(), &access_key_id, &status).await.map_err(reg_err)?;
            None
        }
        C::DeleteAccessKey { account_id, user_name, access_key_id } => {
            let acct = account(reg, meta, account_id).await?;
            reg.delete_user_access_key(&acct, user_name.as_deref(), &access_key_id).await.map_err(reg_err)?;
            None
        }
        C::ListAccessKeys { account_id, user_name } => {
            let acct = account(reg, meta, account_id).await?;
            let keys = reg.list_access_keys(&acct, user_name.as_deref()).await.map_err(reg_err)?;
            Some(json!({"AccessKeyMetadata": keys.iter().map(key_metadata_json).collect::<Vec<_>>()}))
        }
        C::PutUserPolicy { account_id, user_name, policy_name, policy_document } => {
            let acct = account(reg, meta, account_id).await?;
            let doc = document(&policy_document)?;
            reg.put_inline_policy(&acct, Owner::User(&user_name), &policy_name, &doc).await.map_err(reg_err)?;
            None
        }
        C::GetUserPolicy { account_id, user_name, policy_name } => {
            let acct = account(reg, meta, account_id).await?;
            let (user, doc) =
                reg.get_inline_policy(&acct, Owner::User(&user_name), &policy_name).await.map_err(reg_err)?;
            Some(json!({"UserName": user, "PolicyName": policy_name, "PolicyDocument": document_json(&doc)}))
        }
        C::ListUserPolicies { account_id, user_name } => {
            let acct = account(reg, meta, account_id).await?;
            let names = reg.list_inline_policies(&acct, Owner::User(&user_name)).await.map_err(reg_err)?;
            Some(json!({"PolicyNames": names}))
        }
        C::DeleteUserPolicy { account_id, user_name, policy_name } => {
            let acct = account(reg, meta, account_id).await?;
            reg.delete_inline_policy(&acct, Owner::User(&user_name), &policy_name).await.map_err(reg_err)?;
            None
        }
        C::CreatePolicy { account_id, policy_name, policy_document, path, description } => {
            let acct = account(reg, meta, account_id).await?;
            let doc = document(&policy_document)?;
            let p = reg
                .create_policy(&acct, &policy_name, path.as_deref(), &doc, description.as_deref())
                .await
                .map_err(reg_err)?;
            Some(json!({"Policy": policy_json(&p)}))
        }
        C::GetPolicy { account_id, policy_arn } => {
            let acct = account(reg, meta, account_id).await?;
            Some(json!({"Policy": policy_json(&reg.get_policy(&acct, &policy_arn).await.map_err(reg_err)?)}))
        }
        C::ListPolicies { account_id, scope, only_attached } => {
            let acct = account(reg, meta, account_id).await?;
            let (acct, scope) = (acct.as_str(), scope.as_deref());
            let page = |m: Option<String>| async move {
                reg.list_policies(acct, scope, only_attached, None, m.as_deref(), Some(1000)).await
            };
            Some(json!({"Policies": all_pages(page, policy_json).await?}))
        }
        C::DeletePolicy { account_id, policy_arn } => {
            let acct = account(reg, meta, account_id).await?;
            reg.delete_policy(&acct, &policy_arn).await.map_err(reg_err)?;
            None
        }
        C::AttachUserPolicy { account_id, user_name, policy_arn } => {
            let acct = account(reg, meta, account_id).await?;
            reg.attach_policy(&acct, Owner::User(&user_name), &policy_arn).await.map_err(reg_err)?;
            None
        }
        C::DetachUserPolicy { account_id, user_name, policy_arn } => {
            let acct = account(reg, meta, account_id).await?;
            reg.detach_policy(&acct, Owner::User(&user_name), &policy_arn).await.map_err(reg_err)?;
            None
        }
        C::ListAttachedUserPolicies { account_id, user_name } => {
            let acct = account(reg, meta, account_id).await?;
            let attached = reg.list_attached_policies(&acct, Owner::User(&user_name)).await.map_err(reg_err)?;
            let attached: Vec<Value> =
                attached.into_iter().map(|(name, arn)| json!({"PolicyName": name, "PolicyArn": arn})).collect();
            Some(json!({"AttachedPolicies": attached}))
        }
        C::CreateGroup { account_id, group_name, path } => {
            let acct = account(reg, meta, account_id).await?;
            let g = reg.create_group(&acct, &group_name, path.as_deref()).await.map_err(reg_err)?;
            Some(json!({"Group": group_json(&g)}))
        }
        C::GetGroup { account_id, group_name } => {
            let acct = account(reg, meta, account_id).await?;
            let g = reg.get_group(&acct, &group_name).await.map_err(reg_err)?;
            let users = reg.group_users(&acct, &g.name).await.map_err(reg_err)?;
            Some(json!({"Users": users.iter().map(user_json).collect::<Vec<_>>(), "Group": group_json(&g)}))
        }
        C::ListGroups { account_id } => {
            let acct = account(reg, meta, account_id).await?;
            let acct = acct.as_str();
            let groups =
                all_pages(|m| async move { reg.list_groups(acct, None, m.as_deref(), Some(1000)).await }, group_json)
                    .await?;
            Some(json!({"Groups": groups}))
        }
        C::DeleteGroup { account_id, group_name } => {
            let acct = account(reg, meta, account_id).await?;
            reg.delete_group(&acct, &group_name).await.map_err(reg_err)?;
            None
        }
        C::AddUserToGroup { account_id, group_name, user_name } => {
            let acct = account(reg, meta, account_id).await?;
            reg.add_user_to_group(&acct, &group_name, &user_name).await.map_err(reg_err)?;
            None
        }
        C::RemoveUserFromGroup { account_id, group_name, user_name } => {
            let acct = account(reg, meta, account_id).await?;
            reg.remove_user_from_group(&acct, &group_name, &user_name).await.map_err(reg_err)?;
            None
        }
        C::PutGroupPolicy { account_id, group_name, policy_name, policy_document } => {
            let acct = account(reg, meta, account_id).await?;
            let doc = document(&policy_document)?;
            reg.put_inline_policy(&acct, Owner::Group(&group_name), &policy_name, &doc).await.map_err(reg_err)?;
            None
        }
        C::DeleteGroupPolicy { account_id, group_name, policy_name } => {
            let acct = account(reg, meta, account_id).await?;
            reg.delete_inline_policy(&acct, Owner::Group(&group_name), &policy_name).await.map_err(reg_err)?;
            None
        }
        C::AttachGroupPolicy { account_id, group_name, policy_arn } => {
            let acct = account(reg, meta, account_id).await?;
            reg.attach_policy(&acct, Owner::Group(&group_name), &policy_arn).await.map_err(reg_err)?;
            None
        }
        C::DetachGroupPolicy { account_id, group_name, policy_arn } => {
            let acct = account(reg, meta, account_id).await?;
            reg.detach_policy(&acct, Owner::Group(&group_name), &policy_arn).await.map_err(reg_err)?;
            None
        }
        C::CreateRole {
            account_id,
            role_name,
            assume_role_policy_document,
            path,
            description,
            max_session_duration,
        } => {
            let acct = account(reg, meta, account_id).await?;
            let doc = document(&assume_role_policy_document)?;
            let new = berth_registry::roles::NewRole {
                name: &role_name,
                path: path.as_deref(),
                trust_policy: &doc,
                description: description.as_deref(),
                max_session_duration,
                tags: Vec::new(),
            };
            Some(json!({"Role": role_json(&reg.create_role(&acct, new).await.map_err(reg_err)?)}))
        }
        C::GetRole { account_id, role_name } => {
            let acct = account(reg, meta, account_id).await?;
            Some(json!({"Role": role_json(&reg.get_role(&acct, &role_name).await.map_err(reg_err)?)}))
        }
        C::ListRoles { account_id, path_prefix } => {
            let acct = account(reg, meta, account_id).await?;
            let (acct, prefix) = (acct.as_str(), path_prefix.as_deref());
            let roles =
                all_pages(|m| async move { reg.list_roles(acct, prefix, m.as_deref(), Some(1000)).await }, role_json)
                    .await?;
            Some(json!({"Roles": roles}))
        }
        C::DeleteRole { account_id, role_name } => {
            let acct = account(reg, meta, account_id).await?;
            reg.delete_role(&acct, &role_name).await.map_err(reg_err)?;
            None
        }
        C::UpdateAssumeRolePolicy { account_id, role_name, policy_document } => {
            let acct = account(reg, meta, account_id).await?;
            let doc = document(&policy_document)?;
            reg.update_assume_role_policy(&acct, &role_name, &doc).await.map_err(reg_err)?;
            None
        }
        C::UpdateRole { account_id, role_name, description, max_session_duration } => {
            let acct = account(reg, meta, account_id).await?;
            reg.update_role(&acct, &role_name, description.as_deref(), max_session_duration).await.map_err(reg_err)?;
            None
        }
        C::PutRolePolicy { account_id, role_name, policy_name, policy_document } => {
            let acct = account(reg, meta, account_id).await?;
            let doc = document(&policy_document)?;
            reg.put_inline_policy(&acct, Owner::Role(&role_name), &policy_name, &doc).await.map_err(reg_err)?;
            None
        }
        C::GetRolePolicy { account_id, role_name, policy_name } => {
            let acct = account(reg, meta, account_id).await?;
            let (name, doc) =
                reg.get_inline_policy(&acct, Owner::Role(&role_name), &policy_name).await.map_err(reg_err)?;
            Some(json!({"RoleName": name, "PolicyName": policy_name, "PolicyDocument": document_json(&doc)}))
        }
        C::ListRolePolicies { account_id, role_name } => {
            let acct = account(reg, meta, account_id).await?;
            let names = reg.list_inline_policies(&acct, Owner::Role(&role_name)).await.map_err(reg_err)?;
            Some(json!({"PolicyNames": names}))
        }
        C::DeleteRolePolicy { account_id, role_name, policy_name } => {
            let acct = account(reg, meta, account_id).await?;
            reg.delete_inline_policy(&acct, Owner::Role(&role_name), &policy_name).await.map_err(reg_err)?;
            None
        }
        C::AttachRolePolicy { account_id, role_name, policy_arn } => {
            let acct = account(reg, meta, account_id).await?;
            reg.attach_policy(&acct, Owner::Role(&role_name), &policy_arn).await.map_err(reg_err)?;
            None
        }
        C::DetachRolePolicy { account_id, role_name, policy_arn } => {
            let acct = account(reg, meta, account_id).await?;
            reg.detach_policy(&acct, Owner::Role(&role_name), &policy_arn).await.map_err(reg_err)?;
            None
        }
        C::ListAttachedRolePolicies { account_id, role_name } => {
            let acct = account(reg, meta, account_id).await?;
            let list = reg.list_attached_policies(&acct, Owner::Role(&role_name)).await.map_err(reg_err)?;
            let items: Vec<Value> = list.iter().map(|(n, a)| json!({"PolicyName": n, "PolicyArn": a})).collect();
            Some(json!({"AttachedPolicies": items}))
        }
        C::CreateOpenIdConnectProvider { account_id, url, client_ids, thumbprints } => {
            let acct = account(reg, meta, account_id).await?;
            let p =
                reg.create_oidc_provider(&acct, &url, client_ids, thumbprints, Vec::new()).await.map_err(reg_err)?;
            Some(json!({"OpenIDConnectProviderArn": p.arn}))
        }
        C::GetOpenIdConnectProvider { account_id, open_id_connect_provider_arn } => {
            let acct = account(reg, meta, account_id).await?;
            let p = reg.get_oidc_provider(&acct, &open_id_connect_provider_arn).await.map_err(reg_err)?;
            Some(json!({
                "Url": berth_meta::OidcProvider::url_key(&p.url),
                "ClientIDList": p.client_ids,
                "ThumbprintList": p.thumbprints,
                "CreateDate": date(p.created_at),
            }))
        }
        C::ListOpenIdConnectProviders { account_id } => {
            let acct = account(reg, meta, account_id).await?;
            let ps = reg.list_oidc_providers(&acct).await.map_err(reg_err)?;
            let items: Vec<Value> = ps.iter().map(|p| json!({"Arn": p.arn})).collect();
            Some(json!({"OpenIDConnectProviderList": items}))
        }
        C::DeleteOpenIdConnectProvider { account_id, open_id_connect_provider_arn } => {
            let acct = account(reg, meta, account_id).await?;
            reg.delete_oidc_provider(&acct, &open_id_connect_provider_arn).await.map_err(reg_err)?;
            None
        }
        C::SetRepositoryPolicy { account_id, repository_name, region: r, policy_text } => {
            let acct = account(reg, meta, account_id).await?;
            let ns = reg.namespace(&acct, &region(reg, r)?);
            let text = document(&policy_text)?;
            reg.set_repository_policy(&ns, &repository_name, &text).await.map_err(reg_err)?;
            // As ECR: the policy as stored, which may be normalized, not as given.
            let (info, stored) = reg.repository_policy(&ns, &repository_name).await.map_err(reg_err)?;
            Some(repository_policy_json(&info.account_id, &info.name, &stored))
        }
        C::GetRepositoryPolicy { account_id, repository_name, region: r } => {
            let acct = account(reg, meta, account_id).await?;
            let ns = reg.namespace(&acct, &region(reg, r)?);
            let (info, text) = reg.repository_policy(&ns, &repository_name).await.map_err(reg_err)?;
            Some(repository_policy_json(&info.account_id, &info.name, &text))
        }
        C::DeleteRepositoryPolicy { account_id, repository_name, region: r } => {
            let acct = account(reg, meta, account_id).await?;
            let ns = reg.namespace(&acct, &region(reg, r)?);
            let (info, text) = reg.delete_repository_policy(&ns, &repository_name).await.map_err(reg_err)?;
            Some(repository_policy_json(&info.account_id, &info.name, &text))
        }
    })
}
