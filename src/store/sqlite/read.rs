//! How the SQLite store runs the shared reads (`crate::store::reads`): on the read pool, with
//! timestamps bound as fixed-width RFC 3339 text (so range filters compare text and use the same
//! indexes as on PostgreSQL).

use super::SqliteStore;
use crate::store::reads::{Pool, Runner};
use crate::store::sql::Sql;
use crate::store::{ActivityQuery, SeriesPoint, StoreError};

#[async_trait::async_trait]
impl Runner for SqliteStore {
    fn pools(&self) -> (Pool<'_>, Pool<'_>) {
        (Pool::Sqlite(&self.reads), Pool::Sqlite(&self.pool))
    }

    async fn activity(&self, q: &ActivityQuery) -> Result<Vec<SeriesPoint>, StoreError> {
        let sql = Sql::new(
            "SELECT strftime('%Y-%m-%dT%H:%M:%SZ', \
                 (CAST(strftime('%s', timestamp) AS INTEGER) / $4) * $4, 'unixepoch') AS bucket, \
                 avg(kills_per_hour) AS kills_per_hour, \
                 sum(kills_delta) AS kills, count(*) AS samples \
             FROM telemetry_events \
             WHERE character_name = $1 AND timestamp >= $2 AND timestamp < $3 \
             GROUP BY 1 ORDER BY 1",
            q.args(q.bucket_secs.into()),
        );
        self.rows(sql).await
    }
}
