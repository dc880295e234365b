"""Our own servers pass the conformance suite, through the command a user runs.

Each backend gets the full ``strict`` and ``robust`` profiles (idle timeout,
server-full and shutdown included, since the suite starts the server itself),
and ``core`` must finish quickly. This is the single integration test of the
adapters.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from chatproto.conformance.cli import main

# strict and robust pipeline thousands of lines (ROB-58: 5,000 PINGs in one
# stream); with flood control on they are delayed, as docs/protocol.md §16
# allows, and would take minutes. Like irctest's server configs, the suite
# runs our servers with flood control off for those profiles; the load
# profile runs them with the defaults.
NO_FLOOD = "--flood-rate 0"
BACKENDS = [
    pytest.param(["--backend", "threading", f"--serve-args={NO_FLOOD}"], id="threading"),
    pytest.param(["--backend", "anyio", f"--serve-args={NO_FLOOD}"], id="anyio-asyncio"),
    pytest.param(
        ["--backend", "anyio", "--anyio-backend", "trio", f"--serve-args={NO_FLOOD}"],
        id="anyio-trio",
    ),
    pytest.param(["--backend", "anyio", f"--serve-args=--uvloop {NO_FLOOD}"], id="anyio-uvloop"),
    pytest.param(["--backend", "gevent", f"--serve-args={NO_FLOOD}"], id="gevent"),
]

#: Known adapter bugs the suite found, as an expectations file: the run stays
#: green while they are open, and the report says "remove the entry" once
#: they are fixed. Keep each entry to one backend.
KNOWN: dict[str, str] = {}


def _needs(args: list[str]) -> None:
    for module in ("anyio", "trio", "gevent"):
        if module in args and importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")


def _run(tmp_path: Path, args: list[str], name: str) -> dict[str, object]:
    report = tmp_path / f"{name}.json"
    expectations = tmp_path / f"{name}.expect"
    expectations.write_text(KNOWN.get(name, ""), "utf-8")
    code = main(["run", *args, "--json", str(report), "--expectations", str(expectations), "-q"])
    data: dict[str, object] = json.loads(report.read_text("utf-8"))
    results = data["results"]
    assert isinstance(results, list)
    bad = [r for r in results if r["outcome"] in ("FAIL", "ERROR")]
    assert code == 0, f"{name}: {[(r['id'], r['reason']) for r in bad]}"
    return data


@pytest.mark.parametrize("args", BACKENDS)
def test_strict_and_robust(args: list[str], tmp_path: Path, request: pytest.FixtureRequest) -> None:
    _needs(args)
    name = request.node.callspec.id
    data = _run(tmp_path, [*args, "--profile", "strict", "--profile", "robust"], name)
    results = data["results"]
    assert isinstance(results, list)
    outcomes = {r["id"]: r["outcome"] for r in results}
    # Nothing is skipped against our own servers: the suite controls them.
    assert "SKIP" not in outcomes.values(), [i for i, o in outcomes.items() if o == "SKIP"]
    assert "LENIENT" not in outcomes.values()
    for test_id in ("IDL-51", "LIM-51", "SHD-51", "ROB-51", "FRM-02"):
        assert outcomes[test_id] == "PASS"


def test_core_is_fast(tmp_path: Path) -> None:
    data = _run(tmp_path, ["--backend", "threading", "--profile", "core"], "core")
    duration, results, summary = data["duration"], data["results"], data["summary"]
    assert isinstance(duration, float)
    assert isinstance(results, list)
    assert isinstance(summary, dict)
    assert duration < 15.0
    assert summary["PASS"] == len(results)
