"""The chat client's logic around one :class:`~chatproto.ClientSession`, without I/O.

Owns what the client does with what the user typed and what the server
sent: logging in, ``/ping`` round trips, ``/who`` folded into one line,
keepalive, and the notices it adds (``** logged in as ...``). The protocol
itself (encoding, which reply answers which command, what a raw line does
to the session) is the core's: every command goes through the session, and
an ``OK`` or ``ERR`` says which command it answers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Final

from chatproto import (
    ClientSession,
    ClientState,
    Command,
    Error,
    ErrorAnswer,
    IdleTimeout,
    LocalProtocolError,
    Login,
    Ok,
    OkAnswer,
    Ping,
    Pong,
    Quit,
    SendDirect,
    SendMessage,
    ServerShutdown,
    SlowConsumer,
    User,
    is_valid_username,
)

from ._chat_format import format_event, notice
from ._chat_input import (
    HELP_LINES,
    AskPing,
    AskWho,
    BadInput,
    Leave,
    LoginAs,
    SendDm,
    SendRaw,
    ShowHelp,
    parse_input,
)

__all__ = ["DEFAULT_KEEPALIVE", "NAME_RULE", "ChatClient"]

#: Seconds of silence before the client sends a keepalive ``PING``. The
#: protocol's default idle timeout is 60 s (§12.2); 25 s keeps a session alive
#: even on a server configured with half of that.
DEFAULT_KEEPALIVE: Final = 25.0
#: How to say what a valid name is (docs/protocol.md §5.2).
NAME_RULE: Final = "use 1 to 32 letters, digits, _ or -"


class ChatClient:
    """The chat client's logic around one :class:`~chatproto.ClientSession`, without I/O.

    Fed what the user typed (:meth:`handle_input`) and what the server sent
    (:meth:`receive_data`, :meth:`receive_eof`), each with the time; returns
    the lines to show; keeps the bytes to write until :meth:`data_to_send`.
    ``now`` is a monotonic clock (round trips, keepalive), ``wall`` a
    ``time.time()`` (timestamps on screen).
    """

    def __init__(
        self,
        name: str | None,
        *,
        colour: bool = False,
        keepalive: float = DEFAULT_KEEPALIVE,
    ) -> None:
        self.session = ClientSession()
        self.colour = colour
        self.keepalive = keepalive
        self._name = name
        self._out = bytearray()
        self._last_sent = 0.0
        self._ids = itertools.count(1)
        # Outstanding /ping tokens and when they were sent.
        self._pings: dict[str, float] = {}
        # Outstanding /who (and keepalive) tokens: their PONGs are not shown,
        # and USER lines are folded into one UserList line while one is out.
        self._quiet: set[str] = set()
        self._who_out = 0
        #: The user asked to leave: the connection closing is expected.
        self.leaving = False
        #: The server said why it is about to close (shutdown, idle).
        self.close_explained = False

    # ------------------------------------------------------------ feeding

    def start(self, now: float, wall: float) -> list[str]:
        """Log in under the name given at construction, if any."""
        self._last_sent = now
        if self._name is None:
            return [self._notice("not logged in: use /login NAME", wall)]
        return self._login(self._name, now, wall)

    def handle_input(self, line: str, now: float, wall: float) -> list[str]:
        """Act on one line the user typed (without its newline)."""
        action = parse_input(line)
        if action is None:
            return []
        if isinstance(action, BadInput):
            return [self._notice(action.message, wall)]
        if isinstance(action, ShowHelp):
            return [self._notice(h, wall) for h in HELP_LINES]
        if isinstance(action, Leave):
            return self.leave(now, wall)
        if self._closed():
            return [self._notice("the connection is closing; nothing more can be sent", wall)]
        if isinstance(action, SendRaw):
            self._write(self.session.send_raw(action.line), now)
            if self._closed():
                self.leaving = True  # a raw QUIT: the close is expected, as after /quit
            return []
        if isinstance(action, LoginAs):
            return self._login(action.name, now, wall)
        if isinstance(action, AskWho):
            token = f"who-{next(self._ids)}"
            self._quiet.add(token)
            self._who_out += 1
            self._write(self.session.who(token), now)
            return []
        if isinstance(action, AskPing):
            token = f"rtt-{next(self._ids)}"
            self._pings[token] = now
            return self._send(Ping(token), now, wall)
        if isinstance(action, SendDm):
            return self._build_and_send(
                lambda: SendDirect(action.recipient, action.text), now, wall
            )
        return self._build_and_send(lambda: SendMessage(action.text), now, wall)

    def leave(self, now: float, wall: float) -> list[str]:
        """The user wants to go (``/quit``, end of input, Ctrl-C): say ``QUIT``."""
        self.leaving = True
        if self.session.state is ClientState.CLOSED:
            return []
        return self._send(Quit(), now, wall)

    def receive_data(self, data: bytes, now: float, wall: float) -> list[str]:
        """The lines to show for ``data`` received from the server."""
        lines: list[str] = []
        for event in self.session.receive_data(data):
            if isinstance(event, Ok):
                if isinstance(event, OkAnswer) and isinstance(event.answers, Login):
                    lines.append(self._notice(f"logged in as {event.answers.name}", wall))
                else:  # a DM delivered, QUIT accepted
                    lines.append(self._notice("ok", wall))
                continue
            if isinstance(event, Error):
                lines.append(format_event(event, wall, self.colour) or "")
                if self._login_refused(event):
                    lines.append(self._notice("not logged in: try /login ANOTHER_NAME", wall))
                continue
            if isinstance(event, Pong) and event.token is not None:
                sent = self._pings.pop(event.token, None)
                if sent is not None:
                    rtt = (now - sent) * 1000
                    lines.append(self._notice(f"pong from the server in {rtt:.1f} ms", wall))
                    continue
                if event.token in self._quiet:
                    self._quiet.discard(event.token)
                    if event.token.startswith("who-"):
                        self._who_out -= 1
                    continue
            if isinstance(event, User) and self._who_out:
                continue  # part of a /who: shown as one UserList line
            if isinstance(event, (IdleTimeout, ServerShutdown, SlowConsumer)):
                self.close_explained = True
            line = format_event(event, wall, self.colour)
            if line is not None:
                lines.append(line)
        return lines

    def receive_eof(self, wall: float) -> list[str]:
        """The server closed the connection: what to tell the user."""
        lines = [
            line
            for event in self.session.receive_eof()
            if (line := format_event(event, wall, self.colour)) is not None
        ]
        if self.leaving:
            lines.append(self._notice("disconnected", wall))
        else:
            lines.append(self._notice("connection closed by the server", wall))
        return lines

    # -------------------------------------------------------------- timer

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` should run next (keepalive), or ``None``."""
        if self.keepalive <= 0 or self.session.state is ClientState.CLOSED:
            return None
        return self._last_sent + self.keepalive

    def handle_timeout(self, now: float) -> None:
        """Send a keepalive ``PING`` if nothing was sent for ``keepalive`` seconds."""
        deadline = self.next_deadline()
        if deadline is not None and now >= deadline:
            token = f"keepalive-{next(self._ids)}"
            self._quiet.add(token)
            self._write(self.session.send(Ping(token)), now)

    # ------------------------------------------------------------- output

    def data_to_send(self) -> bytes:
        """The bytes queued for the server, removed from the queue."""
        data = bytes(self._out)
        self._out.clear()
        return data

    # ---------------------------------------------------------- internals

    def _closed(self) -> bool:
        return self.session.state is ClientState.CLOSED

    def _notice(self, text: str, wall: float) -> str:
        return notice(text, wall, self.colour)

    def _login_refused(self, event: Error) -> bool:
        """Whether ``event`` refused a LOGIN and left the session logged out."""
        return (
            isinstance(event, ErrorAnswer)
            and isinstance(event.answers, Login)
            and self.session.state is not ClientState.LOGGED_IN
        )

    def _write(self, data: bytes, now: float) -> None:
        self._out += data
        self._last_sent = now

    def _send(self, command: Command, now: float, wall: float) -> list[str]:
        try:
            self._write(self.session.send(command), now)
        except LocalProtocolError as exc:
            return [self._notice(f"not sent: {exc}", wall)]
        return []

    def _build_and_send(self, build: Callable[[], Command], now: float, wall: float) -> list[str]:
        try:
            command = build()
        except ValueError as exc:  # control characters, a space in a name ...
            return [self._notice(f"not sent: {exc}", wall)]
        return self._send(command, now, wall)

    def _login(self, name: str, now: float, wall: float) -> list[str]:
        if self.session.state is ClientState.LOGGED_IN:
            return [self._notice(f"already logged in as {self.session.username}", wall)]
        if self.session.state is ClientState.LOGGING_IN:
            return [self._notice("a login is already under way", wall)]
        if not is_valid_username(name):
            return [self._notice(f"{name!r} is not a valid name: {NAME_RULE}", wall)]
        return self._send(Login(name), now, wall)
