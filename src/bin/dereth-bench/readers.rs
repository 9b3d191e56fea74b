//! `dereth-bench readers`: plugins send telemetry at a steady rate into a tracker on PostgreSQL that
//! already holds a week of history, first alone, then while clients hammer the heaviest queries
//! (week-long trails at full resolution, year-long leaderboards, raw heatmaps, CSV exports). The
//! question is whether readers slow the writer: rows persisted per second in both phases,
//! `/health` answers, the deepest writer queue, and frames lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

use crate::cli::ReadersArgs;
use crate::report::record;
use crate::server::{ServerProcess, connect_plugin};
use dereth_tracker::store::{Store, StoreOptions};

const TABLES: &str = "telemetry_events, spawn_events, rare_events, char_stats, rare_stats, \
    rare_stats_sessions, session_kills, characters, spawn_cells, write_batches";

#[derive(Debug, Default, Serialize)]
struct Phase {
    name: &'static str,
    secs: f64,
    frames_sent: u64,
    rows_persisted: i64,
    rows_persisted_per_sec: f64,
    health_ok: u64,
    health_failed: u64,
    max_queue_depth: u64,
    /// Reader answers by status code.
    reader_statuses: BTreeMap<u16, u64>,
    reader_mean_ms: f64,
}

fn character_name(i: usize) -> String {
    format!("Load {i:04}")
}

/// Empties the database and loads `rows` telemetry rows spread over the last 7 days for
/// `characters` characters, plus spawns, straight through SQL.
async fn load_history(pool: &PgPool, rows: i64, characters: usize) -> anyhow::Result<()> {
    sqlx::query(&format!("TRUNCATE {TABLES}"))
        .execute(pool)
        .await?;
    let chars = i64::try_from(characters.max(1))?;
    sqlx::query(
        "INSERT INTO telemetry_events (character_name, char_tag, session_id, timestamp, ew, ns, \
             z, kills, kills_delta, kills_per_hour, onlinetime, deaths, total_deaths, rares_found, \
             prismatic_taper_count, vt_state, mem_mb, cpu_pct, mem_handles, latency_ms) \
         SELECT 'Load ' || lpad((g % $2)::text, 4, '0'), 'bench', 'hist-' || (g % $2), \
                now() - make_interval(secs => 604800.0 * g / $1), (g % 200) / 10.0, \
                -(g % 300) / 10.0, 12.5, g / $2, 1, 120, '00.01:00:00', 0, 7, 0, 33, 'Combat', \
                700, 3.5, 1800, 40 \
         FROM generate_series(1, $1::int8) g",
    )
    .bind(rows)
    .bind(chars)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO spawn_events (character_name, mob, timestamp, ew, ns, z) \
         SELECT 'Load ' || lpad((g % $2)::text, 4, '0'), \
                (ARRAY['Drudge', 'Mosswart', 'Banderling', 'Olthoi'])[1 + g % 4], \
                now() - make_interval(secs => 604800.0 * g / $1), (g % 400) / 4.0 - 50, \
                (g % 360) / 4.0 - 45, 0 \
         FROM generate_series(1, $1::int8 / 8) g",
    )
    .bind(rows)
    .bind(chars)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO characters (character_name, char_tag, first_seen, last_seen) \
         SELECT 'Load ' || lpad(g::text, 4, '0'), 'bench', now() - interval '7 days', now() \
         FROM generate_series(0, $1::int8 - 1) g",
    )
    .bind(chars)
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(())
}

/// Rows the run's plugins have had persisted: each frame adds exactly one kill, so the kill
/// totals count them without scanning the telemetry table.
async fn persisted(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT coalesce(sum(total_kills), 0)::int8 FROM char_stats")
            .fetch_one(pool)
            .await?,
    )
}

/// The heaviest queries a hostile or careless client can ask for.
fn heavy_paths() -> Vec<String> {
    let year_ago = (chrono::Utc::now() - chrono::Duration::days(365))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let month_ago = (chrono::Utc::now() - chrono::Duration::days(30))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    vec![
        "/trails?seconds=604800&step=1".to_owned(),
        format!("/stats/leaderboard?from={year_ago}"),
        format!("/stats/leaderboard?by=kills_per_hour&from={year_ago}"),
        format!("/spawns/heatmap?from={month_ago}&name=Drudge"),
        format!("/spawns/heatmap?from={month_ago}&bin=3"),
        "/history?format=csv".to_owned(),
        format!("/stats/Load%200001?from={year_ago}"),
        "/trails?seconds=604800&step=1&character=Load%200002".to_owned(),
    ]
}

/// Runs one phase of `secs` seconds; readers hammer the heavy queries when `readers` > 0.
async fn phase(
    name: &'static str,
    server: &ServerProcess,
    pool: &PgPool,
    args: &ReadersArgs,
    readers: usize,
    session: &str,
) -> anyhow::Result<Phase> {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let before = persisted(pool).await?;
    let started = Instant::now();

    let mut plugins = Vec::new();
    for p in 0..args.plugins {
        let (url, stop, sent) = (server.plugin_url(), stop.clone(), sent.clone());
        let (character, session) = (character_name(p), format!("{session}-{p}"));
        let period = Duration::from_micros(1_000_000 / args.rate.max(1));
        plugins.push(tokio::spawn(async move {
            let mut ws = connect_plugin(&url).await?;
            let mut tick = tokio::time::interval(period);
            let mut kills: i64 = 0;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                kills += 1;
                let frame = serde_json::json!({
                    "type": "telemetry", "character_name": character, "char_tag": "bench",
                    "session_id": session, "timestamp": chrono::Utc::now().to_rfc3339(),
                    "ew": (kills % 200) as f64 / 10.0, "ns": -((kills % 300) as f64) / 10.0,
                    "z": 12.5, "kills": kills, "kills_per_hour": 120, "deaths": 0,
                    "rares_found": 0, "vt_state": "Combat",
                });
                ws.send(Message::text(frame.to_string())).await?;
                sent.fetch_add(1, Ordering::Relaxed);
            }
            ws.close(None).await?;
            anyhow::Ok(())
        }));
    }

    let statuses = Arc::new(Mutex::new((BTreeMap::<u16, u64>::new(), 0f64, 0u64)));
    let mut reader_tasks = Vec::new();
    for r in 0..readers {
        let (stop, http, base, statuses) =
            (stop.clone(), http.clone(), base.clone(), statuses.clone());
        reader_tasks.push(tokio::spawn(async move {
            let paths = heavy_paths();
            let mut i = r;
            while !stop.load(Ordering::Relaxed) {
                let path = &paths[i % paths.len()];
                i += 1;
                let t = Instant::now();
                let status = match http.get(format!("{base}{path}")).send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let _ = resp.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                let mut s = statuses.lock().await;
                *s.0.entry(status).or_default() += 1;
                s.1 += t.elapsed().as_secs_f64() * 1000.0;
                s.2 += 1;
                if status == 503 {
                    drop(s);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }));
    }

    let mut result = Phase {
        name,
        ..Phase::default()
    };
    let deadline = started + Duration::from_secs(args.seconds);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let health = http
            .get(format!("{base}/health"))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match health {
            Ok(resp) if resp.status().is_success() => result.health_ok += 1,
            _ => result.health_failed += 1,
        }
        if let Ok(resp) = http.get(format!("{base}/debug")).send().await
            && let Ok(body) = resp.json::<serde_json::Value>().await
        {
            let depth = body["queue_depth"].as_u64().unwrap_or(0);
            result.max_queue_depth = result.max_queue_depth.max(depth);
        }
    }
    let persisted_at_end = persisted(pool).await?;
    result.secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for p in plugins {
        p.await??;
    }
    for r in reader_tasks {
        r.await?;
    }
    result.frames_sent = sent.load(Ordering::Relaxed);
    result.rows_persisted = persisted_at_end - before;
    result.rows_persisted_per_sec = result.rows_persisted as f64 / result.secs;
    let s = statuses.lock().await;
    result.reader_statuses = s.0.clone();
    result.reader_mean_ms = if s.2 > 0 { s.1 / s.2 as f64 } else { 0.0 };
    Ok(result)
}

/// `dereth-bench readers`.
pub(crate) async fn run(args: ReadersArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.database_url.starts_with("postgres"),
        "this benchmark needs a PostgreSQL database URL"
    );
    Store::connect(&args.database_url, &StoreOptions::default())
        .await?
        .close()
        .await;
    let pool = PgPool::connect(&args.database_url).await?;
    eprintln!("loading {} rows of history...", args.history_rows);
    load_history(&pool, args.history_rows, args.plugins).await?;

    let server = ServerProcess::start(&args.database_url, &[]).await?;
    let alone = phase("ingest alone", &server, &pool, &args, 0, "alone").await?;
    eprintln!("{}", serde_json::to_string(&alone)?);
    let loaded = phase(
        "ingest with readers",
        &server,
        &pool,
        &args,
        args.readers,
        "loaded",
    )
    .await?;
    eprintln!("{}", serde_json::to_string(&loaded)?);

    // Every frame sent must end up stored, exactly once.
    let sent = i64::try_from(alone.frames_sent + loaded.frames_sent)?;
    let catch_up = Instant::now() + Duration::from_secs(300);
    let mut stored = persisted(&pool).await?;
    while stored < sent && Instant::now() < catch_up {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stored = persisted(&pool).await?;
    }
    let rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM telemetry_events WHERE session_id NOT LIKE 'hist-%'",
    )
    .fetch_one(&pool)
    .await?;
    server.stop().await?;
    let lost = sent - rows;
    let drop = 1.0 - loaded.rows_persisted_per_sec / alone.rows_persisted_per_sec.max(1e-9);
    let verdict = crate::report::verdict(drop < 0.2 && lost == 0 && loaded.health_failed == 0);
    println!(
        "{}",
        serde_json::json!({"scenario": "readers", "alone": alone, "loaded": loaded,
            "frames_sent": sent, "rows_stored": rows, "kills_counted": stored, "lost": lost,
            "drop": drop})
    );
    let statuses = |p: &Phase| {
        p.reader_statuses
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let row = |p: &Phase| {
        format!(
            "| {} | {:.0} | {} | {:.0} | {}/{} | {} | {} | {:.0} |\n",
            p.name,
            p.frames_sent as f64 / p.secs,
            p.rows_persisted,
            p.rows_persisted_per_sec,
            p.health_ok,
            p.health_ok + p.health_failed,
            p.max_queue_depth,
            if p.reader_statuses.is_empty() {
                "-".to_owned()
            } else {
                statuses(p)
            },
            p.reader_mean_ms,
        )
    };
    let reproduce = crate::report::reproduce(
        "readers --database-url postgres://USER:PASSWORD@127.0.0.1/dereth_bench",
    );
    record(
        &args.report,
        "readers",
        &format!(
            "## Ingest while readers hammer the heaviest queries (`dereth-bench readers`)\n\n\
             Measured {} on this 2-core machine (tracker, load generator and PostgreSQL 15 \
             together, default settings: 8 read connections, MAX_HEAVY_QUERIES 4, \
             MAX_QUERY_ROWS 2,000,000, READ_STATEMENT_TIMEOUT_SECS 30). The database held {} \
             telemetry rows over the last 7 days for {} characters (and an eighth as many \
             spawns). {} plugins sent {} frames/s each for {} s alone, then {} s more while {} \
             clients looped over week-long trails at full resolution, year-long leaderboards, \
             raw heatmaps, unbounded CSV exports and year-long character statistics.\n\n\
             | phase | frames sent/s | rows persisted | rows persisted/s | /health 200 | deepest queue | reader answers | reader mean ms |\n\
             |---|---:|---:|---:|---:|---:|---|---:|\n{}{}\n\
             Persisted rows/s dropped by {:.1}% with readers ({verdict}: target under 20%); \
             {} frames sent, {} rows stored, {} kills counted: {} lost. Readers are answered \
             400 when a query would read more than MAX_QUERY_ROWS, 503 (Retry-After) when \
             MAX_HEAVY_QUERIES are running.\n\n\
             {reproduce}\n",
            crate::report::today(),
            args.history_rows,
            args.plugins,
            args.plugins,
            args.rate,
            args.seconds,
            args.seconds,
            args.readers,
            row(&alone),
            row(&loaded),
            drop * 100.0,
            sent,
            rows,
            stored,
            lost,
        ),
    )?;
    Ok(())
}
