"""Our own servers pass the conformance suite, through the command a user runs.

Every flavour (``chatproto.adapters.FLAVOURS``: threading, anyio on asyncio,
uvloop and trio, gevent) gets the full ``strict`` and ``robust`` profiles
(idle timeout, server-full and shutdown included, since the suite starts the
server itself) and the ``load`` profile; examples/selectors_server.py gets
``load`` too; ``core`` must finish quickly. This is the single integration
test of the adapters.

Flood control is the suite's business, per profile (``FLOOD_CONTROL`` in
``chatproto.conformance._target``): ``--backend`` runs strict and robust with
``--flood-rate 0``, because they pipeline thousands of lines on purpose and
flood control would only delay them (docs/protocol.md §16.2 allows that), and
runs load with the defaults, giving flood control off only to the load tests
that need it (LOD-51 to LOD-53). The example, a ``--server-cmd`` target, says
how with ``--flood-off``.

The runs start together, a few at a time (tests/suite_runs.py): they mostly
wait on purpose, so the module takes about as long as its longest runs.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator

import pytest

from chatproto.adapters import FLAVOURS
from chatproto.conformance import catalogue, select
from tests import REPO

from .suite_runs import RunPool, SuiteRun

EXAMPLE = REPO / "examples" / "selectors_server.py"


def _target(flavour: tuple[str, ...]) -> list[str]:
    """``chatproto-serve`` arguments of a flavour as ``chatproto-conformance`` target options."""
    assert flavour[0] == "--backend"
    rest = " ".join(flavour[2:])
    return ["--backend", flavour[1], *([f"--serve-args={rest}"] if rest else [])]


#: Every flavour's target, and the stdlib example's.
TARGETS: dict[str, list[str]] = {name: _target(args) for name, args in FLAVOURS.items()}
TARGETS["selectors-example"] = [
    "--server-cmd",
    f"{sys.executable} {EXAMPLE} --host {{host}} --port {{port}} "
    "--idle-timeout {idle_timeout} --max-clients {max_clients}",
    "--flood-off=--flood-rate 0",
]
STRICT_ROBUST = [name for name in TARGETS if name != "selectors-example"]
LOAD = list(TARGETS)

#: Known adapter bugs the suite found, as expectations entries (``ID-GLOB
#: reason`` lines) by run name: the run stays green while they are open, and
#: the report says "remove the entry" once they are fixed. Keep each entry to
#: one backend.
KNOWN: dict[str, str] = {}

#: Every run of this module: name -> (the target it runs against, its arguments).
RUNS: dict[str, tuple[str, list[str]]] = {
    **{
        f"strict-robust-{name}": (
            name,
            ["run", *TARGETS[name], "--profile", "strict", "--profile", "robust"],
        )
        for name in STRICT_ROBUST
    },
    **{f"load-{name}": (name, ["run", *TARGETS[name], "--profile", "load"]) for name in LOAD},
    "core": ("threading", ["run", *TARGETS["threading"], "--profile", "core"]),
    # The same server, as a --server-cmd the suite cannot unthrottle: tested
    # as it is, with its default flood control (§16.2).
    "load-flood-control-on": (
        "threading",
        [
            "run",
            "--server-cmd",
            f"{sys.executable} -m chatproto --backend threading --host {{host}} --port {{port}} "
            "--idle-timeout {idle_timeout} --max-clients {max_clients}",
            "--profile",
            "load",
        ],
    ),
}


def _available(name: str) -> bool:
    args = TARGETS[name]
    needed = [m for m in ("anyio", "trio", "gevent", "uvloop") if any(m in a for a in args[:2])]
    needed += [m for m in ("trio", "uvloop") if any(m in a for a in args[2:])]
    return all(importlib.util.find_spec(m) is not None for m in needed)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunPool]:
    """Every run of this module, started at once, four at a time."""
    folder = tmp_path_factory.mktemp("expectations")
    wanted = {}
    for run, (name, args) in RUNS.items():
        if not _available(name):
            continue
        known = folder / f"{run}.expect"
        known.write_text(KNOWN.get(run, ""), "utf-8")
        wanted[run] = [*args, "--expectations", str(known), "-q"]
    pool = RunPool(wanted, workers=4)
    yield pool
    pool.close()


def _passed(runs: RunPool, run: str, name: str) -> SuiteRun:
    if not _available(name):
        pytest.skip(f"{name}: its runtime is not installed")
    got = runs[run]
    assert got.code == 0, f"{run}: {got.bad()}\n{got.text[-3000:]}"
    return got


@pytest.mark.parametrize("name", STRICT_ROBUST)
def test_strict_and_robust(runs: RunPool, name: str) -> None:
    outcomes = _passed(runs, f"strict-robust-{name}", name).outcomes
    # Nothing is skipped against our own servers: the suite controls them.
    assert "SKIP" not in outcomes.values(), [i for i, o in outcomes.items() if o == "SKIP"]
    assert "LENIENT" not in outcomes.values()
    for test_id in ("IDL-51", "LIM-51", "SHD-51", "ROB-51", "ROB-52", "FRM-02"):
        assert outcomes[test_id] == "PASS"


@pytest.mark.parametrize("name", LOAD)
def test_load(runs: RunPool, name: str) -> None:
    got = _passed(runs, f"load-{name}", name)
    load = {c.id for c in select(catalogue(), ["load"])}
    assert got.outcomes == dict.fromkeys(load, "PASS")
    measured = got.results["LOD-52"]["measurements"]
    assert measured["ping_rtt_max_s"] < 1.0
    assert got.results["LOD-54"]["measurements"]["refused"] >= 200


def test_load_with_flood_control_on(runs: RunPool) -> None:
    """A server the suite cannot unthrottle is tested as it is: its fake lag is seen, not failed.

    chatproto's defaults (a burst of 500 lines, then 50 a second) would take
    minutes to deliver LOD-51's and LOD-53's floods: both are skipped within
    seconds, with the rate they saw. The rest passes as it is.
    """
    got = _passed(runs, "load-flood-control-on", "threading")
    outcomes = got.outcomes
    assert outcomes["LOD-51"] == outcomes["LOD-53"] == "SKIP", got.results
    for test_id in ("LOD-51", "LOD-53"):
        reason = got.results[test_id]["reason"]
        assert "lines/s (flood control" in reason and "--flood-off" in reason
        assert got.results[test_id]["duration"] < 10
    assert outcomes["LOD-52"] == outcomes["LOD-54"] == outcomes["LOD-55"] == "PASS"


def test_core_is_fast(runs: RunPool) -> None:
    got = _passed(runs, "core", "threading")
    assert got.report["duration"] < 15.0
    assert got.report["summary"]["PASS"] == len(got.report["results"])
