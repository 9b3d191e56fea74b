//! The coalesced browser stream, for maps with many viewers: instead of one websocket frame per
//! character update, a browser that opens `/ws/live?coalesce=1` gets one `batch` frame per tick
//! (COALESCE_MS) carrying every frame broadcast since the previous tick, in order, with only the
//! latest telemetry of each character. The batch is built and serialized once for every such
//! browser, so a thousand viewers of a thousand characters cost a few frames per second each
//! rather than a thousand.
//!
//! Batches carry the kinds a browser receives by default (not the large relayed ones). A
//! coalescer that falls behind the hub sends a `snapshot` instead, as a lagging browser gets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::live::{Broadcast, FrameKind, Live};

/// The frames of one tick, in broadcast order; a superseded telemetry frame leaves a hole.
#[derive(Debug, Default)]
pub struct Pending {
    frames: Vec<Option<Utf8Bytes>>,
    latest: HashMap<Arc<str>, usize>,
}

impl Pending {
    /// Takes one broadcast (the caller filters kinds); a later frame with the same
    /// `latest_of` replaces the earlier one, and takes its place at the end.
    pub fn push(&mut self, broadcast: Broadcast) {
        if let Some(name) = broadcast.latest_of {
            if let Some(earlier) = self.latest.insert(name, self.frames.len())
                && let Some(slot) = self.frames.get_mut(earlier)
            {
                *slot = None;
            }
        }
        self.frames.push(Some(broadcast.text));
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn clear(&mut self) {
        self.frames.clear();
        self.latest.clear();
    }

    /// `{"type":"batch","frames":[...]}` of the pending frames (already JSON), and empties.
    pub fn take_batch(&mut self) -> Utf8Bytes {
        let len: usize = self.frames.iter().flatten().map(|f| f.len() + 1).sum();
        let mut out = String::with_capacity(len + 32);
        out.push_str(r#"{"type":"batch","frames":["#);
        let mut first = true;
        for frame in self.frames.iter().flatten() {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(frame.as_str());
        }
        out.push_str("]}");
        self.clear();
        Utf8Bytes::from(out)
    }
}

/// Collects broadcasts and publishes a batch every `tick` while any browser takes batches, until
/// `shutdown`.
pub async fn run(live: Arc<Live>, tick: Duration, shutdown: CancellationToken) {
    let mut hub = live.subscribe_coalescer();
    let mut pending = Pending::default();
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let carried = FrameKind::default_mask();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            received = hub.recv() => match received {
                Ok(b) if carried & b.kind.bit() == 0 => {}
                Ok(b) => {
                    if live.batches_watched() {
                        pending.push(b);
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "coalescer fell behind; sending a snapshot");
                    pending.clear();
                    live.publish_batch(live.snapshot_frame());
                }
                Err(RecvError::Closed) => return,
            },
            _ = ticks.tick() => {
                if !pending.is_empty() && !live.publish_batch(pending.take_batch()) {
                    pending.clear();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FrameType;

    fn frame(kind: FrameType, about: Option<&str>, text: &str) -> Broadcast {
        Broadcast {
            kind: FrameKind::Plugin(kind),
            text: Utf8Bytes::from(text.to_owned()),
            latest_of: about.map(Arc::from),
        }
    }

    #[test]
    fn a_batch_keeps_order_and_only_the_latest_telemetry_of_each_character() {
        let mut pending = Pending::default();
        pending.push(frame(FrameType::Telemetry, Some("A"), r#"{"a":1}"#));
        pending.push(frame(FrameType::Telemetry, Some("B"), r#"{"b":1}"#));
        pending.push(frame(FrameType::Spawn, None, r#"{"s":1}"#));
        pending.push(frame(FrameType::Telemetry, Some("A"), r#"{"a":2}"#));
        let batch = pending.take_batch();
        assert_eq!(
            batch.as_str(),
            r#"{"type":"batch","frames":[{"b":1},{"s":1},{"a":2}]}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(batch.as_str()).expect("json");
        assert_eq!(parsed["frames"].as_array().map(Vec::len), Some(3));
        assert!(pending.is_empty());
    }
}
