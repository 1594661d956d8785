#!/usr/bin/env python
"""Django's command-line utility for chatsite."""
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    if sys.argv[1:2] == ["db_worker"]:
        # The task worker (webhook deliveries): their HTTP calls as spans when
        # OTEL_EXPORTER_OTLP_ENDPOINT is set (chatsite/tracing.py). The web processes start
        # tracing in chatsite/asgi.py; other commands have nothing worth a trace.
        from chatsite import tracing

        tracing.setup()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
