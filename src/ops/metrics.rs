//! Process-wide metrics: counters, gauges and latency histograms updated on the hot paths,
//! shown by `/debug` (a JSON snapshot) and `/metrics` (Prometheus text, rendered by the
//! `prometheus-client` crate from the registry built here, with the series names dashboards
//! already use).

use super::log_gate::LogGate;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::protocol::FrameType;

/// Distinct unhandled frame types counted by name; further ones are counted as `other`, so a
/// plugin cannot create unbounded series.
pub(crate) const MAX_UNHANDLED_TYPES: usize = 32;
/// The label unhandled frame types beyond [`MAX_UNHANDLED_TYPES`] (or with odd names) share.
pub(crate) const OTHER_TYPE: &str = "other";

/// Upper bounds (seconds) of latency histogram buckets.
pub(crate) const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The labels of a series counted per frame type.
type TypeLabel = [(&'static str, String); 1];
/// The labels of an HTTP request series: method and route template.
type RouteLabels = [(&'static str, String); 2];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Every metric of the process. Counters and gauges are atomics (relaxed: statistics, not
/// synchronisation); the registry holds handles to the same values for `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    pub plugins_connected: Gauge<u64, AtomicU64>,
    pub browsers_connected: Gauge<u64, AtomicU64>,
    /// Accepted plugin frames, by type.
    frames_received: Family<TypeLabel, Counter>,
    /// Well-formed plugin frames of types the tracker does not handle, by type (bounded to
    /// [`MAX_UNHANDLED_TYPES`] names); the map is `/debug`'s copy and the set of names in use.
    frames_unhandled: Family<TypeLabel, Counter>,
    unhandled_names: Mutex<BTreeMap<String, u64>>,
    /// Relayed frames too large to pass on to browsers.
    pub frames_not_relayed: Counter,
    /// Connect, disconnect and level entries the event log left out (repeated past the budget).
    pub log_entries_skipped: Counter,
    pub frames_rejected: Counter,
    /// Frames refused because another connection owns their character.
    pub frames_unclaimed: Counter,
    pub connections_refused: Counter,
    pub events_written: Counter,
    pub write_batches: Counter,
    pub write_failures: Counter,
    /// Retried batches found already committed (the reply to their commit was lost).
    pub batches_replayed: Counter,
    pub events_dropped: Counter,
    /// Plugin frames refused because the spool could not take them (full, or failing).
    pub frames_not_stored: Counter,
    /// Browsers dropped for not reading what they were sent.
    pub browsers_dropped: Counter,
    /// Plugin frames placed at the moment they were read (their plugin's clock was off).
    pub frames_placed_on_server_clock: Counter,
    /// Returning characters whose totals the database did not give in time (they carry on and
    /// are retried on a later frame).
    pub restores_deferred: Counter,
    not_stored_log: LogGate,
    browser_drop_log: LogGate,
    restore_log: LogGate,
    pub broadcast_lagged: Counter,
    pub commands_relayed: Counter,
    pub peers_timed_out: Counter,
    /// Rows deleted by the pruning task.
    pub rows_pruned: Counter,
    /// Telemetry rows removed by thinning.
    pub rows_thinned: Counter,
    /// Read when `/metrics` is scraped: the writer queue and the live characters.
    pub write_queue_depth: Gauge,
    pub spool_bytes: Gauge,
    /// SPOOL_MAX_BYTES.
    pub spool_max_bytes: Gauge,
    /// Free and total bytes of the spool's disk.
    pub spool_disk_free_bytes: Gauge,
    pub spool_disk_size_bytes: Gauge,
    /// 1 when `/health` finds nothing wrong beside the database ping, else 0.
    pub healthy: Gauge,
    pub spool_oldest_age_seconds: Gauge<f64, AtomicU64>,
    pub write_failing_seconds: Gauge<f64, AtomicU64>,
    /// Largest clock offset of a character's plugin among those whose clock is off.
    pub clock_skew_max_seconds: Gauge<f64, AtomicU64>,
    pub clock_skewed_characters: Gauge,
    pub live_characters: Gauge,
    /// Time to write one batch to the database.
    pub write_batch_seconds: Histogram,
    /// HTTP request durations per (method, route template).
    http_requests: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// When the last telemetry frame was accepted (milliseconds since the epoch; 0: never).
    pub last_telemetry_ms: AtomicU64,
    /// Since when writes to the database have been failing (milliseconds since the epoch; 0:
    /// the last write succeeded).
    pub write_failing_since_ms: AtomicU64,
    /// Failed writes (batches, probes) since the last success.
    pub write_failure_streak: AtomicU64,
    /// When the database last took a write (milliseconds since the epoch; 0: not yet).
    pub last_write_ok_ms: AtomicU64,
    /// Why the last write failed.
    pub last_write_error: std::sync::Mutex<Option<String>>,
    /// Scheduled backups.
    pub backups: Arc<super::backup_schedule::BackupMetrics>,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
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
    pub log_entries_skipped: u64,
    pub frames_rejected: u64,
    pub frames_unclaimed: u64,
    pub connections_refused: u64,
    pub rows_written: u64,
    pub write_batches: u64,
    pub write_failures: u64,
    pub batches_replayed: u64,
    pub events_dropped: u64,
    pub frames_not_stored: u64,
    pub browsers_dropped: u64,
    pub restores_deferred: u64,
    pub frames_placed_on_server_clock: u64,
    pub broadcast_lagged: u64,
    pub commands_relayed: u64,
    pub peers_timed_out: u64,
    pub rows_pruned: u64,
    pub rows_thinned: u64,
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

/// Adds one to a counter.
pub(crate) fn bump(c: &Counter) {
    c.inc();
}

/// Adds `n` to a counter.
pub(crate) fn add(c: &Counter, n: u64) {
    c.inc_by(n);
}

impl Metrics {
    /// Logs, at most once a minute, that frames are refused for want of spool room.
    pub(crate) fn note_not_stored(&self, err: &impl std::fmt::Display) {
        if self.not_stored_log.open() {
            tracing::error!(error = %err, refused = self.frames_not_stored.get(), "plugin frames are being refused: the tracker cannot keep them");
        }
    }

    /// Logs, at most once a minute, that a browser was dropped for not reading.
    pub(crate) fn note_browser_dropped(&self) {
        self.browsers_dropped.inc();
        if self.browser_drop_log.open() {
            tracing::warn!(
                dropped = self.browsers_dropped.get(),
                "a browser that stopped reading was dropped (counted in browsers_dropped)"
            );
        }
    }

    /// Counts a returning character whose totals the database did not give (`why`), logged at
    /// most once a minute: a crowd logging in on a slow database is one line, not one per frame.
    pub(crate) fn note_restore_deferred(&self, character: &str, why: &dyn std::fmt::Display) {
        self.restores_deferred.inc();
        if self.restore_log.open() {
            tracing::warn!(
                character,
                %why,
                deferred = self.restores_deferred.get(),
                "returning characters' totals could not be loaded in time; they carry on and are retried on a later frame (counted in restores_deferred)"
            );
        }
    }

    /// The database took a write: the failure streak ends.
    pub(crate) fn write_succeeded(&self) {
        self.last_write_ok_ms.store(now_ms(), Ordering::Relaxed);
        self.write_failing_since_ms.store(0, Ordering::Relaxed);
        self.write_failure_streak.store(0, Ordering::Relaxed);
    }

    /// A write failed with `err`; the length of the failure streak, this one included.
    pub(crate) fn write_failed(&self, err: &impl std::fmt::Display) -> u64 {
        let _ = self.write_failing_since_ms.compare_exchange(
            0,
            now_ms(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        if let Ok(mut last) = self.last_write_error.lock() {
            *last = Some(err.to_string());
        }
        self.write_failure_streak.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Every metric at zero, registered under its exported name (counters gain `_total`).
    pub fn new() -> Self {
        let mut m = Self {
            plugins_connected: Gauge::default(),
            browsers_connected: Gauge::default(),
            frames_received: Family::default(),
            frames_unhandled: Family::default(),
            unhandled_names: Mutex::new(BTreeMap::new()),
            frames_not_relayed: Counter::default(),
            log_entries_skipped: Counter::default(),
            frames_rejected: Counter::default(),
            frames_unclaimed: Counter::default(),
            connections_refused: Counter::default(),
            events_written: Counter::default(),
            write_batches: Counter::default(),
            write_failures: Counter::default(),
            batches_replayed: Counter::default(),
            events_dropped: Counter::default(),
            frames_not_stored: Counter::default(),
            browsers_dropped: Counter::default(),
            frames_placed_on_server_clock: Counter::default(),
            restores_deferred: Counter::default(),
            not_stored_log: LogGate::per_minute(),
            browser_drop_log: LogGate::per_minute(),
            restore_log: LogGate::per_minute(),
            broadcast_lagged: Counter::default(),
            commands_relayed: Counter::default(),
            peers_timed_out: Counter::default(),
            rows_pruned: Counter::default(),
            rows_thinned: Counter::default(),
            write_queue_depth: Gauge::default(),
            spool_bytes: Gauge::default(),
            spool_max_bytes: Gauge::default(),
            spool_disk_free_bytes: Gauge::default(),
            spool_disk_size_bytes: Gauge::default(),
            healthy: Gauge::default(),
            spool_oldest_age_seconds: Gauge::default(),
            write_failing_seconds: Gauge::default(),
            clock_skew_max_seconds: Gauge::default(),
            clock_skewed_characters: Gauge::default(),
            live_characters: Gauge::default(),
            write_batch_seconds: latency_histogram(),
            http_requests: Family::new_with_constructor(latency_histogram),
            last_telemetry_ms: AtomicU64::new(0),
            write_failing_since_ms: AtomicU64::new(0),
            write_failure_streak: AtomicU64::new(0),
            last_write_ok_ms: AtomicU64::new(0),
            last_write_error: std::sync::Mutex::new(None),
            backups: Default::default(),
            registry: Registry::default(),
        };
        m.register();
        // Every known frame type is exported from the start (at 0), so a series exists before
        // the first frame of its type arrives.
        for kind in FrameType::ALL {
            let _ = m
                .frames_received
                .get_or_create(&[("type", kind.name().to_owned())]);
        }
        m
    }

    /// Help texts are written without a final full stop: the encoder adds one.
    fn register(&mut self) {
        let r = &mut self.registry;
        let counters = [
            (
                "dereth_frames_not_relayed",
                "Relayed frame types too large to pass on to browsers",
                &self.frames_not_relayed,
            ),
            (
                "dereth_log_entries_skipped",
                "Connect, disconnect and level entries the event log left out: more than 10 of \
                 one kind for one character in 10 minutes",
                &self.log_entries_skipped,
            ),
            (
                "dereth_frames_rejected",
                "Frames rejected as invalid (plugins and browsers)",
                &self.frames_rejected,
            ),
            (
                "dereth_connections_refused",
                "Websocket connections refused (authentication or connection caps)",
                &self.connections_refused,
            ),
            (
                "dereth_rows_written",
                "Events written to the database",
                &self.events_written,
            ),
            (
                "dereth_frames_unclaimed",
                "Plugin frames refused because another live connection owns their character",
                &self.frames_unclaimed,
            ),
            (
                "dereth_write_failures",
                "Failed database batch writes (each is retried)",
                &self.write_failures,
            ),
            (
                "dereth_batches_replayed",
                "Retried batches found already committed (their commit reply was lost); written once",
                &self.batches_replayed,
            ),
            (
                "dereth_events_dropped",
                "Events the database rejected as invalid (dropped one by one, logged)",
                &self.events_dropped,
            ),
            (
                "dereth_frames_not_stored",
                "Plugin frames refused because the spool was full or could not be written",
                &self.frames_not_stored,
            ),
            (
                "dereth_browsers_dropped",
                "Browsers dropped for not reading what they were sent",
                &self.browsers_dropped,
            ),
            (
                "dereth_restores_deferred",
                "Returning characters whose totals the database did not give in time (retried on a later frame)",
                &self.restores_deferred,
            ),
            (
                "dereth_frames_placed_on_server_clock",
                "Plugin frames placed at the moment they were read because their plugin's clock was off",
                &self.frames_placed_on_server_clock,
            ),
            (
                "dereth_broadcast_lag",
                "Times a browser fell behind and was resynced with a snapshot",
                &self.broadcast_lagged,
            ),
            (
                "dereth_commands_relayed",
                "Browser commands written to plugin connections",
                &self.commands_relayed,
            ),
            (
                "dereth_peers_timed_out",
                "Connections closed because the peer stopped answering",
                &self.peers_timed_out,
            ),
            (
                "dereth_rows_pruned",
                "Rows deleted by the pruning task",
                &self.rows_pruned,
            ),
            (
                "dereth_rows_thinned",
                "Telemetry rows removed by thinning",
                &self.rows_thinned,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        let by_type = [
            (
                "dereth_frames_received",
                "Plugin frames accepted, by type",
                &self.frames_received,
            ),
            (
                "dereth_frames_unhandled",
                "Plugin frames of types the tracker does not handle (ignored), by type",
                &self.frames_unhandled,
            ),
        ];
        for (name, help, family) in by_type {
            r.register(name, help, family.clone());
        }
        let connections = [
            (
                "dereth_plugins_connected",
                "Open plugin connections",
                &self.plugins_connected,
            ),
            (
                "dereth_browsers_connected",
                "Open browser connections",
                &self.browsers_connected,
            ),
        ];
        for (name, help, gauge) in connections {
            r.register(name, help, gauge.clone());
        }
        let scraped = [
            (
                "dereth_write_queue_depth",
                "Events accepted and not stored yet (in the spool)",
                &self.write_queue_depth,
            ),
            (
                "dereth_spool_bytes",
                "Bytes the spool's files hold",
                &self.spool_bytes,
            ),
            (
                "dereth_live_characters",
                "Characters heard from within the live window",
                &self.live_characters,
            ),
        ];
        for (name, help, gauge) in scraped {
            r.register(name, help, gauge.clone());
        }
        r.register(
            "dereth_clock_skew_max_seconds",
            "Largest plugin clock offset (absolute) among characters whose clock is off",
            self.clock_skew_max_seconds.clone(),
        );
        r.register(
            "dereth_clock_skewed_characters",
            "Characters whose plugin clock is off by more than CLOCK_SKEW_SECS",
            self.clock_skewed_characters.clone(),
        );
        r.register(
            "dereth_spool_max_bytes",
            "Most bytes the spool may hold (SPOOL_MAX_BYTES)",
            self.spool_max_bytes.clone(),
        );
        r.register(
            "dereth_spool_disk_free_bytes",
            "Bytes free on the spool's disk",
            self.spool_disk_free_bytes.clone(),
        );
        r.register(
            "dereth_spool_disk_size_bytes",
            "Size of the spool's disk in bytes",
            self.spool_disk_size_bytes.clone(),
        );
        r.register(
            "dereth_healthy",
            "1 when /health finds the tracker doing its job (spool, writes, lag, telemetry), else 0; the reason is in /health",
            self.healthy.clone(),
        );
        r.register(
            "dereth_spool_oldest_age_seconds",
            "Age of the oldest event not stored yet (0 when none)",
            self.spool_oldest_age_seconds.clone(),
        );
        r.register(
            "dereth_write_failing_seconds",
            "How long writes to the database have been failing (0 when they succeed)",
            self.write_failing_seconds.clone(),
        );
        r.register(
            "dereth_write_batch_seconds",
            "Time to write one batch to the database",
            self.write_batch_seconds.clone(),
        );
        r.register(
            "dereth_http_request_duration_seconds",
            "HTTP request durations by route",
            self.http_requests.clone(),
        );
        self.backups.register(r);
    }

    /// Every metric in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        if let Err(err) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(%err, "cannot render the metrics");
        }
        out
    }

    /// Counts one accepted plugin frame of a known type.
    pub fn count_frame(&self, kind: FrameType) {
        self.frames_received
            .get_or_create(&[("type", kind.name().to_owned())])
            .inc();
    }

    /// Counts one frame of a type the tracker does not handle. Names are kept for the first
    /// [`MAX_UNHANDLED_TYPES`] plain (`[a-z0-9_]`) type names; the rest count as `other`.
    pub fn count_unhandled(&self, kind: &str) {
        let plain = !kind.is_empty()
            && kind.len() <= 32
            && kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        let mut names = self
            .unhandled_names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let label = if plain && (names.contains_key(kind) || names.len() < MAX_UNHANDLED_TYPES) {
            kind
        } else {
            OTHER_TYPE
        };
        match names.get_mut(label) {
            Some(n) => *n += 1,
            None => {
                names.insert(label.to_owned(), 1);
            }
        }
        self.frames_unhandled
            .get_or_create(&[("type", label.to_owned())])
            .inc();
    }

    /// Records the duration of one HTTP request to `route` (the matched route template).
    pub fn observe_http(&self, method: &str, route: &str, elapsed: Duration) {
        self.http_requests
            .get_or_create(&[("method", method.to_owned()), ("route", route.to_owned())])
            .observe(elapsed.as_secs_f64());
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            plugins_connected: self.plugins_connected.get(),
            browsers_connected: self.browsers_connected.get(),
            frames_received: FrameType::ALL
                .into_iter()
                .map(|t| {
                    let labels = [("type", t.name().to_owned())];
                    let n = self.frames_received.get(&labels).map_or(0, |c| c.get());
                    (t.name(), n)
                })
                .collect(),
            frames_unhandled: self
                .unhandled_names
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            frames_not_relayed: self.frames_not_relayed.get(),
            log_entries_skipped: self.log_entries_skipped.get(),
            frames_rejected: self.frames_rejected.get(),
            frames_unclaimed: self.frames_unclaimed.get(),
            connections_refused: self.connections_refused.get(),
            rows_written: self.events_written.get(),
            write_batches: self.write_batches.get(),
            write_failures: self.write_failures.get(),
            batches_replayed: self.batches_replayed.get(),
            events_dropped: self.events_dropped.get(),
            frames_not_stored: self.frames_not_stored.get(),
            browsers_dropped: self.browsers_dropped.get(),
            restores_deferred: self.restores_deferred.get(),
            frames_placed_on_server_clock: self.frames_placed_on_server_clock.get(),
            broadcast_lagged: self.broadcast_lagged.get(),
            commands_relayed: self.commands_relayed.get(),
            peers_timed_out: self.peers_timed_out.get(),
            rows_pruned: self.rows_pruned.get(),
            rows_thinned: self.rows_thinned.get(),
        }
    }
}

/// Which gauge a [`ConnectionSlot`] occupies.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Peer {
    Plugin,
    Browser,
}

/// One occupied connection slot; frees itself when dropped, so a panicking or cancelled session
/// can never leak a slot.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    metrics: Arc<Metrics>,
    peer: Peer,
}

impl ConnectionSlot {
    /// Takes a slot unless `limit` connections of that kind are already open.
    pub(crate) fn acquire(metrics: &Arc<Metrics>, peer: Peer, limit: usize) -> Option<Self> {
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
            Peer::Plugin => metrics.plugins_connected.inner(),
            Peer::Browser => metrics.browsers_connected.inner(),
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
    fn histograms_render_cumulative_buckets_under_the_existing_names() {
        let metrics = Metrics::new();
        metrics.write_batch_seconds.observe(0.0003);
        metrics.write_batch_seconds.observe(0.02);
        metrics.write_batch_seconds.observe(60.0);
        metrics.observe_http("GET", "/stats/{character}", Duration::from_millis(3));
        bump(&metrics.events_written);
        let text = metrics.render();
        for line in [
            "# TYPE dereth_write_batch_seconds histogram",
            "dereth_write_batch_seconds_bucket{le=\"0.0005\"} 1",
            "dereth_write_batch_seconds_bucket{le=\"0.025\"} 2",
            "dereth_write_batch_seconds_bucket{le=\"10\"} 2",
            "dereth_write_batch_seconds_bucket{le=\"+Inf\"} 3",
            "dereth_write_batch_seconds_count 3",
            "dereth_http_request_duration_seconds_count{method=\"GET\",route=\"/stats/{character}\"} 1",
            "# TYPE dereth_rows_written_total counter",
            "dereth_rows_written_total 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in:\n{text}"
            );
        }
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
