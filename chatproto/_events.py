"""What a :class:`~chatproto.ChatServer` reports to the program embedding it.

These events let a program log, bridge or moderate: they describe what the
room did, not the bytes it sent (those wait in the output buffers). Each event
names the connection it concerns by its :data:`ConnId`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import NewType, Union

from ._errors import ErrorCode

__all__ = [
    "CloseMode",
    "CloseReason",
    "ClusterLinkChanged",
    "CommandRejected",
    "ConnId",
    "ConnectionClosed",
    "ConnectionRefused",
    "DirectMessageSent",
    "FloodLimited",
    "InputPaused",
    "InputResumed",
    "MessageBroadcast",
    "PauseCause",
    "ServerEvent",
    "UserLeft",
    "UserLoggedIn",
]

#: A connection's identity, handed out by :meth:`ChatServer.connection_made`.
ConnId = NewType("ConnId", int)


class CloseReason(Enum):
    """Why a connection ended (docs/protocol.md §8.2, §12)."""

    #: The client sent QUIT.
    QUIT = "quit"
    #: The client sent nothing for ``idle_timeout`` seconds.
    IDLE_TIMEOUT = "idle-timeout"
    #: Output queued past ``max_outbound_bytes``; the client was not reading.
    SLOW_CONSUMER = "slow-consumer"
    #: The connection came when ``max_clients`` were already open.
    SERVER_FULL = "server-full"
    #: The server shut down.
    SHUTDOWN = "server-shutdown"
    #: The client closed its sending side (end of stream).
    PEER_CLOSED = "peer-closed"
    #: The transport failed or was reset before anyone decided to close it.
    CONNECTION_LOST = "connection-lost"
    #: Cluster mode: the name was claimed elsewhere while this node was cut
    #: off from Redis (docs/protocol.md §17.5).
    NAME_LOST = "name-lost"


class CloseMode(Enum):
    """What an adapter must do with a connection, from :meth:`ChatServer.close_mode`."""

    #: Keep reading and writing.
    OPEN = "open"
    #: Write what :meth:`ChatServer.data_to_send` returns, then close.
    AFTER_FLUSH = "after-flush"
    #: Close now, without writing anything more.
    NOW = "now"


class PauseCause(Enum):
    """Why the core stopped taking a connection's input (docs/protocol.md §16)."""

    #: The connection spent its flood budget; its lines wait for tokens.
    FLOOD = "flood"
    #: A recipient of its lines is congested and draining; they wait for it.
    BACKPRESSURE = "backpressure"
    #: Its LOGIN waits for the cluster to decide the claim (docs/cluster.md).
    CLAIM = "claim"


@dataclass(frozen=True, slots=True)
class ConnectionRefused:
    """A connection turned away before it was served (``max_clients``, shutdown).

    Returned by :meth:`ChatServer.accept` and :meth:`ChatServer.refuse`, not
    part of :data:`ServerEvent`: the connection never had an id to report.
    The adapter writes :attr:`data` without blocking, then closes the socket
    at once (docs/protocol.md §13).
    """

    reason: CloseReason
    #: The one line to write before closing (``ERR server-full ...`` or
    #: ``INFO server-shutdown``).
    data: bytes


@dataclass(frozen=True, slots=True)
class UserLoggedIn:
    """A connection logged in under ``name`` (as registered)."""

    conn: ConnId
    name: str


@dataclass(frozen=True, slots=True)
class MessageBroadcast:
    """``sender`` broadcast ``text`` to ``recipients`` other users."""

    conn: ConnId
    sender: str
    text: str
    recipients: int


@dataclass(frozen=True, slots=True)
class DirectMessageSent:
    """``sender`` sent ``text`` to ``recipient`` (as registered)."""

    conn: ConnId
    sender: str
    recipient: str
    text: str


@dataclass(frozen=True, slots=True)
class CommandRejected:
    """A line from ``conn`` was answered with ``ERR <code>``."""

    conn: ConnId
    code: ErrorCode


@dataclass(frozen=True, slots=True)
class UserLeft:
    """A logged-in user left the room; the name is free again."""

    conn: ConnId
    name: str
    reason: CloseReason


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The adapter reported the transport gone; ``conn`` is forgotten.

    ``reason`` is the first reason anyone had to close it.
    """

    conn: ConnId
    reason: CloseReason


@dataclass(frozen=True, slots=True)
class InputPaused:
    """The core stopped taking ``conn``'s input; the adapter stops reading it."""

    conn: ConnId
    cause: PauseCause


@dataclass(frozen=True, slots=True)
class InputResumed:
    """The core takes ``conn``'s input again; the adapter reads it again."""

    conn: ConnId


@dataclass(frozen=True, slots=True)
class FloodLimited:
    """``conn`` sent faster than ``flood_rate``: its lines are delayed from now.

    Reported once per episode: the next one only after its budget has filled
    up again, so a flooder cannot turn this event (or a log line) into an
    amplifier.
    """

    conn: ConnId


@dataclass(frozen=True, slots=True)
class ClusterLinkChanged:
    """Cluster mode: the node's link to Redis changed (``state``: down, up, synced...).

    ``conn`` is the id of the Redis connection concerned (never a client's);
    ``detail`` says why or with what, in one word (a log's ``key=value``).
    """

    conn: ConnId
    state: str
    detail: str = ""


ServerEvent = Union[
    UserLoggedIn,
    MessageBroadcast,
    DirectMessageSent,
    CommandRejected,
    UserLeft,
    ConnectionClosed,
    InputPaused,
    InputResumed,
    FloodLimited,
    ClusterLinkChanged,
]
