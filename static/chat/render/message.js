// One message's view: the article and the parts updated in place (author, time, reasoning, tool
// calls, text, data blocks, footer, interrupt card, feedback), so open tool-call cards, a
// half-typed interrupt answer and text selection elsewhere survive re-renders.

import { renderMarkdown } from "../markdown.js";
import { page } from "../page.js";
import { isComposerBusy, userMessageBefore } from "../state.js";
import { formatTime, t } from "../strings.js";
import { renderAttachments } from "./attachments.js";
import { renderBranch } from "./branches.js";
import { renderFeedback } from "./feedback.js";
import { renderInterrupt } from "./interrupt.js";
import { renderData, renderToolCalls } from "./toolcalls.js";
import { usageNote } from "./usage.js";

// A failed reply no retry can fix: the vendor forgot the conversation.
const CONVERSATION_LOST_CODE = "vendor_conversation_lost";

export function createView() {
  const el = document.createElement("article");
  el.className = "message";
  const meta = document.createElement("header");
  meta.className = "message-meta";
  const author = document.createElement("span");
  author.className = "message-author";
  const time = document.createElement("time");
  time.className = "message-time";
  meta.append(author, time);
  const tools = document.createElement("div");
  tools.className = "tool-calls";
  const content = document.createElement("div");
  content.className = "content";
  const data = document.createElement("div");
  data.className = "message-data-list";
  const footer = document.createElement("div");
  footer.className = "message-footer";
  el.append(meta, tools, content, data, footer);
  const view = {
    el, meta, author, time, tools, content, data, footer,
    tag: null,
    reasoning: null,
    interrupt: null,
    feedback: null,
    branch: null,
    toolViews: new Map(),
    dataViews: new Map(),
    rendered: { content: null, role: null, footer: null, interrupt: null, reasoning: null, time: null },
    lastRenderAt: 0,
    timer: null,
  };
  return view;
}

function authorLabel(message) {
  const name = message.author?.name;
  // In a team's conversation colleagues write too: their messages carry their name.
  if (message.role === "user") return name && message.author.id !== page.me?.id ? name : t("you");
  if (message.role === "note") return name ? t("note_by", { name }) : t("note");
  if (message.role === "event") return t("event");
  if (message.role === "assistant") return page.state.conversation.agent_name || page.els.agent?.textContent || "";
  return t(message.role);
}

export function renderMessage(message, view) {
  const { el } = view;
  el.dataset.messageId = message.id;
  el.dataset.role = message.role;
  el.dataset.status = message.status;
  if (message.client_id) el.dataset.clientId = message.client_id;
  // A streaming reply is busy, so screen readers announce it once, complete.
  el.setAttribute("aria-busy", message.status === "streaming" ? "true" : "false");

  view.author.textContent = authorLabel(message);
  renderAnswerTag(message, view);
  if (view.rendered.time !== message.created_at) {
    view.rendered.time = message.created_at;
    const when = formatTime(message.created_at);
    view.time.textContent = when ? when.short : "";
    view.time.title = when ? when.full : "";
    if (message.created_at) view.time.dateTime = message.created_at;
  }

  renderReasoning(message, view);
  renderToolCalls(message, view);

  if (view.rendered.content !== message.content || view.rendered.role !== message.role) {
    if (message.role === "assistant") {
      view.content.classList.add("markdown");
      view.content.replaceChildren(renderMarkdown(message.content));
    } else {
      view.content.classList.remove("markdown");
      view.content.textContent = message.content;
    }
    view.rendered.content = message.content;
    view.rendered.role = message.role;
  }

  renderAttachments(message, view);
  renderData(message, view);
  renderFooter(message, view);
  renderInterrupt(message, view);
  renderFeedback(message, view);
  renderBranch(message, view);
  view.lastRenderAt = performance.now();
}

// The user's answer to an interrupt is a message of its own, tagged as such.
function renderAnswerTag(message, view) {
  const answers = message.role === "user" && typeof message.extra.answers_interrupt === "string";
  if (answers) view.el.dataset.answersInterrupt = message.extra.answers_interrupt;
  else delete view.el.dataset.answersInterrupt;
  if (answers && !view.tag) {
    view.tag = document.createElement("span");
    view.tag.className = "message-tag";
    view.tag.textContent = t("interrupt_answer_tag");
    view.author.after(view.tag);
  } else if (!answers && view.tag) {
    view.tag.remove();
    view.tag = null;
  }
}

function renderReasoning(message, view) {
  const text = typeof message.extra.reasoning === "string" ? message.extra.reasoning : "";
  if (!text) {
    view.reasoning?.remove();
    view.reasoning = null;
    view.rendered.reasoning = null;
    return;
  }
  if (!view.reasoning) {
    const details = document.createElement("details");
    details.className = "reasoning";
    const summary = document.createElement("summary");
    summary.textContent = t("reasoning");
    const body = document.createElement("div");
    body.className = "reasoning-body";
    details.append(summary, body);
    view.el.insertBefore(details, view.tools);
    view.reasoning = details;
  }
  if (view.rendered.reasoning !== text) {
    view.reasoning.querySelector(".reasoning-body").textContent = text;
    view.rendered.reasoning = text;
  }
}

function renderFooter(message, view) {
  // Retrying cannot bring back a conversation the vendor lost: offer a new one instead.
  const lost = message.status === "failed" && message.error?.code === CONVERSATION_LOST_CODE;
  const previousUser = message.status === "failed" && !lost ? userMessageBefore(page.state, message) : null;
  const key = JSON.stringify([message.status, message.error, Boolean(previousUser), message.token_usage, message.cost]);
  if (view.rendered.footer === key) return;
  view.rendered.footer = key;
  const parts = [];
  if (message.status === "streaming") {
    const indicator = document.createElement("div");
    indicator.className = "streaming-indicator";
    indicator.setAttribute("role", "img");
    indicator.setAttribute("aria-label", t("replying"));
    indicator.append(document.createElement("span"), document.createElement("span"), document.createElement("span"));
    parts.push(indicator);
  } else if (message.status === "failed") {
    const box = document.createElement("div");
    box.className = "message-error";
    box.setAttribute("role", "alert");
    const code = document.createElement("span");
    code.className = "message-error-code";
    code.textContent = message.error?.code || "error";
    const text = document.createElement("span");
    text.className = "message-error-text";
    text.textContent = message.error?.message || "";
    box.append(code, text);
    if (previousUser) {
      const retry = document.createElement("button");
      retry.type = "button";
      retry.className = "button button-small retry-button";
      retry.textContent = t("retry");
      retry.disabled = isComposerBusy(page.state);
      box.append(retry);
    }
    if (lost && page.urls.newConversation) {
      const link = document.createElement("a");
      link.className = "button button-small start-new-conversation";
      link.href = page.urls.newConversation;
      link.textContent = t("start_new_conversation");
      box.append(link);
    }
    parts.push(box);
  } else if (message.status === "canceled") {
    const note = document.createElement("p");
    note.className = "message-note message-stopped";
    note.textContent = t("stopped");
    parts.push(note);
  } else if (message.status === "pending") {
    const note = document.createElement("p");
    note.className = "message-note message-pending";
    note.textContent = t("sending");
    parts.push(note);
  }
  // A finished reply's tokens and cost, small.
  const usage = usageNote(message);
  if (usage) parts.push(usage);
  view.footer.replaceChildren(...parts);
}
