// The /ws/live connection: reconnects with exponential backoff and reports its state. Every
// (re)connection starts with a `snapshot` frame, from which the app rebuilds its state. The map
// takes the coalesced stream: a `batch` frame per server tick carrying every update since the
// previous one, each handed on as if it had arrived alone. A large snapshot arrives as numbered
// parts (`part` 1..`parts`), put together here before it is handed on; a tick with many updates
// arrives as several batches. The map asks for the compact encoding: live characters come as
// arrays of the columns the first (`encoding`) frame names, turned back into objects here, so
// the rest of the map reads the same frames either way.

const MIN_BACKOFF = 500;
const MAX_BACKOFF = 15000;

export class LiveConnection {
  constructor({ onFrame, onStatus, onClose }) {
    this.onFrame = onFrame;
    this.onStatus = onStatus;
    // Told the close code of every socket that ends (1008: signed out or refused).
    this.onClose = onClose;
    this.stopped = false;
    this.backoff = MIN_BACKOFF;
    this.socket = null;
    this.token = takeToken();
    // The `viewport` frame in force (text), sent again after every reconnection.
    this.watching = null;
    // The columns of the compact encoding, once the server has named them.
    this.columns = null;
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    // The command token never travels in a URL (URLs end up in logs and histories): it rides
    // in each command frame instead.
    return `${scheme}//${location.host}/ws/live?coalesce=1&encoding=compact`;
  }

  connect() {
    this.stopped = false;
    this.onStatus("connecting");
    let socket;
    try {
      socket = new WebSocket(this.url());
    } catch (err) {
      this.retry();
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      this.backoff = MIN_BACKOFF;
      if (this.watching) socket.send(this.watching);
      this.onStatus("open");
    };
    socket.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame && frame.type === "encoding") {
        this.columns = Array.isArray(frame.columns) ? frame.columns : null;
      } else if (Array.isArray(frame)) {
        const update = this.expand(frame, "telemetry");
        if (update) this.take(update);
      } else if (frame && frame.type === "batch" && Array.isArray(frame.frames)) {
        for (const inner of frame.frames) {
          if (Array.isArray(inner)) {
            const update = this.expand(inner, "telemetry");
            if (update) this.take(update);
          } else if (inner && typeof inner.type === "string") {
            this.take(inner);
          }
        }
      } else if (frame && typeof frame.type === "string") {
        if (frame.type === "snapshot" && Array.isArray(frame.players)) {
          frame.players = frame.players
            .map((p) => (Array.isArray(p) ? this.expand(p) : p))
            .filter(Boolean);
        }
        this.take(frame);
      }
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.onClose?.(event.code);
      if (!this.stopped) this.retry();
    };
    socket.onerror = () => socket.close();
  }

  /**
   * A compact character (an array of the announced columns) as the object the JSON encoding
   * would have sent; times (milliseconds) become ISO strings. Null before the columns are known.
   */
  expand(row, type) {
    if (!this.columns) return null;
    const out = type ? { type } : {};
    this.columns.forEach((name, i) => {
      const value = i < row.length ? row[i] : null;
      out[name] = (name === "timestamp" || name === "last_seen") && typeof value === "number"
        ? new Date(value).toISOString()
        : value;
    });
    if (out.vitals == null) delete out.vitals;
    if (out.character_stats == null) delete out.character_stats;
    return typeof out.character_name === "string" ? out : null;
  }

  /** Hands a frame on; a snapshot's parts only once the last one is in. */
  take(frame) {
    if (frame.type !== "snapshot") {
      // Frames of other kinds may come between a snapshot's parts (relayed ones): on they go.
      this.onFrame(frame);
      return;
    }
    if (!(Number(frame.parts) > 1)) {
      this.parts = null;
      this.onFrame(frame);
      return;
    }
    const part = Number(frame.part);
    if (part === 1) {
      this.parts = { players: [], chat: frame.chat || [], next: 1, of: Number(frame.parts) };
    }
    // A part out of order (a resync started over): wait for the next part 1.
    if (!this.parts || part !== this.parts.next || Number(frame.parts) !== this.parts.of) {
      this.parts = null;
      return;
    }
    for (const p of frame.players || []) this.parts.players.push(p);
    this.parts.next += 1;
    if (part === this.parts.of) {
      const whole = { type: "snapshot", players: this.parts.players, chat: this.parts.chat };
      this.parts = null;
      this.onFrame(whole);
    }
  }

  /** Closes the socket and stops reconnecting (until `connect` is called again). */
  stop() {
    this.stopped = true;
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close();
    this.onStatus("signed-out");
  }

  retry() {
    this.socket = null;
    if (this.stopped) return;
    const wait = this.backoff * (0.75 + Math.random() * 0.5);
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF);
    this.onStatus("retrying", Math.round(wait / 1000));
    setTimeout(() => { if (!this.stopped) this.connect(); }, wait);
  }

  /**
   * Asks for updates about one area of the map only (`null`: all of it); kept across
   * reconnections. True when that changed what is watched.
   */
  watch(area) {
    const text = JSON.stringify(area ? { type: "viewport", ...area } : { type: "viewport" });
    const current = this.watching ?? JSON.stringify({ type: "viewport" });
    if (text === current) return false;
    this.watching = text;
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(text);
    return true;
  }

  /** Sends a frame; false when not connected. */
  send(frame) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }
}

/**
 * The command token: from `?token=` when the map was opened with one (then removed from the
 * address bar and kept for this tab only), else from earlier in this tab.
 */
function takeToken() {
  const params = new URLSearchParams(location.search);
  const fromUrl = params.get("token");
  if (fromUrl) {
    try { sessionStorage.setItem("dereth-token", fromUrl); } catch { /* storage disabled */ }
    params.delete("token");
    const query = params.toString();
    history.replaceState(null, "", `${location.pathname}${query ? `?${query}` : ""}${location.hash}`);
    return fromUrl;
  }
  try { return sessionStorage.getItem("dereth-token"); } catch { return null; }
}
