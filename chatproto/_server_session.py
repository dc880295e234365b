"""One connection, seen from the server: bytes in, validated commands out.

Owns: framing (through :class:`LineBuffer`), the UTF-8 and control-character
rules, command-word parsing, the per-state command rules and the session state
machine (docs/protocol.md §1 to §3). It knows nothing of other connections:
whether a name is taken or a DM target exists is the room's business
(:class:`~chatproto.ChatServer`).

The state machine is two tables, and the code does what they say:
:data:`TRANSITIONS` is the only way the state changes (every change goes
through ``_transition``), and :data:`ALLOWED` is what the parser checks each
command against (docs/architecture.md draws both)::

    AWAITING_LOGIN --login_accepted--> LOGGED_IN
    AWAITING_LOGIN --close-----------> CLOSED
    LOGGED_IN      --close-----------> CLOSED

Rules: a session starts AWAITING_LOGIN; only an accepted LOGIN moves it to
LOGGED_IN; QUIT, end of stream and any decision to close move it to CLOSED,
after which input is ignored. A command its state does not allow gets the
state's refusal (:data:`REFUSAL`). The grammar itself (command words, kinds,
text rules) is :mod:`chatproto._commands`'.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from ._commands import (
    COMMAND_OF,
    CONTROL_RE,
    USERNAME_RE,
    VERBS,
    Command,
    Help,
    Kind,
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

__all__ = ["ALLOWED", "REFUSAL", "TRANSITIONS", "BadCommand", "ServerSession", "SessionState"]


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

#: Command types accepted in each state (§3.4, §5.5).
ALLOWED: Final[dict[SessionState, frozenset[type]]] = {
    SessionState.AWAITING_LOGIN: frozenset({Login, Ping, Help, Quit}),
    SessionState.LOGGED_IN: frozenset({SendMessage, SendDirect, ListUsers, Ping, Help, Quit}),
    SessionState.CLOSED: frozenset(),
}
#: What a command the state does not allow is answered with.
REFUSAL: Final[dict[SessionState, ErrorCode]] = {
    SessionState.AWAITING_LOGIN: ErrorCode.NOT_LOGGED_IN,
    SessionState.LOGGED_IN: ErrorCode.ALREADY_LOGGED_IN,
}
#: ALLOWED in the parser's terms: kinds, per state.
_ALLOWED_KINDS: Final = {
    state: frozenset(kind for kind, command in COMMAND_OF.items() if command in allowed)
    for state, allowed in ALLOWED.items()
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
ParsedLine = tuple[Kind, Any]

# Refusals and argument-less commands carry no per-line data: built once.
_BAD: Final = {code: BadCommand(code) for code in ErrorCode}
_REFUSED: Final = {code: (Kind.BAD, code) for code in ErrorCode}
_TOO_LONG: Final = _REFUSED[ErrorCode.LINE_TOO_LONG]
_MISSING: Final = _REFUSED[ErrorCode.MISSING_ARGUMENT]
_PLAIN_PING: Final = (Kind.PING, b"")
_PARSED_WHO: Final = (Kind.WHO, None)
_PARSED_HELP: Final = (Kind.HELP, None)
_PARSED_QUIT: Final = (Kind.QUIT, None)
_HELP: Final = Help()
_QUIT: Final = Quit()
_WHO: Final = ListUsers()
_PING: Final = Ping()
_MSG, _PING_K, _LOGIN, _DM, _WHO_K, _HELP_K = (
    Kind.MSG,
    Kind.PING,
    Kind.LOGIN,
    Kind.DM,
    Kind.WHO,
    Kind.HELP,
)


class ServerSession:
    """The server side of one connection, without the room.

    Feed bytes with :meth:`receive_data`; get :class:`Command` objects and
    :class:`BadCommand` refusals back, in order. Tell it about an accepted
    login with :meth:`login_accepted`. Usable on its own by a program that
    routes messages its own way; :class:`~chatproto.ChatServer` uses one per
    connection, through the same parser in its cheaper form (:attr:`lines`
    and :meth:`parse`).
    """

    __slots__ = ("_allowed", "_lines", "_state", "_username")

    def __init__(self, max_line_bytes: int = 4096) -> None:
        self._lines = LineBuffer(max_line_bytes)
        self._state = SessionState.AWAITING_LOGIN
        #: _ALLOWED_KINDS of the current state (read once per line).
        self._allowed = _ALLOWED_KINDS[self._state]
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
            yield _as_command(self._parse(line))

    def _parse(self, line: bytes | LineTooLong) -> ParsedLine:
        """One framed line, checked against the rules and the current state.

        The second half of :meth:`receive_data`, in the cheap form
        ``(kind, payload)`` (see :data:`ParsedLine`). Parse each line only
        after the previous one was acted on (a LOGIN accepted or not).

        Private, yet called by :class:`~chatproto.ChatServer` (which frames
        with ``_lines`` and parses line by line): the core's cheap path, not
        an embedder's. An embedder takes :meth:`receive_data`.
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
        kind = VERBS.get(verb)  # most clients send the verb in upper case
        if kind is None:
            kind = VERBS.get(verb.upper())
            if kind is None:
                return _REFUSED[ErrorCode.UNKNOWN_COMMAND]
        if kind not in self._allowed:  # §3.7: the state before the arguments
            return _REFUSED[REFUSAL[self._state]]
        if kind is _MSG:
            if space < 0 or space == len(line) - 1:
                return _MISSING
            return (_MSG, line[space + 1 :])
        if kind is _PING_K:
            if space < 0 or space == len(line) - 1:
                return _PLAIN_PING
            return (_PING_K, line[space + 1 :])
        if kind is _WHO_K:
            return _PARSED_WHO
        if kind is _HELP_K:
            return _PARSED_HELP
        # The verb is ASCII, so byte and character offsets agree here.
        arg = "" if space < 0 else text[space + 1 :]
        if kind is _DM:
            target, _, body = arg.partition(" ")
            return (_DM, (target, body)) if target and body else _MISSING
        if kind is _LOGIN:
            if not arg:
                return _MISSING
            if USERNAME_RE.fullmatch(arg) is None:
                return _REFUSED[ErrorCode.INVALID_USERNAME]
            return (_LOGIN, arg)
        # QUIT: nothing after it is executed.
        self._transition("close")
        return _PARSED_QUIT

    def receive_eof(self) -> int:
        """The peer closed its sending side. Drops and counts a partial line."""
        dropped = self._lines.feed_eof()
        self._transition("close")
        return dropped

    def login_accepted(self, name: str) -> None:
        """The room accepted ``LOGIN name``: move to LOGGED_IN."""
        self._transition("login_accepted")
        self._username = name

    def close(self) -> None:
        """The server decided to close: ignore all further input."""
        self._transition("close")

    def _transition(self, trigger: str) -> None:
        """The only place the state changes: as :data:`TRANSITIONS` says, or raise."""
        try:
            self._state = TRANSITIONS[(self._state, trigger)]
        except KeyError:
            raise LocalProtocolError(
                f"cannot {trigger.replace('_', ' ')} in state {self._state.name}; allowed: "
                + ", ".join(t for (s, t) in TRANSITIONS if s is self._state)
            ) from None
        self._allowed = _ALLOWED_KINDS[self._state]


def _as_command(parsed: ParsedLine) -> Command | BadCommand:
    """The public form of a parsed line."""
    kind, payload = parsed
    if kind is Kind.MSG:
        return trusted(SendMessage, text=payload.decode("utf-8"))
    if kind is Kind.PING:
        return trusted(Ping, token=payload.decode("utf-8")) if payload else _PING
    if kind is Kind.BAD:
        return _BAD[payload]
    if kind is Kind.LOGIN:
        return trusted(Login, name=payload)
    if kind is Kind.DM:
        recipient, text = payload
        return trusted(SendDirect, recipient=recipient, text=text)
    if kind is Kind.WHO:
        return _WHO
    return _HELP if kind is Kind.HELP else _QUIT
