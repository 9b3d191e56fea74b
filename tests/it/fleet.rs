//! The guild leader's console (issue 26), second part, in headless Chromium against a real
//! tracker: the fleet board, saved groups, command history, the phone's board and log tabs,
//! replay's timeline marks, the guild-tag legend and the details panel's wording.

use crate::browser::{at, listed, map_page, open, phone_page, sign_in, with_account};
use crate::chrome::Chrome;
use crate::common;

use common::{Backend, TestApp, WAIT};
use dereth_tracker::config::Role;
use dereth_tracker::store::owner_of_account;
use serde_json::{Value, json};

fn vitals(name: &str, health: f64, stamina: f64, mana: f64) -> Value {
    json!({"type": "vitals", "character_name": name, "health_percentage": health,
        "stamina_percentage": stamina, "mana_percentage": mana})
}

fn with(name: &str, kph: i64, vt_state: &str) -> Value {
    let mut frame = at(name, 10.0, 10.0, 5);
    frame["kills_per_hour"] = json!(kph.to_string());
    frame["vt_state"] = json!(vt_state);
    frame
}

/// The board's counts, filter by filter.
async fn counts(chrome: &Chrome) -> Value {
    chrome
        .js(
            "return Object.fromEntries([...document.querySelectorAll('#fleet-counts button')] \
             .map(b => [b.dataset.filter, Number(b.querySelector('b').textContent)]))",
        )
        .await
        .expect("counts")
}

async fn board_rows(chrome: &Chrome) -> Value {
    chrome
        .js("return [...document.querySelectorAll('#fleet-rows tr')].map(tr => tr.dataset.name)")
        .await
        .expect("rows")
}

async fn click(chrome: &Chrome, css: &str) {
    chrome
        .js(&format!(
            "document.querySelector('{css}').click(); return true"
        ))
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// The fleet board counts characters by state and low vitals, each count a filter; its table
/// sorts by any column, shows vitals as bars and keeps its rows (updated in place); a click
/// selects. The details panel names the plugin's rate and the stored hourly kills apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_board_counts_filters_sorts_and_updates_in_place() {
    let Some((chrome, app)) = map_page().await else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&with("Fine One", 300, "Combat")).await;
    plugin.send_json(&with("Idle One", 0, "Idle")).await;
    plugin.send_json(&with("Dead One", 50, "Dead")).await;
    plugin.send_json(&with("Tired One", 120, "Combat")).await;
    plugin.send_json(&with("Hurt One", 80, "Combat")).await;
    plugin
        .send_json(&vitals("Tired One", 90.0, 20.0, 95.0))
        .await;
    plugin
        .send_json(&vitals("Hurt One", 15.0, 90.0, 95.0))
        .await;
    let mut leaving = app.plugin().await;
    leaving.send_json(&with("Gone One", 10, "Combat")).await;
    listed(&chrome, "Gone One").await;
    drop(leaving);
    chrome
        .wait_for(
            "return document.querySelector('#players li[data-name=\"Gone One\"]').classList.contains('offline')",
            WAIT,
        )
        .await
        .expect("offline");
    click(&chrome, "#fleet-open").await;
    let want = json!({"all": 6, "active": 3, "idle": 1, "dead": 1, "stuck": 0, "low-health": 1,
        "low-stamina": 1, "low-mana": 0, "offline": 1});
    let got = chrome
        .wait_for(
            &format!(
                "const c = Object.fromEntries([...document.querySelectorAll('#fleet-counts button')] \
                 .map(b => [b.dataset.filter, Number(b.querySelector('b').textContent)])); \
                 return Object.entries({want}).every(([k, v]) => c[k] === v) ? c : false"
            ),
            WAIT,
        )
        .await;
    let Ok(got) = got else {
        panic!("counts: {} instead of {want}", counts(&chrome).await);
    };
    assert_eq!(got, want);
    // Each count is a filter.
    click(&chrome, "#fleet-counts button[data-filter=dead]").await;
    assert_eq!(board_rows(&chrome).await, json!(["Dead One"]));
    click(&chrome, "#fleet-counts button[data-filter=low-stamina]").await;
    assert_eq!(board_rows(&chrome).await, json!(["Tired One"]));
    click(&chrome, "#fleet-counts button[data-filter=offline]").await;
    assert_eq!(board_rows(&chrome).await, json!(["Gone One"]));
    let offline = chrome
        .js("return document.querySelector('#fleet-rows tr[data-name=\"Gone One\"] td:last-child').textContent")
        .await
        .expect("last seen");
    assert!(
        offline.as_str().is_some_and(|t| t.starts_with("offline")),
        "{offline}"
    );
    click(&chrome, "#fleet-counts button[data-filter=all]").await;
    // Sorted by kills per hour, highest first.
    click(&chrome, "#fleet-table button[data-sort=kph]").await;
    assert_eq!(
        board_rows(&chrome).await,
        json!([
            "Fine One",
            "Tired One",
            "Hurt One",
            "Dead One",
            "Gone One",
            "Idle One"
        ])
    );
    let sorted = chrome
        .js("return document.querySelector('#fleet-table th[aria-sort]').textContent")
        .await
        .expect("aria-sort");
    assert!(
        sorted.as_str().is_some_and(|t| t.contains("Kills/h")),
        "{sorted}"
    );
    // Vitals as bars, the low ones marked.
    let stamina = chrome
        .js("const b = document.querySelector('#fleet-rows tr[data-name=\"Tired One\"] .bar.stamina'); \
             return { value: b.dataset.value, low: b.classList.contains('low'), \
             width: b.firstElementChild.style.width, now: b.getAttribute('aria-valuenow') }")
        .await
        .expect("bar");
    assert_eq!(
        stamina,
        json!({"value": "20", "low": true, "width": "20%", "now": "20"})
    );
    // Updated in place: the same row element, new numbers, new order.
    chrome
        .js("window.__row = document.querySelector('#fleet-rows tr[data-name=\"Idle One\"]'); return true")
        .await
        .expect("keep the row");
    plugin.send_json(&with("Idle One", 999, "Combat")).await;
    chrome
        .wait_for(
            "const tr = document.querySelector('#fleet-rows tr[data-name=\"Idle One\"]'); \
             return tr.children[5].textContent === '999/h' && tr === window.__row \
               && document.querySelector('#fleet-rows tr').dataset.name === 'Idle One'",
            WAIT,
        )
        .await
        .expect("the same row, updated and moved to the top");
    // A click selects the character and closes the board.
    click(&chrome, "#fleet-rows tr[data-name=\"Hurt One\"] td").await;
    let view = chrome
        .js("return { selected: window.__dereth.view().selected, open: document.getElementById('fleet').open }")
        .await
        .expect("view");
    assert_eq!(view, json!({"selected": "Hurt One", "open": false}));
    // The details name what each kills-per-hour figure is.
    let details = chrome
        .wait_for(
            "const d = document.getElementById('details'); const p = d.querySelector('.history p'); \
             return p && p.textContent !== 'loading…' ? d.textContent : false",
            WAIT,
        )
        .await
        .expect("details");
    let text = details.as_str().unwrap_or_default();
    assert!(text.contains("Kills/h (session)"), "{text}");
    assert!(text.contains("kills stored"), "{text}");
    assert!(!text.contains("best"), "{text}");
    assert!(!text.contains("over 0 sessions"), "{text}");
}

/// Saved groups follow the account: picked on the board, saved, found again after a reload,
/// chosen, and commanded at once; each character's command history shows the command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_group_is_commanded_after_a_reload_and_its_history_shown() {
    let Some(chrome) = crate::browser::chrome().await else {
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite)
        .await
        .expect("sqlite always runs");
    with_account(&app, "lead", Role::Commander).await;
    let mut plugin = app.plugin().await;
    let names: Vec<String> = (0..6).map(|i| format!("Healer {i}")).collect();
    for (i, name) in names.iter().enumerate() {
        plugin.send_json(&at(name, i as f64, 5.0, 1)).await;
    }
    sign_in(&chrome, &app, "lead").await;
    listed(&chrome, "Healer 5").await;
    click(&chrome, "#fleet-open").await;
    chrome
        .wait_for(
            "return document.querySelectorAll('#fleet-rows tr').length === 6 \
               && !document.getElementById('fleet-group').disabled",
            WAIT,
        )
        .await
        .expect("the board and its groups");
    chrome
        .js("for (const n of ['Healer 1', 'Healer 3', 'Healer 4']) \
               document.querySelector(`#fleet-rows tr[data-name=\"${n}\"] td`) \
                 .dispatchEvent(new MouseEvent('click', { bubbles: true, ctrlKey: true })); \
             document.getElementById('fleet-group-name').value = 'healers'; \
             document.getElementById('fleet-save').click(); return true")
        .await
        .expect("pick and save");
    chrome
        .wait_for(
            "return document.getElementById('fleet-message').textContent === 'saved healers (3 characters)'",
            WAIT,
        )
        .await
        .expect("saved");
    let saved = app
        .store
        .groups(&owner_of_account("lead"))
        .await
        .expect("groups");
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].characters, ["Healer 1", "Healer 3", "Healer 4"]);

    // After a reload: choose the group, send one command.
    open(&app, &chrome).await;
    listed(&chrome, "Healer 5").await;
    click(&chrome, "#fleet-open").await;
    chrome
        .wait_for(
            "return [...document.getElementById('fleet-group').options].some(o => o.value === 'healers')",
            WAIT,
        )
        .await
        .expect("the group is there after a reload");
    chrome
        .js(
            "const s = document.getElementById('fleet-group'); s.value = 'healers'; \
             s.dispatchEvent(new Event('change')); return true",
        )
        .await
        .expect("choose the group");
    let target = chrome
        .js(
            "return { target: document.getElementById('command-target').textContent, \
               open: document.getElementById('fleet').open }",
        )
        .await
        .expect("target");
    assert_eq!(
        target,
        json!({"target": "Command 3 characters:", "open": false})
    );
    chrome
        .js("document.getElementById('command').value = '/vt stop'; \
             document.getElementById('command-form').requestSubmit(); return true")
        .await
        .expect("send");
    let results = chrome
        .wait_for(
            "const r = [...document.querySelectorAll('#broadcast-results li')]; \
             return r.length === 3 ? r.map(li => [li.dataset.name, li.dataset.status]) : false",
            WAIT,
        )
        .await
        .expect("three results");
    assert_eq!(
        results,
        json!([
            ["Healer 1", "delivered"],
            ["Healer 3", "delivered"],
            ["Healer 4", "delivered"]
        ])
    );
    for _ in 0..3 {
        assert_eq!(plugin.recv_json().await["command"], "/vt stop");
    }
    // The character's command history, in its details.
    chrome
        .js("window.__dereth.select('Healer 3'); return true")
        .await
        .expect("select");
    let history = chrome
        .wait_for(
            "const li = document.querySelector('#details .command-history li'); \
             return li ? li.textContent : false",
            WAIT,
        )
        .await
        .expect("command history");
    let line = history.as_str().unwrap_or_default();
    assert!(
        line.contains("/vt stop") && line.contains("by lead") && line.contains("delivered"),
        "{line}"
    );
}

/// On a phone the fleet board and the event log are tabs of the bottom sheet (and the toolbar's
/// Fleet opens that tab, not a dialog).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_phone_the_board_and_the_log_are_tabs_of_the_sheet() {
    let Some((chrome, app)) = phone_page().await else {
        return;
    };
    let mut plugin = app.plugin().await;
    for i in 0..3 {
        plugin
            .send_json(&at(&format!("Pocket {i}"), i as f64, 1.0, 1))
            .await;
    }
    listed(&chrome, "Pocket 2").await;
    click(&chrome, "#sheet [role=tab][data-tab=fleet]").await;
    let board = chrome
        .wait_for(
            "const body = document.querySelector('#sheet-fleet #fleet-body'); \
             return body && body.offsetHeight > 0 && document.querySelectorAll('#fleet-rows tr').length === 3 \
               ? { dialog: document.getElementById('fleet').open, \
                   list: document.getElementById('players').offsetHeight } : false",
            WAIT,
        )
        .await
        .expect("the board in the sheet");
    assert_eq!(board, json!({"dialog": false, "list": 0}));
    click(&chrome, "#sheet [role=tab][data-tab=events]").await;
    chrome
        .wait_for(
            "const body = document.querySelector('#sheet-events #events-body'); \
             return body && body.offsetHeight > 0 \
               && document.querySelectorAll('#events-list li[data-kind=connect]').length === 3",
            WAIT,
        )
        .await
        .expect("the log in the sheet, with the three connections");
    // The toolbar's Fleet (in the menu) opens the tab.
    click(&chrome, "#menu-toggle").await;
    click(&chrome, "#fleet-open").await;
    let shown = chrome
        .js(
            "return { tab: document.getElementById('sheet').dataset.tab, \
               dialog: document.getElementById('fleet').open }",
        )
        .await
        .expect("tab");
    assert_eq!(shown, json!({"tab": "fleet", "dialog": false}));
}

/// Replay's timeline marks the day's events (a click replays from just before one); in
/// guild-tag colours the legend names each tag in its colour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_marks_events_and_the_legend_names_guild_tags() {
    let Some((chrome, app)) = map_page().await else {
        return;
    };
    let mut plugin = app.plugin().await;
    let mut alive = at("Marked", 10.0, 10.0, 1);
    alive["deaths"] = json!("0");
    alive["char_tag"] = json!("AAA");
    plugin.send_json(&alive).await;
    let mut dead = alive.clone();
    dead["deaths"] = json!("1");
    plugin.send_json(&dead).await;
    let mut other = at("Tagged", 20.0, 20.0, 1);
    other["char_tag"] = json!("AAA");
    plugin.send_json(&other).await;
    let mut third = at("Other Tag", 30.0, 30.0, 1);
    third["char_tag"] = json!("BBB");
    plugin.send_json(&third).await;
    listed(&chrome, "Other Tag").await;
    // The death is in the log before the replay asks for it.
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.get("/log?kind=death").await.1["entries"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(tokio::time::Instant::now() < deadline, "death logged");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_, log) = app.get("/log?kind=death").await;
    let died = chrono::DateTime::parse_from_rfc3339(
        log["entries"][0]["timestamp"].as_str().expect("time"),
    )
    .expect("time")
    .timestamp_millis();
    chrome
        .js("window.__dereth.replay.enter(new Date(Date.now() - 3600000).toISOString()); return true")
        .await
        .expect("replay");
    let mark = chrome
        .wait_for(
            "const m = document.querySelector('#replay-marks button[data-kind=death]'); \
             return m ? { name: m.dataset.name, left: parseFloat(m.style.left), title: m.title } : false",
            WAIT,
        )
        .await
        .expect("a death marked");
    assert_eq!(mark["name"], "Marked");
    assert!(
        mark["left"]
            .as_f64()
            .is_some_and(|l| l > 95.0 && l <= 100.0),
        "an event of a moment ago sits at the right end: {mark}"
    );
    click(&chrome, "#replay-marks button[data-kind=death]").await;
    let at_ms = chrome
        .js("return Date.parse(document.getElementById('replay-time').dateTime)")
        .await
        .expect("replay time")
        .as_f64()
        .expect("a time");
    let want = (died - 30_000) as f64;
    assert!(
        (at_ms - want).abs() < 2_000.0,
        "replays from 30 s before the death: {at_ms} vs {want}"
    );
    chrome
        .js("window.__dereth.replay.leave(); return true")
        .await
        .expect("leave");

    chrome
        .js(
            "const s = document.getElementById('color-mode'); s.value = 'tag'; \
             s.dispatchEvent(new Event('change')); return true",
        )
        .await
        .expect("tag colours");
    let legend = chrome
        .wait_for(
            "const l = document.getElementById('tag-legend'); \
             return !l.hidden && l.children.length === 2 ? [...l.children].map(s => \
               [s.textContent, getComputedStyle(s.querySelector('i')).backgroundColor]) : false",
            WAIT,
        )
        .await
        .expect("the tag legend");
    let markers = chrome
        .js("const c = document.createElement('i'); document.body.append(c); \
             const css = (color) => { c.style.background = color; return getComputedStyle(c).backgroundColor; }; \
             const p = Object.fromEntries(window.__dereth.players().map(p => [p.name, css(p.color)])); \
             c.remove(); return p")
        .await
        .expect("marker colours");
    assert_eq!(legend[0][0], "AAA (2)", "{legend}");
    assert_eq!(legend[1][0], "BBB (1)", "{legend}");
    assert_eq!(legend[0][1], markers["Marked"], "{legend} {markers}");
    assert_eq!(legend[0][1], markers["Tagged"]);
    assert_eq!(legend[1][1], markers["Other Tag"]);
    assert_ne!(legend[0][1], legend[1][1]);
}
