//! SQLite writes: each batch in one transaction on the single writer connection, the counters
//! it implies, and maintenance (pruning, thinning).

use sqlx::{SqliteConnection, SqlitePool};

use super::{SqliteStore, ts};
use crate::store::SpoolMark;
use crate::store::reads::sqlite_args;
use crate::store::sql::{Dialect, Sql};
use crate::store::writes::{batch, batch_key, spool_mark};
use crate::store::{Backend, Event, Span, StoreError, StoreWrite};

#[async_trait::async_trait]
impl StoreWrite for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    /// Keeps one telemetry row per character per `step_secs` in [from, to): the first of each
    /// step, which takes over the kills of the rows removed (so kill sums stay exact).
    async fn thin_aligned(&self, span: Span, step_secs: i64) -> Result<u64, StoreError> {
        let (from, to) = (span.start, span.end);
        let thin = async |conn: &mut SqliteConnection| {
            sqlx::query(
                "CREATE TEMP TABLE IF NOT EXISTS thinning \
                 (id INTEGER PRIMARY KEY, rn INTEGER NOT NULL, total INTEGER NOT NULL)",
            )
            .execute(&mut *conn)
            .await?;
            sqlx::query("DELETE FROM thinning")
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "INSERT INTO thinning (id, rn, total) \
                 SELECT id, row_number() OVER w, sum(kills_delta) OVER (PARTITION BY character_name, b) \
                 FROM (SELECT id, timestamp, character_name, kills_delta, \
                              CAST(strftime('%s', timestamp) AS INTEGER) / ?3 AS b \
                       FROM telemetry_events WHERE timestamp >= ?1 AND timestamp < ?2) \
                 WINDOW w AS (PARTITION BY character_name, b ORDER BY timestamp, id)",
            )
            .bind(ts(&from))
            .bind(ts(&to))
            .bind(step_secs)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE telemetry_events SET kills_delta = \
                     (SELECT total FROM thinning WHERE thinning.id = telemetry_events.id) \
                 WHERE id IN (SELECT id FROM thinning WHERE rn = 1 AND total <> 0)",
            )
            .execute(&mut *conn)
            .await?;
            let removed = sqlx::query(
                "DELETE FROM telemetry_events WHERE id IN (SELECT id FROM thinning WHERE rn > 1)",
            )
            .execute(&mut *conn)
            .await?
            .rows_affected();
            sqlx::query("DELETE FROM thinning")
                .execute(&mut *conn)
                .await?;
            Ok(removed)
        };
        immediate(&self.pool, thin, |_| true).await
    }

    async fn write_batch(
        &self,
        key: &str,
        events: &[Event],
        mark: Option<&SpoolMark>,
    ) -> Result<bool, StoreError> {
        let write = async |conn: &mut SqliteConnection| {
            let fresh = execute(conn, &batch_key(key)).await? == 1;
            if fresh {
                for sql in batch(Dialect::Sqlite, events, false)? {
                    execute(conn, &sql).await?;
                }
                if let Some(mark) = mark {
                    execute(conn, &spool_mark(mark)).await?;
                }
            }
            Ok(fresh)
        };
        // A batch already committed (replayed) writes nothing.
        immediate(&self.pool, write, |fresh| *fresh).await
    }
}

/// Runs one statement on `conn`; how many rows it changed.
async fn execute(conn: &mut SqliteConnection, sql: &Sql) -> Result<u64, StoreError> {
    let args = sqlite_args(&sql.args)?;
    let done = sqlx::query_with(&sql.text, args).execute(conn).await?;
    Ok(done.rows_affected())
}

/// Runs `body` in a transaction that takes the write lock up front (`BEGIN IMMEDIATE`, so it
/// never fails half-way on a lock upgrade); commits when `body` succeeds and `keep` says so,
/// rolls back otherwise. A connection whose rollback fails is not returned to the pool: its
/// transaction state is unknown.
async fn immediate<T>(
    pool: &SqlitePool,
    body: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, StoreError>,
    keep: impl FnOnce(&T) -> bool,
) -> Result<T, StoreError> {
    let mut conn = pool.acquire().await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    match body(&mut conn).await {
        Ok(done) => {
            let end = if keep(&done) { "COMMIT" } else { "ROLLBACK" };
            sqlx::query(end).execute(&mut *conn).await?;
            Ok(done)
        }
        Err(err) => {
            if let Err(rollback) = sqlx::query("ROLLBACK").execute(&mut *conn).await {
                tracing::warn!(%rollback, "rollback after a failed transaction also failed");
                conn.detach();
            }
            Err(err)
        }
    }
}
