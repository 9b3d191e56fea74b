//! SQLite writes: each batch in one transaction on the single writer connection, the counters
//! it implies, and maintenance (pruning, thinning).

use chrono::{DateTime, Utc};

use super::{SqliteStore, now_text, ts};
use crate::store::{Backend, CounterUpdates, Event, StoreError, StoreWrite};

#[async_trait::async_trait]
impl StoreWrite for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    /// Keeps one telemetry row per character per `step_secs` in [from, to): the first of each
    /// step, which takes over the kills of the rows removed (so kill sums stay exact).
    async fn thin_aligned(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_secs: i64,
    ) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let result: Result<u64, StoreError> = async {
            sqlx::query(
                "CREATE TEMP TABLE IF NOT EXISTS thinning \
                 (id INTEGER PRIMARY KEY, rn INTEGER NOT NULL, total INTEGER NOT NULL)",
            )
            .execute(&mut *conn)
            .await?;
            sqlx::query("DELETE FROM thinning").execute(&mut *conn).await?;
            sqlx::query(
                "INSERT INTO thinning (id, rn, total) \
                 SELECT id, row_number() OVER w, sum(kills_delta) OVER (PARTITION BY character_name, b) \
                 FROM (SELECT id, timestamp, character_name, kills_delta, \
                              CAST(strftime('%s', timestamp) AS INTEGER) / ?3 AS b \
                       FROM telemetry_events WHERE timestamp >= ?1 AND timestamp < ?2) \
                 WINDOW w AS (PARTITION BY character_name, b ORDER BY timestamp, id)",
            )
            .bind(ts(&from))
            .bind(ts(&to))
            .bind(step_secs)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE telemetry_events SET kills_delta = \
                     (SELECT total FROM thinning WHERE thinning.id = telemetry_events.id) \
                 WHERE id IN (SELECT id FROM thinning WHERE rn = 1 AND total <> 0)",
            )
            .execute(&mut *conn)
            .await?;
            let removed = sqlx::query(
                "DELETE FROM telemetry_events WHERE id IN (SELECT id FROM thinning WHERE rn > 1)",
            )
            .execute(&mut *conn)
            .await?
            .rows_affected();
            sqlx::query("DELETE FROM thinning").execute(&mut *conn).await?;
            Ok(removed)
        }
        .await;
        match result {
            Ok(removed) => {
                sqlx::query("COMMIT").execute(&mut *conn).await?;
                Ok(removed)
            }
            Err(err) => {
                if sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
                    conn.detach();
                }
                Err(err)
            }
        }
    }

    async fn write_batch(&self, key: &str, events: &[Event]) -> Result<bool, StoreError> {
        // BEGIN IMMEDIATE takes the write lock up front, so a batch never fails half-way on a
        // lock upgrade.
        let mut conn = self.pool.acquire().await?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let result = async {
            let fresh = sqlx::query("INSERT OR IGNORE INTO write_batches (batch_key) VALUES (?1)")
                .bind(key)
                .execute(&mut *conn)
                .await?
                .rows_affected()
                == 1;
            if fresh {
                write_all(&mut conn, events).await?;
            }
            Ok::<bool, StoreError>(fresh)
        }
        .await;
        match result {
            Ok(fresh) => {
                sqlx::query(if fresh { "COMMIT" } else { "ROLLBACK" })
                    .execute(&mut *conn)
                    .await?;
                Ok(fresh)
            }
            Err(err) => {
                if let Err(rollback) = sqlx::query("ROLLBACK").execute(&mut *conn).await {
                    tracing::warn!(%rollback, "rollback after a failed batch also failed");
                    // Do not return a connection in an unknown transaction state to the pool.
                    conn.detach();
                }
                Err(err)
            }
        }
    }
}

async fn write_all(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Sqlite>,
    events: &[Event],
) -> Result<(), StoreError> {
    for event in events {
        match event {
            Event::Telemetry {
                row: t,
                kills_delta,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO telemetry_events (character_name, char_tag, session_id, \
                         timestamp, ew, ns, z, kills, kills_per_hour, onlinetime, deaths, \
                         total_deaths, rares_found, prismatic_taper_count, vt_state, mem_mb, \
                         cpu_pct, mem_handles, latency_ms, kills_delta) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
                         ?16, ?17, ?18, ?19, ?20)",
                )
                .bind(&t.character_name)
                .bind(&t.char_tag)
                .bind(&t.session_id)
                .bind(ts(&t.timestamp))
                .bind(t.ew)
                .bind(t.ns)
                .bind(t.z)
                .bind(t.kills)
                .bind(t.kills_per_hour)
                .bind(&t.onlinetime)
                .bind(t.deaths)
                .bind(t.total_deaths)
                .bind(t.rares_found)
                .bind(t.prismatic_taper_count)
                .bind(&t.vt_state)
                .bind(t.mem_mb)
                .bind(t.cpu_pct)
                .bind(t.mem_handles)
                .bind(t.latency_ms)
                .bind(kills_delta)
                .execute(&mut **conn)
                .await?;
            }
            Event::Spawn(s) => {
                sqlx::query(
                    "INSERT INTO spawn_events (character_name, mob, timestamp, ew, ns, z) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .bind(&s.character_name)
                .bind(&s.mob)
                .bind(ts(&s.timestamp))
                .bind(s.ew)
                .bind(s.ns)
                .bind(s.z)
                .execute(&mut **conn)
                .await?;
            }
            Event::Rare {
                rare: r,
                session_id,
            } => {
                sqlx::query(
                    "INSERT INTO rare_events (character_name, name, session_id, timestamp, ew, \
                         ns, z) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .bind(&r.character_name)
                .bind(&r.name)
                .bind(session_id)
                .bind(ts(&r.timestamp))
                .bind(r.ew)
                .bind(r.ns)
                .bind(r.z)
                .execute(&mut **conn)
                .await?;
            }
            Event::Sheet(sheet) => {
                let data =
                    serde_json::to_string(sheet).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                sqlx::query(
                    "INSERT INTO character_sheets (character_name, timestamp, level, total_xp, \
                         unassigned_xp, luminance_earned, luminance_total, title, \
                         allegiance_name, data) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .bind(&sheet.character_name)
                .bind(ts(&sheet.timestamp))
                .bind(sheet.level)
                .bind(sheet.total_xp)
                .bind(sheet.unassigned_xp)
                .bind(sheet.luminance_earned)
                .bind(sheet.luminance_total)
                .bind(&sheet.title)
                .bind(sheet.allegiance.as_ref().and_then(|a| a.name.as_deref()))
                .bind(data)
                .execute(&mut **conn)
                .await?;
            }
            Event::Portal { portal, session_id } => {
                sqlx::query(
                    "INSERT INTO portal_events (character_name, name, session_id, timestamp, ew, \
                         ns, z) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .bind(&portal.character_name)
                .bind(portal.portal_name.as_deref().unwrap_or_default())
                .bind(session_id)
                .bind(ts(&portal.timestamp))
                .bind(portal.ew.unwrap_or_default())
                .bind(portal.ns.unwrap_or_default())
                .bind(portal.z.unwrap_or_default())
                .execute(&mut **conn)
                .await?;
            }
        }
    }

    let updates = CounterUpdates::from_events(events);
    let now = now_text();
    for (name, seen) in &updates.seen {
        sqlx::query(
            "INSERT INTO characters (character_name, char_tag, first_seen, last_seen, deaths, \
                 total_deaths) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (character_name) DO UPDATE SET \
                 first_seen = min(first_seen, excluded.first_seen), \
                 char_tag = CASE WHEN excluded.last_seen >= last_seen \
                     THEN coalesce(excluded.char_tag, char_tag) ELSE char_tag END, \
                 deaths = CASE WHEN excluded.last_seen >= last_seen \
                     THEN coalesce(excluded.deaths, deaths) ELSE deaths END, \
                 total_deaths = CASE WHEN excluded.last_seen >= last_seen \
                     THEN coalesce(excluded.total_deaths, total_deaths) ELSE total_deaths END, \
                 last_seen = max(last_seen, excluded.last_seen)",
        )
        .bind(name)
        .bind(&seen.char_tag)
        .bind(ts(&seen.first))
        .bind(ts(&seen.last))
        .bind(seen.deaths)
        .bind(seen.total_deaths)
        .execute(&mut **conn)
        .await?;
    }
    for ((hour, x, y), n) in &updates.spawn_cells {
        sqlx::query(
            "INSERT INTO spawn_cells (hour, cx, cy, count) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (hour, cx, cy) DO UPDATE SET count = count + excluded.count",
        )
        .bind(ts(hour))
        .bind(x)
        .bind(y)
        .bind(n)
        .execute(&mut **conn)
        .await?;
    }
    for (name, delta) in &updates.kills {
        sqlx::query(
            "INSERT INTO char_stats (character_name, total_kills, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (character_name) DO UPDATE \
             SET total_kills = total_kills + excluded.total_kills, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(delta)
        .bind(&now)
        .execute(&mut **conn)
        .await?;
    }
    for ((name, session), kills) in &updates.baselines {
        sqlx::query(
            "INSERT INTO session_kills (character_name, session_id, last_kills, updated_at) \
             VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (character_name, session_id) DO UPDATE \
             SET last_kills = excluded.last_kills, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(session)
        .bind(kills)
        .bind(&now)
        .execute(&mut **conn)
        .await?;
    }
    for (name, count) in &updates.rares {
        sqlx::query(
            "INSERT INTO rare_stats (character_name, total_rares, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (character_name) DO UPDATE \
             SET total_rares = total_rares + excluded.total_rares, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(count)
        .bind(&now)
        .execute(&mut **conn)
        .await?;
    }
    for ((name, session), count) in &updates.session_rares {
        sqlx::query(
            "INSERT INTO rare_stats_sessions (character_name, session_id, session_rares, \
                 updated_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (character_name, session_id) DO UPDATE \
             SET session_rares = session_rares + excluded.session_rares, \
                 updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(session)
        .bind(count)
        .bind(&now)
        .execute(&mut **conn)
        .await?;
    }
    Ok(())
}
