"""Teams (docs/teams.md): membership, the default team, and which agents a team may use.

The access rule itself is `ConversationQuerySet.for_user` (a user sees the conversations they
started and those of their teams); everything here decides *which* team and agent a new
conversation gets, and who may act on a team's conversations.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils.translation import gettext as _

from conversations.models import Agent, Conversation, Team, TeamMembership
from conversations.services.audit import logged_update
from conversations.services.errors import InvalidInput


def user_teams(user: Any) -> QuerySet[Team]:
    if not getattr(user, "is_authenticated", False):
        return Team.objects.none()
    return Team.objects.filter(memberships__user=user).order_by("name")


def default_team(user: Any) -> Team | None:
    membership = (TeamMembership.objects.filter(user=user).select_related("team")
                  .order_by("-is_default", "joined_at", "pk").first())
    return membership.team if membership else None


def is_member(user: Any, team: Team | None) -> bool:
    return team is not None and TeamMembership.objects.filter(user=user, team=team).exists()


def is_lead(user: Any, team: Team | None) -> bool:
    return team is not None and TeamMembership.objects.filter(
        user=user, team=team, role=TeamMembership.Role.LEAD).exists()


def resolve_team(user: Any, value: Any) -> Team | None:
    """The team a new conversation of `user` belongs to: `value` (a slug of one of their
    teams), else their default team, else none (a private conversation)."""
    if value in (None, ""):
        return default_team(user)
    if not isinstance(value, str):
        raise InvalidInput("invalid", _("team must be a team's slug."), field="team")
    team = user_teams(user).filter(slug=value).first()
    if team is None:
        raise InvalidInput("invalid", _("You are not a member of the team “%(slug)s”.")
                           % {"slug": value[:64]}, field="team", status=422)
    return team


# Agents a team may use -------------------------------------------------------------------------


def agents_for_team(team: Team | None) -> QuerySet[Agent]:
    """Active agents open to every team, plus those given to `team`."""
    condition = Q(teams=None)
    if team is not None:
        condition |= Q(teams=team)
    return Agent.objects.active().filter(condition).distinct()


def agents_for(user: Any) -> QuerySet[Agent]:
    """Every agent `user` may start a conversation with (open ones and their teams')."""
    return Agent.objects.active().filter(
        Q(teams=None) | Q(teams__memberships__user=user)).distinct()


def agent_allowed(agent: Agent, team: Team | None) -> bool:
    restricted = list(agent.teams.values_list("pk", flat=True))
    return not restricted or (team is not None and team.pk in restricted)


def agent_access_annotations() -> dict[str, Exists]:
    """For a Conversation query: whether its agent is kept to some teams, and whether its team
    is one of them, so the check on every send costs no query of its own
    (`check_conversation_agent`)."""
    through = Agent.teams.through
    return {
        "agent_restricted": Exists(through.objects.filter(agent_id=OuterRef("agent_id"))),
        "agent_team_allowed": Exists(through.objects.filter(
            agent_id=OuterRef("agent_id"), team_id=OuterRef("team_id"))),
    }


def check_conversation_agent(conversation: Conversation) -> None:
    """`check_agent` for a conversation, read from `agent_access_annotations` when the query
    had them."""
    restricted = getattr(conversation, "agent_restricted", None)
    if restricted is None:
        check_agent(conversation.agent, conversation.team)
    elif restricted and not conversation.agent_team_allowed:
        _refuse_agent(conversation.agent, conversation.team)


def check_agent(agent: Agent, team: Team | None) -> None:
    """The one check, for the composer, the API, the websocket and the admin."""
    if not agent_allowed(agent, team):
        _refuse_agent(agent, team)


def _refuse_agent(agent: Agent, team: Team | None) -> None:
    raise InvalidInput(
        "agent_not_allowed",
        _("The agent “%(agent)s” is not available to %(team)s.") % {
            "agent": agent.name,
            "team": _("the team “%(name)s”") % {"name": team.name} if team
            else _("conversations outside a team")},
        field="agent", status=403)


# Membership -------------------------------------------------------------------------------------


def create_team(slug: str, name: str) -> Team:
    team = Team(slug=slug, name=name)
    team.full_clean()
    team.save()
    return team


@transaction.atomic
def add_member(team: Team, user: Any, *, lead: bool = False) -> TeamMembership:
    """Add (or re-role) a member; the first team a user joins becomes their default."""
    role = TeamMembership.Role.LEAD if lead else TeamMembership.Role.MEMBER
    has_default = TeamMembership.objects.filter(user=user, is_default=True).exists()
    membership, created = TeamMembership.objects.get_or_create(
        team=team, user=user, defaults={"role": role, "is_default": not has_default})
    if not created and membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def remove_member(team: Team, user: Any) -> bool:
    """Remove a member; their default moves to their oldest remaining team. Conversations
    assigned to them in this team are unassigned (they can no longer open them)."""
    membership = TeamMembership.objects.filter(team=team, user=user).first()
    if membership is None:
        return False
    membership.delete()
    logged_update(Conversation.objects.filter(team=team, assignee=user).exclude(owner=user),
                  assignee=None)
    if membership.is_default:
        following = TeamMembership.objects.filter(user=user).order_by("joined_at", "pk").first()
        if following is not None:
            following.is_default = True
            following.save(update_fields=["is_default"])
    return True


@transaction.atomic
def set_default_team(user: Any, team: Team) -> None:
    if not is_member(user, team):
        raise InvalidInput("invalid", _("You are not a member of that team."), field="team")
    logged_update(TeamMembership.objects.filter(user=user, is_default=True), is_default=False)
    logged_update(TeamMembership.objects.filter(user=user, team=team), is_default=True)


def team_members(team: Team) -> QuerySet[Any]:
    return get_user_model().objects.filter(team_memberships__team=team, is_active=True)
