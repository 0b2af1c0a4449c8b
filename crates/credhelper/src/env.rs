//! The process environment, captured once so that every rule is testable with a made-up one.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Environment variables. An empty value counts as unset, as in the AWS SDKs. `Debug` prints
/// the names only (values may be secrets).
#[derive(Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// This process's environment (variables that are not UTF-8 are left out).
    pub fn from_process() -> Env {
        Env {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// An environment made of `pairs` only.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Env {
        Env { vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// The value of `name`, `None` when unset or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// The first of `names` that is set.
    pub fn first(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| self.get(n))
    }

    /// `$HOME`.
    pub fn home(&self) -> Option<PathBuf> {
        self.get("HOME").map(PathBuf::from)
    }

    /// `path` with a leading `~/` replaced by `$HOME/`, as the AWS SDKs expand file settings.
    pub fn expand_home(&self, path: &str) -> PathBuf {
        match (path.strip_prefix("~/"), self.home()) {
            (Some(rest), Some(home)) => home.join(rest),
            _ => PathBuf::from(path),
        }
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.vars.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_unset_and_debug_hides_values() {
        let env = Env::from_pairs([("A", ""), ("B", "b"), ("HOME", "/home/u"), ("S", "secret-value")]);
        assert_eq!(env.get("A"), None);
        assert_eq!(env.first(&["A", "B"]), Some("b"));
        assert_eq!(env.expand_home("~/x/y"), PathBuf::from("/home/u/x/y"));
        assert_eq!(env.expand_home("/abs"), PathBuf::from("/abs"));
        assert!(!format!("{env:?}").contains("secret-value"));
    }
}
