// The home page's draft (static/chat/draft.js) has no socket until its first send creates the
// conversation: the Connection waits without a URL, then connects once it has one.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Connection, socketUrl } from "../socket.js";

class FakeSocket {
  static made = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    FakeSocket.made.push(this);
  }
  addEventListener() {}
  close() { this.readyState = 3; }
}

test("the socket URL follows the page's scheme and host", () => {
  assert.equal(socketUrl("/ws/conversations/a/", { protocol: "http:", host: "127.0.0.1:8000" }),
    "ws://127.0.0.1:8000/ws/conversations/a/");
  assert.equal(socketUrl("/ws/conversations/a/", { protocol: "https:", host: "chat.example.com" }),
    "wss://chat.example.com/ws/conversations/a/");
});

test("a connection without a URL does nothing until it has one", () => {
  const statuses = [];
  const conn = new Connection({ url: "", onText() {}, onStatus: (kind) => statuses.push(kind), WebSocketImpl: FakeSocket });
  conn.connect();
  conn.online();
  conn.resume(); // back from the back/forward cache
  conn.watchdog();
  assert.equal(FakeSocket.made.length, 0);
  assert.deepEqual(statuses, []);
  assert.equal(conn.failures, 0);

  conn.url = "ws://test/ws/conversations/b/";
  conn.connect();
  assert.deepEqual(FakeSocket.made.map((s) => s.url), ["ws://test/ws/conversations/b/"]);
  conn.stop();
});
