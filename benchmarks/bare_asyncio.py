"""Bare reference server: asyncio (or uvloop) protocol, one write per message.

What people write when they write a chat server on asyncio by hand, and the
yardstick for ``chatproto-serve --backend anyio``: each relayed line is one
``transport.write`` per recipient, at once. TCP_NODELAY is on, as asyncio sets
it for every TCP transport. Just enough protocol for the benchmarks: LOGIN
(unique names), MSG, PING, QUIT, and the INFO joined/disconnected notices, so
the connect scenario costs what it costs on a real server. No limits: a slow
reader's output piles up in the transport's buffer without bound (that is part
of what the slowreader scenario shows).

``--checked`` adds, inline, the checks every conforming server must make on
every line before acting on it (docs/protocol.md §1 and §2: the length limit,
UTF-8, control characters) and the idle clock (§12.2): the price of the spec
alone, without chatproto's layering, for the request/response comparison.

Run: ``python benchmarks/bare_asyncio.py [--uvloop] [--checked] --port 0``;
prints ``bare_asyncio listening on HOST:PORT``. Stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
from typing import cast


class Room:
    """The logged-in users; shared by every connection of the server."""

    def __init__(self) -> None:
        self.members: dict[str, ChatProtocol] = {}  # casefolded name -> conn

    def broadcast(self, line: bytes, sender: ChatProtocol) -> None:
        for conn in list(self.members.values()):
            if conn is not sender:
                conn.transport.write(line)  # one write per recipient per line


class ChatProtocol(asyncio.Protocol):
    """One connection: split lines, answer, relay."""

    def __init__(self, room: Room) -> None:
        self.room = room
        self.buf = b""
        self.name: str | None = None
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
        write = self.transport.write
        if cmd == b"MSG":
            if self.name is None:
                write(b"ERR not-logged-in LOGIN first\n")
            elif not arg:
                write(b"ERR missing-argument this command needs an argument\n")
            else:
                self.room.broadcast(b"MSG " + self.name.encode() + b" " + arg + b"\n", self)
        elif cmd == b"PING":
            write(b"PONG " + arg + b"\n" if arg else b"PONG\n")
        elif cmd == b"LOGIN":
            name = arg.decode("utf-8", "replace")
            if self.name is not None:
                write(b"ERR already-logged-in you are logged in already\n")
            elif not name or len(name) > 32:
                write(b"ERR invalid-username use 1 to 32 letters, digits, _ or -\n")
            elif name.lower() in self.room.members:
                write(b"ERR username-taken that name is in use\n")
            else:
                self.name = name
                self.room.members[name.lower()] = self
                write(b"OK\n")
                self.room.broadcast(b"INFO " + arg + b" joined\n", self)
        elif cmd == b"QUIT":
            write(b"OK\n")
            self.transport.close()
        else:
            write(b"ERR unknown-command try HELP\n")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.name is not None:
            del self.room.members[self.name.lower()]
            self.room.broadcast(b"INFO " + self.name.encode() + b" disconnected\n", self)
            self.name = None


_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


class CheckedProtocol(ChatProtocol):
    """ChatProtocol plus the per-line checks of the spec and an idle clock."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.clock = asyncio.get_running_loop().time
        self.last_seen = self.clock()

    def line(self, raw: bytes) -> None:
        if len(raw) > 4096:
            self.transport.write(b"ERR line-too-long line longer than 4096 bytes\n")
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.transport.write(b"ERR invalid-utf8 lines must be UTF-8\n")
            return
        if not text.isprintable() and _CONTROL.search(text):
            self.transport.write(b"ERR invalid-characters no control characters\n")
            return
        self.last_seen = self.clock()
        super().line(raw)


async def serve(host: str, port: int, label: str, checked: bool) -> None:
    loop = asyncio.get_running_loop()
    room = Room()
    kind = CheckedProtocol if checked else ChatProtocol
    server = await loop.create_server(lambda: kind(room), host, port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    addr = server.sockets[0].getsockname()
    print(f"{label} listening on {addr[0]}:{addr[1]}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4000)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument("--checked", action="store_true", help="check every line as the spec says")
    args = parser.parse_args(argv)
    if args.uvloop:
        import uvloop  # noqa: PLC0415 - optional dependency

        uvloop.run(serve(args.host, args.port, "bare_uvloop", args.checked))
    else:
        asyncio.run(serve(args.host, args.port, "bare_asyncio", args.checked))
    return 0


if __name__ == "__main__":
    sys.exit(main())
