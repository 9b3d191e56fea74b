//! Data lifecycle: old rows must not accumulate forever. On TimescaleDB, compression, retention
//! and a continuous aggregate of hourly kills are set up as policies at startup (idempotently);
//! on plain PostgreSQL and SQLite a periodic task deletes expired rows in small batches.
//! On every backend, raw telemetry older than a day (configurable) is thinned to one row per
//! character per 30 s (configurable), kill sums kept exact, so a small disk holds the retention.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::ops::metrics::Metrics;
use crate::store::{Retained, Store};

/// Who removes old telemetry (shown as `lifecycle.mode` in `/debug`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// TimescaleDB policies inside the database (retention, compression, hourly kills).
    Timescaledb,
    /// A periodic task of the tracker deletes expired rows.
    Pruning,
}

/// How old data is removed on this server.
#[derive(Debug, Clone, Serialize)]
pub struct Lifecycle {
    pub mode: Mode,
    pub telemetry_retention_days: u32,
    pub spawn_retention_days: u32,
    /// TimescaleDB only.
    pub compress_after_days: Option<u32>,
    pub prune_interval_secs: u64,
    /// Raw telemetry older than this many hours is thinned (0: never).
    pub thin_telemetry_after_hours: u32,
    /// One telemetry row per character per this many seconds is kept when thinning.
    pub thin_telemetry_step_secs: u32,
    /// Telemetry before this time (epoch seconds; 0: not yet known) is already thinned.
    #[serde(skip)]
    thinned_until: Arc<AtomicI64>,
}

/// Telemetry is thinned an hour of data per statement, so no statement runs long.
const THIN_WINDOW: chrono::Duration = chrono::Duration::hours(1);

impl Lifecycle {
    /// Sets up the TimescaleDB policies when the store runs on it; reports the mode either way.
    pub async fn apply(store: &Store, settings: &Settings) -> Self {
        let policies = crate::store::TimescalePolicies {
            telemetry_retention_days: settings.retention.retention_telemetry_days,
            spawn_retention_days: settings.retention.retention_spawns_days,
            compress_after_days: settings.retention.compress_after_days,
            telemetry_chunk_hours: settings.retention.telemetry_chunk_hours,
            spawn_chunk_hours: settings.retention.spawn_chunk_hours,
        };
        let mode = match store.apply_policies(&policies).await {
            Ok(true) => {
                tracing::info!(
                    retention_days = settings.retention.retention_telemetry_days,
                    compress_after_days = settings.retention.compress_after_days,
                    "TimescaleDB policies applied (retention, compression, hourly kills)"
                );
                Mode::Timescaledb
            }
            Ok(false) => {
                if store.backend() == crate::store::Backend::Postgres {
                    tracing::info!(
                        "TimescaleDB not available: skipping compression, retention policies \
                         and the hourly-kills aggregate; a periodic task prunes expired rows \
                         instead"
                    );
                }
                Mode::Pruning
            }
            Err(err) => {
                tracing::warn!(
                    %err,
                    "cannot apply TimescaleDB policies; falling back to periodic pruning"
                );
                Mode::Pruning
            }
        };
        Self {
            mode,
            telemetry_retention_days: settings.retention.retention_telemetry_days,
            spawn_retention_days: settings.retention.retention_spawns_days,
            compress_after_days: (mode == Mode::Timescaledb)
                .then_some(settings.retention.compress_after_days),
            prune_interval_secs: settings.retention.prune_interval_secs,
            thin_telemetry_after_hours: settings.retention.thin_telemetry_after_hours,
            thin_telemetry_step_secs: settings.retention.thin_telemetry_step_secs,
            thinned_until: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Thins telemetry that aged past the threshold since the last pass (everything old enough
    /// on the first pass), an hour at a time; returns the rows removed.
    pub async fn thin_once(&self, store: &Store, metrics: &Metrics) -> u64 {
        if self.thin_telemetry_after_hours == 0 {
            return 0;
        }
        let cutoff = chrono::Utc::now()
            - chrono::Duration::hours(i64::from(self.thin_telemetry_after_hours));
        let mut from = match self.thinned_until.load(Ordering::Relaxed) {
            0 => match store.oldest_telemetry().await {
                Ok(Some(oldest)) => oldest,
                Ok(None) => return 0,
                Err(err) => {
                    tracing::warn!(%err, "thinning: cannot read the oldest telemetry; will retry");
                    return 0;
                }
            },
            secs => chrono::DateTime::from_timestamp(secs, 0).unwrap_or(cutoff),
        };
        let step = i64::from(self.thin_telemetry_step_secs);
        let mut total = 0;
        while from < cutoff {
            let to = (from + THIN_WINDOW).min(cutoff);
            match store.thin_telemetry(from, to, step).await {
                Ok(n) => total += n,
                Err(err) => {
                    tracing::warn!(%err, "thinning telemetry failed; will retry next time");
                    break;
                }
            }
            // Bounds are aligned down to whole steps, so the next window starts where this one
            // really ended.
            let done = to.timestamp().div_euclid(step) * step;
            self.thinned_until.store(done, Ordering::Relaxed);
            from = chrono::DateTime::from_timestamp(done, 0).unwrap_or(to);
            if to == cutoff {
                break;
            }
        }
        if total > 0 {
            tracing::info!(rows = total, step, "thinned old telemetry");
        }
        metrics.rows_thinned.inc_by(total);
        total
    }

    /// What a pruning pass must delete: (table, retention days), skipping what TimescaleDB
    /// already drops by itself.
    fn targets(&self) -> Vec<(Retained, u32)> {
        let mut out = Vec::new();
        if self.mode != Mode::Timescaledb && self.telemetry_retention_days > 0 {
            out.push((Retained::Telemetry, self.telemetry_retention_days));
        }
        if self.spawn_retention_days > 0 {
            out.push((Retained::Spawns, self.spawn_retention_days));
        }
        out
    }

    /// Deletes every expired row once; returns how many went.
    pub async fn prune_once(&self, store: &Store, metrics: &Metrics) -> u64 {
        let mut total = 0;
        for (table, days) in self.targets() {
            let before = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
            match store.prune(table, before).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(?table, rows = n, days, "pruned expired rows");
                    }
                    total += n;
                }
                Err(err) => tracing::warn!(?table, %err, "pruning failed; will retry next time"),
            }
        }
        // The hourly kill counts follow raw telemetry's retention (TimescaleDB's policy drops
        // telemetry itself, not these).
        if self.telemetry_retention_days > 0 {
            let before = chrono::Utc::now()
                - chrono::Duration::days(i64::from(self.telemetry_retention_days));
            // Not counted in rows_pruned (stored events only): summaries of them.
            match store.prune_kill_hours(before).await {
                Ok(n) => tracing::debug!(rows = n, "pruned hourly kills and event log entries"),
                Err(err) => {
                    tracing::warn!(%err, "pruning hourly kills failed; will retry next time")
                }
            }
        }
        // Batch keys only guard retries of the last minutes; a day is plenty.
        let keys_before = chrono::Utc::now() - chrono::Duration::days(1);
        if let Err(err) = store.prune_batch_keys(keys_before).await {
            tracing::warn!(%err, "pruning old batch keys failed; will retry next time");
        }
        metrics.rows_pruned.inc_by(total);
        total
    }

    /// Prunes now and then every `prune_interval_secs` until `stop`.
    pub async fn run(
        self: Arc<Self>,
        store: Store,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(self.prune_interval_secs));
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {
                    self.prune_once(&store, &metrics).await;
                    self.thin_once(&store, &metrics).await;
                }
            }
        }
    }
}

/// Storage growth as measured here (docs/OPERATIONS.md): SQLite bytes per stored telemetry row and
/// per spawn row, indexes included, and what one character online all day sends.
pub(crate) mod growth {
    use crate::config::Settings;

    pub(crate) const TELEMETRY_ROW_BYTES: u64 = 330;
    pub(crate) const SPAWN_ROW_BYTES: u64 = 250;
    /// One telemetry frame every 2 s.
    pub(crate) const TELEMETRY_ROWS_PER_DAY: u64 = 43_200;
    /// Spawns a hunting character reports in a day (about one every 13 s).
    pub(crate) const SPAWN_ROWS_PER_DAY: u64 = 6_800;

    /// Bytes one character online around the clock occupies once the retention windows are full,
    /// with the configured thinning (0 retention days: counted as a year).
    pub(crate) fn bytes_per_character(settings: &Settings) -> u64 {
        let days = |d: u32| u64::from(if d == 0 { 365 } else { d });
        let telemetry_days = days(settings.retention.retention_telemetry_days);
        let thinned_per_day = if settings.retention.thin_telemetry_after_hours == 0 {
            TELEMETRY_ROWS_PER_DAY
        } else {
            86_400 / u64::from(settings.retention.thin_telemetry_step_secs.max(2))
        };
        let raw_days = (u64::from(settings.retention.thin_telemetry_after_hours).div_ceil(24))
            .clamp(1, telemetry_days);
        let telemetry =
            raw_days * TELEMETRY_ROWS_PER_DAY + (telemetry_days - raw_days) * thinned_per_day;
        telemetry * TELEMETRY_ROW_BYTES
            + days(settings.retention.retention_spawns_days) * SPAWN_ROWS_PER_DAY * SPAWN_ROW_BYTES
    }
}

/// Warns at startup when the SQLite file, with the characters seen in the last day online all
/// day, would outgrow the free space of its disk within the retention windows.
pub(crate) async fn warn_if_disk_too_small(store: &Store, settings: &Settings) {
    let Some(path) = settings
        .database
        .database_url
        .strip_prefix("sqlite://")
        .or_else(|| settings.database.database_url.strip_prefix("sqlite:"))
    else {
        return; // PostgreSQL: the disk is the database server's.
    };
    let path = std::path::Path::new(path.split('?').next().unwrap_or(path));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let Ok(stat) = rustix::fs::statvfs(dir) else {
        return;
    };
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    let since = chrono::Utc::now() - chrono::Duration::days(1);
    let active = match store.characters(None, 100_000).await {
        Ok(all) => all.iter().filter(|c| c.last_seen >= since).count() as u64,
        Err(_) => return,
    };
    let per_character = growth::bytes_per_character(settings);
    let projected = active.max(1) * per_character;
    let mib = |b: u64| b / (1024 * 1024);
    if projected > free {
        tracing::warn!(
            characters = active,
            projected_mib = mib(projected),
            free_mib = mib(free),
            "the database may outgrow its disk: {} characters online all day need about {} MiB \
             within the retention windows, and {} MiB are free; lower RETENTION_TELEMETRY_DAYS, \
             thin sooner (THIN_TELEMETRY_AFTER_HOURS) or add disk",
            active.max(1),
            mib(projected),
            mib(free)
        );
    } else {
        tracing::info!(
            characters = active,
            per_character_mib = mib(per_character),
            projected_mib = mib(projected),
            free_mib = mib(free),
            "storage fits: projected size within the retention windows is below the free disk"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::growth::*;
    use crate::config::Settings;

    #[test]
    fn thinning_shrinks_the_projection_and_defaults_fit_a_small_disk() {
        let mut s = Settings::defaults();
        let thinned = bytes_per_character(&s);
        s.retention.thin_telemetry_after_hours = 0;
        let raw = bytes_per_character(&s);
        assert!(raw > thinned * 5, "raw {raw} vs thinned {thinned}");
        // Defaults: 50 characters online all day fit in 5 GiB.
        assert!(
            50 * thinned < 5 * 1024 * 1024 * 1024,
            "{thinned} per character"
        );
    }
}
