//! Ten thousand characters (issue 25): no message to a map grows with the number of characters.
//! A new map gets every live character in bounded snapshot parts and then every update; a
//! coalesced map survives ten thousand new names in one burst.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Backend, Client, TestApp, telemetry};
use dereth_tracker::protocol::parse_plugin_frame;
use dereth_tracker::testing::{Applied, MESSAGE_BOUND, apply_plugin_frame};
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const CROWD: usize = 10_000;

/// Puts one telemetry frame for each of `names` into the server's live state, as a plugin
/// connection's frame is applied once it is read and its character claimed (ten thousand plugin
/// connections' first frames would mostly measure the key binding's database lookups).
fn crowd(app: &TestApp, names: &[String]) {
    for name in names {
        let text = telemetry(name, "s1", 0).to_string();
        let frame = parse_plugin_frame(&text).expect("telemetry");
        let applied = apply_plugin_frame(&app.live, frame);
        assert!(matches!(applied, Applied::Taken(_)), "{applied:?}");
    }
}

/// The next text message of `client` (pings and pongs skipped), within a minute.
async fn next_text(client: &mut Client) -> String {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(60), client.ws.next())
            .await
            .expect("a message within a minute");
        match next {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(Message::Close(frame))) => panic!("the map was closed: {frame:?}"),
            Some(Ok(_)) => {}
            other => panic!("the map's connection ended: {other:?}"),
        }
    }
}

/// A map connection at `path`; returns it with its snapshot put together from its parts, after
/// checking every part's size.
async fn map_at(app: &TestApp, path: &str) -> (Client, Vec<Value>) {
    let request = format!("ws://{}{path}", app.addr)
        .into_client_request()
        .expect("request");
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("map connects");
    let mut client = Client { ws };
    let mut players = Vec::new();
    let mut expected_part = 1;
    loop {
        let text = next_text(&mut client).await;
        assert!(text.len() <= MESSAGE_BOUND, "a {} byte message", text.len());
        let frame: Value = serde_json::from_str(&text).expect("json");
        // A compact map is told its columns first.
        if frame["type"] == "encoding" && expected_part == 1 && players.is_empty() {
            continue;
        }
        assert_eq!(frame["type"], "snapshot", "the snapshot comes first, whole");
        players.extend(frame["players"].as_array().cloned().unwrap_or_default());
        let parts = frame["parts"].as_u64().unwrap_or(1);
        let part = frame["part"].as_u64().unwrap_or(1);
        assert_eq!(part, expected_part, "parts in order");
        if part == parts {
            break;
        }
        expected_part += 1;
    }
    (client, players)
}

fn names(prefix: &str) -> Vec<String> {
    (0..CROWD).map(|i| format!("{prefix} {i:05}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_characters_reach_a_new_map_in_bounded_messages() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let first = names("Crowd");
    crowd(&app, &first);
    let (_, debug) = app.get("/debug").await;
    assert_eq!(
        debug["live_characters"], CROWD,
        "{}",
        debug["live_characters"]
    );

    // A plain map and a coalesced one: the whole crowd, in parts none larger than the bound.
    let (mut plain, players) = map_at(&app, "/ws/live").await;
    let got: HashSet<&str> = players
        .iter()
        .filter_map(|p| p["character_name"].as_str())
        .collect();
    assert_eq!(got.len(), CROWD, "every live character in the snapshot");
    let (mut coalesced, players) = map_at(&app, "/ws/live?coalesce=1").await;
    assert_eq!(players.len(), CROWD);
    // A compact map: the same crowd, as arrays (the name is the second column).
    let (mut compact, players) = map_at(&app, "/ws/live?coalesce=1&encoding=compact").await;
    let got: HashSet<&str> = players.iter().filter_map(|p| p[1].as_str()).collect();
    assert_eq!(
        got.len(),
        CROWD,
        "every live character in the compact snapshot"
    );

    // The plain map then gets every update (this one from a real plugin connection).
    let mut mover = app.plugin().await;
    mover.send_json(&telemetry("Crowd 00000", "s1", 1)).await;
    loop {
        let frame: Value = serde_json::from_str(&next_text(&mut plain).await).expect("json");
        if frame["type"] == "telemetry" && frame["character_name"] == "Crowd 00000" {
            break;
        }
    }

    // Ten thousand new names at once: the coalesced map gets them all, in batches none larger
    // than the bound, and stays open.
    let second = names("Burst");
    crowd(&app, &second);
    let (json_messages, json_bytes) = burst_reaches(&mut coalesced, |f| &f["character_name"]).await;
    let (compact_messages, compact_bytes) = burst_reaches(&mut compact, |f| &f[1]).await;
    eprintln!(
        "10,000 new names reached the coalesced map in {json_messages} messages ({json_bytes} bytes), \
         the compact map in {compact_messages} ({compact_bytes} bytes)"
    );
    assert!(
        compact_bytes < json_bytes,
        "{compact_bytes} vs {json_bytes}"
    );
}

/// Reads `map` until every "Burst" name has come (each message within the bound); returns how
/// many messages and bytes that took.
async fn burst_reaches(map: &mut Client, name: impl Fn(&Value) -> &Value) -> (usize, usize) {
    let mut seen = HashSet::new();
    let (mut messages, mut bytes) = (0, 0);
    while seen.len() < CROWD {
        let text = next_text(map).await;
        messages += 1;
        bytes += text.len();
        assert!(text.len() <= MESSAGE_BOUND, "a {} byte batch", text.len());
        let frame: Value = serde_json::from_str(&text).expect("json");
        for inner in frame["frames"].as_array().cloned().unwrap_or_default() {
            if let Some(n) = name(&inner).as_str()
                && n.starts_with("Burst")
            {
                seen.insert(n.to_owned());
            }
        }
    }
    (messages, bytes)
}
