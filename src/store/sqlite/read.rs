//! How the SQLite store runs the shared reads (`crate::store::reads`): on the read pool, with
//! timestamps bound as fixed-width RFC 3339 text (so range filters compare text and use the same
//! indexes as on PostgreSQL).

use chrono::{DateTime, Utc};

use super::{SqliteStore, ts};
use crate::store::reads::{Binds, Row, Runner, fetch_all, for_each};
use crate::store::sql::{Dialect, Sql};
use crate::store::{ActivityQuery, SeriesPoint, StoreError};

impl Binds for sqlx::Sqlite {
    type Time = String;

    fn time(t: DateTime<Utc>) -> String {
        ts(&t)
    }
}

#[async_trait::async_trait]
impl Runner for SqliteStore {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn rows<T: Row>(&self, sql: Sql) -> Result<Vec<T>, StoreError> {
        fetch_all(&self.reads, sql).await
    }

    async fn each<T: Row>(
        &self,
        sql: Sql,
        each: &mut (dyn FnMut(T) -> bool + Send),
    ) -> Result<(), StoreError> {
        for_each(&self.reads, sql, each).await
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
            vec![
                q.character.as_str().into(),
                q.from.into(),
                q.to.into(),
                q.bucket_secs.into(),
            ],
        );
        self.rows(sql).await
    }
}
