//! Pieces shared by the plugin and browser websocket sessions: bounded sends, error budgets,
//! close frames and secret comparison.

use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use subtle::ConstantTimeEq;

/// Per-connection socket buffers. The library defaults (128 KiB each) would cost gigabytes at
/// ten thousand mostly idle connections; frames here are small.
pub const READ_BUFFER_BYTES: usize = 8 * 1024;
pub const WRITE_BUFFER_BYTES: usize = 8 * 1024;
/// Most bytes queued for a peer whose socket is not accepting writes.
pub const MAX_WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// The sending half of a websocket.
pub type Sink = SplitSink<WebSocket, Message>;

/// Why a send to a peer failed; either way the session ends.
#[derive(Debug)]
pub enum SendError {
    /// The peer did not take the frame within the send timeout (it is not reading).
    TimedOut,
    /// The connection is gone.
    Closed,
}

/// Applies the configured size limits and the small per-connection buffers to an upgrade.
pub fn with_limits(
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
pub async fn send(sink: &mut Sink, msg: Message, timeout: Duration) -> Result<(), SendError> {
    match tokio::time::timeout(timeout, sink.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(SendError::Closed),
        Err(_) => Err(SendError::TimedOut),
    }
}

/// Sends a text frame.
pub async fn send_text(
    sink: &mut Sink,
    text: impl Into<Utf8Bytes>,
    timeout: Duration,
) -> Result<(), SendError> {
    send(sink, Message::Text(text.into()), timeout).await
}

/// Sends a close frame with a code and reason, ignoring failures (the peer may be gone already).
pub async fn close(sink: &mut Sink, code: u16, reason: &'static str, timeout: Duration) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = send(sink, Message::Close(Some(frame)), timeout).await;
}

/// Counts bad frames over a sliding minute; a connection that exceeds the budget is closed.
#[derive(Debug)]
pub struct ErrorBudget {
    limit: u32,
    window_start: Instant,
    count: u32,
}

impl ErrorBudget {
    const WINDOW: Duration = Duration::from_secs(60);

    /// A budget of `limit` errors per minute.
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            window_start: Instant::now(),
            count: 0,
        }
    }

    /// Records one error; true when the budget is exhausted.
    pub fn spend(&mut self) -> bool {
        if self.window_start.elapsed() > Self::WINDOW {
            self.window_start = Instant::now();
            self.count = 0;
        }
        self.count += 1;
        self.count > self.limit
    }
}

/// Compares a presented secret with the configured one without leaking, through timing, how many
/// leading bytes matched.
pub fn secret_matches(presented: &str, expected: &str) -> bool {
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// Whether a websocket error is the size limit being exceeded.
pub fn is_too_big(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(tungstenite::Error::Capacity(_)) = e.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        assert!(secret_matches("abc", "abc"));
        assert!(!secret_matches("abd", "abc"));
        assert!(!secret_matches("ab", "abc"));
        assert!(!secret_matches("", "abc"));
    }

    #[test]
    fn error_budget_trips_after_the_limit() {
        let mut budget = ErrorBudget::new(2);
        assert!(!budget.spend());
        assert!(!budget.spend());
        assert!(budget.spend());
    }
}
