// The selected character's details: position, state and counters, vitals as bars, the character
// sheet, the last day's kills per clock hour and rares, recent events, and (for those who may
// command) the commands sent to it. Every text goes in through textContent.

import { formatCoords, formatNumber, formatOnline } from "./format.js";

const HISTORY_REFRESH_MS = 60000;
const HISTORY_CACHE = 50; // characters whose last-day series is kept
const COMMANDS_SHOWN = 10;

export class Details {
  /** `canReadCommands()`: whether this browser may read command history (a commander);
   * `changed()`: asks for a redraw once something loaded. */
  constructor(box, { canReadCommands, changed }) {
    this.box = box;
    this.canReadCommands = canReadCommands;
    this.changed = changed;
    this.history = new Map(); // name -> { at, loading, data } from /stats/{character}
    this.commands = new Map(); // name -> { at, loading, entries } from /audit?character=
  }

  /** Forgets a character's command history so the next render asks again (a command was just
   * sent to it). */
  commandSent(name) { this.commands.delete(name); }

  /** Shows `p` (nothing: hidden). */
  render(p) {
    const box = this.box;
    if (!p) { box.hidden = true; return; }
    box.hidden = false;
    const d = p.data;
    const fields = [
      ["Position", formatCoords(d.ew, d.ns)],
      ["State", p.offlineAt ? "offline" : (d.vt_state || "–")],
      ["Kills (session)", formatNumber(d.kills)],
      ["Kills (total)", formatNumber(d.total_kills)],
      // The plugin's own rate over its current session (the chart below counts stored kills
      // per clock hour, which is why the two can differ).
      ["Kills/h (session)", formatNumber(d.kills_per_hour)],
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
    if (this.canReadCommands()) parts.push(this.commandsSection(p.name));
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
    const from = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
    const { data } = cachedJson(this.history, name,
      `/stats/${encodeURIComponent(name)}?bucket=3600&from=${encodeURIComponent(from)}`, this.changed);
    const section = titled("history", "Last 24 hours");
    if (data && Array.isArray(data.series)) {
      const series = data.series;
      const kills = series.reduce((sum, b) => sum + (Number(b.kills) || 0), 0);
      const max = series.reduce((m, b) => Math.max(m, Number(b.kills_per_hour) || 0), 0);
      const svgNs = "http://www.w3.org/2000/svg";
      const svg = document.createElementNS(svgNs, "svg");
      svg.setAttribute("viewBox", "0 0 240 40");
      svg.setAttribute("class", "sparkline");
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-label", `Kills per clock hour, busiest ${Math.round(max)}`);
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
        title.textContent = `${new Date(b.bucket).toLocaleTimeString()}: ${b.kills} kills`;
        bar.append(title);
        svg.append(bar);
      }
      const summary = document.createElement("p");
      const sessions = Array.isArray(data.rares_per_session) ? data.rares_per_session : [];
      const rares = sessions.reduce((sum, s) => sum + (Number(s.rares) || 0), 0);
      // Stored kills per clock hour: "busiest hour", not a rate to set beside the plugin's.
      const busiest = max > 0 ? `, busiest hour ${formatNumber(Math.round(max))} kills` : "";
      const found = rares === 0 ? "no rares"
        : `${formatNumber(rares)} rare${rares === 1 ? "" : "s"} in ${sessions.length} session${sessions.length === 1 ? "" : "s"}`;
      summary.textContent = `${formatNumber(kills)} kills stored${busiest}; ${found}; `
        + `${formatNumber(data.character?.total_deaths ?? data.character?.deaths)} deaths in all`;
      section.append(svg, summary);
    } else {
      const p = document.createElement("p");
      p.textContent = "loading…";
      section.append(p);
    }
    const link = document.createElement("a");
    link.href = `/history?character=${encodeURIComponent(name)}&from=${encodeURIComponent(from)}&format=csv`;
    link.textContent = "Export the last 24 hours (CSV)";
    link.setAttribute("download", "");
    section.append(link);
    return section;
  }

  /** The last commands sent to this character, by whom and with what result (`/audit`). */
  commandsSection(name) {
    const { data, error } = cachedJson(this.commands, name,
      `/audit?character=${encodeURIComponent(name)}&limit=${COMMANDS_SHOWN}`, this.changed);
    const entries = data ? (Array.isArray(data.entries) ? data.entries : []) : null;
    const section = titled("history commands", "Commands sent");
    const note = entries ? (entries.length ? null : "none yet") : error ? `unavailable: ${error}` : "loading…";
    if (note) {
      const p = document.createElement("p");
      p.textContent = note;
      section.append(p);
    } else {
      const ol = document.createElement("ol");
      ol.className = "command-history";
      for (const e of entries) {
        const li = document.createElement("li");
        li.dataset.result = String(e.result);
        const code = document.createElement("code");
        code.textContent = String(e.command);
        li.append(`${new Date(e.at).toLocaleTimeString()} `, code,
          ` by ${e.actor}: ${String(e.result).replace("_", " ")}`);
        ol.append(li);
      }
      section.append(ol);
    }
    return section;
  }
}

/** What `cache` holds for `name` (`{ data, error, loading }`), asking `url` again when it is
 * over a minute old (one request at a time; the last answer stays shown meanwhile); `changed()`
 * once an answer arrived. At most HISTORY_CACHE characters are kept: a long evening of clicking
 * through a thousand characters keeps the most recent ones only. */
function cachedJson(cache, name, url, changed) {
  const cached = cache.get(name);
  if (!cached || (!cached.loading && performance.now() - cached.at > HISTORY_REFRESH_MS)) {
    const entry = { at: performance.now(), loading: true, data: cached?.data ?? null, error: null };
    if (!cached && cache.size >= HISTORY_CACHE) cache.delete(cache.keys().next().value);
    cache.set(name, entry);
    fetch(url)
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`the server answered ${r.status}`))))
      .then((answer) => { entry.data = answer; })
      .catch((err) => { entry.error = err.message; })
      .finally(() => { entry.loading = false; changed(); });
  }
  return cache.get(name);
}

/** A section of the panel with its heading. */
function titled(className, title) {
  const section = document.createElement("section");
  section.className = className;
  section.setAttribute("aria-label", title);
  const h = document.createElement("h3");
  h.textContent = title;
  section.append(h);
  return section;
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
