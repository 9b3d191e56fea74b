//! Backups that restore (issue 27): `dereth-tracker backup` while plugins stream gives one
//! consistent snapshot, which restores into an empty database of the other backend with every
//! row and total equal; a damaged or cut-short archive changes nothing; a database holding data
//! is refused unless told to replace it.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{Backend, TestApp, TestDb};
use dereth_tracker::backup::{self, BackupError, Summary};
use serde_json::Value;

/// Sum of a column of one table in an archive, read from the file itself.
fn archived_sum(archive: &Path, table: &str, column: &str) -> i64 {
    let text = std::fs::read_to_string(archive).expect("archive");
    let mut index = None;
    let mut sum = 0;
    for line in text.lines() {
        if line.starts_with('{') {
            let v: Value = serde_json::from_str(line).expect("json");
            index = (v["table"] == table).then(|| {
                v["columns"]
                    .as_array()
                    .and_then(|c| c.iter().position(|c| c == column))
                    .expect("column")
            });
        } else if let Some(i) = index {
            let row: Vec<Value> = serde_json::from_str(line).expect("row");
            sum += row[i].as_i64().unwrap_or(0);
        }
    }
    sum
}

fn other(backend: Backend) -> Backend {
    match backend {
        Backend::Sqlite => Backend::Postgres,
        Backend::Postgres => Backend::Sqlite,
    }
}

/// A hundred characters stream (ten plugin connections of ten); the backup is taken while they
/// do. Its totals agree with its own rows (a snapshot, not a smear of moments), and it restores
/// into the other backend with every row and total equal.
async fn a_backup_taken_while_plugins_stream_restores_into_the_other_backend(source: Backend) {
    let Some(app) = TestApp::spawn(source).await else {
        return;
    };
    let Some(target) = TestDb::create(other(source)).await else {
        return;
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let mut plugins = Vec::new();
    for p in 0..10 {
        let mut plugin = app.plugin().await;
        let stop = stop.clone();
        plugins.push(tokio::spawn(async move {
            let mut kills = 0;
            while !stop.is_cancelled() {
                kills += 1;
                for c in 0..10 {
                    let name = format!("Streamer {p}-{c}");
                    plugin
                        .send_json(&common::telemetry(&name, "s1", kills))
                        .await;
                    if kills % 5 == 0 {
                        plugin
                            .send_json(&common::spawn_frame(&name, "Drudge"))
                            .await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    app.wait_for_rows(1_000, 0, 0).await;
    let dir = tempfile::tempdir().expect("dir");
    let archive = dir.path().join("guild.backup");
    let taken = backup::backup(&app.db.url, None, &archive)
        .await
        .expect("a backup while plugins stream");
    // It was taken mid-stream: more rows arrive after it.
    app.wait_for_rows(taken.rows["telemetry_events"] + 500, 0, 0)
        .await;
    stop.cancel();
    for p in plugins {
        p.await.expect("plugin");
    }
    assert!(taken.rows["telemetry_events"] >= 1_000, "{taken:?}");
    assert_eq!(taken.characters, 100, "{taken:?}");
    // One snapshot: the kill totals are the sum of the per-frame kills in the same archive.
    assert_eq!(
        taken.total_kills,
        archived_sum(&archive, "telemetry_events", "kills_delta"),
        "totals and rows from one moment"
    );
    assert_eq!(backup::verify(&archive).expect("verifies"), taken);

    let restored = backup::restore(&target.url, None, &archive, false)
        .await
        .expect("restores into the other backend");
    assert_eq!(restored, taken, "every row and total equal");
    // The restored database serves: a tracker on it lists the characters and their totals.
    let mut settings = common::test_settings(&target);
    settings.retention.thin_telemetry_after_hours = 0;
    let restored_app = TestApp::start(target, settings).await;
    let counts = restored_app.store.row_counts().await.expect("counts");
    assert_eq!(counts.telemetry, taken.rows["telemetry_events"]);
    assert_eq!(counts.spawns, taken.rows["spawn_events"]);
    let (status, history) = restored_app
        .get("/history?character=Streamer%200-0&limit=5")
        .await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(
        history["data"].as_array().map(Vec::len),
        Some(5),
        "{history}"
    );
}

both_backends!(a_backup_taken_while_plugins_stream_restores_into_the_other_backend);

/// What a restore refuses, and that it then changes nothing; the commands as the README gives
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_archive_or_a_database_holding_data_is_refused_and_nothing_changes() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let mut plugin = app.plugin().await;
    for k in 1..=20 {
        plugin
            .send_json(&common::telemetry("Keeper", "s1", k))
            .await;
    }
    app.wait_for_rows(20, 0, 0).await;
    let dir = tempfile::tempdir().expect("dir");
    let archive = dir.path().join("a.backup");
    // The command line, as the README has it.
    let out = std::process::Command::new(crate::process::BIN)
        .args(["backup", "--to"])
        .arg(&archive)
        .env("DATABASE_URL", &app.db.url)
        .output()
        .expect("backup runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("telemetry_events") && printed.contains("20 rows"),
        "{printed}"
    );
    let good = backup::verify(&archive).expect("verifies");

    let empty = || async { TestDb::create(Backend::Sqlite).await.expect("sqlite") };
    let assert_untouched = |db: &TestDb| {
        let url = db.url.clone();
        async move {
            let store = dereth_tracker::store::Store::connect(
                &url,
                &dereth_tracker::store::StoreOptions::default(),
            )
            .await
            .expect("opens");
            let counts = store.row_counts().await.expect("counts");
            assert_eq!(counts.telemetry, 0, "nothing was written");
        }
    };

    // One byte changed: refused before anything is written.
    let text = std::fs::read_to_string(&archive).expect("read");
    let tampered = dir.path().join("tampered.backup");
    std::fs::write(&tampered, text.replacen("\"Keeper\"", "\"Keepor\"", 1)).expect("write");
    let target = empty().await;
    let err = backup::restore(&target.url, None, &tampered, false)
        .await
        .expect_err("a changed archive");
    assert!(matches!(err, BackupError::Damaged(_)), "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");
    assert_untouched(&target).await;
    // Cut short (a copy that did not finish).
    let cut = dir.path().join("cut.backup");
    std::fs::write(&cut, &text[..text.len() / 2]).expect("write");
    let err = backup::restore(&target.url, None, &cut, false)
        .await
        .expect_err("a cut archive");
    assert!(matches!(err, BackupError::Damaged(_)), "{err}");
    assert_untouched(&target).await;
    // Not a backup at all.
    let foreign = dir.path().join("foreign.backup");
    std::fs::write(&foreign, "{\"hello\":1}\n").expect("write");
    assert!(matches!(
        backup::restore(&target.url, None, &foreign, false).await,
        Err(BackupError::Damaged(_))
    ));

    // Into a database holding data: refused, untouched; with --replace, replaced.
    let err = backup::restore(&app.db.url, None, &archive, false)
        .await
        .expect_err("a database with data");
    assert!(matches!(err, BackupError::NotEmpty(_)), "{err}");
    let out = std::process::Command::new(crate::process::BIN)
        .args(["restore", "--replace", "--from"])
        .arg(&archive)
        .env("DATABASE_URL", &target.url)
        .output()
        .expect("restore runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored: Summary = backup::verify(&archive).expect("still good");
    assert_eq!(restored, good);
    let store = dereth_tracker::store::Store::connect(
        &target.url,
        &dereth_tracker::store::StoreOptions::default(),
    )
    .await
    .expect("opens");
    assert_eq!(store.row_counts().await.expect("counts").telemetry, 20);
}

/// A table a later migration adds is never silently missing from backups: every table of the
/// schema is archived or deliberately left out.
async fn every_table_is_archived_or_deliberately_left_out(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let sql = match backend {
        Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        }
        Backend::Postgres => {
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        }
    };
    let tables: Vec<String> = match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.db.url)
                .await
                .expect("sqlite");
            sqlx::query_scalar(sql)
                .fetch_all(&pool)
                .await
                .expect("tables")
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.db.url).await.expect("postgres");
            sqlx::query_scalar(sql)
                .fetch_all(&pool)
                .await
                .expect("tables")
        }
    };
    assert!(tables.len() > 10, "{tables:?}");
    for table in &tables {
        assert!(
            backup::TABLES.contains(&table.as_str()) || backup::LEFT_OUT.contains(&table.as_str()),
            "table {table} is neither backed up nor listed as left out (src/ops/backup.rs)"
        );
    }
}

both_backends!(every_table_is_archived_or_deliberately_left_out);

/// A backup that fails part way (a database without the tracker's tables) leaves no file that
/// could pass for one.
#[tokio::test]
async fn a_failed_backup_leaves_no_file() {
    let dir = tempfile::tempdir().expect("dir");
    let to = dir.path().join("never.backup");
    let empty = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("empty.db").display()
    );
    let err = backup::backup(&empty, None, &to)
        .await
        .expect_err("no tables to read");
    assert!(matches!(err, BackupError::Database(_)), "{err}");
    assert!(!to.exists() && !to.with_extension("partial").exists());
}

/// A metric's value in a `/metrics` scrape of `app`.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = reqwest::get(app.url("/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in the scrape:\n{text}"))
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// BACKUP_DIR, BACKUP_EVERY, BACKUP_KEEP: the running tracker writes archives that verify and
/// hold what it stored, keeps the newest BACKUP_KEEP of its own, removes a backup an earlier run
/// cut short, and leaves every other file alone.
async fn scheduled_backups_are_written_kept_and_pruned(backend: Backend) {
    let dir = tempfile::tempdir().expect("dir");
    let old = [
        "dereth-20260101T000000Z.backup",
        "dereth-20260102T000000Z.backup",
    ];
    for name in old {
        std::fs::write(dir.path().join(name), b"an older archive").expect("write");
    }
    std::fs::write(dir.path().join("notes.txt"), b"the operator's").expect("write");
    std::fs::write(
        dir.path().join("dereth-20260103T000000Z.partial"),
        b"cut short",
    )
    .expect("write");
    let backups = dir.path().to_owned();
    let Some(mut app) = TestApp::spawn_with(backend, |s| {
        s.backups.backup_dir = Some(backups);
        // Below the 10 s the setting accepts, to keep the test short.
        s.backups.backup_every = dereth_tracker::config::Every(Duration::from_secs(2));
        s.backups.backup_keep = 2;
    })
    .await
    else {
        return;
    };
    let mut plugin = app.plugin().await;
    for i in 0..20 {
        plugin
            .send_json(&common::telemetry(&format!("Saved {}", i % 2), "s1", i / 2))
            .await;
    }
    app.wait_for_rows(20, 0, 0).await;
    // Two backups after the rows are in push both older archives out.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while old.iter().any(|name| dir.path().join(name).exists()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "old archives never pruned: {:?}",
            names_in(dir.path())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(metric(&app, "dereth_backup_interval_seconds").await, 2.0);
    assert_eq!(metric(&app, "dereth_backup_failures_total").await, 0.0);
    let last = metric(&app, "dereth_backup_last_success_timestamp_seconds").await;
    let now = chrono::Utc::now().timestamp() as f64;
    assert!((now - last).abs() < 30.0, "last success {last}, now {now}");
    assert!(metric(&app, "dereth_backup_last_bytes").await > 0.0);
    app.shutdown().await;

    let names = names_in(dir.path());
    let archives: Vec<&String> = names.iter().filter(|n| n.ends_with(".backup")).collect();
    assert_eq!(archives.len(), 2, "{names:?}");
    assert!(names.contains(&"notes.txt".to_owned()), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with(".partial")), "{names:?}");
    for name in archives {
        let summary = backup::verify(&dir.path().join(name)).expect("a whole archive");
        assert_eq!(summary.rows["telemetry_events"], 20, "{name}");
        assert_eq!(summary.characters, 2, "{name}");
    }
}

both_backends!(scheduled_backups_are_written_kept_and_pruned);

/// A backup directory that cannot be used is a counted, logged failure; the tracker carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_directory_that_cannot_be_written_is_a_counted_failure() {
    let dir = tempfile::tempdir().expect("dir");
    let not_a_dir = dir.path().join("a-file");
    std::fs::write(&not_a_dir, b"x").expect("write");
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.backups.backup_dir = Some(not_a_dir.clone());
        s.backups.backup_every = dereth_tracker::config::Every(Duration::from_secs(1));
    })
    .await
    else {
        return;
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while metric(&app, "dereth_backup_failures_total").await < 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "no failure counted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        metric(&app, "dereth_backup_last_success_timestamp_seconds").await,
        0.0
    );
    let (status, _) = app.get("/health").await;
    assert_eq!(status, 200, "backups do not make the tracker unhealthy");
    let mut plugin = app.plugin().await;
    plugin
        .send_json(&common::telemetry("Still Here", "s1", 1))
        .await;
    app.wait_for_rows(1, 0, 0).await;
    assert_eq!(std::fs::read(&not_a_dir).expect("file"), b"x");
}
