"""One connection of the load generator, and the one way its input is framed.

Owns :class:`Conn` (a socket, what it does with input, what it still has to
write) and framing: :func:`complete_lines` cuts what a read brought at the
last ``\\n`` and keeps the rest for the next read. The loop frames every read
with it before any handler sees the bytes, so every handler works on whole
lines, whichever way TCP split them; :func:`lines_of` splits such a block
when a handler needs the lines one by one (the hot paths do not: they scan
the block with one regular expression).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable

from chatproto.tls import TlsStream

__all__ = ["Conn", "Sender", "complete_lines", "ignore", "lines_of"]


class Sender:
    """The closed-loop state of one sending client."""

    __slots__ = ("alive", "conn", "pending", "seq", "sid")

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        #: Sender id as it appears in the message, bytes for cheap compares.
        self.sid = conn.sid
        self.seq = 0
        #: seq -> [send time ns, acknowledgements still needed].
        self.pending: dict[int, list[int]] = {}
        self.alive = True


def ignore(conn: Conn, data: bytes) -> None:
    """Handler of a connection whose input no longer matters."""


def _gone(conn: Conn, err: int | None) -> None:
    """Close callback of a connection nobody needs to hear about."""


class Conn:
    """One connection of the load generator."""

    __slots__ = (
        "acks",
        "buf",
        "closed",
        "connecting",
        "echo_re",
        "echo_tag",
        "fd",
        "handler",
        "handshaking",
        "idle",
        "index",
        "logged_in",
        "name",
        "on_close",
        "on_open",
        "out",
        "paused",
        "sender",
        "sid",
        "sock",
        "t_ping",
        "t_start",
        "tls",
    )

    def __init__(self, sock: socket.socket, index: int, name: str, sid: bytes) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.index = index
        self.name = name
        #: This client's sender id: an echo of its own message carries it.
        self.sid = sid
        # To spot an echo of its own message cheaply: a substring test first,
        # then the exact pattern.
        self.echo_tag = b" " + sid + b" "
        self.echo_re = re.compile(rb"cpb \d+ " + sid + rb" ")
        #: What to do with the complete lines of a read (a block, see
        #: :func:`complete_lines`), as ``handler(conn, block)``.
        self.handler: Callable[[Conn, bytes], None] = ignore
        #: Called once the TCP connection is made.
        self.on_open: Callable[[Conn], None] = ignore_open
        #: Called once when the connection ends: failed, closed or reset by
        #: the server (``err`` is the errno, 0 for an orderly close).
        self.on_close: Callable[[Conn, int | None], None] = _gone
        #: Bytes of an incomplete line.
        self.buf = b""
        #: Bytes the kernel did not take yet.
        self.out: list[bytes] = []
        #: Until the connection is open: TCP connected (and, with TLS, the handshake done).
        self.connecting = True
        #: TCP is connected and the TLS handshake is under way.
        self.handshaking = False
        self.logged_in = False
        self.closed = False
        #: Held open without taking part (the idle scenario).
        self.idle = False
        #: Not reading on purpose (the slow reader).
        self.paused = False
        self.t_start = 0
        self.t_ping = 0
        #: sender id -> sender whose messages this client acknowledges.
        self.acks: dict[bytes, Sender] | None = None
        self.sender: Sender | None = None
        #: Its TLS stream with ``--tls`` (sans-IO over the non-blocking socket):
        #: the connection opens (``on_open``) once its handshake is done.
        self.tls: TlsStream | None = None


def ignore_open(conn: Conn) -> None:
    """Open callback of a connection that has nothing to say first."""


def complete_lines(conn: Conn, data: bytes) -> bytes:
    """The complete lines of ``conn.buf + data``, up to the last ``\\n`` included.

    The incomplete rest stays in ``conn.buf``; ``b""`` means no line is
    complete yet. Every block returned starts at the start of a line.
    """
    if conn.buf:
        data = conn.buf + data
    end = data.rfind(b"\n") + 1
    if end == 0:
        conn.buf = data
        return b""
    if end < len(data):
        conn.buf = data[end:]
        return data[:end]
    conn.buf = b""
    return data


def lines_of(block: bytes) -> list[bytes]:
    """The lines of a block from :func:`complete_lines`, without ``\\n`` or ``\\r\\n``."""
    lines = block.split(b"\n")
    lines.pop()  # what follows the last "\n": nothing
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]
