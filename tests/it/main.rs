//! Every integration test in one crate (one binary to build and link instead of twelve), a
//! module per area, sharing the `common` harness: a real tracker on a loopback port with its own
//! SQLite or PostgreSQL database, real plugin and browser websockets, and headless Chromium.

#[macro_use]
mod common;

// The headless-Chromium harness is shared with the `dereth-bench ui` benchmark (which alone
// takes screenshots).
#[path = "../../src/bin/dereth-bench/chrome.rs"]
#[allow(dead_code)]
mod chrome;

mod alerts;
mod backup;
mod broadcast;
mod browser;
mod clocks;
mod cluster;
mod compact;
mod console;
mod crowds;
mod current_plugin;
mod durability;
mod event_formats;
mod event_log;
mod fleet;
mod groups;
mod history;
mod identity;
mod integrity;
mod layout;
mod leaderboard;
mod map_scale;
mod operations;
mod process;
mod prometheus_rules;
mod query_api;
mod security;
mod simulate;
mod tracker;
mod upgrade;
