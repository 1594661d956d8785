"""Server-rendered pages: the conversation list, new conversation, the chat page and the
rename / archive / delete actions. Thin: every change goes through `services`."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from conversations import ratelimit, services
from conversations.forms import NewConversationForm, RenameForm
from conversations.frames import (
    capabilities_json,
    conversation_json,
    message_json,
    user_json,
)
from conversations.models import Agent, Conversation, Team

# The home page's draft conversation id: its URLs carry it until the first send creates the
# real conversation, whose id the script (static/chat/draft.js) puts in their place.
DRAFT_ID = UUID(int=0)


def _query(**params: str) -> str:
    """A query string (no leading "?") of the non-empty `params`, in the given order."""
    return urlencode({name: value for name, value in params.items() if value})


def _conversation(request: HttpRequest, conversation_id: UUID) -> Conversation:
    """The user's conversation, or the 404 page (another user's too: services.NotFound)."""
    try:
        return services.get_conversation(request.user, conversation_id)
    except services.NotFound as exc:
        raise Http404(exc.message) from None


def _sidebar(request: HttpRequest, current_id: UUID | None = None) -> dict[str, Any]:
    q = request.GET.get("q", "")[:200]
    show_archived = request.GET.get("archived") == "1"
    # "All conversations about this customer": the conversations' external user id.
    customer = request.GET.get("customer", "").strip()[: services.EXTERNAL_USER_ID_MAX_CHARS]
    view, team = request.GET.get("view", "")[:32], request.GET.get("team", "")[:64]
    listing = {"q": q, "archived": show_archived, "page": request.GET.get("page", 1),
               "external_user_id": customer}
    try:
        page_obj = services.list_conversations(request.user, view=view, team=team, **listing)
    except services.InvalidInput:
        # A stale or hand-edited link (a team left since, an unknown view): the whole list.
        view = team = ""
        page_obj = services.list_conversations(request.user, **listing)
    archived = "1" if show_archived else ""
    # One switcher entry per view, then per team the user is in (none for a user in no team:
    # their list is all theirs). Each keeps the search, the customer and the archive tab.
    views: list[dict[str, Any]] = []
    teams = list(services.teams.user_teams(request.user))
    if teams:
        choices = [("", "", _("All")), ("mine", "", _("Mine")),
                   ("assigned", "", _("Assigned to me")), ("unassigned", "", _("Unassigned"))]
        choices += [("team", t.slug, t.name) for t in teams]
        views = [{"label": label, "current": (name, slug) == (view, team),
                  "query": _query(view=name, team=slug, q=q, archived=archived,
                                  customer=customer)}
                 for name, slug, label in choices]
    return {
        "conversations": page_obj.object_list,
        "page_obj": page_obj,
        "q": q,
        "show_archived": show_archived,
        "customer": customer,
        "view": view,
        "team_slug": team,
        "views": views,
        "current_id": current_id,
        # Query strings for the sidebar's links, each keeping the other filters.
        "filter_query": _query(view=view, team=team, q=q, archived=archived, customer=customer),
        "active_query": _query(view=view, team=team, q=q, customer=customer),
        "archived_query": _query(archived="1", view=view, team=team, q=q, customer=customer),
        "without_customer_query": _query(view=view, team=team, q=q, archived=archived),
        # Conversation links keep the customer filter, so the list stays the same there.
        "chat_query": _query(customer=customer),
    }


def _mark_team_agents(agents: list[Agent], teams: list[Team], team: Team | None) -> None:
    """Each agent's `draft_teams` (the slugs of the user's teams that may use it; None: every
    team) and `draft_allowed` (open to `team`), for the home page's team picker."""
    for agent in agents:
        restricted = {t.pk for t in agent.teams.all()}
        agent.draft_teams = [t.slug for t in teams if t.pk in restricted] if restricted else None
        agent.draft_allowed = not restricted or (team is not None and team.pk in restricted)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The chat page with no conversation yet (a draft): type at once; the first send creates
    the conversation and the page becomes its chat without a reload (static/chat/draft.js)."""
    sidebar = _sidebar(request)
    # Only the agents the user's teams may use (services.teams: the one rule).
    agents = list(services.teams.agents_for(request.user).prefetch_related("teams"))
    if not agents:
        return render(request, "conversations/home.html", {**sidebar, "agents": agents})
    teams = list(services.teams.user_teams(request.user))
    team = services.teams.default_team(request.user)
    _mark_team_agents(agents, teams, team)
    agent = services.last_used_agent(
        request.user, [a for a in agents if a.draft_allowed] or agents)
    # Filtered by customer: a new conversation is most likely about that customer too.
    customer = sidebar["customer"]
    draft = Conversation(id=DRAFT_ID, owner=request.user, agent=agent,
                         external_user_id=customer, team=team)
    language = get_language() or "en"
    chat_url = reverse("chat", args=[DRAFT_ID])
    if sidebar["chat_query"]:
        chat_url = f"{chat_url}?{sidebar['chat_query']}"
    # A new conversation tops the first page of the active list, whatever the customer filter
    # (it carries that customer); a search or another page may not show it.
    listed = not (sidebar["q"] or sidebar["show_archived"] or sidebar["page_obj"].number > 1
                  or sidebar["view"] not in ("", "mine"))
    initial_state = {
        "conversation": {**conversation_json(draft, language), "id": None},
        "messages": [],
        "ws_path": None,
        "user_message_max": services.CONTENT_MAX_CHARS,
        "me": user_json(request.user),
        "draft": {
            "placeholder_id": str(DRAFT_ID),
            "create_url": reverse("api_conversations"),
            "chat_url": chat_url,
            "ws_path": f"/ws/conversations/{DRAFT_ID}/",
            "customer": customer,
            "listed": listed,
            "agents": [
                {"slug": a.slug, "name": a.name,
                 "capabilities": capabilities_json(a.provider, a.options),
                 "teams": a.draft_teams}
                for a in agents
            ],
            # The team picker's choice goes with the first send (shown for 2+ teams).
            "team": team.slug if team is not None and len(teams) > 1 else None,
        },
    }
    return render(
        request,
        "conversations/home.html",
        {
            **sidebar,
            "agents": agents,
            "teams": teams if len(teams) > 1 else [],
            "draft_team": team,
            # The desk (presence, assignment, notes) is there once the first send made it a chat.
            "desk": services.desk_choices(request.user, draft),
            "conversation": draft,
            "draft": True,
            "rename_form": RenameForm(),
            "initial_state": initial_state,
            "metadata_json": "{}",
            "more_options_query": _query(agent=agent.slug, customer=customer),
        },
    )


@login_required
@ratelimit.limit_form_writes
@require_http_methods(["GET", "POST"])
def conversation_new(request: HttpRequest) -> HttpResponse:
    # "More options…" on the home page carries its agent and customer filter.
    customer = request.GET.get("customer", "").strip()[: services.EXTERNAL_USER_ID_MAX_CHARS]
    initial = {"external_user_id": customer}
    agent = request.GET.get("agent", "")
    if agent and services.teams.agents_for(request.user).filter(slug=agent).exists():
        initial["agent"] = agent
    form = NewConversationForm(request.POST or None, initial=initial, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            conversation = services.create_conversation(
                request.user,
                agent=form.cleaned_data["agent"],
                team=form.cleaned_data.get("team"),
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
    conversation = _conversation(request, conversation_id)
    language = get_language() or "en"
    messages, path = services.path_transcript(conversation)
    initial_state = {
        "conversation": conversation_json(conversation, language),
        "messages": [message_json(m) for m in messages],
        "branches": path.branches,
        "ws_path": f"/ws/conversations/{conversation.id}/",
        "user_message_max": services.CONTENT_MAX_CHARS,
        "attachment_max_bytes": services.attachment_max_bytes(),
        "me": user_json(request.user),
    }
    return render(
        request,
        "conversations/chat.html",
        {
            **_sidebar(request, conversation.id),
            "desk": services.desk_choices(request.user, conversation),
            "conversation": conversation,
            "rename_form": RenameForm(initial={"title": conversation.title}),
            "initial_state": initial_state,
            "metadata_json": json.dumps(conversation.metadata, indent=2, ensure_ascii=False),
        },
    )


@login_required
@ratelimit.limit_form_writes
@require_POST
def conversation_rename(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    conversation = _conversation(request, conversation_id)
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
@ratelimit.limit_form_writes
@require_POST
def conversation_archive(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    conversation = _conversation(request, conversation_id)
    archived = request.POST.get("archived", "1") == "1"
    services.update_conversation(conversation, archived=archived)
    messages.success(
        request, _("Conversation archived.") if archived else _("Conversation restored.")
    )
    return redirect("chat", conversation.id)


@login_required
@ratelimit.limit_form_writes
@require_http_methods(["GET", "POST"])
def conversation_delete(request: HttpRequest, conversation_id: UUID) -> HttpResponse:
    conversation = _conversation(request, conversation_id)
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
