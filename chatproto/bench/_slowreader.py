"""The slowreader scenario: fanout, plus one client that logs in and never reads.

Owns the slow reader: its small receive buffer, noticing when the server
drops it (the others' ``INFO <name> disconnected``, or its TCP state), and
at the end reading its backlog and PINGing it, to say whether it is alive,
was dropped, or is still backlogged. The others' figures are fanout's.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import TYPE_CHECKING, Any, Final

from ._conn import Conn, ignore, lines_of
from ._fanout import Fanout
from ._poller import IN, OUT

if TYPE_CHECKING:
    from ._worker import Worker

__all__ = ["SlowReader"]

_TCP_ESTABLISHED: Final = 1


class SlowReader(Fanout):
    """Fanout among the others; the first client of process 0 never reads."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(worker)
        self.slow: Conn | None = None
        # The notice that tells everyone the slow reader was dropped.
        name = worker.cfg.username(0, 0).encode()
        self.slow_info = (b"INFO " + name + b" disconnected").lower()
        #: When the drop was first noticed (monotonic ns; 0: not yet).
        self.disconnected_at = 0
        self.state = ""
        self.drained_bytes = 0

    def _is_slow(self, index: int) -> bool:
        return self.w.share.has_slow and index == 0

    def rcvbuf(self, index: int) -> int:
        return self.w.cfg.slow_rcvbuf if self._is_slow(index) else 0

    def is_member(self, conn: Conn) -> bool:
        return conn is not self.slow and super().is_member(conn)

    def logged_in(self, conn: Conn) -> None:
        if not self._is_slow(conn.index):
            super().logged_in(conn)
            return
        # Not reading at all: unregistered, so that not even an error or
        # hang-up event makes the loop touch it. _watch polls its TCP state.
        self.slow = conn
        conn.handler = ignore
        conn.paused = True
        self.w.poller.unregister(conn.fd)
        self.w.after(0.5, self._watch)

    def lost(self, conn: Conn) -> None:
        if conn is not self.slow:
            super().lost(conn)
        elif self.w.phase == "slowcheck":
            self.state = (
                "disconnected_during_run" if self.disconnected_at else "disconnected_at_end"
            )
            self.w.drained()
        elif self.w.phase != "drained":
            self.state = "disconnected_during_run"
            self._dropped()

    def odd_lines(self, block: bytes) -> list[bytes]:
        odd = super().odd_lines(block)
        gone = self.slow_info
        if not self.disconnected_at and any(line.lower() == gone for line in odd):
            self._dropped()
        return odd

    def _dropped(self) -> None:
        if not self.disconnected_at:
            self.disconnected_at = time.monotonic_ns()

    def last_check(self) -> bool:
        """Before ``drained``: read the slow reader's backlog, then PING it."""
        slow = self.slow
        if slow is None or slow.closed or self.state:
            return True
        if self.w.phase != "slowcheck":
            self.w.phase = "slowcheck"
            slow.paused = False
            slow.handler = self._count_backlog
            self.w.poller.register(slow.fd, IN | (OUT if slow.out else 0))
            self.w.after(self.w.cfg.slow_drain, self._ping)
        return False

    def _count_backlog(self, conn: Conn, block: bytes) -> None:
        self.drained_bytes += len(block)

    def _ping(self) -> None:
        slow = self.slow
        if slow is None or slow.closed or self.state:
            return
        slow.handler = self._await_pong
        self.w.write(slow, b"PING slow\n")
        self.w.after(2.0, self._verdict)

    def _await_pong(self, conn: Conn, block: bytes) -> None:
        self.drained_bytes += len(block)
        if not self.state and any(line.startswith(b"PONG") for line in lines_of(block)):
            self.state = "alive"
            self.w.drained()

    def _verdict(self) -> None:
        if not self.state:
            self.state = "unresponsive_or_backlogged"
            self.w.drained()

    def _watch(self) -> None:
        """While the slow reader is not read, notice if the server drops it."""
        slow = self.slow
        if slow is None or slow.closed or not slow.paused or self.w.phase == "drained":
            return
        if _tcp_state(slow) != _TCP_ESTABLISHED:
            self._dropped()
            return
        self.w.after(0.5, self._watch)

    def result(self) -> dict[str, Any]:
        if self.slow is not None and not self.state:
            # Still connected but never checked (no drain phase reached it).
            established = _tcp_state(self.slow) == _TCP_ESTABLISHED
            self.state = "alive" if established else "disconnected_at_end"
        return {
            **super().result(),
            "slow_state": self.state,
            "slow_disconnected_at": self.disconnected_at,
            "slow_drained_bytes": self.drained_bytes,
        }


def _tcp_state(conn: Conn) -> int:
    tcp_info = getattr(socket, "TCP_INFO", None)
    if tcp_info is None:
        return _TCP_ESTABLISHED
    try:
        raw = conn.sock.getsockopt(socket.IPPROTO_TCP, tcp_info, 8)
    except OSError:
        return 0
    return int(struct.unpack("B", raw[:1])[0])
