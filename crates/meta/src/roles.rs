//! IAM roles, OIDC identity providers and the temporary credentials STS issues.
//!
//! Role names are unique per account without regard to case, as user names. A role's inline and
//! attached policies are stored with the users' and groups' ([`crate::IamStore`] with
//! [`crate::Owner::Role`]). Every change to a role moves the authorization epoch, as every IAM
//! change does. Sessions are written once and never change: a session is valid until it
//! expires, as long as its role (or user) and its key material still exist.

use crate::{IdentityPolicy, Result};
use async_trait::async_trait;

/// An IAM role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub account_id: String,
    pub name: String,
    /// `AROA...`.
    pub id: String,
    /// `/` or `/a/b/`.
    pub path: String,
    /// The trust policy (`AssumeRolePolicyDocument`), as given.
    pub trust_policy: String,
    pub description: Option<String>,
    /// Longest session, in seconds (3600..=43200).
    pub max_session_duration: i64,
    /// Tags in the order given.
    pub tags: Vec<(String, String)>,
    pub created_at: i64,
}

impl Role {
    /// `arn:aws:iam::<account>:role<path><name>`.
    pub fn arn(&self) -> String {
        format!("arn:aws:iam::{}:role{}{}", self.account_id, self.path, self.name)
    }
}

/// An OIDC identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcProvider {
    pub account_id: String,
    /// The issuer URL as registered (`https://host[/path]`).
    pub url: String,
    /// `arn:aws:iam::<account>:oidc-provider/<host[/path]>`.
    pub arn: String,
    pub client_ids: Vec<String>,
    pub thumbprints: Vec<String>,
    pub tags: Vec<(String, String)>,
    pub created_at: i64,
}

impl OidcProvider {
    /// The URL without its scheme, as the ARN and the condition keys name the provider.
    pub fn url_key(url: &str) -> String {
        url.strip_prefix("https://").unwrap_or(url).trim_end_matches('/').to_string()
    }
}

/// Temporary credentials issued by STS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsSession {
    /// `ASIA...`.
    pub access_key_id: String,
    pub account_id: String,
    /// `role` (AssumeRole, AssumeRoleWithWebIdentity) or `user` (GetSessionToken).
    pub kind: String,
    /// The role name, or the user name (`None` for the root's GetSessionToken).
    pub principal_name: Option<String>,
    /// The role's or user's unique id at issue time (a role re-created with the same name gets a
    /// new id, and the old sessions stop working).
    pub principal_id: Option<String>,
    pub session_name: String,
    /// The secret access key, sealed under the server key.
    pub secret_enc: String,
    /// Hex SHA-256 of the session token.
    pub token_sha256: String,
    /// Session policies: JSON `{"documents":[...],"arns":[...]}`, `None` when none were given.
    pub policy: Option<String>,
    /// Session tags: JSON object.
    pub tags: String,
    pub source_identity: Option<String>,
    pub created_at: i64,
    /// Epoch milliseconds.
    pub expires_at: i64,
}

/// Storage of roles, OIDC providers and STS sessions.
#[async_trait]
pub trait RoleStore: Send + Sync + 'static {
    /// Create a role; `false` when the name is taken.
    async fn create_role(&self, r: &Role) -> Result<bool>;
    /// A role by name (any case).
    async fn role(&self, account_id: &str, name: &str) -> Result<Option<Role>>;
    /// Roles whose path starts with `path_prefix`, by name, after `after` (a lower-cased name).
    async fn list_roles(&self, account_id: &str, path_prefix: &str, after: &str, limit: u32) -> Result<Vec<Role>>;
    /// Replace a role's mutable fields (trust policy, description, maximum session, tags);
    /// `false` when absent.
    async fn update_role(&self, r: &Role) -> Result<bool>;
    /// Delete a role; `false` when absent. The caller checks it has no policies first.
    async fn delete_role(&self, account_id: &str, name: &str) -> Result<bool>;
    /// The policies of a role: inline and attached.
    async fn role_policies(&self, account_id: &str, role: &str) -> Result<Vec<IdentityPolicy>>;

    /// Create an OIDC provider; `false` when the account has one for that URL.
    async fn create_oidc_provider(&self, p: &OidcProvider) -> Result<bool>;
    /// A provider by ARN.
    async fn oidc_provider(&self, arn: &str) -> Result<Option<OidcProvider>>;
    /// An account's providers, by URL.
    async fn list_oidc_providers(&self, account_id: &str) -> Result<Vec<OidcProvider>>;
    /// Replace a provider's client ids, thumbprints and tags; `false` when absent.
    async fn update_oidc_provider(&self, p: &OidcProvider) -> Result<bool>;
    /// Delete a provider; `false` when absent.
    async fn delete_oidc_provider(&self, arn: &str) -> Result<bool>;

    /// Record a session, and forget sessions that expired before `purge_before`.
    async fn put_session(&self, s: &StsSession, purge_before: i64) -> Result<()>;
    /// A session by access key id (expired ones too, until purged).
    async fn session(&self, access_key_id: &str) -> Result<Option<StsSession>>;
}

pub(crate) fn tags_to_json(tags: &[(String, String)]) -> String {
    serde_json::Value::Array(tags.iter().map(|(k, v)| serde_json::json!({"Key": k, "Value": v})).collect::<Vec<_>>())
        .to_string()
}

pub(crate) fn tags_from_json(s: &str) -> Vec<(String, String)> {
    serde_json::from_str::<Vec<serde_json::Value>>(s)
        .unwrap_or_default()
        .iter()
        .filter_map(|t| Some((t["Key"].as_str()?.to_string(), t["Value"].as_str()?.to_string())))
        .collect()
}

pub(crate) fn strings_from_json(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

/// Implement [`RoleStore`] for `$store` on database `$db` with row type `$row` (portable SQL).
/// Invoke it after `portable_iam!`: its `write_bumping!` moves the authorization epoch in the
/// transaction of each change.
macro_rules! portable_roles {
    ($store:ty, $db:ty, $row:ty) => {
        const ROLE_COLUMNS: &str = "account_id, role_name, role_id, path, trust_policy, description, \
                                    max_session_duration, tags, created_at";

        fn role_row(r: $row) -> crate::roles::Role {
            crate::roles::Role {
                account_id: r.get(0),
                name: r.get(1),
                id: r.get(2),
                path: r.get(3),
                trust_policy: r.get(4),
                description: r.get(5),
                max_session_duration: r.get(6),
                tags: crate::roles::tags_from_json(&r.get::<String, _>(7)),
                created_at: r.get(8),
            }
        }

        fn oidc_row(r: $row) -> crate::roles::OidcProvider {
            crate::roles::OidcProvider {
                account_id: r.get(0),
                url: r.get(1),
                arn: r.get(2),
                client_ids: crate::roles::strings_from_json(&r.get::<String, _>(3)),
                thumbprints: crate::roles::strings_from_json(&r.get::<String, _>(4)),
                tags: crate::roles::tags_from_json(&r.get::<String, _>(5)),
                created_at: r.get(6),
            }
        }

        #[async_trait]
        impl crate::roles::RoleStore for $store {
            async fn create_role(&self, r: &crate::roles::Role) -> Result<bool> {
                let n = write_bumping!(
                    self,
                    sqlx::query(
                        "INSERT INTO iam_roles (account_id, name_key, role_name, role_id, path, trust_policy, \
                         description, max_session_duration, tags, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
                    )
                    .bind(&r.account_id)
                    .bind(r.name.to_lowercase())
                    .bind(&r.name)
                    .bind(&r.id)
                    .bind(&r.path)
                    .bind(&r.trust_policy)
                    .bind(&r.description)
                    .bind(r.max_session_duration)
                    .bind(crate::roles::tags_to_json(&r.tags))
                    .bind(r.created_at)
                );
                Ok(n > 0)
            }

            async fn role(&self, account_id: &str, name: &str) -> Result<Option<crate::roles::Role>> {
                let q = format!("SELECT {ROLE_COLUMNS} FROM iam_roles WHERE account_id = $1 AND name_key = $2");
                let r = sqlx::query(sqlx::AssertSqlSafe(q))
                    .bind(account_id)
                    .bind(name.to_lowercase())
                    .fetch_optional(&self.read)
                    .await?;
                Ok(r.map(role_row))
            }

            async fn list_roles(
                &self,
                account_id: &str,
                path_prefix: &str,
                after: &str,
                limit: u32,
            ) -> Result<Vec<crate::roles::Role>> {
                let q = format!(
                    "SELECT {ROLE_COLUMNS} FROM iam_roles WHERE account_id = $1 AND name_key > $2 \
                     AND substr(path, 1, CAST($3 AS INTEGER)) = $4 ORDER BY name_key LIMIT $5"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(q))
                    .bind(account_id)
                    .bind(after)
                    .bind(path_prefix.chars().count() as i64)
                    .bind(path_prefix)
                    .bind(limit as i64)
                    .fetch_all(&self.read)
                    .await?;
                Ok(rows.into_iter().map(role_row).collect())
            }

            async fn update_role(&self, r: &crate::roles::Role) -> Result<bool> {
                let n = write_bumping!(
                    self,
                    sqlx::query(
                        "UPDATE iam_roles SET trust_policy = $3, description = $4, max_session_duration = $5, \
                         tags = $6 WHERE account_id = $1 AND name_key = $2",
                    )
                    .bind(&r.account_id)
                    .bind(r.name.to_lowercase())
                    .bind(&r.trust_policy)
                    .bind(&r.description)
                    .bind(r.max_session_duration)
                    .bind(crate::roles::tags_to_json(&r.tags))
                );
                Ok(n > 0)
            }

            async fn delete_role(&self, account_id: &str, name: &str) -> Result<bool> {
                let n = write_bumping!(
                    self,
                    sqlx::query("DELETE FROM iam_roles WHERE account_id = $1 AND name_key = $2")
                        .bind(account_id)
                        .bind(name.to_lowercase())
                );
                Ok(n > 0)
            }

            async fn role_policies(&self, account_id: &str, role: &str) -> Result<Vec<crate::IdentityPolicy>> {
                let rows = sqlx::query(
                    "SELECT document, CAST(NULL AS TEXT) FROM iam_inline_policies \
                     WHERE account_id = $1 AND owner_kind = 'role' AND owner_key = $2 \
                     UNION ALL \
                     SELECT mp.document, a.policy_arn FROM iam_attachments a \
                     LEFT JOIN iam_managed_policies mp ON mp.arn = a.policy_arn \
                     WHERE a.account_id = $1 AND a.owner_kind = 'role' AND a.owner_key = $2",
                )
                .bind(account_id)
                .bind(role.to_lowercase())
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(|r| crate::IdentityPolicy { document: r.get(0), arn: r.get(1) }).collect())
            }

            async fn create_oidc_provider(&self, p: &crate::roles::OidcProvider) -> Result<bool> {
                let n = write_bumping!(
                    self,
                    sqlx::query(
                        "INSERT INTO iam_oidc_providers (account_id, url_key, arn, url, client_ids, thumbprints, \
                         tags, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                    )
                    .bind(&p.account_id)
                    .bind(crate::roles::OidcProvider::url_key(&p.url).to_lowercase())
                    .bind(&p.arn)
                    .bind(&p.url)
                    .bind(serde_json::to_string(&p.client_ids).unwrap_or_default())
                    .bind(serde_json::to_string(&p.thumbprints).unwrap_or_default())
                    .bind(crate::roles::tags_to_json(&p.tags))
                    .bind(p.created_at)
                );
                Ok(n > 0)
            }

            async fn oidc_provider(&self, arn: &str) -> Result<Option<crate::roles::OidcProvider>> {
                let r = sqlx::query(
                    "SELECT account_id, url, arn, client_ids, thumbprints, tags, created_at \
                     FROM iam_oidc_providers WHERE arn = $1",
                )
                .bind(arn)
                .fetch_optional(&self.read)
                .await?;
                Ok(r.map(oidc_row))
            }

            async fn list_oidc_providers(&self, account_id: &str) -> Result<Vec<crate::roles::OidcProvider>> {
                let rows = sqlx::query(
                    "SELECT account_id, url, arn, client_ids, thumbprints, tags, created_at \
                     FROM iam_oidc_providers WHERE account_id = $1 ORDER BY url_key",
                )
                .bind(account_id)
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(oidc_row).collect())
            }

            async fn update_oidc_provider(&self, p: &crate::roles::OidcProvider) -> Result<bool> {
                let n = write_bumping!(
                    self,
                    sqlx::query(
                        "UPDATE iam_oidc_providers SET client_ids = $2, thumbprints = $3, tags = $4 WHERE arn = $1",
                    )
                    .bind(&p.arn)
                    .bind(serde_json::to_string(&p.client_ids).unwrap_or_default())
                    .bind(serde_json::to_string(&p.thumbprints).unwrap_or_default())
                    .bind(crate::roles::tags_to_json(&p.tags))
                );
                Ok(n > 0)
            }

            async fn delete_oidc_provider(&self, arn: &str) -> Result<bool> {
                let n = write_bumping!(
                    self,
                    sqlx::query("DELETE FROM iam_oidc_providers WHERE arn = $1")
                        .bind(arn)
                );
                Ok(n > 0)
            }

            async fn put_session(&self, s: &crate::roles::StsSession, purge_before: i64) -> Result<()> {
                let mut tx = self.begin().await?;
                sqlx::query("DELETE FROM sts_sessions WHERE expires_at < $1")
                    .bind(purge_before)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO sts_sessions (access_key_id, account_id, kind, principal_name, principal_id, \
                     session_name, secret_enc, token_sha256, policy, tags, source_identity, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(&s.access_key_id)
                .bind(&s.account_id)
                .bind(&s.kind)
                .bind(&s.principal_name)
                .bind(&s.principal_id)
                .bind(&s.session_name)
                .bind(&s.secret_enc)
                .bind(&s.token_sha256)
                .bind(&s.policy)
                .bind(&s.tags)
                .bind(&s.source_identity)
                .bind(s.created_at)
                .bind(s.expires_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn session(&self, access_key_id: &str) -> Result<Option<crate::roles::StsSession>> {
                let r = sqlx::query(
                    "SELECT access_key_id, account_id, kind, principal_name, principal_id, session_name, \
                     secret_enc, token_sha256, policy, tags, source_identity, created_at, expires_at \
                     FROM sts_sessions WHERE access_key_id = $1",
                )
                .bind(access_key_id)
                .fetch_optional(&self.read)
                .await?;
                Ok(r.map(|r| crate::roles::StsSession {
                    access_key_id: r.get(0),
                    account_id: r.get(1),
                    kind: r.get(2),
                    principal_name: r.get(3),
                    principal_id: r.get(4),
                    session_name: r.get(5),
                    secret_enc: r.get(6),
                    token_sha256: r.get(7),
                    policy: r.get(8),
                    tags: r.get(9),
                    source_identity: r.get(10),
                    created_at: r.get(11),
                    expires_at: r.get(12),
                }))
            }
        }
    };
}
pub(crate) use portable_roles;
