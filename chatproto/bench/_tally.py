"""What a worker counts, and lines sorted by kind.

Owns the raw counters every worker reports (:data:`COUNTERS`, summed by
:mod:`._report`) and the one classification of lines the load generator did
not expect (``INFO`` notices, ``ERR``, stray ``OK`` and ``PONG``, foreign
``MSG``, anything else), done on a whole block of lines by prefix counts in
C, so that a 10,000-client connect, which reads 50 million join notices,
counts them all without a Python loop per line.
"""

from __future__ import annotations

from typing import Final

from ._config import LINE_COUNTERS
from ._conn import lines_of

__all__ = ["COUNTERS", "Tally"]

#: Every counter of a worker's raw result.
COUNTERS: Final = (
    *LINE_COUNTERS,
    "sent",
    "sent_in_window",
    "acked",
    "ack_timeouts",
    "marker_lines",
    "deliveries_in_window",
    "pings_sent",
    "pongs",
    "pongs_in_window",
    "lines",
    "recv_calls",
    "loop_iterations",
    "probes",
    "probe_fail",
)

#: Line prefix -> the counter it adds to. PONG is not here: whether a PONG
#: answers something is the caller's business (see :meth:`Tally.count_lines`).
_KINDS: Final = (
    (b"INFO", "info_lines"),
    (b"ERR", "err_lines"),
    (b"OK", "ok_lines"),
    (b"MSG", "foreign_msg"),
)
_KNOWN: Final = (*(prefix for prefix, _ in _KINDS), b"PONG")


class Tally:
    """The counters of one worker, and the first odd lines worth quoting."""

    __slots__ = ("c", "first_err_line", "first_other_line")

    def __init__(self) -> None:
        #: counter name -> value; the keys of :data:`COUNTERS`.
        self.c: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.first_err_line = ""
        self.first_other_line = ""

    def note_err(self, line: bytes) -> None:
        """Count one ``ERR`` line, keeping the first for the report."""
        self.c["err_lines"] += 1
        if not self.first_err_line:
            self.first_err_line = _quote(line)

    def count_lines(self, block: bytes) -> int:
        """Count the lines of ``block`` by kind; return how many are ``PONG`` lines.

        ``block`` holds complete lines (see :func:`._conn.complete_lines`).
        Blank lines count as nothing; lines of no known kind as ``other``.
        """
        c = self.c
        total = block.count(b"\n")
        # Blank lines, "\n" or "\r\n": nothing.
        known = block.startswith(b"\n") + block.count(b"\n\n")
        known += block.startswith(b"\r\n") + block.count(b"\n\r\n")
        for prefix, key in _KINDS:
            n = block.startswith(prefix) + block.count(b"\n" + prefix)
            if n:
                c[key] += n
                known += n
                if key == "err_lines" and not self.first_err_line:
                    start = 0 if block.startswith(prefix) else block.find(b"\n" + prefix) + 1
                    self.first_err_line = _quote(block[start : block.find(b"\n", start)])
        pongs = block.startswith(b"PONG") + block.count(b"\nPONG")
        other = total - known - pongs
        if other:
            c["other_lines"] += other
            if not self.first_other_line:
                odd = (ln for ln in lines_of(block) if ln and not ln.startswith(_KNOWN))
                self.first_other_line = _quote(next(odd, b""))
        return pongs


def _quote(line: bytes) -> str:
    return line[:200].rstrip(b"\r").decode("utf-8", "replace")
