// Branches (docs/protocol.md): the page shows the conversation's active path; a regenerated
// reply or an edited message is a sibling of the one it replaces, navigable "‹ 2 / 3 ›". Pure
// rules on the state (state.js), no DOM: `node --test static/chat/tests/` tests them.

import { isRunActive } from "./state.js";

// A reply that has ended can be regenerated (docs/protocol.md `message.regenerate`).
const REGENERABLE = new Set(["completed", "failed", "canceled"]);

function isLocal(message) {
  return String(message.id).startsWith("local:");
}

// Message id -> its siblings' ids (itself included, oldest first), from the page or a sync.
export function setBranches(state, branches) {
  state.branches = new Map();
  for (const [id, ids] of Object.entries(branches ?? {})) {
    if (Array.isArray(ids) && ids.length > 1) for (const sibling of ids) state.branches.set(sibling, ids.map(String));
  }
}

// A message the server created (`message.created`) goes below its parent: when the parent is
// followed on screen by another message, the new one is that message's sibling, and the path
// shown now continues through the new one (what followed the old sibling is dropped from view).
// Returns true when the path changed that way.
export function placeMessage(state, message) {
  if (!state.branches) state.branches = new Map();
  if (state.byId.has(message.id) || !("parent_id" in message)) return false;
  const parent = message.parent_id;
  const at = parent == null ? -1 : state.messages.findIndex((m) => m.id === parent);
  if (parent != null && at < 0) return false;
  const next = state.messages[at + 1];
  if (!next || isLocal(next) || next.id === message.id) return false;
  if (message.client_id && next.client_id === message.client_id) return false;
  const siblings = [...(state.branches.get(next.id) ?? [next.id])];
  if (!siblings.includes(message.id)) siblings.push(message.id);
  for (const id of siblings) state.branches.set(id, siblings);
  const kept = state.messages.slice(0, at + 1);
  state.messages = kept;
  state.byId = new Map(kept.map((m) => [m.id, m]));
  return true;
}

// "‹ 2 / 3 ›" for a message with alternatives, else null.
export function siblingInfo(state, id) {
  const siblings = state.branches?.get(id);
  if (!siblings || siblings.length < 2) return null;
  const index = siblings.indexOf(id);
  if (index < 0) return null;
  return {
    index: index + 1,
    count: siblings.length,
    previous: index > 0 ? siblings[index - 1] : null,
    next: index + 1 < siblings.length ? siblings[index + 1] : null,
  };
}

function answersInterrupt(message) {
  return typeof message?.extra?.answers_interrupt === "string";
}

// The message shown before `message` (its parent on the active path).
function before(state, message) {
  const index = state.messages.indexOf(message);
  return index > 0 ? state.messages[index - 1] : null;
}

// Regenerate: an ended reply to a message of the user's (not to an interrupt answer: resuming
// the vendor's paused run cannot be replayed), with nothing running or waiting to be sent.
export function canRegenerate(state, message) {
  if (message.role !== "assistant" || isLocal(message) || !REGENERABLE.has(message.status)) return false;
  if (isRunActive(state) || state.outbox) return false;
  const question = before(state, message);
  return Boolean(question) && question.role === "user" && !isLocal(question) && !answersInterrupt(question);
}

// Edit: a message of the user's (not an interrupt answer), with nothing running.
export function canEdit(state, message) {
  if (message.role !== "user" || isLocal(message) || answersInterrupt(message)) return false;
  return !isRunActive(state) && !state.outbox;
}

// The newest message of the user's the ↑ shortcut edits, if it can be edited.
export function lastEditable(state) {
  for (let i = state.messages.length - 1; i >= 0; i--) {
    const message = state.messages[i];
    if (message.role === "user") return canEdit(state, message) ? message : null;
  }
  return null;
}
