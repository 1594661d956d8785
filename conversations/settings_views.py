"""The user's settings page (`/settings/`): their teams, the default one their new conversations
go to (services.teams.set_default_team), links to the team pages they lead, and their personal
API tokens (services/tokens.py): create (the token is shown on the answer to that POST only,
never stored in the session or a message, which live in the database), list, revoke."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from conversations import ratelimit, services
from conversations.forms import ApiTokenForm
from conversations.models import TeamMembership


def _render(request: HttpRequest, *, error: str = "", token_form: ApiTokenForm | None = None,
            new_token: str = "", status: int = 200) -> HttpResponse:
    memberships = list(TeamMembership.objects.filter(user=request.user)
                       .select_related("team").order_by("team__name"))
    context: dict[str, Any] = {
        "memberships": memberships, "default_team": services.teams.default_team(request.user),
        "error": error, "token_form": token_form or ApiTokenForm(),
        "tokens": services.user_tokens(request.user), "new_token": new_token,
    }
    return render(request, "conversations/settings.html", context, status=status)


@login_required
@ratelimit.limit_form_writes
@require_http_methods(["GET", "POST"])
def settings_page(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        slug = request.POST.get("default_team", "")
        memberships = TeamMembership.objects.filter(user=request.user).select_related("team")
        team = next((m.team for m in memberships if m.team.slug == slug), None)
        if team is None:
            return _render(request, error=_("Choose one of your teams."), status=422)
        services.teams.set_default_team(request.user, team)
        messages.success(request, _("New conversations now go to %(team)s.")
                         % {"team": team.name})
        return redirect("settings")
    return _render(request)


@login_required
@ratelimit.limit_form_writes
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    form = ApiTokenForm(request.POST)
    if form.is_valid():
        try:
            _token, secret = services.create_token(
                request.user, name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"], lifetime=form.lifetime(),
                actor=request.user)
        except services.InvalidInput as exc:
            form.add_error(None, exc.message)
        else:
            # Rendered, not redirected: the token exists only in this answer (no-store).
            return _render(request, new_token=secret)
    return _render(request, token_form=form, status=422)


@login_required
@ratelimit.limit_form_writes
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    try:
        token = services.revoke_user_token(request.user, token_id)
    except services.NotFound:
        messages.error(request, _("No such token."))
        return redirect("settings")
    messages.success(request, _("Token “%(name)s” revoked.") % {"name": token.name})
    return redirect("settings")
