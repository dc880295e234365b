"""The shared state of a chat server, with no I/O: the hub adapters wire up.

Owns: the connections it hands ids to, the room (through :class:`Room`),
routing of every command, the output buffers, flow control (whose input is
taken now, and how much), the slow-consumer limits, idle and closing deadlines,
and shutdown (docs/protocol.md §5 to §16). Never touches a socket or a clock:
adapters feed it bytes with the time, drain its output when their sockets can
take more, read only the connections it says to read, and close what it says
to close.

Output for a connection accumulates across inputs until drained, so the lines
that many inputs produce for one recipient leave in one write. A broadcast line
is encoded once and the same ``bytes`` object is queued for every recipient.
"""

from __future__ import annotations

import heapq
import math
from typing import Final

from ._config import ServerConfig
from ._connection import Connection, Line
from ._errors import ErrorCode, LocalProtocolError
from ._events import (
    CloseMode,
    CloseReason,
    CommandRejected,
    ConnectionClosed,
    ConnectionRefused,
    ConnId,
    DirectMessageSent,
    FloodLimited,
    InputPaused,
    InputResumed,
    MessageBroadcast,
    PauseCause,
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
_SLOW_LINE: Final = b"INFO slow-consumer\n"
_ERR: Final = {code: encode_error(code) for code in ErrorCode}
_FULL: Final = ConnectionRefused(CloseReason.SERVER_FULL, _ERR[ErrorCode.SERVER_FULL])
_GOING: Final = ConnectionRefused(CloseReason.SHUTDOWN, _SHUTDOWN_LINE)

_OPEN, _AFTER_FLUSH, _NOW = CloseMode.OPEN, CloseMode.AFTER_FLUSH, CloseMode.NOW
_FLOOD, _BACKPRESSURE = PauseCause.FLOOD, PauseCause.BACKPRESSURE

# What a timer entry (deadline, conn id, kind) is for. Entries go stale when a
# connection is active, drains or is gone; handle_timeout re-checks each one,
# so activity costs an attribute write instead of a heap update.
_IDLE, _CLOSE, _CONGESTION, _TOKENS = range(4)
#: A flood-limited connection is woken when it can run this share of a second
#: of its rate at once: ten wake-ups a second at most, whatever the rate.
_TOKEN_BATCH: Final = 0.1
#: A line runs when the budget holds this much. Not 1.0: a budget topped up at
#: exactly the computed instant can fall a rounding error short of 1.0, and
#: must not wait for another wake-up (or loop at the same instant).
_LINE_COST: Final = 1.0 - 1e-6


class ChatServer:
    """A chat room and its connections, as a pure state machine.

    The adapter's side of the contract, in order:

    1. For each accepted socket, ``accept(now)``: a :data:`ConnId` to serve,
       or a :class:`ConnectionRefused` whose ``data`` is written (without
       blocking) before the socket is closed at once. An adapter that cannot
       serve an admitted connection after all (no thread, no memory) hands it
       back with :meth:`refuse`.
    2. ``receive_data(conn, data, now)`` for bytes read; ``receive_eof(conn,
       now)`` at end of stream; ``connection_lost(conn, now)`` once the socket
       is closed, whoever closed it. Read at most one bounded chunk of a
       connection before every other one has had its turn.
    3. After feeding what is ready: for each ``(conn, read)`` of
       :meth:`take_reading_changes`, stop or resume reading ``conn``; for each
       id in :meth:`take_ready`, if :meth:`close_mode` is ``NOW`` close the
       socket at once, otherwise make sure its writer runs.
    4. A writer writes :meth:`data_to_send` when its socket can take more (and
       only then: that is how the core sees a reader keep up); when that is
       empty and :meth:`close_mode` is ``AFTER_FLUSH``, it sends its FIN, reads
       and discards until the peer's, and closes.
    5. One timer: wake at :meth:`next_deadline`, call :meth:`handle_timeout`,
       then step 3. After any call, :meth:`deadline_moved` says whether the
       timer must be set earlier (a drain in step 4 can make it due now).
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
        self._config = cfg = config if config is not None else ServerConfig()
        self._message_events = message_events
        # Read on every queued line or executed line: cached here.
        self._cap = cfg.max_outbound_bytes
        self._high = cfg.high_water
        #: Drained down to this, a congested recipient lets its senders go on.
        self._low = cfg.high_water // 2
        self._stall_after = cfg.backpressure_timeout
        self._slow_after = cfg.slow_consumer_timeout
        self._rate = cfg.flood_rate
        self._burst = float(cfg.flood_burst) if cfg.flood_rate else math.inf
        self._conns: dict[ConnId, Connection] = {}
        self._room: Room[Connection] = Room()
        self._next_id = 1
        self._open = 0
        self._ready: list[ConnId] = []
        self._reading_changes: list[tuple[ConnId, bool]] = []
        self._overflowed: list[Connection] = []
        #: A congested recipient the line being executed queued to: its
        #: sender waits for it after that line.
        self._blocker: Connection | None = None
        #: Senders whose wait is over, resumed by the next handle_timeout.
        self._runnable: list[Connection] = []
        self._timers: list[tuple[float, int, int]] = []
        #: The deadline last handed out by next_deadline (see deadline_moved).
        self._announced = math.inf
        #: The latest time any call brought; drains have no ``now`` of their own.
        self._now = -math.inf
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

    def reading(self, conn: ConnId) -> bool:
        """Whether the adapter should read ``conn`` now (see :meth:`take_reading_changes`)."""
        c = self._conns.get(conn)
        return c is not None and c.reading

    # ------------------------------------------------------------ lifecycle

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
        if c is None or c.mode is not _OPEN or c.name is not None:
            raise LocalProtocolError(
                f"connection {conn} is not a fresh, open connection; refuse() takes "
                "one just returned by accept()"
            )
        del self._conns[conn]
        if c.counted:
            self._open -= 1
        return _FULL

    def connection_made(self, now: float) -> ConnId:
        """Register a new connection and return its id (the simple path).

        Like :meth:`accept`, except that a connection to refuse is still
        registered, only to be told why and closed: its :meth:`close_mode`
        is ``AFTER_FLUSH`` at once. Adapters should use :meth:`accept`, which
        spares a refused connection everything; this stays for embedders that
        want one code path.
        """
        self._now = now
        admitted = self.accept(now)
        if not isinstance(admitted, ConnectionRefused):
            return admitted
        conn = ConnId(self._next_id)
        self._next_id += 1
        c = self._conns[conn] = Connection(conn, ServerSession(), now, 0.0)
        self._queue(c, admitted.data)
        self._begin_close(c, admitted.reason, now)
        return conn

    def receive_data(
        self, conn: ConnId, data: bytes | bytearray | memoryview, now: float
    ) -> list[ServerEvent]:
        """Execute the complete lines in ``data``, received on ``conn`` at ``now``.

        Replies and deliveries are queued (see :meth:`take_ready`). Lines the
        connection may not run yet (flood budget spent, a recipient congested)
        are held, in order, and the adapter is told to stop reading; they run
        later, from :meth:`handle_timeout`. Input on a connection that is
        closing or gone is ignored.
        """
        c = self._conns.get(conn)
        if c is None:
            self._live(conn)  # raises for an id never issued
            return []
        if c.mode is not _OPEN:
            return []
        self._now = now
        if type(data) is not bytes:
            data = bytes(data)
        if b"\n" in data:
            c.last_seen = now  # any complete line resets the idle timer (§12.2)
        lines = c.lines.feed(data)
        if c.held is not None:
            c.held += lines  # still waiting: these queue up behind the others
        elif lines:
            if self._rate:
                self._refill(c, now)
            self._run(c, lines, now)
        if self._overflowed:
            self._drop_overflowed(now)
        events = self._events
        if events:
            self._events = []
            return events
        return []

    def receive_eof(self, conn: ConnId, now: float) -> list[ServerEvent]:
        """The peer shut down its sending side (half-close, §12.1).

        The lines already received are executed (held ones too, when their
        turn comes); their replies are flushed, then the connection closes. A
        partial line is dropped.
        """
        c = self._live(conn)
        if c is None or c.mode is not _OPEN:
            return []
        self._now = now
        if c.held is not None:
            c.lines.feed_eof()
            c.eof_pending = True
            return self._finish(now)
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
        self._now = now
        if c.mode is _OPEN:
            self._begin_close(c, CloseReason.CONNECTION_LOST, now, _NOW)
        del self._conns[conn]
        c.out.clear()
        c.queued = 0
        c.held = None
        self._release(c)
        assert c.reason is not None
        self._events.append(ConnectionClosed(conn, c.reason))
        return self._finish(now)

    def shutdown(self, now: float) -> list[ServerEvent]:
        """Tell everyone the server is going away, and close every connection.

        Every connection gets ``INFO server-shutdown`` (one already closing
        gets it after what it was owed; one being cut off gets nothing); then
        each logged-in user gets ``INFO <name> disconnected`` for every other
        one (§8.2, §12.5), from one shared buffer. Held input is dropped.
        Connections accepted later are refused. Calling it twice is a no-op.
        """
        if self._shutting_down:
            return []
        self._shutting_down = True
        self._now = now
        members = list(self._room.members())
        lines = [b"INFO " + m.user_line[5:-1] + b" disconnected\n" for m in members]
        block = memoryview(b"".join(lines))
        spans: dict[ConnId, tuple[int, int]] = {}
        offset = 0
        for m, line in zip(members, lines, strict=True):
            spans[m.id] = (offset, offset + len(line))
            offset += len(line)
        self._room.clear()
        self._runnable.clear()
        for c in list(self._conns.values()):
            c.held = None
            if c.mode is not _OPEN:
                # Already closing (QUIT, idle, slow consumer...): it is still
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

        May be early (a connection was active since) or already past (held
        input may run now); never late.
        """
        if self._runnable:
            deadline: float | None = self._now
        else:
            deadline = self._timers[0][0] if self._timers else None
        self._announced = math.inf if deadline is None else deadline
        return deadline

    def deadline_moved(self) -> bool:
        """Whether the next deadline is earlier than the one last read.

        Check it after feeding or draining: ``True`` means the timer must be
        set again, to :meth:`next_deadline`. The adapter keeps no copy of its
        own.
        """
        if self._runnable:
            return self._now < self._announced
        timers = self._timers
        return bool(timers) and timers[0][0] < self._announced

    def handle_timeout(self, now: float) -> list[ServerEvent]:
        """Run what is due: held input, idle and closing timers, congestion limits."""
        self._now = now
        timers = self._timers
        cfg = self._config
        while timers and timers[0][0] <= now:
            deadline, cid, kind = heapq.heappop(timers)
            c = self._conns.get(ConnId(cid))
            if c is None:
                continue
            if kind == _IDLE:
                if c.mode is _OPEN:
                    due = c.last_seen + cfg.idle_timeout
                    if due > now:
                        heapq.heappush(timers, (due, cid, _IDLE))
                    elif c.held:
                        # Lines are waiting to run: it is not idle.
                        heapq.heappush(timers, (now + cfg.idle_timeout, cid, _IDLE))
                    else:
                        self._queue(c, _IDLE_LINE)
                        self._begin_close(c, CloseReason.IDLE_TIMEOUT, now)
            elif kind == _CLOSE:
                if c.mode is _AFTER_FLUSH and c.close_deadline <= now:
                    self._abort(c)  # its grace is over: drop what it did not take
            elif kind == _TOKENS:
                if c.mode is _OPEN and c.held is not None and c.waiting_on is None:
                    self._resume(c, now)
            elif deadline == c.congestion_due:  # others are stale
                c.congestion_due = math.inf
                self._check_congestion(c, now)
        runnable = self._runnable
        while runnable:
            self._runnable = []
            for c in runnable:
                if c.mode is _OPEN and c.held is not None and c.waiting_on is None:
                    self._resume(c, now)
            runnable = self._runnable
        return self._finish(now)

    # --------------------------------------------------------------- output

    def take_ready(self) -> list[ConnId]:
        """Connections with new output or a new close decision since the last call.

        The list may repeat an id or name one that is gone; both are harmless.
        Iterate over it at once; do not keep it.
        """
        ready = self._ready
        if ready:  # most calls find nothing: no new list for them
            self._ready = []
        return ready

    def take_reading_changes(self) -> list[tuple[ConnId, bool]]:
        """``(conn, read)`` pairs since the last call: stop or resume reading ``conn``.

        In order: when an id appears twice, the last pair is the one that
        holds. A closing connection is always read (its input is discarded
        until the peer's FIN), so a paused one is resumed when it starts
        closing.
        """
        changes = self._reading_changes
        if changes:
            self._reading_changes = []
        return changes

    def data_to_send(
        self, conn: ConnId, *, now: float | None = None, max_bytes: int | None = None
    ) -> bytes:
        """What is queued for ``conn``, removed from the queue.

        Call it only when the socket can take more: what stays queued here is
        what the slow-consumer limits measure, and each call is how the core
        sees a congested reader make progress (its senders may then go on,
        from the next :meth:`handle_timeout`: check :meth:`deadline_moved`).
        ``now`` dates that progress; without it, the time of the last feeding
        call is used. With ``max_bytes``, whole queued chunks up to about that
        much are returned (at least one): call again while the socket takes
        more. Adapters pass about a socket buffer's worth (64 KiB), so that
        progress is seen as it happens, not once per backlog. Empty when
        there is nothing to send or the connection is gone.
        """
        c = self._conns.get(conn)
        if c is None or not c.out:
            return b""
        out = c.out
        if max_bytes is None or c.queued <= max_bytes:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            c.queued = 0
        else:
            size = count = 0
            while size < max_bytes:
                size += len(out[count])
                count += 1
            data = b"".join(out[:count])
            del out[:count]
            c.queued -= size
        if c.congested:
            self._drained(c, self._now if now is None else now)
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

    def _run(self, c: Connection, lines: list[Line], now: float) -> None:
        """Execute ``lines`` of ``c`` in order, until done or told to wait.

        The hot path of every server: the common cases are inlined (the PING
        reply, the broadcast, the flood budget).
        """
        events = self._events
        parse = c.session.parse
        tokens = c.tokens
        count = len(lines)
        i = 0
        self._blocker = None
        while i < count:
            if tokens < _LINE_COST:
                c.tokens = tokens
                self._hold_for_tokens(c, lines[i:], now)
                return
            tokens -= 1.0
            kind, arg = parse(lines[i])
            i += 1
            if kind == _MSG_K:
                sent = self._broadcast(c.msg_prefix + arg + b"\n", c)
                if self._message_events:
                    assert c.name is not None
                    events.append(MessageBroadcast(c.id, c.name, arg.decode("utf-8"), sent))
            elif kind == _PING_K:
                self._queue(c, b"PONG " + arg + b"\n" if arg else _PONG)
            elif kind == _BAD_K:
                self._queue(c, _ERR[arg])
                events.append(CommandRejected(c.id, arg))
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
                    return  # the sender itself was dropped: the rest is not executed
            blocker = self._blocker
            if blocker is not None:
                self._blocker = None
                if blocker.mode is _OPEN and not blocker.stalled:
                    c.tokens = tokens
                    self._hold(c, lines[i:], _BACKPRESSURE)
                    c.waiting_on = blocker
                    blocker.waiters.append(c)
                    return
        c.tokens = tokens

    def _on_login(self, c: Connection, name: str) -> None:
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

    def _on_direct(self, c: Connection, recipient: str, text: str) -> None:
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

    # ---------------------------------------------------------- flow control

    def _refill(self, c: Connection, now: float) -> None:
        """Top up the flood budget of ``c`` for the time since the last top-up."""
        tokens = c.tokens + (now - c.refilled) * self._rate
        c.refilled = now
        if tokens >= self._burst:
            tokens = self._burst
            c.flood_episode = False  # slowed down for long enough: a new episode may start
        c.tokens = tokens

    def _hold(self, c: Connection, lines: list[Line], cause: PauseCause) -> None:
        """Keep ``lines`` of ``c`` for later and have the adapter stop reading it."""
        c.held = lines
        if c.reading:
            c.reading = False
            self._reading_changes.append((c.id, False))
            self._events.append(InputPaused(c.id, cause))

    def _hold_for_tokens(self, c: Connection, lines: list[Line], now: float) -> None:
        """``c`` spent its flood budget: run ``lines`` as tokens come (fake lag)."""
        self._hold(c, lines, _FLOOD)
        if not c.flood_episode:
            c.flood_episode = True
            self._events.append(FloodLimited(c.id))
        # Not fewer for fewer held lines: when it wakes must not depend on how
        # the bytes were split into reads (some may still be in TCP).
        batch = max(1.0, math.ceil(self._rate * _TOKEN_BATCH))
        due = now + (batch - c.tokens) / self._rate
        heapq.heappush(self._timers, (due, c.id, _TOKENS))

    def _resume(self, c: Connection, now: float) -> None:
        """Run what ``c`` holds; read it again once nothing is left."""
        held = c.held
        assert held is not None
        c.held = None
        if held:
            c.last_seen = now  # its lines run now: it is not idle
            if self._rate:
                self._refill(c, now)
            self._run(c, held, now)
        if c.held is not None or c.mode is not _OPEN:
            return
        if c.eof_pending:
            c.session.receive_eof()
            self._begin_close(c, CloseReason.PEER_CLOSED, now)
        elif not c.reading:
            c.reading = True
            self._reading_changes.append((c.id, True))
            self._events.append(InputResumed(c.id))

    def _release(self, c: Connection) -> None:
        """The senders waiting for ``c`` may go on (from the next handle_timeout)."""
        waiters = c.waiters
        if waiters:
            for w in waiters:
                if w.waiting_on is c:
                    w.waiting_on = None
                    self._runnable.append(w)
            waiters.clear()

    def _congest(self, c: Connection) -> None:
        """``c`` has more than the high-water mark queued (from _queue and _broadcast)."""
        if c.queued > self._cap:
            self._overflowed.append(c)
        if not c.congested:
            c.congested = True
            c.stalled = False
            c.congested_at = self._now
            self._congestion_timer(c, self._now + (self._stall_after or self._slow_after))
        if not c.stalled and c.mode is _OPEN and self._stall_after:
            self._blocker = c

    def _drained(self, c: Connection, now: float) -> None:
        """Congested ``c`` took output at ``now``: progress. Its senders go on once it is low."""
        self._now = max(self._now, now)
        c.congested_at = now
        if c.queued <= self._low:
            c.congested = c.stalled = False
            self._release(c)
        elif c.stalled:
            c.stalled = False  # it holds senders back again, until it stalls again
            if self._stall_after:
                self._congestion_timer(c, now + self._stall_after)

    def _congestion_timer(self, c: Connection, due: float) -> None:
        """Have the congestion of ``c`` checked at ``due`` (one live entry at most)."""
        if due < c.congestion_due:
            c.congestion_due = due
            heapq.heappush(self._timers, (due, c.id, _CONGESTION))

    def _check_congestion(self, c: Connection, now: float) -> None:
        """The congestion timer of ``c`` is due: stall it, drop it, or look again later."""
        if not c.congested or c.mode is not _OPEN:
            return
        slow_due = c.congested_at + self._slow_after
        if slow_due <= now:
            self._drop_slow(c, now)  # the soft limit: no progress for too long
            return
        if self._stall_after and not c.stalled:
            stall_due = c.congested_at + self._stall_after
            if stall_due > now:
                self._congestion_timer(c, stall_due)
                return
            # It takes nothing: it holds nobody back until it does.
            c.stalled = True
            self._release(c)
        self._congestion_timer(c, slow_due)

    # ------------------------------------------------------------ internals

    def _admit(self, now: float) -> ConnId:
        conn = ConnId(self._next_id)
        self._next_id += 1
        session = ServerSession(self._config.max_line_bytes)
        c = self._conns[conn] = Connection(conn, session, now, self._burst)
        c.counted = True
        self._open += 1
        heapq.heappush(self._timers, (now + self._config.idle_timeout, conn, _IDLE))
        return conn

    def _live(self, conn: ConnId) -> Connection | None:
        c = self._conns.get(conn)
        if c is None and not 0 < conn < self._next_id:
            raise LocalProtocolError(
                f"connection {conn} was never issued by this server; "
                "use the id returned by accept() or connection_made()"
            )
        return c

    def _queue(self, c: Connection, data: bytes | memoryview) -> None:
        out = c.out
        if not out:
            self._ready.append(c.id)
        out.append(data)
        c.queued += len(data)
        if c.queued > self._high:
            self._congest(c)

    def _broadcast(self, line: bytes, sender: Connection) -> int:
        """Queue ``line`` (shared, not copied) for every member but ``sender``."""
        size = len(line)
        high = self._high
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
            if queued > high:
                self._congest(c)
            sent += 1
        return sent

    def _begin_close(
        self,
        c: Connection,
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
        c.held = None
        self._release(c)  # nobody waits for a connection that is leaving
        if mode is _NOW:
            c.out.clear()
            c.queued = 0
        elif not c.reading:
            # A closing connection is read (and its input discarded) until
            # the peer's FIN, so that closing never turns into a reset.
            c.reading = True
            self._reading_changes.append((c.id, True))
        c.close_deadline = now + self._config.close_timeout
        heapq.heappush(self._timers, (c.close_deadline, c.id, _CLOSE))
        self._ready.append(c.id)
        name = c.name
        if name is not None:
            self._room.release(name)
            self._events.append(UserLeft(c.id, name, reason))
            if announce:
                self._broadcast(b"INFO " + c.user_line[5:-1] + b" disconnected\n", c)

    def _abort(self, c: Connection) -> None:
        c.mode = _NOW
        c.out.clear()
        c.queued = 0
        self._ready.append(c.id)

    def _drop_slow(self, c: Connection, now: float) -> None:
        """Drop a slow consumer: its backlog goes, one line says why (§12.3)."""
        c.out.clear()
        c.queued = 0
        self._begin_close(c, CloseReason.SLOW_CONSUMER, now)
        # Past every limit on purpose: the last line it is owed.
        c.out.append(_SLOW_LINE)
        c.queued = len(_SLOW_LINE)

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
                self._drop_slow(c, now)
            else:
                self._abort(c)
