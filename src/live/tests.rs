//! The live state's rules, one frame at a time.

use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use chrono::Utc;
use tokio::sync::mpsc;

use super::claims::Owner;
use super::*;
use crate::cluster::message::{Counted, Message};
use crate::protocol::{PluginFrame, Telemetry, Totals, parse_plugin_frame};
use crate::store::{Event, SessionStats};

fn telemetry(name: &str, session: &str, kills: i64) -> Telemetry {
    let text = serde_json::json!({
        "type": "telemetry", "character_name": name, "session_id": session,
        "ew": 1.0, "ns": 2.0, "z": 0.0, "kills": kills, "deaths": 0, "rares_found": 0,
    })
    .to_string();
    match parse_plugin_frame(&text) {
        Ok(PluginFrame::Telemetry(t)) => t,
        other => panic!("bad fixture: {other:?}"),
    }
}

/// A member of a cluster whose messages to the others arrive on the receiver.
fn in_cluster() -> (Live, mpsc::Receiver<Message>) {
    let (cluster, shared) = Cluster::in_memory("node-a");
    let recent = Arc::new(RecentTrails::new(0));
    let limits = LiveLimits::default();
    let live = Live::new(Duration::from_secs(30), 16, recent, cluster, limits);
    (live, shared)
}

/// Applies a telemetry frame of this instance's plugin; the kills it adds.
fn delta(live: &Live, t: &Telemetry) -> i64 {
    let empty = Utf8Bytes::from_static("");
    match live.apply(PluginFrame::Telemetry(t.clone()), &empty, Origin::Plugin) {
        Applied::Taken(Some(Event::Telemetry { kills_delta, .. })) => kills_delta,
        other => panic!("telemetry is stored: {other:?}"),
    }
}

#[test]
fn a_claim_race_between_instances_leaves_exactly_one_owner() {
    let (here, mut shared) = in_cluster();
    let (tx, _rx) = mpsc::channel(4);
    assert!(here.claim(
        "Ann",
        1,
        &tx,
        crate::live::claims::ClaimKind::Data { session: None }
    ));
    let Ok(Message::Claimed { at_ms, .. }) = shared.try_recv() else {
        panic!("the claim is shared");
    };
    let other: Arc<str> = Arc::from("node-b");
    // A later claim elsewhere yields to ours...
    here.remote_claimed(&other, "Ann", at_ms + 5);
    assert_eq!(here.owner_of("Ann"), Owner::Local);
    // ...an earlier one wins, and frames about Ann from node-b are then mirrored.
    here.remote_claimed(&other, "Ann", at_ms - 5);
    assert_eq!(here.owner_of("Ann"), Owner::Remote(other.clone()));
    let counted = Counted {
        totals: Some(Totals {
            total_kills: 7,
            total_rares: 0,
            session_rares: 0,
        }),
        last_seen: Some(Utc::now()),
    };
    let empty = Utf8Bytes::from_static("");
    let peer = Origin::Peer {
        from: &other,
        counted: &counted,
    };
    let applied = here.apply(
        PluginFrame::Telemetry(telemetry("Ann", "s", 7)),
        &empty,
        peer,
    );
    assert!(matches!(applied, Applied::Taken(None)), "{applied:?}");
    assert!(
        !here.claim(
            "Ann",
            1,
            &tx,
            crate::live::claims::ClaimKind::Data { session: None }
        ),
        "owned elsewhere and heard from"
    );
    // Once node-b is gone, a plugin here may take Ann over.
    assert_eq!(here.forget_instance("node-b"), 1);
    assert!(here.claim(
        "Ann",
        1,
        &tx,
        crate::live::claims::ClaimKind::Data { session: None }
    ));
    assert_eq!(here.live_entries()[0].totals.total_kills, 7);
    // From now on frames about Ann from node-b are not node-b's to send.
    let again = here.apply(
        PluginFrame::Telemetry(telemetry("Ann", "s", 9)),
        &empty,
        peer,
    );
    assert!(matches!(again, Applied::NotTheirs), "{again:?}");
}

#[test]
fn frames_of_this_instance_are_shared_in_their_wire_form_with_their_counts() {
    let (live, mut shared) = in_cluster();
    let t = telemetry("Bo", "s", 4);
    assert_eq!(delta(&live, &t), 4);
    let Ok(Message::Frame { frame, counted }) = shared.try_recv() else {
        panic!("the frame is shared");
    };
    let back = parse_plugin_frame(frame.get()).expect("wire form parses");
    assert_eq!(back, PluginFrame::Telemetry(t));
    assert_eq!(counted.totals.map(|t| t.total_kills), Some(4));
}

#[test]
fn kill_deltas_follow_each_session() {
    let live = Live::standalone(Duration::from_secs(30), 16);
    assert_eq!(delta(&live, &telemetry("A", "s1", 3)), 3);
    assert_eq!(delta(&live, &telemetry("A", "s1", 3)), 0);
    assert_eq!(delta(&live, &telemetry("A", "s1", 7)), 4);
    // A counter that falls near zero (plugin reset) adds nothing and becomes the baseline.
    assert_eq!(delta(&live, &telemetry("A", "s1", 2)), 0);
    assert_eq!(delta(&live, &telemetry("A", "s1", 5)), 3);
    // A new session starts from zero.
    assert_eq!(delta(&live, &telemetry("A", "s2", 4)), 4);
    assert_eq!(live.live_entries()[0].totals.total_kills, 14);
}

#[test]
fn seeded_sessions_do_not_double_count_after_restart() {
    let live = Live::standalone(Duration::from_secs(30), 16);
    let stored = CharacterState {
        total_kills: 100,
        total_rares: 2,
        sessions: vec![SessionStats {
            character_name: "A".into(),
            session_id: "s1".into(),
            last_kills: 40,
            session_rares: 1,
        }],
    };
    assert!(live.needs_restore("A"));
    live.restore("A", Some(&stored));
    assert!(!live.needs_restore("A"));
    assert_eq!(delta(&live, &telemetry("A", "s1", 45)), 5);
    let entry = &live.live_entries()[0];
    assert_eq!(entry.totals.total_kills, 105);
    assert_eq!(entry.totals.total_rares, 2);
    assert_eq!(entry.totals.session_rares, 1);
}

#[test]
fn silent_characters_go_offline_once() {
    let live = Live::standalone(Duration::from_millis(0), 16);
    let mut rx = live.subscribe();
    delta(&live, &telemetry("A", "s1", 0));
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(live.reap(None), 1);
    assert_eq!(live.reap(None), 0);
    assert_eq!(
        rx.try_recv().map(|b| b.kind).ok(),
        Some(FrameKind::Plugin(crate::protocol::FrameType::Telemetry))
    );
    assert_eq!(rx.try_recv().map(|b| b.kind).ok(), Some(FrameKind::Offline));
    assert!(live.live_entries().is_empty());
}

#[test]
fn a_closed_connections_characters_go_offline_unless_taken_over() {
    let live = Live::standalone(Duration::from_secs(300), 16);
    let (tx, _rx) = mpsc::channel(4);
    let data = crate::live::claims::ClaimKind::Data { session: None };
    for name in ["A", "B"] {
        assert!(live.claim(name, 1, &tx, data));
        delta(&live, &telemetry(name, "s", 1));
    }
    let released = live.unroute(1);
    // B's plugin came back on a new connection before the old one's end was handled.
    assert!(live.claim("B", 2, &tx, data));
    let mut rx = live.subscribe();
    assert_eq!(live.disconnected(&released), 1);
    assert_eq!(rx.try_recv().map(|b| b.kind).ok(), Some(FrameKind::Offline));
    assert!(rx.try_recv().is_err(), "B is not announced offline");
    let live_names: Vec<String> = live
        .live_entries()
        .iter()
        .map(|e| e.telemetry.character_name.clone())
        .collect();
    assert_eq!(live_names, ["B"]);
    assert_eq!(live.disconnected(&released), 0, "announced once");
}

#[test]
fn a_character_restored_without_the_database_counts_no_kills_twice() {
    let live = Live::standalone(Duration::from_secs(30), 16);
    live.restore("A", None);
    // Its baseline may be in the unreachable database: a resumed session adds nothing.
    assert_eq!(delta(&live, &telemetry("A", "s1", 500)), 0);
    assert_eq!(delta(&live, &telemetry("A", "s1", 503)), 3);
    // A later attempt succeeds: totals become the stored ones (plus nothing double).
    let stored = CharacterState {
        total_kills: 1_000,
        total_rares: 0,
        sessions: Vec::new(),
    };
    live.restore("A", Some(&stored));
    assert_eq!(live.live_entries()[0].totals.total_kills, 1_000);
}

#[test]
fn offline_characters_leave_memory_with_their_sessions() {
    let live = Live::standalone(Duration::from_millis(0), 16);
    let (tx, _rx) = mpsc::channel(4);
    for i in 0..1_000 {
        let name = format!("C{i}");
        live.restore(&name, Some(&CharacterState::default()));
        delta(&live, &telemetry(&name, "s", 1));
    }
    assert!(
        live.claim(
            "C0",
            1,
            &tx,
            crate::live::claims::ClaimKind::Data { session: None }
        ),
        "C0 stays owned"
    );
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(live.reap(None), 1_000, "all went offline");
    assert_eq!(
        live.memory().characters,
        1_000,
        "no eviction without evict_after"
    );
    live.reap(Some(Duration::ZERO));
    let memory = live.memory();
    assert_eq!((memory.characters, memory.sessions), (1, 1), "{memory:?}");
    live.unroute(1);
    live.reap(Some(Duration::ZERO));
    assert_eq!(live.memory().characters, 0);
    assert!(
        live.needs_restore("C5"),
        "an evicted character is loaded again"
    );
}
