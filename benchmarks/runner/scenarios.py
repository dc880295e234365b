"""The measurements: what each scenario is, at full and at --quick size.

Owns :data:`SCENARIOS`, which of them make the curve and which chatload
cross-checks, and the parameters of one scenario against one target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .targets import Target

__all__ = ["CHATLOAD_SUFFIX", "CROSSCHECK", "CURVE", "SCENARIOS", "Scenario", "scenario_params"]


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
