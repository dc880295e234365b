"""The runnable examples, run: each example server and the bot as a subprocess over loopback.

Every server binds 127.0.0.1 port 0 and prints the port; every wait is on a
condition with a deadline (a ``PING``/``PONG`` round trip is the barrier that
proves earlier lines were processed); every process is stopped by the test.

The helpers at the top (:class:`Proc`, :class:`LineClient`, :func:`start_server`)
are also used by tests/test_chat_client.py and tests/test_websocket_bridge.py.
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
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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


def _env() -> dict[str, str]:
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
            env=_env(),
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

EXAMPLE_SERVERS = ["selectors", "asyncio", "asyncio-uvloop"]


@pytest.mark.parametrize("kind", EXAMPLE_SERVERS)
def test_example_server_chat_and_graceful_shutdown(kind: str) -> None:
    with start_server(kind) as (server, port), LineClient(port) as alice, LineClient(port) as bob:
        alice.send("PING before-login")
        assert alice.expect("PONG before-login") == ["PONG before-login"]
        alice.login("alice")
        bob.login("Bob")
        assert alice.expect("INFO Bob joined") == ["INFO Bob joined"]

        alice.send("MSG hello  there")
        assert bob.expect("MSG alice hello  there") == ["MSG alice hello  there"]
        bob.send("DM ALICE hi", "WHO", "PING 7")
        assert bob.expect("PONG 7") == ["OK", "USER alice", "USER Bob", "PONG 7"]
        assert alice.sync() == ["DM Bob hi"]

        server.send_sigint()
        # §12.5: the notice, then each other user leaving, then the close.
        assert alice.read_to_eof() == ["INFO server-shutdown", "INFO Bob disconnected"]
        assert bob.read_to_eof() == ["INFO server-shutdown", "INFO alice disconnected"]
        alice.close()
        bob.close()
        assert server.exit_status() == 0


@pytest.mark.parametrize("kind", EXAMPLE_SERVERS)
def test_example_server_half_close_quit_and_leave(kind: str) -> None:
    with start_server(kind) as (server, port), LineClient(port) as alice:
        alice.login("alice")
        with LineClient(port) as carol:
            carol.login("carol")
            carol.send("MSG bye", "PING last")
            carol.sock.shutdown(socket.SHUT_WR)  # half-close: replies still come
            assert carol.read_to_eof() == ["PONG last"]
        assert alice.expect("INFO carol disconnected") == [
            "INFO carol joined",
            "MSG carol bye",
            "INFO carol disconnected",
        ]
        with LineClient(port) as dave:
            dave.send("QUIT", "PING never")  # nothing after QUIT is executed
            assert dave.read_to_eof() == ["OK"]
        alice.close()
        assert server.interrupt() == 0


@pytest.mark.parametrize("kind", EXAMPLE_SERVERS)
def test_example_server_idle_timeout(kind: str) -> None:
    with start_server(kind, "--idle-timeout", "0.3") as (server, port):
        with LineClient(port) as idle:
            # The server's timer, not any input, ends this connection.
            assert idle.read_to_eof() == ["INFO idle-timeout"]
        assert server.interrupt() == 0


@pytest.mark.parametrize("kind", ["asyncio", "asyncio-uvloop"])
def test_asyncio_example_drops_a_slow_consumer(kind: str) -> None:
    # A reader with a tiny receive buffer that never reads: once the kernel
    # buffers and the transport's buffer are full, the transport pauses
    # writing, output piles up in the core, and the core's cap drops it.
    cap = 64 * 1024
    args = ("--max-outbound-bytes", str(cap), "--flood-rate", "0")
    with (
        start_server(kind, *args) as (server, port),
        LineClient(port) as talker,
        LineClient(port, rcvbuf=4096) as sleeper,
    ):
        sleeper.login("sleeper")
        talker.login("talker")
        text = "x" * 4000
        deadline = time.monotonic() + DEADLINE
        dropped = False
        while not dropped:
            assert time.monotonic() < deadline, "the slow consumer was never dropped"
            talker.send(*[f"MSG {text}"] * 64)
            dropped = "INFO sleeper disconnected" in talker.sync()
        # The others are not held back: the room still works.
        talker.send("WHO")
        assert talker.sync() == ["USER talker"]
        talker.close()
        sleeper.close()  # else the server waits close_timeout for its FIN
        assert server.interrupt() == 0


# ---------------------------------------------------------------------- bot


@pytest.mark.parametrize("kind", ["selectors", "chatproto-serve"])
def test_bot_answers_time_and_users(kind: str) -> None:
    with start_server(kind) as (server, port):
        with running([sys.executable, str(EXAMPLES / "bot.py"), "127.0.0.1", str(port)]) as bot:
            bot.wait_for(r"bot logged in as bot on ")
            with LineClient(port) as alice:
                alice.login("alice")
                alice.send("MSG !time")
                assert re.fullmatch(
                    r"MSG bot alice: the time is \d{4}-\d\d-\d\d \d\d:\d\d:\d\d.*",
                    alice.expect(lambda line: line.startswith("MSG bot"))[-1],
                )
                alice.send("MSG !users")
                assert alice.expect(lambda line: line.startswith("MSG bot")) == [
                    "MSG bot users (2): bot, alice"
                ]
                alice.send("DM bot !users")
                assert alice.expect(lambda line: line.startswith("DM bot")) == [
                    "OK",
                    "DM bot users (2): bot, alice",
                ]
                alice.send("DM bot !TIME")
                assert alice.expect(lambda line: line.startswith("DM bot"))[-1].startswith(
                    "DM bot the time is "
                )
                alice.send("MSG hello bot")  # not a command: no answer
                alice.sync("quiet")
                assert bot.interrupt() == 0
                assert alice.expect("INFO bot disconnected") == ["INFO bot disconnected"]
        assert server.interrupt() == 0


def test_bot_leaves_when_the_server_shuts_down() -> None:
    with (
        start_server("asyncio") as (server, port),
        running([sys.executable, str(EXAMPLES / "bot.py"), "127.0.0.1", str(port)]) as bot,
    ):
        bot.wait_for(r"bot logged in as bot")
        assert server.interrupt() == 0
        bot.wait_for("the server closed the connection")
        assert bot.exit_status() == 0


def test_bot_reports_a_refused_login() -> None:
    with start_server("selectors") as (server, port):
        with LineClient(port) as squatter:
            squatter.login("bot")
            bot_py = [sys.executable, str(EXAMPLES / "bot.py"), "127.0.0.1", str(port)]
            with running(bot_py) as bot:
                bot.wait_for("login refused: username-taken")
                assert bot.exit_status() == 1
        assert server.interrupt() == 0


#: Every runnable script a reader may ask for --help.
SCRIPTS = [
    *sorted(p.relative_to(REPO) for p in EXAMPLES.glob("*.py")),
    Path("examples/websocket_bridge/bridge.py"),
    *sorted(p.relative_to(REPO) for p in (REPO / "benchmarks").glob("*.py")),
]
#: reStructuredText roles and literals: the docstrings' markup, not help text.
_MARKUP = re.compile(r"``|:(?:class|meth|mod|func|data|attr):|`[^`]+`_?")


@pytest.mark.parametrize("script", SCRIPTS, ids=str)
def test_help_is_plain_text(script: Path) -> None:
    """Defect 6 of issue 13: ``examples/bot.py --help`` showed raw reST markup."""
    done = subprocess.run(
        [sys.executable, str(REPO / script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=_env(),
    )
    if done.returncode != 0 and "ModuleNotFoundError" in done.stderr:
        pytest.skip(f"{script} needs an extra that is not installed")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")
    assert not _MARKUP.search(done.stdout), done.stdout
