// The fleet board: every character at a glance. Counts by state (active, idle, dead, stuck, low
// health, stamina or mana, offline within the keep), each a filter; a table of every character
// with its vitals as bars, kills per hour, state and last seen, sortable by any column. Rows are
// created once per character and updated in place (a click lands whatever arrives meanwhile);
// text goes in through textContent only.

import { formatNumber } from "./format.js";

/** Below this percentage a vital counts as low. */
export const LOW_VITAL = 30;
const REFRESH_MS = 1000;
const MAX_ROWS = 500; // rows drawn at once; a filter narrows the rest

const VITALS = [
  ["health", "health_percentage"],
  ["stamina", "stamina_percentage"],
  ["mana", "mana_percentage"],
];

/** The filters, in the order their counts are shown. */
const FILTERS = [
  ["all", "all"],
  ["active", "active"],
  ["idle", "idle"],
  ["dead", "dead"],
  ["stuck", "stuck"],
  ["low-health", "low health"],
  ["low-stamina", "low stamina"],
  ["low-mana", "low mana"],
  ["offline", "offline"],
];

const STATE_RANK = { dead: 0, active: 1, idle: 2, offline: 3 };

function vital(p, key) {
  const value = Number(p.vitals?.[key]);
  return Number.isFinite(value) ? Math.max(0, Math.min(100, value)) : null;
}

/** How long ago `ms` (epoch milliseconds) was, shortly. */
function ago(ms, now = Date.now()) {
  if (!Number.isFinite(ms)) return "–";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  return s < 60 ? `${s} s ago` : s < 3600 ? `${Math.floor(s / 60)} min ago` : `${Math.floor(s / 3600)} h ago`;
}

export class Fleet {
  /** `players()`: the characters shown (live or the replay's); `picked()`: the set picked for
   * a command; `onSelect(name)`, `onToggle(name)` (ctrl/shift-click), `onPick(names)`. */
  constructor(el, panel, { players, picked, onSelect, onToggle, onPick }) {
    this.el = el;
    this.panel = panel;
    this.players = players;
    this.picked = picked;
    this.on = { onSelect, onToggle, onPick };
    this.filter = "all";
    this.sortKey = "name";
    this.descending = false;
    this.rowEls = new Map();
    this.countEls = new Map();
    this.shownVersion = -1;
    this.lastRender = 0;
    for (const [key, label] of FILTERS) {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.filter = key;
      b.setAttribute("aria-pressed", String(key === "all"));
      const count = document.createElement("b");
      count.textContent = "0";
      b.append(`${label} `, count);
      b.addEventListener("click", () => this.setFilter(key));
      el.counts.append(b);
      this.countEls.set(key, count);
    }
    el.table.querySelector("thead").addEventListener("click", (e) => {
      const key = e.target.closest("button[data-sort]")?.dataset.sort;
      if (!key) return;
      this.descending = key === this.sortKey ? !this.descending : key !== "name" && key !== "state";
      this.sortKey = key;
      this.render(true);
    });
    el.rows.addEventListener("click", (e) => {
      const tr = e.target.closest("tr[data-name]");
      if (!tr) return;
      if (e.ctrlKey || e.metaKey || e.shiftKey) {
        this.on.onToggle(tr.dataset.name);
        this.render(true);
        return;
      }
      panel.done();
      this.on.onSelect(tr.dataset.name);
    });
    el.pick.addEventListener("click", () => {
      const all = this.rows().map((p) => p.name);
      // One command reaches at most 200 characters (the broadcast's bound).
      const names = all.slice(0, 200);
      this.say(names.length === 0 ? "nothing to pick"
        : all.length > names.length ? `the first ${names.length} of ${all.length} picked (a command reaches at most 200)`
          : `${names.length} picked`);
      this.on.onPick(names);
      this.render(true);
    });
    setInterval(() => { if (panel.visible()) this.render(false); }, REFRESH_MS);
  }

  say(text) { this.el.message.textContent = text; }

  setFilter(key) {
    this.filter = key;
    for (const b of this.el.counts.children) b.setAttribute("aria-pressed", String(b.dataset.filter === key));
    this.render(true);
  }

  /** The filters `p` matches (besides "all"). */
  matches(p, now) {
    const players = this.players();
    const state = players.state(p, now);
    const out = new Set([state]);
    if (players.attention(p, now).flag === "stuck") out.add("stuck");
    if (state !== "offline") {
      for (const [name, key] of VITALS) {
        const v = vital(p, key);
        if (v !== null && v < LOW_VITAL && state !== "dead") out.add(`low-${name}`);
      }
    }
    return out;
  }

  /** The characters the filter keeps, in the chosen order. */
  rows(now = performance.now()) {
    const players = this.players();
    const all = [...players.values()];
    const kept = this.filter === "all" ? all : all.filter((p) => this.matches(p, now).has(this.filter));
    const value = {
      name: (p) => p.name.toLowerCase(),
      state: (p) => STATE_RANK[players.state(p, now)] ?? 9,
      health: (p) => vital(p, "health_percentage") ?? -1,
      stamina: (p) => vital(p, "stamina_percentage") ?? -1,
      mana: (p) => vital(p, "mana_percentage") ?? -1,
      kph: (p) => Number(p.data.kills_per_hour) || 0,
      seen: (p) => Date.parse(p.data.timestamp) || 0,
    }[this.sortKey] || ((p) => p.name.toLowerCase());
    const dir = this.descending ? -1 : 1;
    return kept.sort((a, b) => {
      const x = value(a), y = value(b);
      return (x < y ? -dir : x > y ? dir : 0) || a.name.localeCompare(b.name);
    });
  }

  render(force) {
    const players = this.players();
    // Only "last seen" changes without a frame: redraw for it every few seconds.
    const stale = performance.now() - this.lastRender > 5000;
    if (!force && !stale && players.version === this.shownVersion) return;
    this.shownVersion = players.version;
    this.lastRender = performance.now();
    const now = performance.now();
    const counts = new Map(FILTERS.map(([k]) => [k, 0]));
    for (const p of players.values()) {
      counts.set("all", counts.get("all") + 1);
      for (const m of this.matches(p, now)) counts.set(m, (counts.get(m) || 0) + 1);
    }
    for (const [key, el] of this.countEls) {
      const text = String(counts.get(key) || 0);
      if (el.textContent !== text) el.textContent = text;
    }
    for (const th of this.el.table.querySelectorAll("th")) {
      const key = th.querySelector("button")?.dataset.sort;
      if (key === this.sortKey) th.setAttribute("aria-sort", this.descending ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
    }
    const rows = this.rows(now);
    const wanted = rows.slice(0, MAX_ROWS).map((p) => this.row(p, now));
    const body = this.el.rows;
    wanted.forEach((tr, i) => { if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null); });
    while (body.children.length > wanted.length) body.lastElementChild.remove();
    const kept = new Set(wanted);
    for (const [name, tr] of this.rowEls) if (!kept.has(tr)) this.rowEls.delete(name);
    if (rows.length > MAX_ROWS) this.say(`${rows.length - MAX_ROWS} more: choose a filter to narrow the board`);
  }

  /** The row of `p`, created once and updated in place. */
  row(p, now) {
    let tr = this.rowEls.get(p.name);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.name = p.name;
      const name = document.createElement("td");
      const dot = document.createElement("span");
      dot.className = "dot";
      const text = document.createElement("span");
      text.className = "fleet-name";
      name.append(dot, text);
      const state = document.createElement("td");
      const flag = document.createElement("span");
      flag.className = "flag";
      state.append(flag);
      tr.append(name, state);
      for (const [kind] of VITALS) {
        const td = document.createElement("td");
        const bar = document.createElement("span");
        bar.className = `bar ${kind}`;
        bar.setAttribute("role", "meter");
        bar.setAttribute("aria-label", kind);
        bar.setAttribute("aria-valuemin", "0");
        bar.setAttribute("aria-valuemax", "100");
        const fill = document.createElement("span");
        fill.className = "fill";
        bar.append(fill);
        td.append(bar);
        tr.append(td);
      }
      tr.append(document.createElement("td"), document.createElement("td"));
      this.rowEls.set(p.name, tr);
    }
    const players = this.players();
    const [nameTd, stateTd, ...rest] = tr.children;
    const [dot, text] = nameTd.children;
    if (dot.dataset.color !== p.color) { dot.dataset.color = p.color; dot.style.background = p.color; }
    const label = `${p.name}${p.data.char_tag ? ` · ${p.data.char_tag}` : ""}${this.picked().has(p.name) ? " ✓" : ""}`;
    if (text.textContent !== label) text.textContent = label;
    tr.classList.toggle("offline", !!p.offlineAt);
    tr.classList.toggle("picked", this.picked().has(p.name));
    const state = players.state(p, now);
    const stuck = players.attention(p, now).flag === "stuck";
    const stateText = stuck ? "stuck" : state;
    const flag = stateTd.firstElementChild;
    if (flag.textContent !== stateText) { flag.textContent = stateText; flag.className = `flag ${stateText}`; }
    VITALS.forEach(([kind, key], i) => {
      const bar = rest[i].firstElementChild;
      const v = vital(p, key);
      const pct = v === null ? "" : String(Math.round(v));
      if (bar.dataset.value === pct) return;
      bar.dataset.value = pct;
      bar.classList.toggle("low", v !== null && v < LOW_VITAL);
      bar.firstElementChild.style.width = v === null ? "0" : `${v}%`;
      bar.setAttribute("aria-valuenow", pct || "0");
      bar.title = v === null ? `${kind}: not reported` : `${kind} ${pct} %`;
      bar.dataset.text = v === null ? "–" : pct;
    });
    const kph = rest[3];
    const kphText = `${formatNumber(Math.round(Number(p.data.kills_per_hour) || 0))}/h`;
    if (kph.textContent !== kphText) kph.textContent = kphText;
    const seen = rest[4];
    const seenText = p.offlineAt ? players.offlineFor(p, now) : ago(Date.parse(p.data.timestamp));
    if (seen.textContent !== seenText) seen.textContent = seenText;
    return tr;
  }
}
