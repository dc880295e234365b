"""The servers to measure: ``chatproto-serve`` with each backend and the bare ones.

Owns :data:`TARGETS` (how to start each server, what it is compared with,
what it needs) and the paths the runner works from.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HERE", "PY", "ROOT", "TARGETS", "Target", "have"]

#: benchmarks/, where the bare servers and core.py live.
HERE = Path(__file__).resolve().parent.parent
ROOT = HERE.parent
PY = sys.executable


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


def serve_argv(*args: str, flood_off: bool = True) -> tuple[str, ...]:
    """``chatproto-serve`` with ``args``, as every benchmark starts it (port 0: it picks one).

    ``flood_off=False`` leaves out ``--flood-rate 0``, for a revision that
    has no such option (benchmarks/before_after.py).
    """
    flood = ("--flood-rate", "0") if flood_off else ()
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
        # Throughput is measured with flood control off: a closed-loop sender
        # sends far more than the default 50 lines/s on purpose. The notes of
        # docs/performance.md ("Flow control") measure the defaults separately.
        *flood,
    )


TARGETS: tuple[Target, ...] = (
    Target(
        "serve-threading",
        "product",
        "threads",
        serve_argv("--backend", "threading"),
        baseline="bare-threads",
        description="chatproto-serve --backend threading",
    ),
    Target(
        "serve-asyncio",
        "product",
        "asyncio",
        serve_argv("--backend", "anyio"),
        needs=("anyio",),
        baseline="bare-asyncio",
        description="chatproto-serve --backend anyio (asyncio)",
    ),
    Target(
        "serve-uvloop",
        "product",
        "uvloop",
        serve_argv("--backend", "anyio", "--uvloop"),
        needs=("anyio", "uvloop"),
        baseline="bare-uvloop",
        description="chatproto-serve --backend anyio --uvloop",
    ),
    Target(
        "serve-trio",
        "product",
        "trio",
        serve_argv("--backend", "anyio", "--anyio-backend", "trio"),
        needs=("anyio", "trio"),
        description="chatproto-serve --backend anyio --anyio-backend trio",
    ),
    Target(
        "serve-gevent",
        "product",
        "gevent",
        serve_argv("--backend", "gevent"),
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


def have(need: str) -> bool:
    """Whether a Python module or a program is available."""
    if need == "node":
        return shutil.which("node") is not None
    probe = [PY, "-c", f"import {need}"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0
