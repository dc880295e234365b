"""The connect scenario: how many clients a server takes, and how well it holds them.

Owns what happens after ``go``: the clients connect and log in (``conc`` at
a time; the logins are what is measured), are held ``duration`` seconds
reading everything (every login is an ``INFO joined`` to everyone before),
then every client PINGs at once and the time until the last ``PONG`` is the
burst figure.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from ._conn import Conn
from ._scenario import Scenario

__all__ = ["Connect"]


class Connect(Scenario):
    """Connect, hold, then one PING from everyone at once."""

    login_before_go: ClassVar[bool] = False

    burst_pending = 0
    t_burst = 0
    #: Nanoseconds until every PONG of the burst was back; -1: not all came.
    burst_ns = 0
    burst_pongs = 0
    alive_after_hold = 0

    def go(self) -> None:
        self.w.phase = "connecting"
        self.w.t_first_connect = 0
        self.w.start_logins()

    def logins_done(self) -> None:
        if self.w.phase == "connecting":
            self.w.phase = "hold"
            self.w.after(self.w.cfg.duration, self._end_hold)

    def lost(self, conn: Conn) -> None:
        super().lost(conn)
        if self.burst_pending and conn.t_ping:
            conn.t_ping = 0
            self.burst_pending -= 1
            self._check_burst_done()

    def _end_hold(self) -> None:
        """After the hold: every live client PINGs at once."""
        w = self.w
        alive = [c for c in w.clients if c.logged_in and not c.closed]
        self.alive_after_hold = len(alive)
        w.phase = "burst"
        self.t_burst = time.monotonic_ns()
        self.burst_pending = len(alive)
        for conn in alive:
            conn.handler = self._burst_data
            conn.t_ping = time.monotonic_ns()
            w.write(conn, b"PING b\n")
        w.after(w.cfg.burst_timeout, self._burst_deadline)
        self._check_burst_done()

    def _burst_data(self, conn: Conn, block: bytes) -> None:
        w = self.w
        w.c["lines"] += block.count(b"\n")
        pongs = w.tally.count_lines(block)
        if pongs and conn.t_ping:
            conn.t_ping = 0
            conn.handler = self.count_lines
            self.burst_pongs += 1
            self.burst_pending -= 1
            pongs -= 1
        w.c["stray_pongs"] += pongs
        self._check_burst_done()

    def _check_burst_done(self) -> None:
        if self.w.phase == "burst" and self.burst_pending <= 0:
            self.burst_ns = time.monotonic_ns() - self.t_burst
            self._end()

    def _burst_deadline(self) -> None:
        if self.w.phase == "burst":
            self.burst_ns = -1  # not every PONG came back in time
            self._end()

    def _end(self) -> None:
        self.w.mark_window_end()
        self.w.drained()

    def result(self) -> dict[str, Any]:
        return {
            "burst_ns": self.burst_ns,
            "burst_pongs": self.burst_pongs,
            "alive_after_hold": self.alive_after_hold,
        }
