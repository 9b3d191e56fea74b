//! Process-wide counters shown by `/debug`: cheap atomics updated on the hot paths.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::protocol::FrameType;

/// Distinct unhandled frame types counted by name; further ones are counted as `other`, so a
/// plugin cannot create unbounded series.
pub const MAX_UNHANDLED_TYPES: usize = 32;
/// The label unhandled frame types beyond [`MAX_UNHANDLED_TYPES`] (or with odd names) share.
pub const OTHER_TYPE: &str = "other";

/// Upper bounds (seconds) of latency histogram buckets, Prometheus style.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A cumulative latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative; cumulated when rendered), plus overflow.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

/// A read-out of a histogram: cumulative bucket counts, sum in seconds, count.
#[derive(Debug, Clone)]
pub struct HistogramSnapshot {
    pub cumulative: Vec<(f64, u64)>,
    pub sum_secs: f64,
    pub count: u64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let cumulative = LATENCY_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(le, n)| {
                running += n.load(Ordering::Relaxed);
                (*le, running)
            })
            .collect();
        HistogramSnapshot {
            cumulative,
            sum_secs: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

/// Counters and gauges; every field is updated with relaxed atomics (they are statistics, not
/// synchronisation).
#[derive(Debug, Default)]
pub struct Metrics {
    pub plugins_connected: AtomicU64,
    pub browsers_connected: AtomicU64,
    /// Accepted plugin frames, indexed by [`FrameType::index`].
    pub frames_received: [AtomicU64; FrameType::ALL.len()],
    /// Well-formed plugin frames of types the tracker does not handle, by type (bounded).
    pub frames_unhandled: Mutex<BTreeMap<String, u64>>,
    /// Relayed frames too large to pass on to browsers.
    pub frames_not_relayed: AtomicU64,
    pub frames_rejected: AtomicU64,
    /// Frames refused because another connection owns their character.
    pub frames_unclaimed: AtomicU64,
    pub connections_refused: AtomicU64,
    pub events_written: AtomicU64,
    pub write_batches: AtomicU64,
    pub write_failures: AtomicU64,
    /// Retried batches found already committed (the reply to their commit was lost).
    pub batches_replayed: AtomicU64,
    pub events_dropped: AtomicU64,
    pub broadcast_lagged: AtomicU64,
    pub commands_relayed: AtomicU64,
    pub peers_timed_out: AtomicU64,
    /// When the last telemetry frame was accepted (milliseconds since the epoch; 0: never).
    pub last_telemetry_ms: AtomicU64,
    /// Since when the writer queue has been full (milliseconds since the epoch; 0: not full).
    pub queue_full_since_ms: AtomicU64,
    /// Rows deleted by the pruning task.
    pub rows_pruned: AtomicU64,
    /// Telemetry rows removed by thinning.
    pub rows_thinned: AtomicU64,
    /// Time to write one batch to the database.
    pub write_batch_seconds: Histogram,
    /// HTTP request durations per (method, route template).
    pub http_requests: Mutex<HashMap<(String, String), Arc<Histogram>>>,
}

/// A copy of the counters at one moment, as `/debug` shows them.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsSnapshot {
    pub plugins_connected: u64,
    pub browsers_connected: u64,
    /// Accepted plugin frames by type.
    pub frames_received: BTreeMap<&'static str, u64>,
    /// Ignored plugin frames of types the tracker does not handle, by type.
    pub frames_unhandled: BTreeMap<String, u64>,
    pub frames_not_relayed: u64,
    pub frames_rejected: u64,
    pub frames_unclaimed: u64,
    pub connections_refused: u64,
    pub rows_written: u64,
    pub write_batches: u64,
    pub write_failures: u64,
    pub batches_replayed: u64,
    pub events_dropped: u64,
    pub broadcast_lagged: u64,
    pub commands_relayed: u64,
    pub peers_timed_out: u64,
    pub rows_pruned: u64,
    pub rows_thinned: u64,
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

/// Adds one to a counter.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    /// Counts one accepted plugin frame of a known type.
    pub fn count_frame(&self, kind: FrameType) {
        bump(&self.frames_received[kind.index()]);
    }

    /// Counts one frame of a type the tracker does not handle. Names are kept for the first
    /// [`MAX_UNHANDLED_TYPES`] plain (`[a-z0-9_]`) type names; the rest count as `other`.
    pub fn count_unhandled(&self, kind: &str) {
        let plain = !kind.is_empty()
            && kind.len() <= 32
            && kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        let mut map = self
            .frames_unhandled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let label = if plain && (map.contains_key(kind) || map.len() < MAX_UNHANDLED_TYPES) {
            kind
        } else {
            OTHER_TYPE
        };
        match map.get_mut(label) {
            Some(n) => *n += 1,
            None => {
                map.insert(label.to_owned(), 1);
            }
        }
    }

    /// Records the duration of one HTTP request to `route` (the matched route template).
    pub fn observe_http(&self, method: &str, route: &str, elapsed: Duration) {
        let histogram = {
            let mut map = self
                .http_requests
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.entry((method.to_owned(), route.to_owned()))
                .or_default()
                .clone()
        };
        histogram.observe(elapsed);
    }

    /// Snapshots of every HTTP route histogram, sorted by route then method.
    pub fn http_snapshots(&self) -> Vec<((String, String), HistogramSnapshot)> {
        let map = self
            .http_requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<_> = map.iter().map(|(k, h)| (k.clone(), h.snapshot())).collect();
        out.sort_by(|a, b| (&a.0.1, &a.0.0).cmp(&(&b.0.1, &b.0.0)));
        out
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            plugins_connected: get(&self.plugins_connected),
            browsers_connected: get(&self.browsers_connected),
            frames_received: FrameType::ALL
                .into_iter()
                .map(|t| (t.name(), get(&self.frames_received[t.index()])))
                .collect(),
            frames_unhandled: self
                .frames_unhandled
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            frames_not_relayed: get(&self.frames_not_relayed),
            frames_rejected: get(&self.frames_rejected),
            frames_unclaimed: get(&self.frames_unclaimed),
            connections_refused: get(&self.connections_refused),
            rows_written: get(&self.events_written),
            write_batches: get(&self.write_batches),
            write_failures: get(&self.write_failures),
            batches_replayed: get(&self.batches_replayed),
            events_dropped: get(&self.events_dropped),
            broadcast_lagged: get(&self.broadcast_lagged),
            commands_relayed: get(&self.commands_relayed),
            peers_timed_out: get(&self.peers_timed_out),
            rows_pruned: get(&self.rows_pruned),
            rows_thinned: get(&self.rows_thinned),
        }
    }
}

/// Which gauge a [`ConnectionSlot`] occupies.
#[derive(Debug, Clone, Copy)]
pub enum Peer {
    Plugin,
    Browser,
}

/// One occupied connection slot; frees itself when dropped, so a panicking or cancelled session
/// can never leak a slot.
#[derive(Debug)]
pub struct ConnectionSlot {
    metrics: Arc<Metrics>,
    peer: Peer,
}

impl ConnectionSlot {
    /// Takes a slot unless `limit` connections of that kind are already open.
    pub fn acquire(metrics: &Arc<Metrics>, peer: Peer, limit: usize) -> Option<Self> {
        let gauge = Self::gauge_of(metrics, peer);
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        gauge
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        Some(Self {
            metrics: metrics.clone(),
            peer,
        })
    }

    fn gauge_of(metrics: &Metrics, peer: Peer) -> &AtomicU64 {
        match peer {
            Peer::Plugin => &metrics.plugins_connected,
            Peer::Browser => &metrics.browsers_connected,
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        Self::gauge_of(&self.metrics, self.peer).fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(20));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.cumulative[0], (0.0005, 1));
        let at_25ms = s
            .cumulative
            .iter()
            .find(|(le, _)| *le == 0.025)
            .map(|x| x.1);
        assert_eq!(at_25ms, Some(2));
        assert_eq!(
            s.cumulative.last().map(|x| x.1),
            Some(2),
            "60 s only in +Inf"
        );
    }

    #[test]
    fn unhandled_frame_types_are_counted_under_a_bounded_set_of_labels() {
        let metrics = Metrics::default();
        for i in 0..100 {
            metrics.count_unhandled(&format!("kind_{i}"));
        }
        metrics.count_unhandled("kind_0");
        metrics.count_unhandled("Weird Name\"}");
        let snapshot = metrics.snapshot().frames_unhandled;
        assert_eq!(snapshot.len(), MAX_UNHANDLED_TYPES + 1);
        assert_eq!(snapshot.get("kind_0"), Some(&2));
        assert_eq!(
            snapshot.get(OTHER_TYPE),
            Some(&(100 - MAX_UNHANDLED_TYPES as u64 + 1))
        );
    }

    #[test]
    fn connection_slots_respect_the_limit_and_free_on_drop() {
        let metrics = Arc::new(Metrics::default());
        let a = ConnectionSlot::acquire(&metrics, Peer::Plugin, 2);
        let b = ConnectionSlot::acquire(&metrics, Peer::Plugin, 2);
        assert!(a.is_some() && b.is_some());
        assert!(ConnectionSlot::acquire(&metrics, Peer::Plugin, 2).is_none());
        drop(a);
        assert_eq!(metrics.snapshot().plugins_connected, 1);
        assert!(ConnectionSlot::acquire(&metrics, Peer::Plugin, 2).is_some());
    }
}
