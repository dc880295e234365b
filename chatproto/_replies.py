"""Server-to-client lines: the typed form of everything a server sends.

Owns: the dataclasses for each line of docs/protocol.md §14, encoding them, and
parsing them back on the client side; and the encoded forms the server's hot
paths use (:data:`OK_LINE`, :class:`UserLines`...), derived here from the same
encoder so that a line's wire form is spelled in this module only. Parsing is
tolerant, because clients talk to third-party servers too: a line chatproto
would never send becomes an :class:`UnknownLine` (or a generic :class:`Info`),
never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Union

from ._errors import ErrorCode

__all__ = [
    "HELP_TEXT",
    "DirectReceived",
    "Error",
    "IdleTimeout",
    "Info",
    "MessageReceived",
    "Ok",
    "Pong",
    "ServerLine",
    "ServerShutdown",
    "SlowConsumer",
    "UnknownLine",
    "User",
    "UserDisconnected",
    "UserJoined",
    "encode_server_line",
    "parse_server_line",
]

#: The single line ``HELP`` answers with, after ``INFO `` (§11.1).
HELP_TEXT: Final = (
    "commands: LOGIN <name>, MSG <text>, DM <name> <text>, WHO, PING [token], HELP, QUIT"
)


@dataclass(frozen=True, slots=True)
class Ok:
    """``OK``: LOGIN succeeded, DM delivered, or QUIT accepted."""


@dataclass(frozen=True, slots=True)
class Error:
    """``ERR <token> [text]``.

    ``token`` is kept as a string so that third-party tokens survive;
    :attr:`code` maps it to an :class:`ErrorCode` when it is one of ours.
    """

    token: str
    text: str = ""

    @property
    def code(self) -> ErrorCode | None:
        """The token as an :class:`ErrorCode`, or ``None`` for a foreign token."""
        try:
            return ErrorCode(self.token)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Pong:
    """``PONG [token]``: the answer to ``PING``."""

    token: str | None = None


@dataclass(frozen=True, slots=True)
class User:
    """``USER <name>``: one line of a ``WHO`` reply."""

    name: str


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """``MSG <sender> <text>``: another user's broadcast."""

    sender: str
    text: str


@dataclass(frozen=True, slots=True)
class DirectReceived:
    """``DM <sender> <text>``: a direct message to this client."""

    sender: str
    text: str


@dataclass(frozen=True, slots=True)
class UserJoined:
    """``INFO <name> joined``."""

    name: str


@dataclass(frozen=True, slots=True)
class UserDisconnected:
    """``INFO <name> disconnected``."""

    name: str


@dataclass(frozen=True, slots=True)
class IdleTimeout:
    """``INFO idle-timeout``: the server is closing this idle connection."""


@dataclass(frozen=True, slots=True)
class ServerShutdown:
    """``INFO server-shutdown``: the server is going away."""


@dataclass(frozen=True, slots=True)
class SlowConsumer:
    """``INFO slow-consumer``: the server is dropping this connection (§12.3)."""


@dataclass(frozen=True, slots=True)
class Info:
    """Any other ``INFO <text>`` line, such as the ``HELP`` answer."""

    text: str


@dataclass(frozen=True, slots=True)
class UnknownLine:
    """A line that is not part of the protocol (a banner, a dialect)."""

    line: str


ServerLine = Union[
    Ok,
    Error,
    Pong,
    User,
    MessageReceived,
    DirectReceived,
    UserJoined,
    UserDisconnected,
    IdleTimeout,
    ServerShutdown,
    SlowConsumer,
    Info,
    UnknownLine,
]


def encode_server_line(event: ServerLine) -> bytes:
    """The wire form of ``event``, ``\\n`` included."""
    if isinstance(event, MessageReceived):
        line = f"MSG {event.sender} {event.text}"
    elif isinstance(event, Ok):
        line = "OK"
    elif isinstance(event, Error):
        line = f"ERR {event.token} {event.text}" if event.text else f"ERR {event.token}"
    elif isinstance(event, Pong):
        line = "PONG" if event.token is None else f"PONG {event.token}"
    elif isinstance(event, User):
        line = f"USER {event.name}"
    elif isinstance(event, DirectReceived):
        line = f"DM {event.sender} {event.text}"
    elif isinstance(event, UserJoined):
        line = f"INFO {event.name} joined"
    elif isinstance(event, UserDisconnected):
        line = f"INFO {event.name} disconnected"
    elif isinstance(event, IdleTimeout):
        line = "INFO idle-timeout"
    elif isinstance(event, ServerShutdown):
        line = "INFO server-shutdown"
    elif isinstance(event, SlowConsumer):
        line = "INFO slow-consumer"
    elif isinstance(event, Info):
        line = f"INFO {event.text}"
    elif isinstance(event, UnknownLine):
        line = event.line
    else:  # pragma: no cover - exhaustive over ServerLine
        raise TypeError(f"not a chatproto server line: {event!r}")
    return (line + "\n").encode("utf-8")


# ------------------------------------------------------------------------
# The encoded forms the server sends most, derived from encode_server_line
# once, at import (or once per login, for the lines that name a user).

#: ``OK``, ``PONG`` and the fixed ``INFO`` lines.
OK_LINE: Final = encode_server_line(Ok())
PONG_LINE: Final = encode_server_line(Pong())
#: What ``PONG <token>`` starts with (the token is copied byte for byte).
PONG_PREFIX: Final = encode_server_line(Pong(""))[:-1]
HELP_LINE: Final = encode_server_line(Info(HELP_TEXT))
IDLE_LINE: Final = encode_server_line(IdleTimeout())
SHUTDOWN_LINE: Final = encode_server_line(ServerShutdown())
SLOW_CONSUMER_LINE: Final = encode_server_line(SlowConsumer())
#: Cluster mode: the last line of a user whose name was claimed elsewhere
#: while its node was cut off from Redis (docs/protocol.md §17.5).
NAME_LOST_LINE: Final = encode_server_line(Info("name-lost"))
#: ``ERR <token> <text>`` for each of chatproto's own error codes.
ERROR_LINES: Final = {code: encode_server_line(Error(code.value, code.text)) for code in ErrorCode}


@dataclass(frozen=True, slots=True)
class UserLines:
    """Every line that names one user, encoded once when the user logs in."""

    #: ``MSG <name> `` and ``DM <name> ``: the text follows, byte for byte.
    msg_prefix: bytes
    dm_prefix: bytes
    #: ``USER <name>``, ``INFO <name> joined``, ``INFO <name> disconnected``.
    user: bytes
    joined: bytes
    disconnected: bytes

    @classmethod
    def of(cls, name: str) -> UserLines:
        """The lines for ``name`` (as registered)."""
        return cls(
            encode_server_line(MessageReceived(name, ""))[:-1],
            encode_server_line(DirectReceived(name, ""))[:-1],
            encode_server_line(User(name)),
            encode_server_line(UserJoined(name)),
            encode_server_line(UserDisconnected(name)),
        )


def parse_server_line(line: bytes | str) -> ServerLine:
    """Parse one line (terminator already removed) sent by a server.

    Never raises: invalid UTF-8 is decoded with replacement characters and
    anything unrecognised becomes :class:`UnknownLine`.
    """
    text = line if isinstance(line, str) else line.decode("utf-8", "replace")
    if text.endswith("\r"):
        text = text[:-1]
    verb, sep, rest = text.partition(" ")
    verb = verb.upper()
    if verb == "MSG":
        sender, sep2, body = rest.partition(" ")
        if sender and sep2:
            return MessageReceived(sender, body)
    elif verb == "OK":
        return Ok()
    elif verb == "PONG":
        return Pong(rest if sep and rest else None)
    elif verb == "ERR":
        token, _, human = rest.partition(" ")
        return Error(token, human)
    elif verb == "USER" and rest:
        return User(rest)
    elif verb == "DM":
        sender, sep2, body = rest.partition(" ")
        if sender and sep2:
            return DirectReceived(sender, body)
    elif verb == "INFO":
        return _parse_info(rest)
    return UnknownLine(text)


def _parse_info(rest: str) -> ServerLine:
    if rest == "idle-timeout":
        return IdleTimeout()
    if rest == "server-shutdown":
        return ServerShutdown()
    if rest == "slow-consumer":
        return SlowConsumer()
    name, sep, what = rest.partition(" ")
    if sep and " " not in what:
        if what == "joined":
            return UserJoined(name)
        if what == "disconnected":
            return UserDisconnected(name)
    return Info(rest)
