"""Server-rendered pages: the conversation list, new conversation, the chat page and the
rename / archive / delete actions. Thin: every change goes through `services`."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from conversations import services
from conversations.forms import NewConversationForm, RenameForm
from conversations.frames import conversation_json, message_json


def _sidebar(request: HttpRequest, current_id: UUID | None = None) -> dict[str, Any]:
    q = request.GET.get("q", "")[:200]
    show_archived = request.GET.get("archived") == "1"
    page_obj = services.list_conversations(
        request.user, q=q, archived=show_archived, page=request.GET.get("page", 1)
    )
    return {
        "conversations": page_obj.object_list,
        "page_obj": page_obj,
        "q": q,
        "show_archived": show_archived,
        "current_id": current_id,
    }


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "conversations/home.html",
        {**_sidebar(request), "form": NewConversationForm()},
    )


@login_required
@require_http_methods(["GET", "POST"])
def conversation_new(request: HttpRequest) -> HttpResponse:
    form = NewConversationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            conversation = services.create_conversation(
                request.user,
                agent=form.cleaned_data["agent"],
                title=form.cleaned_data["title"],
                external_user_id=form.cleaned_data["external_user_id"],
                metadata=form.cleaned_data["metadata"],
            )
        except services.InvalidInput as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            return redirect("chat", conversation.id)
    status = 400 if request.method == "POST" else 200
    return render(
        request, "conversations/new.html", {**_sidebar(request), "form": form}, status=status
    )


@login_required
def chat(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    conversation = services.get_conversation(request.user, conversation_id)
    language = get_language() or "en"
    initial_state = {
        "conversation": conversation_json(conversation, language),
        "messages": [message_json(m) for m in services.transcript(conversation)],
        "ws_path": f"/ws/conversations/{conversation.id}/",
        "user_message_max": services.CONTENT_MAX_CHARS,
    }
    return render(
        request,
        "conversations/chat.html",
        {
            **_sidebar(request, conversation.id),
            "conversation": conversation,
            "rename_form": RenameForm(initial={"title": conversation.title}),
            "initial_state": initial_state,
        },
    )


@login_required
@require_POST
def conversation_rename(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    conversation = services.get_conversation(request.user, conversation_id)
    form = RenameForm(request.POST)
    if form.is_valid():
        try:
            services.update_conversation(conversation, title=form.cleaned_data["title"])
        except services.InvalidInput as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, _("Conversation renamed."))
    else:
        messages.error(request, " ".join(e for errs in form.errors.values() for e in errs))
    return redirect("chat", conversation.id)


@login_required
@require_POST
def conversation_archive(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    conversation = services.get_conversation(request.user, conversation_id)
    archived = request.POST.get("archived", "1") == "1"
    services.update_conversation(conversation, archived=archived)
    messages.success(
        request, _("Conversation archived.") if archived else _("Conversation restored.")
    )
    return redirect("chat", conversation.id)


@login_required
@require_http_methods(["GET", "POST"])
def conversation_delete(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    conversation = services.get_conversation(request.user, conversation_id)
    if request.method == "POST":
        vendor_error = services.delete_conversation(conversation)
        messages.success(request, _("Conversation deleted."))
        if vendor_error is not None:
            messages.warning(
                request,
                _("The vendor could not delete its copy of the conversation: %(error)s")
                % {"error": vendor_error.message},
            )
        return redirect("home")
    return render(
        request,
        "conversations/confirm_delete.html",
        {**_sidebar(request, conversation.id), "conversation": conversation},
    )
