//! Dereth Tracker: a real-time telemetry server and live map for Asheron's Call characters.
//!
//! One frame's path: the plugin's socket (`web` lets it in, `sessions::plugin` reads it) ->
//! [`protocol`] (parse, validate) -> `live::Live::apply` (count, keep, publish to browsers, share
//! with the other instances of a cluster) -> back in the session, the event goes into the bounded
//! queue of the `writer` task, which writes batches to the [`store`]. docs/ARCHITECTURE.md draws
//! the layers. [`Server`] wires the pieces together; `main` only parses configuration and calls
//! [`Server::run`].

// The layers, top to bottom: a module only uses those below it.
pub(crate) mod cluster;
pub mod config;
pub(crate) mod limits;
pub(crate) mod live;
pub(crate) mod net;
pub(crate) mod ops;
pub mod process;
pub mod protocol;
pub mod secret;
pub(crate) mod sessions;
pub(crate) mod state;
pub mod store;
pub(crate) mod web;
pub(crate) mod writer;
// Beside the layers: the in-process simulator (demo mode and `dereth-bench`).
pub mod demo;
pub mod simulate;
pub mod testing;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower::Layer;
use tower_http::normalize_path::NormalizePathLayer;

use crate::config::Settings;
use crate::live::Live;
use crate::live::recent::RecentTrails;
use crate::ops::lifecycle;
use crate::ops::metrics::Metrics;
use crate::state::AppState;
use crate::store::{Event, Store, StoreError};
use crate::web::{http_server, router};
use crate::writer::WriterConfig;
pub use crate::writer::WriterReport;

/// A tracker ready to serve: state assembled and live totals restored from the store.
#[derive(Debug)]
pub struct Server {
    state: AppState,
    queue: mpsc::Receiver<Event>,
    cluster: Option<cluster::Inbox>,
}

/// Why a tracker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("joining the cluster: {0}")]
    Cluster(#[from] cluster::BusError),
}

impl Server {
    /// Builds the state. Characters are brought into memory from `store` (totals and recent
    /// session baselines) when they first send, so start-up costs nothing per stored character.
    pub async fn new(settings: Settings, store: Store) -> Result<Self, StartError> {
        log_access_policy(&settings);
        let (cluster, inbox) = match &settings.cluster.cluster_bus {
            None => (cluster::Cluster::single(), None),
            Some(bus) => {
                let choice = cluster::BusChoice::parse(bus.expose()).map_err(cluster::BusError)?;
                let name = cluster::instance_name(settings.cluster.instance_name.as_deref());
                let (cluster, inbox) = cluster::Cluster::join(
                    &choice,
                    name,
                    &settings.database.database_url,
                    settings.database.database_password.as_ref(),
                )
                .await?;
                (cluster, Some(inbox))
            }
        };
        let recent = Arc::new(RecentTrails::new(settings.queries.trail_memory_secs));
        let live = Arc::new(Live::new(
            settings.live_window(),
            settings.sessions.broadcast_capacity,
            recent,
            cluster.clone(),
        ));
        let lifecycle = Arc::new(lifecycle::Lifecycle::apply(&store, &settings).await);
        lifecycle::warn_if_disk_too_small(&store, &settings).await;
        let (tx, rx) = mpsc::channel(settings.writer.write_queue_capacity);
        let metrics = Arc::new(Metrics::default());
        let state = AppState::new(settings, store, live, tx, lifecycle, cluster, metrics);
        Ok(Self {
            state,
            queue: rx,
            cluster: inbox,
        })
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &Settings {
        &self.state.settings
    }

    /// Serves on `listener` until `shutdown` completes; then stops accepting, ends every session,
    /// flushes the writer queue and closes the store.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<WriterReport> {
        let Self {
            state,
            queue,
            cluster: inbox,
        } = self;
        let leave = CancellationToken::new();
        let clustered = inbox.map(|inbox| {
            let member = live::Instance::new(state.live.clone(), state.metrics.clone());
            tokio::spawn(cluster::run(
                state.cluster.clone(),
                inbox,
                Arc::new(member),
                leave.clone(),
            ))
        });
        let writer_stop = CancellationToken::new();
        let writer = tokio::spawn(writer::run(
            state.store.clone(),
            queue,
            state.metrics.clone(),
            WriterConfig {
                batch_size: state.settings.writer.write_batch_size,
                flush_window: Duration::from_secs(state.settings.writer.shutdown_flush_secs),
            },
            writer_stop.clone(),
        ));
        let reaper = tokio::spawn(reap_offline(state.clone()));
        let coalescer = tokio::spawn(sessions::coalesce::run(
            state.live.clone(),
            state.settings.sessions.coalesce(),
            state.shutdown.clone(),
        ));
        let pruner = tokio::spawn(state.lifecycle.clone().run(
            state.store.clone(),
            state.metrics.clone(),
            state.shutdown.clone(),
        ));

        let stop = state.shutdown.clone();
        // Trailing slashes are trimmed before routing, so `/live/` (as the original tracker
        // served it) reaches `/live`.
        let app = NormalizePathLayer::trim_trailing_slash().layer(router(state.clone()));
        let limits = http_server::HttpLimits {
            header_read_timeout: Duration::from_secs(
                state.settings.server.header_read_timeout_secs,
            ),
            max_connections: state.settings.server.max_http_connections,
            shutdown_grace: Duration::from_secs(state.settings.server.shutdown_grace_secs),
        };
        let served = http_server::serve(listener, app, limits, async move {
            tokio::select! {
                () = shutdown => {}
                () = stop.cancelled() => {}
            }
            tracing::info!("shutting down: no new connections; closing sessions");
            stop.cancel();
        })
        .await;

        // Websocket sessions are detached from the HTTP server: wait for them explicitly, so
        // every frame they accepted is in the queue before the writer drains it.
        state.shutdown.cancel();
        state.sessions.close();
        state.sessions.wait().await;
        // Every session has released its characters: tell the cluster, then leave it.
        leave.cancel();
        if let Some(clustered) = clustered {
            let _ = tokio::time::timeout(Duration::from_secs(5), clustered).await;
        }
        writer_stop.cancel();
        let report = match writer.await {
            Ok(report) => report,
            Err(err) => {
                tracing::error!(%err, "writer task failed");
                WriterReport::default()
            }
        };
        let _ = reaper.await;
        let _ = coalescer.await;
        let _ = pruner.await;
        state.store.close().await;
        served.map(|()| report)
    }
}

/// Says at startup who may connect and command, and warns about settings that leave the
/// tracker open or useless.
fn log_access_policy(settings: &Settings) {
    if settings.access.shared_secret.is_none() {
        tracing::warn!(
            "no shared secret configured: every plugin connection will be refused. Set one with \
             SHARED_SECRET=<secret> (or --shared-secret <secret>) and configure the same secret \
             in the plugin"
        );
    }
    let loopback = net::is_loopback(settings.server.bind_addr.ip());
    match (&settings.access.command_token, loopback) {
        (None, true) => tracing::info!(
            "no command token configured: only browsers on this machine (loopback, not through \
             a proxy) may send commands to plugins; set COMMAND_TOKEN to allow others"
        ),
        (None, false) => tracing::warn!(
            "no command token configured and the tracker listens beyond loopback: commands to \
             plugins are disabled; set COMMAND_TOKEN to enable them"
        ),
        (Some(_), _) => {}
    }
    if !loopback && settings.access.allowed_hosts.is_empty() {
        tracing::warn!(
            "ALLOWED_HOSTS is not set: every host name is served; set it to the public name(s) \
             of this tracker to refuse DNS-rebinding requests"
        );
    }
}

/// Announces characters that went silent, once a second, and lets those offline for
/// EVICT_OFFLINE_SECS leave memory while the writer has nothing queued.
async fn reap_offline(state: AppState) {
    let evict_after = Duration::from_secs(state.settings.sessions.evict_offline_secs);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = tick.tick() => {
                let idle = state.queue_depth() == 0;
                let gone = state.live.reap(idle.then_some(evict_after));
                state.live.recent().trim();
                if gone > 0 {
                    tracing::debug!(gone, "characters went offline");
                }
            }
        }
    }
}
