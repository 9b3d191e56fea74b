//! HTTP endpoints other than the websockets: live state, operations (debug, health, metrics),
//! stored telemetry and events, statistics. `crate::web::routes` registers them with their OpenAPI
//! descriptions.

pub(crate) mod account;
mod csv;
pub(crate) mod events;
pub(crate) mod groups;
pub(crate) mod history;
pub(crate) mod log;
pub(crate) mod paging;
pub(crate) mod params;
pub(crate) mod prometheus;
pub(crate) mod stats;
pub(crate) mod status;

use crate::state::AppState;
use crate::store::CharacterSummary;
use crate::web::error::{ApiError, ErrorBody};

/// The character's summary, or a 404 naming it.
async fn require_character(state: &AppState, name: &str) -> Result<CharacterSummary, ApiError> {
    state
        .store
        .character(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown character `{name}`")))
}

/// How many characters a query over data since `since` covers: one when it names a character,
/// otherwise every character seen since then.
async fn characters_covered(
    state: &AppState,
    character: Option<&str>,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<i64, ApiError> {
    match character {
        Some(_) => Ok(1),
        None => Ok(state.store.characters_seen_since(since).await?),
    }
}
