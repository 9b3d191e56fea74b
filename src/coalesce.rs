//! The coalesced browser stream, for maps with many viewers: instead of one websocket frame per
//! character update, a browser that opens `/ws/live?coalesce=1` gets one `batch` frame per tick
//! (COALESCE_MS) carrying every frame broadcast since the previous tick, in order. The batch is
//! built and serialized once for every such browser, so a thousand viewers of a thousand
//! characters cost four websocket frames per second each rather than a thousand.
//!
//! Every frame is kept, superseded telemetry included: the map draws live trails from them, and a
//! burst of frames (a plugin catching up) would otherwise leave holes in its trail.
//!
//! Batches carry the kinds a browser receives by default (not the large relayed ones). A
//! coalescer that falls behind the hub sends a `snapshot` instead, as a lagging browser gets.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::live::{Broadcast, FrameKind, Live};

/// The frames of one tick, in broadcast order.
#[derive(Debug, Default)]
pub struct Pending {
    frames: Vec<Utf8Bytes>,
}

impl Pending {
    /// Takes one broadcast (the caller filters kinds).
    pub fn push(&mut self, broadcast: Broadcast) {
        self.frames.push(broadcast.text);
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn clear(&mut self) {
        self.frames.clear();
    }

    /// `{"type":"batch","frames":[...]}` of the pending frames (already JSON), and empties.
    pub fn take_batch(&mut self) -> Utf8Bytes {
        let len: usize = self.frames.iter().map(|f| f.len() + 1).sum();
        let mut out = String::with_capacity(len + 32);
        out.push_str(r#"{"type":"batch","frames":["#);
        for (i, frame) in self.frames.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
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

    fn frame(kind: FrameType, text: &str) -> Broadcast {
        Broadcast {
            kind: FrameKind::Plugin(kind),
            text: Utf8Bytes::from(text.to_owned()),
        }
    }

    #[test]
    fn a_batch_carries_every_frame_in_order() {
        let mut pending = Pending::default();
        pending.push(frame(FrameType::Telemetry, r#"{"a":1}"#));
        pending.push(frame(FrameType::Spawn, r#"{"s":1}"#));
        pending.push(frame(FrameType::Telemetry, r#"{"a":2}"#));
        let batch = pending.take_batch();
        assert_eq!(
            batch.as_str(),
            r#"{"type":"batch","frames":[{"a":1},{"s":1},{"a":2}]}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(batch.as_str()).expect("json");
        assert_eq!(parsed["frames"].as_array().map(Vec::len), Some(3));
        assert!(pending.is_empty());
    }
}
