// Live characters as the UI knows them: the latest telemetry, an interpolated position for smooth
// movement, idle and offline state, and recent trail points.

import { paletteColor } from "./format.js";

const MOVE_MS = 1800;        // glide to a new position over about one update interval
const IDLE_MS = 120000;      // no kills and no movement for this long: idle
const OFFLINE_ALPHA = 0.35; // how offline characters are drawn while they are kept
const STUCK_MS = 120000;     // in combat state without moving for this long: stuck
const DIED_MS = 60000;       // a death within this long is flagged

export class Players {
  constructor() {
    this.byName = new Map();
    this.trailWindowMs = 600000;
    this.version = 0; // bumps on any change the list should show
    this.clock = () => Date.now(); // "now" for trail windows: the replay time in a replay
    this.filter = null;            // search predicate shared by the list, the map and the count
    this.colorMode = "character";  // "character": a distinct colour each; "tag": one per guild tag
    this.order = new Map();        // name or tag -> order of first appearance, for the palette
    this.offlineKeepMs = 3600000;  // offline characters stay listed (greyed) this long
  }

  reset(players) {
    const now = performance.now();
    const keep = new Map();
    for (const p of players) {
      const existing = this.byName.get(p.character_name);
      keep.set(p.character_name, this.fresh(p, now, existing));
    }
    this.byName = keep;
    this.version++;
  }

  fresh(data, now, existing) {
    const entry = existing || {
      name: data.character_name,
      color: this.colorFor(data.character_name, data.char_tag),
      lastMove: now,
      trail: [],
      x: data.ew, y: data.ns, fromX: data.ew, fromY: data.ns, toX: data.ew, toY: data.ns,
      moveStart: now, lastChange: now,
    };
    entry.data = data;
    if (data.vitals) entry.vitals = data.vitals;
    if (data.character_stats) entry.sheet = data.character_stats;
    entry.offlineAt = null;
    entry.toX = data.ew; entry.toY = data.ns; entry.fromX = entry.x; entry.fromY = entry.y;
    entry.moveStart = now;
    return entry;
  }

  update(data) {
    const now = performance.now();
    const existing = this.byName.get(data.character_name);
    if (existing) {
      const moved = existing.data.ew !== data.ew || existing.data.ns !== data.ns;
      const killed = existing.data.kills !== data.kills;
      if (moved || killed) existing.lastChange = now;
      if (moved) existing.lastMove = now;
      if (Number(data.deaths) > Number(existing.data.deaths)) existing.diedAt = now;
    }
    const entry = this.fresh(data, now, existing);
    if (!existing) entry.lastChange = now;
    if (entry.teleported) {
      // After a portal the marker jumps instead of gliding across the map, and the trail breaks.
      entry.fromX = entry.x = data.ew;
      entry.fromY = entry.y = data.ns;
    }
    entry.trail.push([data.ew, data.ns, Date.parse(data.timestamp) || Date.now(), !!entry.teleported]);
    entry.teleported = false;
    this.pruneTrail(entry);
    this.byName.set(data.character_name, entry);
    this.version++;
    return entry;
  }

  /** Latest vitals (health, stamina, mana, vitae) of a character already on the map. */
  vitals(frame) {
    const p = this.byName.get(frame.character_name);
    if (!p) return;
    p.vitals = frame;
    this.version++;
  }

  /** Latest character sheet summary (level, title, allegiance). */
  sheet(frame) {
    const p = this.byName.get(frame.character_name);
    if (!p) return;
    p.sheet = frame;
    this.version++;
  }

  /** A teleport: the next position starts a new trail segment; a line goes into the timeline. */
  portal(frame) {
    const p = this.byName.get(frame.character_name);
    if (!p) return;
    p.teleported = true;
    p.timeline = [{ at: Date.parse(frame.timestamp) || Date.now(),
      text: `Portal${frame.portal_name ? `: ${frame.portal_name}` : ""}` }, ...(p.timeline || [])].slice(0, 8);
    this.version++;
  }

  offline(name) {
    const p = this.byName.get(name);
    if (p && !p.offlineAt) {
      p.offlineAt = performance.now();
      this.version++;
    }
  }

  setTrails(points) {
    const byName = new Map();
    for (const pt of points) {
      const list = byName.get(pt.character_name) || [];
      list.push([pt.ew, pt.ns, Date.parse(pt.timestamp), !!pt.break]);
      byName.set(pt.character_name, list);
    }
    for (const p of this.byName.values()) {
      p.trail = byName.get(p.name) || p.trail;
      this.pruneTrail(p);
    }
  }

  /** Adds trail points newer than each character's last one (a replay moving forward fetches
   * only the stretch since its previous request). */
  appendTrails(points) {
    for (const pt of points) {
      const p = this.byName.get(pt.character_name);
      if (!p) continue;
      const t = Date.parse(pt.timestamp);
      const last = p.trail[p.trail.length - 1];
      if (last && t <= last[2]) continue;
      p.trail.push([pt.ew, pt.ns, t, !!pt.break]);
    }
    for (const p of this.byName.values()) this.pruneTrail(p);
  }

  pruneTrail(p) {
    const cutoff = this.clock() - this.trailWindowMs;
    let i = 0;
    while (i < p.trail.length && p.trail[i][2] < cutoff) i++;
    if (i > 0) p.trail.splice(0, i);
  }

  /** Advances interpolation. Returns whether anything moves. */
  tick(now) {
    let animating = false;
    for (const p of this.byName.values()) {
      const t = Math.min(1, (now - p.moveStart) / MOVE_MS);
      const e = t < 1 ? t * (2 - t) : 1;
      p.x = p.fromX + (p.toX - p.fromX) * e;
      p.y = p.fromY + (p.toY - p.fromY) * e;
      if (t < 1) animating = true;
      p.alpha = p.offlineAt ? OFFLINE_ALPHA : 1;
    }
    return animating;
  }

  /** A colour for a character: distinct hues in order of appearance (golden angle), or one per
   * guild tag in tag mode. */
  colorFor(name, tag) {
    const key = this.colorMode === "tag" ? `tag:${tag || ""}` : name;
    if (!this.order.has(key)) this.order.set(key, this.order.size);
    return this.colorMode === "tag" && !tag ? "hsl(0, 0%, 55%)" : paletteColor(this.order.get(key));
  }

  setColorMode(mode) {
    this.colorMode = mode;
    this.order.clear();
    for (const p of [...this.byName.values()].sort((a, b) => a.name.localeCompare(b.name))) {
      p.color = this.colorFor(p.name, p.data.char_tag);
    }
    this.version++;
  }

  /** Adds characters known from stored telemetry (`/world` records) that are not live, as
   * offline since their last record. */
  addOffline(records) {
    const now = performance.now();
    let added = 0;
    for (const r of records) {
      if (this.byName.has(r.character_name)) continue;
      const entry = this.fresh(r, now);
      entry.offlineAt = now - Math.max(0, Date.now() - Date.parse(r.timestamp));
      entry.alpha = OFFLINE_ALPHA;
      this.byName.set(r.character_name, entry);
      added++;
    }
    if (added) this.version++;
    return added;
  }

  /** Forgets characters offline for longer than `offlineKeepMs`; returns how many went. */
  sweep(now = performance.now()) {
    let gone = 0;
    for (const [name, p] of this.byName) {
      if (p.offlineAt && now - p.offlineAt > this.offlineKeepMs) {
        this.byName.delete(name);
        gone++;
      }
    }
    if (gone) this.version++;
    return gone;
  }

  /** How long a character has been offline, as the list says it ("offline 3 min"). */
  offlineFor(p, now = performance.now()) {
    if (!p.offlineAt) return "";
    const minutes = Math.floor((now - p.offlineAt) / 60000);
    return minutes < 1 ? "offline just now" : minutes < 60 ? `offline ${minutes} min`
      : `offline ${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  }

  /** What needs a guild leader's attention first: dead, stuck, idle, recently offline (rank 0
   * to 3), everything else 4. */
  attention(p, now = performance.now()) {
    if (p.offlineAt) return { rank: 3, flag: "offline" };
    if (this.state(p, now) === "dead") return { rank: 0, flag: "dead" };
    if (/combat/i.test(String(p.data.vt_state || "")) && now - (p.lastMove ?? now) > STUCK_MS) return { rank: 1, flag: "stuck" };
    if (this.state(p, now) === "idle") return { rank: 2, flag: "idle" };
    return { rank: 4, flag: "" };
  }

  state(p, now = performance.now()) {
    if (p.offlineAt) return "offline";
    const vt = String(p.data.vt_state || "");
    const health = Number(p.vitals?.health_percentage);
    if (/dead/i.test(vt) || (Number.isFinite(health) && health <= 0)
      || (p.diedAt && now - p.diedAt < DIED_MS)) return "dead";
    if (/idle|stop/i.test(vt) || now - p.lastChange > IDLE_MS) return "idle";
    return "active";
  }

  values() {
    return this.byName.values();
  }

  /** The characters the current search keeps. */
  shown() {
    const all = [...this.byName.values()];
    return this.filter ? all.filter(this.filter) : all;
  }

  get(name) {
    return this.byName.get(name);
  }

  get size() {
    return this.byName.size;
  }
}
