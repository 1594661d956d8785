"""The admin's conversation page: safe markdown and the transcript's per-message views.

Model output is untrusted. Markdown is rendered with raw HTML disabled (so `<script>` shows as
text, as in the chat UI), then sanitized again with nh3 against an allow-list; only that output is
marked safe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import nh3
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml

from chatsite import tracing
from conversations import services
from conversations.models import Conversation, Message, ToolCall
from conversations.review.math import CLASSES as MATH_CLASSES
from conversations.review.math import math_plugin

# Markdown ------------------------------------------------------------------------------------

# The chat UI's DOMPurify allow-list (static/chat/markdown.js), so reviewers see what users saw.
ALLOWED_TAGS = {
    "a", "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote",
    "pre", "code", "span", "em", "strong", "del", "s", "sup", "sub",
    "table", "thead", "tbody", "tr", "th", "td", "div",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"}, "code": {"class"}, "ol": {"start"}, "th": {"class"},
    "td": {"class"}, "span": {"class"}, "div": {"class"},
}
# A table column's alignment as markdown-it writes it (style="text-align:right"), and the class
# it becomes: the CSP allows no style attributes (settings.py), review.css styles the classes.
ALIGN_CLASSES = {f"text-align:{a}": f"align-{a}" for a in ("left", "center", "right")}
URL_SCHEMES = {"http", "https", "mailto"}


def _image_as_link(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    # An image in a reply would be fetched by the reviewer's browser the moment the page opens:
    # a model tricked by a prompt injection can leak data through its URL. Show a link instead
    # (the chat UI drops images altogether).
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env) or token.attrGet("src")
    return '<a href="{}">{}</a>'.format(
        escapeHtml(str(token.attrGet("src") or "")),
        escapeHtml(_("image: %(alt)s") % {"alt": alt}),
    )


def _align_as_class(state: Any) -> None:
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and token.attrs.get("style") is not None:
            align = ALIGN_CLASSES.get(str(token.attrs.pop("style")))
            if align:
                token.attrSet("class", align)


_markdown = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
_markdown.use(math_plugin)  # TeX kept as escaped text for static/review/math.js
_markdown.add_render_rule("image", _image_as_link)
_markdown.core.ruler.push("align_as_class", _align_as_class)


def _keep_attribute(tag: str, name: str, value: str) -> str | None:
    if name == "class" and tag in ("th", "td"):
        return value if value in ALIGN_CLASSES.values() else None
    if name == "class" and tag in ("span", "div"):
        return value if value in MATH_CLASSES else None
    if name == "class":
        # Only the fence's language marker, e.g. "language-python".
        return value if value.startswith("language-") and value[9:].isalnum() else None
    return value


def render_markdown(text: str) -> SafeString:
    html = _markdown.render(text or "")
    clean = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=_keep_attribute,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
    )
    return mark_safe(clean)  # noqa: S308 - nh3's allow-listed output


# Transcript ----------------------------------------------------------------------------------


def pretty_json(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


# Keys of Message.extra with a place of their own; the others are vendor data blocks.
EXTRA_KEYS_SHOWN_APART = frozenset(
    {"reasoning", "pending_interrupt", "interrupt_answer", "answers_interrupt",
     # branch bookkeeping (services.edits), shown as the sibling navigation and tags
     "regenerated_from", "edited_from", "copied_from", "forked_from"}
)


@dataclass
class ToolCallView:
    name: str
    call_id: str
    status: str
    arguments: str
    result: str | None


@dataclass
class MessageView:
    message: Message
    content_html: SafeString | None
    duration_ms: int | None
    tool_calls: list[ToolCallView] = field(default_factory=list)
    data_blocks: list[tuple[str, str]] = field(default_factory=list)
    reasoning: str = ""
    interrupt: dict[str, Any] | None = None
    interrupt_payload: str = ""
    interrupt_answer: str | None = None
    answers_interrupt: str = ""
    feedback: Any = None
    # Among its siblings (services.branches): (position from 1, count, previous id, next id).
    branch: tuple[int, int, str | None, str | None] | None = None
    edited: bool = False
    regenerated: bool = False
    # A reply's cost at its agent's prices (services.costs), None without prices or usage.
    cost: Decimal | None = None

    @property
    def anchor(self) -> str:
        return f"msg-{self.message.pk}"

    @property
    def cost_display(self) -> str:
        return services.costs.format_cost(self.cost)

    @property
    def trace_url(self) -> str:
        """The reply's trace in the tracing UI (OTEL_TRACE_URL_TEMPLATE), or ""."""
        return tracing.trace_url(self.message.trace_id)


def _tool_call_view(call: ToolCall) -> ToolCallView:
    arguments = call.arguments if call.arguments else (
        pretty_json(call.arguments_json) if call.arguments_json is not None else ""
    )
    return ToolCallView(
        name=call.name or call.call_id,
        call_id=call.call_id,
        status=call.status,
        arguments=pretty_json(arguments) if arguments else "",
        result=None if call.result is None else pretty_json(call.result),
    )


def message_view(message: Message) -> MessageView:
    """Everything the transcript shows for one message; needs `tool_call_rows` and `feedback`
    loaded (services.transcript) to stay at a fixed number of queries."""
    extra = message.extra if isinstance(message.extra, dict) else {}
    duration = None
    if message.completed_at and message.role == Message.Role.ASSISTANT:
        duration = max(0, round((message.completed_at - message.created_at).total_seconds() * 1000))
    view = MessageView(
        message=message,
        # User messages are plain text in the chat UI; only replies are markdown.
        content_html=render_markdown(message.content)
        if message.role == Message.Role.ASSISTANT else None,
        duration_ms=duration,
    )
    if message.role == Message.Role.ASSISTANT:
        view.tool_calls = [_tool_call_view(c) for c in message.tool_call_rows]
        view.feedback = getattr(message, "feedback", None)
    view.reasoning = str(extra.get("reasoning") or "")
    interrupt = extra.get("pending_interrupt")
    if isinstance(interrupt, dict):
        view.interrupt = interrupt
        view.interrupt_payload = pretty_json(interrupt.get("payload"))
    answer = extra.get("interrupt_answer")
    if isinstance(answer, dict):
        view.interrupt_answer = pretty_json(answer.get("payload"))
    view.answers_interrupt = str(extra.get("answers_interrupt") or "")
    view.data_blocks = [
        (key, pretty_json(value[0] if isinstance(value, list) and len(value) == 1 else value))
        for key, value in extra.items()
        if key not in EXTRA_KEYS_SHOWN_APART
    ]
    return view


def transcript_views(conversation: Conversation, leaf: Any = None) -> list[MessageView]:
    """The active path (or the branch through message `leaf`: a reviewer looks at another
    branch without changing the user's), with each branch point's siblings."""
    try:
        messages, path = services.path_transcript(conversation, leaf)
    except services.InvalidInput:  # a malformed ?branch= shows the active path
        messages, path = services.path_transcript(conversation)
    views = []
    prices = services.costs.agent_prices(conversation.agent.options)
    for m in messages:
        view = message_view(m)
        if m.role == Message.Role.ASSISTANT:
            view.cost = services.costs.reply_cost(m.usage, prices)
        siblings = path.branches.get(str(m.pk))
        if siblings:
            i = siblings.index(str(m.pk))
            view.branch = (i + 1, len(siblings), siblings[i - 1] if i else None,
                           siblings[i + 1] if i + 1 < len(siblings) else None)
        extra = m.extra if isinstance(m.extra, dict) else {}
        view.edited = "edited_from" in extra
        view.regenerated = "regenerated_from" in extra
        views.append(view)
    return views
