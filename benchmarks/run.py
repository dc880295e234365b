"""Run every benchmark scenario against every server, and write the results.

One command for the whole measurement::

    python benchmarks/run.py                 # the real run (about an hour on 2 CPUs)
    python benchmarks/run.py --quick         # a smoke of everything (< 60 s)
    python benchmarks/run.py --only fanout-10,core --targets serve-uvloop,bare-uvloop
    python benchmarks/run.py --loadgen chatload          # cross-check with chatload

Targets are ``chatproto-serve`` with each backend (``serve-*``) and the bare
reference servers in this directory (``bare-*``). For each repetition, every
scenario runs against every target, the targets in a rotated order, each on a
freshly started server (so a run never inherits another's memory or sockets).
The server is pinned to CPU 0 and the load generator to the other CPUs with
``taskset`` when there are at least two. Figures are medians over the
repetitions; every figure comes with the load generator's own CPU share and the
server's, so a number limited by the load generator is visible as such.

Writes ``performance.md`` and ``performance.png`` into ``--out`` (default
``docs/``) and the raw results of every run into ``--raw`` (default
``benchmarks/results.json``, or ``<out>/performance.json`` with ``--out``).
Benchmarks are not tests: this never asserts how fast anything is.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable

# ------------------------------------------------------------------ targets


@dataclass(frozen=True)
class Target:
    """A server to measure: how to start it, and what it is compared with."""

    name: str
    #: ``product`` (chatproto-serve) or ``reference`` (a bare server).
    kind: str
    #: threads / asyncio / uvloop / trio / gevent / node: picks the connect size.
    family: str
    argv: tuple[str, ...]
    #: Python modules or programs it needs; missing ones skip the target.
    needs: tuple[str, ...] = ()
    #: The bare server this product target is compared with.
    baseline: str | None = None
    description: str = ""


def _serve(*args: str) -> tuple[str, ...]:
    return (
        PY,
        "-m",
        "chatproto",
        *args,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--log-level",
        "warning",
        # The observer clients never send; the runs are far shorter than
        # this, but a long run must not see them idle-timed-out.
        "--idle-timeout",
        "3600",
    )


TARGETS: tuple[Target, ...] = (
    Target(
        "serve-threading",
        "product",
        "threads",
        _serve("--backend", "threading"),
        baseline="bare-threads",
        description="chatproto-serve --backend threading",
    ),
    Target(
        "serve-asyncio",
        "product",
        "asyncio",
        _serve("--backend", "anyio"),
        needs=("anyio",),
        baseline="bare-asyncio",
        description="chatproto-serve --backend anyio (asyncio)",
    ),
    Target(
        "serve-uvloop",
        "product",
        "uvloop",
        _serve("--backend", "anyio", "--uvloop"),
        needs=("anyio", "uvloop"),
        baseline="bare-uvloop",
        description="chatproto-serve --backend anyio --uvloop",
    ),
    Target(
        "serve-trio",
        "product",
        "trio",
        _serve("--backend", "anyio", "--anyio-backend", "trio"),
        needs=("anyio", "trio"),
        description="chatproto-serve --backend anyio --anyio-backend trio",
    ),
    Target(
        "serve-gevent",
        "product",
        "gevent",
        _serve("--backend", "gevent"),
        needs=("gevent",),
        baseline="bare-gevent",
        description="chatproto-serve --backend gevent",
    ),
    Target(
        "bare-threads",
        "reference",
        "threads",
        (PY, str(HERE / "bare_threads.py"), "--port", "0"),
        description="thread per connection, one sendall per recipient",
    ),
    Target(
        "bare-asyncio",
        "reference",
        "asyncio",
        (PY, str(HERE / "bare_asyncio.py"), "--port", "0"),
        description="asyncio Protocol, one transport.write per recipient",
    ),
    Target(
        "bare-uvloop",
        "reference",
        "uvloop",
        (PY, str(HERE / "bare_asyncio.py"), "--uvloop", "--port", "0"),
        needs=("uvloop",),
        description="the same on uvloop",
    ),
    Target(
        "bare-checked",
        "reference",
        "uvloop",
        (PY, str(HERE / "bare_asyncio.py"), "--uvloop", "--checked", "--port", "0"),
        needs=("uvloop",),
        description="bare-uvloop plus the per-line checks of the spec, inline",
    ),
    Target(
        "bare-gather",
        "reference",
        "uvloop",
        (PY, str(HERE / "bare_gather.py"), "--port", "0"),
        needs=("uvloop",),
        description="uvloop, one write per recipient per loop iteration: the limit",
    ),
    Target(
        "bare-gevent",
        "reference",
        "gevent",
        (PY, str(HERE / "bare_gevent.py"), "--port", "0"),
        needs=("gevent",),
        description="gevent StreamServer, one sendall per recipient",
    ),
    Target(
        "bare-node",
        "reference",
        "node",
        ("node", str(HERE / "bare_node.js"), "--port", "0"),
        needs=("node",),
        description="Node.js net, one socket.write per recipient",
    ),
)

# ---------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    """One measurement, with its full and its --quick size."""

    key: str
    #: fanout / pingpong / connect / slowreader, or ``core`` (no server).
    kind: str
    title: str
    clients: int = 10
    senders: int = 10
    duration: float = 5.0
    warmup: float = 1.0
    quick_clients: int = 10
    quick_duration: float = 0.5
    #: connect: clients for the thread-per-connection targets.
    threads_clients: int | None = None
    #: In --quick mode, only against these targets (all when empty).
    quick_targets: tuple[str, ...] = ()
    #: The figure the tables, medians and ratios are about.
    headline: str = "deliveries_per_s"
    #: Extra arguments for the load generator (both tools take them).
    loadgen_args: tuple[str, ...] = field(default=())


_QUICK_FEW = ("serve-asyncio", "serve-uvloop", "bare-uvloop", "bare-gather")

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("fanout-10", "fanout", "fanout, 10 clients x 10 senders", 10, 10),
    Scenario(
        "fanout-10-nonap",
        "fanout",
        "fanout, 10 clients x 10 senders, load generator without its 100 µs coalescing nap",
        10,
        10,
        quick_targets=("serve-uvloop",),
        loadgen_args=("--batch-us", "0"),
    ),
    Scenario(
        "fanout-100",
        "fanout",
        "fanout, 100 clients x 10 senders",
        100,
        10,
        quick_clients=30,
        quick_targets=_QUICK_FEW,
    ),
    Scenario(
        "fanout-500",
        "fanout",
        "fanout, 500 clients x 10 senders",
        500,
        10,
        quick_clients=50,
        quick_targets=("serve-uvloop",),
    ),
    Scenario(
        "pingpong-50",
        "pingpong",
        "pingpong, 50 clients",
        50,
        0,
        quick_clients=20,
        quick_targets=_QUICK_FEW,
        headline="pongs_per_s",
    ),
    Scenario(
        "connect",
        "connect",
        "connect: 10,000 clients (5,000 for threads), held 2 s, then all PING",
        10_000,
        0,
        duration=2.0,
        quick_clients=200,
        quick_duration=0.3,
        threads_clients=5_000,
        quick_targets=_QUICK_FEW,
        headline="logins_per_s",
    ),
    Scenario(
        "slowreader",
        "slowreader",
        "slow reader: 20 clients x 10 senders plus one that never reads",
        21,
        10,
        duration=10.0,
        quick_clients=6,
        quick_duration=1.0,
        quick_targets=_QUICK_FEW,
    ),
    Scenario("core", "core", "the core alone, in memory", headline="parse_lines_per_s"),
)

#: The fanout scenarios that make the curve of deliveries/s against clients.
CURVE = ("fanout-10", "fanout-100", "fanout-500")
#: Scenarios also run with chatload, when it is available, to cross-check.
CROSSCHECK = ("fanout-10", "pingpong-50")
CHATLOAD_SUFFIX = "@chatload"

# ------------------------------------------------------------------ running


def have(need: str) -> bool:
    """Whether a Python module or a program is available."""
    if need == "node":
        return shutil.which("node") is not None
    probe = [PY, "-c", f"import {need}"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


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
        import selectors  # noqa: PLC0415 - only needed here

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


@dataclass
class Plan:
    """Everything a run needs, resolved from the arguments."""

    quick: bool
    repeat: int
    loadgen: str
    chatload: str | None
    #: Also run the CROSSCHECK scenarios with chatload, right after each
    #: chatproto-bench run on the same target.
    crosscheck: bool
    server_prefix: list[str]
    loadgen_prefix: list[str]
    procs: int
    window: int
    scenarios: list[Scenario]
    targets: list[Target]
    skipped: dict[str, str]


def scenario_params(s: Scenario, target: Target | None, quick: bool) -> dict[str, Any]:
    """Clients, senders and times of ``s`` against ``target``."""
    clients = s.quick_clients if quick else s.clients
    if not quick and s.threads_clients and target is not None and target.family == "threads":
        clients = s.threads_clients
    # fanout: every client may send (the observer's own messages are then
    # acknowledged by another client); slowreader: the slow one never sends.
    room = clients - 1 if s.kind == "slowreader" else clients
    return {
        "clients": clients,
        "senders": min(s.senders, room) if s.senders else 0,
        "duration": s.quick_duration if quick else s.duration,
        "warmup": 0.2 if quick else s.warmup,
        "drain": 0.5 if quick else 2.0,
    }


def loadgen_argv(plan: Plan, s: Scenario, p: dict[str, Any], port: int, pid: int) -> list[str]:
    """The load generator's command line for one run."""
    n, k = p["clients"], p["senders"]
    if plan.loadgen == "chatload":
        assert plan.chatload is not None
        argv = [plan.chatload, s.kind, "--port", str(port), "--clients", str(n)]
        if s.kind in ("fanout", "slowreader"):
            argv += ["--senders", str(k), "--duration", str(p["duration"])]
            argv += ["--window", str(plan.window), "--ack", "all"]
            argv += ["--warmup", str(p["warmup"]), "--drain", str(p["drain"])]
        elif s.kind == "pingpong":
            argv += ["--duration", str(p["duration"]), "--warmup", str(p["warmup"])]
        else:
            argv += ["--hold", str(p["duration"]), "--login-timeout", "120"]
        if s.kind == "slowreader":
            argv += ["--slow-drain", "2"]
        return [*argv, *s.loadgen_args, "--server-pid", str(pid)]
    procs = plan.procs if s.kind in ("fanout", "pingpong") else 1
    procs = max(1, min(procs, n // 2))
    argv = [PY, "-m", "chatproto.bench.cli", s.kind, "--port", str(port), "--clients", str(n)]
    argv += ["--duration", str(p["duration"]), "--warmup", str(p["warmup"])]
    argv += ["--drain", str(p["drain"]), "--procs", str(procs)]
    if k:
        argv += ["--senders", str(max(k, procs)), "--window", str(plan.window), "--ack", "all"]
    if s.kind == "connect":
        argv += ["--login-timeout", "15" if plan.quick else "120"]
    if s.kind == "slowreader" and plan.quick:
        argv += ["--slow-drain", "0.5"]
    return [*argv, *s.loadgen_args, "--server-pid", str(pid), "--json", "--quiet"]


def normalise(result: dict[str, Any]) -> dict[str, Any]:
    """Common key names for chatproto-bench's and chatload's results."""
    if "bench_cpu_max_pct" in result:
        result["loadgen_cpu_pct"] = result["bench_cpu_max_pct"]
    elif "client_cpu_pct" in result:
        result["loadgen_cpu_pct"] = result["client_cpu_pct"]
    if "rss_start_kb" not in result and "rss_after_login_kb" in result:
        result["rss_start_kb"] = result["rss_after_login_kb"]  # chatload's name
    return result


def run_one(plan: Plan, s: Scenario, target: Target, log: IO[str], say: Any) -> dict[str, Any]:
    """Start ``target``, run ``s`` against it, stop it; the result record."""
    p = scenario_params(s, target, plan.quick)
    record: dict[str, Any] = {"scenario": s.key, "target": target.name, "params": p}
    log.write(f"\n===== {s.key} on {target.name}\n")
    log.flush()
    try:
        server = Server(target, plan.server_prefix, log)
    except (RuntimeError, OSError) as exc:
        record.update(ok=False, error=f"server did not start: {exc}")
        return record
    try:
        argv = [*plan.loadgen_prefix, *loadgen_argv(plan, s, p, server.port, server.pid)]
        record["loadgen_argv"] = argv
        budget = (
            60 + p["duration"] + p["warmup"] + p["drain"] + (240 if s.kind == "connect" else 30)
        )
        t0 = time.monotonic()
        try:
            done = subprocess.run(
                argv, cwd=ROOT, capture_output=True, text=True, timeout=budget, check=False
            )
        except subprocess.TimeoutExpired:
            record.update(ok=False, error=f"load generator timed out after {budget:.0f}s")
            return record
        record["wall_s"] = round(time.monotonic() - t0, 2)
        log.write(done.stderr)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            record.update(ok=False, error=f"no JSON from the load generator: {done.stderr[-500:]}")
            return record
        result = normalise(json.loads(lines[-1]))
        record["result"] = result
        record["ok"] = bool(result.get("ok"))
        if not record["ok"]:
            record["error"] = result.get("error", "failed")
    finally:
        crashed = not server.alive()
        record["server_exited_on_sigterm"] = server.stop()
        record["server_exit"] = server.proc.returncode
        if crashed:
            # It exited before we stopped it: say so, with its last words.
            record["server_crashed"] = True
            record["server_stderr_tail"] = tail(log)
    return record


def tail(log: IO[str], limit: int = 1500) -> str:
    """The end of the log file (the server's stderr goes there)."""
    log.flush()
    try:
        with open(log.name, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return ""
    cut = text.rfind("\n===== ")
    return text[cut:][-limit:] if cut >= 0 else text[-limit:]


def run_core(plan: Plan, log: IO[str]) -> dict[str, Any]:
    """benchmarks/core.py on the server's CPU."""
    seconds, repeat = ("0.1", "1") if plan.quick else ("1", "3")
    argv = [*plan.server_prefix, PY, str(HERE / "core.py"), "--json"]
    argv += ["--seconds", seconds, "--repeat", repeat]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    log.write(done.stderr)
    record: dict[str, Any] = {"scenario": "core", "target": "core", "loadgen_argv": argv}
    try:
        record["result"] = json.loads(done.stdout.strip().splitlines()[-1])
        record["result"]["ok"] = True
        record["ok"] = True
    except (ValueError, IndexError):
        record.update(ok=False, error=f"core.py failed: {done.stderr[-500:]}")
    return record


def make_plan(args: argparse.Namespace) -> Plan:
    server_prefix, loadgen_prefix = pinning()
    if args.no_pin:
        server_prefix, loadgen_prefix = [], []
    only = set(args.only.split(",")) if args.only else None
    scenarios = [s for s in SCENARIOS if only is None or s.key in only]
    if only:
        unknown = only - {s.key for s in SCENARIOS}
        if unknown:
            raise SystemExit(
                f"unknown scenario(s) {sorted(unknown)}; known: {[s.key for s in SCENARIOS]}"
            )
    wanted = set(args.targets.split(",")) if args.targets else None
    if wanted:
        unknown = wanted - {t.name for t in TARGETS}
        if unknown:
            raise SystemExit(
                f"unknown target(s) {sorted(unknown)}; known: {[t.name for t in TARGETS]}"
            )
    skipped: dict[str, str] = {}
    targets = []
    for t in TARGETS:
        if wanted is not None and t.name not in wanted:
            continue
        missing = [n for n in t.needs if not have(n)]
        if missing:
            skipped[t.name] = f"missing {', '.join(missing)}"
            continue
        targets.append(t)
    chatload = args.chatload or os.environ.get("CHATLOAD") or shutil.which("chatload")
    if chatload is None and Path("/tmp/chatload").exists():
        chatload = "/tmp/chatload"
    if args.loadgen == "chatload" and chatload is None:
        raise SystemExit("--loadgen chatload: no chatload found (use --chatload PATH)")
    crosscheck = (
        args.loadgen == "chatproto-bench" and chatload is not None and not args.no_crosscheck
    )
    free = max(1, cpu_count() - (1 if server_prefix else 0))
    return Plan(
        quick=args.quick,
        repeat=args.repeat if args.repeat else (1 if args.quick else 3),
        loadgen=args.loadgen,
        chatload=chatload,
        crosscheck=crosscheck,
        server_prefix=server_prefix,
        loadgen_prefix=loadgen_prefix,
        procs=args.procs or min(4, free),
        window=args.window,
        scenarios=scenarios,
        targets=targets,
        skipped=skipped,
    )


def run_all(plan: Plan, log: IO[str], say: Any) -> list[dict[str, Any]]:
    """Every scenario x target x repetition, targets alternating."""
    records: list[dict[str, Any]] = []
    for rep in range(plan.repeat):
        for s in plan.scenarios:
            if s.kind == "core":
                say(f"[rep {rep + 1}/{plan.repeat}] core")
                rec = run_core(plan, log)
                rec["rep"] = rep
                records.append(rec)
                continue
            targets = [
                t
                for t in plan.targets
                if not (plan.quick and s.quick_targets and t.name not in s.quick_targets)
            ]
            # Rotate the order every repetition, so no target always goes first.
            shift = rep % len(targets) if targets else 0
            order = targets[shift:] + targets[:shift]
            for i, t in enumerate(order):
                rec = run_one(plan, s, t, log, say)
                rec["rep"] = rep
                records.append(rec)
                say(f"[rep {rep + 1}/{plan.repeat}] {s.key:<12} {t.name:<16} {brief(s, rec)}")
                if plan.crosscheck and s.key in CROSSCHECK and not (plan.quick and i > 0):
                    cross = replace(plan, loadgen="chatload")
                    rec = run_one(cross, s, t, log, say)
                    rec["rep"] = rep
                    rec["scenario"] = f"{s.key}{CHATLOAD_SUFFIX}"
                    records.append(rec)
                    say(
                        f"[rep {rep + 1}/{plan.repeat}] {s.key:<12} {t.name:<16} "
                        f"(chatload) {brief(s, rec)}"
                    )
    return records


def brief(s: Scenario, rec: dict[str, Any]) -> str:
    if not rec.get("ok"):
        return f"FAILED: {rec.get('error', '')[:200]}"
    r = rec["result"]
    value = r.get(s.headline)
    cpu = r.get("loadgen_cpu_pct")
    scpu = r.get("server_cpu_pct")
    return f"{s.headline}={fmt_num(value)}  loadgen cpu={fmt_pct(cpu)}  server cpu={fmt_pct(scpu)}"


# ------------------------------------------------------------------ figures


def median(xs: Sequence[float]) -> float | None:
    v = sorted(xs)
    if not v:
        return None
    m = len(v) // 2
    return v[m] if len(v) % 2 else (v[m - 1] + v[m]) / 2


def _word(x: Any) -> str:
    if isinstance(x, bool):
        return "yes" if x else "no"
    return str(x)


def fmt_num(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and abs(x) < 100:
        return f"{x:.2f}"
    return f"{x:,.0f}"


def fmt_pct(x: Any) -> str:
    return "-" if x is None else f"{x:.0f}%"


def fmt_ms(us: Any) -> str:
    return "-" if us is None else f"{us / 1000:.2f}"


def summarise(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Medians per (scenario, target) of every numeric figure, plus notes."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    fails: dict[tuple[str, str], list[str]] = {}
    for rec in records:
        key = (rec["scenario"], rec["target"])
        if rec.get("ok"):
            groups.setdefault(key, []).append(normalise(rec["result"]))
        else:
            fails.setdefault(key, []).append(str(rec.get("error", "failed"))[:300])
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for key in set(groups) | set(fails):
        results = groups.get(key, [])
        med: dict[str, Any] = {"n": len(results), "failures": fails.get(key, [])}
        numeric = {k for r in results for k, v in r.items() if isinstance(v, (int, float))}
        for k in numeric:
            vals = [
                float(r[k])
                for r in results
                if isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)
            ]
            if vals:
                med[k] = median(vals)
        for k in ("slow_state", "others_healthy"):
            states = sorted({_word(r.get(k)) for r in results if k in r})
            if states:
                med[k] = "/".join(states)
        warnings = sorted({w for r in results for w in r.get("warnings", [])})
        med["warnings"] = warnings
        med["bottleneck"] = any(r.get("loadgen_cpu_pct", 0) > 90 for r in results)
        crashes = [rec for rec in records if (rec["scenario"], rec["target"]) == key]
        med["crashes"] = [
            rec.get("server_stderr_tail", "") for rec in crashes if rec.get("server_crashed")
        ]
        med["slow_stops"] = sum(
            1
            for rec in crashes
            if not rec.get("server_crashed") and rec.get("server_exited_on_sigterm") is False
        )
        out[key] = med
    return out


# ------------------------------------------------------------------ writing


def machine_info(plan: Plan) -> list[str]:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    versions = []
    for mod in ("anyio", "trio", "uvloop", "gevent"):
        v = subprocess.run(
            [PY, "-c", f"import importlib.metadata as m; print(m.version('{mod}'))"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if v:
            versions.append(f"{mod} {v}")
    node = shutil.which("node")
    if node:
        nv = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
        versions.append(f"node {nv.stdout.strip()}")
    pin = (
        f"server on CPU `{plan.server_prefix[-1]}`, load generator on CPU(s) "
        f"`{plan.loadgen_prefix[-1]}` (taskset)"
        if plan.server_prefix
        else "no CPU pinning (taskset missing or a single CPU)"
    )
    loadavg = ""
    try:
        loadavg = Path("/proc/loadavg").read_text().split()[0]
    except (OSError, IndexError):
        pass
    return [
        f"- CPU: {model}, {cpu_count()} CPU(s) available{mem}; load average at the start: "
        f"{loadavg or '?'}",
        f"- {platform.system()} {platform.release()}; Python {platform.python_version()} "
        f"({platform.python_implementation()}); {', '.join(versions)}",
        f"- {pin}; load generator: {plan.loadgen}"
        + (f" with --procs up to {plan.procs}" if plan.loadgen == "chatproto-bench" else ""),
        f"- {plan.repeat} repetition(s), medians; date {datetime.date.today().isoformat()}",
    ]


def repro(plan: Plan, s: Scenario, t: Target) -> str:
    """The two commands that reproduce one cell (port 4000)."""
    p = scenario_params(s, t, plan.quick)
    server = [a if a != "0" else "4000" for a in t.argv]
    if server[:3] == [PY, "-m", "chatproto"]:
        server = ["chatproto-serve", *server[3:]]
    else:
        server = [
            ("python" if a == PY else os.path.relpath(a, ROOT) if a.startswith("/") else a)
            for a in server
        ]
    bench = loadgen_argv(plan, s, p, 4000, 0)
    if bench[:3] == [PY, "-m", "chatproto.bench.cli"]:
        bench = ["chatproto-bench", *bench[3:]]
    bench = bench[: bench.index("--server-pid")]
    return f"{shlex.join(server)} &  {shlex.join(bench)} --server-pid $!"


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """What --render-only needs to know about how the runs were made."""
    out = {k: v for k, v in plan.__dict__.items() if k not in ("scenarios", "targets")}
    out["scenarios"] = [s.key for s in plan.scenarios]
    out["targets"] = [t.name for t in plan.targets]
    return out


def plan_from_json(data: dict[str, Any]) -> Plan:
    fields = dict(data)
    fields["scenarios"] = [s for s in SCENARIOS if s.key in data["scenarios"]]
    fields["targets"] = [t for t in TARGETS if t.name in data["targets"]]
    return Plan(**fields)


def write_report(
    plan: Plan,
    records: list[dict[str, Any]],
    out_dir: Path,
    raw_path: Path,
    *,
    command: str,
    machine: list[str],
) -> Path:
    med = summarise(records)
    lines: list[str] = []
    add = lines.append
    add("# Performance")
    add("")
    if plan.quick:
        add(
            "> **Smoke figures, not measurements.** This page was written by "
            "`benchmarks/run.py --quick`: tiny sizes, half-second windows, one repetition, "
            "maybe on a busy machine. Only the real run below gives numbers to quote."
        )
        add("")
    add(
        "Written by `benchmarks/run.py`; do not edit by hand. The load generator is "
        "`chatproto-bench` (the project's tool, see below) unless stated; "
        "[chatload](#cross-check-with-chatload), an independent C load generator, "
        "cross-checks it."
    )
    add("")
    add(
        "Reproduce the whole page (about an hour on 2 CPUs, mostly the 10,000-client "
        "connects; nothing else should run on the machine):"
    )
    add("")
    add("```")
    add("python benchmarks/run.py")
    add("```")
    add("")
    add(f"This page was written by `{command}`.")
    add("")
    add("## Machine")
    add("")
    lines.extend(machine)
    if plan.skipped:
        add(
            "- skipped targets: " + ", ".join(f"{k} ({v})" for k, v in sorted(plan.skipped.items()))
        )
    add("")
    add("## Targets")
    add("")
    add("| target | what | compared with |")
    add("|---|---|---|")
    for t in plan.targets:
        add(f"| `{t.name}` | {t.description} | {f'`{t.baseline}`' if t.baseline else ''} |")
    add("")
    add(METHOD)
    tnames = [t.name for t in plan.targets]
    for s in plan.scenarios:
        add(f"## {s.title}")
        add("")
        if s.kind == "core":
            _core_section(lines, med.get(("core", "core")))
            continue
        _scenario_table(lines, plan, s, tnames, med)
    _ratio_section(lines, plan, med)
    _crosscheck_section(lines, plan, med)
    png = out_dir / "performance.png"
    if plot(plan, med, png):
        add("## Deliveries per second against clients")
        add("")
        add("![fanout deliveries per second against the number of clients](performance.png)")
        add("")
    notes = HERE / "performance-notes.md"
    if notes.exists():
        # Hand-written interpretation, kept apart so that re-running never
        # loses it (this page itself is regenerated whole).
        add(notes.read_text().rstrip())
        add("")
    add("## Raw results")
    add("")
    add(f"Every run, with its full JSON result: `{os.path.relpath(raw_path, out_dir)}`.")
    add("")
    md = out_dir / "performance.md"
    md.write_text("\n".join(lines))
    return md


METHOD = """\
## Method

The load generator is `chatproto-bench` (`chatproto/bench/`; `chatproto-bench
--help`): one single-threaded epoll loop per process, many non-blocking sockets
each, every line of a read parsed with one regular-expression scan. It is
tolerant of what other servers do (banners before the login reply, `OK
welcome`, `\\r\\n`, echoes to the sender, join notices), so the same command
measures chatproto-serve, the bare servers and third-party servers.

* **fanout**: N clients log in; K of them send `MSG` whose text carries the
  send time (`CLOCK_MONOTONIC` ns), the sender id and a sequence number. Closed
  loop: each sender keeps at most 4 messages (`--window`) unacknowledged; a message is
  acknowledged when every other client has received it (`--ack all`, as issue 6
  defines the load; so nothing can pile up without bound in the server, and
  the rate is what the server sustains end to end). To save its own CPU,
  chatload naps 100 µs after every loop iteration with fewer than 64 events,
  so that lines coalesce per read (chatproto-bench only after a poll that had
  to wait); with few clients that nap is part of every round trip.
  `fanout-10-nonap` is the same load with the nap off (`--batch-us 0`), where
  the servers, not the round trips, are the limit. *Deliveries/s* counts every
  received copy of the messages sent inside the measured window (after a
  warm-up that is excluded), including copies that arrive while draining;
  *latency* is receive time minus send time over all those copies (µs
  buckets, under 1 % error). *Delivered* is deliveries / (messages x (readers -
  1)): below 1, lines were lost.
* **pingpong**: N clients, each with one `PING` outstanding; replies/s and the
  round-trip latency.
* **connect**: N clients connect and log in (256 at a time); logins/s, login
  latency, server RSS with N clients (and all the `INFO joined` notices they
  cause: N(N-1)/2 lines, which the load generator reads), then every client
  PINGs at once and the time until all PONGs are back.
* **slow reader**: like fanout, plus one client (8 KiB receive buffer) that
  never reads. What happens to it (chatproto drops it at 1 MiB queued, §12.3;
  the bare servers queue without limit), the others' delivery rate, and the
  server's RSS (from `/proc`, every 0.5 s).
* **CPU**: *load gen* is the load generator's busiest process's share of one
  core over the window; above 90 % the figure is a lower bound of the server's
  capacity (marked ⚠; on 2 CPUs the load generator has one, and Python tops
  out near a million deliveries per second: `--loadgen chatload` measures
  further). *Server* is the server process's CPU over the window (threads
  included). When neither is near 100 %, the rate was bound by round trips
  (the closed loop's window) or by other load on the machine.
* Each cell is the median of the repetitions; the targets run in a rotated
  order each repetition, each on a fresh server process. The bare servers
  implement just what the scenarios need (LOGIN, MSG, PING, QUIT, the INFO
  notices) with no limits and no checks: they are the floor of what a server
  of their kind costs, not complete servers.
"""


def _cell(m: dict[str, Any] | None, key: str, kind: str = "num") -> str:
    if m is None or m.get(key) is None:
        return "-"
    v = m[key]
    if kind == "ms":
        return fmt_ms(v)
    if kind == "pct":
        return fmt_pct(v)
    if kind == "mib":
        return f"{v / 1024:.1f}"
    return fmt_num(v)


def _scenario_table(
    lines: list[str],
    plan: Plan,
    s: Scenario,
    tnames: list[str],
    med: dict[tuple[str, str], dict[str, Any]],
) -> None:
    add = lines.append
    if s.kind == "fanout":
        head = (
            "| target | deliveries/s | msgs/s | p50 ms | p99 ms | max ms | delivered "
            "| load gen | server |"
        )
        cols = [
            ("deliveries_per_s", "num"),
            ("msgs_per_s", "num"),
            ("lat_p50_us", "ms"),
            ("lat_p99_us", "ms"),
            ("lat_max_us", "ms"),
            ("delivery_ratio", "num"),
        ]
    elif s.kind == "pingpong":
        head = "| target | pongs/s | p50 ms | p99 ms | max ms | load gen | server |"
        cols = [
            ("pongs_per_s", "num"),
            ("lat_p50_us", "ms"),
            ("lat_p99_us", "ms"),
            ("lat_max_us", "ms"),
        ]
    elif s.kind == "connect":
        head = (
            "| target | clients | logged in | logins/s | login p99 ms | all PONG ms "
            "| server RSS MiB | load gen | server |"
        )
        cols = [
            ("clients", "num"),
            ("logins_ok", "num"),
            ("logins_per_s", "num"),
            ("login_lat_p99_us", "ms"),
            ("burst_all_ms", "num"),
            ("rss_max_kb", "mib"),
        ]
    else:
        head = (
            "| target | others' deliveries/s | p99 ms | slow reader | others healthy "
            "| RSS start MiB | RSS max MiB | load gen | server |"
        )
        cols = [
            ("deliveries_per_s", "num"),
            ("lat_p99_us", "ms"),
            ("slow_state", "str"),
            ("others_healthy", "str"),
            ("rss_start_kb", "mib"),
            ("rss_max_kb", "mib"),
        ]
    add(head)
    add("|" + "---|" * (head.count("|") - 1))
    notes: list[str] = []
    for name in tnames:
        m = med.get((s.key, name))
        if m is None:
            continue
        cells = []
        for key, kind in cols:
            cells.append(str(m.get(key, "-")) if kind == "str" else _cell(m, key, kind))
        lg = _cell(m, "loadgen_cpu_pct", "pct") + (" ⚠" if m.get("bottleneck") else "")
        cells += [lg, _cell(m, "server_cpu_pct", "pct")]
        n = f" ({m['n']} runs)" if m["n"] != plan.repeat else ""
        add(f"| `{name}`{n} | " + " | ".join(cells) + " |")
        if m["failures"]:
            notes.append(f"`{name}` failed {len(m['failures'])}x: {m['failures'][0]}")
        if m["slow_stops"]:
            notes.append(
                f"`{name}`: did not exit within 1 s of SIGTERM (with no client left) "
                f"in {m['slow_stops']} run(s); killed"
            )
        if m["crashes"]:
            last = [ln for ln in m["crashes"][0].splitlines() if ln.strip()][-1:]
            notes.append(
                f"`{name}`: **the server process died** in {len(m['crashes'])} run(s) "
                f"(last stderr line: `{last[0].strip() if last else '?'}`)"
            )
        for w in m["warnings"]:
            # These two are in the table already (⚠, and both CPU columns).
            if not w.startswith(("the load generator was CPU-bound", "neither the server")):
                notes.append(f"`{name}`: {w}")
    if any(med.get((s.key, n), {}).get("bottleneck") for n in tnames):
        notes.insert(
            0,
            "⚠: the load generator used over 90 % of its CPU: that figure is a lower "
            "bound of the server's capacity.",
        )
    add("")
    if notes:
        add("Notes:")
        add("")
        for note in notes[:30]:
            add(f"- {note}")
        add("")
    example = next((t for t in plan.targets if t.name == "serve-uvloop"), None) or (
        plan.targets[0] if plan.targets else None
    )
    if example is not None:
        add(f"One cell, by hand (`{example.name}`):")
        add("")
        add("```")
        add(repro(plan, s, example))
        add("```")
        add("")


def _core_section(lines: list[str], m: dict[str, Any] | None) -> None:
    add = lines.append
    if m is None or not m.get("n"):
        add("Not measured.")
        add("")
        return
    add(
        "No sockets: `ChatServer` fed bytes and drained as an adapter would "
        "(`benchmarks/core.py`). No server built on the core can beat these."
    )
    add("")
    add("| what | per second |")
    add("|---|---|")
    add(f"| lines parsed and answered (`PING`) | {_cell(m, 'parse_lines_per_s')} |")
    for n in (10, 100, 1000):
        rate = _cell(m, f"broadcast_{n}_deliveries_per_s")
        add(f"| deliveries, broadcast to {n:,} clients | {rate} |")
    if m.get("single_ping_per_s"):
        ping, msg = _cell(m, "single_ping_per_s"), _cell(m, "single_msg_10_deliveries_per_s")
        add(f"| `PING` rounds, one line per read, the adapter contract after each | {ping} |")
        add(f"| deliveries, one `MSG` per read in a room of 10 | {msg} |")
    add("")
    add("```")
    add("python benchmarks/core.py --seconds 1 --repeat 3")
    add("```")
    add("")


def _ratio_section(
    lines: list[str], plan: Plan, med: dict[tuple[str, str], dict[str, Any]]
) -> None:
    pairs = [(t.name, t.baseline) for t in plan.targets if t.baseline]
    pairs += [("serve-uvloop", "bare-gather")]
    rows = []
    for s in plan.scenarios:
        if s.kind == "core":
            continue
        for prod, base in pairs:
            a, b = med.get((s.key, prod)), med.get((s.key, str(base)))
            if not a or not b or not a.get(s.headline) or not b.get(s.headline):
                continue
            rows.append(
                f"| {s.key} | `{prod}` / `{base}` | {s.headline} "
                f"| {a[s.headline] / b[s.headline]:.2f} |"
            )
    if not rows:
        return
    lines.append("## Ratios to the bare servers")
    lines.append("")
    lines.append(
        "Above 1: chatproto-serve is faster than the bare server of its kind. Against "
        "`bare-gather`, the limit of a gathering uvloop server without any checks."
    )
    lines.append("")
    lines.append("| scenario | pair | figure | ratio |")
    lines.append("|---|---|---|---|")
    lines.extend(rows)
    lines.append("")


def _crosscheck_section(
    lines: list[str], plan: Plan, med: dict[tuple[str, str], dict[str, Any]]
) -> None:
    add = lines.append
    add("## Cross-check with chatload")
    add("")
    if plan.loadgen == "chatload":
        add("This whole page was measured with chatload instead of chatproto-bench.")
        add("")
        return
    if not plan.crosscheck:
        add(
            "Not run: chatload (an independent C load generator, shared/tools/chatload; "
            "build it with `cc -O2 -o /tmp/chatload chatload.c`) was not found or "
            "`--no-crosscheck` was given. The project's benchmarks do not need it."
        )
        add("")
        return
    add(
        "The same scenario measured right after by chatload (`--ack all`, window 4, "
        "the same sizes) on a fresh server of the same target. Close figures mean "
        "chatproto-bench measures the server, not itself. Its CPU per delivery is "
        "higher than chatload's (Python against C), which is why it reports its own CPU."
    )
    add("")
    add("| scenario | target | chatproto-bench | chatload | ratio | bench CPU | chatload CPU |")
    add("|---|---|---|---|---|---|---|")
    for s in plan.scenarios:
        if s.key not in CROSSCHECK:
            continue
        for t in plan.targets:
            a = med.get((s.key, t.name))
            b = med.get((s.key + CHATLOAD_SUFFIX, t.name))
            if not a or not b:
                continue
            va, vb = a.get(s.headline), b.get(s.headline)
            ratio = f"{va / vb:.2f}" if va and vb else "-"
            add(
                f"| {s.key} | `{t.name}` | {fmt_num(va)} | {fmt_num(vb)} | {ratio} "
                f"| {_cell(a, 'loadgen_cpu_pct', 'pct')} | {_cell(b, 'loadgen_cpu_pct', 'pct')} |"
            )
    add("")


def plot(plan: Plan, med: dict[tuple[str, str], dict[str, Any]], path: Path) -> bool:
    """deliveries/s against clients, one line per target; False if no data."""
    curve = [s for s in plan.scenarios if s.key in CURVE]
    if not curve:
        return False
    try:
        import matplotlib  # noqa: PLC0415 - optional, only for the plot

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    drawn = False
    for t in plan.targets:
        xs, ys = [], []
        for s in curve:
            m = med.get((s.key, t.name))
            if m and m.get("deliveries_per_s"):
                xs.append(scenario_params(s, t, plan.quick)["clients"])
                ys.append(m["deliveries_per_s"])
        if xs:
            style = "-o" if t.kind == "product" else "--s"
            ax.plot(xs, ys, style, label=t.name)
            drawn = True
    if not drawn:
        plt.close(fig)
        return False
    ax.set_xscale("log")
    sizes = sorted({scenario_params(s, None, plan.quick)["clients"] for s in curve})
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set_ylim(bottom=0)
    ax.set_xlabel("clients (10 senders)")
    ax.set_ylabel("deliveries per second (median)")
    title = "fanout throughput" + (" (smoke, not a measurement)" if plan.quick else "")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --------------------------------------------------------------------- main


def raise_fd_limit() -> None:
    """Servers and load generators inherit this: 10,000 clients need fds."""
    try:
        import resource  # noqa: PLC0415 - POSIX only
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="scenarios: "
        + ", ".join(s.key for s in SCENARIOS)
        + "; targets: "
        + ", ".join(t.name for t in TARGETS),
    )
    parser.add_argument("--quick", action="store_true", help="a smoke of everything, < 60 s")
    parser.add_argument("--only", help="comma-separated scenarios")
    parser.add_argument("--targets", help="comma-separated targets")
    parser.add_argument("--repeat", type=int, help="repetitions (default 3, --quick 1)")
    parser.add_argument(
        "--loadgen", choices=("chatproto-bench", "chatload"), default="chatproto-bench"
    )
    parser.add_argument(
        "--chatload", help="path of the chatload binary (default: $CHATLOAD, PATH, /tmp/chatload)"
    )
    parser.add_argument(
        "--no-crosscheck",
        action="store_true",
        help="do not cross-check with chatload even when it is available",
    )
    parser.add_argument("--procs", type=int, help="chatproto-bench --procs (default: free CPUs)")
    parser.add_argument(
        "--window", type=int, default=4, help="messages in flight per sender (default 4)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument("--out", type=Path, help="directory for performance.md/.png (docs/)")
    parser.add_argument("--raw", type=Path, help="where the raw JSON of every run goes")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="measure nothing: rewrite the page and the plot from the raw JSON",
    )
    args = parser.parse_args(argv)
    out_dir = args.out or ROOT / "docs"
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = args.raw or (out_dir / "performance.json" if args.out else HERE / "results.json")
    if args.render_only:
        saved = json.loads(raw.read_text())
        plan = plan_from_json(saved["plan"])
        md = write_report(
            plan, saved["runs"], out_dir, raw, command=saved["command"], machine=saved["machine"]
        )
        print(f"wrote {md} from {raw}", file=sys.stderr)
        return 0
    plan = make_plan(args)
    raise_fd_limit()

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    if plan.skipped:
        say(f"skipping: {plan.skipped}")
    say(
        f"{len(plan.scenarios)} scenario(s) x {len(plan.targets)} target(s) x "
        f"{plan.repeat} repetition(s); pinning: {plan.server_prefix or 'none'}"
    )
    command = "python benchmarks/run.py" + (
        " " + shlex.join(argv if argv is not None else sys.argv[1:])
        if (argv or sys.argv[1:])
        else ""
    )
    t0 = time.monotonic()
    with tempfile.NamedTemporaryFile("w", prefix="bench-", suffix=".log", delete=False) as log:
        say(f"server and load generator logs: {log.name}")
        records = run_all(plan, log, say)
    raw.parent.mkdir(parents=True, exist_ok=True)
    machine = machine_info(plan)
    saved = {"command": command, "plan": plan_to_json(plan), "machine": machine, "runs": records}
    raw.write_text(json.dumps(saved, indent=1))
    md = write_report(plan, records, out_dir, raw, command=command, machine=machine)
    failed = sum(1 for r in records if not r.get("ok"))
    say(f"wrote {md} and {raw} in {time.monotonic() - t0:.0f}s; {failed} failed run(s)")
    return 1 if records and failed == len(records) else 0


if __name__ == "__main__":
    sys.exit(main())
