//! Which registry, which endpoints, which region.
//!
//! - Registry host: what docker passes (`host[:port]`, maybe with `https://` and a path) or the
//!   registry part of an image reference, lowercased.
//! - ECR endpoint: `AWS_ENDPOINT_URL_ECR`, else `AWS_ENDPOINT_URL`, else the profile's
//!   `endpoint_url`, else `https://<registry host>` (Berth serves every API on one port).
//! - STS endpoint: `AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL`, else the profile's
//!   `endpoint_url`, else the ECR endpoint.
//! - Region: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`, the region of a host
//!   `<account>.dkr.ecr.<region>.<domain>`, else `us-east-1`.

use reqwest::Url;

use crate::Error;
use crate::env::Env;
use crate::profile::Profiles;

/// The region when nothing says one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Where to ask for a token for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The registry host (`host[:port]`, lowercase).
    pub host: String,
    /// The ECR control plane.
    pub endpoint: Url,
    /// STS.
    pub sts_endpoint: Url,
    /// The signing region.
    pub region: String,
}

/// The registry host of a docker server URL: the scheme, any path and surrounding whitespace
/// removed, lowercased.
pub fn registry_host(server_url: &str) -> Result<String, Error> {
    let s = server_url.trim();
    let s = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")).unwrap_or(s);
    let host = s.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '@' || c.is_control()) {
        return Err(Error::Input(format!("'{}' is not a registry host", server_url.trim())));
    }
    Ok(host.to_ascii_lowercase())
}

/// `<region>` of `<12 digits>.dkr.ecr.<region>.<domain>[:port]`.
pub fn region_from_host(host: &str) -> Option<&str> {
    let name = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let mut parts = name.split('.');
    let account = parts.next()?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if (parts.next()?, parts.next()?) != ("dkr", "ecr") {
        return None;
    }
    let region = parts.next()?;
    let valid = !region.is_empty() && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    // A domain must follow the region.
    (valid && parts.next().is_some()).then_some(region)
}

fn parse_endpoint(name: &str, value: &str) -> Result<Url, Error> {
    let bad = || Error::Config(format!("{name} '{value}' is not an http:// or https:// URL"));
    let url = Url::parse(value.trim()).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::Config(format!("{name} must not carry credentials")));
    }
    Ok(url)
}

/// The endpoints and region for `host`.
pub fn target(env: &Env, profiles: &Profiles, host: &str) -> Result<Target, Error> {
    let global = match (env.get("AWS_ENDPOINT_URL"), profiles.setting("endpoint_url")) {
        (Some(v), _) => Some(parse_endpoint("AWS_ENDPOINT_URL", v)?),
        (None, Some(v)) => Some(parse_endpoint("endpoint_url of the profile", v)?),
        (None, None) => None,
    };
    let endpoint = match env.get("AWS_ENDPOINT_URL_ECR") {
        Some(v) => parse_endpoint("AWS_ENDPOINT_URL_ECR", v)?,
        None => match &global {
            Some(u) => u.clone(),
            None => parse_endpoint("the registry host", &format!("https://{host}"))?,
        },
    };
    let sts_endpoint = match env.get("AWS_ENDPOINT_URL_STS") {
        Some(v) => parse_endpoint("AWS_ENDPOINT_URL_STS", v)?,
        None => global.unwrap_or_else(|| endpoint.clone()),
    };
    let region = env
        .first(&["AWS_REGION", "AWS_DEFAULT_REGION"])
        .or_else(|| profiles.setting("region"))
        .or_else(|| region_from_host(host))
        .unwrap_or(DEFAULT_REGION)
        .to_owned();
    Ok(Target { host: host.to_owned(), endpoint, sts_endpoint, region })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ini;
    use std::path::PathBuf;

    #[test]
    fn hosts_from_server_urls() {
        for (input, want) in [
            ("127.0.0.1:5000", "127.0.0.1:5000"),
            (
                "https://123456789012.dkr.ecr.us-east-1.localhost:5000\n",
                "123456789012.dkr.ecr.us-east-1.localhost:5000",
            ),
            ("http://Registry.Example/v2/", "registry.example"),
            ("  registry.example/ns ", "registry.example"),
        ] {
            assert_eq!(registry_host(input).unwrap(), want, "{input:?}");
        }
        for bad in ["", "https://", "/path", "user@host", "a b"] {
            assert!(registry_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn regions_from_hosts() {
        for (host, want) in [
            ("123456789012.dkr.ecr.us-east-1.localhost:5000", Some("us-east-1")),
            ("123456789012.dkr.ecr.eu-west-3.amazonaws.com", Some("eu-west-3")),
            ("123456789012.dkr.ecr.ap-south-1.registry.example.com", Some("ap-south-1")),
            ("123456789012.dkr.ecr.us-east-1", None),
            ("12345678901.dkr.ecr.us-east-1.localhost", None),
            ("123456789012.dkr.ecs.us-east-1.localhost", None),
            ("123456789012.dkr.ecr.US_EAST.localhost", None),
            ("127.0.0.1:5000", None),
            ("registry.example", None),
        ] {
            assert_eq!(region_from_host(host), want, "{host}");
        }
    }

    fn profiles(config: &str) -> Profiles {
        Profiles::from_sections(Some((PathBuf::from("config"), ini::parse(config).unwrap())), None, None)
    }

    #[test]
    fn endpoints_in_sdk_order() {
        let host = "123456789012.dkr.ecr.eu-west-1.example:5000";
        let t = target(&Env::default(), &Profiles::default(), host).unwrap();
        assert_eq!(t.endpoint.as_str(), "https://123456789012.dkr.ecr.eu-west-1.example:5000/");
        assert_eq!(t.sts_endpoint, t.endpoint);
        assert_eq!(t.region, "eu-west-1");

        let env = Env::from_pairs([("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")]);
        let t = target(&env, &Profiles::default(), host).unwrap();
        assert_eq!(
            (t.endpoint.as_str(), t.sts_endpoint.as_str()),
            ("http://127.0.0.1:9000/", "http://127.0.0.1:9000/")
        );

        let env = Env::from_pairs([
            ("AWS_ENDPOINT_URL", "http://global:1"),
            ("AWS_ENDPOINT_URL_ECR", "http://ecr:2"),
            ("AWS_ENDPOINT_URL_STS", "https://sts:3"),
        ]);
        let t = target(&env, &profiles("[default]\nendpoint_url = http://profile:4\n"), host).unwrap();
        assert_eq!((t.endpoint.as_str(), t.sts_endpoint.as_str()), ("http://ecr:2/", "https://sts:3/"));

        // Only the ECR one: STS goes to the same place.
        let env = Env::from_pairs([("AWS_ENDPOINT_URL_ECR", "http://ecr:2")]);
        let t = target(&env, &Profiles::default(), host).unwrap();
        assert_eq!(t.sts_endpoint.as_str(), "http://ecr:2/");
        // The profile's endpoint_url after the environment's.
        let t = target(&Env::default(), &profiles("[default]\nendpoint_url = http://profile:4\n"), host).unwrap();
        assert_eq!((t.endpoint.as_str(), t.sts_endpoint.as_str()), ("http://profile:4/", "http://profile:4/"));

        for bad in ["127.0.0.1:5000", "ftp://x", "http://user:pw@host"] {
            let env = Env::from_pairs([("AWS_ENDPOINT_URL", bad)]);
            assert!(target(&env, &Profiles::default(), host).is_err(), "{bad}");
        }
    }

    #[test]
    fn region_order() {
        let host = "123456789012.dkr.ecr.eu-west-1.example";
        let p = profiles("[default]\nregion = ap-south-1\n");
        let all = [("AWS_REGION", "us-west-2"), ("AWS_DEFAULT_REGION", "ca-central-1")];
        assert_eq!(target(&Env::from_pairs(all), &p, host).unwrap().region, "us-west-2");
        assert_eq!(target(&Env::from_pairs(all[1..].to_vec()), &p, host).unwrap().region, "ca-central-1");
        assert_eq!(target(&Env::default(), &p, host).unwrap().region, "ap-south-1");
        assert_eq!(target(&Env::default(), &Profiles::default(), host).unwrap().region, "eu-west-1");
        assert_eq!(target(&Env::default(), &Profiles::default(), "127.0.0.1:5000").unwrap().region, "us-east-1");
    }
}
