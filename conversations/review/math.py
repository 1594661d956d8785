"""Math in the admin transcript: the chat's delimiters and rules (static/chat/math.js), as
markdown-it rules.

`$…$`, `$$…$$`, `\\(…\\)` and `\\[…\\]` become `<span class="math math-inline">` or
`math-display` elements holding the escaped TeX; the admin page's script
(static/review/math.js) turns them into MathML with the vendored KaTeX, as the chat does. So
nothing but escaped text leaves the server, nh3 needs only the two classes, and a page without
JavaScript shows the TeX. Display math alone on its lines is mdit-py-plugins' dollar math block.
"""

from __future__ import annotations

import re
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.rules_block import StateBlock
from markdown_it.rules_inline import StateInline
from mdit_py_plugins.dollarmath import dollarmath_plugin

# As MAX_TEX_CHARS in static/chat/math.js: 4,000 characters is far beyond a real formula.
MAX_TEX_CHARS = 4_000
CLASSES = frozenset({"math math-inline", "math math-display"})
_CLOSERS = {"$$": "$$", "\\[": "\\]", "\\(": "\\)"}
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_BRACKET_BLOCK = re.compile(r"\\\[([\s\S]*?)\\\][ \t]*$")


def match_inline(src: str) -> tuple[int, str, bool] | None:
    """`src` starts at a candidate: (length taken, TeX, display) or None (static/chat/math.js's
    matchInline: no space after the opening `$`, none before the closing `$`, no digit after it,
    no backtick inside, no blank line)."""
    opener = src[:2]
    if opener in _CLOSERS:
        end = src.find(_CLOSERS[opener], 2)
        if end < 0 or end - 2 > MAX_TEX_CHARS:
            return None
        text = src[2:end]
        if not text.strip() or _BLANK_LINE.search(text) or "`" in text:
            return None
        return end + 2, text.strip(), opener != "\\("
    if not src.startswith("$") or len(src) < 3 or src[1].isspace():
        return None
    i = 1
    limit = min(len(src), MAX_TEX_CHARS + 2)
    while i < limit:
        c = src[i]
        if c == "\\":
            i += 2  # `\$` inside math is a dollar sign
            continue
        if c == "`" or (c == "\n" and re.match(r"\n[ \t]*\n", src[i:])):
            return None
        if c == "$":
            after = src[i + 1 : i + 2]
            if src[i - 1].isspace() or after.isdigit():
                return None
            return i + 1, src[1:i], False
        i += 1
    return None


def _inline_rule(state: StateInline, silent: bool) -> bool:
    if state.src[state.pos] not in "$\\":
        return False
    found = match_inline(state.src[state.pos : state.posMax])
    if found is None:
        return False
    length, tex, display = found
    if not silent:
        token = state.push("math_inline_double" if display else "math_inline", "math", 0)
        token.content = tex
        token.markup = state.src[state.pos : state.pos + 2]
    state.pos += length
    return True


def _bracket_block_rule(state: StateBlock, start: int, end: int, silent: bool) -> bool:
    """`\\[` … `\\]` alone on its lines: display math (as dollar math's `$$` block)."""
    begin = state.bMarks[start] + state.tShift[start]
    if state.sCount[start] - state.blkIndent >= 4 or not state.src.startswith("\\[", begin):
        return False
    line = start
    while line < end:
        last = state.src[begin : state.eMarks[line]]
        match = _BRACKET_BLOCK.fullmatch(last)
        if match:
            break
        if line > start and state.isEmpty(line):
            return False
        line += 1
    else:
        return False
    tex = match.group(1)
    if not tex.strip() or len(tex) > MAX_TEX_CHARS or _BLANK_LINE.search(tex):
        return False
    if silent:
        return True
    token = state.push("math_block", "math", 0)
    token.block = True
    token.content = tex.strip()
    token.markup = "\\["
    token.map = [start, line + 1]
    state.line = line + 1
    return True


def _render(cls: str, tag: str) -> Any:
    def render(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        newline = "\n" if tag == "div" else ""
        return f'<{tag} class="{cls}">{escapeHtml(tokens[idx].content.strip())}</{tag}>{newline}'

    return render


def math_plugin(md: MarkdownIt) -> None:
    """Dollar math's blocks, then the chat's inline rules ahead of backslash escapes."""
    dollarmath_plugin(md, allow_labels=False, allow_space=False, allow_digits=False,
                      allow_blank_lines=False, double_inline=True)
    md.inline.ruler.disable("math_inline")
    md.inline.ruler.before("escape", "chat_math_inline", _inline_rule)
    md.block.ruler.before("fence", "math_block_bracket", _bracket_block_rule,
                          {"alt": ["paragraph", "reference", "blockquote", "list"]})
    md.add_render_rule("math_inline", _render("math math-inline", "span"))
    md.add_render_rule("math_inline_double", _render("math math-display", "span"))
    md.add_render_rule("math_block", _render("math math-display", "div"))
