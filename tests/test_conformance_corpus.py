"""The corpus of third-party-like servers gets the verdicts its table states, each fast.

tests/third_party_like/README.md holds the table: for each server, the core
verdict, the root causes the report must lead with, and the README Bonus
features it must report as not implemented. Each run must also finish in
under 20 s (issue 11: a verdict on any server, however broken, in seconds);
the bound is generous and only catches hangs and blind waits.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatproto.conformance._dialect import FEATURES
from chatproto.conformance.cli import main

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


def run_core(tmp_path: Path, row: Row) -> tuple[int, dict[str, object], float]:
    """Run core against ``row``'s server; the exit code, the JSON report, the seconds taken."""
    if row.command.startswith("node ") and shutil.which("node") is None:
        pytest.skip("node is not installed")
    command = row.command.replace("python3 ", f"{sys.executable} ", 1)
    report = tmp_path / "report.json"
    began = time.monotonic()
    code = main(["run", "--server-cmd", command, "--cwd", str(CORPUS), "--json", str(report), "-q"])
    took = time.monotonic() - began
    return code, json.loads(report.read_text("utf-8")), took


def test_the_table_covers_the_issue() -> None:
    rows = table()
    assert len(rows) >= 10
    assert {r.server.rsplit(".", 1)[1] for r in rows} == {"js", "py"}
    files = {p.name for p in CORPUS.iterdir() if p.suffix in (".js", ".py")}
    assert files == {r.server for r in rows}
    assert sum(r.verdict == "CONFORMANT" for r in rows) >= 6
    assert sum(r.verdict != "CONFORMANT" for r in rows) >= 6


@pytest.mark.parametrize("row", table(), ids=lambda r: r.server)
def test_core_verdict(row: Row, tmp_path: Path) -> None:
    code, data, took = run_core(tmp_path, row)
    results = data["results"]
    assert isinstance(results, list)
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
    assert took < CORE_LIMIT, f"{row.server}: core took {took:.1f} s"
