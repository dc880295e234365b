"""The parent process: start the workers, keep them in step, gather results.

Owns the run's timeline. Each worker (:mod:`._worker`) connects and logs
in its share of the clients and says ``ready``; once all are ready the parent
sends every worker the same ``go`` with the start of the measurement window
(``now + warmup``) in ``CLOCK_MONOTONIC`` nanoseconds, which all processes of
one machine share. While the workers run, the parent prints a progress line
every second from their running totals and reads the server's RSS and CPU time
from ``/proc`` when it knows the server's pid. When every worker has said
``drained`` (or the drain time is over) it sends ``finish`` and adds up the
raw results (:func:`._report.summarise` turns them into figures).

Everything is bounded in time: a worker that does not answer by a hard
deadline derived from the configuration is killed and the run reported as
failed.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from multiprocessing.connection import Connection, wait
from typing import Any, TextIO

from ._config import BenchConfig
from ._report import summarise
from ._stats import NS, ProcReader, ProcReading
from ._worker import worker_main

__all__ = ["run_bench"]


class _ServerWatch:
    """The server process: RSS before the clients, once they are all in, every 0.5 s
    after ``go``; CPU time at the window edges."""

    def __init__(self, pid: int | None) -> None:
        self.reader = ProcReader(pid) if pid else None
        self.rss_series: list[int] = []
        self.rss_start = 0
        self.rss_max = 0
        #: Before any client connected, and once every worker was ready.
        self.before = self.reader.read() if self.reader else None
        self.at_ready: ProcReading | None = None
        self.at_ws: ProcReading | None = None
        self.at_we: ProcReading | None = None
        self.t_ws = 0
        self.t_we = 0
        self.threads_max = 0

    def sample(self) -> ProcReading | None:
        if self.reader is None:
            return None
        reading = self.reader.read()
        if reading is not None:
            self.rss_series.append(reading.rss_kb)
            self.rss_max = max(self.rss_max, reading.rss_kb)
            self.threads_max = max(self.threads_max, reading.threads)
            if not self.rss_start:
                self.rss_start = reading.rss_kb
        return reading

    def result(self) -> dict[str, Any]:
        if self.reader is None:
            return {}
        out: dict[str, Any] = {
            "server_pid": self.reader.pid,
            "rss_start_kb": self.rss_start,
            "rss_max_kb": self.rss_max,
            "rss_end_kb": self.rss_series[-1] if self.rss_series else 0,
            "rss_kb_every_0_5s": self.rss_series,
            "server_threads_max": self.threads_max,
        }
        if self.before is not None:
            out["rss_before_kb"] = self.before.rss_kb
        if self.at_ready is not None:
            out["rss_ready_kb"] = self.at_ready.rss_kb
        if self.at_ws and self.at_we and self.t_we > self.t_ws:
            wall = (self.t_we - self.t_ws) / NS
            out["server_cpu_pct"] = round(100 * (self.at_we.cpu_s - self.at_ws.cpu_s) / wall, 1)
        return out


class _Progress:
    """One line a second on stderr from the workers' running totals."""

    def __init__(self, cfg: BenchConfig, out: TextIO | None, procs: int) -> None:
        self.cfg = cfg
        self.out = out
        self.latest: list[dict[str, Any]] = [{} for _ in range(procs)]
        self.previous: dict[str, float] = {}
        self.prev_cpu: list[float] = [0.0] * procs
        self.t_prev = 0
        self.t0 = 0

    def update(self, proc: int, totals: dict[str, Any]) -> None:
        self.latest[proc] = totals

    def say(self, text: str) -> None:
        if self.out is not None:
            print(f"[chatproto-bench {self.cfg.scenario}] {text}", file=self.out, flush=True)

    def line(self, now: int, phase: str, rss_kb: int = 0) -> None:
        if self.out is None or not all(self.latest):
            return
        keys = ("sent", "marker_lines", "pongs", "open", "disconnects", "err_lines", "lines")
        totals = {k: float(sum(t[k] for t in self.latest)) for k in keys}
        dt = (now - self.t_prev) / NS if self.t_prev else 0.0
        cpus = [t["cpu_s"] for t in self.latest]
        if dt > 0:
            rate = {k: (totals[k] - self.previous.get(k, 0.0)) / dt for k in keys}
            cpu = " ".join(
                f"{100 * (c - p) / dt:.0f}%" for c, p in zip(cpus, self.prev_cpu, strict=True)
            )
            scenario = self.cfg.scenario
            if phase == "login":
                what = f"open {totals['open']:,.0f}"
            elif scenario in ("fanout", "slowreader", "idle"):
                what = f"deliveries/s {rate['marker_lines']:,.0f}  sent/s {rate['sent']:,.0f}"
            elif scenario == "pingpong":
                what = f"pongs/s {rate['pongs']:,.0f}"
            else:
                what = f"logged in {totals['open']:,.0f}  lines read/s {rate['lines']:,.0f}"
            if scenario == "idle" and phase != "login":
                what = f"open {totals['open']:,.0f}  {what}"
            memory = f"  server RSS {rss_kb / 1024:,.0f} MiB" if rss_kb else ""
            self.say(
                f"t={(now - self.t0) / NS:5.1f}s {phase:<9} {what}  "
                f"disconnects {totals['disconnects']:.0f}  ERR {totals['err_lines']:.0f}  "
                f"bench cpu {cpu}{memory}"
            )
        self.previous = totals
        self.prev_cpu = cpus
        self.t_prev = now


def _context() -> Any:
    # fork is fastest and needs no pickling; spawn where fork does not exist.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def run_bench(cfg: BenchConfig, progress: TextIO | None = sys.stderr) -> dict[str, Any]:
    """Run ``cfg`` against its server and return the result (see the docs).

    ``progress``: where the live lines go (``None``: nowhere). Never raises
    for a server problem: the result then has ``ok: false`` and an ``error``.
    """
    ctx = _context()
    shares = cfg.shares()
    watch = _ServerWatch(cfg.server_pid)  # before any client connects
    pipes: list[Connection] = []
    procs = []
    for share in shares:
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(
            target=worker_main, args=(cfg, share, child_end), name=f"bench-{share.proc}"
        )
        proc.daemon = True
        proc.start()
        child_end.close()
        pipes.append(parent_end)
        procs.append(proc)
    show = _Progress(cfg, progress, len(shares))
    try:
        return _coordinate(cfg, pipes, show, watch)
    except KeyboardInterrupt:
        # Ctrl-C: the workers ignore it (see worker_main); stop them now.
        for proc in procs:
            proc.kill()
        raise
    finally:
        for proc in procs:
            proc.join(timeout=2.0)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=2.0)
        for pipe in pipes:
            pipe.close()


def _coordinate(
    cfg: BenchConfig, pipes: list[Connection], show: _Progress, watch: _ServerWatch
) -> dict[str, Any]:
    n = len(pipes)
    ready: dict[int, dict[str, Any]] = {}
    drained: set[int] = set()
    results: dict[int, dict[str, Any]] = {}
    errors: list[str] = []
    t_begin = time.monotonic_ns()
    login_deadline = t_begin + int((cfg.login_timeout + 10) * NS)
    hard_deadline = t_begin + int(
        (
            2 * cfg.login_timeout
            + cfg.warmup
            + cfg.duration
            + cfg.drain
            + cfg.slow_drain
            + cfg.burst_timeout
            + cfg.ack_timeout
            + 30
        )
        * NS
    )
    by_pipe = {id(p): i for i, p in enumerate(pipes)}
    # Pipes still to hear from; a worker's pipe leaves once it has answered
    # for good (result or error), so that its end of file is not a death.
    waiting = list(pipes)
    t_go = ws = we = 0
    finish_sent = False
    finish_at = 0
    next_line = t_begin + NS + NS // 10
    show.t0 = show.t_prev = t_begin
    next_rss = 0
    rss_kb = 0
    show.say(
        f"{cfg.clients} clients on {cfg.host}:{cfg.port}, {n} process(es)"
        + (f", {cfg.sender_count} senders, window {cfg.window}" if cfg.sender_count else "")
    )
    while len(results) + len(errors) < n:
        now = time.monotonic_ns()
        if now > hard_deadline or (not t_go and now > login_deadline):
            errors.append("hard time limit reached: a worker did not answer in time")
            break
        for pipe in wait(waiting, timeout=0.1):
            assert isinstance(pipe, Connection)
            try:
                kind, proc, payload = pipe.recv()
            except (EOFError, OSError):
                waiting.remove(pipe)
                errors.append(f"worker {by_pipe[id(pipe)]} died")
                continue
            if kind in ("result", "error"):
                waiting.remove(pipe)
            if kind == "ready":
                ready[proc] = payload
            elif kind == "tick":
                show.update(proc, payload)
            elif kind == "drained":
                drained.add(proc)
            elif kind == "result":
                results[proc] = payload
            elif kind == "error":
                errors.append(f"worker {proc} failed:\n{payload}")
        now = time.monotonic_ns()
        if not t_go and now >= next_line:
            show.line(now, "login")
            next_line += NS
        if not t_go and len(ready) == n:
            watch.at_ready = watch.sample()
            if cfg.scenario != "connect":
                logged = sum(r.get("logins_ok", 0) for r in ready.values())
                opened = f"{(now - t_begin) / 1e9:.2f}s"
                if cfg.scenario == "idle":
                    idle = sum(r.get("idle_open", 0) for r in ready.values())
                    show.say(f"{idle}/{cfg.clients} idle open, {logged} logged in, in {opened}")
                else:
                    show.say(f"logged in {logged}/{cfg.clients} in {opened}")
            t_go = now + NS // 20
            ws = t_go + int(cfg.warmup * NS)
            we = ws + int(cfg.duration * NS)
            if cfg.scenario == "connect":
                ws = t_go
            show.t0 = show.t_prev = t_go
            show.previous = {}
            for pipe in pipes:
                pipe.send(("go", t_go, ws))
            next_line = t_go + NS + NS // 10
        if t_go:
            if now >= next_rss:
                reading = watch.sample()
                rss_kb = reading.rss_kb if reading else 0
                next_rss = now + NS // 2
            if not watch.t_ws and now >= ws:
                watch.t_ws, watch.at_ws = now, watch.sample()
            if not watch.t_we and now >= we and cfg.scenario != "connect":
                watch.t_we, watch.at_we = now, watch.sample()
            if now >= next_line:
                phase = "warm-up" if now < ws else ("measuring" if now < we else "draining")
                if cfg.scenario == "connect":
                    phase = "connect"
                show.line(now, phase, rss_kb)
                next_line += NS
        if not finish_sent and len(drained) + len(errors) >= n and t_go:
            # A moment for lines between processes still on the wire.
            finish_at = finish_at or now + NS // 10
            if now >= finish_at:
                if cfg.scenario == "connect":
                    watch.t_we, watch.at_we = now, watch.sample()
                for pipe in pipes:
                    try:
                        pipe.send(("finish",))
                    except OSError:
                        pass
                finish_sent = True
    if errors or len(results) < n:
        return {
            "scenario": cfg.scenario,
            "ok": False,
            "error": "; ".join(errors) or "no result from the workers",
            "host": cfg.host,
            "port": cfg.port,
        }
    return summarise(cfg, [results[i] for i in range(n)], watch.result())
