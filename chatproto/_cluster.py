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
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Final

from ._cluster_config import ClusterConfig
from ._cluster_wire import SCRIPTS, BusError, BusItem, Script, command, publish, publish_prefix
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
    UserLoggedIn,
)
from ._presence import Change, Member, Presence
from ._replies import ERROR_LINES, NAME_LOST_LINE, OK_LINE
from ._server import ChatServer
from ._server_session import ServerSession

__all__ = ["LINK_TRANSITIONS", "BusDial", "ClusterServer", "LinkState"]

_OPEN = CloseMode.OPEN


@dataclass(frozen=True, slots=True)
class BusDial:
    """Open a TCP connection to Redis for ``conn`` (from :meth:`ClusterServer.take_dials`).

    Connected: :meth:`ClusterServer.bus_connected`, then serve it like an
    accepted connection, except that what is read goes through the RESP
    parser to :meth:`ClusterServer.bus_received`. Failed (or not connected
    within ``timeout`` seconds): ``connection_lost(conn, now)``.
    """

    conn: ConnId
    host: str
    port: int
    timeout: float


class LinkState(Enum):
    """How far the node's link to Redis got."""

    #: No connection; one is dialled when the back-off is over.
    DOWN = "down"
    #: Dialled, not connected yet.
    DIALING = "dialing"
    #: Connected; registering this node and its users (again).
    REGISTERING = "registering"
    #: Registered, subscribed, presence in step: claims and publishing run.
    SYNCED = "synced"


#: (link state, trigger) -> next state. Rules: a link is dialled only when
#: down; a connection registers before anything else; only a registered
#: (synced) node claims and publishes; a synced node that finds its lease or
#: registration gone registers again on the same connection; any failure
#: drops the link, from any state. Nothing else changes the state.
LINK_TRANSITIONS: Final[dict[tuple[LinkState, str], LinkState]] = {
    (LinkState.DOWN, "dial"): LinkState.DIALING,
    (LinkState.DIALING, "connected"): LinkState.REGISTERING,
    (LinkState.REGISTERING, "registered"): LinkState.SYNCED,
    (LinkState.SYNCED, "lease-lost"): LinkState.REGISTERING,
    **{(state, "drop"): LinkState.DOWN for state in LinkState},
}


class _Reply(IntEnum):
    """What the oldest unanswered command was, to read its reply."""

    IGNORE = 0
    REGISTER = 1
    HEARTBEAT = 2
    CLAIM = 3
    BARRIER = 4


class _Timer(IntEnum):
    DIAL = 0
    TICK = 1
    CLAIM = 2
    REGISTER = 3
    LEAVE = 4
    RESYNC = 5
    BARRIER = 6


_SYNCED, _REGISTERING, _DOWN, _DIALING = (
    LinkState.SYNCED,
    LinkState.REGISTERING,
    LinkState.DOWN,
    LinkState.DIALING,
)
_IGNORE: Final = (_Reply.IGNORE, "")
_UNAVAILABLE: Final = ErrorCode.CLUSTER_UNAVAILABLE


class ClusterServer(ChatServer):
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
        self._expect: deque[tuple[_Reply, str]] = deque()
        #: When the link last made progress (a reply), for link_timeout.
        self._progress = 0.0
        self._heartbeat_out = False
        self._retry = cluster.retry_first
        #: Bumped whenever the link goes down: older link timers are stale.
        self._generation = 0
        self._ctimers: list[tuple[float, int, _Timer, str]] = []
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
        self._ctimer(-math.inf, _Timer.DIAL, "0")

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
        self._send(command("HELLO", 3), _IGNORE)
        if cfg.db:
            self._send(command("SELECT", cfg.db), _IGNORE)
        self._send(command("CLIENT", "SETNAME", f"chatproto-{self._node}"), _IGNORE)
        for script in SCRIPTS.all():
            self._send(command("SCRIPT", "LOAD", script.body), _IGNORE)
        # In RESP3 a subscription confirms with a push, not a reply; Redis
        # runs the commands in order, so the registration below already sees
        # this connection subscribed, and no bus message is missed.
        self._send(command("SUBSCRIBE", cfg.prefix + "bus"), None)
        self._register()
        self._events.append(ClusterLinkChanged(conn, "connected", f"{cfg.host}:{cfg.port}"))
        self._ctimer(now + cfg.lease / 3, _Timer.TICK, str(self._generation))
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
                self._ctimer(now + self._cluster.leave_delay, _Timer.LEAVE, "")
            else:
                ChatServer._begin_close(self, bus, CloseReason.SHUTDOWN, now, "abort")
        self._dials.clear()
        return events + self._finish(now)

    def _leave(self, now: float) -> None:
        """Shutting down: this node's users leave the cluster, then the link closes."""
        bus = self._bus
        if bus is not None and bus.mode is _OPEN:
            self._send(self._run_script(SCRIPTS.leave, self._cluster.incarnation), _IGNORE)
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
            if kind is _Timer.CLAIM:
                self._claim_expired(arg, now)
            elif kind is _Timer.LEAVE:
                self._leave(now)
            elif kind is _Timer.BARRIER:
                self._barrier_passed(arg)  # Redis is slow: answer anyway
            elif arg == str(self._generation) and not self._shutting_down:
                if kind is _Timer.DIAL:
                    self._dial(now)
                elif kind is _Timer.TICK:
                    self._tick(now)
                elif kind is _Timer.RESYNC:
                    self._lease_lost(now, "resync")
                elif self._link is _REGISTERING:  # _Timer.REGISTER
                    self._register()
            if self._decided:
                self._resume_decided(now)
        return super().handle_timeout(now)

    def _move(self, trigger: str) -> None:
        """Change the link's state as :data:`LINK_TRANSITIONS` says (nothing else does)."""
        self._link = LINK_TRANSITIONS[(self._link, trigger)]

    def _ctimer(self, due: float, kind: _Timer, arg: str) -> None:
        self._ctimer_seq += 1
        heapq.heappush(self._ctimers, (due, self._ctimer_seq, kind, arg))

    def _dial(self, now: float) -> None:
        if self._bus is not None:
            return
        conn = ConnId(self._next_id)
        self._next_id += 1
        self._bus = self._conns[conn] = Connection(conn, ServerSession(), now, 0.0)
        self._bus_ids.add(conn)
        self._move("dial")
        cfg = self._cluster
        self._dials.append(BusDial(conn, cfg.host, cfg.port, cfg.connect_timeout))

    def _tick(self, now: float) -> None:
        """Every third of a lease while connected: is Redis answering? renew the lease."""
        cfg = self._cluster
        if self._expect and now - self._progress > cfg.link_timeout:
            self._drop_link(now, f"no-answer-for-{cfg.link_timeout:g}s")
            return
        if self._link is _SYNCED and not self._heartbeat_out:
            self._heartbeat_out = True
            self._send(
                self._run_script(SCRIPTS.heartbeat, self._cluster.incarnation, self._lease_ms),
                (_Reply.HEARTBEAT, ""),
            )
        self._ctimer(now + cfg.lease / 3, _Timer.TICK, str(self._generation))

    def _drop_link(self, now: float, detail: str) -> None:
        """The link is lost (or given up): back off, then dial again."""
        bus = self._bus
        if bus is None:
            return
        self._bus = None
        self._move("drop")
        for kind, arg in self._expect:
            if kind is _Reply.BARRIER:
                self._barrier_passed(arg)  # no bus, no barrier (§17.5)
        self._expect.clear()
        self._heartbeat_out = False
        self._generation += 1
        if bus.mode is _OPEN:
            ChatServer._begin_close(self, bus, CloseReason.CONNECTION_LOST, now, "abort")
        state = "closed" if self._shutting_down else "down"
        self._events.append(ClusterLinkChanged(bus.id, state, detail))
        if not self._shutting_down:
            self._ctimer(now + self._retry, _Timer.DIAL, str(self._generation))
            self._retry = min(self._cluster.retry_last, self._retry * 2)

    # -------------------------------------------------------------- sending

    def _send(self, data: bytes, expect: tuple[_Reply, str] | None) -> None:
        """Queue a command for Redis; ``expect`` says how to read its reply (``None``: none)."""
        bus = self._bus
        if bus is None:
            return
        out = bus.out
        if not out:
            # First in line: Redis gets a line before any client gets a reply
            # sent after it (a PONG), so the line is on its way to the other
            # nodes before the client can react to that reply.
            self._ready.insert(0, bus.id)
        out.append(data)
        bus.queued += len(data)
        if expect is not None:
            if not self._expect:
                self._progress = self._now  # the link timeout runs from the first unanswered
            self._expect.append(expect)
        if bus.queued > self._cluster.max_bus_bytes:
            self._drop_link(self._now, "redis-not-reading")

    def _run_script(self, script: Script, *args: str | int) -> bytes:
        return command("EVALSHA", script.sha, 0, self._cluster.prefix, self._node, *args)

    def _register(self) -> None:
        """Register this node and make Redis hold exactly its users and claims."""
        pairs: list[str] = []
        for token, c in self._tokens.items():
            name = c.session.username
            assert name is not None
            pairs += (token, name)
        for token, (_, name) in self._claims.items():
            pairs += (token, name)
        self._unsent.clear()
        self._fresh.clear()
        self._send(
            self._run_script(SCRIPTS.register, self._cluster.incarnation, self._lease_ms, *pairs),
            (_Reply.REGISTER, ""),
        )

    # ------------------------------------------------------------- replies

    def _on_reply(self, item: BusItem, now: float) -> None:
        if not self._expect:
            self._drop_link(now, "reply-to-nothing")
            return
        kind, arg = self._expect.popleft()
        self._progress = now
        if isinstance(item, BusError):
            self._drop_link(now, "redis-error-" + (item.message.split() or ["?"])[0])
        elif kind is _Reply.IGNORE:
            return
        elif kind is _Reply.CLAIM:
            self._claim_answered(arg, item, now)
        elif kind is _Reply.BARRIER:
            self._barrier_passed(arg)
        elif kind is _Reply.HEARTBEAT:
            self._heartbeat_out = False
            if item != 1:
                self._lease_lost(now, "lease-lost")
        elif isinstance(item, list) and item and item[0] == 1 and len(item) == 4:
            lost, flat, nodes = item[1], item[2], item[3]
            assert isinstance(lost, list) and isinstance(flat, list) and isinstance(nodes, list)
            self._registered([_text(t) for t in lost], flat, {_text(n) for n in nodes}, now)
        else:
            # Another live process uses this node id: wait for its lease.
            self._events.append(ClusterLinkChanged(self._bus_id(), "waiting", "node-id-in-use"))
            self._ctimer(now + self._cluster.lease / 3, _Timer.REGISTER, str(self._generation))

    def _registered(self, lost: list[str], flat: list[object], nodes: set[str], now: float) -> None:
        """Redis holds this node's users now: settle conflicts, take the snapshot.

        Right after a reconnect, users of nodes that have not registered again
        yet (Redis restarted, and they are reconnecting too) stay for two
        leases before they count as gone: no notices for them unless their
        node does not come back.
        """
        self._move("registered")
        self._retry = self._cluster.retry_first
        for token in lost:
            claim = self._claims.pop(token, None)
            if claim is not None:
                self._refuse_claim(claim[0], ErrorCode.USERNAME_TAKEN)
                continue
            c = self._tokens.get(token)
            if c is not None and c.mode is _OPEN:
                # Claimed elsewhere while this node was away: that claim won.
                self._queue(c, NAME_LOST_LINE)
                self._begin_close(c, CloseReason.NAME_LOST, now)
        entries = []
        for i in range(0, len(flat) - 1, 2):
            seq, token, name = _text(flat[i + 1]).split(" ")
            entries.append((int(seq), token, name))
        keep: list[Member] = []
        if self._grace:
            self._grace = False
            named = {name.lower() for _, _, name in entries}
            keep = [
                m
                for m in self._presence
                if m.node not in nodes and m.node != self._node and m.name.lower() not in named
            ]
            if keep:
                due = now + 2 * self._cluster.lease
                self._ctimer(due, _Timer.RESYNC, str(self._generation))
        self._apply(self._presence.replace(entries, keep), now, snapshot=True)
        self._events.append(ClusterLinkChanged(self._bus_id(), "synced", f"users-{len(entries)}"))
        # Claims made after the registration was sent (it carried the others).
        unsent, self._unsent = self._unsent, []
        for token in unsent:
            if token in self._claims:
                self._send_claim(token)

    def _lease_lost(self, now: float, detail: str) -> None:
        if self._link is _SYNCED:
            self._move("lease-lost")
            self._events.append(ClusterLinkChanged(self._bus_id(), "registering", detail))
            self._register()

    # --------------------------------------------------------------- pushes

    def _on_push(self, item: tuple[object, ...], now: float) -> None:
        if len(item) != 3 or item[0] != b"message":
            return  # the subscription's confirmation
        payload = item[2]
        if not isinstance(payload, bytes):
            return
        kind = payload[:2]
        if kind == b"M ":
            space = payload.find(b" ", 2)
            if payload[2:space] != self._node_b:
                ChatServer._broadcast(self, payload[space + 1 :], self._nobody)
        elif kind == b"D ":
            space = payload.find(b" ", 2)
            c = self._tokens.get(payload[2:space].decode("ascii", "replace"))
            if c is not None and c.mode is _OPEN:
                self._queue(c, payload[space + 1 :])
        elif kind == b"J ":
            seq, token, name = payload[2:].decode("ascii", "replace").split(" ")
            self._apply(self._presence.join(int(seq), token, name), now)
            if token.startswith(self._mine) and token not in self._tokens:
                self._orphan(token)
        elif kind == b"L ":
            token, name = payload[2:].decode("ascii", "replace").split(" ")
            change = self._presence.leave(token, name)
            if change is not None:
                self._apply([change], now)
            if token in self._tokens:
                # Released by someone else while still here: reaped.
                self._lease_lost(now, "reaped")

    def _apply(self, changes: list[Change], now: float, *, snapshot: bool = False) -> None:
        """Replica changes become notices to local users (and accepted logins).

        A join found in a snapshot is not told to the local users whose own
        login this registration decided: they came after it, and find it in
        WHO.
        """
        for change in changes:
            m = change.member
            if change.joined:
                claim = self._claims.pop(m.token, None)
                if claim is not None:
                    self._accept(claim[0], m)
            local = self._tokens.get(m.token, self._nobody)
            if not (snapshot and change.joined):
                line = m.lines.joined if change.joined else m.lines.disconnected
                ChatServer._broadcast(self, line, local)
                continue
            for c in self._room.members():
                if c is not local and c.id not in self._fresh:
                    self._queue(c, m.lines.joined)

    def _orphan(self, token: str) -> None:
        """A claim of this node that no local user holds (its LOGIN gave up): free it."""
        if token in self._claims or token in self._tokens:
            return
        m = next((m for m in self._presence if m.token == token), None)
        if m is not None and self._link is _SYNCED:
            self._send(self._run_script(SCRIPTS.release, token, m.name), _IGNORE)

    # --------------------------------------------------------------- claims

    def _send_claim(self, token: str) -> None:
        _, name = self._claims[token]
        self._send(
            self._run_script(SCRIPTS.claim, self._cluster.incarnation, self._lease_ms, token, name),
            (_Reply.CLAIM, token),
        )

    def _claim_answered(self, token: str, item: BusItem, now: float) -> None:
        if item == 0:
            claim = self._claims.pop(token, None)
            if claim is not None:
                self._refuse_claim(claim[0], ErrorCode.USERNAME_TAKEN)
        elif item == -1:
            self._lease_lost(now, "not-registered")
        # A login seq: the claim's join message accepts it (it may have already).

    def _claim_expired(self, token: str, now: float) -> None:
        claim = self._claims.pop(token, None)
        if claim is not None:
            self._refuse_claim(claim[0], _UNAVAILABLE)

    def _refuse_claim(self, c: Connection, code: ErrorCode) -> None:
        self._token_of.pop(c.id, None)
        if c.mode is _OPEN:
            self._queue(c, ERROR_LINES[code])
            self._events.append(CommandRejected(c.id, code))
            self._decided.append(c)

    def _accept(self, c: Connection, m: Member) -> None:
        """The claim of ``c`` is in the replica: it is logged in, here and everywhere."""
        if c.mode is not _OPEN:
            return
        c.session.login_accepted(m.name)
        c.user = m.lines
        c.msg_prefix = m.lines.msg_prefix
        c.dm_prefix = m.lines.dm_prefix
        self._room.claim(m.name, c)
        self._tokens[m.token] = c
        if self._link is _REGISTERING:
            self._fresh.add(c.id)
        self._queue(c, OK_LINE)
        self._events.append(UserLoggedIn(c.id, m.name))
        self._decided.append(c)

    def _resume_decided(self, now: float) -> None:
        decided, self._decided = self._decided, []
        for c in decided:
            if c.mode is _OPEN and c.held is not None and c.waiting_on is self._nobody:
                c.waiting_on = None
                self._passing = c
                try:
                    self._resume(c, now)
                finally:
                    self._passing = None

    # ------------------------------------------------------ overridden lines

    def _on_login(self, c: Connection, name: str) -> bool:
        self._serial += 1
        token = f"{self._node}/{self._serial}"
        self._claims[token] = (c, name)
        self._token_of[c.id] = token
        c.waiting_on = self._nobody
        self._ctimer(self._now + self._cluster.claim_timeout, _Timer.CLAIM, token)
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
        self._send(command("PING"), (_Reply.BARRIER, barrier))
        self._ctimer(self._now + self._cluster.barrier_timeout, _Timer.BARRIER, barrier)
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
            self._send(publish(self._pub, b"D " + m.token.encode("ascii") + b" " + line), _IGNORE)
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
            self._send(publish(self._pub, b"M " + self._node_b + b" " + line), _IGNORE)
        return sent

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
            self._send(self._run_script(SCRIPTS.release, token, name), _IGNORE)
        else:
            change = self._presence.leave(token, name)  # Redis hears of it on return
            if change is not None:
                self._apply([change], now)

    def _bus_id(self) -> ConnId:
        return ConnId(0) if self._bus is None else self._bus.id


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value)
