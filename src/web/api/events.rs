//! `/spawns`, `/rares`, `/portals` and the spawn and rare heatmaps.

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::csv::{self, CsvRow};
use super::paging::{self, PageParams};
use super::params;
use super::{ApiError, characters_covered, require_character};
use crate::state::AppState;
use crate::store::{EventKind, EventQuery, EventRecord, HeatCell, HeatmapQuery};
use crate::web::auth::Reader;
use crate::web::error::{QueryRefusals, UnknownCharacter};
use crate::web::extract::Query;

/// Heatmap bins, in map units (the map spans about 204 units; a landblock is 0.8).
pub(crate) const BIN_DEFAULT: f64 = 2.0;
pub(crate) const BIN_MIN: f64 = 0.5;
pub(crate) const BIN_MAX: f64 = 50.0;
/// Heatmaps cover the last day unless a range is given; at most 366 days.
const HEATMAP_DEFAULT_SPAN: chrono::Duration = chrono::Duration::days(1);

/// Parameters of `/spawns` and `/rares`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventParams {
    /// Only this character (404 if it was never seen).
    #[param(max_length = 64)]
    character: Option<String>,
    /// Only this mob (`/spawns`) or item (`/rares`).
    #[param(max_length = 64)]
    name: Option<String>,
    /// Inclusive start, RFC 3339 (UTC).
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// Exclusive end, RFC 3339 (UTC).
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
}

/// A page of spawns or rares.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventPage {
    data: Vec<EventRecord>,
    next_cursor: Option<String>,
}

impl CsvRow for EventRecord {
    const HEADER: &'static str = "id,timestamp,character_name,name,session_id,ew,ns,z";

    fn write(&self, out: &mut String) {
        out.push_str(&format!("{},{},", self.id, self.timestamp.to_rfc3339()));
        csv::field(out, &self.character_name);
        out.push(',');
        csv::field(out, &self.label);
        out.push(',');
        csv::field(out, self.session_id.as_deref().unwrap_or(""));
        out.push_str(&format!(",{},{},{}", self.ew, self.ns, self.z));
    }
}

async fn events(
    state: AppState,
    kind: EventKind,
    p: EventParams,
    paging: PageParams,
) -> Result<Response, ApiError> {
    let (from, to) = params::range(p.from.as_deref(), p.to.as_deref())?;
    let character = params::name("character", p.character.as_deref())?;
    if let Some(name) = &character {
        require_character(&state, name).await?;
    }
    let label = params::name("name", p.name.as_deref())?;
    let filename = match kind {
        EventKind::Spawns => "spawns.csv",
        EventKind::Rares => "rares.csv",
        EventKind::Portals => "portals.csv",
    };
    let store = state.store.clone();
    let fetch = move |after, limit| {
        let store = store.clone();
        let query = EventQuery {
            character: character.clone(),
            label: label.clone(),
            from,
            to,
            after,
            limit,
        };
        async move { store.events(kind, &query).await }
    };
    paging::answer(&state, &paging, filename, fetch, |data, next_cursor| {
        EventPage { data, next_cursor }
    })
    .await
}

/// Spawns, oldest first, paged with a cursor. `name` filters by mob.
#[utoipa::path(get, path = "/spawns", security(("session" = []), ("token" = []), ()), params(EventParams, PageParams), tag = "events",
    responses(
        (status = 200, description = "A page of spawns (or CSV)", content((EventPage = "application/json"), (String = "text/csv"))),
        QueryRefusals,
        UnknownCharacter,
    ))]
pub(crate) async fn spawns(
    _reader: Reader,
    State(state): State<AppState>,
    Query(p): Query<EventParams>,
    Query(paging): Query<PageParams>,
) -> Result<Response, ApiError> {
    events(state, EventKind::Spawns, p, paging).await
}

/// Rare finds, oldest first, paged with a cursor. `name` filters by item.
#[utoipa::path(get, path = "/rares", security(("session" = []), ("token" = []), ()), params(EventParams, PageParams), tag = "events",
    responses(
        (status = 200, description = "A page of rares (or CSV)", content((EventPage = "application/json"), (String = "text/csv"))),
        QueryRefusals,
        UnknownCharacter,
    ))]
pub(crate) async fn rares(
    _reader: Reader,
    State(state): State<AppState>,
    Query(p): Query<EventParams>,
    Query(paging): Query<PageParams>,
) -> Result<Response, ApiError> {
    events(state, EventKind::Rares, p, paging).await
}

/// Teleports (`portal` frames: portals, recalls), oldest first, paged with a cursor: the lines of
/// a character's timeline and the places its trail breaks. `name` filters by portal name.
#[utoipa::path(get, path = "/portals", security(("session" = []), ("token" = []), ()), params(EventParams, PageParams), tag = "events",
    responses(
        (status = 200, description = "A page of teleports (or CSV)", content((EventPage = "application/json"), (String = "text/csv"))),
        QueryRefusals,
        UnknownCharacter,
    ))]
pub(crate) async fn portals(
    _reader: Reader,
    State(state): State<AppState>,
    Query(p): Query<EventParams>,
    Query(paging): Query<PageParams>,
) -> Result<Response, ApiError> {
    events(state, EventKind::Portals, p, paging).await
}

/// Parameters of the heatmaps.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HeatmapParams {
    /// Inclusive start, RFC 3339 (UTC); default: a day before `to`; at most 366 days before `to`.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// Exclusive end, RFC 3339 (UTC); default: now.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    /// Cell size in map units, 0.5 to 50, default 2.
    #[param(value_type = Option<f64>, minimum = 0.5, maximum = 50.0)]
    bin: Option<String>,
    /// Only this mob (spawns) or item (rares).
    #[param(max_length = 64)]
    name: Option<String>,
}

/// Counts per grid cell.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Heatmap {
    /// Cell size in map units.
    bin: f64,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    /// Non-empty cells; `ew`/`ns` are each cell's south-west corner.
    cells: Vec<HeatCell>,
}

async fn heatmap(
    state: AppState,
    kind: EventKind,
    p: HeatmapParams,
) -> Result<Json<Heatmap>, ApiError> {
    let (from, to) =
        params::range_or_default(p.from.as_deref(), p.to.as_deref(), HEATMAP_DEFAULT_SPAN)?;
    if to - from > chrono::Duration::days(366) {
        return Err(ApiError::BadRequest(
            "the range between `from` and `to` is longer than 366 days".into(),
        ));
    }
    let bin = params::number("bin", p.bin.as_deref(), BIN_MIN, BIN_MAX)?.unwrap_or(BIN_DEFAULT);
    let query = HeatmapQuery {
        kind,
        from,
        to,
        bin,
        label: params::name("name", p.name.as_deref())?,
    };
    let _permit = state.queries.admit().await?;
    // Spawns are about as many as telemetry rows; rares are few.
    if kind == EventKind::Spawns && !state.store.heatmap_from_cells(&query) {
        let characters = characters_covered(&state, None, from).await?;
        state.queries.check_range(
            from,
            to,
            characters,
            "ask for a shorter range (`from`, `to`), or leave out `name` and use a `bin` that is \
             a multiple of 2 (answered from hourly counts)",
        )?;
    }
    let cells = state.store.heatmap(&query).await?;
    Ok(Json(Heatmap {
        bin,
        from,
        to,
        cells,
    }))
}

/// Spawn counts on a map grid, computed in the database.
#[utoipa::path(get, path = "/spawns/heatmap", security(("session" = []), ("token" = []), ()), params(HeatmapParams), tag = "events",
    responses(
        (status = 200, description = "Spawn counts per cell", body = Heatmap),
        QueryRefusals,
    ))]
pub(crate) async fn spawn_heatmap(
    _reader: Reader,
    State(state): State<AppState>,
    Query(p): Query<HeatmapParams>,
) -> Result<Json<Heatmap>, ApiError> {
    heatmap(state, EventKind::Spawns, p).await
}

/// Rare counts on a map grid, computed in the database.
#[utoipa::path(get, path = "/rares/heatmap", security(("session" = []), ("token" = []), ()), params(HeatmapParams), tag = "events",
    responses(
        (status = 200, description = "Rare counts per cell", body = Heatmap),
        QueryRefusals,
    ))]
pub(crate) async fn rare_heatmap(
    _reader: Reader,
    State(state): State<AppState>,
    Query(p): Query<HeatmapParams>,
) -> Result<Json<Heatmap>, ApiError> {
    heatmap(state, EventKind::Rares, p).await
}
