//! The simulator against a real tracker (reconnecting across a restart, obeying commands) and the
//! `--demo` mode of the real binary.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{Backend, TestApp, WAIT};
use dereth_tracker::config::Role;
use dereth_tracker::simulate::{self, SimConfig, SimStats};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn sim_config(app: &TestApp, characters: usize) -> SimConfig {
    SimConfig {
        url: format!("ws://{}/ws/position", app.addr),
        secret: common::SECRET.to_owned(),
        characters,
        first_index: 0,
        interval: Duration::from_millis(100),
        speed: 10.0,
        seed: 3,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_characters_stream_obey_commands_and_reconnect_after_a_restart() {
    let Some(mut app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    app.sign_in_as(Role::Commander).await;
    let port = app.addr.port();
    let stop = CancellationToken::new();
    let stats = Arc::new(SimStats::default());
    let sim = tokio::spawn(simulate::run(
        sim_config(&app, 5),
        stop.clone(),
        stats.clone(),
    ));

    let (mut browser, _) = app.browser().await;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 5 {
        let frame = browser.recv_type("telemetry").await;
        seen.insert(
            frame["character_name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert!(seen.contains("Sim 0003"));

    // `/vt stop` stops the character; its next telemetry says so.
    browser
        .send_json(&json!({"player_name": "Sim 0003", "command": "/vt stop"}))
        .await;
    assert_eq!(
        browser.recv_type("command_result").await["status"],
        "delivered"
    );
    loop {
        let frame = browser.recv_type("telemetry").await;
        if frame["character_name"] == "Sim 0003" && frame["vt_state"] == "Idle" {
            break;
        }
    }

    // Restart the server on the same port: the simulator reconnects by itself.
    let connects_before = stats.report().connects;
    drop(browser);
    let app = app
        .restart(|s| s.server.bind_addr = format!("127.0.0.1:{port}").parse().expect("addr"))
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, debug) = app.get("/debug").await;
        if debug["plugins_connected"] == 5
            && debug["frames_received"]["telemetry"].as_u64() > Some(5)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "simulator never came back: {debug}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stats.report().connects >= connects_before + 5);
    stop.cancel();
    tokio::time::timeout(WAIT, sim)
        .await
        .expect("simulator stops")
        .expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mode_shows_living_characters_within_seconds() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = tempfile::tempdir().expect("dir");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_dereth-tracker"))
        .arg("--demo")
        .env_clear()
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("DEMO_CHARACTERS", "20")
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                return rest.split_whitespace().next().map(str::to_owned);
            }
        }
        None
    })
    .await
    .expect("starts")
    .expect("logs its address");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    // Every receive below is bounded by the suite's wait limit, so "within seconds" holds.
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/live"))
        .await
        .expect("browser connects");
    let mut browser = common::Client { ws };
    let _snapshot = browser.recv_json().await;
    let mut names = std::collections::HashSet::new();
    while names.len() < 20 {
        let frame = browser.recv_type("telemetry").await;
        names.insert(
            frame["character_name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert!(
        dir.path().join("dereth-tracker-demo.db").exists(),
        "demo data kept apart"
    );
    let _ = child.kill().await;
}
