//! Garbage collection of blobs: the metadata side of the protocol in docs/gc.md.
//!
//! Every party that changes what a digest's bytes or rows are first upserts the digest's mutex
//! row (`blob_holds(digest, '')`), which serializes it with every other party on that digest
//! (a row lock on PostgreSQL, the write lock on SQLite); what it checks after that statement it
//! sees as committed. An upload holds the digest (`upload:<id>`) from before it writes the final
//! bytes until it links them; a deletion takes the blob's rows and leaves a tombstone (`gc`)
//! until its bytes are gone. A deletion never starts while a hold exists; an upload never starts
//! while a tombstone exists.
//!
//! A tombstone's `created_at` is its owner's deadline and fencing token: its owner deletes the
//! bytes only until that time, releases it only if `created_at` is still its own, and anyone may
//! claim a tombstone whose deadline is well past (its owner died or stalled) by moving
//! `created_at` to a deadline of its own.

use crate::Result;
use async_trait::async_trait;

/// Holder name of a deletion in flight.
pub const TOMBSTONE: &str = "gc";

/// Holder name of a move between the blob stores (or of the clean-up of a redundant copy) in
/// flight. Its `created_at` is its owner's deadline and fencing token, as a tombstone's: the
/// store that the blob's `location` names holds the bytes; the other one is being written or
/// emptied, and only the holder touches it.
pub const MOVE: &str = "move";

/// Which store holds a blob's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Location {
    /// The blob store.
    Standard,
    /// The archive store (only archived images reference the blob).
    Archive,
}

impl Location {
    /// The value stored in `blobs.location`.
    pub fn as_str(self) -> &'static str {
        match self {
            Location::Standard => "standard",
            Location::Archive => "archive",
        }
    }

    /// Parse a stored value (anything else is standard).
    pub fn parse(s: &str) -> Location {
        if s == "archive" { Location::Archive } else { Location::Standard }
    }

    /// The other store.
    pub fn other(self) -> Location {
        match self {
            Location::Standard => Location::Archive,
            Location::Archive => Location::Standard,
        }
    }
}

/// What a move hold is taken for ([`GcStore::move_hold`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveGoal {
    /// Copy the bytes to this store, then make it the blob's location. To the archive only
    /// when archived images, and nothing else, reference the blob.
    To(Location),
    /// Remove the copy in the store that is not the blob's location.
    Tidy,
}

/// What [`GcStore::move_hold`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveStart {
    /// The hold is the caller's.
    Held(MoveHold),
    /// A deletion, a move or an upload of the blob is in flight: try again later.
    Busy,
    /// Nothing to do: the blob is gone, already there, or does not qualify.
    NotNeeded,
}

/// A move hold taken: the blob's size and location, and the hold's deadline (its token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoveHold {
    pub size: u64,
    pub location: Location,
    pub since: i64,
}

/// A blob taken for deletion: its rows are gone and its tombstone is set; its bytes must be
/// deleted, then [`GcStore::gc_release`] called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenBlob {
    pub digest: String,
    pub size: u64,
}

/// Tombstones claimed by one party: the digests, and the `created_at` every one of them now has
/// (the claim's fencing token for [`GcStore::gc_release`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub digests: Vec<String>,
    pub since: i64,
}

/// Garbage collection of blobs.
#[async_trait]
pub trait GcStore: Send + Sync + 'static {
    /// Hold `digest` for `holder` (an upload about to write its bytes): `false` (nothing
    /// changes) when a deletion or a move of the digest's bytes is in flight.
    async fn hold_blob(&self, digest: &str, holder: &str, now: i64) -> Result<bool>;
    /// Drop a hold (an upload that will not link its bytes).
    async fn release_hold(&self, digest: &str, holder: &str) -> Result<()>;
    /// Repositories with links created before `before` that no manifest of the repository
    /// references, by id after `after`, at most `limit`.
    async fn gc_repositories_with_stale_links(&self, before: i64, after: i64, limit: u32) -> Result<Vec<i64>>;
    /// Remove the repository's links created before `before` that no manifest of it references
    /// (serialized with the repository's manifest writes); how many went.
    async fn gc_unlink_stale(&self, repo_id: i64, before: i64) -> Result<u64>;
    /// Record as candidates (at `now`) the blobs no repository links; how many are new.
    async fn gc_mark(&self, now: i64) -> Result<u64>;
    /// Candidates marked before `before`, at most `limit`.
    async fn gc_due(&self, before: i64, limit: u32) -> Result<Vec<String>>;
    /// Take the due candidates among `digests` for deletion, in one transaction: each one only
    /// if it is still marked before `marked_before`, no repository links it, no manifest
    /// references it, no move hold and no upload hold newer than `holds_after` exist; its blob row goes and its
    /// tombstone is set. Candidates that fail a check are dropped from the candidates (they are
    /// found again if they become garbage again). Returns the taken ones.
    async fn gc_take(
        &self,
        digests: &[String],
        marked_before: i64,
        holds_after: i64,
        now: i64,
    ) -> Result<Vec<TakenBlob>>;
    /// Drop the tombstones of blobs whose bytes are gone, set (or claimed) at `since`, and the
    /// mutex rows of those digests. A tombstone someone else claimed since stays.
    async fn gc_release(&self, digests: &[String], since: i64) -> Result<()>;
    /// Claim at most `limit` tombstones whose deadline (`created_at`) is before `stale_before`
    /// (their owner died mid-deletion): their `created_at` becomes `now` (the caller's deadline),
    /// and the caller owns their deletion.
    async fn gc_claim_stale(&self, stale_before: i64, now: i64, limit: u32) -> Result<Claimed>;
    /// Claim the tombstone of `digest` if its deadline is before `stale_before` (as
    /// [`GcStore::gc_claim_stale`]).
    async fn gc_claim_stale_one(&self, digest: &str, stale_before: i64, now: i64) -> Result<bool>;
    /// What a pass with links cut at `before` would do (nothing changes): links it would remove,
    /// and the blobs (count, bytes) left with no link and no reference after that.
    async fn gc_preview(&self, before: i64) -> Result<(u64, u64, u64)>;
    /// Remove holds and mutex rows created before `before` whose digest has no other hold (left
    /// by uploads that died between their hold and their link); how many went.
    async fn gc_expire_holds(&self, before: i64) -> Result<u64>;
    /// Of `digests` (bytes found in storage), those with no blob row, no tombstone and no hold
    /// newer than `holds_after`, as committed now (a read: nothing is locked).
    async fn gc_orphans(&self, digests: &[String], holds_after: i64) -> Result<Vec<String>>;
    /// Take `digests` (found by [`GcStore::gc_orphans`]) for deletion, in one transaction: each
    /// one only if, under its mutex, it still has no blob row, no tombstone and no hold newer
    /// than `holds_after`; its tombstone is set at `now`. Returns the taken ones.
    async fn gc_take_orphans(&self, digests: &[String], holds_after: i64, now: i64) -> Result<Vec<String>>;
    /// Untagged manifests with a `subject` that their repository no longer holds, pushed
    /// before `pushed_before`, that no index lists: (repository id, digest), at most `limit`.
    async fn gc_dangling_referrers(&self, pushed_before: i64, limit: u32) -> Result<Vec<(i64, String)>>;
    /// Delete such a referrer if, in this transaction, it still is one (untagged, its subject
    /// absent, listed by no index): its events are those of an image deletion. `false` when it
    /// is not (or no longer there).
    async fn delete_dangling_referrer(&self, repo_id: i64, digest: &str, now: i64) -> Result<bool>;
    /// Take a move hold on `digest` until `deadline` (its token) for `goal`, in one transaction
    /// under the digest's mutex: only if the blob exists, no tombstone or move hold exists, no
    /// upload hold newer than `holds_after` exists, and the goal applies (a move changes the
    /// location; to the archive, at least one manifest references the blob and every manifest
    /// that does is archived). Otherwise nothing changes, and the answer says whether another
    /// party is busy with the blob or there is nothing to do.
    async fn move_hold(
        &self,
        digest: &str,
        goal: MoveGoal,
        holds_after: i64,
        deadline: i64,
        now: i64,
    ) -> Result<MoveStart>;
    /// Make `to` the blob's location, if the move hold set at `since` is still the caller's and
    /// (to the archive) the blob still qualifies; the hold stays (the copy in the other store
    /// is to be deleted under it). `false`: nothing changed.
    async fn move_commit(&self, digest: &str, to: Location, since: i64, now: i64) -> Result<bool>;
    /// Move the deadline of the caller's move hold from `since` to `until`: `false` when the
    /// hold is no longer the caller's.
    async fn move_renew(&self, digest: &str, since: i64, until: i64) -> Result<bool>;
    /// Drop the caller's move hold (set at `since`).
    async fn move_release(&self, digest: &str, since: i64) -> Result<()>;
    /// Claim at most `limit` move holds whose deadline is before `stale_before` (their owner
    /// died): their deadline becomes `now`; returns them with the blob's location (the copy in
    /// the other store is the claimer's to delete).
    async fn move_claim_stale(&self, stale_before: i64, now: i64, limit: u32) -> Result<Vec<(String, Location)>>;
    /// Claim the move hold of `digest` as [`GcStore::move_claim_stale`] does.
    async fn move_claim_stale_one(&self, digest: &str, stale_before: i64, now: i64) -> Result<Option<Location>>;
    /// The blobs manifest `digest` of the repository references, with their locations.
    async fn manifest_blob_locations(&self, repo_id: i64, digest: &str) -> Result<Vec<(String, Location)>>;
    /// Whether any blob is in the archive store.
    async fn any_archived_blob(&self) -> Result<bool>;
    /// Of `digests`, those with a blob row, with its location.
    async fn blob_locations(&self, digests: &[String]) -> Result<Vec<(String, Location)>>;
    /// Take the cluster's garbage collection lease for `owner` until `until` if it is free,
    /// expired (before `now`) or already `owner`'s: `None`. Otherwise nothing changes and the
    /// holder (owner, started at) is returned.
    async fn gc_pass_acquire(&self, owner: &str, now: i64, until: i64) -> Result<Option<(String, i64)>>;
    /// Extend `owner`'s lease to `until`: `false` if `owner` no longer holds it.
    async fn gc_pass_renew(&self, owner: &str, until: i64) -> Result<bool>;
    /// Drop `owner`'s lease (nothing if someone else holds it).
    async fn gc_pass_release(&self, owner: &str) -> Result<()>;
}

/// Implement [`GcStore`] for `$store` on database `$db` (portable SQL).
macro_rules! portable_gc {
    ($store:ty, $db:ty) => {
        /// Upsert the digest's mutex row: until the transaction ends, every other party on the
        /// digest waits here.
        async fn blob_mutex(tx: &mut sqlx::Transaction<'static, $db>, digest: &str, now: i64) -> Result<()> {
            sqlx::query(
                "INSERT INTO blob_holds (digest, holder, created_at) VALUES ($1, '', $2) \
                 ON CONFLICT (digest, holder) DO UPDATE SET created_at = excluded.created_at",
            )
            .bind(digest)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        /// Upsert `holder`'s row (`''`: the mutex row, `'gc'`: a tombstone) for each of `digests`
        /// at `created_at`, in the order given.
        async fn set_holds(
            tx: &mut sqlx::Transaction<'static, $db>,
            digests: &[&str],
            holder: &str,
            created_at: i64,
        ) -> Result<()> {
            if digests.is_empty() {
                return Ok(());
            }
            let mut q = sqlx::QueryBuilder::<$db>::new("INSERT INTO blob_holds (digest, holder, created_at) ");
            q.push_values(digests, |mut b, d| {
                b.push_bind(*d).push_bind(holder).push_bind(created_at);
            });
            q.push(" ON CONFLICT (digest, holder) DO UPDATE SET created_at = excluded.created_at");
            q.build().execute(&mut **tx).await?;
            Ok(())
        }

        /// `digests` sorted and deduplicated, with their mutex rows upserted in that order (two
        /// parties locking several digests lock them in the same order).
        async fn lock_digests(
            tx: &mut sqlx::Transaction<'static, $db>,
            digests: &[String],
            now: i64,
        ) -> Result<Vec<String>> {
            let mut sorted: Vec<String> = digests.to_vec();
            sorted.sort();
            sorted.dedup();
            let refs: Vec<&str> = sorted.iter().map(String::as_str).collect();
            set_holds(tx, &refs, "", now).await?;
            Ok(sorted)
        }

        /// Whether a digest's blob qualifies for the archive: a manifest references it, and every
        /// manifest that does is archived.
        async fn only_archived_refs(tx: &mut sqlx::Transaction<'static, $db>, digest: &str) -> Result<bool> {
            let row = sqlx::query(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN m.image_status = 'ARCHIVED' THEN 0 ELSE 1 END), 0) \
                 FROM manifest_refs r JOIN manifests m ON m.repo_id = r.repo_id AND m.digest = r.manifest_digest \
                 WHERE r.ref_digest = $1 AND r.kind = 'b'",
            )
            .bind(digest)
            .fetch_one(&mut **tx)
            .await?;
            let (refs, active): (i64, i64) = (row.get(0), row.get(1));
            Ok(refs > 0 && active == 0)
        }

        async fn location_of(
            conn: &mut <$db as sqlx::Database>::Connection,
            digest: &str,
        ) -> Result<Option<(u64, crate::gc::Location)>> {
            let row = sqlx::query("SELECT size, location FROM blobs WHERE digest = $1")
                .bind(digest)
                .fetch_optional(&mut *conn)
                .await?;
            Ok(row.map(|r| (r.get::<i64, _>(0) as u64, crate::gc::Location::parse(&r.get::<String, _>(1)))))
        }

        async fn tombstoned(tx: &mut sqlx::Transaction<'static, $db>, digest: &str) -> Result<bool> {
            Ok(sqlx::query("SELECT 1 FROM blob_holds WHERE digest = $1 AND holder = 'gc'")
                .bind(digest)
                .fetch_optional(&mut **tx)
                .await?
                .is_some())
        }

        /// Whether a deletion (tombstone) or a move of the digest's bytes is in flight.
        async fn bytes_busy(tx: &mut sqlx::Transaction<'static, $db>, digest: &str) -> Result<bool> {
            Ok(sqlx::query("SELECT 1 FROM blob_holds WHERE digest = $1 AND holder IN ('gc', 'move')")
                .bind(digest)
                .fetch_optional(&mut **tx)
                .await?
                .is_some())
        }

        /// Of `digests`, those with no blob row, no tombstone and no hold newer than `holds_after`.
        async fn orphans_among(
            conn: &mut <$db as sqlx::Database>::Connection,
            digests: &[String],
            holds_after: i64,
        ) -> Result<Vec<String>> {
            if digests.is_empty() {
                return Ok(Vec::new());
            }
            let mut known = std::collections::HashSet::new();
            for sql in [
                "SELECT digest FROM blobs WHERE digest IN (",
                "SELECT digest FROM blob_holds WHERE holder <> '' AND (holder IN ('gc', 'move') OR created_at > $1) AND digest IN (",
            ] {
                let mut q = sqlx::QueryBuilder::<$db>::new("");
                if sql.contains("$1") {
                    let (head, tail) = sql.split_once("$1").unwrap();
                    q.push(head).push_bind(holds_after).push(tail);
                } else {
                    q.push(sql);
                }
                let mut list = q.separated(", ");
                for d in digests {
                    list.push_bind(d.as_str());
                }
                q.push(")");
                for r in q.build().fetch_all(&mut *conn).await? {
                    known.insert(r.get::<String, _>(0));
                }
            }
            let mut out: Vec<String> = digests.iter().filter(|d| !known.contains(*d)).cloned().collect();
            out.sort();
            out.dedup();
            Ok(out)
        }

        #[async_trait]
        impl crate::gc::GcStore for $store {
            async fn hold_blob(&self, digest: &str, holder: &str, now: i64) -> Result<bool> {
                let mut tx = self.begin().await?;
                blob_mutex(&mut tx, digest, now).await?;
                if bytes_busy(&mut tx, digest).await? {
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO blob_holds (digest, holder, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (digest, holder) DO UPDATE SET created_at = excluded.created_at",
                )
                .bind(digest)
                .bind(holder)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn release_hold(&self, digest: &str, holder: &str) -> Result<()> {
                sqlx::query("DELETE FROM blob_holds WHERE digest = $1 AND holder = $2")
                    .bind(digest)
                    .bind(holder)
                    .execute(&self.write)
                    .await?;
                Ok(())
            }

            async fn gc_repositories_with_stale_links(&self, before: i64, after: i64, limit: u32) -> Result<Vec<i64>> {
                let rows = sqlx::query(
                    "SELECT DISTINCT rb.repo_id FROM repo_blobs rb WHERE rb.created_at < $1 AND rb.repo_id > $2 \
                     AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.ref_digest = rb.digest AND r.repo_id = rb.repo_id) \
                     ORDER BY rb.repo_id LIMIT $3",
                )
                .bind(before)
                .bind(after)
                .bind(limit as i64)
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(|r| r.get(0)).collect())
            }

            async fn gc_unlink_stale(&self, repo_id: i64, before: i64) -> Result<u64> {
                let mut tx = self.begin().await?;
                // Serialized with every manifest write of the repository: a manifest that
                // references a link commits before (the link stays) or after (it fails on the
                // missing link, nothing half-written).
                if touch_repo(&mut tx, repo_id).await?.is_none() {
                    return Ok(0);
                }
                let n = sqlx::query(
                    "DELETE FROM repo_blobs WHERE repo_id = $1 AND created_at < $2 \
                     AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.ref_digest = repo_blobs.digest AND r.repo_id = $1)",
                )
                .bind(repo_id)
                .bind(before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(n)
            }

            async fn gc_mark(&self, now: i64) -> Result<u64> {
                let n = sqlx::query(
                    "INSERT INTO gc_candidates (digest, marked_at) \
                     SELECT b.digest, $1 FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM repo_blobs rb WHERE rb.digest = b.digest) \
                     ON CONFLICT (digest) DO NOTHING",
                )
                .bind(now)
                .execute(&self.write)
                .await?
                .rows_affected();
                Ok(n)
            }

            async fn gc_due(&self, before: i64, limit: u32) -> Result<Vec<String>> {
                let rows = sqlx::query(
                    "SELECT digest FROM gc_candidates WHERE marked_at < $1 ORDER BY marked_at, digest LIMIT $2",
                )
                .bind(before)
                .bind(limit as i64)
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(|r| r.get(0)).collect())
            }

            async fn gc_take(
                &self,
                digests: &[String],
                marked_before: i64,
                holds_after: i64,
                now: i64,
            ) -> Result<Vec<crate::gc::TakenBlob>> {
                if digests.is_empty() {
                    return Ok(Vec::new());
                }
                let mut tx = self.begin().await?;
                let sorted = lock_digests(&mut tx, digests, now).await?;
                // A new statement: it sees everything the parties serialized before us committed.
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "DELETE FROM blobs WHERE digest IN (SELECT c.digest FROM gc_candidates c WHERE c.marked_at < ",
                );
                q.push_bind(marked_before);
                q.push(
                    " AND NOT EXISTS (SELECT 1 FROM repo_blobs rb WHERE rb.digest = c.digest) \
                     AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.ref_digest = c.digest AND r.kind = 'b') \
                     AND NOT EXISTS (SELECT 1 FROM blob_holds h WHERE h.digest = c.digest \
                     AND (h.holder = 'move' OR (h.holder NOT IN ('', 'gc') AND h.created_at > ",
                );
                q.push_bind(holds_after);
                q.push("))) AND c.digest IN (");
                let mut list = q.separated(", ");
                for d in &sorted {
                    list.push_bind(d.as_str());
                }
                q.push(")) RETURNING digest, size");
                let rows = q.build().fetch_all(&mut *tx).await?;
                let taken: Vec<crate::gc::TakenBlob> = rows
                    .into_iter()
                    .map(|r| crate::gc::TakenBlob { digest: r.get(0), size: r.get::<i64, _>(1) as u64 })
                    .collect();
                let stones: Vec<&str> = taken.iter().map(|t| t.digest.as_str()).collect();
                set_holds(&mut tx, &stones, crate::gc::TOMBSTONE, now).await?;
                // Taken or not, they leave the queue (found again if they become garbage again).
                let mut q = sqlx::QueryBuilder::<$db>::new("DELETE FROM gc_candidates WHERE digest IN (");
                let mut list = q.separated(", ");
                for d in &sorted {
                    list.push_bind(d.as_str());
                }
                q.push(")");
                q.build().execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(taken)
            }

            async fn gc_release(&self, digests: &[String], since: i64) -> Result<()> {
                if digests.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin().await?;
                for holder in ["gc", ""] {
                    let mut q = sqlx::QueryBuilder::<$db>::new("DELETE FROM blob_holds WHERE holder = ");
                    q.push_bind(holder);
                    if holder == "gc" {
                        q.push(" AND created_at = ").push_bind(since);
                    } else {
                        // The mutex row goes only where no tombstone (someone else's claim) stays.
                        q.push(" AND NOT EXISTS (SELECT 1 FROM blob_holds h WHERE h.digest = blob_holds.digest AND h.holder = 'gc')");
                    }
                    q.push(" AND digest IN (");
                    let mut list = q.separated(", ");
                    for d in digests {
                        list.push_bind(d.as_str());
                    }
                    q.push(")");
                    q.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn gc_claim_stale(&self, stale_before: i64, now: i64, limit: u32) -> Result<crate::gc::Claimed> {
                let rows = sqlx::query(
                    "UPDATE blob_holds SET created_at = $1 WHERE holder = 'gc' AND created_at < $2 AND digest IN \
                     (SELECT digest FROM blob_holds WHERE holder = 'gc' AND created_at < $2 ORDER BY digest LIMIT $3) \
                     RETURNING digest",
                )
                .bind(now)
                .bind(stale_before)
                .bind(limit as i64)
                .fetch_all(&self.write)
                .await?;
                Ok(crate::gc::Claimed { digests: rows.into_iter().map(|r| r.get(0)).collect(), since: now })
            }

            async fn gc_claim_stale_one(&self, digest: &str, stale_before: i64, now: i64) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE blob_holds SET created_at = $1 WHERE holder = 'gc' AND digest = $2 AND created_at < $3",
                )
                .bind(now)
                .bind(digest)
                .bind(stale_before)
                .execute(&self.write)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn gc_preview(&self, before: i64) -> Result<(u64, u64, u64)> {
                let links: i64 = sqlx::query(
                    "SELECT COUNT(*) FROM repo_blobs rb WHERE rb.created_at < $1 \
                     AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.ref_digest = rb.digest AND r.repo_id = rb.repo_id)",
                )
                .bind(before)
                .fetch_one(&self.read)
                .await?
                .get(0);
                let row = sqlx::query(
                    "SELECT COUNT(*), CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blobs b \
                     WHERE NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.ref_digest = b.digest AND r.kind = 'b') \
                     AND NOT EXISTS (SELECT 1 FROM repo_blobs rb WHERE rb.digest = b.digest AND rb.created_at >= $1)",
                )
                .bind(before)
                .fetch_one(&self.read)
                .await?;
                let (n, bytes): (i64, i64) = (row.get(0), row.get(1));
                Ok((links as u64, n as u64, bytes as u64))
            }

            async fn gc_expire_holds(&self, before: i64) -> Result<u64> {
                let n = sqlx::query(
                    "DELETE FROM blob_holds WHERE holder NOT IN ('gc', 'move') AND created_at < $1 \
                     AND NOT EXISTS (SELECT 1 FROM blob_holds h WHERE h.digest = blob_holds.digest \
                     AND h.holder IN ('gc', 'move'))",
                )
                .bind(before)
                .execute(&self.write)
                .await?
                .rows_affected();
                Ok(n)
            }

            async fn move_hold(
                &self,
                digest: &str,
                goal: crate::gc::MoveGoal,
                holds_after: i64,
                deadline: i64,
                now: i64,
            ) -> Result<crate::gc::MoveStart> {
                use crate::gc::MoveStart;
                let mut tx = self.begin().await?;
                blob_mutex(&mut tx, digest, now).await?;
                let Some((size, location)) = location_of(&mut tx, digest).await? else {
                    return Ok(MoveStart::NotNeeded);
                };
                let held = sqlx::query(
                    "SELECT 1 FROM blob_holds WHERE digest = $1 AND holder <> '' \
                     AND (holder IN ('gc', 'move') OR created_at > $2)",
                )
                .bind(digest)
                .bind(holds_after)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
                let applies = match goal {
                    crate::gc::MoveGoal::Tidy => true,
                    crate::gc::MoveGoal::To(to) if to == location => false,
                    crate::gc::MoveGoal::To(crate::gc::Location::Archive) => only_archived_refs(&mut tx, digest).await?,
                    crate::gc::MoveGoal::To(crate::gc::Location::Standard) => true,
                };
                if !applies {
                    return Ok(MoveStart::NotNeeded);
                }
                if held {
                    return Ok(MoveStart::Busy);
                }
                set_holds(&mut tx, &[digest], crate::gc::MOVE, deadline).await?;
                tx.commit().await?;
                Ok(MoveStart::Held(crate::gc::MoveHold { size, location, since: deadline }))
            }

            async fn move_commit(&self, digest: &str, to: crate::gc::Location, since: i64, now: i64) -> Result<bool> {
                let mut tx = self.begin().await?;
                blob_mutex(&mut tx, digest, now).await?;
                let ours = sqlx::query("SELECT 1 FROM blob_holds WHERE digest = $1 AND holder = 'move' AND created_at = $2")
                    .bind(digest)
                    .bind(since)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                if !ours || (to == crate::gc::Location::Archive && !only_archived_refs(&mut tx, digest).await?) {
                    return Ok(false);
                }
                let n = sqlx::query("UPDATE blobs SET location = $1 WHERE digest = $2")
                    .bind(to.as_str())
                    .bind(digest)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(n == 1)
            }

            async fn move_renew(&self, digest: &str, since: i64, until: i64) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE blob_holds SET created_at = $1 WHERE digest = $2 AND holder = 'move' AND created_at = $3",
                )
                .bind(until)
                .bind(digest)
                .bind(since)
                .execute(&self.write)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn move_release(&self, digest: &str, since: i64) -> Result<()> {
                sqlx::query("DELETE FROM blob_holds WHERE digest = $1 AND holder = 'move' AND created_at = $2")
                    .bind(digest)
                    .bind(since)
                    .execute(&self.write)
                    .await?;
                Ok(())
            }

            async fn move_claim_stale(
                &self,
                stale_before: i64,
                now: i64,
                limit: u32,
            ) -> Result<Vec<(String, crate::gc::Location)>> {
                let stale: Vec<String> = sqlx::query(
                    "SELECT digest FROM blob_holds WHERE holder = 'move' AND created_at < $1 ORDER BY digest LIMIT $2",
                )
                .bind(stale_before)
                .bind(limit as i64)
                .fetch_all(&self.read)
                .await?
                .into_iter()
                .map(|r| r.get(0))
                .collect();
                let mut out = Vec::with_capacity(stale.len());
                for d in stale {
                    if let Some(loc) = self.move_claim_stale_one(&d, stale_before, now).await? {
                        out.push((d, loc));
                    }
                }
                Ok(out)
            }

            async fn move_claim_stale_one(
                &self,
                digest: &str,
                stale_before: i64,
                now: i64,
            ) -> Result<Option<crate::gc::Location>> {
                // Under the digest's mutex, so the location read is the one no commit can change
                // before the claim is visible (an old owner's move_commit then fails its token).
                let mut tx = self.begin().await?;
                blob_mutex(&mut tx, digest, now).await?;
                let r = sqlx::query(
                    "UPDATE blob_holds SET created_at = $1 WHERE holder = 'move' AND digest = $2 AND created_at < $3",
                )
                .bind(now)
                .bind(digest)
                .bind(stale_before)
                .execute(&mut *tx)
                .await?;
                if r.rows_affected() != 1 {
                    return Ok(None);
                }
                let location = location_of(&mut tx, digest).await?.map(|(_, loc)| loc);
                if location.is_none() {
                    // A hold without a blob row cannot be made (nor can a blob be taken under a
                    // hold); were it so, nothing may be deleted for it: the hold just goes.
                    sqlx::query("DELETE FROM blob_holds WHERE digest = $1 AND holder = 'move' AND created_at = $2")
                        .bind(digest)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(location)
            }

            async fn manifest_blob_locations(
                &self,
                repo_id: i64,
                digest: &str,
            ) -> Result<Vec<(String, crate::gc::Location)>> {
                let rows = sqlx::query(
                    "SELECT r.ref_digest, b.location FROM manifest_refs r JOIN blobs b ON b.digest = r.ref_digest \
                     WHERE r.repo_id = $1 AND r.manifest_digest = $2 AND r.kind = 'b' ORDER BY r.ref_digest",
                )
                .bind(repo_id)
                .bind(digest)
                .fetch_all(&self.write)
                .await?;
                Ok(rows.into_iter().map(|r| (r.get(0), crate::gc::Location::parse(&r.get::<String, _>(1)))).collect())
            }

            async fn blob_locations(&self, digests: &[String]) -> Result<Vec<(String, crate::gc::Location)>> {
                if digests.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT digest, location FROM blobs WHERE digest IN (");
                let mut list = q.separated(", ");
                for d in digests {
                    list.push_bind(d.as_str());
                }
                q.push(") ORDER BY digest");
                let rows = q.build().fetch_all(&self.read).await?;
                Ok(rows.into_iter().map(|r| (r.get(0), crate::gc::Location::parse(&r.get::<String, _>(1)))).collect())
            }

            async fn any_archived_blob(&self) -> Result<bool> {
                Ok(sqlx::query("SELECT 1 FROM blobs WHERE location <> 'standard' LIMIT 1")
                    .fetch_optional(&self.read)
                    .await?
                    .is_some())
            }

            async fn gc_pass_acquire(&self, owner: &str, now: i64, until: i64) -> Result<Option<(String, i64)>> {
                let r = sqlx::query(
                    "INSERT INTO gc_pass (id, owner, started_at, expires_at) VALUES (1, $1, $2, $3) \
                     ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, started_at = excluded.started_at, \
                     expires_at = excluded.expires_at WHERE gc_pass.expires_at < $2 OR gc_pass.owner = $1",
                )
                .bind(owner)
                .bind(now)
                .bind(until)
                .execute(&self.write)
                .await?;
                if r.rows_affected() == 1 {
                    return Ok(None);
                }
                let row = sqlx::query("SELECT owner, started_at FROM gc_pass WHERE id = 1")
                    .fetch_optional(&self.write)
                    .await?;
                // Released in between: the caller tries again.
                Ok(Some(row.map_or_else(|| (String::new(), now), |r| (r.get(0), r.get(1)))))
            }

            async fn gc_pass_renew(&self, owner: &str, until: i64) -> Result<bool> {
                let r = sqlx::query("UPDATE gc_pass SET expires_at = $1 WHERE id = 1 AND owner = $2")
                    .bind(until)
                    .bind(owner)
                    .execute(&self.write)
                    .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn gc_pass_release(&self, owner: &str) -> Result<()> {
                sqlx::query("DELETE FROM gc_pass WHERE id = 1 AND owner = $1").bind(owner).execute(&self.write).await?;
                Ok(())
            }

            async fn gc_orphans(&self, digests: &[String], holds_after: i64) -> Result<Vec<String>> {
                let mut conn = self.read.acquire().await?;
                orphans_among(&mut conn, digests, holds_after).await
            }

            async fn gc_take_orphans(&self, digests: &[String], holds_after: i64, now: i64) -> Result<Vec<String>> {
                if digests.is_empty() {
                    return Ok(Vec::new());
                }
                let mut tx = self.begin().await?;
                let sorted = lock_digests(&mut tx, digests, now).await?;
                let taken = orphans_among(&mut tx, &sorted, holds_after).await?;
                let stones: Vec<&str> = taken.iter().map(String::as_str).collect();
                set_holds(&mut tx, &stones, crate::gc::TOMBSTONE, now).await?;
                tx.commit().await?;
                Ok(taken)
            }

            async fn gc_dangling_referrers(&self, pushed_before: i64, limit: u32) -> Result<Vec<(i64, String)>> {
                let rows = sqlx::query(
                    "SELECT m.repo_id, m.digest FROM manifests m WHERE m.subject IS NOT NULL AND m.pushed_at < $1 \
                     AND NOT EXISTS (SELECT 1 FROM manifests s WHERE s.repo_id = m.repo_id AND s.digest = m.subject) \
                     AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest) \
                     AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.repo_id = m.repo_id \
                     AND r.ref_digest = m.digest AND r.kind = 'm') \
                     ORDER BY m.repo_id, m.digest LIMIT $2",
                )
                .bind(pushed_before)
                .bind(limit as i64)
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
            }

            async fn delete_dangling_referrer(&self, repo_id: i64, digest: &str, now: i64) -> Result<bool> {
                let mut tx = self.begin().await?;
                // Serialized with every write of the repository (a push of the subject, a tag).
                let Some(repo) = touch_repo(&mut tx, repo_id).await? else {
                    return Ok(false);
                };
                let still = sqlx::query(
                    "SELECT 1 FROM manifests m WHERE m.repo_id = $1 AND m.digest = $2 AND m.subject IS NOT NULL \
                     AND NOT EXISTS (SELECT 1 FROM manifests s WHERE s.repo_id = m.repo_id AND s.digest = m.subject) \
                     AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest) \
                     AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.repo_id = m.repo_id \
                     AND r.ref_digest = m.digest AND r.kind = 'm')",
                )
                .bind(repo_id)
                .bind(digest)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
                if !still || !delete_manifest_in(&mut tx, &repo, repo_id, digest, &[], now).await? {
                    return Ok(false);
                }
                tx.commit().await?;
                Ok(true)
            }
        }
    };
}
pub(crate) use portable_gc;
