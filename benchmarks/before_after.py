"""The same fan-out, before and after a change: chatproto-serve at two revisions.

Checks out ``--rev`` (default: the last commit before flow control, issue 10)
into a temporary git worktree, and runs one ``chatproto-bench fanout`` command,
the current tree's, against that revision's server and the current one in
turn (``--repeat`` times each, alternating, server on CPU 0 and load generator
on CPU 1 when ``taskset`` is there). The current server runs with flood
control off (``--flood-rate 0``), the setting every throughput figure uses;
the old one has no flood control (a later ``--rev`` has, and runs with it
off too). Prints medians and their ratio as Markdown.

Run: ``python benchmarks/before_after.py [--rev dc9b421] [--clients 10] [--senders 10]
[--chatload PATH]`` (nothing else should run on the machine). chatload, an
independent load generator in C that is not part of this repository, measures
the server where chatproto-bench's own CPU is the limit (100 clients).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from typing import Any

from runner.server import parse_port, pinning
from runner.targets import serve_argv

from chatproto.adapters import FLAVOURS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The last commit before flow control (issue 10).
BEFORE = "dc9b421"
#: ``taskset`` prefixes: the server on one CPU, the load generator on the others.
SERVER_CPU, LOADGEN_CPU = pinning()


def serve(flavour: str, tree: str | None, flood_off: bool) -> tuple[subprocess.Popen[str], int]:
    """chatproto-serve from ``tree`` (``None``: the current one); returns it and its port."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = tree
    # -m puts the working directory first on sys.path: run in the tree to serve.
    proc = subprocess.Popen(
        [*SERVER_CPU, *serve_argv(*FLAVOURS[flavour], flood_off=flood_off)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=tree or REPO,
    )
    assert proc.stdout is not None
    port = parse_port(proc.stdout.readline())
    assert port is not None, "chatproto-serve printed no port"
    return proc, port


def fanout(port: int, pid: int, args: argparse.Namespace) -> float:
    """One fan-out run against ``port``: deliveries per second."""
    if args.chatload:
        # An independent C load generator: where chatproto-bench's own CPU
        # is the limit (100 clients and more), it still measures the server.
        argv = [args.chatload, "fanout", "--port", str(port), "--clients", str(args.clients)]
        argv += ["--batch-us", str(args.batch_us), "--window", "4"]
    else:
        bench = os.path.join(os.path.dirname(sys.executable), "chatproto-bench")
        argv = [bench, "fanout", "--port", str(port), "--clients", str(args.clients)]
        argv += ["--json", "--quiet"]
    argv += ["--senders", str(args.senders), "--duration", str(args.seconds), "--ack", "all"]
    argv += ["--server-pid", str(pid)]
    out = subprocess.run([*LOADGEN_CPU, *argv], capture_output=True, text=True, check=True).stdout
    result: dict[str, Any] = json.loads(out)
    return float(result["deliveries_per_s"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rev", default=BEFORE)
    p.add_argument("--backends", default=",".join(FLAVOURS))
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--senders", type=int, default=10)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--chatload", help="measure with this chatload binary, not chatproto-bench")
    p.add_argument("--batch-us", type=int, default=0, help="chatload's coalescing nap")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tree = os.path.join(tmp, "before")
        subprocess.run(
            ["git", "-C", REPO, "worktree", "add", "--detach", tree, args.rev],
            check=True,
            capture_output=True,
        )
        link = os.path.join(tree, "chatproto", "adapters")
        if not os.path.exists(link):
            # A revision that maps adapters/ in pyproject.toml, as this one
            # does: run from source, the package needs the link instead.
            os.symlink(os.path.join("..", "adapters"), link)
        try:
            rows = []
            for flavour in args.backends.split(","):
                runs: dict[str, list[float]] = {"before": [], "after": []}
                for _ in range(args.repeat):
                    for label, where in (("before", tree), ("after", None)):
                        flood_off = where is None or args.rev != BEFORE
                        proc, port = serve(flavour, where, flood_off)
                        try:
                            runs[label].append(fanout(port, proc.pid, args))
                        finally:
                            proc.send_signal(signal.SIGINT)
                            proc.wait(30)
                before = statistics.median(runs["before"])
                after = statistics.median(runs["after"])
                rows.append((flavour, before, after))
                print(json.dumps({"flavour": flavour, **runs}), file=sys.stderr)
        finally:
            remove = ["git", "-C", REPO, "worktree", "remove", "--force", tree]
            subprocess.run(remove, check=False, capture_output=True)
    print(
        f"| backend | {args.rev} deliveries/s | now deliveries/s | now / before |\n"
        "|---|---|---|---|"
    )
    for flavour, before, after in rows:
        print(f"| {flavour} | {before:,.0f} | {after:,.0f} | {after / before:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
