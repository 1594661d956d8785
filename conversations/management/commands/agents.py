"""`manage.py agents add|list|remove`: manage agents from the command line.

Errors print one clear line and exit non-zero (CommandError)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from conversations.models import Agent, env_var_name
from conversations.providers import provider_class, provider_kinds
from conversations.services import audit
from conversations.services.agents import agent_options_problems
from conversations.token_env import token_env_problem


def is_http_url(value: str) -> bool:
    """Loose on purpose: Django's URLValidator refuses single-label hosts such as
    `http://ollama:11434`, which is how self-hosted model servers are usually reached."""
    parsed = urlsplit(value)
    return (
        parsed.scheme in ("http", "https")
        and bool(parsed.hostname)
        and not any(c.isspace() for c in value)
    )


def parse_option(raw: str) -> tuple[str, Any]:
    key, sep, value = raw.partition("=")
    if not sep or not key.strip():
        raise CommandError(f"malformed option {raw!r}: use KEY=VALUE")
    try:
        parsed: Any = json.loads(value)  # numbers, booleans, JSON lists/objects
    except ValueError:
        parsed = value
    return key.strip(), parsed


class Command(BaseCommand):
    help = "Add, list or remove agents."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Add an agent.")
        add.add_argument("slug")
        add.add_argument("--provider", required=True, help=f"one of {', '.join(provider_kinds())}")
        add.add_argument("--base-url", default="")
        add.add_argument(
            "--token-env", default="",
            help="environment variable holding the token (must match AGENT_TOKEN_ENV_PATTERN)",
        )
        add.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
        add.add_argument("--name", default="")
        add.add_argument("--default", action="store_true")
        sub.add_parser("list", help="List agents.")
        remove = sub.add_parser("remove", help="Remove an agent.")
        remove.add_argument("slug")

    def handle(self, *args: Any, **opts: Any) -> None:
        getattr(self, f"do_{opts['action']}")(opts)

    def do_add(self, opts: dict[str, Any]) -> None:
        slug, kind = opts["slug"], opts["provider"]
        if kind not in provider_kinds():
            raise CommandError(
                f"unknown provider {kind!r}: choose one of {', '.join(provider_kinds())}"
            )
        cls = provider_class(kind)
        base_url = opts["base_url"] or cls.default_base_url
        if base_url:
            if not is_http_url(base_url):
                raise CommandError(f"bad URL {base_url!r}: use http(s)://host[:port][/path]")
        elif kind != "demo":
            raise CommandError(f"provider {kind!r} needs --base-url")
        if opts["token_env"]:
            try:
                env_var_name(opts["token_env"])
            except ValidationError:
                raise CommandError(
                    f"bad --token-env {opts['token_env']!r}: give the variable's name, "
                    "not the token"
                ) from None
            problem = token_env_problem(opts["token_env"])
            if problem:
                raise CommandError(f"bad --token-env {opts['token_env']!r}: {problem}")
        options = dict(parse_option(o) for o in opts["option"])
        problems = agent_options_problems(kind, options)  # prices included
        if problems:
            raise CommandError(f"agent {slug!r}: " + "; ".join(problems))
        if Agent.objects.filter(slug=slug).exists():
            raise CommandError(f"an agent with slug {slug!r} already exists")
        agent = Agent(
            slug=slug,
            name=opts["name"] or slug,
            provider=kind,
            base_url=base_url,
            token_env=opts["token_env"],
            options=options,
        )
        try:
            agent.full_clean()
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            ) from None
        with transaction.atomic():
            if opts["default"] or not Agent.objects.filter(is_default=True).exists():
                audit.logged_update(Agent.objects.filter(is_default=True), is_default=False)
                agent.is_default = True
            agent.save()
        suffix = " [default]" if agent.is_default else ""
        self.stdout.write(f"added agent {slug} ({kind}){suffix}")

    def do_list(self, opts: dict[str, Any]) -> None:
        for a in Agent.objects.order_by("slug"):
            flags = [
                f for f, on in (("default", a.is_default), ("inactive", not a.is_active)) if on
            ]
            self.stdout.write(
                f"{a.slug}\t{a.provider}\t{a.base_url or '-'}\t{a.token_env or '-'}\t"
                f"{json.dumps(a.options)}\t{','.join(flags)}"
            )

    def do_remove(self, opts: dict[str, Any]) -> None:
        agent = Agent.objects.filter(slug=opts["slug"]).first()
        if agent is None:
            raise CommandError(f"no agent with slug {opts['slug']!r}")
        used = agent.conversations.count()
        if used:
            raise CommandError(
                f"agent {agent.slug!r} has {used} conversation(s); deactivate it in the admin "
                "instead so their transcripts stay readable"
            )
        agent.delete()
        self.stdout.write(f"removed agent {agent.slug}")
