//! Command-line settings of `dereth-bench`: one subcommand per tool, each with its own flags.

use clap::{Args, Parser, Subcommand};
use dereth_tracker::config::Secret;

/// Settings of `dereth-bench simulate`.
#[derive(Debug, Clone, Args)]
pub(crate) struct SimulateArgs {
    /// The tracker's plugin endpoint.
    #[arg(
        long,
        env = "SIM_URL",
        default_value = "ws://127.0.0.1:8765/ws/position"
    )]
    pub url: String,
    /// The tracker's shared secret.
    #[arg(long, env = "SHARED_SECRET", hide_env_values = true, value_parser = Secret::required)]
    pub secret: Secret,
    /// Characters to simulate, each over its own connection (1 to 5000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=5000))]
    pub characters: u64,
    /// Milliseconds between telemetry frames of one character (the plugin sends every 2000).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub interval_ms: u64,
    /// Stop after this many seconds (1 to 86400).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub duration_secs: u64,
    /// How much faster than real time characters travel, hunt and die.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Seed of the characters' behaviour (same seed, same characters).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of the first character (`Sim 0000`...), to run several simulators side by side.
    #[arg(long, default_value_t = 0)]
    pub first_index: usize,
}

/// Tools for trying and measuring a tracker: a plugin simulator and benchmarks that only ever
/// talk to loopback and stop by themselves.
#[derive(Debug, Parser)]
#[command(name = "dereth-bench", version, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The tool to run.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Simulate plugins: N characters streaming to a tracker over the real wire format.
    Simulate(SimulateArgs),
    /// Fill PostgreSQL with synthetic history and time the query endpoints.
    Queries(QueryBenchArgs),
    /// Plugins sending as fast as they can into a tracker on PostgreSQL; rows persisted per second
    /// against the COPY ceiling measured in the same run.
    Ingest(IngestArgs),
    /// Rows per second PostgreSQL takes through COPY on this machine.
    Ceiling(CeilingArgs),
    /// Characters at 1 Hz fanned out to many browsers: delivery, latency, server CPU and memory.
    Fanout(FanoutArgs),
    /// Thousands of idle plugin and browser connections: server memory per connection.
    Connections(ConnectionsArgs),
    /// Ingest at a steady rate with and without clients hammering the heaviest queries: rows
    /// persisted per second, `/health`, queue depth, lost frames.
    Readers(ReadersArgs),
    /// Frame times of the map in headless Chromium with many moving characters, and screenshots.
    Ui(UiBenchArgs),
    /// `/trails` for the live window answered from memory: time to pick, thin and serialize.
    Trails(TrailsArgs),
    /// Many live characters at once: first frames, memory per character, snapshot to a new map.
    Crowd(CrowdArgs),
    /// Heap per live, offline and evicted character, counted by the allocator.
    Memory(MemoryArgs),
    /// A guild outgrowing SQLite: a stretch of history backed up from SQLite and restored into
    /// PostgreSQL, timed, totals compared.
    Move(MoveArgs),
}

/// Settings of `dereth-bench move`.
#[derive(Debug, Clone, Args)]
pub(crate) struct MoveArgs {
    /// An empty PostgreSQL database to restore into.
    #[arg(long, env = "BENCH_DATABASE_URL")]
    pub database_url: String,
    /// Characters.
    #[arg(long, default_value_t = 500)]
    pub characters: usize,
    /// Hours of history (a point every 2 s per character).
    #[arg(long, default_value_t = 1.0)]
    pub hours: f64,
    /// Delete what the PostgreSQL database holds first.
    #[arg(long)]
    pub replace: bool,
    /// Markdown file to record the figures in.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub report: std::path::PathBuf,
}

/// Settings of `dereth-bench memory`.
#[derive(Debug, Clone, Args)]
pub(crate) struct MemoryArgs {
    /// Characters.
    #[arg(long, default_value_t = 10_000)]
    pub characters: usize,
    /// Frames each character sends (one a second) before falling silent.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub frames: u64,
    /// Markdown file to record the figures in.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub report: std::path::PathBuf,
}

/// Settings of `dereth-bench crowd`.
#[derive(Debug, Clone, Args)]
pub(crate) struct CrowdArgs {
    /// Database for the server (default: a temporary SQLite file).
    #[arg(long, env = "BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Live characters.
    #[arg(long, default_value_t = 10_000)]
    pub characters: usize,
    /// New maps timed, one after another.
    #[arg(long, default_value_t = 10)]
    pub maps: usize,
    /// Markdown file to record the figures in.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub report: std::path::PathBuf,
}

/// Settings of `dereth-bench trails`.
#[derive(Debug, Clone, Args)]
pub(crate) struct TrailsArgs {
    /// Characters in memory, each with a position every 2 s.
    #[arg(long, default_value_t = 1_000)]
    pub characters: usize,
    /// Seconds of positions, and the window asked for.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub seconds: u64,
    /// Timed runs per case.
    #[arg(long, default_value_t = 30)]
    pub iterations: usize,
    /// Markdown file to record the figures in.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub report: std::path::PathBuf,
}

/// Settings of `dereth-bench readers`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ReadersArgs {
    /// PostgreSQL database to fill (emptied first).
    #[arg(long, env = "BENCH_DATABASE_URL")]
    pub database_url: String,
    /// Telemetry rows of history loaded before the run (7 days of `characters` characters).
    #[arg(long, default_value_t = 1_500_000)]
    pub history_rows: i64,
    /// Characters of the history, and plugins sending during the run.
    #[arg(long, default_value_t = 20)]
    pub plugins: usize,
    /// Telemetry frames per second each plugin sends.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub rate: u64,
    /// Clients hammering the heaviest queries in the second phase.
    #[arg(long, default_value_t = 8)]
    pub readers: usize,
    /// Seconds of each phase (without, then with readers).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub seconds: u64,
    /// Markdown report to update.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub report: std::path::PathBuf,
}

/// Settings of `dereth-bench ui`.
#[derive(Debug, Clone, Args)]
pub(crate) struct UiBenchArgs {
    /// Simulated characters on the map.
    #[arg(long, default_value_t = 1_000)]
    pub characters: usize,
    /// Seconds of frames measured.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub seconds: u64,
    /// Trails off: only the live map's frame times are measured (no replay, no screenshots),
    /// for a crowd too large to draw trails for (`--characters 10000 --no-trails`).
    #[arg(long)]
    pub no_trails: bool,
    /// Only the screenshots (nothing measured, the report left as it is).
    #[arg(long, conflicts_with = "no_trails")]
    pub only_screenshots: bool,
    /// Folder for the screenshots.
    #[arg(long, default_value = "docs/screenshots")]
    pub screenshots: std::path::PathBuf,
    /// Markdown file to record the figures in.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub report: std::path::PathBuf,
}

/// Settings of `dereth-bench ingest`.
#[derive(Debug, Clone, Args)]
pub(crate) struct IngestArgs {
    /// PostgreSQL database to use. Its event tables are emptied.
    #[arg(long, env = "BENCH_DATABASE_URL")]
    pub database_url: String,
    /// Plugin connections sending at once.
    #[arg(long, default_value_t = 16)]
    pub plugins: usize,
    /// Seconds of sending.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub seconds: u64,
    /// Rows loaded with COPY for the ceiling.
    #[arg(long, default_value_t = 500_000)]
    pub ceiling_rows: i64,
    /// Markdown file to record the figures in.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub report: std::path::PathBuf,
}

/// Settings of `dereth-bench ceiling`.
#[derive(Debug, Clone, Args)]
pub(crate) struct CeilingArgs {
    /// PostgreSQL database to use. Its event tables are emptied.
    #[arg(long, env = "BENCH_DATABASE_URL")]
    pub database_url: String,
    /// Rows to load.
    #[arg(long, default_value_t = 500_000)]
    pub rows: i64,
    /// Markdown file to record the figures in.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub report: std::path::PathBuf,
}

/// Settings of `dereth-bench fanout`.
#[derive(Debug, Clone, Args)]
pub(crate) struct FanoutArgs {
    /// Database for the server (default: a temporary SQLite file).
    #[arg(long, env = "BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Characters, each sending telemetry once a second.
    #[arg(long, default_value_t = 500)]
    pub characters: usize,
    /// Browsers receiving every frame.
    #[arg(long, default_value_t = 200)]
    pub browsers: usize,
    /// Seconds measured (after a warm-up of 3 s).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub seconds: u64,
    /// Browsers take the coalesced stream (`/ws/live?coalesce=1`, a batch per tick) instead of
    /// a frame per update.
    #[arg(long)]
    pub coalesce: bool,
    /// With --coalesce: each browser watches a 50 x 50 area of the map (a `viewport` frame)
    /// around a random point, so it receives only part of the updates (plus the 10 s refresh).
    /// A fraction (`--viewport 0.5`) makes that share of the browsers watch an area and the
    /// rest the whole map.
    #[arg(long, requires = "coalesce", num_args = 0..=1, default_missing_value = "1",
          value_parser = viewport_share)]
    pub viewport: Option<f64>,
    /// How browsers want live characters encoded: `json` or `compact` (`/ws/live?encoding=`).
    #[arg(long, default_value = "json", value_parser = ["json", "compact"])]
    pub encoding: String,
    /// Two instances joined by this bus (`postgres`, or `nats` to start a nats-server on
    /// loopback for the run, or a `nats://` URL): plugins on one, browsers on the other.
    /// Needs a PostgreSQL `--database-url`.
    #[arg(long)]
    pub cluster_bus: Option<String>,
    /// Markdown file to record the figures in.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub report: std::path::PathBuf,
}

/// Settings of `dereth-bench connections`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConnectionsArgs {
    /// Database for the server (default: a temporary SQLite file).
    #[arg(long, env = "BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Idle plugin connections.
    #[arg(long, default_value_t = 5_000)]
    pub plugins: usize,
    /// Idle browser connections.
    #[arg(long, default_value_t = 5_000)]
    pub browsers: usize,
    /// Markdown file to record the figures in.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub report: std::path::PathBuf,
}

/// Settings of the query benchmark.
#[derive(Debug, Clone, Args)]
pub(crate) struct QueryBenchArgs {
    /// PostgreSQL database to fill. Its event tables are emptied first.
    #[arg(long, env = "BENCH_DATABASE_URL")]
    pub database_url: String,
    /// Telemetry rows to generate (spread evenly over the characters, one every 2 s each).
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: i64,
    /// Characters to generate.
    #[arg(long, default_value_t = 1_000)]
    pub characters: i64,
    /// Spawn events to generate over the last 24 hours.
    #[arg(long, default_value_t = 1_000_000)]
    pub spawns: i64,
    /// Timed requests per endpoint (after 3 warm-up requests).
    #[arg(long, default_value_t = 30)]
    pub iterations: usize,
    /// Reuse the data already in the database (it must come from a fill less than an hour old).
    #[arg(long)]
    pub reuse: bool,
    /// Markdown file to record the figures in.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub report: std::path::PathBuf,
}

/// A share of the browsers, 0 to 1.
fn viewport_share(text: &str) -> Result<f64, String> {
    let share: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&share) {
        Ok(share)
    } else {
        Err("a share of the browsers, from 0 to 1".to_owned())
    }
}
