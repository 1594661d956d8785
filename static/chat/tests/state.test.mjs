// The chat's pure state rules (static/chat/state.js), run by `node --test static/chat/tests/`.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  applyDelta, applySync, applyToolCallDelta, createState, dropOutbox, findToolCall,
  keepOmittedContent, normalizeMessage, queueMessage, refusesOutbox, upsertMessage,
} from "../state.js";

function reply(content = "", extra = {}) {
  return normalizeMessage({ id: "m1", role: "assistant", status: "streaming", content, ...extra });
}

test("a delta at the end is appended", () => {
  const message = reply("Hello");
  assert.equal(applyDelta(message, 5, ", world"), true);
  assert.equal(message.content, "Hello, world");
  assert.equal(message.contentLength, 12);
});

test("a delta past the end is a gap: nothing changes and the caller resyncs", () => {
  const message = reply("Hello");
  assert.equal(applyDelta(message, 6, "x"), false);
  assert.equal(message.content, "Hello");
  assert.equal(applyDelta(message, -1, "x"), false);
  assert.equal(applyDelta(message, Number.NaN, "x"), false);
});

test("an overlapping delta keeps only what is new", () => {
  const message = reply("Hello");
  assert.equal(applyDelta(message, 3, "lo, world"), true);
  assert.equal(message.content, "Hello, world");
});

test("a duplicate delta changes nothing", () => {
  const message = reply("Hello, world");
  assert.equal(applyDelta(message, 5, ", world"), true);
  assert.equal(applyDelta(message, 0, "Hello"), true);
  assert.equal(message.content, "Hello, world");
});

test("offsets count code points, as the server does (emoji are two UTF-16 units)", () => {
  const message = reply("a😀");
  assert.equal(message.contentLength, 2);
  assert.equal(applyDelta(message, 1, "😀b"), true);
  assert.equal(message.content, "a😀b");
  assert.equal(message.contentLength, 3);
});

test("tool-call arguments splice by offset, append without one, and leave a gap alone", () => {
  const message = reply();
  const call = findToolCall(message, "c1", "search");
  applyToolCallDelta(call, 0, '{"q":');
  applyToolCallDelta(call, 3, '":"x"');
  applyToolCallDelta(call, undefined, "}");
  assert.equal(call.arguments, '{"q":"x"}');
  applyToolCallDelta(call, 20, "lost");
  assert.equal(call.arguments, '{"q":"x"}');
  assert.equal(findToolCall(message, "c1"), call);
  assert.equal(message.tool_calls.length, 1);
});

test("the outbox is emptied when the server acknowledges its client_id", () => {
  const state = createState({ messages: [] });
  queueMessage(state, "cid", "hi");
  assert.equal(state.messages[0].status, "pending");
  upsertMessage(state, { id: "u1", role: "user", status: "completed", content: "hi", client_id: "cid" });
  assert.equal(state.outbox, null);
  assert.deepEqual(state.messages.map((m) => m.id), ["u1"]);
});

test("a refusal naming the outbox's client_id drops the outbox, whatever was sent since", () => {
  const state = createState({ messages: [] });
  queueMessage(state, "cid", "bad text");
  state.lastRequest = "run.cancel";
  assert.equal(refusesOutbox(state, { type: "error", code: "invalid", client_id: "cid" }), true);
  assert.equal(refusesOutbox(state, { type: "error", code: "invalid", client_id: "other" }), false);
  assert.equal(dropOutbox(state), "bad text");
  assert.equal(state.outbox, null);
  assert.deepEqual(state.messages, []);
});

test("a send error without client_id refuses the outbox only once it was sent", () => {
  const state = createState({ messages: [] });
  queueMessage(state, "cid", "hi");
  state.lastRequest = "message.send";
  assert.equal(refusesOutbox(state, { code: "rate_limited" }), false);
  state.outbox.sent = true;
  assert.equal(refusesOutbox(state, { code: "rate_limited" }), true);
  assert.equal(refusesOutbox(state, { code: "no_interrupt" }), false);
});

test("a sync keeps an unacknowledged send on screen, or drops it when the server has it", () => {
  const state = createState({ messages: [] });
  queueMessage(state, "cid", "hi");
  applySync(state, { messages: [{ id: "a0", role: "assistant", status: "completed", content: "x" }] });
  assert.deepEqual(state.messages.map((m) => m.id), ["a0", "local:cid"]);
  assert.notEqual(state.outbox, null);
  applySync(state, { messages: [{ id: "u1", role: "user", status: "completed", content: "hi", client_id: "cid" }] });
  assert.equal(state.outbox, null);
  assert.deepEqual(state.messages.map((m) => m.id), ["u1"]);
});

test("a partial sync keeps older messages and takes the running reply's text", () => {
  const state = createState({ messages: [
    { id: "u0", role: "user", status: "completed", content: "old" },
    { id: "a1", role: "assistant", status: "streaming", content: "He" },
  ] });
  applySync(state, {
    messages: [{ id: "a1", role: "assistant", status: "streaming", content: "He" }],
    messages_complete: false,
    active_run: { message_id: "a1", content: "Hello", tool_calls: [], status: "streaming" },
  });
  assert.deepEqual(state.messages.map((m) => m.id), ["u0", "a1"]);
  assert.equal(state.byId.get("a1").content, "Hello");
  assert.equal(state.byId.get("a1").contentLength, 5);
});

test("a final frame with content_omitted keeps the text assembled from the deltas", () => {
  const state = createState({ messages: [{ id: "a1", role: "assistant", status: "streaming", content: "" }] });
  applyDelta(state.byId.get("a1"), 0, "abcdef");
  const frame = { id: "a1", role: "assistant", status: "completed", content_omitted: true, content_length: 6 };
  const kept = keepOmittedContent(state, frame);
  assert.equal(kept.incomplete, false);
  const message = upsertMessage(state, kept.raw);
  assert.equal(message.content, "abcdef");
  assert.equal(message.status, "completed");
  // Fewer characters than the server has: the caller loads the stored text.
  assert.equal(keepOmittedContent(state, { ...frame, content_length: 7 }).incomplete, true);
  // A frame with its content is taken as it is.
  const whole = { id: "a1", content: "xyz" };
  assert.deepEqual(keepOmittedContent(state, whole), { raw: whole, incomplete: false });
});

test("a sync with an omitted reply keeps this page's text and asks to load the rest", () => {
  const state = createState({ messages: [{ id: "a1", role: "assistant", status: "streaming", content: "abc" }] });
  const load = applySync(state, { messages: [
    { id: "a1", role: "assistant", status: "completed", content_omitted: true, content_length: 5 },
  ] });
  assert.deepEqual(load, ["a1"]);
  assert.equal(state.byId.get("a1").content, "abc");
});
