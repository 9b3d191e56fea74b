//! `dereth-bench simulate`: simulated plugins streaming to a tracker until the duration ends or
//! the process is stopped, then a JSON summary on stdout.

use std::sync::Arc;
use std::time::Duration;

use dereth_tracker::process::shutdown_signal;
use dereth_tracker::simulate::{SimConfig, SimStats};
use tokio_util::sync::CancellationToken;

use crate::cli::SimulateArgs;

pub(crate) async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let stats = Arc::new(SimStats::default());
    let config = SimConfig {
        url: args.url.clone(),
        secret: args.secret.expose().to_owned(),
        characters: usize::try_from(args.characters)?,
        first_index: args.first_index,
        interval: Duration::from_millis(args.interval_ms),
        speed: args.speed,
        seed: args.seed,
    };
    tracing::info!(characters = config.characters, url = %config.url, "simulating");
    let run = tokio::spawn(dereth_tracker::simulate::run(
        config,
        stop.clone(),
        stats.clone(),
    ));
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(args.duration_secs)) => {}
        () = shutdown_signal() => {}
    }
    stop.cancel();
    let _ = run.await;
    println!("{}", serde_json::to_string(&stats.report())?);
    Ok(())
}
