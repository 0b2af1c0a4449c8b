//! The audit trail's storage: CloudTrail records, hash-chained per node.
//!
//! Records are written by one writer per chain (the node's audit sink, `berth_events::audit`),
//! which computes `seq`, `prev_hash` and `hash` and appends a batch in one transaction. This
//! store keeps them, answers CloudTrail's `LookupEvents` (one attribute filter, a time range,
//! newest first, keyset pages) and hands chains back in `seq` order for verification. It never
//! computes or checks hashes itself.
//!
//! **Retention** deletes, per chain, only a prefix (the records before the first one that is
//! not older than the cut-off), and remembers the last deleted record's `(seq, hash)` as the
//! chain's anchor, so the records left still verify from the anchor.

use crate::Result;
use async_trait::async_trait;

/// `prev_hash` of a chain's first record: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record as stored. The attribute columns repeat what `event_json` says, so that
/// lookups use indexes; the hash covers both.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditRecord {
    /// Row id (assigned by the store; ignored on append). Orders records of one millisecond.
    pub id: i64,
    /// The chain: the id of the node that wrote it.
    pub chain: String,
    /// Position in the chain: 1, 2, 3, ...
    pub seq: i64,
    /// CloudTrail's `eventID` (a UUID).
    pub event_id: String,
    /// Epoch milliseconds.
    pub event_time: i64,
    /// The recipient account (whose trail holds the record).
    pub account: String,
    pub event_name: String,
    pub event_source: String,
    pub read_only: bool,
    /// `Username` as LookupEvents shows it: the IAM user's name, `root` for the root.
    pub username: Option<String>,
    pub access_key_id: Option<String>,
    /// The type and ARN of the record's first resource.
    pub resource_type: Option<String>,
    pub resource_name: Option<String>,
    /// The whole CloudTrail record (JSON object text).
    pub event_json: String,
    /// `hash` of the previous record of the chain ([`GENESIS_HASH`] before the first).
    pub prev_hash: String,
    /// Hex SHA-256 over `prev_hash` and the record's canonical content.
    pub hash: String,
}

/// The last record of a chain (or its anchor, when retention deleted everything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
}

/// The attributes LookupEvents filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupKey {
    EventId,
    EventName,
    ReadOnly,
    Username,
    ResourceType,
    ResourceName,
    EventSource,
    AccessKeyId,
}

impl LookupKey {
    /// Every key, by its CloudTrail name.
    pub const ALL: [(&'static str, LookupKey); 8] = [
        ("EventId", LookupKey::EventId),
        ("EventName", LookupKey::EventName),
        ("ReadOnly", LookupKey::ReadOnly),
        ("Username", LookupKey::Username),
        ("ResourceType", LookupKey::ResourceType),
        ("ResourceName", LookupKey::ResourceName),
        ("EventSource", LookupKey::EventSource),
        ("AccessKeyId", LookupKey::AccessKeyId),
    ];

    /// The key CloudTrail names `name`.
    pub fn parse(name: &str) -> Option<LookupKey> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
    }

    /// Its column (a fixed identifier, safe to splice into SQL).
    pub(crate) fn column(self) -> &'static str {
        match self {
            LookupKey::EventId => "event_id",
            LookupKey::EventName => "event_name",
            LookupKey::ReadOnly => "read_only",
            LookupKey::Username => "username",
            LookupKey::ResourceType => "resource_type",
            LookupKey::ResourceName => "resource_name",
            LookupKey::EventSource => "event_source",
            LookupKey::AccessKeyId => "access_key_id",
        }
    }
}

/// A LookupEvents query.
#[derive(Debug, Clone)]
pub struct AuditQuery<'a> {
    /// Only this account's records.
    pub account: &'a str,
    /// At most one attribute, matched exactly (`ReadOnly`: `true` / `false`).
    pub attribute: Option<(LookupKey, &'a str)>,
    /// Event time range, epoch ms, both ends included.
    pub start: i64,
    pub end: i64,
    /// Only records before this `(event_time, id)` in newest-first order (the previous page's
    /// last record).
    pub before: Option<(i64, i64)>,
    pub limit: u32,
}

/// The audit trail.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Append records (already chained by their writer) in one transaction: all or none. Fails
    /// (nothing written) when a `(chain, seq)` exists already.
    async fn append_audit(&self, records: &[AuditRecord]) -> Result<()>;
    /// The last record of `chain` (or its retention anchor); `None` for a new chain.
    async fn audit_chain_head(&self, chain: &str) -> Result<Option<ChainHead>>;
    /// Records matching `q`, newest first (by event time, then id), at most `q.limit`.
    async fn lookup_audit(&self, q: &AuditQuery<'_>) -> Result<Vec<AuditRecord>>;
    /// Every chain with records or an anchor, with its anchor (where retention cut it).
    async fn audit_chains(&self) -> Result<Vec<(String, Option<ChainHead>)>>;
    /// Records of `chain` with `seq > after`, in `seq` order, at most `limit`.
    async fn audit_chain_records(&self, chain: &str, after: i64, limit: u32) -> Result<Vec<AuditRecord>>;
    /// Delete, per chain, the records before its first record with `event_time >= before`
    /// (all of them when there is none), moving the chain's anchor to the last one deleted, in
    /// one transaction. Returns how many were deleted.
    async fn purge_audit(&self, before: i64) -> Result<u64>;
}

/// The columns [`audit_row`] reads, in order.
macro_rules! audit_columns {
    () => {
        "id, chain, seq, event_id, event_time, account, event_name, event_source, read_only, username, \
         access_key_id, resource_type, resource_name, event_json, prev_hash, hash"
    };
}
pub(crate) use audit_columns;

/// Implement [`AuditStore`] for `$store` on database `$db` with row type `$row`.
macro_rules! portable_audit {
    ($store:ty, $db:ty, $row:ty) => {
        fn audit_row(r: $row) -> crate::audit::AuditRecord {
            crate::audit::AuditRecord {
                id: r.get(0),
                chain: r.get(1),
                seq: r.get(2),
                event_id: r.get(3),
                event_time: r.get(4),
                account: r.get(5),
                event_name: r.get(6),
                event_source: r.get(7),
                read_only: r.get::<String, _>(8) == "true",
                username: r.get(9),
                access_key_id: r.get(10),
                resource_type: r.get(11),
                resource_name: r.get(12),
                event_json: r.get(13),
                prev_hash: r.get(14),
                hash: r.get(15),
            }
        }

        #[async_trait]
        impl crate::audit::AuditStore for $store {
            async fn append_audit(&self, records: &[crate::audit::AuditRecord]) -> Result<()> {
                if records.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin().await?;
                // Many rows per statement (a statement per row costs more than the row itself).
                for chunk in records.chunks(64) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO audit_records (chain, seq, event_id, event_time, account, event_name, \
                         event_source, read_only, username, access_key_id, resource_type, resource_name, \
                         event_json, prev_hash, hash) ",
                    );
                    q.push_values(chunk, |mut b, a| {
                        b.push_bind(&a.chain)
                            .push_bind(a.seq)
                            .push_bind(&a.event_id)
                            .push_bind(a.event_time)
                            .push_bind(&a.account)
                            .push_bind(&a.event_name)
                            .push_bind(&a.event_source)
                            .push_bind(if a.read_only { "true" } else { "false" })
                            .push_bind(&a.username)
                            .push_bind(&a.access_key_id)
                            .push_bind(&a.resource_type)
                            .push_bind(&a.resource_name)
                            .push_bind(&a.event_json)
                            .push_bind(&a.prev_hash)
                            .push_bind(&a.hash);
                    });
                    q.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn audit_chain_head(&self, chain: &str) -> Result<Option<crate::audit::ChainHead>> {
                let last = sqlx::query("SELECT seq, hash FROM audit_records WHERE chain = $1 ORDER BY seq DESC LIMIT 1")
                    .bind(chain)
                    .fetch_optional(&self.write)
                    .await?;
                if let Some(r) = last {
                    return Ok(Some(crate::audit::ChainHead { seq: r.get(0), hash: r.get(1) }));
                }
                let anchor = sqlx::query("SELECT seq, hash FROM audit_chain_anchors WHERE chain = $1")
                    .bind(chain)
                    .fetch_optional(&self.write)
                    .await?;
                Ok(anchor.map(|r| crate::audit::ChainHead { seq: r.get(0), hash: r.get(1) }))
            }

            async fn lookup_audit(&self, q: &crate::audit::AuditQuery<'_>) -> Result<Vec<crate::audit::AuditRecord>> {
                let mut sql = String::from(concat!(
                    "SELECT ",
                    crate::audit::audit_columns!(),
                    " FROM audit_records WHERE account = $1 AND event_time >= $2 AND event_time <= $3"
                ));
                let (before_time, before_id) = q.before.unwrap_or((i64::MAX, i64::MAX));
                sql.push_str(" AND (event_time < $4 OR (event_time = $4 AND id < $5))");
                if let Some((key, _)) = q.attribute {
                    sql.push_str(" AND ");
                    sql.push_str(key.column());
                    sql.push_str(" = $6 ORDER BY event_time DESC, id DESC LIMIT $7");
                } else {
                    sql.push_str(" ORDER BY event_time DESC, id DESC LIMIT $6");
                }
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(q.account)
                    .bind(q.start)
                    .bind(q.end)
                    .bind(before_time)
                    .bind(before_id);
                if let Some((_, value)) = q.attribute {
                    query = query.bind(value);
                }
                query = query.bind(q.limit as i64);
                let rows = query.fetch_all(&self.read).await?;
                Ok(rows.into_iter().map(audit_row).collect())
            }

            async fn audit_chains(&self) -> Result<Vec<(String, Option<crate::audit::ChainHead>)>> {
                let rows = sqlx::query(
                    "SELECT c.chain, a.seq, a.hash FROM \
                     (SELECT DISTINCT chain FROM audit_records UNION SELECT chain FROM audit_chain_anchors) AS c \
                     LEFT JOIN audit_chain_anchors a ON a.chain = c.chain ORDER BY c.chain",
                )
                .fetch_all(&self.read)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| {
                        let seq: Option<i64> = r.get(1);
                        let hash: Option<String> = r.get(2);
                        let anchor = seq.zip(hash).map(|(seq, hash)| crate::audit::ChainHead { seq, hash });
                        (r.get(0), anchor)
                    })
                    .collect())
            }

            async fn audit_chain_records(
                &self,
                chain: &str,
                after: i64,
                limit: u32,
            ) -> Result<Vec<crate::audit::AuditRecord>> {
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    crate::audit::audit_columns!(),
                    " FROM audit_records WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3"
                ))
                .bind(chain)
                .bind(after)
                .bind(limit as i64)
                .fetch_all(&self.read)
                .await?;
                Ok(rows.into_iter().map(audit_row).collect())
            }

            async fn purge_audit(&self, before: i64) -> Result<u64> {
                let mut tx = self.begin().await?;
                let chains: Vec<String> =
                    sqlx::query("SELECT DISTINCT chain FROM audit_records WHERE event_time < $1")
                        .bind(before)
                        .fetch_all(&mut *tx)
                        .await?
                        .into_iter()
                        .map(|r| r.get(0))
                        .collect();
                let mut deleted = 0;
                for chain in chains {
                    // The chain's prefix before its first record that is not old enough.
                    let keep_from: Option<i64> = sqlx::query(
                        "SELECT MIN(seq) FROM audit_records WHERE chain = $1 AND event_time >= $2",
                    )
                    .bind(&chain)
                    .bind(before)
                    .fetch_one(&mut *tx)
                    .await?
                    .get(0);
                    let last = sqlx::query(
                        "SELECT seq, hash FROM audit_records WHERE chain = $1 AND seq < $2 ORDER BY seq DESC LIMIT 1",
                    )
                    .bind(&chain)
                    .bind(keep_from.unwrap_or(i64::MAX))
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some(last) = last else { continue };
                    let (seq, hash): (i64, String) = (last.get(0), last.get(1));
                    deleted += sqlx::query("DELETE FROM audit_records WHERE chain = $1 AND seq <= $2")
                        .bind(&chain)
                        .bind(seq)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    sqlx::query(
                        "INSERT INTO audit_chain_anchors (chain, seq, hash) VALUES ($1, $2, $3) \
                         ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                    )
                    .bind(&chain)
                    .bind(seq)
                    .bind(&hash)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(deleted)
            }
        }
    };
}
pub(crate) use portable_audit;
