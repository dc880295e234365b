"""Each deliberately broken server is caught by the tests that claim to catch it, and only there.

The servers in tests/broken_servers/ are the chatproto core with one bug
added each. For each, the suite runs the tests that target the bug plus some
that must still pass (correct behaviour is not flagged), through
``chatproto-conformance run --server-cmd``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from chatproto.conformance.cli import main

HERE = Path(__file__).parent / "broken_servers"


def run(
    tmp_path: Path, server: str, *args: str
) -> tuple[int, dict[str, str], dict[str, dict[str, object]]]:
    """Run the suite on ``server``; return the exit code, outcomes and results by ID."""
    report = tmp_path / f"{server}.json"
    command = f"{sys.executable} {HERE / server}.py {{port}}"
    code = main(["run", "--server-cmd", command, "--json", str(report), "-q", *args])
    data = json.loads(report.read_text("utf-8"))
    by_id = {r["id"]: r for r in data["results"]}
    return code, {k: r["outcome"] for k, r in by_id.items()}, by_id


def test_correct_base_passes_everything(tmp_path: Path) -> None:
    """The unbroken base server passes strict and robust; idle and limit tests skip with a hint."""
    code, outcomes, results = run(
        tmp_path, "_loop", "--profile", "strict", "--profile", "robust", "--exclude", "ROB-52"
    )
    assert code == 0
    skipped = {k for k, o in outcomes.items() if o == "SKIP"}
    assert skipped == {"IDL-51", "IDL-52", "IDL-53", "LIM-51"}
    assert "{idle_timeout}" in str(results["IDL-51"]["reason"])


def test_recv_is_command(tmp_path: Path) -> None:
    code, outcomes, results = run(
        tmp_path,
        "recv_is_command",
        "--profile", "core",
        "--only", "FRM-5[1-4]", "--only", "LOG-5[13-6]", "--only", "MSG-51", "--only", "DM-51",
        "--timeout", "1",
    )  # fmt: skip
    assert code == 1
    for test_id in ("FRM-52", "FRM-53", "FRM-54"):
        assert outcomes[test_id] == "FAIL", results[test_id]
    for test_id in ("FRM-51", "LOG-51", "LOG-53", "MSG-51", "DM-51"):
        assert outcomes[test_id] == "PASS", results[test_id]
    # The report says what was sent and what did not come.
    assert str(results["FRM-52"]["expected"]).endswith(" one")
    assert any("MSG two" in line for line in results["FRM-52"]["transcript"])  # type: ignore[attr-defined]


def test_echo_is_a_dialect_in_core_and_a_failure_in_strict(tmp_path: Path) -> None:
    only = ["--only", "MSG-51", "--only", "MSG-52", "--only", "DM-51", "--only", "LOG-52"]
    code, outcomes, results = run(tmp_path, "echo_msg", "--profile", "core", *only)
    assert code == 0
    assert outcomes["MSG-51"] == "LENIENT"
    assert results["MSG-51"]["variants"] == ["msg-echo"]
    assert outcomes["DM-51"] == "PASS"
    code, outcomes, results = run(
        tmp_path, "echo_msg", "--profile", "strict", *only, "--only", "MSG-01"
    )
    assert code == 1
    assert outcomes["MSG-51"] == outcomes["MSG-01"] == "FAIL"
    assert "msg-echo" in str(results["MSG-51"]["reason"])
    assert outcomes["DM-51"] == outcomes["LOG-52"] == "PASS"


def test_deadlock_is_one_verdict(tmp_path: Path) -> None:
    """The hang is found once (a fresh connection is not answered): the rest is NOT-RUN."""
    began = time.monotonic()
    code, outcomes, _results = run(
        tmp_path, "deadlock_after_login", "--profile", "core",
        "--only", "PNG-52", "--only", "LOG-52", "--only", "MSG-51", "--timeout", "1",
    )  # fmt: skip
    assert code == 1
    assert time.monotonic() - began < 20
    data = json.loads((tmp_path / "deadlock_after_login.json").read_text("utf-8"))
    assert data["deadlock"]["where"] == "the probe"
    assert set(outcomes.values()) == {"NOT-RUN"}


def test_never_frees_a_name(tmp_path: Path) -> None:
    code, outcomes, results = run(
        tmp_path, "never_frees_name", "--profile", "core", "--profile", "robust",
        "--only", "DIS-5[1-3]", "--only", "WHO-52", "--only", "ROB-59", "--only", "MSG-51",
    )  # fmt: skip
    assert code == 1
    for test_id in ("DIS-52", "DIS-53", "WHO-52", "ROB-59"):
        assert outcomes[test_id] == "FAIL", results[test_id]
    assert "not freed" in str(results["DIS-52"]["reason"])
    assert outcomes["DIS-51"] == outcomes["MSG-51"] == "PASS"


def test_blocking_writes_stall_everyone(tmp_path: Path) -> None:
    code, outcomes, results = run(
        tmp_path, "blocking_writes", "--profile", "robust",
        "--only", "ROB-51", "--only", "ROB-58", "--only", "CON-52", "--timeout", "2",
    )  # fmt: skip
    assert code == 1
    assert outcomes["ROB-51"] == "FAIL"
    assert "slow is not reading" in str(results["ROB-51"]["reason"])
    assert outcomes["ROB-58"] == outcomes["CON-52"] == "PASS"


@pytest.mark.parametrize("script", sorted(p.stem for p in HERE.glob("[a-z]*.py")))
def test_every_broken_server_says_what_it_breaks(script: str) -> None:
    text = (HERE / f"{script}.py").read_text("utf-8")
    assert text.startswith('"""Broken server: ')
    assert "Caught by" in text or "must report" in text
