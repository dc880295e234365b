"""Any interleaving of nodes, bus deliveries and time keeps the cluster's promises.

Hypothesis plays random stories on two or three nodes over the in-memory
Redis (tests/core/cluster_model.py): clients connect anywhere, log in with names
that collide (case-insensitively), send MSG, DM, WHO, QUIT or vanish; each
node's bytes reach Redis, and Redis's answers reach each node, whenever the
story says; time moves. Then everything in flight is delivered, and the
invariants of docs/protocol.md §17 are checked on what every client saw:

* names are unique cluster-wide, and every node agrees on WHO (same order);
* every MSG reaches every user logged in, on any node, from before it was
  sent until the end, exactly once; no client sees a line twice;
* each sender's lines reach each recipient in the order sent;
* a user's leave notice comes after its last line, for every recipient, and
  join and leave notices about a name alternate (one notice per leave);
* every LOGIN is answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatproto import ConnId

from .cluster_model import Cluster, Node

NAMES = ("ann", "ANN", "bob", "cy", "Dee")


@dataclass
class Client:
    """One test client: where it is, what it sent, what it is."""

    node: Node
    conn: ConnId
    name: str | None = None  # once its LOGIN was answered OK
    asked: str | None = None  # the name of a LOGIN not answered yet
    logins: int = 0
    gone: bool = False
    sent: list[str] = field(default_factory=list)


_network = st.one_of(
    st.tuples(st.just("flush"), st.integers(0, 2)),
    st.tuples(st.just("deliver"), st.integers(0, 2), st.integers(1, 6)),
)
op = st.one_of(
    st.tuples(st.just("connect"), st.integers(0, 2)),
    st.tuples(st.just("login"), st.integers(0, 7), st.sampled_from(NAMES)),
    st.tuples(st.just("msg"), st.integers(0, 7)),
    st.tuples(st.just("msg"), st.integers(0, 7)),
    st.tuples(st.just("dm"), st.integers(0, 7), st.sampled_from(NAMES)),
    st.tuples(st.just("who"), st.integers(0, 7)),
    st.tuples(st.just("quit"), st.integers(0, 7)),
    st.tuples(st.just("vanish"), st.integers(0, 7)),
    st.tuples(st.just("time"), st.sampled_from((0.05, 0.3))),
    # The bus moves about as often as clients act.
    _network,
    _network,
    _network,
    _network,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.integers(2, 3), st.lists(op, min_size=10, max_size=80))
def test_any_interleaving_keeps_the_invariants(count: int, ops: list[tuple[object, ...]]) -> None:
    cluster = Cluster(count, lease=3.0, claim_timeout=5.0)
    nodes = cluster.nodes
    # Some users on every node from the start, so that stories have a room.
    clients: list[Client] = []
    for i, name in enumerate(("early0", "early1", "early2")[:count]):
        conn = nodes[i].connect(cluster.now)
        nodes[i].send(conn, f"LOGIN {name}", cluster.now)
        cluster.settle()
        clients.append(Client(nodes[i], conn, name=name, sent=list(nodes[i].received[conn])))
    texts = iter(range(10**6))
    #: Per MSG text: the sender, and the clients logged in when it was sent.
    msgs: dict[str, tuple[int, set[int]]] = {}

    def client(index: object) -> Client | None:
        assert isinstance(index, int)
        live = [c for c in clients if not c.gone]
        return live[index % len(live)] if live else None

    def logged_in() -> set[int]:
        return {id(c) for c in clients if c.name is not None and not c.gone}

    def track(c: Client) -> None:
        """Read c's new replies for its LOGIN's answer."""
        for line in c.node.received[c.conn][len(c.sent) :]:
            c.sent.append(line)
            if c.asked is not None and (line == "OK" or line.startswith("ERR username")):
                c.name = c.asked if line == "OK" else None
                c.asked = None
            elif c.asked is not None and line.startswith("ERR cluster"):
                c.asked = None

    for step in ops:
        kind = step[0]
        if kind == "connect":
            node = nodes[int(step[1]) % count]  # type: ignore[call-overload]
            clients.append(Client(node, node.connect(cluster.now)))
            continue
        if kind == "flush":
            nodes[int(step[1]) % count].flush()  # type: ignore[call-overload]
        elif kind == "deliver":
            nodes[int(step[1]) % count].deliver(int(step[2]), cluster.now)  # type: ignore[call-overload]
        elif kind == "time":
            cluster.advance(float(step[1]))  # type: ignore[arg-type]
        else:
            c = client(step[1])
            if c is None:
                continue
            track(c)
            if kind == "login" and c.name is None and c.asked is None:
                c.asked = str(step[2])
                c.logins += 1
                c.node.send(c.conn, f"LOGIN {c.asked}", cluster.now)
            elif kind == "msg" and c.name is not None:
                text = f"m{next(texts)}"
                msgs[text] = (id(c), logged_in() - {id(c)})
                c.node.send(c.conn, f"MSG {text}", cluster.now)
            elif kind == "dm" and c.name is not None:
                c.node.send(c.conn, f"DM {step[2]} d{next(texts)}", cluster.now)
            elif kind == "who":
                c.node.send(c.conn, "WHO", cluster.now)
            elif kind == "quit":
                c.node.send(c.conn, "QUIT", cluster.now)
                c.gone = True
            elif kind == "vanish":
                c.node.close(c.conn, cluster.now)
                c.gone = True
        for c in clients:
            track(c)

    # Everything in flight arrives; claims are decided.
    cluster.settle()
    cluster.advance(0.1)
    cluster.settle()
    for c in clients:
        track(c)

    # Every LOGIN answered (none still waiting) and names unique cluster-wide.
    assert all(c.asked is None for c in clients if not c.gone)
    names = [c.name.lower() for c in clients if c.name is not None and not c.gone]
    assert len(names) == len(set(names))
    for node in nodes:
        assert sorted(n.lower() for n in node.core.cluster_usernames()) == sorted(names)
    # Every node lists the same users in the same order.
    orders = [node.core.cluster_usernames() for node in nodes]
    assert all(o == orders[0] for o in orders)

    stayed = logged_in()
    for c in clients:
        received = c.node.received[c.conn]
        msg_lines = [line for line in received if line.startswith("MSG ")]
        assert len(msg_lines) == len(set(msg_lines)), "a line arrived twice"
        texts_seen = [line.split(" ")[2] for line in msg_lines]
        assert all(msgs[text][0] != id(c) for text in texts_seen), "a sender got its own MSG"
        # Per-sender order: texts are numbered in sending order.
        last: dict[str, int] = {}
        present: dict[str, bool] = {}
        for line in received:
            words = line.split(" ")
            if words[0] == "MSG":
                sender, number = words[1].lower(), int(words[2][1:])
                assert number > last.get(sender, -1), f"{sender}'s lines out of order"
                last[sender] = number
                assert present.get(sender, True), f"{sender}'s line after its leave notice"
            elif words[0] == "INFO" and len(words) == 3 and words[2] in ("joined", "disconnected"):
                who, joined = words[1].lower(), words[2] == "joined"
                assert present.get(who, not joined) != joined, f"two notices in a row for {who}"
                present[who] = joined
        # Exactly once to everyone logged in throughout.
        if id(c) in stayed:
            seen = set(texts_seen)
            for text, (_, recipients) in msgs.items():
                if id(c) in recipients:
                    assert text in seen, f"{c.name} missed {text}"
