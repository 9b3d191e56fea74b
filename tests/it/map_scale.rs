//! The map at scale in headless Chromium: a zoomed-in map streams only its area, a snapshot in
//! parts, crowds as badges with counts, town names above crowds.

use crate::browser::{at, chrome, map_page, open};
use crate::common;

use common::{Backend, TestApp, WAIT};
use serde_json::json;

/// Zoomed far in, the map asks for its area only: a character elsewhere is not streamed (it
/// arrives with the server's refresh instead); zoomed out again, everything streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zoomed_in_map_streams_only_its_area_and_the_rest_with_the_refresh() {
    let Some(chrome) = chrome().await else {
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite)
        .await
        .expect("sqlite always runs");
    chrome
        .client
        .goto(&app.url("/?cx=0&cy=0&z=10"))
        .await
        .expect("open the map");
    let watching = chrome
        .wait_for(
            "const w = window.__dereth.watching(); \
             return document.getElementById('status').dataset.state === 'open' && w && w.includes('ew_min') ? JSON.parse(w) : false",
            WAIT,
        )
        .await
        .expect("the zoomed-in map watches its area");
    let (ew_min, ew_max) = (
        watching["ew_min"].as_f64().unwrap_or(f64::NAN),
        watching["ew_max"].as_f64().unwrap_or(f64::NAN),
    );
    assert!(
        ew_min <= -1.0 && ew_max >= 1.0 && ew_max - ew_min < 150.0,
        "an area around the centre, not the whole map: {watching}"
    );

    let mut plugin = app.plugin().await;
    plugin.send_json(&at("Far Away", 80.0, 80.0, 1)).await;
    plugin.send_json(&at("Right Here", 1.0, 1.0, 1)).await;
    chrome
        .wait_for(
            "return window.__dereth.players().some(p => p.name === 'Right Here')",
            WAIT,
        )
        .await
        .expect("the character in view streams");
    let far_now = chrome
        .js("return window.__dereth.players().some(p => p.name === 'Far Away')")
        .await
        .expect("players");
    assert_eq!(
        far_now,
        json!(false),
        "sent first, yet not streamed: out of view"
    );
    chrome
        .wait_for(
            "return window.__dereth.players().some(p => p.name === 'Far Away')",
            WAIT,
        )
        .await
        .expect("the refresh brings the character out of view");

    // The whole map again: the far character's next move streams.
    chrome
        .js("document.getElementById('zoom-reset').click(); return true")
        .await
        .expect("zoom out");
    chrome
        .wait_for(
            "const w = window.__dereth.watching(); return w !== null && !w.includes('ew_min')",
            WAIT,
        )
        .await
        .expect("the zoomed-out map watches everything");
    plugin.send_json(&at("Far Away", 81.0, 81.0, 2)).await;
    plugin.send_json(&at("Right Here", 1.5, 1.0, 2)).await;
    chrome
        .wait_for(
            "return window.__dereth.players().some(p => p.name === 'Right Here' && p.x === 1.5)",
            WAIT,
        )
        .await
        .expect("the character in view streams");
    let far = chrome
        .js("return window.__dereth.players().find(p => p.name === 'Far Away').x")
        .await
        .expect("players");
    assert_eq!(
        far,
        json!(81),
        "sent first, so streamed with or before the other"
    );
    chrome.close().await;
}

/// Issue 25: a map opened on 3,000 live characters gets its snapshot in several parts (over
/// 256 KiB whole) and shows every character once it has put them together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_in_parts_shows_every_character() {
    let Some(chrome) = chrome().await else {
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite)
        .await
        .expect("sqlite always runs");
    let n = 3_000;
    for i in 0..n {
        let text = at(&format!("Part {i:04}"), (i % 180) as f64 - 90.0, 10.0, 1).to_string();
        let frame = dereth_tracker::protocol::parse_plugin_frame(&text).expect("telemetry");
        dereth_tracker::testing::apply_plugin_frame(&app.live, frame);
    }
    // Over the bound as one message: the map gets parts.
    let whole = app
        .live
        .snapshot_frames(dereth_tracker::Encoding::Json)
        .len();
    assert!(whole > 1, "the snapshot comes in {whole} parts");
    // The map takes the compact encoding, whose snapshot is smaller but still in parts.
    let compact = app
        .live
        .snapshot_frames(dereth_tracker::Encoding::Compact)
        .len();
    assert!(
        compact > 1 && compact < whole,
        "{compact} compact parts, {whole} JSON"
    );
    open(&app, &chrome).await;
    chrome
        .wait_for(
            &format!("return window.__dereth.players().length === {n}"),
            WAIT,
        )
        .await
        .expect("every character of every part is shown");
    let encoding = chrome
        .js("return window.__dereth.encoding()")
        .await
        .expect("encoding");
    assert_eq!(encoding, "compact");
    // An update (a compact array in a batch) moves a character on the map.
    let before = chrome
        .js("return window.__dereth.players().find((p) => p.name === 'Part 0000').x")
        .await
        .expect("x");
    let mut plugin = app.plugin().await;
    plugin.send_json(&at("Part 0000", 60.0, 10.0, 2)).await;
    chrome
        .wait_for(
            &format!(
                "return window.__dereth.players().find((p) => p.name === 'Part 0000').x !== {before}"
            ),
            WAIT,
        )
        .await
        .expect("the update moved the marker");
}

/// Issue 25: a thousand characters in ten crowded spots, zoomed out, show as badges with their
/// counts instead of piles; zooming in spreads them; the selected character is never hidden in
/// a badge and is drawn on top.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crowds_show_counts_when_zoomed_out_and_spread_when_zoomed_in() {
    let Some((chrome, app)) = map_page().await else {
        return;
    };
    let n = 1_000;
    for i in 0..n {
        let spot = (i % 10) as f64;
        let (ew, ns) = (
            -60.0 + spot * 12.0 + (i / 10 % 10) as f64 * 0.5,
            20.0 + (i / 100) as f64 * 0.5,
        );
        let text = at(&format!("Crowd {i:04}"), ew, ns, 1).to_string();
        let frame = dereth_tracker::protocol::parse_plugin_frame(&text).expect("telemetry");
        dereth_tracker::testing::apply_plugin_frame(&app.live, frame);
    }
    // A fresh page gets them all in its snapshot.
    open(&app, &chrome).await;
    chrome
        .wait_for(
            &format!("return window.__dereth.players().length === {n}"),
            WAIT,
        )
        .await
        .expect("all shown");
    let total = |m: &serde_json::Value| {
        m["singles"].as_u64().unwrap_or(0)
            + m["grouped"].as_u64().unwrap_or(0)
            + m["top"].as_array().map_or(0, |t| t.len() as u64)
    };
    let all = format!(
        "const m = window.__dereth.markerStats(); \
         return m && m.singles + m.grouped + m.top.length === {n} ? m : false;"
    );
    let out = chrome
        .wait_for(&all, WAIT)
        .await
        .expect("every marker drawn once");
    let groups = out["groups"].as_u64().unwrap_or(0);
    assert!(
        (10..=40).contains(&groups),
        "ten spots, a few badges each: {out}"
    );
    assert!(out["grouped"].as_u64() > Some(900), "{out}");
    // The selected character leaves its badge and is drawn on top.
    chrome
        .js("window.__dereth.select('Crowd 0005');")
        .await
        .expect("select");
    let selected = chrome
        .wait_for(
            "const m = window.__dereth.markerStats(); \
             return m && m.top.indexOf('Crowd 0005') >= 0 ? m : false;",
            WAIT,
        )
        .await
        .expect("the selected marker on top");
    assert!(total(&selected) >= 1, "{selected}");
    let out = chrome
        .wait_for(&all.replace("=== 1000", ">= 1"), WAIT)
        .await
        .expect("stats");
    for _ in 0..6 {
        chrome
            .js("document.getElementById('zoom-in').click();")
            .await
            .expect("zoom in");
    }
    let closer = chrome
        .wait_for(
            &format!(
                "const m = window.__dereth.markerStats(); \
                 return m && m.grouped < {} ? m : false;",
                out["grouped"]
            ),
            WAIT,
        )
        .await
        .expect("zooming in spreads the crowd");
    assert!(
        closer["singles"].as_u64() > out["singles"].as_u64(),
        "{closer}"
    );
}

/// Issue 25: a town's name stays readable above a crowd standing on it (names are drawn after
/// the markers and badges, with their outline): the name's glyph pixels with the crowd there are
/// as many as without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_town_name_stays_readable_above_a_crowd_on_it() {
    let Some(chrome) = chrome().await else {
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite)
        .await
        .expect("sqlite always runs");
    chrome
        .client
        .goto(&app.url("/?cx=34.0&cy=42.1&z=12&theme=light"))
        .await
        .expect("open the map");
    // Pixels of the town colour (#7a1f1f in the light theme) inside Holtburg's name box.
    let glyphs = "const t = window.__dereth && window.__dereth.townLabels().find((b) => b.name === 'Holtburg'); \
         if (!t) return false; \
         const c = document.getElementById('map'); \
         const dpr = c.width / c.clientWidth; \
         const d = c.getContext('2d').getImageData(Math.round(t.x * dpr), Math.round(t.y * dpr), \
           Math.round(t.w * dpr), Math.round(t.h * dpr)).data; \
         let hits = 0; \
         for (let i = 0; i < d.length; i += 4) { \
           if (Math.abs(d[i] - 122) < 16 && Math.abs(d[i + 1] - 31) < 16 && Math.abs(d[i + 2] - 31) < 16) hits++; \
         } \
         const m = window.__dereth.markerStats(); \
         return { hits, shown: window.__dereth.players().length, markers: m, box: t };";
    let alone = chrome
        .wait_for(glyphs, WAIT)
        .await
        .expect("the town's name is placed");
    let alone_hits = alone["hits"].as_u64().unwrap_or(0);
    assert!(alone_hits >= 20, "the name is drawn: {alone}");
    // Holtburg is at 33.6E 42.1N; its name is drawn just east of it. Four hundred characters
    // stand all over that spot.
    let n = 400;
    for i in 0..n {
        let (ew, ns) = (
            33.62 + (i % 40) as f64 * 0.02,
            42.1 + ((i / 40) as f64 - 5.0) * 0.01,
        );
        let text = at(&format!("Townsfolk {i:03}"), ew, ns, 1).to_string();
        let frame = dereth_tracker::protocol::parse_plugin_frame(&text).expect("telemetry");
        dereth_tracker::testing::apply_plugin_frame(&app.live, frame);
    }
    let crowded = chrome
        .wait_for(
            &format!(
                "const r = (() => {{ {glyphs} }})(); \
                 return r && r.shown === {n} && r.markers && r.markers.grouped + r.markers.singles === {n} ? r : false;"
            ),
            WAIT,
        )
        .await
        .expect("the crowd is drawn");
    let hits = crowded["hits"].as_u64().unwrap_or(0);
    assert!(
        hits * 10 >= alone_hits * 9,
        "the name's glyphs show through the crowd: {hits} pixels with it, {alone_hits} without; {crowded}"
    );
}
