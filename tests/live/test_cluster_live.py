"""Cluster mode with a real Redis and real nodes: every data path, and every fault.

Each test starts its own redis-server (persistence off) and nodes with a
1-second lease; the faults of docs/protocol.md §17 are made for real: kill -9
of a node, SIGSTOP of Redis, a Redis restart, a cut link (a TCP proxy between
a node and Redis). Synchronisation is by protocol (PING/PONG, or the notice
that must come), with deadlines; nothing sleeps to synchronise.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from chatproto.adapters import FLAVOURS
from tests import REPO

from .cluster_live import LinkProxy, RedisProcess, kill9, needs_redis, nodes, redis_server
from .live_server import Client

pytestmark = needs_redis

UNAVAILABLE = "ERR cluster-unavailable the cluster cannot be reached, try again later"


def quiet(*clients: Client) -> None:
    """Nothing unexpected is waiting on any of ``clients`` (PING round trips)."""
    for c in clients:
        assert c.sync() == []


@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_every_data_path_is_a_node(flavour: str) -> None:
    with redis_server() as redis, nodes() as started:
        a = started.start(redis.url, "a")
        b = started.start(redis.url, "b", list(FLAVOURS[flavour]))
        alice = Client(a.port).login("alice")
        bob = Client(b.port)
        bob.send(b"LOGIN ALICE\nLOGIN bob\nWHO\nMSG hi all\nDM alice psst\n")
        bob.expect("ERR username-taken that name is in use", "OK", "USER alice", "USER bob")
        alice.expect("INFO bob joined", "MSG bob hi all", "DM bob psst")
        bob.expect("OK")
        alice.send(b"MSG back\nQUIT\n")
        bob.expect("MSG alice back", "INFO alice disconnected")
        alice.expect("OK")
        quiet(bob)


def test_a_killed_node_releases_its_users_once_within_the_lease() -> None:
    with redis_server() as redis, nodes() as started:
        doomed = started.start(redis.url, "doomed", lease=1.0)
        survivor = started.start(redis.url, "survivor", ["--backend", "anyio"], lease=1.0)
        victims = [Client(doomed.port).login(f"v{i}") for i in range(3)]
        watcher = Client(survivor.port).login("watcher")
        for v in victims:
            v.sync()
        begin = time.monotonic()
        kill9(doomed)
        seen = sorted(watcher.line() for _ in victims)
        took = time.monotonic() - begin
        assert seen == [f"INFO v{i} disconnected" for i in range(3)]
        assert took < 8.0  # the lease (1 s) and a heartbeat; generous for busy machines
        quiet(watcher)
        Client(survivor.port).login("V1")  # the names are free again


def test_redis_frozen_for_seconds_loses_nothing_and_reaps_nobody() -> None:
    with redis_server() as redis, nodes() as started:
        a = started.start(redis.url, "a", lease=1.0)
        b = started.start(redis.url, "b", ["--backend", "gevent"], lease=1.0)
        alice = Client(a.port).login("alice")
        bob = Client(b.port).login("bob")
        alice.expect("INFO bob joined")
        redis.freeze()
        try:
            alice.send(b"MSG said while Redis stood still\n")
            bob.send(b"DM alice also then\n")
            assert alice.sync() == []  # each node still answers its own users
            bob.expect("OK")
            deadline = time.monotonic() + 3.0  # three leases without Redis
            while time.monotonic() < deadline:
                assert bob.sync() == []
        finally:
            redis.thaw()
        bob.expect("MSG alice said while Redis stood still")
        alice.expect("DM bob also then")
        # A few heartbeats later nobody has been declared gone.
        for _ in range(3):
            bob.send(b"WHO\n")
            bob.expect("USER alice", "USER bob")
            alice.send(b"WHO\n")
            alice.expect("USER alice", "USER bob")
        quiet(alice, bob)


def test_redis_restart_resynchronises_presence() -> None:
    with redis_server() as redis, nodes() as started:
        a = started.start(redis.url, "a", lease=1.0)
        b = started.start(
            redis.url, "b", ["--backend", "anyio", "--anyio-backend", "trio"], lease=1.0
        )
        stays = Client(a.port).login("stays")
        goes = Client(a.port).login("goes")
        far = Client(b.port).login("far")
        stays.expect("INFO goes joined", "INFO far joined")
        goes.expect("INFO far joined")
        port = redis.port
        redis.stop()
        goes.send(b"QUIT\n")  # leaves while Redis is away (or just going)
        goes.expect("OK")
        fresh = RedisProcess(port)
        try:
            stays.expect("INFO goes disconnected")
            far.expect("INFO goes disconnected")  # once b and a are back in step
            again = Client(b.port).login("newcomer")
            stays.expect("INFO newcomer joined")
            far.expect("INFO newcomer joined")
            # Login order is re-registration order now, the same on every node.
            whos = []
            for c in (stays, again):
                c.send(b"WHO\n")
                whos.append([c.line() for _ in range(3)])
            assert whos[0] == whos[1] and whos[0][2] == "USER newcomer"
            assert sorted(whos[0][:2]) == ["USER far", "USER stays"]
            quiet(stays, far, again)
            users = fresh.command("HKEYS", "chatproto:users")
            assert b"goes" not in users and b"stays" in users
        finally:
            fresh.stop()


def test_a_cut_link_loses_the_users_and_a_name_claimed_meanwhile() -> None:
    with redis_server() as redis, nodes() as started:
        proxy = LinkProxy(redis.port)
        try:
            cut = started.start(proxy.url, "cut", lease=1.0)
            other = started.start(redis.url, "other", ["--backend", "gevent"], lease=1.0)
            victim = Client(cut.port).login("name")
            neighbour = Client(cut.port).login("neighbour")
            watcher = Client(other.port).login("watcher")
            victim.expect("INFO neighbour joined", "INFO watcher joined")
            neighbour.expect("INFO watcher joined")
            proxy.sever()
            # The others reap the cut node's users after its lease.
            assert sorted([watcher.line(), watcher.line()]) == [
                "INFO name disconnected",
                "INFO neighbour disconnected",
            ]
            # While cut off: MSG reaches local users only; a DM across fails.
            victim.send(b"MSG only here\nDM watcher hello\n")
            neighbour.expect("MSG name only here")
            victim.expect(UNAVAILABLE)
            late = Client(cut.port)
            late.send(b"LOGIN late\n")
            assert late.line(timeout=15.0) == UNAVAILABLE  # after the claim timeout (5 s)
            # Someone takes the name elsewhere; then the link comes back.
            thief = Client(other.port).login("NAME")
            watcher.expect("INFO NAME joined")
            proxy.restore()
            assert victim.wait_eof() == ["INFO name-lost"]
            neighbour.expect("INFO name disconnected", "INFO NAME joined")
            watcher.expect("INFO neighbour joined")
            thief.expect("INFO neighbour joined")
            quiet(watcher, thief, neighbour)
            assert watcher.sync() == []
        finally:
            proxy.close()


def test_the_example_starts_a_cluster_with_one_command() -> None:
    script = REPO / "examples" / "cluster" / "run_cluster.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), "--redis-port", "0", "--base-port", "0", "--lease", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ports = []
        while (line := proc.stdout.readline()) and "ready" not in line:
            if "listening on" in line:
                ports.append(int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1]))
        assert len(ports) == 3, ports
        ann = Client(ports[0]).login("ann")
        bob = Client(ports[2]).login("bob")
        ann.expect("INFO bob joined")
        bob.send(b"MSG across\n")
        ann.expect("MSG bob across")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert "cluster stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
