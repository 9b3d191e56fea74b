//! Admission of expensive queries, so readers cannot starve the writer or each other: a limit on
//! how many run at once, and a cap on the rows one may have to read, refused up front with a
//! sentence saying what to narrow.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Settings;
use crate::error::ApiError;

/// Telemetry arrives every 2 s per character: the rows a window holds per character.
const TELEMETRY_SECS_PER_ROW: u64 = 2;

/// The shared admission state of expensive queries.
#[derive(Debug)]
pub struct QueryBudget {
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
pub struct HeavyPermit {
    _permit: OwnedSemaphorePermit,
}

impl QueryBudget {
    pub fn new(settings: &Settings) -> Self {
        let limit = settings.queries.max_heavy_queries as usize;
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            wait: Duration::from_secs(settings.queries.heavy_query_wait_secs),
            max_rows: settings.queries.max_query_rows,
            retention: (settings.retention.retention_telemetry_days > 0).then(|| {
                chrono::Duration::days(i64::from(settings.retention.retention_telemetry_days))
            }),
            thin_after: (settings.retention.thin_telemetry_after_hours > 0).then(|| {
                chrono::Duration::hours(i64::from(settings.retention.thin_telemetry_after_hours))
            }),
            thin_step_secs: u64::from(settings.retention.thin_telemetry_step_secs),
        }
    }

    /// Telemetry rows per character stored over [from, to): none before the retention horizon,
    /// one per 2 s while raw, one per thinning step once thinned.
    pub fn rows_per_character(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
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
    pub fn check_range(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        characters: i64,
        narrow: &str,
    ) -> Result<(), ApiError> {
        let characters = u64::try_from(characters.max(1)).unwrap_or(1);
        let estimate = self.rows_per_character(from, to).saturating_mul(characters);
        if estimate <= self.max_rows {
            return Ok(());
        }
        Err(ApiError::BadRequest(format!(
            "this query would read about {estimate} telemetry rows ({characters} character(s) \
             from {} to {}), more than the {} allowed (MAX_QUERY_ROWS): {narrow}",
            from.to_rfc3339(),
            to.to_rfc3339(),
            self.max_rows
        )))
    }

    /// Waits (up to the configured wait) for a turn to run an expensive query.
    pub async fn admit(&self) -> Result<HeavyPermit, ApiError> {
        let busy = || {
            ApiError::Busy(
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
    pub fn running(&self) -> usize {
        self.limit.saturating_sub(self.permits.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(max_rows: u64, permits: u32) -> QueryBudget {
        let mut settings = Settings::defaults();
        settings.queries.max_query_rows = max_rows;
        settings.queries.max_heavy_queries = permits;
        settings.queries.heavy_query_wait_secs = 0;
        QueryBudget::new(&settings)
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
        let mut settings = Settings::defaults();
        settings.retention.retention_telemetry_days = 0;
        settings.retention.thin_telemetry_after_hours = 0;
        let raw = QueryBudget::new(&settings);
        let day = raw.rows_per_character(now - chrono::Duration::days(1), now);
        assert!((43_199..=43_200).contains(&day), "{day}");
        settings.retention.retention_telemetry_days = 1;
        let kept = QueryBudget::new(&settings);
        let year = kept.rows_per_character(now - chrono::Duration::days(365), now);
        assert!(
            year <= 43_200,
            "nothing older than the retention counts: {year}"
        );
        settings.retention.retention_telemetry_days = 0;
        settings.retention.thin_telemetry_after_hours = 1;
        settings.retention.thin_telemetry_step_secs = 60;
        let thinned = QueryBudget::new(&settings);
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
        assert_eq!(third.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        drop(first);
        assert!(b.admit().await.is_ok());
    }
}
