//! Who speaks for each character: the plugin connection that owns it (here, or on another
//! instance of the cluster), which alone may send its frames and receives its commands.
//!
//! A character belongs to the first connection that names it; another may take it over only once
//! the owner has closed or has sent nothing about it for the live window.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use chrono::Utc;
use tokio::sync::mpsc;

use super::Live;
use crate::cluster::message::Message;
use crate::protocol::{CommandStatus, PluginCommand, to_json};

/// Characters owned by another instance and not heard of for this long are forgotten.
const REMOTE_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// Identifies one plugin websocket connection.
pub(crate) type ConnId = u64;

/// The plugin connection that owns a character: the one that receives its commands and the
/// only one whose frames about it are accepted.
#[derive(Debug)]
struct Route {
    conn: ConnId,
    commands: mpsc::Sender<Utf8Bytes>,
    /// When the owner last sent a frame about this character.
    last_heard: Instant,
    /// When the connection claimed it (wall clock, to settle a claim race between instances).
    claimed_at_ms: i64,
    /// The connection has only registered the character, never sent data for it: a connection
    /// that carries on one of the character's sessions takes it over (a returning owner wins it
    /// back from a squatter), and registering again does not keep it from lapsing.
    weak: bool,
}

/// What a frame claiming a character is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimKind<'a> {
    /// It only registers the character (a weak claim).
    Register,
    /// It carries the character's data; telemetry names its session.
    Data { session: Option<&'a str> },
}

/// A character owned by a plugin connection of another instance of the cluster.
#[derive(Debug)]
struct RemoteRoute {
    instance: Arc<str>,
    /// When that instance last shared a frame about the character.
    heard: Instant,
}

/// Who speaks for a character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A plugin connection of this instance.
    Local,
    /// A plugin connection of this other instance.
    Remote(Arc<str>),
    Nobody,
}

/// What a claim did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// The connection already owned the character.
    Kept,
    /// The connection owns it from now on (claimed at this wall-clock time).
    Took { at_ms: i64 },
    /// Another connection (here or elsewhere) still owns it.
    Refused,
}

/// Every character's owner.
#[derive(Debug, Default)]
pub(super) struct Claims {
    routes: HashMap<String, Route>,
    /// Characters owned by other instances (cluster mode only).
    remote: HashMap<String, RemoteRoute>,
}

impl Claims {
    /// Whether a connection that has only registered `name` owns it.
    fn is_weak(&self, name: &str) -> bool {
        self.routes.get(name).is_some_and(|r| r.weak)
    }

    /// `continuing`: the claim carries on a session the character already had.
    fn claim(
        &mut self,
        name: &str,
        conn: ConnId,
        commands: &mpsc::Sender<Utf8Bytes>,
        weak: bool,
        continuing: bool,
        window: Duration,
    ) -> Claim {
        let now = Instant::now();
        if let Some(route) = self.routes.get_mut(name) {
            if route.conn == conn {
                // Registering again keeps nothing alive: only data does.
                if !weak {
                    route.last_heard = now;
                    route.weak = false;
                }
                return Claim::Kept;
            }
            let gone = route.commands.is_closed();
            let squatted = route.weak && continuing;
            if !gone && !squatted && now.duration_since(route.last_heard) <= window {
                return Claim::Refused;
            }
            tracing::info!(
                character = name,
                from = route.conn,
                to = conn,
                "character taken over by a new connection"
            );
        } else if let Some(remote) = self.remote.get(name) {
            if now.duration_since(remote.heard) <= window {
                return Claim::Refused;
            }
            tracing::info!(
                character = name,
                from = %remote.instance,
                to = conn,
                "character taken over from a silent instance"
            );
            self.remote.remove(name);
        }
        let at_ms = Utc::now().timestamp_millis();
        self.routes.insert(
            name.to_owned(),
            Route {
                conn,
                commands: commands.clone(),
                last_heard: now,
                claimed_at_ms: at_ms,
                weak,
            },
        );
        Claim::Took { at_ms }
    }

    /// Whether some connection, here or elsewhere, owns `name` (so it stays in memory).
    pub(super) fn is_owned(&self, name: &str) -> bool {
        self.routes.contains_key(name) || self.remote.contains_key(name)
    }

    /// Records that `from` owns `name` unless a connection of this instance does; refreshes the
    /// remote route. False when the character is owned here (what `from` says about it is then
    /// ignored: two instances never both count it).
    pub(super) fn owned_by(&mut self, from: &Arc<str>, name: &str) -> bool {
        if self.routes.contains_key(name) {
            return false;
        }
        let now = Instant::now();
        match self.remote.get_mut(name) {
            Some(r) if r.instance == *from => r.heard = now,
            _ => {
                self.remote.insert(
                    name.to_owned(),
                    RemoteRoute {
                        instance: from.clone(),
                        heard: now,
                    },
                );
            }
        }
        true
    }

    /// Another instance claimed `name` at `at_ms`. Should a connection here have claimed it too
    /// (both plugins connected at once), the later claim yields (ties go to the smaller
    /// instance name), so exactly one instance counts the character.
    pub(super) fn remote_claimed(&mut self, me: &str, from: &Arc<str>, name: &str, at_ms: i64) {
        if let Some(local) = self.routes.get(name) {
            let ours = (local.claimed_at_ms, me);
            let theirs = (at_ms, &**from);
            if ours < theirs {
                return;
            }
            tracing::warn!(
                character = name,
                instance = %from,
                "another instance claimed this character first; this instance's connection yields"
            );
            self.routes.remove(name);
        }
        self.remote.insert(
            name.to_owned(),
            RemoteRoute {
                instance: from.clone(),
                heard: Instant::now(),
            },
        );
    }

    /// Forgets remote owners not heard of for a long time.
    pub(super) fn forget_stale(&mut self) {
        let now = Instant::now();
        self.remote
            .retain(|_, r| now.duration_since(r.heard) < REMOTE_MEMORY);
    }

    /// Every character a connection of this instance owns, with when it was claimed.
    pub(super) fn owned_here(&self) -> impl Iterator<Item = (&String, i64)> {
        self.routes.iter().map(|(name, r)| (name, r.claimed_at_ms))
    }

    /// (owned here, owned elsewhere).
    pub(super) fn sizes(&self) -> (usize, usize) {
        (self.routes.len(), self.remote.len())
    }
}

impl Live {
    /// Lets `conn` speak for `name`; the owner may be a connection of another instance of the
    /// cluster. A connection that only registers the character claims it weakly: one that
    /// carries on a session of the character takes it over. False when `conn` may not.
    pub fn claim(
        &self,
        name: &str,
        conn: ConnId,
        commands: &mpsc::Sender<Utf8Bytes>,
        kind: ClaimKind<'_>,
    ) -> bool {
        let claim = {
            let mut state = self.lock();
            let weak = kind == ClaimKind::Register;
            let continuing = match kind {
                ClaimKind::Data {
                    session: Some(session),
                } => state.claims.is_weak(name) && state.roster.knows_session(name, session),
                _ => false,
            };
            state
                .claims
                .claim(name, conn, commands, weak, continuing, self.window)
        };
        match claim {
            Claim::Kept => true,
            Claim::Took { at_ms } => {
                self.cluster.share(|| Message::Claimed {
                    name: name.to_owned(),
                    at_ms,
                });
                true
            }
            Claim::Refused => false,
        }
    }

    /// Like [`Live::claim`], but waits up to `wait` for the current owner to close: a plugin
    /// that reconnects may have its new connection's first frame read before the old
    /// connection's close.
    pub async fn claim_within(
        &self,
        name: &str,
        conn: ConnId,
        commands: &mpsc::Sender<Utf8Bytes>,
        kind: ClaimKind<'_>,
        wait: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the attempt, so a release between the attempt and the wait
            // is not missed.
            let released = self.released.notified();
            if self.claim(name, conn, commands, kind) {
                return true;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                // The owner may have gone silent for the live window meanwhile.
                return self.claim(name, conn, commands, kind);
            }
        }
    }

    /// Forgets every route through a closed connection.
    pub fn unroute(&self, conn: ConnId) -> Vec<String> {
        let mut names = Vec::new();
        self.lock().claims.routes.retain(|name, r| {
            let keep = r.conn != conn;
            if !keep {
                names.push(name.clone());
            }
            keep
        });
        self.released.notify_waiters();
        if !names.is_empty() {
            let released = names.clone();
            self.cluster.share(|| Message::Released { names: released });
        }
        names
    }

    /// Lets `name` go from `conn`, if it speaks for it (its key lost the character).
    pub fn release(&self, name: &str, conn: ConnId) {
        let released = {
            let mut state = self.lock();
            let held = state
                .claims
                .routes
                .get(name)
                .is_some_and(|r| r.conn == conn);
            if held {
                state.claims.routes.remove(name);
            }
            held
        };
        if released {
            self.released.notify_waiters();
            self.cluster.share(|| Message::Released {
                names: vec![name.to_owned()],
            });
        }
    }

    /// Who speaks for `name`.
    pub fn owner_of(&self, name: &str) -> Owner {
        let state = self.lock();
        if state.claims.routes.contains_key(name) {
            Owner::Local
        } else if let Some(remote) = state.claims.remote.get(name) {
            Owner::Remote(remote.instance.clone())
        } else {
            Owner::Nobody
        }
    }

    /// Hands a command to the plugin connection that speaks for `name`, on this instance or
    /// (through the cluster) on the one that owns it.
    pub async fn send_command(&self, name: &str, command: &str) -> CommandStatus {
        match self.owner_of(name) {
            Owner::Remote(instance) if self.cluster.enabled() => {
                self.cluster.send_command(&instance, name, command).await
            }
            _ => self.deliver_command(name, command),
        }
    }

    /// Hands a command to the plugin connection of this instance that speaks for `name`,
    /// without waiting.
    pub fn deliver_command(&self, name: &str, command: &str) -> CommandStatus {
        let commands = match self.lock().claims.routes.get(name) {
            Some(route) => route.commands.clone(),
            None => return CommandStatus::NotConnected,
        };
        let text = to_json(&PluginCommand {
            player_name: name.to_owned(),
            command: command.to_owned(),
        });
        match commands.try_send(text.into()) {
            Ok(()) => CommandStatus::Delivered,
            Err(mpsc::error::TrySendError::Full(_)) => CommandStatus::Busy,
            Err(mpsc::error::TrySendError::Closed(_)) => CommandStatus::NotConnected,
        }
    }

    /// `from` no longer speaks for `names`.
    pub fn remote_released(&self, from: &Arc<str>, names: &[String]) {
        {
            let mut state = self.lock();
            for name in names {
                if state
                    .claims
                    .remote
                    .get(name)
                    .is_some_and(|r| r.instance == *from)
                {
                    state.claims.remote.remove(name);
                }
            }
        }
        self.released.notify_waiters();
    }

    /// Forgets every character owned by `instance` (it left or died): plugins may claim them
    /// here. Returns how many there were.
    pub fn forget_instance(&self, instance: &str) -> usize {
        let forgotten = {
            let mut state = self.lock();
            let before = state.claims.remote.len();
            state.claims.remote.retain(|_, r| &*r.instance != instance);
            before - state.claims.remote.len()
        };
        self.released.notify_waiters();
        forgotten
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA: ClaimKind<'static> = ClaimKind::Data { session: None };

    #[test]
    fn a_character_belongs_to_its_first_connection_until_it_goes() {
        let live = Live::standalone(Duration::from_millis(200), 16);
        let (tx1, mut rx1) = mpsc::channel(4);
        let (tx2, mut rx2) = mpsc::channel(4);
        assert_eq!(
            live.deliver_command("A", "/vt stop"),
            CommandStatus::NotConnected
        );
        assert!(live.claim("A", 1, &tx1, DATA));
        assert!(
            !live.claim("A", 2, &tx2, DATA),
            "an impersonator is refused"
        );
        assert_eq!(
            live.deliver_command("A", "/vt stop"),
            CommandStatus::Delivered
        );
        assert!(rx2.try_recv().is_err());
        let got = rx1.try_recv().expect("delivered to the owner");
        assert!(got.as_str().contains("/vt stop"));
        // The owner closes: another connection takes over at once.
        live.unroute(1);
        assert!(live.claim("A", 2, &tx2, DATA));
        assert_eq!(
            live.deliver_command("A", "/vt go"),
            CommandStatus::Delivered
        );
        assert!(rx2.try_recv().is_ok());
        // An owner silent past the live window can be taken over too.
        let (tx3, _rx3) = mpsc::channel(4);
        assert!(!live.claim("A", 3, &tx3, DATA));
        std::thread::sleep(Duration::from_millis(250));
        assert!(live.claim("A", 3, &tx3, DATA));
        drop(tx1);
    }

    #[test]
    fn a_connection_that_only_registers_yields_to_the_returning_owner() {
        let live = Live::standalone(Duration::from_millis(300), 16);
        let (owner, _owner_rx) = mpsc::channel(4);
        let (squatter, _squatter_rx) = mpsc::channel(4);
        let (stranger, _stranger_rx) = mpsc::channel(4);
        // The character had session s1 (its owner sent telemetry with it).
        live.lock().roster.note_session("A", "s1");
        assert!(live.claim("A", 2, &squatter, ClaimKind::Register));
        assert!(
            !live.claim(
                "A",
                3,
                &stranger,
                ClaimKind::Data {
                    session: Some("new")
                }
            ),
            "data of a session the character never had takes nothing from a live connection"
        );
        assert!(
            live.claim(
                "A",
                1,
                &owner,
                ClaimKind::Data {
                    session: Some("s1")
                }
            ),
            "the owner carrying on its session wins the character back"
        );
        assert!(!live.claim("A", 2, &squatter, ClaimKind::Register));
        // Registering again and again keeps nothing alive.
        let (late, _late_rx) = mpsc::channel(4);
        live.unroute(1);
        assert!(live.claim("A", 2, &squatter, ClaimKind::Register));
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(100));
            assert!(live.claim("A", 2, &squatter, ClaimKind::Register));
        }
        assert!(
            live.claim(
                "A",
                4,
                &late,
                ClaimKind::Data {
                    session: Some("s2")
                }
            ),
            "a weak claim lapses after the live window however often it registers"
        );
    }
}
