//! Test helpers: a real tracker on 127.0.0.1:0 over a fresh database of either backend, and
//! websocket clients that play the plugin and the browser.
#![allow(dead_code)] // each module uses its own part of the harness

use std::net::SocketAddr;
use std::time::Duration;

use dereth_tracker::Server;
use dereth_tracker::WriterReport;
use dereth_tracker::config::{Role, Secret, Settings};
use dereth_tracker::manage;
use dereth_tracker::store::{Store, StoreOptions};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) const SECRET: &str = "test-secret";
/// Upper bound for anything a test waits on; generous for a loaded 2-core CI machine.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// Which storage backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one async test body once per backend: `both_backends!(body_fn);` makes a module with a
/// `sqlite` and a `postgres` test.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::common::Backend::Postgres).await
            }
        }
    )*};
}

pub(crate) fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A database that exists for one test and is removed afterwards.
pub(crate) struct TestDb {
    pub backend: Backend,
    pub url: String,
    admin_url: Option<String>,
    name: String,
    _dir: Option<tempfile::TempDir>,
    /// The spool directory of the tracker on this database handle (a second instance gets its
    /// own, a restarted one keeps it).
    pub spool: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A fresh database, or `None` (with a loud message) when PostgreSQL is not configured outside
    /// CI. Under `CI=true` a missing PostgreSQL fails the test.
    pub(crate) async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("tracker.db");
                Some(Self {
                    backend,
                    url: format!("sqlite://{}", path.display()),
                    admin_url: None,
                    name: String::new(),
                    _dir: Some(dir),
                    spool: Some(tempfile::tempdir().expect("spool dir")),
                })
            }
            Backend::Postgres => {
                let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
                    assert!(
                        !in_ci(),
                        "CI=true but TEST_DATABASE_URL is not set: PostgreSQL tests cannot run"
                    );
                    eprintln!(
                        "SKIPPED (PostgreSQL): TEST_DATABASE_URL is not set; run ./scripts/test.sh"
                    );
                    return None;
                };
                let name = format!("dt_{}_{}", std::process::id(), rand_suffix());
                let admin = match sqlx::PgPool::connect(&admin_url).await {
                    Ok(pool) => pool,
                    Err(err) => {
                        assert!(!in_ci(), "CI=true but PostgreSQL is unreachable: {err}");
                        eprintln!("SKIPPED (PostgreSQL): cannot connect: {err}");
                        return None;
                    }
                };
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .expect("create test database");
                admin.close().await;
                let url = replace_db_name(&admin_url, &name);
                Some(Self {
                    backend,
                    url,
                    admin_url: Some(admin_url),
                    name,
                    _dir: None,
                    spool: Some(tempfile::tempdir().expect("spool dir")),
                })
            }
        }
    }

    /// Opens a separate store handle on this database, for assertions.
    pub(crate) async fn store(&self) -> Store {
        Store::connect(&self.url, &StoreOptions::default())
            .await
            .expect("open store")
    }

    /// Another handle on this database that does not remove it when dropped (for a second
    /// tracker instance sharing it).
    pub(crate) fn shared(&self) -> TestDb {
        TestDb {
            backend: self.backend,
            url: self.url.clone(),
            admin_url: None,
            name: self.name.clone(),
            _dir: None,
            spool: Some(tempfile::tempdir().expect("spool dir")),
        }
    }

    /// The database name (PostgreSQL).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// A pool with the admin connection (PostgreSQL), for outage simulation.
    pub(crate) async fn admin(&self) -> sqlx::PgPool {
        let url = self.admin_url.as_deref().expect("postgres only");
        sqlx::PgPool::connect(url).await.expect("admin connection")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(admin_url) = self.admin_url.clone() else {
            return;
        };
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on itself: use a helper thread.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(admin) = sqlx::PgPool::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&admin)
                        .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}_{}", nanos, COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let cut = base.rfind('/').expect("database URL has a path");
    let mut out = format!("{}/{}", &base[..cut], name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A spool in `dir` as a test tracker uses it.
pub(crate) fn spool_options(dir: &std::path::Path) -> dereth_tracker::spool::SpoolOptions {
    dereth_tracker::spool::SpoolOptions {
        dir: dir.to_owned(),
        max_bytes: 256 * 1024 * 1024,
        sync_interval: Duration::from_millis(10),
        memory: 20_000,
        segment_bytes: 4 * 1024 * 1024,
    }
}

/// Settings for a test server: loopback, a known secret, short timers.
pub(crate) fn test_settings(db: &TestDb) -> Settings {
    let mut s = Settings::defaults();
    s.server.bind_addr = "127.0.0.1:0".parse().expect("addr");
    s.database.database_url = db.url.clone().into();
    s.writer.spool_dir = db.spool.as_ref().map(|d| d.path().to_owned());
    s.access.shared_secret = Some(Secret::new(SECRET));
    s.access.command_token = None;
    s.writer.shutdown_flush_secs = 30;
    s.database.sqlite_busy_timeout_ms = 200;
    s.database.db_acquire_timeout_secs = 2;
    s
}

/// A running tracker.
pub(crate) struct TestApp {
    pub addr: SocketAddr,
    pub db: TestDb,
    pub store: Store,
    /// An API token sent with every request and browser connection of this harness, once set
    /// (see [`TestApp::sign_in_as`]).
    pub token: Option<String>,
    /// The server's live state (to put characters in it without a plugin connection each).
    pub live: std::sync::Arc<dereth_tracker::testing::Live>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<WriterReport>>>,
}

impl TestApp {
    /// A tracker with test settings on a fresh database; `None` when the backend is unavailable
    /// outside CI.
    pub(crate) async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Like [`TestApp::spawn`], with settings adjusted by `tweak`.
    pub(crate) async fn spawn_with(
        backend: Backend,
        tweak: impl FnOnce(&mut Settings),
    ) -> Option<Self> {
        let db = TestDb::create(backend).await?;
        let mut settings = test_settings(&db);
        tweak(&mut settings);
        Some(Self::start(db, settings).await)
    }

    /// Starts a tracker on an existing database.
    pub(crate) async fn start(db: TestDb, settings: Settings) -> Self {
        let options = settings.store_options();
        let server_store = Store::connect(&settings.database.database_url, &options)
            .await
            .expect("open store");
        let store = db.store().await;
        let listener = tokio::net::TcpListener::bind(settings.server.bind_addr)
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let server = Server::new(settings, server_store).await.expect("server");
        let live = server.live();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server.run(listener, async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            db,
            store,
            token: None,
            live,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// Another tracker instance on this one's database, with test settings adjusted by `tweak`
    /// (for the cluster tests).
    pub(crate) async fn peer(&self, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let db = self.db.shared();
        let mut settings = test_settings(&db);
        tweak(&mut settings);
        Self::start(db, settings).await
    }

    /// Stops the server as SIGTERM would and returns the writer's report.
    pub(crate) async fn shutdown(&mut self) -> WriterReport {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let handle = self.handle.take().expect("server running");
        tokio::time::timeout(Duration::from_secs(60), handle)
            .await
            .expect("server stops within a minute")
            .expect("server task")
            .expect("server result")
    }

    /// Stops this server and starts a new one on the same database.
    pub(crate) async fn restart(mut self, tweak: impl FnOnce(&mut Settings)) -> Self {
        self.shutdown().await;
        self.store.close().await;
        let mut settings = test_settings(&self.db);
        tweak(&mut settings);
        let backend = self.db.backend;
        let token = self.token.take();
        let db = std::mem::replace(
            &mut self.db,
            TestDb {
                backend,
                url: String::new(),
                admin_url: None,
                name: String::new(),
                _dir: None,
                spool: None,
            },
        );
        let mut app = Self::start(db, settings).await;
        app.token = token;
        app
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Creates an API token of `role` (as `dereth-tracker token add` does) and waits until the
    /// tracker knows it. Reads then need it (an identity exists): the harness sends it with
    /// every request and browser connection from now on.
    pub(crate) async fn sign_in_as(&mut self, role: Role) -> String {
        let name = format!("test-{}-{}", role, rand_suffix());
        let token = manage::add_token(&self.store, &name, role)
            .await
            .expect("token added");
        self.token = Some(token.clone());
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, me) = self.get("/me").await;
            if status == 200 && me["role"] == role.to_string() {
                return token;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the token was never known: {me}"
            );
            // Each try before the tracker knows the token (it reloads every second) is a
            // failed authentication, and ten a minute lock the client out: try seldom.
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }

    /// GET a path; returns the status and the body as JSON (Null when not JSON).
    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let mut request = reqwest::Client::new().get(self.url(path));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let resp = request.send().await.expect("GET");
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// A plugin connection authenticated with the test secret in the header.
    pub(crate) async fn plugin(&self) -> Client {
        self.plugin_with(Some(SECRET), None)
            .await
            .expect("plugin connects")
    }

    /// A plugin connection with an explicit header secret and/or legacy query secret.
    pub(crate) async fn plugin_with(
        &self,
        header: Option<&str>,
        query: Option<&str>,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut url = format!("ws://{}/ws/position", self.addr);
        if let Some(q) = query {
            url.push_str(&format!("?secret={q}"));
        }
        let mut request = url.into_client_request().expect("request");
        if let Some(h) = header {
            request
                .headers_mut()
                .insert("X-Plugin-Secret", h.parse().expect("header"));
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Client { ws })
    }

    /// A browser connection; the initial snapshot is read and returned with it.
    pub(crate) async fn browser(&self) -> (Client, Value) {
        self.browser_at("/ws/live").await
    }

    /// A browser connection on a given path (to pass a token); returns it with its snapshot.
    pub(crate) async fn browser_at(&self, path: &str) -> (Client, Value) {
        let mut request = format!("ws://{}{}", self.addr, path)
            .into_client_request()
            .expect("request");
        if let Some(token) = &self.token {
            let value = format!("Bearer {token}").parse().expect("header");
            request.headers_mut().insert("Authorization", value);
        }
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("browser connects");
        let mut client = Client { ws };
        let snapshot = client.recv_json().await;
        assert_eq!(snapshot["type"], "snapshot", "first frame is the snapshot");
        (client, snapshot)
    }

    /// Waits until the event tables hold at least these row counts, then returns the counts.
    pub(crate) async fn wait_for_rows(&self, telemetry: i64, spawns: i64, rares: i64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let counts = self.store.row_counts().await.expect("row counts");
            if counts.telemetry >= telemetry && counts.spawns >= spawns && counts.rares >= rares {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "rows never arrived: have {counts:?}, want telemetry {telemetry}, spawns {spawns}, rares {rares}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until `/debug` satisfies `pred`; returns that body.
    pub(crate) async fn wait_debug(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (_, body) = self.get("/debug").await;
            if pred(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; /debug = {body}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A websocket client (plugin or browser).
pub(crate) struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub(crate) async fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    pub(crate) async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send frame");
    }

    pub(crate) async fn send_binary(&mut self, bytes: &[u8]) {
        self.ws
            .send(Message::Binary(bytes.to_vec().into()))
            .await
            .expect("send binary frame");
    }

    /// The next message of any kind except pings/pongs, or None when the connection ended.
    pub(crate) async fn next_message(&mut self) -> Option<Message> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message within the wait limit")?;
            match msg {
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(m) => return Some(m),
                Err(_) => return None,
            }
        }
    }

    /// The next text frame as JSON; panics on close or timeout.
    pub(crate) async fn recv_json(&mut self) -> Value {
        match self.next_message().await {
            Some(Message::Text(t)) => serde_json::from_str(t.as_str()).expect("JSON frame"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Skips frames until one of `kind` arrives.
    pub(crate) async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let v = self.recv_json().await;
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// Waits for the close frame and returns its code (None if the connection just dropped).
    pub(crate) async fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.next_message().await {
                Some(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Some(_) => continue,
                None => return None,
            }
        }
    }

    /// Whether nothing but pings arrives within `d`.
    pub(crate) async fn silent_for(&mut self, d: Duration) -> bool {
        loop {
            match tokio::time::timeout(d, self.ws.next()).await {
                Err(_) => return true,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(_) => return false,
            }
        }
    }
}

/// A complete telemetry frame as the real plugin sends it (several numbers as strings).
pub(crate) fn telemetry(name: &str, session: &str, kills: i64) -> Value {
    serde_json::json!({
        "type": "telemetry",
        "character_name": name,
        "char_tag": "guild",
        "session_id": session,
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "ew": "33.6",
        "ns": 42.1,
        "z": 12.0,
        "kills": kills,
        "kills_per_hour": "120",
        "onlinetime": "00.01:02:03",
        "deaths": "1",
        "total_deaths": "7",
        "rares_found": 0,
        "prismatic_taper_count": "33",
        "vt_state": "Combat",
        "mem_mb": 512.0,
        "cpu_pct": 3.5,
        "mem_handles": 1200,
        "latency_ms": 40
    })
}

/// Writes a telemetry frame straight to the store, behind the tracker's back, counting `kills`.
pub(crate) async fn store_telemetry(store: &Store, key: &str, frame: &Value, kills: i64) {
    let dereth_tracker::protocol::PluginFrame::Telemetry(row) =
        dereth_tracker::protocol::parse_plugin_frame(&frame.to_string()).expect("frame")
    else {
        panic!("not a telemetry frame: {frame}")
    };
    let event = dereth_tracker::store::Event::Telemetry {
        row,
        kills_delta: kills,
        kills_baseline: kills,
    };
    store.write_batch(key, &[event]).await.expect("write");
}

pub(crate) fn spawn_frame(name: &str, mob: &str) -> Value {
    serde_json::json!({
        "type": "spawn", "character_name": name, "mob": mob,
        "timestamp": chrono::Utc::now().to_rfc3339(), "ew": 10.5, "ns": "-20.25", "z": 3
    })
}

pub(crate) fn rare_frame(name: &str, item: &str) -> Value {
    serde_json::json!({
        "type": "rare", "character_name": name, "name": item,
        "timestamp": chrono::Utc::now().to_rfc3339(), "ew": 1.0, "ns": 2.0, "z": 3.0
    })
}

/// Blocks the writer: a PostgreSQL table lock, or an SQLite write transaction. Dropping the guard
/// (or calling `release`) lets it through.
pub(crate) enum Block {
    Pg(sqlx::Transaction<'static, sqlx::Postgres>, sqlx::PgPool),
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>, sqlx::SqlitePool),
}

pub(crate) async fn block_writes(db: &TestDb) -> Block {
    match db.backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.expect("pg");
            let mut tx = pool.begin().await.expect("begin");
            sqlx::query("LOCK TABLE telemetry_events IN ACCESS EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .expect("lock");
            Block::Pg(tx, pool)
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.expect("sqlite");
            let mut conn = pool.acquire().await.expect("conn");
            sqlx::query("BEGIN EXCLUSIVE")
                .execute(&mut *conn)
                .await
                .expect("lock");
            Block::Sqlite(conn, pool)
        }
    }
}

impl Block {
    pub(crate) async fn release(self) {
        match self {
            Block::Pg(tx, pool) => {
                tx.rollback().await.expect("unlock");
                pool.close().await;
            }
            Block::Sqlite(mut conn, pool) => {
                sqlx::query("ROLLBACK")
                    .execute(&mut *conn)
                    .await
                    .expect("unlock");
                drop(conn);
                pool.close().await;
            }
        }
    }
}
