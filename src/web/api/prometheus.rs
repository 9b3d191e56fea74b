//! `GET /metrics`: every metric in the Prometheus text exposition format (rendered by
//! `crate::ops::metrics`), and the middleware that times HTTP requests per route.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;
use crate::web::auth::Scraper;

/// Times every request and records it under its route template (`/stats/{character}`, not the
/// concrete path, so the number of series stays bounded).
pub(crate) async fn track_http(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // A fixed set of labels: any made-up method would otherwise create a new series.
    let method = match *req.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let started = Instant::now();
    let response = next.run(req).await;
    state
        .metrics
        .observe_http(method, &route, started.elapsed());
    response
}

/// Prometheus metrics of this process.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    security(("token" = []), ("session" = []), ()),
    description = "Open on a loopback tracker; beyond loopback it needs `Authorization: Bearer` with METRICS_TOKEN or an API token.",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain"),
        (status = 401, description = "Beyond loopback without METRICS_TOKEN or an API token", body = crate::web::error::ErrorBody),
        (status = 429, description = "Too many failed authentications from this client", body = crate::web::error::ErrorBody),
    ))]
pub(crate) async fn metrics(State(state): State<AppState>, _scraper: Scraper) -> Response {
    let m = &state.metrics;
    let spool = state.spool.status();
    m.write_queue_depth
        .set(i64::try_from(spool.depth).unwrap_or(i64::MAX));
    m.spool_bytes
        .set(i64::try_from(spool.bytes).unwrap_or(i64::MAX));
    m.spool_oldest_age_seconds.set(spool.oldest_age_secs);
    m.spool_max_bytes
        .set(i64::try_from(spool.max_bytes).unwrap_or(i64::MAX));
    if let Some((free, size)) = state.spool.disk() {
        m.spool_disk_free_bytes
            .set(i64::try_from(free).unwrap_or(i64::MAX));
        m.spool_disk_size_bytes
            .set(i64::try_from(size).unwrap_or(i64::MAX));
    }
    m.healthy
        .set(i64::from(super::status::degraded(&state).is_none()));
    m.write_failing_seconds.set({
        let since = m
            .write_failing_since_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        if since == 0 {
            0.0
        } else {
            crate::ops::metrics::now_ms().saturating_sub(since) as f64 / 1000.0
        }
    });
    m.live_characters
        .set(i64::try_from(state.live.live_count()).unwrap_or(i64::MAX));
    let skewed = state.live.clocks.report();
    m.clock_skewed_characters
        .set(i64::try_from(skewed.len()).unwrap_or(i64::MAX));
    m.clock_skew_max_seconds.set(
        skewed
            .first()
            .map_or(0.0, |s| s.offset_ms.unsigned_abs() as f64 / 1000.0),
    );
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        m.render(),
    )
        .into_response()
}
