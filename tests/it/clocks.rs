//! Time you can trust (issue 24, case 5): plugin clocks that are ahead, behind, corrected, or
//! sending local time without a zone are placed on the tracker's clock; kills count in arrival
//! order; the offset is recorded with every event and shown in `/debug`.

use crate::common;

use chrono::{Duration, Utc};
use common::{Backend, TestApp, telemetry};
use serde_json::{Value, json};

fn at(name: &str, kills: i64, ew: f64, timestamp: String) -> Value {
    let mut t = telemetry(name, "s1", kills);
    t["timestamp"] = json!(timestamp);
    t["ew"] = json!(ew);
    t
}

fn rfc(offset: Duration) -> String {
    (Utc::now() + offset).to_rfc3339()
}

fn enc(t: &str) -> String {
    t.replace('+', "%2B").replace(':', "%3A")
}

/// A plugin 2 h ahead whose clock is then corrected, and one whose clock is stepped back 2 h:
/// every kill counts, both are where they really are now in `/world`, the leaderboard and the
/// recent trails, and `/debug` shows the one still off.
async fn clocks_stepped_two_hours_lose_no_kills(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    let two_hours = Duration::hours(2);
    for i in 1..=30 {
        // Ahead, then corrected.
        let ahead = if i <= 15 { two_hours } else { Duration::zero() };
        plugin
            .send_json(&at("Ahead", i, i as f64, rfc(ahead)))
            .await;
        // Right, then stepped back.
        let back = if i <= 15 {
            Duration::zero()
        } else {
            -two_hours
        };
        plugin
            .send_json(&at("Stepped", i, i as f64, rfc(back)))
            .await;
    }
    app.wait_for_rows(60, 0, 0).await;
    let stats = app.store.character_stats().await.expect("stats");
    for s in &stats {
        assert_eq!(s.total_kills, 30, "{}: every kill counts", s.character_name);
    }
    assert_eq!(stats.len(), 2);

    // Where they are now.
    let now = Utc::now().to_rfc3339();
    let (status, world) = app.get(&format!("/world?at={}", enc(&now))).await;
    assert_eq!(status, 200, "{world}");
    let mut seen: Vec<(String, f64)> = world["characters"]
        .as_array()
        .expect("characters")
        .iter()
        .map(|c| {
            (
                c["character_name"].as_str().unwrap_or_default().to_owned(),
                c["ew"].as_f64().unwrap_or_default(),
            )
        })
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        [("Ahead".to_owned(), 30.0), ("Stepped".to_owned(), 30.0)],
        "{world}"
    );
    let (_, trails) = app.get("/trails?seconds=120&character=Stepped").await;
    assert_eq!(
        trails["trails"].as_array().map(Vec::len),
        Some(30),
        "every point in the recent trail: {trails}"
    );
    let (status, board) = app.get("/stats/leaderboard?by=kills").await;
    assert_eq!(status, 200, "{board}");
    assert!(board.to_string().contains("Stepped"), "{board}");

    // Every row keeps the tracker's receive time and the plugin's offset.
    let (_, history) = app.get("/history?character=Ahead&limit=100").await;
    let rows = history["data"].as_array().expect("rows");
    assert_eq!(rows.len(), 30);
    let offsets: Vec<i64> = rows
        .iter()
        .map(|r| r["clock_offset_ms"].as_i64().expect("offset kept"))
        .collect();
    assert!(
        offsets[..15].iter().all(|o| (o - 7_200_000).abs() < 60_000),
        "{offsets:?}"
    );
    assert!(
        offsets[15..].iter().all(|o| o.abs() < 60_000),
        "{offsets:?}"
    );
    for r in rows {
        let placed = r["timestamp"].as_str().expect("timestamp");
        let received = r["received_at"].as_str().expect("received_at kept");
        let placed = chrono::DateTime::parse_from_rfc3339(placed).expect("time");
        assert!(
            (Utc::now() - placed.with_timezone(&Utc))
                .num_seconds()
                .abs()
                < 60,
            "{r}"
        );
        assert!(
            chrono::DateTime::parse_from_rfc3339(received).is_ok(),
            "{r}"
        );
    }

    // Only the clock still off is listed.
    let (_, debug) = app.get("/debug").await;
    let clocks = &debug["clocks"];
    assert_eq!(clocks["skewed"], 1, "{clocks}");
    assert_eq!(clocks["characters"][0]["character"], "Stepped", "{clocks}");
    let offset = clocks["characters"][0]["offset_ms"]
        .as_i64()
        .expect("offset");
    assert!((offset + 7_200_000).abs() < 60_000, "{clocks}");
    assert_eq!(clocks["characters"][0]["placed_on_server_clock"], true);
    assert!(
        debug["frames_placed_on_server_clock"].as_i64() >= Some(30),
        "{debug}"
    );
}

/// Local time without a zone from a UTC-5 machine, a clock 25 h ahead and one 3 days behind:
/// each frame is kept (the connection stays open) and placed when it was read.
async fn zoneless_and_far_off_clocks_are_placed_when_read(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    // Sent in this order; `/history` pages are per character.
    let local = (Utc::now() - Duration::hours(5))
        .naive_utc()
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    plugin.send_json(&at("Zoneless", 1, 1.0, local)).await;
    plugin
        .send_json(&at("Tomorrow", 1, 2.0, rfc(Duration::hours(25))))
        .await;
    plugin
        .send_json(&at("LastWeek", 1, 3.0, rfc(-Duration::days(3))))
        .await;
    // A spawn and a rare from the zoneless clock are placed the same way.
    plugin
        .send_json(
            &json!({"type": "spawn", "character_name": "Zoneless", "mob": "Drudge",
            "ew": 1, "ns": 2, "timestamp": rfc(-Duration::hours(5)).replace("+00:00", "")}),
        )
        .await;
    app.wait_for_rows(3, 1, 0).await;
    // Still open: a frame sent after them is stored too.
    plugin
        .send_json(&at("Zoneless", 2, 1.5, rfc(Duration::zero())))
        .await;
    app.wait_for_rows(4, 1, 0).await;
    for name in ["Zoneless", "Tomorrow", "LastWeek"] {
        let (_, history) = app
            .get(&format!("/history?character={name}&limit=10"))
            .await;
        let row = &history["data"][0];
        let placed = chrono::DateTime::parse_from_rfc3339(row["timestamp"].as_str().expect("t"))
            .expect("time")
            .with_timezone(&Utc);
        assert!(
            (Utc::now() - placed).num_seconds().abs() < 60,
            "{name} placed when read: {row}"
        );
    }
    let (_, spawns) = app.get("/spawns?character=Zoneless").await;
    let spawn_time = spawns.to_string();
    let today = Utc::now().format("%Y-%m-%dT%H").to_string();
    let hour_before = (Utc::now() - Duration::minutes(1))
        .format("%Y-%m-%dT%H")
        .to_string();
    assert!(
        spawn_time.contains(&today) || spawn_time.contains(&hour_before),
        "the spawn is placed now: {spawns}"
    );
    let (_, trails) = app.get("/trails?seconds=120").await;
    assert_eq!(
        trails["trails"].as_array().map(Vec::len),
        Some(4),
        "all of them in the recent trails: {trails}"
    );
}

/// With CLOCK_SKEW_SECS=0 plugin clocks are trusted (the original's behaviour): a frame keeps
/// the plugin's time, and its offset is still recorded.
async fn trusted_clocks_keep_the_plugins_time(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.sessions.clock_skew_secs = 0).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    let sent = Utc::now() - Duration::minutes(30);
    plugin
        .send_json(&at("Trusted", 1, 1.0, sent.to_rfc3339()))
        .await;
    app.wait_for_rows(1, 0, 0).await;
    let (_, history) = app.get("/history?character=Trusted&limit=10").await;
    let row = &history["data"][0];
    let stored = chrono::DateTime::parse_from_rfc3339(row["timestamp"].as_str().expect("t"))
        .expect("time")
        .with_timezone(&Utc);
    assert_eq!(stored.timestamp(), sent.timestamp(), "{row}");
    let offset = row["clock_offset_ms"].as_i64().expect("offset");
    assert!((offset + 1_800_000).abs() < 60_000, "{row}");
}

both_backends!(
    clocks_stepped_two_hours_lose_no_kills,
    zoneless_and_far_off_clocks_are_placed_when_read,
    trusted_clocks_keep_the_plugins_time,
);
