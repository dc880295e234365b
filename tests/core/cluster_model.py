"""An in-memory model of Redis for the cluster core's tests: no sockets, no sleeps.

:class:`ModelRedis` executes the commands a :class:`~chatproto.ClusterServer`
sends (RESP arrays of bulk strings) with the semantics of the Lua scripts in
``chatproto/_cluster_wire.py``, and queues replies and pub/sub pushes per
connection in the one order it executed them, as Redis does. :class:`Cluster`
wires N nodes to it; a test decides when each node's bytes reach the model
(``flush``) and when each node reads what the model sent (``deliver``), so
any interleaving of the nodes, the bus and time can be played.

The scripts' real Lua runs against a real Redis in tests/live/test_cluster_live.py;
this model checks the state machine that drives them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from chatproto import (
    BusItem,
    ClusterConfig,
    ClusterServer,
    ConnId,
    ServerConfig,
    ServerEvent,
)
from chatproto._cluster_wire import SCRIPTS

#: Redis's clock when the test's clock reads 0.
EPOCH_MS = 1_000_000

_BY_SHA = {
    SCRIPTS.heartbeat.sha: "heartbeat",
    SCRIPTS.register.sha: "register",
    SCRIPTS.claim.sha: "claim",
    SCRIPTS.release.sha: "release",
    SCRIPTS.leave.sha: "leave",
}


def parse_commands(data: bytearray) -> list[list[bytes]]:
    """Complete RESP arrays of bulk strings at the start of ``data`` (consumed)."""
    commands = []
    while data:
        pos = data.find(b"\r\n")
        if pos < 0 or data[:1] != b"*":
            break
        count = int(data[1:pos])
        args: list[bytes] = []
        at = pos + 2
        complete = True
        for _ in range(count):
            end = data.find(b"\r\n", at)
            if end < 0:
                complete = False
                break
            size = int(data[at + 1 : end])
            if len(data) < end + 2 + size + 2:
                complete = False
                break
            args.append(bytes(data[end + 2 : end + 2 + size]))
            at = end + 2 + size + 2
        if not complete:
            break
        del data[:at]
        commands.append(args)
    return commands


@dataclass
class ModelConnection:
    """One client connection of the model: bytes in, replies and pushes out."""

    redis: ModelRedis
    inbound: bytearray = field(default_factory=bytearray)
    #: What the model sent this connection and the node has not read yet.
    outbound: deque[BusItem] = field(default_factory=deque)
    subscribed: bool = False
    closed: bool = False

    def feed(self, data: bytes) -> None:
        if self.closed:
            return
        self.inbound += data
        for args in parse_commands(self.inbound):
            reply = self.redis.execute(self, args)
            if args[0].upper() != b"SUBSCRIBE":  # answered by a push, not a reply
                self.outbound.append(reply)


class ModelRedis:
    """Redis, as far as a cluster node uses it. ``now_ms`` is Redis's own clock."""

    def __init__(self) -> None:
        #: Redis's clock (ms), never 0: scripts take 0 for "never ran".
        self.now_ms = EPOCH_MS
        self.connections: list[ModelConnection] = []
        self.flush()
        #: Every bus message, in publication order.
        self.published: list[bytes] = []

    def flush(self) -> None:
        """Lose every key (a restart with persistence off)."""
        self.users: dict[str, tuple[int, str, str]] = {}
        self.node_sets: dict[str, set[str]] = {}
        self.nodes: dict[str, str] = {}
        self.leases: dict[str, int] = {}
        self.seq = 0
        self.tick = 0

    def connect(self) -> ModelConnection:
        conn = ModelConnection(self)
        self.connections.append(conn)
        return conn

    def restart(self) -> None:
        """Every connection drops; every key is gone."""
        for conn in self.connections:
            conn.closed = True
        self.connections = []
        self.flush()

    # ------------------------------------------------------------ commands

    def execute(self, conn: ModelConnection, args: list[bytes]) -> BusItem:
        name = args[0].upper()
        if name == b"PUBLISH":
            self.publish(args[2])
            return 1
        if name == b"EVALSHA":
            script = _BY_SHA[args[1].decode()]
            argv = [a.decode() for a in args[3:]]
            run: Callable[[list[str]], BusItem] = getattr(self, "_" + script)
            return run(argv)
        if name == b"SUBSCRIBE":
            conn.subscribed = True
            conn.outbound.append((b"subscribe", args[1], 1))
            return None
        if name == b"SCRIPT":
            return b"sha"
        return b"OK"  # HELLO, SELECT, CLIENT SETNAME

    def publish(self, payload: bytes) -> None:
        self.published.append(payload)
        for conn in self.connections:
            if conn.subscribed and not conn.closed:
                conn.outbound.append((b"message", b"chatproto:bus", payload))

    # ------------------------------------------------- the scripts, in Python

    def _drop_node(self, node: str) -> None:
        for key in sorted(self.node_sets.pop(node, set())):
            entry = self.users.get(key)
            if entry is not None and entry[1].startswith(node + "/"):
                del self.users[key]
                self.publish(f"L {entry[1]} {entry[2]}".encode())
        self.nodes.pop(node, None)
        self.leases.pop(node, None)

    def _reap(self, lease: int) -> None:
        now, last = self.now_ms, self.tick
        self.tick = now
        if last > 0 and now - last > lease:
            for node in self.leases:
                self.leases[node] = now + lease
            return
        for node in sorted(n for n, end in self.leases.items() if end <= now):
            self._drop_node(node)

    def _claim_name(self, node: str, token: str, name: str) -> int:
        key = name.lower()
        entry = self.users.get(key)
        if entry is not None:
            return entry[0] if entry[1] == token else 0
        self.seq += 1
        self.users[key] = (self.seq, token, name)
        self.node_sets.setdefault(node, set()).add(key)
        self.publish(f"J {self.seq} {token} {name}".encode())
        return self.seq

    def _heartbeat(self, argv: list[str]) -> BusItem:
        _, node, inc, lease = argv
        self._reap(int(lease))
        if self.nodes.get(node) != inc:
            return 0
        self.leases[node] = self.now_ms + int(lease)
        return 1

    def _register(self, argv: list[str]) -> BusItem:
        _, node, inc, lease, *pairs = argv
        self._reap(int(lease))
        current = self.nodes.get(node)
        if current is not None and current != inc:
            return [0]
        self.nodes[node] = inc
        self.leases[node] = self.now_ms + int(lease)
        wanted = {pairs[i + 1].lower(): pairs[i] for i in range(0, len(pairs), 2)}
        owned = self.node_sets.setdefault(node, set())
        for key in sorted(owned):
            entry = self.users.get(key)
            token = None if entry is None else entry[1]
            if token != wanted.get(key):
                owned.discard(key)
                if entry is not None and entry[1].startswith(node + "/"):
                    del self.users[key]
                    self.publish(f"L {entry[1]} {entry[2]}".encode())
        lost: list[object] = []
        for i in range(0, len(pairs), 2):
            token, name = pairs[i], pairs[i + 1]
            entry = self.users.get(name.lower())
            if entry is None:
                self._claim_name(node, token, name)
            elif entry[1] != token:
                lost.append(token.encode())
            else:
                owned.add(name.lower())
        flat: list[object] = []
        for key, (seq, token, name) in self.users.items():
            flat += [key.encode(), f"{seq} {token} {name}".encode()]
        return [1, lost, flat, [n.encode() for n in self.nodes]]

    def _claim(self, argv: list[str]) -> BusItem:
        _, node, inc, lease, token, name = argv
        self._reap(int(lease))
        if self.nodes.get(node) != inc:
            return -1
        return self._claim_name(node, token, name)

    def _release(self, argv: list[str]) -> BusItem:
        _, node, token, name = argv
        key = name.lower()
        entry = self.users.get(key)
        if entry is None or entry[1] != token:
            return 0
        del self.users[key]
        self.node_sets.get(node, set()).discard(key)
        self.publish(f"L {token} {name}".encode())
        return 1

    def _leave(self, argv: list[str]) -> BusItem:
        _, node, inc = argv
        if self.nodes.get(node) != inc:
            return 0
        self._drop_node(node)
        return 1


class Node:
    """One :class:`ClusterServer`, its link to the model, and what its clients received."""

    def __init__(self, redis: ModelRedis, node_id: str, now: float, **cluster: float) -> None:
        self.redis = redis
        self.core = ClusterServer(
            ServerConfig(flood_rate=0),
            ClusterConfig(node_id=node_id, incarnation=f"{node_id}-1", **cluster),  # type: ignore[arg-type]
        )
        self.link: ModelConnection | None = None
        self.bus: ConnId | None = None
        #: Lines received per client connection, in order.
        self.received: dict[ConnId, list[str]] = {}
        self.events: list[ServerEvent] = []
        self.alive = True
        self.timer(now)

    def timer(self, now: float) -> None:
        """Run the core's timers; open the Redis connection it asks for."""
        self.events += self.core.handle_timeout(now)
        for dial in self.core.take_dials():
            self.bus = dial.conn
            self.link = self.redis.connect()
            self.events += self.core.bus_connected(dial.conn, now)
        self.drain()

    def drain(self) -> None:
        """Take every client's output (clients here read at once)."""
        for conn in self.core.take_ready():
            if conn == self.bus:
                continue  # flushed to the model by flush(), when the test says
            data = self.core.data_to_send(conn)
            if data:
                lines = data.decode().splitlines()
                self.received.setdefault(conn, []).extend(lines)

    def flush(self) -> None:
        """What the node queued for Redis reaches it (and is executed there)."""
        if self.bus is None or self.link is None:
            return
        data = self.core.data_to_send(self.bus)
        if data:
            self.link.feed(data)

    def deliver(self, count: int, now: float) -> int:
        """The node reads up to ``count`` items Redis sent it; how many it read."""
        if self.link is None or self.bus is None:
            return 0
        if self.link.closed:
            self.lost(now)
            return 0
        items: list[BusItem] = []
        while self.link.outbound and len(items) < count:
            items.append(self.link.outbound.popleft())
        if items:
            self.events += self.core.bus_received(self.bus, items, now)
            self.drain()
        return len(items)

    def lost(self, now: float) -> None:
        """The Redis connection is gone."""
        if self.bus is not None:
            bus, self.bus, self.link = self.bus, None, None
            self.events += self.core.connection_lost(bus, now)
            self.drain()

    def connect(self, now: float) -> ConnId:
        conn = self.core.accept(now)
        assert isinstance(conn, int)
        self.received[conn] = []
        return conn

    def send(self, conn: ConnId, line: str, now: float) -> None:
        self.events += self.core.receive_data(conn, (line + "\n").encode(), now)
        self.drain()

    def close(self, conn: ConnId, now: float) -> None:
        self.events += self.core.connection_lost(conn, now)
        self.drain()

    @property
    def busy(self) -> bool:
        """Whether anything is in flight between this node and the model."""
        if self.link is None or self.bus is None:
            return False
        return bool(self.link.outbound) or self.core.queued_bytes(self.bus) > 0


class Cluster:
    """N nodes on one model Redis, with a shared clock."""

    def __init__(self, count: int, **cluster: float) -> None:
        self.now = 0.0
        self.redis = ModelRedis()
        self.nodes = [Node(self.redis, f"n{i}", self.now, **cluster) for i in range(count)]
        self.settle()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.redis.now_ms = EPOCH_MS + round(self.now * 1000)
        for node in self.nodes:
            if node.alive:
                node.timer(self.now)

    def settle(self, rounds: int = 200) -> None:
        """Move every byte and item until nothing is in flight (time stands still)."""
        for _ in range(rounds):
            moved = False
            for node in self.nodes:
                if not node.alive:
                    continue
                if node.busy:
                    moved = True
                node.flush()
                node.deliver(10**6, self.now)
            if not moved:
                return
        raise AssertionError("the cluster did not settle")
