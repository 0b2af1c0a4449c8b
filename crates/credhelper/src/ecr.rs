//! ECR `GetAuthorizationToken` (JSON 1.1, SigV4 service `ecr`).

use std::time::SystemTime;

use base64::Engine;
use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::credentials::Credentials;
use crate::{Error, net};

/// The `X-Amz-Target` of the call.
pub const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";

/// One `authorizationData` entry. `Debug` redacts the token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationToken {
    /// `base64("AWS:" + password)`.
    pub authorization_token: String,
    /// When it expires, seconds since the epoch.
    pub expires_at: f64,
}

impl std::fmt::Debug for AuthorizationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationToken").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

impl AuthorizationToken {
    /// The user name and password inside the token.
    pub fn decode(&self) -> Result<(String, String), String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.authorization_token.trim())
            .map_err(|_| "the authorization token is not base64")?;
        let text = String::from_utf8(bytes).map_err(|_| "the authorization token is not UTF-8")?;
        match text.split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                Ok((user.to_owned(), password.to_owned()))
            }
            _ => Err("the authorization token is not 'user:password'".to_owned()),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    #[serde(default)]
    authorization_data: Vec<Data>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    authorization_token: Option<String>,
    expires_at: Option<f64>,
}

/// Calls `GetAuthorizationToken` at `endpoint` (body `{}`: a token for the caller's own
/// registry) and checks the answer decodes.
pub async fn get_authorization_token(
    client: &reqwest::Client,
    endpoint: &Url,
    region: &str,
    creds: &Credentials,
    now: SystemTime,
) -> Result<AuthorizationToken, Error> {
    const OPERATION: &str = "GetAuthorizationToken";
    let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", TARGET)];
    let signing = net::Signing { creds, region, service: "ecr", now };
    let (status, body) = net::post(client, endpoint, &headers, "{}".to_owned(), Some(&signing)).await?;
    let url = endpoint.to_string();
    if !(200..300).contains(&status) {
        let (code, message) =
            parse_error(&body).unwrap_or_else(|| net::unparsed_error(status, &String::from_utf8_lossy(&body)));
        return Err(Error::Service { operation: OPERATION, url, code, message });
    }
    parse_answer(&body).map_err(|message| Error::Response { operation: OPERATION, url, message })
}

/// The first `authorizationData` entry of an answer, checked.
pub fn parse_answer(body: &[u8]) -> Result<AuthorizationToken, String> {
    let answer: Answer = serde_json::from_slice(body).map_err(|e| format!("not the JSON expected ({e})"))?;
    let data = answer.authorization_data.into_iter().next().ok_or("no authorizationData")?;
    let token = AuthorizationToken {
        authorization_token: data.authorization_token.ok_or("no authorizationToken")?,
        expires_at: data.expires_at.filter(|e| e.is_finite()).ok_or("no expiresAt")?,
    };
    token.decode()?;
    Ok(token)
}

/// `__type` (without its namespace) and `message` of a JSON error answer.
pub fn parse_error(body: &[u8]) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let kind = v.get("__type").or_else(|| v.get("code"))?.as_str()?;
    let kind = kind.rsplit('#').next().unwrap_or(kind).split(':').next().unwrap_or(kind);
    let message = v.get("message").or_else(|| v.get("Message")).and_then(|m| m.as_str()).unwrap_or_default();
    Some((kind.to_owned(), message.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_answer() {
        let body = br#"{"authorizationData":[{"authorizationToken":"QVdTOnBhc3M6d29yZA==","expiresAt":1.7e9,"proxyEndpoint":"https://x"}]}"#;
        let t = parse_answer(body).unwrap();
        assert_eq!(t.expires_at, 1.7e9);
        assert_eq!(t.decode().unwrap(), ("AWS".to_owned(), "pass:word".to_owned()));
        assert!(!format!("{t:?}").contains("QVdT"));
        for (bad, why) in [
            (&br#"{"authorizationData":[]}"#[..], "no authorizationData"),
            (br#"{"authorizationData":[{"expiresAt":1}]}"#, "no authorizationToken"),
            (br#"{"authorizationData":[{"authorizationToken":"QVdTOng="}]}"#, "no expiresAt"),
            (br#"{"authorizationData":[{"authorizationToken":"!!","expiresAt":1}]}"#, "not base64"),
            (br#"{"authorizationData":[{"authorizationToken":"QVdT","expiresAt":1}]}"#, "not 'user:password'"),
            (b"<html>", "not the JSON expected"),
        ] {
            assert!(parse_answer(bad).unwrap_err().contains(why), "{why}");
        }
    }

    #[test]
    fn parses_errors() {
        let body = br#"{"__type":"com.amazonaws.ecr#UnrecognizedClientException","message":"The security token included in the request is invalid."}"#;
        assert_eq!(
            parse_error(body),
            Some((
                "UnrecognizedClientException".into(),
                "The security token included in the request is invalid.".into()
            ))
        );
        assert_eq!(
            parse_error(br#"{"__type":"AccessDeniedException:http://x","Message":"no"}"#),
            Some(("AccessDeniedException".into(), "no".into()))
        );
        assert_eq!(parse_error(b"nope"), None);
    }
}
