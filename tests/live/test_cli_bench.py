"""chatproto-bench and benchmarks/run.py: they work and report sane JSON.

Benchmarks are not timed tests: nothing here asserts how fast anything is,
only that every scenario runs, stops by itself, counts what it should
(logins, deliveries, ratio 1.0 on a correct server, banners and echoes of a
third-party one) and says when it failed. Servers run on 127.0.0.1 with a port
chosen by the kernel; waiting is by reading their startup line.

A count asserted exactly must not depend on how busy the machine is: those
runs use :data:`EXACT`, so the run ends when the last copy has arrived, not
after a fixed second of draining, and :func:`assert_every_copy_arrived` checks
counts that no timing can change.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from chatproto.bench import BenchConfig, LatencyHistogram, render_table
from chatproto.bench._report import summarise
from chatproto.bench._stats import NS, bucket_us
from chatproto.bench._tally import COUNTERS
from tests import REPO

ROOT = REPO
DEADLINE = 20.0
#: chatproto-bench arguments for runs whose delivery counts are asserted
#: exactly. A message is acknowledged only when every other client has it
#: (``--ack all``), and draining ends at the last acknowledgement; the drain
#: and acknowledgement limits only bound a hang. With the default (one observer
#: acknowledges; one second of drain) the last copies to the other clients
#: could still be in flight when the run ended on a busy machine:
#: ``delivery_ratio`` 0.9999 (defect 1 of issue 13).
EXACT = ("--ack", "all", "--drain", "20", "--ack-timeout", "20")


def assert_every_copy_arrived(r: dict[str, Any]) -> None:
    """Every message of an :data:`EXACT` run reached every other reader.

    With ``--ack all`` a message is acknowledged once every other reader has
    it, so ``acked == sent_total`` counts every copy, whatever the timing; and
    the window's figures agree exactly (the sender and the readers decide
    "in the window" on the same microsecond stamp).
    """
    assert r["ack"] == "all"
    assert r["acked"] == r["sent_total"] > 0
    assert r["ack_timeouts"] == r["disconnects"] == 0
    assert r["deliveries_in_window"] == r["expected_in_window"], r
    assert r["delivery_ratio"] == 1.0


def _load_run_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module
    spec.loader.exec_module(module)
    return module


RUN = _load_run_module()


class Server:
    """A server script started on port 0; its port read from its first line."""

    def __init__(self, *argv: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *argv, "--port", "0"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            ready = sel.select(DEADLINE)
        line = self.proc.stdout.readline() if ready else ""
        port = RUN.parse_port(line)
        if port is None:
            self.stop()
            raise RuntimeError(f"server did not start: {line!r}")
        self.port: int = port

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(DEADLINE)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(scope="module")
def selectors_server() -> Iterator[Server]:
    server = Server("examples/selectors_server.py")
    yield server
    server.stop()


def bench(port: int, scenario: str, *args: str, check: bool = True) -> dict[str, Any]:
    """Run chatproto-bench briefly; its JSON result."""
    argv = [sys.executable, "-m", "chatproto.bench.cli", scenario, "--port", str(port)]
    argv += ["--duration", "0.5", "--warmup", "0.2", "--drain", "1", "--json", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip(), done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if check:
        assert done.returncode == 0, (result, done.stderr)
        assert result["ok"] is True, result
    assert json.loads(json.dumps(result)) == result  # plain JSON types only
    return result


# ----------------------------------------------------------------- units


def test_histogram_percentiles_and_merge() -> None:
    h = LatencyHistogram()
    for us in range(1, 101):
        h.add_us(us)
    assert h.n == 100
    assert h.percentile(50) == 50
    assert h.percentile(99) == 99
    assert h.max() == 100
    other = LatencyHistogram()
    other.add_us(100_000)
    h.merge(other.counts)
    assert h.n == 101
    top = h.max()
    assert top is not None and 99_000 <= top <= 100_000  # rounded down, < 1 % error
    assert LatencyHistogram().percentile(50) is None


def test_bucket_error_is_under_one_percent() -> None:
    for us in (0, 5, 1023, 1024, 1500, 12_345, 987_654_321):
        b = bucket_us(us)
        assert b <= us
        assert us - b <= us / 64


def test_config_validates_and_shares_out_clients() -> None:
    cfg = BenchConfig("fanout", clients=11, senders=5, procs=2)
    shares = cfg.shares()
    assert [s.clients for s in shares] == [6, 5]
    assert [s.senders for s in shares] == [3, 2]
    assert cfg.username(1, 4).endswith("1_4")
    slow = BenchConfig("slowreader", clients=6, senders=5)
    assert slow.shares()[0].has_slow
    with pytest.raises(ValueError, match="senders"):
        BenchConfig("slowreader", clients=6, senders=6)
    with pytest.raises(ValueError, match="needs at least"):
        BenchConfig("fanout", clients=3, procs=2)
    with pytest.raises(ValueError, match="unknown scenario"):
        BenchConfig("nope")
    assert BenchConfig("pingpong").batch_seconds == 0.0


def test_parse_port_of_startup_lines() -> None:
    assert RUN.parse_port("selectors_server listening on 127.0.0.1:4567") == 4567
    assert RUN.parse_port("chatproto-serve listening on 127.0.0.1:80 (backend gevent)") == 80
    assert RUN.parse_port("bare_node listening on ::1:999") == 999
    assert RUN.parse_port("listening, port 1234") == 1234
    assert RUN.parse_port("hello") is None


# ------------------------------------------- against the example server


def test_fanout_counts_every_delivery(selectors_server: Server) -> None:
    r = bench(selectors_server.port, "fanout", "--clients", "6", "--senders", "3", *EXACT)
    assert r["logins_ok"] == 6
    assert r["senders"] == 3
    assert r["deliveries_in_window"] > 0
    # A correct server delivers every message to every other client.
    assert_every_copy_arrived(r)
    assert r["lat_n"] == r["deliveries_in_window"]
    assert 0 < r["lat_p50_us"] <= r["lat_p99_us"] <= r["lat_max_us"]
    assert r["echoes"] == r["disconnects"] == r["err_lines"] == r["ack_timeouts"] == 0
    assert r["info_lines"] == 6 * 5 // 2  # the INFO joined notices
    assert len(r["bench_cpu_pct"]) == 1
    assert isinstance(r["warnings"], list)
    assert "deliveries/s" in render_table(r)


def test_fanout_in_two_processes_with_ack_all(selectors_server: Server) -> None:
    r = bench(
        selectors_server.port,
        "fanout",
        *("--clients", "8", "--senders", "8", "--procs", "2", *EXACT),
    )
    assert r["logins_ok"] == 8
    assert len(r["bench_cpu_pct"]) == 2
    # Each process waits only for its own readers' acknowledgements, so the
    # other process's last copies may still be in flight at the end: the
    # window's figures are exact only with one process (the test above).
    assert r["acked"] == r["sent_total"] > 0
    assert 0 < r["deliveries_in_window"] <= r["expected_in_window"]
    assert r["ack_timeouts"] == r["disconnects"] == r["err_lines"] == 0


def test_pingpong(selectors_server: Server) -> None:
    r = bench(selectors_server.port, "pingpong", "--clients", "5")
    assert r["pongs_in_window"] > 0
    assert r["pongs_per_s"] == pytest.approx(r["pongs_in_window"] / 0.5)
    assert r["lat_n"] == r["pongs_in_window"]
    assert r["stray_pongs"] == 0


def test_connect(selectors_server: Server) -> None:
    r = bench(selectors_server.port, "connect", "--clients", "60", "--conc", "16")
    assert r["logins_ok"] == r["alive_after_hold"] == r["alive_at_end"] == 60
    assert r["burst_pongs"] == 60
    assert r["burst_all_ms"] is not None
    assert r["logins_per_s"] > 0
    # 60 * 59 / 2 join notices plus the 60 PONGs, at least.
    assert r["lines_read"] >= 60 * 59 // 2 + 60
    # Issue 13, defect 5: every line read is counted by kind (the join
    # notices were read but counted as nothing).
    assert r["info_lines"] == 60 * 59 // 2
    assert r["other_lines"] == r["stray_pongs"] == 0


def test_slowreader_is_dropped_by_chatproto(selectors_server: Server) -> None:
    r = bench(
        selectors_server.port,
        "slowreader",
        *("--clients", "4", "--senders", "3", "--duration", "3", "--slow-drain", "0.5"),
    )
    # chatproto drops a reader whose queue exceeds 1 MiB (docs/protocol.md
    # §12.3); it may or may not get there in 3 s on a slow machine.
    assert r["slow_state"] in ("disconnected_during_run", "disconnected_at_end", "alive")
    assert r["deliveries_in_window"] > 0
    assert r["disconnects"] == 0  # nobody but the slow reader
    assert r["slow_disconnected_at_s"] is None or r["slow_disconnected_at_s"] >= 0


def _raw_result(**fields: Any) -> dict[str, Any]:
    """A worker's raw result with nothing counted, for the report's arithmetic."""
    raw: dict[str, Any] = dict.fromkeys(COUNTERS, 0)
    raw.update(
        alive_at_end=0,
        idle_open_at_end=0,
        connect_errno={},
        first_err_line="",
        first_other_line="",
        cpu_s=0.0,
        wall_s=1.0,
        idle_s=0.0,
        login_hist={},
        hist={},
        t_first_connect=0,
        t_last_login=0,
        senders=0,
        readers=0,
        series=[0],
    )
    raw.update(fields)
    return raw


def test_a_slow_reader_dropped_during_the_warm_up_is_not_dropped_before_the_load() -> None:
    # Issue 13, defect 5: "dropped at -0.58 s", a time from the measured
    # window for a drop in the warm-up. It is now seconds of load, from go.
    cfg = BenchConfig("slowreader", clients=4, senders=3, warmup=1.0, duration=1.0)
    t_go = 10 * NS
    dropped = t_go + NS * 42 // 100  # 0.42 s after go, 0.58 s before the window
    raw = _raw_result(
        logins_ok=4,
        t_go=t_go,
        ws=t_go + NS,
        slow_state="disconnected_during_run",
        slow_disconnected_at=dropped,
        slow_drained_bytes=0,
    )
    r = summarise(cfg, [raw], {})
    assert r["slow_disconnected_at_s"] == 0.42
    assert re.search(r"dropped after +0.42 s of load", render_table(r))


# ------------------------------------------------------ error handling


def test_nothing_listening_is_a_clear_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections refused
        r = bench(port, "fanout", "--clients", "2", "--login-timeout", "5", check=False)
    assert r["ok"] is False
    assert "connect" in r["error"]
    assert r["connect_errno"]


def test_ctrl_c_exits_130_with_one_line(selectors_server: Server) -> None:
    # Issue 13, defect 5: Ctrl-C printed a raw KeyboardInterrupt traceback.
    # Ctrl-C on a terminal reaches the whole process group, workers included.
    argv = [sys.executable, "-m", "chatproto.bench.cli", "fanout"]
    argv += ["--port", str(selectors_server.port), "--clients", "4", "--procs", "2"]
    argv += ["--warmup", "0", "--duration", "60"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stderr is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stderr, selectors.EVENT_READ)
            seen = ""
            while "measuring" not in seen:  # the load is running
                assert sel.select(DEADLINE), seen
                line = proc.stderr.readline()
                assert line, seen
                seen += line
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "chatproto-bench: interrupted"
    assert "Traceback" not in err and out == ""


class _RecordingServer:
    """Answers LOGIN with OK and PING with PONG, and notes each peer's address."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.port = self.listener.getsockname()[1]
        self.peers: list[str] = []
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ)
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        buffers: dict[socket.socket, bytes] = {}
        while not self.stopping:
            for key, _ in self.sel.select(0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self.listener:
                    conn, (host, _port) = self.listener.accept()
                    self.peers.append(host)
                    buffers[conn] = b""
                    self.sel.register(conn, selectors.EVENT_READ)
                    continue
                data = sock.recv(65536)
                if not data:
                    self.sel.unregister(sock)
                    sock.close()
                    continue
                *lines, buffers[sock] = (buffers[sock] + data).split(b"\n")
                for line in lines:
                    if line.startswith(b"LOGIN"):
                        sock.sendall(b"OK\n")
                    elif line.startswith(b"PING"):
                        sock.sendall(b"PONG" + line[4:] + b"\n")
                    elif line.startswith(b"QUIT"):
                        sock.sendall(b"OK\n")
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]

    def close(self) -> None:
        self.stopping = True
        self.thread.join(DEADLINE)


def test_idle_connections_from_two_source_addresses() -> None:
    server = _RecordingServer()
    try:
        r = bench(
            server.port,
            "idle",
            *("--clients", "200", "--source-addrs", "2", "--procs", "2"),
            *("--probe-interval", "0.1"),
        )
    finally:
        server.close()
    assert r["idle_open"] == r["idle_open_at_end"] == r["idle"] == 200
    assert r["idle_dropped"] == r["connect_fail"] == r["logins_ok"] == 0
    assert r["probes"] >= 1 and r["probe_login_n"] == r["probes"] and r["probe_fail"] == 0
    assert r["probe_login_p50_us"] > 0
    # Every connection, idle or probe, came from one of the two addresses.
    assert sorted(set(server.peers)) == ["127.0.0.2", "127.0.0.3"]
    assert len(server.peers) == 200 + r["probes"]
    assert "idle connections" in render_table(r)


def test_idle_connections_beside_a_room_with_the_servers_memory(selectors_server: Server) -> None:
    r = bench(
        selectors_server.port,
        "idle",
        *("--clients", "200", "--source-addrs", "2", "--room", "6", "--senders", "3"),
        *("--probe-interval", "0.2", "--server-pid", str(selectors_server.proc.pid)),
    )
    assert r["idle_open"] == r["idle_open_at_end"] == 200
    assert r["logins_ok"] == 6  # the room; the idle connections did not log in
    assert r["senders"] == 3 and r["delivery_ratio"] == 1.0
    assert r["probe_login_n"] >= 1 and r["probe_fail"] == 0
    # The probes' own notices reach the room: they are counted, not lost.
    assert r["info_lines"] >= 6 * 5 // 2 + r["probe_login_n"]
    assert r["rss_before_kb"] > 0 and r["rss_ready_kb"] > 0
    assert r["rss_per_conn_kb"] is not None
    table = render_table(r)
    assert "server RSS per conn" in table and "deliveries/s" in table


def test_idle_logged_in() -> None:
    server = _RecordingServer()
    try:
        r = bench(server.port, "idle", "--clients", "20", "--idle-login", "--probe-interval", "0.2")
    finally:
        server.close()
    assert r["logins_ok"] == 20 and r["idle_open"] == 0 and r["idle_open_at_end"] == 20


def test_idle_config_is_checked() -> None:
    with pytest.raises(ValueError, match="loopback"):
        BenchConfig("idle", host="192.0.2.1", source_addrs=2)
    with pytest.raises(ValueError, match="room"):
        BenchConfig("idle", room=3, procs=2)
    cfg = BenchConfig("idle", clients=7, room=4, procs=2, source_addrs=3)
    assert [(s.idle, s.clients, s.senders) for s in cfg.shares()] == [(4, 2, 2), (3, 2, 2)]
    addresses = {cfg.source_address(p, i) for p in (0, 1) for i in range(6)}
    assert addresses == {"127.0.0.2", "127.0.0.3", "127.0.0.4"}
    assert BenchConfig("fanout").source_address(0, 0) is None


# ------------------------------------------------ a third-party dialect


class _DialectServer:
    """A foreign server: banner, ``OK welcome``, CRLF, and echoes to the sender."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.clients: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        sock.sendall(b"Welcome to the foreign chat!\r\n")
        buf = b""
        name = ""
        with sock:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    with self.lock:
                        self.clients.remove(sock) if sock in self.clients else None
                    return
                *lines, buf = (buf + data).split(b"\n")
                for line in lines:
                    cmd, _, arg = line.rstrip(b"\r").partition(b" ")
                    if cmd == b"LOGIN":
                        name = arg.decode()
                        sock.sendall(b"OK welcome " + arg + b"\r\n")
                        with self.lock:
                            self.clients.append(sock)
                    elif cmd == b"MSG":
                        out = b"[" + name.encode() + b"] " + arg + b"\r\n"
                        with self.lock:
                            everyone = list(self.clients)
                        for other in everyone:  # the sender too: an echo
                            try:
                                other.sendall(out)
                            except OSError:
                                pass
                    elif cmd == b"PING":
                        sock.sendall(b"PONG\r\n")

    def close(self) -> None:
        self.listener.close()
        with self.lock:
            for sock in self.clients:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def test_third_party_dialect_is_tolerated() -> None:
    server = _DialectServer()
    try:
        r = bench(server.port, "fanout", "--clients", "4", "--senders", "2", *EXACT)
        assert r["logins_ok"] == 4
        assert r["banner_lines"] == 4
        assert r["echoes"] > 0 and r["echo_to_sender"] is True
        assert_every_copy_arrived(r)  # echoes are not counted as deliveries
        assert any("echoed" in w for w in r["warnings"])
        p = bench(server.port, "pingpong", "--clients", "3")
        assert p["pongs_in_window"] > 0
    finally:
        server.close()


class _LaggingServer:
    """A correct chat server whose every line to the user ``late_name`` arrives ``lag`` s late.

    What a busy machine does to one reader of a fan-out: every copy arrives,
    some after the others. The lag is the point of this server, so it waits
    on a clock (in its own thread) by design.
    """

    def __init__(self, lag: float, late_name: bytes) -> None:
        self.lag = lag
        self.late_name = late_name
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.names: dict[socket.socket, bytes] = {}
        self.late: socket.socket | None = None
        self.delayed: queue.Queue[tuple[float, bytes] | None] = queue.Queue()
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._deliver_late, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _send(self, sock: socket.socket, data: bytes) -> None:
        if sock is self.late:
            self.delayed.put((time.monotonic() + self.lag, data))
        else:
            self._send_now(sock, data)

    def _deliver_late(self) -> None:
        while (item := self.delayed.get()) is not None:
            due, data = item
            time.sleep(max(0.0, due - time.monotonic()))
            if self.late is not None:
                self._send_now(self.late, data)

    def _send_now(self, sock: socket.socket, data: bytes) -> None:
        try:
            sock.sendall(data)
        except OSError:
            pass

    def _serve(self, sock: socket.socket) -> None:
        buf = b""
        with sock:
            while data := sock.recv(65536):
                *lines, buf = (buf + data).split(b"\n")
                for line in lines:
                    cmd, _, arg = line.partition(b" ")
                    with self.lock:
                        if cmd == b"LOGIN":
                            if arg == self.late_name:
                                self.late = sock
                            self.names[sock] = arg
                            self._send(sock, b"OK\n")
                        elif cmd == b"MSG":
                            out = b"MSG " + self.names[sock] + b" " + arg + b"\n"
                            for other in self.names:
                                if other is not sock:
                                    self._send(other, out)
                        elif cmd == b"PING":
                            self._send(sock, b"PONG " + arg + b"\n")
            with self.lock:
                self.names.pop(sock, None)

    def close(self) -> None:
        self.delayed.put(None)
        self.listener.close()
        with self.lock:
            for sock in self.names:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def test_late_copies_still_count_every_delivery() -> None:
    """Defect 1: copies that arrive after the old one-second drain still count.

    chatproto-bench names its clients ``<prefix><process>_<index>``; client 0
    observes and the last two send, so ``lag0_1`` is a reader whose every copy
    arrives 1.5 s late. With the old arguments (one observer acknowledges, one
    second of drain) the copies of the last messages of the window were still
    on their way when the run ended; with :data:`EXACT` every sender waits for
    them, and the drain ends when the last one has arrived.
    """
    server = _LaggingServer(lag=1.5, late_name=b"lag0_1")
    try:
        r = bench(
            server.port,
            "fanout",
            *("--clients", "4", "--senders", "2", "--prefix", "lag"),
            # Messages acknowledged 1.5 s after they are sent must fall in the window.
            *("--warmup", "0", "--duration", "3", *EXACT),
        )
        assert r["sent_in_window"] > 0
        assert_every_copy_arrived(r)
    finally:
        server.close()


# ----------------------------------------------------------- bare servers


@pytest.mark.parametrize("script", ["benchmarks/bare_asyncio.py", "benchmarks/bare_threads.py"])
def test_bare_server_fanout(script: str) -> None:
    server = Server(script)
    try:
        r = bench(server.port, "fanout", "--clients", "5", "--senders", "5", *EXACT)
        assert_every_copy_arrived(r)
        # At least every join notice: in bare_threads two concurrent logins may
        # each see the other's (registration and notice are not atomic there).
        assert r["info_lines"] >= 5 * 4 // 2
    finally:
        server.stop()


def test_bare_checked_server_refuses_bad_lines_and_goes_on() -> None:
    server = Server("benchmarks/bare_asyncio.py", "--checked")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
            sock.sendall(b"LOGIN ann\nMSG a\x01b\n\xff\nPING x\n")
            got = b""
            while not got.endswith(b"PONG x\n"):
                chunk = sock.recv(4096)
                assert chunk, got
                got += chunk
        assert got.split(b"\n")[:3] == [
            b"OK",
            b"ERR invalid-characters no control characters",
            b"ERR invalid-utf8 lines must be UTF-8",
        ]
    finally:
        server.stop()


# ------------------------------------------------- the benchmark command


def test_run_py_quick_smoke(tmp_path: Path) -> None:
    argv = [sys.executable, "benchmarks/run.py", "--quick", "--out", str(tmp_path)]
    argv += ["--targets", "serve-asyncio,bare-asyncio", "--no-crosscheck"]
    argv += ["--only", "fanout-10,fanout-100,pingpong-50,connect,slowreader,core"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    raw = json.loads((tmp_path / "performance.json").read_text())
    runs = raw["runs"]
    assert {r["scenario"] for r in runs} == {
        "fanout-10",
        "fanout-100",
        "pingpong-50",
        "connect",
        "slowreader",
        "core",
    }
    for run in runs:
        assert run["ok"], run
        if run["scenario"] != "core":
            assert run["result"]["loadgen_cpu_pct"] >= 0
            assert run["result"]["logins_ok"] == run["params"]["clients"]
    core = next(r for r in runs if r["scenario"] == "core")["result"]
    assert core["parse_lines_per_s"] > 0 and core["broadcast_1000_deliveries_per_s"] > 0
    md = (tmp_path / "performance.md").read_text()
    assert "Smoke figures, not measurements" in md
    assert "| `bare-asyncio` |" in md
    assert (tmp_path / "performance.png").stat().st_size > 1000
    # The page can be rewritten from the raw results alone.
    (tmp_path / "performance.md").unlink()
    again = [sys.executable, "benchmarks/run.py", "--render-only", "--out", str(tmp_path)]
    subprocess.run(again, cwd=ROOT, capture_output=True, timeout=60, check=True)
    assert (tmp_path / "performance.md").read_text() == md
