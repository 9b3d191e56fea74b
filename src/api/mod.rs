//! HTTP endpoints other than the websockets: live state, debug counters, health, and stored
//! telemetry (history and trails).

mod error;
mod history;
mod status;

pub use error::ApiError;
pub use history::{history, trails};
pub use status::{debug, health, live};
