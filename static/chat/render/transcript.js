// The transcript: one view per message id (render/message.js), in the order of state.messages,
// and the render schedule of streaming replies.
//
// The data model is updated synchronously on every frame and rendering never waits on
// requestAnimationFrame: background tabs pause rAF, and a reply must not stall there.

import { page } from "../page.js";
import { isFollowing, scrollToBottom } from "../scroll.js";
import { createView, renderMessage } from "./message.js";

// One re-render of a streaming message per 40 ms (25/s) is smoother than the eye needs and keeps
// re-parsing a long markdown reply well under the frame budget.
const RENDER_INTERVAL_MS = 40;

// Message id -> its view.
export const views = new Map();

// Runs after every render (main.js: the composer, whose state follows the messages').
let afterRenderHook = () => {};
export function onAfterRender(hook) {
  afterRenderHook = hook;
}

// Puts the DOM in the order of state.messages, creating and dropping views as needed.
export function renderTranscript() {
  const { state, els } = page;
  const wanted = new Set(state.messages.map((m) => m.id));
  for (const [id, view] of views) {
    if (!wanted.has(id)) {
      clearTimeout(view.timer);
      view.el.remove();
      views.delete(id);
    }
  }
  let previous = null;
  for (const message of state.messages) {
    let view = views.get(message.id);
    if (!view) {
      view = createView();
      views.set(message.id, view);
    }
    clearTimeout(view.timer);
    view.timer = null;
    renderMessage(message, view);
    const expected = previous ? previous.nextElementSibling : els.transcript.firstElementChild;
    if (expected !== view.el) els.transcript.insertBefore(view.el, expected);
    previous = view.el;
  }
  afterRender();
}

export function renderNow(id) {
  const message = page.state.byId.get(id);
  const view = views.get(id);
  if (!message || !view) {
    renderTranscript();
    return;
  }
  clearTimeout(view.timer);
  view.timer = null;
  renderMessage(message, view);
  afterRender();
}

// At most one render per message per RENDER_INTERVAL_MS. The timer only covers the tail of a
// burst: a frame arriving after the interval renders at once, so a background tab (where timers
// are throttled to ~1/s) still shows every frame as it lands.
export function scheduleRender(id) {
  const view = views.get(id);
  if (!view) {
    renderTranscript();
    return;
  }
  const elapsed = performance.now() - view.lastRenderAt;
  if (elapsed >= RENDER_INTERVAL_MS) {
    renderNow(id);
  } else if (!view.timer) {
    view.timer = setTimeout(() => {
      view.timer = null;
      renderNow(id);
    }, RENDER_INTERVAL_MS - elapsed);
  }
}

export function flushPendingRenders() {
  for (const [id, view] of views) {
    if (view.timer) renderNow(id);
  }
}

function afterRender() {
  afterRenderHook();
  if (isFollowing()) scrollToBottom();
}
