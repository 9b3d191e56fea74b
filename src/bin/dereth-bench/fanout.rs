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
/// frame, one per character for a coalesced `batch`.
fn sent_at(text: &str) -> impl Iterator<Item = i64> + '_ {
    text.split("\"timestamp\":\"").skip(1).filter_map(|rest| {
        let raw = rest.split('"').next()?;
        chrono::DateTime::parse_from_rfc3339(raw)
            .ok()
            .map(|t| t.timestamp_micros())
    })
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
    let browser_url = if args.coalesce {
        format!("{}?coalesce=1", server.browser_url())
    } else {
        server.browser_url()
    };
    for _ in 0..args.browsers {
        let (mut ws, _) = tokio_tungstenite::connect_async(browser_url.as_str()).await?;
        if args.viewport {
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
                // A refresh re-sends older positions: not a delivery to time.
                if text.starts_with("{\"type\":\"batch\",\"refresh\"") {
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
            (latencies, resyncs)
        }));
    }

    // Characters at 1 Hz, spread evenly over the second.
    let sent = Arc::new(AtomicU64::new(0));
    let mut plugins = Vec::new();
    for c in 0..args.characters {
        let mut ws = connect_plugin(&cluster.plugins().plugin_url()).await?;
        let (stop, window, sent) = (stop.clone(), window.clone(), sent.clone());
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
                if window.contains(now.timestamp_micros()) {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            let _ = ws.close(None).await;
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
    for b in browsers {
        let (latencies, r) = b.await?;
        resyncs += r;
        all.extend(latencies);
    }
    cluster.stop().await?;
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
    let expected = frames_sent * args.browsers as u64;
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
            all.len() as f64 / expected as f64
        },
        resyncs,
        latency_p50_ms: pick(0.5),
        latency_p99_ms: pick(0.99),
        latency_max_ms: all.last().map_or(0.0, |m| *m as f64 / 1000.0),
        server_cpu_cores: (after.cpu_secs - before.cpu_secs) / measured_secs,
        server_rss_mib: after.rss_bytes as f64 / (1024.0 * 1024.0),
    };
    println!("{}", serde_json::to_string(&summary)?);
    let ok = crate::report::verdict;
    let (section, title, target_ms, reproduce) = if let Some(bus) = &args.cluster_bus {
        let kind = if bus == "postgres" {
            "postgres"
        } else {
            "nats"
        };
        (
            if kind == "postgres" {
                "fanout-cluster-postgres"
            } else {
                "fanout-cluster-nats"
            },
            if kind == "postgres" {
                "Cross-instance fan-out over CLUSTER_BUS=postgres (`dereth-bench fanout --cluster-bus postgres`): plugins on one instance, browsers on the other"
            } else {
                "Cross-instance fan-out over NATS (`dereth-bench fanout --cluster-bus nats`): plugins on one instance, browsers on the other"
            },
            50.0,
            crate::report::reproduce(&format!(
                "fanout --cluster-bus {} --database-url postgres://USER:PASSWORD@127.0.0.1/dereth_fanout --characters {} --browsers {}",
                if kind == "postgres" {
                    "postgres"
                } else {
                    "nats"
                },
                args.characters,
                args.browsers
            )),
        )
    } else if args.coalesce {
        let (section, title, flags) = if args.viewport {
            (
                "fanout-viewport",
                "Coalesced fan-out to browsers each watching an area (`dereth-bench fanout --coalesce --viewport`)",
                "--coalesce --viewport",
            )
        } else {
            (
                "fanout-coalesced",
                "Coalesced fan-out (`dereth-bench fanout --coalesce`): one batch per 250 ms tick",
                "--coalesce",
            )
        };
        let command = format!(
            "fanout {flags} --characters {} --browsers {}",
            args.characters, args.browsers
        );
        (section, title, 500.0, crate::report::reproduce(&command))
    } else {
        (
            "fanout",
            "Fan-out (`dereth-bench fanout`)",
            50.0,
            crate::report::reproduce("fanout"),
        )
    };
    record(
        &args.report,
        section,
        &format!(
            "## {title}\n\n\
             Measured {} with the server and the load generator (all plugins and browsers) \
             sharing this 2-core machine; server on {}. {} characters send telemetry once a \
             second, evenly spread; {} browsers receive every update ({} deliveries per second{}). \
             Counted over {} s after a 3 s warm-up; latency is from the plugin's send to the \
             browser's receipt.\n\n\
             | delivered | resyncs | latency p50 | p99 | max | server CPU | server RSS |\n\
             |---:|---:|---:|---:|---:|---:|---:|\n\
             | {:.3}% of {} ({}) | {} | {:.1} ms | {:.1} ms ({}, target < {target_ms}) | {:.1} ms | {:.2} cores ({}, target < 1) | {:.0} MiB |\n\n\
             {reproduce}\n",
            crate::report::today(),
            match (&args.cluster_bus, args.database_url.is_some()) {
                (Some(_), _) => "PostgreSQL; two tracker processes, CPU and RSS are their sums",
                (None, true) => "PostgreSQL",
                (None, false) => "SQLite",
            },
            summary.characters,
            summary.browsers,
            summary.characters * summary.browsers,
            if args.viewport {
                " before filtering: each browser watches a random 50 x 50 area, so it gets only \
                 the updates there, which \"delivered\" counts against all of them, plus a refresh \
                 of every character every 10 s"
            } else if args.coalesce {
                ", carried in one batch frame per browser per tick"
            } else {
                ", a websocket frame each"
            },
            summary.seconds,
            summary.delivered_fraction * 100.0,
            summary.deliveries_expected,
            if args.viewport {
                "filtered by area"
            } else {
                ok(summary.delivered_fraction >= 1.0)
            },
            summary.resyncs,
            summary.latency_p50_ms,
            summary.latency_p99_ms,
            ok(summary.latency_p99_ms < target_ms),
            summary.latency_max_ms,
            summary.server_cpu_cores,
            ok(summary.server_cpu_cores < 1.0),
            summary.server_rss_mib,
        ),
    )?;
    Ok(())
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
