"""chatproto on threads (stdlib only): a reader thread per connection, one writer thread.

Plumbing only. Reader threads block in ``recv`` and feed the core under one
lock. Every send is non-blocking (``MSG_DONTWAIT``): news for a few
connections is sent by the reader that caused it (no hand-off on a round
trip); bigger batches go to the single writer thread, which drains them, parks
the sockets whose kernel buffer is full in a selector until they can take
more, and runs the core's timer. So a client that stops reading never blocks
another thread, and while the writer is busy the readers' lines pile up per
recipient and leave in one ``send`` (the batching that makes this fast).
"""

from __future__ import annotations

import math
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from chatproto import ChatServer, CloseMode, ConnId, ServerConfig

from . import ServerObserver, wants_message_events

__all__ = ["ThreadingServer", "run"]

_NOW, _OPEN, _AFTER_FLUSH = CloseMode.NOW, CloseMode.OPEN, CloseMode.AFTER_FLUSH
_RECV_SIZE = 65536
#: News for at most this many connections is sent by the thread that caused
#: it; more goes to the writer thread (see _service).
_INLINE_MAX = 16
# Non-blocking sends on blocking sockets: readers keep blocking recv calls.
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)


class _Connection:
    """The adapter's handles on one connection."""

    __slots__ = ("closed", "sock", "unsent")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        # Set once the socket is shut down on our side; the reader then exits.
        self.closed = threading.Event()
        # Bytes taken from the core that the kernel has not accepted yet.
        self.unsent: memoryview | None = None


class ThreadingServer:
    """Serves one :class:`ChatServer` with threads. ``serve(sock)`` blocks."""

    def __init__(
        self, config: ServerConfig | None = None, observer: ServerObserver | None = None
    ) -> None:
        if not _DONTWAIT:
            raise RuntimeError("the threading adapter needs MSG_DONTWAIT (Linux, BSD, macOS)")
        self.core = ChatServer(config, message_events=wants_message_events(observer))
        self.observer = observer
        self._conns: dict[ConnId, _Connection] = {}
        self._lock = threading.Lock()
        self._clock = time.monotonic
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._woken = False
        #: Connections with news for the writer thread.
        self._pending: list[ConnId] = []
        #: The deadline the writer thread sleeps until.
        self._timer_at = math.inf
        self._stop = threading.Event()
        self._all_closed = threading.Event()

    # ------------------------------------------------------------ serving

    def serve(self, sock: socket.socket) -> None:
        """Accept on the listening ``sock`` until :meth:`shutdown`; then close all gracefully."""
        host, port = sock.getsockname()[:2]
        if self.observer is not None:
            self.observer.listening(str(host), int(port))
        writer = threading.Thread(target=self._write, name="chatproto-writer", daemon=True)
        writer.start()
        self._accept(sock)
        sock.close()
        with self._lock:
            self._feed(self.core.shutdown, self._clock())
            if self.core.connection_count == 0:
                self._all_closed.set()
        self._all_closed.wait()
        self._stop.set()
        self._wake()
        writer.join()

    def shutdown(self) -> None:
        """Begin a graceful shutdown; safe from any thread or a signal handler."""
        self._stop.set()

    def _accept(self, listener: socket.socket) -> None:
        listener.settimeout(0.2)  # to notice shutdown(); accepts are not delayed
        while not self._stop.is_set():
            try:
                sock, peer = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # out of file descriptors and the like
                self._stop.wait(0.05)
                continue
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                conn = self.core.connection_made(self._clock())
                c = self._conns[conn] = _Connection(sock)
                if self.observer is not None:
                    self.observer.connected(conn, f"{peer[0]}:{peer[1]}")
                self._service()
                self._wake()  # the timer may need to move earlier
            threading.Thread(target=self._read, args=(conn, c), daemon=True).start()

    # -------------------------------------------------------- connections

    def _read(self, conn: ConnId, c: _Connection) -> None:
        core, lock, clock = self.core, self._lock, self._clock
        try:
            while data := c.sock.recv(_RECV_SIZE):
                with lock:
                    self._feed(core.receive_data, conn, data, clock())
            with lock:
                self._feed(core.receive_eof, conn, clock())
            c.closed.wait()  # the writer flushes, then shuts the socket down
        except OSError:
            pass
        finally:
            with lock:  # the writer never sends on a closed (or reused) descriptor
                del self._conns[conn]
                if self._selector.get_map().get(c.sock) is not None:
                    self._selector.unregister(c.sock)
                c.sock.close()
                self._feed(core.connection_lost, conn, clock())
                if core.connection_count == 0 and core.is_shutting_down:
                    self._all_closed.set()

    def _write(self) -> None:
        """The writer thread: sends, parks full sockets, runs the timer."""
        core, lock = self.core, self._lock
        while not (self._stop.is_set() and self._all_closed.is_set()):
            deadline = core.next_deadline()
            self._timer_at = math.inf if deadline is None else deadline
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
            writable = []
            for key, _ in self._selector.select(timeout):
                if key.fileobj is self._wake_r:
                    self._wake_r.recv(4096)
                else:
                    writable.append(ConnId(key.data))
            with lock:
                self._woken = False
                for conn in writable:
                    c = self._conns.get(conn)
                    # Another thread may have shut it down since the select.
                    if c is not None and self._selector.get_map().get(c.sock) is not None:
                        self._selector.unregister(c.sock)
                        self._flush(conn)
                deadline = core.next_deadline()
                if deadline is not None and deadline <= self._clock():
                    self._feed(core.handle_timeout, self._clock())
                pending, self._pending = self._pending, []
                for conn in pending + core.take_ready():
                    self._flush(conn)

    def _flush(self, conn: ConnId) -> None:
        """Send what the core has for ``conn`` until the kernel pushes back (lock held)."""
        c = self._conns.get(conn)
        if c is None:
            return
        core = self.core
        if core.close_mode(conn) is _NOW:
            self._shut(c, socket.SHUT_RDWR)  # also after an earlier SHUT_WR
            return
        if c.closed.is_set():
            return
        if c.unsent is not None and self._selector.get_map().get(c.sock) is not None:
            return  # parked: flushed when writable
        while True:
            pending = c.unsent
            if pending is None:
                data = core.data_to_send(conn)
                if not data:
                    break
                pending = memoryview(data)
            try:
                sent = c.sock.send(pending, _DONTWAIT)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._shut(c, socket.SHUT_RDWR)
                return
            if sent < len(pending):
                c.unsent = pending[sent:]
                self._selector.register(c.sock, selectors.EVENT_WRITE, conn)
                return
            c.unsent = None
        if core.close_mode(conn) is _AFTER_FLUSH:
            self._shut(c, socket.SHUT_WR)

    def _shut(self, c: _Connection, how: int) -> None:
        """Shut our side down: SHUT_WR sends FIN after the data, SHUT_RDWR wakes the reader."""
        if self._selector.get_map().get(c.sock) is not None:
            self._selector.unregister(c.sock)
        c.unsent = None
        try:
            c.sock.shutdown(how)
        except OSError:
            pass
        c.closed.set()

    # ---------------------------------------------------------- the core

    def _feed(self, method: Callable[..., list[Any]], *args: Any) -> None:
        """Call a core input method (lock held), report its events, act on its news."""
        events = method(*args)
        if events and self.observer is not None:
            self.observer.events(events)
        self._service()

    def _service(self) -> None:
        # Few connections with news (a reply, a small room): sending them now,
        # on this thread, saves a hand-off to the writer, which is most of a
        # round trip's latency. Many (a broadcast to a big room): the writer
        # takes them, and while it sends, more lines gather per recipient.
        ready = self.core.take_ready()
        if not ready:
            return
        if len(ready) <= _INLINE_MAX and not self._woken:
            for conn in ready:
                self._flush(conn)
            deadline = self.core.next_deadline()
            if deadline is None or deadline >= self._timer_at:
                return
        else:
            self._pending += ready
        # The writer thread acts on the rest; wake it once per batch.
        if not self._woken:
            self._woken = True
            self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"!")
        except OSError:
            pass  # the pair is full: the writer is awake anyway


def run(
    sock: socket.socket,
    config: ServerConfig | None = None,
    *,
    observer: ServerObserver | None = None,
) -> None:
    """Serve on the listening ``sock`` until SIGINT or SIGTERM, then shut down gracefully."""
    server = ThreadingServer(config, observer)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.shutdown()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # Thousands of reader threads: they need little stack.
    threading.stack_size(256 * 1024)
    # A reader woken by its socket waits for the interpreter lock up to the
    # switch interval (5 ms by default) while another thread runs Python code;
    # each request/response hop pays that. 0.5 ms keeps round trips short at
    # the cost of more frequent switches (we own this process: run() is the
    # server's main).
    sys.setswitchinterval(0.0005)
    server.serve(sock)
