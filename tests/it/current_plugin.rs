//! The plugin of today: frame types beyond the original four never cost a plugin its connection,
//! and what they carry shows up where a player would look (live state, browsers, storage).

use crate::common;

use std::time::Duration;

use chrono::Utc;
use common::{Backend, TestApp, telemetry};
use serde_json::{Value, json};

fn at(secs_ago: i64) -> String {
    (Utc::now() - chrono::Duration::seconds(secs_ago)).to_rfc3339()
}

fn telemetry_at(name: &str, secs_ago: i64, ew: f64, ns: f64) -> Value {
    let mut t = telemetry(name, "s1", 1);
    t["timestamp"] = json!(at(secs_ago));
    t["ew"] = json!(ew);
    t["ns"] = json!(ns);
    t
}

async fn unknown_types_never_cost_a_plugin_its_connection(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Today", "s1", 1)).await;
    app.wait_for_rows(1, 0, 0).await;
    // Far more than the error budget (10 a minute) of frames the tracker does not handle, and of
    // the types it only relays.
    for i in 0..60 {
        plugin
            .send_json(&json!({"type": "dance_party", "character_name": "Today", "n": i}))
            .await;
        plugin
            .send_json(&json!({"type": "share_vitals", "character_name": "Today", "hp": i}))
            .await;
        plugin
            .send_json(&json!({"type": "combat_stats", "character_name": "Today", "dps": "9.5"}))
            .await;
    }
    plugin
        .send_json(&json!({"type": "Brand New Type!", "x": [1, 2]}))
        .await;
    plugin.send_json(&telemetry("Today", "s1", 2)).await;
    app.wait_for_rows(2, 0, 0).await;
    assert!(
        plugin.silent_for(Duration::from_millis(300)).await,
        "no error frame (or anything else) came back"
    );
    let debug = app
        .wait_debug("unhandled frames counted", |d| {
            d["frames_unhandled"]["dance_party"] == 60
        })
        .await;
    assert_eq!(debug["frames_unhandled"]["other"], 1);
    assert_eq!(debug["frames_received"]["share"], 60);
    assert_eq!(debug["frames_received"]["combat_stats"], 60);
    assert_eq!(debug["frames_rejected"], 0);
    // Malformed frames are still errors.
    plugin.send_text(r#"{"type": ["vitals"]}"#).await;
    assert_eq!(plugin.recv_json().await["type"], "error");
    // And the connection is still the character's: it receives commands.
    app.sign_in_as(dereth_tracker::config::Role::Commander)
        .await;
    let (mut browser, _) = app.browser().await;
    browser
        .send_json(&json!({"type": "command", "player_name": "Today", "command": "/vt stop"}))
        .await;
    assert_eq!(
        browser.recv_type("command_result").await["status"],
        "delivered"
    );
    assert_eq!(plugin.recv_json().await["command"], "/vt stop");
}

async fn vitals_reach_a_subscribed_browser_and_the_snapshot(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (mut browser, _) = app.browser().await;
    browser
        .send_json(&json!({"type": "subscribe", "types": ["vitals"]}))
        .await;
    browser.recv_type("subscribed").await;
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Vital", "s1", 1)).await;
    // Current and maximum only, as strings, epoch milliseconds, an unknown extra field.
    plugin
        .send_json(&json!({
            "type": "vitals", "character_name": "Vital",
            "timestamp": Utc::now().timestamp_millis(),
            "health_current": "300", "health_max": "400",
            "stamina_pct": 50, "mana_percentage": "75.5", "vitae": "95",
            "future_field": {"x": 1}
        }))
        .await;
    let frame = browser.recv_json().await;
    assert_eq!(
        frame["type"], "vitals",
        "only vitals after subscribing: {frame}"
    );
    assert_eq!(frame["character_name"], "Vital");
    assert_eq!(frame["health_percentage"], 75.0);
    assert_eq!(frame["stamina_percentage"], 50.0);
    assert_eq!(frame["mana_percentage"], 75.5);
    assert_eq!(frame["vitae"], 95.0);

    let (_, snapshot) = app.browser().await;
    let player = &snapshot["players"][0];
    assert_eq!(player["character_name"], "Vital");
    assert_eq!(player["vitals"]["health_percentage"], 75.0);
    let (status, live) = app.get("/live").await;
    assert_eq!(status, 200);
    assert_eq!(live["players"][0]["vitals"]["mana_percentage"], 75.5);
    // Vitals are not stored: only the telemetry row exists.
    app.wait_for_rows(1, 0, 0).await;
}

async fn character_stats_with_numeric_strings_are_stored(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (mut browser, _) = app.browser().await;
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Sheet", "s1", 1)).await;
    for (secs_ago, level, xp) in [(1200, "200", "80000000000"), (600, "201", "81000000000")] {
        plugin
            .send_json(&json!({
                "type": "character_stats", "character_name": "Sheet", "timestamp": at(secs_ago),
                "level": level, "xp": xp, "luminance": "250000", "current_title": "Masher",
                "allegiance_name": "Mosswart Guild",
                "attributes": {"strength": "200"}, "skills": [{"name": "War Magic", "base": 400}]
            }))
            .await;
    }
    let live = browser.recv_type("character_stats").await;
    assert_eq!(live["level"], 200);
    assert!(
        live.get("attributes").is_none(),
        "browsers get the summary: {live}"
    );

    let deadline = tokio::time::Instant::now() + common::WAIT;
    let body = loop {
        let (status, body) = app.get("/characters/Sheet/sheet").await;
        // Until the batch with both sheets is committed (the endpoint's reads are separate
        // queries, so a poll can land between them).
        if status == 200
            && body["progress"].as_array().map(Vec::len) == Some(2)
            && body["latest"]["level"] == 201
        {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sheets never stored: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let latest = &body["latest"];
    assert_eq!(latest["level"], 201, "{body}");
    assert_eq!(latest["total_xp"], 81_000_000_000_i64);
    assert_eq!(latest["luminance_earned"], 250_000);
    assert_eq!(latest["title"], "Masher");
    assert_eq!(latest["allegiance"]["name"], "Mosswart Guild");
    assert_eq!(latest["attributes"]["strength"], "200");
    assert_eq!(latest["skills"][0]["base"], 400);
    let levels: Vec<&Value> = body["progress"]
        .as_array()
        .map(|p| p.iter().map(|x| &x["level"]).collect())
        .unwrap_or_default();
    assert_eq!(levels, [&json!(200), &json!(201)], "oldest first");
    // The live snapshot carries the latest summary.
    let (_, snapshot) = app.browser().await;
    assert_eq!(snapshot["players"][0]["character_stats"]["level"], 201);
    // Unknown characters are 404; a bad range is 400.
    assert_eq!(app.get("/characters/Nobody/sheet").await.0, 404);
    assert_eq!(
        app.get("/characters/Sheet/sheet?from=yesterday").await.0,
        400
    );
    // Out-of-range values are refused with the field named, and nothing else is affected.
    plugin
        .send_json(&json!({"type": "character_stats", "character_name": "Sheet", "level": "-3"}))
        .await;
    let reply = plugin.recv_json().await;
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .contains("level")
    );
}

async fn a_portal_breaks_the_trail(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin
        .send_json(&telemetry_at("Porter", 40, 10.0, 10.0))
        .await;
    plugin
        .send_json(&telemetry_at("Porter", 30, 10.5, 10.5))
        .await;
    // No position: the tracker places it where the latest telemetry put the character.
    plugin
        .send_json(&json!({"type": "portal", "character_name": "Porter",
                           "timestamp": at(25), "destination": "Rithwic Portal"}))
        .await;
    plugin
        .send_json(&telemetry_at("Porter", 20, -50.0, 60.0))
        .await;
    plugin
        .send_json(&telemetry_at("Porter", 10, -50.5, 60.5))
        .await;
    app.wait_for_rows(4, 0, 0).await;

    let deadline = tokio::time::Instant::now() + common::WAIT;
    let portals = loop {
        let (_, body) = app.get("/portals?character=Porter").await;
        if body["data"].as_array().is_some_and(|d| !d.is_empty()) {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "portal never stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let row = &portals["data"][0];
    assert_eq!(row["label"], "Rithwic Portal");
    assert_eq!(
        (row["ew"].as_f64(), row["ns"].as_f64()),
        (Some(10.5), Some(10.5))
    );
    assert_eq!(row["session_id"], "s1");

    let (status, trails) = app.get("/trails?seconds=600&character=Porter").await;
    assert_eq!(status, 200);
    let points = trails["trails"].as_array().cloned().unwrap_or_default();
    assert_eq!(points.len(), 4, "{trails}");
    let breaks: Vec<bool> = points
        .iter()
        .map(|p| p["break"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(breaks, [false, false, true, false]);
}

async fn relayed_frames_reach_only_browsers_that_asked(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (mut asked, _) = app.browser().await;
    asked
        .send_json(&json!({"type": "subscribe", "types": ["full_inventory", "share"]}))
        .await;
    asked.recv_type("subscribed").await;
    let (mut default, _) = app.browser().await;
    let mut plugin = app.plugin().await;
    let inventory = json!({"type": "full_inventory", "character_name": "Packrat",
                           "items": [{"name": "Pyreal", "count": "25"}]});
    plugin.send_json(&inventory).await;
    let got = asked.recv_json().await;
    assert_eq!(got, inventory, "relayed exactly as sent");
    // Too large to relay (over 64 KiB), yet no error and the connection stays.
    let big = json!({"type": "full_inventory", "character_name": "Packrat",
                     "items": "x".repeat(70 * 1024)});
    plugin.send_json(&big).await;
    plugin
        .send_json(&json!({"type": "share_health", "character_name": "Packrat", "hp": 5}))
        .await;
    assert_eq!(asked.recv_json().await["type"], "share_health");
    assert!(default.silent_for(Duration::from_millis(300)).await);
    assert!(plugin.silent_for(Duration::from_millis(100)).await);
    let debug = app
        .wait_debug("the oversized frame counted", |d| {
            d["frames_not_relayed"] == 1
        })
        .await;
    assert_eq!(debug["frames_rejected"], 0);
}

async fn epoch_timestamps_are_accepted(backend: Backend) {
    // The plugin's time exactly as sent: clocks trusted (CLOCK_SKEW_SECS=0).
    let Some(app) = TestApp::spawn_with(backend, |s| s.sessions.clock_skew_secs = 0).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    let secs = Utc::now().timestamp() - 60;
    for (i, stamp) in [
        json!(secs),
        json!(secs.to_string()),
        json!(secs * 1000 + 250),
        json!(format!("{}", secs * 1000 + 500)),
        json!(format!("{secs}.75")),
    ]
    .into_iter()
    .enumerate()
    {
        let mut t = telemetry("Epoch", "s1", i as i64);
        t["timestamp"] = stamp;
        plugin.send_json(&t).await;
    }
    app.wait_for_rows(5, 0, 0).await;
    assert!(plugin.silent_for(Duration::from_millis(100)).await);
    let rows = app.store.telemetry_of("Epoch", 10).await.expect("rows");
    let millis: Vec<i64> = rows
        .iter()
        .map(|t| t.timestamp.timestamp_millis() - secs * 1000)
        .collect();
    assert_eq!(millis, [0, 0, 250, 500, 750]);
}

both_backends!(
    unknown_types_never_cost_a_plugin_its_connection,
    vitals_reach_a_subscribed_browser_and_the_snapshot,
    character_stats_with_numeric_strings_are_stored,
    a_portal_breaks_the_trail,
    relayed_frames_reach_only_browsers_that_asked,
    epoch_timestamps_are_accepted,
);
