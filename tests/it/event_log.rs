//! The event log (issue 26): deaths, disconnects and connections, level changes, rares and
//! portals, from the database (so they survive a reload), filterable by character and kind.

use crate::common;

use std::time::Duration;

use common::{Backend, TestApp, telemetry};
use serde_json::{Value, json};

fn kinds(log: &Value) -> Vec<(String, String)> {
    log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["character_name"].as_str().unwrap_or_default().to_owned(),
                e["kind"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn what_happens_is_logged_and_kept(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    // Alive, then dead once in the same session; a level up; a rare; a portal.
    let mut frame = telemetry("Unlucky", "s1", 1);
    frame["deaths"] = json!(0);
    plugin.send_json(&frame).await;
    plugin
        .send_json(&json!({"type": "character_stats", "character_name": "Unlucky", "level": 125}))
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut died = telemetry("Unlucky", "s1", 2);
    died["deaths"] = json!(1);
    plugin.send_json(&died).await;
    plugin
        .send_json(&json!({"type": "character_stats", "character_name": "Unlucky", "level": 126}))
        .await;
    plugin
        .send_json(
            &json!({"type": "rare", "character_name": "Unlucky", "name": "Pearl",
            "ew": 1.0, "ns": 2.0, "z": 0.0}),
        )
        .await;
    plugin
        .send_json(
            &json!({"type": "portal", "character_name": "Unlucky", "portal_name": "Town Network",
            "ew": 1.0, "ns": 2.0, "z": 0.0}),
        )
        .await;
    // Another character on another plugin, which then drops its connection.
    let mut other = app.plugin().await;
    other.send_json(&telemetry("Leaver", "l1", 1)).await;
    app.wait_for_rows(3, 0, 1).await;
    drop(other);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let log = loop {
        let (status, log) = app.get("/log").await;
        assert_eq!(status, 200, "{log}");
        let seen = kinds(&log);
        let has = |who: &str, kind: &str| seen.iter().any(|(w, k)| w == who && k == kind);
        if ["connect", "death", "level", "rare", "portal"]
            .iter()
            .all(|k| has("Unlucky", k))
            && has("Leaver", "disconnect")
            && has("Leaver", "connect")
        {
            break log;
        }
        assert!(tokio::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let entries = log["entries"].as_array().expect("entries");
    let death = entries
        .iter()
        .find(|e| e["kind"] == "death")
        .expect("death");
    assert_eq!(death["detail"], "1 deaths this session");
    let level = entries
        .iter()
        .find(|e| e["kind"] == "level")
        .expect("level");
    assert_eq!(level["detail"], "level 125 to 126");
    let rare = entries.iter().find(|e| e["kind"] == "rare").expect("rare");
    assert_eq!(rare["detail"], "Pearl");
    let stamps: Vec<chrono::DateTime<chrono::FixedOffset>> = entries
        .iter()
        .map(|e| {
            chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap_or_default())
                .expect("time")
        })
        .collect();
    let mut sorted = stamps.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(stamps, sorted, "newest first");
    // Only one level-up: the first sheet had nothing before it to change from.
    assert_eq!(entries.iter().filter(|e| e["kind"] == "level").count(), 1);

    // Filters.
    let (_, mine) = app.get("/log?character=Leaver").await;
    assert!(kinds(&mine).iter().all(|(w, _)| w == "Leaver"), "{mine}");
    let (_, deaths) = app.get("/log?kind=death,disconnect").await;
    let got = kinds(&deaths);
    assert_eq!(got.len(), 2, "{deaths}");
    assert!(got.contains(&("Unlucky".into(), "death".into())));
    assert!(got.contains(&("Leaver".into(), "disconnect".into())));
    let (_, one) = app.get("/log?limit=1").await;
    assert_eq!(kinds(&one).len(), 1);
    let oldest = entries.last().expect("entries")["timestamp"]
        .as_str()
        .expect("time")
        .to_owned();
    let (_, before) = app
        .get(&format!("/log?before={}", oldest.replace('+', "%2B")))
        .await;
    assert_eq!(kinds(&before), Vec::<(String, String)>::new(), "{before}");
    let (status, bad) = app.get("/log?kind=gossip").await;
    assert_eq!(status, 400, "{bad}");

    // A tracker restarted on the same database still has it all.
    let app = app.restart(|_| {}).await;
    let (_, again) = app.get("/log").await;
    assert_eq!(kinds(&again), kinds(&log));
}

/// A plugin with a valid key that reconnects in a loop wrote two event log rows per reconnect,
/// without bound. Connections and disconnections are now kept at most ten per character per
/// ten minutes (counted in `/debug`), while other characters' entries are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_loop_does_not_flood_the_event_log() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let (mut browser, _) = app.browser().await;
    for i in 0..15 {
        let mut plugin = app.plugin().await;
        plugin.send_json(&telemetry("Looper", "s", i)).await;
        browser.recv_type("telemetry").await;
        drop(plugin);
        browser.recv_type("offline").await;
    }
    let mut control = app.plugin().await;
    control.send_json(&telemetry("Control", "c", 1)).await;
    // Entries reach the database in order: once the control's connection is there, so is
    // everything the loop wrote before it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, log) = app.get("/log?character=Control").await;
        if kinds(&log).contains(&("Control".into(), "connect".into())) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, looped) = app
        .get("/log?character=Looper&kind=connect,disconnect")
        .await;
    let got = kinds(&looped);
    assert_eq!(got.len(), 10, "{looped}");
    // A reconnection says how long the character was away; its first connection does not.
    let connects: Vec<&Value> = looped["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["kind"] == "connect")
        .collect();
    assert_eq!(connects.len(), 5, "{looped}");
    let (first, later) = connects.split_last().expect("connects");
    assert_eq!(first["detail"], Value::Null, "{looped}");
    assert!(
        later.iter().all(|e| e["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("back after ") && d.ends_with(" s"))),
        "{looped}"
    );
    let (_, debug) = app.get("/debug").await;
    assert_eq!(debug["log_entries_skipped"], 20, "{debug}");
}

/// The same class as a reconnect loop: a plugin flipping its character's level back and forth
/// wrote a level entry per frame. Ten are kept per character per ten minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_flipped_back_and_forth_does_not_flood_the_event_log() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let mut plugin = app.plugin().await;
    for i in 0..31 {
        plugin
            .send_json(
                &json!({"type": "character_stats", "character_name": "Flipper",
                "level": 100 + i % 2}),
            )
            .await;
    }
    plugin.send_json(&telemetry("Control", "c", 1)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, log) = app.get("/log?character=Control").await;
        if kinds(&log).contains(&("Control".into(), "connect".into())) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, levels) = app.get("/log?character=Flipper&kind=level").await;
    assert_eq!(kinds(&levels).len(), 10, "{levels}");
    let (_, debug) = app.get("/debug").await;
    assert_eq!(debug["log_entries_skipped"], 20, "{debug}");
}

both_backends!(what_happens_is_logged_and_kept);
