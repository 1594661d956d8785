"""`manage.py prune_audit [--dry-run] [--days N]`: delete audit events and auditlog row-change
entries older than AUDIT_RETENTION_DAYS (docs/audit.md); 0 keeps them forever. Run it daily
(cron or a systemd timer)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations.services import audit


class Command(BaseCommand):
    help = "Delete audit events and row-change entries older than AUDIT_RETENTION_DAYS."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true",
                            help="count what would be deleted, delete nothing")
        parser.add_argument("--days", type=int, default=None,
                            help="override AUDIT_RETENTION_DAYS for this run (0: keep all)")

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"] if options["days"] is not None else settings.AUDIT_RETENTION_DAYS
        if days < 0:
            raise CommandError("the retention must be 0 (keep forever) or a number of days")
        if days == 0:
            self.stdout.write("retention is 0: audit records are kept forever; nothing deleted")
            return
        counts = audit.prune(days, dry_run=options["dry_run"])
        verb = "would delete" if options["dry_run"] else "deleted"
        self.stdout.write(
            f"{verb} {counts['audit_events']} audit events and {counts['log_entries']} "
            f"row-change entries older than {days} days")
