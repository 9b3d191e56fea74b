//! Several tracker instances acting as one (`CLUSTER_BUS`).
//!
//! Each plugin connection belongs to one instance, which owns its characters: it counts their
//! kills, writes their events, and shares what it accepted over the bus. Every other instance
//! mirrors those characters (their latest snapshot, totals and session baselines as the owner
//! counted them) and passes the frames on to its own browsers, so `/live`, the snapshot and the
//! map are the whole cluster's on every instance. Commands from a browser reach the owner over
//! the bus; when an instance leaves (or stops sending heartbeats) its characters are free, and
//! the instance a plugin reconnects to continues their sessions from its mirror, counting
//! nothing twice.
//!
//! Packets are numbered per sender: a receiver that misses one (or loses the bus for a while)
//! asks for the sender's state again, as a lagging browser gets a snapshot.
//!
//! This module is the transport and the membership (who is there, packet order, commands in
//! flight); what the messages mean to the live state is the instance's [`Member`]
//! (`crate::live`), so nothing here is per frame type.

pub(crate) mod bus;
pub(crate) mod message;
pub(crate) mod nats;
pub(crate) mod packet;
pub(crate) mod postgres;
mod tasks;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::protocol::CommandStatus;

pub(crate) use bus::{Bus, BusError, BusEvent};
use message::{CharacterState, Heartbeat, Message};
pub(crate) use tasks::run;

/// What the cluster needs from the instance it runs in (implemented by the live state).
pub(crate) trait Member: Send + Sync + 'static {
    /// Applies what another instance shared: a frame, a claim, a release or its state.
    fn receive(&self, from: &Arc<str>, message: Message);
    /// Every character a plugin connection of this instance owns, for a peer that asks.
    fn owned_state(&self) -> Vec<CharacterState>;
    /// `instance` left or died: its characters are free. Returns how many there were.
    fn forget_instance(&self, instance: &str) -> usize;
    /// A command from a browser of another instance, for a character owned here.
    fn deliver_command(&self, name: &str, command: &str) -> CommandStatus;
    /// Messages were missed (a gap, or the bus came back): what is kept in memory of the
    /// others' characters no longer covers everything that happened.
    fn lost_coverage(&self);
    /// What this instance's heartbeat says about it.
    fn heartbeat(&self) -> Heartbeat;
}

/// How often an instance says it is alive.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);
/// An instance not heard from for this long is gone: its characters are free.
pub(crate) const PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a browser waits for another instance's answer to a command.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// Messages waiting for the bus before further ones are dropped (and the state shared again).
const OUTBOX: usize = 65_536;
/// Most messages in one packet.
const MESSAGES_PER_PACKET: usize = 256;
/// Characters per state message.
const STATE_CHUNK: usize = 100;

/// Which bus `CLUSTER_BUS` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusChoice {
    Postgres,
    Nats(String),
}

impl BusChoice {
    /// Parses `CLUSTER_BUS`: `postgres` or `nats://...`.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value.eq_ignore_ascii_case("postgres") || value.eq_ignore_ascii_case("postgresql") {
            Ok(Self::Postgres)
        } else if value.starts_with("nats://") || value.starts_with("tls://") {
            Ok(Self::Nats(value.to_owned()))
        } else {
            Err("CLUSTER_BUS must be `postgres` or a nats:// URL".into())
        }
    }
}

/// This instance's place in a cluster; `Cluster::single()` when there is none.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    node: Option<Arc<Node>>,
}

#[derive(Debug)]
struct Node {
    me: Arc<str>,
    /// Random per process (see `PacketOut::boot`).
    boot: u64,
    /// CLUSTER_KEY: every packet is signed with it.
    key: crate::secret::Secret,
    bus: Arc<dyn Bus>,
    outbox: mpsc::Sender<Message>,
    peers: Mutex<HashMap<Arc<str>, Peer>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<CommandStatus>>>,
    next_command: AtomicU64,
    connected: AtomicBool,
    /// When this instance last asked every other one for its state (on reaching the bus).
    asked_everyone: Mutex<Option<Instant>>,
    /// Set when the outbox was full and a message was dropped: the whole owned state is then
    /// shared again.
    overflowed: AtomicBool,
    stats: Stats,
    /// Packets of a bus format this build cannot read are logged at most once a minute.
    version_log: crate::ops::log_gate::LogGate,
}

impl Node {
    /// A member named `me` that has not reached its bus yet.
    fn new(
        me: &str,
        key: crate::secret::Secret,
        bus: Arc<dyn Bus>,
        outbox: mpsc::Sender<Message>,
    ) -> Self {
        Self {
            me: Arc::from(me),
            boot: fastrand::u64(..),
            key,
            bus,
            outbox,
            peers: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_command: AtomicU64::new(1),
            connected: AtomicBool::new(false),
            asked_everyone: Mutex::new(None),
            overflowed: AtomicBool::new(false),
            stats: Stats::default(),
            version_log: crate::ops::log_gate::LogGate::per_minute(),
        }
    }
}

#[derive(Debug)]
struct Peer {
    heard: Instant,
    /// Its process (a restart under the same name is a new one).
    boot: u64,
    last_seq: u64,
    heartbeat: Heartbeat,
}

#[derive(Debug, Default)]
struct Stats {
    packets_sent: AtomicU64,
    packets_received: AtomicU64,
    send_failures: AtomicU64,
    gaps: AtomicU64,
    state_requests: AtomicU64,
    /// Packets dropped: without a valid signature, or replayed.
    rejected: AtomicU64,
    /// Packets of a bus format this build cannot read.
    version_refused: AtomicU64,
}

/// What `/debug` shows about the cluster.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    /// `none`, `postgres` or `nats`.
    pub bus: &'static str,
    pub instance: Option<String>,
    /// Whether the bus is reachable now.
    pub connected: bool,
    /// The other instances heard from within the last few seconds.
    pub peers: Vec<PeerStatus>,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub send_failures: u64,
    /// Packets of another instance that never arrived (each answered by asking its state).
    pub gaps: u64,
    /// State requests answered.
    pub state_requests: u64,
    /// Packets dropped: without a valid signature (CLUSTER_KEY), or replayed.
    pub rejected: u64,
    /// The bus format this build writes, and packets dropped because their format is one this
    /// build cannot read (an instance too new or too old shares the bus).
    pub bus_version: u32,
    pub version_refused: u64,
}

/// Another instance, as its heartbeats describe it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PeerStatus {
    pub instance: String,
    pub heard_ms_ago: u64,
    pub plugins: u64,
    pub browsers: u64,
    /// Characters its plugin connections own.
    pub owned: u64,
}

/// The receiving half handed to [`run`].
#[derive(Debug)]
pub struct Inbox {
    outbox: mpsc::Receiver<Message>,
    events: mpsc::Receiver<BusEvent>,
    stop: CancellationToken,
}

/// A default instance name: the host's name and a random suffix (restarts are new instances).
pub(crate) fn instance_name(configured: Option<&str>) -> String {
    let suffix = format!("{:04x}", fastrand::u16(..));
    match configured.map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => name.to_owned(),
        None => {
            let host = std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "tracker".into());
            format!("{host}-{suffix}")
        }
    }
}

impl Cluster {
    /// A single instance: nothing shared.
    pub fn single() -> Self {
        Self::default()
    }

    /// Connects to the bus. `database_url` is the tracker's (the PostgreSQL bus uses it).
    pub async fn join(
        choice: &BusChoice,
        instance: String,
        key: Option<&crate::secret::Secret>,
        database_url: &str,
        password: Option<&crate::secret::Secret>,
    ) -> Result<(Self, Inbox), BusError> {
        if !database_url.starts_with("postgres") {
            return Err(BusError(
                "a cluster needs a shared PostgreSQL DATABASE_URL (SQLite is a single instance)"
                    .into(),
            ));
        }
        let key = key.ok_or_else(|| {
            BusError(
                "CLUSTER_BUS needs CLUSTER_KEY: a secret every instance shares, which signs each \
                 packet on the bus (anyone who can reach the bus could otherwise speak for the \
                 cluster)"
                    .into(),
            )
        })?;
        let stop = CancellationToken::new();
        let (events_tx, events) = mpsc::channel(4096);
        let bus: Arc<dyn Bus> = match choice {
            BusChoice::Postgres => {
                Arc::new(postgres::connect(database_url, password, events_tx, stop.clone()).await?)
            }
            BusChoice::Nats(urls) => {
                Arc::new(nats::connect(urls, &instance, events_tx, stop.clone()).await?)
            }
        };
        let (outbox_tx, outbox) = mpsc::channel(OUTBOX);
        tracing::info!(instance = %instance, bus = bus.kind(), "joined the cluster bus");
        let node = Node::new(&instance, key.clone(), bus, outbox_tx);
        Ok((
            Self {
                node: Some(Arc::new(node)),
            },
            Inbox {
                outbox,
                events,
                stop,
            },
        ))
    }

    /// Whether this instance is part of a cluster.
    pub fn enabled(&self) -> bool {
        self.node.is_some()
    }

    /// This instance's name, when in a cluster.
    pub fn me(&self) -> Option<&str> {
        self.node.as_ref().map(|node| &*node.me)
    }

    /// Shares a message with the other instances, if in a cluster. Never waits: should the bus
    /// fall behind so far that the outbox is full, the message is dropped and the whole owned
    /// state is shared again once there is room.
    pub fn share(&self, message: impl FnOnce() -> Message) {
        if let Some(node) = &self.node
            && node.outbox.try_send(message()).is_err()
        {
            node.overflowed.store(true, Ordering::Relaxed);
        }
    }

    /// Asks `instance` to hand a command to the plugin connection that owns `name` there, and
    /// waits for its answer (`not_connected` after [`COMMAND_TIMEOUT`]).
    pub async fn send_command(&self, instance: &str, name: &str, command: &str) -> CommandStatus {
        let Some(node) = &self.node else {
            return CommandStatus::NotConnected;
        };
        let id = node.next_command.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&node.pending).insert(id, tx);
        let message = Message::Command {
            to: instance.to_owned(),
            id,
            name: name.to_owned(),
            command: command.to_owned(),
        };
        let status = if node.outbox.try_send(message).is_err() {
            CommandStatus::Busy
        } else {
            match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
                Ok(Ok(status)) => status,
                _ => CommandStatus::NotConnected,
            }
        };
        lock(&node.pending).remove(&id);
        status
    }

    /// The cluster section of `/debug`.
    pub fn status(&self) -> ClusterStatus {
        let Some(node) = &self.node else {
            return ClusterStatus {
                bus: "none",
                instance: None,
                connected: false,
                peers: Vec::new(),
                packets_sent: 0,
                packets_received: 0,
                send_failures: 0,
                gaps: 0,
                state_requests: 0,
                rejected: 0,
                bus_version: packet::BUS_VERSION,
                version_refused: 0,
            };
        };
        let mut peers: Vec<PeerStatus> = lock(&node.peers)
            .iter()
            .map(|(name, p)| PeerStatus {
                instance: name.to_string(),
                heard_ms_ago: u64::try_from(p.heard.elapsed().as_millis()).unwrap_or(u64::MAX),
                plugins: p.heartbeat.plugins,
                browsers: p.heartbeat.browsers,
                owned: p.heartbeat.owned,
            })
            .collect();
        peers.sort_by(|a, b| a.instance.cmp(&b.instance));
        let s = &node.stats;
        ClusterStatus {
            bus: node.bus.kind(),
            instance: Some(node.me.to_string()),
            connected: node.connected.load(Ordering::Relaxed),
            peers,
            packets_sent: s.packets_sent.load(Ordering::Relaxed),
            packets_received: s.packets_received.load(Ordering::Relaxed),
            send_failures: s.send_failures.load(Ordering::Relaxed),
            gaps: s.gaps.load(Ordering::Relaxed),
            state_requests: s.state_requests.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            bus_version: packet::BUS_VERSION,
            version_refused: s.version_refused.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
impl Cluster {
    /// A member of a cluster whose bus goes nowhere: what it shares arrives on the receiver.
    pub(crate) fn in_memory(me: &str) -> (Self, mpsc::Receiver<Message>) {
        #[derive(Debug)]
        struct Nowhere;

        #[async_trait::async_trait]
        impl Bus for Nowhere {
            fn kind(&self) -> &'static str {
                "memory"
            }
            fn max_message(&self) -> usize {
                usize::MAX
            }
            async fn send(&self, _message: String) -> Result<(), BusError> {
                Ok(())
            }
        }

        let (outbox, shared) = mpsc::channel(1024);
        let key = crate::secret::Secret::new("test-cluster-key");
        let node = Node::new(me, key, Arc::new(Nowhere), outbox);
        let cluster = Self {
            node: Some(Arc::new(node)),
        };
        (cluster, shared)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update is a single insert or removal: a poisoned lock still guards consistent maps.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
