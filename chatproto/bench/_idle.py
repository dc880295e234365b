"""The idle scenario: many open connections that do nothing, and life beside them.

Owns what happens among N idle connections (opened before ``go``, each
answered once so the server has really taken it; logged in with
``--idle-login``): a probe client connects and logs in every
``probe_interval`` seconds of the window (process 0), timed from its connect
to the ``OK``, and an optional fan-out room (``--room``) runs beside them
with fanout's figures, so that the same command with ``--clients 0`` gives
the room's rate without them. The server's memory is the runner's (RSS with
``--server-pid``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ._conn import Conn, ignore, lines_of
from ._fanout import Fanout
from ._stats import bucket_us

if TYPE_CHECKING:
    from ._worker import Worker

__all__ = ["Idle"]


class Idle(Fanout):
    """Idle connections held by the worker; probes and the room run here."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(worker)
        self.probes = 0
        #: Connect-to-OK latency of each probe, µs buckets.
        self.probe_hist: dict[int, int] = {}

    def go(self) -> None:
        super().go()
        if self.w.share.proc == 0:
            self.w.at(self.w.ws, self._probe)

    def _probe(self) -> None:
        """One more client connects and logs in, among all the others."""
        w = self.w
        if w.phase != "run":
            return
        k = self.probes
        self.probes += 1
        w.c["probes"] += 1
        name = f"{w.cfg.prefix}{w.share.proc}_p{k}"
        conn = w.connect(w.to_open + k, name, self._probe_open, self._probe_closed)
        if isinstance(conn, int):
            w.c["probe_fail"] += 1
        w.after(w.cfg.probe_interval, self._probe)

    def _probe_open(self, conn: Conn) -> None:
        conn.handler = self._probe_data
        self.w.write(conn, b"LOGIN " + conn.name.encode() + b"\n")

    def _probe_data(self, conn: Conn, block: bytes) -> None:
        w = self.w
        for line in lines_of(block):
            if line.startswith(b"OK"):
                conn.logged_in = True  # answered: what follows does not matter
                b = bucket_us((time.monotonic_ns() - conn.t_start) // 1000)
                self.probe_hist[b] = self.probe_hist.get(b, 0) + 1
                conn.handler = ignore
                w.write(conn, b"QUIT\n")
                return
            if line.startswith(b"ERR"):
                w.tally.note_err(line)
                w.lost(conn, 0)
                return

    def _probe_closed(self, conn: Conn, err: int | None) -> None:
        if not conn.logged_in:
            self.w.c["probe_fail"] += 1

    def result(self) -> dict[str, Any]:
        return {**super().result(), "idle": self.w.share.idle, "probe_hist": self.probe_hist}
