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

use tokio_util::sync::CancellationToken;

use crate::identity::{Principal, Role, Watch};
use crate::limits::{CommandBudget, ErrorBudget};
use crate::live::compact::{self, Encoding};
use crate::live::{FrameKind, ViewFilter};
use crate::ops::metrics;
use crate::protocol::{
    BroadcastOutcome, BrowserFrame, BrowserOut, CommandStatus, FrameError, parse_browser_frame,
    to_json,
};
use crate::sessions::socket::{self, Incoming, Keepalive};
use crate::state::AppState;
use crate::store::AuditRow;

/// Command frames a socket may have refused for want of authorization before it is closed.
pub(crate) const MAX_UNAUTHORIZED_COMMANDS: u32 = 5;

/// One browser's session.
pub(crate) struct Session {
    state: AppState,
    /// Who it stands for (none: nobody signed in, on an open or public map).
    who: Option<Principal>,
    /// Cancelled when `who` is removed, lowered or signed out: the socket closes.
    withdrawn: CancellationToken,
    /// The client it connected from (refused commands count as its failed authentications).
    client: std::net::IpAddr,
    connect_token: Option<String>,
    /// Command frames refused for want of authorization.
    unauthorized: u32,
    /// Bit set of [`FrameKind`]s this browser wants.
    mask: u32,
    /// Default kinds arrive in the coalescer's batches; only relayed kinds it asked for come
    /// frame by frame.
    coalesced: bool,
    /// Commands this browser may still send before it is slowed down.
    commands: CommandBudget,
    /// Characters its broadcasts may still reach before they are slowed down.
    deliveries: CommandBudget,
    /// The area of the map it watches (coalesced browsers only).
    view: ViewFilter,
    /// How it wants live characters encoded.
    encoding: Encoding,
}

impl Session {
    /// A session for a browser that stands for `who`; `connect_token` is a command token it
    /// gave when connecting (legacy); `coalesced`: it takes the coalesced stream; `encoding`:
    /// how it wants live characters encoded.
    pub(crate) fn new(
        state: AppState,
        who: Option<Principal>,
        client: std::net::IpAddr,
        connect_token: Option<String>,
        coalesced: bool,
        encoding: Encoding,
    ) -> Self {
        let withdrawn = match &who {
            Some(p) => state.directory.watch(Watch::of(p)),
            None => CancellationToken::new(),
        };
        Self {
            state,
            who,
            withdrawn,
            client,
            unauthorized: 0,
            connect_token,
            mask: FrameKind::default_mask(),
            coalesced,
            commands: CommandBudget::new(),
            deliveries: CommandBudget::broadcast(),
            view: ViewFilter::default(),
            encoding,
        }
    }

    /// Serves the browser until it goes or the server stops.
    pub(crate) async fn run(mut self, socket: WebSocket) {
        tracing::debug!("browser connected");
        let (mut sink, mut stream) = socket.split();
        let settings = self.state.settings.clone();
        let send_timeout = settings.send_timeout();
        // Counted before subscribing, so every frame it receives has its compact form.
        let _compact =
            (self.encoding == Encoding::Compact).then(|| self.state.live.hub().compact_browser());
        if self.encoding == Encoding::Compact
            && socket::send_text(&mut sink, compact::announcement(), send_timeout)
                .await
                .is_err()
        {
            return;
        }
        // Subscribe before taking the snapshot so nothing falls between the two.
        let mut batches = self
            .coalesced
            .then(|| self.state.live.hub().subscribe_batches());
        let mut hub = self.wants_frames().then(|| self.state.live.subscribe());
        for part in self.state.live.snapshot_frames(self.encoding) {
            if socket::send_text(&mut sink, part, send_timeout)
                .await
                .is_err()
            {
                return;
            }
        }
        let mut budget = ErrorBudget::new(settings.sessions.max_frame_errors);
        let mut keepalive = Keepalive::new(&settings);

        loop {
            tokio::select! {
                () = self.state.shutdown.cancelled() => {
                    socket::close(&mut sink, close_code::AWAY, "server shutting down", send_timeout).await;
                    break;
                }
                () = self.withdrawn.cancelled() => {
                    tracing::info!("browser's access withdrawn (signed out, removed or lowered); closing");
                    socket::close(&mut sink, close_code::POLICY, "signed out", send_timeout).await;
                    break;
                }
                received = recv(&mut batches) => {
                    let received = match received {
                        Ok(batch) if !batch.is_for(self.encoding) => continue,
                        Ok(batch) => match batch.for_view(&mut self.view) {
                            Some(text) => Ok(text),
                            None => continue,
                        },
                        Err(err) => Err(err),
                    };
                    let Some(texts) = self.deliverable(received) else { break };
                    if let Err(err) = send_all(&mut sink, texts, send_timeout).await {
                        self.dropped(&err);
                        break;
                    }
                }
                received = recv(&mut hub) => {
                    let received = match received {
                        Ok(b) if !self.wants_frame(b.kind) => continue,
                        other => other.map(|b| match (self.encoding, b.compact) {
                            (Encoding::Compact, Some(compact)) => compact,
                            _ => b.text,
                        }),
                    };
                    let Some(texts) = self.deliverable(received) else { break };
                    if let Err(err) = send_all(&mut sink, texts, send_timeout).await {
                        self.dropped(&err);
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
                    // Guessing a way to command costs the connection.
                    if self.unauthorized >= MAX_UNAUTHORIZED_COMMANDS {
                        tracing::info!("too many unauthorized commands; closing the browser");
                        socket::close(&mut sink, close_code::POLICY, "too many unauthorized commands", send_timeout).await;
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

    /// A send to the browser failed: one that stopped reading is counted and logged (once a
    /// minute); one that is simply gone is not news.
    fn dropped(&self, err: &socket::SendError) {
        if matches!(err, socket::SendError::TimedOut) {
            self.state.metrics.note_browser_dropped();
        } else {
            tracing::debug!("browser gone");
        }
    }

    /// What to send for an item of the hub or the batches: the item, a fresh snapshot when the
    /// browser fell behind, nothing when the stream ended.
    fn deliverable(&self, received: Result<Utf8Bytes, RecvError>) -> Option<Outgoing> {
        match received {
            Ok(text) => Some(Outgoing::One(text)),
            Err(RecvError::Lagged(missed)) => {
                metrics::bump(&self.state.metrics.broadcast_lagged);
                tracing::debug!(missed, "browser fell behind; resyncing with a snapshot");
                Some(Outgoing::Parts(
                    self.state.live.snapshot_frames(self.encoding),
                ))
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
                let commander = self.commander(token.as_deref());
                let status = match &commander {
                    None => {
                        // A refused command is a failed authentication of its client: guessing
                        // (and filling the audit trail) from new sockets is limited too.
                        self.unauthorized += 1;
                        self.state.auth_failures.record(&self.client);
                        CommandStatus::Unauthorized
                    }
                    Some(_) if !self.commands.take() => CommandStatus::RateLimited,
                    Some(_) => self.state.live.send_command(&player_name, &command).await,
                };
                // Debug only: a browser can send many; the metrics count what was relayed.
                tracing::debug!(player = %player_name, ?status, "browser command");
                self.audit(commander, &player_name, &command, status).await;
                Ok(Some(to_json(&BrowserOut::CommandResult {
                    player_name: &player_name,
                    command: &command,
                    status,
                    message: status.message(),
                })))
            }
            BrowserFrame::Broadcast {
                player_names,
                command,
                token,
            } => {
                let commander = self.commander(token.as_deref());
                // One authorization and one command token for the whole broadcast, then one
                // delivery token per character: a broadcast to 60 is not refused by the burst
                // meant for single commands, and repeating broadcasts is slowed down per
                // character reached.
                let whole = match &commander {
                    None => {
                        self.unauthorized += 1;
                        self.state.auth_failures.record(&self.client);
                        Some(CommandStatus::Unauthorized)
                    }
                    Some(_) if !self.commands.take() => Some(CommandStatus::RateLimited),
                    Some(_) => None,
                };
                let mut statuses = Vec::with_capacity(player_names.len());
                // Characters refused before the command reached them: one audit row for all of
                // them, so a refused broadcast cannot write a row per name.
                let mut held = 0;
                for name in &player_names {
                    let status = match whole {
                        Some(status) => status,
                        None if !self.deliveries.take() => CommandStatus::RateLimited,
                        None => self.state.live.send_command(name, &command).await,
                    };
                    if whole.is_none() && status != CommandStatus::RateLimited {
                        self.audit(commander.clone(), name, &command, status).await;
                    } else {
                        held += 1;
                    }
                    statuses.push(status);
                }
                if held > 0 {
                    let status = whole.unwrap_or(CommandStatus::RateLimited);
                    let whom = format!("({held} of a broadcast to {})", player_names.len());
                    self.audit(commander, &whom, &command, status).await;
                }
                tracing::debug!(characters = player_names.len(), "browser broadcast");
                let results = player_names
                    .iter()
                    .zip(statuses)
                    .map(|(name, status)| BroadcastOutcome {
                        player_name: name,
                        status,
                        message: status.message(),
                    })
                    .collect();
                Ok(Some(to_json(&BrowserOut::BroadcastResult {
                    command: &command,
                    results,
                })))
            }
        }
    }

    /// Who commands, if this browser may: a commander or admin, the legacy COMMAND_TOKEN (in
    /// the frame or given at connect), or anyone in demo mode on loopback.
    fn commander(&self, frame_token: Option<&str>) -> Option<(String, &'static str)> {
        if let Some(p) = self.who.as_ref().filter(|p| p.can(Role::Commander)) {
            return Some((p.name.to_string(), p.via.name()));
        }
        let token = frame_token.or(self.connect_token.as_deref());
        if token.is_some_and(|t| self.state.directory.is_command_token(t)) {
            return Some(("command-token".to_owned(), "command-token"));
        }
        if self.state.directory.anyone_may_command() {
            return Some(("demo".to_owned(), "demo"));
        }
        None
    }

    /// Keeps a command in the audit trail (a store that cannot keep it is logged, not fatal).
    async fn audit(
        &self,
        commander: Option<(String, &'static str)>,
        character: &str,
        command: &str,
        status: CommandStatus,
    ) {
        let (actor, via) = commander.unwrap_or_else(|| match &self.who {
            Some(p) => (p.name.to_string(), p.via.name()),
            None => ("anonymous".to_owned(), "none"),
        });
        let entry = AuditRow {
            id: 0,
            at: chrono::Utc::now(),
            actor,
            via: via.to_owned(),
            character_name: character.to_owned(),
            command: command.to_owned(),
            result: status.name().to_owned(),
        };
        if let Err(err) = self.state.store.audit(&entry).await {
            tracing::warn!(%err, "a command could not be kept in the audit trail");
        }
    }
}

/// The next message of `rx`, or never when there is no receiver.
async fn recv<T: Clone>(rx: &mut Option<broadcast::Receiver<T>>) -> Result<T, RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// What goes to a browser for one item of its streams: the item, or a snapshot's parts.
enum Outgoing {
    One(Utf8Bytes),
    Parts(Vec<Utf8Bytes>),
}

/// Sends `out` in order; the first failure ends it.
async fn send_all(
    sink: &mut socket::Sink,
    out: Outgoing,
    timeout: std::time::Duration,
) -> Result<(), socket::SendError> {
    match out {
        Outgoing::One(text) => socket::send_text(sink, text, timeout).await,
        Outgoing::Parts(parts) => {
            for part in parts {
                socket::send_text(sink, part, timeout).await?;
            }
            Ok(())
        }
    }
}
