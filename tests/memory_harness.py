"""An in-memory harness: N clients wired to one :class:`ChatServer`, no sockets.

What this owns: playing the adapter's side of the contract documented on
:class:`ChatServer` (feed, ``take_ready``, drain, close on ``close_mode``, wake
at ``next_deadline``) exactly, so that core tests see what a real adapter would
put on the wire. It never sleeps and never reads a clock: time is
:attr:`MemoryRoom.now`, moved only by :meth:`MemoryRoom.advance`.

A client "reads" by default: whatever the server queues for it is drained at
once into :attr:`MemoryClient.received`, as an adapter does when the socket
can take more. A client built with ``reading=False`` models a peer that never
reads: its output stays queued in the core, where the slow-consumer cap
measures it, until :meth:`MemoryClient.resume_reading`.
"""

from __future__ import annotations

from chatproto import ChatServer, CloseMode, ConnId, ServerConfig, ServerEvent

__all__ = ["MemoryClient", "MemoryRoom"]


class MemoryClient:
    """One simulated peer. Its socket is "closed" once :attr:`closed_with` is set."""

    def __init__(self, room: MemoryRoom, conn: ConnId, *, reading: bool) -> None:
        self.room = room
        self.conn = conn
        self.reading = reading
        #: Bytes the server wrote to this client's socket and nobody consumed yet.
        self.received = bytearray()
        #: Every byte ever written to this client, for split-invariance checks.
        self.transcript = bytearray()
        #: The close_mode that made the adapter close the socket, or None while
        #: it is open. ``connection_lost`` has been reported once it is set.
        self.closed_with: CloseMode | None = None

    # ----------------------------------------------------------- peer input

    def send(self, data: bytes | bytearray | memoryview) -> list[ServerEvent]:
        """The peer sends ``data`` (one read); returns the events it caused."""
        return self.room._feed(self.room.server.receive_data(self.conn, data, self.room.now))

    def send_split(self, data: bytes, sizes: list[int]) -> list[ServerEvent]:
        """Send ``data`` as consecutive reads of the given sizes (rest in one read)."""
        events: list[ServerEvent] = []
        pos = 0
        for size in sizes:
            if pos >= len(data):
                break
            events += self.send(data[pos : pos + size])
            pos += size
        if pos < len(data):
            events += self.send(data[pos:])
        return events

    def eof(self) -> list[ServerEvent]:
        """The peer shuts down its sending side (half-close)."""
        return self.room._feed(self.room.server.receive_eof(self.conn, self.room.now))

    def close(self) -> list[ServerEvent]:
        """The peer resets the connection: the adapter reports it lost."""
        if self.closed_with is None:
            self.closed_with = CloseMode.NOW
        return self.room._feed(self.room.server.connection_lost(self.conn, self.room.now))

    # ---------------------------------------------------------- peer output

    def stop_reading(self) -> None:
        """From now on the peer reads nothing: output queues up in the core."""
        self.reading = False

    def resume_reading(self) -> list[ServerEvent]:
        """The peer reads again: drain what the core kept for it."""
        self.reading = True
        return self.room._feed([], everyone=True)

    def take(self) -> bytes:
        """Consume and return every byte received so far."""
        data = bytes(self.received)
        self.received.clear()
        return data

    def lines(self) -> list[str]:
        """Consume what was received, as lines without their ``\\n``.

        Fails if the server sent a partial line or bytes that are not UTF-8:
        the server only ever writes whole, valid lines.
        """
        data = self.take()
        if not data:
            return []
        assert data.endswith(b"\n"), f"partial line written: {data[-80:]!r}"
        return data[:-1].decode("utf-8").split("\n")

    @property
    def closed(self) -> bool:
        """Whether the adapter has closed this socket."""
        return self.closed_with is not None

    @property
    def queued(self) -> int:
        """Bytes the core still holds for this client (not yet written)."""
        return self.room.server.queued_bytes(self.conn)

    @property
    def events(self) -> list[ServerEvent]:
        """Every event so far that concerns this connection."""
        return [e for e in self.room.events if e.conn == self.conn]


class MemoryRoom:
    """One :class:`ChatServer` and the clients connected to it."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        start: float = 1000.0,
        message_events: bool = True,
    ) -> None:
        self.server = ChatServer(config, message_events=message_events)
        #: The simulated clock. Not 0, so that "0 means unset" bugs show.
        self.now = start
        self.clients: dict[ConnId, MemoryClient] = {}
        #: Every event the server returned, in order.
        self.events: list[ServerEvent] = []

    def connect(self, *, reading: bool = True) -> MemoryClient:
        """Open a connection (the server may refuse it: see ``closed_with``)."""
        conn = self.server.connection_made(self.now)
        client = MemoryClient(self, conn, reading=reading)
        self.clients[conn] = client
        self._feed([])
        return client

    def login(self, *names: str) -> list[MemoryClient]:
        """Connect and log in one client per name, then forget their output."""
        clients = []
        for name in names:
            client = self.connect()
            client.send(f"LOGIN {name}\n".encode())
            clients.append(client)
        for client in self.clients.values():
            client.take()
        return clients

    def advance(self, seconds: float) -> list[ServerEvent]:
        """Move the clock forward, waking at every deadline on the way.

        Like an adapter's timer, ``handle_timeout`` is called only when
        ``next_deadline()`` has come, and at that time: a deadline reported
        late would make a timeout fire late here too.
        """
        target = self.now + seconds
        events: list[ServerEvent] = []
        for _ in range(10_000):  # bounded: a deadline that never moves is a bug
            deadline = self.server.next_deadline()
            if deadline is None or deadline > target:
                break
            self.now = max(self.now, deadline)
            events += self._feed(self.server.handle_timeout(self.now))
        else:  # pragma: no cover - only on a core bug
            raise AssertionError("next_deadline() does not move forward")
        self.now = target
        return events

    def shutdown(self) -> list[ServerEvent]:
        """Shut the server down (the adapter then closes what it is told to)."""
        return self._feed(self.server.shutdown(self.now))

    # ------------------------------------------------------------ internals

    def _feed(self, events: list[ServerEvent], *, everyone: bool = False) -> list[ServerEvent]:
        self.events += events
        pumped = self._pump(everyone)
        return events + pumped

    def _pump(self, everyone: bool) -> list[ServerEvent]:
        """Do what an adapter does after feeding: write, and close when told."""
        server = self.server
        caused: list[ServerEvent] = []
        pending = list(self.clients) if everyone else server.take_ready()
        while pending:
            for conn in pending:
                client = self.clients.get(conn)
                if client is None or client.closed:
                    continue
                mode = server.close_mode(conn)
                if client.reading and mode is not CloseMode.NOW:
                    data = server.data_to_send(conn)
                    client.received += data
                    client.transcript += data
                # A socket whose queue is empty is closed once the core says so.
                if mode is CloseMode.NOW or (
                    mode is CloseMode.AFTER_FLUSH and server.queued_bytes(conn) == 0
                ):
                    client.closed_with = mode
                    lost = server.connection_lost(conn, self.now)
                    self.events += lost
                    caused += lost
            pending = server.take_ready()
        return caused
