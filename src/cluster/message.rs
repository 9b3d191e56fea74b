//! What instances tell each other over the bus. Frames travel as the owner validated them (the
//! wire form a plugin sends, `type` included) with what the owner counted, so a receiver applies
//! them through the same rules as its own plugins' frames; nothing here is per frame type.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::protocol::{CommandStatus, LiveCharacter, Totals};

/// One thing an instance tells the others.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", content = "c", rename_all = "snake_case")]
pub enum Message {
    /// A frame a plugin of the sender sent about a character the sender owns, in its wire form
    /// as validated there (a portal placed, a sheet without attributes and skills), with what
    /// the sender counted.
    Frame {
        frame: Box<RawValue>,
        #[serde(default, skip_serializing_if = "Counted::is_empty")]
        counted: Counted,
    },
    /// A plugin connection of this instance now speaks for the character.
    Claimed { name: String, at_ms: i64 },
    /// No connection of this instance speaks for these characters any more.
    Released { names: Vec<String> },
    /// This instance is alive; sent every second.
    Heartbeat(Heartbeat),
    /// Send me your state (sent on joining the bus, after losing it, and on a missed packet);
    /// `to` limits the question to one instance.
    Hello { to: Option<String> },
    /// Characters this instance owns, as they are now (the answer to `Hello`).
    State { characters: Vec<CharacterState> },
    /// A browser on the sender asks the owner of `name` to pass a command on.
    Command {
        to: String,
        id: u64,
        name: String,
        command: String,
    },
    /// The owner's answer to `Command`.
    CommandResult {
        to: String,
        id: u64,
        status: CommandStatus,
    },
    /// This instance is leaving: every character it owned is free.
    Bye,
}

/// What the owner of a character counted when it accepted a frame: the totals after it (telemetry
/// and rares) and when the character was last seen (telemetry).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counted {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totals: Option<Totals>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
}

impl Counted {
    /// Nothing was counted (a frame that changes no totals).
    pub fn is_empty(&self) -> bool {
        self.totals.is_none() && self.last_seen.is_none()
    }
}

/// What a heartbeat tells the other instances about the sender.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub plugins: u64,
    pub browsers: u64,
    pub owned: u64,
}

/// An owned character as a newcomer needs it: latest snapshot, totals and session baselines.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CharacterState {
    pub character: LiveCharacter,
    pub sessions: Vec<SessionBaseline>,
    /// When the owner's connection claimed it (settles a claim made on both sides while the
    /// instances could not hear each other).
    #[serde(default)]
    pub claimed_at_ms: i64,
}

/// A session's kill baseline, so the instance that takes a character over counts nothing twice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionBaseline {
    pub session_id: String,
    pub last_kills: Option<i64>,
    pub last_timestamp: Option<DateTime<Utc>>,
    pub rares: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_message_survives_the_bus_round_trip() {
        let frame = r#"{"type":"rare","character_name":"Bob","name":"Pearl","ew":1.5,"ns":-2.25}"#;
        let totals = Totals {
            total_kills: 9,
            total_rares: 1,
            session_rares: 1,
        };
        let msg = Message::Frame {
            frame: RawValue::from_string(frame.to_owned()).expect("json"),
            counted: Counted {
                totals: Some(totals),
                last_seen: None,
            },
        };
        let json = serde_json::to_string(&msg).expect("serializes");
        let back: Message = serde_json::from_str(&json).expect("parses back");
        let Message::Frame { frame: f, counted } = back else {
            panic!("frame")
        };
        assert_eq!(f.get(), frame);
        assert_eq!(counted.totals, Some(totals));
        // A frame that counted nothing carries no `counted` at all.
        let bare = Message::Frame {
            frame: RawValue::from_string("{}".into()).expect("json"),
            counted: Counted::default(),
        };
        let text = serde_json::to_string(&bare).expect("serializes");
        assert!(!text.contains("counted"), "{text}");
    }
}
