"""Framing (§1) and text (§2): how bytes become lines, however TCP splits them.

The shared vectors already check each framing rule with whole sends; these
tests add what a script of whole sends cannot: commands really split over
packets, byte-at-a-time input, the end of the connection, and the server's
own output format.
"""

from __future__ import annotations

from chatproto import Ok

from .._context import TestContext
from .._registry import check
from .._verdicts import CheckFailed


def _bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


@check(
    "FRM-51",
    "crlf-commands",
    "1.2",
    profiles="core strict",
    cause="commands ending in CR LF are not understood, or the CR is relayed",
)
def crlf_commands(t: TestContext) -> None:
    """Commands ending in CRLF work, and the CR is not relayed.

    telnet and many clients end lines with ``\\r\\n``; a line protocol strips
    the ``\\r``. A server that keeps it relays ``hello\\r`` to everyone.
    """
    a = t.connect("a")
    a.send(f"LOGIN {a.name}\r\n")
    a.expect_ok()
    a.logged_in = True
    b = t.connect("b")
    b.send(f"LOGIN {b.name}\r\n")
    b.expect_ok()
    b.logged_in = True
    a.expect_joined(b)
    b.send("MSG over crlf\r\n")
    event = a.expect_msg(b, "over crlf")
    t.require(
        not event.crlf or t.probed.crlf_output,
        "a: the MSG line ended with CR LF: the sender's CR was relayed as part of the text",
        expected=f"MSG {b.name} over crlf",
        got=event.raw + "\\r",
    )
    if t.dialect.has_ping:
        b.send(b.ping_text("crlf") + "\r\n")
        b.expect_ping_answer("crlf")


@check(
    "FRM-52",
    "pipelined-one-packet",
    "1.3",
    profiles="core strict",
    cause="lines after the first in one packet are not processed",
)
def pipelined(t: TestContext) -> None:
    """Several commands in one packet are all executed, in order, with no more data needed.

    b is logged in; a sends LOGIN and three MSGs in one packet, and nothing
    more: b must get the three. A server that handles one command per
    ``recv()`` loses them; one that keeps the rest of the login packet in a
    buffer it only reads when more data arrives shows them late, after a
    nudge (a further line), which names that defect. Under strict a PING,
    a WHO and a PING follow.
    """
    b = t.connect("b").login()
    a = t.connect("a")
    extra = "PING p1\nWHO\nPING p2\n" if t.settings.strict else ""
    a.send(f"LOGIN {a.name}\nMSG one\nMSG two\nMSG three\n{extra}")
    a.expect_ok(f"OK (LOGIN {a.name})")
    a.logged_in = True
    b.expect_joined(a)
    try:
        b.expect_msg(a, "one")
    except CheckFailed as missing:
        a.send_line("MSG nudge")
        t.note("a", "sent one more line, to see whether the missing lines were only stuck")
        try:
            b.expect_msg(a, "one")
        except CheckFailed:
            raise missing from None
        t.fail(
            "b: the MSGs sent in the same packet as LOGIN arrived only after a sent more data",
            expected=f"MSG {a.name} one without further data",
            got="(only after a nudge)",
            cause="lines after LOGIN in the same packet wait for more data",
        )
    for text in ("two", "three"):
        b.expect_msg(a, text)
    if t.settings.strict:
        a.expect_pong("p1")
        a.expect(f"USER {b.name}", lambda e: e.raw == f"USER {b.name}")
        a.expect(f"USER {a.name}", lambda e: e.raw == f"USER {a.name}")
        a.expect_pong("p2")


@check(
    "FRM-53",
    "split-over-packets",
    "1.3",
    profiles="core strict",
    cause="a line split over several packets is not reassembled",
)
def split_packets(t: TestContext) -> None:
    """A command split over several packets is executed once, when its newline arrives.

    Pieces are sent 20 ms apart with TCP_NODELAY, so each is its own segment.
    The second half also carries the start of the next command.
    """
    a, b = t.users("a", "b")
    a.send_paced([b"MS", b"G spl", b"it mess", b"age\nMSG sec", b"ond\n"], gap=0.02)
    b.expect_msg(a, "split message")
    b.expect_msg(a, "second")
    if t.dialect.has_ping:
        first, second = (a.ping_text(x).encode() for x in ("t1", "t2"))
        a.send_paced([first[:2], first[2:] + b"\n" + second[:2], second[2:] + b"\n"], gap=0.02)
        a.expect_ping_answer("t1")
        a.expect_ping_answer("t2")


@check(
    "FRM-54",
    "byte-at-a-time",
    "1.3",
    profiles="core strict",
    budget=40,
    cause="a line split over several packets is not reassembled",
)
def byte_at_a_time(t: TestContext) -> None:
    """Commands sent one byte per packet work: LOGIN, MSG (and PING where there is one).

    The slowest possible network: every byte its own segment, 2 ms apart.
    """
    a = t.connect("a")
    a.send_paced(
        _bytewise(f"LOGIN {a.name}\n".encode()),
        gap=0.002,
        note=f"LOGIN {a.name} (one byte per packet)",
    )
    a.expect_ok()
    a.logged_in = True
    b = t.connect("b").login()
    a.expect_joined(b)
    a.send_paced(
        _bytewise(b"MSG one byte at a time\n"),
        gap=0.002,
        note="MSG one byte at a time (one byte per packet)",
    )
    b.expect_msg(a, "one byte at a time")
    if t.dialect.has_ping:
        text = a.ping_text("bytes")
        a.send_paced(_bytewise(f"{text}\n".encode()), gap=0.002, note=f"{text} (byte by byte)")
        a.expect_ping_answer("bytes")


@check("FRM-55", "lf-only-output", "1.2", profiles="core strict")
def lf_only_output(t: TestContext) -> None:
    """The server ends its lines with LF alone.

    ``core`` accepts CRLF as the dialect ``crlf-output``; ``strict`` does not.
    Every other test ignores the line ending, so this is the one that tells.
    """
    a = t.connect("a")
    a.send_line(f"LOGIN {a.name}")
    event = a.expect_ok()
    a.logged_in = True
    if event.crlf:
        t.allow("crlf-output", "the server ends its lines with CR LF", tested_here=True)


@check("FRM-56", "no-banner", "1.1", profiles="core strict")
def no_banner(t: TestContext) -> None:
    """The server sends nothing before the client speaks: the first line answers LOGIN.

    ``core`` accepts a greeting as the dialect ``banner``; ``strict`` does not.
    """
    a = t.connect("a", banner=False)
    a.send_line(f"LOGIN {a.name}")
    before = []
    while True:
        event = a.next_event(f"OK (LOGIN {a.name})")
        if isinstance(event.line, Ok):
            break
        before.append(event.raw)
        if len(before) > 20:
            t.fail("a: over 20 lines before the OK", expected="OK", got=before[0])
    a.logged_in = True
    if before:
        t.allow("banner", " | ".join(before), tested_here=True)


@check(
    "FRM-57",
    "partial-line-dropped-at-close",
    "1.6",
    profiles="strict",
    cause="a partial line is executed when the client closes",
)
def partial_line_at_close(t: TestContext) -> None:
    """A partial line (no newline) is never executed when the client closes.

    b sends ``MSG never sent`` without a newline and closes; a must get the
    leave notice and never the MSG.
    """
    a, b = t.users("a", "b")
    b.send("MSG never sent")
    b.close()
    a.expect_left(b)


@check("FRM-58", "long-line-in-pieces", "1.4", profiles="strict")
def long_line_in_pieces(t: TestContext) -> None:
    """An over-long line sent in pieces gets one ERR line-too-long, before its newline.

    The limit holds however TCP splits the bytes: the error comes as soon as
    the limit is passed (not at the newline), exactly once, and the next line
    is read normally.
    """
    a, b = t.users("a", "b")
    limit = t.settings.max_line_bytes
    piece = b"x" * 1000
    pieces = [b"MSG "] + [piece] * (limit // 1000 + 2)
    a.send_paced(
        pieces,
        gap=0.005,
        note=f"MSG xxx... ({4 + len(piece) * (len(pieces) - 1)} bytes in {len(pieces)} pieces, "
        "no newline)",
    )
    a.expect_error("line-too-long")
    a.send_paced(
        [piece, piece, b"\n"], gap=0.005, note="2000 more bytes of the same line, then its newline"
    )
    a.msg("after the long line")
    b.expect_msg(a, "after the long line")


@check("TXT-51", "utf8-split-across-packets", "2.1", profiles="strict")
def utf8_split(t: TestContext) -> None:
    """A multi-byte UTF-8 character split across packets is relayed intact.

    Lines are framed before they are decoded, so a character cut by TCP
    between two segments is still valid once the line is complete.
    """
    a, b = t.users("a", "b")
    data = "MSG caf\u00e9 \u4e16\u754c \U0001f389\n".encode()
    cut = data.index("\u4e16".encode()) + 1
    a.send_paced([data[:cut], data[cut:-3], data[-3:]], gap=0.02)
    b.expect_msg(a, "caf\u00e9 \u4e16\u754c \U0001f389")
