//! `dereth-tracker backup --to FILE` and `restore --from FILE`: every table the tracker keeps
//! (events, totals, characters, accounts, keys, audit) in one archive that is the same whichever
//! backend wrote it and restores into either, so a guild can move from the SQLite default to
//! PostgreSQL/TimescaleDB keeping its history.
//!
//! The archive is JSON lines: a header (format, version, source backend, build), then for each
//! table a `{"table", "columns"}` line, its rows as arrays in column order, and a
//! `{"end", "rows"}` line, and last a summary with the rows per table, the totals and the
//! SHA-256 of everything before it. Times are RFC 3339 in UTC with microseconds (the form the
//! SQLite store keeps), JSON columns nested JSON. A backup reads every table in one snapshot
//! (a read transaction), so it is consistent while the tracker writes. A restore checks the
//! checksum before it changes anything, refuses a database that holds data unless told to
//! replace it, writes everything in one transaction and compares what it wrote with the
//! archive's summary.
//!
//! Not in the archive, by design: browser sign-in sessions (people sign in again), the spool's
//! marks and the write idempotency keys (they belong to a spool directory and a database, not to
//! the data), the health probe.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::str::FromStr;

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::ConnectOptions;

use crate::config::Secret;
use crate::store::{Store, StoreOptions};

/// What the archive says it is.
const FORMAT: &str = "dereth-tracker-backup";
/// This build writes version 1 and reads it.
const VERSION: u32 = 1;

/// Tables the tracker keeps that are left out of archives on purpose (see the module's notes);
/// every other table must be in [`TABLES`] (a test holds the schema to that).
pub const LEFT_OUT: [&str; 6] = [
    "web_sessions",
    "write_batches",
    "spool_marks",
    "health_probe",
    "access_version",
    "_sqlx_migrations",
];

/// The tables in the archive, in an order that restores (nothing refers to a later one).
pub const TABLES: [&str; 19] = [
    "accounts",
    "api_tokens",
    "plugin_keys",
    "key_characters",
    "command_audit",
    "saved_groups",
    "characters",
    "char_stats",
    "rare_stats",
    "rare_stats_sessions",
    "session_kills",
    "telemetry_events",
    "spawn_events",
    "spawn_cells",
    "kill_hours",
    "character_events",
    "rare_events",
    "portal_events",
    "character_sheets",
];

/// Columns holding JSON (in SQLite as text; PostgreSQL's are found by their type).
const SQLITE_JSON_COLUMNS: [(&str, &str); 1] = [("character_sheets", "data")];

/// Rows inserted per statement on restore.
const CHUNK: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("opening the database: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("not a tracker backup, or damaged: {0}")]
    Damaged(String),
    #[error(
        "the database already holds data ({0}); restore into an empty one, or pass --replace to delete what it holds first"
    )]
    NotEmpty(String),
    #[error("restored {table}: {wrote} rows written, the archive has {archived}")]
    Mismatch {
        table: String,
        wrote: i64,
        archived: i64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    created_at: String,
    /// `sqlite` or `postgres`.
    source: String,
    tracker: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct TableStart {
    table: String,
    columns: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TableEnd {
    end: String,
    rows: i64,
}

/// What a backup holds, or what a restore wrote: rows per table and the totals a guild checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub rows: BTreeMap<String, i64>,
    /// Kills over every character (`char_stats`), rares (`rare_stats`), characters.
    pub total_kills: i64,
    pub total_rares: i64,
    pub characters: i64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (table, rows) in &self.rows {
            writeln!(f, "  {table:<20} {rows:>12} rows")?;
        }
        write!(
            f,
            "  totals: {} characters, {} kills, {} rares",
            self.characters, self.total_kills, self.total_rares
        )
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Trailer {
    summary: Summary,
    /// `sha256:` and the hex digest of every byte before this line.
    checksum: String,
}

/// One open database, either kind.
enum Conn {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

async fn connect(url: &str, password: Option<&Secret>) -> Result<Conn, BackupError> {
    if url.starts_with("sqlite:") {
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
        Ok(Conn::Sqlite(options.connect().await?))
    } else {
        let mut options = sqlx::postgres::PgConnectOptions::from_str(url)?;
        if let Some(p) = password {
            options = options.password(p.expose());
        }
        Ok(Conn::Postgres(options.connect().await?))
    }
}

impl Conn {
    fn kind(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    async fn execute(&mut self, sql: &str) -> Result<(), BackupError> {
        match self {
            Self::Sqlite(c) => {
                sqlx::raw_sql(sql).execute(&mut *c).await?;
            }
            Self::Postgres(c) => {
                sqlx::raw_sql(sql).execute(&mut *c).await?;
            }
        }
        Ok(())
    }

    async fn scalar(&mut self, sql: &str) -> Result<i64, BackupError> {
        Ok(match self {
            Self::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(&mut *c).await?,
            Self::Postgres(c) => sqlx::query_scalar(sql).fetch_one(&mut *c).await?,
        })
    }

    /// The table's columns in order, with whether each holds JSON and whether it is a time
    /// with zone (PostgreSQL).
    async fn columns(&mut self, table: &str) -> Result<Vec<(String, ColumnKind)>, BackupError> {
        Ok(match self {
            Self::Sqlite(c) => {
                let rows: Vec<(String,)> =
                    sqlx::query_as("SELECT name FROM pragma_table_info(?) ORDER BY cid")
                        .bind(table)
                        .fetch_all(&mut *c)
                        .await?;
                rows.into_iter()
                    .map(|(name,)| {
                        let kind = if SQLITE_JSON_COLUMNS.contains(&(table, name.as_str())) {
                            ColumnKind::Json
                        } else {
                            ColumnKind::Plain
                        };
                        (name, kind)
                    })
                    .collect()
            }
            Self::Postgres(c) => {
                let rows: Vec<(String, String)> = sqlx::query_as(
                    "SELECT column_name::text, data_type::text FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = $1 \
                     ORDER BY ordinal_position",
                )
                .bind(table)
                .fetch_all(&mut *c)
                .await?;
                rows.into_iter()
                    .map(|(name, ty)| {
                        let kind = match ty.as_str() {
                            "timestamp with time zone" => ColumnKind::Time,
                            "json" | "jsonb" => ColumnKind::Json,
                            _ => ColumnKind::Plain,
                        };
                        (name, kind)
                    })
                    .collect()
            }
        })
    }

    async fn totals(&mut self) -> Result<Summary, BackupError> {
        let mut rows = BTreeMap::new();
        for table in TABLES {
            let n = self
                .scalar(&format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {table}"))
                .await?;
            rows.insert(table.to_owned(), n);
        }
        Ok(Summary {
            rows,
            total_kills: self
                .scalar("SELECT CAST(COALESCE(SUM(total_kills), 0) AS BIGINT) FROM char_stats")
                .await?,
            total_rares: self
                .scalar("SELECT CAST(COALESCE(SUM(total_rares), 0) AS BIGINT) FROM rare_stats")
                .await?,
            characters: self
                .scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM characters")
                .await?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnKind {
    Plain,
    Json,
    Time,
}

/// A file being written with the SHA-256 of what went in.
struct Hashed<W: Write> {
    out: W,
    hash: Sha256,
}

impl<W: Write> Hashed<W> {
    fn line(&mut self, text: &str) -> std::io::Result<()> {
        self.hash.update(text.as_bytes());
        self.hash.update(b"\n");
        self.out.write_all(text.as_bytes())?;
        self.out.write_all(b"\n")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Writes a backup of the database at `url` to `to` (through a temporary file beside it, renamed
/// when complete: a backup cut short never looks whole). Returns what it holds.
pub async fn backup(
    url: &str,
    password: Option<&Secret>,
    to: &Path,
) -> Result<Summary, BackupError> {
    let partial = to.with_extension("partial");
    let result = write_backup(url, password, to, &partial).await;
    if result.is_err() {
        // A backup that failed leaves nothing that could pass for one.
        let _ = std::fs::remove_file(&partial);
    }
    result
}

async fn write_backup(
    url: &str,
    password: Option<&Secret>,
    to: &Path,
    partial: &Path,
) -> Result<Summary, BackupError> {
    let mut conn = connect(url, password).await?;
    let file = std::fs::File::create(partial)?;
    let mut out = Hashed {
        out: std::io::BufWriter::new(file),
        hash: Sha256::new(),
    };
    out.line(&json(&Header {
        format: FORMAT.to_owned(),
        version: VERSION,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        source: conn.kind().to_owned(),
        tracker: crate::config::VERSION.to_owned(),
    }))?;
    // One snapshot for every table: what the tracker writes meanwhile is in none or all.
    match &conn {
        Conn::Sqlite(_) => conn.execute("BEGIN").await?,
        Conn::Postgres(_) => {
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?;
        }
    }
    let mut rows_by_table = BTreeMap::new();
    for table in TABLES {
        let columns = conn.columns(table).await?;
        out.line(&json(&TableStart {
            table: table.to_owned(),
            columns: columns.iter().map(|(n, _)| n.clone()).collect(),
        }))?;
        let n = dump_table(&mut conn, table, &columns, &mut out).await?;
        out.line(&json(&TableEnd {
            end: table.to_owned(),
            rows: n,
        }))?;
        rows_by_table.insert(table.to_owned(), n);
    }
    let mut summary = conn.totals().await?;
    conn.execute("COMMIT").await?;
    // The rows counted while writing are the snapshot's: they are what the archive holds.
    summary.rows = rows_by_table;
    let checksum = format!("sha256:{}", hex(&out.hash.clone().finalize()));
    let trailer = json(&Trailer {
        summary: summary.clone(),
        checksum,
    });
    out.out.write_all(trailer.as_bytes())?;
    out.out.write_all(b"\n")?;
    let file = out.out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(partial, to)?;
    Ok(summary)
}

async fn dump_table<W: Write>(
    conn: &mut Conn,
    table: &str,
    columns: &[(String, ColumnKind)],
    out: &mut Hashed<W>,
) -> Result<i64, BackupError> {
    let exprs: Vec<String> = columns
        .iter()
        .map(|(name, kind)| match (kind, &*conn) {
            (ColumnKind::Time, Conn::Postgres(_)) => {
                format!("to_char({name} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
            }
            (ColumnKind::Json, Conn::Sqlite(_)) => format!("json({name})"),
            _ => name.clone(),
        })
        .collect();
    let first = columns.first().map_or("1", |(name, _)| name.as_str());
    let mut n = 0;
    match conn {
        Conn::Sqlite(c) => {
            let sql = format!(
                "SELECT json_array({}) FROM {table} ORDER BY {first}",
                exprs.join(", ")
            );
            let mut rows = sqlx::query_scalar::<_, String>(&sql).fetch(&mut *c);
            while let Some(row) = rows.try_next().await? {
                out.line(&row)?;
                n += 1;
            }
        }
        Conn::Postgres(c) => {
            let sql = format!(
                "SELECT json_build_array({})::text FROM {table} ORDER BY {first}",
                exprs.join(", ")
            );
            let mut rows = sqlx::query_scalar::<_, String>(&sql).fetch(&mut *c);
            while let Some(row) = rows.try_next().await? {
                // PostgreSQL spaces its JSON out: written compact, as from SQLite.
                let value: Value = serde_json::from_str(&row)
                    .map_err(|e| BackupError::Damaged(format!("{table}: {e}")))?;
                out.line(&value.to_string())?;
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Checks `from` whole (format, version, checksum) before anything is written; returns its
/// summary.
pub fn verify(from: &Path) -> Result<Summary, BackupError> {
    let file = std::io::BufReader::new(std::fs::File::open(from)?);
    let mut hash = Sha256::new();
    let mut previous: Option<String> = None;
    let mut first = true;
    for line in file.lines() {
        let line = line?;
        if first {
            let header: Header = serde_json::from_str(&line)
                .map_err(|e| BackupError::Damaged(format!("header: {e}")))?;
            if header.format != FORMAT || header.version != VERSION {
                return Err(BackupError::Damaged(format!(
                    "{} version {} (this build reads {FORMAT} version {VERSION})",
                    header.format, header.version
                )));
            }
            first = false;
        }
        if let Some(p) = previous.replace(line) {
            hash.update(p.as_bytes());
            hash.update(b"\n");
        }
    }
    let last = previous.ok_or_else(|| BackupError::Damaged("empty file".into()))?;
    let trailer: Trailer = serde_json::from_str(&last)
        .map_err(|_| BackupError::Damaged("it ends before its summary (cut short?)".into()))?;
    let actual = format!("sha256:{}", hex(&hash.finalize()));
    if trailer.checksum != actual {
        return Err(BackupError::Damaged(format!(
            "checksum {actual} does not match the recorded {}",
            trailer.checksum
        )));
    }
    Ok(trailer.summary)
}

/// Restores `from` into the database at `url` (created and migrated if needed). A database
/// holding data is refused unless `replace`, which deletes what it holds first. Returns what the
/// database holds afterwards (equal to the archive's summary, or an error).
pub async fn restore(
    url: &str,
    password: Option<&Secret>,
    from: &Path,
    replace: bool,
) -> Result<Summary, BackupError> {
    let archived = verify(from)?;
    // The schema of this build (an empty database gets it here).
    let options = StoreOptions {
        password: password.cloned(),
        ..StoreOptions::default()
    };
    Store::connect(url, &options).await?.close().await;
    let mut conn = connect(url, password).await?;
    let before = conn.totals().await?;
    let held: Vec<String> = before
        .rows
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(t, n)| format!("{t}: {n}"))
        .collect();
    if !held.is_empty() && !replace {
        return Err(BackupError::NotEmpty(held.join(", ")));
    }
    conn.execute("BEGIN").await?;
    let result = load(&mut conn, from, replace).await;
    if let Err(err) = result {
        let _ = conn.execute("ROLLBACK").await;
        return Err(err);
    }
    // Signed-in browsers and instances notice the accounts and keys changed.
    conn.execute("UPDATE access_version SET version = version + 1")
        .await?;
    let wrote = conn.totals().await?;
    let totals = |s: &Summary| (s.total_kills, s.total_rares, s.characters);
    if totals(&wrote) != totals(&archived) {
        let _ = conn.execute("ROLLBACK").await;
        return Err(BackupError::Damaged(format!(
            "restored totals (characters, kills, rares) {:?} differ from the archive's {:?}",
            totals(&wrote),
            totals(&archived)
        )));
    }
    for (table, archived_rows) in &archived.rows {
        let n = wrote.rows.get(table).copied().unwrap_or(0);
        if n != *archived_rows {
            let _ = conn.execute("ROLLBACK").await;
            return Err(BackupError::Mismatch {
                table: table.clone(),
                wrote: n,
                archived: *archived_rows,
            });
        }
    }
    conn.execute("COMMIT").await?;
    Ok(wrote)
}

async fn load(conn: &mut Conn, from: &Path, replace: bool) -> Result<(), BackupError> {
    if replace {
        for table in TABLES.iter().rev() {
            conn.execute(&format!("DELETE FROM {table}")).await?;
        }
    }
    let file = std::io::BufReader::new(std::fs::File::open(from)?);
    let mut lines = file.lines();
    let _header = lines.next();
    let mut current: Option<(String, Vec<String>)> = None;
    let mut pending: Vec<Vec<Value>> = Vec::new();
    for line in lines {
        let line = line?;
        if line.starts_with('[') {
            let row: Vec<Value> = serde_json::from_str(&line)
                .map_err(|e| BackupError::Damaged(format!("a row: {e}")))?;
            pending.push(row);
            if pending.len() >= CHUNK
                && let Some((table, columns)) = &current
            {
                insert(conn, table, columns, &pending).await?;
                pending.clear();
            }
            continue;
        }
        if let Ok(start) = serde_json::from_str::<TableStart>(&line) {
            if !TABLES.contains(&start.table.as_str()) {
                return Err(BackupError::Damaged(format!(
                    "unknown table {}",
                    start.table
                )));
            }
            let target: Vec<String> = conn
                .columns(&start.table)
                .await?
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            if let Some(missing) = start.columns.iter().find(|c| !target.contains(c)) {
                return Err(BackupError::Damaged(format!(
                    "{}.{missing} is not a column this build knows (a backup of a newer tracker?)",
                    start.table
                )));
            }
            current = Some((start.table, start.columns));
        } else if serde_json::from_str::<TableEnd>(&line).is_ok() {
            if let Some((table, columns)) = current.take()
                && !pending.is_empty()
            {
                insert(conn, &table, &columns, &pending).await?;
            }
            pending.clear();
        }
    }
    if let Conn::Postgres(_) = conn {
        // Identity columns continue after the restored rows.
        for table in TABLES {
            let has_id = conn.columns(table).await?.iter().any(|(n, _)| n == "id");
            if has_id {
                conn.execute(&format!(
                    "SELECT setval(s, GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), 1)) \
                     FROM pg_get_serial_sequence('{table}', 'id') AS s WHERE s IS NOT NULL"
                ))
                .await?;
            }
        }
    }
    Ok(())
}

async fn insert(
    conn: &mut Conn,
    table: &str,
    columns: &[String],
    rows: &[Vec<Value>],
) -> Result<(), BackupError> {
    let list = columns.join(", ");
    match conn {
        Conn::Sqlite(c) => {
            let picks: Vec<String> = (0..columns.len())
                .map(|i| format!("json_extract(value, '$[{i}]')"))
                .collect();
            let sql = format!(
                "INSERT INTO {table} ({list}) SELECT {} FROM json_each(?)",
                picks.join(", ")
            );
            sqlx::query(&sql)
                .bind(serde_json::to_string(rows).unwrap_or_default())
                .execute(&mut *c)
                .await?;
        }
        Conn::Postgres(c) => {
            let objects: Vec<serde_json::Map<String, Value>> = rows
                .iter()
                .map(|row| columns.iter().cloned().zip(row.iter().cloned()).collect())
                .collect();
            let sql = format!(
                "INSERT INTO {table} ({list}) SELECT {list} FROM json_populate_recordset(NULL::{table}, $1::json)"
            );
            sqlx::query(&sql)
                .bind(serde_json::to_string(&objects).unwrap_or_default())
                .execute(&mut *c)
                .await?;
        }
    }
    Ok(())
}
