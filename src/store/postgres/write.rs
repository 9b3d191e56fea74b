//! PostgreSQL writes: batches through `COPY` and `UNNEST` arrays in one transaction, the
//! counters they imply, and maintenance (pruning, thinning).

use super::PgStore;
use crate::store::SpoolMark;
use crate::store::model::TELEMETRY_TABLE;
use crate::store::reads::pg_args;
use crate::store::sql::{Dialect, Sql};
use crate::store::writes::{batch, batch_key, spool_mark};
use crate::store::{Backend, Event, Span, StoreError, StoreWrite, TimescalePolicies};

#[async_trait::async_trait]
impl StoreWrite for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn timescaledb(&self) -> bool {
        PgStore::timescaledb(self)
    }

    /// On a TimescaleDB hypertable: chunk intervals, compression, retention and the hourly-kills
    /// aggregate. On plain PostgreSQL: nothing (the tracker prunes).
    async fn apply_policies(&self, policies: &TimescalePolicies) -> Result<bool, StoreError> {
        if !PgStore::timescaledb(self) {
            return Ok(false);
        }
        self.apply_timescale_policies(policies).await?;
        Ok(true)
    }

    /// Keeps one telemetry row per character per `step_secs` in [from, to): the first of each
    /// step, which takes over the kills of the rows removed (so kill sums stay exact).
    async fn thin_aligned(&self, span: Span, step_secs: i64) -> Result<u64, StoreError> {
        let (from, to) = (span.start, span.end);
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

    async fn write_batch(
        &self,
        key: &str,
        events: &[Event],
        mark: Option<&SpoolMark>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        if execute(&mut tx, &batch_key(key)).await? == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_telemetry(&mut tx, events).await?;
        for sql in batch(Dialect::Postgres, events, true)? {
            execute(&mut tx, &sql).await?;
        }
        if let Some(mark) = mark {
            execute(&mut tx, &spool_mark(mark)).await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Postgres>;

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
        let _ = write!(
            csv,
            ",{kills_delta},{},",
            t.received_at
                .unwrap_or(t.timestamp)
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        );
        csv_opt(&mut csv, t.clock_offset_ms);
        csv.push('\n');
    }
    if csv.is_empty() {
        return Ok(());
    }
    // The CSV above writes the table's columns in this order.
    let copy_sql = format!(
        "COPY {} ({}) FROM STDIN (FORMAT csv)",
        TELEMETRY_TABLE.name,
        TELEMETRY_TABLE.columns.join(", ")
    );
    let mut copy = tx.copy_in_raw(&copy_sql).await?;
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

/// Runs one statement in the transaction; how many rows it changed.
async fn execute(tx: &mut Tx<'_>, sql: &Sql) -> Result<u64, StoreError> {
    let args = pg_args(&sql.args)?;
    let done = sqlx::query_with(&sql.text, args).execute(&mut **tx).await?;
    Ok(done.rows_affected())
}
