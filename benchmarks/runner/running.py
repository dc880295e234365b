"""Running the measurements: one scenario on one fresh server, and all of them.

Owns the load generator's command line (``chatproto-bench`` or chatload),
running it with a time budget against a freshly started server, the record
of each run, and the order of the runs (targets rotated every repetition).
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import replace
from typing import IO, Any

from .plan import Plan
from .scenarios import CHATLOAD_SUFFIX, CROSSCHECK, Scenario, scenario_params
from .server import Server
from .summary import fmt_num, fmt_pct, normalise
from .targets import HERE, PY, ROOT, Target

__all__ = ["brief", "loadgen_argv", "run_all", "run_core", "run_one"]


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
