//! `dereth-bench crowd`: many live characters at once. How long the first frames of N new
//! characters take to be live, server memory per live character, and how long a new map takes
//! to get the whole crowd (the snapshot in its parts), with the largest message it received.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

use crate::cli::CrowdArgs;
use crate::report::{ms, quantile, record};
use crate::server::{ServerProcess, connect_plugin};

/// Characters one plugin connection speaks for (the server's per-connection limit).
const NAMES_PER_CONNECTION: usize = 64;

#[derive(Debug, Serialize)]
struct Crowd {
    scenario: &'static str,
    characters: usize,
    live: u64,
    first_frames_secs: f64,
    new_characters_per_sec: f64,
    rss_before_mib: f64,
    rss_after_mib: f64,
    bytes_per_live_character: f64,
    maps: usize,
    snapshot_p50_ms: f64,
    snapshot_max_ms: f64,
    snapshot_parts: usize,
    snapshot_bytes: usize,
    largest_message_bytes: usize,
}

pub(crate) async fn run(args: CrowdArgs) -> anyhow::Result<()> {
    let (url, temp_db) = crate::report::database_url(args.database_url.as_deref(), "crowd");
    let server = ServerProcess::start(&url, &[]).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = server.sample()?;
    let debug_url = format!("http://{}/debug", server.addr);

    // Every character's first frame, 64 characters per connection, connections in parallel.
    let began = Instant::now();
    let mut plugins = Vec::new();
    for chunk in 0..args.characters.div_ceil(NAMES_PER_CONNECTION) {
        let url = server.plugin_url();
        let first = chunk * NAMES_PER_CONNECTION;
        let last = (first + NAMES_PER_CONNECTION).min(args.characters);
        plugins.push(tokio::spawn(async move {
            let mut ws = connect_plugin(&url).await?;
            for i in first..last {
                let frame = serde_json::json!({
                    "type": "telemetry", "character_name": format!("Crowd {i:05}"),
                    "char_tag": "Bench", "session_id": "s1",
                    "ew": (i % 200) as f64 - 100.0, "ns": (i / 200 % 200) as f64 - 100.0, "z": 0,
                    "kills": 0, "deaths": 0, "rares_found": 0, "kills_per_hour": 0,
                    "onlinetime": "00.00:10:00", "vt_state": "Combat",
                });
                ws.send(Message::text(frame.to_string())).await?;
            }
            anyhow::Ok(ws)
        }));
    }
    let mut held = Vec::new();
    for p in plugins {
        held.push(p.await??);
    }
    let mut live = 0;
    for _ in 0..6_000 {
        let debug: serde_json::Value = reqwest::get(&debug_url).await?.json().await?;
        live = debug["live_characters"].as_u64().unwrap_or(0);
        if live as usize >= args.characters {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first_frames = began.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.sample()?;

    // New maps, one after another: connect, and every part of the snapshot.
    let mut times = Vec::new();
    let (mut parts, mut bytes, mut largest) = (0, 0, 0);
    for _ in 0..args.maps {
        let started = Instant::now();
        let (mut ws, _) = tokio_tungstenite::connect_async(server.browser_url()).await?;
        let (mut got, mut size) = (0, 0);
        loop {
            let Some(msg) = ws.next().await else {
                anyhow::bail!("the map was closed before its snapshot was whole");
            };
            let Message::Text(text) = msg? else { continue };
            largest = largest.max(text.len());
            size += text.len();
            got += 1;
            let frame: serde_json::Value = serde_json::from_str(text.as_str())?;
            if frame["type"] == "snapshot"
                && frame["part"].as_u64().unwrap_or(1) == frame["parts"].as_u64().unwrap_or(1)
            {
                break;
            }
        }
        times.push(started.elapsed());
        (parts, bytes) = (got, size);
        let _ = ws.close(None).await;
    }
    drop(held);
    server.stop().await?;
    if args.database_url.is_none() {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", temp_db.display()));
        }
    }
    let summary = Crowd {
        scenario: "crowd",
        characters: args.characters,
        live,
        first_frames_secs: first_frames.as_secs_f64(),
        new_characters_per_sec: args.characters as f64 / first_frames.as_secs_f64().max(1e-9),
        rss_before_mib: before.rss_bytes as f64 / 1048576.0,
        rss_after_mib: after.rss_bytes as f64 / 1048576.0,
        bytes_per_live_character: after.rss_bytes.saturating_sub(before.rss_bytes) as f64
            / args.characters.max(1) as f64,
        maps: args.maps,
        snapshot_p50_ms: ms(quantile(&mut times, 0.5)),
        snapshot_max_ms: ms(quantile(&mut times, 1.0)),
        snapshot_parts: parts,
        snapshot_bytes: bytes,
        largest_message_bytes: largest,
    };
    println!("{}", serde_json::to_string(&summary)?);
    let met = summary.snapshot_max_ms < 2_000.0;
    record(
        &args.report,
        "crowd",
        &format!(
            "## A crowd of live characters (`dereth-bench crowd`)\n\n\
             Measured {}: {} characters each sent a first telemetry frame (64 per plugin \
             connection, connections in parallel) to one server on {}; then {} new maps \
             connected one after another and read the whole snapshot.\n\n\
             | live | first frames of all | new characters/s | RSS before / after | per live character | snapshot to a new map p50 / max | parts, bytes | largest message |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|\n\
             | {} | {:.1} s | {:.0} | {:.1} / {:.1} MiB | {:.1} KiB | {:.0} / {:.0} ms ({}, target < 2 s) | {}, {:.1} MiB | {:.0} KiB (bound 256 KiB) |\n\n\
             {}\n",
            crate::report::today(),
            args.characters,
            if args.database_url.is_some() {
                "the given database"
            } else {
                "SQLite"
            },
            args.maps,
            summary.live,
            summary.first_frames_secs,
            summary.new_characters_per_sec,
            summary.rss_before_mib,
            summary.rss_after_mib,
            summary.bytes_per_live_character / 1024.0,
            summary.snapshot_p50_ms,
            summary.snapshot_max_ms,
            crate::report::verdict(met),
            summary.snapshot_parts,
            summary.snapshot_bytes as f64 / 1048576.0,
            summary.largest_message_bytes as f64 / 1024.0,
            crate::report::reproduce("crowd --characters 10000"),
        ),
    )?;
    Ok(())
}
