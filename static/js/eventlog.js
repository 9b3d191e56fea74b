// The event log (`/log`): deaths, disconnects and connections, level changes, rares and portals,
// newest first, from the database so it survives a reload. Filter by kind and by the selected
// character; a click selects the character, and on a past event opens the replay at its moment.
// Rows are built with textContent only.

/** Older than this, an event is in the past: a click replays it rather than only selecting. */
const PAST_MS = 120000;
const REFRESH_MS = 15000;

export class EventLog {
  /** `panel` shows it (a dialog, or a tab of the phone's sheet). */
  constructor(el, panel, { getJson, onSelect, onReplay, selected }) {
    this.el = el;
    this.panel = panel;
    this.getJson = getJson;
    this.onSelect = onSelect;
    this.onReplay = onReplay;
    this.selected = selected;
    el.open.addEventListener("click", () => panel.open());
    el.kind.addEventListener("change", () => this.load());
    el.mine.addEventListener("change", () => this.load());
    el.list.addEventListener("click", (e) => {
      const row = e.target.closest("li[data-name]");
      if (!row) return;
      const at = Date.parse(row.dataset.at);
      panel.done();
      if (Number.isFinite(at) && Date.now() - at > PAST_MS) this.onReplay(row.dataset.name, at);
      else this.onSelect(row.dataset.name);
    });
    setInterval(() => { if (panel.visible()) this.load(); }, REFRESH_MS);
  }

  async load() {
    const q = new URLSearchParams({ limit: "200" });
    if (this.el.kind.value) q.set("kind", this.el.kind.value);
    const who = this.selected();
    if (this.el.mine.checked && who) q.set("character", who);
    try {
      const data = await this.getJson(`/log?${q}`);
      const entries = Array.isArray(data.entries) ? data.entries : [];
      this.el.list.replaceChildren(...entries.map((e) => {
        const li = document.createElement("li");
        li.dataset.name = String(e.character_name);
        li.dataset.kind = String(e.kind);
        li.dataset.at = String(e.timestamp);
        const time = document.createElement("time");
        time.textContent = new Date(e.timestamp).toLocaleString();
        const kind = document.createElement("span");
        const look = { death: "dead", disconnect: "offline", alert: "stuck" }[e.kind] || "";
        kind.className = `flag ${look}`;
        kind.textContent = String(e.kind);
        li.append(time, " ", kind, ` ${e.character_name}`, e.detail ? `: ${e.detail}` : "");
        return li;
      }));
      this.el.summary.textContent = entries.length ? "" : "nothing yet";
    } catch (err) {
      this.el.summary.textContent = `the event log is unavailable: ${err.message}`;
    }
  }
}
