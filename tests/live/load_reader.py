"""Readers for the hostile-load tests, in a process of their own.

``python tests/live/load_reader.py PORT --clients N [--rate BYTES_PER_S]`` logs in N
users (``r0`` ... ``rN-1``), prints ``ready`` once all are in, then reads: as
fast as it can (``recv`` of 1 MiB in a tight loop, the reader that keeps up of
issue 10) or, with ``--rate``, each connection at most that many bytes per
second (a slow but live reader). It stops when every connection has seen the
line ``MSG <sender> END`` (or the ``--watch`` line) or ended, or at
``--deadline`` seconds, and prints one JSON object: per reader, the number of
``MSG`` lines, whether it saw the ``--watch`` line, its last line and whether
the server closed it.

A separate process, so that the test's own threads cannot starve the readers
(or the other way round) of the interpreter lock.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time
from dataclasses import asdict, dataclass, field


@dataclass
class Reader:
    """What one connection saw."""

    name: str
    msgs: int = 0
    watched: bool = False
    last: str = ""
    eof: bool = False
    done: bool = False
    buf: bytes = field(default=b"", repr=False)
    budget: float = 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--clients", type=int, default=1)
    p.add_argument("--rate", type=float, default=0.0, help="bytes/s per connection; 0: no limit")
    p.add_argument("--watch", default="", help="a line to look for")
    p.add_argument("--deadline", type=float, default=60.0)
    args = p.parse_args(argv)

    sel = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    readers: list[Reader] = []
    for i in range(args.clients):
        sock = socket.create_connection(("127.0.0.1", args.port), timeout=10)
        sock.sendall(f"LOGIN r{i}\n".encode())
        got = b""
        while not got.endswith(b"\n"):
            got += sock.recv(1)
        if got != b"OK\n":
            print(json.dumps({"error": f"r{i}: {got!r}"}), flush=True)
            return 1
        sock.setblocking(False)
        socks.append(sock)
        readers.append(Reader(f"r{i}"))
    # The join notices of later readers are still on their way; they are not MSGs.
    print("ready", flush=True)

    for sock, reader in zip(socks, readers, strict=True):
        sel.register(sock, selectors.EVENT_READ, reader)
    end = time.monotonic() + args.deadline
    tick = 0.01
    watch = args.watch.encode()
    while not all(r.done for r in readers) and time.monotonic() < end:
        if args.rate:
            for r in readers:
                r.budget = min(r.budget + args.rate * tick, args.rate * 0.1)
        events = sel.select(tick if args.rate else 0.5)
        for key, _ in events:
            r = key.data
            conn = key.fileobj
            assert isinstance(r, Reader)
            assert isinstance(conn, socket.socket)
            size = 1 << 20 if not args.rate else int(r.budget)
            if size <= 0:
                continue
            try:
                data = conn.recv(size)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                r.eof = r.done = True
                sel.unregister(conn)
                continue
            r.budget -= len(data)
            lines = (r.buf + data).split(b"\n")
            r.buf = lines.pop()
            for line in lines:
                if line.startswith(b"MSG "):
                    r.msgs += 1
                    if line.endswith(b" END"):
                        r.done = True
                if watch and line == watch:
                    r.watched = r.done = True
                r.last = line.decode("utf-8", "replace")
        if args.rate:
            time.sleep(tick)  # pacing the reader, not waiting for an event
    print(json.dumps([asdict(r) | {"buf": None} for r in readers]), flush=True)
    for sock in socks:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
