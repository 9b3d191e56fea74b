//! Dereth Tracker: a real-time telemetry server and live map for Asheron's Call characters.
//!
//! Data flows one way: socket -> [`protocol`] (parse, validate) -> [`live`] (update, broadcast)
//! -> [`writer`] (batch) -> [`store`]. [`Server`] wires the pieces together; `main` only parses
//! configuration and calls [`Server::run`].

pub mod access;
pub mod alerts;
pub mod api;
pub mod assets;
pub mod bench;
pub mod browser;
pub mod config;
pub mod demo;
pub mod http_server;
pub mod ingest;
pub mod lifecycle;
pub mod live;
pub mod metrics;
pub mod protocol;
pub mod session;
pub mod simulate;
pub mod state;
pub mod store;
pub mod writer;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower::Layer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::normalize_path::NormalizePathLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::Settings;
use crate::live::Live;
use crate::state::AppState;
use crate::store::{Event, Store, StoreError};
use crate::writer::{WriterConfig, WriterReport};

/// Largest HTTP request body accepted (no endpoint takes a body today).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Every route the tracker serves, with request limits, timing, security headers and tracing.
pub fn router(state: AppState) -> Router {
    let timeout = Duration::from_secs(state.settings.request_timeout_secs.max(1));
    let (routes, _) = api::routes().split_for_parts();
    let header = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(
            axum::http::HeaderName::from_static(name),
            axum::http::HeaderValue::from_static(value),
        )
    };
    routes
        .fallback(assets::handler)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::track_http,
        ))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::check_host,
        ))
        // The map is plain same-origin HTML/JS: nothing else may run, frame it or be sniffed.
        .layer(header("content-security-policy", CONTENT_SECURITY_POLICY))
        .layer(header("x-frame-options", "DENY"))
        .layer(header("x-content-type-options", "nosniff"))
        .layer(header("referrer-policy", "no-referrer"))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                // The path only: query strings can carry secrets (`?secret=`, `?token=`).
                tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
            }),
        )
        .with_state(state)
}

/// The map's content security policy: its own scripts, styles, images (and `data:` for the
/// favicon) and its own websocket; no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A tracker ready to serve: state assembled and live totals restored from the store.
#[derive(Debug)]
pub struct Server {
    state: AppState,
    queue: mpsc::Receiver<Event>,
}

impl Server {
    /// Builds the state. Characters are brought into memory from `store` (totals and recent
    /// session baselines) when they first send, so start-up costs nothing per stored character.
    pub async fn new(settings: Settings, store: Store) -> Result<Self, StoreError> {
        let live = Arc::new(Live::new(
            settings.live_window(),
            settings.broadcast_capacity,
        ));
        let lifecycle = Arc::new(lifecycle::Lifecycle::apply(&store, &settings).await);
        lifecycle::warn_if_disk_too_small(&store, &settings).await;
        let (tx, rx) = mpsc::channel(settings.write_queue_capacity.max(1));
        let mut state = AppState::new(settings, store, live, tx, lifecycle);
        state.alerts = alerts::start(&state.settings, state.shutdown.clone());
        Ok(Self { state, queue: rx })
    }

    /// The shared state (for tests and embedding).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves on `listener` until `shutdown` completes; then stops accepting, ends every session,
    /// flushes the writer queue and closes the store.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<WriterReport> {
        let Self { state, queue } = self;
        let writer_stop = CancellationToken::new();
        let writer = tokio::spawn(writer::run(
            state.store.clone(),
            queue,
            state.metrics.clone(),
            WriterConfig {
                batch_size: state.settings.write_batch_size,
                flush_window: Duration::from_secs(state.settings.shutdown_flush_secs),
            },
            writer_stop.clone(),
        ));
        let reaper = tokio::spawn(reap_offline(state.clone()));
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
                state.settings.header_read_timeout_secs.max(1),
            ),
            max_connections: state.settings.max_http_connections,
            shutdown_grace: Duration::from_secs(state.settings.shutdown_grace_secs),
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
        writer_stop.cancel();
        let report = match writer.await {
            Ok(report) => report,
            Err(err) => {
                tracing::error!(%err, "writer task failed");
                WriterReport::default()
            }
        };
        let _ = reaper.await;
        let _ = pruner.await;
        state.store.close().await;
        served.map(|()| report)
    }
}

/// Announces characters that went silent, once a second, and lets those offline for
/// EVICT_OFFLINE_SECS leave memory while the writer has nothing queued.
async fn reap_offline(state: AppState) {
    let evict_after = Duration::from_secs(state.settings.evict_offline_secs);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = tick.tick() => {
                let idle = state.queue_depth() == 0;
                let gone = state.live.reap(idle.then_some(evict_after));
                if gone > 0 {
                    tracing::debug!(gone, "characters went offline");
                }
            }
        }
    }
}
