//! How the PostgreSQL store runs the shared reads (`crate::store::reads`) on its read pool (with
//! a statement timeout), and what only it does: in-memory aggregation for heatmaps, and
//! TimescaleDB's hourly aggregate for activity older than raw telemetry.

use super::PgStore;
use crate::store::reads::{Binds, Pool, Row, Runner, bound};
use crate::store::sql::Sql;
use crate::store::{ActivityQuery, SeriesPoint, StoreError};
use chrono::{DateTime, Utc};

impl Binds for sqlx::Postgres {
    type Time = DateTime<Utc>;

    fn time(t: DateTime<Utc>) -> DateTime<Utc> {
        t
    }
}

#[async_trait::async_trait]
impl Runner for PgStore {
    fn read_pool(&self) -> Pool<'_> {
        Pool::Postgres(&self.reads)
    }

    fn write_pool(&self) -> Pool<'_> {
        Pool::Postgres(&self.pool)
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
        let rows = bound::<sqlx::Postgres, T>(&sql)?
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
                let mut series = self
                    .hourly_activity(character, from, cutoff, bucket_secs)
                    .await?;
                series.extend(
                    self.raw_activity(character, cutoff, to, bucket_secs)
                        .await?,
                );
                return Ok(series);
            }
        }
        self.raw_activity(character, from, to, bucket_secs).await
    }
}

impl PgStore {
    /// Kills per bucket from the hourly aggregate (buckets of at least an hour).
    async fn hourly_activity(
        &self,
        character: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        bucket_secs: i64,
    ) -> Result<Vec<SeriesPoint>, StoreError> {
        let text = "SELECT time_bucket(make_interval(secs => $4), bucket) AS bucket, \
                    (sum(kills_per_hour * samples) / nullif(sum(samples), 0))::float8 \
                        AS kills_per_hour, \
                    sum(kills)::int8 AS kills, sum(samples)::int8 AS samples \
             FROM kills_hourly \
             WHERE character_name = $1 AND bucket >= $2 AND bucket < $3 \
             GROUP BY 1 ORDER BY 1";
        let secs = bucket_secs.max(3600) as f64;
        self.rows(activity_sql(text, character, from, to, secs))
            .await
    }

    /// Kills per bucket from raw telemetry.
    async fn raw_activity(
        &self,
        character: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        bucket_secs: i64,
    ) -> Result<Vec<SeriesPoint>, StoreError> {
        // TimescaleDB's time_bucket is the native tool; plain PostgreSQL floors the epoch.
        let bucket = if self.timescaledb() {
            "time_bucket(make_interval(secs => $4), timestamp)"
        } else {
            "to_timestamp(floor(extract(epoch FROM timestamp) / $4) * $4)"
        };
        let text = format!(
            "SELECT {bucket} AS bucket, avg(kills_per_hour)::float8 AS kills_per_hour, \
                    sum(kills_delta)::int8 AS kills, count(*) AS samples \
             FROM telemetry_events \
             WHERE character_name = $1 AND timestamp >= $2 AND timestamp < $3 \
             GROUP BY 1 ORDER BY 1"
        );
        self.rows(activity_sql(&text, character, from, to, bucket_secs as f64))
            .await
    }
}

/// An activity statement: `$1` the character, [`$2`, `$3`) the range, `$4` the bucket in seconds.
fn activity_sql(
    text: &str,
    character: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket_secs: f64,
) -> Sql {
    Sql::new(
        text,
        vec![character.into(), from.into(), to.into(), bucket_secs.into()],
    )
}
