//! `dereth-bench queries`: fills PostgreSQL with synthetic history (by default 10 million
//! telemetry rows for 1,000 characters and a million spawns) and times the query endpoints of a
//! tracker served on loopback.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use sqlx::postgres::PgPoolOptions;

use crate::cli::QueryBenchArgs;
use crate::report::{ms, quantile, record};
use dereth_tracker::Server;
use dereth_tracker::config::Settings;
use dereth_tracker::store::{Store, StoreOptions};

/// Rows generated per INSERT statement while filling.
const FILL_CHUNK: i64 = 500_000;

#[derive(Debug, Serialize)]
struct Timing {
    name: &'static str,
    path: String,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    json_bytes: usize,
    gzip_bytes: usize,
    target_p50_ms: Option<f64>,
    met: Option<bool>,
}

#[derive(Debug, Serialize)]
struct Summary {
    scenario: &'static str,
    telemetry_rows: i64,
    characters: i64,
    spawn_rows: i64,
    fill_secs: f64,
    timescaledb: bool,
    endpoints: Vec<Timing>,
}

/// Runs the benchmark and records its figures.
pub(crate) async fn run(args: QueryBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.database_url.starts_with("postgres"),
        "the query benchmark needs a PostgreSQL DATABASE_URL"
    );
    let store = Store::connect(&args.database_url, &StoreOptions::default())
        .await
        .context("connecting to the benchmark database")?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&args.database_url)
        .await?;

    let fill_started = Instant::now();
    let fresh: bool = sqlx::query_scalar(
        "SELECT coalesce(max(timestamp) > now() - interval '1 hour', false) FROM telemetry_events",
    )
    .fetch_one(&pool)
    .await?;
    let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM telemetry_events")
        .fetch_one(&pool)
        .await?;
    if args.reuse && fresh && existing >= args.rows {
        eprintln!("reusing {existing} telemetry rows");
    } else {
        fill(&pool, &args).await?;
    }
    let fill_secs = fill_started.elapsed().as_secs_f64();

    // Serve on loopback with the same store.
    let mut settings = Settings::defaults();
    settings.server.bind_addr = "127.0.0.1:0".parse()?;
    settings.database.database_url = args.database_url.clone().into();
    let listener = tokio::net::TcpListener::bind(settings.server.bind_addr).await?;
    let addr = listener.local_addr()?;
    let timescaledb = store.timescaledb();
    let server = Server::new(settings, store).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(listener, async move {
        let _ = stop_rx.await;
    }));

    let base = format!("http://{addr}");
    let day_ago = (chrono::Utc::now() - chrono::Duration::hours(24))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let middle = args.characters / 2 + 1;
    let hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let hour_ago_minus_10 = (chrono::Utc::now() - chrono::Duration::minutes(70))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let scenarios: Vec<(&'static str, String, Option<f64>)> = vec![
        (
            "history: one character, 24 h, one page (1000 rows)",
            format!("/history?character=Bench%20{middle:04}&from={day_ago}"),
            Some(100.0),
        ),
        (
            "spawn heatmap: 24 h, bin 2",
            "/spawns/heatmap?bin=2".to_owned(),
            Some(100.0),
        ),
        (
            "trails: every character, 600 s, step 5",
            "/trails?seconds=600&step=5".to_owned(),
            Some(300.0),
        ),
        (
            "trails: every character, 600 s, raw",
            "/trails?seconds=600".to_owned(),
            None,
        ),
        (
            "replay: world at T (1 h ago), every character",
            format!("/world?at={hour_ago}"),
            Some(100.0),
        ),
        (
            "replay: trails of the 10 min before T, step 5",
            format!("/trails?from={hour_ago_minus_10}&to={hour_ago}&step=5"),
            None,
        ),
    ];
    let client = reqwest::Client::builder().gzip(true).build()?;
    let raw = reqwest::Client::builder().no_gzip().build()?;
    let mut endpoints = Vec::new();
    for (name, path, target) in scenarios {
        let url = format!("{base}{path}");
        let gzip_bytes = raw
            .get(&url)
            .header("accept-encoding", "gzip")
            .send()
            .await?
            .bytes()
            .await?
            .len();
        let mut samples = Vec::with_capacity(args.iterations);
        let mut json_bytes = 0;
        for i in 0..args.iterations + 3 {
            let started = Instant::now();
            let resp = client.get(&url).send().await?;
            anyhow::ensure!(resp.status().is_success(), "{path}: HTTP {}", resp.status());
            let body = resp.bytes().await?;
            let elapsed = started.elapsed();
            json_bytes = body.len();
            if i >= 3 {
                samples.push(elapsed);
            }
        }
        let p50 = quantile(&mut samples, 0.5);
        let timing = Timing {
            name,
            path,
            p50_ms: ms(p50),
            p99_ms: ms(quantile(&mut samples, 0.99)),
            max_ms: ms(samples.iter().copied().max().unwrap_or_default()),
            json_bytes,
            gzip_bytes,
            target_p50_ms: target,
            met: target.map(|t| ms(p50) < t),
        };
        eprintln!(
            "{:<52} p50 {:>8.2} ms  p99 {:>8.2} ms  {:>9} B ({} B gzip)",
            timing.name, timing.p50_ms, timing.p99_ms, timing.json_bytes, timing.gzip_bytes
        );
        endpoints.push(timing);
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), serving).await;

    let summary = Summary {
        scenario: "queries",
        telemetry_rows: args.rows,
        characters: args.characters,
        spawn_rows: args.spawns,
        fill_secs,
        timescaledb,
        endpoints,
    };
    println!("{}", serde_json::to_string(&summary)?);
    record(&args.report, "queries", &report(&summary, &args))?;
    Ok(())
}

async fn fill(pool: &sqlx::PgPool, args: &QueryBenchArgs) -> anyhow::Result<()> {
    let chars = args.characters.max(1);
    let per_char = (args.rows / chars).max(1);
    eprintln!(
        "filling {} telemetry rows ({chars} characters x {per_char}) and {} spawns...",
        chars * per_char,
        args.spawns
    );
    sqlx::query(
        "TRUNCATE telemetry_events, spawn_events, rare_events, char_stats, rare_stats, \
         rare_stats_sessions, session_kills, characters, spawn_cells",
    )
    .execute(pool)
    .await?;
    // One row every 2 s per character, the newest now; positions wander around a home point.
    let step = (FILL_CHUNK / chars).max(1);
    let mut i0 = 1;
    while i0 <= per_char {
        let i1 = (i0 + step - 1).min(per_char);
        sqlx::query(
            "INSERT INTO telemetry_events (character_name, char_tag, session_id, timestamp, ew, ns, \
                 z, kills, kills_delta, kills_per_hour, onlinetime, deaths, total_deaths, \
                 rares_found, prismatic_taper_count, vt_state, mem_mb, cpu_pct) \
             SELECT 'Bench ' || lpad(c::text, 4, '0'), 'bench', 'bench-' || c, \
                    now() - make_interval(secs => ($3 - i) * 2), \
                    ((c * 37) % 180) - 90 + sin(i / 60.0 + c) * 3, \
                    ((c * 53) % 180) - 90 + cos(i / 45.0 + c) * 3, \
                    0, i / 10, CASE WHEN i % 10 = 0 THEN 1 ELSE 0 END, 100 + c % 400, \
                    '00.01:00:00', 0, c % 20, 0, 1000, 'Combat', 700, 3 \
             FROM generate_series(1, $4::int8) AS c, generate_series($1::int8, $2::int8) AS i",
        )
        .bind(i0)
        .bind(i1)
        .bind(per_char)
        .bind(chars)
        .execute(pool)
        .await?;
        eprintln!("  telemetry {}/{}", i1 * chars, per_char * chars);
        i0 = i1 + 1;
    }
    let mut s0 = 0;
    while s0 < args.spawns {
        let s1 = (s0 + FILL_CHUNK).min(args.spawns);
        sqlx::query(
            "INSERT INTO spawn_events (character_name, mob, timestamp, ew, ns, z) \
             SELECT 'Bench ' || lpad((s % $3 + 1)::text, 4, '0'), \
                    (ARRAY['Drudge Robber','Mosswart','Olthoi','Banderling','Tusker', \
                           'Mattekar','Shadow','Golem','Wisp','Zefir'])[s % 10 + 1], \
                    now() - make_interval(secs => s % 86400), \
                    ((s % $3) * 37 % 180) - 90 + (random() - 0.5) * 8, \
                    ((s % $3) * 53 % 180) - 90 + (random() - 0.5) * 8, 0 \
             FROM generate_series($1::int8, $2::int8 - 1) AS s",
        )
        .bind(s0)
        .bind(s1)
        .bind(chars)
        .execute(pool)
        .await?;
        s0 = s1;
    }
    // The hourly cell counts the writer keeps for every spawn it stores.
    sqlx::query(
        "INSERT INTO spawn_cells (hour, cx, cy, count) \
         SELECT date_trunc('hour', timestamp), floor(ew / 2.0)::int4, floor(ns / 2.0)::int4, \
                count(*) \
         FROM spawn_events GROUP BY 1, 2, 3",
    )
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO characters (character_name, char_tag, first_seen, last_seen, deaths, \
             total_deaths) \
         SELECT character_name, 'bench', min(timestamp), max(timestamp), 0, 0 \
         FROM telemetry_events GROUP BY character_name",
    )
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO char_stats (character_name, total_kills) \
         SELECT character_name, sum(kills_delta) FROM telemetry_events GROUP BY character_name",
    )
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(())
}

fn report(s: &Summary, args: &QueryBenchArgs) -> String {
    let mut out = format!(
        "## Query API (`dereth-bench queries`)\n\n\
         Measured {} on this 2-core machine, server and PostgreSQL sharing it \
         ({}). Data: {} telemetry rows for {} characters (one row every 2 s each, the newest \
         now) and {} spawns over 24 h; filled in {:.0} s. Each endpoint: 3 warm-up requests, \
         then {} timed requests, one at a time, over loopback with gzip; times are full \
         responses as the client sees them.\n\n\
         | request | p50 ms | p99 ms | max ms | JSON bytes | gzip bytes | target p50 |\n\
         |---|---:|---:|---:|---:|---:|---|\n",
        crate::report::today(),
        if s.timescaledb {
            "TimescaleDB"
        } else {
            "plain PostgreSQL 15, no TimescaleDB"
        },
        s.telemetry_rows,
        s.characters,
        s.spawn_rows,
        s.fill_secs,
        args.iterations,
    );
    for e in &s.endpoints {
        let target = match (e.target_p50_ms, e.met) {
            (Some(t), Some(true)) => format!("< {t} ms: met"),
            (Some(t), _) => format!("< {t} ms: **missed**"),
            _ => "-".to_owned(),
        };
        out.push_str(&format!(
            "| {} (`{}`) | {:.1} | {:.1} | {:.1} | {} | {} | {} |\n",
            e.name, e.path, e.p50_ms, e.p99_ms, e.max_ms, e.json_bytes, e.gzip_bytes, target
        ));
    }
    out.push_str(
        "\nReproduce (a PostgreSQL database you can empty):\n\n```sh\n\
         cargo build --release --features bench && ./target/release/dereth-bench queries --database-url postgres://USER:PASSWORD@127.0.0.1/dereth_bench\n\
         ```\n",
    );
    out
}
