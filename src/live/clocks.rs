//! Characters whose plugin clock is off: what `/debug` and `/metrics` show about clocks. Only
//! skewed characters are kept (a frame within the tolerance forgets its character), at most
//! [`MOST_KEPT`] of them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::protocol::clock::ClockReading;

/// Most characters with a skewed clock kept (the oldest report goes first).
const MOST_KEPT: usize = 10_000;

/// How long a character stays listed after its last skewed frame.
const LISTED_FOR: chrono::Duration = chrono::Duration::minutes(10);

/// One character's skewed clock.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct Skew {
    pub character: String,
    /// Its plugin's clock minus the tracker's, on its latest frame, in milliseconds.
    pub offset_ms: i64,
    /// Its frames are placed at the moment the tracker read them.
    pub placed_on_server_clock: bool,
    /// Since when its clock has been off (this time).
    pub since: DateTime<Utc>,
    /// Its latest frame.
    pub last: DateTime<Utc>,
    /// Frames placed on the tracker's clock since `since`.
    pub frames_placed: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Clocks {
    skewed: Mutex<HashMap<String, Skew>>,
    /// Some character is kept: a frame within the tolerance must look it up.
    any: AtomicBool,
}

impl Clocks {
    /// Records what a frame of `name`, read at `at`, said about its clock. `skewed` says whether
    /// the offset is beyond the tolerance (also when plugin clocks are trusted).
    pub(crate) fn note(&self, name: &str, reading: ClockReading, skewed: bool, at: DateTime<Utc>) {
        if !skewed && !self.any.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut map) = self.skewed.lock() else {
            return;
        };
        if !skewed {
            map.remove(name);
            self.any.store(!map.is_empty(), Ordering::Relaxed);
            return;
        }
        if !map.contains_key(name) && map.len() >= MOST_KEPT {
            let oldest = map
                .values()
                .min_by_key(|s| s.last)
                .map(|s| s.character.clone());
            if let Some(oldest) = oldest {
                map.remove(&oldest);
            }
        }
        let skew = map.entry(name.to_owned()).or_insert_with(|| Skew {
            character: name.to_owned(),
            offset_ms: reading.offset_ms,
            placed_on_server_clock: reading.placed,
            since: at,
            last: at,
            frames_placed: 0,
        });
        skew.offset_ms = reading.offset_ms;
        skew.placed_on_server_clock = reading.placed;
        skew.last = at;
        skew.frames_placed += u64::from(reading.placed);
        self.any.store(true, Ordering::Relaxed);
    }

    /// The characters whose clock was off on a frame within the last [`LISTED_FOR`], largest
    /// offset first.
    pub(crate) fn report(&self) -> Vec<Skew> {
        let cutoff = Utc::now() - LISTED_FOR;
        let Ok(mut map) = self.skewed.lock() else {
            return Vec::new();
        };
        map.retain(|_, s| s.last >= cutoff);
        self.any.store(!map.is_empty(), Ordering::Relaxed);
        let mut out: Vec<Skew> = map.values().cloned().collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.offset_ms.unsigned_abs()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(offset_ms: i64, placed: bool) -> ClockReading {
        ClockReading { offset_ms, placed }
    }

    #[test]
    fn skewed_characters_are_kept_until_their_clock_is_right() {
        let clocks = Clocks::default();
        let now = Utc::now();
        clocks.note("Ann", reading(100, false), false, now);
        assert!(clocks.report().is_empty());
        clocks.note("Ann", reading(7_200_000, true), true, now);
        clocks.note("Bob", reading(-3_000_000, true), true, now);
        clocks.note("Ann", reading(7_200_500, true), true, now);
        let report = clocks.report();
        assert_eq!(report.len(), 2);
        assert_eq!(report[0].character, "Ann", "largest offset first");
        assert_eq!(report[0].frames_placed, 2);
        assert_eq!(report[0].offset_ms, 7_200_500);
        clocks.note("Ann", reading(20, false), false, now);
        let report = clocks.report();
        assert_eq!(report.len(), 1, "Ann's clock is right again");
        // Reports older than the window go.
        clocks.note(
            "Cid",
            reading(9_000, true),
            true,
            now - chrono::Duration::minutes(11),
        );
        assert_eq!(clocks.report().len(), 1);
    }
}
