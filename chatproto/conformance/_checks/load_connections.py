"""Load from connections (§12.2, §13): a flood of connections past
max_clients, or slowloris, must degrade nobody else.

LOD-54 needs a server started with ``{max_clients}``, LOD-55 one with a short
``{idle_timeout}``. As in :mod:`.load`, the time limits only tell "delayed"
from "stalled": a passing server needs a fraction of them.
"""

from __future__ import annotations

import time

from chatproto import Error

from .._context import TestContext
from .._flood import ConnectionKnock, knock, trickle
from .._registry import check
from .load import RTT_LIMIT

#: LOD-54: connections past max_clients, opened in batches.
FLOOD_PAST = 200
BATCH = 55
#: A refused connection gets its ERR within this, and is closed within this after it.
REFUSE_WITHIN = 1.0
CLOSE_AFTER = 1.0
#: LOD-55: connections trickling a line that never ends.
SLOWLORIS = 100


def _refusal_problems(knocks: list[ConnectionKnock]) -> list[str]:
    """What is wrong with how these connections were refused, one text per problem."""
    problems = []
    for k in knocks:
        err, closed = k.err_after, k.closed_after
        if err is None:
            if closed is not None:
                problems.append(f"{k.label} was closed without an ERR (after {closed:.2f} s)")
            continue
        if err > REFUSE_WITHIN:
            problems.append(f"{k.label} got its ERR after {err:.2f} s")
        if closed is None:
            problems.append(f"{k.label} got its ERR and was left open")
        elif closed - err > CLOSE_AFTER:
            problems.append(f"{k.label} was closed {closed - err:.2f} s after its ERR")
    return problems


@check(
    "LOD-54",
    "connection-flood-refused",
    "13",
    profiles="load",
    needs="crowd",
    budget=60,
    cause="connections past max_clients are not refused at once and closed",
)
def connection_flood(t: TestContext) -> None:
    """Past max_clients every connection gets ERR server-full within 1 s and is closed at once.

    The suite starts this server with max_clients = 20. A user stays logged
    in; then 220 connections are opened in batches of 55, sending nothing.
    At most 19 may be admitted (they stay open and answer a PING); every
    other one must get ``ERR server-full`` within 1 s of connecting, and be
    closed within 1 s after it (§13: a server MUST NOT keep refused
    connections open). Meanwhile the user's PING round trip stays under 1 s.
    """
    limit = t.settings.max_clients
    if limit is None:  # pragma: no cover - the runner always sets it for this need
        t.skip("the max_clients of this server is unknown")
    member = t.connect("member").login()
    total = limit + FLOOD_PAST
    knocks: list[ConnectionKnock] = []
    for first in range(0, total, BATCH):
        labels = [f"k{i}" for i in range(first, min(total, first + BATCH))]
        batch = knock(t, labels, refuse_within=REFUSE_WITHIN, close_after=CLOSE_AFTER)
        knocks += batch
        problems = _refusal_problems(batch)
        if problems:
            t.fail(
                f"{len(problems)} of {len(batch)} connections past max_clients = {limit} were "
                f"not refused at once: {'; '.join(problems[:5])}",
                expected=f"ERR server-full within {REFUSE_WITHIN:g} s, then closed at once",
                got=problems[0],
            )
    refused = [k for k in knocks if k.err_after is not None]
    admitted = [k for k in knocks if k.err_after is None]
    t.measure("refused", len(refused), f"{len(refused)} of {total} connections refused")
    t.measure(
        "slowest_refusal_s",
        max(k.err_after or 0.0 for k in refused) if refused else 0.0,
        "the slowest ERR after its connect",
    )
    t.require(
        len(admitted) < limit,
        f"{len(admitted)} connections were admitted besides a logged-in user, with "
        f"max_clients = {limit}",
        expected=f"at most {limit - 1} admitted",
        got=str(len(admitted)),
    )
    for k in refused:
        assert k.first_error is not None
        event = member.interpret(k.first_error)
        if event is None or not isinstance(event.line, Error):
            t.fail(f"{k.label}: refused with {k.first_error.text!r}", got=k.first_error.text)
        if event.line.token != "server-full":
            t.allow("error-token", f"{event.raw!r} where the spec says ERR server-full")
    start = time.monotonic()
    member.sync()
    rtt = time.monotonic() - start
    t.measure("member_rtt_s", rtt, f"the logged-in user's round trip after the flood: {rtt:.4f} s")
    t.require(
        rtt < RTT_LIMIT,
        f"after the connection flood the logged-in user waited {rtt:.2f} s for a PING",
        expected=f"under {RTT_LIMIT:g} s",
        got=f"{rtt:.2f} s",
    )
    for k in admitted:
        k.conn.sync()  # admitted ones are served


@check(
    "LOD-55",
    "slowloris-timed-out",
    "12.2",
    profiles="load",
    needs="idle",
    budget=60,
    cause="connections that trickle bytes without a newline are never timed out",
)
def slowloris(t: TestContext) -> None:
    """100 connections trickling a line that never ends are all closed by the idle timeout.

    The suite starts this server with a short idle timeout. Each connection
    sends one byte of ``PING slowly...`` every quarter of the timeout and never
    a newline (bytes without a newline do not reset the timer, §12.2): each
    must be closed within twice the timeout plus 1 s of connecting, with or
    without ``INFO idle-timeout``. A logged-in user who PINGs meanwhile stays
    served, and its slowest round trip is reported.
    """
    idle = t.settings.idle_timeout
    if idle is None:  # pragma: no cover - the runner always sets it for this need
        t.skip("the idle timeout of this server is unknown")
    limit = 2 * idle + 1.0
    if limit > t.hard_end - time.monotonic():
        t.skip(
            f"needs a short idle timeout: with {idle:g} s, slowloris would outlast the test's "
            f"budget; add {{idle_timeout}} to the server command (or raise --budget-factor)"
        )
    keeper = t.connect("keeper").login()
    lorises = [t.connect(f"s{i}") for i in range(SLOWLORIS)]
    for c in lorises:
        c.wire.verbose = False
        c.final_check = False
    t.note("", f"{SLOWLORIS} connections trickle a byte each every {idle / 4:.2f} s, no newline")
    rtts: list[float] = []

    def keep_alive() -> None:
        start = time.monotonic()
        keeper.sync()
        rtts.append(time.monotonic() - start)

    closed = trickle(
        t, lorises, b"PING slowly" + b"." * 1000, every=idle / 4, limit=limit, between=keep_alive
    )
    late = [c.label for c, after in zip(lorises, closed, strict=True) if after is None]
    t.measure("keeper_rtt_max_s", max(rtts, default=0.0), "the keeper's slowest round trip")
    t.require(
        not late,
        f"{len(late)} of {SLOWLORIS} connections that never sent a newline were still open "
        f"{limit:g} s after connecting (idle timeout {idle:g} s): {', '.join(late[:5])}",
        expected=f"closed within {limit:g} s",
        got=f"{len(late)} still open",
    )
    times = [after for after in closed if after is not None]
    t.measure("slowest_close_s", max(times), f"the last one was closed after {max(times):.2f} s")
    t.require(
        max(rtts, default=0.0) < RTT_LIMIT,
        f"while slowloris connections trickled, a PING waited {max(rtts):.2f} s",
        expected=f"under {RTT_LIMIT:g} s",
        got=f"{max(rtts):.2f} s",
    )
