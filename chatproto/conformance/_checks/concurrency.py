"""Concurrency: many clients at once, interleaved senders, races, WHO under load."""

from __future__ import annotations

from chatproto import Error, MessageReceived, Ok, Pong, User, UserJoined

from .._conn import Conn
from .._context import TestContext
from .._registry import check

CLIENTS = 40


@check(
    "CON-51",
    "many-clients",
    "5.1 6.1 9.1",
    profiles="core strict robust",
    budget=60,
    cause="many clients at once are not all served",
)
def many_clients(t: TestContext) -> None:
    """40 clients log in at once; a MSG reaches all 39 others; WHO lists all 40.

    All LOGINs are sent before any reply is read. Under strict, whoever
    logged in first is told about the later ones, so for every pair exactly
    one of the two gets a join notice about the other.
    """
    conns = [t.connect(f"u{i}") for i in range(CLIENTS)]
    for c in conns:
        c.send_line(f"LOGIN {c.name}")
    for c in conns:
        c.expect_ok(f"OK (LOGIN {c.name})")
        c.logged_in = True
    if not t.settings.strict:
        _msg_reaches_all(t, conns)
        return
    notices = t.dialect.join_notice is not None
    seen: dict[str, set[str]] = {}
    for c in conns:
        before = c.sync()
        joined = {e.line.name.lower() for e in before if isinstance(e.line, UserJoined)}
        other = [e.raw for e in before if not isinstance(e.line, UserJoined)]
        t.require(
            not other,
            f"{c.label}: unexpected line {other[:1]}",
            expected="join notices",
            got="\n".join(other[:5]),
        )
        seen[c.name.lower()] = joined
    if notices:
        for i, x in enumerate(conns):
            for y in conns[i + 1 :]:
                xs, ys = (
                    y.name.lower() in seen[x.name.lower()],
                    x.name.lower() in seen[y.name.lower()],
                )
                t.require(
                    xs != ys,
                    f"{x.name} and {y.name}: {'both' if xs else 'neither'} got a join notice "
                    "about the other",
                    expected="exactly one join notice between the two",
                    got=f"{x.label}:{xs} {y.label}:{ys}",
                )
    _msg_reaches_all(t, conns)


def _msg_reaches_all(t: TestContext, conns: list[Conn]) -> None:
    """The first sends a MSG, all others get it; WHO (where there is one) lists all."""
    first = conns[0]
    first.msg("hello all")
    for c in conns[1:]:
        c.expect_msg(first, "hello all")
    if not t.dialect.has_who and not t.settings.strict:
        return
    names = {n.lower() for n in conns[-1].who()}
    t.require(
        names == {c.name.lower() for c in conns},
        f"WHO lists {len(names)} of the {CLIENTS} users",
        expected=f"{CLIENTS} USER lines",
        got=", ".join(sorted(names)),
    )


@check(
    "CON-52",
    "interleaved-senders",
    "1.7 6.1",
    profiles="core strict robust",
    budget=60,
    cause="messages of concurrent senders are lost or reordered",
)
def interleaved_senders(t: TestContext) -> None:
    """5 users send 30 MSGs each at once; everyone gets all the others', each sender's in order.

    The reader r sends nothing and must get all 150; each sender must get
    the other four senders' 120, and never its own.
    """
    reader, *senders = t.users("r", "s1", "s2", "s3", "s4", "s5")
    for s in senders:
        s.send(
            "".join(f"MSG {s.label}-{i}\n" for i in range(30)),
            note=f"MSG {s.label}-0 ... {s.label}-29 (one send)",
        )
    for receiver in (reader, *senders):
        receiver.wire.verbose = receiver is reader
        got: dict[str, list[int]] = {s.name.lower(): [] for s in senders if s is not receiver}
        for _ in range(30 * len(got)):
            event = receiver.expect(
                "MSG from one of the senders", lambda e: isinstance(e.line, MessageReceived)
            )
            assert isinstance(event.line, MessageReceived)
            number = event.line.text.partition("-")[2]
            seq = got.get(event.line.sender.lower())
            t.require(
                seq is not None and number.isdigit(),
                f"{receiver.label}: unexpected line {event.raw!r}",
                got=event.raw,
            )
            assert seq is not None
            seq.append(int(number))
        for name, seq in got.items():
            t.require(
                seq == list(range(30)),
                f"{receiver.label}: {name}'s messages arrived as {seq}",
                expected="0 ... 29 in order",
                got=str(seq),
            )
        receiver.wire.verbose = True


@check("CON-53", "who-block-contiguous", "9.1", profiles="strict robust", budget=60)
def who_block_contiguous(t: TestContext) -> None:
    """While MSGs pour in, each WHO answer stays one contiguous block of USER lines.

    b sends 300 MSGs while a asks WHO 20 times; no MSG may land inside a
    block of USER lines (§9.1).
    """
    a, b, c, d = t.users("a", "b", "c", "d")
    b.send(
        "".join(f"MSG flood{i}\n" for i in range(300)), note="MSG flood0 ... flood299 (one send)"
    )
    a.send("WHO\n" * 20 + "PING whodone\n", note="WHO x 20, PING whodone (one send)")
    want = [a.name, b.name, c.name, d.name]
    block: list[str] = []
    blocks = msgs = 0
    done = False
    while not done or msgs < 300:
        event = a.next_event(
            "USER lines and MSGs" if not done else f"the rest of b's MSGs ({msgs} of 300 so far)"
        )
        line = event.line
        if isinstance(line, User):
            block.append(line.name)
            if len(block) == len(want):
                t.require(
                    block == want, f"a WHO block was {block}", expected=str(want), got=str(block)
                )
                blocks += 1
                block = []
            continue
        t.require(
            not block,
            f"a: {event.raw!r} arrived inside a WHO block, after {block}",
            expected="USER lines only, until the block ends",
            got=event.raw,
        )
        if isinstance(line, MessageReceived):
            msgs += 1
        elif isinstance(line, Pong) and line.token == "whodone":
            done = True
        else:
            t.fail(f"a: unexpected line {event.raw!r}", got=event.raw)
    t.require(blocks == 20, f"{blocks} WHO blocks instead of 20", expected="20", got=str(blocks))
    for peer in (c, d):
        for i in range(300):
            peer.expect_msg(b, f"flood{i}")


@check("CON-54", "login-race", "5.3", profiles="strict robust")
def login_race(t: TestContext) -> None:
    """8 connections LOGIN with one name at once: exactly one gets OK, the others username-taken."""
    name = t.name("race")
    conns = [t.connect(f"r{i}", name=name) for i in range(8)]
    for c in conns:
        c.send_line(f"LOGIN {name}")
    winners: list[Conn] = []
    for c in conns:
        event = c.expect("OK or ERR username-taken", lambda e: isinstance(e.line, (Ok, Error)))
        if isinstance(event.line, Ok):
            winners.append(c)
            c.logged_in = True
        else:
            assert isinstance(event.line, Error)
            if event.line.token != "username-taken":
                t.allow("error-token", f"{event.raw!r} where the spec says ERR username-taken")
    t.require(
        len(winners) == 1,
        f"{len(winners)} connections got OK for the same name",
        expected="exactly one OK",
        got=", ".join(c.label for c in winners) or "(none)",
    )
