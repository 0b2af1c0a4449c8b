//! PostgreSQL metadata store (for many stateless nodes).
//!
//! The same portable SQL as SQLite ([`crate::portable`]). Transactions run at READ COMMITTED;
//! writes to one repository's manifests and tags are serialized by their first statement, which
//! updates (and so locks) the repository's row, so the mutability, reference and size checks
//! cannot race a concurrent push, deletion or mutability change on another node, while writes
//! to different repositories never wait for each other.

use crate::*;
use sqlx::postgres::{PgPool, PgPoolOptions};

/// How long an operation waits for a pooled connection before it fails as unavailable (the
/// pool keeps retrying to connect until then).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
use sqlx::{Postgres, Row, Transaction};
use std::time::Duration;

crate::portable::portable_store!(PgStore, Postgres, sqlx::postgres::PgRow, " FOR UPDATE SKIP LOCKED");
crate::iam::portable_iam!(PgStore, Postgres, sqlx::postgres::PgRow);
// Only events of transactions older than every running one (see crate::events).
crate::events::portable_events!(
    PgStore,
    Postgres,
    sqlx::postgres::PgRow,
    "txid < (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint"
);
crate::audit::portable_audit!(PgStore, Postgres, sqlx::postgres::PgRow);
crate::lifecycle::portable_lifecycle!(PgStore);
crate::gc::portable_gc!(PgStore, Postgres);
crate::scan::portable_scan!(PgStore, Postgres);
crate::blobkeys::portable_blob_keys!(PgStore, Postgres);
crate::replication::portable_replication!(PgStore);
crate::roles::portable_roles!(PgStore, Postgres, sqlx::postgres::PgRow);
crate::kms::portable_kms!(PgStore, Postgres, sqlx::postgres::PgRow);
crate::templates::portable_templates!(PgStore, Postgres);

/// PostgreSQL-backed [`MetadataStore`].
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) read: PgPool,
    pub(crate) write: PgPool,
}

impl PgStore {
    /// Connect to `url` (`postgres://...`) and apply pending migrations.
    pub async fn open(url: &str) -> Result<PgStore> {
        Ok(Self::open_with(url, SchemaMode::Migrate).await?.0)
    }

    /// Connect to `url`, applying pending migrations or only checking that there are none, per
    /// `mode`. Returns the store and the migrations applied now. Concurrent migrators are
    /// serialized by an advisory lock (sqlx's).
    pub async fn open_with(url: &str, mode: SchemaMode) -> Result<(PgStore, Vec<AppliedMigration>)> {
        // A request waits at most ACQUIRE_TIMEOUT for a connection: while the database is down,
        // requests fail fast (503 with Retry-After) instead of hanging for the outage.
        let pool = PgPoolOptions::new().max_connections(16).acquire_timeout(ACQUIRE_TIMEOUT).connect(url).await?;
        let applied = {
            let mut conn = pool.acquire().await?;
            migrate_conn(&sqlx::migrate!("./migrations/postgres"), &mut *conn, mode == SchemaMode::Migrate).await?
        };
        Ok((PgStore { read: pool.clone(), write: pool }, applied))
    }

    /// Close the pool.
    pub async fn close(&self) {
        self.write.close().await;
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.write.begin().await?)
    }
}
