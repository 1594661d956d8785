// The customer context panel's form: the conversation's external user id and metadata, edited
// with the JSON API (PATCH). The server broadcasts no frame for that, so this page updates its
// own state from the response (`onSaved`); other open tabs show the change after their next sync.
// Showing and hiding the panel is in drawers.js.

import { apiRequest } from "./api.js";
import { page, SAVED_VISIBLE_MS } from "./page.js";
import { t } from "./strings.js";

const context = {
  // What the fields last showed from the server: a field still equal to it is not being edited.
  synced: null,
  busy: false,
  statusTimer: null,
};

export function customerConversationsUrl(externalUserId) {
  const url = new URL(page.urls.home, location.href);
  url.searchParams.set("customer", externalUserId);
  return `${url.pathname}${url.search}`;
}

function metadataText(metadata) {
  return JSON.stringify(metadata && typeof metadata === "object" && !Array.isArray(metadata) ? metadata : {}, null, 2);
}

// Fills the fields from the conversation; `force` replaces edits too (after a save).
export function showContextFields(conversation, force) {
  const { els } = page;
  if (!els.contextForm) return;
  const external = typeof conversation.external_user_id === "string" ? conversation.external_user_id : "";
  const metadata = metadataText(conversation.metadata);
  const previous = context.synced;
  if (force || !previous || els.contextExternal.value === previous.external) els.contextExternal.value = external;
  if (force || !previous || els.contextMetadata.value === previous.metadata) els.contextMetadata.value = metadata;
  context.synced = { external, metadata };
}

function setContextStatus(text, lasting = false) {
  const { els } = page;
  clearTimeout(context.statusTimer);
  els.contextStatus.textContent = text;
  if (text && !lasting) {
    context.statusTimer = setTimeout(() => {
      els.contextStatus.textContent = "";
    }, SAVED_VISIBLE_MS);
  }
}

function showContextError(text, field) {
  const { els } = page;
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
  const { els } = page;
  els.contextError.textContent = "";
  els.contextError.hidden = true;
  els.contextExternal.removeAttribute("aria-invalid");
  els.contextMetadata.removeAttribute("aria-invalid");
}

function setContextBusy(busy) {
  const { els } = page;
  context.busy = busy;
  els.contextForm.setAttribute("aria-busy", String(busy));
  els.contextExternal.readOnly = busy;
  els.contextMetadata.readOnly = busy;
}

async function saveContext(onSaved) {
  const { els } = page;
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
  const result = await apiRequest("PATCH", page.urls.contextApi, { external_user_id: externalUserId, metadata });
  setContextBusy(false);
  if (!result.ok) {
    setContextStatus("");
    showContextError(result.error, result.field);
    return;
  }
  onSaved(result.data);
  setContextStatus(t("context_saved"));
}

// `onSaved(conversation)`: the server's copy after a save.
export function initContextPanel({ onSaved }) {
  const { els } = page;
  if (!els.contextPanel || !els.contextForm) return;
  els.contextForm.addEventListener("submit", (event) => {
    event.preventDefault();
    saveContext(onSaved);
  });
  els.contextForm.addEventListener("input", (event) => {
    if (!context.busy) setContextStatus("");
    if (event.target.hasAttribute("aria-invalid")) event.target.removeAttribute("aria-invalid");
  });
}
