//! End-to-end behaviour of the tracker through real sockets, on SQLite and on PostgreSQL.

use crate::common;

use std::time::Duration;

use common::{Backend, Block, TestApp, block_writes, rare_frame, spawn_frame, telemetry};
use dereth_tracker::config::Role;
use dereth_tracker::store::Event;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Ingest, broadcast and persistence
// ---------------------------------------------------------------------------------------------

async fn telemetry_is_broadcast_with_totals_and_persisted(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (mut browser, snapshot) = app.browser().await;
    assert_eq!(snapshot["players"], json!([]));
    let mut plugin = app.plugin().await;

    // Kills 0 -> 5 -> 8 in one session, then a new session reporting 2.
    for (session, kills) in [("s1", 0), ("s1", 5), ("s1", 8), ("s2", 2)] {
        plugin.send_json(&telemetry("Alpha", session, kills)).await;
    }
    let mut totals = Vec::new();
    for _ in 0..4 {
        let frame = browser.recv_type("telemetry").await;
        assert_eq!(frame["character_name"], "Alpha");
        assert_eq!(frame["ew"], 33.6, "numeric strings are coerced to numbers");
        assert_eq!(frame["kills_per_hour"], 120.0);
        assert_eq!(frame["vt_state"], "Combat");
        totals.push(frame["total_kills"].as_i64().expect("total_kills"));
    }
    assert_eq!(totals, vec![0, 5, 8, 10]);

    app.wait_for_rows(4, 0, 0).await;
    let rows = app.store.telemetry_of("Alpha", 100).await.expect("rows");
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[1].kills, 5);
    assert_eq!(rows[1].ew, 33.6);
    assert_eq!(rows[1].total_deaths, Some(7));
    assert_eq!(rows[1].prismatic_taper_count, Some(33));
    assert_eq!(rows[3].session_id, "s2");
    let stats = app.store.character_stats().await.expect("stats");
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].total_kills, 10);

    let (status, live) = app.get("/live").await;
    assert_eq!(status, 200);
    assert_eq!(live["players"][0]["character_name"], "Alpha");
    assert_eq!(live["players"][0]["total_kills"], 10);
}

async fn rares_and_spawns_update_counters(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (mut browser, _) = app.browser().await;
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Beta", "s1", 0)).await;
    plugin
        .send_json(&rare_frame("Beta", "Ring of Dereth"))
        .await;
    plugin
        .send_json(&rare_frame("Beta", "Pearl of Spirit"))
        .await;
    plugin
        .send_json(&spawn_frame("Beta", "Drudge Robber"))
        .await;
    plugin.send_json(&telemetry("Beta", "s1", 1)).await;

    let rare = browser.recv_type("rare").await;
    assert_eq!(rare["name"], "Ring of Dereth");
    assert_eq!(rare["total_rares"], 1);
    assert_eq!(rare["session_rares"], 1);
    let spawn = browser.recv_type("spawn").await;
    assert_eq!(spawn["mob"], "Drudge Robber");
    assert_eq!(spawn["ns"], -20.25);
    let t = browser.recv_type("telemetry").await;
    assert_eq!(t["total_rares"], 2);
    assert_eq!(t["session_rares"], 2);

    app.wait_for_rows(2, 1, 2).await;
    let rares = app.store.rares_of("Beta", 10).await.expect("rares");
    assert_eq!(rares.len(), 2);
    assert_eq!(rares[0].session_id.as_deref(), Some("s1"));
    let spawns = app.store.spawns_of("Beta", 10).await.expect("spawns");
    assert_eq!(spawns[0].mob, "Drudge Robber");
    let stats = app.store.character_stats().await.expect("stats");
    assert_eq!(stats[0].total_rares, 2);
    assert_eq!(stats[0].total_kills, 1);
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let sessions = app
        .store
        .recent_sessions(since, None)
        .await
        .expect("sessions");
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].session_rares, 2);
    assert_eq!(sessions[0].last_kills, 1);
}

async fn chat_is_broadcast_and_subscriptions_filter(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (mut chat_only, _) = app.browser().await;
    chat_only
        .send_json(&json!({"type": "subscribe", "types": ["chat"]}))
        .await;
    assert_eq!(
        chat_only.recv_json().await,
        json!({"type": "subscribed", "types": ["chat"]})
    );
    let (mut everything, _) = app.browser().await;
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Gamma", "s1", 1)).await;
    plugin
        .send_json(
            &json!({"type": "chat", "character_name": "Gamma", "text": "<b>hi</b>", "color": 3}),
        )
        .await;
    let chat = chat_only.recv_json().await;
    assert_eq!(chat["type"], "chat", "telemetry was filtered out: {chat}");
    assert_eq!(chat["text"], "<b>hi</b>");
    assert_eq!(chat["color"], 3);
    assert_eq!(everything.recv_json().await["type"], "telemetry");
    assert_eq!(everything.recv_json().await["type"], "chat");
    // A map opened later gets the recent chat lines in its snapshot, at most the backlog.
    for i in 0..dereth_tracker::testing::CHAT_BACKLOG {
        plugin
            .send_json(
                &json!({"type": "chat", "character_name": "Gamma", "text": format!("line {i}")}),
            )
            .await;
    }
    for _ in 0..dereth_tracker::testing::CHAT_BACKLOG {
        assert_eq!(everything.recv_json().await["type"], "chat");
    }
    let (_, snapshot) = app.browser().await;
    let backlog = snapshot["chat"].as_array().expect("chat backlog");
    assert_eq!(backlog.len(), dereth_tracker::testing::CHAT_BACKLOG);
    assert_eq!(backlog[0]["text"], "line 0", "the oldest kept line first");
    assert_eq!(
        backlog[backlog.len() - 1]["text"],
        format!("line {}", dereth_tracker::testing::CHAT_BACKLOG - 1)
    );
}

async fn a_new_browser_gets_a_snapshot_with_totals(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Delta", "s1", 4)).await;
    plugin.send_json(&telemetry("Echo", "s9", 2)).await;
    app.wait_for_rows(2, 0, 0).await;
    let (_browser, snapshot) = app.browser().await;
    let players = snapshot["players"].as_array().expect("players");
    let names: Vec<&str> = players
        .iter()
        .filter_map(|p| p["character_name"].as_str())
        .collect();
    assert_eq!(names, ["Delta", "Echo"]);
    assert_eq!(players[0]["total_kills"], 4);
    assert!(players[0]["last_seen"].is_string());
}

// ---------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------

fn status_of(err: tokio_tungstenite::tungstenite::Error) -> u16 {
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => resp.status().as_u16(),
        other => panic!("expected an HTTP rejection, got {other:?}"),
    }
}

async fn plugins_must_present_the_secret(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let missing = app.plugin_with(None, None).await.err().expect("refused");
    assert_eq!(status_of(missing), 401);
    let wrong = app
        .plugin_with(Some("nope"), None)
        .await
        .err()
        .expect("refused");
    assert_eq!(status_of(wrong), 401);
    let wrong_query = app
        .plugin_with(None, Some("nope"))
        .await
        .err()
        .expect("refused");
    assert_eq!(status_of(wrong_query), 401);

    let mut legacy = app
        .plugin_with(None, Some(common::SECRET))
        .await
        .expect("legacy query secret accepted");
    legacy.send_json(&telemetry("Legacy", "s1", 1)).await;
    app.wait_for_rows(1, 0, 0).await;
    let refused = app.get("/debug").await.1["connections_refused"].as_u64();
    assert_eq!(refused, Some(3));
}

async fn without_a_configured_secret_every_plugin_is_refused(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.access.shared_secret = None).await else {
        return;
    };
    let err = app
        .plugin_with(Some(common::SECRET), None)
        .await
        .err()
        .expect("refused");
    assert_eq!(status_of(err), 401);
    let (_, debug) = app.get("/debug").await;
    assert_eq!(debug["plugin_auth_configured"], false);
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

async fn bad_frames_get_errors_and_hurt_nobody(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.sessions.max_frame_errors = 100).await
    else {
        return;
    };
    let (mut browser, _) = app.browser().await;
    let mut neighbour = app.plugin().await;
    let mut bad = app.plugin().await;
    neighbour.send_json(&telemetry("Neighbour", "n", 1)).await;
    bad.send_json(&telemetry("Sender", "s", 1)).await;
    app.wait_for_rows(2, 0, 0).await;

    let mut long_name = telemetry("x", "s", 1);
    long_name["character_name"] = json!("x".repeat(200));
    let mut empty_name = telemetry("x", "s", 1);
    empty_name["character_name"] = json!("  ");
    let mut far = telemetry("Sender", "s", 1);
    far["ew"] = json!(1.0e12);
    let mut nan = telemetry("Sender", "s", 1);
    nan["ns"] = json!("NaN");
    let mut wrong_type = telemetry("Sender", "s", 1);
    wrong_type["kills"] = json!({"a": 1});
    let mut no_session = telemetry("Sender", "s", 1);
    no_session.as_object_mut().map(|m| m.remove("session_id"));
    let cases: Vec<(String, &str)> = vec![
        ("{not json".into(), "malformed JSON"),
        ("[1, 2, 3]".into(), "JSON object"),
        (r#"{"character_name": "x"}"#.into(), "type"),
        (r#"{"type": 5, "character_name": "x"}"#.into(), "type"),
        (long_name.to_string(), "character_name"),
        (empty_name.to_string(), "character_name"),
        (far.to_string(), "ew"),
        (nan.to_string(), "ns"),
        (wrong_type.to_string(), "kills"),
        (no_session.to_string(), "session_id"),
    ];
    for (frame, needle) in &cases {
        bad.send_text(frame).await;
        let reply = bad.recv_json().await;
        assert_eq!(reply["type"], "error", "for {frame}");
        let msg = reply["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains(needle),
            "error `{msg}` should mention `{needle}`"
        );
    }
    bad.send_binary(&[1, 2, 3]).await;
    let reply = bad.recv_json().await;
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .contains("binary")
    );

    // The same connection still works, and so does its neighbour.
    bad.send_json(&telemetry("Sender", "s", 2)).await;
    neighbour.send_json(&telemetry("Neighbour", "n", 2)).await;
    app.wait_for_rows(4, 0, 0).await;
    let counts = app.store.row_counts().await.expect("counts");
    assert_eq!(counts.telemetry, 4, "no rejected frame was stored");
    let (_, debug) = app.get("/debug").await;
    assert_eq!(debug["frames_rejected"], (cases.len() + 1) as u64);
    // Browsers never saw the bad frames.
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(browser.recv_type("telemetry").await["character_name"].clone());
    }
    assert!(names.iter().all(|n| n == "Neighbour" || n == "Sender"));
}

async fn repeated_abuse_closes_only_that_connection(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.sessions.max_frame_errors = 3).await else {
        return;
    };
    let mut neighbour = app.plugin().await;
    let mut abuser = app.plugin().await;
    abuser.send_json(&telemetry("Abuser", "s", 1)).await;
    app.wait_for_rows(1, 0, 0).await;
    for _ in 0..4 {
        abuser.send_text("garbage").await;
    }
    assert_eq!(abuser.close_code().await, Some(1008));
    neighbour.send_json(&telemetry("Neighbour", "n", 1)).await;
    app.wait_for_rows(2, 0, 0).await;
    let rows = app.store.telemetry_of("Abuser", 10).await.expect("rows");
    assert_eq!(rows.len(), 1, "the abuser's accepted frame is kept");
}

async fn oversized_frames_close_with_1009(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut neighbour = app.plugin().await;
    let mut big = app.plugin().await;
    big.send_json(&telemetry("Big", "s", 1)).await;
    app.wait_for_rows(1, 0, 0).await;
    let mut frame = telemetry("Big", "s", 2);
    frame["padding"] = json!("x".repeat(1100 * 1024));
    // The server closes as soon as the frame header announces too many bytes; while the client
    // is still writing the rest, that close can arrive as a connection reset instead of the
    // 1009 close frame. Either way the connection is over.
    let sent = futures_util::SinkExt::send(
        &mut big.ws,
        tokio_tungstenite::tungstenite::Message::text(frame.to_string()),
    )
    .await;
    match sent {
        Ok(()) => {
            let code = big.close_code().await;
            assert!(matches!(code, Some(1009) | None), "closed with {code:?}");
        }
        Err(err) => assert!(
            matches!(err, tokio_tungstenite::tungstenite::Error::Io(_)),
            "{err}"
        ),
    }
    // Nothing but the end of the stream (or the close frame, if it was not read above) follows.
    let after = big.next_message().await;
    assert!(
        matches!(
            after,
            None | Some(tokio_tungstenite::tungstenite::Message::Close(_))
        ),
        "the connection is closed, yet {after:?} arrived"
    );
    neighbour.send_json(&telemetry("Neighbour", "n", 1)).await;
    app.wait_for_rows(2, 0, 0).await;
    assert_eq!(
        app.store.telemetry_of("Big", 10).await.expect("rows").len(),
        1
    );
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

async fn commands_reach_the_owning_plugin_connection(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut owner = app.plugin().await;
    owner
        .send_json(&json!({"type": "register", "character_name": "Foxtrot"}))
        .await;
    // Connections are served concurrently: make sure the owner spoke first.
    app.wait_debug("register accepted", |d| {
        d["frames_received"]["register"] == 1
    })
    .await;
    // Another connection naming the same character is an impersonator while the owner lives:
    // its frames are refused (without closing it) and it never gets the character's commands.
    let mut other = app.plugin().await;
    other.send_json(&telemetry("Foxtrot", "forged", 999)).await;
    let refused = other.recv_json().await;
    assert_eq!(refused["type"], "error");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("spoken for by another connection")),
        "{refused}"
    );
    other.send_json(&telemetry("Golf", "s", 1)).await;
    owner.send_json(&telemetry("Foxtrot", "s", 1)).await;
    app.wait_for_rows(2, 0, 0).await;
    let stored = app.store.telemetry_of("Foxtrot", 10).await.expect("rows");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].session_id, "s", "the forged frame was not stored");

    app.sign_in_as(Role::Commander).await;
    let (mut browser, _) = app.browser().await;
    browser
        .send_json(&json!({"player_name": "Foxtrot", "command": "/vt stop"}))
        .await;
    let result = browser.recv_type("command_result").await;
    assert_eq!(result["status"], "delivered");
    assert_eq!(
        owner.recv_json().await,
        json!({"player_name": "Foxtrot", "command": "/vt stop"})
    );
    assert!(other.silent_for(Duration::from_millis(300)).await);

    browser
        .send_json(&json!({"type": "command", "player_name": "Nobody", "command": "/vt start"}))
        .await;
    let result = browser.recv_type("command_result").await;
    assert_eq!(result["status"], "not_connected");

    // When the owner goes away, the character is no longer reachable through it, and the
    // next connection that names it (the plugin reconnecting) takes it over.
    drop(owner);
    app.wait_debug("plugin disconnect", |d| d["plugins_connected"] == 1)
        .await;
    browser
        .send_json(&json!({"player_name": "Foxtrot", "command": "/vt start"}))
        .await;
    assert_eq!(
        browser.recv_type("command_result").await["status"],
        "not_connected"
    );
    other.send_json(&telemetry("Foxtrot", "s2", 1)).await;
    app.wait_for_rows(3, 0, 0).await;
    browser
        .send_json(&json!({"player_name": "Foxtrot", "command": "/vt start"}))
        .await;
    assert_eq!(
        browser.recv_type("command_result").await["status"],
        "delivered"
    );
    assert_eq!(
        other.recv_json().await,
        json!({"player_name": "Foxtrot", "command": "/vt start"})
    );
}

async fn commands_require_the_token_when_one_is_configured(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.access.command_token = Some(dereth_tracker::config::Secret::new("letmein"));
    })
    .await
    else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Golf", "s", 1)).await;
    app.wait_for_rows(1, 0, 0).await;

    let (mut anonymous, _) = app.browser().await;
    anonymous
        .send_json(&json!({"player_name": "Golf", "command": "/vt stop"}))
        .await;
    assert_eq!(
        anonymous.recv_type("command_result").await["status"],
        "unauthorized"
    );
    anonymous
        .send_json(&json!({"player_name": "Golf", "command": "/vt stop", "token": "wrong"}))
        .await;
    assert_eq!(
        anonymous.recv_type("command_result").await["status"],
        "unauthorized"
    );
    assert!(plugin.silent_for(Duration::from_millis(300)).await);

    anonymous
        .send_json(&json!({"player_name": "Golf", "command": "/vt stop", "token": "letmein"}))
        .await;
    assert_eq!(
        anonymous.recv_type("command_result").await["status"],
        "delivered"
    );
    assert_eq!(plugin.recv_json().await["command"], "/vt stop");

    let (mut trusted, _) = app.browser_at("/ws/live?token=letmein").await;
    trusted
        .send_json(&json!({"player_name": "Golf", "command": "/vt start"}))
        .await;
    assert_eq!(
        trusted.recv_type("command_result").await["status"],
        "delivered"
    );
    assert_eq!(plugin.recv_json().await["command"], "/vt start");

    trusted
        .send_json(&json!({"player_name": "", "command": "/vt start"}))
        .await;
    let err = trusted.recv_type("error").await;
    assert!(
        err["error"]
            .as_str()
            .unwrap_or_default()
            .contains("player_name")
    );
}

// ---------------------------------------------------------------------------------------------
// Live window, offline announcements, dead peers
// ---------------------------------------------------------------------------------------------

async fn silent_characters_leave_live_and_are_announced_offline(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.sessions.live_window_secs = 2).await else {
        return;
    };
    let (mut browser, _) = app.browser().await;
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Hotel", "s", 1)).await;
    browser.recv_type("telemetry").await;
    let (_, live) = app.get("/live").await;
    assert_eq!(live["players"].as_array().map(Vec::len), Some(1));

    let offline = browser.recv_type("offline").await;
    assert_eq!(offline["character_name"], "Hotel");
    let (_, live) = app.get("/live").await;
    assert_eq!(live["players"], json!([]));

    // Coming back puts the character live again with its totals intact.
    plugin.send_json(&telemetry("Hotel", "s", 3)).await;
    let again = browser.recv_type("telemetry").await;
    assert_eq!(again["total_kills"], 3);
}

/// Issue 26: a character whose plugin closed was flagged offline only when its live window
/// (30 s) passed. The browser now hears it at once, and the character comes back when its
/// plugin does.
async fn a_closed_plugin_is_announced_offline_at_once(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.sessions.live_window_secs = 300).await
    else {
        return;
    };
    let (mut browser, _) = app.browser().await;
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Closer", "s", 1)).await;
    plugin.send_json(&telemetry("Stayer", "s2", 1)).await;
    let mut other = app.plugin().await;
    other.send_json(&telemetry("Other", "s3", 1)).await;
    for _ in 0..3 {
        browser.recv_type("telemetry").await;
    }
    let (_, live) = app.get("/live").await;
    assert_eq!(live["players"].as_array().map(Vec::len), Some(3));
    // Each wait below gives up long before the 300 s window would pass.
    drop(plugin);
    let mut gone = Vec::new();
    while gone.len() < 2 {
        let frame = browser.recv_type("offline").await;
        gone.push(
            frame["character_name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    gone.sort();
    assert_eq!(gone, ["Closer", "Stayer"]);
    let (_, live) = app.get("/live").await;
    let names: Vec<&str> = live["players"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["character_name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(names, ["Other"], "the other plugin's character stays live");

    let mut back = app.plugin().await;
    back.send_json(&telemetry("Closer", "s", 4)).await;
    let again = browser.recv_type("telemetry").await;
    assert_eq!(again["character_name"], "Closer");
    assert_eq!(again["total_kills"], 4);
    let (_, live) = app.get("/live").await;
    assert_eq!(live["players"].as_array().map(Vec::len), Some(2));
}

async fn dead_browsers_are_dropped_by_ping_timeout(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.sessions.ping_interval_secs = 1;
        s.sessions.peer_timeout_secs = 2;
    })
    .await
    else {
        return;
    };
    // Connect a browser and never read from it again: it never answers pings.
    let (_silent, _) = app.browser().await;
    app.wait_debug("browser connected", |d| d["browsers_connected"] == 1)
        .await;
    // The timeout is 2 s; the wait is long because CI runs the heaviest tests beside this one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let debug = loop {
        let (_, debug) = app.get("/debug").await;
        if debug["browsers_connected"] == 0 {
            break debug;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the silent browser was never dropped: {debug}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(debug["peers_timed_out"].as_u64() >= Some(1));
}

async fn a_lagging_browser_is_resynced_with_a_snapshot(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.sessions.broadcast_capacity = 16;
        s.sessions.send_timeout_secs = 60;
    })
    .await
    else {
        return;
    };
    let (mut slow, _) = app.browser().await;
    let mut plugin = app.plugin().await;
    // Far more than socket buffers hold while the slow browser reads nothing.
    let text = "y".repeat(1_900);
    let frames = 5_000;
    let sender = tokio::spawn(async move {
        for i in 0..frames {
            plugin
                .send_json(&json!({"type": "chat", "character_name": "India", "text": format!("{i} {text}")}))
                .await;
        }
        plugin
    });
    let _plugin = sender.await.expect("sender");
    app.wait_debug("all chat accepted", |d| {
        d["frames_received"]["chat"] == frames
    })
    .await;
    // Reading again, the browser gets a snapshot instead of being dropped.
    let snapshot = slow.recv_type("snapshot").await;
    assert!(snapshot["players"].is_array());
    let debug = app.get("/debug").await.1;
    assert!(debug["broadcast_lagged"].as_u64() >= Some(1), "{debug}");
    assert_eq!(debug["browsers_connected"], 1);
}

// ---------------------------------------------------------------------------------------------
// Durability: shutdown flush, database outage, restart
// ---------------------------------------------------------------------------------------------

async fn shutdown_flushes_every_accepted_frame(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    let block = block_writes(&app.db).await;
    let n = 300;
    for i in 0..n {
        plugin.send_json(&telemetry("Juliet", "s", i)).await;
    }
    app.wait_debug("frames accepted", |d| {
        d["frames_received"]["telemetry"] == n
    })
    .await;
    let written = app.get("/debug").await.1["rows_written"].as_i64();
    assert!(
        written < Some(n),
        "the writer is blocked, so frames are still queued"
    );

    let stopping = tokio::spawn(async move {
        let report = app.shutdown().await;
        (app, report)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    block.release().await;
    let (app, report) = stopping.await.expect("shutdown");
    assert_eq!(report.lost, 0);
    let counts = app.store.row_counts().await.expect("counts");
    assert_eq!(counts.telemetry, n);
    let stats = app.store.character_stats().await.expect("stats");
    assert_eq!(stats[0].total_kills, n - 1);
}

async fn the_writer_survives_a_database_outage(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.writer.write_queue_capacity = 16).await
    else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Kilo", "s", 0)).await;
    app.wait_for_rows(1, 0, 0).await;

    let outage = Outage::begin(&app).await;
    let n = 200;
    let sender = tokio::spawn(async move {
        for i in 1..=n {
            plugin.send_json(&telemetry("Kilo", "s", i)).await;
        }
        plugin
    });
    // The queue (16) fills and ingest waits instead of dropping.
    app.wait_debug("queue full", |d| d["queue_depth"].as_u64() >= Some(16))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    outage.end(&app).await;

    let _plugin = sender.await.expect("sender");
    app.wait_for_rows(n + 1, 0, 0).await;
    let debug = app.get("/debug").await.1;
    assert_eq!(debug["events_dropped"], 0);
    assert!(debug["write_failures"].as_u64() >= Some(1), "{debug}");
    let stats = app.store.character_stats().await.expect("stats");
    assert_eq!(stats[0].total_kills, n);
    assert_eq!(
        app.store.row_counts().await.expect("counts").telemetry,
        n + 1
    );
}

/// A real outage: PostgreSQL refuses connections and existing ones are killed; SQLite is locked
/// by another writer for longer than the busy timeout.
enum Outage {
    Pg,
    Sqlite(Block),
}

impl Outage {
    async fn begin(app: &TestApp) -> Self {
        match app.db.backend {
            Backend::Postgres => {
                let admin = app.db.admin().await;
                let name = app.db.name();
                sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
                    .execute(&admin)
                    .await
                    .expect("refuse connections");
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                )
                .bind(name)
                .execute(&admin)
                .await
                .expect("terminate");
                admin.close().await;
                Outage::Pg
            }
            Backend::Sqlite => Outage::Sqlite(block_writes(&app.db).await),
        }
    }

    async fn end(self, app: &TestApp) {
        match self {
            Outage::Pg => {
                let admin = app.db.admin().await;
                sqlx::query(&format!(
                    "ALTER DATABASE {} ALLOW_CONNECTIONS true",
                    app.db.name()
                ))
                .execute(&admin)
                .await
                .expect("allow connections");
                admin.close().await;
            }
            Outage::Sqlite(block) => block.release().await,
        }
    }
}

async fn totals_survive_a_restart_without_double_counting(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Lima", "s1", 10)).await;
    plugin.send_json(&rare_frame("Lima", "Gem")).await;
    app.wait_for_rows(1, 0, 1).await;
    drop(plugin);

    let app = app.restart(|_| {}).await;
    let mut plugin = app.plugin().await;
    // The same session continues: only the 2 new kills count.
    plugin.send_json(&telemetry("Lima", "s1", 12)).await;
    let (mut browser, _) = app.browser().await;
    plugin.send_json(&telemetry("Lima", "s1", 12)).await;
    let frame = browser.recv_type("telemetry").await;
    assert_eq!(frame["total_kills"], 12);
    assert_eq!(frame["total_rares"], 1);
    assert_eq!(frame["session_rares"], 1);
    app.wait_for_rows(3, 0, 1).await;
    let stats = app.store.character_stats().await.expect("stats");
    assert_eq!(stats[0].total_kills, 12);
}

async fn alternating_huge_and_zero_kills_keep_totals_bounded_and_rows_stored(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    let n = 10_000;
    let start = chrono::Utc::now() - chrono::Duration::seconds(n);
    for i in 0..n {
        let mut t = telemetry(
            "Inflated",
            "s1",
            if i % 2 == 0 { 1_000_000_000_000 } else { 0 },
        );
        t["timestamp"] = json!((start + chrono::Duration::seconds(i)).to_rfc3339());
        plugin.send_json(&t).await;
    }
    app.wait_for_rows(n, 0, 0).await;
    let stats = app.store.character_stats().await.expect("stats");
    let total = stats[0].total_kills;
    // Far below the 5e15 the forged counts claim; bounded by the first frame plus a burst per
    // increase (no overflow, no lost telemetry).
    assert!(
        total <= 1_000_000 + 5_000 * 100 + 20 * 3_600,
        "total_kills {total}"
    );
    assert_eq!(
        app.store
            .telemetry_of("Inflated", 20_000)
            .await
            .expect("rows")
            .len(),
        n as usize
    );
}

async fn late_frames_are_stored_but_not_counted_twice(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.sessions.clock_skew_secs = 0).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    let base = chrono::Utc::now() - chrono::Duration::minutes(5);
    for (secs, kills) in [(10, 5), (20, 10), (15, 7), (30, 12)] {
        let mut t = telemetry("Late", "s1", kills);
        t["timestamp"] = json!((base + chrono::Duration::seconds(secs)).to_rfc3339());
        plugin.send_json(&t).await;
    }
    app.wait_for_rows(4, 0, 0).await;
    let stats = app.store.character_stats().await.expect("stats");
    assert_eq!(stats[0].total_kills, 12, "5 + 5 + 0 (late) + 2");
    // The persisted baseline is the session's, not the late frame's: after a restart the next
    // frame adds only its own kills.
    let app = app.restart(|_| {}).await;
    let mut plugin = app.plugin().await;
    let mut t = telemetry("Late", "s1", 13);
    t["timestamp"] = json!((base + chrono::Duration::seconds(40)).to_rfc3339());
    plugin.send_json(&t).await;
    app.wait_for_rows(5, 0, 0).await;
    let stats = app.store.character_stats().await.expect("stats");
    assert_eq!(stats[0].total_kills, 13);
}

// ---------------------------------------------------------------------------------------------
// Operations endpoints
// ---------------------------------------------------------------------------------------------

async fn debug_and_health_report_the_server(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    let (_browser, _) = app.browser().await;
    plugin.send_json(&telemetry("Mike", "s", 1)).await;
    plugin.send_text("nonsense").await;
    assert_eq!(plugin.recv_json().await["type"], "error");
    app.wait_for_rows(1, 0, 0).await;
    let debug = app
        // The telemetry row and the event log's entry for the plugin's connection.
        .wait_debug("row written", |d| d["rows_written"] == 2)
        .await;
    assert_eq!(debug["version"], env!("CARGO_PKG_VERSION"));
    let expected_backend = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(debug["backend"], expected_backend);
    assert_eq!(debug["plugins_connected"], 1);
    assert_eq!(debug["browsers_connected"], 1);
    assert_eq!(debug["frames_received"]["telemetry"], 1);
    assert_eq!(debug["frames_rejected"], 1);
    assert_eq!(debug["queue_depth"], 0);
    assert!(debug["uptime_secs"].is_u64());

    let (status, health) = app.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    let (status, body) = app.get("/no/such/thing").await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
}

/// PostgreSQL only: an embedded SQLite file cannot be "down" while the process holds it open (its
/// failure path, a locked database, is covered by the outage test on both backends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_while_postgres_is_down() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let (status, _) = app.get("/health").await;
    assert_eq!(status, 200);
    let outage = Outage::begin(&app).await;
    let (status, body) = app.get("/health").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    outage.end(&app).await;
    let (status, _) = app.get("/health").await;
    assert_eq!(status, 200);
}

/// The coalesced stream: one `batch` per tick carrying every frame of the tick in order, while a
/// browser on the per-frame stream still gets each frame alone.
async fn coalesced_browsers_get_every_frame_in_one_batch_per_tick(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.sessions.coalesce_ms = 1_000).await else {
        return;
    };
    let (mut coalesced, _) = app.browser_at("/ws/live?coalesce=1").await;
    let (mut per_frame, _) = app.browser().await;
    let mut plugin = app.plugin().await;
    // Within one tick: three telemetry frames of Alpha, a spawn, one of Bravo.
    for kills in 1..=3 {
        plugin.send_json(&telemetry("Alpha", "a1", kills)).await;
    }
    plugin
        .send_json(&spawn_frame("Alpha", "Drudge Skulker"))
        .await;
    plugin.send_json(&telemetry("Bravo", "b1", 7)).await;

    for _ in 0..5 {
        let frame = per_frame.recv_json().await;
        assert!(
            matches!(frame["type"].as_str(), Some("telemetry" | "spawn")),
            "{frame}"
        );
    }
    // Everything above may straddle two ticks: gather batches until Bravo has arrived.
    let mut frames = Vec::new();
    while !frames
        .iter()
        .any(|f: &Value| f["character_name"] == "Bravo")
    {
        let batch = coalesced.recv_json().await;
        assert_eq!(batch["type"], "batch", "{batch}");
        frames.extend(batch["frames"].as_array().cloned().unwrap_or_default());
    }
    let alpha: Vec<i64> = frames
        .iter()
        .filter(|f| f["type"] == "telemetry" && f["character_name"] == "Alpha")
        .filter_map(|f| f["kills"].as_i64())
        .collect();
    assert_eq!(alpha, [1, 2, 3], "every telemetry frame, in order");
    let spawn = frames.iter().position(|f| f["type"] == "spawn");
    let bravo = frames.iter().position(|f| f["character_name"] == "Bravo");
    assert!(
        spawn.is_some() && spawn < bravo,
        "order is kept: {frames:?}"
    );
    // Nothing else is sent frame by frame to the coalesced browser.
    assert!(coalesced.silent_for(Duration::from_millis(1_500)).await);

    let url = app.url("/ws/live?coalesce=maybe").replacen("http", "ws", 1);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        other => panic!("an unknown coalesce value must be refused: {other:?}"),
    }
}

both_backends!(
    a_closed_plugin_is_announced_offline_at_once,
    coalesced_browsers_get_every_frame_in_one_batch_per_tick,
    telemetry_is_broadcast_with_totals_and_persisted,
    rares_and_spawns_update_counters,
    chat_is_broadcast_and_subscriptions_filter,
    a_new_browser_gets_a_snapshot_with_totals,
    plugins_must_present_the_secret,
    without_a_configured_secret_every_plugin_is_refused,
    bad_frames_get_errors_and_hurt_nobody,
    repeated_abuse_closes_only_that_connection,
    oversized_frames_close_with_1009,
    commands_reach_the_owning_plugin_connection,
    commands_require_the_token_when_one_is_configured,
    silent_characters_leave_live_and_are_announced_offline,
    dead_browsers_are_dropped_by_ping_timeout,
    a_lagging_browser_is_resynced_with_a_snapshot,
    shutdown_flushes_every_accepted_frame,
    the_writer_survives_a_database_outage,
    totals_survive_a_restart_without_double_counting,
    alternating_huge_and_zero_kills_keep_totals_bounded_and_rows_stored,
    late_frames_are_stored_but_not_counted_twice,
    debug_and_health_report_the_server,
);

/// A batch the database rejects is written event by event; a connection failure on one of the
/// valid events then must not drop it: it is retried until written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_while_isolating_a_rejected_batch_loses_nothing() {
    let Some(db) = common::TestDb::create(Backend::Postgres).await else {
        return;
    };
    let store = db.store().await;
    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    // The rare "Poison" is invalid data; the 5th insert into spawn_events fails as if the
    // connection dropped (SQLSTATE 08006): the batch fails 4 times on the rare (each attempt
    // inserts the spawn first), then the spawn's own insert during isolation hits the failure.
    sqlx::raw_sql(
        "ALTER TABLE rare_events ADD CONSTRAINT no_poison CHECK (name <> 'Poison'); \
         CREATE SEQUENCE spawn_inserts; \
         CREATE FUNCTION flaky() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF nextval('spawn_inserts') = 5 THEN \
             RAISE EXCEPTION 'simulated connection loss' USING ERRCODE = '08006'; \
           END IF; RETURN NEW; END $$; \
         CREATE TRIGGER flaky BEFORE INSERT ON spawn_events FOR EACH ROW EXECUTE FUNCTION flaky();",
    )
    .execute(&pool)
    .await
    .expect("set up the failures");
    let parse = |v: serde_json::Value| {
        dereth_tracker::protocol::parse_plugin_frame(&v.to_string()).expect("frame")
    };
    let dereth_tracker::protocol::PluginFrame::Spawn(spawn) = parse(spawn_frame("Iso", "Drudge"))
    else {
        panic!("spawn")
    };
    let dereth_tracker::protocol::PluginFrame::Rare(rare) = parse(rare_frame("Iso", "Poison"))
    else {
        panic!("rare")
    };
    let dir = tempfile::tempdir().expect("spool dir");
    let (spool, spooled) =
        dereth_tracker::spool::Spool::open(&common::spool_options(dir.path())).expect("spool");
    spool.append(Event::Spawn(spawn)).await.expect("spooled");
    spool
        .append(Event::Rare {
            rare,
            session_id: None,
        })
        .await
        .expect("spooled");
    let metrics = std::sync::Arc::new(dereth_tracker::testing::Metrics::default());
    // Stopped from the start: the writer stores what the spool holds, then ends.
    let stop = tokio_util::sync::CancellationToken::new();
    stop.cancel();
    let report = tokio::time::timeout(
        common::WAIT,
        dereth_tracker::testing::run_writer(
            store.clone(),
            spool.clone(),
            spooled,
            metrics,
            dereth_tracker::testing::WriterConfig {
                batch_size: 10,
                flush_window: Duration::from_secs(10),
            },
            stop,
        ),
    )
    .await
    .expect("the writer finishes");
    assert_eq!(report.left, 0, "nothing left in the spool");
    assert_eq!(report.lost, 1, "only the invalid rare is dropped");
    assert_eq!(report.written, 1);
    assert_eq!(store.spawns_of("Iso", 10).await.expect("spawns").len(), 1);
    let attempts: i64 = sqlx::query_scalar("SELECT last_value FROM spawn_inserts")
        .fetch_one(&pool)
        .await
        .expect("sequence");
    assert!(
        attempts >= 6,
        "the spawn was retried after the failure ({attempts} inserts)"
    );
}

/// A coalesced browser watching an area gets the updates about it (and a character's first
/// position after leaving it), never those elsewhere; bad viewports are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_watching_an_area_gets_only_its_updates() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |s| s.sessions.coalesce_ms = 100).await
    else {
        return;
    };
    let (mut browser, _) = app.browser_at("/ws/live?coalesce=1").await;
    browser
        .send_json(
            &json!({"type": "viewport", "ew_min": 5, "ew_max": -5, "ns_min": 0, "ns_max": 1}),
        )
        .await;
    assert_eq!(browser.recv_type("error").await["type"], "error");
    let (mut per_frame, _) = app.browser().await;
    per_frame
        .send_json(
            &json!({"type": "viewport", "ew_min": -1, "ew_max": 1, "ns_min": -1, "ns_max": 1}),
        )
        .await;
    let refused = per_frame.recv_type("error").await;
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("coalesce")),
        "{refused}"
    );
    browser
        .send_json(
            &json!({"type": "viewport", "ew_min": -10, "ew_max": 10, "ns_min": -10, "ns_max": 10}),
        )
        .await;

    let at = |name: &str, kills: i64, ew: f64, ns: f64| {
        let mut frame = telemetry(name, "s", kills);
        frame["ew"] = json!(ew);
        frame["ns"] = json!(ns);
        frame
    };
    let spawn_at = |mob: &str, ew: f64, ns: f64| {
        let mut frame = spawn_frame("Inside", mob);
        frame["ew"] = json!(ew);
        frame["ns"] = json!(ns);
        frame
    };
    let chat = |text: &str| json!({"type": "chat", "character_name": "Inside", "text": text});
    let mut plugin = app.plugin().await;
    async fn send_and_gather(
        plugin: &mut common::Client,
        browser: &mut common::Client,
        frames: Vec<Value>,
        until: &str,
    ) -> Vec<Value> {
        for f in &frames {
            plugin.send_json(f).await;
        }
        let mut got = Vec::new();
        while !got.iter().any(|f: &Value| f["text"] == until) {
            let batch = browser.recv_json().await;
            assert_eq!(batch["type"], "batch", "{batch}");
            got.extend(batch["frames"].as_array().cloned().unwrap_or_default());
        }
        got
    }
    let got = send_and_gather(
        &mut plugin,
        &mut browser,
        vec![
            at("Inside", 1, 1.0, 1.0),
            at("Outside", 1, 50.0, 50.0),
            spawn_at("Near", 2.0, 2.0),
            spawn_at("Far", 80.0, 80.0),
            chat("first"),
        ],
        "first",
    )
    .await;
    let names: Vec<String> = got
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                f["type"].as_str().unwrap_or(""),
                f["character_name"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        got.iter()
            .any(|f| f["type"] == "telemetry" && f["character_name"] == "Inside"),
        "{names:?}"
    );
    assert!(got.iter().any(|f| f["mob"] == "Near"), "{names:?}");
    assert!(
        !got.iter().any(|f| f["character_name"] == "Outside"),
        "{names:?}"
    );
    assert!(!got.iter().any(|f| f["mob"] == "Far"), "{names:?}");
    // Inside leaves: its first position outside arrives, the next does not.
    let got = send_and_gather(
        &mut plugin,
        &mut browser,
        vec![
            at("Inside", 2, 30.0, 1.0),
            at("Inside", 3, 31.0, 1.0),
            chat("second"),
        ],
        "second",
    )
    .await;
    let kills: Vec<i64> = got
        .iter()
        .filter(|f| f["type"] == "telemetry")
        .filter_map(|f| f["kills"].as_i64())
        .collect();
    assert_eq!(kills, [2]);
    // The whole map again: everything arrives.
    browser.send_json(&json!({"type": "viewport"})).await;
    let got = send_and_gather(
        &mut plugin,
        &mut browser,
        vec![at("Outside", 2, 50.0, 50.0), chat("third")],
        "third",
    )
    .await;
    assert!(got.iter().any(|f| f["character_name"] == "Outside"));
}
