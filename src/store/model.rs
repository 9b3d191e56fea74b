//! The domain rows of storage: events on their way to the database, and what reads return.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::StoreError;
use super::happenings::Happening;
use super::sql::Arg;
use crate::protocol::{CharacterSheet, Portal, Rare, Spawn, Telemetry};

/// One accepted event on its way to the database.
// Telemetry dominates the queue, so boxing it would add an allocation to nearly every event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Something the tracker saw happen to a character (for the event log).
    Happened(Happening),
}

/// A span of time, start included, end excluded.
pub type Span = std::ops::Range<DateTime<Utc>>;

/// A table events are stored in, and the columns an event fills.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) name: &'static str,
    pub(crate) columns: &'static [&'static str],
}

/// An event as it is stored: its table, and its values in the order of the table's columns.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) table: &'static Table,
    pub(crate) values: Vec<Arg>,
}

pub(crate) const TELEMETRY_TABLE: Table = Table {
    name: "telemetry_events",
    columns: &[
        "character_name",
        "char_tag",
        "session_id",
        "timestamp",
        "ew",
        "ns",
        "z",
        "kills",
        "kills_per_hour",
        "onlinetime",
        "deaths",
        "total_deaths",
        "rares_found",
        "prismatic_taper_count",
        "vt_state",
        "mem_mb",
        "cpu_pct",
        "mem_handles",
        "latency_ms",
        "kills_delta",
        "received_at",
        "clock_offset_ms",
    ],
};

const SPAWN_TABLE: Table = Table {
    name: "spawn_events",
    columns: &[
        "character_name",
        "mob",
        "timestamp",
        "ew",
        "ns",
        "z",
        "received_at",
        "clock_offset_ms",
    ],
};

/// Rares and teleports: something named, found or taken somewhere during a session.
const NAMED_EVENT_COLUMNS: &[&str] = &[
    "character_name",
    "name",
    "session_id",
    "timestamp",
    "ew",
    "ns",
    "z",
    "received_at",
    "clock_offset_ms",
];

const RARE_TABLE: Table = Table {
    name: "rare_events",
    columns: NAMED_EVENT_COLUMNS,
};

const PORTAL_TABLE: Table = Table {
    name: "portal_events",
    columns: NAMED_EVENT_COLUMNS,
};

const HAPPENING_TABLE: Table = Table {
    name: "character_events",
    columns: &["character_name", "kind", "timestamp", "detail"],
};

const SHEET_TABLE: Table = Table {
    name: "character_sheets",
    columns: &[
        "character_name",
        "timestamp",
        "level",
        "total_xp",
        "unassigned_xp",
        "luminance_earned",
        "luminance_total",
        "title",
        "allegiance_name",
        "data",
    ],
};

impl Event {
    /// The character it is about and when it happened.
    pub(crate) fn who_and_when(&self) -> (&str, DateTime<Utc>) {
        match self {
            Self::Telemetry { row, .. } => (&row.character_name, row.timestamp),
            Self::Spawn(s) => (&s.character_name, s.timestamp),
            Self::Rare { rare, .. } => (&rare.character_name, rare.timestamp),
            Self::Sheet(s) => (&s.character_name, s.timestamp),
            Self::Portal { portal, .. } => (&portal.character_name, portal.timestamp),
            Self::Happened(h) => (&h.character_name, h.timestamp),
        }
    }

    /// How this event is stored: the one place an event kind meets its table (both backends
    /// write what this says; PostgreSQL copies telemetry in bulk in the same column order).
    pub(crate) fn row(&self) -> Result<Row, StoreError> {
        let (table, values): (&'static Table, Vec<Arg>) = match self {
            Self::Telemetry {
                row: t,
                kills_delta,
                ..
            } => (
                &TELEMETRY_TABLE,
                vec![
                    t.character_name.clone().into(),
                    t.char_tag.clone().into(),
                    t.session_id.clone().into(),
                    t.timestamp.into(),
                    t.ew.into(),
                    t.ns.into(),
                    t.z.into(),
                    t.kills.into(),
                    t.kills_per_hour.into(),
                    t.onlinetime.clone().into(),
                    t.deaths.into(),
                    t.total_deaths.into(),
                    t.rares_found.into(),
                    t.prismatic_taper_count.into(),
                    t.vt_state.clone().into(),
                    t.mem_mb.into(),
                    t.cpu_pct.into(),
                    t.mem_handles.into(),
                    t.latency_ms.into(),
                    (*kills_delta).into(),
                    t.received_at.unwrap_or(t.timestamp).into(),
                    t.clock_offset_ms.into(),
                ],
            ),
            Self::Spawn(s) => (
                &SPAWN_TABLE,
                vec![
                    s.character_name.clone().into(),
                    s.mob.clone().into(),
                    s.timestamp.into(),
                    s.ew.into(),
                    s.ns.into(),
                    s.z.into(),
                    s.received_at.unwrap_or(s.timestamp).into(),
                    s.clock_offset_ms.into(),
                ],
            ),
            Self::Rare {
                rare: r,
                session_id,
            } => (
                &RARE_TABLE,
                vec![
                    r.character_name.clone().into(),
                    r.name.clone().into(),
                    session_id.clone().into(),
                    r.timestamp.into(),
                    r.ew.into(),
                    r.ns.into(),
                    r.z.into(),
                    r.received_at.unwrap_or(r.timestamp).into(),
                    r.clock_offset_ms.into(),
                ],
            ),
            Self::Portal {
                portal: p,
                session_id,
            } => (
                &PORTAL_TABLE,
                vec![
                    p.character_name.clone().into(),
                    p.portal_name.clone().unwrap_or_default().into(),
                    session_id.clone().into(),
                    p.timestamp.into(),
                    p.ew.unwrap_or_default().into(),
                    p.ns.unwrap_or_default().into(),
                    p.z.unwrap_or_default().into(),
                    p.received_at.unwrap_or(p.timestamp).into(),
                    p.clock_offset_ms.into(),
                ],
            ),
            Self::Happened(h) => (
                &HAPPENING_TABLE,
                vec![
                    h.character_name.clone().into(),
                    h.kind.name().into(),
                    h.timestamp.into(),
                    h.detail.clone().into(),
                ],
            ),
            Self::Sheet(sheet) => {
                let data = serde_json::to_string(sheet)
                    .map_err(|e| StoreError::Database(sqlx::Error::Encode(Box::new(e))))?;
                let allegiance = sheet.allegiance.as_ref().and_then(|a| a.name.clone());
                (
                    &SHEET_TABLE,
                    vec![
                        sheet.character_name.clone().into(),
                        sheet.timestamp.into(),
                        sheet.level.into(),
                        sheet.total_xp.into(),
                        sheet.unassigned_xp.into(),
                        sheet.luminance_earned.into(),
                        sheet.luminance_total.into(),
                        sheet.title.clone().into(),
                        allegiance.into(),
                        Arg::Json(data),
                    ],
                )
            }
        };
        Ok(Row { table, values })
    }
}

/// A character's persisted running totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CharacterStats {
    pub character_name: String,
    pub total_kills: i64,
    pub total_rares: i64,
}

/// A session's persisted kill baseline and rare count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
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

impl From<EventRecord> for StoredRare {
    fn from(r: EventRecord) -> Self {
        Self {
            character_name: r.character_name,
            name: r.label,
            session_id: r.session_id,
            timestamp: r.timestamp,
            ew: r.ew,
            ns: r.ns,
            z: r.z,
        }
    }
}

impl From<EventRecord> for Spawn {
    fn from(r: EventRecord) -> Self {
        Self {
            character_name: r.character_name,
            mob: r.label,
            timestamp: r.timestamp,
            received_at: None,
            clock_offset_ms: None,
            ew: r.ew,
            ns: r.ns,
            z: r.z,
        }
    }
}

/// A stored telemetry row with its id.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct TelemetryRecord {
    pub id: i64,
    #[serde(flatten)]
    #[sqlx(flatten)]
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

impl HistoryQuery {
    /// The first `limit` rows of one character.
    pub fn of(character: &str, limit: i64) -> Self {
        Self {
            character: Some(character.to_owned()),
            limit,
            ..Self::default()
        }
    }
}

/// A trails request: positions since `since` (to `until`, else to now), of one character or
/// all, at most `limit` points; with `step`, at most one point per character per `step` seconds.
#[derive(Debug, Clone)]
pub struct TrailQuery {
    pub since: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    pub character: Option<String>,
    pub step: Option<i64>,
    pub limit: i64,
}

/// The world at an instant: every character's latest telemetry at or before `at` and after
/// `since` (characters silent over that whole span are absent), by name, at most `limit`.
#[derive(Debug, Clone, Copy)]
pub struct WorldQuery {
    pub at: DateTime<Utc>,
    pub since: DateTime<Utc>,
    pub limit: i64,
}

/// One point of a character's trail.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct TrailPoint {
    /// Shared, not copied, by the many points of one trail.
    #[schema(value_type = String)]
    #[sqlx(try_from = "String")]
    pub character_name: std::sync::Arc<str>,
    #[serde(serialize_with = "crate::protocol::timestamp::serialize_rfc3339")]
    pub timestamp: DateTime<Utc>,
    pub ew: f64,
    pub ns: f64,
    pub z: f64,
    /// The character teleported (a `portal` frame) since the previous point: do not join the
    /// two. Only present when true.
    #[serde(rename = "break", skip_serializing_if = "std::ops::Not::not")]
    #[sqlx(default)]
    pub segment_start: bool,
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

/// What the TimescaleDB policies are set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimescalePolicies {
    pub telemetry_retention_days: u32,
    pub spawn_retention_days: u32,
    pub compress_after_days: u32,
    pub telemetry_chunk_hours: u32,
    pub spawn_chunk_hours: u32,
}

/// Which event table a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Spawns,
    Rares,
    /// Teleports (`portal` frames); `label` is the portal's name ("" when unknown).
    Portals,
}

/// A page request over spawns or rares, oldest first.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub character: Option<String>,
    /// Mob name (spawns) or item name (rares).
    pub label: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub after: Option<(DateTime<Utc>, i64)>,
    pub limit: i64,
}

impl EventQuery {
    /// The first `limit` events of one character.
    pub fn of(character: &str, limit: i64) -> Self {
        Self {
            character: Some(character.to_owned()),
            limit,
            ..Self::default()
        }
    }
}

/// A stored spawn or rare. `label` is the mob (spawns) or the item name (rares).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct EventRecord {
    pub id: i64,
    pub character_name: String,
    pub label: String,
    pub session_id: Option<String>,
    pub timestamp: DateTime<Utc>,
    pub ew: f64,
    pub ns: f64,
    pub z: f64,
}

/// A heatmap request: counts on a square grid of `bin` map units.
#[derive(Debug, Clone)]
pub struct HeatmapQuery {
    pub kind: EventKind,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub bin: f64,
    pub label: Option<String>,
}

/// One non-empty heatmap cell; `ew`/`ns` are its south-west corner.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HeatCell {
    pub ew: f64,
    pub ns: f64,
    pub count: i64,
}

impl HeatCell {
    /// Cells of side `bin` from counts per (column, row) of the grid, west to east then south
    /// to north.
    pub(crate) fn grid(counts: impl IntoIterator<Item = (i64, i64, i64)>, bin: f64) -> Vec<Self> {
        let mut cells: Vec<Self> = counts
            .into_iter()
            .map(|(bx, by, count)| Self {
                ew: bx as f64 * bin,
                ns: by as f64 * bin,
                count,
            })
            .collect();
        cells.sort_by(|a, b| a.ew.total_cmp(&b.ew).then(a.ns.total_cmp(&b.ns)));
        cells
    }
}

/// Everything known about a character.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct CharacterSummary {
    pub character_name: String,
    pub char_tag: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub total_kills: i64,
    pub total_rares: i64,
    /// Deaths in the latest session, as the plugin last reported.
    pub deaths: Option<i64>,
    /// Deaths over the character's life, as the plugin last reported.
    pub total_deaths: Option<i64>,
}

/// What a leaderboard ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeaderMetric {
    /// Kills gained within the range.
    Kills,
    /// Average reported kills per hour within the range.
    KillsPerHour,
    /// Rares found within the range.
    Rares,
}

/// A leaderboard request: the `limit` characters ranking highest by `metric` over [from, to).
#[derive(Debug, Clone, Copy)]
pub struct LeaderQuery {
    pub metric: LeaderMetric,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub limit: i64,
}

/// One leaderboard entry.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LeaderRow {
    pub rank: i64,
    pub character_name: String,
    pub value: f64,
}

/// An activity request: one character's kills and kills per hour in buckets of `bucket_secs`
/// over [from, to).
#[derive(Debug, Clone)]
pub struct ActivityQuery {
    pub character: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub bucket_secs: i64,
}

impl ActivityQuery {
    /// The arguments of an activity statement: `$1` the character, [`$2`, `$3`) the range,
    /// `$4` the bucket in seconds (as `bucket`).
    pub(crate) fn args(&self, bucket: Arg) -> Vec<Arg> {
        vec![
            self.character.as_str().into(),
            self.from.into(),
            self.to.into(),
            bucket,
        ]
    }
}

/// One bucket of a character's activity series.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct SeriesPoint {
    /// Start of the bucket.
    pub bucket: DateTime<Utc>,
    /// Average reported kills per hour in the bucket.
    pub kills_per_hour: Option<f64>,
    /// Kills gained in the bucket.
    pub kills: i64,
    /// Telemetry frames in the bucket.
    pub samples: i64,
}

/// A progress request: one character's stored sheets over [from, to), oldest first, at most
/// `limit`.
#[derive(Debug, Clone)]
pub struct ProgressQuery {
    pub character: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub limit: i64,
}

/// A character's level, experience and luminance at one moment (from a `character_stats` frame).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct ProgressPoint {
    pub timestamp: DateTime<Utc>,
    pub level: Option<i64>,
    pub total_xp: Option<i64>,
    pub luminance_earned: Option<i64>,
}

/// Rares found in one session.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct SessionRares {
    pub session_id: String,
    pub rares: i64,
    pub last_update: DateTime<Utc>,
}
