"""Programs run by the live tests: example servers, tools, and a line client for them.

Shared by tests/live/test_examples.py, test_cli_chat.py and
test_websocket_bridge.py (no test module imports another). Every server binds
127.0.0.1 port 0 and prints the port; every wait is on a condition with a
deadline; every process is stopped by the test that started it.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tests import REPO

EXAMPLES = REPO / "examples"
#: Seconds any single wait may take before the test fails. Generous, because
#: the machine running CI may be busy; passing tests never wait this long.
DEADLINE = 15.0

_LISTENING = re.compile(r"listening on (?:http://)?\[?([0-9a-fA-F.:]+)\]?:(\d+)")

#: How to start each server a tool or example must work with.
SERVER_COMMANDS: dict[str, list[str]] = {
    "selectors": [sys.executable, str(EXAMPLES / "selectors_server.py"), "--port", "0"],
    "asyncio": [sys.executable, str(EXAMPLES / "asyncio_protocol.py"), "--port", "0"],
    "asyncio-uvloop": [
        sys.executable,
        str(EXAMPLES / "asyncio_protocol.py"),
        "--port",
        "0",
        "--uvloop",
    ],
    "chatproto-serve": [
        sys.executable,
        "-m",
        "chatproto.cli.serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--backend",
        "anyio",
        "--log-level",
        "warning",
    ],
}


def program_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", NO_COLOR="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


class Proc:
    """A subprocess whose output (stdout and stderr) a thread collects line by line."""

    def __init__(self, args: list[str], *, stdin: int | None = subprocess.DEVNULL) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            args,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=program_env(),
        )
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        self._seen = 0
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            self._new.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
        self._new.put(None)

    def wait_for(self, pattern: str, timeout: float = DEADLINE) -> re.Match[str]:
        """The first output line after the last match that matches ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            while self._seen < len(self.lines):
                line = self.lines[self._seen]
                self._seen += 1
                match = regex.search(line)
                if match:
                    return match
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern!r} from {self.args}: {self.lines}")
            try:
                item = self._new.get(timeout=remaining)
            except queue.Empty:
                continue
            if item is None:
                self._new.put(None)  # stay at end of output for later calls
                if self._seen == len(self.lines):
                    raise AssertionError(
                        f"{self.args} ended (status {self.popen.poll()}) without a line "
                        f"matching {pattern!r}: {self.lines}"
                    )
                continue
            self.lines.append(item)

    def exit_status(self, timeout: float = DEADLINE) -> int:
        """Wait for the process to end; its exit status."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.args} did not exit: {self.lines}") from None

    def send_sigint(self) -> None:
        self.popen.send_signal(signal.SIGINT)

    def interrupt(self, timeout: float = DEADLINE) -> int:
        """SIGINT, then wait for the exit status."""
        self.send_sigint()
        return self.exit_status(timeout)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        if self.popen.stdin is not None:
            self.popen.stdin.close()


@contextmanager
def running(args: list[str], *, stdin: int | None = subprocess.DEVNULL) -> Iterator[Proc]:
    """A :class:`Proc`, killed on the way out if the test did not stop it."""
    proc = Proc(args, stdin=stdin)
    try:
        yield proc
    finally:
        proc.kill()


@contextmanager
def start_server(kind: str, *extra: str) -> Iterator[tuple[Proc, int]]:
    """One of :data:`SERVER_COMMANDS` on a free port: the process and the port."""
    if kind == "asyncio-uvloop":
        pytest.importorskip("uvloop", reason="uvloop is not installed")
    with running([*SERVER_COMMANDS[kind], *extra]) as proc:
        match = proc.wait_for(_LISTENING.pattern)
        yield proc, int(match.group(2))


class LineClient:
    """A raw TCP client of the protocol: send lines, wait for lines, with deadlines."""

    def __init__(self, port: int, *, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(DEADLINE)
        self.sock.connect(("127.0.0.1", port))
        self._buf = b""
        self.eof = False

    def __enter__(self) -> LineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket. Servers may linger until their peers close
        (a graceful TCP close), so tests close clients before stopping one."""
        self.sock.close()

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(line + "\n" for line in lines).encode())

    def read_line(self, deadline: float) -> str | None:
        """The next line, ``None`` at end of stream; fails at ``deadline``."""
        while b"\n" not in self._buf:
            if self.eof:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; partial line {self._buf!r}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError(f"timed out; partial line {self._buf!r}") from None
            except ConnectionResetError:
                data = b""
            if not data:
                self.eof = True
            self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode("utf-8", "replace")

    def expect(self, wanted: str | Callable[[str], bool], timeout: float = DEADLINE) -> list[str]:
        """Read up to the first line that is (or satisfies) ``wanted``; every line read."""
        test = wanted if callable(wanted) else (lambda line: line == wanted)
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            line = self.read_line(deadline)
            if line is None:
                raise AssertionError(f"end of stream before {wanted!r}; got {seen}")
            seen.append(line)
            if test(line):
                return seen

    def sync(self, token: str = "sync") -> list[str]:
        """``PING token`` and read to its ``PONG``: the lines before it."""
        self.send(f"PING {token}")
        return self.expect(f"PONG {token}")[:-1]

    def login(self, name: str) -> None:
        self.send(f"LOGIN {name}")
        assert self.expect(lambda line: line == "OK" or line.startswith("ERR")) == ["OK"]

    def read_to_eof(self, timeout: float = DEADLINE) -> list[str]:
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while (line := self.read_line(deadline)) is not None:
            lines.append(line)
        return lines


# ------------------------------------------------------------ example servers
