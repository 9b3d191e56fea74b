//! Per-character counting and totals: each character's latest snapshot, its kill and rare totals,
//! the kill baseline of each of its sessions (the rule that keeps totals exact whatever a plugin
//! sends), and the chat backlog a new map starts with.
//!
//! [`Roster`] is plain data behind the live state's lock; it never publishes or waits.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::guard::{Guard, LiveLimits, MAX_KILLS_PER_SEC, MAX_UNMEASURED_KILLS, SESSIONS_KEPT};
use crate::cluster::message::{CharacterState as SharedState, SessionBaseline};
use crate::protocol::{
    CharacterSheet, Chat, LiveCharacter, Portal, Rare, Telemetry, Totals, Vitals,
};
use crate::store::CharacterState;

/// Session counters not touched for this long are forgotten (a plugin session never idles so long).
const SESSION_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// How long after a failed restore (database unreachable) the next frame tries again.
const RESTORE_RETRY: Duration = Duration::from_secs(5);

/// Chat lines kept for the snapshot of a newly opened map.
pub const CHAT_BACKLOG: usize = 100;

/// Kills a frame may add beyond the rate below: covers the first frame after a pause.
pub(super) const KILL_BURST: i64 = 100;
/// A lower `kills` count is a plugin reset only when it falls this close to zero.
pub(super) const RESET_BELOW: i64 = 10;

/// What a character's latest frames said, to tell what a new one changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Previous {
    /// The session and its deaths counter of the latest telemetry.
    pub(crate) session_deaths: Option<(String, i64)>,
    /// The level of the latest character sheet.
    pub level: Option<i64>,
    /// How long since its last frame (it was heard from in this run).
    pub silent_for: Option<Duration>,
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
    /// What it may still do (kills, sessions, rares).
    guard: Guard,
}

impl Character {
    fn new() -> Self {
        Self {
            guard: Guard::new(),
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

    /// A character known here only through another instance (or not yet loaded): should this
    /// instance come to own it, its totals are merged with the database's first.
    fn unrestored() -> Self {
        Self {
            restored: false,
            ..Self::new()
        }
    }

    /// Its totals, with the rares of its current session.
    fn totals(&self, session_rares: i64) -> Totals {
        Totals {
            total_kills: self.total_kills,
            total_rares: self.total_rares,
            session_rares,
        }
    }

    fn is_live(&self, now: Instant, window: Duration) -> bool {
        self.online && self.last_seen.is_some_and(|seen| now - seen <= window)
    }

    /// Marks it heard from now, with `t` as its latest snapshot.
    fn seen(&mut self, t: &Telemetry, now: Instant, at: DateTime<Utc>) {
        self.latest = Some(t.clone());
        self.touched = now;
        self.last_seen = Some(now);
        self.last_seen_at = at;
        self.online = true;
        if self.session_id.as_deref() != Some(t.session_id.as_str()) {
            self.session_id = Some(t.session_id.clone());
        }
    }
}

#[derive(Debug)]
struct SessionCounters {
    /// Most kills the first measured frame may add (see [`MAX_UNMEASURED_KILLS`]).
    unmeasured_cap: i64,
    /// The session's `kills` baseline: the count kill deltas are measured from.
    last_kills: Option<i64>,
    /// The (placed) timestamp of the frame that set the baseline: a frame older by more than
    /// the slack is a replay.
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

/// How many kills a telemetry frame adds to its character's total, updating the session's
/// baseline; the rule that keeps totals exact and bounded whatever a plugin sends:
/// - the first frame of a session (or after a restart) counts its kills, at most
///   [`MAX_UNMEASURED_KILLS`];
/// - frames count in the order they arrive; only one whose (placed) timestamp is older than
///   the baseline's by more than `slack` (a replay; never a plugin clock corrected within the
///   tolerance, since larger offsets are placed on the tracker's clock) adds nothing and leaves
///   the baseline alone;
/// - a higher count adds the difference, at most [`KILL_BURST`] + [`MAX_KILLS_PER_SEC`] per
///   second of server time since the previous frame (so forged counts cannot inflate totals);
/// - a lower count is a reset of the plugin's counter only when it is near zero (then the new
///   count is the baseline); otherwise the frame is out of line and adds nothing.
fn kill_delta(
    session: &mut SessionCounters,
    kills: i64,
    timestamp: DateTime<Utc>,
    slack: chrono::Duration,
    now: Instant,
) -> i64 {
    if session
        .last_timestamp
        .is_some_and(|last| timestamp < last - slack)
    {
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

/// What a telemetry frame did to its session's kill count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KillCount {
    /// Kills to add to the character's total.
    pub delta: i64,
    /// The session's `kills` baseline after the frame.
    pub baseline: i64,
}

/// A live character copied out of the state, for serialization outside the lock.
pub(crate) type LiveEntry = LiveCharacter;

/// Every character in memory, its sessions, and the chat backlog.
#[derive(Debug, Default)]
pub(super) struct Roster {
    /// The latest chat lines, oldest first, at most [`CHAT_BACKLOG`].
    chat: VecDeque<Chat>,
    characters: HashMap<String, Character>,
    sessions: HashMap<(String, String), SessionCounters>,
}

impl Roster {
    /// Remembers that `character` had session `session` (tests of the claims).
    #[cfg(test)]
    pub(super) fn note_session(&mut self, character: &str, session: &str) {
        self.sessions.insert(
            (character.to_owned(), session.to_owned()),
            SessionCounters::new(),
        );
    }

    /// Whether `character` has had session `session` (recently enough to remember it).
    pub(super) fn knows_session(&self, character: &str, session: &str) -> bool {
        self.sessions
            .contains_key(&(character.to_owned(), session.to_owned()))
    }

    fn character(&mut self, name: &str) -> &mut Character {
        self.characters
            .entry(name.to_owned())
            .or_insert_with(Character::new)
    }

    fn mirrored(&mut self, name: &str) -> &mut Character {
        self.characters
            .entry(name.to_owned())
            .or_insert_with(Character::unrestored)
    }

    /// Whether `name` must be brought back from the database before its frames are applied:
    /// it is not in memory (new, evicted, or the server restarted), or loading it failed a
    /// while ago and is worth another try.
    /// What the latest frames said of `name`: its session and deaths, and its level.
    pub(super) fn previous(&self, name: &str) -> Option<Previous> {
        let c = self.characters.get(name)?;
        Some(Previous {
            session_deaths: c.latest.as_ref().map(|t| (t.session_id.clone(), t.deaths)),
            level: c.sheet.as_ref().and_then(|s| s.level),
            silent_for: c.last_seen.map(|seen| seen.elapsed()),
        })
    }

    pub(super) fn needs_restore(&self, name: &str) -> bool {
        match self.characters.get(name) {
            None => true,
            Some(c) => {
                !c.restored
                    && c.restore_failed
                        .is_none_or(|at| at.elapsed() >= RESTORE_RETRY)
            }
        }
    }

    /// Brings a character back with its persisted totals and recent session baselines (`None`:
    /// the database could not be asked; its new sessions then count no kills until a later
    /// attempt succeeds, so nothing is counted twice).
    pub(super) fn restore(&mut self, name: &str, state: Option<&CharacterState>) {
        let now = Instant::now();
        let c = self
            .characters
            .entry(name.to_owned())
            .or_insert_with(Character::unrestored);
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
            self.sessions
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

    /// Counts a telemetry frame of a character owned here: its kills (see [`kill_delta`], then
    /// what the character can physically gain), its snapshot. Returns the totals after it, when
    /// it was seen, and the session's count; or why the frame is refused (a character that starts
    /// sessions faster than any player does).
    pub(super) fn count_telemetry(
        &mut self,
        t: &Telemetry,
        limits: &LiveLimits,
    ) -> Result<(Totals, DateTime<Utc>, KillCount), String> {
        let now = Instant::now();
        let key = (t.character_name.clone(), t.session_id.clone());
        let c = self
            .characters
            .entry(t.character_name.clone())
            .or_insert_with(Character::new);
        let trusted = c.restored;
        if !self.sessions.contains_key(&key) {
            if !c.guard.start_session(limits, now) {
                return Err(format!(
                    "`{}` started more than {} sessions in the last hour; this one is refused",
                    t.character_name, limits.sessions_per_hour
                ));
            }
            c.guard.sessions.push_back(t.session_id.clone());
            while c.guard.sessions.len() > SESSIONS_KEPT {
                if let Some(old) = c.guard.sessions.pop_front() {
                    self.sessions.remove(&(t.character_name.clone(), old));
                }
            }
        }
        let session = self.sessions.entry(key).or_insert_with(|| SessionCounters {
            unmeasured_cap: if trusted { MAX_UNMEASURED_KILLS } else { 0 },
            ..SessionCounters::new()
        });
        let wanted = kill_delta(session, t.kills, t.timestamp, limits.late_slack, now);
        let baseline = session.last_kills.unwrap_or(t.kills);
        session.touched = now;
        let session_rares = session.rares;
        let c = self.character(&t.character_name);
        let delta = c.guard.take_kills(wanted, now);
        c.total_kills = c.total_kills.saturating_add(delta);
        c.seen(t, now, Utc::now());
        Ok((
            c.totals(session_rares),
            c.last_seen_at,
            KillCount { delta, baseline },
        ))
    }

    /// Applies a telemetry frame another instance counted for a character it owns: its totals
    /// as counted there, and the session's kill baseline moved by the same rule, so that a
    /// takeover continues exactly.
    pub(super) fn mirror_telemetry(
        &mut self,
        t: &Telemetry,
        totals: Totals,
        last_seen: DateTime<Utc>,
        limits: &LiveLimits,
    ) {
        let now = Instant::now();
        let session = self
            .sessions
            .entry((t.character_name.clone(), t.session_id.clone()))
            .or_insert_with(SessionCounters::new);
        let _ = kill_delta(session, t.kills, t.timestamp, limits.late_slack, now);
        session.rares = totals.session_rares;
        session.touched = now;
        let c = self.mirrored(&t.character_name);
        c.total_kills = totals.total_kills;
        c.total_rares = totals.total_rares;
        c.seen(t, now, last_seen);
    }

    /// Counts a rare find; returns the totals after it and the session it is counted in (the
    /// character's current session, when one is known), or why it is refused (more rares than
    /// a character finds in a minute).
    pub(super) fn count_rare(
        &mut self,
        r: &Rare,
        limits: &LiveLimits,
    ) -> Result<(Totals, Option<String>), String> {
        let now = Instant::now();
        let c = self.character(&r.character_name);
        if !c.guard.report_rare(limits, now) {
            return Err(format!(
                "`{}` reported more than {} rares in a minute; this one is not counted",
                r.character_name, limits.rares_per_minute
            ));
        }
        c.total_rares = c.total_rares.saturating_add(1);
        c.touched = now;
        let (total_kills, total_rares) = (c.total_kills, c.total_rares);
        let session_id = c.session_id.clone();
        let session_rares = match &session_id {
            Some(sid) => {
                let s = self
                    .sessions
                    .entry((r.character_name.clone(), sid.clone()))
                    .or_insert_with(SessionCounters::new);
                s.rares += 1;
                s.touched = now;
                s.rares
            }
            None => 0,
        };
        let totals = Totals {
            total_kills,
            total_rares,
            session_rares,
        };
        Ok((totals, session_id))
    }

    /// Applies a rare another instance counted.
    pub(super) fn mirror_rare(&mut self, r: &Rare, totals: Totals) {
        let now = Instant::now();
        let c = self.mirrored(&r.character_name);
        c.total_kills = totals.total_kills;
        c.total_rares = totals.total_rares;
        c.touched = now;
        if let Some(sid) = c.session_id.clone()
            && let Some(s) = self.sessions.get_mut(&(r.character_name.clone(), sid))
        {
            s.rares = totals.session_rares;
            s.touched = now;
        }
    }

    /// Keeps a chat line for the backlog.
    pub(super) fn keep_chat(&mut self, c: &Chat) {
        if self.chat.len() >= CHAT_BACKLOG {
            self.chat.pop_front();
        }
        self.chat.push_back(c.clone());
    }

    /// Keeps a character's latest vitals.
    pub(super) fn keep_vitals(&mut self, v: &Vitals) {
        let c = self.character(&v.character_name);
        c.touched = Instant::now();
        c.vitals = Some(v.clone());
    }

    /// Keeps a character's latest sheet summary.
    pub(super) fn keep_sheet(&mut self, summary: &CharacterSheet) {
        let c = self.character(&summary.character_name);
        c.touched = Instant::now();
        c.sheet = Some(summary.clone());
    }

    /// A portal frame placed where the character is: one without a position takes the latest
    /// telemetry's. Returns it with the character's current session.
    pub(super) fn place_portal(&self, p: &Portal) -> (Portal, Option<String>) {
        let c = self.characters.get(&p.character_name);
        let latest = c.and_then(|c| c.latest.as_ref());
        let mut portal = p.clone();
        if portal.ew.is_none() {
            portal.ew = latest.map(|t| t.ew);
            portal.ns = latest.map(|t| t.ns);
            portal.z = latest.map(|t| t.z);
        }
        (portal, c.and_then(|c| c.session_id.clone()))
    }

    /// The chat backlog, oldest first.
    pub(super) fn chat(&self) -> Vec<Chat> {
        self.chat.iter().cloned().collect()
    }

    /// Every character heard from within `window`, unsorted.
    pub(super) fn live_entries(&self, window: Duration) -> Vec<LiveEntry> {
        let now = Instant::now();
        self.characters
            .iter()
            .filter(|(_, c)| c.is_live(now, window))
            .filter_map(|(name, c)| {
                let telemetry = c.latest.clone()?;
                let session_rares = self
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
            .collect()
    }

    /// How many characters were heard from within `window`.
    pub(super) fn live_count(&self, window: Duration) -> usize {
        let now = Instant::now();
        self.characters
            .values()
            .filter(|c| c.is_live(now, window))
            .count()
    }

    /// Marks `names` offline now (the plugin that spoke for them closed) and returns those that
    /// were online, with when they were last seen.
    pub(super) fn disconnected(&mut self, names: &[String]) -> Vec<(String, DateTime<Utc>)> {
        let mut gone = Vec::new();
        for name in names {
            if let Some(c) = self.characters.get_mut(name)
                && c.online
            {
                c.online = false;
                gone.push((name.clone(), c.last_seen_at));
            }
        }
        gone
    }

    /// Marks characters silent for longer than `window` as offline and returns them with when
    /// they were last seen. With `evict_after`, characters offline and unnamed by any frame for
    /// that long, and not `owned`, leave memory with their sessions.
    pub(super) fn reap(
        &mut self,
        window: Duration,
        evict_after: Option<Duration>,
        owned: impl Fn(&str) -> bool,
    ) -> Vec<(String, DateTime<Utc>)> {
        let now = Instant::now();
        let mut gone = Vec::new();
        for (name, c) in self.characters.iter_mut() {
            let stale = c.last_seen.is_none_or(|seen| now - seen > window);
            if c.online && stale {
                c.online = false;
                gone.push((name.clone(), c.last_seen_at));
            }
        }
        if let Some(after) = evict_after {
            self.characters.retain(|name, c| {
                c.online || now.duration_since(c.touched) <= after || owned(name)
            });
        }
        let characters = &self.characters;
        self.sessions.retain(|(name, _), s| {
            characters.contains_key(name) && now.duration_since(s.touched) < SESSION_MEMORY
        });
        if self.characters.capacity() > 4 * self.characters.len() + 64 {
            self.characters.shrink_to_fit();
        }
        if self.sessions.capacity() > 4 * self.sessions.len() + 64 {
            self.sessions.shrink_to_fit();
        }
        gone
    }

    /// (characters, sessions) in memory.
    pub(super) fn sizes(&self) -> (usize, usize) {
        (self.characters.len(), self.sessions.len())
    }

    /// A character as another instance needs it to mirror (and perhaps later take over) it.
    pub(super) fn shared_state(&self, name: &str, claimed_at_ms: i64) -> Option<SharedState> {
        let c = self.characters.get(name)?;
        let telemetry = c.latest.clone()?;
        let sessions: Vec<SessionBaseline> = self
            .sessions
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, sid), s)| SessionBaseline {
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
        Some(SharedState {
            character: LiveCharacter {
                totals: c.totals(session_rares),
                last_seen: c.last_seen_at,
                vitals: c.vitals.clone(),
                sheet: c.sheet.clone(),
                telemetry,
            },
            sessions,
            claimed_at_ms,
        })
    }

    /// Applies a character as its owner describes it in a state answer.
    pub(super) fn mirror_state(&mut self, state: &SharedState) {
        let now = Instant::now();
        let shared = &state.character;
        let name = &shared.telemetry.character_name;
        for b in &state.sessions {
            let s = self
                .sessions
                .entry((name.clone(), b.session_id.clone()))
                .or_insert_with(SessionCounters::new);
            s.last_kills = b.last_kills;
            s.last_timestamp = b.last_timestamp;
            s.last_arrival = Some(now);
            s.rares = b.rares;
            s.touched = now;
        }
        let c = self.mirrored(name);
        c.total_kills = shared.totals.total_kills;
        c.total_rares = shared.totals.total_rares;
        c.vitals.clone_from(&shared.vitals);
        c.sheet.clone_from(&shared.sheet);
        c.seen(&shared.telemetry, now, shared.last_seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_SLACK: chrono::Duration = chrono::Duration::zero();

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
    }

    #[test]
    fn late_frames_add_nothing_and_keep_the_baseline() {
        let mut s = SessionCounters::new();
        let now = Instant::now();
        assert_eq!(kill_delta(&mut s, 5, at(10), NO_SLACK, now), 5);
        assert_eq!(kill_delta(&mut s, 10, at(20), NO_SLACK, now), 5);
        assert_eq!(kill_delta(&mut s, 7, at(15), NO_SLACK, now), 0, "late");
        assert_eq!(s.last_kills, Some(10));
        assert_eq!(kill_delta(&mut s, 12, at(30), NO_SLACK, now), 2);
        // A lower count that is not near zero is out of line, even when newer.
        assert_eq!(kill_delta(&mut s, 11, at(40), NO_SLACK, now), 0);
        assert_eq!(kill_delta(&mut s, 13, at(50), NO_SLACK, now), 1);
    }

    #[test]
    fn frames_count_in_arrival_order_within_the_slack() {
        let slack = chrono::Duration::seconds(5);
        let mut s = SessionCounters::new();
        let now = Instant::now();
        assert_eq!(kill_delta(&mut s, 5, at(10), slack, now), 5);
        // A clock set back by 3 s: still counted, in the order the frames came.
        assert_eq!(kill_delta(&mut s, 8, at(7), slack, now), 3);
        assert_eq!(kill_delta(&mut s, 9, at(9), slack, now), 1);
        // Older than the baseline by more than the slack: a replay, nothing added.
        assert_eq!(kill_delta(&mut s, 3, at(1), slack, now), 0);
        assert_eq!(s.last_kills, Some(9));
    }

    #[test]
    fn forged_counts_add_at_most_the_rate_cap() {
        let mut s = SessionCounters::new();
        let start = Instant::now();
        let mut total: i64 = 0;
        for i in 0..10_000 {
            let kills = if i % 2 == 0 { 1_000_000_000_000 } else { 0 };
            total = total.saturating_add(kill_delta(&mut s, kills, at(i), NO_SLACK, start));
        }
        // No server time passed: after the first frame each increase is capped at the burst.
        assert!(
            total <= MAX_UNMEASURED_KILLS + 5_000 * KILL_BURST,
            "{total}"
        );
        let later = start + Duration::from_secs(10);
        let mut s = SessionCounters::new();
        kill_delta(&mut s, 0, at(0), NO_SLACK, start);
        assert_eq!(
            kill_delta(&mut s, 1_000, at(10), NO_SLACK, later),
            KILL_BURST + 10 * MAX_KILLS_PER_SEC
        );
    }
}
