//! Scheduled backups (BACKUP_DIR, BACKUP_EVERY, BACKUP_KEEP): the running tracker writes the same
//! archive as `dereth-tracker backup` into a directory on a timer and removes the oldest beyond
//! BACKUP_KEEP. A backup runs on a thread of its own (the archive is written with blocking file
//! I/O), so it never holds up the sessions; it reads one snapshot over its own connection, as
//! the command does.
//!
//! Files are named `dereth-YYYYMMDDTHHMMSSZ.backup` (UTC) and only files of that form are ever
//! removed: whatever else the directory holds is left alone. A backup cut short (the tracker
//! stopped or the disk filled) is a `.partial` file, removed at the next start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use super::backup::{self, BackupError, Summary};
use crate::config::Secret;

const PREFIX: &str = "dereth-";
const EXTENSION: &str = "backup";
const STAMP: &str = "%Y%m%dT%H%M%SZ";
/// The first backup after a start waits this long at most (the start's own work comes first).
const FIRST_DELAY: Duration = Duration::from_secs(60);
/// After a failure, the next try comes this soon at most.
const RETRY_AFTER: Duration = Duration::from_secs(600);
/// Free space wanted on the backup disk beyond the last archive's size.
const HEADROOM: f64 = 1.25;

/// What scheduled backups do, from the settings.
#[derive(Debug, Clone)]
pub(crate) struct BackupSchedule {
    pub dir: PathBuf,
    pub every: Duration,
    pub keep: usize,
    pub database_url: crate::config::DatabaseUrl,
    pub password: Option<Secret>,
}

impl BackupSchedule {
    /// Scheduled backups, when BACKUP_DIR is set.
    pub(crate) fn from_settings(settings: &crate::config::Settings) -> Option<Self> {
        let backups = &settings.backups;
        Some(Self {
            dir: backups.backup_dir.clone()?,
            every: backups.backup_every.0,
            keep: usize::try_from(backups.backup_keep).unwrap_or(usize::MAX),
            database_url: settings.database.database_url.clone(),
            password: settings.database.database_password.clone(),
        })
    }
}

/// Series for alerting on backups that stopped happening.
#[derive(Debug, Default)]
pub struct BackupMetrics {
    /// When the newest scheduled backup was written (seconds since the epoch; at the start, the
    /// newest archive found in BACKUP_DIR; 0: none).
    pub last_success_seconds: Gauge,
    /// Size of that archive in bytes.
    pub last_bytes: Gauge,
    /// BACKUP_EVERY in seconds (0: scheduled backups are off).
    pub interval_seconds: Gauge,
    pub failures: Counter,
}

impl BackupMetrics {
    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "dereth_backup_last_success_timestamp_seconds",
            "When the newest scheduled backup was written (at the start: the newest archive in BACKUP_DIR; 0: none)",
            self.last_success_seconds.clone(),
        );
        r.register(
            "dereth_backup_last_bytes",
            "Size of the last scheduled backup's archive",
            self.last_bytes.clone(),
        );
        r.register(
            "dereth_backup_interval_seconds",
            "BACKUP_EVERY in seconds (0: scheduled backups are off)",
            self.interval_seconds.clone(),
        );
        r.register(
            "dereth_backup_failures",
            "Scheduled backups that failed (or were skipped for lack of disk space)",
            self.failures.clone(),
        );
    }
}

/// The archive name for a backup started at `at`.
pub(crate) fn file_name(at: DateTime<Utc>) -> String {
    format!("{PREFIX}{}.{EXTENSION}", at.format(STAMP))
}

/// When the backup named `name` was started, if it is one of ours.
fn started_at(name: &str) -> Option<DateTime<Utc>> {
    let stamp = name.strip_prefix(PREFIX)?.strip_suffix(".backup")?;
    NaiveDateTime::parse_from_str(stamp, STAMP)
        .ok()
        .map(|t| t.and_utc())
}

/// Our archives in `dir`, oldest first.
pub(crate) fn archives(dir: &Path) -> std::io::Result<Vec<(DateTime<Utc>, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(at) = name.to_str().and_then(started_at) else {
            continue;
        };
        if entry.file_type()?.is_file() {
            found.push((at, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Removes our oldest archives beyond `keep`; returns the removed paths.
pub(crate) fn prune(dir: &Path, keep: usize) -> std::io::Result<Vec<PathBuf>> {
    let all = archives(dir)?;
    let excess = all.len().saturating_sub(keep.max(1));
    let mut removed = Vec::new();
    for (_, path) in all.into_iter().take(excess) {
        std::fs::remove_file(&path)?;
        removed.push(path);
    }
    Ok(removed)
}

/// Removes backups cut short by an earlier run (`dereth-*.partial`).
fn remove_partials(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = name
            .strip_suffix(".partial")
            .is_some_and(|stem| started_at(&format!("{stem}.backup")).is_some());
        if ours && entry.file_type()?.is_file() {
            tracing::info!(file = %entry.path().display(), "removing a backup cut short by an earlier run");
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn free_bytes(dir: &Path) -> Option<u64> {
    let vfs = rustix::fs::statvfs(dir).ok()?;
    Some(vfs.f_bavail.saturating_mul(vfs.f_frsize))
}

/// Why a scheduled backup did not happen.
#[derive(Debug, thiserror::Error)]
enum ScheduledError {
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("only {free} bytes free in the backup directory; the last archive took {last}")]
    NoRoom { free: u64, last: u64 },
    #[error("the backup thread ended without an answer")]
    Lost,
}

fn since_epoch(at: DateTime<Utc>) -> i64 {
    at.timestamp()
}

/// Runs until `stop`: a backup every `every`, the first one due `every` after the newest
/// archive already in the directory (or shortly after the start when there is none or it is
/// older).
pub(crate) async fn run(
    schedule: BackupSchedule,
    m: std::sync::Arc<BackupMetrics>,
    stop: CancellationToken,
) {
    m.interval_seconds
        .set(i64::try_from(schedule.every.as_secs()).unwrap_or(i64::MAX));
    if let Err(err) =
        std::fs::create_dir_all(&schedule.dir).and_then(|()| remove_partials(&schedule.dir))
    {
        tracing::error!(dir = %schedule.dir.display(), %err, "scheduled backups: the directory cannot be used");
    }
    let newest = archives(&schedule.dir)
        .ok()
        .and_then(|all| all.last().map(|(at, _)| *at));
    // The newest archive already there counts as the last success: an alert on stale backups
    // neither fires right after every start nor forgets an old failure.
    if let Some(at) = newest {
        m.last_success_seconds.set(since_epoch(at));
    }
    let first = tokio::time::Instant::now() + schedule.every.min(FIRST_DELAY);
    let mut due = match newest {
        Some(at) => {
            let age = (Utc::now() - at).to_std().unwrap_or_default();
            first.max(tokio::time::Instant::now() + schedule.every.saturating_sub(age))
        }
        None => first,
    };
    let mut last_bytes: u64 = 0;
    tracing::info!(
        dir = %schedule.dir.display(),
        every_secs = schedule.every.as_secs(),
        keep = schedule.keep,
        "scheduled backups on"
    );
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(due) => {}
        }
        let started = Utc::now();
        match once(&schedule, started, last_bytes).await {
            Ok((summary, path, bytes)) => {
                last_bytes = bytes;
                m.last_success_seconds.set(since_epoch(Utc::now()));
                m.last_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
                let took = (Utc::now() - started).to_std().unwrap_or_default();
                tracing::info!(
                    file = %path.display(),
                    bytes,
                    took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                    rows = summary.rows.values().sum::<i64>(),
                    "scheduled backup written"
                );
                match prune(&schedule.dir, schedule.keep) {
                    Ok(removed) => {
                        for path in removed {
                            tracing::info!(file = %path.display(), "old backup removed (BACKUP_KEEP)");
                        }
                    }
                    Err(err) => {
                        tracing::warn!(%err, "scheduled backups: old archives could not be removed")
                    }
                }
                due = tokio::time::Instant::now() + schedule.every;
            }
            Err(err) => {
                m.failures.inc();
                tracing::error!(%err, dir = %schedule.dir.display(), "scheduled backup failed; the previous archives are kept");
                due = tokio::time::Instant::now() + schedule.every.min(RETRY_AFTER);
            }
        }
    }
}

/// One backup into the directory, on a thread of its own.
async fn once(
    schedule: &BackupSchedule,
    at: DateTime<Utc>,
    last_bytes: u64,
) -> Result<(Summary, PathBuf, u64), ScheduledError> {
    std::fs::create_dir_all(&schedule.dir)?;
    if last_bytes > 0 {
        let wanted = (last_bytes as f64 * HEADROOM) as u64;
        if let Some(free) = free_bytes(&schedule.dir).filter(|free| *free < wanted) {
            return Err(ScheduledError::NoRoom {
                free,
                last: last_bytes,
            });
        }
    }
    let path = schedule.dir.join(file_name(at));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let url = schedule.database_url.clone();
    let password = schedule.password.clone();
    let target = path.clone();
    std::thread::Builder::new()
        .name("dereth-backup".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(BackupError::from)
                .and_then(|rt| rt.block_on(backup::backup(&url, password.as_ref(), &target)));
            let _ = tx.send(result);
        })?;
    let summary = rx.await.map_err(|_| ScheduledError::Lost)??;
    let bytes = std::fs::metadata(&path)?.len();
    Ok((summary, path, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_time_and_only_ours_are_pruned() {
        let dir = tempfile::tempdir().expect("dir");
        let t0 = DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
            .expect("time")
            .to_utc();
        assert_eq!(file_name(t0), "dereth-20261206T100000Z.backup");
        assert_eq!(started_at(&file_name(t0)), Some(t0));
        for h in 0..5 {
            let name = file_name(t0 + chrono::Duration::hours(h));
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        for other in [
            "notes.txt",
            "dereth-guild.backup",
            "dereth-20261206T100000Z.backup.bak",
        ] {
            std::fs::write(dir.path().join(other), b"x").expect("write");
        }
        std::fs::write(dir.path().join("dereth-20261206T090000Z.partial"), b"x").expect("write");
        let removed = prune(dir.path(), 2).expect("prune");
        assert_eq!(removed.len(), 3);
        let left: Vec<String> = archives(dir.path())
            .expect("list")
            .into_iter()
            .map(|(_, p)| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            left,
            [
                "dereth-20261206T130000Z.backup",
                "dereth-20261206T140000Z.backup"
            ]
        );
        remove_partials(dir.path()).expect("partials");
        let mut rest: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        rest.sort();
        assert_eq!(
            rest,
            [
                "dereth-20261206T100000Z.backup.bak",
                "dereth-20261206T130000Z.backup",
                "dereth-20261206T140000Z.backup",
                "dereth-guild.backup",
                "notes.txt",
            ]
        );
    }
}
