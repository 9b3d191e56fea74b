//! What a batch writes, as statements written once for both backends: its events' rows (from
//! [`Event::row`]: each table's rows together, in event order) and the upserts that add its
//! counters to the running totals. The backends run them in one transaction (PostgreSQL copies
//! telemetry in bulk first).

use chrono::{DateTime, Utc};

use super::sql::{Arg, Column, Dialect, Sql};
use super::{CounterUpdates, Event, StoreError, Table};

/// Records that the batch `key` is being written: changes one row when it is new, none when a
/// batch with this key was already committed (its replay then writes nothing).
pub(crate) fn batch_key(key: &str) -> Sql {
    Sql::new(
        "INSERT INTO write_batches (batch_key) VALUES ($1) ON CONFLICT DO NOTHING",
        vec![key.into()],
    )
}

/// Records that every event of a spool up to `mark.upto` is stored (never moving it back).
pub(crate) fn spool_mark(mark: &super::SpoolMark) -> Sql {
    Sql::new(
        "INSERT INTO spool_marks (spool_id, upto) VALUES ($1, $2) ON CONFLICT (spool_id) DO \
         UPDATE SET upto = CASE WHEN excluded.upto > spool_marks.upto THEN excluded.upto \
         ELSE spool_marks.upto END",
        vec![
            mark.spool_id.as_str().into(),
            i64::try_from(mark.upto).unwrap_or(i64::MAX).into(),
        ],
    )
}

/// Every statement that stores `events` and their counters, but for telemetry rows when
/// `telemetry_copied` (PostgreSQL copies those in bulk first).
pub(crate) fn batch(
    dialect: Dialect,
    events: &[Event],
    telemetry_copied: bool,
) -> Result<Vec<Sql>, StoreError> {
    let copied = |e: &Event| telemetry_copied && matches!(e, Event::Telemetry { .. });
    let mut statements = inserts(dialect, events, copied)?;
    let updates = CounterUpdates::from_events(events);
    statements.extend(counter_upserts(dialect, &updates, Utc::now()));
    Ok(statements)
}

/// The statements inserting `events`, except those `skip` says are stored another way.
fn inserts(
    dialect: Dialect,
    events: &[Event],
    skip: impl Fn(&Event) -> bool,
) -> Result<Vec<Sql>, StoreError> {
    let mut tables: Vec<(&'static Table, Vec<Vec<Arg>>)> = Vec::new();
    for event in events.iter().filter(|e| !skip(e)) {
        let row = event.row()?;
        match tables.iter_mut().find(|(t, _)| std::ptr::eq(*t, row.table)) {
            Some((_, rows)) => rows.push(row.values),
            None => tables.push((row.table, vec![row.values])),
        }
    }
    let mut statements = Vec::new();
    for (table, rows) in tables {
        statements.extend(multi_row(dialect, (table.name, table.columns), &rows, ""));
    }
    Ok(statements)
}

/// The statements inserting `rows` into `name (columns)`, each followed by `tail` (an upsert's
/// `ON CONFLICT` clause). Each keeps one text whatever the number of rows, so it is prepared
/// once and cached: on SQLite one statement per row (cheap: the database is in process); on
/// PostgreSQL one statement for all of them, each column an array that `UNNEST` turns back into
/// rows.
fn multi_row(
    dialect: Dialect,
    (name, columns): (&str, &[&str]),
    rows: &[Vec<Arg>],
    tail: &str,
) -> Vec<Sql> {
    if rows.is_empty() {
        return Vec::new();
    }
    let head = format!("INSERT INTO {name} ({})", columns.join(", "));
    match dialect {
        Dialect::Sqlite => rows
            .iter()
            .map(|row| {
                let mut sql = Sql::new(format!("{head} VALUES ("), Vec::new());
                for (j, value) in row.iter().enumerate() {
                    if j > 0 {
                        sql.push(", ");
                    }
                    sql.value(dialect, value.clone());
                }
                sql.push(")").push(tail);
                sql
            })
            .collect(),
        Dialect::Postgres => {
            let mut selected = Vec::with_capacity(columns.len());
            let mut arrays = Vec::with_capacity(columns.len());
            let mut sql = Sql::default();
            for (j, column) in columns.iter().enumerate() {
                let json = matches!(rows[0].get(j), Some(Arg::Json(_)));
                let Some(values) = Column::of(rows.iter().filter_map(|row| row.get(j))) else {
                    tracing::error!(table = name, column, "a column's values are of mixed kinds");
                    return Vec::new();
                };
                let array_type = values.sql_type();
                let param = sql.param(Arg::Column(values));
                arrays.push(format!("{param}::{array_type}"));
                selected.push(if json {
                    format!("CAST(u.{column} AS JSONB)")
                } else {
                    format!("u.{column}")
                });
            }
            // Rows go in as given: `ORDER BY` would lose it, and callers sort where order matters.
            sql.push(&format!(
                "{head} SELECT {} FROM UNNEST({}) AS u({}){tail}",
                selected.join(", "),
                arrays.join(", "),
                columns.join(", ")
            ));
            vec![sql]
        }
    }
}

const CHARACTERS: Table = Table {
    name: "characters",
    columns: &[
        "character_name",
        "char_tag",
        "first_seen",
        "last_seen",
        "deaths",
        "total_deaths",
    ],
};
/// The newest report of a character wins its tag and deaths; first and last seen only widen.
const CHARACTERS_MERGE: &str = " ON CONFLICT (character_name) DO UPDATE SET \
    first_seen = CASE WHEN excluded.first_seen < characters.first_seen \
        THEN excluded.first_seen ELSE characters.first_seen END, \
    last_seen = CASE WHEN excluded.last_seen > characters.last_seen \
        THEN excluded.last_seen ELSE characters.last_seen END, \
    char_tag = CASE WHEN excluded.last_seen >= characters.last_seen \
        THEN coalesce(excluded.char_tag, characters.char_tag) ELSE characters.char_tag END, \
    deaths = CASE WHEN excluded.last_seen >= characters.last_seen \
        THEN coalesce(excluded.deaths, characters.deaths) ELSE characters.deaths END, \
    total_deaths = CASE WHEN excluded.last_seen >= characters.last_seen \
        THEN coalesce(excluded.total_deaths, characters.total_deaths) \
        ELSE characters.total_deaths END";

/// A counter table: one row per key, its value added to (or, for a baseline, replaced by) what a
/// batch brings, stamped with when.
struct Counter {
    name: &'static str,
    key: &'static [&'static str],
    value: &'static str,
    add: bool,
}

impl Counter {
    /// `ON CONFLICT (key) DO UPDATE SET ...`: the new value added or replacing, and the stamp.
    fn merge(&self) -> String {
        let (t, v) = (self.name, self.value);
        let value = if self.add {
            format!("{v} = {t}.{v} + excluded.{v}")
        } else {
            format!("{v} = excluded.{v}")
        };
        format!(
            " ON CONFLICT ({}) DO UPDATE SET {value}, updated_at = excluded.updated_at",
            self.key.join(", ")
        )
    }
}

impl Counter {
    /// A counter whose value a batch adds to.
    const fn adds(name: &'static str, key: &'static [&'static str], value: &'static str) -> Self {
        Self::new(name, key, value, true)
    }

    /// A counter a batch replaces (a baseline).
    const fn replaces(
        name: &'static str,
        key: &'static [&'static str],
        value: &'static str,
    ) -> Self {
        Self::new(name, key, value, false)
    }

    const fn new(
        name: &'static str,
        key: &'static [&'static str],
        value: &'static str,
        add: bool,
    ) -> Self {
        Self {
            name,
            key,
            value,
            add,
        }
    }

    /// Its columns: the key, the value, `updated_at`.
    fn columns(&self) -> Vec<&'static str> {
        let mut columns = self.key.to_vec();
        columns.extend([self.value, "updated_at"]);
        columns
    }
}

const CHAR_STATS: Counter = Counter::adds("char_stats", &["character_name"], "total_kills");
const SESSION: &[&str] = &["character_name", "session_id"];
const SESSION_KILLS: Counter = Counter::replaces("session_kills", SESSION, "last_kills");
const RARE_STATS: Counter = Counter::adds("rare_stats", &["character_name"], "total_rares");
const RARE_SESSIONS: Counter = Counter::adds("rare_stats_sessions", SESSION, "session_rares");

/// Spawns per hour and cell of the map.
const SPAWN_CELLS: Table = Table {
    name: "spawn_cells",
    columns: &["hour", "cx", "cy", "count"],
};
const SPAWN_CELLS_MERGE: &str =
    " ON CONFLICT (hour, cx, cy) DO UPDATE SET count = spawn_cells.count + excluded.count";

/// Kills and kills-per-hour samples per character and hour (what leaderboards read).
const KILL_HOURS: Table = Table {
    name: "kill_hours",
    columns: &["character_name", "hour", "kills", "kph_sum", "kph_samples"],
};
const KILL_HOURS_MERGE: &str = " ON CONFLICT (character_name, hour) DO UPDATE SET \
    kills = kill_hours.kills + excluded.kills, \
    kph_sum = kill_hours.kph_sum + excluded.kph_sum, \
    kph_samples = kill_hours.kph_samples + excluded.kph_samples";

/// The upserts that add `updates` to the running totals, stamped `now`. Rows go in key order,
/// so concurrent writers (instances of a cluster) take row locks in the same order.
fn counter_upserts(dialect: Dialect, updates: &CounterUpdates, now: DateTime<Utc>) -> Vec<Sql> {
    fn sorted<K: Ord + Clone, V>(map: &std::collections::HashMap<K, V>) -> Vec<(K, &V)> {
        let mut rows: Vec<(K, &V)> = map.iter().map(|(k, v)| (k.clone(), v)).collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    }
    let characters: Vec<Vec<Arg>> = sorted(&updates.seen)
        .into_iter()
        .map(|(name, seen)| {
            vec![
                name.into(),
                seen.char_tag.clone().into(),
                seen.first.into(),
                seen.last.into(),
                seen.deaths.into(),
                seen.total_deaths.into(),
            ]
        })
        .collect();
    let cells: Vec<Vec<Arg>> = sorted(&updates.spawn_cells)
        .into_iter()
        .map(|((hour, x, y), n)| vec![hour.into(), x.into(), y.into(), (*n).into()])
        .collect();
    // (key columns, count, when).
    let counted = |key: Vec<Arg>, n: i64| {
        let mut row = key;
        row.extend([Arg::Int(n), Arg::Time(now)]);
        row
    };
    let per_name = |map| -> Vec<Vec<Arg>> {
        sorted(map)
            .into_iter()
            .map(|(name, n): (String, &i64)| counted(vec![name.into()], *n))
            .collect()
    };
    let per_session = |map| -> Vec<Vec<Arg>> {
        sorted(map)
            .into_iter()
            .map(|((name, session), n): ((String, String), &i64)| {
                counted(vec![name.into(), session.into()], *n)
            })
            .collect()
    };
    let kill_hours: Vec<Vec<Arg>> = sorted(&updates.kill_hours)
        .into_iter()
        .map(|((name, hour), h)| {
            vec![
                name.into(),
                hour.into(),
                h.kills.into(),
                Arg::Float(h.kph_sum),
                h.kph_samples.into(),
            ]
        })
        .collect();
    let of = |t: &Table| (t.name, t.columns);
    let mut statements = multi_row(dialect, of(&CHARACTERS), &characters, CHARACTERS_MERGE);
    statements.extend(multi_row(
        dialect,
        of(&SPAWN_CELLS),
        &cells,
        SPAWN_CELLS_MERGE,
    ));
    statements.extend(multi_row(
        dialect,
        of(&KILL_HOURS),
        &kill_hours,
        KILL_HOURS_MERGE,
    ));
    for (counter, rows) in [
        (&CHAR_STATS, per_name(&updates.kills)),
        (&SESSION_KILLS, per_session(&updates.baselines)),
        (&RARE_STATS, per_name(&updates.rares)),
        (&RARE_SESSIONS, per_session(&updates.session_rares)),
    ] {
        let columns = counter.columns();
        let table = (counter.name, columns.as_slice());
        statements.extend(multi_row(dialect, table, &rows, &counter.merge()));
    }
    statements
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{PluginFrame, parse_plugin_frame};

    #[test]
    fn rows_go_one_statement_each_on_sqlite_and_as_arrays_on_postgres() {
        let spawn = |mob: &str| {
            let text =
                format!(r#"{{"type":"spawn","character_name":"A","mob":"{mob}","ew":1,"ns":2}}"#);
            match parse_plugin_frame(&text) {
                Ok(PluginFrame::Spawn(s)) => Event::Spawn(s),
                other => panic!("spawn: {other:?}"),
            }
        };
        let events = vec![spawn("Drudge"), spawn("Mite")];
        let sqlite = inserts(Dialect::Sqlite, &events, |_| false).expect("rows");
        assert_eq!(sqlite.len(), 2);
        assert_eq!(
            sqlite[0].text,
            "INSERT INTO spawn_events (character_name, mob, timestamp, ew, ns, z, received_at, \
             clock_offset_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        );
        assert_eq!(sqlite[1].text, sqlite[0].text, "one prepared statement");
        assert_eq!(sqlite[1].args[1], Arg::Text("Mite".into()));
        let pg = inserts(Dialect::Postgres, &events, |_| false).expect("rows");
        assert_eq!(pg.len(), 1);
        assert!(
            pg[0]
                .text
                .contains("FROM UNNEST($1::text[], $2::text[], $3::timestamptz[]"),
            "{}",
            pg[0].text
        );
        assert_eq!(
            pg[0].args[1],
            Arg::Column(Column::Text(vec![
                Some("Drudge".into()),
                Some("Mite".into())
            ]))
        );
        assert!(
            inserts(Dialect::Sqlite, &events, |_| true)
                .expect("rows")
                .is_empty()
        );
    }

    #[test]
    fn counters_add_up_and_baselines_replace() {
        let updates = CounterUpdates::default();
        assert!(counter_upserts(Dialect::Sqlite, &updates, Utc::now()).is_empty());
        assert_eq!(
            CHAR_STATS.merge(),
            " ON CONFLICT (character_name) DO UPDATE SET total_kills = char_stats.total_kills \
             + excluded.total_kills, updated_at = excluded.updated_at"
        );
        assert_eq!(
            SESSION_KILLS.merge(),
            " ON CONFLICT (character_name, session_id) DO UPDATE SET last_kills = \
             excluded.last_kills, updated_at = excluded.updated_at"
        );
    }
}
