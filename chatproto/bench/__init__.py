"""``chatproto-bench``: the load generator for chatproto servers.

An I/O tool at the edge of the project: it opens real sockets, forks worker
processes and reads clocks, so the sans-IO core never imports it. It speaks the
protocol of docs/protocol.md, tolerantly enough to measure third-party servers
(banners before the login reply, echoes, join notices, ``\\r\\n``).

Layout: :mod:`.cli` (arguments and output), ``_config`` (what to run),
``_runner`` (the parent process: workers in step, progress, ``/proc`` of the
server), ``_client_loop`` (the fast per-process client loop and the scenarios
on the wire), ``_report`` (figures and the table), ``_stats`` (histogram,
``/proc`` readings). docs/performance.md explains the method.

Use from Python::

    from chatproto.bench import BenchConfig, run_bench
    result = run_bench(BenchConfig("fanout", port=4000, clients=10, duration=2))
"""

from ._config import SCENARIOS, BenchConfig
from ._report import render_table
from ._runner import run_bench
from ._stats import LatencyHistogram, ProcReader

__all__ = [
    "SCENARIOS",
    "BenchConfig",
    "LatencyHistogram",
    "ProcReader",
    "render_table",
    "run_bench",
]
