//! In-memory live state (latest snapshot and running totals per character, which plugin connection
//! speaks for which character) and the broadcast hub that fans frames out to browsers.
//!
//! Every broadcast frame is serialized exactly once here and shared by all browsers. The state lock
//! is a plain mutex held only for map updates, never across an `.await`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc};

use crate::cluster::message::{self as shared, Message};
use crate::protocol::{
    BrowserOut, CharacterSheet, Chat, CommandStatus, FrameType, LivePlayer, OFFLINE, PluginCommand,
    Portal, Rare, RareOut, Spawn, Telemetry, Totals, Vitals, to_json,
};
use crate::store::CharacterState;
use serde_json::value::RawValue;

/// Session counters not touched for this long are forgotten (a plugin session never idles so long).
const SESSION_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// Identifies one plugin websocket connection.
pub type ConnId = u64;

/// Largest relayed frame (see [`FrameType::is_relayed`]) passed on to browsers; larger ones are
/// counted and dropped, so one plugin's inventory cannot flood every browser.
pub const MAX_RELAY_BYTES: usize = 64 * 1024;

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
    /// Where on the map the frame is about, for browsers watching one area (`None`: everyone).
    pub about: Option<About>,
}

/// The place a broadcast is about.
#[derive(Debug, Clone)]
pub struct About {
    pub character: std::sync::Arc<str>,
    pub ew: f64,
    pub ns: f64,
    /// A character's own position (telemetry, teleport): a browser keeps getting it until the
    /// character has left its area. Otherwise a point event (a spawn) seen only inside the area.
    pub moves: bool,
}

impl About {
    fn moving(character: &str, ew: f64, ns: f64) -> Option<Self> {
        Some(Self {
            character: std::sync::Arc::from(character),
            ew,
            ns,
            moves: true,
        })
    }
}

#[derive(Debug)]
struct Character {
    /// Its persisted totals and session baselines were loaded (or it is new): until then, a
    /// session seen for the first time counts no kills, as its baseline may be in the database.
    restored: bool,
    /// When loading them last failed.
    restore_failed: Option<Instant>,
    /// When any frame last named it (eviction clock).
    touched: Instant,
    latest: Option<Telemetry>,
    last_seen: Option<Instant>,
    last_seen_at: DateTime<Utc>,
    online: bool,
    total_kills: i64,
    total_rares: i64,
    session_id: Option<String>,
    vitals: Option<Vitals>,
    /// The latest character sheet, without attributes and skills.
    sheet: Option<CharacterSheet>,
}

impl Character {
    /// Its totals, with the rares of its current session.
    fn totals(&self, session_rares: i64) -> Totals {
        Totals {
            total_kills: self.total_kills,
            total_rares: self.total_rares,
            session_rares,
        }
    }

    fn new() -> Self {
        Self {
            restored: true,
            restore_failed: None,
            touched: Instant::now(),
            latest: None,
            last_seen: None,
            last_seen_at: DateTime::<Utc>::UNIX_EPOCH,
            online: false,
            total_kills: 0,
            total_rares: 0,
            session_id: None,
            vitals: None,
            sheet: None,
        }
    }
}

#[derive(Debug)]
struct SessionCounters {
    /// Most kills the first measured frame may add (see [`MAX_UNMEASURED_KILLS`]).
    unmeasured_cap: i64,
    /// The session's `kills` baseline: the count kill deltas are measured from.
    last_kills: Option<i64>,
    /// The plugin's timestamp of the frame that set the baseline: older frames are late.
    last_timestamp: Option<DateTime<Utc>>,
    /// When that frame arrived (server clock, which a plugin cannot forge).
    last_arrival: Option<Instant>,
    rares: i64,
    touched: Instant,
}

impl SessionCounters {
    fn new() -> Self {
        Self {
            unmeasured_cap: MAX_UNMEASURED_KILLS,
            last_kills: None,
            last_timestamp: None,
            last_arrival: None,
            rares: 0,
            touched: Instant::now(),
        }
    }
}

/// Kills a frame may add beyond the rate below: covers the first frame after a pause.
pub const KILL_BURST: i64 = 100;
/// Kills per second of server time a session may gain, far above what any character manages;
/// a frame claiming more adds only this much.
pub const MAX_KILLS_PER_SEC: i64 = 20;
/// A lower `kills` count is a plugin reset only when it falls this close to zero.
pub const RESET_BELOW: i64 = 10;
/// Most kills a frame may add when no previous arrival of its session is known (the first
/// frame of a session, or the first after a server restart): a session of many hours may be
/// first seen mid-way, but not with more than this.
pub const MAX_UNMEASURED_KILLS: i64 = 1_000_000;

/// How many kills a telemetry frame adds to its character's total, updating the session's
/// baseline; the rule that keeps totals exact and bounded whatever a plugin sends:
/// - the first frame of a session (or after a restart) counts its kills, at most
///   [`MAX_UNMEASURED_KILLS`];
/// - a frame older than the one that set the baseline (late or replayed) adds nothing and
///   leaves the baseline alone;
/// - a higher count adds the difference, at most [`KILL_BURST`] + [`MAX_KILLS_PER_SEC`] per
///   second of server time since the previous frame (so forged counts cannot inflate totals);
/// - a lower count is a reset of the plugin's counter only when it is near zero (then the new
///   count is the baseline); otherwise the frame is out of line and adds nothing.
fn kill_delta(
    session: &mut SessionCounters,
    kills: i64,
    timestamp: DateTime<Utc>,
    now: Instant,
) -> i64 {
    if session.last_timestamp.is_some_and(|last| timestamp < last) {
        return 0;
    }
    let cap = |session: &SessionCounters| match session.last_arrival {
        None => session.unmeasured_cap,
        Some(at) => {
            let secs =
                i64::try_from(now.saturating_duration_since(at).as_secs()).unwrap_or(i64::MAX);
            KILL_BURST.saturating_add(MAX_KILLS_PER_SEC.saturating_mul(secs))
        }
    };
    let delta = match session.last_kills {
        None => kills.clamp(0, cap(session)),
        Some(prev) if kills >= prev => (kills - prev).min(cap(session)),
        Some(_) if kills <= RESET_BELOW => 0,
        Some(_) => return 0,
    };
    session.last_kills = Some(kills);
    session.last_timestamp = Some(timestamp);
    session.last_arrival = Some(now);
    delta
}

/// The plugin connection that owns a character: the one that receives its commands and the
/// only one whose frames about it are accepted.
#[derive(Debug)]
struct Route {
    conn: ConnId,
    commands: mpsc::Sender<Utf8Bytes>,
    /// When the owner last sent a frame about this character.
    last_heard: Instant,
    /// When the connection claimed it (wall clock, to settle a claim race between instances).
    claimed_at_ms: i64,
}

/// A character owned by a plugin connection of another instance of the cluster.
#[derive(Debug)]
struct RemoteRoute {
    instance: std::sync::Arc<str>,
    /// When that instance last shared a frame about the character.
    heard: Instant,
}

/// Who speaks for a character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A plugin connection of this instance.
    Local,
    /// A plugin connection of this other instance.
    Remote(std::sync::Arc<str>),
    Nobody,
}

/// Chat lines kept for the snapshot of a newly opened map.
pub const CHAT_BACKLOG: usize = 100;

#[derive(Debug, Default)]
struct Inner {
    /// The latest chat lines, oldest first, at most [`CHAT_BACKLOG`].
    chat: std::collections::VecDeque<Chat>,
    characters: HashMap<String, Character>,
    sessions: HashMap<(String, String), SessionCounters>,
    routes: HashMap<String, Route>,
    /// Characters owned by other instances (cluster mode only).
    remote: HashMap<String, RemoteRoute>,
}

/// How long after a failed restore (database unreachable) the next frame tries again.
const RESTORE_RETRY: Duration = Duration::from_secs(5);

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

/// What a telemetry frame did to its session's kill count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillCount {
    /// Kills to add to the character's total.
    pub delta: i64,
    /// The session's `kills` baseline after the frame.
    pub baseline: i64,
}

/// A live character copied out of the state, for serialization outside the lock.
#[derive(Debug, Clone)]
pub struct LiveEntry {
    pub telemetry: Telemetry,
    pub totals: Totals,
    pub last_seen: DateTime<Utc>,
    pub vitals: Option<Vitals>,
    pub sheet: Option<CharacterSheet>,
}

impl LiveEntry {
    /// The wire view of this entry.
    pub fn as_player(&self) -> LivePlayer<'_> {
        LivePlayer {
            telemetry: &self.telemetry,
            totals: self.totals,
            last_seen: self.last_seen,
            vitals: self.vitals.as_ref(),
            character_stats: self.sheet.as_ref(),
        }
    }
}

/// Live state plus the broadcast hub.
#[derive(Debug)]
pub struct Live {
    inner: Mutex<Inner>,
    hub: broadcast::Sender<Broadcast>,
    /// The coalesced stream (`crate::coalesce`): one `batch` frame per tick.
    batches: broadcast::Sender<std::sync::Arc<crate::coalesce::Batch>>,
    /// The coalescer holds a hub receiver of its own (which alone is no reason to serialize).
    coalescer_attached: std::sync::atomic::AtomicBool,
    window: Duration,
    /// Woken whenever a connection's routes are forgotten, for claims waiting on an owner.
    released: tokio::sync::Notify,
    /// What this instance shares with the rest of its cluster (`crate::cluster`), when in one.
    outbox: std::sync::OnceLock<mpsc::Sender<Message>>,
    /// Set when the outbox was full and a message was dropped: the cluster then shares this
    /// instance's whole state again.
    outbox_overflowed: std::sync::atomic::AtomicBool,
}

impl Live {
    /// Empty state; browsers buffer at most `capacity` frames before they count as lagging.
    pub fn new(window: Duration, capacity: usize) -> Self {
        let (hub, _) = broadcast::channel(capacity.max(16));
        // A batch per tick: a few seconds of ticks before a coalesced browser counts as lagging.
        let (batches, _) = broadcast::channel(64);
        Self {
            inner: Mutex::new(Inner::default()),
            hub,
            batches,
            coalescer_attached: std::sync::atomic::AtomicBool::new(false),
            window,
            released: tokio::sync::Notify::new(),
            outbox: std::sync::OnceLock::new(),
            outbox_overflowed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Makes this instance part of a cluster: what its plugins send is also shared through
    /// `outbox`. Returns false when it already was.
    pub fn join_cluster(&self, outbox: mpsc::Sender<Message>) -> bool {
        self.outbox.set(outbox).is_ok()
    }

    /// Shares a message with the cluster, if in one. Never waits: should the bus fall behind
    /// so far that the outbox is full, the message is dropped and the whole state is shared
    /// again once there is room (see [`Live::take_overflow`]).
    fn share(&self, message: impl FnOnce() -> Message) {
        if let Some(outbox) = self.outbox.get()
            && outbox.try_send(message()).is_err()
        {
            self.outbox_overflowed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether a message was dropped since the last call.
    pub fn take_overflow(&self) -> bool {
        self.outbox_overflowed
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    fn in_cluster(&self) -> bool {
        self.outbox.get().is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves maps that are still consistent (every update is a
        // single insert or field write), so a poisoned lock is safe to keep using.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A receiver of every future broadcast.
    pub fn subscribe(&self) -> broadcast::Receiver<Broadcast> {
        self.hub.subscribe()
    }

    /// The coalescer's receiver of every future broadcast.
    pub fn subscribe_coalescer(&self) -> broadcast::Receiver<Broadcast> {
        self.coalescer_attached
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.hub.subscribe()
    }

    /// A receiver of the coalesced stream's batches.
    pub fn subscribe_batches(&self) -> broadcast::Receiver<std::sync::Arc<crate::coalesce::Batch>> {
        self.batches.subscribe()
    }

    /// Sends one batch to every coalesced browser; false when none is listening.
    pub fn publish_batch(&self, batch: std::sync::Arc<crate::coalesce::Batch>) -> bool {
        self.batches.send(batch).is_ok()
    }

    /// Whether any browser takes the coalesced stream.
    pub fn batches_watched(&self) -> bool {
        self.batches.receiver_count() > 0
    }

    fn publish(&self, kind: FrameKind, text: impl Into<Utf8Bytes>) {
        self.publish_about(kind, text, None);
    }

    fn publish_about(&self, kind: FrameKind, text: impl Into<Utf8Bytes>, about: Option<About>) {
        // No receivers simply means no browser is watching.
        let _ = self.hub.send(Broadcast {
            kind,
            text: text.into(),
            about,
        });
    }

    fn publish_telemetry(&self, t: &Telemetry, totals: Totals, last_seen: DateTime<Utc>) {
        if self.watched_here() {
            let text = to_json(&BrowserOut::Telemetry(LivePlayer {
                telemetry: t,
                totals,
                last_seen,
                vitals: None,
                character_stats: None,
            }));
            let about = About::moving(&t.character_name, t.ew, t.ns);
            self.publish_about(FrameKind::Plugin(FrameType::Telemetry), text, about);
        }
    }

    fn publish_rare(&self, r: &Rare, totals: Totals) {
        if self.watched_here() {
            let text = to_json(&BrowserOut::Rare(RareOut { rare: r, totals }));
            self.publish(FrameKind::Plugin(FrameType::Rare), text);
        }
    }

    fn publish_spawn(&self, s: &Spawn) {
        if self.watched_here() {
            let about = About {
                character: std::sync::Arc::from(s.character_name.as_str()),
                ew: s.ew,
                ns: s.ns,
                moves: false,
            };
            self.publish_about(
                FrameKind::Plugin(FrameType::Spawn),
                to_json(&BrowserOut::Spawn(s)),
                Some(about),
            );
        }
    }

    fn publish_portal(&self, portal: &Portal) {
        if self.watched_here() {
            let about = match (portal.ew, portal.ns) {
                (Some(ew), Some(ns)) => About::moving(&portal.character_name, ew, ns),
                _ => None,
            };
            self.publish_about(
                FrameKind::Plugin(FrameType::Portal),
                to_json(&BrowserOut::Portal(portal)),
                about,
            );
        }
    }

    /// Whether anyone is listening (a browser, or the other instances of a cluster); when none
    /// is, frames are not even serialized. The coalescer's own subscription counts only while a
    /// browser takes its batches.
    /// Whether a browser of this instance is listening; when none is, frames are not even
    /// serialized. The coalescer's own subscription counts only while a browser takes its
    /// batches.
    fn watched_here(&self) -> bool {
        let own = usize::from(
            self.coalescer_attached
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        self.hub.receiver_count() > own || self.batches_watched()
    }

    /// Whether `name` must be brought back from the database before its frames are applied:
    /// it is not in memory (new, evicted, or the server restarted), or loading it failed a
    /// while ago and is worth another try.
    pub fn needs_restore(&self, name: &str) -> bool {
        match self.lock().characters.get(name) {
            None => true,
            Some(c) => {
                !c.restored
                    && c.restore_failed
                        .is_none_or(|at| at.elapsed() >= RESTORE_RETRY)
            }
        }
    }

    /// Brings a character back into memory with its persisted totals and recent session
    /// baselines (`None`: the database could not be asked; its new sessions then count no kills
    /// until a later attempt succeeds, so nothing is counted twice).
    pub fn restore(&self, name: &str, state: Option<&CharacterState>) {
        let now = Instant::now();
        let mut inner = self.lock();
        let c = inner
            .characters
            .entry(name.to_owned())
            .or_insert_with(|| Character {
                restored: false,
                ..Character::new()
            });
        if c.restored {
            return;
        }
        let Some(state) = state else {
            c.restore_failed = Some(now);
            return;
        };
        c.restored = true;
        c.restore_failed = None;
        // Frames applied while the database could not be asked are either already in these
        // totals or still queued: the larger is the closer.
        c.total_kills = c.total_kills.max(state.total_kills);
        c.total_rares = c.total_rares.max(state.total_rares);
        for s in &state.sessions {
            inner
                .sessions
                .entry((name.to_owned(), s.session_id.clone()))
                .or_insert_with(|| SessionCounters {
                    unmeasured_cap: MAX_UNMEASURED_KILLS,
                    last_kills: Some(s.last_kills),
                    last_timestamp: None,
                    // Unknown: the first frame after a restart may catch up without the rate
                    // cap being measured from the restart.
                    last_arrival: None,
                    rares: s.session_rares,
                    touched: now,
                });
        }
    }

    /// Records a telemetry frame, broadcasts it with updated totals, and returns the kills to add
    /// to the character's total (see [`kill_delta`]) and the session's baseline afterwards (to
    /// persist, so a restart does not count the session twice).
    pub fn apply_telemetry(&self, t: &Telemetry) -> KillCount {
        let now = Instant::now();
        let entry = {
            let mut inner = self.lock();
            let trusted = inner
                .characters
                .get(&t.character_name)
                .is_none_or(|c| c.restored);
            let key = (t.character_name.clone(), t.session_id.clone());
            let session = inner
                .sessions
                .entry(key)
                .or_insert_with(|| SessionCounters {
                    unmeasured_cap: if trusted { MAX_UNMEASURED_KILLS } else { 0 },
                    ..SessionCounters::new()
                });
            let delta = kill_delta(session, t.kills, t.timestamp, now);
            let baseline = session.last_kills.unwrap_or(t.kills);
            session.touched = now;
            let session_rares = session.rares;

            let c = inner
                .characters
                .entry(t.character_name.clone())
                .or_insert_with(Character::new);
            c.total_kills = c.total_kills.saturating_add(delta);
            c.latest = Some(t.clone());
            c.touched = now;
            c.last_seen = Some(now);
            c.last_seen_at = Utc::now();
            c.online = true;
            if c.session_id.as_deref() != Some(t.session_id.as_str()) {
                c.session_id = Some(t.session_id.clone());
            }
            (
                Totals {
                    total_kills: c.total_kills,
                    total_rares: c.total_rares,
                    session_rares,
                },
                c.last_seen_at,
                delta,
                baseline,
            )
        };
        let (totals, last_seen, delta, baseline) = entry;
        self.publish_telemetry(t, totals, last_seen);
        self.share(|| Message::Telemetry {
            telemetry: t.clone(),
            totals,
            last_seen,
        });
        KillCount { delta, baseline }
    }

    /// Records a rare find, broadcasts it, and returns the session it is counted in (the
    /// character's current session, when one is known).
    pub fn apply_rare(&self, r: &Rare) -> Option<String> {
        let (totals, session_id) = {
            let mut inner = self.lock();
            let c = inner
                .characters
                .entry(r.character_name.clone())
                .or_insert_with(Character::new);
            c.total_rares = c.total_rares.saturating_add(1);
            c.touched = Instant::now();
            let total_kills = c.total_kills;
            let total_rares = c.total_rares;
            let session_id = c.session_id.clone();
            let session_rares = match &session_id {
                Some(sid) => {
                    let s = inner
                        .sessions
                        .entry((r.character_name.clone(), sid.clone()))
                        .or_insert_with(SessionCounters::new);
                    s.rares += 1;
                    s.touched = Instant::now();
                    s.rares
                }
                None => 0,
            };
            (
                Totals {
                    total_kills,
                    total_rares,
                    session_rares,
                },
                session_id,
            )
        };
        self.publish_rare(r, totals);
        self.share(|| Message::Rare {
            rare: r.clone(),
            totals,
        });
        session_id
    }

    /// Broadcasts a spawn.
    pub fn apply_spawn(&self, s: &Spawn) {
        self.publish_spawn(s);
        self.share(|| Message::Spawn(s.clone()));
    }

    /// Keeps a chat line for the backlog and broadcasts it.
    pub fn apply_chat(&self, c: &Chat) {
        self.keep_chat(c);
        self.share(|| Message::Chat(c.clone()));
    }

    fn keep_chat(&self, c: &Chat) {
        {
            let mut inner = self.lock();
            if inner.chat.len() >= CHAT_BACKLOG {
                inner.chat.pop_front();
            }
            inner.chat.push_back(c.clone());
        }
        if self.watched_here() {
            self.publish(
                FrameKind::Plugin(FrameType::Chat),
                to_json(&BrowserOut::Chat(c)),
            );
        }
    }

    /// Keeps a character's latest vitals and broadcasts them.
    pub fn apply_vitals(&self, v: &Vitals) {
        self.keep_vitals(v);
        self.share(|| Message::Vitals(v.clone()));
    }

    fn keep_vitals(&self, v: &Vitals) {
        self.character(&v.character_name, |c| c.vitals = Some(v.clone()));
        if self.watched_here() {
            self.publish(
                FrameKind::Plugin(FrameType::Vitals),
                to_json(&BrowserOut::Vitals(v)),
            );
        }
    }

    /// Keeps a character's latest sheet (without attributes and skills, which stay in the
    /// database) and broadcasts that summary.
    pub fn apply_sheet(&self, sheet: &CharacterSheet) {
        let summary = sheet.summary();
        self.share(|| Message::Sheet(summary.clone()));
        self.keep_sheet(summary);
    }

    /// Keeps a sheet summary and broadcasts it.
    fn keep_sheet(&self, summary: CharacterSheet) {
        if self.watched_here() {
            self.publish(
                FrameKind::Plugin(FrameType::CharacterStats),
                to_json(&BrowserOut::CharacterStats(&summary)),
            );
        }
        let name = summary.character_name.clone();
        self.character(&name, |c| c.sheet = Some(summary));
    }

    /// Records a teleport and broadcasts it. A portal frame without a position is placed where
    /// the character's latest telemetry put it. Returns the portal as it is stored, with the
    /// character's current session, or `None` when its position is unknown (nothing to break).
    pub fn apply_portal(&self, p: &Portal) -> Option<(Portal, Option<String>)> {
        let (portal, session_id) = {
            let mut inner = self.lock();
            let c = inner.characters.get_mut(&p.character_name);
            let latest = c.as_ref().and_then(|c| c.latest.as_ref());
            let mut portal = p.clone();
            if portal.ew.is_none() {
                portal.ew = latest.map(|t| t.ew);
                portal.ns = latest.map(|t| t.ns);
                portal.z = latest.map(|t| t.z);
            }
            (portal, c.and_then(|c| c.session_id.clone()))
        };
        self.publish_portal(&portal);
        self.share(|| Message::Portal(portal.clone()));
        portal.ew.is_some().then_some((portal, session_id))
    }

    /// Passes a relayed frame on, as it came, to the browsers subscribed to its type. Returns
    /// false when it was too large to relay.
    pub fn relay(&self, kind: FrameType, text: Utf8Bytes) -> bool {
        if text.len() > MAX_RELAY_BYTES {
            return false;
        }
        if self.in_cluster()
            && let Ok(raw) = RawValue::from_string(text.as_str().to_owned())
        {
            self.share(|| Message::Relay {
                kind: kind.name().to_owned(),
                text: raw,
            });
        }
        if self.watched_here() {
            self.publish(FrameKind::Plugin(kind), text);
        }
        true
    }

    /// Runs `update` on a character's entry, creating it if needed.
    fn character(&self, name: &str, update: impl FnOnce(&mut Character)) {
        let mut inner = self.lock();
        if !inner.characters.contains_key(name) {
            inner.characters.insert(name.to_owned(), Character::new());
        }
        if let Some(c) = inner.characters.get_mut(name) {
            c.touched = Instant::now();
            update(c);
        }
    }

    /// Lets `conn` speak for `name`: a character belongs to the first connection that names it
    /// and receives its commands; another connection may take it over only once the owner has
    /// closed or has sent nothing about it for the live window. The owner may be a connection of
    /// another instance of the cluster. False when `conn` may not.
    pub fn claim(&self, name: &str, conn: ConnId, commands: &mpsc::Sender<Utf8Bytes>) -> bool {
        let now = Instant::now();
        let mut inner = self.lock();
        if let Some(route) = inner.routes.get_mut(name) {
            if route.conn == conn {
                route.last_heard = now;
                return true;
            }
            let gone = route.commands.is_closed();
            if !gone && now.duration_since(route.last_heard) <= self.window {
                return false;
            }
            tracing::info!(
                character = name,
                from = route.conn,
                to = conn,
                "character taken over by a new connection"
            );
        } else if let Some(remote) = inner.remote.get(name) {
            if now.duration_since(remote.heard) <= self.window {
                return false;
            }
            tracing::info!(
                character = name,
                from = %remote.instance,
                to = conn,
                "character taken over from a silent instance"
            );
            inner.remote.remove(name);
        }
        let claimed_at_ms = Utc::now().timestamp_millis();
        inner.routes.insert(
            name.to_owned(),
            Route {
                conn,
                commands: commands.clone(),
                last_heard: now,
                claimed_at_ms,
            },
        );
        drop(inner);
        self.share(|| Message::Claimed {
            name: name.to_owned(),
            at_ms: claimed_at_ms,
        });
        true
    }

    /// Like [`Live::claim`], but waits up to `wait` for the current owner to close: a plugin
    /// that reconnects may have its new connection's first frame read before the old
    /// connection's close.
    pub async fn claim_within(
        &self,
        name: &str,
        conn: ConnId,
        commands: &mpsc::Sender<Utf8Bytes>,
        wait: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the attempt, so a release between the attempt and the wait
            // is not missed.
            let released = self.released.notified();
            if self.claim(name, conn, commands) {
                return true;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                // The owner may have gone silent for the live window meanwhile.
                return self.claim(name, conn, commands);
            }
        }
    }

    /// Forgets every route through a closed connection.
    pub fn unroute(&self, conn: ConnId) {
        let mut names = Vec::new();
        self.lock().routes.retain(|name, r| {
            let keep = r.conn != conn;
            if !keep {
                names.push(name.clone());
            }
            keep
        });
        self.released.notify_waiters();
        if !names.is_empty() {
            self.share(|| Message::Released { names });
        }
    }

    /// Who speaks for `name`.
    pub fn owner_of(&self, name: &str) -> Owner {
        let inner = self.lock();
        if inner.routes.contains_key(name) {
            Owner::Local
        } else if let Some(remote) = inner.remote.get(name) {
            Owner::Remote(remote.instance.clone())
        } else {
            Owner::Nobody
        }
    }

    /// Hands a command to the plugin connection that speaks for `player_name`, without waiting.
    pub fn send_command(&self, player_name: &str, command: &str) -> CommandStatus {
        let commands = match self.lock().routes.get(player_name) {
            Some(route) => route.commands.clone(),
            None => return CommandStatus::NotConnected,
        };
        let text = to_json(&PluginCommand {
            player_name: player_name.to_owned(),
            command: command.to_owned(),
        });
        match commands.try_send(text.into()) {
            Ok(()) => CommandStatus::Delivered,
            Err(mpsc::error::TrySendError::Full(_)) => CommandStatus::Busy,
            Err(mpsc::error::TrySendError::Closed(_)) => CommandStatus::NotConnected,
        }
    }

    /// Every character heard from within the live window, sorted by name.
    pub fn live_entries(&self) -> Vec<LiveEntry> {
        let now = Instant::now();
        let inner = self.lock();
        let mut out: Vec<LiveEntry> = inner
            .characters
            .iter()
            .filter(|(_, c)| c.online && c.last_seen.is_some_and(|seen| now - seen <= self.window))
            .filter_map(|(name, c)| {
                let telemetry = c.latest.clone()?;
                let session_rares = inner
                    .sessions
                    .get(&(name.clone(), telemetry.session_id.clone()))
                    .map_or(0, |s| s.rares);
                Some(LiveEntry {
                    telemetry,
                    totals: c.totals(session_rares),
                    last_seen: c.last_seen_at,
                    vitals: c.vitals.clone(),
                    sheet: c.sheet.clone(),
                })
            })
            .collect();
        drop(inner);
        out.sort_by(|a, b| a.telemetry.character_name.cmp(&b.telemetry.character_name));
        out
    }

    /// The `snapshot` frame for a browser that just connected or fell behind.
    pub fn snapshot_frame(&self) -> Utf8Bytes {
        let entries = self.live_entries();
        let chat: Vec<Chat> = self.lock().chat.iter().cloned().collect();
        let players = entries.iter().map(LiveEntry::as_player).collect();
        to_json(&BrowserOut::Snapshot {
            players,
            chat: chat.iter().collect(),
        })
        .into()
    }

    /// Marks characters silent for longer than the live window as offline and tells browsers;
    /// returns how many went offline. With `evict_after`, characters offline and unnamed by
    /// any frame for that long, and owned by no connection, leave memory with their sessions
    /// (the caller passes it only while nothing is waiting to be written, so what comes back
    /// from the database when they return is complete).
    pub fn reap(&self, evict_after: Option<Duration>) -> usize {
        let now = Instant::now();
        let mut gone = Vec::new();
        {
            let mut inner = self.lock();
            for (name, c) in inner.characters.iter_mut() {
                let stale = c.last_seen.is_none_or(|seen| now - seen > self.window);
                if c.online && stale {
                    c.online = false;
                    gone.push((name.clone(), c.last_seen_at));
                }
            }
            if let Some(after) = evict_after {
                let Inner {
                    characters,
                    routes,
                    remote,
                    ..
                } = &mut *inner;
                characters.retain(|name, c| {
                    c.online
                        || now.duration_since(c.touched) <= after
                        || routes.contains_key(name)
                        || remote.contains_key(name)
                });
            }
            let Inner {
                characters,
                sessions,
                remote,
                ..
            } = &mut *inner;
            remote.retain(|_, r| now.duration_since(r.heard) < SESSION_MEMORY);
            sessions.retain(|(name, _), s| {
                characters.contains_key(name) && now.duration_since(s.touched) < SESSION_MEMORY
            });
            if characters.capacity() > 4 * characters.len() + 64 {
                characters.shrink_to_fit();
            }
            if sessions.capacity() > 4 * sessions.len() + 64 {
                sessions.shrink_to_fit();
            }
        }
        for (name, last_seen) in &gone {
            let text = to_json(&BrowserOut::Offline {
                character_name: name,
                last_seen: *last_seen,
            });
            self.publish(FrameKind::Offline, text);
        }
        gone.len()
    }

    /// What the live state holds, for `/debug`.
    pub fn memory(&self) -> LiveMemory {
        let inner = self.lock();
        LiveMemory {
            characters: inner.characters.len(),
            sessions: inner.sessions.len(),
            owned_characters: inner.routes.len(),
            remote_characters: inner.remote.len(),
        }
    }

    /// Records that `from` owns `name` unless a connection of this instance does; refreshes
    /// the remote route. False when the character is owned here (what `from` says about it is
    /// then ignored: two instances never both count it).
    fn owned_by(inner: &mut Inner, from: &std::sync::Arc<str>, name: &str, now: Instant) -> bool {
        if inner.routes.contains_key(name) {
            return false;
        }
        match inner.remote.get_mut(name) {
            Some(r) if r.instance == *from => r.heard = now,
            _ => {
                inner.remote.insert(
                    name.to_owned(),
                    RemoteRoute {
                        instance: from.clone(),
                        heard: now,
                    },
                );
            }
        }
        true
    }

    /// The entry of a character owned elsewhere. It is not `restored`: should this instance
    /// take the character over, its totals are merged with the database's first.
    fn mirrored<'a>(inner: &'a mut Inner, name: &str) -> &'a mut Character {
        inner
            .characters
            .entry(name.to_owned())
            .or_insert_with(|| Character {
                restored: false,
                ..Character::new()
            })
    }

    /// Applies a telemetry frame another instance accepted for a character it owns: its totals
    /// as that instance counted them (nothing is counted here), and the session's kill baseline
    /// moved by the same rule, so that a takeover continues exactly. False when ignored.
    pub fn mirror_telemetry(
        &self,
        from: &std::sync::Arc<str>,
        t: &Telemetry,
        totals: Totals,
        last_seen: DateTime<Utc>,
    ) -> bool {
        let now = Instant::now();
        {
            let mut inner = self.lock();
            if !Self::owned_by(&mut inner, from, &t.character_name, now) {
                return false;
            }
            let session = inner
                .sessions
                .entry((t.character_name.clone(), t.session_id.clone()))
                .or_insert_with(SessionCounters::new);
            let _ = kill_delta(session, t.kills, t.timestamp, now);
            session.rares = totals.session_rares;
            session.touched = now;
            let c = Self::mirrored(&mut inner, &t.character_name);
            c.total_kills = totals.total_kills;
            c.total_rares = totals.total_rares;
            c.latest = Some(t.clone());
            c.touched = now;
            c.last_seen = Some(now);
            c.last_seen_at = last_seen;
            c.online = true;
            c.session_id = Some(t.session_id.clone());
        }
        self.publish_telemetry(t, totals, last_seen);
        true
    }

    /// Applies a rare another instance counted. False when ignored.
    pub fn mirror_rare(&self, from: &std::sync::Arc<str>, r: &Rare, totals: Totals) -> bool {
        let now = Instant::now();
        {
            let mut inner = self.lock();
            if !Self::owned_by(&mut inner, from, &r.character_name, now) {
                return false;
            }
            let c = Self::mirrored(&mut inner, &r.character_name);
            c.total_kills = totals.total_kills;
            c.total_rares = totals.total_rares;
            c.touched = now;
            if let Some(sid) = c.session_id.clone()
                && let Some(s) = inner.sessions.get_mut(&(r.character_name.clone(), sid))
            {
                s.rares = totals.session_rares;
                s.touched = now;
            }
        }
        self.publish_rare(r, totals);
        true
    }

    /// Passes on a spawn another instance accepted.
    pub fn mirror_spawn(&self, s: &Spawn) {
        self.publish_spawn(s);
    }

    /// Keeps and passes on a chat line another instance accepted.
    pub fn mirror_chat(&self, c: &Chat) {
        self.keep_chat(c);
    }

    /// Keeps and passes on vitals another instance accepted. False when ignored.
    pub fn mirror_vitals(&self, from: &std::sync::Arc<str>, v: &Vitals) -> bool {
        if !Self::owned_by(&mut self.lock(), from, &v.character_name, Instant::now()) {
            return false;
        }
        self.keep_vitals(v);
        true
    }

    /// Keeps and passes on a sheet summary another instance accepted. False when ignored.
    pub fn mirror_sheet(&self, from: &std::sync::Arc<str>, sheet: &CharacterSheet) -> bool {
        if !Self::owned_by(
            &mut self.lock(),
            from,
            &sheet.character_name,
            Instant::now(),
        ) {
            return false;
        }
        self.keep_sheet(sheet.summary());
        true
    }

    /// Passes on a teleport another instance accepted. False when ignored.
    pub fn mirror_portal(&self, from: &std::sync::Arc<str>, p: &Portal) -> bool {
        if !Self::owned_by(&mut self.lock(), from, &p.character_name, Instant::now()) {
            return false;
        }
        self.publish_portal(p);
        true
    }

    /// Passes on a relayed frame another instance accepted.
    pub fn mirror_relay(&self, kind: FrameType, text: &str) {
        if text.len() <= MAX_RELAY_BYTES && self.watched_here() {
            self.publish(FrameKind::Plugin(kind), Utf8Bytes::from(text.to_owned()));
        }
    }

    /// Applies a character as its owner describes it in a state answer. False when ignored.
    pub fn mirror_state(&self, from: &std::sync::Arc<str>, state: &shared::CharacterState) -> bool {
        let now = Instant::now();
        let name = &state.telemetry.character_name;
        {
            let mut inner = self.lock();
            if !Self::owned_by(&mut inner, from, name, now) {
                return false;
            }
            for b in &state.sessions {
                let s = inner
                    .sessions
                    .entry((name.clone(), b.session_id.clone()))
                    .or_insert_with(SessionCounters::new);
                s.last_kills = b.last_kills;
                s.last_timestamp = b.last_timestamp;
                s.last_arrival = Some(now);
                s.rares = b.rares;
                s.touched = now;
            }
            let c = Self::mirrored(&mut inner, name);
            c.total_kills = state.totals.total_kills;
            c.total_rares = state.totals.total_rares;
            c.latest = Some(state.telemetry.clone());
            c.vitals.clone_from(&state.vitals);
            c.sheet.clone_from(&state.sheet);
            c.touched = now;
            c.last_seen = Some(now);
            c.last_seen_at = state.last_seen;
            c.online = true;
            c.session_id = Some(state.telemetry.session_id.clone());
        }
        self.publish_telemetry(&state.telemetry, state.totals, state.last_seen);
        true
    }

    /// Another instance claimed `name` at `at_ms`. Should a connection here have claimed it too
    /// (both plugins connected at once), the later claim yields (ties go to the smaller
    /// instance name), so exactly one instance counts the character.
    pub fn remote_claimed(&self, me: &str, from: &std::sync::Arc<str>, name: &str, at_ms: i64) {
        let now = Instant::now();
        let mut inner = self.lock();
        if let Some(local) = inner.routes.get(name) {
            let ours = (local.claimed_at_ms, me);
            let theirs = (at_ms, &**from);
            if ours < theirs {
                return;
            }
            tracing::warn!(
                character = name,
                instance = %from,
                "another instance claimed this character first; this instance's connection yields"
            );
            inner.routes.remove(name);
        }
        inner.remote.insert(
            name.to_owned(),
            RemoteRoute {
                instance: from.clone(),
                heard: now,
            },
        );
    }

    /// `from` no longer speaks for `names`.
    pub fn remote_released(&self, from: &std::sync::Arc<str>, names: &[String]) {
        {
            let mut inner = self.lock();
            for name in names {
                if inner.remote.get(name).is_some_and(|r| r.instance == *from) {
                    inner.remote.remove(name);
                }
            }
        }
        self.released.notify_waiters();
    }

    /// Forgets every character owned by `instance` (it left or died): plugins may claim them
    /// here. Returns how many there were.
    pub fn forget_instance(&self, instance: &str) -> usize {
        let forgotten = {
            let mut inner = self.lock();
            let before = inner.remote.len();
            inner.remote.retain(|_, r| &*r.instance != instance);
            before - inner.remote.len()
        };
        self.released.notify_waiters();
        forgotten
    }

    /// Every character a connection of this instance owns, as a newcomer to the cluster needs
    /// it.
    pub fn owned_state(&self) -> Vec<shared::CharacterState> {
        let inner = self.lock();
        inner
            .routes
            .iter()
            .filter_map(|(name, route)| {
                let c = inner.characters.get(name)?;
                let telemetry = c.latest.clone()?;
                let sessions: Vec<shared::SessionBaseline> = inner
                    .sessions
                    .iter()
                    .filter(|((n, _), _)| n == name)
                    .map(|((_, sid), s)| shared::SessionBaseline {
                        session_id: sid.clone(),
                        last_kills: s.last_kills,
                        last_timestamp: s.last_timestamp,
                        rares: s.rares,
                    })
                    .collect();
                let session_rares = sessions
                    .iter()
                    .find(|s| s.session_id == telemetry.session_id)
                    .map_or(0, |s| s.rares);
                Some(shared::CharacterState {
                    totals: c.totals(session_rares),
                    last_seen: c.last_seen_at,
                    vitals: c.vitals.clone(),
                    sheet: c.sheet.clone(),
                    telemetry,
                    sessions,
                    claimed_at_ms: route.claimed_at_ms,
                })
            })
            .collect()
    }

    /// How many characters are live right now.
    pub fn live_count(&self) -> usize {
        let now = Instant::now();
        self.lock()
            .characters
            .values()
            .filter(|c| c.online && c.last_seen.is_some_and(|seen| now - seen <= self.window))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{PluginFrame, parse_plugin_frame};

    fn telemetry(name: &str, session: &str, kills: i64) -> Telemetry {
        let text = serde_json::json!({
            "type": "telemetry", "character_name": name, "session_id": session,
            "ew": 1.0, "ns": 2.0, "z": 0.0, "kills": kills, "deaths": 0, "rares_found": 0,
        })
        .to_string();
        match parse_plugin_frame(&text) {
            Ok(PluginFrame::Telemetry(t)) => t,
            other => panic!("bad fixture: {other:?}"),
        }
    }

    #[test]
    fn a_claim_race_between_instances_leaves_exactly_one_owner() {
        let here = Live::new(Duration::from_secs(30), 16);
        let (tx, _rx) = mpsc::channel(4);
        let (outbox, mut shared) = mpsc::channel(16);
        assert!(here.join_cluster(outbox));
        assert!(here.claim("Ann", 1, &tx));
        let Ok(Message::Claimed { at_ms, .. }) = shared.try_recv() else {
            panic!("the claim is shared");
        };
        let other: std::sync::Arc<str> = std::sync::Arc::from("node-b");
        // A later claim elsewhere yields to ours...
        here.remote_claimed("node-a", &other, "Ann", at_ms + 5);
        assert_eq!(here.owner_of("Ann"), Owner::Local);
        // ...an earlier one wins, and frames about Ann from node-b are then mirrored.
        here.remote_claimed("node-a", &other, "Ann", at_ms - 5);
        assert_eq!(here.owner_of("Ann"), Owner::Remote(other.clone()));
        let totals = Totals {
            total_kills: 7,
            total_rares: 0,
            session_rares: 0,
        };
        assert!(here.mirror_telemetry(&other, &telemetry("Ann", "s", 7), totals, Utc::now()));
        assert!(!here.claim("Ann", 1, &tx), "owned elsewhere and heard from");
        // Once node-b is gone, a plugin here may take Ann over.
        assert_eq!(here.forget_instance("node-b"), 1);
        assert!(here.claim("Ann", 1, &tx));
        assert_eq!(here.live_entries()[0].totals.total_kills, 7);
    }

    #[test]
    fn kill_deltas_follow_each_session() {
        let live = Live::new(Duration::from_secs(30), 16);
        let delta = |t: &Telemetry| live.apply_telemetry(t).delta;
        assert_eq!(delta(&telemetry("A", "s1", 3)), 3);
        assert_eq!(delta(&telemetry("A", "s1", 3)), 0);
        assert_eq!(delta(&telemetry("A", "s1", 7)), 4);
        // A counter that falls near zero (plugin reset) adds nothing and becomes the baseline.
        assert_eq!(delta(&telemetry("A", "s1", 2)), 0);
        assert_eq!(delta(&telemetry("A", "s1", 5)), 3);
        // A new session starts from zero.
        assert_eq!(delta(&telemetry("A", "s2", 4)), 4);
        assert_eq!(live.live_entries()[0].totals.total_kills, 14);
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
    }

    #[test]
    fn late_frames_add_nothing_and_keep_the_baseline() {
        let mut s = SessionCounters::new();
        let now = Instant::now();
        assert_eq!(kill_delta(&mut s, 5, at(10), now), 5);
        assert_eq!(kill_delta(&mut s, 10, at(20), now), 5);
        assert_eq!(kill_delta(&mut s, 7, at(15), now), 0, "late");
        assert_eq!(s.last_kills, Some(10));
        assert_eq!(kill_delta(&mut s, 12, at(30), now), 2);
        // A lower count that is not near zero is out of line, even when newer.
        assert_eq!(kill_delta(&mut s, 11, at(40), now), 0);
        assert_eq!(kill_delta(&mut s, 13, at(50), now), 1);
    }

    #[test]
    fn forged_counts_add_at_most_the_rate_cap() {
        let mut s = SessionCounters::new();
        let start = Instant::now();
        let mut total: i64 = 0;
        for i in 0..10_000 {
            let kills = if i % 2 == 0 { 1_000_000_000_000 } else { 0 };
            total = total.saturating_add(kill_delta(&mut s, kills, at(i), start));
        }
        // No server time passed: after the first frame each increase is capped at the burst.
        assert!(
            total <= MAX_UNMEASURED_KILLS + 5_000 * KILL_BURST,
            "{total}"
        );
        let later = start + Duration::from_secs(10);
        let mut s = SessionCounters::new();
        kill_delta(&mut s, 0, at(0), start);
        assert_eq!(
            kill_delta(&mut s, 1_000, at(10), later),
            KILL_BURST + 10 * MAX_KILLS_PER_SEC
        );
    }

    #[test]
    fn seeded_sessions_do_not_double_count_after_restart() {
        let live = Live::new(Duration::from_secs(30), 16);
        let stored = CharacterState {
            total_kills: 100,
            total_rares: 2,
            sessions: vec![crate::store::SessionStats {
                character_name: "A".into(),
                session_id: "s1".into(),
                last_kills: 40,
                session_rares: 1,
            }],
        };
        assert!(live.needs_restore("A"));
        live.restore("A", Some(&stored));
        assert!(!live.needs_restore("A"));
        assert_eq!(live.apply_telemetry(&telemetry("A", "s1", 45)).delta, 5);
        let entry = &live.live_entries()[0];
        assert_eq!(entry.totals.total_kills, 105);
        assert_eq!(entry.totals.total_rares, 2);
        assert_eq!(entry.totals.session_rares, 1);
    }

    #[test]
    fn silent_characters_go_offline_once() {
        let live = Live::new(Duration::from_millis(0), 16);
        let mut rx = live.subscribe();
        live.apply_telemetry(&telemetry("A", "s1", 0));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(live.reap(None), 1);
        assert_eq!(live.reap(None), 0);
        assert_eq!(
            rx.try_recv().map(|b| b.kind).ok(),
            Some(FrameKind::Plugin(FrameType::Telemetry))
        );
        assert_eq!(rx.try_recv().map(|b| b.kind).ok(), Some(FrameKind::Offline));
        assert!(live.live_entries().is_empty());
    }

    #[test]
    fn a_character_restored_without_the_database_counts_no_kills_twice() {
        let live = Live::new(Duration::from_secs(30), 16);
        live.restore("A", None);
        // Its baseline may be in the unreachable database: a resumed session adds nothing.
        assert_eq!(live.apply_telemetry(&telemetry("A", "s1", 500)).delta, 0);
        assert_eq!(live.apply_telemetry(&telemetry("A", "s1", 503)).delta, 3);
        // A later attempt succeeds: totals become the stored ones (plus nothing double).
        let stored = CharacterState {
            total_kills: 1_000,
            total_rares: 0,
            sessions: Vec::new(),
        };
        live.restore("A", Some(&stored));
        assert_eq!(live.live_entries()[0].totals.total_kills, 1_000);
    }

    #[test]
    fn offline_characters_leave_memory_with_their_sessions() {
        let live = Live::new(Duration::from_millis(0), 16);
        let (tx, _rx) = mpsc::channel(4);
        for i in 0..1_000 {
            let name = format!("C{i}");
            live.restore(&name, Some(&CharacterState::default()));
            live.apply_telemetry(&telemetry(&name, "s", 1));
        }
        assert!(live.claim("C0", 1, &tx), "C0 stays owned");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(live.reap(None), 1_000, "all went offline");
        assert_eq!(
            live.memory().characters,
            1_000,
            "no eviction without evict_after"
        );
        live.reap(Some(Duration::ZERO));
        let memory = live.memory();
        assert_eq!((memory.characters, memory.sessions), (1, 1), "{memory:?}");
        live.unroute(1);
        live.reap(Some(Duration::ZERO));
        assert_eq!(live.memory().characters, 0);
        assert!(
            live.needs_restore("C5"),
            "an evicted character is loaded again"
        );
    }

    #[test]
    fn a_character_belongs_to_its_first_connection_until_it_goes() {
        let live = Live::new(Duration::from_millis(200), 16);
        let (tx1, mut rx1) = mpsc::channel(4);
        let (tx2, mut rx2) = mpsc::channel(4);
        assert_eq!(
            live.send_command("A", "/vt stop"),
            CommandStatus::NotConnected
        );
        assert!(live.claim("A", 1, &tx1));
        assert!(!live.claim("A", 2, &tx2), "an impersonator is refused");
        assert_eq!(live.send_command("A", "/vt stop"), CommandStatus::Delivered);
        assert!(rx2.try_recv().is_err());
        let got = rx1.try_recv().expect("delivered to the owner");
        assert!(got.as_str().contains("/vt stop"));
        // The owner closes: another connection takes over at once.
        live.unroute(1);
        assert!(live.claim("A", 2, &tx2));
        assert_eq!(live.send_command("A", "/vt go"), CommandStatus::Delivered);
        assert!(rx2.try_recv().is_ok());
        // An owner silent past the live window can be taken over too.
        let (tx3, _rx3) = mpsc::channel(4);
        assert!(!live.claim("A", 3, &tx3));
        std::thread::sleep(Duration::from_millis(250));
        assert!(live.claim("A", 3, &tx3));
        drop(tx1);
    }
}
