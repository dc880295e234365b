"""A cluster node's link to Redis: dialing, registering, heartbeats, claims, and what Redis says.

Owns: the link's state machine (:data:`LINK_TRANSITIONS`: dial, handshake,
register, heartbeat, reconnect with back-off), the commands sent on it and
the reading of their replies in order, the pushes from the bus (presence
changes applied in Redis's one order), and the claims of local logins until
Redis decides them (docs/protocol.md §17, docs/cluster.md). Never touches a
socket, never parses RESP and never reads a clock.

A mixin of :class:`~chatproto._cluster.ClusterServer`, whose state it shares
(as :class:`~chatproto._flow.FlowControl` is ChatServer's): the split keeps
each module to one job; the node's public API and what its lines do are in
:mod:`chatproto._cluster`.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Final

from ._cluster_config import ClusterConfig
from ._cluster_wire import SCRIPTS, BusError, BusItem, Script, command
from ._connection import Connection
from ._errors import ErrorCode
from ._events import (
    CloseMode,
    CloseReason,
    ClusterLinkChanged,
    CommandRejected,
    ConnId,
    ServerEvent,
    UserLoggedIn,
)
from ._presence import Change, Member, Presence
from ._replies import ERROR_LINES, NAME_LOST_LINE, OK_LINE
from ._room import Room
from ._server_session import ServerSession

__all__ = [
    "IGNORE_REPLY",
    "LINK_TRANSITIONS",
    "BusDial",
    "ClusterLink",
    "LinkState",
    "LinkTimer",
    "Reply",
    "text",
]

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


class Reply(IntEnum):
    """What the oldest unanswered command was, to read its reply."""

    IGNORE = 0
    REGISTER = 1
    HEARTBEAT = 2
    CLAIM = 3
    BARRIER = 4


class LinkTimer(IntEnum):
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
#: A command whose reply is read and dropped.
IGNORE_REPLY: Final = (Reply.IGNORE, "")
_UNAVAILABLE: Final = ErrorCode.CLUSTER_UNAVAILABLE


class ClusterLink:
    """The link half of :class:`~chatproto._cluster.ClusterServer`."""

    # Shared with ClusterServer (which sets them up) and ChatServer.
    _cluster: ClusterConfig
    _node: str
    _node_b: bytes
    _mine: str
    _lease_ms: int
    _presence: Presence
    _link: LinkState
    _bus: Connection | None
    _bus_ids: set[ConnId]
    _dials: list[BusDial]
    _expect: deque[tuple[Reply, str]]
    _progress: float
    _heartbeat_out: bool
    _retry: float
    _generation: int
    _ctimers: list[tuple[float, int, LinkTimer, str]]
    _ctimer_seq: int
    _claims: dict[str, tuple[Connection, str]]
    _unsent: list[str]
    _tokens: dict[str, Connection]
    _token_of: dict[ConnId, str]
    _grace: bool
    _fresh: set[ConnId]
    _nobody: Connection
    _passing: Connection | None
    _decided: list[Connection]
    _conns: dict[ConnId, Connection]
    _room: Room[Connection]
    _ready: list[ConnId]
    _events: list[ServerEvent]
    _now: float
    _next_id: int
    _shutting_down: bool

    # What ClusterServer and ChatServer provide (found before these in the MRO),
    # declared with the signatures of the methods that define them, for the
    # type checker: a mixin has no other way to say what it calls.
    def _bus_id(self) -> ConnId:
        raise NotImplementedError

    def _barrier_passed(self, barrier: str) -> None:
        raise NotImplementedError

    def _queue(self, c: Connection, data: bytes | memoryview) -> None:
        raise NotImplementedError

    def _begin_close(
        self,
        c: Connection,
        reason: CloseReason,
        now: float,
        trigger: str = "close",
        *,
        announce: bool = True,
    ) -> None:
        raise NotImplementedError

    def _resume(self, c: Connection, now: float) -> None:
        raise NotImplementedError

    def _local_broadcast(self, line: bytes, sender: Connection) -> int:
        raise NotImplementedError

    def _local_begin_close(
        self,
        c: Connection,
        reason: CloseReason,
        now: float,
        trigger: str = "close",
        *,
        announce: bool = True,
    ) -> None:
        raise NotImplementedError

    def _move(self, trigger: str) -> None:
        """Change the link's state as :data:`LINK_TRANSITIONS` says (nothing else does)."""
        self._link = LINK_TRANSITIONS[(self._link, trigger)]

    def _ctimer(self, due: float, kind: LinkTimer, arg: str) -> None:
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
                (Reply.HEARTBEAT, ""),
            )
        self._ctimer(now + cfg.lease / 3, LinkTimer.TICK, str(self._generation))

    def _drop_link(self, now: float, detail: str) -> None:
        """The link is lost (or given up): back off, then dial again."""
        bus = self._bus
        if bus is None:
            return
        self._bus = None
        self._move("drop")
        for kind, arg in self._expect:
            if kind is Reply.BARRIER:
                self._barrier_passed(arg)  # no bus, no barrier (§17.5)
        self._expect.clear()
        self._heartbeat_out = False
        self._generation += 1
        if bus.mode is _OPEN:
            self._local_begin_close(bus, CloseReason.CONNECTION_LOST, now, "abort")
        state = "closed" if self._shutting_down else "down"
        self._events.append(ClusterLinkChanged(bus.id, state, detail))
        if not self._shutting_down:
            self._ctimer(now + self._retry, LinkTimer.DIAL, str(self._generation))
            self._retry = min(self._cluster.retry_last, self._retry * 2)

    # -------------------------------------------------------------- sending

    def _send(self, data: bytes, expect: tuple[Reply, str] | None) -> None:
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
            (Reply.REGISTER, ""),
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
        elif kind is Reply.IGNORE:
            return
        elif kind is Reply.CLAIM:
            self._claim_answered(arg, item, now)
        elif kind is Reply.BARRIER:
            self._barrier_passed(arg)
        elif kind is Reply.HEARTBEAT:
            self._heartbeat_out = False
            if item != 1:
                self._lease_lost(now, "lease-lost")
        elif isinstance(item, list) and item and item[0] == 1 and len(item) == 4:
            lost, flat, nodes = item[1], item[2], item[3]
            assert isinstance(lost, list) and isinstance(flat, list) and isinstance(nodes, list)
            self._registered([text(t) for t in lost], flat, {text(n) for n in nodes}, now)
        else:
            # Another live process uses this node id: wait for its lease.
            self._events.append(ClusterLinkChanged(self._bus_id(), "waiting", "node-id-in-use"))
            self._ctimer(now + self._cluster.lease / 3, LinkTimer.REGISTER, str(self._generation))

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
            seq, token, name = text(flat[i + 1]).split(" ")
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
                self._ctimer(due, LinkTimer.RESYNC, str(self._generation))
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
                self._local_broadcast(payload[space + 1 :], self._nobody)
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
                self._local_broadcast(line, local)
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
            self._send(self._run_script(SCRIPTS.release, token, m.name), IGNORE_REPLY)

    # --------------------------------------------------------------- claims

    def _send_claim(self, token: str) -> None:
        _, name = self._claims[token]
        self._send(
            self._run_script(SCRIPTS.claim, self._cluster.incarnation, self._lease_ms, token, name),
            (Reply.CLAIM, token),
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


def text(value: object) -> str:
    """A RESP value (bytes or other) as text."""
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value)
