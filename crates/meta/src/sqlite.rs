//! SQLite metadata store (the embedded default).
//!
//! WAL mode with `synchronous=FULL`: a committed transaction survives a crash of the process or
//! the machine. Writes go through a pool of one connection, so they are serialized in-process
//! and never fail with SQLITE_BUSY against each other; other processes (admin commands) wait on
//! the busy timeout. Reads use a separate pool and run concurrently with writes.
//! The SQL is kept portable (`$n` placeholders, `ON CONFLICT`, `RETURNING`) for PostgreSQL.

use crate::*;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, Transaction};

crate::portable::portable_store!(SqliteStore, Sqlite, sqlx::sqlite::SqliteRow, "");
crate::iam::portable_iam!(SqliteStore, Sqlite, sqlx::sqlite::SqliteRow);
// SQLite serializes writers: every committed event is readable in order.
crate::events::portable_events!(SqliteStore, Sqlite, sqlx::sqlite::SqliteRow, "1 = 1");
crate::audit::portable_audit!(SqliteStore, Sqlite, sqlx::sqlite::SqliteRow);
crate::lifecycle::portable_lifecycle!(SqliteStore);
crate::gc::portable_gc!(SqliteStore, Sqlite);
crate::scan::portable_scan!(SqliteStore, Sqlite);
crate::blobkeys::portable_blob_keys!(SqliteStore, Sqlite);
crate::replication::portable_replication!(SqliteStore);
crate::roles::portable_roles!(SqliteStore, Sqlite, sqlx::sqlite::SqliteRow);
crate::kms::portable_kms!(SqliteStore, Sqlite, sqlx::sqlite::SqliteRow);
crate::templates::portable_templates!(SqliteStore, Sqlite);
use std::path::Path;
use std::time::Duration;

/// SQLite-backed [`MetadataStore`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) read: SqlitePool,
    pub(crate) write: SqlitePool,
}

impl SqliteStore {
    /// Open (creating and migrating as needed) the database file at `path`.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        Ok(Self::open_with(path, SchemaMode::Migrate).await?.0)
    }

    /// Open the database file at `path` (created if missing), applying pending migrations or
    /// only checking that there are none, per `mode`. Returns the store and the migrations
    /// applied now.
    ///
    /// Opening (and migrating) holds an exclusive lock on `<path>.lock`, so a server and an admin
    /// command started together on fresh data do not migrate the same file at once.
    pub async fn open_with(path: &Path, mode: SchemaMode) -> Result<(SqliteStore, Vec<AppliedMigration>)> {
        let lock_path = path.with_extension("db.lock");
        let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(lock_path)?;
            f.lock()?;
            Ok(f)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(sqlx::Error::Io)?;
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            .pragma("cache_size", "-16000");
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(opts.clone())
            .await?;
        let applied = {
            let mut conn = write.acquire().await?;
            migrate_conn(&sqlx::migrate!("./migrations/sqlite"), &mut *conn, mode == SchemaMode::Migrate).await?
        };
        let read = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(opts.read_only(true))
            .await?;
        drop(lock);
        Ok((SqliteStore { read, write }, applied))
    }

    /// Close both pools, checkpointing the WAL.
    pub async fn close(&self) {
        self.read.close().await;
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.write).await;
        self.write.close().await;
    }

    /// A write transaction (`BEGIN IMMEDIATE`) on the one write connection. A `COMMIT` that
    /// failed (a full disk) can leave that connection inside a transaction; it is then closed,
    /// rolling that transaction back, and the pool opens a fresh one, instead of every later
    /// write failing.
    async fn begin(&self) -> Result<Transaction<'static, Sqlite>> {
        match self.write.begin_with("BEGIN IMMEDIATE").await {
            Err(sqlx::Error::InvalidSavePointStatement) => {
                tracing::warn!("the metadata write connection was left inside a failed transaction; reopening it");
                if let Ok(conn) = self.write.acquire().await {
                    let _ = conn.close().await;
                }
                Ok(self.write.begin_with("BEGIN IMMEDIATE").await?)
            }
            other => Ok(other?),
        }
    }
}
