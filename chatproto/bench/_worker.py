"""One worker process of the load generator: the login, the timeline, the result.

Owns, on top of the loop and sockets of :class:`._loop.ClientLoop`: opening
this process's share of the connections ``conc`` at a time and logging them
in (skipping banners), the timeline every scenario shares (``go``, the
measured window, draining), the conversation with the parent, and the raw
result. What the clients do on the wire is the scenario's (:mod:`._scenario`
and the modules it names).

Talks to the parent (:mod:`._runner`) through a pipe: it sends a ``tick``
with its running totals every second, says ``ready`` when its clients are
logged in, waits for ``go`` (which carries the measurement window as
absolute ``CLOCK_MONOTONIC`` times, shared by every process on the machine),
says ``drained`` when nothing it sent is still in flight, and answers
``finish`` with its raw ``result``. It never prints.

Why not asyncio: a hand-written loop lets it read a socket with one ``recv``
and parse every line of it with one regular-expression scan, nap between
light iterations so that lines coalesce (as chatload does), and costs no
callback machinery per event. Nothing here blocks except that nap and
``poll``.
"""

from __future__ import annotations

import errno
import os
import signal
import time
import traceback
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any, Final

from ._config import BenchConfig, ProcShare
from ._conn import Conn
from ._connect import Connect
from ._fanout import Fanout
from ._fd_limit import raise_fd_limit
from ._idle import Idle
from ._loop import ClientLoop
from ._pingpong import PingPong
from ._poller import IN
from ._scenario import Scenario
from ._slowreader import SlowReader
from ._stats import NS, bucket_us

__all__ = ["Worker", "worker_main"]

#: The scenario each name of :data:`._config.SCENARIOS` runs.
_SCENARIOS: Final[dict[str, type[Scenario]]] = {
    "fanout": Fanout,
    "connect": Connect,
    "pingpong": PingPong,
    "slowreader": SlowReader,
    "idle": Idle,
}
#: "Never", as a monotonic ns time: the window before ``go`` arrives.
_FAR: Final = 1 << 62


class Worker(ClientLoop):
    """The login, the timeline and the result of one process."""

    def __init__(self, cfg: BenchConfig, share: ProcShare, pipe: Connection) -> None:
        super().__init__(cfg, share)
        self.pipe = pipe
        self.poller.register(pipe.fileno(), IN)
        self.other_fds[pipe.fileno()] = self._on_pipe
        #: Every connection opened by the login machinery, in index order.
        self.clients: list[Conn] = []
        # The measurement window, set by ``go``; in µs too, the unit in which
        # messages carry their send time (one division less per line).
        self.ws = self.we = self.ws_us = self.we_us = _FAR
        self.t_go = 0
        self.nsec = max(1, int(-(-cfg.duration // 1)))
        #: Marker lines received per second of the window.
        self.series = [0] * self.nsec
        #: Connections to open before ``ready``: the scenario's clients plus
        #: the idle ones (which come first).
        self.to_open = share.clients + share.idle
        self.next_index = 0
        self.in_flight = 0
        self.resolved = 0
        self.t_first_connect = 0
        self.t_last_login = 0
        self.login_hist: dict[int, int] = {}
        self.connect_errno: dict[str, int] = {}
        #: Latency bucket (µs) -> count: deliveries, PONGs.
        self.hist: dict[int, int] = {}
        #: Exact µs -> count, from the fast path; bucketed into hist at the end.
        self.fast_hist: Counter[int] = Counter()
        # CPU, idle (waiting in poll) and wall time at go and at the window's
        # edges: how much of the window the loop had nothing to do.
        self.cpu_go = self.cpu_ws = self.cpu_we = 0.0
        self.wall_ws = self.wall_we = 0
        self.idle_go = self.idle_ws = self.idle_we = 0
        self.scenario = _SCENARIOS[cfg.scenario](self)

    # ------------------------------------------------------------- the pipe

    def run(self) -> None:
        """Serve the pipe and the sockets until the parent says ``finish``."""
        self.after(1.0, self._tick)
        if self.scenario.login_before_go:
            self.t_first_connect = time.monotonic_ns()
            self.start_logins()
        else:
            self.phase = "ready"
            self.pipe.send(("ready", self.share.proc, {}))
        self.serve()

    def _on_pipe(self) -> None:
        while self.pipe.poll():
            msg = self.pipe.recv()
            if msg[0] == "go":
                self._go(msg[1], msg[2])
            elif msg[0] == "finish":
                self._finish()
                return

    # ----------------------------------------------------------------- login

    def note_connect_error(self, err: int | None) -> None:
        """Count one connection that could not be made, by errno."""
        self.c["connect_fail"] += 1
        key = errno.errorcode.get(err or 0, str(err))
        self.connect_errno[key] = self.connect_errno.get(key, 0) + 1

    def start_logins(self) -> None:
        """Open every connection of this process (``conc`` at a time) and log them in.

        Those not logged in (or, when idle, answered) after ``login_timeout``
        are given up.
        """
        self.open_more()
        self.after(self.cfg.login_timeout, self._login_deadline)
        self._check_logins_done()

    def open_more(self) -> None:
        """Start connects until ``conc`` are in progress or all are started."""
        while self.in_flight < self.cfg.conc and self.next_index < self.to_open:
            index = self.next_index
            self.next_index += 1
            idle = index < self.share.idle
            conn = self.connect(
                index,
                self.cfg.username(self.share.proc, index),
                self._hello,
                self._client_lost,
                rcvbuf=self.scenario.rcvbuf(index),
            )
            if isinstance(conn, int):
                self._resolve_failed(conn)
                continue
            conn.idle = idle
            self.clients.append(conn)
            self.in_flight += 1

    def _hello(self, conn: Conn) -> None:
        """Connected: LOGIN, or for an idle connection that does not log in, PING.

        The PONG proves the server accepted the connection and read from it,
        so that its memory is counted once every connection is open.
        """
        if self.t_first_connect == 0:
            self.t_first_connect = conn.t_start
        conn.handler = self._data_login
        if conn.idle and not self.cfg.idle_login:
            self.write(conn, b"PING hello\n")
        else:
            self.write(conn, b"LOGIN " + conn.name.encode() + b"\n")

    def _resolve_failed(self, err: int | None) -> None:
        self.note_connect_error(err)
        self.resolved += 1
        self._check_logins_done()

    def _setting_up(self, conn: Conn) -> bool:
        """Whether ``conn`` is still connecting or waiting for its login reply."""
        return conn.connecting or conn.handler == self._data_login

    def _client_lost(self, conn: Conn, err: int | None) -> None:
        if self._setting_up(conn):
            self.in_flight -= 1
            if conn.connecting:
                self._resolve_failed(err)
            else:
                self.c["login_disconnect"] += 1
                self.resolved += 1
                self._check_logins_done()
            self.open_more()
        elif conn.idle:
            self.c["idle_dropped"] += 1
        else:
            self.scenario.lost(conn)

    def _data_login(self, conn: Conn, block: bytes) -> None:
        """Before the login reply: skip banners; ``OK...`` or ``ERR...`` decides.

        An idle connection that does not log in waits for its ``PONG`` instead.
        """
        start = 0
        while start < len(block):
            end = block.index(b"\n", start)
            line = block[start:end]
            start = end + 1
            if line.startswith(b"PONG") and conn.idle and not self.cfg.idle_login:
                self._established(conn)
            elif line.startswith(b"OK"):
                self._logged_in(conn)
            elif line.startswith(b"ERR"):
                self.c["login_err"] += 1
                self.tally.note_err(line)
                self.in_flight -= 1
                self.resolved += 1
                self.forget(conn)
                self.open_more()
                self._check_logins_done()
                return
            else:
                self.c["banner_lines"] += 1
                continue
            # The lines after the reply are the next handler's (an incomplete
            # one stays in conn.buf, for the next read).
            if start < len(block):
                conn.handler(conn, block[start:])
            return

    def _established(self, conn: Conn) -> None:
        """An idle connection is open and answered; it just reads from now on."""
        self.c["idle_open"] += 1
        self.in_flight -= 1
        self.resolved += 1
        self.t_last_login = time.monotonic_ns()
        conn.handler = self.scenario.count_lines
        self.open_more()
        self._check_logins_done()

    def _logged_in(self, conn: Conn) -> None:
        now = time.monotonic_ns()
        conn.logged_in = True
        self.c["logins_ok"] += 1
        self.in_flight -= 1
        self.resolved += 1
        self.t_last_login = now
        b = bucket_us((now - conn.t_start) // 1000)
        self.login_hist[b] = self.login_hist.get(b, 0) + 1
        if conn.idle:
            conn.handler = self.scenario.count_lines
        else:
            self.scenario.logged_in(conn)
        self.open_more()
        self._check_logins_done()

    def _login_deadline(self) -> None:
        """Clients still not logged in after ``login_timeout`` are given up."""
        if self.resolved >= self.to_open:
            return
        for conn in self.clients:
            if not conn.closed and self._setting_up(conn):
                self.c["login_timeout"] += 1
                self.forget(conn)
        self.next_index = self.to_open
        self.resolved = self.to_open
        self.in_flight = 0
        self._check_logins_done()

    def _check_logins_done(self) -> None:
        if self.resolved < self.to_open:
            return
        if self.phase == "login":
            self.phase = "ready"
            self.scenario.ready()
            opened = {"logins_ok": self.c["logins_ok"], "idle_open": self.c["idle_open"]}
            self.pipe.send(("ready", self.share.proc, opened))
        else:
            self.scenario.logins_done()

    # ----------------------------------------------------------- the timeline

    def _go(self, t_go: int, ws: int) -> None:
        self.t_go = t_go
        self.ws = ws
        self.we = ws + int(self.cfg.duration * NS)
        self.ws_us = self.ws // 1000
        self.we_us = self.we // 1000
        self.cpu_go = time.process_time()
        self.idle_go = self.idle_ns
        self.at(ws, self._window_start)
        if self.scenario.login_before_go:
            self.phase = "run"
            self.at(self.we, self._window_end)
        self.scenario.go()

    def _window_start(self) -> None:
        self.idle_ws = self.idle_ns
        self.cpu_ws = time.process_time()
        self.wall_ws = time.monotonic_ns()

    def mark_window_end(self) -> None:
        """Note CPU, idle and wall time at the end of the measured window."""
        self.idle_we = self.idle_ns
        self.cpu_we = time.process_time()
        self.wall_we = time.monotonic_ns()

    def _window_end(self) -> None:
        self.mark_window_end()
        self.phase = "drain"
        self.after(self.cfg.drain, self._drain_deadline)
        self.check_drained()

    def check_drained(self) -> None:
        """In the drain phase: say ``drained`` once nothing is in flight."""
        if self.phase == "drain" and not self.scenario.busy():
            self.drained()

    def _drain_deadline(self) -> None:
        if self.phase == "drain":
            self.drained()

    def drained(self) -> None:
        """Tell the parent this worker is done, unless the scenario has a last check."""
        if self.scenario.last_check():
            self.phase = "drained"
            self.pipe.send(("drained", self.share.proc, {}))

    def _tick(self) -> None:
        if self.finished:
            return
        self.pipe.send(("tick", self.share.proc, self._totals()))
        self.after(1.0, self._tick)

    def _totals(self) -> dict[str, Any]:
        c = self.c
        keys = ("sent", "marker_lines", "pongs", "logins_ok", "disconnects", "err_lines", "lines")
        totals: dict[str, Any] = {k: c[k] for k in keys}
        totals["open"] = c["logins_ok"] + c["idle_open"]
        totals["cpu_s"] = time.process_time()
        return totals

    # --------------------------------------------------------------- finish

    def _finish(self) -> None:
        """Hand the raw result to the parent and stop."""
        self.finished = True
        now = time.monotonic_ns()
        if not self.cpu_we:
            self.cpu_we = time.process_time()
            self.wall_we = now
        if not self.wall_ws:
            self.wall_ws = self.t_go or now
            self.cpu_ws = self.cpu_go
        if not self.idle_we:
            self.idle_we = self.idle_ns
        if self.scenario.login_before_go:
            window_cpu = self.cpu_we - self.cpu_ws
            window_wall = (self.wall_we - self.wall_ws) / NS
            window_idle = (self.idle_we - self.idle_ws) / NS
        else:  # connect: the window is the whole run after go
            window_cpu = self.cpu_we - self.cpu_go
            window_wall = (self.wall_we - self.t_go) / NS if self.t_go else 0.0
            window_idle = (self.idle_we - self.idle_go) / NS
        for us, n in self.fast_hist.items():
            b = bucket_us(us)
            self.hist[b] = self.hist.get(b, 0) + n
        result: dict[str, Any] = dict(self.c)
        result.update(
            proc=self.share.proc,
            clients=self.share.clients,
            hist=self.hist,
            login_hist=self.login_hist,
            connect_errno=self.connect_errno,
            series=self.series,
            first_err_line=self.tally.first_err_line,
            first_other_line=self.tally.first_other_line,
            alive_at_end=sum(1 for c in self.clients if c.logged_in and not c.closed),
            idle_open_at_end=sum(1 for c in self.clients if c.idle and not c.closed),
            cpu_s=window_cpu,
            idle_s=window_idle,
            wall_s=window_wall,
            cpu_total_s=time.process_time(),
            t_first_connect=self.t_first_connect,
            t_last_login=self.t_last_login,
            t_go=self.t_go,
            ws=self.ws,
        )
        result.update(self.scenario.result())
        self.pipe.send(("result", self.share.proc, result))


def worker_main(cfg: BenchConfig, share: ProcShare, pipe: Connection) -> None:
    """Entry point of a worker process (see the module docstring)."""
    try:
        # Ctrl-C reaches the whole process group: the parent handles it and
        # stops the workers, which must not die with a traceback of their own.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise_fd_limit()
        Worker(cfg, share, pipe).run()
    except BaseException:  # report everything, even SystemExit
        try:
            pipe.send(("error", share.proc, traceback.format_exc()))
        except OSError:
            pass
    finally:
        pipe.close()
        os._exit(0)
