//! Persistence: the events the writer hands over, the domain rows read back, and [`Store`], which
//! dispatches to the SQLite or PostgreSQL implementation.
//!
//! The interface is coarse and domain-shaped (`write_batch`, `character_stats`, ...) so each backend
//! uses its own best SQL; no SQL string is shared between dialects.

mod pg_read;
mod postgres;
pub mod query;
mod sqlite;
mod sqlite_read;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::protocol::{CharacterSheet, Portal, Rare, Spawn, Telemetry};

pub use postgres::PgStore;
pub use query::{
    CharacterSummary, EventKind, EventQuery, EventRecord, HeatCell, HeatmapQuery, LeaderMetric,
    LeaderRow, ProgressPoint, SeriesPoint, SessionRares,
};
pub use sqlite::SqliteStore;

/// Calls the same method on whichever backend this store is.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Sqlite(s) => s.$method($($arg),*).await,
            Store::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

/// One accepted event on its way to the database.
// Telemetry dominates the queue, so boxing it would add an allocation to nearly every event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A telemetry frame, the kills it adds to the character's total, and its session's kill
    /// baseline afterwards (a late frame leaves the baseline where it was).
    Telemetry {
        row: Telemetry,
        kills_delta: i64,
        kills_baseline: i64,
    },
    Spawn(Spawn),
    /// A rare find, counted in `session_id` when the character's session is known.
    Rare {
        rare: Rare,
        session_id: Option<String>,
    },
    /// A character sheet (`character_stats`), kept whole.
    Sheet(CharacterSheet),
    /// A teleport whose position is known (`ew`/`ns` are set).
    Portal {
        portal: Portal,
        session_id: Option<String>,
    },
}

/// A character's persisted running totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CharacterStats {
    pub character_name: String,
    pub total_kills: i64,
    pub total_rares: i64,
}

/// A session's persisted kill baseline and rare count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionStats {
    pub character_name: String,
    pub session_id: String,
    pub last_kills: i64,
    pub session_rares: i64,
}

/// What a character brings back into memory: its totals and its recent sessions' baselines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CharacterState {
    pub total_kills: i64,
    pub total_rares: i64,
    pub sessions: Vec<SessionStats>,
}

/// Row counts of the event tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RowCounts {
    pub telemetry: i64,
    pub spawns: i64,
    pub rares: i64,
}

/// A stored rare find.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredRare {
    pub character_name: String,
    pub name: String,
    pub session_id: Option<String>,
    pub timestamp: DateTime<Utc>,
    pub ew: f64,
    pub ns: f64,
    pub z: f64,
}

/// A stored telemetry row with its id.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TelemetryRecord {
    pub id: i64,
    #[serde(flatten)]
    pub telemetry: Telemetry,
}

/// A page request over stored telemetry, oldest first.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub character: Option<String>,
    /// Inclusive lower bound.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound.
    pub to: Option<DateTime<Utc>>,
    /// Resume after this (timestamp, id), from the previous page's last row.
    pub after: Option<(DateTime<Utc>, i64)>,
    pub limit: i64,
}

/// One point of a character's trail.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TrailPoint {
    pub character_name: String,
    pub timestamp: DateTime<Utc>,
    pub ew: f64,
    pub ns: f64,
    pub z: f64,
    /// The character teleported (a `portal` frame) since the previous point: do not join the
    /// two. Only present when true.
    #[serde(rename = "break", skip_serializing_if = "std::ops::Not::not")]
    pub segment_start: bool,
}

/// Marks the first point after each teleport in trails grouped by character in time order.
/// `portals` holds (character, time) pairs in any order.
pub(crate) fn mark_trail_breaks(points: &mut [TrailPoint], portals: &[(String, DateTime<Utc>)]) {
    if portals.is_empty() {
        return;
    }
    let mut by_character: HashMap<&str, Vec<DateTime<Utc>>> = HashMap::new();
    for (name, at) in portals {
        by_character.entry(name).or_default().push(*at);
    }
    for times in by_character.values_mut() {
        times.sort_unstable();
    }
    for i in 1..points.len() {
        let (before, after) = points.split_at_mut(i);
        let (prev, point) = (&before[i - 1], &mut after[0]);
        if prev.character_name != point.character_name {
            continue;
        }
        let Some(times) = by_character.get(point.character_name.as_str()) else {
            continue;
        };
        // Any teleport in (prev, point]?
        let first_after_prev = times.partition_point(|t| *t <= prev.timestamp);
        if times
            .get(first_after_prev)
            .is_some_and(|t| *t <= point.timestamp)
        {
            point.segment_start = true;
        }
    }
}

/// Builds trails from points arriving in time order: groups them by character and, with a step,
/// keeps only the first point of each character's `step`-second bucket.
#[derive(Debug)]
pub(crate) struct TrailThinner {
    step: Option<i64>,
    limit: usize,
    kept: usize,
    trails: std::collections::BTreeMap<String, (i64, Vec<TrailPoint>)>,
}

impl TrailThinner {
    pub(crate) fn new(step: Option<i64>, limit: i64) -> Self {
        Self {
            step: step.filter(|s| *s > 0),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            kept: 0,
            trails: std::collections::BTreeMap::new(),
        }
    }

    /// Takes one point; false once the limit of kept points is reached.
    pub(crate) fn offer(&mut self, point: TrailPoint) -> bool {
        let bucket = self
            .step
            .map_or(i64::MIN, |s| point.timestamp.timestamp().div_euclid(s));
        let trail = match self.trails.get_mut(&point.character_name) {
            Some(trail) => trail,
            None => self
                .trails
                .entry(point.character_name.clone())
                .or_insert((i64::MIN, Vec::new())),
        };
        if self.step.is_some() && !trail.1.is_empty() && trail.0 == bucket {
            return true;
        }
        trail.0 = bucket;
        trail.1.push(point);
        self.kept += 1;
        self.kept < self.limit
    }

    /// The trails, by character name, each in time order.
    pub(crate) fn finish(self) -> Vec<TrailPoint> {
        self.trails.into_values().flat_map(|(_, v)| v).collect()
    }
}

/// Tables with a retention period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retained {
    Telemetry,
    Spawns,
}

impl Retained {
    pub(crate) fn table(self) -> &'static str {
        match self {
            Self::Telemetry => "telemetry_events",
            Self::Spawns => "spawn_events",
        }
    }
}

/// Most teleports read to break one trails answer; beyond it, later teleports leave trails
/// joined rather than the query growing without bound.
pub(crate) const MAX_TRAIL_BREAKS: i64 = 100_000;

/// What the TimescaleDB policies are set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimescalePolicies {
    pub telemetry_retention_days: u32,
    pub spawn_retention_days: u32,
    pub compress_after_days: u32,
    pub telemetry_chunk_hours: u32,
    pub spawn_chunk_hours: u32,
}

/// Rows deleted per statement while pruning, so no statement holds locks for long.
pub(crate) const PRUNE_BATCH: i64 = 10_000;

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Connection settings shared by both backends.
///
/// Every store has two pools: one for the writer task and maintenance (pruning, thinning) of
/// [`WRITE_CONNECTIONS`] connections, and one of `max_connections` for queries. However many
/// readers wait, the writer never waits for a connection behind them.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Connections of the read pool.
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub sqlite_busy_timeout: Duration,
    /// PostgreSQL only: `statement_timeout` of read connections, so a query whose HTTP request
    /// timed out (or that a hostile range made huge) stops using the database too.
    pub read_statement_timeout: Duration,
    /// PostgreSQL password given apart from the URL (any characters), overriding the URL's.
    pub password: Option<crate::config::Secret>,
}

/// Connections of the write pool: the writer's, one for maintenance, one for health checks.
pub const WRITE_CONNECTIONS: u32 = 3;

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            sqlite_busy_timeout: Duration::from_secs(5),
            read_statement_timeout: Duration::from_secs(30),
            password: None,
        }
    }
}

/// Errors from the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL `{0}`: use sqlite://FILE or postgres://...")]
    UnsupportedUrl(String),
    #[error(
        "DATABASE_URL `{url}` cannot be parsed ({reason}); percent-encode special characters \
         of the password (`@` as %40, `/` as %2F, `#` as %23, `?` as %3F, `%` as %25, `:` as %3A) \
         or leave the password out of the URL and set DATABASE_PASSWORD"
    )]
    BadUrl { url: String, reason: String },
}

impl StoreError {
    /// Whether waiting may help: the database did not answer (not running yet, restarting,
    /// refusing connections while it starts). Configuration mistakes are final.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut) => true,
            StoreError::Database(sqlx::Error::Database(db)) => {
                // 57P03: the database system is starting up / shutting down; 08xxx: connection.
                db.code()
                    .is_some_and(|c| c.starts_with("57P") || c.starts_with("08"))
            }
            StoreError::Migrate(sqlx::migrate::MigrateError::Execute(sqlx::Error::Io(_))) => true,
            _ => false,
        }
    }
}

impl StoreError {
    /// Whether the database cancelled a query that ran past the read statement timeout.
    pub fn is_query_timeout(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(db))
            if db.code().as_deref() == Some("57014"))
    }

    /// Whether the database rejected the data itself (a constraint or data exception), so that
    /// retrying the same statement cannot succeed. Everything else (connection refused or lost,
    /// pool exhausted, locks, a database that is starting, shutting down or refusing connections)
    /// is worth retrying, and the writer keeps its batch until it goes through.
    pub fn is_data_error(&self) -> bool {
        let StoreError::Database(sqlx::Error::Database(db)) = self else {
            return false;
        };
        let code = db.code().unwrap_or_default();
        if code.len() == 5 {
            // PostgreSQL SQLSTATE: class 22 (data exception) or 23 (integrity constraint).
            return code.starts_with("22") || code.starts_with("23");
        }
        // SQLite (extended) result codes: TOOBIG (18), CONSTRAINT (19), MISMATCH (20), RANGE (25).
        code.parse::<i64>()
            .is_ok_and(|c| matches!(c & 0xff, 18 | 19 | 20 | 25))
    }
}

/// The database behind the tracker. Cheap to clone (pools are shared handles).
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Opens the database named by `url`, applying pending migrations.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite(SqliteStore::connect(url, options).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(PgStore::connect(url, options).await?))
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(url)))
        }
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    /// Whether telemetry lives in a TimescaleDB hypertable.
    pub fn timescaledb(&self) -> bool {
        match self {
            Self::Sqlite(_) => false,
            Self::Postgres(pg) => pg.timescaledb(),
        }
    }

    /// Writes a batch of events and their counter updates in one transaction: all or nothing.
    /// `key` names this set of events: a batch whose key was already committed (its earlier
    /// attempt committed but the reply was lost) writes nothing and returns false, so retrying
    /// a batch can never store or count its events twice.
    pub async fn write_batch(&self, key: &str, events: &[Event]) -> Result<bool, StoreError> {
        if events.is_empty() {
            return Ok(true);
        }
        dispatch!(self.write_batch(key, events))
    }

    /// Forgets the keys of batches committed before `before` (a batch is retried within
    /// minutes, never days later).
    pub async fn prune_batch_keys(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        dispatch!(self.prune_batch_keys(before))
    }

    /// A trivial round trip, for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self.ping())
    }

    /// Running totals of every character ever seen.
    pub async fn character_stats(&self) -> Result<Vec<CharacterStats>, StoreError> {
        dispatch!(self.character_stats())
    }

    /// Sessions updated since `since`, with their kill baselines and rare counts.
    pub async fn recent_sessions(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<SessionStats>, StoreError> {
        dispatch!(self.recent_sessions(since, None))
    }

    /// One character's persisted totals and its sessions updated since `sessions_since`, to
    /// bring it back into memory when it returns.
    pub async fn character_state(
        &self,
        name: &str,
        sessions_since: DateTime<Utc>,
    ) -> Result<CharacterState, StoreError> {
        let (total_kills, total_rares) = dispatch!(self.character_totals(name))?;
        let sessions = dispatch!(self.recent_sessions(sessions_since, Some(name)))?;
        Ok(CharacterState {
            total_kills,
            total_rares,
            sessions,
        })
    }

    /// Row counts of the event tables.
    pub async fn row_counts(&self) -> Result<RowCounts, StoreError> {
        dispatch!(self.row_counts())
    }

    /// A character's stored telemetry, oldest first, at most `limit` rows.
    pub async fn telemetry_of(
        &self,
        character: &str,
        limit: i64,
    ) -> Result<Vec<Telemetry>, StoreError> {
        let query = HistoryQuery {
            character: Some(character.to_owned()),
            limit,
            ..HistoryQuery::default()
        };
        let rows = self.history(&query).await?;
        Ok(rows.into_iter().map(|r| r.telemetry).collect())
    }

    /// A character's stored spawns, oldest first, at most `limit` rows.
    pub async fn spawns_of(&self, character: &str, limit: i64) -> Result<Vec<Spawn>, StoreError> {
        let rows = self.events_of(EventKind::Spawns, character, limit).await?;
        Ok(rows
            .into_iter()
            .map(|r| Spawn {
                character_name: r.character_name,
                mob: r.label,
                timestamp: r.timestamp,
                ew: r.ew,
                ns: r.ns,
                z: r.z,
            })
            .collect())
    }

    /// A character's stored rare finds, oldest first, at most `limit` rows.
    pub async fn rares_of(
        &self,
        character: &str,
        limit: i64,
    ) -> Result<Vec<StoredRare>, StoreError> {
        let rows = self.events_of(EventKind::Rares, character, limit).await?;
        Ok(rows
            .into_iter()
            .map(|r| StoredRare {
                character_name: r.character_name,
                name: r.label,
                session_id: r.session_id,
                timestamp: r.timestamp,
                ew: r.ew,
                ns: r.ns,
                z: r.z,
            })
            .collect())
    }

    async fn events_of(
        &self,
        kind: EventKind,
        character: &str,
        limit: i64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let query = EventQuery {
            character: Some(character.to_owned()),
            limit,
            ..EventQuery::default()
        };
        self.events(kind, &query).await
    }

    /// A page of stored telemetry matching `query`, ordered by (timestamp, id).
    pub async fn history(&self, query: &HistoryQuery) -> Result<Vec<TelemetryRecord>, StoreError> {
        dispatch!(self.history(query))
    }

    /// Positions since `since`, per character in time order, at most `limit` points; with `step`,
    /// at most one point per character per `step` seconds.
    pub async fn trails(
        &self,
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
        character: Option<&str>,
        step: Option<i64>,
        limit: i64,
    ) -> Result<Vec<TrailPoint>, StoreError> {
        let mut points = dispatch!(self.trails(since, until, character, step, limit))?;
        let portals = dispatch!(self.portal_times(since, character))?;
        mark_trail_breaks(&mut points, &portals);
        Ok(points)
    }

    /// The latest stored character sheet of a character, attributes and skills included.
    pub async fn latest_sheet(
        &self,
        character: &str,
    ) -> Result<Option<CharacterSheet>, StoreError> {
        let Some(data) = dispatch!(self.latest_sheet_json(character))? else {
            return Ok(None);
        };
        serde_json::from_str(&data)
            .map(Some)
            .map_err(|e| StoreError::Database(sqlx::Error::Decode(Box::new(e))))
    }

    /// A character's level, experience and luminance over [from, to), oldest first.
    pub async fn progress(
        &self,
        character: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ProgressPoint>, StoreError> {
        dispatch!(self.progress(character, from, to, limit))
    }

    /// A page of spawns or rares matching `query`, ordered by (timestamp, id).
    pub async fn events(
        &self,
        kind: EventKind,
        query: &EventQuery,
    ) -> Result<Vec<EventRecord>, StoreError> {
        dispatch!(self.events(kind, query))
    }

    /// Spawn or rare counts binned on a square grid, computed in the database. Spawn maps whose
    /// bin is a multiple of [`SPAWN_CELL`] read the hourly cell counts for the whole hours of
    /// the range and raw spawns only for the partial hours at its ends.
    pub async fn heatmap(
        &self,
        kind: EventKind,
        query: &HeatmapQuery,
    ) -> Result<Vec<HeatCell>, StoreError> {
        if !self.heatmap_from_cells(kind, query) {
            return dispatch!(self.heatmap(kind, query));
        }
        let first_hour = hour_of(query.from + chrono::Duration::seconds(3599));
        let last_hour = hour_of(query.to);
        let k = (query.bin / SPAWN_CELL).round() as i64;
        let mut counts: HashMap<(i64, i64), i64> = HashMap::new();
        for (bx, by, n) in dispatch!(self.spawn_cell_counts(first_hour, last_hour, k))? {
            *counts.entry((bx, by)).or_default() += n;
        }
        for (from, to) in [(query.from, first_hour), (last_hour, query.to)] {
            if from >= to {
                continue;
            }
            let edge = HeatmapQuery {
                from,
                to,
                bin: query.bin,
                label: None,
            };
            for cell in dispatch!(self.heatmap(kind, &edge))? {
                let key = (
                    (cell.ew / query.bin).round() as i64,
                    (cell.ns / query.bin).round() as i64,
                );
                *counts.entry(key).or_default() += cell.count;
            }
        }
        let mut cells: Vec<HeatCell> = counts
            .into_iter()
            .map(|((bx, by), count)| HeatCell {
                ew: bx as f64 * query.bin,
                ns: by as f64 * query.bin,
                count,
            })
            .collect();
        cells.sort_by(|a, b| a.ew.total_cmp(&b.ew).then(a.ns.total_cmp(&b.ns)));
        Ok(cells)
    }

    /// Whether a heatmap is answered mostly from the hourly spawn cell counts (cheap) rather
    /// than from raw events: spawns, no name filter, a bin that is a multiple of
    /// [`SPAWN_CELL`], and at least one whole hour.
    pub fn heatmap_from_cells(&self, kind: EventKind, query: &HeatmapQuery) -> bool {
        let k = (query.bin / SPAWN_CELL).round();
        let whole_cells = k >= 1.0 && (k * SPAWN_CELL - query.bin).abs() < 1e-9;
        let first_hour = hour_of(query.from + chrono::Duration::seconds(3599));
        let last_hour = hour_of(query.to);
        kind == EventKind::Spawns && query.label.is_none() && whole_cells && first_hour < last_hour
    }

    /// Every character ever seen, by name, at most `limit`.
    pub async fn characters(&self, limit: i64) -> Result<Vec<CharacterSummary>, StoreError> {
        dispatch!(self.characters(limit))
    }

    /// One character, if it was ever seen.
    pub async fn character(&self, name: &str) -> Result<Option<CharacterSummary>, StoreError> {
        dispatch!(self.character(name))
    }

    /// Every character's latest telemetry at or before `at` and after `since` (characters
    /// silent over that whole span are absent), by name, at most `limit`.
    pub async fn world_at(
        &self,
        at: DateTime<Utc>,
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<TelemetryRecord>, StoreError> {
        dispatch!(self.world_at(at, since, limit))
    }

    /// How many characters were seen at or after `since`.
    pub async fn characters_seen_since(&self, since: DateTime<Utc>) -> Result<i64, StoreError> {
        dispatch!(self.characters_seen_since(since))
    }

    /// Characters ranked by `metric` over [from, to).
    pub async fn leaderboard(
        &self,
        metric: LeaderMetric,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<LeaderRow>, StoreError> {
        dispatch!(self.leaderboard(metric, from, to, limit))
    }

    /// A character's kills and kills per hour in time buckets of `bucket_secs` over [from, to).
    pub async fn activity(
        &self,
        character: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        bucket_secs: i64,
    ) -> Result<Vec<SeriesPoint>, StoreError> {
        dispatch!(self.activity(character, from, to, bucket_secs))
    }

    /// Rares per session of a character, most recent first.
    pub async fn session_rares(
        &self,
        character: &str,
        limit: i64,
    ) -> Result<Vec<SessionRares>, StoreError> {
        dispatch!(self.session_rares(character, limit))
    }

    /// Deletes the rows of `table` older than `before`, in batches; returns how many.
    pub async fn prune(&self, table: Retained, before: DateTime<Utc>) -> Result<u64, StoreError> {
        dispatch!(self.prune(table, before))
    }

    /// Thins raw telemetry in [from, to) to one row per character per `step_secs` (bounds are
    /// aligned down to whole steps, so no step is split); kill sums are kept exact. Returns the
    /// rows removed.
    pub async fn thin_telemetry(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_secs: i64,
    ) -> Result<u64, StoreError> {
        let step = step_secs.max(1);
        let align = |t: DateTime<Utc>| {
            DateTime::from_timestamp(t.timestamp().div_euclid(step) * step, 0).unwrap_or(t)
        };
        let (from, to) = (align(from), align(to));
        if from >= to {
            return Ok(0);
        }
        dispatch!(self.thin_telemetry(from, to, step))
    }

    /// The oldest stored telemetry time, if any.
    pub async fn oldest_telemetry(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let query = HistoryQuery {
            limit: 1,
            ..HistoryQuery::default()
        };
        Ok(self
            .history(&query)
            .await?
            .first()
            .map(|r| r.telemetry.timestamp))
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        dispatch!(self.close())
    }
}

/// Counter updates a batch implies, aggregated so each key is written once per transaction.
#[derive(Debug, Default)]
pub(crate) struct CounterUpdates {
    /// Kills to add per character.
    pub kills: HashMap<String, i64>,
    /// Latest `kills` per (character, session).
    pub baselines: HashMap<(String, String), i64>,
    /// Rares to add per character.
    pub rares: HashMap<String, i64>,
    /// Rares to add per (character, session).
    pub session_rares: HashMap<(String, String), i64>,
    /// When each character was seen in this batch, and its latest tag and deaths.
    pub seen: HashMap<String, Seen>,
    /// Spawns to add per (hour, cell) of [`SPAWN_CELL`] map units.
    pub spawn_cells: HashMap<(DateTime<Utc>, i64, i64), i64>,
}

/// Side of the cells spawn counts are kept in per hour; heatmap bins that are multiples of it
/// are answered from those counts for the whole hours of their range.
pub const SPAWN_CELL: f64 = 2.0;

/// The start of the hour `t` falls in.
pub(crate) fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    let secs = t.timestamp().div_euclid(3600) * 3600;
    DateTime::from_timestamp(secs, 0).unwrap_or(t)
}

/// The cell of [`SPAWN_CELL`] units a map coordinate falls in.
pub(crate) fn cell_of(v: f64) -> i64 {
    (v / SPAWN_CELL).floor() as i64
}

/// What a batch says about when a character was seen.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub char_tag: Option<String>,
    pub deaths: Option<i64>,
    pub total_deaths: Option<i64>,
}

impl CounterUpdates {
    fn saw(&mut self, name: &str, at: DateTime<Utc>, telemetry: Option<&Telemetry>) {
        let seen = self.seen.entry(name.to_owned()).or_insert_with(|| Seen {
            first: at,
            last: at,
            char_tag: None,
            deaths: None,
            total_deaths: None,
        });
        seen.first = seen.first.min(at);
        if let Some(t) = telemetry
            && at >= seen.last
        {
            seen.char_tag = t.char_tag.clone();
            seen.deaths = Some(t.deaths);
            seen.total_deaths = t.total_deaths;
        }
        seen.last = seen.last.max(at);
    }
}

impl CounterUpdates {
    pub(crate) fn from_events(events: &[Event]) -> Self {
        let mut out = Self::default();
        for event in events {
            match event {
                Event::Telemetry {
                    row,
                    kills_delta,
                    kills_baseline,
                } => {
                    out.saw(&row.character_name, row.timestamp, Some(row));
                    if *kills_delta > 0 {
                        let total = out.kills.entry(row.character_name.clone()).or_default();
                        *total = total.saturating_add(*kills_delta);
                    }
                    out.baselines.insert(
                        (row.character_name.clone(), row.session_id.clone()),
                        *kills_baseline,
                    );
                }
                Event::Rare { rare, session_id } => {
                    out.saw(&rare.character_name, rare.timestamp, None);
                    *out.rares.entry(rare.character_name.clone()).or_default() += 1;
                    if let Some(sid) = session_id {
                        *out.session_rares
                            .entry((rare.character_name.clone(), sid.clone()))
                            .or_default() += 1;
                    }
                }
                Event::Sheet(sheet) => out.saw(&sheet.character_name, sheet.timestamp, None),
                Event::Portal { portal, .. } => {
                    out.saw(&portal.character_name, portal.timestamp, None);
                }
                Event::Spawn(spawn) => {
                    out.saw(&spawn.character_name, spawn.timestamp, None);
                    *out.spawn_cells
                        .entry((
                            hour_of(spawn.timestamp),
                            cell_of(spawn.ew),
                            cell_of(spawn.ns),
                        ))
                        .or_default() += 1;
                }
            }
        }
        out
    }
}

/// The URL with any password replaced, for log lines and error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(name: &str, secs: i64) -> TrailPoint {
        TrailPoint {
            character_name: name.to_owned(),
            timestamp: DateTime::from_timestamp(secs, 0).unwrap_or_default(),
            ew: secs as f64,
            ns: 0.0,
            z: 0.0,
            segment_start: false,
        }
    }

    #[test]
    fn a_teleport_breaks_the_trail_at_the_next_point_of_that_character_only() {
        let mut points: Vec<TrailPoint> = [("a", 10), ("a", 20), ("a", 30), ("b", 10), ("b", 30)]
            .into_iter()
            .map(|(n, s)| point(n, s))
            .collect();
        let at = |s| DateTime::from_timestamp(s, 0).unwrap_or_default();
        mark_trail_breaks(&mut points, &[("a".into(), at(25)), ("c".into(), at(15))]);
        let breaks: Vec<bool> = points.iter().map(|p| p.segment_start).collect();
        assert_eq!(breaks, [false, false, true, false, false]);
        // A teleport exactly at a point's time breaks before that point.
        mark_trail_breaks(&mut points, &[("b".into(), at(30))]);
        assert!(points[4].segment_start);
    }

    #[test]
    fn trails_keep_the_first_point_per_step_and_group_by_character() {
        let mut t = TrailThinner::new(Some(5), 100);
        for (name, secs) in [
            ("b", 100),
            ("a", 101),
            ("b", 102),
            ("a", 104),
            ("a", 105),
            ("b", 110),
        ] {
            assert!(t.offer(point(name, secs)));
        }
        let got: Vec<(String, f64)> = t
            .finish()
            .into_iter()
            .map(|p| (p.character_name, p.ew))
            .collect();
        let want = [("a", 101.0), ("a", 105.0), ("b", 100.0), ("b", 110.0)];
        assert_eq!(
            got,
            want.iter()
                .map(|(n, e)| (n.to_string(), *e))
                .collect::<Vec<_>>()
        );
        let mut capped = TrailThinner::new(None, 2);
        assert!(capped.offer(point("a", 1)));
        assert!(!capped.offer(point("a", 2)));
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://tracker:s3cret@127.0.0.1/db"),
            "postgres://tracker:***@127.0.0.1/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
