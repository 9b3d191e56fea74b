//! The map's layout in headless Chromium: the phone's single bottom sheet (one scroll area,
//! thumb-sized controls) and text contrast in both themes.

use crate::browser::{at, listed, map_page, phone_page};
use crate::chrome::Chrome;
use crate::common;

use std::time::Duration;

use common::WAIT;
use serde_json::{Value, json};

/// Where the phone layout stands: the page's height, the sheet's tab and height, the map's
/// height, which panels are displayed, and the scroll areas and controls a thumb can reach.
const PHONE_LAYOUT: &str = r#"
  const shown = (el) => el && el.offsetParent !== null && el.getBoundingClientRect().height > 0;
  const sheet = document.getElementById('sheet');
  const scrollers = [...document.querySelectorAll('main *')].filter((el) => {
    const s = getComputedStyle(el);
    return shown(el) && (s.overflowY === 'auto' || s.overflowY === 'scroll');
  }).map((el) => el.id || el.className);
  const controls = [...document.querySelectorAll('button, select, input:not([type=checkbox]), .bar-controls label, #players li')]
    .filter(shown)
    .map((el) => ({ what: el.id || el.textContent.trim().slice(0, 20), h: el.getBoundingClientRect().height }));
  return {
    viewport: window.innerHeight,
    page: document.scrollingElement.scrollHeight,
    header: document.querySelector('header').getBoundingClientRect().height,
    map: document.querySelector('.map-pane').getBoundingClientRect().height,
    sheet: sheet.getBoundingClientRect().height,
    sheetBottom: sheet.getBoundingClientRect().bottom,
    tab: sheet.dataset.tab,
    size: sheet.dataset.size,
    list: shown(document.getElementById('players')),
    details: shown(document.getElementById('details')),
    detailsBottom: document.getElementById('details').getBoundingClientRect().bottom,
    chat: shown(document.getElementById('chat-log')),
    scrollers,
    small: controls.filter((c) => c.h < 43.5),
  };
"#;

async fn phone_layout(chrome: &Chrome) -> Value {
    chrome.js(PHONE_LAYOUT).await.expect("measure the layout")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phone_layout_is_the_map_and_one_bottom_sheet() {
    let Some((chrome, app)) = phone_page().await else {
        return;
    };
    let mut plugin = app.plugin().await;
    for (i, name) in ["Thumb One", "Thumb Two", "Thumb Three"].iter().enumerate() {
        plugin.send_json(&at(name, 10.0 + i as f64, 20.0, 5)).await;
    }
    listed(&chrome, "Thumb Three").await;

    let first = phone_layout(&chrome).await;
    let viewport = first["viewport"].as_f64().expect("viewport");
    assert!(
        first["page"].as_f64().expect("page") <= viewport + 1.0,
        "the page itself does not scroll: {first}"
    );
    assert!(
        first["header"].as_f64().expect("header") <= 64.0,
        "one toolbar row: {first}"
    );
    assert!(
        first["map"].as_f64().expect("map") >= 0.35 * viewport,
        "the map keeps most of the screen: {first}"
    );
    assert_eq!(first["tab"], "list");
    assert_eq!(first["list"], true, "{first}");
    assert_eq!(first["chat"], false, "one panel at a time: {first}");
    assert_eq!(first["small"], json!([]), "tap targets of 44 px: {first}");
    assert!(
        first["scrollers"].as_array().expect("scrollers").len() <= 1,
        "one scroll area: {first}"
    );

    // Choosing a character opens its details in the sheet, fully on screen, list hidden.
    chrome
        .js("document.querySelector('#players li[data-name=\"Thumb Two\"]').click();")
        .await
        .expect("choose");
    let details = chrome
        .wait_for(
            &format!("const r = (() => {{ {PHONE_LAYOUT} }})(); return r.tab === 'details' && r.details ? r : false"),
            WAIT,
        )
        .await
        .expect("details shown");
    assert_eq!(details["list"], false, "{details}");
    assert!(
        details["detailsBottom"].as_f64().expect("bottom") <= viewport + 1.0,
        "details not cut off: {details}"
    );
    let text = chrome
        .js("return document.getElementById('details').textContent")
        .await
        .expect("details text");
    assert!(
        text.as_str().is_some_and(|t| t.contains("Thumb Two")),
        "{text}"
    );

    // The chat tab shows the chat (and the command line for the selected character) only.
    chrome
        .js("document.querySelector('#sheet [data-tab=chat]').click();")
        .await
        .expect("chat tab");
    let chat = phone_layout(&chrome).await;
    assert_eq!(chat["chat"], true, "{chat}");
    assert_eq!(chat["list"], false, "{chat}");
    assert_eq!(chat["details"], false, "{chat}");

    // The handle steps the sheet through its heights; at "peek" the map takes the room.
    let mut heights = Vec::new();
    for _ in 0..3 {
        chrome
            .js("document.getElementById('sheet-handle').click();")
            .await
            .expect("handle");
        let state = phone_layout(&chrome).await;
        heights.push((
            state["size"].as_str().unwrap_or_default().to_owned(),
            state["sheet"].as_f64().unwrap_or_default(),
            state["map"].as_f64().unwrap_or_default(),
        ));
    }
    let sizes: Vec<&str> = heights.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(sizes, ["full", "peek", "half"], "{heights:?}");
    let (_, full_sheet, full_map) = heights[0];
    let (_, peek_sheet, peek_map) = heights[1];
    assert!(peek_sheet < 60.0 && peek_map > full_map, "{heights:?}");
    assert!(
        full_sheet > 0.6 * viewport && full_map >= 120.0,
        "{heights:?}"
    );

    // Deselecting (Esc) returns the sheet to the list.
    chrome
        .js(
            "document.querySelector('#sheet [data-tab=details]').click(); \
             document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape'}));",
        )
        .await
        .expect("escape");
    chrome
        .wait_for(
            "return document.getElementById('sheet').dataset.tab === 'list'",
            WAIT,
        )
        .await
        .expect("back to the list");
}

/// WCAG contrast of every name the page shows against what is behind it, in both themes:
/// list names and their stat column, and the map's character and town labels against their
/// halo.
const CONTRAST: &str = r#"
  const rgb = (c) => {
    const ctx = document.createElement('canvas').getContext('2d');
    ctx.fillStyle = c; ctx.fillRect(0, 0, 1, 1);
    return [...ctx.getImageData(0, 0, 1, 1).data];
  };
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const ratio = (a, b) => { const [x, y] = [lum(rgb(a)), lum(rgb(b))].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const css = (v) => getComputedStyle(document.documentElement).getPropertyValue(v).trim();
  const out = [];
  for (const el of document.querySelectorAll('#players .name, #players .stat')) {
    const s = getComputedStyle(el);
    if (parseFloat(getComputedStyle(el.closest('li')).opacity) < 1) out.push([el.textContent, 'faded row', 0]);
    out.push([el.textContent, el.className, ratio(s.color, css('--panel'))]);
  }
  out.push(['map label', 'label', ratio(css('--label'), css('--panel'))]);
  out.push(['town label', 'town', ratio(css('--town'), css('--panel'))]);
  return out;
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_meet_four_and_a_half_to_one_contrast_in_both_themes() {
    let Some((chrome, app)) = map_page().await else {
        return;
    };
    let mut plugin = app.plugin().await;
    plugin.send_json(&at("Bright Name", 10.0, 10.0, 3)).await;
    plugin.send_json(&at("Gone Name", 12.0, 10.0, 3)).await;
    listed(&chrome, "Gone Name").await;
    // One character goes offline (its plugin's connection ends), so faded rows are measured too.
    drop(plugin);
    chrome
        .wait_for(
            "return document.querySelector('#players li.offline') !== null",
            Duration::from_secs(60),
        )
        .await
        .expect("an offline row");
    for theme in ["light", "dark"] {
        chrome
            .js(&format!(
                "document.documentElement.dataset.theme = '{theme}';"
            ))
            .await
            .expect("theme");
        let pairs = chrome.js(CONTRAST).await.expect("contrast");
        let pairs = pairs.as_array().expect("pairs");
        assert!(pairs.len() >= 6, "{pairs:?}");
        for pair in pairs {
            let ratio = pair[2].as_f64().unwrap_or(0.0);
            assert!(ratio >= 4.5, "{theme}: {pair} is below 4.5:1");
        }
    }
}
