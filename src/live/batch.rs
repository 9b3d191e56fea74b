//! A coalesced batch as it is published once for every coalesced browser, and how one browser
//! watching an area of the map cuts its part out of it (without serializing anything: the frames
//! are already text).

use std::ops::Range;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;

use crate::protocol::Viewport;

/// The place a broadcast is about.
#[derive(Debug, Clone)]
pub struct About {
    pub character: Arc<str>,
    pub ew: f64,
    pub ns: f64,
    /// A character's own position (telemetry, teleport): a browser keeps getting it until the
    /// character has left its area. Otherwise a point event (a spawn) seen only inside the area.
    pub moves: bool,
}

impl About {
    pub(crate) fn moving(character: &str, ew: f64, ns: f64) -> Option<Self> {
        Some(Self {
            character: Arc::from(character),
            ew,
            ns,
            moves: true,
        })
    }
}

pub(crate) const BATCH_HEAD: &str = r#"{"type":"batch","frames":["#;
pub(crate) const REFRESH_HEAD: &str = r#"{"type":"batch","refresh":true,"frames":["#;
const BATCH_TAIL: &str = "]}";

/// What the coalescer publishes: a tick's batch, a resync snapshot, or a refresh.
#[derive(Debug)]
pub struct Batch {
    text: Utf8Bytes,
    /// Each frame's place in `text` and what it is about (empty for a snapshot).
    items: Vec<(Range<usize>, Option<About>)>,
    kind: BatchKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchKind {
    /// The frames broadcast during one tick.
    Tick,
    /// A fresh snapshot for every coalesced browser (the coalescer fell behind).
    Snapshot,
    /// Every character's latest telemetry, for browsers watching an area only.
    Refresh,
}

impl Batch {
    /// A snapshot every coalesced browser takes as it is.
    pub fn snapshot(text: Utf8Bytes) -> Self {
        Self {
            text,
            items: Vec::new(),
            kind: BatchKind::Snapshot,
        }
    }

    pub fn of(frames: &[(Utf8Bytes, Option<About>)], kind: BatchKind) -> Self {
        let len: usize = frames.iter().map(|(f, _)| f.len() + 1).sum();
        let mut out = String::with_capacity(len + 32);
        let mut items = Vec::with_capacity(frames.len());
        out.push_str(if kind == BatchKind::Refresh {
            REFRESH_HEAD
        } else {
            BATCH_HEAD
        });
        for (i, (frame, about)) in frames.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let start = out.len();
            out.push_str(frame.as_str());
            items.push((start..out.len(), about.clone()));
        }
        out.push_str(BATCH_TAIL);
        Self {
            text: Utf8Bytes::from(out),
            items,
            kind,
        }
    }

    /// The whole text (what a browser watching the whole map gets).
    pub fn text(&self) -> &Utf8Bytes {
        &self.text
    }

    /// What a browser with `view` gets of this batch, if anything.
    pub fn for_view(&self, view: &mut ViewFilter) -> Option<Utf8Bytes> {
        match (self.kind, view.area.is_some()) {
            (BatchKind::Snapshot, _) | (BatchKind::Tick, false) => Some(self.text.clone()),
            (BatchKind::Refresh, watching) => watching.then(|| self.text.clone()),
            (BatchKind::Tick, true) => {
                let text = self.text.as_str();
                let mut out = String::new();
                for (range, about) in &self.items {
                    if !view.passes(about.as_ref()) {
                        continue;
                    }
                    out.push_str(if out.is_empty() { BATCH_HEAD } else { "," });
                    out.push_str(text.get(range.clone()).unwrap_or("null"));
                }
                if out.is_empty() {
                    return None;
                }
                out.push_str(BATCH_TAIL);
                Some(Utf8Bytes::from(out))
            }
        }
    }
}

/// What one browser lets through: everything, or the updates about its area, plus the
/// positions of characters leaving it (so they do not linger at its edge).
#[derive(Debug, Default)]
pub struct ViewFilter {
    area: Option<Viewport>,
    /// Characters last seen inside the area.
    inside: std::collections::HashSet<Arc<str>>,
}

impl ViewFilter {
    /// Watches `area` from now on (`None`: the whole map).
    pub fn set(&mut self, area: Option<Viewport>) {
        self.area = area;
        if area.is_none() {
            self.inside = Default::default();
        }
    }

    /// Whether a frame about `about` goes to this browser.
    pub fn passes(&mut self, about: Option<&About>) -> bool {
        let (Some(area), Some(about)) = (&self.area, about) else {
            return true;
        };
        let inside = area.contains(about.ew, about.ns);
        if !about.moves {
            return inside;
        }
        if inside {
            if !self.inside.contains(&about.character) {
                self.inside.insert(about.character.clone());
            }
            true
        } else {
            self.inside.remove(&about.character)
        }
    }
}
