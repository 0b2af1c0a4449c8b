//! Read caches: manifests by (repository, reference) and repositories by name. They only speed
//! up reads: every rule a write obeys is checked by the metadata store inside the write's
//! transaction. Every invalidation bumps a generation, and a reader only fills a cache if the
//! generation it read before its lookup is unchanged (a fill racing an invalidation is dropped,
//! never stored stale).

use crate::ManifestData;
use berth_meta::Namespace;
use std::collections::HashMap;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, RwLock};

/// Total entries above which the cache is cleared (bounds memory at ~4 MiB x this in theory,
/// a few KiB x this in practice).
const MAX_ENTRIES: usize = 4096;

#[derive(Default)]
struct Inner {
    repos: HashMap<i64, HashMap<String, Arc<ManifestData>>>,
    generations: HashMap<i64, u64>,
    entries: usize,
}

impl Inner {
    fn generation(&self, repo: i64) -> u64 {
        self.generations.get(&repo).copied().unwrap_or(0)
    }
}

/// Cache of manifests by (repository, reference).
#[derive(Default)]
pub struct ManifestCache {
    inner: RwLock<Inner>,
}

impl ManifestCache {
    /// A cached manifest.
    pub fn get(&self, repo: i64, reference: &str) -> Option<Arc<ManifestData>> {
        self.inner.read().unwrap().repos.get(&repo)?.get(reference).cloned()
    }

    /// The repository's generation, read before a lookup that may fill the cache.
    pub fn generation(&self, repo: i64) -> u64 {
        self.inner.read().unwrap().generation(repo)
    }

    /// Fill, unless the repository changed since `generation` was read.
    pub fn insert(&self, repo: i64, generation: u64, reference: String, data: Arc<ManifestData>) {
        let mut g = self.inner.write().unwrap();
        if g.generation(repo) != generation {
            return;
        }
        if g.entries >= MAX_ENTRIES {
            g.repos.clear();
            g.entries = 0;
        }
        if g.repos.entry(repo).or_default().insert(reference, data).is_none() {
            g.entries += 1;
        }
    }

    /// Drop the repository's entries after a write.
    pub fn invalidate(&self, repo: i64) {
        let mut g = self.inner.write().unwrap();
        *g.generations.entry(repo).or_default() += 1;
        if let Some(m) = g.repos.remove(&repo) {
            g.entries -= m.len();
        }
    }
}

/// A repository as this node last saw it.
#[derive(Debug)]
pub struct RepoEntry {
    pub id: i64,
    /// The repository's data epoch when this node last looked (see
    /// [`berth_meta::MetadataStore::repository_epoch`]).
    pub epoch: AtomicI64,
    /// When (epoch ms) this node last compared `epoch` with the store's.
    pub checked_at: AtomicI64,
}

/// Repositories by namespace and name.
#[derive(Default)]
pub struct RepoCache {
    inner: RwLock<RepoInner>,
}

#[derive(Default)]
struct RepoInner {
    names: HashMap<Namespace, HashMap<String, Arc<RepoEntry>>>,
    /// Bumped by every removal: fills begun before one are not stored.
    generation: u64,
}

impl RepoCache {
    /// A cached repository.
    pub fn get(&self, ns: &Namespace, name: &str) -> Option<Arc<RepoEntry>> {
        self.inner.read().unwrap().names.get(ns)?.get(name).cloned()
    }

    /// The generation, read before a lookup that may fill the cache.
    pub fn generation(&self) -> u64 {
        self.inner.read().unwrap().generation
    }

    /// Fill, unless an entry was removed since `generation` was read.
    pub fn insert(&self, generation: u64, ns: &Namespace, name: &str, entry: Arc<RepoEntry>) {
        let mut g = self.inner.write().unwrap();
        if g.generation != generation {
            return;
        }
        g.names.entry(ns.clone()).or_default().insert(name.to_string(), entry);
    }

    /// Forget a repository (deleted, or found changed or gone).
    pub fn remove(&self, ns: &Namespace, name: &str) {
        let mut g = self.inner.write().unwrap();
        g.generation += 1;
        if let Some(m) = g.names.get_mut(ns) {
            m.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64) -> Arc<RepoEntry> {
        Arc::new(RepoEntry { id, epoch: AtomicI64::new(0), checked_at: AtomicI64::new(0) })
    }

    #[test]
    fn a_repository_fill_racing_a_removal_is_dropped() {
        let c = RepoCache::default();
        let ns = Namespace { account_id: "1".into(), region: "r".into() };
        let g = c.generation();
        c.remove(&ns, "app"); // e.g. deleted while the filler was reading the old row
        c.insert(g, &ns, "app", entry(1));
        assert!(c.get(&ns, "app").is_none(), "a stale fill must not be stored");
        let g = c.generation();
        c.insert(g, &ns, "app", entry(2));
        assert_eq!(c.get(&ns, "app").map(|e| e.id), Some(2));
    }

    #[test]
    fn a_manifest_fill_racing_an_invalidation_is_dropped() {
        let c = ManifestCache::default();
        let data = || {
            Arc::new(ManifestData {
                digest: "sha256:0000000000000000000000000000000000000000000000000000000000000000".parse().unwrap(),
                media_type: "x".into(),
                bytes: bytes::Bytes::from_static(b"{}"),
                pull_recorded_at: AtomicI64::new(0),
            })
        };
        let g = c.generation(7);
        c.invalidate(7);
        c.insert(7, g, "latest".into(), data());
        assert!(c.get(7, "latest").is_none());
        c.insert(7, c.generation(7), "latest".into(), data());
        assert!(c.get(7, "latest").is_some());
    }
}
