//! `/history` and `/trails`: stored telemetry for analysts and the map.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::csv::{self, CsvRow};
use super::paging::{self, PageParams};
use super::params::{self, Format};
use super::{ApiError, characters_covered, require_character};
use crate::state::AppState;
use crate::store::{HistoryQuery, TelemetryRecord, TrailPoint, TrailQuery, WorldQuery};
use crate::web::auth::Reader;
use crate::web::error::{QueryRefusals, UnknownCharacter};
use crate::web::extract::Query;

/// Default and hard cap of the `/trails` window, in seconds.
pub(crate) const TRAILS_DEFAULT_SECS: i64 = 600;
pub(crate) const TRAILS_MAX_SECS: i64 = 7 * 24 * 3600;
/// Most points one `/trails` answer carries.
pub(crate) const TRAILS_MAX_POINTS: i64 = 250_000;

/// Parameters of `/history`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryParams {
    /// Only this character (404 if it was never seen).
    #[param(max_length = 64)]
    character: Option<String>,
    /// Inclusive start, RFC 3339 (UTC). `from_ts` is accepted too.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// Alias of `from` (the original tracker's name).
    #[param(value_type = Option<String>, format = DateTime)]
    from_ts: Option<String>,
    /// Exclusive end, RFC 3339 (UTC). `to_ts` is accepted too.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    /// Alias of `to` (the original tracker's name).
    #[param(value_type = Option<String>, format = DateTime)]
    to_ts: Option<String>,
}

/// One page of telemetry.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HistoryPage {
    data: Vec<TelemetryRecord>,
    /// Pass as `cursor` to get the next page; null on the last page.
    next_cursor: Option<String>,
}

impl CsvRow for TelemetryRecord {
    const HEADER: &'static str = "id,timestamp,character_name,char_tag,session_id,ew,ns,z,kills,\
        kills_per_hour,onlinetime,deaths,total_deaths,rares_found,prismatic_taper_count,vt_state,\
        mem_mb,cpu_pct,mem_handles,latency_ms";

    fn write(&self, out: &mut String) {
        use std::fmt::Write;
        let t = &self.telemetry;
        let _ = write!(out, "{},{},", self.id, t.timestamp.to_rfc3339());
        csv::field(out, &t.character_name);
        out.push(',');
        csv::field(out, t.char_tag.as_deref().unwrap_or(""));
        out.push(',');
        csv::field(out, &t.session_id);
        let _ = write!(out, ",{},{},{},{},", t.ew, t.ns, t.z, t.kills);
        csv::opt(out, t.kills_per_hour);
        out.push(',');
        csv::field(out, t.onlinetime.as_deref().unwrap_or(""));
        let _ = write!(out, ",{},", t.deaths);
        csv::opt(out, t.total_deaths);
        let _ = write!(out, ",{},", t.rares_found);
        csv::opt(out, t.prismatic_taper_count);
        out.push(',');
        csv::field(out, t.vt_state.as_deref().unwrap_or(""));
        out.push(',');
        csv::opt(out, t.mem_mb);
        out.push(',');
        csv::opt(out, t.cpu_pct);
        out.push(',');
        csv::opt(out, t.mem_handles);
        out.push(',');
        csv::opt(out, t.latency_ms);
    }
}

impl CsvRow for TrailPoint {
    const HEADER: &'static str = "character_name,timestamp,ew,ns,z";

    fn write(&self, out: &mut String) {
        csv::field(out, &self.character_name);
        out.push_str(&format!(
            ",{},{},{},{}",
            self.timestamp.to_rfc3339(),
            self.ew,
            self.ns,
            self.z
        ));
    }
}

/// Telemetry rows, oldest first, paged with a cursor.
#[utoipa::path(get, path = "/history", security(("session" = []), ("token" = []), ()), params(HistoryParams, PageParams), tag = "telemetry",
    responses(
        (status = 200, description = "A page of telemetry rows (or CSV with format=csv)", content((HistoryPage = "application/json"), (String = "text/csv"))),
        QueryRefusals,
        UnknownCharacter,
    ))]
pub(crate) async fn history(
    _reader: Reader,
    State(state): State<AppState>,
    Query(p): Query<HistoryParams>,
    Query(paging): Query<PageParams>,
) -> Result<Response, ApiError> {
    let (from, to) = params::range(
        alias("from", p.from.as_deref(), "from_ts", p.from_ts.as_deref())?,
        alias("to", p.to.as_deref(), "to_ts", p.to_ts.as_deref())?,
    )?;
    let character = params::name("character", p.character.as_deref())?;
    if let Some(name) = &character {
        require_character(&state, name).await?;
    }
    let store = state.store.clone();
    let fetch = move |after, limit| {
        let store = store.clone();
        let query = HistoryQuery {
            character: character.clone(),
            from,
            to,
            after,
            limit,
        };
        async move { store.history(&query).await }
    };
    paging::answer(
        &state,
        &paging,
        "history.csv",
        fetch,
        |data, next_cursor| HistoryPage { data, next_cursor },
    )
    .await
}

/// A parameter that may also be given under its original tracker's name: one of the two, never
/// both (an alias next to the name used to be ignored, even when it was invalid).
fn alias<'a>(
    name: &str,
    value: Option<&'a str>,
    alias: &str,
    alias_value: Option<&'a str>,
) -> Result<Option<&'a str>, ApiError> {
    match (value, alias_value) {
        (Some(_), Some(_)) => Err(ApiError::BadRequest(format!(
            "give `{name}` or `{alias}`, not both"
        ))),
        (value, alias_value) => Ok(value.or(alias_value)),
    }
}

/// Parameters of `/trails`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TrailsParams {
    /// Window length in seconds, ending now: 1 to 604800, default 600 (ignored with `from`).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 604800)]
    seconds: Option<String>,
    /// Start of a past window, RFC 3339 (UTC), for replays; with `to` (default: now). The window
    /// is at most 604800 s.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// End (inclusive) of the window given by `from`, RFC 3339 (UTC).
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    /// Only this character (404 if it was never seen).
    #[param(max_length = 64)]
    character: Option<String>,
    /// Keep at most one point per character per `step` seconds (1 to 3600).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 3600)]
    step: Option<String>,
    /// `json` (default) or `csv`.
    #[param(value_type = Option<Format>)]
    format: Option<String>,
}

/// Trail points grouped by character, each trail in time order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Trails {
    trails: Vec<TrailPoint>,
}

/// Recent positions per character, optionally thinned on the server.
#[utoipa::path(get, path = "/trails", security(("session" = []), ("token" = []), ()), params(TrailsParams), tag = "telemetry",
    responses(
        (status = 200, description = "Trail points (or CSV with format=csv)", content((Trails = "application/json"), (String = "text/csv"))),
        QueryRefusals,
        UnknownCharacter,
    ))]
pub(crate) async fn trails(
    _reader: Reader,
    State(state): State<AppState>,
    Query(p): Query<TrailsParams>,
) -> Result<Response, ApiError> {
    let seconds = params::number::<i64>("seconds", p.seconds.as_deref(), 1, TRAILS_MAX_SECS)?
        .unwrap_or(TRAILS_DEFAULT_SECS);
    let step = params::number::<i64>("step", p.step.as_deref(), 1, 3600)?;
    let format = params::format(p.format.as_deref())?;
    let character = params::name("character", p.character.as_deref())?;
    let (from, to) = params::range(p.from.as_deref(), p.to.as_deref())?;
    let (since, until) = match (from, to) {
        (Some(from), to) => (from, to.unwrap_or_else(Utc::now)),
        (None, Some(_)) => {
            return Err(ApiError::BadRequest("`to` needs `from`".into()));
        }
        (None, None) => {
            let now = Utc::now();
            (now - chrono::Duration::seconds(seconds), now)
        }
    };
    if (until - since).num_seconds() > TRAILS_MAX_SECS {
        return Err(ApiError::BadRequest(format!(
            "the window between `from` and `to` is longer than {TRAILS_MAX_SECS} seconds"
        )));
    }
    let query = TrailQuery {
        since,
        until: from.is_some().then_some(until),
        character,
        step,
        limit: TRAILS_MAX_POINTS,
    };
    // Memory answers cost CPU too (tens of milliseconds for every character): admitted like
    // database ones, so a flood of requests cannot take the machine from ingest.
    let _permit = state.queries.admit().await?;
    let trails = if state.live.recent().covers(&query) {
        // A recent window comes from memory; the database is asked only whether a character
        // that has no recent point exists at all (404 otherwise).
        let trails = state.live.recent().trails(&query);
        if let Some(name) = &query.character
            && trails.is_empty()
        {
            require_character(&state, name).await?;
        }
        trails
    } else {
        if let Some(name) = &query.character {
            require_character(&state, name).await?;
        }
        let characters = characters_covered(&state, query.character.as_deref(), since).await?;
        state.queries.check_range(
            since,
            until,
            characters,
            "pass `character` or a shorter window (`seconds`, or `from`/`to`)",
        )?;
        state.store.trails(&query).await?
    };
    Ok(match format {
        Format::Json => Json(Trails { trails }).into_response(),
        Format::Csv => csv::whole("trails.csv", &trails),
    })
}

/// Parameters of `/world`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WorldParams {
    /// The instant to show, RFC 3339 (UTC).
    #[param(value_type = String, format = DateTime, required = true)]
    at: Option<String>,
    /// How far before `at` a character's latest telemetry may be and still place it: 1 to 3600
    /// seconds, default 120 (thinned history keeps one row per 30 s).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 3600)]
    lookback: Option<String>,
}

/// The world as it was at one instant.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct World {
    at: chrono::DateTime<Utc>,
    lookback_secs: i64,
    /// Each character's latest telemetry at or before `at` (within the lookback), by name.
    characters: Vec<TelemetryRecord>,
}

/// Most characters one `/world` answer carries.
pub(crate) const WORLD_MAX_CHARACTERS: i64 = 5_000;

/// Every character's position, state and counters as of `at`: what a replay of the map shows.
#[utoipa::path(get, path = "/world", security(("session" = []), ("token" = []), ()), params(WorldParams), tag = "telemetry",
    responses(
        (status = 200, description = "Each character's latest telemetry at or before `at`", body = World),
        QueryRefusals,
    ))]
pub(crate) async fn world(
    _reader: Reader,
    State(state): State<AppState>,
    Query(p): Query<WorldParams>,
) -> Result<Json<World>, ApiError> {
    let at = params::time("at", p.at.as_deref())?
        .ok_or_else(|| ApiError::BadRequest("`at` is required (an RFC 3339 time)".into()))?;
    let lookback =
        params::number::<i64>("lookback", p.lookback.as_deref(), 1, 3600)?.unwrap_or(120);
    let since = at - chrono::Duration::seconds(lookback);
    let characters = state
        .store
        .world_at(&WorldQuery {
            at,
            since,
            limit: WORLD_MAX_CHARACTERS,
        })
        .await?;
    Ok(Json(World {
        at,
        lookback_secs: lookback,
        characters,
    }))
}
