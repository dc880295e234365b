"""A chat server that is one node of a cluster: many processes, one room, Redis between.

Owns: the node's link to Redis as a state machine (dial, handshake,
register, heartbeat, reconnect with back-off), the claims of local logins
(held until Redis decides), the presence replica and the notices it causes,
what a local line publishes (one PUBLISH per MSG, a DM for a remote user),
and what a message from the bus means for local connections
(docs/protocol.md §17, docs/cluster.md). Never touches a socket, never parses
RESP and never reads a clock: the Redis connection is one more connection of
the core, which the adapter dials when :meth:`ClusterServer.take_dials` says,
drains with ``data_to_send`` like any other, and feeds with
:meth:`ClusterServer.bus_received` once the edge has parsed the replies.

Ordering: presence changes (joins and leaves, local ones included) take
effect when Redis's message about them comes back on the bus, so every node
applies them in the one order Redis published them: the same WHO order
everywhere, and a name seen free by anyone is free in Redis. A local LOGIN
answers OK at that moment; its later lines wait (PauseCause.CLAIM). MSG and
DM reach local users at once and are published once; a node ignores its
own messages from the bus. A leaving user's release is sent after its last
line on the same connection, so everyone sees the leave after that line.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from typing import Final

from ._cluster_config import ClusterConfig
from ._cluster_link import (
    IGNORE_REPLY,
    LINK_TRANSITIONS,
    BusDial,
    ClusterLink,
    LinkState,
    LinkTimer,
    Reply,
)
from ._cluster_wire import SCRIPTS, BusItem, command, publish, publish_prefix
from ._config import ServerConfig
from ._connection import Connection
from ._errors import ErrorCode
from ._events import (
    CloseMode,
    CloseReason,
    ClusterLinkChanged,
    CommandRejected,
    ConnectionClosed,
    ConnId,
    DirectMessageSent,
    ServerEvent,
)
from ._presence import Presence
from ._replies import ERROR_LINES, OK_LINE
from ._server import ChatServer
from ._server_session import ServerSession

__all__ = ["LINK_TRANSITIONS", "BusDial", "ClusterServer", "LinkState"]

_SYNCED, _REGISTERING, _DOWN, _DIALING = (
    LinkState.SYNCED,
    LinkState.REGISTERING,
    LinkState.DOWN,
    LinkState.DIALING,
)
_UNAVAILABLE: Final = ErrorCode.CLUSTER_UNAVAILABLE


_OPEN = CloseMode.OPEN


class ClusterServer(ChatServer, ClusterLink):
    """A :class:`~chatproto.ChatServer` whose room spans every node of a cluster.

    Beyond the single-node contract, the adapter: calls
    :meth:`take_dials` after :meth:`handle_timeout` (every dial is decided
    there, the first one due at once) and dials each; reports the connection
    with :meth:`bus_connected` (or ``connection_lost`` if it failed); feeds
    what it reads on it, parsed, to :meth:`bus_received`; and otherwise
    serves it like a client's connection (``take_ready``, ``data_to_send``,
    ``close_mode``, ``connection_lost``).
    """

    def __init__(
        self,
        config: ServerConfig | None,
        cluster: ClusterConfig,
        *,
        message_events: bool = True,
    ) -> None:
        super().__init__(config, message_events=message_events)
        self._cluster = cluster
        self._node = cluster.node_id
        self._node_b = cluster.node_id.encode("ascii")
        self._mine = cluster.node_id + "/"
        self._lease_ms = round(cluster.lease * 1000)
        self._pub = publish_prefix(cluster.prefix + "bus")
        self._presence = Presence()
        self._link = _DOWN
        #: The Redis connection of the link (``None`` while down).
        self._bus: Connection | None = None
        #: Every id ever used for a Redis connection (never a client's).
        self._bus_ids: set[ConnId] = set()
        self._dials: list[BusDial] = []
        #: What each command sent on the link and not yet answered was.
        self._expect: deque[tuple[Reply, str]] = deque()
        #: When the link last made progress (a reply), for link_timeout.
        self._progress = 0.0
        self._heartbeat_out = False
        self._retry = cluster.retry_first
        #: Bumped whenever the link goes down: older link timers are stale.
        self._generation = 0
        self._ctimers: list[tuple[float, int, LinkTimer, str]] = []
        self._ctimer_seq = 0
        #: Claims waiting for Redis: token -> (connection, name).
        self._claims: dict[str, tuple[Connection, str]] = {}
        #: Claims made while the link was not synced: sent once it is.
        self._unsent: list[str] = []
        #: Local logged-in users by claim token, and each connection's token.
        self._tokens: dict[str, Connection] = {}
        self._token_of: dict[ConnId, str] = {}
        self._serial = 0
        self._leaving = False
        #: Logins accepted during the registration in flight.
        self._fresh: set[ConnId] = set()
        #: The next registration keeps users of nodes not registered (yet).
        self._grace = False
        #: Lines held by a claim wait on this connection, which is never
        #: released: the flow-control timers leave them alone.
        self._nobody = Connection(ConnId(0), ServerSession(), 0.0, 0.0)
        #: The barrier each connection waits for (see _ping_barrier).
        self._barriers: dict[ConnId, str] = {}
        #: The connection whose held lines are running after a decision (a
        #: barrier it passed covers them all).
        self._passing: Connection | None = None
        #: Connections whose claim was decided, to resume once the bus item is done.
        self._decided: list[Connection] = []
        self._ctimer(-math.inf, LinkTimer.DIAL, "0")

    # ----------------------------------------------------------------- state

    @property
    def cluster(self) -> ClusterConfig:
        """Where Redis is and this node's clocks."""
        return self._cluster

    @property
    def link_state(self) -> LinkState:
        """How far the node's link to Redis got."""
        return self._link

    def cluster_usernames(self) -> list[str]:
        """Every user of the cluster as this node knows them, in login order."""
        return [m.name for m in self._presence]

    # -------------------------------------------------------- the bus link

    def take_dials(self) -> list[BusDial]:
        """Redis connections to open now (decided by :meth:`handle_timeout`)."""
        dials, self._dials = self._dials, []
        return dials

    def bus_connected(self, conn: ConnId, now: float) -> list[ServerEvent]:
        """The Redis connection ``conn`` is established: handshake, subscribe, register."""
        bus = self._bus
        if bus is None or bus.id != conn or self._link is not _DIALING:
            return []
        self._now = now
        self._move("connected")
        self._progress = now
        self._grace = True
        cfg = self._cluster
        self._send(command("HELLO", 3), IGNORE_REPLY)
        if cfg.db:
            self._send(command("SELECT", cfg.db), IGNORE_REPLY)
        self._send(command("CLIENT", "SETNAME", f"chatproto-{self._node}"), IGNORE_REPLY)
        for script in SCRIPTS.all():
            self._send(command("SCRIPT", "LOAD", script.body), IGNORE_REPLY)
        # In RESP3 a subscription confirms with a push, not a reply; Redis
        # runs the commands in order, so the registration below already sees
        # this connection subscribed, and no bus message is missed.
        self._send(command("SUBSCRIBE", cfg.prefix + "bus"), None)
        self._register()
        self._events.append(ClusterLinkChanged(conn, "connected", f"{cfg.host}:{cfg.port}"))
        self._ctimer(now + cfg.lease / 3, LinkTimer.TICK, str(self._generation))
        return self._finish(now)

    def bus_received(self, conn: ConnId, items: list[BusItem], now: float) -> list[ServerEvent]:
        """What the edge parsed from Redis on ``conn``: pushes and replies, in order."""
        bus = self._bus
        if bus is None or bus.id != conn or bus.mode is not _OPEN or self._shutting_down:
            return []
        self._now = now
        for item in items:
            if type(item) is tuple:
                self._on_push(item, now)
            else:
                self._on_reply(item, now)
            if self._decided:
                self._resume_decided(now)
            if self._bus is not bus:
                break  # the link was dropped: the rest is stale
        return self._finish(now)

    # ------------------------------------------------ overridden lifecycle

    def receive_eof(self, conn: ConnId, now: float) -> list[ServerEvent]:
        if conn in self._bus_ids:
            self._now = now
            if self._bus is not None and self._bus.id == conn:
                self._drop_link(now, "redis-closed")
            return self._finish(now)
        return super().receive_eof(conn, now)

    def connection_lost(self, conn: ConnId, now: float) -> list[ServerEvent]:
        if conn not in self._bus_ids:
            return super().connection_lost(conn, now)
        if self._bus is not None and self._bus.id == conn:
            self._now = now
            detail = "cannot-connect" if self._link is _DIALING else "connection-lost"
            self._drop_link(now, detail)
        events = super().connection_lost(conn, now)
        self._bus_ids.discard(conn)
        return [e for e in events if not (type(e) is ConnectionClosed and e.conn == conn)]

    def shutdown(self, now: float) -> list[ServerEvent]:
        """As :meth:`ChatServer.shutdown`, with every user of the cluster in the notices.

        Each local user gets ``INFO server-shutdown``, then ``INFO <name>
        disconnected`` for every other user of the cluster (in login order):
        for it, they are all gone (§12.5). The other nodes hear that this
        node's users left ``leave_delay`` later (§17.6).
        """
        if self._shutting_down:
            return []
        self._leaving = True
        bus = self._bus
        if bus is not None:
            del self._conns[bus.id]  # not a client: it gets no INFO server-shutdown
        members = list(self._presence)
        local = {token: c for token, c in self._tokens.items() if c.mode is _OPEN}
        self._room.clear()  # the notices are the cluster's, below
        events = super().shutdown(now)
        block = memoryview(b"".join(m.lines.disconnected for m in members))
        offset = 0
        for m in members:
            size = len(m.lines.disconnected)
            c = local.pop(m.token, None)
            if c is not None and c.mode is not CloseMode.NOW:
                if offset:
                    self._queue(c, block[:offset])
                if offset + size < len(block):
                    self._queue(c, block[offset + size :])
            offset += size
        for c in local.values():  # a user this node has not seen joined yet
            if block and c.mode is not CloseMode.NOW:
                self._queue(c, block)
        if bus is not None:
            self._conns[bus.id] = bus
            if self._link is _SYNCED:
                self._ctimer(now + self._cluster.leave_delay, LinkTimer.LEAVE, "")
            else:
                ChatServer._begin_close(self, bus, CloseReason.SHUTDOWN, now, "abort")
        self._dials.clear()
        return events + self._finish(now)

    def _leave(self, now: float) -> None:
        """Shutting down: this node's users leave the cluster, then the link closes."""
        bus = self._bus
        if bus is not None and bus.mode is _OPEN:
            self._send(self._run_script(SCRIPTS.leave, self._cluster.incarnation), IGNORE_REPLY)
            ChatServer._begin_close(self, bus, CloseReason.SHUTDOWN, now, announce=False)

    # --------------------------------------------------------------- timers

    def next_deadline(self) -> float | None:
        if self._decided:  # decided outside a feeding call (a dropped link): run at once
            self._announced = self._now
            return self._now
        base = super().next_deadline()
        ctimers = self._ctimers
        if ctimers and (base is None or ctimers[0][0] < base):
            self._announced = ctimers[0][0]
            return ctimers[0][0]
        return base

    def deadline_moved(self) -> bool:
        if self._decided:
            return self._now < self._announced
        if super().deadline_moved():
            return True
        return bool(self._ctimers) and self._ctimers[0][0] < self._announced

    def handle_timeout(self, now: float) -> list[ServerEvent]:
        self._now = now
        if self._decided:
            self._resume_decided(now)
        ctimers = self._ctimers
        while ctimers and ctimers[0][0] <= now:
            _, _, kind, arg = heapq.heappop(ctimers)
            if kind is LinkTimer.CLAIM:
                self._claim_expired(arg, now)
            elif kind is LinkTimer.LEAVE:
                self._leave(now)
            elif kind is LinkTimer.BARRIER:
                self._barrier_passed(arg)  # Redis is slow: answer anyway
            elif arg == str(self._generation) and not self._shutting_down:
                if kind is LinkTimer.DIAL:
                    self._dial(now)
                elif kind is LinkTimer.TICK:
                    self._tick(now)
                elif kind is LinkTimer.RESYNC:
                    self._lease_lost(now, "resync")
                elif self._link is _REGISTERING:  # LinkTimer.REGISTER
                    self._register()
            if self._decided:
                self._resume_decided(now)
        return super().handle_timeout(now)

    # ------------------------------------------------------ overridden lines

    def _on_login(self, c: Connection, name: str) -> bool:
        self._serial += 1
        token = f"{self._node}/{self._serial}"
        self._claims[token] = (c, name)
        self._token_of[c.id] = token
        c.waiting_on = self._nobody
        self._ctimer(self._now + self._cluster.claim_timeout, LinkTimer.CLAIM, token)
        if self._link is _SYNCED:
            self._send_claim(token)
        else:
            self._unsent.append(token)  # the next registration carries it
        return True

    def _on_who(self, c: Connection) -> None:
        self._queue(c, b"".join(m.lines.user for m in self._presence))

    # ------------------------------------------------------------- barriers

    _ping_waits = True

    def _ping_barrier(self, c: Connection) -> bool:
        """A PING waits until this node has read everything Redis published before it.

        One ``PING`` to Redis, on the connection that also carries the bus:
        its reply comes after every message Redis had for this node when it
        ran it. So a ``PONG`` proves, across nodes as on one server (§10.2),
        that whatever the client saw happen before it sent ``PING`` has been
        delivered here. The lines held with it (they all arrived before the
        reply) pass together. Without a synced link it answers at once.
        """
        if self._link is not _SYNCED:
            return False
        if self._passing is c:
            return False  # its held lines arrived before the barrier's reply
        c.waiting_on = self._nobody
        self._serial += 1
        barrier = self._barriers[c.id] = f"{c.id} {self._serial}"
        self._send(command("PING"), (Reply.BARRIER, barrier))
        self._ctimer(self._now + self._cluster.barrier_timeout, LinkTimer.BARRIER, barrier)
        return True

    def _barrier_passed(self, barrier: str) -> None:
        """The barrier's reply came, or its time ran out: the PING may run."""
        conn = ConnId(int(barrier.partition(" ")[0]))
        if self._barriers.get(conn) != barrier:
            return  # an older barrier of that connection (or it is gone)
        del self._barriers[conn]
        c = self._conns.get(conn)
        if c is not None and c.mode is _OPEN and c.waiting_on is self._nobody:
            self._decided.append(c)

    def _on_direct(self, c: Connection, recipient: str, text: str) -> None:
        if self._room.lookup(recipient) is not None:
            super()._on_direct(c, recipient, text)
            return
        m = self._presence.lookup(recipient)
        if m is None or m.token.startswith(self._mine):
            code = ErrorCode.USER_NOT_FOUND
        elif self._link is not _SYNCED:
            code = _UNAVAILABLE
        else:
            line = c.dm_prefix + text.encode("utf-8") + b"\n"
            self._send(
                publish(self._pub, b"D " + m.token.encode("ascii") + b" " + line), IGNORE_REPLY
            )
            self._queue(c, OK_LINE)
            if self._message_events:
                name = c.session.username
                assert name is not None
                self._events.append(DirectMessageSent(c.id, name, m.name, text))
            return
        self._queue(c, ERROR_LINES[code])
        self._events.append(CommandRejected(c.id, code))

    def _broadcast(self, line: bytes, sender: Connection) -> int:
        # Reached only for MSG here: notices go through ChatServer._broadcast.
        sent = super()._broadcast(line, sender)
        if self._link is _SYNCED:
            self._send(publish(self._pub, b"M " + self._node_b + b" " + line), IGNORE_REPLY)
        return sent

    # ChatServer._begin_close's signature: the override adds the release in Redis.
    def _begin_close(
        self,
        c: Connection,
        reason: CloseReason,
        now: float,
        trigger: str = "close",
        *,
        announce: bool = True,
    ) -> None:
        token = self._token_of.pop(c.id, None) if c.mode is _OPEN else None
        self._barriers.pop(c.id, None)
        super()._begin_close(c, reason, now, trigger, announce=False)
        if token is None or self._claims.pop(token, None) is not None:
            return  # not logged in (a claim's join, if it comes, is freed then)
        self._tokens.pop(token, None)
        name = c.session.username
        if self._leaving or name is None:
            return  # shutdown: one script releases every user
        if self._link is _SYNCED:
            # Its leave message removes it everywhere, here too, after its last line.
            self._send(self._run_script(SCRIPTS.release, token, name), IGNORE_REPLY)
        else:
            change = self._presence.leave(token, name)  # Redis hears of it on return
            if change is not None:
                self._apply([change], now)

    def _local_broadcast(self, line: bytes, sender: Connection) -> int:
        """Deliver ``line`` to this node's users only (no publish): for what came from the bus."""
        return ChatServer._broadcast(self, line, sender)

    def _local_begin_close(
        self,
        c: Connection,
        reason: CloseReason,
        now: float,
        trigger: str = "close",
        *,
        announce: bool = True,
    ) -> None:
        """Close ``c`` as a single node would (no release sent to Redis)."""
        ChatServer._begin_close(self, c, reason, now, trigger, announce=announce)

    def _bus_id(self) -> ConnId:
        return ConnId(0) if self._bus is None else self._bus.id
