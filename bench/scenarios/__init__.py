"""The benchmark's scenarios, one module each, run in the order given by `--scenarios`.

A scenario is a function `run(bench: Runner) -> None` that starts the servers it needs through
the runner, measures, and appends its `Row`s to `bench.rows` (and raw figures to
`bench.details`, written by `--json`). To add one: a module here and a line in `SCENARIOS`.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.runner import Runner
from bench.scenarios import (
    a_latency,
    b_two_processes,
    c_statements,
    d_pages,
    e_memory,
    f_search,
    s_reply_start,
    w_whole_reply,
)

SCENARIOS: dict[str, Callable[[Runner], None]] = {
    "A": a_latency.run,
    "B": b_two_processes.run,
    "C": c_statements.run,
    "D": d_pages.run,
    "E": e_memory.run,
    "F": f_search.run,
    "S": s_reply_start.run,
    "W": w_whole_reply.run,
}
