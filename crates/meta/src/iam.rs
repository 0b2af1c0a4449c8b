//! IAM identities (users, groups), their policies, resource policies and the authorization epoch.
//!
//! Names of users, groups and managed policies are unique per account without regard to case,
//! as in IAM; lookups take any case and return the name as created. Every change that can alter
//! an authorization decision bumps the authorization epoch in the same transaction, so nodes can
//! tell when their cached policy inputs are stale.

use crate::{AccessKey, Namespace, Result};
use async_trait::async_trait;

/// A user or a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamEntity {
    pub account_id: String,
    pub name: String,
    /// `AIDA...` for users, `AGPA...` for groups.
    pub id: String,
    /// `/` or `/a/b/`.
    pub path: String,
    pub created_at: i64,
}

/// A customer managed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedPolicy {
    pub account_id: String,
    pub name: String,
    /// `ANPA...`.
    pub id: String,
    pub path: String,
    pub arn: String,
    pub document: String,
    pub description: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The user, group or role a policy is attached to or embedded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    User(&'a str),
    Group(&'a str),
    Role(&'a str),
}

impl Owner<'_> {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Owner::User(_) => "user",
            Owner::Group(_) => "group",
            Owner::Role(_) => "role",
        }
    }

    pub(crate) fn key(&self) -> String {
        match self {
            Owner::User(n) | Owner::Group(n) | Owner::Role(n) => n.to_lowercase(),
        }
    }
}

/// One policy that applies to a user: its document, or only the ARN of an attached policy the
/// database does not hold (AWS managed policies, resolved by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityPolicy {
    pub document: Option<String>,
    pub arn: Option<String>,
}

/// Storage of IAM entities and of the policies that authorize requests.
#[async_trait]
pub trait IamStore: Send + Sync + 'static {
    /// The authorization epoch: it changes whenever any policy, user, group, membership, access
    /// key status or repository resource tag changes.
    async fn auth_epoch(&self) -> Result<i64>;
    /// Move the epoch on (for changes stored outside this trait, e.g. resource tags).
    async fn bump_auth_epoch(&self) -> Result<()>;

    /// Create a user; `false` when the name is taken.
    async fn create_user(&self, u: &IamEntity) -> Result<bool>;
    /// A user by name (any case).
    async fn user(&self, account_id: &str, name: &str) -> Result<Option<IamEntity>>;
    /// Users whose path starts with `path_prefix`, by name, after `after` (a lower-cased name).
    async fn list_users(&self, account_id: &str, path_prefix: &str, after: &str, limit: u32) -> Result<Vec<IamEntity>>;
    /// Delete a user; `false` when absent. The caller checks it owns nothing first.
    async fn delete_user(&self, account_id: &str, name: &str) -> Result<bool>;

    /// Create a group; `false` when the name is taken.
    async fn create_group(&self, g: &IamEntity) -> Result<bool>;
    /// A group by name (any case).
    async fn group(&self, account_id: &str, name: &str) -> Result<Option<IamEntity>>;
    /// Groups whose path starts with `path_prefix`, by name, after `after`.
    async fn list_groups(&self, account_id: &str, path_prefix: &str, after: &str, limit: u32)
    -> Result<Vec<IamEntity>>;
    /// Delete a group; `false` when absent.
    async fn delete_group(&self, account_id: &str, name: &str) -> Result<bool>;
    /// Add a user to a group (no error when already a member).
    async fn add_group_member(&self, account_id: &str, group: &str, user: &str) -> Result<()>;
    /// Remove a user from a group; `false` when not a member.
    async fn remove_group_member(&self, account_id: &str, group: &str, user: &str) -> Result<bool>;
    /// The groups a user belongs to, by name.
    async fn groups_of_user(&self, account_id: &str, user: &str) -> Result<Vec<IamEntity>>;
    /// The users of a group, by name.
    async fn group_members(&self, account_id: &str, group: &str) -> Result<Vec<IamEntity>>;

    /// Create or replace an inline policy.
    async fn put_inline_policy(&self, account_id: &str, owner: Owner<'_>, name: &str, document: &str) -> Result<()>;
    /// An inline policy's document.
    async fn inline_policy(&self, account_id: &str, owner: Owner<'_>, name: &str) -> Result<Option<String>>;
    /// Names of an owner's inline policies, sorted.
    async fn inline_policy_names(&self, account_id: &str, owner: Owner<'_>) -> Result<Vec<String>>;
    /// Delete an inline policy; `false` when absent.
    async fn delete_inline_policy(&self, account_id: &str, owner: Owner<'_>, name: &str) -> Result<bool>;

    /// Create a managed policy; `false` when the name is taken.
    async fn create_managed_policy(&self, p: &ManagedPolicy) -> Result<bool>;
    /// A managed policy by ARN.
    async fn managed_policy(&self, arn: &str) -> Result<Option<ManagedPolicy>>;
    /// Managed policies of an account whose path starts with `path_prefix`, by name, after `after`.
    async fn list_managed_policies(
        &self,
        account_id: &str,
        path_prefix: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<ManagedPolicy>>;
    /// Delete a managed policy; `false` when absent. The caller checks it is not attached.
    async fn delete_managed_policy(&self, arn: &str) -> Result<bool>;
    /// Attach a policy (no error when attached already).
    async fn attach_policy(&self, account_id: &str, owner: Owner<'_>, arn: &str) -> Result<()>;
    /// Detach a policy; `false` when it was not attached.
    async fn detach_policy(&self, account_id: &str, owner: Owner<'_>, arn: &str) -> Result<bool>;
    /// ARNs of the policies attached to an owner, sorted.
    async fn attached_policies(&self, account_id: &str, owner: Owner<'_>) -> Result<Vec<String>>;
    /// How many users and groups a policy is attached to.
    async fn policy_attachment_count(&self, arn: &str) -> Result<i64>;
    /// Every policy that applies to a user: inline and attached, of the user and its groups.
    async fn identity_policies(&self, account_id: &str, user: &str) -> Result<Vec<IdentityPolicy>>;

    /// Access keys of an account's root (`user` `None`) or of a user, oldest first.
    async fn access_keys_of(&self, account_id: &str, user: Option<&str>) -> Result<Vec<AccessKey>>;
    /// Set a key's status (`Active`/`Inactive`); `false` when absent.
    async fn set_access_key_status(&self, access_key_id: &str, status: &str) -> Result<bool>;
    /// Delete an access key; `false` when absent.
    async fn delete_access_key(&self, access_key_id: &str) -> Result<bool>;

    /// A repository's policy.
    async fn repository_policy(&self, repo_id: i64) -> Result<Option<String>>;
    /// Set (`Some`) or delete (`None`) a repository's policy; `false` when deleting an absent one.
    async fn set_repository_policy(&self, repo_id: i64, document: Option<&str>, now: i64) -> Result<bool>;
    /// A registry's policy.
    async fn registry_policy(&self, ns: &Namespace) -> Result<Option<String>>;
    /// Set or delete a registry's policy; `false` when deleting an absent one.
    async fn set_registry_policy(&self, ns: &Namespace, document: Option<&str>, now: i64) -> Result<bool>;
}

/// Implement [`IamStore`] for `$store` on database `$db` with row type `$row` (portable SQL).
macro_rules! portable_iam {
    ($store:ty, $db:ty, $row:ty) => {
        async fn bump(tx: &mut Transaction<'static, $db>) -> Result<()> {
            sqlx::query("UPDATE auth_epoch SET epoch = epoch + 1 WHERE id = 1").execute(&mut **tx).await?;
            Ok(())
        }

        /// Run one statement and bump the epoch in the same transaction; rows affected.
        macro_rules! write_bumping {
            ($self:ident, $q:expr) => {{
                let mut tx = $self.begin().await?;
                let n = $q.execute(&mut *tx).await?.rows_affected();
                if n > 0 {
                    bump(&mut tx).await?;
                }
                tx.commit().await?;
                n
            }};
        }

        fn entity(r: $row) -> IamEntity {
            IamEntity { account_id: r.get(0), name: r.get(1), id: r.get(2), path: r.get(3), created_at: r.get(4) }
        }

        fn managed(r: $row) -> ManagedPolicy {
            ManagedPolicy {
                account_id: r.get(0),
                name: r.get(1),
                id: r.get(2),
                path: r.get(3),
                arn: r.get(4),
                document: r.get(5),
                description: r.get(6),
                created_at: r.get(7),
                updated_at: r.get(8),
            }
        }

        fn access_key_row(r: $row) -> AccessKey {
            AccessKey {
                access_key_id: r.get(0),
                account_id: r.get(1),
                user_name: r.get(2),
                secret_enc: r.get(3),
                status: r.get(4),
                created_at: r.get(5),
            }
        }

        #[async_trait]
        impl IamStore for $store {
            async fn auth_epoch(&self) -> Result<i64> {
                Ok(sqlx::query("SELECT epoch FROM auth_epoch WHERE id = 1").fetch_one(&self.read).await?.get(0))
            }

            async fn bump_auth_epoch(&self) -> Result<()> {
                let mut tx = self.begin().await?;
                bump(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn create_user(&self, u: &IamEntity) -> Result<bool> {
                let n = write_bumping!(
                    self,
                    sqlx::query(
                        "INSERT INTO iam_users (account_id, name_key, user_name, user_id, path, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    )
                    .bind(&u.account_id)
                    .bind(u.name.to_lowercase())
                    .bind(&u.name)
                    .bind(&u.id)
                    .bind(&u.path)
                    .bind(u.created_at)
                );
                Ok(n > 0)
            }

            async fn user(&self, account_id: &str, name: &str) -> Result<Option<IamEntity>> {
                let r = sqlx::query(
                    "SELECT account_id, user_name, user_id, path, created_at FROM iam_users \
                     WHERE account_id = $1 AND name_key = $2",
                )
                .bind(account_id)
                .bind(name.to_lowercase())
                .fetch_optional(&self.read)
                .await?;
                Ok(r.map(entity))
            }

            async fn list_users(
                &self,
                account_id: &str,
                path_prefix: &str,
                after: &str,
                limit: u32,
            ) -> Result<Vec<IamEntity>> {
                let rows = sqlx::query(
                    "SELECT account_id, user_name, user_id, path, created_at FROM iam_users \
                     WHERE account_id = $1 AND name_key > $2 AND substr(path, 1, CAST($3 AS INTEGER)) = $4 \
                     ORDER BY name_key LIMIT $5",
                )
                .bind(account_id)
                .bind(after)
                .bind(path_prefix.chars().count() as i64)
                .bind(path_prefix)
                .bind(limit as i64)
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(entity).collect())
            }

            async fn delete_user(&self, account_id: &str, name: &str) -> Result<bool> {
                let n = write_bumping!(
                    self,
                    sqlx::query("DELETE FROM iam_users WHERE account_id = $1 AND name_key = $2")
                        .bind(account_id)
                        .bind(name.to_lowercase())
                );
                Ok(n > 0)
            }

            async fn create_group(&self, g: &IamEntity) -> Result<bool> {
                let n = write_bumping!(
                    self,
                    sqlx::query(
                        "INSERT INTO iam_groups (account_id, name_key, group_name, group_id, path, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    )
                    .bind(&g.account_id)
                    .bind(g.name.to_lowercase())
                    .bind(&g.name)
                    .bind(&g.id)
                    .bind(&g.path)
                    .bind(g.created_at)
                );
                Ok(n > 0)
            }

            async fn group(&self, account_id: &str, name: &str) -> Result<Option<IamEntity>> {
                let r = sqlx::query(
                    "SELECT account_id, group_name, group_id, path, created_at FROM iam_groups \
                     WHERE account_id = $1 AND name_key = $2",
                )
                .bind(account_id)
                .bind(name.to_lowercase())
                .fetch_optional(&self.read)
                .await?;
                Ok(r.map(entity))
            }

            async fn list_groups(
                &self,
                account_id: &str,
                path_prefix: &str,
                after: &str,
                limit: u32,
            ) -> Result<Vec<IamEntity>> {
                let rows = sqlx::query(
                    "SELECT account_id, group_name, group_id, path, created_at FROM iam_groups \
                     WHERE account_id = $1 AND name_key > $2 AND substr(path, 1, CAST($3 AS INTEGER)) = $4 \
                     ORDER BY name_key LIMIT $5",
                )
                .bind(account_id)
                .bind(after)
                .bind(path_prefix.chars().count() as i64)
                .bind(path_prefix)
                .bind(limit as i64)
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(entity).collect())
            }

            async fn delete_group(&self, account_id: &str, name: &str) -> Result<bool> {
                let n = write_bumping!(
                    self,
                    sqlx::query("DELETE FROM iam_groups WHERE account_id = $1 AND name_key = $2")
                        .bind(account_id)
                        .bind(name.to_lowercase())
                );
                Ok(n > 0)
            }

            async fn add_group_member(&self, account_id: &str, group: &str, user: &str) -> Result<()> {
                write_bumping!(
                    self,
                    sqlx::query(
                        "INSERT INTO iam_group_members (account_id, group_key, user_key) VALUES ($1, $2, $3) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(account_id)
                    .bind(group.to_lowercase())
                    .bind(user.to_lowercase())
                );
                Ok(())
            }

            async fn remove_group_member(&self, account_id: &str, group: &str, user: &str) -> Result<bool> {
                let n = write_bumping!(
                    self,
                    sqlx::query(
                        "DELETE FROM iam_group_members WHERE account_id = $1 AND group_key = $2 AND user_key = $3",
                    )
                    .bind(account_id)
                    .bind(group.to_lowercase())
                    .bind(user.to_lowercase())
                );
                Ok(n > 0)
            }

            async fn groups_of_user(&self, account_id: &str, user: &str) -> Result<Vec<IamEntity>> {
                let rows = sqlx::query(
                    "SELECT g.account_id, g.group_name, g.group_id, g.path, g.created_at FROM iam_group_members m \
                     JOIN iam_groups g ON g.account_id = m.account_id AND g.name_key = m.group_key \
                     WHERE m.account_id = $1 AND m.user_key = $2 ORDER BY g.name_key",
                )
                .bind(account_id)
                .bind(user.to_lowercase())
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(entity).collect())
            }

            async fn group_members(&self, account_id: &str, group: &str) -> Result<Vec<IamEntity>> {
                let rows = sqlx::query(
                    "SELECT u.account_id, u.user_name, u.user_id, u.path, u.created_at FROM iam_group_members m \
                     JOIN iam_users u ON u.account_id = m.account_id AND u.name_key = m.user_key \
                     WHERE m.account_id = $1 AND m.group_key = $2 ORDER BY u.name_key",
                )
                .bind(account_id)
                .bind(group.to_lowercase())
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(entity).collect())
            }

            async fn put_inline_policy(
                &self,
                account_id: &str,
                owner: Owner<'_>,
                name: &str,
                document: &str,
            ) -> Result<()> {
                write_bumping!(
                    self,
                    sqlx::query(
                        "INSERT INTO iam_inline_policies (account_id, owner_kind, owner_key, policy_name, document) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id, owner_kind, owner_key, policy_name) \
                         DO UPDATE SET document = excluded.document",
                    )
                    .bind(account_id)
                    .bind(owner.kind())
                    .bind(owner.key())
                    .bind(name)
                    .bind(document)
                );
                Ok(())
            }

            async fn inline_policy(&self, account_id: &str, owner: Owner<'_>, name: &str) -> Result<Option<String>> {
                let r = sqlx::query(
                    "SELECT document FROM iam_inline_policies \
                     WHERE account_id = $1 AND owner_kind = $2 AND owner_key = $3 AND policy_name = $4",
                )
                .bind(account_id)
                .bind(owner.kind())
                .bind(owner.key())
                .bind(name)
                .fetch_optional(&self.read)
                .await?;
                Ok(r.map(|r| r.get(0)))
            }

            async fn inline_policy_names(&self, account_id: &str, owner: Owner<'_>) -> Result<Vec<String>> {
                let rows = sqlx::query(
                    "SELECT policy_name FROM iam_inline_policies \
                     WHERE account_id = $1 AND owner_kind = $2 AND owner_key = $3 ORDER BY policy_name",
                )
                .bind(account_id)
                .bind(owner.kind())
                .bind(owner.key())
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(|r| r.get(0)).collect())
            }

            async fn delete_inline_policy(&self, account_id: &str, owner: Owner<'_>, name: &str) -> Result<bool> {
                let n = write_bumping!(
                    self,
                    sqlx::query(
                        "DELETE FROM iam_inline_policies \
                         WHERE account_id = $1 AND owner_kind = $2 AND owner_key = $3 AND policy_name = $4",
                    )
                    .bind(account_id)
                    .bind(owner.kind())
                    .bind(owner.key())
                    .bind(name)
                );
                Ok(n > 0)
            }

            async fn create_managed_policy(&self, p: &ManagedPolicy) -> Result<bool> {
                let n = write_bumping!(
                    self,
                    sqlx::query(
                        "INSERT INTO iam_managed_policies (account_id, name_key, policy_name, policy_id, path, arn, \
                         document, description, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
                    )
                    .bind(&p.account_id)
                    .bind(p.name.to_lowercase())
                    .bind(&p.name)
                    .bind(&p.id)
                    .bind(&p.path)
                    .bind(&p.arn)
                    .bind(&p.document)
                    .bind(&p.description)
                    .bind(p.created_at)
                    .bind(p.updated_at)
                );
                Ok(n > 0)
            }

            async fn managed_policy(&self, arn: &str) -> Result<Option<ManagedPolicy>> {
                let r = sqlx::query(
                    "SELECT account_id, policy_name, policy_id, path, arn, document, description, created_at, \
                     updated_at FROM iam_managed_policies WHERE arn = $1",
                )
                    .bind(arn)
                    .fetch_optional(&self.read)
                    .await?;
                Ok(r.map(managed))
            }

            async fn list_managed_policies(
                &self,
                account_id: &str,
                path_prefix: &str,
                after: &str,
                limit: u32,
            ) -> Result<Vec<ManagedPolicy>> {
                let rows = sqlx::query(
                    "SELECT account_id, policy_name, policy_id, path, arn, document, description, created_at, \
                     updated_at FROM iam_managed_policies \
                     WHERE account_id = $1 AND name_key > $2 AND substr(path, 1, CAST($3 AS INTEGER)) = $4 \
                     ORDER BY name_key LIMIT $5",
                )
                .bind(account_id)
                .bind(after)
                .bind(path_prefix.chars().count() as i64)
                .bind(path_prefix)
                .bind(limit as i64)
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(managed).collect())
            }

            async fn delete_managed_policy(&self, arn: &str) -> Result<bool> {
                let n = write_bumping!(self, sqlx::query("DELETE FROM iam_managed_policies WHERE arn = $1").bind(arn));
                Ok(n > 0)
            }

            async fn attach_policy(&self, account_id: &str, owner: Owner<'_>, arn: &str) -> Result<()> {
                write_bumping!(
                    self,
                    sqlx::query(
                        "INSERT INTO iam_attachments (account_id, owner_kind, owner_key, policy_arn) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    )
                    .bind(account_id)
                    .bind(owner.kind())
                    .bind(owner.key())
                    .bind(arn)
                );
                Ok(())
            }

            async fn detach_policy(&self, account_id: &str, owner: Owner<'_>, arn: &str) -> Result<bool> {
                let n = write_bumping!(
                    self,
                    sqlx::query(
                        "DELETE FROM iam_attachments \
                         WHERE account_id = $1 AND owner_kind = $2 AND owner_key = $3 AND policy_arn = $4",
                    )
                    .bind(account_id)
                    .bind(owner.kind())
                    .bind(owner.key())
                    .bind(arn)
                );
                Ok(n > 0)
            }

            async fn attached_policies(&self, account_id: &str, owner: Owner<'_>) -> Result<Vec<String>> {
                let rows = sqlx::query(
                    "SELECT policy_arn FROM iam_attachments \
                     WHERE account_id = $1 AND owner_kind = $2 AND owner_key = $3 ORDER BY policy_arn",
                )
                .bind(account_id)
                .bind(owner.kind())
                .bind(owner.key())
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(|r| r.get(0)).collect())
            }

            async fn policy_attachment_count(&self, arn: &str) -> Result<i64> {
                Ok(sqlx::query("SELECT COUNT(*) FROM iam_attachments WHERE policy_arn = $1")
                    .bind(arn)
                    .fetch_one(&self.read)
                    .await?
                    .get(0))
            }

            async fn identity_policies(&self, account_id: &str, user: &str) -> Result<Vec<IdentityPolicy>> {
                let rows = sqlx::query(
                    "SELECT document, CAST(NULL AS TEXT) FROM iam_inline_policies \
                     WHERE account_id = $1 AND owner_kind = 'user' AND owner_key = $2 \
                     UNION ALL \
                     SELECT p.document, CAST(NULL AS TEXT) FROM iam_inline_policies p \
                     JOIN iam_group_members m ON m.account_id = p.account_id AND m.group_key = p.owner_key \
                     WHERE p.account_id = $1 AND p.owner_kind = 'group' AND m.user_key = $2 \
                     UNION ALL \
                     SELECT mp.document, a.policy_arn FROM iam_attachments a \
                     LEFT JOIN iam_managed_policies mp ON mp.arn = a.policy_arn \
                     WHERE a.account_id = $1 AND ((a.owner_kind = 'user' AND a.owner_key = $2) OR \
                     (a.owner_kind = 'group' AND a.owner_key IN \
                      (SELECT group_key FROM iam_group_members WHERE account_id = $1 AND user_key = $2)))",
                )
                .bind(account_id)
                .bind(user.to_lowercase())
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(|r| IdentityPolicy { document: r.get(0), arn: r.get(1) }).collect())
            }

            async fn access_keys_of(&self, account_id: &str, user: Option<&str>) -> Result<Vec<AccessKey>> {
                let rows = sqlx::query(
                    "SELECT access_key_id, account_id, user_name, secret_enc, status, created_at FROM access_keys \
                     WHERE account_id = $1 AND COALESCE(lower(user_name), '') = $2 \
                     ORDER BY created_at, access_key_id",
                )
                .bind(account_id)
                .bind(user.map(str::to_lowercase).unwrap_or_default())
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(access_key_row).collect())
            }

            async fn set_access_key_status(&self, access_key_id: &str, status: &str) -> Result<bool> {
                let n = write_bumping!(
                    self,
                    sqlx::query("UPDATE access_keys SET status = $2 WHERE access_key_id = $1")
                        .bind(access_key_id)
                        .bind(status)
                );
                Ok(n > 0)
            }

            async fn delete_access_key(&self, access_key_id: &str) -> Result<bool> {
                let n = write_bumping!(
                    self,
                    sqlx::query("DELETE FROM access_keys WHERE access_key_id = $1").bind(access_key_id)
                );
                Ok(n > 0)
            }

            async fn repository_policy(&self, repo_id: i64) -> Result<Option<String>> {
                let r = sqlx::query("SELECT document FROM repository_policies WHERE repo_id = $1")
                    .bind(repo_id)
                    .fetch_optional(&self.read)
                    .await?;
                Ok(r.map(|r| r.get(0)))
            }

            async fn set_repository_policy(&self, repo_id: i64, document: Option<&str>, now: i64) -> Result<bool> {
                let mut tx = self.begin().await?;
                let n = match document {
                    Some(d) => sqlx::query(
                        "INSERT INTO repository_policies (repo_id, document) VALUES ($1, $2) \
                         ON CONFLICT (repo_id) DO UPDATE SET document = excluded.document",
                    )
                    .bind(repo_id)
                    .bind(d),
                    None => sqlx::query("DELETE FROM repository_policies WHERE repo_id = $1").bind(repo_id),
                }
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n > 0 {
                    bump(&mut tx).await?;
                    let row = sqlx::query("SELECT account_id, region, name FROM repositories WHERE id = $1")
                        .bind(repo_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    let (account, region, name): (String, String, String) = (row.get(0), row.get(1), row.get(2));
                    let detail = serde_json::json!({"repository-name": name, "action": if document.is_some() { "SET" } else { "DELETE" }});
                    append_event(&mut tx, &account, &region, crate::events::kind::REPOSITORY_POLICY, Some(&name), &detail, now)
                        .await?;
                }
                tx.commit().await?;
                Ok(n > 0)
            }

            async fn registry_policy(&self, ns: &Namespace) -> Result<Option<String>> {
                let r = sqlx::query("SELECT document FROM registry_policies WHERE account_id = $1 AND region = $2")
                    .bind(&ns.account_id)
                    .bind(&ns.region)
                    .fetch_optional(&self.read)
                    .await?;
                Ok(r.map(|r| r.get(0)))
            }

            async fn set_registry_policy(&self, ns: &Namespace, document: Option<&str>, now: i64) -> Result<bool> {
                let mut tx = self.begin().await?;
                let n = match document {
                    Some(d) => sqlx::query(
                        "INSERT INTO registry_policies (account_id, region, document) VALUES ($1, $2, $3) \
                         ON CONFLICT (account_id, region) DO UPDATE SET document = excluded.document",
                    )
                    .bind(&ns.account_id)
                    .bind(&ns.region)
                    .bind(d),
                    None => sqlx::query("DELETE FROM registry_policies WHERE account_id = $1 AND region = $2")
                        .bind(&ns.account_id)
                        .bind(&ns.region),
                }
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n > 0 {
                    bump(&mut tx).await?;
                    let detail = serde_json::json!({"action": if document.is_some() { "SET" } else { "DELETE" }});
                    append_event(&mut tx, &ns.account_id, &ns.region, crate::events::kind::REGISTRY_POLICY, None, &detail, now)
                        .await?;
                }
                tx.commit().await?;
                Ok(n > 0)
            }
        }
    };
}

pub(crate) use portable_iam;
