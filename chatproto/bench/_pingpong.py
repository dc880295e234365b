"""The pingpong scenario: every client keeps one ``PING`` outstanding.

Owns the round trips: a ``PING`` goes out as soon as the previous ``PONG``
is back; the time between them is the latency, and ``PONG``s per second the
rate. No nap by default: it would only add to every round trip.
"""

from __future__ import annotations

import time

from ._conn import Conn
from ._scenario import Scenario

__all__ = ["PingPong"]


class PingPong(Scenario):
    """One ``PING`` in flight per client."""

    def logged_in(self, conn: Conn) -> None:
        conn.handler = self.data

    def go(self) -> None:
        for conn in self.w.clients:
            if conn.logged_in and not conn.closed:
                self._ping(conn)

    def busy(self) -> bool:
        return any(c.t_ping and not c.closed for c in self.w.clients)

    def _ping(self, conn: Conn) -> None:
        conn.t_ping = time.monotonic_ns()
        self.w.c["pings_sent"] += 1
        self.w.write(conn, b"PING %d\n" % conn.index)

    def data(self, conn: Conn, block: bytes) -> None:
        if block.startswith(b"PONG") and block.find(b"\n") == len(block) - 1:
            self._pong(conn)  # the common case: exactly one reply
            return
        for _ in range(self.w.tally.count_lines(block)):
            self._pong(conn)

    def _pong(self, conn: Conn) -> None:
        w = self.w
        t = conn.t_ping
        if not t:
            w.c["stray_pongs"] += 1
            return
        now = time.monotonic_ns()
        conn.t_ping = 0
        w.c["pongs"] += 1
        if w.ws <= t < w.we:
            w.c["pongs_in_window"] += 1
            us = (now - t) // 1000
            if us >= 1024:  # stats.bucket_us, inlined
                shift = us.bit_length() - 7
                us = us >> shift << shift
            w.hist[us] = w.hist.get(us, 0) + 1
        if w.phase == "run":
            self._ping(conn)
        elif w.phase == "drain":
            w.check_drained()
