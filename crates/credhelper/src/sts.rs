//! The two STS calls of the credential chain, on the Query API (form POST, XML answers):
//! `AssumeRoleWithWebIdentity` (unsigned, as in AWS: the web identity token is the proof) and
//! `AssumeRole` (SigV4-signed for service `sts` with the source credentials).

use std::time::SystemTime;

use reqwest::Url;

use crate::credentials::Credentials;
use crate::{Error, net};

/// The STS API version.
pub const VERSION: &str = "2011-06-15";

/// Where and when to call STS.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// The client.
    pub http: &'a reqwest::Client,
    /// The STS endpoint.
    pub endpoint: &'a Url,
    /// The region `AssumeRole` is signed for.
    pub region: &'a str,
    /// The signing time.
    pub now: SystemTime,
}

/// `AssumeRoleWithWebIdentity`.
pub async fn assume_role_with_web_identity(
    ctx: &Context<'_>,
    role_arn: &str,
    session_name: &str,
    web_identity_token: &str,
) -> Result<Credentials, Error> {
    let body = net::form(&[
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", VERSION),
        ("RoleArn", role_arn),
        ("RoleSessionName", session_name),
        ("WebIdentityToken", web_identity_token),
    ]);
    call(ctx, "AssumeRoleWithWebIdentity", body, None).await
}

/// `AssumeRole`, signed with `source`.
pub async fn assume_role(
    ctx: &Context<'_>,
    source: &Credentials,
    role_arn: &str,
    session_name: &str,
    external_id: Option<&str>,
    duration_seconds: Option<&str>,
) -> Result<Credentials, Error> {
    let mut pairs =
        vec![("Action", "AssumeRole"), ("Version", VERSION), ("RoleArn", role_arn), ("RoleSessionName", session_name)];
    if let Some(id) = external_id {
        pairs.push(("ExternalId", id));
    }
    if let Some(d) = duration_seconds {
        pairs.push(("DurationSeconds", d));
    }
    call(ctx, "AssumeRole", net::form(&pairs), Some(source)).await
}

async fn call(
    ctx: &Context<'_>,
    operation: &'static str,
    body: String,
    signer: Option<&Credentials>,
) -> Result<Credentials, Error> {
    let headers = [("content-type", "application/x-www-form-urlencoded; charset=utf-8")];
    let signing = signer.map(|creds| net::Signing { creds, region: ctx.region, service: "sts", now: ctx.now });
    let (status, body) = net::post(ctx.http, ctx.endpoint, &headers, body, signing.as_ref()).await?;
    let text = String::from_utf8_lossy(&body);
    let url = ctx.endpoint.to_string();
    if !(200..300).contains(&status) {
        let (code, message) = parse_error(&text).unwrap_or_else(|| net::unparsed_error(status, &text));
        return Err(Error::Service { operation, url, code, message });
    }
    parse_credentials(&text).map_err(|message| Error::Response { operation, url, message })
}

/// The credentials of an `AssumeRole*Response`.
pub fn parse_credentials(xml: &str) -> Result<Credentials, String> {
    let creds = element(xml, "Credentials").ok_or("no <Credentials> in the answer")?;
    let field = |name: &str| {
        element(creds, name).map(unescape).filter(|v| !v.is_empty()).ok_or(format!("no <{name}> in <Credentials>"))
    };
    Ok(Credentials::new(field("AccessKeyId")?, field("SecretAccessKey")?, Some(field("SessionToken")?)))
}

/// `Code` and `Message` of an `ErrorResponse`.
pub fn parse_error(xml: &str) -> Option<(String, String)> {
    let error = element(xml, "Error")?;
    let code = unescape(element(error, "Code")?);
    let message = element(error, "Message").map(unescape).unwrap_or_default();
    Some((code, message))
}

/// The text inside the first `<name>` (or `<name attr=...>`) element of `xml`; `""` for
/// `<name/>`.
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}");
    let close = format!("</{name}>");
    let mut from = 0;
    while let Some(at) = xml[from..].find(&open) {
        let start = from + at + open.len();
        let rest = &xml[start..];
        match rest.chars().next()? {
            '>' => {
                let end = rest.find(&close)?;
                return Some(&rest[1..end]);
            }
            c if c == '/' || c.is_whitespace() => {
                let gt = rest.find('>')?;
                if rest[..gt].ends_with('/') {
                    return Some("");
                }
                let inner = &rest[gt + 1..];
                return Some(&inner[..inner.find(&close)?]);
            }
            _ => from = start,
        }
    }
    None
}

/// Replaces XML's predefined entities and character references (an unknown one is kept as
/// is); unwraps a CDATA section; trims surrounding whitespace.
fn unescape(s: &str) -> String {
    let s = s.trim();
    if let Some(cdata) = s.strip_prefix("<![CDATA[").and_then(|r| r.strip_suffix("]]>")) {
        return cdata.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let decoded = rest.find(';').and_then(|semi| {
            let entity = &rest[1..semi];
            let ch = match entity {
                "lt" => '<',
                "gt" => '>',
                "amp" => '&',
                "quot" => '"',
                "apos" => '\'',
                _ => {
                    let code = match entity.strip_prefix("#x").or_else(|| entity.strip_prefix("#X")) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => entity.strip_prefix('#').and_then(|d| d.parse().ok()),
                    };
                    char::from_u32(code?)?
                }
            };
            Some((ch, semi))
        });
        match decoded {
            Some((ch, semi)) => {
                out.push(ch);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:ns:sa</SubjectFromWebIdentityToken>
    <Credentials>
      <SessionToken>FQoGZXIvYXdzE&amp;token/+=</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY</SecretAccessKey>
      <Expiration>2014-10-24T23:00:23Z</Expiration>
      <AccessKeyId>ASgeIAIOSFODNN7EXAMPLE</AccessKeyId>
    </Credentials>
    <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/r/s</Arn></AssumedRoleUser>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#;

    #[test]
    fn parses_credentials() {
        let c = parse_credentials(ANSWER).unwrap();
        assert_eq!(c.access_key_id, "ASgeIAIOSFODNN7EXAMPLE");
        assert_eq!(c.secret.expose(), "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
        assert_eq!(c.session_token.as_deref(), Some("FQoGZXIvYXdzE&token/+="));
        assert!(parse_credentials("<X><Credentials><AccessKeyId>A</AccessKeyId></Credentials></X>").is_err());
        assert!(parse_credentials("not xml").is_err());
    }

    #[test]
    fn parses_errors() {
        let xml = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>
            <Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRole &lt;x&gt;</Message></Error>
            <RequestId>r</RequestId></ErrorResponse>"#;
        assert_eq!(
            parse_error(xml),
            Some(("AccessDenied".into(), "Not authorized to perform sts:AssumeRole <x>".into()))
        );
        assert_eq!(parse_error("<html/>"), None);
    }

    #[test]
    fn finds_elements_and_unescapes() {
        assert_eq!(element("<a><ab>x</ab><a>y</a></a>", "ab"), Some("x"));
        assert_eq!(element("<ab>x</ab><a  k='v'>y</a>", "a"), Some("y"));
        assert_eq!(element("<a/>", "a"), Some(""));
        assert_eq!(element("<a>unclosed", "a"), None);
        assert_eq!(unescape(" &#65;&#x42;&amp;&bogus; & "), "AB&&bogus; &");
        assert_eq!(unescape("<![CDATA[a&b]]>"), "a&b");
    }
}
