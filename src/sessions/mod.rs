//! Long-lived websocket sessions, once the web edge has let a peer in: the plugin's
//! (`/ws/position`), the browser's (`/ws/live`), what both share (keepalive, bounded sends), and
//! the coalescer that batches updates for maps with many viewers.

pub(crate) mod browser;
pub(crate) mod coalesce;
pub(crate) mod plugin;
pub(crate) mod socket;
