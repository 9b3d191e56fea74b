//! The deliberate surface that the integration tests (`tests/`) and `dereth-bench` drive below
//! the server: pieces worth exercising on their own (the live state's rules, the coalescer, the
//! writer, recent trails, the data lifecycle). Not an API for embedding: everything else of the
//! crate is private to it.

pub use crate::cluster::packet::{BUS_VERSION, sign as sign_bus_message};
pub use crate::live::batch::{Batch, MESSAGE_BOUND};
pub use crate::live::guard::{MAX_KILLS_PER_SEC, MAX_UNMEASURED_KILLS};
pub use crate::live::recent::RecentTrails;
pub use crate::live::{Applied, CHAT_BACKLOG, Live, Origin};
pub use crate::ops::lifecycle::Lifecycle;
pub use crate::ops::metrics::Metrics;
pub use crate::sessions::coalesce::Pending;
pub use crate::sessions::plugin::MAX_CHARACTERS_PER_CONNECTION;
pub use crate::writer::{WriterConfig, WriterReport, run as run_writer};

use axum::extract::ws::Utf8Bytes;

use crate::protocol::PluginFrame;

/// Applies `frame` as if a plugin connected to this instance had sent it (its text being its
/// wire form).
pub fn apply_plugin_frame(live: &Live, frame: PluginFrame) -> Applied {
    let text = Utf8Bytes::from(frame.to_wire().unwrap_or_default());
    live.apply(frame, &text, Origin::Plugin)
}
