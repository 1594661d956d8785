// Server -> client frames (docs/protocol.md): one handler per frame type. A new frame type is
// one entry in FRAME_HANDLERS (plus its state rule in state.js and its rendering in render/).

import { apiRequest } from "./api.js";
import { placeMessage, setBranches } from "./branches.js";
import { flushOutbox, rollBackOutbox, showError, updateComposer } from "./composer.js";
import { showPresence } from "./desk.js";
import { updateConversation } from "./header.js";
import { page } from "./page.js";
import { renderNow, renderTranscript, scheduleRender, views } from "./render/transcript.js";
import {
  appendData, applyDelta, applySync, applyToolCallDelta, findToolCall, keepOmittedContent,
  recordInterruptAnswer, refuseInterruptAnswer, refusesOutbox, upsertMessage,
} from "./state.js";
import { setConnection } from "./status.js";
import { codePointLength } from "./text.js";

export function handleFrameText(text) {
  let frame;
  try {
    frame = JSON.parse(text);
  } catch {
    return;
  }
  if (!frame || typeof frame.type !== "string") return;
  const handler = FRAME_HANDLERS[frame.type];
  if (handler) handler(frame);
}

// A frame about a message this page never saw means frames were missed: resync.
function messageFor(frame) {
  const message = page.state.byId.get(frame.message_id);
  if (!message) page.conn.restart("unknown message");
  return message;
}

export const FRAME_HANDLERS = {
  "conversation.sync"(frame) {
    for (const id of applySync(page.state, frame)) loadOmittedContent(id);
    setBranches(page.state, frame.branches);
    updateConversation(frame.conversation);
    page.conn.markSynced();
    setConnection("connected");
    renderTranscript();
    flushOutbox();
  },

  "message.created"(frame) {
    if (!frame.message) return;
    placeMessage(page.state, frame.message);
    const message = upsertMessage(page.state, frame.message);
    if (message.role === "user" && typeof message.extra.answers_interrupt === "string") recordInterruptAnswer(page.state, message);
    renderTranscript();
  },

  "message.delta"(frame) {
    const message = messageFor(frame);
    if (!message) return;
    if (!applyDelta(message, Number(frame.offset), String(frame.delta ?? ""))) {
      page.conn.restart("gap");
      return;
    }
    scheduleRender(message.id);
  },

  "reasoning.delta"(frame) {
    const message = messageFor(frame);
    if (!message) return;
    message.extra.reasoning = (typeof message.extra.reasoning === "string" ? message.extra.reasoning : "") + String(frame.delta ?? "");
    scheduleRender(message.id);
  },

  "tool_call.started"(frame) {
    const message = messageFor(frame);
    if (!message) return;
    const call = findToolCall(message, frame.tool_call_id, frame.name);
    if (frame.name) call.name = frame.name;
    scheduleRender(message.id);
  },

  "tool_call.delta"(frame) {
    const message = messageFor(frame);
    if (!message) return;
    applyToolCallDelta(findToolCall(message, frame.tool_call_id), frame.offset, String(frame.delta ?? ""));
    scheduleRender(message.id);
  },

  "tool_call.completed"(frame) {
    const message = messageFor(frame);
    if (!message) return;
    const call = findToolCall(message, frame.tool_call_id, frame.name);
    if (frame.name) call.name = frame.name;
    if (typeof frame.arguments === "string") call.arguments = frame.arguments;
    if (call.status !== "failed") call.status = "completed";
    scheduleRender(message.id);
  },

  "tool_call.result"(frame) {
    const message = messageFor(frame);
    if (!message) return;
    findToolCall(message, frame.tool_call_id).result = frame.result ?? null;
    scheduleRender(message.id);
  },

  "message.data"(frame) {
    const message = messageFor(frame);
    if (!message) return;
    const key = typeof frame.key === "string" ? frame.key : "";
    if (appendData(message, key, frame.value ?? null)) scheduleRender(message.id);
  },

  "interrupt.requested"(frame) {
    const message = messageFor(frame);
    if (!message) return;
    message.extra.pending_interrupt = { id: frame.interrupt_id, reason: frame.reason, payload: frame.payload };
    renderNow(message.id);
  },

  "message.completed"(frame) { finishMessage(frame); },
  "message.failed"(frame) { finishMessage(frame); },
  "message.canceled"(frame) { finishMessage(frame); },

  // Regenerate or edit on a vendor that keeps its own history: the reply runs in a new
  // conversation (a fork of this one), which the page opens.
  "conversation.forked"(frame) {
    const id = frame.conversation?.id;
    if (typeof id === "string" && /^[0-9a-f-]{36}$/.test(id)) window.location.assign(`/c/${id}/`);
  },

  "conversation.updated"(frame) {
    updateConversation(frame.conversation);
  },

  error(frame) {
    const { state, els } = page;
    const code = String(frame.code ?? "error");
    const text = frame.message ? `${frame.message} (${code})` : code;
    els.error.dataset.code = code;
    if (state.lastRequest === "interrupt.resume" && state.lastInterruptId) {
      // The answer was refused; the card says why.
      refuseInterruptAnswer(state, code, text);
      renderTranscript();
      return;
    }
    showError(text);
    if (refusesOutbox(state, frame)) {
      rollBackOutbox();
    } else if (state.lastRequest === "run.cancel") {
      state.cancelRequestedFor = null;
      updateComposer();
    }
    state.lastRequest = null;
  },

  presence(frame) {
    showPresence(frame.users);
  },

  pong() {
    // Receiving it is the point: the connection's lastFrameAt moved.
  },
};

// Terminal frames carry the whole message: replace it and render at once, whatever the timer.
function finishMessage(frame) {
  if (!frame.message) return;
  const { state } = page;
  const kept = keepOmittedContent(state, frame.message);
  if (kept.incomplete) loadOmittedContent(frame.message.id);
  const message = upsertMessage(state, kept.raw);
  if (state.cancelRequestedFor === message.id) state.cancelRequestedFor = null;
  if (views.has(message.id)) renderNow(message.id);
  // Every message's Regenerate / Edit depends on no reply running.
  renderTranscript();
  // A failed reply's Retry depends on the composer state; the footer above was built first.
  updateComposer();
}

// A message whose text came omitted, and this page has less of it than the server: load the
// stored text.
async function loadOmittedContent(id) {
  const { state } = page;
  const result = await apiRequest("GET", `/api/v1/conversations/${encodeURIComponent(state.conversation.id)}`);
  const stored = result.ok ? (result.data?.messages ?? []).find((m) => m.id === id) : null;
  const message = state.byId.get(id);
  if (!message || typeof stored?.content !== "string") return;
  const length = codePointLength(stored.content);
  if (length <= message.contentLength) return;
  message.content = stored.content;
  message.contentLength = length;
  if (views.has(id)) renderNow(id);
  else renderTranscript();
}
