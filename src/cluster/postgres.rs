//! `CLUSTER_BUS=postgres`: LISTEN/NOTIFY on the tracker's own database, nothing new to run.
//!
//! NOTIFY payloads must stay under 8,000 bytes (larger packets are chunked by the caller), and
//! notifications sent while a listener is disconnected are lost: the listener reports the loss
//! and the instance asks the others for their state again.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bus::{Bus, BusError, BusEvent};
use crate::secret::Secret;

/// The channel every instance of one database listens on.
pub(crate) const CHANNEL: &str = "dereth_cluster";

/// Largest NOTIFY payload sent (PostgreSQL refuses 8,000 bytes and more).
pub(crate) const MAX_PAYLOAD: usize = 7_800;

/// Sends with NOTIFY over a small pool of its own.
#[derive(Debug)]
pub(crate) struct PgBus {
    pool: PgPool,
}

/// Connects to the database at `url` and starts listening; what arrives goes to `events`.
pub(crate) async fn connect(
    url: &str,
    password: Option<&Secret>,
    events: mpsc::Sender<BusEvent>,
    stop: CancellationToken,
) -> Result<PgBus, BusError> {
    let mut options = PgConnectOptions::from_str(url)
        .map_err(|err| BusError(format!("bad DATABASE_URL for the cluster bus: {err}")))?;
    if let Some(password) = password {
        options = options.password(password.expose());
    }
    let pool = PgPoolOptions::new()
        .max_connections(3)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(|err| {
            BusError(format!(
                "cannot reach the database for the cluster bus: {err}"
            ))
        })?;
    let mut listener = PgListener::connect_with(&pool)
        .await
        .map_err(|err| BusError(format!("cannot listen for the cluster bus: {err}")))?;
    listener
        .listen(CHANNEL)
        .await
        .map_err(|err| BusError(format!("cannot listen for the cluster bus: {err}")))?;
    tokio::spawn(listen(listener, events, stop));
    Ok(PgBus { pool })
}

/// Passes notifications on until `stop`; reports a lost connection, reconnects (the listener
/// does, on the next receive) and reports the bus back once something arrives again (every
/// instance hears its own heartbeat each second).
async fn listen(mut listener: PgListener, events: mpsc::Sender<BusEvent>, stop: CancellationToken) {
    let mut up = true;
    if events.send(BusEvent::Connected).await.is_err() {
        return;
    }
    loop {
        let received = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.try_recv() => r,
        };
        let event = match received {
            Ok(Some(notification)) => {
                if !up {
                    up = true;
                    tracing::info!("cluster bus (PostgreSQL) reachable again");
                    if events.send(BusEvent::Connected).await.is_err() {
                        return;
                    }
                }
                BusEvent::Packet(notification.payload().to_owned())
            }
            Ok(None) => {
                tracing::warn!("cluster bus (PostgreSQL) connection lost; reconnecting");
                up = false;
                BusEvent::Disconnected
            }
            Err(err) => {
                tracing::warn!(%err, "cluster bus (PostgreSQL) unreachable; retrying");
                up = false;
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                BusEvent::Disconnected
            }
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}

#[async_trait::async_trait]
impl Bus for PgBus {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn max_message(&self) -> usize {
        MAX_PAYLOAD
    }

    async fn send(&self, message: String) -> Result<(), BusError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(message)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|err| BusError(err.to_string()))
    }
}
