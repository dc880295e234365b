"""Real Redis and real nodes for the cluster's tests: start, stop, freeze, cut.

:class:`RedisProcess` runs ``redis-server`` on 127.0.0.1 and a free port with
persistence off (a restart loses everything, as the spec's fault needs);
:class:`LinkProxy` is a TCP proxy between one node and Redis that a test can
sever and restore; :func:`node` starts ``chatproto-serve --cluster``. Every
wait has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from .live_server import DEADLINE, ServerProcess

REDIS = shutil.which("redis-server")

needs_redis = pytest.mark.skipif(
    REDIS is None,
    reason="redis-server is not installed (Debian: apt-get install redis-server; .ci/run does it)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisProcess:
    """A throwaway ``redis-server``: no snapshot, no append-only file."""

    def __init__(self, port: int | None = None) -> None:
        assert REDIS is not None
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            [
                REDIS,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)  # polling a process that is starting; bounded by the deadline

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, *args: str) -> bytes:
        """One command, its raw reply (for assertions on keys)."""
        payload = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=DEADLINE) as s:
            s.sendall(payload.encode())
            return s.recv(65536)

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(DEADLINE)


class LinkProxy:
    """TCP between one node and Redis, which the test can sever and restore.

    Severed, it closes every connection it carries and refuses new ones (it
    accepts and closes them at once): to the node, Redis is unreachable.
    """

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.severed = False
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if self.severed:
                    client.close()
                    continue
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.target), timeout=1.0)
                except OSError:
                    client.close()
                    continue
                upstream.settimeout(None)
                self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def sever(self) -> None:
        with self.lock:
            self.severed = True
            for s in self.open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self.open = []

    def restore(self) -> None:
        with self.lock:
            self.severed = False

    def close(self) -> None:
        self.stopping = True
        self.sever()
        self.listener.close()


@contextlib.contextmanager
def redis_server() -> Iterator[RedisProcess]:
    redis = RedisProcess()
    try:
        yield redis
    finally:
        redis.stop()


class Nodes:
    """The nodes a test started; all killed at the end."""

    def __init__(self) -> None:
        self.started: list[ServerProcess] = []

    def start(
        self, url: str, node_id: str, backend: list[str] | None = None, lease: float = 1.0
    ) -> ServerProcess:
        args = [*(backend or ["--backend", "threading"]), "--flood-rate", "0"]
        args += ["--cluster", url, "--node-id", node_id, "--lease", str(lease)]
        server = ServerProcess(args)
        self.started.append(server)
        return server

    def kill_all(self) -> None:
        for server in self.started:
            if server.proc.poll() is None:
                server.proc.kill()
            server.proc.communicate()


@contextlib.contextmanager
def nodes() -> Iterator[Nodes]:
    started = Nodes()
    try:
        yield started
    finally:
        started.kill_all()


def kill9(server: ServerProcess) -> None:
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(DEADLINE)
