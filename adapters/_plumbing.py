"""What every data path does the same way: the core's side of an adapter.

Owns: feeding the core and reporting its events to the observer, handing its
news (read or not, write, close, timer) to the data path, turning refused
connections away (over TLS, a bounded number through their handshake), backing
off when accept fails for lack of resources, each connection's TLS stream on a
TLS server (``_tls.ServerTls``), and the socket options every connection
gets. Never knows a runtime: each data path (threading, gevent, asyncio
transports, anyio streams) subclasses :class:`CoreLink` and supplies the four
things that differ between runtimes.
"""

from __future__ import annotations

import errno
import functools
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

from chatproto import (
    BusDial,
    ChatServer,
    CloseMode,
    ClusterConfig,
    ClusterServer,
    ConnectionRefused,
    ConnId,
    ServerConfig,
    ServerEvent,
)

from . import ServerObserver, wants_message_events
from ._tls import TLS_REFUSALS, ServerTls

if TYPE_CHECKING:
    import ssl

    from ._bus import BusParser

__all__ = [
    "ACCEPT_BATCH",
    "RECV_SIZE",
    "AcceptBackoff",
    "CoreLink",
    "DrainPass",
    "accept_some",
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
#: A drain pass longer than this delays the next one (see DrainPass). 2 ms is
#: about 500 connections written to: rooms of ordinary size never pay it.
_BATCH_AFTER: Final = 0.002


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


def turn_away(
    sock: socket.socket, refusal: ConnectionRefused, *, close: bool = True, say: bool = True
) -> None:
    """Write the refusal line without blocking, then close at once (§13).

    What the client already sent is read and discarded first, so that the
    close is a FIN, not a reset that could destroy the line in flight. Never
    raises: a refused client that is already gone is simply gone.
    ``close=False`` leaves the closing to the caller (a stream that owns the
    socket); ``say=False`` writes nothing (a TLS client could not read it).
    """
    try:
        sock.setblocking(False)
        if say:
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


def accept_some(listener: socket.socket) -> tuple[list[tuple[socket.socket, Any]], OSError | None]:
    """Accept from a non-blocking listener what is waiting, in one bounded batch.

    Returns the accepted sockets with their peers, and the error that stopped
    the batch if it was a lack of resources (the caller stops listening and
    retries after :meth:`AcceptBackoff.failed`). Other errors (a client that
    gave up meanwhile) end the batch quietly.
    """
    accepted: list[tuple[socket.socket, Any]] = []
    for _ in range(ACCEPT_BATCH):
        try:
            accepted.append(listener.accept())
        except BlockingIOError:
            break
        except OSError as exc:
            return accepted, exc if is_resource_error(exc) else None
    return accepted, None


class _Settable(Protocol):
    """An event of any runtime: all the plumbing does is set it."""

    def set(self) -> None: ...


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

    In cluster mode (``cluster`` given) the core is a
    :class:`~chatproto.ClusterServer`, and the data path also implements
    :meth:`dial`: its Redis connection is then served like a client's, except
    that what is read goes to :meth:`bus_receive` instead of the core's
    ``receive_data``. Without it, nothing of the cluster is imported.
    """

    #: The data path's clock (the loop's time, or time.monotonic): the core's ``now``.
    clock: Callable[[], float]
    #: Set once a shutdown has closed every connection.
    all_closed: _Settable

    def __init__(
        self,
        config: ServerConfig | None,
        observer: ServerObserver | None,
        cluster: ClusterConfig | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        events = wants_message_events(observer)
        self.cluster: ClusterServer | None = None
        if cluster is None:
            self.core = ChatServer(config, message_events=events)
        else:
            self.core = self.cluster = ClusterServer(config, cluster, message_events=events)
        self.observer = observer
        self.backoff = AcceptBackoff(observer)
        if observer is not None:
            observer.serving(self.core.counters)
        #: The Redis connection being dialled or served, and its parser.
        self.bus_conn: ConnId | None = None
        self.bus_parser: BusParser | None = None
        #: Makes each client connection's TLS stream, when the server speaks
        #: TLS (never the Redis connection's: see :meth:`tls_for`).
        self.new_tls: Callable[[], ServerTls] | None = None
        #: Refused connections served over TLS only to be told why (see admit).
        self.refusing: set[ConnId] = set()
        if tls is not None:
            self.new_tls = functools.partial(ServerTls, tls)

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

    def stop_accepting(self) -> None:
        """Accept nothing more (shutdown)."""
        raise NotImplementedError

    def pause_accepting(self, delay: float) -> None:
        """Out of descriptors: stop listening, and listen again after ``delay`` seconds."""
        raise NotImplementedError

    def dial(self, dial: BusDial) -> None:
        """Cluster mode: connect to Redis as ``dial`` says (see :class:`~chatproto.BusDial`).

        Connected: register the connection like an accepted one, reading it
        into :meth:`bus_receive`, and feed ``cluster.bus_connected``. Failed:
        feed ``core.connection_lost(dial.conn, now)``.
        """
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
        self.apply_reading_changes()
        for conn in core.take_ready():
            if core.close_mode(conn) is _NOW:
                self.abort(conn)
            else:
                self.wake_writer(conn)
        if core.deadline_moved():
            self.set_timer(core.next_deadline())

    def apply_reading_changes(self) -> None:
        """Stop or resume reading the connections the core says."""
        changes = self.core.take_reading_changes()
        if changes:
            for conn, read in changes:
                self.set_reading(conn, read)

    def begin_shutdown(self) -> None:
        """Stop accepting, tell everyone, start closing everything (step 8)."""
        self.stop_accepting()
        if self.observer is not None:
            self.observer.stopping(self.core.connection_count)
        self.feed(self.core.shutdown, self.clock())
        self.check_finished()

    def check_finished(self) -> None:
        """Notice the end of a shutdown (after each connection lost)."""
        if self.finished:
            self.all_closed.set()

    def drained(self) -> None:
        """After writing outside :meth:`service`: a drain may have made held input due."""
        if self.core.deadline_moved():
            self.set_timer(self.core.next_deadline())

    def on_timer(self, now: float) -> None:
        """The timer fired: run what is due, then set it again."""
        events = self.core.handle_timeout(now)
        if events and self.observer is not None:
            self.observer.events(events)
        if self.cluster is not None:
            for dial in self.cluster.take_dials():  # dials are decided here only
                self._start_dial(dial)
        self.service()
        self.set_timer(self.core.next_deadline())

    def begin(self) -> None:
        """Serving starts: set the timer (in cluster mode, the first dial is due at once)."""
        self.set_timer(self.core.next_deadline())

    def _start_dial(self, dial: BusDial) -> None:
        from ._bus import BusParser  # noqa: PLC0415 (hiredis: cluster mode only)

        self.bus_conn = dial.conn
        self.bus_parser = BusParser()
        self.dial(dial)

    def bus_receive(
        self, conn: ConnId, data: bytes | bytearray | memoryview, now: float
    ) -> list[ServerEvent]:
        """Bytes read on a Redis connection: parsed, then fed (``receive_data``'s shape)."""
        if conn != self.bus_conn or self.bus_parser is None or self.cluster is None:
            return []  # an older Redis connection, being closed
        return self.cluster.bus_received(conn, self.bus_parser.feed(bytes(data)), now)

    def tls_for(self, conn: ConnId) -> ServerTls | None:
        """The TLS stream of a new connection: ``None`` without TLS, and for Redis's."""
        if self.new_tls is None or conn == self.bus_conn:
            return None
        return self.new_tls()

    def admit(
        self, now: float, sock: socket.socket, peer: Any, *, close: bool = True
    ) -> ConnId | None:
        """A connection was accepted: its id, or ``None`` once it was turned away.

        A connection turned away is written to and closed (``close=False``:
        the caller closes it) and never costs a thread, task or buffer. Over
        TLS the refusal needs a handshake: up to ``TLS_REFUSALS`` refused
        connections at a time are served like any other, registered with the
        core only to be told why and closed (``connection_made``), which
        bounds them by ``close_timeout``; past that, they are closed unanswered.
        """
        self.backoff.succeeded()
        core = self.core
        admitted = core.accept(now)
        if isinstance(admitted, ConnectionRefused):
            if self.observer is not None:
                self.observer.refused(admitted, format_peer(peer))
            if self.new_tls is None or not self._room_to_refuse():
                turn_away(sock, admitted, close=close, say=self.new_tls is None)
                return None
            admitted = core.connection_made(now)  # closes after the refusal line
            self.refusing.add(admitted)
        prepare(sock)
        return admitted

    def _room_to_refuse(self) -> bool:
        """Whether one more refused connection may be served over TLS (see admit)."""
        if len(self.refusing) >= TLS_REFUSALS:
            # Forget those the core has forgotten (reported lost).
            self.refusing = {c for c in self.refusing if self.core.close_reason(c) is not None}
        return len(self.refusing) < TLS_REFUSALS

    def take_accepted(self, listener: socket.socket) -> list[tuple[ConnId, socket.socket]]:
        """Accept what waits on a non-blocking listener: the connections to serve.

        Refused ones are turned away on the spot; the served ones are
        announced and non-blocking. Out of descriptors, it calls
        :meth:`pause_accepting` with the back-off.
        """
        accepted, error = accept_some(listener)
        served = []
        for sock, peer in accepted:
            conn = self.admit(self.clock(), sock, peer)
            if conn is not None:
                self.announce(conn, peer)
                sock.setblocking(False)
                served.append((conn, sock))
        if error is not None:
            self.pause_accepting(self.backoff.failed(error))
        return served

    def announce(self, conn: ConnId, peer: Any) -> None:
        """Tell the observer that ``conn`` (from ``peer``) is being served.

        Not a refused one served over TLS only to be told why: that was
        reported as refused.
        """
        if self.observer is not None and conn not in self.refusing:
            self.observer.connected(conn, format_peer(peer))

    def give_back(self, conn: ConnId, now: float, sock: socket.socket, peer: Any) -> None:
        """The data path cannot serve ``conn`` after all (no thread): refuse it."""
        if conn in self.refusing:  # refused already, and reported so: just drop it
            self.refusing.discard(conn)
            sock.close()
            self.feed(self.core.connection_lost, conn, now)
            return
        refusal = self.core.refuse(conn, now)
        turn_away(sock, refusal, say=self.new_tls is None)
        if self.observer is not None:
            self.observer.refused(refusal, format_peer(peer))

    @property
    def finished(self) -> bool:
        """Shutting down, and every connection has been reported lost."""
        return self.core.is_shutting_down and self.core.connection_count == 0


class DrainPass(CoreLink):
    """For data paths driven by loop callbacks (asyncio, gevent): one drain pass per iteration.

    Reads are fed as their callbacks come; the connections with news are
    drained together by one callback at the end of the loop iteration, so
    the lines all of an iteration's reads produced for one recipient leave in
    one write. A data path supplies :meth:`flush` and the two ways its loop
    runs a callback later.
    """

    # CoreLink's parameters, passed on.
    def __init__(
        self,
        config: ServerConfig | None,
        observer: ServerObserver | None,
        cluster: ClusterConfig | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(config, observer, cluster, tls)
        #: Connections with news, drained by the next pass.
        self.pending: list[ConnId] = []
        self.scheduled = False
        self.pass_cost = 0.0

    def flush(self, conn: ConnId, now: float | None = None) -> None:
        """Write what the core has for ``conn`` while its socket takes it; close when told."""
        raise NotImplementedError

    def flush_all(self, conns: list[ConnId], now: float) -> None:
        """:meth:`flush` each of ``conns``: the drain pass, one call per connection."""
        raise NotImplementedError

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` at the end of this loop iteration."""
        raise NotImplementedError

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` after ``delay`` seconds."""
        raise NotImplementedError

    def wake_writer(self, conn: ConnId) -> None:
        self.pending.append(conn)
        self._schedule_pass()

    def abort(self, conn: ConnId) -> None:
        self.flush(conn)  # flush closes at once when the core says NOW

    def service(self, origin: ConnId | None = None) -> None:
        """Act on the core's news; the writes wait for this iteration's drain pass.

        ``origin`` is the connection whose read caused the news, if any.
        """
        core = self.core
        self.apply_reading_changes()
        ready = core.take_ready()
        if ready:
            if origin is not None and not self.scheduled and len(ready) == 1 and ready[0] == origin:
                # Only the connection that was just read has output (a reply
                # to its own request): nothing else can join that write in
                # this iteration, so it leaves now instead of after the pass.
                self.flush(origin)
            else:
                self.pending += ready
                self._schedule_pass()
        if core.deadline_moved():
            self.set_timer(core.next_deadline())

    def _schedule_pass(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            if self.pass_cost > _BATCH_AFTER:
                # Draining is expensive now (a notice to thousands of users):
                # let input gather for as long as the last pass took, so no
                # more than half the time goes to writing, however many
                # logins arrive one by one.
                self.call_later(self.pass_cost, self._pass)
            else:
                self.call_soon(self._pass)

    def _pass(self) -> None:
        """Once per loop iteration, after all its reads were fed: drain and close."""
        self.scheduled = False
        start = time.perf_counter()
        pending, self.pending = self.pending, []
        self.flush_all(pending, self.clock())
        self.pass_cost = time.perf_counter() - start
        self.drained()  # drains can let held input run now
