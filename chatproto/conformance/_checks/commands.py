"""Commands (§3, §11): what the shared vectors cannot script, QUIT's close."""

from __future__ import annotations

from .._context import TestContext
from .._registry import check


@check("CMD-51", "quit-closes", "11.2", profiles="strict")
def quit_closes(t: TestContext) -> None:
    """QUIT answers OK and the server closes; lines after it are not executed.

    ``MSG`` and ``PING`` sent in the same packet after ``QUIT`` must have no
    effect: b sees only the leave notice.
    """
    a, b = t.users("a", "b")
    a.send("QUIT\nMSG too late\nPING too-late\n")
    a.expect_ok("OK (QUIT)")
    a.expect_closed()
    b.expect_left(a)
