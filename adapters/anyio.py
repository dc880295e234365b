"""chatproto on anyio: streams (on trio), or asyncio transports when anyio runs asyncio.

Plumbing only; every protocol decision is the core's. :class:`AnyioServer` is
what ``chatproto-serve --backend anyio`` runs: on asyncio (and uvloop) it hands
the data path to :mod:`chatproto.adapters.asyncio` (the loop's transports
measured about 3x faster than anyio's stream layer on top of them), and keeps
for anyio the structure: the task group, signals and shutdown. On trio, the
data path is this module's :class:`StreamServer`: a reader task and a writer
task per connection on anyio streams. A reader waits while the core does not
take its connection's input; every receive is a scheduling point, so one
flooding client gets one chunk per turn like everyone else. A writer takes
output from the core only when its previous ``send`` has returned, so a
backlog stays in the core, where the slow-consumer limits apply. A graceful
close sends our FIN after the output and waits for the peer's (bounded by the
core's ``close_timeout``).
"""

from __future__ import annotations

import math
import signal
import socket
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import sniffio
from anyio.abc import SocketAttribute, SocketStream, TaskStatus

from chatproto import BusDial, CloseMode, ClusterConfig, ConnId, ServerConfig

from . import ServerObserver
from ._plumbing import RECV_SIZE, CoreLink, is_resource_error
from .asyncio import TransportServer

if TYPE_CHECKING:
    import ssl

    from ._tls import ServerTls

__all__ = ["AnyioServer", "StreamServer", "run"]

_OPEN, _NOW = CloseMode.OPEN, CloseMode.NOW


class _Connection:
    """The handles on one connection's tasks."""

    __slots__ = ("may_read", "scope", "stream", "tls", "wake")

    def __init__(
        self, stream: SocketStream, scope: anyio.CancelScope, tls: ServerTls | None
    ) -> None:
        self.stream = stream
        self.scope = scope
        #: Its TLS stream, on a TLS server: bytes pass through it both ways.
        self.tls = tls
        #: Set when the writer has something to do.
        self.wake = anyio.Event()
        #: Set while the core takes this connection's input.
        self.may_read = anyio.Event()
        self.may_read.set()


class StreamServer(CoreLink):
    """Serves one :class:`~chatproto.ChatServer` on anyio streams (any anyio backend)."""

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
        self.clock = anyio.current_time
        self.tg: anyio.abc.TaskGroup | None = None
        self.conns: dict[ConnId, _Connection] = {}
        self.timer_wake = anyio.Event()
        self.timer_at = math.inf
        self.accepting: anyio.CancelScope | None = None
        self.all_closed: anyio.Event = anyio.Event()

    # ------------------------------------------------------------ serving

    async def start(self, sock: socket.socket, tg: anyio.abc.TaskGroup) -> None:
        """Accept on the listening ``sock`` from now on, in tasks of ``tg``."""
        listener = await anyio.abc.SocketListener.from_socket(sock)
        self.accepting = anyio.CancelScope()
        self.tg = tg
        tg.start_soon(self._accept, listener, tg)
        tg.start_soon(self._timer)
        self.begin()

    def stop_accepting(self) -> None:
        if self.accepting is not None:
            self.accepting.cancel()

    async def shut_down(self) -> None:
        """Tell everyone, close everything gracefully, return once all are gone."""
        self.begin_shutdown()
        await self.all_closed.wait()

    # ----------------------------------------------------------- accepting

    async def _accept(self, listener: anyio.abc.SocketListener, tg: anyio.abc.TaskGroup) -> None:
        assert self.accepting is not None
        with self.accepting:
            async with listener:
                while True:
                    try:
                        stream = await listener.accept()
                    except (OSError, anyio.BrokenResourceError) as exc:
                        # anyio wraps the accept's OSError (on trio) in
                        # BrokenResourceError; out of descriptors is either.
                        cause = exc if isinstance(exc, OSError) else exc.__cause__
                        if isinstance(cause, OSError) and is_resource_error(cause):
                            await anyio.sleep(self.backoff.failed(cause))
                        continue
                    raw = stream.extra(SocketAttribute.raw_socket)
                    peer = stream.extra(SocketAttribute.remote_address, "?")
                    conn = self.admit(self.clock(), raw, peer, close=False)
                    if conn is None:
                        await _forget(stream)  # turned away: the socket is closed
                        continue
                    self.announce(conn, peer)
                    tg.start_soon(self._connection, conn, stream)

    # -------------------------------------------------------- connections

    async def _dial(self, dial: BusDial) -> None:
        """Cluster mode: connect to Redis; the stream then runs like a client's."""
        try:
            with anyio.fail_after(dial.timeout):
                stream = await anyio.connect_tcp(dial.host, dial.port)
        except (OSError, TimeoutError):
            self.feed(self.core.connection_lost, dial.conn, self.clock())
            return
        await self._connection(dial.conn, stream)

    async def _connection(self, conn: ConnId, stream: SocketStream) -> None:
        with anyio.CancelScope() as scope:
            c = self.conns[conn] = _Connection(stream, scope, self.tls_for(conn))
            if conn == self.bus_conn and self.cluster is not None:
                self.feed(self.cluster.bus_connected, conn, self.clock())
            self.service()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._read, conn, c)
                try:
                    await self._write(conn, c)
                    # Flushed and told to close: our FIN goes out, then the
                    # reader waits for the peer's (or the core's NOW).
                    await stream.send_eof()
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    scope.cancel()
        del self.conns[conn]
        with anyio.CancelScope(shield=True):
            await stream.aclose()
        self.feed(self.core.connection_lost, conn, self.clock())
        self.check_finished()

    async def _read(self, conn: ConnId, c: _Connection) -> None:
        core, feed, tls = self.core, self.feed, c.tls
        receive = self.bus_receive if conn == self.bus_conn else core.receive_data
        try:
            while True:
                if not c.may_read.is_set():  # waiting on a set event would yield once more
                    await c.may_read.wait()  # while the core does not take its input
                data = await c.stream.receive(RECV_SIZE)
                if tls is None:
                    feed(receive, conn, data, self.clock())
                    continue
                data = tls.receive(data)  # ssl.SSLError (an OSError) ends it
                if data:
                    feed(receive, conn, data, self.clock())
                if tls.flush_due:
                    c.wake.set()
                if tls.peer_closed:
                    raise anyio.EndOfStream  # its close_notify
        except anyio.EndOfStream:
            feed(core.receive_eof, conn, self.clock())
            if tls is not None:
                tls.receive_eof()
                c.wake.set()  # a handshake that can no longer finish is done
            if core.close_mode(conn) is not _OPEN:
                return  # the writer flushes and closes
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        c.scope.cancel()

    async def _write(self, conn: ConnId, c: _Connection) -> None:
        core, tls = self.core, c.tls
        while True:
            if tls is None:
                data = core.data_to_send(conn, now=self.clock(), max_bytes=RECV_SIZE)
            else:
                data = tls.take(core, conn, self.clock(), RECV_SIZE)
            if data:
                self.drained()
                await c.stream.send(data)
                continue
            mode = core.close_mode(conn)
            if mode is _NOW:
                c.scope.cancel()
                return
            if mode is not _OPEN and (tls is None or tls.done):
                return
            await c.wake.wait()
            c.wake = anyio.Event()

    # ---------------------------------------------------------- the core

    def set_reading(self, conn: ConnId, read: bool) -> None:
        c = self.conns.get(conn)
        if c is None:
            return
        if read:
            c.may_read.set()
        elif c.may_read.is_set():
            c.may_read = anyio.Event()

    def wake_writer(self, conn: ConnId) -> None:
        c = self.conns.get(conn)
        if c is not None:
            c.wake.set()

    def abort(self, conn: ConnId) -> None:
        c = self.conns.get(conn)
        if c is not None:
            c.scope.cancel()

    def set_timer(self, deadline: float | None) -> None:
        self.timer_at = math.inf if deadline is None else deadline
        self.timer_wake.set()

    def dial(self, dial: BusDial) -> None:
        assert self.tg is not None
        self.tg.start_soon(self._dial, dial)

    async def _timer(self) -> None:
        while True:
            with anyio.move_on_after(self.timer_at - self.clock()):
                await self.timer_wake.wait()
                self.timer_wake = anyio.Event()
                continue
            self.timer_at = math.inf
            self.on_timer(self.clock())


async def _forget(stream: SocketStream) -> None:
    with anyio.CancelScope(shield=True):
        try:
            await stream.aclose()
        except (OSError, anyio.BrokenResourceError):
            pass


class AnyioServer:
    """Serves one :class:`~chatproto.ChatServer` on anyio. ``await serve(sock)``.

    The data path is :class:`~chatproto.adapters.asyncio.TransportServer` on
    asyncio (and uvloop), :class:`StreamServer` on any other anyio backend.
    """

    # The parameters every server class takes (as CoreLink's): the data paths are twins.
    def __init__(
        self,
        config: ServerConfig | None = None,
        observer: ServerObserver | None = None,
        *,
        cluster: ClusterConfig | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config
        self.observer = observer
        self.cluster = cluster
        self.tls = tls
        self._stop = anyio.Event()

    async def serve(
        self, sock: socket.socket, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Accept on the listening ``sock`` until :meth:`shutdown`; then close all gracefully.

        ``task_status.started`` receives the port, for ``task_group.start``.
        """
        host, port = sock.getsockname()[:2]
        if self.observer is not None:
            self.observer.listening(str(host), int(port))
        async with anyio.create_task_group() as tg:
            if sniffio.current_async_library() == "asyncio":
                transports = TransportServer(
                    self.config, self.observer, cluster=self.cluster, tls=self.tls
                )
                transports.start(sock)
                task_status.started(int(port))
                await self._stop.wait()
                await transports.shut_down()
            else:
                streams = StreamServer(
                    self.config, self.observer, cluster=self.cluster, tls=self.tls
                )
                await streams.start(sock, tg)
                task_status.started(int(port))
                await self._stop.wait()
                await streams.shut_down()
            tg.cancel_scope.cancel()

    def shutdown(self) -> None:
        """Begin a graceful shutdown (call from inside the event loop)."""
        self._stop.set()


# The twins' entry point: the same parameters in every data path.
def run(
    sock: socket.socket,
    config: ServerConfig | None = None,
    *,
    observer: ServerObserver | None = None,
    anyio_backend: str = "asyncio",
    use_uvloop: bool = False,
    cluster: ClusterConfig | None = None,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Serve on the listening ``sock`` until SIGINT or SIGTERM, then shut down gracefully.

    With ``tls`` (a server context), every client connection speaks TLS.
    """
    if use_uvloop and anyio_backend != "asyncio":
        raise ValueError("uvloop runs only under anyio's asyncio backend")
    server = AnyioServer(config, observer, cluster=cluster, tls=tls)

    async def main() -> None:
        # Signals stay handled until the server has stopped: a second SIGINT
        # during the graceful shutdown must not become a KeyboardInterrupt.
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

            async def watch() -> None:
                async for signum in signals:
                    if observer is not None:
                        observer.signal_received(signum)
                    server.shutdown()

            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                await server.serve(sock)
                tg.cancel_scope.cancel()

    options: dict[str, Any] = {}
    if anyio_backend == "asyncio" and use_uvloop:
        options["use_uvloop"] = True
    anyio.run(main, backend=anyio_backend, backend_options=options)
