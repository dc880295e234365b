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
from collections.abc import Mapping, Sequence
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
            name: self._executor.submit(self._run, list(args)) for name, args in runs.items()
        }

    def __getitem__(self, name: str) -> SuiteRun:
        return self._futures[name].result(timeout=RUN_TIMEOUT)

    def close(self) -> None:
        """Stop what is still running."""
        with self._lock:
            self._closing = True
            for proc in self._procs:
                proc.send_signal(signal.SIGTERM)
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _run(self, args: list[str]) -> SuiteRun:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report.json"
            began = time.monotonic()
            with self._lock:
                if self._closing:
                    raise RuntimeError("the pool was closed")
                proc = subprocess.Popen(
                    [sys.executable, "-m", "chatproto.conformance", *args, "--json", str(report)],
                    cwd=self._cwd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                self._procs.add(proc)
            try:
                text, _ = proc.communicate(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)
                text, _ = proc.communicate()
            finally:
                with self._lock:
                    self._procs.discard(proc)
            took = time.monotonic() - began
            data = json.loads(report.read_text("utf-8")) if report.exists() else {}
            return SuiteRun(proc.returncode, data, took, text)
