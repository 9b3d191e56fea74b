//! The application state shared by every handler and session: cheap to clone, all handles. It is
//! assembled once, in [`crate::Server::new`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::Cluster;
use crate::config::Settings;
use crate::identity::Directory;
use crate::limits::{QueryBudget, RateLimiter};
use crate::live::{ConnId, Live};
use crate::ops::alerts::{self, Alerts};
use crate::ops::lifecycle::Lifecycle;
use crate::ops::metrics::Metrics;
use crate::spool::Spool;
use crate::store::Store;

/// Failed authentications (plugin secrets, sign-ins) one client may have in a minute before it
/// gets 429.
pub(crate) const AUTH_FAILURES_PER_MINUTE: u32 = 10;

/// Failed sign-ins one account may have in a quarter of an hour before it gets 429.
pub(crate) const LOGIN_FAILURES_PER_ACCOUNT: u32 = 5;

/// Entries of one kind the event log keeps per character per ten minutes, for what a plugin can
/// repeat at will (connections, disconnections, level changes): a plugin reconnecting in a loop,
/// or flipping its level back and forth, cannot grow the log at its frame rate.
pub(crate) const LOG_ENTRIES_PER_CHARACTER: u32 = 10;

/// The long-lived parts the state is assembled from.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) store: Store,
    pub(crate) live: Arc<Live>,
    pub(crate) lifecycle: Arc<Lifecycle>,
    pub(crate) cluster: Cluster,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) directory: Arc<Directory>,
    pub(crate) spool: Spool,
}

/// Handles to everything a request or session needs.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    /// Where accepted events go (durably) on their way to the database writer.
    pub spool: Spool,
    /// Cancelled when the server starts shutting down; every session watches it.
    pub shutdown: CancellationToken,
    /// Tracks websocket sessions, which axum detaches from the HTTP server, so shutdown can wait
    /// for them.
    pub sessions: TaskTracker,
    pub started: Instant,
    /// How old data is removed (for `/debug`).
    pub lifecycle: Arc<Lifecycle>,
    /// Webhook alerts (disabled without a webhook).
    pub alerts: Alerts,
    /// Admission of expensive queries.
    pub queries: Arc<QueryBudget>,
    /// Failed plugin authentications per client, to slow down secret guessing.
    pub auth_failures: Arc<RateLimiter>,
    /// Failed sign-ins per account.
    pub login_failures: Arc<RateLimiter<String>>,
    /// Event log entries written per character and kind (connections, disconnections, levels).
    pub log_budget: Arc<RateLimiter<(String, crate::store::HappeningKind)>>,
    /// Who may use the tracker.
    pub directory: Arc<Directory>,
    /// Browser sockets open per client address and per account.
    pub browsers: Arc<crate::limits::Occupancy>,
    /// The other instances of this tracker, when there are any (for `/debug`).
    pub cluster: Cluster,
    next_conn: Arc<AtomicU64>,
}

impl AppState {
    /// Assembles the state. Alerts start here (they stop with [`AppState::shutdown`]).
    pub(crate) fn new(settings: Settings, core: Core) -> Self {
        let shutdown = CancellationToken::new();
        let Core {
            store,
            live,
            lifecycle,
            cluster,
            metrics,
            directory,
            spool,
        } = core;
        Self {
            queries: Arc::new(QueryBudget::new(settings.query_limits())),
            alerts: alerts::start(&settings, spool.clone(), shutdown.clone()),
            settings: Arc::new(settings),
            store,
            live,
            metrics,
            spool,
            shutdown,
            sessions: TaskTracker::new(),
            started: Instant::now(),
            lifecycle,
            auth_failures: Arc::new(RateLimiter::new(
                AUTH_FAILURES_PER_MINUTE,
                Duration::from_secs(60),
            )),
            login_failures: Arc::new(RateLimiter::new(
                LOGIN_FAILURES_PER_ACCOUNT,
                Duration::from_secs(15 * 60),
            )),
            log_budget: Arc::new(RateLimiter::new(
                LOG_ENTRIES_PER_CHARACTER,
                Duration::from_secs(10 * 60),
            )),
            directory,
            browsers: Arc::new(crate::limits::Occupancy::default()),
            cluster,
            next_conn: Arc::new(AtomicU64::new(1)),
        }
    }

    /// A fresh id for a plugin connection.
    pub(crate) fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Events accepted and not stored yet (in the spool).
    pub(crate) fn queue_depth(&self) -> usize {
        usize::try_from(self.spool.status().depth).unwrap_or(usize::MAX)
    }
}
