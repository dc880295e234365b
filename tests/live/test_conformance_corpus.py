"""The corpus of third-party-like servers gets the verdicts its table states, each fast.

tests/live/third_party_like/README.md holds the table: for each server, the core
verdict, the root causes the report must lead with, and the README Bonus
features it must report as not implemented. Each run must also finish in
under 20 s (issue 11: a verdict on any server, however broken, in seconds);
the bound is generous and only catches hangs and blind waits.

Issue 11's items 1 to 5 are each about one of these servers under core: they
are checked here on the same runs (one run per server, many assertions). The
runs start together, four at a time (tests/suite_runs.py): they mostly wait.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatproto.conformance._dialect import FEATURES

from .suite_runs import RunPool, SuiteRun

CORPUS = Path(__file__).parent / "third_party_like"
#: Issue 11: core against any server in under 20 s.
CORE_LIMIT = 20.0


@dataclass(frozen=True)
class Row:
    server: str
    command: str
    verdict: str
    causes: frozenset[str]
    missing: frozenset[str]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def table() -> list[Row]:
    """The rows of the README's table."""
    rows = []
    for line in (CORPUS / "README.md").read_text("utf-8").splitlines():
        if not line.startswith("| ") or line.startswith("| server"):
            continue
        server, command, _what, verdict, causes, missing = _cells(line)
        rows.append(
            Row(
                server,
                command.strip("`"),
                verdict,
                frozenset() if causes == "-" else frozenset(c.strip() for c in causes.split(";")),
                frozenset() if missing == "-" else frozenset(missing.split()),
            )
        )
    return rows


ROWS = {row.server: row for row in table()}


def _runnable(row: Row) -> bool:
    return not row.command.startswith("node ") or shutil.which("node") is not None


@pytest.fixture(scope="module")
def runs() -> Iterator[RunPool]:
    """Core against every server of the table, as ``chatproto-conformance run`` does it."""
    wanted = {
        row.server: [
            "run",
            "--server-cmd",
            row.command.replace("python3 ", f"{sys.executable} ", 1),
            "--cwd",
            str(CORPUS),
        ]
        for row in ROWS.values()
        if _runnable(row)
    }
    pool = RunPool(wanted, workers=4, cwd=CORPUS)
    yield pool
    pool.close()


def core_run(runs: RunPool, server: str) -> SuiteRun:
    """The core run against ``server`` (skipped where node is missing)."""
    if not _runnable(ROWS[server]):
        pytest.skip("node is not installed")
    return runs[server]


def test_the_table_covers_the_issue() -> None:
    rows = table()
    assert len(rows) >= 10
    assert {r.server.rsplit(".", 1)[1] for r in rows} == {"js", "py"}
    files = {p.name for p in CORPUS.iterdir() if p.suffix in (".js", ".py")}
    assert files == {r.server for r in rows}
    assert sum(r.verdict == "CONFORMANT" for r in rows) >= 6
    assert sum(r.verdict != "CONFORMANT" for r in rows) >= 6


@pytest.mark.parametrize("row", table(), ids=lambda r: r.server)
def test_core_verdict(row: Row, runs: RunPool) -> None:
    got = core_run(runs, row.server)
    code, data = got.code, got.report
    results = data["results"]
    deadlock = data["deadlock"]
    bad = {r["cause"] for r in results if r["outcome"] in ("FAIL", "ERROR")}
    missing = {
        feature
        for r in results
        if r["outcome"] == "NOT-IMPLEMENTED"
        for feature, words in FEATURES.items()
        if words in r["reason"]
    }
    summary = [
        (r["id"], r["outcome"], r["reason"][:100]) for r in results if r["outcome"] != "PASS"
    ]
    if row.verdict == "CONFORMANT":
        assert code == 0, summary
        assert not bad and deadlock is None
    elif row.verdict.startswith("DEADLOCK in "):
        assert code == 1
        assert isinstance(deadlock, dict), summary
        assert deadlock["where"] == row.verdict[len("DEADLOCK in ") :]
        (step,) = row.causes
        assert step in deadlock["reason"]
        assert deadlock["transcript"], "the deadlock comes with the transcript that caused it"
        assert {r["outcome"] for r in results} <= {"NOT-RUN"}
    else:
        assert code == 1, summary
        assert bad == row.causes, summary
        assert deadlock is None
    assert missing == row.missing
    assert got.seconds < CORE_LIMIT, f"{row.server}: core took {got.seconds:.1f} s"


# Issue 11, "What was measured", items 1 to 5: each about one server of the table.


def test_item1_bare_ping_and_join_notice_wording(runs: RunPool) -> None:
    """1. PING takes no argument, the join notice has extra words: learned, all pass."""
    got = core_run(runs, "node_joined_chat.js")
    assert got.code == 0
    dialect = got.report["dialect"]
    assert dialect["join_notice"] == "INFO {name} joined the chat"
    assert dialect["has_ping"] is True and dialect["pong_token"] is False
    assert not [p for p in dialect["problems"] if "stopped answering" in p]


def test_item2_timestamps_and_bare_pong(runs: RunPool) -> None:
    """2. INFO lines with a timestamp and a bare PONG: recognised as dialect, conformant."""
    got = core_run(runs, "node_timestamps.js")
    assert got.code == 0
    dialect = got.report["dialect"]
    assert dialect["timestamps"] is True
    assert dialect["leave_notice"] == "INFO {name} disconnected"
    assert got.outcomes["DIS-51"] == "LENIENT"


def test_item3_one_real_defect_one_failure(runs: RunPool) -> None:
    """3. Lines stuck after LOGIN: FRM-52 fails and names it; FRM-56, ERR-52 do not fail."""
    got = core_run(runs, "py_stalled_pipeline.py")
    assert got.code == 1
    outcomes = got.outcomes
    assert [i for i, o in outcomes.items() if o == "FAIL"] == ["FRM-52"]
    assert "LOG-52" not in outcomes  # no join notice is asked for in core
    assert "lines after LOGIN in the same packet wait for more data" in got.text
    # ERR-52 in core never sends an empty MSG: the README leaves it open.
    assert outcomes["ERR-52"] == "PASS" and outcomes["FRM-56"] == "PASS"


def test_item4_core_features_only(runs: RunPool) -> None:
    """4. No PING, WHO or DM: testable (message barriers), Bonus tests NOT-IMPLEMENTED."""
    got = core_run(runs, "node_core_only.js")
    assert got.code == 0
    for test_id in ("PNG-51", "PNG-52", "PNG-53", "WHO-51", "WHO-52", "DM-51"):
        assert got.outcomes[test_id] == "NOT-IMPLEMENTED", test_id
    for test_id in ("FRM-52", "MSG-51", "DIS-51", "CON-51"):
        assert got.outcomes[test_id] == "PASS", test_id


def test_item5_what_the_readme_leaves_open_never_fails(runs: RunPool) -> None:
    """5. No banner, no join notice, silent on a DM to nobody: conformant."""
    got = core_run(runs, "py_no_join_notice.py")
    assert got.code == 0
    outcomes = got.outcomes
    assert "DM-52" not in outcomes and "DM-53" not in outcomes and "LOG-52" not in outcomes
    assert outcomes["IDL-54"] == "PASS"
