"""Bare reference server: gevent ``StreamServer``, one ``sendall`` per message.

What people write with gevent, and the yardstick for ``chatproto-serve
--backend gevent``: one greenlet per connection reads and splits lines and,
for a MSG, calls ``sendall`` once per recipient (under that recipient's
semaphore, so greenlets never interleave bytes on one socket). TCP_NODELAY is
on. Same protocol subset as ``bare_asyncio.py``; no limits.

Run: ``python benchmarks/bare_gevent.py --port 0``; prints
``bare_gevent listening on HOST:PORT``. Stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from typing import Any

import gevent
from gevent.lock import Semaphore
from gevent.server import StreamServer


class Conn:
    """One client: its socket, the semaphore that serialises writes, its name."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.lock = Semaphore()
        self.name: str | None = None

    def send(self, data: bytes) -> None:
        with self.lock:
            try:
                self.sock.sendall(data)
            except OSError:
                pass  # its own greenlet notices the broken connection


class Room:
    """The logged-in users (greenlets switch only on I/O: no lock needed)."""

    def __init__(self) -> None:
        self.members: dict[str, Conn] = {}  # casefolded name -> conn

    def broadcast(self, line: bytes, sender: Conn) -> None:
        for conn in [c for c in self.members.values() if c is not sender]:
            conn.send(line)  # one sendall per recipient per line


def line(room: Room, conn: Conn, raw: bytes) -> bool:
    """Execute one line; ``False`` to close the connection."""
    if not raw:
        return True
    cmd, _, arg = raw.partition(b" ")
    cmd = cmd.upper()
    if cmd == b"MSG":
        if conn.name is None:
            conn.send(b"ERR not-logged-in LOGIN first\n")
        elif not arg:
            conn.send(b"ERR missing-argument this command needs an argument\n")
        else:
            room.broadcast(b"MSG " + conn.name.encode() + b" " + arg + b"\n", conn)
    elif cmd == b"PING":
        conn.send(b"PONG " + arg + b"\n" if arg else b"PONG\n")
    elif cmd == b"LOGIN":
        name = arg.decode("utf-8", "replace")
        if conn.name is not None:
            conn.send(b"ERR already-logged-in you are logged in already\n")
        elif not name or len(name) > 32:
            conn.send(b"ERR invalid-username use 1 to 32 letters, digits, _ or -\n")
        elif name.lower() in room.members:
            conn.send(b"ERR username-taken that name is in use\n")
        else:
            conn.name = name
            room.members[name.lower()] = conn
            conn.send(b"OK\n")
            room.broadcast(b"INFO " + arg + b" joined\n", conn)
    elif cmd == b"QUIT":
        conn.send(b"OK\n")
        return False
    else:
        conn.send(b"ERR unknown-command try HELP\n")
    return True


def make_handler(room: Room) -> Any:
    def handle(sock: Any, address: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Conn(sock)
        buf = b""
        try:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                lines = (buf + data).split(b"\n")
                buf = lines.pop()
                for raw in lines:
                    if not line(room, conn, raw.rstrip(b"\r")):
                        return
        finally:
            if conn.name is not None:
                del room.members[conn.name.lower()]
                room.broadcast(b"INFO " + conn.name.encode() + b" disconnected\n", conn)
            sock.close()

    return handle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Bare reference server: gevent StreamServer, one sendall per message."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4000)
    args = parser.parse_args(argv)
    server = StreamServer((args.host, args.port), make_handler(Room()), backlog=1024)
    server.start()
    host, port = server.address[:2]
    print(f"bare_gevent listening on {host}:{port}", flush=True)
    gevent.signal_handler(signal.SIGTERM, server.stop)
    gevent.signal_handler(signal.SIGINT, server.stop)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
