//! Every read of the storage contract, written once: the SQL both backends share (with the
//! [`Dialect`] fragments that differ) over a small [`Runner`] each backend provides (how it binds
//! arguments, decodes rows, and the few queries that truly differ: PostgreSQL's planner hints
//! and TimescaleDB aggregates).

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use futures_util::TryStreamExt;

use super::hour_of;
use super::sql::{Arg, Column, Dialect, Sql, sqlite_time};
use super::{
    ActivityQuery, CharacterStats, CharacterSummary, EventKind, EventQuery, EventRecord, HeatCell,
    HeatmapQuery, HistoryQuery, LeaderMetric, LeaderQuery, LeaderRow, LogEntry, LogQuery,
    MAX_TRAIL_BREAKS, ProgressPoint, ProgressQuery, RowCounts, SeriesPoint, SessionRares,
    SessionStats, StoreError, StoreRead, TelemetryRecord, TrailPoint, TrailQuery, TrailThinner,
    WorldQuery,
};

/// A row type both backends decode.
pub(crate) trait Row:
    for<'r> sqlx::FromRow<'r, PgRow> + for<'r> sqlx::FromRow<'r, SqliteRow> + Send + Unpin + 'static
{
}

impl<T> Row for T where
    T: for<'r> sqlx::FromRow<'r, PgRow>
        + for<'r> sqlx::FromRow<'r, SqliteRow>
        + Send
        + Unpin
        + 'static
{
}

/// Adds one scalar argument as `DB` binds it, `time` turning a time into what the backend
/// stores; a whole column is PostgreSQL's alone (see [`pg_args`]).
fn add_scalar<'q, DB, Tm>(
    out: &mut <DB as sqlx::Database>::Arguments<'q>,
    arg: &Arg,
    time: fn(DateTime<Utc>) -> Tm,
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    f64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<f64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Tm: sqlx::Encode<'q, DB> + sqlx::Type<DB> + 'q,
{
    use sqlx::Arguments;
    match arg {
        Arg::Text(v) | Arg::Json(v) => out.add(v.clone()),
        Arg::OptText(v) => out.add(v.clone()),
        Arg::Int(v) => out.add(*v),
        Arg::OptInt(v) => out.add(*v),
        Arg::Float(v) => out.add(*v),
        Arg::OptFloat(v) => out.add(*v),
        Arg::Time(v) => out.add(time(*v)),
        Arg::Column(_) => Err("a column of values binds only on PostgreSQL".into()),
    }
    .map_err(|e| StoreError::Database(sqlx::Error::Encode(e)))
}

/// `args` bound for PostgreSQL (times as `timestamptz`, columns as arrays).
pub(crate) fn pg_args(args: &[Arg]) -> Result<sqlx::postgres::PgArguments, StoreError> {
    use sqlx::Arguments;
    let mut out = sqlx::postgres::PgArguments::default();
    for arg in args {
        let added = match arg {
            Arg::Column(Column::Text(v)) => out.add(v.clone()),
            Arg::Column(Column::Int(v)) => out.add(v.clone()),
            Arg::Column(Column::Float(v)) => out.add(v.clone()),
            Arg::Column(Column::Time(v)) => out.add(v.clone()),
            scalar => {
                add_scalar::<sqlx::Postgres, _>(&mut out, scalar, |t| t)?;
                Ok(())
            }
        };
        added.map_err(|e| StoreError::Database(sqlx::Error::Encode(e)))?;
    }
    Ok(out)
}

/// `args` bound for SQLite (times as fixed-width RFC 3339 text).
pub(crate) fn sqlite_args<'q>(
    args: &[Arg],
) -> Result<sqlx::sqlite::SqliteArguments<'q>, StoreError> {
    let mut out = sqlx::sqlite::SqliteArguments::default();
    for arg in args {
        add_scalar::<sqlx::Sqlite, _>(&mut out, arg, sqlite_time)?;
    }
    Ok(out)
}

/// One of a backend's pools.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pool<'a> {
    Postgres(&'a sqlx::PgPool),
    Sqlite(&'a sqlx::SqlitePool),
}

impl Pool<'_> {
    /// The rows of `sql` one at a time, in order, until `each` returns false.
    pub(crate) async fn each<T: Row>(
        self,
        sql: Sql,
        each: &mut (dyn FnMut(T) -> bool + Send),
    ) -> Result<(), StoreError> {
        let mut rows = match self {
            Self::Postgres(pool) => {
                sqlx::query_as_with::<_, T, _>(&sql.text, pg_args(&sql.args)?).fetch(pool)
            }
            Self::Sqlite(pool) => {
                sqlx::query_as_with::<_, T, _>(&sql.text, sqlite_args(&sql.args)?).fetch(pool)
            }
        };
        while let Some(row) = rows.try_next().await? {
            if !each(row) {
                break;
            }
        }
        Ok(())
    }

    /// Runs a statement that returns no rows; how many rows it changed.
    pub(crate) async fn execute(self, sql: Sql) -> Result<u64, StoreError> {
        Ok(match self {
            Self::Postgres(pool) => sqlx::query_with(&sql.text, pg_args(&sql.args)?)
                .execute(pool)
                .await?
                .rows_affected(),
            Self::Sqlite(pool) => sqlx::query_with(&sql.text, sqlite_args(&sql.args)?)
                .execute(pool)
                .await?
                .rows_affected(),
        })
    }

    /// Runs `statements` in one transaction; how many rows each changed.
    pub(crate) async fn transaction(self, statements: &[Sql]) -> Result<Vec<u64>, StoreError> {
        let mut changed = Vec::with_capacity(statements.len());
        match self {
            Self::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                for sql in statements {
                    let done = sqlx::query_with(&sql.text, pg_args(&sql.args)?)
                        .execute(&mut *tx)
                        .await?;
                    changed.push(done.rows_affected());
                }
                tx.commit().await?;
            }
            Self::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for sql in statements {
                    let done = sqlx::query_with(&sql.text, sqlite_args(&sql.args)?)
                        .execute(&mut *tx)
                        .await?;
                    changed.push(done.rows_affected());
                }
                tx.commit().await?;
            }
        }
        Ok(changed)
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub(crate) async fn close(self) {
        match self {
            Self::Postgres(pool) => pool.close().await,
            Self::Sqlite(pool) => pool.close().await,
        }
    }
}

/// What a backend provides for the shared reads: its read pool, and the queries that truly
/// differ.
#[async_trait]
pub(crate) trait Runner: Send + Sync + Debug {
    /// Where reads run (with a statement timeout on PostgreSQL), and where the writer and
    /// maintenance run.
    fn pools(&self) -> (Pool<'_>, Pool<'_>);

    fn read_pool(&self) -> Pool<'_> {
        self.pools().0
    }

    fn write_pool(&self) -> Pool<'_> {
        self.pools().1
    }

    fn dialect(&self) -> Dialect {
        match self.read_pool() {
            Pool::Postgres(_) => Dialect::Postgres,
            Pool::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// The rows of `sql` one at a time, in order, until `each` returns false.
    async fn each<T: Row>(
        &self,
        sql: Sql,
        each: &mut (dyn FnMut(T) -> bool + Send),
    ) -> Result<(), StoreError> {
        self.read_pool().each(sql, each).await
    }

    /// Every row of `sql`.
    async fn rows<T: Row>(&self, sql: Sql) -> Result<Vec<T>, StoreError> {
        let mut rows = Vec::new();
        self.each(sql, &mut |row| {
            rows.push(row);
            true
        })
        .await?;
        Ok(rows)
    }

    /// Every row of a grouping query over many rows into few groups (heatmaps): PostgreSQL
    /// is told to aggregate in memory rather than sort on disk.
    async fn grouped<T: Row>(&self, sql: Sql) -> Result<Vec<T>, StoreError> {
        self.rows(sql).await
    }

    /// A character's kills per bucket (TimescaleDB answers old ranges from its hourly
    /// aggregate; SQLite formats buckets as text).
    async fn activity(&self, query: &ActivityQuery) -> Result<Vec<SeriesPoint>, StoreError>;
}

/// The telemetry columns every read of whole rows selects.
pub(crate) const TELEMETRY_COLUMNS: &str = "id, character_name, char_tag, session_id, timestamp, \
    ew, ns, z, kills, kills_per_hour, onlinetime, deaths, total_deaths, rares_found, \
    prismatic_taper_count, vt_state, mem_mb, cpu_pct, mem_handles, latency_ms, received_at, \
    clock_offset_ms";

const SUMMARY_SQL: &str = "SELECT c.character_name, c.char_tag, c.first_seen, c.last_seen, \
        coalesce(k.total_kills, 0) AS total_kills, coalesce(r.total_rares, 0) AS total_rares, \
        c.deaths, c.total_deaths \
    FROM characters c \
    LEFT JOIN char_stats k ON k.character_name = c.character_name \
    LEFT JOIN rare_stats r ON r.character_name = c.character_name";

/// The table of an event kind, and its label column.
fn event_table(kind: EventKind) -> (&'static str, &'static str) {
    match kind {
        EventKind::Spawns => ("spawn_events", "mob"),
        EventKind::Rares => ("rare_events", "name"),
        EventKind::Portals => ("portal_events", "name"),
    }
}

/// Appends ` AND <range and cursor filters>` for a table with `timestamp` and `id` columns.
fn push_range(
    sql: &mut Sql,
    dialect: Dialect,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    after: Option<(DateTime<Utc>, i64)>,
) {
    if let Some(from) = from {
        sql.push(" AND timestamp >= ").bind(from);
    }
    if let Some(to) = to {
        sql.push(" AND timestamp < ").bind(to);
    }
    if let Some((at, id)) = after {
        let at = sql.param(at);
        let id = sql.param(id);
        sql.push(" AND ").push(&dialect.after(&at, &id));
    }
}

#[async_trait]
impl<R: Runner> StoreRead for R {
    async fn history(&self, q: &HistoryQuery) -> Result<Vec<TelemetryRecord>, StoreError> {
        let mut sql = Sql::new(
            format!("SELECT {TELEMETRY_COLUMNS} FROM telemetry_events WHERE TRUE"),
            Vec::new(),
        );
        if let Some(c) = &q.character {
            sql.push(" AND character_name = ").bind(c.as_str());
        }
        push_range(&mut sql, self.dialect(), q.from, q.to, q.after);
        sql.push(" ORDER BY timestamp, id LIMIT ").bind(q.limit);
        self.rows(sql).await
    }

    async fn trail_points(&self, q: &TrailQuery) -> Result<Vec<TrailPoint>, StoreError> {
        // Rows stream in time order straight off the time index (no sort in the database); each
        // is appended to its character's trail unless that trail already has a point in the same
        // `step` bucket, so memory holds only the points that are kept.
        let mut sql = Sql::new(
            "SELECT character_name, timestamp, ew, ns, z FROM telemetry_events WHERE timestamp >= ",
            Vec::new(),
        );
        sql.bind(q.since);
        if let Some(until) = q.until {
            sql.push(" AND timestamp <= ").bind(until);
        }
        if let Some(c) = &q.character {
            sql.push(" AND character_name = ").bind(c.as_str());
        }
        sql.push(" ORDER BY timestamp, id");
        let mut thinner = TrailThinner::new(q.step, q.limit);
        self.each(sql, &mut |point: TrailPoint| thinner.offer(point))
            .await?;
        Ok(thinner.finish())
    }

    async fn trail_breaks(
        &self,
        q: &TrailQuery,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let sql = Sql::new(
            "SELECT character_name, timestamp FROM portal_events \
             WHERE timestamp >= $1 AND (CAST($2 AS TEXT) IS NULL OR character_name = $2) \
             ORDER BY timestamp LIMIT $3",
            vec![
                Arg::Time(q.since),
                q.character.as_deref().into(),
                MAX_TRAIL_BREAKS.into(),
            ],
        );
        self.rows(sql).await
    }

    async fn events(
        &self,
        kind: EventKind,
        q: &EventQuery,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let (table, label) = event_table(kind);
        let session = match kind {
            EventKind::Spawns => "CAST(NULL AS TEXT)",
            EventKind::Rares | EventKind::Portals => "session_id",
        };
        let mut sql = Sql::new(
            format!(
                "SELECT id, character_name, {label} AS label, {session} AS session_id, \
                 timestamp, ew, ns, z FROM {table} WHERE TRUE"
            ),
            Vec::new(),
        );
        if let Some(c) = &q.character {
            sql.push(" AND character_name = ").bind(c.as_str());
        }
        if let Some(l) = &q.label {
            sql.push(&format!(" AND {label} = ")).bind(l.as_str());
        }
        push_range(&mut sql, self.dialect(), q.from, q.to, q.after);
        sql.push(" ORDER BY timestamp, id LIMIT ").bind(q.limit);
        self.rows(sql).await
    }

    async fn binned_events(&self, q: &HeatmapQuery) -> Result<Vec<HeatCell>, StoreError> {
        let (table, label) = event_table(q.kind);
        let mut sql = Sql::default();
        let bin = sql.param(q.bin);
        let d = self.dialect();
        sql.push(&format!(
            "SELECT {} AS bx, {} AS by, count(*) AS count FROM {table} WHERE timestamp >= ",
            d.floor_div("ew", &bin),
            d.floor_div("ns", &bin),
        ));
        sql.bind(q.from).push(" AND timestamp < ").bind(q.to);
        if let Some(l) = &q.label {
            sql.push(&format!(" AND {label} = ")).bind(l.as_str());
        }
        sql.push(" GROUP BY 1, 2");
        let rows: Vec<(i64, i64, i64)> = self.grouped(sql).await?;
        Ok(HeatCell::grid(rows, q.bin))
    }

    /// Hourly spawn counts over [from, to) (whole hours), regrouped into cells of `k` base cells.
    async fn spawn_cell_counts(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        k: i64,
    ) -> Result<Vec<(i64, i64, i64)>, StoreError> {
        let d = self.dialect();
        let sql = Sql::new(
            format!(
                "SELECT {} AS bx, {} AS by, CAST(sum(count) AS BIGINT) AS count \
                 FROM spawn_cells WHERE hour >= $1 AND hour < $2 GROUP BY 1, 2",
                d.floor_div_int("cx", "$3"),
                d.floor_div_int("cy", "$3"),
            ),
            vec![from.into(), to.into(), k.max(1).into()],
        );
        self.grouped(sql).await
    }

    async fn characters(
        &self,
        name: Option<&str>,
        limit: i64,
    ) -> Result<Vec<CharacterSummary>, StoreError> {
        let mut sql = Sql::new(SUMMARY_SQL, Vec::new());
        if let Some(name) = name {
            sql.push(" WHERE c.character_name = ").bind(name);
        }
        sql.push(" ORDER BY c.character_name LIMIT ").bind(limit);
        self.rows(sql).await
    }

    async fn world_at(&self, q: &WorldQuery) -> Result<Vec<TelemetryRecord>, StoreError> {
        let sql = Sql::new(
            self.dialect().world_at(TELEMETRY_COLUMNS),
            vec![q.at.into(), q.since.into(), q.limit.into()],
        );
        self.rows(sql).await
    }

    async fn event_log(&self, q: &LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        // One branch per table the log reads, each limited before the union (the indexes on
        // time, or character and time, serve them).
        let wants = |kind: &str| q.kinds.iter().any(|k| k == kind);
        let mut branches: Vec<(&str, &str, Vec<&str>)> = Vec::new();
        let happenings: Vec<&str> = ["death", "disconnect", "connect", "level", "alert"]
            .into_iter()
            .filter(|k| wants(k))
            .collect();
        if !happenings.is_empty() {
            branches.push(("character_events", "kind, detail", happenings));
        }
        if wants("rare") {
            branches.push(("rare_events", "'rare' AS kind, name AS detail", Vec::new()));
        }
        if wants("portal") {
            branches.push((
                "portal_events",
                "'portal' AS kind, name AS detail",
                Vec::new(),
            ));
        }
        if branches.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new(
            "SELECT timestamp, character_name, kind, detail FROM (",
            Vec::new(),
        );
        for (i, (table, columns, kinds)) in branches.iter().enumerate() {
            if i > 0 {
                sql.push(" UNION ALL ");
            }
            sql.push(&format!(
                "SELECT * FROM (SELECT timestamp, character_name, {columns} FROM {table} WHERE timestamp < "
            ))
            .bind(q.before);
            if let Some(name) = &q.character {
                sql.push(" AND character_name = ").bind(name.as_str());
            }
            if !kinds.is_empty() {
                sql.push(" AND (");
                for (j, kind) in kinds.iter().enumerate() {
                    if j > 0 {
                        sql.push(" OR ");
                    }
                    sql.push("kind = ").bind(*kind);
                }
                sql.push(")");
            }
            sql.push(" ORDER BY timestamp DESC LIMIT ")
                .bind(q.limit)
                .push(&format!(") AS b{i}"));
        }
        sql.push(") AS e ORDER BY timestamp DESC, character_name, kind LIMIT ")
            .bind(q.limit);
        self.rows(sql).await
    }

    async fn characters_seen_since(&self, since: DateTime<Utc>) -> Result<i64, StoreError> {
        let sql = Sql::new(
            "SELECT count(*) FROM characters WHERE last_seen >= $1",
            vec![since.into()],
        );
        let rows: Vec<(i64,)> = self.rows(sql).await?;
        Ok(rows.first().map_or(0, |r| r.0))
    }

    async fn leaderboard(&self, q: &LeaderQuery) -> Result<Vec<LeaderRow>, StoreError> {
        let text = match q.metric {
            // Kills and rates come by the hour (`kill_hours`): every hour that starts in
            // [hour of `from`, `to`) counts whole.
            LeaderMetric::Kills => {
                "SELECT character_name, CAST(sum(kills) AS DOUBLE PRECISION) AS value \
                 FROM kill_hours WHERE hour >= $1 AND hour < $2 GROUP BY 1 \
                 HAVING sum(kills) > 0 ORDER BY value DESC, character_name LIMIT $3"
            }
            LeaderMetric::KillsPerHour => {
                "SELECT character_name, \
                        CAST(sum(kph_sum) AS DOUBLE PRECISION) / sum(kph_samples) AS value \
                 FROM kill_hours WHERE hour >= $1 AND hour < $2 GROUP BY 1 \
                 HAVING sum(kph_samples) > 0 ORDER BY value DESC, character_name LIMIT $3"
            }
            LeaderMetric::Rares => {
                "SELECT character_name, CAST(count(*) AS DOUBLE PRECISION) AS value \
                 FROM rare_events WHERE timestamp >= $1 AND timestamp < $2 GROUP BY 1 \
                 ORDER BY value DESC, character_name LIMIT $3"
            }
        };
        let from = match q.metric {
            LeaderMetric::Rares => q.from,
            LeaderMetric::Kills | LeaderMetric::KillsPerHour => hour_of(q.from),
        };
        let sql = Sql::new(text, vec![from.into(), q.to.into(), q.limit.into()]);
        let rows: Vec<(String, f64)> = self.rows(sql).await?;
        Ok(rows
            .into_iter()
            .enumerate()
            .map(|(i, (character_name, value))| LeaderRow {
                rank: i as i64 + 1,
                character_name,
                value,
            })
            .collect())
    }

    async fn activity(&self, q: &ActivityQuery) -> Result<Vec<SeriesPoint>, StoreError> {
        Runner::activity(self, q).await
    }

    async fn session_rares(
        &self,
        character: &str,
        limit: i64,
    ) -> Result<Vec<SessionRares>, StoreError> {
        let sql = Sql::new(
            "SELECT session_id, session_rares AS rares, updated_at AS last_update \
             FROM rare_stats_sessions \
             WHERE character_name = $1 ORDER BY updated_at DESC, session_id LIMIT $2",
            vec![character.into(), limit.into()],
        );
        self.rows(sql).await
    }

    async fn latest_sheet_json(&self, character: &str) -> Result<Option<String>, StoreError> {
        let sql = Sql::new(
            "SELECT CAST(data AS TEXT) FROM character_sheets WHERE character_name = $1 \
             ORDER BY timestamp DESC, id DESC LIMIT 1",
            vec![character.into()],
        );
        let rows: Vec<(String,)> = self.rows(sql).await?;
        Ok(rows.into_iter().next().map(|r| r.0))
    }

    async fn progress(&self, q: &ProgressQuery) -> Result<Vec<ProgressPoint>, StoreError> {
        let sql = Sql::new(
            "SELECT timestamp, level, total_xp, luminance_earned FROM character_sheets \
             WHERE character_name = $1 AND timestamp >= $2 AND timestamp < $3 \
             ORDER BY timestamp, id LIMIT $4",
            vec![
                q.character.as_str().into(),
                q.from.into(),
                q.to.into(),
                q.limit.into(),
            ],
        );
        self.rows(sql).await
    }

    async fn character_stats(&self) -> Result<Vec<CharacterStats>, StoreError> {
        let sql = Sql::new(
            "SELECT n.character_name, coalesce(c.total_kills, 0) AS total_kills, \
                    coalesce(r.total_rares, 0) AS total_rares \
             FROM (SELECT character_name FROM char_stats \
                   UNION SELECT character_name FROM rare_stats) n \
             LEFT JOIN char_stats c ON c.character_name = n.character_name \
             LEFT JOIN rare_stats r ON r.character_name = n.character_name \
             ORDER BY 1",
            Vec::new(),
        );
        self.rows(sql).await
    }

    async fn recent_sessions(
        &self,
        since: DateTime<Utc>,
        character: Option<&str>,
    ) -> Result<Vec<SessionStats>, StoreError> {
        let sql = Sql::new(
            "SELECT k.character_name, k.session_id, k.last_kills, \
                    coalesce(s.session_rares, 0) AS session_rares \
             FROM session_kills k \
             LEFT JOIN rare_stats_sessions s \
                ON s.character_name = k.character_name AND s.session_id = k.session_id \
             WHERE k.updated_at >= $1 AND (CAST($2 AS TEXT) IS NULL OR k.character_name = $2) \
             ORDER BY 1, 2",
            vec![since.into(), character.into()],
        );
        self.rows(sql).await
    }

    async fn character_totals(&self, name: &str) -> Result<(i64, i64), StoreError> {
        let sql = Sql::new(
            "SELECT coalesce((SELECT total_kills FROM char_stats WHERE character_name = $1), 0), \
                    coalesce((SELECT total_rares FROM rare_stats WHERE character_name = $1), 0)",
            vec![name.into()],
        );
        let rows: Vec<(i64, i64)> = self.rows(sql).await?;
        Ok(rows.first().copied().unwrap_or_default())
    }

    async fn row_counts(&self) -> Result<RowCounts, StoreError> {
        let sql = Sql::new(
            "SELECT (SELECT count(*) FROM telemetry_events), \
                    (SELECT count(*) FROM spawn_events), (SELECT count(*) FROM rare_events)",
            Vec::new(),
        );
        let rows: Vec<(i64, i64, i64)> = self.rows(sql).await?;
        let (telemetry, spawns, rares) = rows.first().copied().unwrap_or_default();
        Ok(RowCounts {
            telemetry,
            spawns,
            rares,
        })
    }
}
