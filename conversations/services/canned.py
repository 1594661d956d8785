"""Canned replies (docs/teams.md): which ones a user may pick, who may change them, and the
small restricted renderer that fills their variables.

The renderer is deliberately not the Django template engine: a reply's body is written by
people other than the one sending it, so it gets a fixed whitelist of variables, no attribute
access, no filters, no tags, one pass (a value holding `{{…}}` is inserted as text, never
expanded again). A variable it cannot fill is left in place and reported in `missing`; the
composer refuses to send while one remains (static/chat/canned.js).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from conversations.models import CannedReply, Conversation, Team, TeamMembership
from conversations.services import teams
from conversations.services.conversations import get_conversation
from conversations.services.errors import InvalidInput, NotFound
from conversations.services.validation import (
    CONTENT_MAX_CHARS,
    InvalidJSON,
    check_text,
    format_count,
)

# The model's column sizes (CannedReply.title / shortcut / language).
TITLE_MAX_CHARS = 120
SHORTCUT_MAX_CHARS = 40
LANGUAGE_MAX_CHARS = 16
# 200 characters: longer than any shortcut or title; the picker sends what follows the "/".
QUERY_MAX_CHARS = 200
# 50 rows: a picker shows a handful; a search narrows the rest.
LIST_LIMIT = 50

SHORTCUT_RE = re.compile(r"[-a-zA-Z0-9_]+")
LANGUAGE_RE = re.compile(r"[a-zA-Z]{2,3}(?:-[a-zA-Z0-9]{1,8})*")


# The renderer ----------------------------------------------------------------------------------

# `{{ name }}`: anything but braces between the doubled braces (whitespace allowed around the
# name); whatever is inside is either a whitelisted variable or reported missing. 200
# characters bound the inside, so a hostile body cannot make the pattern scan far.
VARIABLE_RE = re.compile(r"\{\{([^{}]{0,200})\}\}")
# Names of the fixed variables; `customer.metadata.<key>[.<key>…]` is the only open-ended one.
FIXED_VARIABLES = (
    "customer.external_user_id",
    "user.first_name",
    "user.last_name",
    "user.username",
    "agent.name",
)
METADATA_PREFIX = "customer.metadata."
# A metadata path's key: anything but whitespace, dots and braces (keys may be non-ASCII).
METADATA_KEY_RE = re.compile(r"[^\s.{}]+")
# 8 levels: metadata nests a handful (and at most 32, services.validation.MAX_DEPTH).
METADATA_MAX_KEYS = 8


@dataclass(frozen=True)
class Part:
    """A piece of a rendered body: literal `text`, or a variable `name` with its `value`
    (None when it could not be filled; `text` is then the placeholder left in place)."""

    text: str
    name: str | None = None
    value: str | None = None

    @property
    def missing(self) -> bool:
        return self.name is not None and self.value is None


@dataclass(frozen=True)
class Rendered:
    text: str
    missing: list[str] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)


def placeholder(name: str) -> str:
    """How a variable left unfilled reads in the text (the composer looks for exactly this)."""
    return "{{" + name + "}}"


def _as_text(value: Any) -> str | None:
    """A value as plain text: strings as they are, anything else as JSON; nothing (None, "")
    is None, so the variable is reported missing rather than rendered empty."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):  # not JSON (a context built by hand): not rendered
        return None


def _lookup(name: str, context: dict[str, Any]) -> str | None:
    """The whitelisted variable `name` in the plain-dict `context` (see `context_for`); no
    getattr anywhere, so nothing but these paths can be reached."""
    if name in FIXED_VARIABLES:
        section, key = name.split(".")
        scope = context.get(section)
        return _as_text(scope.get(key)) if isinstance(scope, dict) else None
    if not name.startswith(METADATA_PREFIX):
        return None
    keys = name[len(METADATA_PREFIX):].split(".")
    if len(keys) > METADATA_MAX_KEYS or not all(METADATA_KEY_RE.fullmatch(k) for k in keys):
        return None
    customer = context.get("customer")
    value: Any = customer.get("metadata") if isinstance(customer, dict) else None
    for key in keys:
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isascii() and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return _as_text(value)


def render(body: str, context: dict[str, Any]) -> Rendered:
    """Fill `body`'s variables from `context` in one pass. Never raises on any text."""
    parts: list[Part] = []
    missing: list[str] = []
    position = 0
    for match in VARIABLE_RE.finditer(body):
        if match.start() > position:
            parts.append(Part(body[position:match.start()]))
        name = match.group(1).strip()
        value = _lookup(name, context)
        if value is None:
            if name not in missing:
                missing.append(name)
            parts.append(Part(placeholder(name), name=name))
        else:
            parts.append(Part(value, name=name, value=value))
        position = match.end()
    if position < len(body):
        parts.append(Part(body[position:]))
    return Rendered("".join(p.text for p in parts), missing, parts)


def context_for(user: Any, conversation: Conversation | None = None) -> dict[str, Any]:
    """The values a reply may use: the conversation's customer and agent, and the user
    sending it. Plain data only (the renderer never touches a model)."""
    context: dict[str, Any] = {
        "user": {
            "first_name": getattr(user, "first_name", "") or "",
            "last_name": getattr(user, "last_name", "") or "",
            "username": user.get_username() if hasattr(user, "get_username") else "",
        },
        "customer": {"external_user_id": "", "metadata": {}},
        "agent": {"name": ""},
    }
    if conversation is not None:
        context["customer"] = {
            "external_user_id": conversation.external_user_id,
            "metadata": conversation.metadata if isinstance(conversation.metadata, dict) else {},
        }
        context["agent"] = {"name": conversation.agent.name}
    return context


# Which replies a user sees ---------------------------------------------------------------------


def visible_to(user: Any) -> QuerySet[CannedReply]:
    """Personal replies of the user's, their teams' replies and everyone's."""
    if not getattr(user, "is_authenticated", False):
        return CannedReply.objects.none()
    team_ids = teams.user_teams(user).values("pk")
    return CannedReply.objects.filter(
        Q(scope=CannedReply.Scope.PERSONAL, owner=user)
        | Q(scope=CannedReply.Scope.TEAM, team__in=team_ids)
        | Q(scope=CannedReply.Scope.EVERYONE)
    )


def clean_query(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput("invalid", _("q must be a string."), field="q")
    if len(value) > QUERY_MAX_CHARS:
        raise InvalidInput(
            "invalid",
            _("q must be at most %(max)s characters.") % {"max": format_count(QUERY_MAX_CHARS)},
            field="q")
    return value.strip()


def replies_for(user: Any, conversation: Conversation | None = None,
                q: str = "") -> list[CannedReply]:
    """What the picker offers `user`, best first: shortcuts starting with `q`, then other
    matches of shortcut or title, then of the body; within those, the conversation's team's
    replies first, then the active language's (then language-neutral ones, then the rest)."""
    q = clean_query(q)
    replies = visible_to(user).select_related("team")
    if q:
        replies = replies.filter(
            Q(shortcut__icontains=q) | Q(title__icontains=q) | Q(body__icontains=q)
        ).annotate(match_rank=Case(
            When(shortcut__istartswith=q, then=Value(0)),
            When(Q(shortcut__icontains=q) | Q(title__icontains=q), then=Value(1)),
            default=Value(2), output_field=IntegerField()))
    else:
        replies = replies.annotate(match_rank=Value(0, output_field=IntegerField()))
    team_id = conversation.team_id if conversation is not None else None
    replies = replies.annotate(team_rank=Case(
        When(scope=CannedReply.Scope.TEAM, team_id=team_id, then=Value(0)),
        default=Value(1), output_field=IntegerField()))
    language = (translation.get_language() or "").lower()
    primary = language.split("-")[0]
    replies = replies.annotate(language_rank=Case(
        When(language__iexact=language, then=Value(0)),
        When(Q(language__iexact=primary) | Q(language__istartswith=primary + "-"),
             then=Value(1)),
        When(language="", then=Value(2)),
        default=Value(3), output_field=IntegerField()))
    return list(replies.order_by("match_rank", "team_rank", "language_rank", "shortcut",
                                 "pk")[:LIST_LIMIT])


def reply_json(reply: CannedReply, context: dict[str, Any]) -> dict[str, Any]:
    rendered = render(reply.body, context)
    return {
        "id": reply.pk,
        "title": reply.title,
        "shortcut": reply.shortcut,
        "body": reply.body,
        "language": reply.language,
        "scope": reply.scope,
        "team": reply.team.slug if reply.team_id else None,
        "rendered": rendered.text,
        "missing": rendered.missing,
    }


def picker_replies(user: Any, conversation_id: Any = None, q: Any = "") -> list[dict[str, Any]]:
    """The API's list: `replies_for` rendered against the conversation (NotFound for one the
    user may not open) and the user."""
    conversation = None
    if conversation_id not in (None, ""):
        conversation = get_conversation(user, conversation_id)
    context = context_for(user, conversation)
    return [reply_json(r, context) for r in replies_for(user, conversation, q)]


# Who may change which replies --------------------------------------------------------------------


def can_manage(user: Any, *, scope: str, owner: Any = None, team: Team | None = None) -> bool:
    """Personal: its owner; team: that team's leads; everyone: staff."""
    if not getattr(user, "is_authenticated", False):
        return False
    if scope == CannedReply.Scope.PERSONAL:
        return owner is not None and owner.pk == user.pk
    if scope == CannedReply.Scope.TEAM:
        return teams.is_lead(user, team)
    if scope == CannedReply.Scope.EVERYONE:
        return bool(user.is_staff)
    return False


def led_teams(user: Any) -> QuerySet[Team]:
    if not getattr(user, "is_authenticated", False):
        return Team.objects.none()
    return Team.objects.filter(memberships__user=user,
                               memberships__role=TeamMembership.Role.LEAD).order_by("name")


def managed_replies(user: Any, *, team: Team | None = None) -> QuerySet[CannedReply]:
    """The replies a management page lists: a team's (for its leads) or the user's own."""
    if team is not None:
        if not teams.is_lead(user, team):
            raise NotFound(_("No such team."))
        return CannedReply.objects.filter(scope=CannedReply.Scope.TEAM, team=team)
    return CannedReply.objects.filter(scope=CannedReply.Scope.PERSONAL, owner=user)


def get_managed_reply(user: Any, reply_id: Any, *, team: Team | None = None) -> CannedReply:
    try:
        return managed_replies(user, team=team).get(pk=int(reply_id))
    except (CannedReply.DoesNotExist, TypeError, ValueError, OverflowError):
        raise NotFound(_("No such canned reply.")) from None


def _clean_text(value: Any, name: str, max_chars: int, *, required: bool = True) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidInput("invalid", _("%(field)s must be a string.") % {"field": name},
                           field=name)
    try:
        check_text(value)
    except InvalidJSON as exc:
        raise InvalidInput("invalid", exc.message, field=name) from None
    value = value.strip()
    if required and not value:
        raise InvalidInput("invalid", _("%(field)s is required.") % {"field": name}, field=name)
    if len(value) > max_chars:
        raise InvalidInput(
            "invalid", _("%(field)s must be at most %(max)s characters.")
            % {"field": name, "max": format_count(max_chars)}, field=name)
    return value


def clean_reply(data: dict[str, Any]) -> dict[str, str]:
    """title ≤ 120, shortcut a slug ≤ 40 (a leading "/" is dropped), body ≤ 32,000, language a
    language code or empty."""
    title = " ".join(_clean_text(data.get("title"), "title", TITLE_MAX_CHARS).split())
    shortcut = _clean_text(data.get("shortcut"), "shortcut", SHORTCUT_MAX_CHARS + 1)
    shortcut = shortcut.removeprefix("/").lower()
    if not SHORTCUT_RE.fullmatch(shortcut) or len(shortcut) > SHORTCUT_MAX_CHARS:
        raise InvalidInput(
            "invalid",
            _("The shortcut must be at most %(max)s letters, digits, hyphens or underscores.")
            % {"max": SHORTCUT_MAX_CHARS}, field="shortcut")
    body = _clean_text(data.get("body"), "body", CONTENT_MAX_CHARS)
    language = _clean_text(data.get("language"), "language", LANGUAGE_MAX_CHARS,
                           required=False).lower()
    if language and not LANGUAGE_RE.fullmatch(language):
        raise InvalidInput("invalid", _("The language must be a code such as “en” or “fr-ca”."),
                           field="language")
    return {"title": title, "shortcut": shortcut, "body": body, "language": language}


def check_unique(reply: CannedReply) -> None:
    """One shortcut per owner (personal), per team (team) or overall (everyone)."""
    same = CannedReply.objects.filter(scope=reply.scope, shortcut=reply.shortcut)
    if reply.scope == CannedReply.Scope.PERSONAL:
        same = same.filter(owner_id=reply.owner_id)
    elif reply.scope == CannedReply.Scope.TEAM:
        same = same.filter(team_id=reply.team_id)
    if reply.pk is not None:
        same = same.exclude(pk=reply.pk)
    if same.exists():
        raise InvalidInput("invalid", _("The shortcut “/%(shortcut)s” is already taken here.")
                           % {"shortcut": reply.shortcut}, field="shortcut")


def create_reply(user: Any, data: dict[str, Any], *, scope: str,
                 team: Team | None = None) -> CannedReply:
    if not can_manage(user, scope=scope, owner=user, team=team):
        raise InvalidInput("forbidden", _("You may not add replies here."), status=403)
    reply = CannedReply(
        scope=scope,
        owner=user if scope == CannedReply.Scope.PERSONAL else None,
        team=team if scope == CannedReply.Scope.TEAM else None,
        **clean_reply(data),
    )
    check_unique(reply)
    reply.save()
    return reply


def update_reply(user: Any, reply: CannedReply, data: dict[str, Any]) -> CannedReply:
    if not can_manage(user, scope=reply.scope, owner=reply.owner, team=reply.team):
        raise NotFound(_("No such canned reply."))
    for name, value in clean_reply(data).items():
        setattr(reply, name, value)
    check_unique(reply)
    reply.updated_at = timezone.now()
    reply.save()
    return reply


def delete_reply(user: Any, reply: CannedReply) -> None:
    if not can_manage(user, scope=reply.scope, owner=reply.owner, team=reply.team):
        raise NotFound(_("No such canned reply."))
    reply.delete()
