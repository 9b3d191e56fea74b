// Replay: a time slider over the stored history that shows the whole world as it was at time T
// (every character's position, state and counters from `/world?at=`, and its recent trail from
// `/trails?from=&to=`), plays forward at 1x to 600x, pauses, steps, and returns to live.

import { Players } from "./players.js";

const SPAN_MS = 24 * 3600 * 1000;   // the slider covers the last day
const TICK_MS = 250;                // playback clock step (wall time)
const FETCH_MS = 500;               // at most one world request per this much wall time
const MARKS_PAGES = 2;              // pages of 500 events marked on the timeline at most
const MARKS_MS = 60000;             // the marks are brought up to date this often in a replay

export class Replay {
  constructor(el, { onEnter, onLeave, onWorld, getJson, trailsWanted }) {
    this.el = el;
    this.on = { onEnter, onLeave, onWorld };
    this.getJson = getJson;
    this.trailsWanted = trailsWanted;
    this.players = new Players();
    this.players.clock = () => this.at; // trails end at the replay time
    this.active = false;
    this.playing = false;
    this.at = Date.now();
    this.loadedAt = null;
    this.inFlight = false;
    this.lastFetch = 0;
    this.timer = null;
    el.toggle.addEventListener("click", () => (this.active ? this.leave() : this.enter()));
    el.live.addEventListener("click", () => this.leave());
    el.play.addEventListener("click", () => this.setPlaying(!this.playing));
    el.back.addEventListener("click", () => this.seek(this.at - 60000));
    el.forward.addEventListener("click", () => this.seek(this.at + 60000));
    el.slider.addEventListener("input", () => this.seek(this.sliderStart() + Number(el.slider.value) * 1000));
    el.marks.addEventListener("click", (e) => {
      const at = Number(e.target.closest("button[data-at]")?.dataset.at);
      // Just before the event, so it happens while one watches.
      if (Number.isFinite(at)) this.seek(at - 30000);
    });
    setInterval(() => { if (this.active) this.loadMarks(); }, MARKS_MS);
  }

  /** Marks the day's events (the event log: deaths, disconnects, rares, portals, levels) on
   * the timeline under the slider; a click replays from just before one. */
  async loadMarks() {
    const start = this.sliderStart();
    const entries = [];
    let before = null;
    try {
      for (let page = 0; page < MARKS_PAGES; page++) {
        const q = new URLSearchParams({ limit: "500" });
        if (before) q.set("before", before);
        const data = await this.getJson(`/log?${q}`);
        const got = Array.isArray(data.entries) ? data.entries : [];
        entries.push(...got);
        const last = got[got.length - 1];
        if (got.length < 500 || !last || Date.parse(last.timestamp) < start) break;
        before = last.timestamp;
      }
    } catch (_) {
      return; // the replay works without its marks
    }
    const marks = [];
    for (const e of entries) {
      const at = Date.parse(e.timestamp);
      if (!Number.isFinite(at) || at < start) continue;
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.at = String(at);
      b.dataset.kind = String(e.kind);
      b.dataset.name = String(e.character_name);
      b.style.left = `${(((at - start) / SPAN_MS) * 100).toFixed(2)}%`;
      b.title = `${new Date(at).toLocaleString()} ${e.kind} ${e.character_name}${e.detail ? `: ${e.detail}` : ""}`;
      b.setAttribute("aria-label", b.title);
      b.tabIndex = -1; // the event log is the keyboard's way to these
      marks.push(b);
    }
    this.el.marks.replaceChildren(...marks);
  }

  sliderStart() { return Date.now() - SPAN_MS; }

  /** Enters replay at `at` (milliseconds since the epoch), by default 10 minutes ago. */
  enter(at = Date.now() - 600000) {
    this.active = true;
    this.el.bar.hidden = false;
    this.el.toggle.setAttribute("aria-pressed", "true");
    this.players.trailWindowMs = 600000;
    this.trailsTo = null; // the replay time trails were last fetched up to
    this.on.onEnter(this.players);
    this.seek(at);
    this.loadMarks();
  }

  leave() {
    if (!this.active) return;
    this.setPlaying(false);
    this.active = false;
    this.el.bar.hidden = true;
    this.el.toggle.setAttribute("aria-pressed", "false");
    this.on.onLeave();
  }

  setPlaying(on) {
    this.playing = on;
    this.el.play.textContent = on ? "Pause" : "Play";
    this.el.play.setAttribute("aria-pressed", String(on));
    clearInterval(this.timer);
    if (on) {
      this.timer = setInterval(() => {
        const speed = Number(this.el.speed.value) || 1;
        const next = this.at + TICK_MS * speed;
        if (next >= Date.now()) { this.leave(); return; }
        this.seek(next, false);
      }, TICK_MS);
    }
  }

  /** Shows the world at `at`; `force` fetches at once rather than at the playback pace. */
  seek(at, force = true) {
    const start = this.sliderStart();
    this.at = Math.max(start, Math.min(Date.now(), at));
    this.el.slider.max = String(Math.round(SPAN_MS / 1000));
    this.el.slider.value = String(Math.round((this.at - start) / 1000));
    this.el.time.textContent = new Date(this.at).toLocaleString();
    this.el.time.dateTime = new Date(this.at).toISOString();
    const now = performance.now();
    if (force || now - this.lastFetch >= FETCH_MS) this.load();
  }

  async load() {
    if (this.inFlight) { this.pending = true; return; }
    this.inFlight = true;
    this.lastFetch = performance.now();
    const at = this.at;
    const iso = new Date(at).toISOString();
    try {
      const world = await this.getJson(`/world?at=${encodeURIComponent(iso)}&lookback=120`);
      if (!this.active) return;
      this.players.reset(world.characters || []);
      if (this.trailsWanted()) {
        // Moving forward by less than half the trail window, only the new stretch is fetched
        // and appended: a 60x replay then asks for 30 s of points a request, not 10 minutes.
        const since = this.trailsTo;
        const append = since !== null && at > since && at - since < this.players.trailWindowMs / 2;
        const from = new Date(append ? since : at - this.players.trailWindowMs).toISOString();
        const step = Math.max(2, Math.round(this.players.trailWindowMs / 300000));
        const t = await this.getJson(`/trails?from=${encodeURIComponent(from)}&to=${encodeURIComponent(iso)}&step=${step}`);
        if (this.active) {
          if (append) this.players.appendTrails(t.trails || []);
          else this.players.setTrails(t.trails || []);
          this.trailsTo = at;
        }
      } else {
        this.trailsTo = null;
      }
      this.loadedAt = at;
      this.on.onWorld(at);
    } catch (err) {
      this.el.time.textContent = `${new Date(at).toLocaleString()} (history unavailable: ${err.message})`;
    } finally {
      this.inFlight = false;
      if (this.pending) { this.pending = false; this.load(); }
    }
  }
}
