//! Running the tracker over time: metrics (for `/debug` and `/metrics`), webhook alerts about
//! characters, and the data lifecycle (retention, thinning, TimescaleDB policies).

pub(crate) mod alerts;
pub mod backup;
pub(crate) mod backup_schedule;
pub(crate) mod lifecycle;
pub(crate) mod log_gate;
pub(crate) mod metrics;
