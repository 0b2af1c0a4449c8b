//! IAM roles and OIDC identity providers on the Query API.

use super::{Ctx, Out, QueryError, Xml, date, indexed, indexed_tags, list, url_encode};
use berth_meta::{OidcProvider, Owner, Role};
use berth_registry::roles::NewRole;

fn tags_xml(tags: &[(String, String)]) -> String {
    let mut x = Xml::default();
    x.members("Tags", tags, |(k, v)| {
        let mut m = Xml::default();
        m.el("Key", k).el("Value", v);
        m.0
    });
    x.0
}

/// A `Role` element as IAM returns it.
fn role_xml(r: &Role) -> String {
    let mut x = Xml::default();
    x.el("Path", &r.path)
        .el("RoleName", &r.name)
        .el("RoleId", &r.id)
        .el("Arn", &r.arn())
        .el("CreateDate", &date(r.created_at))
        .el("AssumeRolePolicyDocument", &url_encode(&r.trust_policy));
    if let Some(d) = &r.description {
        x.el("Description", d);
    }
    x.el("MaxSessionDuration", &r.max_session_duration.to_string());
    if !r.tags.is_empty() {
        x.0.push_str(&tags_xml(&r.tags));
    }
    x.0
}

impl Ctx<'_> {
    fn int(&self, name: &str) -> Result<Option<i64>, QueryError> {
        match self.opt(name) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| {
                QueryError::validation(format!(
                    "1 validation error detected: Value '{v}' at '{}' failed to satisfy constraint: Member must be a number",
                    super::lower_first(name)
                ))
            }),
        }
    }

    /// The ARN of a role as IAM authorizes actions on it (with its path when it exists).
    async fn role_resource(&self, name: &str) -> String {
        match self.reg.get_role(self.account(), name).await {
            Ok(r) => r.arn(),
            Err(_) => self.arn("role", name),
        }
    }

    pub(super) async fn roles(&self, action: &str, acct: &str) -> Out {
        match action {
            "CreateRole" => {
                if self.opt("PermissionsBoundary").is_some() {
                    return Err(QueryError::validation(
                        "Berth does not support permissions boundaries: the PermissionsBoundary parameter cannot be honoured",
                    ));
                }
                let name = self.req("RoleName")?;
                let path = self.opt("Path").unwrap_or("/");
                self.authorize(action, &format!("arn:aws:iam::{acct}:role{path}{name}")).await?;
                let r = self
                    .reg
                    .create_role(
                        acct,
                        NewRole {
                            name,
                            path: self.opt("Path"),
                            trust_policy: self.req("AssumeRolePolicyDocument")?,
                            description: self.opt("Description"),
                            max_session_duration: self.int("MaxSessionDuration")?,
                            tags: indexed_tags(self.params, "Tags.member."),
                        },
                    )
                    .await?;
                Ok(Some(Xml::default().raw("Role", &role_xml(&r)).0.clone()))
            }
            "GetRole" => {
                let name = self.req("RoleName")?;
                self.authorize(action, &self.role_resource(name).await).await?;
                let r = self.reg.get_role(acct, name).await?;
                Ok(Some(Xml::default().raw("Role", &role_xml(&r)).0.clone()))
            }
            "ListRoles" => {
                self.authorize(action, &self.list_resource("role")).await?;
                let page =
                    self.reg.list_roles(acct, self.opt("PathPrefix"), self.opt("Marker"), self.max_items()?).await?;
                Ok(Some(list(page, "Roles", role_xml)))
            }
            "ListRoleTags" => {
                let name = self.req("RoleName")?;
                self.authorize(action, &self.role_resource(name).await).await?;
                let r = self.reg.get_role(acct, name).await?;
                let mut x = Xml(tags_xml(&r.tags));
                x.page(None);
                Ok(Some(x.0))
            }
            "TagRole" | "UntagRole" => {
                let name = self.req("RoleName")?;
                self.authorize(action, &self.role_resource(name).await).await?;
                if action == "TagRole" {
                    self.reg.tag_role(acct, name, indexed_tags(self.params, "Tags.member.")).await?;
                } else {
                    self.reg.untag_role(acct, name, &indexed(self.params, "TagKeys.member.", "")).await?;
                }
                Ok(None)
            }
            "DeleteRole" => {
                let name = self.req("RoleName")?;
                self.authorize(action, &self.role_resource(name).await).await?;
                self.reg.delete_role(acct, name).await?;
                Ok(None)
            }
            "UpdateAssumeRolePolicy" => {
                let name = self.req("RoleName")?;
                self.authorize(action, &self.role_resource(name).await).await?;
                self.reg.update_assume_role_policy(acct, name, self.req("PolicyDocument")?).await?;
                Ok(None)
            }
            "UpdateRole" => {
                let name = self.req("RoleName")?;
                self.authorize(action, &self.role_resource(name).await).await?;
                self.reg.update_role(acct, name, self.opt("Description"), self.int("MaxSessionDuration")?).await?;
                Ok(Some(String::new()))
            }
            "UpdateRoleDescription" => {
                let name = self.req("RoleName")?;
                self.authorize(action, &self.role_resource(name).await).await?;
                self.reg.update_role(acct, name, Some(self.req("Description")?), None).await?;
                let r = self.reg.get_role(acct, name).await?;
                Ok(Some(Xml::default().raw("Role", &role_xml(&r)).0.clone()))
            }
            "PutRolePolicy" | "GetRolePolicy" | "ListRolePolicies" | "DeleteRolePolicy" => {
                let name = self.req("RoleName")?;
                self.authorize(action, &self.role_resource(name).await).await?;
                self.inline(action, acct, Owner::Role(name), "RoleName").await
            }
            _ => {
                // AttachRolePolicy, DetachRolePolicy, ListAttachedRolePolicies
                let name = self.req("RoleName")?;
                self.authorize(action, &self.role_resource(name).await).await?;
                self.attached(action, acct, Owner::Role(name)).await
            }
        }
    }

    pub(super) async fn oidc_providers(&self, action: &str, acct: &str) -> Out {
        let provider_xml = |p: &OidcProvider| {
            let mut x = Xml::default();
            x.el("Url", &OidcProvider::url_key(&p.url))
                .members("ClientIDList", &p.client_ids, |c| super::esc(c))
                .members("ThumbprintList", &p.thumbprints, |t| super::esc(t))
                .el("CreateDate", &date(p.created_at));
            if !p.tags.is_empty() {
                x.0.push_str(&tags_xml(&p.tags));
            }
            x.0
        };
        match action {
            "CreateOpenIDConnectProvider" => {
                let url = self.req("Url")?;
                let resource = format!("arn:aws:iam::{acct}:oidc-provider/{}", OidcProvider::url_key(url));
                self.authorize(action, &resource).await?;
                let p = self
                    .reg
                    .create_oidc_provider(
                        acct,
                        url,
                        indexed(self.params, "ClientIDList.member.", ""),
                        indexed(self.params, "ThumbprintList.member.", ""),
                        indexed_tags(self.params, "Tags.member."),
                    )
                    .await?;
                let mut x = Xml::default();
                x.el("OpenIDConnectProviderArn", &p.arn);
                if !p.tags.is_empty() {
                    x.0.push_str(&tags_xml(&p.tags));
                }
                Ok(Some(x.0))
            }
            "ListOpenIDConnectProviders" => {
                self.authorize(action, &format!("arn:aws:iam::{acct}:oidc-provider/*")).await?;
                let ps = self.reg.list_oidc_providers(acct).await?;
                let mut x = Xml::default();
                x.members("OpenIDConnectProviderList", &ps, |p| {
                    let mut m = Xml::default();
                    m.el("Arn", &p.arn);
                    m.0
                });
                Ok(Some(x.0))
            }
            _ => {
                let arn = self.req("OpenIDConnectProviderArn")?;
                self.authorize(action, arn).await?;
                match action {
                    "GetOpenIDConnectProvider" => {
                        let p = self.reg.get_oidc_provider(acct, arn).await?;
                        Ok(Some(provider_xml(&p)))
                    }
                    "DeleteOpenIDConnectProvider" => {
                        self.reg.delete_oidc_provider(acct, arn).await?;
                        Ok(None)
                    }
                    "AddClientIDToOpenIDConnectProvider" | "RemoveClientIDFromOpenIDConnectProvider" => {
                        let add = action.starts_with("Add");
                        self.reg.change_oidc_client_id(acct, arn, self.req("ClientID")?, add).await?;
                        Ok(None)
                    }
                    _ => {
                        let thumbprints = indexed(self.params, "ThumbprintList.member.", "");
                        self.reg.update_oidc_thumbprints(acct, arn, thumbprints).await?;
                        Ok(None)
                    }
                }
            }
        }
    }
}
