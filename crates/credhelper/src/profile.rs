//! Named profiles from the shared files, merged as the AWS SDKs merge them.
//!
//! - The config file (`AWS_CONFIG_FILE`, else `~/.aws/config`) names profiles `[profile NAME]`,
//!   except `[default]` (`[profile default]` also works); other sections (`[sso-session x]`,
//!   `[services x]`, bare `[name]`) are not profiles.
//! - The credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`) names them
//!   `[NAME]`; where both files set a key of the same profile, the credentials file wins.
//! - A missing file is no error (it just has no profiles).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::env::Env;
use crate::ini;

/// The profile used when `AWS_PROFILE` is not set.
pub const DEFAULT_PROFILE: &str = "default";

/// One profile's settings (lowercase keys).
pub type Profile = BTreeMap<String, String>;

/// All profiles of the shared files, and which one is selected.
#[derive(Clone, Default)]
pub struct Profiles {
    profiles: BTreeMap<String, Profile>,
    selected: String,
    /// Whether `AWS_PROFILE` chose the profile (then it must exist).
    explicit: bool,
    /// The files read, for messages.
    files: Vec<PathBuf>,
}

impl std::fmt::Debug for Profiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profiles")
            .field("names", &self.profiles.keys().collect::<Vec<_>>())
            .field("selected", &self.selected)
            .finish_non_exhaustive()
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Config(format!("cannot read {}: {e}", path.display()))),
    }
}

/// The name of the profile a config-file section defines, if it defines one.
fn config_profile_name(section: &str) -> Option<&str> {
    if section == DEFAULT_PROFILE {
        return Some(DEFAULT_PROFILE);
    }
    let rest = section.strip_prefix("profile")?;
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    Some(rest.trim()).filter(|n| !n.is_empty())
}

impl Profiles {
    /// Reads the shared files the environment points at.
    pub fn load(env: &Env) -> Result<Profiles, Error> {
        let config = match env.get("AWS_CONFIG_FILE") {
            Some(p) => Some(env.expand_home(p)),
            None => env.home().map(|h| h.join(".aws/config")),
        };
        let credentials = match env.get("AWS_SHARED_CREDENTIALS_FILE") {
            Some(p) => Some(env.expand_home(p)),
            None => env.home().map(|h| h.join(".aws/credentials")),
        };
        let read = |path: &Option<PathBuf>| -> Result<Option<(PathBuf, ini::Sections)>, Error> {
            let Some(path) = path else { return Ok(None) };
            let Some(text) = read_optional(path)? else { return Ok(None) };
            let sections = ini::parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            Ok(Some((path.clone(), sections)))
        };
        Ok(Self::from_sections(read(&config)?, read(&credentials)?, env.get("AWS_PROFILE")))
    }

    /// Merges parsed files; `profile` is `AWS_PROFILE`.
    pub fn from_sections(
        config: Option<(PathBuf, ini::Sections)>,
        credentials: Option<(PathBuf, ini::Sections)>,
        profile: Option<&str>,
    ) -> Profiles {
        let mut out = Profiles {
            selected: profile.unwrap_or(DEFAULT_PROFILE).to_owned(),
            explicit: profile.is_some(),
            ..Profiles::default()
        };
        if let Some((path, sections)) = config {
            out.files.push(path);
            // `[default]` first so that `[profile default]` wins over it.
            if let Some(d) = sections.get(DEFAULT_PROFILE) {
                out.profiles.entry(DEFAULT_PROFILE.to_owned()).or_default().extend(d.clone());
            }
            for (section, settings) in &sections {
                if section == DEFAULT_PROFILE {
                    continue;
                }
                if let Some(name) = config_profile_name(section) {
                    out.profiles.entry(name.to_owned()).or_default().extend(settings.clone());
                }
            }
        }
        if let Some((path, sections)) = credentials {
            out.files.push(path);
            for (name, settings) in sections {
                out.profiles.entry(name).or_default().extend(settings);
            }
        }
        out
    }

    /// The selected profile's name (`AWS_PROFILE`, else `default`).
    pub fn selected_name(&self) -> &str {
        &self.selected
    }

    /// Whether `AWS_PROFILE` chose the profile.
    pub fn is_explicit(&self) -> bool {
        self.explicit
    }

    /// The selected profile, if it exists.
    pub fn selected(&self) -> Option<&Profile> {
        self.profiles.get(&self.selected)
    }

    /// A profile by name.
    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }

    /// A setting of the selected profile.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.selected().and_then(|p| p.get(key)).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// The files read, for messages (`~/.aws/config, ~/.aws/credentials`).
    pub fn describe_files(&self) -> String {
        if self.files.is_empty() {
            return "no shared config or credentials file".to_owned();
        }
        self.files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(config: &str, credentials: &str, profile: Option<&str>) -> Profiles {
        Profiles::from_sections(
            Some((PathBuf::from("config"), ini::parse(config).unwrap())),
            Some((PathBuf::from("credentials"), ini::parse(credentials).unwrap())),
            profile,
        )
    }

    #[test]
    fn config_sections_need_the_profile_prefix() {
        let p = load(
            "[default]\nregion = us-west-2\n[profile dev]\nregion = eu-west-1\n[ops]\nregion = x\n\
             [sso-session s]\nsso_region = y\n[profilex]\nregion = z\n",
            "",
            None,
        );
        assert_eq!(p.selected_name(), "default");
        assert_eq!(p.setting("region"), Some("us-west-2"));
        assert_eq!(p.get("dev").unwrap()["region"], "eu-west-1");
        assert!(p.get("ops").is_none() && p.get("s").is_none() && p.get("profilex").is_none());
        assert!(p.get("sso-session s").is_none());
    }

    #[test]
    fn credentials_file_wins_and_profile_default_beats_default() {
        let p = load(
            "[profile default]\nregion = from-profile-default\n[default]\nregion = from-default\n\
             aws_access_key_id = CONFIGKEY\n[profile dev]\nregion = eu-west-1\n",
            "[default]\naws_access_key_id = CREDKEY\n[dev]\naws_secret_access_key = s\n",
            Some("dev"),
        );
        let d = p.get("default").unwrap();
        assert_eq!(d["region"], "from-profile-default");
        assert_eq!(d["aws_access_key_id"], "CREDKEY");
        assert!(p.is_explicit());
        assert_eq!(p.setting("region"), Some("eu-west-1"));
        assert_eq!(p.setting("aws_secret_access_key"), Some("s"));
        assert_eq!(p.describe_files(), "config, credentials");
    }

    #[test]
    fn loads_files_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".aws")).unwrap();
        std::fs::write(dir.path().join(".aws/config"), "[profile p]\nregion = ap-south-1\n").unwrap();
        let home = dir.path().to_str().unwrap();
        let env = Env::from_pairs([("HOME", home), ("AWS_PROFILE", "p")]);
        let p = Profiles::load(&env).unwrap();
        assert_eq!(p.setting("region"), Some("ap-south-1"));
        // AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE, with `~/` expanded.
        std::fs::write(dir.path().join("creds"), "[p]\naws_access_key_id = K\n").unwrap();
        let env = Env::from_pairs([
            ("HOME", home),
            ("AWS_PROFILE", "p"),
            ("AWS_CONFIG_FILE", "~/missing"),
            ("AWS_SHARED_CREDENTIALS_FILE", "~/creds"),
        ]);
        let p = Profiles::load(&env).unwrap();
        assert_eq!(p.setting("region"), None);
        assert_eq!(p.setting("aws_access_key_id"), Some("K"));
        // A broken file is an error naming the file and line.
        std::fs::write(dir.path().join("creds"), "[p]\nbroken\n").unwrap();
        let e = Profiles::load(&env).unwrap_err().to_string();
        assert!(e.contains("creds: line 2"), "{e}");
    }
}
