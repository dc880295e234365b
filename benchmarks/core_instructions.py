"""Instructions per line, delivery or round of the core, counted by callgrind.

Wall time on a shared two-core machine is noise; an instruction count is
not: valgrind's callgrind counts the same instructions on every run. For each
workload of ``benchmarks/core.py`` this runs it twice under callgrind, for
enough steps for about ``--work`` lines, deliveries or rounds, and for none
(the set-up alone), and divides the difference by the work done. Compare two
checkouts (before and after a change to the core's hot path) with the same
``--work``.

Run: ``python benchmarks/core_instructions.py [--work 30000] [--only parse ...] [--json]``.
Needs ``valgrind`` on PATH; takes about a minute per workload.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from core import UNITS

HERE = Path(__file__).resolve().parent
#: callgrind's summary line: "==123== Collected : 456789".
_COLLECTED = re.compile(rb"Collected\s*:\s*(\d+)")


def instructions(workload: str, steps: int) -> int:
    """Instructions executed by ``core.py --only workload --steps steps``, start to exit."""
    done = subprocess.run(  # PYTHONHASHSEED fixed: the same dict layouts every run
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            str(HERE / "core.py"),
            "--only",
            workload,
            "--steps",
            str(steps),
        ],
        capture_output=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind: {done.stderr[-300:]!r}")
    return int(found.group(1))


def per_unit(workload: str, work: int) -> float:
    """Instructions per unit of work (line, delivery, round) of ``workload``, over ``work``."""
    units, _ = UNITS[workload]
    steps = max(1, work // units)
    return (instructions(workload, steps) - instructions(workload, 0)) / (steps * units)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work", type=int, default=30000, help="lines, deliveries or rounds per measured run"
    )
    parser.add_argument(
        "--only", action="append", choices=list(UNITS), help="workloads (default: all)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not on PATH")
    result = {name: per_unit(name, args.work) for name in args.only or list(UNITS)}
    if args.json:
        print(json.dumps(result))
    else:
        for name, count in result.items():
            print(f"{name:<16} {count:>10,.0f} instructions per {UNITS[name][1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
