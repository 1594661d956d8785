// Reconnection rules of static/chat/socket.js: backoff delays and what each close code does.
import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import {
  BACKOFF_BASE_MS, BACKOFF_MAX_MS, Connection, OFFLINE_AFTER_FAILURES, RESTART_RECONNECT_MAX_MS,
  backoffDelay, closeAction,
} from "../socket.js";

test("the backoff doubles from 0.5 s to 10 s, with ±25% jitter", () => {
  const middle = () => 0.5;
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(n, false, middle)),
    [500, 1000, 2000, 4000, 8000, 10000, 10000]);
  assert.equal(backoffDelay(1, false, () => 0), 375);
  assert.equal(backoffDelay(1, false, () => 1), 625);
  assert.equal(backoffDelay(9, false, () => 1), BACKOFF_MAX_MS);
  assert.equal(backoffDelay(1, true, middle), BACKOFF_MAX_MS);
});

test("each close code has its decision", () => {
  assert.equal(closeAction(4401), "stop");
  assert.equal(closeAction(4404), "gone");
  assert.equal(closeAction(4403), "gone");
  assert.equal(closeAction(1012), "now");
  for (const code of [4008, 4429, 1006, 1000, 4000]) assert.equal(closeAction(code), "retry");
});

class FakeSocket {
  static made = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.listeners = {};
    this.sent = [];
    FakeSocket.made.push(this);
  }
  addEventListener(type, listener) { this.listeners[type] = listener; }
  send(text) { this.sent.push(text); }
  close() { this.readyState = 3; }
  fire(type, event = {}) {
    if (type === "open") this.readyState = 1;
    this.listeners[type]?.(event);
  }
}

const connections = [];
afterEach(() => {
  for (const conn of connections.splice(0)) conn.stop();
  FakeSocket.made = [];
});

function connection() {
  const statuses = [];
  const texts = [];
  const conn = new Connection({
    url: "ws://test/ws/conversations/x/",
    onText: (text) => texts.push(text),
    onStatus: (kind) => statuses.push(kind),
    WebSocketImpl: FakeSocket,
    random: () => 0.5,
  });
  connections.push(conn);
  conn.connect();
  return { conn, statuses, texts, socket: FakeSocket.made.at(-1) };
}

test("4401 stops reconnecting and says the session ended", () => {
  const { conn, statuses, socket } = connection();
  socket.fire("open");
  socket.fire("close", { code: 4401 });
  assert.equal(conn.ended, true);
  assert.equal(conn.stopped, true);
  assert.equal(conn.retryTimer, null);
  assert.deepEqual(statuses, ["offline"]);
  conn.connect();
  assert.equal(FakeSocket.made.length, 1);
});

test("4404 marks the conversation gone: offline at once, slowest retry", () => {
  const { conn, statuses, socket } = connection();
  const before = Date.now();
  socket.fire("close", { code: 4404 });
  assert.equal(conn.gone, true);
  assert.deepEqual(statuses, ["offline"]);
  assert.ok(conn.retryAt - before >= BACKOFF_MAX_MS);
});

test("1012 reconnects at once, without counting a failure", () => {
  const { conn, statuses, socket } = connection();
  conn.failures = 4;
  const before = Date.now();
  socket.fire("close", { code: 1012 });
  assert.equal(conn.failures, 0);
  assert.deepEqual(statuses, ["reconnecting"]);
  assert.ok(conn.retryAt - before <= RESTART_RECONNECT_MAX_MS + 5);
});

test("other closes back off, and say offline after repeated failures", () => {
  const { conn, statuses, socket } = connection();
  const before = Date.now();
  socket.fire("close", { code: 4008 });
  assert.equal(conn.failures, 1);
  assert.ok(conn.retryAt - before >= BACKOFF_BASE_MS && conn.retryAt - before < BACKOFF_BASE_MS + 50);
  for (let i = 1; i < OFFLINE_AFTER_FAILURES; i++) conn.closed(4429);
  assert.equal(statuses.at(-2), "reconnecting");
  assert.equal(statuses.at(-1), "offline");
  conn.markSynced();
  assert.equal(conn.failures, 0);
});

test("frames reach onText, events of a replaced socket are ignored, send needs an open socket", () => {
  const { conn, texts, socket } = connection();
  assert.equal(conn.send({ type: "ping" }), false);
  socket.fire("open");
  assert.equal(conn.send({ type: "ping" }), true);
  assert.deepEqual(socket.sent, ['{"type":"ping"}']);
  socket.fire("message", { data: "one" });
  conn.restart("manual");
  socket.fire("message", { data: "stale" });
  socket.fire("close", { code: 1006 });
  assert.deepEqual(texts, ["one"]);
  assert.equal(conn.failures, 0);
});
