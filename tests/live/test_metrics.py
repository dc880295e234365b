"""``chatproto-serve --metrics``: the Prometheus endpoint counts what happened, exactly.

Two runs are scraped while they go on: a script of clients on every flavour,
whose every count (lines by command, errors by token, disconnects by reason,
lines and bytes out, which the clients measure on their side) is known in
advance; and a conformance run, whose counts are checked against the server's
own log of it (every connect, login, error, message and disconnect) and
against each other. Scrapes are parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

import chatproto

from .live_server import DEADLINE, ServerProcess, env_without, running_server

parser = pytest.importorskip("prometheus_client.parser")

#: A scrape: sample name and sorted labels -> value.
Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metrics_url(server: ServerProcess) -> str:
    return str(server.banner).split("metrics ")[1].split(")")[0]


def scrape(url: str) -> Scrape:
    with urllib.request.urlopen(url, timeout=DEADLINE) as reply:
        text = reply.read().decode()
    samples: Scrape = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Scrape, name: str, **labels: str) -> int:
    return int(samples[(f"chatproto_{name}", tuple(sorted(labels.items())))])


def by_label(samples: Scrape, name: str) -> dict[str, int]:
    """Every sample of ``name`` (one label), by its label value."""
    return {labels[0][1]: int(v) for (n, labels), v in samples.items() if n == f"chatproto_{name}"}


def scrape_until(url: str, done: str, want: int) -> Scrape:
    """Scrape until ``chatproto_<done>`` is ``want`` (the server closes in its own time)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        samples = scrape(url)
        if value(samples, done) == want:
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"{done} stayed {value(samples, done)}, expected {want}")
        time.sleep(0.02)  # sampling a gauge: there is nothing to wait on


class Peer:
    """A plain line client that measures what it receives, byte for byte."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.buf = b""
        self.received_bytes = 0
        self.received_lines = 0
        self.pings = 0

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(f"{line}\n" for line in lines).encode())
        self.pings += sum(1 for line in lines if line.startswith("PING"))

    def line(self) -> str:
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError(f"closed while waiting for a line (have {self.buf!r})")
            self.received_bytes += len(data)
            self.received_lines += data.count(b"\n")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def expect(self, *lines: str) -> None:
        for want in lines:
            assert self.line() == want

    def sync(self) -> None:
        """A PING round trip: the server has sent everything before the PONG."""
        self.send(f"PING s{self.pings}")
        while not self.line().startswith("PONG s"):
            pass

    def read_to_end(self) -> None:
        while data := self.sock.recv(65536):
            self.received_bytes += len(data)
            self.received_lines += data.count(b"\n")

    def reset(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def test_a_script_of_clients_is_counted_exactly(flavour: list[str]) -> None:
    args = [*flavour, "--metrics", "127.0.0.1:0", "--max-clients", "4", "--flood-rate", "0"]
    with running_server(args) as server:
        url = metrics_url(server)
        port = server.port
        ann, bob, cy = Peer(port), Peer(port), Peer(port)
        ann.send("LOGIN ann")
        ann.expect("OK")
        bob.send("LOGIN bob")
        bob.expect("OK")
        cy.send("LOGIN cy")
        cy.expect("OK")
        dee = Peer(port)
        dee.send("LOGIN ann", "LOGIN d@e", "MSG too early", "LOGIN dee")
        assert [dee.line().split()[1] for _ in range(3)] == [
            "username-taken",
            "invalid-username",
            "not-logged-in",
        ]
        dee.expect("OK")
        gus = Peer(port)  # the fifth: refused, by the adapter, not queued by the core
        assert gus.line().startswith("ERR server-full")
        gus.read_to_end()
        ann.send("PING 1", "WHO", "HELP", "FROB", "MSG hello", "MSG again")
        bob.send("DM cy psst", "DM nobody x")
        for peer in (ann, bob, cy, dee):
            peer.sync()

        # Scraped while the script runs: four users, nothing closed yet.
        mid = scrape(url)
        assert value(mid, "connections_open") == 4
        assert value(mid, "users") == 4
        assert value(mid, "logins_total") == 4
        assert by_label(mid, "connections_refused_total")["server-full"] == 1
        assert sum(by_label(mid, "disconnects_total").values()) == 0

        cy.send("QUIT")
        cy.read_to_end()
        cy.sock.close()
        eve = Peer(port)
        eve.send("PING x")
        eve.expect("PONG x")
        eve.sock.shutdown(socket.SHUT_WR)
        eve.read_to_end()
        eve.sock.close()
        fay = Peer(port)
        fay.send("LOGIN fay")
        fay.expect("OK")
        fay.reset()
        for peer in (ann, bob, dee):
            while peer.line() != "INFO fay disconnected":
                pass
            peer.sync()
        final = scrape_until(url, "connections_open", 3)

        peers = (ann, bob, cy, dee, eve, fay)
        assert by_label(final, "lines_in_total") == {
            "login": 6,  # ann bob cy dee fay, and dee's LOGIN ann (taken)
            "msg": 2,
            "dm": 2,
            "who": 1,
            "ping": sum(p.pings for p in peers),
            "help": 1,
            "quit": 1,
            "invalid": 3,  # LOGIN d@e, MSG before LOGIN, FROB
        }
        errors = {token: n for token, n in by_label(final, "errors_total").items() if n}
        assert errors == {
            "username-taken": 1,
            "invalid-username": 1,
            "not-logged-in": 1,
            "unknown-command": 1,
            "user-not-found": 1,
        }
        disconnects = {r: n for r, n in by_label(final, "disconnects_total").items() if n}
        assert disconnects == {"quit": 1, "peer-closed": 1, "connection-lost": 1}
        assert value(final, "connections_accepted_total") == 6
        assert value(final, "logins_total") == 5
        assert value(final, "users") == 3
        assert value(final, "queued_bytes") == 0
        # What the clients received is what the core counted out.
        assert value(final, "lines_out_total") == sum(p.received_lines for p in peers)
        assert value(final, "bytes_out_total") == sum(p.received_bytes for p in peers)
        assert by_label(final, "inputs_paused") == {"flood": 0, "backpressure": 0}
        assert value(final, "flood_episodes_total") == 0
        backend = server.banner.split("(backend ")[1].split(",")[0]
        about = (("backend", backend), ("tls", "false"), ("version", chatproto.__version__))
        assert final[("chatproto_server_info", about)] == 1
        assert ("process_open_fds", ()) in final  # the process's own metrics too
        for peer in (ann, bob, dee, gus):
            peer.sock.close()
        code, err = server.stop()
        assert code == 0, err


def test_flood_control_is_counted(flavour: list[str]) -> None:
    """A flooder is paused (a gauge while it lasts), once per episode (a counter)."""
    args = [*flavour, "--metrics", "127.0.0.1:0", "--flood-rate", "4", "--flood-burst", "5"]
    with running_server(args) as server:
        url = metrics_url(server)
        flooder = Peer(server.port)
        flooder.send(*[f"PING {i}" for i in range(8)])
        for i in range(5):  # the burst runs at once; the other three wait for tokens
            flooder.expect(f"PONG {i}")
        paused = scrape(url)
        assert by_label(paused, "inputs_paused")["flood"] == 1
        assert value(paused, "flood_episodes_total") == 1
        for i in range(5, 8):
            flooder.expect(f"PONG {i}")
        after = scrape_until(url, "flood_episodes_total", 1)
        assert by_label(after, "input_pauses_total")["flood"] >= 1
        assert by_label(after, "inputs_paused")["flood"] == 0
        flooder.sock.close()
        code, err = server.stop()
        assert code == 0, err


# ----------------------------------------------------- a conformance run


def _logged(log: str) -> dict[str, Counter[str]]:
    """The server's JSON log, tallied: events, and each event by its key field."""
    tally: dict[str, Counter[str]] = {
        "event": Counter(),
        "err": Counter(),
        "reason": Counter(),
    }
    for line in log.splitlines():
        record = json.loads(line)
        event = record.get("event")
        if event is None:
            continue
        tally["event"][event] += 1
        if event == "error":
            tally["err"][record["err"]] += 1
        elif event == "disconnect":
            tally["reason"][record["reason"]] += 1
    return tally


def test_a_conformance_run_scraped_while_it_goes(tmp_path: Path) -> None:
    """Scrapes during a core-profile run only grow; at the end they match the server's log."""
    args = ["--backend", "threading", "--metrics", "127.0.0.1:0", "--flood-rate", "0"]
    args += ["--log-level", "debug", "--log-format", "json"]
    with running_server(args) as server:
        url = metrics_url(server)
        target = f"tcp://127.0.0.1:{server.port}"
        command = [sys.executable, "-m", "chatproto.conformance", "run", target, "-q"]
        run = subprocess.Popen(
            [*command, "--profile", "core", "--json", str(tmp_path / "report.json")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        scrapes = []
        while run.poll() is None:
            scrapes.append(scrape(url))
            time.sleep(0.05)  # sampling while the run goes on
        out, _ = run.communicate(timeout=DEADLINE)
        assert run.returncode == 0, out
        assert len(scrapes) >= 3, "the run ended before it could be watched"
        during = [s for s in scrapes if value(s, "connections_open") > 0]
        assert during, "no scrape saw the run's connections"
        # Totals only ever grow, scrape after scrape.
        for before, after in itertools.pairwise(scrapes):
            for key, was in before.items():
                if key[0].endswith("_total"):
                    assert after[key] >= was, key
        final = scrape_until(url, "connections_open", 0)
        code, log = server.stop()
        assert code == 0, log

    tally = _logged(log)
    report = json.loads((tmp_path / "report.json").read_text("utf-8"))
    passed = {r["id"] for r in report["results"] if r["outcome"] == "PASS"}
    accepted = value(final, "connections_accepted_total")
    disconnects = by_label(final, "disconnects_total")
    errors = by_label(final, "errors_total")
    lines_in = by_label(final, "lines_in_total")
    # The run, as the server logged it: one line per connect, login, error,
    # message and disconnect.
    assert accepted == tally["event"]["connect"] > len(passed)
    assert value(final, "logins_total") == tally["event"]["login"]
    assert {t: n for t, n in errors.items() if n} == dict(tally["err"])
    assert {r: n for r, n in disconnects.items() if n} == dict(tally["reason"])
    assert lines_in["msg"] == tally["event"]["msg"]
    assert lines_in["dm"] == tally["event"]["dm"] + errors["user-not-found"]
    # And the counts agree with each other: every connection ended, every
    # QUIT closed one, every LOGIN either logged in or was taken, every ERR
    # answered a line.
    assert sum(disconnects.values()) == accepted
    assert lines_in["quit"] == disconnects["quit"]
    assert value(final, "logins_total") == lines_in["login"] - errors["username-taken"]
    assert sum(errors.values()) == (
        lines_in["invalid"] + errors["username-taken"] + errors["user-not-found"]
    )
    assert value(final, "users") == 0
    assert value(final, "queued_bytes") == 0
    # What the tests that passed provoke was counted.
    for test_id, counted in (
        ("ERR-51", errors["unknown-command"]),
        ("LOG-53", errors["username-taken"]),
        ("LOG-55", errors["not-logged-in"]),
        ("DIS-53", disconnects["connection-lost"]),
        ("PNG-51", lines_in["ping"]),
        ("WHO-51", lines_in["who"]),
        ("MSG-51", lines_in["msg"]),
    ):
        assert test_id in passed
        assert counted > 0, test_id


# ------------------------------------------------------------- the option


def test_without_metrics_prometheus_client_is_never_imported(tmp_path: Path) -> None:
    """No --metrics, no cost: the server serves where prometheus_client cannot even load."""
    env = env_without("prometheus_client", str(tmp_path))
    with running_server(["--backend", "threading"], env=env) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
            sock.sendall(b"PING\n")
            assert sock.recv(100) == b"PONG\n"
        code, err = server.stop()
        assert code == 0, err
    missing = subprocess.run(
        [sys.executable, "-m", "chatproto", "--port", "0", "--metrics", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env=env,
        check=False,
    )
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        "chatproto-serve: --metrics needs prometheus-client, which is not installed; "
        "install it with: pip install 'chatproto[metrics]'"
    ]


def test_metrics_address_errors_are_one_line() -> None:
    def serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "chatproto", "--port", "0", *args],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            env={**os.environ, **env},
            check=False,
        )

    bad = serve("--metrics", "9100")
    assert bad.returncode == 2
    assert "expected HOST:PORT, got '9100'" in bad.stderr
    from_env = serve(CHATPROTO_METRICS="nowhere")
    assert from_env.returncode == 2
    assert "CHATPROTO_METRICS" in from_env.stderr
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        busy = serve("--metrics", f"127.0.0.1:{port}")
    assert busy.returncode == 1
    assert busy.stderr.strip().splitlines() == [
        f"chatproto-serve: cannot serve metrics on 127.0.0.1:{port}: Address already in use"
    ]
