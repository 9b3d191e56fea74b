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

/// Whether the database takes writes.
#[derive(Serialize)]
struct WriteStatus {
    /// When the database last took a write (RFC 3339), if it has.
    last_ok: Option<chrono::DateTime<chrono::Utc>>,
    /// Seconds writes have been failing (0: they succeed).
    failing_for_secs: f64,
    /// Failed writes since the last success.
    failure_streak: u64,
    last_error: Option<String>,
}

impl WriteStatus {
    fn of(state: &AppState) -> Self {
        use std::sync::atomic::Ordering;
        let m = &state.metrics;
        let now = crate::ops::metrics::now_ms();
        let since = m.write_failing_since_ms.load(Ordering::Relaxed);
        let ok = m.last_write_ok_ms.load(Ordering::Relaxed);
        Self {
            last_ok: (ok > 0)
                .then(|| chrono::DateTime::from_timestamp_millis(ok as i64))
                .flatten(),
            failing_for_secs: if since == 0 {
                0.0
            } else {
                now.saturating_sub(since) as f64 / 1000.0
            },
            failure_streak: m.write_failure_streak.load(Ordering::Relaxed),
            last_error: if since == 0 {
                None
            } else {
                m.last_write_error.lock().ok().and_then(|e| e.clone())
            },
        }
    }
}

#[derive(Serialize)]
struct DebugBody {
    version: &'static str,
    /// The commit this build was made from ("unknown" when it was built without its history).
    commit: &'static str,
    uptime_secs: u64,
    backend: Backend,
    timescaledb: bool,
    live_characters: usize,
    /// What the live state holds (characters leave it EVICT_OFFLINE_SECS after going offline).
    memory: crate::live::LiveMemory,
    /// Expensive queries running now.
    heavy_queries: usize,
    /// Events accepted and not stored yet (all of them in the spool).
    queue_depth: usize,
    /// The spool: depth, bytes, age of the oldest event not stored yet, refusals.
    spool: crate::spool::SpoolStatus,
    /// The database's side: when it last took a write, and the current failure streak.
    writes: WriteStatus,
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
    /// Plugins whose clock is off.
    clocks: ClockStatus,
}

/// Characters whose plugin clock was off on a frame in the last ten minutes.
#[derive(Serialize)]
struct ClockStatus {
    /// `CLOCK_SKEW_SECS`: offsets beyond it are placed on the tracker's clock (0: trusted).
    tolerance_secs: u64,
    /// How many characters' clocks are off.
    skewed: usize,
    /// The [`CLOCKS_LISTED`] largest offsets.
    characters: Vec<crate::live::clocks::Skew>,
}

/// Most skewed characters listed by `/debug`.
const CLOCKS_LISTED: usize = 100;

impl ClockStatus {
    fn of(state: &AppState) -> Self {
        let mut characters = state.live.clocks.report();
        let skewed = characters.len();
        characters.truncate(CLOCKS_LISTED);
        Self {
            tolerance_secs: state.settings.sessions.clock_skew_secs,
            skewed,
            characters,
        }
    }
}

/// Version, uptime, backend, connections, queue depth and counters.
#[utoipa::path(get, path = "/debug", tag = "operations", security(("session" = []), ("token" = []), ()),
    responses((status = 200, description = "Server state: version, uptime, backend, memory, queue, lifecycle, alerts and every counter", body = Object),
        AuthRefusals))]
pub(crate) async fn debug(_reader: Reader, State(state): State<AppState>) -> Json<impl Serialize> {
    Json(DebugBody {
        version: env!("CARGO_PKG_VERSION"),
        commit: env!("DERETH_COMMIT"),
        uptime_secs: state.started.elapsed().as_secs(),
        backend: state.store.backend(),
        timescaledb: state.store.timescaledb(),
        live_characters: state.live.live_count(),
        memory: state.live.memory(),
        heavy_queries: state.queries.running(),
        queue_depth: state.queue_depth(),
        spool: state.spool.status(),
        writes: WriteStatus::of(&state),
        live_window_secs: state.settings.sessions.live_window_secs,
        plugin_auth_configured: state.settings.access.shared_secret.is_some(),
        command_token_configured: state.settings.access.command_token.is_some(),
        lifecycle: (*state.lifecycle).clone(),
        alerts_enabled: state.alerts.enabled(),
        alerts: state.alerts.stats.clone(),
        counters: state.metrics.snapshot(),
        cluster: state.cluster.status(),
        clocks: ClockStatus::of(&state),
    })
}

/// 200 when the database answers within a few seconds, 503 otherwise.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses(
        (status = 200, description = "The tracker works", body = HealthBody, example = json!({"status": "ok"})),
        (status = 503, description = "The database does not answer or cannot be written, the spool is full or failing, stored events lag behind, or ingest has stalled", body = HealthBody,
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

/// Writes failing for this long make the tracker unhealthy (a single retried failure does not).
const WRITES_FAILING_MS: u64 = 2_000;

/// Why the tracker is not doing its job although the database answers, if it is not: the spool
/// cannot take frames, the database cannot be written, stored events lag far behind, or plugins
/// are connected but telemetry stopped.
pub(crate) fn degraded(state: &AppState) -> Option<String> {
    use std::sync::atomic::Ordering;
    let now = crate::ops::metrics::now_ms();
    let settings = &state.settings;
    let spool = state.spool.status();
    if spool.failing {
        return Some(
            "the spool cannot be written (disk full or failing): frames are refused".into(),
        );
    }
    if state.spool.has_room().is_err() {
        return Some(format!(
            "the spool is full ({} bytes): frames are refused until the database stores them",
            spool.bytes
        ));
    }
    let m = &state.metrics;
    let failing_since = m.write_failing_since_ms.load(Ordering::Relaxed);
    let never_written = m.last_write_ok_ms.load(Ordering::Relaxed) == 0;
    if failing_since > 0
        && (never_written || now.saturating_sub(failing_since) >= WRITES_FAILING_MS)
    {
        let why = m
            .last_write_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_default();
        return Some(format!(
            "the database cannot be written (for {} s): {why}",
            now.saturating_sub(failing_since) / 1000
        ));
    }
    // Writes succeed but fall behind (a slow database, or a backlog being replayed).
    let backlog = settings.health.health_queue_full_secs;
    if backlog > 0 && spool.oldest_age_secs > backlog as f64 {
        return Some(format!(
            "stored events lag {} s behind ({} events waiting in the spool)",
            spool.oldest_age_secs as u64, spool.depth
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
