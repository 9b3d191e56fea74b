//! Running it for real: pruning of expired rows on both backends, a `/health` that degrades when
//! the tracker stops doing its job, secret rotation, and the container health-check command.

use crate::common;

use std::time::Duration;

use common::{Backend, TestApp, TestDb, WAIT, block_writes, telemetry};
use dereth_tracker::store::{Store, StoreOptions};
use dereth_tracker::testing::Lifecycle;
use dereth_tracker::testing::Metrics;
use serde_json::json;

fn days_ago(days: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339()
}

async fn pruning_removes_exactly_the_expired_rows(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.sessions.clock_skew_secs = 0;
        s.retention.retention_telemetry_days = 7;
        s.retention.retention_spawns_days = 3;
        s.retention.prune_interval_secs = 1;
    })
    .await
    else {
        return;
    };
    if app.store.timescaledb() {
        // TimescaleDB drops whole chunks on its policies' schedule instead: tested by
        // timescaledb_hypertables_policies_retention_and_the_aggregate_path.
        eprintln!("SKIP (pruning task): this server runs TimescaleDB retention policies");
        return;
    }
    let mut plugin = app.plugin().await;
    for (days, kills) in [(10, 1), (8, 2), (6, 3), (0, 4)] {
        let mut t = telemetry("Pruned", "s", kills);
        t["timestamp"] = json!(days_ago(days));
        plugin.send_json(&t).await;
    }
    for days in [5, 4, 2, 0] {
        plugin
            .send_json(
                &json!({"type": "spawn", "character_name": "Pruned", "mob": "Drudge",
                               "timestamp": days_ago(days), "ew": 1, "ns": 1}),
            )
            .await;
    }
    let debug = app
        .wait_debug("expired rows pruned", |d| d["rows_pruned"] == 4)
        .await;
    assert_eq!(debug["lifecycle"]["mode"], "pruning");
    assert_eq!(debug["lifecycle"]["telemetry_retention_days"], 7);
    let kept: Vec<i64> = app
        .store
        .telemetry_of("Pruned", 10)
        .await
        .expect("rows")
        .iter()
        .map(|t| t.kills)
        .collect();
    assert_eq!(
        kept,
        vec![3, 4],
        "the 10- and 8-day-old telemetry went, the rest stayed"
    );
    let spawns = app.store.spawns_of("Pruned", 10).await.expect("spawns");
    assert_eq!(spawns.len(), 2, "spawns older than 3 days went");
    // Counters are not history: pruning raw rows leaves totals alone.
    assert_eq!(
        app.store.character_stats().await.expect("stats")[0].total_kills,
        4
    );
}

async fn health_degrades_when_telemetry_stops_or_writes_are_blocked(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.health.health_stale_secs = 1;
        s.health.health_queue_full_secs = 1;
        s.writer.write_queue_capacity = 2;
    })
    .await
    else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Stale", "s", 1)).await;
    app.wait_for_rows(1, 0, 0).await;
    assert_eq!(app.get("/health").await.0, 200);

    // Connected but silent for longer than HEALTH_STALE_SECS.
    let deadline = tokio::time::Instant::now() + WAIT;
    let body = loop {
        let (status, body) = app.get("/health").await;
        if status == 503 {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "never degraded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no telemetry"),
        "{body}"
    );
    plugin.send_json(&telemetry("Stale", "s", 2)).await;
    app.wait_for_rows(2, 0, 0).await;
    assert_eq!(app.get("/health").await.0, 200, "telemetry flows again");

    // A database that cannot take the writes (locked: SQLite fails them, PostgreSQL holds them):
    // `/health` says why, and what is accepted meanwhile waits in the spool.
    let block = block_writes(&app.db).await;
    let sender = tokio::spawn(async move {
        for i in 3..30 {
            plugin.send_json(&telemetry("Stale", "s", i)).await;
        }
        plugin
    });
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = app.get("/health").await;
        let why = body["error"].as_str().unwrap_or_default();
        if status == 503 && (why.contains("cannot be written") || why.contains("lag")) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reported the blocked writes: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    block.release().await;
    let _plugin = sender.await.expect("sender");
    app.wait_for_rows(29, 0, 0).await;
}

async fn the_previous_secret_is_accepted_during_rotation(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.access.shared_secret_previous = Some(dereth_tracker::config::Secret::new("old-secret"));
    })
    .await
    else {
        return;
    };
    let mut old = app
        .plugin_with(Some("old-secret"), None)
        .await
        .expect("the previous secret still works");
    let mut new = app.plugin().await;
    old.send_json(&telemetry("Old", "s", 1)).await;
    new.send_json(&telemetry("New", "s", 1)).await;
    app.wait_for_rows(2, 0, 0).await;
    assert!(app.plugin_with(Some("older-secret"), None).await.is_err());
}

both_backends!(
    pruning_removes_exactly_the_expired_rows,
    health_degrades_when_telemetry_stops_or_writes_are_blocked,
    the_previous_secret_is_accepted_during_rotation,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcheck_command_reports_the_servers_health() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let run = |addr: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dereth-tracker"))
            .arg("healthcheck")
            .env_clear()
            .env("BIND_ADDR", addr)
            .output()
            .expect("run healthcheck")
    };
    let healthy = tokio::task::spawn_blocking({
        let addr = app.addr.to_string();
        move || run(addr)
    })
    .await
    .expect("join");
    assert!(healthy.status.success(), "{healthy:?}");

    // Nothing listening there any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let down = tokio::task::spawn_blocking(move || run(format!("127.0.0.1:{port}")))
        .await
        .expect("join");
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("no answer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcheck_command_fails_while_the_server_is_degraded() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |s| s.health.health_stale_secs = 1).await
    else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Quiet", "s", 1)).await;
    app.wait_for_rows(1, 0, 0).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.get("/health").await.0 != 503 {
        assert!(tokio::time::Instant::now() < deadline, "never degraded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let addr = app.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_dereth-tracker"))
            .arg("healthcheck")
            .env_clear()
            .env("BIND_ADDR", addr)
            .output()
            .expect("run healthcheck")
    })
    .await
    .expect("join");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("503"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_dir_replaces_the_built_in_ui() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(dir.path().join("data")).expect("mkdir");
    std::fs::write(dir.path().join("index.html"), "<title>custom map</title>").expect("write");
    std::fs::write(
        dir.path().join("data/map.json"),
        r#"{"background": {"url": "data/dereth.png", "west": -101.9, "east": 102, "south": -101.9, "north": 102}}"#,
    )
    .expect("write");
    let path = dir.path().to_owned();
    let Some(app) =
        TestApp::spawn_with(Backend::Sqlite, move |s| s.server.static_dir = Some(path)).await
    else {
        return;
    };
    let page = reqwest::get(app.url("/"))
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    assert!(page.contains("custom map"));
    let (_, config) = app.get("/data/map.json").await;
    assert_eq!(config["background"]["url"], "data/dereth.png");
    let (status, body) = app.get("/data/missing.png").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("no such endpoint"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_ui_is_served_at_the_root() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let resp = reqwest::get(app.url("/")).await.expect("get");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/html")
    );
    assert!(resp.text().await.expect("body").contains("Dereth Tracker"));
    for asset in ["/js/app.js", "/style.css", "/data/towns.json"] {
        let resp = reqwest::get(app.url(asset)).await.expect("get");
        assert_eq!(resp.status(), 200, "{asset}");
    }
    let (_, towns) = app.get("/data/towns.json").await;
    let holtburg = towns["towns"]
        .as_array()
        .expect("towns")
        .iter()
        .find(|t| t["name"] == "Holtburg")
        .cloned()
        .expect("Holtburg");
    assert_eq!(
        (holtburg["ns"].as_f64(), holtburg["ew"].as_f64()),
        (Some(42.1), Some(33.6))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_migrated_by_the_first_release_still_opens() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    db.store().await.close().await;
    // Record the first release's version of the TimescaleDB migration, as such a database has it.
    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    let changed = sqlx::query(
        "UPDATE _sqlx_migrations SET checksum = decode($1, 'hex') WHERE version = 20261127000002",
    )
    .bind(
        "94304384307d3d452f3aa4bcee1b2f08c4bf2a217d28dce5c250ac63b2a4260e98dcf93a4174c7625acb26dfea08a125",
    )
    .execute(&pool)
    .await
    .expect("rewind the checksum")
    .rows_affected();
    assert_eq!(changed, 1);
    pool.close().await;
    let store = Store::connect(&db.url, &StoreOptions::default())
        .await
        .expect("the amended migration is accepted");
    store.ping().await.expect("ping");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_database_url_says_how_to_fix_it_without_showing_the_password() {
    let err = Store::connect(
        "postgres://tracker:se/cret@db:5432/dereth",
        &StoreOptions::default(),
    )
    .await
    .expect_err("unparsable URL");
    let message = err.to_string();
    assert!(message.contains("DATABASE_PASSWORD"), "{message}");
    assert!(message.contains("%40"), "{message}");
    assert!(!message.contains("se/cret"), "{message}");
    assert!(!err.is_unavailable(), "a configuration error is final");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timescaledb_hypertables_policies_retention_and_the_aggregate_path() {
    let Some(app) = TestApp::spawn_with(Backend::Postgres, |s| {
        s.retention.retention_telemetry_days = 7;
        s.retention.retention_spawns_days = 3;
        s.retention.compress_after_days = 7;
    })
    .await
    else {
        return;
    };
    if !app.store.timescaledb() {
        eprintln!(
            "SKIP (TimescaleDB): this PostgreSQL server has no TimescaleDB; hypertables, \
             policies, retention and the continuous-aggregate path are not tested"
        );
        return;
    }
    let (_, debug) = app.get("/debug").await;
    assert_eq!(debug["lifecycle"]["mode"], "timescaledb");
    let pool = sqlx::PgPool::connect(&app.db.url).await.expect("connect");
    let hypertables: Vec<String> = sqlx::query_scalar(
        "SELECT hypertable_name::text FROM timescaledb_information.hypertables ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .expect("hypertables");
    assert_eq!(hypertables, ["spawn_events", "telemetry_events"]);
    let chunk_secs: Vec<i64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM time_interval)::int8 FROM timescaledb_information.dimensions \
         WHERE hypertable_name IN ('spawn_events', 'telemetry_events') ORDER BY hypertable_name",
    )
    .fetch_all(&pool)
    .await
    .expect("dimensions");
    assert_eq!(chunk_secs, [86_400, 86_400], "1-day chunks (the default)");
    let order: Vec<String> = sqlx::query_scalar(
        "SELECT attname::text FROM timescaledb_information.compression_settings \
         WHERE hypertable_name = 'telemetry_events' AND orderby_column_index IS NOT NULL \
         ORDER BY orderby_column_index",
    )
    .fetch_all(&pool)
    .await
    .expect("compression settings");
    assert_eq!(order, ["timestamp", "id"]);
    let jobs: Vec<(i32, String, String)> = sqlx::query_as(
        "SELECT job_id, proc_name::text, hypertable_name::text FROM timescaledb_information.jobs \
         WHERE job_id >= 1000 ORDER BY proc_name, hypertable_name",
    )
    .fetch_all(&pool)
    .await
    .expect("jobs");
    let names: Vec<(&str, &str)> = jobs
        .iter()
        .map(|(_, p, h)| (p.as_str(), h.as_str()))
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names.contains(&("policy_retention", "telemetry_events")));
    assert!(names.contains(&("policy_retention", "spawn_events")));
    assert!(names.contains(&("policy_compression", "telemetry_events")));
    assert!(
        names
            .iter()
            .any(|(p, _)| *p == "policy_refresh_continuous_aggregate")
    );

    // The test runs each job itself: the background scheduler must not drop chunks meanwhile.
    for (job, _, _) in &jobs {
        sqlx::query("SELECT alter_job($1, scheduled => false)")
            .bind(job)
            .execute(&pool)
            .await
            .expect("pause the job");
    }
    let mut plugin = app.plugin().await;
    for (days, kills) in [(10, 1), (8, 2), (6, 3), (0, 4)] {
        let mut t = telemetry("Scaled", "s", kills);
        t["timestamp"] = json!(days_ago(days));
        plugin.send_json(&t).await;
    }
    app.wait_for_rows(4, 0, 0).await;
    let range = format!(
        "/stats/Scaled?bucket=3600&from={}&to={}",
        urlencode(&days_ago(11)),
        urlencode(&(chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339())
    );
    let (status, raw) = app.get(&range).await;
    assert_eq!(status, 200, "{raw}");
    assert_eq!(raw["series"].as_array().map(Vec::len), Some(4), "{raw}");

    sqlx::raw_sql("CALL refresh_continuous_aggregate('kills_hourly', NULL, NULL)")
        .execute(&pool)
        .await
        .expect("refresh the aggregate");
    for (job, proc_name, _) in &jobs {
        sqlx::raw_sql(&format!("CALL run_job({job})"))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("job {job} ({proc_name}) fails: {e}"));
    }
    let kept: Vec<i64> = app
        .store
        .telemetry_of("Scaled", 10)
        .await
        .expect("rows")
        .iter()
        .map(|t| t.kills)
        .collect();
    assert_eq!(
        kept,
        [3, 4],
        "retention dropped the chunks older than 7 days"
    );
    // The dropped days are now read from the continuous aggregate: same numbers as raw.
    let (_, after) = app.get(&range).await;
    assert_eq!(after["series"], raw["series"]);
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

async fn old_telemetry_is_thinned_with_kill_sums_kept(backend: Backend) {
    let tweak = |s: &mut dereth_tracker::config::Settings| {
        s.retention.thin_telemetry_after_hours = 24;
        s.retention.thin_telemetry_step_secs = 30;
        s.retention.prune_interval_secs = 3600;
    };
    // The server itself does not thin (its maintenance task would race this test's own pass
    // when the machine is slow); the test runs the same lifecycle with thinning on.
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.retention.thin_telemetry_after_hours = 0;
        s.sessions.clock_skew_secs = 0;
    })
    .await
    else {
        return;
    };
    let mut plugin = app.plugin().await;
    let now = chrono::Utc::now();
    let step_start = (now - chrono::Duration::days(2)).timestamp().div_euclid(30) * 30;
    // Two 30-second steps two days ago, 15 frames each, then 5 recent frames; one kill each.
    let mut kills = 0;
    for i in 0..30 {
        kills += 1;
        let at = chrono::DateTime::from_timestamp(step_start + i * 2, 0).expect("time");
        let mut t = telemetry("Thin", "s", kills);
        t["timestamp"] = json!(at.to_rfc3339());
        plugin.send_json(&t).await;
    }
    for i in 0..5 {
        kills += 1;
        let mut t = telemetry("Thin", "s", kills);
        t["timestamp"] = json!((now - chrono::Duration::seconds(50 - i * 2)).to_rfc3339());
        plugin.send_json(&t).await;
    }
    app.wait_for_rows(35, 0, 0).await;
    let stats = format!("/stats/Thin?bucket=3600&from={}", urlencode(&days_ago(3)));
    let (_, before) = app.get(&stats).await;

    let mut settings = common::test_settings(&app.db);
    tweak(&mut settings);
    let lifecycle = Lifecycle::apply(&app.store, &settings).await;
    let metrics = Metrics::default();
    assert_eq!(lifecycle.thin_once(&app.store, &metrics).await, 28);
    assert_eq!(
        lifecycle.thin_once(&app.store, &metrics).await,
        0,
        "nothing twice"
    );

    let rows = app.store.telemetry_of("Thin", 100).await.expect("rows");
    let kept: Vec<i64> = rows.iter().map(|t| t.kills).collect();
    assert_eq!(
        kept,
        [1, 16, 31, 32, 33, 34, 35],
        "the first row of each old step stays"
    );
    let (_, after) = app.get(&stats).await;
    let kills_of = |v: &serde_json::Value| -> Vec<i64> {
        v["series"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p["kills"].as_i64()).collect())
            .unwrap_or_default()
    };
    assert_eq!(
        kills_of(&after),
        kills_of(&before),
        "kills per hour unchanged"
    );
    assert_eq!(kills_of(&after).iter().sum::<i64>(), 35);
}

both_backends!(old_telemetry_is_thinned_with_kill_sums_kept);
