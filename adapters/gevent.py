"""chatproto on gevent: callbacks on gevent's event loop, no greenlet per connection.

Plumbing only; every protocol decision is the core's. Each connection is a
non-blocking socket with an I/O watcher on the hub's loop (libev or libuv): a
readable socket is read once (one bounded chunk) per loop iteration and fed to
the core, so one flooding client gets one chunk per turn like everyone else,
and the timer, the writers and signals always get theirs. One callback per
loop iteration (``run_callback``) drains every connection the core has news
for, so the lines that all of an iteration's reads produced for one recipient
leave in one ``send``; a socket that cannot take more gets a write watcher,
and its backlog stays in the core, where the slow-consumer limits apply. A
connection whose input the core does not take has its read watcher stopped.
A graceful close sends our FIN after the output and reads until the peer's
(bounded by the core's ``close_timeout``).

No greenlet per connection and no monkey-patching: a connection costs a
socket, one or two watchers and a few small objects, which is what lets one
process hold tens of thousands. The hub's greenlet runs the callbacks; the
main greenlet only waits for the shutdown.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event

from chatproto import BusDial, CloseMode, ClusterConfig, ConnId, ServerConfig, ServerEvent

from . import ServerObserver
from ._plumbing import RECV_SIZE, DrainPass, prepare

if TYPE_CHECKING:
    import ssl

    from ._tls import ServerTls

__all__ = ["GeventServer", "run"]

_OPEN, _AFTER_FLUSH, _NOW = CloseMode.OPEN, CloseMode.AFTER_FLUSH, CloseMode.NOW
_READ, _WRITE = 1, 2


class _Connection:
    """One connection: a socket, its watchers, and what is in flight."""

    __slots__ = (
        "conn",
        "fin_sent",
        "held",
        "peer_done",
        "reader",
        "receive",
        "sock",
        "tls",
        "unsent",
        "writer",
    )

    def __init__(
        self,
        conn: ConnId,
        sock: socket.socket,
        reader: Any,
        receive: Callable[[ConnId, bytes, float], list[ServerEvent]],
        tls: ServerTls | None = None,
    ) -> None:
        self.conn = conn
        self.sock = sock
        self.reader = reader
        #: Its TLS stream, on a TLS server: bytes pass through it both ways.
        self.tls = tls
        #: Where its bytes go: the core (a client), or the RESP parser (Redis).
        self.receive = receive
        #: The write watcher, while the socket cannot take more.
        self.writer: Any = None
        #: Bytes taken from the core that the kernel has not accepted yet.
        self.unsent: memoryview | None = None
        #: The core does not take this connection's input now.
        self.held = False
        self.fin_sent = False
        self.peer_done = False


class GeventServer(DrainPass):
    """Serves one :class:`~chatproto.ChatServer` with gevent. ``serve(sock)`` blocks."""

    # The parameters every server class takes (as CoreLink's): the data paths are twins.
    def __init__(
        self,
        config: ServerConfig | None = None,
        observer: ServerObserver | None = None,
        *,
        cluster: ClusterConfig | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(config, observer, cluster, tls)
        self.loop = gevent.get_hub().loop
        self.clock = time.monotonic
        self.conns: dict[ConnId, _Connection] = {}
        self.listener: socket.socket | None = None
        self.acceptor: Any = None
        self.timer: Any = None
        self.stop = gevent.event.Event()
        self.all_closed: gevent.event.Event = gevent.event.Event()
        #: Cluster mode: the watchers of a connect to Redis in progress.
        self.dialing: dict[ConnId, tuple[Any, Any]] = {}

    # ------------------------------------------------------------ serving

    def serve(self, sock: socket.socket) -> None:
        """Accept on the listening ``sock`` until :meth:`shutdown`; then close all gracefully."""
        host, port = sock.getsockname()[:2]
        if self.observer is not None:
            self.observer.listening(str(host), int(port))
        sock.setblocking(False)
        self.listener = sock
        self.acceptor = self.loop.io(sock.fileno(), _READ)
        self.acceptor.start(self._accept)
        self.begin()
        self.stop.wait()
        self.begin_shutdown()
        sock.close()
        self.all_closed.wait()
        if self.timer is not None:
            self.timer.stop()

    def shutdown(self) -> None:
        """Begin a graceful shutdown (call from inside the gevent hub's thread)."""
        self.stop.set()

    def stop_accepting(self) -> None:
        if self.listener is not None:
            self.acceptor.stop()
            self.acceptor.close()
            self.listener = None

    # ----------------------------------------------------------- accepting

    def _accept(self) -> None:
        if self.listener is None:
            return
        served = self.take_accepted(self.listener)
        for conn, sock in served:
            reader = self.loop.io(sock.fileno(), _READ)
            tls = self.tls_for(conn)
            c = self.conns[conn] = _Connection(conn, sock, reader, self.core.receive_data, tls)
            reader.start(self._on_readable, c)
        if served:
            self.service()

    def pause_accepting(self, delay: float) -> None:
        self.acceptor.stop()
        retry = self.loop.timer(delay)
        retry.start(self._resume_accepting, retry)

    def _resume_accepting(self, retry: Any) -> None:
        retry.close()
        if self.listener is not None:
            self.acceptor.start(self._accept)
            self._accept()

    # -------------------------------------------------------- connections

    def _on_readable(self, c: _Connection) -> None:
        try:
            data = c.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:
            self._close(c)
            return
        tls = c.tls
        if data:
            if tls is not None:
                try:
                    data = tls.receive(data)
                except OSError:  # ssl.SSLError: the peer broke TLS
                    self._close(c)
                    return
            if data:
                # The hot path: CoreLink.feed inlined.
                events = c.receive(c.conn, data, self.clock())
                if events and self.observer is not None:
                    self.observer.events(events)
                self.service(c.conn)
            if tls is not None:
                if tls.flush_due:
                    self._flush(c)
                if tls.peer_closed and c.conn in self.conns:
                    self._end_of_stream(c)  # its close_notify
            return
        if tls is not None:
            tls.receive_eof()
        self._end_of_stream(c)

    def _end_of_stream(self, c: _Connection) -> None:
        c.reader.stop()
        if c.fin_sent:
            self._close(c)  # both sides done
        elif not c.peer_done:
            c.peer_done = True
            self.feed(self.core.receive_eof, c.conn, self.clock())
            if c.tls is not None:
                self._flush(c)  # a handshake that can no longer finish is done

    def _connected(self, dial: BusDial, sock: socket.socket, timed_out: bool = False) -> None:
        """Cluster mode: the connect to Redis finished (or timed out)."""
        watchers = self.dialing.pop(dial.conn, ())
        for watcher in watchers:
            watcher.close()
        error = 1 if timed_out else sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error or self.cluster is None:
            sock.close()
            self.feed(self.core.connection_lost, dial.conn, self.clock())
            return
        prepare(sock)
        reader = self.loop.io(sock.fileno(), _READ)
        c = self.conns[dial.conn] = _Connection(dial.conn, sock, reader, self.bus_receive)
        reader.start(self._on_readable, c)
        self.feed(self.cluster.bus_connected, dial.conn, self.clock())

    def _on_writable(self, c: _Connection) -> None:
        c.writer.stop()
        self._flush(c)
        self.drained()

    def flush(self, conn: ConnId, now: float | None = None) -> None:
        c = self.conns.get(conn)
        if c is not None:
            self._flush(c, now)

    def flush_all(self, conns: list[ConnId], now: float) -> None:
        get, flush = self.conns.get, self._flush
        for conn in conns:
            c = get(conn)
            if c is not None:
                flush(c, now)

    def _flush(self, c: _Connection, now: float | None = None) -> None:
        """Send what the core has for ``c`` until the kernel pushes back; close when told."""
        core = self.core
        mode = core.close_mode(c.conn)
        if mode is _NOW:
            self._close(c)
            return
        if c.fin_sent or (c.writer is not None and c.writer.active):
            return  # done, or waiting to be writable
        if now is None:
            now = self.clock()
        last = False
        while not last:
            pending = c.unsent
            if pending is None:
                if c.tls is None:
                    data = core.data_to_send(c.conn, now=now, max_bytes=RECV_SIZE)
                    last = len(data) < RECV_SIZE  # less than asked for: the queue is empty
                else:
                    data = c.tls.take(core, c.conn, now, RECV_SIZE)
                if not data:
                    break
                pending = memoryview(data)
            try:
                sent = c.sock.send(pending)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._close(c)
                return
            if sent < len(pending):
                c.unsent = pending[sent:]
                if c.writer is None:
                    c.writer = self.loop.io(c.sock.fileno(), _WRITE)
                c.writer.start(self._on_writable, c)
                return
            c.unsent = None
        if mode is _AFTER_FLUSH and (c.tls is None or c.tls.done):
            # Our FIN after the data; the peer's FIN (or NOW) ends it.
            c.fin_sent = True
            if c.peer_done:
                self._close(c)
                return
            try:
                c.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self._close(c)

    def _close(self, c: _Connection) -> None:
        """The socket is done: close it and tell the core."""
        if self.conns.pop(c.conn, None) is None:
            return
        c.reader.close()
        if c.writer is not None:
            c.writer.close()
        c.sock.close()
        self.feed(self.core.connection_lost, c.conn, self.clock())
        self.check_finished()

    # ---------------------------------------------------------- the core

    def set_reading(self, conn: ConnId, read: bool) -> None:
        c = self.conns.get(conn)
        if c is None:
            return
        c.held = not read
        if read and not c.peer_done:
            c.reader.start(self._on_readable, c)
        else:
            c.reader.stop()

    def set_timer(self, deadline: float | None) -> None:
        if self.timer is not None:
            self.timer.close()
            self.timer = None
        if deadline is not None:
            self.timer = self.loop.timer(max(0.0, deadline - self.clock()))
            self.timer.start(self._on_timer)

    def _on_timer(self) -> None:
        if self.timer is not None:
            self.timer.close()
            self.timer = None
        self.on_timer(self.clock())

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.loop.run_callback(callback)

    def dial(self, dial: BusDial) -> None:
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                dial.host, dial.port, type=socket.SOCK_STREAM
            )[0]
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            sock.connect_ex(address)
        except OSError:
            self.feed(self.core.connection_lost, dial.conn, self.clock())
            return
        writable = self.loop.io(sock.fileno(), _WRITE)
        deadline = self.loop.timer(dial.timeout)
        self.dialing[dial.conn] = (writable, deadline)
        writable.start(self._connected, dial, sock)
        deadline.start(self._connected, dial, sock, True)

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        timer = self.loop.timer(delay)

        def fire() -> None:
            timer.close()
            callback()

        timer.start(fire)


# The twins' entry point: the same parameters in every data path.
def run(
    sock: socket.socket,
    config: ServerConfig | None = None,
    *,
    observer: ServerObserver | None = None,
    cluster: ClusterConfig | None = None,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Serve on the listening ``sock`` until SIGINT or SIGTERM, then shut down gracefully.

    With ``tls`` (a server context), every client connection speaks TLS.
    """
    server = GeventServer(config, observer, cluster=cluster, tls=tls)

    def on_signal(signum: int) -> None:
        if observer is not None:
            observer.signal_received(signum)
        server.shutdown()

    handlers = [gevent.signal_handler(s, on_signal, s) for s in (signal.SIGINT, signal.SIGTERM)]
    try:
        server.serve(sock)
    finally:
        for handler in handlers:
            handler.cancel()
