//! The access rules of the web edge applied to every request: the `Host` allow-list (DNS
//! rebinding). The rules themselves are in [`crate::net`].

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::net::host_allowed;
use crate::state::AppState;
use crate::web::error::ApiError;

/// Refuses requests whose `Host` is not served here (DNS rebinding).
pub(crate) async fn check_host(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    let settings = &state.settings;
    if host_allowed(
        &settings.access.allowed_hosts,
        settings.server.bind_addr,
        host,
    ) {
        return next.run(req).await;
    }
    ApiError::Forbidden(
        "this host name is not served here; add it to ALLOWED_HOSTS (comma-separated) to serve it"
            .into(),
    )
    .into_response()
}
