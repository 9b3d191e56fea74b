// Formatting shared by the map, the list and the chat: coordinates as players read them,
// stable colours per character, durations.

/** "42.1N, 33.6E" from map coordinates (north and east positive). */
export function formatCoords(ew, ns) {
  const lat = `${Math.abs(ns).toFixed(1)}${ns >= 0 ? "N" : "S"}`;
  const lon = `${Math.abs(ew).toFixed(1)}${ew >= 0 ? "E" : "W"}`;
  return `${lat}, ${lon}`;
}

/** A colour that is always the same for the same name (hue from a string hash). */
export function colorOf(name) {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  // Final avalanche so names that differ in one character get far-apart hues.
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b); h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35); h ^= h >>> 16;
  const hue = (h >>> 0) % 360;
  return `hsl(${hue}, 75%, 48%)`;
}

/** The n-th colour of a palette whose neighbours are far apart: hues stepped by the golden
 * angle, lightness alternating, so even hundreds of characters rarely share a colour. */
export function paletteColor(n) {
  const hue = Math.round((n * 137.508) % 360);
  const light = [46, 36, 56][n % 3];
  return `hsl(${hue}, 72%, ${light}%)`;
}

/** "1h 02m" from the plugin's online time ("dd.hh:mm:ss") or seconds. */
export function formatOnline(value) {
  const secs = onlineSeconds(value);
  if (!Number.isFinite(secs)) return "–";
  const h = Math.floor(secs / 3600);
  const m = Math.floor((secs % 3600) / 60);
  return h > 0 ? `${h}h ${String(m).padStart(2, "0")}m` : `${m}m`;
}

/** Seconds from "dd.hh:mm:ss", "hh:mm:ss" or a number. */
export function onlineSeconds(value) {
  if (typeof value === "number") return value;
  if (typeof value !== "string") return NaN;
  const m = value.match(/^(?:(\d+)\.)?(\d+):(\d+):(\d+)/);
  if (!m) return NaN;
  return (+(m[1] || 0)) * 86400 + (+m[2]) * 3600 + (+m[3]) * 60 + (+m[4]);
}

export function formatNumber(n) {
  if (n === null || n === undefined || n === "") return "–";
  const v = Number(n);
  return Number.isFinite(v) ? v.toLocaleString("en-US", { maximumFractionDigits: 1 }) : String(n);
}

export function formatTime(iso) {
  const d = iso ? new Date(iso) : new Date();
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleTimeString("en-GB", { hour12: false });
}
