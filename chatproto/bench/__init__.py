"""``chatproto-bench``: the load generator for chatproto servers.

An I/O tool at the edge of the project: it opens real sockets, forks worker
processes and reads clocks, so the sans-IO core never imports it. It speaks the
protocol of docs/protocol.md, tolerantly enough to measure third-party servers
(banners before the login reply, echoes, join notices, ``\\r\\n``).

Layout, one job per module:

* :mod:`.cli`: the arguments and where the output goes.
* ``_config``: what to run (:class:`BenchConfig`), and each process's share.
* ``_runner``: the parent process: workers in step, progress, ``/proc`` of
  the server.
* ``_worker``: one worker process: login, the timeline, the raw result; on
  ``_loop`` (the event loop and the sockets), ``_poller`` (epoll or poll),
  ``_conn`` (a connection and the one way its input is framed) and
  ``_tally`` (counters, lines by kind).
* ``_scenario``: the hooks a scenario fills in; ``_fanout``,
  ``_slowreader``, ``_pingpong``, ``_connect``, ``_idle``: the scenarios.
* ``_report``: figures and the table; ``_stats``: histogram, median,
  ``/proc`` readings; ``_fd_limit``: raising the open-files limit.

docs/performance.md explains the method.

Use from Python::

    from chatproto.bench import BenchConfig, run_bench
    result = run_bench(BenchConfig("fanout", port=4000, clients=10, duration=2))
"""

from ._config import SCENARIOS, BenchConfig
from ._fd_limit import raise_fd_limit
from ._report import render_table
from ._runner import run_bench
from ._stats import LatencyHistogram, ProcReader, median

__all__ = [
    "SCENARIOS",
    "BenchConfig",
    "LatencyHistogram",
    "ProcReader",
    "median",
    "raise_fd_limit",
    "render_table",
    "run_bench",
]
