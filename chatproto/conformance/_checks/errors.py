"""Errors (§4): refusals are ``ERR <token>`` and never end the connection."""

from __future__ import annotations

from .._context import TestContext
from .._registry import check


@check(
    "ERR-51",
    "unknown-command",
    "3.3 4.2",
    profiles="core strict",
    cause="an unknown command gets no ERR",
)
def unknown_command(t: TestContext) -> None:
    """An unknown command word gets an ERR, before and after login.

    ``core`` accepts any text after ERR (the README promises "informative
    responses" without fixing them); strict wants ERR unknown-command.
    """
    a = t.connect("a")
    a.send_line("FROBNICATE now")
    a.expect_error("unknown-command")
    a.login()
    a.send_line("DANCE")
    a.expect_error("unknown-command")


@check(
    "ERR-52",
    "errors-keep-connection",
    "4.4",
    profiles="core strict",
    cause="a refused command breaks the connection",
)
def errors_keep_connection(t: TestContext) -> None:
    """A run of refused commands leaves the connection working, logged in and reachable.

    ``core`` sends only commands the README says are wrong (unknown words);
    what it leaves open (an empty MSG, a DM to nobody) is for strict.
    """
    a, b = t.users("a", "b")
    if not t.settings.strict:
        a.send("DANCE\nFROBNICATE now\n")
        a.expect_error("unknown-command")
        a.expect_error("unknown-command")
        a.msg("still here")
        b.expect_msg(a, "still here")
        return
    a.send(f"DANCE\nLOGIN {b.name}\nDM {t.name('ghost')} hi\nMSG\nDM\n")
    for token in (
        "unknown-command",
        "already-logged-in",
        "user-not-found",
        "missing-argument",
        "missing-argument",
    ):
        a.expect_error(token)
    a.msg("still here")
    b.expect_msg(a, "still here")
    b.send_line(f"DM {a.name} welcome back")
    a.expect_dm(b, "welcome back")
    b.expect_dm_ack(a)
