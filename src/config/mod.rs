//! Every setting the tracker reads, parsed once at startup from flags with environment fallbacks.
//!
//! Nothing else in the crate reads the environment: the parsed [`Settings`] travel explicitly
//! inside the application state.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

mod backups;
mod cli;
mod derived;
pub use backups::{BackupSettings, Every};

/// A path, or an empty value meaning "not set" (`SPOOL_DIR=` in an `.env` file, `""` in a
/// compose file): clap's own path parser refuses empty values, which stopped the tracker.
pub(crate) fn path_or_empty(raw: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(raw))
}
pub use cli::{
    BackupArgs, Cli, Command, HealthcheckArgs, KeyAction, ManageArgs, RestoreArgs, TokenAction,
    UserAction, VERSION,
};

pub use crate::identity::Role;
pub use crate::secret::Secret;
use crate::store::StoreOptions;

/// Body shape of webhook alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AlertFormat {
    /// `{"content": "..."}`, as Discord webhooks expect.
    Discord,
    /// `{"kind", "character", "message", "at"}`.
    Generic,
}

/// Output format of the log lines written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// A database URL whose `Debug` output hides the password it may hold (settings are printed
/// with `{:?}` in logs and panics). Reads as a `&str`.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }
}

impl std::ops::Deref for DatabaseUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&crate::store::redact_url(&self.0), f)
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for DatabaseUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

impl PartialEq<&str> for DatabaseUrl {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Server settings, grouped by concern. Each flag can also be given through the environment
/// variable named beside it; `--help` lists them under the same headings.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    #[command(flatten, next_help_heading = "Server")]
    pub server: ServerSettings,
    #[command(flatten, next_help_heading = "Database")]
    pub database: DatabaseSettings,
    #[command(flatten, next_help_heading = "Access")]
    pub access: AccessSettings,
    #[command(flatten, next_help_heading = "Connections")]
    pub sessions: SessionSettings,
    #[command(flatten, next_help_heading = "Writer")]
    pub writer: WriterSettings,
    #[command(flatten, next_help_heading = "Queries")]
    pub queries: QuerySettings,
    #[command(flatten, next_help_heading = "Health")]
    pub health: HealthSettings,
    #[command(flatten, next_help_heading = "Retention")]
    pub retention: RetentionSettings,
    #[command(flatten, next_help_heading = "Alerts")]
    pub alerts: AlertSettings,
    #[command(flatten, next_help_heading = "Cluster")]
    pub cluster: ClusterSettings,
    #[command(flatten, next_help_heading = "Backups")]
    pub backups: BackupSettings,
}

/// Several instances acting as one tracker.
#[derive(Debug, Clone, Args)]
pub struct ClusterSettings {
    /// The bus the instances of one tracker share: `postgres` (LISTEN/NOTIFY on DATABASE_URL,
    /// nothing new to run) or `nats://host:4222` (several servers comma separated). Unset: a
    /// single instance. Needs a PostgreSQL DATABASE_URL shared by every instance.
    #[arg(long, env = "CLUSTER_BUS", hide_env_values = true)]
    pub cluster_bus: Option<Secret>,

    /// This instance's name in the cluster (logs, /debug). Default: the host name and a
    /// random suffix.
    #[arg(long, env = "INSTANCE_NAME")]
    pub instance_name: Option<String>,

    /// A secret every instance of the cluster shares: each packet on the bus carries an HMAC
    /// made with it, and packets without a valid one are dropped. Required with CLUSTER_BUS.
    #[arg(long, env = "CLUSTER_KEY", hide_env_values = true)]
    pub cluster_key: Option<Secret>,
}

/// The HTTP server: address, connection and request limits, logging, the map UI and demo mode.
#[derive(Debug, Clone, Args)]
pub struct ServerSettings {
    /// Address and port to listen on (HTTP, both websockets and the map UI).
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8765")]
    pub bind_addr: SocketAddr,

    /// Seconds a connection has to send a request's complete headers (after it opens, and
    /// between requests on a kept-alive connection) before it is closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_read_timeout_secs: u64,

    /// Most HTTP connections open at once, websockets included; more wait to be accepted.
    #[arg(long, env = "MAX_HTTP_CONNECTIONS", default_value_t = 25_000,
          value_parser = clap::value_parser!(usize))]
    pub max_http_connections: usize,

    /// Seconds an HTTP request may take before it is answered with 408.
    #[arg(long, env = "REQUEST_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub request_timeout_secs: u64,

    /// On shutdown, seconds HTTP requests in flight may still take before their connections
    /// are closed (queued events are flushed after that, within SHUTDOWN_FLUSH_SECS).
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    /// Serve the map UI from this directory instead of the copy built into the binary
    /// (for UI development).
    #[arg(long, env = "STATIC_DIR", value_parser = path_or_empty)]
    pub static_dir: Option<PathBuf>,

    /// Log output format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Demo mode: also run ~50 simulated characters inside the server, with a generated secret
    /// when none is set, storing into `dereth-tracker-demo.db` unless DATABASE_URL says otherwise.
    #[arg(long, env = "DEMO", num_args = 0..=1, default_value = "false",
          default_missing_value = "true", value_parser = flag, action = clap::ArgAction::Set)]
    pub demo: bool,

    /// Characters simulated in demo mode.
    #[arg(long, env = "DEMO_CHARACTERS", default_value_t = 50)]
    pub demo_characters: usize,
}

/// Where and how events are stored.
#[derive(Debug, Clone, Args)]
pub struct DatabaseSettings {
    /// Where events are stored: `sqlite://FILE` (created on first run) or `postgres://...`.
    /// Special characters in a password must be percent-encoded (`@` as `%40`); or leave the
    /// password out of the URL and set DATABASE_PASSWORD.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = Settings::DEFAULT_DATABASE_URL
    )]
    pub database_url: DatabaseUrl,

    /// PostgreSQL password, used instead of one in DATABASE_URL; any characters work here.
    #[arg(long, env = "DATABASE_PASSWORD", hide_env_values = true)]
    pub database_password: Option<Secret>,

    /// At startup, how many seconds to keep retrying (with backoff) a database that does not
    /// answer yet, as while a database container is still starting (0: try once).
    #[arg(long, env = "DB_STARTUP_WAIT_SECS", default_value_t = 120)]
    pub db_startup_wait_secs: u64,

    /// Database connection pool size.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = StoreOptions::DEFAULT.max_connections,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,

    /// Seconds to wait for a free database connection before an operation fails.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT_SECS",
          default_value_t = StoreOptions::DEFAULT.acquire_timeout.as_secs())]
    pub db_acquire_timeout_secs: u64,

    /// SQLite only: milliseconds a statement waits on a locked database before failing.
    #[arg(long, env = "SQLITE_BUSY_TIMEOUT_MS",
          default_value_t = StoreOptions::DEFAULT.sqlite_busy_timeout.as_millis() as u64)]
    pub sqlite_busy_timeout_ms: u64,

    /// PostgreSQL: seconds a query may run on a read connection before the database cancels
    /// it (`statement_timeout`), so abandoned or huge queries cannot hold connections.
    #[arg(long, env = "READ_STATEMENT_TIMEOUT_SECS",
          default_value_t = StoreOptions::DEFAULT.read_statement_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub read_statement_timeout_secs: u64,
}

/// Who may connect: the plugin secret, the command token, host names and origins.
#[derive(Debug, Clone, Args)]
pub struct AccessSettings {
    /// Shared secret every plugin must present (header `X-Plugin-Secret`, or `?secret=`).
    /// Without it every plugin is refused.
    #[arg(long, env = "SHARED_SECRET", hide_env_values = true)]
    pub shared_secret: Option<Secret>,

    /// A previous shared secret still accepted while plugins are moved to the new one (secret
    /// rotation); plugins that use it are logged.
    #[arg(long, env = "SHARED_SECRET_PREVIOUS", hide_env_values = true)]
    pub shared_secret_previous: Option<Secret>,

    /// Legacy: a token that stands for a commander in browsers' command frames (the `token`
    /// field). Accounts with the commander or admin role are the way to command now; every
    /// command is audited.
    #[arg(long, env = "COMMAND_TOKEN", hide_env_values = true)]
    pub command_token: Option<Secret>,

    /// Let anyone read the map and the data without signing in (never to command). Without it,
    /// reading needs a viewer once the tracker listens beyond loopback or any account exists.
    #[arg(long, env = "PUBLIC_READ", num_args = 0..=1, default_value = "false",
          default_missing_value = "true", value_parser = flag, action = clap::ArgAction::Set)]
    pub public_read: bool,

    /// The header an authenticating proxy in front of the tracker (oauth2-proxy, Authelia,
    /// Authentik) puts the signed-in user's name in, e.g. `X-Forwarded-User`. Believed only from
    /// TRUSTED_PROXIES; the user must have an account (or see AUTH_USER_DEFAULT_ROLE).
    #[arg(long, env = "AUTH_USER_HEADER")]
    pub auth_user_header: Option<String>,

    /// The role of a user the proxy names who has no account here (unset: refused).
    #[arg(long, env = "AUTH_USER_DEFAULT_ROLE")]
    pub auth_user_default_role: Option<Role>,

    /// Hours a browser stays signed in.
    #[arg(long, env = "SESSION_TTL_HOURS", default_value_t = 168,
          value_parser = clap::value_parser!(u64).range(1..=8_760))]
    pub session_ttl_hours: u64,

    /// Mark session cookies `Secure` (set it when browsers reach the tracker over https; a
    /// trusted proxy that says `X-Forwarded-Proto: https` gets them anyway).
    #[arg(long, env = "COOKIE_SECURE", num_args = 0..=1, default_value = "false",
          default_missing_value = "true", value_parser = flag, action = clap::ArgAction::Set)]
    pub cookie_secure: bool,

    /// A token for `/metrics` (beside API tokens) when the tracker listens beyond loopback.
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<Secret>,

    /// Host names this tracker is served under (comma-separated), e.g. `tracker.example.com`.
    /// Requests for other names are refused (DNS rebinding). IP addresses and `localhost` are
    /// always served. Empty: on a loopback bind only those; on a public bind every name.
    #[arg(long, env = "ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,

    /// Web origins, besides the tracker's own, whose pages may open `/ws/live` (comma-separated),
    /// e.g. `https://guild.example.com`. Browsers from other origins are refused with 403.
    #[arg(long, env = "ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Reverse proxies, besides this machine, whose X-Forwarded-For is believed for the
    /// client's address (comma-separated addresses or networks, e.g. `172.30.87.0/24`): the
    /// limit on failed plugin authentications then counts per client, not per proxy.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',',
          value_parser = check_proxy_net)]
    pub trusted_proxies: Vec<String>,

    /// `trusted_proxies`, parsed (by [`Settings::normalize`]).
    #[arg(skip)]
    pub trusted_proxy_nets: Vec<crate::net::ProxyNet>,
}

/// A yes-or-no setting: `--flag` alone, or a value. An empty value (`PUBLIC_READ=` in an env
/// file) is no, as for every other setting.
fn flag(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "false" | "0" | "no" | "off" => Ok(false),
        "true" | "1" | "yes" | "on" => Ok(true),
        other => Err(format!("`{other}` is not yes or no: use true or false")),
    }
}

/// Checks one TRUSTED_PROXIES entry (empty: none).
fn check_proxy_net(s: &str) -> Result<String, String> {
    if !s.trim().is_empty() {
        s.parse::<crate::net::ProxyNet>()?;
    }
    Ok(s.to_owned())
}

/// Plugin and browser websockets: limits, liveness and how long characters stay in memory.
#[derive(Debug, Clone, Args)]
pub struct SessionSettings {
    /// A character counts as live (in `/live` and the snapshot) this many seconds after its last
    /// frame; after that browsers are told it went offline.
    #[arg(long, env = "LIVE_WINDOW_SECS", default_value_t = 30)]
    pub live_window_secs: u64,

    /// Largest websocket message accepted from a browser, in bytes. A larger one closes that
    /// connection with code 1009.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,

    /// Largest websocket message accepted from an authenticated plugin, in bytes (inventory
    /// frames of current plugins can be large). A larger one closes that connection with 1009.
    #[arg(long, env = "MAX_PLUGIN_MESSAGE_BYTES", default_value_t = 1024 * 1024)]
    pub max_plugin_message_bytes: usize,

    /// How many bad frames one connection may send within a minute before it is closed (1008).
    #[arg(long, env = "MAX_FRAME_ERRORS", default_value_t = 10)]
    pub max_frame_errors: u32,

    /// A plugin whose clock is off by more than this many seconds (ahead, behind, or sending
    /// local time without a zone) has its frames placed at the moment the tracker read them;
    /// its offset shows in `/debug`. 0 trusts plugin clocks whatever they say.
    #[arg(long, env = "CLOCK_SKEW_SECS", default_value_t = 5)]
    pub clock_skew_secs: u64,

    /// Most plugin connections served at once; more are refused with 503.
    #[arg(long, env = "MAX_PLUGINS", default_value_t = 10_000)]
    pub max_plugins: usize,

    /// Most browser connections served at once; more are refused with 503.
    #[arg(long, env = "MAX_BROWSERS", default_value_t = 10_000)]
    pub max_browsers: usize,

    /// Most browser connections of nobody signed in (public or open maps), in total.
    #[arg(long, env = "MAX_ANONYMOUS_BROWSERS", default_value_t = 256)]
    pub max_anonymous_browsers: usize,

    /// Most browser connections of nobody signed in from one client address.
    #[arg(long, env = "MAX_ANONYMOUS_BROWSERS_PER_CLIENT", default_value_t = 8)]
    pub max_anonymous_browsers_per_client: usize,

    /// Most browser connections of one account or token.
    #[arg(long, env = "MAX_BROWSERS_PER_ACCOUNT", default_value_t = 32)]
    pub max_browsers_per_account: usize,

    /// Most characters one plugin key speaks for (the legacy shared secret is one key).
    #[arg(long, env = "KEY_MAX_CHARACTERS", default_value_t = 10_000)]
    pub key_max_characters: usize,

    /// Most new plugin sessions (`session_id`s) one character may start in an hour.
    #[arg(long, env = "SESSIONS_PER_CHARACTER_PER_HOUR", default_value_t = 20)]
    pub sessions_per_character_per_hour: u32,

    /// Most rare finds one character may report in a minute (more are refused, not counted).
    #[arg(long, env = "RARES_PER_CHARACTER_PER_MINUTE", default_value_t = 5)]
    pub rares_per_character_per_minute: u32,

    /// Most rare finds all characters of one plugin key may report in a minute.
    #[arg(long, env = "KEY_RARES_PER_MINUTE", default_value_t = 600)]
    pub key_rares_per_minute: u32,

    /// Frames buffered per browser before it counts as lagging and is resynced with a snapshot.
    #[arg(long, env = "BROADCAST_CAPACITY", default_value_t = 4_096)]
    pub broadcast_capacity: usize,

    /// Seconds between websocket pings to plugins and browsers.
    #[arg(long, env = "PING_INTERVAL_SECS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ping_interval_secs: u64,

    /// A peer that sends nothing (not even a pong) for this many seconds is disconnected.
    #[arg(long, env = "PEER_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub peer_timeout_secs: u64,

    /// Most seconds one send to a browser or plugin may take before that peer is dropped.
    #[arg(long, env = "SEND_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub send_timeout_secs: u64,

    /// Milliseconds between the batches of the coalesced browser stream (`/ws/live?coalesce=1`,
    /// which the bundled map uses): each carries every update since the previous one.
    #[arg(long, env = "COALESCE_MS", default_value_t = 250,
          value_parser = clap::value_parser!(u64).range(20..=5_000))]
    pub coalesce_ms: u64,

    /// Characters offline for this many seconds leave memory (their data stays in the
    /// database and comes back when they do).
    #[arg(long, env = "EVICT_OFFLINE_SECS", default_value_t = 3_600,
          value_parser = clap::value_parser!(u64).range(0..=604_800))]
    pub evict_offline_secs: u64,
}

/// The spool between ingest and the database, and the writer that drains it.
#[derive(Debug, Clone, Args)]
pub struct WriterSettings {
    /// Directory of the spool: every accepted event is written there before the plugin's next
    /// frame is read, and kept until the database has it (survives SIGKILL, OOM and, within
    /// SPOOL_SYNC_MS, power loss). Default: beside a SQLite database file
    /// (`dereth-tracker.db.spool`), else `dereth-tracker-spool` in the working directory. One
    /// tracker per directory.
    #[arg(long, env = "SPOOL_DIR", value_parser = path_or_empty)]
    pub spool_dir: Option<PathBuf>,

    /// Most bytes the spool may hold (how long a database outage can last: about 700 bytes per
    /// event). When it is full, frames are refused with an error frame and counted.
    #[arg(long, env = "SPOOL_MAX_BYTES", default_value_t = 2 * 1024 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1_048_576..))]
    pub spool_max_bytes: u64,

    /// How often the spool is synced to disk, in milliseconds (a power loss costs at most this
    /// window; a SIGKILL or crash of the tracker costs nothing).
    #[arg(long, env = "SPOOL_SYNC_MS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub spool_sync_ms: u64,

    /// Events of the spool kept in memory for the database writer (beyond them, the writer
    /// reads the spool's files).
    #[arg(long, env = "WRITE_QUEUE_CAPACITY", default_value_t = 20_000,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
    pub write_queue_capacity: usize,

    /// Most events the writer puts in one database transaction.
    #[arg(long, env = "WRITE_BATCH_SIZE", default_value_t = 2_000,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub write_batch_size: usize,

    /// On shutdown, how many seconds the writer keeps storing spooled events (or retrying an
    /// unreachable database) before it stops; what is left stays in the spool for the next start.
    #[arg(long, env = "SHUTDOWN_FLUSH_SECS", default_value_t = 30)]
    pub shutdown_flush_secs: u64,
}

/// What the query API will take on: concurrent heavy queries, rows, CSV exports.
#[derive(Debug, Clone, Args)]
pub struct QuerySettings {
    /// Expensive queries (trails, heatmaps, leaderboard, per-character stats, CSV exports) that
    /// may run at once; more wait up to HEAVY_QUERY_WAIT_SECS, then get 503.
    #[arg(long, env = "MAX_HEAVY_QUERIES", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_heavy_queries: u32,

    /// Seconds an expensive query waits for its turn before it is answered 503.
    #[arg(long, env = "HEAVY_QUERY_WAIT_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(0..=600))]
    pub heavy_query_wait_secs: u64,

    /// Most telemetry rows one query may have to read, estimated as its window in seconds x
    /// the characters it covers / 2 (telemetry every 2 s); larger requests get 400 naming what
    /// to narrow.
    #[arg(long, env = "MAX_QUERY_ROWS", default_value_t = 2_000_000,
          value_parser = clap::value_parser!(u64).range(1_000..=1_000_000_000))]
    pub max_query_rows: u64,

    /// Seconds of every character's positions kept in memory, so `/trails` for a window up to
    /// this long (ending now) never reads the database (0: always read it).
    #[arg(long, env = "TRAIL_MEMORY_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(0..=3_600))]
    pub trail_memory_secs: u64,

    /// Most rows one CSV export carries (the `limit` parameter may ask for fewer).
    #[arg(long, env = "CSV_MAX_ROWS", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub csv_max_rows: u64,

    /// Seconds one CSV export may stream; an export still running then is cut off (the
    /// response ends without its final chunk, so clients see it is incomplete).
    #[arg(long, env = "CSV_TIME_BUDGET_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub csv_time_budget_secs: u64,
}

/// When `/health` reports the tracker unhealthy.
#[derive(Debug, Clone, Args)]
pub struct HealthSettings {
    /// `/health` answers 503 when plugins are connected but no telemetry arrived for this many
    /// seconds (0: never).
    #[arg(long, env = "HEALTH_STALE_SECS", default_value_t = 300)]
    pub health_stale_secs: u64,

    /// `/health` answers 503 when the oldest accepted event not stored yet has waited this many
    /// seconds in the spool (the database is too slow, or a backlog is being stored; 0: never).
    /// Failing writes, a full or failing spool make it 503 at once.
    #[arg(long, env = "HEALTH_QUEUE_FULL_SECS", default_value_t = 30)]
    pub health_queue_full_secs: u64,
}

/// How long data is kept, thinned and (on TimescaleDB) chunked and compressed.
#[derive(Debug, Clone, Args)]
pub struct RetentionSettings {
    /// Days of raw telemetry kept (0: forever). On TimescaleDB a retention policy drops old
    /// chunks; elsewhere a periodic task deletes old rows.
    #[arg(long, env = "RETENTION_TELEMETRY_DAYS", default_value_t = 30)]
    pub retention_telemetry_days: u32,

    /// Days of spawn events kept (0: forever).
    #[arg(long, env = "RETENTION_SPAWNS_DAYS", default_value_t = 7)]
    pub retention_spawns_days: u32,

    /// TimescaleDB only: compress telemetry chunks older than this many days (0: never).
    #[arg(long, env = "COMPRESS_AFTER_DAYS", default_value_t = 7)]
    pub compress_after_days: u32,

    /// TimescaleDB only: hours of telemetry per chunk (1 day answered "last hour for 100
    /// characters" on 10 M rows about twice as fast as the 7-day default).
    #[arg(long, env = "TELEMETRY_CHUNK_HOURS", default_value_t = 24,
          value_parser = clap::value_parser!(u32).range(1..=8760))]
    pub telemetry_chunk_hours: u32,

    /// TimescaleDB only: hours of spawns per chunk (retention drops whole chunks).
    #[arg(long, env = "SPAWN_CHUNK_HOURS", default_value_t = 24,
          value_parser = clap::value_parser!(u32).range(1..=8760))]
    pub spawn_chunk_hours: u32,

    /// Raw telemetry older than this many hours is thinned to one row per character per
    /// THIN_TELEMETRY_STEP_SECS, kill sums kept exact (0: keep every row).
    #[arg(long, env = "THIN_TELEMETRY_AFTER_HOURS", default_value_t = 24)]
    pub thin_telemetry_after_hours: u32,

    /// Seconds of telemetry one kept row stands for once thinned (1 to 3600).
    #[arg(long, env = "THIN_TELEMETRY_STEP_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub thin_telemetry_step_secs: u32,

    /// Seconds between runs of the pruning task.
    #[arg(long, env = "PRUNE_INTERVAL_SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub prune_interval_secs: u64,
}

impl SessionSettings {
    /// The coalesced stream's tick.
    pub fn coalesce(&self) -> Duration {
        Duration::from_millis(self.coalesce_ms)
    }
}

/// Webhook alerts about characters.
#[derive(Debug, Clone, Args)]
pub struct AlertSettings {
    /// Webhook URL(s), comma separated, that receive alerts. Without one, no alerts are sent.
    #[arg(long, env = "ALERT_WEBHOOK_URL", hide_env_values = true)]
    pub alert_webhook_url: Option<String>,

    /// Body of alert requests.
    #[arg(long, env = "ALERT_FORMAT", value_enum, default_value_t = AlertFormat::Generic)]
    pub alert_format: AlertFormat,

    /// Which alerts to send, comma separated: idle, death, rare, disconnect.
    #[arg(
        long,
        env = "ALERT_EVENTS",
        default_value = "idle,death,rare,disconnect"
    )]
    pub alert_events: String,

    /// A character online with no kills and no movement for this many seconds is idle.
    #[arg(long, env = "ALERT_IDLE_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub alert_idle_secs: u64,

    /// A plugin that disconnected unexpectedly is reported if it has not come back after this
    /// many seconds.
    #[arg(long, env = "ALERT_DISCONNECT_GRACE_SECS", default_value_t = 120)]
    pub alert_disconnect_grace_secs: u64,

    /// Characters never alerted about, comma separated.
    #[arg(long, env = "ALERT_MUTE", default_value = "")]
    pub alert_mute: String,
}

impl Settings {
    /// Settings with every default, as `dereth-tracker` with no flags and an empty environment
    /// would have them (useful for tests and embedding).
    pub fn defaults() -> Self {
        Cli::load_from(["dereth-tracker"]).settings
    }

    /// Empty values of optional settings mean "not set": `COMMAND_TOKEN=` in an `.env` file or
    /// `${COMMAND_TOKEN:-}` in a compose file gives no command token, not an empty one.
    pub fn normalize(&mut self) {
        for secret in [
            &mut self.access.shared_secret,
            &mut self.access.shared_secret_previous,
            &mut self.access.command_token,
            &mut self.database.database_password,
            &mut self.cluster.cluster_bus,
            &mut self.cluster.cluster_key,
            &mut self.access.metrics_token,
        ] {
            if secret.as_ref().is_some_and(Secret::is_empty) {
                *secret = None;
            }
        }
        if self
            .alerts
            .alert_webhook_url
            .as_deref()
            .is_some_and(|u| u.trim().is_empty())
        {
            self.alerts.alert_webhook_url = None;
        }
        if self
            .access
            .auth_user_header
            .as_deref()
            .is_some_and(|h| h.trim().is_empty())
        {
            self.access.auth_user_header = None;
        }
        if self
            .server
            .static_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            self.server.static_dir = None;
        }
        if self
            .writer
            .spool_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            self.writer.spool_dir = None;
        }
        self.backups.normalize();
        for list in [
            &mut self.access.allowed_hosts,
            &mut self.access.allowed_origins,
            &mut self.access.trusted_proxies,
        ] {
            list.retain(|v| !v.trim().is_empty());
            for v in list.iter_mut() {
                *v = v.trim().to_owned();
            }
        }
        self.access.trusted_proxy_nets = self
            .access
            .trusted_proxies
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect();
        if self.database.database_url.trim().is_empty() {
            self.database.database_url = Self::DEFAULT_DATABASE_URL.into();
        }
    }

    /// The database URL used when none is configured.
    pub const DEFAULT_DATABASE_URL: &'static str = "sqlite://dereth-tracker.db";
}

#[cfg(test)]
mod tests;
