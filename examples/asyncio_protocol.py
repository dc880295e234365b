"""The chatproto core under an ``asyncio.Protocol``, for existing asyncio programs.

Where examples/selectors_server.py owns its loop, this one lives in somebody
else's: a protocol factory for ``loop.create_server`` and one object that owns
the :class:`chatproto.ChatServer`. It keeps the same adapter contract (see the
:class:`~chatproto.ChatServer` docstring):

* every callback feeds the core with ``loop.time()`` and schedules one
  ``service`` pass with ``call_soon``, so all the reads of one loop iteration
  are fed before anything is drained, and the lines they produce for one
  recipient leave in one write;
* a connection whose input the core does not take now (flood control,
  backpressure: :meth:`~chatproto.ChatServer.take_reading_changes`) is paused
  with ``pause_reading`` until the core says otherwise;
* a connection's output is taken from the core only while its transport can
  take more (``pause_writing``/``resume_writing``), in chunks, so a backlog
  stays in the core, where the slow-consumer limits measure it;
* a connection the core refuses (server full) gets its one line and is closed
  at once;
* it closes when :meth:`~chatproto.ChatServer.close_mode` says so: after the
  output (a lingering close: FIN, then wait for the peer's, bounded by the
  core's ``close_timeout``), or at once with ``abort``;
* one ``call_at`` timer follows :meth:`~chatproto.ChatServer.next_deadline`,
  set again whenever :meth:`~chatproto.ChatServer.deadline_moved` says so;
* SIGINT/SIGTERM shut down gracefully: ``INFO server-shutdown`` to everyone,
  then wait until every connection is closed.

Every protocol decision is the core's; this file only moves bytes.

Run: ``python examples/asyncio_protocol.py --port 4000`` (``--port 0`` picks a
free port and prints it; ``--uvloop`` runs on uvloop when it is installed).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import cast

from chatproto import ChatServer, CloseMode, ConnectionRefused, ConnId, ServerConfig

CHUNK = 65536  # taken from the core at a time, so that progress is seen per chunk


class AsyncioChatServer:
    """One :class:`ChatServer` and the asyncio callbacks that drive it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, config: ServerConfig) -> None:
        self.loop = loop
        self.core = ChatServer(config)
        self.protocols: dict[ConnId, ChatProtocol] = {}
        self.listener: asyncio.AbstractServer | None = None
        self._service_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        #: Set once shutdown has begun and every connection is gone.
        self.closed = asyncio.Event()

    def protocol_factory(self) -> ChatProtocol:
        """For ``loop.create_server``: one protocol per accepted connection."""
        return ChatProtocol(self)

    def schedule_service(self) -> None:
        """Run :meth:`service` once, after the callbacks of this loop iteration."""
        if not self._service_scheduled:
            self._service_scheduled = True
            self.loop.call_soon(self.service)

    def service(self) -> None:
        """Act on every connection the core has news for, then re-arm the timer."""
        self._service_scheduled = False
        for conn, read in self.core.take_reading_changes():
            protocol = self.protocols.get(conn)
            if protocol is not None and protocol.transport is not None:
                if read:
                    protocol.transport.resume_reading()
                else:
                    protocol.transport.pause_reading()
        for conn in self.core.take_ready():
            protocol = self.protocols.get(conn)
            if protocol is not None:
                protocol.flush()
        if self.core.deadline_moved():
            self._arm_timer()
        if self.core.is_shutting_down and self.core.connection_count == 0:
            self.closed.set()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        deadline = self.core.next_deadline()
        self._timer = None if deadline is None else self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.core.handle_timeout(self.loop.time())
        self._arm_timer()
        self.service()

    def stop(self) -> None:
        """Graceful shutdown; installed as the SIGINT/SIGTERM handler."""
        if self.core.is_shutting_down:
            return
        if self.listener is not None:
            self.listener.close()  # no new connections
        self.core.shutdown(self.loop.time())
        self.service()


class ChatProtocol(asyncio.Protocol):
    """One connection: feeds the core, writes what it queued, closes when told."""

    def __init__(self, server: AsyncioChatServer) -> None:
        self.server = server
        self.core = server.core
        self.transport: asyncio.Transport | None = None
        self.conn = ConnId(0)
        # False between pause_writing and resume_writing: the transport's
        # buffer is over its high-water mark, so output waits in the core.
        self.writable = True
        # The two halves of a lingering close (see flush).
        self.eof_sent = False
        self.peer_eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's does not subclass asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        admitted = self.core.accept(self.server.loop.time())
        if isinstance(admitted, ConnectionRefused):
            # Beyond max_clients or during shutdown: one line, then close at
            # once, without waiting for the client.
            self.transport.write(admitted.data)
            self.transport.close()
            return
        self.conn = admitted
        self.server.protocols[self.conn] = self
        self.server.schedule_service()

    def data_received(self, data: bytes) -> None:
        self.core.receive_data(self.conn, data, self.server.loop.time())
        self.server.schedule_service()

    def eof_received(self) -> bool:
        if not self.conn:
            return False  # refused: it is closing already
        self.peer_eof = True
        self.core.receive_eof(self.conn, self.server.loop.time())
        self.server.schedule_service()
        # Half-close: keep the transport open to send the replies, unless
        # ours are all out already (then returning False closes it).
        return not self.eof_sent

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        self.flush()
        self.server.schedule_service()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.conn:
            return  # refused: the core never knew it
        self.server.protocols.pop(self.conn, None)
        self.core.connection_lost(self.conn, self.server.loop.time())
        self.server.schedule_service()

    def flush(self) -> None:
        """Write what the core queued while the transport takes it; close when told."""
        transport = self.transport
        assert transport is not None
        mode = self.core.close_mode(self.conn)
        if mode is CloseMode.NOW:
            transport.abort()  # connection_lost follows
            return
        now = self.server.loop.time()
        while self.writable:
            data = self.core.data_to_send(self.conn, now=now, max_bytes=CHUNK)
            if not data:
                break
            transport.write(data)  # may call pause_writing at once
        if self.writable and mode is CloseMode.AFTER_FLUSH and not self.eof_sent:
            # A lingering close: our FIN goes out after the data, and we keep
            # reading (the core ignores it) until the peer's FIN. Closing with
            # unread input would send a RST, which can destroy the replies
            # still in flight (a client that pipelined lines after QUIT). A
            # peer that never closes is cut off by the core's close_timeout:
            # the mode becomes NOW and the next flush aborts.
            self.eof_sent = True
            if self.peer_eof or not transport.can_write_eof():
                transport.close()
            else:
                transport.write_eof()


async def serve(host: str, port: int, config: ServerConfig) -> None:
    """Serve on ``host:port`` until SIGINT/SIGTERM, then shut down gracefully."""
    loop = asyncio.get_running_loop()
    chat = AsyncioChatServer(loop, config)
    chat.listener = await loop.create_server(chat.protocol_factory, host, port, backlog=1024)
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, chat.stop)
    bound = chat.listener.sockets[0].getsockname()
    backend = type(loop).__module__.split(".")[0]
    print(f"asyncio_protocol ({backend}) listening on {bound[0]}:{bound[1]}", flush=True)
    await chat.closed.wait()


def main(argv: list[str] | None = None) -> int:
    # Plain words: the module docstring is reStructuredText for the docs.
    parser = argparse.ArgumentParser(
        description="The chatproto core under an asyncio.Protocol, for existing asyncio programs."
    )
    parser.add_argument("--host", default="127.0.0.1", help="(default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4000, help="0 picks a free one (default 4000)")
    parser.add_argument(
        "--idle-timeout", type=float, default=60.0, help="seconds of silence (default 60)"
    )
    parser.add_argument(
        "--max-outbound-bytes",
        type=int,
        default=1024 * 1024,
        help="slow-consumer cap (default 1048576)",
    )
    parser.add_argument(
        "--flood-rate", type=float, default=50.0, help="lines per second (default 50; 0: off)"
    )
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (default off)")
    args = parser.parse_args(argv)
    config = ServerConfig(
        idle_timeout=args.idle_timeout,
        max_outbound_bytes=args.max_outbound_bytes,
        flood_rate=args.flood_rate,
    )
    if args.uvloop:
        try:
            import uvloop  # noqa: PLC0415 - optional
        except ImportError:
            parser.error("--uvloop needs uvloop: pip install 'chatproto[uvloop]'")
        uvloop.run(serve(args.host, args.port, config))
    else:
        asyncio.run(serve(args.host, args.port, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
