// Key -> action mapping of the reviewer page (static/review/reviewer.js; pure: no DOM). It
// lives with the chat's tests so `node --test static/chat/tests/` (make test) runs it.
import assert from "node:assert/strict";
import { test } from "node:test";

import { moveIndex, reviewKey } from "../../review/reviewer.js";

const key = (k, extra = {}) => ({ key: k, ctrlKey: false, metaKey: false, shiftKey: false, altKey: false, ...extra });

test("digits pick the n-th option of a categorical score, within its options", () => {
  const ctx = { kind: "categorical", options: 3 };
  assert.deepEqual(reviewKey(key("1"), ctx), { type: "pick", index: 0 });
  assert.deepEqual(reviewKey(key("3"), ctx), { type: "pick", index: 2 });
  assert.equal(reviewKey(key("4"), ctx), null);
  assert.equal(reviewKey(key("0"), ctx), null);
  assert.deepEqual(reviewKey(key("9"), { kind: "categorical", options: 12 }), { type: "pick", index: 8 });
});

test("on a yes/no score 1 is yes and 2 is no", () => {
  assert.deepEqual(reviewKey(key("1"), { kind: "boolean" }), { type: "pick", index: 0 });
  assert.deepEqual(reviewKey(key("2"), { kind: "boolean" }), { type: "pick", index: 1 });
  assert.equal(reviewKey(key("3"), { kind: "boolean" }), null);
});

test("on a numeric score the digit is typed: natively in its input, by the page elsewhere", () => {
  assert.equal(reviewKey(key("7"), { kind: "numeric", inNumber: true }), null);
  assert.deepEqual(reviewKey(key("7"), { kind: "numeric", inNumber: false }), { type: "type", digit: "7" });
  assert.deepEqual(reviewKey(key("0"), { kind: "numeric" }), { type: "type", digit: "0" });
});

test("j and k move between scores, also from a number input", () => {
  assert.deepEqual(reviewKey(key("j")), { type: "move", by: 1 });
  assert.deepEqual(reviewKey(key("k"), { kind: "numeric", inNumber: true }), { type: "move", by: -1 });
  assert.equal(reviewKey(key("J", { shiftKey: true })), null);
});

test("Enter saves, except on a button or link (their own action) and with Shift", () => {
  assert.deepEqual(reviewKey(key("Enter")), { type: "save" });
  assert.deepEqual(reviewKey(key("Enter"), { kind: "numeric", inNumber: true }), { type: "save" });
  assert.equal(reviewKey(key("Enter"), { onControl: true }), null);
  assert.equal(reviewKey(key("Enter", { shiftKey: true })), null);
});

test("s skips and ? opens the list", () => {
  assert.deepEqual(reviewKey(key("s")), { type: "skip" });
  assert.deepEqual(reviewKey(key("?", { shiftKey: true })), { type: "help" });
});

test("in a comment, the label or the note every key is text; Esc leaves the field", () => {
  for (const k of ["1", "j", "k", "s", "?", "Enter"]) {
    assert.equal(reviewKey(key(k), { inText: true, kind: "boolean" }), null, k);
  }
  assert.deepEqual(reviewKey(key("Escape"), { inText: true }), { type: "leave" });
  assert.equal(reviewKey(key("Escape")), null);
});

test("modifiers, IME composition and an open dialog leave keys to the browser", () => {
  assert.equal(reviewKey(key("s", { ctrlKey: true })), null);
  assert.equal(reviewKey(key("j", { metaKey: true })), null);
  assert.equal(reviewKey(key("1", { altKey: true }), { kind: "boolean" }), null);
  assert.equal(reviewKey(key("s", { isComposing: true })), null);
  assert.equal(reviewKey(key("s"), { dialogOpen: true }), null);
  assert.equal(reviewKey(key("Escape"), { dialogOpen: true, inText: true }), null);
  assert.equal(reviewKey(null), null);
  assert.equal(reviewKey({ key: 5 }), null);
});

test("moveIndex stays within the scores", () => {
  assert.equal(moveIndex(0, 1, 3), 1);
  assert.equal(moveIndex(2, 1, 3), 2);
  assert.equal(moveIndex(0, -1, 3), 0);
  assert.equal(moveIndex(-1, 1, 3), 1);
  assert.equal(moveIndex(1, -1, 3), 0);
  assert.equal(moveIndex(0, 1, 0), -1);
});
