//! What the parsed settings mean to the parts that use them: store options, limits, intervals,
//! the spool's place and the placement of plugin frames in time.

use std::path::PathBuf;
use std::time::Duration;

use super::Settings;
use crate::protocol::clock::Placement;
use crate::store::StoreOptions;

impl Settings {
    /// How the store connects, from these settings.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            max_connections: self.database.db_max_connections,
            acquire_timeout: Duration::from_secs(self.database.db_acquire_timeout_secs),
            sqlite_busy_timeout: Duration::from_millis(self.database.sqlite_busy_timeout_ms),
            read_statement_timeout: Duration::from_secs(self.database.read_statement_timeout_secs),
            password: self.database.database_password.clone(),
        }
    }

    /// What the query budget allows (MAX_HEAVY_QUERIES, MAX_QUERY_ROWS, ...), and what it needs
    /// to know of retention and thinning to estimate a query's rows.
    pub fn query_limits(&self) -> crate::limits::QueryLimits {
        let retention = self.retention.retention_telemetry_days;
        let thin_after = self.retention.thin_telemetry_after_hours;
        crate::limits::QueryLimits {
            max_heavy_queries: self.queries.max_heavy_queries as usize,
            wait: Duration::from_secs(self.queries.heavy_query_wait_secs),
            max_rows: self.queries.max_query_rows,
            retention: (retention > 0).then(|| chrono::Duration::days(i64::from(retention))),
            thin_after: (thin_after > 0).then(|| chrono::Duration::hours(i64::from(thin_after))),
            thin_step_secs: u64::from(self.retention.thin_telemetry_step_secs),
        }
    }

    /// The live window as a duration.
    pub fn live_window(&self) -> Duration {
        Duration::from_secs(self.sessions.live_window_secs)
    }

    /// Interval between pings.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.sessions.ping_interval_secs)
    }

    /// Silence after which a peer is considered dead.
    pub fn peer_timeout(&self) -> Duration {
        Duration::from_secs(self.sessions.peer_timeout_secs)
    }

    /// Where and how the spool keeps accepted events.
    pub fn spool_options(&self) -> crate::spool::SpoolOptions {
        let w = &self.writer;
        let dir = w.spool_dir.clone().unwrap_or_else(|| {
            let url = &*self.database.database_url;
            let file = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .map(|rest| rest.split('?').next().unwrap_or(rest))
                .filter(|f| !f.is_empty() && !f.starts_with(':'));
            match file {
                Some(f) => PathBuf::from(format!("{f}.spool")),
                None => PathBuf::from("dereth-tracker-spool"),
            }
        });
        crate::spool::SpoolOptions {
            dir,
            max_bytes: w.spool_max_bytes,
            sync_interval: Duration::from_millis(w.spool_sync_ms),
            memory: w.write_queue_capacity,
            segment_bytes: (w.spool_max_bytes / 16).clamp(64 * 1024, 64 * 1024 * 1024),
        }
    }

    /// How plugin frames read at `read_at` are placed in time (see `CLOCK_SKEW_SECS`).
    pub fn placement(&self, read_at: chrono::DateTime<chrono::Utc>) -> Placement {
        let secs = self.sessions.clock_skew_secs;
        Placement {
            read_at,
            // Capped at about a century: chrono cannot hold every u64 of seconds.
            tolerance: (secs > 0).then(|| chrono::Duration::seconds(secs.min(1 << 32) as i64)),
            not_before: None,
        }
    }

    /// Longest a single send to a peer may take.
    pub fn send_timeout(&self) -> Duration {
        Duration::from_secs(self.sessions.send_timeout_secs)
    }
}
