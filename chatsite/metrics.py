"""The Prometheus metrics of chatsite: every metric object lives here, and the relay, the
consumer, the rate limiter, the channel-layer calls and the services import them to record.

Multiprocess: when PROMETHEUS_MULTIPROC_DIR is set (before this module is first imported,
prometheus-client reads it then), every process writes its values to files in that directory
and `/metrics` (chatsite/metrics_view.py) aggregates them, so any Daphne process answers for
all. The directory must be emptied when the deployment starts (docs/observability.md); gauges
count only live processes (`livesum`), and a process that exits marks its gauge files dead.
Without it, the process's own registry.

Cost on the relay's hot path: nothing per delta. A reply's deltas are counted once when it
ends; fan-out is counted once per batch (a Counter.inc is ~1 µs, a delta's whole relay ~0.2 ms).
Labels have bounded values only: agent slugs, statuses, error codes, limit and operation names
(never a user or conversation id).

Plain Python, no Django: chatsite/settings.py's logging and conversations.layer import it
early.
"""

from __future__ import annotations

import atexit
import os

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# No `_created` series beside every counter and histogram: they double the series to store
# and no panel reads them.
disable_created_metrics()
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# Time to first token: a vendor answers in ~0.3-3 s; the tail up to 60 s is a slow or
# queued model, past which the read timeout (VENDOR_READ_TIMEOUT, 120 s) is near.
TTFT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, float("inf"))
# Whole replies: a demo reply takes ~5 s, long model answers minutes; 600 s (10 min) covers
# the longest streams seen, +Inf the rest.
DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                    float("inf"))
# Fan-out lag: a batch waits RELAY_FANOUT_WINDOW (50 ms) by design; the 250 ms target of a
# second viewer (docs/performance.md) sits in the middle of these.
FANOUT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, float("inf"))
# One flush statement for all live replies takes ~1-5 ms on loopback PostgreSQL; past 1 s it
# delays the heartbeat the reaper reads (RELAY_ORPHAN_AFTER, 15 s).
FLUSH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                 float("inf"))

REPLIES = Counter(
    "chatsite_replies", "Replies ended by this process, by agent, status and error code.",
    ["agent", "status", "error_code"])
TTFT = Histogram(
    "chatsite_reply_ttft_seconds", "Time from a reply's start to its first text delta.",
    ["agent"], buckets=TTFT_BUCKETS)
DURATION = Histogram(
    "chatsite_reply_duration_seconds", "Time from a reply's start to its end.",
    ["agent"], buckets=DURATION_BUCKETS)
DELTAS = Counter(
    "chatsite_deltas_relayed", "Text deltas relayed to the socket that started the reply.",
    ["agent"])
ACTIVE_RUNS = Gauge(
    "chatsite_active_runs", "Replies streaming in the server processes.",
    multiprocess_mode="livesum")
OPEN_SOCKETS = Gauge(
    "chatsite_open_sockets", "Websockets open on a conversation.", multiprocess_mode="livesum")
FANOUT_BATCHES = Counter(
    "chatsite_fanout_batches", "Coalesced batches sent to a reply's other viewers.")
FANOUT_LAG = Histogram(
    "chatsite_fanout_lag_seconds",
    "Time from a batch's first frame to its sending (other tabs and processes).",
    buckets=FANOUT_BUCKETS)
BACKPRESSURE_CLOSES = Counter(
    "chatsite_backpressure_closes", "Sockets closed (4008) because the client stopped reading.")
RATE_LIMIT_REFUSALS = Counter(
    "chatsite_rate_limit_refusals", "Requests refused by a rate limit.", ["limit"])
LAYER_ERRORS = Counter(
    "chatsite_channel_layer_errors", "Channel-layer calls that failed (Redis down or stalled).",
    ["operation"])
REAPED_RUNS = Counter(
    "chatsite_reaped_runs", "Replies of dead processes ended as server_restart.")
FLUSH_SECONDS = Histogram(
    "chatsite_db_flush_seconds",
    "Duration of one flush of the live replies' text to the database.",
    buckets=FLUSH_BUCKETS)
FLUSH_FAILURES = Counter(
    "chatsite_db_flush_failures", "Flushes of the live replies' text that failed.")

# Label values known in advance start at 0, so a dashboard shows 0 rather than "no data" and
# rate() sees the first increment (conversations/ratelimit.py, conversations/layer.py).
LIMITS = ("runs", "sends", "writes", "sockets")
LAYER_OPERATIONS = ("group_send", "send", "group_add", "group_discard", "new_channel",
                    "subscribe", "subscriber", "receive", "snapshot")
for _limit in LIMITS:
    RATE_LIMIT_REFUSALS.labels(_limit)
for _operation in LAYER_OPERATIONS:
    LAYER_ERRORS.labels(_operation)


def layer_error(operation: str) -> None:
    """One failed channel-layer call; an unknown operation name counts as "other"."""
    LAYER_ERRORS.labels(operation if operation in LAYER_OPERATIONS else "other").inc()


def _mark_dead() -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(os.getpid())


if MULTIPROCESS:
    # This process's live gauges stop counting when it exits (its counters stay summed).
    atexit.register(_mark_dead)
