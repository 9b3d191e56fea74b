//! `GET /metrics`: the counters in Prometheus text exposition format, and the middleware that
//! times HTTP requests per route.

use std::fmt::Write;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::metrics::HistogramSnapshot;
use crate::state::AppState;

/// Times every request and records it under its route template (`/stats/{character}`, not the
/// concrete path, so the number of series stays bounded).
pub async fn track_http(State(state): State<AppState>, req: Request, next: Next) -> Response {
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

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

fn histogram_lines(out: &mut String, name: &str, labels: &str, h: &HistogramSnapshot) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (le, n) in &h.cumulative {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.count);
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum_secs);
    let _ = writeln!(out, "{name}_count{braces} {}", h.count);
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus metrics of this process.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let m = state.metrics.snapshot();
    let mut out = String::with_capacity(4096);
    let _ = writeln!(
        out,
        "# HELP dereth_frames_received_total Plugin frames accepted, by type.\n\
         # TYPE dereth_frames_received_total counter"
    );
    for (kind, n) in &m.frames_received {
        let _ = writeln!(out, "dereth_frames_received_total{{type=\"{kind}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP dereth_frames_unhandled_total Plugin frames of types the tracker does not \
         handle (ignored), by type.\n\
         # TYPE dereth_frames_unhandled_total counter"
    );
    for (kind, n) in &m.frames_unhandled {
        let kind = escape_label(kind);
        let _ = writeln!(out, "dereth_frames_unhandled_total{{type=\"{kind}\"}} {n}");
    }
    counter(
        &mut out,
        "dereth_frames_not_relayed_total",
        "Relayed frame types too large to pass on to browsers.",
        m.frames_not_relayed,
    );
    counter(
        &mut out,
        "dereth_frames_rejected_total",
        "Frames rejected as invalid (plugins and browsers).",
        m.frames_rejected,
    );
    counter(
        &mut out,
        "dereth_connections_refused_total",
        "Websocket connections refused (authentication or connection caps).",
        m.connections_refused,
    );
    counter(
        &mut out,
        "dereth_rows_written_total",
        "Events written to the database.",
        m.rows_written,
    );
    counter(
        &mut out,
        "dereth_frames_unclaimed_total",
        "Plugin frames refused because another live connection owns their character.",
        m.frames_unclaimed,
    );
    counter(
        &mut out,
        "dereth_write_failures_total",
        "Failed database batch writes (each is retried).",
        m.write_failures,
    );
    counter(
        &mut out,
        "dereth_batches_replayed_total",
        "Retried batches found already committed (their commit reply was lost); written once.",
        m.batches_replayed,
    );
    counter(
        &mut out,
        "dereth_events_dropped_total",
        "Events given up on (rejected by the database or unflushed at shutdown).",
        m.events_dropped,
    );
    counter(
        &mut out,
        "dereth_broadcast_lag_total",
        "Times a browser fell behind and was resynced with a snapshot.",
        m.broadcast_lagged,
    );
    counter(
        &mut out,
        "dereth_commands_relayed_total",
        "Browser commands written to plugin connections.",
        m.commands_relayed,
    );
    counter(
        &mut out,
        "dereth_peers_timed_out_total",
        "Connections closed because the peer stopped answering.",
        m.peers_timed_out,
    );
    gauge(
        &mut out,
        "dereth_write_queue_depth",
        "Events waiting for the database writer.",
        state.queue_depth() as u64,
    );
    gauge(
        &mut out,
        "dereth_write_queue_capacity",
        "Capacity of the writer queue.",
        state.queue.max_capacity() as u64,
    );
    gauge(
        &mut out,
        "dereth_plugins_connected",
        "Open plugin connections.",
        m.plugins_connected,
    );
    gauge(
        &mut out,
        "dereth_browsers_connected",
        "Open browser connections.",
        m.browsers_connected,
    );
    gauge(
        &mut out,
        "dereth_live_characters",
        "Characters heard from within the live window.",
        state.live.live_count() as u64,
    );
    let _ = writeln!(
        out,
        "# HELP dereth_write_batch_seconds Time to write one batch to the database.\n\
         # TYPE dereth_write_batch_seconds histogram"
    );
    histogram_lines(
        &mut out,
        "dereth_write_batch_seconds",
        "",
        &state.metrics.write_batch_seconds.snapshot(),
    );
    let _ = writeln!(
        out,
        "# HELP dereth_http_request_duration_seconds HTTP request durations by route.\n\
         # TYPE dereth_http_request_duration_seconds histogram"
    );
    for ((method, route), h) in state.metrics.http_snapshots() {
        let labels = format!(
            "method=\"{}\",route=\"{}\"",
            escape_label(&method),
            escape_label(&route)
        );
        histogram_lines(
            &mut out,
            "dereth_http_request_duration_seconds",
            &labels,
            &h,
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
