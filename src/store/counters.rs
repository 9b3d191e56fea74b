//! The counter updates a batch implies (kill and rare totals, session baselines, when each
//! character was seen, hourly spawn cells), computed once and written by either backend.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::model::Event;
use crate::protocol::Telemetry;

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
    /// Kills and kills-per-hour samples to add per (character, hour).
    pub kill_hours: HashMap<(String, DateTime<Utc>), KillHour>,
}

/// What a batch adds to one character's hour in `kill_hours`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct KillHour {
    pub kills: i64,
    pub kph_sum: f64,
    pub kph_samples: i64,
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
            // The event log's entries are the tracker's own observations (a connection, a
            // disconnect at the moment it happened), not frames: they say nothing of when the
            // character was seen, nor of its deaths or tag.
            if matches!(event, Event::Happened(_)) {
                continue;
            }
            let (name, at) = event.who_and_when();
            let telemetry = match event {
                Event::Telemetry { row, .. } => Some(row),
                _ => None,
            };
            out.saw(name, at, telemetry);
            match event {
                Event::Telemetry {
                    row,
                    kills_delta,
                    kills_baseline,
                } => {
                    if *kills_delta > 0 {
                        let total = out.kills.entry(row.character_name.clone()).or_default();
                        *total = total.saturating_add(*kills_delta);
                    }
                    out.baselines.insert(
                        (row.character_name.clone(), row.session_id.clone()),
                        *kills_baseline,
                    );
                    let hour = out
                        .kill_hours
                        .entry((row.character_name.clone(), hour_of(row.timestamp)))
                        .or_default();
                    hour.kills = hour.kills.saturating_add(*kills_delta);
                    if let Some(kph) = row.kills_per_hour.filter(|v| v.is_finite()) {
                        hour.kph_sum += kph;
                        hour.kph_samples += 1;
                    }
                }
                Event::Rare { rare, session_id } => {
                    *out.rares.entry(rare.character_name.clone()).or_default() += 1;
                    if let Some(sid) = session_id {
                        *out.session_rares
                            .entry((rare.character_name.clone(), sid.clone()))
                            .or_default() += 1;
                    }
                }
                Event::Spawn(spawn) => {
                    *out.spawn_cells
                        .entry((
                            hour_of(spawn.timestamp),
                            cell_of(spawn.ew),
                            cell_of(spawn.ns),
                        ))
                        .or_default() += 1;
                }
                // Every other event only says when its character was seen.
                _ => {}
            }
        }
        out
    }
}
