//! The real `dereth-tracker` binary: configuration from the environment, SIGTERM handling and the
//! shutdown flush, on both backends.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::{Backend, TestDb, WAIT, block_writes, telemetry};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_dereth-tracker");

/// A running `dereth-tracker` process, its address (read from its log) and everything it has
/// logged so far.
pub(crate) struct Launched {
    pub child: Child,
    pub addr: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Launched {
    /// Runs the binary with exactly `env` (and `args`), on an ephemeral port unless `env` says
    /// otherwise, and waits for its "listening on" line.
    pub(crate) async fn start(env: &[(&str, &str)], args: &[&str]) -> Self {
        let mut command = Command::new(BIN);
        command.env_clear().env("BIND_ADDR", "127.0.0.1:0");
        // Each process needs a spool directory of its own: a SQLite database has one beside
        // its file (in the test's temporary directory); otherwise one that outlives the child
        // (it may be killed and restarted on it).
        let own_spool = !env
            .iter()
            .any(|(k, v)| *k == "SPOOL_DIR" || (*k == "DATABASE_URL" && v.starts_with("sqlite")));
        if own_spool {
            let dir = tempfile::Builder::new()
                .prefix("dereth-test-spool-")
                .tempdir()
                .expect("spool dir")
                .keep();
            command.env("SPOOL_DIR", dir);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the binary");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel::<String>();
        let collected = log.clone();
        // Keep reading, so the child never blocks on a full pipe.
        tokio::spawn(async move {
            let mut addr_tx = Some(addr_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("listening on http://").nth(1)
                    && let Some(tx) = addr_tx.take()
                {
                    let addr: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                        .collect();
                    let _ = tx.send(addr);
                }
                if let Ok(mut all) = collected.lock() {
                    all.push_str(&line);
                    all.push('\n');
                }
            }
        });
        let addr = tokio::time::timeout(WAIT, addr_rx)
            .await
            .expect("the server starts")
            .expect("the server logs its address");
        Self { child, addr, log }
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// Starts the binary on `db` with the test secret.
async fn start(db: &TestDb) -> (Child, String) {
    let launched = Launched::start(
        &[
            ("DATABASE_URL", &db.url),
            ("SHARED_SECRET", common::SECRET),
            ("SQLITE_BUSY_TIMEOUT_MS", "200"),
            ("RUST_LOG", "info"),
        ],
        &[],
    )
    .await;
    (launched.child, launched.addr)
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

/// The README's configuration table names every setting `--help` documents (the README stays
/// true as settings are added).
#[test]
fn the_readme_lists_every_setting() {
    let out = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run --help");
    let help = String::from_utf8_lossy(&out.stdout);
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let table: String = readme
        .lines()
        .filter(|l| l.starts_with("| `"))
        .collect::<Vec<_>>()
        .join("\n");
    let settings: Vec<&str> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .collect();
    assert!(settings.len() > 40, "{settings:?}");
    let missing: Vec<&&str> = settings
        .iter()
        .filter(|env| !table.contains(&format!("`{env}`")))
        .collect();
    assert!(missing.is_empty(), "not in the README's table: {missing:?}");
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

// ---------------------------------------------------------------------------------------------
// The compose deployment
// ---------------------------------------------------------------------------------------------

/// `.env.example` as compose reads an env file: `KEY=VALUE` lines, comments and blanks skipped.
fn env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Compose interpolation of one value: `${VAR}`, `${VAR:-default}`, `${VAR:?error}`, `$$`.
fn interpolate(value: &str, vars: &std::collections::HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(tail) = rest.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let body = rest.strip_prefix('{').expect("only ${...} forms are used");
        let end = body.find('}').expect("closing brace");
        let expr = &body[..end];
        rest = &body[end + 1..];
        let (name, op, arg) = match expr.find([':', '-', '?']) {
            Some(i) => {
                let op_len = if expr[i..].starts_with(":-") || expr[i..].starts_with(":?") {
                    2
                } else {
                    1
                };
                (&expr[..i], &expr[i..i + op_len], &expr[i + op_len..])
            }
            None => (expr, "", ""),
        };
        let set = vars.get(name).filter(|v| !v.is_empty());
        match (op, set) {
            (_, Some(v)) => out.push_str(v),
            (":-" | "-", None) => out.push_str(arg),
            (":?" | "?", None) => panic!("compose would refuse to start: {name}: {arg}"),
            _ => {}
        }
    }
    out.push_str(rest);
    out
}

/// The tracker service's environment exactly as `docker compose up` gives it (env_file, then
/// `environment` interpolated with the .env values), the database password included.
fn compose_environment(dot_env: &[(String, String)]) -> Vec<(String, String)> {
    service_environment("docker-compose.yml", "tracker", dot_env)
}

/// A service's environment in a compose file of this repository, as compose gives it (YAML
/// merge keys applied, env_file, then `environment` interpolated with the .env values).
pub(crate) fn service_environment(
    file: &str,
    service: &str,
    dot_env: &[(String, String)],
) -> Vec<(String, String)> {
    let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
    let mut compose: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).expect("compose file"))
            .expect("compose YAML");
    compose.apply_merge().expect("merge keys");
    let tracker = &compose["services"][service];
    if tracker["env_file"].is_null() {
        return plain_environment(tracker, dot_env);
    }
    let vars: std::collections::HashMap<String, String> = dot_env.iter().cloned().collect();
    let mut env: Vec<(String, String)> = Vec::new();
    let files = tracker["env_file"].as_sequence().expect("env_file list");
    assert_eq!(files.len(), 1, "the tracker reads .env");
    env.extend(dot_env.iter().cloned());
    for (k, v) in tracker["environment"]
        .as_mapping()
        .expect("environment map")
    {
        let key = k.as_str().expect("key").to_owned();
        let raw = match v {
            serde_yaml::Value::String(s) => s.clone(),
            other => serde_yaml::to_string(other)
                .expect("scalar")
                .trim()
                .to_owned(),
        };
        env.retain(|(k, _)| *k != key);
        env.push((key, interpolate(&raw, &vars)));
    }
    env
}

/// The `environment` of a service without an env_file, interpolated.
fn plain_environment(
    service: &serde_yaml::Value,
    dot_env: &[(String, String)],
) -> Vec<(String, String)> {
    let vars: std::collections::HashMap<String, String> = dot_env.iter().cloned().collect();
    service["environment"]
        .as_mapping()
        .expect("environment map")
        .iter()
        .map(|(k, v)| {
            let raw = v.as_str().map_or_else(
                || serde_yaml::to_string(v).expect("scalar").trim().to_owned(),
                str::to_owned,
            );
            (
                k.as_str().expect("key").to_owned(),
                interpolate(&raw, &vars),
            )
        })
        .collect()
}

/// `.env.example` as an operator's `.env` (its secrets have example values).
fn example_dot_env() -> Vec<(String, String)> {
    env_file(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example"))
            .expect(".env.example"),
    )
}

/// docker-compose.cluster.yml as compose would run it, with the database and addresses swapped
/// for local ones: both trackers start from their compose environment, find each other on the
/// bus, and HAProxy with the compose proxy's environment and the mounted deploy/haproxy.cfg
/// serves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_compose_file_runs_two_instances_behind_its_proxy() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let dot_env = example_dot_env();
    let mut trackers = Vec::new();
    for service in ["tracker-a", "tracker-b"] {
        let env = service_environment("docker-compose.cluster.yml", service, &dot_env);
        let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        assert_eq!(get("CLUSTER_BUS").as_deref(), Some("postgres"));
        assert_eq!(get("INSTANCE_NAME").as_deref(), Some(service));
        let mut vars: Vec<(&str, &str)> = env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            // The spool's path is the container's volume: each local process gets its own.
            .filter(|(k, _)| {
                !matches!(
                    *k,
                    "DATABASE_URL" | "DATABASE_PASSWORD" | "BIND_ADDR" | "SPOOL_DIR" | "BACKUP_DIR"
                )
            })
            .collect();
        vars.push(("DATABASE_URL", &db.url));
        trackers.push(Launched::start(&vars, &[]).await);
    }
    let proxy_env = service_environment("docker-compose.cluster.yml", "proxy", &dot_env);
    let compose: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docker-compose.cluster.yml"
        ))
        .expect("compose file"),
    )
    .expect("YAML");
    let mount = compose["services"]["proxy"]["volumes"][0]
        .as_str()
        .expect("the proxy's config mount");
    let config = mount
        .strip_prefix("./")
        .and_then(|m| m.split(':').next())
        .expect("a file of this repository");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut haproxy = Command::new("haproxy");
    haproxy
        .args(["-db", "-f"])
        .arg(format!("{}/{config}", env!("CARGO_MANIFEST_DIR")));
    for (k, v) in &proxy_env {
        let v = match k.as_str() {
            "PROXY_BIND" => format!("127.0.0.1:{port}"),
            "TRACKER_A" => trackers[0].addr.clone(),
            "TRACKER_B" => trackers[1].addr.clone(),
            _ => v.clone(),
        };
        haproxy.env(k, v);
    }
    let mut haproxy = match haproxy
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(err) => {
            assert!(
                std::env::var("CI").is_err(),
                "CI=true but haproxy cannot run: {err}"
            );
            eprintln!("SKIPPED (HAProxy): {err}");
            return;
        }
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let peers = match reqwest::get(format!("http://127.0.0.1:{port}/debug")).await {
            Ok(r) => r.json::<serde_json::Value>().await.ok(),
            Err(_) => None,
        };
        let named = peers
            .as_ref()
            .and_then(|d| d["cluster"]["peers"][0]["instance"].as_str());
        if matches!(named, Some("tracker-a" | "tracker-b")) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the proxied cluster never formed: {peers:?}\n{}\n{}",
            trackers[0].log(),
            trackers[1].log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = haproxy.start_kill();
    for t in &trackers {
        sigterm(&t.child);
    }
    for mut t in trackers {
        let exit = tokio::time::timeout(WAIT, t.child.wait())
            .await
            .expect("exits after SIGTERM")
            .expect("exit status");
        assert!(exit.success(), "{}", t.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_environment_starts_a_healthy_tracker_with_any_password() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    // The operator's .env: the example with the secrets filled, and a password full of the
    // characters that break URLs.
    let password = "p@ss/w:rd#1?%&x y";
    let mut dot_env = env_file(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example"))
            .expect(".env.example"),
    );
    for (k, v) in &mut dot_env {
        if k == "POSTGRES_PASSWORD" {
            *v = password.to_owned();
        }
    }
    let env = compose_environment(&dot_env);
    let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(
        get("COMMAND_TOKEN").as_deref(),
        Some(""),
        "passed empty, as compose does"
    );
    assert_eq!(get("DATABASE_PASSWORD").as_deref(), Some(password));
    let compose_url = get("DATABASE_URL").expect("DATABASE_URL");
    assert!(!compose_url.contains(password), "no password in the URL");

    // Only the address and the database are swapped for local ones: a role with that password.
    let role = format!("{}_role", db.name());
    let admin = db.admin().await;
    sqlx::query(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD '{}'",
        password.replace('\'', "''")
    ))
    .execute(&admin)
    .await
    .expect("create role");
    let in_db = sqlx::PgPool::connect(&db.url).await.expect("test database");
    // What the database image runs when it creates the database (both compose files mount it).
    let init = database_init_script();
    sqlx::raw_sql(&init)
        .execute(&in_db)
        .await
        .expect("deploy/db-init.sql runs");
    sqlx::raw_sql(&format!(
        "GRANT ALL ON SCHEMA public TO {role}; GRANT ALL ON DATABASE {} TO {role}",
        db.name()
    ))
    .execute(&in_db)
    .await
    .expect("grant");
    let host_port = db
        .url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("host:port")
        .to_owned();
    let local_url = format!("postgres://{role}@{host_port}/{}", db.name());

    // Any other role, granted nothing, may not even connect (PostgreSQL's default lets it).
    let stranger = format!("{}_stranger", db.name());
    sqlx::query(&format!(
        "CREATE ROLE {stranger} LOGIN PASSWORD 'stranger-pw'"
    ))
    .execute(&admin)
    .await
    .expect("create a second role");
    let refused = sqlx::PgPool::connect(&format!(
        "postgres://{stranger}:stranger-pw@{host_port}/{}",
        db.name()
    ))
    .await
    .expect_err("a role granted nothing connected to the tracker's database");
    assert!(
        refused.to_string().contains("permission denied"),
        "{refused}"
    );
    sqlx::query(&format!("DROP ROLE {stranger}"))
        .execute(&admin)
        .await
        .expect("drop the second role");

    let mut vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // The spool's path is the container's volume; this process gets one of its own.
    vars.retain(|(k, _)| {
        !matches!(
            *k,
            "DATABASE_URL" | "BIND_ADDR" | "SPOOL_DIR" | "BACKUP_DIR"
        )
    });
    vars.push(("DATABASE_URL", &local_url));
    let Launched {
        mut child, addr, ..
    } = Launched::start(&vars, &["serve"]).await;

    let health = reqwest::get(format!("http://{addr}/health"))
        .await
        .expect("health answers");
    assert_eq!(health.status().as_u16(), 200);

    // The container's HEALTHCHECK command, with the same environment.
    let mut check = Command::new(BIN);
    check.env_clear();
    for (k, v) in &env {
        check.env(k, v);
    }
    let status = check
        .env("BIND_ADDR", &addr)
        .arg("healthcheck")
        .stdout(Stdio::null())
        .status()
        .await
        .expect("healthcheck runs");
    assert!(status.success(), "healthcheck exits 0");

    sigterm(&child);
    let exit = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("exit status");
    assert!(exit.success());
    // The role owns the tables: take its membership to drop them, then drop it.
    sqlx::query(&format!("GRANT {role} TO CURRENT_USER"))
        .execute(&admin)
        .await
        .expect("membership");
    sqlx::raw_sql(&format!(
        "DROP OWNED BY {role}; REVOKE ALL ON SCHEMA public FROM {role}"
    ))
    .execute(&in_db)
    .await
    .expect("drop the role's objects");
    in_db.close().await;
    sqlx::query(&format!("DROP ROLE {role}"))
        .execute(&admin)
        .await
        .expect("drop role");
}

/// deploy/db-init.sql, after checking that both compose files mount it where the database
/// image runs it on creation.
fn database_init_script() -> String {
    for file in ["docker-compose.yml", "docker-compose.cluster.yml"] {
        let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
        let compose: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).expect("compose file"))
                .expect("compose YAML");
        let mounted = compose["services"]["db"]["volumes"]
            .as_sequence()
            .is_some_and(|v| {
                v.iter()
                    .filter_map(|m| m.as_str())
                    .any(|m| m.starts_with("./deploy/db-init.sql:/docker-entrypoint-initdb.d/"))
            });
        assert!(mounted, "{file} does not mount deploy/db-init.sql");
    }
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/db-init.sql"))
        .expect("deploy/db-init.sql")
}

#[test]
fn compose_interpolation_follows_the_compose_rules() {
    let vars: std::collections::HashMap<String, String> = [
        ("SET".to_owned(), "v".to_owned()),
        ("EMPTY".to_owned(), String::new()),
    ]
    .into_iter()
    .collect();
    assert_eq!(interpolate("a${SET}b", &vars), "avb");
    assert_eq!(interpolate("${EMPTY:-d}", &vars), "d");
    assert_eq!(interpolate("${MISSING:-}", &vars), "");
    assert_eq!(interpolate("$${SET}", &vars), "${SET}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_promptly_with_a_client_stuck_mid_headers_and_nothing_lost() {
    use tokio::io::AsyncWriteExt;
    let Some(db) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    let Launched {
        mut child, addr, ..
    } = Launched::start(
        &[
            ("DATABASE_URL", &db.url),
            ("SHARED_SECRET", common::SECRET),
            ("HEADER_READ_TIMEOUT_SECS", "600"),
            ("SHUTDOWN_GRACE_SECS", "1"),
            ("RUST_LOG", "info"),
        ],
        &[],
    )
    .await;

    let mut stuck = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stuck
        .write_all(b"GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
        .await
        .expect("write");
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{addr}/ws/position"
        ))
        .expect("request");
    request
        .headers_mut()
        .insert("X-Plugin-Secret", common::SECRET.parse().expect("value"));
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("plugin connects");
    let mut plugin = common::Client { ws };
    for i in 0..50 {
        plugin.send_json(&telemetry("Stuck", "s", i)).await;
    }
    // Let the frames be read before the signal.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits despite the stuck client")
        .expect("status");
    assert!(status.success(), "exit 0");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let store = db.store().await;
    assert_eq!(
        store.telemetry_of("Stuck", 100).await.expect("rows").len(),
        50
    );
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_debug_logs() {
    let Some(db) = TestDb::create(Backend::Sqlite).await else {
        return;
    };
    let launched = Launched::start(
        &[
            ("DATABASE_URL", &db.url),
            ("SHARED_SECRET", common::SECRET),
            ("COMMAND_TOKEN", "tok-456-secret"),
            (
                "ALERT_WEBHOOK_URL",
                "http://127.0.0.1:9/api/webhooks/1/hook-789-secret",
            ),
            ("RUST_LOG", "debug"),
        ],
        &[],
    )
    .await;
    let addr = launched.addr.clone();
    // A wrong secret and a token in URLs, as old clients send them.
    let _ = tokio_tungstenite::connect_async(format!(
        "ws://{addr}/ws/position?secret=guess-123-secret"
    ))
    .await;
    let _ = reqwest::get(format!("http://{addr}/live?token=tok-456-secret")).await;
    let (ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{addr}/ws/position?secret={}",
        common::SECRET
    ))
    .await
    .expect("plugin connects");
    let mut plugin = common::Client { ws };
    plugin
        .send_json(&common::rare_frame("Leaky", "Pearl of Blood Drinking"))
        .await;
    // The webhook is unreachable: wait for the first failed delivery to be logged.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut launched = launched;
    sigterm(&launched.child);
    let _ = tokio::time::timeout(WAIT, launched.child.wait()).await;
    let log = launched.log();
    assert!(
        log.contains("webhook unreachable"),
        "the failure is logged:\n{log}"
    );
    assert!(log.contains("/ws/position"), "paths are logged");
    for secret in [
        "guess-123-secret",
        "tok-456-secret",
        "hook-789-secret",
        common::SECRET,
    ] {
        assert!(
            !log.contains(secret),
            "`{secret}` leaked into the log:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_waited_for_with_backoff_then_reported() {
    // Nothing listens on this port: connection refused, as while a database container starts.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let started = std::time::Instant::now();
    let output = Command::new(BIN)
        .env_clear()
        .env("BIND_ADDR", "127.0.0.1:0")
        .env(
            "DATABASE_URL",
            format!("postgres://tracker@127.0.0.1:{port}/dereth"),
        )
        .env("DATABASE_PASSWORD", "pw-not-in-logs")
        .env("DB_STARTUP_WAIT_SECS", "6")
        .env("DB_ACQUIRE_TIMEOUT_SECS", "1")
        .env("SHARED_SECRET", common::SECRET)
        .env("RUST_LOG", "info")
        .output()
        .await
        .expect("run the binary");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "gives up after the wait");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "it waited: {:?}",
        started.elapsed()
    );
    assert!(
        log.matches("database not reachable yet; waiting").count() >= 2,
        "retried with backoff:\n{log}"
    );
    assert!(!log.contains("pw-not-in-logs"));
}

#[tokio::test]
async fn the_server_binary_carries_no_benchmark_or_simulator_tools() {
    // Before the tools moved to `dereth-bench`, both subcommands were part of the server.
    for tool in ["bench", "simulate"] {
        let out = Command::new(BIN)
            .env_clear()
            .args([tool, "--help"])
            .output()
            .await
            .expect("run the binary");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{tool}: {stderr}");
        assert!(
            stderr.contains("unrecognized subcommand"),
            "{tool}: {stderr}"
        );
    }
    let help = Command::new(BIN)
        .env_clear()
        .arg("--help")
        .output()
        .await
        .expect("run the binary");
    let usage = String::from_utf8_lossy(&help.stdout);
    assert!(
        usage.contains("healthcheck") && !usage.contains("bench"),
        "{usage}"
    );
}

/// Issue 27: a build says which commit it was made from, in `--version` and `/debug`.
#[tokio::test]
async fn the_build_names_its_version_and_commit() {
    let out = std::process::Command::new(BIN)
        .arg("--version")
        .output()
        .expect("--version runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        text.starts_with(&format!(
            "dereth-tracker {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    // In a clone with its history (as CI builds), the commit is the one checked out (or the
    // tree was built from before a later commit: a prefix of a real object).
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let commit = text
        .rsplit_once("(commit ")
        .and_then(|(_, c)| c.strip_suffix(')'))
        .expect("a commit")
        .to_owned();
    if let Some(head) = head {
        assert_ne!(commit, "unknown", "built inside a git checkout");
        let known = std::process::Command::new("git")
            .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            known,
            "{commit} is a commit of this repository (HEAD is {head})"
        );
    }
    let Some(app) = crate::common::TestApp::spawn(crate::common::Backend::Sqlite).await else {
        return;
    };
    let (_, debug) = app.get("/debug").await;
    assert_eq!(debug["commit"], commit.as_str(), "{debug}");
    assert_eq!(debug["version"], env!("CARGO_PKG_VERSION"));
}
