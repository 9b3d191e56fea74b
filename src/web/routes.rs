//! The one place the router is assembled: every HTTP route and both websockets, registered with
//! their OpenAPI descriptions (so `GET /openapi.json` cannot drift from what is served), the map
//! as the fallback, and the layers every request passes (limits, timing, host check, security
//! headers, tracing).

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes as api_routes;

use crate::state::AppState;
use crate::web::api::{account, events, groups, history, log, prometheus, stats, status};
use crate::web::{access, assets, sockets};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Dereth Tracker",
        description = "Live telemetry, history and statistics of Asheron's Call characters. \
                       Times are UTC RFC 3339; errors are `{\"error\": \"...\"}`. The websocket \
                       frames are documented in EVENT_FORMATS.json. Reading character data needs \
                       a signed-in viewer (session cookie from POST /login) or an API token \
                       (`Authorization: Bearer ...`), except on a loopback tracker with no \
                       account or with PUBLIC_READ; `/health` and this document are open."
    ),
    components(schemas(crate::web::api::params::Format)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "accounts", description = "Signing in, accounts (admins), saved groups and the audit trail"),
        (name = "live", description = "Websockets and live state"),
        (name = "telemetry", description = "Stored telemetry"),
        (name = "events", description = "Spawns, rares, teleports and the event log"),
        (name = "stats", description = "Characters, leaderboards, series"),
        (name = "operations", description = "Health, debug, metrics, this document"),
    )
)]
struct ApiDoc;

/// Who may call what: a signed-in browser's session cookie or an API token for people and
/// scripts, a plugin key for plugins.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::web::auth::SESSION_COOKIE,
                "Set by POST /login (HttpOnly, SameSite=Strict)",
            ))),
        );
        components.add_security_scheme(
            "plugin_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Plugin-Secret",
                "A plugin key (`dereth-tracker key add NAME`) or the legacy SHARED_SECRET; old \
                 plugins may send it as the `secret` query parameter instead",
            ))),
        );
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token (`dereth-tracker token add NAME --role viewer`)",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every route with its documentation. Query endpoints are gzip-compressed when the client
/// accepts it; the websocket upgrades are left alone.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(api_routes!(status::live))
        .routes(api_routes!(history::history))
        .routes(api_routes!(history::trails))
        .routes(api_routes!(history::world))
        .routes(api_routes!(log::log))
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
        .routes(api_routes!(account::login))
        .routes(api_routes!(account::logout))
        .routes(api_routes!(account::me))
        .routes(api_routes!(account::users, account::add_user))
        .routes(api_routes!(account::change_user, account::remove_user))
        .routes(api_routes!(account::audit))
        .routes(api_routes!(groups::groups))
        .routes(api_routes!(groups::put_group, groups::remove_group))
        // The fastest gzip level: large answers (trails, CSV) compress 3-4x faster than at the
        // default level for a few percent more bytes.
        .layer(CompressionLayer::new().quality(tower_http::CompressionLevel::Fastest))
        .routes(api_routes!(sockets::plugin_socket))
        .routes(api_routes!(sockets::browser_socket))
}

/// The OpenAPI document as JSON, built once.
pub(crate) fn openapi_document() -> &'static str {
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
pub(crate) async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi_document(),
    )
        .into_response()
}

/// Largest HTTP request body accepted (no endpoint takes a body today).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Every route the tracker serves, with request limits, timing, security headers and tracing.
pub(crate) fn router(state: AppState) -> Router {
    let timeout = Duration::from_secs(state.settings.server.request_timeout_secs);
    let (routes, _) = routes().split_for_parts();
    let header = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(
            axum::http::HeaderName::from_static(name),
            axum::http::HeaderValue::from_static(value),
        )
    };
    routes
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(assets::handler)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            prometheus::track_http,
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
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A known path asked with a method it does not serve, answered with the JSON error body (the
/// `Allow` header lists the methods it does serve).
async fn method_not_allowed() -> crate::web::error::ApiError {
    crate::web::error::ApiError::MethodNotAllowed(
        "this endpoint does not answer that method; see `Allow`",
    )
}
