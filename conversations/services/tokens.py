"""Personal API tokens: create, list, revoke, and authenticate an `Authorization: Bearer` header.

A token is `cst_` followed by `secrets.token_urlsafe(32)` (256 random bits). Only its SHA-256 is
stored (`ApiToken.token_hash`): a fast hash is enough for a secret that cannot be guessed, and a
lookup by hash (an index, not a string comparison of the secret) leaks nothing a timing
attacker could use. The token itself is returned once, by
`create_token`, and is never logged.

A token acts as its user (team access, the reviewer group, staff), limited by its scopes:
`read` (GET on the API), `write` (every other method on conversations, messages, feedback,
attachments and canned replies) and `review` (scores, review queues, the export, any method).
`token_created` and `token_revoked` are sent on commit with `token` and `actor` (None for a
management command) for whoever keeps an audit trail.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.dispatch import Signal
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from conversations.models import ApiToken
from conversations.services.errors import InvalidInput, MissingScope, NotFound, Unauthenticated
from conversations.services.validation import check_text

token_created = Signal()  # kwargs: token (ApiToken), actor (user or None)
token_revoked = Signal()  # kwargs: token (ApiToken), actor (user or None)

PREFIX = "cst_"
# secrets.token_urlsafe(32): 32 random bytes, 43 URL-safe base64 characters.
TOKEN_BYTES = 32
TOKEN_RE = re.compile(r"cst_[A-Za-z0-9_-]{43}")
# "cst_" and the secret's first 6 characters, shown in lists.
DISPLAY_CHARS = len(PREFIX) + 6
# An Authorization header longer than this is refused before any parsing: "Bearer " and a
# token are 54 characters; 512 leaves room for spacing and is still cheap to look at.
HEADER_MAX_CHARS = 512

SCOPES = ("read", "write", "review")
SCOPE_LABELS = {
    "read": gettext_lazy("Read (GET on the API)"),
    "write": gettext_lazy("Write (conversations, messages, feedback, attachments, canned replies)"),
    "review": gettext_lazy("Review (scores, review queues, export)"),
}
NAME_MAX_CHARS = 100
# 50 live tokens per user: more is a leak waiting to happen, not a workflow.
MAX_ACTIVE_PER_USER = 50
# Ten years: the longest expiry accepted (longer is "never"); keeps dates far from overflow.
MAX_LIFETIME = timedelta(days=3650)
# last_used_at is written at most once a minute per token, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class TokenAuth:
    user: Any
    token: ApiToken


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def clean_name(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput("invalid", _("The name must be text."), field="name")
    value = " ".join(value.split())
    try:
        check_text(value)
    except ValueError:
        raise InvalidInput("invalid", _("The name must be plain text."), field="name") from None
    if not value:
        raise InvalidInput("invalid", _("Give the token a name."), field="name")
    if len(value) > NAME_MAX_CHARS:
        raise InvalidInput("invalid", _("The name must be at most %(max)s characters.")
                           % {"max": NAME_MAX_CHARS}, field="name")
    return value


def clean_scopes(values: Any) -> list[str]:
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise InvalidInput("invalid", _("Scopes must be a list of names."), field="scopes")
    unknown = sorted(set(values) - set(SCOPES))
    if unknown:
        raise InvalidInput("invalid", _("Unknown scope(s): %(scopes)s. Choose from %(known)s.")
                           % {"scopes": ", ".join(s[:20] for s in unknown[:5]),
                              "known": ", ".join(SCOPES)}, field="scopes")
    if not values:
        raise InvalidInput("invalid", _("Choose at least one scope."), field="scopes")
    return [s for s in SCOPES if s in values]  # canonical order, no repeats


def clean_lifetime(value: timedelta | None) -> timedelta | None:
    if value is None:
        return None
    if value <= timedelta(0):
        raise InvalidInput("invalid", _("The expiry must be in the future."), field="expires")
    if value > MAX_LIFETIME:
        raise InvalidInput("invalid", _("The expiry must be at most %(days)s days; choose "
                                        "“never” for a token that does not expire.")
                           % {"days": MAX_LIFETIME.days}, field="expires")
    return value


def create_token(user: Any, *, name: Any, scopes: Any, lifetime: timedelta | None,
                 actor: Any = None) -> tuple[ApiToken, str]:
    """A new token for `user`: the row and the token itself, which exists nowhere else."""
    name = clean_name(name)
    scopes = clean_scopes(scopes)
    lifetime = clean_lifetime(lifetime)
    if not user.is_active:
        raise InvalidInput("invalid", _("This user is inactive."), field="user")
    secret = PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    now = timezone.now()
    with transaction.atomic():
        if ApiToken.objects.filter(user=user).active().count() >= MAX_ACTIVE_PER_USER:
            raise InvalidInput("invalid", _("You have %(max)s active tokens: revoke one first.")
                               % {"max": MAX_ACTIVE_PER_USER}, field="name")
        token = ApiToken.objects.create(
            user=user, name=name, scopes=scopes, prefix=secret[:DISPLAY_CHARS],
            token_hash=hash_token(secret), created_at=now,
            expires_at=now + lifetime if lifetime else None)
        transaction.on_commit(lambda: token_created.send(
            sender=ApiToken, token=token, actor=actor))
    return token, secret


def user_tokens(user: Any) -> list[ApiToken]:
    """The user's tokens, newest first, revoked ones included (so a revocation is visible)."""
    return list(ApiToken.objects.filter(user=user))


def revoke_token(token: ApiToken, actor: Any = None) -> bool:
    """Revoke; False if it already was (idempotent, one signal per revocation)."""
    with transaction.atomic():
        changed = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now())
        token.refresh_from_db(fields=["revoked_at"])
        if changed:
            transaction.on_commit(lambda: token_revoked.send(
                sender=ApiToken, token=token, actor=actor))
    return bool(changed)


def revoke_user_token(user: Any, token_id: Any) -> ApiToken:
    """The owner revokes one of their tokens; anyone else's (or no such id) is NotFound."""
    token = None
    if isinstance(token_id, int) or (isinstance(token_id, str) and token_id.isascii()
                                     and token_id.isdigit() and len(token_id) <= 18):
        token = ApiToken.objects.filter(user=user, pk=int(token_id)).first()
    if token is None:
        raise NotFound(_("No such token."))
    revoke_token(token, actor=user)
    return token


def bearer_token(header: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, "" for a Bearer header without a
    usable token, None for any other scheme (a proxy's Basic auth is not ours to judge)."""
    scheme, _sep, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return rest.strip()


def authenticate(header: str) -> TokenAuth:
    """The user and token of a Bearer `Authorization` header, or Unauthenticated."""
    if len(header) > HEADER_MAX_CHARS:
        raise Unauthenticated(_("The Authorization header is too long."))
    value = bearer_token(header)
    if not value or not TOKEN_RE.fullmatch(value):
        raise Unauthenticated(_("The bearer token is malformed."))
    token = (ApiToken.objects.select_related("user")
             .filter(token_hash=hash_token(value)).first())
    now = timezone.now()
    if token is None:
        raise Unauthenticated(_("The bearer token is not valid."))
    if token.revoked_at is not None:
        raise Unauthenticated(_("The bearer token has been revoked."))
    if token.expires_at is not None and token.expires_at <= now:
        raise Unauthenticated(_("The bearer token has expired."))
    if not token.user.is_active:
        raise Unauthenticated(_("The bearer token's user is inactive."))
    _touch(token, now)
    return TokenAuth(token.user, token)


def _touch(token: ApiToken, now: Any) -> None:
    """last_used_at, at most once a minute: the conditional UPDATE writes nothing otherwise,
    whichever process serves the request."""
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiToken.objects.filter(pk=token.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ).update(last_used_at=now)
    token.last_used_at = now


def required_scope(method: str, *, review: bool = False) -> str:
    """The scope a request needs: `review` on the review endpoints, else `read` for GET (and
    HEAD, OPTIONS), `write` for the rest."""
    if review:
        return "review"
    return "read" if method in ("GET", "HEAD", "OPTIONS") else "write"


def require_scope(token: ApiToken, scope: str) -> None:
    if scope not in token.scopes:
        raise MissingScope(_("This API token lacks the “%(scope)s” scope.") % {"scope": scope},
                           scope)


def parse_lifetime(text: str) -> timedelta | None:
    """`30d`, `12h` or `never` (the command line's --expires) as a lifetime; InvalidInput else."""
    text = text.strip().lower()
    if text == "never":
        return None
    match = re.fullmatch(r"([0-9]{1,6})([dh])", text)
    if match is None:
        raise InvalidInput("invalid", _("Give the expiry as a number of days or hours (30d, "
                                        "12h) or “never”."), field="expires")
    number = int(match.group(1))
    return clean_lifetime(timedelta(days=number) if match.group(2) == "d"
                          else timedelta(hours=number))
