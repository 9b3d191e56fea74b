//! PostgreSQL (and TimescaleDB) storage: batched writes through `UNNEST` arrays, one transaction
//! per batch.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Row};

use super::{
    CharacterStats, CounterUpdates, Event, RowCounts, SessionStats, StoreError, StoreOptions,
};
use crate::protocol::{Spawn, Telemetry};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Migrations amended after release, with the checksum of their first version: a database that
/// applied the first version is recorded as having applied the amended one (each amendment has
/// the same effect wherever the first version succeeded).
const AMENDED_MIGRATIONS: [(i64, &str); 1] = [(
    20261127000002,
    "94304384307d3d452f3aa4bcee1b2f08c4bf2a217d28dce5c250ac63b2a4260e98dcf93a4174c7625acb26dfea08a125",
)];

async fn accept_amended_migrations(pool: &PgPool) -> Result<(), StoreError> {
    let applied: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !applied {
        return Ok(());
    }
    for (version, old_checksum) in AMENDED_MIGRATIONS {
        let Some(current) = MIGRATOR.iter().find(|m| m.version == version) else {
            continue;
        };
        let old = hex_bytes(old_checksum);
        let updated = sqlx::query(
            "UPDATE _sqlx_migrations SET checksum = $1 WHERE version = $2 AND checksum = $3",
        )
        .bind(current.checksum.as_ref())
        .bind(version)
        .bind(old)
        .execute(pool)
        .await?
        .rows_affected();
        if updated > 0 {
            tracing::info!(
                version,
                "recorded the amended version of an applied migration"
            );
        }
    }
    Ok(())
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// A PostgreSQL-backed store.
#[derive(Debug, Clone)]
pub struct PgStore {
    /// The writer's and maintenance's connections.
    pub(super) pool: PgPool,
    /// Query connections, with a statement timeout.
    pub(super) reads: PgPool,
    timescaledb: Arc<AtomicBool>,
    /// The `kills_hourly` continuous aggregate exists (TimescaleDB policies applied).
    hourly_aggregate: Arc<AtomicBool>,
}

impl PgStore {
    /// Connects, applies migrations and reports whether TimescaleDB is in use.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let mut connect = PgConnectOptions::from_str(url)
            .map_err(|err| StoreError::BadUrl {
                url: super::redact_url(url),
                reason: err.to_string(),
            })?
            .log_slow_statements(
                tracing::log::LevelFilter::Warn,
                std::time::Duration::from_secs(1),
            );
        if let Some(password) = &options.password {
            connect = connect.password(password.expose());
        }
        let pool = PgPoolOptions::new()
            .max_connections(super::WRITE_CONNECTIONS)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await?;
        accept_amended_migrations(&pool).await?;
        MIGRATOR.run(&pool).await?;
        let timeout_ms = options
            .read_statement_timeout
            .as_millis()
            .max(1)
            .to_string();
        let reads = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect.options([("statement_timeout", timeout_ms.as_str())]));
        let store = Self {
            pool,
            reads,
            timescaledb: Arc::new(AtomicBool::new(false)),
            hourly_aggregate: Arc::new(AtomicBool::new(false)),
        };
        store.detect_timescaledb().await?;
        Ok(store)
    }

    async fn detect_timescaledb(&self) -> Result<(), StoreError> {
        let version: Option<String> =
            sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
                .fetch_optional(&self.pool)
                .await?;
        let hypertable = match &version {
            Some(_) => sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables \
                 WHERE hypertable_name = 'telemetry_events')",
            )
            .fetch_one(&self.pool)
            .await
            .unwrap_or(false),
            None => false,
        };
        match (&version, hypertable) {
            (Some(v), true) => tracing::info!(
                timescaledb = %v,
                "TimescaleDB {v} enabled: telemetry_events is a hypertable"
            ),
            (Some(v), false) => tracing::warn!(
                timescaledb = %v,
                "TimescaleDB {v} is installed but telemetry_events is not a hypertable; \
                 running as plain PostgreSQL"
            ),
            (None, _) => tracing::info!(
                "TimescaleDB extension not available: running on plain PostgreSQL \
                 (telemetry_events is an ordinary indexed table)"
            ),
        }
        self.timescaledb.store(hypertable, Ordering::Relaxed);
        Ok(())
    }

    /// Deletes expired rows in batches of [`super::PRUNE_BATCH`]. Rows are picked by their key
    /// `(id, timestamp)`: a `ctid` names a row only within one chunk of a hypertable.
    pub async fn prune(
        &self,
        table: super::Retained,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let t = table.table();
        let sql = format!(
            "DELETE FROM {t} WHERE (id, timestamp) IN \
             (SELECT id, timestamp FROM {t} WHERE timestamp < $1 LIMIT {})",
            super::PRUNE_BATCH
        );
        let mut total = 0;
        loop {
            let n = sqlx::query(&sql)
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected();
            total += n;
            if n < super::PRUNE_BATCH as u64 {
                break;
            }
        }
        if table == super::Retained::Spawns {
            sqlx::query("DELETE FROM spawn_cells WHERE hour < $1")
                .bind(super::hour_of(before))
                .execute(&self.pool)
                .await?;
        }
        Ok(total)
    }

    pub async fn prune_batch_keys(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM write_batches WHERE written_at < $1")
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    /// Keeps one telemetry row per character per `step_secs` in [from, to): the first of each
    /// step, which takes over the kills of the rows removed (so kill sums stay exact).
    pub async fn thin_telemetry(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_secs: i64,
    ) -> Result<u64, StoreError> {
        let removed = sqlx::query(
            "WITH ranked AS ( \
                 SELECT id, timestamp, \
                        row_number() OVER w AS rn, \
                        sum(kills_delta) OVER (PARTITION BY character_name, b) AS total \
                 FROM (SELECT id, timestamp, character_name, kills_delta, \
                              floor(extract(epoch FROM timestamp) / $3) AS b \
                       FROM telemetry_events WHERE timestamp >= $1 AND timestamp < $2) s \
                 WINDOW w AS (PARTITION BY character_name, b ORDER BY timestamp, id) \
             ), kept AS ( \
                 UPDATE telemetry_events t SET kills_delta = r.total FROM ranked r \
                 WHERE r.rn = 1 AND t.id = r.id AND t.timestamp = r.timestamp \
                   AND t.kills_delta <> r.total \
             ) \
             DELETE FROM telemetry_events t USING ranked r \
             WHERE r.rn > 1 AND t.id = r.id AND t.timestamp = r.timestamp",
        )
        .bind(from)
        .bind(to)
        .bind(step_secs as f64)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(removed)
    }

    /// Chunk intervals, compression, retention and the hourly-kills continuous aggregate on
    /// TimescaleDB; safe to run at every start (existing policies are replaced with the
    /// configured ones; a new chunk interval applies to chunks created from now on).
    pub async fn apply_timescale_policies(
        &self,
        policies: &super::TimescalePolicies,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let days = |d: u32| i32::try_from(d).unwrap_or(i32::MAX);
        let hours = |h: u32| i32::try_from(h.max(1)).unwrap_or(i32::MAX);
        for (table, chunk_hours, retention_days) in [
            (
                "telemetry_events",
                policies.telemetry_chunk_hours,
                policies.telemetry_retention_days,
            ),
            (
                "spawn_events",
                policies.spawn_chunk_hours,
                policies.spawn_retention_days,
            ),
        ] {
            sqlx::query(&format!(
                "SELECT set_chunk_time_interval('{table}', make_interval(hours => $1))"
            ))
            .bind(hours(chunk_hours))
            .execute(&mut *conn)
            .await?;
            sqlx::query(&format!(
                "SELECT remove_retention_policy('{table}', if_exists => true)"
            ))
            .execute(&mut *conn)
            .await?;
            if retention_days > 0 {
                sqlx::query(&format!(
                    "SELECT add_retention_policy('{table}', make_interval(days => $1), \
                     if_not_exists => true)"
                ))
                .bind(days(retention_days))
                .execute(&mut *conn)
                .await?;
            }
        }
        sqlx::query("SELECT remove_compression_policy('telemetry_events', if_exists => true)")
            .execute(&mut *conn)
            .await?;
        if policies.compress_after_days > 0 {
            // `id` belongs to the unique key, so it goes into the order too (TimescaleDB asks
            // for it with a notice otherwise).
            sqlx::query(
                "ALTER TABLE telemetry_events SET (timescaledb.compress, \
                 timescaledb.compress_segmentby = 'character_name', \
                 timescaledb.compress_orderby = 'timestamp DESC, id DESC')",
            )
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "SELECT add_compression_policy('telemetry_events', \
                 make_interval(days => $1), if_not_exists => true)",
            )
            .bind(days(policies.compress_after_days))
            .execute(&mut *conn)
            .await?;
        }
        // Continuous aggregates cannot be created inside a transaction: plain statements here.
        sqlx::raw_sql(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS kills_hourly \
             WITH (timescaledb.continuous) AS \
             SELECT time_bucket('1 hour', timestamp) AS bucket, character_name, \
                    sum(kills_delta) AS kills, avg(kills_per_hour) AS kills_per_hour, \
                    count(*) AS samples \
             FROM telemetry_events GROUP BY 1, 2 WITH NO DATA",
        )
        .execute(&mut *conn)
        .await?;
        // Real-time aggregation: the hours not yet materialized are computed from raw rows, so
        // the most recent hour is never missing.
        sqlx::raw_sql(
            "ALTER MATERIALIZED VIEW kills_hourly SET (timescaledb.materialized_only = false)",
        )
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "SELECT add_continuous_aggregate_policy('kills_hourly', \
             start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour', \
             schedule_interval => INTERVAL '30 minutes', if_not_exists => true)",
        )
        .execute(&mut *conn)
        .await?;
        self.hourly_aggregate.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Whether the hourly-kills continuous aggregate can serve statistics older than raw rows.
    pub fn hourly_aggregate(&self) -> bool {
        self.hourly_aggregate.load(Ordering::Relaxed)
    }

    /// Whether telemetry lives in a hypertable.
    pub fn timescaledb(&self) -> bool {
        self.timescaledb.load(Ordering::Relaxed)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.reads.close().await;
        self.pool.close().await;
    }

    pub async fn write_batch(&self, key: &str, events: &[Event]) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let fresh =
            sqlx::query("INSERT INTO write_batches (batch_key) VALUES ($1) ON CONFLICT DO NOTHING")
                .bind(key)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
        if !fresh {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_telemetry(&mut tx, events).await?;
        insert_spawns(&mut tx, events).await?;
        insert_rares(&mut tx, events).await?;
        insert_sheets(&mut tx, events).await?;
        insert_portals(&mut tx, events).await?;
        update_counters(&mut tx, &CounterUpdates::from_events(events)).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn character_stats(&self) -> Result<Vec<CharacterStats>, StoreError> {
        let rows = sqlx::query(
            "SELECT coalesce(c.character_name, r.character_name) AS character_name, \
                    coalesce(c.total_kills, 0) AS total_kills, \
                    coalesce(r.total_rares, 0) AS total_rares \
             FROM char_stats c FULL OUTER JOIN rare_stats r USING (character_name) \
             ORDER BY 1",
        )
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CharacterStats {
                    character_name: r.try_get("character_name")?,
                    total_kills: r.try_get("total_kills")?,
                    total_rares: r.try_get("total_rares")?,
                })
            })
            .collect()
    }

    /// Sessions updated since `since`, of one character or of all.
    pub async fn recent_sessions(
        &self,
        since: DateTime<Utc>,
        character: Option<&str>,
    ) -> Result<Vec<SessionStats>, StoreError> {
        let rows = sqlx::query(
            "SELECT k.character_name, k.session_id, k.last_kills, \
                    coalesce(s.session_rares, 0) AS session_rares \
             FROM session_kills k \
             LEFT JOIN rare_stats_sessions s USING (character_name, session_id) \
             WHERE k.updated_at >= $1 AND ($2 IS NULL OR k.character_name = $2) \
             ORDER BY 1, 2",
        )
        .bind(since)
        .bind(character)
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SessionStats {
                    character_name: r.try_get("character_name")?,
                    session_id: r.try_get("session_id")?,
                    last_kills: r.try_get("last_kills")?,
                    session_rares: r.try_get("session_rares")?,
                })
            })
            .collect()
    }

    /// One character's total kills and rares (0 when never counted).
    pub async fn character_totals(&self, name: &str) -> Result<(i64, i64), StoreError> {
        Ok(sqlx::query_as(
            "SELECT coalesce((SELECT total_kills FROM char_stats WHERE character_name = $1), 0), \
                    coalesce((SELECT total_rares FROM rare_stats WHERE character_name = $1), 0)",
        )
        .bind(name)
        .fetch_one(&self.reads)
        .await?)
    }

    pub async fn row_counts(&self) -> Result<RowCounts, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM telemetry_events) AS telemetry, \
                    (SELECT count(*) FROM spawn_events) AS spawns, \
                    (SELECT count(*) FROM rare_events) AS rares",
        )
        .fetch_one(&self.reads)
        .await?;
        Ok(RowCounts {
            telemetry: row.try_get("telemetry")?,
            spawns: row.try_get("spawns")?,
            rares: row.try_get("rares")?,
        })
    }
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Postgres>;

/// A telemetry row with its id.
pub(super) fn record_from_row(r: &PgRow) -> Result<super::TelemetryRecord, StoreError> {
    Ok(super::TelemetryRecord {
        id: r.try_get("id")?,
        telemetry: telemetry_from_row(r)?,
    })
}

pub(super) fn telemetry_from_row(r: &PgRow) -> Result<Telemetry, StoreError> {
    Ok(Telemetry {
        character_name: r.try_get("character_name")?,
        char_tag: r.try_get("char_tag")?,
        session_id: r.try_get("session_id")?,
        timestamp: r.try_get("timestamp")?,
        ew: r.try_get("ew")?,
        ns: r.try_get("ns")?,
        z: r.try_get("z")?,
        kills: r.try_get("kills")?,
        kills_per_hour: r.try_get("kills_per_hour")?,
        onlinetime: r.try_get("onlinetime")?,
        deaths: r.try_get("deaths")?,
        total_deaths: r.try_get("total_deaths")?,
        rares_found: r.try_get("rares_found")?,
        prismatic_taper_count: r.try_get("prismatic_taper_count")?,
        vt_state: r.try_get("vt_state")?,
        mem_mb: r.try_get("mem_mb")?,
        cpu_pct: r.try_get("cpu_pct")?,
        mem_handles: r.try_get("mem_handles")?,
        latency_ms: r.try_get("latency_ms")?,
    })
}

/// Telemetry, the bulk of every batch, goes in through `COPY ... FROM STDIN` (CSV): about twice
/// the rows per second of a multi-row INSERT on this machine.
async fn insert_telemetry(tx: &mut Tx<'_>, events: &[Event]) -> Result<(), StoreError> {
    use std::fmt::Write;
    let mut csv = String::new();
    for event in events {
        let Event::Telemetry {
            row: t,
            kills_delta,
            ..
        } = event
        else {
            continue;
        };
        csv_text(&mut csv, Some(&t.character_name));
        csv.push(',');
        csv_text(&mut csv, t.char_tag.as_deref());
        csv.push(',');
        csv_text(&mut csv, Some(&t.session_id));
        let _ = write!(
            csv,
            ",{},{},{},{},{},",
            t.timestamp
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            t.ew,
            t.ns,
            t.z,
            t.kills
        );
        csv_opt(&mut csv, t.kills_per_hour);
        csv.push(',');
        csv_text(&mut csv, t.onlinetime.as_deref());
        let _ = write!(csv, ",{},", t.deaths);
        csv_opt(&mut csv, t.total_deaths);
        let _ = write!(csv, ",{},", t.rares_found);
        csv_opt(&mut csv, t.prismatic_taper_count);
        csv.push(',');
        csv_text(&mut csv, t.vt_state.as_deref());
        csv.push(',');
        csv_opt(&mut csv, t.mem_mb);
        csv.push(',');
        csv_opt(&mut csv, t.cpu_pct);
        csv.push(',');
        csv_opt(&mut csv, t.mem_handles);
        csv.push(',');
        csv_opt(&mut csv, t.latency_ms);
        let _ = writeln!(csv, ",{kills_delta}");
    }
    if csv.is_empty() {
        return Ok(());
    }
    let mut copy = tx
        .copy_in_raw(
            "COPY telemetry_events (character_name, char_tag, session_id, timestamp, ew, ns, z, \
                 kills, kills_per_hour, onlinetime, deaths, total_deaths, rares_found, \
                 prismatic_taper_count, vt_state, mem_mb, cpu_pct, mem_handles, latency_ms, \
                 kills_delta) FROM STDIN (FORMAT csv)",
        )
        .await?;
    copy.send(csv.into_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

/// A CSV text field for COPY: absent is an unquoted empty field (NULL); present values are
/// quoted whenever they could be misread (empty, separators, quotes, line breaks).
fn csv_text(out: &mut String, value: Option<&str>) {
    let Some(v) = value else { return };
    if v.is_empty() || v.contains([',', '"', '\n', '\r', '\\']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

fn csv_opt<T: std::fmt::Display>(out: &mut String, value: Option<T>) {
    if let Some(v) = value {
        use std::fmt::Write;
        let _ = write!(out, "{v}");
    }
}

async fn insert_spawns(tx: &mut Tx<'_>, events: &[Event]) -> Result<(), StoreError> {
    let rows: Vec<&Spawn> = events
        .iter()
        .filter_map(|e| match e {
            Event::Spawn(s) => Some(s),
            _ => None,
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO spawn_events (character_name, mob, timestamp, ew, ns, z) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::float8[], \
             $5::float8[], $6::float8[])",
    )
    .bind(
        rows.iter()
            .map(|s| s.character_name.clone())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|s| s.mob.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|s| s.timestamp).collect::<Vec<_>>())
    .bind(rows.iter().map(|s| s.ew).collect::<Vec<_>>())
    .bind(rows.iter().map(|s| s.ns).collect::<Vec<_>>())
    .bind(rows.iter().map(|s| s.z).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_rares(tx: &mut Tx<'_>, events: &[Event]) -> Result<(), StoreError> {
    let rows: Vec<(&crate::protocol::Rare, &Option<String>)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Rare { rare, session_id } => Some((rare, session_id)),
            _ => None,
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO rare_events (character_name, name, session_id, timestamp, ew, ns, z) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], \
             $5::float8[], $6::float8[], $7::float8[])",
    )
    .bind(
        rows.iter()
            .map(|(r, _)| r.character_name.clone())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|(r, _)| r.name.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, s)| (*s).clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(r, _)| r.timestamp).collect::<Vec<_>>())
    .bind(rows.iter().map(|(r, _)| r.ew).collect::<Vec<_>>())
    .bind(rows.iter().map(|(r, _)| r.ns).collect::<Vec<_>>())
    .bind(rows.iter().map(|(r, _)| r.z).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_sheets(tx: &mut Tx<'_>, events: &[Event]) -> Result<(), StoreError> {
    let sheets: Vec<&crate::protocol::CharacterSheet> = events
        .iter()
        .filter_map(|e| match e {
            Event::Sheet(s) => Some(s),
            _ => None,
        })
        .collect();
    if sheets.is_empty() {
        return Ok(());
    }
    let data = sheets
        .iter()
        .map(|s| serde_json::to_string(s).map_err(|e| sqlx::Error::Encode(Box::new(e))))
        .collect::<Result<Vec<_>, _>>()?;
    sqlx::query(
        "INSERT INTO character_sheets (character_name, timestamp, level, total_xp, unassigned_xp, \
             luminance_earned, luminance_total, title, allegiance_name, data) \
         SELECT n, t, l, x, u, le, lt, ti, a, d::jsonb FROM UNNEST($1::text[], \
             $2::timestamptz[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::int8[], \
             $8::text[], $9::text[], $10::text[]) AS u(n, t, l, x, u, le, lt, ti, a, d)",
    )
    .bind(
        sheets
            .iter()
            .map(|s| s.character_name.clone())
            .collect::<Vec<_>>(),
    )
    .bind(sheets.iter().map(|s| s.timestamp).collect::<Vec<_>>())
    .bind(sheets.iter().map(|s| s.level).collect::<Vec<_>>())
    .bind(sheets.iter().map(|s| s.total_xp).collect::<Vec<_>>())
    .bind(sheets.iter().map(|s| s.unassigned_xp).collect::<Vec<_>>())
    .bind(
        sheets
            .iter()
            .map(|s| s.luminance_earned)
            .collect::<Vec<_>>(),
    )
    .bind(sheets.iter().map(|s| s.luminance_total).collect::<Vec<_>>())
    .bind(sheets.iter().map(|s| s.title.clone()).collect::<Vec<_>>())
    .bind(
        sheets
            .iter()
            .map(|s| s.allegiance.as_ref().and_then(|a| a.name.clone()))
            .collect::<Vec<_>>(),
    )
    .bind(data)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_portals(tx: &mut Tx<'_>, events: &[Event]) -> Result<(), StoreError> {
    let rows: Vec<(&crate::protocol::Portal, &Option<String>)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Portal { portal, session_id } => Some((portal, session_id)),
            _ => None,
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO portal_events (character_name, name, session_id, timestamp, ew, ns, z) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], \
             $5::float8[], $6::float8[], $7::float8[])",
    )
    .bind(
        rows.iter()
            .map(|(p, _)| p.character_name.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|(p, _)| p.portal_name.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|(_, s)| (*s).clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(p, _)| p.timestamp).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|(p, _)| p.ew.unwrap_or_default())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|(p, _)| p.ns.unwrap_or_default())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|(p, _)| p.z.unwrap_or_default())
            .collect::<Vec<_>>(),
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn split<K: Clone, V: Copy>(map: &std::collections::HashMap<K, V>) -> (Vec<K>, Vec<V>) {
    map.iter().map(|(k, v)| (k.clone(), *v)).unzip()
}

fn split_pairs(
    map: &std::collections::HashMap<(String, String), i64>,
) -> (Vec<String>, Vec<String>, Vec<i64>) {
    let mut a = Vec::with_capacity(map.len());
    let mut b = Vec::with_capacity(map.len());
    let mut c = Vec::with_capacity(map.len());
    for ((x, y), v) in map {
        a.push(x.clone());
        b.push(y.clone());
        c.push(*v);
    }
    (a, b, c)
}

async fn update_counters(tx: &mut Tx<'_>, updates: &CounterUpdates) -> Result<(), StoreError> {
    // Keys are written in a stable order so concurrent writers (e.g. two servers) cannot deadlock.
    if !updates.seen.is_empty() {
        let mut names = Vec::with_capacity(updates.seen.len());
        let mut tags = Vec::with_capacity(updates.seen.len());
        let mut firsts = Vec::with_capacity(updates.seen.len());
        let mut lasts = Vec::with_capacity(updates.seen.len());
        let mut deaths = Vec::with_capacity(updates.seen.len());
        let mut total_deaths = Vec::with_capacity(updates.seen.len());
        for (name, seen) in &updates.seen {
            names.push(name.clone());
            tags.push(seen.char_tag.clone());
            firsts.push(seen.first);
            lasts.push(seen.last);
            deaths.push(seen.deaths);
            total_deaths.push(seen.total_deaths);
        }
        sqlx::query(
            "INSERT INTO characters (character_name, char_tag, first_seen, last_seen, deaths, \
                 total_deaths) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], \
                 $4::timestamptz[], $5::int8[], $6::int8[]) ORDER BY 1 \
             ON CONFLICT (character_name) DO UPDATE SET \
                 first_seen = LEAST(characters.first_seen, EXCLUDED.first_seen), \
                 last_seen = GREATEST(characters.last_seen, EXCLUDED.last_seen), \
                 char_tag = CASE WHEN EXCLUDED.last_seen >= characters.last_seen \
                     THEN coalesce(EXCLUDED.char_tag, characters.char_tag) \
                     ELSE characters.char_tag END, \
                 deaths = CASE WHEN EXCLUDED.last_seen >= characters.last_seen \
                     THEN coalesce(EXCLUDED.deaths, characters.deaths) \
                     ELSE characters.deaths END, \
                 total_deaths = CASE WHEN EXCLUDED.last_seen >= characters.last_seen \
                     THEN coalesce(EXCLUDED.total_deaths, characters.total_deaths) \
                     ELSE characters.total_deaths END",
        )
        .bind(names)
        .bind(tags)
        .bind(firsts)
        .bind(lasts)
        .bind(deaths)
        .bind(total_deaths)
        .execute(&mut **tx)
        .await?;
    }
    if !updates.spawn_cells.is_empty() {
        let mut hours = Vec::with_capacity(updates.spawn_cells.len());
        let mut xs = Vec::with_capacity(updates.spawn_cells.len());
        let mut ys = Vec::with_capacity(updates.spawn_cells.len());
        let mut counts = Vec::with_capacity(updates.spawn_cells.len());
        for ((hour, x, y), n) in &updates.spawn_cells {
            hours.push(*hour);
            xs.push(i32::try_from(*x).unwrap_or(0));
            ys.push(i32::try_from(*y).unwrap_or(0));
            counts.push(*n);
        }
        sqlx::query(
            "INSERT INTO spawn_cells (hour, cx, cy, count) \
             SELECT * FROM UNNEST($1::timestamptz[], $2::int4[], $3::int4[], $4::int8[]) \
             ORDER BY 1, 2, 3 \
             ON CONFLICT (hour, cx, cy) DO UPDATE SET count = spawn_cells.count + EXCLUDED.count",
        )
        .bind(hours)
        .bind(xs)
        .bind(ys)
        .bind(counts)
        .execute(&mut **tx)
        .await?;
    }
    if !updates.kills.is_empty() {
        let (names, deltas) = split(&updates.kills);
        sqlx::query(
            "INSERT INTO char_stats (character_name, total_kills) \
             SELECT * FROM UNNEST($1::text[], $2::int8[]) ORDER BY 1 \
             ON CONFLICT (character_name) DO UPDATE \
             SET total_kills = char_stats.total_kills + EXCLUDED.total_kills, updated_at = now()",
        )
        .bind(names)
        .bind(deltas)
        .execute(&mut **tx)
        .await?;
    }
    if !updates.baselines.is_empty() {
        let (names, sessions, kills) = split_pairs(&updates.baselines);
        sqlx::query(
            "INSERT INTO session_kills (character_name, session_id, last_kills) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[]) ORDER BY 1, 2 \
             ON CONFLICT (character_name, session_id) DO UPDATE \
             SET last_kills = EXCLUDED.last_kills, updated_at = now()",
        )
        .bind(names)
        .bind(sessions)
        .bind(kills)
        .execute(&mut **tx)
        .await?;
    }
    if !updates.rares.is_empty() {
        let (names, counts) = split(&updates.rares);
        sqlx::query(
            "INSERT INTO rare_stats (character_name, total_rares) \
             SELECT * FROM UNNEST($1::text[], $2::int8[]) ORDER BY 1 \
             ON CONFLICT (character_name) DO UPDATE \
             SET total_rares = rare_stats.total_rares + EXCLUDED.total_rares, updated_at = now()",
        )
        .bind(names)
        .bind(counts)
        .execute(&mut **tx)
        .await?;
    }
    if !updates.session_rares.is_empty() {
        let (names, sessions, counts) = split_pairs(&updates.session_rares);
        sqlx::query(
            "INSERT INTO rare_stats_sessions (character_name, session_id, session_rares) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[]) ORDER BY 1, 2 \
             ON CONFLICT (character_name, session_id) DO UPDATE \
             SET session_rares = rare_stats_sessions.session_rares + EXCLUDED.session_rares, \
                 updated_at = now()",
        )
        .bind(names)
        .bind(sessions)
        .bind(counts)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
