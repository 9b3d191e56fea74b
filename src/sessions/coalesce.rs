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
//!
//! A browser may watch one area of the map (a `viewport` frame): its batches are cut from the
//! shared one (no serialization, the frames are already text) to the updates in its area, and
//! within every REFRESH it gets the latest telemetry of every character (a slice each tick, so
//! there is no burst), so the rest of the map (and the character list) is never more than that
//! out of date.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::live::batch::{BatchKind, MESSAGE_BOUND};
use crate::live::compact::Encoding;
use crate::live::{About, Batch, Broadcast, FrameKind, Live};
use crate::protocol::FrameType;

/// How often browsers watching an area get every character's latest telemetry.
pub(crate) const REFRESH: Duration = Duration::from_secs(10);

/// One frame as the coalescer keeps it: its JSON text, its compact text when it has one, and
/// what it is about.
#[derive(Debug, Clone)]
struct Item {
    text: Utf8Bytes,
    compact: Option<Utf8Bytes>,
    about: Option<About>,
}

/// The frames of one tick, in broadcast order, and every character's latest telemetry.
#[derive(Debug, Default)]
pub struct Pending {
    frames: Vec<Item>,
    latest: HashMap<Arc<str>, Item>,
}

/// The `character_name` of an `offline` frame.
#[derive(serde::Deserialize)]
struct OfflineName {
    character_name: String,
}

impl Pending {
    /// Takes one broadcast (the caller filters kinds).
    pub fn push(&mut self, broadcast: Broadcast) {
        self.note(broadcast, true);
    }

    /// Keeps track of every character's latest telemetry (and forgets characters that went
    /// offline) whether or not anyone takes batches now; queues the frame for the next batch only
    /// when `queue`.
    pub fn note(&mut self, broadcast: Broadcast, queue: bool) {
        let Broadcast {
            kind,
            text,
            compact,
            about,
        } = broadcast;
        let item = Item {
            text,
            compact,
            about,
        };
        match (kind, &item.about) {
            (FrameKind::Plugin(FrameType::Telemetry), Some(a)) => {
                self.latest.insert(a.character.clone(), item.clone());
            }
            (FrameKind::Offline, _) => {
                if let Ok(gone) = serde_json::from_str::<OfflineName>(item.text.as_str()) {
                    self.latest.remove(gone.character_name.as_str());
                }
            }
            _ => {}
        }
        if queue {
            self.frames.push(item);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Forgets every character's latest telemetry (it is noted again as frames arrive).
    pub fn forget_latest(&mut self) {
        self.latest.clear();
    }

    pub fn clear(&mut self) {
        self.frames.clear();
    }

    /// The batches of the pending frames (already text), each at most [`MESSAGE_BOUND`]
    /// bytes, and empties. When `compact` browsers watch and some frames have a compact form,
    /// the batches come in both encodings, each for its own browsers.
    pub fn take_batches(&mut self, compact: bool) -> Vec<Batch> {
        let batches = encoded(&self.frames, BatchKind::Tick, compact);
        self.clear();
        batches
    }

    /// The latest telemetry of one slice of the characters (slice `n` of `of`, by a hash of the
    /// name), for browsers watching an area: one slice per tick, so every character is
    /// refreshed once per `of` ticks without a burst. Empty when the slice is.
    pub fn refresh(&self, n: u64, of: u64, compact: bool) -> Vec<Batch> {
        let items: Vec<Item> = self
            .latest
            .iter()
            .filter(|(name, _)| slice_of(name, of) == n % of.max(1))
            .map(|(_, item)| item.clone())
            .collect();
        if items.is_empty() {
            return Vec::new();
        }
        encoded(&items, BatchKind::Refresh, compact)
    }
}

/// The batches of `items`: for every browser, or (when `compact` browsers watch and an item has
/// a compact form) JSON ones and compact ones, each for its own browsers.
fn encoded(items: &[Item], kind: BatchKind, compact: bool) -> Vec<Batch> {
    let json: Vec<(Utf8Bytes, Option<About>)> = items
        .iter()
        .map(|i| (i.text.clone(), i.about.clone()))
        .collect();
    if !compact || items.iter().all(|i| i.compact.is_none()) {
        return Batch::split(&json, kind, MESSAGE_BOUND);
    }
    let small: Vec<(Utf8Bytes, Option<About>)> = items
        .iter()
        .map(|i| {
            (
                i.compact.as_ref().unwrap_or(&i.text).clone(),
                i.about.clone(),
            )
        })
        .collect();
    let mut out: Vec<Batch> = Batch::split(&json, kind, MESSAGE_BOUND)
        .into_iter()
        .map(|b| b.only_for(Encoding::Json))
        .collect();
    out.extend(
        Batch::split(&small, kind, MESSAGE_BOUND)
            .into_iter()
            .map(|b| b.only_for(Encoding::Compact)),
    );
    out
}

/// Which of `of` slices a character's refresh falls in (FNV-1a of its name: stable and cheap).
fn slice_of(name: &str, of: u64) -> u64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash % of.max(1)
}

/// Collects broadcasts and publishes a batch every `tick` while any browser takes batches, until
/// `shutdown`.
pub(crate) async fn run(live: Arc<Live>, tick: Duration, shutdown: CancellationToken) {
    let hub_of = live.hub();
    let mut hub = hub_of.subscribe_coalescer();
    let mut pending = Pending::default();
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Every character's latest telemetry once per REFRESH, a slice per tick.
    let slices = u64::try_from(REFRESH.as_millis() / tick.as_millis().max(1))
        .unwrap_or(1)
        .max(1);
    let mut tick_no: u64 = 0;
    let carried = FrameKind::default_mask();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            received = hub.recv() => match received {
                Ok(b) if carried & b.kind.bit() == 0 => {}
                // Offline frames are noted even while nobody watches, so a later refresh never
                // brings back a character that left.
                Ok(b) => pending.note(b, hub_of.batches_watched()),
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "coalescer fell behind; sending a snapshot");
                    // Missed frames may include offline ones: start the refresh list afresh.
                    pending.forget_latest();
                    pending.clear();
                    for part in live.snapshot_frames(Encoding::Json) {
                        hub_of.publish_batch(Arc::new(Batch::snapshot(part).only_for(Encoding::Json)));
                    }
                    if hub_of.compact_watched() {
                        for part in live.snapshot_frames(Encoding::Compact) {
                            hub_of.publish_batch(Arc::new(Batch::snapshot(part).only_for(Encoding::Compact)));
                        }
                    }
                }
                Err(RecvError::Closed) => return,
            },
            _ = ticks.tick() => {
                if !pending.is_empty() {
                    for batch in pending.take_batches(hub_of.compact_watched()) {
                        if !hub_of.publish_batch(Arc::new(batch)) {
                            break; // nobody takes batches now
                        }
                    }
                }
                tick_no = tick_no.wrapping_add(1);
                if hub_of.batches_watched() {
                    for refresh in pending.refresh(tick_no, slices, hub_of.compact_watched()) {
                        hub_of.publish_batch(Arc::new(refresh));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::ViewFilter;
    use crate::live::batch::REFRESH_HEAD;
    use crate::protocol::{FrameType, Viewport};

    fn frame(kind: FrameType, text: &str) -> Broadcast {
        Broadcast {
            kind: FrameKind::Plugin(kind),
            text: Utf8Bytes::from(text.to_owned()),
            compact: None,
            about: None,
        }
    }

    fn at(kind: FrameType, name: &str, ew: f64, ns: f64) -> Broadcast {
        Broadcast {
            kind: FrameKind::Plugin(kind),
            text: Utf8Bytes::from(format!(r#"{{"n":"{name}","ew":{ew}}}"#)),
            compact: None,
            about: Some(About {
                character: Arc::from(name),
                ew,
                ns,
                moves: kind == FrameType::Telemetry,
            }),
        }
    }

    #[test]
    fn a_browser_watching_an_area_gets_its_updates_characters_leaving_it_and_refreshes() {
        let mut pending = Pending::default();
        pending.push(at(FrameType::Telemetry, "In", 1.0, 1.0));
        pending.push(at(FrameType::Telemetry, "Out", 50.0, 1.0));
        pending.push(at(FrameType::Spawn, "In", 60.0, 1.0));
        pending.push(frame(FrameType::Chat, r#"{"c":1}"#));
        let batch = only(pending.take_batches(false));
        let mut whole = ViewFilter::default();
        assert_eq!(batch.for_view(&mut whole).as_ref(), Some(batch.text()));
        let mut view = ViewFilter::default();
        view.set(Some(Viewport {
            ew_min: -10.0,
            ew_max: 10.0,
            ns_min: -10.0,
            ns_max: 10.0,
        }));
        let cut = batch.for_view(&mut view).expect("something in the area");
        assert_eq!(
            cut.as_str(),
            r#"{"type":"batch","frames":[{"n":"In","ew":1},{"c":1}]}"#
        );
        // "In" leaves: its first position outside still goes, later ones do not.
        pending.push(at(FrameType::Telemetry, "In", 30.0, 1.0));
        let left = only(pending.take_batches(false));
        assert!(view.for_view_text(&left).contains(r#""ew":30"#));
        pending.push(at(FrameType::Telemetry, "In", 31.0, 1.0));
        assert_eq!(only(pending.take_batches(false)).for_view(&mut view), None);
        // The refresh brings everyone's latest to area watchers only (one slice here).
        let refresh = only(pending.refresh(0, 1, false));
        assert!(refresh.for_view(&mut whole).is_none());
        let text = refresh.for_view(&mut view).expect("refresh");
        assert!(text.as_str().starts_with(REFRESH_HEAD));
        assert!(text.as_str().contains(r#""ew":31"#) && text.as_str().contains(r#""ew":50"#));
        let parsed: serde_json::Value = serde_json::from_str(text.as_str()).expect("json");
        assert_eq!(parsed["frames"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn a_character_that_went_offline_unwatched_is_not_refreshed() {
        let mut pending = Pending::default();
        pending.push(at(FrameType::Telemetry, "Gone", 1.0, 1.0));
        pending.push(at(FrameType::Telemetry, "Here", 2.0, 1.0));
        let _ = only(pending.take_batches(false));
        let offline = Broadcast {
            kind: FrameKind::Offline,
            text: Utf8Bytes::from_static(r#"{"type":"offline","character_name":"Gone"}"#),
            compact: None,
            about: None,
        };
        pending.note(offline, false);
        assert!(pending.is_empty(), "not queued while nobody watches");
        let refresh = only(pending.refresh(0, 1, false));
        assert!(!refresh.text().as_str().contains("Gone"));
        assert!(refresh.text().as_str().contains("Here"));
    }

    #[test]
    fn refresh_slices_cover_every_character_once() {
        let mut pending = Pending::default();
        for i in 0..100 {
            pending.push(at(
                FrameType::Telemetry,
                &format!("C{i}"),
                f64::from(i),
                0.0,
            ));
        }
        let mut seen = 0;
        for n in 0..40 {
            for batch in pending.refresh(n, 40, false) {
                let parsed: serde_json::Value =
                    serde_json::from_str(batch.text().as_str()).expect("json");
                seen += parsed["frames"].as_array().map_or(0, Vec::len);
            }
        }
        assert_eq!(seen, 100);
    }

    /// The one batch a small tick makes.
    fn only(mut batches: Vec<Batch>) -> Batch {
        assert_eq!(batches.len(), 1, "one batch");
        batches.pop().expect("a batch")
    }

    #[test]
    fn a_burst_larger_than_a_message_is_cut_into_bounded_batches() {
        let mut pending = Pending::default();
        let n = 10_000;
        for i in 0..n {
            pending.push(at(
                FrameType::Telemetry,
                &format!("Burst character number {i:05}"),
                f64::from(i % 200) - 100.0,
                0.0,
            ));
        }
        let batches = pending.take_batches(false);
        assert!(batches.len() > 1, "split");
        let mut names = 0;
        for batch in &batches {
            assert!(
                batch.text().len() <= MESSAGE_BOUND,
                "{}",
                batch.text().len()
            );
            let parsed: serde_json::Value =
                serde_json::from_str(batch.text().as_str()).expect("each batch is whole JSON");
            names += parsed["frames"].as_array().map_or(0, Vec::len);
        }
        assert_eq!(names, n as usize, "every frame once, none lost at the cuts");
        let refreshes = pending.refresh(0, 1, false);
        assert!(refreshes.iter().all(|b| b.text().len() <= MESSAGE_BOUND));
        assert_eq!(
            refreshes
                .iter()
                .map(|b| b.text().as_str().matches("Burst character").count())
                .sum::<usize>(),
            n as usize
        );
    }

    impl ViewFilter {
        fn for_view_text(&mut self, batch: &Batch) -> String {
            batch
                .for_view(self)
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default()
        }
    }

    #[test]
    fn a_batch_carries_every_frame_in_order() {
        let mut pending = Pending::default();
        pending.push(frame(FrameType::Telemetry, r#"{"a":1}"#));
        pending.push(frame(FrameType::Spawn, r#"{"s":1}"#));
        pending.push(frame(FrameType::Telemetry, r#"{"a":2}"#));
        let batch = only(pending.take_batches(false));
        let batch = batch.text();
        assert_eq!(
            batch.as_str(),
            r#"{"type":"batch","frames":[{"a":1},{"s":1},{"a":2}]}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(batch.as_str()).expect("json");
        assert_eq!(parsed["frames"].as_array().map(Vec::len), Some(3));
        assert!(pending.is_empty());
    }

    #[test]
    fn compact_browsers_get_batches_of_their_own_and_others_the_json_ones() {
        let compact_at = |name: &str, ew: f64| {
            let mut b = at(FrameType::Telemetry, name, ew, 0.0);
            b.compact = Some(Utf8Bytes::from(format!(r#"[1,"{name}",{ew}]"#)));
            b
        };
        let mut pending = Pending::default();
        pending.push(compact_at("A", 1.0));
        pending.push(frame(FrameType::Chat, r#"{"c":1}"#));
        pending.push(compact_at("B", 2.0));
        let batches = pending.take_batches(true);
        assert_eq!(batches.len(), 2);
        let for_json: Vec<&Batch> = batches
            .iter()
            .filter(|b| b.is_for(Encoding::Json))
            .collect();
        let for_compact: Vec<&Batch> = batches
            .iter()
            .filter(|b| b.is_for(Encoding::Compact))
            .collect();
        assert_eq!(for_json.len(), 1);
        assert_eq!(for_compact.len(), 1);
        assert_eq!(
            for_json[0].text().as_str(),
            r#"{"type":"batch","frames":[{"n":"A","ew":1},{"c":1},{"n":"B","ew":2}]}"#
        );
        assert_eq!(
            for_compact[0].text().as_str(),
            r#"{"type":"batch","frames":[[1,"A",1],{"c":1},[1,"B",2]]}"#
        );
        // The refresh too; and with nobody compact watching, one batch for all.
        let refresh = pending.refresh(0, 1, true);
        assert!(refresh.iter().any(|b| b.is_for(Encoding::Compact)
            && !b.is_for(Encoding::Json)
            && b.text().as_str().contains(r#"[1,"A",1]"#)));
        pending.push(compact_at("A", 3.0));
        let shared = only(pending.take_batches(false));
        assert!(shared.is_for(Encoding::Json) && shared.is_for(Encoding::Compact));
        assert!(shared.text().as_str().contains(r#"{"n":"A","ew":3}"#));
    }
}
