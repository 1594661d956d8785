// The support desk in the chat (docs/teams.md): who else has the conversation open (`presence`),
// its assignee with Take / Assign / Unassign / Transfer (the API's PATCH; the server writes an
// event into the transcript and every socket gets it), and the composer's Note toggle
// (`note.add`: for the team, never sent to the agent).

import { apiRequest } from "./api.js";
import { page } from "./page.js";
import { t } from "./strings.js";
import { codePointLength, newClientId } from "./text.js";

// Users present, others than this one, each once, in name order (pure: node tests).
export function othersPresent(users, meId) {
  const seen = new Set();
  const out = [];
  for (const user of Array.isArray(users) ? users : []) {
    if (!user || user.id === meId || seen.has(user.id)) continue;
    seen.add(user.id);
    out.push({ id: user.id, name: String(user.name ?? "") });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

// The header's assignee line (pure).
export function assigneeText(conversation, meId) {
  const assignee = conversation?.assignee;
  if (!assignee) return t("unassigned");
  return assignee.id === meId ? t("assigned_to_you") : t("assigned_to", { name: assignee.name });
}

const $ = (id) => document.getElementById(id);
let desk = null;

export function initDesk(me) {
  const root = $("desk");
  if (!root) return;
  desk = {
    me,
    root,
    presence: $("presence"),
    assignee: $("assignee-label"),
    take: $("desk-take"),
    select: $("desk-assignee"),
    assign: $("desk-assign"),
    team: $("desk-team"),
    note: $("desk-note"),
    transfer: $("desk-transfer"),
    error: $("desk-error"),
    panel: $("desk-panel"),
    toggle: $("note-toggle"),
  };
  desk.take?.addEventListener("click", () => patch({ assignee: me.id }));
  desk.assign?.addEventListener("click", () => {
    const value = desk.select.value;
    patch({ assignee: value === "" ? null : Number(value) });
  });
  desk.transfer?.addEventListener("click", () => {
    if (!desk.team.value) {
      desk.team.focus();
      return;
    }
    patch({ team: desk.team.value, note: desk.note.value });
  });
  desk.toggle?.addEventListener("change", () => {
    const { els } = page;
    els.composer.classList.toggle("note-mode", desk.toggle.checked);
    els.input.placeholder = desk.toggle.checked ? t("note_placeholder") : els.input.dataset.placeholder;
    els.input.focus();
    els.input.dispatchEvent(new Event("input"));
  });
  if (desk.toggle) page.els.input.dataset.placeholder = page.els.input.placeholder;
}

async function patch(body) {
  const { state } = page;
  desk.error.hidden = true;
  const url = `/api/v1/conversations/${encodeURIComponent(state.conversation.id)}`;
  const result = await apiRequest("PATCH", url, body);
  if (!result.ok) {
    desk.error.textContent = result.error;
    desk.error.hidden = false;
    return;
  }
  if (result.data?.transferred) {
    // Handed to a team this user is not in: the conversation is no longer theirs to read.
    window.location.assign(page.urls.home || "/");
    return;
  }
  desk.panel.open = false;
  desk.note.value = "";
}

// `conversation.sync` / `conversation.updated`: the assignee line and the Take button.
export function updateDesk(conversation) {
  if (!desk || !conversation) return;
  desk.assignee.textContent = assigneeText(conversation, desk.me.id);
  const mine = conversation.assignee?.id === desk.me.id;
  if (desk.take) desk.take.hidden = mine;
  if (desk.select) desk.select.value = conversation.assignee ? String(conversation.assignee.id) : "";
}

export function showPresence(users) {
  if (!desk?.presence) return;
  const others = othersPresent(users, desk.me.id);
  desk.presence.replaceChildren(...others.map((user) => {
    const item = document.createElement("li");
    item.className = "presence-user";
    item.textContent = user.name;
    item.title = t("also_here", { name: user.name });
    return item;
  }));
  desk.presence.hidden = others.length === 0;
}

export function noteMode() {
  return Boolean(desk?.toggle?.checked);
}

// Sends the composer's text as an internal note; true when it went.
export function sendNote(text) {
  const { state, conn } = page;
  const content = text.trim();
  if (!content) return false;
  if (codePointLength(content) > state.maxChars) return false;
  return conn.send({ type: "note.add", content, client_id: newClientId() });
}
