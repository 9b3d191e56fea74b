// The chat window and the command line. Every text goes into the DOM through textContent, so
// whatever a player types is shown, never interpreted.

import { colorOf, formatTime } from "./format.js";

const MAX_LINES = 500;
const MAX_TEXT = 600;

export class Chat {
  constructor({ log, form, input, target, result, results }, { onCommand, onBroadcast }) {
    this.el = { log, form, input, target, result, results };
    this.onCommand = onCommand;
    this.onBroadcast = onBroadcast;
    this.selected = null;
    this.picked = [];
    this.filterText = "";
    // Whether the log follows the newest line: true until the reader scrolls up, true again
    // when they scroll back to the bottom. A log appended to while hidden (the phone's chat
    // tab, a collapsed panel) opens at its newest line when it is shown.
    this.follow = true;
    const atBottom = () => log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
    log.addEventListener("scroll", () => {
      if (log.clientHeight > 0) this.follow = atBottom();
    });
    new ResizeObserver(() => {
      if (this.follow && log.clientHeight > 0) log.scrollTop = log.scrollHeight;
    }).observe(log);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      if (this.picked.length > 1) {
        if (this.onBroadcast(this.picked, text)) {
          this.showResult("pending", `sending ${text} to ${this.picked.length} characters…`);
          this.el.results.replaceChildren();
          input.value = "";
        } else {
          this.showResult("error", "not connected");
        }
        return;
      }
      if (!this.selected) {
        this.showResult("error", "select a character first");
        return;
      }
      // Sent as typed: the game says a line without "/" in chat, and runs one with it.
      const command = text;
      if (this.onCommand(this.selected, command)) {
        this.showResult("pending", `sending ${command} to ${this.selected}…`);
        input.value = "";
      } else {
        this.showResult("error", "not connected");
      }
    });
  }

  select(name) {
    this.selected = name;
    this.showTarget();
  }

  /** Characters picked for one command to all (two or more make the command a broadcast). */
  pick(names) {
    this.picked = names;
    this.showTarget();
  }

  showTarget() {
    this.el.target.textContent = this.picked.length > 1 ? `Command ${this.picked.length} characters:`
      : this.selected ? `Command ${this.selected}:` : "No character selected";
  }

  /** Each character's result of a broadcast, in one place. */
  broadcastResult(frame) {
    const results = Array.isArray(frame.results) ? frame.results : [];
    const delivered = results.filter((r) => r.status === "delivered").length;
    this.showResult(delivered === results.length ? "delivered" : "partial",
      `${frame.command}: delivered to ${delivered} of ${results.length}`);
    const list = this.el.results;
    list.replaceChildren(...results.map((r) => {
      const li = document.createElement("li");
      li.dataset.status = String(r.status);
      li.dataset.name = String(r.player_name);
      const status = document.createElement("span");
      status.className = "status";
      status.textContent = String(r.status).replace("_", " ");
      li.append(`${r.player_name}: `, status);
      if (r.status !== "delivered") li.append(` (${r.message})`);
      return li;
    }));
    list.hidden = results.length === 0;
  }

  add(frame) {
    const li = document.createElement("li");
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = formatTime(frame.timestamp);
    const who = document.createElement("span");
    who.className = "who";
    // The name keeps the text colour (readable in both themes); its colour is a marker beside it.
    who.style.borderLeft = `4px solid ${colorOf(String(frame.character_name || ""))}`;
    who.style.paddingLeft = "3px";
    who.textContent = frame.character_name;
    const text = document.createElement("span");
    text.className = "text";
    const raw = String(frame.text ?? "");
    text.textContent = raw.length > MAX_TEXT ? `${raw.slice(0, MAX_TEXT)}…` : raw;
    li.append(time, who, text);
    this.append(li);
  }

  system(message) {
    const li = document.createElement("li");
    li.className = "system";
    li.textContent = `${formatTime()} ${message}`;
    this.append(li);
  }

  /** Shows only lines whose name or text contains `text` (case-insensitive). */
  filter(text) {
    this.filterText = text.trim().toLowerCase();
    for (const li of this.el.log.children) this.applyFilter(li);
  }

  applyFilter(li) {
    li.hidden = !!this.filterText && !li.textContent.toLowerCase().includes(this.filterText);
  }

  append(li) {
    this.applyFilter(li);
    const log = this.el.log;
    log.append(li);
    while (log.childElementCount > MAX_LINES) log.firstElementChild.remove();
    if (this.follow) log.scrollTop = log.scrollHeight;
  }

  commandResult(frame) {
    this.showResult(frame.status, `${frame.player_name}: ${frame.command} — ${frame.message}`);
  }

  showResult(status, message) {
    this.el.result.dataset.status = status;
    this.el.result.textContent = message;
  }
}
