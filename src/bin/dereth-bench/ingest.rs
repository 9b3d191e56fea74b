//! `dereth-bench ingest` (plugins sending as fast as they can into a tracker on PostgreSQL) and
//! `dereth-bench ceiling` (the same rows loaded straight into PostgreSQL with COPY), run back to back so
//! the ingest rate can be read as a fraction of what the database itself takes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::SinkExt;
use serde::Serialize;
use sqlx::PgPool;
use sqlx::postgres::PgPoolCopyExt;
use tokio_tungstenite::tungstenite::Message;

use crate::cli::{CeilingArgs, IngestArgs};
use crate::report::record;
use crate::server::{ServerProcess, connect_plugin};
use dereth_tracker::store::{Store, StoreOptions};

const TABLES: &str = "telemetry_events, spawn_events, rare_events, char_stats, rare_stats, \
    rare_stats_sessions, session_kills, characters, spawn_cells";

#[derive(Debug, Serialize)]
struct Ceiling {
    scenario: &'static str,
    rows: i64,
    secs: f64,
    rows_per_sec: f64,
}

#[derive(Debug, Serialize)]
struct Ingest {
    scenario: &'static str,
    plugins: usize,
    send_secs: f64,
    frames_sent: u64,
    frames_sent_per_sec: f64,
    rows_persisted: i64,
    rows_persisted_per_sec: f64,
    catch_up_secs: f64,
    rows_lost: i64,
    kills_sent: i64,
    kills_in_char_stats: i64,
    kills_match: bool,
    copy_ceiling_rows_per_sec: f64,
    fraction_of_ceiling: f64,
    server_cpu_cores: f64,
    server_rss_mib: f64,
}

async fn prepare(database_url: &str) -> anyhow::Result<PgPool> {
    anyhow::ensure!(
        database_url.starts_with("postgres"),
        "this benchmark needs a PostgreSQL database URL"
    );
    // Connecting through the store applies the migrations.
    Store::connect(database_url, &StoreOptions::default())
        .await
        .context("connecting to the benchmark database")?
        .close()
        .await;
    let pool = PgPool::connect(database_url).await?;
    sqlx::query(&format!("TRUNCATE {TABLES}"))
        .execute(&pool)
        .await?;
    Ok(pool)
}

/// COPYs `rows` telemetry rows shaped like the plugin's into `telemetry_events`, then empties it.
async fn measure_ceiling(pool: &PgPool, rows: i64) -> anyhow::Result<Ceiling> {
    let mut csv = String::with_capacity(rows as usize * 160);
    let now = chrono::Utc::now();
    for i in 0..rows {
        let ts = (now + chrono::Duration::microseconds(i)).to_rfc3339();
        csv.push_str(&format!(
            "Load {:04},bench,load-{},{ts},{},{},12.5,{},1,120,00.01:00:00,0,7,0,33,Combat,700,3.5,1800,40\n",
            i % 16,
            i % 16,
            (i % 200) as f64 / 10.0,
            -((i % 300) as f64) / 10.0,
            i / 16,
        ));
    }
    let started = Instant::now();
    let mut copy = pool
        .copy_in_raw(
            "COPY telemetry_events (character_name, char_tag, session_id, timestamp, ew, ns, z, \
             kills, kills_delta, kills_per_hour, onlinetime, deaths, total_deaths, rares_found, \
             prismatic_taper_count, vt_state, mem_mb, cpu_pct, mem_handles, latency_ms) \
             FROM STDIN (FORMAT csv)",
        )
        .await?;
    for chunk in csv.as_bytes().chunks(1 << 20) {
        copy.send(chunk).await?;
    }
    let copied = copy.finish().await?;
    let secs = started.elapsed().as_secs_f64();
    sqlx::query(&format!("TRUNCATE {TABLES}"))
        .execute(pool)
        .await?;
    Ok(Ceiling {
        scenario: "ceiling",
        rows: copied as i64,
        secs,
        rows_per_sec: copied as f64 / secs,
    })
}

/// `dereth-bench ceiling`.
pub(crate) async fn ceiling(args: CeilingArgs) -> anyhow::Result<()> {
    let pool = prepare(&args.database_url).await?;
    let c = measure_ceiling(&pool, args.rows).await?;
    println!("{}", serde_json::to_string(&c)?);
    let reproduce = crate::report::reproduce(
        "ceiling --database-url postgres://USER:PASSWORD@127.0.0.1/dereth_bench",
    );
    record(
        &args.report,
        "ceiling",
        &format!(
            "## COPY ceiling (`dereth-bench ceiling`)\n\n\
             Measured {}: {} telemetry rows shaped like the plugin's loaded into the indexed \
             `telemetry_events` table with one `COPY ... FROM STDIN (FORMAT csv)`, PostgreSQL \
             alone on the machine.\n\n\
             | rows | seconds | rows/s |\n|---:|---:|---:|\n| {} | {:.2} | {:.0} |\n\n\
             {reproduce}\n",
            crate::report::today(),
            c.rows,
            c.rows,
            c.secs,
            c.rows_per_sec,
        ),
    )?;
    Ok(())
}

/// `dereth-bench ingest`: the ceiling first, then the tracker.
pub(crate) async fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    let pool = prepare(&args.database_url).await?;
    let ceiling = measure_ceiling(&pool, args.ceiling_rows).await?;
    eprintln!("COPY ceiling: {:.0} rows/s", ceiling.rows_per_sec);

    let server = ServerProcess::start(&args.database_url, &[]).await?;
    let before = server.sample()?;
    let sent = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..args.plugins {
        let url = server.plugin_url();
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            let mut ws = connect_plugin(&url).await?;
            let mut kills: i64 = 0;
            // The frame is built from a fixed head and tail around the changing fields, and the
            // timestamp is refreshed every 64 frames: the generator shares the CPU with the
            // server and the database, so it should spend as little as it can.
            let head = format!(
                "{{\"type\":\"telemetry\",\"character_name\":\"Load {p:04}\",\"char_tag\":\"bench\",\
                 \"session_id\":\"load-{p}\",\"timestamp\":\""
            );
            let tail = "\"z\":12.5,\"kills_per_hour\":\"120\",\"onlinetime\":\"00.01:00:00\",\
                 \"deaths\":\"0\",\"total_deaths\":\"7\",\"rares_found\":0,\
                 \"prismatic_taper_count\":\"33\",\"vt_state\":\"Combat\",\"mem_mb\":700,\
                 \"cpu_pct\":3.5,\"mem_handles\":1800,\"latency_ms\":40}";
            let mut stamp = chrono::Utc::now().to_rfc3339();
            while Instant::now() < deadline {
                kills += 1;
                if kills % 64 == 0 {
                    stamp = chrono::Utc::now().to_rfc3339();
                }
                let frame = format!(
                    "{head}{stamp}\",\"ew\":\"{}\",\"ns\":{},\"kills\":{kills},{tail}",
                    (kills % 200) as f64 / 10.0,
                    -((kills % 300) as f64) / 10.0,
                );
                // Queue frames and flush every 32, as a busy client's socket would coalesce them.
                ws.feed(Message::text(frame)).await?;
                if kills % 32 == 0 {
                    ws.flush().await?;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            ws.flush().await?;
            ws.close(None).await?;
            anyhow::Ok(kills)
        }));
    }
    let mut kills_sent = 0;
    for t in tasks {
        kills_sent += t.await??;
    }
    let send_secs = started.elapsed().as_secs_f64();
    let frames_sent = sent.load(Ordering::Relaxed);

    // Wait for the database to hold every frame (bounded).
    let catch_up_deadline = Instant::now() + Duration::from_secs(300);
    let mut persisted: i64;
    loop {
        persisted = sqlx::query_scalar("SELECT count(*) FROM telemetry_events")
            .fetch_one(&pool)
            .await?;
        if persisted as u64 >= frames_sent || Instant::now() > catch_up_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let catch_up_secs = started.elapsed().as_secs_f64();
    let after = server.sample()?;
    let kills_in_db: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(total_kills), 0)::int8 FROM char_stats")
            .fetch_one(&pool)
            .await?;
    server.stop().await?;

    let rows_per_sec = persisted as f64 / catch_up_secs;
    let summary = Ingest {
        scenario: "ingest",
        plugins: args.plugins,
        send_secs,
        frames_sent,
        frames_sent_per_sec: frames_sent as f64 / send_secs,
        rows_persisted: persisted,
        rows_persisted_per_sec: rows_per_sec,
        catch_up_secs,
        rows_lost: frames_sent as i64 - persisted,
        kills_sent,
        kills_in_char_stats: kills_in_db,
        kills_match: kills_sent == kills_in_db,
        copy_ceiling_rows_per_sec: ceiling.rows_per_sec,
        fraction_of_ceiling: rows_per_sec / ceiling.rows_per_sec,
        server_cpu_cores: (after.cpu_secs - before.cpu_secs) / catch_up_secs,
        server_rss_mib: after.rss_bytes as f64 / (1024.0 * 1024.0),
    };
    println!("{}", serde_json::to_string(&summary)?);
    let verdict =
        crate::report::verdict(summary.fraction_of_ceiling >= 0.5 && summary.rows_lost == 0);
    let reproduce = crate::report::reproduce(
        "ingest --database-url postgres://USER:PASSWORD@127.0.0.1/dereth_bench",
    );
    record(
        &args.report,
        "ingest",
        &format!(
            "## Ingest (`dereth-bench ingest`)\n\n\
             Measured {} with the server, the load generator and PostgreSQL 15 sharing this \
             2-core machine. {} plugins each sent telemetry frames as fast as the server read \
             them for {} s, then the benchmark waited until every frame was in \
             `telemetry_events`. The COPY ceiling is {} rows of the same shape loaded with \
             `COPY ... FROM STDIN` into the same indexed table in the same run.\n\n\
             | frames sent/s | rows persisted/s | COPY ceiling rows/s | fraction of ceiling | rows lost | kills in char_stats = sum of deltas | server CPU (cores) | server RSS |\n\
             |---:|---:|---:|---:|---:|---|---:|---:|\n\
             | {:.0} | {:.0} | {:.0} | {:.0}% ({verdict}, target 50%) | {} | {} ({} = {}) | {:.2} | {:.0} MiB |\n\n\
             {reproduce}\n",
            crate::report::today(),
            summary.plugins,
            args.seconds,
            ceiling.rows,
            summary.frames_sent_per_sec,
            summary.rows_persisted_per_sec,
            summary.copy_ceiling_rows_per_sec,
            summary.fraction_of_ceiling * 100.0,
            summary.rows_lost,
            if summary.kills_match { "yes" } else { "**no**" },
            summary.kills_in_char_stats,
            summary.kills_sent,
            summary.server_cpu_cores,
            summary.server_rss_mib,
        ),
    )?;
    Ok(())
}
