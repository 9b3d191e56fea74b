//! Upgrades keep data (issue 27): a database written by the first release of the tracker (the
//! first schema, commit 5138bef; `tests/fixtures/first-schema/make.sh` made it with that
//! release's own binary from a small guild's plugin frames, on each backend) opens under this
//! build: its migrations run (the PostgreSQL one with the first version of an amended
//! migration), every row and total is intact, the old rows read back through the API, and a
//! returning character's totals and session carry on. And released migrations never change.

use crate::common;

use std::str::FromStr;

use common::{Backend, TestApp, TestDb, telemetry, test_settings};
use serde_json::Value;
use sqlx::{ConnectOptions, Connection};

/// Row counts and totals, read with plain SQL (the same on both backends and both schemas).
async fn census(db: &TestDb) -> Value {
    const QUERIES: [&str; 8] = [
        "SELECT COUNT(*) FROM telemetry_events",
        "SELECT COUNT(*) FROM spawn_events",
        "SELECT COUNT(*) FROM rare_events",
        "SELECT COALESCE(SUM(total_kills), 0) FROM char_stats",
        "SELECT COALESCE(SUM(total_rares), 0) FROM rare_stats",
        "SELECT COUNT(*) FROM session_kills",
        "SELECT COALESCE(SUM(kills), 0) FROM telemetry_events",
        "SELECT COUNT(DISTINCT character_name) FROM telemetry_events",
    ];
    let mut out = serde_json::Map::new();
    match db.backend {
        Backend::Sqlite => {
            let mut conn = sqlx::sqlite::SqliteConnectOptions::from_str(&db.url)
                .expect("url")
                .connect()
                .await
                .expect("sqlite");
            for q in QUERIES {
                let n: i64 = sqlx::query_scalar(q).fetch_one(&mut conn).await.expect(q);
                out.insert(q.to_owned(), n.into());
            }
            let rows: Vec<(String, i64)> =
                sqlx::query_as("SELECT character_name, total_kills FROM char_stats ORDER BY 1")
                    .fetch_all(&mut conn)
                    .await
                    .expect("char_stats");
            out.insert("char_stats".into(), serde_json::json!(rows));
            conn.close().await.ok();
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url)
                .await
                .expect("postgres");
            for q in QUERIES {
                let n: i64 = sqlx::query_scalar(&format!("SELECT ({q})::bigint"))
                    .fetch_one(&mut conn)
                    .await
                    .expect(q);
                out.insert(q.to_owned(), n.into());
            }
            let rows: Vec<(String, i64)> =
                sqlx::query_as("SELECT character_name, total_kills FROM char_stats ORDER BY 1")
                    .fetch_all(&mut conn)
                    .await
                    .expect("char_stats");
            out.insert("char_stats".into(), serde_json::json!(rows));
            conn.close().await.ok();
        }
    }
    Value::Object(out)
}

/// Loads the first release's dump for `db`'s backend into it (an empty database).
async fn load_first_release(db: &TestDb) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/first-schema");
    match db.backend {
        Backend::Sqlite => {
            let dump = std::fs::read_to_string(format!("{dir}/sqlite.sql")).expect("sqlite dump");
            let mut conn = sqlx::sqlite::SqliteConnectOptions::from_str(&db.url)
                .expect("url")
                .create_if_missing(true)
                .connect()
                .await
                .expect("sqlite");
            sqlx::raw_sql(&dump)
                .execute(&mut conn)
                .await
                .expect("the dump loads");
            conn.close().await.ok();
        }
        Backend::Postgres => {
            let dump =
                std::fs::read_to_string(format!("{dir}/postgres.sql")).expect("postgres dump");
            // Its own connection: the dump empties the search path for the session it runs in.
            let mut conn = sqlx::PgConnection::connect(&db.url)
                .await
                .expect("postgres");
            sqlx::raw_sql(&dump)
                .execute(&mut conn)
                .await
                .expect("the dump loads");
            conn.close().await.ok();
        }
    }
}

async fn a_database_of_the_first_release_upgrades_with_every_row_and_total(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    load_first_release(&db).await;
    let before = census(&db).await;
    // What the first release stored, as make.sh fed it: three characters, 33 telemetry rows,
    // two spawns, one rare; 40 + 50 + 3 kills.
    assert_eq!(
        before["SELECT COUNT(*) FROM telemetry_events"], 33,
        "{before}"
    );
    assert_eq!(before["SELECT COUNT(*) FROM spawn_events"], 2, "{before}");
    assert_eq!(before["SELECT COUNT(*) FROM rare_events"], 1, "{before}");
    assert_eq!(
        before["SELECT COALESCE(SUM(total_kills), 0) FROM char_stats"], 93,
        "{before}"
    );

    let mut settings = test_settings(&db);
    // The fixture's frames are from 2026-11-27: a returning plugin's clock is trusted here.
    settings.sessions.clock_skew_secs = 0;
    // Nine days old: the default retention would prune the spawns and thin the telemetry
    // (by design, tested apart). Off here, so what is checked is what the upgrade does.
    settings.retention.retention_telemetry_days = 0;
    settings.retention.retention_spawns_days = 0;
    settings.retention.thin_telemetry_after_hours = 0;
    let app = TestApp::start(db, settings).await;
    let after = census(&app.db).await;
    assert_eq!(after, before, "every row and total intact");
    let counts = app.store.row_counts().await.expect("row counts");
    assert_eq!((counts.telemetry, counts.spawns, counts.rares), (33, 2, 1));

    // The old rows read back through this build's API, times and all.
    let (status, history) = app
        .get("/history?character=Olthoi%20Slayer&from=2026-11-27T09:00:00Z&to=2026-11-27T11:00:00Z&limit=100")
        .await;
    assert_eq!(status, 200, "{history}");
    let rows = history["data"].as_array().expect("rows");
    assert_eq!(rows.len(), 22, "{history}");
    assert!(
        rows.iter().all(|r| r["timestamp"]
            .as_str()
            .is_some_and(|t| t.starts_with("2026-11-27T10:0"))),
        "{history}"
    );
    let (status, rares) = app.get("/rares?from=2026-11-27T09:00:00Z").await;
    assert_eq!(status, 200, "{rares}");
    assert!(
        rares.to_string().contains("Pearl of Blood Drinking"),
        "{rares}"
    );

    // Olthoi Slayer comes back in the session the first release last saw (10 kills): two more
    // kills make 42, not 40 + 12. Mosswart Maker starts a new session: its 50 stay 50.
    let mut plugin = app.plugin().await;
    plugin
        .send_json(&telemetry("Olthoi Slayer", "s2", 12))
        .await;
    plugin
        .send_json(&telemetry("Mosswart Maker", "m2", 0))
        .await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, live) = app.get("/live").await;
        let total = |name: &str| {
            live["players"]
                .as_array()
                .and_then(|p| p.iter().find(|p| p["character_name"] == name))
                .and_then(|p| p["total_kills"].as_i64())
        };
        if total("Olthoi Slayer").is_some() && total("Mosswart Maker").is_some() {
            assert_eq!(total("Olthoi Slayer"), Some(42), "{live}");
            assert_eq!(total("Mosswart Maker"), Some(50), "{live}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{live}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

both_backends!(a_database_of_the_first_release_upgrades_with_every_row_and_total);

/// Migrations are append-only: one that databases have applied never changes (sqlx would refuse
/// to open them, as it refuses a database of the project's first two commits, whose core schema
/// was edited in place). A change goes in a new migration. These are the checksums (SHA-384, as
/// sqlx records them) of every migration released.
#[test]
fn released_migrations_never_change() {
    use sha2::{Digest, Sha384};
    const RELEASED: [(&str, &str); 16] = [
        (
            "migrations/postgres/20261127000001_core.sql",
            "d7b02c60819a55fcaedbb8a386754a2d396f9442bac2b3db3fc26c30ceb68ec68f5fee5e7b20ad22590aa465707354d7",
        ),
        (
            "migrations/postgres/20261127000002_timescaledb.sql",
            "26ed1b495ca54d60503bafbee488d5cc380a812b8dd82d5f0a8a51084cf48fbad6be24e1ddd1fc67e6b1fcc34c5dbd36",
        ),
        (
            "migrations/postgres/20261127000003_character_frames.sql",
            "7142e003c26fd4775da2e50f7663355a1e13282923c0fa72ac9523cfdceb78fdb1817fdfdb54402521ff1f7c154948e1",
        ),
        (
            "migrations/postgres/20261127000004_spawn_hypertable.sql",
            "85ed8a08be2e309cfc85a2b2450ceeaa182746285ab3a166d25cb409ed5bc043de19908666cab9917ef2922b1986ad4e",
        ),
        (
            "migrations/postgres/20261127000005_write_batches.sql",
            "d2278bac465616350412bce7f9f5bdf3d89c6f4b34f29e1b7e5a25760539fe2b455e3fec413e39355bc7d4d0c8900995",
        ),
        (
            "migrations/postgres/20261206000006_accounts_and_keys.sql",
            "d7fc162bf3de44b99f86387d3bb14793aa9be1c684fd3d78d549db452cb93f23413c4dd76949738240424262bc9697a5",
        ),
        (
            "migrations/postgres/20261206000007_spool_marks.sql",
            "78ca903ea43644277c0d05709598d58a6aa2b353f7665f88baa54ebec9c8ea83c09116af70a055520fade108c0fe4084",
        ),
        (
            "migrations/postgres/20261206000008_received_at.sql",
            "736ac8417b2707e48ddd4c34a182070eb67fd68fffa508c921f64291265a7772eccf39880bd06bed558dd74aad600af1",
        ),
        (
            "migrations/sqlite/20261127000001_core.sql",
            "73516b0ef9eab8c62467b99c5597660fe043baacc179c20e2b6798a786d5bf36a366037f472e3d6b80a98ef152bc55f8",
        ),
        (
            "migrations/sqlite/20261127000002_timescaledb.sql",
            "8a9c76318cdd50b1df7a06a1d5f3e8751bede3b1ca163cac22b5092089df93d54e423a225aa26ea875e3ecbde4dbd97f",
        ),
        (
            "migrations/sqlite/20261127000003_character_frames.sql",
            "4e871d48b513f724422f5946e111b219f203897e61a0afbaa34b0311d50f4ee12ac45b18aab594f67946096a1b38de06",
        ),
        (
            "migrations/sqlite/20261127000004_spawn_hypertable.sql",
            "5f18910386af2bd765e0b83bf3796b741b22291b5b7bf719dcf9519f218d278cc8b9e8a152baed3e6f32b72a3bef6d00",
        ),
        (
            "migrations/sqlite/20261127000005_write_batches.sql",
            "c66e6929336716f80678fc67d7812cacebd5072a73214cdcb53ba5de8f03b5fba3112b9ab1e5eaf71307e4f9efab8699",
        ),
        (
            "migrations/sqlite/20261206000006_accounts_and_keys.sql",
            "c6c3af9d467367dae635c1cae426c6dff038a88f3e582088af6c0afc69e20b6de6ee2922d8ceb97d8e80a2bc0dcc3e17",
        ),
        (
            "migrations/sqlite/20261206000007_spool_marks.sql",
            "78ca903ea43644277c0d05709598d58a6aa2b353f7665f88baa54ebec9c8ea83c09116af70a055520fade108c0fe4084",
        ),
        (
            "migrations/sqlite/20261206000008_received_at.sql",
            "eb1640b17078f0fb012c0928fadd6b336f424227670084a46203eb6c6d928e80069b3a8fc2ac6e44acf602b612dc5771",
        ),
    ];
    let root = env!("CARGO_MANIFEST_DIR");
    for (file, released) in RELEASED {
        let text = std::fs::read(format!("{root}/{file}"))
            .unwrap_or_else(|e| panic!("{file}: a released migration is gone ({e})"));
        let now: String = Sha384::digest(&text)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            now, released,
            "{file} changed after release: databases that applied it would no longer open; \
             put the change in a new migration"
        );
    }
    // Every migration on disk is either released (listed above) or newer than all of them.
    let newest = RELEASED
        .iter()
        .filter_map(|(f, _)| f.rsplit('/').next()?.split('_').next()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    for dir in ["migrations/postgres", "migrations/sqlite"] {
        for entry in std::fs::read_dir(format!("{root}/{dir}")).expect("migrations") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            let path = format!("{dir}/{name}");
            let version: u64 = name
                .split('_')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            assert!(
                RELEASED.iter().any(|(f, _)| *f == path) || version > newest,
                "{path} is older than released migrations but not among them"
            );
        }
    }
}
