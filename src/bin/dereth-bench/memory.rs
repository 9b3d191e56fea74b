//! `dereth-bench memory`: the heap the live state holds per character, counted by the allocator
//! (not estimated from RSS, which the allocator's own caching blurs): per live character after
//! its first frame and after a minute of frames, per offline character kept (its totals and
//! last snapshot, so a returning character resumes its counts), and what is left once offline
//! characters are evicted. Runs the live state in this process, without a server.

use std::time::Duration;

use serde::Serialize;

use dereth_tracker::protocol::parse_plugin_frame;
use dereth_tracker::testing::{Applied, Live, apply_plugin_frame};

use crate::cli::MemoryArgs;
use crate::report::record;

/// Counts the bytes the whole process holds on the heap.
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

/// Bytes on the heap now.
fn heap() -> i64 {
    i64::try_from(ALLOCATOR.allocated()).unwrap_or(i64::MAX)
}

#[derive(Debug, Serialize)]
struct Memory {
    scenario: &'static str,
    characters: usize,
    frames_per_character: u64,
    bytes_per_live_character_first_frame: f64,
    bytes_per_live_character_after_frames: f64,
    bytes_per_offline_character: f64,
    bytes_per_character_after_eviction: f64,
}

/// A telemetry frame as the current plugin sends it, and its vitals.
fn frames(i: usize, k: u64, at: chrono::DateTime<chrono::Utc>) -> [String; 2] {
    let name = format!("Memory character {i:05}");
    let time = at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    [
        serde_json::json!({
            "type": "telemetry", "character_name": name, "char_tag": "Mosswart Guild",
            "session_id": format!("f2b6c4de-1a2b-4c3d-9e8f-{i:012}"), "timestamp": time,
            "ew": (i % 200) as f64 - 100.0 + k as f64 * 0.01, "ns": (i / 200 % 200) as f64 - 100.0,
            "z": 12.5, "kills": k, "kills_per_hour": "120", "onlinetime": "00.01:15:42",
            "deaths": "2", "total_deaths": "17", "rares_found": 0, "prismatic_taper_count": "431",
            "vt_state": "Combat", "mem_mb": 812.4, "cpu_pct": 4.5, "mem_handles": 1931,
            "latency_ms": 38,
        })
        .to_string(),
        serde_json::json!({
            "type": "vitals", "character_name": name, "timestamp": time,
            "health_percentage": 80.0, "stamina_percentage": 95.5, "mana_percentage": 60.0,
        })
        .to_string(),
    ]
}

fn apply_all(live: &Live, characters: usize, k: u64, at: chrono::DateTime<chrono::Utc>) {
    for i in 0..characters {
        for text in frames(i, k, at) {
            match parse_plugin_frame(&text) {
                Ok(frame) => {
                    let applied = apply_plugin_frame(live, frame);
                    debug_assert!(matches!(applied, Applied::Taken(_)), "{applied:?}");
                }
                Err(err) => tracing::warn!(%err, "bench frame refused"),
            }
        }
    }
}

pub(crate) async fn run(args: MemoryArgs) -> anyhow::Result<()> {
    let n = args.characters.max(1);
    // Nobody watches: the hub serializes nothing, as on a tracker without open maps.
    let live = Live::standalone(Duration::ZERO, 64);
    let start = chrono::Utc::now() - chrono::Duration::seconds(args.frames as i64 + 5);
    let empty = heap();
    apply_all(&live, n, 0, start);
    let first = heap();
    for k in 1..args.frames {
        apply_all(&live, n, k, start + chrono::Duration::seconds(k as i64));
    }
    let after = heap();
    // Silent longer than the (zero) live window: offline, kept.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let gone = live.reap(None);
    anyhow::ensure!(gone == n, "{gone} of {n} characters went offline");
    let offline = heap();
    // Evicted: gone from memory (their totals stay in the database).
    live.reap(Some(Duration::ZERO));
    let evicted = heap();
    drop(live);

    let per = |bytes: i64| (bytes - empty) as f64 / n as f64;
    let summary = Memory {
        scenario: "memory",
        characters: n,
        frames_per_character: args.frames,
        bytes_per_live_character_first_frame: per(first),
        bytes_per_live_character_after_frames: per(after),
        bytes_per_offline_character: per(offline),
        bytes_per_character_after_eviction: per(evicted),
    };
    println!("{}", serde_json::to_string(&summary)?);
    record(
        &args.report,
        "memory",
        &format!(
            "## Memory per character (`dereth-bench memory`)\n\n\
             Measured {} by counting the heap the process holds (a counting global allocator), \
             with the live state in the benchmark's own process and no map open. {n} characters \
             each send telemetry and vitals as the current plugin does ({} frames each, one a \
             second); then they fall silent (offline, kept in memory so a returning character \
             resumes its totals) and are evicted. Recent trails (`/trails` from memory) are \
             counted apart in the trails benchmark.\n\n\
             | live, first frame | live, after {} frames | offline, kept | after eviction |\n\
             |---:|---:|---:|---:|\n\
             | {:.0} B | {:.0} B | {:.0} B | {:.0} B |\n\n\
             Per character. {}\n",
            crate::report::today(),
            args.frames,
            args.frames,
            summary.bytes_per_live_character_first_frame,
            summary.bytes_per_live_character_after_frames,
            summary.bytes_per_offline_character,
            summary.bytes_per_character_after_eviction,
            crate::report::reproduce(&format!("memory --characters {n} --frames {}", args.frames)),
        ),
    )?;
    Ok(())
}
