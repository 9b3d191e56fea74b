//! Dereth Tracker: a real-time telemetry server and live map for Asheron's Call characters.
//!
//! One frame's path: the plugin's socket (`web` lets it in, `sessions::plugin` reads it) ->
//! [`protocol`] (parse, validate) -> `live::Live::apply` (count, keep, publish to browsers, share
//! with the other instances of a cluster) -> back in the session, the event goes into the bounded
//! queue of the `writer` task, which writes batches to the [`store`]. docs/ARCHITECTURE.md draws
//! the layers. [`Server`] wires the pieces together; `main` only parses configuration and calls
//! [`Server::run`].

// The layers, top to bottom (docs/ARCHITECTURE.md): web, sessions, state, live, cluster,
// writer, ops, config, identity, store, protocol, then limits, net, secret and process. A
// module only uses those below it. (rustfmt keeps this list in alphabetical order.)
pub(crate) mod cluster;
pub mod config;
pub(crate) mod identity;
pub(crate) mod limits;
pub(crate) mod live;
pub mod manage;
pub(crate) mod net;
pub(crate) mod ops;
pub mod process;
pub mod protocol;
pub mod secret;
pub(crate) mod sessions;
pub mod spool;
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
use tokio_util::sync::CancellationToken;
use tower::Layer;
use tower_http::normalize_path::NormalizePathLayer;

use crate::config::Settings;
use crate::live::Live;
pub use crate::live::compact::Encoding;
use crate::live::recent::RecentTrails;
pub use crate::ops::backup;
use crate::ops::lifecycle;
use crate::ops::metrics::Metrics;
use crate::state::AppState;
use crate::store::{Store, StoreError};
use crate::web::{http_server, router};
use crate::writer::WriterConfig;
pub use crate::writer::WriterReport;

/// Longest the tracker waits, at start, for the events a previous run left in the spool to be
/// stored before it serves.
const REPLAY_BEFORE_SERVING: Duration = Duration::from_secs(30);

/// A tracker ready to serve: state assembled and live totals restored from the store.
#[derive(Debug)]
pub struct Server {
    state: AppState,
    spooled: spool::SpoolReader,
    cluster: Option<cluster::Inbox>,
}

/// Why a tracker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("joining the cluster")]
    Cluster(#[from] cluster::BusError),
    #[error("opening the spool")]
    Spool(#[from] spool::OpenError),
}

impl Server {
    /// The live state this server serves (for tests and benchmarks that put characters in it
    /// without a plugin connection each: see [`crate::testing::apply_plugin_frame`]).
    pub fn live(&self) -> Arc<Live> {
        self.state.live.clone()
    }

    /// Builds the state. Characters are brought into memory from `store` (totals and recent
    /// session baselines) when they first send, so start-up costs nothing per stored character.
    pub async fn new(settings: Settings, store: Store) -> Result<Self, StartError> {
        let directory = Arc::new(
            identity::Directory::load(
                store.clone(),
                directory_config(&settings),
                identity::KeyLimits {
                    max_characters: settings.sessions.key_max_characters,
                    rares_per_minute: settings.sessions.key_rares_per_minute,
                },
            )
            .await?,
        );
        log_access_policy(&settings, &directory);
        let (cluster, inbox) = match &settings.cluster.cluster_bus {
            None => (cluster::Cluster::single(), None),
            Some(bus) => {
                let choice = cluster::BusChoice::parse(bus.expose()).map_err(cluster::BusError)?;
                let name = cluster::instance_name(settings.cluster.instance_name.as_deref());
                let (cluster, inbox) = cluster::Cluster::join(
                    &choice,
                    name,
                    settings.cluster.cluster_key.as_ref(),
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
            live::LiveLimits {
                sessions_per_hour: settings.sessions.sessions_per_character_per_hour,
                rares_per_minute: settings.sessions.rares_per_character_per_minute,
                late_slack: settings
                    .placement(chrono::Utc::now())
                    .tolerance
                    .unwrap_or_default(),
            },
        ));
        let lifecycle = Arc::new(lifecycle::Lifecycle::apply(&store, &settings).await);
        lifecycle::warn_if_disk_too_small(&store, &settings).await;
        let (spool, mut spooled) = spool::Spool::open(&settings.spool_options())?;
        // What the database already has of the spool is not replayed (the writer checks again
        // when it starts, should the database not answer now).
        if let Ok(Some(upto)) = store.spool_mark(spool.id()).await {
            spooled.skip_to(upto + 1);
            spool.already_stored(upto);
        }
        // Counted after the skip: events the database already has are not "from before".
        let pending = spool.status().replayed_at_start;
        if pending > 0 {
            tracing::info!(events = pending, dir = %settings.spool_options().dir.display(), "spool holds events from before the start; they are stored first");
        }
        let metrics = Arc::new(Metrics::default());
        // Learn at once whether the database can be written (a read-only file, a full disk):
        // `/health` says so from the start.
        match store.probe_write().await {
            Ok(()) => metrics.write_succeeded(),
            Err(err) => {
                tracing::error!(error = %err, "the database cannot be written; accepted events stay in the spool until it can");
                metrics.write_failed(&err);
            }
        }
        let core = state::Core {
            store,
            live,
            lifecycle,
            cluster,
            metrics,
            directory,
            spool,
        };
        let state = AppState::new(settings, core);
        Ok(Self {
            state,
            spooled,
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
            spooled,
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
            state.spool.clone(),
            spooled,
            state.metrics.clone(),
            WriterConfig {
                batch_size: state.settings.writer.write_batch_size,
                flush_window: Duration::from_secs(state.settings.writer.shutdown_flush_secs),
            },
            writer_stop.clone(),
        ));
        // Events a previous run accepted and did not store go first: until they are stored,
        // returning characters' totals in the database are behind (the sessions defer bringing
        // them back). Wait a while for that before serving, not for ever.
        if !state.spool.replayed() {
            let backlog = state.spool.status().depth;
            tracing::info!(
                events = backlog,
                "storing the spool's events from before the start before serving"
            );
            let until = tokio::time::Instant::now() + REPLAY_BEFORE_SERVING;
            while !state.spool.replayed() && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if !state.spool.replayed() {
                tracing::warn!(
                    left = state.spool.status().depth,
                    "serving before every spooled event is stored; the rest follows"
                );
            }
        }
        let reaper = tokio::spawn(reap_offline(state.clone()));
        let access = tokio::spawn(follow_access(state.clone()));
        let bindings = tokio::spawn(
            state
                .directory
                .clone()
                .store_bindings(state.shutdown.clone()),
        );
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
        if let Some(schedule) = ops::backup_schedule::BackupSchedule::from_settings(&state.settings)
        {
            tokio::spawn(ops::backup_schedule::run(
                schedule,
                state.metrics.backups.clone(),
                state.shutdown.clone(),
            ));
        }

        let stop = state.shutdown.clone();
        // When the shutdown began: everything after it fits in SHUTDOWN_GRACE_SECS +
        // SHUTDOWN_FLUSH_SECS, whatever state the database and the disk are in.
        let began = Arc::new(std::sync::OnceLock::<tokio::time::Instant>::new());
        let began_at = began.clone();
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
            let _ = began_at.set(tokio::time::Instant::now());
            tracing::info!("shutting down: no new connections; closing sessions");
            stop.cancel();
        })
        .await;
        let began = *began.get_or_init(tokio::time::Instant::now);
        let grace = Duration::from_secs(state.settings.server.shutdown_grace_secs);
        let flush = Duration::from_secs(state.settings.writer.shutdown_flush_secs);
        let deadline = began + grace + flush;

        // Websocket sessions are detached from the HTTP server: wait for them (within the
        // grace), so every frame they accepted is in the spool before the writer's last round.
        state.shutdown.cancel();
        state.sessions.close();
        if tokio::time::timeout_at(began + grace, state.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!("sessions still closing after the grace period; going on without them");
        }
        // Every session has released its characters: tell the cluster, then leave it.
        leave.cancel();
        if let Some(clustered) = clustered {
            let until = (tokio::time::Instant::now() + Duration::from_secs(5)).min(deadline);
            let _ = tokio::time::timeout_at(until, clustered).await;
        }
        writer_stop.cancel();
        // The writer stores what it can until its flush window ends; what it cannot stays in
        // the spool. Should the database hang a statement past the deadline, the writer is cut
        // off: its transaction never committed, so its events are still the spool's.
        let writer_abort = writer.abort_handle();
        let report = match tokio::time::timeout_at(deadline, writer).await {
            Ok(Ok(report)) => report,
            Ok(Err(err)) => {
                tracing::error!(%err, "writer task failed");
                WriterReport::default()
            }
            Err(_) => {
                writer_abort.abort();
                let left = state.spool.status().depth;
                tracing::warn!(
                    left,
                    "shutdown deadline reached with a database write in flight; its events stay in the spool"
                );
                WriterReport {
                    left,
                    ..WriterReport::default()
                }
            }
        };
        // The background tasks stop with the shutdown signal; one stuck in a database call is
        // not waited for past the deadline (or a moment, once it has passed).
        let now = tokio::time::Instant::now();
        let until = deadline.clamp(
            now + Duration::from_millis(200),
            now + Duration::from_secs(2),
        );
        let tasks = [reaper, access, bindings, coalescer, pruner];
        if tokio::time::timeout_at(until, futures_util::future::join_all(tasks))
            .await
            .is_err()
        {
            tracing::debug!("a background task did not stop in time");
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), state.store.close()).await;
        state.spool.close().await;
        served.map(|()| report)
    }
}

/// Says at startup who may read, command and connect plugins, and warns about settings that
/// leave the tracker open or useless.
fn log_access_policy(settings: &Settings, directory: &identity::Directory) {
    let access = &settings.access;
    let loopback = net::is_loopback(settings.server.bind_addr.ip());
    if access.public_read {
        tracing::warn!(
            "PUBLIC_READ is set: anyone who reaches the tracker reads every character's position, \
             chat and history (never commands)"
        );
    } else if directory.open_reads() {
        tracing::info!(
            "listening on loopback with no account: anyone on this machine may read the map; \
             reading will need an account as soon as one exists"
        );
    } else {
        tracing::info!("reading the map and the data needs a signed-in viewer or an API token");
    }
    if !loopback && !directory.has_accounts() {
        tracing::warn!(
            "the tracker listens beyond loopback and has no account yet: nobody can read or \
             command. Create the first admin with `dereth-tracker user add NAME --role admin` \
             (same DATABASE_URL; the password is read from standard input, or generated and \
             printed once), then sign in on the map"
        );
    }
    if directory.anyone_may_command() {
        tracing::info!(
            "demo mode on loopback: anyone on this machine may command the simulated characters"
        );
    } else {
        tracing::info!("commands need a signed-in commander or admin (every command is audited)");
    }
    if access.command_token.is_some() {
        tracing::warn!(
            "COMMAND_TOKEN is a legacy shared credential: it commands as `command-token`; give \
             people commander accounts instead"
        );
    }
    if !directory.plugins_can_connect() {
        tracing::warn!(
            "no plugin key and no shared secret: every plugin connection will be refused. Create \
             a key with `dereth-tracker key add NAME` (or set SHARED_SECRET) and configure it in \
             the plugin"
        );
    } else if access.shared_secret.is_some() && !loopback {
        tracing::warn!(
            "SHARED_SECRET is one key for every plugin: anyone holding it speaks for every \
             character bound to it. Give each player a key (`dereth-tracker key add NAME`) and \
             retire the shared secret (docs/OPERATIONS.md)"
        );
    }
    if !loopback && access.allowed_hosts.is_empty() {
        tracing::warn!(
            "ALLOWED_HOSTS is not set: every host name is served; set it to the public name(s) \
             of this tracker to refuse DNS-rebinding requests"
        );
    }
}

/// What the directory needs of the settings.
fn directory_config(settings: &Settings) -> identity::DirectoryConfig {
    let access = &settings.access;
    let legacy_secrets = [&access.shared_secret, &access.shared_secret_previous]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    identity::DirectoryConfig {
        public_read: access.public_read,
        loopback: net::is_loopback(settings.server.bind_addr.ip()),
        demo: settings.server.demo,
        legacy_secrets,
        command_token: access.command_token.clone(),
        proxy_default_role: access.auth_user_default_role,
        session_ttl: chrono::Duration::hours(
            i64::try_from(access.session_ttl_hours).unwrap_or(24 * 7),
        ),
    }
}

/// Reloads who may use the tracker when it changes (a key revoked or an account removed from the
/// command line or another instance closes its sockets within a second), and forgets expired
/// browser sessions once an hour.
async fn follow_access(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(err) = state.directory.refresh().await {
            tracing::debug!(%err, "could not check for access changes");
        }
        ticks += 1;
        if ticks % 3600 == 0 {
            let _ = state.store.prune_sessions(chrono::Utc::now()).await;
        }
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
