"""`manage.py tokens create|list|revoke`: personal API tokens from the command line
(docs/api.md).

    manage.py tokens create alice --scope read --scope write --expires 90d --name ci
    manage.py tokens list [alice]
    manage.py tokens revoke 12

`create` prints the token alone on its last line (for `| tail -n 1`); it is shown this once and
stored only as a hash. Errors print one clear line and exit non-zero (CommandError)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations import services
from conversations.models import ApiToken
from conversations.services import tokens

# Longer than any username Django allows (150): refused before it reaches a query.
USERNAME_MAX_CHARS = 150


def _user(username: str) -> Any:
    model = get_user_model()
    if len(username) > USERNAME_MAX_CHARS or "\x00" in username:
        raise CommandError("no such user")
    user = model.objects.filter(**{model.USERNAME_FIELD: username}).first()
    if user is None:
        raise CommandError(f"no user named {username!r}")
    return user


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


class Command(BaseCommand):
    help = "Create, list or revoke personal API tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a token; prints it on the last line.")
        create.add_argument("username")
        create.add_argument("--scope", action="append", default=[], metavar="SCOPE",
                            help=f"one of {', '.join(tokens.SCOPES)}; repeat for several")
        create.add_argument("--expires", default="90d",
                            help="30d, 12h, ... or never (default 90d)")
        create.add_argument("--name", default="command line", help="a name to recognise it")
        listing = sub.add_parser("list", help="List tokens (all, or one user's).")
        listing.add_argument("username", nargs="?")
        revoke = sub.add_parser("revoke", help="Revoke a token by its id (see `list`).")
        revoke.add_argument("id")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, f"_{options['action']}")(options)
        except services.InvalidInput as exc:
            raise CommandError(exc.message) from None

    def _create(self, options: dict[str, Any]) -> None:
        user = _user(options["username"])
        if not options["scope"]:
            raise CommandError(f"give at least one --scope ({', '.join(tokens.SCOPES)})")
        lifetime = tokens.parse_lifetime(options["expires"])
        token, secret = services.create_token(user, name=options["name"],
                                              scopes=options["scope"], lifetime=lifetime)
        self.stdout.write(
            f"created token {token.pk} ({token.prefix}…) for {user.get_username()}: "
            f"scopes {' '.join(token.scopes)}, expires {_when(token.expires_at)} UTC. "
            "Copy it now: it is not shown again.")
        self.stdout.write(secret)

    def _list(self, options: dict[str, Any]) -> None:
        rows = ApiToken.objects.select_related("user")
        if options["username"]:
            rows = rows.filter(user=_user(options["username"]))
        for t in rows:
            state = "revoked" if t.revoked_at else ("active" if t.is_active else "expired")
            self.stdout.write(
                f"{t.pk}\t{t.user.get_username()}\t{t.name}\t{t.prefix}…\t{','.join(t.scopes)}"
                f"\tcreated {_when(t.created_at)}\texpires {_when(t.expires_at)}"
                f"\tlast used {_when(t.last_used_at)}\t{state}")

    def _revoke(self, options: dict[str, Any]) -> None:
        raw = options["id"]
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
            raise CommandError(f"{raw[:40]!r} is not a token id (see `manage.py tokens list`)")
        token = ApiToken.objects.filter(pk=int(raw)).first()
        if token is None:
            raise CommandError(f"no token with id {raw}")
        if services.revoke_token(token, actor=None):
            self.stdout.write(f"revoked token {token.pk} ({token.prefix}…)")
        else:
            self.stdout.write(f"token {token.pk} was already revoked")
