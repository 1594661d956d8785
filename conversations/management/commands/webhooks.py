"""`manage.py webhooks add|list|remove`: manage webhook endpoints from the command line
(docs/webhooks.md). Errors print one clear line and exit non-zero (CommandError)."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations.models import WebhookEndpoint
from conversations.services import webhooks
from conversations.services.errors import InvalidInput


class Command(BaseCommand):
    help = "Add, list or remove webhook endpoints."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Add an endpoint.")
        add.add_argument("url")
        add.add_argument("--secret", required=True,
                         help="the signing secret; '-' reads it from standard input (kept out "
                              "of the shell's history and the process list)")
        add.add_argument("--event", action="append", required=True, dest="events",
                         metavar="EVENT", help=f"one of {', '.join(webhooks.EVENTS)}; repeatable")
        add.add_argument("--description", default="")
        add.add_argument("--inactive", action="store_true")
        sub.add_parser("list", help="List endpoints (never their secrets).")
        remove = sub.add_parser("remove", help="Remove an endpoint and its deliveries.")
        remove.add_argument("id")

    def handle(self, *args: Any, **opts: Any) -> None:
        getattr(self, f"do_{opts['action']}")(opts)

    def do_add(self, opts: dict[str, Any]) -> None:
        unknown = [e for e in opts["events"] if e not in webhooks.EVENTS]
        if unknown:
            raise CommandError(f"unknown event {unknown[0]!r}: choose from "
                               f"{', '.join(webhooks.EVENTS)}")
        secret = opts["secret"]
        if secret == "-":  # noqa: S105 - "-" means: read it from standard input
            secret = sys.stdin.readline().strip()
        try:
            endpoint = webhooks.create_endpoint(
                opts["url"], secret, opts["events"], description=opts["description"],
                active=not opts["inactive"])
        except InvalidInput as exc:
            raise CommandError(f"{exc.field or 'endpoint'}: {exc.message}") from None
        self.stdout.write(f"added webhook endpoint {endpoint.pk} ({endpoint.url}: "
                          f"{', '.join(endpoint.events)})")

    def do_list(self, opts: dict[str, Any]) -> None:
        for e in WebhookEndpoint.objects.order_by("pk"):
            self.stdout.write(f"{e.pk}\t{e.url}\t{','.join(e.events)}\t"
                              f"{'active' if e.active else 'inactive'}\t{e.description}")

    def do_remove(self, opts: dict[str, Any]) -> None:
        raw = opts["id"]
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
            raise CommandError(f"bad id {raw!r}: give an endpoint's number (webhooks list)")
        endpoint = WebhookEndpoint.objects.filter(pk=int(raw)).first()
        if endpoint is None:
            raise CommandError(f"no webhook endpoint {raw}")
        endpoint.delete()
        self.stdout.write(f"removed webhook endpoint {raw}")
