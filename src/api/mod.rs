//! HTTP endpoints other than the websockets: live state, operations (debug, health, metrics),
//! stored telemetry and events, statistics, and the OpenAPI document describing them all.

mod csv;
mod error;
mod events;
mod history;
mod openapi;
mod params;
mod prometheus;
mod stats;
mod status;

pub use error::{ApiError, ErrorBody};
pub use openapi::{openapi_document, routes};
pub use params::Query;
pub use prometheus::track_http;

use crate::state::AppState;
use crate::store::CharacterSummary;

/// The character's summary, or a 404 naming it.
async fn require_character(state: &AppState, name: &str) -> Result<CharacterSummary, ApiError> {
    state
        .store
        .character(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown character `{name}`")))
}
