//! Demo mode: the server plus a simulator of a few dozen characters in the same process, so a
//! newcomer's first command shows a living map.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Secret, Settings};
use crate::simulate::{self, SimConfig, SimStats};

/// Database used in demo mode when DATABASE_URL was left at its default, so demo characters do
/// not end up in a real history.
pub const DEMO_DATABASE_URL: &str = "sqlite://dereth-tracker-demo.db";

/// Adjusts settings for demo mode: a generated secret when none is set, and the demo database.
pub fn prepare(settings: &mut Settings) {
    if settings.access.shared_secret.is_none() {
        settings.access.shared_secret = Some(Secret::new(generate_secret()));
        tracing::info!("demo mode: generated a shared secret for the simulated plugins");
    }
    if settings.database.database_url == Settings::DEFAULT_DATABASE_URL {
        settings.database.database_url = DEMO_DATABASE_URL.into();
    }
}

/// A random 128-bit secret, hex encoded.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: fall back to a time-seeded generator (demo use only).
        let mut rng = fastrand::Rng::new();
        bytes.iter_mut().for_each(|b| *b = rng.u8(..));
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts the simulated characters against the server listening on `addr`.
pub fn start(addr: SocketAddr, settings: &Settings, stop: CancellationToken) -> JoinHandle<()> {
    let host = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let config = SimConfig {
        url: format!("ws://{host}/ws/position"),
        secret: settings
            .access
            .shared_secret
            .as_ref()
            .map(|s| s.expose().to_owned())
            .unwrap_or_default(),
        characters: settings.server.demo_characters.clamp(1, 5_000),
        first_index: 0,
        interval: Duration::from_secs(2),
        speed: 3.0,
        seed: 42,
    };
    tracing::info!(
        characters = config.characters,
        "demo mode: starting simulated characters"
    );
    tokio::spawn(simulate::run(config, stop, Arc::new(SimStats::default())))
}
