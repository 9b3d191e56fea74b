//! `/live`, `/debug` and `/health`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::live::LiveEntry;
use crate::ops::metrics::MetricsSnapshot;
use crate::protocol::LivePlayer;
use crate::state::AppState;
use crate::store::Backend;
use crate::web::auth::Reader;
use crate::web::error::AuthRefusals;

/// How long `/health` waits for the database.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// Every live character.
#[derive(Serialize, ToSchema)]
pub(crate) struct LiveBody<'a> {
    players: Vec<LivePlayer<'a>>,
}

/// Every character heard from within the live window, with its latest telemetry and totals.
#[utoipa::path(get, path = "/live", tag = "live", security(("session" = []), ("token" = []), ()),
    responses((status = 200, description = "Flat telemetry plus totals and last_seen per character", body = LiveBody),
        AuthRefusals))]
pub(crate) async fn live(_reader: Reader, State(state): State<AppState>) -> Response {
    let entries = state.live.live_entries();
    let players = entries.iter().map(LiveEntry::as_player).collect();
    Json(LiveBody { players }).into_response()
}

#[derive(Serialize)]
struct DebugBody {
    version: &'static str,
    uptime_secs: u64,
    backend: Backend,
    timescaledb: bool,
    live_characters: usize,
    /// What the live state holds (characters leave it EVICT_OFFLINE_SECS after going offline).
    memory: crate::live::LiveMemory,
    /// Expensive queries running now.
    heavy_queries: usize,
    queue_depth: usize,
    queue_capacity: usize,
    live_window_secs: u64,
    plugin_auth_configured: bool,
    command_token_configured: bool,
    lifecycle: crate::ops::lifecycle::Lifecycle,
    alerts_enabled: bool,
    alerts: std::sync::Arc<crate::ops::alerts::AlertStats>,
    #[serde(flatten)]
    counters: MetricsSnapshot,
    /// The other instances of this tracker (`bus: none` for a single instance).
    cluster: crate::cluster::ClusterStatus,
}

/// Version, uptime, backend, connections, queue depth and counters.
#[utoipa::path(get, path = "/debug", tag = "operations", security(("session" = []), ("token" = []), ()),
    responses((status = 200, description = "Server state: version, uptime, backend, memory, queue, lifecycle, alerts and every counter", body = Object),
        AuthRefusals))]
pub(crate) async fn debug(_reader: Reader, State(state): State<AppState>) -> Json<impl Serialize> {
    Json(DebugBody {
        version: env!("CARGO_PKG_VERSION"),
        uptime_secs: state.started.elapsed().as_secs(),
        backend: state.store.backend(),
        timescaledb: state.store.timescaledb(),
        live_characters: state.live.live_count(),
        memory: state.live.memory(),
        heavy_queries: state.queries.running(),
        queue_depth: state.queue_depth(),
        queue_capacity: state.queue.max_capacity(),
        live_window_secs: state.settings.sessions.live_window_secs,
        plugin_auth_configured: state.settings.access.shared_secret.is_some(),
        command_token_configured: state.settings.access.command_token.is_some(),
        lifecycle: (*state.lifecycle).clone(),
        alerts_enabled: state.alerts.enabled(),
        alerts: state.alerts.stats.clone(),
        counters: state.metrics.snapshot(),
        cluster: state.cluster.status(),
    })
}

/// 200 when the database answers within a few seconds, 503 otherwise.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses(
        (status = 200, description = "The tracker works", body = HealthBody, example = json!({"status": "ok"})),
        (status = 503, description = "The database does not answer, or ingest has stalled", body = HealthBody,
            example = json!({"status": "unavailable", "error": "database unavailable"})),
    ))]
pub(crate) async fn health(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(HEALTH_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => match degraded(&state) {
            Some(reason) => {
                tracing::warn!(%reason, "health check: degraded");
                unavailable(&reason)
            }
            None => {
                let body = HealthBody {
                    status: "ok",
                    error: None,
                };
                (StatusCode::OK, Json(body)).into_response()
            }
        },
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "health check: database unavailable");
            unavailable("database unavailable")
        }
        Err(_) => unavailable("database did not answer in time"),
    }
}

/// Why the tracker is not doing its job although the database answers, if it is not: plugins are
/// connected but telemetry stopped, or the writer queue has been full for a while.
fn degraded(state: &AppState) -> Option<String> {
    use std::sync::atomic::Ordering;
    let now = crate::ops::metrics::now_ms();
    let settings = &state.settings;
    // A full queue also stops telemetry; report the cause, not the symptom.
    let full_since = state.metrics.queue_full_since_ms.load(Ordering::Relaxed);
    if full_since > 0
        && now.saturating_sub(full_since) > settings.health.health_queue_full_secs * 1000
    {
        return Some(format!(
            "the writer queue has been full for {} s",
            now.saturating_sub(full_since) / 1000
        ));
    }
    let plugins = state.metrics.plugins_connected.get();
    if settings.health.health_stale_secs > 0 && plugins > 0 {
        let last = state.metrics.last_telemetry_ms.load(Ordering::Relaxed);
        let started_ms = now.saturating_sub(state.started.elapsed().as_millis() as u64);
        let silent_ms = now.saturating_sub(last.max(started_ms));
        if silent_ms > settings.health.health_stale_secs * 1000 {
            return Some(format!(
                "no telemetry for {} s while {plugins} plugins are connected",
                silent_ms / 1000
            ));
        }
    }
    None
}

fn unavailable(reason: &str) -> Response {
    let body = HealthBody {
        status: "unavailable",
        error: Some(reason.to_owned()),
    };
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// The answer of `/health`.
#[derive(Serialize, ToSchema)]
pub(crate) struct HealthBody {
    /// `ok` or `unavailable`.
    status: &'static str,
    /// Why the tracker is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}
