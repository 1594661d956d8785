"""`manage.py teams add|members|list`: manage teams from the command line (docs/teams.md).

    manage.py teams add billing --name Billing
    manage.py teams members billing --add alice --lead
    manage.py teams members billing --remove bob
    manage.py teams list

Errors print one clear line and exit non-zero (CommandError)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations.models import Team, TeamMembership
from conversations.services import teams


class Command(BaseCommand):
    help = "Add teams, manage their members, list them."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Add a team.")
        add.add_argument("slug")
        add.add_argument("--name", required=True)
        members = sub.add_parser("members", help="Add or remove a team's members.")
        members.add_argument("slug")
        group = members.add_mutually_exclusive_group(required=True)
        group.add_argument("--add", metavar="USERNAME")
        group.add_argument("--remove", metavar="USERNAME")
        members.add_argument("--lead", action="store_true", help="with --add: as the team's lead")
        sub.add_parser("list", help="List teams and their members.")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['action']}")(options)

    def _add(self, options: dict[str, Any]) -> None:
        slug, name = options["slug"], options["name"].strip()
        if Team.objects.filter(slug=slug).exists():
            raise CommandError(f"team {slug!r} already exists")
        if not name:
            raise CommandError("--name must not be empty")
        try:
            team = teams.create_team(slug, name)
        except ValidationError as exc:
            raise CommandError("; ".join(
                f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items()
            )) from None
        self.stdout.write(f"added team {team.slug} ({team.name})")

    def _members(self, options: dict[str, Any]) -> None:
        team = Team.objects.filter(slug=options["slug"]).first()
        if team is None:
            raise CommandError(f"no team {options['slug']!r}")
        username = options["add"] or options["remove"]
        user = get_user_model().objects.filter(
            **{get_user_model().USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        if options["add"]:
            membership = teams.add_member(team, user, lead=options["lead"])
            self.stdout.write(f"{username} is a {membership.role} of {team.slug}")
        else:
            if options["lead"]:
                raise CommandError("--lead goes with --add")
            if not teams.remove_member(team, user):
                raise CommandError(f"{username} is not a member of {team.slug}")
            self.stdout.write(f"removed {username} from {team.slug}")

    def _list(self, options: dict[str, Any]) -> None:
        found = False
        for team in Team.objects.order_by("slug"):
            found = True
            members = TeamMembership.objects.filter(team=team).select_related("user").order_by(
                "user__username")
            names = ", ".join(
                f"{m.user.get_username()}{' (lead)' if m.role == 'lead' else ''}"
                for m in members) or "no members"
            self.stdout.write(f"{team.slug}\t{team.name}\t{names}")
        if not found:
            self.stdout.write("no teams")
