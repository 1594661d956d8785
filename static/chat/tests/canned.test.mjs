// The "/" picker's pure parts (static/chat/canned.js): when it opens, how it filters, which
// keys it takes, and where a reply's unfilled variables are.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  filterReplies,
  moveActive,
  pendingPlaceholder,
  pickerKeyAction,
  pickerQuery,
  placeholderRanges,
  QUERY_MAX_CHARS,
} from "../canned.js";

const key = (k, extra = {}) => ({ key: k, ctrlKey: false, metaKey: false, shiftKey: false, altKey: false, isComposing: false, ...extra });

test("the picker opens only for a one-line box that starts with /", () => {
  assert.equal(pickerQuery("/"), "");
  assert.equal(pickerQuery("/ref"), "ref");
  assert.equal(pickerQuery("/refund policy"), "refund policy");
  assert.equal(pickerQuery("ref/"), null);
  assert.equal(pickerQuery(" /ref"), null);
  assert.equal(pickerQuery("/ref\nmore"), null);
  assert.equal(pickerQuery(""), null);
  assert.equal(pickerQuery(undefined), null);
  assert.equal(pickerQuery("/" + "x".repeat(QUERY_MAX_CHARS)), "x".repeat(QUERY_MAX_CHARS));
  assert.equal(pickerQuery("/" + "x".repeat(QUERY_MAX_CHARS + 1)), null);
});

test("typing filters by shortcut or title, shortcut prefixes first", () => {
  const replies = [
    { id: 1, shortcut: "hello", title: "Greeting: refer to the plan" },
    { id: 2, shortcut: "refund", title: "Refund policy" },
    { id: 3, shortcut: "prefs", title: "Preferences" },
    { id: 4, shortcut: "bye", title: "Goodbye", body: "ref only in the body" },
  ];
  assert.deepEqual(filterReplies(replies, "ref").map((r) => r.id), [2, 1, 3]);
  assert.deepEqual(filterReplies(replies, "REF").map((r) => r.id), [2, 1, 3]);
  assert.deepEqual(filterReplies(replies, "").map((r) => r.id), [1, 2, 3, 4]);
  assert.deepEqual(filterReplies(replies, "zzz"), []);
  // A copy, never the server's array itself.
  assert.notEqual(filterReplies(replies, ""), replies);
});

test("↑ and ↓ move through the options and wrap; nothing to move through stays at none", () => {
  assert.equal(moveActive(-1, 3, "ArrowDown"), 0);
  assert.equal(moveActive(0, 3, "ArrowDown"), 1);
  assert.equal(moveActive(2, 3, "ArrowDown"), 0);
  assert.equal(moveActive(-1, 3, "ArrowUp"), 2);
  assert.equal(moveActive(0, 3, "ArrowUp"), 2);
  assert.equal(moveActive(2, 3, "ArrowUp"), 1);
  assert.equal(moveActive(1, 3, "Home"), 0);
  assert.equal(moveActive(1, 3, "End"), 2);
  assert.equal(moveActive(5, 0, "ArrowDown"), -1);
});

test("the open picker takes ↑ ↓ Enter Tab and Esc; Tab only with an active option", () => {
  const open = { open: true, active: -1, count: 2 };
  assert.equal(pickerKeyAction(key("ArrowDown"), open), "move");
  assert.equal(pickerKeyAction(key("ArrowUp"), open), "move");
  assert.equal(pickerKeyAction(key("Enter"), open), "pick");
  assert.equal(pickerKeyAction(key("Tab"), open), null);
  assert.equal(pickerKeyAction(key("Tab"), { ...open, active: 0 }), "pick");
  assert.equal(pickerKeyAction(key("Tab", { shiftKey: true }), { ...open, active: 0 }), null);
  assert.equal(pickerKeyAction(key("Escape"), open), "close");
  assert.equal(pickerKeyAction(key("a"), open), null);
  // Shift+Enter is a new line; an IME's Enter confirms its text; modified keys are the page's.
  assert.equal(pickerKeyAction(key("Enter", { shiftKey: true }), open), null);
  assert.equal(pickerKeyAction(key("Enter", { isComposing: true }), open), null);
  assert.equal(pickerKeyAction(key("ArrowDown", { ctrlKey: true }), open), null);
  // No options: Enter is the composer's again; Esc still closes.
  assert.equal(pickerKeyAction(key("Enter"), { open: true, active: -1, count: 0 }), null);
  assert.equal(pickerKeyAction(key("Escape"), { open: true, active: -1, count: 0 }), "close");
  // Closed: nothing is taken.
  for (const k of ["ArrowDown", "Enter", "Tab", "Escape"]) {
    assert.equal(pickerKeyAction(key(k), { open: false, active: 0, count: 2 }), null);
  }
  assert.equal(pickerKeyAction(null, open), null);
});

test("unfilled variables are found in order of position, every occurrence", () => {
  const text = "Plan {{customer.metadata.plan}} for {{user.first_name}}; plan {{customer.metadata.plan}}.";
  const ranges = placeholderRanges(text, ["customer.metadata.plan", "user.first_name"]);
  assert.deepEqual(ranges.map((r) => r.name), ["customer.metadata.plan", "user.first_name", "customer.metadata.plan"]);
  assert.equal(text.slice(ranges[0].start, ranges[0].end), "{{customer.metadata.plan}}");
  assert.equal(text.slice(ranges[1].start, ranges[1].end), "{{user.first_name}}");
  assert.deepEqual(placeholderRanges("nothing here", ["x"]), []);
  assert.deepEqual(placeholderRanges("{{x}}", []), []);
});

test("text typed by hand is never held back, whatever braces it has", () => {
  // Nothing inserted by the picker is tracked: no DOM, no page, no block.
  assert.equal(pendingPlaceholder("{{customer.metadata.plan}} typed by hand"), null);
});
