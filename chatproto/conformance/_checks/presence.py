"""Disconnect notices (§8.2): exactly one per user, however it left, and the name is freed."""

from __future__ import annotations

from .._conn import DUPLICATE_LEAVE, Conn
from .._context import TestContext
from .._dialect import SPEC_LEAVE
from .._registry import check


def _left_once(t: TestContext, gone: Conn, *watchers: Conn) -> None:
    """Each watcher gets one leave notice for ``gone``, and no second one."""
    for w in watchers:
        w.expect_left(gone)
    t.quiet(*watchers)
    t.absent(*watchers, why=f"no second leave notice for {gone.name}")


def _name_free(t: TestContext, gone: Conn, label: str, *watchers: Conn) -> Conn:
    """The name of ``gone`` is free again at once, on a new connection; watchers see it join."""
    again = t.connect(label, name=gone.name)
    again.send_line(f"LOGIN {gone.name}")
    event = again.next_event(f"OK (LOGIN {gone.name}, the name is free again)")
    if event.raw.upper().startswith("ERR"):
        t.fail(
            f"{label}: LOGIN {gone.name} was refused after its owner left: the name was not freed",
            expected="OK",
            got=event.raw,
        )
    again.logged_in = True
    for w in watchers:
        w.expect_joined(again)
    return again


@check(
    "DIS-51",
    "notice-on-close",
    "8.2",
    profiles="core strict",
    cause=DUPLICATE_LEAVE,
)
def notice_on_close(t: TestContext) -> None:
    """When a user closes its connection, every other user gets exactly one leave notice.

    The original README shows ``INFO <name> disconnected``. ``core`` accepts
    it with decorations (a timestamp, a prefix or suffix: dialects
    ``timestamps``, ``leave-notice-wording``), not another wording; under
    ``strict`` any difference fails here, and only here.
    """
    t.dedicated.update({"leave-notice-wording", "timestamps"})
    a, b, c = t.users("a", "b", "c")
    leave = t.probed.leave_notice
    if leave is None:
        t.fail(
            "the probe saw no leave notice",
            expected=f"INFO {b.name} disconnected",
            got="(nothing)",
            cause="no leave notice",
        )
    if not t.settings.strict and leave != SPEC_LEAVE and "{name} disconnected" not in leave:
        t.fail(
            f"the leave notice reads {leave!r}; the original protocol says {SPEC_LEAVE!r}",
            expected=SPEC_LEAVE.replace("{name}", b.name),
            got=leave.replace("{name}", b.name),
            cause="the leave notice is not 'INFO <name> disconnected'",
        )
    if t.probed.timestamps:
        t.allow("timestamps", "notices carry a timestamp")
    b.sync()  # nothing unread on b: its close is a FIN, not a reset (that is DIS-53)
    b.close()
    _left_once(t, b, a, c)


@check(
    "DIS-52",
    "name-freed",
    "8.2",
    profiles="core strict",
    cause="a name stays taken after its owner left",
)
def name_freed(t: TestContext) -> None:
    """Once its owner left, a name can be taken again at once, and WHO shows the new owner once."""
    a, b = t.users("a", "b")
    b.close()
    a.expect_left(b)
    _name_free(t, b, "b2", a)
    if not t.dialect.has_who and not t.settings.strict:
        return
    names = [n.lower() for n in a.who()]
    t.require(
        names.count(b.name.lower()) == 1,
        f"WHO lists {b.name} {names.count(b.name.lower())} times after it left and logged in again",
        expected=f"USER {b.name} once",
        got=", ".join(names),
    )


@check(
    "DIS-53",
    "notice-on-reset",
    "8.2",
    profiles="core strict",
    cause="a user whose connection is reset is not announced exactly once",
)
def notice_on_reset(t: TestContext) -> None:
    """A connection reset (RST) counts as leaving: one notice, the name freed."""
    a, b = t.users("a", "b")
    b.reset()
    _left_once(t, b, a)
    _name_free(t, b, "b2", a)


@check("DIS-54", "notice-on-quit", "8.2 11.2", profiles="strict")
def notice_on_quit(t: TestContext) -> None:
    """QUIT counts as leaving: one notice, the name freed."""
    a, b = t.users("a", "b")
    b.send_line("QUIT")
    b.expect_ok("OK (QUIT)")
    b.expect_closed()
    _left_once(t, b, a)
    _name_free(t, b, "b2", a)


@check(
    "DIS-55",
    "no-notice-for-anonymous",
    "8.2",
    profiles="core strict",
    cause="a connection that never logged in is announced when it leaves",
)
def no_notice_for_anonymous(t: TestContext) -> None:
    """A connection that never logged in leaves without a notice."""
    (a,) = t.users("a")
    d = t.connect("d")
    d.send_line("HELLO?")
    d.sync()
    d.close()
    t.quiet(a)
    t.absent(a, why="nobody is told when a connection that never logged in leaves")


@check(
    "DIS-56",
    "notice-after-refused-login",
    "5.4 8.2",
    profiles="core strict",
    cause="a refused connection leaving announces or frees the name it asked for",
)
def notice_after_refused_login(t: TestContext) -> None:
    """A connection whose LOGIN was refused causes no notice when it leaves, and frees nothing.

    The refused connection asked for a's name; when it goes, a must stay
    logged in and nobody may be told that a left.
    """
    a, b = t.users("a", "b")
    c = t.connect("c", name=a.name)
    c.send_line(f"LOGIN {a.name}")
    c.expect_error("username-taken")
    c.close()
    t.quiet(a, b)
    t.absent(a, b, why=f"a refused connection leaving must not announce {a.name}")
    if not t.dialect.has_who and not t.settings.strict:
        return
    names = [n.lower() for n in b.who()]
    t.require(
        a.name.lower() in names,
        f"{a.name} vanished from WHO",
        expected=f"USER {a.name}",
        got=", ".join(names),
    )
