"""What cluster mode costs the core per MSG, in memory (docs/performance.md, "Cluster mode").

The same broadcast as ``benchmarks/core.py`` (one of N logged-in users sends
MSG lines in chunks of 100; every output drained after each chunk), on a
plain :class:`~chatproto.ChatServer` and on a :class:`~chatproto.ClusterServer`
whose link to Redis is up (the Redis connection's output is drained like any
other and thrown away): the difference is the bus's cost per MSG on the
sender's node, one PUBLISH encoded and queued. Also: how fast a node delivers
MSG lines that come from the bus (another node's users), per delivery.

Each figure is the best of ``--repeat`` interleaved runs of ``--seconds``.
Run: ``python benchmarks/cluster_core.py [--seconds 0.5] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from chatproto import ChatServer, ClusterConfig, ClusterServer, ConnId, ServerConfig

CHUNK = 100


def _config(n: int) -> ServerConfig:
    return ServerConfig(max_clients=n + 1, idle_timeout=1e9, flood_rate=0.0)


def plain(n: int) -> tuple[ChatServer, list[ConnId]]:
    server = ChatServer(_config(n), message_events=False)
    conns = [server.connection_made(0.0) for _ in range(n)]
    for i, conn in enumerate(conns):
        server.receive_data(conn, b"LOGIN u%d\n" % i, 0.0)
    return server, conns


def linked(n: int) -> tuple[ClusterServer, list[ConnId], ConnId]:
    """A node whose link is up and whose n users are logged in (Redis's side played here)."""
    cluster = ClusterConfig(node_id="n", incarnation="i")
    server = ClusterServer(_config(n), cluster, message_events=False)
    server.handle_timeout(0.0)
    (dial,) = server.take_dials()
    bus = dial.conn
    server.bus_connected(bus, 0.0)
    # HELLO, CLIENT SETNAME, five SCRIPT LOADs; the subscription; the registration.
    replies: list[object] = [b"OK"] * 7 + [(b"subscribe", b"chatproto:bus", 1)]
    server.bus_received(bus, [*replies, [1, [], [], [b"n"]]], 0.0)  # type: ignore[list-item]
    conns = [server.connection_made(0.0) for _ in range(n)]
    for i, conn in enumerate(conns):
        server.receive_data(conn, b"LOGIN u%d\n" % i, 0.0)
        join = (b"message", b"chatproto:bus", b"J %d n/%d u%d" % (i + 1, i + 1, i))
        server.bus_received(bus, [join, i + 1], 0.0)
    return server, conns, bus


def drain(server: ChatServer) -> None:
    for conn in server.take_ready():
        server.data_to_send(conn)


def timed(run: Callable[[], int], seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        count += run()
    return count / (time.perf_counter() - start)


def measure(n: int, seconds: float, repeat: int) -> None:
    """Print the three rates for a room of ``n`` users."""
    chunk = (b"MSG " + b"x" * 64 + b"\n") * CHUNK
    server, conns = plain(n)
    drain(server)
    node, nconns, bus = linked(n)
    drain(node)
    remote = [(b"message", b"chatproto:bus", b"M other MSG far " + b"x" * 64 + b"\n")] * CHUNK

    def send_plain() -> int:
        server.receive_data(conns[0], chunk, 0.0)
        drain(server)
        return CHUNK * (n - 1)

    def send_node() -> int:
        node.receive_data(nconns[0], chunk, 0.0)
        drain(node)
        node.bus_received(bus, [1] * CHUNK, 0.0)  # Redis's replies to the PUBLISHes
        return CHUNK * (n - 1)

    def receive_remote() -> int:
        node.bus_received(bus, remote, 0.0)  # type: ignore[arg-type]
        drain(node)
        return CHUNK * n

    runs = (
        (f"broadcast {n:>4}, single node", send_plain),
        (f"broadcast {n:>4}, cluster node", send_node),
        (f"from the bus {n:>4}", receive_remote),
    )
    # Interleaved, best of ``repeat``: on a shared machine the best run is
    # the one least disturbed, and each variant gets the same chances.
    rates: dict[str, list[float]] = {label: [] for label, _ in runs}
    for _ in range(repeat):
        for label, run in runs:
            rates[label].append(timed(run, seconds))
    for label, _ in runs:
        print(f"{label:<32} {max(rates[label]):>14,.0f} deliveries/s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=0.5)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    for n in (10, 100):
        measure(n, args.seconds, args.repeat)


if __name__ == "__main__":
    main()
