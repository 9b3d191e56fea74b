//! A browser's `/ws/live` session, once the web edge has let it in: a snapshot on connect, then
//! every broadcast the browser subscribed to; commands from the browser are authorized and
//! relayed to plugins.
//!
//! A browser that falls behind is resynced with a fresh snapshot; one that stops reading is
//! dropped after the send timeout. Neither can slow ingest or other browsers.

use axum::extract::ws::{Utf8Bytes, WebSocket, close_code};
use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::limits::{CommandBudget, ErrorBudget};
use crate::live::{FrameKind, ViewFilter};
use crate::net::{self, Requester};
use crate::ops::metrics;
use crate::protocol::{
    BrowserFrame, BrowserOut, CommandStatus, FrameError, parse_browser_frame, to_json,
};
use crate::sessions::socket::{self, Incoming, Keepalive};
use crate::state::AppState;

/// One browser's session.
pub(crate) struct Session {
    state: AppState,
    requester: Requester,
    connect_token: Option<String>,
    /// Bit set of [`FrameKind`]s this browser wants.
    mask: u32,
    /// Default kinds arrive in the coalescer's batches; only relayed kinds it asked for come
    /// frame by frame.
    coalesced: bool,
    /// Commands this browser may still send before it is slowed down.
    commands: CommandBudget,
    /// The area of the map it watches (coalesced browsers only).
    view: ViewFilter,
}

impl Session {
    /// A session for a browser described by `requester`; `connect_token` is a command token it
    /// gave when connecting (legacy); `coalesced`: it takes the coalesced stream.
    pub(crate) fn new(
        state: AppState,
        requester: Requester,
        connect_token: Option<String>,
        coalesced: bool,
    ) -> Self {
        Self {
            state,
            requester,
            connect_token,
            mask: FrameKind::default_mask(),
            coalesced,
            commands: CommandBudget::new(),
            view: ViewFilter::default(),
        }
    }

    /// Serves the browser until it goes or the server stops.
    pub(crate) async fn run(mut self, socket: WebSocket) {
        tracing::debug!("browser connected");
        let (mut sink, mut stream) = socket.split();
        let settings = self.state.settings.clone();
        let send_timeout = settings.send_timeout();
        // Subscribe before taking the snapshot so nothing falls between the two.
        let mut batches = self
            .coalesced
            .then(|| self.state.live.hub().subscribe_batches());
        let mut hub = self.wants_frames().then(|| self.state.live.subscribe());
        if socket::send_text(&mut sink, self.state.live.snapshot_frame(), send_timeout)
            .await
            .is_err()
        {
            return;
        }
        let mut budget = ErrorBudget::new(settings.sessions.max_frame_errors);
        let mut keepalive = Keepalive::new(&settings);

        loop {
            tokio::select! {
                () = self.state.shutdown.cancelled() => {
                    socket::close(&mut sink, close_code::AWAY, "server shutting down", send_timeout).await;
                    break;
                }
                received = recv(&mut batches) => {
                    let received = match received {
                        Ok(batch) => match batch.for_view(&mut self.view) {
                            Some(text) => Ok(text),
                            None => continue,
                        },
                        Err(err) => Err(err),
                    };
                    let Some(text) = self.deliverable(received) else { break };
                    if socket::send_text(&mut sink, text, send_timeout).await.is_err() {
                        break;
                    }
                }
                received = recv(&mut hub) => {
                    let received = match received {
                        Ok(b) if !self.wants_frame(b.kind) => continue,
                        other => other.map(|b| b.text),
                    };
                    let Some(text) = self.deliverable(received) else { break };
                    if socket::send_text(&mut sink, text, send_timeout).await.is_err() {
                        tracing::debug!("browser not reading; dropping it");
                        break;
                    }
                }
                read = stream.next() => {
                    keepalive.heard();
                    let outcome = match socket::classify(read) {
                        Incoming::Closed | Incoming::Lost => break,
                        Incoming::TooBig => {
                            metrics::bump(&self.state.metrics.frames_rejected);
                            socket::close(&mut sink, close_code::SIZE, "frame too large", send_timeout).await;
                            break;
                        }
                        Incoming::Text(text) => self.handle(&text).await,
                        Incoming::Binary => Err(FrameError::Binary),
                        Incoming::Control => continue,
                    };
                    if self.wants_frames() != hub.is_some() {
                        hub = self.wants_frames().then(|| self.state.live.subscribe());
                    }
                    let reply = match outcome {
                        Ok(Some(reply)) => reply,
                        Ok(None) => continue,
                        Err(err) => {
                            metrics::bump(&self.state.metrics.frames_rejected);
                            if budget.spend() {
                                socket::close(&mut sink, close_code::POLICY, "too many invalid frames", send_timeout).await;
                                break;
                            }
                            to_json(&BrowserOut::Error { error: err.to_string() })
                        }
                    };
                    if socket::send_text(&mut sink, reply, send_timeout).await.is_err() {
                        break;
                    }
                }
                () = keepalive.tick() => {
                    if keepalive.check(&mut sink, &self.state.metrics).await.is_err() {
                        break;
                    }
                }
            }
        }
        tracing::debug!("browser disconnected");
    }

    /// What to send for an item of the hub or the batches: the item, a fresh snapshot when the
    /// browser fell behind, nothing when the stream ended.
    fn deliverable(&self, received: Result<Utf8Bytes, RecvError>) -> Option<Utf8Bytes> {
        match received {
            Ok(text) => Some(text),
            Err(RecvError::Lagged(missed)) => {
                metrics::bump(&self.state.metrics.broadcast_lagged);
                tracing::debug!(missed, "browser fell behind; resyncing with a snapshot");
                Some(self.state.live.snapshot_frame())
            }
            Err(RecvError::Closed) => None,
        }
    }

    /// Whether a frame of `kind` from the hub goes to this browser: one it subscribed to, and
    /// not one the batches already carry.
    fn wants_frame(&self, kind: FrameKind) -> bool {
        self.mask & kind.bit() != 0
            && !(self.coalesced && FrameKind::default_mask() & kind.bit() != 0)
    }

    /// Whether this browser needs the per-frame hub: always, unless coalesced and it asked for
    /// no relayed kinds (the batches carry the rest).
    fn wants_frames(&self) -> bool {
        !self.coalesced || self.mask & !FrameKind::default_mask() != 0
    }

    /// Handles one frame from the browser; returns the reply to send, if any.
    async fn handle(&mut self, text: &str) -> Result<Option<String>, FrameError> {
        match parse_browser_frame(text)? {
            BrowserFrame::Subscribe { types } => {
                self.mask = types
                    .iter()
                    .filter_map(|t| FrameKind::from_name(t))
                    .fold(0, |mask, kind| mask | kind.bit());
                Ok(Some(to_json(&BrowserOut::Subscribed { types: &types })))
            }
            BrowserFrame::Viewport(area) => {
                if !self.coalesced {
                    return Err(FrameError::Invalid(
                        "a viewport needs the coalesced stream (/ws/live?coalesce=1)".into(),
                    ));
                }
                self.view.set(area);
                Ok(None)
            }
            BrowserFrame::Command {
                player_name,
                command,
                token,
            } => {
                let status = if !self.may_command(token.as_deref()) {
                    CommandStatus::Unauthorized
                } else if !self.commands.take() {
                    CommandStatus::RateLimited
                } else {
                    self.state.live.send_command(&player_name, &command).await
                };
                // Debug only: a browser can send many; the metrics count what was relayed.
                tracing::debug!(player = %player_name, ?status, "browser command");
                Ok(Some(to_json(&BrowserOut::CommandResult {
                    player_name: &player_name,
                    command: &command,
                    status,
                    message: status.message(),
                })))
            }
        }
    }

    /// The command rule of [`net::may_command`], with the token from the frame or the
    /// connection.
    fn may_command(&self, frame_token: Option<&str>) -> bool {
        net::may_command(
            self.state.settings.access.command_token.as_ref(),
            frame_token.or(self.connect_token.as_deref()),
            self.requester,
            self.state.settings.server.bind_addr,
        )
    }
}

/// The next message of `rx`, or never when there is no receiver.
async fn recv<T: Clone>(rx: &mut Option<broadcast::Receiver<T>>) -> Result<T, RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
