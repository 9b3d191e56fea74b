//! Webhook alerts against a local HTTP receiver started by the test: one alert per event, grace
//! periods, mutes, retries, both body formats, and ingest never waiting on a webhook.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use common::{Backend, TestApp, WAIT, rare_frame, telemetry};
use dereth_tracker::config::{AlertFormat, Settings};
use serde_json::{Value, json};

/// How the receiver answers.
#[derive(Clone, Copy)]
enum Mode {
    Ok,
    /// Fail this many requests with 500, then succeed.
    FailFirst(usize),
    /// Never answer.
    Hang,
}

#[derive(Clone)]
struct Receiver {
    bodies: Arc<Mutex<Vec<Value>>>,
    attempts: Arc<Mutex<usize>>,
    mode: Mode,
}

async fn receive(State(r): State<Receiver>, Json(body): Json<Value>) -> StatusCode {
    let attempt = {
        let mut a = r.attempts.lock().expect("lock");
        *a += 1;
        *a
    };
    match r.mode {
        Mode::Hang => {
            std::future::pending::<()>().await;
            StatusCode::OK
        }
        Mode::FailFirst(n) if attempt <= n => StatusCode::INTERNAL_SERVER_ERROR,
        _ => {
            r.bodies.lock().expect("lock").push(body);
            StatusCode::NO_CONTENT
        }
    }
}

async fn receiver(mode: Mode) -> (String, Receiver) {
    let r = Receiver {
        bodies: Arc::default(),
        attempts: Arc::default(),
        mode,
    };
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), r)
}

impl Receiver {
    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().expect("lock").clone()
    }

    async fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = self.bodies();
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} alerts: {got:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn app_with(url: &str, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let url = url.to_owned();
    TestApp::spawn_with(Backend::Sqlite, move |s| {
        s.alerts.alert_webhook_url = Some(url);
        s.alerts.alert_idle_secs = 3600;
        s.alerts.alert_disconnect_grace_secs = 1;
        tweak(s);
    })
    .await
    .expect("sqlite always runs")
}

fn kinds(bodies: &[Value]) -> Vec<String> {
    bodies
        .iter()
        .filter_map(|b| b["kind"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rare_and_a_death_each_fire_one_alert() {
    let (url, hook) = receiver(Mode::Ok).await;
    let app = app_with(&url, |_| {}).await;
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Mortal", "s", 1)).await;
    plugin
        .send_json(&rare_frame("Mortal", "Pearl of Spirit"))
        .await;
    let mut dead = telemetry("Mortal", "s", 1);
    dead["deaths"] = json!("2");
    plugin.send_json(&dead).await;
    plugin.send_json(&dead).await; // the same death reported again is not a new death
    let bodies = hook.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bodies = if hook.bodies().len() > bodies.len() {
        hook.bodies()
    } else {
        bodies
    };
    let mut k = kinds(&bodies);
    k.sort();
    assert_eq!(k, ["death", "rare"]);
    let rare = bodies.iter().find(|b| b["kind"] == "rare").expect("rare");
    assert_eq!(rare["character"], "Mortal");
    assert!(
        rare["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Pearl of Spirit")
    );
    assert!(rare["at"].is_string());
    // Each alert is in the event log too (issue 26), with what the webhook was told.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let log = loop {
        let (status, log) = app.get("/log?kind=alert").await;
        assert_eq!(status, 200, "{log}");
        if log["entries"].as_array().is_some_and(|e| e.len() >= 2) {
            break log;
        }
        assert!(tokio::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let entries = log["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2, "{log}");
    assert!(
        entries
            .iter()
            .all(|e| e["character_name"] == "Mortal" && e["kind"] == "alert")
    );
    assert!(
        entries.iter().any(|e| e["detail"] == rare["message"]),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_characters_are_reported_once_until_they_move_again() {
    let (url, hook) = receiver(Mode::Ok).await;
    let app = app_with(&url, |s| s.alerts.alert_idle_secs = 1).await;
    let mut plugin = app.plugin().await;
    for _ in 0..12 {
        plugin.send_json(&telemetry("Sleeper", "s", 5)).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let bodies = hook.wait_for(1).await;
    assert_eq!(
        kinds(&bodies),
        ["idle"],
        "one idle alert for one idle spell"
    );
    // Activity resets it; a second idle spell is a second alert.
    plugin.send_json(&telemetry("Sleeper", "s", 6)).await;
    for _ in 0..8 {
        plugin.send_json(&telemetry("Sleeper", "s", 6)).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(kinds(&hook.wait_for(2).await), ["idle", "idle"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unexpected_disconnect_is_reported_after_the_grace_period_unless_it_comes_back() {
    let (url, hook) = receiver(Mode::Ok).await;
    let app = app_with(&url, |s| s.alerts.alert_disconnect_grace_secs = 1).await;
    // Comes back within the grace period: no alert.
    let mut flaky = app.plugin().await;
    flaky.send_json(&telemetry("Flaky", "s", 1)).await;
    // A clean goodbye is not unexpected.
    let mut polite = app.plugin().await;
    polite.send_json(&telemetry("Polite", "s", 1)).await;
    let mut gone = app.plugin().await;
    gone.send_json(&telemetry("Gone", "s", 1)).await;
    app.wait_for_rows(3, 0, 0).await;
    polite.ws.close(None).await.expect("close");
    drop(flaky); // dropped without a close frame
    drop(gone);
    let mut back = app.plugin().await;
    back.send_json(&telemetry("Flaky", "s", 2)).await;
    let bodies = hook.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all = hook.bodies();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(bodies[0]["kind"], "disconnect");
    assert_eq!(bodies[0]["character"], "Gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried_and_muted_characters_stay_quiet() {
    let (url, hook) = receiver(Mode::FailFirst(2)).await;
    let app = app_with(&url, |s| {
        s.alerts.alert_mute = "Hushed".to_owned();
        s.alerts.alert_format = AlertFormat::Discord;
    })
    .await;
    let mut plugin = app.plugin().await;
    plugin.send_json(&rare_frame("Hushed", "Gem")).await;
    plugin.send_json(&rare_frame("Loud", "Gem")).await;
    let bodies = hook.wait_for(1).await;
    assert_eq!(bodies.len(), 1);
    assert!(
        bodies[0]["content"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Loud found a rare")
    );
    assert_eq!(
        *hook.attempts.lock().expect("lock"),
        3,
        "two failures, then delivered"
    );
    let (_, debug) = app.get("/debug").await;
    assert_eq!(debug["alerts"]["delivered"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_webhook_never_holds_up_ingest() {
    let (url, hook) = receiver(Mode::Hang).await;
    // A lucky character indeed: lift the per-character limit on rare finds for this test.
    let app = app_with(&url, |s| s.sessions.rares_per_character_per_minute = 1_000).await;
    let mut plugin = app.plugin().await;
    for i in 0..200 {
        plugin
            .send_json(&rare_frame("Lucky", &format!("Gem {i}")))
            .await;
        plugin.send_json(&telemetry("Lucky", "s", i)).await;
    }
    // Every frame is stored although no alert delivery ever completes.
    app.wait_for_rows(200, 0, 200).await;
    assert!(hook.bodies().is_empty());
    assert!(
        *hook.attempts.lock().expect("lock") >= 1,
        "deliveries were attempted"
    );
}
