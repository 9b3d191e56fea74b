//! The durable spool between accepting an event and storing it.
//!
//! A plugin session hands each event it accepted to [`Spool::append`], which returns once the
//! event is written to a local file (the kernel holds it: a SIGKILL or the OOM killer no longer
//! loses it); the session reads its next frame only then. One thread does the writing: it takes
//! whatever appends are waiting, writes them with one system call, and syncs the file to disk
//! every `sync_interval` (a group commit, so a power loss costs at most that window). Each event
//! gets a sequence number, in the order it was written.
//!
//! The database writer reads the events back in that order through [`SpoolReader`]: from memory
//! while it keeps up (the thread hands each written event on to a bounded in-memory queue), from
//! the files when it fell behind (the memory queue was full: a database outage lasts as long as
//! the disk allows, not as long as memory does) or after a restart. Once the database has
//! committed events, [`Spool::committed`] lets the files holding only those go. The database
//! keeps, in the same transaction as the rows, how far each spool's events are stored
//! (`spool_marks`), so a restarted tracker replays exactly what was not stored yet.

mod segment;
mod thread;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::store::Event;
use segment::{Appender, Read1, SegmentReader};
use thread::Thread;

/// How the spool behaves.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// Its directory (created when missing; one tracker at a time).
    pub dir: PathBuf,
    /// Most bytes its files may hold; appends beyond are refused.
    pub max_bytes: u64,
    /// How often written events are synced to disk.
    pub sync_interval: Duration,
    /// Events kept in memory for the database writer.
    pub memory: usize,
    /// A segment file is closed and a new one started past this size.
    pub segment_bytes: u64,
}

/// Why an event was not spooled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full ({0} bytes): the database has not taken events for a while")]
    Full(u64),
    #[error("the spool cannot be written: {0}")]
    Io(String),
    #[error("the spool has stopped")]
    Stopped,
}

/// What opening the spool could not do.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("spool directory {dir}: {source}")]
    Io {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "spool directory {0} is in use by another tracker: give each instance its own SPOOL_DIR"
    )]
    Locked(String),
}

/// The spool as `/debug`, `/metrics` and `/health` see it.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, PartialEq)]
pub struct SpoolStatus {
    /// Events written and not yet committed by the database.
    pub depth: u64,
    /// Bytes its files hold.
    pub bytes: u64,
    pub max_bytes: u64,
    /// Seconds since the oldest event not yet committed was written (0 when none).
    pub oldest_age_secs: f64,
    /// Events refused because the spool was full or could not be written.
    pub refused: u64,
    /// Records found corrupt (and skipped) when read back.
    pub corrupt: u64,
    /// Whether the last write or sync failed (cleared by the next success).
    pub failing: bool,
    /// Events it held when the tracker started (replayed first).
    pub replayed_at_start: u64,
}

/// State the thread, the sessions and the reader share.
#[derive(Debug)]
struct Shared {
    /// The sequence number the next event gets (every smaller one is written).
    head: AtomicU64,
    /// Every event below this is committed by the database.
    committed: AtomicU64,
    bytes: AtomicU64,
    refused: AtomicU64,
    corrupt: AtomicU64,
    failing: AtomicBool,
    /// When a write or sync last failed: while failing, appends are tried again only once
    /// [`RETRY_FAILING`] has passed since.
    failed_at: Mutex<Option<Instant>>,
    /// An append found no room; cleared when stored events free some.
    full: AtomicBool,
    /// The memory queue was full: events from here on may be on disk only.
    overflow: AtomicBool,
    /// (sequence number, when written), sampled: for the age of the oldest pending event.
    ages: Mutex<VecDeque<(u64, Instant)>>,
    max_bytes: u64,
    /// Events from before the start not in the database (lowered by [`Spool::already_stored`]).
    replayed_at_start: AtomicU64,
    /// Its directory (for the free space of its disk).
    dir: PathBuf,
    /// The head when the spool was opened: events before it are from an earlier run.
    start_head: u64,
    /// Wakes the reader when events were written while the memory queue could not take them.
    written: tokio::sync::Notify,
}

enum Request {
    Append {
        payload: Vec<u8>,
        event: Box<Event>,
        ack: oneshot::Sender<Result<u64, SpoolError>>,
    },
    /// The database committed every event up to and including this one.
    Committed(u64),
    /// Sync now and answer.
    Sync(oneshot::Sender<()>),
    /// Sync, let go of the directory and stop; answered once the lock is released.
    Close(oneshot::Sender<()>),
}

/// The appending side, shared by every session.
#[derive(Debug, Clone)]
pub struct Spool {
    requests: std_mpsc::SyncSender<Request>,
    shared: Arc<Shared>,
    id: Arc<str>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Append { .. } => f.write_str("Append"),
            Self::Committed(n) => write!(f, "Committed({n})"),
            Self::Sync(_) => f.write_str("Sync"),
            Self::Close(_) => f.write_str("Close"),
        }
    }
}

/// Appends waiting for the thread; more make sessions wait (off the runtime's threads).
const REQUESTS: usize = 8192;
/// Most appends written with one system call.
const MOST_AT_ONCE: usize = 4096;

/// While the disk refuses writes, how often an append is let through to try again.
const RETRY_FAILING: Duration = Duration::from_secs(1);

impl Spool {
    /// Opens the spool in `options.dir` (recovering what a crash left: a record cut short at
    /// the end is cut away) and starts its thread. The reader starts at the oldest event the
    /// files hold; the writer moves it past what the database already has
    /// ([`SpoolReader::skip_to`]).
    pub fn open(options: &SpoolOptions) -> Result<(Self, SpoolReader), OpenError> {
        let dir = options.dir.clone();
        let io = |source| OpenError::Io {
            dir: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(io)?;
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(OpenError::Locked(dir.display().to_string()));
        }
        let id = spool_id(&dir).map_err(io)?;
        let mut segments: VecDeque<(u64, u64)> = VecDeque::new();
        let mut head = None;
        let mut corrupt = 0;
        let firsts = segment::list(&dir).map_err(io)?;
        let mut last_good = 0;
        for (i, first) in firsts.iter().enumerate() {
            let path = segment::path(&dir, *first);
            let scan = segment::scan(&path).map_err(io)?;
            if scan.corrupt {
                corrupt += 1;
                tracing::error!(segment = %path.display(), records = scan.records, "spool segment has a corrupt record: the records after it are skipped");
            }
            if scan.torn && i + 1 < firsts.len() {
                tracing::warn!(segment = %path.display(), "spool segment ends in a record cut short");
            }
            head = Some(scan.next_seq.unwrap_or(*first).max(head.unwrap_or(0)));
            segments.push_back((*first, scan.good_bytes));
            last_good = scan.good_bytes;
        }
        let head = head.unwrap_or(0);
        let oldest = segments.front().map_or(head, |s| s.0);
        // Append to the last segment, cut to its last whole record (or a fresh one).
        let appender = match segments.back() {
            Some(&(first, _)) => Appender::open(&dir, first, last_good).map_err(io)?,
            None => {
                segments.push_back((head, 0));
                Appender::open(&dir, head, 0).map_err(io)?
            }
        };
        segment::sync_dir(&dir).map_err(io)?;
        let bytes: u64 = segments.iter().map(|s| s.1).sum();
        let shared = Arc::new(Shared {
            head: AtomicU64::new(head),
            committed: AtomicU64::new(oldest),
            bytes: AtomicU64::new(bytes),
            refused: AtomicU64::new(0),
            corrupt: AtomicU64::new(corrupt),
            failing: AtomicBool::new(false),
            failed_at: Mutex::new(None),
            full: AtomicBool::new(false),
            // What the files hold is not in memory: the reader starts on disk.
            overflow: AtomicBool::new(true),
            ages: Mutex::new(VecDeque::from([(oldest, Instant::now())])),
            max_bytes: options.max_bytes,
            replayed_at_start: AtomicU64::new(head.saturating_sub(oldest)),
            dir: dir.clone(),
            start_head: head,
            written: tokio::sync::Notify::new(),
        });
        let (requests, inbox) = std_mpsc::sync_channel(REQUESTS);
        let (memory_tx, memory) = mpsc::channel(options.memory.max(1));
        let thread = Thread {
            dir: dir.clone(),
            appender,
            segments,
            shared: shared.clone(),
            memory: memory_tx,
            options: options.clone(),
            dirty: false,
            last_sync: Instant::now(),
            _lock: lock,
        };
        std::thread::Builder::new()
            .name("spool".into())
            .spawn(move || {
                let closed = thread.run(inbox);
                // `thread` (and with it the directory's lock) is gone by now.
                if let Some(done) = closed {
                    let _ = done.send(());
                }
            })
            .map_err(io)?;
        let reader = SpoolReader {
            memory,
            held: None,
            next: oldest,
            shared: shared.clone(),
            dir,
            cursor: None,
        };
        Ok((
            Self {
                requests,
                shared,
                id: Arc::from(id.as_str()),
            },
            reader,
        ))
    }

    /// This spool's identity (kept in its directory): the database remembers how far each
    /// spool's events are stored.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The sequence number the next event will get: every smaller one is written.
    pub fn head(&self) -> u64 {
        self.shared.head.load(Ordering::Acquire)
    }

    /// At the start: the database already has every event up to `upto` (its spool mark), so
    /// only those after it are from before the start and still to store.
    pub fn already_stored(&self, upto: u64) {
        self.committed(upto);
        let left = self
            .shared
            .start_head
            .saturating_sub(upto.saturating_add(1));
        self.shared
            .replayed_at_start
            .fetch_min(left, Ordering::Relaxed);
    }

    /// Whether every event from before this start is stored (or there were none).
    pub fn replayed(&self) -> bool {
        self.shared.committed.load(Ordering::Relaxed) >= self.shared.start_head
    }

    /// Whether an event of about `bytes` would fit now (checked before a frame is applied, so a
    /// frame that cannot be kept changes nothing).
    pub fn has_room(&self) -> Result<(), SpoolError> {
        let held = self.shared.bytes.load(Ordering::Relaxed);
        if held >= self.shared.max_bytes || self.shared.full.load(Ordering::Relaxed) {
            return Err(self.refuse(SpoolError::Full(self.shared.max_bytes)));
        }
        // A disk that refused the last write is tried again by one append a second; the others
        // are refused before they change anything.
        if self.shared.failing.load(Ordering::Relaxed)
            && lock(&self.shared.failed_at).is_some_and(|at| at.elapsed() < RETRY_FAILING)
        {
            return Err(self.refuse(SpoolError::Io(
                "the disk refused the last write (tried again each second)".into(),
            )));
        }
        Ok(())
    }

    fn refuse(&self, err: SpoolError) -> SpoolError {
        self.shared.refused.fetch_add(1, Ordering::Relaxed);
        err
    }

    /// Writes `event` to the spool; its sequence number once the kernel holds it.
    pub async fn append(&self, event: Event) -> Result<u64, SpoolError> {
        let payload = serde_json::to_vec(&event).map_err(|e| SpoolError::Io(e.to_string()))?;
        let (ack, answer) = oneshot::channel();
        let request = Request::Append {
            payload,
            event: Box::new(event),
            ack,
        };
        match self.requests.try_send(request) {
            Ok(()) => {}
            Err(std_mpsc::TrySendError::Full(request)) => {
                // The thread is behind (a slow disk): wait for room off the runtime's threads.
                let requests = self.requests.clone();
                let sent = tokio::task::spawn_blocking(move || requests.send(request)).await;
                if !matches!(sent, Ok(Ok(()))) {
                    return Err(SpoolError::Stopped);
                }
            }
            Err(std_mpsc::TrySendError::Disconnected(_)) => return Err(SpoolError::Stopped),
        }
        match answer.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(err)) => Err(self.refuse(err)),
            Err(_) => Err(SpoolError::Stopped),
        }
    }

    /// The database committed every event up to and including `seq`: their files may go.
    pub fn committed(&self, seq: u64) {
        self.shared.committed.fetch_max(seq + 1, Ordering::Relaxed);
        let _ = self.requests.try_send(Request::Committed(seq));
    }

    /// Syncs what was written to disk now (at shutdown).
    pub async fn sync(&self) {
        let (tx, rx) = oneshot::channel();
        let requests = self.requests.clone();
        let sent = tokio::task::spawn_blocking(move || requests.send(Request::Sync(tx))).await;
        if matches!(sent, Ok(Ok(()))) {
            let _ = rx.await;
        }
    }

    /// Syncs and stops: the directory is free for the next tracker when this returns. Appends
    /// after it fail.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        let requests = self.requests.clone();
        let sent = tokio::task::spawn_blocking(move || requests.send(Request::Close(tx))).await;
        if matches!(sent, Ok(Ok(()))) {
            let _ = rx.await;
        }
    }

    /// Bytes free (to an unprivileged writer) and in all on the spool's disk, if it can be
    /// asked.
    pub fn disk(&self) -> Option<(u64, u64)> {
        let vfs = rustix::fs::statvfs(&self.shared.dir).ok()?;
        Some((
            vfs.f_bavail.saturating_mul(vfs.f_frsize),
            vfs.f_blocks.saturating_mul(vfs.f_frsize),
        ))
    }

    pub fn status(&self) -> SpoolStatus {
        let s = &self.shared;
        let committed = s.committed.load(Ordering::Relaxed);
        let head = s.head.load(Ordering::Relaxed);
        let depth = head.saturating_sub(committed);
        let oldest_age_secs = if depth == 0 {
            0.0
        } else {
            // The newest sample at or before the oldest pending event: it was written then or
            // later.
            let ages = lock(&s.ages);
            ages.iter()
                .take_while(|(seq, _)| *seq <= committed)
                .last()
                .or(ages.front())
                .map_or(0.0, |(_, at)| at.elapsed().as_secs_f64())
        };
        SpoolStatus {
            depth,
            bytes: s.bytes.load(Ordering::Relaxed),
            max_bytes: s.max_bytes,
            oldest_age_secs,
            refused: s.refused.load(Ordering::Relaxed),
            corrupt: s.corrupt.load(Ordering::Relaxed),
            failing: s.failing.load(Ordering::Relaxed),
            replayed_at_start: s.replayed_at_start.load(Ordering::Relaxed),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The spool's identity, created on first use.
fn spool_id(dir: &Path) -> std::io::Result<String> {
    let path = dir.join("spool.id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let id = format!(
        "{:016x}{:016x}",
        getrandom::u64().unwrap_or_default(),
        getrandom::u64().unwrap_or_else(|_| fastrand::u64(..))
    );
    let tmp = dir.join("spool.id.tmp");
    std::fs::write(&tmp, &id)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    segment::sync_dir(dir)?;
    Ok(id)
}

/// The database writer's side: every spooled event, in order, once.
#[derive(Debug)]
pub struct SpoolReader {
    memory: mpsc::Receiver<(u64, Event)>,
    /// An event taken from the memory queue and not used yet.
    held: Option<(u64, Event)>,
    /// The sequence number of the next event to hand out.
    next: u64,
    shared: Arc<Shared>,
    dir: PathBuf,
    /// Where reading the files continues: (segment's first sequence number, the reader).
    cursor: Option<(u64, SegmentReader)>,
}

impl std::fmt::Debug for SegmentReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SegmentReader(at {})", self.offset)
    }
}

impl SpoolReader {
    /// Skips every event before `seq` (the database has them).
    pub fn skip_to(&mut self, seq: u64) {
        if seq > self.next {
            self.next = seq;
            self.cursor = None;
        }
    }

    /// The sequence number of the next event to hand out.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Adds up to `max` next events to `out` (at least one: waits for it).
    pub async fn next_batch(&mut self, out: &mut Vec<(u64, Event)>, max: usize) -> usize {
        loop {
            if self.held.is_none() {
                self.held = self.memory.try_recv().ok();
            }
            match self.held.take() {
                Some((seq, _)) if seq < self.next => continue,
                Some((seq, event)) if seq == self.next => {
                    out.push((seq, event));
                    self.next += 1;
                    while out.len() < max {
                        match self.memory.try_recv() {
                            Ok((seq, event)) if seq == self.next => {
                                out.push((seq, event));
                                self.next += 1;
                            }
                            Ok((seq, _)) if seq < self.next => {}
                            Ok(other) => {
                                self.held = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    return out.len();
                }
                Some(later) => {
                    let until = later.0;
                    self.held = Some(later);
                    let n = self.read_files(out, max, until);
                    if n > 0 {
                        return n;
                    }
                    // The files do not hold the gap (corrupt or removed): go on after it.
                    self.next = until;
                    self.cursor = None;
                }
                None => {
                    let head = self.shared.head.load(Ordering::Acquire);
                    if self.next < head {
                        let n = self.read_files(out, max, head);
                        if n > 0 {
                            return n;
                        }
                        self.next = head;
                        self.cursor = None;
                        continue;
                    }
                    // Caught up: events from now on come through memory again.
                    self.shared.overflow.store(false, Ordering::Release);
                    if self.shared.head.load(Ordering::Acquire) > self.next {
                        continue;
                    }
                    tokio::select! {
                        received = self.memory.recv() => match received {
                            Some(item) => self.held = Some(item),
                            None => {
                                if self.shared.head.load(Ordering::Acquire) <= self.next {
                                    return out.len();
                                }
                            }
                        },
                        () = self.shared.written.notified() => {}
                    }
                }
            }
        }
    }

    /// Reads events `self.next..until` (at most `max` in `out`) from the files.
    fn read_files(&mut self, out: &mut Vec<(u64, Event)>, max: usize, until: u64) -> usize {
        let start = out.len();
        while out.len() < max && self.next < until {
            let record = match self.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(err) => {
                    tracing::error!(%err, "reading the spool failed");
                    break;
                }
            };
            if record.seq < self.next {
                continue;
            }
            if record.seq >= until {
                break;
            }
            match serde_json::from_slice::<Event>(&record.payload) {
                Ok(event) => out.push((record.seq, event)),
                Err(err) => {
                    self.shared.corrupt.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%err, seq = record.seq, "a spooled event cannot be read back; skipped");
                }
            }
            self.next = record.seq + 1;
        }
        out.len() - start
    }

    /// The next record at or after `self.next`, across segments; `None` when the files hold
    /// nothing more yet.
    fn next_record(&mut self) -> std::io::Result<Option<segment::Record>> {
        loop {
            if self.cursor.is_none() {
                let firsts = segment::list(&self.dir)?;
                let Some(&first) = firsts.iter().rev().find(|f| **f <= self.next) else {
                    // Removed (stored meanwhile): go on at the oldest file after it.
                    match firsts.iter().find(|f| **f > self.next) {
                        Some(&f) => {
                            self.next = f;
                            continue;
                        }
                        None => return Ok(None),
                    }
                };
                let path = segment::path(&self.dir, first);
                self.cursor = Some((first, SegmentReader::open(&path)?));
            }
            let Some((first, reader)) = self.cursor.as_mut() else {
                return Ok(None);
            };
            let first = *first;
            let offset = reader.offset;
            let end = match reader.next()? {
                Read1::Record(r) => return Ok(Some(r)),
                Read1::End | Read1::Torn => false,
                Read1::Corrupt => {
                    self.shared.corrupt.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        segment = first,
                        "a corrupt spool record: the rest of its segment is skipped"
                    );
                    true
                }
            };
            // The end of this file (or of what can be read of it): the next file, once the
            // thread has started one; until then this one may still grow.
            match segment::list(&self.dir)?.into_iter().find(|f| *f > first) {
                Some(later) => {
                    self.next = self.next.max(later);
                    self.cursor = None;
                }
                None if end => return Ok(None),
                None => {
                    let path = segment::path(&self.dir, first);
                    self.cursor = Some((first, SegmentReader::open_at(&path, offset)?));
                    return Ok(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
