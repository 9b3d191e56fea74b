//! Health checks, closing and pruning, written once for both backends on their write pools.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::reads::Runner;
use super::sql::{Dialect, Sql};
use super::{PRUNE_BATCH, Retained, StoreError, StoreUpkeep, hour_of};

#[async_trait]
impl<R: Runner> StoreUpkeep for R {
    async fn ping(&self) -> Result<(), StoreError> {
        self.write_pool()
            .execute(Sql::new("SELECT 1", Vec::new()))
            .await
            .map(|_| ())
    }

    async fn spool_mark(&self, spool_id: &str) -> Result<Option<u64>, StoreError> {
        let sql = Sql::new(
            "SELECT upto FROM spool_marks WHERE spool_id = $1",
            vec![spool_id.into()],
        );
        let rows: Vec<(i64,)> = self.rows(sql).await?;
        Ok(rows.first().and_then(|r| u64::try_from(r.0).ok()))
    }

    async fn probe_write(&self) -> Result<(), StoreError> {
        let now = Utc::now().timestamp_millis();
        let sql = Sql::new(
            "INSERT INTO health_probe (id, at) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            vec![now.into()],
        );
        self.write_pool().execute(sql).await.map(|_| ())
    }

    async fn close(&self) {
        self.read_pool().close().await;
        self.write_pool().close().await;
    }

    /// Deletes expired rows in batches of [`PRUNE_BATCH`], so no statement holds locks for long.
    async fn prune(&self, table: Retained, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let t = table.table();
        // Rows are picked by a key that names one row: on a hypertable `ctid` names a row only
        // within one chunk, so PostgreSQL uses the table's key (id, timestamp).
        let text = match self.dialect() {
            Dialect::Postgres => format!(
                "DELETE FROM {t} WHERE (id, timestamp) IN \
                 (SELECT id, timestamp FROM {t} WHERE timestamp < $1 LIMIT {PRUNE_BATCH})"
            ),
            Dialect::Sqlite => format!(
                "DELETE FROM {t} WHERE rowid IN \
                 (SELECT rowid FROM {t} WHERE timestamp < $1 LIMIT {PRUNE_BATCH})"
            ),
        };
        let mut total = 0;
        loop {
            let sql = Sql::new(text.as_str(), vec![before.into()]);
            let n = self.write_pool().execute(sql).await?;
            total += n;
            if n < PRUNE_BATCH as u64 {
                break;
            }
        }
        if table == Retained::Spawns {
            let sql = Sql::new(
                "DELETE FROM spawn_cells WHERE hour < $1",
                vec![hour_of(before).into()],
            );
            self.write_pool().execute(sql).await?;
        }
        Ok(total)
    }

    async fn prune_kill_hours(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let sql = Sql::new(
            "DELETE FROM kill_hours WHERE hour < $1",
            vec![hour_of(before).into()],
        );
        let hours = self.write_pool().execute(sql).await?;
        let sql = Sql::new(
            "DELETE FROM character_events WHERE timestamp < $1",
            vec![before.into()],
        );
        Ok(hours + self.write_pool().execute(sql).await?)
    }

    async fn prune_batch_keys(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let sql = Sql::new(
            "DELETE FROM write_batches WHERE written_at < $1",
            vec![before.into()],
        );
        self.write_pool().execute(sql).await
    }
}
