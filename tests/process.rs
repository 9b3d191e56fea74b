//! The real `dereth-tracker` binary: configuration from the environment, SIGTERM handling and the
//! shutdown flush, on both backends.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Backend, TestDb, WAIT, block_writes, telemetry};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_dereth-tracker");

/// Starts the binary on an ephemeral port and returns it with its address, read from its log.
async fn start(db: &TestDb) -> (Child, String) {
    let mut child = Command::new(BIN)
        .env_clear()
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("DATABASE_URL", &db.url)
        .env("SHARED_SECRET", common::SECRET)
        .env("SQLITE_BUSY_TIMEOUT_MS", "200")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the binary");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.expect("read log") {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                return rest.split_whitespace().next().map(str::to_owned);
            }
        }
        None
    })
    .await
    .expect("the server starts")
    .expect("the server logs its address");
    // Keep draining the log so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
}

async fn sigterm_flushes_every_accepted_frame_and_exits_zero(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let (mut child, addr) = start(&db).await;
    let app_url = format!("http://{addr}");
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{addr}/ws/position"
        ))
        .expect("request");
    request.headers_mut().insert(
        "X-Plugin-Secret",
        common::SECRET.parse().expect("header value"),
    );
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("plugin connects");
    let mut plugin = common::Client { ws };

    // Hold the writer back so accepted frames are still queued when SIGTERM arrives.
    let block = block_writes(&db).await;
    let n = 250;
    for i in 0..n {
        plugin.send_json(&telemetry("Oscar", "s", i)).await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let debug: serde_json::Value = reqwest::get(format!("{app_url}/debug"))
            .await
            .expect("debug")
            .json()
            .await
            .expect("json");
        if debug["frames_received"]["telemetry"] == n {
            assert!(debug["rows_written"].as_i64() < Some(n), "{debug}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "frames not accepted: {debug}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    sigterm(&child);
    tokio::time::sleep(Duration::from_millis(300)).await;
    block.release().await;
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "exit status {status:?}");

    let store = db.store().await;
    assert_eq!(store.row_counts().await.expect("counts").telemetry, n);
    assert_eq!(
        store.character_stats().await.expect("stats")[0].total_kills,
        n - 1
    );
}

both_backends!(sigterm_flushes_every_accepted_frame_and_exits_zero);

#[test]
fn help_documents_every_setting() {
    let out = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for env in [
        "BIND_ADDR",
        "DATABASE_URL",
        "SHARED_SECRET",
        "COMMAND_TOKEN",
        "LIVE_WINDOW_SECS",
        "MAX_MESSAGE_BYTES",
        "WRITE_QUEUE_CAPACITY",
    ] {
        assert!(help.contains(env), "--help mentions {env}");
    }
}

#[test]
fn an_unsupported_database_url_fails_with_a_clear_message() {
    let out = std::process::Command::new(BIN)
        .env_clear()
        .env("DATABASE_URL", "mysql://nope")
        .env("BIND_ADDR", "127.0.0.1:0")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("unsupported database URL"), "{log}");
}
