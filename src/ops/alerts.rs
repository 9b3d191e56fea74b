//! Webhook alerts: a character idle (no kills and no movement for a while), a death, a rare find,
//! a plugin that disconnected unexpectedly and did not come back within a grace period.
//!
//! Ingest hands signals over with `try_send` and never waits: when the alert queue is full a
//! signal is dropped (and counted), never the telemetry. Deliveries retry with backoff.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{AlertFormat, Settings};
use crate::spool::Spool;
use crate::store::{Event, Happening, HappeningKind};

/// Signals queued from ingest before further ones are dropped.
const SIGNAL_QUEUE: usize = 4_096;
/// Deliveries in flight at once.
const MAX_IN_FLIGHT: usize = 4;
/// Attempts per alert (the first try and its retries).
const ATTEMPTS: u32 = 4;
/// Deliveries waiting or in flight before new alerts are dropped (a dead webhook must not pile
/// up work without bound).
const MAX_PENDING: usize = 256;

/// What ingest tells the alert task.
#[derive(Debug, Clone)]
pub(crate) enum Signal {
    Telemetry {
        name: String,
        session_id: String,
        ew: f64,
        ns: f64,
        kills: i64,
        deaths: i64,
    },
    Rare {
        name: String,
        item: String,
        ew: f64,
        ns: f64,
    },
    /// A plugin connection ended without saying goodbye (error, timeout, dropped socket).
    Lost { names: Vec<String> },
}

/// The kinds of alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    Idle,
    Death,
    Rare,
    Disconnect,
}

/// One alert to deliver.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Alert {
    pub kind: Kind,
    pub character: String,
    pub message: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Delivery counters, shown in `/debug`.
#[derive(Debug, Default, Serialize)]
pub(crate) struct AlertStats {
    pub fired: AtomicU64,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub signals_dropped: AtomicU64,
}

/// The sending side ingest holds; cheap to clone. Disabled when no webhook is configured.
#[derive(Debug, Clone)]
pub(crate) struct Alerts {
    tx: Option<mpsc::Sender<Signal>>,
    pub stats: Arc<AlertStats>,
}

impl Alerts {
    /// No webhook: every signal is ignored.
    pub(crate) fn disabled() -> Self {
        Self {
            tx: None,
            stats: Arc::default(),
        }
    }

    /// Hands a signal over without waiting.
    pub(crate) fn signal(&self, signal: Signal) {
        if let Some(tx) = &self.tx
            && tx.try_send(signal).is_err()
        {
            self.stats.signals_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.tx.is_some()
    }
}

/// Alert rules, from the settings.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub webhooks: Vec<String>,
    pub format: AlertFormat,
    pub idle: Duration,
    pub disconnect_grace: Duration,
    pub muted: HashSet<String>,
    pub kinds: HashSet<Kind>,
}

impl Rules {
    pub(crate) fn from_settings(s: &Settings) -> Option<Self> {
        let webhooks: Vec<String> = s
            .alerts
            .alert_webhook_url
            .as_deref()?
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        if webhooks.is_empty() {
            return None;
        }
        let kinds = s
            .alerts
            .alert_events
            .split(',')
            .filter_map(|k| match k.trim() {
                "idle" => Some(Kind::Idle),
                "death" => Some(Kind::Death),
                "rare" => Some(Kind::Rare),
                "disconnect" => Some(Kind::Disconnect),
                _ => None,
            })
            .collect();
        Some(Self {
            webhooks,
            format: s.alerts.alert_format,
            idle: Duration::from_secs(s.alerts.alert_idle_secs),
            disconnect_grace: Duration::from_secs(s.alerts.alert_disconnect_grace_secs),
            muted: s
                .alerts
                .alert_mute
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect(),
            kinds,
        })
    }
}

/// Starts the alert task when a webhook is configured. Every alert it sends is also kept in
/// the event log (through `spool`, like everything the tracker keeps).
pub(crate) fn start(settings: &Settings, spool: Spool, stop: CancellationToken) -> Alerts {
    let Some(rules) = Rules::from_settings(settings) else {
        return Alerts::disabled();
    };
    tracing::info!(
        webhooks = rules.webhooks.len(),
        format = ?rules.format,
        "alerts enabled"
    );
    let (tx, rx) = mpsc::channel(SIGNAL_QUEUE);
    let stats = Arc::new(AlertStats::default());
    tokio::spawn(run(rules, rx, stats.clone(), spool, stop));
    Alerts {
        tx: Some(tx),
        stats,
    }
}

#[derive(Debug)]
struct Watch {
    session_id: String,
    ew: f64,
    ns: f64,
    kills: i64,
    deaths: i64,
    last_seen: Instant,
    last_activity: Instant,
    idle_alerted: bool,
    lost_at: Option<Instant>,
}

async fn run(
    rules: Rules,
    mut rx: mpsc::Receiver<Signal>,
    stats: Arc<AlertStats>,
    spool: Spool,
    stop: CancellationToken,
) {
    let rules = Arc::new(rules);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let gate = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut watched: HashMap<String, Watch> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        let mut fired = Vec::new();
        tokio::select! {
            () = stop.cancelled() => return,
            signal = rx.recv() => match signal {
                None => return,
                Some(signal) => observe(&mut watched, signal, &mut fired),
            },
            _ = tick.tick() => check_timers(&mut watched, &rules, &mut fired),
        }
        for alert in fired {
            if !rules.kinds.contains(&alert.kind) || rules.muted.contains(&alert.character) {
                continue;
            }
            stats.fired.fetch_add(1, Ordering::Relaxed);
            tracing::info!(kind = ?alert.kind, character = %alert.character, "alert");
            let logged = Event::Happened(Happening {
                character_name: alert.character.clone(),
                kind: HappeningKind::Alert,
                timestamp: alert.at,
                detail: Some(alert.message.clone()),
            });
            if let Err(err) = spool.append(logged).await {
                tracing::debug!(%err, "an alert could not be kept in the event log");
            }
            for url in &rules.webhooks {
                if pending.load(Ordering::Relaxed) >= MAX_PENDING {
                    tracing::warn!("too many alerts waiting for the webhook; dropping one");
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                pending.fetch_add(1, Ordering::Relaxed);
                let (client, gate, stats, rules, url, alert, pending) = (
                    client.clone(),
                    gate.clone(),
                    stats.clone(),
                    rules.clone(),
                    url.clone(),
                    alert.clone(),
                    pending.clone(),
                );
                tokio::spawn(async move {
                    if let Ok(_permit) = gate.acquire().await {
                        deliver(&client, &url, &rules, &alert, &stats).await;
                    }
                    pending.fetch_sub(1, Ordering::Relaxed);
                });
            }
        }
    }
}

fn observe(watched: &mut HashMap<String, Watch>, signal: Signal, fired: &mut Vec<Alert>) {
    let now = Instant::now();
    match signal {
        Signal::Telemetry {
            name,
            session_id,
            ew,
            ns,
            kills,
            deaths,
        } => {
            let w = watched.entry(name.clone()).or_insert_with(|| Watch {
                session_id: session_id.clone(),
                ew,
                ns,
                kills,
                deaths,
                last_seen: now,
                last_activity: now,
                idle_alerted: false,
                lost_at: None,
            });
            if w.session_id == session_id && deaths > w.deaths {
                fired.push(alert(
                    Kind::Death,
                    &name,
                    format!("{name} died ({deaths} deaths this session)"),
                ));
            }
            let moved = (w.ew - ew).hypot(w.ns - ns) > 0.005;
            if moved || kills != w.kills || session_id != w.session_id {
                w.last_activity = now;
                w.idle_alerted = false;
            }
            w.session_id = session_id;
            (w.ew, w.ns, w.kills, w.deaths) = (ew, ns, kills, deaths);
            w.last_seen = now;
            w.lost_at = None; // it came back (or never left)
        }
        Signal::Rare { name, item, ew, ns } => {
            fired.push(alert(
                Kind::Rare,
                &name,
                format!(
                    "{name} found a rare: {item} at {}",
                    crate::protocol::format_coords(ew, ns)
                ),
            ));
        }
        Signal::Lost { names } => {
            for name in names {
                if let Some(w) = watched.get_mut(&name) {
                    w.lost_at = Some(now);
                }
            }
        }
    }
}

fn check_timers(watched: &mut HashMap<String, Watch>, rules: &Rules, fired: &mut Vec<Alert>) {
    let now = Instant::now();
    watched.retain(|name, w| {
        if let Some(lost) = w.lost_at
            && now.duration_since(lost) >= rules.disconnect_grace
        {
            fired.push(alert(
                Kind::Disconnect,
                name,
                format!(
                    "{name}'s plugin disconnected unexpectedly and has not come back for {} s",
                    rules.disconnect_grace.as_secs()
                ),
            ));
            return false; // forget it until it shows up again
        }
        let online = w.lost_at.is_none()
            && now.duration_since(w.last_seen) < rules.idle.max(Duration::from_secs(60));
        if online && !w.idle_alerted && now.duration_since(w.last_activity) >= rules.idle {
            w.idle_alerted = true;
            fired.push(alert(
                Kind::Idle,
                name,
                format!(
                    "{name} is idle: no kills and no movement for {} s",
                    now.duration_since(w.last_activity).as_secs()
                ),
            ));
        }
        // Characters silent for a day are forgotten.
        now.duration_since(w.last_seen) < Duration::from_secs(86_400)
    });
}

fn alert(kind: Kind, character: &str, message: String) -> Alert {
    Alert {
        kind,
        character: character.to_owned(),
        message,
        at: chrono::Utc::now(),
    }
}

/// The request body for the configured format.
pub(crate) fn body(format: AlertFormat, alert: &Alert) -> serde_json::Value {
    match format {
        // Character names come from plugins: `@everyone` in one must not ping a whole server.
        AlertFormat::Discord => json!({
            "username": "Dereth Tracker",
            "content": alert.message,
            "allowed_mentions": {"parse": []},
        }),
        AlertFormat::Generic => json!({
            "kind": alert.kind,
            "character": alert.character,
            "message": alert.message,
            "at": alert.at,
        }),
    }
}

async fn deliver(
    client: &reqwest::Client,
    url: &str,
    rules: &Rules,
    alert: &Alert,
    stats: &AlertStats,
) {
    let payload = body(rules.format, alert);
    let mut backoff = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        match client.post(url).json(&payload).send().await {
            Ok(resp) if resp.status().is_success() => {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(resp) if resp.status().is_client_error() && resp.status().as_u16() != 429 => {
                tracing::warn!(status = %resp.status(), "webhook refused the alert; not retrying");
                break;
            }
            Ok(resp) => {
                tracing::warn!(status = %resp.status(), attempt, "webhook failed; retrying");
            }
            // Without the URL: a webhook URL is a credential (Discord's carry their token).
            Err(err) => {
                let err = err.without_url();
                tracing::warn!(%err, attempt, "webhook unreachable; retrying");
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    stats.failed.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discord_bodies_never_ping_anyone() {
        let alert = Alert {
            kind: Kind::Rare,
            character: "@everyone".into(),
            message: "@everyone found a rare".into(),
            at: chrono::Utc::now(),
        };
        let body = body(AlertFormat::Discord, &alert);
        assert_eq!(body["allowed_mentions"]["parse"], serde_json::json!([]));
        assert_eq!(body["content"], "@everyone found a rare");
    }
}
