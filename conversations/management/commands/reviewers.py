"""`manage.py reviewers add|remove|list`: give people the review desk or take it away.

A reviewer is a member of the `reviewer` group (created by migration 0003) with `is_staff` set,
which the admin needs to let them in. Errors print one clear line and exit non-zero."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

GROUP = "reviewer"


def reviewer_group() -> Group:
    group = Group.objects.filter(name=GROUP).first()
    if group is None:
        raise CommandError(f"the {GROUP!r} group does not exist: run `manage.py migrate` first")
    return group


def get_user(username: str) -> Any:
    model = get_user_model()
    user = model.objects.filter(**{model.USERNAME_FIELD: username}).first()
    if user is None:
        raise CommandError(f"no user named {username!r}")
    return user


class Command(BaseCommand):
    help = "Add, remove or list reviewers (the reviewer group, with admin access)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Make a user a reviewer (sets is_staff).")
        add.add_argument("username")
        remove = sub.add_parser("remove", help="Take the reviewer role away.")
        remove.add_argument("username")
        sub.add_parser("list", help="List reviewers.")

    def handle(self, *args: Any, **opts: Any) -> None:
        getattr(self, f"do_{opts['action']}")(opts)

    def do_add(self, opts: dict[str, Any]) -> None:
        group = reviewer_group()
        user = get_user(opts["username"])
        if not user.is_active:
            raise CommandError(f"user {user.get_username()!r} is inactive; activate them first")
        if user.groups.filter(pk=group.pk).exists() and user.is_staff:
            # Idempotent, so provisioning scripts can run it again.
            self.stdout.write(f"{user.get_username()} is already a reviewer")
            return
        with transaction.atomic():
            user.groups.add(group)
            if not user.is_staff:
                user.is_staff = True
                user.save(update_fields=["is_staff"])
        self.stdout.write(f"{user.get_username()} is now a reviewer")

    def do_remove(self, opts: dict[str, Any]) -> None:
        group = reviewer_group()
        user = get_user(opts["username"])
        if not user.groups.filter(pk=group.pk).exists():
            raise CommandError(f"{user.get_username()!r} is not a reviewer")
        with transaction.atomic():
            user.groups.remove(group)
            # Staff access stays when something else needs it: a superuser, another group or
            # permissions given to the user directly.
            keeps_staff = (
                user.is_superuser
                or user.groups.exists()
                or user.user_permissions.exists()
            )
            if user.is_staff and not keeps_staff:
                user.is_staff = False
                user.save(update_fields=["is_staff"])
        suffix = " (keeps admin access: other roles)" if user.is_staff else ""
        self.stdout.write(f"{user.get_username()} is no longer a reviewer{suffix}")

    def do_list(self, opts: dict[str, Any]) -> None:
        group = reviewer_group()
        users = group.user_set.order_by(get_user_model().USERNAME_FIELD)
        if not users:
            self.stdout.write("no reviewers")
            return
        for user in users:
            flags = [
                flag for flag, on in (
                    ("no admin access: is_staff is off", not user.is_staff),
                    ("inactive", not user.is_active),
                ) if on
            ]
            self.stdout.write(user.get_username() + (f"\t{', '.join(flags)}" if flags else ""))
