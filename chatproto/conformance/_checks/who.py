"""WHO (§9): who is listed, in what order, and that leavers vanish."""

from __future__ import annotations

from .._context import TestContext
from .._registry import check


def _check_listing(t: TestContext, got: list[str], want: list[str]) -> None:
    """``got`` must be ``want`` (login order); in core any order is a variant."""
    if got == want:
        return
    if sorted(n.lower() for n in got) == sorted(n.lower() for n in want):
        t.allow("who-order", f"WHO listed {got} for login order {want}")
        return
    t.fail(
        f"WHO listed {got}, expected {want}",
        expected="\n".join(f"USER {n}" for n in want),
        got="\n".join(f"USER {n}" for n in got),
    )


@check(
    "WHO-51",
    "lists-logged-in",
    "9.1",
    profiles="core strict",
    feature="who",
    cause="WHO does not list exactly the logged-in users",
)
def lists_logged_in(t: TestContext) -> None:
    """WHO lists every logged-in user, the asker included, in login order; not anonymous ones.

    ``core`` accepts another order (dialect ``who-order``).
    """
    a, b, c = t.users("a", "b", "c")
    t.connect("d")
    _check_listing(t, b.who(), [a.name, b.name, c.name])


@check(
    "WHO-52",
    "leaver-not-listed",
    "8.2 9.1",
    profiles="core strict",
    feature="who",
    cause="a user who left is still listed",
)
def leaver_not_listed(t: TestContext) -> None:
    """Once its leave notice is out, a user who left is no longer listed."""
    a, b, c = t.users("a", "b", "c")
    b.close()
    a.expect_left(b)
    c.expect_left(b)
    if t.dialect.leave_notice is None:
        t.skip("this dialect has no leave notice, so there is no moment to check from")
    _check_listing(t, a.who(), [a.name, c.name])
