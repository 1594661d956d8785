// The chat page: websocket protocol v1 (docs/protocol.md), transcript rendering and the composer.
//
// Design rules, each from a failure peers ship (shared/reference/peers.md §3):
// - The data model is updated synchronously on every frame and rendering never waits on
//   requestAnimationFrame: background tabs pause rAF, and a reply must not stall there.
// - Every (re)connect starts with `conversation.sync`, which replaces local state, so a dropped
//   socket can leave nothing stale or doubled; deltas carry offsets so overlaps are dropped.
// - Model output is untrusted: marked renders raw HTML as text, DOMPurify sanitizes the rest.

import { Marked } from "../vendor/marked-18.2.1/marked.esm.js";
import DOMPurify from "../vendor/dompurify-3.4.18/purify.es.mjs";
import hljs from "../vendor/highlight.js-11.12.0/highlight.min.js";

// ---- Tuning ------------------------------------------------------------------------------------

// One re-render of a streaming message per 40 ms (25/s) is smoother than the eye needs and keeps
// re-parsing a long markdown reply well under the frame budget.
const RENDER_INTERVAL_MS = 40;
// Proxies commonly drop sockets idle for 60 s or more; a ping every 25 s keeps them open.
const PING_INTERVAL_MS = 25_000;
// No frame for this long, with a ping outstanding: the socket is dead even if the browser
// has not noticed (sleeping laptop, switched network).
const IDLE_TIMEOUT_MS = 60_000;
const PONG_GRACE_MS = 10_000;
// A handshake that neither opens nor fails within this is abandoned.
const CONNECT_TIMEOUT_MS = 20_000;
// Watchdog period; browsers stretch it in background tabs, which the idle check tolerates.
const WATCHDOG_TICK_MS = 5_000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 10_000;
// 0.5 + 1 + 2 + 4 + 8 + 10 s: about 25 s of failed attempts before saying "Offline".
const OFFLINE_AFTER_FAILURES = 6;
// 4403: not allowed (logged out); 4404: conversation gone. Not transient, so straight to the
// slowest retry and "Offline"; still retried, since a re-login in another tab fixes 4403.
const GONE_CLOSE_CODES = new Set([4403, 4404]);
// 4401: the login session ended (logout, deactivation, password change). No retry can fix it,
// so the chat stops and the banner's link (the page, which leads to the login form) takes over.
const SESSION_ENDED_CLOSE_CODE = 4401;
// 1012: the server process is restarting (SIGTERM) and has ended its replies; another process
// takes the connection now, so reconnect at once (with jitter, as every tab does it).
const SERVICE_RESTART_CLOSE_CODE = 1012;
const RESTART_RECONNECT_MAX_MS = 250;
// Within this distance of the bottom, the transcript follows the stream.
const FOLLOW_THRESHOLD_PX = 80;
// The length counter appears once the message reaches this share of the limit.
const COUNTER_FROM_RATIO = 0.8;
const ERROR_VISIBLE_MS = 6_000;
const COPIED_VISIBLE_MS = 1_500;
// Finished code blocks are re-highlighted on every render of a streaming reply; caching them
// leaves only the block still growing to highlight. Bounded so a long session stays small.
const HIGHLIGHT_CACHE_ENTRIES = 200;
const HIGHLIGHT_CACHE_MAX_CHARS = 50_000;
// `error` codes that answer a `message.send` (as opposed to `run.cancel` or `interrupt.resume`).
const SEND_ERROR_CODES = new Set(["bad_json", "unknown_type", "invalid", "too_large", "run_active", "not_found", "rate_limited", "internal_error"]);
// `message.extra` keys with a rendering of their own; every other list there is a vendor data
// block (`message.data`), shown as JSON under the reply.
const NON_DATA_EXTRA_KEYS = new Set(["reasoning", "pending_interrupt", "interrupt_answer", "answers_interrupt"]);
// Interrupt payload fields that may carry the question, in order of preference.
const INTERRUPT_QUESTION_FIELDS = ["question", "prompt", "message"];
// Interrupt payload fields describing a structured answer: the answer is then typed as JSON.
const INTERRUPT_SCHEMA_FIELDS = ["responseSchema", "fields"];
// Options that decline are never styled as the primary action.
const DECLINE_OPTION = /^(reject|deny|decline|refuse|cancel|no)\b/i;
// A failed reply no retry can fix: the vendor forgot the conversation.
const CONVERSATION_LOST_CODE = "vendor_conversation_lost";
// Replies that can be rated: finished ones, whatever the outcome (never while streaming).
const FEEDBACK_STATUSES = new Set(["completed", "failed", "canceled"]);
// Matches services.FEEDBACK_COMMENT_MAX_CHARS.
const FEEDBACK_COMMENT_MAX_CHARS = 2_000;
// From this width the customer context is a column beside the transcript (collapsible);
// below it, a drawer opened with #context-toggle.
const CONTEXT_WIDE_QUERY = "(min-width: 1100px)";
const CONTEXT_COLLAPSED_KEY = "chatsite.contextCollapsed";
const SAVED_VISIBLE_MS = 4_000;

// ---- Page hooks --------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);
const els = {
  layout: $("chat-layout"),
  sidebar: $("sidebar"),
  sidebarToggle: $("sidebar-toggle"),
  sidebarBackdrop: $("sidebar-backdrop"),
  title: $("conversation-title"),
  agent: $("conversation-agent"),
  archivedBadge: $("archived-badge"),
  archiveForm: $("archive-form"),
  archiveButton: $("archive-button"),
  renamePanel: $("rename-panel"),
  renameForm: $("rename-form"),
  status: $("connection-status"),
  banner: $("connection-banner"),
  bannerText: $("connection-banner-text"),
  transcript: $("transcript"),
  jump: $("jump-latest"),
  composer: $("composer"),
  input: $("composer-input"),
  hint: $("composer-hint"),
  error: $("composer-error"),
  counter: $("composer-counter"),
  send: $("send-button"),
  stop: $("stop-button"),
  externalUser: $("conversation-external-user"),
  externalUserWrap: $("conversation-external-user-wrap"),
  contextPanel: $("context-panel"),
  contextToggle: $("context-toggle"),
  contextClose: $("context-close"),
  contextBackdrop: $("context-backdrop"),
  contextForm: $("context-form"),
  contextExternal: $("context-external-user-id"),
  contextMetadata: $("context-metadata"),
  contextError: $("context-error"),
  contextSave: $("context-save"),
  contextStatus: $("context-status"),
  customerLink: document.querySelector("#context-panel a.customer-conversations"),
};
// Where "Start a new conversation" leads (the template fills in the URL).
const newConversationUrl = els.transcript.closest("[data-new-url]")?.dataset.newUrl || "";

const initial = JSON.parse($("chat-initial").textContent);
const locale = document.documentElement.lang || undefined;

// ---- Strings (translated in the template) ----------------------------------------------------

const strings = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline",
  offline_hint: "The server can't be reached. Still trying —",
  gone_hint: "This conversation isn't available any more. Still trying —",
  session_ended: "Your session has ended.",
  log_in_again: "Log in again",
  run_active_hint: "The agent is replying — press Stop to interrupt.",
  sending_hint: "Sending…",
  queued_hint: "Not connected — your message will be sent when the connection is back.",
  awaiting_hint: "The agent is waiting for your answer above.",
  too_long: "The message is too long.",
  not_connected: "Not connected — try again in a moment.",
  counter: "{count} / {max} characters",
  you: "You",
  system: "System",
  tool: "Tool",
  replying: "Replying…",
  copy: "Copy",
  copied: "Copied",
  copy_failed: "Copy failed",
  code: "code",
  image: "Image",
  retry: "Retry",
  stopped: "Stopped",
  sending: "Sending…",
  tool_started: "Running…",
  tool_completed: "Done",
  tool_failed: "Failed",
  arguments: "Arguments",
  result: "Result",
  no_result: "No result yet.",
  reasoning: "Reasoning",
  interrupt_title: "The agent needs your input",
  interrupt_title_past: "The agent asked",
  interrupt_reason: "Reason: {reason}",
  interrupt_details: "Details",
  answer_label: "Your answer",
  answer_json_label: "Your answer (JSON)",
  answer_json_invalid: "The answer must be valid JSON.",
  send_answer: "Send answer",
  answer_given: "Your answer: {answer}",
  answer_sending: "Sending your answer…",
  interrupt_expired: "This question was already answered or has expired.",
  interrupt_unanswered: "Not answered — the conversation went on without it.",
  interrupt_answer_tag: "Answer",
  data_data_spec: "Data",
  data_unknown_events: "Vendor events",
  start_new_conversation: "Start a new conversation",
  show_sidebar: "Show conversations",
  hide_sidebar: "Hide conversations",
  feedback_label: "Rate this reply",
  feedback_up: "Good reply",
  feedback_down: "Bad reply",
  feedback_comment_label: "Comment (optional)",
  feedback_comment_placeholder: "What was good or wrong about this reply?",
  feedback_add_comment: "Add a comment",
  feedback_save: "Save comment",
  feedback_cancel: "Cancel",
  feedback_saved: "Thanks — saved.",
  feedback_cleared: "Rating removed.",
  request_network_error: "The server can't be reached — try again.",
  request_failed: "The request failed (HTTP {status}).",
  context_saving: "Saving…",
  context_saved: "Saved",
  context_metadata_invalid: "Metadata is not valid JSON: {error}",
  context_metadata_not_object: 'Metadata must be a JSON object, like {"plan": "gold"}.',
  show_context: "Show the customer context",
  hide_context: "Hide the customer context",
};
for (const el of $("chat-strings")?.content.querySelectorAll("[data-key]") ?? []) {
  const text = el.textContent.trim();
  if (text) strings[el.dataset.key] = text;
}

function t(key, vars) {
  const text = strings[key] ?? key;
  return vars ? text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m)) : text;
}

const numberFormat = new Intl.NumberFormat(locale);
const timeFormat = new Intl.DateTimeFormat(locale, { hour: "2-digit", minute: "2-digit" });
const dateTimeFormat = new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "short" });

// ---- Text helpers ------------------------------------------------------------------------------

// The server counts Python code points; JS strings count UTF-16 units, which differ for
// characters outside the BMP (emoji). Offsets and limits are compared in code points.
function isHighSurrogate(c) { return c >= 0xd800 && c <= 0xdbff; }
function isLowSurrogate(c) { return c >= 0xdc00 && c <= 0xdfff; }

function codePointLength(s) {
  let n = s.length;
  for (let i = 0; i < s.length - 1; i++) {
    if (isHighSurrogate(s.charCodeAt(i)) && isLowSurrogate(s.charCodeAt(i + 1))) {
      n--;
      i++;
    }
  }
  return n;
}

// `s` without its first `count` code points.
function dropCodePoints(s, count) {
  let i = 0;
  while (count > 0 && i < s.length) {
    const pair = isHighSurrogate(s.charCodeAt(i)) && i + 1 < s.length && isLowSurrogate(s.charCodeAt(i + 1));
    i += pair ? 2 : 1;
    count--;
  }
  return s.slice(i);
}

const HTML_ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);
}

function prettyJson(value) {
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

// Tool arguments stream as raw text; show them indented once they parse.
function prettyArguments(text) {
  if (!text) return "";
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

// crypto.randomUUID exists only in secure contexts; a plain-http deployment still needs ids.
function newClientId() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function formatTime(iso) {
  const date = iso ? new Date(iso) : null;
  if (!date || Number.isNaN(date.getTime())) return null;
  const today = new Date().toDateString() === date.toDateString();
  return { short: today ? timeFormat.format(date) : dateTimeFormat.format(date), full: dateTimeFormat.format(date) };
}

// ---- Markdown ----------------------------------------------------------------------------------

const highlightCache = new Map();

function highlight(code, lang) {
  const language = lang && hljs.getLanguage(lang) ? lang : null;
  if (!language) return escapeHtml(code);
  const cacheable = code.length <= HIGHLIGHT_CACHE_MAX_CHARS;
  const key = `${language}\u0000${code}`;
  if (cacheable && highlightCache.has(key)) {
    const hit = highlightCache.get(key);
    highlightCache.delete(key); // re-insert: Map order doubles as least-recently-used order
    highlightCache.set(key, hit);
    return hit;
  }
  let html;
  try {
    html = hljs.highlight(code, { language, ignoreIllegals: true }).value;
  } catch {
    html = escapeHtml(code);
  }
  if (cacheable) {
    highlightCache.set(key, html);
    if (highlightCache.size > HIGHLIGHT_CACHE_ENTRIES) highlightCache.delete(highlightCache.keys().next().value);
  }
  return html;
}

const markdown = new Marked({
  gfm: true,
  breaks: false,
  renderer: {
    // Raw HTML in model output is shown as text, never parsed: sanitizing it would still let
    // a prompt-injected page restyle or overlay the chat.
    html({ text, block }) {
      return block ? `<p class="raw-html">${escapeHtml(text)}</p>` : escapeHtml(text);
    },
    // Images become links: an auto-loaded image URL is the classic way a prompt-injected
    // reply leaks conversation data to a third party.
    image({ href, text }) {
      const label = `${t("image")}: ${text || href}`;
      return `<a href="${escapeHtml(href)}">${escapeHtml(label)}</a>`;
    },
    // Task-list boxes as glyphs, so no form controls enter the transcript.
    checkbox({ checked }) {
      return checked ? "☑ " : "☐ ";
    },
    code({ text, lang }) {
      const language = (lang || "").trim().split(/\s+/)[0].toLowerCase();
      const cls = language ? ` class="hljs language-${escapeHtml(language)}"` : ' class="hljs"';
      return `<pre><code${cls}>${highlight(text, language)}</code></pre>\n`;
    },
  },
});

const PURIFY_CONFIG = {
  ALLOWED_TAGS: [
    "a", "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote",
    "pre", "code", "span", "em", "strong", "del", "s", "sup", "sub",
    "table", "thead", "tbody", "tr", "th", "td",
  ],
  ALLOWED_ATTR: ["href", "title", "class", "align", "start"],
  ALLOW_DATA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

// Links in replies open in a new tab and cannot reach back into this page.
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

function renderMarkdown(text) {
  let html;
  try {
    html = markdown.parse(text);
  } catch {
    const p = document.createElement("p");
    p.className = "raw-html";
    p.textContent = text;
    const fragment = document.createDocumentFragment();
    fragment.append(p);
    return fragment;
  }
  const fragment = DOMPurify.sanitize(html, PURIFY_CONFIG);
  for (const pre of fragment.querySelectorAll("pre")) decorateCodeBlock(pre);
  return fragment;
}

// Wraps a sanitized <pre> in a frame with its language and a Copy button (built with DOM calls,
// so nothing here goes through HTML parsing).
function decorateCodeBlock(pre) {
  const code = pre.querySelector("code");
  const language = code ? [...code.classList].find((c) => c.startsWith("language-"))?.slice(9) : "";
  const frame = document.createElement("div");
  frame.className = "code-block";
  const header = document.createElement("div");
  header.className = "code-block-header";
  const label = document.createElement("span");
  label.className = "code-block-lang";
  label.textContent = language || t("code");
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "button button-link button-small copy-button";
  copy.textContent = t("copy");
  header.append(label, copy);
  pre.replaceWith(frame);
  frame.append(header, pre);
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // Permission denied or no focus: fall through to the selection-based copy.
    }
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.top = "0";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

// ---- State -------------------------------------------------------------------------------------

const state = {
  conversation: initial.conversation ?? {},
  messages: [],
  byId: new Map(),
  // The one message the user sent that the server has not acknowledged yet:
  // { clientId, content, sent }. Re-sent with the same client_id after a reconnect.
  outbox: null,
  connection: "connecting",
  maxChars: Number(initial.user_message_max) || 32_000,
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

function normalizeMessage(raw) {
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

function normalizeFeedback(raw) {
  if (!raw || typeof raw !== "object" || (raw.score !== 1 && raw.score !== -1)) return null;
  return { score: raw.score, comment: typeof raw.comment === "string" ? raw.comment : "" };
}

function optimisticMessage(outbox) {
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

function setMessages(list) {
  state.messages = list;
  state.byId = new Map(list.map((m) => [m.id, m]));
}

// Inserts or replaces a message: by id, else the optimistic copy with the same client_id.
function upsertMessage(raw) {
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

function isRunActive() {
  return state.messages.some((m) => m.status === "streaming");
}

function activeRunMessage() {
  return state.messages.find((m) => m.status === "streaming") ?? null;
}

function lastAssistantMessage() {
  for (let i = state.messages.length - 1; i >= 0; i--) {
    if (state.messages[i].role === "assistant") return state.messages[i];
  }
  return null;
}

function interruptOf(message) {
  const interrupt = message.extra?.pending_interrupt;
  if (!interrupt || typeof interrupt !== "object" || !interrupt.id) return null;
  return interrupt;
}

// What an interrupt's card shows: `kind` is "pending" (answerable), "waiting" (the reply is still
// pausing: the server accepts an answer only once it has), "sending", "answered", "expired" (the
// server no longer has it) or "unanswered" (history: the conversation went on); `answer` is set
// for "sending" and "answered".
function interruptStatus(message, interrupt) {
  const recorded = message.extra.interrupt_answer;
  if (recorded && typeof recorded === "object" && (!recorded.id || recorded.id === interrupt.id)) {
    return { kind: "answered", answer: recorded.payload ?? null };
  }
  if (state.answeredInterrupts.has(interrupt.id)) return { kind: "sending", answer: state.answeredInterrupts.get(interrupt.id) };
  if (state.expiredInterrupts.has(interrupt.id)) return { kind: "expired" };
  // Only the newest reply can still be answered; older cards are history.
  if (message !== lastAssistantMessage()) return { kind: "unanswered" };
  if (message.status === "awaiting_input") return { kind: "pending" };
  if (message.status === "streaming") return { kind: "waiting" };
  return { kind: "unanswered" };
}

// The interrupt the user can answer now, if any.
function awaitedInterrupt() {
  const last = lastAssistantMessage();
  const interrupt = last ? interruptOf(last) : null;
  return interrupt && interruptStatus(last, interrupt).kind === "pending" ? interrupt : null;
}

// The parts of an interrupt payload the card shows: the question, the answer options (a list of
// strings), whether a structured (JSON) answer is expected, and whatever else it carries.
function describeInterrupt(payload) {
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

function answerText(answer) {
  if (typeof answer === "string") return answer;
  try {
    return JSON.stringify(answer);
  } catch {
    return String(answer);
  }
}

function userMessageBefore(message) {
  const index = state.messages.indexOf(message);
  for (let i = index - 1; i >= 0; i--) {
    if (state.messages[i].role === "user") return state.messages[i];
  }
  return null;
}

function applyDelta(message, offset, delta) {
  if (!Number.isInteger(offset) || offset < 0) return false;
  const have = message.contentLength;
  const length = codePointLength(delta);
  if (offset > have) return false; // a gap: something was missed
  if (offset + length <= have) return true; // already have all of it (overlap after a sync)
  message.content += offset < have ? dropCodePoints(delta, have - offset) : delta;
  message.contentLength = offset + length;
  return true;
}

function findToolCall(message, id, name) {
  let call = message.tool_calls.find((c) => c.id === id);
  if (!call) {
    call = { id, name: name || "", arguments: "", result: null, status: "started" };
    message.tool_calls.push(call);
  }
  return call;
}

// ---- JSON API ----------------------------------------------------------------------------------

// The API's URL for one reply's feedback, with a placeholder id (see chat.html).
const FEEDBACK_URL_PLACEHOLDER = "00000000-0000-0000-0000-000000000000";
const feedbackUrlTemplate = els.transcript.closest("[data-feedback-url]")?.dataset.feedbackUrl
  || `/api/v1/messages/${FEEDBACK_URL_PLACEHOLDER}/feedback`;

function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "csrftoken") return decodeURIComponent(rest.join("="));
  }
  // No readable cookie (CSRF_USE_SESSIONS, HttpOnly): the token the page's forms carry.
  return document.querySelector('input[name="csrfmiddlewaretoken"]')?.value ?? "";
}

// fetch() with the session cookie and the CSRF header. Resolves to { ok, status, data } or
// { ok: false, status, code, field, error } with a message for people; never rejects.
async function apiRequest(method, url, body) {
  const headers = { Accept: "application/json", "X-CSRFToken": csrfToken() };
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    return { ok: false, status: 0, code: "network", field: null, error: t("request_network_error") };
  }
  let data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  if (response.ok) return { ok: true, status: response.status, data };
  const error = data && typeof data.error === "object" ? data.error : null;
  return {
    ok: false,
    status: response.status,
    code: typeof error?.code === "string" ? error.code : null,
    field: typeof error?.details?.field === "string" ? error.details.field : null,
    error: typeof error?.message === "string" && error.message ? error.message : t("request_failed", { status: response.status }),
  };
}

// ---- Rendering ---------------------------------------------------------------------------------

// One view per message id: the article and the parts updated in place, so open tool-call
// cards, a half-typed interrupt answer and text selection elsewhere survive re-renders.
const views = new Map();

function createView(message) {
  const el = document.createElement("article");
  el.className = "message";
  const meta = document.createElement("header");
  meta.className = "message-meta";
  const author = document.createElement("span");
  author.className = "message-author";
  const time = document.createElement("time");
  time.className = "message-time";
  meta.append(author, time);
  const tools = document.createElement("div");
  tools.className = "tool-calls";
  const content = document.createElement("div");
  content.className = "content";
  const data = document.createElement("div");
  data.className = "message-data-list";
  const footer = document.createElement("div");
  footer.className = "message-footer";
  el.append(meta, tools, content, data, footer);
  const view = {
    el, meta, author, time, tools, content, data, footer,
    tag: null,
    reasoning: null,
    interrupt: null,
    feedback: null,
    toolViews: new Map(),
    dataViews: new Map(),
    rendered: { content: null, role: null, footer: null, interrupt: null, reasoning: null, time: null },
    lastRenderAt: 0,
    timer: null,
  };
  views.set(message.id, view);
  return view;
}

function authorLabel(message) {
  if (message.role === "user") return t("you");
  if (message.role === "assistant") return state.conversation.agent_name || els.agent?.textContent || "";
  return t(message.role);
}

function renderMessage(message, view) {
  const { el } = view;
  el.dataset.messageId = message.id;
  el.dataset.role = message.role;
  el.dataset.status = message.status;
  if (message.client_id) el.dataset.clientId = message.client_id;
  // A streaming reply is busy, so screen readers announce it once, complete.
  el.setAttribute("aria-busy", message.status === "streaming" ? "true" : "false");

  view.author.textContent = authorLabel(message);
  renderAnswerTag(message, view);
  if (view.rendered.time !== message.created_at) {
    view.rendered.time = message.created_at;
    const when = formatTime(message.created_at);
    view.time.textContent = when ? when.short : "";
    view.time.title = when ? when.full : "";
    if (message.created_at) view.time.dateTime = message.created_at;
  }

  renderReasoning(message, view);
  renderToolCalls(message, view);

  if (view.rendered.content !== message.content || view.rendered.role !== message.role) {
    if (message.role === "assistant") {
      view.content.classList.add("markdown");
      view.content.replaceChildren(renderMarkdown(message.content));
    } else {
      view.content.classList.remove("markdown");
      view.content.textContent = message.content;
    }
    view.rendered.content = message.content;
    view.rendered.role = message.role;
  }

  renderData(message, view);
  renderFooter(message, view);
  renderInterrupt(message, view);
  renderFeedback(message, view);
  view.lastRenderAt = performance.now();
}

// The user's answer to an interrupt is a message of its own, tagged as such.
function renderAnswerTag(message, view) {
  const answers = message.role === "user" && typeof message.extra.answers_interrupt === "string";
  if (answers) view.el.dataset.answersInterrupt = message.extra.answers_interrupt;
  else delete view.el.dataset.answersInterrupt;
  if (answers && !view.tag) {
    view.tag = document.createElement("span");
    view.tag.className = "message-tag";
    view.tag.textContent = t("interrupt_answer_tag");
    view.author.after(view.tag);
  } else if (!answers && view.tag) {
    view.tag.remove();
    view.tag = null;
  }
}

function renderReasoning(message, view) {
  const text = typeof message.extra.reasoning === "string" ? message.extra.reasoning : "";
  if (!text) {
    view.reasoning?.remove();
    view.reasoning = null;
    view.rendered.reasoning = null;
    return;
  }
  if (!view.reasoning) {
    const details = document.createElement("details");
    details.className = "reasoning";
    const summary = document.createElement("summary");
    summary.textContent = t("reasoning");
    const body = document.createElement("div");
    body.className = "reasoning-body";
    details.append(summary, body);
    view.el.insertBefore(details, view.tools);
    view.reasoning = details;
  }
  if (view.rendered.reasoning !== text) {
    view.reasoning.querySelector(".reasoning-body").textContent = text;
    view.rendered.reasoning = text;
  }
}

function renderToolCalls(message, view) {
  reconcileKeyed(view.tools, view.toolViews, message.tool_calls.map((call) => [call.id, call]),
    createToolCallView, updateToolCallView);
}

// Keep `container`'s children in the order of `entries` ([key, value] pairs), one view per key
// (`views`: key -> {el, ...}), created once and updated in place so open <details> and
// selections survive re-renders; views whose key is gone are removed.
function reconcileKeyed(container, views, entries, create, update) {
  const keys = new Set();
  let previous = null;
  for (const [key, value] of entries) {
    keys.add(key);
    let v = views.get(key);
    if (!v) {
      v = create(key);
      views.set(key, v);
    }
    const expected = previous ? previous.nextElementSibling : container.firstElementChild;
    if (expected !== v.el) container.insertBefore(v.el, expected);
    update(v, value);
    previous = v.el;
  }
  for (const [key, v] of views) {
    if (!keys.has(key)) {
      v.el.remove();
      views.delete(key);
    }
  }
}

function createToolCallView(id) {
  const el = document.createElement("details");
  el.className = "tool-call";
  el.dataset.toolCallId = id;
  const summary = document.createElement("summary");
  const name = document.createElement("span");
  name.className = "tool-call-name";
  const status = document.createElement("span");
  status.className = "tool-call-status";
  summary.append(name, status);
  const body = document.createElement("div");
  body.className = "tool-call-body";
  const argsLabel = document.createElement("div");
  argsLabel.className = "tool-call-label";
  argsLabel.textContent = t("arguments");
  const args = document.createElement("pre");
  args.className = "tool-call-arguments";
  const resultLabel = document.createElement("div");
  resultLabel.className = "tool-call-label";
  resultLabel.textContent = t("result");
  const result = document.createElement("pre");
  result.className = "tool-call-result";
  body.append(argsLabel, args, resultLabel, result);
  el.append(summary, body);
  return { el, name, status, args, result, last: {} };
}

function updateToolCallView(tv, call) {
  const status = call.status || "started";
  const args = prettyArguments(call.arguments || "");
  const hasResult = call.result !== null && call.result !== undefined;
  const result = hasResult ? prettyJson(call.result) : t("no_result");
  if (tv.last.status !== status) {
    tv.el.dataset.status = status;
    tv.status.textContent = strings[`tool_${status}`] ?? status;
    tv.last.status = status;
  }
  if (tv.last.name !== call.name) {
    tv.name.textContent = call.name || call.id;
    tv.last.name = call.name;
  }
  if (tv.last.args !== args) {
    tv.args.textContent = args;
    tv.last.args = args;
  }
  if (tv.last.result !== result) {
    tv.result.textContent = result;
    tv.result.classList.toggle("is-empty", !hasResult);
    tv.last.result = result;
  }
}

// Vendor data kept with the message (`message.data` frames; `extra` lists after a reload).
function dataEntries(message) {
  return Object.entries(message.extra).filter(([key, value]) => !NON_DATA_EXTRA_KEYS.has(key) && Array.isArray(value) && value.length > 0);
}

function renderData(message, view) {
  reconcileKeyed(view.data, view.dataViews, dataEntries(message), createDataView, (dv, values) => {
    // The lists only grow (frames append), so the same list at the same length is unchanged.
    if (dv.values !== values || dv.length !== values.length) {
      dv.values = values;
      dv.length = values.length;
      dv.count.textContent = numberFormat.format(values.length);
      dv.body.textContent = prettyJson(values.length === 1 ? values[0] : values);
    }
  });
}

function createDataView(key) {
  const el = document.createElement("details");
  el.className = "message-data";
  el.dataset.key = key;
  const summary = document.createElement("summary");
  const label = document.createElement("span");
  label.className = "message-data-label";
  label.textContent = strings[`data_${key}`] ?? key;
  const count = document.createElement("span");
  count.className = "message-data-count";
  summary.append(label, count);
  const body = document.createElement("pre");
  body.className = "message-data-body";
  el.append(summary, body);
  return { el, count, body, values: null, length: 0 };
}

function renderFooter(message, view) {
  // Retrying cannot bring back a conversation the vendor lost: offer a new one instead.
  const lost = message.status === "failed" && message.error?.code === CONVERSATION_LOST_CODE;
  const previousUser = message.status === "failed" && !lost ? userMessageBefore(message) : null;
  const key = JSON.stringify([message.status, message.error, Boolean(previousUser)]);
  if (view.rendered.footer === key) return;
  view.rendered.footer = key;
  const parts = [];
  if (message.status === "streaming") {
    const indicator = document.createElement("div");
    indicator.className = "streaming-indicator";
    indicator.setAttribute("role", "img");
    indicator.setAttribute("aria-label", t("replying"));
    indicator.append(document.createElement("span"), document.createElement("span"), document.createElement("span"));
    parts.push(indicator);
  } else if (message.status === "failed") {
    const box = document.createElement("div");
    box.className = "message-error";
    box.setAttribute("role", "alert");
    const code = document.createElement("span");
    code.className = "message-error-code";
    code.textContent = message.error?.code || "error";
    const text = document.createElement("span");
    text.className = "message-error-text";
    text.textContent = message.error?.message || "";
    box.append(code, text);
    if (previousUser) {
      const retry = document.createElement("button");
      retry.type = "button";
      retry.className = "button button-small retry-button";
      retry.textContent = t("retry");
      retry.disabled = isComposerBusy();
      box.append(retry);
    }
    if (lost && newConversationUrl) {
      const link = document.createElement("a");
      link.className = "button button-small start-new-conversation";
      link.href = newConversationUrl;
      link.textContent = t("start_new_conversation");
      box.append(link);
    }
    parts.push(box);
  } else if (message.status === "canceled") {
    const note = document.createElement("p");
    note.className = "message-note message-stopped";
    note.textContent = t("stopped");
    parts.push(note);
  } else if (message.status === "pending") {
    const note = document.createElement("p");
    note.className = "message-note message-pending";
    note.textContent = t("sending");
    parts.push(note);
  }
  view.footer.replaceChildren(...parts);
}

function renderInterrupt(message, view) {
  const interrupt = interruptOf(message);
  const status = interrupt ? interruptStatus(message, interrupt) : null;
  const error = interrupt ? state.interruptErrors.get(interrupt.id) ?? null : null;
  const key = interrupt ? JSON.stringify([interrupt.id, interrupt.reason, interrupt.payload, status.kind, status.answer, error]) : null;
  if (view.rendered.interrupt === key) return;
  view.rendered.interrupt = key;
  view.interrupt?.remove();
  view.interrupt = null;
  if (!interrupt) return;

  const { question, options, structured, rest } = describeInterrupt(interrupt.payload);
  const card = document.createElement("section");
  card.className = "interrupt-card";
  card.dataset.interruptId = interrupt.id;
  card.dataset.state = status.kind;
  if (structured) card.dataset.answerFormat = "json";
  const titleId = `interrupt-title-${message.id}`;
  card.setAttribute("aria-labelledby", titleId);
  card.tabIndex = -1; // takes the focus when the control the user pressed is replaced

  const header = document.createElement("div");
  header.className = "interrupt-header";
  const title = document.createElement("h3");
  title.className = "interrupt-title";
  title.id = titleId;
  title.textContent = t(status.kind === "pending" || status.kind === "waiting" ? "interrupt_title" : "interrupt_title_past");
  header.append(title);
  if (interrupt.reason) {
    const reason = document.createElement("span");
    reason.className = "interrupt-reason";
    reason.dataset.reason = String(interrupt.reason);
    reason.textContent = t("interrupt_reason", { reason: String(interrupt.reason) });
    header.append(reason);
  }
  card.append(header);
  if (question) {
    const text = document.createElement("p");
    text.className = "interrupt-question";
    text.textContent = question;
    card.append(text);
  }
  if (rest !== undefined) {
    // The rest of the payload (a schema, context...), open when it is all there is to read or
    // describes the answer to type.
    const details = document.createElement("details");
    details.className = "interrupt-details";
    details.open = structured || (!question && !options.length);
    const summary = document.createElement("summary");
    summary.textContent = t("interrupt_details");
    const payload = document.createElement("pre");
    payload.className = "interrupt-payload";
    payload.textContent = prettyJson(rest);
    details.append(summary, payload);
    card.append(details);
  }

  if (status.kind === "answered" || status.kind === "sending") {
    const sent = document.createElement("p");
    sent.className = "interrupt-sent";
    sent.textContent = t("answer_given", { answer: answerText(status.answer) });
    card.append(sent);
    if (status.kind === "sending") {
      const note = document.createElement("p");
      note.className = "interrupt-note";
      note.textContent = t("answer_sending");
      card.append(note);
    }
  } else if (status.kind === "unanswered") {
    const note = document.createElement("p");
    note.className = "interrupt-note";
    note.textContent = t("interrupt_unanswered");
    card.append(note);
  } else {
    // "pending", or "waiting" / "expired" with the controls shown disabled.
    const disabled = status.kind !== "pending";
    card.append(options.length ? interruptOptions(options, disabled) : interruptForm(message, interrupt, structured, disabled));
    if (status.kind === "expired") {
      const expired = document.createElement("p");
      expired.className = "interrupt-expired";
      expired.setAttribute("role", "alert");
      expired.textContent = t("interrupt_expired");
      card.append(expired);
    }
  }
  if (error && status.kind === "pending") {
    const box = document.createElement("p");
    box.className = "interrupt-error";
    box.setAttribute("role", "alert");
    box.textContent = error;
    card.append(box);
  }
  // Above the feedback controls, which stay last.
  view.el.insertBefore(card, view.feedback?.el ?? null);
  view.interrupt = card;
}

// One button per answer option; the first is the primary action unless it declines.
function interruptOptions(options, disabled) {
  const group = document.createElement("div");
  group.className = "interrupt-options";
  group.setAttribute("role", "group");
  group.setAttribute("aria-label", t("answer_label"));
  options.forEach((option, index) => {
    const button = document.createElement("button");
    button.type = "button";
    const declines = DECLINE_OPTION.test(option);
    button.className = `button interrupt-option${declines ? " button-danger-outline" : index === 0 ? " button-primary" : ""}`;
    button.dataset.option = option;
    button.textContent = option;
    button.disabled = disabled;
    group.append(button);
  });
  return group;
}

function interruptForm(message, interrupt, structured, disabled) {
  const form = document.createElement("form");
  form.className = "interrupt-form";
  const fieldId = `interrupt-answer-${message.id}`;
  const label = document.createElement("label");
  label.htmlFor = fieldId;
  label.textContent = t(structured ? "answer_json_label" : "answer_label");
  const area = document.createElement("textarea");
  area.id = fieldId;
  area.className = "interrupt-answer";
  area.rows = 3;
  area.spellcheck = !structured;
  area.value = state.interruptDrafts.get(interrupt.id) ?? "";
  area.disabled = disabled;
  const button = document.createElement("button");
  button.type = "submit";
  button.className = "button button-primary interrupt-send";
  button.textContent = t("send_answer");
  button.disabled = disabled;
  form.append(label, area, button);
  return form;
}

// ---- Feedback on replies -----------------------------------------------------------------------

// Thumbs up / down and an optional comment under every finished reply. The controls are built
// once per reply and updated in place, so focus and a half-typed comment survive re-renders.
// Only this page learns of a change: other open tabs show it after their next sync (reload or
// reconnect), as the server broadcasts no frame for feedback.

function feedbackUi(id) {
  let ui = state.feedbackUi.get(id);
  if (!ui) {
    ui = { open: false, busy: false, error: null, note: null, noteTimer: null };
    state.feedbackUi.set(id, ui);
  }
  return ui;
}

function canRate(message) {
  return message.role === "assistant" && FEEDBACK_STATUSES.has(message.status) && !String(message.id).startsWith("local:");
}

function renderFeedback(message, view) {
  if (!canRate(message)) {
    view.feedback?.el.remove();
    view.feedback = null;
    return;
  }
  if (!view.feedback) {
    view.feedback = createFeedbackView(message.id);
    view.el.append(view.feedback.el);
  }
  updateFeedbackView(message, view.feedback);
}

// Feather's thumbs-up / thumbs-down outlines (MIT): drawn, so no emoji font is needed.
const THUMB_PATHS = {
  up: "M14 9V5a3 3 0 0 0-3-3l-4 9v11h11.28a2 2 0 0 0 2-1.7l1.38-9a2 2 0 0 0-2-2.3zM7 22H4a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2h3",
  down: "M10 15v4a3 3 0 0 0 3 3l4-9V2H5.72a2 2 0 0 0-2 1.7l-1.38 9a2 2 0 0 0 2 2.3zm7-13h2.67A2.31 2.31 0 0 1 22 4v7a2.31 2.31 0 0 1-2.33 2H17",
};

function thumbIcon(direction) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "16");
  svg.setAttribute("height", "16");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.classList.add("feedback-icon");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", THUMB_PATHS[direction]);
  svg.append(path);
  return svg;
}

function thumbButton(className, direction, label) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = `button button-small feedback-thumb ${className}`;
  button.title = label;
  button.setAttribute("aria-pressed", "false");
  const icon = thumbIcon(direction);
  const text = document.createElement("span");
  text.className = "visually-hidden";
  text.textContent = label;
  button.append(icon, text);
  return button;
}

function createFeedbackView(id) {
  const el = document.createElement("div");
  el.className = "feedback";
  const bar = document.createElement("div");
  bar.className = "feedback-bar";
  bar.setAttribute("role", "group");
  bar.setAttribute("aria-label", t("feedback_label"));
  const up = thumbButton("feedback-up", "up", t("feedback_up"));
  const down = thumbButton("feedback-down", "down", t("feedback_down"));
  const addComment = document.createElement("button");
  addComment.type = "button";
  addComment.className = "button button-link button-small feedback-add-comment";
  addComment.textContent = t("feedback_add_comment");
  addComment.hidden = true;
  const note = document.createElement("span");
  note.className = "feedback-note";
  note.setAttribute("role", "status");
  const error = document.createElement("span");
  error.className = "feedback-error";
  error.setAttribute("role", "alert");
  bar.append(up, down, addComment, note, error);

  const form = document.createElement("form");
  form.className = "feedback-form";
  form.hidden = true;
  const fieldId = `feedback-comment-${id}`;
  const label = document.createElement("label");
  label.htmlFor = fieldId;
  label.className = "feedback-comment-label";
  label.textContent = t("feedback_comment_label");
  const comment = document.createElement("textarea");
  comment.id = fieldId;
  comment.className = "feedback-comment";
  comment.rows = 2;
  comment.maxLength = FEEDBACK_COMMENT_MAX_CHARS;
  comment.placeholder = t("feedback_comment_placeholder");
  const actions = document.createElement("div");
  actions.className = "feedback-actions";
  const save = document.createElement("button");
  save.type = "submit";
  save.className = "button button-primary button-small feedback-save";
  save.textContent = t("feedback_save");
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.className = "button button-small feedback-cancel";
  cancel.textContent = t("feedback_cancel");
  actions.append(save, cancel);
  form.append(label, comment, actions);
  el.append(bar, form);
  return { el, up, down, addComment, note, error, form, comment, save, cancel, appliedComment: null };
}

function updateFeedbackView(message, fv) {
  const ui = feedbackUi(message.id);
  const feedback = message.feedback;
  const score = feedback?.score ?? 0;
  const comment = feedback?.comment ?? "";
  fv.el.dataset.score = String(score);
  fv.el.setAttribute("aria-busy", String(ui.busy));
  fv.up.setAttribute("aria-pressed", String(score === 1));
  fv.down.setAttribute("aria-pressed", String(score === -1));
  // The box keeps what the user is typing; otherwise it shows the stored comment.
  const editing = !fv.form.hidden && fv.appliedComment !== null && fv.comment.value !== fv.appliedComment;
  if (!editing && fv.comment.value !== comment) fv.comment.value = comment;
  fv.appliedComment = comment;
  const showForm = feedback !== null && (ui.open || comment !== "");
  fv.form.hidden = !showForm;
  fv.addComment.hidden = feedback === null || showForm;
  fv.comment.readOnly = ui.busy;
  if (fv.error.textContent !== (ui.error ?? "")) fv.error.textContent = ui.error ?? "";
  if (fv.note.textContent !== (ui.note ?? "")) fv.note.textContent = ui.note ?? "";
}

function feedbackUrl(messageId) {
  return feedbackUrlTemplate.replace(FEEDBACK_URL_PLACEHOLDER, encodeURIComponent(messageId));
}

function showFeedbackNote(messageId, ui, text) {
  clearTimeout(ui.noteTimer);
  ui.note = text;
  ui.noteTimer = text
    ? setTimeout(() => {
      ui.note = null;
      if (views.has(messageId)) renderNow(messageId);
    }, SAVED_VISIBLE_MS)
    : null;
}

// A thumb: choosing one records it at once (keeping the comment) and opens the comment form;
// the one already chosen takes the rating back.
async function rateReply(messageId, score) {
  const message = state.byId.get(messageId);
  if (!message || !canRate(message)) return;
  const ui = feedbackUi(messageId);
  if (ui.busy) return;
  const clearing = message.feedback?.score === score;
  ui.busy = true;
  ui.error = null;
  showFeedbackNote(messageId, ui, null);
  renderNow(messageId);
  const result = clearing
    ? await apiRequest("DELETE", feedbackUrl(messageId))
    : await apiRequest("PUT", feedbackUrl(messageId), { score, comment: message.feedback?.comment ?? "" });
  ui.busy = false;
  // A sync may have replaced the message object meanwhile.
  const latest = state.byId.get(messageId);
  if (!latest) return;
  const fv = views.get(messageId)?.feedback;
  if (result.ok) {
    if (clearing) {
      latest.feedback = null;
      ui.open = false;
      if (fv) fv.comment.value = "";
      showFeedbackNote(messageId, ui, t("feedback_cleared"));
    } else {
      latest.feedback = normalizeFeedback(result.data) ?? { score, comment: "" };
      ui.open = true;
    }
  } else {
    ui.error = result.error;
  }
  renderNow(messageId);
  if (result.ok && !clearing && fv && !fv.form.hidden && !fv.comment.value) fv.comment.focus({ preventScroll: true });
}

async function saveFeedbackComment(messageId) {
  const message = state.byId.get(messageId);
  const fv = views.get(messageId)?.feedback;
  if (!message?.feedback || !fv) return;
  const ui = feedbackUi(messageId);
  if (ui.busy) return;
  ui.busy = true;
  ui.error = null;
  showFeedbackNote(messageId, ui, null);
  renderNow(messageId);
  const comment = fv.comment.value.trim();
  const result = await apiRequest("PUT", feedbackUrl(messageId), { score: message.feedback.score, comment });
  ui.busy = false;
  const latest = state.byId.get(messageId);
  if (!latest) return;
  if (result.ok) {
    latest.feedback = normalizeFeedback(result.data) ?? { score: message.feedback.score, comment };
    fv.comment.value = latest.feedback.comment;
    ui.open = false;
    showFeedbackNote(messageId, ui, t("feedback_saved"));
  } else {
    ui.error = result.error;
  }
  const hadFocus = fv.form.contains(document.activeElement);
  renderNow(messageId);
  // An empty comment closes the form: keep the focus on the rating.
  if (hadFocus && fv.form.hidden) (latest.feedback?.score === 1 ? fv.up : fv.down).focus({ preventScroll: true });
}

function cancelFeedbackComment(messageId) {
  const fv = views.get(messageId)?.feedback;
  const ui = feedbackUi(messageId);
  if (!fv || ui.busy) return;
  ui.open = false;
  ui.error = null;
  fv.comment.value = fv.appliedComment ?? "";
  renderNow(messageId);
  if (fv.form.hidden) fv.addComment.focus({ preventScroll: true });
}

// Puts the DOM in the order of state.messages, creating and dropping views as needed.
function renderTranscript() {
  const wanted = new Set(state.messages.map((m) => m.id));
  for (const [id, view] of views) {
    if (!wanted.has(id)) {
      clearTimeout(view.timer);
      view.el.remove();
      views.delete(id);
    }
  }
  let previous = null;
  for (const message of state.messages) {
    const view = views.get(message.id) ?? createView(message);
    clearTimeout(view.timer);
    view.timer = null;
    renderMessage(message, view);
    const expected = previous ? previous.nextElementSibling : els.transcript.firstElementChild;
    if (expected !== view.el) els.transcript.insertBefore(view.el, expected);
    previous = view.el;
  }
  afterRender();
}

function renderNow(id) {
  const message = state.byId.get(id);
  const view = views.get(id);
  if (!message || !view) {
    renderTranscript();
    return;
  }
  clearTimeout(view.timer);
  view.timer = null;
  renderMessage(message, view);
  afterRender();
}

// At most one render per message per RENDER_INTERVAL_MS. The timer only covers the tail of a
// burst: a frame arriving after the interval renders at once, so a background tab (where timers
// are throttled to ~1/s) still shows every frame as it lands.
function scheduleRender(id) {
  const view = views.get(id);
  if (!view) {
    renderTranscript();
    return;
  }
  const elapsed = performance.now() - view.lastRenderAt;
  if (elapsed >= RENDER_INTERVAL_MS) {
    renderNow(id);
  } else if (!view.timer) {
    view.timer = setTimeout(() => {
      view.timer = null;
      renderNow(id);
    }, RENDER_INTERVAL_MS - elapsed);
  }
}

function flushPendingRenders() {
  for (const [id, view] of views) {
    if (view.timer) renderNow(id);
  }
}

function afterRender() {
  updateComposer();
  if (following) scrollToBottom();
}

// ---- Scrolling ---------------------------------------------------------------------------------

let following = true;

function distanceFromBottom() {
  const box = els.transcript;
  return box.scrollHeight - box.scrollTop - box.clientHeight;
}

function scrollToBottom() {
  els.transcript.scrollTop = els.transcript.scrollHeight;
}

function setFollowing(value) {
  following = value;
  els.jump.hidden = value;
}

els.transcript.addEventListener("scroll", () => setFollowing(distanceFromBottom() <= FOLLOW_THRESHOLD_PX), { passive: true });
els.jump.addEventListener("click", () => {
  setFollowing(true);
  scrollToBottom();
});

// ---- Conversation header -----------------------------------------------------------------------

function updateConversation(conversation) {
  if (!conversation || typeof conversation !== "object") return;
  state.conversation = { ...state.conversation, ...conversation };
  const c = state.conversation;
  const title = c.display_title || c.title || els.title.textContent;
  els.title.textContent = title;
  document.title = `${title} · chatsite`;
  for (const link of document.querySelectorAll(".conversation-link[data-conversation-id]")) {
    if (link.dataset.conversationId === String(c.id)) {
      const label = link.querySelector(".conversation-title");
      if (label) label.textContent = title;
    }
  }
  if (c.agent_name && els.agent) els.agent.textContent = c.agent_name;
  if (typeof c.archived === "boolean") {
    if (els.archivedBadge) els.archivedBadge.hidden = !c.archived;
    const field = els.archiveForm?.querySelector('input[name="archived"]');
    if (field) field.value = c.archived ? "0" : "1";
    if (els.archiveButton) {
      els.archiveButton.textContent = c.archived ? els.archiveButton.dataset.labelUnarchive : els.archiveButton.dataset.labelArchive;
    }
  }
  if (typeof c.external_user_id === "string") {
    if (els.externalUser) els.externalUser.textContent = c.external_user_id;
    if (els.externalUserWrap) els.externalUserWrap.hidden = !c.external_user_id;
    if (els.customerLink) {
      els.customerLink.hidden = !c.external_user_id;
      els.customerLink.href = customerConversationsUrl(c.external_user_id);
    }
  }
  if ("external_user_id" in conversation || "metadata" in conversation) showContextFields(c, false);
  // Keep the rename box in step unless the user is editing it.
  const renameInput = els.renameForm?.querySelector('input[name="title"]');
  if (renameInput && !els.renamePanel?.open && typeof c.title === "string") {
    renameInput.value = c.title;
    renameInput.placeholder = title;
  }
}

// ---- Composer ----------------------------------------------------------------------------------

let composerHadFocus = false;

function isComposerBusy() {
  return isRunActive() || state.outbox !== null;
}

function updateComposer() {
  const running = isRunActive();
  const busy = running || state.outbox !== null;
  const text = els.input.value.trim();
  const count = codePointLength(text);
  const over = count > state.maxChars;

  if (busy && !els.input.disabled) composerHadFocus = document.activeElement === els.input;
  els.input.disabled = busy;
  if (!busy && composerHadFocus) {
    composerHadFocus = false;
    els.input.focus();
  }
  els.send.disabled = busy || !text || over;

  const active = activeRunMessage();
  els.stop.hidden = !running;
  els.stop.disabled = !running || (active !== null && state.cancelRequestedFor === active.id);

  let hint = "";
  if (running) hint = t("run_active_hint");
  else if (state.outbox) hint = state.connection === "connected" ? t("sending_hint") : t("queued_hint");
  else if (over) hint = t("too_long");
  else if (awaitedInterrupt()) hint = t("awaiting_hint");
  if (els.hint.textContent !== hint) els.hint.textContent = hint;

  const showCounter = count >= state.maxChars * COUNTER_FROM_RATIO;
  els.counter.hidden = !showCounter;
  if (showCounter) {
    els.counter.textContent = t("counter", { count: numberFormat.format(count), max: numberFormat.format(state.maxChars) });
    els.counter.classList.toggle("is-over", over);
  }

  for (const button of els.transcript.querySelectorAll(".retry-button")) button.disabled = busy;
}

function autoResize() {
  els.input.style.height = "auto";
  els.input.style.height = `${els.input.scrollHeight + 2}px`;
}

let errorTimer = null;

function showError(text) {
  els.error.textContent = text;
  els.error.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => {
    els.error.hidden = true;
  }, ERROR_VISIBLE_MS);
}

// Returns true when the message was accepted locally (shown and sent, or queued).
function sendMessage(content) {
  const text = content.trim();
  if (!text || isComposerBusy()) return false;
  if (codePointLength(text) > state.maxChars) {
    showError(t("too_long"));
    return false;
  }
  state.outbox = { clientId: newClientId(), content: text, sent: false };
  const local = optimisticMessage(state.outbox);
  state.messages.push(local);
  state.byId.set(local.id, local);
  setFollowing(true);
  renderTranscript();
  flushOutbox();
  return true;
}

// Sends the pending message once the socket is synced; the same client_id makes a repeat
// harmless if the first copy did reach the server before the connection dropped.
function flushOutbox() {
  if (!state.outbox || !conn.synced) return;
  const sent = sendFrame({ type: "message.send", content: state.outbox.content, client_id: state.outbox.clientId });
  if (sent) {
    state.outbox.sent = true;
    state.lastRequest = "message.send";
  }
  updateComposer();
}

// A rejected send: take the optimistic copy back out and return the text to the composer.
function rollBackOutbox() {
  const { clientId, content } = state.outbox;
  state.outbox = null;
  setMessages(state.messages.filter((m) => !(m.status === "pending" && m.client_id === clientId)));
  renderTranscript();
  if (!els.input.value.trim()) {
    els.input.value = content;
    autoResize();
  }
  updateComposer();
}

els.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  if (sendMessage(els.input.value)) {
    els.input.value = "";
    autoResize();
  }
  updateComposer();
});

els.input.addEventListener("keydown", (event) => {
  // isComposing / 229: Enter that confirms an IME composition (Japanese, Chinese...) must not send.
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
    event.preventDefault();
    els.composer.requestSubmit();
  }
});

els.input.addEventListener("input", () => {
  autoResize();
  updateComposer();
});

els.stop.addEventListener("click", () => {
  const active = activeRunMessage();
  if (!sendFrame({ type: "run.cancel" })) {
    showError(t("not_connected"));
    return;
  }
  state.lastRequest = "run.cancel";
  state.cancelRequestedFor = active?.id ?? null;
  updateComposer();
});

// Delegated handlers for controls inside messages (rebuilt on render, so no per-node listeners).
els.transcript.addEventListener("click", async (event) => {
  const feedbackControl = event.target.closest(".feedback-thumb, .feedback-add-comment, .feedback-cancel");
  if (feedbackControl) {
    const id = feedbackControl.closest(".message")?.dataset.messageId;
    if (!id) return;
    if (feedbackControl.classList.contains("feedback-cancel")) {
      cancelFeedbackComment(id);
    } else if (feedbackControl.classList.contains("feedback-add-comment")) {
      feedbackUi(id).open = true;
      renderNow(id);
      views.get(id)?.feedback?.comment.focus();
    } else {
      rateReply(id, feedbackControl.classList.contains("feedback-up") ? 1 : -1);
    }
    return;
  }
  const copy = event.target.closest(".copy-button");
  if (copy) {
    const code = copy.closest(".code-block")?.querySelector("pre code, pre");
    const ok = await copyText(code ? code.textContent : "");
    copy.textContent = ok ? t("copied") : t("copy_failed");
    setTimeout(() => {
      copy.textContent = t("copy");
    }, COPIED_VISIBLE_MS);
    return;
  }
  const retry = event.target.closest(".retry-button");
  if (retry) {
    const message = state.byId.get(retry.closest(".message")?.dataset.messageId);
    const previousUser = message ? userMessageBefore(message) : null;
    if (previousUser) sendMessage(previousUser.content);
    return;
  }
  const option = event.target.closest(".interrupt-option");
  const card = option?.closest(".interrupt-card");
  if (card && !option.disabled) answerInterrupt(card, option.dataset.option);
});

els.transcript.addEventListener("input", (event) => {
  const area = event.target.closest(".interrupt-answer");
  const card = area?.closest(".interrupt-card");
  if (card) state.interruptDrafts.set(card.dataset.interruptId, area.value);
});

els.transcript.addEventListener("submit", (event) => {
  const feedbackForm = event.target.closest(".feedback-form");
  if (feedbackForm) {
    event.preventDefault();
    const id = feedbackForm.closest(".message")?.dataset.messageId;
    if (id) saveFeedbackComment(id);
    return;
  }
  const form = event.target.closest(".interrupt-form");
  if (!form) return;
  event.preventDefault();
  const card = form.closest(".interrupt-card");
  const area = form.querySelector(".interrupt-answer");
  const text = area.value.trim();
  if (!text) {
    area.focus();
    return;
  }
  let answer = text;
  if (card.dataset.answerFormat === "json") {
    try {
      answer = JSON.parse(text);
    } catch {
      state.interruptErrors.set(card.dataset.interruptId, t("answer_json_invalid"));
      const id = card.closest(".message")?.dataset.messageId;
      if (id) renderNow(id);
      views.get(id)?.interrupt?.querySelector(".interrupt-answer")?.focus();
      return;
    }
  }
  answerInterrupt(card, answer);
});

// Sends the answer to an interrupt; the card shows it at once and the server's `message.created`
// for the answer (see recordInterruptAnswer) makes it final.
function answerInterrupt(card, payload) {
  const interruptId = card.dataset.interruptId;
  if (!sendFrame({ type: "interrupt.resume", interrupt_id: interruptId, payload })) {
    state.interruptErrors.set(interruptId, t("not_connected"));
  } else {
    state.lastRequest = "interrupt.resume";
    state.lastInterruptId = interruptId;
    state.answeredInterrupts.set(interruptId, payload);
    state.interruptDrafts.delete(interruptId);
    state.interruptErrors.delete(interruptId);
  }
  const id = card.closest(".message")?.dataset.messageId;
  if (id) renderNow(id);
  if (!document.activeElement || document.activeElement === document.body) views.get(id)?.interrupt?.focus({ preventScroll: true });
}

// The user's answer arrived as a message (in every tab): the paused reply it answers is closed
// as completed on the server, and its card now shows the answer.
function recordInterruptAnswer(answer) {
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

// ---- Sidebar drawer (phones) -------------------------------------------------------------------

function setSidebarOpen(open) {
  if (open && els.layout.classList.contains("context-open")) {
    els.layout.classList.remove("context-open");
    syncContextToggle();
  }
  els.layout.classList.toggle("sidebar-open", open);
  els.sidebarToggle.setAttribute("aria-expanded", String(open));
  els.sidebarToggle.title = open ? t("hide_sidebar") : t("show_sidebar");
  els.sidebarBackdrop.hidden = !open;
  if (open) els.sidebar.querySelector("a, input, button")?.focus();
}

els.sidebarToggle?.addEventListener("click", () => setSidebarOpen(!els.layout.classList.contains("sidebar-open")));
els.sidebarBackdrop?.addEventListener("click", () => setSidebarOpen(false));
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  if (els.layout.classList.contains("sidebar-open")) {
    setSidebarOpen(false);
    els.sidebarToggle.focus();
  } else if (els.layout.classList.contains("context-open") && !wideContext.matches) {
    setContextVisible(false);
  }
});

// ---- Customer context panel --------------------------------------------------------------------

// The conversation's external user id and metadata, edited with the JSON API (PATCH). The server
// broadcasts no frame for that, so this page updates its own state from the response; other open
// tabs show the change after their next sync.

const contextApiUrl = els.contextPanel?.dataset.apiUrl || "";
const homeUrl = els.contextPanel?.dataset.homeUrl || "/";
const wideContext = window.matchMedia(CONTEXT_WIDE_QUERY);
const context = {
  // What the fields last showed from the server: a field still equal to it is not being edited.
  synced: null,
  busy: false,
  statusTimer: null,
};

function customerConversationsUrl(externalUserId) {
  const url = new URL(homeUrl, location.href);
  url.searchParams.set("customer", externalUserId);
  return `${url.pathname}${url.search}`;
}

function metadataText(metadata) {
  return JSON.stringify(metadata && typeof metadata === "object" && !Array.isArray(metadata) ? metadata : {}, null, 2);
}

// Fills the fields from the conversation; `force` replaces edits too (after a save).
function showContextFields(conversation, force) {
  if (!els.contextForm) return;
  const external = typeof conversation.external_user_id === "string" ? conversation.external_user_id : "";
  const metadata = metadataText(conversation.metadata);
  const previous = context.synced;
  if (force || !previous || els.contextExternal.value === previous.external) els.contextExternal.value = external;
  if (force || !previous || els.contextMetadata.value === previous.metadata) els.contextMetadata.value = metadata;
  context.synced = { external, metadata };
}

function setContextStatus(text, lasting = false) {
  clearTimeout(context.statusTimer);
  els.contextStatus.textContent = text;
  if (text && !lasting) {
    context.statusTimer = setTimeout(() => {
      els.contextStatus.textContent = "";
    }, SAVED_VISIBLE_MS);
  }
}

function showContextError(text, field) {
  els.contextError.textContent = text;
  els.contextError.hidden = false;
  const input = field === "metadata" ? els.contextMetadata : field === "external_user_id" ? els.contextExternal : null;
  for (const el of [els.contextExternal, els.contextMetadata]) {
    if (el === input) el.setAttribute("aria-invalid", "true");
    else el.removeAttribute("aria-invalid");
  }
  input?.focus();
}

function clearContextError() {
  els.contextError.textContent = "";
  els.contextError.hidden = true;
  els.contextExternal.removeAttribute("aria-invalid");
  els.contextMetadata.removeAttribute("aria-invalid");
}

function setContextBusy(busy) {
  context.busy = busy;
  els.contextForm.setAttribute("aria-busy", String(busy));
  els.contextExternal.readOnly = busy;
  els.contextMetadata.readOnly = busy;
}

async function saveContext() {
  if (context.busy) return;
  const externalUserId = els.contextExternal.value.trim();
  const text = els.contextMetadata.value.trim();
  let metadata = {};
  if (text) {
    try {
      metadata = JSON.parse(text);
    } catch (error) {
      setContextStatus("");
      showContextError(t("context_metadata_invalid", { error: error.message }), "metadata");
      return;
    }
    if (!metadata || typeof metadata !== "object" || Array.isArray(metadata)) {
      setContextStatus("");
      showContextError(t("context_metadata_not_object"), "metadata");
      return;
    }
  }
  clearContextError();
  setContextBusy(true);
  setContextStatus(t("context_saving"), true);
  const result = await apiRequest("PATCH", contextApiUrl, { external_user_id: externalUserId, metadata });
  setContextBusy(false);
  if (!result.ok) {
    setContextStatus("");
    showContextError(result.error, result.field);
    return;
  }
  updateConversation(result.data);
  showContextFields(state.conversation, true);
  setContextStatus(t("context_saved"));
}

function contextVisible() {
  return wideContext.matches ? !els.layout.classList.contains("context-collapsed") : els.layout.classList.contains("context-open");
}

function syncContextToggle() {
  const visible = contextVisible();
  els.contextToggle.setAttribute("aria-expanded", String(visible));
  els.contextToggle.title = visible ? t("hide_context") : t("show_context");
  els.contextBackdrop.hidden = wideContext.matches || !visible;
}

function readContextCollapsed() {
  try {
    return localStorage.getItem(CONTEXT_COLLAPSED_KEY) === "1";
  } catch {
    return false;
  }
}

function setContextVisible(visible, { focus = true } = {}) {
  if (wideContext.matches) {
    els.layout.classList.toggle("context-collapsed", !visible);
    try {
      if (visible) localStorage.removeItem(CONTEXT_COLLAPSED_KEY);
      else localStorage.setItem(CONTEXT_COLLAPSED_KEY, "1");
    } catch {
      // Storage disabled: the choice lasts for this page only.
    }
  } else {
    els.layout.classList.toggle("context-open", visible);
    if (visible && els.layout.classList.contains("sidebar-open")) setSidebarOpen(false);
  }
  syncContextToggle();
  if (!focus) return;
  if (visible) els.contextExternal.focus();
  else els.contextToggle.focus();
}

if (els.contextPanel && els.contextForm) {
  els.layout.classList.toggle("context-collapsed", readContextCollapsed());
  syncContextToggle();
  wideContext.addEventListener("change", () => {
    els.layout.classList.remove("context-open");
    syncContextToggle();
  });
  els.contextToggle.addEventListener("click", () => setContextVisible(!contextVisible()));
  els.contextClose?.addEventListener("click", () => setContextVisible(false));
  els.contextBackdrop?.addEventListener("click", () => setContextVisible(false, { focus: false }));
  els.contextForm.addEventListener("submit", (event) => {
    event.preventDefault();
    saveContext();
  });
  els.contextForm.addEventListener("input", (event) => {
    if (!context.busy) setContextStatus("");
    if (event.target.hasAttribute("aria-invalid")) event.target.removeAttribute("aria-invalid");
  });
}

// ---- Connection --------------------------------------------------------------------------------

const socketUrl = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${initial.ws_path}`;

const conn = {
  ws: null,
  // Bumped for every socket; events from an older socket are ignored.
  generation: 0,
  // Consecutive attempts that ended without a sync.
  failures: 0,
  gone: false,
  ended: false,
  opened: false,
  synced: false,
  startedAt: 0,
  lastFrameAt: 0,
  lastPingAt: 0,
  retryTimer: null,
  retryAt: 0,
  stopped: false,
};

function setConnection(kind) {
  state.connection = kind;
  els.status.dataset.state = kind;
  els.status.textContent = t(kind);
  const offline = kind === "offline";
  els.banner.hidden = !offline;
  if (offline) {
    els.bannerText.textContent = conn.ended ? t("session_ended") : conn.gone ? t("gone_hint") : t("offline_hint");
  }
  updateComposer();
}

function connect() {
  clearTimeout(conn.retryTimer);
  conn.retryTimer = null;
  if (conn.stopped) return;
  const generation = ++conn.generation;
  conn.opened = false;
  conn.synced = false;
  conn.startedAt = Date.now();
  let ws;
  try {
    ws = new WebSocket(socketUrl);
  } catch {
    onSocketClosed(1006);
    return;
  }
  conn.ws = ws;
  ws.addEventListener("open", () => {
    if (generation !== conn.generation) return;
    conn.opened = true;
    conn.lastFrameAt = Date.now();
    conn.lastPingAt = conn.lastFrameAt;
  });
  ws.addEventListener("message", (event) => {
    if (generation !== conn.generation) return;
    conn.lastFrameAt = Date.now();
    handleFrameText(event.data);
  });
  // "error" is always followed by "close", which is where the retry is scheduled.
  ws.addEventListener("close", (event) => {
    if (generation !== conn.generation) return;
    onSocketClosed(event.code);
  });
}

function onSocketClosed(code) {
  conn.ws = null;
  conn.synced = false;
  conn.failures += 1;
  if (code === SESSION_ENDED_CLOSE_CODE) {
    conn.ended = true;
    conn.stopped = true;
    clearTimeout(conn.retryTimer);
    const link = $("reload-link");
    if (link) link.textContent = t("log_in_again");
    setConnection("offline");
    return;
  }
  if (GONE_CLOSE_CODES.has(code)) conn.gone = true;
  if (code === SERVICE_RESTART_CLOSE_CODE) {
    conn.failures = 0;
    scheduleReconnect(Math.round(Math.random() * RESTART_RECONNECT_MAX_MS));
    return;
  }
  scheduleReconnect();
}

function backoffDelay() {
  if (conn.gone) return BACKOFF_MAX_MS;
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, conn.failures - 1));
  // ±25% jitter spreads out the tabs that a server restart disconnected all at once.
  return Math.min(BACKOFF_MAX_MS, Math.round(base * (0.75 + Math.random() * 0.5)));
}

function scheduleReconnect(delay = backoffDelay()) {
  if (conn.stopped) return;
  setConnection(conn.gone || conn.failures >= OFFLINE_AFTER_FAILURES ? "offline" : "reconnecting");
  clearTimeout(conn.retryTimer);
  conn.retryAt = Date.now() + delay;
  conn.retryTimer = setTimeout(connect, delay);
}

// Drops the current socket at once (without waiting for a closing handshake a dead network
// would never finish) and reconnects; the sync frame then repairs the state.
function restart(reason) {
  const ws = conn.ws;
  conn.generation++;
  conn.ws = null;
  conn.synced = false;
  if (ws) {
    try {
      ws.close(4000, reason);
    } catch {
      // Already closing.
    }
  }
  scheduleReconnect(Math.round(BACKOFF_BASE_MS * (0.75 + Math.random() * 0.5)));
}

function sendFrame(frame) {
  const ws = conn.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(JSON.stringify(frame));
  return true;
}

function watchdog() {
  const ws = conn.ws;
  const now = Date.now();
  if (!ws) {
    // A retry timer that background throttling made overdue: do it now.
    if (conn.retryTimer && now > conn.retryAt + WATCHDOG_TICK_MS) connect();
    return;
  }
  if (ws.readyState === WebSocket.CONNECTING) {
    if (now - conn.startedAt > CONNECT_TIMEOUT_MS) restart("connect timeout");
    return;
  }
  if (ws.readyState !== WebSocket.OPEN) return;
  // Dead only if a ping went unanswered: in a throttled background tab this tick itself may
  // come a minute late, which alone proves nothing.
  if (now - conn.lastFrameAt > IDLE_TIMEOUT_MS && conn.lastPingAt > conn.lastFrameAt && now - conn.lastPingAt > PONG_GRACE_MS) {
    restart("idle");
    return;
  }
  if (now - conn.lastPingAt >= PING_INTERVAL_MS) {
    if (sendFrame({ type: "ping" })) conn.lastPingAt = now;
  }
}

// ---- Frames ------------------------------------------------------------------------------------

function handleFrameText(text) {
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
  const message = state.byId.get(frame.message_id);
  if (!message) restart("unknown message");
  return message;
}

const FRAME_HANDLERS = {
  "conversation.sync"(frame) {
    const messages = (frame.messages ?? []).map((m) => normalizeMessage(keepOmittedContent(m)));
    if (frame.messages_complete === false) {
      // The server sent only the latest messages: keep the older ones this page already has.
      const synced = new Set(messages.map((m) => m.id));
      const firstIndex = messages.length ? state.messages.findIndex((m) => m.id === messages[0].id) : -1;
      const older = (firstIndex >= 0 ? state.messages.slice(0, firstIndex) : state.messages)
        .filter((m) => !synced.has(m.id) && !String(m.id).startsWith("local:"));
      messages.unshift(...older);
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
    // An unacknowledged send stays on screen (and is re-sent below) unless the server has it.
    if (state.outbox) {
      if (messages.some((m) => m.client_id === state.outbox.clientId)) state.outbox = null;
      else messages.push(optimisticMessage(state.outbox));
    }
    setMessages(messages);
    // The server's copy says which interrupts are answered or pending.
    state.answeredInterrupts.clear();
    state.expiredInterrupts.clear();
    state.interruptErrors.clear();
    state.cancelRequestedFor = null;
    updateConversation(frame.conversation);
    conn.synced = true;
    conn.failures = 0;
    conn.gone = false;
    conn.ended = false;
    setConnection("connected");
    renderTranscript();
    flushOutbox();
  },

  "message.created"(frame) {
    if (!frame.message) return;
    const message = upsertMessage(frame.message);
    if (message.role === "user" && typeof message.extra.answers_interrupt === "string") recordInterruptAnswer(message);
    renderTranscript();
  },

  "message.delta"(frame) {
    const message = messageFor(frame);
    if (!message) return;
    if (!applyDelta(message, Number(frame.offset), String(frame.delta ?? ""))) {
      restart("gap");
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
    const call = findToolCall(message, frame.tool_call_id);
    const delta = String(frame.delta ?? "");
    if (Number.isInteger(frame.offset)) {
      // Same splice rule as message text: drop what a sync already gave us. A gap is left for
      // tool_call.completed, which carries the full arguments.
      const have = codePointLength(call.arguments);
      const length = codePointLength(delta);
      if (frame.offset <= have && frame.offset + length > have) {
        call.arguments += dropCodePoints(delta, have - frame.offset);
      }
    } else {
      call.arguments += delta;
    }
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
    if (!key || NON_DATA_EXTRA_KEYS.has(key)) return;
    if (!Array.isArray(message.extra[key])) message.extra[key] = [];
    message.extra[key].push(frame.value ?? null);
    scheduleRender(message.id);
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

  "conversation.updated"(frame) {
    updateConversation(frame.conversation);
  },

  error(frame) {
    const code = String(frame.code ?? "error");
    const text = frame.message ? `${frame.message} (${code})` : code;
    els.error.dataset.code = code;
    if (state.lastRequest === "interrupt.resume" && state.lastInterruptId) {
      // The answer was refused; the card says why. `no_interrupt`: answered elsewhere or gone,
      // so the card is closed; otherwise (run_active, too_large...) the user may answer again.
      const interruptId = state.lastInterruptId;
      state.answeredInterrupts.delete(interruptId);
      if (code === "no_interrupt") state.expiredInterrupts.add(interruptId);
      else state.interruptErrors.set(interruptId, text);
      state.lastRequest = null;
      renderTranscript();
      return;
    }
    showError(text);
    // A refusal naming the outbox's client_id is about that message whatever was sent since:
    // resending it on every reconnect would only be refused again.
    const refusedOutbox = frame.client_id != null && frame.client_id === state.outbox?.clientId;
    if (refusedOutbox || (state.lastRequest === "message.send" && state.outbox?.sent && SEND_ERROR_CODES.has(code))) {
      rollBackOutbox();
    } else if (state.lastRequest === "run.cancel") {
      state.cancelRequestedFor = null;
      updateComposer();
    }
    state.lastRequest = null;
  },

  pong() {
    // Receiving it is the point: conn.lastFrameAt moved.
  },
};

// Terminal frames carry the whole message: replace it and render at once, whatever the timer.
function finishMessage(frame) {
  if (!frame.message) return;
  const message = upsertMessage(keepOmittedContent(frame.message));
  if (state.cancelRequestedFor === message.id) state.cancelRequestedFor = null;
  if (views.has(message.id)) renderNow(message.id);
  else renderTranscript();
  // A failed reply's Retry depends on the composer state; the footer above was built first.
  updateComposer();
}

// A message over ~1 MB comes without its text (`content_omitted`, docs/protocol.md): keep the
// text this page assembled from the deltas, and load the stored text when that is not all of it.
function keepOmittedContent(raw) {
  if (!raw || raw.content_omitted !== true) return raw;
  const content = state.byId.get(raw.id)?.content ?? "";
  if (codePointLength(content) < Number(raw.content_length)) loadOmittedContent(raw.id);
  return { ...raw, content };
}

async function loadOmittedContent(id) {
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

// ---- Page lifecycle ----------------------------------------------------------------------------

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible") return;
  flushPendingRenders();
  if (following) scrollToBottom();
  watchdog();
});

window.addEventListener("online", () => {
  if (!conn.ws) {
    conn.failures = Math.min(conn.failures, 1);
    connect();
  }
});

// Close cleanly when leaving so the page can enter the back/forward cache, and reconnect if it
// comes back from there.
window.addEventListener("pagehide", () => {
  conn.stopped = true;
  clearTimeout(conn.retryTimer);
  const ws = conn.ws;
  conn.generation++;
  conn.ws = null;
  ws?.close(1000, "page hidden");
});
window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return;
  conn.stopped = false;
  conn.failures = 0;
  setConnection("reconnecting");
  connect();
});

// ---- Start -------------------------------------------------------------------------------------

els.transcript.replaceChildren(); // drop the <noscript> note
setMessages((initial.messages ?? []).map(normalizeMessage));
updateConversation(initial.conversation);
showContextFields(state.conversation, true);
renderTranscript();
scrollToBottom();
els.input.disabled = false;
autoResize();
setConnection("connecting");
connect();
setInterval(watchdog, WATCHDOG_TICK_MS);

window.chatsite = {
  state,
  get socket() {
    return conn.ws;
  },
  // For tests and debugging: drop the socket and resync.
  reconnect: () => restart("manual"),
};
