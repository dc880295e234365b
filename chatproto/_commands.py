"""Client-to-server commands: the typed form of every line a client sends.

Owns the client-to-server grammar: the command dataclasses, validating them
when a program builds one, encoding them to bytes, and what the server's
parser reads a line with: the command words (:data:`VERBS`), the kind codes
it dispatches on (:class:`Kind`), and the text rules (:data:`USERNAME_RE`,
:data:`CONTROL_RE`). :mod:`chatproto._server_session` applies these per
session state, and builds these objects through a fast path that skips the
checks it has already made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, TypeVar, Union

__all__ = [
    "CONTROL_RE",
    "Command",
    "Help",
    "ListUsers",
    "Login",
    "Ping",
    "Quit",
    "SendDirect",
    "SendMessage",
    "encode_command",
    "is_valid_username",
]

#: docs/protocol.md §5.2: 1 to 32 ASCII letters, digits, "_" or "-".
USERNAME_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,32}", re.ASCII)
#: docs/protocol.md §2.2: C0 except tab, DEL, C1. "\n" is included, so a value
#: can never smuggle a second line onto the wire.
CONTROL_RE: Final = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def is_valid_username(name: str) -> bool:
    """Whether ``name`` is a legal username (docs/protocol.md §5.2)."""
    return USERNAME_RE.fullmatch(name) is not None


def _check_text(what: str, value: str) -> None:
    if not value:
        raise ValueError(f"{what} must not be empty")
    if CONTROL_RE.search(value):
        raise ValueError(f"{what} must not contain control characters or newlines: {value!r}")


@dataclass(frozen=True, slots=True)
class Login:
    """``LOGIN <name>``: claim a username."""

    name: str

    def __post_init__(self) -> None:
        if not is_valid_username(self.name):
            raise ValueError(f"invalid username {self.name!r}: use 1 to 32 letters, digits, _ or -")


@dataclass(frozen=True, slots=True)
class SendMessage:
    """``MSG <text>``: broadcast to every other logged-in user."""

    text: str

    def __post_init__(self) -> None:
        _check_text("message text", self.text)


@dataclass(frozen=True, slots=True)
class SendDirect:
    """``DM <recipient> <text>``: deliver to one user."""

    recipient: str
    text: str

    def __post_init__(self) -> None:
        _check_text("recipient", self.recipient)
        if " " in self.recipient:
            raise ValueError(f"recipient must not contain spaces: {self.recipient!r}")
        _check_text("message text", self.text)


@dataclass(frozen=True, slots=True)
class ListUsers:
    """``WHO``: list the logged-in users."""


@dataclass(frozen=True, slots=True)
class Ping:
    """``PING [token]``: answered ``PONG [token]``, in order with other replies."""

    token: str | None = None

    def __post_init__(self) -> None:
        if self.token is not None:
            _check_text("ping token", self.token)


@dataclass(frozen=True, slots=True)
class Help:
    """``HELP``: one ``INFO`` line listing the commands."""


@dataclass(frozen=True, slots=True)
class Quit:
    """``QUIT``: answered ``OK``; then the server closes the connection."""


Command = Union[Login, SendMessage, SendDirect, ListUsers, Ping, Help, Quit]


class Kind(IntEnum):
    """What a client line is, in the cheap form the server dispatches on.

    Private to the core (the public form is a :data:`Command`): an ``int``,
    because the server compares one per line on its hottest path.
    """

    MSG = 0
    PING = 1
    #: A line refused before it meant anything: its payload is the ErrorCode.
    BAD = 2
    LOGIN = 3
    DM = 4
    WHO = 5
    HELP = 6
    QUIT = 7


#: The command words (§3.3), as sent; matched case-insensitively (§3.2).
VERBS: Final = {
    b"MSG": Kind.MSG,
    b"PING": Kind.PING,
    b"LOGIN": Kind.LOGIN,
    b"DM": Kind.DM,
    b"WHO": Kind.WHO,
    b"HELP": Kind.HELP,
    b"QUIT": Kind.QUIT,
}
#: The public command type of each kind.
COMMAND_OF: Final[dict[Kind, type]] = {
    Kind.MSG: SendMessage,
    Kind.PING: Ping,
    Kind.LOGIN: Login,
    Kind.DM: SendDirect,
    Kind.WHO: ListUsers,
    Kind.HELP: Help,
    Kind.QUIT: Quit,
}

_C = TypeVar("_C")
_new = object.__new__
_set = object.__setattr__


def trusted(cls: type[_C], **fields: object) -> _C:
    """Build a command from values the parser has already validated.

    Skips ``__post_init__``: the parser checked UTF-8, control characters and
    the username syntax on the way in, and this is its hot path.
    """
    obj = _new(cls)
    for name, value in fields.items():
        _set(obj, name, value)
    return obj


def encode_command(command: Command) -> bytes:
    """The wire form of ``command``, terminator included."""
    if isinstance(command, SendMessage):
        line = f"MSG {command.text}"
    elif isinstance(command, Login):
        line = f"LOGIN {command.name}"
    elif isinstance(command, SendDirect):
        line = f"DM {command.recipient} {command.text}"
    elif isinstance(command, Ping):
        line = "PING" if command.token is None else f"PING {command.token}"
    elif isinstance(command, ListUsers):
        line = "WHO"
    elif isinstance(command, Help):
        line = "HELP"
    elif isinstance(command, Quit):
        line = "QUIT"
    else:  # pragma: no cover - exhaustive over Command
        raise TypeError(f"not a chatproto command: {command!r}")
    return (line + "\n").encode("utf-8")
