//! The compact live encoding (`/ws/live?encoding=compact`, issue 25): maps that ask get live
//! characters as arrays of the columns their first frame names, the others keep the JSON
//! objects, and both read the same characters. The contract's `compact_example` is what a
//! compact map gets for the contract's telemetry example.

use crate::common;

use std::time::Duration;

use common::{Backend, Client, TestApp};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Index of `last_seen`, which is the server's clock (compared apart).
fn column(columns: &Value, name: &str) -> usize {
    columns
        .as_array()
        .and_then(|c| c.iter().position(|n| n == name))
        .unwrap_or_else(|| panic!("column {name}"))
}

fn contract() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/EVENT_FORMATS.json"))
        .expect("EVENT_FORMATS.json");
    serde_json::from_str(&text).expect("json")
}

/// A map at `path`: its first text frames until and including the (one-part) snapshot.
async fn open(app: &TestApp, path: &str) -> (Client, Vec<Value>) {
    let request = format!("ws://{}{path}", app.addr)
        .into_client_request()
        .expect("request");
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("map connects");
    let mut client = Client { ws };
    let mut first = Vec::new();
    loop {
        let frame = client.recv_json().await;
        let done = frame["type"] == "snapshot";
        first.push(frame);
        if done {
            return (client, first);
        }
    }
}

/// The next text message, raw.
async fn next_text(client: &mut Client) -> String {
    match client.next_message().await {
        Some(Message::Text(t)) => t.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Without the server-clock column (or keys).
fn without_last_seen(mut v: Value, at: usize) -> Value {
    if let Some(a) = v.as_array_mut() {
        a[at] = Value::Null;
    } else if let Some(o) = v.as_object_mut() {
        // The server's clock, which the contract's example cannot know.
        for key in ["last_seen", "received_at", "clock_offset_ms"] {
            o.remove(key);
        }
    }
    v
}

#[tokio::test]
async fn compact_maps_get_arrays_of_the_named_columns_and_json_maps_objects() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |s| s.sessions.clock_skew_secs = 0).await
    else {
        return;
    };
    let c = contract();
    let encoding = &c["server_to_browser"]["frames"]["encoding"];
    let columns = &encoding["example"]["columns"];
    let last_seen = column(columns, "last_seen");

    let (mut json_map, first) = open(&app, "/ws/live?coalesce=1").await;
    assert_eq!(
        first.len(),
        1,
        "a JSON map starts with the snapshot: {first:?}"
    );
    let (mut compact_map, first) = open(&app, "/ws/live?coalesce=1&encoding=compact").await;
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(
        first[0], encoding["example"],
        "the encoding frame comes first"
    );
    assert_eq!(first[1]["type"], "snapshot");
    let (mut plain_compact, _) = open(&app, "/ws/live?encoding=compact").await;

    let example = &c["plugin_to_server"]["frames"]["telemetry"]["example"];
    let mut plugin = app.plugin().await;
    plugin.send_json(example).await;

    // The coalesced compact map: a batch whose frame is the contract's compact example.
    let batch = compact_map.recv_type("batch").await;
    let got = batch["frames"][0].clone();
    assert!(got.is_array(), "{batch}");
    assert_eq!(
        without_last_seen(got, last_seen),
        without_last_seen(encoding["compact_example"].clone(), last_seen)
    );
    // The per-frame compact map: the same array, alone.
    let alone: Value = serde_json::from_str(&next_text(&mut plain_compact).await).expect("json");
    assert_eq!(
        without_last_seen(alone, last_seen),
        without_last_seen(encoding["compact_example"].clone(), last_seen)
    );
    // The JSON map: the object of the contract, as before.
    let batch = json_map.recv_type("batch").await;
    assert_eq!(
        without_last_seen(batch["frames"][0].clone(), last_seen),
        without_last_seen(
            c["server_to_browser"]["frames"]["telemetry"]["example"].clone(),
            last_seen
        )
    );

    // A compact map connecting now finds the character in its snapshot, as an array; other
    // frames (a spawn) are objects in both encodings.
    let (mut late, first) = open(&app, "/ws/live?coalesce=1&encoding=compact").await;
    let players = first[1]["players"].as_array().expect("players");
    assert_eq!(players.len(), 1);
    assert_eq!(
        players[0][column(columns, "character_name")],
        "Olthoi Slayer"
    );
    assert_eq!(players[0][column(columns, "kills")], 152);
    plugin
        .send_json(&c["plugin_to_server"]["frames"]["spawn"]["example"])
        .await;
    let spawn = late.recv_type("batch").await;
    assert_eq!(spawn["frames"][0]["type"], "spawn", "{spawn}");

    // An encoding the tracker does not have is refused before the upgrade.
    let refused =
        tokio_tungstenite::connect_async(format!("ws://{}/ws/live?encoding=msgpack", app.addr))
            .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400);
        }
        other => panic!("expected 400, got {other:?}"),
    }
}

#[tokio::test]
async fn a_compact_map_watching_an_area_gets_arrays_for_it_and_its_refresh() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let (mut map, first) = open(&app, "/ws/live?coalesce=1&encoding=compact").await;
    let columns = first[0]["columns"].clone();
    let name_at = column(&columns, "character_name");
    map.send_json(&serde_json::json!({
        "type": "viewport", "ew_min": 30.0, "ew_max": 40.0, "ns_min": 40.0, "ns_max": 45.0,
    }))
    .await;
    let mut plugin = app.plugin().await;
    // The harness's telemetry is at 33.6E 42.1N: inside the area.
    plugin
        .send_json(&common::telemetry("Inside", "s1", 1))
        .await;
    let mut far = common::telemetry("Outside", "s2", 1);
    far["ew"] = (-80.0).into();
    plugin.send_json(&far).await;
    let mut seen_inside = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    // Within the refresh period (10 s) both come as arrays: "Inside" as an update, "Outside"
    // only in a refresh batch.
    let mut seen_outside_in_refresh = false;
    while !(seen_inside && seen_outside_in_refresh) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "inside {seen_inside}, refresh {seen_outside_in_refresh}"
        );
        let batch = map.recv_type("batch").await;
        for frame in batch["frames"].as_array().cloned().unwrap_or_default() {
            let Some(row) = frame.as_array() else {
                continue;
            };
            match row[name_at].as_str() {
                Some("Inside") => seen_inside = true,
                Some("Outside") => {
                    assert_eq!(batch["refresh"], true, "outside the area only in a refresh");
                    seen_outside_in_refresh = true;
                }
                _ => {}
            }
        }
    }
}
