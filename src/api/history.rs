//! `/history` and `/trails`: stored telemetry for analysts and the map.
//!
//! Parameters are parsed by hand from strings so that every mistake gets a 400 with a sentence
//! naming the parameter, rather than a framework rejection.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ApiError;
use crate::state::AppState;
use crate::store::{HistoryQuery, TelemetryRecord, TrailPoint};

/// Default and hard cap of rows per `/history` page.
pub const HISTORY_DEFAULT_LIMIT: i64 = 1_000;
pub const HISTORY_MAX_LIMIT: i64 = 10_000;
/// Default and hard cap of the `/trails` window, in seconds.
pub const TRAILS_DEFAULT_SECS: i64 = 600;
pub const TRAILS_MAX_SECS: i64 = 7 * 24 * 3600;
/// Most points one `/trails` answer carries.
pub const TRAILS_MAX_POINTS: i64 = 200_000;

type Params = Query<HashMap<String, String>>;

fn param<'a>(params: &'a HashMap<String, String>, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| params.get(*n))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn parse_time(name: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "`{name}` must be an RFC 3339 time such as 2026-01-31T12:00:00Z"
            ))
        })
}

fn parse_int(name: &str, raw: &str, min: i64, max: i64) -> Result<i64, ApiError> {
    match raw.parse::<i64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(ApiError::BadRequest(format!(
            "`{name}` must be a whole number from {min} to {max}"
        ))),
    }
}

fn parse_character(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    match raw {
        Some(name) if name.chars().count() > crate::protocol::MAX_NAME_CHARS => Err(
            ApiError::BadRequest("`character` is longer than any character name".into()),
        ),
        other => Ok(other.map(str::to_owned)),
    }
}

/// Cursors are `<microseconds since the epoch>_<row id>` of the last row of a page.
fn encode_cursor(record: &TelemetryRecord) -> String {
    format!(
        "{}_{}",
        record.telemetry.timestamp.timestamp_micros(),
        record.id
    )
}

fn decode_cursor(raw: &str) -> Result<(DateTime<Utc>, i64), ApiError> {
    let bad = || ApiError::BadRequest("`cursor` is not one this server handed out".into());
    let (micros, id) = raw.split_once('_').ok_or_else(bad)?;
    let micros = micros.parse::<i64>().map_err(|_| bad())?;
    let id = id.parse::<i64>().map_err(|_| bad())?;
    let ts = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    Ok((ts, id))
}

#[derive(Serialize)]
pub struct HistoryPage {
    data: Vec<TelemetryRecord>,
    /// Pass as `cursor` to get the next page; null on the last page.
    next_cursor: Option<String>,
}

/// `GET /history?character=&from=&to=&limit=&cursor=`: telemetry rows oldest first, paged.
/// `from_ts`/`to_ts` are accepted as the original tracker's names for `from`/`to`.
pub async fn history(
    State(state): State<AppState>,
    Query(params): Params,
) -> Result<Json<HistoryPage>, ApiError> {
    let from = param(&params, &["from", "from_ts"])
        .map(|v| parse_time("from", v))
        .transpose()?;
    let to = param(&params, &["to", "to_ts"])
        .map(|v| parse_time("to", v))
        .transpose()?;
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(ApiError::BadRequest("`from` is after `to`".into()));
    }
    let limit = param(&params, &["limit"])
        .map(|v| parse_int("limit", v, 1, HISTORY_MAX_LIMIT))
        .transpose()?
        .unwrap_or(HISTORY_DEFAULT_LIMIT);
    let after = param(&params, &["cursor"]).map(decode_cursor).transpose()?;
    let query = HistoryQuery {
        character: parse_character(param(&params, &["character"]))?,
        from,
        to,
        after,
        limit: limit + 1,
    };
    let mut data = state.store.history(&query).await?;
    let more = data.len() as i64 > limit;
    data.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = if more {
        data.last().map(encode_cursor)
    } else {
        None
    };
    Ok(Json(HistoryPage { data, next_cursor }))
}

#[derive(Serialize)]
pub struct Trails {
    trails: Vec<TrailPoint>,
}

/// `GET /trails?seconds=600&character=`: positions of the last `seconds`, grouped by character
/// in time order (the original tracker's shape).
pub async fn trails(
    State(state): State<AppState>,
    Query(params): Params,
) -> Result<Json<Trails>, ApiError> {
    let seconds = param(&params, &["seconds"])
        .map(|v| parse_int("seconds", v, 1, TRAILS_MAX_SECS))
        .transpose()?
        .unwrap_or(TRAILS_DEFAULT_SECS);
    let character = parse_character(param(&params, &["character"]))?;
    let since = Utc::now() - chrono::Duration::seconds(seconds);
    let trails = state
        .store
        .trails(since, character.as_deref(), TRAILS_MAX_POINTS)
        .await?;
    Ok(Json(Trails { trails }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert!(decode_cursor("nonsense").is_err());
        assert!(decode_cursor("12_x").is_err());
        let (ts, id) = decode_cursor("1700000000123456_42").expect("valid");
        assert_eq!(ts.timestamp_micros(), 1_700_000_000_123_456);
        assert_eq!(id, 42);
    }
}
