"""Summaries of `py-spy record --format raw --threads` output: where a server spends its samples.

A raw profile is one collapsed stack per line, `thread (0x..);frame;frame;... count`, each frame
`function (file:line)`. The summary folds line numbers away and lists, for the whole process,
the functions with the most samples on top of the stack (self) and anywhere in it (inclusive),
plus each thread's share, which is how the event loop's work is told apart from the single
`database_sync_to_async` thread's.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _short(frame: str) -> str:
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


def summarize(path: Path, top: int = 25) -> str:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0] if frames[0].startswith(("thread", "process")) else "?"
        calls = (
            [_short(f) for f in frames[1:] if f]
            if thread != "?"
            else [_short(f) for f in frames if f]
        )
        if not calls:
            continue
        total += count
        threads[thread] += count
        self_time[calls[-1]] += count
        for name in set(calls):
            inclusive[name] += count
    if not total:
        return f"{path.name}: no samples\n"
    out = [f"{path.name}: {total} samples (100 Hz, on-CPU only)", "", "threads:"]
    out += [f"  {n / total:6.1%}  {t}" for t, n in threads.most_common()]
    out += ["", "self (top of stack):"]
    out += [f"  {n / total:6.1%}  {f}" for f, n in self_time.most_common(top)]
    out += ["", "inclusive (anywhere in the stack):"]
    out += [f"  {n / total:6.1%}  {f}" for f, n in inclusive.most_common(top * 2)]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    for name in sys.argv[1:] if argv is None else argv:
        print(summarize(Path(name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
