// The roster (every character ever seen, offline ones included, from `/characters`) and the
// leaderboard (`/stats/leaderboard`), in one dialog. Rows are built with textContent only.

import { formatNumber } from "./format.js";

/** Rows the roster lists (most recently seen first): a table of 100,000 rows would freeze the
 * page; the leaderboard and search cover the rest. */
const ROSTER_ROWS = 500;

export class Roster {
  constructor(el, { getJson, onSelect, isLive }) {
    this.el = el;
    this.getJson = getJson;
    this.onSelect = onSelect;
    this.isLive = isLive;
    el.open.addEventListener("click", () => this.show());
    el.by.addEventListener("change", () => this.loadBoard());
    el.range.addEventListener("change", () => this.loadBoard());
    const pick = (e) => {
      const row = e.target.closest("[data-name]");
      if (row) { el.dialog.close(); this.onSelect(row.dataset.name); }
    };
    el.body.addEventListener("click", pick);
    el.board.addEventListener("click", pick);
  }

  async show() {
    this.el.dialog.showModal();
    await Promise.all([this.loadRoster(), this.loadBoard()]);
  }

  async loadRoster() {
    const body = this.el.body;
    try {
      const data = await this.getJson("/characters");
      const rows = (data.characters || []).sort((a, b) => Date.parse(b.last_seen) - Date.parse(a.last_seen));
      const frag = document.createDocumentFragment();
      for (const c of rows.slice(0, ROSTER_ROWS)) {
        const tr = document.createElement("tr");
        tr.dataset.name = c.character_name;
        const live = this.isLive(c.character_name);
        const cells = [
          c.character_name,
          c.char_tag || "",
          live ? "online" : new Date(c.last_seen).toLocaleString(),
          formatNumber(c.total_kills),
          formatNumber(c.total_rares),
          formatNumber(c.total_deaths ?? c.deaths),
        ];
        for (const text of cells) {
          const td = document.createElement("td");
          td.textContent = text;
          tr.append(td);
        }
        if (live) tr.classList.add("online");
        frag.append(tr);
      }
      body.replaceChildren(frag);
      this.el.summary.textContent = rows.length > ROSTER_ROWS
        ? `${rows.length} characters; the ${ROSTER_ROWS} seen most recently are listed`
        : `${rows.length} characters`;
    } catch (err) {
      this.el.summary.textContent = `roster unavailable: ${err.message}`;
    }
  }

  async loadBoard() {
    const by = this.el.by.value;
    const from = new Date(Date.now() - Number(this.el.range.value) * 1000).toISOString();
    try {
      const data = await this.getJson(`/stats/leaderboard?by=${by}&limit=20&from=${encodeURIComponent(from)}`);
      const frag = document.createDocumentFragment();
      for (const row of data.entries || []) {
        const li = document.createElement("li");
        li.dataset.name = row.character_name;
        li.textContent = `${row.character_name}: ${formatNumber(Math.round(row.value))}`;
        frag.append(li);
      }
      if (!frag.childElementCount) {
        const li = document.createElement("li");
        li.textContent = "nothing in this range";
        frag.append(li);
      }
      this.el.board.replaceChildren(frag);
    } catch (err) {
      this.el.board.replaceChildren();
      this.el.board.textContent = `leaderboard unavailable: ${err.message}`;
    }
  }
}
