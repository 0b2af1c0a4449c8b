//! The AWS credential chain, in the order the brief and the Java and Go SDKs use:
//!
//! 1. **Environment**: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`).
//! 2. **Web identity**: `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (+
//!    `AWS_ROLE_SESSION_NAME`) → STS `AssumeRoleWithWebIdentity`.
//! 3. **Shared files**, profile `AWS_PROFILE` (else `default`):
//!    - `role_arn` + `web_identity_token_file` → `AssumeRoleWithWebIdentity`;
//!    - `role_arn` + `source_profile` → `AssumeRole` signed with the source profile's
//!      credentials (themselves static keys, or another role: chains are followed, loops
//!      refused); `role_arn` + `credential_source = Environment` → signed with (1);
//!      `external_id`, `role_session_name`, `duration_seconds` are passed on;
//!    - `aws_access_key_id` + `aws_secret_access_key` (+ `aws_session_token`).
//!
//!    In the selected profile `role_arn` wins over static keys; in a source profile static keys
//!    end the chain (so a profile may name itself as its source), as the SDKs do.
//!
//! What needs a person or another program (`mfa_serial`, `credential_process`, SSO,
//! `credential_source` other than `Environment`) is refused with a message saying so.
//!
//! [`discover`] finds the source without any I/O but reading files; [`Source::credentials`]
//! makes the STS calls. So the token cache can be consulted first, keyed by
//! [`Source::cache_identity`].

use std::fmt;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_auth::sigv4::SecretKey;

use crate::env::Env;
use crate::profile::Profiles;
use crate::{Error, sts};

/// An access key, with the session token of temporary credentials. `Debug` shows the key id
/// only.
#[derive(Clone)]
pub struct Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret: SecretKey,
    /// The session token (temporary credentials).
    pub session_token: Option<String>,
}

impl Credentials {
    /// Credentials from their parts.
    pub fn new(access_key_id: impl Into<String>, secret: impl Into<String>, session_token: Option<String>) -> Self {
        Credentials { access_key_id: access_key_id.into(), secret: SecretKey::new(secret), session_token }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// Where credentials come from. `Debug` never prints a secret.
#[derive(Debug, Clone)]
pub enum Source {
    /// Keys at hand (environment or profile).
    Static {
        /// The keys.
        creds: Credentials,
        /// `environment variables` or `profile 'name'`, for messages.
        origin: String,
    },
    /// `AssumeRoleWithWebIdentity` with the token in a file.
    WebIdentity {
        /// The role.
        role_arn: String,
        /// `RoleSessionName`.
        session_name: String,
        /// The file holding the token (re-read on each use: kubelet rotates it).
        token_file: PathBuf,
        /// For messages.
        origin: String,
    },
    /// `AssumeRole` with the credentials of another source.
    AssumeRole {
        /// The role.
        role_arn: String,
        /// `RoleSessionName`.
        session_name: String,
        /// `ExternalId`.
        external_id: Option<String>,
        /// `DurationSeconds`, as written.
        duration_seconds: Option<String>,
        /// What signs the call.
        source: Box<Source>,
        /// For messages.
        origin: String,
    },
}

impl Source {
    /// What identifies these credentials in the token cache: the access key id of keys at hand;
    /// for a role, the role (and external id) plus what assumes it, since the STS answer's key
    /// id changes on every call.
    pub fn cache_identity(&self) -> String {
        match self {
            Source::Static { creds, .. } => creds.access_key_id.clone(),
            Source::WebIdentity { role_arn, token_file, .. } => {
                format!("{role_arn} by web identity {}", token_file.display())
            }
            Source::AssumeRole { role_arn, external_id, source, .. } => format!(
                "{role_arn}{} by {}",
                external_id.as_deref().map(|e| format!(" (external id {e})")).unwrap_or_default(),
                source.cache_identity()
            ),
        }
    }

    /// Where the credentials come from, for messages.
    pub fn origin(&self) -> &str {
        match self {
            Source::Static { origin, .. } | Source::WebIdentity { origin, .. } | Source::AssumeRole { origin, .. } => {
                origin
            }
        }
    }

    /// The credentials, calling STS where a role is to be assumed.
    pub async fn credentials(&self, ctx: &sts::Context<'_>) -> Result<Credentials, Error> {
        match self {
            Source::Static { creds, .. } => Ok(creds.clone()),
            Source::WebIdentity { role_arn, session_name, token_file, .. } => {
                let token = std::fs::read_to_string(token_file).map_err(|e| {
                    Error::Config(format!("cannot read the web identity token file {}: {e}", token_file.display()))
                })?;
                let token = token.trim();
                if token.is_empty() {
                    return Err(Error::Config(format!(
                        "the web identity token file {} is empty",
                        token_file.display()
                    )));
                }
                sts::assume_role_with_web_identity(ctx, role_arn, session_name, token).await
            }
            Source::AssumeRole { role_arn, session_name, external_id, duration_seconds, source, .. } => {
                let source = Box::pin(source.credentials(ctx)).await?;
                sts::assume_role(
                    ctx,
                    &source,
                    role_arn,
                    session_name,
                    external_id.as_deref(),
                    duration_seconds.as_deref(),
                )
                .await
            }
        }
    }
}

/// The session name used when none is configured (`berth-credhelper-<unix seconds>`, as the
/// SDKs name theirs).
pub fn default_session_name(now: SystemTime) -> String {
    format!("berth-credhelper-{}", now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
}

/// Finds the first source of the chain. [`Error::NoCredentials`] when there is none.
pub fn discover(env: &Env, profiles: &Profiles, now: SystemTime) -> Result<Source, Error> {
    if let Some(s) = from_env(env) {
        return Ok(s);
    }
    if let (Some(token_file), Some(role_arn)) = (env.get("AWS_WEB_IDENTITY_TOKEN_FILE"), env.get("AWS_ROLE_ARN")) {
        return Ok(Source::WebIdentity {
            role_arn: role_arn.to_owned(),
            session_name: env.get("AWS_ROLE_SESSION_NAME").map_or_else(|| default_session_name(now), str::to_owned),
            token_file: env.expand_home(token_file),
            origin: "AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN".to_owned(),
        });
    }
    let mut visited = Vec::new();
    match from_profile(env, profiles, profiles.selected_name(), true, &mut visited, now)? {
        Some(s) => Ok(s),
        None => Err(Error::NoCredentials(profiles.describe_files())),
    }
}

fn from_env(env: &Env) -> Option<Source> {
    let (id, secret) = (env.get("AWS_ACCESS_KEY_ID")?, env.get("AWS_SECRET_ACCESS_KEY")?);
    Some(Source::Static {
        creds: Credentials::new(id, secret, env.get("AWS_SESSION_TOKEN").map(str::to_owned)),
        origin: "environment variables".to_owned(),
    })
}

/// The source profile `name` defines; `None` when the selected profile (`base`) defines none
/// (or, not chosen by `AWS_PROFILE`, does not exist).
fn from_profile(
    env: &Env,
    profiles: &Profiles,
    name: &str,
    base: bool,
    visited: &mut Vec<String>,
    now: SystemTime,
) -> Result<Option<Source>, Error> {
    let origin = format!("profile '{name}'");
    let Some(p) = profiles.get(name) else {
        if base && !profiles.is_explicit() {
            return Ok(None);
        }
        return Err(Error::Config(format!("{origin} not found in {}", profiles.describe_files())));
    };
    if visited.iter().any(|v| v == name) {
        visited.push(name.to_owned());
        return Err(Error::Config(format!("source_profile loop: {}", visited.join(" -> "))));
    }
    visited.push(name.to_owned());
    let get = |key: &str| p.get(key).map(String::as_str).filter(|v| !v.is_empty());

    let static_creds = match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(id), Some(secret)) => Some(Credentials::new(id, secret, get("aws_session_token").map(str::to_owned))),
        (None, None) => None,
        (Some(_), None) => {
            return Err(Error::Config(format!("{origin} has aws_access_key_id but no aws_secret_access_key")));
        }
        (None, Some(_)) => {
            return Err(Error::Config(format!("{origin} has aws_secret_access_key but no aws_access_key_id")));
        }
    };
    let as_static = |creds: Credentials| Source::Static { creds, origin: origin.clone() };
    if !base && let Some(creds) = static_creds.clone() {
        return Ok(Some(as_static(creds)));
    }

    if let Some(role_arn) = get("role_arn") {
        if get("mfa_serial").is_some() {
            return Err(Error::Config(format!(
                "{origin} needs an MFA code (mfa_serial), which a credential helper cannot ask for"
            )));
        }
        let session_name = get("role_session_name").map_or_else(|| default_session_name(now), str::to_owned);
        if let Some(token_file) = get("web_identity_token_file") {
            return Ok(Some(Source::WebIdentity {
                role_arn: role_arn.to_owned(),
                session_name,
                token_file: env.expand_home(token_file),
                origin,
            }));
        }
        let source = if let Some(source_name) = get("source_profile") {
            if source_name == name {
                // A profile may sign for its own role with its own keys.
                match static_creds {
                    Some(creds) => as_static(creds),
                    None => {
                        return Err(Error::Config(format!("{origin} is its own source_profile but has no keys")));
                    }
                }
            } else {
                match from_profile(env, profiles, source_name, false, visited, now)? {
                    Some(s) => s,
                    None => return Err(Error::Config(format!("source profile '{source_name}' has no credentials"))),
                }
            }
        } else if let Some(cs) = get("credential_source") {
            if !cs.eq_ignore_ascii_case("Environment") {
                return Err(Error::Config(format!(
                    "{origin}: credential_source '{cs}' is not supported (only Environment)"
                )));
            }
            from_env(env).ok_or_else(|| {
                Error::Config(format!(
                    "{origin} takes its source credentials from the environment, but AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY are not set"
                ))
            })?
        } else {
            return Err(Error::Config(format!(
                "{origin} has role_arn but no source_profile, credential_source or web_identity_token_file"
            )));
        };
        return Ok(Some(Source::AssumeRole {
            role_arn: role_arn.to_owned(),
            session_name,
            external_id: get("external_id").map(str::to_owned),
            duration_seconds: get("duration_seconds").map(str::to_owned),
            source: Box::new(source),
            origin,
        }));
    }
    if let Some(creds) = static_creds {
        return Ok(Some(as_static(creds)));
    }
    for (key, what) in [("credential_process", "credential_process"), ("sso_session", "SSO"), ("sso_start_url", "SSO")]
    {
        if get(key).is_some() {
            return Err(Error::Config(format!(
                "{origin} uses {what}, which berth's credential helper does not support; give it access keys \
                 or a role (role_arn with source_profile or web_identity_token_file)"
            )));
        }
    }
    if base {
        return Ok(None);
    }
    Err(Error::Config(format!("source {origin} has no credentials")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ini;

    const NOW: SystemTime = UNIX_EPOCH;

    fn profiles(config: &str, credentials: &str, profile: Option<&str>) -> Profiles {
        Profiles::from_sections(
            Some((PathBuf::from("config"), ini::parse(config).unwrap())),
            Some((PathBuf::from("credentials"), ini::parse(credentials).unwrap())),
            profile,
        )
    }

    const CREDS: &str = "[default]\naws_access_key_id = PROFILEKEY\naws_secret_access_key = psecret\n";

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn env_beats_web_identity_beats_profile() {
        let p = profiles("", CREDS, None);
        let all = [
            ("AWS_ACCESS_KEY_ID", "ENVKEY"),
            ("AWS_SECRET_ACCESS_KEY", "esecret"),
            ("AWS_SESSION_TOKEN", "etoken"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/web"),
            ("AWS_ROLE_SESSION_NAME", "pod"),
        ];
        let Source::Static { creds, origin } = discover(&env(&all), &p, NOW).unwrap() else { panic!() };
        assert_eq!((creds.access_key_id.as_str(), creds.session_token.as_deref()), ("ENVKEY", Some("etoken")));
        assert_eq!(origin, "environment variables");

        let Source::WebIdentity { role_arn, session_name, token_file, .. } =
            discover(&env(&all[3..]), &p, NOW).unwrap()
        else {
            panic!()
        };
        assert_eq!(role_arn, "arn:aws:iam::123456789012:role/web");
        assert_eq!(session_name, "pod");
        assert_eq!(token_file, PathBuf::from("/var/run/token"));

        // Half of a pair does not count.
        let s = discover(&env(&[all[0], all[3]]), &p, NOW).unwrap();
        assert_eq!(s.cache_identity(), "PROFILEKEY");
        assert_eq!(s.origin(), "profile 'default'");
        let Source::WebIdentity { session_name, .. } = discover(&env(&all[3..5]), &p, NOW).unwrap() else { panic!() };
        assert_eq!(session_name, "berth-credhelper-0");
    }

    #[test]
    fn nothing_found() {
        let e = discover(&Env::default(), &profiles("[default]\nregion = x\n", "", None), NOW).unwrap_err();
        assert!(matches!(e, Error::NoCredentials(_)), "{e}");
        let e = discover(&Env::default(), &Profiles::default(), NOW).unwrap_err();
        assert!(matches!(e, Error::NoCredentials(_)), "{e}");
        // A profile AWS_PROFILE names must exist.
        let e = discover(&Env::default(), &profiles("", CREDS, Some("nope")), NOW).unwrap_err();
        assert!(e.to_string().contains("profile 'nope' not found in config, credentials"), "{e}");
    }

    #[test]
    fn role_with_source_profile_chains() {
        let config = "\
[profile app]
role_arn = arn:aws:iam::123456789012:role/app
source_profile = hop
external_id = ext-1
role_session_name = me
duration_seconds = 900
[profile hop]
role_arn = arn:aws:iam::123456789012:role/hop
source_profile = default
[profile self]
role_arn = arn:aws:iam::123456789012:role/self
source_profile = self
aws_access_key_id = SELFKEY
aws_secret_access_key = s
[profile keys-and-role]
role_arn = arn:aws:iam::123456789012:role/kr
source_profile = default
aws_access_key_id = IGNORED
aws_secret_access_key = s
";
        let p = profiles(config, CREDS, Some("app"));
        let s = discover(&Env::default(), &p, NOW).unwrap();
        let Source::AssumeRole { role_arn, session_name, external_id, duration_seconds, source, .. } = &s else {
            panic!("{s:?}")
        };
        assert_eq!(role_arn, "arn:aws:iam::123456789012:role/app");
        assert_eq!((session_name.as_str(), external_id.as_deref()), ("me", Some("ext-1")));
        assert_eq!(duration_seconds.as_deref(), Some("900"));
        let Source::AssumeRole { role_arn, source, .. } = source.as_ref() else { panic!() };
        assert_eq!(role_arn, "arn:aws:iam::123456789012:role/hop");
        assert!(matches!(source.as_ref(), Source::Static { creds, .. } if creds.access_key_id == "PROFILEKEY"));
        assert_eq!(
            s.cache_identity(),
            "arn:aws:iam::123456789012:role/app (external id ext-1) by arn:aws:iam::123456789012:role/hop by PROFILEKEY"
        );

        let s = discover(&Env::default(), &profiles(config, CREDS, Some("self")), NOW).unwrap();
        assert_eq!(s.cache_identity(), "arn:aws:iam::123456789012:role/self by SELFKEY");
        // In the selected profile the role wins over the keys.
        let s = discover(&Env::default(), &profiles(config, CREDS, Some("keys-and-role")), NOW).unwrap();
        assert_eq!(s.cache_identity(), "arn:aws:iam::123456789012:role/kr by PROFILEKEY");
    }

    #[test]
    fn a_source_profile_with_keys_ends_the_chain() {
        let config = "[profile a]\nrole_arn = arn:a\nsource_profile = b\n\
                      [profile b]\nrole_arn = arn:b\nsource_profile = a\naws_access_key_id = BKEY\naws_secret_access_key = s\n";
        let s = discover(&Env::default(), &profiles(config, "", Some("a")), NOW).unwrap();
        assert_eq!(s.cache_identity(), "arn:a by BKEY");
    }

    #[test]
    fn refuses_loops_and_unsupported_sources() {
        let cases = [
            (
                "[profile a]\nrole_arn = arn:a\nsource_profile = b\n[profile b]\nrole_arn = arn:b\nsource_profile = a\n",
                "source_profile loop: a -> b -> a",
            ),
            ("[profile a]\nrole_arn = arn:a\n", "no source_profile, credential_source or web_identity_token_file"),
            ("[profile a]\nrole_arn = arn:a\nsource_profile = ghost\n", "profile 'ghost' not found"),
            (
                "[profile a]\nrole_arn = arn:a\nsource_profile = b\n[profile b]\nregion = x\n",
                "source profile 'b' has no credentials",
            ),
            (
                "[profile a]\nrole_arn = arn:a\ncredential_source = Ec2InstanceMetadata\n",
                "credential_source 'Ec2InstanceMetadata' is not supported",
            ),
            (
                "[profile a]\nrole_arn = arn:a\ncredential_source = Environment\n",
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set",
            ),
            ("[profile a]\nrole_arn = arn:a\nsource_profile = default\nmfa_serial = arn:mfa\n", "MFA"),
            ("[profile a]\ncredential_process = /bin/creds\n", "uses credential_process"),
            ("[profile a]\nsso_session = s\n", "uses SSO"),
            ("[profile a]\naws_access_key_id = K\n", "has aws_access_key_id but no aws_secret_access_key"),
            ("[profile a]\nrole_arn = arn:a\nsource_profile = a\n", "is its own source_profile but has no keys"),
        ];
        for (config, want) in cases {
            let e = discover(&Env::default(), &profiles(config, CREDS, Some("a")), NOW).unwrap_err().to_string();
            assert!(e.contains(want), "{config}: {e}");
        }
    }

    #[test]
    fn profile_web_identity_and_environment_source() {
        let config = "[profile w]\nrole_arn = arn:w\nweb_identity_token_file = ~/token\n\
                      [profile e]\nrole_arn = arn:e\ncredential_source = Environment\n";
        let home = env(&[("HOME", "/home/u")]);
        let s = discover(&home, &profiles(config, "", Some("w")), NOW).unwrap();
        assert!(matches!(&s, Source::WebIdentity { token_file, .. } if token_file == &PathBuf::from("/home/u/token")));
        // The environment's keys sign the role (credential_source) only when the chain reaches
        // the profile: with them set, the chain stops at step 1.
        let keys = env(&[("AWS_ACCESS_KEY_ID", "ENVKEY"), ("AWS_SECRET_ACCESS_KEY", "s")]);
        assert_eq!(discover(&keys, &profiles(config, "", Some("e")), NOW).unwrap().cache_identity(), "ENVKEY");
    }

    #[test]
    fn debug_hides_secrets() {
        let s = Source::Static {
            creds: Credentials::new("AKID", "very-secret", Some("tok-secret".into())),
            origin: "x".into(),
        };
        let d = format!("{s:?}");
        assert!(d.contains("AKID") && !d.contains("very-secret") && !d.contains("tok-secret"), "{d}");
    }
}
