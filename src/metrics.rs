//! Process-wide counters shown by `/debug`: cheap atomics updated on the hot paths.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Counters and gauges; every field is updated with relaxed atomics (they are statistics, not
/// synchronisation).
#[derive(Debug, Default)]
pub struct Metrics {
    pub plugins_connected: AtomicU64,
    pub browsers_connected: AtomicU64,
    pub frames_telemetry: AtomicU64,
    pub frames_spawn: AtomicU64,
    pub frames_rare: AtomicU64,
    pub frames_chat: AtomicU64,
    pub frames_register: AtomicU64,
    pub frames_rejected: AtomicU64,
    pub connections_refused: AtomicU64,
    pub events_written: AtomicU64,
    pub write_batches: AtomicU64,
    pub write_failures: AtomicU64,
    pub events_dropped: AtomicU64,
    pub broadcast_lagged: AtomicU64,
    pub commands_relayed: AtomicU64,
    pub peers_timed_out: AtomicU64,
}

/// A copy of the counters at one moment, as `/debug` shows them.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsSnapshot {
    pub plugins_connected: u64,
    pub browsers_connected: u64,
    pub frames_received: FramesReceived,
    pub frames_rejected: u64,
    pub connections_refused: u64,
    pub rows_written: u64,
    pub write_batches: u64,
    pub write_failures: u64,
    pub events_dropped: u64,
    pub broadcast_lagged: u64,
    pub commands_relayed: u64,
    pub peers_timed_out: u64,
}

/// Accepted frames by type.
#[derive(Debug, Clone, Serialize)]
pub struct FramesReceived {
    pub telemetry: u64,
    pub spawn: u64,
    pub rare: u64,
    pub chat: u64,
    pub register: u64,
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
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
    /// The counter for accepted frames of this plugin frame type.
    pub fn frame_counter(&self, kind: &str) -> &AtomicU64 {
        match kind {
            "telemetry" => &self.frames_telemetry,
            "spawn" => &self.frames_spawn,
            "rare" => &self.frames_rare,
            "chat" => &self.frames_chat,
            _ => &self.frames_register,
        }
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            plugins_connected: get(&self.plugins_connected),
            browsers_connected: get(&self.browsers_connected),
            frames_received: FramesReceived {
                telemetry: get(&self.frames_telemetry),
                spawn: get(&self.frames_spawn),
                rare: get(&self.frames_rare),
                chat: get(&self.frames_chat),
                register: get(&self.frames_register),
            },
            frames_rejected: get(&self.frames_rejected),
            connections_refused: get(&self.connections_refused),
            rows_written: get(&self.events_written),
            write_batches: get(&self.write_batches),
            write_failures: get(&self.write_failures),
            events_dropped: get(&self.events_dropped),
            broadcast_lagged: get(&self.broadcast_lagged),
            commands_relayed: get(&self.commands_relayed),
            peers_timed_out: get(&self.peers_timed_out),
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
