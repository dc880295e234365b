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

This file is the command line; the work is in the ``runner`` package next
to it (see its docstring for which module does what).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

# The runner package lives next to this script, however the script is loaded
# (run as a script, or imported by path as the tests do).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from runner.page import machine_info, write_report
from runner.plan import make_plan, plan_from_json, plan_to_json
from runner.running import run_all
from runner.scenarios import SCENARIOS
from runner.server import parse_port
from runner.targets import HERE, ROOT, TARGETS

from chatproto.bench import raise_fd_limit

__all__ = ["main", "parse_port"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
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
        "--chatload", help="path of the chatload binary (default: $CHATLOAD, then PATH)"
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
    # Servers and load generators inherit this: 10,000 clients need fds.
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
