//! Broadcast commands (issue 26): one command to many characters, one result each, under the
//! same authorization, rate limits and audit as single commands.

use crate::common;

use common::{Backend, TestApp, telemetry};
use dereth_tracker::store::AuditQuery;
use serde_json::{Value, json};

async fn app_with_token() -> TestApp {
    TestApp::spawn_with(Backend::Sqlite, |s| {
        s.access.command_token = Some(dereth_tracker::config::Secret::new("tok"));
    })
    .await
    .expect("sqlite")
}

fn broadcast(names: &[String], command: &str, token: Option<&str>) -> Value {
    let mut frame = json!({"type": "broadcast", "player_names": names, "command": command});
    if let Some(token) = token {
        frame["token"] = json!(token);
    }
    frame
}

/// Sixty characters over three plugins and one that is not connected: one broadcast reaches
/// every connected one (the burst of 10 meant for single commands does not refuse it), each
/// result is named, and every one is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_broadcast_reaches_sixty_characters_with_a_result_each() {
    let app = app_with_token().await;
    let mut plugins = Vec::new();
    let mut names = Vec::new();
    for p in 0..3 {
        let mut plugin = app.plugin().await;
        for c in 0..20 {
            let name = format!("Fleet {p}-{c:02}");
            plugin.send_json(&telemetry(&name, "s", 1)).await;
            names.push(name);
        }
        plugins.push(plugin);
    }
    app.wait_for_rows(60, 0, 0).await;
    let mut named = names.clone();
    named.push("Nobody Home".into());
    // A repeat is dropped.
    named.push(names[0].clone());
    let (mut browser, _) = app.browser().await;
    browser
        .send_json(&broadcast(&named, "/vt stop", Some("tok")))
        .await;
    let reply = browser.recv_type("broadcast_result").await;
    let results = reply["results"].as_array().expect("results");
    assert_eq!(results.len(), 61, "{reply}");
    assert_eq!(reply["command"], "/vt stop");
    for (result, name) in results.iter().zip(&named) {
        assert_eq!(result["player_name"], json!(name));
        let want = if name == "Nobody Home" {
            "not_connected"
        } else {
            "delivered"
        };
        assert_eq!(result["status"], want, "{result}");
    }
    for plugin in &mut plugins {
        for _ in 0..20 {
            let command = plugin.recv_json().await;
            assert_eq!(command["command"], "/vt stop", "{command}");
        }
    }
    let audit = app
        .store
        .audit_log(&AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .expect("audit");
    assert_eq!(audit.len(), 61, "one audit row per character");
    assert!(
        audit
            .iter()
            .all(|a| a.via == "command-token" && a.command == "/vt stop"),
        "{audit:?}"
    );
}

/// Without the right to command, a broadcast delivers nothing and counts as one refused command;
/// repeating broadcasts is not a way around the limits: beyond the delivery budget, characters
/// get `rate_limited`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_obey_authorization_and_rate_limits() {
    let app = app_with_token().await;
    let names: Vec<String> = (0..200).map(|i| format!("Limited {i:03}")).collect();
    // A plugin connection speaks for at most 64 characters: four of 50.
    let mut plugins = Vec::new();
    for chunk in names.chunks(50) {
        let mut plugin = app.plugin().await;
        for name in chunk {
            plugin.send_json(&telemetry(name, "s", 1)).await;
        }
        plugins.push(plugin);
    }
    app.wait_for_rows(200, 0, 0).await;
    let (mut browser, _) = app.browser().await;
    browser
        .send_json(&broadcast(&names[..5], "/quit", None))
        .await;
    let refused = browser.recv_type("broadcast_result").await;
    assert!(
        refused["results"]
            .as_array()
            .expect("results")
            .iter()
            .all(|r| r["status"] == "unauthorized"),
        "{refused}"
    );
    // Two broadcasts of 200 at once: the first goes through whole, the second is held to the
    // sustained rate (about 20 a second), not 200 more.
    let mut delivered = 0;
    let mut limited = 0;
    for _ in 0..2 {
        browser
            .send_json(&broadcast(&names, "/vt start", Some("tok")))
            .await;
        let reply = browser.recv_type("broadcast_result").await;
        for r in reply["results"].as_array().expect("results") {
            match r["status"].as_str() {
                Some("delivered") => delivered += 1,
                Some("rate_limited") => limited += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(
        (200..=260).contains(&delivered),
        "{delivered} delivered, {limited} limited"
    );
    assert_eq!(delivered + limited, 400);
    // Every delivered command is kept per character; what was refused before reaching any
    // character (the unauthorized broadcast, the characters held back by the delivery budget)
    // is one row per broadcast, not one per name (a refused broadcast could otherwise write
    // 200 rows a frame).
    let audit = app
        .store
        .audit_log(&AuditQuery {
            limit: 1_000,
            ..AuditQuery::default()
        })
        .await
        .expect("audit");
    let count = |result: &str| audit.iter().filter(|a| a.result == result).count();
    assert_eq!(count("delivered"), delivered);
    assert_eq!(count("unauthorized"), 1, "{audit:?}");
    assert_eq!(count("rate_limited"), 1, "{audit:?}");
    assert_eq!(audit.len(), delivered + 2);
    let held = audit
        .iter()
        .find(|a| a.result == "rate_limited")
        .expect("the held row");
    assert_eq!(
        held.character_name,
        format!("({limited} of a broadcast to 200)")
    );
    let refused = audit
        .iter()
        .find(|a| a.result == "unauthorized")
        .expect("the refused row");
    assert_eq!(refused.character_name, "(5 of a broadcast to 5)");
    // Over the frame limits: too many names, a bad name.
    let too_many: Vec<String> = (0..201).map(|i| format!("X {i}")).collect();
    browser
        .send_json(&broadcast(&too_many, "/vt start", Some("tok")))
        .await;
    let err = browser.recv_type("error").await;
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|e| e.contains("player_names")),
        "{err}"
    );
}
