"""Robustness: slow readers, resets, half-close, floods of bad input, churn.

Each test ends by showing the server still answers, on the abused connection
where it should, and on a fresh one. A server that stops answering here is
reported by the runner's health check too.
"""

from __future__ import annotations

import threading
import time

from chatproto import Error, MessageReceived, Pong, UserDisconnected

from .._conn import Conn
from .._context import TestContext
from .._registry import check

#: Bytes of MSG text per flood message; with the prefix, under max_line_bytes.
FLOOD_TEXT = 3000
#: Messages sent before the readers catch up, so no honest reader falls behind.
FLOOD_BATCH = 40


def _flood_past_slow_reader(
    t: TestContext, total: int, *, until_dropped: bool
) -> tuple[bool, Conn]:
    """a floods MSGs while ``slow`` reads nothing and c reads everything.

    Returns whether the server dropped the slow reader (c saw its leave
    notice), and the slow reader's connection. Fails if c stops receiving:
    the slow reader stalled the server.
    """
    a, c = t.users("a", "c")
    slow = t.connect("slow", rcvbuf=4096).login()
    a.expect_joined(slow)
    c.expect_joined(slow)
    slow.final_check = False  # it never reads; what it would see is moot
    a.wire.verbose = c.wire.verbose = False
    t.note(
        "",
        f"slow stops reading; a sends {total // FLOOD_TEXT} MSGs of {FLOOD_TEXT} bytes, "
        "c reads them",
    )
    dropped = False
    sent = received = 0
    body = "z" * FLOOD_TEXT
    while sent * FLOOD_TEXT < total and not (until_dropped and dropped):
        batch = "".join(f"MSG {sent + i} {body}\n" for i in range(FLOOD_BATCH)).encode()
        a.send_draining(
            batch,
            note=f"MSG {sent} ... MSG {sent + FLOOD_BATCH - 1}",
            timeout=t.settings.line_timeout,
        )
        sent += FLOOD_BATCH
        while received < sent:
            what = f"MSG {received} (c had {received} of {sent}; slow is not reading)"
            event = c.next_event(what)
            if (
                isinstance(event.line, UserDisconnected)
                and event.line.name.lower() == slow.name.lower()
            ):
                dropped = True
                continue
            cut = (
                isinstance(event.line, MessageReceived)
                and len(event.line.text) < len(body)
                and f"{received} {body}".startswith(event.line.text)
            )
            t.require(
                event.line == MessageReceived(a.name, f"{received} {body}"),
                f"c: expected MSG {received}, got {event.raw[:60]!r}"
                + (f" ({len(event.raw)} bytes: the line was cut)" if cut else ""),
                expected=f"MSG {a.name} {received} zzz...",
                got=event.raw[:80],
                cause="a line split over several packets is not reassembled" if cut else "",
            )
            received += 1
    t.note("", f"c got all {received} messages; slow reader dropped: {dropped}")
    # a may have been told about slow too, while sending: consume it (and
    # its own MSGs, in a dialect that echoes them).
    for event in a.sync():
        echo = t.dialect.msg_echo and isinstance(event.line, MessageReceived)
        if not echo and not (
            isinstance(event.line, UserDisconnected)
            and event.line.name.lower() == slow.name.lower()
        ):
            t.fail(f"a: unexpected line {event.raw[:80]!r}", got=event.raw[:80])
    a.wire.verbose = c.wire.verbose = True
    return dropped, slow


@check(
    "ROB-51",
    "slow-reader-does-not-stall",
    "12.3",
    profiles="core robust",
    budget=90,
    cause="a client that does not read stalls the others (blocking sends?)",
)
def slow_reader(t: TestContext) -> None:
    """A client that stops reading does not delay anyone else.

    While ``slow`` reads nothing (a 4 KiB receive buffer), a sends up to 8 MB
    of MSGs (enough to fill any kernel buffer) and c must receive every one
    without a stall. The flood stops early if the server drops the slow
    reader, which it may (§12.3). A server that writes to each recipient in
    turn, blocking, freezes here.
    """
    _flood_past_slow_reader(t, 8_000_000, until_dropped=True)


@check("ROB-52", "slow-consumer-dropped", "12.3", profiles="strict robust", budget=90)
def slow_consumer_dropped(t: TestContext) -> None:
    """A client that never reads is dropped past max_outbound_bytes of backlog; others are told.

    a floods MSGs (up to 24 MB) until c sees ``slow``'s leave notice. Under
    the strict profile slow's stream is then read to its end: it must be
    closed, and its last line must be ``INFO slow-consumer`` (§12.3: a
    dropped client is told why). The load profile's LOD-53 checks the cut-off
    for any server, with or without that line.
    """
    dropped, slow = _flood_past_slow_reader(t, 24_000_000, until_dropped=True)
    t.require(
        dropped,
        "the slow reader was never dropped",
        expected="INFO slow... disconnected",
        got="(nothing)",
    )
    if not t.settings.strict:
        return
    lines, closed = slow.drain(t.settings.line_timeout)
    last = lines[-1] if lines else "(nothing)"
    t.require(
        closed,
        f"slow was announced as gone but its connection stayed open (last line {last[:60]!r})",
        expected="slow's connection closed",
        got="(still open)",
    )
    t.require(
        last == "INFO slow-consumer",
        f"slow was dropped without being told why: its last line was {last[:80]!r}",
        expected="INFO slow-consumer (the last line, §12.3)",
        got=last[:80],
        cause="a slow consumer is not told why it is disconnected (INFO slow-consumer)",
    )


@check("ROB-53", "reset-mid-line", "1.6 8.2", profiles="robust")
def reset_mid_line(t: TestContext) -> None:
    """A client that resets the connection in the middle of a line is cleanly gone.

    The partial line is not executed, the others get the leave notice, and
    a fresh connection is served.
    """
    a, b = t.users("a", "b")
    b.send("MSG this line never ends")
    b.reset()
    a.expect_left(b)
    fresh = t.connect("fresh")
    fresh.send_line("PING after-reset")
    fresh.next_event("an answer to PING after-reset")


@check("ROB-54", "half-close", "12.1", profiles="strict robust")
def half_close(t: TestContext) -> None:
    """After a half-close, the lines already sent are executed and answered, then the server closes.

    b sends two PINGs, a MSG and a partial line, then shuts down its sending
    side: it must still get both PONGs, then the close; a gets the MSG, then
    the leave notice. The partial line is dropped.
    """
    a, b = t.users("a", "b")
    b.send("PING h1\nMSG bye\nPING h2\nMSG partial")
    b.half_close()
    b.expect_pong("h1")
    b.expect_pong("h2")
    b.expect_closed()
    a.expect_msg(b, "bye")
    a.expect_left(b)


def _errors_until_pong(t: TestContext, conn: Conn, pong: str) -> int:
    """Read ``conn``'s lines up to the ``pong``: only ERR lines may come first.

    Returns how many there were; any other line fails the test.
    """
    errors = 0
    while True:
        event = conn.next_event(f"ERR lines, then {pong}")
        if isinstance(event.line, Pong):
            return errors
        t.require(
            isinstance(event.line, Error),
            f"{conn.label}: a line other than ERR before the {pong}: {event.raw[:80]!r}",
            got=event.raw[:80],
        )
        errors += 1


def _garbage(size: int) -> bytes:
    """Deterministic hostile input: every line is refused by any sane server."""
    kinds = [
        b"\xff\xfe\xfd not utf-8",
        b"PING \x00nul",
        b"MSG \x1b[2J\x1b[31mred",
        b"\x01\x02\x03",
        b"DANCE " + bytes(range(0x20, 0x7F)),
        b"PING a\rb",
        b"Q" * 6000,
        b"\xc0\xaf overlong",
        b"\xed\xa0\x80 surrogate",
        b"ZZZZ \xe4\xb8",
    ]
    out = bytearray()
    i = 0
    while len(out) < size:
        out += kinds[i % len(kinds)] + b"\n"
        i += 1
    return bytes(out)


@check("ROB-55", "garbage-flood", "2 4.4", profiles="robust", budget=60)
def garbage_flood(t: TestContext) -> None:
    """256 KB of hostile lines (bad UTF-8, escapes, NULs, over-long) are refused; nothing breaks.

    Every line gets an ERR (any token here), the PING after them gets its
    PONG, nothing reaches the bystander b, and a can still chat.
    """
    a, b = t.users("a", "b")
    a.wire.verbose = False
    data = _garbage(256 * 1024)
    a.send_draining(
        data + b"PING after-garbage\n",
        note=f"{len(data)} bytes of hostile lines, then PING after-garbage",
    )
    errors = _errors_until_pong(t, a, "PONG after-garbage")
    a.wire.verbose = True
    t.note("a", f"{errors} ERR lines before the PONG")
    t.quiet(b)
    a.msg("survived")
    b.expect_msg(a, "survived")


@check("ROB-56", "huge-line", "1.4", profiles="robust", budget=60)
def huge_line(t: TestContext) -> None:
    """An 8 MB line is refused without harm: that connection and the others are still served.

    The connection may get ERR line(s) first; it must answer the PING that
    follows the line, and b must still get a's messages.
    """
    a, b = t.users("a", "b")
    a.send_draining(
        b"MSG " + b"h" * 8_000_000 + b"\nPING after-huge\n",
        note="MSG hhh... (8 MB, one line), then PING after-huge",
    )
    _errors_until_pong(t, a, "PONG after-huge")
    t.quiet(b)
    a.msg("after the huge line")
    b.expect_msg(a, "after the huge line")


@check("ROB-57", "connection-churn", "8.2", profiles="robust", budget=60)
def connection_churn(t: TestContext) -> None:
    """150 connections come and go in every rude way; afterwards no ghost user remains.

    Plain closes, resets, partial lines, LOGIN then close or reset without
    reading the OK, QUIT without reading. Then WHO must eventually list
    only live users, and every churned name can log in again.
    """
    (w,) = t.users("w")
    w.wire.verbose = False
    churned: list[str] = []
    for i in range(150):
        kind = i % 6
        c = t.connect(f"x{i}")
        c.wire.verbose = False
        c.final_check = False
        if kind == 0:
            c.close()
        elif kind == 1:
            c.reset()
        elif kind == 2:
            c.send("PING never-finished")
            c.close()
        else:
            c.send_line(f"LOGIN {c.name}")
            churned.append(c.name)
            w.ignore_notices_about.add(c.name.lower())
            if kind == 3:
                c.close()
            elif kind == 4:
                c.reset()
            else:
                c.send_line("QUIT")
                c.close()
    w.wire.verbose = True
    gone = {n.lower() for n in churned}
    names = _settled_who(t, w, gone)
    t.require(
        names == {w.name.lower()},
        f"WHO still lists {sorted(names - {w.name.lower()})} after they left",
        expected=f"USER {w.name}",
        got=", ".join(sorted(names)),
    )
    w.ignore_notices_about.discard(churned[0].lower())
    again = t.connect("again", name=churned[0])
    again.login()
    w.expect_joined(again)


def _settled_who(t: TestContext, w: Conn, gone: set[str]) -> set[str]:
    """WHO, asked every 50 ms until it has listed none of ``gone`` for a while (or time is up).

    The churned connections are processed concurrently by many servers, so a
    single WHO right after the churn proves nothing either way: the listing
    must be clean, and stay clean for one absence wait (labelled).
    """
    t.note(
        "", f"asking WHO every 50 ms until no churned user is listed for {t.settings.absence:.2f} s"
    )
    end = time.monotonic() + t.settings.line_timeout
    pause = threading.Event()
    clean_since: float | None = None
    while True:
        names = {n.lower() for n in w.who()}
        now = time.monotonic()
        if names & gone:
            clean_since = None
        elif clean_since is None:
            clean_since = now
        elif now - clean_since >= t.settings.absence:
            return names
        if now > end:
            return names
        pause.wait(0.05)


@check("ROB-58", "ping-flood", "10.1 1.7", profiles="robust", budget=60)
def ping_flood(t: TestContext) -> None:
    """5000 pipelined PINGs get 5000 PONGs, in order."""
    a = t.connect("a").login()
    a.wire.verbose = False
    a.send_draining(
        "".join(f"PING f{i}\n" for i in range(5000)).encode(),
        note="PING f0 ... PING f4999 (one stream)",
    )
    for i in range(5000):
        a.expect_pong(f"f{i}")
    a.wire.verbose = True


@check("ROB-59", "no-ghost-users", "8.2 12.1", profiles="strict robust", budget=60)
def no_ghost_users(t: TestContext) -> None:
    """Users leaving in six ways get one notice each, vanish from WHO, and free their names.

    Close, reset, QUIT, half-close, close after a partial line, reset after
    a burst of MSGs.
    """
    (w,) = t.users("w")
    leavers = t.users("k1", "k2", "k3", "k4", "k5", "k6")
    for k in leavers:
        w.expect_joined(k)
    k1, k2, k3, k4, k5, k6 = leavers
    for k in leavers:
        k.final_check = False
    k1.close()
    k2.reset()
    k3.send_line("QUIT")
    k4.half_close()
    k5.send("MSG unfinished")
    k5.close()
    k6.send("".join(f"MSG burst{i}\n" for i in range(50)))
    k6.reset()
    pending = {k.name.lower() for k in leavers}
    while pending:
        event = w.next_event(f"leave notices for {sorted(pending)}")
        line = event.line
        if isinstance(line, MessageReceived) and line.sender.lower() == k6.name.lower():
            continue  # k6's burst may or may not get out before its reset
        t.require(
            isinstance(line, UserDisconnected) and line.name.lower() in pending,
            f"w: unexpected line {event.raw!r} while waiting for leave notices",
            expected=" / ".join(f"INFO {n} disconnected" for n in sorted(pending)),
            got=event.raw,
        )
        assert isinstance(line, UserDisconnected)
        pending.discard(line.name.lower())
    t.quiet(w)
    t.absent(w, why="no second leave notice for any of them")
    names = [n.lower() for n in w.who()]
    t.require(
        names == [w.name.lower()],
        f"WHO lists {names}",
        expected=f"USER {w.name}",
        got=", ".join(names),
    )
    for k in leavers:
        again = t.connect(f"re-{k.label}", name=k.name).login()
        again.final_check = False  # it hears the later ones join; not the point here
        w.expect_joined(k.name)
