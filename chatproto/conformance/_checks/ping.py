"""PING (§10): the answer, its token, and the ordering it proves."""

from __future__ import annotations

from .._context import TestContext
from .._registry import check


@check("PNG-51", "ping-pong", "10.1", profiles="core strict")
def ping_pong(t: TestContext) -> None:
    """PING answers PONG; PING <token> answers PONG <token>.

    ``core`` accepts a PONG without the token (dialect ``pong-without-token``).
    """
    a = t.connect("a").login()
    a.send_line("PING")
    a.expect_pong()
    a.send_line("PING tok-42")
    a.expect_pong("tok-42")


@check("PNG-52", "before-login", "10.2", profiles="core strict")
def before_login(t: TestContext) -> None:
    """PING works before LOGIN.

    ``core`` accepts a refusal with an ERR (dialect
    ``ping-refused-before-login``), as long as it answers.
    """
    a = t.connect("a")
    a.send_line("PING early")
    event = a.next_event("PONG early")
    if t.dialect.ping_before_login == "refused" and event.raw.upper().startswith("ERR"):
        t.allow("ping-refused-before-login", repr(event.raw))
        return
    t.require(
        event.raw in ("PONG early", "PONG"),
        f"a: expected 'PONG early', got {event.raw!r}",
        expected="PONG early",
        got=event.raw,
    )
    if event.raw == "PONG":
        t.allow("pong-without-token", "PONG for PING early")


@check("PNG-53", "replies-in-order", "1.7 10.2", profiles="core strict")
def replies_in_order(t: TestContext) -> None:
    """Replies come in the order of the commands: PONG, ERR, PONG for PING, a bad command, PING."""
    a = t.connect("a").login()
    a.send("PING one\nFROBNICATE\nPING two\n")
    a.expect_pong("one")
    a.expect_error("unknown-command")
    a.expect_pong("two")
