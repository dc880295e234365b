"""TLS over real sockets: chatproto-serve's options, the handshake bound, refusals, the tools.

The strict profile of the conformance suite passes over TLS on every flavour.
The certificates are made for the test run with trustme (no key is ever
committed). Every flavour is tested through the command a user runs;
tests/core/test_tls_stream.py tests the TLS layer itself, in memory.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatproto.adapters import FLAVOURS
from chatproto.adapters._tls import TLS_REFUSALS
from chatproto.tls import ThrowawayCertificate

from .live_server import DEADLINE, Client, running_server
from .programs import running
from .suite_runs import RunPool

pytest.importorskip("trustme")


def tls_args(cert: ThrowawayCertificate) -> list[str]:
    return ["--tls-cert", cert.cert_file, "--tls-key", cert.key_file]


# ------------------------------------------------------ chatproto-serve


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatproto", "--port", "0", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env=env,
    )


def test_serve_wants_certificate_and_key_together(cert: ThrowawayCertificate) -> None:
    done = serve("--tls-cert", cert.cert_file)
    assert done.returncode == 2
    assert "--tls-cert and --tls-key go together" in done.stderr


def test_serve_says_in_one_line_why_a_certificate_does_not_load(
    cert: ThrowawayCertificate, tmp_path: Path
) -> None:
    missing = str(tmp_path / "nowhere.pem")
    for cert_file, key_file in ((missing, cert.key_file), (cert.cert_file, cert.ca_file)):
        done = serve("--tls-cert", cert_file, "--tls-key", key_file)
        assert done.returncode == 1
        assert done.stderr.startswith("chatproto-serve: cannot load the TLS certificate")
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr


def test_serve_takes_tls_from_the_environment(cert: ThrowawayCertificate) -> None:
    env = dict(os.environ, CHATPROTO_TLS_CERT=cert.cert_file, CHATPROTO_TLS_KEY=cert.key_file)
    with running_server(["--backend", "threading"], env=env) as server:
        assert "TLS" in server.banner
        ann = Client.over_tls(server.port, cert.client_context()).login("ann")
        assert ann.sync() == []
        ann.close()
        code, err = server.stop()
        assert code == 0, err


# ------------------------------------------------------- every flavour


def test_a_handshake_never_finished_is_timed_out_like_an_idle_client(
    flavour: list[str], cert: ThrowawayCertificate
) -> None:
    """Silent TCP, half a ClientHello, and plain text never block anyone; idle ones are closed."""
    idle = 1.0
    args = [*flavour, *tls_args(cert), "--idle-timeout", "1", "--close-timeout", "1"]
    with running_server(args) as server:
        started = time.monotonic()
        silent = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
        stalled = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
        stalled.sendall(b"\x16\x03\x01\x02\x00\x01")  # a record header and one byte: then nothing
        plain = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
        plain.sendall(b"LOGIN plain\n")
        # Meanwhile a TLS client is served at once.
        ann = Client.over_tls(server.port, cert.client_context()).login("ann")
        assert ann.sync() == []
        # Plain text is not TLS: that connection ends at once (reset or close).
        try:
            assert plain.recv(100) == b""
        except ConnectionResetError:
            pass
        for sock in (silent, stalled):
            try:
                assert sock.recv(100) == b""  # closed, with nothing written
            except ConnectionResetError:
                pass
            # Not before the idle timeout: the core's idle timer closed it.
            assert time.monotonic() - started >= idle * 0.9
        server.wait_logged("reason=idle-timeout")
        bea = Client.over_tls(server.port, cert.client_context()).login("bea")
        assert bea.sync() == []
        for sock in (silent, stalled, plain):
            sock.close()
        bea.close()
        ann.close()
        code, err = server.stop()
        assert code == 0, err
        assert "Traceback" not in err


def conformance_target(flavour: tuple[str, ...]) -> list[str]:
    """``chatproto-serve`` arguments of a flavour as ``chatproto-conformance`` target options.

    The suite turns flood control off for the strict profile by itself.
    """
    rest = " ".join(flavour[2:])
    return ["--backend", flavour[1], *([f"--serve-args={rest}"] if rest else [])]


@pytest.fixture(scope="module", autouse=True)
def strict_runs() -> Iterator[RunPool]:
    """The strict profile over TLS on every flavour, started at once, a few at a time.

    Started with the module's first test (autouse), so that the runs go on
    while the tests before theirs wait on their servers' timers.
    """
    wanted = {
        name: ["run", *conformance_target(args), "--tls", "--profile", "strict", "-q"]
        for name, args in FLAVOURS.items()
    }
    pool = RunPool(wanted, workers=3)
    yield pool
    pool.close()


@pytest.mark.parametrize("name", list(FLAVOURS))
def test_the_strict_profile_passes_over_tls(strict_runs: RunPool, name: str) -> None:
    got = strict_runs[name]
    assert got.code == 0, f"{name}: {got.bad()}\n{got.text[-3000:]}"
    assert "over TLS" in got.report["target"]
    assert set(got.outcomes.values()) == {"PASS"}, got.bad()
    # Server full (a refusal needs a handshake), half-close (close_notify
    # alone), idle timeout and shutdown, over TLS.
    for test_id in ("LIM-51", "ROB-54", "IDL-51", "SHD-51"):
        assert got.outcomes[test_id] == "PASS"


# ------------------------------------------------------------ the tools


def chat(port: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "chatproto.cli.chat", "127.0.0.1", str(port), *args]


def test_chat_over_tls_verifies_the_server_then_chats(cert: ThrowawayCertificate) -> None:
    with running_server(["--backend", "threading", *tls_args(cert)]) as server:
        # Our throwaway CA is nobody's: the system's trust store refuses it.
        with running(chat(server.port, "--tls", "--name", "eve", "--plain")) as refused:
            refused.wait_for(r"cannot connect to 127\.0\.0\.1:\d+: certificate verification failed")
            assert refused.exit_status() == 2
        bob = Client.over_tls(server.port, cert.client_context()).login("bob")
        command = chat(server.port, "--tls", "--tls-ca", cert.ca_file, "--name", "alice", "--plain")
        with running(command, stdin=subprocess.PIPE) as alice:
            alice.wait_for(r"connected to 127\.0\.0\.1:\d+ over TLSv1\.[23]")
            alice.wait_for(r"\*\* logged in as alice$")
            bob.expect("INFO alice joined")
            stdin = alice.popen.stdin
            assert stdin is not None
            stdin.write(b"hello over tls\n/ping\n/quit\n")
            stdin.flush()
            alice.wait_for(r"\*\* pong from the server in \d+\.\d ms$")
            assert alice.exit_status() == 0
        bob.expect("MSG alice hello over tls", "INFO alice disconnected")
        bob.close()
        code, err = server.stop()
        assert code == 0, err
        assert "reason=quit" in err  # alice said QUIT; the close was not a loss


def bench(port: int, scenario: str, *args: str) -> dict[str, object]:
    argv = [sys.executable, "-m", "chatproto.bench.cli", scenario, "--port", str(port)]
    argv += ["--clients", "6", "--duration", "0.5", "--warmup", "0.2", "--json", "-q", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("scenario", ["pingpong", "fanout", "connect"])
def test_bench_over_tls(cert: ThrowawayCertificate, scenario: str) -> None:
    """The load generator's non-blocking sockets speak TLS (a TlsStream each)."""
    with running_server(["--backend", "gevent", "--flood-rate", "0", *tls_args(cert)]) as server:
        result = bench(server.port, scenario, "--tls", "--tls-ca", cert.ca_file)
        assert result["ok"], result
        assert result["logins_ok"] == 6
        assert result["disconnects"] == 0
        # Without our CA the server is not trusted: no connection is made.
        refused = bench(server.port, "pingpong", "--tls")
        assert not refused["ok"]
        assert refused["connect_errno"] == {"EPROTO": 6}
        code, err = server.stop()
        assert code == 0, err


def test_refusals_over_tls_are_told_at_most_64_at_a_time(
    flavour: list[str], cert: ThrowawayCertificate
) -> None:
    """Beyond the cap a connection flood is closed at once, unanswered: it costs nothing held."""
    args = [
        "--backend",
        "threading",
        *tls_args(cert),
        "--max-clients",
        "1",
        "--close-timeout",
        "30",
    ]
    with running_server(args) as server:
        ann = Client.over_tls(server.port, cert.client_context()).login("ann")
        flood = [
            socket.create_connection(("127.0.0.1", server.port)) for _ in range(TLS_REFUSALS + 6)
        ]
        assert ann.sync() == []  # every connect of the flood was accepted before this
        # The first 64 are held for their handshake (bounded by --close-timeout);
        # the rest were closed at once, without a byte.
        closed: set[socket.socket] = set()
        selector = selectors.DefaultSelector()
        for sock in flood:
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + DEADLINE
        while len(closed) < 6 and time.monotonic() < deadline:
            for key, _ in selector.select(deadline - time.monotonic()):
                gone = key.fileobj
                assert isinstance(gone, socket.socket)
                assert gone.recv(100) == b""
                selector.unregister(gone)
                closed.add(gone)
        assert len(closed) == 6
        assert selector.select(0.3) == []  # and nobody else: the others are held
        selector.close()
        # A held one still gets its ERR server-full, once it handshakes.
        held = next(s for s in flood if s not in closed)
        tls_held = cert.client_context().wrap_socket(held, server_hostname="127.0.0.1")
        assert tls_held.recv(100).startswith(b"ERR server-full")
        tls_held.close()
        # Closed by their clients before a handshake, the held ones go at
        # once, not after --close-timeout: the server stops in a moment.
        for sock in flood:
            sock.close()
        ann.close()
        code, err = server.stop()
        assert code == 0, err


def test_the_suite_reaches_a_running_server_over_tls(cert: ThrowawayCertificate) -> None:
    """``tls://HOST:PORT`` with ``--tls-ca`` or ``--insecure``; an unknown CA is said at once."""

    def suite(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "chatproto.conformance", "run", *args, "--only", "PNG-*"]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    with running_server(["--backend", "anyio", *tls_args(cert)]) as server:
        url = f"tls://127.0.0.1:{server.port}"
        trusted = suite(url, "--tls-ca", cert.ca_file)
        assert trusted.returncode == 0, trusted.stdout
        assert f"target {url}" in trusted.stdout
        assert suite(url, "--insecure").returncode == 0
        unknown = suite(url)
        assert unknown.returncode == 3
        assert "certificate verification failed" in unknown.stdout + unknown.stderr
        plain = suite(f"tcp://127.0.0.1:{server.port}", "--tls-ca", cert.ca_file)
        assert plain.returncode == 2
        assert "--tls-ca and --insecure go with tls://HOST:PORT" in plain.stderr
        code, err = server.stop()
        assert code == 0, err
