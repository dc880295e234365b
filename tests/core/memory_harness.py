"""An in-memory harness: N clients wired to one :class:`ChatServer`, no sockets.

What this owns: playing the adapter's side of the contract documented on
:class:`ChatServer` (feed, ``take_ready``, drain, close on ``close_mode``, wake
at ``next_deadline``) exactly, so that core tests see what a real adapter would
put on the wire. It never sleeps and never reads a clock: time is
:attr:`MemoryRoom.now`, moved only by :meth:`MemoryRoom.advance`.

The harness reads a connection only while the core says so
(``take_reading_changes``): what a peer sends meanwhile waits in
:attr:`MemoryClient.unread`, as it would in TCP, and is fed when reading
resumes. Held input that may run now (``next_deadline`` already past) runs at
once, as an adapter's timer would make it.

A client "reads" by default: whatever the server queues for it is drained at
once into :attr:`MemoryClient.received`, as an adapter does when the socket
can take more. A client built with ``reading=False`` models a peer that never
reads: its output stays queued in the core, where the slow-consumer cap
measures it, until :meth:`MemoryClient.resume_reading`.
"""

from __future__ import annotations

from chatproto import (
    ChatServer,
    CloseMode,
    ConnectionRefused,
    ConnId,
    ServerConfig,
    ServerEvent,
)

__all__ = ["READ_SIZE", "MemoryClient", "MemoryRoom"]

#: The most an adapter reads from one connection at a time.
READ_SIZE = 65536


class MemoryClient:
    """One simulated peer. Its socket is "closed" once :attr:`closed_with` is set."""

    def __init__(
        self,
        room: MemoryRoom,
        conn: ConnId,
        *,
        reading: bool,
        read_rate: float | None = None,
        kernel_buffer: int = 65536,
    ) -> None:
        self.room = room
        self.conn = conn
        self.reading = reading
        #: A peer that reads ``read_rate`` bytes/s: the adapter takes output
        #: from the core only while fewer than ``kernel_buffer`` bytes are in
        #: flight (the socket is writable), and :meth:`MemoryRoom.run`
        #: consumes them at that rate. ``None``: reads whatever comes, at once.
        self.read_rate = read_rate
        self.kernel_buffer = kernel_buffer
        self.in_flight = 0.0
        #: Bytes the server wrote to this client's socket and nobody consumed yet.
        self.received = bytearray()
        #: Every byte ever written to this client, for split-invariance checks.
        self.transcript = bytearray()
        #: The close_mode that made the adapter close the socket, or None while
        #: it is open. ``connection_lost`` has been reported once it is set.
        self.closed_with: CloseMode | None = None
        #: Bytes the peer sent that the adapter has not read: the core said to
        #: stop reading this connection. They wait here, as in TCP.
        self.unread = bytearray()
        #: The peer's FIN, behind ``unread``.
        self.eof_unread = False

    # ----------------------------------------------------------- peer input

    def send(self, data: bytes | bytearray | memoryview) -> list[ServerEvent]:
        """The peer sends ``data`` (one read, if the core reads this connection now).

        Returns the events it caused (including held input that ran because of it).
        """
        server = self.room.server
        if len(data) > READ_SIZE and not self.unread:
            # An adapter reads at most READ_SIZE at a time: the rest waits in TCP.
            self.unread += data[READ_SIZE:]
            data = data[:READ_SIZE]
            events = self.room._feed(server.receive_data(self.conn, data, self.room.now))
            return events + self.room._read_unread(self)
        if self.unread or (not server.reading(self.conn) and not self.closed):
            self.unread += data
            return self.room._feed([])
        return self.room._feed(server.receive_data(self.conn, data, self.room.now))

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
        if self.unread:
            self.eof_unread = True
            return self.room._feed([])
        return self.room._feed(self.room.server.receive_eof(self.conn, self.room.now))

    @property
    def paused(self) -> bool:
        """Whether the core has told the adapter to stop reading this connection."""
        return not self.room.server.reading(self.conn) and not self.closed

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

    def connect(self, *, reading: bool = True, read_rate: float | None = None) -> MemoryClient:
        """Open a connection (the server may refuse it: see ``closed_with``)."""
        conn = self.server.connection_made(self.now)
        client = MemoryClient(self, conn, reading=reading, read_rate=read_rate)
        self.clients[conn] = client
        self._feed([])
        return client

    def accept(self) -> MemoryClient | ConnectionRefused:
        """Open a connection the way adapters do: admitted, or refused outright."""
        admitted = self.server.accept(self.now)
        if isinstance(admitted, ConnectionRefused):
            return admitted
        client = MemoryClient(self, admitted, reading=True)
        self.clients[admitted] = client
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

    def run(self, seconds: float, step: float = 0.01) -> list[ServerEvent]:
        """Let ``seconds`` pass in steps: rate-limited peers read, writers write, timers fire."""
        events: list[ServerEvent] = []
        end = self.now + seconds
        while self.now < end - 1e-9:
            dt = min(step, end - self.now)
            for client in self.clients.values():
                if client.read_rate is not None:
                    client.in_flight = max(0.0, client.in_flight - client.read_rate * dt)
            events += self.advance(dt)
            events += self._feed([], everyone=True)
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
        """Do what an adapter does after feeding: read, write, close, run the timer."""
        server = self.server
        caused: list[ServerEvent] = []
        pending = list(self.clients) if everyone else server.take_ready()
        for _ in range(100_000):  # bounded: a core that never settles is a bug
            caused += self._write(pending)
            resumed = [
                self.clients[conn]
                for conn, read in server.take_reading_changes()
                if read and conn in self.clients
            ]
            for client in resumed:
                caused += self._read_unread(client)
            deadline = server.next_deadline()
            due = deadline is not None and deadline <= self.now
            if due:
                events = server.handle_timeout(self.now)
                self.events += events
                caused += events
            pending = server.take_ready()
            if not (pending or resumed or due):
                return caused
        raise AssertionError("the core keeps asking for work at the same instant")

    def _read_unread(self, client: MemoryClient) -> list[ServerEvent]:
        """Reading resumed: the adapter reads what waited in TCP, a chunk at a time."""
        server = self.server
        events: list[ServerEvent] = []
        while client.unread and not client.closed and server.reading(client.conn):
            data = bytes(client.unread[:READ_SIZE])
            del client.unread[:READ_SIZE]
            fed = server.receive_data(client.conn, data, self.now)
            self.events += fed
            events += fed + self._pump(everyone=False)
        if client.eof_unread and not client.unread and not client.closed:
            client.eof_unread = False
            fed = server.receive_eof(client.conn, self.now)
            self.events += fed
            events += fed + self._pump(everyone=False)
        return events

    def _write(self, pending: list[ConnId]) -> list[ServerEvent]:
        """Drain and close what the core has news for."""
        server = self.server
        caused: list[ServerEvent] = []
        while pending:
            for conn in pending:
                client = self.clients.get(conn)
                if client is None or client.closed:
                    continue
                mode = server.close_mode(conn)
                while (
                    client.reading
                    and mode is not CloseMode.NOW
                    and (client.read_rate is None or client.in_flight < client.kernel_buffer)
                ):
                    data = server.data_to_send(conn, now=self.now, max_bytes=READ_SIZE)
                    if not data:
                        break
                    client.received += data
                    client.transcript += data
                    if client.read_rate is not None:
                        client.in_flight += len(data)
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
