"""The chat in a web browser: a WebSocket bridge to any server of the chat protocol.

Browser users and telnet users talk to each other. For each browser that opens
the page's WebSocket, the bridge opens one TCP connection to the chat server,
so to the room a browser user is an ordinary client, and the chat server
needs no change at all (it may be any implementation of docs/protocol.md).

Two sans-IO libraries meet here, and the bridge only moves bytes between them:

* `wsproto <https://python-hyper.org/projects/wsproto/>`_ speaks WebSocket to
  the browser: the handshake, frames, pings and the closing handshake;
* :class:`chatproto.ClientSession` speaks the chat protocol to the room.

:class:`BridgedUser` translates between them for one browser: JSON messages
from the page become :mod:`chatproto` commands (validated, so a browser can
never put a raw line or a newline on the chat connection), and the events a
:class:`~chatproto.ClientSession` parses become JSON messages for the page.
It does no I/O, so it is tested without sockets as well as with them.

On the same port the bridge serves the page itself (``static/``) over plain
HTTP: ``GET /`` and the files it loads; ``GET /ws`` is the WebSocket.

Only pages from the origins in ``--allow-origin`` (by default the bridge's
own address) may open the WebSocket: the browser sends the page's origin, and
comparing it with the ``Host`` header would let a DNS-rebinding page through
(its origin and the ``Host`` it sends are both the attacker's name).

The JSON the page sends: ``{"type": "login", "name": N}``, ``{"type": "msg",
"text": T}``, ``{"type": "dm", "to": N, "text": T}``, ``{"type": "who"}``.
What it receives: ``ready`` (the chat connection is open), ``welcome``
(logged in, with ``name``), ``msg`` and ``dm`` (``from``, ``text``), ``info``
(``text``), ``users`` (``names``), ``error`` (``token``, ``text``; ``login:
true`` when a login was refused), ``closed`` (``text``), after which the
bridge closes the WebSocket, and ``unreachable`` (``text``) when the chat
server could not be reached, after which the bridge closes the WebSocket
with code 1013, "try again later"; the page then reconnects with back-off.

Run: ``python examples/websocket_bridge/bridge.py --port 8080 --chat-port 4000``
then open http://127.0.0.1:8080/ (needs ``pip install 'chatproto[bridge]'``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    Ping,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

from chatproto import (
    ClientSession,
    ClientState,
    Command,
    DirectReceived,
    Error,
    IdleTimeout,
    Info,
    Login,
    MessageReceived,
    Ok,
    Quit,
    SendDirect,
    SendMessage,
    ServerShutdown,
    UnknownLine,
    UserDisconnected,
    UserJoined,
    UserList,
    is_valid_username,
)
from chatproto import Ping as ChatPing

STATIC: Final = Path(__file__).resolve().with_name("static")
#: What ``GET`` serves, by path: the file in ``static/`` and its media type.
PAGES: Final = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
    # Browsers ask for it whatever the page says.
    "/favicon.ico": ("favicon.svg", "image/svg+xml"),
}
#: Largest WebSocket message accepted from a browser. A chat line is at most
#: 4096 bytes on our server (§1.4); JSON quoting can double that. Anything
#: much bigger is not a chat message, and would otherwise be buffered whole.
MAX_MESSAGE_BYTES: Final = 64 * 1024
#: Largest HTTP request head; a browser's is well under 8 KiB.
MAX_HEAD_BYTES: Final = 16 * 1024
#: Seconds a client gets to send its request head (slow clients hold sockets).
HEAD_TIMEOUT: Final = 10.0
#: Seconds of silence towards the chat server before a keepalive PING, well
#: inside the protocol's default 60 s idle timeout (§12.2).
KEEPALIVE: Final = 25.0

_LOGIN_ERRORS: Final = frozenset({"username-taken", "invalid-username", "missing-argument"})
#: WebSocket close code 1013, "try again later": the chat server is unreachable.
TRY_AGAIN_LATER: Final = 1013
#: Ports a URL may leave out.
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

log = logging.getLogger("websocket_bridge")

JSON = dict[str, Any]


class BridgedUser:
    """One browser user on the chat: JSON from the page in, chat bytes out, and back.

    No I/O. :meth:`from_browser` and :meth:`from_server` return the bytes for
    the chat server and the JSON messages for the page that each input causes.
    """

    def __init__(self) -> None:
        self.session = ClientSession()
        self.last_sent = 0.0

    def from_browser(self, text: str, now: float) -> tuple[bytes, list[JSON]]:
        """One WebSocket text message from the page, received at monotonic ``now``."""
        try:
            request = json.loads(text)
            kind = request["type"]
            command: Command
            if kind == "login":
                name = str(request["name"])
                if not is_valid_username(name):
                    text = "use 1 to 32 letters, digits, _ or -"
                    return b"", [_error("invalid-username", text, login=True)]
                command = Login(name)
            elif kind == "msg":
                command = SendMessage(str(request["text"]))
            elif kind == "dm":
                command = SendDirect(str(request["to"]), str(request["text"]))
            elif kind == "who":
                return self._send_who(now), []
            else:
                return b"", [_error("bad-request", f"unknown message type {kind!r}")]
        except (ValueError, KeyError, TypeError) as exc:  # bad JSON, field or value
            return b"", [_error("bad-request", f"{type(exc).__name__}: {exc}")]
        if self.session.state is ClientState.CLOSED:
            return b"", []
        if isinstance(command, Login) and self.session.state is not ClientState.CONNECTED:
            return b"", [_error("bad-request", "a login is under way or done", login=True)]
        return self._send(self.session.send(command), now), []

    def from_server(self, data: bytes, now: float) -> tuple[bytes, list[JSON]]:
        """Bytes from the chat server: the bytes to answer with and the JSON for the page."""
        logging_in = self.session.state is ClientState.LOGGING_IN
        answer = b""
        page: list[JSON] = []
        for event in self.session.receive_data(data):
            if isinstance(event, MessageReceived):
                page.append({"type": "msg", "from": event.sender, "text": event.text})
            elif isinstance(event, DirectReceived):
                page.append({"type": "dm", "from": event.sender, "text": event.text})
            elif isinstance(event, UserList):
                page.append({"type": "users", "names": list(event.names)})
            elif isinstance(event, (UserJoined, UserDisconnected)):
                verb = "joined" if isinstance(event, UserJoined) else "left"
                page.append({"type": "info", "text": f"{event.name} {verb}"})
                # Ask again rather than patch a local list: a WHO sent now
                # answers with a snapshot taken after this change.
                answer += self._send_who(now)
            elif isinstance(event, Ok) and logging_in:
                # Before login succeeds only LOGIN earns an OK: this answers it.
                logging_in = False
                page.append({"type": "welcome", "name": self.session.username})
                answer += self._send_who(now)
            elif isinstance(event, Error):
                login = logging_in and event.token in _LOGIN_ERRORS
                logging_in = logging_in and not login
                page.append(_error(event.token, event.text, login=login))
            elif isinstance(event, ServerShutdown):
                page.append({"type": "info", "text": "the chat server is shutting down"})
            elif isinstance(event, IdleTimeout):
                page.append({"type": "info", "text": "the chat server closed an idle connection"})
            elif isinstance(event, Info):
                page.append({"type": "info", "text": event.text})
            elif isinstance(event, UnknownLine):
                page.append({"type": "info", "text": event.line})
            # Ok (a DM delivered), Pong (keepalive, end of WHO) and User
            # (folded into UserList) need nothing on the page.
        return answer, page

    def server_closed(self) -> list[JSON]:
        """The chat server closed the connection: the last message for the page."""
        self.session.receive_eof()
        return [{"type": "closed", "text": "the chat server closed the connection"}]

    def keepalive(self, now: float) -> bytes:
        """A PING if nothing was sent for :data:`KEEPALIVE` seconds."""
        if self.session.state is ClientState.CLOSED or now - self.last_sent < KEEPALIVE:
            return b""
        return self._send(self.session.send(ChatPing("keepalive")), now)

    def leave(self) -> bytes:
        """``QUIT``, when the browser has gone; nothing if the session is over."""
        if self.session.state is ClientState.CLOSED:
            return b""
        return self.session.send(Quit())

    def _send_who(self, now: float) -> bytes:
        if self.session.state is not ClientState.LOGGED_IN:
            return b""
        return self._send(self.session.who(), now)

    def _send(self, data: bytes, now: float) -> bytes:
        self.last_sent = now
        return data


def _error(token: str, text: str, *, login: bool = False) -> JSON:
    return {"type": "error", "token": token, "text": text, "login": login}


# ----------------------------------------------------------------- the I/O


class Bridge:
    """The listening side: HTTP for the page, WebSocket for the chat."""

    def __init__(self, chat_host: str, chat_port: int, origins: Iterable[str] = ()) -> None:
        self.chat_host = chat_host
        self.chat_port = chat_port
        #: The origins whose pages may open the WebSocket, normalised.
        self.origins = frozenset(normalise_origin(o) for o in origins)
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One browser connection: a page request or a WebSocket."""
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            method, path, headers = _parse_head(head)
            if path == "/ws" and "websocket" in headers.get("upgrade", "").lower():
                origin = headers.get("origin")
                if not origin_allowed(origin, self.origins):
                    log.warning("refused a WebSocket from origin %s (not allowed)", origin)
                    _respond(writer, 403, "text/plain", b"cross-origin WebSocket refused\n")
                else:
                    await self.websocket(head, reader, writer)
            elif method != "GET":
                _respond(writer, 405, "text/plain", b"only GET\n")
            elif path in PAGES:
                name, media_type = PAGES[path]
                _respond(writer, 200, media_type, (STATIC / name).read_bytes())
            else:
                _respond(writer, 404, "text/plain", b"not found\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
            pass  # not HTTP, too big, or too slow: just close
        except ValueError:
            _respond(writer, 400, "text/plain", b"bad request\n")
        except ConnectionError:
            pass
        finally:
            self.tasks.discard(task)
            writer.close()

    async def websocket(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Bridge one WebSocket to one new chat connection until either ends."""
        ws = WSConnection(ConnectionType.SERVER)
        try:
            ws.receive_data(head)
            requests = [e for e in ws.events() if isinstance(e, Request)]
        except RemoteProtocolError:
            _respond(writer, 400, "text/plain", b"bad WebSocket handshake\n")
            return
        if not requests:
            return
        try:
            chat_reader, chat_writer = await asyncio.open_connection(self.chat_host, self.chat_port)
        except OSError as exc:
            # Accept, then say why and close with "try again later": a refused
            # handshake reaches the page as a bare 1006, with no reason at all.
            where = f"{self.chat_host}:{self.chat_port}"
            log.warning("chat server %s is unreachable: %s", where, exc.strerror or exc)
            writer.write(ws.send(AcceptConnection()))
            text = "the chat server cannot be reached"  # where is for the log, not the world
            writer.write(ws.send(Message(data=json.dumps({"type": "unreachable", "text": text}))))
            writer.write(ws.send(CloseConnection(TRY_AGAIN_LATER, "chat server unreachable")))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            return
        writer.write(ws.send(AcceptConnection()))
        user = BridgedUser()
        loop = asyncio.get_running_loop()

        def to_page(messages: list[JSON]) -> None:
            if ws.state is ConnectionState.OPEN:
                for message in messages:
                    writer.write(ws.send(Message(data=json.dumps(message))))

        to_page([{"type": "ready"}])

        def to_chat(data: bytes) -> None:
            if data and not chat_writer.is_closing():
                chat_writer.write(data)

        async def browser_to_chat() -> None:
            parts: list[str] = []
            size = 0
            while True:
                data = await reader.read(65536)
                ws.receive_data(data or None)
                for event in ws.events():
                    if isinstance(event, TextMessage):
                        parts.append(event.data)
                        size += len(event.data)
                        if size > MAX_MESSAGE_BYTES:
                            writer.write(ws.send(CloseConnection(1009, "message too big")))
                            return
                        if event.message_finished:
                            answer, page = user.from_browser("".join(parts), loop.time())
                            parts.clear()
                            size = 0
                            to_chat(answer)
                            to_page(page)
                    elif isinstance(event, Ping):
                        writer.write(ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        if ws.state is ConnectionState.REMOTE_CLOSING:
                            writer.write(ws.send(event.response()))
                        return
                if not data:
                    return
                await writer.drain()

        async def chat_to_browser() -> None:
            while True:
                data = await chat_reader.read(65536)
                if not data:
                    to_page(user.server_closed())
                    return
                answer, page = user.from_server(data, loop.time())
                to_chat(answer)
                to_page(page)
                await writer.drain()

        async def keepalive() -> None:
            while True:
                await asyncio.sleep(max(1.0, user.last_sent + KEEPALIVE - loop.time()))
                to_chat(user.keepalive(loop.time()))

        tasks = [asyncio.create_task(f()) for f in (browser_to_chat, chat_to_browser, keepalive)]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Whoever ended first, end the other side politely: QUIT to the
            # room (which then says "<name> disconnected"), a close frame to
            # the browser ("going away" if the bridge itself is stopping).
            to_chat(user.leave())
            if ws.state is ConnectionState.OPEN:
                writer.write(ws.send(CloseConnection(1001, "bridge closing")))
            chat_writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.drain()


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """Method, path and lower-cased headers of an HTTP request head; ValueError if bad."""
    if len(head) > MAX_HEAD_BYTES:
        raise ValueError("request head too big")
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(f"not HTTP/1.x: {version!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return method, urlsplit(target).path, headers


def normalise_origin(origin: str) -> str:
    """``scheme://host:port`` in lower case with the port spelled out; ValueError if not one.

    ``http://LocalHost`` and ``http://localhost:80/`` are the same origin.
    """
    parts = urlsplit(origin.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host or parts.path not in ("", "/"):
        raise ValueError(f"not an http(s) origin: {origin!r}")
    port = parts.port or _DEFAULT_PORTS[scheme]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def origin_allowed(origin: str | None, allowed: frozenset[str]) -> bool:
    """Whether a WebSocket request from a page of ``origin`` may use the bridge.

    Without this check any web site a user visits could open the bridge in
    the user's name. The ``Host`` header proves nothing: a DNS-rebinding page
    sends its own name as both. Non-browser clients send no Origin and are let
    through; a browser sends ``null`` from sandboxed or file pages, refused.
    """
    if origin is None:
        return True
    try:
        return normalise_origin(origin) in allowed
    except ValueError:
        return False


def own_origins(host: str, port: int) -> list[str]:
    """The origins of the bridge's own page, served on ``host:port``.

    A loopback address is also reached as ``localhost``; an address that
    means "every interface" names no page, so only loopback is implied and
    other names must be given with ``--allow-origin``.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a name
        return [f"http://{host}:{port}"]
    if address.is_loopback or address.is_unspecified:
        return [f"http://localhost:{port}", f"http://127.0.0.1:{port}", f"http://[::1]:{port}"]
    return [f"http://{host}:{port}" if address.version == 4 else f"http://[{host}]:{port}"]


def _respond(writer: asyncio.StreamWriter, status: int, media_type: str, body: bytes) -> None:
    reasons = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found"}
    reason = reasons.get(status, "Method Not Allowed")
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\n"
        f"Content-Type: {media_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Content-Security-Policy: default-src 'self'\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "Connection: close\r\n\r\n".encode("latin-1")
        + body
    )


async def serve(
    host: str, port: int, chat_host: str, chat_port: int, origins: list[str] | None = None
) -> None:
    """Serve until SIGINT/SIGTERM; then close every bridged connection politely.

    ``origins``: the pages that may open the WebSocket; None means the
    bridge's own address (see :func:`own_origins`).
    """
    bridge = Bridge(chat_host, chat_port)
    listener = await asyncio.start_server(bridge.handle, host, port, limit=MAX_HEAD_BYTES)
    bound = listener.sockets[0].getsockname()
    # Known only now that the port is (port 0 picks one).
    allowed = own_origins(host, bound[1]) if origins is None else origins
    bridge.origins = frozenset(normalise_origin(o) for o in allowed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(
        f"websocket_bridge listening on http://{bound[0]}:{bound[1]}/ "
        f"(chat server {chat_host}:{chat_port})",
        flush=True,
    )
    log.info("WebSocket allowed from: %s", ", ".join(sorted(bridge.origins)))
    await stop.wait()
    listener.close()
    for task in list(bridge.tasks):
        task.cancel()
    if bridge.tasks:
        # Each connection's cleanup sends QUIT and a close frame; not forever.
        await asyncio.wait(list(bridge.tasks), timeout=2.0)
    print("websocket_bridge stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="The chat in a web browser: a WebSocket bridge to any chat server."
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address for the page and WebSocket (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free one (default 8080)")
    parser.add_argument("--chat-host", default="localhost", help="chat server (default localhost)")
    parser.add_argument("--chat-port", type=int, default=4000, help="its port (default 4000)")
    parser.add_argument(
        "--allow-origin",
        action="append",
        metavar="ORIGIN",
        help="a page origin that may open the WebSocket, e.g. https://chat.example.org; "
        "repeatable (default: the bridge's own address, with localhost for loopback)",
    )
    args = parser.parse_args(argv)
    for origin in args.allow_origin or ():
        try:
            normalise_origin(origin)
        except ValueError as exc:
            parser.error(f"--allow-origin: {exc}")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(args.host, args.port, args.chat_host, args.chat_port, args.allow_origin))
    return 0


if __name__ == "__main__":
    sys.exit(main())
