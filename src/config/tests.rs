//! Parsing and normalizing settings.

use super::*;
use clap::Parser;

#[test]
fn trusted_proxies_are_parsed_once_and_empty_entries_mean_none() {
    let cli = Cli::load_from([
        "dereth-tracker",
        "--trusted-proxies",
        "172.30.87.0/24,,10.0.0.7",
    ]);
    let nets = &cli.settings.access.trusted_proxy_nets;
    assert_eq!(nets.len(), 2);
    assert!(nets[0].contains("172.30.87.200".parse().expect("ip")));
    assert!(!nets[1].contains("10.0.0.8".parse().expect("ip")));
    let none = Cli::load_from(["dereth-tracker", "--trusted-proxies", ""]);
    assert!(none.settings.access.trusted_proxy_nets.is_empty());
}

#[test]
fn secrets_are_redacted_in_debug_output() {
    let mut settings = Settings::defaults();
    settings.access.shared_secret = Some(Secret::new("hunter2"));
    settings.database.database_url = "postgres://tracker:s3cret@db:5432/dereth".into();
    let printed = format!("{settings:?}");
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(!printed.contains("s3cret"), "{printed}");
    assert!(printed.contains("redacted"));
    assert!(printed.contains("tracker:***@db:5432/dereth"), "{printed}");
}

#[test]
fn defaults_match_the_documented_values() {
    let settings = Settings::defaults();
    assert_eq!(settings.server.bind_addr.to_string(), "127.0.0.1:8765");
    assert!(settings.database.database_url.starts_with("sqlite://"));
    assert_eq!(settings.sessions.live_window_secs, 30);
    assert_eq!(settings.sessions.max_message_bytes, 65_536);
}

#[test]
fn out_of_range_values_are_refused_when_parsed() {
    for (flag, value) in [
        ("--ping-interval-secs", "0"),
        ("--write-queue-capacity", "0"),
        ("--db-max-connections", "0"),
        ("--request-timeout-secs", "0"),
    ] {
        let err = Cli::try_parse_from(["dereth-tracker", flag, value])
            .expect_err("zero is not a valid value");
        let text = err.to_string();
        assert!(text.contains(flag) && text.contains('0'), "{text}");
    }
    assert!(Cli::try_parse_from(["dereth-tracker", "--ping-interval-secs", "5"]).is_ok());
}

#[test]
fn empty_values_of_optional_settings_mean_not_set() {
    let cli = Cli::load_from([
        "dereth-tracker",
        "--command-token",
        "",
        "--shared-secret-previous",
        "",
        "--database-password",
        "",
        "--alert-webhook-url",
        " ",
        "--database-url",
        "",
        "serve",
        "--command-token",
        "",
        "--shared-secret",
        "",
    ]);
    let s = &cli.settings;
    assert!(s.access.command_token.is_none() && s.access.shared_secret_previous.is_none());
    assert!(s.database.database_password.is_none() && s.alerts.alert_webhook_url.is_none());
    assert_eq!(s.database.database_url, Settings::DEFAULT_DATABASE_URL);
    let Some(Command::Serve(serve)) = &cli.command else {
        panic!("serve subcommand")
    };
    assert!(serve.access.command_token.is_none() && serve.access.shared_secret.is_none());
    // A required secret stays required.
    assert!(Cli::try_parse_from(["dereth-tracker", "simulate", "--secret", ""]).is_err());
}

#[test]
fn empty_directories_mean_not_set() {
    // As `.env` files and compose give them: `SPOOL_DIR=`, `BACKUP_DIR: ""`. clap's path parser
    // refused them, so the tracker did not start.
    let cli = Cli::try_parse_from([
        "dereth-tracker",
        "--spool-dir",
        "",
        "--backup-dir",
        "",
        "--static-dir",
        "",
    ])
    .expect("empty directories parse")
    .normalized();
    let s = &cli.settings;
    assert!(s.writer.spool_dir.is_none());
    assert!(s.backups.backup_dir.is_none());
    assert!(s.server.static_dir.is_none());
    let set = Cli::load_from(["dereth-tracker", "--backup-dir", "/data/backups"]);
    assert_eq!(
        set.settings.backups.backup_dir.as_deref(),
        Some(std::path::Path::new("/data/backups"))
    );
}

#[test]
fn cli_definition_is_consistent() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}
