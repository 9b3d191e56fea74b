//! Query-parameter parsing shared by the query endpoints. Parameters arrive as strings and are
//! checked here, so every mistake is a 400 with a sentence that names the parameter.

use chrono::{DateTime, Utc};

use crate::web::error::ApiError;

use crate::protocol::MAX_NAME_CHARS;

/// Parses an RFC 3339 time.
pub(crate) fn time(name: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(raw)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "`{name}` must be an RFC 3339 time such as 2026-01-31T12:00:00Z"
            ))
        })
}

/// A number type a parameter may be: what it is called in an error.
pub(crate) trait Number: std::str::FromStr + PartialOrd + std::fmt::Display + Copy {
    const WHAT: &'static str;
}

impl Number for i64 {
    const WHAT: &'static str = "a whole number";
}

impl Number for f64 {
    const WHAT: &'static str = "a number";
}

/// Parses a number within [min, max] (NaN and infinities never are).
pub(crate) fn number<T: Number>(
    name: &str,
    raw: Option<&str>,
    min: T,
    max: T,
) -> Result<Option<T>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    match raw.trim().parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(Some(v)),
        _ => Err(ApiError::BadRequest(format!(
            "`{name}` must be {} from {min} to {max}",
            T::WHAT
        ))),
    }
}

/// A name filter (character, mob, item): non-empty and no longer than any stored name.
pub(crate) fn name(param: &str, raw: Option<&str>) -> Result<Option<String>, ApiError> {
    match raw {
        None | Some("") => Ok(None),
        Some(v) if v.chars().count() > MAX_NAME_CHARS => Err(ApiError::BadRequest(format!(
            "`{param}` is longer than {MAX_NAME_CHARS} characters"
        ))),
        Some(v) => Ok(Some(v.to_owned())),
    }
}

/// The character a path names: a name filter that must be there.
pub(crate) fn character(raw: &str) -> Result<String, ApiError> {
    name("character", Some(raw))?
        .ok_or_else(|| ApiError::BadRequest("`character` must not be empty".into()))
}

/// A time range whose ends are each optional.
pub(crate) type OpenRange = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// A time range: both ends optional, `from` not after `to`.
pub(crate) fn range(from: Option<&str>, to: Option<&str>) -> Result<OpenRange, ApiError> {
    let from = time("from", from)?;
    let to = time("to", to)?;
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(ApiError::BadRequest("`from` is after `to`".into()));
    }
    Ok((from, to))
}

/// A closed range with defaults: `to` defaults to now, `from` to `to - default_span`.
pub(crate) fn range_or_default(
    from: Option<&str>,
    to: Option<&str>,
    default_span: chrono::Duration,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let (from, to) = range(from, to)?;
    let to = to.unwrap_or_else(Utc::now);
    let from = from.unwrap_or(to - default_span);
    if from > to {
        return Err(ApiError::BadRequest("`from` is after `to`".into()));
    }
    Ok((from, to))
}

/// Response format of endpoints that can answer CSV (the `format` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Format {
    Json,
    Csv,
}

pub(crate) fn format(raw: Option<&str>) -> Result<Format, ApiError> {
    match raw {
        None | Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some(_) => Err(ApiError::BadRequest(
            "`format` must be `json` or `csv`".into(),
        )),
    }
}

/// Cursors are `<microseconds since the epoch>_<row id>` of the last row of a page.
pub(crate) fn encode_cursor(timestamp: DateTime<Utc>, id: i64) -> String {
    format!("{}_{}", timestamp.timestamp_micros(), id)
}

pub(crate) fn cursor(raw: Option<&str>) -> Result<Option<(DateTime<Utc>, i64)>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let bad = || ApiError::BadRequest("`cursor` is not one this server handed out".into());
    let (micros, id) = raw.split_once('_').ok_or_else(bad)?;
    let micros = micros.parse::<i64>().map_err(|_| bad())?;
    let id = id.parse::<i64>().map_err(|_| bad())?;
    let ts = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    Ok(Some((ts, id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert!(cursor(Some("nonsense")).is_err());
        assert!(cursor(Some("12_x")).is_err());
        let ts = DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("ts");
        let encoded = encode_cursor(ts, 42);
        assert_eq!(cursor(Some(&encoded)).expect("valid"), Some((ts, 42)));
    }

    #[test]
    fn an_empty_format_is_refused_like_any_other_unknown_one() {
        assert!(matches!(format(None), Ok(Format::Json)));
        assert!(matches!(format(Some("csv")), Ok(Format::Csv)));
        // `?format=` was taken for JSON, so a schema-violating request was answered 200.
        assert!(format(Some("")).is_err());
        assert!(format(Some("xml")).is_err());
    }

    #[test]
    fn ranges_must_be_ordered() {
        assert!(range(Some("2026-02-01T00:00:00Z"), Some("2026-01-01T00:00:00Z")).is_err());
        assert!(range(Some("2026-01-01T00:00:00Z"), None).is_ok());
        assert!(range(Some("soon"), None).is_err());
    }
}
