// The card of an interrupt (`interrupt.requested`): the agent's question, its options or an
// answer box, and what became of it. Rebuilt only when what it shows changes.

import { page } from "../page.js";
import { describeInterrupt, interruptOf, interruptStatus } from "../state.js";
import { t } from "../strings.js";
import { answerText, prettyJson } from "../text.js";

// Options that decline are never styled as the primary action.
const DECLINE_OPTION = /^(reject|deny|decline|refuse|cancel|no)\b/i;

export function renderInterrupt(message, view) {
  const { state } = page;
  const interrupt = interruptOf(message);
  const status = interrupt ? interruptStatus(state, message, interrupt) : null;
  const error = interrupt ? state.interruptErrors.get(interrupt.id) ?? null : null;
  const key = interrupt ? JSON.stringify([interrupt.id, interrupt.reason, interrupt.payload, status.kind, status.answer, error]) : null;
  if (view.rendered.interrupt === key) return;
  view.rendered.interrupt = key;
  view.interrupt?.remove();
  view.interrupt = null;
  if (!interrupt) return;

  const { question, options, structured, rest } = describeInterrupt(interrupt.payload);
  const card = document.createElement("section");
  card.className = "interrupt-card";
  card.dataset.interruptId = interrupt.id;
  card.dataset.state = status.kind;
  if (structured) card.dataset.answerFormat = "json";
  const titleId = `interrupt-title-${message.id}`;
  card.setAttribute("aria-labelledby", titleId);
  card.tabIndex = -1; // takes the focus when the control the user pressed is replaced

  const header = document.createElement("div");
  header.className = "interrupt-header";
  const title = document.createElement("h3");
  title.className = "interrupt-title";
  title.id = titleId;
  title.textContent = t(status.kind === "pending" || status.kind === "waiting" ? "interrupt_title" : "interrupt_title_past");
  header.append(title);
  if (interrupt.reason) {
    const reason = document.createElement("span");
    reason.className = "interrupt-reason";
    reason.dataset.reason = String(interrupt.reason);
    reason.textContent = t("interrupt_reason", { reason: String(interrupt.reason) });
    header.append(reason);
  }
  card.append(header);
  if (question) {
    const text = document.createElement("p");
    text.className = "interrupt-question";
    text.textContent = question;
    card.append(text);
  }
  if (rest !== undefined) {
    // The rest of the payload (a schema, context...), open when it is all there is to read or
    // describes the answer to type.
    const details = document.createElement("details");
    details.className = "interrupt-details";
    details.open = structured || (!question && !options.length);
    const summary = document.createElement("summary");
    summary.textContent = t("interrupt_details");
    const payload = document.createElement("pre");
    payload.className = "interrupt-payload";
    payload.textContent = prettyJson(rest);
    details.append(summary, payload);
    card.append(details);
  }

  if (status.kind === "answered" || status.kind === "sending") {
    const sent = document.createElement("p");
    sent.className = "interrupt-sent";
    sent.textContent = t("answer_given", { answer: answerText(status.answer) });
    card.append(sent);
    if (status.kind === "sending") {
      const note = document.createElement("p");
      note.className = "interrupt-note";
      note.textContent = t("answer_sending");
      card.append(note);
    }
  } else if (status.kind === "unanswered") {
    const note = document.createElement("p");
    note.className = "interrupt-note";
    note.textContent = t("interrupt_unanswered");
    card.append(note);
  } else {
    // "pending", or "waiting" / "expired" with the controls shown disabled.
    const disabled = status.kind !== "pending";
    card.append(options.length ? interruptOptions(options, disabled) : interruptForm(message, interrupt, structured, disabled));
    if (status.kind === "expired") {
      const expired = document.createElement("p");
      expired.className = "interrupt-expired";
      expired.setAttribute("role", "alert");
      expired.textContent = t("interrupt_expired");
      card.append(expired);
    }
  }
  if (error && status.kind === "pending") {
    const box = document.createElement("p");
    box.className = "interrupt-error";
    box.setAttribute("role", "alert");
    box.textContent = error;
    card.append(box);
  }
  // Above the feedback controls, which stay last.
  view.el.insertBefore(card, view.feedback?.el ?? null);
  view.interrupt = card;
}

// One button per answer option; the first is the primary action unless it declines.
function interruptOptions(options, disabled) {
  const group = document.createElement("div");
  group.className = "interrupt-options";
  group.setAttribute("role", "group");
  group.setAttribute("aria-label", t("answer_label"));
  options.forEach((option, index) => {
    const button = document.createElement("button");
    button.type = "button";
    const declines = DECLINE_OPTION.test(option);
    button.className = `button interrupt-option${declines ? " button-danger-outline" : index === 0 ? " button-primary" : ""}`;
    button.dataset.option = option;
    button.textContent = option;
    button.disabled = disabled;
    group.append(button);
  });
  return group;
}

function interruptForm(message, interrupt, structured, disabled) {
  const form = document.createElement("form");
  form.className = "interrupt-form";
  const fieldId = `interrupt-answer-${message.id}`;
  const label = document.createElement("label");
  label.htmlFor = fieldId;
  label.textContent = t(structured ? "answer_json_label" : "answer_label");
  const area = document.createElement("textarea");
  area.id = fieldId;
  area.className = "interrupt-answer";
  area.rows = 3;
  area.spellcheck = !structured;
  area.value = page.state.interruptDrafts.get(interrupt.id) ?? "";
  area.disabled = disabled;
  const button = document.createElement("button");
  button.type = "submit";
  button.className = "button button-primary interrupt-send";
  button.textContent = t("send_answer");
  button.disabled = disabled;
  form.append(label, area, button);
  return form;
}
