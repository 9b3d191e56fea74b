// The canvas map: a self-drawn Dereth (procedural land and water, a labelled coordinate grid,
// towns), character markers, trails and heatmap layers, with pan and zoom by mouse, touch,
// keyboard and buttons. Draws only when something changed or moves.

import { formatCoords } from "./format.js";

const EXTENT = 102;          // the map spans about -101.9 .. 102.0 on both axes
// Faster than any character moves on foot (map units per second, a unit is about 240 m), plus a
// margin: consecutive trail points farther apart were joined by a teleport.
const MAX_WALK_UNITS_PER_SEC = 0.25;
const WALK_MARGIN_UNITS = 1.5;
const MIN_SCALE_FACTOR = 0.8;
const MAX_SCALE_FACTOR = 60;

/** Frame and draw times kept for `frameStats` (five minutes at 60 frames a second). */
const FRAME_SAMPLES = 18000;

/** Trail points drawn at most over all shown trails, and at least per trail. */
const TRAIL_POINT_BUDGET = 30000;
const MIN_TRAIL_POINTS = 30;

/** The colour of each heatmap's cells (the legend shows the same). */
export const HEAT_RGB = { spawns: "255, 120, 0", rares: "190, 60, 255" };

export class MapView {
  constructor(canvas, players, { onSelect, onCursor, onHover }) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.players = players;
    this.onSelect = onSelect;
    this.onCursor = onCursor;
    this.onHover = onHover || (() => {});
    this.hovered = null;
    this.trailMode = "all";        // "all" or "selected"
    this.labelStats = { drawn: 0, hidden: 0, overlaps: 0 };
    this.towns = [];
    this.heat = { spawns: null, rares: null };
    this.showTrails = false;
    this.selected = null;
    this.follow = false;
    this.cx = 0; this.cy = 0;       // map coordinates at the centre of the view
    this.scale = 1;                 // CSS pixels per map unit
    this.fitScale = 1;
    this.dirty = true;
    this.background = null;
    this.backgroundImage = null;
    this.frameTimes = [];
    this.drawTimes = [];
    this.lastFrame = 0;
    this.resize();
    this.bindInput();
    new ResizeObserver(() => this.resize()).observe(canvas);
    requestAnimationFrame((t) => this.frame(t));
  }

  // --- geometry -------------------------------------------------------------------------------

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const w = this.canvas.clientWidth || 300;
    const h = this.canvas.clientHeight || 300;
    this.canvas.width = Math.round(w * dpr);
    this.canvas.height = Math.round(h * dpr);
    this.dpr = dpr;
    this.width = w; this.height = h;
    const fit = Math.min(w, h) / (2 * EXTENT + 8);
    if (this.scale === this.fitScale || !this.fitScale) this.scale = fit;
    this.fitScale = fit;
    this.dirty = true;
  }

  /** Map coordinates (ew, ns) to CSS pixels in the canvas. */
  project(ew, ns) {
    return {
      x: this.width / 2 + (ew - this.cx) * this.scale,
      y: this.height / 2 - (ns - this.cy) * this.scale,
    };
  }

  unproject(x, y) {
    return {
      ew: this.cx + (x - this.width / 2) / this.scale,
      ns: this.cy - (y - this.height / 2) / this.scale,
    };
  }

  /** Sets the zoom as a multiple of the whole-map view, within the allowed range. */
  setZoom(multiple) {
    this.scale = this.fitScale * Math.min(MAX_SCALE_FACTOR, Math.max(MIN_SCALE_FACTOR, multiple));
    this.clampCenter();
    this.dirty = true;
  }

  zoomAt(factor, x = this.width / 2, y = this.height / 2) {
    const before = this.unproject(x, y);
    const min = this.fitScale * MIN_SCALE_FACTOR;
    const max = this.fitScale * MAX_SCALE_FACTOR;
    this.scale = Math.min(max, Math.max(min, this.scale * factor));
    const after = this.unproject(x, y);
    this.cx += before.ew - after.ew;
    this.cy += before.ns - after.ns;
    this.clampCenter();
    this.dirty = true;
  }

  panBy(dx, dy) {
    this.cx -= dx / this.scale;
    this.cy += dy / this.scale;
    this.follow = false;
    this.clampCenter();
    this.dirty = true;
  }

  clampCenter() {
    this.cx = Math.max(-EXTENT, Math.min(EXTENT, this.cx));
    this.cy = Math.max(-EXTENT, Math.min(EXTENT, this.cy));
  }

  reset() {
    this.cx = 0; this.cy = 0; this.scale = this.fitScale; this.follow = false; this.dirty = true;
  }

  centerOn(ew, ns) {
    this.cx = ew; this.cy = ns;
    if (this.scale < this.fitScale * 4) this.scale = this.fitScale * 4;
    this.dirty = true;
  }

  // --- input ----------------------------------------------------------------------------------

  bindInput() {
    const c = this.canvas;
    const pointers = new Map();
    let moved = 0;
    let pinch = null;
    c.addEventListener("pointerdown", (e) => {
      c.setPointerCapture(e.pointerId);
      pointers.set(e.pointerId, { x: e.offsetX, y: e.offsetY });
      moved = 0;
      c.classList.add("dragging");
    });
    c.addEventListener("pointermove", (e) => {
      const here = this.unproject(e.offsetX, e.offsetY);
      this.onCursor(formatCoords(here.ew, here.ns));
      const prev = pointers.get(e.pointerId);
      if (!prev) {
        const near = this.nearest(e.offsetX, e.offsetY);
        const name = near ? near.name : null;
        if (name !== this.hovered) { this.hovered = name; this.dirty = true; }
        this.onHover(near, e.offsetX, e.offsetY);
        return;
      }
      if (pointers.size === 2) {
        const [a, b] = [...pointers.values()];
        const other = a === prev ? b : a;
        const d = Math.hypot(e.offsetX - other.x, e.offsetY - other.y);
        if (pinch) this.zoomAt(d / pinch, (e.offsetX + other.x) / 2, (e.offsetY + other.y) / 2);
        pinch = d;
      } else {
        this.panBy(e.offsetX - prev.x, e.offsetY - prev.y);
      }
      moved += Math.abs(e.offsetX - prev.x) + Math.abs(e.offsetY - prev.y);
      pointers.set(e.pointerId, { x: e.offsetX, y: e.offsetY });
    });
    const end = (e) => {
      const was = pointers.get(e.pointerId);
      pointers.delete(e.pointerId);
      if (pointers.size < 2) pinch = null;
      if (pointers.size === 0) c.classList.remove("dragging");
      if (was && moved < 5 && e.type === "pointerup") this.pick(e.offsetX, e.offsetY);
    };
    c.addEventListener("pointerup", end);
    c.addEventListener("pointerleave", () => {
      if (this.hovered) { this.hovered = null; this.dirty = true; }
      this.onHover(null);
    });
    c.addEventListener("pointercancel", end);
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      this.zoomAt(Math.exp(-e.deltaY * 0.0015), e.offsetX, e.offsetY);
    }, { passive: false });
    c.addEventListener("keydown", (e) => {
      const step = 60;
      const keys = {
        ArrowLeft: () => this.panBy(step, 0), ArrowRight: () => this.panBy(-step, 0),
        ArrowUp: () => this.panBy(0, step), ArrowDown: () => this.panBy(0, -step),
        "+": () => this.zoomAt(1.4), "=": () => this.zoomAt(1.4), "-": () => this.zoomAt(1 / 1.4),
        "0": () => this.reset(),
      };
      if (keys[e.key]) { keys[e.key](); e.preventDefault(); }
    });
  }

  /** The shown character nearest to a point of the canvas, if one is close enough. */
  nearest(x, y) {
    let best = null;
    let bestD = 14;
    for (const p of this.players.shown()) {
      const s = this.project(p.x, p.y);
      const d = Math.hypot(s.x - x, s.y - y);
      if (d < bestD) { best = p; bestD = d; }
    }
    return best;
  }

  /** Selects the character nearest to a click; a click on empty map deselects. */
  pick(x, y) {
    const best = this.nearest(x, y);
    this.onSelect(best ? best.name : null);
  }

  // --- layers ---------------------------------------------------------------------------------

  setTowns(towns) { this.towns = towns; this.dirty = true; }

  setHeat(kind, data) { this.heat[kind] = data; this.dirty = true; }

  setBackgroundImage(config) {
    if (!config || !config.url) return;
    const img = new Image();
    img.onload = () => { this.backgroundImage = { img, ...config }; this.dirty = true; };
    img.src = config.url;
  }

  invalidateTheme() { this.background = null; this.dirty = true; }

  css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

  /** Land and water drawn once per theme from deterministic value noise: an island continent. */
  renderBackground() {
    const size = 512;
    const off = document.createElement("canvas");
    off.width = size; off.height = size;
    const g = off.getContext("2d");
    const img = g.createImageData(size, size);
    const water = parseColor(this.css("--water")), deep = parseColor(this.css("--water-deep"));
    const land = parseColor(this.css("--land")), high = parseColor(this.css("--land-high"));
    for (let py = 0; py < size; py++) {
      for (let px = 0; px < size; px++) {
        const u = px / size * 2 - 1, v = py / size * 2 - 1;
        const edge = Math.max(Math.abs(u), Math.abs(v));
        const h = fbm(u * 3.1 + 7.3, v * 3.1 - 2.1) - Math.max(0, edge - 0.78) * 2.2 + 0.08;
        const i = (py * size + px) * 4;
        let c;
        if (h < 0.38) c = mix(deep, water, Math.max(0, (h - 0.2) / 0.18));
        else if (h < 0.42) c = mix(water, land, (h - 0.38) / 0.04);
        else c = mix(land, high, Math.min(1, (h - 0.42) / 0.35));
        img.data[i] = c[0]; img.data[i + 1] = c[1]; img.data[i + 2] = c[2]; img.data[i + 3] = 255;
      }
    }
    g.putImageData(img, 0, 0);
    this.background = off;
  }

  // --- drawing --------------------------------------------------------------------------------

  frame(t) {
    if (this.lastFrame) {
      this.frameTimes.push(t - this.lastFrame);
      if (this.frameTimes.length > FRAME_SAMPLES) this.frameTimes.shift();
    }
    this.lastFrame = t;
    const now = performance.now();
    const moving = this.players.tick(now);
    if (this.follow && this.selected) {
      const p = this.players.get(this.selected);
      if (p) { this.cx = p.x; this.cy = p.y; }
    }
    if (moving || this.dirty) {
      const started = performance.now();
      this.draw(now);
      this.drawTimes.push(performance.now() - started);
      if (this.drawTimes.length > FRAME_SAMPLES) this.drawTimes.shift();
      this.dirty = false;
    }
    requestAnimationFrame((next) => this.frame(next));
  }

  draw(now) {
    const ctx = this.ctx;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.fillStyle = this.css("--water-deep");
    ctx.fillRect(0, 0, this.width, this.height);
    const tl = this.project(-EXTENT, EXTENT);
    const side = 2 * EXTENT * this.scale;
    if (this.backgroundImage) {
      const b = this.backgroundImage;
      const a = this.project(b.west, b.north), z = this.project(b.east, b.south);
      ctx.drawImage(b.img, a.x, a.y, z.x - a.x, z.y - a.y);
    } else {
      if (!this.background) this.renderBackground();
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(this.background, tl.x, tl.y, side, side);
    }
    this.drawHeat("spawns", HEAT_RGB.spawns);
    this.drawHeat("rares", HEAT_RGB.rares);
    this.drawGrid();
    this.drawTowns();
    if (this.showTrails) this.drawTrails();
    this.drawMarkers(now);
    this.drawTownNames();
  }

  drawGrid() {
    const ctx = this.ctx;
    const spacing = [50, 20, 10, 5, 2, 1].find((s) => s * this.scale < 140) || 1;
    const step = [1, 2, 5, 10, 20, 50].find((s) => s * this.scale >= 60) || 50;
    ctx.strokeStyle = this.css("--grid");
    ctx.lineWidth = 1;
    ctx.fillStyle = this.css("--label");
    ctx.font = "11px system-ui, sans-serif";
    ctx.beginPath();
    const g = Math.max(step, spacing);
    for (let v = -100; v <= 100; v += g) {
      const a = this.project(v, -EXTENT), b = this.project(v, EXTENT);
      ctx.moveTo(Math.round(a.x) + 0.5, a.y); ctx.lineTo(Math.round(b.x) + 0.5, b.y);
      const c = this.project(-EXTENT, v), d = this.project(EXTENT, v);
      ctx.moveTo(c.x, Math.round(c.y) + 0.5); ctx.lineTo(d.x, Math.round(d.y) + 0.5);
    }
    ctx.stroke();
    // Axis labels along the visible top and left edges.
    ctx.textBaseline = "top";
    for (let v = -100; v <= 100; v += g) {
      const x = this.project(v, 0).x;
      if (x > 40 && x < this.width - 20) {
        ctx.fillText(`${Math.abs(v)}${v > 0 ? "E" : v < 0 ? "W" : ""}`, x + 2, 4);
      }
      const y = this.project(0, v).y;
      if (y > 16 && y < this.height - 20) {
        ctx.fillText(`${Math.abs(v)}${v > 0 ? "N" : v < 0 ? "S" : ""}`, 48, y + 2);
      }
    }
  }

  drawTowns() {
    const ctx = this.ctx;
    const showNames = this.scale > this.fitScale * 1.2 || this.width > 700;
    ctx.fillStyle = this.css("--town");
    ctx.strokeStyle = this.css("--panel") || "#fff";
    ctx.font = "600 11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    this.townBoxes = [];
    for (const t of this.towns) {
      const s = this.project(t.ew, t.ns);
      if (s.x < -50 || s.y < -20 || s.x > this.width + 50 || s.y > this.height + 20) continue;
      ctx.beginPath();
      ctx.rect(s.x - 3, s.y - 3, 6, 6);
      ctx.fill();
      this.townBoxes.push({ x: s.x - 3, y: s.y - 3, w: 6, h: 6 });
      if (!showNames) continue;
      const w = ctx.measureText(t.name).width + 4;
      const box = { x: s.x + 5, y: s.y - 7, w, h: 14 };
      if (box.x + w > this.width || this.townBoxes.some((b) => b.w > 6 && overlaps(box, w, 14, b))) continue;
      this.townBoxes.push({ ...box, name: t.name, tx: s.x + 6, ty: s.y });
    }
  }

  /** Town names, drawn after the markers so a crowd in a town never covers its name (their
   * places were chosen with the squares, so characters' names keep clear of them). */
  drawTownNames() {
    const ctx = this.ctx;
    ctx.fillStyle = this.css("--town");
    ctx.strokeStyle = this.css("--panel") || "#fff";
    ctx.font = "600 11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    ctx.lineWidth = 3;
    for (const b of this.townBoxes || []) {
      if (!b.name) continue;
      ctx.strokeText(b.name, b.tx, b.ty);
      ctx.fillText(b.name, b.tx, b.ty);
    }
  }

  drawHeat(kind, rgb) {
    const data = this.heat[kind];
    if (!data || !data.cells.length) return;
    const ctx = this.ctx;
    const max = data.cells.reduce((m, c) => Math.max(m, c.count), 1);
    for (const c of data.cells) {
      const a = this.project(c.ew, c.ns + data.bin);
      const size = data.bin * this.scale;
      ctx.fillStyle = `rgba(${rgb}, ${(0.15 + 0.65 * Math.sqrt(c.count / max)).toFixed(3)})`;
      ctx.fillRect(a.x, a.y, size + 0.5, size + 0.5);
    }
  }

  /** Trails fade with age, break where a character teleported (a `portal` frame, or a jump
   * farther than anyone walks in the time between two points), and end in an arrow that shows
   * the direction of travel. With many characters each trail keeps its newest points within a
   * shared budget (the selected character's is always whole), and points closer than 2 px to
   * the last one drawn are joined into it: a whole-map view of 1,000 ten-minute trails draws
   * tens of thousands of segments rather than 300,000. */
  drawTrails() {
    const ctx = this.ctx;
    ctx.lineWidth = 1.6;
    const now = this.players.clock();
    const windowMs = this.players.trailWindowMs || 600000;
    const wanted = (p) => p.trail.length > 1 && (this.trailMode !== "selected" || p.name === this.selected);
    let count = 0;
    for (const p of this.players.shown()) if (wanted(p)) count++;
    const perTrail = Math.max(MIN_TRAIL_POINTS, Math.floor(TRAIL_POINT_BUDGET / Math.max(1, count)));
    for (const p of this.players.shown()) {
      if (!wanted(p)) continue;
      const pts = p.trail;
      const alpha = p.alpha ?? 1;
      ctx.strokeStyle = p.color;
      // Points are in time order, so the three age bands are three runs: one pass, one stroke
      // per band (and a move at each break).
      let band = -1;
      let last = null;    // the last point drawn, in screen space
      let pending = null; // a later point too close to `last` to draw yet
      const settle = () => { if (pending) { ctx.lineTo(pending.x, pending.y); last = pending; pending = null; } };
      const first = p.name === this.selected ? 1 : Math.max(1, pts.length - perTrail);
      for (let i = first; i < pts.length; i++) {
        const [ew0, ns0, t0] = pts[i - 1];
        const [ew1, ns1, t1, gap] = pts[i];
        if (gap || isJump(ew0, ns0, t0, ew1, ns1, t1)) { settle(); last = null; continue; }
        const age = (now - t1) / windowMs;
        const b = age > 2 / 3 ? 0 : age > 1 / 3 ? 1 : 2;
        if (b !== band) {
          settle();
          if (band >= 0) ctx.stroke();
          ctx.beginPath();
          ctx.globalAlpha = (0.2 + 0.3 * b) * alpha;
          band = b;
          if (last) ctx.moveTo(last.x, last.y);
        }
        if (!last) { last = this.project(ew0, ns0); ctx.moveTo(last.x, last.y); }
        const q = this.project(ew1, ns1);
        const dx = q.x - last.x, dy = q.y - last.y;
        if (dx * dx + dy * dy < 4) { pending = q; continue; }
        ctx.lineTo(q.x, q.y);
        last = q;
        pending = null;
      }
      settle();
      if (band >= 0) ctx.stroke();
      const [ewA, nsA, tA] = pts[pts.length - 2];
      const [ewB, nsB, tB, gapB] = pts[pts.length - 1];
      if (!gapB && !isJump(ewA, nsA, tA, ewB, nsB, tB)) {
        const a = this.project(ewA, nsA), b = this.project(ewB, nsB);
        const len = Math.hypot(b.x - a.x, b.y - a.y);
        if (len > 4) {
          const ux = (b.x - a.x) / len, uy = (b.y - a.y) / len;
          ctx.globalAlpha = 0.9 * (p.alpha ?? 1);
          ctx.fillStyle = p.color;
          ctx.beginPath();
          ctx.moveTo(b.x, b.y);
          ctx.lineTo(b.x - 7 * ux - 4 * uy, b.y - 7 * uy + 4 * ux);
          ctx.lineTo(b.x - 7 * ux + 4 * uy, b.y - 7 * uy - 4 * ux);
          ctx.closePath();
          ctx.fill();
        }
      }
    }
    ctx.globalAlpha = 1;
  }

  /** Counts the trail segments drawn and broken for a character (tests). */
  trailSegments(name) {
    const p = this.players.get(name);
    if (!p) return null;
    let joined = 0, broken = 0;
    for (let i = 1; i < p.trail.length; i++) {
      const [ew0, ns0, t0] = p.trail[i - 1];
      const [ew1, ns1, t1, gap] = p.trail[i];
      if (gap || isJump(ew0, ns0, t0, ew1, ns1, t1)) broken++; else joined++;
    }
    return { joined, broken };
  }

  drawMarkers(now) {
    const ctx = this.ctx;
    const r = Math.max(4, Math.min(7, this.scale * 0.9));
    ctx.font = "600 11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    const outline = this.css("--panel") || "#fff";
    // Markers sharing a spot on screen (a cell about a marker wide) are drawn as one badge with
    // their count: zoomed out, a town's crowd is one number instead of a pile; zooming in spreads
    // them. The selected and hovered characters are never grouped, and are drawn last, on top.
    // With ten thousand characters this runs every frame: cells are numbered, not named, and
    // a group keeps sums rather than its members, so a frame makes little garbage.
    const cell = 2 * r + 4;
    const cells = new Map();
    const top = [];
    const halfW = this.width / 2, halfH = this.height / 2, cx = this.cx, cy = this.cy, scale = this.scale;
    for (const p of this.players.shown()) {
      const x = halfW + (p.x - cx) * scale;
      const y = halfH - (p.y - cy) * scale;
      if (x < -10 || y < -10 || x > this.width + 10 || y > this.height + 10) continue;
      if (p.name === this.selected || p.name === this.hovered) { top.push([p, { x, y }]); continue; }
      // Cell rows are far fewer than 65,536 and start at -1: one number per cell.
      const key = Math.floor(x / cell) * 65536 + Math.floor(y / cell);
      let group = cells.get(key);
      if (!group) { group = { n: 0, sx: 0, sy: 0, p, x, y }; cells.set(key, group); }
      group.n += 1; group.sx += x; group.sy += y;
    }
    const singles = [];
    const badges = [];
    for (const group of cells.values()) {
      if (group.n === 1) singles.push([group.p, { x: group.x, y: group.y }]); else badges.push(group);
    }
    for (const [p, s] of singles) this.drawMarker(p, s, r, outline, now);
    const accent = this.css("--accent");
    let grouped = 0;
    for (const group of badges) {
      grouped += group.n;
      const x = group.sx / group.n, y = group.sy / group.n;
      const text = group.n > 999 ? "999+" : String(group.n);
      const br = Math.max(r + 3, ctx.measureText(text).width / 2 + 5);
      ctx.beginPath();
      ctx.arc(x, y, br, 0, Math.PI * 2);
      ctx.fillStyle = accent;
      ctx.fill();
      ctx.lineWidth = 2;
      ctx.strokeStyle = outline;
      ctx.stroke();
      ctx.fillStyle = outline;
      ctx.textAlign = "center";
      ctx.fillText(text, x, y);
      ctx.textAlign = "start";
    }
    for (const [p, s] of top) {
      this.drawMarker(p, s, r, outline, now);
      ctx.beginPath();
      ctx.arc(s.x, s.y, r + 5, 0, Math.PI * 2);
      ctx.lineWidth = 2;
      ctx.strokeStyle = accent;
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
    this.markerStats = { singles: singles.length, groups: badges.length, grouped, top: top.map(([p]) => p.name) };
    this.drawLabels([...singles, ...top], r, outline, grouped);
  }

  /** One character's marker: filled when active, a ring when idle, a cross when dead, faint
   * when offline. */
  drawMarker(p, s, r, outline, now) {
    const ctx = this.ctx;
    const state = this.players.state(p, now);
    ctx.globalAlpha = p.alpha ?? 1;
    ctx.beginPath();
    ctx.arc(s.x, s.y, r, 0, Math.PI * 2);
    if (state === "dead") {
      ctx.fillStyle = outline;
      ctx.fill();
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = p.color;
      ctx.stroke();
      const d = r * 0.6;
      ctx.beginPath();
      ctx.moveTo(s.x - d, s.y - d); ctx.lineTo(s.x + d, s.y + d);
      ctx.moveTo(s.x + d, s.y - d); ctx.lineTo(s.x - d, s.y + d);
      ctx.lineWidth = 2.5;
      ctx.stroke();
    } else if (state === "idle") {
      ctx.fillStyle = outline;
      ctx.fill();
      ctx.lineWidth = 2.5;
      ctx.strokeStyle = p.color;
      ctx.stroke();
    } else {
      ctx.fillStyle = p.color;
      ctx.fill();
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = outline;
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
  }

  /** Names placed without overlapping each other, town names or markers: the selected and
   * hovered characters first, then the others by name; a name with no free place is left out
   * (its marker stays, and hovering shows it). */
  drawLabels(visible, r, outline, grouped = 0) {
    const ctx = this.ctx;
    const taken = new BoxGrid(48);
    for (const b of this.townBoxes || []) taken.add(b);
    for (const [p, s] of visible) taken.add({ x: s.x - r, y: s.y - r, w: 2 * r, h: 2 * r, owner: p.name });
    const rank = (p) => (p.name === this.selected ? 0 : p.name === this.hovered ? 1 : 2);
    const order = [...visible].sort((a, b) => rank(a[0]) - rank(b[0]) || a[0].name.localeCompare(b[0].name));
    const placed = [];
    let hidden = 0;
    const h = 14;
    this.textWidths = this.textWidths || new Map();
    for (const [p, s] of order) {
      // Beyond 150 names on screen, only the selected and hovered ones are tried: more would
      // cost frames and no one reads them.
      if (placed.length >= 150 && rank(p) === 2) { hidden++; continue; }
      let w = this.textWidths.get(p.name);
      if (w === undefined) {
        w = ctx.measureText(p.name).width + 4;
        if (this.textWidths.size > 5000) this.textWidths.clear();
        this.textWidths.set(p.name, w);
      }
      const spots = [
        { x: s.x + r + 3, y: s.y - h / 2 }, { x: s.x - r - 3 - w, y: s.y - h / 2 },
        { x: s.x - w / 2, y: s.y - r - 2 - h }, { x: s.x - w / 2, y: s.y + r + 2 },
      ];
      const inside = (c) => c.x >= 0 && c.y >= 0 && c.x + w <= this.width && c.y + h <= this.height;
      // The selected and hovered names always get a place (they are placed first, so no other
      // name is under them); the others only where nothing else is.
      const spot = rank(p) < 2
        ? spots.find((c) => inside(c) && !taken.hits({ x: c.x, y: c.y, w, h }, p.name)) || spots.find(inside)
        : spots.find((c) => inside(c) && !taken.hits({ x: c.x, y: c.y, w, h }, p.name));
      if (!spot) { hidden++; continue; }
      const box = { x: spot.x, y: spot.y, w, h, name: p.name };
      taken.add(box);
      placed.push(box);
      ctx.globalAlpha = p.alpha ?? 1;
      ctx.lineWidth = 3;
      ctx.strokeStyle = outline;
      ctx.strokeText(p.name, spot.x + 2, spot.y + h / 2);
      ctx.fillStyle = this.css("--label");
      ctx.fillText(p.name, spot.x + 2, spot.y + h / 2);
    }
    ctx.globalAlpha = 1;
    // Grouped characters' names are not drawn (their badge's count stands for them).
    this.labelStats = { drawn: placed.length, hidden: hidden + grouped, boxes: placed };
  }

  /** Statistics over the last frames, in milliseconds: the interval between animation frames
   * and the time spent drawing one. */
  frameStats() {
    const stats = (values) => {
      const t = [...values].sort((a, b) => a - b);
      const q = (x) => t.length ? t[Math.min(t.length - 1, Math.floor(x * t.length))] : 0;
      return { frames: t.length, p50: q(0.5), p95: q(0.95), p99: q(0.99), max: t[t.length - 1] || 0 };
    };
    return { interval: stats(this.frameTimes), draw: stats(this.drawTimes) };
  }
}

/** Boxes bucketed on a grid, so finding overlaps costs the neighbours, not every box. */
class BoxGrid {
  constructor(cell) { this.cell = cell; this.cells = new Map(); }

  keys(b) {
    const out = [];
    const c = this.cell;
    for (let gx = Math.floor(b.x / c); gx <= Math.floor((b.x + b.w) / c); gx++) {
      for (let gy = Math.floor(b.y / c); gy <= Math.floor((b.y + b.h) / c); gy++) out.push(`${gx},${gy}`);
    }
    return out;
  }

  add(b) {
    for (const k of this.keys(b)) {
      const list = this.cells.get(k);
      if (list) list.push(b); else this.cells.set(k, [b]);
    }
  }

  /** Whether `b` overlaps a box other than `owner`'s own marker. */
  hits(b, owner) {
    for (const k of this.keys(b)) {
      for (const t of this.cells.get(k) || []) {
        if (t.owner && t.owner === owner) continue;
        if (overlaps(b, b.w, b.h, t)) return true;
      }
    }
    return false;
  }
}

/** Whether the box at `a` (w x h) overlaps box `b`. */
function overlaps(a, w, h, b) {
  return a.x < b.x + b.w && a.x + w > b.x && a.y < b.y + b.h && a.y + h > b.y;
}

/** Whether two consecutive trail points are too far apart to have been walked. */
function isJump(ew0, ns0, t0, ew1, ns1, t1) {
  const secs = Math.max(0, (t1 - t0) / 1000) || 0;
  return Math.hypot(ew1 - ew0, ns1 - ns0) > MAX_WALK_UNITS_PER_SEC * secs + WALK_MARGIN_UNITS;
}

// --- procedural terrain helpers -----------------------------------------------------------------

function hash(x, y) {
  const s = Math.sin(x * 127.1 + y * 311.7) * 43758.5453;
  return s - Math.floor(s);
}

function noise(x, y) {
  const xi = Math.floor(x), yi = Math.floor(y);
  const xf = x - xi, yf = y - yi;
  const u = xf * xf * (3 - 2 * xf), v = yf * yf * (3 - 2 * yf);
  const a = hash(xi, yi), b = hash(xi + 1, yi), c = hash(xi, yi + 1), d = hash(xi + 1, yi + 1);
  return a + (b - a) * u + (c - a) * v + (a - b - c + d) * u * v;
}

function fbm(x, y) {
  let sum = 0, amp = 0.5, freq = 1;
  for (let i = 0; i < 5; i++) {
    sum += amp * noise(x * freq, y * freq);
    amp *= 0.5; freq *= 2.03;
  }
  return sum;
}

function parseColor(css) {
  const m = css.match(/^#([0-9a-f]{6})$/i);
  if (!m) return [128, 128, 128];
  const n = parseInt(m[1], 16);
  return [n >> 16, (n >> 8) & 255, n & 255];
}

function mix(a, b, t) {
  const k = Math.max(0, Math.min(1, t));
  return [0, 1, 2].map((i) => Math.round(a[i] + (b[i] - a[i]) * k));
}
