// Math in replies: a marked extension that finds TeX between `$…$`, `$$…$$`, `\(…\)` and
// `\[…\]` and hands it to a renderer (markdown.js passes texRenderer(katex)). Pure: no DOM, and
// KaTeX is passed in, so the rules are unit-tested with node (tests/math.test.mjs). The admin
// transcript renders its math with the same texRenderer and allow-list (static/review/math.js).
//
// Code spans and code blocks are tokenized by marked before any text reaches these rules, so
// math is never found inside code. A lone `$` stays text, with the usual rules (pandoc's): no
// space after the opening `$`, none before the closing `$`, and the closing `$` not followed by
// a digit — so "$5 and $10" and "costs $5." are prices, not math. Inline math holds no backtick,
// so a `$` before a code span never reaches into it.

import { escapeHtml } from "./text.js";

// Longest TeX taken as one formula; a longer run stays text. 4,000 characters is far beyond a
// real formula and bounds the work one stray `$` can cause in a 1,000,000-character reply.
export const MAX_TEX_CHARS = 4_000;

// Display math ($$…$$ or \[…\]) alone on its lines: a block. At most 3 spaces of indent (4 is an
// indented code block); no blank line inside (TeX forbids one in display math, and it stops an
// unclosed `$$` from swallowing the rest of the reply).
const BLOCK = /^ {0,3}(\$\$|\\\[)([\s\S]*?)(\$\$|\\\])[ \t]*(?:\n+|$)/;
const BLOCK_START = /(?:^|\n) {0,3}(?:\$\$|\\\[)/;
const BLANK_LINE = /\n[ \t]*\n/;

const CLOSERS = { "$$": "$$", "\\[": "\\]", "\\(": "\\)" };

// `src` starts at a candidate: returns {raw, text, display} or null.
export function matchInline(src) {
  if (src.startsWith("$$") || src.startsWith("\\[") || src.startsWith("\\(")) {
    const open = src.slice(0, 2);
    const end = src.indexOf(CLOSERS[open], 2);
    if (end < 0 || end - 2 > MAX_TEX_CHARS) return null;
    const text = src.slice(2, end);
    if (!text.trim() || BLANK_LINE.test(text) || text.includes("`")) return null;
    return { raw: src.slice(0, end + 2), text: text.trim(), display: open !== "\\(" };
  }
  if (!src.startsWith("$")) return null;
  // Opening `$`: followed by a character that is not a space.
  if (src.length < 3 || /\s/.test(src[1])) return null;
  const limit = Math.min(src.length, MAX_TEX_CHARS + 2);
  for (let i = 1; i < limit; i++) {
    const c = src[i];
    if (c === "\\") {
      i++; // `\$` inside math is a dollar sign, not the end
      continue;
    }
    // A backtick ends the candidate: the code span it opens wins, as in "$5, code: `$x$`".
    if (c === "`" || (c === "\n" && /^\n[ \t]*\n/.test(src.slice(i)))) return null;
    if (c !== "$") continue;
    // Closing `$`: not after a space, not before a digit; otherwise this `$` is not math.
    if (/\s/.test(src[i - 1]) || /\d/.test(src[i + 1] || "")) return null;
    return { raw: src.slice(0, i + 1), text: src.slice(1, i), display: false };
  }
  return null;
}

// `src` starts at a block: returns {raw, text, display: true} or null.
export function matchBlock(src) {
  const m = BLOCK.exec(src);
  if (!m || CLOSERS[m[1]] !== m[3]) return null;
  const text = m[2];
  if (!text.trim() || text.length > MAX_TEX_CHARS || BLANK_LINE.test(text)) return null;
  return { raw: m[0], text: text.trim(), display: true };
}

// The marked extension. `render(tex, display)` returns HTML; its output still goes through
// DOMPurify in markdown.js like everything else marked produces.
export function mathExtension(render) {
  return {
    extensions: [
      {
        name: "mathBlock",
        level: "block",
        // Where a paragraph may end so a display formula on its own lines becomes a block.
        start(src) {
          const m = BLOCK_START.exec(src);
          return m ? m.index + (m[0].startsWith("\n") ? 1 : 0) : undefined;
        },
        tokenizer(src) {
          const found = matchBlock(src);
          return found ? { type: "mathBlock", ...found } : undefined;
        },
        renderer(token) {
          return `<div class="math math-display">${render(token.text, true)}</div>\n`;
        },
      },
      {
        name: "mathInline",
        level: "inline",
        start(src) {
          const i = src.search(/\$|\\[([]/);
          return i < 0 ? undefined : i;
        },
        tokenizer(src) {
          const found = matchInline(src);
          return found ? { type: "mathInline", ...found } : undefined;
        },
        renderer(token) {
          const cls = token.display ? "math math-display" : "math math-inline";
          return `<span class="${cls}">${render(token.text, token.display)}</span>`;
        },
      },
    ],
  };
}

// Math is rendered as MathML only (output: "mathml") and laid out by the browser's MathML engine.
// KaTeX's HTML output positions glyphs with inline style attributes (struts, heights), which the
// CSP (style-src 'self', no 'unsafe-inline') refuses; MathML needs none, so neither KaTeX's
// stylesheet nor its fonts are loaded. strict "ignore": no console warning per model-written
// oddity; trust off: no \href, \url links or \includegraphics; maxExpand bounds macro loops.
const KATEX_OPTIONS = { output: "mathml", throwOnError: false, strict: "ignore", trust: false, maxExpand: 1000 };
// Formulas re-rendered on every frame of a streaming reply are taken from here.
const TEX_CACHE_ENTRIES = 200;

export function texRenderer(katex) {
  const cache = new Map();
  return function renderTex(tex, display) {
    const key = `${display ? "D" : "I"}\u0000${tex}`;
    const hit = cache.get(key);
    if (hit !== undefined) return hit;
    let html;
    try {
      html = katex.renderToString(tex, { ...KATEX_OPTIONS, displayMode: display });
      // Its few style attributes (\fcolorbox, the error span's colour) go before any parsing:
      // even DOMPurify's inert parse reports them as CSP violations. KaTeX escapes `"` in text,
      // so this pattern only ever meets attributes.
      html = html.replace(/ style="[^"]*"/g, "");
    } catch {
      html = `<code class="math-error">${escapeHtml(tex)}</code>`;
    }
    cache.set(key, html);
    if (cache.size > TEX_CACHE_ENTRIES) cache.delete(cache.keys().next().value);
    return html;
  };
}

// The MathML KaTeX emits (src/buildMathML.js and the mathml builders of src/functions/*), for
// DOMPurify: presentation elements and their layout attributes; nothing that loads or links
// (no mglyph src, no href: trust is off).
export const MATHML_TAGS = [
  "math", "semantics", "annotation", "mrow", "mi", "mn", "mo", "ms", "mtext", "mspace", "msub", "msup",
  "msubsup", "munder", "mover", "munderover", "mfrac", "msqrt", "mroot", "mstyle", "mpadded", "mphantom",
  "menclose", "mtable", "mtr", "mtd", "mlabeledtr", "merror",
];
export const MATHML_ATTR = [
  "xmlns", "display", "encoding", "mathvariant", "mathcolor", "mathbackground", "mathsize", "displaystyle",
  "scriptlevel", "stretchy", "fence", "separator", "lspace", "rspace", "minsize", "maxsize", "largeop",
  "movablelimits", "symmetric", "accent", "accentunder", "linethickness", "notation", "width", "height",
  "depth", "voffset", "columnalign", "columnspacing", "columnlines", "rowspacing", "rowlines", "rowalign",
  "linebreak", "aria-hidden",
];
