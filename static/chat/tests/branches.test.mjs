// Branch rules (static/chat/branches.js), run by `node --test static/chat/tests/`.
import assert from "node:assert/strict";
import { test } from "node:test";

import { canEdit, canRegenerate, lastEditable, placeMessage, setBranches, siblingInfo } from "../branches.js";
import { createState, queueMessage, upsertMessage } from "../state.js";

function conversation() {
  return createState({
    messages: [
      { id: "u1", role: "user", content: "hi", status: "completed", parent_id: null },
      { id: "a1", role: "assistant", content: "hello", status: "completed", parent_id: "u1" },
      { id: "u2", role: "user", content: "more", status: "completed", parent_id: "a1" },
      { id: "a2", role: "assistant", content: "sure", status: "failed", parent_id: "u2" },
    ],
  });
}

test("a regenerated reply replaces the old one on screen and both become siblings", () => {
  const state = conversation();
  setBranches(state, {});
  const created = { id: "a3", role: "assistant", status: "streaming", content: "", parent_id: "u2" };
  assert.equal(placeMessage(state, created), true);
  upsertMessage(state, created);
  assert.deepEqual(state.messages.map((m) => m.id), ["u1", "a1", "u2", "a3"]);
  assert.deepEqual(siblingInfo(state, "a3"), { index: 2, count: 2, previous: "a2", next: null });
  assert.deepEqual(siblingInfo(state, "a2"), { index: 1, count: 2, previous: null, next: "a3" });
});

test("an edit of an earlier message drops what followed it from view", () => {
  const state = conversation();
  setBranches(state, { u2: ["u2"] });
  const edited = { id: "u3", role: "user", status: "completed", content: "other", parent_id: "a1" };
  assert.equal(placeMessage(state, edited), true);
  upsertMessage(state, edited);
  assert.deepEqual(state.messages.map((m) => m.id), ["u1", "a1", "u3"]);
  assert.equal(siblingInfo(state, "u3").count, 2);
});

test("an edit of the first message is a second root", () => {
  const state = conversation();
  setBranches(state, {});
  const edited = { id: "u0", role: "user", status: "completed", content: "again", parent_id: null };
  assert.equal(placeMessage(state, edited), true);
  upsertMessage(state, edited);
  assert.deepEqual(state.messages.map((m) => m.id), ["u0"]);
  assert.deepEqual(siblingInfo(state, "u0"), { index: 2, count: 2, previous: "u1", next: null });
});

test("a message sent at the end is no branch, nor is the ack of an optimistic copy", () => {
  const state = conversation();
  setBranches(state, {});
  queueMessage(state, "c1", "next");
  const ack = { id: "u9", role: "user", status: "completed", content: "next", client_id: "c1", parent_id: "a2" };
  assert.equal(placeMessage(state, ack), false);
  upsertMessage(state, ack);
  assert.equal(placeMessage(state, { id: "a9", role: "assistant", status: "streaming", parent_id: "u9" }), false);
  assert.equal(siblingInfo(state, "u9"), null);
  // A frame for a parent this page does not show changes nothing.
  assert.equal(placeMessage(state, { id: "x", role: "assistant", parent_id: "nowhere" }), false);
});

test("the sync's branches give every sibling its position", () => {
  const state = conversation();
  setBranches(state, { a2: ["a0", "a2", "a4"], bogus: "no" });
  assert.deepEqual(siblingInfo(state, "a2"), { index: 2, count: 3, previous: "a0", next: "a4" });
  assert.equal(siblingInfo(state, "u1"), null);
});

test("regenerate needs an ended reply to a message of the user's and nothing running", () => {
  const state = conversation();
  assert.equal(canRegenerate(state, state.byId.get("a2")), true);
  assert.equal(canRegenerate(state, state.byId.get("u2")), false);
  upsertMessage(state, { id: "a5", role: "assistant", status: "streaming", parent_id: "a2" });
  assert.equal(canRegenerate(state, state.byId.get("a1")), false);
  assert.equal(canEdit(state, state.byId.get("u1")), false);
});

test("an answer to an interrupt can be neither edited nor answered again", () => {
  const state = createState({
    messages: [
      { id: "u1", role: "user", content: "book", status: "completed" },
      { id: "a1", role: "assistant", content: "which day?", status: "completed" },
      { id: "u2", role: "user", content: "monday", status: "completed", extra: { answers_interrupt: "i1" } },
      { id: "a2", role: "assistant", content: "done", status: "completed" },
    ],
  });
  assert.equal(canEdit(state, state.byId.get("u2")), false);
  assert.equal(canRegenerate(state, state.byId.get("a2")), false);
  assert.equal(lastEditable(state), null);
  assert.equal(canRegenerate(state, state.byId.get("a1")), true);
});
