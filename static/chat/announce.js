// Screen readers hear a short note when a reply ends (completed, failed, stopped or waiting for
// the user's answer), once, not at every delta: the streaming message is aria-busy, and this
// watches only its data-status leaving "streaming". The note goes to #reply-announcer (role=status, polite), whose data-*
// attributes carry the translated texts. Loaded by chat.html on its own: it reads only the DOM.

const ENDED = { completed: "done", failed: "failed", canceled: "stopped", awaiting_input: "awaiting" };
// Cleared first, then written a moment later, so the same note twice is announced twice.
const ANNOUNCE_DELAY_MS = 100;

export function endingNote(role, oldStatus, newStatus) {
  if (role !== "assistant" || oldStatus !== "streaming") return null;
  return ENDED[newStatus] || null;
}

export function initAnnouncer(transcript, announcer) {
  let timer = null;
  const observer = new MutationObserver((records) => {
    for (const record of records) {
      const el = record.target;
      const key = endingNote(el.dataset.role, record.oldValue, el.dataset.status);
      if (!key || !el.matches("article.message")) continue;
      announcer.textContent = "";
      clearTimeout(timer);
      timer = setTimeout(() => {
        announcer.textContent = announcer.dataset[key] || "";
      }, ANNOUNCE_DELAY_MS);
    }
  });
  observer.observe(transcript, { subtree: true, attributes: true, attributeFilter: ["data-status"], attributeOldValue: true });
  return observer;
}

if (typeof document !== "undefined") {
  const transcript = document.getElementById("transcript");
  const announcer = document.getElementById("reply-announcer");
  if (transcript && announcer) initAnnouncer(transcript, announcer);
}
