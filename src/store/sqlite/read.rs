//! SQLite read queries of the query API. Timestamps are fixed-width RFC 3339 text, so range
//! filters compare text and use the same indexes as on PostgreSQL.

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{SqliteStore, ts};
use crate::store::{
    ActivityQuery, CharacterSummary, EventKind, EventQuery, EventRecord, HeatCell, HeatmapQuery,
    HistoryQuery, LeaderMetric, LeaderQuery, LeaderRow, MAX_TRAIL_BREAKS, ProgressPoint,
    ProgressQuery, SeriesPoint, SessionRares, StoreError, StoreRead, TelemetryRecord, TrailPoint,
    TrailQuery, TrailThinner, WorldQuery,
};

const TELEMETRY_COLUMNS: &str = "id, character_name, char_tag, session_id, timestamp, ew, ns, z, \
    kills, kills_per_hour, onlinetime, deaths, total_deaths, rares_found, prismatic_taper_count, \
    vt_state, mem_mb, cpu_pct, mem_handles, latency_ms";

/// Epoch seconds of a stored timestamp.
const EPOCH: &str = "CAST(strftime('%s', timestamp) AS INTEGER)";

fn push_range(
    qb: &mut QueryBuilder<'_, Sqlite>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    after: Option<(DateTime<Utc>, i64)>,
) {
    if let Some(from) = from {
        qb.push(" AND timestamp >= ").push_bind(ts(&from));
    }
    if let Some(to) = to {
        qb.push(" AND timestamp < ").push_bind(ts(&to));
    }
    if let Some((at, id)) = after {
        let at = ts(&at);
        qb.push(" AND (timestamp > ")
            .push_bind(at.clone())
            .push(" OR (timestamp = ")
            .push_bind(at)
            .push(" AND id > ")
            .push_bind(id)
            .push("))");
    }
}

const SUMMARY_SQL: &str = "SELECT c.character_name, c.char_tag, c.first_seen, c.last_seen, \
        coalesce(k.total_kills, 0) AS total_kills, coalesce(r.total_rares, 0) AS total_rares, \
        c.deaths, c.total_deaths \
    FROM characters c \
    LEFT JOIN char_stats k ON k.character_name = c.character_name \
    LEFT JOIN rare_stats r ON r.character_name = c.character_name";

/// `floor(column / bin)` as an integer (SQLite has no floor() in every build).
fn floor_div(column: &str, bin: f64) -> String {
    // `bin` is a validated finite number; formatting it keeps the expression one placeholder-free
    // string so the same text appears in SELECT and GROUP BY.
    let bin = format!("{bin:?}");
    format!(
        "(CAST({column} / {bin} AS INTEGER) - ({column} < 0 AND {column} / {bin} != CAST({column} / {bin} AS INTEGER)))"
    )
}

#[async_trait::async_trait]
impl StoreRead for SqliteStore {
    async fn history(&self, q: &HistoryQuery) -> Result<Vec<TelemetryRecord>, StoreError> {
        let mut qb = QueryBuilder::new("SELECT ");
        qb.push(TELEMETRY_COLUMNS)
            .push(" FROM telemetry_events WHERE 1");
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
        // The same one-pass thinning as on PostgreSQL: rows in time order off the time index.
        let mut qb = QueryBuilder::new(
            "SELECT character_name, timestamp, ew, ns, z FROM telemetry_events WHERE timestamp >= ",
        );
        qb.push_bind(ts(&q.since));
        if let Some(until) = q.until {
            qb.push(" AND timestamp <= ").push_bind(ts(&until));
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
                "SELECT id, character_name, mob AS label, NULL AS session_id, timestamp, ew, ns, z \
                 FROM spawn_events WHERE 1",
                "mob",
            ),
            EventKind::Rares => (
                "SELECT id, character_name, name AS label, session_id, timestamp, ew, ns, z \
                 FROM rare_events WHERE 1",
                "name",
            ),
            EventKind::Portals => (
                "SELECT id, character_name, name AS label, session_id, timestamp, ew, ns, z \
                 FROM portal_events WHERE 1",
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
        let bx = floor_div("ew", q.bin);
        let by = floor_div("ns", q.bin);
        let mut qb = QueryBuilder::new(format!(
            "SELECT {bx} AS bx, {by} AS by, count(*) AS count FROM {table} WHERE timestamp >= "
        ));
        qb.push_bind(ts(&q.from))
            .push(" AND timestamp < ")
            .push_bind(ts(&q.to));
        if let Some(l) = &q.label {
            qb.push(format_args!(" AND {label_col} = "))
                .push_bind(l.clone());
        }
        qb.push(" GROUP BY 1, 2 ORDER BY 1, 2");
        let rows = qb.build().fetch_all(&self.reads).await?;
        rows.iter()
            .map(|r| {
                let bx: i64 = r.try_get("bx")?;
                let by: i64 = r.try_get("by")?;
                Ok(HeatCell {
                    ew: bx as f64 * q.bin,
                    ns: by as f64 * q.bin,
                    count: r.try_get("count")?,
                })
            })
            .collect()
    }

    /// Hourly spawn counts over [from, to) (whole hours), regrouped into cells of `k` base cells.
    async fn spawn_cell_counts(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        k: i64,
    ) -> Result<Vec<(i64, i64, i64)>, StoreError> {
        // Integer floor division that rounds towards minus infinity for negative cells too.
        let floor = |c: &str| {
            format!("(CASE WHEN {c} >= 0 THEN {c} / {k} ELSE -((-{c} + {k} - 1) / {k}) END)")
        };
        let sql = format!(
            "SELECT {} AS bx, {} AS by, sum(count) AS count FROM spawn_cells \
             WHERE hour >= ?1 AND hour < ?2 GROUP BY 1, 2",
            floor("cx"),
            floor("cy")
        );
        let rows = sqlx::query(&sql)
            .bind(ts(&from))
            .bind(ts(&to))
            .fetch_all(&self.reads)
            .await?;
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
            "SELECT {TELEMETRY_COLUMNS} FROM telemetry_events WHERE id IN ( \
                 SELECT (SELECT e.id FROM telemetry_events e \
                         WHERE e.character_name = c.character_name \
                           AND e.timestamp <= ?1 AND e.timestamp > ?2 \
                         ORDER BY e.timestamp DESC LIMIT 1) \
                 FROM characters c WHERE c.last_seen > ?2 AND c.first_seen <= ?1) \
             ORDER BY character_name LIMIT ?3"
        );
        Ok(sqlx::query_as::<_, TelemetryRecord>(&sql)
            .bind(ts(&at))
            .bind(ts(&since))
            .bind(limit)
            .fetch_all(&self.reads)
            .await?)
    }

    async fn characters_seen_since(&self, since: DateTime<Utc>) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM characters WHERE last_seen >= ?1")
                .bind(ts(&since))
                .fetch_one(&self.reads)
                .await?,
        )
    }

    async fn leaderboard(&self, q: &LeaderQuery) -> Result<Vec<LeaderRow>, StoreError> {
        let (metric, from, to, limit) = (q.metric, q.from, q.to, q.limit);
        let sql = match metric {
            LeaderMetric::Kills => {
                "SELECT character_name, CAST(sum(kills_delta) AS REAL) AS value \
                 FROM telemetry_events WHERE timestamp >= ?1 AND timestamp < ?2 GROUP BY 1 \
                 HAVING sum(kills_delta) > 0 ORDER BY value DESC, character_name LIMIT ?3"
            }
            LeaderMetric::KillsPerHour => {
                "SELECT character_name, avg(kills_per_hour) AS value FROM telemetry_events \
                 WHERE timestamp >= ?1 AND timestamp < ?2 AND kills_per_hour IS NOT NULL \
                 GROUP BY 1 ORDER BY value DESC, character_name LIMIT ?3"
            }
            LeaderMetric::Rares => {
                "SELECT character_name, CAST(count(*) AS REAL) AS value FROM rare_events \
                 WHERE timestamp >= ?1 AND timestamp < ?2 GROUP BY 1 \
                 ORDER BY value DESC, character_name LIMIT ?3"
            }
        };
        let rows = sqlx::query(sql)
            .bind(ts(&from))
            .bind(ts(&to))
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
        let sql = format!(
            "SELECT strftime('%Y-%m-%dT%H:%M:%SZ', ({EPOCH} / ?4) * ?4, 'unixepoch') AS bucket, \
                    avg(kills_per_hour) AS kills_per_hour, \
                    sum(kills_delta) AS kills, count(*) AS samples \
             FROM telemetry_events \
             WHERE character_name = ?1 AND timestamp >= ?2 AND timestamp < ?3 \
             GROUP BY 1 ORDER BY 1"
        );
        Ok(sqlx::query_as::<_, SeriesPoint>(&sql)
            .bind(character)
            .bind(ts(&from))
            .bind(ts(&to))
            .bind(bucket_secs)
            .fetch_all(&self.reads)
            .await?)
    }

    async fn session_rares(
        &self,
        character: &str,
        limit: i64,
    ) -> Result<Vec<SessionRares>, StoreError> {
        Ok(sqlx::query_as::<_, SessionRares>(
            "SELECT session_id, session_rares AS rares, updated_at AS last_update \
             FROM rare_stats_sessions \
             WHERE character_name = ?1 ORDER BY updated_at DESC, session_id LIMIT ?2",
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
             WHERE timestamp >= ?1 AND (?2 IS NULL OR character_name = ?2) \
             ORDER BY timestamp LIMIT ?3",
        )
        .bind(ts(&q.since))
        .bind(q.character.as_deref())
        .bind(MAX_TRAIL_BREAKS)
        .fetch_all(&self.reads)
        .await?)
    }

    /// The latest stored sheet of a character, as JSON text.
    async fn latest_sheet_json(&self, character: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT data FROM character_sheets WHERE character_name = ?1 \
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
             WHERE character_name = ?1 AND timestamp >= ?2 AND timestamp < ?3 \
             ORDER BY timestamp, id LIMIT ?4",
        )
        .bind(character)
        .bind(ts(&from))
        .bind(ts(&to))
        .bind(limit)
        .fetch_all(&self.reads)
        .await?)
    }
}
