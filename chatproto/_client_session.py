"""One connection, seen from the client: commands in, bytes out; bytes in, lines out.

Owns: encoding commands, framing and parsing what the server sends, the
client's login state, and matching replies to the commands that caused them
(replies come in order, docs/protocol.md §1.7). It is tolerant of third-party
servers: unknown lines become :class:`UnknownLine` events, never exceptions.

Reply matching assumes a server that follows the spec (no banner, no echo, an
``OK`` for every DM). Against other dialects the parsed lines are still right;
only :attr:`ClientSession.state` and :class:`UserList` may lag.

An ``OK`` or ``ERR`` matched to a command comes out as :class:`OkAnswer` or
:class:`ErrorAnswer`: still an :class:`Ok` / :class:`Error` (equal to the plain
one, ``isinstance`` true), plus :attr:`~OkAnswer.answers`, the command it
answers. So a client need not guess which ``OK`` ended a login or which error
tokens a LOGIN can earn: the session knows what it sent.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Union

from ._commands import (
    CONTROL_RE,
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
    encode_command,
)
from ._config import ClientConfig
from ._errors import ErrorCode, LocalProtocolError
from ._framing import LineBuffer
from ._replies import (
    HELP_TEXT,
    Error,
    Info,
    Ok,
    Pong,
    ServerLine,
    UnknownLine,
    User,
    parse_server_line,
)

__all__ = [
    "TRANSITIONS",
    "ClientEvent",
    "ClientSession",
    "ClientState",
    "ErrorAnswer",
    "OkAnswer",
    "UserList",
]


class ClientState(Enum):
    """Where a client session is in its life."""

    #: Connected, not logged in.
    CONNECTED = "connected"
    #: LOGIN sent, its reply not yet received.
    LOGGING_IN = "logging-in"
    #: Logged in as :attr:`ClientSession.username`.
    LOGGED_IN = "logged-in"
    #: QUIT sent or the stream ended: nothing more may be sent.
    CLOSED = "closed"


#: (state, trigger) -> next state: the only way a client session's state
#: changes. Rules: a LOGIN sent while connected starts a login; its OK logs in,
#: its ERR goes back to connected; QUIT sent or the end of stream close it, for
#: good. What the server sends never raises: a reply that fits no transition
#: (an OK for a LOGIN after QUIT was sent) leaves the state as it is.
# The same form as the server session's table (one dict per state machine).
TRANSITIONS: Final[dict[tuple[ClientState, str], ClientState]] = {
    (ClientState.CONNECTED, "login_sent"): ClientState.LOGGING_IN,
    (ClientState.LOGGING_IN, "login_accepted"): ClientState.LOGGED_IN,
    (ClientState.LOGGING_IN, "login_refused"): ClientState.CONNECTED,
    (ClientState.CONNECTED, "close"): ClientState.CLOSED,
    (ClientState.LOGGING_IN, "close"): ClientState.CLOSED,
    (ClientState.LOGGED_IN, "close"): ClientState.CLOSED,
    (ClientState.CLOSED, "close"): ClientState.CLOSED,
}


@dataclass(frozen=True, slots=True)
class UserList:
    """A complete ``WHO`` answer: emitted once the line after the block arrives.

    Send ``WHO`` then ``PING`` (or use :meth:`ClientSession.who`) to get it
    as soon as possible: the ``PONG`` ends the block (§9.2).
    """

    names: tuple[str, ...]


@dataclass(frozen=True, slots=True, eq=False)
class OkAnswer(Ok):
    """An ``OK`` matched to the command it answers (LOGIN, DM or QUIT).

    Compares and hashes like :class:`Ok` (``OkAnswer(answers=Quit()) == Ok()``):
    :attr:`answers` is what the session knows, not part of the line.
    """

    #: The command this ``OK`` answers.
    answers: Command = field(kw_only=True)

    def __eq__(self, other: object) -> bool:
        return True if isinstance(other, Ok) else NotImplemented

    __hash__ = Ok.__hash__


@dataclass(frozen=True, slots=True, eq=False)
class ErrorAnswer(Error):  # noqa: N818 - a reply line, not an exception
    """An ``ERR`` matched to the command it answers.

    Compares and hashes like :class:`Error` with the same token and text:
    :attr:`answers` is what the session knows, not part of the line. An
    ``ERR`` for a line the session could not read as a command (see
    :meth:`ClientSession.send_raw`) stays a plain :class:`Error`.
    """

    #: The command this ``ERR`` refuses.
    answers: Command = field(kw_only=True)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Error):
            return (self.token, self.text) == (other.token, other.text)
        return NotImplemented

    __hash__ = Error.__hash__


ClientEvent = Union[ServerLine, UserList]


class _Unreadable:
    """A raw line that the server will refuse: it earns exactly one ``ERR``."""

    __slots__ = ()


_UNREADABLE: Final = _Unreadable()

# Errors a MSG can earn. When a MSG is pending and another ERR arrives, the
# MSG succeeded silently and the ERR belongs to a later command.
_MSG_ERRORS: Final = frozenset(
    {
        ErrorCode.NOT_LOGGED_IN.value,
        ErrorCode.MISSING_ARGUMENT.value,
        ErrorCode.LINE_TOO_LONG.value,
        ErrorCode.INVALID_UTF8.value,
        ErrorCode.INVALID_CHARACTERS.value,
    }
)


#: The answer to HELP, as chatproto sends it (the one reply that is an INFO line).
_HELP_REPLY: Final = Info(HELP_TEXT)


class ClientSession:
    """The client side of one connection.

    ``send(command)`` returns the bytes to write; ``receive_data(data)``
    returns the server's lines as typed events. Sending after QUIT or end of
    stream raises :class:`LocalProtocolError`; so does a second LOGIN while one
    is pending or accepted. Anything else is left for the server to judge, so
    tools can provoke its errors on purpose.
    """

    __slots__ = ("_lines", "_pending", "_state", "_username", "_who")

    def __init__(self, config: ClientConfig | None = None) -> None:
        cfg = config if config is not None else ClientConfig()
        self._lines = LineBuffer(cfg.max_line_bytes)
        self._state = ClientState.CONNECTED
        self._username: str | None = None
        # Commands sent whose reply has not been matched yet, oldest first
        # (a raw line the server will refuse is an _Unreadable).
        self._pending: deque[Command | _Unreadable] = deque()
        # The WHO block being read. A dict as an ordered set: a name already
        # in it starts the next block (see _match).
        self._who: dict[str, None] = {}

    @property
    def state(self) -> ClientState:
        """The current :class:`ClientState`."""
        return self._state

    @property
    def username(self) -> str | None:
        """The name the server accepted, once logged in."""
        return self._username

    @property
    def pending(self) -> int:
        """Commands sent whose reply has not arrived yet."""
        return len(self._pending)

    def send(self, command: Command) -> bytes:
        """Encode ``command`` for the wire and remember that a reply is due."""
        if self._state is ClientState.CLOSED:
            raise LocalProtocolError(
                f"cannot send {type(command).__name__} in state CLOSED; nothing may be sent"
            )
        if isinstance(command, Login) and self._state is not ClientState.CONNECTED:
            raise LocalProtocolError(
                f"cannot send Login in state {self._state.name}; allowed only in CONNECTED"
            )
        self._expect(command)
        return encode_command(command)

    def send_raw(self, line: str | bytes) -> bytes:
        """``line`` for the wire as given (plus ``\\n``), reply matching kept in step.

        For tools that send what a person typed, or provoke errors on purpose.
        The line is read as the server will read it (docs/protocol.md §2, §3):
        a command is expected to be answered like :meth:`send`'s, ``QUIT``
        closes the session, a valid ``LOGIN`` starts a login when none is under
        way, an empty line earns nothing, and anything else earns one ``ERR``.
        ``str`` is encoded as UTF-8 (lone surrogates as the bytes they escape).

        Raises :class:`LocalProtocolError` in state CLOSED and :class:`ValueError`
        if ``line`` contains ``\\n`` (one line at a time). Unlike :meth:`send`,
        never refuses a line for the current state: the server judges it.
        """
        raw = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else bytes(line)
        if b"\n" in raw:
            raise ValueError("send_raw sends one line: it must not contain a newline")
        if self._state is ClientState.CLOSED:
            raise LocalProtocolError("cannot send a raw line in state CLOSED; nothing may be sent")
        if raw.removesuffix(b"\r"):  # the server drops empty lines (§1.3)
            self._expect(_read_command(raw.removesuffix(b"\r")))
        return raw + b"\n"

    def _expect(self, sent: Command | _Unreadable) -> None:
        """Remember that ``sent`` went out: its reply is due, and the state moves."""
        if isinstance(sent, Login):
            self._move("login_sent")  # a raw LOGIN while one is under way: no move
        elif isinstance(sent, Quit):
            self._move("close")
        self._pending.append(sent)

    def _move(self, trigger: str) -> None:
        """Change state as :data:`TRANSITIONS` says; a trigger that does not fit is a no-op.

        The public methods refuse what the local program may not do before
        they get here (with :class:`LocalProtocolError`); a server's reply
        never raises.
        """
        self._state = TRANSITIONS.get((self._state, trigger), self._state)

    def who(self, token: str = "who") -> bytes:
        """``WHO`` then ``PING token``: the :class:`UserList` arrives with the ``PONG``."""
        return self.send(ListUsers()) + self.send(Ping(token))

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[ClientEvent]:
        """Parse the complete lines in ``data``; an empty list means more is needed.

        An over-long line (over ``ClientConfig.max_line_bytes``) is skipped and
        reported as an :class:`UnknownLine` with an explanation.
        """
        events: list[ClientEvent] = []
        for line in self._lines.feed(data):
            if type(line) is not bytes:
                events.append(UnknownLine("<line too long: discarded by the client>"))
                continue
            event = parse_server_line(line)
            answered = self._match(event, events)
            if answered is not None:
                if isinstance(event, Ok):
                    event = OkAnswer(answers=answered)
                elif isinstance(event, Error):
                    event = ErrorAnswer(event.token, event.text, answers=answered)
            events.append(event)
        return events

    def receive_eof(self) -> list[ClientEvent]:
        """The server closed the connection. Returns a pending :class:`UserList`, if any."""
        self._lines.feed_eof()
        events: list[ClientEvent] = []
        if self._pending and isinstance(self._pending[0], ListUsers) and self._who:
            events.append(UserList(tuple(self._who)))
        self._pending.clear()
        self._who = {}
        self._move("close")
        return events

    def _match(self, event: ServerLine, events: list[ClientEvent]) -> Command | None:
        """Pair a reply line with the oldest command still waiting for one.

        Returns the command ``event`` answers, if it answers one.
        """
        pending = self._pending
        if not isinstance(event, (Ok, Error, Pong, User)) and event != _HELP_REPLY:
            # Pushed lines (MSG, DM, INFO ...) answer nothing, but the USER
            # block is contiguous (§9.1): a pushed line after it ends it, and
            # the list must come before that line, not at the next reply.
            if self._who and pending and isinstance(pending[0], ListUsers):
                pending.popleft()
                events.append(UserList(tuple(self._who)))
                self._who = {}
            return None
        while pending:
            head = pending[0]
            if isinstance(head, SendMessage):
                pending.popleft()
                if isinstance(event, Error) and event.token in _MSG_ERRORS:
                    return head
                continue  # the MSG succeeded silently
            if isinstance(event, User) and not isinstance(head, ListUsers):
                return None  # a stray USER line (a server that split its block) answers nothing
            if isinstance(head, ListUsers):
                if isinstance(event, User) and event.name not in self._who:
                    self._who[event.name] = None
                    return None
                # A block lists each user once (§9.1), so a name seen again
                # is the first line of the next WHO's block: this one is over.
                pending.popleft()
                if self._who or not isinstance(event, Error):
                    events.append(UserList(tuple(self._who)))
                    self._who = {}
                    continue
                return head  # the WHO itself was refused
            pending.popleft()
            if isinstance(head, _Unreadable):
                return None
            if isinstance(head, Login):
                if isinstance(event, Ok):
                    if self._state is ClientState.LOGGING_IN:
                        self._username = head.name
                    self._move("login_accepted")
                elif not any(isinstance(c, Login) for c in pending):
                    self._move("login_refused")
            return head
        return None


def _read_command(line: bytes) -> Command | _Unreadable:
    """The command the server will read in ``line``, or :data:`_UNREADABLE`.

    Mirrors the server's order of checks (§2, §3): UTF-8 and control
    characters for the whole line, then the verb, then the argument, which the
    command's own constructor validates. A refused ``MSG`` or ``DM`` may read
    as the command here: both expect either outcome.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return _UNREADABLE
    if CONTROL_RE.search(text):
        return _UNREADABLE
    verb, _, arg = line.partition(b" ")
    kind = VERBS.get(verb.upper())
    if kind is None:
        return _UNREADABLE
    # WHO, HELP and QUIT take no argument: the server ignores what follows.
    if kind is Kind.WHO:
        return ListUsers()
    if kind is Kind.HELP:
        return Help()
    if kind is Kind.QUIT:
        return Quit()
    argument = arg.decode("utf-8")
    try:
        if kind is Kind.MSG:
            return SendMessage(argument)
        if kind is Kind.DM:
            recipient, _, body = argument.partition(" ")
            return SendDirect(recipient, body)
        if kind is Kind.LOGIN:
            return Login(argument)
        return Ping(argument or None)
    except ValueError:  # an argument the server refuses: it answers ERR
        pass
    return _UNREADABLE
