//! HTTP endpoints other than the websockets: live state, debug counters and health.

mod error;
mod status;

pub use error::ApiError;
pub use status::{debug, health, live};
