//! `dereth-bench move`: a guild outgrowing SQLite. Stores a stretch of a guild's history in a
//! fresh SQLite database (every character's telemetry every 2 s, a kill every frame and a spawn
//! every minute, written the way the tracker's writer writes them), then times `backup` of it and
//! `restore` of the archive into a PostgreSQL database, and checks the totals are equal.

use std::time::{Duration, Instant};

use serde::Serialize;

use dereth_tracker::backup;
use dereth_tracker::protocol::{PluginFrame, parse_plugin_frame};
use dereth_tracker::simulate;
use dereth_tracker::store::{Event, Store, StoreOptions};

use crate::cli::MoveArgs;
use crate::report::record;

#[derive(Debug, Serialize)]
struct Move {
    scenario: &'static str,
    characters: usize,
    hours: f64,
    telemetry_rows: i64,
    archive_bytes: u64,
    backup_secs: f64,
    restore_secs: f64,
    totals_equal: bool,
}

pub(crate) async fn run(args: MoveArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("dereth-move-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = measure(&args, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(args: &MoveArgs, dir: &std::path::Path) -> anyhow::Result<()> {
    let sqlite = format!("sqlite://{}", dir.join("guild.db").display());
    seed(&sqlite, args.characters, args.hours).await?;
    let archive = dir.join("guild.backup");

    let began = Instant::now();
    let taken = backup::backup(&sqlite, None, &archive).await?;
    let backup_secs = began.elapsed().as_secs_f64();
    let archive_bytes = std::fs::metadata(&archive)?.len();
    let began = Instant::now();
    let restored = backup::restore(&args.database_url, None, &archive, args.replace).await?;
    let restore_secs = began.elapsed().as_secs_f64();
    let summary = Move {
        scenario: "move",
        characters: args.characters,
        hours: args.hours,
        telemetry_rows: taken.rows["telemetry_events"],
        archive_bytes,
        backup_secs,
        restore_secs,
        totals_equal: restored == taken,
    };
    println!("{}", serde_json::to_string(&summary)?);
    anyhow::ensure!(
        summary.totals_equal,
        "restored {restored:?}, archived {taken:?}"
    );
    let rows = summary.telemetry_rows as f64;
    let per_day = 86_400.0 / 2.0 * args.characters as f64;
    record(
        &args.report,
        "move",
        &format!(
            "## Outgrowing SQLite (`dereth-bench move`)\n\n\
             Measured {} on this 2-core machine (PostgreSQL on it too): {} characters' history of \
             {:.1} h in a SQLite database (telemetry every 2 s with a kill each, a spawn a \
             minute: {} telemetry rows, written as the tracker writes them), `backup` of it, and \
             `restore` of the archive into an empty PostgreSQL database.\n\n\
             | telemetry rows | archive | backup | restore | totals |\n\
             |---:|---:|---:|---:|---|\n\
             | {} | {:.0} MiB ({:.0} B per telemetry row) | {:.1} s ({:.0} rows/s) | {:.1} s ({:.0} rows/s) | {} |\n\n\
             A day of {} characters is {:.1} M telemetry rows (less after thinning: \
             THIN_TELEMETRY_AFTER_HOURS keeps one row per 30 s after a day): at these rates its \
             backup takes about {:.0} min and its restore about {:.0} min, and the archive is \
             about {:.1} GiB (gzip it for storage).\n\n{}\n",
            crate::report::today(),
            args.characters,
            args.hours,
            summary.telemetry_rows,
            summary.telemetry_rows,
            archive_bytes as f64 / (1024.0 * 1024.0),
            archive_bytes as f64 / rows.max(1.0),
            backup_secs,
            rows / backup_secs.max(1e-9),
            restore_secs,
            rows / restore_secs.max(1e-9),
            if summary.totals_equal {
                "equal (rows per table, characters, kills, rares)"
            } else {
                "**differ**"
            },
            args.characters,
            per_day / 1e6,
            per_day / (rows / backup_secs.max(1e-9)) / 60.0,
            per_day / (rows / restore_secs.max(1e-9)) / 60.0,
            per_day * archive_bytes as f64 / rows.max(1.0) / (1024.0 * 1024.0 * 1024.0),
            crate::report::reproduce(&format!(
                "move --characters {} --hours {} --database-url postgres://USER:PASSWORD@127.0.0.1/EMPTY_DB",
                args.characters, args.hours
            )),
        ),
    )?;
    Ok(())
}

/// `hours` of history for `count` characters, ending now, written in batches.
async fn seed(url: &str, count: usize, hours: f64) -> anyhow::Result<()> {
    let store = Store::connect(url, &StoreOptions::default()).await?;
    let now = chrono::Utc::now();
    let start = now - chrono::Duration::seconds((hours * 3600.0) as i64);
    let mut characters: Vec<simulate::Character> =
        (0..count).map(|i| simulate::Character::new(i, 7)).collect();
    let mut batch = Vec::with_capacity(20_000);
    let mut t = start;
    let mut step = 0u64;
    let mut written = 0usize;
    while t < now {
        for c in &mut characters {
            let _ = c.step(Duration::from_secs(2), 5.0, t);
            let frame = c.telemetry_frame(t);
            if let Ok(PluginFrame::Telemetry(row)) = parse_plugin_frame(&frame.to_string()) {
                if step % 30 == 0 {
                    batch.push(Event::Spawn(dereth_tracker::protocol::Spawn {
                        character_name: row.character_name.clone(),
                        mob: "Drudge Robber".to_owned(),
                        timestamp: t,
                        ew: row.ew,
                        ns: row.ns,
                        z: row.z,
                        received_at: None,
                        clock_offset_ms: None,
                    }));
                }
                batch.push(Event::Telemetry {
                    kills_baseline: row.kills,
                    row,
                    kills_delta: 1,
                });
            }
        }
        if batch.len() >= 20_000 {
            written += batch.len();
            store
                .write_batch(&format!("move-{written}"), &batch)
                .await?;
            batch.clear();
        }
        t += chrono::Duration::seconds(2);
        step += 1;
    }
    written += batch.len();
    store.write_batch("move-last", &batch).await?;
    store.close().await;
    eprintln!("seeded {written} events ({hours} h of {count} characters)");
    Ok(())
}
