//! What the other instances of a cluster share, applied to this instance's live state
//! ([`Instance`] is its [`Member`]): their frames go through [`Live::apply`] like this instance's
//! own; claims, releases and state answers settle who owns which character.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;

use super::{Live, Origin};
use crate::cluster::Member;
use crate::cluster::message::{CharacterState, Heartbeat, Message};
use crate::ops::metrics::Metrics;
use crate::protocol::{CommandStatus, PluginFrame, parse_plugin_frame};

/// This instance as the cluster sees it.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    live: Arc<Live>,
    metrics: Arc<Metrics>,
}

impl Instance {
    pub(crate) fn new(live: Arc<Live>, metrics: Arc<Metrics>) -> Self {
        Self { live, metrics }
    }
}

impl Member for Instance {
    fn receive(&self, from: &Arc<str>, message: Message) {
        let live = &self.live;
        match message {
            Message::Frame { frame, counted } => {
                let parsed = match parse_plugin_frame(frame.get()) {
                    Ok(parsed) => parsed,
                    Err(err) => {
                        tracing::debug!(instance = %from, %err, "cluster bus: unreadable frame ignored");
                        return;
                    }
                };
                // Only a relayed frame is passed on as its text.
                let text = match parsed {
                    PluginFrame::Relayed { .. } => Utf8Bytes::from(frame.get().to_owned()),
                    _ => Utf8Bytes::from_static(""),
                };
                let origin = Origin::Peer {
                    from,
                    counted: &counted,
                };
                live.apply(parsed, &text, origin);
            }
            Message::Claimed { name, at_ms } => live.remote_claimed(from, &name, at_ms),
            Message::Released { names } => live.remote_released(from, &names),
            Message::State { characters } => {
                for c in &characters {
                    // A character claimed here too while the instances could not hear each
                    // other: the earlier claim keeps it, so only one instance counts it.
                    live.remote_claimed(
                        from,
                        &c.character.telemetry.character_name,
                        c.claimed_at_ms,
                    );
                    live.mirror_state(from, c);
                }
            }
            // The cluster handles its own messages.
            Message::Heartbeat(_)
            | Message::Hello { .. }
            | Message::Command { .. }
            | Message::CommandResult { .. }
            | Message::Bye => {}
        }
    }

    fn owned_state(&self) -> Vec<CharacterState> {
        self.live.owned_state()
    }

    fn forget_instance(&self, instance: &str) -> usize {
        self.live.forget_instance(instance)
    }

    fn deliver_command(&self, name: &str, command: &str) -> CommandStatus {
        self.live.deliver_command(name, command)
    }

    fn lost_coverage(&self) {
        self.live.recent.restart_coverage();
    }

    fn heartbeat(&self) -> Heartbeat {
        let snapshot = self.metrics.snapshot();
        Heartbeat {
            plugins: snapshot.plugins_connected,
            browsers: snapshot.browsers_connected,
            owned: self.live.memory().owned_characters as u64,
        }
    }
}

impl Live {
    /// Another instance claimed `name` at `at_ms` (see [`super::claims::Claims::remote_claimed`]).
    pub fn remote_claimed(&self, from: &Arc<str>, name: &str, at_ms: i64) {
        let me = self.cluster.me().unwrap_or_default();
        self.lock().claims.remote_claimed(me, from, name, at_ms);
    }

    /// Applies a character as its owner describes it in a state answer. False when ignored.
    pub fn mirror_state(&self, from: &Arc<str>, state: &CharacterState) -> bool {
        {
            let mut guard = self.lock();
            if !guard
                .claims
                .owned_by(from, &state.character.telemetry.character_name)
            {
                return false;
            }
            guard.roster.mirror_state(state);
        }
        let c = &state.character;
        self.hub.telemetry(&c.telemetry, c.totals, c.last_seen);
        true
    }

    /// Every character a connection of this instance owns, as a newcomer to the cluster needs
    /// it.
    pub fn owned_state(&self) -> Vec<CharacterState> {
        let state = self.lock();
        state
            .claims
            .owned_here()
            .filter_map(|(name, claimed_at_ms)| state.roster.shared_state(name, claimed_at_ms))
            .collect()
    }
}
