"""One command, one cluster: a Redis and three chatproto-serve nodes on this machine.

Starts ``redis-server`` (persistence off) and one node per backend (threading,
anyio, gevent by default), each ``chatproto-serve --cluster``, prints where
they listen, and stops everything on Ctrl-C. Connect to any node: it is one
chat room (docs/cluster.md)::

    python examples/cluster/run_cluster.py
    chatproto-chat localhost 4001 --name ann     # in another terminal
    chatproto-chat localhost 4003 --name bob     # and another

``--base-port 0`` lets every node pick a free port (the tests do that).
Needs ``redis-server`` (Debian: ``apt-get install redis-server``) and
``pip install 'chatproto[all]'``.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import time
from types import FrameType


def wait_for_port(port: int, proc: subprocess.Popen[str], seconds: float = 10.0) -> None:
    """Until ``port`` on 127.0.0.1 accepts connections (or the process died)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)  # a process that is starting up
    raise SystemExit(f"nothing listens on port {port}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--redis-port", type=int, default=7379, help="default 7379 (0: any free)")
    p.add_argument("--base-port", type=int, default=4001, help="nodes on 4001, 4002...")
    p.add_argument(
        "--backends",
        default="threading,anyio,gevent",
        help="one node per backend (default threading,anyio,gevent)",
    )
    p.add_argument("--lease", type=float, default=3.0, help="seconds (default 3)")
    args = p.parse_args()
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        print("redis-server is not installed (Debian: apt-get install redis-server)")
        return 1
    redis_port = args.redis_port
    if redis_port == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            redis_port = s.getsockname()[1]
    procs: list[subprocess.Popen[str]] = []
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        no_disk = ["--save", "", "--appendonly", "no"]
        redis = subprocess.Popen(
            [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", *no_disk],
            stdout=subprocess.DEVNULL,
            text=True,
        )
        procs.append(redis)
        wait_for_port(redis_port, redis)
        url = f"redis://127.0.0.1:{redis_port}/0"
        print(f"redis on 127.0.0.1:{redis_port}", flush=True)
        for i, backend in enumerate(args.backends.split(",")):
            port = args.base_port + i if args.base_port else 0
            where = ["--host", "127.0.0.1", "--port", str(port), "--backend", backend]
            cluster = ["--cluster", url, "--node-id", f"node{i + 1}", "--lease", str(args.lease)]
            node = subprocess.Popen(
                [sys.executable, "-m", "chatproto", *where, *cluster],
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.append(node)
            assert node.stdout is not None
            print(f"node{i + 1}: {node.stdout.readline().strip()}", flush=True)
        print("cluster ready; Ctrl-C stops it", flush=True)
        while not stopping and all(proc.poll() is None for proc in procs):
            time.sleep(0.2)  # the signal handler ends the wait
    finally:
        for proc in reversed(procs):  # the nodes first: their users leave cleanly
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    print("cluster stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
