//! Who may read, command and speak for characters (issue 23), tried from outside through real
//! sockets on a tracker that listens beyond loopback: accounts and sessions, API tokens, plugin
//! keys bound to their characters, the audit trail, and the seven breaks the issue reproduced.

use crate::common;

use std::time::Duration;

use common::{Backend, Client, SECRET, TestApp, WAIT, rare_frame, telemetry};
use dereth_tracker::config::{KeyAction, Role, Secret, TokenAction, UserAction};
use dereth_tracker::manage::{self, PasswordSource};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A tracker listening on every interface (reached over loopback by the tests).
async fn public(
    backend: Backend,
    tweak: impl FnOnce(&mut dereth_tracker::config::Settings),
) -> Option<TestApp> {
    TestApp::spawn_with(backend, |s| {
        s.server.bind_addr = "0.0.0.0:0".parse().expect("addr");
        tweak(s);
    })
    .await
}

/// How a request identifies itself.
#[derive(Clone, Copy)]
enum Auth<'a> {
    Nobody,
    Bearer(&'a str),
    Cookie(&'a str),
}

/// One HTTP request; the status, headers and JSON body (Null when not JSON).
async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    auth: Auth<'_>,
    body: Option<Value>,
) -> (u16, HeaderMap, Value) {
    let mut request = reqwest::Client::new().request(method, app.url(path));
    request = match auth {
        Auth::Nobody => request,
        Auth::Bearer(token) => request.bearer_auth(token),
        Auth::Cookie(value) => request.header("Cookie", format!("dereth_session={value}")),
    };
    if let Some(body) = body {
        request = request.json(&body);
    }
    let resp = request.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, headers, body)
}

async fn get(app: &TestApp, path: &str, auth: Auth<'_>) -> (u16, Value) {
    let (status, _, body) = call(app, reqwest::Method::GET, path, auth, None).await;
    (status, body)
}

/// Opens `/ws/live` with `auth`: the socket after its snapshot, or the refusal's status.
async fn live_socket(
    app: &TestApp,
    auth: Auth<'_>,
    headers: &[(&str, &str)],
) -> Result<Client, u16> {
    let mut request = format!("ws://{}/ws/live", app.addr)
        .into_client_request()
        .expect("request");
    let h = request.headers_mut();
    match auth {
        Auth::Nobody => {}
        Auth::Bearer(t) => {
            h.insert(
                "Authorization",
                format!("Bearer {t}").parse().expect("header"),
            );
        }
        Auth::Cookie(v) => {
            h.insert(
                "Cookie",
                format!("dereth_session={v}").parse().expect("header"),
            );
        }
    }
    for (k, v) in headers {
        let name: reqwest::header::HeaderName = k.parse().expect("name");
        h.insert(name, v.parse().expect("value"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => {
            let mut client = Client { ws };
            client.recv_type("snapshot").await;
            Ok(client)
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(err) => panic!("unexpected websocket error: {err}"),
    }
}

/// An API token of `role`, created as `dereth-tracker token add` does; returns once the tracker
/// knows it.
async fn token(app: &TestApp, name: &str, role: Role) -> String {
    let token = manage::add_token(&app.store, name, role)
        .await
        .expect("token");
    // Each try before the tracker knows the token is a failed authentication: try seldom.
    for _ in 0..8 {
        if get(app, "/me", Auth::Bearer(&token)).await.0 == 200 {
            return token;
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    panic!("the tracker never knew token {name}");
}

/// A plugin key, created as `dereth-tracker key add` does; returns once the tracker accepts it.
async fn key(app: &TestApp, name: &str, characters: &[&str]) -> String {
    let characters: Vec<String> = characters.iter().map(|c| (*c).to_owned()).collect();
    let key = manage::add_key(&app.store, name, &characters)
        .await
        .expect("key");
    // Each try before the tracker knows the key is a failed authentication (ten a minute are
    // allowed): try seldom.
    for _ in 0..8 {
        if app.plugin_with(Some(&key), None).await.is_ok() {
            return key;
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    panic!("the tracker never accepted key {name}");
}

/// An account with a password, created as `dereth-tracker user add` does (password on stdin).
async fn account(app: &TestApp, name: &str, role: Role, password: &str) {
    let mut input = std::io::Cursor::new(format!("{password}\n").into_bytes());
    let source = PasswordSource {
        input: &mut input,
        interactive: false,
    };
    let action = UserAction::Add {
        name: name.to_owned(),
        role,
    };
    manage::user(&app.store, &action, source)
        .await
        .expect("user add");
    // The tracker notices within a second (`/me` says whether any account exists).
    wait_until(
        || async { get(app, "/me", Auth::Nobody).await.1["accounts_exist"] == true },
        "the account known",
    )
    .await;
}

/// Signs in through `POST /login`; the session cookie's value and the whole Set-Cookie header.
async fn login(app: &TestApp, name: &str, password: &str) -> Result<(String, String), u16> {
    let (status, headers, _) = call(
        app,
        reqwest::Method::POST,
        "/login",
        Auth::Nobody,
        Some(json!({"name": name, "password": password})),
    )
    .await;
    if status != 200 {
        return Err(status);
    }
    let set = headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_owned();
    let value = set
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_owned())
        .expect("cookie value");
    Ok((value, set))
}

async fn wait_until<F, Fut>(mut check: F, what: &str)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the server closes `socket` within `within` (a close frame or the connection ending).
async fn closed_within(socket: &mut Client, within: Duration) -> bool {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.ws.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_))) => return true,
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

// Who may read

/// On `0.0.0.0` every read of character data needs a viewer: 401 without one, 200 with a viewer
/// token; `/health` and `/openapi.json` stay open; `/metrics` takes METRICS_TOKEN or a token;
/// removing the token refuses it and closes its socket.
async fn on_a_public_bind_reads_need_a_viewer(backend: Backend) {
    let Some(app) = public(backend, |s| {
        s.access.metrics_token = Some(Secret::new("scrape-me-please"));
    })
    .await
    else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Ann", "s1", 3)).await;
    app.wait_for_rows(1, 0, 0).await;

    let reads = [
        "/live",
        "/history?character=Ann",
        "/history?character=Ann&format=csv",
        "/trails?seconds=600",
        "/world?at=2030-01-01T00:00:00Z",
        "/spawns",
        "/rares",
        "/spawns/heatmap",
        "/characters",
        "/stats/leaderboard",
        "/stats/Ann",
        "/debug",
        "/audit",
        "/users",
    ];
    for path in reads {
        let (status, headers, body) =
            call(&app, reqwest::Method::GET, path, Auth::Nobody, None).await;
        assert_eq!(status, 401, "{path} without credentials: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
        assert!(headers.contains_key("www-authenticate"), "{path}");
    }
    assert_eq!(live_socket(&app, Auth::Nobody, &[]).await.err(), Some(401));
    for open in ["/health", "/openapi.json", "/me"] {
        assert_eq!(
            get(&app, open, Auth::Nobody).await.0,
            200,
            "{open} stays open"
        );
    }
    let (_, me) = get(&app, "/me", Auth::Nobody).await;
    assert_eq!(me["may_read"], false, "{me}");
    assert_eq!(get(&app, "/metrics", Auth::Nobody).await.0, 401);
    assert_eq!(
        get(&app, "/metrics", Auth::Bearer("scrape-me-please"))
            .await
            .0,
        200
    );
    assert_eq!(get(&app, "/metrics", Auth::Bearer("wrong")).await.0, 401);

    let viewer = token(&app, "analyst", Role::Viewer).await;
    let (status, live) = get(&app, "/live", Auth::Bearer(&viewer)).await;
    assert_eq!(status, 200);
    assert_eq!(live["players"][0]["character_name"], "Ann", "{live}");
    for path in reads.iter().filter(|p| !matches!(**p, "/audit" | "/users")) {
        assert_eq!(
            get(&app, path, Auth::Bearer(&viewer)).await.0,
            200,
            "{path} as a viewer"
        );
    }
    for admin_only in ["/audit", "/users"] {
        assert_eq!(
            get(&app, admin_only, Auth::Bearer(&viewer)).await.0,
            403,
            "{admin_only}"
        );
    }
    assert_eq!(get(&app, "/metrics", Auth::Bearer(&viewer)).await.0, 200);
    let (status, _) = get(&app, "/live", Auth::Bearer("dt_not-a-token")).await;
    assert_eq!(status, 401, "a wrong token never reads as anonymous");

    let mut socket = live_socket(&app, Auth::Bearer(&viewer), &[])
        .await
        .expect("viewer socket");
    manage::token(
        &app.store,
        &TokenAction::Remove {
            name: "analyst".into(),
        },
    )
    .await
    .expect("token remove");
    assert!(
        closed_within(&mut socket, WAIT).await,
        "the removed token's socket closes"
    );
    assert_eq!(get(&app, "/live", Auth::Bearer(&viewer)).await.0, 401);
}

/// The README's first command: on loopback with no account the map is open, with nothing to
/// sign in to; the first account closes it.
async fn a_loopback_tracker_is_open_until_the_first_account(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    assert_eq!(get(&app, "/live", Auth::Nobody).await.0, 200);
    assert!(live_socket(&app, Auth::Nobody, &[]).await.is_ok());
    assert_eq!(get(&app, "/metrics", Auth::Nobody).await.0, 200);
    let (_, me) = get(&app, "/me", Auth::Nobody).await;
    assert_eq!(
        (me["may_read"].clone(), me["may_command"].clone()),
        (json!(true), json!(false))
    );
    account(&app, "first-admin", Role::Admin, "a long enough password").await;
    wait_until(
        || async { get(&app, "/live", Auth::Nobody).await.0 == 401 },
        "reads closed",
    )
    .await;
    assert_eq!(
        get(&app, "/metrics", Auth::Nobody).await.0,
        200,
        "metrics stay open on loopback"
    );
}

/// PUBLIC_READ opens reading to anyone, never commanding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_read_opens_reading_never_commands() {
    let Some(app) = public(Backend::Sqlite, |s| s.access.public_read = true).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Ann", "s1", 1)).await;
    app.wait_for_rows(1, 0, 0).await;
    assert_eq!(get(&app, "/live", Auth::Nobody).await.0, 200);
    let mut browser = live_socket(&app, Auth::Nobody, &[])
        .await
        .expect("public socket");
    browser
        .send_json(&json!({"type": "command", "player_name": "Ann", "command": "/quit"}))
        .await;
    assert_eq!(
        browser.recv_type("command_result").await["status"],
        "unauthorized"
    );
    assert!(plugin.silent_for(Duration::from_millis(300)).await);
    assert_eq!(get(&app, "/users", Auth::Nobody).await.0, 401);
}

// Accounts and sessions

/// Signing in sets an HttpOnly, SameSite=Strict cookie (Secure behind a TLS proxy); the cookie
/// reads and opens the socket; signing out ends the session and closes the socket; wrong
/// passwords are limited per account; other origins cannot sign in.
async fn sessions_begin_at_login_and_end_at_logout(backend: Backend) {
    let Some(app) = public(backend, |_| {}).await else {
        return;
    };
    account(&app, "ann", Role::Viewer, "correct horse battery").await;
    let (cookie, set) = login(&app, "ann", "correct horse battery")
        .await
        .expect("signed in");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(attribute), "{attribute} in {set}");
    }
    assert!(!set.contains("Secure"), "plain http: {set}");
    let (status, me) = get(&app, "/me", Auth::Cookie(&cookie)).await;
    assert_eq!(status, 200);
    assert_eq!(
        (me["name"].clone(), me["role"].clone()),
        (json!("ann"), json!("viewer"))
    );
    assert_eq!(get(&app, "/live", Auth::Cookie(&cookie)).await.0, 200);
    let mut socket = live_socket(&app, Auth::Cookie(&cookie), &[])
        .await
        .expect("socket");

    // Behind a TLS proxy (loopback is a trusted proxy), the cookie is Secure.
    let (status, headers, _) = {
        let resp = reqwest::Client::new()
            .post(app.url("/login"))
            .header("X-Forwarded-Proto", "https")
            .json(&json!({"name": "ann", "password": "correct horse battery"}))
            .send()
            .await
            .expect("login");
        (resp.status().as_u16(), resp.headers().clone(), ())
    };
    assert_eq!(status, 200);
    let secure = headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(secure.contains("; Secure"), "{secure}");

    // A page of another origin may not sign in.
    let resp = reqwest::Client::new()
        .post(app.url("/login"))
        .header("Origin", "https://evil.example")
        .json(&json!({"name": "ann", "password": "correct horse battery"}))
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status().as_u16(), 403);

    let (status, headers, _) = call(
        &app,
        reqwest::Method::POST,
        "/logout",
        Auth::Cookie(&cookie),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let gone = headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(gone.contains("Max-Age=0"), "{gone}");
    assert!(
        closed_within(&mut socket, WAIT).await,
        "logout closes the socket"
    );
    assert_eq!(get(&app, "/live", Auth::Cookie(&cookie)).await.0, 401);
    assert_eq!(
        get(&app, "/me", Auth::Cookie(&cookie)).await.1["signed_in"],
        false
    );

    // Wrong passwords: 401, then 429 for that account, even with the right password.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(
            login(&app, "ann", "wrong password!")
                .await
                .err()
                .unwrap_or(200),
        );
    }
    assert!(statuses.starts_with(&[401; 5]), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert_eq!(
        login(&app, "ann", "correct horse battery").await.err(),
        Some(429)
    );
}

/// An account removed or lowered loses its open sockets; admins manage accounts over HTTP and
/// cannot remove the last admin.
async fn admins_manage_accounts_and_changes_reach_open_sockets(backend: Backend) {
    let Some(app) = public(backend, |_| {}).await else {
        return;
    };
    account(&app, "boss", Role::Admin, "the boss password").await;
    let (boss, _) = login(&app, "boss", "the boss password")
        .await
        .expect("admin signs in");
    let post = |body: Value| {
        let app = &app;
        let boss = boss.clone();
        async move {
            call(
                app,
                reqwest::Method::POST,
                "/users",
                Auth::Cookie(&boss),
                Some(body),
            )
            .await
        }
    };
    let (status, _, created) = post(json!({"name": "cmd", "role": "commander"})).await;
    assert_eq!(status, 201, "{created}");
    let generated = created["password"]
        .as_str()
        .expect("a generated password, shown once")
        .to_owned();
    let (status, _, _) = post(json!({"name": "cmd", "role": "viewer"})).await;
    assert_eq!(status, 409, "the name is taken");
    let (status, _, body) =
        post(json!({"name": "short", "role": "viewer", "password": "short"})).await;
    assert_eq!(status, 400, "{body}");
    let (_, users) = get(&app, "/users", Auth::Cookie(&boss)).await;
    let names: Vec<&str> = users
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(names, ["boss", "cmd"]);
    assert!(!users.to_string().contains("argon2"), "no hashes: {users}");

    let (cmd, _) = login(&app, "cmd", &generated)
        .await
        .expect("commander signs in");
    let mut socket = live_socket(&app, Auth::Cookie(&cmd), &[])
        .await
        .expect("socket");
    let (status, _, _) = call(
        &app,
        reqwest::Method::PATCH,
        "/users/cmd",
        Auth::Cookie(&boss),
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        closed_within(&mut socket, WAIT).await,
        "a lowered role's socket closes"
    );
    let (_, me) = get(&app, "/me", Auth::Cookie(&cmd)).await;
    assert_eq!(
        me["role"], "viewer",
        "the session carries on with the lower role"
    );
    assert_eq!(me["may_command"], false);

    let mut socket = live_socket(&app, Auth::Cookie(&cmd), &[])
        .await
        .expect("socket");
    let (status, _, _) = call(
        &app,
        reqwest::Method::DELETE,
        "/users/cmd",
        Auth::Cookie(&boss),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert!(
        closed_within(&mut socket, WAIT).await,
        "a removed account's socket closes"
    );
    assert_eq!(get(&app, "/live", Auth::Cookie(&cmd)).await.0, 401);

    let (status, _, _) = call(
        &app,
        reqwest::Method::DELETE,
        "/users/boss",
        Auth::Cookie(&boss),
        None,
    )
    .await;
    assert_eq!(status, 409, "the last admin stays");
    let (status, _, _) = call(
        &app,
        reqwest::Method::PATCH,
        "/users/boss",
        Auth::Cookie(&boss),
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(status, 409, "the last admin keeps its role");
}

// Commands by name

/// A viewer's command frames are refused (and five refusals close its socket); a commander's is
/// delivered; every one of them is in the audit trail admins read.
async fn only_commanders_command_and_every_command_is_audited(backend: Backend) {
    let Some(app) = public(backend, |_| {}).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Ann", "s1", 1)).await;
    app.wait_for_rows(1, 0, 0).await;
    let viewer = token(&app, "watcher", Role::Viewer).await;
    let commander = token(&app, "leader", Role::Commander).await;
    let admin = token(&app, "boss", Role::Admin).await;

    let mut watcher = live_socket(&app, Auth::Bearer(&viewer), &[])
        .await
        .expect("viewer socket");
    let command = |text: &str| json!({"type": "command", "player_name": "Ann", "command": text});
    for i in 0..4 {
        watcher
            .send_json(&command(&format!("/say viewer {i}")))
            .await;
        assert_eq!(
            watcher.recv_type("command_result").await["status"],
            "unauthorized"
        );
    }
    watcher.send_json(&command("/say viewer 4")).await;
    assert!(
        closed_within(&mut watcher, WAIT).await,
        "the fifth refused command closes the socket"
    );
    assert!(
        plugin.silent_for(Duration::from_millis(300)).await,
        "nothing reached the plugin"
    );

    let mut leader = live_socket(&app, Auth::Bearer(&commander), &[])
        .await
        .expect("commander socket");
    leader.send_json(&command("/say hello")).await;
    assert_eq!(
        leader.recv_type("command_result").await["status"],
        "delivered"
    );
    assert_eq!(plugin.recv_json().await["command"], "/say hello");
    leader
        .send_json(&json!({"type": "command", "player_name": "Nobody", "command": "/quit"}))
        .await;
    assert_eq!(
        leader.recv_type("command_result").await["status"],
        "not_connected"
    );

    let (status, page) = get(&app, "/audit?limit=3", Auth::Bearer(&admin)).await;
    assert_eq!(status, 200, "{page}");
    let entries = page["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 3);
    assert_eq!(
        (
            entries[0]["actor"].clone(),
            entries[0]["character_name"].clone(),
            entries[0]["result"].clone()
        ),
        (json!("leader"), json!("Nobody"), json!("not_connected"))
    );
    assert_eq!(
        (
            entries[1]["actor"].clone(),
            entries[1]["command"].clone(),
            entries[1]["result"].clone()
        ),
        (json!("leader"), json!("/say hello"), json!("delivered"))
    );
    assert_eq!(entries[2]["actor"], "watcher");
    assert_eq!(entries[2]["result"], "unauthorized");
    assert!(entries[0]["at"].is_string());
    let before = page["next_before"].as_i64().expect("another page");
    let (_, older) = get(
        &app,
        &format!("/audit?before={before}&character=Ann"),
        Auth::Bearer(&admin),
    )
    .await;
    let older = older["entries"].as_array().expect("entries");
    assert_eq!(older.len(), 4, "the other refused commands: {older:?}");
    assert!(
        older
            .iter()
            .all(|e| e["actor"] == "watcher" && e["character_name"] == "Ann")
    );
    assert_eq!(get(&app, "/audit", Auth::Bearer(&commander)).await.0, 403);
}

// Plugins by key

/// A key speaks only for its characters: listed ones, or those it named first; another key (or
/// the legacy secret) naming them is refused; an admin moves and frees them; bindings survive a
/// restart.
async fn a_plugin_key_speaks_only_for_its_characters(backend: Backend) {
    // Each refused frame costs the connection part of its error budget; this test sends many.
    let Some(app) = public(backend, |s| s.sessions.max_frame_errors = 1_000).await else {
        return;
    };
    let a = key(&app, "anns-pc", &["Ann"]).await;
    let b = key(&app, "bobs-pc", &[]).await;
    let refused = |reply: Value, name: &str| {
        assert_eq!(reply["type"], "error", "{reply}");
        assert!(
            reply["error"].as_str().is_some_and(|e| e.contains(name)),
            "{reply}"
        );
    };

    let mut bob = app.plugin_with(Some(&b), None).await.expect("bob's plugin");
    bob.send_json(&telemetry("Ann", "x", 999)).await;
    refused(bob.recv_json().await, "Ann");
    bob.send_json(&telemetry("Bob", "s1", 5)).await;
    app.wait_for_rows(1, 0, 0).await;

    let mut ann = app.plugin_with(Some(&a), None).await.expect("ann's plugin");
    ann.send_json(&telemetry("Bob", "y", 999)).await;
    refused(ann.recv_json().await, "Bob");
    ann.send_json(&telemetry("Ann", "s1", 2)).await;
    let mut legacy = app.plugin().await;
    legacy.send_json(&telemetry("Ann", "z", 999)).await;
    refused(legacy.recv_json().await, "Ann");
    app.wait_for_rows(2, 0, 0).await;
    let live = get(
        &app,
        "/live",
        Auth::Bearer(&token(&app, "reader", Role::Viewer).await),
    )
    .await
    .1;
    let kills = |name: &str| {
        live["players"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["character_name"] == name))
            .map(|p| p["total_kills"].clone())
    };
    assert_eq!(
        (kills("Ann"), kills("Bob")),
        (Some(json!(2)), Some(json!(5))),
        "{live}"
    );

    // The admin moves Bob to Ann's key: Bob's plugin lets go of him, Ann's may speak for him.
    manage::key(
        &app.store,
        &KeyAction::Move {
            name: "anns-pc".into(),
            characters: vec!["Bob".into()],
        },
    )
    .await
    .expect("move");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        ann.send_json(&telemetry("Bob", "s1", 6)).await;
        let answer = tokio::time::timeout(Duration::from_millis(300), ann.recv_json()).await;
        if answer.is_err() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Bob never moved to Ann's key"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bob.send_json(&telemetry("Bob", "s1", 7)).await;
    refused(bob.recv_json().await, "Bob");
    // Bob's key still speaks for its other characters.
    bob.send_json(&telemetry("Cid", "s1", 1)).await;
    assert!(
        bob.silent_for(Duration::from_millis(500)).await,
        "Cid is bound to bob's key"
    );

    // Freed, a character goes to the next key that names it.
    manage::key(
        &app.store,
        &KeyAction::Free {
            characters: vec!["Cid".into()],
        },
    )
    .await
    .expect("free");
    wait_until(
        || async {
            app.store
                .bindings(None)
                .await
                .expect("bindings")
                .iter()
                .all(|b| b.character_name != "Cid")
        },
        "Cid freed",
    )
    .await;
    drop(bob);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    ann.send_json(&telemetry("Cid", "s2", 1)).await;
    assert!(
        ann.silent_for(Duration::from_millis(500)).await,
        "Cid was free for ann's key"
    );

    // The bindings are stored: a restarted tracker refuses the same frames.
    drop((ann, legacy));
    let app = app
        .restart(|s| s.server.bind_addr = "0.0.0.0:0".parse().expect("addr"))
        .await;
    let mut bob = app.plugin_with(Some(&b), None).await.expect("bob's plugin");
    for name in ["Ann", "Bob", "Cid"] {
        bob.send_json(&telemetry(name, "r", 1)).await;
        refused(bob.recv_json().await, name);
    }
    let rows = app.store.bindings(None).await.expect("bindings");
    let owner = |c: &str| {
        rows.iter()
            .find(|b| b.character_name == c)
            .map(|b| b.key_name.clone())
    };
    assert_eq!(
        (owner("Ann"), owner("Bob"), owner("Cid")),
        (
            Some("anns-pc".into()),
            Some("anns-pc".into()),
            Some("anns-pc".into())
        )
    );
}

/// A revoked key is refused from then on, and its open connections close within a second of
/// the tracker noticing (it reloads every second).
async fn a_revoked_key_is_refused_and_its_sockets_close(backend: Backend) {
    let Some(app) = public(backend, |_| {}).await else {
        return;
    };
    let k = key(&app, "lost-laptop", &[]).await;
    let mut plugin = app.plugin_with(Some(&k), None).await.expect("plugin");
    plugin.send_json(&telemetry("Dee", "s1", 1)).await;
    app.wait_for_rows(1, 0, 0).await;
    let started = std::time::Instant::now();
    manage::key(
        &app.store,
        &KeyAction::Revoke {
            name: "lost-laptop".into(),
        },
    )
    .await
    .expect("revoke");
    assert!(
        closed_within(&mut plugin, WAIT).await,
        "the revoked key's socket closes"
    );
    eprintln!("revoked key's socket closed after {:?}", started.elapsed());
    match app.plugin_with(Some(&k), None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 401)
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a revoked key connected"),
    }
    // The legacy secret may not take the revoked key's characters either.
    let mut legacy = app.plugin().await;
    legacy.send_json(&telemetry("Dee", "s2", 1)).await;
    assert_eq!(legacy.recv_json().await["type"], "error");
}

both_backends!(
    on_a_public_bind_reads_need_a_viewer,
    a_loopback_tracker_is_open_until_the_first_account,
    sessions_begin_at_login_and_end_at_logout,
    admins_manage_accounts_and_changes_reach_open_sockets,
    only_commanders_command_and_every_command_is_audited,
    a_plugin_key_speaks_only_for_its_characters,
    a_revoked_key_is_refused_and_its_sockets_close,
);

// The seven breaks of issue 23 not covered elsewhere (break 1: security.rs
// `no_network_position_lets_anyone_command`; break 5: cluster.rs
// `a_packet_forged_on_the_bus_by_another_role_is_dropped`).

/// Break 2: a wrong command token is a refused command like any other: five close the socket,
/// so guessing costs a connection every five tries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_the_command_token_costs_the_socket() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.access.command_token = Some(Secret::new("the-real-command-token"));
    })
    .await
    else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Ann", "s1", 1)).await;
    app.wait_for_rows(1, 0, 0).await;
    let mut guesser = live_socket(&app, Auth::Nobody, &[]).await.expect("socket");
    let mut answered = 0;
    for i in 0..50 {
        let frame = json!({"type": "command", "player_name": "Ann", "command": "/quit",
                           "token": format!("guess-{i}")});
        if tokio::time::timeout(
            Duration::from_secs(5),
            futures_util::SinkExt::send(
                &mut guesser.ws,
                tokio_tungstenite::tungstenite::Message::text(frame.to_string()),
            ),
        )
        .await
        .map_or(true, |r| r.is_err())
        {
            break;
        }
        answered += 1;
    }
    assert!(
        closed_within(&mut guesser, WAIT).await,
        "the guessing socket is closed"
    );
    assert!(answered <= 50);
    let refused = app
        .store
        .audit_log(&dereth_tracker::store::AuditQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("audit");
    assert_eq!(
        refused.len(),
        5,
        "five guesses were read, then the socket closed: {refused:?}"
    );
    assert!(plugin.silent_for(Duration::from_millis(200)).await);
}

/// Break 3: behind HAProxy (`option forwardfor` appends its own X-Forwarded-For line) the
/// failed-authentication limiter keys on the last entry: a client forging the first line cannot
/// choose its key, nor lock out a victim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_forwarding_headers_choose_no_limiter_key() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let attempt = |first: String, secret: &'static str| {
        let addr = app.addr;
        async move {
            let mut request = format!("ws://{addr}/ws/position")
                .into_client_request()
                .expect("request");
            let h = request.headers_mut();
            h.insert("X-Plugin-Secret", secret.parse().expect("value"));
            // What the client sent, then the line the proxy appended.
            h.append("X-Forwarded-For", first.parse().expect("value"));
            h.append("X-Forwarded-For", "203.0.113.9".parse().expect("value"));
            match tokio_tungstenite::connect_async(request).await {
                Ok(_) => 101,
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
                Err(e) => panic!("{e}"),
            }
        }
    };
    let mut statuses = Vec::new();
    for i in 0..30 {
        statuses.push(attempt(format!("10.0.{}.{}", i / 200, i % 200 + 1), "wrong").await);
    }
    assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    // A victim whose address the attacker forged in the first line is not locked out.
    let mut request = format!("ws://{}/ws/position", app.addr)
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("X-Plugin-Secret", SECRET.parse().expect("value"));
    request
        .headers_mut()
        .insert("X-Forwarded-For", "10.0.0.1".parse().expect("value"));
    assert!(
        tokio_tungstenite::connect_async(request).await.is_ok(),
        "the victim connects"
    );
}

/// Break 4: rotating `session_id` cannot mint kills or rares, nor grow memory: 50 sessions each
/// claiming a million kills count at most what the character could do, 200 rares count five,
/// and the character keeps a bounded number of sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_sessions_mints_no_kills_rares_or_memory() {
    let Some(app) =
        TestApp::spawn_with(Backend::Sqlite, |s| s.sessions.max_frame_errors = 1_000).await
    else {
        return;
    };
    let started = std::time::Instant::now();
    let mut plugin = app.plugin().await;
    for i in 0..50 {
        plugin
            .send_json(&telemetry("Rotator", &format!("session-{i}"), 1_000_000))
            .await;
    }
    for i in 0..200 {
        plugin
            .send_json(&rare_frame("Rotator", &format!("Gem {i}")))
            .await;
    }
    plugin
        .send_json(&telemetry("Rotator", "session-0", 1_000_000))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, live) = app.get("/live").await;
    let me = live["players"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["character_name"] == "Rotator"))
        .cloned()
        .expect("Rotator is live");
    let elapsed = started.elapsed().as_secs() as i64 + 1;
    let kills = me["total_kills"].as_i64().expect("kills");
    let bound = dereth_tracker::testing::MAX_UNMEASURED_KILLS
        + elapsed * dereth_tracker::testing::MAX_KILLS_PER_SEC;
    assert!(
        kills <= bound,
        "{kills} kills from 50 rotated sessions (bound {bound})"
    );
    assert_eq!(me["total_rares"], 5, "{me}");
    let state = app
        .store
        .character_state("Rotator", chrono::Utc::now() - chrono::Duration::hours(1))
        .await
        .expect("stored state");
    assert!(state.total_kills <= bound, "stored {}", state.total_kills);
    let debug = app.get("/debug").await.1;
    let sessions = debug["memory"]["sessions"]
        .as_u64()
        .expect("sessions in /debug");
    assert!(sessions <= 20, "sessions kept in memory: {sessions}");
}

/// Break 6: a connection that merely re-registers a character after its owner dropped does not
/// keep it: the owner, returning with data, wins it back, and commands go to the owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_owner_wins_its_character_from_a_squatter() {
    let Some(mut app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let mut owner = app.plugin().await;
    owner.send_json(&telemetry("Ann", "s1", 1)).await;
    app.wait_for_rows(1, 0, 0).await;
    drop(owner);
    let mut squatter = app.plugin().await;
    let register = json!({"type": "register", "player_name": "Ann"});
    squatter.send_json(&register).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut owner = app.plugin().await;
    owner.send_json(&telemetry("Ann", "s1", 2)).await;
    squatter.send_json(&register).await;
    assert!(
        owner.silent_for(Duration::from_millis(1_500)).await,
        "the owner is accepted"
    );
    app.sign_in_as(Role::Commander).await;
    let (mut browser, _) = app.browser().await;
    browser
        .send_json(&json!({"type": "command", "player_name": "Ann", "command": "/quit"}))
        .await;
    assert_eq!(
        browser.recv_type("command_result").await["status"],
        "delivered"
    );
    assert_eq!(
        owner.recv_json().await["command"],
        "/quit",
        "the command went to the owner"
    );
    // The squatter got nothing but, at most, errors.
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(
        Duration::from_millis(200),
        futures_util::StreamExt::next(&mut squatter.ws),
    )
    .await
    {
        assert!(
            !msg.to_string().contains("/quit"),
            "the squatter got the command"
        );
    }
}

/// Break 7: one client without credentials holds a few `/ws/live` sockets, all anonymous
/// clients together a bounded number, far below the connection cap; a signed-in map still gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_map_sockets_are_capped_per_client_and_in_total() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.access.public_read = true;
        s.sessions.max_anonymous_browsers = 12;
        s.sessions.max_anonymous_browsers_per_client = 4;
    })
    .await
    else {
        return;
    };
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            live_socket(&app, Auth::Nobody, &[])
                .await
                .expect("within the per-client cap"),
        );
    }
    assert_eq!(live_socket(&app, Auth::Nobody, &[]).await.err(), Some(429));
    // Other clients (behind the local proxy) fill the total.
    for i in 0..8 {
        let ip = format!("198.51.100.{}", i / 4 + 1);
        held.push(
            live_socket(&app, Auth::Nobody, &[("X-Forwarded-For", &ip)])
                .await
                .expect("within the total"),
        );
    }
    let status = live_socket(&app, Auth::Nobody, &[("X-Forwarded-For", "198.51.100.77")])
        .await
        .err();
    assert_eq!(status, Some(503), "the anonymous total is full");
    let viewer = token(&app, "real-map", Role::Viewer).await;
    assert!(
        live_socket(&app, Auth::Bearer(&viewer), &[]).await.is_ok(),
        "a signed-in map gets in"
    );
    // A closed socket frees its place.
    held.truncate(3);
    wait_until(
        || async { live_socket(&app, Auth::Nobody, &[]).await.is_ok() },
        "a place freed",
    )
    .await;
}

/// The management commands, as an operator runs them: a password from standard input, a
/// generated one printed once, tokens and keys printed once and listed without secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_management_commands_print_secrets_once() {
    let Some(db) = common::TestDb::create(Backend::Sqlite).await else {
        return;
    };
    let run = |args: &[&str], stdin: &str| {
        let mut child = std::process::Command::new(crate::process::BIN)
            .env_clear()
            .env("DATABASE_URL", &db.url)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("runs");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("stdin");
        let out = child.wait_with_output().expect("output");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(
        &["user", "add", "ann", "--role", "admin"],
        "a very good password\n",
    );
    assert!(ok, "{out}{err}");
    assert!(!out.contains("a very good password"), "{out}");
    let (ok, _, err) = run(&["user", "add", "bob", "--role", "viewer"], "short\n");
    assert!(
        !ok && err.contains("10"),
        "a short password is refused: {err}"
    );
    let (ok, out, _) = run(&["user", "list"], "");
    assert!(
        ok && out.contains("ann\tadmin") && !out.contains("argon2"),
        "{out}"
    );
    let (ok, out, _) = run(&["token", "add", "grafana", "--role", "viewer"], "");
    assert!(ok, "{out}");
    let token = out.split_whitespace().last().expect("the token").to_owned();
    assert!(token.starts_with("dt_") && token.len() > 30, "{out}");
    let (ok, out, _) = run(&["token", "list"], "");
    assert!(
        ok && out.contains("grafana\tviewer") && !out.contains(&token),
        "{out}"
    );
    let (ok, out, _) = run(
        &["key", "add", "anns-pc", "--characters", "Ann,Ann Alt"],
        "",
    );
    assert!(ok, "{out}");
    let key = out.split_whitespace().last().expect("the key").to_owned();
    assert!(key.starts_with("dk_"), "{out}");
    let (ok, out, _) = run(&["key", "list"], "");
    assert!(
        ok && out.contains("anns-pc\tactive\t2 characters") && !out.contains(&key),
        "{out}"
    );
    let (ok, out, _) = run(&["key", "revoke", "anns-pc"], "");
    assert!(ok, "{out}");
    let (ok, _, err) = run(&["key", "revoke", "nobody"], "");
    assert!(!ok && err.contains("nobody"), "{err}");
    let (ok, out, _) = run(&["key", "list"], "");
    assert!(ok && out.contains("anns-pc\trevoked"), "{out}");
    let (ok, out, _) = run(&["user", "remove", "ann"], "");
    assert!(ok, "{out}");
    let (ok, out, _) = run(&["user", "list"], "");
    assert!(ok && !out.contains("ann"), "{out}");
}

/// Refused commands count as failed authentications of their client: after ten (two sockets'
/// worth) the client gets no new socket for the minute, so neither guessing nor the audit trail
/// grows with reconnections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_commands_cost_their_client_new_sockets() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |s| s.access.public_read = true).await
    else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Ann", "s1", 1)).await;
    app.wait_for_rows(1, 0, 0).await;
    let command = json!({"type": "command", "player_name": "Ann", "command": "/quit"});
    for _ in 0..2 {
        let mut socket = live_socket(&app, Auth::Nobody, &[]).await.expect("socket");
        for _ in 0..5 {
            socket.send_json(&command).await;
        }
        assert!(closed_within(&mut socket, WAIT).await);
    }
    assert_eq!(live_socket(&app, Auth::Nobody, &[]).await.err(), Some(429));
    // Another client is not affected.
    assert!(
        live_socket(&app, Auth::Nobody, &[("X-Forwarded-For", "198.51.100.5")])
            .await
            .is_ok()
    );
    let audit = app
        .store
        .audit_log(&dereth_tracker::store::AuditQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("audit");
    assert_eq!(audit.len(), 10, "{audit:?}");
    assert!(plugin.silent_for(Duration::from_millis(200)).await);
}
