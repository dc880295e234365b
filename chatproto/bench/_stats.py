"""Numbers: a mergeable latency histogram and readings of another process.

Owns the arithmetic that turns raw samples into the figures the report shows,
and the ``/proc`` readings of a server process (RSS, CPU time). Never opens a
socket.

The histogram is a plain ``dict`` from a bucket (microseconds, rounded down to
7 significant bits, so under 1 % error) to a count: cheap to update in the hot
loop, small (a few thousand keys at most) to pickle from a worker process to
the parent, and exactly mergeable, so percentiles over several processes are
the percentiles of all samples, not an average of percentiles.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "NS",
    "LatencyHistogram",
    "ProcReader",
    "bucket_us",
    "median",
]

#: Nanoseconds per second: every clock here is ``time.monotonic_ns()``.
NS = 1_000_000_000

# Latencies below this many microseconds are kept exactly; above it, rounded
# down to 7 significant bits (a relative error under 1/128).
_EXACT_BELOW_US = 1024


def bucket_us(us: int) -> int:
    """The histogram bucket of a latency of ``us`` microseconds.

    The hot loops inline this very expression; keep them in step.
    """
    if us >= _EXACT_BELOW_US:
        shift = us.bit_length() - 7
        return us >> shift << shift
    return max(us, 0)


class LatencyHistogram:
    """Counts of latencies, in microsecond buckets; exactly mergeable."""

    __slots__ = ("counts",)

    def __init__(self, counts: Mapping[int, int] | None = None) -> None:
        #: bucket (µs, see :func:`bucket_us`) -> number of samples.
        self.counts: dict[int, int] = dict(counts) if counts else {}

    def add_us(self, us: int) -> None:
        """Record one latency of ``us`` microseconds."""
        b = bucket_us(us)
        self.counts[b] = self.counts.get(b, 0) + 1

    def merge(self, other: Mapping[int, int]) -> None:
        """Add every sample of ``other`` (a bucket -> count mapping)."""
        counts = self.counts
        for b, n in other.items():
            counts[int(b)] = counts.get(int(b), 0) + n

    @property
    def n(self) -> int:
        """Number of samples."""
        return sum(self.counts.values())

    def percentile(self, p: float) -> float | None:
        """The ``p``-th percentile (0 to 100) in µs, or ``None`` when empty.

        Nearest rank over the buckets: the smallest bucket with at least
        ``p`` % of the samples at or below it.
        """
        total = self.n
        if total == 0:
            return None
        rank = max(1, -(-total * p // 100))  # ceil without floats
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                return float(b)
        return float(max(self.counts))

    def max(self) -> float | None:
        """The largest bucket seen, in µs."""
        return float(max(self.counts)) if self.counts else None

    def mean(self) -> float | None:
        """The mean, in µs, from the buckets."""
        total = self.n
        if total == 0:
            return None
        return sum(b * n for b, n in self.counts.items()) / total

    def summary(self, prefix: str) -> dict[str, float | int | None]:
        """``{prefix}_n``, ``_p50_us``, ``_p90_us``, ``_p99_us``, ``_max_us``, ``_mean_us``.

        The key names match chatload's, so the benchmark runner reads both.
        """
        return {
            f"{prefix}_n": self.n,
            f"{prefix}_p50_us": self.percentile(50),
            f"{prefix}_p90_us": self.percentile(90),
            f"{prefix}_p99_us": self.percentile(99),
            f"{prefix}_max_us": self.max(),
            f"{prefix}_mean_us": _round(self.mean()),
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def median(values: Iterable[float]) -> float | None:
    """The median of ``values``, or ``None`` when there are none."""
    xs = sorted(values)
    if not xs:
        return None
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


@dataclass(frozen=True, slots=True)
class ProcReading:
    """One look at a process: resident memory and CPU time used so far."""

    rss_kb: int
    cpu_s: float
    threads: int


class ProcReader:
    """Reads a process's RSS and CPU time from ``/proc`` (Linux only).

    Reading another process's ``/proc/PID/stat`` is the only way to know how
    busy a server is without its cooperation. :meth:`read` returns ``None``
    once the process is gone or where ``/proc`` does not exist.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            self._ticks = float(os.sysconf("SC_CLK_TCK"))
        except (ValueError, OSError, AttributeError):
            self._ticks = 100.0

    def read(self) -> ProcReading | None:
        """The process's current RSS (KiB), CPU seconds and thread count."""
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii") as f:
                stat = f.read()
            with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
                status = f.read()
        except OSError:
            return None
        # The command name (field 2) may contain spaces: split after its ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu_s = (int(fields[11]) + int(fields[12])) / self._ticks  # utime + stime
        rss_kb = threads = 0
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
        return ProcReading(rss_kb=rss_kb, cpu_s=cpu_s, threads=threads)
