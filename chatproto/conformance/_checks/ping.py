"""PING (§10): the answer, its token, and the ordering it proves.

``PING`` is a Bonus feature of the original README, where it takes no
argument: ``core`` sends it bare and accepts ``PONG`` with or without a
token; a server without it gets NOT-IMPLEMENTED. ``strict`` wants
``PONG <token>``.
"""

from __future__ import annotations

from chatproto import Error, Pong

from .._context import TestContext
from .._registry import check


@check("PNG-51", "ping-pong", "10.1", profiles="core strict", feature="ping")
def ping_pong(t: TestContext) -> None:
    """PING answers PONG; PING <token> answers PONG <token> (strict).

    ``core`` sends a bare PING, as the original protocol has it; strict
    also wants the token repeated (dialect ``pong-without-token``).
    """
    t.dedicated.add("pong-without-token")
    a = t.connect("a").login()
    a.send_line("PING")
    a.expect_pong()
    if t.settings.strict:
        a.send_line("PING tok-42")
        a.expect_pong("tok-42")


@check("PNG-52", "before-login", "10.2", profiles="core strict", feature="ping")
def before_login(t: TestContext) -> None:
    """PING works before LOGIN.

    ``core`` accepts a refusal with an ERR, or no answer (dialect
    ``ping-refused-before-login``): the README does not say.
    """
    t.dedicated.add("ping-refused-before-login")
    a = t.connect("a")
    if t.dialect.ping_before_login == "silent":
        t.allow("ping-refused-before-login", "no answer to PING before LOGIN")
        return
    a.send_line(a.ping_text("early"))
    event = a.next_event("PONG")
    if isinstance(event.line, Error) and t.dialect.ping_before_login == "refused":
        t.allow("ping-refused-before-login", repr(event.raw))
        return
    t.require(
        isinstance(event.line, Pong),
        f"a: expected PONG, got {event.raw!r}",
        expected="PONG early",
        got=event.raw,
    )
    if t.settings.strict and event.raw != "PONG early":
        t.allow("pong-without-token", f"{event.raw!r} for PING early")


@check(
    "PNG-53",
    "replies-in-order",
    "1.7 10.2",
    profiles="core strict",
    feature="ping",
    cause="replies come out of order",
)
def replies_in_order(t: TestContext) -> None:
    """Replies come in the order of the commands: PONG, ERR, PONG for PING, a bad command, PING."""
    a = t.connect("a").login()
    a.send(f"{a.ping_text('one')}\nFROBNICATE\n{a.ping_text('two')}\n")
    a.expect_ping_answer("one")
    a.expect_error("unknown-command")
    a.expect_ping_answer("two")
