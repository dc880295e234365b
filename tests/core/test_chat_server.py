"""ChatServer through the in-memory harness: the room, limits, timers, events.

The wire rules that can be scripted are also in the shared vectors
(test_vectors.py); this file covers what needs the clock, a peer that does
not read, a connection that ends, the limits at N and N+1, and the events.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from chatproto import (
    ChatServer,
    CloseMode,
    CloseReason,
    CommandRejected,
    ConnectionClosed,
    ConnId,
    DirectMessageSent,
    ErrorCode,
    LocalProtocolError,
    MessageBroadcast,
    ServerConfig,
    UserLeft,
    UserLoggedIn,
)
from tests.core.memory_harness import MemoryClient, MemoryRoom

SMALL = ServerConfig(
    max_line_bytes=64, idle_timeout=10.0, max_clients=5, max_outbound_bytes=200, close_timeout=2.0
)
#: SMALL without backpressure: the hard cap alone (docs/protocol.md §12.3).
CAP_ONLY = replace(SMALL, backpressure_timeout=0.0)
AFTER_FLUSH, NOW = CloseMode.AFTER_FLUSH, CloseMode.NOW


def assert_dropped_slow(client: MemoryClient) -> None:
    """``client`` was dropped as a slow consumer: its backlog is gone, one line says why."""
    server = client.room.server
    assert server.close_reason(client.conn) is CloseReason.SLOW_CONSUMER
    assert server.close_mode(client.conn) is AFTER_FLUSH
    client.resume_reading()
    assert client.lines() == ["INFO slow-consumer"]
    assert client.closed_with is AFTER_FLUSH


def err(code: ErrorCode) -> str:
    return f"ERR {code.value} {code.text}"


def drained(room: MemoryRoom) -> None:
    """Forget what every client has received so far."""
    for client in room.clients.values():
        client.take()


# ---------------------------------------------------------- max_line_bytes


@pytest.mark.parametrize("split", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize(
    ("size", "terminator", "accepted"),
    [(64, b"\n", True), (65, b"\n", False), (64, b"\r\n", True), (65, b"\r\n", False)],
)
def test_max_line_bytes(size: int, terminator: bytes, accepted: bool, split: bool) -> None:
    room = MemoryRoom(SMALL)
    a = room.connect()
    token = "t" * (size - 5)
    data = f"PING {token}".encode() + terminator + b"PING next\n"
    events = a.send_split(data, [1] * len(data)) if split else a.send(data)
    first = f"PONG {token}" if accepted else err(ErrorCode.LINE_TOO_LONG)
    assert a.lines() == [first, "PONG next"]
    rejected = [] if accepted else [CommandRejected(a.conn, ErrorCode.LINE_TOO_LONG)]
    assert events == rejected


def test_over_long_broadcast_line_is_relayed() -> None:
    # §6.3: the relayed line is longer than max_line_bytes; it is still sent.
    room = MemoryRoom(SMALL)
    a, b = room.login("alice", "bob")
    text = "m" * 60
    a.send(f"MSG {text}\n".encode())
    assert b.lines() == [f"MSG alice {text}"]


# -------------------------------------------------------------- max_clients


def test_max_clients_n_accepted_n_plus_one_refused() -> None:
    room = MemoryRoom(SMALL)
    clients = [room.connect() for _ in range(SMALL.max_clients)]
    assert room.server.open_count == SMALL.max_clients
    extra = room.connect()
    assert extra.lines() == [err(ErrorCode.SERVER_FULL)]
    assert extra.closed_with is AFTER_FLUSH
    assert extra.events == [ConnectionClosed(extra.conn, CloseReason.SERVER_FULL)]
    assert room.server.open_count == SMALL.max_clients
    for client in clients:
        client.send(b"PING\n")
        assert client.lines() == ["PONG"]


def test_refused_connection_is_closed_after_flush_even_if_not_reading() -> None:
    room = MemoryRoom(SMALL)
    for _ in range(SMALL.max_clients):
        room.connect()
    extra = room.connect(reading=False)
    assert room.server.close_mode(extra.conn) is AFTER_FLUSH
    assert room.server.close_reason(extra.conn) is CloseReason.SERVER_FULL
    # Input from it is ignored while it waits to be flushed.
    assert extra.send(b"LOGIN x\n") == []
    assert room.server.usernames() == []
    # Its peer never reads: it is cut off after close_timeout.
    room.advance(SMALL.close_timeout)
    assert extra.closed_with is NOW


def test_closing_connections_do_not_count() -> None:
    room = MemoryRoom(SMALL)
    quitter = room.connect(reading=False)
    for _ in range(SMALL.max_clients - 1):
        room.connect()
    quitter.send(b"QUIT\n")
    # Still registered (its OK is queued), but closing: it does not count.
    assert room.server.close_mode(quitter.conn) is AFTER_FLUSH
    assert room.server.connection_count == SMALL.max_clients
    assert room.server.open_count == SMALL.max_clients - 1
    last = room.connect()
    assert not last.closed
    extra = room.connect()
    assert extra.lines() == [err(ErrorCode.SERVER_FULL)]


def test_a_freed_slot_is_reused() -> None:
    room = MemoryRoom(SMALL)
    first = room.connect()
    for _ in range(SMALL.max_clients - 1):
        room.connect()
    first.close()
    late = room.connect()
    assert not late.closed
    late.send(b"PING\n")
    assert late.lines() == ["PONG"]


# ------------------------------------------------------- max_outbound_bytes


def fill(sender: MemoryClient, sizes: list[int]) -> None:
    """Broadcast from ``sender`` lines of exactly these sizes (as received)."""
    name = sender.room.server.username(sender.conn)
    assert name is not None
    prefix = len(f"MSG {name} ") + 1
    for size in sizes:
        sender.send(f"MSG {'x' * (size - prefix)}\n".encode())


def test_queue_of_exactly_the_cap_is_kept() -> None:
    room = MemoryRoom(CAP_ONLY)
    s, v, r = room.login("s", "v", "r")
    v.stop_reading()
    fill(s, [50, 50, 50, 50])
    assert v.queued == 200
    assert room.server.close_mode(v.conn) is CloseMode.OPEN
    assert len(r.lines()) == 4
    v.resume_reading()
    assert v.lines() == [f"MSG s {'x' * 43}"] * 4


def test_queue_over_the_cap_is_dropped_at_once() -> None:
    room = MemoryRoom(CAP_ONLY)
    s, v, r = room.login("s", "v", "r")
    v.stop_reading()
    fill(s, [50, 50, 50])
    assert not v.closed
    fill(s, [51])
    assert v.queued == len(b"INFO slow-consumer\n")  # the backlog was discarded
    assert room.server.usernames() == ["s", "r"]
    assert [e for e in room.events if isinstance(e, UserLeft)] == [
        UserLeft(v.conn, "v", CloseReason.SLOW_CONSUMER)
    ]
    assert_dropped_slow(v)
    assert v.events[-1] == ConnectionClosed(v.conn, CloseReason.SLOW_CONSUMER)
    # Others: every message, then exactly one notice; the sender too.
    assert r.lines() == [f"MSG s {'x' * 43}"] * 3 + [f"MSG s {'x' * 44}", "INFO v disconnected"]
    assert s.lines() == ["INFO v disconnected"]
    fill(s, [50])
    assert r.lines() == [f"MSG s {'x' * 43}"]


def test_slow_consumer_never_delays_others() -> None:
    # The same traffic with and without a non-reading user: the readers get
    # the same lines, except for the notice that the slow one left.
    def run(with_victim: bool) -> list[str]:
        room = MemoryRoom(CAP_ONLY)
        s, r = room.login("s", "r")
        if with_victim:
            (v,) = room.login("v")
            v.stop_reading()
        drained(room)
        fill(s, [60] * 6)
        return r.lines()

    with_victim = run(True)
    assert with_victim.count("INFO v disconnected") == 1
    with_victim.remove("INFO v disconnected")
    assert with_victim == run(False)


def test_sender_that_does_not_read_is_dropped_and_rest_not_executed() -> None:
    room = MemoryRoom(CAP_ONLY)
    a, b = room.login("alice", "bob")
    a.stop_reading()
    # Each PONG is 56 bytes: the 4th overflows the cap; the MSG after it
    # must not be executed.
    token = "p" * 50
    events = a.send(f"PING {token}\n".encode() * 4 + b"MSG never\n")
    assert room.server.close_reason(a.conn) is CloseReason.SLOW_CONSUMER
    assert b.lines() == ["INFO alice disconnected"]
    assert UserLeft(a.conn, "alice", CloseReason.SLOW_CONSUMER) in events
    assert not any(isinstance(e, MessageBroadcast) for e in events)


def test_sender_overflow_same_however_split() -> None:
    def run(split: bool) -> tuple[list[str], list[object]]:
        room = MemoryRoom(CAP_ONLY)
        a, b = room.login("alice", "bob")
        a.stop_reading()
        data = b"PING " + b"p" * 50 + b"\n"
        data = data * 4 + b"MSG never\n"
        if split:
            a.send_split(data, [7] * len(data))
        else:
            a.send(data)
        return b.lines(), [type(e) for e in room.events]

    assert run(True) == run(False)


def test_slow_consumer_leaves_before_the_next_pipelined_line() -> None:
    # Regression: the victim used to stay in the room until the end of the
    # read, so WHO/DM/MSG later in the same read saw it, and the replies
    # depended on how the sender's lines were batched (§1.3, §12.3).
    lines = [f"MSG {'x' * 55}\n".encode()] * 4 + [b"WHO\n", b"DM v hi\n", b"MSG after\n"]

    def run(batched: bool) -> tuple[list[str], list[object]]:
        room = MemoryRoom(replace(CAP_ONLY, max_clients=10))
        a, v = room.login("a", "v")
        v.stop_reading()
        if batched:
            a.send(b"".join(lines))
        else:
            for line in lines:
                a.send(line)
        assert room.server.close_reason(v.conn) is CloseReason.SLOW_CONSUMER
        # ConnectionClosed comes when the adapter closes, after the read that
        # decided it: its place depends on the batching, by design.
        kept = (UserLoggedIn, ConnectionClosed)
        return a.lines(), [e for e in room.events if not isinstance(e, kept)]

    replies, events = run(batched=True)
    assert replies == ["INFO v disconnected", "USER a", err(ErrorCode.USER_NOT_FOUND)]
    assert (replies, events) == run(batched=False)
    assert events[-1] == MessageBroadcast(ConnId(1), "a", "after", 0)


@pytest.mark.parametrize(("last_pong", "mode"), [(47, AFTER_FLUSH), (48, NOW)])
def test_overflow_while_starting_to_close(last_pong: int, mode: CloseMode) -> None:
    # PONGs fill the queue to 197 or 198 bytes; QUIT's "OK\n" brings it to
    # exactly the cap (kept, closed after flush) or one byte over (cut now).
    room = MemoryRoom(CAP_ONLY)
    a, b = room.login("alice", "bob")
    a.stop_reading()
    pongs = [50, 50, 50, last_pong]
    a.send(b"".join(f"PING {'t' * (size - 6)}\n".encode() for size in pongs) + b"QUIT\n")
    assert b.lines() == ["INFO alice disconnected"]
    assert UserLeft(a.conn, "alice", CloseReason.QUIT) in room.events
    if mode is NOW:
        assert a.closed_with is NOW
    else:
        assert room.server.close_mode(a.conn) is AFTER_FLUSH
        assert a.queued == SMALL.max_outbound_bytes
        a.resume_reading()
        assert a.lines()[-1] == "OK"
        assert a.closed_with is AFTER_FLUSH


def test_idle_notice_that_overflows_cuts_now() -> None:
    room = MemoryRoom(CAP_ONLY)
    a = room.connect(reading=False)
    a.send(b"".join(f"PING {'t' * 44}\n".encode() for _ in range(3)))
    a.send(f"PING {'t' * 35}\n".encode())
    assert a.queued == 191  # + 18 bytes of "INFO idle-timeout\n" > 200
    room.advance(SMALL.idle_timeout)
    assert a.closed_with is NOW
    assert a.events[-1] == ConnectionClosed(a.conn, CloseReason.IDLE_TIMEOUT)


def test_cascade_notice_overflows_another_slow_consumer() -> None:
    room = MemoryRoom(CAP_ONLY)
    s, v1, v2, r = room.login("s", "v1", "v2", "r")
    v1.stop_reading()
    v2.stop_reading()
    fill(s, [50, 50, 50])  # both at 150

    def dm(target: str, size: int) -> list[str]:
        s.send(f"DM {target} {'y' * (size - len('DM s ') - 1)}\n".encode())
        return s.lines()

    assert dm("v2", 45) == ["OK"]  # v2 at 195: a 21-byte notice would overflow it
    assert v2.queued == 195
    assert dm("v1", 50) == ["OK"]  # v1 at exactly 200: kept
    assert not v1.closed
    # v1 at 207: dropped; its notice overflows v2.
    assert dm("v1", 7) == ["OK", "INFO v1 disconnected", "INFO v2 disconnected"]
    assert_dropped_slow(v1)
    assert_dropped_slow(v2)
    left = [e for e in room.events if isinstance(e, UserLeft)]
    assert left == [
        UserLeft(v1.conn, "v1", CloseReason.SLOW_CONSUMER),
        UserLeft(v2.conn, "v2", CloseReason.SLOW_CONSUMER),
    ]
    # The others get each notice exactly once, in the order the users left.
    assert r.lines()[-2:] == ["INFO v1 disconnected", "INFO v2 disconnected"]
    assert room.server.usernames() == ["s", "r"]


# ------------------------------------------------------------- idle_timeout


def test_idle_timeout_fires_at_the_deadline_not_before() -> None:
    room = MemoryRoom(SMALL)
    a, b = room.login("alice", "bob")
    room.advance(9.5)
    b.send(b"PING\n")  # bob stays active
    room.advance(0.4999)
    assert not a.closed
    assert a.lines() == []
    events = room.advance(0.0001)
    assert a.lines() == ["INFO idle-timeout"]
    assert a.closed_with is AFTER_FLUSH
    assert events == [
        UserLeft(a.conn, "alice", CloseReason.IDLE_TIMEOUT),
        ConnectionClosed(a.conn, CloseReason.IDLE_TIMEOUT),
    ]
    assert b.lines() == ["PONG", "INFO alice disconnected"]
    assert not b.closed


def test_idle_timeout_before_login() -> None:
    room = MemoryRoom(SMALL)
    a = room.connect()
    room.advance(SMALL.idle_timeout)
    assert a.lines() == ["INFO idle-timeout"]
    assert a.events == [ConnectionClosed(a.conn, CloseReason.IDLE_TIMEOUT)]


@pytest.mark.parametrize(
    "line",
    [b"PING\n", b"\n", b"\r\n", b"DANCE\n", b"\xff\n", b"x" * 100 + b"\n", b"MSG hi\n"],
    ids=["ping", "empty", "crlf", "unknown", "bad-utf8", "too-long", "not-logged-in"],
)
def test_any_complete_line_resets_idle(line: bytes) -> None:
    room = MemoryRoom(SMALL)
    a = room.connect()
    room.advance(8)
    a.send(line)
    a.take()
    room.advance(9.99)
    assert not a.closed
    room.advance(0.01)
    assert a.lines() == ["INFO idle-timeout"]


def test_partial_bytes_do_not_reset_idle() -> None:
    room = MemoryRoom(SMALL)
    a = room.connect()
    room.advance(5)
    a.send(b"PIN")
    room.advance(4)
    a.send(b"G")
    room.advance(1)
    assert a.lines() == ["INFO idle-timeout"]
    assert a.closed_with is AFTER_FLUSH


def test_line_completed_later_resets_idle() -> None:
    room = MemoryRoom(SMALL)
    a = room.connect()
    a.send(b"PIN")
    room.advance(9)
    a.send(b"G\n")
    room.advance(9)
    assert a.lines() == ["PONG"]
    room.advance(1)
    assert a.lines() == ["INFO idle-timeout"]


def test_next_deadline_is_never_late() -> None:
    room = MemoryRoom(SMALL)
    server = room.server
    clients = [room.connect() for _ in range(3)]
    last_seen = {c.conn: room.now for c in clients}
    for step in range(30):
        client = clients[step % 3]
        room.advance(0.7 * (step % 4))
        if client.closed:
            continue
        client.send(b"PING\n")
        last_seen[client.conn] = room.now
        due = min(t for conn, t in last_seen.items() if not room.clients[conn].closed)
        deadline = server.next_deadline()
        assert deadline is not None
        assert deadline <= due + SMALL.idle_timeout


def test_next_deadline_none_when_nothing_is_pending() -> None:
    room = MemoryRoom(SMALL)
    assert room.server.next_deadline() is None
    a = room.connect()
    assert room.server.next_deadline() == room.now + SMALL.idle_timeout
    a.close()
    room.advance(SMALL.idle_timeout)
    assert room.server.next_deadline() is None


def test_handle_timeout_early_does_nothing() -> None:
    room = MemoryRoom(SMALL)
    a = room.connect()
    assert room.server.handle_timeout(room.now + 1) == []
    assert room.server.take_ready() == []
    assert not a.closed


# ------------------------------------------------------------ close_timeout


def test_quit_without_reading_is_cut_after_close_timeout() -> None:
    room = MemoryRoom(SMALL)
    a, b = room.login("alice", "bob")
    a.stop_reading()
    a.send(b"QUIT\n")
    assert room.server.close_mode(a.conn) is AFTER_FLUSH
    assert b.lines() == ["INFO alice disconnected"]  # the name is free at once
    room.advance(SMALL.close_timeout - 0.01)
    assert room.server.close_mode(a.conn) is AFTER_FLUSH
    room.advance(0.01)
    assert a.closed_with is NOW
    assert a.events[-1] == ConnectionClosed(a.conn, CloseReason.QUIT)


def test_idle_then_not_reading_is_cut_after_close_timeout() -> None:
    room = MemoryRoom(SMALL)
    a = room.connect(reading=False)
    room.advance(SMALL.idle_timeout)
    assert room.server.close_mode(a.conn) is AFTER_FLUSH
    assert a.queued == len(b"INFO idle-timeout\n")
    room.advance(SMALL.close_timeout)
    assert a.closed_with is NOW


def test_closing_connection_that_drains_in_time_closes_after_flush() -> None:
    room = MemoryRoom(SMALL)
    a = room.connect(reading=False)
    a.send(b"PING\nQUIT\n")
    room.advance(SMALL.close_timeout / 2)
    a.resume_reading()
    assert a.lines() == ["PONG", "OK"]
    assert a.closed_with is AFTER_FLUSH


def test_zero_close_timeout() -> None:
    room = MemoryRoom(ServerConfig(close_timeout=0.0))
    a = room.connect(reading=False)
    a.send(b"QUIT\n")
    room.advance(0)
    assert a.closed_with is NOW


# --------------------------------------------------------------- half-close


def test_half_close_flushes_replies_and_drops_partial() -> None:
    room = MemoryRoom(SMALL)
    a, b = room.login("alice", "bob")
    a.send(b"PING 1\nMSG hi\nPING 2\nMSG never")
    events = a.eof()
    assert a.lines() == ["PONG 1", "PONG 2"]
    assert a.closed_with is AFTER_FLUSH
    assert b.lines() == ["MSG alice hi", "INFO alice disconnected"]
    assert events == [
        UserLeft(a.conn, "alice", CloseReason.PEER_CLOSED),
        ConnectionClosed(a.conn, CloseReason.PEER_CLOSED),
    ]
    assert room.server.usernames() == ["bob"]


def test_half_close_of_a_non_reader_keeps_replies_until_drained() -> None:
    room = MemoryRoom(SMALL)
    a = room.connect(reading=False)
    a.send(b"PING\n")
    a.eof()
    assert room.server.close_mode(a.conn) is AFTER_FLUSH
    assert a.send(b"PING again\n") == []  # after end of stream: ignored
    a.resume_reading()
    assert a.lines() == ["PONG"]
    assert a.closed_with is AFTER_FLUSH


def test_eof_after_quit_is_quiet() -> None:
    room = MemoryRoom(SMALL)
    a = room.connect(reading=False)
    a.send(b"QUIT\n")
    assert a.eof() == []
    assert room.server.close_reason(a.conn) is CloseReason.QUIT


# ---------------------------------------------------------- connection_lost


def test_connection_lost_user_leaves() -> None:
    room = MemoryRoom(SMALL)
    a, b = room.login("alice", "bob")
    events = a.close()
    assert events == [
        UserLeft(a.conn, "alice", CloseReason.CONNECTION_LOST),
        ConnectionClosed(a.conn, CloseReason.CONNECTION_LOST),
    ]
    assert b.lines() == ["INFO alice disconnected"]
    assert room.server.usernames() == ["bob"]
    assert room.server.connection_count == 1
    # The name is free at once.
    c = room.connect()
    c.send(b"LOGIN ALICE\n")
    assert c.lines() == ["OK"]


def test_connection_lost_is_idempotent_and_later_input_quiet() -> None:
    room = MemoryRoom(SMALL)
    a, b = room.login("alice", "bob")
    a.close()
    b.take()
    server = room.server
    assert server.connection_lost(a.conn, room.now) == []
    assert server.receive_data(a.conn, b"MSG late\n", room.now) == []
    assert server.receive_eof(a.conn, room.now) == []
    assert server.data_to_send(a.conn) == b""
    assert server.close_mode(a.conn) is NOW
    assert server.close_reason(a.conn) is None
    assert server.username(a.conn) is None
    assert server.queued_bytes(a.conn) == 0
    room.advance(100)
    assert b.lines() == ["INFO idle-timeout"]


def test_connection_lost_reports_the_first_reason() -> None:
    room = MemoryRoom(SMALL)
    a = room.connect(reading=False)
    a.send(b"QUIT\n")
    events = a.close()
    assert events == [ConnectionClosed(a.conn, CloseReason.QUIT)]


def test_connection_lost_of_unlogged_connection_sends_no_notice() -> None:
    room = MemoryRoom(SMALL)
    (a,) = room.login("alice")
    b = room.connect()
    assert b.close() == [ConnectionClosed(b.conn, CloseReason.CONNECTION_LOST)]
    assert a.lines() == []


# ----------------------------------------------------------------- shutdown


def test_shutdown_notices_in_login_order() -> None:
    room = MemoryRoom(SMALL)
    a, b, c = room.login("alice", "bob", "carol")
    events = room.shutdown()
    assert a.lines() == ["INFO server-shutdown", "INFO bob disconnected", "INFO carol disconnected"]
    assert b.lines() == [
        "INFO server-shutdown",
        "INFO alice disconnected",
        "INFO carol disconnected",
    ]
    assert c.lines() == [
        "INFO server-shutdown",
        "INFO alice disconnected",
        "INFO bob disconnected",
    ]
    assert [e for e in events if isinstance(e, UserLeft)] == [
        UserLeft(a.conn, "alice", CloseReason.SHUTDOWN),
        UserLeft(b.conn, "bob", CloseReason.SHUTDOWN),
        UserLeft(c.conn, "carol", CloseReason.SHUTDOWN),
    ]
    assert all(x.closed_with is AFTER_FLUSH for x in (a, b, c))
    assert room.server.usernames() == []
    assert room.server.is_shutting_down


def test_shutdown_order_follows_logins_not_connections() -> None:
    room = MemoryRoom()
    first = room.connect()
    second = room.connect()
    loner = room.connect()
    second.send(b"LOGIN bob\n")
    first.send(b"LOGIN alice\n")
    drained(room)
    room.shutdown()
    assert loner.lines() == ["INFO server-shutdown"]
    assert first.lines() == ["INFO server-shutdown", "INFO bob disconnected"]
    assert second.lines() == ["INFO server-shutdown", "INFO alice disconnected"]


def test_shutdown_then_new_connections_are_told_and_closed() -> None:
    room = MemoryRoom(SMALL)
    room.shutdown()
    late = room.connect()
    assert late.lines() == ["INFO server-shutdown"]
    assert late.closed_with is AFTER_FLUSH
    assert late.events == [ConnectionClosed(late.conn, CloseReason.SHUTDOWN)]


def test_shutdown_twice_is_a_no_op() -> None:
    room = MemoryRoom(SMALL)
    room.login("alice")
    room.shutdown()
    assert room.server.shutdown(room.now) == []


def test_shutdown_cuts_non_readers_after_close_timeout() -> None:
    room = MemoryRoom(SMALL)
    (a,) = room.login("alice")
    b = room.connect(reading=False)
    room.shutdown()
    assert a.closed_with is AFTER_FLUSH
    assert not b.closed
    room.advance(SMALL.close_timeout)
    assert b.closed_with is NOW
    assert room.server.connection_count == 0


def test_shutdown_ignores_input_afterwards() -> None:
    room = MemoryRoom(SMALL)
    a = room.connect(reading=False)
    room.shutdown()
    assert a.send(b"LOGIN alice\n") == []
    assert room.server.usernames() == []


# ------------------------------------------------------------------- events


def test_events_for_each_command() -> None:
    room = MemoryRoom(SMALL)
    a = room.connect()
    b = room.connect()
    c = room.connect()
    assert a.send(b"LOGIN Alice\n") == [UserLoggedIn(a.conn, "Alice")]
    assert a.send(b"MSG alone\n") == [MessageBroadcast(a.conn, "Alice", "alone", 0)]
    assert b.send(b"LOGIN bob\n") == [UserLoggedIn(b.conn, "bob")]
    # c is connected but not logged in: not a recipient.
    assert a.send(b"MSG  hi \n") == [MessageBroadcast(a.conn, "Alice", " hi ", 1)]
    assert b.send(b"DM ALICE psst\n") == [DirectMessageSent(b.conn, "bob", "Alice", "psst")]
    assert a.send(b"DM alice me\n") == [DirectMessageSent(a.conn, "Alice", "Alice", "me")]
    assert a.send(b"WHO\nPING\nHELP\n") == []
    assert c.send(b"LOGIN alice\n") == [CommandRejected(c.conn, ErrorCode.USERNAME_TAKEN)]
    assert b.send(b"QUIT\n") == [
        UserLeft(b.conn, "bob", CloseReason.QUIT),
        ConnectionClosed(b.conn, CloseReason.QUIT),
    ]


ERROR_LINES: dict[ErrorCode, bytes] = {
    ErrorCode.USERNAME_TAKEN: b"LOGIN ALICE\n",
    ErrorCode.INVALID_USERNAME: b"LOGIN no way\n",
    ErrorCode.NOT_LOGGED_IN: b"WHO\n",
    ErrorCode.USER_NOT_FOUND: b"DM zed hi\n",
    ErrorCode.MISSING_ARGUMENT: b"LOGIN\n",
    ErrorCode.UNKNOWN_COMMAND: b"DANCE\n",
    ErrorCode.LINE_TOO_LONG: b"L" * 65 + b"\n",
    ErrorCode.INVALID_UTF8: b"\xc3\n",
    ErrorCode.INVALID_CHARACTERS: b"PING \x07\n",
}


# server-full: tests of their own; cluster-unavailable: a cluster's (test_cluster_core.py).
@pytest.mark.parametrize(
    "code",
    [c for c in ErrorCode if c not in (ErrorCode.SERVER_FULL, ErrorCode.CLUSTER_UNAVAILABLE)],
)
def test_every_error_token(code: ErrorCode) -> None:
    room = MemoryRoom(SMALL)
    (alice,) = room.login("alice")
    if code is ErrorCode.ALREADY_LOGGED_IN:
        client, line = alice, b"LOGIN bob\n"
    elif code is ErrorCode.USER_NOT_FOUND:
        client, line = alice, ERROR_LINES[code]
    else:
        client, line = room.connect(), ERROR_LINES[code]
    assert client.send(line) == [CommandRejected(client.conn, code)]
    assert client.lines() == [err(code)]
    assert not code.closes_connection
    client.send(b"PING\n")
    assert client.lines() == ["PONG"]


def test_server_full_is_the_only_closing_error() -> None:
    assert [c for c in ErrorCode if c.closes_connection] == [ErrorCode.SERVER_FULL]


def test_user_left_reasons() -> None:
    room = MemoryRoom(SMALL)
    quitter, eofer, closer = room.login("q", "e", "c")
    quitter.send(b"QUIT\n")
    eofer.eof()
    closer.close()
    (idler,) = room.login("i")
    room.advance(SMALL.idle_timeout)
    reasons = {e.name: e.reason for e in room.events if isinstance(e, UserLeft)}
    assert reasons == {
        "q": CloseReason.QUIT,
        "e": CloseReason.PEER_CLOSED,
        "c": CloseReason.CONNECTION_LOST,
        "i": CloseReason.IDLE_TIMEOUT,
    }
    assert idler.closed


# ----------------------------------------------------------- misuse, races


@pytest.mark.parametrize("bogus", [0, -1, 99])
def test_never_issued_id_raises(bogus: int) -> None:
    room = MemoryRoom(SMALL)
    room.connect()
    server = room.server
    conn = ConnId(bogus)
    with pytest.raises(LocalProtocolError, match="never issued"):
        server.receive_data(conn, b"PING\n", room.now)
    with pytest.raises(LocalProtocolError, match="never issued"):
        server.receive_eof(conn, room.now)
    with pytest.raises(LocalProtocolError, match="never issued"):
        server.connection_lost(conn, room.now)


def test_id_from_another_server_is_not_silently_accepted() -> None:
    other = ChatServer()
    conn = other.connection_made(0.0)
    other.connection_made(0.0)
    server = ChatServer()
    with pytest.raises(LocalProtocolError):
        server.receive_data(ConnId(conn + 1), b"PING\n", 0.0)


def test_broadcast_line_is_shared_not_copied() -> None:
    room = MemoryRoom()
    s, x, y = room.login("s", "x", "y")
    x.stop_reading()
    y.stop_reading()
    s.send(b"MSG shared\n")
    server = room.server
    assert server.data_to_send(x.conn) is server.data_to_send(y.conn)


def test_take_ready_reports_new_output_once() -> None:
    server = ChatServer(SMALL)
    a = server.connection_made(0.0)
    assert server.take_ready() == []
    server.receive_data(a, b"PING\n", 0.0)
    assert server.take_ready() == [a]
    assert server.take_ready() == []
    # Not drained yet: the adapter already knows, so it is not reported again.
    server.receive_data(a, b"PING\nPING\n", 0.0)
    assert server.take_ready() == []
    assert server.data_to_send(a) == b"PONG\nPONG\nPONG\n"
    assert server.data_to_send(a) == b""
    server.receive_data(a, b"PING\n", 0.0)
    assert server.take_ready() == [a]


def test_output_accumulates_across_inputs_until_drained() -> None:
    room = MemoryRoom(SMALL)
    a = room.connect(reading=False)
    for i in range(3):
        a.send(f"PING {i}\n".encode())
    assert room.server.data_to_send(a.conn) == b"PONG 0\nPONG 1\nPONG 2\n"


def test_room_queries() -> None:
    room = MemoryRoom(SMALL)
    a, b = room.login("Alice", "bob")
    c = room.connect()
    server = room.server
    assert server.usernames() == ["Alice", "bob"]
    assert server.username(a.conn) == "Alice"
    assert server.username(c.conn) is None
    assert server.config is SMALL
    assert server.close_mode(b.conn) is CloseMode.OPEN
    assert server.close_reason(b.conn) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_line_bytes": 63},
        {"idle_timeout": 0.0},
        {"idle_timeout": float("nan")},
        {"max_clients": 0},
        {"max_line_bytes": 100, "max_outbound_bytes": 163},
        {"close_timeout": -1.0},
    ],
)
def test_config_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ServerConfig(**kwargs)  # type: ignore[arg-type]


def test_config_defaults_match_the_spec() -> None:
    config = ServerConfig()
    assert (config.max_line_bytes, config.idle_timeout, config.max_clients) == (4096, 60.0, 10_000)
    assert (config.max_outbound_bytes, config.close_timeout) == (1024 * 1024, 5.0)


def test_shutdown_tells_connections_that_are_already_closing() -> None:
    # §12.5: every connection is told; one still flushing after QUIT gets the
    # notice after its OK, one being cut off (slow consumer) gets nothing.
    server = ChatServer()
    quitter = server.connection_made(0.0)
    server.receive_data(quitter, b"LOGIN q\nQUIT\n", 0.0)
    assert server.close_mode(quitter) is CloseMode.AFTER_FLUSH
    server.shutdown(1.0)
    assert server.data_to_send(quitter) == b"OK\nOK\nINFO server-shutdown\n"
