//! The analysts' query API on both backends: events, heatmaps, characters, statistics, CSV,
//! compression, the OpenAPI document and metrics.

use crate::common;

use chrono::{Duration, SecondsFormat, Utc};
use common::{Backend, Client, TestApp, rare_frame, spawn_frame, telemetry};
use serde_json::{Value, json};

fn at(minutes_ago: i64) -> String {
    (Utc::now() - Duration::minutes(minutes_ago)).to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn spawn(name: &str, mob: &str, ew: f64, ns: f64, minutes_ago: i64) -> Value {
    json!({"type": "spawn", "character_name": name, "mob": mob, "timestamp": at(minutes_ago),
           "ew": ew, "ns": ns, "z": 0})
}

fn rare(name: &str, item: &str, ew: f64, ns: f64, minutes_ago: i64) -> Value {
    json!({"type": "rare", "character_name": name, "name": item, "timestamp": at(minutes_ago),
           "ew": ew, "ns": ns, "z": 0})
}

async fn send_all(plugin: &mut Client, frames: &[Value]) {
    for f in frames {
        plugin.send_json(f).await;
    }
}

async fn status_and_error(app: &TestApp, path: &str) -> (u16, String) {
    let (status, body) = app.get(path).await;
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn spawns_and_rares_are_paged_and_filtered(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.sessions.clock_skew_secs = 0).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Tango", "s1", 0)).await;
    let mut frames = Vec::new();
    for i in 0..7 {
        frames.push(spawn("Tango", "Drudge Robber", 1.0, 1.0, 30 - i));
    }
    for i in 0..3 {
        frames.push(spawn("Tango", "Mosswart", 2.0, 2.0, 20 - 2 * i));
    }
    frames.push(rare("Tango", "Pearl", 1.0, 1.0, 5));
    frames.push(rare("Tango", "Gem of Knowledge", 1.0, 1.0, 4));
    send_all(&mut plugin, &frames).await;
    app.wait_for_rows(1, 10, 2).await;

    let (status, page1) = app.get("/spawns?name=Drudge%20Robber&limit=4").await;
    assert_eq!(status, 200, "{page1}");
    assert_eq!(page1["data"].as_array().map(Vec::len), Some(4));
    assert_eq!(page1["data"][0]["label"], "Drudge Robber");
    let cursor = page1["next_cursor"]
        .as_str()
        .expect("more pages")
        .to_owned();
    let (_, page2) = app
        .get(&format!(
            "/spawns?name=Drudge%20Robber&limit=4&cursor={cursor}"
        ))
        .await;
    assert_eq!(page2["data"].as_array().map(Vec::len), Some(3));
    assert_eq!(page2["next_cursor"], Value::Null);

    let (_, all) = app.get("/spawns?character=Tango").await;
    assert_eq!(all["data"].as_array().map(Vec::len), Some(10));
    let (_, recent) = app.get(&format!("/spawns?from={}", at(19))).await;
    assert_eq!(recent["data"].as_array().map(Vec::len), Some(2), "{recent}");

    let (_, rares) = app.get("/rares?character=Tango").await;
    let names: Vec<&str> = rares["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|r| r["label"].as_str())
        .collect();
    assert_eq!(names, ["Pearl", "Gem of Knowledge"]);
    assert_eq!(rares["data"][0]["session_id"], "s1");

    for (path, status, needle) in [
        ("/spawns?character=Nobody", 404, "Nobody"),
        ("/rares?from=later", 400, "from"),
        (
            "/spawns?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            400,
            "after",
        ),
        ("/spawns?limit=10001", 400, "limit"),
        ("/rares?format=xml", 400, "format"),
        ("/history?character=Nobody", 404, "Nobody"),
        ("/trails?character=Nobody", 404, "Nobody"),
    ] {
        let (got, msg) = status_and_error(&app, path).await;
        assert_eq!(got, status, "{path}: {msg}");
        assert!(
            msg.contains(needle),
            "{path}: `{msg}` should mention {needle}"
        );
    }
}

async fn heatmaps_count_events_per_cell(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.sessions.clock_skew_secs = 0).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    send_all(
        &mut plugin,
        &[
            spawn("Uniform", "Drudge", 0.5, 0.5, 3),
            spawn("Uniform", "Drudge", 1.9, 1.2, 3),
            spawn("Uniform", "Mosswart", 1.0, 1.0, 3),
            spawn("Uniform", "Drudge", -0.5, -3.0, 3),
            spawn("Uniform", "Drudge", 10.0, 10.0, 60 * 30),
            // Five hours ago: a whole hour inside the default range, counted from the hourly
            // cell counts rather than raw rows.
            spawn("Uniform", "Drudge", -0.5, -3.0, 60 * 5),
            spawn("Uniform", "Mosswart", 4.5, 4.5, 60 * 5),
            rare("Uniform", "Pearl", 4.1, 4.1, 2),
        ],
    )
    .await;
    app.wait_for_rows(0, 7, 1).await;

    let (status, map) = app.get("/spawns/heatmap?bin=2").await;
    assert_eq!(status, 200, "{map}");
    assert_eq!(map["bin"], 2.0);
    let cells: Vec<(f64, f64, i64)> = map["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .map(|c| {
            (
                c["ew"].as_f64().unwrap_or(f64::NAN),
                c["ns"].as_f64().unwrap_or(f64::NAN),
                c["count"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    // The 30-hour-old spawn is outside the default one-day range; -0.5/-3.0 floors to (-2, -4).
    assert_eq!(cells, vec![(-2.0, -4.0, 2), (0.0, 0.0, 3), (4.0, 4.0, 1)]);

    // A bin that is not a multiple of the hourly cells counts raw rows only: same totals.
    let total = |v: &Value| -> i64 {
        v["cells"]
            .as_array()
            .map(|c| c.iter().filter_map(|c| c["count"].as_i64()).sum())
            .unwrap_or(-1)
    };
    let (_, raw) = app.get("/spawns/heatmap?bin=1.5").await;
    assert_eq!(total(&raw), 6);
    assert_eq!(total(&map), 6);

    let (_, drudges) = app.get("/spawns/heatmap?bin=2&name=Drudge").await;
    assert_eq!(drudges["cells"][1]["count"], 2);
    let (_, wide) = app
        .get(&format!("/spawns/heatmap?bin=50&from={}", at(60 * 40)))
        .await;
    let wide_total: i64 = wide["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .filter_map(|c| c["count"].as_i64())
        .sum();
    assert_eq!(wide_total, 7);
    let (_, rares) = app.get("/rares/heatmap?bin=1").await;
    assert_eq!(rares["cells"], json!([{"ew": 4.0, "ns": 4.0, "count": 1}]));

    for path in [
        "/spawns/heatmap?bin=0",
        "/spawns/heatmap?bin=abc",
        "/rares/heatmap?bin=1000",
    ] {
        let (status, msg) = status_and_error(&app, path).await;
        assert_eq!(status, 400, "{path}");
        assert!(msg.contains("bin"), "{msg}");
    }
}

async fn characters_and_statistics_reflect_what_was_sent(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.sessions.clock_skew_secs = 0).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    let mut frames = Vec::new();
    // Victor: kills 0 -> 30 over four frames an hour ago; Whiskey: 0 -> 5.
    for (i, kills) in [0, 10, 20, 30].iter().enumerate() {
        let mut f = telemetry("Victor", "v1", *kills);
        f["timestamp"] = at(60 - i as i64).into();
        f["kills_per_hour"] = json!(100 + i * 10);
        frames.push(f);
    }
    for (i, kills) in [0, 5].iter().enumerate() {
        let mut f = telemetry("Whiskey", "w1", *kills);
        f["timestamp"] = at(30 - i as i64).into();
        f["kills_per_hour"] = json!(500);
        frames.push(f);
    }
    frames.push(rare("Whiskey", "Pearl", 0.0, 0.0, 29));
    frames.push(rare("Whiskey", "Gem", 0.0, 0.0, 28));
    send_all(&mut plugin, &frames).await;
    app.wait_for_rows(6, 0, 2).await;

    let (_, list) = app.get("/characters").await;
    let chars = list["characters"].as_array().expect("characters");
    assert_eq!(chars.len(), 2);
    assert_eq!(chars[0]["character_name"], "Victor");
    assert_eq!(chars[0]["total_kills"], 30);
    assert_eq!(chars[0]["deaths"], 1);
    assert_eq!(chars[0]["total_deaths"], 7);
    assert_eq!(chars[0]["char_tag"], "guild");
    assert_eq!(chars[1]["total_rares"], 2);
    assert!(chars[1]["last_seen"].as_str().is_some());

    let (_, kills) = app.get("/stats/leaderboard?by=kills").await;
    let ranking: Vec<(Value, Value)> = kills["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| (e["character_name"].clone(), e["value"].clone()))
        .collect();
    assert_eq!(
        ranking,
        vec![
            (json!("Victor"), json!(30.0)),
            (json!("Whiskey"), json!(5.0))
        ]
    );
    let (_, kph) = app
        .get("/stats/leaderboard?by=kills_per_hour&limit=1")
        .await;
    assert_eq!(
        kph["entries"],
        json!([{"rank": 1, "character_name": "Whiskey", "value": 500.0}])
    );
    let (_, rares) = app.get("/stats/leaderboard?by=rares").await;
    assert_eq!(rares["entries"][0]["character_name"], "Whiskey");
    assert_eq!(rares["entries"][0]["value"], 2.0);
    // Kills count by the hour: a range from 45 minutes ago starts at that hour's beginning,
    // which holds Victor's last frame (57 minutes ago) only when both fall in one clock hour.
    let from = at(45);
    let hour = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .expect("time")
            .timestamp()
            .div_euclid(3600)
    };
    let victor_counted = hour(&at(57)) == hour(&from);
    let (_, late) = app
        .get(&format!("/stats/leaderboard?by=kills&from={from}"))
        .await;
    assert_eq!(
        late["entries"].as_array().map(Vec::len),
        Some(1 + usize::from(victor_counted)),
        "{late}"
    );
    let whole_hours =
        chrono::DateTime::parse_from_rfc3339(late["from"].as_str().expect("from")).expect("from");
    assert_eq!(whole_hours.timestamp(), hour(&from) * 3600);

    let (status, stats) = app.get("/stats/Victor?bucket=600").await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["character"]["total_kills"], 30);
    let series = stats["series"].as_array().expect("series");
    let kills_sum: i64 = series.iter().filter_map(|p| p["kills"].as_i64()).sum();
    let samples: i64 = series.iter().filter_map(|p| p["samples"].as_i64()).sum();
    assert_eq!((kills_sum, samples), (30, 4));
    let (_, whiskey) = app.get("/stats/Whiskey").await;
    assert_eq!(
        whiskey["rares_per_session"][0]["session_id"], "w1",
        "{whiskey}"
    );
    assert_eq!(whiskey["rares_per_session"][0]["rares"], 2);

    for (path, status, needle) in [
        ("/stats/Nobody", 404, "Nobody"),
        ("/stats/Victor?bucket=1", 400, "bucket"),
        (
            "/stats/Victor?from=2020-01-01T00:00:00Z&bucket=60",
            400,
            "days",
        ),
        ("/stats/leaderboard?by=luck", 400, "by"),
        ("/stats/leaderboard?limit=0", 400, "limit"),
    ] {
        let (got, msg) = status_and_error(&app, path).await;
        assert_eq!(got, status, "{path}: {msg}");
        assert!(msg.contains(needle), "{path}: `{msg}`");
    }
}

async fn csv_exports_stream_every_row(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    // More rows than one streamed page (2000).
    let n = 2_300;
    for i in 0..n {
        let mut f = telemetry("Xray", "x", i);
        f["char_tag"] = json!("tag, with \"quotes\"");
        plugin.send_json(&f).await;
    }
    send_all(
        &mut plugin,
        &[
            spawn("Xray", "Drudge", 1.0, 2.0, 1),
            rare("Xray", "Pearl", 3.0, 4.0, 1),
        ],
    )
    .await;
    app.wait_for_rows(n, 1, 1).await;

    let resp = reqwest::get(app.url("/history?format=csv&character=Xray"))
        .await
        .expect("csv");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/csv")
    );
    let body = resp.text().await.expect("body");
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len() as i64, n + 1, "a header and every row");
    assert!(lines[0].starts_with("id,timestamp,character_name"));
    assert!(
        lines[1].contains("\"tag, with \"\"quotes\"\"\""),
        "{}",
        lines[1]
    );

    let limited = reqwest::get(app.url("/history?format=csv&limit=10"))
        .await
        .expect("csv")
        .text()
        .await
        .expect("body");
    assert_eq!(limited.lines().count(), 11);

    for (path, rows) in [
        ("/spawns?format=csv", 1),
        ("/rares?format=csv", 1),
        ("/trails?format=csv&character=Xray&step=3600", 1),
    ] {
        let text = reqwest::get(app.url(path))
            .await
            .expect("csv")
            .text()
            .await
            .expect("body");
        assert_eq!(text.lines().count(), rows + 1, "{path}: {text}");
    }
}

async fn responses_are_gzipped_when_accepted(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    for i in 0..50 {
        plugin.send_json(&telemetry("Yankee", "y", i)).await;
    }
    app.wait_for_rows(50, 0, 0).await;
    let raw = reqwest::Client::builder()
        .no_gzip()
        .build()
        .expect("client");
    let resp = raw
        .get(app.url("/history"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("history");
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let plain = raw.get(app.url("/history")).send().await.expect("history");
    assert!(plain.headers().get("content-encoding").is_none());
}

both_backends!(
    spawns_and_rares_are_paged_and_filtered,
    heatmaps_count_events_per_cell,
    characters_and_statistics_reflect_what_was_sent,
    csv_exports_stream_every_row,
    responses_are_gzipped_when_accepted,
);

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Zulu", "z", 1)).await;
    app.wait_for_rows(1, 0, 0).await;

    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.")
    );
    let paths: Vec<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    for expected in [
        "/ws/position",
        "/ws/live",
        "/live",
        "/history",
        "/trails",
        "/spawns",
        "/rares",
        "/spawns/heatmap",
        "/rares/heatmap",
        "/characters",
        "/stats/leaderboard",
        "/stats/{character}",
        "/debug",
        "/health",
        "/metrics",
        "/openapi.json",
        "/login",
        "/logout",
        "/me",
        "/users",
        "/users/{name}",
        "/audit",
    ] {
        assert!(
            paths.iter().any(|p| p == expected),
            "{expected} is documented"
        );
    }
    // Every operation says what it needs: the open ones none, the rest a session cookie or an
    // API token, and the document describes both schemes.
    let open = ["/health", "/openapi.json", "/login"];
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let schemes: Vec<&str> = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_object())
                .flat_map(|r| r.keys().map(String::as_str))
                .collect();
            if open.contains(&path.as_str()) {
                assert!(schemes.is_empty(), "{method} {path} is open: {schemes:?}");
            } else if path == "/ws/position" {
                assert_eq!(schemes, ["plugin_key"], "plugins present a key");
            } else if path == "/logout" {
                assert!(schemes.contains(&"session"), "{op}");
            } else {
                assert!(
                    schemes.contains(&"token") && schemes.contains(&"session"),
                    "{method} {path} does not say it needs a session or a token: {op}"
                );
            }
        }
    }
    for scheme in ["token", "session", "plugin_key"] {
        assert!(
            doc["components"]["securitySchemes"][scheme].is_object(),
            "{scheme} scheme described"
        );
    }
    // Every documented path is served (the fallback answers "no such endpoint").
    for path in &paths {
        let concrete = path.replace("{character}", "Zulu");
        let resp = reqwest::get(app.url(&concrete)).await.expect("request");
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        assert!(
            !(status == 404 && body.contains("no such endpoint")),
            "{path} is documented but not routed"
        );
    }
    // Rejections of the path and the method carry the JSON error body too.
    let resp = reqwest::get(app.url("/stats/%FF")).await.expect("request");
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.expect("a JSON error body");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("UTF-8")),
        "{body}"
    );
    let resp = reqwest::Client::new()
        .post(app.url("/history"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 405);
    assert!(resp.headers().get("allow").is_some());
    let body: Value = resp.json().await.expect("a JSON error body");
    assert!(body["error"].is_string(), "{body}");
    // An empty time is not a time.
    let (status, body) = app.get("/history?to=").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app.get("/not-documented").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("no such endpoint"))
    );

    // Operation ids are unique (the document is valid), and every query parameter has a real
    // type: a number with bounds, a date-time, an enumeration, or a string with a length limit.
    let mut ids = std::collections::HashSet::new();
    let mut untyped = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let id = op["operationId"].as_str().unwrap_or_default().to_owned();
            assert!(
                ids.insert(id.clone()),
                "operationId `{id}` repeated ({method} {path})"
            );
            for param in op["parameters"].as_array().into_iter().flatten() {
                if param["in"] != "query" {
                    continue;
                }
                let schema = &param["schema"];
                let typed = schema["type"].as_str().is_some_and(|t| t != "string")
                    || schema["type"]
                        .as_array()
                        .is_some_and(|t| t.iter().any(|t| t != "string" && t != "null"))
                    || schema.get("format").is_some()
                    || schema.get("maxLength").is_some()
                    || schema.get("$ref").is_some()
                    || schema.get("enum").is_some()
                    || schema.get("oneOf").is_some();
                let name = param["name"].as_str().unwrap_or_default();
                // Cursors and the legacy secret/token are opaque strings by nature.
                if !typed && !["cursor", "secret", "token"].contains(&name) {
                    untyped.push(format!("{path} {name}: {schema}"));
                }
            }
        }
    }
    assert!(untyped.is_empty(), "untyped parameters: {untyped:#?}");
    // Every answer but the websocket upgrade and 204 declares its content; the endpoints that can
    // answer CSV say so; row items are published schemas, not bare objects.
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            for (code, response) in op["responses"].as_object().expect("responses") {
                // A websocket upgrade and "no content" have none.
                if code == "101" || code == "204" {
                    continue;
                }
                assert!(
                    response["content"]
                        .as_object()
                        .is_some_and(|c| !c.is_empty()),
                    "{method} {path} {code} declares no content"
                );
            }
        }
        let op = &item["get"];
        let csv = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["name"] == "format");
        if csv {
            assert!(
                op["responses"]["200"]["content"].get("text/csv").is_some(),
                "{path} answers CSV but does not document text/csv"
            );
        }
    }
    let bare = json!({"type": "object"});
    for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
        for (field, property) in schema["properties"].as_object().into_iter().flatten() {
            assert!(
                property["items"] != bare,
                "{name}.{field} lists bare objects"
            );
        }
    }
    // Every reference resolves to a published schema.
    let text = doc.to_string();
    for part in text.split("\"#/components/schemas/").skip(1) {
        let name = part.split('"').next().unwrap_or_default();
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling reference to `{name}`"
        );
    }
}

#[tokio::test]
async fn metrics_are_exposed_in_prometheus_format() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Alfa", "a", 1)).await;
    plugin.send_text("junk").await;
    assert_eq!(plugin.recv_json().await["type"], "error");
    app.wait_for_rows(1, 0, 0).await;
    // The telemetry row and the event log's entry for the plugin's connection.
    app.wait_debug("batch written", |d| d["rows_written"] == 2)
        .await;
    let _ = app.get("/history").await;
    let _ = app.get("/stats/Alfa").await;
    let resp = reqwest::get(app.url("/metrics")).await.expect("metrics");
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/plain")
    );
    let text = resp.text().await.expect("body");
    for needle in [
        "dereth_frames_received_total{type=\"telemetry\"} 1",
        "dereth_frames_rejected_total 1",
        "dereth_rows_written_total 2",
        "dereth_write_queue_depth 0",
        "dereth_plugins_connected 1",
        "dereth_browsers_connected 0",
        "dereth_broadcast_lag_total 0",
        "dereth_write_batch_seconds_count ",
        "dereth_http_request_duration_seconds_count{method=\"GET\",route=\"/history\"} 1",
        "dereth_http_request_duration_seconds_count{method=\"GET\",route=\"/stats/{character}\"} 1",
    ] {
        assert!(text.contains(needle), "metrics lack `{needle}`:\n{text}");
    }
}

/// PostgreSQL only: the query shapes behind `/history`, `/trails`, `/spawns` and the heatmaps are
/// served by indexes (sequential scans are disabled so the plan shows whether an index can
/// answer; on a tiny table the planner would rightly prefer a scan).
#[tokio::test]
async fn postgres_query_shapes_are_served_by_indexes() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    // Rows first: on TimescaleDB an empty hypertable has no chunk (and no index) to plan with.
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("a", "s", 1)).await;
    plugin.send_json(&spawn_frame("a", "x")).await;
    plugin.send_json(&rare_frame("a", "r")).await;
    app.wait_for_rows(1, 1, 1).await;
    let pool = sqlx::PgPool::connect(&app.db.url).await.expect("connect");
    let mut conn = pool.acquire().await.expect("conn");
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .expect("set");
    for sql in [
        "SELECT * FROM telemetry_events WHERE character_name = 'a' \
         AND timestamp >= now() - interval '1 day' ORDER BY timestamp, id LIMIT 1000",
        "SELECT character_name, timestamp, ew, ns, z FROM telemetry_events \
         WHERE timestamp >= now() - interval '10 minutes'",
        "SELECT * FROM spawn_events WHERE mob = 'x' AND timestamp >= now() - interval '1 day'",
        "SELECT floor(ew / 2), floor(ns / 2), count(*) FROM spawn_events \
         WHERE timestamp >= now() - interval '1 day' GROUP BY 1, 2",
        "SELECT * FROM rare_events WHERE character_name = 'a' ORDER BY timestamp, id LIMIT 10",
    ] {
        let plan: Vec<(String,)> = sqlx::query_as(&format!("EXPLAIN {sql}"))
            .fetch_all(&mut *conn)
            .await
            .expect("explain");
        let text: String = plan.into_iter().map(|(l,)| l + "\n").collect();
        assert!(text.contains("Index"), "no index serves:\n{sql}\n{text}");
        assert!(
            !text.contains("Seq Scan"),
            "sequential scan for:\n{sql}\n{text}"
        );
    }
}
