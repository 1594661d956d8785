// The home page is the chat page with no conversation yet (views.home: `initial.draft`): type at
// once. The first send creates the conversation with the JSON API (the picked agent, the customer
// context's fields), then the page becomes that conversation's chat without a reload: the URL
// becomes /c/<id>/, the header's controls appear, the sidebar lists it and the socket starts; the
// message waiting in the outbox goes out on the first `conversation.sync`, as after any
// reconnect (composer.js flushOutbox), and the reply streams in place.

import { apiRequest } from "./api.js";
import { rollBackOutbox, showError, updateComposer } from "./composer.js";
import { updateConversation } from "./header.js";
import { page } from "./page.js";
import { socketUrl } from "./socket.js";
import { t } from "./strings.js";
import { agentAllowed } from "./teams.js";

const $ = (id) => document.getElementById(id);

// Hidden while there is no conversation to rename, archive, delete, connect to or save to.
const DRAFT_HIDDEN = ["#rename-panel", "#archive-form", "#delete-link", "#connection-status", "#context-panel .context-actions", "#desk"];

let creating = false;
// The path of what the page shows: the home page's, then the conversation's.
let shownPath = "";

export function initDraft(draft) {
  const { els, state } = page;
  page.draft = draft;
  els.picker = $("draft-agent");
  els.teamPicker = $("draft-team");
  els.moreOptions = $("more-options");
  // No socket to wait for: a send goes to the API first, so the composer says "Sending…"
  // rather than "Not connected".
  state.connection = "connected";
  els.picker?.addEventListener("change", pickAgent);
  els.teamPicker?.addEventListener("change", pickTeam);
  // The browser may have restored another team (back/forward): offer its agents.
  if (els.teamPicker) pickTeam();
  // The browser may have restored another choice (back/forward): follow it.
  pickAgent();
  // After composer.js's own listener (registered first), which queued the message.
  els.composer.addEventListener("submit", () => {
    if (page.draft && state.outbox && !creating) create();
  });
  // The customer context's fields go with the first send; there is nothing to save them to yet.
  els.contextForm?.addEventListener("submit", (event) => {
    if (!page.draft) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    els.input.focus();
  }, true);
  // Back from the conversation to the home page's entry, or Forward to the conversation's from
  // a reloaded home page (both entries once belonged to one document): load what the URL says.
  shownPath = location.pathname;
  window.addEventListener("popstate", () => {
    if (location.pathname !== shownPath) location.reload();
  });
  els.input.focus();
}

function pickAgent() {
  const { els, draft } = page;
  const option = els.picker?.selectedOptions[0];
  if (!draft || !option) return;
  if (option.dataset.placeholder) els.input.placeholder = option.dataset.placeholder;
  const agent = draft.agents.find((a) => a.slug === option.value);
  if (agent) updateConversation({ agent: agent.slug, agent_name: agent.name, capabilities: agent.capabilities });
  // "More options…" opens the form with this agent chosen.
  if (els.moreOptions) {
    const url = new URL(els.moreOptions.href, location.href);
    url.searchParams.set("agent", option.value);
    els.moreOptions.href = `${url.pathname}${url.search}`;
  }
}

// The agents the picked team may use (an option's data-teams lists the user's teams that may
// use a restricted agent; none: every team); the picked agent moves to the first one left.
function pickTeam() {
  const { els } = page;
  const team = els.teamPicker?.value ?? "";
  for (const option of els.picker?.options ?? []) {
    const allowed = agentAllowed(option.dataset.teams, team);
    option.disabled = !allowed;
    option.hidden = !allowed;
  }
  const selected = els.picker?.selectedOptions[0];
  if (els.picker && (!selected || selected.disabled)) {
    const first = [...els.picker.options].find((option) => !option.disabled);
    if (first) els.picker.value = first.value;
  }
  pickAgent();
}

// The customer context panel's fields (filled with the list's customer filter, if any):
// { fields } for the API body, or { error }.
function contextFields() {
  const { els } = page;
  const fields = {};
  const external = els.contextExternal?.value.trim() ?? "";
  if (external) fields.external_user_id = external;
  const text = els.contextMetadata?.value.trim() ?? "";
  if (!text) return { fields };
  let metadata;
  try {
    metadata = JSON.parse(text);
  } catch (error) {
    return { error: t("context_metadata_invalid", { error: error.message }) };
  }
  if (!metadata || typeof metadata !== "object" || Array.isArray(metadata)) return { error: t("context_metadata_not_object") };
  if (Object.keys(metadata).length) fields.metadata = metadata;
  return { fields };
}

async function create() {
  const { els } = page;
  const context = contextFields();
  if (context.error) {
    refuse(context.error);
    return;
  }
  creating = true;
  if (els.picker) els.picker.disabled = true;
  if (els.teamPicker) els.teamPicker.disabled = true;
  const body = { agent: els.picker?.value ?? "", ...context.fields };
  if (els.teamPicker) body.team = els.teamPicker.value;
  const result = await apiRequest("POST", page.draft.create_url, body);
  creating = false;
  if (els.picker) els.picker.disabled = false;
  if (els.teamPicker) els.teamPicker.disabled = false;
  if (!result.ok || !result.data?.id) {
    refuse(result.error ?? t("request_failed", { status: result.status }));
    return;
  }
  becomeConversation(result.data);
}

// Nothing was created: the message goes back into the composer, with the reason.
function refuse(text) {
  rollBackOutbox();
  showError(text);
  page.els.input.focus();
}

function becomeConversation(conversation) {
  const { els, conn } = page;
  const draft = page.draft;
  const id = String(conversation.id);
  const swap = (value) => value.replaceAll(draft.placeholder_id, id);
  page.draft = null;

  // The page's URLs carry the placeholder id until now.
  for (const el of els.layout.querySelectorAll("[action], [href]")) {
    for (const name of ["action", "href"]) {
      const value = el.getAttribute(name);
      if (value?.includes(draft.placeholder_id)) el.setAttribute(name, swap(value));
    }
  }
  if (els.contextPanel?.dataset.apiUrl) {
    els.contextPanel.dataset.apiUrl = swap(els.contextPanel.dataset.apiUrl);
    page.urls.contextApi = els.contextPanel.dataset.apiUrl;
  }
  const section = els.transcript.closest("[data-conversation-id]");
  if (section) section.dataset.conversationId = id;

  const chatUrl = swap(draft.chat_url);
  shownPath = new URL(chatUrl, location.href).pathname;
  history.pushState({ conversation: id }, "", chatUrl);
  // The language and theme forms come back to this conversation, not to the home page.
  for (const next of document.querySelectorAll('form input[name="next"]')) next.value = chatUrl;

  $("draft-options")?.remove();
  els.agent.hidden = false;
  for (const selector of DRAFT_HIDDEN) {
    const el = document.querySelector(selector);
    if (el) el.hidden = false;
  }
  document.body.classList.remove("page-draft");
  if (draft.listed) listConversation(conversation, chatUrl);
  updateConversation(conversation);

  // The status element still says "Connecting…"; the sync sets it, and sends the outbox.
  conn.url = socketUrl(swap(draft.ws_path));
  conn.connect();
  updateComposer();
}

// The new conversation at the top of the sidebar, as the server renders it (_sidebar.html).
function listConversation(conversation, chatUrl) {
  const list = page.els.sidebar?.querySelector(".conversation-list");
  if (!list) return;
  list.querySelector(".conversation-list-empty")?.remove();
  const link = document.createElement("a");
  link.className = "conversation-link is-current";
  link.href = chatUrl;
  link.dataset.conversationId = String(conversation.id);
  link.setAttribute("aria-current", "page");
  const title = document.createElement("span");
  title.className = "conversation-title";
  title.textContent = conversation.display_title || conversation.title || "";
  const meta = document.createElement("span");
  meta.className = "conversation-meta";
  const time = document.createElement("time");
  const created = new Date(conversation.created_at || Date.now());
  time.dateTime = created.toISOString();
  time.textContent = new Intl.DateTimeFormat(document.documentElement.lang || undefined, { dateStyle: "short" }).format(created);
  meta.append(`${conversation.agent_name ?? ""} · `, time);
  link.append(title, meta);
  const item = document.createElement("li");
  item.append(link);
  list.prepend(item);
}
