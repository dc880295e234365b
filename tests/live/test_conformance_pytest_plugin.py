"""The pytest plugin: each conformance test a pytest item named by its ID; -k, -x, --junitxml."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

CORPUS = Path(__file__).parent / "third_party_like"


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = f"{sys.executable} {CORPUS / 'py_stalled_pipeline.py'} {{port}}"
    return subprocess.run(
        [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
            "-p", "chatproto.conformance.pytest_plugin", "--pyargs", "chatproto.conformance",
            "--chat-server-cmd", command, "--chat-profile", "core", *args,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip


def test_items_by_id_with_k_and_junitxml(tmp_path: Path) -> None:
    junit = tmp_path / "conformance.xml"
    proc = _pytest(tmp_path, "-k", "FRM or LOG-51", f"--junitxml={junit}", "-q")
    assert proc.returncode == 1, proc.stdout
    assert "lines after LOGIN in the same packet wait for more data" in proc.stdout
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert {"FRM-51", "FRM-52", "FRM-56", "LOG-51"} <= set(cases)
    assert not any(str(name).startswith(("MSG", "DIS")) for name in cases)
    assert cases["FRM-52"].find("failure") is not None
    assert cases["FRM-51"].find("failure") is None


def test_x_stops_at_the_first_failure(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, "-x", "-q")
    assert proc.returncode == 1
    assert "1 failed" in proc.stdout and "FRM-52" in proc.stdout
    assert "MSG-51" not in proc.stdout


def test_without_a_target_nothing_is_collected(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p",
         "chatproto.conformance.pytest_plugin", "--pyargs", "chatproto.conformance", "-q"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 5  # no tests collected: our own run is never affected
