// Key -> action mapping of static/chat/shortcuts.js (pure: no DOM).
import assert from "node:assert/strict";
import { test } from "node:test";

import { isEditable, lastOfRole, shortcutFor } from "../shortcuts.js";

const key = (k, extra = {}) => ({ key: k, ctrlKey: false, metaKey: false, shiftKey: false, altKey: false, ...extra });

test("Ctrl+K and Cmd+K focus the search, even from a text field", () => {
  assert.equal(shortcutFor(key("k", { ctrlKey: true })), "focus-search");
  assert.equal(shortcutFor(key("K", { metaKey: true }), { inEditable: true }), "focus-search");
  assert.equal(shortcutFor(key("k")), null);
  assert.equal(shortcutFor(key("k", { ctrlKey: true, altKey: true })), null);
  assert.equal(shortcutFor(key("k", { ctrlKey: true, shiftKey: true })), null);
});

test("Esc stops only a running reply", () => {
  assert.equal(shortcutFor(key("Escape"), { running: true }), "stop");
  assert.equal(shortcutFor(key("Escape"), { running: false }), null);
  assert.equal(shortcutFor(key("Escape", { ctrlKey: true }), { running: true }), null);
});

test("ArrowUp recalls the last message only in an empty composer", () => {
  assert.equal(shortcutFor(key("ArrowUp"), { inComposer: true, composerEmpty: true, inEditable: true }), "recall");
  assert.equal(shortcutFor(key("ArrowUp"), { inComposer: true, composerEmpty: false }), null);
  assert.equal(shortcutFor(key("ArrowUp"), { inComposer: false, composerEmpty: true }), null);
  assert.equal(shortcutFor(key("ArrowUp", { shiftKey: true }), { inComposer: true, composerEmpty: true }), null);
});

test("Ctrl/Cmd+Shift+C copies the last reply; plain Ctrl+C does not", () => {
  assert.equal(shortcutFor(key("C", { ctrlKey: true, shiftKey: true })), "copy-reply");
  assert.equal(shortcutFor(key("c", { metaKey: true, shiftKey: true })), "copy-reply");
  assert.equal(shortcutFor(key("c", { ctrlKey: true })), null);
});

test("? opens the help outside text fields only", () => {
  assert.equal(shortcutFor(key("?", { shiftKey: true })), "help");
  assert.equal(shortcutFor(key("?", { shiftKey: true }), { inEditable: true }), null);
  assert.equal(shortcutFor(key("?", { ctrlKey: true })), null);
});

test("an open dialog, IME composition or a malformed event maps to nothing", () => {
  assert.equal(shortcutFor(key("k", { ctrlKey: true }), { dialogOpen: true }), null);
  assert.equal(shortcutFor(key("Escape"), { running: true, dialogOpen: true }), null);
  assert.equal(shortcutFor(key("?", { isComposing: true })), null);
  assert.equal(shortcutFor(null), null);
  assert.equal(shortcutFor({}), null);
  assert.equal(shortcutFor({ key: 42 }), null);
  assert.equal(shortcutFor(key("a")), null);
});

test("helpers: editable targets and the last message of a role", () => {
  assert.equal(isEditable(null), false);
  assert.equal(isEditable({ closest: () => ({}) }), true);
  assert.equal(isEditable({ closest: () => null }), false);
  const messages = [{ role: "user", content: "a" }, { role: "assistant", content: "b" }, { role: "user", content: "c" }];
  assert.equal(lastOfRole(messages, "user").content, "c");
  assert.equal(lastOfRole(messages, "assistant").content, "b");
  assert.equal(lastOfRole([], "user"), null);
});
