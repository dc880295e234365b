"""DM (§7): delivery to one user only, the acknowledgement, unknown targets."""

from __future__ import annotations

from .._context import TestContext
from .._registry import check


@check(
    "DM-51",
    "delivered-to-one",
    "7.1",
    profiles="core strict",
    feature="dm",
    cause="DM is not delivered to its target alone",
)
def delivered_to_one(t: TestContext) -> None:
    """A DM reaches its target as ``DM <sender> <text>``, the sender gets OK, nobody else anything.

    ``core`` accepts another acknowledgement or none (dialects
    ``dm-ack-wording``, ``no-dm-ack``).
    """
    a, b, c = t.users("a", "b", "c")
    a.send_line(f"DM {b.name} just for you")
    b.expect_dm(a, "just for you")
    a.expect_dm_ack(b)
    t.quiet(a, b, c)
    t.absent(c, why="a DM must reach nobody but its target")


@check("DM-52", "unknown-target", "7.2", profiles="strict")
def unknown_target(t: TestContext) -> None:
    """A DM to a name nobody has gets ERR user-not-found.

    Strict only: the original README does not say what answers it.
    """
    (a,) = t.users("a")
    a.send_line(f"DM {t.name('nobody')} hello?")
    a.expect_error("user-not-found")


@check("DM-53", "target-gone", "7.2 8.2", profiles="strict")
def target_gone(t: TestContext) -> None:
    """A DM to a user who has left gets ERR user-not-found (strict only, as DM-52)."""
    a, b = t.users("a", "b")
    b.close()
    a.expect_left(b)
    if t.dialect.leave_notice is None:
        t.skip("this dialect has no leave notice, so there is no moment to check from")
    a.send_line(f"DM {b.name} are you there?")
    a.expect_error("user-not-found")
