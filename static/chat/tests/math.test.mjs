// Delimiter rules of static/chat/math.js, alone and inside the vendored marked (pure: no DOM).
import assert from "node:assert/strict";
import { test } from "node:test";

import { Marked } from "../../vendor/marked-18.2.1/marked.esm.js";
import katex from "../../vendor/katex-0.19.1/katex.mjs";
import { MATHML_ATTR, MATHML_TAGS, MAX_TEX_CHARS, matchBlock, matchInline, mathExtension, texRenderer } from "../math.js";

// A stand-in renderer that shows what was found: [I:tex] inline, [D:tex] display.
const md = new Marked({ gfm: true }).use(mathExtension((tex, display) => `[${display ? "D" : "I"}:${tex}]`));
const html = (src) => md.parse(src).trim();

test("$…$ is inline math; $$…$$, \\(…\\) and \\[…\\] are found too", () => {
  assert.deepEqual(matchInline("$e^{i\\pi}+1=0$ rest"), { raw: "$e^{i\\pi}+1=0$", text: "e^{i\\pi}+1=0", display: false });
  assert.deepEqual(matchInline("$$x^2$$ rest"), { raw: "$$x^2$$", text: "x^2", display: true });
  assert.deepEqual(matchInline("\\(a_1\\) rest"), { raw: "\\(a_1\\)", text: "a_1", display: false });
  assert.deepEqual(matchInline("\\[\\sum x\\] rest"), { raw: "\\[\\sum x\\]", text: "\\sum x", display: true });
  assert.equal(html("Euler: $e^{i\\pi}+1=0$."), "<p>Euler: <span class=\"math math-inline\">[I:e^{i\\pi}+1=0]</span>.</p>");
  assert.equal(html("\\(a\\) and \\[b\\]"),
    "<p><span class=\"math math-inline\">[I:a]</span> and <span class=\"math math-display\">[D:b]</span></p>");
});

test("a lone $ is a price: no space after the opening $, none before the closing $, no digit after it", () => {
  assert.equal(matchInline("$5 and $10"), null);
  assert.equal(matchInline("$ x$"), null);
  assert.equal(matchInline("$x $"), null);
  assert.equal(matchInline("$x$5"), null);
  assert.equal(matchInline("$"), null);
  assert.equal(matchInline("$$"), null);
  assert.equal(matchInline("$$ $$"), null);
  assert.equal(html("It costs $5 and $10, or $5."), "<p>It costs $5 and $10, or $5.</p>");
  assert.equal(html("Pay $5, then $6 more"), "<p>Pay $5, then $6 more</p>");
});

test("an escaped \\$ is a dollar sign, outside math and inside it", () => {
  assert.equal(html("\\$5 and \\$6"), "<p>$5 and $6</p>");
  assert.equal(html("a \\$x$ b"), "<p>a $x$ b</p>");
  assert.deepEqual(matchInline("$a\\$b$"), { raw: "$a\\$b$", text: "a\\$b", display: false });
});

test("never inside code spans or code blocks", () => {
  assert.equal(html("`$x$` and $y$"), "<p><code>$x$</code> and <span class=\"math math-inline\">[I:y]</span></p>");
  assert.equal(html("```\n$$x$$\n```"), "<pre><code>$$x$$\n</code></pre>");
  assert.equal(html("    $$x$$"), "<pre><code>$$x$$\n</code></pre>");
  assert.equal(html("`\\(a\\)`"), "<p><code>\\(a\\)</code></p>");
  // A `$` before a code span cannot reach into it.
  assert.equal(html("$5 and $10, code: `$x$`"), "<p>$5 and $10, code: <code>$x$</code></p>");
  assert.equal(matchInline("\\(a `b\\)"), null);
});

test("display math on its own lines is a block, even right after a paragraph line", () => {
  assert.deepEqual(matchBlock("$$\na+b\n$$\nafter"), { raw: "$$\na+b\n$$\n", text: "a+b", display: true });
  assert.equal(matchBlock("$$a$$ and text"), null);
  assert.equal(matchBlock("$$a\\]"), null);
  assert.equal(html("Text\n$$\na+b\n$$\nafter"),
    "<p>Text</p>\n<div class=\"math math-display\">[D:a+b]</div>\n<p>after</p>");
  assert.equal(html("\\[\nx^2\n\\]"), "<div class=\"math math-display\">[D:x^2]</div>");
});

test("an unclosed delimiter stays text, and cannot reach past a blank line", () => {
  assert.equal(matchInline("$$x"), null);
  assert.equal(matchInline("\\(x"), null);
  assert.equal(matchInline("$a\n\nb$"), null);
  assert.equal(matchBlock("$$\na\n\nb\n$$"), null);
  assert.equal(html("$$\nunclosed\n\nnext $p$"), "<p>$$\nunclosed</p>\n<p>next <span class=\"math math-inline\">[I:p]</span></p>");
});

test("math keeps working inside emphasis, lists and tables", () => {
  assert.equal(html("**$a_1$ bold**"), "<p><strong><span class=\"math math-inline\">[I:a_1]</span> bold</strong></p>");
  assert.equal(html("- $x$\n- $y$"),
    "<ul>\n<li><span class=\"math math-inline\">[I:x]</span></li>\n<li><span class=\"math math-inline\">[I:y]</span></li>\n</ul>");
  assert.match(html("| a |\n|---|\n| $x$ |"), /<td><span class="math math-inline">\[I:x\]<\/span><\/td>/);
});

test("a formula longer than MAX_TEX_CHARS stays text", () => {
  const long = "x".repeat(MAX_TEX_CHARS + 1);
  assert.equal(matchInline(`$${long}$`), null);
  assert.equal(matchInline(`$$${long}$$`), null);
  assert.equal(matchBlock(`$$\n${long}\n$$`), null);
  assert.ok(matchInline(`$${"x".repeat(MAX_TEX_CHARS)}$`));
});

test("texRenderer: KaTeX's MathML, with no style attribute, errors shown as text", () => {
  const render = texRenderer(katex);
  const inline = render("\\frac{a}{b}", false);
  assert.match(inline, /^<span class="katex"><math xmlns="http:\/\/www.w3.org\/1998\/Math\/MathML"><semantics><mrow><mfrac><mi>a<\/mi><mi>b<\/mi><\/mfrac>/);
  assert.match(render("x", true), /<math [^>]*display="block"/);
  assert.equal(render("\\frac{a}{b}", false), inline); // cached
  // KaTeX writes style on \fcolorbox and on its error span: both dropped.
  const boxed = render("\\fcolorbox{red}{blue}{x}", false);
  assert.match(boxed, /<mpadded [^>]*mathbackground="blue"/);
  assert.doesNotMatch(boxed, / style=/);
  const broken = render("\\frac{1}{", false);
  assert.match(broken, /^<span class="katex-error" title="ParseError: [^"]*">\\frac\{1\}\{<\/span>$/);
  // trust is off: no link, no image, the TeX shown instead.
  const link = render("\\href{javascript:alert(1)}{x} \\includegraphics{x.png}", false);
  assert.doesNotMatch(link, /href=|src=|javascript:alert\(1\)"/);
  // Every element and attribute it produces is in the allow-list handed to DOMPurify.
  const sample = ["x^2_i", "\\sqrt[3]{x}", "\\sum_{i=1}^n i", "\\begin{pmatrix}a&b\\\\c&d\\end{pmatrix}",
    "\\overbrace{x}^{a}", "\\cancel{x}", "\\color{red}x", "\\boxed{y}", "\\left(\\frac12\\right)", "\\mathbb{R}",
    "\\text{a b}", "\\hat{x}\\underline{y}", "\\kern1em\\phantom{x}", "\\begin{aligned}a&=b\\\\&=c\\end{aligned}"]
    .map((tex) => render(tex, true)).join("");
  const tags = new Set([...sample.matchAll(/<([a-z]+)/g)].map((m) => m[1]));
  const attrs = new Set([...sample.matchAll(/ ([a-z-]+)="/g)].map((m) => m[1]));
  for (const tag of tags) assert.ok(tag === "span" || MATHML_TAGS.includes(tag), tag);
  for (const attr of attrs) assert.ok(attr === "class" || MATHML_ATTR.includes(attr), attr);
  assert.ok(tags.has("mtable") && tags.has("menclose") && attrs.has("mathcolor"));
});
