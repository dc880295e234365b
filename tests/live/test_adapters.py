"""End-to-end behaviour of every flavour through ``chatproto-serve`` over loopback TCP.

The same scenarios run on each flavour (threading, anyio on asyncio, trio and
uvloop, gevent); each server is a subprocess, so gevent never touches the test
process. The conformance suite checks the whole spec on the same servers; these
tests cover what an adapter itself is responsible for.
"""

from __future__ import annotations

import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from .live_server import DEADLINE, Client, ServerProcess, running_server


@pytest.fixture
def server(flavour: list[str]) -> Iterator[ServerProcess]:
    with running_server(flavour) as srv:
        yield srv
        code, err = srv.stop()
        assert code == 0, err


@pytest.fixture
def clients(server: ServerProcess) -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        c.close()


def connect(server: ServerProcess, made: list[Client], **kw: int) -> Client:
    c = Client(server.port, **kw)
    made.append(c)
    return c


def test_clients_chat(server: ServerProcess, clients: list[Client]) -> None:
    a = connect(server, clients).login("ann")
    b = connect(server, clients).login("Bea")
    a.expect("INFO Bea joined")
    c = connect(server, clients).login("cy")
    a.expect("INFO cy joined")
    b.expect("INFO cy joined")
    a.send(b"MSG hello  there \n")
    b.expect("MSG ann hello  there ")
    c.expect("MSG ann hello  there ")
    assert a.sync() == []  # no echo, no OK
    b.send(b"DM ANN psst\n")
    b.expect("OK")
    a.expect("DM Bea psst")
    c.send(b"WHO\n")
    c.expect("USER ann", "USER Bea", "USER cy")
    b.send(b"QUIT\n")
    assert b.wait_eof() == ["OK"]
    a.expect("INFO Bea disconnected")
    c.expect("INFO Bea disconnected")
    assert a.sync() == [] and c.sync() == []


def test_every_error_token(server: ServerProcess, clients: list[Client]) -> None:
    a = connect(server, clients)
    cases = [
        (b"MSG hi\n", "not-logged-in"),
        (b"FROB\n", "unknown-command"),
        (b"LOGIN\n", "missing-argument"),
        (b"LOGIN b@d\n", "invalid-username"),
        (b"MSG \xff\n", "invalid-utf8"),
        (b"MSG \x1b[2J\n", "invalid-characters"),
        (b"X" * 5000 + b"\n", "line-too-long"),
    ]
    for line, token in cases:
        a.send(line)
        assert a.line().split()[:2] == ["ERR", token], line
    connect(server, clients).login("taken")
    a.send(b"LOGIN TAKEN\n")
    assert a.line().startswith("ERR username-taken")
    a.login("erra")
    for line, token in [
        (b"LOGIN again\n", "already-logged-in"),
        (b"DM nobody hi\n", "user-not-found"),
        (b"DM taken\n", "missing-argument"),
    ]:
        a.send(line)
        assert a.line().split()[:2] == ["ERR", token], line
    assert a.sync() == []


def test_pipelined_and_byte_split(server: ServerProcess, clients: list[Client]) -> None:
    a = connect(server, clients)
    a.send(b"LOGIN pipe\r\nPING 1\r\nWHO\nPING 2\n")
    a.expect("OK", "PONG 1")
    before = a.sync()
    assert before[-2:] == ["USER pipe", "PONG 2"]
    assert all(line.startswith("USER ") for line in before[:-1])
    b = connect(server, clients)
    for byte in b"LOGIN split\nPING 3\n":
        b.send(bytes([byte]))
    b.expect("OK", "PONG 3")
    a.expect("INFO split joined")


def test_half_close_flushes_replies(server: ServerProcess, clients: list[Client]) -> None:
    a = connect(server, clients)
    a.send(b"LOGIN half\nPING x\nPING y\npartial")
    a.sock.shutdown(socket.SHUT_WR)
    assert a.wait_eof() == ["OK", "PONG x", "PONG y"]


def test_abrupt_reset_frees_the_name(server: ServerProcess, clients: list[Client]) -> None:
    watcher = connect(server, clients).login("watch")
    r = connect(server, clients).login("resetter")
    watcher.expect("INFO resetter joined")
    r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    r.close()
    watcher.expect("INFO resetter disconnected")
    connect(server, clients).login("resetter")
    watcher.expect("INFO resetter joined")


def test_slow_reader_does_not_stall_others(flavour: list[str]) -> None:
    cap = 256 * 1024
    # Flood control off: this is about the slow reader, not the talker's rate.
    args = ["--max-outbound-bytes", str(cap), "--flood-rate", "0"]
    with running_server([*flavour, *args]) as server:
        slow = Client(server.port, rcvbuf=4096).login("slow")
        talker = Client(server.port).login("talker")
        reader = Client(server.port).login("reader")
        delivered = 0
        seen: list[str] = []
        payload = b"MSG " + b"z" * 3000 + b"\n"
        sent = 0
        deadline = time.monotonic() + DEADLINE
        # Broadcast until the server drops the slow reader; the reader sees
        # every line meanwhile, and the talker is never held up.
        while True:
            talker.send(payload * 20)
            sent += 20
            talker_lines = talker.sync()
            reader_lines = reader.sync()
            seen += reader_lines
            delivered += sum(ln.startswith("MSG talker") for ln in reader_lines)
            if "INFO slow disconnected" in talker_lines:
                break
            assert time.monotonic() < deadline, "slow reader was never disconnected"
        assert delivered == sent
        assert ("INFO slow disconnected" in seen + reader.sync()) is True
        assert slow.wait_eof()[-1] == "INFO slow-consumer", "the slow reader is told why"
        slow.close()
        for c in (talker, reader):
            c.close()
        code, err = server.stop()
        assert code == 0, err
        assert "reason=slow-consumer" in err


def test_idle_timeout(flavour: list[str]) -> None:
    with running_server([*flavour, "--idle-timeout", "0.6"]) as server:
        idle = Client(server.port).login("idler")
        busy = Client(server.port).login("busy")
        idle.expect("INFO busy joined")
        start = time.monotonic()
        lines: list[str] = []
        busy_lines: list[str] = []
        # busy keeps itself alive; idle says nothing and is dropped.
        while not idle.eof:
            busy_lines += busy.sync()
            try:
                lines.append(idle.line(0.05))
            except AssertionError:
                pass
            assert time.monotonic() - start < DEADLINE
        assert lines == ["INFO idle-timeout"]
        assert time.monotonic() - start >= 0.5
        assert "INFO idler disconnected" in busy_lines + busy.sync()
        busy.close()
        idle.close()  # else the server waits close_timeout for its FIN
        assert server.stop()[0] == 0


def test_max_clients(flavour: list[str]) -> None:
    with running_server([*flavour, "--max-clients", "2"]) as server:
        a = Client(server.port).login("one")
        b = Client(server.port).login("two")
        third = Client(server.port)
        assert third.wait_eof() == ["ERR server-full try again later"]
        a.send(b"QUIT\n")
        assert a.wait_eof()[-1] == "OK"
        Client(server.port).login("three").close()  # a freed slot is usable again
        for c in (a, b, third):
            c.close()
        assert server.stop()[0] == 0


def test_shutdown_notice_and_clean_exit(flavour: list[str]) -> None:
    with running_server(flavour) as server:
        a = Client(server.port).login("first")
        b = Client(server.port).login("second")
        a.expect("INFO second joined")
        lurker = Client(server.port)
        assert lurker.sync() == []
        server.signal(signal.SIGINT)
        assert a.wait_eof() == ["INFO server-shutdown", "INFO second disconnected"]
        assert b.wait_eof() == ["INFO server-shutdown", "INFO first disconnected"]
        assert lurker.wait_eof() == ["INFO server-shutdown"]
        for c in (a, b, lurker):
            c.close()
        code, err = server.stop()
        assert code == 0, err


def test_500_clients_receive_a_broadcast(flavour: list[str]) -> None:
    n = 500
    with running_server(flavour) as server:
        sel = selectors.DefaultSelector()
        socks = []
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", server.port))
            s.sendall(f"LOGIN m{i}\nPING ready\n".encode())
            s.setblocking(False)
            socks.append(s)
            sel.register(s, selectors.EVENT_READ, i)
        bufs = [b""] * n

        def read_until(marker: bytes, who: range) -> None:
            waiting = set(who)
            deadline = time.monotonic() + 4 * DEADLINE
            while waiting:
                assert time.monotonic() < deadline, f"{len(waiting)} clients missed {marker!r}"
                for key, _ in sel.select(1.0):
                    i = key.data
                    bufs[i] += socks[i].recv(1 << 20)
                    if i in waiting and marker in bufs[i]:
                        waiting.discard(i)

        read_until(b"PONG ready\n", range(n))
        socks[0].sendall(b"MSG to everyone\n")
        read_until(b"MSG m0 to everyone\n", range(1, n))
        for s in socks:
            s.close()
        code, err = server.stop()
        assert code == 0, err


def test_port_in_use_is_one_clear_line() -> None:
    with running_server(["--backend", "threading"]) as server:
        result = subprocess.run(
            [sys.executable, "-m", "chatproto", "--host", "127.0.0.1", str(server.port)],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
        assert result.returncode == 1
        assert result.stderr.strip().count("\n") == 0
        assert f"cannot listen on 127.0.0.1:{server.port}" in result.stderr
        server.stop()


@pytest.mark.parametrize("level", ["debug", "info"])
def test_messages_are_logged_at_debug_only(flavour: list[str], level: str) -> None:
    """The core reports each chat line only to an observer that logs it (message_events)."""
    with running_server([*flavour, "--log-level", level]) as server:
        a = Client(server.port).login("ann")
        b = Client(server.port).login("bea")
        a.expect("INFO bea joined")
        a.send(b"MSG hello\nDM bea psst\n")
        b.expect("MSG ann hello")
        b.expect("DM ann psst")
        a.close()
        b.close()
        code, err = server.stop()
    assert code == 0, err
    assert "login conn=" in err  # info lines are there either way
    logged = "msg conn=" in err and "dm conn=" in err and "to=bea" in err
    assert logged is (level == "debug"), err
