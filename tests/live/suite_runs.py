"""Runs of ``chatproto-conformance`` for the suite's own tests, as a user runs it, several at once.

A conformance run spends most of its time waiting on purpose (absence waits,
idle timeouts, the deadlines a broken server makes it sit out), not
computing. So a test module names every run it needs up front, a
:class:`RunPool` starts them a few at a time in the background, and each test
waits for the run it asserts on: one run can serve several assertions, and
the module takes about as long as its longest runs instead of their sum.
Every run is the real command line (``python -m chatproto.conformance``), with
its JSON report and its printed text.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The longest a single run may take before the test that waits for it fails.
RUN_TIMEOUT = 240.0


@dataclass(frozen=True)
class SuiteRun:
    """One finished run: exit code, JSON report, seconds, printed text."""

    code: int
    report: dict[str, Any]
    seconds: float
    text: str

    @property
    def results(self) -> dict[str, dict[str, Any]]:
        """Each test's result, by ID."""
        return {r["id"]: r for r in self.report.get("results", [])}

    @property
    def outcomes(self) -> dict[str, str]:
        """Each test's outcome (``PASS``, ``FAIL`` ...), by ID."""
        return {r["id"]: r["outcome"] for r in self.report.get("results", [])}

    def bad(self) -> list[tuple[str, str]]:
        """The tests that failed or erred, with their reasons (for assertion messages)."""
        return [
            (r["id"], r["reason"][:200])
            for r in self.report.get("results", [])
            if r["outcome"] in ("FAIL", "ERROR")
        ]


def run_suite(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    started: Callable[[subprocess.Popen[str]], bool] | None = None,
) -> SuiteRun:
    """One run of ``python -m chatproto.conformance ARGS --json REPORT``, to its end.

    ``started`` hears of the process (and may refuse it, to stop at once).
    """
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        began = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "chatproto.conformance", *args, "--json", str(report)],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if started is not None and not started(proc):
            proc.send_signal(signal.SIGTERM)
        try:
            text, _ = proc.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            text, _ = proc.communicate()
        took = time.monotonic() - began
        data = json.loads(report.read_text("utf-8")) if report.exists() else {}
        return SuiteRun(proc.returncode, data, took, text)


class RunPool:
    """Starts named runs (``run`` arguments of ``chatproto-conformance``) a few at a time.

    ``pool[name]`` waits for that run. :meth:`close` stops the runs still
    going (SIGTERM: the suite stops its servers) and the ones not started.
    """

    def __init__(
        self, runs: Mapping[str, Sequence[str]], *, workers: int, cwd: Path | None = None
    ) -> None:
        self._cwd = cwd
        self._procs: set[subprocess.Popen[str]] = set()
        self._lock = threading.Lock()
        self._closing = False
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="suite-run")
        self._futures: dict[str, Future[SuiteRun]] = {
            name: self._executor.submit(run_suite, list(args), cwd=cwd, started=self._started)
            for name, args in runs.items()
        }

    def __getitem__(self, name: str) -> SuiteRun:
        run = self._futures[name].result(timeout=RUN_TIMEOUT)
        with self._lock:
            self._procs = {p for p in self._procs if p.poll() is None}
        return run

    def close(self) -> None:
        """Stop what is still running."""
        with self._lock:
            self._closing = True
            for proc in self._procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _started(self, proc: subprocess.Popen[str]) -> bool:
        with self._lock:
            self._procs.add(proc)
            return not self._closing
