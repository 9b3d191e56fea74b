//! The wire contract: frames plugins and browsers send, frames the server sends back, their parsing,
//! coercion (numbers sent as strings) and validation.
//!
//! Everything that crosses a socket is turned into a typed, validated value here or rejected with a
//! [`FrameError`] that names the problem; no other module looks at raw JSON.

mod character;
pub mod timestamp;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

pub use character::{Allegiance, CharacterSheet, Portal, Vitals};

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
}

impl FrameError {
    fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Field {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Plugin -> server
// ---------------------------------------------------------------------------------------------

/// Every plugin frame type the tracker knows, by its wire name. Types a current plugin sends that
/// the tracker only relays (see [`FrameType::is_relayed`]) are here too, so counting,
/// subscriptions and documentation all use this one list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrameType {
    Telemetry,
    Spawn,
    Rare,
    Chat,
    Register,
    Vitals,
    CharacterStats,
    Portal,
    CombatStats,
    /// Every `share_*` type (vital sharing between characters).
    Share,
    NearbyObjects,
    DungeonMap,
    Quest,
    FullInventory,
    InventoryDelta,
}

impl FrameType {
    /// Every known type, in a fixed order (also the index of [`FrameType::index`]).
    pub const ALL: [Self; 15] = [
        Self::Telemetry,
        Self::Spawn,
        Self::Rare,
        Self::Chat,
        Self::Register,
        Self::Vitals,
        Self::CharacterStats,
        Self::Portal,
        Self::CombatStats,
        Self::Share,
        Self::NearbyObjects,
        Self::DungeonMap,
        Self::Quest,
        Self::FullInventory,
        Self::InventoryDelta,
    ];

    /// The wire name (for `share`, the prefix of the `share_*` family).
    pub fn name(self) -> &'static str {
        match self {
            Self::Telemetry => "telemetry",
            Self::Spawn => "spawn",
            Self::Rare => "rare",
            Self::Chat => "chat",
            Self::Register => "register",
            Self::Vitals => "vitals",
            Self::CharacterStats => "character_stats",
            Self::Portal => "portal",
            Self::CombatStats => "combat_stats",
            Self::Share => "share",
            Self::NearbyObjects => "nearby_objects",
            Self::DungeonMap => "dungeon_map",
            Self::Quest => "quest",
            Self::FullInventory => "full_inventory",
            Self::InventoryDelta => "inventory_delta",
        }
    }

    /// The type named by a frame's `type` field; `share_*` names are [`FrameType::Share`].
    pub fn from_wire(kind: &str) -> Option<Self> {
        if kind.starts_with("share_") {
            return Some(Self::Share);
        }
        Self::from_name(kind)
    }

    /// The type with exactly this [`FrameType::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Position in [`FrameType::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Types relayed to browsers that subscribe to them, as they come: not interpreted, not
    /// stored.
    pub fn is_relayed(self) -> bool {
        matches!(
            self,
            Self::CombatStats
                | Self::Share
                | Self::NearbyObjects
                | Self::DungeonMap
                | Self::Quest
                | Self::FullInventory
                | Self::InventoryDelta
        )
    }
}

/// One frame a plugin sent on `/ws/position`, parsed and validated.
// Frames live one at a time on a session's stack and are moved into events; boxing the common
// telemetry variant would add an allocation per frame to save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum PluginFrame {
    Telemetry(Telemetry),
    Spawn(Spawn),
    Rare(Rare),
    Chat(Chat),
    Register(Register),
    Vitals(Vitals),
    CharacterStats(CharacterSheet),
    Portal(Portal),
    /// A frame of a type relayed as it came (see [`FrameType::is_relayed`]); the session relays
    /// the original text.
    Relayed {
        kind: FrameType,
        character_name: String,
    },
    /// A well-formed frame of a type the tracker does not handle: counted, otherwise ignored.
    /// `kind` is the type as sent, clipped.
    Unhandled {
        kind: String,
    },
}

impl PluginFrame {
    /// Whether applying this frame reads or changes the character's live state (totals,
    /// sessions, latest snapshot).
    pub fn keeps_state(&self) -> bool {
        matches!(
            self,
            Self::Telemetry(_)
                | Self::Rare(_)
                | Self::Vitals(_)
                | Self::CharacterStats(_)
                | Self::Portal(_)
        )
    }

    /// The character this frame speaks for (none for unhandled types).
    pub fn character_name(&self) -> Option<&str> {
        Some(match self {
            Self::Telemetry(t) => &t.character_name,
            Self::Spawn(s) => &s.character_name,
            Self::Rare(r) => &r.character_name,
            Self::Chat(c) => &c.character_name,
            Self::Register(r) => &r.character_name,
            Self::Vitals(v) => &v.character_name,
            Self::CharacterStats(s) => &s.character_name,
            Self::Portal(p) => &p.character_name,
            Self::Relayed { character_name, .. } => character_name,
            Self::Unhandled { .. } => return None,
        })
    }

    /// The frame's type (none for unhandled types).
    pub fn kind(&self) -> Option<FrameType> {
        Some(match self {
            Self::Telemetry(_) => FrameType::Telemetry,
            Self::Spawn(_) => FrameType::Spawn,
            Self::Rare(_) => FrameType::Rare,
            Self::Chat(_) => FrameType::Chat,
            Self::Register(_) => FrameType::Register,
            Self::Vitals(_) => FrameType::Vitals,
            Self::CharacterStats(_) => FrameType::CharacterStats,
            Self::Portal(_) => FrameType::Portal,
            Self::Relayed { kind, .. } => *kind,
            Self::Unhandled { .. } => return None,
        })
    }
}

/// A character's periodic status report (every ~2 s). Stored rows map onto it column by column
/// (`sqlx::FromRow`) on both backends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct Telemetry {
    pub character_name: String,
    #[serde(default, deserialize_with = "flex::opt_string")]
    pub char_tag: Option<String>,
    #[serde(deserialize_with = "flex::string")]
    pub session_id: String,
    #[serde(default = "now", deserialize_with = "flex::timestamp")]
    pub timestamp: DateTime<Utc>,
    #[serde(deserialize_with = "flex::f64")]
    pub ew: f64,
    #[serde(deserialize_with = "flex::f64")]
    pub ns: f64,
    #[serde(deserialize_with = "flex::f64")]
    pub z: f64,
    #[serde(deserialize_with = "flex::i64")]
    pub kills: i64,
    #[serde(default, deserialize_with = "flex::opt_f64")]
    pub kills_per_hour: Option<f64>,
    #[serde(default, deserialize_with = "flex::opt_string")]
    pub onlinetime: Option<String>,
    #[serde(deserialize_with = "flex::i64")]
    pub deaths: i64,
    #[serde(default, deserialize_with = "flex::opt_i64")]
    pub total_deaths: Option<i64>,
    #[serde(deserialize_with = "flex::i64")]
    pub rares_found: i64,
    #[serde(default, deserialize_with = "flex::opt_i64")]
    pub prismatic_taper_count: Option<i64>,
    #[serde(default, deserialize_with = "flex::opt_string")]
    pub vt_state: Option<String>,
    #[serde(default, deserialize_with = "flex::opt_f64")]
    pub mem_mb: Option<f64>,
    #[serde(default, deserialize_with = "flex::opt_f64")]
    pub cpu_pct: Option<f64>,
    #[serde(default, deserialize_with = "flex::opt_i64")]
    pub mem_handles: Option<i64>,
    #[serde(default, deserialize_with = "flex::opt_f64")]
    pub latency_ms: Option<f64>,
}

/// A monster appeared near a character.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spawn {
    pub character_name: String,
    #[serde(deserialize_with = "flex::string")]
    pub mob: String,
    #[serde(default = "now", deserialize_with = "flex::timestamp")]
    pub timestamp: DateTime<Utc>,
    #[serde(deserialize_with = "flex::f64")]
    pub ew: f64,
    #[serde(deserialize_with = "flex::f64")]
    pub ns: f64,
    #[serde(default, deserialize_with = "flex::f64_or_zero")]
    pub z: f64,
}

/// A character found a rare item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rare {
    pub character_name: String,
    #[serde(deserialize_with = "flex::string")]
    pub name: String,
    #[serde(default = "now", deserialize_with = "flex::timestamp")]
    pub timestamp: DateTime<Utc>,
    #[serde(deserialize_with = "flex::f64")]
    pub ew: f64,
    #[serde(deserialize_with = "flex::f64")]
    pub ns: f64,
    #[serde(default, deserialize_with = "flex::f64_or_zero")]
    pub z: f64,
}

/// A chat line seen by a character's client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chat {
    pub character_name: String,
    #[serde(deserialize_with = "flex::string")]
    pub text: String,
    /// The client's chat colour: a number (AC chat colour index) or a short CSS-like string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<ChatColor>,
    #[serde(default = "now", deserialize_with = "flex::timestamp")]
    pub timestamp: DateTime<Utc>,
}

/// A chat colour as the plugin sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChatColor {
    Index(i64),
    Name(String),
}

/// Binds a connection to a character before it sends any data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Register {
    pub character_name: String,
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

/// Parses and validates one text frame from a plugin.
///
/// A well-formed frame (a JSON object with a string `type`) of a type the tracker does not handle
/// is not an error: it comes back as [`PluginFrame::Unhandled`], as the original server ignored
/// such frames.
pub fn parse_plugin_frame(text: &str) -> Result<PluginFrame, FrameError> {
    let kind = frame_type(text)?;
    let Some(known) = FrameType::from_wire(&kind) else {
        return Ok(PluginFrame::Unhandled {
            kind: clip(&kind, 32),
        });
    };
    let frame = match known {
        FrameType::Telemetry => PluginFrame::Telemetry(typed(text)?),
        FrameType::Spawn => PluginFrame::Spawn(typed(text)?),
        FrameType::Rare => PluginFrame::Rare(typed(text)?),
        FrameType::Chat => PluginFrame::Chat(typed(text)?),
        FrameType::Register => PluginFrame::Register(typed(text)?),
        FrameType::Vitals => {
            let mut v: Vitals = typed(text)?;
            v.validate()?;
            return Ok(PluginFrame::Vitals(v));
        }
        FrameType::CharacterStats => {
            let mut s: CharacterSheet = typed(text)?;
            s.validate()?;
            return Ok(PluginFrame::CharacterStats(s));
        }
        FrameType::Portal => {
            let mut p: Portal = typed(text)?;
            p.validate()?;
            return Ok(PluginFrame::Portal(p));
        }
        relayed => {
            // Only the name is read; the frame itself is relayed as it came.
            #[derive(Deserialize)]
            struct Named {
                #[serde(default, deserialize_with = "flex::opt_string")]
                character_name: Option<String>,
            }
            let Named { character_name } = typed(text)?;
            let character_name = character_name.unwrap_or_default();
            check_name("character_name", &character_name)?;
            return Ok(PluginFrame::Relayed {
                kind: relayed,
                character_name,
            });
        }
    };
    validate_plugin_frame(&frame)?;
    Ok(frame)
}

/// Just the `type` of a frame; every other field is skipped without being built.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

/// Reads a frame's `type` in a first, cheap pass (the typed pass follows), distinguishing text
/// that is not JSON, JSON that is not an object, and objects without a usable `type`.
fn frame_type(text: &str) -> Result<std::borrow::Cow<'_, str>, FrameError> {
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

fn typed<'a, T: serde::Deserialize<'a>>(text: &'a str) -> Result<T, FrameError> {
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

fn validate_plugin_frame(frame: &PluginFrame) -> Result<(), FrameError> {
    check_name("character_name", frame.character_name().unwrap_or_default())?;
    match frame {
        PluginFrame::Telemetry(t) => {
            check_short("session_id", &t.session_id, true)?;
            check_timestamp(&t.timestamp)?;
            check_position(t.ew, t.ns, t.z)?;
            check_counter("kills", t.kills)?;
            check_counter("deaths", t.deaths)?;
            check_counter("rares_found", t.rares_found)?;
            for (field, value) in [
                ("total_deaths", t.total_deaths),
                ("prismatic_taper_count", t.prismatic_taper_count),
                ("mem_handles", t.mem_handles),
            ] {
                if let Some(v) = value {
                    check_counter(field, v)?;
                }
            }
            for (field, value) in [
                ("kills_per_hour", t.kills_per_hour),
                ("mem_mb", t.mem_mb),
                ("cpu_pct", t.cpu_pct),
                ("latency_ms", t.latency_ms),
            ] {
                if let Some(v) = value {
                    check_measure(field, v)?;
                }
            }
            for (field, value) in [
                ("char_tag", &t.char_tag),
                ("onlinetime", &t.onlinetime),
                ("vt_state", &t.vt_state),
            ] {
                if let Some(v) = value {
                    check_short(field, v, false)?;
                }
            }
        }
        PluginFrame::Spawn(s) => {
            check_name("mob", &s.mob)?;
            check_timestamp(&s.timestamp)?;
            check_position(s.ew, s.ns, s.z)?;
        }
        PluginFrame::Rare(r) => {
            check_name("name", &r.name)?;
            check_timestamp(&r.timestamp)?;
            check_position(r.ew, r.ns, r.z)?;
        }
        PluginFrame::Chat(c) => {
            check_text("text", &c.text)?;
            if let Some(ChatColor::Name(name)) = &c.color {
                check_short("color", name, false)?;
            }
        }
        PluginFrame::Register(_)
        | PluginFrame::Vitals(_)
        | PluginFrame::CharacterStats(_)
        | PluginFrame::Portal(_)
        | PluginFrame::Relayed { .. }
        | PluginFrame::Unhandled { .. } => {}
    }
    Ok(())
}

fn check_name(field: &str, value: &str) -> Result<(), FrameError> {
    if value.trim().is_empty() {
        return Err(FrameError::field(field, "must not be empty"));
    }
    if value.chars().count() > MAX_NAME_CHARS {
        return Err(FrameError::field(
            field,
            format!("longer than {MAX_NAME_CHARS} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(FrameError::field(field, "contains control characters"));
    }
    Ok(())
}

fn check_short(field: &str, value: &str, required: bool) -> Result<(), FrameError> {
    if required && value.trim().is_empty() {
        return Err(FrameError::field(field, "must not be empty"));
    }
    if value.chars().count() > MAX_SHORT_CHARS {
        return Err(FrameError::field(
            field,
            format!("longer than {MAX_SHORT_CHARS} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(FrameError::field(field, "contains control characters"));
    }
    Ok(())
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

fn clip(s: &str, max_chars: usize) -> String {
    let mut out: String = s.chars().take(max_chars).collect();
    if s.chars().count() > max_chars {
        out.push('…');
    }
    out
}

/// Lenient deserializers: the real plugin sends several numeric fields as JSON strings.
mod flex {
    use super::*;
    use serde::Deserializer;
    use serde::de::{self, Visitor};
    use std::fmt;

    #[derive(Debug)]
    enum Num {
        Int(i64),
        Float(f64),
    }

    struct NumVisitor;

    impl<'de> Visitor<'de> for NumVisitor {
        type Value = Option<Num>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a number or a numeric string")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(Num::Int(v)))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            match i64::try_from(v) {
                Ok(v) => Ok(Some(Num::Int(v))),
                Err(_) => Ok(Some(Num::Float(v as f64))),
            }
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(Num::Float(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let t = v.trim();
            if t.is_empty() {
                return Ok(None);
            }
            if let Ok(i) = t.parse::<i64>() {
                return Ok(Some(Num::Int(i)));
            }
            match t.parse::<f64>() {
                Ok(f) => Ok(Some(Num::Float(f))),
                Err(_) => Err(E::custom(format!(
                    "expected a number or a numeric string, got \"{}\"",
                    clip(v, 24)
                ))),
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    fn num<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Num>, D::Error> {
        d.deserialize_any(NumVisitor)
    }

    fn to_f64(n: Num) -> f64 {
        match n {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    fn to_i64<E: de::Error>(n: Num) -> Result<i64, E> {
        match n {
            Num::Int(i) => Ok(i),
            Num::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
            Num::Float(_) => Err(E::custom("expected a whole number")),
        }
    }

    pub fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        num(d)?
            .map(to_f64)
            .ok_or_else(|| de::Error::custom("expected a number, got nothing"))
    }

    pub fn f64_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(num(d)?.map(to_f64).unwrap_or(0.0))
    }

    pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Ok(num(d)?.map(to_f64))
    }

    pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        match num(d)? {
            Some(n) => to_i64(n),
            None => Err(de::Error::custom("expected a whole number, got nothing")),
        }
    }

    pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        num(d)?.map(to_i64).transpose()
    }

    struct TextVisitor;

    impl<'de> Visitor<'de> for TextVisitor {
        type Value = Option<String>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    /// A string; numbers are accepted and kept in their decimal form.
    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        d.deserialize_any(TextVisitor)?
            .ok_or_else(|| de::Error::custom("expected a string, got null"))
    }

    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_any(TextVisitor)
    }

    /// Any form [`super::timestamp::parse`] accepts (RFC 3339, ISO 8601 variants, Unix epoch
    /// seconds or milliseconds as numbers or numeric strings); null or "" means now.
    pub fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let Some(raw) = d.deserialize_any(TextVisitor)? else {
            return Ok(Utc::now());
        };
        if raw.trim().is_empty() {
            return Ok(Utc::now());
        }
        super::timestamp::parse(&raw).ok_or_else(|| {
            de::Error::custom(format!(
                "expected an RFC 3339 timestamp or Unix epoch seconds/milliseconds, got \"{}\"",
                clip(raw.trim(), 40)
            ))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Server -> plugin
// ---------------------------------------------------------------------------------------------

/// A command relayed from a browser to a plugin, exactly as the plugin expects it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginCommand {
    pub player_name: String,
    pub command: String,
}

// ---------------------------------------------------------------------------------------------
// Browser -> server
// ---------------------------------------------------------------------------------------------

/// The `offline` frame's type, which browsers may subscribe to beside the plugin frame types.
pub const OFFLINE: &str = "offline";

/// Every frame type a browser may subscribe to: each plugin frame type that is broadcast
/// (everything but `register`), and `offline`.
pub fn subscribable() -> impl Iterator<Item = &'static str> {
    FrameType::ALL
        .into_iter()
        .filter(|t| *t != FrameType::Register)
        .map(FrameType::name)
        .chain(std::iter::once(OFFLINE))
}

/// One frame a browser sent on `/ws/live`.
#[derive(Debug, Clone, PartialEq)]
pub enum BrowserFrame {
    /// Only receive these frame kinds from now on (the snapshot is always sent).
    Subscribe { types: Vec<String> },
    /// Only receive updates about this area of the map (`None`: the whole map again).
    Viewport(Option<Viewport>),
    /// Relay a command to the named character's plugin.
    Command {
        player_name: String,
        command: String,
        token: Option<String>,
    },
}

#[derive(Deserialize)]
struct SubscribeIn {
    types: Vec<String>,
}

/// An area of the map in map coordinates, edges included.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Viewport {
    pub ew_min: f64,
    pub ew_max: f64,
    pub ns_min: f64,
    pub ns_max: f64,
}

impl Viewport {
    /// Whether a position is in the area.
    pub fn contains(&self, ew: f64, ns: f64) -> bool {
        (self.ew_min..=self.ew_max).contains(&ew) && (self.ns_min..=self.ns_max).contains(&ns)
    }
}

#[derive(Deserialize)]
struct ViewportIn {
    #[serde(default, deserialize_with = "flex::opt_f64")]
    ew_min: Option<f64>,
    #[serde(default, deserialize_with = "flex::opt_f64")]
    ew_max: Option<f64>,
    #[serde(default, deserialize_with = "flex::opt_f64")]
    ns_min: Option<f64>,
    #[serde(default, deserialize_with = "flex::opt_f64")]
    ns_max: Option<f64>,
}

impl ViewportIn {
    fn check(self) -> Result<Option<Viewport>, FrameError> {
        let (ew_min, ew_max, ns_min, ns_max) =
            match (self.ew_min, self.ew_max, self.ns_min, self.ns_max) {
                (None, None, None, None) => return Ok(None),
                (Some(a), Some(b), Some(c), Some(d)) => (a, b, c, d),
                _ => {
                    return Err(FrameError::field(
                        "ew_min",
                        "give all of ew_min, ew_max, ns_min and ns_max, or none (the whole map)",
                    ));
                }
            };
        for (field, v) in [
            ("ew_min", ew_min),
            ("ew_max", ew_max),
            ("ns_min", ns_min),
            ("ns_max", ns_max),
        ] {
            if !v.is_finite() {
                return Err(FrameError::field(field, "must be a finite number"));
            }
        }
        if ew_min > ew_max {
            return Err(FrameError::field("ew_min", "must not be above ew_max"));
        }
        if ns_min > ns_max {
            return Err(FrameError::field("ns_min", "must not be above ns_max"));
        }
        Ok(Some(Viewport {
            ew_min,
            ew_max,
            ns_min,
            ns_max,
        }))
    }
}

#[derive(Deserialize)]
struct CommandIn {
    #[serde(deserialize_with = "flex::string")]
    player_name: String,
    #[serde(deserialize_with = "flex::string")]
    command: String,
    #[serde(default, deserialize_with = "flex::opt_string")]
    token: Option<String>,
}

/// Parses and validates one text frame from a browser. A frame with no `type` but with
/// `player_name` and `command` is a command, as the original UI sent them.
pub fn parse_browser_frame(text: &str) -> Result<BrowserFrame, FrameError> {
    let kind = match frame_type(text) {
        Ok(kind) => kind.into_owned(),
        // The original UI sent commands without a `type`.
        Err(FrameError::MissingType) if text.contains("\"command\"") => "command".to_owned(),
        Err(e) => return Err(e),
    };
    match kind.as_str() {
        "subscribe" => {
            let SubscribeIn { types } = typed(text)?;
            if let Some(bad) = types
                .iter()
                .find(|t| !subscribable().any(|known| known == t.as_str()))
            {
                return Err(FrameError::field(
                    "types",
                    format!(
                        "unknown type `{}` (known: {})",
                        clip(bad, 32),
                        subscribable().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            Ok(BrowserFrame::Subscribe { types })
        }
        "viewport" => Ok(BrowserFrame::Viewport(typed::<ViewportIn>(text)?.check()?)),
        "command" => {
            let CommandIn {
                player_name,
                command,
                token,
            } = typed(text)?;
            check_name("player_name", &player_name)?;
            check_text("command", &command)?;
            if command.chars().any(char::is_control) {
                return Err(FrameError::field("command", "contains control characters"));
            }
            Ok(BrowserFrame::Command {
                player_name,
                command,
                token,
            })
        }
        _ => Err(FrameError::UnknownType(clip(&kind, 32))),
    }
}

// ---------------------------------------------------------------------------------------------
// Server -> browser
// ---------------------------------------------------------------------------------------------

/// Running totals that ride along with every telemetry frame and live entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Totals {
    /// Kills over every session, as persisted in `char_stats`.
    pub total_kills: i64,
    /// Rares over every session, as persisted in `rare_stats`.
    pub total_rares: i64,
    /// Rares in the character's current session.
    pub session_rares: i64,
}

/// A live character as browsers and `/live` see it: the latest telemetry, flat, plus totals, and
/// the latest vitals and character sheet summary when the plugin sends them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LivePlayer<'a> {
    #[serde(flatten)]
    pub telemetry: &'a Telemetry,
    #[serde(flatten)]
    pub totals: Totals,
    pub last_seen: DateTime<Utc>,
    /// The latest `vitals` frame (EVENT_FORMATS.json), when the plugin sends them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub vitals: Option<&'a Vitals>,
    /// The latest `character_stats` summary (EVENT_FORMATS.json), when the plugin sends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub character_stats: Option<&'a CharacterSheet>,
}

/// Frames the server sends to browsers. Each serializes flat, with `type` beside the plugin's
/// own field names.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BrowserOut<'a> {
    /// Every live character, sent on connect and after a resync.
    Snapshot {
        players: Vec<LivePlayer<'a>>,
        /// The most recent chat lines, oldest first (kept in memory only, as the original did).
        chat: Vec<&'a Chat>,
    },
    Telemetry(LivePlayer<'a>),
    Spawn(&'a Spawn),
    Rare(RareOut<'a>),
    Chat(&'a Chat),
    Vitals(&'a Vitals),
    /// The character sheet without attributes and skills (those are served over HTTP).
    CharacterStats(&'a CharacterSheet),
    /// A teleport, with the position it happened at when known.
    Portal(&'a Portal),
    /// A character stopped sending for longer than the live window.
    Offline {
        character_name: &'a str,
        last_seen: DateTime<Utc>,
    },
    /// The browser's subscription took effect: from now on only these kinds are sent.
    Subscribed {
        types: &'a [String],
    },
    /// The outcome of a command the browser sent.
    CommandResult {
        player_name: &'a str,
        command: &'a str,
        status: CommandStatus,
        message: &'a str,
    },
    /// The browser's last frame was rejected.
    Error {
        error: String,
    },
}

/// A rare find as broadcast, with the finder's updated totals.
#[derive(Debug, Serialize)]
pub struct RareOut<'a> {
    #[serde(flatten)]
    pub rare: &'a Rare,
    #[serde(flatten)]
    pub totals: Totals,
}

/// What happened to a command a browser sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    /// Handed to the plugin connection of that character.
    Delivered,
    /// No plugin connection currently speaks for that character.
    NotConnected,
    /// The browser may not send commands (missing or wrong token, or not on loopback).
    Unauthorized,
    /// The plugin is not reading its commands fast enough; try again.
    Busy,
    /// This browser sent too many commands in a short time; slow down.
    RateLimited,
}

impl CommandStatus {
    /// A sentence for people, shown by the UI next to the status.
    pub fn message(self) -> &'static str {
        match self {
            Self::Delivered => "delivered to the plugin",
            Self::NotConnected => "no plugin is connected for that character",
            Self::Unauthorized => "not authorized to send commands",
            Self::Busy => "the plugin is not keeping up with commands; try again",
            Self::RateLimited => "too many commands from this browser; wait a moment",
        }
    }
}

/// The error frame a plugin receives for a rejected frame.
#[derive(Debug, Serialize)]
pub struct PluginErrorOut<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub error: &'a str,
}

/// Serializes a server frame; these types always serialize, so a failure is a bug worth a log line
/// rather than a panic.
pub fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|err| {
        tracing::error!(%err, "failed to serialize a server frame");
        r#"{"type":"error","error":"internal serialization error"}"#.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn telemetry_json() -> Value {
        serde_json::json!({
            "type": "telemetry",
            "character_name": "Alpha",
            "char_tag": "tag",
            "session_id": "s1",
            "timestamp": "2026-01-01T12:00:00Z",
            "ew": "12.5", "ns": -3.25, "z": 10,
            "kills": 5, "kills_per_hour": "120", "onlinetime": "00.01:02:03",
            "deaths": "1", "total_deaths": "7", "rares_found": 0,
            "prismatic_taper_count": "33", "vt_state": "Combat",
            "mem_mb": 512.5, "cpu_pct": "3.5", "mem_handles": 1200, "latency_ms": 40,
            "unknown_extra": {"ignored": true}
        })
    }

    #[test]
    fn telemetry_accepts_numeric_strings() {
        let frame = parse_plugin_frame(&telemetry_json().to_string()).expect("valid");
        let PluginFrame::Telemetry(t) = frame else {
            panic!("wrong kind: {frame:?}")
        };
        assert_eq!(t.ew, 12.5);
        assert_eq!(t.kills_per_hour, Some(120.0));
        assert_eq!(t.total_deaths, Some(7));
        assert_eq!(t.prismatic_taper_count, Some(33));
        assert_eq!(t.deaths, 1);
        assert_eq!(t.timestamp.to_rfc3339(), "2026-01-01T12:00:00+00:00");
    }

    #[test]
    fn missing_timestamp_means_now() {
        let mut v = telemetry_json();
        v.as_object_mut().map(|m| m.remove("timestamp"));
        let before = Utc::now();
        let PluginFrame::Telemetry(t) = parse_plugin_frame(&v.to_string()).expect("valid") else {
            panic!("not telemetry")
        };
        assert!(t.timestamp >= before && t.timestamp <= Utc::now());
    }

    fn rejects(v: Value, needle: &str) {
        let err = parse_plugin_frame(&v.to_string()).expect_err("must be rejected");
        assert!(
            err.to_string().contains(needle),
            "error `{err}` does not mention `{needle}`"
        );
    }

    #[test]
    fn bad_fields_are_named_in_the_error() {
        let mut v = telemetry_json();
        v["ew"] = "east".into();
        rejects(v, "ew");
        let mut v = telemetry_json();
        v["kills"] = 1.5.into();
        rejects(v, "kills");
        let mut v = telemetry_json();
        v["ns"] = 1e9.into();
        rejects(v, "ns");
        let mut v = telemetry_json();
        v["ns"] = "NaN".into();
        rejects(v, "ns");
        let mut v = telemetry_json();
        v["character_name"] = "".into();
        rejects(v, "character_name");
        let mut v = telemetry_json();
        v["character_name"] = "x".repeat(65).into();
        rejects(v, "character_name");
        let mut v = telemetry_json();
        v["kills"] = (-1).into();
        rejects(v, "kills");
        let mut v = telemetry_json();
        v["timestamp"] = "yesterday".into();
        rejects(v, "timestamp");
        let mut v = telemetry_json();
        v.as_object_mut().map(|m| m.remove("session_id"));
        rejects(v, "session_id");
    }

    #[test]
    fn structural_errors_are_distinguished() {
        assert!(matches!(
            parse_plugin_frame("{not json"),
            Err(FrameError::Json(_))
        ));
        assert_eq!(parse_plugin_frame("[1,2]"), Err(FrameError::NotAnObject));
        assert_eq!(parse_plugin_frame("{}"), Err(FrameError::MissingType));
        assert_eq!(
            parse_plugin_frame(r#"{"type":"dance"}"#),
            Ok(PluginFrame::Unhandled {
                kind: "dance".into()
            })
        );
        assert!(matches!(
            parse_plugin_frame(r#"{"type":7}"#),
            Err(FrameError::Field { .. })
        ));
    }

    #[test]
    fn browser_command_without_type_is_a_command() {
        let frame =
            parse_browser_frame(r#"{"player_name":"Alpha","command":"/vt stop"}"#).expect("valid");
        assert_eq!(
            frame,
            BrowserFrame::Command {
                player_name: "Alpha".into(),
                command: "/vt stop".into(),
                token: None
            }
        );
    }

    #[test]
    fn browser_subscribe_rejects_unknown_types() {
        assert!(parse_browser_frame(r#"{"type":"subscribe","types":["chat"]}"#).is_ok());
        let err = parse_browser_frame(r#"{"type":"subscribe","types":["gossip"]}"#)
            .expect_err("unknown type");
        assert!(err.to_string().contains("gossip"));
    }

    #[test]
    fn viewports_need_four_finite_ordered_bounds_or_none() {
        let whole = parse_browser_frame(r#"{"type":"viewport"}"#).expect("whole map");
        assert_eq!(whole, BrowserFrame::Viewport(None));
        let area = parse_browser_frame(
            r#"{"type":"viewport","ew_min":"-1.5","ew_max":2,"ns_min":-3,"ns_max":4}"#,
        )
        .expect("an area");
        assert!(
            matches!(area, BrowserFrame::Viewport(Some(v)) if v.contains(-1.5, 4.0) && !v.contains(2.1, 0.0))
        );
        for bad in [
            r#"{"type":"viewport","ew_min":1}"#,
            r#"{"type":"viewport","ew_min":2,"ew_max":1,"ns_min":0,"ns_max":1}"#,
            r#"{"type":"viewport","ew_min":0,"ew_max":1,"ns_min":2,"ns_max":1}"#,
            r#"{"type":"viewport","ew_min":"NaN","ew_max":1,"ns_min":0,"ns_max":1}"#,
            r#"{"type":"viewport","ew_min":"-inf","ew_max":1,"ns_min":0,"ns_max":1}"#,
            r#"{"type":"viewport","ew_min":[],"ew_max":1,"ns_min":0,"ns_max":1}"#,
        ] {
            assert!(parse_browser_frame(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn browser_frames_are_flat() {
        let PluginFrame::Telemetry(t) =
            parse_plugin_frame(&telemetry_json().to_string()).expect("valid")
        else {
            panic!("not telemetry")
        };
        let out = to_json(&BrowserOut::Telemetry(LivePlayer {
            telemetry: &t,
            totals: Totals {
                total_kills: 9,
                total_rares: 2,
                session_rares: 1,
            },
            last_seen: t.timestamp,
            vitals: None,
            character_stats: None,
        }));
        let v: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["type"], "telemetry");
        assert_eq!(v["character_name"], "Alpha");
        assert_eq!(v["total_kills"], 9);
        assert_eq!(v["session_rares"], 1);
    }
}
