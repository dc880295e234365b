"""chatproto on asyncio (or uvloop) transports.

Plumbing only; every protocol decision is the core's. One
:class:`asyncio.Protocol` per connection feeds the core from its callbacks,
and one ``call_soon`` pass per loop iteration drains every connection the
core has news for, so the lines that all of an iteration's reads produced for
one recipient leave in one ``write``. Output is taken from the core only when
the transport can take more (``pause_writing``), so a backlog stays in the
core, where the slow-consumer limits apply; a connection whose input the core
does not take is paused with ``pause_reading``. A read of a full chunk also
pauses reading until the next iteration, so one flooding client gets one chunk
per turn like everyone else (uvloop would otherwise read up to 32 in a row).
A graceful close sends our FIN after the output and waits for the peer's
(bounded by the core's ``close_timeout``), so a reset never destroys the last
lines.

Connections are accepted by our own loop on the listening socket, not by
``create_server``: a refused one is written to and closed right there (no
transport), and running out of descriptors is one warning and a back-off, not
the event loop's traceback per attempt (nor libuv's silent accept-and-close).

Used through :class:`~chatproto.adapters.anyio.AnyioServer` (anyio supplies
the task group, signals and shutdown); :func:`serve` runs it on a bare loop.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from chatproto import BusDial, CloseMode, ClusterConfig, ConnId, ServerConfig

from . import ServerObserver
from ._plumbing import RECV_SIZE, DrainPass

if TYPE_CHECKING:
    import ssl

    from ._tls import ServerTls

__all__ = ["TransportServer"]

_OPEN, _AFTER_FLUSH, _NOW = CloseMode.OPEN, CloseMode.AFTER_FLUSH, CloseMode.NOW


class _Connection(asyncio.Protocol):
    """One connection: callbacks feed the core; :meth:`flush` drains it."""

    #: Its TLS stream, on a TLS server (:class:`_TlsConnection`).
    tls: ServerTls | None = None

    def __init__(self, server: TransportServer, conn: ConnId) -> None:
        self.server = server
        self.core = server.core
        self.receive = server.core.receive_data
        self.clock = server.clock
        self.conn = conn
        self.transport: asyncio.Transport | None = None
        #: Why reading is paused: the core said so, or this turn's chunk was full.
        self.held = False
        self.turn_over = False
        self.write_paused = False
        self.fin_sent = False
        self.peer_done = False

    # ---------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.protocols[self.conn] = self
        if self.held:
            transport.pause_reading()  # type: ignore[attr-defined]
        self.flush()

    def data_received(self, data: bytes) -> None:
        # The hot path: CoreLink.feed inlined.
        events = self.receive(self.conn, data, self.clock())
        if events and self.server.observer is not None:
            self.server.observer.events(events)
        if len(data) >= RECV_SIZE and not self.held:
            self._end_turn()
        self.server.service(self.conn)

    def _end_turn(self) -> None:
        """A full chunk was read: more is likely waiting. The others get their turn first."""
        if self.turn_over:
            return
        self.turn_over = True
        assert self.transport is not None
        self.transport.pause_reading()
        self.server.loop.call_soon(self._next_turn)

    def eof_received(self) -> bool:
        self.peer_done = True
        if self.fin_sent:
            return False  # both sides done: let the transport close
        self.server.feed(self.core.receive_eof, self.conn, self.clock())
        return True  # keep writing until the core says close

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.flush()
        self.server.drained()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.protocols.pop(self.conn, None)
        self.server.feed(self.core.connection_lost, self.conn, self.clock())
        self.server.check_finished()

    # --------------------------------------------------------- the core's word

    def set_reading(self, read: bool) -> None:
        self.held = not read
        transport = self.transport
        if transport is None or self.turn_over:
            return  # connection_made or _next_turn applies it
        if read:
            transport.resume_reading()
        else:
            transport.pause_reading()

    def _next_turn(self) -> None:
        self.turn_over = False
        if not self.held and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def flush(self, now: float | None = None) -> None:
        """Write what the core has, while the transport takes it; close when told."""
        transport = self.transport
        if transport is None:
            return
        core = self.core
        mode = core.close_mode(self.conn)
        if mode is _NOW:
            transport.abort()
            return
        if self.write_paused or self.fin_sent:
            return
        tls = self.tls
        try:
            if now is None:
                now = self.clock()
            while not self.write_paused:
                if tls is None:
                    data = core.data_to_send(self.conn, now=now, max_bytes=RECV_SIZE)
                    if data:
                        transport.write(data)  # may call pause_writing
                    if len(data) < RECV_SIZE:
                        break  # less than asked for: the queue is empty
                else:
                    data = tls.take(core, self.conn, now, RECV_SIZE)
                    if not data:
                        break
                    transport.write(data)
            if mode is _AFTER_FLUSH and not self.write_paused and (tls is None or tls.done):
                # Our FIN after the data; the peer's FIN (or NOW) ends it.
                self.fin_sent = True
                if transport.can_write_eof() and not self.peer_done:
                    transport.write_eof()  # then wait for the peer's FIN
                else:
                    transport.close()
        except (OSError, RuntimeError):
            # The peer reset the connection under us (asyncio raises OSError,
            # uvloop RuntimeError). connection_lost follows; the drain pass
            # must go on for everyone else.
            transport.abort()


class _TlsConnection(_Connection):
    """A connection over TLS: decrypted before the core, encrypted after it (adapters/_tls.py).

    The loop's own TLS (``ssl=`` on the transport) is not used: asyncio's and
    uvloop's TLS transports drop what is written after the peer's
    close_notify, so the replies to a half-closing client's last lines
    (written by the next drain pass) would be lost; and the handshake would
    have a timer of its own instead of the core's idle timer. Their TLS is
    ``ssl.SSLObject`` over memory buffers too, so this costs the same.
    """

    def __init__(self, server: TransportServer, conn: ConnId, tls: ServerTls) -> None:
        super().__init__(server, conn)
        self.tls: ServerTls = tls

    def data_received(self, data: bytes) -> None:
        tls = self.tls
        try:
            plain = tls.receive(data)
        except OSError:  # ssl.SSLError: the peer broke TLS
            assert self.transport is not None
            self.transport.abort()
            return
        if plain:
            super().data_received(plain)
        if len(data) >= RECV_SIZE and not self.held:
            self._end_turn()
        if tls.flush_due:
            self.flush()
        if tls.peer_closed and not self.peer_done and not self.eof_received():
            assert self.transport is not None
            self.transport.close()  # its close_notify after our FIN: both sides done

    def eof_received(self) -> bool:
        self.tls.receive_eof()
        keep_open = super().eof_received()
        self.flush()  # a handshake that can no longer finish is done
        return keep_open


class TransportServer(DrainPass):
    """Serves one :class:`~chatproto.ChatServer` on an asyncio (or uvloop) loop."""

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
        self.loop = asyncio.get_running_loop()
        self.clock = self.loop.time
        self.protocols: dict[ConnId, _Connection] = {}
        self.listener: socket.socket | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.all_closed: asyncio.Event = asyncio.Event()
        #: Connections being wired to a transport (the loop keeps tasks weakly).
        self.connecting: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ serving

    def start(self, sock: socket.socket) -> None:
        """Accept on the listening ``sock`` from now on."""
        sock.setblocking(False)
        self.listener = sock
        self.loop.add_reader(sock.fileno(), self._accept)
        self.begin()

    def stop_accepting(self) -> None:
        if self.listener is not None:
            self.loop.remove_reader(self.listener.fileno())
            self.listener = None

    async def shut_down(self) -> None:
        """Tell everyone, close everything gracefully, return once all are gone."""
        self.begin_shutdown()
        await self.all_closed.wait()
        if self.timer is not None:
            self.timer.cancel()

    # ----------------------------------------------------------- accepting

    def _accept(self) -> None:
        if self.listener is None:
            return
        for conn, sock in self.take_accepted(self.listener):
            tls = self.tls_for(conn)
            protocol = _Connection(self, conn) if tls is None else _TlsConnection(self, conn, tls)
            task = self.loop.create_task(self._connect(protocol, sock))
            self.connecting.add(task)
            task.add_done_callback(self.connecting.discard)

    def pause_accepting(self, delay: float) -> None:
        assert self.listener is not None
        fd = self.listener.fileno()
        self.loop.remove_reader(fd)
        self.loop.call_later(delay, self._resume_accepting, fd)

    def _resume_accepting(self, fd: int) -> None:
        if self.listener is not None and self.listener.fileno() == fd:
            self.loop.add_reader(fd, self._accept)
            self._accept()

    async def _dial(self, dial: BusDial) -> None:
        """Cluster mode: connect to Redis; its transport then runs like a client's."""
        protocol = _Connection(self, dial.conn)
        protocol.receive = self.bus_receive
        assert self.cluster is not None
        try:
            await asyncio.wait_for(
                self.loop.create_connection(lambda: protocol, dial.host, dial.port), dial.timeout
            )
        except (OSError, asyncio.TimeoutError):
            self.feed(self.core.connection_lost, dial.conn, self.clock())
            return
        self.feed(self.cluster.bus_connected, dial.conn, self.clock())

    async def _connect(self, protocol: _Connection, sock: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: protocol, sock)
        except (OSError, RuntimeError):
            sock.close()
            self.feed(self.core.connection_lost, protocol.conn, self.clock())
            self.check_finished()

    # ---------------------------------------------------------- the core

    def set_reading(self, conn: ConnId, read: bool) -> None:
        p = self.protocols.get(conn)
        if p is not None:
            p.set_reading(read)

    def flush(self, conn: ConnId, now: float | None = None) -> None:
        p = self.protocols.get(conn)
        if p is not None:
            p.flush(now)

    def flush_all(self, conns: list[ConnId], now: float) -> None:
        get = self.protocols.get
        for conn in conns:
            p = get(conn)
            if p is not None:
                p.flush(now)

    def set_timer(self, deadline: float | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = None if deadline is None else self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        self.on_timer(self.clock())

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.loop.call_soon(callback)

    def dial(self, dial: BusDial) -> None:
        task = self.loop.create_task(self._dial(dial))
        self.connecting.add(task)
        task.add_done_callback(self.connecting.discard)

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.loop.call_later(delay, callback)
