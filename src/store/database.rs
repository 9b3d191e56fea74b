//! The storage contract: what every backend (PostgreSQL/TimescaleDB in `postgres/`, SQLite in
//! `sqlite/`) provides. Methods are coarse and domain-shaped, so each backend answers with its
//! own best SQL; [`super::Store`] composes them into what the rest of the tracker asks for.
//!
//! The contract has two halves, as each backend has two pools: [`StoreWrite`] (the writer's
//! batches and maintenance) and [`StoreRead`] (every read, with a statement timeout). A backend
//! implements both; [`Database`] is the pair. The reads are written once for both backends
//! (`super::reads`); each backend writes its own way (COPY and UNNEST arrays on PostgreSQL, one
//! transaction of single-row inserts on SQLite).

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::happenings::{LogEntry, LogQuery};
use super::model::{
    ActivityQuery, CharacterStats, CharacterSummary, Event, EventKind, EventQuery, EventRecord,
    HeatCell, HeatmapQuery, HistoryQuery, LeaderQuery, LeaderRow, ProgressPoint, ProgressQuery,
    Retained, RowCounts, SeriesPoint, SessionRares, SessionStats, Span, TelemetryRecord,
    TimescalePolicies, TrailPoint, TrailQuery, WorldQuery,
};
use super::{Backend, StoreError};

/// Writes, counters and maintenance: the writer task's and the lifecycle task's side.
#[async_trait]
pub trait StoreWrite: Send + Sync + Debug {
    /// Which backend this is.
    fn backend(&self) -> Backend;

    /// Whether telemetry lives in a TimescaleDB hypertable.
    fn timescaledb(&self) -> bool {
        false
    }

    /// Writes a non-empty batch of events and their counter updates in one transaction, unless
    /// a batch with `key` was already committed (then nothing, and `false`). With `mark`, the
    /// same transaction records how far that spool's events are stored.
    async fn write_batch(
        &self,
        key: &str,
        events: &[Event],
        mark: Option<&SpoolMark>,
    ) -> Result<bool, StoreError>;

    /// Keeps one telemetry row per character per `step_secs` in [from, to) (bounds already
    /// aligned to whole steps): the first of each step, which takes over the kills of the rows
    /// removed. Returns the rows removed.
    async fn thin_aligned(&self, span: Span, step_secs: i64) -> Result<u64, StoreError>;

    /// Hands retention (and compression) to the database itself where it can do it
    /// (TimescaleDB policies). `Ok(false)`: it cannot, and the tracker prunes expired rows.
    async fn apply_policies(&self, _policies: &TimescalePolicies) -> Result<bool, StoreError> {
        Ok(false)
    }
}

/// The query API's reads.
#[async_trait]
pub trait StoreRead: Send + Sync + Debug {
    /// A page of stored telemetry matching `query`, ordered by (timestamp, id).
    async fn history(&self, query: &HistoryQuery) -> Result<Vec<TelemetryRecord>, StoreError>;

    /// The points `query` asks for, per character in time order. Teleports are not marked yet
    /// (see [`StoreRead::trail_breaks`]).
    async fn trail_points(&self, query: &TrailQuery) -> Result<Vec<TrailPoint>, StoreError>;

    /// (character, time) of the teleports that break the trails of `query` (at most
    /// [`super::MAX_TRAIL_BREAKS`]).
    async fn trail_breaks(
        &self,
        query: &TrailQuery,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError>;

    /// A page of spawns, rares or teleports matching `query`, ordered by (timestamp, id).
    async fn events(
        &self,
        kind: EventKind,
        query: &EventQuery,
    ) -> Result<Vec<EventRecord>, StoreError>;

    /// Event counts binned on a square grid, computed from the raw events.
    async fn binned_events(&self, query: &HeatmapQuery) -> Result<Vec<HeatCell>, StoreError>;

    /// Hourly spawn counts in [first_hour, last_hour), merged into cells of `k` x `k` stored
    /// cells: (cell x, cell y, count).
    async fn spawn_cell_counts(
        &self,
        first_hour: DateTime<Utc>,
        last_hour: DateTime<Utc>,
        k: i64,
    ) -> Result<Vec<(i64, i64, i64)>, StoreError>;

    /// Every character ever seen (or only `name`), by name, at most `limit`.
    async fn characters(
        &self,
        name: Option<&str>,
        limit: i64,
    ) -> Result<Vec<CharacterSummary>, StoreError>;

    /// Every character's latest telemetry at or before `at` and after `since`, by name.
    async fn world_at(&self, query: &WorldQuery) -> Result<Vec<TelemetryRecord>, StoreError>;

    /// The event log: what happened to characters, newest first.
    async fn event_log(&self, query: &LogQuery) -> Result<Vec<LogEntry>, StoreError>;

    /// How many characters were seen at or after `since`.
    async fn characters_seen_since(&self, since: DateTime<Utc>) -> Result<i64, StoreError>;

    /// Characters ranked by a metric over a range.
    async fn leaderboard(&self, query: &LeaderQuery) -> Result<Vec<LeaderRow>, StoreError>;

    /// A character's kills and kills per hour per time bucket over a range.
    async fn activity(&self, query: &ActivityQuery) -> Result<Vec<SeriesPoint>, StoreError>;

    /// Rares per session of a character, most recent first.
    async fn session_rares(
        &self,
        character: &str,
        limit: i64,
    ) -> Result<Vec<SessionRares>, StoreError>;

    /// The latest stored character sheet of a character, as JSON text.
    async fn latest_sheet_json(&self, character: &str) -> Result<Option<String>, StoreError>;

    /// A character's level, experience and luminance over a range, oldest first.
    async fn progress(&self, query: &ProgressQuery) -> Result<Vec<ProgressPoint>, StoreError>;

    /// Running totals of every character ever seen.
    async fn character_stats(&self) -> Result<Vec<CharacterStats>, StoreError>;

    /// Sessions updated since `since`, of one character or of all.
    async fn recent_sessions(
        &self,
        since: DateTime<Utc>,
        character: Option<&str>,
    ) -> Result<Vec<SessionStats>, StoreError>;

    /// One character's total kills and rares (0 when never counted).
    async fn character_totals(&self, name: &str) -> Result<(i64, i64), StoreError>;

    /// Row counts of the event tables.
    async fn row_counts(&self) -> Result<RowCounts, StoreError>;
}

/// Health checks, closing and pruning: the same on every backend (`super::upkeep`).
#[async_trait]
pub trait StoreUpkeep: Send + Sync + Debug {
    /// A trivial round trip, for health checks.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Closes the pools, waiting for connections in use to be returned.
    async fn close(&self);

    /// Deletes the rows of `table` older than `before`, in batches; returns how many.
    async fn prune(&self, table: Retained, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Deletes the hourly kill counts of hours before the one `before` falls in, and the event
    /// log's entries before `before` (kept as long as raw telemetry, whichever way that is
    /// dropped).
    async fn prune_kill_hours(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Forgets the keys of batches committed before `before`.
    async fn prune_batch_keys(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// The last sequence number of spool `spool_id` whose event is stored, if any.
    async fn spool_mark(&self, spool_id: &str) -> Result<Option<u64>, StoreError>;

    /// Writes one row and reads it back: fails when the database cannot be written (read-only,
    /// full disk, I/O errors).
    async fn probe_write(&self) -> Result<(), StoreError>;
}

/// How far one spool's events are stored: every event up to and including `upto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolMark {
    pub spool_id: String,
    pub upto: u64,
}

/// A complete backend: every part of the contract.
pub trait Database:
    StoreWrite + StoreRead + StoreUpkeep + super::StoreAccess + super::StoreGroups
{
}

impl<T: StoreWrite + StoreRead + StoreUpkeep + super::StoreAccess + super::StoreGroups> Database
    for T
{
}
