//! The operator's alerting (issue 27): the Prometheus rules and Grafana dashboard in `deploy/`
//! pass `promtool` (Debian's `prometheus` package; the test script installs it), their unit
//! tests pass, a real scrape of `/metrics` passes `promtool check metrics`, and every metric
//! the rules and the dashboard read is one the tracker exports.

use crate::common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Backend, TestApp, in_ci, telemetry};

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

/// `promtool`, or None (a failure under CI) when it is not installed.
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("promtool");
    }
    assert!(
        !in_ci(),
        "promtool is missing (apt install prometheus; the test script does)"
    );
    eprintln!("skipping: promtool is not installed (apt install prometheus)");
    None
}

fn run(args: &[&str], input: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    if let Some(text) = input
        && let Some(mut stdin) = child.stdin.take()
    {
        stdin.write_all(text.as_bytes()).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool ends");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every `dereth_...` metric name in `text` (suffixes of histograms folded onto their family).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("dereth_") {
        // Inside a longer word (a job or file name) it is not a metric.
        if i > 0 && text.as_bytes()[i - 1].is_ascii_alphanumeric() {
            continue;
        }
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        let family = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name)
            .to_owned();
        out.insert(family);
    }
    out
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let Some(tool) = promtool() else { return };
    let rules = deploy("prometheus/dereth-tracker.rules.yml");
    let (ok, out) = run(
        &["check", "rules", rules.to_str().expect("utf-8 path")],
        None,
    );
    assert!(ok, "{tool} check rules: {out}");
    assert!(out.contains("SUCCESS"), "{out}");
    let tests = deploy("prometheus/dereth-tracker.rules.test.yml");
    let (ok, out) = run(
        &["test", "rules", tests.to_str().expect("utf-8 path")],
        None,
    );
    assert!(ok, "{tool} test rules: {out}");
    let config = deploy("prometheus/prometheus.yml");
    let (ok, out) = run(
        // The token file is the operator's: only the syntax (and the rule files) are checked.
        &[
            "check",
            "config",
            "--syntax-only",
            config.to_str().expect("utf-8 path"),
        ],
        None,
    );
    assert!(ok, "{tool} check config: {out}");
}

#[tokio::test]
async fn a_live_scrape_passes_promtool_and_has_every_metric_the_rules_and_dashboard_read() {
    let Some(_) = promtool() else { return };
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    // Some of everything: a plugin's telemetry, a map, a request.
    let mut plugin = app.plugin().await;
    plugin.send_json(&telemetry("Scraped", "s1", 3)).await;
    let (_map, _) = app.browser().await;
    app.wait_for_rows(1, 0, 0).await;
    let _ = app.get("/live").await;
    let scrape = reqwest::get(app.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let (ok, out) = run(&["check", "metrics"], Some(&scrape));
    assert!(ok, "promtool check metrics: {out}\n{scrape}");
    assert!(
        scrape.lines().any(|l| l == "dereth_healthy 1"),
        "a healthy tracker says so: {scrape}"
    );
    let exported = metric_names(&scrape);
    for file in [
        "prometheus/dereth-tracker.rules.yml",
        "grafana/dereth-tracker.json",
    ] {
        let text = std::fs::read_to_string(deploy(file)).expect("deploy file");
        let used = metric_names(&text);
        assert!(!used.is_empty(), "{file} reads tracker metrics");
        let missing: Vec<&String> = used.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} reads metrics the tracker does not export: {missing:?}"
        );
    }
    // The dashboard is JSON Grafana can import: panels with targets.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/dereth-tracker.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "{} panels", panels.len());
    for p in panels {
        assert!(
            p["targets"].as_array().is_some_and(|t| !t.is_empty()),
            "panel {} has queries",
            p["title"]
        );
    }
}
