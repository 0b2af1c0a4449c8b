//! PostgreSQL metadata store (for many stateless nodes).
//!
//! The same portable SQL as SQLite ([`crate::portable`]). Transactions run at READ COMMITTED;
//! manifest writes of one repository are serialized with a transaction-scoped advisory lock, so
//! the immutable-tag and reference checks cannot race a concurrent push on another node.

use crate::*;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};
use std::time::Duration;

crate::portable::portable_store!(PgStore, Postgres, sqlx::postgres::PgRow);
crate::iam::portable_iam!(PgStore, Postgres, sqlx::postgres::PgRow);

/// PostgreSQL-backed [`MetadataStore`].
#[derive(Debug, Clone)]
pub struct PgStore {
    read: PgPool,
    write: PgPool,
}

impl PgStore {
    /// Connect to `url` (`postgres://...`) and apply pending migrations.
    pub async fn open(url: &str) -> Result<PgStore> {
        let pool =
            PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(60)).connect(url).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgStore { read: pool.clone(), write: pool })
    }

    /// Close the pool.
    pub async fn close(&self) {
        self.write.close().await;
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.write.begin().await?)
    }

    /// Serialize manifest writes of one repository across nodes (released at commit/rollback).
    async fn lock_repo(&self, tx: &mut Transaction<'static, Postgres>, repo_id: i64) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(repo_id).execute(&mut **tx).await?;
        Ok(())
    }
}
