"""What a benchmark run prints: its log lines, the rows of the final table, the machine it ran on.

Every scenario appends `Row`s; `table` renders them once at the end, as plain text for the terminal
and as Markdown for docs/performance.md.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

# The packages whose versions decide the figures, printed with the machine.
MEASURED_PACKAGES = (
    "django",
    "channels",
    "channels-redis",
    "daphne",
    "twisted",
    "httpx",
    "httpx-sse",
    "psycopg",
    "redis",
)


@dataclass
class Row:
    scenario: str
    figure: str
    chatsite: float | str | None
    bare: float | str | None = None
    target: str = ""
    verdict: str = ""  # PASS / FAIL / "" (informational)

    @property
    def ratio(self) -> float | None:
        if (
            isinstance(self.chatsite, int | float)
            and isinstance(self.bare, int | float)
            and self.bare
            and math.isfinite(self.chatsite)
            and math.isfinite(self.bare)
        ):
            return self.chatsite / self.bare
        return None


def fmt(value: float | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if value == math.inf:
        return "∞ (undelivered)"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def table(rows: list[Row]) -> str:
    header = ("scenario", "figure", "chatsite", "bare", "ratio", "target", "result")
    body = [
        (
            r.scenario,
            r.figure,
            fmt(r.chatsite),
            fmt(r.bare),
            f"{r.ratio:.2f}x" if r.ratio is not None else "—",
            r.target or "—",
            r.verdict or "—",
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]
    lines = [
        " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
        for row in (header, *body)
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    text = "\n".join(lines)
    markdown = "\n".join(
        ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        + ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    )
    return text + "\n\nMarkdown:\n\n" + markdown


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for dist in MEASURED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    mem = ""
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "python": platform.python_version(),
        "kernel": platform.release(),
        **versions,
    }


# The issue's targets, each measured by one scenario; listed even when that scenario did not run.
ISSUE_TARGETS = {
    "whole-reply CPU per delta (socket opened, message sent, reply streamed, final write)": "W",
    "one process, 100 conversations x 50 deltas/s: p99 vs the bare relay": "A",
    "two processes + Redis, 200 conversations x 50 deltas/s, watched from both: p99": "B",
    "two processes + Redis, 200 conversations: message.send -> first delta p99": "B",
    "chatsite adds to the time to first token at light load (p50)": "S",
}


def target_summary(bench: Any) -> list[dict[str, Any]]:
    """Every target: the issue's first (by name), then each other row that has a verdict."""
    out = []
    named = set()
    for name, scenario in ISSUE_TARGETS.items():
        row, load = bench.targets.get(name, (None, ""))
        named.add(id(row))
        out.append(_summary_line(name, scenario, row, load))
    for name, (row, load) in bench.targets.items():
        if name not in ISSUE_TARGETS:
            named.add(id(row))
            out.append(_summary_line(name, row.scenario, row, load))
    for row in bench.rows:
        if row.verdict and id(row) not in named:
            out.append(_summary_line(row.figure, row.scenario, row, ""))
    return out


def _summary_line(name: str, scenario: str, row: Row | None, load: str) -> dict[str, Any]:
    if row is None:
        return {
            "scenario": scenario,
            "target": name,
            "load": "",
            "measured": None,
            "bare": None,
            "ratio": None,
            "limit": "",
            "result": "not run",
        }
    return {
        "scenario": scenario,
        "target": name,
        "load": load,
        "measured": row.chatsite,
        "bare": row.bare,
        "ratio": row.ratio,
        "limit": row.target,
        "result": {"PASS": "met", "FAIL": "missed"}.get(row.verdict, row.verdict or "—"),
    }


def summary_table(lines: list[dict[str, Any]]) -> str:
    header = (
        "scenario",
        "target",
        "load (as run)",
        "measured",
        "bare (same load)",
        "ratio",
        "limit",
        "result",
    )
    body = [
        (
            x["scenario"],
            x["target"],
            x["load"] or "—",
            fmt(x["measured"]),
            fmt(x["bare"]),
            f"{x['ratio']:.2f}x" if x["ratio"] is not None else "—",
            x["limit"] or "—",
            x["result"],
        )
        for x in lines
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body, strict=True)]
    rows = [
        " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
        for row in (header, *body)
    ]
    rows.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(rows)
