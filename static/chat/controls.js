// The controls inside messages, by delegation on the transcript (views are rebuilt on render, so
// no per-node listeners): feedback, Copy on code blocks, Retry, interrupt answers, branches
// (Regenerate, Edit, alternatives).

import { canEdit, canRegenerate } from "./branches.js";
import { sendMessage, showError } from "./composer.js";
import { cancelFeedbackComment, openFeedbackComment, rateReply, saveFeedbackComment } from "./feedback.js";
import { copyText } from "./markdown.js";
import { page } from "./page.js";
import { editDrafts } from "./render/branches.js";
import { renderNow, views } from "./render/transcript.js";
import { markInterruptAnswered, userMessageBefore } from "./state.js";
import { t } from "./strings.js";
import { codePointLength, newClientId } from "./text.js";

const COPIED_VISIBLE_MS = 1_500;

export function initControls() {
  const { els, state } = page;
  els.transcript.addEventListener("click", async (event) => {
    const feedbackControl = event.target.closest(".feedback-thumb, .feedback-add-comment, .feedback-cancel");
    if (feedbackControl) {
      const id = feedbackControl.closest(".message")?.dataset.messageId;
      if (!id) return;
      if (feedbackControl.classList.contains("feedback-cancel")) {
        cancelFeedbackComment(id);
      } else if (feedbackControl.classList.contains("feedback-add-comment")) {
        openFeedbackComment(id);
      } else {
        rateReply(id, feedbackControl.classList.contains("feedback-up") ? 1 : -1);
      }
      return;
    }
    const copyMessage = event.target.closest(".message-copy");
    if (copyMessage) {
      const message = state.byId.get(copyMessage.closest(".message")?.dataset.messageId);
      const ok = await copyText(message?.content ?? "");
      copyMessage.textContent = ok ? t("copied") : t("copy_failed");
      setTimeout(() => {
        copyMessage.textContent = t("copy");
      }, COPIED_VISIBLE_MS);
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
    if (branchControl(event.target)) return;
    const retry = event.target.closest(".retry-button");
    if (retry) {
      const message = state.byId.get(retry.closest(".message")?.dataset.messageId);
      const previousUser = message ? userMessageBefore(state, message) : null;
      if (previousUser) sendMessage(previousUser.content);
      return;
    }
    const option = event.target.closest(".interrupt-option");
    const card = option?.closest(".interrupt-card");
    if (card && !option.disabled) answerInterrupt(card, option.dataset.option);
  });

  els.transcript.addEventListener("input", (event) => {
    const editing = event.target.closest(".edit-input");
    if (editing) {
      const id = editing.closest(".message")?.dataset.messageId;
      if (id && editDrafts.has(id)) editDrafts.set(id, editing.value);
      return;
    }
    const area = event.target.closest(".interrupt-answer");
    const card = area?.closest(".interrupt-card");
    if (card) state.interruptDrafts.set(card.dataset.interruptId, area.value);
  });

  // Esc in the inline editor cancels the edit.
  els.transcript.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || !event.target.closest(".edit-input")) return;
    event.preventDefault();
    event.stopPropagation();
    event.target.closest(".edit-form")?.querySelector(".edit-cancel")?.click();
  });

  els.transcript.addEventListener("submit", (event) => {
    const editForm = event.target.closest(".edit-form");
    if (editForm) {
      event.preventDefault();
      submitEdit(editForm);
      return;
    }
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
}

// Sends the answer to an interrupt; the card shows it at once and the server's `message.created`
// for the answer (state.js recordInterruptAnswer) makes it final.
function answerInterrupt(card, payload) {
  const interruptId = card.dataset.interruptId;
  if (!page.conn.send({ type: "interrupt.resume", interrupt_id: interruptId, payload })) {
    page.state.interruptErrors.set(interruptId, t("not_connected"));
  } else {
    markInterruptAnswered(page.state, interruptId, payload);
  }
  const id = card.closest(".message")?.dataset.messageId;
  if (id) renderNow(id);
  if (!document.activeElement || document.activeElement === document.body) views.get(id)?.interrupt?.focus({ preventScroll: true });
}

// Sibling navigation, Regenerate, Edit and its Cancel (render/branches.js). True when handled.
function branchControl(target) {
  const { state, conn } = page;
  const control = target.closest(".branch-previous, .branch-next, .regenerate-button, .edit-button, .edit-cancel");
  const id = control?.closest(".message")?.dataset.messageId;
  const message = id ? state.byId.get(id) : null;
  if (!message) return false;
  if (control.classList.contains("edit-cancel")) {
    editDrafts.delete(id);
    renderNow(id);
    views.get(id)?.branch?.edit.focus();
  } else if (control.classList.contains("edit-button")) {
    if (!canEdit(state, message)) return true;
    editDrafts.set(id, message.content);
    renderNow(id);
  } else if (control.classList.contains("regenerate-button")) {
    if (!canRegenerate(state, message)) return true;
    if (!conn.send({ type: "message.regenerate", message_id: id, client_id: newClientId() })) showError(t("not_connected"));
  } else if (control.dataset.target) {
    if (!conn.send({ type: "branch.select", message_id: control.dataset.target })) showError(t("not_connected"));
  }
  return true;
}

// Opens the inline editor of the newest message of the user's (the ↑ shortcut).
export function editMessage(id) {
  const message = page.state.byId.get(id);
  if (!message || !canEdit(page.state, message)) return false;
  editDrafts.set(id, message.content);
  renderNow(id);
  return true;
}

function submitEdit(form) {
  const { state, conn } = page;
  const id = form.closest(".message")?.dataset.messageId;
  const area = form.querySelector(".edit-input");
  const content = area.value.trim();
  if (!id || !content) {
    area.focus();
    return;
  }
  if (codePointLength(content) > state.maxChars) {
    showError(t("too_long"));
    return;
  }
  if (!conn.send({ type: "message.edit", message_id: id, content, client_id: newClientId() })) {
    showError(t("not_connected"));
    return;
  }
  editDrafts.delete(id);
  renderNow(id);
}
