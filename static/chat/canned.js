// Canned replies in the composer: typing "/" at the start of the message box opens a picker
// (a listbox the message box drives through aria-activedescendant: ↑/↓ move, Enter or Tab
// picks, Esc closes, typing filters). Picking puts the reply's text, rendered by the server
// (GET /api/v1/canned-replies), in the box and selects its first variable that could not be
// filled; the composer will not send while one of those `{{…}}` remains (pendingPlaceholder).
//
// The pure parts (pickerQuery, filterReplies, moveActive, pickerKeyAction, placeholderRanges)
// are unit-tested in tests/canned.test.mjs; initCanned wires them to the page.

import { apiRequest } from "./api.js";
import { page } from "./page.js";
import { t } from "./strings.js";

// 200 characters: the API's limit for `q` (services.canned.QUERY_MAX_CHARS).
export const QUERY_MAX_CHARS = 200;
// Milliseconds of typing merged into one request.
const FETCH_DELAY_MS = 120;
const DEFAULT_URL = "/api/v1/canned-replies";

// What follows "/" when the whole box is "/<query>" on one line, else null (no picker).
export function pickerQuery(value) {
  if (typeof value !== "string" || !value.startsWith("/")) return null;
  const query = value.slice(1);
  if (query.includes("\n") || query.length > QUERY_MAX_CHARS) return null;
  return query;
}

// The replies whose shortcut or title holds `query` (case-insensitive), shortcut prefixes
// first, else in the server's order: narrows the list at once while the server is asked.
export function filterReplies(replies, query) {
  const q = (query || "").trim().toLowerCase();
  if (!q) return replies.slice();
  const starts = [];
  const others = [];
  for (const reply of replies) {
    const shortcut = String(reply.shortcut || "").toLowerCase();
    if (shortcut.startsWith(q)) starts.push(reply);
    else if (shortcut.includes(q) || String(reply.title || "").toLowerCase().includes(q)) others.push(reply);
  }
  return [...starts, ...others];
}

// The active option after `key` among `count` options (-1: none yet); wraps around.
export function moveActive(active, count, key) {
  if (count <= 0) return -1;
  if (key === "ArrowDown") return active < 0 || active >= count - 1 ? 0 : active + 1;
  if (key === "ArrowUp") return active <= 0 ? count - 1 : active - 1;
  if (key === "Home") return 0;
  if (key === "End") return count - 1;
  return active;
}

// What a key does while the picker is open: "move", "pick", "close" or null (the box's).
// Enter picks the active option, else the first; Tab picks only an active one (else focus
// moves on as usual); an IME's Enter is the IME's.
export function pickerKeyAction(event, { open, active, count }) {
  if (!open || !event || event.isComposing || event.ctrlKey || event.metaKey || event.altKey) return null;
  const key = event.key;
  if (key === "Escape") return "close";
  if (count <= 0) return null;
  if (key === "ArrowDown" || key === "ArrowUp") return "move";
  if (key === "Enter" && !event.shiftKey) return "pick";
  if (key === "Tab" && !event.shiftKey && active >= 0) return "pick";
  return null;
}

export function placeholderText(name) {
  return `{{${name}}}`;
}

// Where each `{{name}}` of `names` stands in `text`, in order of position.
export function placeholderRanges(text, names) {
  const ranges = [];
  for (const name of names) {
    const needle = placeholderText(name);
    for (let start = text.indexOf(needle); start >= 0; start = text.indexOf(needle, start + needle.length)) {
      ranges.push({ name, start, end: start + needle.length });
    }
  }
  return ranges.sort((a, b) => a.start - b.start);
}

// ---- The page ------------------------------------------------------------------------------------

// Variables of the inserted reply still unfilled: the composer refuses to send while the box
// holds one of them (text typed by hand is never blocked: only what a canned reply inserted).
let tracked = [];
let onChange = () => {};
const picker = { open: false, query: null, replies: [], shown: [], active: -1, dismissed: false, seq: 0, timer: null };
let els = null;

// The first unfilled variable still in `text`, or null; marks the box while there is one.
export function pendingPlaceholder(text) {
  const name = tracked.length ? placeholderRanges(text, tracked)[0]?.name ?? null : null;
  // All filled (or the text replaced): nothing to watch any more.
  if (name === null) tracked = [];
  const input = page.els?.input;
  if (input) {
    input.classList.toggle("has-placeholder", name !== null);
    if (name !== null) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
  return name;
}

// Select the first unfilled variable in the box (for a refused send: show what to fill).
export function selectPlaceholder() {
  const input = page.els?.input;
  if (!input || !tracked.length) return false;
  const range = placeholderRanges(input.value, tracked)[0];
  if (!range) return false;
  input.focus();
  input.setSelectionRange(range.start, range.end);
  return true;
}

function optionId(reply) {
  return `canned-option-${reply.id}`;
}

function render() {
  const { list, empty, status, wrap } = els;
  const input = page.els.input;
  wrap.hidden = !picker.open;
  if (!picker.open) {
    input.removeAttribute("aria-activedescendant");
    status.textContent = "";
    return;
  }
  const options = picker.shown.map((reply, index) => {
    const li = document.createElement("li");
    li.id = optionId(reply);
    li.className = "canned-option";
    li.setAttribute("role", "option");
    li.setAttribute("aria-selected", index === picker.active ? "true" : "false");
    li.dataset.shortcut = reply.shortcut;
    const shortcut = document.createElement("span");
    shortcut.className = "canned-shortcut";
    shortcut.textContent = `/${reply.shortcut}`;
    const title = document.createElement("span");
    title.className = "canned-title";
    title.textContent = reply.title;
    li.append(shortcut, title);
    // mousedown, not click: the box keeps the focus (and its caret).
    li.addEventListener("mousedown", (event) => {
      event.preventDefault();
      pick(reply);
    });
    return li;
  });
  list.replaceChildren(...options);
  list.hidden = options.length === 0;
  empty.hidden = options.length > 0;
  empty.textContent = options.length ? "" : t("canned_none");
  const active = picker.shown[picker.active];
  if (active) {
    input.setAttribute("aria-activedescendant", optionId(active));
    document.getElementById(optionId(active))?.scrollIntoView({ block: "nearest" });
  } else {
    input.removeAttribute("aria-activedescendant");
  }
  const note = options.length ? t("canned_count", { count: options.length }) : t("canned_none");
  if (status.textContent !== note) status.textContent = note;
}

function close({ dismiss = false } = {}) {
  picker.open = false;
  picker.active = -1;
  picker.dismissed = dismiss;
  clearTimeout(picker.timer);
  picker.seq += 1; // answers still on their way are dropped
  render();
}

function url(query) {
  const params = new URLSearchParams();
  if (query) params.set("q", query);
  const id = page.state?.conversation?.id;
  if (id) params.set("conversation", id);
  const base = els.url || DEFAULT_URL;
  const qs = params.toString();
  return qs ? `${base}?${qs}` : base;
}

async function fetchReplies(query) {
  const seq = ++picker.seq;
  const result = await apiRequest("GET", url(query));
  if (seq !== picker.seq || !picker.open) return;
  if (!result.ok) {
    els.empty.textContent = result.error;
    return;
  }
  picker.replies = Array.isArray(result.data?.data) ? result.data.data : [];
  picker.shown = filterReplies(picker.replies, picker.query);
  if (picker.active >= picker.shown.length) picker.active = picker.shown.length - 1;
  render();
}

// Follow the box's text: open, filter or close the picker.
function update(event) {
  const query = pickerQuery(page.els.input.value);
  // Esc holds the list back until the box starts again from a lone "/".
  if (query === null || (query === "" && event?.type === "input")) picker.dismissed = false;
  if (query === null) {
    if (picker.open) close();
    return;
  }
  if (picker.dismissed) return;
  const changed = !picker.open || query !== picker.query;
  picker.open = true;
  picker.query = query;
  if (!changed) return;
  picker.shown = filterReplies(picker.replies, query);
  picker.active = -1;
  render();
  clearTimeout(picker.timer);
  picker.timer = setTimeout(() => fetchReplies(query), FETCH_DELAY_MS);
}

function pick(reply) {
  const input = page.els.input;
  close();
  input.value = reply.rendered;
  tracked = Array.isArray(reply.missing) ? reply.missing.filter((name) => typeof name === "string") : [];
  onChange();
  input.focus();
  if (!selectPlaceholder()) input.setSelectionRange(input.value.length, input.value.length);
}

// The box's keydown, before the composer's own (Enter sends): true when the picker took it.
export function cannedKeydown(event) {
  if (!els) return false;
  const action = pickerKeyAction(event, { open: picker.open, active: picker.active, count: picker.shown.length });
  if (!action) return false;
  event.preventDefault();
  event.stopPropagation();
  if (action === "close") close({ dismiss: true });
  else if (action === "move") {
    picker.active = moveActive(picker.active, picker.shown.length, event.key);
    render();
  } else if (action === "pick") {
    pick(picker.shown[picker.active] ?? picker.shown[0]);
  }
  return true;
}

export function initCanned(options = {}) {
  const input = page.els?.input;
  if (!input) return;
  onChange = options.onChange || onChange;
  const wrap = document.createElement("div");
  wrap.className = "canned-picker";
  wrap.hidden = true;
  const list = document.createElement("ul");
  list.id = "canned-picker";
  list.className = "canned-list";
  list.setAttribute("role", "listbox");
  list.setAttribute("aria-label", t("canned_label"));
  const empty = document.createElement("p");
  empty.className = "canned-empty-option";
  empty.hidden = true;
  wrap.append(list, empty);
  const status = document.createElement("p");
  status.className = "visually-hidden";
  status.setAttribute("role", "status");
  input.before(wrap);
  wrap.after(status);
  els = { wrap, list, empty, status, url: page.els.composer?.dataset.cannedUrl || "" };
  input.setAttribute("aria-controls", "canned-picker");
  input.setAttribute("aria-autocomplete", "list");
  input.addEventListener("input", update);
  // Leaving the box closes the list (a click on an option is a mousedown that keeps focus);
  // coming back reopens it while the box still says "/…".
  input.addEventListener("blur", () => {
    if (picker.open) close();
  });
  input.addEventListener("focus", update);
}
