//! The live map in a real headless Chromium against a real tracker: markers, list, sorting and
//! search, escaped chat, commands from the UI to a plugin, and recovery after a server restart.

use crate::common;

use std::time::Duration;

use crate::chrome::{Chrome, chromedriver_path};
use common::{Backend, TestApp, WAIT, telemetry};
use dereth_tracker::config::{Role, UserAction};
use dereth_tracker::manage;
use serde_json::{Value, json};

pub(crate) async fn chrome() -> Option<Chrome> {
    if chromedriver_path().is_none() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true but chromedriver is missing: install chromium and chromium-driver"
        );
        eprintln!("SKIPPED (browser): chromedriver is not installed");
        return None;
    }
    Some(Chrome::start(1280, 800).await.expect("start Chromium"))
}

/// Chromium the size of a phone (390 x 844); `None` when skipped (a failure under CI).
pub(crate) async fn phone() -> Option<Chrome> {
    if chromedriver_path().is_none() {
        let _ = chrome().await;
        return None;
    }
    Some(Chrome::start(390, 844).await.expect("start Chromium"))
}

/// Creates the account `name` of `role` and waits until the tracker has noticed it (reads are
/// closed from then on).
pub(crate) async fn with_account(app: &TestApp, name: &str, role: Role) {
    account(app, name, role).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.get("/me").await.1["accounts_exist"] != true {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the account was never noticed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A browser on the map of a fresh SQLite-backed tracker, connected; `None` when skipped.
pub(crate) async fn map_page() -> Option<(Chrome, TestApp)> {
    Some(on_a_fresh_map(chrome().await?).await)
}

/// The same at a phone's size (390 x 844).
pub(crate) async fn phone_page() -> Option<(Chrome, TestApp)> {
    Some(on_a_fresh_map(phone().await?).await)
}

/// `chrome` on the map of a fresh SQLite-backed tracker, connected.
async fn on_a_fresh_map(chrome: Chrome) -> (Chrome, TestApp) {
    let app = TestApp::spawn(Backend::Sqlite)
        .await
        .expect("sqlite always runs");
    open(&app, &chrome).await;
    (chrome, app)
}

/// Waits until the character list shows `name`.
pub(crate) async fn listed(chrome: &Chrome, name: &str) {
    chrome
        .wait_for(
            &format!("return document.querySelector('#players li[data-name=\"{name}\"]') !== null"),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{name} is listed: {e}"));
}

pub(crate) async fn open(app: &TestApp, chrome: &Chrome) {
    chrome
        .client
        .goto(&app.url("/"))
        .await
        .expect("open the map");
    chrome
        .wait_for(
            "return document.getElementById('status').dataset.state === 'open'",
            WAIT,
        )
        .await
        .expect("the page connects");
}

pub(crate) fn at(name: &str, ew: f64, ns: f64, kills: i64) -> Value {
    let mut t = telemetry(name, "s", kills);
    t["ew"] = json!(ew);
    t["ns"] = json!(ns);
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_character_appears_at_its_place_on_the_map_and_in_the_list() {
    let Some((chrome, app)) = map_page().await else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&at("Holt Walker", 33.6, 42.1, 5)).await;

    chrome
        .wait_for(
            "return window.__dereth.players().some(p => p.name === 'Holt Walker')",
            WAIT,
        )
        .await
        .expect("marker");
    listed(&chrome, "Holt Walker").await;
    // The marker is drawn where Holtburg's coordinates project: read the canvas pixel there and
    // compare it with the character's colour.
    let check = chrome
        .wait_for(
            r#"
            const p = window.__dereth.players().find(p => p.name === 'Holt Walker');
            if (Math.abs(p.x - 33.6) > 1e-9 || Math.abs(p.y - 42.1) > 1e-9) return false;
            const s = window.__dereth.project(33.6, 42.1);
            const canvas = document.getElementById('map');
            const dpr = canvas.width / canvas.clientWidth;
            const px = canvas.getContext('2d')
                .getImageData(Math.round(s.x * dpr), Math.round(s.y * dpr), 1, 1).data;
            const probe = document.createElement('span');
            probe.style.color = p.color;
            document.body.append(probe);
            const want = getComputedStyle(probe).color.match(/\d+/g).map(Number);
            probe.remove();
            const close = [0, 1, 2].every(i => Math.abs(px[i] - want[i]) <= 12);
            return close ? {pixel: Array.from(px).slice(0, 3), want} : false;
            "#,
            WAIT,
        )
        .await
        .expect("the marker's colour is at the projected position");
    assert!(check["pixel"].is_array());
    let cursor_text = chrome
        .js("const s = window.__dereth.project(33.6, 42.1); \
             const c = document.getElementById('map'); \
             c.dispatchEvent(new PointerEvent('pointermove', {clientX: c.getBoundingClientRect().left + s.x, clientY: c.getBoundingClientRect().top + s.y, bubbles: true})); \
             return document.getElementById('cursor').textContent;")
        .await
        .expect("cursor");
    assert_eq!(cursor_text, "42.1N, 33.6E");
    chrome.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_sorts_and_searches() {
    let Some((chrome, app)) = map_page().await else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&at("Alpha", 0.0, 0.0, 5)).await;
    plugin.send_json(&at("Bravo", 1.0, 1.0, 50)).await;
    let mut charlie = at("Charlie", 2.0, 2.0, 20);
    charlie["char_tag"] = json!("Rangers");
    plugin.send_json(&charlie).await;
    let names = "return Array.from(document.querySelectorAll('#players li')).map(li => li.dataset.name).join(',')";
    chrome
        .wait_for(&format!("{names} === 'Alpha,Bravo,Charlie'"), WAIT)
        .await
        .expect("sorted by name");
    chrome
        .js("const s = document.getElementById('sort'); s.value = 'kills'; s.dispatchEvent(new Event('change'));")
        .await
        .expect("sort");
    chrome
        .wait_for(&format!("{names} === 'Bravo,Charlie,Alpha'"), WAIT)
        .await
        .expect("sorted by kills");
    let search = chrome
        .client
        .find(fantoccini::Locator::Id("search"))
        .await
        .expect("search box");
    search.send_keys("ranger").await.expect("type");
    chrome
        .wait_for(&format!("{names} === 'Charlie'"), WAIT)
        .await
        .expect("search by tag");
    chrome.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_lines_are_shown_escaped() {
    let Some((chrome, app)) = map_page().await else {
        return;
    };
    let mut plugin = app.plugin().await;
    let hostile = r#"<img src=x onerror="window.__pwned=1"><b>bold</b>"#;
    plugin
        .send_json(&json!({"type": "chat", "character_name": "Talker", "text": hostile}))
        .await;
    let shown = chrome
        .wait_for(
            "const t = document.querySelector('#chat-log li .text'); return t && t.textContent",
            WAIT,
        )
        .await
        .expect("chat line");
    assert_eq!(shown, hostile, "the text is shown as typed");
    let injected = chrome
        .js("return document.querySelectorAll('#chat-log img, #chat-log b').length + (window.__pwned ? 100 : 0)")
        .await
        .expect("inspect");
    assert_eq!(injected, json!(0), "no markup was interpreted");
    chrome.close().await;
}

/// Creates an account as `dereth-tracker user add` does (the password on standard input).
pub(crate) async fn account(app: &TestApp, name: &str, role: Role) {
    let mut input = std::io::Cursor::new(format!("{name}-password-123\n").into_bytes());
    let source = manage::PasswordSource {
        input: &mut input,
        interactive: false,
    };
    let action = UserAction::Add {
        name: name.to_owned(),
        role,
    };
    manage::user(&app.store, &action, source)
        .await
        .expect("user add");
}

/// Signs in through the page's sign-in dialog; returns once the map is live again.
pub(crate) async fn sign_in(chrome: &Chrome, app: &TestApp, name: &str) {
    chrome
        .client
        .goto(&app.url("/"))
        .await
        .expect("open the map");
    chrome
        .wait_for("return document.getElementById('login').open", WAIT)
        .await
        .expect("the sign-in dialog shows");
    let field = |id: &'static str| chrome.client.find(fantoccini::Locator::Id(id));
    field("login-name")
        .await
        .expect("name field")
        .send_keys(name)
        .await
        .expect("type the name");
    field("login-password")
        .await
        .expect("password field")
        .send_keys(&format!("{name}-password-123\n"))
        .await
        .expect("type the password");
    chrome
        .wait_for(
            &format!(
                "return document.getElementById('status').dataset.state === 'open' \
                 && window.__dereth.me().name === '{name}'"
            ),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{name} signed in: {e}"));
}

/// Sends a command frame over a socket of the page's own (carrying its cookie) and returns the
/// result's status: what the server answers whatever the page shows.
async fn command_from_page(chrome: &Chrome, name: &str, command: &str) -> String {
    chrome
        .js(&format!(
            "const ws = new WebSocket(`ws://${{location.host}}/ws/live`); \
             window.__probe = {{ status: null, closed: null }}; \
             ws.onmessage = (e) => {{ const f = JSON.parse(e.data); \
               if (f.type === 'snapshot') ws.send(JSON.stringify({{type: 'command', player_name: '{name}', command: '{command}'}})); \
               if (f.type === 'command_result') window.__probe.status = f.status; }}; \
             ws.onclose = (e) => {{ window.__probe.closed = e.code; }}; \
             window.__probeSocket = ws; return true;"
        ))
        .await
        .expect("probe socket");
    chrome
        .wait_for("return window.__probe.status", WAIT)
        .await
        .expect("a command result")
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Issue 23 in the browser: a tracker with accounts shows its sign-in page; a viewer sees the
/// map but no command box, and the server refuses its command frames; signing out closes the
/// sockets; a commander commands from the command box; an admin reads both in the audit trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_in_the_browser_viewer_commander_admin() {
    let Some(chrome) = chrome().await else {
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite)
        .await
        .expect("sqlite always runs");
    for (name, role) in [
        ("vera", Role::Viewer),
        ("cole", Role::Commander),
        ("ada", Role::Admin),
    ] {
        account(&app, name, role).await;
    }
    // The tracker notices the accounts within a second; reads are closed from then on.
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.get("/me").await.1["accounts_exist"] != true {
        assert!(
            tokio::time::Instant::now() < deadline,
            "accounts never noticed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut plugin = app.plugin().await;
    plugin.send_json(&at("Obedient", 10.0, 10.0, 1)).await;

    // The viewer: the map and the list, no command box; the server refuses its commands.
    sign_in(&chrome, &app, "vera").await;
    listed(&chrome, "Obedient").await;
    let hidden = chrome
        .js("return document.getElementById('command-form').hidden")
        .await
        .expect("js");
    assert_eq!(hidden, json!(true), "a viewer has no command box");
    assert_eq!(
        command_from_page(&chrome, "Obedient", "/quit").await,
        "unauthorized"
    );
    assert!(plugin.silent_for(Duration::from_millis(300)).await);

    // Signing out ends the session: the map's socket and the probe close, the dialog returns.
    chrome
        .js("fetch('/logout', {method: 'POST'}); return true;")
        .await
        .expect("sign out");
    let closed = chrome
        .wait_for(
            "return window.__probe.closed !== null \
             && document.getElementById('status').dataset.state === 'signed-out' \
             && document.getElementById('login').open && window.__probe.closed",
            WAIT,
        )
        .await
        .expect("signed out everywhere");
    assert_eq!(closed, json!(1008), "closed by the server");

    // The commander: the command box, and a command typed there reaches the plugin.
    sign_in(&chrome, &app, "cole").await;
    listed(&chrome, "Obedient").await;
    chrome
        .client
        .find(fantoccini::Locator::Css(
            "#players li[data-name=\"Obedient\"]",
        ))
        .await
        .expect("entry")
        .click()
        .await
        .expect("select");
    chrome
        .client
        .find(fantoccini::Locator::Id("command"))
        .await
        .expect("input")
        .send_keys("/vt stop\n")
        .await
        .expect("type the command");
    let received = tokio::time::timeout(WAIT, plugin.recv_json())
        .await
        .expect("command");
    assert_eq!(
        received,
        json!({"player_name": "Obedient", "command": "/vt stop"})
    );
    let result = chrome
        .wait_for(
            "const r = document.getElementById('command-result'); return r.dataset.status === 'delivered' && r.textContent",
            WAIT,
        )
        .await
        .expect("result shown");
    assert!(result.as_str().unwrap_or_default().contains("/vt stop"));
    chrome
        .client
        .find(fantoccini::Locator::Id("sign-out"))
        .await
        .expect("sign-out button")
        .click()
        .await
        .expect("sign out");

    // The admin reads the audit trail in the accounts dialog.
    sign_in(&chrome, &app, "ada").await;
    chrome
        .client
        .find(fantoccini::Locator::Id("accounts-open"))
        .await
        .expect("accounts button")
        .click()
        .await
        .expect("open accounts");
    let rows = chrome
        .wait_for(
            "const rows = [...document.querySelectorAll('#audit-body tr')]; \
             return rows.length >= 2 && rows.map(r => [...r.children].slice(1).map(td => td.textContent).join('|'))",
            WAIT,
        )
        .await
        .expect("the audit trail");
    assert_eq!(
        rows,
        json!([
            "cole|Obedient|/vt stop|delivered",
            "vera|Obedient|/quit|unauthorized"
        ])
    );
    let accounts = chrome
        .js("return [...document.querySelectorAll('#accounts-body tr')].map(r => r.dataset.name)")
        .await
        .expect("accounts");
    assert_eq!(accounts, json!(["ada", "cole", "vera"]));
    chrome.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_rebuilds_after_a_server_restart() {
    let Some((chrome, app)) = map_page().await else {
        return;
    };
    let port = app.addr.port();
    let mut plugin = app.plugin().await;
    plugin.send_json(&at("Survivor", 5.0, 5.0, 1)).await;
    chrome
        .wait_for("return window.__dereth.players().length === 1", WAIT)
        .await
        .expect("shown");
    drop(plugin);

    let app = app
        .restart(|s| s.server.bind_addr = format!("127.0.0.1:{port}").parse().expect("addr"))
        .await;
    chrome
        .wait_for(
            "return document.getElementById('status').dataset.state !== 'open'",
            WAIT,
        )
        .await
        .ok();
    let mut plugin = app.plugin().await;
    plugin.send_json(&at("Survivor", 6.0, 6.0, 2)).await;
    plugin.send_json(&at("Newcomer", 7.0, 7.0, 1)).await;
    chrome
        .wait_for(
            "return document.getElementById('status').dataset.state === 'open' && \
             ['Survivor', 'Newcomer'].every(n => window.__dereth.players().some(p => p.name === n))",
            Duration::from_secs(40),
        )
        .await
        .expect("reconnected and rebuilt");
    chrome.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_panel_shows_vitals_and_sheet_and_a_portal_breaks_the_live_trail() {
    let Some((chrome, app)) = map_page().await else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&at("Vital Sign", 33.6, 42.1, 5)).await;
    listed(&chrome, "Vital Sign").await;
    plugin
        .send_json(&json!({"type": "vitals", "character_name": "Vital Sign",
            "health_percentage": "64", "stamina_percentage": 80, "mana_percentage": 12, "vitae": 95}))
        .await;
    plugin
        .send_json(
            &json!({"type": "character_stats", "character_name": "Vital Sign",
            "level": "187", "title": "Drudge Slayer", "allegiance": {"name": "Mosswart Guild"}}),
        )
        .await;
    chrome
        .js("window.__dereth.select('Vital Sign'); return true;")
        .await
        .expect("select");
    let panel = chrome
        .wait_for(
            r#"
            const d = document.getElementById('details');
            const health = d.querySelector('.vital.health');
            if (!health || !d.textContent.includes('187')) return false;
            return {health: health.getAttribute('aria-valuenow'),
                    mana: d.querySelector('.vital.mana').getAttribute('aria-valuenow'),
                    text: d.textContent};
            "#,
            WAIT,
        )
        .await
        .expect("vitals and sheet in the panel");
    assert_eq!(panel["health"], "64");
    assert_eq!(panel["mana"], "12");
    let text = panel["text"].as_str().unwrap_or_default();
    for needle in ["Drudge Slayer", "Mosswart Guild", "Vitae 95 %"] {
        assert!(text.contains(needle), "panel lacks {needle}: {text}");
    }

    // A portal, then a position across the map: the live trail breaks there and the panel
    // shows the portal in the character's timeline.
    plugin
        .send_json(&json!({"type": "portal", "character_name": "Vital Sign",
            "portal_name": "Rithwic Portal"}))
        .await;
    plugin.send_json(&at("Vital Sign", -50.0, 60.0, 6)).await;
    let breaks = chrome
        .wait_for(
            r#"
            const p = window.__dereth.players().find(p => p.name === 'Vital Sign');
            return p && p.trailBreaks === 1
                && document.getElementById('details').textContent.includes('Rithwic Portal')
                ? p.trailBreaks : false;
            "#,
            WAIT,
        )
        .await
        .expect("the trail breaks at the portal");
    assert_eq!(breaks, 1);
    chrome.close().await;
}

/// Telemetry for `name` at a place and a past time.
pub(crate) fn past(name: &str, ew: f64, ns: f64, secs_ago: i64) -> Value {
    let mut t = at(name, ew, ns, 1);
    t["timestamp"] = json!(
        (chrono::Utc::now() - chrono::Duration::seconds(secs_ago))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    t
}

/// Positions the page shows once every marker has finished gliding, by name.
async fn settled_positions(chrome: &Chrome, count: usize) -> Value {
    chrome
        .wait_for(
            &format!(
                "const ps = window.__dereth.players(); \
                 if (ps.length !== {count}) return false; \
                 const out = {{}}; \
                 for (const p of ps) out[p.name] = [Math.round(p.x * 100) / 100, Math.round(p.y * 100) / 100]; \
                 const again = window.__dereth.players(); \
                 return again.every(p => out[p.name][0] === Math.round(p.x * 100) / 100) \
                     && (window.__settled = (window.__settled || 0) + 1) > 8 ? out : false;"
            ),
            WAIT,
        )
        .await
        .expect("positions settle")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_shows_the_world_as_stored_at_an_instant() {
    let Some(chrome) = chrome().await else {
        return;
    };
    // History sent with the plugin's past timestamps, kept as sent (CLOCK_SKEW_SECS=0).
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.sessions.clock_skew_secs = 0)
        .await
        .expect("sqlite always runs");
    // Three characters walking for 10 minutes, a point a minute, ending 20 minutes ago.
    let mut plugin = app.plugin().await;
    for minute in 0..10 {
        let ago = 30 * 60 - minute * 60;
        for (i, name) in ["Replay One", "Replay Two", "Replay Three"]
            .iter()
            .enumerate()
        {
            let ew = 10.0 * i as f64 + minute as f64;
            plugin
                .send_json(&past(name, ew, -20.0 + minute as f64, ago))
                .await;
        }
    }
    app.wait_for_rows(30, 0, 0).await;
    let instant = (chrono::Utc::now() - chrono::Duration::seconds(25 * 60 - 30))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);

    // Opening a URL with `at` starts the replay there.
    chrome
        .client
        .goto(&app.url(&format!("/?at={instant}")))
        .await
        .expect("open the map");
    chrome
        .wait_for("return window.__dereth.replay.loadedAt() !== null", WAIT)
        .await
        .expect("the replay loads");
    let shown = settled_positions(&chrome, 3).await;
    let (status, world) = app
        .get(&format!("/world?at={}", instant.replace('+', "%2B")))
        .await;
    assert_eq!(status, 200);
    let stored = world["characters"].as_array().expect("characters");
    assert_eq!(stored.len(), 3);
    for c in stored {
        let name = c["character_name"].as_str().expect("name");
        assert_eq!(shown[name][0].as_f64(), c["ew"].as_f64(), "{name}: {shown}");
        assert_eq!(shown[name][1].as_f64(), c["ns"].as_f64(), "{name}: {shown}");
    }
    // Back to live: the live view again (the plugin is still connected, so its characters are
    // live at their latest points).
    chrome
        .client
        .find(fantoccini::Locator::Id("replay-live"))
        .await
        .expect("live button")
        .click()
        .await
        .expect("click");
    chrome
        .wait_for(
            "return !window.__dereth.replay.active() && !location.search.includes('at=') \
             && window.__dereth.players().some(p => p.name === 'Replay One' && Math.abs(p.x - 9) < 1e-6)",
            WAIT,
        )
        .await
        .expect("live again");
    // The replay controls are shown only while replaying (they cover the zoom buttons).
    let bar = chrome
        .js("const bar = document.getElementById('replay-bar'); \
             return [bar.hidden, getComputedStyle(bar).display]")
        .await
        .expect("replay bar");
    assert_eq!(
        bar,
        json!([true, "none"]),
        "the replay bar is gone in live view"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_is_in_the_url_and_restored_on_load() {
    let Some((chrome, app)) = map_page().await else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&at("Url Keeper", 12.0, -8.0, 3)).await;
    listed(&chrome, "Url Keeper").await;
    chrome
        .js("window.__dereth.select('Url Keeper'); document.getElementById('trails-toggle').click();")
        .await
        .expect("select");
    let search = chrome
        .wait_for(
            "return location.search.includes('sel=Url+Keeper') && location.search.includes('trails=1') \
             ? location.search : false",
            WAIT,
        )
        .await
        .expect("the URL follows the view");
    // A reload of that URL shows the same view.
    chrome
        .client
        .goto(&app.url(&format!("/{}", search.as_str().unwrap_or_default())))
        .await
        .expect("reload");
    let view = chrome
        .wait_for(
            "const v = window.__dereth.view(); return v.selected === 'Url Keeper' ? v : false",
            WAIT,
        )
        .await
        .expect("selection restored");
    assert_eq!(view["trails"], true);
    assert!(view["zoom"].as_f64().unwrap_or(0.0) >= 3.9, "{view}");
    // A centre and zoom without selection.
    chrome
        .client
        .goto(&app.url("/?cx=-40.5&cy=22.25&z=2.5"))
        .await
        .expect("open");
    let view = chrome
        .wait_for(
            "const v = window.__dereth.view(); return v.cx === -40.5 ? v : false",
            WAIT,
        )
        .await
        .expect("centre restored");
    assert_eq!(view["cy"], 22.25);
    assert_eq!(view["zoom"], 2.5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_backlog_is_there_after_a_reload_and_can_be_filtered() {
    let Some((chrome, app)) = map_page().await else {
        return;
    };
    let mut plugin = app.plugin().await;
    for (who, text) in [
        ("Chatter A", "hello there"),
        ("Chatter B", "need a portal"),
        ("Chatter A", "on my way"),
    ] {
        plugin
            .send_json(&json!({"type": "chat", "character_name": who, "text": text}))
            .await;
    }
    let count = "return document.querySelectorAll('#chat-log li:not(.system)').length";
    chrome
        .wait_for(&format!("{count} === 3"), WAIT)
        .await
        .expect("chat shown live");
    chrome.client.refresh().await.expect("reload");
    chrome
        .wait_for(&format!("{count} === 3"), WAIT)
        .await
        .expect("chat backlog after a reload");
    chrome
        .js(
            "const f = document.getElementById('chat-filter'); f.value = 'portal'; \
             f.dispatchEvent(new Event('input'));",
        )
        .await
        .expect("filter");
    let visible = chrome
        .wait_for(
            "const v = [...document.querySelectorAll('#chat-log li:not(.system)')].filter(li => !li.hidden); \
             return v.length === 1 ? v[0].textContent : false",
            WAIT,
        )
        .await
        .expect("one line matches");
    assert!(
        visible
            .as_str()
            .unwrap_or_default()
            .contains("need a portal")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jump_no_one_can_walk_breaks_the_trail_without_a_portal_frame() {
    let Some((chrome, app)) = map_page().await else {
        return;
    };
    chrome
        .js("document.getElementById('trails-toggle').click();")
        .await
        .expect("trails on");
    let mut plugin = app.plugin().await;
    // Walking a little, then 60 units away 2 seconds later (a recall), then walking again.
    let steps = [
        (10.0, 10.0, 8),
        (10.2, 10.1, 6),
        (70.0, -40.0, 4),
        (70.1, -40.2, 2),
    ];
    for (ew, ns, ago) in steps {
        plugin.send_json(&past("Recaller", ew, ns, ago)).await;
    }
    let segments = chrome
        .wait_for(
            "const s = window.__dereth.trailSegments('Recaller'); \
             return s && s.joined + s.broken === 3 ? s : false",
            WAIT,
        )
        .await
        .expect("trail of four points");
    assert_eq!(segments["broken"], 1, "{segments}");
    assert_eq!(segments["joined"], 2, "{segments}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_characters_in_one_place_get_labels_that_never_overlap() {
    let Some((chrome, app)) = map_page().await else {
        return;
    };
    let mut plugin = app.plugin().await;
    // Fifty characters within two map units of Holtburg, where town names are too.
    let mut plugins = Vec::new();
    for chunk in 0..2 {
        let mut p = app.plugin().await;
        for i in 0..25 {
            let n = chunk * 25 + i;
            let (ew, ns) = (33.0 + (n % 7) as f64 * 0.3, 42.0 + (n / 7) as f64 * 0.25);
            p.send_json(&at(&format!("Crowd {n:02}"), ew, ns, 1)).await;
        }
        plugins.push(p);
    }
    plugin.send_json(&at("Crowd Lead", 33.5, 42.5, 1)).await;
    chrome
        .wait_for("return window.__dereth.players().length === 51", WAIT)
        .await
        .expect("all shown");
    chrome
        .js("window.__dereth.select('Crowd Lead');")
        .await
        .expect("select");
    let placed = r#"
            const s = window.__dereth.labelStats();
            if (!s.boxes || s.drawn + s.hidden !== 51) return false;
            let overlaps = 0;
            for (let i = 0; i < s.boxes.length; i++) for (let j = i + 1; j < s.boxes.length; j++) {
                const a = s.boxes[i], b = s.boxes[j];
                if (a.x < b.x + b.w && a.x + a.w > b.x && a.y < b.y + b.h && a.y + a.h > b.y) overlaps++;
            }
            return { drawn: s.drawn, hidden: s.hidden, overlaps,
                     selectedLabelled: s.boxes.some(b => b.name === 'Crowd Lead') };
            "#;
    let before = chrome.wait_for(placed, WAIT).await.expect("labels placed");
    assert_eq!(before["overlaps"], 0, "{before}");
    assert_eq!(
        before["selectedLabelled"], true,
        "the selected name always gets a place: {before}"
    );
    // Zooming in makes room: more names, still none over another.
    for _ in 0..4 {
        chrome
            .js("document.getElementById('zoom-in').click();")
            .await
            .expect("zoom in");
    }
    let drawn_before = before["drawn"].as_u64().unwrap_or(0);
    let after = chrome
        .wait_for(
            &format!("const r = (() => {{ {placed} }})(); return r && r.drawn > {drawn_before} ? r : false"),
            WAIT,
        )
        .await
        .expect("more labels when zoomed in");
    assert_eq!(after["overlaps"], 0, "{after}");
    assert_eq!(after["selectedLabelled"], true, "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roster_lists_offline_characters_and_the_leaderboard() {
    let Some((chrome, app)) = map_page().await else {
        return;
    };
    // A character last seen two days ago, written straight to the store, and one live now.
    common::store_telemetry(
        &app.store,
        "roster-test",
        &past("Old Timer", 1.0, 1.0, 2 * 86_400),
        7,
    )
    .await;
    let mut plugin = app.plugin().await;
    plugin.send_json(&at("Live One", 5.0, 5.0, 3)).await;
    app.wait_for_rows(2, 0, 0).await;
    listed(&chrome, "Live One").await;
    chrome
        .js("document.getElementById('roster-open').click();")
        .await
        .expect("open the roster");
    let rows = chrome
        .wait_for(
            "const rows = [...document.querySelectorAll('#roster-body tr')].map(tr => \
               [...tr.children].map(td => td.textContent)); \
             return rows.length === 2 && document.querySelectorAll('#board li[data-name]').length >= 1 \
               ? rows : false",
            WAIT,
        )
        .await
        .expect("roster and leaderboard");
    let rows = rows.as_array().expect("rows");
    let live = rows.iter().find(|r| r[0] == "Live One").expect("live row");
    assert_eq!(live[2], "online");
    let old = rows
        .iter()
        .find(|r| r[0] == "Old Timer")
        .expect("offline row");
    assert_ne!(old[2], "online");
    assert_eq!(old[3], "7");
    // Choosing a character in the roster selects it on the map.
    chrome
        .js("document.querySelector('#roster-body tr[data-name=\"Live One\"]').click();")
        .await
        .expect("choose");
    chrome
        .wait_for(
            "return window.__dereth.view().selected === 'Live One' && !document.getElementById('roster').open",
            WAIT,
        )
        .await
        .expect("selected from the roster");
}
