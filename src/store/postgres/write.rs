//! PostgreSQL writes: batches through `COPY` and `UNNEST` arrays in one transaction, the
//! counters they imply, and maintenance (pruning, thinning).

use chrono::{DateTime, Utc};

use super::PgStore;
use crate::protocol::Spawn;
use crate::store::{Backend, CounterUpdates, Event, StoreError, StoreWrite, TimescalePolicies};

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
    async fn thin_aligned(
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

    async fn write_batch(&self, key: &str, events: &[Event]) -> Result<bool, StoreError> {
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
