//! A coalesced batch as it is published once for every coalesced browser, and how one browser
//! watching an area of the map cuts its part out of it (without serializing anything: the frames
//! are already text).

use std::ops::Range;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;

use super::compact::Encoding;
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

/// Largest websocket message the tracker composes for a browser (a snapshot's part, a batch),
/// whatever the number of characters: larger contents are split into several messages. Single
/// frames are smaller still (a relayed frame is at most [`super::hub::MAX_RELAY_BYTES`]).
pub const MESSAGE_BOUND: usize = 256 * 1024;

/// Room left in the first snapshot part for the chat backlog (the newest lines that fit).
const CHAT_BOUND: usize = MESSAGE_BOUND / 2;

/// Longest head a snapshot part can have: `{"type":"snapshot","part":N,"parts":N,"players":[`.
const SNAPSHOT_HEAD_MAX: usize = 80;

/// A snapshot as messages of at most `bound` bytes: `players` (each already JSON) in order,
/// split across parts, and the newest `chat` lines (JSON, oldest first) that fit in half a
/// message, in the first part. One part is exactly the single-message snapshot
/// (`{"type":"snapshot","players":[...],"chat":[...]}`); several are numbered
/// (`"part":1,"parts":3`), for the browser to put together.
pub(crate) fn snapshot_parts(players: &[String], chat: &[String], bound: usize) -> Vec<Utf8Bytes> {
    let chat_bound = bound.min(MESSAGE_BOUND) / 2;
    let chat_bound = chat_bound.min(CHAT_BOUND);
    let mut kept = 0;
    let mut chat_len = 2;
    for line in chat.iter().rev() {
        if chat_len + line.len() + 1 > chat_bound {
            break;
        }
        chat_len += line.len() + 1;
        kept += 1;
    }
    let chat_json = format!("[{}]", chat[chat.len() - kept..].join(","));
    let tail = r#","chat":"#.len() + 2;
    let mut groups: Vec<Range<usize>> = Vec::new();
    let mut start = 0;
    let mut size = SNAPSHOT_HEAD_MAX + chat_json.len() + tail;
    for (i, player) in players.iter().enumerate() {
        if i > start && size + player.len() + 1 > bound {
            groups.push(start..i);
            start = i;
            size = SNAPSHOT_HEAD_MAX + tail;
        }
        size += player.len() + 1;
    }
    groups.push(start..players.len());
    let parts = groups.len();
    groups
        .into_iter()
        .enumerate()
        .map(|(k, range)| {
            let body: usize = players[range.clone()].iter().map(|p| p.len() + 1).sum();
            let mut out = String::with_capacity(SNAPSHOT_HEAD_MAX + body + chat_json.len() + tail);
            if parts == 1 {
                out.push_str(r#"{"type":"snapshot","players":["#);
            } else {
                out.push_str(&format!(
                    r#"{{"type":"snapshot","part":{},"parts":{parts},"players":["#,
                    k + 1
                ));
            }
            out.push_str(&players[range].join(","));
            out.push(']');
            if k == 0 {
                out.push_str(r#","chat":"#);
                out.push_str(&chat_json);
            }
            out.push('}');
            Utf8Bytes::from(out)
        })
        .collect()
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
    /// The browsers it is for: those of one encoding, or every one (`None`).
    encoding: Option<Encoding>,
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
            encoding: None,
        }
    }

    /// This batch for browsers of `encoding` only.
    #[must_use]
    pub fn only_for(mut self, encoding: Encoding) -> Self {
        self.encoding = Some(encoding);
        self
    }

    /// Whether a browser taking `encoding` takes this batch.
    pub fn is_for(&self, encoding: Encoding) -> bool {
        self.encoding.is_none_or(|e| e == encoding)
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
            encoding: None,
        }
    }

    /// [`Batch::of`] cut into batches of at most `bound` bytes each (at least one batch; a frame
    /// larger than `bound` on its own makes a batch of its own).
    pub fn split(
        frames: &[(Utf8Bytes, Option<About>)],
        kind: BatchKind,
        bound: usize,
    ) -> Vec<Self> {
        let frame_room = REFRESH_HEAD.len() + BATCH_TAIL.len();
        let mut out = Vec::new();
        let mut start = 0;
        let mut size = frame_room;
        for (i, (frame, _)) in frames.iter().enumerate() {
            if i > start && size + frame.len() + 1 > bound {
                out.push(Self::of(&frames[start..i], kind));
                start = i;
                size = frame_room;
            }
            size += frame.len() + 1;
        }
        if start < frames.len() || out.is_empty() {
            out.push(Self::of(&frames[start..], kind));
        }
        out
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

#[cfg(test)]
mod snapshot_tests {
    use super::*;

    fn player(i: usize) -> String {
        format!(
            r#"{{"character_name":"Character {i:05}","ew":1.5,"ns":-2.5,"padding":"{}"}}"#,
            "x".repeat(200)
        )
    }

    #[test]
    fn a_small_snapshot_is_one_message_as_before() {
        let parts = snapshot_parts(
            &[player(1)],
            &[r#"{"text":"hi"}"#.to_owned()],
            MESSAGE_BOUND,
        );
        assert_eq!(parts.len(), 1);
        let v: serde_json::Value = serde_json::from_str(parts[0].as_str()).expect("json");
        assert_eq!(v["type"], "snapshot");
        assert!(v.get("part").is_none() && v.get("parts").is_none());
        assert_eq!(v["players"].as_array().map(Vec::len), Some(1));
        assert_eq!(v["chat"][0]["text"], "hi");
        let empty = snapshot_parts(&[], &[], MESSAGE_BOUND);
        assert_eq!(empty.len(), 1);
        assert_eq!(
            empty[0].as_str(),
            r#"{"type":"snapshot","players":[],"chat":[]}"#
        );
    }

    #[test]
    fn ten_thousand_characters_come_in_bounded_numbered_parts() {
        let players: Vec<String> = (0..10_000).map(player).collect();
        // A chat backlog larger than half a message keeps only its newest lines.
        let chat: Vec<String> = (0..100)
            .map(|i| format!(r#"{{"n":{i},"text":"{}"}}"#, "y".repeat(2_000)))
            .collect();
        let parts = snapshot_parts(&players, &chat, MESSAGE_BOUND);
        assert!(parts.len() > 1);
        let mut seen = Vec::new();
        for (k, part) in parts.iter().enumerate() {
            assert!(
                part.len() <= MESSAGE_BOUND,
                "part {k}: {} bytes",
                part.len()
            );
            let v: serde_json::Value = serde_json::from_str(part.as_str()).expect("json");
            assert_eq!(v["part"], k + 1);
            assert_eq!(v["parts"], parts.len());
            assert_eq!(
                v.get("chat").is_some(),
                k == 0,
                "chat in the first part only"
            );
            for p in v["players"].as_array().expect("players") {
                seen.push(p["character_name"].as_str().unwrap_or_default().to_owned());
            }
            if k == 0 {
                let lines = v["chat"].as_array().expect("chat");
                assert!(!lines.is_empty() && lines.len() < 100);
                assert_eq!(
                    lines.last().map(|l| l["n"].clone()),
                    Some(99.into()),
                    "newest kept"
                );
            }
        }
        let expected: Vec<String> = (0..10_000).map(|i| format!("Character {i:05}")).collect();
        assert_eq!(seen, expected, "every character once, in order");
    }
}
