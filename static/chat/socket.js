// The websocket (docs/protocol.md): connect, reconnect with backoff, the close codes, the
// watchdog (ping, idle and connect timeouts). Every (re)connect starts with `conversation.sync`
// (frames.js), which replaces local state, so a dropped socket can leave nothing stale or doubled.
// Nothing here touches the document: the page hears of changes through `onStatus`.

// Proxies commonly drop sockets idle for 60 s or more; a ping every 25 s keeps them open.
const PING_INTERVAL_MS = 25_000;
// No frame for this long, with a ping outstanding: the socket is dead even if the browser
// has not noticed (sleeping laptop, switched network).
const IDLE_TIMEOUT_MS = 60_000;
const PONG_GRACE_MS = 10_000;
// A handshake that neither opens nor fails within this is abandoned.
const CONNECT_TIMEOUT_MS = 20_000;
// Watchdog period; browsers stretch it in background tabs, which the idle check tolerates.
export const WATCHDOG_TICK_MS = 5_000;
export const BACKOFF_BASE_MS = 500;
export const BACKOFF_MAX_MS = 10_000;
// 0.5 + 1 + 2 + 4 + 8 + 10 s: about 25 s of failed attempts before saying "Offline".
export const OFFLINE_AFTER_FAILURES = 6;
// 4403: not allowed (logged out); 4404: conversation gone. Not transient, so straight to the
// slowest retry and "Offline"; still retried, since a re-login in another tab fixes 4403.
const GONE_CLOSE_CODES = new Set([4403, 4404]);
// 4401: the login session ended (logout, deactivation, password change). No retry can fix it,
// so the chat stops and the banner's link (the page, which leads to the login form) takes over.
const SESSION_ENDED_CLOSE_CODE = 4401;
// 1012: the server process is restarting (SIGTERM) and has ended its replies; another process
// takes the connection now, so reconnect at once (with jitter, as every tab does it).
const SERVICE_RESTART_CLOSE_CODE = 1012;
export const RESTART_RECONNECT_MAX_MS = 250;
// WebSocket.readyState values (the WHATWG standard's numbers).
const CONNECTING = 0;
const OPEN = 1;

// What a close code asks of the client: "stop" (the session ended), "now" (the server is
// restarting: reconnect at once), "gone" (retry slowly, say "Offline") or "retry" (with backoff:
// 4008 too slow a reader, 4429 too many sockets, 1006 a dropped network...).
export function closeAction(code) {
  if (code === SESSION_ENDED_CLOSE_CODE) return "stop";
  if (code === SERVICE_RESTART_CLOSE_CODE) return "now";
  if (GONE_CLOSE_CODES.has(code)) return "gone";
  return "retry";
}

// The wait before the next attempt after `failures` consecutive failed ones.
export function backoffDelay(failures, gone, random = Math.random) {
  if (gone) return BACKOFF_MAX_MS;
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, failures - 1));
  // ±25% jitter spreads out the tabs that a server restart disconnected all at once.
  return Math.min(BACKOFF_MAX_MS, Math.round(base * (0.75 + random() * 0.5)));
}

// The websocket URL of `path` on this page's host.
export function socketUrl(path, loc = globalThis.location) {
  return `${loc.protocol === "https:" ? "wss:" : "ws:"}//${loc.host}${path}`;
}

export class Connection {
  // `onText(text)`: a frame arrived; `onStatus(kind)`: "reconnecting", "offline" (read `ended`
  // and `gone` for why). `WebSocketImpl`, `random` and `now` are for tests.
  constructor({ url, onText, onStatus, WebSocketImpl = globalThis.WebSocket, random = Math.random, now = Date.now }) {
    Object.assign(this, { url, onText, onStatus, WebSocketImpl, random, now });
    this.ws = null;
    // Bumped for every socket; events from an older socket are ignored.
    this.generation = 0;
    // Consecutive attempts that ended without a sync.
    this.failures = 0;
    this.gone = false;
    this.ended = false;
    this.opened = false;
    this.synced = false;
    this.startedAt = 0;
    this.lastFrameAt = 0;
    this.lastPingAt = 0;
    this.retryTimer = null;
    this.retryAt = 0;
    this.stopped = false;
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    // No URL yet: the home page's draft, until its first send creates the conversation.
    if (this.stopped || !this.url) return;
    const generation = ++this.generation;
    this.opened = false;
    this.synced = false;
    this.startedAt = this.now();
    let ws;
    try {
      ws = new this.WebSocketImpl(this.url);
    } catch {
      this.closed(1006);
      return;
    }
    this.ws = ws;
    ws.addEventListener("open", () => {
      if (generation !== this.generation) return;
      this.opened = true;
      this.lastFrameAt = this.now();
      this.lastPingAt = this.lastFrameAt;
    });
    ws.addEventListener("message", (event) => {
      if (generation !== this.generation) return;
      this.lastFrameAt = this.now();
      this.onText(event.data);
    });
    // "error" is always followed by "close", which is where the retry is scheduled.
    ws.addEventListener("close", (event) => {
      if (generation !== this.generation) return;
      this.closed(event.code);
    });
  }

  // `conversation.sync` arrived: the connection is whole again.
  markSynced() {
    this.synced = true;
    this.failures = 0;
    this.gone = false;
    this.ended = false;
  }

  closed(code) {
    this.ws = null;
    this.synced = false;
    this.failures += 1;
    const action = closeAction(code);
    if (action === "stop") {
      this.ended = true;
      this.stopped = true;
      clearTimeout(this.retryTimer);
      this.onStatus("offline");
      return;
    }
    if (action === "gone") this.gone = true;
    if (action === "now") {
      this.failures = 0;
      this.scheduleReconnect(Math.round(this.random() * RESTART_RECONNECT_MAX_MS));
      return;
    }
    this.scheduleReconnect();
  }

  scheduleReconnect(delay = backoffDelay(this.failures, this.gone, this.random)) {
    if (this.stopped) return;
    this.onStatus(this.gone || this.failures >= OFFLINE_AFTER_FAILURES ? "offline" : "reconnecting");
    clearTimeout(this.retryTimer);
    this.retryAt = this.now() + delay;
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  // Drops the current socket at once (without waiting for a closing handshake a dead network
  // would never finish) and reconnects; the sync frame then repairs the state.
  restart(reason) {
    const ws = this.ws;
    this.generation++;
    this.ws = null;
    this.synced = false;
    if (ws) {
      try {
        ws.close(4000, reason);
      } catch {
        // Already closing.
      }
    }
    this.scheduleReconnect(Math.round(BACKOFF_BASE_MS * (0.75 + this.random() * 0.5)));
  }

  // False when there is no open socket (the frame is not queued).
  send(frame) {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  watchdog() {
    const ws = this.ws;
    const now = this.now();
    if (!ws) {
      // A retry timer that background throttling made overdue: do it now.
      if (this.retryTimer && now > this.retryAt + WATCHDOG_TICK_MS) this.connect();
      return;
    }
    if (ws.readyState === CONNECTING) {
      if (now - this.startedAt > CONNECT_TIMEOUT_MS) this.restart("connect timeout");
      return;
    }
    if (ws.readyState !== OPEN) return;
    // Dead only if a ping went unanswered: in a throttled background tab this tick itself may
    // come a minute late, which alone proves nothing.
    if (now - this.lastFrameAt > IDLE_TIMEOUT_MS && this.lastPingAt > this.lastFrameAt && now - this.lastPingAt > PONG_GRACE_MS) {
      this.restart("idle");
      return;
    }
    if (now - this.lastPingAt >= PING_INTERVAL_MS) {
      if (this.send({ type: "ping" })) this.lastPingAt = now;
    }
  }

  // The network came back: try at once, as after a first failure.
  online() {
    if (this.ws) return;
    this.failures = Math.min(this.failures, 1);
    this.connect();
  }

  // Leaving the page: close cleanly (so it can enter the back/forward cache) and stay closed.
  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const ws = this.ws;
    this.generation++;
    this.ws = null;
    ws?.close(1000, "page hidden");
  }

  // Back from the back/forward cache.
  resume() {
    if (!this.url) return;
    this.stopped = false;
    this.failures = 0;
    this.onStatus("reconnecting");
    this.connect();
  }
}
