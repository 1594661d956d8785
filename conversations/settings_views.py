"""The user's settings page (`/settings/`): their teams, the default one their new conversations
go to (services.teams.set_default_team), and links to the team pages they lead."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from conversations import ratelimit, services
from conversations.models import TeamMembership


@login_required
@ratelimit.limit_form_writes
@require_http_methods(["GET", "POST"])
def settings_page(request: HttpRequest) -> HttpResponse:
    memberships = list(TeamMembership.objects.filter(user=request.user)
                       .select_related("team").order_by("team__name"))
    error = ""
    if request.method == "POST":
        slug = request.POST.get("default_team", "")
        team = next((m.team for m in memberships if m.team.slug == slug), None)
        if team is None:
            error = _("Choose one of your teams.")
        else:
            services.teams.set_default_team(request.user, team)
            messages.success(request, _("New conversations now go to %(team)s.")
                             % {"team": team.name})
            return redirect("settings")
    default = services.teams.default_team(request.user)
    return render(request, "conversations/settings.html", {
        "memberships": memberships, "default_team": default, "error": error,
    }, status=422 if error else 200)
