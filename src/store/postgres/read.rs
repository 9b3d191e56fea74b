//! How the PostgreSQL store runs the shared reads (`crate::store::reads`) on its read pool (with
//! a statement timeout), and what only it does: in-memory aggregation for heatmaps, and
//! TimescaleDB's hourly aggregate for activity older than raw telemetry.

use super::PgStore;
use crate::store::reads::{Pool, Row, Runner, pg_args};
use crate::store::sql::{Arg, Sql};
use crate::store::{ActivityQuery, SeriesPoint, Span, StoreError};
use chrono::{DateTime, Utc};

#[async_trait::async_trait]
impl Runner for PgStore {
    fn pools(&self) -> (Pool<'_>, Pool<'_>) {
        (Pool::Postgres(&self.reads), Pool::Postgres(&self.pool))
    }

    async fn grouped<T: Row>(&self, sql: Sql) -> Result<Vec<T>, StoreError> {
        // The planner cannot know how few cells there are and would sort a million rows on disk;
        // a hash aggregate in memory is the right plan for any bin size the API allows.
        let mut tx = self.reads.begin().await?;
        sqlx::query("SET LOCAL work_mem = '64MB'")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SET LOCAL enable_sort = off")
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query_as_with::<_, T, _>(&sql.text, pg_args(&sql.args)?)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows)
    }

    async fn activity(&self, q: &ActivityQuery) -> Result<Vec<SeriesPoint>, StoreError> {
        let (character, from, to, bucket_secs) =
            (q.character.as_str(), q.from, q.to, q.bucket_secs);
        // Raw telemetry may have expired (retention policy); the hourly continuous aggregate
        // keeps what it summarised. Ranges older than the oldest raw row read the aggregate.
        if self.hourly_aggregate() {
            let oldest: Option<DateTime<Utc>> = sqlx::query_scalar(
                "SELECT min(timestamp) FROM telemetry_events WHERE character_name = $1",
            )
            .bind(character)
            .fetch_one(&self.reads)
            .await?;
            // Aligned down to a whole bucket (at least an hour): the aggregate's buckets before
            // the cutoff and the raw rows after it never overlap (the aggregate computes the
            // hours it has not materialized from raw rows).
            let align = if bucket_secs % 3600 == 0 {
                bucket_secs
            } else {
                3600
            };
            let cutoff = oldest.unwrap_or(to).min(to);
            let cutoff = DateTime::from_timestamp(cutoff.timestamp().div_euclid(align) * align, 0)
                .unwrap_or(cutoff);
            if from < cutoff {
                let mut series = self.activity_from(true, q, from..cutoff).await?;
                series.extend(self.activity_from(false, q, cutoff..to).await?);
                return Ok(series);
            }
        }
        self.activity_from(false, q, from..to).await
    }
}

impl PgStore {
    /// Kills per bucket over `span` of the query's range: from the hourly aggregate (buckets of
    /// at least an hour) or from raw telemetry.
    async fn activity_from(
        &self,
        hourly: bool,
        q: &ActivityQuery,
        span: Span,
    ) -> Result<Vec<SeriesPoint>, StoreError> {
        let text = if hourly {
            "SELECT time_bucket(make_interval(secs => $4), bucket) AS bucket, \
                    (sum(kills_per_hour * samples) / nullif(sum(samples), 0))::float8 \
                        AS kills_per_hour, \
                    sum(kills)::int8 AS kills, sum(samples)::int8 AS samples \
             FROM kills_hourly \
             WHERE character_name = $1 AND bucket >= $2 AND bucket < $3 \
             GROUP BY 1 ORDER BY 1"
                .to_owned()
        } else {
            // TimescaleDB's time_bucket is the native tool; plain PostgreSQL floors the epoch.
            let bucket = if self.timescaledb() {
                "time_bucket(make_interval(secs => $4), timestamp)"
            } else {
                "to_timestamp(floor(extract(epoch FROM timestamp) / $4) * $4)"
            };
            format!(
                "SELECT {bucket} AS bucket, avg(kills_per_hour)::float8 AS kills_per_hour, \
                        sum(kills_delta)::int8 AS kills, count(*) AS samples \
                 FROM telemetry_events \
                 WHERE character_name = $1 AND timestamp >= $2 AND timestamp < $3 \
                 GROUP BY 1 ORDER BY 1"
            )
        };
        let secs = if hourly {
            q.bucket_secs.max(3600)
        } else {
            q.bucket_secs
        };
        let range = ActivityQuery {
            from: span.start,
            to: span.end,
            ..q.clone()
        };
        self.rows(Sql::new(text, range.args(Arg::Float(secs as f64))))
            .await
    }
}
