//! The `dereth-tracker` binary: parse configuration, set up logging, open the store, serve.

use std::process::ExitCode;

use anyhow::Context;
use dereth_tracker::Server;
use dereth_tracker::config::{
    BackupArgs, Cli, Command, DatabaseSettings, HealthcheckArgs, LogFormat, ManageArgs,
    RestoreArgs, Settings, UserAction,
};
use dereth_tracker::manage;
use dereth_tracker::process::{raise_file_limit, shutdown_signal};
use dereth_tracker::store::{Store, StoreOptions, redact_url};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::load();
    let log_format = match &cli.command {
        Some(Command::Serve(settings)) => settings.server.log_format,
        _ => cli.settings.server.log_format,
    };
    init_tracing(log_format);
    let result = match cli.command {
        None => serve(cli.settings).await,
        Some(Command::Serve(settings)) => serve(*settings).await,
        Some(Command::Healthcheck(args)) => healthcheck(args).await,
        Some(Command::User(args)) => manage_users(args).await,
        Some(Command::Token(args)) => match open(&args.database).await {
            Ok(store) => report(manage::token(&store, &args.action).await),
            Err(err) => Err(err),
        },
        Some(Command::Key(args)) => match open(&args.database).await {
            Ok(store) => report(manage::key(&store, &args.action).await),
            Err(err) => Err(err),
        },
        Some(Command::Backup(args)) => backup(args).await,
        Some(Command::Restore(args)) => restore(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn serve(mut settings: Settings) -> anyhow::Result<()> {
    raise_file_limit();
    if settings.server.demo {
        dereth_tracker::demo::prepare(&mut settings);
    }
    let options = settings.store_options();
    let url = redact_url(&settings.database.database_url);
    let wait = std::time::Duration::from_secs(settings.database.db_startup_wait_secs);
    let store = connect_with_retry(&settings.database.database_url, &options, wait)
        .await
        .with_context(|| format!("opening the database at {url}"))?;
    tracing::info!(backend = ?store.backend(), database = %url, "database ready");

    let listener = TcpListener::bind(settings.server.bind_addr)
        .await
        .with_context(|| format!("binding {}", settings.server.bind_addr))?;
    let addr = listener.local_addr()?;
    let server = Server::new(settings, store)
        .await
        .context("starting the tracker")?;
    tracing::info!("listening on http://{addr}");
    let demo_stop = CancellationToken::new();
    let demo = server
        .settings()
        .server
        .demo
        .then(|| dereth_tracker::demo::start(addr, server.settings(), demo_stop.clone()));
    let stop_demo = demo_stop.clone();
    let report = server
        .run(listener, async move {
            shutdown_signal().await;
            stop_demo.cancel();
        })
        .await?;
    demo_stop.cancel();
    if let Some(demo) = demo {
        let _ = demo.await;
    }
    if report.lost > 0 {
        anyhow::bail!(
            "{} events could not be written before shutdown",
            report.lost
        );
    }
    tracing::info!(written = report.written, "stopped cleanly");
    Ok(())
}

/// `dereth-tracker user ...`: the password comes from standard input unless it is a terminal.
async fn manage_users(args: ManageArgs<UserAction>) -> anyhow::Result<()> {
    let store = open(&args.database).await?;
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let mut stdin = std::io::stdin().lock();
    let source = manage::PasswordSource {
        input: &mut stdin,
        interactive,
    };
    report(manage::user(&store, &args.action, source).await)
}

/// Opens the database a management command works on (the tracker's: same DATABASE_URL).
async fn open(database: &DatabaseSettings) -> anyhow::Result<Store> {
    let url = redact_url(&database.database_url);
    let options = StoreOptions {
        password: database.database_password.clone(),
        ..StoreOptions::default()
    };
    Store::connect(&database.database_url, &options)
        .await
        .with_context(|| format!("opening the database at {url}"))
}

/// `backup --to FILE`: prints what the archive holds.
async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let url = &args.database.database_url;
    let summary =
        dereth_tracker::backup::backup(url, args.database.database_password.as_ref(), &args.to)
            .await
            .with_context(|| format!("backing up {}", redact_url(url)))?;
    println!(
        "backup of {} written to {}:\n{summary}",
        redact_url(url),
        args.to.display()
    );
    Ok(())
}

/// `restore --from FILE`: prints what the database holds afterwards (equal to the archive).
async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let url = &args.database.database_url;
    let summary = dereth_tracker::backup::restore(
        url,
        args.database.database_password.as_ref(),
        &args.from,
        args.replace,
    )
    .await
    .with_context(|| format!("restoring {} into {}", args.from.display(), redact_url(url)))?;
    println!(
        "restored {} into {}:\n{summary}",
        args.from.display(),
        redact_url(url)
    );
    Ok(())
}

/// Prints what a management command did, or fails with why.
fn report(result: Result<String, manage::ManageError>) -> anyhow::Result<()> {
    let out = result?;
    if !out.is_empty() {
        println!("{out}");
    }
    Ok(())
}

/// Opens the store, retrying with backoff for up to `wait` while the database does not answer
/// (a database container that is still starting); configuration errors fail at once.
async fn connect_with_retry(
    url: &str,
    options: &StoreOptions,
    wait: std::time::Duration,
) -> Result<Store, dereth_tracker::store::StoreError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut backoff = std::time::Duration::from_millis(500);
    loop {
        match Store::connect(url, options).await {
            Ok(store) => return Ok(store),
            Err(err)
                if err.is_unavailable() && tokio::time::Instant::now() + backoff < deadline =>
            {
                tracing::warn!(%err, retry_in = ?backoff, "database not reachable yet; waiting");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
            }
            Err(err) => return Err(err),
        }
    }
}

/// `dereth-tracker healthcheck`: asks the local tracker's `/health`; an error makes the process
/// exit 1, which container runtimes read as unhealthy.
async fn healthcheck(args: HealthcheckArgs) -> anyhow::Result<()> {
    let mut addr = args.bind_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let url = format!("http://{addr}/health");
    let resp = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(args.timeout_secs.max(1)))
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("no answer from {url}"))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "{url} answered {status}: {body}");
    println!("healthy: {body}");
    Ok(())
}
