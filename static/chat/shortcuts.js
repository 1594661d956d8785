// Keyboard shortcuts of the chat page. `shortcutFor` is the pure key -> action mapping
// (unit-tested in tests/shortcuts.test.mjs); `initShortcuts` runs the actions on the page.
//   Ctrl/Cmd+K          focus the conversation search
//   Esc                 stop the running reply (the Stop button's action)
//   ArrowUp             in an empty composer: edit the last message of the user's (inline; its
//                       text back in the composer when it cannot be edited, e.g. an answer)
//   Ctrl/Cmd+Shift+C    copy the last reply's text
//   ?                   (outside text fields) open the list of shortcuts (#shortcuts-dialog)

import { lastEditable } from "./branches.js";
import { page } from "./page.js";

// `key` is a KeyboardEvent-like object ({key, ctrlKey, metaKey, shiftKey, altKey, isComposing});
// `ctx`: {inEditable, inComposer, composerEmpty, running, dialogOpen}. Returns an action name or null.
export function shortcutFor(key, ctx = {}) {
  if (!key || typeof key.key !== "string" || key.isComposing) return null;
  const mod = Boolean(key.ctrlKey || key.metaKey);
  const name = key.key;
  if (ctx.dialogOpen) return null; // the dialog handles its own keys (Esc closes it)
  if (mod && !key.altKey && !key.shiftKey && name.toLowerCase() === "k") return "focus-search";
  if (mod && !key.altKey && key.shiftKey && name.toLowerCase() === "c") return "copy-reply";
  if (mod || key.altKey) return null;
  if (name === "Escape") return ctx.running ? "stop" : null;
  if (name === "ArrowUp" && !key.shiftKey) return ctx.inComposer && ctx.composerEmpty ? "recall" : null;
  if (name === "?" && !ctx.inEditable) return "help";
  return null;
}

export function isEditable(target) {
  if (!target || typeof target.closest !== "function") return false;
  return Boolean(target.closest("input, textarea, select, [contenteditable=''], [contenteditable='true']"));
}

export function lastOfRole(messages, role) {
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i].role === role) return messages[i];
  }
  return null;
}

export function initShortcuts() {
  const dialog = document.getElementById("shortcuts-dialog");
  let opener = null;
  if (dialog) {
    dialog.addEventListener("close", () => {
      if (opener && typeof opener.focus === "function") opener.focus();
      opener = null;
    });
    dialog.querySelector(".shortcuts-close")?.addEventListener("click", () => dialog.close());
  }

  document.addEventListener("keydown", (event) => {
    const { els, state } = page;
    if (!els || !state) return; // main.js has not wired the page yet
    const action = shortcutFor(event, {
      inEditable: isEditable(event.target),
      inComposer: event.target === els.input,
      composerEmpty: els.input.value === "",
      running: !els.stop.hidden && !els.stop.disabled,
      dialogOpen: Boolean(dialog?.open),
    });
    if (!action) return;
    if (action === "focus-search") {
      const search = document.getElementById("sidebar-q");
      if (!search) return;
      event.preventDefault();
      search.focus();
      search.select();
    } else if (action === "stop") {
      // Esc with a drawer open closes the drawer (drawers.js), nothing more.
      if (els.layout?.classList.contains("sidebar-open") || els.layout?.classList.contains("context-open")) return;
      event.preventDefault();
      els.stop.click();
    } else if (action === "recall") {
      const editable = lastEditable(state);
      if (editable) {
        event.preventDefault();
        import("./controls.js").then(({ editMessage }) => editMessage(editable.id));
        return;
      }
      const last = lastOfRole(state.messages, "user");
      if (!last || !last.content) return;
      event.preventDefault();
      els.input.value = last.content;
      els.input.dispatchEvent(new Event("input"));
      els.input.setSelectionRange(els.input.value.length, els.input.value.length);
    } else if (action === "copy-reply") {
      const reply = lastOfRole(state.messages, "assistant");
      if (!reply) return;
      event.preventDefault();
      // markdown.js needs the vendored libraries: loaded here, not at import (node tests).
      import("./markdown.js").then(({ copyText }) => copyText(reply.content || ""));
    } else if (action === "help") {
      if (!dialog) return;
      event.preventDefault();
      opener = document.activeElement;
      dialog.showModal();
      dialog.querySelector(".shortcuts-close")?.focus();
    }
  });
}

// Wired by main.js's import: module scripts run after the document is parsed.
if (typeof document !== "undefined") initShortcuts();
