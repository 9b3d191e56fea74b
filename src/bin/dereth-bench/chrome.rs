//! Headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`), for the
//! end-to-end tests and the frame-time benchmark.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use tokio::process::{Child, Command};

/// Where chromedriver and chromium are looked for.
pub(crate) fn chromedriver_path() -> Option<PathBuf> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn chromium_path() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/lib/chromium/chromium"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A chromedriver process and one browser session through it. Dropping it ends both.
pub(crate) struct Chrome {
    pub(crate) client: Client,
    driver: Child,
    profile: PathBuf,
}

impl Chrome {
    /// Starts chromedriver on a free loopback port and a headless Chromium window of the given
    /// size.
    pub(crate) async fn start(width: u32, height: u32) -> anyhow::Result<Self> {
        let driver_path = chromedriver_path().context("chromedriver is not installed")?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, which Chromium and its helpers join, so that all of them
            // can be ended together (see `Drop`).
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .context("starting chromedriver")?;
        let profile =
            std::env::temp_dir().join(format!("dereth-chrome-{}-{port}", std::process::id()));
        let mut chrome_options = json!({
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync",
                "--disable-dev-shm-usage", "--hide-scrollbars",
                format!("--window-size={width},{height}"),
                format!("--user-data-dir={}", profile.display()),
            ]
        });
        if let Some(binary) = chromium_path() {
            chrome_options["binary"] = json!(binary.display().to_string());
        }
        // Desktop windows cannot be narrower than 500 px: emulate a phone for small widths.
        if width < 500 {
            chrome_options["mobileEmulation"] = json!({
                "deviceMetrics": {"width": width, "height": height, "pixelRatio": 2.0, "touch": true}
            });
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), chrome_options);
        let url = format!("http://127.0.0.1:{port}");
        let mut last_err = None;
        for _ in 0..100 {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Ok(Self {
                        client,
                        driver,
                        profile,
                    });
                }
                Err(err) => {
                    last_err = Some(err);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        anyhow::bail!("cannot start a Chromium session: {last_err:?}")
    }

    /// Runs a script in the page and returns its result.
    pub(crate) async fn js(&self, script: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self.client.execute(script, vec![]).await?)
    }

    /// Polls `script` until it returns something truthy (bounded by `timeout`).
    pub(crate) async fn wait_for(
        &self,
        script: &str,
        timeout: Duration,
    ) -> anyhow::Result<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let v = self.js(script).await?;
            let truthy = !matches!(v, serde_json::Value::Null | serde_json::Value::Bool(false))
                && v != json!(0)
                && v != json!("");
            if truthy {
                return Ok(v);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for: {script} (last: {v})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG screenshot of the window.
    pub(crate) async fn screenshot(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let png = self.client.screenshot().await?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png)?;
        Ok(())
    }

    /// Ends the browser session, chromedriver and every Chromium process.
    pub(crate) async fn close(self) {
        let _ = self.client.clone().close().await;
        // `Drop` ends the processes and removes the profile.
    }
}

impl Drop for Chrome {
    /// Ends chromedriver's whole process group: killing chromedriver alone (as a test that
    /// panics or simply drops its browser would) leaves Chromium's renderers running, and they
    /// keep using CPU.
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
