"""Math in the admin transcript's server-side markdown (conversations/review/math.py): the chat's
delimiters and rules, escaped TeX in two allow-listed classes, nothing else through nh3."""

from __future__ import annotations

import pytest

from conversations.review.math import MAX_TEX_CHARS, match_inline
from conversations.review.transcript import render_markdown


def test_it_marks_the_four_delimiters():
    assert str(render_markdown("Euler $e^{i\\pi}+1=0$ and \\(a<b\\)")) == (
        '<p>Euler <span class="math math-inline">e^{i\\pi}+1=0</span> and '
        '<span class="math math-inline">a&lt;b</span></p>\n')
    assert str(render_markdown("$$\nx^2\n$$")) == '<div class="math math-display">x^2</div>\n'
    assert str(render_markdown("\\[\n\\frac{a}{b}\n\\]")) == (
        '<div class="math math-display">\\frac{a}{b}</div>\n')
    assert str(render_markdown("a $$x$$ and \\[y\\] b")) == (
        '<p>a <span class="math math-display">x</span> and '
        '<span class="math math-display">y</span> b</p>\n')


@pytest.mark.parametrize("text", [
    "It costs $5 and $10.", "$ x$", "$x $", "$x$5", "Pay $5, then $6 more", "\\$5 and \\$6",
])
def test_it_leaves_prices_and_escaped_dollars_as_text(text: str):
    assert "math" not in str(render_markdown(text))


def test_it_never_finds_math_in_code():
    assert str(render_markdown("`$x$` and $5, code: `$y$`")) == (
        "<p><code>$x$</code> and $5, code: <code>$y$</code></p>\n")
    assert str(render_markdown("```\n$$x$$\n```")) == "<pre><code>$$x$$\n</code></pre>\n"
    assert str(render_markdown("    $$x$$")) == "<pre><code>$$x$$\n</code></pre>\n"


def test_it_keeps_an_unclosed_delimiter_as_text_up_to_a_blank_line():
    assert str(render_markdown("$$\nopen\n\nnext $p$")) == (
        '<p>$$\nopen</p>\n<p>next <span class="math math-inline">p</span></p>\n')
    assert str(render_markdown("\\[ open\n\nnext")) == "<p>[ open</p>\n<p>next</p>\n"
    assert match_inline("$" + "x" * (MAX_TEX_CHARS + 1) + "$") is None
    assert match_inline("$" + "x" * MAX_TEX_CHARS + "$") is not None


def test_it_lets_nothing_hostile_through_as_math():
    html = str(render_markdown(
        '$<img src=x onerror=alert(1)>$ \\(</span><script>alert(1)</script>\\) '
        '<span class="math math-inline">\\href{javascript:alert(1)}{x}</span>'))
    assert "<img" not in html and "<script" not in html
    assert '<span class="math math-inline">\\href' not in html
    assert html.count('<span class="math math-inline">') == 2
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    # Written as raw HTML, a math span is text; only the renderer's spans are elements.
    assert "&lt;span class=&quot;math math-inline&quot;&gt;" in html or \
        '&lt;span class="math math-inline"&gt;' in html
