//! A plugin's `/ws/position` session, once the web edge has authenticated it: parses its
//! frames, applies them to the live state and queues what is stored for the writer.
//!
//! A bad frame gets an `error` frame back and costs the connection part of its error budget; it
//! never affects other connections or anything already accepted.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::ws::{Utf8Bytes, WebSocket, close_code};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::identity::{Binding, Watch};
use crate::limits::ErrorBudget;
use crate::live::{Applied, ClaimKind, ConnId, Origin, Previous};
use crate::ops::alerts::Signal;
use crate::ops::metrics;
use crate::protocol::clock::{ClockReading, Placement};
use crate::protocol::{FrameError, PluginErrorOut, PluginFrame, parse_plugin_frame_at, to_json};
use crate::sessions::socket::{self, Incoming, Keepalive, Silence};
use crate::state::{AppState, LOG_ENTRIES_PER_CHARACTER};
use crate::store::{Event, Happening, HappeningKind};

/// Distinct characters one plugin connection may speak for.
pub const MAX_CHARACTERS_PER_CONNECTION: usize = 64;

/// Sessions updated this long ago are still resumed with their kill baseline when their
/// character comes back into memory (a plugin session never idles so long).
const SESSION_MEMORY: chrono::Duration = chrono::Duration::hours(24);

/// Longest a returning character waits for its totals from the database.
const RESTORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Commands a plugin may have waiting before further ones are answered "busy".
const COMMAND_BUFFER: usize = 32;

/// Why a plugin session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The plugin said goodbye with a close frame.
    PeerClosed,
    /// The connection dropped without a close frame (crash, network loss).
    Lost,
    Shutdown,
    TimedOut,
    Abuse,
    TooBig,
    SendFailed,
    /// Its key was revoked.
    Revoked,
}

/// What one plugin connection is: its id, the key it speaks with, where its commands go, and the
/// characters it has spoken for.
struct Connection {
    id: ConnId,
    key: Arc<str>,
    commands: mpsc::Sender<Utf8Bytes>,
    /// Characters it spoke for (bounded by [`MAX_CHARACTERS_PER_CONNECTION`]), for the
    /// disconnect alert.
    names: HashSet<String>,
    /// The directory's binding epoch when `names` were last checked against the keys.
    epoch: u64,
    /// When the latest frame placed on the tracker's clock was read: a frame after it is never
    /// placed earlier (a corrected clock continues where the placed frames left off).
    placed_until: Option<chrono::DateTime<chrono::Utc>>,
}

/// Serves one plugin connection, authenticated with `key`, until it ends.
pub(crate) async fn run(socket: WebSocket, state: AppState, id: ConnId, key: Arc<str>) -> End {
    tracing::info!("plugin connected");
    let (mut sink, mut stream) = socket.split();
    let (commands_tx, mut commands_rx) = mpsc::channel::<Utf8Bytes>(COMMAND_BUFFER);
    let settings = state.settings.clone();
    let send_timeout = settings.send_timeout();
    let mut budget = ErrorBudget::new(settings.sessions.max_frame_errors);
    let mut keepalive = Keepalive::new(&settings);
    // Cancelled when the key is revoked.
    let revoked = state.directory.watch(Watch::Key(key.clone()));
    let mut this = Connection {
        id,
        key,
        commands: commands_tx,
        names: HashSet::new(),
        placed_until: None,
        epoch: state.directory.binding_epoch(),
    };

    let end = loop {
        tokio::select! {
            () = state.shutdown.cancelled() => {
                socket::close(&mut sink, close_code::AWAY, "server shutting down", send_timeout).await;
                drain(&state, &mut this, &mut stream).await;
                break End::Shutdown;
            }
            () = revoked.cancelled() => {
                tracing::info!("plugin key revoked, or one of its characters moved; closing");
                socket::close(&mut sink, close_code::POLICY, "key revoked", send_timeout).await;
                break End::Revoked;
            }
            read = stream.next() => {
                keepalive.heard();
                let outcome = match socket::classify(read) {
                    Incoming::Closed => break End::PeerClosed,
                    Incoming::Lost => break End::Lost,
                    Incoming::TooBig => {
                        metrics::bump(&state.metrics.frames_rejected);
                        tracing::warn!("plugin frame over the size limit; closing");
                        socket::close(&mut sink, close_code::SIZE, "frame too large", send_timeout).await;
                        break End::TooBig;
                    }
                    Incoming::Text(text) => {
                        let accepted = accept(&state, &mut this, &text).await;
                        // While the tracker was busy with the frame it read nothing: that time
                        // is not the plugin's silence.
                        keepalive.heard();
                        accepted
                    }
                    Incoming::Binary => Err(FrameError::Binary),
                    Incoming::Control => Ok(()),
                };
                let Err(err) = outcome else { continue };
                // Not the plugin's fault: another connection holds the character (the same plugin
                // reconnecting), or the tracker could not keep the frame.
                let excused = matches!(err, FrameError::Claimed(_) | FrameError::NotStored(_));
                if !excused {
                    metrics::bump(&state.metrics.frames_rejected);
                }
                tracing::debug!(error = %err, "plugin frame rejected");
                let reply = to_json(&PluginErrorOut { kind: "error", error: &err.to_string() });
                if socket::send_text(&mut sink, reply, send_timeout).await.is_err() {
                    break End::SendFailed;
                }
                if !excused && budget.spend() {
                    tracing::warn!("too many bad frames from this plugin; closing");
                    let code = if err == FrameError::Binary { close_code::UNSUPPORTED } else { close_code::POLICY };
                    socket::close(&mut sink, code, "too many invalid frames", send_timeout).await;
                    break End::Abuse;
                }
            }
            Some(command) = commands_rx.recv() => {
                if socket::send_text(&mut sink, command, send_timeout).await.is_err() {
                    break End::SendFailed;
                }
                metrics::bump(&state.metrics.commands_relayed);
            }
            () = keepalive.tick() => match keepalive.check(&mut sink, &state.metrics).await {
                Ok(()) => {}
                Err(Silence::TimedOut) => {
                    tracing::info!("plugin silent for too long; closed");
                    break End::TimedOut;
                }
                Err(Silence::SendFailed) => break End::SendFailed,
            },
        }
    };
    // The characters it still spoke for (not those another connection took over) went offline
    // with it; a tracker that stops is not their disconnect.
    let released = state.live.unroute(this.id);
    if !matches!(end, End::Shutdown) {
        // Browsers see them offline now rather than when their live window passes (a tracker
        // that stops is not their disconnect: their plugins come back to it or another one).
        state.live.disconnected(&released);
        let detail = match end {
            End::PeerClosed => "the plugin closed its connection",
            End::Lost | End::SendFailed => "connection lost",
            End::TimedOut => "plugin silent too long",
            End::Revoked => "its key was revoked",
            End::Abuse | End::TooBig | End::Shutdown => "closed by the tracker",
        };
        for name in released {
            happened(
                &state,
                name,
                HappeningKind::Disconnect,
                chrono::Utc::now(),
                Some(detail.to_owned()),
            )
            .await;
        }
    }
    if matches!(end, End::Lost | End::TimedOut | End::SendFailed) && !this.names.is_empty() {
        state.alerts.signal(Signal::Lost {
            names: this.names.into_iter().collect(),
        });
    }
    tracing::info!(reason = ?end, "plugin disconnected");
    end
}

/// Longest a closing session waits for the plugin's answer to its close frame.
const CLOSE_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// After the server's close frame: accepts what the plugin sent before it read that close (it is
/// already on its way), until the plugin's own close arrives. So a plugin that reconnects to
/// another instance loses nothing it sent to this one.
async fn drain(
    state: &AppState,
    this: &mut Connection,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
) {
    let deadline = tokio::time::Instant::now() + CLOSE_DRAIN;
    // Checked before every read too: frames already buffered are ready at once, and a plugin
    // sending fast must not keep the drain going past its deadline.
    while tokio::time::Instant::now() < deadline
        && let Ok(read) = tokio::time::timeout_at(deadline, stream.next()).await
    {
        match socket::classify(read) {
            Incoming::Text(text) => {
                if let Err(err) = accept(state, this, &text).await {
                    metrics::bump(&state.metrics.frames_rejected);
                    tracing::debug!(error = %err, "plugin frame rejected while closing");
                }
            }
            Incoming::Binary | Incoming::Control => {}
            Incoming::Closed | Incoming::Lost | Incoming::TooBig => return,
        }
    }
}

/// Records what a frame said about its plugin's clock: counted when placed on the tracker's
/// clock, and the character listed in `/debug` while its clock is off.
fn note_clock(state: &AppState, name: &str, reading: ClockReading, placement: &Placement) {
    let tolerance = state.settings.sessions.clock_skew_secs.max(1);
    let skewed = reading.offset_ms.unsigned_abs() > tolerance.saturating_mul(1000);
    if reading.placed {
        metrics::bump(&state.metrics.frames_placed_on_server_clock);
    }
    state
        .live
        .clocks
        .note(name, reading, skewed, placement.read_at);
}

/// Validates one text frame and hands it on: live state and browsers first, then the spool (the
/// next frame is read once the event is written there).
async fn accept(
    state: &AppState,
    this: &mut Connection,
    text: &Utf8Bytes,
) -> Result<(), FrameError> {
    let read_at = chrono::Utc::now();
    let mut placement = state.settings.placement(read_at);
    placement.not_before = this.placed_until;
    let (frame, reading) = parse_plugin_frame_at(text.as_str(), &placement)?;
    if reading.is_some_and(|r| r.placed) {
        this.placed_until = Some(read_at);
    }
    let Some(kind) = frame.kind() else {
        if let PluginFrame::Unhandled { kind } = &frame {
            state.metrics.count_unhandled(kind);
        }
        return Ok(());
    };
    let epoch = state.directory.binding_epoch();
    if epoch != this.epoch {
        // An admin moved or freed characters: let go of those no longer this key's.
        this.epoch = epoch;
        let lost: Vec<String> = this
            .names
            .iter()
            .filter(|n| !state.directory.still_bound(n, &this.key))
            .cloned()
            .collect();
        for name in lost {
            tracing::info!(character = %name, "the character moved to another key");
            this.names.remove(&name);
            state.live.release(&name, this.id);
        }
    }
    if let Some(name) = frame.character_name() {
        let new = !this.names.contains(name);
        if new {
            speaks_for(state, this, name).await?;
        }
        // A `register` frame claims weakly: a connection carrying on one of the character's
        // sessions takes it over from one that merely registers it.
        let kind = match &frame {
            PluginFrame::Register(_) => ClaimKind::Register,
            PluginFrame::Telemetry(t) => ClaimKind::Data {
                session: Some(t.session_id.as_str()),
            },
            _ => ClaimKind::Data { session: None },
        };
        if !state
            .live
            .claim_within(name, this.id, &this.commands, kind, CLAIM_WAIT)
            .await
        {
            metrics::bump(&state.metrics.frames_unclaimed);
            return Err(FrameError::Claimed(name.to_owned()));
        }
        if new {
            this.names.insert(name.to_owned());
            // A reconnection says how long the character was away.
            let away = state
                .live
                .previous(name)
                .and_then(|p| p.silent_for)
                .map(|d| format!("back after {}", away_for(d)));
            happened(
                state,
                name.to_owned(),
                HappeningKind::Connect,
                chrono::Utc::now(),
                away,
            )
            .await;
        }
        if let Some(reading) = reading {
            note_clock(state, name, reading, &placement);
        }
    }
    if let PluginFrame::Rare(r) = &frame
        && !state.directory.may_report_rare(&this.key)
    {
        return Err(FrameError::Invalid(format!(
            "this plugin key reported more than {} rares in a minute; `{}` is not counted",
            state.settings.sessions.key_rares_per_minute, r.name
        )));
    }
    state.metrics.count_frame(kind);
    if let (true, Some(name)) = (frame.keeps_state(), frame.character_name())
        && state.live.needs_restore(name)
    {
        restore(state, name).await;
    }
    if let PluginFrame::Telemetry(t) = &frame {
        state
            .metrics
            .last_telemetry_ms
            .store(metrics::now_ms(), std::sync::atomic::Ordering::Relaxed);
        if state.alerts.enabled() {
            state.alerts.signal(Signal::Telemetry {
                name: t.character_name.clone(),
                session_id: t.session_id.clone(),
                ew: t.ew,
                ns: t.ns,
                kills: t.kills,
                deaths: t.deaths,
            });
        }
    }
    if let (PluginFrame::Rare(r), true) = (&frame, state.alerts.enabled()) {
        state.alerts.signal(Signal::Rare {
            name: r.character_name.clone(),
            item: r.name.clone(),
            ew: r.ew,
            ns: r.ns,
        });
    }
    // A frame that cannot be kept changes nothing: refused before it is counted or shown.
    if frame.is_stored()
        && let Err(err) = state.spool.has_room()
    {
        return Err(not_stored(state, &err));
    }
    let change = frame
        .character_name()
        .and_then(|name| state.live.previous(name))
        .and_then(|previous| what_changed(&previous, &frame));
    match state.live.apply(frame, text, Origin::Plugin) {
        Applied::Taken(Some(event)) => {
            if let Err(err) = state.spool.append(event).await {
                return Err(not_stored(state, &err));
            }
            if let Some(h) = change {
                happened(state, h.character_name, h.kind, h.timestamp, h.detail).await;
            }
        }
        Applied::Taken(None) | Applied::NotTheirs => {}
        Applied::TooLarge => metrics::bump(&state.metrics.frames_not_relayed),
        Applied::Refused(why) => return Err(FrameError::Invalid(why)),
    }
    Ok(())
}

/// What a frame shows happened, against what the character's previous frames said: a death
/// (its deaths counter went up within the session), a level change.
fn what_changed(previous: &Previous, frame: &PluginFrame) -> Option<Happening> {
    match frame {
        PluginFrame::Telemetry(t) => {
            let (session, deaths) = previous.session_deaths.as_ref()?;
            (*session == t.session_id && t.deaths > *deaths).then(|| Happening {
                character_name: t.character_name.clone(),
                kind: HappeningKind::Death,
                timestamp: t.timestamp,
                detail: Some(format!("{} deaths this session", t.deaths)),
            })
        }
        PluginFrame::CharacterStats(sheet) => {
            let (old, new) = (previous.level?, sheet.level?);
            (old != new).then(|| Happening {
                character_name: sheet.character_name.clone(),
                kind: HappeningKind::Level,
                timestamp: sheet.timestamp,
                detail: Some(format!("level {old} to {new}")),
            })
        }
        _ => None,
    }
}

/// How long a character was away, as the event log says it: "40 s", "12 min", "3 h 5 min".
fn away_for(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

/// Keeps something that happened for the event log. Derived from frames already kept (or from
/// the connection itself): when the spool cannot take it, it is logged and left out rather than
/// refuse the frame that showed it.
async fn happened(
    state: &AppState,
    character_name: String,
    kind: HappeningKind,
    timestamp: chrono::DateTime<chrono::Utc>,
    detail: Option<String>,
) {
    // What a plugin can repeat at will is bounded per character and kind (a reconnect loop, a
    // level flipped back and forth); a death needs a stored telemetry row with a higher count.
    // (A connection and its disconnection share one budget.)
    let budget = match kind {
        HappeningKind::Connect | HappeningKind::Disconnect => Some(HappeningKind::Connect),
        HappeningKind::Level => Some(HappeningKind::Level),
        HappeningKind::Death | HappeningKind::Alert => None,
    };
    if let Some(budget) = budget
        && state.log_budget.record(&(character_name.clone(), budget)) > LOG_ENTRIES_PER_CHARACTER
    {
        metrics::bump(&state.metrics.log_entries_skipped);
        return;
    }
    let event = Event::Happened(Happening {
        character_name,
        kind,
        timestamp,
        detail,
    });
    if let Err(err) = state.spool.append(event).await {
        tracing::warn!(%err, kind = kind.name(), "an event for the event log could not be kept");
    }
}

/// Whether this connection may speak for one more character: within its own bound, and with a
/// key the character belongs to (bound to it now when it belongs to none).
async fn speaks_for(state: &AppState, this: &Connection, name: &str) -> Result<(), FrameError> {
    // A plugin speaks for its character (a multibox client for a few): a connection that names
    // ever more characters is refused new ones, so it cannot grow the server's memory.
    if this.names.len() >= MAX_CHARACTERS_PER_CONNECTION {
        return Err(FrameError::Invalid(format!(
            "this connection already speaks for {MAX_CHARACTERS_PER_CONNECTION} characters"
        )));
    }
    match state.directory.bind(name, &this.key).await {
        Binding::Ours => Ok(()),
        Binding::Theirs(_) => Err(FrameError::Invalid(format!(
            "character `{name}` belongs to another plugin key"
        ))),
        Binding::Full => Err(FrameError::Invalid(format!(
            "this plugin key already speaks for {} characters",
            state.settings.sessions.key_max_characters
        ))),
    }
}

/// How long a frame about a character owned by another connection waits for that connection to
/// go (see [`crate::live::Live::claim_within`]).
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Brings a character back into memory (totals, recent session baselines) before its first
/// frame is applied. Should the database not answer in time, the character carries on without
/// them (its new sessions count no kills until a later frame's attempt succeeds).
async fn restore(state: &AppState, name: &str) {
    // Events from before the start still in the spool are not in the database's totals and
    // baselines yet: until they are stored, the character carries on as if the database could
    // not be asked (nothing is counted twice), and is brought back later.
    if !state.spool.replayed() {
        state.live.restore(name, None);
        return;
    }
    let since = chrono::Utc::now() - SESSION_MEMORY;
    let loaded =
        tokio::time::timeout(RESTORE_TIMEOUT, state.store.character_state(name, since)).await;
    match loaded {
        Ok(Ok(character)) => state.live.restore(name, Some(&character)),
        Ok(Err(err)) => {
            state.metrics.note_restore_deferred(name, &err);
            state.live.restore(name, None);
        }
        Err(_) => {
            state
                .metrics
                .note_restore_deferred(name, &"the database did not answer in time");
            state.live.restore(name, None);
        }
    }
}

/// A frame the spool could not take: counted, said to the plugin, logged (once a minute).
fn not_stored(state: &AppState, err: &crate::spool::SpoolError) -> FrameError {
    metrics::bump(&state.metrics.frames_not_stored);
    state.metrics.note_not_stored(err);
    FrameError::NotStored(err.to_string())
}
