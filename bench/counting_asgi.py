"""chatsite's ASGI application with a SQL statement counter, for the benchmark only.

`daphne bench.counting_asgi:application` serves chatsite unchanged and adds one route,
`GET /__bench__/queries`, answering the statements run so far as JSON:
`{"connections": N, "statements": {"<caller> <VERB>": count, ...}}`.

Nothing in the app changes: an execute wrapper is installed on every new database connection
(`connection_created`), so every statement that goes through a Django cursor is counted, named by
the innermost chatsite function on the stack (e.g. `services.accept_user_message`) and its SQL
verb. The health check Django runs with `CONN_HEALTH_CHECKS` (a `SELECT 1` on the raw driver
connection before the first query after every `close_old_connections()`, which Channels calls
around every `database_sync_to_async` call) bypasses cursor wrappers, so `is_usable` is wrapped
too and counted as `health_check SELECT`. Transaction control (BEGIN/COMMIT, issued by the
driver) and the connection's own setup are not statements here; `connections` counts how many
connections were opened (with `CONN_MAX_AGE=0` every `database_sync_to_async` call opens one).

The wrapper costs a few microseconds per statement; it is used for the queries-per-reply and
page-time scenarios, never for the latency and CPU scenarios.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db.backends.signals import connection_created

from chatsite.asgi import application as chatsite_application  # sets up Django

ROOT = Path(__file__).resolve().parent.parent
APP_DIRS = (str(ROOT / "conversations"), str(ROOT / "chatsite"))
CONTRIB = "django/contrib/"

_lock = threading.Lock()
_statements: Counter[str] = Counter()
_connections = 0


def _caller() -> str:
    """The innermost chatsite frame (module.function); else the innermost django.contrib one
    (session and auth lookups made by middleware)."""
    frame = sys._getframe(2)
    contrib = ""
    depth = 0
    while frame is not None and depth < 60:
        filename = frame.f_code.co_filename
        if filename.startswith(APP_DIRS):
            return f"{Path(filename).stem}.{frame.f_code.co_name}"
        if not contrib and CONTRIB in filename:
            part = filename.split(CONTRIB, 1)[1].split("/", 1)[0]
            contrib = f"django.contrib.{part}"
        frame = frame.f_back
        depth += 1
    return contrib or "other"


def _count(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"
    key = f"{_caller()} {verb}"
    with _lock:
        _statements[key] += 1
    return execute(sql, params, many, context)


def _counted_health_check(is_usable: Callable[[], bool]) -> Callable[[], bool]:
    def wrapper() -> bool:
        with _lock:
            _statements["health_check SELECT"] += 1
        return is_usable()

    wrapper.bench_counted = True  # type: ignore[attr-defined]
    return wrapper


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    global _connections
    with _lock:
        _connections += 1
    # The wrapper list lives on the DatabaseWrapper, which outlives its connections: add once.
    if _count not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count)
    if not getattr(connection.is_usable, "bench_counted", False):
        connection.is_usable = _counted_health_check(connection.is_usable)


connection_created.connect(_on_connection_created)


def snapshot() -> dict[str, Any]:
    with _lock:
        return {"connections": _connections, "statements": dict(_statements)}


async def application(
    scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
) -> None:
    if scope["type"] == "http" and scope["path"] == "/__bench__/queries":
        body = json.dumps(snapshot()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    await chatsite_application(scope, receive, send)
