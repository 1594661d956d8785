"""Single sign-on identities and the provider-group → role map (docs/sso.md).

`OIDC_GROUP_MAP` names which provider groups give which chatsite roles:
`support-billing=team:billing,qa=reviewer,it-admins=staff` (also `team:SLUG:lead`). At every
single sign-on login the roles the map *manages* are set to exactly what the user's groups say,
so removing someone from a group in the provider removes the role at their next login; roles
the map never mentions (a team it does not name, staff when it names neither staff nor
reviewer) are left as they are. The OpenID Connect protocol itself lives in `chatsite/oidc.py`;
this module only decides who the user is and what they may do.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.utils import timezone

from conversations.models import ExternalIdentity, Team, TeamMembership
from conversations.services import teams
from conversations.services.scoring import REVIEWER_GROUP

logger = logging.getLogger(__name__)

# A group name as providers send it: Keycloak's full paths ("/support/billing"), Entra ID's
# object ids, Google's addresses. 255 bounds one entry; no provider sends longer names.
MAX_GROUP_CHARS = 255
# Team slugs are SlugFields of 64 characters (models.Team).
SLUG_RE = re.compile(r"[-a-zA-Z0-9_]{1,64}")
# More groups than this in one claim are a broken or hostile token, not a person: Entra ID
# itself stops listing groups past 200 ("groups overage") and sends a link instead.
MAX_CLAIM_GROUPS = 1000
# Django's username field: 150 characters of letters, digits and @.+-_ (UnicodeUsernameValidator).
USERNAME_MAX = 150
USERNAME_CHARS = re.compile(r"[^\w.@+-]")


class GroupMapError(ValueError):
    """OIDC_GROUP_MAP cannot be read; the message names the entry."""


@dataclass(frozen=True)
class Grant:
    """One role a group gives: `staff`, `reviewer`, or a team (member or lead)."""

    kind: str  # "staff" | "reviewer" | "team"
    team: str = ""
    lead: bool = False


@dataclass(frozen=True)
class GroupMap:
    entries: tuple[tuple[str, Grant], ...] = ()

    @property
    def manages_teams(self) -> frozenset[str]:
        return frozenset(g.team for _, g in self.entries if g.kind == "team")

    @property
    def manages_reviewer(self) -> bool:
        return any(g.kind == "reviewer" for _, g in self.entries)

    @property
    def manages_staff(self) -> bool:
        # The reviewer role needs admin access (services.scoring.is_reviewer), so a map that
        # grants reviewer also decides the staff flag.
        return any(g.kind in ("staff", "reviewer") for _, g in self.entries)

    def grants_for(self, groups: set[str]) -> list[Grant]:
        return [grant for group, grant in self.entries if group in groups]


def _describe(entry: str) -> str:
    return repr(entry[:80] + ("…" if len(entry) > 80 else ""))


def parse_group_map(text: str) -> GroupMap:
    """`group=target` entries separated by commas; a target is `staff`, `reviewer`,
    `team:SLUG` or `team:SLUG:lead` (`team:SLUG:member` is the same as `team:SLUG`). Blank
    entries are ignored; anything else that is not one of these raises GroupMapError."""
    if not isinstance(text, str):
        raise GroupMapError("OIDC_GROUP_MAP must be text.")
    entries: list[tuple[str, Grant]] = []
    for position, raw in enumerate(text.split(","), start=1):
        entry = raw.strip()
        if not entry:
            continue
        where = f"OIDC_GROUP_MAP entry {position} ({_describe(entry)})"
        if any(unicodedata.category(ch) == "Cc" for ch in entry):
            raise GroupMapError(f"{where} contains a control character.")
        group, sep, target = entry.rpartition("=")
        group, target = group.strip(), target.strip()
        if not sep:
            raise GroupMapError(f"{where} is not GROUP=ROLE.")
        if not group:
            raise GroupMapError(f"{where} has no group before '='.")
        if len(group) > MAX_GROUP_CHARS:
            raise GroupMapError(f"{where}: a group name is at most {MAX_GROUP_CHARS} characters.")
        entries.append((group, _parse_target(target, where)))
    return GroupMap(tuple(entries))


def _parse_target(target: str, where: str) -> Grant:
    if target in ("staff", "reviewer"):
        return Grant(target)
    parts = target.split(":")
    if parts[0] == "team" and len(parts) in (2, 3):
        slug = parts[1]
        if not SLUG_RE.fullmatch(slug):
            raise GroupMapError(f"{where}: {slug!r} is not a team slug (letters, digits, - and "
                                "_, at most 64).")
        if len(parts) == 2 or parts[2] == "member":
            return Grant("team", slug)
        if parts[2] == "lead":
            return Grant("team", slug, lead=True)
    raise GroupMapError(f"{where}: the role must be staff, reviewer, team:SLUG or "
                        "team:SLUG:lead.")


def groups_from_claims(claims: dict[str, Any], claim: str) -> set[str]:
    """The user's groups from the claim named `claim`: a list of strings (a single string is
    one group). Anything else in it (numbers, objects, over-long names) is ignored, never an
    error: a provider's odd claim must not lock people out of roles the rest still gives."""
    value = claims.get(claim) if claim else None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return set()
    return {g for g in value[:MAX_CLAIM_GROUPS]
            if isinstance(g, str) and g and len(g) <= MAX_GROUP_CHARS}


@dataclass
class RoleChanges:
    """What one login changed, for the log line and the tests."""

    joined: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    reviewer: bool | None = None  # True: added, False: removed, None: unchanged
    staff: bool | None = None
    missing_teams: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.joined or self.left or self.reviewer is not None
                    or self.staff is not None)


# Slugs already warned about in this process: a missing team is logged once, not per login.
_warned_missing: set[str] = set()


@transaction.atomic
def apply_group_map(user: Any, groups: set[str], group_map: GroupMap) -> RoleChanges:
    """Set the roles `group_map` manages to exactly what `groups` grant. A team slug of the map
    that does not exist is skipped (logged once per process): teams are made by people
    (`manage.py teams add`), never by a provider's group name."""
    changes = RoleChanges()
    grants = group_map.grants_for(groups)

    wanted: dict[str, bool] = {}  # slug -> lead
    for grant in grants:
        if grant.kind == "team":
            wanted[grant.team] = wanted.get(grant.team, False) or grant.lead
    managed = group_map.manages_teams
    found = {t.slug: t for t in Team.objects.filter(slug__in=managed)}
    for slug in sorted(managed - found.keys()):
        changes.missing_teams.append(slug)
        if slug not in _warned_missing:
            _warned_missing.add(slug)
            logger.warning("OIDC_GROUP_MAP names team %r, which does not exist; skipped", slug)
    current = {m.team.slug: m for m in TeamMembership.objects.filter(
        user=user, team__slug__in=found.keys()).select_related("team")}
    for slug, team in sorted(found.items()):
        if slug in wanted:
            lead = wanted[slug]
            membership = current.get(slug)
            role = TeamMembership.Role.LEAD if lead else TeamMembership.Role.MEMBER
            if membership is None or membership.role != role:
                teams.add_member(team, user, lead=lead)
                changes.joined.append(f"{slug}:{role}")
        elif slug in current:
            teams.remove_member(team, user)
            changes.left.append(slug)

    update: list[str] = []
    if group_map.manages_reviewer:
        want = any(g.kind == "reviewer" for g in grants)
        group = Group.objects.filter(name=REVIEWER_GROUP).first()
        if group is None:
            logger.warning("the %r group does not exist (migration 0003); reviewer role skipped",
                           REVIEWER_GROUP)
        else:
            has = user.groups.filter(pk=group.pk).exists()
            if want and not has:
                user.groups.add(group)
                changes.reviewer = True
            elif has and not want:
                user.groups.remove(group)
                changes.reviewer = False
    if group_map.manages_staff:
        want_staff = any(g.kind in ("staff", "reviewer") for g in grants)
        # A superuser is never demoted by a provider: it is the break-glass account.
        if want_staff != user.is_staff and not (user.is_superuser and not want_staff):
            user.is_staff = want_staff
            changes.staff = want_staff
            update.append("is_staff")
    if update:
        user.save(update_fields=update)
    return changes


def _username_base(claims: dict[str, Any]) -> str:
    for key in ("preferred_username", "email", "name", "sub"):
        value = claims.get(key)
        if isinstance(value, str):
            cleaned = USERNAME_CHARS.sub("", unicodedata.normalize("NFKC", value))
            if cleaned:
                return cleaned[:USERNAME_MAX]
    return "user"


def _unique_username(base: str) -> str:
    users = get_user_model().objects
    if not users.filter(username__iexact=base).exists():
        return base
    for n in range(2, 10_000):
        suffix = f"-{n}"
        candidate = base[:USERNAME_MAX - len(suffix)] + suffix
        if not users.filter(username__iexact=candidate).exists():
            return candidate
    raise IntegrityError("no free username")


def _profile(claims: dict[str, Any]) -> dict[str, str]:
    """E-mail and names from the claims, cut to Django's field sizes; odd values are dropped."""
    out: dict[str, str] = {}
    for claim, attr, size in (("email", "email", 254), ("given_name", "first_name", 150),
                              ("family_name", "last_name", 150)):
        value = claims.get(claim)
        if isinstance(value, str) and not any(unicodedata.category(c) == "Cc" for c in value):
            out[attr] = value.strip()[:size]
    return out


def user_for_identity(issuer: str, subject: str, claims: dict[str, Any]) -> Any:
    """The user linked to (`issuer`, `subject`), created on first login with a username from
    `preferred_username` made unique (alice, alice-2, …). The profile (e-mail, names) follows
    the provider at every login; the username does not change once given."""
    profile = _profile(claims)
    with transaction.atomic():
        identity = (ExternalIdentity.objects.select_for_update().select_related("user")
                    .filter(issuer=issuer, subject=subject).first())
        if identity is not None:
            user = identity.user
            identity.last_login_at = timezone.now()
            identity.save(update_fields=["last_login_at"])
            changed = [k for k, v in profile.items() if getattr(user, k) != v]
            for key in changed:
                setattr(user, key, profile[key])
            if changed:
                user.save(update_fields=changed)
            return user
        user = get_user_model().objects.create_user(
            _unique_username(_username_base(claims)), **profile)
        user.set_unusable_password()
        user.save(update_fields=["password"])
        ExternalIdentity.objects.create(user=user, issuer=issuer, subject=subject)
        logger.info("single sign-on: created user %s for a new identity of %s",
                    user.username, issuer)
        return user
