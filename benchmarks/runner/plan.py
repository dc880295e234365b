"""What a run does, resolved from the arguments, and saved with its results.

Owns :class:`Plan` (scenarios, targets, pinning, the load generator and its
size), making one from the command line (skipping targets whose dependency
is missing, finding chatload), and its JSON form for ``--render-only``.
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import dataclass
from typing import Any

from .scenarios import SCENARIOS, Scenario
from .server import cpu_count, pinning
from .targets import TARGETS, Target, have

__all__ = ["Plan", "make_plan", "plan_from_json", "plan_to_json"]


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
    # chatload is not part of chatproto: only where the user put it.
    chatload = args.chatload or os.environ.get("CHATLOAD") or shutil.which("chatload")
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
