"""``chatproto-chat``: an interactive terminal client for any server of the protocol.

Owns three layers, each testable without the next:

* :func:`parse_input`: what the user typed (``hello``, ``/dm bob hi``,
  ``/who`` ...) as an :data:`InputAction`. Pure.
* :func:`format_event` and :class:`ChatClient`: what the server sent as lines
  for a human (name, timestamp, colour), plus the client's own bookkeeping
  around a :class:`~chatproto.ClientSession` (login, ``/ping`` round trips,
  ``/who``, keepalive). No I/O: fed text, bytes and the time; drained of bytes
  to send, like the core.
* :func:`run`: a thin asyncio driver moving bytes between a TCP socket, the
  terminal and :class:`ChatClient`. Under prompt_toolkit (the ``chat`` extra)
  incoming lines are printed above the prompt and never garble what the user is
  typing; without it, or with ``--plain``, or when stdin is not a terminal, it
  reads plain lines from stdin.

Nothing here assumes chatproto's own server: it needs only the wire protocol
of docs/protocol.md, and shows lines it does not understand as they are.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import itertools
import os
import re
import sys
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Union

from chatproto import (
    ClientEvent,
    ClientSession,
    ClientState,
    Command,
    DirectReceived,
    Error,
    IdleTimeout,
    Info,
    LocalProtocolError,
    Login,
    MessageReceived,
    Ok,
    Ping,
    Pong,
    Quit,
    SendDirect,
    SendMessage,
    ServerShutdown,
    UnknownLine,
    User,
    UserDisconnected,
    UserJoined,
    UserList,
    is_valid_username,
)

__all__ = [
    "AskPing",
    "AskWho",
    "BadInput",
    "ChatClient",
    "InputAction",
    "Leave",
    "LoginAs",
    "SendDm",
    "SendRaw",
    "SendText",
    "ShowHelp",
    "format_event",
    "main",
    "parse_input",
    "run",
    "sanitize",
]

DEFAULT_HOST: Final = "localhost"
DEFAULT_PORT: Final = 4000
#: Seconds of silence before the client sends a keepalive ``PING``. The
#: protocol's default idle timeout is 60 s (§12.2); 25 s keeps a session alive
#: even on a server configured with half of that.
DEFAULT_KEEPALIVE: Final = 25.0
#: Seconds to wait for the server to close the connection after ``QUIT``.
QUIT_GRACE: Final = 3.0

HELP_LINES: Final = (
    "text           send a message to everyone (start it with // to send a leading /)",
    "/dm NAME TEXT  send a direct message",
    "/who           list the users in the room",
    "/ping          measure the round trip to the server",
    "/login NAME    log in (again) under NAME, e.g. after 'username-taken'",
    "/raw LINE      send LINE to the server exactly as typed",
    "/quit          leave (so do Ctrl-D and Ctrl-C)",
)

# ------------------------------------------------------------------- input


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


# ------------------------------------------------------------------ output

# C0 but tab, DEL, C1: what a hostile or sloppy server could use to move the
# cursor or rewrite the screen. Our server refuses them (§2.2); others may not.
_CONTROL: Final = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")

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
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


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
    the command it answers (see :class:`ChatClient`).
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


# ------------------------------------------------------------------ client

_LOGIN_ERRORS: Final = frozenset({"username-taken", "invalid-username", "missing-argument"})


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
            return self._leave(now, wall)
        if self.session.state is ClientState.CLOSED:
            return [self._notice("the connection is closing; nothing more can be sent", wall)]
        if isinstance(action, SendRaw):
            if action.line.split(" ", 1)[0].upper() == "QUIT":
                self.leaving = True
            self._write(action.line.encode("utf-8", "surrogateescape") + b"\n", now)
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

    def receive_data(self, data: bytes, now: float, wall: float) -> list[str]:
        """The lines to show for ``data`` received from the server."""
        logging_in = self.session.state is ClientState.LOGGING_IN
        lines: list[str] = []
        for event in self.session.receive_data(data):
            if isinstance(event, Ok):
                if logging_in:
                    # Before login succeeds only LOGIN earns an OK (QUIT
                    # too, but then nothing follows), so this OK is its answer.
                    logging_in = False
                    lines.append(self._notice(f"logged in as {self.session.username}", wall))
                else:
                    lines.append(self._notice("ok", wall))
                continue
            if isinstance(event, Error) and logging_in and event.token in _LOGIN_ERRORS:
                logging_in = False
                lines.append(format_event(event, wall, self.colour) or "")
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
            if isinstance(event, (IdleTimeout, ServerShutdown)):
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

    def _notice(self, text: str, wall: float) -> str:
        return notice(text, wall, self.colour)

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
            return [
                self._notice(
                    f"{name!r} is not a valid name: use 1 to 32 letters, digits, _ or -", wall
                )
            ]
        return self._send(Login(name), now, wall)

    def _leave(self, now: float, wall: float) -> list[str]:
        self.leaving = True
        if self.session.state is ClientState.CLOSED:
            return []
        return self._send(Quit(), now, wall)


# ------------------------------------------------------------------ driver


class _PlainConsole:
    """Lines from stdin, printed lines to stdout. For pipes and dumb terminals."""

    def __init__(self) -> None:
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        # A daemon thread, reading the file descriptor (not sys.stdin, whose
        # lock would block interpreter exit), works for ttys, pipes and files
        # alike; loop.add_reader refuses regular files.
        thread = threading.Thread(target=self._read, args=(loop,), daemon=True)
        thread.start()

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(0, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                text = raw.removesuffix(b"\r").decode("utf-8", "replace")
                loop.call_soon_threadsafe(self._lines.put_nowait, text)
        if pending:
            loop.call_soon_threadsafe(self._lines.put_nowait, pending.decode("utf-8", "replace"))
        loop.call_soon_threadsafe(self._lines.put_nowait, None)

    async def read_line(self) -> str | None:
        return await self._lines.get()

    def show(self, line: str) -> None:
        with contextlib.suppress(BrokenPipeError):
            print(line, flush=True)


class _PromptConsole:
    """prompt_toolkit: a prompt that output printed meanwhile never garbles."""

    def __init__(self, prompt: Callable[[], str]) -> None:
        from prompt_toolkit import PromptSession  # noqa: PLC0415 - optional extra

        self._session: PromptSession[str] = PromptSession()
        self._prompt = prompt

    async def read_line(self) -> str | None:
        try:
            return await self._session.prompt_async(self._prompt)
        except (EOFError, KeyboardInterrupt):
            return None

    def show(self, line: str) -> None:
        print(line, flush=True)  # patch_stdout puts it above the prompt


@contextlib.asynccontextmanager
async def _console(
    mode: str, prompt: Callable[[], str]
) -> AsyncIterator[_PlainConsole | _PromptConsole]:
    if mode == "plain":
        yield _PlainConsole()
        return
    from prompt_toolkit.patch_stdout import patch_stdout  # noqa: PLC0415 - optional extra

    # raw=True lets our own ANSI colours through.
    with patch_stdout(raw=True):
        yield _PromptConsole(prompt)


async def run(
    host: str,
    port: int,
    name: str | None,
    *,
    mode: str = "plain",
    colour: bool = False,
    keepalive: float = DEFAULT_KEEPALIVE,
) -> int:
    """Connect, log in, and chat until the user leaves or the connection ends.

    ``mode`` is ``"prompt"`` (prompt_toolkit) or ``"plain"``. Returns the exit
    status: 0 when the user left, 1 when the connection was lost, 2 when it
    could not be made.
    """
    client = ChatClient(name, colour=colour, keepalive=keepalive)
    loop = asyncio.get_running_loop()

    def prompt() -> str:
        return f"{client.session.username or name or ''}> "

    async with _console(mode, prompt) as console:

        def show(lines: list[str]) -> None:
            for line in lines:
                console.show(line)

        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            show(
                [
                    notice(
                        f"cannot connect to {host}:{port}: {exc.strerror or exc}",
                        time.time(),
                        colour,
                    )
                ]
            )
            return 2
        show([notice(f"connected to {host}:{port}; /help lists the commands", time.time(), colour)])

        async def flush() -> None:
            data = client.data_to_send()
            if data:
                writer.write(data)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()

        async def network() -> None:
            while True:
                try:
                    data = await reader.read(65536)
                except ConnectionError:
                    data = b""
                if not data:
                    show(client.receive_eof(time.time()))
                    return
                show(client.receive_data(data, loop.time(), time.time()))
                await flush()

        async def keyboard() -> None:
            while not client.leaving:
                line = await console.read_line()
                if line is None:
                    line = "/quit"
                show(client.handle_input(line, loop.time(), time.time()))
                await flush()

        async def keepalive_timer() -> None:
            while (deadline := client.next_deadline()) is not None:
                await asyncio.sleep(max(0.0, deadline - loop.time()))
                client.handle_timeout(loop.time())
                await flush()

        show(client.start(loop.time(), time.time()))
        await flush()
        net = asyncio.create_task(network())
        keys = asyncio.create_task(keyboard())
        timer = asyncio.create_task(keepalive_timer())
        try:
            await asyncio.wait({net, keys}, return_when=asyncio.FIRST_COMPLETED)
            if keys.done() and not net.done():
                # The user left: QUIT is on its way; the server answers OK
                # and closes. Do not wait for a server that never does.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(net), QUIT_GRACE)
        finally:
            for task in (net, keys, timer):
                task.cancel()
            await asyncio.gather(net, keys, timer, return_exceptions=True)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        return 0 if client.leaving else 1


def _default_name() -> str | None:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        return None
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "", user)[:32]
    return cleaned or None


def _ask_name() -> str | None:
    from prompt_toolkit import prompt  # noqa: PLC0415 - optional extra

    default = _default_name() or ""
    while True:
        try:
            name = prompt("name: ", default=default).strip()
        except (EOFError, KeyboardInterrupt):
            return None
        if is_valid_username(name):
            return name
        print("use 1 to 32 letters, digits, _ or -")


def _want_colour(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return (
        callable(isatty)
        and bool(isatty())
        and not os.environ.get("NO_COLOR")
        and os.environ.get("TERM") != "dumb"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``chatproto-chat``."""
    parser = argparse.ArgumentParser(
        prog="chatproto-chat",
        description="Chat on a server of the chatproto line protocol.",
        epilog="Type /help once connected. Colour is used on a terminal unless NO_COLOR is set.",
    )
    parser.add_argument("host", nargs="?", default=DEFAULT_HOST, help="default: %(default)s")
    parser.add_argument(
        "port", nargs="?", type=int, default=DEFAULT_PORT, help="default: %(default)s"
    )
    parser.add_argument(
        "--name", help="log in under this name (asked for if missing on a terminal)"
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="read plain lines from stdin instead of an interactive prompt",
    )
    parser.add_argument("--no-color", action="store_true", help="never use colour")
    parser.add_argument(
        "--keepalive",
        type=float,
        default=DEFAULT_KEEPALIVE,
        metavar="SECONDS",
        help="PING after this much silence so the server keeps us (0: never; default %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.name is not None and not is_valid_username(args.name):
        parser.error(f"invalid --name {args.name!r}: use 1 to 32 letters, digits, _ or -")

    mode = "plain"
    if not args.plain and sys.stdin.isatty() and sys.stdout.isatty():
        try:
            import prompt_toolkit  # noqa: F401, PLC0415 - optional extra
        except ImportError:
            print(
                "(prompt_toolkit is not installed: plain line input; pip install 'chatproto[chat]')"
            )
        else:
            mode = "prompt"
    name = args.name
    if name is None:
        name = _ask_name() if mode == "prompt" else _default_name()
        if name is None and mode == "prompt":
            return 0
    colour = not args.no_color and _want_colour(sys.stdout)
    try:
        return asyncio.run(
            run(args.host, args.port, name, mode=mode, colour=colour, keepalive=args.keepalive)
        )
    except KeyboardInterrupt:  # Ctrl-C in plain mode
        return 0


if __name__ == "__main__":
    sys.exit(main())
