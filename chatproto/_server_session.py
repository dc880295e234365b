"""One connection, seen from the server: bytes in, validated commands out.

Owns: framing (through :class:`LineBuffer`), the UTF-8 and control-character
rules, command-word parsing, the per-state command rules and the session state
machine (docs/protocol.md §1 to §3). It knows nothing of other connections:
whether a name is taken or a DM target exists is the room's business
(:class:`~chatproto.ChatServer`).

State transitions live in one table, :data:`TRANSITIONS`::

    AWAITING_LOGIN --login_accepted--> LOGGED_IN
    AWAITING_LOGIN --close-----------> CLOSED
    LOGGED_IN      --close-----------> CLOSED

Rules: a session starts AWAITING_LOGIN; only an accepted LOGIN moves it to
LOGGED_IN; QUIT, end of stream and any decision to close move it to CLOSED,
after which input is ignored. Which commands each state accepts is
:data:`ALLOWED`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Final

from ._commands import (
    CONTROL_RE,
    USERNAME_RE,
    Command,
    Help,
    ListUsers,
    Login,
    Ping,
    Quit,
    SendDirect,
    SendMessage,
    trusted,
)
from ._errors import ErrorCode, LocalProtocolError
from ._framing import LineBuffer, LineTooLong

__all__ = ["ALLOWED", "TRANSITIONS", "BadCommand", "ServerSession", "SessionState"]


class SessionState(Enum):
    """Where a server-side session is in its life."""

    #: Connected; only LOGIN, PING, HELP and QUIT are accepted.
    AWAITING_LOGIN = "awaiting-login"
    #: Logged in under :attr:`ServerSession.username`; every command accepted.
    LOGGED_IN = "logged-in"
    #: QUIT, end of stream, or the server decided to close. Input is ignored.
    CLOSED = "closed"


#: (state, trigger) -> next state. Anything not listed is API misuse.
TRANSITIONS: Final[dict[tuple[SessionState, str], SessionState]] = {
    (SessionState.AWAITING_LOGIN, "login_accepted"): SessionState.LOGGED_IN,
    (SessionState.AWAITING_LOGIN, "close"): SessionState.CLOSED,
    (SessionState.LOGGED_IN, "close"): SessionState.CLOSED,
    (SessionState.CLOSED, "close"): SessionState.CLOSED,
}

#: Command types accepted in each state; others get the state's refusal code
#: (NOT_LOGGED_IN before login, ALREADY_LOGGED_IN for a LOGIN after it).
ALLOWED: Final[dict[SessionState, frozenset[type]]] = {
    SessionState.AWAITING_LOGIN: frozenset({Login, Ping, Help, Quit}),
    SessionState.LOGGED_IN: frozenset({SendMessage, SendDirect, ListUsers, Ping, Help, Quit}),
    SessionState.CLOSED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class BadCommand:
    """A line the session refused; the server answers ``ERR <code>``."""

    code: ErrorCode


# Refusals are immutable and carry no per-line data, so each is built once.
_BAD: Final = {code: BadCommand(code) for code in ErrorCode}
_HELP: Final = Help()
_QUIT: Final = Quit()
_WHO: Final = ListUsers()
_PING: Final = Ping()

_MSG, _LOGIN, _DM, _PING_W, _WHO_W, _HELP_W, _QUIT_W = (
    b"MSG",
    b"LOGIN",
    b"DM",
    b"PING",
    b"WHO",
    b"HELP",
    b"QUIT",
)
_VERBS: Final = frozenset({_MSG, _LOGIN, _DM, _PING_W, _WHO_W, _HELP_W, _QUIT_W})


class ServerSession:
    """The server side of one connection, without the room.

    Feed bytes with :meth:`receive_data`; get :class:`Command` objects and
    :class:`BadCommand` refusals back, in order. Tell it about an accepted
    login with :meth:`login_accepted`. Usable on its own by a program that
    routes messages its own way; :class:`~chatproto.ChatServer` uses one per
    connection.
    """

    __slots__ = ("_lines", "_state", "_username")

    def __init__(self, max_line_bytes: int = 4096) -> None:
        self._lines = LineBuffer(max_line_bytes)
        self._state = SessionState.AWAITING_LOGIN
        self._username: str | None = None

    @property
    def state(self) -> SessionState:
        """The current :class:`SessionState`."""
        return self._state

    @property
    def username(self) -> str | None:
        """The name as registered, once logged in."""
        return self._username

    def receive_data(self, data: bytes | bytearray | memoryview) -> Iterator[Command | BadCommand]:
        """Parse the complete lines in ``data``, lazily, one per item taken.

        Yields the commands and refusals in stream order; nothing means more
        data is needed. Each line is parsed when its item is taken, so handle
        an item (and call :meth:`login_accepted` for an accepted
        :class:`Login`) before taking the next: a ``MSG`` pipelined behind a
        ``LOGIN`` in the same packet must see the login. Take every item
        before feeding more data. A :class:`Quit` is always the last item:
        lines after it are not executed (§11.2), and the session is CLOSED.
        Never raises for anything a peer sends. Input after CLOSED is ignored.
        """
        if self._state is SessionState.CLOSED:
            return iter(())
        # Fast path, the common case of a request/response client: exactly one
        # short, complete line and nothing buffered. Same result as framing it.
        if (
            type(data) is bytes
            and data[-1:] == b"\n"
            and data.find(b"\n") == len(data) - 1
            and len(data) <= self._lines.max_line_bytes
            and not self._lines.buffered
            and not self._lines.discarding
        ):
            line = data[:-2] if data[-2:-1] == b"\r" else data[:-1]
            return iter((self._parse_line(line),)) if line else iter(())
        # Framing is eager, so bytes are never lost to an iterator not taken.
        return self._parse(self._lines.feed(data))

    def _parse(self, lines: list[bytes | LineTooLong]) -> Iterator[Command | BadCommand]:
        for line in lines:
            if self._state is SessionState.CLOSED:
                return  # closed by the server while we were parsing
            if type(line) is not bytes:
                yield _BAD[ErrorCode.LINE_TOO_LONG]
                continue
            yield self._parse_line(line)

    def _parse_line(self, line: bytes) -> Command | BadCommand:
        """One complete line (terminator removed, within the limit) as a command."""
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return _BAD[ErrorCode.INVALID_UTF8]
        if CONTROL_RE.search(text):
            return _BAD[ErrorCode.INVALID_CHARACTERS]
        space = line.find(b" ")
        verb = (line if space < 0 else line[:space]).upper()
        if verb not in _VERBS:
            return _BAD[ErrorCode.UNKNOWN_COMMAND]
        logged_in = self._state is SessionState.LOGGED_IN
        # The verb is ASCII, so byte and character offsets agree here.
        arg = "" if space < 0 else text[space + 1 :]
        if verb == _MSG:
            if not logged_in:
                return _BAD[ErrorCode.NOT_LOGGED_IN]
            if not arg:
                return _BAD[ErrorCode.MISSING_ARGUMENT]
            return trusted(SendMessage, text=arg)
        if verb == _PING_W:
            return trusted(Ping, token=arg) if arg else _PING
        if verb == _DM:
            return self._parse_dm(arg, logged_in)
        if verb == _LOGIN:
            return self._parse_login(arg, logged_in)
        if verb == _WHO_W:
            return _WHO if logged_in else _BAD[ErrorCode.NOT_LOGGED_IN]
        if verb == _HELP_W:
            return _HELP
        # QUIT: nothing after it is executed.
        self._close()
        return _QUIT

    def receive_eof(self) -> int:
        """The peer closed its sending side. Drops and counts a partial line."""
        dropped = self._lines.feed_eof()
        self._close()
        return dropped

    def login_accepted(self, name: str) -> None:
        """The room accepted ``LOGIN name``: move to LOGGED_IN."""
        self._transition("login_accepted")
        self._username = name

    def close(self) -> None:
        """The server decided to close: ignore all further input."""
        self._transition("close")

    def _close(self) -> None:
        self._state = SessionState.CLOSED

    def _transition(self, trigger: str) -> None:
        try:
            self._state = TRANSITIONS[(self._state, trigger)]
        except KeyError:
            raise LocalProtocolError(
                f"cannot {trigger.replace('_', ' ')} in state {self._state.name}; allowed: "
                + ", ".join(t for (s, t) in TRANSITIONS if s is self._state)
            ) from None

    @staticmethod
    def _parse_login(arg: str, logged_in: bool) -> Command | BadCommand:
        if logged_in:
            return _BAD[ErrorCode.ALREADY_LOGGED_IN]
        if not arg:
            return _BAD[ErrorCode.MISSING_ARGUMENT]
        if USERNAME_RE.fullmatch(arg) is None:
            return _BAD[ErrorCode.INVALID_USERNAME]
        return trusted(Login, name=arg)

    @staticmethod
    def _parse_dm(arg: str, logged_in: bool) -> Command | BadCommand:
        if not logged_in:
            return _BAD[ErrorCode.NOT_LOGGED_IN]
        target, _, text = arg.partition(" ")
        if not target or not text:
            return _BAD[ErrorCode.MISSING_ARGUMENT]
        return trusted(SendDirect, recipient=target, text=text)
