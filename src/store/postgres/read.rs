//! PostgreSQL read queries of the query API. Filters are added to the SQL only when present, so
//! every statement the planner sees can use the (character, time) and time indexes.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder, Row};

use super::PgStore;
use crate::store::{
    ActivityQuery, CharacterSummary, EventKind, EventQuery, EventRecord, HeatCell, HeatmapQuery,
    HistoryQuery, LeaderMetric, LeaderQuery, LeaderRow, MAX_TRAIL_BREAKS, ProgressPoint,
    ProgressQuery, SeriesPoint, SessionRares, StoreError, StoreRead, TelemetryRecord, TrailPoint,
    TrailQuery, TrailThinner, WorldQuery,
};

const TELEMETRY_COLUMNS: &str = "id, character_name, char_tag, session_id, timestamp, ew, ns, z, \
    kills, kills_per_hour, onlinetime, deaths, total_deaths, rares_found, prismatic_taper_count, \
    vt_state, mem_mb, cpu_pct, mem_handles, latency_ms";

/// Appends ` AND <range and cursor filters>` for a table with `timestamp` and `id` columns.
fn push_range(
    qb: &mut QueryBuilder<'_, Postgres>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    after: Option<(DateTime<Utc>, i64)>,
) {
    if let Some(from) = from {
        qb.push(" AND timestamp >= ").push_bind(from);
    }
    if let Some(to) = to {
        qb.push(" AND timestamp < ").push_bind(to);
    }
    if let Some((ts, id)) = after {
        qb.push(" AND (timestamp, id) > (")
            .push_bind(ts)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
}

const SUMMARY_SQL: &str = "SELECT c.character_name, c.char_tag, c.first_seen, c.last_seen, \
        coalesce(k.total_kills, 0) AS total_kills, coalesce(r.total_rares, 0) AS total_rares, \
        c.deaths, c.total_deaths \
    FROM characters c \
    LEFT JOIN char_stats k USING (character_name) \
    LEFT JOIN rare_stats r USING (character_name)";

#[async_trait::async_trait]
impl StoreRead for PgStore {
    async fn history(&self, q: &HistoryQuery) -> Result<Vec<TelemetryRecord>, StoreError> {
        let mut qb = QueryBuilder::new("SELECT ");
        qb.push(TELEMETRY_COLUMNS)
            .push(" FROM telemetry_events WHERE TRUE");
        if let Some(c) = &q.character {
            qb.push(" AND character_name = ").push_bind(c.clone());
        }
        push_range(&mut qb, q.from, q.to, q.after);
        qb.push(" ORDER BY timestamp, id LIMIT ").push_bind(q.limit);
        Ok(qb
            .build_query_as::<TelemetryRecord>()
            .fetch_all(&self.reads)
            .await?)
    }

    async fn trail_points(&self, q: &TrailQuery) -> Result<Vec<TrailPoint>, StoreError> {
        // Rows stream in time order straight off the time index (no sort in the database); each
        // is appended to its character's trail unless that trail already has a point in the same
        // `step` bucket, so memory holds only the points that are kept.
        let mut qb = QueryBuilder::new(
            "SELECT character_name, timestamp, ew, ns, z FROM telemetry_events WHERE timestamp >= ",
        );
        qb.push_bind(q.since);
        if let Some(until) = q.until {
            qb.push(" AND timestamp <= ").push_bind(until);
        }
        if let Some(c) = &q.character {
            qb.push(" AND character_name = ").push_bind(c.clone());
        }
        qb.push(" ORDER BY timestamp, id");
        let mut thinner = TrailThinner::new(q.step, q.limit);
        let mut rows = qb.build_query_as::<TrailPoint>().fetch(&self.reads);
        while let Some(point) = futures_util::TryStreamExt::try_next(&mut rows).await? {
            if !thinner.offer(point) {
                break;
            }
        }
        Ok(thinner.finish())
    }

    async fn events(
        &self,
        kind: EventKind,
        q: &EventQuery,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let (select, label_col) = match kind {
            EventKind::Spawns => (
                "SELECT id, character_name, mob AS label, NULL::text AS session_id, timestamp, \
                 ew, ns, z FROM spawn_events WHERE TRUE",
                "mob",
            ),
            EventKind::Rares => (
                "SELECT id, character_name, name AS label, session_id, timestamp, ew, ns, z \
                 FROM rare_events WHERE TRUE",
                "name",
            ),
            EventKind::Portals => (
                "SELECT id, character_name, name AS label, session_id, timestamp, ew, ns, z \
                 FROM portal_events WHERE TRUE",
                "name",
            ),
        };
        let mut qb = QueryBuilder::new(select);
        if let Some(c) = &q.character {
            qb.push(" AND character_name = ").push_bind(c.clone());
        }
        if let Some(l) = &q.label {
            qb.push(format_args!(" AND {label_col} = "))
                .push_bind(l.clone());
        }
        push_range(&mut qb, q.from, q.to, q.after);
        qb.push(" ORDER BY timestamp, id LIMIT ").push_bind(q.limit);
        Ok(qb
            .build_query_as::<EventRecord>()
            .fetch_all(&self.reads)
            .await?)
    }

    async fn binned_events(
        &self,
        kind: EventKind,
        q: &HeatmapQuery,
    ) -> Result<Vec<HeatCell>, StoreError> {
        let (table, label_col) = match kind {
            EventKind::Spawns => ("spawn_events", "mob"),
            EventKind::Rares => ("rare_events", "name"),
            EventKind::Portals => ("portal_events", "name"),
        };
        // The planner cannot know how few cells there are and would sort a million rows on disk;
        // a hash aggregate in memory is the right plan for any bin size the API allows.
        let mut tx = self.reads.begin().await?;
        sqlx::query("SET LOCAL work_mem = '64MB'")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SET LOCAL enable_sort = off")
            .execute(&mut *tx)
            .await?;
        let mut qb = QueryBuilder::new("SELECT floor(ew / ");
        qb.push_bind(q.bin)
            .push(")::int8 AS bx, floor(ns / ")
            .push_bind(q.bin)
            .push(format_args!(
                ")::int8 AS by, count(*) AS count FROM {table} WHERE timestamp >= "
            ))
            .push_bind(q.from)
            .push(" AND timestamp < ")
            .push_bind(q.to);
        if let Some(l) = &q.label {
            qb.push(format_args!(" AND {label_col} = "))
                .push_bind(l.clone());
        }
        qb.push(" GROUP BY 1, 2");
        let rows = qb.build().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let mut cells = rows
            .iter()
            .map(|r| {
                let bx: i64 = r.try_get("bx")?;
                let by: i64 = r.try_get("by")?;
                Ok(HeatCell {
                    ew: bx as f64 * q.bin,
                    ns: by as f64 * q.bin,
                    count: r.try_get("count")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        cells.sort_by(|a, b| a.ew.total_cmp(&b.ew).then(a.ns.total_cmp(&b.ns)));
        Ok(cells)
    }

    /// Hourly spawn counts over [from, to) (whole hours), regrouped into cells of `k` base cells.
    async fn spawn_cell_counts(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        k: i64,
    ) -> Result<Vec<(i64, i64, i64)>, StoreError> {
        let mut tx = self.reads.begin().await?;
        sqlx::query("SET LOCAL work_mem = '64MB'")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SET LOCAL enable_sort = off")
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "SELECT floor(cx::float8 / $3)::int8 AS bx, floor(cy::float8 / $3)::int8 AS by, \
                    sum(count)::int8 AS count \
             FROM spawn_cells WHERE hour >= $1 AND hour < $2 GROUP BY 1, 2",
        )
        .bind(from)
        .bind(to)
        .bind(k as f64)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| Ok((r.try_get("bx")?, r.try_get("by")?, r.try_get("count")?)))
            .collect()
    }

    async fn characters(
        &self,
        name: Option<&str>,
        limit: i64,
    ) -> Result<Vec<CharacterSummary>, StoreError> {
        let mut qb = QueryBuilder::new(SUMMARY_SQL);
        if let Some(name) = name {
            qb.push(" WHERE c.character_name = ")
                .push_bind(name.to_owned());
        }
        qb.push(" ORDER BY c.character_name LIMIT ")
            .push_bind(limit);
        Ok(qb
            .build_query_as::<CharacterSummary>()
            .fetch_all(&self.reads)
            .await?)
    }

    async fn world_at(&self, q: &WorldQuery) -> Result<Vec<TelemetryRecord>, StoreError> {
        let (at, since, limit) = (q.at, q.since, q.limit);
        // One index probe per character seen around `at`: (character_name, timestamp DESC).
        let sql = format!(
            "SELECT t.* FROM characters c CROSS JOIN LATERAL ( \
                 SELECT {TELEMETRY_COLUMNS} FROM telemetry_events e \
                 WHERE e.character_name = c.character_name \
                   AND e.timestamp <= $1 AND e.timestamp > $2 \
                 ORDER BY e.timestamp DESC LIMIT 1) t \
             WHERE c.last_seen > $2 AND c.first_seen <= $1 \
             ORDER BY c.character_name LIMIT $3"
        );
        Ok(sqlx::query_as::<_, TelemetryRecord>(&sql)
            .bind(at)
            .bind(since)
            .bind(limit)
            .fetch_all(&self.reads)
            .await?)
    }

    async fn characters_seen_since(&self, since: DateTime<Utc>) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM characters WHERE last_seen >= $1")
                .bind(since)
                .fetch_one(&self.reads)
                .await?,
        )
    }

    async fn leaderboard(&self, q: &LeaderQuery) -> Result<Vec<LeaderRow>, StoreError> {
        let (metric, from, to, limit) = (q.metric, q.from, q.to, q.limit);
        let sql = match metric {
            LeaderMetric::Kills => {
                "SELECT character_name, sum(kills_delta)::float8 AS value FROM telemetry_events \
                 WHERE timestamp >= $1 AND timestamp < $2 GROUP BY 1 HAVING sum(kills_delta) > 0 \
                 ORDER BY value DESC, character_name LIMIT $3"
            }
            LeaderMetric::KillsPerHour => {
                "SELECT character_name, avg(kills_per_hour)::float8 AS value FROM telemetry_events \
                 WHERE timestamp >= $1 AND timestamp < $2 AND kills_per_hour IS NOT NULL \
                 GROUP BY 1 ORDER BY value DESC, character_name LIMIT $3"
            }
            LeaderMetric::Rares => {
                "SELECT character_name, count(*)::float8 AS value FROM rare_events \
                 WHERE timestamp >= $1 AND timestamp < $2 GROUP BY 1 \
                 ORDER BY value DESC, character_name LIMIT $3"
            }
        };
        let rows = sqlx::query(sql)
            .bind(from)
            .bind(to)
            .bind(limit)
            .fetch_all(&self.reads)
            .await?;
        rows.iter()
            .enumerate()
            .map(|(i, r)| {
                Ok(LeaderRow {
                    rank: i as i64 + 1,
                    character_name: r.try_get("character_name")?,
                    value: r.try_get("value")?,
                })
            })
            .collect()
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

    async fn session_rares(
        &self,
        character: &str,
        limit: i64,
    ) -> Result<Vec<SessionRares>, StoreError> {
        Ok(sqlx::query_as::<_, SessionRares>(
            "SELECT session_id, session_rares AS rares, updated_at AS last_update \
             FROM rare_stats_sessions \
             WHERE character_name = $1 ORDER BY updated_at DESC, session_id LIMIT $2",
        )
        .bind(character)
        .bind(limit)
        .fetch_all(&self.reads)
        .await?)
    }

    async fn trail_breaks(
        &self,
        q: &TrailQuery,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT character_name, timestamp FROM portal_events \
             WHERE timestamp >= $1 AND ($2::text IS NULL OR character_name = $2) \
             ORDER BY timestamp LIMIT $3",
        )
        .bind(q.since)
        .bind(q.character.as_deref())
        .bind(MAX_TRAIL_BREAKS)
        .fetch_all(&self.reads)
        .await?)
    }

    /// The latest stored sheet of a character, as JSON text.
    async fn latest_sheet_json(&self, character: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT data::text FROM character_sheets WHERE character_name = $1 \
             ORDER BY timestamp DESC, id DESC LIMIT 1",
        )
        .bind(character)
        .fetch_optional(&self.reads)
        .await?)
    }

    async fn progress(&self, q: &ProgressQuery) -> Result<Vec<ProgressPoint>, StoreError> {
        let (character, from, to, limit) = (q.character.as_str(), q.from, q.to, q.limit);
        Ok(sqlx::query_as::<_, ProgressPoint>(
            "SELECT timestamp, level, total_xp, luminance_earned FROM character_sheets \
             WHERE character_name = $1 AND timestamp >= $2 AND timestamp < $3 \
             ORDER BY timestamp, id LIMIT $4",
        )
        .bind(character)
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&self.reads)
        .await?)
    }
}

impl PgStore {
    async fn hourly_activity(
        &self,
        character: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        bucket_secs: i64,
    ) -> Result<Vec<SeriesPoint>, StoreError> {
        Ok(sqlx::query_as::<_, SeriesPoint>(
            "SELECT time_bucket(make_interval(secs => $4), bucket) AS bucket, \
                    (sum(kills_per_hour * samples) / nullif(sum(samples), 0))::float8 \
                        AS kills_per_hour, \
                    sum(kills)::int8 AS kills, sum(samples)::int8 AS samples \
             FROM kills_hourly \
             WHERE character_name = $1 AND bucket >= $2 AND bucket < $3 \
             GROUP BY 1 ORDER BY 1",
        )
        .bind(character)
        .bind(from)
        .bind(to)
        .bind(bucket_secs.max(3600) as f64)
        .fetch_all(&self.reads)
        .await?)
    }

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
        let sql = format!(
            "SELECT {bucket} AS bucket, avg(kills_per_hour)::float8 AS kills_per_hour, \
                    sum(kills_delta)::int8 AS kills, count(*) AS samples \
             FROM telemetry_events \
             WHERE character_name = $1 AND timestamp >= $2 AND timestamp < $3 \
             GROUP BY 1 ORDER BY 1"
        );
        Ok(sqlx::query_as::<_, SeriesPoint>(&sql)
            .bind(character)
            .bind(from)
            .bind(to)
            .bind(bucket_secs as f64)
            .fetch_all(&self.reads)
            .await?)
    }
}
