//! The guild leader's console (issue 26), in headless Chromium against a real tracker: the
//! defects found by using the map for an evening, each with the test that failed before its fix.

use crate::browser::{at, chrome, listed, map_page, open, phone_page, sign_in, with_account};
use crate::common;

use std::time::Duration;

use crate::chrome::{Chrome, chromedriver_path};
use common::{Backend, TestApp, WAIT};
use dereth_tracker::config::Role;
use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
use serde_json::{Value, json};

/// Defect 2: a click held 100-200 ms on a row of a list that updates twice a second selected
/// it about two times in three (the list was rebuilt between press and release). Fifteen held
/// clicks on rows of 50 characters that keep sending select fifteen times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_clicks_on_a_busy_list_all_select() {
    let Some((chrome, app)) = map_page().await else {
        return;
    };
    let mut plugin = app.plugin().await;
    let names: Vec<String> = (0..50).map(|i| format!("Busy {i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        plugin.send_json(&at(name, i as f64, 10.0, 1)).await;
    }
    listed(&chrome, "Busy 49").await;
    // Every character keeps moving: the list changes several times a second.
    let stop = tokio_util::sync::CancellationToken::new();
    let sender = tokio::spawn({
        let stop = stop.clone();
        let names = names.clone();
        async move {
            let mut step = 0;
            while !stop.is_cancelled() {
                step += 1;
                // Ten of them each 100 ms, in turn.
                for (i, name) in names.iter().enumerate().skip(step % 5 * 10).take(10) {
                    plugin
                        .send_json(&at(name, i as f64 + step as f64 * 0.001, 10.0, 1))
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let mut selected = 0;
    for k in 0..15 {
        let name = &names[k % 8];
        let row = chrome
            .client
            .find(fantoccini::Locator::Css(&format!(
                "#players li[data-name=\"{name}\"]"
            )))
            .await
            .expect("row");
        let press = MouseActions::new("mouse".into())
            .then(PointerAction::MoveToElement {
                element: row,
                duration: None,
                x: 0.0,
                y: 0.0,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(PointerAction::Pause {
                duration: Duration::from_millis(150),
            })
            .then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            });
        chrome.client.perform_actions(press).await.expect("click");
        let now = chrome
            .js("return window.__dereth.view().selected")
            .await
            .expect("selected");
        if now == json!(name) {
            selected += 1;
        }
        // Select something else in between, so every click has to land.
        chrome
            .js("window.__dereth.select(null)")
            .await
            .expect("deselect");
    }
    stop.cancel();
    let _ = sender.await;
    assert_eq!(selected, 15, "held clicks that selected their row");
}

/// Defect 4: a dead character read "active · Dead" and looked active on the map and in the
/// legend. Now its state is dead (map, list, tooltip), and the legend shows what a dead marker
/// looks like.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_character_is_shown_dead() {
    let Some((chrome, app)) = map_page().await else {
        return;
    };
    let mut plugin = app.plugin().await;
    let mut dead = at("Fallen One", 10.0, 10.0, 3);
    dead["vt_state"] = json!("Dead");
    plugin.send_json(&dead).await;
    plugin.send_json(&at("Alive One", 20.0, 20.0, 3)).await;
    listed(&chrome, "Fallen One").await;
    let states = chrome
        .wait_for(
            "const s = Object.fromEntries(window.__dereth.players().map(p => [p.name, p.state])); \
             return s['Alive One'] ? s : false",
            WAIT,
        )
        .await
        .expect("states");
    assert_eq!(states["Fallen One"], "dead", "{states}");
    assert_eq!(states["Alive One"], "active", "{states}");
    let flag = chrome
        .wait_for(
            "const f = document.querySelector('#players li[data-name=\"Fallen One\"] .flag'); \
             return f ? f.textContent : false",
            WAIT,
        )
        .await
        .expect("a flag on the row");
    assert_eq!(flag, "dead");
    let legend = chrome
        .js("return [...document.querySelectorAll('#legend > span')].map(s => s.textContent.trim())")
        .await
        .expect("legend");
    assert!(
        legend.as_array().expect("entries").contains(&json!("dead")),
        "{legend}"
    );
}

/// Defect 5: a character whose plugin stopped vanished from the map and the list 15 s after it
/// was flagged offline. It now stays, greyed, saying how long it has been offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_character_stays_listed_greyed() {
    let Some(chrome) = chrome().await else {
        return;
    };
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.sessions.live_window_secs = 2)
        .await
        .expect("sqlite always runs");
    open(&app, &chrome).await;
    let mut plugin = app.plugin().await;
    plugin.send_json(&at("Gone Home", 10.0, 10.0, 3)).await;
    listed(&chrome, "Gone Home").await;
    drop(plugin);
    chrome
        .wait_for(
            "return document.querySelector('#players li[data-name=\"Gone Home\"]').classList.contains('offline')",
            WAIT,
        )
        .await
        .expect("flagged offline");
    // Past the 15 s after which it used to be gone.
    tokio::time::sleep(Duration::from_secs(17)).await;
    let row = chrome
        .js(
            "const li = document.querySelector('#players li[data-name=\"Gone Home\"]'); \
             const p = window.__dereth.players().find(p => p.name === 'Gone Home'); \
             return li && p ? { offline: li.classList.contains('offline'), \
               meta: li.querySelector('.meta').textContent, state: p.state, alpha: p.alpha } : null",
        )
        .await
        .expect("row");
    assert_ne!(row, Value::Null, "still listed and on the map");
    assert_eq!(row["offline"], true, "{row}");
    assert_eq!(row["state"], "offline", "{row}");
    assert!(
        row["meta"]
            .as_str()
            .is_some_and(|m| m.contains("offline just now")),
        "{row}"
    );
    assert!(
        row["alpha"].as_f64().is_some_and(|a| a > 0.2 && a < 0.5),
        "{row}"
    );
}

/// Defect 7: on a phone the chat tab opened at its oldest line. It opens at the newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_chat_opens_at_the_newest_line() {
    let Some((chrome, app)) = phone_page().await else {
        return;
    };
    let mut plugin = app.plugin().await;
    for i in 0..80 {
        plugin
            .send_json(
                &json!({"type": "chat", "character_name": "Chatty", "text": format!("line {i}")}),
            )
            .await;
    }
    chrome
        .wait_for(
            "return document.querySelectorAll('#chat-log li:not(.system)').length === 80",
            WAIT,
        )
        .await
        .expect("every line in the log");
    chrome
        .js("document.querySelector('#sheet [data-tab=chat]').click();")
        .await
        .expect("chat tab");
    let at_bottom = chrome
        .wait_for(
            "const log = document.getElementById('chat-log'); \
             return log.clientHeight > 0 && log.scrollHeight > log.clientHeight \
               && log.scrollTop + log.clientHeight >= log.scrollHeight - 8",
            WAIT,
        )
        .await;
    assert!(at_bottom.is_ok(), "the chat tab opens at its newest line");
}

/// Defect 8: the CSV link kept the browser's default blue in the dark theme (about 1.7:1 on the
/// panel). Every link reads at 4.5:1 or better in both themes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_csv_link_reads_in_both_themes() {
    let Some((chrome, app)) = map_page().await else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&at("Exporter", 10.0, 10.0, 3)).await;
    listed(&chrome, "Exporter").await;
    chrome
        .js("window.__dereth.select('Exporter')")
        .await
        .expect("select");
    for theme in ["dark", "light"] {
        chrome
            .js(&format!(
                "document.documentElement.dataset.theme = '{theme}'"
            ))
            .await
            .expect("theme");
        let contrast = chrome
            .wait_for(
                "const a = document.querySelector('#details a[download]'); if (!a) return false; \
                 const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number); \
                 const lum = ([r, g, b]) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }; \
                   return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); }; \
                 let el = a.parentElement, bg = 'rgba(0, 0, 0, 0)'; \
                 while (el && /rgba\\(0, 0, 0, 0\\)|transparent/.test(bg)) { bg = getComputedStyle(el).backgroundColor; el = el.parentElement; } \
                 const l1 = lum(rgb(getComputedStyle(a).color)), l2 = lum(rgb(bg)); \
                 return (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);",
                WAIT,
            )
            .await
            .expect("the link and its background");
        let ratio = contrast.as_f64().expect("ratio");
        assert!(
            ratio >= 4.5,
            "{theme}: the CSV link's contrast is {ratio:.2}:1"
        );
    }
}

/// Defect 9: the rare heatmap's legend swatch was orange while its cells are purple. Each
/// heatmap shown has its own swatch, in its cells' colour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_heatmap_legend_swatch_has_its_cells_colour() {
    let Some((chrome, app)) = map_page().await else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&at("Finder", 10.0, 10.0, 3)).await;
    plugin
        .send_json(
            &json!({"type": "rare", "character_name": "Finder", "name": "Pearl",
            "timestamp": chrono::Utc::now().to_rfc3339(), "ew": 10.0, "ns": 10.0, "z": 0.0}),
        )
        .await;
    plugin
        .send_json(&common::spawn_frame("Finder", "Drudge"))
        .await;
    app.wait_for_rows(1, 1, 1).await;
    chrome
        .js("for (const id of ['rare-heat', 'spawn-heat']) { const c = document.getElementById(id); \
             c.checked = true; c.dispatchEvent(new Event('change')); }")
        .await
        .expect("both heatmaps on");
    let swatches = chrome
        .wait_for(
            "const s = Object.fromEntries([...document.querySelectorAll('#heat-legend [data-kind]')] \
               .map(e => [e.dataset.kind, getComputedStyle(e.querySelector('.swatch')).backgroundImage])); \
             return s.rares && s.spawns ? s : false",
            WAIT,
        )
        .await
        .expect("a swatch per heatmap");
    assert!(
        swatches["rares"]
            .as_str()
            .is_some_and(|s| s.contains("190, 60, 255")),
        "{swatches}"
    );
    assert!(
        swatches["spawns"]
            .as_str()
            .is_some_and(|s| s.contains("255, 120, 0")),
        "{swatches}"
    );
}

/// Defect 10: "attention first" kept the list's scroll position, so the flagged rows could sit
/// out of view. A new order starts at its top.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_sort_order_starts_at_the_top() {
    let Some((chrome, app)) = map_page().await else {
        return;
    };
    let mut plugin = app.plugin().await;
    for i in 0..60 {
        plugin
            .send_json(&at(&format!("Row {i:02}"), i as f64, 5.0, 1))
            .await;
    }
    listed(&chrome, "Row 59").await;
    let scrolled = chrome
        .js("const l = document.getElementById('players'); l.scrollTop = l.scrollHeight; return l.scrollTop")
        .await
        .expect("scroll down");
    assert!(
        scrolled.as_f64().unwrap_or_default() > 0.0,
        "the list scrolls"
    );
    let top = chrome
        .js("const s = document.getElementById('sort'); s.value = 'attention'; \
             s.dispatchEvent(new Event('change')); return document.getElementById('players').scrollTop")
        .await
        .expect("sort by attention");
    assert_eq!(top, json!(0));
}

/// The command box sent "/" before anything typed: "hello there" went out as "/hello there".
/// Text goes out as typed (the game says a line without "/" and runs one with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_goes_out_as_typed() {
    let Some(chrome) = chrome().await else {
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite)
        .await
        .expect("sqlite always runs");
    with_account(&app, "cora", Role::Commander).await;
    let mut plugin = app.plugin().await;
    plugin.send_json(&at("Listener", 10.0, 10.0, 1)).await;
    sign_in(&chrome, &app, "cora").await;
    listed(&chrome, "Listener").await;
    chrome
        .js("window.__dereth.select('Listener')")
        .await
        .expect("select");
    for typed in ["hello there", "/vt start"] {
        chrome
            .client
            .find(fantoccini::Locator::Id("command"))
            .await
            .expect("input")
            .send_keys(&format!("{typed}\n"))
            .await
            .expect("type");
        let received = tokio::time::timeout(WAIT, plugin.recv_json())
            .await
            .expect("the command reaches the plugin");
        assert_eq!(
            received,
            json!({"player_name": "Listener", "command": typed})
        );
    }
}

/// What the replay bar covers and how wide its slider and time are, once replay is on.
const REPLAY_BAR: &str = r#"
  const rect = (id) => document.getElementById(id).getBoundingClientRect();
  const bar = rect('replay-bar');
  if (document.getElementById('replay-bar').hidden || bar.width === 0) return false;
  const overlaps = (r) => !(r.right <= bar.left || r.left >= bar.right || r.bottom <= bar.top || r.top >= bar.bottom);
  const time = document.getElementById('replay-time');
  return {
    covered: ['zoom-in', 'zoom-out', 'zoom-reset'].filter((id) => overlaps(rect(id))),
    slider: rect('replay-slider').width,
    viewport: window.innerWidth,
    timeCut: time.scrollWidth > time.clientWidth + 1 || time.getBoundingClientRect().right > window.innerWidth,
    time: time.textContent,
  };
"#;

/// Defect 6: the replay bar covered the + zoom button on a desktop; on a phone its slider was 80
/// px wide for 24 hours and the time was cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_bar_leaves_the_zoom_buttons_and_fits_a_phone() {
    if chromedriver_path().is_none() {
        let _ = chrome().await;
        return;
    }
    let app = TestApp::spawn(Backend::Sqlite)
        .await
        .expect("sqlite always runs");
    for (width, height) in [(1280, 800), (390, 844)] {
        let chrome = Chrome::start(width, height).await.expect("start Chromium");
        open(&app, &chrome).await;
        let at = (chrono::Utc::now() - chrono::Duration::minutes(30)).to_rfc3339();
        chrome
            .js(&format!("window.__dereth.replay.enter('{at}')"))
            .await
            .expect("replay");
        let bar = chrome
            .wait_for(REPLAY_BAR, WAIT)
            .await
            .expect("the replay bar shows");
        assert_eq!(bar["covered"], json!([]), "{width} px: {bar}");
        assert_eq!(bar["timeCut"], false, "{width} px: {bar}");
        let slider = bar["slider"].as_f64().expect("slider");
        let viewport = bar["viewport"].as_f64().expect("viewport");
        assert!(
            slider >= 0.6 * viewport.min(600.0),
            "{width} px: a slider of {slider} px: {bar}"
        );
        chrome.close().await;
    }
}

/// A replay said "live · N online" and showed live pop-ups. It now says REPLAY and its time in
/// the header, live rare pop-ups wait, and the chat says it stays live; back to live, "live".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_says_it_is_a_replay() {
    let Some((chrome, app)) = map_page().await else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&at("Looter", 10.0, 10.0, 1)).await;
    listed(&chrome, "Looter").await;
    let at_time = (chrono::Utc::now() - chrono::Duration::minutes(20)).to_rfc3339();
    chrome
        .js(&format!("window.__dereth.replay.enter('{at_time}')"))
        .await
        .expect("replay");
    let header = chrome
        .wait_for(
            "const s = document.getElementById('status'); \
             return s.dataset.state === 'replay' ? s.textContent : false",
            WAIT,
        )
        .await
        .expect("the header says replay");
    assert!(
        header.as_str().is_some_and(|h| h.starts_with("REPLAY ")),
        "{header}"
    );
    plugin
        .send_json(
            &json!({"type": "rare", "character_name": "Looter", "name": "Pearl",
            "timestamp": chrono::Utc::now().to_rfc3339(), "ew": 10.0, "ns": 10.0, "z": 0.0}),
        )
        .await;
    chrome
        .wait_for(
            "return [...document.querySelectorAll('#chat-log li.system')].some(l => l.textContent.includes('Pearl'))",
            WAIT,
        )
        .await
        .expect("the rare reaches the page");
    let toasts = chrome
        .js("return document.querySelectorAll('#toasts .toast').length")
        .await
        .expect("toasts");
    assert_eq!(toasts, json!(0), "no live pop-up over a replay");
    let chat = chrome
        .js("return document.getElementById('chat-log').textContent")
        .await
        .expect("chat");
    assert!(
        chat.as_str()
            .is_some_and(|c| c.contains("the chat below stays live")),
        "{chat}"
    );
    chrome
        .js("window.__dereth.replay.leave()")
        .await
        .expect("leave");
    chrome
        .wait_for(
            "const s = document.getElementById('status'); return s.dataset.state === 'open' && s.textContent === 'live'",
            WAIT,
        )
        .await
        .expect("live again");
}

/// A stopped server looked live: "reconnecting in 7s" never counted down and every marker
/// stayed as it was. Now the countdown moves and the map and the list are dimmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_dims_the_data_and_counts_down() {
    let Some((chrome, mut app)) = map_page().await else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&at("Watched", 10.0, 10.0, 1)).await;
    listed(&chrome, "Watched").await;
    drop(plugin);
    app.shutdown().await;
    // Until the backoff is long enough to see a count, and then the count moves.
    let first = chrome
        .wait_for(
            "const s = document.getElementById('status'); const m = s.textContent.match(/reconnecting in (\\d+)s/); \
             return m && Number(m[1]) >= 2 ? Number(m[1]) : false",
            Duration::from_secs(60),
        )
        .await
        .expect("a countdown");
    let dim = chrome
        .js("return { body: document.body.dataset.connection, \
               map: Number(getComputedStyle(document.getElementById('map')).opacity), \
               list: Number(getComputedStyle(document.getElementById('players')).opacity) }")
        .await
        .expect("dimmed");
    assert_eq!(dim["body"], "lost", "{dim}");
    assert!(dim["map"].as_f64().is_some_and(|o| o < 0.6), "{dim}");
    assert!(dim["list"].as_f64().is_some_and(|o| o < 0.6), "{dim}");
    let later = chrome
        .wait_for(
            &format!(
                "const m = document.getElementById('status').textContent.match(/reconnecting in (\\d+)s/); \
                 return m && Number(m[1]) < {first} ? Number(m[1]) : false"
            ),
            Duration::from_secs(5),
        )
        .await
        .expect("the countdown moves");
    assert!(later.as_i64() < first.as_i64(), "{first} then {later}");
}

/// Done means: a character that disconnected 5 minutes ago is still listed, greyed, on a page
/// opened now (from the stored telemetry, not only while a page stays open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_character_gone_five_minutes_is_listed_greyed_after_a_reload() {
    let Some(chrome) = chrome().await else {
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite)
        .await
        .expect("sqlite always runs");
    common::store_telemetry(
        &app.store,
        "gone",
        &crate::browser::past("Left Early", 12.0, 12.0, 5 * 60 + 10),
        1,
    )
    .await;
    common::store_telemetry(
        &app.store,
        "gone long ago",
        &crate::browser::past("Long Gone", 14.0, 14.0, 3 * 3600),
        1,
    )
    .await;
    let mut plugin = app.plugin().await;
    plugin.send_json(&at("Still Here", 10.0, 10.0, 1)).await;
    app.wait_for_rows(3, 0, 0).await;
    open(&app, &chrome).await;
    listed(&chrome, "Left Early").await;
    let row = chrome
        .js(
            "const li = document.querySelector('#players li[data-name=\"Left Early\"]'); \
             const p = window.__dereth.players().find(p => p.name === 'Left Early'); \
             return { offline: li.classList.contains('offline'), meta: li.querySelector('.meta').textContent, \
               state: p.state, alpha: p.alpha, long: !!document.querySelector('#players li[data-name=\"Long Gone\"]'), \
               count: document.getElementById('count').textContent }",
        )
        .await
        .expect("row");
    assert_eq!(row["offline"], true, "{row}");
    assert_eq!(row["state"], "offline", "{row}");
    assert!(
        row["meta"]
            .as_str()
            .is_some_and(|m| m.contains("offline 5 min")),
        "{row}"
    );
    assert!(row["alpha"].as_f64().is_some_and(|a| a < 0.5), "{row}");
    assert_eq!(
        row["long"], false,
        "three hours ago is past the keep: {row}"
    );
    assert!(
        row["count"]
            .as_str()
            .is_some_and(|c| c.starts_with("1 online")),
        "offline characters are not counted online: {row}"
    );
}

/// Done means: a commander picks 10 characters (ctrl-click, and shift-click for a range), sends
/// one command, and sees 10 results in one place; every plugin gets it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_picked_characters_get_one_command_and_show_ten_results() {
    let Some(chrome) = chrome().await else {
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite)
        .await
        .expect("sqlite always runs");
    with_account(&app, "lead", Role::Commander).await;
    let mut plugin = app.plugin().await;
    let names: Vec<String> = (0..12).map(|i| format!("Squad {i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        plugin.send_json(&at(name, i as f64, 5.0, 1)).await;
    }
    sign_in(&chrome, &app, "lead").await;
    listed(&chrome, "Squad 11").await;
    // Ctrl-click Squad 00 to 04, then shift-click Squad 09: a range of ten.
    chrome
        .js(
            "const click = (n, keys) => document.querySelector(`#players li[data-name=\"${n}\"]`) \
               .dispatchEvent(new MouseEvent('click', { bubbles: true, ...keys })); \
             for (const i of [0, 1, 2, 3, 4]) click(`Squad 0${i}`, { ctrlKey: true }); \
             click('Squad 09', { shiftKey: true });",
        )
        .await
        .expect("pick");
    let target = chrome
        .wait_for(
            "const t = document.getElementById('command-target').textContent; \
             return document.querySelectorAll('#players li.picked').length === 10 ? t : false",
            WAIT,
        )
        .await
        .expect("ten picked");
    assert_eq!(target, "Command 10 characters:");
    chrome
        .client
        .find(fantoccini::Locator::Id("command"))
        .await
        .expect("input")
        .send_keys("/vt stop\n")
        .await
        .expect("type");
    let mut received = Vec::new();
    for _ in 0..10 {
        let command = tokio::time::timeout(WAIT, plugin.recv_json())
            .await
            .expect("a command for each");
        assert_eq!(command["command"], "/vt stop");
        received.push(
            command["player_name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    received.sort();
    assert_eq!(received, names[..10].to_vec());
    let results = chrome
        .wait_for(
            "const r = [...document.querySelectorAll('#broadcast-results li')] \
               .map(li => [li.dataset.name, li.dataset.status]); \
             return r.length === 10 ? r : false",
            WAIT,
        )
        .await
        .expect("ten results");
    for (i, result) in results.as_array().expect("results").iter().enumerate() {
        assert_eq!(result[1], "delivered", "{results}");
        assert_eq!(result[0], json!(names[i]), "{results}");
    }
    let summary = chrome
        .js("return document.getElementById('command-result').textContent")
        .await
        .expect("summary");
    assert_eq!(summary, "/vt stop: delivered to 10 of 10");
}

/// On a phone, Replay, Roster, theme and help were off-screen in a sideways scroll with no hint.
/// The bar keeps one row with a menu button; the menu shows every control on screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_toolbar_control_is_reachable_on_a_phone() {
    let Some((chrome, _app)) = phone_page().await else {
        return;
    };
    let closed = chrome
        .js("const b = document.querySelector('header.bar'); \
             return { h: b.getBoundingClientRect().height, scrolls: b.scrollWidth > b.clientWidth + 1, \
               menu: document.getElementById('menu-toggle').getBoundingClientRect().right <= innerWidth }")
        .await
        .expect("bar");
    assert!(closed["h"].as_f64().is_some_and(|h| h <= 64.0), "{closed}");
    assert_eq!(closed["scrolls"], false, "{closed}");
    assert_eq!(closed["menu"], true, "{closed}");
    chrome
        .js("document.getElementById('menu-toggle').click()")
        .await
        .expect("open the menu");
    let off = chrome
        .js(
            "return [...document.querySelectorAll('#bar-controls > button:not([hidden]), #bar-controls > select, #bar-controls > label')] \
               .filter(el => { const r = el.getBoundingClientRect(); \
                 return r.width === 0 || r.right > innerWidth + 0.5 || r.left < -0.5 || r.bottom > innerHeight || r.height < 43.5; }) \
               .map(el => el.id || el.textContent.trim())",
        )
        .await
        .expect("controls");
    assert_eq!(off, json!([]), "controls off screen or too small");
    // Choosing one closes the menu.
    chrome
        .js("document.getElementById('roster-open').click()")
        .await
        .expect("roster");
    let state = chrome
        .js("return document.querySelector('header.bar').dataset.menu")
        .await
        .expect("menu state");
    assert_eq!(state, "closed");
}

/// The toolbar's selects read "all", "10 min", "24 h" with no label: each now says what it is.
/// Heatmaps, search, sort and trail length are kept in the URL, so a reload or a shared link
/// shows the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toolbar_selects_say_what_they_are_and_the_url_keeps_the_view() {
    let Some((chrome, app)) = map_page().await else {
        return;
    };
    let texts = chrome
        .js("return [...document.querySelectorAll('header select')].map(s => s.options[s.selectedIndex].textContent)")
        .await
        .expect("selects");
    for text in texts.as_array().expect("texts") {
        let text = text.as_str().unwrap_or_default();
        assert!(text.contains(':'), "`{text}` does not say what it chooses");
    }
    chrome
        .js("const set = (id, v) => { const e = document.getElementById(id); e.value = v; e.dispatchEvent(new Event('change')); }; \
             set('trails-window', '1800'); set('heat-range', '3600'); set('sort', 'kills'); \
             const h = document.getElementById('rare-heat'); h.checked = true; h.dispatchEvent(new Event('change')); \
             const q = document.getElementById('search'); q.value = 'Squad'; q.dispatchEvent(new Event('input'));")
        .await
        .expect("choose");
    let url = chrome
        .wait_for(
            "return location.search.includes('heat=rares') && location.search.includes('q=Squad') ? location.search : false",
            WAIT,
        )
        .await
        .expect("the URL follows");
    chrome
        .client
        .goto(&app.url(&format!("/{}", url.as_str().unwrap_or_default())))
        .await
        .expect("reload");
    let restored = chrome
        .wait_for(
            "const v = (id) => document.getElementById(id); \
             return document.getElementById('status').dataset.state === 'open' ? \
               [v('trails-window').value, v('heat-range').value, v('sort').value, v('rare-heat').checked, v('search').value] : false",
            WAIT,
        )
        .await
        .expect("restored");
    assert_eq!(restored, json!(["1800", "3600", "kills", true, "Squad"]));
}

/// Done means: the event log lists a death and a disconnect after a reload; a click on a recent
/// one selects the character, on a past one opens the replay at its moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_lists_a_death_and_a_disconnect_after_a_reload() {
    let Some((chrome, app)) = map_page().await else {
        return;
    };
    let mut plugin = app.plugin().await;
    let mut alive = at("Doomed", 10.0, 10.0, 1);
    alive["deaths"] = json!(0);
    plugin.send_json(&alive).await;
    let mut dead = at("Doomed", 10.0, 10.0, 1);
    dead["deaths"] = json!(1);
    plugin.send_json(&dead).await;
    let mut leaver = app.plugin().await;
    leaver.send_json(&at("Quitter", 20.0, 20.0, 1)).await;
    app.wait_for_rows(3, 0, 0).await;
    drop(leaver);
    // Something that happened ten minutes ago.
    let old = dereth_tracker::store::Event::Happened(dereth_tracker::store::Happening {
        character_name: "Doomed".into(),
        kind: dereth_tracker::store::HappeningKind::Level,
        timestamp: chrono::Utc::now() - chrono::Duration::minutes(10),
        detail: Some("level 10 to 11".into()),
    });
    app.store
        .write_batch("old level", &[old])
        .await
        .expect("write");
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.get("/log?kind=disconnect").await.1["entries"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(tokio::time::Instant::now() < deadline, "disconnect logged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A reload: the page knows nothing but what the server keeps.
    open(&app, &chrome).await;
    chrome
        .js("document.getElementById('events-open').click()")
        .await
        .expect("open the event log");
    let rows = chrome
        .wait_for(
            "const r = [...document.querySelectorAll('#events-list li')].map(li => [li.dataset.name, li.dataset.kind]); \
             return r.some(([n, k]) => n === 'Doomed' && k === 'death') && r.some(([n, k]) => n === 'Quitter' && k === 'disconnect') ? r : false",
            WAIT,
        )
        .await
        .expect("a death and a disconnect");
    assert!(
        rows.as_array()
            .expect("rows")
            .contains(&json!(["Doomed", "level"])),
        "{rows}"
    );
    // A recent one selects.
    chrome
        .js("document.querySelector('#events-list li[data-kind=\"death\"]').click()")
        .await
        .expect("click the death");
    chrome
        .wait_for(
            "return window.__dereth.view().selected === 'Doomed' && !window.__dereth.replay.active()",
            WAIT,
        )
        .await
        .expect("selected, live");
    // A past one replays.
    chrome
        .js("document.getElementById('events-open').click()")
        .await
        .expect("open again");
    chrome
        .wait_for(
            "return document.querySelector('#events-list li[data-kind=\"level\"]') !== null",
            WAIT,
        )
        .await
        .expect("listed");
    chrome
        .js("document.querySelector('#events-list li[data-kind=\"level\"]').click()")
        .await
        .expect("click the level");
    chrome
        .wait_for(
            "return window.__dereth.replay.active() && document.getElementById('status').dataset.state === 'replay'",
            WAIT,
        )
        .await
        .expect("the replay opens");
}
