// Wires the page together: the live connection feeds the character store, the map, the list and
// the chat; the toolbar switches layers and themes. `window.__dereth` exposes read-only hooks
// for the end-to-end tests and the frame-time benchmark.

import { Account, Accounts } from "./account.js";
import { Chat } from "./chat.js";
import { EventLog } from "./eventlog.js";
import { Fleet } from "./fleet.js";
import { Groups } from "./groups.js";
import { LiveConnection } from "./connection.js";
import { HEAT_RGB, MapView } from "./map.js";
import { Players } from "./players.js";
import { Replay } from "./replay.js";
import { Roster } from "./roster.js";
import { Panel, Sheet } from "./sheet.js";
import { Sidebar } from "./sidebar.js";

const $ = (id) => document.getElementById(id);

const players = new Players();
let selected = null;

/** The characters shown: live ones, or the world of the replay. */
function shownPlayers() { return replay.active ? replay.players : players; }

function select(name) {
  selected = name || null;
  map.selected = selected;
  map.follow = !!selected;
  const p = selected && shownPlayers().get(selected);
  if (p) map.centerOn(p.x, p.y);
  sidebar.select(selected);
  chat.select(selected);
  sheet.selected(selected);
  map.dirty = true;
}

function showTooltip(p, x, y) {
  const tip = $("tooltip");
  if (!p) { tip.hidden = true; return; }
  const d = p.data;
  const lines = [p.name];
  if (d.char_tag) lines.push(d.char_tag);
  // The state once, and VTank's state beside it only when it says something else.
  const state = shownPlayers().state(p);
  const vt = String(d.vt_state || "");
  const offline = shownPlayers().offlineFor(p);
  lines.push(offline || (vt && vt.toLowerCase() !== state ? `${state} · ${vt}` : state));
  lines.push(`kills ${d.total_kills ?? d.kills ?? 0} · ${Math.round(Number(d.kills_per_hour) || 0)}/h`);
  tip.textContent = lines.join("\n");
  tip.hidden = false;
  tip.style.left = `${Math.min(x + 14, map.width - tip.offsetWidth - 4)}px`;
  tip.style.top = `${Math.max(4, y - tip.offsetHeight - 8)}px`;
}

const map = new MapView($("map"), players, {
  onSelect: select,
  onCursor: (text) => { $("cursor").textContent = text; },
  onHover: showTooltip,
});
const sidebar = new Sidebar(players, {
  list: $("players"), search: $("search"), sort: $("sort"), details: $("details"), count: $("count"),
  noMatch: $("no-match"),
}, {
  onSelect: select,
  onFilter: () => { map.dirty = true; },
  onPick: (names) => chat.pick(names),
  canReadCommands: () => account.me?.role === "commander" || account.me?.role === "admin",
});
const sheet = new Sheet({
  sheet: $("sheet"), handle: $("sheet-handle"), tabs: document.querySelectorAll("#sheet [role=tab]"),
});
const chat = new Chat({
  log: $("chat-log"), form: $("command-form"), input: $("command"),
  target: $("command-target"), result: $("command-result"), results: $("broadcast-results"),
}, {
  onCommand: (player, command) => connection.send({
    type: "command", player_name: player, command, ...(connection.token ? { token: connection.token } : {}),
  }),
  onBroadcast: (names, command) => connection.send({
    type: "broadcast", player_names: names.slice(0, 200), command,
    ...(connection.token ? { token: connection.token } : {}),
  }),
});

function toast(text, character) {
  // A replay shows the past: live pop-ups would pass for part of it.
  if (replay.active) return;
  const div = document.createElement(character ? "button" : "div");
  div.className = "toast";
  div.textContent = text;
  if (character) {
    div.type = "button";
    div.title = `Show ${character}`;
    div.addEventListener("click", () => select(character));
  }
  $("toasts").append(div);
  setTimeout(() => div.remove(), 8000);
  while ($("toasts").childElementCount > 5) $("toasts").firstElementChild.remove();
}

let chatBacklogShown = false;

/** Characters seen within the offline keep (at most the last hour) but not live: listed and on
 * the map greyed, "offline N min", after a reload too. */
async function loadRecentlyOffline() {
  const lookback = Math.min(3600, Math.round(players.offlineKeepMs / 1000));
  if (lookback < 1) return;
  try {
    const now = new Date().toISOString();
    const world = await getJson(`/world?at=${encodeURIComponent(now)}&lookback=${lookback}`);
    players.addOffline(world.characters || []);
  } catch (_) { /* the live map works without them */ }
}

const handlers = {
  snapshot(frame) {
    players.reset(frame.players || []);
    loadRecentlyOffline();
    // The recent chat lines, once per page (later snapshots are resyncs).
    if (!chatBacklogShown && Array.isArray(frame.chat)) {
      for (const line of frame.chat) chat.add(line);
      chatBacklogShown = true;
    }
    if (replay.active) return;
    map.dirty = true;
    sidebar.render(true);
    if (map.showTrails) loadTrails();
    restoreSelection();
  },
  telemetry(frame) {
    const before = players.get(frame.character_name);
    const died = before && Number(frame.deaths) > Number(before.data.deaths);
    players.update(frame);
    if (died) alertUser(`${frame.character_name} died`);
  },
  offline(frame) { players.offline(frame.character_name); },
  chat(frame) { chat.add(frame); },
  rare(frame) {
    toast(`${frame.character_name} found ${frame.name}!`, frame.character_name);
    alertUser(`${frame.character_name} found ${frame.name}!`);
    chat.system(`${frame.character_name} found a rare: ${frame.name}`);
    const p = players.get(frame.character_name);
    if (p) { p.data = { ...p.data, total_rares: frame.total_rares, session_rares: frame.session_rares }; players.version++; }
  },
  spawn() {},
  vitals(frame) { players.vitals(frame); },
  character_stats(frame) { players.sheet(frame); },
  portal(frame) { players.portal(frame); map.dirty = true; },
  command_result(frame) {
    chat.commandResult(frame);
    sidebar.details.commandSent(frame.player_name);
    sidebar.render(true);
  },
  broadcast_result(frame) {
    chat.broadcastResult(frame);
    for (const r of frame.results || []) sidebar.details.commandSent(r.player_name);
    sidebar.render(true);
  },
  error(frame) { chat.showResult("error", frame.error); },
};

// What the header says: replay (and its time) over everything, else the connection's state,
// counting down to the next try while it is lost. Without a connection the map and the list
// are dimmed: what they show is no longer current.
const status = { state: "connecting", retryAt: 0 };
function showStatus() {
  const el = $("status");
  const lost = status.state !== "open";
  document.body.dataset.connection = lost ? "lost" : "open";
  if (replay.active) {
    el.dataset.state = "replay";
    el.textContent = `REPLAY ${new Date(replay.at).toLocaleString()}`;
    return;
  }
  el.dataset.state = status.state;
  const seconds = Math.max(0, Math.ceil((status.retryAt - Date.now()) / 1000));
  el.textContent = status.state === "open" ? "live"
    : status.state === "retrying" ? (seconds > 0 ? `reconnecting in ${seconds}s` : "reconnecting…")
      : status.state === "signed-out" ? "signed out" : "connecting…";
}
setInterval(showStatus, 500);

const connection = new LiveConnection({
  onFrame: (frame) => handlers[frame.type]?.(frame),
  onStatus: (state, seconds) => {
    status.state = state;
    status.retryAt = Date.now() + (seconds || 0) * 1000;
    showStatus();
  },
  // A socket that ends may have ended because this browser was signed out, removed or lowered
  // (or was never allowed): ask again who it is before trying again.
  onClose: () => { checkAccess(); },
});

// --- who is looking ----------------------------------------------------------------------------

const account = new Account({
  login: $("login"), loginForm: $("login-form"), name: $("login-name"), password: $("login-password"),
  submit: $("login-submit"), error: $("login-error"), why: $("login-why"),
  who: $("who"), signIn: $("sign-in"), signOut: $("sign-out"), accountsOpen: $("accounts-open"),
});
new Accounts({
  dialog: $("accounts"), open: $("accounts-open"), body: $("accounts-body"), add: $("account-add"),
  name: $("account-name"), role: $("account-role"), password: $("account-password"),
  message: $("accounts-message"), audit: $("audit-body"), older: $("audit-older"),
});

/** Shows the command line only to those who may command (the legacy `?token=` counts). */
function applyRights(me) {
  $("command-form").hidden = !(me.may_command || connection.token);
}

let checking = null;
/** Asks the server who this browser is now; without the right to read, signs the map out. */
function checkAccess() {
  checking = checking || account.load().then((me) => {
    checking = null;
    applyRights(me);
    if (!me.may_read) {
      connection.stop();
      account.showLogin(me.accounts_exist ? "Sign in to see the map." : "This tracker needs you to sign in.");
    }
    return me;
  });
  return checking;
}

// --- layers -------------------------------------------------------------------------------------

async function getJson(path) {
  const resp = await fetch(path);
  if (resp.status === 401) checkAccess();
  if (!resp.ok) {
    // The server says why (its `error`); the URL is no use to a reader.
    let reason = `the server answered ${resp.status}`;
    try {
      const body = await resp.json();
      if (body && typeof body.error === "string") reason = body.error;
    } catch (_) { /* not JSON: keep the status */ }
    throw new Error(reason);
  }
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

/** Heatmap cells follow the zoom: about 8 pixels or more on screen, in whole map units. */
function heatBin() {
  const units = 8 / map.scale;
  return [2, 4, 6, 10, 20].find((b) => b >= units) || 20;
}

/** One legend entry per heatmap shown, its swatch in the colour its cells are drawn in. */
function updateHeatLegend() {
  const legend = $("heat-legend");
  legend.replaceChildren();
  for (const kind of ["spawns", "rares"]) {
    const data = map.heat[kind];
    if (!data) continue;
    const max = data.cells.reduce((m, c) => Math.max(m, c.count), 0);
    const entry = document.createElement("span");
    entry.dataset.kind = kind;
    const swatch = document.createElement("i");
    swatch.className = "swatch heat";
    const rgb = HEAT_RGB[kind];
    swatch.style.background = `linear-gradient(90deg, rgba(${rgb}, 0.15), rgba(${rgb}, 0.8))`;
    entry.append(swatch, `${kind}: 1 to ${max} per ${data.bin}×${data.bin} cell`);
    legend.append(entry);
  }
  legend.hidden = legend.childElementCount === 0;
}

async function loadHeat(kind) {
  const box = $(kind === "spawns" ? "spawn-heat" : "rare-heat");
  if (!box.checked) { map.setHeat(kind, null); updateHeatLegend(); return; }
  const from = new Date(Date.now() - Number($("heat-range").value) * 1000).toISOString();
  try {
    map.setHeat(kind, await getJson(`/${kind}/heatmap?bin=${heatBin()}&from=${encodeURIComponent(from)}`));
  } catch (err) {
    chat.system(`${kind} heatmap unavailable: ${err.message}`);
  }
  updateHeatLegend();
}

$("trails-toggle").addEventListener("change", (e) => {
  map.showTrails = e.target.checked;
  map.dirty = true;
  if (map.showTrails) { if (replay.active) replay.load(); else loadTrails(); }
});
$("trails-mode").addEventListener("change", (e) => { map.trailMode = e.target.value; map.dirty = true; });
$("chat-filter").addEventListener("input", (e) => chat.filter(e.target.value));
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && selected) select(null);
  const typing = e.target.closest?.("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey;
  if (typing) return;
  if (e.key === "/") { $("search").focus(); e.preventDefault(); }
  if (e.key === "t") $("trails-toggle").click();
  if (e.key === "r") $("replay-toggle").click();
  if (e.key === "?") $("help").showModal();
});
$("help-toggle").addEventListener("click", () => $("help").showModal());
$("color-mode").addEventListener("change", (e) => {
  players.setColorMode(e.target.value);
  replay.players.setColorMode(e.target.value);
  map.dirty = true;
  updateTagLegend();
});

const TAGS_SHOWN = 8;
/** In guild-tag colours, the legend names the tags on the map with their colour (the most
 * common first). */
function updateTagLegend() {
  const legend = $("tag-legend");
  if ($("color-mode").value !== "tag") { legend.hidden = true; legend.replaceChildren(); return; }
  const tags = new Map(); // tag -> { color, count }
  for (const p of shownPlayers().values()) {
    const tag = String(p.data.char_tag || "");
    const t = tags.get(tag) || { color: p.color, count: 0 };
    t.count++;
    tags.set(tag, t);
  }
  const sorted = [...tags].sort((a, b) => b[1].count - a[1].count || a[0].localeCompare(b[0]));
  const entries = sorted.slice(0, TAGS_SHOWN).map(([tag, t]) => {
    const span = document.createElement("span");
    span.dataset.tag = tag;
    const swatch = document.createElement("i");
    swatch.className = "swatch";
    swatch.style.background = t.color;
    span.append(swatch, `${tag || "no tag"} (${t.count})`);
    return span;
  });
  if (sorted.length > TAGS_SHOWN) {
    const more = document.createElement("span");
    more.textContent = `+${sorted.length - TAGS_SHOWN} more tags`;
    entries.push(more);
  }
  legend.replaceChildren(...entries);
  legend.hidden = entries.length === 0;
}
setInterval(updateTagLegend, 2000);
let heatScale = map.scale;
setInterval(() => {
  // Reload the heatmaps when the zoom changed their bin.
  if (map.scale !== heatScale) {
    heatScale = map.scale;
    if (map.heat.spawns || map.heat.rares) { loadHeat("spawns"); loadHeat("rares"); }
  }
}, 1000);
$("trails-window").addEventListener("change", () => { if (map.showTrails) loadTrails(); });
$("spawn-heat").addEventListener("change", () => loadHeat("spawns"));
$("rare-heat").addEventListener("change", () => loadHeat("rares"));
$("heat-range").addEventListener("change", () => { loadHeat("spawns"); loadHeat("rares"); });
setInterval(() => { loadHeat("spawns"); loadHeat("rares"); }, 60000);

$("zoom-in").addEventListener("click", () => map.zoomAt(1.5));
$("zoom-out").addEventListener("click", () => map.zoomAt(1 / 1.5));
$("zoom-reset").addEventListener("click", () => map.reset());

// --- the phone's menu: every toolbar control, in a panel under the bar -------------------------

$("menu-toggle").addEventListener("click", () => {
  const bar = document.querySelector("header.bar");
  const open = bar.dataset.menu !== "open";
  bar.dataset.menu = open ? "open" : "closed";
  $("menu-toggle").setAttribute("aria-expanded", String(open));
});
// A button in the panel that opens something closes the panel.
$("bar-controls").addEventListener("click", (e) => {
  if (e.target.closest("button")) {
    document.querySelector("header.bar").dataset.menu = "closed";
    $("menu-toggle").setAttribute("aria-expanded", "false");
  }
});

// --- theme --------------------------------------------------------------------------------------

const params = new URLSearchParams(location.search);
// How long offline characters stay listed and on the map, greyed: `?offline=MINUTES` (0 to
// 1440, default 60).
const offlineMinutes = Number(params.get("offline"));
if (params.has("offline") && Number.isFinite(offlineMinutes) && offlineMinutes >= 0) {
  players.offlineKeepMs = Math.min(offlineMinutes, 1440) * 60000;
}
// Forget characters offline past that, and keep "offline N min" current.
setInterval(() => {
  if (players.sweep() === 0 && [...players.values()].some((p) => p.offlineAt)) players.version++;
}, 15000);
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

// --- alerts: an optional desktop notification and a short tone for rares and deaths ------------

let audio = null;
function alertUser(text) {
  if (!$("notify-toggle").checked) return;
  if ("Notification" in window && Notification.permission === "granted") {
    new Notification("Dereth Tracker", { body: text });
  }
  try {
    audio = audio || new AudioContext();
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.value = 0.05;
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.15);
  } catch { /* no audio: the toast and the notification are enough */ }
}
$("notify-toggle").addEventListener("change", (e) => {
  if (e.target.checked && "Notification" in window && Notification.permission === "default") {
    Notification.requestPermission();
  }
});

// --- roster and leaderboard ----------------------------------------------------------------------

const eventsPanel = new Panel(sheet, {
  tab: "events", dialog: $("events"), body: $("events-body"), slot: $("sheet-events"),
}, () => eventLog.load());
const eventLog = new EventLog({
  open: $("events-open"), kind: $("events-kind"), mine: $("events-mine"),
  list: $("events-list"), summary: $("events-summary"),
}, eventsPanel, {
  getJson,
  selected: () => selected,
  onSelect: (name) => select(name),
  // A past event: the map as it was a little before it, the character selected.
  onReplay: (name, at) => { pendingSelection = name; replay.enter(at - 30000); select(name); },
});
// --- the fleet board and saved groups -----------------------------------------------------------

const fleetPanel = new Panel(sheet, {
  tab: "fleet", dialog: $("fleet"), body: $("fleet-body"), slot: $("sheet-fleet"),
}, () => { fleet.render(true); groups.load(); });
/** Picks exactly `names` for one command to all (the list, the board and the command line),
 * and goes to the command line. */
function pickAll(names) {
  sidebar.pick(names);
  fleetPanel.done();
  if (sheet.active()) sheet.show("chat");
  if (!$("command-form").hidden) $("command").focus();
}
const fleet = new Fleet({
  counts: $("fleet-counts"), table: $("fleet-table"), rows: $("fleet-rows"), pick: $("fleet-pick"),
  message: $("fleet-message"),
}, fleetPanel, {
  players: shownPlayers,
  picked: () => sidebar.picked,
  onSelect: (name) => select(name),
  onToggle: (name) => {
    if (sidebar.picked.has(name)) sidebar.picked.delete(name); else sidebar.picked.add(name);
    sidebar.pickChanged();
  },
  onPick: pickAll,
});
const groups = new Groups({
  select: $("fleet-group"), name: $("fleet-group-name"), save: $("fleet-save"), remove: $("fleet-delete"),
}, { picked: () => [...sidebar.picked], onPick: pickAll, say: (text) => fleet.say(text) });
$("fleet-open").addEventListener("click", () => fleetPanel.open());

new Roster({
  dialog: $("roster"), open: $("roster-open"), body: $("roster-body"), summary: $("roster-summary"),
  by: $("board-by"), range: $("board-range"), board: $("board"),
}, {
  getJson,
  onSelect: (name) => select(name),
  isLive: (name) => { const p = players.get(name); return !!p && !p.offlineAt; },
});

// --- replay -------------------------------------------------------------------------------------

const replay = new Replay({
  bar: $("replay-bar"), toggle: $("replay-toggle"), live: $("replay-live"), play: $("replay-play"),
  back: $("replay-back"), forward: $("replay-forward"), speed: $("replay-speed"),
  slider: $("replay-slider"), time: $("replay-time"), marks: $("replay-marks"),
}, {
  getJson,
  trailsWanted: () => map.showTrails,
  onEnter: (worldPlayers) => {
    map.players = worldPlayers; sidebar.setPlayers(worldPlayers); map.dirty = true;
    chat.system("replay: the chat below stays live");
    showStatus();
  },
  onLeave: () => {
    showStatus();
    map.players = players;
    sidebar.setPlayers(players);
    map.dirty = true;
    if (map.showTrails) loadTrails();
  },
  // The list catches up on its own schedule (players.version changed); a forced rebuild at every
  // answer would cost a playing replay its frame rate.
  onWorld: () => { map.dirty = true; restoreSelection(); },
});

// --- shareable URL: selection, centre, zoom, layers and replay time ------------------------------

let pendingSelection = params.get("sel");
// `?offline=` as given, kept in the URL.
let offlineParam = null;
function restoreSelection() {
  if (pendingSelection && shownPlayers().get(pendingSelection)) {
    const name = pendingSelection;
    pendingSelection = null;
    select(name);
  }
}

function applyUrlState() {
  const num = (k) => (params.has(k) && Number.isFinite(Number(params.get(k))) ? Number(params.get(k)) : null);
  const cx = num("cx"), cy = num("cy"), z = num("z");
  if (z !== null && z > 0) map.setZoom(z);
  if (cx !== null) map.cx = cx;
  if (cy !== null) map.cy = cy;
  map.clampCenter();
  if (params.get("trails") === "1") { $("trails-toggle").checked = true; map.showTrails = true; }
  if (params.get("trails") === "selected") {
    $("trails-toggle").checked = true; map.showTrails = true;
    $("trails-mode").value = "selected"; map.trailMode = "selected";
  }
  // Trail length, heatmaps and their range, search and sort: a shared link shows the same.
  const pick = (id, key) => {
    const value = params.get(key);
    const el = $(id);
    if (value !== null && [...el.options].some((o) => o.value === value)) el.value = value;
  };
  pick("trails-window", "trail");
  pick("heat-range", "heat_range");
  pick("sort", "sort");
  pick("color-mode", "color");
  if ($("color-mode").value !== "character") $("color-mode").dispatchEvent(new Event("change"));
  const heat = (params.get("heat") || "").split(",");
  for (const [kind, id] of [["spawns", "spawn-heat"], ["rares", "rare-heat"]]) {
    if (heat.includes(kind)) { $(id).checked = true; loadHeat(kind); }
  }
  const q = params.get("q");
  if (q) { $("search").value = q.slice(0, 64); sidebar.applyFilter(); }
  if (params.has("offline")) offlineParam = params.get("offline");
  const at = Date.parse(params.get("at") || "");
  if (Number.isFinite(at)) replay.enter(at);
  map.dirty = true;
}

function urlState() {
  const out = new URLSearchParams();
  if (selected) out.set("sel", selected);
  if (!map.follow || !selected) {
    out.set("cx", map.cx.toFixed(2));
    out.set("cy", map.cy.toFixed(2));
  }
  out.set("z", (map.scale / map.fitScale).toFixed(2));
  if (map.showTrails) out.set("trails", map.trailMode === "selected" ? "selected" : "1");
  if ($("trails-window").value !== "600") out.set("trail", $("trails-window").value);
  const heat = [["spawns", "spawn-heat"], ["rares", "rare-heat"]].filter(([, id]) => $(id).checked).map(([k]) => k);
  if (heat.length) out.set("heat", heat.join(","));
  if ($("heat-range").value !== "86400") out.set("heat_range", $("heat-range").value);
  if ($("search").value.trim()) out.set("q", $("search").value.trim());
  if ($("sort").value !== "name") out.set("sort", $("sort").value);
  if ($("color-mode").value !== "character") out.set("color", $("color-mode").value);
  if (offlineParam !== null) out.set("offline", offlineParam);
  if (replay.active) out.set("at", new Date(replay.at).toISOString());
  const theme = document.documentElement.dataset.theme;
  if (theme) out.set("theme", theme);
  return out.toString();
}

setInterval(() => {
  const next = urlState();
  if (`?${next}` !== location.search) history.replaceState(null, "", `${location.pathname}?${next}`);
}, 500);

// Zoomed in far enough that most of Dereth is off screen, the map asks the server for updates
// about the area in view only (with half a screen of margin each side, in whole map units so a
// small pan changes nothing); the server still sends every character's latest position every
// 10 s, which keeps the list and the rest of the map current.
const WATCH_ZOOM = 6;
function watchedArea() {
  if (replay.active || map.scale / map.fitScale < WATCH_ZOOM) return null;
  const a = map.unproject(0, 0);
  const b = map.unproject(map.width, map.height);
  const w = (b.ew - a.ew) / 2;
  const h = (a.ns - b.ns) / 2;
  return {
    ew_min: Math.floor(a.ew - w), ew_max: Math.ceil(b.ew + w),
    ns_min: Math.floor(b.ns - h), ns_max: Math.ceil(a.ns + h),
  };
}
setInterval(() => {
  // Trails drawn while an area was out of view have gaps: load them again.
  if (connection.watch(watchedArea()) && map.showTrails && !replay.active) loadTrails();
}, 500);

getJson("data/towns.json").then((d) => map.setTowns(d.towns || [])).catch(() => {});
getJson("data/map.json").then((d) => map.setBackgroundImage(d.background)).catch(() => {});
applyUrlState();
// The map connects once the server says this browser may read (else the sign-in dialog shows).
checkAccess().then((me) => { if (me.may_read) connection.connect(); });

window.__dereth = {
  watching: () => connection.watching,
  encoding: () => (connection.columns ? "compact" : "json"),
  project: (ew, ns) => map.project(ew, ns),
  players: () => [...shownPlayers().values()].map((p) => ({
    name: p.name, color: p.color, x: p.x, y: p.y, state: players.state(p), alpha: p.alpha ?? 1,
    trailBreaks: p.trail.filter((pt) => pt[3]).length,
  })),
  frameStats: () => map.frameStats(),
  labelStats: () => map.labelStats,
  markerStats: () => map.markerStats,
  townLabels: () => (map.townBoxes || []).filter((b) => b.name).map(({ name, x, y, w, h }) => ({ name, x, y, w, h })),
  trailSegments: (name) => map.trailSegments(name),
  replay: {
    enter: (iso) => replay.enter(Date.parse(iso)),
    seek: (iso, force = true) => replay.seek(Date.parse(iso), force),
    active: () => replay.active,
    loadedAt: () => (replay.loadedAt === null ? null : new Date(replay.loadedAt).toISOString()),
    leave: () => replay.leave(),
  },
  view: () => ({ cx: map.cx, cy: map.cy, zoom: map.scale / map.fitScale, selected, trails: map.showTrails }),
  me: () => account.me,
  resetFrameStats: () => { map.frameTimes = []; map.drawTimes = []; },
  select,
};
