// Text helpers shared by the chat modules: code-point counting, escaping, JSON display, ids.
// Pure: no DOM, so `node --test` can load them.

// The server counts Python code points; JS strings count UTF-16 units, which differ for
// characters outside the BMP (emoji). Offsets and limits are compared in code points.
function isHighSurrogate(c) { return c >= 0xd800 && c <= 0xdbff; }
function isLowSurrogate(c) { return c >= 0xdc00 && c <= 0xdfff; }

export function codePointLength(s) {
  let n = s.length;
  for (let i = 0; i < s.length - 1; i++) {
    if (isHighSurrogate(s.charCodeAt(i)) && isLowSurrogate(s.charCodeAt(i + 1))) {
      n--;
      i++;
    }
  }
  return n;
}

// `s` without its first `count` code points.
export function dropCodePoints(s, count) {
  let i = 0;
  while (count > 0 && i < s.length) {
    const pair = isHighSurrogate(s.charCodeAt(i)) && i + 1 < s.length && isLowSurrogate(s.charCodeAt(i + 1));
    i += pair ? 2 : 1;
    count--;
  }
  return s.slice(i);
}

const HTML_ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);
}

export function prettyJson(value) {
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

// Tool arguments stream as raw text; show them indented once they parse.
export function prettyArguments(text) {
  if (!text) return "";
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

export function answerText(answer) {
  if (typeof answer === "string") return answer;
  try {
    return JSON.stringify(answer);
  } catch {
    return String(answer);
  }
}

// crypto.randomUUID exists only in secure contexts; a plain-http deployment still needs ids.
export function newClientId() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
