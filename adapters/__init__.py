"""Adapters: the chatproto core wired to real TCP sockets, one module per runtime.

Installed, this folder is ``chatproto.adapters``: ``chatproto.adapters.threading``
(stdlib only), ``chatproto.adapters.anyio`` (asyncio, uvloop or trio) and
``chatproto.adapters.gevent``. The three are twins: the same names in the same
order, each holding only socket, task and timer plumbing. Every protocol
decision (what to answer, whom to deliver to, when to close) is the core's
:class:`chatproto.ChatServer`; docs/adapters.md describes the contract.

Importing this package imports no runtime; import the module you need.
"""

from __future__ import annotations

from typing import Protocol

from chatproto import ConnId, ServerEvent

__all__ = ["BACKENDS", "ServerObserver", "wants_message_events"]

#: The backends, by the name ``chatproto-serve --backend`` takes.
BACKENDS = ("threading", "anyio", "gevent")


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

    def connected(self, conn: ConnId, peer: str) -> None:
        """A connection was accepted from ``peer`` and given id ``conn``."""

    def events(self, events: list[ServerEvent]) -> None:
        """The core reported ``events`` (logins, messages, departures...)."""


def wants_message_events(observer: ServerObserver | None) -> bool:
    """Whether a core serving ``observer`` should report every chat line."""
    return observer is not None and observer.message_events
