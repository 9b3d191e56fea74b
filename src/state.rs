//! The application state shared by every handler and session: cheap to clone, all handles. It is
//! assembled once, in [`crate::Server::new`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::Cluster;
use crate::config::Settings;
use crate::limits::{QueryBudget, RateLimiter};
use crate::live::{ConnId, Live};
use crate::ops::alerts::{self, Alerts};
use crate::ops::lifecycle::Lifecycle;
use crate::ops::metrics::Metrics;
use crate::store::{Event, Store};

/// Failed plugin authentications one client may have in a minute before it gets 429.
pub(crate) const AUTH_FAILURES_PER_MINUTE: u32 = 10;

/// Handles to everything a request or session needs.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    /// The bounded queue into the writer task.
    pub queue: mpsc::Sender<Event>,
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
    /// The other instances of this tracker, when there are any (for `/debug`).
    pub cluster: Cluster,
    next_conn: Arc<AtomicU64>,
}

impl AppState {
    /// Assembles the state; `queue` is the sending half of the writer's queue. Alerts start
    /// here (they stop with [`AppState::shutdown`]).
    pub(crate) fn new(
        settings: Settings,
        store: Store,
        live: Arc<Live>,
        queue: mpsc::Sender<Event>,
        lifecycle: Arc<Lifecycle>,
        cluster: Cluster,
        metrics: Arc<Metrics>,
    ) -> Self {
        let shutdown = CancellationToken::new();
        Self {
            queries: Arc::new(QueryBudget::new(settings.query_limits())),
            alerts: alerts::start(&settings, shutdown.clone()),
            settings: Arc::new(settings),
            store,
            live,
            metrics,
            queue,
            shutdown,
            sessions: TaskTracker::new(),
            started: Instant::now(),
            lifecycle,
            auth_failures: Arc::new(RateLimiter::new(
                AUTH_FAILURES_PER_MINUTE,
                Duration::from_secs(60),
            )),
            cluster,
            next_conn: Arc::new(AtomicU64::new(1)),
        }
    }

    /// A fresh id for a plugin connection.
    pub(crate) fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Events waiting in the writer's queue.
    pub(crate) fn queue_depth(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}
