//! A tracker started as a separate process for load benchmarks, so its CPU time and memory can be
//! read from `/proc` apart from the load generator's.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The shared secret the benchmark server and its plugins use.
pub(crate) const SECRET: &str = "bench-secret";

/// A running tracker process.
pub(crate) struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub pid: u32,
    /// The spool directory made for this run (removed with it), unless SPOOL_DIR was given.
    spool: Option<PathBuf>,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(dir) = &self.spool {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// CPU time and resident memory of a process at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcSample {
    /// User plus system CPU seconds so far.
    pub cpu_secs: f64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

impl ServerProcess {
    /// Starts `dereth-tracker serve` on a loopback port with `env`.
    pub(crate) async fn start(database_url: &str, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let exe = tracker_executable()?;
        let mut cmd = Command::new(&exe);
        cmd.arg("serve")
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("DATABASE_URL", database_url)
            .env("SHARED_SECRET", SECRET)
            .env("RUST_LOG", "warn,dereth_tracker=info")
            .env_remove("DEMO")
            // Load from one loopback client: the per-client and anonymous caps that protect a
            // public tracker would refuse the benchmark's own maps and characters.
            .env("MAX_ANONYMOUS_BROWSERS", "1000000")
            .env("MAX_ANONYMOUS_BROWSERS_PER_CLIENT", "1000000")
            .env("KEY_MAX_CHARACTERS", "1000000")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        // A spool of its own in the temporary directory (never the working directory), unless
        // the caller chose one.
        let given =
            std::env::var_os("SPOOL_DIR").is_some() || env.iter().any(|(k, _)| *k == "SPOOL_DIR");
        let spool = (!given).then(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            std::env::temp_dir().join(format!("dereth-bench-spool-{}-{nanos}", std::process::id()))
        });
        if let Some(dir) = &spool {
            cmd.env("SPOOL_DIR", dir);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting the tracker {}", exe.display()))?;
        let pid = child.id().context("tracker pid")?;
        let stderr = child.stderr.take().context("tracker stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    return rest.split_whitespace().next().map(str::to_owned);
                }
            }
            None
        })
        .await
        .context("the tracker did not start within a minute")?
        .context("the tracker exited before listening")?;
        // Keep reading the log so the server never blocks on a full pipe; show warnings.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("[server] {line}");
                }
            }
        });
        Ok(Self {
            child,
            addr: addr.parse().context("tracker address")?,
            pid,
            spool,
        })
    }

    /// CPU time and RSS of the server now.
    pub(crate) fn sample(&self) -> anyhow::Result<ProcSample> {
        proc_sample(self.pid)
    }

    /// Stops the server with SIGTERM and waits for it (it flushes its queue first).
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let _ = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await;
        Ok(())
    }

    pub(crate) fn plugin_url(&self) -> String {
        format!("ws://{}/ws/position", self.addr)
    }

    pub(crate) fn browser_url(&self) -> String {
        format!("ws://{}/ws/live", self.addr)
    }
}

/// The server binary: `DERETH_TRACKER_BIN` when set, else `dereth-tracker` beside this
/// executable (where `cargo build --features bench` puts both).
fn tracker_executable() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("DERETH_TRACKER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let me = std::env::current_exe().context("locating this executable")?;
    let beside = me.with_file_name("dereth-tracker");
    anyhow::ensure!(
        beside.is_file(),
        "{} not found: build both binaries with `cargo build --release --features bench` \
         (or set DERETH_TRACKER_BIN)",
        beside.display()
    );
    Ok(beside)
}

/// Reads `/proc/<pid>/stat` (CPU ticks, which Linux reports at 100 per second) and
/// `/proc/<pid>/status` (VmRSS).
pub(crate) fn proc_sample(pid: u32) -> anyhow::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let cpu_secs = (ticks(11) + ticks(12)) as f64 / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Ok(ProcSample {
        cpu_secs,
        rss_bytes: rss_kib * 1024,
    })
}

/// Opens a plugin websocket with the benchmark secret.
pub(crate) async fn connect_plugin(
    url: &str,
) -> anyhow::Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("X-Plugin-Secret", SECRET.parse()?);
    let (ws, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(ws)
}
