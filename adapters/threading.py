"""chatproto on threads (stdlib only): a reader thread per connection, one writer thread.

Plumbing only; every protocol decision is the core's. Reader threads block in
``recv`` and feed the core under one lock; a reader waits while the core does
not take its connection's input, and after a full chunk it lets the others
have the lock before it reads again. Every send is non-blocking
(``MSG_DONTWAIT``): news for a few connections is sent by the thread that
caused it (no hand-off on a round trip); bigger batches go to the single
writer thread, which drains them, parks the sockets whose kernel buffer is
full in a selector until they can take more, and runs the core's timer. So a
client that stops reading never blocks another thread, and while the writer is
busy the readers' lines pile up per recipient and leave in one ``send``.

A connection turned away (server full, or no thread to be had) is written to
and closed by the accepting thread; it never gets a thread of its own.
"""

from __future__ import annotations

import selectors
import signal
import socket
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Final

from chatproto import BusDial, CloseMode, ClusterConfig, ConnId, ServerConfig

from . import ServerObserver
from ._plumbing import RECV_SIZE, CoreLink, is_resource_error, prepare

if TYPE_CHECKING:
    import ssl

    from ._tls import ServerTls

__all__ = ["ThreadingServer", "run"]

_NOW, _AFTER_FLUSH = CloseMode.NOW, CloseMode.AFTER_FLUSH
#: News for at most this many connections is sent by the thread that caused
#: it; more goes to the writer thread (see service).
_INLINE_MAX: Final = 16
# Non-blocking sends on blocking sockets: readers keep blocking recv calls.
_DONTWAIT: Final = getattr(socket, "MSG_DONTWAIT", 0)


class _Connection:
    """The adapter's handles on one connection."""

    __slots__ = ("closed", "may_read", "sock", "tls", "unsent")

    def __init__(self, sock: socket.socket, tls: ServerTls | None = None) -> None:
        self.sock = sock
        #: Its TLS stream, on a TLS server: bytes pass through it both ways.
        self.tls = tls
        # Set once the socket is shut down on our side; the reader then exits.
        self.closed = threading.Event()
        # Set while the core takes this connection's input.
        self.may_read = threading.Event()
        self.may_read.set()
        # Bytes taken from the core that the kernel has not accepted yet.
        self.unsent: memoryview | None = None


class ThreadingServer(CoreLink):
    """Serves one :class:`~chatproto.ChatServer` with threads. ``serve(sock)`` blocks."""

    # The parameters every server class takes (as CoreLink's): the data paths are twins.
    def __init__(
        self,
        config: ServerConfig | None = None,
        observer: ServerObserver | None = None,
        *,
        cluster: ClusterConfig | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if not _DONTWAIT:
            raise RuntimeError("the threading adapter needs MSG_DONTWAIT (Linux, BSD, macOS)")
        super().__init__(config, observer, cluster, tls)
        self.clock = time.monotonic
        self.conns: dict[ConnId, _Connection] = {}
        self.lock = threading.Lock()
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        self.woken = False
        #: Connections with news for the writer thread.
        self.pending: list[ConnId] = []
        self.stop = threading.Event()
        self.all_closed: threading.Event = threading.Event()

    # ------------------------------------------------------------ serving

    def serve(self, sock: socket.socket) -> None:
        """Accept on the listening ``sock`` until :meth:`shutdown`; then close all gracefully."""
        host, port = sock.getsockname()[:2]
        if self.observer is not None:
            self.observer.listening(str(host), int(port))
        writer = threading.Thread(target=self._write, name="chatproto-writer", daemon=True)
        writer.start()
        with self.lock:
            self.begin()
        self._accept(sock)
        sock.close()
        with self.lock:
            self.begin_shutdown()
        self.all_closed.wait()
        self._wake()
        writer.join()

    def shutdown(self) -> None:
        """Begin a graceful shutdown; safe from any thread or a signal handler."""
        self.stop.set()

    def stop_accepting(self) -> None:
        pass  # the accept loop has ended already: serve() shuts down after it

    # ----------------------------------------------------------- accepting

    def _accept(self, listener: socket.socket) -> None:
        listener.settimeout(0.2)  # to notice shutdown(); accepts are not delayed
        while not self.stop.is_set():
            try:
                sock, peer = listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if is_resource_error(exc):
                    with self.lock:
                        delay = self.backoff.failed(exc)
                    self.stop.wait(delay)
                continue
            sock.settimeout(None)
            # The lock is held until the connection is announced: its reader
            # starts now but feeds nothing (and reports nothing) before that.
            with self.lock:
                conn = self.admit(self.clock(), sock, peer)
                if conn is None:
                    continue  # turned away
                c = self.conns[conn] = _Connection(sock, self.tls_for(conn))
                reader = threading.Thread(target=self._read, args=(conn, c), daemon=True)
                try:
                    reader.start()
                except RuntimeError:
                    # No thread to be had (a task limit): refuse this one, go on.
                    del self.conns[conn]
                    self.give_back(conn, self.clock(), sock, peer)
                    continue
                self.announce(conn, peer)
                self.service()

    # -------------------------------------------------------- connections

    def _read(self, conn: ConnId, c: _Connection) -> None:
        core, lock, clock, tls = self.core, self.lock, self.clock, c.tls
        receive = self.bus_receive if conn == self.bus_conn else core.receive_data
        try:
            while True:
                if not c.may_read.is_set():  # is_set takes no lock: the common case
                    c.may_read.wait()  # while the core does not take its input
                data = c.sock.recv(RECV_SIZE)
                if not data:
                    break
                with lock:
                    if tls is None:
                        self.feed(receive, conn, data, clock())
                    elif not self._receive_tls(conn, tls, data):
                        break  # the peer's close_notify: its end of stream
                if len(data) == RECV_SIZE:
                    time.sleep(0)  # more is waiting: the others get the lock first
            with lock:
                self.feed(core.receive_eof, conn, clock())
                if tls is not None:
                    tls.receive_eof()
                    self._flush(conn)  # a handshake that can no longer finish is done
            c.closed.wait()  # the writer flushes, then shuts the socket down
        except OSError:
            pass
        finally:
            with lock:  # the writer never sends on a closed (or reused) descriptor
                del self.conns[conn]
                if self.selector.get_map().get(c.sock) is not None:
                    self.selector.unregister(c.sock)
                c.sock.close()
                self.feed(core.connection_lost, conn, clock())
                self.check_finished()

    def _receive_tls(self, conn: ConnId, tls: ServerTls, data: bytes) -> bool:
        """Decrypt ``data`` and feed the core (lock held); ``False`` at the peer's close_notify."""
        plain = tls.receive(data)  # ssl.SSLError (an OSError) ends the connection
        if plain:
            self.feed(self.core.receive_data, conn, plain, self.clock())
        if tls.flush_due:
            self._flush(conn)
        return not tls.peer_closed

    def _dial_thread(self, dial: BusDial) -> None:
        """Cluster mode: connect to Redis, then read it like a client (its own thread)."""
        try:
            sock = socket.create_connection((dial.host, dial.port), timeout=dial.timeout)
        except OSError:
            with self.lock:
                self.feed(self.core.connection_lost, dial.conn, self.clock())
            return
        sock.settimeout(None)
        prepare(sock)
        assert self.cluster is not None
        with self.lock:
            c = self.conns[dial.conn] = _Connection(sock)
            self.feed(self.cluster.bus_connected, dial.conn, self.clock())
        self._read(dial.conn, c)

    def _write(self) -> None:
        """The writer thread: sends, parks full sockets, runs the timer."""
        core, lock = self.core, self.lock
        while not (self.stop.is_set() and self.all_closed.is_set()):
            with lock:
                deadline = core.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.clock())
            writable = []
            for key, _ in self.selector.select(timeout):
                if key.fileobj is self.wake_r:
                    self.wake_r.recv(4096)
                else:
                    writable.append(ConnId(key.data))
            with lock:
                self.woken = False
                for conn in writable:
                    c = self.conns.get(conn)
                    # Another thread may have shut it down since the select.
                    if c is not None and self.selector.get_map().get(c.sock) is not None:
                        self.selector.unregister(c.sock)
                        self._flush(conn)
                deadline = core.next_deadline()
                if deadline is not None and deadline <= self.clock():
                    self.on_timer(self.clock())
                pending, self.pending = self.pending, []
                now = self.clock()
                for conn in pending:
                    self._flush(conn, now)

    def _flush(self, conn: ConnId, now: float | None = None) -> None:
        """Send what the core has for ``conn`` until the kernel pushes back (lock held)."""
        c = self.conns.get(conn)
        if c is None:
            return
        core = self.core
        if core.close_mode(conn) is _NOW:
            self._shut(c, socket.SHUT_RDWR)  # also after an earlier SHUT_WR
            return
        if c.closed.is_set():
            return
        if c.unsent is not None and self.selector.get_map().get(c.sock) is not None:
            return  # parked: flushed when writable
        if now is None:
            now = self.clock()
        last = False
        while not last:
            pending = c.unsent
            if pending is None:
                if c.tls is None:
                    data = core.data_to_send(conn, now=now, max_bytes=RECV_SIZE)
                    last = len(data) < RECV_SIZE  # less than asked for: the queue is empty
                else:
                    data = c.tls.take(core, conn, now, RECV_SIZE)
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
                self.selector.register(c.sock, selectors.EVENT_WRITE, conn)
                return
            c.unsent = None
        if core.close_mode(conn) is _AFTER_FLUSH and (c.tls is None or c.tls.done):
            self._shut(c, socket.SHUT_WR)

    def _shut(self, c: _Connection, how: int) -> None:
        """Shut our side down: SHUT_WR sends FIN after the data, SHUT_RDWR wakes the reader."""
        if self.selector.get_map().get(c.sock) is not None:
            self.selector.unregister(c.sock)
        c.unsent = None
        try:
            c.sock.shutdown(how)
        except OSError:
            pass
        c.may_read.set()  # a reader waiting to be allowed to read must see the end
        c.closed.set()

    # ---------------------------------------------------------- the core

    def set_reading(self, conn: ConnId, read: bool) -> None:
        c = self.conns.get(conn)
        if c is not None:
            if read:
                c.may_read.set()
            else:
                c.may_read.clear()

    def wake_writer(self, conn: ConnId) -> None:
        self.pending.append(conn)
        self._wake()

    def abort(self, conn: ConnId) -> None:
        c = self.conns.get(conn)
        if c is not None:
            self._shut(c, socket.SHUT_RDWR)

    def set_timer(self, deadline: float | None) -> None:
        self._wake()  # the writer thread runs the timer: it reads the deadline again

    def dial(self, dial: BusDial) -> None:
        threading.Thread(target=self._dial_thread, args=(dial,), daemon=True).start()

    def service(self) -> None:
        # Few connections with news (a reply, a small room): sending them now,
        # on this thread, saves a hand-off to the writer, which is most of a
        # round trip's latency. Many (a broadcast to a big room): the writer
        # takes them, and while it sends, more lines gather per recipient.
        core = self.core
        self.apply_reading_changes()
        ready = core.take_ready()
        if ready:
            if len(ready) <= _INLINE_MAX and not self.woken:
                for conn in ready:
                    self._flush(conn)
            else:
                self.pending += ready
                self._wake()
        if core.deadline_moved():
            self._wake()

    def _wake(self) -> None:
        if self.woken:
            return
        self.woken = True  # once per batch, until the writer has looked
        try:
            self.wake_w.send(b"!")
        except OSError:
            pass  # the pair is full: the writer is awake anyway


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
    server = ThreadingServer(config, observer, cluster=cluster, tls=tls)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if observer is not None:
            observer.signal_received(signum)
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
