"""The benchmark runner behind ``benchmarks/run.py``, one job per module.

* :mod:`.targets`: the servers measured, and the paths.
* :mod:`.scenarios`: the measurements, full and ``--quick``.
* :mod:`.server`: server processes: pinning, start, port, stop.
* :mod:`.plan`: what a run does, from the arguments; saved with the results.
* :mod:`.running`: one scenario on one fresh server, and all of them.
* :mod:`.summary`: medians per (scenario, target).
* :mod:`.page`, :mod:`.tables`, :mod:`.plot`: docs/performance.md and its plot.

Not a library: ``benchmarks/run.py`` puts this directory on ``sys.path``.
"""
