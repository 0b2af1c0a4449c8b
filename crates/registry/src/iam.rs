//! IAM: users, groups, access keys, inline and managed policies, with IAM's names, limits and
//! errors. The server speaks IAM's Query API over these operations; `berth admin` calls them
//! directly.

use crate::accounts::{Credentials, random_chars};
use crate::{Error, Registry, Result};
use berth_meta::{AccessKey, IamEntity, ManagedPolicy, Owner};
use berth_policy::{Policy, PolicyKind};

/// Access keys a user (or root) may have at once.
pub const MAX_ACCESS_KEYS: usize = 2;
/// Managed policies attached to one user or group at most.
pub const MAX_ATTACHED_POLICIES: usize = 10;
/// Largest inline user policy (characters, whitespace not counted).
pub const MAX_USER_POLICY: usize = 2048;
/// Largest inline group policy.
pub const MAX_GROUP_POLICY: usize = 5120;
/// Largest inline role policy.
pub const MAX_ROLE_POLICY: usize = 10240;
/// Largest managed policy.
pub const MAX_MANAGED_POLICY: usize = 6144;

const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A page of a listing and the marker of the next page.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Set when more items follow.
    pub marker: Option<String>,
}

/// A managed policy as IAM describes it: a customer one, or one of the AWS managed policies
/// Berth provides.
#[derive(Debug, Clone)]
pub struct PolicyInfo {
    pub name: String,
    pub id: String,
    pub arn: String,
    pub path: String,
    pub document: String,
    pub description: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub attachment_count: i64,
}

impl PolicyInfo {
    /// A customer managed policy with its attachment count.
    fn customer(p: ManagedPolicy, attachment_count: i64) -> PolicyInfo {
        PolicyInfo {
            name: p.name,
            id: p.id,
            arn: p.arn,
            path: p.path,
            document: p.document,
            description: p.description,
            created_at: p.created_at,
            updated_at: p.updated_at,
            attachment_count,
        }
    }
}

/// The AWS managed policies Berth knows: (name, description, document).
const AWS_MANAGED: &[(&str, &str, &str)] = &[
    (
        "AdministratorAccess",
        "Provides full access to AWS services and resources.",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
    ),
    (
        "AmazonEC2ContainerRegistryFullAccess",
        "Provides administrative access to Amazon ECR resources",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:*"],"Resource":"*"}]}"#,
    ),
    (
        "AmazonEC2ContainerRegistryPowerUser",
        "Provides full access to Amazon EC2 Container Registry repositories, but does not allow repository and policy deletion or policy management.",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:GetAuthorizationToken","ecr:BatchCheckLayerAvailability","ecr:GetDownloadUrlForLayer","ecr:GetRepositoryPolicy","ecr:DescribeRepositories","ecr:ListImages","ecr:DescribeImages","ecr:BatchGetImage","ecr:GetLifecyclePolicy","ecr:GetLifecyclePolicyPreview","ecr:ListTagsForResource","ecr:DescribeImageScanFindings","ecr:InitiateLayerUpload","ecr:UploadLayerPart","ecr:CompleteLayerUpload","ecr:PutImage"],"Resource":"*"}]}"#,
    ),
    (
        "AmazonEC2ContainerRegistryReadOnly",
        "Provides read-only access to Amazon EC2 Container Registry repositories.",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:GetAuthorizationToken","ecr:BatchCheckLayerAvailability","ecr:GetDownloadUrlForLayer","ecr:GetRepositoryPolicy","ecr:DescribeRepositories","ecr:ListImages","ecr:DescribeImages","ecr:BatchGetImage","ecr:GetLifecyclePolicy","ecr:GetLifecyclePolicyPreview","ecr:ListTagsForResource","ecr:DescribeImageScanFindings"],"Resource":"*"}]}"#,
    ),
    (
        "IAMFullAccess",
        "Provides full access to IAM via the AWS Management Console.",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iam:*"],"Resource":"*"}]}"#,
    ),
    (
        "IAMReadOnlyAccess",
        "Provides read only access to IAM via the AWS Management Console.",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iam:GenerateCredentialReport","iam:Get*","iam:List*"],"Resource":"*"}]}"#,
    ),
];

/// The document of an AWS managed policy by ARN (`arn:aws:iam::aws:policy/<name>`).
pub fn aws_managed_document(arn: &str) -> Option<&'static str> {
    let name = arn.strip_prefix("arn:aws:iam::aws:policy/")?;
    AWS_MANAGED.iter().find(|(n, _, _)| *n == name).map(|(_, _, d)| *d)
}

fn aws_managed_info(name: &str, description: &str, document: &str) -> PolicyInfo {
    // Stable ids derived from the name, like AWS's fixed ids.
    let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let id: String =
        digest.as_ref().iter().take(17).map(|b| ID_ALPHABET[*b as usize % ID_ALPHABET.len()] as char).collect();
    PolicyInfo {
        name: name.to_string(),
        id: format!("ANPA{id}"),
        arn: format!("arn:aws:iam::aws:policy/{name}"),
        path: "/".into(),
        document: document.to_string(),
        description: Some(description.to_string()),
        created_at: 1_420_070_400_000,
        updated_at: 1_420_070_400_000,
        attachment_count: 0,
    }
}

/// Count of the characters of a policy that IAM's size quotas count (whitespace excluded).
pub(crate) fn policy_size(doc: &str) -> usize {
    doc.chars().filter(|c| !c.is_whitespace()).count()
}

/// Validate an IAM name (`[\w+=,.@-]+`, 1..=max characters).
pub(crate) fn check_name(field: &str, name: &str, max: usize) -> Result<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= max
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if ok {
        Ok(())
    } else if name.is_empty() {
        Err(Error::Validation(format!(
            "1 validation error detected: Value '{name}' at '{field}' failed to satisfy constraint: Member must have length greater than or equal to 1"
        )))
    } else if name.chars().count() > max {
        Err(Error::Validation(format!(
            "1 validation error detected: Value '{name}' at '{field}' failed to satisfy constraint: Member must have length less than or equal to {max}"
        )))
    } else {
        Err(Error::Validation(format!(
            "1 validation error detected: Value '{name}' at '{field}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+"
        )))
    }
}

/// Validate an IAM path: `/` or `/seg/.../`, printable ASCII, at most 512 characters.
pub(crate) fn check_path(path: &str) -> Result<()> {
    let ok = path.len() <= 512
        && path.starts_with('/')
        && path.ends_with('/')
        && path.bytes().all(|b| (0x21..=0x7e).contains(&b))
        && !path.contains("//");
    if ok {
        Ok(())
    } else {
        Err(Error::Validation(format!(
            "1 validation error detected: Value '{path}' at 'path' failed to satisfy constraint: Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)"
        )))
    }
}

pub(crate) fn paginate<T>(mut items: Vec<T>, limit: u32, key: impl Fn(&T) -> String) -> Page<T> {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let marker = if more { items.last().map(|i| hex::encode(key(i))) } else { None };
    Page { items, marker }
}

/// Decode a listing marker; `InvalidParameter`-style validation error when it is not ours.
pub(crate) fn decode_marker(marker: Option<&str>) -> Result<String> {
    match marker {
        None => Ok(String::new()),
        Some(m) => hex::decode(m)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| Error::Validation("Invalid Marker.".into())),
    }
}

pub(crate) fn max_items(v: Option<u32>) -> Result<u32> {
    match v {
        None => Ok(100),
        Some(n) if (1..=1000).contains(&n) => Ok(n),
        Some(n) => Err(Error::Validation(format!(
            "1 validation error detected: Value '{n}' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 1000"
        ))),
    }
}

fn owner_label(owner: Owner<'_>) -> (&'static str, &str) {
    match owner {
        Owner::User(n) => ("user", n),
        Owner::Group(n) => ("group", n),
        Owner::Role(n) => ("role", n),
    }
}

impl Registry {
    pub(crate) fn new_id(prefix: &str) -> String {
        format!("{prefix}{}", random_chars(ID_ALPHABET, 17))
    }

    /// Parse an identity policy as IAM validates it.
    pub fn parse_identity_policy(document: &str) -> Result<Policy> {
        Policy::parse(document, PolicyKind::Identity).map_err(|e| Error::MalformedPolicyDocument(e.to_string()))
    }

    async fn changed(&self) {
        self.authz.invalidate();
    }

    /// Create a user.
    pub async fn create_user(&self, account: &str, name: &str, path: Option<&str>) -> Result<IamEntity> {
        check_name("userName", name, 64)?;
        let path = path.unwrap_or("/");
        check_path(path)?;
        let u = IamEntity {
            account_id: account.to_string(),
            name: name.to_string(),
            id: Self::new_id("AIDA"),
            path: path.to_string(),
            created_at: self.now(),
        };
        if !self.meta.create_user(&u).await? {
            return Err(Error::EntityAlreadyExists(format!("User with name {name} already exists.")));
        }
        self.changed().await;
        Ok(u)
    }

    /// A user, or `NoSuchEntity`.
    pub async fn get_user(&self, account: &str, name: &str) -> Result<IamEntity> {
        self.meta
            .user(account, name)
            .await?
            .ok_or_else(|| Error::NoSuchEntity(format!("The user with name {name} cannot be found.")))
    }

    /// Users by name.
    pub async fn list_users(
        &self,
        account: &str,
        path_prefix: Option<&str>,
        marker: Option<&str>,
        max: Option<u32>,
    ) -> Result<Page<IamEntity>> {
        let limit = max_items(max)?;
        let after = decode_marker(marker)?;
        let items = self.meta.list_users(account, path_prefix.unwrap_or("/"), &after, limit + 1).await?;
        Ok(paginate(items, limit, |u| u.name.to_lowercase()))
    }

    /// Delete a user that owns no access keys, policies or group memberships.
    pub async fn delete_user(&self, account: &str, name: &str) -> Result<()> {
        let u = self.get_user(account, name).await?;
        if !self.meta.access_keys_of(account, Some(&u.name)).await?.is_empty() {
            return Err(Error::DeleteConflict("Cannot delete entity, must delete access keys first.".into()));
        }
        let owner = Owner::User(&u.name);
        if !self.meta.inline_policy_names(account, owner).await?.is_empty()
            || !self.meta.attached_policies(account, owner).await?.is_empty()
        {
            return Err(Error::DeleteConflict("Cannot delete entity, must delete policies first.".into()));
        }
        if !self.meta.groups_of_user(account, &u.name).await?.is_empty() {
            return Err(Error::DeleteConflict("Cannot delete entity, must remove users from group first.".into()));
        }
        self.meta.delete_user(account, &u.name).await?;
        self.changed().await;
        Ok(())
    }

    /// Create an access key for a user (or the root with `None`), within the two-key quota.
    pub async fn create_user_access_key(&self, account: &str, user: Option<&str>) -> Result<(Credentials, AccessKey)> {
        let user = match user {
            Some(n) => Some(self.get_user(account, n).await?.name),
            None => None,
        };
        if self.meta.access_keys_of(account, user.as_deref()).await?.len() >= MAX_ACCESS_KEYS {
            return Err(Error::LimitExceeded(format!("Cannot exceed quota for AccessKeysPerUser: {MAX_ACCESS_KEYS}")));
        }
        let creds = self.create_access_key(account, user.as_deref(), None).await?;
        let key = self
            .meta
            .access_key(&creds.access_key_id)
            .await?
            .ok_or_else(|| Error::Internal("a created access key is missing".into()))?;
        Ok((creds, key))
    }

    /// Access keys of a user (or the root).
    pub async fn list_access_keys(&self, account: &str, user: Option<&str>) -> Result<Vec<AccessKey>> {
        let user = match user {
            Some(n) => Some(self.get_user(account, n).await?.name),
            None => None,
        };
        Ok(self.meta.access_keys_of(account, user.as_deref()).await?)
    }

    async fn owned_key(&self, account: &str, user: Option<&str>, key_id: &str) -> Result<AccessKey> {
        let user = match user {
            Some(n) => Some(self.get_user(account, n).await?.name),
            None => None,
        };
        let k = self.meta.access_key(key_id).await?;
        match k {
            Some(k)
                if k.account_id == account
                    && k.user_name.as_deref().map(str::to_lowercase) == user.as_deref().map(str::to_lowercase) =>
            {
                Ok(k)
            }
            _ => Err(Error::NoSuchEntity(format!("The Access Key with id {key_id} cannot be found."))),
        }
    }

    /// Activate or deactivate an access key (`Active` / `Inactive`).
    pub async fn update_access_key(&self, account: &str, user: Option<&str>, key_id: &str, status: &str) -> Result<()> {
        if status != "Active" && status != "Inactive" {
            return Err(Error::Validation(format!(
                "1 validation error detected: Value '{status}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]"
            )));
        }
        let k = self.owned_key(account, user, key_id).await?;
        self.meta.set_access_key_status(&k.access_key_id, status).await?;
        self.forget_credentials();
        self.changed().await;
        Ok(())
    }

    /// Delete an access key.
    pub async fn delete_user_access_key(&self, account: &str, user: Option<&str>, key_id: &str) -> Result<()> {
        let k = self.owned_key(account, user, key_id).await?;
        self.meta.delete_access_key(&k.access_key_id).await?;
        self.forget_credentials();
        self.changed().await;
        Ok(())
    }

    /// The user or group a policy belongs to, checked to exist; returns its name as created.
    async fn owner_name(&self, account: &str, owner: Owner<'_>) -> Result<String> {
        match owner {
            Owner::User(n) => Ok(self.get_user(account, n).await?.name),
            Owner::Group(n) => Ok(self.get_group(account, n).await?.name),
            Owner::Role(n) => Ok(self.get_role(account, n).await?.name),
        }
    }

    /// Create or replace an inline policy of a user or group.
    pub async fn put_inline_policy(&self, account: &str, owner: Owner<'_>, name: &str, document: &str) -> Result<()> {
        check_name("policyName", name, 128)?;
        let owner_name = self.owner_name(account, owner).await?;
        let (kind, _) = owner_label(owner);
        let max = match kind {
            "user" => MAX_USER_POLICY,
            "role" => MAX_ROLE_POLICY,
            _ => MAX_GROUP_POLICY,
        };
        if policy_size(document) > max {
            return Err(Error::LimitExceeded(format!(
                "Maximum policy size of {max} bytes exceeded for {kind} {owner_name}"
            )));
        }
        Self::parse_identity_policy(document)?;
        let owner = match owner {
            Owner::User(_) => Owner::User(&owner_name),
            Owner::Group(_) => Owner::Group(&owner_name),
            Owner::Role(_) => Owner::Role(&owner_name),
        };
        self.meta.put_inline_policy(account, owner, name, document).await?;
        self.changed().await;
        Ok(())
    }

    /// An inline policy's document.
    pub async fn get_inline_policy(&self, account: &str, owner: Owner<'_>, name: &str) -> Result<(String, String)> {
        let owner_name = self.owner_name(account, owner).await?;
        let (kind, _) = owner_label(owner);
        let doc = self
            .meta
            .inline_policy(account, owner, name)
            .await?
            .ok_or_else(|| Error::NoSuchEntity(format!("The {kind} policy with name {name} cannot be found.")))?;
        Ok((owner_name, doc))
    }

    /// Names of the inline policies of a user or group.
    pub async fn list_inline_policies(&self, account: &str, owner: Owner<'_>) -> Result<Vec<String>> {
        self.owner_name(account, owner).await?;
        Ok(self.meta.inline_policy_names(account, owner).await?)
    }

    /// Delete an inline policy.
    pub async fn delete_inline_policy(&self, account: &str, owner: Owner<'_>, name: &str) -> Result<()> {
        self.owner_name(account, owner).await?;
        let (kind, _) = owner_label(owner);
        if !self.meta.delete_inline_policy(account, owner, name).await? {
            return Err(Error::NoSuchEntity(format!("The {kind} policy with name {name} cannot be found.")));
        }
        self.changed().await;
        Ok(())
    }

    /// Create a customer managed policy.
    pub async fn create_policy(
        &self,
        account: &str,
        name: &str,
        path: Option<&str>,
        document: &str,
        description: Option<&str>,
    ) -> Result<PolicyInfo> {
        check_name("policyName", name, 128)?;
        let path = path.unwrap_or("/");
        check_path(path)?;
        if policy_size(document) > MAX_MANAGED_POLICY {
            return Err(Error::LimitExceeded(format!("Cannot exceed quota for PolicySize: {MAX_MANAGED_POLICY}")));
        }
        Self::parse_identity_policy(document)?;
        let now = self.now();
        let p = ManagedPolicy {
            account_id: account.to_string(),
            name: name.to_string(),
            id: Self::new_id("ANPA"),
            path: path.to_string(),
            arn: format!("arn:aws:iam::{account}:policy{path}{name}"),
            document: document.to_string(),
            description: description.map(str::to_string),
            created_at: now,
            updated_at: now,
        };
        if !self.meta.create_managed_policy(&p).await? {
            return Err(Error::EntityAlreadyExists(format!(
                "A policy called {name} already exists. Duplicate names are not allowed."
            )));
        }
        self.changed().await;
        Ok(PolicyInfo::customer(p, 0))
    }

    /// A managed policy (customer managed in `account`, or AWS managed) by ARN.
    pub async fn get_policy(&self, account: &str, arn: &str) -> Result<PolicyInfo> {
        let missing = || Error::NoSuchEntity(format!("Policy {arn} does not exist or is not attachable."));
        if let Some(name) = arn.strip_prefix("arn:aws:iam::aws:policy/") {
            let (n, d, doc) = AWS_MANAGED.iter().find(|(n, _, _)| *n == name).ok_or_else(missing)?;
            let mut info = aws_managed_info(n, d, doc);
            info.attachment_count = self.meta.policy_attachment_count(arn).await?;
            return Ok(info);
        }
        let p = self.meta.managed_policy(arn).await?.filter(|p| p.account_id == account).ok_or_else(missing)?;
        let attachment_count = self.meta.policy_attachment_count(arn).await?;
        Ok(PolicyInfo::customer(p, attachment_count))
    }

    /// Managed policies: `scope` `Local` (the account's), `AWS` or `All` (default).
    pub async fn list_policies(
        &self,
        account: &str,
        scope: Option<&str>,
        only_attached: bool,
        path_prefix: Option<&str>,
        marker: Option<&str>,
        max: Option<u32>,
    ) -> Result<Page<PolicyInfo>> {
        let limit = max_items(max)?;
        let after = decode_marker(marker)?;
        let prefix = path_prefix.unwrap_or("/");
        let scope = scope.unwrap_or("All");
        if !matches!(scope, "All" | "AWS" | "Local") {
            return Err(Error::Validation(format!(
                "1 validation error detected: Value '{scope}' at 'scope' failed to satisfy constraint: Member must satisfy enum value set: [All, AWS, Local]"
            )));
        }
        // Order: AWS managed first ("0aws:" keys sort before the "1<name>" keys of local ones).
        // Collect one more than the page to know whether more follow; with OnlyAttached, keep
        // reading past unattached policies until the page is full or none are left.
        let mut out: Vec<(String, PolicyInfo)> = Vec::new();
        let full = |out: &Vec<(String, PolicyInfo)>| out.len() > limit as usize;
        if scope != "Local" && prefix == "/" {
            for (n, d, doc) in AWS_MANAGED {
                let key = format!("0aws:{}", n.to_lowercase());
                if full(&out) || key.as_str() <= after.as_str() {
                    continue;
                }
                let mut info = aws_managed_info(n, d, doc);
                info.attachment_count = self.meta.policy_attachment_count(&info.arn).await?;
                if !only_attached || info.attachment_count > 0 {
                    out.push((key, info));
                }
            }
        }
        if scope != "AWS" {
            let mut cursor = after.strip_prefix('1').unwrap_or("").to_string();
            while !full(&out) {
                let batch = self.meta.list_managed_policies(account, prefix, &cursor, limit + 1).await?;
                let exhausted = batch.len() <= limit as usize;
                for p in batch {
                    cursor = p.name.to_lowercase();
                    let attachment_count = self.meta.policy_attachment_count(&p.arn).await?;
                    if only_attached && attachment_count == 0 {
                        continue;
                    }
                    out.push((format!("1{cursor}"), PolicyInfo::customer(p, attachment_count)));
                    if full(&out) {
                        break;
                    }
                }
                if exhausted {
                    break;
                }
            }
        }
        let page = paginate(out, limit, |(k, _)| k.clone());
        Ok(Page { items: page.items.into_iter().map(|(_, i)| i).collect(), marker: page.marker })
    }

    /// Delete a customer managed policy that is attached to nothing.
    pub async fn delete_policy(&self, account: &str, arn: &str) -> Result<()> {
        let p = self.get_policy(account, arn).await?;
        if arn.starts_with("arn:aws:iam::aws:") {
            return Err(Error::Denied(format!("Cannot delete AWS managed policy {arn}")));
        }
        if p.attachment_count > 0 {
            return Err(Error::DeleteConflict("Cannot delete a policy attached to entities.".into()));
        }
        self.meta.delete_managed_policy(arn).await?;
        self.changed().await;
        Ok(())
    }

    /// Attach a managed policy to a user or group.
    pub async fn attach_policy(&self, account: &str, owner: Owner<'_>, arn: &str) -> Result<()> {
        let owner_name = self.owner_name(account, owner).await?;
        self.get_policy(account, arn).await?;
        let owner = match owner {
            Owner::User(_) => Owner::User(&owner_name),
            Owner::Group(_) => Owner::Group(&owner_name),
            Owner::Role(_) => Owner::Role(&owner_name),
        };
        let attached = self.meta.attached_policies(account, owner).await?;
        if !attached.iter().any(|a| a == arn) && attached.len() >= MAX_ATTACHED_POLICIES {
            let (kind, _) = owner_label(owner);
            let quota = match kind {
                "user" => "PoliciesPerUser",
                "role" => "PoliciesPerRole",
                _ => "PoliciesPerGroup",
            };
            return Err(Error::LimitExceeded(format!("Cannot exceed quota for {quota}: {MAX_ATTACHED_POLICIES}")));
        }
        self.meta.attach_policy(account, owner, arn).await?;
        self.changed().await;
        Ok(())
    }

    /// Detach a managed policy.
    pub async fn detach_policy(&self, account: &str, owner: Owner<'_>, arn: &str) -> Result<()> {
        self.owner_name(account, owner).await?;
        if !self.meta.detach_policy(account, owner, arn).await? {
            return Err(Error::NoSuchEntity(format!("Policy {arn} was not found.")));
        }
        self.changed().await;
        Ok(())
    }

    /// The managed policies attached to a user or group: (name, ARN).
    pub async fn list_attached_policies(&self, account: &str, owner: Owner<'_>) -> Result<Vec<(String, String)>> {
        self.owner_name(account, owner).await?;
        let arns = self.meta.attached_policies(account, owner).await?;
        Ok(arns.into_iter().map(|a| (a.rsplit('/').next().unwrap_or_default().to_string(), a)).collect())
    }

    /// Create a group.
    pub async fn create_group(&self, account: &str, name: &str, path: Option<&str>) -> Result<IamEntity> {
        check_name("groupName", name, 128)?;
        let path = path.unwrap_or("/");
        check_path(path)?;
        let g = IamEntity {
            account_id: account.to_string(),
            name: name.to_string(),
            id: Self::new_id("AGPA"),
            path: path.to_string(),
            created_at: self.now(),
        };
        if !self.meta.create_group(&g).await? {
            return Err(Error::EntityAlreadyExists(format!("Group with name {name} already exists.")));
        }
        self.changed().await;
        Ok(g)
    }

    /// A group, or `NoSuchEntity`.
    pub async fn get_group(&self, account: &str, name: &str) -> Result<IamEntity> {
        self.meta
            .group(account, name)
            .await?
            .ok_or_else(|| Error::NoSuchEntity(format!("The group with name {name} cannot be found.")))
    }

    /// The users of a group.
    pub async fn group_users(&self, account: &str, name: &str) -> Result<Vec<IamEntity>> {
        let g = self.get_group(account, name).await?;
        Ok(self.meta.group_members(account, &g.name).await?)
    }

    /// Groups by name.
    pub async fn list_groups(
        &self,
        account: &str,
        path_prefix: Option<&str>,
        marker: Option<&str>,
        max: Option<u32>,
    ) -> Result<Page<IamEntity>> {
        let limit = max_items(max)?;
        let after = decode_marker(marker)?;
        let items = self.meta.list_groups(account, path_prefix.unwrap_or("/"), &after, limit + 1).await?;
        Ok(paginate(items, limit, |g| g.name.to_lowercase()))
    }

    /// The groups a user belongs to.
    pub async fn groups_for_user(&self, account: &str, user: &str) -> Result<Vec<IamEntity>> {
        let u = self.get_user(account, user).await?;
        Ok(self.meta.groups_of_user(account, &u.name).await?)
    }

    /// Delete a group without members or policies.
    pub async fn delete_group(&self, account: &str, name: &str) -> Result<()> {
        let g = self.get_group(account, name).await?;
        if !self.meta.group_members(account, &g.name).await?.is_empty() {
            return Err(Error::DeleteConflict("Cannot delete entity, must remove users from group first.".into()));
        }
        let owner = Owner::Group(&g.name);
        if !self.meta.inline_policy_names(account, owner).await?.is_empty()
            || !self.meta.attached_policies(account, owner).await?.is_empty()
        {
            return Err(Error::DeleteConflict("Cannot delete entity, must delete policies first.".into()));
        }
        self.meta.delete_group(account, &g.name).await?;
        self.changed().await;
        Ok(())
    }

    /// Add a user to a group.
    pub async fn add_user_to_group(&self, account: &str, group: &str, user: &str) -> Result<()> {
        let g = self.get_group(account, group).await?;
        let u = self.get_user(account, user).await?;
        self.meta.add_group_member(account, &g.name, &u.name).await?;
        self.changed().await;
        Ok(())
    }

    /// Remove a user from a group.
    pub async fn remove_user_from_group(&self, account: &str, group: &str, user: &str) -> Result<()> {
        let g = self.get_group(account, group).await?;
        let u = self.get_user(account, user).await?;
        if !self.meta.remove_group_member(account, &g.name, &u.name).await? {
            return Err(Error::NoSuchEntity(format!("The user with name {user} cannot be found in group {group}.")));
        }
        self.changed().await;
        Ok(())
    }
}
