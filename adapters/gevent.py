"""chatproto on gevent: gevent's own server and sockets, no monkey-patching.

Plumbing only. ``gevent.server.StreamServer`` runs a reader greenlet per
connection that feeds the core; a writer greenlet per connection drains it; one
timer greenlet follows the core's deadline. After any feed,
:meth:`GeventServer._service` wakes the writers of the connections the core has
news for, so the lines many inputs produced for one recipient leave in one
``sendall``. A writer takes output from the core only when its previous
``sendall`` has returned, so a reader that stops reading leaves its backlog in
the core, where the slow-consumer cap applies.
"""

from __future__ import annotations

import math
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.server
import gevent.socket

from chatproto import ChatServer, CloseMode, ConnId, ServerConfig

from . import ServerObserver, wants_message_events

__all__ = ["GeventServer", "run"]

_NOW, _OPEN = CloseMode.NOW, CloseMode.OPEN
_RECV_SIZE = 65536


class _Connection:
    """The adapter's handles on one connection."""

    __slots__ = ("closed", "sock", "wake", "writer")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.wake = gevent.event.Event()
        # Set once the socket is shut down on our side; the reader then exits.
        self.closed = gevent.event.Event()
        self.writer: Any = None


class GeventServer:
    """Serves one :class:`ChatServer` with gevent. ``serve(sock)`` blocks."""

    def __init__(
        self, config: ServerConfig | None = None, observer: ServerObserver | None = None
    ) -> None:
        self.core = ChatServer(config, message_events=wants_message_events(observer))
        self.observer = observer
        self._conns: dict[ConnId, _Connection] = {}
        self._clock = time.monotonic
        self._timer_wake = gevent.event.Event()
        self._timer_at = math.inf
        self._stop = gevent.event.Event()
        self._all_closed = gevent.event.Event()

    # ------------------------------------------------------------ serving

    def serve(self, sock: socket.socket) -> None:
        """Accept on the listening ``sock`` until :meth:`shutdown`; then close all gracefully."""
        host, port = sock.getsockname()[:2]
        if self.observer is not None:
            self.observer.listening(str(host), int(port))
        listener = gevent.socket.socket(sock.family, sock.type, fileno=sock.detach())
        server = gevent.server.StreamServer(listener, self._connection)
        server.start()
        timer = gevent.spawn(self._timer)
        self._stop.wait()
        server.close()  # stop accepting; unlike stop(), leaves connections be
        self._feed(self.core.shutdown, self._clock())
        if self.core.connection_count:
            self._all_closed.wait()
        timer.kill()

    def shutdown(self) -> None:
        """Begin a graceful shutdown (call from inside the gevent hub's thread)."""
        self._stop.set()

    # -------------------------------------------------------- connections

    def _connection(self, sock: Any, peer: Any) -> None:
        """StreamServer's handler: this greenlet is the connection's reader."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        core, clock = self.core, self._clock
        conn = core.connection_made(clock())
        c = self._conns[conn] = _Connection(sock)
        if self.observer is not None:
            self.observer.connected(conn, f"{peer[0]}:{peer[1]}")
        c.writer = gevent.spawn(self._write, conn, c)
        self._service()
        try:
            while data := sock.recv(_RECV_SIZE):
                self._feed(core.receive_data, conn, data, clock())
            self._feed(core.receive_eof, conn, clock())
            c.closed.wait()  # the writer flushes, then shuts the socket down
        except OSError:
            pass
        finally:
            c.writer.kill(block=False)
            del self._conns[conn]
            sock.close()
            self._feed(core.connection_lost, conn, clock())
            if core.connection_count == 0 and core.is_shutting_down:
                self._all_closed.set()

    def _write(self, conn: ConnId, c: _Connection) -> None:
        core = self.core
        try:
            while True:
                data = core.data_to_send(conn)
                if data:
                    c.sock.sendall(data)
                    continue
                mode = core.close_mode(conn)
                if mode is not _OPEN:
                    self._shut(c, socket.SHUT_RDWR if mode is _NOW else socket.SHUT_WR)
                    return
                c.wake.wait()
                c.wake.clear()
        except OSError:
            self._shut(c, socket.SHUT_RDWR)

    def _shut(self, c: _Connection, how: int) -> None:
        """Shut our side down: SHUT_WR sends FIN after the data, SHUT_RDWR wakes the reader."""
        try:
            c.sock.shutdown(how)
        except OSError:
            pass
        c.closed.set()

    # ------------------------------------------------------------- timers

    def _timer(self) -> None:
        core = self.core
        while True:
            deadline = core.next_deadline()
            self._timer_at = math.inf if deadline is None else deadline
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
            if self._timer_wake.wait(timeout):
                self._timer_wake.clear()
                continue
            self._feed(core.handle_timeout, self._clock())

    # ---------------------------------------------------------- the core

    def _feed(self, method: Callable[..., list[Any]], *args: Any) -> None:
        """Call a core input method, report its events, act on its news."""
        events = method(*args)
        if events and self.observer is not None:
            self.observer.events(events)
        self._service()

    def _service(self) -> None:
        core = self.core
        conns = self._conns
        for conn in core.take_ready():
            c = conns.get(conn)
            if c is None:
                continue
            if core.close_mode(conn) is _NOW:
                c.writer.kill(block=False)
                self._shut(c, socket.SHUT_RDWR)
            else:
                c.wake.set()
        deadline = core.next_deadline()
        if deadline is not None and deadline < self._timer_at:
            self._timer_at = deadline
            self._timer_wake.set()


def run(
    sock: socket.socket,
    config: ServerConfig | None = None,
    *,
    observer: ServerObserver | None = None,
) -> None:
    """Serve on the listening ``sock`` until SIGINT or SIGTERM, then shut down gracefully."""
    server = GeventServer(config, observer)
    handlers = [gevent.signal_handler(s, server.shutdown) for s in (signal.SIGINT, signal.SIGTERM)]
    try:
        server.serve(sock)
    finally:
        for handler in handlers:
            handler.cancel()
