//! `dereth-bench ui`: frame times of the map in headless Chromium with many moving characters, and the
//! README's screenshots (light and dark, desktop and phone width).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::chrome::Chrome;
use crate::cli::UiBenchArgs;
use crate::report::record;
use crate::server::{SECRET, ServerProcess};
use dereth_tracker::simulate::{self, SimConfig, SimStats};

#[derive(Debug, Serialize)]
struct UiFigures {
    scenario: &'static str,
    characters: usize,
    seconds: u64,
    stats: serde_json::Value,
}

/// A tracker on a fresh SQLite file holding `history_minutes` of stored telemetry, and a
/// simulator of `count` characters sending to it.
async fn with_characters(
    count: usize,
    speed: f64,
    history_minutes: i64,
) -> anyhow::Result<(ServerProcess, CancellationToken, PathBuf)> {
    let db = std::env::temp_dir().join(format!("dereth-ui-{}-{count}.db", std::process::id()));
    if history_minutes > 0 {
        seed_history(
            &format!("sqlite://{}", db.display()),
            count,
            history_minutes,
        )
        .await?;
    }
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

/// Minutes of stored history the replay benchmark plays through: 60x for up to 300 s of
/// frames needs five hours; the replay starts `REPLAY_LEAD` after the history's start so
/// trails are full from the first frame.
const REPLAY_LEAD: chrono::Duration = chrono::Duration::minutes(10);

/// Writes `minutes` of telemetry (a point every 2 s) for `count` simulated characters, ending
/// now, straight into the store at `database_url` (the server is not running yet).
async fn seed_history(database_url: &str, count: usize, minutes: i64) -> anyhow::Result<()> {
    let store = dereth_tracker::store::Store::connect(
        database_url,
        &dereth_tracker::store::StoreOptions::default(),
    )
    .await?;
    let now = chrono::Utc::now();
    let start = now - chrono::Duration::minutes(minutes);
    let mut characters: Vec<simulate::Character> = (0..count)
        .map(|i| simulate::Character::new(i, 11))
        .collect();
    let mut batch = Vec::with_capacity(20_000);
    let mut t = start;
    let mut written = 0usize;
    while t < now {
        for c in &mut characters {
            // Portals and other frames of the step are not stored as telemetry; the position
            // after it is.
            let _ = c.step(Duration::from_secs(2), 5.0, t);
            let frame = c.telemetry_frame(t);
            if let Ok(dereth_tracker::protocol::PluginFrame::Telemetry(row)) =
                dereth_tracker::protocol::parse_plugin_frame(&frame.to_string())
            {
                batch.push(dereth_tracker::store::Event::Telemetry {
                    kills_baseline: row.kills,
                    row,
                    kills_delta: 0,
                });
            }
        }
        if batch.len() >= 20_000 {
            written += batch.len();
            store
                .write_batch(&format!("seed-{written}"), &batch)
                .await?;
            batch.clear();
        }
        t += chrono::Duration::seconds(2);
    }
    written += batch.len();
    store.write_batch("seed-last", &batch).await?;
    store.close().await;
    eprintln!("seeded {written} telemetry rows ({minutes} minutes of {count} characters)");
    Ok(())
}

/// Frame times while the replay plays forward at 60x through the stored history (the page's
/// own playback clock, with trails on).
async fn replay_frames(
    chrome: &Chrome,
    history_start: chrono::DateTime<chrono::Utc>,
    seconds: u64,
) -> anyhow::Result<serde_json::Value> {
    let start = (history_start + REPLAY_LEAD).to_rfc3339();
    chrome
        .js(&format!(
            "window.__dereth.replay.enter('{start}'); \
             document.getElementById('replay-speed').value = '60'; \
             document.getElementById('replay-play').click();"
        ))
        .await?;
    chrome
        .wait_for(
            "return window.__dereth.replay.loadedAt() !== null \
             && window.__dereth.players().length > 0",
            Duration::from_secs(30),
        )
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    chrome.js("window.__dereth.resetFrameStats()").await?;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let stats = chrome
        .js("const s = window.__dereth.frameStats(); \
             s.replayedTo = window.__dereth.replay.loadedAt(); \
             s.active = window.__dereth.replay.active(); \
             window.__dereth.replay.leave(); return s")
        .await?;
    Ok(stats)
}

/// Frame times of the live map with trails off (the map's default), every character on screen.
async fn without_trails(args: &UiBenchArgs) -> anyhow::Result<()> {
    let (server, stop, db) = with_characters(args.characters, 5.0, 0).await?;
    let chrome = open_map(server.addr, (1280, 800), "dark", args.characters).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    chrome.js("window.__dereth.resetFrameStats()").await?;
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let stats = chrome
        .js("const s = window.__dereth.frameStats(); s.markers = window.__dereth.markerStats(); return s")
        .await?;
    chrome.close().await;
    finish(server, stop, db).await?;
    let figures = UiFigures {
        scenario: "ui-no-trails",
        characters: args.characters,
        seconds: args.seconds,
        stats,
    };
    println!("{}", serde_json::to_string(&figures)?);
    let s = &figures.stats;
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let verdict = crate::report::verdict(f(&s["draw"]["p95"]) < 16.0);
    let reproduce =
        crate::report::reproduce(&format!("ui --characters {} --no-trails", args.characters));
    record(
        &args.report,
        "ui-no-trails",
        &format!(
            "## Map frame time, trails off (`dereth-bench ui --no-trails`)\n\n\
             Measured {} in headless Chromium (software rendering, `--disable-gpu`) at 1280x800 on \
             this 2-core machine, with the tracker and a simulator of {} characters (telemetry \
             every 2 s, moving) running beside it, trails off (the map's default), the whole \
             map in view (zoomed out: characters sharing a spot draw as one badge with their \
             count). `draw` is the time to draw one frame; `interval` the time between \
             animation frames. {} s of frames. Markers at the end: {}.\n\n\
             {}\n\
             Target: draw p95 under 16 ms.\n\n\
             {reproduce} (needs `chromium` and `chromium-driver`).\n",
            crate::report::today(),
            args.characters,
            args.seconds,
            s["markers"],
            frame_table(s, ""),
        )
        .replace("| draw |", &format!("| draw ({verdict} at p95) |")),
    )?;
    Ok(())
}

pub(crate) async fn run(args: UiBenchArgs) -> anyhow::Result<()> {
    if args.no_trails {
        return without_trails(&args).await;
    }
    if args.only_screenshots {
        return screenshots(&args).await;
    }
    // Frame times with many moving characters.
    // History for the replay: 60x for the measured seconds, after a lead for full trails.
    let history_minutes = REPLAY_LEAD.num_minutes() + 2 * args.seconds as i64 + 5;
    let history_start = chrono::Utc::now() - chrono::Duration::minutes(history_minutes);
    let (server, stop, db) = with_characters(args.characters, 5.0, history_minutes).await?;
    let chrome = open_map(server.addr, (1280, 800), "dark", args.characters).await?;
    chrome
        .js("document.getElementById('trails-toggle').click()")
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    chrome.js("window.__dereth.resetFrameStats()").await?;
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let stats = chrome.js("return window.__dereth.frameStats()").await?;
    let replay = replay_frames(&chrome, history_start, args.seconds).await?;
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
    let verdict = crate::report::verdict(f(&s["draw"]["p99"]) < 16.0);
    let reproduce = crate::report::reproduce("ui");
    record(
        &args.report,
        "ui",
        &format!(
            "## Map frame time (`dereth-bench ui`)\n\n\
             Measured {} in headless Chromium (software rendering, `--disable-gpu`) at 1280x800 on \
             this 2-core machine, with the tracker and a simulator of {} characters (telemetry \
             every 2 s, moving) running beside it, trails on, every character on screen. The tracker starts with \
             {history_minutes} minutes of stored telemetry, so every trail is a full 10 \
             minutes long, as on a server that has been running (each trail draws at most its \
             newest 30 points with 1,000 characters shown, points closer than 2 px merged). \
             `draw` is the time to draw one frame of the map (markers, trails, grid, towns, \
             background); `interval` is the time between animation frames as the browser \
             scheduled them. {} s of frames.\n\n\
             {}\n\
             {reproduce} (needs `chromium` and `chromium-driver`).\n",
            crate::report::today(),
            args.characters,
            args.seconds,
            frame_table(s, &format!(" ({verdict}, target < 16 ms)")),
        ),
    )?;

    let r = &replay;
    let replay_verdict =
        crate::report::verdict(f(&r["interval"]["frames"]) / args.seconds as f64 >= 50.0);
    println!(
        "{}",
        serde_json::json!({"scenario": "ui-replay", "stats": replay})
    );
    let reproduce = crate::report::reproduce("ui");
    record(
        &args.report,
        "ui-replay",
        &format!(
            "## Map frame time during a replay at 60x (`dereth-bench ui`)\n\n\
             Measured {} right after the section above, same page: before the tracker starts, \
             the benchmark stores {history_minutes} minutes of telemetry of the {} simulated \
             characters (a point every 2 s); the map then replays it with its own *Play* \
             button at 60x from 10 minutes into that history, trails on (each `/world?at=` \
             request every 500 ms of wall time, and trails fetched for the stretch since the \
             previous request), while the simulator keeps every character live. {} s of \
             frames: {} frames, {:.0} frames per second on average.\n\n\
             {}\n\
             Target: above 50 frames per second on average ({replay_verdict}). The live map \
             in the section above, measured the same way, runs at about the same rate: the \
             browser shares two cores with the tracker and a simulator of every character.\n\n\
             {reproduce}.\n",
            crate::report::today(),
            args.characters,
            args.seconds,
            r["interval"]["frames"],
            f(&r["interval"]["frames"]) / args.seconds as f64,
            frame_table(r, ""),
        ),
    )?;

    screenshots(&args).await
}

/// The README's screenshots with a few dozen characters: the map, the fleet board and the event
/// log, each in both themes at desktop and phone width.
async fn screenshots(args: &UiBenchArgs) -> anyhow::Result<()> {
    let (server, stop, db) = with_characters(60, 20.0, 0).await?;
    for (theme, width, height, name) in [
        ("light", 1280, 800, "map-light-desktop.png"),
        ("dark", 1280, 800, "map-dark-desktop.png"),
        ("light", 390, 844, "map-light-phone.png"),
        ("dark", 390, 844, "map-dark-phone.png"),
    ] {
        let chrome = open_map(server.addr, (width, height), theme, 60).await?;
        chrome.js("document.getElementById('trails-toggle').click(); document.getElementById('spawn-heat').click();").await?;
        tokio::time::sleep(Duration::from_secs(4)).await;
        chrome.js("window.__dereth.select('Sim 0007')").await?;
        tokio::time::sleep(Duration::from_millis(800)).await;
        chrome.screenshot(&args.screenshots.join(name)).await?;
        chrome.close().await;
    }
    // The fleet board and the event log: dialogs on a desktop, tabs of the sheet on a phone.
    for panel in ["fleet", "events"] {
        for (theme, width, height, size) in [
            ("light", 1280, 800, "desktop"),
            ("dark", 1280, 800, "desktop"),
            ("light", 390, 844, "phone"),
            ("dark", 390, 844, "phone"),
        ] {
            let chrome = open_map(server.addr, (width, height), theme, 60).await?;
            chrome.js("window.__dereth.select('Sim 0007')").await?;
            chrome
                .js(&format!(
                    "document.getElementById('{panel}-open').click(); \
                     if (document.getElementById('sheet').dataset.size !== 'peek') \
                       document.getElementById('sheet').dataset.size = 'full';"
                ))
                .await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let name = format!("{panel}-{theme}-{size}.png");
            chrome.screenshot(&args.screenshots.join(name)).await?;
            chrome.close().await;
        }
    }
    finish(server, stop, db).await?;
    eprintln!("screenshots written to {}", args.screenshots.display());
    Ok(())
}

/// The Markdown table of frame times (`draw` and `interval` rows) in `stats`; `p99_note` follows
/// the draw p99.
fn frame_table(stats: &serde_json::Value, p99_note: &str) -> String {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let row = |name: &str, note: &str| {
        let s = &stats[name];
        format!(
            "| {name} | {} | {:.1} ms | {:.1} ms | {:.1} ms{note} | {:.1} ms |\n",
            s["frames"],
            f(&s["p50"]),
            f(&s["p95"]),
            f(&s["p99"]),
            f(&s["max"])
        )
    };
    format!(
        "| | frames | p50 | p95 | p99 | max |\n|---|---:|---:|---:|---:|---:|\n{}{}",
        row("draw", p99_note),
        row("interval", "")
    )
}

/// Headless Chromium of `size` showing the map of the tracker at `addr` in `theme`, once it lists
/// at least `characters` characters.
async fn open_map(
    addr: std::net::SocketAddr,
    (width, height): (u32, u32),
    theme: &str,
    characters: usize,
) -> anyhow::Result<Chrome> {
    let chrome = Chrome::start(width, height).await?;
    chrome
        .client
        .goto(&format!("http://{addr}/?theme={theme}"))
        .await?;
    let ready =
        format!("return window.__dereth && window.__dereth.players().length >= {characters}");
    // Ten thousand new characters take a while to log in on SQLite (each is bound to the
    // plugin key and its totals looked up once).
    let wait = Duration::from_secs(60 + characters as u64 / 50);
    chrome.wait_for(&ready, wait).await?;
    Ok(chrome)
}
