"""Idle timeout (§12.2): silent connections are told and closed; lines keep them alive.

These tests are about time, so they wait on purpose (each wait is labelled in
the transcript). They run against a server the suite starts with a short idle
timeout (``{idle_timeout}`` in the command), or with ``--allow-slow`` against
the server's own timeout.
"""

from __future__ import annotations

import time

from .._context import TestContext
from .._registry import check
from .._verdicts import NotImplementedFeature
from .._wire import PeerClosed, ReadTimeout


def _timeout(t: TestContext) -> float:
    value = t.settings.idle_timeout
    if value is None:  # pragma: no cover - the runner always sets it for these tests
        t.skip("the idle timeout of this server is unknown")
    return value


@check("IDL-51", "idle-closes", "12.2 8.2", profiles="strict", needs="idle", budget=60)
def idle_closes(t: TestContext) -> None:
    """A silent connection gets INFO idle-timeout and is closed; logged in or not; others are told.

    b stays active (one PING half-way), so a times out first and b sees the
    leave notice, then times out itself.
    """
    idle = _timeout(t)
    a, b = t.users("a", "b")
    c = t.connect("c")
    started = time.monotonic()
    t.pause(idle / 2, "half the idle timeout, then b shows it is alive")
    b.send_line("PING alive")
    b.expect_pong("alive")
    a.expect_line("INFO idle-timeout", timeout=idle + t.settings.line_timeout)
    waited = time.monotonic() - started
    t.require(
        waited >= idle * 0.9,
        f"a was timed out after {waited:.2f} s, before the idle timeout of {idle:g} s",
        expected=f"INFO idle-timeout after {idle:g} s",
        got=f"after {waited:.2f} s",
    )
    a.expect_closed()
    c.expect_line("INFO idle-timeout", timeout=t.settings.line_timeout)
    c.expect_closed()
    b.expect_left(a)
    b.expect_line("INFO idle-timeout", timeout=idle + t.settings.line_timeout)
    b.expect_closed()


@check("IDL-52", "lines-reset-timer", "12.2", profiles="strict", needs="idle", budget=60)
def lines_reset_timer(t: TestContext) -> None:
    """Any complete line resets the idle timer: an empty line, a refused command, a PING.

    a sends one line every 0.6 x the timeout, three times: at 1.8 x the
    timeout it must still be open and answer.
    """
    idle = _timeout(t)
    (a,) = t.users("a")
    for data in ("\n", "FROBNICATE\n"):
        t.pause(idle * 0.6, "less than the idle timeout since the last line")
        a.send(data)
    a.expect_error("unknown-command")
    t.pause(idle * 0.6, "less than the idle timeout since the last line")
    a.send_line("PING still-here")
    a.expect_pong("still-here")


@check("IDL-53", "partial-bytes-do-not-reset", "12.2", profiles="strict", needs="idle", budget=60)
def partial_bytes_do_not_reset(t: TestContext) -> None:
    """Bytes without a newline do not reset the idle timer.

    a sends one byte of a line at 0.3, 0.6 and 0.9 x the timeout; it must
    still time out about one timeout after its LOGIN, not after its last byte.
    """
    idle = _timeout(t)
    (a,) = t.users("a")
    started = time.monotonic()
    for piece in ("P", "I", "N"):
        t.pause(
            started + idle * 0.3 * ("PIN".index(piece) + 1) - time.monotonic(),
            "trickling a partial line",
        )
        a.send(piece)
    a.expect_line("INFO idle-timeout", timeout=idle * 2 + t.settings.line_timeout)
    waited = time.monotonic() - started
    t.require(
        waited < idle * 1.5,
        f"a timed out {waited:.2f} s after its last line: the partial bytes reset the timer",
        expected=f"INFO idle-timeout about {idle:g} s after the last complete line",
        got=f"after {waited:.2f} s",
    )
    a.expect_closed()


@check(
    "IDL-54",
    "idle-clients-closed",
    "12.2",
    profiles="core",
    needs="idle",
    feature="idle",
    budget=30,
    cause="the idle timeout closes too early",
)
def idle_clients_closed(t: TestContext) -> None:
    """A silent user is disconnected after the idle timeout, not before.

    The README's Bonus idle timeout, with any notice (or none) before the
    close. Nobody else speaks meanwhile (some servers count their own output
    as activity). A server that never closes a silent connection has no idle
    timeout: NOT-IMPLEMENTED, not a failure.
    """
    idle = _timeout(t)
    (a,) = t.users("a")
    started = time.monotonic()
    a.final_check = False
    t.note("", f"a stays silent for up to {idle * 2 + 1:.1f} s")
    while True:
        try:
            a.wire.read_line(min(started + idle * 2 + 1, t.hard_end))
        except ReadTimeout:
            raise NotImplementedFeature("idle") from None
        except PeerClosed:
            break
    waited = time.monotonic() - started
    t.require(
        waited >= idle * 0.9,
        f"a was disconnected after {waited:.2f} s, before the idle timeout of {idle:g} s",
        expected=f"disconnected after {idle:g} s",
        got=f"after {waited:.2f} s",
    )
