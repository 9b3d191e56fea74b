//! Nothing lost, nothing counted twice, nobody starved: readers against the writer, cost caps,
//! bounded exports, ownership of characters and bounded live state, through real sockets.

use crate::common;

use std::time::Duration;

use common::{Backend, TestApp, block_writes, telemetry};
use serde_json::Value;

/// Telemetry rows stored, counted on a connection of the test's own.
async fn telemetry_rows(app: &TestApp) -> i64 {
    match app.db.backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.db.url).await.expect("pg");
            let n = sqlx::query_scalar("SELECT count(*) FROM telemetry_events")
                .fetch_one(&pool)
                .await
                .expect("count");
            pool.close().await;
            n
        }
        Backend::Sqlite => app.store.row_counts().await.expect("counts").telemetry,
    }
}

/// Plugin frames one per character per call, with increasing kills.
async fn send_telemetry(app: &TestApp, names: &[&str], frames: usize) {
    let mut plugin = app.plugin().await;
    for i in 0..frames {
        for name in names {
            plugin
                .send_json(&telemetry(name, "s1", i64::try_from(i).unwrap_or(0)))
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_cannot_take_the_writers_connections() {
    let Some(app) = TestApp::spawn_with(Backend::Postgres, |s| {
        s.database.db_max_connections = 2;
        s.database.read_statement_timeout_secs = 2;
        s.server.request_timeout_secs = 60;
    })
    .await
    else {
        return;
    };
    send_telemetry(&app, &["Reader Victim"], 1).await;
    app.wait_for_rows(1, 0, 0).await;

    // Every read of rare_events now waits on a lock, holding its read connection; the writer
    // (telemetry only) never touches that table.
    let locker = sqlx::PgPool::connect(&app.db.url).await.expect("pg");
    let mut lock = locker.begin().await.expect("begin");
    sqlx::query("LOCK TABLE rare_events IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock");
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let url = app.url("/rares");
            tokio::spawn(async move {
                let resp = reqwest::get(url).await.expect("GET /rares");
                let status = resp.status().as_u16();
                (status, resp.json::<Value>().await.unwrap_or(Value::Null))
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    send_telemetry(&app, &["Reader Victim"], 200).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while telemetry_rows(&app).await < 201 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the writer stalled behind blocked readers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (health, body) = app.get("/health").await;
    assert_eq!(health, 200, "{body}");

    // The blocked queries were cancelled by the read statement timeout, and those that found
    // no free read connection were told to retry: a clear 503 either way.
    let mut cancelled = 0;
    for reader in readers {
        let (status, body) = reader.await.expect("reader task");
        assert_eq!(status, 503, "{body}");
        let text = body["error"].as_str().unwrap_or_default();
        if text.contains("READ_STATEMENT_TIMEOUT_SECS") {
            cancelled += 1;
        } else {
            assert!(text.contains("retry"), "{body}");
        }
    }
    assert!(
        cancelled >= 2,
        "the queries holding connections were cancelled"
    );
    lock.rollback().await.expect("unlock");
    locker.close().await;
    let (status, _) = app.get("/rares").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expensive_queries_beyond_the_limit_get_503_with_retry_after() {
    let Some(app) = TestApp::spawn_with(Backend::Postgres, |s| {
        s.queries.max_heavy_queries = 1;
        s.queries.heavy_query_wait_secs = 0;
    })
    .await
    else {
        return;
    };
    send_telemetry(&app, &["Heavy"], 1).await;
    app.wait_for_rows(1, 0, 0).await;
    let block = block_writes(&app.db).await;
    let first = tokio::spawn({
        let url = app.url("/trails?seconds=60");
        async move { reqwest::get(url).await.expect("GET").status().as_u16() }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resp = reqwest::get(app.url("/stats/leaderboard"))
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = resp.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("MAX_HEAVY_QUERIES")),
        "{body}"
    );
    // Cheap endpoints are not limited.
    assert_eq!(app.get("/live").await.0, 200);
    block.release().await;
    assert_eq!(first.await.expect("first"), 200);
    assert_eq!(app.get("/stats/leaderboard").await.0, 200);
}

async fn huge_ranges_are_refused_with_what_to_narrow(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.queries.max_query_rows = 1_000).await else {
        return;
    };
    send_telemetry(&app, &["Cost A", "Cost B", "Cost C"], 2).await;
    app.wait_for_rows(6, 0, 0).await;
    let expect_400 = |path: &'static str, hint: &'static str| {
        let app = &app;
        async move {
            let (status, body) = app.get(path).await;
            assert_eq!(status, 400, "{path}: {body}");
            let text = body["error"].as_str().unwrap_or_default().to_owned();
            assert!(text.contains("MAX_QUERY_ROWS"), "{path}: {text}");
            assert!(text.contains(hint), "{path}: {text}");
        }
    };
    // 3 characters x 2,000 s of 2-second telemetry = 3,000 rows: too many; one character fits.
    expect_400("/trails?seconds=2000", "pass `character`").await;
    assert_eq!(
        app.get("/trails?seconds=2000&character=Cost%20A").await.0,
        200
    );
    assert_eq!(app.get("/trails?seconds=600").await.0, 200);
    let year_ago = (chrono::Utc::now() - chrono::Duration::days(366) + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let leaderboard: &'static str =
        Box::leak(format!("/stats/leaderboard?from={year_ago}").into_boxed_str());
    expect_400(leaderboard, "shorter range").await;
    let stats: &'static str =
        Box::leak(format!("/stats/Cost%20A?from={year_ago}").into_boxed_str());
    expect_400(stats, "shorter range").await;
    let heat: &'static str =
        Box::leak(format!("/spawns/heatmap?from={year_ago}&name=Drudge").into_boxed_str());
    expect_400(heat, "leave out `name`").await;
    // The same range from the hourly cell counts is cheap and allowed.
    let cells: &'static str =
        Box::leak(format!("/spawns/heatmap?from={year_ago}&bin=4").into_boxed_str());
    assert_eq!(app.get(cells).await.0, 200);
}

async fn csv_exports_stop_at_the_configured_maximum(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.queries.csv_max_rows = 5).await else {
        return;
    };
    send_telemetry(&app, &["Exporter"], 12).await;
    app.wait_for_rows(12, 0, 0).await;
    let lines = |path: &'static str| {
        let url = app.url(path);
        async move {
            let text = reqwest::get(url)
                .await
                .expect("GET")
                .text()
                .await
                .expect("body");
            text.lines().count()
        }
    };
    assert_eq!(lines("/history?format=csv").await, 1 + 5);
    assert_eq!(lines("/history?format=csv&limit=3").await, 1 + 3);
    assert_eq!(lines("/history?format=csv&limit=500").await, 1 + 5);
    let (status, body) = app.get("/history?limit=12").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"].as_array().map(Vec::len),
        Some(12),
        "JSON pages are not an export"
    );
}

both_backends!(
    huge_ranges_are_refused_with_what_to_narrow,
    csv_exports_stop_at_the_configured_maximum,
);

fn telemetry_event(name: &str, kills: i64, delta: i64) -> dereth_tracker::store::Event {
    let frame =
        dereth_tracker::protocol::parse_plugin_frame(&telemetry(name, "s1", kills).to_string())
            .expect("frame");
    let dereth_tracker::protocol::PluginFrame::Telemetry(row) = frame else {
        panic!("telemetry fixture");
    };
    dereth_tracker::store::Event::Telemetry {
        row,
        kills_delta: delta,
        kills_baseline: kills,
    }
}

async fn a_replayed_batch_changes_nothing(backend: Backend) {
    let Some(db) = common::TestDb::create(backend).await else {
        return;
    };
    let store = db.store().await;
    let batch = vec![
        telemetry_event("Replayed", 5, 5),
        telemetry_event("Replayed", 9, 4),
    ];
    assert!(store.write_batch("run-0-2", &batch).await.expect("first"));
    // The same batch again, as the writer retries it when the reply to its commit was lost.
    assert!(!store.write_batch("run-0-2", &batch).await.expect("replay"));
    let counts = store.row_counts().await.expect("counts");
    assert_eq!(counts.telemetry, 2);
    let stats = store.character_stats().await.expect("stats");
    assert_eq!(stats[0].total_kills, 9);
    // Another key is another batch.
    assert!(
        store
            .write_batch("run-2-1", &batch[..1])
            .await
            .expect("next")
    );
    assert_eq!(store.row_counts().await.expect("counts").telemetry, 3);
    // Old keys are forgotten by the pruning task, recent ones kept.
    let past = chrono::Utc::now() - chrono::Duration::hours(1);
    assert_eq!(store.prune_batch_keys(past).await.expect("prune"), 0);
    let future = chrono::Utc::now() + chrono::Duration::hours(1);
    assert_eq!(store.prune_batch_keys(future).await.expect("prune"), 2);
}

/// A TCP proxy in front of PostgreSQL that, once armed, forwards the next `COMMIT` but swallows
/// the database's reply to it and drops the connection: the commit happened, the client never
/// hears so.
mod lost_ack {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    pub(super) struct Proxy {
        pub port: u16,
        pub armed: Arc<AtomicBool>,
        pub swallowed: Arc<AtomicU32>,
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    pub(super) async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let armed = Arc::new(AtomicBool::new(false));
        let swallowed = Arc::new(AtomicU32::new(0));
        let (a, s) = (armed.clone(), swallowed.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (armed, swallowed) = (a.clone(), s.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let commit_sent = Arc::new(AtomicBool::new(false));
                    let sent = commit_sent.clone();
                    let up = tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = cr.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            // A simple-protocol `COMMIT` query while armed.
                            if contains(&buf[..n], b"COMMIT\0")
                                && armed.swap(false, Ordering::SeqCst)
                            {
                                sent.store(true, Ordering::SeqCst);
                            }
                            if sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = sr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        if commit_sent.load(Ordering::SeqCst) && contains(&buf[..n], b"COMMIT\0") {
                            // The database committed; the client never learns it.
                            swallowed.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    up.abort();
                });
            }
        });
        Proxy {
            port,
            armed,
            swallowed,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_commit_reply_stores_and_counts_nothing_twice() {
    let Some(db) = common::TestDb::create(Backend::Postgres).await else {
        return;
    };
    // postgres://user:password@host:port/name
    let (head, tail) = db.url.rsplit_once('@').expect("credentials in the URL");
    let (authority, path) = tail.split_once('/').expect("database name");
    let port = authority
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(5432);
    let proxy = lost_ack::start(port).await;
    let mut settings = common::test_settings(&db);
    settings.database.database_url = format!("{head}@127.0.0.1:{}/{path}", proxy.port).into();
    let app = TestApp::start(db, settings).await;

    let mut plugin = app.plugin().await;
    for kills in 0..5 {
        plugin.send_json(&telemetry("Lost Ack", "s1", kills)).await;
    }
    app.wait_for_rows(5, 0, 0).await;
    proxy.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    for kills in 5..10 {
        plugin.send_json(&telemetry("Lost Ack", "s1", kills)).await;
    }
    app.wait_debug("the replayed batch", |d| {
        d["batches_replayed"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!(proxy.swallowed.load(std::sync::atomic::Ordering::SeqCst), 1);
    app.wait_for_rows(10, 0, 0).await;
    let counts = app.store.row_counts().await.expect("counts");
    assert_eq!(counts.telemetry, 10, "no telemetry row stored twice");
    let stats = app.store.character_stats().await.expect("stats");
    assert_eq!(stats[0].total_kills, 9, "no kill counted twice");
}

both_backends!(a_replayed_batch_changes_nothing);

async fn a_hundred_thousand_names_leave_memory_after_going_offline(backend: Backend) {
    const NAMES: usize = 100_000;
    const PER_CONNECTION: usize = 64;
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.sessions.live_window_secs = 1;
        s.sessions.evict_offline_secs = 0;
        // Every name comes through the one legacy key.
        s.sessions.key_max_characters = 2 * NAMES;
    })
    .await
    else {
        return;
    };
    let app = std::sync::Arc::new(app);
    // Four senders: enough to be quick, few enough to leave CPU for the tests beside this one.
    let workers = 4;
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut next = w * PER_CONNECTION;
                while next < NAMES {
                    let mut plugin = app.plugin().await;
                    for i in next..(next + PER_CONNECTION).min(NAMES) {
                        plugin.send_json(&telemetry(&format!("N{i}"), "s", 1)).await;
                    }
                    plugin.ws.close(None).await.expect("close");
                    while plugin.next_message().await.is_some() {}
                    next += workers * PER_CONNECTION;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("sender");
    }
    app.wait_for_rows(i64::try_from(NAMES).unwrap_or(i64::MAX), 0, 0)
        .await;
    let debug = app
        .wait_debug("every name evicted", |d| {
            d["memory"]["characters"] == 0 && d["memory"]["sessions"] == 0
        })
        .await;
    assert_eq!(debug["memory"]["owned_characters"], 0, "{debug}");

    // A character that comes back resumes its session from the database: nothing twice.
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("N42", "s", 3)).await;
    app.wait_for_rows(i64::try_from(NAMES).unwrap_or(i64::MAX) + 1, 0, 0)
        .await;
    let (_, live) = app.get("/live").await;
    assert_eq!(live["players"][0]["character_name"], "N42", "{live}");
    assert_eq!(live["players"][0]["total_kills"], 3, "{live}");
    let stored = app
        .store
        .character("N42")
        .await
        .expect("query")
        .expect("N42");
    assert_eq!(stored.total_kills, 3);
}

both_backends!(a_hundred_thousand_names_leave_memory_after_going_offline);

async fn a_plugin_that_reconnects_keeps_its_character(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    // Close and reconnect at once, as the plugin does: the new connection's first frame may be
    // read before the old connection's close, and must not be refused as an impersonation.
    let rounds: i64 = 30;
    let mut old = app.plugin().await;
    old.send_json(&telemetry("Reconnector", "s", 0)).await;
    app.wait_for_rows(1, 0, 0).await;
    for kills in 1..=rounds {
        let mut new = app.plugin().await;
        old.ws.close(None).await.expect("close");
        new.send_json(&telemetry("Reconnector", "s", kills)).await;
        app.wait_for_rows(kills + 1, 0, 0).await;
        old = new;
    }
    assert!(
        old.silent_for(Duration::from_millis(200)).await,
        "no error frame"
    );
    let (_, debug) = app.get("/debug").await;
    assert_eq!(debug["frames_unclaimed"], 0, "{debug}");
    let stats = app.store.character_stats().await.expect("stats");
    assert_eq!(stats[0].total_kills, rounds);
}

both_backends!(a_plugin_that_reconnects_keeps_its_character);
