"""The load tests' instruments: floods of lines, of connections, and of bytes.

Owns: the numbered flood lines (:func:`flood_lines`), :class:`Flooder` (one
test connection sending a flood from a thread while it reads what the server
sends it back, so that neither side blocks), :class:`ReaderProcess` (the
readers that keep up, in a process of their own: ``_load_reader.py`` run
with this interpreter, so that the suite's threads cannot starve them of the
interpreter lock, nor they the suite), :func:`knock` (many connections at
once, watched for a refusal and a close) and :func:`trickle` (slowloris:
bytes without a newline). The socket work of the load tests lives here;
never judges: the tests in ``_checks/load.py`` and
``_checks/load_connections.py`` do.
"""

from __future__ import annotations

import json
import queue
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from ._conn import Conn
from ._context import TestContext
from ._wire import Line

__all__ = [
    "ConnectionKnock",
    "Flooder",
    "ReaderProcess",
    "ReaderReport",
    "flood_lines",
    "knock",
    "trickle",
]

#: The reader script, run as a file (it imports nothing from chatproto).
READER_SCRIPT = Path(__file__).with_name("_load_reader.py")
#: Bytes offered to ``send`` at a time: more than the kernel takes at once, so
#: the flood leaves as fast as TCP allows, as with one ``sendall``.
SEND_CHUNK = 1 << 20
#: Bytes read at a time from the flooder's own connection.
READ_CHUNK = 65536
#: Lines the flooder keeps of what its connection received (an echoing
#: server sends the whole flood back: only the first ones are kept).
KEEP_LINES = 5000


def flood_lines(marker: str, count: int, size: int, start: int = 0) -> bytes:
    """``count`` MSG lines of exactly ``size`` bytes each, numbered from ``start``.

    Each is ``MSG <marker><6 digits> fff...``: the reader process finds the
    marker and checks the numbers, whatever the server adds around them.
    """
    head = len("MSG ") + len(marker) + 6 + len(" ")
    filler = size - head - 1
    if filler < 1:
        raise ValueError(f"a flood line of {size} bytes cannot hold the marker {marker!r}")
    tail = " " + "f" * filler + "\n"
    return "".join(f"MSG {marker}{n:06d}{tail}" for n in range(start, start + count)).encode()


class Flooder:
    """Floods one connection from a thread, and reads what comes back meanwhile.

    ``payload`` is sent once, or over and over with ``repeat`` until
    :meth:`stop`. Once it is sent the thread goes on reading, so that lines
    for this connection (a leave notice, an echo) never pile up unread. The
    connection's socket belongs to the thread until :meth:`stop`: the test
    must not read or write it through :class:`Conn` meanwhile. Every wait is
    bounded by the test's end.
    """

    def __init__(self, conn: Conn, payload: bytes, *, repeat: bool = False) -> None:
        self.conn = conn
        self.payload = payload
        self.repeat = repeat
        #: Bytes the server has taken (into the kernel's buffers at least).
        self.sent = 0
        #: Whether the server closed the connection.
        self.closed = False
        self._sent = threading.Event()
        self._news = threading.Condition()
        self._lines: list[Line] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"flood-{conn.label}", daemon=True)

    def __enter__(self) -> Flooder:
        self.conn.wire.record.add(
            self.conn.label,
            ">",
            f"(flood: {len(self.payload)} bytes" + (", over and over)" if self.repeat else ")"),
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def done(self) -> bool:
        """Whether the whole payload was sent (never, with ``repeat``)."""
        return self._sent.is_set()

    def stop(self) -> None:
        """Stop sending and reading, and wait for the thread (it notices within 50 ms)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(5.0)
        self.conn.wire.record.note(self.conn.label, f"flood stopped after {self.sent} bytes")

    def wait_sent(self, deadline: float) -> bool:
        """Until the payload is sent or ``deadline``; whether it was."""
        return self._sent.wait(max(0.0, deadline - time.monotonic()))

    def lines(self, start: int = 0) -> list[Line]:
        """The lines received so far, from the ``start``-th on (the first thousands only)."""
        with self._news:
            return self._lines[start:]

    def wait_line(self, count: int, deadline: float) -> bool:
        """Until more than ``count`` lines were received, the connection closed, or ``deadline``."""
        with self._news:
            return self._news.wait_for(
                lambda: len(self._lines) > count or self.closed,
                max(0.0, deadline - time.monotonic()),
            )

    def _run(self) -> None:
        wire = self.conn.wire
        sock = wire.sock
        view = memoryview(self.payload)
        pending = b""
        sel = selectors.DefaultSelector()
        try:
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            while not self._stop.is_set() and time.monotonic() < wire.hard_end:
                for _key, mask in sel.select(0.05):
                    if mask & selectors.EVENT_READ:
                        pending = self._take(sock, pending)
                        if self.closed:
                            return
                    if mask & selectors.EVENT_WRITE and view:
                        try:
                            sent = sock.send(view[:SEND_CHUNK])
                        except (BlockingIOError, InterruptedError):
                            sent = 0
                        except OSError:
                            self._closed()
                            return
                        self.sent += sent
                        view = view[sent:]
                        if not view and self.repeat:
                            view = memoryview(self.payload)
                        elif not view:
                            self._sent.set()
                            sel.modify(sock, selectors.EVENT_READ)
        finally:
            sel.close()
            if not wire.closed:
                sock.setblocking(True)

    def _closed(self) -> None:
        with self._news:
            self.closed = True
            self._news.notify_all()

    def _take(self, sock: socket.socket, pending: bytes) -> bytes:
        try:
            data = sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return pending
        except OSError:
            data = b""
        if not data:
            self._closed()
            return pending
        *lines, rest = (pending + data).split(b"\n")
        if lines:
            with self._news:
                room = KEEP_LINES - len(self._lines)
                for raw in lines[: max(0, room)]:
                    crlf = raw.endswith(b"\r")
                    self._lines.append(Line(raw[:-1] if crlf else raw, crlf))
                self._news.notify_all()
        return rest


@dataclass(frozen=True)
class ReaderReport:
    """What one connection of the reader process saw."""

    name: str
    #: Flood lines received.
    count: int
    #: The first missing or reordered flood line, in words (``--ordered``).
    gap: str | None
    #: Whether the server closed the connection.
    eof: bool
    #: The last lines that were not flood lines.
    others: tuple[str, ...]
    #: The very last line.
    last: str
    first_t: float | None
    last_t: float | None


class ReaderProcess:
    """Readers that keep up, logged in under the test's names, in their own process.

    Use as a context manager: entering starts the process and waits until every
    reader is logged in (the test fails if one cannot be); leaving stops it.
    """

    def __init__(
        self,
        ctx: TestContext,
        labels: Sequence[str],
        marker: str,
        *,
        expect: int = 0,
        ordered: bool = False,
    ) -> None:
        self.ctx = ctx
        self.names = [ctx.name(label) for label in labels]
        self.marker = marker
        self.expect = expect
        self.ordered = ordered
        #: The latest flood line counts, one per reader, and when (seconds after ready).
        self.counts = [0] * len(self.names)
        self.t = 0.0
        #: When the readers were all logged in (monotonic).
        self.ready_at = 0.0
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._proc: subprocess.Popen[bytes] | None = None
        self._final: list[ReaderReport] | None = None

    def __enter__(self) -> ReaderProcess:
        ctx = self.ctx
        host, port = ctx.address
        budget = max(1.0, ctx.hard_end - time.monotonic())
        args = [sys.executable, str(READER_SCRIPT), host, str(port)]
        for name in self.names:
            args += ["--name", name]
        args += ["--banner", str(len(ctx.dialect.banner)), "--marker", self.marker]
        args += ["--expect", str(self.expect), "--deadline", f"{budget:.1f}"]
        args += ["--login-timeout", str(ctx.settings.line_timeout)]
        if self.ordered:
            args.append("--ordered")
        self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        threading.Thread(target=self._pump, name="reader-process", daemon=True).start()
        first = self._next(ctx.deadline(ctx.settings.line_timeout * 2))
        if first is None or not first.get("ready"):
            why = "nothing" if first is None else first.get("error", first)
            self.close()
            ctx.fail(f"the reader process could not log in: {why}", got=str(why))
        self.ready_at = time.monotonic()
        ctx.note("", f"reader process logged in {', '.join(self.names)} and reads (recv 1 MiB)")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _pump(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for raw in proc.stdout:
            try:
                self._lines.put(json.loads(raw))
            except ValueError:
                continue
        self._lines.put(None)

    def _next(self, deadline: float) -> dict[str, Any] | None:
        try:
            return self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None

    def progress(self, deadline: float) -> bool:
        """Wait for the next progress report until ``deadline``; whether one came.

        :attr:`counts` and :attr:`t` are updated. After the final report
        (every reader done or closed) it returns ``False`` at once.
        """
        if self._final is not None:
            return False
        got = self._next(deadline)
        if got is None:
            return False
        if got.get("done"):
            self._final = [_report(r) for r in got["readers"]]
            self.counts = [r.count for r in self._final]
            return True
        self.counts = list(got["counts"])
        self.t = float(got["t"])
        return True

    @property
    def finished(self) -> bool:
        """Whether the process has given its final report."""
        return self._final is not None

    def report(self, timeout: float = 5.0) -> list[ReaderReport]:
        """Stop reading (if not done) and return what each reader saw."""
        if self._final is None and self._proc is not None and self._proc.stdin is not None:
            try:
                self._proc.stdin.close()  # the process reports and stops
            except OSError:
                pass
        end = time.monotonic() + timeout
        while self._final is None:
            if not self.progress(end) and time.monotonic() >= end:
                self.ctx.fail("the reader process gave no report")
        for r in self._final:
            self.ctx.note(
                r.name,
                f"reader process: {r.count} flood lines, closed by the server: {r.eof}, "
                f"last other lines: {list(r.others)}",
            )
        return list(self._final)

    def close(self) -> None:
        """Stop the process (it is stopped anyway at its own deadline)."""
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
        try:
            proc.wait(2.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(2.0)


def _report(data: dict[str, Any]) -> ReaderReport:
    return ReaderReport(
        name=data["name"],
        count=int(data["count"]),
        gap=data.get("gap"),
        eof=bool(data["eof"]),
        others=tuple(data.get("others", ())),
        last=str(data.get("last", "")),
        first_t=data.get("first_t"),
        last_t=data.get("last_t"),
    )


@dataclass
class ConnectionKnock:
    """One connection of a connection flood, and how the server treated it."""

    label: str
    conn: Conn
    #: When it connected (monotonic).
    began: float
    #: Seconds from the connect to the first ``ERR`` line (``None``: none came).
    err_after: float | None = None
    #: That line.
    first_error: Line | None = None
    #: Seconds from the connect to the server's close (``None``: still open).
    closed_after: float | None = None

    def watch_until(self, refuse_within: float, close_after: float) -> float:
        """Until when it is watched: its ERR's deadline, or its close's once the ERR came."""
        if self.err_after is None:
            return self.began + refuse_within
        return self.began + self.err_after + close_after

    def read(self) -> None:
        """Take what arrived: the first ``ERR`` line, and the server's close."""
        wire = self.conn.wire
        wire.read_available()
        now = time.monotonic()
        while wire.has_buffered_line():
            line = wire.read_line(now)
            if self.first_error is None and line.text.upper().startswith("ERR"):
                self.first_error = line
                self.err_after = now - self.began
        if wire.eof:
            self.closed_after = now - self.began


def knock(
    ctx: TestContext, labels: Sequence[str], *, refuse_within: float, close_after: float
) -> list[ConnectionKnock]:
    """Open one connection per label at once, send nothing, and watch what the server does.

    Each is watched until it is closed, or for ``refuse_within`` seconds if no
    ``ERR`` comes (then it counts as admitted and stays open for the test),
    or for ``close_after`` seconds after its ``ERR``. Returns, per label,
    when the ``ERR`` came and when the server closed the connection.
    """
    knocks: list[ConnectionKnock] = []
    for label in labels:
        conn = ctx.connect(label, banner=False)
        conn.wire.verbose = False
        conn.final_check = False
        knocks.append(ConnectionKnock(label, conn, time.monotonic()))
    sel = selectors.DefaultSelector()
    try:
        for k in knocks:
            sel.register(k.conn.wire.sock, selectors.EVENT_READ, k)
        while True:
            now = time.monotonic()
            waits = [
                k.watch_until(refuse_within, close_after) - now
                for k in knocks
                if k.closed_after is None
            ]
            waits = [w for w in waits if w > 0]
            if not waits or now >= ctx.hard_end:
                return knocks
            for key, _ in sel.select(min(waits)):
                k = key.data
                k.read()
                if k.closed_after is not None:
                    sel.unregister(k.conn.wire.sock)
    finally:
        sel.close()


def trickle(
    ctx: TestContext,
    conns: Sequence[Conn],
    text: bytes,
    *,
    every: float,
    limit: float,
    between: Callable[[], None],
) -> list[float | None]:
    """Send ``text`` one byte at a time to each open connection, every ``every`` seconds.

    Stops when every connection was closed by the server or ``limit``
    seconds have passed; calls ``between`` after each round. Returns, per
    connection, the seconds from the first round to its close (``None``:
    still open).
    """
    began = time.monotonic()
    end = min(began + limit, ctx.hard_end)
    closed: list[float | None] = [None] * len(conns)
    sel = selectors.DefaultSelector()
    try:
        for i, c in enumerate(conns):
            sel.register(c.wire.sock, selectors.EVENT_READ, i)
        for step in range(len(text)):
            if time.monotonic() >= end or all(x is not None for x in closed):
                break
            for i, c in enumerate(conns):
                if closed[i] is None:
                    try:
                        c.wire.sock.send(text[step : step + 1])
                    except OSError:
                        pass  # closed meanwhile: its end of stream is read below
            between()
            next_round = min(began + (step + 1) * every, end)
            while (remaining := next_round - time.monotonic()) > 0:
                for key, _ in sel.select(remaining):
                    i = key.data
                    wire = conns[i].wire
                    wire.read_available()
                    if wire.eof:
                        closed[i] = time.monotonic() - began
                        sel.unregister(wire.sock)
    finally:
        sel.close()
    return closed
