"""Limits (§13) and shutdown (§12.5): things that need a server started for them."""

from __future__ import annotations

from .._context import TestContext
from .._registry import check


@check("LIM-51", "server-full", "13", profiles="strict", needs="max-clients")
def server_full(t: TestContext) -> None:
    """Beyond max_clients a connection gets ERR server-full and is closed; a freed slot is reusable.

    The suite starts this server with max_clients = 3. Connections count
    whether logged in or not; one that QUIT and was closed no longer counts.
    """
    a, b = t.users("a", "b")
    c = t.connect("c")
    c.send_line("PING third")
    c.expect_pong("third")
    d = t.connect("d")
    d.expect_error("server-full")
    d.expect_closed()
    c.send_line("QUIT")
    c.expect_ok("OK (QUIT)")
    c.expect_closed()
    e = t.connect("e").login()
    a.expect_joined(e)
    b.expect_joined(e)


@check("SHD-51", "graceful-shutdown", "12.5", profiles="strict", needs="own-server")
def graceful_shutdown(t: TestContext) -> None:
    """On SIGTERM all get INFO server-shutdown, users get leave notices, then all close.

    The suite starts a server for this test alone and sends SIGTERM to its
    process group.
    """
    a, b = t.users("a", "b")
    c = t.connect("c")
    c.send_line("PING ready")
    c.expect_pong("ready")
    if t.server is None:  # pragma: no cover - the runner provides it
        t.skip("no server under the suite's control")
    t.server.terminate()
    for conn in (a, b, c):
        conn.expect_line("INFO server-shutdown")
    a.expect_left(b)
    b.expect_left(a)
    for conn in (a, b, c):
        conn.expect_closed()
