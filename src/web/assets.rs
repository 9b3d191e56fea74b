//! The map UI: the files under `static/`, built into the binary at compile time, or served from a
//! directory (`STATIC_DIR`) while developing the UI or to swap in a background image.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;
use tower::ServiceExt;
use tower_http::services::ServeDir;

use crate::state::AppState;
use crate::web::error::ApiError;

#[derive(RustEmbed)]
#[folder = "static/"]
struct Embedded;

/// Serves a UI file for any path no API route matched; unknown paths get the API's JSON 404.
pub(crate) async fn handler(State(state): State<AppState>, req: Request) -> Response {
    if let Some(dir) = &state.settings.server.static_dir {
        return serve_dir(dir, req).await;
    }
    let path = req.uri().path().trim_start_matches('/');
    let path = if path.is_empty() || path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_owned()
    };
    match Embedded::get(&path) {
        Some(file) => {
            let mime = file.metadata.mimetype();
            let mut resp = Body::from(file.data.into_owned()).into_response();
            if let Ok(v) = HeaderValue::from_str(mime) {
                resp.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            // The UI is small and changes with the binary: always revalidate.
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            if let Ok(v) =
                HeaderValue::from_str(&format!("\"{}\"", hex(&file.metadata.sha256_hash()[..8])))
            {
                resp.headers_mut().insert(header::ETAG, v);
            }
            resp
        }
        None => not_found(),
    }
}

async fn serve_dir(dir: &std::path::Path, req: Request) -> Response {
    match ServeDir::new(dir).oneshot(req).await {
        Ok(resp) if resp.status() == StatusCode::NOT_FOUND => not_found(),
        Ok(resp) => resp.map(Body::new),
        Err(err) => ApiError::Internal(Box::new(err)).into_response(),
    }
}

fn not_found() -> Response {
    ApiError::NotFound("no such endpoint".to_owned()).into_response()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
