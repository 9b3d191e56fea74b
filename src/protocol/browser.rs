//! Frames between browsers and the server: what a map sends on `/ws/live` (subscriptions,
//! viewports, commands) and what the server pushes to it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::*;

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
    /// Relay one command to several characters' plugins (distinct names, at most
    /// [`MAX_BROADCAST`]); answered with one result per character.
    Broadcast {
        player_names: Vec<String>,
        command: String,
        token: Option<String>,
    },
}

/// Most characters one broadcast names.
pub const MAX_BROADCAST: usize = 200;

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

#[derive(Deserialize)]
struct BroadcastIn {
    player_names: Vec<String>,
    #[serde(deserialize_with = "flex::string")]
    command: String,
    #[serde(default, deserialize_with = "flex::opt_string")]
    token: Option<String>,
}

/// A command's text: not empty, not too long, no control characters.
fn check_command(command: &str) -> Result<(), FrameError> {
    check_text("command", command)?;
    if command.chars().any(char::is_control) {
        return Err(FrameError::field("command", "contains control characters"));
    }
    Ok(())
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
            check_command(&command)?;
            Ok(BrowserFrame::Command {
                player_name,
                command,
                token,
            })
        }
        "broadcast" => {
            let BroadcastIn {
                player_names,
                command,
                token,
            } = typed(text)?;
            check_command(&command)?;
            if player_names.is_empty() || player_names.len() > MAX_BROADCAST {
                return Err(FrameError::field(
                    "player_names",
                    format!("name 1 to {MAX_BROADCAST} characters"),
                ));
            }
            let mut distinct: Vec<String> = Vec::with_capacity(player_names.len());
            for name in player_names {
                check_name("player_names", &name)?;
                if !distinct.contains(&name) {
                    distinct.push(name);
                }
            }
            Ok(BrowserFrame::Broadcast {
                player_names: distinct,
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

/// A live character owned rather than borrowed: what the live state keeps of it and what one
/// instance of a cluster tells another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveCharacter {
    pub telemetry: Telemetry,
    pub totals: Totals,
    pub last_seen: DateTime<Utc>,
    pub vitals: Option<Vitals>,
    /// The latest character sheet summary (without attributes and skills).
    pub sheet: Option<CharacterSheet>,
}

impl LiveCharacter {
    /// The wire view of this character.
    pub fn as_player(&self) -> LivePlayer<'_> {
        LivePlayer {
            telemetry: &self.telemetry,
            totals: self.totals,
            last_seen: self.last_seen,
            vitals: self.vitals.as_ref(),
            character_stats: self.sheet.as_ref(),
        }
    }
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
    /// The outcome of a broadcast: one result per character, in the order named.
    BroadcastResult {
        command: &'a str,
        results: Vec<BroadcastOutcome<'a>>,
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
    /// The browser may not send commands (nobody signed in, or not a commander).
    Unauthorized,
    /// The plugin is not reading its commands fast enough; try again.
    Busy,
    /// This browser sent too many commands in a short time; slow down.
    RateLimited,
}

/// One character's result in a [`BrowserOut::BroadcastResult`].
#[derive(Debug, Clone, Serialize)]
pub struct BroadcastOutcome<'a> {
    pub player_name: &'a str,
    pub status: CommandStatus,
    pub message: &'static str,
}

impl CommandStatus {
    /// Its wire name (as the audit trail keeps it).
    pub fn name(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::NotConnected => "not_connected",
            Self::Unauthorized => "unauthorized",
            Self::Busy => "busy",
            Self::RateLimited => "rate_limited",
        }
    }

    /// A sentence for people, shown by the UI next to the status.
    pub fn message(self) -> &'static str {
        match self {
            Self::Delivered => "delivered to the plugin",
            Self::NotConnected => "no plugin is connected for that character",
            Self::Unauthorized => "only a signed-in commander or admin may send commands",
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let text = serde_json::json!({
            "type": "telemetry", "character_name": "Alpha", "session_id": "s1",
            "ew": 1.5, "ns": -3.25, "z": 10, "kills": 5, "deaths": 0, "rares_found": 0,
        });
        let PluginFrame::Telemetry(t) = parse_plugin_frame(&text.to_string()).expect("valid")
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
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["type"], "telemetry");
        assert_eq!(v["character_name"], "Alpha");
        assert_eq!(v["total_kills"], 9);
        assert_eq!(v["session_rares"], 1);
    }
}
