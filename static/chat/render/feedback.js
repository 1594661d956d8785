// Thumbs up / down and an optional comment under every finished reply. The controls are built
// once per reply and updated in place, so focus and a half-typed comment survive re-renders.
// What the buttons do is in feedback.js.

import { page } from "../page.js";
import { canRate, feedbackUi } from "../state.js";
import { t } from "../strings.js";

// Matches services.FEEDBACK_COMMENT_MAX_CHARS.
const FEEDBACK_COMMENT_MAX_CHARS = 2_000;

export function renderFeedback(message, view) {
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
  const ui = feedbackUi(page.state, message.id);
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
