//! `bench ui`: frame times of the map in headless Chromium with many moving characters, and the
//! README's screenshots (light and dark, desktop and phone width).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::browser::Chrome;
use super::record;
use super::server::{SECRET, ServerProcess};
use crate::config::UiBenchArgs;
use crate::simulate::{self, SimConfig, SimStats};

#[derive(Debug, Serialize)]
struct UiFigures {
    scenario: &'static str,
    characters: usize,
    seconds: u64,
    stats: serde_json::Value,
}

async fn with_characters(
    count: usize,
    speed: f64,
) -> anyhow::Result<(ServerProcess, CancellationToken, PathBuf)> {
    let db = std::env::temp_dir().join(format!("dereth-ui-{}-{count}.db", std::process::id()));
    let server = ServerProcess::start(&format!("sqlite://{}", db.display()), &[]).await?;
    let stop = CancellationToken::new();
    tokio::spawn(simulate::run(
        SimConfig {
            url: server.plugin_url(),
            secret: SECRET.to_owned(),
            characters: count,
            first_index: 0,
            interval: Duration::from_secs(2),
            speed,
            seed: 11,
        },
        stop.clone(),
        Arc::new(SimStats::default()),
    ));
    Ok((server, stop, db))
}

async fn finish(server: ServerProcess, stop: CancellationToken, db: PathBuf) -> anyhow::Result<()> {
    stop.cancel();
    server.stop().await?;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    Ok(())
}

/// Frame times while the replay clock runs at 60x over the stored history (looped over its
/// last 12 s, all the history a short benchmark has).
async fn replay_frames(chrome: &Chrome, seconds: u64) -> anyhow::Result<serde_json::Value> {
    chrome
        .js("window.__replayStart = Date.now() - 14000; \
             window.__dereth.replay.enter(new Date(window.__replayStart).toISOString());")
        .await?;
    chrome
        .wait_for(
            "return window.__dereth.replay.loadedAt() !== null \
             && window.__dereth.players().length > 0",
            Duration::from_secs(30),
        )
        .await?;
    chrome
        .js("let t = window.__replayStart; \
             window.__replayClock = setInterval(() => { \
               t = window.__replayStart + ((t - window.__replayStart + 250 * 60) % 12000); \
               window.__dereth.replay.seek(new Date(t).toISOString(), false); }, 250);")
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    chrome.js("window.__dereth.resetFrameStats()").await?;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let stats = chrome
        .js("clearInterval(window.__replayClock); return window.__dereth.frameStats()")
        .await?;
    Ok(stats)
}

pub async fn run(args: UiBenchArgs) -> anyhow::Result<()> {
    // Frame times with many moving characters.
    let (server, stop, db) = with_characters(args.characters, 5.0).await?;
    let chrome = Chrome::start(1280, 800).await?;
    chrome
        .client
        .goto(&format!("http://{}/?theme=dark", server.addr))
        .await?;
    chrome
        .wait_for(
            &format!(
                "return window.__dereth && window.__dereth.players().length >= {}",
                args.characters
            ),
            Duration::from_secs(60),
        )
        .await?;
    chrome
        .js("document.getElementById('trails-toggle').click()")
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    chrome.js("window.__dereth.resetFrameStats()").await?;
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let stats = chrome.js("return window.__dereth.frameStats()").await?;
    let replay = replay_frames(&chrome, args.seconds).await?;
    chrome.close().await;
    finish(server, stop, db).await?;
    let figures = UiFigures {
        scenario: "ui",
        characters: args.characters,
        seconds: args.seconds,
        stats,
    };
    println!("{}", serde_json::to_string(&figures)?);
    let s = &figures.stats;
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let verdict = if f(&s["draw"]["p99"]) < 16.0 {
        "met"
    } else {
        "**missed**"
    };
    record(
        &args.report,
        "ui",
        &format!(
            "## Map frame time (`dereth-tracker bench ui`)\n\n\
             Measured {} in headless Chromium (software rendering, `--disable-gpu`) at 1280x800 on \
             this 2-core machine, with the tracker and a simulator of {} characters (telemetry \
             every 2 s, moving) running beside it, trails on, every character on screen. \
             `draw` is the time to draw one frame of the map (markers, trails, grid, towns, \
             background); `interval` is the time between animation frames as the browser \
             scheduled them. {} s of frames.\n\n\
             | | frames | p50 | p95 | p99 | max |\n|---|---:|---:|---:|---:|---:|\n\
             | draw | {} | {:.1} ms | {:.1} ms | {:.1} ms ({verdict}, target < 16 ms) | {:.1} ms |\n\
             | interval | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |\n\n\
             Reproduce: `cargo run --release -- bench ui` (needs `chromium` and `chromium-driver`).\n",
            chrono::Utc::now().format("%Y-%m-%d"),
            args.characters,
            args.seconds,
            s["draw"]["frames"],
            f(&s["draw"]["p50"]),
            f(&s["draw"]["p95"]),
            f(&s["draw"]["p99"]),
            f(&s["draw"]["max"]),
            s["interval"]["frames"],
            f(&s["interval"]["p50"]),
            f(&s["interval"]["p95"]),
            f(&s["interval"]["p99"]),
            f(&s["interval"]["max"]),
        ),
    )?;

    let r = &replay;
    let replay_verdict = if f(&r["interval"]["frames"]) / args.seconds as f64 >= 50.0 {
        "met"
    } else {
        "**missed**"
    };
    println!(
        "{}",
        serde_json::json!({"scenario": "ui-replay", "stats": replay})
    );
    record(
        &args.report,
        "ui-replay",
        &format!(
            "## Map frame time during a replay at 60x (`dereth-tracker bench ui`)\n\n\
             Measured {} right after the section above, same page and data: the map in replay \
             mode with the {} characters of the stored history, the replay clock advancing \
             60 s of history per second of wall time (the page fetches `/world?at=` every \
             500 ms and glides the markers between answers; the stored history is only \
             seconds long, so the clock loops over its last 12 s). {} s of frames: {} frames, \
             {:.0} frames per second on average.\n\n\
             | | frames | p50 | p95 | p99 | max |\n|---|---:|---:|---:|---:|---:|\n\
             | draw | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |\n\
             | interval | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |\n\n\
             Target: above 50 frames per second on average ({replay_verdict}). The live map \
             in the section above, measured the same way, runs at about the same rate: the \
             browser shares two cores with the tracker and a simulator of every character.\n\n\
             Reproduce: `cargo run --release -- bench ui`.\n",
            chrono::Utc::now().format("%Y-%m-%d"),
            args.characters,
            args.seconds,
            r["interval"]["frames"],
            f(&r["interval"]["frames"]) / args.seconds as f64,
            r["draw"]["frames"],
            f(&r["draw"]["p50"]),
            f(&r["draw"]["p95"]),
            f(&r["draw"]["p99"]),
            f(&r["draw"]["max"]),
            r["interval"]["frames"],
            f(&r["interval"]["p50"]),
            f(&r["interval"]["p95"]),
            f(&r["interval"]["p99"]),
            f(&r["interval"]["max"]),
        ),
    )?;

    // Screenshots with a few dozen characters.
    let (server, stop, db) = with_characters(60, 20.0).await?;
    for (theme, width, height, name) in [
        ("light", 1280, 800, "map-light-desktop.png"),
        ("dark", 1280, 800, "map-dark-desktop.png"),
        ("light", 390, 844, "map-light-phone.png"),
        ("dark", 390, 844, "map-dark-phone.png"),
    ] {
        let chrome = Chrome::start(width, height).await?;
        chrome
            .client
            .goto(&format!("http://{}/?theme={theme}", server.addr))
            .await?;
        chrome
            .wait_for(
                "return window.__dereth && window.__dereth.players().length >= 60",
                Duration::from_secs(60),
            )
            .await?;
        chrome.js("document.getElementById('trails-toggle').click(); document.getElementById('spawn-heat').click();").await?;
        tokio::time::sleep(Duration::from_secs(4)).await;
        chrome.js("window.__dereth.select('Sim 0007')").await?;
        tokio::time::sleep(Duration::from_millis(800)).await;
        chrome.screenshot(&args.screenshots.join(name)).await?;
        chrome.close().await;
    }
    finish(server, stop, db).await?;
    eprintln!("screenshots written to {}", args.screenshots.display());
    Ok(())
}
