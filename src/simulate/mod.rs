//! `dereth-bench simulate`: N characters, each over its own plugin websocket with the real wire
//! format, for demos and load. Characters reconnect with backoff when the server goes away and
//! answer `/vt stop` / `/vt start` commands.

pub mod character;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

pub use character::Character;

/// How a simulation runs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The plugin endpoint, e.g. `ws://127.0.0.1:8765/ws/position`.
    pub url: String,
    /// The tracker's shared secret.
    pub secret: String,
    /// Number of characters (each gets its own connection).
    pub characters: usize,
    /// Number given to the first character (`Sim 0000`, ...), so several simulators can share a
    /// server without name clashes.
    pub first_index: usize,
    /// Telemetry period per character.
    pub interval: Duration,
    /// How much faster than real time characters move, hunt and die.
    pub speed: f64,
    /// Seed of the deterministic behaviour.
    pub seed: u64,
}

/// Counters of a simulation run.
#[derive(Debug, Default)]
pub struct SimStats {
    pub frames_sent: AtomicU64,
    /// Of `frames_sent`, the telemetry frames (one stored row each).
    pub telemetry_sent: AtomicU64,
    pub commands_received: AtomicU64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
}

/// A snapshot of [`SimStats`].
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct SimReport {
    pub frames_sent: u64,
    pub telemetry_sent: u64,
    pub commands_received: u64,
    pub connects: u64,
    pub connect_failures: u64,
}

impl SimStats {
    pub fn report(&self) -> SimReport {
        SimReport {
            frames_sent: self.frames_sent.load(Ordering::Relaxed),
            telemetry_sent: self.telemetry_sent.load(Ordering::Relaxed),
            commands_received: self.commands_received.load(Ordering::Relaxed),
            connects: self.connects.load(Ordering::Relaxed),
            connect_failures: self.connect_failures.load(Ordering::Relaxed),
        }
    }
}

/// Runs every character until `stop` is cancelled.
pub async fn run(config: SimConfig, stop: CancellationToken, stats: Arc<SimStats>) {
    let config = Arc::new(config);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..config.characters {
        let character = Character::new(config.first_index + i, config.seed);
        tasks.spawn(drive(
            character,
            config.clone(),
            stop.clone(),
            stats.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

enum Ended {
    Stopped,
    Disconnected,
}

/// One character's life: connect, stream, and reconnect with backoff until stopped.
async fn drive(
    mut character: Character,
    config: Arc<SimConfig>,
    stop: CancellationToken,
    stats: Arc<SimStats>,
) {
    const MAX_BACKOFF: Duration = Duration::from_secs(10);
    let mut backoff = Duration::from_millis(500);
    let mut jitter = fastrand::Rng::with_seed(config.seed ^ character.name.len() as u64);
    loop {
        if stop.is_cancelled() {
            return;
        }
        match connect(&config).await {
            Ok(ws) => {
                stats.connects.fetch_add(1, Ordering::Relaxed);
                backoff = Duration::from_millis(500);
                if let Ended::Stopped = stream(&mut character, ws, &config, &stop, &stats).await {
                    return;
                }
            }
            Err(err) => {
                stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(character = %character.name, %err, "simulator cannot connect");
            }
        }
        let wait = backoff.mul_f64(0.5 + jitter.f64());
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(config: &SimConfig) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut request = config.url.as_str().into_client_request()?;
    if let Ok(value) = config.secret.parse() {
        request.headers_mut().insert("X-Plugin-Secret", value);
    }
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .map_err(|_| {
        tokio_tungstenite::tungstenite::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        ))
    })??;
    Ok(ws)
}

async fn stream(
    character: &mut Character,
    ws: Ws,
    config: &SimConfig,
    stop: &CancellationToken,
    stats: &SimStats,
) -> Ended {
    let (mut tx, mut rx) = ws.split();
    // Start at a random point of the period so thousands of characters do not send in step.
    let offset = config.interval.mul_f64(fastrand::f64());
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                let _ = tx.send(Message::Close(None)).await;
                return Ended::Stopped;
            }
            _ = tick.tick() => {
                let now = chrono::Utc::now();
                let mut frames = character.step(config.interval, config.speed, now);
                frames.insert(0, character.telemetry_frame(now));
                for frame in frames {
                    let telemetry = frame.get("type").and_then(Value::as_str) == Some("telemetry");
                    if tx.send(Message::text(frame.to_string())).await.is_err() {
                        return Ended::Disconnected;
                    }
                    stats.frames_sent.fetch_add(1, Ordering::Relaxed);
                    if telemetry {
                        stats.telemetry_sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let command: Option<crate::protocol::PluginCommand> =
                        serde_json::from_str(text.as_str()).ok();
                    if let Some(cmd) = command.filter(|c| c.player_name == character.name) {
                        stats.commands_received.fetch_add(1, Ordering::Relaxed);
                        let understood = character.command(&cmd.command);
                        tracing::info!(character = %character.name, command = %cmd.command, understood, "simulator got a command");
                        // Report the new state at once rather than at the next tick.
                        let frame = character.telemetry_frame(chrono::Utc::now());
                        if tx.send(Message::text(frame.to_string())).await.is_err() {
                            return Ended::Disconnected;
                        }
                        stats.frames_sent.fetch_add(1, Ordering::Relaxed);
                        stats.telemetry_sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Ended::Disconnected,
            },
        }
    }
}
