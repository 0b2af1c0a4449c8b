//! STS operations: AssumeRole, AssumeRoleWithWebIdentity (unsigned), GetSessionToken and
//! GetCallerIdentity, with STS's shapes and errors.

use super::{Ctx, Out, QueryError, Xml, date, indexed, indexed_tags};
use berth_registry::sts::{AssumeRoleParams, TempCredentials, WebIdentityParams, is_session_key};
use berth_registry::{Caller, Error, Registry};
use http::StatusCode;

fn credentials_xml(c: &TempCredentials) -> String {
    let mut x = Xml::default();
    x.el("AccessKeyId", &c.access_key_id)
        .el("SecretAccessKey", &c.secret_access_key)
        .el("SessionToken", &c.session_token)
        .el("Expiration", &date(c.expiration));
    x.0
}

fn assumed_role_user_xml(id: &str, arn: &str) -> String {
    let mut x = Xml::default();
    x.el("AssumedRoleId", id).el("Arn", arn);
    x.0
}

/// An integer parameter, or STS's validation error naming it.
fn int_param(params: &[(String, String)], name: &str) -> Result<Option<i64>, QueryError> {
    match params.iter().find(|(n, _)| n == name) {
        None => Ok(None),
        Some((_, v)) => v.trim().parse().map(Some).map_err(|_| {
            QueryError::validation(format!(
                "Value '{v}' at '{}' failed to satisfy constraint: not an integer",
                super::lower_first(name)
            ))
        }),
    }
}

fn required<'a>(params: &'a [(String, String)], name: &str) -> Result<&'a str, QueryError> {
    params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).ok_or_else(|| {
        QueryError::validation(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            super::lower_first(name)
        ))
    })
}

fn optional<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Parameters Berth cannot honour are refused, never ignored: MFA (`SerialNumber`, `TokenCode`)
/// and trusted context assertions (`ProvidedContexts`).
fn refuse_unsupported(params: &[(String, String)]) -> Result<(), QueryError> {
    for (name, what) in [
        ("SerialNumber", "MFA"),
        ("TokenCode", "MFA"),
        ("ProvidedContexts.member.1.ProviderArn", "trusted context assertions (ProvidedContexts)"),
    ] {
        if params.iter().any(|(n, _)| n == name) {
            return Err(QueryError::validation(format!(
                "Berth does not support {what}: the {} parameter cannot be honoured",
                name.split('.').next().unwrap_or(name)
            )));
        }
    }
    Ok(())
}

/// AssumeRoleWithWebIdentity: unsigned; the token is the credential.
pub(super) async fn web_identity(
    reg: &Registry,
    params: &[(String, String)],
    origin: crate::Origin,
) -> Result<String, QueryError> {
    refuse_unsupported(params)?;
    let caller = Caller { identity: None, source_ip: origin.ip, secure_transport: origin.secure };
    let policy_arns = indexed(params, "PolicyArns.member.", ".arn");
    let out = reg
        .assume_role_with_web_identity(
            &caller,
            WebIdentityParams {
                role_arn: required(params, "RoleArn")?,
                session_name: required(params, "RoleSessionName")?,
                token: required(params, "WebIdentityToken")?,
                duration: int_param(params, "DurationSeconds")?,
                policy: optional(params, "Policy"),
                policy_arns,
                provider_id: optional(params, "ProviderId"),
            },
        )
        .await?;
    let mut x = Xml::default();
    x.raw("Credentials", &credentials_xml(&out.role.credentials))
        .el("SubjectFromWebIdentityToken", &out.subject)
        .raw("AssumedRoleUser", &assumed_role_user_xml(&out.role.assumed_role_id, &out.role.arn));
    if let Some(p) = out.role.packed_policy_size {
        x.el("PackedPolicySize", &p.to_string());
    }
    x.el("Provider", &out.provider).el("Audience", &out.audience);
    Ok(x.0)
}

impl Ctx<'_> {
    /// Whether the caller signed with GetSessionToken credentials.
    pub(super) fn session_token_credentials(&self) -> bool {
        is_session_key(&self.identity.access_key_id) && !self.identity.principal_arn.contains(":assumed-role/")
    }

    pub(super) async fn sts(&self, action: &str) -> Out {
        if self.session_token_credentials() && !matches!(action, "AssumeRole" | "GetCallerIdentity") {
            return Err(Error::Denied(format!("Cannot call {action} with session credentials")).into());
        }
        refuse_unsupported(self.params)?;
        match action {
            "GetCallerIdentity" => self.get_caller_identity().await,
            "AssumeRole" => self.assume_role().await,
            "GetSessionToken" => {
                let duration = int_param(self.params, "DurationSeconds")?;
                let c = self.reg.get_session_token(self.identity, duration).await?;
                Ok(Some(Xml::default().raw("Credentials", &credentials_xml(&c)).0.clone()))
            }
            "AssumeRoleWithWebIdentity" => Ok(Some(web_identity(self.reg, self.params, self.origin).await?)),
            "" => Err(QueryError::new(StatusCode::BAD_REQUEST, "MissingAction", "Missing Action")),
            other => Err(QueryError::new(
                StatusCode::BAD_REQUEST,
                "InvalidAction",
                format!("Could not find operation {other} for version 2011-06-15"),
            )),
        }
    }

    async fn assume_role(&self) -> Out {
        let caller =
            Caller { identity: Some(self.identity), source_ip: self.origin.ip, secure_transport: self.origin.secure };
        let out = self
            .reg
            .assume_role(
                &caller,
                AssumeRoleParams {
                    role_arn: self.req("RoleArn")?,
                    session_name: self.req("RoleSessionName")?,
                    duration: int_param(self.params, "DurationSeconds")?,
                    external_id: self.opt("ExternalId"),
                    policy: self.opt("Policy"),
                    policy_arns: indexed(self.params, "PolicyArns.member.", ".arn"),
                    tags: indexed_tags(self.params, "Tags.member."),
                    transitive_tag_keys: indexed(self.params, "TransitiveTagKeys.member.", ""),
                    source_identity: self.opt("SourceIdentity"),
                },
            )
            .await?;
        let mut x = Xml::default();
        x.raw("Credentials", &credentials_xml(&out.credentials))
            .raw("AssumedRoleUser", &assumed_role_user_xml(&out.assumed_role_id, &out.arn));
        if let Some(p) = out.packed_policy_size {
            x.el("PackedPolicySize", &p.to_string());
        }
        if let Some(s) = &out.source_identity {
            x.el("SourceIdentity", s);
        }
        Ok(Some(x.0))
    }

    pub(super) async fn get_caller_identity(&self) -> Out {
        let (user_id, arn) = self.reg.caller_identity(self.identity).await?;
        let mut x = Xml::default();
        x.el("Arn", &arn).el("UserId", &user_id).el("Account", self.account());
        Ok(Some(x.0))
    }
}
