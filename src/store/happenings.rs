//! The event log's rows: what the tracker saw happen to characters (deaths, connections,
//! level changes, alerts), kept through the spool like every event, and how the log is asked
//! for and answered (merged with rares and portals from their own tables).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Something that happened to a character, as the tracker saw it in the frames it read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Happening {
    pub character_name: String,
    pub kind: HappeningKind,
    pub timestamp: DateTime<Utc>,
    /// For people: "3 deaths this session", "connection lost", "level 126".
    pub detail: Option<String>,
}

/// An event log request: newest first, before `before`, of one character or all, of some kinds
/// (`rare` and `portal` beside the [`HappeningKind`] names), at most `limit`.
#[derive(Debug, Clone)]
pub struct LogQuery {
    pub character: Option<String>,
    pub kinds: Vec<String>,
    pub before: DateTime<Utc>,
    pub limit: i64,
}

/// One line of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct LogEntry {
    pub timestamp: DateTime<Utc>,
    pub character_name: String,
    /// `death`, `disconnect`, `connect`, `level`, `alert`, `rare` or `portal`.
    pub kind: String,
    /// For people: the item (rare), the portal, "3 deaths this session", "level 125 to 126".
    pub detail: Option<String>,
}

/// Every kind the event log knows.
pub const LOG_KINDS: [&str; 7] = [
    "death",
    "disconnect",
    "connect",
    "level",
    "alert",
    "rare",
    "portal",
];

/// What kind of thing happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HappeningKind {
    /// Its deaths counter went up within a session.
    Death,
    /// Its plugin connection ended (closed, lost or silent).
    Disconnect,
    /// A plugin connection started speaking for it.
    Connect,
    /// Its level changed (character sheet).
    Level,
    /// An alert about it went to the webhook (idle, death, rare, lost connection).
    Alert,
}

impl HappeningKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Death => "death",
            Self::Disconnect => "disconnect",
            Self::Connect => "connect",
            Self::Level => "level",
            Self::Alert => "alert",
        }
    }
}
