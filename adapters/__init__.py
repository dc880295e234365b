"""Adapters: the chatproto core wired to real TCP sockets, one module per data path.

Installed, this folder is ``chatproto.adapters``:

* ``chatproto.adapters.threading``: stdlib only; a reader thread per
  connection, one writer thread.
* ``chatproto.adapters.gevent``: gevent's event loop, callbacks per socket.
* ``chatproto.adapters.asyncio``: asyncio (or uvloop) transports.
* ``chatproto.adapters.anyio``: anyio streams (trio), and :class:`AnyioServer`,
  which serves with the asyncio transports when anyio runs on asyncio.

The data paths are twins: the same sections in the same order, each holding
only socket, task and timer plumbing. What they all do the same way is in
``_plumbing``; every protocol decision (what to answer, whom to deliver to,
whose input to take, when to close) is the core's :class:`chatproto.ChatServer`.
docs/adapters.md describes the contract.

Importing this package imports no runtime; import the module you need.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

from chatproto import ConnectionRefused, ConnId, ServerCounters, ServerEvent

__all__ = ["BACKENDS", "FLAVOURS", "ServerObserver", "wants_message_events"]

#: The backends, by the name ``chatproto-serve --backend`` takes. Every tool
#: and test that lists backends imports this.
BACKENDS: Final = ("threading", "anyio", "gevent")

#: Every way to run a server, as ``chatproto-serve`` arguments: the five
#: flavours the tests and the conformance suite run against.
FLAVOURS: Final = {
    "threading": ("--backend", "threading"),
    "anyio-asyncio": ("--backend", "anyio"),
    "anyio-uvloop": ("--backend", "anyio", "--uvloop"),
    "anyio-trio": ("--backend", "anyio", "--anyio-backend", "trio"),
    "gevent": ("--backend", "gevent"),
}


class ServerObserver(Protocol):
    """What an adapter tells the program around it (the CLI logs it).

    Called on the adapter's own thread or task, inside its loop: keep it quick.
    """

    #: Whether :meth:`events` wants :class:`~chatproto.MessageBroadcast` and
    #: :class:`~chatproto.DirectMessageSent`, one per chat line. Read once, when
    #: the adapter builds its core (``ChatServer(message_events=...)``):
    #: ``False`` saves their cost on the hottest path.
    message_events: bool

    def listening(self, host: str, port: int) -> None:
        """The server accepts connections on ``host:port`` (the real port)."""

    def serving(self, counters: Callable[[], ServerCounters]) -> None:
        """The adapter built its core; ``counters()`` reads the core's totals.

        Called once, before any connection. ``counters`` is
        :meth:`chatproto.ChatServer.counters`: cheap to keep, O(connections)
        to call, and safe to call from another thread (a metrics endpoint's).
        """

    def connected(self, conn: ConnId, peer: str) -> None:
        """A connection was accepted from ``peer`` and given id ``conn``."""

    def refused(self, refusal: ConnectionRefused, peer: str) -> None:
        """A connection from ``peer`` was turned away (server full, shutting down)."""

    def accept_paused(self, error: OSError) -> None:
        """Accepting failed for lack of resources; the listener backs off and retries.

        Called once per episode, at its first failure.
        """

    def accept_resumed(self, failures: int) -> None:
        """Accepting works again, after ``failures`` failed attempts."""

    def events(self, events: list[ServerEvent]) -> None:
        """The core reported ``events`` (logins, messages, departures...)."""

    def signal_received(self, signum: int) -> None:
        """SIGINT or SIGTERM arrived (every one, before the adapter acts on it)."""

    def stopping(self, connections: int) -> None:
        """Shutdown began: ``connections`` are being told and closed."""


def wants_message_events(observer: ServerObserver | None) -> bool:
    """Whether a core serving ``observer`` should report every chat line."""
    return observer is not None and observer.message_events
