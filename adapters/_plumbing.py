"""What every data path does the same way: the core's side of an adapter.

Owns: feeding the core and reporting its events to the observer, handing its
news (read or not, write, close, timer) to the data path, turning refused
connections away, backing off when accept fails for lack of resources, and the
socket options every connection gets. Never knows a runtime: each data path
(threading, gevent, asyncio transports, anyio streams) subclasses
:class:`CoreLink` and supplies the four things that differ between runtimes.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Any, Final

from chatproto import ChatServer, CloseMode, ConnectionRefused, ConnId, ServerConfig

from . import ServerObserver, wants_message_events

__all__ = [
    "ACCEPT_BATCH",
    "RECV_SIZE",
    "AcceptBackoff",
    "CoreLink",
    "format_peer",
    "is_resource_error",
    "prepare",
    "turn_away",
]

#: The most read from one connection at a time, before the others get a turn
#: (docs/protocol.md §16.4). A socket's receive buffer is about this big.
RECV_SIZE: Final = 65536
#: Connections accepted in one go before the others get a turn.
ACCEPT_BATCH: Final = 64
#: What a failed accept means "no room for one more right now", not a bug.
_RESOURCE_ERRORS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: Back-off after a failed accept: doubles from the first to the last.
_BACKOFF_FIRST: Final = 0.05
_BACKOFF_LAST: Final = 1.0
_NOW: Final = CloseMode.NOW


def format_peer(peer: Any) -> str:
    """``host:port`` for a socket address (``[host]:port`` for IPv6)."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return str(peer)


def prepare(sock: socket.socket) -> None:
    """Socket options for every served connection.

    TCP_NODELAY: the core batches lines itself; nothing may wait for Nagle's
    algorithm (asyncio, for one, leaves it off for create_server sockets).
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def turn_away(sock: socket.socket, refusal: ConnectionRefused, *, close: bool = True) -> None:
    """Write the refusal line without blocking, then close at once (§13).

    What the client already sent is read and discarded first, so that the
    close is a FIN, not a reset that could destroy the line in flight. Never
    raises: a refused client that is already gone is simply gone.
    ``close=False`` leaves the closing to the caller (a stream that owns the
    socket).
    """
    try:
        sock.setblocking(False)
        sock.send(refusal.data)
        sock.recv(RECV_SIZE)
    except OSError:
        pass
    finally:
        if close:
            sock.close()


def is_resource_error(exc: OSError) -> bool:
    """Whether a failed accept means the process is out of descriptors or memory."""
    return exc.errno in _RESOURCE_ERRORS


class AcceptBackoff:
    """Accepting failed for lack of resources: wait, retry, tell once per episode.

    An episode starts with the first failure and ends with the next accept
    that works; the observer hears of both ends and nothing in between, so a
    connection flood cannot turn into a flood of log lines.
    """

    __slots__ = ("_delay", "_failures", "_observer")

    def __init__(self, observer: ServerObserver | None) -> None:
        self._observer = observer
        self._delay = 0.0
        self._failures = 0

    def failed(self, exc: OSError) -> float:
        """Accept failed with ``exc``: how long to wait before trying again."""
        self._failures += 1
        if self._failures == 1 and self._observer is not None:
            self._observer.accept_paused(exc)
        self._delay = min(_BACKOFF_LAST, max(_BACKOFF_FIRST, self._delay * 2))
        return self._delay

    def succeeded(self) -> None:
        """An accept worked: the episode, if any, is over."""
        if self._failures:
            if self._observer is not None:
                self._observer.accept_resumed(self._failures)
            self._failures = 0
            self._delay = 0.0


class CoreLink:
    """A :class:`ChatServer` and what every adapter does with it.

    A data path subclasses it and implements :meth:`set_reading`,
    :meth:`wake_writer`, :meth:`abort` and :meth:`set_timer`; :meth:`feed`
    and :meth:`service` then do the rest, the same way on every runtime.
    """

    def __init__(self, config: ServerConfig | None, observer: ServerObserver | None) -> None:
        self.core = ChatServer(config, message_events=wants_message_events(observer))
        self.observer = observer
        self.backoff = AcceptBackoff(observer)

    # ------------------------------------------------ what a data path does

    def set_reading(self, conn: ConnId, read: bool) -> None:
        """Stop (``False``) or resume reading ``conn``, as the core says."""
        raise NotImplementedError

    def wake_writer(self, conn: ConnId) -> None:
        """``conn`` has output or a close decision: make sure its writer runs."""
        raise NotImplementedError

    def abort(self, conn: ConnId) -> None:
        """Close ``conn`` at once, writing nothing more."""
        raise NotImplementedError

    def set_timer(self, deadline: float | None) -> None:
        """Wake at ``deadline`` (the core's clock) to call :meth:`on_timer`; ``None``: never."""
        raise NotImplementedError

    # ------------------------------------------------------------ the core

    def feed(self, method: Callable[..., list[Any]], *args: Any) -> None:
        """Call a core input method, report its events, act on its news."""
        events = method(*args)
        if events and self.observer is not None:
            self.observer.events(events)
        self.service()

    def service(self) -> None:
        """Act on the core's news: reading, writers, closes, the timer."""
        core = self.core
        changes = core.take_reading_changes()
        if changes:
            for conn, read in changes:
                self.set_reading(conn, read)
        for conn in core.take_ready():
            if core.close_mode(conn) is _NOW:
                self.abort(conn)
            else:
                self.wake_writer(conn)
        if core.deadline_moved():
            self.set_timer(core.next_deadline())

    def drained(self) -> None:
        """After writing outside :meth:`service`: a drain may have made held input due."""
        if self.core.deadline_moved():
            self.set_timer(self.core.next_deadline())

    def on_timer(self, now: float) -> None:
        """The timer fired: run what is due, then set it again."""
        events = self.core.handle_timeout(now)
        if events and self.observer is not None:
            self.observer.events(events)
        self.service()
        self.set_timer(self.core.next_deadline())

    def admit(
        self, now: float, sock: socket.socket, peer: Any, *, close: bool = True
    ) -> ConnId | None:
        """A connection was accepted: its id, or ``None`` once it was turned away.

        A connection turned away is written to and closed (``close=False``:
        the caller closes it) and never costs a thread, task or buffer.
        """
        self.backoff.succeeded()
        admitted = self.core.accept(now)
        if isinstance(admitted, ConnectionRefused):
            turn_away(sock, admitted, close=close)
            if self.observer is not None:
                self.observer.refused(admitted, format_peer(peer))
            return None
        prepare(sock)
        return admitted

    def announce(self, conn: ConnId, peer: Any) -> None:
        """Tell the observer that ``conn`` (from ``peer``) is being served."""
        if self.observer is not None:
            self.observer.connected(conn, format_peer(peer))

    def give_back(self, conn: ConnId, now: float, sock: socket.socket, peer: Any) -> None:
        """The data path cannot serve ``conn`` after all (no thread): refuse it."""
        refusal = self.core.refuse(conn, now)
        turn_away(sock, refusal)
        if self.observer is not None:
            self.observer.refused(refusal, format_peer(peer))

    @property
    def finished(self) -> bool:
        """Shutting down, and every connection has been reported lost."""
        return self.core.is_shutting_down and self.core.connection_count == 0
