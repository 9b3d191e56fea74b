//! SQLite storage: the zero-setup default. WAL mode, a busy timeout, and every write from the
//! single writer task in one transaction per batch. Writes are in `write.rs`, the query API's
//! reads in `read.rs`.

mod read;
mod write;

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::store::{StoreError, StoreOptions, WRITE_CONNECTIONS, migrations};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// An SQLite-backed store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The writer's and maintenance's connections.
    pub(super) pool: SqlitePool,
    /// Query connections (WAL mode: readers never block the writer).
    pub(super) reads: SqlitePool,
}

/// Timestamps are stored as fixed-width RFC 3339 text so that text order is time order.
pub(super) fn ts(t: &DateTime<Utc>) -> String {
    crate::store::sql::sqlite_time(*t)
}

impl SqliteStore {
    /// Opens (creating if missing) the database file and applies migrations.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(options.sqlite_busy_timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(WRITE_CONNECTIONS)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await?;
        let applied = sqlx::query_as(migrations::APPLIED)
            .fetch_all(&pool)
            .await
            .ok();
        if !migrations::up_to_date(&MIGRATOR, applied) {
            MIGRATOR.run(&pool).await?;
        }
        // The same options (an in-memory database keeps its shared name), so both pools open
        // the same database.
        let reads = SqlitePoolOptions::new()
            .max_connections(options.max_connections.clamp(1, 16))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        Ok(Self { pool, reads })
    }
}
