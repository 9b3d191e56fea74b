//! At most one log line a period for things that can happen thousands of times a second (a
//! crowd logging in on a slow database, browsers dropped, frames refused): the line carries the
//! running count, the rest is in `/metrics`, and the log stays readable.

use std::sync::atomic::{AtomicU64, Ordering};

/// Opens once per period.
#[derive(Debug)]
pub(crate) struct LogGate {
    /// When it last opened (milliseconds since the epoch; 0: never).
    last_ms: AtomicU64,
    period_ms: u64,
}

impl LogGate {
    pub(crate) const fn per_minute() -> Self {
        Self {
            last_ms: AtomicU64::new(0),
            period_ms: 60_000,
        }
    }

    /// Whether a line may be logged now (true for one caller per period).
    pub(crate) fn open(&self) -> bool {
        self.open_at(u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0))
    }

    fn open_at(&self, now: u64) -> bool {
        let last = self.last_ms.load(Ordering::Relaxed);
        (last == 0 || now.saturating_sub(last) >= self.period_ms)
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_once_a_period() {
        let gate = LogGate::per_minute();
        let t = 1_800_000_000_000;
        assert!(gate.open_at(t), "the first time");
        assert!(!gate.open_at(t + 1));
        assert!(!gate.open_at(t + 59_999));
        assert!(gate.open_at(t + 60_000), "a minute later");
        assert!(!gate.open_at(t + 60_001));
    }

    #[test]
    fn one_caller_of_many_threads_gets_it() {
        let gate = std::sync::Arc::new(LogGate::per_minute());
        let opened: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let gate = gate.clone();
                    s.spawn(move || (0..1000).filter(|_| gate.open()).count())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(opened, 1);
    }
}
