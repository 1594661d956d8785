"""A team's page (`/teams/<slug>/`): its members and this month's consumption against its
budgets, per agent (docs/teams.md). For the team's leads and staff; 404 for everyone else, so
nobody learns which teams exist."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from conversations import services
from conversations.models import Team, TeamMembership


def _percent(used: Decimal | int, budget: Decimal | int | None) -> int | None:
    """Share of a budget used, in whole percent (capped at 100 for the meter); None without
    a budget."""
    if budget is None:
        return None
    if budget <= 0:
        return 100
    return min(100, int(Decimal(used) * 100 / Decimal(budget)))


@login_required
def team_page(request: HttpRequest, slug: str) -> HttpResponse:
    team = Team.objects.filter(slug=slug).first()
    lead = services.teams.is_lead(request.user, team)
    if team is None or not (lead or request.user.is_staff):
        raise Http404
    members = (TeamMembership.objects.filter(team=team).select_related("user")
               .order_by("role", "user__username"))
    used = services.costs.team_consumption(team)
    context = {
        "team": team,
        "members": members,
        "used": used,
        "reached": services.costs.budget_reached(team, used),
        "token_percent": _percent(used.tokens, team.monthly_token_budget),
        "cost_percent": _percent(used.cost, team.monthly_cost_budget),
        "cost_budget": services.costs.format_cost(team.monthly_cost_budget)
        if team.monthly_cost_budget is not None else None,
        "is_lead": lead,
    }
    return render(request, "teams/team.html", context)
