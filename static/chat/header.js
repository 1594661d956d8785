// The conversation's header, sidebar entry and forms, kept in step with the server's copy
// (`conversation.sync`, `conversation.updated`, a saved customer context).

import { customerConversationsUrl, showContextFields } from "./context-panel.js";
import { updateDesk } from "./desk.js";
import { page } from "./page.js";

export function updateConversation(conversation) {
  if (!conversation || typeof conversation !== "object") return;
  const { state, els } = page;
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
  updateDesk(c);
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
