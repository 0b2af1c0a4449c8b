//! The token cache: one small JSON file per (endpoint, registry host, credential identity) in
//! `$XDG_CACHE_HOME/berth` (else `~/.cache/berth`), directory 0700, files 0600, written
//! atomically (temporary file, fsync, rename), reused until [`REFRESH_MARGIN`] before the
//! token expires. Only successful answers are stored.
//!
//! Concurrent helpers (docker pulling several layers, kubelet starting pods) may all miss and
//! all store: each rename is atomic, the last one wins, every reader sees a whole file.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::ecr::AuthorizationToken;
use crate::env::Env;

/// A cached token is used until this long before it expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// What a token is cached under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// The ECR endpoint it came from.
    pub endpoint: String,
    /// The registry host it is for.
    pub host: String,
    /// Whose it is ([`crate::credentials::Source::cache_identity`]: the access key id, or the
    /// role and what assumed it).
    pub identity: String,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    key: Key,
    token: AuthorizationToken,
}

/// Whether a token expiring at `expires_at` (epoch seconds) is still worth using at `now`.
pub fn is_fresh(expires_at: f64, now: SystemTime) -> bool {
    let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    now + REFRESH_MARGIN.as_secs_f64() < expires_at
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// `$XDG_CACHE_HOME/berth` (when absolute, as the XDG spec requires), else
    /// `$HOME/.cache/berth`; `None` when neither is known.
    pub fn from_env(env: &Env) -> Option<Cache> {
        let base = env
            .get("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| env.home().map(|h| h.join(".cache")))?;
        Some(Cache { dir: base.join("berth") })
    }

    /// A cache in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Cache {
        Cache { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `key`: its name is a hash, so that nothing about the key shows in it.
    pub fn path(&self, key: &Key) -> PathBuf {
        let mut h = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [&key.endpoint, &key.host, &key.identity] {
            h.update(&(part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        self.dir.join(format!("token-{}.json", hex::encode(&h.finish().as_ref()[..16])))
    }

    /// The cached token for `key`, if there is one still fresh at `now`. A missing, unreadable
    /// or foreign file is a miss.
    pub fn load(&self, key: &Key, now: SystemTime) -> Option<AuthorizationToken> {
        let bytes = fs::read(self.path(key)).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        (entry.key == *key && is_fresh(entry.token.expires_at, now) && entry.token.decode().is_ok())
            .then_some(entry.token)
    }

    /// Stores `token` for `key`.
    pub fn store(&self, key: &Key, token: &AuthorizationToken) -> std::io::Result<()> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        // An existing directory keeps its mode otherwise; ours is for us only.
        if fs::metadata(&self.dir)?.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))?;
        }
        let path = self.path(key);
        let mut suffix = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut suffix)
            .map_err(|_| std::io::Error::other("no randomness"))?;
        let tmp = self.dir.join(format!(".tmp-{}-{}", std::process::id(), hex::encode(suffix)));
        let bytes = serde_json::to_vec(&Entry { key: key.clone(), token: token.clone() })?;
        let written = (|| {
            let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn token(expires_at: f64) -> AuthorizationToken {
        AuthorizationToken {
            authorization_token: base64::engine::general_purpose::STANDARD.encode("AWS:secret-password"),
            expires_at,
        }
    }

    fn key(identity: &str) -> Key {
        Key { endpoint: "http://127.0.0.1:5000/".into(), host: "127.0.0.1:5000".into(), identity: identity.into() }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn fresh_until_five_minutes_before_expiry() {
        let exp = 10_000.0;
        assert!(is_fresh(exp, at(0)));
        assert!(is_fresh(exp, at(10_000 - 301)));
        assert!(!is_fresh(exp, at(10_000 - 300)));
        assert!(!is_fresh(exp, at(20_000)));
    }

    #[test]
    fn stores_and_loads_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::at(tmp.path().join("a/berth"));
        let k = key("AKID");
        assert!(cache.load(&k, at(0)).is_none());
        cache.store(&k, &token(10_000.0)).unwrap();
        assert_eq!(cache.load(&k, at(1_000)), Some(token(10_000.0)));
        // Another identity, host or endpoint: a miss.
        assert!(cache.load(&key("OTHER"), at(1_000)).is_none());
        assert!(cache.load(&Key { host: "other:5000".into(), ..k.clone() }, at(1_000)).is_none());
        // Too close to expiry: a miss.
        assert!(cache.load(&k, at(9_800)).is_none());
        // Modes, and no temporary file left; the file name tells nothing.
        assert_eq!(fs::metadata(cache.dir()).unwrap().permissions().mode() & 0o777, 0o700);
        let files: Vec<_> = fs::read_dir(cache.dir()).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files, vec![cache.path(&k)]);
        assert_eq!(fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!files[0].to_string_lossy().contains("AKID"));
        // Replaced atomically.
        cache.store(&k, &token(20_000.0)).unwrap();
        assert_eq!(cache.load(&k, at(15_000)), Some(token(20_000.0)));
        assert_eq!(fs::read_dir(cache.dir()).unwrap().count(), 1);
    }

    #[test]
    fn corrupt_or_foreign_files_are_misses() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::at(tmp.path());
        let k = key("AKID");
        fs::write(cache.path(&k), b"{not json").unwrap();
        assert!(cache.load(&k, at(0)).is_none());
        let foreign = serde_json::to_vec(&Entry { key: key("OTHER"), token: token(10_000.0) }).unwrap();
        fs::write(cache.path(&k), foreign).unwrap();
        assert!(cache.load(&k, at(0)).is_none());
    }

    #[test]
    fn tightens_a_loose_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("berth");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        Cache::at(&dir).store(&key("K"), &token(1.0)).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn directory_from_the_environment() {
        let c = Cache::from_env(&Env::from_pairs([("XDG_CACHE_HOME", "/x/cache"), ("HOME", "/home/u")])).unwrap();
        assert_eq!(c.dir(), Path::new("/x/cache/berth"));
        let c = Cache::from_env(&Env::from_pairs([("XDG_CACHE_HOME", "relative"), ("HOME", "/home/u")])).unwrap();
        assert_eq!(c.dir(), Path::new("/home/u/.cache/berth"));
        assert!(Cache::from_env(&Env::default()).is_none());
    }
}
