//! Rate limiters and budgets, each bounding what one client, connection or kind of work may take:
//! failed authentications per client ([`RateLimiter`]), commands per browser
//! ([`CommandBudget`]), bad frames per connection ([`ErrorBudget`]) and the admission of
//! expensive queries ([`QueryBudget`]: how many run at once and how many rows one may read).
//!
//! They take plain numbers, not settings, so the layers above build them once and test them
//! alone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Counts events per key in fixed windows, with a bounded number of keys; used for failed
/// authentications per client and per account.
///
/// When it holds [`MAX_KEYS`] keys, expired windows go first, then the keys with the fewest
/// events: a flood of new keys cannot push out (and so unlock) a key that reached its limit.
#[derive(Debug)]
pub(crate) struct RateLimiter<K = IpAddr> {
    limit: u32,
    window: Duration,
    counts: Mutex<HashMap<K, (Instant, u32)>>,
    max_keys: usize,
}

/// Most keys a limiter remembers.
const MAX_KEYS: usize = 10_000;

impl<K: std::hash::Hash + Eq + Clone> RateLimiter<K> {
    /// At most `limit` events per key per `window`.
    pub(crate) fn new(limit: u32, window: Duration) -> Self {
        Self::with_capacity(limit, window, MAX_KEYS)
    }

    fn with_capacity(limit: u32, window: Duration, max_keys: usize) -> Self {
        Self {
            limit,
            window,
            counts: Mutex::new(HashMap::new()),
            max_keys: max_keys.max(1),
        }
    }

    /// Whether `key` is over its limit in the current window.
    pub(crate) fn is_limited(&self, key: &K) -> bool {
        let counts = self.lock();
        counts
            .get(key)
            .is_some_and(|(start, n)| start.elapsed() < self.window && *n >= self.limit)
    }

    /// Records one event for `key`; returns its count in the current window.
    pub(crate) fn record(&self, key: &K) -> u32 {
        let mut counts = self.lock();
        if counts.len() >= self.max_keys && !counts.contains_key(key) {
            self.make_room(&mut counts);
        }
        let entry = counts.entry(key.clone()).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= self.window {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1
    }

    /// Drops expired windows, then (if still full) the tenth of the keys with the fewest
    /// events, oldest first: a key at its limit stays as long as any key below it can go.
    fn make_room(&self, counts: &mut HashMap<K, (Instant, u32)>) {
        let window = self.window;
        counts.retain(|_, (start, _)| start.elapsed() < window);
        if counts.len() < self.max_keys {
            return;
        }
        let mut by_weight: Vec<(u32, Instant, K)> = counts
            .iter()
            .map(|(k, (start, n))| (*n, *start, k.clone()))
            .collect();
        by_weight.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let drop = (self.max_keys / 10).max(1);
        for (_, _, key) in by_weight.into_iter().take(drop) {
            counts.remove(&key);
        }
    }

    /// Forgets `key` (after a success).
    pub(crate) fn clear(&self, key: &K) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, u32)>> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How many of something each key holds now (browser sockets per client or per account),
/// with a guard that gives its place back when dropped.
#[derive(Debug, Default)]
pub(crate) struct Occupancy {
    held: Mutex<HashMap<String, usize>>,
}

/// A place held in an [`Occupancy`]; given back on drop.
#[derive(Debug)]
pub(crate) struct Place {
    of: Arc<Occupancy>,
    keys: Vec<String>,
}

impl Occupancy {
    /// Takes a place under every key of `keys` (each with its own limit), or none when any is
    /// full: then the index of the first full key.
    pub(crate) fn take(self: &Arc<Self>, keys: &[(String, usize)]) -> Result<Place, usize> {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(full) = keys
            .iter()
            .position(|(key, limit)| held.get(key).copied().unwrap_or(0) >= *limit)
        {
            return Err(full);
        }
        for (key, _) in keys {
            *held.entry(key.clone()).or_default() += 1;
        }
        Ok(Place {
            of: self.clone(),
            keys: keys.iter().map(|(k, _)| k.clone()).collect(),
        })
    }

    /// How many places `key` holds.
    #[cfg(test)]
    fn count(&self, key: &str) -> usize {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut held = self
            .of
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for key in &self.keys {
            if let Some(n) = held.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    held.remove(key);
                }
            }
        }
    }
}

/// A token bucket for one connection's command frames.
#[derive(Debug)]
pub(crate) struct CommandBudget {
    tokens: f64,
    last: Instant,
    burst: f64,
    per_sec: f64,
}

impl CommandBudget {
    /// Commands a browser may send in a burst.
    pub(crate) const BURST: f64 = 10.0;
    /// Commands a browser may send per second, sustained.
    pub(crate) const PER_SEC: f64 = 1.0;

    /// Deliveries of broadcast commands a browser may make in a burst: one whole broadcast.
    pub(crate) const BROADCAST_BURST: f64 = crate::protocol::MAX_BROADCAST as f64;
    /// Deliveries of broadcast commands per second, sustained.
    pub(crate) const BROADCAST_PER_SEC: f64 = 20.0;

    pub(crate) fn new() -> Self {
        Self::with(Self::BURST, Self::PER_SEC)
    }

    /// The budget for the characters broadcasts reach (each broadcast also takes one token of
    /// the command budget, like a single command).
    pub(crate) fn broadcast() -> Self {
        Self::with(Self::BROADCAST_BURST, Self::BROADCAST_PER_SEC)
    }

    fn with(burst: f64, per_sec: f64) -> Self {
        Self {
            tokens: burst,
            last: Instant::now(),
            burst,
            per_sec,
        }
    }

    /// Takes one command's token; false when the browser is sending too fast.
    pub(crate) fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Default for CommandBudget {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts bad frames over a sliding minute; a connection that exceeds the budget is closed.
#[derive(Debug)]
pub(crate) struct ErrorBudget {
    limit: u32,
    window_start: Instant,
    count: u32,
}

impl ErrorBudget {
    const WINDOW: Duration = Duration::from_secs(60);

    /// A budget of `limit` errors per minute.
    pub(crate) fn new(limit: u32) -> Self {
        Self {
            limit,
            window_start: Instant::now(),
            count: 0,
        }
    }

    /// Records one error; true when the budget is exhausted.
    pub(crate) fn spend(&mut self) -> bool {
        if self.window_start.elapsed() > Self::WINDOW {
            self.window_start = Instant::now();
            self.count = 0;
        }
        self.count += 1;
        self.count > self.limit
    }
}

/// Telemetry arrives every 2 s per character: the rows a window holds per character.
const TELEMETRY_SECS_PER_ROW: u64 = 2;

/// What the query budget allows, and what it needs to know of the stored data to estimate a
/// query's rows.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// Expensive queries that may run at once.
    pub max_heavy_queries: usize,
    /// How long one waits for its turn.
    pub wait: Duration,
    /// Most telemetry rows one query may have to read.
    pub max_rows: u64,
    /// Raw telemetry older than this is gone (retention), if it expires.
    pub retention: Option<chrono::Duration>,
    /// Telemetry older than this is thinned to one row per `thin_step_secs`.
    pub thin_after: Option<chrono::Duration>,
    pub thin_step_secs: u64,
}

/// Why the query budget refused a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    /// It would read too many rows: the sentence says what to narrow.
    #[error("{0}")]
    TooLarge(String),
    /// Too many expensive queries are running; retry in a moment.
    #[error("{0}")]
    Busy(&'static str),
}

/// The shared admission state of expensive queries.
#[derive(Debug)]
pub(crate) struct QueryBudget {
    permits: Arc<Semaphore>,
    /// How many expensive queries may run at once.
    limit: usize,
    wait: Duration,
    max_rows: u64,
    /// Raw telemetry older than this is gone (retention), if it expires.
    retention: Option<chrono::Duration>,
    /// Telemetry older than this is thinned to one row per `thin_step_secs`.
    thin_after: Option<chrono::Duration>,
    thin_step_secs: u64,
}

/// Held while an expensive query (or a CSV export's whole stream) runs.
#[derive(Debug)]
pub(crate) struct HeavyPermit {
    _permit: OwnedSemaphorePermit,
}

impl QueryBudget {
    pub(crate) fn new(limits: QueryLimits) -> Self {
        let limit = limits.max_heavy_queries.max(1);
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            wait: limits.wait,
            max_rows: limits.max_rows,
            retention: limits.retention,
            thin_after: limits.thin_after,
            thin_step_secs: limits.thin_step_secs.max(1),
        }
    }

    /// Telemetry rows per character stored over [from, to): none before the retention horizon,
    /// one per 2 s while raw, one per thinning step once thinned.
    pub(crate) fn rows_per_character(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
        let now = Utc::now();
        let from = match self.retention {
            Some(keep) => from.max(now - keep),
            None => from,
        };
        if from >= to {
            return 0;
        }
        let secs = |a: DateTime<Utc>, b: DateTime<Utc>| {
            u64::try_from((b - a).num_seconds().max(0)).unwrap_or(0)
        };
        match self.thin_after {
            Some(after) => {
                let horizon = (now - after).clamp(from, to);
                secs(from, horizon) / self.thin_step_secs
                    + secs(horizon, to) / TELEMETRY_SECS_PER_ROW
            }
            None => secs(from, to) / TELEMETRY_SECS_PER_ROW,
        }
    }

    /// Refuses a query over [from, to) for `characters` characters that would read more rows
    /// than allowed. `narrow` names the parameters that shrink it.
    pub(crate) fn check_range(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        characters: i64,
        narrow: &str,
    ) -> Result<(), Refused> {
        let characters = u64::try_from(characters.max(1)).unwrap_or(1);
        let estimate = self.rows_per_character(from, to).saturating_mul(characters);
        let what = format!(
            "telemetry rows ({characters} character(s) from {} to {})",
            from.to_rfc3339(),
            to.to_rfc3339()
        );
        self.within(estimate, &what, narrow)
    }

    /// Ok when `estimate` rows are allowed; otherwise the refusal, saying what they are and
    /// which parameters shrink them.
    fn within(&self, estimate: u64, what: &str, narrow: &str) -> Result<(), Refused> {
        if estimate <= self.max_rows {
            return Ok(());
        }
        Err(Refused::TooLarge(format!(
            "this query would read about {estimate} {what}, more than the {} allowed \
             (MAX_QUERY_ROWS): {narrow}",
            self.max_rows
        )))
    }

    /// Refuses a query of per-hour rows (`kill_hours`) over [from, to) for `characters`
    /// characters that would read more rows than allowed: one row per character and hour.
    pub(crate) fn check_hours(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        characters: i64,
        narrow: &str,
    ) -> Result<(), Refused> {
        let characters = u64::try_from(characters.max(1)).unwrap_or(1);
        let secs = u64::try_from((to - from).num_seconds().max(0)).unwrap_or(0);
        // The first hour counts whole, and a range ending mid-hour reads that hour too.
        let hours = secs.div_ceil(3600) + 1;
        let estimate = hours.saturating_mul(characters);
        let what = format!("hourly rows ({characters} character(s) over {hours} hours)");
        self.within(estimate, &what, narrow)
    }

    /// Waits (up to the configured wait) for a turn to run an expensive query.
    pub(crate) async fn admit(&self) -> Result<HeavyPermit, Refused> {
        let busy = || {
            Refused::Busy(
                "too many expensive queries are running (MAX_HEAVY_QUERIES); retry in a moment",
            )
        };
        let acquire = self.permits.clone().acquire_owned();
        match tokio::time::timeout(self.wait, acquire).await {
            Ok(Ok(permit)) => Ok(HeavyPermit { _permit: permit }),
            Ok(Err(_)) | Err(_) => Err(busy()),
        }
    }

    /// Expensive queries running right now.
    pub(crate) fn running(&self) -> usize {
        self.limit.saturating_sub(self.permits.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_rows: u64, permits: usize) -> QueryLimits {
        QueryLimits {
            max_heavy_queries: permits,
            wait: Duration::ZERO,
            max_rows,
            retention: None,
            thin_after: None,
            thin_step_secs: 30,
        }
    }

    fn budget(max_rows: u64, permits: usize) -> QueryBudget {
        QueryBudget::new(limits(max_rows, permits))
    }

    #[test]
    fn the_row_cap_names_what_to_narrow() {
        let b = budget(1_000_000, 4);
        let now = Utc::now();
        assert!(
            b.check_range(
                now - chrono::Duration::seconds(600),
                now,
                1_000,
                "pass `character`"
            )
            .is_ok()
        );
        let err = b
            .check_range(
                now - chrono::Duration::days(7),
                now,
                20,
                "pass `character` or fewer `seconds`",
            )
            .expect_err("a week of 20 characters is too much");
        let text = err.to_string();
        assert!(
            text.contains("pass `character` or fewer `seconds`"),
            "{text}"
        );
        assert!(text.contains("20 character(s)"), "{text}");
        assert!(
            b.check_range(now, now - chrono::Duration::days(1), 1, "x")
                .is_ok()
        );
        assert!(
            b.check_range(now - chrono::Duration::days(1), now, i64::MAX, "x")
                .is_err()
        );
    }

    #[test]
    fn retention_and_thinning_shrink_the_estimate() {
        let now = Utc::now();
        let raw = budget(1_000, 1);
        let day = raw.rows_per_character(now - chrono::Duration::days(1), now);
        assert!((43_199..=43_200).contains(&day), "{day}");
        let kept = QueryBudget::new(QueryLimits {
            retention: Some(chrono::Duration::days(1)),
            ..limits(1_000, 1)
        });
        let year = kept.rows_per_character(now - chrono::Duration::days(365), now);
        assert!(
            year <= 43_200,
            "nothing older than the retention counts: {year}"
        );
        let thinned = QueryBudget::new(QueryLimits {
            thin_after: Some(chrono::Duration::hours(1)),
            thin_step_secs: 60,
            ..limits(1_000, 1)
        });
        let day = thinned.rows_per_character(now - chrono::Duration::days(1), now);
        // 23 h at one row a minute plus 1 h at one row per 2 s.
        assert!((3_179..=3_181).contains(&day), "{day}");
    }

    #[tokio::test]
    async fn expensive_queries_beyond_the_limit_are_turned_away() {
        let b = budget(1_000, 2);
        let first = b.admit().await.expect("first");
        let _second = b.admit().await.expect("second");
        assert_eq!(b.running(), 2);
        let third = b.admit().await.expect_err("no permit left");
        assert!(matches!(third, Refused::Busy(_)), "{third:?}");
        drop(first);
        assert!(b.admit().await.is_ok());
    }

    #[test]
    fn limiters_count_per_key_and_buckets_refill() {
        let limiter = RateLimiter::new(3, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..3 {
            assert!(!limiter.is_limited(&ip));
            limiter.record(&ip);
        }
        assert!(limiter.is_limited(&ip));
        assert!(!limiter.is_limited(&"192.0.2.2".parse().expect("ip")));
        limiter.clear(&ip);
        assert!(!limiter.is_limited(&ip));
        let mut budget = CommandBudget::new();
        let taken = (0..20).filter(|_| budget.take()).count();
        assert_eq!(taken, CommandBudget::BURST as usize);
    }

    #[test]
    fn a_flood_of_new_keys_does_not_unlock_a_locked_one() {
        let limiter = RateLimiter::with_capacity(3, Duration::from_secs(60), 100);
        let victim = "victim".to_owned();
        for _ in 0..3 {
            limiter.record(&victim);
        }
        assert!(limiter.is_limited(&victim));
        for i in 0..10_000 {
            limiter.record(&format!("flood-{i}"));
        }
        assert!(limiter.is_limited(&victim), "still locked after the flood");
        assert!(limiter.lock().len() <= 100);
    }

    #[test]
    fn places_are_bounded_per_key_and_given_back() {
        let occupancy = Arc::new(Occupancy::default());
        let keys = |client: &str| vec![("all".to_owned(), 3), (client.to_owned(), 2)];
        let a1 = occupancy.take(&keys("a")).expect("first");
        let _a2 = occupancy.take(&keys("a")).expect("second");
        assert_eq!(occupancy.take(&keys("a")).err(), Some(1), "per client");
        let _b1 = occupancy.take(&keys("b")).expect("another client");
        assert_eq!(occupancy.take(&keys("c")).err(), Some(0), "in total");
        drop(a1);
        assert_eq!(occupancy.count("all"), 2);
        assert!(occupancy.take(&keys("c")).is_ok());
    }

    #[test]
    fn error_budget_trips_after_the_limit() {
        let mut budget = ErrorBudget::new(2);
        assert!(!budget.spend());
        assert!(!budget.spend());
        assert!(budget.spend());
    }
}
