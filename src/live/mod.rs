//! The live state: every character's latest snapshot and running totals, who speaks for each,
//! the recent trails, and the hub that pushes frames to browsers. Split by job:
//!
//! - [`characters`]: counting and totals (the kill rule), snapshots, the chat backlog;
//! - [`claims`]: which plugin connection (here or on another instance) owns each character;
//! - [`hub`] and [`batch`]: frames for browsers, serialized once;
//! - [`recent`]: the last minutes of every character's positions, for `/trails`;
//! - [`apply`]: the one place each frame type's rules are written, for frames of this
//!   instance's plugins and frames another instance shares alike;
//! - [`mirror`]: the rest of what the cluster shares (claims, releases, state answers).
//!
//! One plain mutex guards the roster and the claims together (a peer's frame is checked against
//! the claims and applied to the roster atomically); it is never held across an `.await`, and
//! nothing is serialized or published while it is held.

mod apply;
pub(crate) mod batch;
mod characters;
pub(crate) use characters::Previous;
mod claims;
pub(crate) mod clocks;
pub(crate) mod compact;
pub(crate) mod guard;
pub(crate) mod hub;
mod mirror;
pub(crate) mod recent;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{Notify, broadcast};

use crate::cluster::Cluster;
use crate::protocol::to_json;
use crate::store::CharacterState;

pub use apply::{Applied, Origin};
pub(crate) use batch::About;
pub(crate) use batch::{Batch, ViewFilter};
pub use characters::CHAT_BACKLOG;
use characters::Roster;
pub(crate) use characters::{KillCount, LiveEntry};
use claims::Claims;
pub(crate) use claims::{ClaimKind, ConnId};
pub(crate) use guard::LiveLimits;
pub(crate) use hub::{Broadcast, FrameKind, Hub};
pub(crate) use mirror::Instance;
use recent::RecentTrails;

/// Sizes of the live state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LiveMemory {
    /// Characters in memory (online, recently offline, or not yet evicted).
    pub characters: usize,
    /// Per-session kill baselines in memory.
    pub sessions: usize,
    /// Characters owned by a plugin connection of this instance.
    pub owned_characters: usize,
    /// Characters owned by a plugin connection of another instance (cluster mode).
    pub remote_characters: usize,
}

/// What the lock guards.
#[derive(Debug, Default)]
struct State {
    roster: Roster,
    claims: Claims,
}

/// Live state plus the broadcast hub.
#[derive(Debug)]
pub struct Live {
    state: Mutex<State>,
    hub: Hub,
    recent: Arc<RecentTrails>,
    /// The other instances, which what this instance's plugins send is shared with.
    cluster: Cluster,
    /// A character counts as live this long after its last frame.
    window: Duration,
    /// How much one character may do.
    limits: LiveLimits,
    /// Woken whenever a connection's routes are forgotten, for claims waiting on an owner.
    released: Notify,
    /// Characters whose plugin clock is off.
    pub(crate) clocks: clocks::Clocks,
}

impl Live {
    /// Empty state. Browsers buffer at most `capacity` frames before they count as lagging;
    /// accepted positions are kept in `recent`; what plugins send is shared with `cluster`;
    /// each character may do what `limits` allow.
    pub fn new(
        window: Duration,
        capacity: usize,
        recent: Arc<RecentTrails>,
        cluster: Cluster,
        limits: LiveLimits,
    ) -> Self {
        Self {
            state: Mutex::new(State::default()),
            hub: Hub::new(capacity),
            recent,
            cluster,
            window,
            limits,
            released: Notify::new(),
            clocks: clocks::Clocks::default(),
        }
    }

    /// A single instance keeping no recent trails (for tests and benchmarks).
    pub fn standalone(window: Duration, capacity: usize) -> Self {
        Self::new(
            window,
            capacity,
            Arc::new(RecentTrails::new(0)),
            Cluster::single(),
            LiveLimits::default(),
        )
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves maps that are still consistent (every update is a
        // single insert or field write), so a poisoned lock is safe to keep using.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The hub (subscriptions, the coalesced stream).
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// A receiver of every future broadcast.
    pub fn subscribe(&self) -> broadcast::Receiver<Broadcast> {
        self.hub.subscribe()
    }

    /// The recent positions of every character.
    pub fn recent(&self) -> &Arc<RecentTrails> {
        &self.recent
    }

    /// What `name`'s latest frames said (session, deaths, level), if it is in memory.
    pub(crate) fn previous(&self, name: &str) -> Option<characters::Previous> {
        self.lock().roster.previous(name)
    }

    /// Whether `name` must be brought back from the database before its frames are applied.
    pub fn needs_restore(&self, name: &str) -> bool {
        self.lock().roster.needs_restore(name)
    }

    /// Brings a character back into memory with its persisted totals and recent session
    /// baselines (`None`: the database could not be asked; its new sessions then count no kills
    /// until a later attempt succeeds, so nothing is counted twice).
    pub fn restore(&self, name: &str, state: Option<&CharacterState>) {
        self.lock().roster.restore(name, state);
    }

    /// Every character heard from within the live window, sorted by name.
    pub fn live_entries(&self) -> Vec<LiveEntry> {
        let mut out = self.lock().roster.live_entries(self.window);
        out.sort_by(|a, b| a.telemetry.character_name.cmp(&b.telemetry.character_name));
        out
    }

    /// How many characters are live right now.
    pub fn live_count(&self) -> usize {
        self.lock().roster.live_count(self.window)
    }

    /// The `snapshot` for a browser that just connected or fell behind: one message, or
    /// several numbered parts when it would be larger than [`batch::MESSAGE_BOUND`]; players in
    /// `encoding`.
    pub fn snapshot_frames(&self, encoding: compact::Encoding) -> Vec<Utf8Bytes> {
        let entries = self.live_entries();
        let chat = self.lock().roster.chat();
        let players: Vec<String> = match encoding {
            compact::Encoding::Json => entries.iter().map(|e| to_json(&e.as_player())).collect(),
            compact::Encoding::Compact => entries
                .iter()
                .map(|e| compact::row(&e.as_player()))
                .collect(),
        };
        let chat: Vec<String> = chat.iter().map(to_json).collect();
        batch::snapshot_parts(&players, &chat, batch::MESSAGE_BOUND)
    }

    /// Marks characters offline at once when the plugin that spoke for them closed (not only
    /// when their live window passes) and tells browsers; returns how many went offline.
    pub fn disconnected(&self, names: &[String]) -> usize {
        let gone = {
            let mut guard = self.lock();
            let State { roster, claims } = &mut *guard;
            // One that a new connection (here or on another instance) already took over is not
            // offline: checked under the same lock its claim is made.
            let free: Vec<String> = names
                .iter()
                .filter(|name| !claims.is_owned(name))
                .cloned()
                .collect();
            roster.disconnected(&free)
        };
        for (name, last_seen) in &gone {
            self.hub.offline(name, *last_seen);
        }
        gone.len()
    }

    /// Marks characters silent for longer than the live window as offline and tells browsers;
    /// returns how many went offline. With `evict_after`, characters offline and unnamed by
    /// any frame for that long, and owned by no connection, leave memory with their sessions
    /// (the caller passes it only while nothing is waiting to be written, so what comes back
    /// from the database when they return is complete).
    pub fn reap(&self, evict_after: Option<Duration>) -> usize {
        let gone = {
            let mut guard = self.lock();
            let State { roster, claims } = &mut *guard;
            claims.forget_stale();
            roster.reap(self.window, evict_after, |name| claims.is_owned(name))
        };
        for (name, last_seen) in &gone {
            self.hub.offline(name, *last_seen);
        }
        gone.len()
    }

    /// What the live state holds, for `/debug`.
    pub fn memory(&self) -> LiveMemory {
        let state = self.lock();
        let (characters, sessions) = state.roster.sizes();
        let (owned_characters, remote_characters) = state.claims.sizes();
        LiveMemory {
            characters,
            sessions,
            owned_characters,
            remote_characters,
        }
    }
}

#[cfg(test)]
mod tests;
