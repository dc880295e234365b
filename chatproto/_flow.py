"""Flow control: whose input the server takes now, and how much (docs/protocol.md §16).

Owns: the flood budget of each connection (a token bucket: lines over it are
held, in order, and run as tokens come: fake lag), backpressure (a line that
queues output for a congested recipient makes its sender wait until that
recipient has taken its queue down), and the congestion clocks (a recipient
that takes nothing stops holding anyone back after ``backpressure_timeout``,
and is dropped after ``slow_consumer_timeout``). Never reads a clock or
touches a socket: it tells the adapter to stop and resume reading through
``take_reading_changes``, and when held input may run through the timer.

A mixin of :class:`~chatproto.ChatServer`, whose state it shares: the split
keeps each module to one job while the hot path stays one class's methods.
"""

from __future__ import annotations

import heapq
import math
from typing import Final

from ._config import ServerConfig
from ._connection import Connection, Line, Timer
from ._events import (
    CloseMode,
    ConnId,
    FloodLimited,
    InputPaused,
    InputResumed,
    PauseCause,
    ServerEvent,
)

__all__ = ["FlowControl"]

_OPEN = CloseMode.OPEN
_FLOOD = PauseCause.FLOOD
#: A flood-limited connection is woken when it can run this share of a second
#: of its rate at once: ten wake-ups a second at most, whatever the rate.
_TOKEN_BATCH: Final = 0.1
#: A line runs when the budget holds this much. Not 1.0: a budget topped up at
#: exactly the computed instant can fall a rounding error short of 1.0, and
#: must not wait for another wake-up (or loop at the same instant).
LINE_COST: Final = 1.0 - 1e-6


class FlowControl:
    """The flow-control half of :class:`~chatproto.ChatServer`."""

    # Shared with ChatServer, which sets them up.
    _config: ServerConfig
    _cap: int
    _rate: float
    _burst: float
    _low: int
    _stall_after: float
    _slow_after: float
    _now: float
    _timers: list[tuple[float, int, Timer]]
    _events: list[ServerEvent]
    _reading_changes: list[tuple[ConnId, bool]]
    _overflowed: list[Connection]
    _blocker: Connection | None
    _runnable: list[Connection]

    # What ChatServer provides to it.
    def _run(self, c: Connection, lines: list[Line], now: float) -> None:
        raise NotImplementedError

    def _drop_slow(self, c: Connection, now: float) -> None:
        raise NotImplementedError

    def _end_of_stream(self, c: Connection, now: float) -> None:
        raise NotImplementedError

    # ---------------------------------------------------------- the budget

    def _refill(self, c: Connection, now: float) -> None:
        """Top up the flood budget of ``c`` for the time since the last top-up."""
        tokens = c.tokens + (now - c.refilled) * self._rate
        c.refilled = now
        if tokens >= self._burst:
            tokens = self._burst
            c.flood_episode = False  # slowed down for long enough: a new episode may start
        c.tokens = tokens

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
        heapq.heappush(self._timers, (due, c.id, Timer.TOKENS))

    # ------------------------------------------------------ holding input

    def _hold(self, c: Connection, lines: list[Line], cause: PauseCause) -> None:
        """Keep ``lines`` of ``c`` for later and have the adapter stop reading it."""
        c.held = lines
        if c.reading:
            c.reading = False
            self._reading_changes.append((c.id, False))
            self._events.append(InputPaused(c.id, cause))

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
            self._end_of_stream(c, now)
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

    # --------------------------------------------------------- congestion

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
            heapq.heappush(self._timers, (due, c.id, Timer.CONGESTION))

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
