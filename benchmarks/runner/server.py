"""Server processes: where they run, how they start, how their port is found, how they stop.

Owns CPU pinning (``taskset``: the server on one CPU, the load generator on
the others), reading the port from a server's startup line, and a started
server's life (its stderr to the log, SIGTERM then SIGKILL to its group).
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import subprocess
import threading
import time
from typing import IO

from .targets import ROOT, Target

__all__ = ["Server", "cpu_count", "parse_port", "pinning"]


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def pinning() -> tuple[list[str], list[str]]:
    """``taskset`` prefixes for the server and the load generator."""
    n = cpu_count()
    if shutil.which("taskset") is None or n < 2:
        return [], []
    cpus = sorted(os.sched_getaffinity(0))
    rest = ",".join(str(c) for c in cpus[1:])
    return ["taskset", "-c", str(cpus[0])], ["taskset", "-c", rest]


#: A word ending in ``:PORT`` (``127.0.0.1:4000``, ``[::1]:4000``, ``::1:4000``).
_ADDR = re.compile(r"(?:^|\s)\S*:(\d{1,5})(?=$|[\s),;])")
_PORT = re.compile(r"\bport\D{0,3}(\d{1,5})\b", re.IGNORECASE)


def parse_port(line: str) -> int | None:
    """The port in a server's startup line (``... listening on 127.0.0.1:PORT``)."""
    m = _ADDR.search(line) or _PORT.search(line)
    return int(m.group(1)) if m else None


class Server:
    """A started server process and its port; stopped by :meth:`stop`."""

    def __init__(self, target: Target, prefix: list[str], log: IO[str]) -> None:
        self.target = target
        self.argv = [*prefix, *target.argv]
        self.log = log
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        self.port = self._wait_port(20.0)

    def _wait_port(self, timeout: float) -> int:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        seen = []
        while time.monotonic() < deadline:
            if not sel.select(max(0.0, deadline - time.monotonic())):
                break
            line = self.proc.stdout.readline()
            if not line:
                break
            seen.append(line.strip())
            port = parse_port(line)
            if port:
                sel.close()
                # Keep reading its stdout into the log, or a chatty server
                # would block once the pipe is full.
                threading.Thread(target=self._drain_stdout, daemon=True).start()
                return port
        sel.close()
        self.stop()
        raise RuntimeError(f"{self.target.name} printed no port: {seen!r}")

    def _drain_stdout(self) -> None:
        stdout = self.proc.stdout
        try:
            for line in iter(stdout.readline, "") if stdout is not None else ():
                self.log.write(line)
        except (OSError, ValueError):
            pass  # closed by stop()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 1.0) -> bool:
        """SIGTERM, then SIGKILL after ``grace`` s; whether it exited in time.

        A server has nothing to flush after a run (its clients are gone), so
        it should exit at once; one that needs longer is noted, not waited
        for, so that --quick stays quick.
        """
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5.0)
                return False
        return True
