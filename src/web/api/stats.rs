//! `/characters`, `/characters/{character}/sheet`, `/stats/leaderboard` and
//! `/stats/{character}`.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::params;
use super::{ApiError, ErrorBody, characters_covered, require_character};
use crate::protocol::CharacterSheet;
use crate::state::AppState;
use crate::store::{
    ActivityQuery, CharacterSummary, LeaderMetric, LeaderQuery, LeaderRow, ProgressPoint,
    ProgressQuery, SeriesPoint, SessionRares,
};
use crate::web::auth::Reader;
use crate::web::error::{QueryRefusals, UnknownCharacter};
use crate::web::extract::{Path, Query};

/// Most characters `/characters` lists.
const MAX_CHARACTERS: i64 = 100_000;
const DEFAULT_SPAN: chrono::Duration = chrono::Duration::days(1);
/// Longest range a stats query may cover.
const MAX_SPAN: chrono::Duration = chrono::Duration::days(366);
/// Most buckets one series may have.
const MAX_BUCKETS: i64 = 10_000;

/// Every character ever seen.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Characters {
    characters: Vec<CharacterSummary>,
}

/// Every character ever seen, with last seen, totals and deaths.
#[utoipa::path(get, path = "/characters", security(("session" = []), ("token" = []), ()), tag = "stats",
    responses(
        (status = 200, description = "Characters by name", body = Characters),
        (status = 503, description = "Too busy: retry later (`Retry-After`)", body = ErrorBody),
    ))]
pub(crate) async fn characters(
    _reader: Reader,
    State(state): State<AppState>,
) -> Result<Json<Characters>, ApiError> {
    let characters = state.store.characters(None, MAX_CHARACTERS).await?;
    Ok(Json(Characters { characters }))
}

/// Parameters of `/stats/leaderboard`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LeaderboardParams {
    /// `kills` (default), `kills_per_hour` or `rares`.
    #[param(value_type = Option<LeaderMetric>)]
    by: Option<String>,
    /// Inclusive start, RFC 3339 (UTC); default: a day before `to`; at most 366 days before `to`.
    /// Kills and kills per hour are counted by the hour: the hour `from` falls in counts from its
    /// start (the answer's `from` says so).
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// Exclusive end, RFC 3339 (UTC); default: now.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    /// Entries, 1 to 1000, default 10.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// A ranking over a time range.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Leaderboard {
    by: LeaderMetric,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    entries: Vec<LeaderRow>,
}

/// The range of a stats query: defaults to `default_span` before `to`, at most 366 days.
fn bounded_range(
    from: Option<&str>,
    to: Option<&str>,
    default_span: chrono::Duration,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let (from, to) = params::range_or_default(from, to, default_span)?;
    if to - from > MAX_SPAN {
        return Err(ApiError::BadRequest(
            "the range between `from` and `to` is longer than 366 days".into(),
        ));
    }
    Ok((from, to))
}

/// Characters ranked by kills, kills per hour or rares over a time range.
#[utoipa::path(get, path = "/stats/leaderboard", security(("session" = []), ("token" = []), ()), params(LeaderboardParams), tag = "stats",
    responses(
        (status = 200, description = "The ranking", body = Leaderboard),
        QueryRefusals,
    ))]
pub(crate) async fn leaderboard(
    _reader: Reader,
    State(state): State<AppState>,
    Query(p): Query<LeaderboardParams>,
) -> Result<Json<Leaderboard>, ApiError> {
    let by = match p.by.as_deref() {
        None | Some("kills") => LeaderMetric::Kills,
        Some("kills_per_hour") | Some("kph") => LeaderMetric::KillsPerHour,
        Some("rares") => LeaderMetric::Rares,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`by` must be `kills`, `kills_per_hour` or `rares`".into(),
            ));
        }
    };
    let (from, to) = bounded_range(p.from.as_deref(), p.to.as_deref(), DEFAULT_SPAN)?;
    let limit = params::number::<i64>("limit", p.limit.as_deref(), 1, 1000)?.unwrap_or(10);
    let _permit = state.queries.admit().await?;
    if by != LeaderMetric::Rares {
        let characters = characters_covered(&state, None, from).await?;
        state.queries.check_hours(
            from,
            to,
            characters,
            "ask for a shorter range (`from`, `to`)",
        )?;
    }
    let entries = state
        .store
        .leaderboard(&LeaderQuery {
            metric: by,
            from,
            to,
            limit,
        })
        .await?;
    let from = match by {
        LeaderMetric::Rares => from,
        LeaderMetric::Kills | LeaderMetric::KillsPerHour => crate::store::hour_of(from),
    };
    Ok(Json(Leaderboard {
        by,
        from,
        to,
        entries,
    }))
}

/// Parameters of `/stats/{character}`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CharacterStatsParams {
    /// Inclusive start, RFC 3339 (UTC); default: a day before `to`; at most 366 days before `to`.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// Exclusive end, RFC 3339 (UTC); default: now.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    /// Bucket length in seconds, 60 to 604800, default 3600.
    #[param(value_type = Option<i64>, minimum = 60, maximum = 604800)]
    bucket: Option<String>,
}

/// A character's activity over time.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CharacterStats {
    character: CharacterSummary,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket_secs: i64,
    /// Kills and average kills per hour per bucket (buckets without telemetry are absent).
    series: Vec<SeriesPoint>,
    /// Rares per session, most recent first (at most 100 sessions).
    rares_per_session: Vec<SessionRares>,
}

/// Kills per hour over time and rares per session for one character.
#[utoipa::path(get, path = "/stats/{character}", security(("session" = []), ("token" = []), ()), params(
        ("character" = String, Path, description = "Character name"),
        CharacterStatsParams,
    ), tag = "stats",
    responses(
        (status = 200, description = "The character's series", body = CharacterStats),
        QueryRefusals,
        UnknownCharacter,
    ))]
pub(crate) async fn character_stats(
    _reader: Reader,
    State(state): State<AppState>,
    Path(character): Path<String>,
    Query(p): Query<CharacterStatsParams>,
) -> Result<Json<CharacterStats>, ApiError> {
    let name = params::character(&character)?;
    let (from, to) = bounded_range(p.from.as_deref(), p.to.as_deref(), DEFAULT_SPAN)?;
    let bucket_secs =
        params::number::<i64>("bucket", p.bucket.as_deref(), 60, 7 * 24 * 3600)?.unwrap_or(3600);
    if (to - from).num_seconds() / bucket_secs > MAX_BUCKETS {
        return Err(ApiError::BadRequest(format!(
            "more than {MAX_BUCKETS} buckets: use a larger `bucket` or a shorter range"
        )));
    }
    let character = require_character(&state, &name).await?;
    let _permit = state.queries.admit().await?;
    state
        .queries
        .check_range(from, to, 1, "ask for a shorter range (`from`, `to`)")?;
    let series = state
        .store
        .activity(&ActivityQuery {
            character: name.clone(),
            from,
            to,
            bucket_secs,
        })
        .await?;
    let rares_per_session = state.store.session_rares(&name, 100).await?;
    Ok(Json(CharacterStats {
        character,
        from,
        to,
        bucket_secs,
        series,
        rares_per_session,
    }))
}

/// Progress covers the last 30 days unless a range is given.
const PROGRESS_DEFAULT_SPAN: chrono::Duration = chrono::Duration::days(30);

/// Parameters of `/characters/{character}/sheet`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SheetParams {
    /// Inclusive start of the progress series, RFC 3339 (UTC); default: 30 days before `to`; at
    /// most 366 days before `to`.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// Exclusive end of the progress series, RFC 3339 (UTC); default: now.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    /// Most progress points, 1 to 10000, default 1000 (the oldest first).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 10000)]
    limit: Option<String>,
}

/// A character's latest sheet and its progress over time.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Sheet {
    character: CharacterSummary,
    /// The latest `character_stats` frame as stored (level, experience, luminance, title,
    /// allegiance, attributes, skills), or null when the plugin never sent one.
    #[schema(value_type = Option<Object>)]
    latest: Option<CharacterSheet>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    /// Level, experience and luminance per stored sheet in the range, oldest first.
    progress: Vec<ProgressPoint>,
}

/// The character sheet (from the plugin's `character_stats` frames) and level progress.
#[utoipa::path(get, path = "/characters/{character}/sheet", security(("session" = []), ("token" = []), ()), params(
        ("character" = String, Path, description = "Character name"),
        SheetParams,
    ), tag = "stats",
    responses(
        (status = 200, description = "The latest sheet and the progress series", body = Sheet),
        QueryRefusals,
        UnknownCharacter,
    ))]
pub(crate) async fn sheet(
    _reader: Reader,
    State(state): State<AppState>,
    Path(character): Path<String>,
    Query(p): Query<SheetParams>,
) -> Result<Json<Sheet>, ApiError> {
    let name = params::character(&character)?;
    let (from, to) = bounded_range(p.from.as_deref(), p.to.as_deref(), PROGRESS_DEFAULT_SPAN)?;
    let limit = params::number::<i64>("limit", p.limit.as_deref(), 1, 10_000)?.unwrap_or(1_000);
    let character = require_character(&state, &name).await?;
    let latest = state.store.latest_sheet(&name).await?;
    let progress = state
        .store
        .progress(&ProgressQuery {
            character: name.clone(),
            from,
            to,
            limit,
        })
        .await?;
    Ok(Json(Sheet {
        character,
        latest,
        from,
        to,
        progress,
    }))
}
