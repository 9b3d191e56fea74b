// The canvas map: a self-drawn Dereth (procedural land and water, a labelled coordinate grid,
// towns), character markers, trails and heatmap layers, with pan and zoom by mouse, touch,
// keyboard and buttons. Draws only when something changed or moves.

import { formatCoords } from "./format.js";

const EXTENT = 102;          // the map spans about -101.9 .. 102.0 on both axes
const MIN_SCALE_FACTOR = 0.8;
const MAX_SCALE_FACTOR = 60;

export class MapView {
  constructor(canvas, players, { onSelect, onCursor }) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.players = players;
    this.onSelect = onSelect;
    this.onCursor = onCursor;
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
      if (!prev) return;
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

  /** Selects the character nearest to a click, if one is close enough. */
  pick(x, y) {
    let best = null;
    let bestD = 14;
    for (const p of this.players.values()) {
      const s = this.project(p.x, p.y);
      const d = Math.hypot(s.x - x, s.y - y);
      if (d < bestD) { best = p; bestD = d; }
    }
    if (best) this.onSelect(best.name);
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
      if (this.frameTimes.length > 600) this.frameTimes.shift();
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
      if (this.drawTimes.length > 600) this.drawTimes.shift();
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
    this.drawHeat("spawns", "255, 120, 0");
    this.drawHeat("rares", "190, 60, 255");
    this.drawGrid();
    this.drawTowns();
    if (this.showTrails) this.drawTrails();
    this.drawMarkers(now);
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
    const showNames = this.scale > this.fitScale * 1.6 || this.width > 900;
    ctx.fillStyle = this.css("--town");
    ctx.strokeStyle = this.css("--panel") || "#fff";
    ctx.font = "600 11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    for (const t of this.towns) {
      const s = this.project(t.ew, t.ns);
      if (s.x < -50 || s.y < -20 || s.x > this.width + 50 || s.y > this.height + 20) continue;
      ctx.beginPath();
      ctx.rect(s.x - 3, s.y - 3, 6, 6);
      ctx.fill();
      if (showNames) {
        ctx.lineWidth = 3;
        ctx.strokeText(t.name, s.x + 6, s.y);
        ctx.fillText(t.name, s.x + 6, s.y);
      }
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

  drawTrails() {
    const ctx = this.ctx;
    ctx.lineWidth = 1.5;
    for (const p of this.players.values()) {
      if (p.trail.length < 2) continue;
      ctx.strokeStyle = p.color;
      ctx.globalAlpha = 0.7 * (p.alpha ?? 1);
      ctx.beginPath();
      p.trail.forEach(([ew, ns, , gap], i) => {
        const s = this.project(ew, ns);
        // A teleport (portal frame) starts a new segment instead of a line across the map.
        if (i === 0 || gap) ctx.moveTo(s.x, s.y); else ctx.lineTo(s.x, s.y);
      });
      const last = this.project(p.x, p.y);
      ctx.lineTo(last.x, last.y);
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
  }

  drawMarkers(now) {
    const ctx = this.ctx;
    const visible = [];
    for (const p of this.players.values()) {
      const s = this.project(p.x, p.y);
      if (s.x < -10 || s.y < -10 || s.x > this.width + 10 || s.y > this.height + 10) continue;
      visible.push([p, s]);
    }
    const labels = visible.length <= 120 || this.scale > this.fitScale * 6;
    const r = Math.max(4, Math.min(7, this.scale * 0.9));
    ctx.font = "600 11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    const outline = this.css("--panel") || "#fff";
    for (const [p, s] of visible) {
      const state = this.players.state(p, now);
      ctx.globalAlpha = p.alpha ?? 1;
      ctx.beginPath();
      ctx.arc(s.x, s.y, r, 0, Math.PI * 2);
      if (state === "idle") {
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
      if (p.name === this.selected) {
        ctx.beginPath();
        ctx.arc(s.x, s.y, r + 5, 0, Math.PI * 2);
        ctx.lineWidth = 2;
        ctx.strokeStyle = this.css("--accent");
        ctx.stroke();
      }
      if (labels || p.name === this.selected) {
        ctx.lineWidth = 3;
        ctx.strokeStyle = outline;
        ctx.strokeText(p.name, s.x + r + 4, s.y);
        ctx.fillStyle = this.css("--label");
        ctx.fillText(p.name, s.x + r + 4, s.y);
      }
    }
    ctx.globalAlpha = 1;
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
