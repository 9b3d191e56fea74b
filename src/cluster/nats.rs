//! `CLUSTER_BUS=nats://host:port` (several servers comma separated): NATS core publish and
//! subscribe, for deployments that already run it or outgrow NOTIFY.

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bus::{Bus, BusError, BusEvent};

/// The subject every instance publishes on and subscribes to.
pub(crate) const SUBJECT: &str = "dereth.cluster";

/// Largest message sent, well under the server's default 1 MiB limit.
const MAX_MESSAGE: usize = 256 * 1024;

/// A NATS client.
#[derive(Debug)]
pub(crate) struct NatsBus {
    client: async_nats::Client,
    max_message: usize,
}

/// Connects (retrying in the background while no server is reachable) and subscribes; what
/// arrives goes to `events`.
pub(crate) async fn connect(
    urls: &str,
    instance: &str,
    events: mpsc::Sender<BusEvent>,
    stop: CancellationToken,
) -> Result<NatsBus, BusError> {
    let addrs: Vec<async_nats::ServerAddr> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse()
                .map_err(|err| BusError(format!("bad NATS URL in CLUSTER_BUS: {err}")))
        })
        .collect::<Result<_, _>>()?;
    let notify = events.clone();
    let client = async_nats::ConnectOptions::new()
        .name(format!("dereth-tracker {instance}"))
        .retry_on_initial_connect()
        .event_callback(move |event| {
            let notify = notify.clone();
            async move {
                let report = match event {
                    async_nats::Event::Connected => {
                        tracing::info!("cluster bus (NATS) connected");
                        Some(BusEvent::Connected)
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!("cluster bus (NATS) disconnected; reconnecting");
                        Some(BusEvent::Disconnected)
                    }
                    other => {
                        tracing::debug!(event = %other, "cluster bus (NATS)");
                        None
                    }
                };
                if let Some(report) = report {
                    let _ = notify.send(report).await;
                }
            }
        })
        .connect(addrs)
        .await
        .map_err(|err| BusError(format!("cannot connect to NATS: {err}")))?;
    let mut subscription = client
        .subscribe(SUBJECT)
        .await
        .map_err(|err| BusError(format!("cannot subscribe on NATS: {err}")))?;
    tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => return,
                m = subscription.next() => m,
            };
            let Some(message) = message else { return };
            let Ok(text) = String::from_utf8(message.payload.to_vec()) else {
                tracing::debug!("cluster bus (NATS): a message that is not text; ignored");
                continue;
            };
            if events.send(BusEvent::Packet(text)).await.is_err() {
                return;
            }
        }
    });
    Ok(NatsBus {
        client,
        max_message: MAX_MESSAGE,
    })
}

#[async_trait::async_trait]
impl Bus for NatsBus {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn max_message(&self) -> usize {
        let server = self.client.server_info().max_payload;
        if server > 1024 {
            self.max_message.min(server - 512)
        } else {
            self.max_message
        }
    }

    async fn send(&self, message: String) -> Result<(), BusError> {
        self.client
            .publish(SUBJECT, message.into())
            .await
            .map_err(|err| BusError(err.to_string()))
    }
}
