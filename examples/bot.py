"""A chat bot on :class:`chatproto.ClientSession`: answers ``!time`` and ``!users``.

The bot's logic (:class:`TimeAndUsersBot`) does no I/O: it turns the events a
:class:`~chatproto.ClientSession` parses into the bytes of its answers. The
loop under it is a plain blocking socket, because nothing more is needed; the
same class would sit as well under asyncio or a thread of a bigger program.

* ``!time`` in the room, or in a DM to the bot: the bot's local time, answered
  where it was asked.
* ``!users``: who is in the room. The protocol's ``WHO`` has no end marker,
  so the bot sends ``WHO`` then ``PING`` (:meth:`ClientSession.who`); replies
  come in order, so every ``USER`` line before the ``PONG`` belongs to the
  ``WHO``, and the session hands over one :class:`~chatproto.UserList`.

It works against any server of the protocol. It pings when it has been quiet
for a while, so that the server's idle timeout does not drop it, and on
SIGINT/SIGTERM it sends ``QUIT`` and leaves.

Run: ``python examples/bot.py [HOST] [PORT] [--name NAME]`` (default
``localhost 4000``, name ``bot``).
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import time
from collections import deque
from types import FrameType

from chatproto import (
    ClientEvent,
    ClientSession,
    ClientState,
    Command,
    DirectReceived,
    Error,
    Login,
    MessageReceived,
    Ping,
    Quit,
    SendDirect,
    SendMessage,
    ServerShutdown,
    UserList,
)

#: Seconds of silence before the bot pings: well inside the default 60 s idle
#: timeout of docs/protocol.md §12.2.
KEEPALIVE = 25.0


class TimeAndUsersBot:
    """The bot's brain: events in, bytes of answers out. No sockets, no clock."""

    def __init__(self, name: str) -> None:
        self.session = ClientSession()
        self.name = name
        # Who asked each !users still waiting for its UserList, oldest first:
        # None for the room, a name for a DM. Each who() yields one UserList.
        self._asked_users: deque[str | None] = deque()
        #: Set when the server refused our LOGIN (the ERR line).
        self.login_error: Error | None = None
        self.saw_shutdown = False

    def start(self) -> bytes:
        """The first bytes to send: ``LOGIN``."""
        return self.session.send(Login(self.name))

    def keepalive(self) -> bytes:
        """A ``PING`` to show the server we are alive."""
        return self.session.send(Ping("keepalive"))

    def quit(self) -> bytes:
        """``QUIT``, unless the session is already over."""
        if self.session.state is ClientState.CLOSED:
            return b""
        return self.session.send(Quit())

    def handle(self, event: ClientEvent, wall: float) -> bytes:
        """The bytes to send in answer to ``event``, received at ``wall`` (``time.time()``)."""
        if isinstance(event, (MessageReceived, DirectReceived)):
            # A DM is answered by DM, a room message in the room.
            private = isinstance(event, DirectReceived)
            command = event.text.strip().lower()
            if command == "!time":
                stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(wall))
                return self._say(event.sender, private, f"the time is {stamp}")
            if command == "!users":
                self._asked_users.append(event.sender if private else None)
                return self.session.who()
        elif isinstance(event, UserList) and self._asked_users:
            recipient = self._asked_users.popleft()
            text = f"users ({len(event.names)}): {', '.join(event.names)}"
            if recipient is None:
                return self.session.send(SendMessage(text))
            return self.session.send(SendDirect(recipient, text))
        elif isinstance(event, Error) and self.session.state is ClientState.CONNECTED:
            self.login_error = event  # the LOGIN was refused; nothing else is pending
        elif isinstance(event, ServerShutdown):
            self.saw_shutdown = True
        return b""

    def _say(self, sender: str, private: bool, text: str) -> bytes:
        command: Command = SendDirect(sender, text) if private else SendMessage(f"{sender}: {text}")
        return self.session.send(command)


def run(host: str, port: int, name: str) -> int:
    """Connect, log in and answer until the server or a signal ends it.

    Returns 0 after SIGINT/SIGTERM or a server shutdown, 1 when the login is
    refused or the connection is lost otherwise.
    """
    bot = TimeAndUsersBot(name)
    with socket.create_connection((host, port)) as sock:
        sock.sendall(bot.start())
        sock.settimeout(KEEPALIVE)
        announced = False
        try:
            while True:
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    sock.sendall(bot.keepalive())
                    continue
                if not data:
                    bot.session.receive_eof()
                    print("the server closed the connection", flush=True)
                    return 0 if bot.saw_shutdown else 1
                answer = b"".join(
                    bot.handle(e, time.time()) for e in bot.session.receive_data(data)
                )
                if answer:
                    sock.sendall(answer)
                if bot.login_error is not None:
                    print(f"login refused: {bot.login_error.token} {bot.login_error.text}")
                    return 1
                if not announced and bot.session.state is ClientState.LOGGED_IN:
                    announced = True
                    print(f"bot logged in as {bot.session.username} on {host}:{port}", flush=True)
        except KeyboardInterrupt:
            # Leave politely: QUIT, then read until the server closes (its OK
            # and anything queued before it), but not forever.
            sock.settimeout(2.0)
            try:
                sock.sendall(bot.quit())
                while sock.recv(65536):
                    pass
            except OSError:
                pass
            print("bot left", flush=True)
            return 0


def main(argv: list[str] | None = None) -> int:
    # Plain words: the module docstring is reStructuredText for the docs.
    parser = argparse.ArgumentParser(
        description="A chat bot that answers !time and !users, in the room or in a DM.",
        epilog="It works with any server of the protocol; Ctrl-C or SIGTERM sends QUIT.",
    )
    parser.add_argument("host", nargs="?", default="localhost", help="server (default localhost)")
    parser.add_argument("port", nargs="?", type=int, default=4000, help="its port (default 4000)")
    parser.add_argument("--name", default="bot", help="the bot's user name (default bot)")
    args = parser.parse_args(argv)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # SIGTERM leaves as politely as Ctrl-C

    signal.signal(signal.SIGTERM, on_signal)
    try:
        return run(args.host, args.port, args.name)
    except OSError as exc:
        print(f"cannot reach {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
