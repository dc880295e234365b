"""A reader that keeps up, in a process of its own: the load tests' witness.

Run by the suite as ``python _load_reader.py HOST PORT --name NAME ...`` (with
the suite's own interpreter; standard library only, imports nothing from
chatproto, so it starts fast and cannot be starved by the suite's threads).
Each ``--name`` is one connection: it reads the server's banner lines
(``--banner N``), logs in, and once all are in, the process prints one JSON
line ``{"ready": true}``. Then it reads every connection as fast as it can:
``recv`` of 1 MiB in a tight loop until the socket is empty, the reader that
keeps up of issue 10.

Flood lines are recognised by ``--marker``: a line that contains it is one
flood line, numbered by the six digits that follow the marker. With
``--ordered`` every reader must see them numbered 0, 1, 2, ... with no gap
(the first gap is reported). Whatever the server decorates a line with
(a timestamp, the sender's name) does not matter.

Every 0.1 s while something changes it prints ``{"t": S, "counts": [...]}``
(seconds since ready, flood lines per reader). It stops when each reader has
``--expect`` flood lines or was closed, when ``--deadline`` seconds have
passed, or when its standard input ends (the suite closes it), and prints
``{"done": true, "readers": [...]}``: per reader its count, the first gap,
whether the server closed it, and the last lines that were not flood lines.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time
from dataclasses import asdict, dataclass, field

#: Bytes asked for per ``recv``: far more than a socket buffer holds, so one
#: call takes everything the kernel has.
RECV_SIZE = 1 << 20
#: Seconds between progress lines (when something changed).
PROGRESS_EVERY = 0.1
#: Non-flood lines kept per reader, for the report.
KEEP_OTHERS = 5


@dataclass
class Reader:
    """What one connection saw."""

    name: str
    count: int = 0
    #: The first missing or out-of-order flood line, in words.
    gap: str | None = None
    #: Whether the server closed the connection.
    eof: bool = False
    #: The last lines that were not flood lines (a leave notice, INFO slow-consumer).
    others: list[str] = field(default_factory=list)
    #: The very last line, flood or not.
    last: str = ""
    #: Seconds after ready of the first and the last flood line.
    first_t: float | None = None
    last_t: float | None = None


class Connection:
    """One reader's socket and the partial line it holds."""

    def __init__(self, sock: socket.socket, reader: Reader) -> None:
        self.sock = sock
        self.reader = reader
        self.buf = b""


def _line(sock: socket.socket, pending: bytes, deadline: float) -> tuple[str, bytes]:
    """The next line (blocking, with a deadline) and what was read beyond it."""
    while b"\n" not in pending:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed by the server")
        pending += chunk
    line, _, rest = pending.partition(b"\n")
    return line.rstrip(b"\r").decode("utf-8", "replace"), rest


def log_in(host: str, port: int, name: str, banner: int, timeout: float) -> Connection:
    """Connect, read the banner, ``LOGIN``; an ``OK`` (with or without text) must come."""
    deadline = time.monotonic() + timeout
    sock = socket.create_connection((host, port), timeout=timeout)
    pending = b""
    for _ in range(banner):
        _, pending = _line(sock, pending, deadline)
    sock.sendall(f"LOGIN {name}\n".encode())
    answer, pending = _line(sock, pending, deadline)
    if not answer.upper().startswith("OK"):
        sock.close()
        raise ConnectionError(f"LOGIN {name} was answered {answer!r}")
    sock.setblocking(False)
    conn = Connection(sock, Reader(name))
    conn.buf = pending
    return conn


class Witness:
    """Counts flood lines on every connection."""

    def __init__(self, marker: bytes, ordered: bool, started: float) -> None:
        self.marker = marker
        self.ordered = ordered
        self.started = started

    def take(self, conn: Connection, data: bytes) -> None:
        """Account for ``data`` received on ``conn``."""
        lines = (conn.buf + data).split(b"\n")
        conn.buf = lines.pop()
        reader = conn.reader
        marker = self.marker
        width = len(marker)
        for raw in lines:
            at = raw.find(marker)
            if at < 0:
                text = raw.rstrip(b"\r").decode("utf-8", "replace")
                reader.others = [*reader.others[-(KEEP_OTHERS - 1) :], text]
                reader.last = text
                continue
            if self.ordered and reader.gap is None:
                digits = raw[at + width : at + width + 6]
                if not digits.isdigit() or int(digits) != reader.count:
                    got = digits.decode(errors="replace")
                    reader.gap = f"line #{reader.count} expected, got {got!r}"
            reader.count += 1
        if lines:
            now = round(time.monotonic() - self.started, 3)
            if reader.first_t is None and reader.count:
                reader.first_t = now
            reader.last_t = now
            last = lines[-1]
            if last.find(marker) >= 0:
                reader.last = last[:80].decode("utf-8", "replace")


def _emit(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--name", action="append", required=True, help="one connection per name")
    p.add_argument("--banner", type=int, default=0, help="lines the server greets with")
    p.add_argument("--marker", required=True, help="text every flood line contains")
    p.add_argument("--expect", type=int, default=0, help="flood lines per reader; 0: no end")
    p.add_argument("--ordered", action="store_true", help="check the numbers after the marker")
    p.add_argument("--deadline", type=float, default=60.0, help="seconds before giving up")
    p.add_argument("--login-timeout", type=float, default=10.0)
    args = p.parse_args(argv)

    try:
        conns = [
            log_in(args.host, args.port, name, args.banner, args.login_timeout)
            for name in args.name
        ]
    except (OSError, ConnectionError) as exc:
        _emit({"error": str(exc)})
        return 1
    started = time.monotonic()
    witness = Witness(args.marker.encode(), args.ordered, started)
    sel = selectors.DefaultSelector()
    for conn in conns:
        sel.register(conn.sock, selectors.EVENT_READ, conn)
        if conn.buf:  # lines that came with the OK
            witness.take(conn, b"")
    sel.register(sys.stdin, selectors.EVENT_READ, None)
    _emit({"ready": True})

    end = started + args.deadline
    shown: list[int] = []
    next_progress = 0.0
    stop = False
    readers = [c.reader for c in conns]
    while not stop:
        if all(r.eof or (args.expect and r.count >= args.expect) for r in readers):
            break
        now = time.monotonic()
        if now >= end:
            break
        for key, _ in sel.select(min(PROGRESS_EVERY, end - now)):
            conn = key.data
            if conn is None:  # the suite closed our stdin: report and stop
                stop = True
                break
            while True:  # the tight loop: everything the kernel has, 1 MiB at a time
                try:
                    data = conn.sock.recv(RECV_SIZE)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    data = b""
                if not data:
                    conn.reader.eof = True
                    sel.unregister(conn.sock)
                    break
                witness.take(conn, data)
        now = time.monotonic()
        counts = [r.count for r in readers]
        if now >= next_progress and counts != shown:
            _emit({"t": round(now - started, 3), "counts": counts})
            shown = counts
            next_progress = now + PROGRESS_EVERY
    _emit({"done": True, "readers": [asdict(r) for r in readers]})
    for conn in conns:
        conn.sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
