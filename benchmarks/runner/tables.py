"""The tables of the page: one per scenario, the core's, the ratios, the cross-check.

Owns what each table shows (columns per kind of scenario, the notes under
it: failures, crashes, warnings) from the medians of :mod:`.summary`, and
the two commands under each table that reproduce one of its cells.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import replace
from typing import Any

from .plan import Plan
from .running import loadgen_argv
from .scenarios import CHATLOAD_SUFFIX, CROSSCHECK, Scenario, scenario_params
from .summary import fmt_ms, fmt_num, fmt_pct
from .targets import PY, ROOT, Target

__all__ = ["core_section", "crosscheck_section", "ratio_section", "repro", "scenario_table"]


def repro(plan: Plan, s: Scenario, t: Target) -> str:
    """The two commands that reproduce one cell (port 4000), from a clean clone.

    The load generator is always chatproto-bench, which takes chatload's
    options: chatload is not part of the repository.
    """
    p = scenario_params(s, t, plan.quick)
    # The port the target picks (0) becomes 4000; no other argument changes.
    server = [
        "4000" if a == "0" and i and t.argv[i - 1] == "--port" else a for i, a in enumerate(t.argv)
    ]
    if server[:3] == [PY, "-m", "chatproto"]:
        server = ["chatproto-serve", *server[3:]]
    else:
        server = [
            ("python" if a == PY else os.path.relpath(a, ROOT) if a.startswith("/") else a)
            for a in server
        ]
    bench = loadgen_argv(replace(plan, loadgen="chatproto-bench"), s, p, 4000, 0)
    if bench[:3] == [PY, "-m", "chatproto.bench.cli"]:
        bench = ["chatproto-bench", *bench[3:]]
    bench = bench[: bench.index("--server-pid")]
    return f"{shlex.join(server)} &  {shlex.join(bench)} --server-pid $!"


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


def scenario_table(
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


def core_section(lines: list[str], m: dict[str, Any] | None) -> None:
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


def ratio_section(lines: list[str], plan: Plan, med: dict[tuple[str, str], dict[str, Any]]) -> None:
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


def crosscheck_section(
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
            "Not run: no chatload binary was found (an independent C load generator, "
            "not part of chatproto) or `--no-crosscheck` was given. The project's "
            "benchmarks do not need it."
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
