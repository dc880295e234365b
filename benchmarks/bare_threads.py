"""Bare reference server: one thread per connection, blocking ``sendall``.

What people write with the standard library's threads, and the yardstick for
``chatproto-serve --backend threading``: each connection's thread reads,
splits lines and, for a MSG, calls ``sendall`` once per recipient (under that
recipient's lock, so that two threads never interleave bytes on one socket).
TCP_NODELAY is on. Same protocol subset as ``bare_asyncio.py``. No limits: a
recipient that does not read blocks every thread that sends to it, which is
part of what the slowreader scenario shows.

Run: ``python benchmarks/bare_threads.py --port 0``; prints
``bare_threads listening on HOST:PORT``. SIGINT/SIGTERM end it at once.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading


class Conn:
    """One client: its socket, the lock that serialises writes to it, its name."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.name: str | None = None

    def send(self, data: bytes) -> None:
        with self.lock:
            try:
                self.sock.sendall(data)
            except OSError:
                pass  # its own thread notices the broken connection


class Room:
    """The logged-in users, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.members: dict[str, Conn] = {}  # casefolded name -> conn

    def broadcast(self, line: bytes, sender: Conn) -> None:
        with self.lock:
            others = [c for c in self.members.values() if c is not sender]
        for conn in others:
            conn.send(line)  # one sendall per recipient per line

    def login(self, conn: Conn, name: str) -> bool:
        with self.lock:
            if name.lower() in self.members:
                return False
            self.members[name.lower()] = conn
            conn.name = name
            return True

    def leave(self, conn: Conn) -> None:
        if conn.name is None:
            return
        with self.lock:
            del self.members[conn.name.lower()]
        self.broadcast(b"INFO " + conn.name.encode() + b" disconnected\n", conn)


def handle(room: Room, conn: Conn) -> None:
    """The thread of one connection."""
    buf = b""
    try:
        while True:
            try:
                data = conn.sock.recv(65536)
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
        room.leave(conn)
        conn.sock.close()


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
        elif not room.login(conn, name):
            conn.send(b"ERR username-taken that name is in use\n")
        else:
            conn.send(b"OK\n")
            room.broadcast(b"INFO " + arg + b" joined\n", conn)
    elif cmd == b"QUIT":
        conn.send(b"OK\n")
        return False
    else:
        conn.send(b"ERR unknown-command try HELP\n")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Bare reference server: one thread per connection, blocking sendall."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4000)
    args = parser.parse_args(argv)
    # Small thread stacks: 10,000 connections are 10,000 threads.
    threading.stack_size(256 * 1024)
    listener = socket.create_server((args.host, args.port), backlog=1024)
    room = Room()
    host, port = listener.getsockname()[:2]
    print(f"bare_threads listening on {host}:{port}", flush=True)
    try:
        while True:
            sock, _ = listener.accept()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=handle, args=(room, Conn(sock)), daemon=True).start()
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
