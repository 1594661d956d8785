"""`POST /review/send/<conversation id>/`: a reviewer sends the conversation they are reading to
a review queue from the chat header (its latest assistant reply, or the conversation as a whole
when it has none). Anyone else gets a 404, as for a conversation that does not exist."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from conversations import ratelimit
from conversations.models import Conversation, ReviewQueue
from conversations.services import queues, scoring


def send_choices(user: object) -> list[ReviewQueue]:
    """The active queues a reviewer may send to (the chat header's menu); [] for others."""
    if not scoring.may_score(user):
        return []
    return list(ReviewQueue.objects.filter(is_active=True).order_by("name"))


@login_required
@ratelimit.limit_form_writes
@require_POST
def send_to_queue(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    if not scoring.may_score(request.user):
        raise Http404
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is None:
        raise Http404
    queue_id = request.POST.get("queue", "")
    queue = (ReviewQueue.objects.filter(pk=int(queue_id), is_active=True).first()
             if queue_id.isascii() and queue_id.isdigit() and len(queue_id) < 10 else None)
    if queue is None:
        messages.error(request, _("Choose a review queue."))
    elif queues.send_to_queue(queue, conversation) is None:
        messages.info(request, _("Already in the review queue “%(queue)s”.")
                      % {"queue": queue.name})
    else:
        messages.success(request, _("Sent to the review queue “%(queue)s”.")
                         % {"queue": queue.name})
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()},
                                           require_https=request.is_secure()):
        target = ""
    return redirect(target or "chat", *([] if target else [conversation.pk]))
