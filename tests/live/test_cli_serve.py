"""``chatproto-serve``'s conventions: environment, help, logs, addresses, signals, versions.

The parts (``chatproto.cli._env``, ``_logging``, ``_shutdown``) are tested in
process; what the operator sees is tested on real server processes on
127.0.0.1, port 0, every backend where the behaviour depends on it.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from chatproto.cli._env import apply_environment, env_name
from chatproto.cli._logging import JsonFormatter, configure_logging
from chatproto.cli._shutdown import ShutdownSignals
from chatproto.cli.serve import build_parser, format_address
from tests import REPO

from .live_server import DEADLINE, Client, running_server


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m chatproto ARGS`` to completion (for commands that exit by themselves)."""
    return subprocess.run(
        [sys.executable, "-m", "chatproto", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=dict(os.environ, **(env or {})),
    )


@pytest.fixture
def clean_env() -> Iterator[dict[str, str]]:
    """The test's environment without any CHATPROTO_* variable of the caller's."""
    yield {k: v for k, v in os.environ.items() if not k.startswith("CHATPROTO_")}


# ------------------------------------------------------------- --version


COMMANDS = {
    "chatproto-serve": "chatproto.cli.serve",
    "chatproto-conformance": "chatproto.conformance.cli",
    "chatproto-chat": "chatproto.cli.chat",
    "chatproto-bench": "chatproto.bench.cli",
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_prints_the_package_version(command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", COMMANDS[command], "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:2] == [command, version("chatproto")]


def test_version_falls_back_when_chatproto_is_not_installed(tmp_path: Path) -> None:
    """A copy of the source without installed metadata still has a version."""
    source = REPO / "chatproto"
    shutil.copytree(source, tmp_path / "chatproto", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        # -S: no site-packages, so no installed chatproto and no metadata for it.
        [sys.executable, "-S", "-c", "import chatproto; print(chatproto.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
    )
    assert done.stdout.strip() == "0+unknown"


# ------------------------------------------------------------------ help


def test_help_gives_every_option_its_default_and_variable() -> None:
    parser = build_parser()
    apply_environment(parser, {})
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "version"):
            continue
        assert action.help is not None
        assert "default" in action.help, f"{action.option_strings[0]}: {action.help}"
        assert f"[env {env_name(action)}]" in action.help
    text = parser.format_help()
    assert "CHATPROTO_MAX_CLIENTS" in text
    assert "docs/operations.md" in text


# ------------------------------------------------- environment variables


def _toy_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toy")
    p.add_argument("--max-clients", type=int, default=10, help="n")
    p.add_argument("--mode", choices=("a", "b"), default="a", help="m")
    p.add_argument("--fast", action=argparse.BooleanOptionalAction, default=False, help="f")
    p.add_argument("--quiet", action="store_true", help="q")
    p.add_argument("--no-colour", dest="colour", action="store_false", help="c")
    return p


def test_variables_become_defaults_and_flags_win() -> None:
    environ = {
        "CHATPROTO_MAX_CLIENTS": "5",
        "CHATPROTO_MODE": "b",
        "CHATPROTO_FAST": "yes",
        "CHATPROTO_QUIET": "1",
        "CHATPROTO_NO_COLOUR": "true",
        "OTHER": "ignored",
    }
    p = _toy_parser()
    taken = apply_environment(p, environ)
    assert taken == {"max_clients": 5, "mode": "b", "fast": True, "quiet": True, "colour": False}
    args = p.parse_args([])
    assert (args.max_clients, args.mode, args.fast, args.quiet, args.colour) == (
        5,
        "b",
        True,
        True,
        False,
    )
    p = _toy_parser()
    apply_environment(p, environ)
    args = p.parse_args(["--max-clients", "7", "--mode", "a", "--no-fast"])
    assert (args.max_clients, args.mode, args.fast) == (7, "a", False)


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("CHATPROTO_MAX_CLIENTS", "many", "not a whole number"),
        ("CHATPROTO_MODE", "c", "invalid choice 'c'"),
        ("CHATPROTO_FAST", "maybe", "expected one of 1, true"),
    ],
)
def test_a_bad_variable_is_a_usage_error_naming_it(
    variable: str, value: str, complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        apply_environment(_toy_parser(), {variable: value})
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"environment variable {variable}={value!r}: {complaint}" in err


def test_server_takes_its_settings_from_the_environment(clean_env: dict[str, str]) -> None:
    env = dict(
        clean_env,
        CHATPROTO_BACKEND="threading",
        CHATPROTO_LOG_FORMAT="JSON",
        CHATPROTO_LOG_LEVEL="Debug",
        CHATPROTO_PORT="1",  # the --port 0 flag wins; port 1 would need root
    )
    with running_server([], env=env) as server:
        assert "(backend threading)" in server.banner
        Client(server.port).login("ann").sync()
        server.wait_logged('"event": "login"')
        code, err = server.stop()
    assert code == 0, err
    records = [json.loads(line) for line in err.splitlines()]
    assert any(r["level"] == "debug" for r in records)  # CHATPROTO_LOG_LEVEL=Debug
    login = next(r for r in records if r.get("event") == "login")
    assert login["logger"] == "chatproto.serve"
    assert login["user"] == "ann"
    assert isinstance(login["conn"], int)


def test_a_bad_variable_stops_the_server_before_it_listens(clean_env: dict[str, str]) -> None:
    done = serve("--port", "0", env=dict(clean_env, CHATPROTO_IDLE_TIMEOUT="-3"))
    assert done.returncode == 2
    assert "idle_timeout must be positive, got -3.0 (from CHATPROTO_IDLE_TIMEOUT)" in done.stderr
    assert "listening" not in done.stdout


def test_positional_port_beats_the_environment(clean_env: dict[str, str]) -> None:
    # CHATPROTO_PORT is a default like any other: PORT on the command line wins,
    # and is no conflict (it would be with --port).
    done = serve("--host", "256.0.0.1", "7", env=dict(clean_env, CHATPROTO_PORT="9"))
    assert done.returncode == 1
    assert "cannot listen on 256.0.0.1:7" in done.stderr
    done = serve("--port", "8", "7", env=clean_env)
    assert done.returncode == 2
    assert "give the port once" in done.stderr


# ------------------------------------------------------------------ logs


def _record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("chatproto.serve", logging.INFO, __file__, 1, message, args, None)


def test_json_log_lines_carry_the_message_fields() -> None:
    line = JsonFormatter().format(
        _record("disconnect conn=%d peer=%s user=%s reason=%s", 3, "[::1]:5", "ann", "quit")
    )
    record = json.loads(line)
    assert record["time"].endswith("Z")
    assert {k: record[k] for k in ("level", "logger", "event", "conn", "peer", "user")} == {
        "level": "info",
        "logger": "chatproto.serve",
        "event": "disconnect",
        "conn": 3,
        "peer": "[::1]:5",
        "user": "ann",
    }
    assert record["reason"] == "quit"
    # A message of another shape stays whole, and never overwrites the record's fields.
    plain = json.loads(JsonFormatter().format(_record("shutting down on SIGINT: closing 2")))
    assert "event" not in plain
    assert plain["message"] == "shutting down on SIGINT: closing 2"
    forged = json.loads(JsonFormatter().format(_record("login level=evil")))
    assert forged["level"] == "info"


def test_text_log_lines_name_their_logger() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("WARNING", "text", stream)
        logging.getLogger("chatproto.serve").info("hidden")
        logging.getLogger("chatproto.serve").warning("shown x=1")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    (line,) = stream.getvalue().splitlines()
    assert line.endswith(" WARNING chatproto.serve: shown x=1")


@pytest.mark.parametrize("level", ["DEBUG", "Info", "warning"])
def test_log_level_is_case_insensitive(level: str) -> None:
    args = build_parser().parse_args(["--log-level", level, "--log-format", "JSON"])
    assert (args.log_level, args.log_format) == (level.lower(), "json")


# ------------------------------------------------------------- addresses


def test_ipv6_addresses_are_bracketed() -> None:
    assert format_address("::", 4000) == "[::]:4000"
    assert format_address("::1", 5) == "[::1]:5"
    assert format_address("0.0.0.0", 4000) == "0.0.0.0:4000"


def test_server_on_ipv6_prints_a_bracketed_address() -> None:
    if not socket.has_ipv6:
        pytest.skip("this Python has no IPv6")
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with running_server(["--backend", "threading", "--host", "::1"]) as server:
        assert "listening on [::1]:" in server.banner
        with socket.create_connection(("::1", server.port), timeout=DEADLINE) as sock:
            sock.sendall(b"PING six\n")
            assert sock.recv(64) == b"PONG six\n"
        assert server.stop()[0] == 0


# ------------------------------------------------------------- defect 3


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--uvloop", "--anyio-backend", "trio"], {}),
        (["--anyio-backend", "trio"], {"CHATPROTO_UVLOOP": "1"}),
    ],
)
def test_uvloop_with_trio_is_refused(
    args: list[str], env: dict[str, str], clean_env: dict[str, str]
) -> None:
    done = serve("--port", "0", *args, env=dict(clean_env, **env))
    assert done.returncode == 2
    assert "--uvloop applies to --anyio-backend asyncio only, not to trio" in done.stderr
    assert "listening" not in done.stdout


# --------------------------------------------------------------- shutdown


def test_shutdown_signals_announce_then_force(caplog: pytest.LogCaptureFixture) -> None:
    exits: list[int] = []
    open_now = [2]
    signals = ShutdownSignals(lambda: open_now[0], force_exit=exits.append)
    with caplog.at_level(logging.INFO, logger="chatproto.serve"):
        signals.signalled(signal.SIGTERM)  # the adapter's handler starts the shutdown
        signals.announce(2)  # ... and reports it
        signals.signalled(signal.SIGTERM)  # a supervisor repeating itself: still graceful
        assert exits == []
        open_now[0] = 1
        signals.signalled(signal.SIGINT)
    assert exits == [130]
    assert signals.received == [signal.SIGTERM, signal.SIGTERM, signal.SIGINT]
    assert [r.getMessage() for r in caplog.records] == [
        "shutting down on SIGTERM: closing 2 connections (Ctrl-C exits at once)",
        "already shutting down: 2 connections left",
        "second SIGINT: exiting now, dropping 1 connection",
    ]


def test_a_shutdown_without_a_signal_is_announced_too(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="chatproto.serve"):
        ShutdownSignals(lambda: 0).announce(1)
    assert caplog.records[0].getMessage() == (
        "shutting down: closing 1 connection (Ctrl-C exits at once)"
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_shutdown_says_how_many_connections_it_closes(
    flavour: list[str], signum: signal.Signals
) -> None:
    with running_server(flavour) as server:
        clients = [Client(server.port).login(name) for name in ("ann", "bob")]
        clients.append(Client(server.port))  # connected, never logged in
        clients[2].sync()
        server.signal(signum)
        for c in clients:
            assert "INFO server-shutdown" in c.wait_eof()
            c.close()
        code, err = server.stop()
    assert code == 0, err
    lines = [line for line in err.splitlines() if "shutting down" in line]
    assert len(lines) == 1, err
    assert f"shutting down on {signum.name}: closing 3 connections" in lines[0]
    assert err.index("shutting down") < err.index("reason=server-shutdown")


def test_a_second_ctrl_c_exits_at_once(flavour: list[str]) -> None:
    # A client that neither reads nor closes holds a graceful shutdown for the
    # whole close timeout (a minute here); the second Ctrl-C does not wait.
    with running_server([*flavour, "--close-timeout", "60"]) as server:
        stuck = Client(server.port).login("stuck")
        stuck.sync()
        server.proc.send_signal(signal.SIGINT)
        server.wait_logged("shutting down on SIGINT: closing 1 connection ")
        server.proc.send_signal(signal.SIGINT)
        code = server.proc.wait(DEADLINE)
        err = server.stderr()
        stuck.close()
    assert code == 130, err
    assert "second SIGINT: exiting now, dropping 1 connection" in err


def test_operations_page_documents_every_variable() -> None:
    page = (REPO / "docs" / "operations.md").read_text()
    for action in build_parser()._actions:
        name = env_name(action)
        if name is not None:
            assert f"`{name}`" in page, f"docs/operations.md does not document {name}"
