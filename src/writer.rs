//! The persistence task: reads the spool in order and stores its events in batches, retrying
//! with backoff (and keeping its batch) while the database cannot take them.
//!
//! Ingest never awaits the database: a plugin's frame is done once its event is in the spool,
//! so a slow or absent database only makes the spool grow. Every batch's transaction also
//! records how far the spool is stored (`spool_marks`); a restarted writer starts right after
//! that point, so a crash neither loses nor repeats an event. While idle, the writer writes a
//! probe row now and then, so `/health` learns within seconds that the database cannot be
//! written even when nothing is arriving.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ops::metrics::{self, Metrics};
use crate::spool::{Spool, SpoolReader};
use crate::store::{Event, SpoolMark, Store, StoreError};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A batch the database rejects as invalid data is retried this many times before its events are
/// written one by one to isolate the bad ones.
const PERMANENT_RETRIES: u32 = 3;
/// With nothing to write for this long, the writer checks that the database can be written.
const PROBE_WHEN_IDLE: Duration = Duration::from_secs(3);

/// How the writer behaves.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Most events per transaction.
    pub batch_size: usize,
    /// After the stop signal, how long to keep storing spooled events (and retrying a failing
    /// database); the rest stays in the spool for the next start.
    pub flush_window: Duration,
}

/// What the writer did over its lifetime, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterReport {
    pub written: u64,
    /// Events the database rejected as invalid, one by one (logged with the reason).
    pub lost: u64,
    /// Events still in the spool when it stopped: stored first at the next start.
    pub left: u64,
}

/// Runs until `stop` is cancelled, then keeps storing for the flush window.
pub async fn run(
    store: Store,
    spool: Spool,
    mut reader: SpoolReader,
    metrics: Arc<Metrics>,
    config: WriterConfig,
    stop: CancellationToken,
) -> WriterReport {
    let mut writer = Writer {
        store,
        spool,
        metrics,
        config,
        stop,
        report: WriterReport::default(),
        deadline: None,
    };
    if writer.resume(&mut reader).await {
        writer.drain(&mut reader).await;
    }
    writer.report.left = writer.spool.status().depth;
    writer.spool.sync().await;
    let report = writer.report;
    if report.left > 0 {
        tracing::warn!(
            written = report.written,
            left = report.left,
            "writer stopped; events not stored yet stay in the spool and are stored first at the next start"
        );
    } else {
        tracing::info!(
            written = report.written,
            "writer stopped with every event stored"
        );
    }
    report
}

/// The writer task's handles and what it has done.
struct Writer {
    store: Store,
    spool: Spool,
    metrics: Arc<Metrics>,
    config: WriterConfig,
    stop: CancellationToken,
    report: WriterReport,
    /// Set once the stop signal is seen: the writer stops then.
    deadline: Option<Instant>,
}

impl Writer {
    /// Learns from the database how far the spool is stored and moves the reader past it.
    /// False when the stop came first (everything stays in the spool).
    async fn resume(&mut self, reader: &mut SpoolReader) -> bool {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt: u64 = 0;
        loop {
            attempt += 1;
            match self.store.spool_mark(self.spool.id()).await {
                Ok(mark) => {
                    if let Some(upto) = mark {
                        reader.skip_to(upto + 1);
                        self.spool.committed(upto);
                    }
                    let pending = self.spool.status().depth;
                    if pending > 0 {
                        tracing::info!(
                            events = pending,
                            "storing what the spool kept from before the start"
                        );
                    }
                    // Reading the mark is not a write: health keeps what the last write said.
                    return true;
                }
                Err(err) => {
                    self.metrics.write_failed(&err);
                    if attempt == 1 || attempt.is_power_of_two() {
                        tracing::warn!(error = %err, attempt, "cannot read how far the spool is stored yet; retrying");
                    }
                }
            }
            if !self.wait_to_retry(&mut backoff).await {
                return false;
            }
        }
    }

    /// Stores the spool's events until the stop (plus the flush window).
    async fn drain(&mut self, reader: &mut SpoolReader) {
        let batch_size = self.config.batch_size.max(1);
        let mut batch: Vec<(u64, Event)> = Vec::with_capacity(batch_size);
        loop {
            if self.past_deadline() {
                return;
            }
            if self.deadline.is_some() && reader.position() >= self.spool.head() {
                return; // stopping, and everything is stored
            }
            let until = self.deadline.unwrap_or_else(Instant::now);
            let read = tokio::select! {
                biased;
                n = reader.next_batch(&mut batch, batch_size) => Some(n),
                () = tokio::time::sleep_until(until), if self.deadline.is_some() => return,
                () = self.stop.cancelled(), if self.deadline.is_none() => {
                    self.start_flush_clock();
                    None
                }
                () = tokio::time::sleep(PROBE_WHEN_IDLE), if self.deadline.is_none() => {
                    self.probe().await;
                    None
                }
            };
            match read {
                Some(0) => return, // the spool stopped
                // Given up at the deadline: nothing after it may be stored before it is.
                Some(_) if !self.write(&mut batch).await => return,
                _ => {}
            }
        }
    }

    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn start_flush_clock(&mut self) {
        if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.config.flush_window);
        }
    }

    /// Checks that the database can be written while nothing else is being written.
    async fn probe(&mut self) {
        match self.store.probe_write().await {
            Ok(()) => self.metrics.write_succeeded(),
            Err(err) => {
                if self.metrics.write_failed(&err) == 1 {
                    tracing::error!(error = %err, "the database cannot be written");
                }
            }
        }
    }

    /// Waits `backoff` before a retry (doubling it for the next one). While running, the stop
    /// signal cuts the wait short and starts the flush clock. False when the flush window would
    /// run out first: stop trying.
    async fn wait_to_retry(&mut self, backoff: &mut Duration) -> bool {
        match self.deadline {
            Some(deadline) if Instant::now() + *backoff > deadline => return false,
            Some(_) => tokio::time::sleep(*backoff).await,
            None => {
                tokio::select! {
                    () = tokio::time::sleep(*backoff) => {}
                    () = self.stop.cancelled() => self.start_flush_clock(),
                }
            }
        }
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
        true
    }

    fn mark(&self, upto: u64) -> SpoolMark {
        SpoolMark {
            spool_id: self.spool.id().to_owned(),
            upto,
        }
    }

    /// Stores `batch` (emptying it), retrying transient failures until it succeeds or the flush
    /// window runs out (then its events stay in the spool, and false); events that the database
    /// rejects as invalid are isolated and dropped with a log line.
    async fn write(&mut self, batch: &mut Vec<(u64, Event)>) -> bool {
        let (Some(first), Some(last)) = (batch.first().map(|e| e.0), batch.last().map(|e| e.0))
        else {
            return true;
        };
        let events: Vec<Event> = batch.drain(..).map(|(_, e)| e).collect();
        let key = format!("{}-{first}-{}", self.spool.id(), events.len());
        let mark = self.mark(last);
        let mut backoff = FIRST_BACKOFF;
        let mut permanent_failures = 0;
        let mut attempt: u64 = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            match self.store.write_spooled(&key, &events, &mark).await {
                Ok(fresh) => {
                    let n = events.len() as u64;
                    if !fresh {
                        tracing::warn!(
                            events = n,
                            attempt,
                            "batch was already committed (the reply to its commit was lost); \
                             nothing written twice"
                        );
                        metrics::bump(&self.metrics.batches_replayed);
                    }
                    self.metrics
                        .write_batch_seconds
                        .observe(started.elapsed().as_secs_f64());
                    metrics::add(&self.metrics.events_written, n);
                    metrics::bump(&self.metrics.write_batches);
                    self.metrics.write_succeeded();
                    self.report.written += n;
                    if attempt > 1 {
                        tracing::info!(events = n, attempt, "database write succeeded again");
                    }
                    self.spool.committed(last);
                    return true;
                }
                Err(err) => {
                    metrics::bump(&self.metrics.write_failures);
                    let streak = self.metrics.write_failed(&err);
                    if err.is_data_error() {
                        permanent_failures += 1;
                        if permanent_failures > PERMANENT_RETRIES {
                            return self.isolate(first, events, err).await;
                        }
                    }
                    if streak == 1 || streak.is_power_of_two() {
                        tracing::warn!(
                            error = %err,
                            events = events.len(),
                            attempt,
                            retry_in = ?backoff,
                            "database write failed; the events stay in the spool and are retried"
                        );
                    }
                }
            }
            if !self.wait_to_retry(&mut backoff).await {
                return false;
            }
        }
    }

    /// Writes the events of a batch the database keeps rejecting one at a time (each under its
    /// own key), dropping (and logging) only those the database rejects as invalid on their own.
    /// Any other failure (a lost connection, a database restarting) is retried with backoff like
    /// a whole batch: nothing valid is dropped.
    async fn isolate(&mut self, first: u64, events: Vec<Event>, cause: StoreError) -> bool {
        tracing::error!(error = %cause, events = events.len(), "batch rejected by the database; writing its events one by one");
        let mut backoff = FIRST_BACKOFF;
        let mut index = 0;
        while let Some(event) = events.get(index) {
            let seq = first + index as u64;
            let key = format!("{}-{seq}-1", self.spool.id());
            match self
                .store
                .write_spooled(&key, std::slice::from_ref(event), &self.mark(seq))
                .await
            {
                Ok(_) => {
                    metrics::bump(&self.metrics.events_written);
                    self.metrics.write_succeeded();
                    self.report.written += 1;
                    self.spool.committed(seq);
                    index += 1;
                    backoff = FIRST_BACKOFF;
                }
                Err(err) if err.is_data_error() => {
                    tracing::error!(error = %err, ?event, "event rejected by the database; dropped");
                    metrics::bump(&self.metrics.events_dropped);
                    self.report.lost += 1;
                    self.spool.committed(seq);
                    index += 1;
                }
                Err(err) => {
                    metrics::bump(&self.metrics.write_failures);
                    self.metrics.write_failed(&err);
                    tracing::warn!(error = %err, retry_in = ?backoff, "database write failed while isolating a rejected batch; retrying");
                    if !self.wait_to_retry(&mut backoff).await {
                        return false;
                    }
                }
            }
        }
        true
    }
}
