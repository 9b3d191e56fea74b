//! Two real tracker instances on loopback sharing one PostgreSQL database and a cluster bus
//! (PostgreSQL LISTEN/NOTIFY, and NATS when `nats-server` is installed): telemetry and commands
//! across instances, ownership moving when an instance leaves or dies, exact kill totals, and an
//! instance restarted mid-ingest losing nothing.

use crate::common;
use crate::process::Launched;

use std::time::Duration;

use common::{Backend, TestApp, TestDb, WAIT, telemetry};
use dereth_tracker::config::Role;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Which bus the instances share.
#[derive(Debug, Clone, Copy)]
enum BusKind {
    Postgres,
    Nats,
}

/// Runs a test body once per bus: a `postgres` and a `nats` test.
macro_rules! both_buses {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::BusKind::Postgres).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn nats() {
                super::$name(super::BusKind::Nats).await
            }
        }
    )*};
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A `nats-server` of this test, on a free loopback port; stopped when dropped.
struct Nats {
    child: tokio::process::Child,
    url: String,
}

impl Nats {
    /// Starts one, or `None` (loudly) when `nats-server` is not installed outside CI.
    async fn start() -> Option<Self> {
        let port = free_port();
        let mut command = tokio::process::Command::new("nats-server");
        command.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
        let child = service(command, "nats-server")?;
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(Self {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        })
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Starts a helper service quietly; `None` (loudly) when it is not installed outside CI, a
/// failure under CI.
fn service(mut command: tokio::process::Command, name: &str) -> Option<tokio::process::Child> {
    let spawned = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    match spawned {
        Ok(child) => Some(child),
        Err(err) => {
            assert!(!in_ci(), "CI=true but {name} cannot run: {err}");
            eprintln!("SKIPPED ({name}): not installed: {err}");
            None
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The `CLUSTER_BUS` value for `bus` (starting NATS when needed).
async fn bus_value(bus: BusKind) -> Option<(String, Option<Nats>)> {
    match bus {
        BusKind::Postgres => Some(("postgres".into(), None)),
        BusKind::Nats => {
            let nats = Nats::start().await?;
            Some((nats.url.clone(), Some(nats)))
        }
    }
}

/// Two clustered instances, `a` and `b`, on one fresh PostgreSQL database, once each sees the
/// other.
struct Pair {
    a: TestApp,
    b: TestApp,
    bus: String,
    _nats: Option<Nats>,
}

/// The key the test clusters sign their bus packets with.
const CLUSTER_KEY: &str = "test-cluster-key";

/// Settings for an instance named `name` on the bus `bus`, signing with the test key.
fn join(s: &mut dereth_tracker::config::Settings, bus: &str, name: &str) {
    s.cluster.cluster_bus = Some(dereth_tracker::config::Secret::new(bus));
    s.cluster.cluster_key = Some(dereth_tracker::config::Secret::new(CLUSTER_KEY));
    s.cluster.instance_name = Some(name.into());
}

async fn pair(bus: BusKind) -> Option<Pair> {
    let (value, nats) = bus_value(bus).await?;
    let v = value.clone();
    let a = TestApp::spawn_with(Backend::Postgres, move |s| {
        join(s, &v, "node-a");
    })
    .await?;
    let v = value.clone();
    let b = a
        .peer(move |s| {
            join(s, &v, "node-b");
        })
        .await;
    wait_for_peer(&a, "node-b").await;
    wait_for_peer(&b, "node-a").await;
    Some(Pair {
        a,
        b,
        bus: value,
        _nats: nats,
    })
}

async fn wait_for_peer(app: &TestApp, peer: &str) {
    app.wait_debug(&format!("peer {peer}"), |d| {
        d["cluster"]["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["instance"] == peer))
    })
    .await;
}

/// The entry of `name` in an instance's `/live`, once it satisfies `pred`.
async fn wait_live(app: &TestApp, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, body) = app.get("/live").await;
        if let Some(p) = body["players"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["character_name"] == name))
            && pred(p)
        {
            return p.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never showed as expected on {}: {body}",
            app.addr
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the database's kill total for `name` is `want` (the writers may still be
/// flushing).
async fn wait_db_kills(app: &TestApp, name: &str, want: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let since = chrono::Utc::now() - chrono::Duration::hours(1);
        let state = app
            .store
            .character_state(name, since)
            .await
            .expect("character state");
        if state.total_kills == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the database counts {} kills for {name}, want {want}",
            state.total_kills
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn telemetry_chat_and_spawns_cross_instances(bus: BusKind) {
    let Some(pair) = pair(bus).await else { return };
    let (mut browser, _) = pair.b.browser().await;
    let mut plugin = pair.a.plugin().await;
    plugin.send_json(&telemetry("Ann", "s1", 3)).await;
    let frame = browser.recv_type("telemetry").await;
    assert_eq!(frame["character_name"], "Ann");
    assert_eq!(frame["total_kills"], 3, "the owner's totals ride along");
    plugin
        .send_json(&json!({"type": "chat", "character_name": "Ann", "text": "[General] hello"}))
        .await;
    let chat = browser.recv_type("chat").await;
    assert_eq!(chat["text"], "[General] hello");
    plugin
        .send_json(&common::spawn_frame("Ann", "Drudge Skulker"))
        .await;
    assert_eq!(browser.recv_type("spawn").await["mob"], "Drudge Skulker");

    // /live and a new browser's snapshot on the other instance are the whole cluster's.
    wait_live(&pair.b, "Ann", |p| p["total_kills"] == 3).await;
    let (_, snapshot) = pair.b.browser().await;
    let players = snapshot["players"].as_array().expect("players");
    assert!(players.iter().any(|p| p["character_name"] == "Ann"));
    assert!(
        snapshot["chat"]
            .as_array()
            .is_some_and(|c| c.iter().any(|l| l["text"] == "[General] hello"))
    );
    // Only the owner wrote the row.
    pair.a.wait_for_rows(1, 1, 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counts = pair.a.store.row_counts().await.expect("counts");
    assert_eq!((counts.telemetry, counts.spawns), (1, 1), "{}", pair.bus);
    // /debug on each names the other, with its plugin count.
    let debug = pair
        .b
        .wait_debug("node-a's plugin in b's /debug", |d| {
            d["cluster"]["peers"][0]["plugins"] == 1
        })
        .await;
    assert_eq!(debug["cluster"]["instance"], "node-b");
    assert_eq!(debug["memory"]["remote_characters"], 1);
    // B joined after A: it asked everyone once, and A answered once (not again for each packet
    // of A that B heard first). Over NATS the join and A's first packets may race, so only the
    // PostgreSQL listener, which reports the bus before any packet, is exact here.
    if matches!(bus, BusKind::Postgres) {
        let (_, a_debug) = pair.a.get("/debug").await;
        assert_eq!(a_debug["cluster"]["state_requests"], 1, "{a_debug}");
    }
}

async fn commands_reach_the_plugin_on_the_other_instance(bus: BusKind) {
    let Some(mut pair) = pair(bus).await else {
        return;
    };
    // The token is in the shared database: both instances know the commander.
    pair.b.sign_in_as(Role::Commander).await;
    let mut plugin = pair.a.plugin().await;
    plugin.send_json(&telemetry("Ann", "s1", 1)).await;
    wait_live(&pair.b, "Ann", |_| true).await;
    let (mut browser, _) = pair.b.browser().await;
    browser
        .send_json(&json!({"player_name": "Ann", "command": "/vt start"}))
        .await;
    let result = browser.recv_type("command_result").await;
    assert_eq!(result["status"], "delivered", "{result}");
    let command = plugin.recv_json().await;
    assert_eq!(command["player_name"], "Ann");
    assert_eq!(command["command"], "/vt start");
    // A character nobody owns is still refused.
    browser
        .send_json(&json!({"player_name": "Nobody", "command": "/vt start"}))
        .await;
    let result = browser.recv_type("command_result").await;
    assert_eq!(result["status"], "not_connected");
}

async fn a_character_moving_between_instances_counts_every_kill_once(bus: BusKind) {
    let Some(pair) = pair(bus).await else { return };
    let mut plugin = pair.a.plugin().await;
    for kills in [5, 10] {
        plugin.send_json(&telemetry("Ann", "s1", kills)).await;
    }
    wait_live(&pair.b, "Ann", |p| p["total_kills"] == 10).await;
    // The plugin leaves A and carries on with the same session on B.
    plugin.ws.close(None).await.expect("close");
    drop(plugin);
    let mut plugin = pair.b.plugin().await;
    for kills in [12, 20] {
        plugin.send_json(&telemetry("Ann", "s1", kills)).await;
    }
    assert!(
        plugin.silent_for(Duration::from_millis(1500)).await,
        "B accepts the character once A released it"
    );
    wait_live(&pair.b, "Ann", |p| p["total_kills"] == 20).await;
    wait_live(&pair.a, "Ann", |p| p["total_kills"] == 20).await;
    wait_db_kills(&pair.a, "Ann", 20).await;
}

async fn a_character_owned_elsewhere_is_refused(bus: BusKind) {
    let Some(pair) = pair(bus).await else { return };
    let mut owner = pair.a.plugin().await;
    owner.send_json(&telemetry("Ann", "s1", 1)).await;
    wait_live(&pair.b, "Ann", |_| true).await;
    let mut other = pair.b.plugin().await;
    other.send_json(&telemetry("Ann", "s1", 500)).await;
    let reply = other.recv_json().await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert!(
        reply["error"].as_str().is_some_and(|e| e.contains("Ann")),
        "{reply}"
    );
    // Nothing the refused frame claimed was counted anywhere.
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_live(&pair.a, "Ann", |p| p["total_kills"] == 1).await;
    wait_live(&pair.b, "Ann", |p| p["total_kills"] == 1).await;
}

/// Break 5 of issue 23: PostgreSQL lets every role connect to a database by default, and any
/// role that connects may NOTIFY. A role granted nothing sends a command packet on the bus
/// channel, unsigned and signed with a wrong key: the plugin hears nothing, and the instance
/// counts both as rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_forged_on_the_bus_by_another_role_is_dropped() {
    use sqlx::ConnectOptions;
    use std::str::FromStr;
    let Some(pair) = pair(BusKind::Postgres).await else {
        return;
    };
    let mut plugin = pair.a.plugin().await;
    plugin.send_json(&telemetry("Ann", "s1", 1)).await;
    wait_live(&pair.a, "Ann", |_| true).await;

    let role = format!("forger_{}", std::process::id());
    let owner = sqlx::PgPool::connect(&pair.a.db.url).await.expect("owner");
    sqlx::query(&format!("DROP ROLE IF EXISTS {role}"))
        .execute(&owner)
        .await
        .expect("drop old role");
    sqlx::query(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'forger-password'"
    ))
    .execute(&owner)
    .await
    .expect("create role");
    let options = sqlx::postgres::PgConnectOptions::from_str(&pair.a.db.url)
        .expect("url")
        .username(&role)
        .password("forger-password");
    let mut forger = options
        .connect()
        .await
        .expect("a role granted nothing connects");
    let command =
        json!({"t": "command", "c": {"to": "node-a", "id": 1, "name": "Ann", "command": "/quit"}});
    let packet =
        json!({"from": "node-b", "boot": 1, "seq": 1_000_000, "msgs": [command]}).to_string();
    let wrong_key = format!("{}\n{packet}", "ab".repeat(32));
    for forged in [packet.clone(), wrong_key] {
        sqlx::query("SELECT pg_notify('dereth_cluster', $1)")
            .bind(&forged)
            .execute(&mut forger)
            .await
            .expect("NOTIFY");
    }
    pair.a
        .wait_debug("two rejected packets", |d| {
            d["cluster"]["rejected"].as_u64() >= Some(2)
        })
        .await;
    assert!(
        plugin.silent_for(Duration::from_millis(1000)).await,
        "a forged command reached the plugin"
    );
    drop(forger);
    sqlx::query(&format!("DROP ROLE IF EXISTS {role}"))
        .execute(&owner)
        .await
        .expect("drop role");
}

/// Issue 27: instances of adjacent builds share a bus during a rolling upgrade. A packet exactly
/// as the build before bus versions sent it (no `v`) is read and applied; a packet of a format
/// this build cannot read is refused, counted and logged, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previous_bus_format_is_read_and_an_unreadable_one_refused_loudly() {
    let Some(pair) = pair(BusKind::Postgres).await else {
        return;
    };
    let notify = sqlx::PgPool::connect(&pair.a.db.url).await.expect("pool");
    let send = |packet: serde_json::Value| {
        let signed =
            dereth_tracker::testing::sign_bus_message(CLUSTER_KEY.as_bytes(), &packet.to_string());
        let notify = notify.clone();
        async move {
            sqlx::query("SELECT pg_notify('dereth_cluster', $1)")
                .bind(&signed)
                .execute(&notify)
                .await
                .expect("NOTIFY");
        }
    };
    // An old build's instance claims "Elder" (the previous format: no version field).
    let now_ms = chrono::Utc::now().timestamp_millis();
    send(json!({"from": "node-old", "boot": 77, "seq": 1, "msgs": [
        {"t": "claimed", "c": {"name": "Elder", "at_ms": now_ms}},
        {"t": "heartbeat", "c": {"plugins": 1, "browsers": 0, "owned": 1}},
    ]}))
    .await;
    pair.a
        .wait_debug("the old instance heard", |d| {
            d["cluster"]["peers"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["instance"] == "node-old"))
        })
        .await;
    // Its claim holds: a plugin here may not speak for Elder.
    let mut plugin = pair.a.plugin().await;
    plugin.send_json(&telemetry("Elder", "s1", 1)).await;
    let refused = plugin.recv_type("error").await;
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("another")),
        "{refused}"
    );
    // A build too new: its packet (a claim of "Younger") is refused and counted.
    let version = dereth_tracker::testing::BUS_VERSION + 1;
    send(
        json!({"v": version, "from": "node-new", "boot": 78, "seq": 1, "msgs": [
            {"t": "claimed", "c": {"name": "Younger", "at_ms": now_ms}},
        ]}),
    )
    .await;
    let debug = pair
        .a
        .wait_debug("the newer format refused", |d| {
            d["cluster"]["version_refused"].as_u64() >= Some(1)
        })
        .await;
    assert_eq!(
        debug["cluster"]["bus_version"],
        dereth_tracker::testing::BUS_VERSION
    );
    assert!(
        !debug["cluster"]["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["instance"] == "node-new")),
        "{debug}"
    );
    plugin.send_json(&telemetry("Younger", "s1", 1)).await;
    wait_live(&pair.a, "Younger", |_| true).await;
}

both_buses!(
    telemetry_chat_and_spawns_cross_instances,
    commands_reach_the_plugin_on_the_other_instance,
    a_character_moving_between_instances_counts_every_kill_once,
    a_character_owned_elsewhere_is_refused,
);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw plugin websocket to the tracker at `addr`, with the test secret.
async fn plugin_socket(addr: &str) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{addr}/ws/position"
        ))?;
    request
        .headers_mut()
        .insert("X-Plugin-Secret", common::SECRET.parse().expect("header"));
    Ok(tokio_tungstenite::connect_async(request).await?.0)
}

/// What [`restless_plugin`] did.
struct Restless {
    /// Frames sent before the plugin saw a close (each must be stored exactly once).
    frames: i64,
    /// Its last kill count.
    kills: i64,
    /// Connections it made.
    connections: usize,
    /// Its last connection, still open: a plugin that closes is offline at once, and the
    /// checks read its totals from the live state.
    _open: Option<Socket>,
}

/// A plugin for `name` that sends telemetry as fast as it can (its kills count up once per 100
/// frames, well under the kill rate cap) and, whenever the instance it is on closes, reconnects
/// to the next address of `addrs`, until `stop`. Only frames sent before it saw the close count
/// as sent.
async fn restless_plugin(
    name: &'static str,
    addrs: Vec<String>,
    stop: tokio_util::sync::CancellationToken,
) -> Restless {
    use futures_util::FutureExt;
    let mut frames = 0_i64;
    let mut connections = 0;
    let mut attempt = 0;
    let mut open = None;
    while !stop.is_cancelled() {
        let addr = &addrs[attempt % addrs.len()];
        attempt += 1;
        let Ok(mut ws) = plugin_socket(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        connections += 1;
        loop {
            if stop.is_cancelled() {
                open = Some(ws);
                break;
            }
            let frame = telemetry(name, "s1", (frames + 1) / 100);
            if ws.send(Message::text(frame.to_string())).await.is_err() {
                break;
            }
            frames += 1;
            match ws.next().now_or_never() {
                Some(Some(Ok(Message::Close(_)) | Err(_)) | None) => break,
                Some(Some(Ok(Message::Text(t)))) => panic!("frame refused: {t}"),
                _ => {}
            }
            if frames % 2 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    Restless {
        frames,
        kills: frames / 100,
        connections,
        _open: open,
    }
}

async fn an_instance_restarted_mid_ingest_loses_nothing(bus: BusKind) {
    let Some(Pair { a, b, bus, _nats }) = pair(bus).await else {
        return;
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let plugin = tokio::spawn(restless_plugin(
        "Restless",
        vec![a.addr.to_string(), b.addr.to_string()],
        stop.clone(),
    ));
    wait_live(&b, "Restless", |p| p["total_kills"].as_i64() >= Some(3)).await;
    // A stops as SIGTERM would, while frames arrive.
    let mut a = a;
    let report = a.shutdown().await;
    assert_eq!(report.lost, 0);
    wait_live(&b, "Restless", |p| p["total_kills"].as_i64() >= Some(8)).await;
    stop.cancel();
    let sent = plugin.await.expect("plugin");
    assert_eq!(sent.connections, 2, "the plugin moved from A to B");
    all_stored_once(&b, "Restless", &sent, &bus).await;
}

/// Every frame `sent` is stored exactly once and the kill total is exact, in `app`'s memory
/// and in the database.
async fn all_stored_once(app: &TestApp, name: &str, sent: &Restless, bus: &str) {
    app.wait_for_rows(sent.frames, 0, 0).await;
    let counts = app.store.row_counts().await.expect("counts");
    assert_eq!(
        counts.telemetry, sent.frames,
        "every frame sent stored exactly once ({bus})"
    );
    wait_live(app, name, |p| p["total_kills"] == sent.kills).await;
    wait_db_kills(app, name, sent.kills).await;
}

both_buses!(
    an_instance_restarted_mid_ingest_loses_nothing,
    a_killed_instance_frees_its_characters
);

/// An instance that dies without a word (SIGKILL): the other stops waiting for it after the
/// heartbeat timeout, and a plugin reconnecting there carries on from the mirrored totals.
async fn a_killed_instance_frees_its_characters(bus: BusKind) {
    let Some((bus, _nats)) = bus_value(bus).await else {
        return;
    };
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let env = |name: &'static str| {
        vec![
            ("DATABASE_URL", db.url.clone()),
            ("SHARED_SECRET", common::SECRET.to_owned()),
            ("CLUSTER_BUS", bus.clone()),
            ("CLUSTER_KEY", CLUSTER_KEY.to_owned()),
            ("INSTANCE_NAME", name.to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]
    };
    let start = |name: &'static str| {
        let env = env(name);
        async move {
            let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            Launched::start(&pairs, &[]).await
        }
    };
    let mut a = start("node-a").await;
    let b = start("node-b").await;
    wait_json(&b.addr, "/debug", "b sees a", |d| {
        d["cluster"]["peers"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    })
    .await;
    let mut plugin = plugin_socket(&a.addr).await.expect("plugin connects");
    for kills in [4, 9] {
        plugin
            .send(Message::text(telemetry("Ann", "s1", kills).to_string()))
            .await
            .expect("send");
    }
    wait_json(&b.addr, "/live", "b mirrors Ann", |live| {
        live["players"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["total_kills"] == 9))
    })
    .await;
    a.child.start_kill().expect("SIGKILL a");
    let _ = a.child.wait().await;
    // The plugin reconnects to B and keeps trying until B takes the character.
    let died = tokio::time::Instant::now();
    let mut plugin = plugin_socket(&b.addr).await.expect("plugin connects");
    let mut kills = 10;
    loop {
        plugin
            .send(Message::text(telemetry("Ann", "s1", kills).to_string()))
            .await
            .expect("send");
        match tokio::time::timeout(Duration::from_secs(3), plugin.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str().contains("error") => {
                assert!(died.elapsed() < WAIT, "B never freed Ann: {}", b.log());
                kills += 1;
            }
            _ => break,
        }
    }
    let freed_after = died.elapsed();
    assert!(
        freed_after >= Duration::from_secs(2),
        "freed only once the heartbeat timeout passed ({freed_after:?})"
    );
    // The mirror's baseline (9) continues: kills - 9 more, nothing counted twice.
    wait_json(&b.addr, "/live", "B counts every kill once", |live| {
        live["players"][0]["total_kills"].as_i64() == Some(kills)
    })
    .await;
    assert!(b.log().contains("instance silent"), "{}", b.log());
}

/// GETs `path` of the tracker at `addr` until its JSON satisfies `pred`.
async fn wait_json(addr: &str, path: &str, what: &str, pred: impl Fn(&Value) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let body = match reqwest::get(format!("http://{addr}{path}")).await {
            Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if pred(&body) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never: {what}; {path} = {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// HAProxy running `deploy/haproxy.cfg` (the compose cluster's proxy) in front of two
/// instances; stopped when dropped.
struct Haproxy {
    child: tokio::process::Child,
    addr: String,
}

impl Haproxy {
    async fn start(a: std::net::SocketAddr, b: std::net::SocketAddr) -> Option<Self> {
        let port = free_port();
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy.cfg");
        let mut command = tokio::process::Command::new("haproxy");
        command
            .args(["-db", "-f", config])
            .env("PROXY_BIND", format!("127.0.0.1:{port}"))
            .env("TRACKER_A", a.to_string())
            .env("TRACKER_B", b.to_string());
        let child = service(command, "haproxy")?;
        let addr = format!("127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let ok = reqwest::get(format!("http://{addr}/health"))
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "haproxy never served"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(Self { child, addr })
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// What a map watching through the proxy saw.
#[derive(Debug, Default)]
struct Watched {
    /// Times the map had to reconnect.
    reconnects: usize,
    /// Moments `name` vanished: an `offline` frame, or a snapshot without it once it was known.
    vanished: Vec<String>,
}

/// A map on `addr` that reconnects whenever its instance goes away, until `stop`.
async fn watch_map(
    addr: String,
    name: &'static str,
    stop: tokio_util::sync::CancellationToken,
) -> Watched {
    let mut watched = Watched::default();
    let mut seen = false;
    let mut first = true;
    while !stop.is_cancelled() {
        let Ok((mut ws, _)) =
            tokio_tungstenite::connect_async(format!("ws://{addr}/ws/live")).await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if !first {
            watched.reconnects += 1;
        }
        first = false;
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return watched,
                n = ws.next() => n,
            };
            let Some(Ok(Message::Text(text))) = next else {
                match next {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    _ => break,
                }
            };
            let frame: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
            match frame["type"].as_str() {
                Some("snapshot") => {
                    let present = frame["players"]
                        .as_array()
                        .is_some_and(|ps| ps.iter().any(|p| p["character_name"] == name));
                    if seen && !present {
                        watched.vanished.push("missing from a snapshot".into());
                    }
                    seen |= present;
                }
                Some("telemetry") if frame["character_name"] == name => seen = true,
                Some("offline") if frame["character_name"] == name => {
                    watched.vanished.push("offline frame".into());
                }
                _ => {}
            }
        }
    }
    watched
}

/// Stops `old` as SIGTERM would and starts `name` on its address, joined to `survivor`'s
/// cluster; returns once the newcomer is in the cluster and counting "Rolling" onwards.
async fn replace(old: &mut TestApp, survivor: &TestApp, name: &'static str, bus: &str) -> TestApp {
    let addr = old.addr;
    assert_eq!(old.shutdown().await.lost, 0);
    let joined = bus.to_owned();
    let new = survivor
        .peer(move |s| {
            join(s, &joined, name);
            s.server.bind_addr = addr;
        })
        .await;
    wait_for_peer(survivor, name).await;
    let before = wait_live(survivor, "Rolling", |_| true).await["total_kills"]
        .as_i64()
        .unwrap_or(0);
    wait_live(&new, "Rolling", |p| {
        p["total_kills"].as_i64() >= Some(before + 3)
    })
    .await;
    new
}

/// Two instances behind HAProxy, restarted one at a time while a plugin streams through the
/// proxy and a map watches through it: every frame sent is stored once, kills are exact, and
/// the map never sees the character vanish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_behind_haproxy_loses_nothing_and_no_character_vanishes() {
    let Some(Pair { a, b, bus, _nats }) = pair(BusKind::Postgres).await else {
        return;
    };
    let Some(proxy) = Haproxy::start(a.addr, b.addr).await else {
        return;
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let map = tokio::spawn(watch_map(proxy.addr.clone(), "Rolling", stop.clone()));
    let plugin = tokio::spawn(restless_plugin(
        "Rolling",
        vec![proxy.addr.clone()],
        stop.clone(),
    ));
    wait_live(&b, "Rolling", |p| p["total_kills"].as_i64() >= Some(3)).await;

    // Restart A, then B: each stopped, and its replacement started on the same address.
    let mut a = a;
    let a2 = replace(&mut a, &b, "node-a2", &bus).await;
    // Let the proxy's health checks see A again before B goes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut b = b;
    let b2 = replace(&mut b, &a2, "node-b2", &bus).await;

    stop.cancel();
    let sent = plugin.await.expect("plugin");
    let watched = map.await.expect("map");
    assert!(sent.connections >= 2, "the plugin moved at least once");
    all_stored_once(&a2, "Rolling", &sent, &bus).await;
    wait_live(&b2, "Rolling", |p| p["total_kills"] == sent.kills).await;
    assert!(watched.reconnects >= 1, "the map was moved at least once");
    assert!(watched.vanished.is_empty(), "{:?}", watched.vanished);
    drop((b2, a2, b, proxy));
    drop(a);
}

/// SQLite is a single instance: asking it to join a cluster fails at start with a clear message,
/// as does a bus the tracker does not know.
#[tokio::test]
async fn a_cluster_on_sqlite_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    for (bus, message) in [
        ("postgres", "SQLite is a single instance"),
        ("redis://x", "CLUSTER_BUS must be"),
    ] {
        let out = tokio::process::Command::new(crate::process::BIN)
            .env_clear()
            .env("DATABASE_URL", &url)
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("CLUSTER_BUS", bus)
            .output()
            .await
            .expect("runs");
        assert!(!out.status.success(), "{bus}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{bus}: {err}");
    }
}

/// A cluster bus without CLUSTER_KEY would read whatever anyone who reaches the bus publishes:
/// the tracker refuses to start, saying what to set.
#[tokio::test]
async fn a_cluster_without_a_key_is_refused_at_start() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let out = tokio::process::Command::new(crate::process::BIN)
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("CLUSTER_BUS", "postgres")
        .output()
        .await
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CLUSTER_BUS needs CLUSTER_KEY"), "{err}");
    assert_eq!(
        err.matches("CLUSTER_BUS needs CLUSTER_KEY").count(),
        1,
        "said once: {err}"
    );
}

/// Break 3 of issue 23 against the shipped proxy: behind `deploy/haproxy.cfg` (`option
/// forwardfor` adds its own X-Forwarded-For line), a client that forges a different first line
/// on every wrong secret still counts as one client, and is limited after ten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_shipped_haproxy_forged_addresses_choose_no_limiter_key() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let Some(proxy) = Haproxy::start(app.addr, app.addr).await else {
        return;
    };
    let mut statuses = Vec::new();
    for i in 0..14 {
        let mut request = format!("ws://{}/ws/position", proxy.addr)
            .into_client_request()
            .expect("request");
        let h = request.headers_mut();
        h.insert("X-Plugin-Secret", "wrong".parse().expect("value"));
        h.insert(
            "X-Forwarded-For",
            format!("10.9.8.{i}").parse().expect("value"),
        );
        statuses.push(match tokio_tungstenite::connect_async(request).await {
            Ok(_) => 101,
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
            Err(e) => panic!("{e}"),
        });
    }
    assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
}
