//! `dereth-bench fanout`: characters sending telemetry at 1 Hz, every frame delivered to many browsers.
//! Latency is measured from the moment a plugin sent a frame (its `timestamp`) to the moment a
//! browser received it, both in this process on the same clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::cli::FanoutArgs;
use crate::report::record;
use crate::server::{ServerProcess, connect_plugin};

const WARM_UP: Duration = Duration::from_secs(3);
const GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize)]
struct Fanout {
    scenario: &'static str,
    characters: usize,
    browsers: usize,
    seconds: u64,
    frames_sent: u64,
    deliveries_expected: u64,
    deliveries: u64,
    delivered_fraction: f64,
    resyncs: u64,
    encoding: String,
    viewport_browsers: usize,
    /// Bytes a browser watching the whole map received per second (text of every message).
    bytes_per_whole_map_per_s: f64,
    /// Bytes a browser watching an area received per second.
    bytes_per_viewport_map_per_s: f64,
    /// Bytes per telemetry update delivered to a whole-map browser.
    bytes_per_update: f64,
    /// Telemetry rows the tracker stored for the run, against every frame sent.
    rows_stored: i64,
    frames_sent_total: u64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    latency_max_ms: f64,
    server_cpu_cores: f64,
    server_rss_mib: f64,
}

/// The window, in microseconds since the epoch, whose frames are counted; 0 until it opens.
struct Window {
    start: AtomicI64,
    end: AtomicI64,
}

impl Window {
    fn contains(&self, micros: i64) -> bool {
        let start = self.start.load(Ordering::Relaxed);
        let end = self.end.load(Ordering::Relaxed);
        start > 0 && micros >= start && (end == 0 || micros < end)
    }
}

/// The send times (the `timestamp` fields) of the telemetry in a frame: one for a telemetry
/// frame, one per character for a coalesced `batch`. In the compact encoding a character is an
/// array whose first column is its timestamp in milliseconds (nothing else in these frames is
/// an array opening with a number).
fn sent_at(text: &str) -> Box<dyn Iterator<Item = i64> + '_> {
    if !text.contains("\"timestamp\":\"") {
        return Box::new(text.split('[').skip(1).filter_map(|rest| {
            let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
            digits.parse::<i64>().ok().map(|ms| ms * 1000)
        }));
    }
    Box::new(text.split("\"timestamp\":\"").skip(1).filter_map(|rest| {
        let raw = rest.split('"').next()?;
        chrono::DateTime::parse_from_rfc3339(raw)
            .ok()
            .map(|t| t.timestamp_micros())
    }))
}

/// What one browser measured.
struct Received {
    latencies: Vec<u32>,
    resyncs: u64,
    /// Bytes of the messages received while the window was open.
    bytes: u64,
    watches_area: bool,
}

pub(crate) async fn run(args: FanoutArgs) -> anyhow::Result<()> {
    let (url, temp_db) = crate::report::database_url(args.database_url.as_deref(), "fanout");
    let cluster = Cluster::start(&args, &url).await?;
    let server = &cluster.browsers;
    let stop = CancellationToken::new();
    let window = Arc::new(Window {
        start: AtomicI64::new(0),
        end: AtomicI64::new(0),
    });

    // Browsers first, so they see every frame.
    let mut browsers = Vec::new();
    let browser_url = format!(
        "{}?coalesce={}&encoding={}",
        server.browser_url(),
        u8::from(args.coalesce),
        args.encoding
    );
    let viewport_browsers = (args.viewport.unwrap_or(0.0) * args.browsers as f64).round() as usize;
    for b in 0..args.browsers {
        let (mut ws, _) = tokio_tungstenite::connect_async(browser_url.as_str()).await?;
        let watches_area = b < viewport_browsers;
        if watches_area {
            let (ew, ns) = (
                fastrand::f64() * 150.0 - 75.0,
                fastrand::f64() * 150.0 - 75.0,
            );
            let frame = serde_json::json!({
                "type": "viewport",
                "ew_min": ew - 25.0, "ew_max": ew + 25.0, "ns_min": ns - 25.0, "ns_max": ns + 25.0,
            });
            ws.send(Message::text(frame.to_string())).await?;
        }
        let (stop, window) = (stop.clone(), window.clone());
        browsers.push(tokio::spawn(async move {
            let (_tx, mut rx) = ws.split();
            let mut latencies: Vec<u32> = Vec::new();
            let mut resyncs = 0u64;
            let mut snapshots = 0u64;
            let mut bytes = 0u64;
            loop {
                let msg = tokio::select! {
                    () = stop.cancelled() => break,
                    msg = rx.next() => msg,
                };
                let Some(Ok(Message::Text(text))) = msg else {
                    if matches!(msg, None | Some(Err(_))) {
                        break;
                    }
                    continue;
                };
                let now = chrono::Utc::now().timestamp_micros();
                let text = text.as_str();
                if window.contains(now) {
                    bytes += text.len() as u64;
                }
                // A refresh re-sends older positions: not a delivery to time.
                if text.starts_with("{\"type\":\"batch\",\"refresh\"") {
                    continue;
                }
                if text.starts_with("{\"type\":\"encoding\"") {
                    continue;
                }
                if text.starts_with("{\"type\":\"snapshot\"") {
                    // A snapshot's later parts are not another snapshot.
                    if text.starts_with("{\"type\":\"snapshot\",\"part\":")
                        && !text.starts_with("{\"type\":\"snapshot\",\"part\":1,")
                    {
                        continue;
                    }
                    snapshots += 1;
                    if snapshots > 1 {
                        resyncs += 1;
                    }
                    continue;
                }
                for sent in sent_at(text).filter(|s| window.contains(*s)) {
                    latencies.push(u32::try_from((now - sent).max(0)).unwrap_or(u32::MAX));
                }
            }
            Received {
                latencies,
                resyncs,
                bytes,
                watches_area,
            }
        }));
    }

    // Characters at 1 Hz, spread evenly over the second.
    let sent = Arc::new(AtomicU64::new(0));
    let sent_total = Arc::new(AtomicU64::new(0));
    let rows_before = stored_rows(&url).await?;
    let mut plugins = Vec::new();
    for c in 0..args.characters {
        let mut ws = connect_plugin(&cluster.plugins().plugin_url()).await?;
        let (stop, window, sent, sent_total) = (
            stop.clone(),
            window.clone(),
            sent.clone(),
            sent_total.clone(),
        );
        let phase = Duration::from_secs(1).mul_f64(c as f64 / args.characters.max(1) as f64);
        plugins.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + phase,
                Duration::from_secs(1),
            );
            let mut kills = 0;
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                kills += 1;
                let now = chrono::Utc::now();
                let frame = format!(
                    "{{\"type\":\"telemetry\",\"character_name\":\"Fan {c:04}\",\"session_id\":\"f{c}\",\
                     \"timestamp\":\"{}\",\"ew\":{},\"ns\":{},\"z\":1,\"kills\":{kills},\
                     \"kills_per_hour\":\"120\",\"deaths\":\"0\",\"rares_found\":0,\
                     \"prismatic_taper_count\":\"10\",\"vt_state\":\"Combat\"}}",
                    now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    (c % 200) as f64 - 100.0,
                    (kills % 100) as f64 / 10.0,
                );
                if ws.send(Message::text(frame)).await.is_err() {
                    break;
                }
                sent_total.fetch_add(1, Ordering::Relaxed);
                if window.contains(now.timestamp_micros()) {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            // The tracker answers the close once it has read every frame before it: only then
            // is everything sent read (and counted against the rows stored).
            let _ = ws.close(None).await;
            let _ = tokio::time::timeout(Duration::from_secs(60), async {
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
        }));
    }

    tokio::time::sleep(WARM_UP).await;
    let before = cluster.sample()?;
    let measure_started = Instant::now();
    window
        .start
        .store(chrono::Utc::now().timestamp_micros(), Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    window
        .end
        .store(chrono::Utc::now().timestamp_micros(), Ordering::Relaxed);
    let after = cluster.sample()?;
    let measured_secs = measure_started.elapsed().as_secs_f64();
    tokio::time::sleep(GRACE).await;
    stop.cancel();
    for p in plugins {
        let _ = p.await;
    }
    let mut all = Vec::new();
    let mut resyncs = 0;
    let (mut whole_bytes, mut area_bytes, mut whole_deliveries) = (0u64, 0u64, 0u64);
    for b in browsers {
        let got = b.await?;
        resyncs += got.resyncs;
        if got.watches_area {
            area_bytes += got.bytes;
        } else {
            whole_bytes += got.bytes;
            whole_deliveries += got.latencies.len() as u64;
        }
        all.extend(got.latencies);
    }
    cluster.stop().await?;
    // Stopped with SIGTERM: everything read is stored (or the tracker said what was not).
    let rows_stored = stored_rows(&url).await? - rows_before;
    if args.database_url.is_none() {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", temp_db.display()));
        }
    }

    all.sort_unstable();
    let pick = |q: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let rank = ((q * all.len() as f64).ceil() as usize).clamp(1, all.len());
        all[rank - 1] as f64 / 1000.0
    };
    let frames_sent = sent.load(Ordering::Relaxed);
    let whole_browsers = args.browsers - viewport_browsers;
    // Only browsers watching the whole map are expected to get every update.
    let expected = frames_sent * whole_browsers as u64;
    let per_second = |bytes: u64, browsers: usize| {
        if browsers == 0 {
            0.0
        } else {
            bytes as f64 / browsers as f64 / measured_secs
        }
    };
    let summary = Fanout {
        scenario: "fanout",
        characters: args.characters,
        browsers: args.browsers,
        seconds: args.seconds,
        frames_sent,
        deliveries_expected: expected,
        deliveries: all.len() as u64,
        delivered_fraction: if expected == 0 {
            0.0
        } else {
            whole_deliveries as f64 / expected as f64
        },
        resyncs,
        encoding: args.encoding.clone(),
        viewport_browsers,
        bytes_per_whole_map_per_s: per_second(whole_bytes, whole_browsers),
        bytes_per_viewport_map_per_s: per_second(area_bytes, viewport_browsers),
        bytes_per_update: if whole_deliveries == 0 {
            0.0
        } else {
            whole_bytes as f64 / whole_deliveries as f64
        },
        rows_stored,
        frames_sent_total: sent_total.load(Ordering::Relaxed),
        latency_p50_ms: pick(0.5),
        latency_p99_ms: pick(0.99),
        latency_max_ms: all.last().map_or(0.0, |m| *m as f64 / 1000.0),
        server_cpu_cores: (after.cpu_secs - before.cpu_secs) / measured_secs,
        server_rss_mib: after.rss_bytes as f64 / (1024.0 * 1024.0),
    };
    println!("{}", serde_json::to_string(&summary)?);
    let ok = crate::report::verdict;
    let share = args.viewport.unwrap_or(0.0);
    let (section, title, target_ms, reproduce) = if let Some(bus) = &args.cluster_bus {
        let kind = if bus == "postgres" {
            "postgres"
        } else {
            "nats"
        };
        (
            format!("fanout-cluster-{kind}"),
            format!(
                "Cross-instance fan-out over {} (`dereth-bench fanout --cluster-bus {kind}`): plugins on one instance, browsers on the other",
                if kind == "postgres" {
                    "CLUSTER_BUS=postgres"
                } else {
                    "NATS"
                }
            ),
            50.0,
            crate::report::reproduce(&format!(
                "fanout --cluster-bus {kind} --database-url postgres://USER:PASSWORD@127.0.0.1/dereth_fanout --characters {} --browsers {}",
                args.characters, args.browsers
            )),
        )
    } else if args.coalesce {
        let mut flags = "--coalesce".to_owned();
        let mut section = "fanout".to_owned();
        let mut title = "Coalesced fan-out (`dereth-bench fanout --coalesce".to_owned();
        if share >= 1.0 {
            section.push_str("-viewport");
            flags.push_str(" --viewport");
        } else if share > 0.0 {
            section.push_str(&format!("-viewport-{:.0}pct", share * 100.0));
            flags.push_str(&format!(" --viewport {share}"));
        } else {
            section.push_str("-coalesced");
        }
        // Runs at the scale of issue 25 keep sections of their own beside the 1,000-character
        // records.
        if args.characters >= 10_000 {
            section.push_str(&format!("-{}x{}", args.characters, args.browsers));
        }
        if args.encoding != "json" {
            section.push_str(&format!("-{}", args.encoding));
            flags.push_str(&format!(" --encoding {}", args.encoding));
        }
        title.push_str(&flags["--coalesce".len()..]);
        title.push_str("`): one batch per 250 ms tick");
        if share > 0.0 {
            title.push_str(&format!(
                ", {:.0}% of the browsers each watching an area",
                share * 100.0
            ));
        }
        if args.encoding != "json" {
            title.push_str(&format!(", {} encoding", args.encoding));
        }
        let database = if args.database_url.is_some() {
            " --database-url postgres://USER:PASSWORD@127.0.0.1/dereth_fanout"
        } else {
            ""
        };
        let command = format!(
            "fanout {flags} --characters {} --browsers {} --seconds {}{database}",
            args.characters, args.browsers, args.seconds
        );
        let target = if args.characters > 1_000 {
            1000.0
        } else {
            500.0
        };
        (section, title, target, crate::report::reproduce(&command))
    } else {
        (
            "fanout".to_owned(),
            "Fan-out (`dereth-bench fanout`)".to_owned(),
            50.0,
            crate::report::reproduce("fanout"),
        )
    };
    let kib = |b: f64| b / 1024.0;
    record(
        &args.report,
        &section,
        &format!(
            "## {title}\n\n\
             Measured {} with the server and the load generator (all plugins and browsers) \
             sharing this 2-core machine; server on {}. {} characters send telemetry once a \
             second, evenly spread; {} browsers receive updates ({} deliveries per second to \
             browsers watching the whole map{}). Counted over {} s after a 3 s warm-up; latency \
             is from the plugin's send to the browser's receipt (of every delivery, areas \
             included); bytes are the text of every message a browser received.\n\n\
             | delivered (whole-map browsers) | resyncs | latency p50 | p99 | max | server CPU | server RSS | bytes per browser per second | bytes per update | rows stored |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n\
             | {:.3}% of {} ({}) | {} | {:.1} ms | {:.1} ms ({}, target < {target_ms}) | {:.1} ms | {:.2} cores ({}, target < 1) | {:.0} MiB | {} | {:.0} B | {} of {} frames sent ({}) |\n\n\
             {reproduce}\n",
            crate::report::today(),
            match (&args.cluster_bus, args.database_url.is_some()) {
                (Some(_), _) => "PostgreSQL; two tracker processes, CPU and RSS are their sums",
                (None, true) => "PostgreSQL",
                (None, false) => "SQLite",
            },
            summary.characters,
            summary.browsers,
            summary.characters * (summary.browsers - viewport_browsers),
            if share > 0.0 {
                format!(
                    "; {viewport_browsers} of them each watch a random 50 x 50 area, so they get \
                     only the updates there plus a refresh of every character every 10 s"
                )
            } else if args.coalesce {
                ", carried in one batch frame per browser per tick".to_owned()
            } else {
                ", a websocket frame each".to_owned()
            },
            summary.seconds,
            summary.delivered_fraction * 100.0,
            summary.deliveries_expected,
            ok(summary.delivered_fraction >= 1.0),
            summary.resyncs,
            summary.latency_p50_ms,
            summary.latency_p99_ms,
            ok(summary.latency_p99_ms < target_ms),
            summary.latency_max_ms,
            summary.server_cpu_cores,
            ok(summary.server_cpu_cores < 1.0),
            summary.server_rss_mib,
            if viewport_browsers > 0 && viewport_browsers < summary.browsers {
                format!(
                    "whole map {:.1} KiB/s, area {:.1} KiB/s",
                    kib(summary.bytes_per_whole_map_per_s),
                    kib(summary.bytes_per_viewport_map_per_s)
                )
            } else if viewport_browsers > 0 {
                format!("{:.1} KiB/s", kib(summary.bytes_per_viewport_map_per_s))
            } else {
                format!("{:.1} KiB/s", kib(summary.bytes_per_whole_map_per_s))
            },
            summary.bytes_per_update,
            summary.rows_stored,
            summary.frames_sent_total,
            ok(summary.rows_stored == summary.frames_sent_total as i64),
        ),
    )?;
    Ok(())
}

/// Telemetry rows in the database at `url` (0 when there is no database yet).
async fn stored_rows(url: &str) -> anyhow::Result<i64> {
    if let Some(path) = url.strip_prefix("sqlite://")
        && !std::path::Path::new(path).exists()
    {
        return Ok(0);
    }
    let store =
        dereth_tracker::store::Store::connect(url, &dereth_tracker::store::StoreOptions::default())
            .await?;
    let counts = store.row_counts().await?;
    store.close().await;
    Ok(counts.telemetry)
}

/// The tracker(s) under load: one, or two joined by a cluster bus (plugins on the first,
/// browsers on the second), with the nats-server this run started, if any.
struct Cluster {
    browsers: ServerProcess,
    plugins: Option<ServerProcess>,
    nats: Option<tokio::process::Child>,
}

impl Cluster {
    async fn start(args: &FanoutArgs, url: &str) -> anyhow::Result<Self> {
        let Some(bus) = &args.cluster_bus else {
            return Ok(Self {
                browsers: ServerProcess::start(url, &[]).await?,
                plugins: None,
                nats: None,
            });
        };
        anyhow::ensure!(
            url.starts_with("postgres"),
            "--cluster-bus needs a PostgreSQL --database-url shared by both instances"
        );
        let (bus, nats) = match bus.as_str() {
            "nats" => {
                let port = std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port();
                let child = tokio::process::Command::new("nats-server")
                    .args(["-a", "127.0.0.1", "-p", &port.to_string()])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| {
                        anyhow::anyhow!("starting nats-server (apt install nats-server): {e}")
                    })?;
                let deadline = Instant::now() + Duration::from_secs(10);
                while tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_err()
                {
                    anyhow::ensure!(Instant::now() < deadline, "nats-server did not start");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (format!("nats://127.0.0.1:{port}"), Some(child))
            }
            other => (other.to_owned(), None),
        };
        let plugins = ServerProcess::start(
            url,
            &[
                ("CLUSTER_BUS", bus.as_str()),
                ("INSTANCE_NAME", "bench-plugins"),
            ],
        )
        .await?;
        let browsers = ServerProcess::start(
            url,
            &[
                ("CLUSTER_BUS", bus.as_str()),
                ("INSTANCE_NAME", "bench-browsers"),
            ],
        )
        .await?;
        Ok(Self {
            browsers,
            plugins: Some(plugins),
            nats,
        })
    }

    /// The instance plugins connect to.
    fn plugins(&self) -> &ServerProcess {
        self.plugins.as_ref().unwrap_or(&self.browsers)
    }

    /// CPU and memory of every tracker process, summed.
    fn sample(&self) -> anyhow::Result<crate::server::ProcSample> {
        let mut total = self.browsers.sample()?;
        if let Some(p) = &self.plugins {
            let s = p.sample()?;
            total.cpu_secs += s.cpu_secs;
            total.rss_bytes += s.rss_bytes;
        }
        Ok(total)
    }

    async fn stop(self) -> anyhow::Result<()> {
        if let Some(p) = self.plugins {
            p.stop().await?;
        }
        self.browsers.stop().await?;
        if let Some(mut nats) = self.nats {
            let _ = nats.kill().await;
        }
        Ok(())
    }
}
