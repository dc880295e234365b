"""The cluster core (ClusterServer) against an in-memory Redis: no sockets, no sleeps.

Each test plays one story of docs/protocol.md §17 by choosing when each
node's bytes reach Redis and when it reads Redis's answers (tests/
cluster_model.py). The property test at the end plays random ones.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from chatproto import ClusterConfig, ConnId, LinkState, PauseCause
from chatproto._events import InputPaused

from .cluster_model import Cluster, Node


def lines(node: Node, conn: ConnId) -> list[str]:
    """What ``conn`` received since the last call."""
    got = node.received[conn]
    node.received[conn] = []
    return got


def login(cluster: Cluster, node: Node, name: str) -> ConnId:
    conn = node.connect(cluster.now)
    node.send(conn, f"LOGIN {name}", cluster.now)
    cluster.settle()
    assert lines(node, conn) == ["OK"]
    return conn


def test_nodes_register_and_sync() -> None:
    cluster = Cluster(2)
    for node in cluster.nodes:
        assert node.core.link_state is LinkState.SYNCED
    assert set(cluster.redis.nodes) == {"n0", "n1"}


def test_one_room_across_nodes() -> None:
    cluster = Cluster(2)
    a, b = cluster.nodes
    alice = login(cluster, a, "alice")
    bob = login(cluster, b, "bob")
    assert lines(a, alice) == ["INFO bob joined"]
    b.send(bob, "MSG hello  there", cluster.now)
    cluster.settle()
    a.send(alice, "DM BOB hi", cluster.now)
    cluster.settle()
    assert lines(a, alice) == ["MSG bob hello  there", "OK"]
    assert lines(b, bob) == ["DM alice hi"]
    for node, conn in ((a, alice), (b, bob)):
        node.send(conn, "WHO", cluster.now)
        assert lines(node, conn) == ["USER alice", "USER bob"]


def test_a_msg_is_one_publish_however_many_users() -> None:
    cluster = Cluster(2)
    a, b = cluster.nodes
    users = [login(cluster, a, f"u{i}") for i in range(5)]
    login(cluster, b, "far")
    before = len(cluster.redis.published)
    a.send(users[0], "MSG one line", cluster.now)
    cluster.settle()
    assert cluster.redis.published[before:] == [b"M n0 MSG u0 one line\n"]


def test_names_are_unique_across_nodes_case_insensitively() -> None:
    cluster = Cluster(2)
    a, b = cluster.nodes
    login(cluster, a, "Alice")
    other = b.connect(cluster.now)
    b.send(other, "LOGIN aLICE", cluster.now)
    cluster.settle()
    assert lines(b, other) == ["ERR username-taken that name is in use"]


def test_lines_after_login_wait_for_the_claim_in_order() -> None:
    cluster = Cluster(2)
    a, b = cluster.nodes
    watcher = login(cluster, b, "watcher")
    conn = a.connect(cluster.now)
    events = a.core.receive_data(conn, b"LOGIN late\nMSG first\nWHO\nPING done\n", cluster.now)
    assert InputPaused(conn, PauseCause.CLAIM) in events
    a.drain()
    assert lines(a, conn) == []  # nothing is answered before Redis decides
    assert not a.core.reading(conn)
    cluster.settle()
    assert lines(a, conn) == ["OK", "USER watcher", "USER late", "PONG done"]
    assert lines(b, watcher) == ["INFO late joined", "MSG late first"]
    assert a.core.reading(conn)


def test_leave_notice_once_and_after_the_last_line() -> None:
    cluster = Cluster(3)
    a, b, c = cluster.nodes
    leaver = login(cluster, a, "leaver")
    far = login(cluster, b, "far")
    near = login(cluster, a, "near")
    c_user = login(cluster, c, "third")
    for node, conn in ((a, leaver), (b, far), (a, near)):
        lines(node, conn)
    a.send(leaver, "MSG last words", cluster.now)
    a.send(leaver, "QUIT", cluster.now)
    cluster.settle()
    assert lines(a, near) == ["MSG leaver last words", "INFO leaver disconnected"]
    assert lines(b, far) == ["MSG leaver last words", "INFO leaver disconnected"]
    assert lines(c, c_user) == ["MSG leaver last words", "INFO leaver disconnected"]


def test_the_name_is_free_everywhere_once_anyone_saw_the_leave() -> None:
    cluster = Cluster(2)
    a, b = cluster.nodes
    gone = login(cluster, a, "gone")
    a.close(gone, cluster.now)
    cluster.settle()
    again = login(cluster, b, "GONE")
    b.send(again, "WHO", cluster.now)
    assert lines(b, again) == ["USER GONE"]


def test_who_has_one_order_on_every_node() -> None:
    cluster = Cluster(3)
    conns = []
    # Logins from every node, their claims racing in Redis.
    for i, node in enumerate(cluster.nodes * 2):
        conn = node.connect(cluster.now)
        node.send(conn, f"LOGIN u{i}", cluster.now)
        conns.append((node, conn))
    cluster.settle()
    whos = []
    for node, conn in conns:
        lines(node, conn)
        node.send(conn, "WHO", cluster.now)
        whos.append(lines(node, conn))
    assert all(w == whos[0] for w in whos) and len(whos[0]) == 6


def test_a_dead_node_releases_its_users_within_the_lease() -> None:
    cluster = Cluster(2, lease=1.0)
    a, b = cluster.nodes
    login(cluster, a, "doomed")
    login(cluster, a, "doomed2")
    watcher = login(cluster, b, "watcher")
    lines(b, watcher)
    a.alive = False  # kill -9: nothing more from it
    assert a.link is not None
    a.link.closed = True
    for _ in range(8):  # 2 s: the lease, and a heartbeat of b's to notice it
        cluster.advance(0.25)
        cluster.settle()
    assert sorted(lines(b, watcher)) == ["INFO doomed disconnected", "INFO doomed2 disconnected"]
    assert "doomed" not in cluster.redis.users
    again = login(cluster, b, "doomed")
    assert again


def test_login_during_an_outage_waits_then_fails() -> None:
    cluster = Cluster(2, claim_timeout=2.0)
    a, _ = cluster.nodes
    a.lost(cluster.now)  # Redis is gone for a
    conn = a.connect(cluster.now)
    a.send(conn, "LOGIN patient", cluster.now)
    a.send(conn, "PING after", cluster.now)
    cluster.advance(1.0)
    assert lines(a, conn) == []
    cluster.advance(1.5)
    assert lines(a, conn) == [
        "ERR cluster-unavailable the cluster cannot be reached, try again later",
        "PONG after",
    ]


def test_login_during_a_short_outage_succeeds_after_it() -> None:
    cluster = Cluster(2, claim_timeout=5.0, retry_first=0.1)
    a, b = cluster.nodes
    watcher = login(cluster, b, "watcher")
    lines(b, watcher)
    a.lost(cluster.now)
    conn = a.connect(cluster.now)
    a.send(conn, "LOGIN patient", cluster.now)
    cluster.advance(0.2)  # a dials again
    cluster.settle()
    assert lines(a, conn) == ["OK"]
    assert lines(b, watcher) == ["INFO patient joined"]


def test_during_an_outage_msg_is_local_and_remote_dm_fails() -> None:
    cluster = Cluster(2)
    a, b = cluster.nodes
    near = login(cluster, a, "near")
    sender = login(cluster, a, "sender")
    far = login(cluster, b, "far")
    for node, conn in ((a, near), (a, sender), (b, far)):
        lines(node, conn)
    a.lost(cluster.now)
    a.send(sender, "MSG local only", cluster.now)
    a.send(sender, "DM far hello", cluster.now)
    a.send(sender, "DM near hello", cluster.now)
    cluster.settle()
    assert lines(a, near) == ["MSG sender local only", "DM sender hello"]
    assert lines(a, sender) == [
        "ERR cluster-unavailable the cluster cannot be reached, try again later",
        "OK",
    ]
    assert lines(b, far) == []


def test_redis_restart_resynchronises_with_a_notice_per_change() -> None:
    cluster = Cluster(2, lease=1.0, retry_first=0.1)
    a, b = cluster.nodes
    stays = login(cluster, a, "stays")
    goes = login(cluster, a, "goes")
    far = login(cluster, b, "far")
    for node, conn in ((a, stays), (a, goes), (b, far)):
        lines(node, conn)
    cluster.redis.restart()
    for node in cluster.nodes:
        node.deliver(1, cluster.now)  # each notices its connection is gone
    a.close(goes, cluster.now)  # leaves while Redis is away
    assert lines(a, stays) == ["INFO goes disconnected"]
    for _ in range(10):
        cluster.advance(0.1)
        cluster.settle()
    assert all(n.core.link_state is LinkState.SYNCED for n in cluster.nodes)
    assert lines(b, far) == ["INFO goes disconnected"]
    assert lines(a, stays) == []
    assert sorted(cluster.redis.users) == ["far", "stays"]
    whos = []
    for node, conn in ((a, stays), (b, far)):
        node.send(conn, "WHO", cluster.now)
        whos.append(lines(node, conn))
    assert whos[0] == whos[1] and sorted(whos[0]) == ["USER far", "USER stays"]


def test_a_node_cut_off_loses_a_name_claimed_meanwhile() -> None:
    cluster = Cluster(2, lease=1.0, retry_first=0.1)
    a, b = cluster.nodes
    cut = login(cluster, a, "name")
    local = login(cluster, a, "neighbour")
    watcher = login(cluster, b, "watcher")
    for node, conn in ((a, cut), (a, local), (b, watcher)):
        lines(node, conn)
    assert a.link is not None
    link = a.link
    a.alive = False  # a hears nothing and says nothing...
    for _ in range(8):
        cluster.advance(0.25)
        cluster.settle()
    assert sorted(lines(b, watcher)) == [
        "INFO name disconnected",
        "INFO neighbour disconnected",
    ]
    thief = login(cluster, b, "NAME")
    assert lines(b, watcher) == ["INFO NAME joined"]
    # ...then its link comes back: it finds its lease gone and registers again.
    a.alive = True
    link.closed = True
    a.deliver(1, cluster.now)
    for _ in range(10):
        cluster.advance(0.1)
        cluster.settle()
    assert lines(a, cut) == ["INFO name-lost"]
    assert a.core.close_reason(cut) is not None
    assert lines(a, local) == ["INFO name disconnected", "INFO NAME joined"]
    assert lines(b, watcher) == ["INFO neighbour joined"]
    assert lines(b, thief) == ["INFO neighbour joined"]


def test_redis_standing_still_reaps_nobody() -> None:
    cluster = Cluster(2, lease=1.0)
    a, b = cluster.nodes
    login(cluster, a, "alice")
    watcher = login(cluster, b, "watcher")
    lines(b, watcher)
    # Redis is stopped for 5 leases: commands pile up, nothing is answered.
    for node in cluster.nodes:
        node.alive = False
    cluster.advance(5.0)
    for node in cluster.nodes:
        node.alive = True
    for _ in range(12):
        cluster.advance(0.25)
        cluster.settle()
    assert lines(b, watcher) == []
    assert sorted(cluster.redis.users) == ["alice", "watcher"]


def test_a_claim_given_up_is_released_when_it_succeeds_late() -> None:
    cluster = Cluster(2, claim_timeout=1.0)
    a, b = cluster.nodes
    watcher = login(cluster, b, "watcher")
    lines(b, watcher)
    conn = a.connect(cluster.now)
    a.send(conn, "LOGIN slow", cluster.now)
    cluster.advance(1.5)  # Redis did not answer in time
    assert lines(a, conn)[0].startswith("ERR cluster-unavailable")
    cluster.settle()  # the claim arrives after all: joined, then freed
    assert lines(b, watcher) == ["INFO slow joined", "INFO slow disconnected"]
    assert "slow" not in cluster.redis.users


def test_shutdown_tells_local_users_everyone_left_and_others_later() -> None:
    cluster = Cluster(2, leave_delay=0.25)
    a, b = cluster.nodes
    first = login(cluster, b, "first")
    mine = login(cluster, a, "mine")
    second = login(cluster, a, "second")
    for node, conn in ((b, first), (a, mine), (a, second)):
        lines(node, conn)
    a.events += a.core.shutdown(cluster.now)
    a.drain()
    assert lines(a, mine) == [
        "INFO server-shutdown",
        "INFO first disconnected",
        "INFO second disconnected",
    ]
    cluster.settle()
    assert lines(b, first) == []
    cluster.advance(0.3)
    cluster.settle()
    assert sorted(lines(b, first)) == ["INFO mine disconnected", "INFO second disconnected"]


def test_cluster_config_reads_redis_urls() -> None:
    cfg = ClusterConfig.from_url("redis://h:7000/3", node_id="n", incarnation="i")
    assert (cfg.host, cfg.port, cfg.db) == ("h", 7000, 3)
    assert ClusterConfig.from_url("redis://h", node_id="n", incarnation="i").port == 6379
    for bad in ("http://h", "redis://h/x", "redis://u:p@h"):
        with pytest.raises(ValueError):
            ClusterConfig.from_url(bad, node_id="n", incarnation="i")
    with pytest.raises(ValueError):
        ClusterConfig(node_id="a/b", incarnation="i")


def test_single_node_servers_import_nothing_of_the_cluster_edge() -> None:
    code = (
        "import sys\n"
        "from chatproto.adapters.threading import ThreadingServer\n"
        "ThreadingServer()\n"
        "assert 'hiredis' not in sys.modules and 'chatproto.adapters._bus' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_pong_comes_after_what_other_nodes_published_before_the_ping() -> None:
    cluster = Cluster(2)
    a, b = cluster.nodes
    near = login(cluster, a, "near")
    far = login(cluster, b, "far")
    lines(a, near)
    b.send(far, "MSG published first", cluster.now)
    b.flush()  # Redis has it, and has queued it for a; a has not read it yet
    a.send(near, "PING after", cluster.now)
    a.send(near, "PING also", cluster.now)
    assert lines(a, near) == []  # the PONG waits for a's bus to catch up
    cluster.settle()
    assert lines(a, near) == ["MSG far published first", "PONG after", "PONG also"]


def test_a_pong_waits_for_a_stalled_redis_only_so_long() -> None:
    cluster = Cluster(2)
    a, _ = cluster.nodes
    near = login(cluster, a, "near")
    a.send(near, "PING", cluster.now)
    cluster.advance(0.3)
    assert lines(a, near) == []
    cluster.advance(0.3)  # barrier_timeout (0.5 s): answered anyway
    assert lines(a, near) == ["PONG"]
    cluster.settle()
    assert lines(a, near) == []
