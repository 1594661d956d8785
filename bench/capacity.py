"""The capacity model of docs/scaling.md, fitted from one benchmark run's `--json`.

    .venv/bin/python -m bench.capacity run.json                 # coefficients + 1k / 10k table
    .venv/bin/python -m bench.capacity run.json --check b4.json  # + predicted vs measured for a
                                                                 #   B run with 3-4 processes
    .venv/bin/python -m bench.capacity run.json --b-run b2.json  # c_watched from another B run

Coefficients (server CPU, one process = at most one core, the GIL):
  c_delta   CPU per delta sent to the socket that owns the reply (A, minus its replies' starts)
  c_reply   CPU per reply start + final write (S: one-delta replies, minus that delta)
  c_watched CPU per delivered delta when every conversation is also watched from another
            process (B: owner's and second viewer's deltas alike, minus the replies' starts)
  c_open    CPU per conversation created + chat page + socket opened and closed (W, minus the
            above)
Load: C conversations streaming at the same time, R deltas/s, L deltas per reply, a share v of
them watched from a second process. Server cores = C*R*((1-v)*c_delta + v*2*c_watched) +
C*R/L*c_reply;
processes = cores / U, U the busy share of a core at which one process still met the latency
targets in the measured runs. Redis: the process bus sends at most one PUBLISH per process per
25 ms; PostgreSQL: the statements per reply of C plus one flush statement per process per second.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

# Latency runs out before CPU: A at 0.91 of its core had p99 4.65x the bare relay's; B at 80
# conversations, 0.55 of a core per process, p99 292 ms (target 250). Plans assume at most 0.5
# of a core per process; the rest is headroom for bursts and garbage collection.
PLANNING_UTILISATION = 0.5
# The process bus publishes at most once per BUS_WINDOW (25 ms, conversations/relay.py).
BUS_PUBLISHES_PER_PROCESS = 40
# Writes per reply outside the flush: INSERT (message + placeholder), UPDATE (conversation),
# UPDATE (final text), UPDATE (conversation) (tests/test_relay.py lists them).
WRITES_PER_REPLY = 4


def fit(
    run: dict[str, Any], reply_deltas: int = 250, b_run: dict[str, Any] | None = None
) -> dict[str, float]:
    d = run["details"]
    out: dict[str, float] = {}
    s = d.get("S-chatsite")
    a = d.get("A-chatsite")
    b = (b_run or run)["details"].get("B-chatsite")
    w = d.get("W-chatsite")
    if a is None or s is None:
        raise SystemExit("the model needs scenarios A and S in the same run")
    s_replies = s["all"]["delivered"]  # one delta per reply
    a_delivered = a["all"]["delivered"]
    # Two unknowns, two equations: S = replies*(c_reply + c_delta), A = deltas*c_delta +
    # deltas/L*c_reply.
    s_per = s["server_cpu_s"] / s_replies
    a_per = a["server_cpu_s"] / a_delivered
    c_delta = (a_per - s_per / reply_deltas) / (1 - 1 / reply_deltas)
    c_reply = s_per - c_delta
    out["c_delta_ms"] = c_delta * 1000
    out["c_reply_ms"] = c_reply * 1000
    if b is not None:
        # B: every conversation also watched from the other process; CPU per delivered delta
        # (owner's and second viewer's alike) once the replies' starts are taken out.
        owner = b["owner"]["delivered"]
        delivered = owner + b["viewer"]["delivered"]
        rest = b["server_cpu_s"] - owner / reply_deltas * c_reply
        out["c_watched_ms"] = rest / delivered * 1000 if delivered else math.nan
        out["b_redis_publish_per_s"] = b["redis_commands_per_s"].get("publish", 0.0)
        out["b_redis_cores"] = b["cores_used"].get("redis", 0.0)
        out["b_postgres_cores"] = b["cores_used"].get("postgres", 0.0)
        out["b_replies_per_s"] = owner / reply_deltas / b["seconds"]
    if w is not None:
        n = sum(w["replies"].values()) or 1
        deltas = w["all"]["delivered"]
        rest = w["server_cpu_s"] - deltas * c_delta - n * c_reply
        out["c_open_ms"] = rest / n * 1000
    return out


def plan(
    model: dict[str, float], conversations: int, rate: int, reply_deltas: int, viewed: float
) -> dict[str, float]:
    c_delta, c_reply = model["c_delta_ms"] / 1000, model["c_reply_ms"] / 1000
    c_watched = model.get("c_watched_ms", model["c_delta_ms"]) / 1000
    deltas = conversations * rate
    replies = deltas / reply_deltas
    # A watched conversation's deltas reach two sockets (owner + the other process's viewer).
    cores = deltas * ((1 - viewed) * c_delta + viewed * 2 * c_watched) + replies * c_reply
    processes = max(1, math.ceil(cores / PLANNING_UTILISATION))
    return {
        "conversations": conversations,
        "server_cores": cores,
        "processes": processes,
        "replies_per_s": replies,
        "redis_publish_per_s": processes * BUS_PUBLISHES_PER_PROCESS if viewed else 0.0,
        "redis_batch_bytes_per_s": viewed * deltas * 25,  # ~25 bytes of text per delta here
        "pg_write_statements_per_s": replies * WRITES_PER_REPLY + processes,
        "pg_rows_written_per_s": replies * WRITES_PER_REPLY + conversations,
        "pg_connections": processes * (1 + 4 + 4),  # Channels' thread + relay + reply start
    }


def check(model: dict[str, float], run: dict[str, Any], reply_deltas: int) -> dict[str, float]:
    """Predicted vs measured server cores of a B run (any number of processes)."""
    b = run["details"]["B-chatsite"]
    owner, viewer = b["owner"]["delivered"], b["viewer"]["delivered"]
    seconds = b["seconds"]
    predicted = (
        (
            owner * model["c_delta_ms"]
            + owner / reply_deltas * model["c_reply_ms"]
            + viewer * model.get("c_viewer_ms", model["c_delta_ms"])
        )
        / 1000
        / seconds
    )
    return {
        "measured_server_cores": b["server_cpu_s"] / seconds,
        "predicted_server_cores": predicted,
        "measured_publish_per_s": b["redis_commands_per_s"].get("publish", 0.0),
        "p99_ms": b["all"]["p99_ms"],
        "first_delta_p99_ms": b["first_delta"]["p99_ms"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    p.add_argument("run", type=Path, help="a `python -m bench --json` output with A, S (B, W)")
    p.add_argument("--check", type=Path, help="a B run with 3-4 processes to compare with")
    p.add_argument(
        "--b-run",
        type=Path,
        help="take c_watched from this B run (one below saturation: a saturated machine "
        "batches more per read and looks cheaper per delta)",
    )
    p.add_argument("--reply-deltas", type=int, default=250)
    p.add_argument("--rate", type=int, default=50)
    p.add_argument("--viewed", type=float, default=1.0, help="share watched from elsewhere")
    a = p.parse_args(argv)
    b_run = json.loads(a.b_run.read_text()) if a.b_run else None
    model = fit(json.loads(a.run.read_text()), a.reply_deltas, b_run)
    print("coefficients:", json.dumps({k: round(v, 4) for k, v in model.items()}))
    for n in (1_000, 10_000):
        row = plan(model, n, a.rate, a.reply_deltas, a.viewed)
        print(json.dumps({k: round(v, 2) for k, v in row.items()}))
    if a.check:
        result = check(model, json.loads(a.check.read_text()), a.reply_deltas)
        print("check:", json.dumps({k: round(v, 3) for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
