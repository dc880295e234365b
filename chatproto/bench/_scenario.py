"""What a scenario does on the wire, as hooks the worker calls.

Owns the interface between :class:`._worker.Worker` (the loop, the
connections, the login, the timeline) and the scenarios
(:mod:`._fanout`, :mod:`._slowreader`, :mod:`._pingpong`, :mod:`._connect`,
:mod:`._idle`), and the defaults: a scenario that only reads and counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ._conn import Conn

if TYPE_CHECKING:
    from ._worker import Worker

__all__ = ["Scenario"]


class Scenario:
    """The part of a worker that differs from one scenario to the next.

    The worker calls, in this order: :meth:`rcvbuf` for each connection it
    opens, :meth:`logged_in` for each client the server accepted,
    :meth:`ready` once all are, :meth:`go` when the parent says so, then
    :meth:`busy` while draining and :meth:`last_check` before saying
    ``drained``, and :meth:`result` at the end. :meth:`lost` may come at any
    time for a logged-in client the server closed.
    """

    #: Log the clients in before ``go``; ``connect``, which measures the
    #: logins themselves, opens them after ``go`` and has no drain phase.
    login_before_go: ClassVar[bool] = True

    def __init__(self, worker: Worker) -> None:
        self.w = worker

    def rcvbuf(self, index: int) -> int:
        """The receive buffer for connection ``index`` (0: the system's default)."""
        return 0

    def logged_in(self, conn: Conn) -> None:
        """``conn`` is logged in: give it its handler."""
        conn.handler = self.count_lines

    def ready(self) -> None:
        """Every client is logged in (or given up): assign roles."""

    def go(self) -> None:
        """The window is set (``worker.ws``, ``worker.we``): start the load."""

    def logins_done(self) -> None:
        """Every connection opened after ``go`` is resolved (``connect``)."""

    def busy(self) -> bool:
        """While draining: whether something sent is still awaited."""
        return False

    def last_check(self) -> bool:
        """Whether the worker may say ``drained`` now (or a check is under way)."""
        return True

    def lost(self, conn: Conn) -> None:
        """The server closed logged-in client ``conn``."""
        self.w.c["disconnects"] += 1

    def result(self) -> dict[str, Any]:
        """The scenario's own figures for the raw result."""
        return {}

    def count_lines(self, conn: Conn, block: bytes) -> None:
        """Handler that reads and counts: every line by kind (a PONG here is stray)."""
        w = self.w
        w.c["lines"] += block.count(b"\n")
        w.c["stray_pongs"] += w.tally.count_lines(block)
