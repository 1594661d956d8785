"""`{% send_to_queue_form conversation %}`: the chat header's "Send to queue" form, shown to
reviewers only (conversations/review/send.py answers it)."""

from __future__ import annotations

from typing import Any

from django import template

from conversations.review.send import send_choices

register = template.Library()


@register.inclusion_tag("review/_send_to_queue.html", takes_context=True)
def send_to_queue_form(context: dict[str, Any], conversation: Any) -> dict[str, Any]:
    request = context.get("request")
    user = getattr(request, "user", None)
    queues = send_choices(user) if user is not None and conversation is not None else []
    return {"queues": queues, "conversation": conversation, "csrf_token": context.get(
        "csrf_token"), "next": request.get_full_path() if request else ""}
