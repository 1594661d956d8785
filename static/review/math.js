// The admin transcript's math: the server leaves each formula as escaped TeX in
// <span|div class="math math-inline|math-display"> (conversations/review/math.py); this renders
// it to MathML with the chat's KaTeX settings and allow-list (static/chat/math.js), sanitized by
// DOMPurify like the chat's replies. Without JavaScript the TeX stays readable.

import DOMPurify from "../vendor/dompurify-3.4.18/purify.es.mjs";
import katex from "../vendor/katex-0.19.1/katex.mjs";
import { MATHML_ATTR, MATHML_TAGS, texRenderer } from "../chat/math.js";

const renderTex = texRenderer(katex);
const PURIFY_CONFIG = {
  ALLOWED_TAGS: ["span", "code", ...MATHML_TAGS],
  ALLOWED_ATTR: ["class", "title", ...MATHML_ATTR],
  FORBID_ATTR: ["style"],
  RETURN_DOM_FRAGMENT: true,
};

for (const el of document.querySelectorAll(".review-transcript .math")) {
  const html = renderTex(el.textContent, el.classList.contains("math-display"));
  el.replaceChildren(DOMPurify.sanitize(html, PURIFY_CONFIG));
}
