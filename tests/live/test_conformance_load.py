"""The load profile's parts: catalogue, flood control per profile, instruments, measurements.

The profile itself runs against every flavour and the example in
test_conformance_backends.py, and against a mutant per test in
test_conformance_broken.py; this module checks the pieces those runs rely
on, without a server.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

import chatproto
from chatproto.conformance import catalogue, select
from chatproto.conformance._backend_target import FLOOD_OFF_BACKEND, backend_target
from chatproto.conformance._command_target import CommandTarget
from chatproto.conformance._flood import READER_SCRIPT, flood_lines
from chatproto.conformance._load_reader import Connection, Reader, Witness
from chatproto.conformance._outcome import Outcome, Result
from chatproto.conformance._report_text import TextReporter
from chatproto.conformance._target import FLOOD_CONTROL, flood_control_for
from chatproto.conformance.cli import build_parser, glue_command_lines, make_target


def test_the_load_profile_has_one_test_per_threat() -> None:
    load = {c.id: c for c in select(catalogue(), ["load"])}
    assert sorted(load) == ["LOD-51", "LOD-52", "LOD-53", "LOD-54", "LOD-55"]
    unthrottled = {i for i, c in load.items() if "unthrottled" in c.needs}
    assert unthrottled == {"LOD-51", "LOD-52", "LOD-53"}
    assert "crowd" in load["LOD-54"].needs and "idle" in load["LOD-55"].needs
    # The line a dropped slow consumer is told is strict's: ROB-52 checks it.
    strict = {c.id for c in select(catalogue(), ["strict"])}
    assert "ROB-52" in strict and not strict & set(load)


def test_flood_control_is_decided_per_profile() -> None:
    assert FLOOD_CONTROL == {"core": False, "strict": False, "robust": False, "load": True}
    assert flood_control_for(["load"]) is True
    assert flood_control_for(["strict", "load"]) is False
    load = backend_target("threading", profiles=["load"])
    assert FLOOD_OFF_BACKEND not in load.rendered()
    unthrottled = load.variant(flood_control=False)
    assert isinstance(unthrottled, CommandTarget) and unthrottled.unthrottled
    assert unthrottled.rendered().endswith(FLOOD_OFF_BACKEND)
    # Other variants keep the setting they were made from.
    idle = load.variant(idle_timeout=1.0)
    assert isinstance(idle, CommandTarget) and FLOOD_OFF_BACKEND not in idle.rendered()
    strict = backend_target("gevent", profiles=["strict", "robust"], extra="--flood-rate 7")
    assert strict.rendered().endswith(f"--flood-rate 7 {FLOOD_OFF_BACKEND}")
    # A --server-cmd without --flood-off cannot be unthrottled: tested as it is.
    assert CommandTarget("server {port}").variant(flood_control=False) is None


def test_flood_off_for_a_server_command() -> None:
    args = build_parser().parse_args(
        glue_command_lines(
            ["run", "--server-cmd", "srv {port}", "--flood-off", "--rate 0", "--profile", "robust"]
        )
    )
    target = make_target(args)
    assert isinstance(target, CommandTarget)
    assert target.rendered().endswith("srv 0 --rate 0")
    args = build_parser().parse_args(
        ["run", "--server-cmd", "srv {port}", "--flood-off=--rate 0", "--profile", "load"]
    )
    target = make_target(args)
    assert isinstance(target, CommandTarget) and target.rendered() == "srv 0"


def test_flood_lines_are_numbered_and_exactly_sized() -> None:
    data = flood_lines("mk", 3, 100, start=7)
    lines = data.split(b"\n")[:-1]
    assert [len(line) + 1 for line in lines] == [100, 100, 100]
    assert [line[:13] for line in lines] == [b"MSG mk000007 ", b"MSG mk000008 ", b"MSG mk000009 "]
    with pytest.raises(ValueError, match="cannot hold"):
        flood_lines("a-long-marker", 1, 20)


def test_the_reader_counts_flood_lines_and_finds_the_first_gap() -> None:
    witness = Witness(b"mk", ordered=True, started=0.0)
    conn = Connection(None, Reader("r"))  # type: ignore[arg-type]  # no socket needed
    witness.take(conn, b"INFO s joined\nMSG s mk000000 f\nMSG s mk0000")
    witness.take(conn, b"01 f\r\nMSG s mk000003 f\nINFO slow-consumer\n")
    reader = conn.reader
    assert reader.count == 3
    assert reader.gap == "line #2 expected, got '000003'"
    assert reader.others == ["INFO s joined", "INFO slow-consumer"]
    assert reader.last == "INFO slow-consumer"


def test_the_reader_ships_in_the_package_and_needs_only_the_standard_library() -> None:
    assert READER_SCRIPT.parent == Path(chatproto.__file__).parent / "conformance"
    # -I -S: no site-packages, no script directory on the path: chatproto is
    # not importable, so the reader must not need it.
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(READER_SCRIPT), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--marker" in proc.stdout


def test_measurements_are_in_every_report() -> None:
    result = Result(
        "LOD-52", "ping-during-flood", "16.4", "LOD", "t", Outcome.PASS,
        measurements={"ping_rtt_max_s": 0.0123, "ping_rtt_median_s": 0.001},
    )  # fmt: skip
    assert Result.from_json(result.to_json()).measurements == result.measurements
    out = io.StringIO()
    TextReporter(out, colour=False).result(result)
    assert "[ping_rtt_max_s=0.0123 ping_rtt_median_s=0.001]" in out.getvalue()
