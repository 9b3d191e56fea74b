//! Persistence: [`Store`], the handle the rest of the tracker holds, over one backend that
//! implements the storage contract ([`Database`]: PostgreSQL/TimescaleDB in `postgres/`, SQLite in
//! `sqlite/`), and the domain rows that travel through it ([`model`]).
//!
//! The contract is coarse and domain-shaped (`write_batch`, `character_stats`, ...). Reads are
//! one SQL text for both backends (`reads`, with the few dialect differences in `sql`); writes
//! and maintenance are each backend's own (COPY and TimescaleDB policies on PostgreSQL, pragmas
//! and single-writer transactions on SQLite). What can be composed from the contract (a
//! character's state on return, heatmaps from hourly cells, trails broken at teleports,
//! step-aligned thinning) is written once here.

mod access;
mod counters;
mod database;
mod error;
mod groups;
mod happenings;
mod migrations;
pub mod model;
mod postgres;
mod reads;
mod sql;
mod sqlite;
mod trails;
mod upkeep;
mod writes;

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::protocol::{CharacterSheet, Spawn, Telemetry};

pub use access::{
    AccessChange, AccountRow, AuditQuery, AuditRow, BindingRow, KeyRow, StoreAccess, TokenRow,
};
pub use counters::SPAWN_CELL;
pub(crate) use counters::{CounterUpdates, hour_of};
pub use database::{Database, SpoolMark, StoreRead, StoreUpkeep, StoreWrite};
pub use error::StoreError;
pub use groups::{SavedGroup, StoreGroups, owner_of_account, owner_of_token};
pub use happenings::{Happening, HappeningKind, LOG_KINDS, LogEntry, LogQuery};
pub use model::*;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub(crate) use trails::{MAX_TRAIL_BREAKS, TrailThinner, mark_trail_breaks};

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
    pub password: Option<crate::secret::Secret>,
}

/// Connections of the write pool: the writer's, one for maintenance, one for health checks.
pub const WRITE_CONNECTIONS: u32 = 3;

impl StoreOptions {
    /// The defaults, which the matching settings (`DB_MAX_CONNECTIONS`, ...) default to as well.
    pub const DEFAULT: Self = Self {
        max_connections: 8,
        acquire_timeout: Duration::from_secs(5),
        sqlite_busy_timeout: Duration::from_secs(5),
        read_statement_timeout: Duration::from_secs(30),
        password: None,
    };
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The database behind the tracker: a cheap-to-clone handle (pools are shared) to one backend.
/// The contract's methods are called through it directly (it dereferences to [`Database`]);
/// the methods below compose them.
#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<dyn Database>,
}

impl Deref for Store {
    type Target = dyn Database;

    fn deref(&self) -> &Self::Target {
        self.db.as_ref()
    }
}

impl Store {
    /// Opens the database named by `url`, applying pending migrations.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let db: Arc<dyn Database> = if url.starts_with("sqlite:") {
            Arc::new(SqliteStore::connect(url, options).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Arc::new(PgStore::connect(url, options).await?)
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        Ok(Self { db })
    }

    /// Writes a batch of events and their counter updates in one transaction: all or nothing.
    /// `key` names this set of events: a batch whose key was already committed (its earlier
    /// attempt committed but the reply was lost) writes nothing and returns false, so retrying
    /// a batch can never store or count its events twice.
    pub async fn write_batch(&self, key: &str, events: &[Event]) -> Result<bool, StoreError> {
        if events.is_empty() {
            return Ok(true);
        }
        self.db.write_batch(key, events, None).await
    }

    /// [`Store::write_batch`] of spooled events: the same transaction records that `mark`'s
    /// spool is stored up to `mark.upto`.
    pub async fn write_spooled(
        &self,
        key: &str,
        events: &[Event],
        mark: &SpoolMark,
    ) -> Result<bool, StoreError> {
        self.db.write_batch(key, events, Some(mark)).await
    }

    /// One character's persisted totals and its sessions updated since `sessions_since`, to
    /// bring it back into memory when it returns.
    pub async fn character_state(
        &self,
        name: &str,
        sessions_since: DateTime<Utc>,
    ) -> Result<CharacterState, StoreError> {
        let (total_kills, total_rares) = self.db.character_totals(name).await?;
        let sessions = self.db.recent_sessions(sessions_since, Some(name)).await?;
        Ok(CharacterState {
            total_kills,
            total_rares,
            sessions,
        })
    }

    /// A character's stored telemetry, oldest first, at most `limit` rows.
    pub async fn telemetry_of(
        &self,
        character: &str,
        limit: i64,
    ) -> Result<Vec<Telemetry>, StoreError> {
        let rows = self.history(&HistoryQuery::of(character, limit)).await?;
        Ok(rows.into_iter().map(|r| r.telemetry).collect())
    }

    /// A character's stored spawns, oldest first, at most `limit` rows.
    pub async fn spawns_of(&self, character: &str, limit: i64) -> Result<Vec<Spawn>, StoreError> {
        let query = EventQuery::of(character, limit);
        let rows = self.events(EventKind::Spawns, &query).await?;
        Ok(rows.into_iter().map(Spawn::from).collect())
    }

    /// A character's stored rare finds, oldest first, at most `limit` rows.
    pub async fn rares_of(
        &self,
        character: &str,
        limit: i64,
    ) -> Result<Vec<StoredRare>, StoreError> {
        let query = EventQuery::of(character, limit);
        let rows = self.events(EventKind::Rares, &query).await?;
        Ok(rows.into_iter().map(StoredRare::from).collect())
    }

    /// The trails `query` asks for, per character in time order; the first point after a
    /// teleport starts a new segment.
    pub async fn trails(&self, query: &TrailQuery) -> Result<Vec<TrailPoint>, StoreError> {
        let mut points = self.db.trail_points(query).await?;
        let portals = self.db.trail_breaks(query).await?;
        mark_trail_breaks(&mut points, &portals);
        Ok(points)
    }

    /// One character, if it was ever seen.
    pub async fn character(&self, name: &str) -> Result<Option<CharacterSummary>, StoreError> {
        Ok(self.db.characters(Some(name), 1).await?.pop())
    }

    /// The latest stored character sheet of a character, attributes and skills included.
    pub async fn latest_sheet(
        &self,
        character: &str,
    ) -> Result<Option<CharacterSheet>, StoreError> {
        let Some(data) = self.db.latest_sheet_json(character).await? else {
            return Ok(None);
        };
        serde_json::from_str(&data)
            .map(Some)
            .map_err(|e| StoreError::Database(sqlx::Error::Decode(Box::new(e))))
    }

    /// Spawn or rare counts binned on a square grid, computed in the database. Spawn maps whose
    /// bin is a multiple of [`SPAWN_CELL`] read the hourly cell counts for the whole hours of
    /// the range and raw spawns only for the partial hours at its ends.
    pub async fn heatmap(&self, query: &HeatmapQuery) -> Result<Vec<HeatCell>, StoreError> {
        if !self.heatmap_from_cells(query) {
            return self.db.binned_events(query).await;
        }
        let first_hour = hour_of(query.from + chrono::Duration::seconds(3599));
        let last_hour = hour_of(query.to);
        let k = (query.bin / SPAWN_CELL).round() as i64;
        let mut counts: HashMap<(i64, i64), i64> = HashMap::new();
        for (bx, by, n) in self.db.spawn_cell_counts(first_hour, last_hour, k).await? {
            *counts.entry((bx, by)).or_default() += n;
        }
        for (from, to) in [(query.from, first_hour), (last_hour, query.to)] {
            if from >= to {
                continue;
            }
            let edge = HeatmapQuery {
                from,
                to,
                label: None,
                ..query.clone()
            };
            for cell in self.db.binned_events(&edge).await? {
                let key = (
                    (cell.ew / query.bin).round() as i64,
                    (cell.ns / query.bin).round() as i64,
                );
                *counts.entry(key).or_default() += cell.count;
            }
        }
        let counts = counts.into_iter().map(|((bx, by), n)| (bx, by, n));
        Ok(HeatCell::grid(counts, query.bin))
    }

    /// Whether a heatmap is answered mostly from the hourly spawn cell counts (cheap) rather
    /// than from raw events: spawns, no name filter, a bin that is a multiple of
    /// [`SPAWN_CELL`], and at least one whole hour.
    pub fn heatmap_from_cells(&self, query: &HeatmapQuery) -> bool {
        let k = (query.bin / SPAWN_CELL).round();
        let whole_cells = k >= 1.0 && (k * SPAWN_CELL - query.bin).abs() < 1e-9;
        let first_hour = hour_of(query.from + chrono::Duration::seconds(3599));
        let last_hour = hour_of(query.to);
        query.kind == EventKind::Spawns
            && query.label.is_none()
            && whole_cells
            && first_hour < last_hour
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
        self.db.thin_aligned(from..to, step).await
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

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://tracker:s3cret@127.0.0.1/db"),
            "postgres://tracker:***@127.0.0.1/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
