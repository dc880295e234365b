"""chatproto on anyio: asyncio (optionally uvloop) or trio.

Plumbing only; every protocol decision is the core's.

* On **asyncio** (and uvloop) the data path is the event loop's own transports:
  one :class:`asyncio.Protocol` per connection feeds the core from its
  callbacks, and one ``call_soon`` pass per loop iteration drains every
  connection the core has news for, so the lines that all of an iteration's
  reads produced for one recipient leave in one ``write``. anyio's stream layer
  on top of the same transports measured about 3x slower here (a task switch
  and a reader pause/resume per read), so anyio supplies only the structure:
  the task group, signals and shutdown.
* On **trio** each connection has a reader task and a writer task on anyio
  streams; after any feed the writers of the connections with news are woken.

Either way, output is taken from the core only when the socket can take more
(asyncio's ``pause_writing``, or the previous ``send`` having returned), so the
backlog of a client that stops reading stays in the core, where the
slow-consumer cap applies. A graceful close sends our FIN after the output,
then waits for the peer's (bounded by the core's ``close_timeout``), so a reset
never destroys the last lines.
"""

from __future__ import annotations

import asyncio
import math
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import sniffio
from anyio.abc import SocketAttribute, SocketStream, TaskStatus

from chatproto import ChatServer, CloseMode, ConnId, ServerConfig

from . import ServerObserver, wants_message_events

__all__ = ["AnyioServer", "run"]

_NOW, _OPEN, _AFTER_FLUSH = CloseMode.NOW, CloseMode.OPEN, CloseMode.AFTER_FLUSH
_RECV_SIZE = 65536
#: A drain pass longer than this delays the next one (see service()). 2 ms is
#: about 500 connections written to: rooms of ordinary size never pay it.
_BATCH_AFTER = 0.002


class AnyioServer:
    """Serves one :class:`ChatServer` on anyio. ``await serve(sock)``."""

    def __init__(
        self, config: ServerConfig | None = None, observer: ServerObserver | None = None
    ) -> None:
        self.core = ChatServer(config, message_events=wants_message_events(observer))
        self.observer = observer
        self._stop = anyio.Event()
        self._all_closed = anyio.Event()
        self._conns: _Connections | None = None

    # ------------------------------------------------------------ serving

    async def serve(
        self, sock: socket.socket, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Accept on the listening ``sock`` until :meth:`shutdown`; then close all gracefully.

        ``task_status.started`` receives the port, for ``task_group.start``.
        """
        host, port = sock.getsockname()[:2]
        if self.observer is not None:
            self.observer.listening(str(host), int(port))
        if sniffio.current_async_library() == "asyncio":
            conns: _Connections = _TransportConnections(self)
        else:
            conns = _StreamConnections(self)
        self._conns = conns
        async with anyio.create_task_group() as tg:
            await conns.start(sock, tg)
            task_status.started(int(port))
            await self._stop.wait()
            await conns.stop_accepting()
            self.feed(self.core.shutdown, conns.clock())
            if self.core.connection_count:
                await self._all_closed.wait()
            tg.cancel_scope.cancel()

    def shutdown(self) -> None:
        """Begin a graceful shutdown (call from inside the event loop)."""
        self._stop.set()

    # ---------------------------------------------------------- the core

    def feed(self, method: Callable[..., list[Any]], *args: Any) -> None:
        """Call a core input method, report its events, act on its news."""
        events = method(*args)
        if events and self.observer is not None:
            self.observer.events(events)
        assert self._conns is not None
        self._conns.service()

    def forget(self, conn: ConnId, now: float) -> None:
        """The socket of ``conn`` is closed: tell the core, and notice the end of shutdown."""
        self.feed(self.core.connection_lost, conn, now)
        if self.core.connection_count == 0 and self.core.is_shutting_down:
            self._all_closed.set()


class _Connections:
    """What both data paths provide to :class:`AnyioServer`."""

    #: The data path's own clock (the event loop's time), given to the core.
    clock: Callable[[], float]

    async def start(self, sock: socket.socket, tg: anyio.abc.TaskGroup) -> None:
        raise NotImplementedError

    async def stop_accepting(self) -> None:
        raise NotImplementedError

    def service(self, origin: Any = None) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------- asyncio


class _TransportConnections(_Connections):
    """asyncio and uvloop: protocol callbacks feed, one pass per iteration drains."""

    def __init__(self, server: AnyioServer) -> None:
        self.server = server
        self.core = server.core
        self.loop = asyncio.get_running_loop()
        self.clock = self.loop.time
        self.protocols: dict[ConnId, _ChatProtocol] = {}
        self.listener: asyncio.AbstractServer | None = None
        #: Connections with news, drained by the next pass.
        self.pending: list[ConnId] = []
        self.scheduled = False
        self.pass_cost = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf

    async def start(self, sock: socket.socket, tg: anyio.abc.TaskGroup) -> None:
        self.listener = await self.loop.create_server(
            lambda: _ChatProtocol(self), sock=sock, backlog=4096
        )

    async def stop_accepting(self) -> None:
        assert self.listener is not None
        self.listener.close()

    def service(self, origin: _ChatProtocol | None = None) -> None:
        ready = self.core.take_ready()
        if ready:
            if (
                origin is not None
                and not self.scheduled
                and len(ready) == 1
                and ready[0] == origin.conn
            ):
                # Only the connection that was just read has output (a reply
                # to its own request): nothing else can join that write in
                # this iteration, so it leaves now instead of after the pass.
                origin.flush()
            else:
                self.pending += ready
                if not self.scheduled:
                    self.scheduled = True
                    if self.pass_cost > _BATCH_AFTER:
                        # Draining is expensive now (a notice to thousands of
                        # users): let input gather for as long as the last
                        # pass took, so no more than half the time goes to
                        # writing, however many logins arrive one by one.
                        self.loop.call_later(self.pass_cost, self._pass)
                    else:
                        self.loop.call_soon(self._pass)
        deadline = self.core.next_deadline()
        if deadline is not None and deadline < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer_at = deadline
            self.timer = self.loop.call_at(deadline, self._on_timer)

    def _pass(self) -> None:
        """Once per loop iteration, after all its reads were fed: drain and close."""
        self.scheduled = False
        start = time.perf_counter()
        protocols = self.protocols
        pending, self.pending = self.pending, []
        for conn in pending + self.core.take_ready():
            p = protocols.get(conn)
            if p is not None:
                p.flush()
        self.pass_cost = time.perf_counter() - start

    def _on_timer(self) -> None:
        self.timer = None
        self.timer_at = math.inf
        self.server.feed(self.core.handle_timeout, self.clock())


class _ChatProtocol(asyncio.Protocol):
    """One connection on asyncio: callbacks feed the core; :meth:`flush` drains it."""

    def __init__(self, conns: _TransportConnections) -> None:
        self.conns = conns
        self.server = conns.server
        self.core = conns.core
        self.receive = conns.core.receive_data
        self.clock = conns.clock
        self.conn = ConnId(0)
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.fin_sent = False
        self.peer_done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # asyncio sets TCP_NODELAY only when the listener was made with
        # IPPROTO_TCP, which socket.create_server does not do. The core batches
        # lines itself; nothing may wait for Nagle's algorithm.
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = conn = self.core.connection_made(self.conns.clock())
        self.conns.protocols[conn] = self
        if self.server.observer is not None:
            peer = transport.get_extra_info("peername")
            self.server.observer.connected(conn, _format_peer(peer))
        self.conns.service()

    def data_received(self, data: bytes) -> None:
        # The hot path: AnyioServer.feed inlined.
        events = self.receive(self.conn, data, self.clock())
        if events and self.server.observer is not None:
            self.server.observer.events(events)
        self.conns.service(self)

    def eof_received(self) -> bool:
        self.peer_done = True
        if self.fin_sent:
            return False  # both sides done: let the transport close
        self.server.feed(self.core.receive_eof, self.conn, self.conns.clock())
        return True  # keep writing until the core says close

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        del self.conns.protocols[self.conn]
        self.server.forget(self.conn, self.conns.clock())

    def flush(self) -> None:
        transport = self.transport
        assert transport is not None
        mode = self.core.close_mode(self.conn)
        if mode is _NOW:
            transport.abort()
            return
        if self.paused or self.fin_sent:
            return
        try:
            while not self.paused and (data := self.core.data_to_send(self.conn)):
                transport.write(data)  # may call pause_writing
            if mode is _AFTER_FLUSH and not self.paused:
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


# ------------------------------------------------------------------- trio


class _StreamConnection:
    """The handles on one connection's tasks."""

    __slots__ = ("scope", "stream", "wake")

    def __init__(self, stream: SocketStream, scope: anyio.CancelScope) -> None:
        self.stream = stream
        self.scope = scope
        self.wake = anyio.Event()


class _StreamConnections(_Connections):
    """trio (any anyio backend): a reader and a writer task per connection."""

    def __init__(self, server: AnyioServer) -> None:
        self.server = server
        self.core = server.core
        self.clock = anyio.current_time
        self.conns: dict[ConnId, _StreamConnection] = {}
        self.timer_wake = anyio.Event()
        self.timer_at = math.inf
        self.accepting: anyio.CancelScope | None = None

    async def start(self, sock: socket.socket, tg: anyio.abc.TaskGroup) -> None:
        listener = await anyio.abc.SocketListener.from_socket(sock)
        self.accepting = anyio.CancelScope()
        tg.start_soon(self._accept, listener, tg)
        tg.start_soon(self._timer)

    async def stop_accepting(self) -> None:
        assert self.accepting is not None
        self.accepting.cancel()

    async def _accept(self, listener: anyio.abc.SocketListener, tg: anyio.abc.TaskGroup) -> None:
        assert self.accepting is not None
        with self.accepting:
            async with listener:
                while True:
                    try:
                        stream = await listener.accept()
                    except OSError:  # out of file descriptors and the like
                        await anyio.sleep(0.05)
                        continue
                    tg.start_soon(self._connection, stream)

    async def _connection(self, stream: SocketStream) -> None:
        raw = stream.extra(SocketAttribute.raw_socket, None)
        if raw is not None:  # the core batches; nothing may wait for Nagle
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = self.core.connection_made(self.clock())
        if self.server.observer is not None:
            peer = stream.extra(SocketAttribute.remote_address, "?")
            self.server.observer.connected(conn, _format_peer(peer))
        with anyio.CancelScope() as scope:
            c = self.conns[conn] = _StreamConnection(stream, scope)
            self.service()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._read, conn, stream)
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
        self.server.forget(conn, self.clock())

    async def _read(self, conn: ConnId, stream: SocketStream) -> None:
        core, feed = self.core, self.server.feed
        try:
            while True:
                data = await stream.receive(_RECV_SIZE)
                feed(core.receive_data, conn, data, self.clock())
        except anyio.EndOfStream:
            feed(core.receive_eof, conn, self.clock())
            if core.close_mode(conn) is not _OPEN:
                return  # the writer flushes and closes
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        self.conns[conn].scope.cancel()

    async def _write(self, conn: ConnId, c: _StreamConnection) -> None:
        core = self.core
        while True:
            data = core.data_to_send(conn)
            if data:
                await c.stream.send(data)
                continue
            mode = core.close_mode(conn)
            if mode is not _OPEN:
                if mode is _NOW:
                    c.scope.cancel()
                return
            await c.wake.wait()
            c.wake = anyio.Event()

    async def _timer(self) -> None:
        core = self.core
        while True:
            deadline = core.next_deadline()
            self.timer_at = math.inf if deadline is None else deadline
            with anyio.move_on_after(self.timer_at - self.clock()):
                await self.timer_wake.wait()
                self.timer_wake = anyio.Event()
                continue
            self.server.feed(core.handle_timeout, self.clock())

    def service(self, origin: Any = None) -> None:
        core, conns = self.core, self.conns
        for conn in core.take_ready():
            c = conns.get(conn)
            if c is None:
                continue
            if core.close_mode(conn) is _NOW:
                c.scope.cancel()
            else:
                c.wake.set()
        deadline = core.next_deadline()
        if deadline is not None and deadline < self.timer_at:
            self.timer_at = deadline
            self.timer_wake.set()


def _format_peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


def run(
    sock: socket.socket,
    config: ServerConfig | None = None,
    *,
    observer: ServerObserver | None = None,
    anyio_backend: str = "asyncio",
    use_uvloop: bool = False,
) -> None:
    """Serve on the listening ``sock`` until SIGINT or SIGTERM, then shut down gracefully."""
    server = AnyioServer(config, observer)

    async def main() -> None:
        # Signals stay handled until the server has stopped: a second SIGINT
        # during the graceful shutdown must not become a KeyboardInterrupt.
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

            async def watch() -> None:
                async for _ in signals:
                    server.shutdown()

            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                await server.serve(sock)
                tg.cancel_scope.cancel()

    options: dict[str, Any] = {}
    if anyio_backend == "asyncio" and use_uvloop:
        options["use_uvloop"] = True
    anyio.run(main, backend=anyio_backend, backend_options=options)
