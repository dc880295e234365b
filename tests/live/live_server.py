"""Test helpers for real servers over loopback TCP: start ``chatproto-serve``, talk to it.

Every wait has a deadline; synchronisation is by protocol (a ``PING``/``PONG``
round trip proves the server processed everything sent before it).
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from chatproto.adapters import FLAVOURS
from tests import REPO

DEADLINE = 10.0  # generous: CI machines are busy; a passing test never waits this long

#: Backend flavours under test, as chatproto-serve arguments (one list, the adapters').
BACKENDS: dict[str, list[str]] = {name: list(args) for name, args in FLAVOURS.items()}
#: The stdlib reference server of examples/, run where a test applies to any server.
SELECTORS_EXAMPLE = [str(REPO / "examples" / "selectors_server.py")]


class ServerProcess:
    """A ``chatproto-serve`` subprocess on 127.0.0.1 and a free port."""

    def __init__(self, args: list[str], **popen: Any) -> None:
        # The log goes to a file: a pipe nobody reads would fill up and block
        # the server as soon as it logs 64 KiB.
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the server
        # chatproto-serve, or a script given as the first argument (an example).
        program = [args[0]] if args and args[0].endswith(".py") else ["-m", "chatproto"]
        rest = args[1:] if args and args[0].endswith(".py") else args
        self.proc = subprocess.Popen(
            [sys.executable, *program, "--host", "127.0.0.1", "--port", "0", *rest],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            **popen,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            self.proc.wait(DEADLINE)
            raise RuntimeError(f"server did not start: {line!r} {self.stderr()[-2000:]}")
        self.banner = line
        self.signalled = False
        self.port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])

    def signal(self, signum: int) -> None:
        """Send ``signum``; :meth:`stop` then only waits (a second SIGINT would force an exit)."""
        self.signalled = True
        self.proc.send_signal(signum)

    def stop(self) -> tuple[int, str]:
        """SIGINT (unless :meth:`signal` sent one), then wait; returns the exit code and stderr."""
        if self.proc.poll() is None and not self.signalled:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.communicate(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise AssertionError(
                f"server did not stop within {DEADLINE}s:\n{self.stderr()[-2000:]}"
            ) from None
        return self.proc.returncode, self.stderr()

    def stderr(self) -> str:
        """Everything the server logged so far."""
        self.log.seek(0)
        return self.log.read()

    def wait_logged(self, text: str, timeout: float = DEADLINE) -> str:
        """Wait until the log contains ``text``; returns the log so far."""
        deadline = time.monotonic() + timeout
        while text not in (logged := self.stderr()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"the server never logged {text!r}:\n{logged[-2000:]}")
            time.sleep(0.02)  # polling a file: there is nothing to wait on
        return logged


@contextmanager
def running_server(args: list[str], **popen: Any) -> Iterator[ServerProcess]:
    server = ServerProcess(args, **popen)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.communicate()


class Client:
    """A line client with deadlines."""

    _tokens = itertools.count()

    def __init__(self, port: int, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(DEADLINE)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.eof = False

    @classmethod
    def over_tls(cls, port: int, context: ssl.SSLContext) -> Client:
        """A client that speaks TLS (the handshake is part of connecting)."""
        client = cls(port)
        client.sock = context.wrap_socket(client.sock, server_hostname="127.0.0.1")
        return client

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self, timeout: float = DEADLINE) -> str:
        """The next line; AssertionError at the deadline or at end of stream."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line within {timeout}s (have {self.buf!r})")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                self.eof = True
                raise AssertionError(f"end of stream while waiting for a line (have {self.buf!r})")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode("utf-8")

    def expect(self, *lines: str) -> None:
        for want in lines:
            got = self.line()
            assert got == want, f"expected {want!r}, got {got!r}"

    def sync(self) -> list[str]:
        """PING round trip; returns the lines that arrived before the PONG."""
        token = f"sync{next(self._tokens)}"
        self.send(f"PING {token}\n".encode())
        before = []
        while (line := self.line()) != f"PONG {token}":
            before.append(line)
        return before

    def login(self, name: str) -> Client:
        self.send(f"LOGIN {name}\n".encode())
        self.expect("OK")
        return self

    def wait_eof(self, timeout: float = DEADLINE) -> list[str]:
        """Read until the server closes; returns the lines before that."""
        lines = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                lines.append(self.line(max(0.0, deadline - time.monotonic())))
            except AssertionError:
                if self.eof:
                    return lines
                raise

    def close(self) -> None:
        self.sock.close()


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def env_without(module: str, tmp: str) -> dict[str, str]:
    """An environment in which importing ``module`` fails, as if not installed."""
    with open(os.path.join(tmp, f"{module}.py"), "w") as f:
        f.write(f"raise ImportError({f'No module named {module}'!r})\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = tmp + os.pathsep + env.get("PYTHONPATH", "")
    return env
