// What the feedback controls under a reply do (render/feedback.js draws them): rate, take the
// rating back, save or cancel a comment, through the JSON API. Only this page learns of a change:
// other open tabs show it after their next sync (reload or reconnect), as the server broadcasts
// no frame for feedback.

import { apiRequest } from "./api.js";
import { page, SAVED_VISIBLE_MS } from "./page.js";
import { renderNow, views } from "./render/transcript.js";
import { canRate, feedbackUi, normalizeFeedback } from "./state.js";
import { t } from "./strings.js";

// The API's URL for one reply's feedback: chat.html gives it with this placeholder id.
export const FEEDBACK_URL_PLACEHOLDER = "00000000-0000-0000-0000-000000000000";

function feedbackUrl(messageId) {
  return page.urls.feedback.replace(FEEDBACK_URL_PLACEHOLDER, encodeURIComponent(messageId));
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
export async function rateReply(messageId, score) {
  const message = page.state.byId.get(messageId);
  if (!message || !canRate(message)) return;
  const ui = feedbackUi(page.state, messageId);
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
  const latest = page.state.byId.get(messageId);
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

export async function saveFeedbackComment(messageId) {
  const message = page.state.byId.get(messageId);
  const fv = views.get(messageId)?.feedback;
  if (!message?.feedback || !fv) return;
  const ui = feedbackUi(page.state, messageId);
  if (ui.busy) return;
  ui.busy = true;
  ui.error = null;
  showFeedbackNote(messageId, ui, null);
  renderNow(messageId);
  const comment = fv.comment.value.trim();
  const result = await apiRequest("PUT", feedbackUrl(messageId), { score: message.feedback.score, comment });
  ui.busy = false;
  const latest = page.state.byId.get(messageId);
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

export function cancelFeedbackComment(messageId) {
  const fv = views.get(messageId)?.feedback;
  const ui = feedbackUi(page.state, messageId);
  if (!fv || ui.busy) return;
  ui.open = false;
  ui.error = null;
  fv.comment.value = fv.appliedComment ?? "";
  renderNow(messageId);
  if (fv.form.hidden) fv.addComment.focus({ preventScroll: true });
}

export function openFeedbackComment(messageId) {
  feedbackUi(page.state, messageId).open = true;
  renderNow(messageId);
  views.get(messageId)?.feedback?.comment.focus();
}
