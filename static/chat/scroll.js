// The transcript follows the stream while the user is at the bottom; scrolled up, it stays put
// and "Jump to latest" appears.

import { page } from "./page.js";

// Within this distance of the bottom, the transcript follows the stream.
const FOLLOW_THRESHOLD_PX = 80;

let following = true;

export function isFollowing() {
  return following;
}

function distanceFromBottom() {
  const box = page.els.transcript;
  return box.scrollHeight - box.scrollTop - box.clientHeight;
}

export function scrollToBottom() {
  page.els.transcript.scrollTop = page.els.transcript.scrollHeight;
}

export function setFollowing(value) {
  following = value;
  page.els.jump.hidden = value;
}

export function initScrolling() {
  page.els.transcript.addEventListener("scroll", () => setFollowing(distanceFromBottom() <= FOLLOW_THRESHOLD_PX), { passive: true });
  page.els.jump.addEventListener("click", () => {
    setFollowing(true);
    scrollToBottom();
  });
}
