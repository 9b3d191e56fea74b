//! Every HTTP route of the tracker, registered together with its OpenAPI description so the
//! document (`GET /openapi.json`) cannot drift from what the router serves.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use tower_http::compression::CompressionLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes as api_routes;

use super::{events, history, prometheus, stats, status};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Dereth Tracker",
        description = "Live telemetry, history and statistics of Asheron's Call characters. \
                       Times are UTC RFC 3339; errors are `{\"error\": \"...\"}`. The websocket \
                       frames are documented in EVENT_FORMATS.json."
    ),
    components(schemas(super::params::Format)),
    tags(
        (name = "live", description = "Websockets and live state"),
        (name = "telemetry", description = "Stored telemetry"),
        (name = "events", description = "Spawns, rares and teleports"),
        (name = "stats", description = "Characters, leaderboards, series"),
        (name = "operations", description = "Health, debug, metrics, this document"),
    )
)]
struct ApiDoc;

/// Every route with its documentation. Query endpoints are gzip-compressed when the client
/// accepts it; the websocket upgrades are left alone.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(api_routes!(status::live))
        .routes(api_routes!(history::history))
        .routes(api_routes!(history::trails))
        .routes(api_routes!(history::world))
        .routes(api_routes!(events::spawns))
        .routes(api_routes!(events::rares))
        .routes(api_routes!(events::portals))
        .routes(api_routes!(events::spawn_heatmap))
        .routes(api_routes!(events::rare_heatmap))
        .routes(api_routes!(stats::characters))
        .routes(api_routes!(stats::sheet))
        .routes(api_routes!(stats::leaderboard))
        .routes(api_routes!(stats::character_stats))
        .routes(api_routes!(status::debug))
        .routes(api_routes!(status::health))
        .routes(api_routes!(prometheus::metrics))
        .routes(api_routes!(openapi_json))
        // The fastest gzip level: large answers (trails, CSV) compress 3-4x faster than at the
        // default level for a few percent more bytes.
        .layer(CompressionLayer::new().quality(tower_http::CompressionLevel::Fastest))
        .routes(api_routes!(crate::ingest::handler))
        .routes(api_routes!(crate::browser::handler))
}

/// The OpenAPI document as JSON, built once.
pub fn openapi_document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let (_, doc) = routes().split_for_parts();
        doc.to_pretty_json().unwrap_or_else(|err| {
            tracing::error!(%err, "cannot render the OpenAPI document");
            "{}".to_owned()
        })
    })
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json")))]
pub async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi_document(),
    )
        .into_response()
}
