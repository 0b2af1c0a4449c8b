//! The IAM and STS Query APIs: `POST /` with a form-encoded body (`Action=CreateUser&Version=
//! 2010-05-08&UserName=...`), SigV4-signed for service `iam` or `sts`, answered with XML as IAM
//! sends it (`<CreateUserResponse><CreateUserResult>...`), errors as `<ErrorResponse><Error>
//! <Type>Sender</Type><Code>NoSuchEntity</Code>...`.

use crate::AppState;
use crate::ecr::{SignedError, authenticate_headers};
use axum::body::Body;
use axum::response::Response;
use berth_auth::sigv4::SigV4Error;
use berth_meta::{AccessKey, IamEntity, Owner};
use berth_registry::iam::{Page, PolicyInfo};
use berth_registry::{Caller, Error, Identity, Registry, Target, iso8601};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;
use std::fmt::Write;

mod roles;
mod sts;

const IAM_NS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";
const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// Largest Query API body (policy documents are the big part).
const MAX_BODY: u64 = 256 * 1024;
/// Largest unsigned body read (AssumeRoleWithWebIdentity: a token of at most 20,000 characters,
/// a session policy of at most 2,048, ARNs and names, URL-encoded).
const MAX_UNSIGNED_BODY: u64 = 64 * 1024;

/// An IAM/STS error response.
#[derive(Debug)]
struct QueryError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl QueryError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> QueryError {
        QueryError { status, code, message: message.into() }
    }

    fn validation(message: impl Into<String>) -> QueryError {
        QueryError::new(StatusCode::BAD_REQUEST, "ValidationError", message)
    }
}

/// The one mapping of registry errors to IAM error codes.
impl From<Error> for QueryError {
    fn from(e: Error) -> QueryError {
        let msg = e.to_string();
        match e {
            Error::NoSuchEntity(_) => QueryError::new(StatusCode::NOT_FOUND, "NoSuchEntity", msg),
            Error::EntityAlreadyExists(_) => QueryError::new(StatusCode::CONFLICT, "EntityAlreadyExists", msg),
            Error::DeleteConflict(_) => QueryError::new(StatusCode::CONFLICT, "DeleteConflict", msg),
            Error::LimitExceeded(_) => QueryError::new(StatusCode::CONFLICT, "LimitExceeded", msg),
            Error::MalformedPolicyDocument(_) => {
                QueryError::new(StatusCode::BAD_REQUEST, "MalformedPolicyDocument", msg)
            }
            Error::Validation(_) | Error::InvalidParameter(_) => QueryError::validation(msg),
            Error::Denied(_) => QueryError::new(StatusCode::FORBIDDEN, "AccessDenied", msg),
            Error::Unauthenticated | Error::TokenExpired => QueryError::new(
                StatusCode::FORBIDDEN,
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            ),
            Error::CredentialsExpired => QueryError::new(StatusCode::FORBIDDEN, "ExpiredToken", msg),
            Error::InvalidIdentityToken(_) => QueryError::new(StatusCode::BAD_REQUEST, "InvalidIdentityToken", msg),
            Error::IdentityTokenExpired(_) => QueryError::new(StatusCode::BAD_REQUEST, "ExpiredTokenException", msg),
            Error::IdpCommunication(_) => QueryError::new(StatusCode::BAD_REQUEST, "IDPCommunicationError", msg),
            Error::PackedPolicyTooLarge(_) => QueryError::new(StatusCode::BAD_REQUEST, "PackedPolicyTooLarge", msg),
            Error::Unavailable(_) | Error::StorageFull(_) => {
                QueryError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", msg)
            }
            other => {
                tracing::error!(error = %other, "IAM request failed");
                QueryError::new(StatusCode::INTERNAL_SERVER_ERROR, "ServiceFailure", "An internal error occurred.")
            }
        }
    }
}

impl From<SigV4Error> for QueryError {
    fn from(e: SigV4Error) -> QueryError {
        let (status, code) = match &e {
            SigV4Error::MissingAuthenticationToken => (StatusCode::FORBIDDEN, "MissingAuthenticationToken"),
            SigV4Error::IncompleteSignature(_) => (StatusCode::BAD_REQUEST, "IncompleteSignature"),
            SigV4Error::UnrecognizedClient => (StatusCode::FORBIDDEN, "InvalidClientTokenId"),
            _ => (StatusCode::FORBIDDEN, "SignatureDoesNotMatch"),
        };
        let message = match e {
            SigV4Error::UnrecognizedClient => "The security token included in the request is invalid.".to_string(),
            other => other.message(),
        };
        QueryError::new(status, code, message)
    }
}

/// A parameter name as AWS shows it in validation messages (`UserName` -> `userName`), without
/// control characters.
fn esc_name(name: &str) -> String {
    let clean: String = name.chars().filter(|c| !c.is_control()).take(100).collect();
    let mut c = clean.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => clean,
    }
}

/// XML text escaping.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 cannot carry these even as character references: show them escaped.
            c if crate::is_forbidden_char(c) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Builds the inside of a `<...Result>` element.
#[derive(Default)]
struct Xml(String);

impl Xml {
    fn el(&mut self, name: &str, value: &str) -> &mut Xml {
        let _ = write!(self.0, "<{name}>{}</{name}>", esc(value));
        self
    }

    fn raw(&mut self, name: &str, inner: &str) -> &mut Xml {
        let _ = write!(self.0, "<{name}>{inner}</{name}>");
        self
    }

    fn members<T>(&mut self, name: &str, items: &[T], f: impl Fn(&T) -> String) -> &mut Xml {
        let inner: String = items.iter().map(|i| format!("<member>{}</member>", f(i))).collect();
        self.raw(name, &inner)
    }

    fn page(&mut self, marker: Option<&str>) -> &mut Xml {
        self.el("IsTruncated", if marker.is_some() { "true" } else { "false" });
        if let Some(m) = marker {
            self.el("Marker", m);
        }
        self
    }
}

fn date(ms: i64) -> String {
    iso8601(ms)
}

fn user_xml(u: &IamEntity) -> String {
    let mut x = Xml::default();
    x.el("Path", &u.path)
        .el("UserName", &u.name)
        .el("UserId", &u.id)
        .el("Arn", &format!("arn:aws:iam::{}:user{}{}", u.account_id, u.path, u.name))
        .el("CreateDate", &date(u.created_at));
    x.0
}

fn group_xml(g: &IamEntity) -> String {
    let mut x = Xml::default();
    x.el("Path", &g.path)
        .el("GroupName", &g.name)
        .el("GroupId", &g.id)
        .el("Arn", &format!("arn:aws:iam::{}:group{}{}", g.account_id, g.path, g.name))
        .el("CreateDate", &date(g.created_at));
    x.0
}

/// A `Policy` element as CreatePolicy and GetPolicy return it (with its description).
fn policy_xml(p: &PolicyInfo) -> String {
    policy_xml_with(p, true)
}

/// A `Policy` element; ListPolicies leaves the description out.
fn policy_xml_with(p: &PolicyInfo, with_description: bool) -> String {
    let mut x = Xml::default();
    x.el("PolicyName", &p.name)
        .el("DefaultVersionId", "v1")
        .el("PolicyId", &p.id)
        .el("Path", &p.path)
        .el("Arn", &p.arn)
        .el("AttachmentCount", &p.attachment_count.to_string())
        .el("PermissionsBoundaryUsageCount", "0")
        .el("IsAttachable", "true");
    if let Some(d) = p.description.as_ref().filter(|_| with_description) {
        x.el("Description", d);
    }
    x.el("CreateDate", &date(p.created_at)).el("UpdateDate", &date(p.updated_at));
    x.0
}

fn key_metadata_xml(k: &AccessKey) -> String {
    let mut x = Xml::default();
    if let Some(u) = &k.user_name {
        x.el("UserName", u);
    }
    x.el("AccessKeyId", &k.access_key_id).el("Status", &k.status).el("CreateDate", &date(k.created_at));
    x.0
}

/// IAM returns policy documents URL-encoded (clients decode them).
fn url_encode(s: &str) -> String {
    crate::query::encode(s)
}

/// Decode an `application/x-www-form-urlencoded` body.
fn form(body: &[u8]) -> Vec<(String, String)> {
    let s = String::from_utf8_lossy(body).replace('+', " ");
    crate::query::pairs(Some(&s))
}

/// Serve one IAM or STS Query API request.
pub async fn handle(state: &AppState, mut parts: Parts, mut body: Body) -> Response {
    let request_id = crate::obs::request_id().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    crate::obs::note(|f| f.api = "iam");
    let (ns, result) = match serve(state, &mut parts, &mut body, &request_id).await {
        Ok((ns, xml)) => (ns, Ok(xml)),
        Err((ns, e)) => (ns, Err(e)),
    };
    if let Err(e) = &result {
        crate::obs::note_error(e.code, &e.message);
    }
    let (status, text) = match result {
        Ok(xml) => (StatusCode::OK, xml),
        Err(e) => (
            e.status,
            format!(
                "<ErrorResponse xmlns=\"{ns}\"><Error><Type>{}</Type><Code>{}</Code><Message>{}</Message></Error>\
                 <RequestId>{request_id}</RequestId></ErrorResponse>",
                if e.status.is_server_error() { "Receiver" } else { "Sender" },
                e.code,
                esc(&e.message)
            ),
        ),
    };
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

type Served = Result<(&'static str, String), (&'static str, QueryError)>;

/// Serve one request: the signature's header part first, then the body (bounded, see
/// [`crate::body`]), then the signature over it.
async fn serve(state: &AppState, parts: &mut Parts, body: &mut Body, request_id: &str) -> Served {
    let reg = &*state.registry;
    // The credential scope names the service; IAM and STS share the endpoint.
    let auth = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let service = if auth.contains("/sts/aws4_request") { "sts" } else { "iam" };
    let ns = if service == "sts" { STS_NS } else { IAM_NS };
    let mut regions = reg.regions().to_vec();
    for r in ["us-east-1", "aws-global"] {
        if !regions.iter().any(|x| x == r) {
            regions.push(r.to_string());
        }
    }
    let signed = |e: SignedError| match e {
        SignedError::Sig(e) => (ns, QueryError::from(e)),
        SignedError::Registry(e) => (ns, QueryError::from(e)),
    };
    let is_signed = parts.headers.contains_key(header::AUTHORIZATION)
        || parts.uri.query().is_some_and(|q| q.contains("X-Amz-Credential="));
    if !is_signed {
        // AssumeRoleWithWebIdentity is the one unsigned call: the token is the credential. Its
        // body is small; a larger unsigned body is refused unread, like any unsigned call.
        let declared = crate::body::declared_len(&parts.headers);
        if declared.is_none_or(|n| n > MAX_UNSIGNED_BODY) {
            authenticate_headers(reg, parts, "sts", &regions).await.map_err(signed)?;
            return Err((ns, QueryError::from(SigV4Error::MissingAuthenticationToken)));
        }
        let (_, params) = read_form(parts, body).await.map_err(|e| (STS_NS, e))?;
        let action = params.iter().find(|(n, _)| n == "Action").map(|(_, v)| v.clone()).unwrap_or_default();
        if action == "AssumeRoleWithWebIdentity" {
            crate::obs::note(|f| {
                f.api = "sts";
                f.operation = Some(action.clone());
                f.known_operation = true;
                f.request_parameters = params_json(&params);
            });
            check_control_chars(&params).map_err(|e| (STS_NS, e))?;
            let origin = crate::origin(state.trust_forwarded, parts);
            let inner = sts::web_identity(reg, &params, origin).await.map_err(|e| (STS_NS, e))?;
            return Ok((STS_NS, wrap(&action, STS_NS, Some(inner), request_id)));
        }
        // Anything else unsigned: the signature check says what is missing.
        authenticate_headers(reg, parts, "sts", &regions).await.map_err(signed)?;
        return Err((ns, QueryError::from(SigV4Error::MissingAuthenticationToken)));
    }
    let auth = authenticate_headers(reg, parts, service, &regions).await.map_err(signed)?;
    let (body, params) = read_form(parts, body).await.map_err(|e| (ns, e))?;
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let action = get("Action").unwrap_or("").to_string();
    crate::obs::note(|f| {
        f.api = service;
        f.operation = Some(action.chars().filter(|c| !c.is_control()).take(64).collect());
    });
    let (identity, _) = auth.verify(parts, &body).map_err(signed)?;
    crate::obs::note(|f| {
        f.identity = Some(identity.clone());
        f.request_parameters = params_json(&params);
    });
    check_control_chars(&params).map_err(|e| (ns, e))?;
    let origin = crate::origin(state.trust_forwarded, parts);
    let ctx = Ctx { reg, identity: &identity, origin, params: &params };
    let result = if service == "sts" {
        ctx.sts(&action).await
    } else if ctx.session_token_credentials() {
        // GetSessionToken credentials reach no IAM operation (AWS asks for MFA, which Berth has
        // not).
        Err(QueryError::from(Error::Unauthenticated))
    } else {
        ctx.iam(&action).await
    };
    if !matches!(&result, Err(e) if matches!(e.code, "InvalidAction" | "MissingAction")) {
        crate::obs::note(|f| f.known_operation = true);
    }
    match result {
        Ok(inner) => Ok((ns, wrap(&action, ns, inner, request_id))),
        Err(e) => Err((ns, e)),
    }
}

/// `<{action}Response>` around a result's inner XML.
fn wrap(action: &str, ns: &str, inner: Option<String>, request_id: &str) -> String {
    let body = match inner {
        Some(inner) => format!("<{action}Result>{inner}</{action}Result>"),
        None => String::new(),
    };
    format!(
        "<{action}Response xmlns=\"{ns}\">{body}<ResponseMetadata><RequestId>{request_id}</RequestId>\
         </ResponseMetadata></{action}Response>"
    )
}

/// Read a form body (bounded, see [`crate::body`]): its bytes (which the signature covers) and
/// its decoded parameters.
async fn read_form(parts: &Parts, body: &mut Body) -> Result<(bytes::Bytes, Vec<(String, String)>), QueryError> {
    let too_large = || QueryError::validation("The request body could not be read or is too large.");
    let declared = crate::body::declared_len(&parts.headers);
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(too_large());
    }
    let Some(_reservation) = crate::body::reserve(declared.unwrap_or(MAX_BODY)).await else {
        return Err(QueryError::new(StatusCode::BAD_REQUEST, "Throttling", "Rate exceeded"));
    };
    let Ok(body) = crate::body::read(body, MAX_BODY, declared.unwrap_or(0)).await else {
        return Err(too_large());
    };
    let params = form(&body);
    Ok((body, params))
}

/// A request's parameters for the audit record (secrets removed).
fn params_json(params: &[(String, String)]) -> Option<Value> {
    Some(Value::Object(
        params
            .iter()
            .filter(|(k, _)| k != "Action" && k != "Version")
            .map(|(k, v)| (lower_first(k), Value::String(v.clone())))
            .collect(),
    ))
    .as_ref()
    .and_then(crate::obs::scrub)
}

/// `ValidationError` when a parameter holds a control character.
fn check_control_chars(params: &[(String, String)]) -> Result<(), QueryError> {
    match params.iter().find(|(n, v)| crate::has_control_chars(n) || crate::has_control_chars(v)) {
        Some((name, _)) => Err(QueryError::validation(format!(
            "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must not contain \
             control characters",
            esc_name(name)
        ))),
        None => Ok(()),
    }
}

type Out = Result<Option<String>, QueryError>;

struct Ctx<'a> {
    reg: &'a Registry,
    identity: &'a Identity,
    origin: crate::Origin,
    params: &'a [(String, String)],
}

impl Ctx<'_> {
    fn account(&self) -> &str {
        &self.identity.account_id
    }

    fn opt(&self, k: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    fn req(&self, k: &str) -> Result<&str, QueryError> {
        self.opt(k).ok_or_else(|| {
            let field = lower_first(k);
            QueryError::validation(format!(
                "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
            ))
        })
    }

    fn max_items(&self) -> Result<Option<u32>, QueryError> {
        match self.opt("MaxItems") {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| QueryError::validation(format!("Invalid MaxItems: {v}"))),
        }
    }

    /// The caller's own user name (IAM users), for operations whose UserName defaults to the caller.
    fn own_user(&self) -> Option<&str> {
        let arn = &self.identity.principal_arn;
        arn.split_once(":user/").map(|(_, rest)| rest.rsplit('/').next().unwrap_or(rest))
    }

    /// Authorize `iam:<action>` on an IAM resource of the caller's account.
    async fn authorize(&self, action: &str, resource: &str) -> Result<(), QueryError> {
        let caller =
            Caller { identity: Some(self.identity), source_ip: self.origin.ip, secure_transport: self.origin.secure };
        Ok(self.reg.authorize(&caller, &format!("iam:{action}"), Target::Iam(resource)).await?)
    }

    fn arn(&self, kind: &str, name: &str) -> String {
        format!("arn:aws:iam::{}:{kind}/{name}", self.account())
    }

    /// The ARN of a user as IAM authorizes actions on it: with the user's path when the user
    /// exists (`arn:aws:iam::<acct>:user/<path><name>`), else as named.
    async fn user_resource(&self, name: &str) -> String {
        match self.reg.get_user(self.account(), name).await {
            Ok(u) => format!("arn:aws:iam::{}:user{}{}", u.account_id, u.path, u.name),
            Err(_) => self.arn("user", name),
        }
    }

    /// The ARN of a group, with its path when it exists.
    async fn group_resource(&self, name: &str) -> String {
        match self.reg.get_group(self.account(), name).await {
            Ok(g) => format!("arn:aws:iam::{}:group{}{}", g.account_id, g.path, g.name),
            Err(_) => self.arn("group", name),
        }
    }

    /// The resource IAM names for a listing under a path prefix: `arn:aws:iam::<acct>:user/`
    /// (ListUsers), `...:group/<prefix>` (ListGroups).
    fn list_resource(&self, kind: &str) -> String {
        let prefix = self.opt("PathPrefix").unwrap_or("/");
        format!("arn:aws:iam::{}:{kind}{prefix}", self.account())
    }

    async fn iam(&self, action: &str) -> Out {
        let acct = self.account().to_string();
        let acct = acct.as_str();
        match action {
            "CreateUser" => {
                let name = self.req("UserName")?;
                let path = self.opt("Path").unwrap_or("/");
                self.authorize(action, &format!("arn:aws:iam::{acct}:user{path}{name}")).await?;
                let u = self.reg.create_user(acct, name, self.opt("Path")).await?;
                Ok(Some(Xml::default().raw("User", &user_xml(&u)).0.clone()))
            }
            "GetUser" => {
                let Some(name) = self.opt("UserName").or(self.own_user()) else {
                    // The root: IAM describes it without a name.
                    self.authorize(action, &self.identity.principal_arn).await?;
                    let mut x = Xml::default();
                    x.el("UserId", acct).el("Arn", &self.identity.principal_arn).el("CreateDate", &date(0));
                    return Ok(Some(Xml::default().raw("User", &x.0).0.clone()));
                };
                self.authorize(action, &self.user_resource(name).await).await?;
                let u = self.reg.get_user(acct, name).await?;
                Ok(Some(Xml::default().raw("User", &user_xml(&u)).0.clone()))
            }
            "ListUsers" => {
                self.authorize(action, &self.list_resource("user")).await?;
                let page =
                    self.reg.list_users(acct, self.opt("PathPrefix"), self.opt("Marker"), self.max_items()?).await?;
                Ok(Some(list(page, "Users", user_xml)))
            }
            "DeleteUser" => {
                let name = self.req("UserName")?;
                self.authorize(action, &self.user_resource(name).await).await?;
                self.reg.delete_user(acct, name).await?;
                Ok(None)
            }
            "CreateAccessKey" | "ListAccessKeys" | "UpdateAccessKey" | "DeleteAccessKey" => {
                self.access_keys(action, acct).await
            }
            "PutUserPolicy" | "GetUserPolicy" | "ListUserPolicies" | "DeleteUserPolicy" => {
                let name = self.req("UserName")?;
                self.authorize(action, &self.user_resource(name).await).await?;
                self.inline(action, acct, Owner::User(name), "UserName").await
            }
            "PutGroupPolicy" | "GetGroupPolicy" | "ListGroupPolicies" | "DeleteGroupPolicy" => {
                let name = self.req("GroupName")?;
                self.authorize(action, &self.group_resource(name).await).await?;
                self.inline(action, acct, Owner::Group(name), "GroupName").await
            }
            "AttachUserPolicy" | "DetachUserPolicy" | "ListAttachedUserPolicies" => {
                let name = self.req("UserName")?;
                self.authorize(action, &self.user_resource(name).await).await?;
                self.attached(action, acct, Owner::User(name)).await
            }
            "AttachGroupPolicy" | "DetachGroupPolicy" | "ListAttachedGroupPolicies" => {
                let name = self.req("GroupName")?;
                self.authorize(action, &self.group_resource(name).await).await?;
                self.attached(action, acct, Owner::Group(name)).await
            }
            "CreatePolicy" => {
                let name = self.req("PolicyName")?;
                let path = self.opt("Path").unwrap_or("/");
                self.authorize(action, &format!("arn:aws:iam::{acct}:policy{path}{name}")).await?;
                let p = self
                    .reg
                    .create_policy(acct, name, self.opt("Path"), self.req("PolicyDocument")?, self.opt("Description"))
                    .await?;
                Ok(Some(Xml::default().raw("Policy", &policy_xml(&p)).0.clone()))
            }
            "GetPolicy" => {
                let arn = self.req("PolicyArn")?;
                self.authorize(action, arn).await?;
                let p = self.reg.get_policy(acct, arn).await?;
                Ok(Some(Xml::default().raw("Policy", &policy_xml(&p)).0.clone()))
            }
            "GetPolicyVersion" => {
                let arn = self.req("PolicyArn")?;
                let version = self.req("VersionId")?;
                self.authorize(action, arn).await?;
                let p = self.reg.get_policy(acct, arn).await?;
                if version != "v1" {
                    return Err(Error::NoSuchEntity(format!(
                        "Policy {arn} version {version} does not exist or is not attachable."
                    ))
                    .into());
                }
                let mut x = Xml::default();
                x.el("Document", &url_encode(&p.document))
                    .el("VersionId", "v1")
                    .el("IsDefaultVersion", "true")
                    .el("CreateDate", &date(p.created_at));
                Ok(Some(Xml::default().raw("PolicyVersion", &x.0).0.clone()))
            }
            "ListPolicies" => {
                // IAM names no ARN here: "on resource: policy path /".
                let prefix = self.opt("PathPrefix").unwrap_or("/");
                self.authorize(action, &format!("policy path {prefix}")).await?;
                let only_attached = self.opt("OnlyAttached") == Some("true");
                let page = self
                    .reg
                    .list_policies(
                        acct,
                        self.opt("Scope"),
                        only_attached,
                        self.opt("PathPrefix"),
                        self.opt("Marker"),
                        self.max_items()?,
                    )
                    .await?;
                Ok(Some(list(page, "Policies", |p| policy_xml_with(p, false))))
            }
            "DeletePolicy" => {
                let arn = self.req("PolicyArn")?;
                self.authorize(action, arn).await?;
                self.reg.delete_policy(acct, arn).await?;
                Ok(None)
            }
            "CreateGroup" => {
                let name = self.req("GroupName")?;
                let path = self.opt("Path").unwrap_or("/");
                self.authorize(action, &format!("arn:aws:iam::{acct}:group{path}{name}")).await?;
                let g = self.reg.create_group(acct, name, self.opt("Path")).await?;
                Ok(Some(Xml::default().raw("Group", &group_xml(&g)).0.clone()))
            }
            "GetGroup" => {
                let name = self.req("GroupName")?;
                self.authorize(action, &self.group_resource(name).await).await?;
                let g = self.reg.get_group(acct, name).await?;
                let users = self.reg.group_users(acct, name).await?;
                let mut x = Xml::default();
                x.raw("Group", &group_xml(&g)).members("Users", &users, user_xml).page(None);
                Ok(Some(x.0))
            }
            "ListGroups" => {
                self.authorize(action, &self.list_resource("group")).await?;
                let page =
                    self.reg.list_groups(acct, self.opt("PathPrefix"), self.opt("Marker"), self.max_items()?).await?;
                Ok(Some(list(page, "Groups", group_xml)))
            }
            "ListGroupsForUser" => {
                let name = self.req("UserName")?;
                self.authorize(action, &self.user_resource(name).await).await?;
                let groups = self.reg.groups_for_user(acct, name).await?;
                let mut x = Xml::default();
                x.members("Groups", &groups, group_xml).page(None);
                Ok(Some(x.0))
            }
            "DeleteGroup" => {
                let name = self.req("GroupName")?;
                self.authorize(action, &self.group_resource(name).await).await?;
                self.reg.delete_group(acct, name).await?;
                Ok(None)
            }
            "CreateRole"
            | "GetRole"
            | "ListRoles"
            | "DeleteRole"
            | "UpdateAssumeRolePolicy"
            | "UpdateRole"
            | "UpdateRoleDescription"
            | "PutRolePolicy"
            | "GetRolePolicy"
            | "ListRolePolicies"
            | "DeleteRolePolicy"
            | "AttachRolePolicy"
            | "DetachRolePolicy"
            | "ListAttachedRolePolicies"
            | "ListRoleTags"
            | "TagRole"
            | "UntagRole" => self.roles(action, acct).await,
            "CreateOpenIDConnectProvider"
            | "GetOpenIDConnectProvider"
            | "ListOpenIDConnectProviders"
            | "DeleteOpenIDConnectProvider"
            | "AddClientIDToOpenIDConnectProvider"
            | "RemoveClientIDFromOpenIDConnectProvider"
            | "UpdateOpenIDConnectProviderThumbprint" => self.oidc_providers(action, acct).await,
            "AddUserToGroup" | "RemoveUserFromGroup" => {
                let group = self.req("GroupName")?;
                let user = self.req("UserName")?;
                self.authorize(action, &self.group_resource(group).await).await?;
                if action == "AddUserToGroup" {
                    self.reg.add_user_to_group(acct, group, user).await?;
                } else {
                    self.reg.remove_user_from_group(acct, group, user).await?;
                }
                Ok(None)
            }
            "" => Err(QueryError::new(StatusCode::BAD_REQUEST, "MissingAction", "Missing Action")),
            other => Err(QueryError::new(
                StatusCode::BAD_REQUEST,
                "InvalidAction",
                format!("Could not find operation {other} for version 2010-05-08"),
            )),
        }
    }

    async fn access_keys(&self, action: &str, acct: &str) -> Out {
        // Without UserName, the key operations act on the caller (the root or the signing user).
        let user = self.opt("UserName").or(self.own_user());
        let resource = match user {
            Some(u) => self.user_resource(u).await,
            None => self.identity.principal_arn.clone(),
        };
        self.authorize(action, &resource).await?;
        match action {
            "CreateAccessKey" => {
                let (creds, key) = self.reg.create_user_access_key(acct, user).await?;
                let mut x = Xml::default();
                if let Some(u) = &key.user_name {
                    x.el("UserName", u);
                }
                x.el("AccessKeyId", &creds.access_key_id)
                    .el("Status", &key.status)
                    .el("SecretAccessKey", &creds.secret_access_key)
                    .el("CreateDate", &date(key.created_at));
                Ok(Some(Xml::default().raw("AccessKey", &x.0).0.clone()))
            }
            "ListAccessKeys" => {
                let keys = self.reg.list_access_keys(acct, user).await?;
                let mut x = Xml::default();
                // ListAccessKeysResult has no UserName of its own (each key's metadata names it).
                x.members("AccessKeyMetadata", &keys, key_metadata_xml).page(None);
                Ok(Some(x.0))
            }
            "UpdateAccessKey" => {
                self.reg.update_access_key(acct, user, self.req("AccessKeyId")?, self.req("Status")?).await?;
                Ok(None)
            }
            _ => {
                self.reg.delete_user_access_key(acct, user, self.req("AccessKeyId")?).await?;
                Ok(None)
            }
        }
    }

    async fn inline(&self, action: &str, acct: &str, owner: Owner<'_>, owner_field: &str) -> Out {
        match &action[..3] {
            "Put" => {
                let name = self.req("PolicyName")?;
                self.reg.put_inline_policy(acct, owner, name, self.req("PolicyDocument")?).await?;
                Ok(None)
            }
            "Get" => {
                let name = self.req("PolicyName")?;
                let (owner_name, doc) = self.reg.get_inline_policy(acct, owner, name).await?;
                let mut x = Xml::default();
                x.el(owner_field, &owner_name).el("PolicyName", name).el("PolicyDocument", &url_encode(&doc));
                Ok(Some(x.0))
            }
            "Lis" => {
                let names = self.reg.list_inline_policies(acct, owner).await?;
                let mut x = Xml::default();
                x.members("PolicyNames", &names, |n| esc(n)).page(None);
                Ok(Some(x.0))
            }
            _ => {
                self.reg.delete_inline_policy(acct, owner, self.req("PolicyName")?).await?;
                Ok(None)
            }
        }
    }

    async fn attached(&self, action: &str, acct: &str, owner: Owner<'_>) -> Out {
        match &action[..3] {
            "Att" => {
                self.reg.attach_policy(acct, owner, self.req("PolicyArn")?).await?;
                Ok(None)
            }
            "Det" => {
                self.reg.detach_policy(acct, owner, self.req("PolicyArn")?).await?;
                Ok(None)
            }
            _ => {
                let policies = self.reg.list_attached_policies(acct, owner).await?;
                let mut x = Xml::default();
                x.members("AttachedPolicies", &policies, |(name, arn)| {
                    let mut m = Xml::default();
                    m.el("PolicyName", name).el("PolicyArn", arn);
                    m.0
                })
                .page(None);
                Ok(Some(x.0))
            }
        }
    }
}

/// The values of indexed parameters `<prefix><n><suffix>` (n = 1, 2, ...), in index order.
fn indexed(params: &[(String, String)], prefix: &str, suffix: &str) -> Vec<String> {
    let mut out: Vec<(u32, String)> = params
        .iter()
        .filter_map(|(k, v)| {
            let n = k.strip_prefix(prefix)?.strip_suffix(suffix)?;
            Some((n.parse().ok()?, v.clone()))
        })
        .collect();
    out.sort_by_key(|(n, _)| *n);
    out.into_iter().map(|(_, v)| v).collect()
}

/// Tags given as `<prefix><n>.Key` / `<prefix><n>.Value`, in index order.
fn indexed_tags(params: &[(String, String)], prefix: &str) -> Vec<(String, String)> {
    let keys = params.iter().filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.strip_suffix(".Key")?.to_string(), v)));
    let mut out: Vec<(u32, String, String)> = keys
        .filter_map(|(n, key)| {
            let value = params.iter().find(|(k, _)| *k == format!("{prefix}{n}.Value")).map(|(_, v)| v.clone());
            Some((n.parse().ok()?, key.clone(), value.unwrap_or_default()))
        })
        .collect();
    out.sort_by_key(|(n, _, _)| *n);
    out.into_iter().map(|(_, k, v)| (k, v)).collect()
}

fn list<T>(page: Page<T>, name: &str, f: impl Fn(&T) -> String) -> String {
    let mut x = Xml::default();
    x.members(name, &page.items, f).page(page.marker.as_deref());
    x.0
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode_plus_and_percent() {
        let p = form(b"Action=CreateUser&UserName=a%2Bb&Path=%2Fx%2F&Doc=a+b");
        assert_eq!(p[0], ("Action".into(), "CreateUser".into()));
        assert_eq!(p[1], ("UserName".into(), "a+b".into()));
        assert_eq!(p[2], ("Path".into(), "/x/".into()));
        assert_eq!(p[3], ("Doc".into(), "a b".into()));
    }

    #[test]
    fn xml_escapes() {
        assert_eq!(esc("<a&'\">"), "&lt;a&amp;&apos;&quot;&gt;");
    }
}
