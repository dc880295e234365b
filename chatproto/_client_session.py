"""One connection, seen from the client: commands in, bytes out; bytes in, lines out.

Owns: encoding commands, framing and parsing what the server sends, the
client's login state, and matching replies to the commands that caused them
(replies come in order, docs/protocol.md §1.7). It is tolerant of third-party
servers: unknown lines become :class:`UnknownLine` events, never exceptions.

Reply matching assumes a server that follows the spec (no banner, no echo, an
``OK`` for every DM). Against other dialects the parsed lines are still right;
only :attr:`ClientSession.state` and :class:`UserList` may lag.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Final, Union

from ._commands import (
    Command,
    ListUsers,
    Login,
    Ping,
    Quit,
    SendMessage,
    encode_command,
)
from ._config import ClientConfig
from ._errors import ErrorCode, LocalProtocolError
from ._framing import LineBuffer
from ._replies import Error, Info, Ok, Pong, ServerLine, UnknownLine, User, parse_server_line

__all__ = ["ClientEvent", "ClientSession", "ClientState", "UserList"]


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


@dataclass(frozen=True, slots=True)
class UserList:
    """A complete ``WHO`` answer: emitted once the line after the block arrives.

    Send ``WHO`` then ``PING`` (or use :meth:`ClientSession.who`) to get it
    as soon as possible: the ``PONG`` ends the block (§9.2).
    """

    names: tuple[str, ...]


ClientEvent = Union[ServerLine, UserList]

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


class ClientSession:
    """The client side of one connection.

    ``send(command)`` returns the bytes to write; ``receive_data(data)``
    returns the server's lines as typed events. Sending after QUIT or end of
    stream raises :class:`LocalProtocolError`; so does a second LOGIN while one
    is pending or accepted. Anything else is left for the server to judge, so
    tools can provoke its errors on purpose.
    """

    __slots__ = ("_lines", "_login_name", "_pending", "_state", "_username", "_who")

    def __init__(self, config: ClientConfig | None = None) -> None:
        cfg = config if config is not None else ClientConfig()
        self._lines = LineBuffer(cfg.max_line_bytes)
        self._state = ClientState.CONNECTED
        self._username: str | None = None
        self._login_name: str | None = None
        # Commands sent whose reply has not been matched yet, oldest first.
        self._pending: deque[Command] = deque()
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
        if isinstance(command, Login):
            if self._state is not ClientState.CONNECTED:
                raise LocalProtocolError(
                    f"cannot send Login in state {self._state.name}; allowed only in CONNECTED"
                )
            self._state = ClientState.LOGGING_IN
            self._login_name = command.name
        elif isinstance(command, Quit):
            self._state = ClientState.CLOSED
        self._pending.append(command)
        return encode_command(command)

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
            self._match(event, events)
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
        self._state = ClientState.CLOSED
        return events

    def _match(self, event: ServerLine, events: list[ClientEvent]) -> None:
        """Pair a reply line with the oldest command still waiting for one."""
        pending = self._pending
        if not isinstance(event, (Ok, Error, Pong, User)) and not (
            isinstance(event, Info) and event.text.startswith("commands:")
        ):
            # Pushed lines (MSG, DM, INFO ...) answer nothing, but the USER
            # block is contiguous (§9.1): a pushed line after it ends it, and
            # the list must come before that line, not at the next reply.
            if self._who and pending and isinstance(pending[0], ListUsers):
                pending.popleft()
                events.append(UserList(tuple(self._who)))
                self._who = {}
            return
        while pending:
            head = pending[0]
            if isinstance(head, SendMessage):
                pending.popleft()
                if isinstance(event, Error) and event.token in _MSG_ERRORS:
                    return
                continue  # the MSG succeeded silently
            if isinstance(event, User) and not isinstance(head, ListUsers):
                return  # a stray USER line (a server that split its block) answers nothing
            if isinstance(head, ListUsers):
                if isinstance(event, User) and event.name not in self._who:
                    self._who[event.name] = None
                    return
                # A block lists each user once (§9.1), so a name seen again
                # is the first line of the next WHO's block: this one is over.
                pending.popleft()
                if self._who or not isinstance(event, Error):
                    events.append(UserList(tuple(self._who)))
                    self._who = {}
                    continue
                return  # the WHO itself was refused
            pending.popleft()
            if isinstance(head, Login):
                if isinstance(event, Ok):
                    self._state = ClientState.LOGGED_IN
                    self._username = self._login_name
                elif self._state is ClientState.LOGGING_IN:
                    self._state = ClientState.CONNECTED
            return
