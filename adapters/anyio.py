"""chatproto on anyio: asyncio (optionally uvloop) or trio, one task pair per connection.

Plumbing only. Each connection has a reader task that feeds the core and a
writer task that drains it; one timer task follows the core's deadline. After
any feed, :meth:`AnyioServer._service` wakes the writers of the connections the
core has news for, so the lines many inputs produced for one recipient leave in
one ``send``. A writer takes output from the core only when its previous
``send`` has returned, so a reader that stops reading leaves its backlog in the
core, where the slow-consumer cap applies.
"""

from __future__ import annotations

import math
import signal
import socket
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
from anyio.abc import SocketAttribute, SocketStream, TaskGroup, TaskStatus

from chatproto import ChatServer, CloseMode, ConnId, ServerConfig

from . import ServerObserver

__all__ = ["AnyioServer", "run"]

_NOW, _OPEN = CloseMode.NOW, CloseMode.OPEN
_RECV_SIZE = 65536


class _Connection:
    """The adapter's handles on one connection."""

    __slots__ = ("scope", "stream", "wake")

    def __init__(self, stream: SocketStream, scope: anyio.CancelScope) -> None:
        self.stream = stream
        self.scope = scope
        self.wake = anyio.Event()


class AnyioServer:
    """Serves one :class:`ChatServer` on anyio. ``await serve(host, port)``."""

    def __init__(
        self, config: ServerConfig | None = None, observer: ServerObserver | None = None
    ) -> None:
        self.core = ChatServer(config)
        self.observer = observer
        self._conns: dict[ConnId, _Connection] = {}
        self._clock = anyio.current_time
        self._timer_wake = anyio.Event()
        self._timer_at = math.inf
        self._stop = anyio.Event()
        self._all_closed = anyio.Event()

    # ------------------------------------------------------------ serving

    async def serve(
        self,
        sock: socket.socket,
        *,
        task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept on the listening ``sock`` until :meth:`shutdown`; then close all gracefully.

        ``task_status.started`` receives the port, for ``task_group.start``.
        """
        listener = await anyio.abc.SocketListener.from_socket(sock)
        bound = listener.extra(SocketAttribute.local_address)
        if self.observer is not None:
            self.observer.listening(str(bound[0]), int(bound[1]))
        task_status.started(int(bound[1]))
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._timer)
            async with anyio.create_task_group() as accepting:
                accepting.start_soon(self._accept, listener, tg)
                await self._stop.wait()
                accepting.cancel_scope.cancel()
            await listener.aclose()
            self._feed(self.core.shutdown, self._clock())
            if self.core.connection_count:
                await self._all_closed.wait()
            tg.cancel_scope.cancel()

    def shutdown(self) -> None:
        """Begin a graceful shutdown (call from inside the event loop)."""
        self._stop.set()

    async def _accept(self, listener: Any, tg: TaskGroup) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError:  # out of file descriptors and the like
                    await anyio.sleep(0.05)
                    continue
                tg.start_soon(self._connection, stream)

    # -------------------------------------------------------- connections

    async def _connection(self, stream: SocketStream) -> None:
        # The core batches lines itself; nothing may wait for Nagle's algorithm.
        raw = stream.extra(SocketAttribute.raw_socket, None)
        if raw is not None:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = self.core.connection_made(self._clock())
        if self.observer is not None:
            peer = stream.extra(SocketAttribute.remote_address, "?")
            self.observer.connected(conn, _format_peer(peer))
        with anyio.CancelScope() as scope:
            c = self._conns[conn] = _Connection(stream, scope)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._read, conn, stream)
                try:
                    await self._write(conn, c)
                    # Flushed and told to close: our FIN goes out, then the
                    # reader waits for the peer's (or the core's NOW).
                    await stream.send_eof()
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    scope.cancel()
                except RuntimeError:  # uvloop's write_eof on a transport the peer closed
                    scope.cancel()
        del self._conns[conn]
        with anyio.CancelScope(shield=True):
            await stream.aclose()
        self._feed(self.core.connection_lost, conn, self._clock())
        if self.core.connection_count == 0 and self.core.is_shutting_down:
            self._all_closed.set()

    async def _read(self, conn: ConnId, stream: SocketStream) -> None:
        core = self.core
        try:
            while True:
                data = await stream.receive(_RECV_SIZE)
                self._feed(core.receive_data, conn, data, self._clock())
        except anyio.EndOfStream:
            self._feed(core.receive_eof, conn, self._clock())
            if core.close_mode(conn) is not _OPEN:
                return  # the writer flushes and closes
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        self._conns[conn].scope.cancel()

    async def _write(self, conn: ConnId, c: _Connection) -> None:
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

    # ------------------------------------------------------------- timers

    async def _timer(self) -> None:
        core = self.core
        while True:
            deadline = core.next_deadline()
            self._timer_at = math.inf if deadline is None else deadline
            with anyio.move_on_after(self._timer_at - self._clock()):
                await self._timer_wake.wait()
                self._timer_wake = anyio.Event()
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
                c.scope.cancel()
            else:
                c.wake.set()
        deadline = core.next_deadline()
        if deadline is not None and deadline < self._timer_at:
            self._timer_at = deadline
            self._timer_wake.set()


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
