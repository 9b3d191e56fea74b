//! Data lifecycle: old rows must not accumulate forever. On TimescaleDB, compression, retention
//! and a continuous aggregate of hourly kills are set up as policies at startup (idempotently);
//! on plain PostgreSQL and SQLite a periodic task deletes expired rows in small batches.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::store::{Retained, Store};

/// How old data is removed on this server.
#[derive(Debug, Clone, Serialize)]
pub struct Lifecycle {
    /// `timescaledb` (policies run inside the database for telemetry) or `pruning`.
    pub mode: &'static str,
    pub telemetry_retention_days: u32,
    pub spawn_retention_days: u32,
    /// TimescaleDB only.
    pub compress_after_days: Option<u32>,
    pub prune_interval_secs: u64,
}

impl Lifecycle {
    /// Sets up the TimescaleDB policies when the store runs on it; reports the mode either way.
    pub async fn apply(store: &Store, settings: &Settings) -> Self {
        let mut mode = "pruning";
        if let Store::Postgres(pg) = store
            && pg.timescaledb()
        {
            match pg
                .apply_timescale_policies(&crate::store::TimescalePolicies {
                    telemetry_retention_days: settings.retention_telemetry_days,
                    spawn_retention_days: settings.retention_spawns_days,
                    compress_after_days: settings.compress_after_days,
                    telemetry_chunk_hours: settings.telemetry_chunk_hours,
                    spawn_chunk_hours: settings.spawn_chunk_hours,
                })
                .await
            {
                Ok(()) => {
                    tracing::info!(
                        retention_days = settings.retention_telemetry_days,
                        compress_after_days = settings.compress_after_days,
                        "TimescaleDB policies applied (retention, compression, hourly kills)"
                    );
                    mode = "timescaledb";
                }
                Err(err) => tracing::warn!(
                    %err,
                    "cannot apply TimescaleDB policies; falling back to periodic pruning"
                ),
            }
        } else if store.backend() == crate::store::Backend::Postgres {
            tracing::info!(
                "TimescaleDB not available: skipping compression, retention policies and the \
                 hourly-kills aggregate; a periodic task prunes expired rows instead"
            );
        }
        Self {
            mode,
            telemetry_retention_days: settings.retention_telemetry_days,
            spawn_retention_days: settings.retention_spawns_days,
            compress_after_days: (mode == "timescaledb").then_some(settings.compress_after_days),
            prune_interval_secs: settings.prune_interval_secs,
        }
    }

    /// What a pruning pass must delete: (table, retention days), skipping what TimescaleDB
    /// already drops by itself.
    fn targets(&self) -> Vec<(Retained, u32)> {
        let mut out = Vec::new();
        if self.mode != "timescaledb" && self.telemetry_retention_days > 0 {
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
        metrics.rows_pruned.fetch_add(total, Ordering::Relaxed);
        total
    }

    /// Prunes now and then every `prune_interval_secs` until `stop`.
    pub async fn run(
        self: Arc<Self>,
        store: Store,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) {
        if self.targets().is_empty() {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(self.prune_interval_secs.max(1)));
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {
                    self.prune_once(&store, &metrics).await;
                }
            }
        }
    }
}
