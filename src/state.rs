//! The application state shared by every handler and session: cheap to clone, all handles.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alerts::Alerts;
use crate::config::Settings;
use crate::lifecycle::Lifecycle;
use crate::live::{ConnId, Live};
use crate::metrics::Metrics;
use crate::store::{Event, Store};

/// Failed plugin authentications one client may have in a minute before it gets 429.
pub const AUTH_FAILURES_PER_MINUTE: u32 = 10;

/// Handles to everything a request or session needs.
#[derive(Debug, Clone)]
pub struct AppState {
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
    pub queries: Arc<crate::api::QueryBudget>,
    /// Failed plugin authentications per client, to slow down secret guessing.
    pub auth_failures: Arc<crate::access::RateLimiter>,
    /// Recent positions, for `/trails` without the database.
    pub recent: Arc<crate::recent::RecentTrails>,
    /// The other instances of this tracker, when there are any.
    pub cluster: crate::cluster::Cluster,
    next_conn: Arc<AtomicU64>,
}

impl AppState {
    /// Assembles the state; `queue` is the sending half of the writer's queue.
    pub fn new(
        settings: Settings,
        store: Store,
        live: Arc<Live>,
        queue: mpsc::Sender<Event>,
        lifecycle: Arc<Lifecycle>,
    ) -> Self {
        Self {
            queries: Arc::new(crate::api::QueryBudget::new(&settings)),
            recent: Arc::new(crate::recent::RecentTrails::new(
                settings.queries.trail_memory_secs,
            )),
            settings: Arc::new(settings),
            store,
            live,
            metrics: Arc::new(Metrics::default()),
            queue,
            shutdown: CancellationToken::new(),
            sessions: TaskTracker::new(),
            started: Instant::now(),
            lifecycle,
            alerts: Alerts::disabled(),
            auth_failures: Arc::new(crate::access::RateLimiter::new(
                AUTH_FAILURES_PER_MINUTE,
                std::time::Duration::from_secs(60),
            )),
            cluster: crate::cluster::Cluster::single(),
            next_conn: Arc::new(AtomicU64::new(1)),
        }
    }

    /// A fresh id for a plugin connection.
    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Events waiting in the writer's queue.
    pub fn queue_depth(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}
