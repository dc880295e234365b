"""The shared state of a chat server, with no I/O: the hub adapters wire up.

Owns: the connections it hands ids to, the room (through :class:`Room`),
routing of every command, the output buffers, the slow-consumer cap, idle and
closing deadlines, and shutdown (docs/protocol.md §5 to §13). Never touches a
socket or a clock: adapters feed it bytes with the time, drain its output when
their sockets can take more, and close what it says to close.

Output for a connection accumulates across inputs until drained, so the lines
that many inputs produce for one recipient leave in one write. A broadcast line
is encoded once and the same ``bytes`` object is queued for every recipient.
"""

from __future__ import annotations

import heapq
from typing import Final

from ._config import ServerConfig
from ._errors import ErrorCode, LocalProtocolError
from ._events import (
    CloseMode,
    CloseReason,
    CommandRejected,
    ConnectionClosed,
    ConnId,
    DirectMessageSent,
    MessageBroadcast,
    ServerEvent,
    UserLeft,
    UserLoggedIn,
)
from ._replies import HELP_TEXT, encode_error
from ._room import Room
from ._server_session import BAD as _BAD_K
from ._server_session import DM as _DM_K
from ._server_session import HELP as _HELP_K
from ._server_session import LOGIN as _LOGIN_K
from ._server_session import MSG as _MSG_K
from ._server_session import PING as _PING_K
from ._server_session import WHO as _WHO_K
from ._server_session import ServerSession

__all__ = ["ChatServer"]

_OK: Final = b"OK\n"
_PONG: Final = b"PONG\n"
_HELP_LINE: Final = f"INFO {HELP_TEXT}\n".encode()
_IDLE_LINE: Final = b"INFO idle-timeout\n"
_SHUTDOWN_LINE: Final = b"INFO server-shutdown\n"
_ERR: Final = {code: encode_error(code) for code in ErrorCode}

_OPEN, _AFTER_FLUSH, _NOW = CloseMode.OPEN, CloseMode.AFTER_FLUSH, CloseMode.NOW


class _Connection:
    """Bookkeeping for one connection. Private: the public handle is ConnId."""

    __slots__ = (
        "close_deadline",
        "counted",
        "dm_prefix",
        "id",
        "last_seen",
        "lines",
        "mode",
        "msg_prefix",
        "name",
        "out",
        "queued",
        "reason",
        "session",
        "user_line",
    )

    def __init__(self, conn: ConnId, session: ServerSession, now: float) -> None:
        self.id = conn
        self.session = session
        self.lines = session.lines
        self.last_seen = now
        #: Chunks waiting for data_to_send: shared broadcast lines, replies,
        #: and at shutdown memoryviews into one shared block.
        self.out: list[bytes | memoryview] = []
        self.queued = 0
        self.mode = _OPEN
        self.reason: CloseReason | None = None
        self.close_deadline = 0.0
        #: Whether this connection counts against max_clients.
        self.counted = False
        self.name: str | None = None
        # Encoded once at login, for the hot paths.
        self.msg_prefix = b""
        self.dm_prefix = b""
        self.user_line = b""


class ChatServer:
    """A chat room and its connections, as a pure state machine.

    The adapter's side of the contract, in order:

    1. ``conn = connection_made(now)`` for each accepted socket.
    2. ``receive_data(conn, data, now)`` for bytes read; ``receive_eof(conn,
       now)`` at end of stream; ``connection_lost(conn, now)`` once the socket
       is closed, whoever closed it.
    3. After feeding what is ready, for each id in :meth:`take_ready`: if
       :meth:`close_mode` is ``NOW``, close the socket at once; otherwise make
       sure its writer runs.
    4. A writer writes :meth:`data_to_send` when its socket can take more;
       when that is empty and :meth:`close_mode` is ``AFTER_FLUSH``, it closes.
    5. One timer: wake at :meth:`next_deadline`, call :meth:`handle_timeout`,
       then step 3.
    6. To stop: :meth:`shutdown`, step 3, and wait until every connection has
       been reported lost (the core cuts them off after ``close_timeout``).

    Every feeding method returns the :data:`ServerEvent` list it caused.
    ``message_events=False`` leaves out :class:`MessageBroadcast` and
    :class:`DirectMessageSent`, the two events every chat line causes: a
    server that neither logs nor bridges messages saves their cost on its
    hottest path (about a third of the core's time per MSG in a small room).
    A peer's bad input never raises; misuse of the API (an id this server
    never issued) raises :class:`LocalProtocolError`. Calls about a connection
    that is already gone are quiet no-ops.
    """

    def __init__(self, config: ServerConfig | None = None, *, message_events: bool = True) -> None:
        self._config = config if config is not None else ServerConfig()
        self._message_events = message_events
        self._cap = self._config.max_outbound_bytes  # read on every queued line
        self._conns: dict[ConnId, _Connection] = {}
        self._room: Room[_Connection] = Room()
        self._next_id = 1
        self._open = 0
        self._ready: list[ConnId] = []
        self._overflowed: list[_Connection] = []
        # (deadline, conn id) min-heap. Entries go stale when a connection is
        # active or gone; handle_timeout re-checks and re-pushes, so activity
        # costs one attribute write instead of a heap update.
        self._timers: list[tuple[float, int]] = []
        self._events: list[ServerEvent] = []
        self._shutting_down = False

    # ----------------------------------------------------------------- state

    @property
    def config(self) -> ServerConfig:
        """The limits this server enforces."""
        return self._config

    @property
    def connection_count(self) -> int:
        """Connections not yet reported lost, closing ones included."""
        return len(self._conns)

    @property
    def open_count(self) -> int:
        """Open connections: what ``max_clients`` limits."""
        return self._open

    @property
    def is_shutting_down(self) -> bool:
        """Whether :meth:`shutdown` has been called."""
        return self._shutting_down

    def usernames(self) -> list[str]:
        """Logged-in users, as registered, in login order."""
        return list(self._room.names())

    def username(self, conn: ConnId) -> str | None:
        """The user logged in on ``conn``, if any."""
        c = self._conns.get(conn)
        return None if c is None else c.name

    def queued_bytes(self, conn: ConnId) -> int:
        """Bytes waiting for :meth:`data_to_send` on ``conn``."""
        c = self._conns.get(conn)
        return 0 if c is None else c.queued

    # ------------------------------------------------------------ lifecycle

    def connection_made(self, now: float) -> ConnId:
        """Register a new connection and return its id.

        Beyond ``max_clients`` (or during shutdown) the connection is still
        registered, but only to be told why and closed: its
        :meth:`close_mode` is ``AFTER_FLUSH`` at once.
        """
        conn = ConnId(self._next_id)
        self._next_id += 1
        c = _Connection(conn, ServerSession(self._config.max_line_bytes), now)
        self._conns[conn] = c
        if self._shutting_down:
            self._queue(c, _SHUTDOWN_LINE)
            self._begin_close(c, CloseReason.SHUTDOWN, now)
        elif self._open >= self._config.max_clients:
            self._queue(c, _ERR[ErrorCode.SERVER_FULL])
            self._begin_close(c, CloseReason.SERVER_FULL, now)
        else:
            c.counted = True
            self._open += 1
            heapq.heappush(self._timers, (now + self._config.idle_timeout, conn))
        return conn

    def receive_data(
        self, conn: ConnId, data: bytes | bytearray | memoryview, now: float
    ) -> list[ServerEvent]:
        """Execute the complete lines in ``data``, received on ``conn`` at ``now``.

        Replies and deliveries are queued (see :meth:`take_ready`). Input on a
        connection that is closing or gone is ignored.
        """
        # This method is the hot path of every server: the common cases are
        # inlined (lookups, the PING reply, the event hand-out).
        c = self._conns.get(conn)
        if c is None:
            self._live(conn)  # raises for an id never issued
            return []
        if c.mode is not _OPEN:
            return []
        if type(data) is not bytes:
            data = bytes(data)
        if b"\n" in data:
            c.last_seen = now  # any complete line resets the idle timer (§12.2)
        events = self._events
        parse = c.session.parse
        for line in c.lines.feed(data):
            kind, arg = parse(line)
            if kind == _MSG_K:
                sent = self._broadcast(c.msg_prefix + arg + b"\n", c)
                if self._message_events:
                    assert c.name is not None
                    events.append(MessageBroadcast(conn, c.name, arg.decode("utf-8"), sent))
            elif kind == _PING_K:
                reply = b"PONG " + arg + b"\n" if arg else _PONG
                out = c.out
                if not out:
                    self._ready.append(conn)
                out.append(reply)
                c.queued += len(reply)
                if c.queued > self._cap:
                    self._overflowed.append(c)
            elif kind == _BAD_K:
                self._queue(c, _ERR[arg])
                events.append(CommandRejected(conn, arg))
            elif kind == _DM_K:
                self._on_direct(c, *arg)
            elif kind == _LOGIN_K:
                self._on_login(c, arg)
            elif kind == _WHO_K:
                self._queue(c, b"".join(m.user_line for m in self._room.members()))
            elif kind == _HELP_K:
                self._queue(c, _HELP_LINE)
            else:  # QUIT: the session is closed; nothing after it runs
                self._queue(c, _OK)
                self._begin_close(c, CloseReason.QUIT, now)
                break
            if self._overflowed:
                # A slow consumer leaves before the next line runs (§12.3 "at
                # once"), so that lines batched in one read see the same room
                # as lines read one by one (§1.3).
                self._drop_overflowed(now)
                if c.mode is not _OPEN:
                    break  # the sender itself was dropped: the rest is not executed
        if self._overflowed:
            self._drop_overflowed(now)
        if events:
            self._events = []
            return events
        return []

    def receive_eof(self, conn: ConnId, now: float) -> list[ServerEvent]:
        """The peer shut down its sending side (half-close, §12.1).

        The lines already received have been executed; their replies are
        flushed, then the connection closes. A partial line is dropped.
        """
        c = self._live(conn)
        if c is None or c.mode is not _OPEN:
            return []
        c.session.receive_eof()
        self._begin_close(c, CloseReason.PEER_CLOSED, now)
        return self._finish(now)

    def connection_lost(self, conn: ConnId, now: float) -> list[ServerEvent]:
        """The socket is closed; forget ``conn``.

        Call this exactly when the adapter has closed the socket or found it
        broken, whoever decided to. A user still logged in leaves the room
        (reason ``CONNECTION_LOST``). Calling it twice is a no-op.
        """
        c = self._live(conn)
        if c is None:
            return []
        if c.mode is _OPEN:
            self._begin_close(c, CloseReason.CONNECTION_LOST, now, _NOW)
        del self._conns[conn]
        c.out.clear()
        c.queued = 0
        assert c.reason is not None
        self._events.append(ConnectionClosed(conn, c.reason))
        return self._finish(now)

    def shutdown(self, now: float) -> list[ServerEvent]:
        """Tell everyone the server is going away, and close every connection.

        Every connection gets ``INFO server-shutdown`` (one already closing
        gets it after what it was owed; one being cut off gets nothing); then each
        logged-in user gets ``INFO <name> disconnected`` for every other one
        (§8.2, §12.5), from one shared buffer. Connections arriving later are
        told the same and closed. Calling it twice is a no-op.
        """
        if self._shutting_down:
            return []
        self._shutting_down = True
        members = list(self._room.members())
        lines = [b"INFO " + m.user_line[5:-1] + b" disconnected\n" for m in members]
        block = memoryview(b"".join(lines))
        spans: dict[ConnId, tuple[int, int]] = {}
        offset = 0
        for m, line in zip(members, lines, strict=True):
            spans[m.id] = (offset, offset + len(line))
            offset += len(line)
        self._room.clear()
        for c in list(self._conns.values()):
            if c.mode is not _OPEN:
                # Already closing (QUIT, idle, server-full...): it is still
                # told, after what it was owed, unless it is being cut off.
                if c.mode is _AFTER_FLUSH:
                    self._queue(c, _SHUTDOWN_LINE)
                continue
            self._queue(c, _SHUTDOWN_LINE)
            span = spans.get(c.id)
            if span is not None:
                start, end = span
                if start:
                    self._queue(c, block[:start])
                if end < len(block):
                    self._queue(c, block[end:])
            self._begin_close(c, CloseReason.SHUTDOWN, now, announce=False)
        return self._finish(now)

    # --------------------------------------------------------------- timers

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` should next be called, or ``None``.

        May be early (a connection was active since); never late.
        """
        return self._timers[0][0] if self._timers else None

    def handle_timeout(self, now: float) -> list[ServerEvent]:
        """Expire idle connections and cut off closing ones that overstayed."""
        timers = self._timers
        idle = self._config.idle_timeout
        while timers and timers[0][0] <= now:
            _, conn = heapq.heappop(timers)
            c = self._conns.get(ConnId(conn))
            if c is None or c.mode is _NOW:
                continue
            if c.mode is _OPEN:
                due = c.last_seen + idle
                if due > now:
                    heapq.heappush(timers, (due, conn))
                else:
                    self._queue(c, _IDLE_LINE)
                    self._begin_close(c, CloseReason.IDLE_TIMEOUT, now)
            elif c.close_deadline <= now:
                # Closing, and its grace is over: drop what it did not take.
                self._abort(c)
            # else: an idle entry of a closing connection; its close entry
            # is still in the heap.
        return self._finish(now)

    # --------------------------------------------------------------- output

    def take_ready(self) -> list[ConnId]:
        """Connections with new output or a new close decision since the last call.

        The list may repeat an id or name one that is gone; both are harmless.
        """
        ready = self._ready
        self._ready = []
        return ready

    def data_to_send(self, conn: ConnId) -> bytes:
        """Everything queued for ``conn``, removed from the queue.

        Call it only when the socket can take more: what stays queued here is
        what the slow-consumer cap measures. Empty when there is nothing to
        send or the connection is gone.
        """
        c = self._conns.get(conn)
        if c is None or not c.out:
            return b""
        out = c.out
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        c.queued = 0
        return data if type(data) is bytes else bytes(data)

    def close_mode(self, conn: ConnId) -> CloseMode:
        """Whether ``conn`` stays open, closes after its output, or closes now."""
        c = self._conns.get(conn)
        return _NOW if c is None else c.mode

    def close_reason(self, conn: ConnId) -> CloseReason | None:
        """Why ``conn`` is closing, or ``None`` while it is open or unknown."""
        c = self._conns.get(conn)
        return None if c is None else c.reason

    # ------------------------------------------------------------- commands

    def _on_login(self, c: _Connection, name: str) -> None:
        if not self._room.claim(name, c):
            self._queue(c, _ERR[ErrorCode.USERNAME_TAKEN])
            self._events.append(CommandRejected(c.id, ErrorCode.USERNAME_TAKEN))
            return
        c.session.login_accepted(name)
        c.name = name
        encoded = name.encode("ascii")
        c.msg_prefix = b"MSG " + encoded + b" "
        c.dm_prefix = b"DM " + encoded + b" "
        c.user_line = b"USER " + encoded + b"\n"
        self._queue(c, _OK)
        self._broadcast(b"INFO " + encoded + b" joined\n", c)
        self._events.append(UserLoggedIn(c.id, name))

    def _on_direct(self, c: _Connection, recipient: str, text: str) -> None:
        found = self._room.lookup(recipient)
        if found is None:
            self._queue(c, _ERR[ErrorCode.USER_NOT_FOUND])
            self._events.append(CommandRejected(c.id, ErrorCode.USER_NOT_FOUND))
            return
        registered, target = found
        self._queue(target, c.dm_prefix + text.encode("utf-8") + b"\n")
        self._queue(c, _OK)
        if self._message_events:
            assert c.name is not None
            self._events.append(DirectMessageSent(c.id, c.name, registered, text))

    # ------------------------------------------------------------ internals

    def _live(self, conn: ConnId) -> _Connection | None:
        c = self._conns.get(conn)
        if c is None and not 0 < conn < self._next_id:
            raise LocalProtocolError(
                f"connection {conn} was never issued by this server; "
                "use the id returned by connection_made()"
            )
        return c

    def _queue(self, c: _Connection, data: bytes | memoryview) -> None:
        out = c.out
        if not out:
            self._ready.append(c.id)
        out.append(data)
        c.queued += len(data)
        if c.queued > self._cap:
            self._overflowed.append(c)

    def _broadcast(self, line: bytes, sender: _Connection) -> int:
        """Queue ``line`` (shared, not copied) for every member but ``sender``."""
        size = len(line)
        cap = self._cap
        ready = self._ready
        sent = 0
        for c in self._room.members():
            if c is sender:
                continue
            out = c.out
            if not out:
                ready.append(c.id)
            out.append(line)
            queued = c.queued + size
            c.queued = queued
            if queued > cap:
                self._overflowed.append(c)
            sent += 1
        return sent

    def _begin_close(
        self,
        c: _Connection,
        reason: CloseReason,
        now: float,
        mode: CloseMode = _AFTER_FLUSH,
        *,
        announce: bool = True,
    ) -> None:
        """Start closing ``c`` for ``reason``; the user leaves the room now."""
        if c.mode is not _OPEN:
            return
        c.mode = mode
        c.reason = reason
        if c.counted:
            c.counted = False
            self._open -= 1
        c.session.close()
        if mode is _NOW:
            c.out.clear()
            c.queued = 0
        c.close_deadline = now + self._config.close_timeout
        heapq.heappush(self._timers, (c.close_deadline, c.id))
        self._ready.append(c.id)
        name = c.name
        if name is not None:
            self._room.release(name)
            self._events.append(UserLeft(c.id, name, reason))
            if announce:
                self._broadcast(b"INFO " + c.user_line[5:-1] + b" disconnected\n", c)

    def _abort(self, c: _Connection) -> None:
        c.mode = _NOW
        c.out.clear()
        c.queued = 0
        self._ready.append(c.id)

    def _finish(self, now: float) -> list[ServerEvent]:
        """Drop slow consumers, then hand out events."""
        self._drop_overflowed(now)
        events = self._events
        self._events = []
        return events

    def _drop_overflowed(self, now: float) -> None:
        """Drop connections queued past the cap (their notices may overflow others)."""
        overflowed = self._overflowed
        while overflowed:
            c = overflowed.pop()
            if c.queued <= self._cap or c.id not in self._conns:
                continue
            if c.mode is _OPEN:
                self._begin_close(c, CloseReason.SLOW_CONSUMER, now, _NOW)
            else:
                self._abort(c)
