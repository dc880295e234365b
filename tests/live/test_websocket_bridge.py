"""examples/websocket_bridge: browser users and TCP users in one room.

Three levels: the translation (:class:`BridgedUser`) and the origin rules
without sockets; the running bridge driven by a small wsproto WebSocket
client; and the real page in headless Chromium (Debian's ``chromium``, driven
by Playwright), with a TCP user on the other side, and a chat server that is
down, then up, then restarted. Only the last needs Chromium, and it skips,
saying why, where Chromium is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from chatproto import ServerConfig

from .programs import DEADLINE, EXAMPLES, LineClient, Proc, running, start_server

pytest.importorskip("wsproto", reason="the bridge needs wsproto: pip install 'chatproto[bridge]'")

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    RejectConnection,
    Request,
    TextMessage,
)

BRIDGE_PY = EXAMPLES / "websocket_bridge" / "bridge.py"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and typing look it up
    spec.loader.exec_module(module)
    return module


bridge = _load("websocket_bridge", BRIDGE_PY)
selectors_server = _load("selectors_server", EXAMPLES / "selectors_server.py")

# ------------------------------------------------------------- translation


def _user_logged_in() -> Any:
    user = bridge.BridgedUser()
    data, page = user.from_browser('{"type": "login", "name": "webby"}', 0.0)
    assert (data, page) == (b"LOGIN webby\n", [])
    data, page = user.from_server(b"OK\n", 0.1)
    assert data == b"WHO\nPING who\n"  # the user list, right away
    assert page == [{"type": "welcome", "name": "webby"}]
    return user


def test_browser_messages_become_commands() -> None:
    user = _user_logged_in()
    assert user.from_browser('{"type": "msg", "text": " hi  all "}', 1.0) == (
        b"MSG  hi  all \n",
        [],
    )
    assert user.from_browser('{"type": "dm", "to": "bob", "text": "psst"}', 1.0) == (
        b"DM bob psst\n",
        [],
    )
    assert user.from_browser('{"type": "who"}', 1.0) == (b"WHO\nPING who\n", [])


@pytest.mark.parametrize(
    "request_text",
    [
        '{"type": "msg", "text": "hi\\nQUIT"}',  # a second line smuggled in
        '{"type": "msg", "text": "\\u001b[2J"}',
        '{"type": "dm", "to": "bob carol", "text": "x"}',
        '{"type": "msg", "text": ""}',
        '{"type": "msg"}',
        '{"type": "dance"}',
        "not json",
        "[]",
    ],
)
def test_bad_browser_messages_never_reach_the_chat(request_text: str) -> None:
    user = _user_logged_in()
    data, page = user.from_browser(request_text, 1.0)
    assert data == b""
    assert [m["type"] for m in page] == ["error"]
    assert page[0]["token"] == "bad-request"


def test_login_errors_let_the_page_retry() -> None:
    user = bridge.BridgedUser()
    assert user.from_browser('{"type": "login", "name": "no spaces"}', 0.0) == (
        b"",
        [
            {
                "type": "error",
                "token": "invalid-username",
                "text": "use 1 to 32 letters, digits, _ or -",
                "login": True,
            }
        ],
    )
    user.from_browser('{"type": "login", "name": "bob"}', 0.0)
    data, page = user.from_server(b"ERR username-taken that name is in use\n", 0.1)
    assert data == b""
    assert page == [
        {"type": "error", "token": "username-taken", "text": "that name is in use", "login": True}
    ]
    assert user.from_browser('{"type": "login", "name": "bob2"}', 0.2)[0] == b"LOGIN bob2\n"


def test_server_lines_become_page_messages() -> None:
    user = _user_logged_in()
    data, page = user.from_server(
        b"USER webby\nUSER bob\nPONG who\nMSG bob hi\nDM bob psst\nINFO carol joined\n"
        b"ERR user-not-found no such user\nOK\nINFO carol disconnected\nWelcome!\n",
        1.0,
    )
    assert page == [
        {"type": "users", "names": ["webby", "bob"]},
        {"type": "msg", "from": "bob", "text": "hi"},
        {"type": "dm", "from": "bob", "text": "psst"},
        {"type": "info", "text": "carol joined"},
        {"type": "error", "token": "user-not-found", "text": "no such user", "login": False},
        {"type": "info", "text": "carol left"},
        {"type": "info", "text": "Welcome!"},
    ]
    # Each change in the room asks for a fresh user list.
    assert data == b"WHO\nPING who\n" * 2


def test_keepalive_and_leaving() -> None:
    user = _user_logged_in()
    assert user.keepalive(10.0) == b""
    assert user.keepalive(0.1 + bridge.KEEPALIVE) == b"PING keepalive\n"
    assert user.leave() == b"QUIT\n"
    assert user.leave() == b""
    assert user.keepalive(1000.0) == b""
    assert user.server_closed() == [
        {"type": "closed", "text": "the chat server closed the connection"}
    ]


# ------------------------------------------------------------------ origins


def test_origins_are_compared_normalised() -> None:
    normal = bridge.normalise_origin
    assert normal("http://LocalHost") == normal("http://localhost:80/") == "http://localhost:80"
    assert normal("https://chat.example.org") == "https://chat.example.org:443"
    assert normal("http://[::1]:8080") == "http://[::1]:8080"
    for bad in ("null", "file://", "ftp://x", "http://x/page", "localhost:8080"):
        with pytest.raises(ValueError, match="not an http"):
            normal(bad)
    allowed = frozenset([normal("http://127.0.0.1:8080")])
    assert bridge.origin_allowed("http://127.0.0.1:8080", allowed)
    assert bridge.origin_allowed(None, allowed)  # not a browser
    for refused in ("http://127.0.0.1:8081", "https://127.0.0.1:8080", "http://evil.example"):
        assert not bridge.origin_allowed(refused, allowed)
    assert not bridge.origin_allowed("null", allowed)


def test_the_default_allows_only_the_bridges_own_page() -> None:
    loopback = ["http://localhost:8080", "http://127.0.0.1:8080", "http://[::1]:8080"]
    assert bridge.own_origins("127.0.0.1", 8080) == loopback
    assert bridge.own_origins("0.0.0.0", 8080) == loopback  # names no page: loopback only
    assert bridge.own_origins("192.0.2.7", 80) == ["http://192.0.2.7:80"]
    assert bridge.own_origins("chat.example.org", 80) == ["http://chat.example.org:80"]


# ------------------------------------------------- the bridge, over sockets


@contextmanager
def bridge_for(chat_port: int, *extra: str) -> Iterator[tuple[Proc, int]]:
    args = [sys.executable, str(BRIDGE_PY), "--port", "0", "--chat-host", "127.0.0.1"]
    with running([*args, "--chat-port", str(chat_port), *extra]) as proc:
        match = proc.wait_for(r"listening on http://127\.0\.0\.1:(\d+)/")
        yield proc, int(match.group(1))


@contextmanager
def refused_port() -> Iterator[socket.socket]:
    """A port of 127.0.0.1 where connections are refused until the test calls ``listen()``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock
    finally:
        sock.close()


@contextmanager
def chat_server_on(listener: socket.socket) -> Iterator[Any]:
    """examples/selectors_server.py, in a thread, serving the test's listening socket.

    It gets a duplicate, which its shutdown closes: the test's socket stays
    listening, so the port survives a "restart" without being given up.
    """
    dup = socket.socket(fileno=os.dup(listener.fileno()))
    dup.setblocking(False)
    server = selectors_server.SelectorsServer(dup, ServerConfig())
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.request_stop()
        thread.join(DEADLINE)
        assert not thread.is_alive(), "the chat server did not stop"


def _http(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


class WsClient:
    """A WebSocket client on wsproto, speaking the bridge's JSON."""

    def __init__(self, port: int, origin: str | None = None, host: str | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.ws = WSConnection(ConnectionType.CLIENT)
        headers = [] if origin is None else [(b"Origin", origin.encode())]
        host = f"127.0.0.1:{port}" if host is None else host
        self.sock.sendall(self.ws.send(Request(host=host, target="/ws", extra_headers=headers)))
        self.pending: list[Any] = []
        self.closed: CloseConnection | None = None
        self.accepted = False
        self.rejected: RejectConnection | None = None
        self._pump(lambda: self.accepted or self.rejected is not None)
        #: The bridge's first message once accepted: ``ready`` or ``unreachable``.
        self.first: dict[str, Any] | None = None
        if self.accepted:
            self._pump(lambda: bool(self.pending))
            self.first = self.pending.pop(0)

    def __enter__(self) -> WsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def _pump(self, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + DEADLINE
        parts: list[str] = []
        while not done():
            assert self.closed is None, f"the bridge closed the WebSocket: {self.closed}"
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out; received {self.pending}"
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            self.ws.receive_data(data or None)
            for event in self.ws.events():
                if isinstance(event, AcceptConnection):
                    self.accepted = True
                elif isinstance(event, RejectConnection):
                    self.rejected = event
                elif isinstance(event, TextMessage):
                    parts.append(event.data)
                    if event.message_finished:
                        self.pending.append(json.loads("".join(parts)))
                        parts.clear()
                elif isinstance(event, CloseConnection):
                    self.closed = event
                    if self.ws.state is ConnectionState.REMOTE_CLOSING:
                        self.sock.sendall(self.ws.send(event.response()))
                    return

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(self.ws.send(Message(data=json.dumps(message))))

    def expect(self, wanted: dict[str, Any]) -> list[Any]:
        """Messages up to and including the first one containing ``wanted``'s items."""

        def found() -> bool:
            return any(wanted.items() <= m.items() for m in self.pending)

        self._pump(found)
        for index, message in enumerate(self.pending):
            if wanted.items() <= message.items():
                seen, self.pending = self.pending[: index + 1], self.pending[index + 1 :]
                return seen
        raise AssertionError(f"never received {wanted}")  # pragma: no cover

    def wait_closed(self) -> CloseConnection:
        self._pump(lambda: self.closed is not None)
        assert self.closed is not None
        return self.closed

    def close(self) -> None:
        self.sock.sendall(self.ws.send(CloseConnection(1000, "bye")))
        self.wait_closed()


def test_bridge_serves_the_page_and_guards_the_websocket() -> None:
    with start_server("selectors") as (server, chat_port), bridge_for(chat_port) as (proc, port):
        page = _http(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert page.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Type: text/html; charset=utf-8" in page
        assert b"<title>chatproto</title>" in page
        assert _http(port, b"GET /app.js?v=1 HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
            b"HTTP/1.1 200 OK"
        )
        assert _http(port, b"GET /../bridge.py HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404")
        assert _http(port, b"POST / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405")
        assert _http(port, b"nonsense\r\n\r\n").startswith(b"HTTP/1.1 400")
        # Another web site's page may not use the bridge in its visitor's name.
        with WsClient(port, origin="http://evil.example") as evil:
            assert evil.rejected is not None
            assert evil.rejected.status_code == 403
        assert proc.interrupt() == 0
        assert server.interrupt() == 0


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        # DNS rebinding: evil.example resolves to 127.0.0.1, so the page's
        # origin and the Host header agree, and both are the attacker's.
        ("http://evil.example", "evil.example"),
        ("http://evil.example:{port}", "evil.example:{port}"),
        ("null", None),  # a sandboxed frame or a file
        ("http://127.0.0.1:1", None),  # another port is another origin
    ],
)
def test_only_allowed_origins_open_the_websocket(origin: str, host: str | None) -> None:
    with start_server("selectors") as (server, chat_port), bridge_for(chat_port) as (proc, port):
        with WsClient(port, origin.format(port=port), host and host.format(port=port)) as web:
            assert web.rejected is not None and web.rejected.status_code == 403
        proc.wait_for(r"refused a WebSocket from origin")
        for own in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
            with WsClient(port, own) as web:
                assert web.first == {"type": "ready"}
        assert proc.interrupt() == 0
        assert server.interrupt() == 0


def test_allow_origin_replaces_the_default() -> None:
    site = "https://chat.example.org"
    with (
        start_server("selectors") as (server, chat_port),
        bridge_for(chat_port, "--allow-origin", site) as (proc, port),
    ):
        with WsClient(port, site) as web:
            assert web.first == {"type": "ready"}
        with WsClient(port, f"http://127.0.0.1:{port}") as web:
            assert web.rejected is not None and web.rejected.status_code == 403
        assert proc.interrupt() == 0
        assert server.interrupt() == 0


def test_an_unreachable_chat_server_is_logged_and_said() -> None:
    with refused_port() as chat, bridge_for(chat.getsockname()[1]) as (proc, port):
        with WsClient(port, f"http://127.0.0.1:{port}") as web:
            assert web.first is not None and web.first["type"] == "unreachable"
            assert "cannot be reached" in web.first["text"]
            assert web.wait_closed().code == 1013  # try again later
        proc.wait_for(rf"chat server 127\.0\.0\.1:{chat.getsockname()[1]} is unreachable")
        assert proc.interrupt() == 0


@pytest.mark.parametrize("kind", ["selectors", "chatproto-serve"])
def test_websocket_user_and_tcp_user_talk(kind: str) -> None:
    with (
        start_server(kind) as (server, chat_port),
        bridge_for(chat_port) as (proc, port),
        LineClient(chat_port) as tcp,
    ):
        tcp.login("tcpuser")
        with WsClient(port, origin=f"http://127.0.0.1:{port}") as web:
            web.send({"type": "login", "name": "tcpuser"})
            assert web.expect({"type": "error"})[-1]["token"] == "username-taken"
            web.send({"type": "login", "name": "webby"})
            assert web.expect({"type": "users"}) == [
                {"type": "welcome", "name": "webby"},
                {"type": "users", "names": ["tcpuser", "webby"]},
            ]
            assert tcp.expect("INFO webby joined") == ["INFO webby joined"]

            web.send({"type": "msg", "text": "hello from the web"})
            web.send({"type": "dm", "to": "TCPUSER", "text": "psst"})
            assert tcp.expect("DM webby psst") == ["MSG webby hello from the web", "DM webby psst"]
            tcp.send("MSG hi web", "DM webby secret")
            assert web.expect({"type": "dm"}) == [
                {"type": "msg", "from": "tcpuser", "text": "hi web"},
                {"type": "dm", "from": "tcpuser", "text": "secret"},
            ]
            web.send({"type": "msg", "text": "line\nQUIT"})
            assert web.expect({"type": "error"})[-1]["token"] == "bad-request"

            with LineClient(chat_port) as carol:
                carol.login("carol")
                assert web.expect({"type": "users"})[-2:] == [
                    {"type": "info", "text": "carol joined"},
                    {"type": "users", "names": ["tcpuser", "webby", "carol"]},
                ]
            assert web.expect({"type": "users"})[-2:] == [
                {"type": "info", "text": "carol left"},
                {"type": "users", "names": ["tcpuser", "webby"]},
            ]
            web.close()
        # The browser left: its chat connection QUITs.
        assert tcp.expect("INFO webby disconnected")[-1] == "INFO webby disconnected"
        assert tcp.sync() == []
        tcp.close()
        assert proc.interrupt() == 0
        assert server.interrupt() == 0


def test_chat_server_shutdown_reaches_the_browser() -> None:
    with start_server("asyncio") as (server, chat_port), bridge_for(chat_port) as (proc, port):
        with WsClient(port) as web:
            web.send({"type": "login", "name": "webby"})
            web.expect({"type": "users"})
            assert server.interrupt() == 0
            assert web.expect({"type": "closed"}) == [
                {"type": "info", "text": "the chat server is shutting down"},
                {"type": "closed", "text": "the chat server closed the connection"},
            ]
            assert web.wait_closed().code == 1001
        assert proc.interrupt() == 0


def test_stopping_the_bridge_says_goodbye_on_both_sides() -> None:
    with start_server("selectors") as (server, chat_port), LineClient(chat_port) as tcp:
        tcp.login("tcpuser")
        with bridge_for(chat_port) as (proc, port), WsClient(port) as web:
            web.send({"type": "login", "name": "webby"})
            web.expect({"type": "users"})
            assert proc.interrupt() == 0
            assert web.wait_closed().code == 1001
        assert tcp.expect("INFO webby disconnected")[-1] == "INFO webby disconnected"
        tcp.close()
        assert server.interrupt() == 0


# ------------------------------------------------------- the page, in Chromium


def test_browser_and_tcp_users_talk(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) "
            "to run the browser test"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    expect = sync_api.expect

    with (
        start_server("selectors") as (server, chat_port),
        bridge_for(chat_port) as (proc, port),
        LineClient(chat_port) as tcp,
        sync_api.sync_playwright() as playwright,
    ):
        tcp.login("tcpuser")
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            page = context.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on(
                "console",
                lambda msg: problems.append(msg.text) if msg.type == "error" else None,
            )
            page.goto(f"http://127.0.0.1:{port}/")
            timeout = DEADLINE * 1000

            # A name in use is refused; the page lets the user pick another.
            page.fill("#name", "tcpuser")
            page.click("#login")
            expect(page.locator("#messages li.error")).to_contain_text(
                "username-taken", timeout=timeout
            )
            page.fill("#name", "webby")
            page.click("#login")
            expect(page.locator("#status")).to_have_text("logged in as webby", timeout=timeout)
            expect(page.locator("#users li")).to_have_text(["tcpuser", "webby"], timeout=timeout)
            assert tcp.expect("INFO webby joined") == ["INFO webby joined"]

            # Browser to TCP.
            page.fill("#text", "hello from chromium")
            page.press("#text", "Enter")
            page.fill("#text", "/dm tcpuser a secret")
            page.press("#text", "Enter")
            assert tcp.expect("DM webby a secret") == [
                "MSG webby hello from chromium",
                "DM webby a secret",
            ]

            # TCP to browser; markup arrives as text, never as HTML.
            tcp.send("MSG hi <b>browser</b>", "DM webby just for you")
            message = page.locator("#messages li.msg").last
            expect(message).to_contain_text("tcpuser", timeout=timeout)
            expect(message.locator(".text")).to_have_text("hi <b>browser</b>", timeout=timeout)
            expect(page.locator("#messages li.dm").last).to_contain_text(
                "just for you", timeout=timeout
            )
            assert page.locator("#messages b").count() == 0

            # Closing the tab ends the browser user's chat connection.
            page.close()
            assert tcp.expect("INFO webby disconnected")[-1] == "INFO webby disconnected"
            assert problems == []
        finally:
            context.close()
        tcp.close()
        assert proc.interrupt() == 0
        assert server.interrupt() == 0


def test_page_reconnects_with_backoff_and_says_why(tmp_path: Path) -> None:
    """The chat server is down, then up, then restarted: the page says so and comes back."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium to run the browser test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    expect = sync_api.expect
    timeout = DEADLINE * 1000

    with (
        refused_port() as chat,
        bridge_for(chat.getsockname()[1]) as (proc, port),
        sync_api.sync_playwright() as playwright,
    ):
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            status = page.locator("#status")
            # Down: each failed attempt waits twice as long as the one before.
            unreachable = "the chat server is unreachable: reconnecting in"
            expect(status).to_have_text(f"{unreachable} 1 s (attempt 2)", timeout=timeout)
            expect(status).to_have_text(f"{unreachable} 2 s (attempt 3)", timeout=timeout)
            proc.wait_for(r"is unreachable")
            # Said once in the page, not at every attempt.
            expect(page.locator("#messages li.error")).to_have_count(1)
            expect(page.locator("#messages li.error")).to_contain_text("cannot be reached")

            # Up: the next attempt connects, and the user logs in.
            chat.listen()
            with chat_server_on(chat):
                expect(status).to_have_text("connected: choose a name", timeout=timeout)
                page.fill("#name", "webby")
                page.click("#login")
                expect(status).to_have_text("logged in as webby", timeout=timeout)
            # Restarted: the page says the server went, then logs in again by itself.
            expect(status).to_have_text(
                re.compile(r"the chat server closed the connection: reconnecting in 1 s"),
                timeout=timeout,
            )
            with chat_server_on(chat), LineClient(chat.getsockname()[1]) as tcp:
                tcp.login("tcpuser")
                expect(status).to_have_text("logged in as webby", timeout=timeout)
                expect(page.locator("#users li")).to_have_text(
                    ["tcpuser", "webby"], timeout=timeout
                )
                page.fill("#text", "back again")
                page.press("#text", "Enter")
                assert tcp.expect("MSG webby back again")[-1] == "MSG webby back again"
                tcp.close()
        finally:
            context.close()
        assert proc.interrupt() == 0
