//! `/history` and `/trails` on both backends: content, paging and parameter errors.

use crate::common;

use chrono::{Duration, SecondsFormat, Utc};
use common::{Backend, TestApp, telemetry};
use serde_json::Value;

fn at(minutes_ago: i64) -> String {
    (Utc::now() - Duration::minutes(minutes_ago)).to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A tracker that keeps plugin timestamps as sent (CLOCK_SKEW_SECS=0), so that [`seed`] can
/// send a past hour through a plugin connection.
async fn trusting(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(backend, |s| s.sessions.clock_skew_secs = 0).await
}

/// Sends `n` telemetry frames for `name`, one per minute ending now, and waits until stored.
async fn seed(app: &TestApp, name: &str, n: i64, already: i64) {
    let mut plugin = app.plugin().await;
    for i in 0..n {
        let mut frame = telemetry(name, "s", i);
        frame["timestamp"] = at(n - i).into();
        frame["ew"] = (i as f64).into();
        plugin.send_json(&frame).await;
    }
    app.wait_for_rows(already + n, 0, 0).await;
}

async fn history_pages_through_every_row_in_order(backend: Backend) {
    let Some(app) = trusting(backend).await else {
        return;
    };
    seed(&app, "Papa", 25, 0).await;
    seed(&app, "Quebec", 5, 25).await;

    let mut seen = Vec::new();
    let mut path = "/history?character=Papa&limit=10".to_owned();
    let mut pages = 0;
    loop {
        let (status, body) = app.get(&path).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        let rows = body["data"].as_array().expect("data").clone();
        assert!(rows.len() <= 10);
        for row in &rows {
            assert_eq!(row["character_name"], "Papa");
            seen.push((
                row["id"].as_i64().expect("id"),
                row["ew"].as_f64().expect("ew"),
            ));
        }
        match body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/history?character=Papa&limit=10&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 25);
    let ews: Vec<f64> = seen.iter().map(|(_, ew)| *ew).collect();
    let expected: Vec<f64> = (0..25).map(|i| i as f64).collect();
    assert_eq!(ews, expected, "oldest first, no row twice");

    // Every character, and a time range [from, to).
    let (_, all) = app.get("/history?limit=100").await;
    assert_eq!(all["data"].as_array().map(Vec::len), Some(30));
    assert_eq!(all["next_cursor"], Value::Null);
    let from = at(10);
    let to = at(5);
    let (_, ranged) = app
        .get(&format!("/history?character=Papa&from={from}&to={to}").replace('+', "%2B"))
        .await;
    let n = ranged["data"].as_array().map(Vec::len).unwrap_or(0);
    assert!(
        (4..=6).contains(&n),
        "about five rows in a five-minute range, got {n}"
    );

    let (_, legacy) = app.get(&format!("/history/?from_ts={from}")).await;
    assert!(legacy["data"].as_array().is_some_and(|d| !d.is_empty()));
}

async fn history_rejects_bad_parameters(backend: Backend) {
    let Some(app) = trusting(backend).await else {
        return;
    };
    for (query, needle) in [
        ("from=yesterday", "from"),
        ("to=2026-13-01T00:00:00Z", "to"),
        ("from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "after"),
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("limit=ten", "limit"),
        ("cursor=abc", "cursor"),
        // Found by schemathesis: an empty format, and an alias beside its name, were accepted.
        ("format=", "format"),
        ("to=2026-01-01T00:00:00Z&to_ts=", "to_ts"),
        (
            "from_ts=2026-01-01T00:00:00Z&from=2026-01-01T00:00:00Z",
            "from_ts",
        ),
        ("to_ts=", "to"),
    ] {
        let (status, body) = app.get(&format!("/history?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains(needle),
            "{query}: `{msg}` should mention {needle}"
        );
    }
}

async fn trails_return_recent_positions_per_character(backend: Backend) {
    let Some(app) = trusting(backend).await else {
        return;
    };
    seed(&app, "Romeo", 6, 0).await;
    seed(&app, "Sierra", 3, 6).await;
    let (status, body) = app.get("/trails?seconds=600").await;
    assert_eq!(status, 200);
    let points = body["trails"].as_array().expect("trails");
    assert_eq!(points.len(), 9);
    let names: Vec<&str> = points
        .iter()
        .filter_map(|p| p["character_name"].as_str())
        .collect();
    assert_eq!(names, [["Romeo"; 6].as_slice(), &["Sierra"; 3]].concat());
    let times: Vec<&str> = points[..6]
        .iter()
        .filter_map(|p| p["timestamp"].as_str())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "each trail is in time order");

    // Only the last 150 s: the two newest Romeo points (1 and 2 minutes old).
    let (_, recent) = app.get("/trails?seconds=150&character=Romeo").await;
    assert_eq!(recent["trails"].as_array().map(Vec::len), Some(2));

    for query in ["seconds=0", "seconds=lots", "seconds=999999999"] {
        let (status, body) = app.get(&format!("/trails?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("seconds")
        );
    }
}

async fn the_world_at_an_instant_and_past_trails_match_what_was_sent(backend: Backend) {
    let Some(app) = trusting(backend).await else {
        return;
    };
    // Papa: one frame a minute for 20 minutes (ew = minute index); Romeo: only the last 3.
    seed(&app, "Papa", 20, 0).await;
    seed(&app, "Romeo", 3, 20).await;
    let enc = |t: String| t.replace('+', "%2B").replace(':', "%3A");

    // Ten and a half minutes ago Papa was at its 9th point (sent 11 minutes ago); Romeo had not
    // appeared.
    let (status, world) = app.get(&format!("/world?at={}", enc(at(10)))).await;
    assert_eq!(status, 200, "{world}");
    let chars = world["characters"].as_array().expect("characters");
    assert_eq!(chars.len(), 1, "{world}");
    assert_eq!(chars[0]["character_name"], "Papa");
    assert_eq!(chars[0]["ew"], 10.0, "{world}");
    // Now both, each at its latest point.
    let (_, now) = app.get(&format!("/world?at={}", enc(at(0)))).await;
    let names: Vec<&str> = now["characters"]
        .as_array()
        .expect("characters")
        .iter()
        .filter_map(|c| c["character_name"].as_str())
        .collect();
    assert_eq!(names, ["Papa", "Romeo"]);
    // A short lookback leaves out characters silent for longer.
    let (_, gap) = app
        .get(&format!("/world?at={}&lookback=5", enc(at(0))))
        .await;
    assert_eq!(gap["characters"].as_array().map(Vec::len), Some(0), "{gap}");
    assert_eq!(app.get("/world").await.0, 400, "`at` is required");
    assert_eq!(app.get("/world?at=yesterday").await.0, 400);

    // A past window of trails: [16, 5] minutes ago (a little later than at seeding time) holds
    // Papa's points 5..=15.
    let (status, trails) = app
        .get(&format!(
            "/trails?character=Papa&from={}&to={}",
            enc(at(16)),
            enc(at(5))
        ))
        .await;
    assert_eq!(status, 200, "{trails}");
    let ews: Vec<f64> = trails["trails"]
        .as_array()
        .expect("trails")
        .iter()
        .filter_map(|p| p["ew"].as_f64())
        .collect();
    assert_eq!(ews, (5..=15).map(|i| i as f64).collect::<Vec<_>>());
    assert_eq!(
        app.get(&format!("/trails?to={}", enc(at(5)))).await.0,
        400,
        "`to` without `from`"
    );
}

/// `/trails` for a recent window comes from memory and answers exactly what the database would:
/// the same points in the same order. A row written to the database behind the tracker's back
/// shows which one answered.
async fn recent_trails_come_from_memory_exactly_as_the_database_answers(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.queries.trail_memory_secs = 600;
        s.sessions.clock_skew_secs = 0;
    })
    .await
    else {
        return;
    };
    // Memory answers windows that began after the tracker started.
    tokio::time::sleep(std::time::Duration::from_millis(3_200)).await;
    let window_start = Utc::now() - Duration::seconds(3);
    let mut plugin = app.plugin().await;
    for (name, n) in [("Mike", 6), ("Nova", 3)] {
        for i in 0..n {
            let mut frame = telemetry(name, "s", i);
            frame["timestamp"] = (Utc::now() - Duration::milliseconds(100 * (n - i)))
                .to_rfc3339_opts(SecondsFormat::Micros, true)
                .into();
            frame["ew"] = (i as f64).into();
            plugin.send_json(&frame).await;
        }
    }
    app.wait_for_rows(9, 0, 0).await;
    let mut ghost = telemetry("Ghost", "g", 1);
    ghost["timestamp"] = (Utc::now() - Duration::milliseconds(500))
        .to_rfc3339()
        .into();
    common::store_telemetry(&app.store, "ghost", &ghost, 0).await;

    let points = |body: &Value| -> Vec<(String, String, f64)> {
        body["trails"]
            .as_array()
            .expect("trails")
            .iter()
            .map(|p| {
                let name = p["character_name"].as_str().unwrap_or_default().to_owned();
                let at = p["timestamp"].as_str().unwrap_or_default().to_owned();
                (name, at, p["ew"].as_f64().unwrap_or(f64::NAN))
            })
            .collect()
    };
    let (status, memory) = app.get("/trails?seconds=3").await;
    assert_eq!(status, 200, "{memory}");
    let memory = points(&memory);
    let from = window_start.to_rfc3339_opts(SecondsFormat::Micros, true);
    let (status, database) = app.get(&format!("/trails?from={from}")).await;
    assert_eq!(status, 200, "{database}");
    let database = points(&database);
    assert!(
        database.iter().any(|p| p.0 == "Ghost"),
        "the database has the ghost row"
    );
    assert!(
        !memory.iter().any(|p| p.0 == "Ghost"),
        "memory answered: {memory:?}"
    );
    let stored: Vec<_> = database.into_iter().filter(|p| p.0 != "Ghost").collect();
    assert_eq!(memory, stored);
    assert_eq!(memory.len(), 9);

    // One character, thinned: the same again; an unknown one is still a 404.
    let (_, one) = app.get("/trails?seconds=3&character=Mike&step=3600").await;
    assert_eq!(points(&one).len(), 1, "{one}");
    let (status, _) = app.get("/trails?seconds=3&character=Nobody").await;
    assert_eq!(status, 404);
}

both_backends!(
    recent_trails_come_from_memory_exactly_as_the_database_answers,
    the_world_at_an_instant_and_past_trails_match_what_was_sent,
    history_pages_through_every_row_in_order,
    history_rejects_bad_parameters,
    trails_return_recent_positions_per_character,
);
