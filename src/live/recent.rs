//! Recent trails kept in memory: every position (and teleport) accepted in the last
//! TRAIL_MEMORY_SECS, per character, so `/trails` for a recent window is answered without the
//! database. The server already sees every point; keeping ten minutes of them for a thousand
//! characters costs about 10 MB.
//!
//! Memory answers only windows it fully covers: it holds nothing from before the tracker started,
//! so until it has run for a window's length that window still comes from the database.
//!
//! Points stamped more than a minute ahead of the server's clock (the protocol accepts up to a
//! day) are not kept: a plugin could otherwise hold a day of points in memory. Until such a point
//! is no longer ahead, memory answers nothing (the database has it) so answers stay exact.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

use crate::protocol::Telemetry;
use crate::store::{TrailPoint, TrailQuery, mark_trail_breaks};

/// One position of a character.
#[derive(Debug, Clone, Copy)]
struct Point {
    at: DateTime<Utc>,
    ew: f64,
    ns: f64,
    z: f64,
}

#[derive(Debug, Default)]
struct Track {
    /// In time order.
    points: VecDeque<Point>,
    /// Teleport times, in time order.
    portals: VecDeque<DateTime<Utc>>,
}

impl Track {
    fn trim(&mut self, oldest: DateTime<Utc>) {
        while self.points.front().is_some_and(|p| p.at < oldest) {
            self.points.pop_front();
        }
        while self.portals.front().is_some_and(|t| *t < oldest) {
            self.portals.pop_front();
        }
    }

    fn is_empty(&self) -> bool {
        self.points.is_empty() && self.portals.is_empty()
    }
}

/// Inserts `value` keeping `queue` ordered by `key` (frames almost always arrive in order, so
/// this is a push at the back).
fn insert_ordered<T>(queue: &mut VecDeque<T>, value: T, key: impl Fn(&T) -> DateTime<Utc>) {
    let at = key(&value);
    if queue.back().is_none_or(|last| key(last) <= at) {
        queue.push_back(value);
    } else {
        let i = queue.partition_point(|p| key(p) <= at);
        queue.insert(i, value);
    }
}

/// The points of `track` at or after `since`.
fn in_window(track: &Track, since: DateTime<Utc>) -> std::collections::vec_deque::Iter<'_, Point> {
    let first = track.points.partition_point(|p| p.at < since);
    track.points.range(first..)
}

/// A character's track, locked on its own: ingest recording one character never waits for a
/// `/trails` answer reading the others.
type SharedTrack = Arc<Mutex<Track>>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update is a single insert or trim, so a poisoned lock still guards consistent data.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The recent positions of every character.
#[derive(Debug)]
pub struct RecentTrails {
    window: Duration,
    /// Since when every accepted point is here (in a cluster: since the bus last had a gap).
    since: Mutex<DateTime<Utc>>,
    /// Held only to find or add a track, never while a track is read.
    tracks: Mutex<HashMap<Arc<str>, SharedTrack>>,
    /// The latest timestamp of a point not kept for being too far ahead, if any.
    skipped_ahead: Mutex<Option<DateTime<Utc>>>,
}

/// How far ahead of the server's clock a point may be stamped and still be kept.
const MAX_AHEAD: Duration = Duration::seconds(60);

impl RecentTrails {
    /// Keeps `window_secs` of positions (0: none, every trail comes from the database).
    pub fn new(window_secs: u64) -> Self {
        Self {
            window: Duration::seconds(i64::try_from(window_secs).unwrap_or(i64::MAX / 1000)),
            since: Mutex::new(Utc::now()),
            tracks: Mutex::new(HashMap::new()),
            skipped_ahead: Mutex::new(None),
        }
    }

    fn enabled(&self) -> bool {
        self.window > Duration::zero()
    }

    fn oldest_kept(&self) -> DateTime<Utc> {
        Utc::now() - self.window
    }

    /// The track of `name`, created when missing.
    fn track(&self, name: &str) -> SharedTrack {
        let mut tracks = lock(&self.tracks);
        match tracks.get(name) {
            Some(track) => track.clone(),
            None => tracks.entry(Arc::from(name)).or_default().clone(),
        }
    }

    /// Records an accepted telemetry frame's position.
    pub fn record(&self, t: &Telemetry) {
        if !self.enabled() || t.timestamp < self.oldest_kept() {
            return;
        }
        if t.timestamp > Utc::now() + MAX_AHEAD {
            let mut skipped = lock(&self.skipped_ahead);
            if skipped.is_none_or(|s| s < t.timestamp) {
                *skipped = Some(t.timestamp);
            }
            return;
        }
        let point = Point {
            at: t.timestamp,
            ew: t.ew,
            ns: t.ns,
            z: t.z,
        };
        let track = self.track(&t.character_name);
        insert_ordered(&mut lock(&track).points, point, |p| p.at);
    }

    /// Records a stored teleport (trails break at it).
    pub fn teleported(&self, name: &str, at: DateTime<Utc>) {
        if !self.enabled() || at < self.oldest_kept() {
            return;
        }
        let track = self.track(name);
        insert_ordered(&mut lock(&track).portals, at, |t| *t);
    }

    /// Points may have been missed just now (the cluster bus lost packets): memory answers only
    /// windows that start later, older ones go to the database.
    pub fn restart_coverage(&self) {
        *lock(&self.since) = Utc::now();
    }

    /// Drops what fell out of the window, and characters left with nothing.
    pub fn trim(&self) {
        let oldest = self.oldest_kept();
        let tracks: Vec<SharedTrack> = lock(&self.tracks).values().cloned().collect();
        let mut emptied = false;
        for track in tracks {
            let mut track = lock(&track);
            track.trim(oldest);
            emptied |= track.is_empty();
        }
        if emptied {
            lock(&self.tracks).retain(|_, track| !lock(track).is_empty());
        }
    }

    /// Whether memory holds every point `query` asks for: a window ending now that starts
    /// within the kept window and after the tracker started.
    pub fn covers(&self, query: &TrailQuery) -> bool {
        self.enabled()
            && query.until.is_none()
            && query.since >= *lock(&self.since)
            && query.since >= self.oldest_kept()
            && lock(&self.skipped_ahead).is_none_or(|s| s <= Utc::now())
    }

    /// The trails `query` asks for, exactly as the database would answer them: per character in
    /// time order, thinned to one point per `step`, at most `limit` points (the earliest, over all
    /// characters, when more match), the first point after a teleport starting a new segment.
    pub fn trails(&self, query: &TrailQuery) -> Vec<TrailPoint> {
        let mut selected: Vec<(Arc<str>, SharedTrack)> = {
            let tracks = lock(&self.tracks);
            match &query.character {
                Some(name) => tracks
                    .get_key_value(name.as_str())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .into_iter()
                    .collect(),
                None => tracks.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            }
        };
        selected.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // Each track is thinned to the first point of every step while only its own lock is
        // held; only the points kept are copied out.
        let step = query.step.filter(|s| *s > 0);
        let mut kept: Vec<(usize, Point)> = Vec::new();
        let mut portals: Vec<(String, DateTime<Utc>)> = Vec::new();
        for (index, (name, track)) in selected.iter().enumerate() {
            let track = lock(track);
            let mut last_bucket = None;
            for p in in_window(&track, query.since) {
                if let Some(step) = step {
                    let bucket = p.at.timestamp().div_euclid(step);
                    if last_bucket == Some(bucket) {
                        continue;
                    }
                    last_bucket = Some(bucket);
                }
                kept.push((index, *p));
            }
            let first = track.portals.partition_point(|t| *t < query.since);
            portals.extend(track.portals.range(first..).map(|t| (name.to_string(), *t)));
        }
        let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
        if kept.len() > limit {
            // The earliest points over all characters, as the database's time-ordered scan
            // keeps them; then back to trails by name.
            kept.sort_by_key(|(_, p)| p.at);
            kept.truncate(limit);
            kept.sort_by_key(|(index, p)| (*index, p.at));
        }
        let mut points: Vec<TrailPoint> = kept
            .iter()
            .map(|(index, p)| TrailPoint {
                character_name: selected[*index].0.clone(),
                timestamp: p.at,
                ew: p.ew,
                ns: p.ns,
                z: p.z,
                segment_start: false,
            })
            .collect();
        mark_trail_breaks(&mut points, &portals);
        points
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str, secs_ago: i64, ew: f64) -> Telemetry {
        let text = serde_json::json!({
            "type": "telemetry", "character_name": name, "session_id": "s",
            "timestamp": (Utc::now() - Duration::seconds(secs_ago)).to_rfc3339(),
            "ew": ew, "ns": 0, "z": 0, "kills": 0, "deaths": 0, "rares_found": 0
        });
        match crate::protocol::parse_plugin_frame(&text.to_string()) {
            Ok(crate::protocol::PluginFrame::Telemetry(t)) => t,
            other => panic!("telemetry frame: {other:?}"),
        }
    }

    fn query(secs: i64, limit: i64) -> TrailQuery {
        TrailQuery {
            since: Utc::now() - Duration::seconds(secs),
            until: None,
            character: None,
            step: None,
            limit,
        }
    }

    #[test]
    fn trails_break_at_teleports_keep_the_earliest_points_and_forget_old_ones() {
        let recent = RecentTrails::new(60);
        // Out of order on purpose: points are kept in time order.
        for (name, ago, ew) in [
            ("A", 30, 1.0),
            ("A", 10, 3.0),
            ("A", 20, 2.0),
            ("B", 25, 9.0),
        ] {
            recent.record(&frame(name, ago, ew));
        }
        recent.record(&frame("A", 600, 0.0)); // older than the window: not kept
        recent.teleported("A", Utc::now() - Duration::seconds(15));
        let mut all = query(50, 100);
        let points = recent.trails(&all);
        let got: Vec<(&str, f64, bool)> = points
            .iter()
            .map(|p| (&*p.character_name, p.ew, p.segment_start))
            .collect();
        assert_eq!(
            got,
            [
                ("A", 1.0, false),
                ("A", 2.0, false),
                ("A", 3.0, true),
                ("B", 9.0, false)
            ]
        );
        // With a limit, the earliest points over all characters are kept.
        all.limit = 2;
        let first: Vec<f64> = recent.trails(&all).iter().map(|p| p.ew).collect();
        assert_eq!(first, [1.0, 9.0]);
        // A window that began before the tracker started is not covered.
        assert!(!recent.covers(&query(50, 100)));
        assert!(!RecentTrails::new(0).covers(&all));
    }

    #[test]
    fn points_far_ahead_are_not_kept_and_send_windows_to_the_database_meanwhile() {
        let recent = RecentTrails::new(60);
        recent.restart_coverage();
        let now = query(0, 100);
        recent.record(&frame("A", -30, 1.0)); // 30 s ahead: kept
        assert!(recent.covers(&now));
        recent.record(&frame("A", -3_600, 2.0)); // an hour ahead: not kept
        assert!(
            !recent.covers(&now),
            "the database has a point memory lacks"
        );
        let kept: Vec<f64> = recent
            .trails(&query(60, 100))
            .iter()
            .map(|p| p.ew)
            .collect();
        assert_eq!(kept, [1.0]);
    }
}
