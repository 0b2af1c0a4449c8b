//! Manifest cache for the read path. Manifest bytes are immutable per digest, but what a tag
//! or a repository holds changes, so every write to a repository invalidates that repository's
//! entries and bumps its generation; a reader only fills the cache if no write happened since
//! it began (no stale fills).

use crate::ManifestData;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Total entries above which the cache is cleared (bounds memory at ~4 MiB x this in theory,
/// a few KiB x this in practice).
const MAX_ENTRIES: usize = 4096;

#[derive(Default)]
struct Inner {
    repos: HashMap<i64, HashMap<String, Arc<ManifestData>>>,
    generations: HashMap<i64, u64>,
    /// Bumped by [`ManifestCache::clear`]; part of every generation.
    global: u64,
    entries: usize,
}

impl Inner {
    fn generation(&self, repo: i64) -> u64 {
        (self.global << 32).wrapping_add(self.generations.get(&repo).copied().unwrap_or(0))
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

    /// Drop everything (another node wrote); fills begun before are not stored.
    pub fn clear(&self) {
        let mut g = self.inner.write().unwrap();
        g.global += 1;
        g.repos.clear();
        g.entries = 0;
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
