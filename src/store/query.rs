//! Read-side types of the query API: what analysts ask for and the rows they get back.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

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

/// A stored spawn or rare. `label` is the mob (spawns) or the item name (rares).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
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

/// Everything known about a character.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
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

/// One leaderboard entry.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LeaderRow {
    pub rank: i64,
    pub character_name: String,
    pub value: f64,
}

/// One bucket of a character's activity series.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
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

/// A character's level, experience and luminance at one moment (from a `character_stats` frame).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProgressPoint {
    pub timestamp: DateTime<Utc>,
    pub level: Option<i64>,
    pub total_xp: Option<i64>,
    pub luminance_earned: Option<i64>,
}

/// Rares found in one session.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SessionRares {
    pub session_id: String,
    pub rares: i64,
    pub last_update: DateTime<Utc>,
}
