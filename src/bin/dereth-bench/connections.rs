//! `dereth-bench connections`: thousands of idle plugins and browsers held open; server memory per
//! connection.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::cli::ConnectionsArgs;
use crate::report::record;
use crate::server::{ServerProcess, connect_plugin};

/// Connections opened at once.
const CONNECT_CONCURRENCY: usize = 64;

#[derive(Debug, Serialize)]
struct Connections {
    scenario: &'static str,
    plugins: usize,
    browsers: usize,
    connected_plugins: u64,
    connected_browsers: u64,
    rss_before_mib: f64,
    rss_after_mib: f64,
    bytes_per_connection: f64,
}

pub(crate) async fn run(args: ConnectionsArgs) -> anyhow::Result<()> {
    let (url, temp_db) = crate::report::database_url(args.database_url.as_deref(), "conns");
    let server = ServerProcess::start(&url, &[]).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = server.sample()?;
    let stop = CancellationToken::new();
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut tasks = Vec::new();
    for i in 0..args.plugins + args.browsers {
        let plugin = i < args.plugins;
        let (plugin_url, browser_url) = (server.plugin_url(), server.browser_url());
        let (gate, stop) = (gate.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let ws = {
                let _permit = gate.acquire().await?;
                if plugin {
                    let mut ws = connect_plugin(&plugin_url).await?;
                    let register =
                        format!("{{\"type\":\"register\",\"character_name\":\"Idle {i:05}\"}}");
                    ws.send(Message::text(register)).await?;
                    ws
                } else {
                    tokio_tungstenite::connect_async(browser_url).await?.0
                }
            };
            // Idle, but alive: read (and so answer pings) until told to stop.
            let (mut tx, mut rx) = ws.split();
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    msg = rx.next() => if matches!(msg, None | Some(Err(_))) { break },
                }
            }
            let _ = tx.send(Message::Close(None)).await;
            anyhow::Ok(())
        }));
    }
    // Let every connection open and settle.
    let debug_url = format!("http://{}/debug", server.addr);
    let mut debug = serde_json::Value::Null;
    for _ in 0..600 {
        debug = reqwest::get(&debug_url).await?.json().await?;
        let open = debug["plugins_connected"].as_u64().unwrap_or(0)
            + debug["browsers_connected"].as_u64().unwrap_or(0);
        if open as usize >= args.plugins + args.browsers {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = server.sample()?;
    let connected_plugins = debug["plugins_connected"].as_u64().unwrap_or(0);
    let connected_browsers = debug["browsers_connected"].as_u64().unwrap_or(0);
    stop.cancel();
    for t in tasks {
        if let Ok(Err(err)) = t.await {
            eprintln!("connection failed: {err:#}");
        }
    }
    server.stop().await?;
    if args.database_url.is_none() {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", temp_db.display()));
        }
    }
    let total = (connected_plugins + connected_browsers).max(1);
    let summary = Connections {
        scenario: "connections",
        plugins: args.plugins,
        browsers: args.browsers,
        connected_plugins,
        connected_browsers,
        rss_before_mib: before.rss_bytes as f64 / 1048576.0,
        rss_after_mib: after.rss_bytes as f64 / 1048576.0,
        bytes_per_connection: after.rss_bytes.saturating_sub(before.rss_bytes) as f64
            / total as f64,
    };
    println!("{}", serde_json::to_string(&summary)?);
    let verdict = crate::report::verdict(summary.bytes_per_connection < 64.0 * 1024.0);
    let reproduce = crate::report::reproduce("connections");
    record(
        &args.report,
        "connections",
        &format!(
            "## Idle connections (`dereth-bench connections`)\n\n\
             Measured {}: {} plugin connections (each sent one `register` frame) and {} browser \
             connections (each got its snapshot) held open and idle against one server \
             process. Server RSS before and after, from `/proc`.\n\n\
             | open plugins | open browsers | RSS before | RSS after | per connection |\n\
             |---:|---:|---:|---:|---:|\n\
             | {} | {} | {:.1} MiB | {:.1} MiB | {:.1} KiB ({verdict}, target < 64 KiB) |\n\n\
             {reproduce}\n",
            crate::report::today(),
            args.plugins,
            args.browsers,
            summary.connected_plugins,
            summary.connected_browsers,
            summary.rss_before_mib,
            summary.rss_after_mib,
            summary.bytes_per_connection / 1024.0,
        ),
    )?;
    Ok(())
}
