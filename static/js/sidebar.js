// The character list (search, sort, select) and the selected character's details. The list is
// brought up to date at most a few times a second, whatever the telemetry rate, its rows updated
// in place.

import { formatCoords, formatNumber, formatOnline, onlineSeconds } from "./format.js";

const REFRESH_MS = 400;
const BUSY_REFRESH_MS = 1500;   // with hundreds of characters, rebuild the list less often
const MAX_ROWS = 200;           // rows drawn at once; search narrows the rest

const SORTS = {
  name: (a, b) => a.name.localeCompare(b.name),
  kills: (a, b) => (b.data.total_kills ?? b.data.kills ?? 0) - (a.data.total_kills ?? a.data.kills ?? 0),
  kph: (a, b) => (Number(b.data.kills_per_hour) || 0) - (Number(a.data.kills_per_hour) || 0),
  rares: (a, b) => (b.data.total_rares ?? 0) - (a.data.total_rares ?? 0),
  online: (a, b) => (onlineSeconds(b.data.onlinetime) || 0) - (onlineSeconds(a.data.onlinetime) || 0),
};

const HISTORY_REFRESH_MS = 60000;
const HISTORY_CACHE = 50; // characters whose last-day series is kept

export class Sidebar {
  constructor(players, { list, search, sort, details, count, noMatch }, { onSelect, onFilter, onPick }) {
    this.players = players;
    this.el = { list, search, sort, details, count, noMatch };
    this.onFilter = onFilter || (() => {});
    this.onSelect = onSelect;
    // Characters picked for one command to all: ctrl- (or cmd-) click adds or removes one,
    // shift-click adds the rows between the last one picked and this one; a plain click picks
    // nothing (and selects, as always).
    this.picked = new Set();
    this.onPick = onPick || (() => {});
    this.lastPicked = null;
    this.selected = null;
    this.shownVersion = -1;
    this.history = new Map(); // name -> { at, loading, data } from /stats/{character}
    this.rowEls = new Map();  // name -> its row in the list, kept across renders
    this.lastRender = 0;
    search.addEventListener("input", () => { this.applyFilter(); this.render(true); });
    // A new order starts at its top ("attention first" puts the flagged rows there).
    sort.addEventListener("change", () => { this.render(true); list.scrollTop = 0; });
    list.addEventListener("click", (e) => {
      const li = e.target.closest("li[data-name]");
      if (!li) return;
      const name = li.dataset.name;
      if (e.ctrlKey || e.metaKey || e.shiftKey) {
        if (e.shiftKey && this.lastPicked) {
          const names = [...list.querySelectorAll("li[data-name]")].map((row) => row.dataset.name);
          const [a, b] = [names.indexOf(this.lastPicked), names.indexOf(name)].sort((x, y) => x - y);
          if (a >= 0) for (const n of names.slice(a, b + 1)) this.picked.add(n);
        } else if (this.picked.has(name)) {
          this.picked.delete(name);
        } else {
          // The selected character is the first one picked.
          if (this.picked.size === 0 && this.selected && this.selected !== name) this.picked.add(this.selected);
          this.picked.add(name);
        }
        this.lastPicked = name;
        this.pickChanged();
        e.preventDefault();
        return;
      }
      if (this.picked.size) { this.picked.clear(); this.pickChanged(); }
      this.onSelect(name);
    });
    list.addEventListener("keydown", (e) => {
      const li = e.target.closest("li[data-name]");
      if (!li) return;
      if (e.key === "Enter" || e.key === " ") { this.onSelect(li.dataset.name); e.preventDefault(); }
      const move = (to) => {
        if (!to || !to.dataset.name) return;
        li.tabIndex = -1;
        to.tabIndex = 0;
        to.focus();
        e.preventDefault();
      };
      if (e.key === "ArrowDown") move(li.nextElementSibling);
      if (e.key === "ArrowUp") move(li.previousElementSibling);
      if (e.key === "Home") move(this.el.list.firstElementChild);
      if (e.key === "End") move(this.el.list.lastElementChild);
    });
    const tick = () => {
      this.render(false);
      setTimeout(tick, this.players.size > MAX_ROWS ? BUSY_REFRESH_MS : REFRESH_MS);
    };
    setTimeout(tick, REFRESH_MS);
  }

  /** Picks exactly `names` (a filter, a saved group), or none. */
  pick(names) {
    this.picked = new Set(names);
    this.pickChanged();
  }

  pickChanged() {
    this.render(true);
    this.onPick([...this.picked]);
  }

  /** The row of `p`, created once and updated in place (only what changed is written). */
  row(p, by, now) {
    let li = this.rowEls.get(p.name);
    if (!li) {
      li = document.createElement("li");
      li.dataset.name = p.name;
      li.setAttribute("role", "option");
      const dot = document.createElement("span");
      dot.className = "dot";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = p.name;
      const stat = document.createElement("span");
      stat.className = "stat";
      const meta = document.createElement("span");
      meta.className = "meta";
      li.append(dot, name, stat, meta);
      this.rowEls.set(p.name, li);
    }
    const [dot, , stat, meta] = li.children;
    // One tab stop for the whole list (the selected row, else the first); arrows move within.
    li.tabIndex = -1;
    const selected = String(p.name === this.selected);
    if (li.getAttribute("aria-selected") !== selected) li.setAttribute("aria-selected", selected);
    li.classList.toggle("offline", !!p.offlineAt);
    li.classList.toggle("picked", this.picked.has(p.name));
    if (dot.dataset.color !== p.color) {
      dot.dataset.color = p.color;
      dot.style.background = p.color;
    }
    // The column shows what the list is sorted by.
    const statText = by === "kph" ? `${formatNumber(p.data.kills_per_hour)}/h`
      : by === "rares" ? `${formatNumber(p.data.total_rares ?? 0)} rares`
        : by === "online" ? formatOnline(p.data.onlinetime)
          : `${formatNumber(p.data.total_kills ?? p.data.kills)} kills`;
    if (stat.textContent !== statText) stat.textContent = statText;
    const tag = p.data.char_tag ? `${p.data.char_tag} · ` : "";
    const metaText = p.offlineAt ? `${tag}${this.players.offlineFor(p, now)}`
      : `${tag}${p.data.vt_state || "–"} · ${formatNumber(p.data.kills_per_hour)}/h`;
    // An offline row says so in its text already.
    const flag = this.players.attention(p, now).flag;
    const shownFlag = flag && flag !== "offline" ? flag : "";
    if (meta.dataset.text !== metaText || meta.dataset.flag !== shownFlag) {
      meta.dataset.text = metaText;
      meta.dataset.flag = shownFlag;
      meta.textContent = metaText;
      if (shownFlag) {
        const badge = document.createElement("span");
        badge.className = `flag ${shownFlag}`;
        badge.textContent = shownFlag;
        meta.prepend(badge);
      }
    }
    return li;
  }

  select(name) {
    this.selected = name;
    this.render(true);
    // Bring the selected row into view (a marker clicked on the map).
    if (name) this.el.list.querySelector(`li[data-name="${CSS.escape(name)}"]`)?.scrollIntoView({ block: "nearest" });
  }

  /** Shows another set of characters (a replay, or live again). */
  setPlayers(players) {
    this.players = players;
    this.applyFilter();
    this.render(true);
  }

  /** The search applies to the list, the map and the online count alike. */
  applyFilter() {
    const q = this.el.search.value.trim().toLowerCase();
    this.players.filter = q
      ? (p) => p.name.toLowerCase().includes(q) || String(p.data.char_tag || "").toLowerCase().includes(q)
      : null;
    this.onFilter();
  }

  render(force) {
    if (!force && this.players.version === this.shownVersion) return;
    this.shownVersion = this.players.version;
    const now = performance.now();
    const attention = (a, b) => this.players.attention(a, now).rank - this.players.attention(b, now).rank;
    const sort = this.el.sort.value === "attention" ? attention : SORTS[this.el.sort.value] || SORTS.name;
    const rows = this.players.shown()
      .sort((a, b) => sort(a, b) || a.name.localeCompare(b.name));
    if (this.el.noMatch) this.el.noMatch.hidden = !(rows.length === 0 && this.players.size > 0);
    const by = this.el.sort.value;
    const wanted = [];
    for (const p of rows.slice(0, MAX_ROWS)) wanted.push(this.row(p, by, now));
    if (rows.length > MAX_ROWS) {
      this.more = this.more || document.createElement("li");
      this.more.className = "more";
      this.more.textContent = `${rows.length - MAX_ROWS} more: search to narrow the list`;
      wanted.push(this.more);
    }
    // Rows are kept and updated in place, moved only when their order changed: a click (press
    // and release on one row) lands whatever arrives meanwhile. Rebuilding the list twice a
    // second lost clicks held 100-200 ms.
    const list = this.el.list;
    wanted.forEach((li, i) => {
      if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
    });
    while (list.children.length > wanted.length) list.lastElementChild.remove();
    const kept = new Set(wanted);
    for (const [name, li] of this.rowEls) if (!kept.has(li)) this.rowEls.delete(name);
    const stop = (this.selected && this.el.list.querySelector(`li[data-name="${CSS.escape(this.selected)}"]`))
      || this.el.list.querySelector("li[data-name]");
    if (stop) stop.tabIndex = 0;
    const live = rows.filter((p) => !p.offlineAt).length;
    this.el.count.textContent = this.players.filter ? `${live} of ${this.players.size} online` : `${live} online`;
    this.renderDetails();
  }

  renderDetails() {
    const p = this.selected && this.players.get(this.selected);
    const box = this.el.details;
    if (!p) { box.hidden = true; return; }
    box.hidden = false;
    const d = p.data;
    const fields = [
      ["Position", formatCoords(d.ew, d.ns)],
      ["State", p.offlineAt ? "offline" : (d.vt_state || "–")],
      ["Kills (session)", formatNumber(d.kills)],
      ["Kills (total)", formatNumber(d.total_kills)],
      ["Kills/h", formatNumber(d.kills_per_hour)],
      ["Deaths", `${formatNumber(d.deaths)} (total ${formatNumber(d.total_deaths)})`],
      ["Rares", `${formatNumber(d.session_rares)} this session, ${formatNumber(d.total_rares)} total`],
      ["Online", formatOnline(d.onlinetime)],
      ["Tapers", formatNumber(d.prismatic_taper_count)],
      ["Memory", d.mem_mb != null ? `${formatNumber(d.mem_mb)} MB` : "–"],
      ["CPU", d.cpu_pct != null ? `${formatNumber(d.cpu_pct)} %` : "–"],
      ["Handles", formatNumber(d.mem_handles)],
      ["Latency", d.latency_ms != null ? `${formatNumber(d.latency_ms)} ms` : "–"],
    ];
    const sheet = p.sheet || {};
    if (sheet.level != null) fields.unshift(["Level", formatNumber(sheet.level)]);
    if (sheet.title) fields.splice(1, 0, ["Title", sheet.title]);
    if (sheet.allegiance?.name) fields.splice(2, 0, ["Allegiance", sheet.allegiance.name]);
    const h = document.createElement("h2");
    h.textContent = p.name;
    h.style.borderLeft = `6px solid ${p.color}`;
    h.style.paddingLeft = "6px";
    const parts = [h];
    if (p.vitals) parts.push(vitalBars(p.vitals));
    const dl = document.createElement("dl");
    for (const [k, v] of fields) {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      dl.append(dt, dd);
    }
    parts.push(dl);
    parts.push(this.historySection(p.name));
    if (p.timeline?.length) {
      const ol = document.createElement("ol");
      ol.className = "timeline";
      ol.setAttribute("aria-label", "Recent events");
      for (const line of p.timeline) {
        const li = document.createElement("li");
        li.textContent = `${new Date(line.at).toLocaleTimeString()} ${line.text}`;
        ol.append(li);
      }
      parts.push(ol);
    }
    box.replaceChildren(...parts);
  }

  /** Kills per hour over the last day (from `/stats/{character}`), fetched once a minute per
   * character and drawn as bars; rares per session; a link to the character's history as CSV. */
  historySection(name) {
    const cached = this.history.get(name);
    const stale = !cached || performance.now() - cached.at > HISTORY_REFRESH_MS;
    if (stale && !(cached && cached.loading)) {
      const entry = { at: performance.now(), loading: true, data: cached?.data };
      // One entry per character ever opened: a long evening of clicking through a thousand
      // characters keeps the most recent ones only.
      if (this.history.size >= HISTORY_CACHE) this.history.delete(this.history.keys().next().value);
      this.history.set(name, entry);
      const from = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
      fetch(`/stats/${encodeURIComponent(name)}?bucket=3600&from=${encodeURIComponent(from)}`)
        .then((r) => (r.ok ? r.json() : null))
        .then((data) => { entry.data = data; })
        .catch(() => {})
        .finally(() => { entry.loading = false; this.shownVersion = -1; });
    }
    const section = document.createElement("section");
    section.className = "history";
    section.setAttribute("aria-label", "Last 24 hours");
    const h = document.createElement("h3");
    h.textContent = "Last 24 hours";
    section.append(h);
    const data = this.history.get(name)?.data;
    if (data && Array.isArray(data.series)) {
      const series = data.series;
      const kills = series.reduce((sum, b) => sum + (Number(b.kills) || 0), 0);
      const max = series.reduce((m, b) => Math.max(m, Number(b.kills_per_hour) || 0), 0);
      const svgNs = "http://www.w3.org/2000/svg";
      const svg = document.createElementNS(svgNs, "svg");
      svg.setAttribute("viewBox", "0 0 240 40");
      svg.setAttribute("class", "sparkline");
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-label", `Kills per hour, highest ${Math.round(max)}`);
      const start = Date.parse(data.from), span = Date.parse(data.to) - start || 1;
      for (const b of series) {
        const x = ((Date.parse(b.bucket) - start) / span) * 240;
        const hgt = max > 0 ? ((Number(b.kills_per_hour) || 0) / max) * 38 : 0;
        const bar = document.createElementNS(svgNs, "rect");
        bar.setAttribute("x", x.toFixed(1));
        bar.setAttribute("y", (40 - hgt).toFixed(1));
        bar.setAttribute("width", "9");
        bar.setAttribute("height", hgt.toFixed(1));
        const title = document.createElementNS(svgNs, "title");
        title.textContent = `${new Date(b.bucket).toLocaleTimeString()}: ${Math.round(Number(b.kills_per_hour) || 0)}/h, ${b.kills} kills`;
        bar.append(title);
        svg.append(bar);
      }
      const summary = document.createElement("p");
      const sessions = Array.isArray(data.rares_per_session) ? data.rares_per_session : [];
      const rares = sessions.reduce((sum, s) => sum + (Number(s.rares) || 0), 0);
      summary.textContent = `${formatNumber(kills)} kills, best ${formatNumber(Math.round(max))}/h; `
        + `${formatNumber(rares)} rares over ${sessions.length} sessions; `
        + `${formatNumber(data.character?.total_deaths ?? data.character?.deaths)} deaths in all`;
      section.append(svg, summary);
    } else {
      const p = document.createElement("p");
      p.textContent = "loading…";
      section.append(p);
    }
    const link = document.createElement("a");
    const from = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
    link.href = `/history?character=${encodeURIComponent(name)}&from=${encodeURIComponent(from)}&format=csv`;
    link.textContent = "Export the last 24 hours (CSV)";
    link.setAttribute("download", "");
    section.append(link);
    return section;
  }
}


const VITALS = [
  ["health_percentage", "Health", "health"],
  ["stamina_percentage", "Stamina", "stamina"],
  ["mana_percentage", "Mana", "mana"],
];

/** Health, stamina and mana bars (and vitae when below 100 %), as meters for screen readers. */
function vitalBars(v) {
  const box = document.createElement("div");
  box.className = "vitals";
  for (const [key, label, cls] of VITALS) {
    const value = Number(v[key]);
    if (!Number.isFinite(value)) continue;
    const pct = Math.max(0, Math.min(100, value));
    const row = document.createElement("div");
    row.className = `vital ${cls}`;
    row.setAttribute("role", "meter");
    row.setAttribute("aria-label", label);
    row.setAttribute("aria-valuemin", "0");
    row.setAttribute("aria-valuemax", "100");
    row.setAttribute("aria-valuenow", String(Math.round(pct)));
    row.title = `${label} ${Math.round(pct)} %`;
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${pct}%`;
    const text = document.createElement("span");
    text.className = "label";
    text.textContent = `${label} ${Math.round(pct)} %`;
    row.append(fill, text);
    box.append(row);
  }
  const vitae = Number(v.vitae);
  if (Number.isFinite(vitae) && vitae < 100) {
    const row = document.createElement("div");
    row.className = "vitae";
    row.textContent = `Vitae ${Math.round(vitae)} %`;
    box.append(row);
  }
  return box;
}
