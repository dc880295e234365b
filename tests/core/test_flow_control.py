"""Flow control in the core: flood budget, backpressure, soft and hard limits.

docs/protocol.md §12.3, §13 and §16. Everything here runs on the in-memory
harness with simulated time: whose input the core takes, when, and how much,
is decided by the core alone, so these are the tests every backend relies on.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatproto import (
    ChatServer,
    CloseMode,
    CloseReason,
    ConnectionRefused,
    ErrorCode,
    FloodLimited,
    InputPaused,
    InputResumed,
    PauseCause,
    ServerConfig,
    ServerEvent,
    UserLeft,
)
from tests.core.memory_harness import MemoryClient, MemoryRoom

#: Small numbers, so that limits are reached in a few lines.
FLOOD = ServerConfig(flood_rate=10.0, flood_burst=5, backpressure_timeout=0.0)
ROOMY = ServerConfig(flood_rate=0.0, max_outbound_bytes=4096, max_line_bytes=512)


def msgs(prefix: str, count: int) -> bytes:
    return b"".join(f"MSG {prefix}{i}\n".encode() for i in range(count))


def paused(events: list[ServerEvent], cause: PauseCause) -> int:
    return sum(isinstance(e, InputPaused) and e.cause is cause for e in events)


# ------------------------------------------------------------------ flooding


def test_burst_runs_at_once_and_the_rest_at_the_flood_rate() -> None:
    room = MemoryRoom(FLOOD)
    a, b = room.login("a", "b")
    a.room.advance(1.0)  # the logins spent tokens: let the budget fill again
    events = a.send(msgs("m", 12))
    assert b.lines() == [f"MSG a m{i}" for i in range(5)]
    assert paused(events, PauseCause.FLOOD) == 1
    assert FloodLimited(a.conn) in events
    assert a.paused
    # 7 lines left at 10/s: a batch of one every 0.1 s (the batch is a tenth
    # of a second of the rate).
    room.advance(0.35)
    assert b.lines() == ["MSG a m5", "MSG a m6", "MSG a m7"]
    room.advance(1.0)
    assert b.lines() == [f"MSG a m{i}" for i in range(8, 12)]
    assert not a.paused
    assert InputResumed(a.conn) in room.events


def test_delayed_lines_are_never_dropped_nor_reordered() -> None:
    room = MemoryRoom(FLOOD)
    a, b = room.login("a", "b")
    data = msgs("x", 40) + b"PING end\n"
    for i in range(0, len(data), 7):  # many small reads, some while paused
        a.send(data[i : i + 7])
    room.advance(10.0)
    assert b.lines() == [f"MSG a x{i}" for i in range(40)]
    assert a.lines() == ["PONG end"]


def test_what_arrives_while_paused_waits_in_tcp_not_in_the_core() -> None:
    room = MemoryRoom(FLOOD)
    (a,) = room.login("a")
    room.advance(1.0)
    a.send(b"PING 1\n" * 20)
    assert a.paused
    a.send(b"PING 2\n" * 1000)
    assert len(a.unread) == 7000  # the adapter does not read a paused connection
    room.advance(110.0)  # 1,020 lines at 10/s
    assert a.lines() == ["PONG 1"] * 20 + ["PONG 2"] * 1000
    assert not a.unread


def test_flood_limited_is_reported_once_per_episode() -> None:
    room = MemoryRoom(FLOOD)
    (a,) = room.login("a")
    room.advance(1.0)
    for _ in range(5):
        a.send(b"PING\n" * 20)
        room.advance(1.0)
    room.advance(30.0)
    assert [e for e in room.events if isinstance(e, FloodLimited)] == [FloodLimited(a.conn)]
    # The budget filled up again: a new flood is a new episode.
    a.send(b"PING\n" * 20)
    assert [e for e in room.events if isinstance(e, FloodLimited)] == [FloodLimited(a.conn)] * 2


def test_flood_control_off() -> None:
    room = MemoryRoom(replace(FLOOD, flood_rate=0.0))
    a, b = room.login("a", "b")
    events = a.send(msgs("m", 1000))
    assert len(b.lines()) == 1000
    assert not any(isinstance(e, (InputPaused, FloodLimited)) for e in events)


def test_held_lines_count_as_activity_for_the_idle_timer() -> None:
    config = replace(FLOOD, idle_timeout=2.0, flood_rate=1.0, flood_burst=1)
    room = MemoryRoom(config)
    a = room.connect()
    a.send(b"PING\n" * 6)
    room.advance(5.5)
    assert not a.closed
    assert a.lines() == ["PONG"] * 6
    room.advance(2.0)
    assert a.lines() == ["INFO idle-timeout"]


def test_end_of_stream_behind_held_lines_runs_them_first() -> None:
    room = MemoryRoom(FLOOD)
    a, b = room.login("a", "b")
    room.advance(1.0)
    a.send(msgs("m", 8) + b"MSG partial")
    a.eof()
    assert room.server.close_mode(a.conn) is CloseMode.OPEN
    room.advance(2.0)
    assert b.lines() == [f"MSG a m{i}" for i in range(8)] + ["INFO a disconnected"]
    assert a.closed_with is CloseMode.AFTER_FLUSH


def test_quit_in_held_lines_ends_it() -> None:
    room = MemoryRoom(FLOOD)
    a, b = room.login("a", "b")
    room.advance(1.0)
    a.send(msgs("m", 7) + b"QUIT\nMSG never\n")
    room.advance(5.0)
    assert b.lines() == [f"MSG a m{i}" for i in range(7)] + ["INFO a disconnected"]
    assert a.lines()[-1] == "OK"


# -------------------------------------------------------------- backpressure


def test_a_reader_that_keeps_up_is_never_dropped() -> None:
    # The issue 10 measurement, in memory: one sender much faster than the
    # reader's socket. The reader drains 200 KB/s through a 64 KiB window;
    # the sender's 2 MB arrive in 64 KiB reads as fast as it is read.
    config = ServerConfig(flood_rate=0.0)
    room = MemoryRoom(config)
    sender = room.connect()
    reader = room.connect(read_rate=200_000)
    sender.send(b"LOGIN s\n")
    reader.send(b"LOGIN r\n")
    reader.take()
    line = b"MSG " + b"z" * 95 + b"\n"
    total = 20_000
    data = line * total
    for i in range(0, len(data), 65536):
        sender.send(data[i : i + 65536])
    room.run(15.0, step=0.005)
    got = reader.lines()
    assert len(got) == total
    assert not reader.closed
    assert paused(room.events, PauseCause.BACKPRESSURE) >= 1
    assert not any(isinstance(e, UserLeft) for e in room.events)


def test_the_sender_waits_for_a_congested_reader_then_goes_on() -> None:
    room = MemoryRoom(ROOMY)
    s, v = room.login("s", "v")
    v.stop_reading()
    big = b"MSG " + b"y" * 400 + b"\n"  # 407 bytes as received
    s.send(big * 5)  # v passes the high-water mark (1024) at the 3rd line
    assert v.queued == 407 * 3
    assert s.paused
    assert len(s.unread) == 0
    s.send(b"PING after\n")
    assert s.lines() == []  # waits behind the held MSGs
    v.resume_reading()
    assert v.lines() == [f"MSG s {'y' * 400}"] * 5
    assert s.lines() == ["PONG after"]
    assert not s.paused


def test_a_reader_that_takes_nothing_holds_senders_only_briefly() -> None:
    config = replace(ROOMY, backpressure_timeout=0.5)
    room = MemoryRoom(config)
    s, v, r = room.login("s", "v", "r")
    v.stop_reading()
    big = b"MSG " + b"y" * 400 + b"\n"
    s.send(big * 20)
    # r went over the high-water mark too, within the read, and drained at
    # once: that let s run one more line before v held it back.
    assert len(r.lines()) == 4
    assert s.paused
    room.advance(0.49)
    assert r.lines() == []
    room.advance(0.02)
    # v stalled: it holds nobody back; it passes the cap and is dropped.
    lines = r.lines()
    assert "INFO v disconnected" in lines
    assert lines.count(f"MSG s {'y' * 400}") == 16
    assert room.server.close_reason(v.conn) is CloseReason.SLOW_CONSUMER


def test_soft_limit_drops_a_congested_reader_that_takes_nothing() -> None:
    config = replace(ROOMY, slow_consumer_timeout=3.0)
    room = MemoryRoom(config)
    s, v, r = room.login("s", "v", "r")
    v.stop_reading()
    s.send((b"MSG " + b"y" * 400 + b"\n") * 3)  # over the high-water mark, under the cap
    room.advance(2.9)
    assert room.server.close_mode(v.conn) is CloseMode.OPEN
    room.advance(0.2)
    assert room.server.close_reason(v.conn) is CloseReason.SLOW_CONSUMER
    assert r.lines()[-1] == "INFO v disconnected"
    v.resume_reading()
    assert v.lines() == ["INFO slow-consumer"]  # the backlog went; one line says why
    assert v.closed_with is CloseMode.AFTER_FLUSH


def test_a_draining_reader_resets_the_soft_limit_clock() -> None:
    config = replace(ROOMY, slow_consumer_timeout=3.0)
    room = MemoryRoom(config)
    s, v = room.login("s", "v")
    v.stop_reading()
    for _ in range(5):
        s.send((b"MSG " + b"y" * 400 + b"\n") * 3)
        room.advance(2.0)
        v.resume_reading()
        v.take()
        v.stop_reading()
    assert room.server.close_mode(v.conn) is CloseMode.OPEN


def test_a_sender_that_does_not_read_its_replies_waits_for_itself() -> None:
    room = MemoryRoom(replace(ROOMY, backpressure_timeout=0.5))
    a, b = room.login("a", "b")
    a.stop_reading()
    events = a.send(b"PING " + b"p" * 400 + b"\n" + b"PING\n" * 2000)
    assert paused(events, PauseCause.BACKPRESSURE) == 1
    assert a.queued < 1500
    room.advance(0.6)  # it took nothing: stalled, then over the cap
    assert room.server.close_reason(a.conn) is CloseReason.SLOW_CONSUMER
    assert b.lines() == ["INFO a disconnected"]


def test_twenty_readers_at_200_kb_s_and_one_flooder() -> None:
    # Issue 10, measured item 3, with the default limits: one client sends a
    # million lines into a room of twenty users whose connections read
    # 200 KB/s. Nobody is dropped; everyone gets the flooder's lines in order,
    # at the flood rate, and another user's line gets through at once.
    config = ServerConfig()
    room = MemoryRoom(config)
    flooder = room.connect()
    flooder.send(b"LOGIN flood\n")
    readers = [room.connect(read_rate=200_000) for _ in range(20)]
    for i, r in enumerate(readers):
        r.send(f"LOGIN r{i}\n".encode())
    room.run(1.0)
    for r in readers:
        r.take()
    line = b"MSG " + b"f" * 95 + b"\n"
    flooder.send(line * 1_000_000)
    assert len(flooder.unread) > 90_000_000  # the rest waits in TCP, not in the server
    room.run(5.0)
    readers[0].send(b"MSG hello\n")
    room.run(0.1)
    for r in readers[1:]:
        got = r.lines()
        assert "MSG r0 hello" in got
        flood = [x for x in got if x.startswith("MSG flood ")]
        assert len(flood) >= config.flood_burst + 5 * config.flood_rate - 10
    assert not any(isinstance(e, UserLeft) for e in room.events)


# ---------------------------------------------------------------- admission


def test_accept_refuses_past_max_clients_without_a_connection() -> None:
    config = ServerConfig(max_clients=2)
    room = MemoryRoom(config)
    room.accept()
    room.accept()
    refused = room.accept()
    assert isinstance(refused, ConnectionRefused)
    assert refused.reason is CloseReason.SERVER_FULL
    assert refused.data == f"ERR server-full {ErrorCode.SERVER_FULL.text}\n".encode()
    assert room.server.connection_count == 2  # nothing was registered for it


def test_refuse_hands_back_an_admitted_connection() -> None:
    server = ChatServer(ServerConfig(max_clients=1))
    conn = server.accept(0.0)
    assert not isinstance(conn, ConnectionRefused)
    refused = server.refuse(conn, 0.0)
    assert refused.reason is CloseReason.SERVER_FULL
    assert server.open_count == 0
    assert not isinstance(server.accept(0.0), ConnectionRefused)


def test_accept_during_shutdown() -> None:
    server = ChatServer()
    server.shutdown(0.0)
    refused = server.accept(0.0)
    assert isinstance(refused, ConnectionRefused)
    assert refused.data == b"INFO server-shutdown\n"


# --------------------------------------------------- the adapter's contract


def test_deadline_moved_after_a_drain_makes_held_input_due() -> None:
    server = ChatServer(ROOMY)
    s, v = server.accept(0.0), server.accept(0.0)
    assert not isinstance(s, ConnectionRefused) and not isinstance(v, ConnectionRefused)
    server.receive_data(s, b"LOGIN s\n", 0.0)
    server.receive_data(v, b"LOGIN v\n", 0.0)
    server.data_to_send(s)
    server.data_to_send(v)
    server.take_ready()
    server.take_reading_changes()
    server.receive_data(s, (b"MSG " + b"y" * 400 + b"\n") * 4, 1.0)
    assert server.take_reading_changes() == [(s, False)]
    assert server.next_deadline() == 1.0 + ROOMY.backpressure_timeout
    assert not server.deadline_moved()
    assert server.data_to_send(v)
    assert server.deadline_moved()
    assert server.next_deadline() == 1.0  # due now: the last time the core was told
    server.handle_timeout(1.01)
    assert server.take_reading_changes() == [(s, True)]
    assert len(server.data_to_send(v)) == 407


def test_a_closing_connection_is_read_again() -> None:
    server = ChatServer(replace(ROOMY, backpressure_timeout=10.0, slow_consumer_timeout=20.0))
    s, v = server.accept(0.0), server.accept(0.0)
    assert not isinstance(s, ConnectionRefused) and not isinstance(v, ConnectionRefused)
    server.receive_data(s, b"LOGIN s\n", 0.0)
    server.receive_data(v, b"LOGIN v\n", 0.0)
    server.receive_data(s, (b"MSG " + b"y" * 400 + b"\n") * 3, 1.0)
    assert server.take_reading_changes() == [(s, False)]
    server.handle_timeout(61.0)  # idle: s is closed, and read (its input discarded)
    assert server.close_reason(s) is CloseReason.IDLE_TIMEOUT
    assert server.take_reading_changes() == [(s, True)]
    assert server.reading(s)


# --------------------------------------------------------- split invariance


LINES = [
    b"MSG " + b"w" * 300 + b"\n",
    b"MSG hi\n",
    b"PING\n",
    b"DM v " + b"d" * 200 + b"\n",
    b"WHO\n",
    b"\xff\n",
]


def by_origin(transcript: bytes) -> dict[str, list[bytes]]:
    """Lines grouped by who caused them: the order §1.7 promises within each group.

    The replies to one's own commands, and each other user's lines (their
    MSGs, DMs, and the notices naming them) keep their order however TCP
    splits anything; how different users' lines interleave depends on when
    each was read, which flow control moves.
    """
    groups: dict[str, list[bytes]] = {}
    for line in transcript.split(b"\n")[:-1]:
        verb, _, rest = line.partition(b" ")
        if verb in (b"MSG", b"DM", b"INFO"):
            origin = "user " + rest.partition(b" ")[0].decode()
        else:
            origin = "reply"
        groups.setdefault(origin, []).append(line)
    return groups


FLOW = ServerConfig(
    max_line_bytes=400,
    max_outbound_bytes=3000,
    flood_rate=20.0,
    flood_burst=4,
    backpressure_timeout=0.3,
    slow_consumer_timeout=2.0,
    idle_timeout=100.0,
)


def run_flow(
    steps: list[tuple[int, bytes, int]], split: int | None
) -> list[dict[str, list[bytes]]]:
    """Three clients, "v" never reads; time moves between steps."""
    room = MemoryRoom(FLOW)
    clients: list[MemoryClient] = [room.connect(), room.connect(), room.connect(reading=False)]
    for client, name in zip(clients, ["a", "b", "v"], strict=True):
        client.send(f"LOGIN {name}\n".encode())
    for who, data, ticks in steps:
        if split is None:
            clients[who].send(data)
        else:
            for i in range(0, len(data), split):
                clients[who].send(data[i : i + split])
        room.advance(ticks * 0.1)
    room.advance(30.0)
    return [by_origin(bytes(c.transcript)) for c in clients]


chunks_st = st.lists(st.sampled_from(LINES), min_size=1, max_size=8).map(b"".join)


@settings(max_examples=60, deadline=None)
@given(
    sender=st.sampled_from([0, 2]),
    steps=st.lists(st.tuples(chunks_st, st.integers(0, 5)), max_size=12),
    split=st.integers(1, 50),
)
def test_one_senders_output_is_the_same_however_its_bytes_are_split(
    sender: int, steps: list[tuple[bytes, int]], split: int
) -> None:
    """Flood budget, backpressure, stall, soft and hard limits: none depends on the split."""
    plan = [(sender, data, ticks) for data, ticks in steps]
    assert run_flow(plan, split) == run_flow(plan, None)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from([0, 1, 2]), chunks_st, st.integers(0, 5)), max_size=12
    ),
    split=st.integers(1, 50),
)
def test_many_senders_lose_nothing_for_readers_that_keep_up(
    steps: list[tuple[int, bytes, int]], split: int
) -> None:
    """Several senders: their lines interleave as reads happen, and nothing is lost.

    "a" and "b" read everything, so neither is ever dropped: each gets all
    of the other's lines, in order, however the bytes were split. "v" never
    reads and may be dropped at a point that depends on the interleaving;
    both readers then see the same lines of it, then one notice.
    """
    whole, cut = run_flow(steps, None), run_flow(steps, split)
    for plan in (whole, cut):
        a, b = plan[0], plan[1]
        assert a.get("user v") == b.get("user v")
        from_v = a.get("user v", [])
        assert from_v.count(b"INFO v disconnected") <= 1
        assert b"INFO v disconnected" not in from_v[:-1]  # the notice comes last
    assert whole[0].get("user b") == cut[0].get("user b")
    assert whole[1].get("user a") == cut[1].get("user a")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"flood_rate": -1.0},
        {"flood_rate": 1.0, "flood_burst": 0},
        {"outbound_high_water": 10},
        {"outbound_high_water": 2 * 1024 * 1024},
        {"backpressure_timeout": -1.0},
        {"slow_consumer_timeout": 0.0},
    ],
)
def test_flow_config_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ServerConfig(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------ many idle connections


def test_idle_timeouts_among_many_connections_cost_nothing_until_due() -> None:
    """Issue 10: idle timeouts fire on time, with no per-tick work proportional to N.

    20,000 connections that never send, and one that keeps busy: waking the
    timer for the busy one's deadlines touches none of the idle ones' entries;
    at their deadline every idle one is told and closed, none early, none late.
    """
    n = 20_000
    server = ChatServer(ServerConfig(idle_timeout=60.0, max_clients=n + 1, flood_rate=0.0))
    idle = [server.accept(0.0) for _ in range(n)]
    busy = server.accept(1.0)
    assert not isinstance(busy, ConnectionRefused)
    entries = len(server._timers)
    for second in range(2, 60):
        server.receive_data(busy, b"PING\n", float(second))
        server.data_to_send(busy)
        deadline = server.next_deadline()
        assert deadline is not None and deadline >= 60.0  # nobody else is due
        server.handle_timeout(float(second))
        assert len(server._timers) == entries  # no entry of an idle one was touched
    server.handle_timeout(59.999)
    assert all(server.close_reason(c) is None for c in idle)  # type: ignore[arg-type]
    server.handle_timeout(60.0)
    assert all(server.close_reason(c) is CloseReason.IDLE_TIMEOUT for c in idle)  # type: ignore[arg-type]
    assert server.close_reason(busy) is None


@given(
    tokens=st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=40),
    max_bytes=st.integers(min_value=1, max_value=4000),
)
def test_a_short_drain_means_the_queue_is_empty(tokens: list[int], max_bytes: int) -> None:
    # docs/adapters.md, step 4: the adapters ask again only after a drain of
    # at least max_bytes, so a shorter one must leave nothing behind.
    server = ChatServer(ServerConfig(flood_rate=0))
    conn = server.connection_made(0.0)
    server.receive_data(conn, b"".join(b"PING " + b"t" * n + b"\n" for n in tokens), 0.0)
    expected = b"".join(b"PONG " + b"t" * n + b"\n" if n else b"PONG\n" for n in tokens)
    got = b""
    while True:
        data = server.data_to_send(conn, now=0.0, max_bytes=max_bytes)
        got += data
        if len(data) < max_bytes:
            break
    assert got == expected
    assert server.data_to_send(conn, now=0.0) == b""
