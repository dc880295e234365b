"""Many connections, cheaply: what 19,000 open connections cost a server (issue 10).

For each backend: start ``chatproto-serve`` (flood control off, idle timeout
long), then run ``chatproto-bench idle`` twice with a room of 100 users
fanning out beside the idle ones: once with no idle connection (the room's
rate on its own), once with 19,000 (spread over four loopback source
addresses and two processes, since one process may hold 20,000 descriptors).
Reports the server's RSS and its cost per idle connection, how long a new
client takes to log in among them, and the room's rate beside them against
its rate alone. Idle connections are not logged in (a login among 19,000
users costs each of them a notice); ``--idle-login`` logs them in too.

Run: ``python benchmarks/many_connections.py [--clients 19000] [--backends anyio-uvloop,gevent]``
(about a minute per backend; nothing else should run on the machine). It
prints a Markdown table; docs/performance.md carries the last one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from runner.server import parse_port
from runner.targets import serve_argv

from chatproto.adapters import FLAVOURS

HERE = os.path.dirname(os.path.abspath(__file__))


def serve(flavour: str) -> tuple[subprocess.Popen[str], int]:
    """Start chatproto-serve; return it and its port."""
    argv = [*serve_argv(*FLAVOURS[flavour], "--max-clients", "20000")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    port = parse_port(proc.stdout.readline())
    assert port is not None, "chatproto-serve printed no port"
    return proc, port


def bench(port: int, pid: int, clients: int, room: int, seconds: float) -> dict[str, Any]:
    """One ``chatproto-bench idle`` run, as its JSON result."""
    argv = [
        os.path.join(os.path.dirname(sys.executable), "chatproto-bench"),
        "idle",
        "--port",
        str(port),
        "--clients",
        str(clients),
        "--room",
        str(room),
        "--duration",
        str(seconds),
        "--source-addrs",
        "4",
        "--procs",
        "2",
        "--server-pid",
        str(pid),
        "--json",
        "--quiet",
    ]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--clients", type=int, default=19_000)
    p.add_argument("--room", type=int, default=100)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--backends", default="anyio-uvloop,gevent")
    args = p.parse_args(argv)
    rows = []
    for flavour in args.backends.split(","):
        alone_srv, port = serve(flavour)
        try:
            alone = bench(port, alone_srv.pid, 0, args.room, args.seconds)
        finally:
            alone_srv.send_signal(signal.SIGINT)
            alone_srv.wait(30)
        time.sleep(1.0)  # let the kernel forget the last run's sockets (TIME_WAIT)
        srv, port = serve(flavour)
        try:
            many = bench(port, srv.pid, args.clients, args.room, args.seconds)
        finally:
            srv.send_signal(signal.SIGINT)
            srv.wait(60)
        rows.append((flavour, alone, many))
        print(json.dumps({"flavour": flavour, "alone": alone, "many": many}), file=sys.stderr)
    print(
        f"| backend | RSS before | RSS with {args.clients:,} | KiB per connection "
        "| login among them p50 / p99 ms | room deliveries/s alone | beside them | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for flavour, alone, many in rows:
        before = many["rss_before_kb"] / 1024
        ready = many["rss_ready_kb"] / 1024
        per = (many["rss_ready_kb"] - many["rss_before_kb"]) / max(args.clients, 1)
        ratio = many["deliveries_per_s"] / max(alone["deliveries_per_s"], 1)
        print(
            f"| {flavour} | {before:.1f} MiB | {ready:.1f} MiB | {per:.2f} "
            f"| {many['probe_login_p50_us'] / 1000:.1f} / {many['probe_login_p99_us'] / 1000:.1f} "
            f"| {alone['deliveries_per_s']:,.0f} | {many['deliveries_per_s']:,.0f} | {ratio:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
