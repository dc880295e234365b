"""ServerSession on its own: lines in, commands and refusals out (§1 to §5).

The room is not involved: whether a name is taken is not the session's
business, so these tests call :meth:`ServerSession.login_accepted` themselves.
"""

from __future__ import annotations

import pytest

from chatproto import (
    BadCommand,
    Command,
    ErrorCode,
    Help,
    ListUsers,
    LocalProtocolError,
    Login,
    Ping,
    Quit,
    SendDirect,
    SendMessage,
    ServerSession,
    SessionState,
)
from chatproto._server_session import ALLOWED, TRANSITIONS

Item = Command | BadCommand


def bad(code: ErrorCode) -> BadCommand:
    return BadCommand(code)


def parse(data: bytes, *, logged_in: bool = False, max_line: int = 4096) -> list[Item]:
    session = ServerSession(max_line)
    if logged_in:
        session.login_accepted("alice")
    return list(session.receive_data(data))


# --------------------------------------------------------------- commands


@pytest.mark.parametrize(
    ("line", "item"),
    [
        (b"LOGIN alice", Login("alice")),
        (b"PING", Ping()),
        (b"PING tok en", Ping("tok en")),
        (b"PING  x ", Ping(" x ")),
        (b"HELP", Help()),
        (b"HELP me", Help()),
        (b"QUIT", Quit()),
        (b"QUIT now", Quit()),
        (b"login Bob", Login("Bob")),
        (b"pInG 1", Ping("1")),
        # §3.6: an empty argument is no argument.
        (b"PING ", Ping()),
    ],
)
def test_before_login(line: bytes, item: Item) -> None:
    assert parse(line + b"\n") == [item]


@pytest.mark.parametrize(
    ("line", "item"),
    [
        (b"MSG hi", SendMessage("hi")),
        (b"MSG  two  spaces ", SendMessage(" two  spaces ")),
        (b"msg \xc3\xa9t\xc3\xa9", SendMessage("\u00e9t\u00e9")),
        (b"MSG a\tb", SendMessage("a\tb")),
        (b"DM bob hi there", SendDirect("bob", "hi there")),
        (b"DM bob  x", SendDirect("bob", " x")),
        (b"Dm BOB x", SendDirect("BOB", "x")),
        (b"WHO", ListUsers()),
        (b"WHO is there", ListUsers()),
        (b"LOGIN bob", bad(ErrorCode.ALREADY_LOGGED_IN)),
        (b"LOGIN", bad(ErrorCode.ALREADY_LOGGED_IN)),
        (b"LOGIN b@d", bad(ErrorCode.ALREADY_LOGGED_IN)),
        (b"MSG", bad(ErrorCode.MISSING_ARGUMENT)),
        (b"MSG ", bad(ErrorCode.MISSING_ARGUMENT)),
        (b"DM", bad(ErrorCode.MISSING_ARGUMENT)),
        (b"DM bob", bad(ErrorCode.MISSING_ARGUMENT)),
        (b"DM bob ", bad(ErrorCode.MISSING_ARGUMENT)),
        (b"DM  bob hi", bad(ErrorCode.MISSING_ARGUMENT)),
        (b"PING 1", Ping("1")),
        (b"HELP", Help()),
    ],
)
def test_after_login(line: bytes, item: Item) -> None:
    assert parse(line + b"\n", logged_in=True) == [item]


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"MSG hi", ErrorCode.NOT_LOGGED_IN),
        (b"MSG", ErrorCode.NOT_LOGGED_IN),
        (b"DM bob hi", ErrorCode.NOT_LOGGED_IN),
        (b"DM", ErrorCode.NOT_LOGGED_IN),
        (b"WHO", ErrorCode.NOT_LOGGED_IN),
        (b"LOGIN", ErrorCode.MISSING_ARGUMENT),
        (b"LOGIN ", ErrorCode.MISSING_ARGUMENT),
        (b"LOGIN  bob", ErrorCode.INVALID_USERNAME),
        (b"LOGIN bob smith", ErrorCode.INVALID_USERNAME),
        (b"LOGIN bob ", ErrorCode.INVALID_USERNAME),
        (b"LOGIN " + b"n" * 33, ErrorCode.INVALID_USERNAME),
        (b"LOGIN b\xc3\xb3b", ErrorCode.INVALID_USERNAME),
        # KELVIN SIGN lower-cases to ASCII "k": still not an ASCII letter.
        (b"LOGIN \xe2\x84\xaa", ErrorCode.INVALID_USERNAME),
        (b"LOGIN b\tob", ErrorCode.INVALID_USERNAME),
        (b"DANCE", ErrorCode.UNKNOWN_COMMAND),
        (b"PINGX", ErrorCode.UNKNOWN_COMMAND),
        (b" PING", ErrorCode.UNKNOWN_COMMAND),
        (b"PING\tx", ErrorCode.UNKNOWN_COMMAND),
        # Case folding is ASCII only: dotless i, long s.
        (b"p\xc4\xb1ng", ErrorCode.UNKNOWN_COMMAND),
        (b"M\xc5\xbfg hi", ErrorCode.UNKNOWN_COMMAND),
        (b"\xff", ErrorCode.INVALID_UTF8),
        (b"PING \xc0\xaf", ErrorCode.INVALID_UTF8),
        (b"PING \xed\xa0\x80", ErrorCode.INVALID_UTF8),
        (b"PING \x00", ErrorCode.INVALID_CHARACTERS),
        (b"PING \x1b[2J", ErrorCode.INVALID_CHARACTERS),
        (b"PING \x7f", ErrorCode.INVALID_CHARACTERS),
        (b"PING \xc2\x80", ErrorCode.INVALID_CHARACTERS),
        (b"PING \xc2\x9f", ErrorCode.INVALID_CHARACTERS),
        (b"PING a\rb", ErrorCode.INVALID_CHARACTERS),
        (b"PING a\r\r", ErrorCode.INVALID_CHARACTERS),
        # §2.4 and §3.7: the order of the checks.
        (b"MSG \xff\x01", ErrorCode.INVALID_UTF8),
        (b"DANCE\x01", ErrorCode.INVALID_CHARACTERS),
        (b"MSG \x01", ErrorCode.INVALID_CHARACTERS),
        (b"WHOM", ErrorCode.UNKNOWN_COMMAND),
    ],
)
def test_refusals_before_login(line: bytes, code: ErrorCode) -> None:
    assert parse(line + b"\n") == [bad(code)]


def test_every_control_character_but_tab_is_refused() -> None:
    controls = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]
    for cp in controls:
        if cp in (0x09, 0x0A):
            continue  # tab is allowed; "\n" ends the line
        line = b"PING a" + chr(cp).encode() + b"b\n"
        assert parse(line) == [bad(ErrorCode.INVALID_CHARACTERS)], hex(cp)
    for cp in (0x09, 0xA0, 0xFF, 0x2028, 0xFEFF):
        assert parse(b"PING " + chr(cp).encode() + b"\n") == [Ping(chr(cp))], hex(cp)


def test_line_too_long_comes_first() -> None:
    assert parse(b"PING " + b"\xff" * 60 + b"\n", max_line=64) == [bad(ErrorCode.LINE_TOO_LONG)]
    # Exactly at the limit the line is judged on its content.
    assert parse(b"PING " + b"\xff" * 59 + b"\n", max_line=64) == [bad(ErrorCode.INVALID_UTF8)]


def test_valid_usernames() -> None:
    for name in ("a", "A", "7", "-", "_", "a_b-C9", "n" * 32):
        assert parse(f"LOGIN {name}\n".encode()) == [Login(name)], name


# -------------------------------------------------------------- lifecycle


def test_state_machine_login_then_close() -> None:
    session = ServerSession()
    states = [session.state]
    assert session.username is None
    session.login_accepted("Alice")
    states.append(session.state)
    assert session.username == "Alice"
    session.close()
    states.append(session.state)
    assert states == [SessionState.AWAITING_LOGIN, SessionState.LOGGED_IN, SessionState.CLOSED]
    session.close()  # closing twice is a race, not misuse
    assert list(session.receive_data(b"PING\n")) == []


def test_second_login_accepted_is_misuse() -> None:
    session = ServerSession()
    session.login_accepted("alice")
    with pytest.raises(LocalProtocolError, match="LOGGED_IN"):
        session.login_accepted("bob")
    assert session.username == "alice"


def test_login_accepted_after_close_is_misuse() -> None:
    session = ServerSession()
    session.close()
    with pytest.raises(LocalProtocolError, match="CLOSED"):
        session.login_accepted("alice")


def test_pipelined_msg_sees_login_accepted_between_items() -> None:
    session = ServerSession()
    items = session.receive_data(b"LOGIN alice\nMSG hi\nWHO\n")
    assert next(items) == Login("alice")
    session.login_accepted("alice")
    assert list(items) == [SendMessage("hi"), ListUsers()]


def test_pipelined_msg_without_login_accepted_is_refused() -> None:
    # The room said no (name taken): the session stays logged out.
    items = list(ServerSession().receive_data(b"LOGIN alice\nMSG hi\n"))
    assert items == [Login("alice"), bad(ErrorCode.NOT_LOGGED_IN)]


def test_quit_is_the_last_item_and_closes() -> None:
    session = ServerSession()
    assert list(session.receive_data(b"PING 1\nQUIT\nPING 2\nLOGIN x\n")) == [Ping("1"), Quit()]
    assert session.state is SessionState.CLOSED
    assert list(session.receive_data(b"PING 3\n")) == []


def test_close_while_parsing_stops_the_iteration() -> None:
    session = ServerSession()
    items = session.receive_data(b"PING 1\nPING 2\n")
    assert next(items) == Ping("1")
    session.close()
    assert list(items) == []


def test_receive_eof_drops_partial_line() -> None:
    session = ServerSession()
    assert list(session.receive_data(b"PING 1\nPING")) == [Ping("1")]
    assert session.receive_eof() == 4
    assert session.state is SessionState.CLOSED
    assert list(session.receive_data(b" 2\n")) == []


def test_input_split_across_feeds() -> None:
    session = ServerSession()
    got: list[Item] = []
    for byte in b"LOGIN a l\r\nPING x\r\n":
        got += session.receive_data(bytes([byte]))
    assert got == [bad(ErrorCode.INVALID_USERNAME), Ping("x")]


def test_transition_table_matches_behaviour() -> None:
    # Every documented transition is allowed; anything else raises.
    for state in SessionState:
        for trigger in ("login_accepted", "close"):
            session = ServerSession()
            if state is SessionState.LOGGED_IN:
                session.login_accepted("x")
            elif state is SessionState.CLOSED:
                session.close()
            if (state, trigger) in TRANSITIONS:
                getattr(session, trigger)(*(["y"] if trigger == "login_accepted" else []))
                assert session.state is TRANSITIONS[(state, trigger)]
            else:
                with pytest.raises(LocalProtocolError):
                    getattr(session, trigger)("y")


SAMPLES: dict[type, bytes] = {
    Login: b"LOGIN zed\n",
    SendMessage: b"MSG hi\n",
    SendDirect: b"DM bob hi\n",
    ListUsers: b"WHO\n",
    Ping: b"PING\n",
    Help: b"HELP\n",
    Quit: b"QUIT\n",
}


@pytest.mark.parametrize("state", [SessionState.AWAITING_LOGIN, SessionState.LOGGED_IN])
def test_allowed_table_matches_behaviour(state: SessionState) -> None:
    """ALLOWED documents which commands each state accepts: it must be true."""
    for kind, line in SAMPLES.items():
        items = parse(line, logged_in=state is SessionState.LOGGED_IN)
        accepted = type(items[0]) is kind
        assert accepted == (kind in ALLOWED[state]), (state, kind, items)
