"""E: server memory per idle socket <= 100 KB, and a client that stops reading: is memory bounded?

Idle: 1,000 sockets (after a 20-socket warm-up batch) and the RSS delta divided by their number.
Stalled: one conversation streams 5,000 deltas/s to a client whose socket has a 4 KiB receive
buffer and never reads; RSS is sampled every second, then the client reads for 5 s to see what
was held for it and whether the server had closed the socket.
"""

from __future__ import annotations

import json
import time
from typing import Any

from bench.procs import Child, rss_bytes
from bench.report import Row, log, verdict
from bench.runner import BARE_APP, CHATSITE_APP, HOST, MIB, Runner, ws_path
from bench.wsproto import blocking_connect, encode_frame

MAX_KB_PER_IDLE_SOCKET = 100
# A first small batch loads whatever is imported or cached lazily, so the measured delta is the
# sockets' own memory.
WARM_SOCKETS = 20
# Unbounded, RSS climbs for as long as the stream lasts (~0.5 MiB/s here), so the second half
# alone adds several MiB; bounded, it stops.
MAX_SECOND_HALF_MIB = 2.0


def run(bench: Runner) -> None:
    o = bench.opts
    log(f"E: memory per idle socket ({o.idle_sockets} sockets)")
    results: dict[str, float] = {}
    ids = bench.fixtures.take(o.idle_sockets + WARM_SOCKETS)
    for label, app in (("bare", BARE_APP), ("chatsite", CHATSITE_APP)):
        with bench.servers((f"{label}-idle", app, bench.server_cpus, {})) as [(server, port)]:
            if label == "bare":
                paths = ["/ws/bare/"] * (o.idle_sockets + WARM_SOCKETS)
                headers = {"Origin": f"http://{HOST}:{port}"}
            else:
                paths = [ws_path(i) for i in ids]
                headers = bench.cookie_headers(port, bench.fixtures.session)
            idle_sockets(bench, f"E-{label}-warm", server, headers, port, paths[:WARM_SOCKETS])
            results[label] = idle_sockets(
                bench, f"E-{label}", server, headers, port, paths[WARM_SOCKETS:]
            )
    per_socket = results["chatsite"]
    bench.rows.append(
        Row(
            "E",
            "server memory per idle socket, KB",
            per_socket,
            results["bare"],
            "≤ 100 KB",
            verdict(per_socket <= MAX_KB_PER_IDLE_SOCKET),
        )
    )

    log(f"E: a client that stops reading, {o.stall_rate} deltas/s for {o.stall_seconds:.0f} s")
    stalls: dict[str, dict[str, Any]] = {}
    n = int(o.stall_rate * o.stall_seconds)
    spec = f"n={n} rate={o.stall_rate} ts=0 chars=1"
    stall_id = bench.fixtures.take(1)[0]
    for label, app in (("bare", BARE_APP), ("chatsite", CHATSITE_APP)):
        with bench.servers((f"{label}-stall", app, bench.server_cpus, {})) as [(server, port)]:
            stalls[label] = stalled_client(bench, label, server, port, spec, stall_id)
    chat, bare = stalls["chatsite"], stalls["bare"]
    bench.details["E-stall"] = stalls

    def is_bounded(r: dict[str, Any]) -> bool:
        return bool(r["second_half_mib"] <= MAX_SECOND_HALF_MIB)

    frame = json.dumps(
        {"type": "message.delta", "message_id": stall_id, "offset": n, "delta": "x"},
        ensure_ascii=False,
    )
    offered = n * (len(frame) + 2) / MIB
    bench.rows += [
        Row(
            "E",
            f"non-reading client: server RSS growth over {o.stall_seconds:.0f} s "
            f"({n:,} frames ≈ {offered:.1f} MiB sent to it), MiB",
            chat["growth_mib"],
            bare["growth_mib"],
        ),
        Row(
            "E",
            "  RSS growth in the second half, MiB (stops when bounded)",
            chat["second_half_mib"],
            bare["second_half_mib"],
            "≤ 2 MiB",
            verdict(is_bounded(chat)),
        ),
        Row(
            "E",
            "  data held for the client when it resumed reading, MiB",
            chat["queued_mib"],
            bare["queued_mib"],
        ),
        Row(
            "E",
            "  server closed the stalled socket",
            "yes" if chat["closed_by_server"] else "no",
            "yes" if bare["closed_by_server"] else "no",
        ),
        Row(
            "E",
            "  memory bounded",
            "yes" if is_bounded(chat) else "NO (unbounded)",
            "yes" if is_bounded(bare) else "NO (unbounded)",
        ),
    ]


def idle_sockets(
    bench: Runner,
    label: str,
    server: Child,
    headers: dict[str, str],
    port: int,
    paths: list[str],
) -> float:
    config = {
        "mode": "idle",
        "host": HOST,
        "headers": headers,
        "sockets": [[port, p] for p in paths],
        "connect_concurrency": 20,
    }
    time.sleep(1.0)
    before = rss_bytes(server.pid)
    load, lines = bench.start_loadgen(label, config, cpus=bench.load_cpus)
    try:
        ready = lines.expect("READY", 300)
        time.sleep(2.0)  # let the connects' last work settle
        after = rss_bytes(server.pid)
        lines.send({"close": True})
        lines.expect("RESULT", 60)
    finally:
        bench.children.stop(load)
    connected = max(1, ready["connected"])
    per_socket = (after - before) / connected / 1000
    if len(paths) > WARM_SOCKETS:
        log(
            f"{label}: {ready['connected']} sockets in {ready['seconds']} s "
            f"({ready['failed']} failed): RSS {before / MIB:.1f} -> {after / MIB:.1f} MiB, "
            f"{per_socket:.1f} KB per socket"
        )
        bench.details[label] = {
            **ready,
            "rss_before_mib": before / MIB,
            "rss_after_mib": after / MIB,
            "kb_per_socket": per_socket,
        }
    return per_socket


def stalled_client(
    bench: Runner, label: str, server: Child, port: int, spec: str, conversation_id: str
) -> dict[str, Any]:
    if label == "bare":
        path = f"/ws/bare/{spec.replace(' ', ',')}/"
        headers = {"Origin": f"http://{HOST}:{port}"}
    else:
        path = ws_path(conversation_id)
        headers = bench.cookie_headers(port, bench.fixtures.session)
    time.sleep(1.0)
    base = rss_bytes(server.pid)
    # 4 KiB (Linux doubles it): the TCP window stays tiny, so the server's kernel buffers
    # fill in a moment and everything after that piles up in the server process.
    sock = blocking_connect(HOST, port, path, headers, rcvbuf=4096)
    try:
        if label == "chatsite":
            frame = json.dumps({"type": "message.send", "content": f"bench {spec}"})
            sock.sendall(encode_frame(0x1, frame.encode()))
        samples = []
        began = time.monotonic()
        while time.monotonic() - began < bench.opts.stall_seconds:
            time.sleep(1.0)
            samples.append(rss_bytes(server.pid))
        # Now read: what arrives is what the server (and both kernels) held for this
        # client; an end of stream means the server gave up on it (a bound at work).
        queued, closed = drain(sock, seconds=5.0)
    finally:
        sock.close()
    time.sleep(1.0)
    released = rss_bytes(server.pid)
    half = samples[len(samples) // 2 - 1] if len(samples) >= 2 else base
    result = {
        "rss_base_mib": base / MIB,
        "samples_mib": [round(s / MIB, 1) for s in samples],
        "growth_mib": (samples[-1] - base) / MIB,
        "second_half_mib": (samples[-1] - half) / MIB,
        "after_close_mib": released / MIB,
        "queued_mib": queued / MIB,
        "closed_by_server": closed,
    }
    log(
        f"E-{label}-stall: RSS {base / MIB:.0f} MiB -> {samples[-1] / MIB:.0f} MiB "
        f"({result['growth_mib']:+.1f}, second half {result['second_half_mib']:+.1f}); "
        f"{queued / MIB:.1f} MiB was waiting for the client; server closed it: {closed}"
    )
    return result


def drain(sock: Any, seconds: float) -> tuple[int, bool]:
    """Read everything the server sends for `seconds`; (bytes read, whether it closed)."""
    sock.settimeout(0.5)
    received = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            continue
        except OSError:
            return received, True  # reset by the server
        if not data:
            return received, True
        received += len(data)
    return received, False
