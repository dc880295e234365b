"""What the server sent, as lines for a human: name, timestamp, colour.

Owns how the chat client shows things: one line per event, a local
``HH:MM:SS`` stamp, ANSI colours on request, and never a raw control
character from the server (a hostile or sloppy server could use them to move
the cursor or rewrite the screen). Pure: no I/O, no protocol state.
"""

from __future__ import annotations

import time
import zlib
from typing import Final

# The protocol's own definition of a control character (§2.2: C0 but tab,
# DEL, C1): the core refuses them on the way in; here they are shown escaped.
from chatproto import (
    CONTROL_RE,
    ClientEvent,
    DirectReceived,
    Error,
    IdleTimeout,
    Info,
    MessageReceived,
    Pong,
    ServerShutdown,
    SlowConsumer,
    UnknownLine,
    User,
    UserDisconnected,
    UserJoined,
    UserList,
)

__all__ = ["format_event", "notice", "sanitize"]

_RESET: Final = "\x1b[0m"
_DIM: Final = "\x1b[2m"
_BOLD: Final = "\x1b[1m"
_RED: Final = "\x1b[31m"
_YELLOW: Final = "\x1b[33m"
_MAGENTA: Final = "\x1b[35m"
_CYAN: Final = "\x1b[36m"
# Names get a stable colour each, so a busy room stays readable.
_NAME_COLOURS: Final = ("\x1b[32m", "\x1b[34m", "\x1b[36m", "\x1b[33m", "\x1b[35m", "\x1b[91m")


def sanitize(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``), never sent raw."""
    return CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _paint(text: str, style: str, colour: bool) -> str:
    return f"{style}{text}{_RESET}" if colour else text


def _name(name: str, colour: bool) -> str:
    style = _NAME_COLOURS[zlib.crc32(name.lower().encode()) % len(_NAME_COLOURS)]
    return _paint(sanitize(name), _BOLD + style, colour)


def _stamp(wall: float, colour: bool) -> str:
    return _paint(time.strftime("%H:%M:%S", time.localtime(wall)), _DIM, colour)


def notice(text: str, wall: float, colour: bool) -> str:
    """A line from the client itself (not from the server), marked ``**``."""
    return f"{_stamp(wall, colour)} {_paint('** ' + text, _CYAN, colour)}"


def format_event(event: ClientEvent, wall: float, colour: bool) -> str | None:
    """One readable line for ``event``, received at ``wall`` (a ``time.time()``).

    Messages are ``<name> text``, direct messages ``[DM] <name> text``, room
    notices ``-- text``, errors ``!! token: text`` and unparsed lines
    ``?? line``, each after a local ``HH:MM:SS`` timestamp; with ``colour``,
    in ANSI colours too. Everything from the server is :func:`sanitize`-d.
    Returns ``None`` for :class:`~chatproto.Ok`, whose meaning depends on
    the command it answers (see :class:`~chatproto.cli.chat.ChatClient`).
    """
    stamp = _stamp(wall, colour)
    if isinstance(event, MessageReceived):
        return f"{stamp} <{_name(event.sender, colour)}> {sanitize(event.text)}"
    if isinstance(event, DirectReceived):
        tag = _paint("[DM]", _BOLD + _MAGENTA, colour)
        return f"{stamp} {tag} <{_name(event.sender, colour)}> {sanitize(event.text)}"
    if isinstance(event, Error):
        text = f"!! {sanitize(event.token)}" + (f": {sanitize(event.text)}" if event.text else "")
        return f"{stamp} {_paint(text, _BOLD + _RED, colour)}"
    info: str
    if isinstance(event, UserJoined):
        info = f"{_name(event.name, colour)} joined"
    elif isinstance(event, UserDisconnected):
        info = f"{_name(event.name, colour)} left"
    elif isinstance(event, IdleTimeout):
        info = "the server is closing this connection: idle for too long"
    elif isinstance(event, ServerShutdown):
        info = "the server is shutting down"
    elif isinstance(event, SlowConsumer):
        info = "the server is closing this connection: it could not send to us fast enough"
    elif isinstance(event, Info):
        info = sanitize(event.text)
    elif isinstance(event, UserList):
        names = ", ".join(_name(n, colour) for n in event.names)
        info = f"users ({len(event.names)}): {names}"
    elif isinstance(event, User):
        info = f"user {_name(event.name, colour)}"
    elif isinstance(event, Pong):
        info = "PONG" if event.token is None else f"PONG {sanitize(event.token)}"
    elif isinstance(event, UnknownLine):
        return f"{stamp} {_paint('?? ' + sanitize(event.line), _DIM, colour)}"
    else:  # Ok
        return None
    return f"{stamp} {_paint('--', _YELLOW, colour)} {info}"
