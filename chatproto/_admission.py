"""Admission: who gets a connection id, and who is turned away.

Owns: the ids a server hands out, admitting a connection (its session, its
flood budget, its idle timer), refusing one beyond ``max_clients`` or during
shutdown with the line it is told (docs/protocol.md §13), taking back one the
adapter cannot serve after all, and telling an id this server never issued
(misuse: :class:`LocalProtocolError`) from one that is gone (a quiet no-op).
Never touches a socket or reads a clock.

A mixin of :class:`~chatproto.ChatServer`, whose state it shares; the rest of
the adapter's side of the contract is in :mod:`chatproto._server`.
"""

from __future__ import annotations

import heapq
from typing import Final

from ._config import ServerConfig
from ._connection import Connection, Timer
from ._errors import ErrorCode, LocalProtocolError
from ._events import CloseMode, CloseReason, ConnectionRefused, ConnId
from ._replies import ERROR_LINES, SHUTDOWN_LINE
from ._server_session import ServerSession

__all__ = ["Admission"]

_FULL: Final = ConnectionRefused(CloseReason.SERVER_FULL, ERROR_LINES[ErrorCode.SERVER_FULL])
_GOING: Final = ConnectionRefused(CloseReason.SHUTDOWN, SHUTDOWN_LINE)

_OPEN = CloseMode.OPEN


class Admission:
    """The admission half of :class:`~chatproto.ChatServer`."""

    # Shared with ChatServer, which sets them up.
    _config: ServerConfig
    _burst: float
    _conns: dict[ConnId, Connection]
    _open: int
    _next_id: int
    _now: float
    _timers: list[tuple[float, int, Timer]]
    _shutting_down: bool

    def accept(self, now: float) -> ConnId | ConnectionRefused:
        """Admit a connection accepted at ``now``, or say how to turn it away.

        Beyond ``max_clients``, or once shutting down, the answer is a
        :class:`ConnectionRefused`: the connection gets no id, no buffer and
        no timer; the adapter writes its ``data`` and closes the socket at
        once, without a task of its own (docs/protocol.md §13).
        """
        if self._shutting_down:
            return _GOING
        if self._open >= self._config.max_clients:
            return _FULL
        self._now = now
        return self._admit(now)

    def refuse(self, conn: ConnId, now: float) -> ConnectionRefused:
        """Hand back a connection just admitted that the adapter cannot serve.

        For an adapter that found, after :meth:`accept`, that it has no room
        for one more (a thread that would not start): the id is forgotten as
        if never admitted, and the connection is turned away as server-full.
        Only valid before any input was fed for ``conn``.
        """
        c = self._live(conn)
        if c is None or c.mode is not _OPEN or c.user is not None:
            raise LocalProtocolError(
                f"connection {conn} is not a fresh, open connection; refuse() takes "
                "one just returned by accept()"
            )
        del self._conns[conn]
        if c.counted:
            self._open -= 1
        return _FULL

    def _admit(self, now: float) -> ConnId:
        conn = ConnId(self._next_id)
        self._next_id += 1
        session = ServerSession(self._config.max_line_bytes)
        c = self._conns[conn] = Connection(conn, session, now, self._burst)
        c.counted = True
        self._open += 1
        heapq.heappush(self._timers, (now + self._config.idle_timeout, conn, Timer.IDLE))
        return conn

    def _live(self, conn: ConnId) -> Connection | None:
        c = self._conns.get(conn)
        if c is None and not 0 < conn < self._next_id:
            raise LocalProtocolError(
                f"connection {conn} was never issued by this server; "
                "use the id returned by accept() or connection_made()"
            )
        return c
