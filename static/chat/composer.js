// The composer: the message box, Send and Stop, the outbox that holds a sent message until the
// server acknowledges it (re-sent with the same client_id after a reconnect), and the hint line.

import { initAttachments, pendingAttachments, restoreAttachments, takeAttachments, updateAttachButton } from "./attachments.js";
import { cannedKeydown, initCanned, pendingPlaceholder, selectPlaceholder } from "./canned.js";
import { noteMode, sendNote } from "./desk.js";
import { page } from "./page.js";
import { renderTranscript } from "./render/transcript.js";
import { setFollowing } from "./scroll.js";
import { activeRunMessage, awaitedInterrupt, dropOutbox, isComposerBusy, isRunActive, queueMessage } from "./state.js";
import { formatNumber, t } from "./strings.js";
import { codePointLength, newClientId } from "./text.js";

// The length counter appears once the message reaches this share of the limit.
const COUNTER_FROM_RATIO = 0.8;
const ERROR_VISIBLE_MS = 6_000;

let composerHadFocus = false;

export function updateComposer() {
  const { els, state } = page;
  const running = isRunActive(state);
  // A note may go while the agent replies: it starts no run (desk.js).
  const busy = !noteMode() && (running || state.outbox !== null);
  const text = els.input.value.trim();
  const count = codePointLength(text);
  const over = count > state.maxChars;

  if (busy && !els.input.disabled) composerHadFocus = document.activeElement === els.input;
  els.input.disabled = busy;
  if (!busy && composerHadFocus) {
    composerHadFocus = false;
    els.input.focus();
  }
  // A message may be files alone; none may still be uploading when it goes.
  const files = pendingAttachments();
  // A canned reply's variable still unfilled: never sent as a placeholder (canned.js).
  const placeholder = pendingPlaceholder(els.input.value);
  els.send.disabled = busy || (!text && !files.ready.length) || over || files.uploading || placeholder !== null;
  updateAttachButton();

  const active = activeRunMessage(state);
  els.stop.hidden = !running;
  els.stop.disabled = !running || (active !== null && state.cancelRequestedFor === active.id);

  let hint = "";
  if (running) hint = t("run_active_hint");
  else if (state.outbox) hint = state.connection === "connected" ? t("sending_hint") : t("queued_hint");
  else if (over) hint = t("too_long");
  else if (placeholder) hint = t("canned_fill", { name: `{{${placeholder}}}` });
  else if (awaitedInterrupt(state)) hint = t("awaiting_hint");
  if (els.hint.textContent !== hint) els.hint.textContent = hint;

  const showCounter = count >= state.maxChars * COUNTER_FROM_RATIO;
  els.counter.hidden = !showCounter;
  if (showCounter) {
    els.counter.textContent = t("counter", { count: formatNumber(count), max: formatNumber(state.maxChars) });
    els.counter.classList.toggle("is-over", over);
  }

  for (const button of els.transcript.querySelectorAll(".retry-button")) button.disabled = busy;
}

export function autoResize() {
  const { els } = page;
  els.input.style.height = "auto";
  els.input.style.height = `${els.input.scrollHeight + 2}px`;
}

let errorTimer = null;

export function showError(text) {
  const { els } = page;
  els.error.textContent = text;
  els.error.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => {
    els.error.hidden = true;
  }, ERROR_VISIBLE_MS);
}

// Returns true when the message was accepted locally (shown and sent, or queued).
export function sendMessage(content) {
  const { state } = page;
  const text = content.trim();
  const files = pendingAttachments();
  if ((!text && !files.ready.length) || files.uploading || isComposerBusy(state)) return false;
  if (pendingPlaceholder(content) !== null) {
    selectPlaceholder();
    return false;
  }
  if (codePointLength(text) > state.maxChars) {
    showError(t("too_long"));
    return false;
  }
  const local = queueMessage(state, newClientId(), text);
  const attachments = takeAttachments();
  if (attachments.length) {
    state.outbox.attachments = attachments;
    local.attachments = attachments;
  }
  setFollowing(true);
  renderTranscript();
  flushOutbox();
  return true;
}

// Sends the pending message once the socket is synced; the same client_id makes a repeat
// harmless if the first copy did reach the server before the connection dropped.
export function flushOutbox() {
  const { state, conn } = page;
  if (!state.outbox || !conn.synced) return;
  const frame = { type: "message.send", content: state.outbox.content, client_id: state.outbox.clientId };
  if (state.outbox.attachments?.length) frame.attachments = state.outbox.attachments.map((a) => a.id);
  const sent = conn.send(frame);
  if (sent) {
    state.outbox.sent = true;
    state.lastRequest = "message.send";
  }
  updateComposer();
}

// A rejected send: take the optimistic copy back out and return the text to the composer.
export function rollBackOutbox() {
  const { els } = page;
  const files = page.state.outbox?.attachments;
  const content = dropOutbox(page.state);
  restoreAttachments(files);
  renderTranscript();
  if (!els.input.value.trim()) {
    els.input.value = content;
    autoResize();
  }
  updateComposer();
}

export function initComposer() {
  const { els, state } = page;
  initAttachments({ page, t, formatNumber, showError, onChange: updateComposer });
  initCanned({ onChange: () => {
    autoResize();
    updateComposer();
  } });
  els.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    if (noteMode()) {
      if (sendNote(els.input.value)) {
        els.input.value = "";
        autoResize();
      } else if (els.input.value.trim()) {
        showError(t("not_connected"));
      }
    } else if (sendMessage(els.input.value)) {
      els.input.value = "";
      autoResize();
    }
    updateComposer();
  });

  els.input.addEventListener("keydown", (event) => {
    if (cannedKeydown(event)) return; // the "/" picker's keys (↑ ↓ Enter Tab Esc)
    // isComposing / 229: Enter that confirms an IME composition (Japanese, Chinese...) must not send.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      els.composer.requestSubmit();
    }
  });

  els.input.addEventListener("input", () => {
    autoResize();
    updateComposer();
  });

  els.stop.addEventListener("click", () => {
    const active = activeRunMessage(state);
    if (!page.conn.send({ type: "run.cancel" })) {
      showError(t("not_connected"));
      return;
    }
    state.lastRequest = "run.cancel";
    state.cancelRequestedFor = active?.id ?? null;
    updateComposer();
  });
}
