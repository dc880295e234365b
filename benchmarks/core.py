"""The in-memory ceiling: how fast the sans-IO core is with no sockets at all.

Measures :class:`chatproto.ChatServer` alone, fed bytes the way an adapter
feeds them and drained the way an adapter drains them, with no I/O:

* ``parse``: lines executed per second: one logged-in connection sends
  chunks of ``PING <n>`` lines (parse, dispatch, reply queued, drained).
* ``broadcast N``: deliveries per second when one of N logged-in clients
  sends MSG lines (64-byte text), in chunks of 100 lines as a busy socket
  would deliver them, and every recipient's output is drained after each
  chunk: what one loop iteration of an adapter does. Deliveries = lines x
  (N - 1).

* ``single PING``: PING rounds per second when every ``PING`` arrives alone
  (one line per read, as a request/response client sends it) and the adapter's
  whole contract runs after each: ``receive_data``, ``take_ready``,
  ``data_to_send``, ``next_deadline``.
* ``single MSG 10``: deliveries per second when each of 10 clients' reads
  holds one ``MSG`` (as in a small room), drained after every round of 10.

The core is built as ``chatproto-serve`` builds it (``message_events=False``:
no event per chat line unless it logs at debug level), with flood control off
(``flood_rate=0``) as every throughput benchmark runs it: the clock does not
move here, so a flood budget would never refill. No server can beat
these numbers with the same core, so they bound every adapter's figures in
docs/performance.md. Each figure is the median of
``--repeat`` timed runs of about ``--seconds`` each.

Run: ``python benchmarks/core.py [--seconds 1] [--repeat 3] [--json]``.

``--steps N --only NAME`` runs one workload for exactly ``N`` steps, untimed,
for an instruction counter: wall time on a shared machine is noise, and
``valgrind --tool=callgrind`` counts the same instructions every run.
``benchmarks/core_instructions.py`` does that for every workload.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from chatproto import ChatServer, ConnId, ServerConfig

CHUNK_LINES = 100
BROADCAST_SIZES = (10, 100, 1000)


def _room(n: int) -> tuple[ChatServer, list[ConnId]]:
    """A server with ``n`` logged-in clients, their output drained."""
    # As chatproto-serve runs it: no per-message events unless it logs them.
    # Flood control off, as every throughput benchmark runs (docs/performance.md):
    # these loops feed as fast as the core takes lines, with the clock stopped.
    config = ServerConfig(max_clients=max(n, 1), idle_timeout=1e9, flood_rate=0.0)
    server = ChatServer(config, message_events=False)
    conns = []
    for i in range(n):
        conn = server.connection_made(0.0)
        server.receive_data(conn, b"LOGIN u%d\n" % i, 0.0)
        conns.append(conn)
    for conn in server.take_ready():
        server.data_to_send(conn)
    return server, conns


def _timed(step: Callable[[], int], seconds: float) -> float:
    """Run ``step`` (which returns a count) for about ``seconds``; count/s."""
    count = 0
    clock = time.perf_counter
    start = clock()
    deadline = start + seconds
    while True:
        count += step()
        now = clock()
        if now >= deadline:
            return count / (now - start)


def _feed_rate(
    n: int,
    reads: list[tuple[int, bytes]],
    count: int,
    seconds: float,
    *,
    each: bool = False,
    steps: int | None = None,
) -> float:
    """``count`` per step, a step being ``reads`` (client index, bytes) fed in a room of ``n``.

    Every connection with news is drained after the step, as an adapter does
    once per loop iteration; ``each``: after every read instead, with the
    rest of the adapter contract (``next_deadline``), as for a lone request.
    With ``steps``, it runs that many steps, untimed, and returns 0 (``--steps``).
    """
    step = _feeder(n, reads, count, each=each)
    if steps is not None:
        for _ in range(steps):
            step()
        return 0.0
    return _timed(step, seconds)


def _feeder(n: int, reads: list[tuple[int, bytes]], count: int, *, each: bool) -> Callable[[], int]:
    """The step of :func:`_feed_rate`, on a fresh room."""
    server, conns = _room(n)
    feeds = [(conns[i], data) for i, data in reads]
    receive, take, drain = server.receive_data, server.take_ready, server.data_to_send
    deadline = server.next_deadline

    def step() -> int:
        for conn, data in feeds:
            receive(conn, data, 1.0)
            if each:
                for ready in take():
                    drain(ready)
                deadline()
        for ready in take():
            drain(ready)
        return count

    return step


def parse_rate(seconds: float, *, steps: int | None = None) -> float:
    """Lines per second through receive_data, reply drained each chunk."""
    chunk = b"".join(b"PING %d\n" % i for i in range(CHUNK_LINES))
    return _feed_rate(1, [(0, chunk)], CHUNK_LINES, seconds, steps=steps)


def broadcast_rate(n: int, seconds: float, *, steps: int | None = None) -> float:
    """Deliveries per second for MSG lines from one of ``n`` clients."""
    chunk = b"MSG " + b"x" * 64 + b"\n"
    return _feed_rate(n, [(0, chunk * CHUNK_LINES)], CHUNK_LINES * (n - 1), seconds, steps=steps)


def single_ping_rate(seconds: float, *, steps: int | None = None) -> float:
    """PING rounds per second, one line per read, the adapter contract after each."""
    reads = [(0, b"PING\n")] * CHUNK_LINES
    return _feed_rate(1, reads, CHUNK_LINES, seconds, each=True, steps=steps)


def single_msg_rate(seconds: float, n: int = 10, *, steps: int | None = None) -> float:
    """Deliveries per second, one MSG per read from each of ``n`` clients in turn."""
    line = b"MSG " + b"x" * 64 + b"\n"
    return _feed_rate(n, [(i, line) for i in range(n)], n * (n - 1), seconds, steps=steps)


#: Every workload, by the name ``--only`` takes, run for a number of steps.
WORKLOADS: dict[str, Callable[[int], float]] = {
    "parse": lambda steps: parse_rate(0.0, steps=steps),
    **{
        f"broadcast-{n}": functools.partial(lambda n, steps: broadcast_rate(n, 0.0, steps=steps), n)
        for n in BROADCAST_SIZES
    },
    "single-ping": lambda steps: single_ping_rate(0.0, steps=steps),
    "single-msg-10": lambda steps: single_msg_rate(0.0, steps=steps),
}
#: What one step of each workload does, and how many: lines, deliveries or rounds.
UNITS: dict[str, tuple[int, str]] = {
    "parse": (CHUNK_LINES, "line"),
    **{f"broadcast-{n}": (CHUNK_LINES * (n - 1), "delivery") for n in BROADCAST_SIZES},
    "single-ping": (CHUNK_LINES, "round"),
    "single-msg-10": (10 * 9, "delivery"),
}


def run(seconds: float, repeat: int) -> dict[str, Any]:
    """Every figure, as the median of ``repeat`` runs; JSON-able."""
    out: dict[str, Any] = {
        "parse_lines_per_s": statistics.median(parse_rate(seconds) for _ in range(repeat))
    }
    for n in BROADCAST_SIZES:
        out[f"broadcast_{n}_deliveries_per_s"] = statistics.median(
            broadcast_rate(n, seconds) for _ in range(repeat)
        )
    out["single_ping_per_s"] = statistics.median(single_ping_rate(seconds) for _ in range(repeat))
    out["single_msg_10_deliveries_per_s"] = statistics.median(
        single_msg_rate(seconds) for _ in range(repeat)
    )
    out["seconds"] = seconds
    out["repeat"] = repeat
    out["chunk_lines"] = CHUNK_LINES
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per timed run")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per figure")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--steps", type=int, default=None, metavar="N", help="run --only for N steps, untimed"
    )
    parser.add_argument("--only", choices=list(WORKLOADS), help="the workload --steps runs")
    args = parser.parse_args(argv)
    if args.steps is not None:
        if args.only is None:
            parser.error("--steps needs --only")
        WORKLOADS[args.only](args.steps)
        return 0
    result = run(args.seconds, args.repeat)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"parse:          {result['parse_lines_per_s']:>14,.0f} lines/s")
        for n in BROADCAST_SIZES:
            rate = result[f"broadcast_{n}_deliveries_per_s"]
            print(f"broadcast {n:>5}: {rate:>14,.0f} deliveries/s")
        print(f"single PING:    {result['single_ping_per_s']:>14,.0f} rounds/s")
        rate = result["single_msg_10_deliveries_per_s"]
        print(f"single MSG 10:  {rate:>14,.0f} deliveries/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
