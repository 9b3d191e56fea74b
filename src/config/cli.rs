//! The command line: the subcommands (`serve`, `healthcheck`, and the management commands
//! `user`, `token`, `key`) around the server's [`Settings`].

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

use super::{DatabaseSettings, Role, Settings};

/// This build: the package version and the commit it was built from (see `build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("DERETH_COMMIT"),
    ")"
);

/// Real-time telemetry server and live map for Asheron's Call characters.
#[derive(Debug, Parser)]
#[command(name = "dereth-tracker", version = VERSION, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Server settings (used when no subcommand is given, or with `serve`).
    #[command(flatten)]
    pub settings: Settings,
}

impl Cli {
    /// Parses the command line and environment (exiting with usage on errors) and normalizes
    /// the settings (see [`Settings::normalize`]).
    pub fn load() -> Self {
        Self::parse().normalized()
    }

    /// Like [`Cli::load`], from explicit arguments.
    pub fn load_from<I, T>(args: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Self::parse_from(args).normalized()
    }

    pub(crate) fn normalized(mut self) -> Self {
        self.settings.normalize();
        if let Some(Command::Serve(settings)) = &mut self.command {
            settings.normalize();
        }
        self
    }
}

/// What the binary should do; with no subcommand it serves.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the tracker server (the default).
    Serve(Box<Settings>),
    /// Exit 0 when the tracker at BIND_ADDR answers `/health` with 200, 1 otherwise (for
    /// container health checks).
    Healthcheck(HealthcheckArgs),
    /// Accounts of people who sign in to the map: `user add NAME --role viewer|commander|admin`
    /// (the password is read from standard input, or generated and printed once), `user list`,
    /// `user passwd NAME`, `user role NAME ROLE`, `user remove NAME`.
    User(ManageArgs<UserAction>),
    /// API tokens for scripts: `token add NAME --role viewer` prints the token once;
    /// `token list`, `token remove NAME`.
    Token(ManageArgs<TokenAction>),
    /// Plugin keys: `key add NAME [--characters A,B]` prints the key once; `key list`,
    /// `key revoke NAME`, `key move NAME --characters A,B`, `key free A,B`.
    Key(ManageArgs<KeyAction>),
    /// A consistent backup of every table the tracker keeps, while it runs or not, in one
    /// checksummed archive that restores into either backend: `backup --to FILE`.
    Backup(BackupArgs),
    /// Restores a backup into an empty database of either backend (SQLite to PostgreSQL moves
    /// a guild off the default): `restore --from FILE [--replace]`.
    Restore(RestoreArgs),
}

/// Settings of `backup`.
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The archive to write (replaced only once the new one is complete).
    #[arg(long)]
    pub to: std::path::PathBuf,

    #[command(flatten, next_help_heading = "Database")]
    pub database: DatabaseSettings,
}

/// Settings of `restore`.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The archive to restore.
    #[arg(long)]
    pub from: std::path::PathBuf,

    /// Delete what the database holds first (without it, a database holding data is refused).
    #[arg(long)]
    pub replace: bool,

    #[command(flatten, next_help_heading = "Database")]
    pub database: DatabaseSettings,
}

/// A management command: the database it works on and what to do.
#[derive(Debug, Clone, Args)]
pub struct ManageArgs<A: Subcommand> {
    #[command(subcommand)]
    pub action: A,

    #[command(flatten, next_help_heading = "Database")]
    pub database: DatabaseSettings,
}

/// What `user` does.
#[derive(Debug, Clone, Subcommand)]
pub enum UserAction {
    /// Creates an account (or replaces its role and password).
    Add {
        name: String,
        #[arg(long)]
        role: Role,
    },
    /// Lists the accounts and their roles.
    List,
    /// Sets a new password (read from standard input, or generated and printed once); signs
    /// the account out everywhere.
    Passwd { name: String },
    /// Changes an account's role (open sockets of a lowered account are closed).
    Role { name: String, role: Role },
    /// Removes an account (its browsers are signed out and their sockets closed).
    Remove { name: String },
}

/// What `token` does.
#[derive(Debug, Clone, Subcommand)]
pub enum TokenAction {
    /// Creates a token and prints it once (only its hash is kept).
    Add {
        name: String,
        #[arg(long)]
        role: Role,
    },
    /// Lists the tokens and their roles.
    List,
    /// Removes a token: it is refused from then on.
    Remove { name: String },
}

/// What `key` does.
#[derive(Debug, Clone, Subcommand)]
pub enum KeyAction {
    /// Creates a plugin key and prints it once (only its hash is kept). With `--characters`,
    /// only those characters may use it (they are moved to it from any other key); without,
    /// characters are bound to it as it first speaks for them.
    Add {
        name: String,
        #[arg(long, value_delimiter = ',')]
        characters: Vec<String>,
    },
    /// Lists the keys, whether revoked, and how many characters each speaks for.
    List,
    /// Refuses a key from now on; its open connections close within a second.
    Revoke { name: String },
    /// Moves characters to a key.
    Move {
        name: String,
        #[arg(long, value_delimiter = ',', required = true)]
        characters: Vec<String>,
    },
    /// Frees characters: the next key that speaks for one gets it.
    Free {
        #[arg(value_delimiter = ',', required = true)]
        characters: Vec<String>,
    },
}

/// Settings of `dereth-tracker healthcheck`.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// The tracker's address (an unspecified address such as 0.0.0.0 means this machine).
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8765")]
    pub bind_addr: SocketAddr,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5)]
    pub timeout_secs: u64,
}
