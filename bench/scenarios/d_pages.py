"""D: 10,000 conversations and a 2,000-message transcript: each page <= 200 ms.

Served by the counting chatsite (bench/counting_asgi.py), idle but for the client: one warm-up
request, then `--page-requests` timed ones per page (client wall time ≈ server time over
loopback), with the statements and new database connections each request cost.
"""

from __future__ import annotations

import statistics
import time

import httpx

from bench.report import Row, log, verdict
from bench.runner import COUNTING_APP, HOST, Runner, query_counts

MAX_PAGE_MS = 200


def run(bench: Runner) -> None:
    f = bench.fixtures
    log(
        f"D: page times with {f.list_count:,} conversations and a "
        f"{f.transcript_messages:,}-message transcript"
    )
    pages = [
        ("HTML list page /", "/"),
        ("GET /api/v1/conversations", "/api/v1/conversations"),
        (f"chat page /c/<id>/ ({f.transcript_messages:,} messages)", f"/c/{f.transcript_id}/"),
        (
            f"GET /api/v1/conversations/<id> ({f.transcript_messages:,} messages)",
            f"/api/v1/conversations/{f.transcript_id}",
        ),
    ]
    with bench.servers(("chatsite-pages", COUNTING_APP, bench.server_cpus, {})) as [(server, port)]:
        base = f"http://{HOST}:{port}"
        with httpx.Client(
            base_url=base, cookies={"sessionid": f.list_session}, timeout=60
        ) as client:
            for k, (name, path) in enumerate(pages):
                client.get(path)  # warm: template compilation, first connection
                profilers = bench.start_profilers(f"D{k + 1}", [server])
                before = query_counts(port)
                times, size, status = [], 0, 0
                for _ in range(bench.opts.page_requests):
                    began = time.perf_counter()
                    response = client.get(path)
                    times.append((time.perf_counter() - began) * 1000)
                    size, status = len(response.content), response.status_code
                after = query_counts(port)
                bench.stop_profilers(f"D{k + 1}", profilers)
                per_request = (
                    sum(after["statements"].values()) - sum(before["statements"].values())
                ) / len(times)
                connects = (after["connections"] - before["connections"]) / len(times)
                med = statistics.median(times)
                ok = status == 200 and med <= MAX_PAGE_MS and max(times) <= MAX_PAGE_MS
                log(
                    f"D: {name}: median {med:.0f} ms, max {max(times):.0f} ms, "
                    f"{size / 1024:.0f} KiB, HTTP {status}, {per_request:.0f} statements, "
                    f"{connects:.1f} new DB connections per request"
                )
                bench.details[f"D {name}"] = {
                    "ms": times,
                    "bytes": size,
                    "status": status,
                    "statements_per_request": per_request,
                    "connections_per_request": connects,
                }
                bench.rows.append(
                    Row(
                        "D",
                        f"{name}: median / max ms; statements, new DB connections",
                        f"{med:.0f} / {max(times):.0f} ms; "
                        f"{per_request:.0f} q, {connects:.0f} conn"
                        + ("" if status == 200 else f" (HTTP {status})"),
                        None,
                        "≤ 200 ms",
                        verdict(ok),
                    )
                )
            requests = len(pages) * (bench.opts.page_requests + 1)
            time.sleep(0.5)
            bench.rows.append(
                Row(
                    "D",
                    f"PostgreSQL connections left open after {requests} page requests",
                    bench.pg_connections(),
                )
            )
