//! The wire contract: frames plugins and browsers send, frames the server sends back, their parsing,
//! coercion (numbers sent as strings) and validation.
//!
//! Everything that crosses a socket is turned into a typed, validated value here or rejected with a
//! [`FrameError`] that names the problem; no other module looks at raw JSON.

mod browser;
mod character;
pub mod clock;
mod flex;
mod plugin;
pub mod timestamp;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

pub use browser::*;
pub use character::{Allegiance, CharacterSheet, Portal, Vitals};
pub use plugin::*;

/// Longest accepted character, mob or item name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest accepted short text field (session id, VTank state, tag, online time), in characters.
pub const MAX_SHORT_CHARS: usize = 128;
/// Longest accepted chat line or command, in characters.
pub const MAX_TEXT_CHARS: usize = 2_000;
/// Map coordinates beyond this magnitude cannot come from the game (the map spans about ±102).
pub const MAX_MAP_COORD: f64 = 120.0;
/// Heights beyond this magnitude cannot come from the game.
pub const MAX_Z: f64 = 100_000.0;
/// Counters (kills, deaths, ...) above this are rejected as absurd.
pub const MAX_COUNTER: i64 = 1_000_000_000_000;

/// Why a frame was rejected. The message is sent to the peer, so it names the field and the rule
/// but never echoes large input back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FrameError {
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("a frame must be a JSON object")]
    NotAnObject,
    #[error("missing field `type`")]
    MissingType,
    #[error("unknown frame type `{0}`")]
    UnknownType(String),
    #[error("field `{field}`: {reason}")]
    Field { field: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("binary frames are not supported; send JSON text frames")]
    Binary,
    /// Another live connection speaks for this character (not the sender's fault when it is
    /// the same plugin reconnecting: it does not count against the error budget).
    #[error(
        "character `{0}` is spoken for by another connection; it can be taken over once that \
         connection closes or has been silent for the live window"
    )]
    Claimed(String),
    /// The tracker could not keep the frame (its spool is full or cannot be written): not the
    /// sender's fault, it does not count against the error budget.
    #[error("not stored: {0}; this frame was refused, send it again later")]
    NotStored(String),
}

impl FrameError {
    fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Field {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

pub(crate) fn now() -> DateTime<Utc> {
    Utc::now()
}

/// Just the `type` of a frame; every other field is skipped without being built.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

/// Reads a frame's `type` in a first, cheap pass (the typed pass follows), distinguishing text
/// that is not JSON, JSON that is not an object, and objects without a usable `type`.
pub(crate) fn frame_type(text: &str) -> Result<std::borrow::Cow<'_, str>, FrameError> {
    if !text.trim_start().starts_with('{') {
        return match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => Err(FrameError::NotAnObject),
            Err(e) => Err(FrameError::Json(e.to_string())),
        };
    }
    match serde_json::from_str::<Head<'_>>(text) {
        Ok(Head { kind: Some(kind) }) => Ok(kind),
        Ok(Head { kind: None }) => Err(FrameError::MissingType),
        Err(e) if e.is_data() => Err(FrameError::field("type", "must be a string")),
        Err(e) => Err(FrameError::Json(e.to_string())),
    }
}

/// The field name already says where the problem is; the " at line 1 column 57" suffix serde_json
/// adds would only make messages differ between equivalent frames.
fn without_position(message: String) -> String {
    match message.rsplit_once(" at line ") {
        Some((head, tail)) if tail.contains(" column ") => head.to_owned(),
        _ => message,
    }
}

pub(crate) fn typed<'a, T: serde::Deserialize<'a>>(text: &'a str) -> Result<T, FrameError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = without_position(err.into_inner().to_string());
        if path == "." {
            // Errors at the top level are about missing fields; serde already names them.
            FrameError::Invalid(inner)
        } else {
            FrameError::field(path, inner)
        }
    })?;
    de.end().map_err(|e| FrameError::Json(e.to_string()))?;
    Ok(value)
}

/// A one-line field: non-empty when `required`, at most `max` characters, no control characters.
fn check_line(field: &str, value: &str, max: usize, required: bool) -> Result<(), FrameError> {
    if required && value.trim().is_empty() {
        return Err(FrameError::field(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(FrameError::field(
            field,
            format!("longer than {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(FrameError::field(field, "contains control characters"));
    }
    Ok(())
}

/// Runs `check` on every field that is present.
fn check_present<T: Copy>(
    fields: &[(&str, Option<T>)],
    check: fn(&str, T) -> Result<(), FrameError>,
) -> Result<(), FrameError> {
    for (field, value) in fields {
        if let Some(v) = value {
            check(field, *v)?;
        }
    }
    Ok(())
}

/// A character, mob or item name.
fn check_name(field: &str, value: &str) -> Result<(), FrameError> {
    check_line(field, value, MAX_NAME_CHARS, true)
}

/// A short text field (session id, VTank state, tag, online time).
fn check_short(field: &str, value: &str, required: bool) -> Result<(), FrameError> {
    check_line(field, value, MAX_SHORT_CHARS, required)
}

fn check_text(field: &str, value: &str) -> Result<(), FrameError> {
    if value.is_empty() {
        return Err(FrameError::field(field, "must not be empty"));
    }
    if value.chars().count() > MAX_TEXT_CHARS {
        return Err(FrameError::field(
            field,
            format!("longer than {MAX_TEXT_CHARS} characters"),
        ));
    }
    Ok(())
}

fn check_position(ew: f64, ns: f64, z: f64) -> Result<(), FrameError> {
    for (field, value, limit) in [
        ("ew", ew, MAX_MAP_COORD),
        ("ns", ns, MAX_MAP_COORD),
        ("z", z, MAX_Z),
    ] {
        if !value.is_finite() {
            return Err(FrameError::field(field, "must be a finite number"));
        }
        if value.abs() > limit {
            return Err(FrameError::field(
                field,
                format!("{value} is outside the map (limit ±{limit})"),
            ));
        }
    }
    Ok(())
}

fn check_counter(field: &str, value: i64) -> Result<(), FrameError> {
    if !(0..=MAX_COUNTER).contains(&value) {
        return Err(FrameError::field(
            field,
            format!("must be between 0 and {MAX_COUNTER}"),
        ));
    }
    Ok(())
}

fn check_measure(field: &str, value: f64) -> Result<(), FrameError> {
    if !value.is_finite() || value < 0.0 || value > MAX_COUNTER as f64 {
        return Err(FrameError::field(
            field,
            "must be a finite, non-negative number",
        ));
    }
    Ok(())
}

fn check_timestamp(ts: &DateTime<Utc>) -> Result<(), FrameError> {
    let now = Utc::now();
    if *ts > now + chrono::Duration::days(1) {
        return Err(FrameError::field(
            "timestamp",
            "more than a day in the future",
        ));
    }
    let earliest = Utc.with_ymd_and_hms(1999, 1, 1, 0, 0, 0).single();
    if earliest.is_some_and(|earliest| *ts < earliest) {
        return Err(FrameError::field("timestamp", "before 1999"));
    }
    Ok(())
}

/// Map coordinates as players read them: `42.1N, 33.6E`.
pub fn format_coords(ew: f64, ns: f64) -> String {
    format!(
        "{:.1}{}, {:.1}{}",
        ns.abs(),
        if ns >= 0.0 { "N" } else { "S" },
        ew.abs(),
        if ew >= 0.0 { "E" } else { "W" }
    )
}

pub(crate) fn clip(s: &str, max_chars: usize) -> String {
    let mut out: String = s.chars().take(max_chars).collect();
    if s.chars().count() > max_chars {
        out.push('…');
    }
    out
}

/// Serializes a server frame; these types always serialize, so a failure is a bug worth a log line
/// rather than a panic.
pub fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|err| {
        tracing::error!(%err, "failed to serialize a server frame");
        r#"{"type":"error","error":"internal serialization error"}"#.to_owned()
    })
}
