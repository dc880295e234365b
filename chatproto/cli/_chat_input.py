"""What the user typed, as an action: ``hello``, ``/dm bob hi``, ``/who`` ...

Owns the chat client's input language (its slash commands, their usage
messages and the ``/help`` text). Pure: no I/O, no protocol state; what an
action means on the wire is :mod:`._chat_client`'s business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Union

__all__ = [
    "HELP_LINES",
    "AskPing",
    "AskWho",
    "BadInput",
    "InputAction",
    "Leave",
    "LoginAs",
    "SendDm",
    "SendRaw",
    "SendText",
    "ShowHelp",
    "parse_input",
]

HELP_LINES: Final = (
    "text           send a message to everyone (start it with // to send a leading /)",
    "/dm NAME TEXT  send a direct message",
    "/who           list the users in the room",
    "/ping          measure the round trip to the server",
    "/login NAME    log in (again) under NAME, e.g. after 'username-taken'",
    "/raw LINE      send LINE to the server exactly as typed",
    "/quit          leave (so do Ctrl-D and Ctrl-C)",
)


@dataclass(frozen=True, slots=True)
class SendText:
    """Plain text: a ``MSG`` to everyone."""

    text: str


@dataclass(frozen=True, slots=True)
class SendDm:
    """``/dm NAME TEXT``."""

    recipient: str
    text: str


@dataclass(frozen=True, slots=True)
class AskWho:
    """``/who``."""


@dataclass(frozen=True, slots=True)
class AskPing:
    """``/ping``: measure the round trip."""


@dataclass(frozen=True, slots=True)
class LoginAs:
    """``/login NAME``."""

    name: str


@dataclass(frozen=True, slots=True)
class SendRaw:
    """``/raw LINE``: LINE goes to the server byte for byte (plus ``\\n``)."""

    line: str


@dataclass(frozen=True, slots=True)
class Leave:
    """``/quit``, end of input, Ctrl-C."""


@dataclass(frozen=True, slots=True)
class ShowHelp:
    """``/help``."""


@dataclass(frozen=True, slots=True)
class BadInput:
    """Something that starts like a command but is not one; ``message`` says why."""

    message: str


InputAction = Union[SendText, SendDm, AskWho, AskPing, LoginAs, SendRaw, Leave, ShowHelp, BadInput]


def parse_input(line: str) -> InputAction | None:
    """Turn one line the user typed into an action; ``None`` for a blank line.

    Text is kept as typed (inner and edge spaces included): the protocol
    relays it byte for byte. Commands are case-insensitive. ``//text`` sends
    ``/text`` as a message.
    """
    if not line.strip():
        return None
    if line.startswith("//"):
        return SendText(line[1:])
    if not line.startswith("/"):
        return SendText(line)
    word, _, rest = line[1:].partition(" ")
    word = word.lower()
    if word in ("dm", "msg", "tell"):
        recipient, _, text = rest.partition(" ")
        if not recipient or not text:
            return BadInput("usage: /dm NAME TEXT")
        return SendDm(recipient, text)
    if word == "who":
        return AskWho()
    if word == "ping":
        return AskPing()
    if word in ("quit", "exit"):
        return Leave()
    if word in ("help", "?"):
        return ShowHelp()
    if word in ("login", "nick"):
        name = rest.strip()
        if not name:
            return BadInput("usage: /login NAME")
        return LoginAs(name)
    if word == "raw":
        if not rest:
            return BadInput("usage: /raw LINE")
        return SendRaw(rest)
    return BadInput(f"unknown command /{word}; /help lists the commands")
