"""What a line does in the room: routing, the output queues, and who leaves.

Owns: executing a connection's lines in order (the hot path of every server:
the PING reply, the broadcast and the flood budget are inlined), the commands
that touch the room (LOGIN, DM, WHO), queueing output (a broadcast line is
encoded once and the same ``bytes`` object is queued for every recipient),
the hard cap on a queue, and closing a connection: its reason, its mode, the
notice to the others, and the slow-consumer drop with its last line
(docs/protocol.md §5 to §12).

A mixin of :class:`~chatproto.ChatServer`, whose state it shares; the public
API, the timers and the adapter's side are in :mod:`chatproto._server`.
"""

from __future__ import annotations

import heapq

from ._commands import Kind
from ._connection import Connection, Line, Timer
from ._errors import ErrorCode
from ._events import (
    CloseMode,
    CloseReason,
    CommandRejected,
    ConnId,
    DirectMessageSent,
    MessageBroadcast,
    PauseCause,
    ServerEvent,
    UserLeft,
    UserLoggedIn,
)
from ._flow import LINE_COST, FlowControl
from ._replies import (
    ERROR_LINES,
    HELP_LINE,
    OK_LINE,
    PONG_LINE,
    PONG_PREFIX,
    SLOW_CONSUMER_LINE,
    UserLines,
)
from ._room import Room

__all__ = ["Routing"]

_OPEN, _NOW = CloseMode.OPEN, CloseMode.NOW
_BACKPRESSURE, _CLAIM = PauseCause.BACKPRESSURE, PauseCause.CLAIM
# The kinds, as locals of this module: compared once per line with "is".
_MSG, _PING, _BAD, _LOGIN, _DM, _WHO, _HELP, _QUIT = (
    Kind.MSG,
    Kind.PING,
    Kind.BAD,
    Kind.LOGIN,
    Kind.DM,
    Kind.WHO,
    Kind.HELP,
    Kind.QUIT,
)


class Routing(FlowControl):
    """The room half of :class:`~chatproto.ChatServer`: lines in, queues out."""

    #: Whether a PING may have to wait (a cluster node: see _ping_barrier).
    _ping_waits = False

    # Shared with ChatServer, which sets them up.
    _message_events: bool
    _high: int
    _open: int
    _room: Room[Connection]
    _ready: list[ConnId]
    _conns: dict[ConnId, Connection]
    # Totals for counters(): plain integers, incremented where the work is.
    _msg_lines: int
    _ping_lines: int
    _rare_lines: list[int]
    _lines_out: int

    # ------------------------------------------------------------ commands

    def _run(self, c: Connection, lines: list[Line], now: float) -> None:
        """Execute ``lines`` of ``c`` in order, until done or told to wait.

        The hot path of every server: the common cases are inlined (the PING
        reply, the broadcast), and the flood budget is settled once per call,
        not per line (it does not refill while one read runs).
        """
        events = self._events
        parse = c.session._parse
        tokens = c.tokens
        count = len(lines)
        # The whole lines the budget allows now (LINE_COST's tolerance).
        affordable = count if tokens >= count else int(tokens + (1.0 - LINE_COST))
        done = 0
        self._blocker = None
        for line in lines if affordable == count else lines[:affordable]:
            done += 1
            kind, arg = parse(line)
            if kind is _MSG:
                self._msg_lines += 1
                sent = self._broadcast(c.msg_prefix + arg + b"\n", c)
                if self._message_events:
                    name = c.session.username
                    assert name is not None
                    events.append(MessageBroadcast(c.id, name, arg.decode("utf-8"), sent))
            elif kind is _PING:
                if self._ping_waits and self._ping_barrier(c):
                    # A cluster's PONG waits for the bus (docs/protocol.md §17.3).
                    c.tokens = tokens - done + 1  # the PING runs again, and pays then
                    self._hold(c, lines[done - 1 :], _CLAIM)
                    return
                self._ping_lines += 1  # and its PONG: see counters()
                # _queue inlined: the request/response round trip.
                reply = PONG_PREFIX + arg + b"\n" if arg else PONG_LINE
                out = c.out
                if not out:
                    self._ready.append(c.id)
                out.append(reply)
                c.queued += len(reply)
                if c.queued > self._high:
                    self._congest(c)
            elif kind is _BAD:
                self._rare_lines[_BAD] += 1  # the rarer commands, counted by kind
                self._queue(c, ERROR_LINES[arg])
                events.append(CommandRejected(c.id, arg))
            elif kind is _DM:
                self._rare_lines[_DM] += 1
                self._on_direct(c, *arg)
            elif kind is _LOGIN:
                self._rare_lines[_LOGIN] += 1
                if self._on_login(c, arg):
                    # Decided elsewhere (a cluster's claim): the rest waits.
                    c.tokens = tokens - done
                    self._hold(c, lines[done:], _CLAIM)
                    return
            elif kind is _WHO:
                self._rare_lines[_WHO] += 1
                self._on_who(c)
            elif kind is _HELP:
                self._rare_lines[_HELP] += 1
                self._queue(c, HELP_LINE)
            else:  # QUIT: the session is closed; nothing after it runs
                self._rare_lines[_QUIT] += 1
                c.tokens = tokens - done
                self._queue(c, OK_LINE)
                self._begin_close(c, CloseReason.QUIT, now)
                return
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
                    c.tokens = tokens - done
                    self._hold(c, lines[done:], _BACKPRESSURE)
                    c.waiting_on = blocker
                    blocker.waiters.append(c)
                    return
        c.tokens = tokens - done
        if done < count:  # the budget ran out: the rest runs as tokens come
            self._hold_for_tokens(c, lines[done:], now)

    def _on_login(self, c: Connection, name: str) -> bool:
        """Claim ``name`` for ``c``; ``True`` if the answer comes later (its input waits)."""
        if not self._room.claim(name, c):
            self._queue(c, ERROR_LINES[ErrorCode.USERNAME_TAKEN])
            self._events.append(CommandRejected(c.id, ErrorCode.USERNAME_TAKEN))
            return False
        c.session.login_accepted(name)
        c.user = user = UserLines.of(name)
        c.msg_prefix = user.msg_prefix
        c.dm_prefix = user.dm_prefix
        self._queue(c, OK_LINE)
        self._broadcast(user.joined, c)
        self._events.append(UserLoggedIn(c.id, name))
        return False

    def _ping_barrier(self, c: Connection) -> bool:
        """Whether the PING of ``c`` waits (its lines held); only if ``_ping_waits``."""
        return False

    def _on_who(self, c: Connection) -> None:
        users = [m.user.user for m in self._room.members() if m.user]
        self._queue(c, b"".join(users))
        self._lines_out += len(users) - 1  # _queue counts one

    def _on_direct(self, c: Connection, recipient: str, text: str) -> None:
        found = self._room.lookup(recipient)
        if found is None:
            self._queue(c, ERROR_LINES[ErrorCode.USER_NOT_FOUND])
            self._events.append(CommandRejected(c.id, ErrorCode.USER_NOT_FOUND))
            return
        registered, target = found
        self._queue(target, c.dm_prefix + text.encode("utf-8") + b"\n")
        self._queue(c, OK_LINE)
        if self._message_events:
            name = c.session.username
            assert name is not None
            self._events.append(DirectMessageSent(c.id, name, registered, text))

    # -------------------------------------------------------------- queues

    def _queue(self, c: Connection, data: bytes | memoryview) -> None:
        """Queue one line (or ``data`` of several: the caller counts the rest) for ``c``."""
        self._lines_out += 1
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
        self._lines_out += sent  # once per broadcast, not per recipient
        return sent

    # ------------------------------------------------------------- closing

    def _begin_close(
        self,
        c: Connection,
        reason: CloseReason,
        now: float,
        trigger: str = "close",
        *,
        announce: bool = True,
    ) -> None:
        """Start closing ``c`` for ``reason`` (``close`` after its output, or ``abort``).

        The user leaves the room now. A connection already closing is left as
        it is: the first reason is the one reported.
        """
        if c.mode is not _OPEN:
            return
        c.transition(trigger)
        c.reason = reason
        if c.counted:
            c.counted = False
            self._open -= 1
        c.held = None
        self._release(c)  # nobody waits for a connection that is leaving
        if c.mode is _NOW:
            c.out.clear()
            c.queued = 0
        elif not c.reading:
            # A closing connection is read (and its input discarded) until
            # the peer's FIN, so that closing never turns into a reset.
            c.reading = True
            self._reading_changes.append((c.id, True))
        c.close_deadline = now + self._config.close_timeout
        heapq.heappush(self._timers, (c.close_deadline, c.id, Timer.CLOSE))
        self._ready.append(c.id)
        user = c.user
        if user is not None:
            name = c.session.username
            assert name is not None
            self._room.release(name)
            self._events.append(UserLeft(c.id, name, reason))
            if announce:
                self._broadcast(user.disconnected, c)

    def _end_of_stream(self, c: Connection, now: float) -> None:
        """The peer's FIN, once the lines before it have run: close after the replies."""
        c.session.receive_eof()  # drops a partial line (§1.6)
        self._begin_close(c, CloseReason.PEER_CLOSED, now)

    def _abort(self, c: Connection) -> None:
        c.transition("abort")
        c.out.clear()
        c.queued = 0
        self._ready.append(c.id)

    def _drop_slow(self, c: Connection, now: float) -> None:
        """Drop a slow consumer: its backlog goes, one line says why (§12.3)."""
        c.out.clear()
        c.queued = 0
        self._begin_close(c, CloseReason.SLOW_CONSUMER, now)
        # Past every limit on purpose: the last line it is owed.
        c.out.append(SLOW_CONSUMER_LINE)
        c.queued = len(SLOW_CONSUMER_LINE)
        self._lines_out += 1

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
