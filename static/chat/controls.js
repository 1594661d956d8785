// The controls inside messages, by delegation on the transcript (views are rebuilt on render, so
// no per-node listeners): feedback, Copy on code blocks, Retry, interrupt answers.

import { sendMessage } from "./composer.js";
import { cancelFeedbackComment, openFeedbackComment, rateReply, saveFeedbackComment } from "./feedback.js";
import { copyText } from "./markdown.js";
import { page } from "./page.js";
import { renderNow, views } from "./render/transcript.js";
import { markInterruptAnswered, userMessageBefore } from "./state.js";
import { t } from "./strings.js";

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
      const previousUser = message ? userMessageBefore(state, message) : null;
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
