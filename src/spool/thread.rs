//! The spool's writing thread: appends in groups, syncs on the group-commit interval, removes
//! segments whose events the database has stored.

use super::*;

/// An event written, with its number, waiting to be handed on and answered.
type Written = (u64, Box<Event>, oneshot::Sender<Result<u64, SpoolError>>);

/// The thread that writes, syncs and removes the files.
pub(super) struct Thread {
    pub(super) dir: PathBuf,
    pub(super) appender: Appender,
    /// Every segment, oldest first: (first sequence number, bytes).
    pub(super) segments: VecDeque<(u64, u64)>,
    pub(super) shared: Arc<Shared>,
    pub(super) memory: mpsc::Sender<(u64, Event)>,
    pub(super) options: SpoolOptions,
    pub(super) dirty: bool,
    pub(super) last_sync: Instant,
    /// Held while the thread runs: no other tracker uses this directory.
    pub(super) _lock: std::fs::File,
}

impl Thread {
    /// Serves requests until every handle is gone or one asks to close (returned, to be
    /// answered once the thread has let go of the directory).
    pub(super) fn run(mut self, inbox: std_mpsc::Receiver<Request>) -> Option<oneshot::Sender<()>> {
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
