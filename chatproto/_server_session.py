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
from typing import Any, Final

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


# The form ChatServer dispatches on, one per line: (kind, payload). Cheaper
# than a Command object, and it keeps a message's text as the bytes received,
# so a broadcast is never decoded and encoded again. Payloads: MSG the text
# (bytes), PING the token (bytes, empty for none), BAD the ErrorCode, LOGIN the
# name (str), DM (recipient, text) as str; WHO, HELP and QUIT none.
MSG, PING, BAD, LOGIN, DM, WHO, HELP, QUIT = range(8)
ParsedLine = tuple[int, Any]

# Refusals and argument-less commands carry no per-line data: built once.
_BAD: Final = {code: BadCommand(code) for code in ErrorCode}
_REFUSED: Final = {code: (BAD, code) for code in ErrorCode}
_TOO_LONG: Final = _REFUSED[ErrorCode.LINE_TOO_LONG]
_NOT_LOGGED_IN: Final = _REFUSED[ErrorCode.NOT_LOGGED_IN]
_MISSING: Final = _REFUSED[ErrorCode.MISSING_ARGUMENT]
_PLAIN_PING: Final = (PING, b"")
_PARSED_WHO: Final = (WHO, None)
_PARSED_HELP: Final = (HELP, None)
_PARSED_QUIT: Final = (QUIT, None)
_HELP: Final = Help()
_QUIT: Final = Quit()
_WHO: Final = ListUsers()
_PING: Final = Ping()

_VERBS: Final = {
    b"MSG": MSG,
    b"PING": PING,
    b"LOGIN": LOGIN,
    b"DM": DM,
    b"WHO": WHO,
    b"HELP": HELP,
    b"QUIT": QUIT,
}


class ServerSession:
    """The server side of one connection, without the room.

    Feed bytes with :meth:`receive_data`; get :class:`Command` objects and
    :class:`BadCommand` refusals back, in order. Tell it about an accepted
    login with :meth:`login_accepted`. Usable on its own by a program that
    routes messages its own way; :class:`~chatproto.ChatServer` uses one per
    connection, through the same parser in its cheaper form (:attr:`lines`
    and :meth:`parse`).
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
        # Framing is eager, so bytes are never lost to an iterator not taken.
        return self._commands(self._lines.feed(data))

    def _commands(self, lines: list[bytes | LineTooLong]) -> Iterator[Command | BadCommand]:
        for line in lines:
            if self._state is SessionState.CLOSED:
                return  # closed by QUIT or by the server while we were parsing
            yield _as_command(self.parse(line))

    @property
    def lines(self) -> LineBuffer:
        """The framer, for callers that frame and :meth:`parse` in two steps.

        ``for line in session.lines.feed(data): act(session.parse(line))`` is
        :meth:`receive_data` in the cheap form :class:`~chatproto.ChatServer`
        uses; framing stays eager, so no byte is lost whatever happens next.
        """
        return self._lines

    def parse(self, line: bytes | LineTooLong) -> ParsedLine:
        """One framed line, checked against the rules and the current state.

        The second half of :meth:`receive_data`, in the cheap form
        ``(kind, payload)`` (see :data:`ParsedLine`). Parse each line only
        after the previous one was acted on (a LOGIN accepted or not).
        """
        if type(line) is not bytes:
            return _TOO_LONG
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return _REFUSED[ErrorCode.INVALID_UTF8]
        # isprintable() is the quick "no control character" answer for most
        # text; the exact rule (§2.2: a tab is fine) runs only when it is not.
        if not text.isprintable() and CONTROL_RE.search(text):
            return _REFUSED[ErrorCode.INVALID_CHARACTERS]
        space = line.find(b" ")
        verb = line if space < 0 else line[:space]
        kind = _VERBS.get(verb)  # most clients send the verb in upper case
        if kind is None:
            kind = _VERBS.get(verb.upper())
            if kind is None:
                return _REFUSED[ErrorCode.UNKNOWN_COMMAND]
        logged_in = self._state is SessionState.LOGGED_IN
        if kind == MSG:
            if not logged_in:
                return _NOT_LOGGED_IN
            if space < 0 or space == len(line) - 1:
                return _MISSING
            return (MSG, line[space + 1 :])
        if kind == PING:
            return _PLAIN_PING if space < 0 or space == len(line) - 1 else (PING, line[space + 1 :])
        # The verb is ASCII, so byte and character offsets agree here.
        arg = "" if space < 0 else text[space + 1 :]
        if kind == DM:
            return self._parse_dm(arg, logged_in)
        if kind == LOGIN:
            return self._parse_login(arg, logged_in)
        if kind == WHO:
            return _PARSED_WHO if logged_in else _NOT_LOGGED_IN
        if kind == HELP:
            return _PARSED_HELP
        # QUIT: nothing after it is executed.
        self._close()
        return _PARSED_QUIT

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
    def _parse_login(arg: str, logged_in: bool) -> ParsedLine:
        if logged_in:
            return _REFUSED[ErrorCode.ALREADY_LOGGED_IN]
        if not arg:
            return _MISSING
        if USERNAME_RE.fullmatch(arg) is None:
            return _REFUSED[ErrorCode.INVALID_USERNAME]
        return (LOGIN, arg)

    @staticmethod
    def _parse_dm(arg: str, logged_in: bool) -> ParsedLine:
        if not logged_in:
            return _NOT_LOGGED_IN
        target, _, text = arg.partition(" ")
        if not target or not text:
            return _MISSING
        return (DM, (target, text))


def _as_command(parsed: ParsedLine) -> Command | BadCommand:
    """The public form of a parsed line."""
    kind, payload = parsed
    if kind == MSG:
        return trusted(SendMessage, text=payload.decode("utf-8"))
    if kind == PING:
        return trusted(Ping, token=payload.decode("utf-8")) if payload else _PING
    if kind == BAD:
        return _BAD[payload]
    if kind == LOGIN:
        return trusted(Login, name=payload)
    if kind == DM:
        recipient, text = payload
        return trusted(SendDirect, recipient=recipient, text=text)
    if kind == WHO:
        return _WHO
    return _HELP if kind == HELP else _QUIT
