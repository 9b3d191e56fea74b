//! The persistence task: drains the bounded event queue in batches into the store, retrying with
//! backoff (and keeping its batch) while the database is unreachable.
//!
//! Ingest never awaits the database: it only awaits space in the queue, so a slow or absent
//! database slows plugins down (backpressure) instead of losing what they sent.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ops::metrics::{self, Metrics};
use crate::store::{Event, Store, StoreError};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A batch the database rejects as invalid data is retried this many times before its events are
/// written one by one to isolate the bad ones.
const PERMANENT_RETRIES: u32 = 3;

/// How the writer behaves.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Most events per transaction.
    pub batch_size: usize,
    /// After the stop signal, how long to keep retrying queued events against a failing database.
    pub flush_window: Duration,
}

/// What the writer did over its lifetime, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterReport {
    pub written: u64,
    /// Events given up on: rejected by the database as invalid, or still unwritten when the
    /// shutdown flush window ran out.
    pub lost: u64,
}

/// The events being written and the sequence number of the first: events are numbered as the
/// writer takes them from the queue, so any run of them has a key that stays the same however
/// often it is retried.
struct Batch {
    /// Unique to this writer run (random), so keys of different runs never collide.
    instance: String,
    events: Vec<Event>,
    first_seq: u64,
    /// The number the next event taken from the queue gets.
    next_seq: u64,
}

impl Batch {
    fn new(capacity: usize) -> Self {
        let instance = match getrandom::u64() {
            Ok(n) => format!("{n:016x}"),
            // No entropy source: the start time in nanoseconds is unique enough per run.
            Err(_) => format!(
                "t{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default()
            ),
        };
        Self {
            instance,
            events: Vec::with_capacity(capacity),
            first_seq: 0,
            next_seq: 0,
        }
    }

    /// Takes up to `max` more events from the queue (waiting for one when empty).
    async fn fill(&mut self, queue: &mut mpsc::Receiver<Event>, max: usize) -> usize {
        if self.events.is_empty() {
            self.first_seq = self.next_seq;
        }
        let n = queue.recv_many(&mut self.events, max).await;
        self.next_seq += n as u64;
        n
    }

    /// The key of `len` events starting at sequence number `first`.
    fn key(&self, first: u64, len: usize) -> String {
        format!("{}-{first}-{len}", self.instance)
    }
}

/// Runs until `stop` is cancelled (then drains the queue and flushes) or every sender is gone.
pub async fn run(
    store: Store,
    mut queue: mpsc::Receiver<Event>,
    metrics: Arc<Metrics>,
    config: WriterConfig,
    stop: CancellationToken,
) -> WriterReport {
    let batch_size = config.batch_size.max(1);
    let mut batch = Batch::new(batch_size);
    let mut writer = Writer {
        store,
        metrics,
        config,
        stop,
        report: WriterReport::default(),
        deadline: None,
    };
    // Before the stop signal there is no deadline: a batch is kept until the database takes it.
    while !writer.stop.is_cancelled() {
        let received = tokio::select! {
            biased;
            n = batch.fill(&mut queue, batch_size) => n,
            () = writer.stop.cancelled() => break,
        };
        if received == 0 {
            break; // every sender is gone
        }
        writer.write(&mut batch).await;
    }

    // Stop: refuse new events, then flush what is queued within the flush window (counted from
    // the stop signal, which a retry in progress may already have seen).
    queue.close();
    writer.start_flush_clock();
    loop {
        if batch.events.is_empty() && batch.fill(&mut queue, batch_size).await == 0 {
            break;
        }
        writer.write(&mut batch).await;
    }
    let report = writer.report;
    tracing::info!(
        written = report.written,
        lost = report.lost,
        "writer stopped after flushing the queue"
    );
    report
}

/// The writer task's handles and what it has done.
struct Writer {
    store: Store,
    metrics: Arc<Metrics>,
    config: WriterConfig,
    stop: CancellationToken,
    report: WriterReport,
    /// Set once the stop signal is seen: retries end then, and what is unwritten is lost.
    deadline: Option<Instant>,
}

impl Writer {
    fn start_flush_clock(&mut self) {
        if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.config.flush_window);
        }
    }

    /// Waits `backoff` before a retry (doubling it for the next one). While running, the stop
    /// signal cuts the wait short and starts the flush clock. False when the flush window would
    /// run out first: give up.
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

    /// Counts `n` events given up on.
    fn lose(&mut self, n: u64, why: &str) {
        tracing::error!(events = n, "{why}; these events are lost");
        metrics::add(&self.metrics.events_dropped, n);
        self.report.lost += n;
    }

    /// Writes `batch` (emptying it), retrying transient failures until it succeeds or the flush
    /// window runs out; events that the database rejects as invalid are isolated and dropped
    /// with a log line.
    async fn write(&mut self, batch: &mut Batch) {
        let mut backoff = FIRST_BACKOFF;
        let mut permanent_failures = 0;
        let mut attempt: u64 = 0;
        let key = batch.key(batch.first_seq, batch.events.len());
        loop {
            attempt += 1;
            let started = Instant::now();
            match self.store.write_batch(&key, &batch.events).await {
                Ok(fresh) => {
                    let n = batch.events.len() as u64;
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
                    self.report.written += n;
                    if attempt > 1 {
                        tracing::info!(events = n, attempt, "database write succeeded again");
                    }
                    batch.events.clear();
                    return;
                }
                Err(err) => {
                    metrics::bump(&self.metrics.write_failures);
                    if err.is_data_error() {
                        permanent_failures += 1;
                        if permanent_failures > PERMANENT_RETRIES {
                            self.isolate(batch, err).await;
                            return;
                        }
                    }
                    if attempt == 1 || attempt.is_power_of_two() {
                        tracing::warn!(
                            error = %err,
                            events = batch.events.len(),
                            attempt,
                            retry_in = ?backoff,
                            "database write failed; keeping the batch and retrying"
                        );
                    }
                }
            }
            if !self.wait_to_retry(&mut backoff).await {
                let n = batch.events.len() as u64;
                self.lose(
                    n,
                    "shutdown flush window ran out with the database still failing",
                );
                batch.events.clear();
                return;
            }
        }
    }

    /// Writes the events of a batch the database keeps rejecting one at a time (each under its
    /// own key), dropping (and logging) only those the database rejects as invalid on their own.
    /// Any other failure (a lost connection, a database restarting) is retried with backoff like
    /// a whole batch: nothing valid is dropped.
    async fn isolate(&mut self, batch: &mut Batch, cause: StoreError) {
        tracing::error!(error = %cause, events = batch.events.len(), "batch rejected by the database; writing its events one by one");
        let first = batch.first_seq;
        let events = std::mem::take(&mut batch.events);
        let mut backoff = FIRST_BACKOFF;
        let mut index = 0;
        while let Some(event) = events.get(index) {
            let key = batch.key(first + index as u64, 1);
            match self
                .store
                .write_batch(&key, std::slice::from_ref(event))
                .await
            {
                Ok(_) => {
                    metrics::bump(&self.metrics.events_written);
                    self.report.written += 1;
                    index += 1;
                    backoff = FIRST_BACKOFF;
                }
                Err(err) if err.is_data_error() => {
                    tracing::error!(error = %err, ?event, "event rejected by the database; dropped");
                    metrics::bump(&self.metrics.events_dropped);
                    self.report.lost += 1;
                    index += 1;
                }
                Err(err) => {
                    metrics::bump(&self.metrics.write_failures);
                    tracing::warn!(error = %err, retry_in = ?backoff, "database write failed while isolating a rejected batch; retrying");
                    if !self.wait_to_retry(&mut backoff).await {
                        self.lose(
                            (events.len() - index) as u64,
                            "shutdown flush window ran out",
                        );
                        return;
                    }
                }
            }
        }
    }
}
