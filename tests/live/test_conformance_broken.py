"""Each deliberately broken server is caught by the tests that claim to catch it, and only there.

The servers in tests/live/broken_servers/ are the chatproto core with one bug
added each. For each, the suite runs the tests that target the bug plus some
that must still pass (correct behaviour is not flagged), through
``chatproto-conformance run --server-cmd``. The load profile's tests
(LOD-51 to LOD-55) each have a mutant of their own; the unbroken base passes
the whole profile.

The runs start together, four at a time (tests/suite_runs.py). One proof
waits out a 10 s limit by nature (a server that never cuts off a reader that
stopped: LOD-53 must first give it the spec's soft limit); it is in the
``slow`` tier, and a short form (a server whose blocking writes stall the
others, caught by the same test in a second) runs by default.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .suite_runs import RunPool, SuiteRun, run_suite

HERE = Path(__file__).parent / "broken_servers"


def command(server: str, *limits: str) -> str:
    """How the suite starts ``server``; ``limits`` are its options with their placeholders."""
    return " ".join([sys.executable, str(HERE / f"{server}.py"), "{port}", *limits])


#: Options that let the suite start a server with a short idle timeout and a small max_clients.
LIMITS = ("--idle-timeout", "{idle_timeout}", "--max-clients", "{max_clients}")


def suite(server: str, *args: str, limits: bool = False) -> list[str]:
    """``run`` arguments for ``server`` (with :data:`LIMITS` in its command if ``limits``)."""
    return ["run", "--server-cmd", command(server, *(LIMITS if limits else ())), "-q", *args]


# fmt: off
RUNS = {
    "base": suite("_loop", "--profile", "strict", "--profile", "robust"),
    "base-load": suite("_loop", "--profile", "load", limits=True),
    "recv_is_command": suite(
        "recv_is_command",
        "--profile", "core",
        "--only", "FRM-5[1-4]", "--only", "LOG-5[13-6]", "--only", "MSG-51", "--only", "DM-51",
        "--timeout", "1",
    ),
    "echo-core": suite(
        "echo_msg", "--profile", "core",
        "--only", "MSG-51", "--only", "MSG-52", "--only", "DM-51", "--only", "LOG-52",
    ),
    "echo-strict": suite(
        "echo_msg", "--profile", "strict",
        "--only", "MSG-51", "--only", "MSG-52", "--only", "DM-51", "--only", "LOG-52",
        "--only", "MSG-01",
    ),
    "deadlock": suite(
        "deadlock_after_login", "--profile", "core",
        "--only", "PNG-52", "--only", "LOG-52", "--only", "MSG-51", "--timeout", "1",
    ),
    "never_frees_name": suite(
        "never_frees_name", "--profile", "core", "--profile", "robust",
        "--only", "DIS-5[1-3]", "--only", "WHO-52", "--only", "ROB-59", "--only", "MSG-51",
    ),
    "blocking_writes": suite(
        "blocking_writes", "--profile", "robust",
        "--only", "ROB-51", "--only", "ROB-58", "--only", "CON-52", "--timeout", "2",
    ),
    "blocking_writes-load": suite(
        "blocking_writes", "--profile", "load", "--only", "LOD-53", "--timeout", "1"
    ),
    "greedy_reader": suite(
        "greedy_reader", "--profile", "load",
        "--only", "LOD-52", "--only", "LOD-55", "--timeout", "2", limits=True,
    ),
    "no_backpressure": suite(
        "no_backpressure", "--profile", "load", "--only", "LOD-51", "--only", "LOD-54",
        limits=True,
    ),
    "keeps_refused_open": suite(
        "keeps_refused_open", "--profile", "load", "--only", "LOD-5[1-4]", limits=True
    ),
    "never_times_out": suite("never_times_out", "--profile", "load", limits=True),
    "drops_silently": suite(
        "drops_silently", "--profile", "strict", "--profile", "load",
        "--only", "ROB-52", "--only", "LOD-53",
    ),
}
# fmt: on
#: The slow proof: LOD-53 against a server with no output limit at all.
UNBOUNDED = suite(
    "unbounded_queue", "--profile", "load", "--only", "LOD-5[1-3]", "--timeout", "1", limits=True
)


@pytest.fixture(scope="module")
def runs() -> Iterator[RunPool]:
    """Every run of this module (but the slow one), started at once, four at a time."""
    pool = RunPool(RUNS, workers=4)
    yield pool
    pool.close()


def failed_only(got: SuiteRun, *failing: str) -> None:
    """``failing`` failed, and every other test of the run passed."""
    outcomes = got.outcomes
    for test_id in failing:
        assert outcomes[test_id] == "FAIL", got.results[test_id]
    passed = {i for i, o in outcomes.items() if o == "PASS"}
    assert passed == set(outcomes) - set(failing), got.bad()
    assert got.code == 1


def test_correct_base_passes_everything(runs: RunPool) -> None:
    """The unbroken base server passes strict and robust; idle and limit tests skip with a hint."""
    got = runs["base"]
    assert got.code == 0, got.bad()
    skipped = {k for k, o in got.outcomes.items() if o == "SKIP"}
    assert skipped == {"IDL-51", "IDL-52", "IDL-53", "LIM-51"}
    assert "{idle_timeout}" in str(got.results["IDL-51"]["reason"])


def test_correct_base_passes_the_load_profile(runs: RunPool) -> None:
    """With its limits under the suite's control, the base passes every load test."""
    got = runs["base-load"]
    assert got.code == 0, got.bad()
    assert set(got.outcomes.values()) == {"PASS"}
    assert len(got.outcomes) == 5


def test_recv_is_command(runs: RunPool) -> None:
    got = runs["recv_is_command"]
    assert got.code == 1
    outcomes, results = got.outcomes, got.results
    for test_id in ("FRM-52", "FRM-53", "FRM-54"):
        assert outcomes[test_id] == "FAIL", results[test_id]
    for test_id in ("FRM-51", "LOG-51", "LOG-53", "MSG-51", "DM-51"):
        assert outcomes[test_id] == "PASS", results[test_id]
    # The report says what was sent and what did not come.
    assert str(results["FRM-52"]["expected"]).endswith(" one")
    assert any("MSG two" in line for line in results["FRM-52"]["transcript"])


def test_echo_is_a_dialect_in_core_and_a_failure_in_strict(runs: RunPool) -> None:
    got = runs["echo-core"]
    assert got.code == 0
    assert got.outcomes["MSG-51"] == "LENIENT"
    assert got.results["MSG-51"]["variants"] == ["msg-echo"]
    assert got.outcomes["DM-51"] == "PASS"
    got = runs["echo-strict"]
    assert got.code == 1
    outcomes = got.outcomes
    assert outcomes["MSG-51"] == outcomes["MSG-01"] == "FAIL"
    assert "msg-echo" in str(got.results["MSG-51"]["reason"])
    assert outcomes["DM-51"] == outcomes["LOG-52"] == "PASS"


def test_deadlock_is_one_verdict(runs: RunPool) -> None:
    """The hang is found once (a fresh connection is not answered): the rest is NOT-RUN."""
    got = runs["deadlock"]
    assert got.code == 1
    assert got.seconds < 20
    assert got.report["deadlock"]["where"] == "the probe"
    assert set(got.outcomes.values()) == {"NOT-RUN"}


def test_never_frees_a_name(runs: RunPool) -> None:
    got = runs["never_frees_name"]
    assert got.code == 1
    outcomes = got.outcomes
    for test_id in ("DIS-52", "DIS-53", "WHO-52", "ROB-59"):
        assert outcomes[test_id] == "FAIL", got.results[test_id]
    assert "not freed" in str(got.results["DIS-52"]["reason"])
    assert outcomes["DIS-51"] == outcomes["MSG-51"] == "PASS"


def test_blocking_writes_stall_everyone(runs: RunPool) -> None:
    got = runs["blocking_writes"]
    assert got.code == 1
    assert got.outcomes["ROB-51"] == "FAIL"
    assert "slow is not reading" in str(got.results["ROB-51"]["reason"])
    assert got.outcomes["ROB-58"] == got.outcomes["CON-52"] == "PASS"


def test_greedy_reader_delays_everyone_during_a_flood(runs: RunPool) -> None:
    """LOD-52: a read loop that drains one socket before anyone else makes PINGs wait."""
    got = runs["greedy_reader"]
    failed_only(got, "LOD-52")
    assert "during the flood" in str(got.results["LOD-52"]["reason"])


def test_no_backpressure_drops_a_reader_that_keeps_up(runs: RunPool) -> None:
    """LOD-51: output starved by input, no backpressure: the reader hits the output limit."""
    got = runs["no_backpressure"]
    failed_only(got, "LOD-51")
    reason = str(got.results["LOD-51"]["reason"])
    assert "a reader that keeps up, was disconnected" in reason
    assert "INFO slow-consumer" in reason


def test_a_never_reader_that_stalls_the_others_fails_lod53(runs: RunPool) -> None:
    """LOD-53, short form: blocking writes to the reader that stopped stall the one that reads."""
    got = runs["blocking_writes-load"]
    failed_only(got, "LOD-53")
    assert "stopped receiving" in str(got.results["LOD-53"]["reason"])


@pytest.mark.slow
def test_a_never_reader_that_is_never_cut_off_fails_lod53() -> None:
    """LOD-53: no output limit at all; it fails after the spec's 10 s soft limit (about 12 s)."""
    got = run_suite(UNBOUNDED)
    failed_only(got, "LOD-53")
    assert "was not cut off" in str(got.results["LOD-53"]["reason"])


def test_refused_connections_kept_open_fail_lod54(runs: RunPool) -> None:
    """LOD-54: refused with ERR server-full, but left open until the client gives up."""
    got = runs["keeps_refused_open"]
    failed_only(got, "LOD-54")
    assert "was left open" in str(got.results["LOD-54"]["reason"])


def test_no_idle_timeout_fails_lod55(runs: RunPool) -> None:
    """LOD-55: slowloris connections stay open forever; the other load tests pass."""
    got = runs["never_times_out"]
    failed_only(got, "LOD-55")
    assert "still open" in str(got.results["LOD-55"]["reason"])


def test_a_silent_drop_fails_rob52_under_strict_only(runs: RunPool) -> None:
    """ROB-52 (strict) wants INFO slow-consumer as the last line; LOD-53 accepts a bare close."""
    got = runs["drops_silently"]
    failed_only(got, "ROB-52")
    assert got.results["ROB-52"]["cause"].endswith("(INFO slow-consumer)")


@pytest.mark.parametrize("script", sorted(p.stem for p in HERE.glob("[a-z]*.py")))
def test_every_broken_server_says_what_it_breaks(script: str) -> None:
    text = (HERE / f"{script}.py").read_text("utf-8")
    assert text.startswith('"""Broken server: ')
    assert "Caught by" in text or "must report" in text
