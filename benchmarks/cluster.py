"""Cluster mode measured side by side, in one run (docs/performance.md, "Cluster mode").

Runs ``chatproto-bench fanout`` (100 clients, 10 senders) against:

* ``single``: one ``chatproto-serve`` without ``--cluster`` (the baseline);
* ``single (main)``: the same, from another checkout (``--baseline-tree``,
  e.g. the main branch), to show that single-node throughput did not move;
* ``cluster, 1 node``: one node with ``--cluster``: every client on it, every
  MSG also published once to Redis (and echoed back, ignored);
* ``cluster, 2 nodes``: two nodes, clients spread over them in turn: half of
  every MSG's deliveries cross Redis.

For each: deliveries per second, end-to-end latency p50/p99 (the timestamp a
MSG carries, read by every recipient: across nodes when spread), each node's
RSS and CPU, and from Redis's own counters the PUBLISH calls per MSG sent and
Redis's CPU per PUBLISH. Servers run with ``--flood-rate 0`` like every
throughput benchmark.

Run: ``python benchmarks/cluster.py [--seconds 4] [--backend anyio] [--baseline-tree DIR]
[--json FILE]``. Needs ``redis-server`` (Debian: apt-get install redis-server).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

CLIENTS, SENDERS = 100, 10


@dataclass
class Row:
    """One configuration's figures."""

    name: str
    nodes: int
    deliveries_per_s: float
    #: Deliveries seen / expected in the measured window (1.0: none lost).
    delivery_ratio: float
    p50_ms: float
    p99_ms: float
    rss_mib: list[float]
    cpu_s: list[float]
    msgs: int
    publishes: int
    redis_usec_per_publish: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)  # a server that is starting; bounded by the deadline
    raise RuntimeError(f"nothing listens on {port}")


def redis_call(port: int, *args: str) -> bytes:
    payload = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload.encode())
        time.sleep(0.05)  # one short reply; INFO fits in one read once written
        return s.recv(1 << 20)


def publish_stats(port: int) -> tuple[int, float]:
    """Redis's PUBLISH calls so far, and its CPU per call (µs)."""
    info = redis_call(port, "INFO", "commandstats").decode()
    for line in info.splitlines():
        if line.startswith("cmdstat_publish:"):
            fields = dict(kv.split("=") for kv in line.split(":", 1)[1].split(","))
            return int(fields["calls"]), float(fields["usec_per_call"])
    return 0, 0.0


def proc_figures(pid: int) -> tuple[float, float]:
    """RSS (MiB) and CPU seconds (user + system) of a process."""
    rss = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss, (int(fields[11]) + int(fields[12])) / ticks


class Node:
    """A chatproto-serve process."""

    def __init__(self, args: list[str], tree: str | None = None) -> None:
        env = dict(os.environ)
        if tree is not None:
            env["PYTHONPATH"] = tree
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chatproto", "--host", "127.0.0.1", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def bench(ports: list[int], seconds: float) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "chatproto.bench.cli",
        "fanout",
        "--port",
        str(ports[0]),
        "--clients",
        str(CLIENTS),
        "--senders",
        str(SENDERS),
        "--duration",
        str(seconds),
        "--warmup",
        "1",
        "--json",
        "--quiet",
    ]
    if len(ports) > 1:
        cmd += ["--more-ports", ",".join(map(str, ports[1:]))]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run_config(
    name: str,
    node_args: list[list[str]],
    redis_port: int | None,
    seconds: float,
    tree: str | None = None,
) -> Row:
    nodes = [Node(args, tree) for args in node_args]
    try:
        for node in nodes:
            wait_port(node.port, time.monotonic() + 20)
        if redis_port is not None:
            # Every node linked: a LOGIN answers only once the node is in the cluster.
            for node in nodes:
                with socket.create_connection(("127.0.0.1", node.port), timeout=10) as s:
                    s.sendall(b"LOGIN zzbenchready\nQUIT\n")
                    assert s.makefile().readline().strip() == "OK"
        before = publish_stats(redis_port) if redis_port is not None else (0, 0.0)
        result = bench([n.port for n in nodes], seconds)
        after = publish_stats(redis_port) if redis_port is not None else (0, 0.0)
        figures = [proc_figures(n.proc.pid) for n in nodes]
    finally:
        for node in nodes:
            node.stop()
    return Row(
        name=name,
        nodes=len(nodes),
        deliveries_per_s=float(result["deliveries_per_s"]),
        delivery_ratio=float(result["delivery_ratio"]),
        p50_ms=float(result["lat_p50_us"]) / 1000,
        p99_ms=float(result["lat_p99_us"]) / 1000,
        rss_mib=[round(r, 1) for r, _ in figures],
        cpu_s=[round(c, 2) for _, c in figures],
        msgs=int(result["sent_total"]),
        # Less each client's join and leave, published by the claim scripts.
        publishes=max(0, after[0] - before[0] - 2 * CLIENTS) if redis_port else 0,
        redis_usec_per_publish=after[1],
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--backend", default="anyio", choices=("threading", "anyio", "gevent"))
    p.add_argument("--baseline-tree", help="another checkout to run the single node from")
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args()
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        print("redis-server is not installed", file=sys.stderr)
        return 1
    redis_port = free_port()
    redis_args = ["--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
    redis = subprocess.Popen(
        [redis_server, *redis_args, "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_port(redis_port, time.monotonic() + 10)
        base = ["--backend", args.backend, "--flood-rate", "0", "--log-level", "warning"]
        url = f"redis://127.0.0.1:{redis_port}/0"
        rows = []
        if args.baseline_tree:
            rows.append(
                run_config("single (baseline tree)", [base], None, args.seconds, args.baseline_tree)
            )
        rows.append(run_config("single", [base], None, args.seconds))
        rows.append(
            run_config(
                "cluster, 1 node",
                [[*base, "--cluster", url, "--node-id", "b1"]],
                redis_port,
                args.seconds,
            )
        )
        two = [[*base, "--cluster", url, "--node-id", f"b2-{i}"] for i in range(2)]
        rows.append(run_config("cluster, 2 nodes", two, redis_port, args.seconds))
    finally:
        redis.kill()
        redis.wait()
    print(
        f"fanout {CLIENTS} clients x {SENDERS} senders, backend {args.backend}, {args.seconds:g} s"
    )
    print(
        f"{'configuration':<24} {'deliveries/s':>12} {'ratio':>5} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'PUBLISH/MSG':>11} {'Redis µs/PUBLISH':>16}  RSS MiB per node   CPU s per node"
    )
    for r in rows:
        per = r.publishes / r.msgs if r.msgs else 0.0
        print(
            f"{r.name:<24} {r.deliveries_per_s:>12,.0f} {r.delivery_ratio:>5.2f} "
            f"{r.p50_ms:>7.2f} {r.p99_ms:>7.2f} "
            f"{per:>11.2f} {r.redis_usec_per_publish:>16.2f}  {r.rss_mib!s:<17} {r.cpu_s}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
