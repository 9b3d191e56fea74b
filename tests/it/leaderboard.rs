//! The leaderboard (issue 26): its default view, "kills, last day", answers for a guild of any
//! size. It was refused (400) already at 50 characters: the cost estimate counted every
//! telemetry row of the day (50 x 43,200 > MAX_QUERY_ROWS). Kills and rates now come from
//! per-character hourly counts the writer keeps, so the cost is characters x hours.

use crate::common;

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use common::{Backend, TestApp};
use dereth_tracker::store::Event;

/// A telemetry event of `name` at `at`, adding `kills` and reporting `kph`.
fn event(name: &str, at: DateTime<Utc>, kills: i64, kph: f64) -> Event {
    let mut frame = common::telemetry(name, "day", kills);
    frame["timestamp"] = at.to_rfc3339().into();
    frame["kills_per_hour"] = kph.into();
    let dereth_tracker::protocol::PluginFrame::Telemetry(row) =
        dereth_tracker::protocol::parse_plugin_frame(&frame.to_string()).expect("frame")
    else {
        panic!("not telemetry")
    };
    Event::Telemetry {
        row,
        kills_delta: kills,
        kills_baseline: kills,
    }
}

/// Characters `range` with a day of play: kills early in the day, five hours ago and just now,
/// and 100 kills 30 hours ago that the last day must not count. Returns each one's kills and
/// average rate over the day.
async fn seed(
    app: &TestApp,
    range: std::ops::Range<usize>,
    now: DateTime<Utc>,
) -> HashMap<String, (f64, f64)> {
    let mut expected = HashMap::new();
    let mut events = Vec::new();
    for i in range {
        let name = format!("Guild {i:04}");
        let early = (i % 7) as i64 + 1;
        events.push(event(&name, now - Duration::hours(30), 100, 999.0));
        events.push(event(
            &name,
            now - Duration::minutes(23 * 60 + 30),
            early,
            100.0 + i as f64,
        ));
        events.push(event(&name, now - Duration::hours(5), 2, 200.0 + i as f64));
        events.push(event(
            &name,
            now - Duration::minutes(10),
            1,
            300.0 + i as f64,
        ));
        expected.insert(name, ((early + 3) as f64, 200.0 + i as f64));
        if events.len() >= 2_000 {
            // Each batch its own key: a key already written is a replay, and writes nothing.
            let key = format!("seed {i}");
            app.store.write_batch(&key, &events).await.expect("write");
            events.clear();
        }
    }
    let key = format!("seed rest {}", expected.len());
    app.store.write_batch(&key, &events).await.expect("write");
    expected
}

async fn the_default_leaderboard_answers_for_50_and_1000_characters_with_a_day_of_data(
    backend: Backend,
) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let now = Utc::now();
    let mut expected = HashMap::new();
    for (from, to) in [(0, 50), (50, 1_000)] {
        expected.extend(seed(&app, from..to, now).await);
        // What the map asks for by default, and the other rankings.
        for path in [
            "/stats/leaderboard",
            "/stats/leaderboard?by=kills&limit=20",
            "/stats/leaderboard?by=kills_per_hour&limit=20",
            "/stats/leaderboard?by=rares&limit=20",
        ] {
            let (status, body) = app.get(path).await;
            assert_eq!(status, 200, "{to} characters, {path}: {body}");
        }
        let (_, board) = app.get("/stats/leaderboard?by=kills&limit=1000").await;
        let entries = board["entries"].as_array().expect("entries");
        assert_eq!(entries.len(), to, "every character who killed today");
        for entry in entries {
            let name = entry["character_name"].as_str().expect("name");
            assert_eq!(entry["value"], expected[name].0, "{name}'s kills today");
        }
        let top = &entries[0];
        assert_eq!(top["value"], 10.0, "7 early + 2 + 1");
        let from = DateTime::parse_from_rfc3339(board["from"].as_str().expect("from"))
            .expect("time")
            .to_utc();
        assert_eq!(from.timestamp() % 3600, 0, "counted by the hour: {from}");
        assert!(now - from <= Duration::hours(25) && now - from >= Duration::hours(24));

        let (_, rates) = app
            .get("/stats/leaderboard?by=kills_per_hour&limit=1000")
            .await;
        let rates = rates["entries"].as_array().expect("entries");
        assert_eq!(rates.len(), to);
        for entry in rates {
            let name = entry["character_name"].as_str().expect("name");
            let value = entry["value"].as_f64().expect("rate");
            assert!(
                (value - expected[name].1).abs() < 1e-9,
                "{name}: {value} per hour"
            );
        }
        assert_eq!(rates[0]["character_name"], format!("Guild {:04}", to - 1));
    }
}

both_backends!(the_default_leaderboard_answers_for_50_and_1000_characters_with_a_day_of_data);
