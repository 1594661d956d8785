"""`manage.py review add-config|add-queue|list`: score configs and review queues from the
command line (the admin manages them too). Errors print one clear line and exit non-zero."""

from __future__ import annotations

import math
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from conversations.models import ReviewQueue, ScoreConfig


def percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise CommandError(f"a percentage must be between 0 and 100, not {text}")
    return value


def number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise CommandError(f"{text!r} is not a finite number")
    return value


class Command(BaseCommand):
    help = "Add score configs and review queues, or list them."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        config = sub.add_parser("add-config", help="Add a score config (a rubric).")
        config.add_argument("name")
        config.add_argument("--kind", required=True,
                            choices=[k.value for k in ScoreConfig.Kind])
        config.add_argument("--min", dest="min_value")
        config.add_argument("--max", dest="max_value")
        config.add_argument("--option", dest="options", action="append", default=[],
                            metavar="LABEL", help="a categorical option, in order; repeat it")
        config.add_argument("--description", default="", help="the rubric reviewers read")

        queue = sub.add_parser("add-queue", help="Add a review queue and its rules.")
        queue.add_argument("name")
        queue.add_argument("--config", dest="configs", action="append", default=[],
                           metavar="NAME", required=True, help="a score config; repeat it")
        queue.add_argument("--description", default="")
        queue.add_argument("--sample-percent", default="0",
                           help="enqueue this %% of completed replies")
        queue.add_argument("--on-thumbs-down", action="store_true")
        queue.add_argument("--on-failure", action="store_true")
        queue.add_argument("--failure-code", dest="failure_codes", action="append", default=[],
                           metavar="CODE", help="only these error codes count (with --on-failure)")
        queue.add_argument("--on-tool-error", action="store_true")
        queue.add_argument("--on-flagged", action="store_true")
        queue.add_argument("--double-review-percent", default="0",
                           help="this %% of items is scored by a second reviewer")
        queue.add_argument("--assignee", dest="assignees", action="append", default=[],
                           metavar="USERNAME")
        queue.add_argument("--reviewers", action="store_true",
                           help="every member of the reviewer group may claim")
        sub.add_parser("list", help="List score configs and queues.")

    def handle(self, *args: Any, **opts: Any) -> None:
        getattr(self, "do_" + opts["action"].replace("-", "_"))(opts)

    def do_add_config(self, opts: dict[str, Any]) -> None:
        name = opts["name"].strip()
        if not name or len(name) > 80:
            raise CommandError("a config name is 1 to 80 characters")
        if ScoreConfig.objects.filter(name=name).exists():
            raise CommandError(f"a score config named {name!r} already exists")
        kind = opts["kind"]
        low = None if opts["min_value"] is None else number(opts["min_value"])
        high = None if opts["max_value"] is None else number(opts["max_value"])
        options = [o.strip() for o in opts["options"]]
        if kind == ScoreConfig.Kind.NUMERIC:
            if low is None or high is None:
                raise CommandError("a numeric config needs --min and --max")
            if low >= high:
                raise CommandError("--min must be below --max")
        elif low is not None or high is not None:
            raise CommandError("--min and --max are for numeric configs")
        if kind == ScoreConfig.Kind.CATEGORICAL:
            if len(options) < 2:
                raise CommandError("a categorical config needs at least two --option")
            if any(not o for o in options) or len(set(options)) != len(options):
                raise CommandError("options must be non-empty and different")
        elif options:
            raise CommandError("--option is for categorical configs")
        ScoreConfig.objects.create(name=name, kind=kind, min_value=low, max_value=high,
                                   options=options, description=opts["description"])
        self.stdout.write(f"score config {name!r} added ({kind})")

    def do_add_queue(self, opts: dict[str, Any]) -> None:
        name = opts["name"].strip()
        if not name or len(name) > 80:
            raise CommandError("a queue name is 1 to 80 characters")
        if ReviewQueue.objects.filter(name=name).exists():
            raise CommandError(f"a review queue named {name!r} already exists")
        configs = []
        for config_name in opts["configs"]:
            config = ScoreConfig.objects.filter(name=config_name).first()
            if config is None:
                raise CommandError(f"no score config named {config_name!r}")
            configs.append(config)
        users = []
        model = get_user_model()
        for username in opts["assignees"]:
            user = model.objects.filter(**{model.USERNAME_FIELD: username}).first()
            if user is None:
                raise CommandError(f"no user named {username!r}")
            users.append(user)
        if opts["failure_codes"] and not opts["on_failure"]:
            raise CommandError("--failure-code needs --on-failure")
        with transaction.atomic():
            queue = ReviewQueue.objects.create(
                name=name, description=opts["description"],
                reviewer_group=opts["reviewers"], on_thumbs_down=opts["on_thumbs_down"],
                on_failure=opts["on_failure"], failure_codes=opts["failure_codes"],
                on_tool_error=opts["on_tool_error"], on_flagged=opts["on_flagged"],
                sample_percent=percent(opts["sample_percent"]),
                double_review_percent=percent(opts["double_review_percent"]),
            )
            queue.configs.set(configs)
            queue.assignees.set(users)
        self.stdout.write(f"review queue {name!r} added (id {queue.pk})")

    def do_list(self, opts: dict[str, Any]) -> None:
        configs = list(ScoreConfig.objects.all())
        queues = list(ReviewQueue.objects.prefetch_related("configs", "assignees"))
        if not configs and not queues:
            self.stdout.write("no score configs and no review queues")
            return
        for config in configs:
            detail = {
                ScoreConfig.Kind.NUMERIC: f"{config.min_value:g}..{config.max_value:g}"
                if config.min_value is not None and config.max_value is not None else "",
                ScoreConfig.Kind.CATEGORICAL: " | ".join(map(str, config.options or [])),
            }.get(config.kind, "")
            state = "" if config.is_active else "\tinactive"
            self.stdout.write(f"config\t{config.name}\t{config.kind}\t{detail}{state}")
        for queue in queues:
            rules = [name for name, on in (
                ("thumbs-down", queue.on_thumbs_down),
                ("failure" + (f" {','.join(queue.failure_codes)}" if queue.failure_codes
                              else ""), queue.on_failure),
                ("tool-error", queue.on_tool_error), ("flagged", queue.on_flagged),
                (f"sample {queue.sample_percent:g}%", queue.sample_percent > 0),
                (f"double {queue.double_review_percent:g}%", queue.double_review_percent > 0),
            ) if on]
            who = [u.get_username() for u in queue.assignees.all()]
            if queue.reviewer_group:
                who.append("@reviewers")
            state = "" if queue.is_active else "\tinactive"
            self.stdout.write(
                f"queue\t{queue.pk}\t{queue.name}\tconfigs: "
                f"{', '.join(c.name for c in queue.configs.all())}\trules: "
                f"{', '.join(rules) or 'none'}\tassignees: {', '.join(who) or 'staff only'}"
                f"{state}")
