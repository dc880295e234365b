"""chatproto-chat: its logic without a terminal, then the real program end to end.

The logic tests feed :func:`parse_input`, :func:`format_event` and
:class:`ChatClient` directly, with made-up times. The end-to-end tests run
``chatproto-chat`` as a subprocess against real servers on loopback: with
stdin piped (plain mode), and once under a pseudo-terminal, where it runs
prompt_toolkit.
"""

from __future__ import annotations

import os
import pty
import re
import select
import socket
import subprocess
import sys
import time

import pytest

from chatproto import (
    ClientEvent,
    DirectReceived,
    Error,
    IdleTimeout,
    Info,
    MessageReceived,
    Ok,
    Pong,
    ServerShutdown,
    SlowConsumer,
    UnknownLine,
    User,
    UserDisconnected,
    UserJoined,
    UserList,
)
from chatproto.cli.chat import (
    AskPing,
    AskWho,
    BadInput,
    ChatClient,
    InputAction,
    Leave,
    LoginAs,
    SendDm,
    SendRaw,
    SendText,
    ShowHelp,
    format_event,
    parse_input,
    sanitize,
)
from tests import REPO

from .programs import DEADLINE, LineClient, Proc, program_env, running, start_server

WALL = 1_700_000_000.0
STAMP = time.strftime("%H:%M:%S", time.localtime(WALL))

# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    ("typed", "action"),
    [
        ("hello", SendText("hello")),
        ("  spaced  out ", SendText("  spaced  out ")),
        ("//slash", SendText("/slash")),
        ("/dm bob hi there", SendDm("bob", "hi there")),
        ("/DM bob  two", SendDm("bob", " two")),
        ("/msg bob hi", SendDm("bob", "hi")),
        ("/dm bob", BadInput("usage: /dm NAME TEXT")),
        ("/dm", BadInput("usage: /dm NAME TEXT")),
        ("/who", AskWho()),
        ("/ping", AskPing()),
        ("/quit", Leave()),
        ("/exit", Leave()),
        ("/help", ShowHelp()),
        ("/login carol", LoginAs("carol")),
        ("/login", BadInput("usage: /login NAME")),
        ("/raw PING  odd", SendRaw("PING  odd")),
        ("/raw", BadInput("usage: /raw LINE")),
        ("/dance", BadInput("unknown command /dance; /help lists the commands")),
        ("", None),
        ("   ", None),
    ],
)
def test_parse_input(typed: str, action: InputAction | None) -> None:
    assert parse_input(typed) == action


# --------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    ("event", "shown"),
    [
        (MessageReceived("alice", "hello  there"), "<alice> hello  there"),
        (DirectReceived("bob", "psst"), "[DM] <bob> psst"),
        (Error("user-not-found", "no such user"), "!! user-not-found: no such user"),
        (Error("weird"), "!! weird"),
        (UserJoined("carol"), "-- carol joined"),
        (UserDisconnected("carol"), "-- carol left"),
        (IdleTimeout(), "-- the server is closing this connection: idle for too long"),
        (ServerShutdown(), "-- the server is shutting down"),
        (
            SlowConsumer(),
            "-- the server is closing this connection: it could not send to us fast enough",
        ),
        (Info("commands: LOGIN <name>"), "-- commands: LOGIN <name>"),
        (UserList(("alice", "bob")), "-- users (2): alice, bob"),
        (User("alice"), "-- user alice"),
        (Pong("x"), "-- PONG x"),
        (UnknownLine("Welcome to FooChat!"), "?? Welcome to FooChat!"),
    ],
)
def test_format_event_plain(event: ClientEvent, shown: str) -> None:
    assert format_event(event, WALL, colour=False) == f"{STAMP} {shown}"


def test_format_event_ok_depends_on_the_command() -> None:
    assert format_event(Ok(), WALL, colour=False) is None


def test_colour_only_when_asked() -> None:
    event = MessageReceived("alice", "hi")
    coloured = format_event(event, WALL, colour=True)
    assert coloured is not None
    assert "\x1b[" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == f"{STAMP} <alice> hi"
    # A name keeps its colour from one line to the next.
    again = format_event(MessageReceived("alice", "again"), WALL, colour=True)
    assert again is not None
    assert coloured.split("alice")[0][-12:] == again.split("alice")[0][-12:]


def test_server_text_cannot_drive_the_terminal() -> None:
    # Our server refuses control characters (§2.2); another might relay them.
    evil = MessageReceived("mallory\x1b[31m", "\x1b[2J\x1b]0;pwned\x07\x9b")
    shown = format_event(evil, WALL, colour=False)
    assert shown is not None
    assert not re.search("[\x00-\x08\x0a-\x1f\x7f-\x9f]", shown)
    assert shown.endswith("<mallory\\x1b[31m> \\x1b[2J\\x1b]0;pwned\\x07\\x9b")
    assert sanitize("tab\tkept") == "tab\tkept"


# ------------------------------------------------------------ client logic


def _client(name: str | None = "alice", keepalive: float = 25.0) -> ChatClient:
    client = ChatClient(name, keepalive=keepalive)
    client.start(0.0, WALL)
    return client


def _logged_in() -> ChatClient:
    client = _client()
    client.data_to_send()
    assert client.receive_data(b"OK\n", 0.1, WALL) == [f"{STAMP} ** logged in as alice"]
    return client


def test_start_logs_in() -> None:
    client = ChatClient("alice")
    assert client.start(0.0, WALL) == []
    assert client.data_to_send() == b"LOGIN alice\n"
    assert client.data_to_send() == b""


def test_start_without_a_name_waits_for_login() -> None:
    client = ChatClient(None)
    assert client.start(0.0, WALL) == [f"{STAMP} ** not logged in: use /login NAME"]
    assert client.data_to_send() == b""
    assert client.handle_input("/login bad name", 1.0, WALL) == [
        f"{STAMP} ** 'bad name' is not a valid name: use 1 to 32 letters, digits, _ or -"
    ]
    client.handle_input("/login carol", 1.0, WALL)
    assert client.data_to_send() == b"LOGIN carol\n"


def test_refused_login_can_be_retried() -> None:
    client = _client()
    client.data_to_send()
    lines = client.receive_data(b"ERR username-taken that name is in use\n", 0.1, WALL)
    assert lines == [
        f"{STAMP} !! username-taken: that name is in use",
        f"{STAMP} ** not logged in: try /login ANOTHER_NAME",
    ]
    client.handle_input("/login alice2", 1.0, WALL)
    assert client.data_to_send() == b"LOGIN alice2\n"
    assert client.receive_data(b"OK\n", 1.1, WALL) == [f"{STAMP} ** logged in as alice2"]
    assert client.handle_input("/login again", 2.0, WALL) == [
        f"{STAMP} ** already logged in as alice2"
    ]


def test_text_and_dm_are_sent_byte_for_byte() -> None:
    client = _logged_in()
    assert client.handle_input(" hi  all ", 1.0, WALL) == []
    assert client.handle_input("/dm bob see\tyou", 1.0, WALL) == []
    assert client.data_to_send() == b"MSG  hi  all \nDM bob see\tyou\n"
    # The DM's OK is shown as a plain acknowledgement.
    assert client.receive_data(b"OK\n", 1.1, WALL) == [f"{STAMP} ** ok"]


def test_unsendable_input_is_refused_locally() -> None:
    client = _logged_in()
    lines = client.handle_input("bell\x07", 1.0, WALL)
    assert len(lines) == 1
    assert "not sent: message text must not contain control characters" in lines[0]
    assert client.data_to_send() == b""


def test_ping_prints_the_round_trip() -> None:
    client = _logged_in()
    client.handle_input("/ping", 10.0, WALL)
    sent = client.data_to_send()
    assert re.fullmatch(rb"PING rtt-\d+\n", sent)
    token = sent[5:-1]
    assert client.receive_data(b"PONG " + token + b"\n", 10.0125, WALL) == [
        f"{STAMP} ** pong from the server in 12.5 ms"
    ]
    # A PONG nobody here asked for (e.g. after /raw PING) is shown as is.
    assert client.receive_data(b"PONG other\n", 11.0, WALL) == [f"{STAMP} -- PONG other"]


def test_who_shows_one_line() -> None:
    client = _logged_in()
    client.handle_input("/who", 1.0, WALL)
    sent = client.data_to_send()
    assert re.fullmatch(rb"WHO\nPING who-\d+\n", sent)
    reply = b"USER alice\nUSER bob\nPONG " + sent[9:-1] + b"\n"
    assert client.receive_data(reply, 1.1, WALL) == [f"{STAMP} -- users (2): alice, bob"]
    # Without a /who outstanding, a USER line (a /raw WHO) is shown.
    assert client.receive_data(b"USER carol\n", 1.2, WALL) == [f"{STAMP} -- user carol"]


def test_raw_lines_go_out_exactly() -> None:
    client = _logged_in()
    assert client.handle_input("/raw pInG  two  spaces ", 1.0, WALL) == []
    assert client.data_to_send() == b"pInG  two  spaces \n"


def test_raw_quit_is_a_way_to_leave() -> None:
    client = _logged_in()
    client.handle_input("/raw quit", 1.0, WALL)
    assert client.data_to_send() == b"quit\n"
    assert client.leaving
    assert client.handle_input("more", 1.0, WALL) == [
        f"{STAMP} ** the connection is closing; nothing more can be sent"
    ]


def test_a_raw_login_is_a_login() -> None:
    # The session reads the raw line as the server will: the OK is the login's.
    client = _client(None)
    client.handle_input("/raw LOGIN carol", 1.0, WALL)
    assert client.receive_data(b"OK\n", 1.1, WALL) == [f"{STAMP} ** logged in as carol"]
    assert client.session.username == "carol"
    # A raw LOGIN when logged in is refused; that is not a failed login.
    client.handle_input("/raw LOGIN dave", 2.0, WALL)
    lines = client.receive_data(b"ERR already-logged-in you are logged in\n", 2.1, WALL)
    assert lines == [f"{STAMP} !! already-logged-in: you are logged in"]


def test_errors_of_other_commands_while_logging_in_are_not_login_failures() -> None:
    client = _client()
    client.handle_input("/raw DANCE", 0.5, WALL)
    lines = client.receive_data(b"OK\nERR unknown-command no such command\n", 0.6, WALL)
    assert lines == [
        f"{STAMP} ** logged in as alice",
        f"{STAMP} !! unknown-command: no such command",
    ]


def test_keepalive_pings_after_silence_and_hides_the_pong() -> None:
    client = _client(keepalive=20.0)
    client.data_to_send()
    assert client.next_deadline() == 20.0
    client.handle_input("hi", 5.0, WALL)
    client.data_to_send()
    assert client.next_deadline() == 25.0
    client.handle_timeout(24.0)  # early wake-up: nothing to do
    assert client.data_to_send() == b""
    client.handle_timeout(25.0)
    sent = client.data_to_send()
    assert re.fullmatch(rb"PING keepalive-\d+\n", sent)
    assert client.next_deadline() == 45.0
    assert client.receive_data(b"OK\nPONG " + sent[5:-1] + b"\n", 25.1, WALL) == [
        f"{STAMP} ** logged in as alice"
    ]
    assert _client(keepalive=0).next_deadline() is None


def test_quit_and_the_end_of_the_connection() -> None:
    client = _logged_in()
    assert client.handle_input("/quit", 1.0, WALL) == []
    assert client.data_to_send() == b"QUIT\n"
    assert client.leaving
    assert client.handle_input("more", 1.0, WALL) == [
        f"{STAMP} ** the connection is closing; nothing more can be sent"
    ]
    assert client.receive_eof(WALL) == [f"{STAMP} ** disconnected"]
    assert client.next_deadline() is None


def test_a_lost_connection_is_reported() -> None:
    client = _logged_in()
    lines = client.receive_data(b"INFO server-shutdown\n", 1.0, WALL)
    assert lines == [f"{STAMP} -- the server is shutting down"]
    assert client.receive_eof(WALL) == [f"{STAMP} ** connection closed by the server"]
    assert not client.leaving
    assert client.handle_input("anyone?", 2.0, WALL) == [
        f"{STAMP} ** the connection is closing; nothing more can be sent"
    ]


# --------------------------------------------------------------- end to end


def _chat(port: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "chatproto.cli.chat", "127.0.0.1", str(port), *args]


def _type(proc: Proc, *lines: str) -> None:
    stdin = proc.popen.stdin
    assert stdin is not None
    stdin.write("".join(line + "\n" for line in lines).encode())
    stdin.flush()


@pytest.mark.parametrize("kind", ["selectors", "chatproto-serve"])
def test_plain_mode_end_to_end(kind: str) -> None:
    with (
        start_server(kind) as (server, port),
        running(_chat(port, "--name", "alice", "--plain"), stdin=subprocess.PIPE) as chat,
    ):
        chat.wait_for(r"\*\* logged in as alice$")
        with LineClient(port) as bob:
            bob.login("bob")
            chat.wait_for(r"-- bob joined$")

            _type(chat, "hello  everyone", "/dm bob psst", "/dm nobody x")
            assert bob.expect("DM alice psst") == ["MSG alice hello  everyone", "DM alice psst"]
            chat.wait_for(r"\*\* ok$")
            chat.wait_for(r"!! user-not-found: no such user$")

            bob.send("MSG hi alice", "DM alice back at you")
            chat.wait_for(r"^\d\d:\d\d:\d\d <bob> hi alice$")
            chat.wait_for(r"^\d\d:\d\d:\d\d \[DM\] <bob> back at you$")

            _type(chat, "/who", "/ping", "/raw HELP", "/raw DANCE")
            chat.wait_for(r"-- users \(2\): alice, bob$")
            chat.wait_for(r"\*\* pong from the server in \d+\.\d ms$")
            chat.wait_for(r"-- commands: LOGIN")
            chat.wait_for(r"!! unknown-command")

            _type(chat, "/quit")
            assert chat.exit_status() == 0
            assert bob.expect("INFO alice disconnected")[-1] == "INFO alice disconnected"
            assert not any("\x1b" in line for line in chat.lines)  # not a terminal
        assert server.interrupt() == 0


def test_end_of_input_leaves_politely() -> None:
    with start_server("selectors") as (server, port), LineClient(port) as bob:
        bob.login("bob")
        with running(_chat(port, "--name", "alice"), stdin=subprocess.PIPE) as chat:
            _type(chat, "one last thing")
            assert chat.popen.stdin is not None
            chat.popen.stdin.close()
            assert chat.exit_status() == 0
            chat.wait_for(r"\*\* disconnected$")
        assert bob.expect("INFO alice disconnected") == [
            "INFO alice joined",
            "MSG alice one last thing",
            "INFO alice disconnected",
        ]
        bob.close()
        assert server.interrupt() == 0


def test_ctrl_c_in_plain_mode_says_quit() -> None:
    # Issue 13, defect 4: Ctrl-C closed the connection without QUIT, so the
    # server saw the peer vanish (peer-closed) instead of a user leaving.
    with (
        start_server("chatproto-serve", "--log-level", "info") as (server, port),
        running(_chat(port, "--name", "alice", "--plain"), stdin=subprocess.PIPE) as chat,
    ):
        chat.wait_for(r"\*\* logged in as alice$")
        chat.send_sigint()
        chat.wait_for(r"\*\* disconnected$")
        assert chat.exit_status() == 0
        server.wait_for(r"user=alice reason=quit")
        assert not any("Traceback" in line for line in chat.lines)
        assert server.interrupt() == 0


def test_username_taken_then_login_again() -> None:
    with start_server("asyncio") as (server, port), LineClient(port) as squatter:
        squatter.login("alice")
        with running(_chat(port, "--name", "alice"), stdin=subprocess.PIPE) as chat:
            chat.wait_for(r"!! username-taken")
            chat.wait_for(r"try /login ANOTHER_NAME")
            _type(chat, "/login alice2", "hi")
            chat.wait_for(r"\*\* logged in as alice2$")
            assert squatter.expect("MSG alice2 hi")[-1] == "MSG alice2 hi"
            _type(chat, "/quit")
            assert chat.exit_status() == 0
        squatter.close()
        assert server.interrupt() == 0


def test_server_shutdown_is_reported_and_exits_1() -> None:
    with (
        start_server("selectors") as (server, port),
        running(_chat(port, "--name", "alice"), stdin=subprocess.PIPE) as chat,
    ):
        chat.wait_for(r"logged in as alice")
        assert server.interrupt() == 0
        chat.wait_for(r"-- the server is shutting down$")
        chat.wait_for(r"\*\* connection closed by the server$")
        assert chat.exit_status() == 1


def test_unreachable_server_exits_2() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connection refused
        with running(_chat(port, "--name", "alice"), stdin=subprocess.PIPE) as chat:
            assert chat.exit_status() == 2
            chat.wait_for(rf"cannot connect to 127\.0\.0\.1:{port}")


def test_invalid_name_is_a_usage_error() -> None:
    with running(_chat(4000, "--name", "not valid")) as chat:
        assert chat.exit_status() == 2
        chat.wait_for("invalid --name")


# ------------------------------------------------------- under a terminal


class PtyChat:
    """``chatproto-chat`` on a pseudo-terminal, as a person would run it."""

    def __init__(self, args: list[str]) -> None:
        pytest.importorskip("prompt_toolkit", reason="prompt_toolkit (the chat extra) is missing")
        master, slave = pty.openpty()
        env = program_env()
        del env["NO_COLOR"]
        # No terminal answers the cursor-position requests here.
        env.update(TERM="xterm-256color", PROMPT_TOOLKIT_NO_CPR="1", COLUMNS="120", LINES="40")
        self.popen = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, cwd=REPO, env=env, close_fds=True
        )
        os.close(slave)
        self.master = master
        self.screen = b""

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait_for(self, pattern: str) -> None:
        """Read the terminal until its output, without escapes, matches ``pattern``."""
        deadline = time.monotonic() + DEADLINE
        regex = re.compile(pattern)
        while not regex.search(self.text):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{pattern!r} never appeared on the terminal: {self.text!r}")
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: the program ended
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"{pattern!r} never appeared: {self.text!r}")
                self.screen += chunk

    @property
    def text(self) -> str:
        return re.sub(r"\x1b(\[[0-9;?]*[A-Za-z]|\][^\x07]*\x07|[=>])", "", self.screen.decode())

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        os.close(self.master)


def test_prompt_toolkit_under_a_terminal() -> None:
    with start_server("selectors") as (server, port), LineClient(port) as bob:
        bob.login("bob")
        chat = PtyChat(_chat(port, "--name", "alice"))
        try:
            chat.wait_for(r"logged in as alice")
            chat.wait_for(r"logged in as alice\r\nalice>")
            bob.expect("INFO alice joined")
            # A line arrives while alice is half-way through typing: it is
            # printed above the prompt and her input is kept.
            chat.type("hel")
            chat.wait_for(r"alice>\s*hel$")
            bob.send("MSG interrupting")
            chat.wait_for(r"<bob> interrupting\r\nalice>\s*hel$")  # prompt redrawn
            chat.type("lo\r")
            assert bob.expect(lambda line: line.startswith("MSG alice")) == ["MSG alice hello"]
            assert b"\x1b[1m" in chat.screen  # colour on a terminal
            chat.type("/quit\r")
            assert chat.popen.wait(DEADLINE) == 0
            assert bob.expect("INFO alice disconnected") == ["INFO alice disconnected"]
        finally:
            chat.close()
        bob.close()
        assert server.interrupt() == 0


def test_prompt_toolkit_reports_a_lost_connection() -> None:
    with start_server("selectors") as (server, port):
        chat = PtyChat(_chat(port, "--name", "alice"))
        try:
            chat.wait_for(r"logged in as alice")
            chat.type("half typed")
            chat.wait_for(r"half typed$")
            assert server.interrupt() == 0
            # The prompt gives way; the reason is on screen.
            chat.wait_for(r"-- the server is shutting down\r\n.*connection closed by the server")
            assert chat.popen.wait(DEADLINE) == 1
        finally:
            chat.close()


def test_without_prompt_toolkit_a_terminal_gets_plain_lines() -> None:
    block = (
        "import sys; sys.modules['prompt_toolkit'] = None; "
        "from chatproto.cli.chat import main; sys.exit(main())"
    )
    with start_server("selectors") as (server, port), LineClient(port) as bob:
        bob.login("bob")
        chat = PtyChat([sys.executable, "-c", block, "127.0.0.1", str(port), "--name", "alice"])
        try:
            chat.wait_for(r"prompt_toolkit is not installed: plain line input")
            chat.wait_for(r"logged in as alice")
            chat.type("plain hello\r")
            assert bob.expect("MSG alice plain hello")[-1] == "MSG alice plain hello"
            chat.type("/quit\r")
            assert chat.popen.wait(DEADLINE) == 0
        finally:
            chat.close()
        bob.close()
        assert server.interrupt() == 0
