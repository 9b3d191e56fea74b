//! The two websockets at the edge: who may open them (origin, secret, connection caps) before
//! the upgrade, then the sessions take over (`crate::sessions`).

use std::net::SocketAddr;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::live::compact::Encoding;
use crate::net;
use crate::ops::metrics::{self, ConnectionSlot, Peer};
use crate::sessions::browser::Session;
use crate::sessions::{plugin, socket};
use crate::state::AppState;
use crate::web::error::ApiError;
use crate::web::extract::Query;

/// Counts a refused connection and answers why.
fn refuse(state: &AppState, why: ApiError) -> Response {
    metrics::bump(&state.metrics.connections_refused);
    why.into_response()
}

/// Header carrying the plugin's shared secret.
pub(crate) const SECRET_HEADER: &str = "x-plugin-secret";

/// Query parameters of `/ws/position`.
#[derive(Debug, Deserialize)]
pub(crate) struct PositionQuery {
    /// Legacy way of passing the shared secret.
    secret: Option<String>,
}

/// The plugin websocket. The shared secret goes in the `X-Plugin-Secret` header (or the legacy
/// `secret` query parameter); frames are described in EVENT_FORMATS.json.
#[utoipa::path(get, path = "/ws/position", tag = "live", operation_id = "plugin_socket",
    security(("plugin_key" = [])),
    params(
        ("X-Plugin-Secret" = Option<String>, Header, description = "The plugin's key (or the legacy shared secret)"),
        ("secret" = Option<String>, Query, description = "Legacy way to pass the key"),
    ),
    responses(
        (status = 101, description = "Switching to the websocket protocol"),
        (status = 401, description = "Missing, wrong or revoked key, or no key configured", body = crate::web::error::ErrorBody),
        (status = 403, description = "Opened by a page of another origin", body = crate::web::error::ErrorBody),
        (status = 429, description = "Too many failed authentications from this client", body = crate::web::error::ErrorBody),
        (status = 503, description = "Too many plugin connections", body = crate::web::error::ErrorBody),
    ))]
pub(crate) async fn plugin_socket(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<PositionQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if !net::origin_allowed(&state.settings.access.allowed_origins, &headers) {
        return refuse(
            &state,
            ApiError::Forbidden(
                "plugin connections from pages of other origins are refused".into(),
            ),
        );
    }
    if !state.directory.plugins_can_connect() && !state.directory.catch_up().await {
        let why = ApiError::Unauthorized(
            "plugin connections are disabled: the server has no plugin key and no SHARED_SECRET",
        );
        return refuse(&state, why);
    }
    let client = net::client_ip(peer, &headers, &state.settings.access.trusted_proxy_nets);
    if state.auth_failures.is_limited(&client) {
        let why =
            ApiError::TooManyRequests("too many failed plugin authentications; wait a minute");
        return refuse(&state, why);
    }
    let presented = headers
        .get(SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .or(query.secret.as_deref());
    let mut key = presented.and_then(|p| state.directory.plugin_key(p));
    // A key created a moment ago (by `dereth-tracker key add`) works at once.
    if key.is_none() && presented.is_some() && state.directory.catch_up().await {
        key = presented.and_then(|p| state.directory.plugin_key(p));
    }
    let Some(key) = key else {
        metrics::bump(&state.metrics.connections_refused);
        // One log line per client per minute, however fast it guesses.
        if state.auth_failures.record(&client) == 1 {
            tracing::info!(%client, "plugin refused: missing, wrong or revoked key");
        }
        return ApiError::Unauthorized("missing, wrong or revoked plugin key").into_response();
    };
    let previous = state.settings.access.shared_secret_previous.as_ref();
    if presented.is_some_and(|p| previous.is_some_and(|old| old.matches(p))) {
        tracing::warn!(%peer, "plugin connected with the previous shared secret; update it");
    }
    state.auth_failures.clear(&client);
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let Some(slot) = ConnectionSlot::acquire(
        &state.metrics,
        Peer::Plugin,
        state.settings.sessions.max_plugins,
    ) else {
        return refuse(&state, ApiError::Unavailable("too many plugin connections"));
    };
    let tracker = state.sessions.token();
    socket::with_limits(upgrade, state.settings.sessions.max_plugin_message_bytes)
        .on_failed_upgrade(|err| tracing::debug!(%err, "plugin websocket upgrade failed"))
        .on_upgrade(move |socket| async move {
            let _tracked = tracker;
            let _slot = slot;
            let conn = state.next_conn_id();
            let span = tracing::info_span!("plugin", %peer, conn, key = %key);
            let _ =
                tracing::Instrument::instrument(plugin::run(socket, state, conn, key), span).await;
        })
}

/// Query parameters of `/ws/live`.
#[derive(Debug, Deserialize)]
pub(crate) struct LiveQuery {
    /// Command token, for browsers that may send commands.
    token: Option<String>,
    /// `1` (or `true`): the coalesced stream, one `batch` frame per tick (see `crate::sessions::coalesce`).
    coalesce: Option<String>,
    /// `json` (the default) or `compact` (see `crate::live::compact`).
    encoding: Option<String>,
}

/// The browser websocket: a `snapshot`, then live frames; accepts `subscribe` and command frames
/// (EVENT_FORMATS.json).
#[utoipa::path(get, path = "/ws/live", tag = "live", operation_id = "browser_socket",
    params(
        ("token" = Option<String>, Query, description = "Command token (legacy; send it in command frames instead: it is never logged there)"),
        ("coalesce" = Option<bool>, Query, description = "`1` or `true`: receive one `batch` frame per tick (COALESCE_MS) carrying every update since the previous one, instead of a frame per update"),
        ("encoding" = inline(Option<Encoding>), Query, description = "`json` (default) or `compact`: live characters as arrays of the columns named by a first `encoding` frame (EVENT_FORMATS.json)"),
    ),
    security(("session" = []), ("token" = []), ()),
    responses(
        (status = 101, description = "Switching to the websocket protocol"),
        (status = 401, description = "Not signed in (and reads are not open), or a wrong API token", body = crate::web::error::ErrorBody),
        (status = 403, description = "Opened by a page of another origin", body = crate::web::error::ErrorBody),
        (status = 429, description = "Too many live map connections from this client or account, or too many failed authentications", body = crate::web::error::ErrorBody),
        (status = 503, description = "Too many browser connections, or too many anonymous ones", body = crate::web::error::ErrorBody),
    ))]
pub(crate) async fn browser_socket(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<LiveQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !net::origin_allowed(&state.settings.access.allowed_origins, &headers) {
        tracing::debug!(%peer, "browser refused: foreign Origin");
        let why = ApiError::Forbidden(
            "pages of this origin may not open the live map socket; the tracker serves its own \
             map, or add the origin to ALLOWED_ORIGINS"
                .into(),
        );
        return refuse(&state, why);
    }
    let coalesced = match query.coalesce.as_deref() {
        None | Some("0" | "false") => false,
        Some("1" | "true") => true,
        Some(_) => {
            return ApiError::BadRequest("`coalesce` must be 1, true, 0 or false".into())
                .into_response();
        }
    };
    let encoding = match query.encoding.as_deref() {
        None => Encoding::Json,
        Some(name) => match Encoding::from_name(name) {
            Some(e) => e,
            None => {
                return ApiError::BadRequest("`encoding` must be json or compact".into())
                    .into_response();
            }
        },
    };
    let client = net::client_ip(peer, &headers, &state.settings.access.trusted_proxy_nets);
    // A client that keeps failing (wrong credentials, refused commands) waits out the minute.
    if state.auth_failures.is_limited(&client) {
        let why = ApiError::TooManyRequests("too many failed authentications; wait a minute");
        return refuse(&state, why);
    }
    let who = match crate::web::auth::principal(&state, peer, &headers).await {
        Ok(who) => who,
        Err(err) => return refuse(&state, err),
    };
    if who.is_none() && !state.directory.open_reads() {
        let why = ApiError::Unauthorized("sign in (or send an API token) to watch the live map");
        return refuse(&state, why);
    }
    // Sockets of nobody in particular are few (per client and in total); each account's too.
    let sessions = &state.settings.sessions;
    let places = match &who {
        Some(p) => vec![(
            format!("account:{}", p.name),
            sessions.max_browsers_per_account,
        )],
        None => {
            vec![
                ("anonymous".to_owned(), sessions.max_anonymous_browsers),
                (
                    format!("client:{client}"),
                    sessions.max_anonymous_browsers_per_client,
                ),
            ]
        }
    };
    let place = match state.browsers.take(&places) {
        Ok(place) => place,
        // Every anonymous place is taken: the tracker is full for anonymous maps.
        Err(0) if who.is_none() => {
            let why = ApiError::Unavailable("too many anonymous live map connections; sign in");
            return refuse(&state, why);
        }
        Err(_) => {
            let why =
                ApiError::TooManyRequests("too many live map connections from here; close some");
            return refuse(&state, why);
        }
    };
    let Some(slot) = ConnectionSlot::acquire(
        &state.metrics,
        Peer::Browser,
        state.settings.sessions.max_browsers,
    ) else {
        return refuse(
            &state,
            ApiError::Unavailable("too many browser connections"),
        );
    };
    let tracker = state.sessions.token();
    socket::with_limits(upgrade, state.settings.sessions.max_message_bytes)
        .on_failed_upgrade(|err| tracing::debug!(%err, "browser websocket upgrade failed"))
        .on_upgrade(move |socket| async move {
            let _tracked = tracker;
            let _slot = slot;
            let _place = place;
            let span = tracing::info_span!("browser", %peer);
            let session = Session::new(state, who, client, query.token, coalesced, encoding);
            tracing::Instrument::instrument(session.run(socket), span).await;
        })
}
