"""The page: docs/performance.md, written whole from the plan and the runs.

Owns the page's order (machine, targets, method, one section per scenario,
ratios, cross-check, plot, the hand-written notes), the description of the
machine. The tables are :mod:`.tables`', the plot :mod:`.plot`'s.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .plan import Plan
from .plot import plot
from .server import cpu_count
from .summary import summarise
from .tables import core_section, crosscheck_section, ratio_section, scenario_table
from .targets import HERE, PY

__all__ = ["METHOD", "machine_info", "write_report"]


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
        "[chatload](#cross-check-with-chatload), an independent C load generator that "
        "is not part of this repository, cross-checks it where it is installed. Every "
        "command on this page runs from a clean clone with chatproto-bench."
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
    if "--loadgen chatload" in command:
        # Said, not given as a command: chatload is not in a clean clone.
        clean = command.replace(" --loadgen chatload", "")
        add(
            "This page was written with chatload as the load generator (`--loadgen "
            f"chatload`); the same runs from a clean clone: `{clean}`."
        )
    else:
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
            core_section(lines, med.get(("core", "core")))
            continue
        scenario_table(lines, plan, s, tnames, med)
    ratio_section(lines, plan, med)
    crosscheck_section(lines, plan, med)
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
