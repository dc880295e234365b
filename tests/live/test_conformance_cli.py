"""The conformance tool itself: catalogue, CLI, exit codes, targets, reports and the matrix."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatproto.conformance import Expectations, catalogue, select
from chatproto.conformance._dialect import SPEC, Dialect, name_template, template_match
from chatproto.conformance.cli import build_parser, glue_command_lines, main
from chatproto.vectors import load_vectors
from tests import REPO

ROOT = REPO
BROKEN = ROOT / "tests" / "live" / "broken_servers"
NODE_SERVER = ROOT / "tests" / "live" / "node_server" / "server.js"


def test_catalogue_ids_are_unique_stable_and_sectioned() -> None:
    checks = catalogue()
    ids = [c.id for c in checks]
    assert len(ids) == len(set(ids))
    for c in checks:
        assert re.fullmatch(r"[A-Z]{2,3}-\d{2}", c.id), c.id
        assert re.fullmatch(r"[a-z0-9-]+", c.slug), c.slug
        assert re.fullmatch(r"\d+(\.\d+)?( \d+(\.\d+)?)*", c.section), (c.id, c.section)
        assert c.title and c.profiles


def test_every_vector_is_a_strict_test() -> None:
    strict = {c.id: c for c in select(catalogue(), ["strict"])}
    for vector in load_vectors():
        assert strict[vector.id].slug == vector.slug
        assert strict[vector.id].source == "vectors"


def test_profiles_cover_the_issue() -> None:
    core = {c.id for c in select(catalogue(), ["core"])}
    robust = {c.id for c in select(catalogue(), ["robust"])}
    assert {"FRM-52", "FRM-53", "FRM-54", "MSG-51", "DIS-51", "CON-51"} <= core
    assert {"ROB-51", "ROB-53", "ROB-54", "ROB-55", "ROB-57"} <= robust
    assert not core & {c.id for c in catalogue() if c.source == "vectors"}


def test_templates() -> None:
    assert name_template("* Bob has joined", "bob") == "* {name} has joined"
    assert template_match("* {name} has joined", "* carol has joined") == "carol"
    assert template_match("{name} -> {name}", "a -> a") == "a"
    assert template_match("{name} -> {name}", "a -> b") is None
    assert template_match("OK", "OK") == ""
    assert SPEC.variants() == {}
    assert set(Dialect(banner=("hi",), msg_echo=True).variants()) == {"banner", "msg-echo"}


def test_expectations_file() -> None:
    exp = Expectations.parse("# comment\nROB-5*  slow readers block us  # issue 7\n\nFRM-02 crlf\n")
    assert exp.reason_for("ROB-51") == "slow readers block us"
    assert exp.reason_for("frm-02") == "crlf"
    assert exp.reason_for("LOG-01") is None
    with pytest.raises(ValueError, match="needs a reason"):
        Expectations.parse("ROB-51\n")


def test_list_and_explain(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--profile", "core", "--variants"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"FRM-52 +pipelined-one-packet", out) and "msg-echo" in out
    assert main(["explain", "DIS-51", "--no-example"]) == 0
    out = capsys.readouterr().out
    assert "exactly one leave notice" in out and "§8.2" in out
    # A live example transcript, from our reference server.
    assert main(["explain", "MSG-51"]) == 0
    out = capsys.readouterr().out
    assert "example transcript" in out and "a> MSG hello everyone" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["run"],
        ["run", "tcp://127.0.0.1:1", "--backend", "threading"],
        ["run", "tcp://nohost"],
        ["run", "--backend", "gevent", "--anyio-backend", "trio"],
        ["explain", "NOPE-99"],
        ["run", "--backend", "threading", "--only", "NOPE-*"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "error:" in capsys.readouterr().err


def test_bad_expectations_file_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.expect"
    bad.write_text("ROB-51\n", "utf-8")
    assert main(["run", "--backend", "threading", "--expectations", str(bad)]) == 2


def test_unusable_targets_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket_closed_port() as port:
        assert main(["run", f"tcp://127.0.0.1:{port}", "-q"]) == 3
    code = "import sys; print('boom: no config', file=sys.stderr); sys.exit(4)"
    cmd = f'{sys.executable} -c "{code}"'
    report = tmp_path / "r.json"
    assert main(["run", "--server-cmd", cmd, "-q", "--json", str(report)]) == 3
    data = json.loads(report.read_text("utf-8"))
    assert "exited with code 4" in data["unusable"] and "boom: no config" in data["unusable"]
    assert "target unusable" in capsys.readouterr().out


class socket_closed_port:  # noqa: N801  (used as a context manager, like a function)
    """A port on 127.0.0.1 where nothing listens."""

    def __enter__(self) -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.fixture
def running_server() -> Iterator[int]:
    """Our selectors example server, started outside the suite (a tcp:// target)."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "selectors_server.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    port = int(line.rsplit(":", 1)[1])
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def test_remote_target_skips_what_needs_control(running_server: int, tmp_path: Path) -> None:
    report = tmp_path / "remote.json"
    code = main(
        [
            "run", f"tcp://127.0.0.1:{running_server}", "--profile", "strict",
            "--only", "IDL-51", "--only", "LIM-51", "--only", "SHD-51", "--only", "LOG-51",
            "--json", str(report), "-q",
        ]
    )  # fmt: skip
    assert code == 0
    results = {r["id"]: r for r in json.loads(report.read_text("utf-8"))["results"]}
    assert results["LOG-51"]["outcome"] == "PASS"
    for test_id in ("IDL-51", "LIM-51", "SHD-51"):
        assert results[test_id]["outcome"] == "SKIP"
    assert "--allow-slow" in results["IDL-51"]["reason"]
    assert "--server-cmd" in results["SHD-51"]["reason"]


def test_reports_matrix_and_xfail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    echo = f"{sys.executable} {BROKEN / 'echo_msg.py'} {{port}}"
    expect = tmp_path / "echo.expect"
    expect.write_text("MSG-51  echoes MSG to the sender, fixed in 2.0\n", "utf-8")
    paths = {k: tmp_path / f"echo.{k}" for k in ("json", "xml", "md")}
    code = main(
        [
            "run", "--server-cmd", echo, "--profile", "strict", "--only", "MSG-5[12]",
            "--only", "LOG-51", "--expectations", str(expect), "--name", "echo-server",
            "--json", str(paths["json"]), "--junit", str(paths["xml"]),
            "--markdown", str(paths["md"]),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1  # MSG-52 fails too; only MSG-51 is expected to
    data = json.loads(paths["json"].read_text("utf-8"))
    outcomes = {r["id"]: r["outcome"] for r in data["results"]}
    assert outcomes == {"LOG-51": "PASS", "MSG-51": "XFAIL", "MSG-52": "FAIL"}
    assert (
        "root causes" in out and "FAIL MSG-52" in out and "transcript" in out and "expected:" in out
    )
    suites = ET.parse(paths["xml"]).getroot()
    assert len(suites.findall(".//failure")) == 1
    assert len(suites.findall(".//skipped")) == 1
    md = paths["md"].read_text("utf-8")
    assert "| MSG-52 not-to-anonymous |" in md and "## FAIL MSG-52" in md

    good = tmp_path / "good.json"
    assert (
        main(
            [
                "run",
                "--backend",
                "threading",
                "--profile",
                "strict",
                "--only",
                "MSG-5*",
                "--only",
                "LOG-51",
                "--json",
                str(good),
                "-q",
            ]
        )
        == 0
    )
    html_path = tmp_path / "matrix.html"
    assert main(["matrix", str(good), str(paths["json"]), "-o", str(html_path)]) == 0
    page = html_path.read_text("utf-8")
    assert "echo-server" in page and "chatproto threading" in page
    assert 'class="o XFAIL"' in page and 'class="o FAIL"' in page and 'class="o PASS"' in page
    assert "<script" not in page
    assert main(["matrix", str(expect), "-o", str(html_path)]) == 2


def test_installed_command() -> None:
    exe = shutil.which("chatproto-conformance") or str(
        Path(sys.executable).with_name("chatproto-conformance")
    )
    done = subprocess.run([exe, "list"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0
    assert re.search(r"ROB-51 +slow-reader-does-not-stall", done.stdout)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_server_passes_core_with_its_dialect(tmp_path: Path) -> None:
    """The Node.js example server from docs/conformance.md: core passes, through named dialects."""
    report = tmp_path / "node.json"
    command = f"cd {NODE_SERVER.parent} && PORT={{port}} node server.js"
    assert (
        main(["run", "--server-cmd", command, "--profile", "core", "--json", str(report), "-q"])
        == 0
    )
    data = json.loads(report.read_text("utf-8"))
    variants = {v for r in data["results"] for v in r["variants"]}
    assert variants == {"banner"}  # core skips join notices in any wording
    assert data["dialect"]["banner"] == ["* Welcome to node-chat"]
    # Under strict, each difference is one failing test, not dozens.
    strict = tmp_path / "node-strict.json"
    assert (
        main(
            [
                "run",
                "--server-cmd",
                command,
                "--profile",
                "strict",
                "--only",
                "FRM-5*",
                "--only",
                "LOG-5*",
                "--only",
                "MSG-5*",
                "--json",
                str(strict),
                "-q",
            ]
        )
        == 1
    )
    failed = {
        r["id"] for r in json.loads(strict.read_text("utf-8"))["results"] if r["outcome"] == "FAIL"
    }
    assert failed == {"FRM-56", "LOG-52"}


def test_serve_args_may_start_with_a_dash() -> None:
    """Issue 13, defect 2: ``--serve-args '--uvloop'`` was refused ("expected one argument")."""
    argv = ["run", "--backend", "anyio", "--serve-args", "--uvloop", "--only", "PNG-*"]
    assert glue_command_lines(argv) == [
        "run",
        "--backend",
        "anyio",
        "--serve-args=--uvloop",
        "--only",
        "PNG-*",
    ]
    assert build_parser().parse_args(glue_command_lines(argv)).serve_args == "--uvloop"
    assert glue_command_lines(["run", "--server-cmd", "-x"]) == ["run", "--server-cmd=-x"]
    assert glue_command_lines(["run", "--", "--serve-args", "x"]) == [
        "run",
        "--",
        "--serve-args",
        "x",
    ]
    assert glue_command_lines(["run", "--serve-args"]) == ["run", "--serve-args"]


def test_serve_args_reach_the_server() -> None:
    """End to end, as the user typed it: the suite starts chatproto-serve with them."""
    pytest.importorskip("uvloop")
    run = ["run", "--backend", "anyio", "--only", "FRM-51", "-q"]
    assert main([*run, "--serve-args", "--uvloop"]) == 0
    # They do reach it: chatproto-serve refuses this pair, so the target is unusable.
    assert main([*run, "--serve-args", "--uvloop --anyio-backend trio"]) == 3
