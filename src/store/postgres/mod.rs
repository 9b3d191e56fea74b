//! PostgreSQL (and TimescaleDB) storage: connecting, migrations, and TimescaleDB detection and
//! policies. Writes are in `write.rs`, the query API's reads in `read.rs`.

mod read;
mod write;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::store::{
    StoreError, StoreOptions, TimescalePolicies, WRITE_CONNECTIONS, migrations, redact_url,
};

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
                url: redact_url(url),
                reason: err.to_string(),
            })?
            .log_slow_statements(
                tracing::log::LevelFilter::Warn,
                std::time::Duration::from_secs(1),
            );
        if let Some(password) = &options.password {
            connect = connect.password(password.expose());
        }
        // One connection first: a database that is not there says why (connection refused, no
        // such host, a wrong password) instead of the pool's "timed out".
        match tokio::time::timeout(options.acquire_timeout, connect.connect()).await {
            Ok(Ok(conn)) => {
                let _ = sqlx::Connection::close(conn).await;
            }
            Ok(Err(err)) => return Err(err.into()),
            Err(_) => {} // no answer in time: the pool below says it timed out
        }
        let pool = PgPoolOptions::new()
            .max_connections(WRITE_CONNECTIONS)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await?;
        let applied = sqlx::query_as(migrations::APPLIED)
            .fetch_all(&pool)
            .await
            .ok();
        if !migrations::up_to_date(&MIGRATOR, applied) {
            accept_amended_migrations(&pool).await?;
            MIGRATOR.run(&pool).await?;
        }
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

    /// Chunk intervals, compression, retention and the hourly-kills continuous aggregate on
    /// TimescaleDB; safe to run at every start (existing policies are replaced with the
    /// configured ones; a new chunk interval applies to chunks created from now on).
    pub async fn apply_timescale_policies(
        &self,
        policies: &TimescalePolicies,
    ) -> Result<(), StoreError> {
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
            .execute(&self.pool)
            .await?;
            sqlx::query(&format!(
                "SELECT remove_retention_policy('{table}', if_exists => true)"
            ))
            .execute(&self.pool)
            .await?;
            if retention_days > 0 {
                sqlx::query(&format!(
                    "SELECT add_retention_policy('{table}', make_interval(days => $1), \
                     if_not_exists => true)"
                ))
                .bind(days(retention_days))
                .execute(&self.pool)
                .await?;
            }
        }
        sqlx::query("SELECT remove_compression_policy('telemetry_events', if_exists => true)")
            .execute(&self.pool)
            .await?;
        if policies.compress_after_days > 0 {
            // `id` belongs to the unique key, so it goes into the order too (TimescaleDB asks
            // for it with a notice otherwise).
            sqlx::query(
                "ALTER TABLE telemetry_events SET (timescaledb.compress, \
                 timescaledb.compress_segmentby = 'character_name', \
                 timescaledb.compress_orderby = 'timestamp DESC, id DESC')",
            )
            .execute(&self.pool)
            .await?;
            sqlx::query(
                "SELECT add_compression_policy('telemetry_events', \
                 make_interval(days => $1), if_not_exists => true)",
            )
            .bind(days(policies.compress_after_days))
            .execute(&self.pool)
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
        .execute(&self.pool)
        .await?;
        // Real-time aggregation: the hours not yet materialized are computed from raw rows, so
        // the most recent hour is never missing.
        sqlx::raw_sql(
            "ALTER MATERIALIZED VIEW kills_hourly SET (timescaledb.materialized_only = false)",
        )
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "SELECT add_continuous_aggregate_policy('kills_hourly', \
             start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour', \
             schedule_interval => INTERVAL '30 minutes', if_not_exists => true)",
        )
        .execute(&self.pool)
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
}
