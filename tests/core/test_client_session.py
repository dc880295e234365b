"""ClientSession: encoding commands, parsing server lines, matching replies.

Most tests feed it lines by hand; the last ones wire it to a real ChatServer
through the harness, so that client and server agree on the wire.
"""

from __future__ import annotations

import pytest

from chatproto import (
    HELP_TEXT,
    ClientConfig,
    ClientEvent,
    ClientSession,
    ClientState,
    Command,
    DirectReceived,
    Error,
    ErrorAnswer,
    ErrorCode,
    Help,
    IdleTimeout,
    Info,
    ListUsers,
    LocalProtocolError,
    Login,
    MessageReceived,
    Ok,
    OkAnswer,
    Ping,
    Pong,
    Quit,
    SendDirect,
    SendMessage,
    ServerLine,
    ServerShutdown,
    UnknownLine,
    User,
    UserDisconnected,
    UserJoined,
    UserList,
    encode_command,
    encode_server_line,
    parse_server_line,
)
from tests.core.memory_harness import MemoryRoom


def state(client: ClientSession) -> ClientState:
    # Through a function, so that mypy does not narrow the property's value
    # across the calls that change it.
    return client.state


# ---------------------------------------------------------------- commands


@pytest.mark.parametrize(
    ("command", "wire"),
    [
        (Login("alice"), b"LOGIN alice\n"),
        (SendMessage(" hi  there "), b"MSG  hi  there \n"),
        (SendDirect("bob", "x y"), b"DM bob x y\n"),
        (ListUsers(), b"WHO\n"),
        (Ping(), b"PING\n"),
        (Ping("t 1"), b"PING t 1\n"),
        (Help(), b"HELP\n"),
        (Quit(), b"QUIT\n"),
        (SendMessage("\u00e9"), b"MSG \xc3\xa9\n"),
    ],
)
def test_encode_command(command: Command, wire: bytes) -> None:
    assert encode_command(command) == wire


@pytest.mark.parametrize(
    "build",
    [
        lambda: Login("a b"),
        lambda: Login(""),
        lambda: Login("n" * 33),
        lambda: SendMessage(""),
        lambda: SendMessage("two\nlines"),
        lambda: SendMessage("esc \x1b"),
        lambda: SendMessage("c1 \x85"),
        lambda: SendDirect("bo b", "x"),
        lambda: SendDirect("bob", ""),
        lambda: Ping(""),
        lambda: Ping("a\rb"),
    ],
)
def test_commands_validate_when_built(build: object) -> None:
    assert callable(build)
    with pytest.raises(ValueError):
        build()


# -------------------------------------------------------------- server lines


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        (b"OK", Ok()),
        (b"ERR username-taken that name is in use", Error("username-taken", "that name is in use")),
        (b"ERR weird", Error("weird", "")),
        (b"PONG", Pong()),
        (b"PONG  a b ", Pong(" a b ")),
        (b"USER Bob", User("Bob")),
        (b"MSG bob  hi ", MessageReceived("bob", " hi ")),
        (b"DM bob x y", DirectReceived("bob", "x y")),
        (b"INFO bob joined", UserJoined("bob")),
        (b"INFO bob disconnected", UserDisconnected("bob")),
        (b"INFO idle-timeout", IdleTimeout()),
        (b"INFO server-shutdown", ServerShutdown()),
        (f"INFO {HELP_TEXT}".encode(), Info(HELP_TEXT)),
        (b"INFO something else happened", Info("something else happened")),
        (b"ok", Ok()),
        (b"OK\r", Ok()),
        (b"HELLO banner", UnknownLine("HELLO banner")),
        (b"MSG onlysender", UnknownLine("MSG onlysender")),
        (b"\xff", UnknownLine("\ufffd")),
    ],
)
def test_parse_server_line(line: bytes, parsed: ServerLine) -> None:
    assert parse_server_line(line) == parsed


def test_error_code_maps_known_tokens_only() -> None:
    assert Error("user-not-found").code is ErrorCode.USER_NOT_FOUND
    assert Error("nope").code is None


@pytest.mark.parametrize(
    "event",
    [
        Ok(),
        Error("missing-argument", "this command needs an argument"),
        Pong(),
        Pong("7"),
        User("a"),
        MessageReceived("a", " b "),
        DirectReceived("a", "b"),
        UserJoined("a"),
        UserDisconnected("a"),
        IdleTimeout(),
        ServerShutdown(),
        Info("commands: x"),
        UnknownLine("BANNER"),
    ],
)
def test_encode_then_parse_round_trips(event: ServerLine) -> None:
    wire = encode_server_line(event)
    assert wire.endswith(b"\n")
    assert parse_server_line(wire[:-1]) == event


# ------------------------------------------------------------ state machine


def test_login_accepted() -> None:
    client = ClientSession()
    assert client.send(Login("alice")) == b"LOGIN alice\n"
    assert state(client) is ClientState.LOGGING_IN
    assert client.receive_data(b"OK\n") == [Ok()]
    assert state(client) is ClientState.LOGGED_IN
    assert client.username == "alice"
    assert client.pending == 0


def test_login_refused_allows_retry() -> None:
    client = ClientSession()
    client.send(Login("alice"))
    assert client.receive_data(b"ERR username-taken x\n") == [Error("username-taken", "x")]
    assert state(client) is ClientState.CONNECTED
    assert client.username is None
    client.send(Login("alice2"))
    client.receive_data(b"OK\n")
    assert client.username == "alice2"


def test_second_login_is_misuse() -> None:
    client = ClientSession()
    client.send(Login("alice"))
    with pytest.raises(LocalProtocolError, match="LOGGING_IN"):
        client.send(Login("bob"))
    client.receive_data(b"OK\n")
    with pytest.raises(LocalProtocolError, match="LOGGED_IN"):
        client.send(Login("bob"))


def test_sending_after_quit_is_misuse() -> None:
    client = ClientSession()
    client.send(Quit())
    assert state(client) is ClientState.CLOSED
    with pytest.raises(LocalProtocolError, match="CLOSED"):
        client.send(Ping())
    # The server's OK to the QUIT still parses.
    assert client.receive_data(b"OK\n") == [Ok()]


def test_sending_after_eof_is_misuse() -> None:
    client = ClientSession()
    client.receive_eof()
    with pytest.raises(LocalProtocolError, match="CLOSED"):
        client.send(SendMessage("hi"))


def test_msg_error_is_matched_to_the_msg() -> None:
    client = ClientSession()
    client.send(SendMessage("hi"))
    client.send(Login("alice"))
    client.receive_data(b"ERR not-logged-in LOGIN first\n")
    assert state(client) is ClientState.LOGGING_IN  # the ERR was the MSG's
    client.receive_data(b"OK\n")
    assert state(client) is ClientState.LOGGED_IN


def test_silent_msg_then_dm_error() -> None:
    client = ClientSession()
    client.send(SendMessage("hi"))
    client.send(SendDirect("zed", "x"))
    client.receive_data(b"ERR user-not-found no such user\n")
    assert client.pending == 0


def test_who_gives_a_user_list_before_the_pong() -> None:
    client = ClientSession()
    assert client.who("w1") == b"WHO\nPING w1\n"
    events = client.receive_data(b"USER alice\nUSER bob\nINFO carol joined\nPONG w1\n")
    # The block is contiguous (§9.1), so the first other line ends it, and the
    # list comes before that line: applying events in order loses nobody.
    assert events == [
        User("alice"),
        User("bob"),
        UserList(("alice", "bob")),
        UserJoined("carol"),
        Pong("w1"),
    ]
    assert client.pending == 0


def test_a_user_block_split_by_a_dialect_server_does_not_eat_the_next_reply() -> None:
    client = ClientSession()
    client.who("w1")
    events = client.receive_data(b"USER alice\nMSG bob hi\nUSER bob\nPONG w1\n")
    assert events == [
        User("alice"),
        UserList(("alice",)),
        MessageReceived("bob", "hi"),
        User("bob"),
        Pong("w1"),
    ]
    assert client.pending == 0


def test_back_to_back_who_gives_two_lists() -> None:
    # Regression: the blocks of two WHOs sent together have no marker between
    # them; they were merged into one list, then an empty one was emitted.
    client = ClientSession()
    client.send(ListUsers())
    client.send(ListUsers())
    client.send(Ping())
    events = client.receive_data(b"USER a\nUSER b\nUSER a\nUSER b\nUSER c\nPONG\n")
    lists = [e for e in events if isinstance(e, UserList)]
    assert lists == [UserList(("a", "b")), UserList(("a", "b", "c"))]
    assert client.pending == 0


def test_refused_who_gives_no_user_list() -> None:
    client = ClientSession()
    client.who()
    events = client.receive_data(b"ERR not-logged-in LOGIN first\nPONG who\n")
    assert not any(isinstance(e, UserList) for e in events)


def test_user_list_at_end_of_stream() -> None:
    client = ClientSession()
    client.send(ListUsers())
    client.receive_data(b"USER alice\n")
    assert client.receive_eof() == [UserList(("alice",))]
    assert state(client) is ClientState.CLOSED


def test_over_long_server_line_is_skipped() -> None:
    client = ClientSession(ClientConfig(max_line_bytes=64))
    events = client.receive_data(b"MSG a " + b"x" * 100 + b"\nOK\n")
    assert len(events) == 2
    assert isinstance(events[0], UnknownLine)
    assert events[1] == Ok()


def test_partial_server_line_waits() -> None:
    client = ClientSession()
    assert client.receive_data(b"PO") == []
    assert client.receive_data(b"NG\r\n") == [Pong()]


def test_client_config_validation() -> None:
    with pytest.raises(ValueError):
        ClientConfig(max_line_bytes=10)


# ------------------------------------------------- against the real server


def test_client_and_server_agree() -> None:
    room = MemoryRoom()
    wire_a = room.connect()
    wire_b = room.connect()
    alice = ClientSession()
    bob = ClientSession()

    def exchange(client: ClientSession, data: bytes) -> list[ClientEvent]:
        (wire_a if client is alice else wire_b).send(data)
        return client.receive_data((wire_a if client is alice else wire_b).take())

    assert exchange(alice, alice.send(Login("alice"))) == [Ok()]
    assert exchange(bob, bob.send(Login("Bob"))) == [Ok()]
    assert alice.receive_data(wire_a.take()) == [UserJoined("Bob")]
    assert exchange(bob, bob.send(SendMessage("hi  all"))) == []
    assert alice.receive_data(wire_a.take()) == [MessageReceived("Bob", "hi  all")]
    events = exchange(alice, alice.who())
    assert UserList(("alice", "Bob")) in events
    assert exchange(alice, alice.send(SendDirect("bob", "psst"))) == [Ok()]
    assert bob.receive_data(wire_b.take()) == [DirectReceived("alice", "psst")]
    assert exchange(alice, alice.send(Help())) == [Info(HELP_TEXT)]
    assert exchange(alice, alice.send(Quit())) == [Ok()]
    assert wire_a.closed
    assert alice.receive_eof() == []
    assert bob.receive_data(wire_b.take()) == [UserDisconnected("alice")]
    assert alice.pending == 0
    # A MSG has no reply: it stays pending until the next reply shows it
    # succeeded, which is why §6.2 says to follow it with a PING.
    assert bob.pending == 1
    assert exchange(bob, bob.send(Ping("sync"))) == [Pong("sync")]
    assert bob.pending == 0


# ------------------------------------------- answers and raw lines (issue 14)


def test_ok_and_error_name_the_command_they_answer() -> None:
    client = ClientSession()
    client.send(Login("alice"))
    (refused,) = client.receive_data(b"ERR username-taken x\n")
    assert isinstance(refused, ErrorAnswer) and refused.answers == Login("alice")
    client.send(Login("alice2"))
    client.send(SendMessage("hi"))
    client.send(SendDirect("bob", "x"))
    client.send(Quit())
    events = client.receive_data(b"OK\nOK\nOK\n")
    assert [e.answers for e in events if isinstance(e, OkAnswer)] == [
        Login("alice2"),
        SendDirect("bob", "x"),  # the MSG before it succeeded silently
        Quit(),
    ]
    # Still the plain events: equal, same hash, isinstance holds.
    assert events == [Ok(), Ok(), Ok()] and [Ok(), Ok(), Ok()] == events
    assert hash(events[0]) == hash(Ok()) and isinstance(events[0], Ok)
    assert refused == Error("username-taken", "x") and hash(refused) == hash(
        Error("username-taken", "x")
    )
    assert refused != Error("username-taken", "y")


def test_an_ok_nobody_asked_for_stays_plain() -> None:
    client = ClientSession()
    (ok,) = client.receive_data(b"OK\n")
    assert type(ok) is Ok


def test_raw_lines_are_read_as_the_server_reads_them() -> None:
    client = ClientSession()
    assert client.send_raw("login bob") == b"login bob\n"
    assert state(client) is ClientState.LOGGING_IN
    assert client.send_raw("") == b"\n"  # an empty line earns nothing (§1.3)
    client.send_raw("DANCE")  # refused: one ERR
    client.send_raw(b"PING \xff")  # invalid UTF-8: one ERR
    client.send_raw("msg hi")  # silent once logged in
    client.send_raw("Ping t")
    events = client.receive_data(b"OK\nERR unknown-command x\nERR invalid-utf8 y\nPONG t\n")
    assert state(client) is ClientState.LOGGED_IN and client.username == "bob"
    assert isinstance(events[0], OkAnswer) and events[0].answers == Login("bob")
    assert [type(e) for e in events[1:3]] == [Error, Error]  # no command to name
    assert events[3] == Pong("t")
    assert client.pending == 0
    client.send_raw("QUIT now")
    assert state(client) is ClientState.CLOSED
    with pytest.raises(LocalProtocolError, match="CLOSED"):
        client.send_raw("PING")
    (ok,) = client.receive_data(b"OK\n")
    assert isinstance(ok, OkAnswer) and ok.answers == Quit()


def test_raw_lines_the_server_refuses_do_not_change_the_state() -> None:
    client = ClientSession()
    client.send_raw("LOGIN bad name")  # invalid-username: not a login
    client.send_raw("QUIT \x1b")  # invalid-characters: the server does not quit
    assert state(client) is ClientState.CONNECTED
    client.receive_data(b"ERR invalid-username x\nERR invalid-characters y\n")
    assert client.pending == 0
    with pytest.raises(ValueError, match="newline"):
        client.send_raw("PING\nQUIT")


def test_a_raw_second_login_does_not_steal_the_first_ones_name() -> None:
    client = ClientSession()
    client.send(Login("alice"))
    client.send_raw("LOGIN bob")
    events = client.receive_data(b"OK\nERR already-logged-in z\n")
    assert client.username == "alice" and state(client) is ClientState.LOGGED_IN
    assert isinstance(events[1], ErrorAnswer) and events[1].answers == Login("bob")


def test_raw_lines_agree_with_the_real_server() -> None:
    room = MemoryRoom()
    wire = room.connect()
    client = ClientSession()
    for line in ("PING a", "msg early", "LOGIN ann", "MSG hi", "who", "HELP", "x", "PING b"):
        wire.send(client.send_raw(line))
    events = client.receive_data(wire.take())
    assert events[-1] == Pong("b")
    assert UserList(("ann",)) in events
    assert client.pending == 0 and client.username == "ann"
