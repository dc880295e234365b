"""Bare reference server: uvloop, output gathered per loop iteration.

The limit of what a Python event-loop server can do with this protocol: like
``bare_asyncio.py`` (same protocol subset, no limits), except that a relayed
line is appended to each recipient's pending list, and once per loop iteration
(a ``call_soon`` callback, scheduled by the first line queued) every recipient
gets one ``transport.write`` of everything pending for it. That is the batching
chatproto's core does (one write per recipient per loop iteration,
docs/architecture.md) with none of its checks, so the ratio
"chatproto-serve --uvloop / bare_gather" is the cost of those checks and of the
adapter.

Run: ``python benchmarks/bare_gather.py --port 0`` (``--no-uvloop`` for plain
asyncio); prints ``bare_gather listening on HOST:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import cast


class Room:
    """The logged-in users and the recipients with output pending."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.members: dict[str, ChatProtocol] = {}  # casefolded name -> conn
        self.dirty: list[ChatProtocol] = []

    def queue(self, conn: ChatProtocol, line: bytes) -> None:
        if not conn.pending:
            if not self.dirty:
                self.loop.call_soon(self.flush)
            self.dirty.append(conn)
        conn.pending.append(line)

    def broadcast(self, line: bytes, sender: ChatProtocol) -> None:
        queue = self.queue
        for conn in self.members.values():
            if conn is not sender:
                queue(conn, line)

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, []
        for conn in dirty:
            pending = conn.pending
            conn.pending = []
            if not conn.closed:
                conn.transport.write(b"".join(pending))


class ChatProtocol(asyncio.Protocol):
    """One connection: split lines, answer, queue."""

    def __init__(self, room: Room) -> None:
        self.room = room
        self.buf = b""
        self.name: str | None = None
        self.pending: list[bytes] = []
        self.closed = False
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: cast.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        lines = (self.buf + data).split(b"\n")
        self.buf = lines.pop()
        for raw in lines:
            self.line(raw.rstrip(b"\r"))

    def line(self, raw: bytes) -> None:
        if not raw:
            return
        cmd, _, arg = raw.partition(b" ")
        cmd = cmd.upper()
        room = self.room
        if cmd == b"MSG":
            if self.name is None:
                room.queue(self, b"ERR not-logged-in LOGIN first\n")
            elif not arg:
                room.queue(self, b"ERR missing-argument this command needs an argument\n")
            else:
                room.broadcast(b"MSG " + self.name.encode() + b" " + arg + b"\n", self)
        elif cmd == b"PING":
            room.queue(self, b"PONG " + arg + b"\n" if arg else b"PONG\n")
        elif cmd == b"LOGIN":
            name = arg.decode("utf-8", "replace")
            if self.name is not None:
                room.queue(self, b"ERR already-logged-in you are logged in already\n")
            elif not name or len(name) > 32:
                room.queue(self, b"ERR invalid-username use 1 to 32 letters, digits, _ or -\n")
            elif name.lower() in room.members:
                room.queue(self, b"ERR username-taken that name is in use\n")
            else:
                self.name = name
                room.members[name.lower()] = self
                room.queue(self, b"OK\n")
                room.broadcast(b"INFO " + arg + b" joined\n", self)
        elif cmd == b"QUIT":
            self.transport.write(b"".join([*self.pending, b"OK\n"]))
            self.pending = []
            self.transport.close()
        else:
            room.queue(self, b"ERR unknown-command try HELP\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.name is not None:
            del self.room.members[self.name.lower()]
            self.room.broadcast(b"INFO " + self.name.encode() + b" disconnected\n", self)
            self.name = None


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    room = Room(loop)
    server = await loop.create_server(lambda: ChatProtocol(room), host, port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    addr = server.sockets[0].getsockname()
    print(f"bare_gather listening on {addr[0]}:{addr[1]}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4000)
    parser.add_argument("--no-uvloop", action="store_true", help="plain asyncio")
    args = parser.parse_args(argv)
    if args.no_uvloop:
        asyncio.run(serve(args.host, args.port))
    else:
        import uvloop  # noqa: PLC0415 - optional dependency

        uvloop.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
