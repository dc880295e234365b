"""chatproto-bench and benchmarks/run.py: they work and report sane JSON.

Benchmarks are not timed tests: nothing here asserts how fast anything is,
only that every scenario runs, stops by itself, counts what it should
(logins, deliveries, ratio 1.0 on a correct server, banners and echoes of a
third-party one) and says when it failed. Servers run on 127.0.0.1 with a port
chosen by the kernel; waiting is by reading their startup line.
"""

from __future__ import annotations

import importlib.util
import json
import selectors
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from chatproto.bench import BenchConfig, LatencyHistogram, render_table
from chatproto.bench._stats import bucket_us

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 20.0


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
    r = bench(selectors_server.port, "fanout", "--clients", "6", "--senders", "3")
    assert r["logins_ok"] == 6
    assert r["senders"] == 3
    assert r["deliveries_in_window"] > 0
    # A correct server delivers every message to every other client.
    assert r["delivery_ratio"] == 1.0
    assert r["deliveries_in_window"] == r["expected_in_window"]
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
        *("--clients", "8", "--senders", "8", "--procs", "2", "--ack", "all"),
    )
    assert r["logins_ok"] == 8
    assert len(r["bench_cpu_pct"]) == 2
    assert r["delivery_ratio"] == 1.0


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


# ------------------------------------------------------ error handling


def test_nothing_listening_is_a_clear_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections refused
        r = bench(port, "fanout", "--clients", "2", "--login-timeout", "5", check=False)
    assert r["ok"] is False
    assert "connect" in r["error"]
    assert r["connect_errno"]


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
        r = bench(server.port, "fanout", "--clients", "4", "--senders", "2")
        assert r["logins_ok"] == 4
        assert r["banner_lines"] == 4
        assert r["echoes"] > 0 and r["echo_to_sender"] is True
        assert r["delivery_ratio"] == 1.0  # echoes are not counted as deliveries
        assert any("echoed" in w for w in r["warnings"])
        p = bench(server.port, "pingpong", "--clients", "3")
        assert p["pongs_in_window"] > 0
    finally:
        server.close()


# ----------------------------------------------------------- bare servers


@pytest.mark.parametrize("script", ["benchmarks/bare_asyncio.py", "benchmarks/bare_threads.py"])
def test_bare_server_fanout(script: str) -> None:
    server = Server(script)
    try:
        r = bench(server.port, "fanout", "--clients", "5", "--senders", "5")
        assert r["delivery_ratio"] == 1.0
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
