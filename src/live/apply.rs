//! [`Live::apply`]: what each plugin frame does to the live state, written once for frames of
//! this instance's plugins and for frames another instance of the cluster shares.
//!
//! For its own plugins the instance counts (kills, rares), keeps, publishes to its browsers,
//! shares the frame with the other instances and hands back the event to store. For a peer's
//! frame it takes the peer's counts instead of counting, keeps and publishes alike, and stores
//! nothing (the owner does).

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use serde_json::value::RawValue;

use super::{KillCount, Live};
use crate::cluster::message::{Counted, Message};
use crate::protocol::{FrameType, PluginFrame, wire_text};
use crate::store::Event;

/// Where a frame comes from.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// A plugin connection of this instance, which has claimed the character.
    Plugin,
    /// Another instance, which owns the character and counted the frame.
    Peer {
        from: &'a Arc<str>,
        counted: &'a Counted,
    },
}

/// What applying a frame did.
// Short-lived, returned by value straight into the writer's queue: boxing the event would add
// an allocation per frame.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Applied {
    /// Applied; the event to store, for frames of this instance's plugins that are stored.
    Taken(Option<Event>),
    /// A relayed frame too large to pass on (see [`super::MAX_RELAY_BYTES`]).
    TooLarge,
    /// Refused by the character's allowances (see `super::guard`): why.
    Refused(String),
    /// A peer's frame about a character a plugin of this instance owns: ignored, so two
    /// instances never both count it.
    NotTheirs,
}

impl Live {
    /// Applies one validated frame. `text` is the frame as it came (relayed frames are passed on
    /// as they are).
    pub fn apply(&self, frame: PluginFrame, text: &Utf8Bytes, origin: Origin<'_>) -> Applied {
        if let (Origin::Peer { from, .. }, Some(name)) = (origin, frame.character_name())
            && !self.lock().claims.owned_by(from, name)
        {
            return Applied::NotTheirs;
        }
        let counted = match origin {
            Origin::Plugin => None,
            Origin::Peer { counted, .. } => Some(*counted),
        };
        let event = match frame {
            PluginFrame::Telemetry(row) => {
                let (totals, last_seen, kills) = match counted {
                    None => match self.lock().roster.count_telemetry(&row, &self.limits) {
                        Ok(counted) => counted,
                        Err(why) => return Applied::Refused(why),
                    },
                    Some(c) => {
                        let totals = c.totals.unwrap_or_default();
                        let last_seen = c.last_seen.unwrap_or(row.timestamp);
                        self.lock()
                            .roster
                            .mirror_telemetry(&row, totals, last_seen, &self.limits);
                        (totals, last_seen, KillCount::default())
                    }
                };
                self.recent.record(&row);
                self.hub.telemetry(&row, totals, last_seen);
                self.share(counted, || {
                    let counted = Counted {
                        totals: Some(totals),
                        last_seen: Some(last_seen),
                    };
                    (wire_text(FrameType::Telemetry, &row), counted)
                });
                Event::Telemetry {
                    row,
                    kills_delta: kills.delta,
                    kills_baseline: kills.baseline,
                }
            }
            PluginFrame::Rare(rare) => {
                let (totals, session_id) = match counted {
                    None => match self.lock().roster.count_rare(&rare, &self.limits) {
                        Ok(counted) => counted,
                        Err(why) => return Applied::Refused(why),
                    },
                    Some(c) => {
                        let totals = c.totals.unwrap_or_default();
                        self.lock().roster.mirror_rare(&rare, totals);
                        (totals, None)
                    }
                };
                self.hub.rare(&rare, totals);
                self.share(counted, || {
                    let counted = Counted {
                        totals: Some(totals),
                        last_seen: None,
                    };
                    (wire_text(FrameType::Rare, &rare), counted)
                });
                Event::Rare { rare, session_id }
            }
            PluginFrame::Spawn(spawn) => {
                self.hub.spawn(&spawn);
                self.share(counted, || uncounted(FrameType::Spawn, &spawn));
                Event::Spawn(spawn)
            }
            PluginFrame::Chat(chat) => {
                self.lock().roster.keep_chat(&chat);
                self.hub.chat(&chat);
                self.share(counted, || uncounted(FrameType::Chat, &chat));
                return Applied::Taken(None);
            }
            PluginFrame::Vitals(vitals) => {
                self.lock().roster.keep_vitals(&vitals);
                self.hub.vitals(&vitals);
                self.share(counted, || uncounted(FrameType::Vitals, &vitals));
                return Applied::Taken(None);
            }
            PluginFrame::CharacterStats(sheet) => {
                // Memory, browsers and the other instances get the sheet without attributes
                // and skills; the database gets all of it.
                let summary = sheet.summary();
                self.lock().roster.keep_sheet(&summary);
                self.hub.sheet(&summary);
                self.share(counted, || uncounted(FrameType::CharacterStats, &summary));
                Event::Sheet(sheet)
            }
            PluginFrame::Portal(portal) => {
                let (portal, session_id) = self.lock().roster.place_portal(&portal);
                if portal.ew.is_some() {
                    self.recent
                        .teleported(&portal.character_name, portal.timestamp);
                }
                self.hub.portal(&portal);
                self.share(counted, || uncounted(FrameType::Portal, &portal));
                // Without a position there is no trail to break and nothing to store.
                if portal.ew.is_none() {
                    return Applied::Taken(None);
                }
                Event::Portal { portal, session_id }
            }
            PluginFrame::Relayed { kind, .. } => {
                if !self.hub.relay(kind, text) {
                    return Applied::TooLarge;
                }
                self.share(counted, || (text.as_str().to_owned(), Counted::default()));
                return Applied::Taken(None);
            }
            PluginFrame::Register(_) | PluginFrame::Unhandled { .. } => {
                return Applied::Taken(None);
            }
        };
        Applied::Taken(match origin {
            Origin::Plugin => Some(event),
            Origin::Peer { .. } => None,
        })
    }

    /// Shares a frame of this instance's plugins (`peer` is `None`) with the other instances:
    /// `frame` gives its wire text and what was counted (built only when there is a cluster).
    fn share(&self, peer: Option<Counted>, frame: impl FnOnce() -> (String, Counted)) {
        if peer.is_some() || !self.cluster.enabled() {
            return;
        }
        let (text, counted) = frame();
        if let Ok(frame) = RawValue::from_string(text) {
            self.cluster.share(|| Message::Frame { frame, counted });
        }
    }
}

/// A frame's wire text that counted nothing.
fn uncounted<T: serde::Serialize>(kind: FrameType, body: &T) -> (String, Counted) {
    (wire_text(kind, body), Counted::default())
}
