// The chat page: websocket protocol v1 (docs/protocol.md), transcript rendering and the composer.
// This entry module is the only one that reads the document at load: it finds the page's
// elements, fills page.js, wires the modules together and starts the connection.
//
// Design rules, each from a failure seen in other chat frontends:
// - The data model is updated synchronously on every frame and rendering never waits on
//   requestAnimationFrame: background tabs pause rAF, and a reply must not stall there.
// - Every (re)connect starts with `conversation.sync`, which replaces local state, so a dropped
//   socket can leave nothing stale or doubled; deltas carry offsets so overlaps are dropped.
// - Model output is untrusted: marked renders raw HTML as text, DOMPurify sanitizes the rest.

import { autoResize, initComposer, updateComposer } from "./composer.js";
import { showContextFields, initContextPanel } from "./context-panel.js";
import { initControls } from "./controls.js";
import { initDraft } from "./draft.js";
import { initDrawers } from "./drawers.js";
import { FEEDBACK_URL_PLACEHOLDER } from "./feedback.js";
import { handleFrameText } from "./frames.js";
import { updateConversation } from "./header.js";
import { page } from "./page.js";
import { flushPendingRenders, onAfterRender, renderTranscript } from "./render/transcript.js";
import { initScrolling, isFollowing, scrollToBottom } from "./scroll.js";
import "./shortcuts.js";
import { Connection, socketUrl, WATCHDOG_TICK_MS } from "./socket.js";
import { setBranches } from "./branches.js";
import { initDesk } from "./desk.js";
import { createState } from "./state.js";
import { setConnection } from "./status.js";
import { loadStrings, setLocale } from "./strings.js";

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
  reloadLink: $("reload-link"),
  customerLink: document.querySelector("#context-panel a.customer-conversations"),
};

const initial = JSON.parse($("chat-initial").textContent);
setLocale(document.documentElement.lang || undefined);
loadStrings($("chat-strings"));

page.els = els;
page.state = createState(initial);
setBranches(page.state, initial.branches);
page.urls = {
  // Where "Start a new conversation" leads (the template fills in the URLs).
  newConversation: els.transcript.closest("[data-new-url]")?.dataset.newUrl || "",
  feedback: els.transcript.closest("[data-feedback-url]")?.dataset.feedbackUrl
    || `/api/v1/messages/${FEEDBACK_URL_PLACEHOLDER}/feedback`,
  contextApi: els.contextPanel?.dataset.apiUrl || "",
  home: els.contextPanel?.dataset.homeUrl || "/",
};
page.conn = new Connection({
  // None on the home page until its first send creates the conversation (draft.js).
  url: initial.ws_path ? socketUrl(initial.ws_path) : "",
  onText: handleFrameText,
  onStatus: setConnection,
});
const { state, conn } = page;

onAfterRender(updateComposer);
initScrolling();
initComposer();
initControls();
initDrawers();
page.me = initial.me ?? null;
if (initial.me) initDesk(initial.me);
initContextPanel({
  onSaved(conversation) {
    updateConversation(conversation);
    showContextFields(state.conversation, true);
  },
});

// ---- Page lifecycle ----------------------------------------------------------------------------

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible") return;
  flushPendingRenders();
  if (isFollowing()) scrollToBottom();
  conn.watchdog();
});

window.addEventListener("online", () => conn.online());

// Close cleanly when leaving so the page can enter the back/forward cache, and reconnect if it
// comes back from there.
window.addEventListener("pagehide", () => conn.stop());
window.addEventListener("pageshow", (event) => {
  if (event.persisted) conn.resume();
});

// ---- Start -------------------------------------------------------------------------------------

els.transcript.replaceChildren(); // drop the <noscript> note
updateConversation(initial.conversation);
showContextFields(state.conversation, true);
renderTranscript();
scrollToBottom();
els.input.disabled = false;
autoResize();
if (initial.draft) {
  initDraft(initial.draft);
} else {
  setConnection("connecting");
  conn.connect();
}
setInterval(() => conn.watchdog(), WATCHDOG_TICK_MS);

window.chatsite = {
  state,
  get socket() {
    return conn.ws;
  },
  // For tests and debugging: drop the socket and resync.
  reconnect: () => conn.restart("manual"),
};
