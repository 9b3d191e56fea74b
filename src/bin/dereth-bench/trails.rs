//! `dereth-bench trails`: `/trails` for the live window answered from memory. Fills the tracker's
//! recent-trails memory with `--characters` characters reporting every 2 s for `--seconds`, then
//! times what the handler does for `/trails?seconds=<seconds>` (with and without `step`): pick
//! the points, thin them, mark teleports, and serialize the JSON body.
//!
//! This runs in process: the memory only answers windows the tracker has been up for, so an
//! end-to-end run of a 600 s window would first have to wait ten minutes.

use std::time::{Duration, Instant};

use dereth_tracker::protocol::{PluginFrame, parse_plugin_frame};
use dereth_tracker::store::{TrailPoint, TrailQuery};
use dereth_tracker::testing::RecentTrails;
use serde::Serialize;

use crate::cli::TrailsArgs;
use crate::report::{ms, quantile, record};

#[derive(Serialize)]
struct Body<'a> {
    trails: &'a [TrailPoint],
}

#[derive(Debug, Serialize)]
struct Case {
    step: Option<i64>,
    points: usize,
    body_mib: f64,
    /// Selecting and thinning only, before serialization.
    select_p50_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
}

pub(crate) async fn run(args: TrailsArgs) -> anyhow::Result<()> {
    let recent = RecentTrails::new(args.seconds + 60);
    let now = chrono::Utc::now();
    let per_character = i64::try_from(args.seconds / 2)?;
    for c in 0..args.characters {
        for i in 0..per_character {
            let at = now - chrono::Duration::seconds(2 * (per_character - i));
            let text = format!(
                "{{\"type\":\"telemetry\",\"character_name\":\"Trail {c:04}\",\"session_id\":\"t{c}\",\
                 \"timestamp\":\"{}\",\"ew\":{},\"ns\":{},\"z\":1,\"kills\":{i},\"deaths\":0,\
                 \"rares_found\":0}}",
                at.to_rfc3339(),
                (c % 200) as f64 - 100.0 + i as f64 * 0.01,
                (c / 200) as f64 - 50.0 + i as f64 * 0.01,
            );
            if let Ok(PluginFrame::Telemetry(t)) = parse_plugin_frame(&text) {
                recent.record(&t);
            }
        }
    }
    let mut cases = Vec::new();
    for step in [Some(5), None] {
        let query = TrailQuery {
            since: chrono::Utc::now() - chrono::Duration::seconds(i64::try_from(args.seconds)?),
            until: None,
            character: None,
            step,
            limit: 250_000,
        };
        let mut samples: Vec<Duration> = Vec::new();
        let mut selecting: Vec<Duration> = Vec::new();
        let mut points = 0;
        let mut bytes = 0;
        for _ in 0..args.iterations + 3 {
            let started = Instant::now();
            let trails = recent.trails(&query);
            selecting.push(started.elapsed());
            let body = serde_json::to_vec(&Body { trails: &trails })?;
            samples.push(started.elapsed());
            points = trails.len();
            bytes = body.len();
        }
        let mut timed = samples.split_off(3);
        let mut selected = selecting.split_off(3);
        cases.push(Case {
            step,
            points,
            body_mib: bytes as f64 / (1024.0 * 1024.0),
            select_p50_ms: ms(quantile(&mut selected, 0.5)),
            p50_ms: ms(quantile(&mut timed, 0.5)),
            p99_ms: ms(quantile(&mut timed, 0.99)),
        });
    }
    println!("{}", serde_json::to_string(&cases)?);
    let rows: String = cases
        .iter()
        .map(|c| {
            format!(
                "| {} | {} | {:.1} MiB | {:.1} ms | {:.1} ms | {:.1} ms |\n",
                c.step.map_or("none".to_owned(), |s| format!("{s} s")),
                c.points,
                c.body_mib,
                c.select_p50_ms,
                c.p50_ms,
                c.p99_ms
            )
        })
        .collect();
    // The target is set for the map's request: ten minutes of trails thinned to 5 s.
    let met = cases
        .iter()
        .filter(|c| c.step == Some(5))
        .all(|c| c.p50_ms < 50.0);
    let reproduce = crate::report::reproduce("trails");
    record(
        &args.report,
        "trails-memory",
        &format!(
            "## Recent trails from memory (`dereth-bench trails`)\n\n\
             Measured {} on this 2-core machine: {} characters with a position every 2 s for {} s \
             in the tracker's recent-trails memory (TRAIL_MEMORY_SECS), and the work of \
             `/trails?seconds={}` (with `step=5` and without): selecting, thinning, marking \
             teleports and serializing the JSON body, {} timed runs each after 3 warm-ups, in \
             process (the HTTP layer adds the transfer). The database answer for the same window \
             is in the Query API section above.\n\n\
             | step | points | JSON | select and thin p50 | with JSON p50 | p99 |\n|---|---:|---:|---:|---:|---:|\n{rows}\n\
             Target: p50 under 50 ms with `step=5` ({}); without a step the answer is the 250,000-point \
             cap, twice the JSON.\n\n{reproduce}\n",
            crate::report::today(),
            args.characters,
            args.seconds,
            args.seconds,
            args.iterations,
            crate::report::verdict(met),
        ),
    )?;
    Ok(())
}
