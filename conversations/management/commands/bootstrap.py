"""`manage.py bootstrap`: what `make run` needs before serving.

Makes sure the demo agent exists, creates a first admin user when there is no user at all
(printing its random password once), and marks replies a previous single-process run left
`streaming` as failed (`server_restart`)."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from conversations import services


class Command(BaseCommand):
    help = "Prepare a fresh or restarted single-process install."

    def handle(self, *args: Any, **opts: Any) -> None:
        services.ensure_demo_agent()
        services.reap_orphaned_runs(all_streaming=True)
        User = get_user_model()
        if not User.objects.exists():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", "", password)
            host = os.environ.get("HOST", "127.0.0.1")
            port = os.environ.get("PORT", "8000")
            self.stdout.write(
                "\n  First admin user created.\n"
                f"  Log in at http://{host}:{port}/accounts/login/\n"
                "  username: admin\n"
                f"  password: {password}\n"
                "  (shown once; change it in the admin)\n"
            )
