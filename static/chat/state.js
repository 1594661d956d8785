// The chat's data model and every rule that changes it, with no DOM: messages by id, the outbox,
// delta splicing by offsets, interrupts, feedback UI state. The frame handlers (frames.js) and
// the controls call these; `node --test static/chat/tests/` tests them.

import { codePointLength, dropCodePoints } from "./text.js";

// `error` codes that answer a `message.send` (as opposed to `run.cancel` or `interrupt.resume`).
export const SEND_ERROR_CODES = new Set(["bad_json", "unknown_type", "invalid", "too_large", "run_active", "not_found", "rate_limited", "internal_error"]);
// `message.extra` keys with a rendering of their own; every other list there is a vendor data
// block (`message.data`), shown as JSON under the reply.
export const NON_DATA_EXTRA_KEYS = new Set(["reasoning", "pending_interrupt", "interrupt_answer", "answers_interrupt"]);
// Interrupt payload fields that may carry the question, in order of preference.
const INTERRUPT_QUESTION_FIELDS = ["question", "prompt", "message"];
// Interrupt payload fields describing a structured answer: the answer is then typed as JSON.
const INTERRUPT_SCHEMA_FIELDS = ["responseSchema", "fields"];
// Replies that can be rated: finished ones, whatever the outcome (never while streaming).
const FEEDBACK_STATUSES = new Set(["completed", "failed", "canceled"]);
// The server's limit (docs/protocol.md: 1..32,000 characters) when the page does not say.
const DEFAULT_MAX_CHARS = 32_000;

// `initial` is the page's #chat-initial JSON (conversation, messages, user_message_max).
export function createState(initial = {}) {
  const state = {
    conversation: initial.conversation ?? {},
    messages: [],
    byId: new Map(),
    // The one message the user sent that the server has not acknowledged yet:
    // { clientId, content, sent }. Re-sent with the same client_id after a reconnect.
    outbox: null,
    connection: "connecting",
    maxChars: Number(initial.user_message_max) || DEFAULT_MAX_CHARS,
    // Interrupts answered from this page and not yet acknowledged: interrupt id -> the answer.
    answeredInterrupts: new Map(),
    // Interrupts the server no longer has pending (`no_interrupt`), and refused answers' errors.
    expiredInterrupts: new Set(),
    interruptErrors: new Map(),
    interruptDrafts: new Map(),
    // Message id whose run the user asked to stop (Stop stays disabled until the run ends).
    cancelRequestedFor: null,
    // The type of the last frame sent that the server may reject with an `error` frame, and
    // for `interrupt.resume` the interrupt it answered.
    lastRequest: null,
    lastInterruptId: null,
    // Per reply, the feedback controls' state on this page: message id ->
    // { open (comment form shown), busy (a request in flight), error, note (success text) }.
    feedbackUi: new Map(),
  };
  setMessages(state, (initial.messages ?? []).map(normalizeMessage));
  return state;
}

export function normalizeMessage(raw) {
  const content = typeof raw.content === "string" ? raw.content : "";
  return {
    ...raw,
    content,
    contentLength: codePointLength(content),
    tool_calls: Array.isArray(raw.tool_calls) ? raw.tool_calls.map((c) => ({ ...c })) : [],
    extra: raw.extra && typeof raw.extra === "object" ? { ...raw.extra } : {},
    feedback: normalizeFeedback(raw.feedback),
  };
}

export function normalizeFeedback(raw) {
  if (!raw || typeof raw !== "object" || (raw.score !== 1 && raw.score !== -1)) return null;
  return { score: raw.score, comment: typeof raw.comment === "string" ? raw.comment : "" };
}

export function optimisticMessage(outbox) {
  return normalizeMessage({
    id: `local:${outbox.clientId}`,
    role: "user",
    content: outbox.content,
    status: "pending",
    error: null,
    client_id: outbox.clientId,
    created_at: new Date().toISOString(),
  });
}

export function setMessages(state, list) {
  state.messages = list;
  state.byId = new Map(list.map((m) => [m.id, m]));
}

// Inserts or replaces a message: by id, else the optimistic copy with the same client_id.
export function upsertMessage(state, raw) {
  const message = normalizeMessage(raw);
  let index = state.messages.findIndex((m) => m.id === message.id);
  if (index < 0 && message.client_id) {
    index = state.messages.findIndex((m) => m.status === "pending" && m.client_id === message.client_id);
  }
  if (index >= 0) {
    state.byId.delete(state.messages[index].id);
    state.messages[index] = message;
  } else {
    state.messages.push(message);
  }
  state.byId.set(message.id, message);
  if (state.outbox && message.client_id === state.outbox.clientId) state.outbox = null;
  return message;
}

// ---- Outbox ------------------------------------------------------------------------------------

// Puts a new message in the outbox and shows it at once (as "pending") until the server has it.
export function queueMessage(state, clientId, content) {
  state.outbox = { clientId, content, sent: false };
  const local = optimisticMessage(state.outbox);
  state.messages.push(local);
  state.byId.set(local.id, local);
  return local;
}

// Whether an `error` frame refuses the outbox's message. A refusal naming the outbox's
// client_id is about that message whatever was sent since: resending it on every reconnect
// would only be refused again.
export function refusesOutbox(state, frame) {
  const code = String(frame.code ?? "error");
  const refusedOutbox = frame.client_id != null && frame.client_id === state.outbox?.clientId;
  return refusedOutbox || (state.lastRequest === "message.send" && Boolean(state.outbox?.sent) && SEND_ERROR_CODES.has(code));
}

// A rejected send: empties the outbox, takes the optimistic copy back out and returns its text.
export function dropOutbox(state) {
  const { clientId, content } = state.outbox;
  state.outbox = null;
  setMessages(state, state.messages.filter((m) => !(m.status === "pending" && m.client_id === clientId)));
  return content;
}

export function isRunActive(state) {
  return state.messages.some((m) => m.status === "streaming");
}

export function isComposerBusy(state) {
  return isRunActive(state) || state.outbox !== null;
}

export function activeRunMessage(state) {
  return state.messages.find((m) => m.status === "streaming") ?? null;
}

export function lastAssistantMessage(state) {
  for (let i = state.messages.length - 1; i >= 0; i--) {
    if (state.messages[i].role === "assistant") return state.messages[i];
  }
  return null;
}

export function userMessageBefore(state, message) {
  const index = state.messages.indexOf(message);
  for (let i = index - 1; i >= 0; i--) {
    if (state.messages[i].role === "user") return state.messages[i];
  }
  return null;
}

// ---- Sync and streamed parts -------------------------------------------------------------------

// A message over ~1 MB comes without its text (`content_omitted`, docs/protocol.md): keep the
// text this page assembled from the deltas. `incomplete`: that is not all of it, so the caller
// loads the stored text.
export function keepOmittedContent(state, raw) {
  if (!raw || raw.content_omitted !== true) return { raw, incomplete: false };
  const content = state.byId.get(raw.id)?.content ?? "";
  return { raw: { ...raw, content }, incomplete: codePointLength(content) < Number(raw.content_length) };
}

// `conversation.sync` replaces the local state. Returns the ids of messages whose text came
// omitted and must be loaded.
export function applySync(state, frame) {
  const incomplete = [];
  const messages = (frame.messages ?? []).map((m) => {
    const kept = keepOmittedContent(state, m);
    if (kept.incomplete) incomplete.push(m.id);
    return normalizeMessage(kept.raw);
  });
  if (frame.messages_complete === false) {
    // The server sent only the latest messages: keep the older ones this page already has.
    const synced = new Set(messages.map((m) => m.id));
    const firstIndex = messages.length ? state.messages.findIndex((m) => m.id === messages[0].id) : -1;
    const older = (firstIndex >= 0 ? state.messages.slice(0, firstIndex) : state.messages)
      .filter((m) => !synced.has(m.id) && !String(m.id).startsWith("local:"));
    // Only when they lead to the synced ones: after a branch switch they belong to another path.
    const parent = messages[0]?.parent_id;
    if (!parent || older.at(-1)?.id === parent) messages.unshift(...older);
  }
  const run = frame.active_run;
  if (run && run.message_id) {
    const message = messages.find((m) => m.id === run.message_id);
    if (message) {
      message.content = typeof run.content === "string" ? run.content : message.content;
      message.contentLength = codePointLength(message.content);
      if (Array.isArray(run.tool_calls) && run.tool_calls.length) message.tool_calls = run.tool_calls.map((c) => ({ ...c }));
      if (run.status) message.status = run.status;
    }
  }
  // An unacknowledged send stays on screen (and is re-sent) unless the server has it.
  if (state.outbox) {
    if (messages.some((m) => m.client_id === state.outbox.clientId)) state.outbox = null;
    else messages.push(optimisticMessage(state.outbox));
  }
  setMessages(state, messages);
  // The server's copy says which interrupts are answered or pending.
  state.answeredInterrupts.clear();
  state.expiredInterrupts.clear();
  state.interruptErrors.clear();
  state.cancelRequestedFor = null;
  return incomplete;
}

// Splices `delta` into `text` at `offset` (code points). Returns the new text, `text` itself
// when it already holds all of the delta (an overlap after a sync), or null on a gap.
export function spliceAt(text, have, offset, delta) {
  if (!Number.isInteger(offset) || offset < 0 || offset > have) return null;
  const length = codePointLength(delta);
  if (offset + length <= have) return text;
  return text + (offset < have ? dropCodePoints(delta, have - offset) : delta);
}

// False on a gap (something was missed: the caller resyncs).
export function applyDelta(message, offset, delta) {
  const have = message.contentLength;
  const content = spliceAt(message.content, have, offset, delta);
  if (content === null) return false;
  if (content !== message.content) {
    message.content = content;
    message.contentLength = offset + codePointLength(delta);
  }
  return true;
}

export function findToolCall(message, id, name) {
  let call = message.tool_calls.find((c) => c.id === id);
  if (!call) {
    call = { id, name: name || "", arguments: "", result: null, status: "started" };
    message.tool_calls.push(call);
  }
  return call;
}

// Same splice rule as message text: drop what a sync already gave us. A gap is left for
// tool_call.completed, which carries the full arguments. No offset: append.
export function applyToolCallDelta(call, offset, delta) {
  if (Number.isInteger(offset)) {
    const have = codePointLength(call.arguments);
    if (offset <= have && offset + codePointLength(delta) > have) call.arguments += dropCodePoints(delta, have - offset);
  } else {
    call.arguments += delta;
  }
}

// Vendor data (`message.data`): one list per key, in arrival order. False for a key that is not
// a data block.
export function appendData(message, key, value) {
  if (!key || NON_DATA_EXTRA_KEYS.has(key)) return false;
  if (!Array.isArray(message.extra[key])) message.extra[key] = [];
  message.extra[key].push(value);
  return true;
}

// Vendor data kept with the message (`message.data` frames; `extra` lists after a reload).
export function dataEntries(message) {
  return Object.entries(message.extra).filter(([key, value]) => !NON_DATA_EXTRA_KEYS.has(key) && Array.isArray(value) && value.length > 0);
}

// ---- Interrupts --------------------------------------------------------------------------------

export function interruptOf(message) {
  const interrupt = message.extra?.pending_interrupt;
  if (!interrupt || typeof interrupt !== "object" || !interrupt.id) return null;
  return interrupt;
}

// What an interrupt's card shows: `kind` is "pending" (answerable), "waiting" (the reply is still
// pausing: the server accepts an answer only once it has), "sending", "answered", "expired" (the
// server no longer has it) or "unanswered" (history: the conversation went on); `answer` is set
// for "sending" and "answered".
export function interruptStatus(state, message, interrupt) {
  const recorded = message.extra.interrupt_answer;
  if (recorded && typeof recorded === "object" && (!recorded.id || recorded.id === interrupt.id)) {
    return { kind: "answered", answer: recorded.payload ?? null };
  }
  if (state.answeredInterrupts.has(interrupt.id)) return { kind: "sending", answer: state.answeredInterrupts.get(interrupt.id) };
  if (state.expiredInterrupts.has(interrupt.id)) return { kind: "expired" };
  // Only the newest reply can still be answered; older cards are history.
  if (message !== lastAssistantMessage(state)) return { kind: "unanswered" };
  if (message.status === "awaiting_input") return { kind: "pending" };
  if (message.status === "streaming") return { kind: "waiting" };
  return { kind: "unanswered" };
}

// The interrupt the user can answer now, if any.
export function awaitedInterrupt(state) {
  const last = lastAssistantMessage(state);
  const interrupt = last ? interruptOf(last) : null;
  return interrupt && interruptStatus(state, last, interrupt).kind === "pending" ? interrupt : null;
}

// The parts of an interrupt payload the card shows: the question, the answer options (a list of
// strings), whether a structured (JSON) answer is expected, and whatever else it carries.
export function describeInterrupt(payload) {
  const fields = payload && typeof payload === "object" && !Array.isArray(payload) ? payload : null;
  let question = typeof payload === "string" ? payload : "";
  let rest = fields ? { ...fields } : payload;
  if (typeof payload === "string") rest = undefined;
  let options = [];
  if (fields) {
    const field = INTERRUPT_QUESTION_FIELDS.find((name) => typeof fields[name] === "string" && fields[name].trim());
    if (field) {
      question = fields[field];
      delete rest[field];
    }
    const list = fields.options;
    if (Array.isArray(list) && list.length && list.every((o) => typeof o === "string" && o.trim())) {
      options = [...new Set(list)];
      delete rest.options;
    }
    if (!Object.keys(rest).length) rest = undefined;
  }
  if (rest === null || rest === "") rest = undefined;
  const structured = Boolean(fields) && INTERRUPT_SCHEMA_FIELDS.some((name) => fields[name] !== undefined && fields[name] !== null);
  return { question: question.trim(), options, structured, rest };
}

// An answer sent from this page (`interrupt.resume`): the card shows it until the server's copy.
export function markInterruptAnswered(state, interruptId, payload) {
  state.lastRequest = "interrupt.resume";
  state.lastInterruptId = interruptId;
  state.answeredInterrupts.set(interruptId, payload);
  state.interruptDrafts.delete(interruptId);
  state.interruptErrors.delete(interruptId);
}

// The user's answer arrived as a message (in every tab): the paused reply it answers is closed
// as completed on the server, and its card now shows the answer.
export function recordInterruptAnswer(state, answer) {
  const interruptId = answer.extra.answers_interrupt;
  const paused = state.messages.find((m) => interruptOf(m)?.id === interruptId);
  if (paused) {
    if (paused.status === "awaiting_input") paused.status = "completed";
    if (!paused.extra.interrupt_answer) {
      const payload = state.answeredInterrupts.has(interruptId) ? state.answeredInterrupts.get(interruptId) : answer.content;
      paused.extra.interrupt_answer = { id: interruptId, payload };
    }
  }
  state.answeredInterrupts.delete(interruptId);
  state.expiredInterrupts.delete(interruptId);
  state.interruptErrors.delete(interruptId);
  if (state.lastRequest === "interrupt.resume" && state.lastInterruptId === interruptId) state.lastRequest = null;
}

// An `error` frame answering `interrupt.resume`: `no_interrupt` (answered elsewhere or gone)
// closes the card; otherwise (run_active, too_large...) the user may answer again.
export function refuseInterruptAnswer(state, code, text) {
  const interruptId = state.lastInterruptId;
  state.answeredInterrupts.delete(interruptId);
  if (code === "no_interrupt") state.expiredInterrupts.add(interruptId);
  else state.interruptErrors.set(interruptId, text);
  state.lastRequest = null;
}

// ---- Feedback ----------------------------------------------------------------------------------

export function feedbackUi(state, id) {
  let ui = state.feedbackUi.get(id);
  if (!ui) {
    ui = { open: false, busy: false, error: null, note: null, noteTimer: null };
    state.feedbackUi.set(id, ui);
  }
  return ui;
}

export function canRate(message) {
  return message.role === "assistant" && FEEDBACK_STATUSES.has(message.status) && !String(message.id).startsWith("local:");
}
