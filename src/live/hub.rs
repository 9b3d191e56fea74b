//! The broadcast hub: every frame for browsers is serialized exactly once here and shared by all
//! of them (a frame per update, or the coalesced stream's batches). When no browser of this
//! instance watches, nothing is serialized at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::extract::ws::Utf8Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use super::batch::{About, Batch};
use super::compact;
use crate::protocol::{
    BrowserOut, CharacterSheet, Chat, FrameType, LivePlayer, OFFLINE, Portal, Rare, RareOut, Spawn,
    Telemetry, Totals, Vitals, to_json,
};

/// Largest relayed frame (see [`FrameType::is_relayed`]) passed on to browsers; larger ones are
/// counted and dropped, so one plugin's inventory cannot flood every browser.
pub(crate) const MAX_RELAY_BYTES: usize = 64 * 1024;

/// The kinds of frames broadcast to browsers, which a browser may filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A frame about a plugin frame of this type.
    Plugin(FrameType),
    /// A character stopped sending.
    Offline,
}

impl FrameKind {
    /// The kind named by a `subscribe` frame's `types` entry.
    pub fn from_name(name: &str) -> Option<Self> {
        if name == OFFLINE {
            return Some(Self::Offline);
        }
        FrameType::from_name(name)
            .filter(|t| *t != FrameType::Register)
            .map(Self::Plugin)
    }

    /// A bit for subscription masks.
    pub fn bit(self) -> u32 {
        match self {
            Self::Plugin(t) => 1 << t.index(),
            Self::Offline => 1 << 31,
        }
    }

    /// What a browser receives until it subscribes: everything except the relayed types, which
    /// can be large and which only a browser that asks for them wants.
    pub fn default_mask() -> u32 {
        FrameType::ALL
            .into_iter()
            .filter(|t| !t.is_relayed())
            .fold(Self::Offline.bit(), |mask, t| mask | Self::Plugin(t).bit())
    }
}

/// One frame for every browser, serialized once.
#[derive(Debug, Clone)]
pub struct Broadcast {
    pub kind: FrameKind,
    pub text: Utf8Bytes,
    /// The frame in the compact encoding (telemetry, while a compact browser watches), else
    /// browsers of either encoding take `text`.
    pub compact: Option<Utf8Bytes>,
    /// Where on the map the frame is about, for browsers watching one area (`None`: everyone).
    pub about: Option<About>,
}

/// The per-frame stream and the coalesced stream's batches.
#[derive(Debug)]
pub struct Hub {
    frames: broadcast::Sender<Broadcast>,
    /// The coalesced stream: one `batch` frame per tick (built by the coalescer task).
    batches: broadcast::Sender<Arc<Batch>>,
    /// The coalescer holds a frame receiver of its own (which alone is no reason to serialize).
    coalescer_attached: AtomicBool,
    /// Browsers that take the compact encoding: while there are any, telemetry is serialized in
    /// both encodings.
    compact_browsers: Arc<AtomicUsize>,
}

/// Held by a browser that takes the compact encoding.
#[derive(Debug)]
pub struct CompactBrowser(Arc<AtomicUsize>);

impl Drop for CompactBrowser {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Hub {
    /// Browsers buffer at most `capacity` frames before they count as lagging.
    pub fn new(capacity: usize) -> Self {
        let (frames, _) = broadcast::channel(capacity.max(16));
        // A batch per tick: a few seconds of ticks before a coalesced browser counts as lagging.
        let (batches, _) = broadcast::channel(64);
        Self {
            frames,
            batches,
            coalescer_attached: AtomicBool::new(false),
            compact_browsers: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A receiver of every future frame.
    pub fn subscribe(&self) -> broadcast::Receiver<Broadcast> {
        self.frames.subscribe()
    }

    /// The coalescer's receiver of every future frame.
    pub fn subscribe_coalescer(&self) -> broadcast::Receiver<Broadcast> {
        self.coalescer_attached.store(true, Ordering::Relaxed);
        self.frames.subscribe()
    }

    /// A receiver of the coalesced stream's batches.
    pub fn subscribe_batches(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.batches.subscribe()
    }

    /// Counts a browser that takes the compact encoding for as long as it holds the result.
    pub fn compact_browser(&self) -> CompactBrowser {
        self.compact_browsers.fetch_add(1, Ordering::Relaxed);
        CompactBrowser(self.compact_browsers.clone())
    }

    /// Whether any browser takes the compact encoding.
    pub fn compact_watched(&self) -> bool {
        self.compact_browsers.load(Ordering::Relaxed) > 0
    }

    /// Sends one batch to every coalesced browser; false when none is listening.
    pub fn publish_batch(&self, batch: Arc<Batch>) -> bool {
        self.batches.send(batch).is_ok()
    }

    /// Whether any browser takes the coalesced stream.
    pub fn batches_watched(&self) -> bool {
        self.batches.receiver_count() > 0
    }

    /// Whether a browser of this instance is listening; when none is, frames are not even
    /// serialized. The coalescer's own subscription counts only while a browser takes its
    /// batches.
    pub fn watched(&self) -> bool {
        let own = usize::from(self.coalescer_attached.load(Ordering::Relaxed));
        self.frames.receiver_count() > own || self.batches_watched()
    }

    fn send(&self, kind: FrameKind, text: impl Into<Utf8Bytes>, about: Option<About>) {
        // No receivers simply means no browser is watching.
        let _ = self.frames.send(Broadcast {
            kind,
            text: text.into(),
            compact: None,
            about,
        });
    }

    /// Sends a frame of `kind` built by `text` (called only when someone watches). A frame type
    /// that needs no particular treatment publishes its wire form this way.
    pub(crate) fn publish(
        &self,
        kind: FrameType,
        about: Option<About>,
        text: impl FnOnce() -> String,
    ) {
        if self.watched() {
            self.send(FrameKind::Plugin(kind), text(), about);
        }
    }

    pub fn telemetry(&self, t: &Telemetry, totals: Totals, last_seen: DateTime<Utc>) {
        if !self.watched() {
            return;
        }
        let player = LivePlayer {
            telemetry: t,
            totals,
            last_seen,
            vitals: None,
            character_stats: None,
        };
        let compact = self
            .compact_watched()
            .then(|| Utf8Bytes::from(compact::row(&player)));
        let _ = self.frames.send(Broadcast {
            kind: FrameKind::Plugin(FrameType::Telemetry),
            text: to_json(&BrowserOut::Telemetry(player)).into(),
            compact,
            about: About::moving(&t.character_name, t.ew, t.ns),
        });
    }

    pub fn rare(&self, r: &Rare, totals: Totals) {
        self.publish(FrameType::Rare, None, || {
            to_json(&BrowserOut::Rare(RareOut { rare: r, totals }))
        });
    }

    pub fn spawn(&self, s: &Spawn) {
        let about = About {
            character: Arc::from(s.character_name.as_str()),
            ew: s.ew,
            ns: s.ns,
            moves: false,
        };
        self.publish(FrameType::Spawn, Some(about), || {
            to_json(&BrowserOut::Spawn(s))
        });
    }

    pub fn portal(&self, portal: &Portal) {
        let about = match (portal.ew, portal.ns) {
            (Some(ew), Some(ns)) => About::moving(&portal.character_name, ew, ns),
            _ => None,
        };
        self.publish(FrameType::Portal, about, || {
            to_json(&BrowserOut::Portal(portal))
        });
    }

    pub fn chat(&self, c: &Chat) {
        self.publish(FrameType::Chat, None, || to_json(&BrowserOut::Chat(c)));
    }

    pub fn vitals(&self, v: &Vitals) {
        self.publish(FrameType::Vitals, None, || to_json(&BrowserOut::Vitals(v)));
    }

    /// A character sheet summary (without attributes and skills).
    pub fn sheet(&self, summary: &CharacterSheet) {
        self.publish(FrameType::CharacterStats, None, || {
            to_json(&BrowserOut::CharacterStats(summary))
        });
    }

    /// Passes a relayed frame on as it came; false when it is too large to relay.
    pub fn relay(&self, kind: FrameType, text: &Utf8Bytes) -> bool {
        if text.len() > MAX_RELAY_BYTES {
            return false;
        }
        if self.watched() {
            self.send(FrameKind::Plugin(kind), text.clone(), None);
        }
        true
    }

    /// A character stopped sending.
    pub fn offline(&self, name: &str, last_seen: DateTime<Utc>) {
        let text = to_json(&BrowserOut::Offline {
            character_name: name,
            last_seen,
        });
        self.send(FrameKind::Offline, text, None);
    }
}
