// Wires the page together: the live connection feeds the character store, the map, the list and
// the chat; the toolbar switches layers and themes. `window.__dereth` exposes read-only hooks
// for the end-to-end tests and the frame-time benchmark.

import { Chat } from "./chat.js";
import { LiveConnection } from "./connection.js";
import { MapView } from "./map.js";
import { Players } from "./players.js";
import { Sidebar } from "./sidebar.js";

const $ = (id) => document.getElementById(id);

const players = new Players();
let selected = null;

function select(name) {
  selected = name;
  map.selected = name;
  map.follow = true;
  const p = players.get(name);
  if (p) map.centerOn(p.x, p.y);
  sidebar.select(name);
  chat.select(name);
  map.dirty = true;
}

const map = new MapView($("map"), players, {
  onSelect: select,
  onCursor: (text) => { $("cursor").textContent = text; },
});
const sidebar = new Sidebar(players, {
  list: $("players"), search: $("search"), sort: $("sort"), details: $("details"), count: $("count"),
}, { onSelect: select });
const chat = new Chat({
  log: $("chat-log"), form: $("command-form"), input: $("command"),
  target: $("command-target"), result: $("command-result"),
}, {
  onCommand: (player, command) => connection.send({
    type: "command", player_name: player, command, ...(connection.token ? { token: connection.token } : {}),
  }),
});

function toast(text) {
  const div = document.createElement("div");
  div.className = "toast";
  div.textContent = text;
  $("toasts").append(div);
  setTimeout(() => div.remove(), 8000);
  while ($("toasts").childElementCount > 5) $("toasts").firstElementChild.remove();
}

const handlers = {
  snapshot(frame) {
    players.reset(frame.players || []);
    map.dirty = true;
    sidebar.render(true);
    if (map.showTrails) loadTrails();
  },
  telemetry(frame) { players.update(frame); },
  offline(frame) { players.offline(frame.character_name); },
  chat(frame) { chat.add(frame); },
  rare(frame) {
    toast(`${frame.character_name} found ${frame.name}!`);
    chat.system(`${frame.character_name} found a rare: ${frame.name}`);
    const p = players.get(frame.character_name);
    if (p) { p.data = { ...p.data, total_rares: frame.total_rares, session_rares: frame.session_rares }; players.version++; }
  },
  spawn() {},
  vitals(frame) { players.vitals(frame); },
  character_stats(frame) { players.sheet(frame); },
  portal(frame) { players.portal(frame); map.dirty = true; },
  command_result(frame) { chat.commandResult(frame); },
  error(frame) { chat.showResult("error", frame.error); },
};

const connection = new LiveConnection({
  onFrame: (frame) => handlers[frame.type]?.(frame),
  onStatus: (state, seconds) => {
    const el = $("status");
    el.dataset.state = state;
    el.textContent = state === "open" ? "live"
      : state === "retrying" ? `reconnecting in ${seconds}s` : "connecting…";
  },
});

// --- layers -------------------------------------------------------------------------------------

async function getJson(path) {
  const resp = await fetch(path);
  if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
  return resp.json();
}

async function loadTrails() {
  const seconds = Number($("trails-window").value);
  players.trailWindowMs = seconds * 1000;
  const step = Math.max(2, Math.round(seconds / 300));
  try {
    const data = await getJson(`/trails?seconds=${seconds}&step=${step}`);
    players.setTrails(data.trails || []);
    map.dirty = true;
  } catch (err) {
    chat.system(`trails unavailable: ${err.message}`);
  }
}

async function loadHeat(kind) {
  const box = $(kind === "spawns" ? "spawn-heat" : "rare-heat");
  if (!box.checked) { map.setHeat(kind, null); return; }
  const from = new Date(Date.now() - Number($("heat-range").value) * 1000).toISOString();
  try {
    map.setHeat(kind, await getJson(`/${kind}/heatmap?bin=2&from=${encodeURIComponent(from)}`));
  } catch (err) {
    chat.system(`${kind} heatmap unavailable: ${err.message}`);
  }
}

$("trails-toggle").addEventListener("change", (e) => {
  map.showTrails = e.target.checked;
  map.dirty = true;
  if (map.showTrails) loadTrails();
});
$("trails-window").addEventListener("change", () => { if (map.showTrails) loadTrails(); });
$("spawn-heat").addEventListener("change", () => loadHeat("spawns"));
$("rare-heat").addEventListener("change", () => loadHeat("rares"));
$("heat-range").addEventListener("change", () => { loadHeat("spawns"); loadHeat("rares"); });
setInterval(() => { loadHeat("spawns"); loadHeat("rares"); }, 60000);

$("zoom-in").addEventListener("click", () => map.zoomAt(1.5));
$("zoom-out").addEventListener("click", () => map.zoomAt(1 / 1.5));
$("zoom-reset").addEventListener("click", () => map.reset());

// --- theme --------------------------------------------------------------------------------------

const params = new URLSearchParams(location.search);
const savedTheme = params.get("theme") || localStorage.getItem("dereth-theme");
if (savedTheme === "light" || savedTheme === "dark") document.documentElement.dataset.theme = savedTheme;
$("theme-toggle").addEventListener("click", () => {
  const dark = document.documentElement.dataset.theme === "dark"
    || (!document.documentElement.dataset.theme && matchMedia("(prefers-color-scheme: dark)").matches);
  const next = dark ? "light" : "dark";
  document.documentElement.dataset.theme = next;
  localStorage.setItem("dereth-theme", next);
  map.invalidateTheme();
});

// --- start --------------------------------------------------------------------------------------

getJson("data/towns.json").then((d) => map.setTowns(d.towns || [])).catch(() => {});
getJson("data/map.json").then((d) => map.setBackgroundImage(d.background)).catch(() => {});
connection.connect();

window.__dereth = {
  project: (ew, ns) => map.project(ew, ns),
  players: () => [...players.values()].map((p) => ({
    name: p.name, color: p.color, x: p.x, y: p.y, state: players.state(p), alpha: p.alpha ?? 1,
    trailBreaks: p.trail.filter((pt) => pt[3]).length,
  })),
  frameStats: () => map.frameStats(),
  resetFrameStats: () => { map.frameTimes = []; map.drawTimes = []; },
  select,
};
