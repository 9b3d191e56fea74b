//! `dereth-bench`: the plugin simulator and the benchmarks, kept out of the server binary.
//! Built only with the `bench` feature:
//! `cargo build --release --features bench` then `./target/release/dereth-bench <tool>`.
//! Benchmarks start `dereth-tracker` (the executable beside this one) as a separate process,
//! only ever talk to loopback and stop by themselves; each prints a one-line JSON summary and
//! rewrites its section of docs/BENCHMARKS.md.

mod chrome;
mod cli;
mod connections;
mod crowd;
mod fanout;
mod ingest;
mod memory;
mod moving;
mod queries;
mod readers;
mod report;
mod server;
mod simulate;
mod trails;
mod ui;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    dereth_tracker::process::raise_file_limit();
    let result = match cli.command {
        Command::Simulate(args) => simulate::run(args).await,
        Command::Queries(args) => queries::run(args).await,
        Command::Ingest(args) => ingest::ingest(args).await,
        Command::Ceiling(args) => ingest::ceiling(args).await,
        Command::Fanout(args) => fanout::run(args).await,
        Command::Connections(args) => connections::run(args).await,
        Command::Ui(args) => ui::run(args).await,
        Command::Readers(args) => readers::run(args).await,
        Command::Trails(args) => trails::run(args).await,
        Command::Crowd(args) => crowd::run(args).await,
        Command::Memory(args) => memory::run(args).await,
        Command::Move(args) => moving::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}
