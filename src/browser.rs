//! The `/ws/live` session: a snapshot on connect, then every broadcast the browser subscribed to;
//! commands from the browser are authorized and relayed to plugins.
//!
//! A browser that falls behind is resynced with a fresh snapshot; one that stops reading is
//! dropped after the send timeout. Neither can slow ingest or other browsers.

use std::net::SocketAddr;

use axum::extract::ws::{Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::access::{self, CommandBudget, Requester};
use crate::error::ApiError;
use crate::extract::Query;
use crate::live::FrameKind;
use crate::metrics::{self, ConnectionSlot, Peer};
use crate::protocol::{
    BrowserFrame, BrowserOut, CommandStatus, FrameError, parse_browser_frame, to_json,
};
use crate::session::{self, ErrorBudget, Incoming, Keepalive};
use crate::state::AppState;

/// Query parameters of `/ws/live`.
#[derive(Debug, Deserialize)]
pub struct LiveQuery {
    /// Command token, for browsers that may send commands.
    token: Option<String>,
    /// `1` (or `true`): the coalesced stream, one `batch` frame per tick (see `crate::coalesce`).
    coalesce: Option<String>,
}

/// The browser websocket: a `snapshot`, then live frames; accepts `subscribe` and command frames
/// (EVENT_FORMATS.json).
#[utoipa::path(get, path = "/ws/live", tag = "live", operation_id = "browser_socket",
    params(
        ("token" = Option<String>, Query, description = "Command token (legacy; send it in command frames instead: it is never logged there)"),
        ("coalesce" = Option<bool>, Query, description = "`1` or `true`: receive one `batch` frame per tick (COALESCE_MS) carrying every update since the previous one, instead of a frame per update"),
    ),
    responses(
        (status = 101, description = "Switching to the websocket protocol"),
        (status = 403, description = "Opened by a page of another origin", body = crate::error::ErrorBody),
        (status = 503, description = "Too many browser connections", body = crate::error::ErrorBody),
    ))]
pub async fn handler(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<LiveQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !access::origin_allowed(&state.settings, &headers) {
        metrics::bump(&state.metrics.connections_refused);
        tracing::debug!(%peer, "browser refused: foreign Origin");
        return ApiError::Forbidden(
            "pages of this origin may not open the live map socket; the tracker serves its own \
             map, or add the origin to ALLOWED_ORIGINS"
                .into(),
        )
        .into_response();
    }
    let coalesced = match query.coalesce.as_deref() {
        None | Some("0" | "false") => false,
        Some("1" | "true") => true,
        Some(_) => {
            return ApiError::BadRequest("`coalesce` must be 1, true, 0 or false".into())
                .into_response();
        }
    };
    let requester = Requester::of(peer, &headers);
    let Some(slot) = ConnectionSlot::acquire(
        &state.metrics,
        Peer::Browser,
        state.settings.sessions.max_browsers,
    ) else {
        metrics::bump(&state.metrics.connections_refused);
        return ApiError::Unavailable("too many browser connections").into_response();
    };
    let tracker = state.sessions.token();
    session::with_limits(upgrade, state.settings.sessions.max_message_bytes)
        .on_failed_upgrade(|err| tracing::debug!(%err, "browser websocket upgrade failed"))
        .on_upgrade(move |socket| async move {
            let _tracked = tracker;
            let _slot = slot;
            let span = tracing::info_span!("browser", %peer);
            let session = Session {
                state,
                requester,
                connect_token: query.token,
                mask: FrameKind::default_mask(),
                coalesced,
                commands: CommandBudget::new(),
                view: crate::coalesce::ViewFilter::default(),
            };
            tracing::Instrument::instrument(session.run(socket), span).await;
        })
}

struct Session {
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
    view: crate::coalesce::ViewFilter,
}

impl Session {
    async fn run(mut self, socket: WebSocket) {
        tracing::debug!("browser connected");
        let (mut sink, mut stream) = socket.split();
        let settings = self.state.settings.clone();
        let send_timeout = settings.send_timeout();
        // Subscribe before taking the snapshot so nothing falls between the two.
        let mut batches = self.coalesced.then(|| self.state.live.subscribe_batches());
        let mut hub = self.wants_frames().then(|| self.state.live.subscribe());
        if session::send_text(&mut sink, self.state.live.snapshot_frame(), send_timeout)
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
                    session::close(&mut sink, close_code::AWAY, "server shutting down", send_timeout).await;
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
                    if session::send_text(&mut sink, text, send_timeout).await.is_err() {
                        break;
                    }
                }
                received = recv(&mut hub) => {
                    let received = match received {
                        Ok(b) if !self.wants_frame(b.kind) => continue,
                        other => other.map(|b| b.text),
                    };
                    let Some(text) = self.deliverable(received) else { break };
                    if session::send_text(&mut sink, text, send_timeout).await.is_err() {
                        tracing::debug!("browser not reading; dropping it");
                        break;
                    }
                }
                read = stream.next() => {
                    keepalive.heard();
                    let outcome = match session::classify(read) {
                        Incoming::Closed | Incoming::Lost => break,
                        Incoming::TooBig => {
                            metrics::bump(&self.state.metrics.frames_rejected);
                            session::close(&mut sink, close_code::SIZE, "frame too large", send_timeout).await;
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
                                session::close(&mut sink, close_code::POLICY, "too many invalid frames", send_timeout).await;
                                break;
                            }
                            to_json(&BrowserOut::Error { error: err.to_string() })
                        }
                    };
                    if session::send_text(&mut sink, reply, send_timeout).await.is_err() {
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
                    self.state
                        .cluster
                        .send_command(&self.state.live, &player_name, &command)
                        .await
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

    /// The command rule of [`access::may_command`], with the token from the frame or the
    /// connection.
    fn may_command(&self, frame_token: Option<&str>) -> bool {
        access::may_command(
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
