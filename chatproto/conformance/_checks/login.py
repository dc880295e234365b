"""Login rules (§5): names, uniqueness, join notices, refusals."""

from __future__ import annotations

from .._context import TestContext
from .._registry import check


@check("LOG-51", "login-ok", "5.1", profiles="core strict")
def login_ok(t: TestContext) -> None:
    """LOGIN with a fresh name answers OK, and nothing else."""
    t.connect("a").login()


@check("LOG-52", "join-notice", "5.1 8.1", profiles="core strict")
def join_notice(t: TestContext) -> None:
    """Every other logged-in user is told when someone joins; the joiner is not.

    ``core`` accepts any wording that names the user (dialect
    ``join-notice-wording``), but a notice there must be. Under ``strict``
    this is the one test that fails another wording.
    """
    t.dedicated.add("join-notice-wording")
    a = t.connect("a").login()
    b = t.connect("b").login()
    if t.dialect.join_notice is None:
        t.fail(
            "the probe saw no join notice: a was not told that b joined",
            expected=f"INFO {b.name} joined",
            got="(nothing)",
        )
    a.expect_joined(b)
    c = t.connect("c").login()
    a.expect_joined(c)
    b.expect_joined(c)
    t.quiet(c)


@check("LOG-53", "username-taken", "5.3", profiles="core strict")
def username_taken(t: TestContext) -> None:
    """A name in use is refused with ERR username-taken; its owner is unaffected."""
    a = t.connect("a").login()
    b = t.connect("b", name=a.name)
    b.send_line(f"LOGIN {a.name}")
    b.expect_error("username-taken")
    b.final_check = not t.dialect.closes_after_refused_login
    a.send_line("PING still-mine")
    a.expect_pong("still-mine")


@check("LOG-54", "retry-after-refusal", "5.4", profiles="core strict")
def retry_after_refusal(t: TestContext) -> None:
    """After a refused LOGIN the client may try another name on the same connection.

    ``core`` accepts a server that closes the connection after a refused
    login (dialect ``close-after-refused-login``); the client then reconnects.
    """
    a = t.connect("a").login()
    b = t.connect("b")
    b.send_line(f"LOGIN {a.name}")
    b.expect_error("username-taken")
    if t.dialect.closes_after_refused_login:
        b.expect_closed(
            "the connection closed after the refusal (dialect close-after-refused-login)"
        )
        t.allow("close-after-refused-login", "the refused connection was closed")
        b = t.connect("b2", name=b.name)
    b.login()
    a.expect_joined(b)


@check("LOG-55", "commands-need-login", "3.4", profiles="core strict")
def commands_need_login(t: TestContext) -> None:
    """MSG, DM and WHO before LOGIN are refused with an ERR, and reach nobody."""
    a = t.connect("a").login()
    b = t.connect("b")
    b.send_line("MSG sneaky")
    b.expect_error("not-logged-in")
    b.send_line(f"DM {a.name} sneaky")
    b.expect_error("not-logged-in")
    b.send_line("WHO")
    b.expect_error("not-logged-in")
    t.quiet(a)
    t.absent(a, why="the refused MSG and DM must not reach a")
