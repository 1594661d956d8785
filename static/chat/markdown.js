// Markdown for replies: marked renders, DOMPurify sanitizes, highlight.js colours code blocks.
// Model output is untrusted: marked renders raw HTML as text, DOMPurify sanitizes the rest.

import { Marked } from "../vendor/marked-18.2.1/marked.esm.js";
import DOMPurify from "../vendor/dompurify-3.4.18/purify.es.mjs";
import hljs from "../vendor/highlight.js-11.12.0/highlight.min.js";
import katex from "../vendor/katex-0.19.1/katex.mjs";
import { MATHML_ATTR, MATHML_TAGS, mathExtension, texRenderer } from "./math.js";
import { t } from "./strings.js";
import { escapeHtml } from "./text.js";

// Finished code blocks are re-highlighted on every render of a streaming reply; caching them
// leaves only the block still growing to highlight. Bounded so a long session stays small.
const HIGHLIGHT_CACHE_ENTRIES = 200;
const HIGHLIGHT_CACHE_MAX_CHARS = 50_000;

const highlightCache = new Map();

function highlight(code, lang) {
  const language = lang && hljs.getLanguage(lang) ? lang : null;
  if (!language) return escapeHtml(code);
  const cacheable = code.length <= HIGHLIGHT_CACHE_MAX_CHARS;
  const key = `${language}\u0000${code}`;
  if (cacheable && highlightCache.has(key)) {
    const hit = highlightCache.get(key);
    highlightCache.delete(key); // re-insert: Map order doubles as least-recently-used order
    highlightCache.set(key, hit);
    return hit;
  }
  let html;
  try {
    html = hljs.highlight(code, { language, ignoreIllegals: true }).value;
  } catch {
    html = escapeHtml(code);
  }
  if (cacheable) {
    highlightCache.set(key, html);
    if (highlightCache.size > HIGHLIGHT_CACHE_ENTRIES) highlightCache.delete(highlightCache.keys().next().value);
  }
  return html;
}

// Math as MathML through KaTeX (why MathML: static/chat/math.js).
const renderTex = texRenderer(katex);

const markdown = new Marked({
  gfm: true,
  breaks: false,
  renderer: {
    // Raw HTML in model output is shown as text, never parsed: sanitizing it would still let
    // a prompt-injected page restyle or overlay the chat.
    html({ text, block }) {
      return block ? `<p class="raw-html">${escapeHtml(text)}</p>` : escapeHtml(text);
    },
    // Images become links: an auto-loaded image URL is the classic way a prompt-injected
    // reply leaks conversation data to a third party.
    image({ href, text }) {
      const label = `${t("image")}: ${text || href}`;
      return `<a href="${escapeHtml(href)}">${escapeHtml(label)}</a>`;
    },
    // Task-list boxes as glyphs, so no form controls enter the transcript.
    checkbox({ checked }) {
      return checked ? "☑ " : "☐ ";
    },
    code({ text, lang }) {
      const language = (lang || "").trim().split(/\s+/)[0].toLowerCase();
      const cls = language ? ` class="hljs language-${escapeHtml(language)}"` : ' class="hljs"';
      return `<pre><code${cls}>${highlight(text, language)}</code></pre>\n`;
    },
  },
});
markdown.use(mathExtension(renderTex));

const PURIFY_CONFIG = {
  ALLOWED_TAGS: [
    "a", "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote",
    "pre", "code", "span", "em", "strong", "del", "s", "sup", "sub",
    "table", "thead", "tbody", "tr", "th", "td", "div",
    ...MATHML_TAGS,
  ],
  ALLOWED_ATTR: ["href", "title", "class", "align", "start", ...MATHML_ATTR],
  // The CSP refuses style attributes anyway (texRenderer drops KaTeX's before parsing).
  FORBID_ATTR: ["style"],
  ALLOW_DATA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

// Links in replies open in a new tab and cannot reach back into this page.
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

export function renderMarkdown(text) {
  let html;
  try {
    html = markdown.parse(text);
  } catch {
    const p = document.createElement("p");
    p.className = "raw-html";
    p.textContent = text;
    const fragment = document.createDocumentFragment();
    fragment.append(p);
    return fragment;
  }
  const fragment = DOMPurify.sanitize(html, PURIFY_CONFIG);
  for (const pre of fragment.querySelectorAll("pre")) decorateCodeBlock(pre);
  return fragment;
}

// Wraps a sanitized <pre> in a frame with its language and a Copy button (built with DOM calls,
// so nothing here goes through HTML parsing).
function decorateCodeBlock(pre) {
  const code = pre.querySelector("code");
  const language = code ? [...code.classList].find((c) => c.startsWith("language-"))?.slice(9) : "";
  const frame = document.createElement("div");
  frame.className = "code-block";
  const header = document.createElement("div");
  header.className = "code-block-header";
  const label = document.createElement("span");
  label.className = "code-block-lang";
  label.textContent = language || t("code");
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "button button-link button-small copy-button";
  copy.textContent = t("copy");
  header.append(label, copy);
  pre.replaceWith(frame);
  frame.append(header, pre);
}

export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // Permission denied or no focus: fall through to the selection-based copy.
    }
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.top = "0";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

