"""The runnable examples, run: each example server and the bot as a subprocess over loopback.

Every server binds 127.0.0.1 port 0 and prints the port; every wait is on a
condition with a deadline (a ``PING``/``PONG`` round trip is the barrier that
proves earlier lines were processed); every process is stopped by the test.

The helpers (:class:`Proc`, :class:`LineClient`, :func:`start_server`) are in
tests/live/programs.py, shared with the chat client's and the bridge's tests.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import REPO

from .programs import DEADLINE, EXAMPLES, LineClient, program_env, running, start_server

EXAMPLE_SERVERS = ["selectors", "asyncio", "asyncio-uvloop"]


@pytest.mark.parametrize("kind", EXAMPLE_SERVERS)
def test_example_server_chat_and_graceful_shutdown(kind: str) -> None:
    with start_server(kind) as (server, port), LineClient(port) as alice, LineClient(port) as bob:
        alice.send("PING before-login")
        assert alice.expect("PONG before-login") == ["PONG before-login"]
        alice.login("alice")
        bob.login("Bob")
        assert alice.expect("INFO Bob joined") == ["INFO Bob joined"]

        alice.send("MSG hello  there")
        assert bob.expect("MSG alice hello  there") == ["MSG alice hello  there"]
        bob.send("DM ALICE hi", "WHO", "PING 7")
        assert bob.expect("PONG 7") == ["OK", "USER alice", "USER Bob", "PONG 7"]
        assert alice.sync() == ["DM Bob hi"]

        server.send_sigint()
        # §12.5: the notice, then each other user leaving, then the close.
        assert alice.read_to_eof() == ["INFO server-shutdown", "INFO Bob disconnected"]
        assert bob.read_to_eof() == ["INFO server-shutdown", "INFO alice disconnected"]
        alice.close()
        bob.close()
        assert server.exit_status() == 0


@pytest.mark.parametrize("kind", EXAMPLE_SERVERS)
def test_example_server_half_close_quit_and_leave(kind: str) -> None:
    with start_server(kind) as (server, port), LineClient(port) as alice:
        alice.login("alice")
        with LineClient(port) as carol:
            carol.login("carol")
            carol.send("MSG bye", "PING last")
            carol.sock.shutdown(socket.SHUT_WR)  # half-close: replies still come
            assert carol.read_to_eof() == ["PONG last"]
        assert alice.expect("INFO carol disconnected") == [
            "INFO carol joined",
            "MSG carol bye",
            "INFO carol disconnected",
        ]
        with LineClient(port) as dave:
            dave.send("QUIT", "PING never")  # nothing after QUIT is executed
            assert dave.read_to_eof() == ["OK"]
        alice.close()
        assert server.interrupt() == 0


@pytest.mark.parametrize("kind", EXAMPLE_SERVERS)
def test_example_server_idle_timeout(kind: str) -> None:
    with start_server(kind, "--idle-timeout", "0.3") as (server, port):
        with LineClient(port) as idle:
            # The server's timer, not any input, ends this connection.
            assert idle.read_to_eof() == ["INFO idle-timeout"]
        assert server.interrupt() == 0


@pytest.mark.parametrize("kind", ["asyncio", "asyncio-uvloop"])
def test_asyncio_example_drops_a_slow_consumer(kind: str) -> None:
    # A reader with a tiny receive buffer that never reads: once the kernel
    # buffers and the transport's buffer are full, the transport pauses
    # writing, output piles up in the core, and the core's cap drops it.
    cap = 64 * 1024
    args = ("--max-outbound-bytes", str(cap), "--flood-rate", "0")
    with (
        start_server(kind, *args) as (server, port),
        LineClient(port) as talker,
        LineClient(port, rcvbuf=4096) as sleeper,
    ):
        sleeper.login("sleeper")
        talker.login("talker")
        text = "x" * 4000
        deadline = time.monotonic() + DEADLINE
        dropped = False
        while not dropped:
            assert time.monotonic() < deadline, "the slow consumer was never dropped"
            talker.send(*[f"MSG {text}"] * 64)
            dropped = "INFO sleeper disconnected" in talker.sync()
        # The others are not held back: the room still works.
        talker.send("WHO")
        assert talker.sync() == ["USER talker"]
        talker.close()
        sleeper.close()  # else the server waits close_timeout for its FIN
        assert server.interrupt() == 0


# ---------------------------------------------------------------------- bot


@pytest.mark.parametrize("kind", ["selectors", "chatproto-serve"])
def test_bot_answers_time_and_users(kind: str) -> None:
    with start_server(kind) as (server, port):
        with running([sys.executable, str(EXAMPLES / "bot.py"), "127.0.0.1", str(port)]) as bot:
            bot.wait_for(r"bot logged in as bot on ")
            with LineClient(port) as alice:
                alice.login("alice")
                alice.send("MSG !time")
                assert re.fullmatch(
                    r"MSG bot alice: the time is \d{4}-\d\d-\d\d \d\d:\d\d:\d\d.*",
                    alice.expect(lambda line: line.startswith("MSG bot"))[-1],
                )
                alice.send("MSG !users")
                assert alice.expect(lambda line: line.startswith("MSG bot")) == [
                    "MSG bot users (2): bot, alice"
                ]
                alice.send("DM bot !users")
                assert alice.expect(lambda line: line.startswith("DM bot")) == [
                    "OK",
                    "DM bot users (2): bot, alice",
                ]
                alice.send("DM bot !TIME")
                assert alice.expect(lambda line: line.startswith("DM bot"))[-1].startswith(
                    "DM bot the time is "
                )
                alice.send("MSG hello bot")  # not a command: no answer
                alice.sync("quiet")
                assert bot.interrupt() == 0
                assert alice.expect("INFO bot disconnected") == ["INFO bot disconnected"]
        assert server.interrupt() == 0


def test_bot_leaves_when_the_server_shuts_down() -> None:
    with (
        start_server("asyncio") as (server, port),
        running([sys.executable, str(EXAMPLES / "bot.py"), "127.0.0.1", str(port)]) as bot,
    ):
        bot.wait_for(r"bot logged in as bot")
        assert server.interrupt() == 0
        bot.wait_for("the server closed the connection")
        assert bot.exit_status() == 0


def test_bot_reports_a_refused_login() -> None:
    with start_server("selectors") as (server, port):
        with LineClient(port) as squatter:
            squatter.login("bot")
            bot_py = [sys.executable, str(EXAMPLES / "bot.py"), "127.0.0.1", str(port)]
            with running(bot_py) as bot:
                bot.wait_for("login refused: username-taken")
                assert bot.exit_status() == 1
        assert server.interrupt() == 0


#: Every runnable script a reader may ask for --help.
SCRIPTS = [
    *sorted(p.relative_to(REPO) for p in EXAMPLES.glob("*.py")),
    Path("examples/websocket_bridge/bridge.py"),
    *sorted(p.relative_to(REPO) for p in (REPO / "benchmarks").glob("*.py")),
]
#: reStructuredText roles and literals: the docstrings' markup, not help text.
_MARKUP = re.compile(r"``|:(?:class|meth|mod|func|data|attr):|`[^`]+`_?")


@pytest.mark.parametrize("script", SCRIPTS, ids=str)
def test_help_is_plain_text(script: Path) -> None:
    """Defect 6 of issue 13: ``examples/bot.py --help`` showed raw reST markup."""
    done = subprocess.run(
        [sys.executable, str(REPO / script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=program_env(),
    )
    if done.returncode != 0 and "ModuleNotFoundError" in done.stderr:
        pytest.skip(f"{script} needs an extra that is not installed")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")
    assert not _MARKUP.search(done.stdout), done.stdout
