//! The boundary, tried as an attacker would through real sockets: foreign pages, rebound host
//! names, a proxy in front, made-up methods, formula cells, malformed query strings, secret
//! guessing and command floods.

use crate::common;

use std::time::Duration;

use common::{Backend, SECRET, TestApp, telemetry};
use dereth_tracker::config::Role;
use dereth_tracker::store::AuditQuery;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn app() -> TestApp {
    TestApp::spawn(Backend::Sqlite)
        .await
        .expect("sqlite always runs")
}

/// Opens `path` as a websocket with extra headers; the HTTP status when refused.
async fn ws_status(app: &TestApp, path: &str, headers: &[(&'static str, &str)]) -> u16 {
    let mut request = format!("ws://{}{}", app.addr, path)
        .into_client_request()
        .expect("request");
    for (k, v) in headers {
        request
            .headers_mut()
            .insert(*k, v.parse().expect("header value"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(err) => panic!("unexpected error: {err}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_other_origins_cannot_open_the_sockets() {
    let app = app().await;
    let own = format!("http://{}", app.addr);
    assert_eq!(ws_status(&app, "/ws/live", &[("Origin", &own)]).await, 101);
    assert_eq!(ws_status(&app, "/ws/live", &[]).await, 101, "no Origin");
    for foreign in ["https://evil.example", "null", "http://127.0.0.1:1"] {
        assert_eq!(
            ws_status(&app, "/ws/live", &[("Origin", foreign)]).await,
            403,
            "{foreign}"
        );
        assert_eq!(
            ws_status(
                &app,
                "/ws/position",
                &[("Origin", foreign), ("X-Plugin-Secret", SECRET)]
            )
            .await,
            403,
            "{foreign} on the plugin socket"
        );
    }
    // A deployment that embeds the map elsewhere lists that origin.
    let listed = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.access.allowed_origins = vec!["https://guild.example.com".into()];
    })
    .await
    .expect("sqlite");
    assert_eq!(
        ws_status(
            &listed,
            "/ws/live",
            &[("Origin", "https://guild.example.com")]
        )
        .await,
        101
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebound_host_names_are_refused() {
    let app = app().await;
    let client = reqwest::Client::new();
    let get = |host: &str| client.get(app.url("/live")).header("Host", host).send();
    let refused = get("evil.example").await.expect("answer");
    assert_eq!(refused.status().as_u16(), 403);
    let body: Value = refused.json().await.expect("JSON error body");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("ALLOWED_HOSTS")
    );
    assert_eq!(get("localhost").await.expect("answer").status(), 200);
    assert_eq!(
        get(&app.addr.to_string()).await.expect("answer").status(),
        200
    );
    let named = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.access.allowed_hosts = vec!["tracker.example.com".into()];
    })
    .await
    .expect("sqlite");
    let ok = client
        .get(named.url("/live"))
        .header("Host", "tracker.example.com")
        .send()
        .await
        .expect("answer");
    assert_eq!(ok.status(), 200);
}

/// Break 1 (issue 23): a TCP forwarder in front of a loopback tracker passes the client's
/// `Host: 127.0.0.1`, a bare proxy adds no forwarding header: network position must grant no
/// command, however the request looks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_network_position_lets_anyone_command() {
    let mut app = app().await;
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Proxied", "s", 1)).await;
    app.wait_for_rows(1, 0, 0).await;
    let command = json!({"type": "command", "player_name": "Proxied", "command": "/vt stop"});
    let host = format!("127.0.0.1:{}", app.addr.port());
    for headers in [
        vec![("Host", host.as_str())],
        vec![("X-Forwarded-For", "198.51.100.7")],
        vec![("X-Real-IP", "198.51.100.7")],
        vec![("Forwarded", "for=198.51.100.7")],
    ] {
        let mut request = format!("ws://{}/ws/live", app.addr)
            .into_client_request()
            .expect("request");
        for (k, v) in &headers {
            request.headers_mut().insert(*k, v.parse().expect("value"));
        }
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("browser connects");
        let mut browser = common::Client { ws };
        browser.recv_type("snapshot").await;
        browser.send_json(&command).await;
        let result = browser.recv_type("command_result").await;
        assert_eq!(result["status"], "unauthorized", "with {headers:?}");
    }
    assert!(plugin.silent_for(Duration::from_millis(300)).await);
    // A commander may, wherever it connects from; the command is audited.
    app.sign_in_as(Role::Commander).await;
    let (mut commander, _) = app.browser().await;
    commander.send_json(&command).await;
    assert_eq!(
        commander.recv_type("command_result").await["status"],
        "delivered"
    );
    assert_eq!(plugin.recv_json().await["command"], "/vt stop");
    let audit = app
        .store
        .audit_log(&AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("audit");
    assert_eq!(audit.len(), 5, "every command, refused or not: {audit:?}");
    assert_eq!(audit[0].result, "delivered");
    assert_eq!(audit[0].via, "token");
    assert!(
        audit[1..]
            .iter()
            .all(|a| a.result == "unauthorized" && a.actor == "anonymous")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_flooding_commands_is_slowed_down() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.access.command_token = Some(dereth_tracker::config::Secret::new("tok"));
    })
    .await
    .expect("sqlite");
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Flooded", "s", 1)).await;
    app.wait_for_rows(1, 0, 0).await;
    let (mut browser, _) = app.browser().await;
    let mut statuses = Vec::new();
    for _ in 0..15 {
        browser
            .send_json(&json!({"type": "command", "player_name": "Flooded",
                               "command": "/vt start", "token": "tok"}))
            .await;
        statuses.push(
            browser.recv_type("command_result").await["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    let delivered = statuses.iter().filter(|s| *s == "delivered").count();
    let limited = statuses.iter().filter(|s| *s == "rate_limited").count();
    assert!(
        (10..=11).contains(&delivered),
        "a burst of 10 passes: {statuses:?}"
    );
    assert_eq!(delivered + limited, 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_guessing_is_slowed_down_per_client() {
    let app = app().await;
    let mut statuses = Vec::new();
    for i in 0..12 {
        let status = match app.plugin_with(Some(&format!("guess-{i}")), None).await {
            Ok(_) => 101,
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
            Err(err) => panic!("{err}"),
        };
        statuses.push(status);
    }
    assert_eq!(&statuses[..10], &[401; 10]);
    assert_eq!(&statuses[10..], &[429, 429], "{statuses:?}");
    // Even the right secret waits out the minute from that client...
    assert!(app.plugin_with(Some(SECRET), None).await.is_err());
    // ...but a client behind the local proxy with another address is not affected.
    let mut request = format!("ws://{}/ws/position", app.addr)
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("X-Plugin-Secret", SECRET.parse().expect("value"));
    request
        .headers_mut()
        .insert("X-Real-IP", "198.51.100.20".parse().expect("value"));
    assert!(tokio_tungstenite::connect_async(request).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_do_not_grow_the_metrics() {
    let app = app().await;
    let client = reqwest::Client::new();
    let series = || async {
        let text = client
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .filter(|l| l.starts_with("dereth_http_request_duration_seconds_count"))
            .count()
    };
    let _ = client.get(app.url("/live")).send().await;
    let before = series().await;
    for i in 0..40 {
        let method = reqwest::Method::from_bytes(format!("FOO{i}").as_bytes()).expect("method");
        let _ = client.request(method, app.url("/live")).send().await;
        let _ = client
            .request(
                reqwest::Method::from_bytes("X".repeat(500).as_bytes()).expect("method"),
                app.url(&format!("/no/such/path/{i}")),
            )
            .send()
            .await;
    }
    let after = series().await;
    assert!(
        after <= before + 3,
        "series grew from {before} to {after} (at most `other` on /live, /metrics and unmatched)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_security_headers() {
    let app = app().await;
    for path in ["/", "/js/app.js", "/live"] {
        let resp = reqwest::get(app.url(path)).await.expect("GET");
        let h = resp.headers();
        let csp = h
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert_eq!(
            h.get("x-frame-options").map(|v| v.as_bytes()),
            Some(&b"DENY"[..])
        );
        assert_eq!(
            h.get("x-content-type-options").map(|v| v.as_bytes()),
            Some(&b"nosniff"[..])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_cells_cannot_become_formulas() {
    let app = app().await;
    let mut plugin = app.plugin().await;
    plugin
        .send_json(
            &json!({"type": "spawn", "character_name": "=cmd|' /C calc'!A0",
                           "mob": "@SUM(1+1)", "ew": 1, "ns": 1}),
        )
        .await;
    app.wait_for_rows(0, 1, 0).await;
    let csv = reqwest::get(app.url("/spawns?format=csv"))
        .await
        .expect("csv")
        .text()
        .await
        .expect("text");
    assert!(csv.contains("\"'=cmd|' /C calc'!A0\""), "{csv}");
    assert!(csv.contains("\"'@SUM(1+1)\""), "{csv}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_query_strings_get_the_json_error_body() {
    let app = app().await;
    for path in [
        "/history?limit=1&limit=2",
        "/spawns?from=a&from=b",
        "/stats/leaderboard?by=kills&by=rares",
    ] {
        let resp = reqwest::get(app.url(path)).await.expect("GET");
        assert_eq!(resp.status().as_u16(), 400, "{path}");
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("application/json"),
            "{path}: {content_type}"
        );
        let body: Value = resp.json().await.expect("JSON");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// Whether the server closes `stream` within `within` (reads until EOF or an error).
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_http_clients_are_closed() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.server.header_read_timeout_secs = 1)
        .await
        .expect("sqlite");
    let connect = || tokio::net::TcpStream::connect(app.addr);
    let limit = Duration::from_secs(5);

    let mut silent = connect().await.expect("connect");
    assert!(
        closed_within(&mut silent, limit).await,
        "a silent connection"
    );

    let mut half = connect().await.expect("connect");
    half.write_all(b"GET /live HT").await.expect("write");
    assert!(closed_within(&mut half, limit).await, "half a request line");

    // Dripping a byte every 200 ms does not keep the header deadline alive.
    let mut drip = connect().await.expect("connect");
    let dripper = tokio::spawn(async move {
        for b in b"GET /live HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if drip.write_all(&[*b]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    });
    assert!(
        tokio::time::timeout(Duration::from_secs(15), dripper)
            .await
            .expect("the drip ends")
            .expect("task"),
        "a dripping client is cut off"
    );

    // An idle kept-alive connection after a complete request is closed too.
    let mut idle = connect().await.expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    assert!(
        closed_within(&mut idle, limit).await,
        "an idle keep-alive connection"
    );
    // The server still answers everyone else.
    assert_eq!(
        reqwest::get(app.url("/health"))
            .await
            .expect("GET")
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_cannot_speak_for_ever_more_characters() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.sessions.max_frame_errors = 100)
        .await
        .expect("sqlite");
    let mut plugin = app.plugin().await;
    let limit = dereth_tracker::testing::MAX_CHARACTERS_PER_CONNECTION;
    for i in 0..limit {
        plugin
            .send_json(&telemetry(&format!("Alt {i}"), "s", 1))
            .await;
    }
    app.wait_for_rows(limit as i64, 0, 0).await;
    plugin.send_json(&telemetry("One Too Many", "s", 1)).await;
    let reply = plugin.recv_json().await;
    assert_eq!(reply["type"], "error");
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .contains(&limit.to_string()),
        "{reply}"
    );
    // The characters it already speaks for still work.
    plugin.send_json(&telemetry("Alt 0", "s", 2)).await;
    app.wait_for_rows(limit as i64 + 1, 0, 0).await;
    assert!(
        app.store
            .telemetry_of("One Too Many", 1)
            .await
            .expect("rows")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_without_forwarding_headers_still_needs_the_token() {
    // nginx passing Host but no X-Forwarded-For: the peer is loopback, the Host a public name.
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.access.allowed_hosts = vec!["tracker.example.com".into()];
    })
    .await
    .expect("sqlite");
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Named", "s", 1)).await;
    app.wait_for_rows(1, 0, 0).await;
    let mut request = format!("ws://{}/ws/live", app.addr)
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("Host", "tracker.example.com".parse().expect("value"));
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("browser connects");
    let mut browser = common::Client { ws };
    browser.recv_type("snapshot").await;
    browser
        .send_json(&json!({"type": "command", "player_name": "Named", "command": "/vt stop"}))
        .await;
    assert_eq!(
        browser.recv_type("command_result").await["status"],
        "unauthorized"
    );
}
