"""The shared state of a chat server, with no I/O: the hub adapters wire up.

Owns: the connections it hands ids to, the room (through :class:`Room`),
routing of every command, the output buffers, flow control (whose input is
taken now, and how much), the slow-consumer limits, idle and closing deadlines,
and shutdown (docs/protocol.md §5 to §16). Never touches a socket or a clock:
adapters feed it bytes with the time, drain its output when their sockets can
take more, read only the connections it says to read, and close what it says
to close. Its halves are mixins with one job each: admission and connection
ids (:mod:`chatproto._admission`), executing lines and the output queues
(:mod:`chatproto._routing`), flow control (:mod:`chatproto._flow`).

Output for a connection accumulates across inputs until drained, so the lines
that many inputs produce for one recipient leave in one write. A broadcast line
is encoded once and the same ``bytes`` object is queued for every recipient.
"""

from __future__ import annotations

import heapq
import math

from ._admission import Admission
from ._commands import Kind
from ._config import ServerConfig
from ._connection import Connection, Timer
from ._counters import ServerCounters
from ._events import (
    CloseMode,
    CloseReason,
    ConnectionClosed,
    ConnectionRefused,
    ConnId,
    PauseCause,
    ServerEvent,
)
from ._replies import IDLE_LINE, SHUTDOWN_LINE
from ._room import Room
from ._routing import Routing
from ._server_session import ServerSession

__all__ = ["ChatServer"]

_OPEN, _AFTER_FLUSH, _NOW = CloseMode.OPEN, CloseMode.AFTER_FLUSH, CloseMode.NOW


class ChatServer(Routing, Admission):
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
        self._timers: list[tuple[float, int, Timer]] = []
        #: The deadline last handed out by next_deadline (see deadline_moved).
        self._announced = math.inf
        #: The latest time any call brought; drains have no ``now`` of their own.
        self._now = -math.inf
        self._events: list[ServerEvent] = []
        self._shutting_down = False
        # Totals for counters(), each a plain integer incremented where the
        # work already is: MSG and PING lines, the rarer commands by Kind,
        # lines queued (PONGs excepted: one per PING), bytes the adapter took.
        self._msg_lines = 0
        self._ping_lines = 0
        self._rare_lines = [0] * len(Kind)
        self._lines_out = 0
        self._bytes_out = 0

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

    # accept() and refuse() are the Admission mixin's.

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
            c.eof_pending = True  # the held lines run first (_resume)
        else:
            self._end_of_stream(c, now)
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
            self._begin_close(c, CloseReason.CONNECTION_LOST, now, "abort")
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
        lines = [m.user.disconnected for m in members if m.user is not None]
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
                    self._queue(c, SHUTDOWN_LINE)
                continue
            self._queue(c, SHUTDOWN_LINE)
            span = spans.get(c.id)
            if span is not None:
                start, end = span
                # One line per other user, in up to two chunks that _queue
                # counts as one each.
                self._lines_out += len(lines) - 1 - (start > 0) - (end < len(block))
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
            if kind is Timer.IDLE:
                if c.mode is _OPEN:
                    due = c.last_seen + cfg.idle_timeout
                    if due > now:
                        heapq.heappush(timers, (due, cid, Timer.IDLE))
                    elif c.held:
                        # Lines are waiting to run: it is not idle.
                        heapq.heappush(timers, (now + cfg.idle_timeout, cid, Timer.IDLE))
                    else:
                        self._queue(c, IDLE_LINE)
                        self._begin_close(c, CloseReason.IDLE_TIMEOUT, now)
            elif kind is Timer.CLOSE:
                if c.mode is _AFTER_FLUSH and c.close_deadline <= now:
                    self._abort(c)  # its grace is over: drop what it did not take
            elif kind is Timer.TOKENS:
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
        more; a result shorter than ``max_bytes`` means nothing more is queued
        (no need to ask again). Adapters pass about a socket buffer's worth (64 KiB), so that
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
            self._bytes_out += c.queued
            c.queued = 0
        else:
            size = count = 0
            while size < max_bytes:
                size += len(out[count])
                count += 1
            data = b"".join(out[:count])
            del out[:count]
            c.queued -= size
            self._bytes_out += size
        if c.congested:
            self._drained(c, self._now if now is None else now)
        return data if type(data) is bytes else bytes(data)

    def close_mode(self, conn: ConnId) -> CloseMode:
        """Whether ``conn`` stays open, closes after its output, or closes now."""
        c = self._conns.get(conn)
        return _NOW if c is None else c.mode

    def counters(self) -> ServerCounters:
        """The totals since this server was made, and what it holds now (for metrics).

        Cheap to keep (the totals are plain integers the hot paths increment
        at most once per read, line or drain) and O(connections) to read, so
        read it when asked (a scrape), not per event. Safe to call from
        another thread than the one feeding the server, as long as the
        interpreter has a global lock: each number is read once.
        """
        rare = list(self._rare_lines)  # one copy: the rare counts from the same moment
        counts = {  # in the order of COMMAND_LABELS
            "login": rare[Kind.LOGIN],
            "msg": self._msg_lines,
            "dm": rare[Kind.DM],
            "who": rare[Kind.WHO],
            "ping": self._ping_lines,
            "help": rare[Kind.HELP],
            "quit": rare[Kind.QUIT],
            "invalid": rare[Kind.BAD],
        }
        queued = paused_flood = paused_back = 0
        for c in list(self._conns.values()):  # a copy: another thread may be adding
            queued += c.queued
            if not c.reading and c.mode is _OPEN:
                if c.waiting_on is not None:
                    paused_back += 1
                else:
                    paused_flood += 1
        return ServerCounters(
            lines_in=counts,
            # Each PING queued exactly one PONG, which its branch does not count.
            lines_out=self._lines_out + counts["ping"],
            bytes_out=self._bytes_out,
            connections=len(self._conns),
            users=len(self._room),
            queued_bytes=queued,
            paused={
                PauseCause.FLOOD.value: paused_flood,
                PauseCause.BACKPRESSURE.value: paused_back,
            },
        )

    def close_reason(self, conn: ConnId) -> CloseReason | None:
        """Why ``conn`` is closing, or ``None`` while it is open or unknown."""
        c = self._conns.get(conn)
        return None if c is None else c.reason
