//! The one small interface every bus implements: send a packet to every instance, and report
//! packets received and whether the bus is reachable.

/// What a bus reports to its instance.
#[derive(Debug)]
pub(crate) enum BusEvent {
    /// A packet (or a chunk of one) from some instance, possibly this one.
    Packet(String),
    /// The bus is reachable (again): anything sent while it was not was missed.
    Connected,
    /// The bus is unreachable; the transport keeps trying.
    Disconnected,
}

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BusError(pub String);

/// A transport between instances.
#[async_trait::async_trait]
pub(crate) trait Bus: Send + Sync + std::fmt::Debug {
    /// `postgres` or `nats`.
    fn kind(&self) -> &'static str;
    /// Largest message the bus carries; larger packets are chunked.
    fn max_message(&self) -> usize;
    /// Sends one message to every instance.
    async fn send(&self, message: String) -> Result<(), BusError>;
}
