//! Pieces shared by the plugin and browser websocket sessions: bounded sends, what arrived
//! (with the size limit and closes handled alike), keepalive pings and the silence timeout, and
//! close frames.

use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use futures_util::stream::SplitSink;

/// Per-connection socket buffers. The library defaults (128 KiB each) would cost gigabytes at
/// ten thousand mostly idle connections; frames here are small.
pub(crate) const READ_BUFFER_BYTES: usize = 8 * 1024;
pub(crate) const WRITE_BUFFER_BYTES: usize = 8 * 1024;
/// Most bytes queued for a peer whose socket is not accepting writes.
pub(crate) const MAX_WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// The sending half of a websocket.
pub(crate) type Sink = SplitSink<WebSocket, Message>;

/// Why a send to a peer failed; either way the session ends.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The peer did not take the frame within the send timeout (it is not reading).
    TimedOut,
    /// The connection is gone.
    Closed,
}

/// Applies the configured size limits and the small per-connection buffers to an upgrade.
pub(crate) fn with_limits(
    upgrade: axum::extract::ws::WebSocketUpgrade,
    max_message_bytes: usize,
) -> axum::extract::ws::WebSocketUpgrade {
    upgrade
        .max_message_size(max_message_bytes)
        .max_frame_size(max_message_bytes)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
}

/// Sends one message, giving up after `timeout` so a peer that stopped reading cannot stall the
/// session forever.
pub(crate) async fn send(
    sink: &mut Sink,
    msg: Message,
    timeout: Duration,
) -> Result<(), SendError> {
    match tokio::time::timeout(timeout, sink.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(SendError::Closed),
        Err(_) => Err(SendError::TimedOut),
    }
}

/// Sends a text frame.
pub(crate) async fn send_text(
    sink: &mut Sink,
    text: impl Into<Utf8Bytes>,
    timeout: Duration,
) -> Result<(), SendError> {
    send(sink, Message::Text(text.into()), timeout).await
}

/// Sends a close frame with a code and reason, ignoring failures (the peer may be gone already).
pub(crate) async fn close(sink: &mut Sink, code: u16, reason: &'static str, timeout: Duration) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = send(sink, Message::Close(Some(frame)), timeout).await;
}

/// What a read from a peer's socket brought, once the cases every session treats alike are
/// sorted out.
#[derive(Debug)]
pub(crate) enum Incoming {
    Text(Utf8Bytes),
    Binary,
    /// Ping or pong (answered by the library).
    Control,
    /// The peer closed the connection.
    Closed,
    /// The connection broke.
    Lost,
    /// A message over the size limit: the session answers with close code 1009.
    TooBig,
}

/// Sorts out one read from a peer's socket.
pub(crate) fn classify(read: Option<Result<Message, axum::Error>>) -> Incoming {
    match read {
        Some(Ok(Message::Text(text))) => Incoming::Text(text),
        Some(Ok(Message::Binary(_))) => Incoming::Binary,
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Incoming::Control,
        Some(Ok(Message::Close(_))) => Incoming::Closed,
        None => Incoming::Lost,
        Some(Err(err)) if is_too_big(&err) => Incoming::TooBig,
        Some(Err(err)) => {
            tracing::debug!(%err, "socket error");
            Incoming::Lost
        }
    }
}

/// Why the keepalive ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Silence {
    /// Nothing heard from the peer for longer than the peer timeout; it was sent a close.
    TimedOut,
    /// The ping could not be sent.
    SendFailed,
}

/// Pings a peer at an interval and ends the session when it has been silent for too long.
#[derive(Debug)]
pub(crate) struct Keepalive {
    ping: tokio::time::Interval,
    last_heard: Instant,
    peer_timeout: Duration,
    send_timeout: Duration,
}

impl Keepalive {
    /// The first ping goes out one interval from now.
    pub(crate) fn new(settings: &crate::config::Settings) -> Self {
        let mut ping = tokio::time::interval(settings.ping_interval());
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.reset();
        Self {
            ping,
            last_heard: Instant::now(),
            peer_timeout: settings.peer_timeout(),
            send_timeout: settings.send_timeout(),
        }
    }

    /// Anything from the peer counts as a sign of life.
    pub(crate) fn heard(&mut self) {
        self.last_heard = Instant::now();
    }

    /// Waits for the next ping time (for `select!`).
    pub(crate) async fn tick(&mut self) {
        self.ping.tick().await;
    }

    /// At a ping time: closes a peer silent for too long, pings the others.
    pub(crate) async fn check(
        &mut self,
        sink: &mut Sink,
        metrics: &crate::ops::metrics::Metrics,
    ) -> Result<(), Silence> {
        if self.last_heard.elapsed() > self.peer_timeout {
            crate::ops::metrics::bump(&metrics.peers_timed_out);
            close(
                sink,
                axum::extract::ws::close_code::AWAY,
                "timed out",
                self.send_timeout,
            )
            .await;
            return Err(Silence::TimedOut);
        }
        send(sink, Message::Ping(Default::default()), self.send_timeout)
            .await
            .map_err(|_| Silence::SendFailed)
    }
}

/// Whether a websocket error is the size limit being exceeded.
pub(crate) fn is_too_big(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(tungstenite::Error::Capacity(_)) = e.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}
