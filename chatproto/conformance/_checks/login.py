"""Login rules (§5): names, uniqueness, join notices, refusals."""

from __future__ import annotations

from chatproto import Ok

from .._context import TestContext
from .._registry import check


@check("LOG-51", "login-ok", "5.1", profiles="core strict", cause="LOGIN with a fresh name fails")
def login_ok(t: TestContext) -> None:
    """LOGIN with a fresh name answers OK, and nothing else.

    ``core`` accepts ``OK`` followed by text (dialect ``ok-with-text``); under
    ``strict`` this is the one test that fails it.
    """
    t.dedicated.add("ok-with-text")
    t.connect("a").login()


@check("LOG-52", "join-notice", "5.1 8.1", profiles="strict")
def join_notice(t: TestContext) -> None:
    """Every other logged-in user is told when someone joins; the joiner is not.

    The original README asks for no join notice, so ``core`` never waits for
    one (it recognises and skips one in any wording). Under ``strict`` this
    is the one test that fails another wording.
    """
    t.dedicated.add("join-notice-wording")
    a = t.connect("a").login()
    b = t.connect("b").login()
    if t.probed.join_notice is None:
        t.fail(
            "the probe saw no join notice: a was not told that b joined",
            expected=f"INFO {b.name} joined",
            got="(nothing)",
            cause="no join notice",
        )
    a.expect_joined(b)
    c = t.connect("c").login()
    a.expect_joined(c)
    b.expect_joined(c)
    t.quiet(c)


@check(
    "LOG-53",
    "username-taken",
    "5.3",
    profiles="core strict",
    cause="a name in use is not refused",
)
def username_taken(t: TestContext) -> None:
    """A name in use is refused with an ERR (strict: username-taken); its owner is unaffected."""
    a = t.connect("a").login()
    b = t.connect("b", name=a.name)
    b.send_line(f"LOGIN {a.name}")
    b.expect_error("username-taken")
    b.final_check = not t.dialect.closes_after_refused_login
    t.quiet(a)


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


@check(
    "LOG-55",
    "commands-need-login",
    "3.4",
    profiles="core strict",
    cause="commands before LOGIN are not refused",
)
def commands_need_login(t: TestContext) -> None:
    """MSG (and DM, WHO where they exist) before LOGIN are refused with an ERR, and reach nobody."""
    a = t.connect("a").login()
    b = t.connect("b")
    b.send_line("MSG sneaky")
    b.expect_error("not-logged-in")
    if t.dialect.has_dm or t.settings.strict:
        b.send_line(f"DM {a.name} sneaky")
        b.expect_error("not-logged-in")
    if t.dialect.has_who or t.settings.strict:
        b.send_line("WHO")
        b.expect_error("not-logged-in")
    t.quiet(a)
    t.absent(a, why="the refused MSG and DM must not reach a")


@check(
    "LOG-56",
    "invalid-names-refused",
    "5.2",
    profiles="core",
    cause="LOGIN accepts an empty or malformed name",
)
def invalid_names_refused(t: TestContext) -> None:
    """LOGIN with no name is refused with an ERR; a good name then works.

    The README promises username validation without listing its rules, so
    only the one name no rule can accept is tried (a server may well take
    ``LOGIN bob extra`` as bob). Any text after ``ERR`` is right.
    """
    a = t.connect("a")
    for bad in ("LOGIN",):
        a.send_line(bad)
        event = a.next_event(f"ERR for {bad!r}")
        t.require(
            not isinstance(event.line, Ok),
            f"a: {bad!r} was accepted: {event.raw!r}",
            expected="ERR <any text>",
            got=event.raw,
        )
        t.require(
            event.raw.upper().startswith("ERR"),
            f"a: {bad!r} got {event.raw!r}, which is not an ERR line",
            expected="ERR <any text>",
            got=event.raw,
            cause="errors are not ERR lines",
        )
    a.login()
