//! What one character may do, whatever its plugin sends: the kills it may gain (what a character
//! can physically do, however many `session_id`s it invents), the sessions it may start in an
//! hour, the rares it may report in a minute, and the sessions kept in memory for it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Kills per second of server time a session may gain, far above what any character manages;
/// a frame claiming more adds only this much.
pub const MAX_KILLS_PER_SEC: i64 = 20;
/// Most kills a frame may add when no previous arrival of its session is known (the first
/// frame of a session, or the first after a server restart): a session of many hours may be
/// first seen mid-way, but not with more than this. Also the most kills a character may gain
/// at once, whatever sessions it invents.
pub const MAX_UNMEASURED_KILLS: i64 = 1_000_000;

/// How much one character may do (from the settings).
#[derive(Debug, Clone, Copy)]
pub struct LiveLimits {
    /// New sessions one character may start in an hour (SESSIONS_PER_CHARACTER_PER_HOUR).
    pub sessions_per_hour: u32,
    /// Rares one character may report in a minute (RARES_PER_CHARACTER_PER_MINUTE).
    pub rares_per_minute: u32,
    /// How much older than the session's previous frame a frame may be before it counts as a
    /// replay (CLOCK_SKEW_SECS: a clock correction within it never loses kills; larger offsets
    /// are placed on the tracker's clock, in arrival order).
    pub late_slack: chrono::Duration,
}

impl Default for LiveLimits {
    fn default() -> Self {
        Self {
            sessions_per_hour: 20,
            rares_per_minute: 5,
            late_slack: chrono::Duration::seconds(5),
        }
    }
}

/// Sessions kept in memory per character; starting one more forgets the oldest.
pub(super) const SESSIONS_KEPT: usize = 16;

/// One character's allowances.
#[derive(Debug)]
pub(super) struct Guard {
    /// Kills it may still gain: a bucket of [`MAX_UNMEASURED_KILLS`] (a session first seen
    /// mid-way may bring that many) refilled at [`MAX_KILLS_PER_SEC`].
    kill_budget: f64,
    refilled: Instant,
    /// When its recent sessions started (the last hour).
    new_sessions: VecDeque<Instant>,
    /// When its recent rares were reported (the last minute).
    rares: VecDeque<Instant>,
    /// Its sessions in memory, oldest first.
    pub(super) sessions: VecDeque<String>,
}

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

/// Whether one more event fits in `window` under `limit` (recording it when it does).
fn admit(times: &mut VecDeque<Instant>, window: Duration, limit: u32, now: Instant) -> bool {
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) >= window)
    {
        times.pop_front();
    }
    if times.len() >= limit as usize {
        return false;
    }
    times.push_back(now);
    true
}

impl Guard {
    pub(super) fn new() -> Self {
        Self {
            kill_budget: MAX_UNMEASURED_KILLS as f64,
            refilled: Instant::now(),
            new_sessions: VecDeque::new(),
            rares: VecDeque::new(),
            sessions: VecDeque::new(),
        }
    }

    /// The kills it may gain now, at most `wanted` (taken from its budget).
    pub(super) fn take_kills(&mut self, wanted: i64, now: Instant) -> i64 {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.kill_budget = (self.kill_budget + elapsed * MAX_KILLS_PER_SEC as f64)
            .min(MAX_UNMEASURED_KILLS as f64);
        let granted = (wanted.max(0) as f64).min(self.kill_budget.floor());
        self.kill_budget -= granted;
        granted as i64
    }

    /// Whether it may start a session now (recorded when it may).
    pub(super) fn start_session(&mut self, limits: &LiveLimits, now: Instant) -> bool {
        admit(&mut self.new_sessions, HOUR, limits.sessions_per_hour, now)
    }

    /// Whether it may report a rare now (recorded when it may).
    pub(super) fn report_rare(&mut self, limits: &LiveLimits, now: Instant) -> bool {
        admit(&mut self.rares, MINUTE, limits.rares_per_minute, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kills_are_bounded_by_what_a_character_can_do() {
        let mut g = Guard::new();
        let t0 = Instant::now();
        assert_eq!(g.take_kills(2_000_000, t0), MAX_UNMEASURED_KILLS);
        assert_eq!(g.take_kills(1_000, t0), 0, "nothing left at once");
        let later = t0 + Duration::from_secs(10);
        assert_eq!(g.take_kills(1_000, later), 10 * MAX_KILLS_PER_SEC);
        assert_eq!(g.take_kills(-5, later), 0);
    }

    #[test]
    fn sessions_and_rares_are_counted_in_their_windows() {
        let limits = LiveLimits {
            sessions_per_hour: 2,
            rares_per_minute: 1,
            ..LiveLimits::default()
        };
        let mut g = Guard::new();
        let t0 = Instant::now();
        assert!(g.start_session(&limits, t0));
        assert!(g.start_session(&limits, t0));
        assert!(!g.start_session(&limits, t0));
        assert!(g.start_session(&limits, t0 + HOUR));
        assert!(g.report_rare(&limits, t0));
        assert!(!g.report_rare(&limits, t0 + Duration::from_secs(59)));
        assert!(g.report_rare(&limits, t0 + MINUTE));
    }
}
