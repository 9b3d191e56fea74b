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

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::store::Event;
use segment::{Appender, Read1, SegmentReader};

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
    replayed_at_start: u64,
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
        let pending = head.saturating_sub(oldest);
        if pending > 0 {
            tracing::info!(events = pending, bytes, dir = %dir.display(), "spool holds events from before the start; they are stored first");
        }
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
            replayed_at_start: pending,
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
            replayed_at_start: s.replayed_at_start,
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

/// An event written, with its number, waiting to be handed on and answered.
type Written = (u64, Box<Event>, oneshot::Sender<Result<u64, SpoolError>>);

/// The thread that writes, syncs and removes the files.
struct Thread {
    dir: PathBuf,
    appender: Appender,
    /// Every segment, oldest first: (first sequence number, bytes).
    segments: VecDeque<(u64, u64)>,
    shared: Arc<Shared>,
    memory: mpsc::Sender<(u64, Event)>,
    options: SpoolOptions,
    dirty: bool,
    last_sync: Instant,
    /// Held while the thread runs: no other tracker uses this directory.
    _lock: std::fs::File,
}

impl Thread {
    /// Serves requests until every handle is gone or one asks to close (returned, to be
    /// answered once the thread has let go of the directory).
    fn run(mut self, inbox: std_mpsc::Receiver<Request>) -> Option<oneshot::Sender<()>> {
        let mut batch = Vec::with_capacity(MOST_AT_ONCE);
        let mut closed = None;
        while closed.is_none() {
            let wait = if self.dirty {
                self.options
                    .sync_interval
                    .saturating_sub(self.last_sync.elapsed())
            } else {
                Duration::from_secs(3600)
            };
            match inbox.recv_timeout(wait) {
                Ok(request) => batch.push(request),
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            }
            while batch.len() < MOST_AT_ONCE {
                match inbox.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            if let Some(i) = batch.iter().position(|r| matches!(r, Request::Close(_))) {
                // What came before the close is handled; appends after it are refused.
                for late in batch.drain(i + 1..) {
                    if let Request::Append { ack, .. } = late {
                        let _ = ack.send(Err(SpoolError::Stopped));
                    }
                }
                if let Some(Request::Close(done)) = batch.pop() {
                    closed = Some(done);
                }
            }
            self.handle(&mut batch);
            if self.dirty && self.last_sync.elapsed() >= self.options.sync_interval {
                self.sync();
            }
        }
        if self.dirty {
            self.sync();
        }
        // Appends that raced the close are refused rather than left unanswered.
        while let Ok(request) = inbox.try_recv() {
            if let Request::Append { ack, .. } = request {
                let _ = ack.send(Err(SpoolError::Stopped));
            }
        }
        closed
    }

    fn handle(&mut self, batch: &mut Vec<Request>) {
        let mut framed = Vec::new();
        let mut written: Vec<Written> = Vec::new();
        let mut syncs = Vec::new();
        let mut committed = None;
        let head = self.shared.head.load(Ordering::Relaxed);
        let mut next = head;
        let mut bytes = self.shared.bytes.load(Ordering::Relaxed);
        for request in batch.drain(..) {
            match request {
                Request::Append {
                    payload,
                    event,
                    ack,
                } => {
                    let size = (segment::HEADER + payload.len()) as u64;
                    if bytes + size > self.options.max_bytes {
                        if !self.shared.full.swap(true, Ordering::Relaxed) {
                            tracing::error!(
                                max_bytes = self.options.max_bytes,
                                "the spool is full: frames are refused until the database stores what it holds"
                            );
                        }
                        let _ = ack.send(Err(SpoolError::Full(self.options.max_bytes)));
                        continue;
                    }
                    segment::frame(&mut framed, next, &payload);
                    bytes += size;
                    written.push((next, event, ack));
                    next += 1;
                }
                Request::Committed(seq) => committed = Some(committed.unwrap_or(0).max(seq)),
                Request::Sync(done) => syncs.push(done),
                Request::Close(done) => syncs.push(done),
            }
        }
        // Stored events free their space first: the appends below may need it.
        if let Some(seq) = committed {
            self.release(seq);
        }
        if !written.is_empty() {
            self.write(&framed, head, written);
        }
        if !syncs.is_empty() {
            self.sync();
            for done in syncs {
                let _ = done.send(());
            }
        }
    }

    fn write(&mut self, framed: &[u8], first: u64, written: Vec<Written>) {
        if self.appender.bytes >= self.options.segment_bytes
            && let Err(err) = self.rotate(first)
        {
            self.fail(&err, written);
            return;
        }
        if let Err(err) = self.appender.write(framed) {
            self.fail(&err, written);
            return;
        }
        let shared = &self.shared;
        let next = first + written.len() as u64;
        shared.head.store(next, Ordering::Release);
        shared
            .bytes
            .fetch_add(framed.len() as u64, Ordering::Relaxed);
        if let Some(last) = self.segments.back_mut() {
            last.1 = self.appender.bytes;
        }
        if shared.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("the spool is written again");
        }
        {
            let mut ages = lock(&shared.ages);
            if ages
                .back()
                .is_none_or(|(_, at)| at.elapsed() >= Duration::from_millis(100))
            {
                ages.push_back((first, Instant::now()));
            }
        }
        self.dirty = true;
        let mut overflowed = false;
        for (seq, event, ack) in written {
            if !shared.overflow.load(Ordering::Acquire) {
                if let Err(mpsc::error::TrySendError::Full(_)) = self.memory.try_send((seq, *event))
                {
                    shared.overflow.store(true, Ordering::Release);
                    overflowed = true;
                }
            } else {
                overflowed = true;
            }
            let _ = ack.send(Ok(seq));
        }
        if overflowed {
            shared.written.notify_one();
        }
    }

    fn fail(&mut self, err: &std::io::Error, written: Vec<Written>) {
        *lock(&self.shared.failed_at) = Some(Instant::now());
        if !self.shared.failing.swap(true, Ordering::Relaxed) {
            tracing::error!(%err, dir = %self.dir.display(), "the spool cannot be written: frames are refused until it can");
        }
        for (_, _, ack) in written {
            let _ = ack.send(Err(SpoolError::Io(err.to_string())));
        }
    }

    /// Closes the current segment (synced) and starts the next at `first`.
    fn rotate(&mut self, first: u64) -> std::io::Result<()> {
        self.appender.sync()?;
        self.appender = Appender::open(&self.dir, first, 0)?;
        self.segments.push_back((first, 0));
        segment::sync_dir(&self.dir)?;
        Ok(())
    }

    /// Removes the segments whose every event is committed (never the one being written).
    fn release(&mut self, seq: u64) {
        let shared = self.shared.clone();
        let committed = seq + 1;
        shared.committed.fetch_max(committed, Ordering::Relaxed);
        let mut removed = false;
        while self.segments.len() > 1 {
            let next_first = self.segments[1].0;
            if next_first > committed {
                break;
            }
            let Some((first, bytes)) = self.segments.pop_front() else {
                break;
            };
            if let Err(err) = std::fs::remove_file(segment::path(&self.dir, first)) {
                tracing::warn!(%err, "could not remove a spool segment whose events are stored");
            }
            shared.bytes.fetch_sub(bytes, Ordering::Relaxed);
            removed = true;
        }
        if removed {
            let _ = segment::sync_dir(&self.dir);
            if shared.full.swap(false, Ordering::Relaxed) {
                tracing::info!("the spool has room again");
            }
        }
        // Everything is stored while the disk refuses writes (or the spool is full): the
        // segment being written holds only stored events; start an empty one so it can go.
        let head = shared.head.load(Ordering::Acquire);
        if committed >= head
            && self.appender.bytes > 0
            && (shared.failing.load(Ordering::Relaxed) || shared.full.load(Ordering::Relaxed))
        {
            self.start_empty(head);
        }
        lock(&shared.ages).retain(|(s, _)| *s >= committed);
        let mut ages = lock(&shared.ages);
        if ages.is_empty() {
            ages.push_back((committed, Instant::now()));
        }
    }

    /// Replaces the only segment, every event of which is stored, with an empty one starting at
    /// `head`, giving its space back to the disk.
    fn start_empty(&mut self, head: u64) {
        // The new file first: should it fail, the old one stays the one being written.
        let appender = match Appender::open(&self.dir, head, 0) {
            Ok(appender) => appender,
            Err(err) => {
                tracing::warn!(%err, "could not start a new spool segment");
                return;
            }
        };
        let old = std::mem::replace(&mut self.appender, appender);
        drop(old);
        let shared = &self.shared;
        for (first, bytes) in std::mem::take(&mut self.segments) {
            if first != head {
                if let Err(err) = std::fs::remove_file(segment::path(&self.dir, first)) {
                    tracing::warn!(%err, "could not remove a spool segment whose events are stored");
                }
                shared.bytes.fetch_sub(bytes, Ordering::Relaxed);
            }
        }
        self.segments.push_back((head, 0));
        self.dirty = false;
        let _ = segment::sync_dir(&self.dir);
        let was_full = shared.full.swap(false, Ordering::Relaxed);
        if shared.failing.swap(false, Ordering::Relaxed) || was_full {
            tracing::info!("every spooled event is stored and its space is free again");
        }
    }

    fn sync(&mut self) {
        match self.appender.sync() {
            Ok(()) => self.dirty = false,
            Err(err) => {
                *lock(&self.shared.failed_at) = Some(Instant::now());
                if !self.shared.failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(%err, "the spool cannot be synced to disk");
                }
            }
        }
        self.last_sync = Instant::now();
    }
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
mod tests {
    use super::*;
    use crate::protocol::{PluginFrame, parse_plugin_frame};

    fn options(dir: &Path, memory: usize) -> SpoolOptions {
        SpoolOptions {
            dir: dir.to_owned(),
            max_bytes: 64 * 1024 * 1024,
            sync_interval: Duration::from_millis(5),
            memory,
            segment_bytes: 4096,
        }
    }

    fn telemetry(kills: i64) -> Event {
        let text = format!(
            r#"{{"type":"telemetry","character_name":"Ann","char_tag":"T","session_id":"s1",
                "timestamp":"2026-12-06T10:00:00.123456Z","ew":"1.5","ns":-2.25,"z":3,
                "kills":{kills},"kills_per_hour":"12.5","onlinetime":"00.01:00:00","deaths":1,
                "total_deaths":4,"rares_found":0,"prismatic_taper_count":"7","vt_state":"Combat",
                "mem_mb":120.5,"cpu_pct":3,"mem_handles":100,"latency_ms":12}}"#
        );
        let Ok(PluginFrame::Telemetry(row)) = parse_plugin_frame(&text) else {
            panic!("telemetry")
        };
        Event::Telemetry {
            row,
            kills_delta: 1,
            kills_baseline: kills,
        }
    }

    fn every_kind() -> Vec<Event> {
        let frame = |text: &str| parse_plugin_frame(text).expect("frame");
        let mut events = vec![telemetry(5)];
        if let PluginFrame::Spawn(s) = frame(
            r#"{"type":"spawn","character_name":"Ann","mob":"Drudge","ew":1,"ns":2,"z":0,"timestamp":"2026-12-06T10:00:00Z"}"#,
        ) {
            events.push(Event::Spawn(s));
        }
        if let PluginFrame::Rare(r) = frame(
            r#"{"type":"rare","character_name":"Ann","name":"Gem","ew":1,"ns":2,"z":0,"timestamp":"2026-12-06T10:00:00Z"}"#,
        ) {
            events.push(Event::Rare {
                rare: r,
                session_id: Some("s1".into()),
            });
        }
        if let PluginFrame::CharacterStats(sheet) = frame(
            r#"{"type":"character_stats","character_name":"Ann","level":"275","total_xp":123,"title":"Hero","attributes":{"strength":{"base":100,"creation":10}},"timestamp":"2026-12-06T10:00:00Z"}"#,
        ) {
            events.push(Event::Sheet(sheet));
        }
        if let PluginFrame::Portal(p) = frame(
            r#"{"type":"portal","character_name":"Ann","portal_name":"Town","ew":1,"ns":2,"z":0,"timestamp":"2026-12-06T10:00:00Z"}"#,
        ) {
            events.push(Event::Portal {
                portal: p,
                session_id: None,
            });
        }
        assert_eq!(events.len(), 5, "one of every kind");
        events
    }

    async fn read_all(reader: &mut SpoolReader, want: usize) -> Vec<(u64, Event)> {
        let mut out = Vec::new();
        while out.len() < want {
            let mut batch = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), reader.next_batch(&mut batch, 7))
                .await
                .expect("events arrive");
            out.extend(batch);
        }
        out
    }

    #[test]
    fn every_event_kind_reads_back_as_it_was() {
        for event in every_kind() {
            let bytes = serde_json::to_vec(&event).expect("encode");
            let back: Event = serde_json::from_slice(&bytes).expect("decode");
            assert_eq!(back, event);
        }
    }

    #[tokio::test]
    async fn events_come_back_in_order_through_memory_and_files() {
        let dir = tempfile::tempdir().expect("dir");
        // Room for 3 in memory: the rest go by the files (a database outage).
        let (spool, mut reader) = Spool::open(&options(dir.path(), 3)).expect("open");
        let mut seqs = Vec::new();
        for kills in 0..50 {
            seqs.push(spool.append(telemetry(kills)).await.expect("append"));
        }
        assert_eq!(seqs, (0..50).collect::<Vec<_>>());
        assert!(
            segment::list(dir.path()).expect("list").len() > 1,
            "rotated"
        );
        let got = read_all(&mut reader, 50).await;
        let kills: Vec<i64> = got
            .iter()
            .map(|(_, e)| match e {
                Event::Telemetry { kills_baseline, .. } => *kills_baseline,
                _ => -1,
            })
            .collect();
        assert_eq!(kills, (0..50).collect::<Vec<_>>());
        assert_eq!(spool.status().depth, 50);
        // Back in memory once caught up.
        spool.append(telemetry(50)).await.expect("append");
        assert_eq!(read_all(&mut reader, 1).await[0].0, 50);
        spool.committed(50);
        spool.sync().await;
        let status = spool.status();
        assert_eq!(status.depth, 0);
        assert_eq!(
            segment::list(dir.path()).expect("list").len(),
            1,
            "only the segment being written is left"
        );
    }

    #[tokio::test]
    async fn a_restarted_spool_hands_out_what_was_not_committed() {
        let dir = tempfile::tempdir().expect("dir");
        {
            let (spool, _reader) = Spool::open(&options(dir.path(), 100)).expect("open");
            for kills in 0..20 {
                spool.append(telemetry(kills)).await.expect("append");
            }
            spool.committed(9);
            spool.sync().await;
        }
        // The thread ends when the last handle goes; give it the moment to let go of the lock.
        let (spool, mut reader) = loop {
            match Spool::open(&options(dir.path(), 100)) {
                Ok(opened) => break opened,
                Err(OpenError::Locked(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(err) => panic!("{err}"),
            }
        };
        assert!(spool.status().replayed_at_start >= 10);
        // The database says 0..=9 are stored.
        reader.skip_to(10);
        let got = read_all(&mut reader, 10).await;
        assert_eq!(
            got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            (10..20).collect::<Vec<_>>()
        );
        // New events continue the numbering.
        assert_eq!(spool.append(telemetry(99)).await.expect("append"), 20);
    }

    #[tokio::test]
    async fn a_torn_last_record_is_cut_away_and_a_second_tracker_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let (spool, _reader) = Spool::open(&options(dir.path(), 100)).expect("open");
        assert!(matches!(
            Spool::open(&options(dir.path(), 100)),
            Err(OpenError::Locked(_))
        ));
        for kills in 0..3 {
            spool.append(telemetry(kills)).await.expect("append");
        }
        spool.sync().await;
        drop(spool);
        drop(_reader);
        let last = *segment::list(dir.path())
            .expect("list")
            .last()
            .expect("a segment");
        let path = segment::path(dir.path(), last);
        let len = std::fs::metadata(&path).expect("meta").len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open")
            .set_len(len - 5)
            .expect("cut");
        let (spool, mut reader) = loop {
            match Spool::open(&options(dir.path(), 100)) {
                Ok(opened) => break opened,
                Err(OpenError::Locked(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(err) => panic!("{err}"),
            }
        };
        let got = read_all(&mut reader, 2).await;
        assert_eq!(got.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![0, 1]);
        // The torn third event's number is used again by the next append.
        assert_eq!(spool.append(telemetry(7)).await.expect("append"), 2);
    }

    #[tokio::test]
    async fn a_full_spool_refuses_and_counts() {
        let dir = tempfile::tempdir().expect("dir");
        let mut small = options(dir.path(), 100);
        small.max_bytes = 3_000;
        let (spool, _reader) = Spool::open(&small).expect("open");
        let mut refused = 0;
        for kills in 0..20 {
            match spool.append(telemetry(kills)).await {
                Ok(_) => {}
                Err(SpoolError::Full(_)) => refused += 1,
                Err(other) => panic!("{other}"),
            }
        }
        assert!(refused > 0);
        assert!(spool.has_room().is_err());
        assert_eq!(spool.status().refused, refused + 1);

        // Once the database has stored all of it, its space is free again although it sat in
        // the segment being written (a small disk holds one segment).
        let last = spool.head() - 1;
        spool.committed(last);
        let deadline = Instant::now() + Duration::from_secs(5);
        while spool.status().bytes > 0 || spool.has_room().is_err() {
            assert!(
                Instant::now() < deadline,
                "space not freed: {:?}",
                spool.status()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            spool.append(telemetry(99)).await.expect("room again"),
            last + 1
        );
        assert_eq!(segment::list(dir.path()).expect("list"), vec![last + 1]);
    }
}
