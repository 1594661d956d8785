"""The pages where people manage canned replies: a team's leads at `/teams/<slug>/replies/`
(404 for everyone else), every user their personal ones at `/replies/`. Staff manage all of
them in the admin. Thin: the rules are services.canned's."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from conversations import ratelimit, services
from conversations.models import CannedReply, Team

canned = services.canned


class CannedReplyForm(forms.Form):
    # Lengths are checked by services.canned.clean_reply (its messages); maxlength helps typing.
    shortcut = forms.CharField(
        label=gettext_lazy("Shortcut"), max_length=canned.SHORTCUT_MAX_CHARS + 1,
        help_text=gettext_lazy("Typed after “/” in the message box: letters, digits, - and _."))
    title = forms.CharField(label=gettext_lazy("Title"), max_length=canned.TITLE_MAX_CHARS)
    body = forms.CharField(
        label=gettext_lazy("Text"), max_length=services.CONTENT_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text=gettext_lazy(
            "Variables: {{customer.external_user_id}}, {{customer.metadata.plan}}, "
            "{{user.first_name}}, {{user.last_name}}, {{user.username}}, {{agent.name}}."))
    language = forms.CharField(
        label=gettext_lazy("Language"), required=False, max_length=canned.LANGUAGE_MAX_CHARS,
        help_text=gettext_lazy("A code such as “en” or “fr-ca”; empty for any language."))


def _team(request: HttpRequest, slug: str | None) -> Team | None:
    """The team whose replies the page manages (its leads only: 404 for anyone else)."""
    if slug is None:
        return None
    team = Team.objects.filter(slug=slug).first()
    if team is None or not canned.can_manage(request.user, scope=CannedReply.Scope.TEAM,
                                             team=team):
        raise Http404(_("No such team."))
    return team


def _list_url(team: Team | None) -> str:
    return reverse("team_replies", args=[team.slug]) if team else reverse("my_replies")


def _page(request: HttpRequest, team: Team | None, form: CannedReplyForm,
          editing: CannedReply | None = None, status: int = 200) -> HttpResponse:
    return render(request, "canned/replies.html", {
        "team": team,
        "replies": canned.managed_replies(request.user, team=team),
        "form": form,
        "editing": editing,
        "list_url": _list_url(team),
        # The other lists this user may manage (the page's navigation).
        "led_teams": canned.led_teams(request.user),
    }, status=status)


def _save(request: HttpRequest, form: CannedReplyForm, team: Team | None,
          reply: CannedReply | None) -> CannedReply | None:
    """Store the form through the service; its refusals land on the form's fields."""
    if not form.is_valid():
        return None
    try:
        if reply is None:
            scope = CannedReply.Scope.TEAM if team else CannedReply.Scope.PERSONAL
            return canned.create_reply(request.user, form.cleaned_data, scope=scope, team=team)
        return canned.update_reply(request.user, reply, form.cleaned_data)
    except services.InvalidInput as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return None


@login_required
@ratelimit.limit_form_writes
@require_http_methods(["GET", "POST"])
def replies(request: HttpRequest, slug: str | None = None) -> HttpResponse:
    """The list and the form to add one."""
    team = _team(request, slug)
    form = CannedReplyForm(request.POST or None)
    if request.method == "POST":
        reply = _save(request, form, team, None)
        if reply is None:
            return _page(request, team, form, status=400)
        messages.success(request, _("Canned reply “/%(shortcut)s” added.")
                         % {"shortcut": reply.shortcut})
        return redirect(_list_url(team))
    return _page(request, team, form)


def _reply(request: HttpRequest, team: Team | None, reply_id: int) -> CannedReply:
    try:
        return canned.get_managed_reply(request.user, reply_id, team=team)
    except services.NotFound as exc:
        raise Http404(exc.message) from None


@login_required
@ratelimit.limit_form_writes
@require_http_methods(["GET", "POST"])
def reply_edit(request: HttpRequest, reply_id: int, slug: str | None = None) -> HttpResponse:
    team = _team(request, slug)
    reply = _reply(request, team, reply_id)
    initial: dict[str, Any] = {name: getattr(reply, name)
                               for name in ("shortcut", "title", "body", "language")}
    form = CannedReplyForm(request.POST or None, initial=initial)
    if request.method == "POST":
        if _save(request, form, team, reply) is None:
            return _page(request, team, form, reply, status=400)
        messages.success(request, _("Canned reply “/%(shortcut)s” saved.")
                         % {"shortcut": reply.shortcut})
        return redirect(_list_url(team))
    return _page(request, team, form, reply)


@login_required
@ratelimit.limit_form_writes
@require_POST
def reply_delete(request: HttpRequest, reply_id: int, slug: str | None = None) -> HttpResponse:
    team = _team(request, slug)
    reply = _reply(request, team, reply_id)
    shortcut = reply.shortcut
    canned.delete_reply(request.user, reply)
    messages.success(request, _("Canned reply “/%(shortcut)s” deleted.") % {"shortcut": shortcut})
    return redirect(_list_url(team))
