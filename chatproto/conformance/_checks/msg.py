"""MSG fan-out (§6): who gets a broadcast, in what order, and who does not."""

from __future__ import annotations

from .._context import TestContext
from .._registry import check


@check(
    "MSG-51",
    "fan-out",
    "6.1 6.2",
    profiles="core strict",
    cause="MSG is not broadcast as MSG <sender> <text>",
)
def fan_out(t: TestContext) -> None:
    """A MSG reaches every other logged-in user as ``MSG <sender> <text>``; the sender gets nothing.

    ``core`` accepts an echo to the sender (dialect ``msg-echo``).
    """
    a, b, c = t.users("a", "b", "c")
    a.msg("hello everyone")
    b.expect_msg(a, "hello everyone")
    c.expect_msg(a, "hello everyone")
    t.quiet(a)


@check(
    "MSG-52",
    "not-to-anonymous",
    "6.1",
    profiles="core strict",
    cause="MSG reaches connections that did not log in",
)
def not_to_anonymous(t: TestContext) -> None:
    """A connection that has not logged in gets no MSG."""
    a, b = t.users("a", "b")
    d = t.connect("d")
    a.msg("members only")
    b.expect_msg(a, "members only")
    t.quiet(d)
    t.absent(d, why="a MSG must not reach a connection that is not logged in")


@check(
    "MSG-53",
    "order-kept",
    "1.7 6.1",
    profiles="core strict",
    cause="lines after the first in one packet are not processed",
)
def order_kept(t: TestContext) -> None:
    """100 MSGs sent back to back arrive complete and in order."""
    a, b = t.users("a", "b")
    a.send("".join(f"MSG n{i}\n" for i in range(100)), note="MSG n0 ... MSG n99 (one send)")
    for i in range(100):
        b.expect_msg(a, f"n{i}")


@check("MSG-54", "long-message", "6.3", profiles="strict")
def long_message(t: TestContext) -> None:
    """A MSG of max_line_bytes is relayed whole, although the relayed line is longer.

    The broadcast adds ``MSG <sender> `` in front: a server that caps its own
    output at max_line_bytes cuts the message.
    """
    a, b = t.users("a", "b")
    text = "m" * (t.settings.max_line_bytes - len("MSG "))
    a.send_line(f"MSG {text}")
    b.expect_msg(a, text)
