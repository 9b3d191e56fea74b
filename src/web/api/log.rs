//! `/log`: the event log, what happened to characters (deaths, disconnects and connections,
//! level changes, rares, portals), newest first, from the database so it survives a reload.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::params;
use crate::state::AppState;
use crate::store::{LOG_KINDS, LogEntry, LogQuery};
use crate::web::auth::Reader;
use crate::web::error::{ApiError, QueryRefusals};
use crate::web::extract::Query;

/// Entries one answer carries at most.
const MAX_ENTRIES: i64 = 500;

/// Parameters of `/log`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogParams {
    /// Only this character.
    #[param(max_length = 64)]
    character: Option<String>,
    /// Only these kinds, comma-separated: `death`, `disconnect`, `connect`, `level`, `alert`
    /// (one went to the webhook), `rare`, `portal` (default: all).
    #[param(max_length = 64, pattern = "^[a-z,]*$")]
    kind: Option<String>,
    /// Only entries before this time, RFC 3339 (UTC); default: now. The next page is asked for
    /// with the oldest entry's time.
    #[param(value_type = Option<String>, format = DateTime)]
    before: Option<String>,
    /// Entries, 1 to 500, default 100.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
}

/// A page of the event log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Log {
    entries: Vec<LogEntry>,
}

/// What happened to characters, newest first: deaths, plugin disconnects and connections, level
/// changes, rares and portals.
#[utoipa::path(get, path = "/log", security(("session" = []), ("token" = []), ()), params(LogParams), tag = "events",
    responses(
        (status = 200, description = "The entries, newest first", body = Log),
        QueryRefusals,
    ))]
pub(crate) async fn log(
    _reader: Reader,
    State(state): State<AppState>,
    Query(p): Query<LogParams>,
) -> Result<Json<Log>, ApiError> {
    let kinds: Vec<String> = match p.kind.as_deref().map(str::trim) {
        None | Some("") => LOG_KINDS.iter().map(|k| (*k).to_owned()).collect(),
        Some(list) => {
            let mut kinds = Vec::new();
            for kind in list.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                if !LOG_KINDS.contains(&kind) {
                    return Err(ApiError::BadRequest(format!(
                        "`kind` takes {}, comma-separated",
                        LOG_KINDS.join(", ")
                    )));
                }
                kinds.push(kind.to_owned());
            }
            kinds
        }
    };
    let before = params::time("before", p.before.as_deref())?.unwrap_or_else(chrono::Utc::now);
    let limit = params::number::<i64>("limit", p.limit.as_deref(), 1, MAX_ENTRIES)?.unwrap_or(100);
    let character = p.character.filter(|c| !c.is_empty());
    if character.as_ref().is_some_and(|c| c.chars().count() > 64) {
        return Err(ApiError::BadRequest(
            "`character` is at most 64 characters".into(),
        ));
    }
    let entries = state
        .store
        .event_log(&LogQuery {
            character,
            kinds,
            before,
            limit,
        })
        .await?;
    Ok(Json(Log { entries }))
}
