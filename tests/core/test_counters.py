"""ChatServer.counters(): what the core counts for metrics, checked against the wire.

Every count is compared with what the in-memory clients actually sent and
received, so a counter that drifts from the bytes (a missed branch, a PONG
counted twice) fails here.
"""

from __future__ import annotations

from chatproto import COMMAND_LABELS, ChatServer, ServerConfig, ServerCounters

from .memory_harness import MemoryClient, MemoryRoom

CONFIG = ServerConfig(flood_rate=0, max_clients=3)


def received_lines(*clients: MemoryClient) -> int:
    return sum(c.transcript.count(b"\n") for c in clients)


def received_bytes(*clients: MemoryClient) -> int:
    return sum(len(c.transcript) for c in clients)


def test_a_fresh_server_counts_nothing() -> None:
    counters = ChatServer(CONFIG).counters()
    assert counters == ServerCounters(
        lines_in=dict.fromkeys(COMMAND_LABELS, 0),
        lines_out=0,
        bytes_out=0,
        connections=0,
        users=0,
        queued_bytes=0,
        paused={"flood": 0, "backpressure": 0},
    )
    assert list(counters.lines_in) == list(COMMAND_LABELS)


def test_every_command_and_every_line_out_is_counted() -> None:
    room = MemoryRoom(CONFIG, message_events=False)
    a, b = room.connect(), room.connect()
    a.send(b"LOGIN ann\nPING\nPING tok\nWHO\nHELP\nFROB\nMSG early\n")
    b.send(b"MSG before login\nLOGIN ann\nLOGIN bea\nMSG hi all\nDM ann psst\nDM nobody x\n")
    a.send(b"WHO\nLOGIN again\n")
    b.send(b"QUIT\nPING never runs\n")
    # A partial line is not a line.
    a.send(b"PING partial")
    counters = room.server.counters()
    assert counters.lines_in == {
        "login": 3,  # ann, bea; the taken one is a LOGIN answered ERR
        "msg": 2,
        "dm": 2,  # one delivered, one to nobody
        "who": 2,
        "ping": 2,
        "help": 1,
        "quit": 1,
        # FROB, LOGIN again (already-logged-in) and MSG before login
        # (not-logged-in) are refused by the parser.
        "invalid": 3,
    }
    assert sum(counters.lines_in.values()) == 16
    # Every line queued reached a client (they all read), byte for byte.
    assert counters.lines_out == received_lines(a, b)
    assert counters.bytes_out == received_bytes(a, b)
    assert counters.users == 1
    assert counters.connections == 1  # b closed after QUIT
    assert counters.queued_bytes == 0


def test_shutdown_notices_and_refusals_count_as_lines_out() -> None:
    room = MemoryRoom(CONFIG, message_events=False)
    clients = room.login("ann", "bea", "cy")
    extra = room.connect()  # server full: told so on the in-band path
    room.shutdown()
    counters = room.server.counters()
    assert extra.transcript.startswith(b"ERR server-full")
    assert all(c.transcript.endswith(b" disconnected\n") for c in clients)
    assert counters.lines_out == received_lines(*clients, extra)
    assert counters.bytes_out == received_bytes(*clients, extra)


def test_queued_bytes_and_paused_inputs_are_read_at_snapshot_time() -> None:
    config = ServerConfig(max_outbound_bytes=1 << 20, flood_rate=10, flood_burst=5)
    room = MemoryRoom(config, message_events=False)
    a, b = room.login("ann", "bea")
    b.stop_reading()
    a.send(b"MSG x\n" * 3)
    counters = room.server.counters()
    assert counters.queued_bytes == room.server.queued_bytes(b.conn) == 3 * len(b"MSG ann x\n")
    assert counters.paused == {"flood": 0, "backpressure": 0}
    a.send(b"PING\n" * 20)  # past the burst: held for tokens
    assert a.paused
    assert room.server.counters().paused == {"flood": 1, "backpressure": 0}
    room.advance(5.0)
    assert room.server.counters().paused == {"flood": 0, "backpressure": 0}
    assert room.server.counters().lines_in["ping"] == 20


def test_totals_never_go_down() -> None:
    room = MemoryRoom(CONFIG, message_events=False)
    (a,) = room.login("ann")
    before = room.server.counters()
    a.send(b"PING\nWHO\n")
    a.close()
    after = room.server.counters()
    for label in COMMAND_LABELS:
        assert after.lines_in[label] >= before.lines_in[label]
    assert after.lines_out >= before.lines_out
    assert after.bytes_out >= before.bytes_out
