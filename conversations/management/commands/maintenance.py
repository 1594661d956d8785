"""`manage.py maintenance [--every SECONDS]`: the housekeeping a deployment needs, in one place.

- `prune_audit`: audit events and row-change entries past AUDIT_RETENTION_DAYS (docs/audit.md);
- `prune_db_task_results`: finished task rows (webhook sends) of every queue over 14 days old,
  django-tasks' default age (the deliveries themselves are chatsite's rows and stay);
- `clearsessions`: expired login sessions (Django's; nothing else deletes them).

Without `--every`, each job runs once (for cron); exit status 1 if one failed. With it, the jobs
run at once and then every SECONDS: the Procfile's `clock` process, so `make run` and
compose.yaml keep the tables bounded with nothing to schedule by hand. One failed job is
logged and the others still run; the next round tries it again.
"""

from __future__ import annotations

import logging
import time
from io import StringIO
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

logger = logging.getLogger("conversations.maintenance")

# (command, its arguments), in this order: each job's own options are documented with it.
JOBS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("prune_audit", ()),
    ("prune_db_task_results", ("--queue-name", "*")),
    ("clearsessions", ()),
)
# A day: audit retention is counted in days, task rows are kept 14 days; more often only
# repeats deletes that find nothing.
DAILY = 86_400.0


def run_jobs(jobs: tuple[tuple[str, tuple[str, ...]], ...] = JOBS) -> list[str]:
    """Run every job once; the names of those that failed."""
    failed = []
    for name, args in jobs:
        out = StringIO()
        started = time.monotonic()
        try:
            call_command(name, *args, stdout=out, stderr=out)
        except Exception as exc:  # noqa: BLE001 - one job's failure must not stop the others
            failed.append(name)
            # The error's own text: an operational failure (a database down, a bad setting),
            # not a bug to trace; the next round tries again.
            logger.error("maintenance: %s failed: %s: %s", name, type(exc).__name__, exc)
        else:
            said = " ".join(out.getvalue().split()) or "done"
            logger.info("maintenance: %s in %.2f s: %s", name, time.monotonic() - started, said)
    return failed


def release_connections() -> None:
    """Between rounds the clock sleeps a day: it holds no connection a server could drop
    meanwhile (a caller's open transaction, a test's, keeps its own)."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


class Command(BaseCommand):
    help = "Prune audit records, finished task rows and expired sessions (once, or --every N s)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--every", type=float, default=0.0, metavar="SECONDS",
            help=f"run forever: now, then every SECONDS (the clock process: {DAILY:.0f})")

    def handle(self, *args: Any, **options: Any) -> None:
        every = options["every"]
        if every < 0:
            raise CommandError("--every must be a number of seconds above 0")
        while True:
            failed = run_jobs()
            if not every:
                if failed:
                    raise CommandError(f"failed: {', '.join(failed)} (logged above)")
                return
            release_connections()
            time.sleep(every)
