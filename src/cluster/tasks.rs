//! The cluster's tasks: sending packets in order, heartbeats and forgetting silent instances,
//! and receiving (signature, reassembly, packet order, then each message to the [`Member`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::message::{Heartbeat, Message};
use super::packet::{self, PacketIn, PacketOut, Reassembly};
use super::{
    BusEvent, Cluster, HEARTBEAT, Inbox, MESSAGES_PER_PACKET, Member, Node, PEER_TIMEOUT, Peer,
    STATE_CHUNK, lock,
};

/// Runs this instance's part of the cluster until `leave` is cancelled (after every session has
/// ended and released its characters), then sends what is left and says goodbye.
pub(crate) async fn run(
    cluster: Cluster,
    inbox: Inbox,
    member: Arc<dyn Member>,
    leave: CancellationToken,
) {
    let Some(node) = cluster.node else {
        return;
    };
    let Inbox {
        outbox,
        events,
        stop,
    } = inbox;
    let sender = tokio::spawn(send_loop(node.clone(), member.clone(), outbox, leave));
    let receiver = tokio::spawn(receive_loop(node.clone(), member.clone(), events));
    let beat = tokio::spawn(heartbeat_loop(node.clone(), member));
    let _ = sender.await;
    stop.cancel();
    receiver.abort();
    beat.abort();
}

/// Packs what the instance and this module share into packets and sends them, in order.
async fn send_loop(
    node: Arc<Node>,
    member: Arc<dyn Member>,
    mut outbox: mpsc::Receiver<Message>,
    leave: CancellationToken,
) {
    let mut seq: u64 = 0;
    let mut leaving = false;
    loop {
        let first = if leaving {
            match outbox.try_recv() {
                Ok(m) => m,
                Err(_) => break,
            }
        } else {
            tokio::select! {
                m = outbox.recv() => match m { Some(m) => m, None => break },
                () = leave.cancelled() => { leaving = true; continue; }
            }
        };
        let mut messages = vec![first];
        while messages.len() < MESSAGES_PER_PACKET {
            match outbox.try_recv() {
                Ok(m) => messages.push(m),
                Err(_) => break,
            }
        }
        if node.overflowed.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                "the cluster bus fell behind and messages were dropped; sharing the whole state again"
            );
            messages.extend(state_messages(member.as_ref()));
        }
        seq += 1;
        send_packet(&node, seq, &messages).await;
    }
    seq += 1;
    send_packet(&node, seq, &[Message::Bye]).await;
    tracing::info!(instance = %node.me, "left the cluster");
}

/// Serializes and sends one packet (chunked when the bus needs it).
async fn send_packet(node: &Node, seq: u64, messages: &[Message]) {
    let msgs: Vec<Box<RawValue>> = messages
        .iter()
        .filter_map(|m| {
            serde_json::to_string(m)
                .ok()
                .and_then(|s| RawValue::from_string(s).ok())
        })
        .collect();
    let packet = crate::protocol::to_json(&PacketOut {
        v: packet::BUS_VERSION,
        from: &node.me,
        boot: node.boot,
        seq,
        msgs: &msgs,
    });
    // Each bus message is signed on its own, so a forged chunk is dropped before it can
    // disturb the reassembly of a real packet.
    let key = node.key.expose().as_bytes();
    let room = node.bus.max_message().saturating_sub(packet::SIGNATURE_LEN);
    for piece in packet::chunks(packet, &node.me, seq, room) {
        match node.bus.send(packet::sign(key, &piece)).await {
            Ok(()) => {}
            Err(err) => {
                // The receivers notice the missing packet and ask for this instance's state.
                if node.stats.send_failures.fetch_add(1, Ordering::Relaxed) % 100 == 0 {
                    tracing::warn!(%err, "cluster bus send failed");
                }
                return;
            }
        }
    }
    node.stats.packets_sent.fetch_add(1, Ordering::Relaxed);
}

/// This instance's owned characters as state messages.
fn state_messages(member: &dyn Member) -> Vec<Message> {
    let owned = member.owned_state();
    owned
        .chunks(STATE_CHUNK)
        .map(|chunk| Message::State {
            characters: chunk.to_vec(),
        })
        .collect()
}

/// Queues a message of this module's own (answers, questions); dropped when the outbox is full
/// (the peer then times out or notices a gap).
fn say(node: &Node, message: Message) {
    if node.outbox.try_send(message).is_err() {
        tracing::debug!("cluster outbox full; a control message was dropped");
    }
}

/// Says this instance is alive, and forgets instances that stopped saying so.
async fn heartbeat_loop(node: Arc<Node>, member: Arc<dyn Member>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tick.tick().await;
        say(&node, Message::Heartbeat(member.heartbeat()));
        let gone: Vec<Arc<str>> = {
            let mut peers = lock(&node.peers);
            let gone: Vec<Arc<str>> = peers
                .iter()
                .filter(|(_, p)| p.heard.elapsed() > PEER_TIMEOUT)
                .map(|(name, _)| name.clone())
                .collect();
            for name in &gone {
                peers.remove(name);
            }
            gone
        };
        for name in gone {
            let freed = member.forget_instance(&name);
            tracing::warn!(instance = %name, freed, "instance silent; its characters are free to reconnect elsewhere");
        }
    }
}

/// Applies what the other instances send.
async fn receive_loop(
    node: Arc<Node>,
    member: Arc<dyn Member>,
    mut events: mpsc::Receiver<BusEvent>,
) {
    let mut reassembly = Reassembly::default();
    while let Some(event) = events.recv().await {
        let text = match event {
            BusEvent::Connected => {
                node.connected.store(true, Ordering::Relaxed);
                // Anything sent while this instance was away was missed: ask for it all.
                member.lost_coverage();
                *lock(&node.asked_everyone) = Some(Instant::now());
                say(&node, Message::Hello { to: None });
                continue;
            }
            BusEvent::Disconnected => {
                node.connected.store(false, Ordering::Relaxed);
                continue;
            }
            BusEvent::Packet(text) => text,
        };
        // Anyone who can reach the bus (a database role, a NATS client) can publish on it: only
        // messages signed with the cluster's key are read.
        let Some(message) = packet::verify(node.key.expose().as_bytes(), &text) else {
            if node.stats.rejected.fetch_add(1, Ordering::Relaxed) % 100 == 0 {
                tracing::warn!("cluster bus: a message without a valid signature was dropped");
            }
            continue;
        };
        let Some(packet) = reassembly.accept(message.to_owned()) else {
            continue;
        };
        let packet: PacketIn = match serde_json::from_str(&packet) {
            Ok(p) => p,
            Err(err) => {
                tracing::debug!(%err, "cluster bus: unreadable packet ignored");
                continue;
            }
        };
        if *packet.from == *node.me {
            continue;
        }
        if !packet.readable() {
            // A build too new or too old for this one shares the bus: what it says is not
            // applied (it could be misread), and the operator is told which versions meet.
            node.stats.version_refused.fetch_add(1, Ordering::Relaxed);
            if node.version_log.open() {
                tracing::error!(
                    instance = %packet.from,
                    version = packet.v,
                    reads = format!("{}..={}", packet::OLDEST_READABLE, packet::BUS_VERSION),
                    refused = node.stats.version_refused.load(Ordering::Relaxed),
                    "cluster bus: an instance speaks a bus format this build cannot read; its packets are ignored (upgrade one step at a time: see docs/OPERATIONS.md, Upgrade)"
                );
            }
            continue;
        }
        let Some(from) = track_peer(&node, member.as_ref(), &packet) else {
            node.stats.rejected.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        node.stats.packets_received.fetch_add(1, Ordering::Relaxed);
        for raw in &packet.msgs {
            match serde_json::from_str::<Message>(raw.get()) {
                Ok(message) => handle(&node, member.as_ref(), &from, message),
                Err(err) => tracing::debug!(%err, "cluster bus: unknown message ignored"),
            }
        }
    }
}

/// Notes a packet from `packet.from`; asks for its state when packets went missing.
/// `None` for a packet already seen (a replay): numbers only grow within one run of an instance.
fn track_peer(node: &Node, member: &dyn Member, packet: &PacketIn) -> Option<Arc<str>> {
    let mut peers = lock(&node.peers);
    let known = peers
        .get_key_value(packet.from.as_str())
        .map(|(k, _)| k.clone());
    if let Some(name) = known
        && let Some(peer) = peers.get_mut(&name)
        && peer.boot == packet.boot
    {
        if packet.seq <= peer.last_seq {
            return None;
        }
        let missed = packet.seq > peer.last_seq + 1;
        peer.heard = Instant::now();
        peer.last_seq = peer.last_seq.max(packet.seq);
        drop(peers);
        if missed {
            node.stats.gaps.fetch_add(1, Ordering::Relaxed);
            tracing::info!(instance = %name, "missed packets from an instance; asking for its state");
            member.lost_coverage();
            say(
                node,
                Message::Hello {
                    to: Some(name.to_string()),
                },
            );
        }
        return Some(name);
    }
    let name: Arc<str> = Arc::from(packet.from.as_str());
    tracing::info!(instance = %name, "instance joined the cluster");
    peers.insert(
        name.clone(),
        Peer {
            heard: Instant::now(),
            boot: packet.boot,
            last_seq: packet.seq,
            heartbeat: Heartbeat::default(),
        },
    );
    drop(peers);
    // What it shared before this instance heard it is unknown: ask, unless this packet is a
    // newcomer's first (its own question) or everyone was just asked (its answer is coming).
    let asked = lock(&node.asked_everyone).is_some_and(|at| at.elapsed() < PEER_TIMEOUT);
    if packet.seq > 1 && !asked {
        say(
            node,
            Message::Hello {
                to: Some(name.to_string()),
            },
        );
    }
    Some(name)
}

/// Handles the membership messages; the rest are the instance's.
fn handle(node: &Node, member: &dyn Member, from: &Arc<str>, message: Message) {
    match message {
        Message::Heartbeat(beat) => {
            if let Some(peer) = lock(&node.peers).get_mut(&**from) {
                peer.heartbeat = beat;
            }
        }
        Message::Hello { to } => {
            if to.as_deref().is_none_or(|to| to == &*node.me) {
                node.stats.state_requests.fetch_add(1, Ordering::Relaxed);
                for m in state_messages(member) {
                    say(node, m);
                }
            }
        }
        Message::Command {
            to,
            id,
            name,
            command,
        } => {
            if to == *node.me {
                let status = member.deliver_command(&name, &command);
                say(
                    node,
                    Message::CommandResult {
                        to: from.to_string(),
                        id,
                        status,
                    },
                );
            }
        }
        Message::CommandResult { to, id, status } => {
            if to == *node.me
                && let Some(waiting) = lock(&node.pending).remove(&id)
            {
                let _ = waiting.send(status);
            }
        }
        Message::Bye => {
            lock(&node.peers).remove(&**from);
            let freed = member.forget_instance(from);
            tracing::info!(instance = %from, freed, "instance left the cluster");
        }
        other => member.receive(from, other),
    }
}
