// The character list (search, sort, select) and the selected character's details. The list is
// brought up to date at most a few times a second, whatever the telemetry rate, its rows updated
// in place.

import { Details } from "./details.js";
import { formatNumber, formatOnline, onlineSeconds } from "./format.js";

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


export class Sidebar {
  constructor(players, { list, search, sort, details, count, noMatch }, { onSelect, onFilter, onPick, canReadCommands }) {
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
    this.details = new Details(details, {
      canReadCommands: canReadCommands || (() => false),
      changed: () => { this.shownVersion = -1; },
    });
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
    this.details.render(this.selected && this.players.get(this.selected));
  }
}
