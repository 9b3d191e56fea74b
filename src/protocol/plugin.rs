//! Frames between plugins and the server: what a plugin sends on `/ws/position` (parsed and
//! validated here) and the commands the server passes on to it.

use super::clock::{ClockReading, Placement};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::*;

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

/// A frame in its wire form: its `type` and the fields of `body`, as a plugin sends it (and as
/// [`parse_plugin_frame`] reads it back to the same value). One instance of a cluster passes
/// the frames it accepted on to the others this way.
pub fn wire_text<T: Serialize>(kind: FrameType, body: &T) -> String {
    #[derive(Serialize)]
    struct Tagged<'a, T> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(flatten)]
        body: &'a T,
    }
    to_json(&Tagged {
        kind: kind.name(),
        body,
    })
}

impl PluginFrame {
    /// This frame's wire form (see [`wire_text`]); `None` for relayed and unhandled frames,
    /// which are passed on as they came.
    pub fn to_wire(&self) -> Option<String> {
        Some(match self {
            Self::Telemetry(t) => wire_text(FrameType::Telemetry, t),
            Self::Spawn(s) => wire_text(FrameType::Spawn, s),
            Self::Rare(r) => wire_text(FrameType::Rare, r),
            Self::Chat(c) => wire_text(FrameType::Chat, c),
            Self::Register(r) => wire_text(FrameType::Register, r),
            Self::Vitals(v) => wire_text(FrameType::Vitals, v),
            Self::CharacterStats(s) => wire_text(FrameType::CharacterStats, s),
            Self::Portal(p) => wire_text(FrameType::Portal, p),
            Self::Relayed { .. } | Self::Unhandled { .. } => return None,
        })
    }

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

    /// Whether this frame is stored (it becomes an event for the database).
    pub fn is_stored(&self) -> bool {
        matches!(
            self,
            Self::Telemetry(_)
                | Self::Spawn(_)
                | Self::Rare(_)
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
    /// When the tracker read the frame (its own clock). Set by the tracker on every frame it
    /// reads; a value sent by a plugin is replaced.
    #[serde(
        default,
        deserialize_with = "flex::lenient_time",
        skip_serializing_if = "Option::is_none"
    )]
    #[sqlx(default)]
    pub received_at: Option<DateTime<Utc>>,
    /// The plugin's clock minus the tracker's when the frame was read, in milliseconds (network
    /// delay included). Set by the tracker like `received_at`.
    #[serde(
        default,
        deserialize_with = "flex::lenient_i64",
        skip_serializing_if = "Option::is_none"
    )]
    #[sqlx(default)]
    pub clock_offset_ms: Option<i64>,
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
    /// When the tracker read the frame (its own clock). Set by the tracker on every frame it
    /// reads; a value sent by a plugin is replaced.
    #[serde(
        default,
        deserialize_with = "flex::lenient_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub received_at: Option<DateTime<Utc>>,
    /// The plugin's clock minus the tracker's when the frame was read, in milliseconds (network
    /// delay included). Set by the tracker like `received_at`.
    #[serde(
        default,
        deserialize_with = "flex::lenient_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub clock_offset_ms: Option<i64>,
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
    /// When the tracker read the frame (its own clock). Set by the tracker on every frame it
    /// reads; a value sent by a plugin is replaced.
    #[serde(
        default,
        deserialize_with = "flex::lenient_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub received_at: Option<DateTime<Utc>>,
    /// The plugin's clock minus the tracker's when the frame was read, in milliseconds (network
    /// delay included). Set by the tracker like `received_at`.
    #[serde(
        default,
        deserialize_with = "flex::lenient_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub clock_offset_ms: Option<i64>,
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

/// Parses and validates one text frame from a plugin.
///
/// A well-formed frame (a JSON object with a string `type`) of a type the tracker does not handle
/// is not an error: it comes back as [`PluginFrame::Unhandled`], as the original server ignored
/// such frames.
pub fn parse_plugin_frame(text: &str) -> Result<PluginFrame, FrameError> {
    parse(text, None).map(|(frame, _)| frame)
}

/// [`parse_plugin_frame`] of a frame read from a plugin at `placement.read_at`: its clock is
/// measured and, when off by more than the tolerance, the frame is placed at that moment
/// before it is validated (see [`crate::protocol::clock`]).
pub fn parse_plugin_frame_at(
    text: &str,
    placement: &Placement,
) -> Result<(PluginFrame, Option<ClockReading>), FrameError> {
    parse(text, Some(placement))
}

fn parse(
    text: &str,
    placement: Option<&Placement>,
) -> Result<(PluginFrame, Option<ClockReading>), FrameError> {
    let kind = frame_type(text)?;
    let Some(known) = FrameType::from_wire(&kind) else {
        return Ok((
            PluginFrame::Unhandled {
                kind: clip(&kind, 32),
            },
            None,
        ));
    };
    let mut frame = match known {
        FrameType::Telemetry => PluginFrame::Telemetry(typed(text)?),
        FrameType::Spawn => PluginFrame::Spawn(typed(text)?),
        FrameType::Rare => PluginFrame::Rare(typed(text)?),
        FrameType::Chat => PluginFrame::Chat(typed(text)?),
        FrameType::Register => PluginFrame::Register(typed(text)?),
        FrameType::Vitals => PluginFrame::Vitals(typed(text)?),
        FrameType::CharacterStats => PluginFrame::CharacterStats(typed(text)?),
        FrameType::Portal => PluginFrame::Portal(typed(text)?),
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
            return Ok((
                PluginFrame::Relayed {
                    kind: relayed,
                    character_name,
                },
                None,
            ));
        }
    };
    // Placed first: a clock far off is the plugin's clock, not a bad frame.
    let reading = placement.and_then(|p| frame.place(p));
    match &mut frame {
        PluginFrame::Vitals(v) => v.validate()?,
        PluginFrame::CharacterStats(s) => s.validate()?,
        PluginFrame::Portal(p) => p.validate()?,
        other => validate_plugin_frame(other)?,
    }
    Ok((frame, reading))
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
            check_present(
                &[
                    ("total_deaths", t.total_deaths),
                    ("prismatic_taper_count", t.prismatic_taper_count),
                    ("mem_handles", t.mem_handles),
                ],
                check_counter,
            )?;
            check_present(
                &[
                    ("kills_per_hour", t.kills_per_hour),
                    ("mem_mb", t.mem_mb),
                    ("cpu_pct", t.cpu_pct),
                    ("latency_ms", t.latency_ms),
                ],
                check_measure,
            )?;
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

// ---------------------------------------------------------------------------------------------
// Server -> plugin
// ---------------------------------------------------------------------------------------------

/// A command relayed from a browser to a plugin, exactly as the plugin expects it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginCommand {
    pub player_name: String,
    pub command: String,
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
}
